"""Same-run before/after of the stream worker: one worker on one partition working through
the corpus as a backlog (``benchmarks.stream.throughput``), at a base revision and at the
working tree, alternated ``--rounds`` times, with the bare faust forwarder as the ceiling.

    .venv/bin/python -m benchmarks.stream_ab --base REV [--records 20000] [--rounds 2]
        [--plugins unregistered_stay,watchlist_match]   # this tree with only those plug-ins
        [--workers 1,2 --partitions 8]   # scaling: each side runs 1 then 2 workers

Needs the stack up (``reglink stack up``). The base revision is checked out into a temporary
``git worktree`` and its worker runs with this interpreter (``PYTHONPATH`` points at it), so
both see the same dependencies and the same broker and Redis. Figures to compare: worker CPU
ms per record (user + system of the worker process while it works through the corpus: less
noisy than wall rates on a shared machine) and sustained linked records/s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, corpus, save

# Optional accelerators this tree declares that an older revision may not: the base worker
# runs without them (both sides share this interpreter and its site-packages).
ACCELERATORS = ("hiredis",)


def _hide_undeclared(checkout: Path) -> list[str]:
    """Hide from the base's worker the accelerators its pyproject.toml does not declare: a
    stub module in its checkout (first on its path) fails to import, as if not installed."""
    declared = (checkout / "pyproject.toml").read_text()
    hidden = [m for m in ACCELERATORS if f'"{m}' not in declared]
    for m in hidden:
        (checkout / f"{m}.py").write_text(
            f"raise ImportError('{m} hidden: not a dependency of this revision')\n")
    return hidden


@contextlib.contextmanager
def base_checkout(rev: str):
    """A temporary git worktree of ``rev`` with its undeclared accelerators hidden; yields
    (path, what was hidden) and removes the worktree afterwards."""
    with tempfile.TemporaryDirectory(prefix="reglink-ab-") as tmp:
        wt = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(wt), rev], cwd=ROOT,
                       check=True, capture_output=True)
        try:
            yield wt, _hide_undeclared(wt)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(wt)], cwd=ROOT,
                           capture_output=True)


def main(argv: list[str] | None = None) -> int:
    from benchmarks import stream

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="git revision to compare against")
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--name", default="stream_ab", help="results file name (no .json)")
    ap.add_argument("--workers", default="1",
                    help="worker counts run in turn by each side, e.g. 1,2 (scaling A/B)")
    ap.add_argument("--partitions", type=int, default=1, help="partitions per source topic")
    ap.add_argument("--bare-both", action="store_true",
                    help="also run the bare forwarder of each side every round (when the "
                         "change touches it too)")
    ap.add_argument("--plugins", default=None,
                    help="comma-separated: this tree's worker runs only these pipeline "
                         "plug-ins (the work a base revision with fewer did)")
    a = ap.parse_args(argv)
    if a.plugins:
        os.environ["BENCH_PLUGINS"] = a.plugins  # read by benchmarks.stream._start
    counts = [int(n) for n in a.workers.split(",")]
    sim = corpus(a.records)
    recs = stream._records(sim)
    out: dict = {"corpus": str(sim), "records": len(recs), "base": a.base,
                 "plugins": a.plugins or "all",
                 "bare": [], "base_runs": [], "new_runs": [], "base_bare": [], "new_bare": []}
    with base_checkout(a.base) as (wt, hides):
        out["base_hides"] = hides
        if not a.bare_both:
            out["bare"].append(stream.throughput(sim, recs, bare=True))
            print("bare", out["bare"][-1], flush=True)
        for _ in range(a.rounds):
            for key, src in (("base_runs", wt), ("new_runs", ROOT)):
                for n in counts:
                    row = stream.throughput(sim, recs, workers=n, partitions=a.partitions,
                                            src=src)
                    out[key].append(row)
                    print(key, row, flush=True)
                if a.bare_both:
                    bkey = key.replace("_runs", "_bare")
                    out[bkey].append(stream.throughput(sim, recs, bare=True, src=src))
                    print(bkey, out[bkey][-1], flush=True)

    def mean(rows, k):
        vals = [r[k] for r in rows if r.get(k) is not None]
        return round(sum(vals) / len(vals), 3) if vals else None

    out["summary"] = {}
    for side in ("bare", "base_runs", "new_runs", "base_bare", "new_bare"):
        for n in (counts if side.endswith("_runs") else [None]):
            rows = [r for r in out[side] if n is None or r["workers"] == n]
            if rows:
                name = side if n is None or len(counts) == 1 else f"{side}_{n}_workers"
                out["summary"][name] = {
                    "cpu_ms_per_record": mean(rows, "cpu_ms_per_record"),
                    "redis_cpu_ms_per_record": mean(rows, "redis_cpu_ms_per_record"),
                    "sustained_per_s": mean(rows, "sustained_per_s"),
                    "links_f1": mean(rows, "links_f1")}
    print(json.dumps(out["summary"], indent=2))
    save(a.name, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
