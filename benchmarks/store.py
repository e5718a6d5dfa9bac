"""Identity store at scale: bulk-load synthetic identities into Redis in the layout the worker
writes (``KVIdentityStore`` over ``RedisKV``: compact identities, blocking index packed into
bucket hashes), bytes per identity from ``INFO memory``, candidate lookup (the worker's real
path: ``BlockingCandidates.candidates`` = ``KVIdentityStore.find`` + ``get_many`` over
``RedisKV``) p50/p99 at each size.

    .venv/bin/python -m benchmarks store --store-sizes 100000,1000000,10000000 \\
        [--store-before 9e0e631]

Fast path: identities are built in Python (same identity encoding and same pseudonymised
blocking keys as the linker writes) and written by the worker's own commit path,
``RedisKV.apply_checked`` with no checks (one compare-and-apply script call per chunk of
``CHUNK`` identities: the same Lua that maps the index keys), so the bulk load writes exactly
what the store writes. Everything lives under a unique prefix and is deleted afterwards
(SCAN + UNLINK). The baseline in the same run is a bare ``GET`` of one key: the round-trip
floor. ``--store-before REV`` also measures revision REV's own benchmark (its layout and its
lookup code, exported with ``git archive``) in the same run, as the "before" rows.
"""

from __future__ import annotations

import functools
import json
import random
import subprocess
import sys
import tempfile
import time
import uuid

from benchmarks.common import ROOT, pct

BATCH = 5000
CHUNK = 2000  # identities per script call of the bulk load
SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯"
            "邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈")
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红玉兰文斌浩宇"


@functools.cache
def _pool() -> list:
    from matchers.normalise import normalise_name
    return [normalise_name(a + b + c) for a in SURNAMES for b in GIVEN[:12] for c in GIVEN[12:]]


def _people(start: int, n: int, rnd: random.Random):
    from matchers.types import PersonRecord
    pool = _pool()
    for i in range(start, start + n):
        name = rnd.choice(pool)
        birth = f"{rnd.randint(1950, 2005)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"
        area = f"{rnd.randint(11, 65)}{rnd.randint(1, 20):02d}"
        yield PersonRecord(
            key=f"bench:{i}", source="person", name=name.text, script=name.script,
            syllables=name.syllables, name_key=name.key, surname=name.surname, aliases=(),
            alias_names=(), id_kind="resident", id_hash=f"{i:024x}", id_valid=True,
            id_flag=None, birth_date=birth, sex=rnd.choice("MF"), phone_hash=f"f{i:023x}",
            home=area, id_near=(), id_swap=(), id_del=(), id_area=area, address=None)


def _resp(args: list) -> bytes:
    """One command in the Redis protocol (redis-py's own packer costs ~7 us per argument;
    a bulk chunk has ~60k arguments)."""
    out = [f"*{len(args)}\r\n"]
    add = out.append
    for a in args:
        if not isinstance(a, str):
            a = str(a)
        add(f"${len(a) if a.isascii() else len(a.encode())}\r\n{a}\r\n")
    return "".join(out).encode()


def _load_part(prefix: str, start: int, n: int, seed: int) -> list:
    client = _client()
    try:
        return load(client, prefix, start, n, seed)
    finally:
        client.close()


