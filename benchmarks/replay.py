"""Replay throughput vs the ceiling (bare read + parse of the same file), same run.

    .venv/bin/python -m benchmarks replay [--sizes 100000,1000000]

Each size: `reglink replay` in a child process (records/s, peak RSS) and, right before it, a
child that only reads the file and runs ``parse_line`` (JSON + contract validation, as replay
does) on every line: the ceiling any matcher built on this contract can reach in Python. The
ratio is the figure that survives a noisy machine; both wall and CPU time (user + system of
the child) are recorded, CPU time being the steadier when other jobs share the cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from benchmarks.common import ROOT, corpus, lines


def run_timed(argv: list[str]) -> tuple[float, int, float]:
    """Run a child; (wall seconds, peak RSS MiB, CPU seconds user + system) of that child.
    CPU time is the figure to trust on a shared machine: wall time counts other jobs' turns."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv} failed")
    return wall, usage.ru_maxrss // 1024, usage.ru_utime + usage.ru_stime

BARE = """
import sys, json
from reglink.replay import iter_lines, parse_line
from pathlib import Path
p = Path(sys.argv[1]); n = 0
for i, raw in iter_lines(p):
    rec, dl = parse_line(raw, None, {"file": str(p), "line": i}); n += 1
"""


def bench(size: int) -> dict:
    sim = corpus(size)
    events = sim / "events.jsonl"
    n = lines(events)
    bare_s, bare_rss, bare_cpu = run_timed([sys.executable, "-c", BARE, str(events)])
    with tempfile.TemporaryDirectory() as out:
        rep_s, rep_rss, rep_cpu = run_timed([sys.executable, "-m", "reglink.cli", "replay",
                                             str(events), "--out", out])
        from reglink.evaluate import evaluate
        ev = evaluate(sim, __import__("pathlib").Path(out))
    return {
        "records": n, "corpus": str(sim),
        "replay": {"seconds": round(rep_s, 2), "records_per_s": round(n / rep_s),
                   "cpu_seconds": round(rep_cpu, 2), "records_per_cpu_s": round(n / rep_cpu),
                   "peak_rss_mib": rep_rss},
        "baseline_read_parse": {"seconds": round(bare_s, 2), "records_per_s": round(n / bare_s),
                                "cpu_seconds": round(bare_cpu, 2),
                                "records_per_cpu_s": round(n / bare_cpu),
                                "peak_rss_mib": bare_rss},
        "ratio_to_ceiling": round(bare_s / rep_s, 3),
        "cpu_ratio_to_ceiling": round(bare_cpu / rep_cpu, 3),
        "links_f1": round(ev["links"]["f1"], 4),
        "watchlist_f1": round(ev["watchlist_match"]["f1"], 4),
        "unregistered_stay_f1": round(ev["unregistered_stay"]["f1"], 4),
        "note": "wall and CPU time include interpreter start and imports (~1 s) on both sides",
    }


def run(sizes: list[int]) -> dict:
    return {"sizes": [bench(s) for s in sizes]}
