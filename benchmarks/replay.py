"""Replay throughput vs the ceiling (bare read + parse of the same file), same run.

    .venv/bin/python -m benchmarks replay [--sizes 100000,1000000]

Each size: `reglink replay` in a child process (records/s, peak RSS) and, right before it, a
child that only reads the file and runs ``parse_record`` (JSON + contract validation) on every
line: the ceiling any matcher built on this contract can reach in Python. The ratio is the
figure that survives a noisy machine.
"""

from __future__ import annotations

import sys
import tempfile

from .common import corpus, lines, run_timed

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
    bare_s, bare_rss = run_timed([sys.executable, "-c", BARE, str(events)])
    with tempfile.TemporaryDirectory() as out:
        rep_s, rep_rss = run_timed([sys.executable, "-m", "reglink.cli", "replay", str(events),
                                    "--out", out])
        from reglink.evaluate import evaluate
        ev = evaluate(sim, __import__("pathlib").Path(out))
    return {
        "records": n, "corpus": str(sim),
        "replay": {"seconds": round(rep_s, 2), "records_per_s": round(n / rep_s),
                   "peak_rss_mib": rep_rss},
        "baseline_read_parse": {"seconds": round(bare_s, 2), "records_per_s": round(n / bare_s),
                                "peak_rss_mib": bare_rss},
        "ratio_to_ceiling": round(bare_s / rep_s, 3),
        "links_f1": round(ev["links"]["f1"], 4),
        "note": "wall time includes interpreter start and imports (~1 s) on both sides",
    }


def run(sizes: list[int]) -> dict:
    return {"sizes": [bench(s) for s in sizes]}
