"""Publish -> linked latency against the publish rate, for the worker and for the bare faust
forwarder (the ceiling) on the same stack, in one run: the highest rate each holds under a
p99 bound (the capacity target is p99 < 50 ms at 1k records/s, docs/capacity.md).

    .venv/bin/python -m benchmarks.latency_sweep [--rates 250,500,700,1000] [--seconds 15]
        [--rounds 2] [--bound-ms 50] [--base REV]

Needs the stack up (``reglink stack up``). At each rate, in every round, the bare forwarder
runs first and the worker right after, on the first ``rate x seconds`` records of one
corpus (``benchmarks.stream.latency``: one worker, one partition, fresh topics each); with
``--base``, the worker of that revision too (a same-run before/after). A side *holds* a
rate when its p99 is under the bound in every round at that rate: on this machine the same
code is bimodal from one minute to the next, so one good run is not enough. Writes
``results/<name>.json`` (``--name``, default ``latency_sweep``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from benchmarks.common import ROOT, corpus, save
from benchmarks.stream_ab import base_checkout


def held(rows: list[dict], side: str, bound_ms: float) -> float | None:
    """The highest rate at which every run of ``side`` had p99 under the bound, provided
    every lower rate held too (a rate above a failed one does not count)."""
    best = None
    for rate in sorted({r["rate_target"] for r in rows}):
        runs = [r for r in rows if r["rate_target"] == rate and r["side"] == side]
        p99s = [r["publish_to_linked_ms"]["p99"] for r in runs]
        if not runs or any(p is None or p >= bound_ms for p in p99s):
            break
        best = rate
    return best


def main(argv: list[str] | None = None) -> int:
    from benchmarks import stream

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="250,500,700,1000")
    ap.add_argument("--seconds", type=float, default=15.0, help="publishing time per run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bound-ms", type=float, default=50.0)
    ap.add_argument("--records", type=int, default=15000, help="corpus size")
    ap.add_argument("--name", default="latency_sweep", help="results file name (no .json)")
    ap.add_argument("--base", default=None, metavar="REV",
                    help="also run the worker of this revision at each rate (before/after)")
    a = ap.parse_args(argv)
    rates = [float(r) for r in a.rates.split(",")]
    sim = corpus(a.records)
    recs = stream._records(sim)
    rows: list[dict] = []
    with contextlib.ExitStack() as stack:
        sides = [("bare", True, ROOT)]
        if a.base:
            wt, _hidden = stack.enter_context(base_checkout(a.base))
            sides.append(("base", False, wt))
        sides.append(("worker", False, ROOT))
        for rnd in range(a.rounds):
            for rate in rates:
                n = min(len(recs), int(rate * a.seconds))
                for side, bare, src in sides:
                    row = stream.latency(sim, recs[:n], rate, settle=2.0, bare=bare, src=src)
                    row.update(side=side, round=rnd,
                               load_avg=[round(x, 2) for x in os.getloadavg()])
                    rows.append(row)
                    lat = row["publish_to_linked_ms"]
                    st = row.get("worker_stages_ms", {})
                    split = " ".join(f"{k} {v['mean']}/{v['p99_at_most']}"
                                     for k, v in st.items() if k != "publish_to_outputs")
                    print(f"round {rnd} rate {int(rate)} {side:6} p50 {lat['p50']} "
                          f"p99 {lat['p99']} max {lat['max']} ms"
                          + (f"  (mean/p99<= ms; unit_records: records): {split}" if split else ""),
                          flush=True)
    out = {"corpus": str(sim), "bound_ms": a.bound_ms, "seconds": a.seconds,
           "rounds": a.rounds, "rates": rates, "base": a.base, "rows": rows,
           "held": {side: held(rows, side, a.bound_ms) for side, _b, _s in sides}}
    print(json.dumps(out["held"]))
    save(a.name, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
