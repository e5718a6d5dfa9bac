"""Redis round trips of the worker's pipeline: the first N records of a corpus through
``Pipeline.process_batch`` over ``RedisKV`` (batches as the worker's units of work), every
call of ``RedisKV`` that reaches the server counted, by method and by the key family read.

    .venv/bin/python -m benchmarks.round_trips SIM_DIR [--records 5000] [--batch 500]
        [--plugins unregistered_stay,watchlist_match]

A round trip is a read (``get``, ``mget``, ``zupto``, a ``fetch`` with anything to read: the
read-ahead and every set read go through it), or a commit (``apply``, ``apply_checked``).
Reads that the unit of work answers from what it read ahead cost none and are not counted.
Needs the local stack's Redis (``reglink stack up``); writes under a fresh prefix and deletes
it afterwards. Counts are deterministic for a corpus: compare them across revisions.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import save
from benchmarks.state_bytes import feed_pipeline

#: RedisKV methods that reach the server, and whether their first argument is one key.
_CALLS = {"get": True, "zupto": True, "mget": False, "fetch": False, "apply": False,
          "apply_checked": False}


def _family(key: str) -> str:
    cut = min((i for i in (key.find(":"), key.find("#")) if i > 0), default=len(key))
    return key[:cut]


def count(sim: Path, records: int, batch_size: int) -> dict[str, Any]:
    from reglink.core.pipeline import Pipeline
    from reglink.core.settings import load_settings
    from reglink.kafka_auth import connect_redis
    from reglink.stores import kv as kvm

    calls: Counter[str] = Counter()
    keys: Counter[str] = Counter()

    def counted(name: str, orig: Any) -> Any:
        def call(self: Any, *args: Any, **kw: Any) -> Any:
            if name == "fetch":
                if not args[0] and not args[1]:
                    return orig(self, *args, **kw)  # nothing to read: no round trip
                for k in [*args[0], *args[1]]:
                    keys[f"fetch {_family(k)}"] += 1
            elif _CALLS[name]:
                keys[f"{name} {_family(args[0])}"] += 1
            elif name == "mget":
                for k in args[0]:
                    keys[f"mget {_family(k)}"] += 1
            calls[name] += 1
            return orig(self, *args, **kw)
        return call

    saved = {name: getattr(kvm.RedisKV, name) for name in _CALLS}
    for name, orig in saved.items():  # RedisKV is a plain class, also when compiled
        setattr(kvm.RedisKV, name, counted(name, orig))
    base = load_settings()
    client = connect_redis(base, "admin")
    prefix = f"{base.redis_prefix}trips-{uuid.uuid4().hex[:8]}:"
    pipe = Pipeline(load_settings(redis_prefix=prefix, hmac_key="round-trips-benchmark"),
                    kvm.RedisKV(client, prefix))
    try:
        n = feed_pipeline(pipe, sim, records, batch_size)
    finally:
        for name, orig in saved.items():
            setattr(kvm.RedisKV, name, orig)
        for k in client.scan_iter(match=f"{prefix}*", count=5000):
            client.unlink(k)
        client.close()
    total = sum(calls.values())
    return {"records": n, "batch": batch_size, "round_trips": total,
            "round_trips_per_1000_records": round(1000 * total / max(1, n), 1),
            "calls": dict(calls.most_common()), "keys_read": dict(keys.most_common(30))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.round_trips")
    ap.add_argument("sim", type=Path)
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--plugins", help="only these pipeline plug-ins (comma-separated)")
    a = ap.parse_args(argv)
    if a.plugins:
        import reglink.core.pipeline as p
        names = a.plugins.split(",")
        p.PLUGINS = tuple(r for r in p.PLUGINS if r.name in names)
    out = count(a.sim, a.records, a.batch)
    out["plugins"] = a.plugins or "all"
    print(json.dumps(out, indent=1))
    save("round_trips", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