def load_parallel(client, prefix: str, start: int, n: int, seed: int, procs: int) -> list:
    """:func:`load` split over ``procs`` processes (each its own range, seed and connection)."""
    if procs <= 1:
        return load(client, prefix, start, n, seed)
    import multiprocessing

    _pool()  # built once, inherited by the children
    cut = [start + n * i // procs for i in range(procs + 1)]
    with multiprocessing.get_context("fork").Pool(procs) as workers:
        parts = workers.starmap(_load_part, [(prefix, cut[i], cut[i + 1] - cut[i],
                                              seed * 100 + i) for i in range(procs)])
    return [rec for part in parts for rec in part]


def load(client, prefix: str, start: int, n: int, seed: int) -> list:
    """Write identities [start, start+n) as ``KVIdentityStore.save`` does (identity string,
    its blocking keys' index sets, the identity counter): the arguments of the worker's
    compare-and-apply script from ``RedisKV.cas_args`` (no checks), one script call per
    ``CHUNK`` identities, the next chunk built while Redis runs the previous one; return a
    sample of records (0.2 %) for the lookups."""
    from matchers.candidates import BlockingCandidates
    from matchers.pseudo import Pseudonymiser
    from matchers.types import Identity
    from reglink.stores.identity import _dump
    from reglink.stores.kv import CAS_SCRIPT, RedisKV

    kv = RedisKV(client, prefix)
    sha = client.script_load(CAS_SCRIPT)
    sha = sha.decode() if isinstance(sha, bytes) else sha
    finder = BlockingCandidates(Pseudonymiser("bench"))
    rnd = random.Random(seed)
    sample: list = []
    ops: list[tuple] = []
    index: dict[str, list[str]] = {}
    count, pending = 0, 0
    conn = client.connection_pool.get_connection()

    def reply() -> None:
        got = conn.read_response()
        if int(got) != 1:
            raise RuntimeError(f"bulk chunk not applied: {got!r}")

    def flush() -> None:
        nonlocal ops, index, count, pending
        ops += [("sadd", f"b:{k}", m) for k, m in index.items()]
        ops.append(("incrby", "n:identities", count))
        keys, argv = kv.cas_args(ops, {}, {})
        conn.send_packed_command([_resp(["EVALSHA", sha, len(keys), *keys, *argv])])
        if pending:
            reply()  # the previous chunk's: Redis ran it while this one was built
        pending = 1
        ops, index, count = [], {}, 0

    try:
        for rec in _people(start, n, rnd):
            ident = Identity(person_id=f"P{rec.id_hash[-16:]}", anchor=f"rid:{rec.id_hash}")
            ident.absorb(rec)
            ops.append(("set", f"i:{ident.person_id}", _dump(ident)))
            for k in finder.keys(rec):
                index.setdefault(k, []).append(ident.person_id)
            count += 1
            if count >= CHUNK:
                flush()
            if rnd.random() < 0.002:
                sample.append(rec)
        if count:
            flush()
        if pending:
            reply()
    finally:
        client.connection_pool.release(conn)
    return sample


def lookups(client, prefix: str, sample: list, n: int = 2000) -> dict:
    from matchers.candidates import BlockingCandidates
    from matchers.pseudo import Pseudonymiser
    from reglink.stores.identity import KVIdentityStore
    from reglink.stores.kv import RedisKV

    finder = BlockingCandidates(Pseudonymiser("bench"))
    store = KVIdentityStore(RedisKV(client, prefix), cache=1)
    recs = [sample[i % len(sample)] for i in range(n)]
    lat, bare, found = [], [], 0
    for rec in recs:
        t0 = time.perf_counter()
        client.get(f"{prefix}n:none")
        t1 = time.perf_counter()
        store.forget()  # measure a cold decode, as a worker meets most candidates
        cands = finder.candidates(rec, store)
        t2 = time.perf_counter()
        bare.append((t1 - t0) * 1e3)
        lat.append((t2 - t1) * 1e3)
        found += len(cands)
    return {"lookup_ms": {"p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat)},
            "bare_get_ms": {"p50": pct(bare, 50), "p99": pct(bare, 99)},
            "mean_candidates": found / len(recs)}


def _used(client) -> int:
    return int(client.info("memory")["used_memory"])


def _client():
    """The stack's Redis (REGLINK_* settings) as its ``admin`` user in scram mode: the benchmark
    bulk-loads, reads INFO memory and UNLINKs its prefix, which no application role may."""
    from reglink.core.settings import load_settings
    from reglink.kafka_auth import connect_redis

    return connect_redis(load_settings(), "admin")


def cleanup(client, prefix: str) -> None:
    pipe = client.pipeline(transaction=False)
    n = 0
    for key in client.scan_iter(match=f"{prefix}*", count=10000):
        pipe.unlink(key)
        n += 1
        if n % BATCH == 0:
            pipe.execute()
    pipe.execute()


def _encodings(client, prefix: str) -> dict:
    """How Redis encoded a sample of the index's bucket hashes (listpack is the compact one)."""
    seen: dict[str, int] = {}
    for i, key in enumerate(client.scan_iter(match=f"{prefix}b#*", count=1000)):
        if b"@" in key:
            continue
        enc = client.object("encoding", key)
        enc = enc.decode() if isinstance(enc, bytes) else str(enc)
        seen[enc] = seen.get(enc, 0) + 1
        if i >= 2000:
            break
    return seen


def run(sizes: list[int], procs: int = 2) -> dict:
    client = _client()
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    out, loaded, sample = [], 0, []
    used0 = _used(client)
    try:
        for size in sorted(sizes):
            t0 = time.perf_counter()
            sample += load_parallel(client, prefix, loaded, size - loaded, size, procs)
            secs = time.perf_counter() - t0
            added = size - loaded
            loaded = size
            time.sleep(0.5)
            used = _used(client) - used0
            row = {"identities": size, "layout": "compact", "load_processes": procs,
                   "load_seconds": round(secs, 1),
                   "load_identities_per_s": round(added / secs),
                   "redis_bytes_per_identity": round(used / size),
                   "redis_used_memory_mib": round(used / 2**20),
                   "bucket_encodings": _encodings(client, prefix),
                   **lookups(client, prefix, sample)}
            out.append(row)
            print(row, flush=True)
    finally:
        cleanup(client, prefix)
    base = out[0]["lookup_ms"]["p99"]
    for row in out:
        row["p99_vs_smallest"] = round(row["lookup_ms"]["p99"] / base, 3)
    return {"prefix": prefix, "sizes": out}


def run_before(sizes: list[int], rev: str) -> dict:
    """Revision ``rev``'s own store benchmark (its layout, its lookup code), same machine and
    Redis, in a child process on a ``git archive`` export of that revision."""
    with tempfile.TemporaryDirectory(prefix="reglink-before-") as tmp:
        arch = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True,
                              capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=arch, check=True)
        code = ("import json, sys; from benchmarks import store; "
                f"print('RESULT' + json.dumps(store.run({sorted(sizes)!r})))")
        res = subprocess.run([sys.executable, "-c", code], cwd=tmp, check=True,
                             capture_output=True, text=True)
        line = next(x for x in res.stdout.splitlines() if x.startswith("RESULT"))
        got = json.loads(line[len("RESULT"):])
    got["revision"] = rev
    return got
