"""The identity store over a :class:`~reglink.stores.kv_api.KeyValue` backend.

Its keys (identities, merged-into pointers, record links, the blocking index, the identity
count) are the identity families of :mod:`reglink.stores.schema`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from matchers import fastjson
from matchers.types import SET_FIELDS, Identity, PurgeReport
from reglink.stores import schema as sk
from reglink.stores.kv import Conflict, MemoryKV, RedisKV
from reglink.stores.kv_api import IdentityKV, IndexKV, KeyValue, Op

_SET_FIELDS = SET_FIELDS


def _dump(ident: Identity) -> str:
    """An identity as stored: a positional JSON array (no field names, no person id, which is
    in the key; ``"="`` for the usual anchor ``rid:<rid_hash>`` and for the resident ID among
    the id hashes; trailing empty sets left out): ~170 B instead of ~450 B of JSON object for
    a one-record identity."""
    anchor = "=" if ident.rid_hash is not None and ident.anchor == f"rid:{ident.rid_hash}" \
        else ident.anchor
    row: list[Any] = [anchor, ident.rid_hash, ident.home, ident.records, ident.last_report,
                 ident.last_record]
    row += [sorted(getattr(ident, f)) for f in _SET_FIELDS]
    if ident.rid_hash is not None and ident.rid_hash in ident.id_hashes:
        # "=" in id_hashes: the resident ID itself (id hashes are hex HMACs, never "=")
        row[_HEAD] = ["=", *(h for h in row[_HEAD] if h != ident.rid_hash)]
    while not row[-1] and len(row) > 6:
        row.pop()
    return fastjson.dumps(row)


_HEAD = 6  # anchor, rid_hash, home, records, last_report, last_record


def _from_row(person_id: str, row: list[Any]) -> Identity:
    anchor, rid_hash = row[0], row[1]
    ident = Identity(person_id=person_id,
                     anchor=f"rid:{rid_hash}" if anchor == "=" else anchor,
                     rid_hash=rid_hash, home=row[2], records=row[3], last_report=row[4],
                     last_record=row[5])
    for f, values in zip(_SET_FIELDS, row[_HEAD:], strict=False):
        setattr(ident, f, set(values))
    ids = ident.id_hashes
    if "=" in ids:
        ids.discard("=")
        ids.add(rid_hash)
    return ident


def _load(raw: str, person_id: str = "") -> Identity:
    """Decode either form: the positional array (``person_id`` from its key) or a JSON
    object (it carries its person id)."""
    d = fastjson.loads(raw)
    if isinstance(d, list):
        return _from_row(person_id, d)
    for f in _SET_FIELDS:
        d[f] = set(d.get(f, ()))
    return Identity(**d)


try:  # msgspec decodes straight into the dataclass (lists -> sets): ~4x faster than _load
    import msgspec

    _typed = msgspec.json.Decoder(Identity)
    _rows = msgspec.json.Decoder(list[Any])

    def _load_fast(raw: str, person_id: str = "") -> Identity:
        if raw[:1] == "{":
            return _typed.decode(raw)
        return _from_row(person_id, _rows.decode(raw))
except ImportError:  # pragma: no cover
    _load_fast = _load


_KV = TypeVar("_KV", bound=IndexKV, covariant=True)


class KVIdentityStore(Generic[_KV]):
    """Implements :class:`matchers.types.IdentityStore` over ``kv``: an :class:`IndexKV`
    saves and finds; :meth:`retire` needs an :class:`IdentityKV`, :meth:`purge` a
    committed store (:class:`KeyValue`)."""

    def __init__(self, kv: _KV, max_bucket: int = 200, cache: int = 50_000) -> None:
        self.kv = kv
        self.max_bucket = max_bucket  # a blocking key shared by more ids is too common to use
        # Decoded identities by person id, with the exact JSON they were decoded from: a hit
        # needs the stored JSON to be equal (so another writer's update is always seen) and
        # saves the JSON parse. Callers mutate an identity only to save() it, which refreshes
        # the entry; forget() drops everything (a rolled-back unit of work).
        self._cache: dict[str, tuple[str, Identity]] = {}
        self._cache_max = cache

    def forget(self) -> None:
        self._cache.clear()

    def _decode(self, person_id: str, raw: str) -> Identity:
        hit = self._cache.get(person_id)
        if hit is not None and hit[0] == raw:
            return hit[1]
        ident = _load_fast(raw, person_id)
        self._remember(person_id, raw, ident)
        return ident

    def _remember(self, person_id: str, raw: str, ident: Identity) -> None:
        cache = self._cache
        if len(cache) >= self._cache_max and person_id not in cache:
            # Clear rather than evict one by one: popping a dict's first entry again and
            # again is O(n) each time (CPython scans the deleted slots), which made a
            # 1M-record replay spend a third of its time here.
            cache.clear()
        cache[person_id] = (raw, ident)

    def get(self, person_id: str) -> Identity | None:
        raw = self.kv.get(sk.IDENTITY + person_id)
        return self._decode(person_id, raw) if raw else None

    def get_many(self, person_ids: list[str]) -> list[Identity]:
        raws = self.kv.mget([sk.IDENTITY + p for p in person_ids])
        return [self._decode(p, r) for p, r in zip(person_ids, raws, strict=True) if r]

    def resolve(self, person_id: str) -> str:
        seen = 0
        while (nxt := self.kv.get(sk.MERGED + person_id)) is not None and seen < 64:
            person_id, seen = nxt, seen + 1
        return person_id

    def find(self, keys: Iterable[str], limits: list[int | None] | None = None) -> set[str]:
        """``limits`` (optional, one per key): a smaller bucket bound for that key."""
        found: set[str] = set()
        mx = self.max_bucket
        read = self.kv.smembers_many_shared  # uncopied: only read here
        # A bucket over its bound comes back as its size only (Redis does not send it):
        # a lookup's cost does not grow with a common key's population.
        caps = mx if limits is None else [mx if lim is None else min(lim, mx) for lim in limits]
        sets = read([sk.BLOCKING + k for k in keys], caps)
        if limits is None:
            for members in sets:
                if len(members) <= mx:  # a key shared by more is too common to use
                    found.update(members)
        else:
            for members, lim in zip(sets, limits, strict=True):
                if len(members) <= (mx if lim is None else min(lim, mx)):
                    found.update(members)
        if not found:
            return found
        ids = sorted(found)
        # One round trip for the first hop and the identities themselves (get_many reads them
        # from the unit of work's read cache when the store sits on a TxKV).
        both = self.kv.mget([sk.MERGED + p for p in ids] + [sk.IDENTITY + p for p in ids])
        pointers = both[:len(ids)]
        return {p if ptr is None else self.resolve(ptr) for p, ptr in zip(ids, pointers,
                                                                           strict=True)}

    def save(self, identity: Identity, keys: Iterable[str]) -> None:
        pid = identity.person_id
        kv = self.kv
        ikey = sk.IDENTITY + pid
        if kv.get(ikey) is None:
            kv.incr(sk.IDENTITY_COUNT)
        raw = _dump(identity)
        kv.set(ikey, raw)
        self._remember(pid, raw, identity)
        members = [pid]
        for key in keys:
            kv.sadd(sk.BLOCKING + key, members)

    def retire(self: KVIdentityStore[IdentityKV], absorbed_id: str, into: str) -> None:
        if absorbed_id == into:
            return
        self.kv.set(sk.merged(absorbed_id), into)
        if self.kv.get(sk.identity(absorbed_id)) is not None:
            self._cache.pop(absorbed_id, None)
            self.kv.delete(sk.identity(absorbed_id))
            self.kv.set(sk.IDENTITY_COUNT, str(max(0, self.count() - 1)))

    def prefetch(self, record_key: str, keys: list[str], person_ids: tuple[str, ...] = (),
                 extra: tuple[str, ...] = ()) -> None:
        """Warm the unit of work's read cache with what linking reads first (the record's
        link, its blocking sets, the identity it would found, the counter; ``extra`` raw
        keys): one round trip instead of several."""
        # a unit of work reads ahead (TxKV.prefetch); a store on its own has nothing to warm
        pre: Callable[[list[str], list[str], int | None], None] | None = getattr(
            self.kv, "prefetch", None)
        if pre is not None:
            pre([sk.LINK + record_key, *[sk.IDENTITY + p for p in person_ids], sk.IDENTITY_COUNT,
                 *extra],
                [sk.BLOCKING + k for k in keys], self.max_bucket)

    def link_of(self, record_key: str) -> str | None:
        pid = self.kv.get(sk.LINK + record_key)
        return self.resolve(pid) if pid else None

    def set_link(self, record_key: str, person_id: str) -> None:
        self.kv.set(sk.LINK + record_key, person_id)

    def count(self) -> int:
        return int(self.kv.get(sk.IDENTITY_COUNT) or 0)

    # ------------------------------------------------------------------ retention sweep
    def purge(self: KVIdentityStore[KeyValue], before: float,
              keep: Callable[[Identity, dict[str, str | None]], str | None] | None = None,
              state_keys: Callable[[str], list[str]] | None = None,
              dry_run: bool = False, batch: int = 500,
              yield_ratio: float = 1.0) -> PurgeReport:
        """Delete every identity whose latest record is older than ``before`` (epoch s):
        its identity key, its blocking-index entries, the merged-into pointers and the
        record links that lead to it, and the caller's ``state_keys(person_id)`` (rule
        state). ``keep(identity, state)`` may name a reason to keep it (``state``: the
        values of its state keys). Identities without a report time are kept.

        One pass over the keyspace (SCAN on Redis) finds the identities, pointers, links and
        index entries. Safe beside running writers: identities are deleted in compare-and-
        apply units of 50 (``RedisKV.apply_checked``, one atomic script each) that apply only
        if every identity, state key, pointer and link still holds what the sweep read; on a
        conflict the 50 go one by one, and an identity a writer touched in the meantime is
        left for the next run (``conflicts``). A writer that read an identity before the
        purge conflicts on its own commit (a string it read is gone, a blocking set shrank)
        and re-reads. On a shared store the sweep pauses after each unit for ``yield_ratio``
        times as long as the unit took, so writers re-reading a shared blocking set get a
        window to commit in (a sweep that commits back to back can keep one writer
        conflicting through all of its retries)."""
        rep = PurgeReport(dry_run=dry_run)
        state_keys = state_keys or (lambda _pid: [])
        doomed: dict[str, tuple[str, dict[str, str | None]]] = {}
        # One pass over the keyspace (a SCAN on Redis), sorted by kind.
        kinds: dict[str, list[str]] = {sk.IDENTITY: [], sk.MERGED: [], sk.LINK: [], sk.BLOCKING: []}
        for k in self.kv.scan(""):
            got = kinds.get(k[:2])  # the four families' prefixes are two characters
            if got is not None:
                got.append(k)
        pids = sorted(k[len(sk.IDENTITY):] for k in kinds[sk.IDENTITY])
        for n in range(0, len(pids), batch):
            chunk = pids[n:n + batch]
            for pid, raw in zip(chunk, self.kv.mget([sk.IDENTITY + p for p in chunk]), strict=True):
                if raw is None:
                    continue
                rep.examined += 1
                ident = _load(raw, pid)
                if ident.last_report is None:
                    rep.kept["no_report_time"] = rep.kept.get("no_report_time", 0) + 1
                    continue
                if ident.last_report >= before:
                    continue
                rep.expired += 1
                skeys = state_keys(pid)
                state = dict(zip(skeys, self.kv.mget(skeys), strict=True)) if skeys else {}
                why = keep(ident, state) if keep is not None else None
                if why:
                    rep.kept[why] = rep.kept.get(why, 0) + 1
                    continue
                doomed[pid] = (raw, state)
        if not doomed:
            return rep
        # Merged-into pointers: follow every chain to its end (absorbed ids lead to a survivor).
        pointers: dict[str, str] = {}
        mkeys = kinds[sk.MERGED]
        for n in range(0, len(mkeys), batch):
            chunk = mkeys[n:n + batch]
            for k, v in zip(chunk, self.kv.mget(chunk), strict=True):
                if v is not None:
                    pointers[k[len(sk.MERGED):]] = v

        def final(p: str) -> str:
            seen = 0
            while p in pointers and seen < 64:
                p, seen = pointers[p], seen + 1
            return p

        extra: dict[str, dict[str, str]] = {p: {} for p in doomed}  # pid -> {key: value}
        members: dict[str, list[tuple[str, str]]] = {p: [] for p in doomed}
        for absorbed, into in pointers.items():
            end = final(absorbed)
            if end in doomed:
                extra[end][sk.merged(absorbed)] = into
        lkeys = kinds[sk.LINK]
        for n in range(0, len(lkeys), batch):
            chunk = lkeys[n:n + batch]
            for k, v in zip(chunk, self.kv.mget(chunk), strict=True):
                if v is not None and (end := final(v)) in doomed:
                    extra[end][k] = v
        bkeys = kinds[sk.BLOCKING]
        for n in range(0, len(bkeys), batch):
            chunk = bkeys[n:n + batch]
            for k, ms in zip(chunk, self.kv.smembers_many(chunk), strict=True):
                for m in ms:
                    if (end := final(m)) in doomed:
                        members[end].append((k, m))

        def unit(pid: str) -> tuple[list[Op], dict[str, str | None]]:
            raw, state = doomed[pid]
            ops: list[Op] = [("delete", sk.identity(pid))]
            ops += [("srem", k, m) for k, m in members[pid]]
            ops += [("delete", k) for k in sorted(extra[pid])]
            ops += [("delete", k) for k, v in state.items() if v is not None]
            ops.append(("incrby", sk.IDENTITY_COUNT, -1))
            return ops, {sk.identity(pid): raw, **state, **extra[pid]}

        checked: Callable[[list[Op], dict[str, str | None], dict[str, int]], None] | None = \
            getattr(self.kv, "apply_checked", None)  # None: embedded store (SharedKV: Redis)

        def commit(group: list[str]) -> None:
            ops: list[Op] = []
            expect: dict[str, str | None] = {}
            for pid in group:
                o, e = unit(pid)
                ops += o
                expect.update(e)
            if checked is not None:
                checked(ops, expect, {})
            else:  # embedded store: one writer by construction
                self.kv.apply(ops)

        done: list[str] = []
        order = list(doomed)
        for n in range(0, 0 if dry_run else len(order), 50):
            group = order[n:n + 50]  # 50 identities per atomic unit: one round trip
            t0 = time.perf_counter()
            try:
                commit(group)
                done += group
            except Conflict:  # someone touched one of them: each alone, the rest still go
                for pid in group:
                    try:
                        commit([pid])
                        done.append(pid)
                    except Conflict:
                        rep.conflicts += 1
            if checked is not None and yield_ratio > 0:  # shared: leave writers a window
                time.sleep((time.perf_counter() - t0) * yield_ratio)
        for pid in (order if dry_run else done):
            self._cache.pop(pid, None)
            state = doomed[pid][1]
            links = sum(1 for k in extra[pid] if k.startswith(sk.LINK))
            rep.person_ids.append(pid)
            rep.index_entries += len(members[pid])
            rep.links += links
            rep.pointers += len(extra[pid]) - links
            rep.state_keys += sum(1 for v in state.values() if v is not None)
        return rep


def embedded_store() -> KVIdentityStore[MemoryKV]:
    return KVIdentityStore(MemoryKV())


def redis_store(client: Any, prefix: str) -> KVIdentityStore[RedisKV]:
    return KVIdentityStore(RedisKV(client, prefix))
