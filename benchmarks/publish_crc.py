"""The connector with and without kafka-python's C CRC-32C (the ``crc32c`` package).

    .venv/bin/python -m benchmarks.publish_crc [--records 50000] [--rounds 3]

kafka-python computes the CRC-32C of every record batch it produces, and checks it on every
batch it fetches, in pure Python unless ``crc32c`` is importable. ``reglink publish`` (the
connector) runs in a child process on the hotel file of a simulated corpus, into fresh
topics of the local stack; the two variants alternate, ``rounds`` times each (the VM's speed
drifts). The variant without blocks the import (``sys.modules["crc32c"] = None``) before
kafka-python loads. Reported per run: records/s (wall) and the child's CPU per record.
Writes ``benchmarks/results/publish_crc.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.common import RESULTS, ROOT, corpus
from benchmarks.stream import _cleanup, _settings

_RUN = ("import sys\n"
        "if sys.argv[1] == 'python': sys.modules['crc32c'] = None\n"
        "import kafka.record.util as u\n"
        "assert (u.crc32c_c is None) == (sys.argv[1] == 'python'), 'crc32c variant not in force'\n"
        "sys.argv = ['reglink', 'publish', '--source', 'hotel', sys.argv[2]]\n"
        "from reglink.cli import main\n"
        "main()\n")


def _one(s, variant: str, path) -> dict:
    env = {**os.environ, **s.to_env()}
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a full pipe would block it
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", _RUN, variant, str(path)], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        log.seek(0)
        out = log.read().decode(errors="replace")
    if status != 0:
        raise RuntimeError(f"reglink publish ({variant}) failed:\n{out[-4000:]}")
    return {"variant": variant, "wall_s": round(wall, 2),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}


def run(records: int = 50000, rounds: int = 3) -> dict:
    from reglink.devstack.stack import create_topics_and_acls as create_topics

    path = corpus(records) / "hotel.jsonl"
    n = sum(1 for _ in path.open("rb"))
    rows = []
    for r in range(rounds):
        for variant in ("python", "c") if r % 2 == 0 else ("c", "python"):
            s = _settings(f"crc-{variant}", 1)
            create_topics(s)
            try:
                row = _one(s, variant, path)
            finally:
                _cleanup(s)
            row["records_per_s"] = round(n / row["wall_s"])
            row["cpu_ms_per_record"] = round(1000 * row["cpu_s"] / n, 4)
            print(f"round {r + 1}:", row, flush=True)
            rows.append(row)
    med = {v: {k: statistics.median(x[k] for x in rows if x["variant"] == v)
               for k in ("records_per_s", "cpu_ms_per_record")} for v in ("python", "c")}
    return {"file": str(path), "records": n, "rounds": rounds, "runs": rows, "median": med,
            "cpu_ratio_python_over_c": round(med["python"]["cpu_ms_per_record"]
                                             / med["c"]["cpu_ms_per_record"], 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS / "publish_crc.json"))
    a = ap.parse_args(argv)
    res = run(a.records, a.rounds)
    with open(a.out, "w", encoding="utf-8") as fh:
        json.dump(res, fh, indent=1)
    print(json.dumps(res["median"], indent=1), "python/c CPU:", res["cpu_ratio_python_over_c"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
