"""Helpers for tests of the pure core (no services): a pipeline over the embedded store."""

from __future__ import annotations

from pathlib import Path

from reglink.core.pipeline import Pipeline
from reglink.core.settings import Settings, load_settings
from reglink.stores.kv import MemoryKV

# The hand-written example records (tests/fixtures/README.md says what they exercise).
EXAMPLES = Path(__file__).resolve().parent / "fixtures" / "records.jsonl"


def core_settings(**kw) -> Settings:
    return load_settings(hmac_key="unit-test-key", **kw)


def run_core(records, **kw):
    """Feed records in order; return (pipeline, alert messages, record -> person id)."""
    pipe = Pipeline(core_settings(**kw), MemoryKV())
    alerts, links = [], {}
    for r in records:
        pid, outs = pipe.process(r)
        links[r.get("record_id") or r.get("watch_id")] = pid
        alerts += [o.value for o in outs if o.topic == "alerts"]
    alerts += [o.value for o in pipe.finish() if o.topic == "alerts"]
    return pipe, alerts, links


def ordered_corpus(out_dir: Path, persons: int, days: int, seed: int,
                   start: str = "2026-03-01") -> list[dict]:
    """A simulated corpus's valid records in the event-time merge order of the worker (by
    ``order_key``, then file line): what a batch or a replay of it sees."""
    from reglink.core.contract import report_time
    from reglink.core.rules.merge import order_key
    from reglink.replay import iter_lines, parse_line
    from reglink.sim.simulate import run_simulate

    run_simulate(persons=persons, days=days, start=start, seed=seed, out_dir=out_dir)
    recs = []
    for n, raw in iter_lines(out_dir / "events.jsonl"):  # the replay's own reader
        rec, dl = parse_line(raw, None, {"line": n})
        if dl is None:
            rt = report_time(rec)
            recs.append((order_key(rec["source"], rt.timestamp() if rt else None), n, rec))
    recs.sort(key=lambda r: (r[0], r[1]))
    return [r for _k, _n, r in recs]
