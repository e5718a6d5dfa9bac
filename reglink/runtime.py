"""Process-wide tuning for the commands that run the core over many records (``reglink
replay``, ``reglink worker``, ``reglink rebuild``). Called once by those entry points, never
by the core: it changes when Python collects garbage, not what the core computes.

CPython's cyclic garbage collector runs a young collection every 700 container allocations
and now and then a full one over every tracked object. The core allocates a few hundred
containers per record (records, identities, their sets, JSON values) and keeps many of them
(identities, caches), so with the defaults about 15 % of a replay's CPU went to collections
(measured with ``gc.callbacks``, 40k-record slice of the 100k corpus: 1,325 collections, ~2 s
of ~13 s), almost none of which found garbage: the core builds no reference cycles per record.

* The name tables (pinyin phrases, OpenCC, four-corner codes: ~190k objects) are loaded
  with young collections already rare (at the default threshold, loading them ran ~280
  young collections, ~0.07 CPU-s of every process start, none of which found garbage) and
  then frozen (``gc.freeze``): never scanned again.
* Young collections run every ``GC_YOUNG_THRESHOLD`` allocations instead of 700 (the older
  generations keep their default ratios, so full collections still happen, ~30x less often).
  Cyclic garbage is still collected, later; memory is bounded by the same mechanism.
"""

from __future__ import annotations

import gc

GC_YOUNG_THRESHOLD = 20_000


def tune_gc(young: int = GC_YOUNG_THRESHOLD) -> None:
    """Load and freeze the start-up heap, and collect young objects less often."""
    from matchers.normalise import load_tables

    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(young, gen1, gen2)
    load_tables()
    gc.collect()
    gc.freeze()
