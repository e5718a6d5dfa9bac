"""Redis memory per identity of the whole state the worker keeps (identities, blocking index,
links, stays, residence ledgers, statistics, quality, alerts, timers), this tree beside an
earlier revision, in the same run on the same Redis.

    .venv/bin/python -m benchmarks.state_bytes SIM_DIR --before REV [--records N]
        [--side before|after --out FILE]   # one side (two stacks: both sides in parallel)
    .venv/bin/python -m benchmarks.state_bytes SIM_DIR --combine BEFORE.json AFTER.json

Each side runs the pipeline the worker runs (``Pipeline.process_batch`` over ``RedisKV``, in
batches of 500 as the worker's units of work, without the outbox) over the first N records of
``SIM_DIR/events.jsonl`` under a fresh Redis prefix, then reads ``INFO memory`` (the growth
of ``used_memory``), counts the identities (``i:`` keys) and sizes a sample of every key
family with ``MEMORY USAGE``. ``--before REV`` runs the same measurement on a ``git archive``
export of REV (its code, its key layout) in a child process. Everything written is deleted
afterwards. Needs the local stack's Redis (``reglink stack up``); connects as its admin user.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, ROOT

BATCH = 500
SAMPLE = 300  # keys per family sized with MEMORY USAGE


def _family(key: str) -> str:
    """A key's family: what precedes its first ':' or '#' (``i``, ``l``, ``b``, ``pop``...)."""
    cut = min((i for i in (key.find(":"), key.find("#")) if i > 0), default=len(key))
    return key[:cut]


def feed_pipeline(pipe: Any, sim: Path, records: int | None, batch_size: int) -> int:
    """The first ``records`` lines of ``sim/events.jsonl`` (None: all) through
    ``pipe.process_batch`` in batches of ``batch_size``, as the worker's units of work;
    returns the lines read (dead-lettered ones included)."""
    from reglink.core.contract import parse_record  # the importable reglink's

    n = 0
    batch: list[tuple[dict[str, Any], str]] = []
    with (sim / "events.jsonl").open("rb") as fh:
        for line in fh:
            if records is not None and n >= records:
                break
            source = json.loads(line)["source"]
            record, _dead = parse_record(line.rstrip(b"\n"), source, {"line": n})
            n += 1
            if record is not None:
                batch.append((record, source))
            if len(batch) == batch_size:
                pipe.process_batch(batch)
                batch = []
    if batch:
        pipe.process_batch(batch)
    return n


def measure(sim: Path, records: int | None) -> dict:
    """The measurement with whatever ``reglink`` is importable (this tree, or the export the
    parent put first on ``sys.path``)."""
    from reglink.core.pipeline import Pipeline
    from reglink.core.settings import load_settings
    from reglink.kafka_auth import connect_redis
    from reglink.stores.kv import RedisKV

    base = load_settings()
    client = connect_redis(base, "admin")
    prefix = f"{base.redis_prefix}bytes-{uuid.uuid4().hex[:8]}:"
    settings = load_settings(redis_prefix=prefix, hmac_key="state-bytes-benchmark")
    pipe = Pipeline(settings, RedisKV(client, prefix))
    used0 = int(client.info("memory")["used_memory"])
    t0 = time.process_time()
    try:
        n = feed_pipeline(pipe, sim, records, BATCH)
        pipe.finish()
        cpu = time.process_time() - t0
        time.sleep(0.5)
        used = int(client.info("memory")["used_memory"]) - used0
        keys: dict[str, list[bytes]] = {}
        for key in client.scan_iter(match=f"{prefix}*", count=5000):
            keys.setdefault(_family(key.decode()[len(prefix):]), []).append(key)
        identities = len(keys.get("i", []))
        families = {}
        for fam, ks in sorted(keys.items()):
            sample = ks[:SAMPLE]
            sized = sum(int(client.memory_usage(k, samples=0) or 0) for k in sample)
            total = sized * len(ks) / max(1, len(sample))
            families[fam] = {"keys": len(ks), "bytes_per_identity":
                             round(total / max(1, identities), 1)}
        return {"records": n, "identities": identities, "pipeline_cpu_s": round(cpu, 1),
                "redis_used_memory_mib": round(used / 2**20, 1),
                "redis_bytes_per_identity": round(used / max(1, identities)),
                "families": families}
    finally:
        pipe_ = client.pipeline(transaction=False)
        for i, key in enumerate(client.scan_iter(match=f"{prefix}*", count=5000)):
            pipe_.unlink(key)
            if i % 5000 == 4999:
                pipe_.execute()
        pipe_.execute()
        client.close()


