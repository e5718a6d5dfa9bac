"""Process tuning of the long-running commands (reglink.runtime)."""

from __future__ import annotations

import gc

from reglink.runtime import tune_gc


def test_tune_gc_freezes_the_tables_and_raises_the_young_threshold():
    before = gc.get_threshold()
    try:
        tune_gc(12_345)
        assert gc.get_threshold() == (12_345, before[1], before[2])
        assert gc.get_freeze_count() > 100_000  # the name tables are in the frozen heap
        assert gc.isenabled()  # collections still happen, less often
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
