"""Identity store at scale: bulk-load synthetic identities into Redis, bytes per identity from
``INFO memory``, candidate lookup (the worker's real path: ``KVIdentityStore.find`` +
``get_many`` over ``RedisKV``) p50/p99 at each size.

    .venv/bin/python -m benchmarks store [--sizes 100000,1000000]

Fast path: identities are built in Python (same JSON and same pseudonymised blocking keys as
the linker writes) and sent in pipelines of 5,000 commands without MULTI. Everything lives under
a unique prefix on the shared Redis and is deleted afterwards (SCAN + UNLINK).
The baseline in the same run is a bare ``GET`` of one key: the round-trip floor.
"""

from __future__ import annotations

import random
import time
import uuid

from .common import pct

BATCH = 5000
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红玉兰文斌浩宇"


def _people(start: int, n: int, rnd: random.Random):
    from matchers.normalise import normalise_name
    from matchers.types import PersonRecord
    pool = [normalise_name(a + b + c) for a in SURNAMES for b in GIVEN[:12] for c in GIVEN[12:]]
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


def _bulk(client, start: int, n: int, seed: int, write) -> list:
    """The fast path shared by both layouts: build each synthetic identity, let ``write`` queue
    its commands on a non-transactional pipeline, flush every ``BATCH`` commands; return a
    sample of records (0.2 %) for the lookups."""
    from matchers.candidates import BlockingCandidates
    from matchers.pseudo import Pseudonymiser
    from matchers.types import Identity

    finder = BlockingCandidates(Pseudonymiser("bench"))
    rnd = random.Random(seed)
    pipe = client.pipeline(transaction=False)
    sample, queued = [], 0
    for rec in _people(start, n, rnd):
        ident = Identity(person_id=f"P{rec.id_hash[-16:]}", anchor=f"rid:{rec.id_hash}")
        ident.absorb(rec)
        queued += write(pipe, ident, finder.keys(rec))
        if queued >= BATCH:
            pipe.execute()
            queued = 0
        if rnd.random() < 0.002:
            sample.append(rec)
    pipe.execute()
    return sample


def load(client, prefix: str, start: int, n: int, seed: int) -> list:
    """Write identities [start, start+n) in today's JSON layout."""
    from matchers.stores.identity import _dump

    def write(pipe, ident, keys) -> int:
        pipe.set(f"{prefix}i:{ident.person_id}", _dump(ident))
        for k in keys:
            pipe.sadd(f"{prefix}b:{k}", ident.person_id)
        return 1 + len(keys)

    return _bulk(client, start, n, seed, write)


def lookups(client, prefix: str, sample: list, n: int = 2000) -> dict:
    from matchers.candidates import BlockingCandidates
    from matchers.pseudo import Pseudonymiser
    from matchers.stores.identity import KVIdentityStore
    from matchers.stores.kv import RedisKV

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
    from reglink.kafka_auth import connect_redis
    from reglink.settings import load_settings

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


def run(sizes: list[int]) -> dict:
    client = _client()
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    out, loaded, sample = [], 0, []
    used0 = _used(client)
    try:
        for size in sorted(sizes):
            t0 = time.perf_counter()
            sample += load(client, prefix, loaded, size - loaded, seed=size)
            secs = time.perf_counter() - t0
            added = size - loaded
            loaded = size
            time.sleep(0.5)
            used = _used(client) - used0
            row = {"identities": size, "load_seconds": round(secs, 1),
                   "load_identities_per_s": round(added / secs),
                   "redis_bytes_per_identity": round(used / size),
                   "keys_per_identity": 7, **lookups(client, prefix, sample)}
            out.append(row)
            print(row, flush=True)
    finally:
        cleanup(client, prefix)
    base = out[0]["lookup_ms"]["p99"]
    for row in out:
        row["p99_vs_smallest"] = round(row["lookup_ms"]["p99"] / base, 3)
    return {"prefix": prefix, "sizes": out}


