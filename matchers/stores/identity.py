"""The identity store over a :class:`~matchers.stores.kv.KeyValue` backend.

Layout (all keys pseudonymous):
  ``i:<person_id>``  identity JSON       ``b:<blocking key>``  set of person ids
  ``m:<person_id>``  merged-into pointer ``l:<record key>``    person id the record linked to
  ``n:identities``   live identity counter
"""

from __future__ import annotations

from collections.abc import Iterable

from .. import fastjson

from ..types import SET_FIELDS, Identity
from .kv import KeyValue, MemoryKV, RedisKV

_SET_FIELDS = SET_FIELDS


def _dump(ident: Identity) -> str:
    d = {"person_id": ident.person_id, "anchor": ident.anchor, "rid_hash": ident.rid_hash,
         "home": ident.home, "records": ident.records, "last_report": ident.last_report,
         "last_record": ident.last_record}
    for f in _SET_FIELDS:
        d[f] = sorted(getattr(ident, f))
    return fastjson.dumps(d)


def _load(raw: str) -> Identity:
    d = fastjson.loads(raw)
    for f in _SET_FIELDS:
        d[f] = set(d.get(f, ()))
    return Identity(**d)


try:  # msgspec decodes straight into the dataclass (lists -> sets): ~4x faster than _load
    import msgspec

    _typed = msgspec.json.Decoder(Identity)

    def _load_fast(raw: str) -> Identity:
        return _typed.decode(raw)
except ImportError:  # pragma: no cover
    _load_fast = _load


class KVIdentityStore:
    """Implements :class:`matchers.types.IdentityStore`."""

    def __init__(self, kv: KeyValue, max_bucket: int = 200, cache: int = 50_000) -> None:
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
        ident = _load_fast(raw)
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
        raw = self.kv.get(f"i:{person_id}")
        return self._decode(person_id, raw) if raw else None

    def get_many(self, person_ids: list[str]) -> list[Identity]:
        raws = self.kv.mget([f"i:{p}" for p in person_ids])
        return [self._decode(p, r) for p, r in zip(person_ids, raws, strict=True) if r]

    def resolve(self, person_id: str) -> str:
        seen = 0
        while (nxt := self.kv.get(f"m:{person_id}")) is not None and seen < 64:
            person_id, seen = nxt, seen + 1
        return person_id

    def find(self, keys: Iterable[str], limits: list[int | None] | None = None) -> set[str]:
        """``limits`` (optional, one per key): a smaller bucket bound for that key."""
        found: set[str] = set()
        mx = self.max_bucket
        read = getattr(self.kv, "smembers_many_shared", None)  # uncopied: only read here
        if read is None:
            read = self.kv.smembers_many
        sets = read([f"b:{k}" for k in keys])
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
        both = self.kv.mget([f"m:{p}" for p in ids] + [f"i:{p}" for p in ids])
        pointers = both[:len(ids)]
        return {p if ptr is None else self.resolve(ptr) for p, ptr in zip(ids, pointers,
                                                                           strict=True)}

    def save(self, identity: Identity, keys: Iterable[str]) -> None:
        if self.kv.get(f"i:{identity.person_id}") is None:
            self.kv.incr("n:identities")
        raw = _dump(identity)
        self.kv.set(f"i:{identity.person_id}", raw)
        self._remember(identity.person_id, raw, identity)
        for key in keys:
            self.kv.sadd(f"b:{key}", [identity.person_id])

    def retire(self, absorbed_id: str, into: str) -> None:
        if absorbed_id == into:
            return
        self.kv.set(f"m:{absorbed_id}", into)
        if self.kv.get(f"i:{absorbed_id}") is not None:
            self._cache.pop(absorbed_id, None)
            self.kv.delete(f"i:{absorbed_id}")
            self.kv.set("n:identities", str(max(0, self.count() - 1)))

    def prefetch(self, record_key: str, keys: list[str], person_ids: tuple[str, ...] = (),
                 extra: tuple[str, ...] = ()) -> None:
        """Warm the unit of work's read cache with what linking reads first (the record's
        link, its blocking sets, the identity it would found, the counter; ``extra`` raw
        keys): one round trip instead of several."""
        pre = getattr(self.kv, "prefetch", None)
        if pre is not None:
            pre([f"l:{record_key}", *(f"i:{p}" for p in person_ids), "n:identities", *extra],
                [f"b:{k}" for k in keys])

    def link_of(self, record_key: str) -> str | None:
        pid = self.kv.get(f"l:{record_key}")
        return self.resolve(pid) if pid else None

    def set_link(self, record_key: str, person_id: str) -> None:
        self.kv.set(f"l:{record_key}", person_id)

    def count(self) -> int:
        return int(self.kv.get("n:identities") or 0)


def embedded_store() -> KVIdentityStore:
    return KVIdentityStore(MemoryKV())


def redis_store(client, prefix: str) -> KVIdentityStore:
    return KVIdentityStore(RedisKV(client, prefix))