def measure_revision(rev: str, sim: Path, records: int | None) -> dict:
    """:func:`measure` with revision ``rev``'s code, in a child process."""
    with tempfile.TemporaryDirectory(prefix="reglink-before-") as tmp:
        arch = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True,
                              capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=arch, check=True)
        # run from the export (its ``reglink`` comes first on sys.path), with this file's
        # measure() loaded by path: the export's benchmarks/ may not have it
        code = ("import json, importlib.util; from pathlib import Path; "
                f"spec = importlib.util.spec_from_file_location('probe', {__file__!r}); "
                "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
                f"print('RESULT' + json.dumps(m.measure(Path({str(sim)!r}), {records!r})))")
        env = {**os.environ, "REGLINK_STATE_DIR": os.environ.get(  # the same stack
            "REGLINK_STATE_DIR", str(ROOT / ".reglink"))}
        res = subprocess.run([sys.executable, "-c", code], cwd=tmp, capture_output=True,
                             text=True, env=env)
        if res.returncode:
            raise SystemExit(f"{rev}: the measurement failed\n{res.stderr[-3000:]}")
    line = next(x for x in res.stdout.splitlines() if x.startswith("RESULT"))
    got: dict = json.loads(line[len("RESULT"):])
    got["revision"] = rev
    return got


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sim", type=Path)
    ap.add_argument("--before", default=None, help="the revision to compare with")
    ap.add_argument("--records", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--side", choices=("both", "before", "after"), default="both",
                    help="measure one side only and write it to --out: two runs on two "
                         "stacks (REGLINK_STATE_DIR, REGLINK_REDIS_PORT) then go in parallel; "
                         "--combine joins their files")
    ap.add_argument("--combine", type=Path, nargs=2, metavar=("BEFORE", "AFTER"),
                    help="join the files of a --side before and a --side after run")
    a = ap.parse_args(argv)
    if not a.combine and a.side != "after" and not a.before:
        ap.error("--before REV is needed to measure the before side")
    if a.combine:
        before, after = (json.loads(p.read_text(encoding="utf-8"))[side]
                         for p, side in zip(a.combine, ("before", "after"), strict=True))
    else:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
        if a.side != "both":
            got = (measure_revision(a.before, a.sim, a.records) if a.side == "before"
                   else {**measure(a.sim, a.records), "revision": head})
            text = json.dumps({a.side: got}, indent=2) + "\n"
            if a.out:
                a.out.write_text(text, encoding="utf-8")
            print(text)
            return
        before = measure_revision(a.before, a.sim, a.records)
        after = {**measure(a.sim, a.records), "revision": head}
    fams = Counter({f: v["bytes_per_identity"] for f, v in after["families"].items()})
    fams.subtract({f: v["bytes_per_identity"] for f, v in before["families"].items()})
    result = {"before": before, "after": after,
              "bytes_per_identity_change": after["redis_bytes_per_identity"]
              - before["redis_bytes_per_identity"],
              "by_family_change": {f: round(v, 1) for f, v in sorted(fams.items()) if v}}
    out = a.out or RESULTS / f"state_bytes_{time.strftime('%Y-%m-%d')}_vs_{before['revision']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
