"""Client CPU of one ``RedisKV`` round trip: redis-py's per-command machinery against a lean
path (a held pool connection, ``hiredis.pack_command``, ``send_packed_command``,
``read_response``), on the real Redis.

    REGLINK_STATE_DIR=.reglink .venv/bin/python -m benchmarks.redis_roundtrip \
        [--calls 2000] [--rounds 3] [--name redis_roundtrip]

Needs Redis up (``reglink stack up``); runs as the ``worker`` user under a key prefix of its
own, deleted after. Prints JSON (and saves it in ``benchmarks/results/<name>.json``): per
variant and round, client CPU microseconds per call (``time.process_time``: this process
only, not the server) and wall microseconds per call; variants alternate every round.

Variants (same keys, same arguments):

* ``kv_*_redispy``: ``RedisKV.fetch`` (3 strings, 3 sets: two index fields, one plain set),
  ``RedisKV.get``, ``RedisKV.apply_checked`` (a SET and an SADD, one string and one set
  checked) through redis-py (``Script.__call__`` -> ``evalsha`` -> ``execute_command``);
  ``kv_*_lean``: the same methods on a tree whose ``RedisKV`` has a lean path (``_call``).
  The shipped ``RedisKV`` has no such path (it was measured and not merged, see
  docs/performance-history.md); the ``call_*`` variants show what it would save.
* ``call_*``: the round trip alone, arguments built once: ``redispy`` (the ``Script`` object
  / ``Redis.get``), ``borrow`` (a pool connection taken and released per call),
  ``held`` (one connection held: pack, send, read).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _held(client):
    """The lean round trip on one connection taken from the client's pool once."""
    import hiredis
    from redis.exceptions import NoScriptError

    conn = client.connection_pool.get_connection()
    pack = hiredis.pack_command

    def call(*args):
        conn.send_packed_command([pack(args)])
        return conn.read_response()

    def script(s, keys, args):
        try:
            return call("EVALSHA", s.sha, len(keys), *keys, *args)
        except NoScriptError:
            call("SCRIPT", "LOAD", s.script)
            return call("EVALSHA", s.sha, len(keys), *keys, *args)

    return call, script, conn


def _borrow(client):
    """The lean round trip on a connection taken from the pool and released per call."""
    import hiredis

    pool = client.connection_pool
    pack = hiredis.pack_command

    def call(*args):
        conn = pool.get_connection()
        try:
            conn.send_packed_command([pack(args)])
            return conn.read_response()
        finally:
            pool.release(conn)

    return call


def _timed(fn, calls: int) -> dict:
    fn()  # warm: connection, script loaded
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(calls):
        fn()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {"cpu_us": round(1e6 * cpu / calls, 2), "wall_us": round(1e6 * wall / calls, 2)}


def run(calls: int, rounds: int) -> dict:
    from reglink.core.settings import Settings
    from reglink.kafka_auth import connect_redis

    base = Settings()
    prefix = f"{base.redis_prefix}rtbench:{uuid.uuid4().hex[:8]}:"
    client = connect_redis(base.model_copy(update={"redis_prefix": prefix}), "worker")
    try:
        return _measure(client, prefix, calls, rounds)
    finally:
        admin = connect_redis(base, "admin")
        keys = list(admin.scan_iter(match=prefix.replace("*", "\\*") + "*", count=1000))
        if keys:
            admin.delete(*keys)
        admin.close()
        client.close()


def _measure(client, prefix: str, calls: int, rounds: int) -> dict:
    from reglink.stores.kv import _CAS, _FETCH, RedisKV

    old = RedisKV(client, prefix)
    old.lean = False
    new = RedisKV(client, prefix)
    new.lean = True
    has_lean = hasattr(RedisKV, "_call")  # the tree under test has the lean path
    b1, b2 = "b:" + "a1" * 8, "b:" + "c3" * 8
    old.apply([("set", "s1", "v1"), ("set", "s2", "v2 " * 20), ("sadd", "p", ["x", "y"])])
    old.apply_checked([("sadd", b1, ["P" + "ab" * 8, "~m1"]), ("sadd", b2, ["~m2"])], {}, {})
    strings, sets = ["s1", "s2", "missing"], [b1, b2, "p"]
    ops = [("set", "s1", "v1"), ("sadd", b1, ["~m1"])]
    checks, cards = {"s2": "v2 " * 20}, {b1: 2}

    # what the methods send, built once for the call_* variants
    fetch_s, cas_s = client.register_script(_FETCH), client.register_script(_CAS)
    fkeys = [prefix + k for k in strings] + [old._loc(k)[0] for k in sets]
    fargv: list = [len(strings)]
    for k in sets:
        f = old._loc(k)[1]
        fargv += ["" if f is None else f, ""]
    ckeys, cargv = old.cas_args(ops, checks, cards)
    call, script, conn = _held(client)
    borrow = _borrow(client)

    def borrow_script(s, keys, args):
        return borrow("EVALSHA", s.sha, len(keys), *keys, *args)

    assert script(fetch_s, fkeys, fargv) == fetch_s(keys=fkeys, args=fargv)
    assert int(script(cas_s, ckeys, cargv)) == 1
    variants = {"kv_fetch_redispy": lambda: old.fetch(strings, sets)}
    if has_lean:  # each operation's variants side by side: they share the machine's moment
        assert new.fetch(strings, sets) == old.fetch(strings, sets)
        variants["kv_fetch_lean"] = lambda: new.fetch(strings, sets)
    variants["kv_get_redispy"] = lambda: old.get("s1")
    if has_lean:
        variants["kv_get_lean"] = lambda: new.get("s1")
    variants["kv_apply_checked_redispy"] = lambda: old.apply_checked(ops, checks, cards)
    if has_lean:
        variants["kv_apply_checked_lean"] = lambda: new.apply_checked(ops, checks, cards)
    variants.update({
        "call_fetch_redispy": lambda: fetch_s(keys=fkeys, args=fargv),
        "call_fetch_borrow": lambda: borrow_script(fetch_s, fkeys, fargv),
        "call_fetch_held": lambda: script(fetch_s, fkeys, fargv),
        "call_get_redispy": lambda: client.get(prefix + "s1"),
        "call_get_borrow": lambda: borrow("GET", prefix + "s1"),
        "call_get_held": lambda: call("GET", prefix + "s1"),
        "call_cas_redispy": lambda: cas_s(keys=ckeys, args=cargv),
        "call_cas_held": lambda: script(cas_s, ckeys, cargv),
    })
    out: dict = {"calls": calls, "rounds": rounds, "runs": {k: [] for k in variants}}
    try:
        for _ in range(rounds):
            for name, fn in variants.items():
                out["runs"][name].append(_timed(fn, calls))
    finally:
        client.connection_pool.release(conn)
    med = {}
    for name, rows in out["runs"].items():
        med[name] = {k: sorted(r[k] for r in rows)[len(rows) // 2] for k in ("cpu_us", "wall_us")}
    out["median"] = med
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--name", default="redis_roundtrip", help="results file name (no .json)")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import save

    out = run(a.calls, a.rounds)
    print(json.dumps(out["median"], indent=2))
    save(a.name, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