# --------------------------------------------------------------------------- compact layout
# A prototype of the layout the capacity guide proposes for 10^8 identities (not used by the
# worker yet): 8-byte binary ids, blocking keys as fields of bucketed hashes (small hashes are
# listpack-encoded by Redis: ~20 B per entry instead of ~100 B per top-level key), identities
# as msgpack with binary hashes.

def _bucket_bits(n: int) -> int:
    bits = 8
    while (1 << bits) * 80 < n * 6:  # ~80 entries per bucket: under hash-max-listpack-entries
        bits += 1
    return bits


def _compact_ident(ident) -> bytes:
    import msgspec

    def b(h):
        return bytes.fromhex(h[:24]) if h and len(h) >= 24 else h
    return msgspec.msgpack.encode([
        ident.anchor[:4], b(ident.rid_hash), ident.home, ident.records, ident.last_report,
        sorted(ident.names), sorted(ident.name_keys), sorted(ident.surnames),
        sorted(ident.birth_dates), sorted(ident.sexes), [b(h) for h in sorted(ident.id_hashes)],
        [b(h) for h in sorted(ident.phone_hashes)], sorted(ident.areas)])


def load_compact(client, prefix: str, start: int, n: int, seed: int, bits: int) -> list:
    """Write identities [start, start+n) in the compact prototype layout."""
    pre = prefix.encode()

    def write(pipe, ident, keys) -> int:
        pid = bytes.fromhex(ident.person_id[1:])
        pipe.set(pre + b"I" + pid, _compact_ident(ident))
        for k in keys:
            d = bytes.fromhex(k[:16])
            bucket = int.from_bytes(d[:4], "big") >> (32 - bits)
            # first writer wins here (prototype); the real index appends ids (Lua APPEND)
            pipe.execute_command("HSETNX", pre + b"B" + bucket.to_bytes(4, "big"), d, pid)
        return 1 + len(keys)

    return _bulk(client, start, n, seed, write)


def lookups_compact(client, prefix: str, sample: list, bits: int, n: int = 2000) -> dict:
    import msgspec

    from matchers.candidates import BlockingCandidates
    from matchers.pseudo import Pseudonymiser

    finder = BlockingCandidates(Pseudonymiser("bench"))
    pre = prefix.encode()
    dec = msgspec.msgpack.Decoder()
    lat, found = [], 0
    for i in range(n):
        rec = sample[i % len(sample)]
        t0 = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for k in finder.keys(rec):
            d = bytes.fromhex(k[:16])
            bucket = int.from_bytes(d[:4], "big") >> (32 - bits)
            pipe.hget(pre + b"B" + bucket.to_bytes(4, "big"), d)
        pids = {v[j:j + 8] for v in pipe.execute() if v for j in range(0, len(v), 8)}
        blobs = client.mget([pre + b"I" + p for p in sorted(pids)]) if pids else []
        cands = [dec.decode(b) for b in blobs if b]
        lat.append((time.perf_counter() - t0) * 1e3)
        found += len(cands)
    return {"lookup_ms": {"p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat)},
            "mean_candidates": found / n}


def run_compact(sizes: list[int]) -> dict:
    client = _client()
    prefix = f"benchc-{uuid.uuid4().hex[:8]}:"
    bits = _bucket_bits(max(sizes))
    out, loaded, sample = [], 0, []
    used0 = _used(client)
    try:
        for size in sorted(sizes):
            t0 = time.perf_counter()
            sample += load_compact(client, prefix, loaded, size - loaded, size, bits)
            secs = time.perf_counter() - t0
            added, loaded = size - loaded, size
            time.sleep(0.5)
            row = {"identities": size, "layout": "compact", "bucket_bits": bits,
                   "load_seconds": round(secs, 1), "load_identities_per_s": round(added / secs),
                   "redis_bytes_per_identity": round((_used(client) - used0) / size),
                   **lookups_compact(client, prefix, sample, bits)}
            print(row, flush=True)
            out.append(row)
    finally:
        cleanup(client, prefix)
    base = out[0]["lookup_ms"]["p99"]
    for row in out:
        row["p99_vs_smallest"] = round(row["lookup_ms"]["p99"] / base, 3)
    return {"prefix": prefix, "sizes": out}
