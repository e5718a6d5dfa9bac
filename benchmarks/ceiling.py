"""What this machine carries through faust at all: the bare forwarder and the worker on a
backlog, with one and with two processes, alternated round by round.

    .venv/bin/python -m benchmarks.ceiling [--records 50000] [--rounds 2] [--processes 1,2]

Each configuration is :func:`benchmarks.stream.throughput` (fresh topics; the processes join
their group, the corpus is published at full speed, and the rate counts the outputs after the
end of publishing, read only once they are all there). Configurations: the bare forwarder
with 1 process on 1 partition and 2 processes on 8 partitions, then the worker likewise; the
order repeats ``rounds`` times (the VM's speed drifts: compare within a round). Per row, besides
the rate: ``cpu_ms_per_record`` of the processes measured, ``machine_busy`` (share of *all*
cores busy in the window: 1.0 means both cores saturated, by whatever ran: broker, Redis, the
processes), and ``cpu_floor_per_s`` = cores / CPU per record, what the cores could carry if
nothing else ran on them (an upper bound: it ignores the broker and Redis).
``worker_vs_bare``: the issue's ratio, each worker run against the bare run of its round.
Writes ``benchmarks/results/ceiling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from benchmarks.common import RESULTS, corpus
from benchmarks.stream import _records, throughput

CONFIGS = ((True, 1, 1), (True, 2, 8), (False, 1, 1), (False, 2, 8))


def _name(bare: bool, n: int, parts: int) -> str:
    return f"{'bare' if bare else 'worker'}_{n}proc_{parts}p"


def run(records: int = 50000, rounds: int = 2, processes=(1, 2)) -> dict:
    sim = corpus(records)
    recs = _records(sim)
    configs = [c for c in CONFIGS if c[1] in processes]
    cores = os.cpu_count() or 1
    out: dict = {"corpus": str(sim), "records": len(recs), "cores": cores, "rounds": []}
    for r in range(rounds):
        rows = {}
        for bare, n, parts in configs:
            row = throughput(sim, recs, workers=n, partitions=parts, bare=bare)
            row["cpu_floor_per_s"] = (round(cores * 1000 / row["cpu_ms_per_record"])
                                      if row["cpu_ms_per_record"] else None)
            print(f"round {r + 1}:", _name(bare, n, parts), row, flush=True)
            rows[_name(bare, n, parts)] = row
        out["rounds"].append(rows)
    out["median"] = {
        name: {k: statistics.median(rnd[name][k] for rnd in out["rounds"])
               for k in ("sustained_per_s", "cpu_ms_per_record", "machine_busy",
                         "cpu_floor_per_s")
               if all(rnd[name].get(k) is not None for rnd in out["rounds"])}
        for name in (_name(*c) for c in configs)}
    out["worker_vs_bare"] = {
        f"{n}proc": [round(rnd[_name(False, n, p)]["sustained_per_s"]
                           / rnd[_name(True, n, p)]["sustained_per_s"], 3)
                     for rnd in out["rounds"]]
        for _b, n, p in configs if not _b}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--processes", default="1,2", help="process counts to run: 1, 2 or 1,2")
    ap.add_argument("--out", default=str(RESULTS / "ceiling.json"))
    a = ap.parse_args(argv)
    res = run(a.records, a.rounds, tuple(int(x) for x in a.processes.split(",")))
    with open(a.out, "w", encoding="utf-8") as fh:
        json.dump(res, fh, indent=1)
    print(json.dumps({k: res[k] for k in ("median", "worker_vs_bare")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
