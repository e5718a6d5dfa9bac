"""Retention sweep (``KVIdentityStore.purge`` on ``RedisKV``, what ``reglink purge`` runs):
N synthetic identities (same encoding and pseudonymised blocking keys as the linker writes,
one record link each), half of them older than the cut-off; the sweep's time and rate. Baseline
in the same run: a bare SCAN of every key under the prefix (the floor of any sweep), and the
same sweep without its pause after each unit (``yield_ratio=0``: the cost of leaving live
writers a window).

    .venv/bin/python -m benchmarks.purge [--sizes 20000,100000] [--redis URL]

Writes benchmarks/results/purge.json. Everything lives under a unique prefix on the shared
Redis and is deleted afterwards.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid

from benchmarks.common import save
from benchmarks.store import BATCH, _people, cleanup


def load(client, prefix: str, n: int, seed: int) -> int:
    """n identities with one record link each, written as the worker writes them (identity
    encoding, packed blocking index): ``RedisKV.apply_checked`` without checks, 1,000
    identities per script call."""
    from matchers.candidates import BlockingCandidates
    from matchers.pseudo import Pseudonymiser
    from matchers.types import Identity
    from reglink.stores.identity import _dump
    from reglink.stores.kv import RedisKV

    kv = RedisKV(client, prefix)
    finder = BlockingCandidates(Pseudonymiser("bench"))
    rnd = random.Random(seed)
    ops: list[tuple] = []
    for i, rec in enumerate(_people(0, n, rnd)):
        ident = Identity(person_id=f"P{rec.id_hash[-16:]}", anchor=f"rid:{rec.id_hash}")
        ident.absorb(rec)
        ident.last_report = 1_000.0 if i % 2 else 10**9  # every other one is old
        ops.append(("set", f"i:{ident.person_id}", _dump(ident)))
        ops.append(("set", f"l:{rec.key}", ident.person_id))
        ops += [("sadd", f"b:{k}", [ident.person_id]) for k in finder.keys(rec)]
        if len(ops) >= BATCH:
            kv.apply_checked(ops, {}, {})
            ops = []
    ops.append(("set", "n:identities", str(n)))
    kv.apply_checked(ops, {}, {})
    return n


def run(sizes: list[int], url: str) -> list[dict]:
    from reglink.core.settings import load_settings
    from reglink.kafka_auth import connect_redis
    from reglink.stores.identity import KVIdentityStore
    from reglink.stores.kv import RedisKV

    client = connect_redis(load_settings(redis_url=url), "admin")  # SCAN: like the sweep
    rows = []
    for n in sizes:
        prefix = f"bench-purge-{uuid.uuid4().hex[:8]}:"
        try:
            load(client, prefix, n, seed=n)
            keys = sum(1 for _ in client.scan_iter(match=f"{prefix}*", count=1000))
            t0 = time.perf_counter()
            sum(1 for _ in client.scan_iter(match=f"{prefix}*", count=1000))
            scan_s = time.perf_counter() - t0
            store = KVIdentityStore(RedisKV(client, prefix))
            t0 = time.perf_counter()
            dry = store.purge(1e6, dry_run=True)
            dry_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            rep = store.purge(1e6)
            secs = time.perf_counter() - t0
            left = sum(1 for _ in client.scan_iter(match=f"{prefix}i:*", count=1000))
            # The same store again, swept back to back (no pause after each unit): what
            # leaving live writers a window costs the sweep.
            cleanup(client, prefix)
            load(client, prefix, n, seed=n)
            t0 = time.perf_counter()
            greedy = KVIdentityStore(RedisKV(client, prefix)).purge(1e6, yield_ratio=0)
            greedy_s = time.perf_counter() - t0
            assert greedy.purged == rep.purged
            row = {"identities": n, "keys": keys, "purged": rep.purged,
                   "index_entries": rep.index_entries, "links": rep.links,
                   "identities_left": left, "dry_run_seconds": round(dry_s, 2),
                   "purge_seconds": round(secs, 2),
                   "purged_per_s": round(rep.purged / secs),
                   "no_pause_purge_seconds": round(greedy_s, 2),
                   "pause_cost": round(secs / greedy_s, 2),
                   "bare_scan_seconds": round(scan_s, 2),
                   "purge_vs_bare_scan": round(secs / scan_s, 1),
                   "dry_run_purged": dry.purged}
            print(row, flush=True)
            rows.append(row)
        finally:
            cleanup(client, prefix)
    return rows


def main() -> None:
    import os

    ap = argparse.ArgumentParser(prog="python -m benchmarks.purge")
    ap.add_argument("--sizes", default="20000,100000")
    ap.add_argument("--redis", default=os.environ.get("REGLINK_REDIS_URL",
                                                      "redis://127.0.0.1:6379/0"))
    a = ap.parse_args()
    rows = run([int(x) for x in a.sizes.split(",") if x], a.redis)
    save("purge", {"sizes": rows})


if __name__ == "__main__":
    main()
