"""The worker's per-record path over the real Redis, without Kafka or faust: same-run
before/after of ``WorkerShell.accept`` + ``process_batch`` (batches of ``--batch``, as the
worker's drainer forms them under load) on one corpus, at a base revision and at the working
tree, alternated ``--rounds`` times.

    .venv/bin/python -m benchmarks.shell_ab --base REV [--records 20000] [--rounds 5]

Needs Redis up (``reglink stack up``); each run uses its own key prefix, deleted after.
Reports, per run, CPU milliseconds per record of the process (the Redis server's own CPU is
not in it), wall seconds, and the Redis round trips the shell made (commands and script
calls, counted on ``RedisKV``). The base revision runs from a temporary ``git worktree`` with
this interpreter; accelerators it does not declare (hiredis) are hidden from it as in
``benchmarks.stream_ab``. Faust's own cost per message is what ``benchmarks.stream_ab``
measures beside this (the bare forwarder).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent


def child(corpus: Path, batch: int) -> dict:
    """One measurement, in the process of the tree on PYTHONPATH (no import from benchmarks:
    a base revision may not have this file)."""
    import uuid

    from reglink.core.metrics import PipelineMetrics
    from reglink.core.pipeline import Pipeline
    from reglink.core.settings import Settings
    from reglink.kafka_auth import connect_redis
    from reglink.stores import kv as kvmod
    from streams.shell import WorkerShell
    try:  # what the worker does at start (reglink.runtime, where the tree has it)
        from reglink.runtime import tune_gc
        tune_gc()
    except ImportError:
        pass

    trips = {"n": 0}
    for name in ("get", "mget", "fetch", "apply_checked", "apply", "zupto", "incrby",
                 "incr", "smembers", "scard", "set", "delete", "sadd", "srem", "zadd", "zrem"):
        orig = getattr(kvmod.RedisKV, name, None)
        if orig is None:
            continue

        def counted(self, *a, _orig=orig, _name=name, **k):
            if not (_name == "fetch" and not (a[0] or a[1])):  # an empty fetch sends nothing
                trips["n"] += 1
            return _orig(self, *a, **k)
        setattr(kvmod.RedisKV, name, counted)
    base = Settings()
    s = Settings(redis_prefix=f"{base.redis_prefix}shellab:{uuid.uuid4().hex[:8]}:")
    kv = kvmod.RedisKV(connect_redis(s, "worker"), s.redis_prefix)
    kvmod.ensure_layout(kv)
    shell = WorkerShell(s, Pipeline(s, kv, metrics=PipelineMetrics(), outbox=True))
    msgs = []
    with corpus.open("rb") as fh:
        for n, raw in enumerate(fh):
            raw = raw.rstrip(b"\n")
            msgs.append((raw, s.topic(f"{json.loads(raw).get('source')}.raw"), n))
    trips["n"] = 0
    t0, w0 = time.process_time(), time.perf_counter()
    out = 0
    try:
        for i in range(0, len(msgs), batch):
            items = []
            for raw, topic, off in msgs[i:i + batch]:
                item, _dl = shell.accept(raw, topic, 0, off)
                if item is not None:
                    items.append(item)
            out += len(shell.process_batch(items))
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    finally:
        r = connect_redis(base, "admin")
        pipe = r.pipeline(transaction=False)
        for k in r.scan_iter(match=f"{s.redis_prefix}*", count=5000):
            pipe.unlink(k)
        pipe.execute()
    return {"records": len(msgs), "messages": out, "cpu_s": round(cpu, 3),
            "wall_s": round(wall, 3), "cpu_ms_per_record": round(1000 * cpu / len(msgs), 4),
            "round_trips": trips["n"]}


def _run(src: Path, corpus: Path, batch: int) -> dict:
    from reglink.core.settings import Settings
    env = {**os.environ, "PYTHONPATH": str(src),
           # the stack's state (credentials) even when the child runs in another checkout
           "REGLINK_STATE_DIR": str(Path(Settings().state_dir).resolve())}
    out = subprocess.run([sys.executable, str(HERE), "--child", str(corpus), "--batch",
                          str(batch)], env=env, cwd=src, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", help="git revision to compare against")
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--name", default="shell_ab", help="results file name (no .json)")
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.batch)))
        return 0
    if not a.base:
        ap.error("--base is required")
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import corpus, save
    from benchmarks.stream_ab import base_checkout

    events = corpus(a.records) / "events.jsonl"
    out: dict = {"corpus": str(events), "base": a.base, "batch": a.batch,
                 "base_runs": [], "new_runs": []}
    with base_checkout(a.base) as (wt, hides):
        out["base_hides"] = hides
        for _ in range(a.rounds):
            for key, src in (("base_runs", wt), ("new_runs", ROOT)):
                out[key].append(_run(src, events, a.batch))
                print(key, out[key][-1], flush=True)

    def med(rows, k):
        vals = sorted(r[k] for r in rows)
        return vals[len(vals) // 2]

    out["summary"] = {side: {k: med(out[side], k) for k in
                             ("cpu_ms_per_record", "wall_s", "round_trips")}
                      for side in ("base_runs", "new_runs")}
    print(json.dumps(out["summary"], indent=2))
    save(a.name, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
