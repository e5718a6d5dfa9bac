"""The identity store over a :class:`~matchers.stores.kv.KeyValue` backend.

Layout (all keys pseudonymous):
  ``i:<person_id>``  identity JSON       ``b:<blocking key>``  set of person ids
  ``m:<person_id>``  merged-into pointer ``l:<record key>``    person id the record linked to
  ``n:identities``   live identity counter
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from ..types import SET_FIELDS, Identity
from .kv import KeyValue, MemoryKV, RedisKV

_SET_FIELDS = SET_FIELDS


def _dump(ident: Identity) -> str:
    d = {"person_id": ident.person_id, "anchor": ident.anchor, "rid_hash": ident.rid_hash,
         "home": ident.home, "records": ident.records, "last_report": ident.last_report,
         "last_record": ident.last_record}
    for f in _SET_FIELDS:
        d[f] = sorted(getattr(ident, f))
    return json.dumps(d, ensure_ascii=False, separators=(",", ":"))


def _load(raw: str) -> Identity:
    d = json.loads(raw)
    for f in _SET_FIELDS:
        d[f] = set(d.get(f, ()))
    return Identity(**d)


class KVIdentityStore:
    """Implements :class:`matchers.types.IdentityStore`."""

    def __init__(self, kv: KeyValue, max_bucket: int = 200) -> None:
        self.kv = kv
        self.max_bucket = max_bucket  # a blocking key shared by more ids is too common to use

    def get(self, person_id: str) -> Identity | None:
        raw = self.kv.get(f"i:{person_id}")
        return _load(raw) if raw else None

    def get_many(self, person_ids: list[str]) -> list[Identity]:
        raws = self.kv.mget([f"i:{p}" for p in person_ids])
        return [_load(r) for r in raws if r]

    def resolve(self, person_id: str) -> str:
        seen = 0
        while (nxt := self.kv.get(f"m:{person_id}")) is not None and seen < 64:
            person_id, seen = nxt, seen + 1
        return person_id

    def find(self, keys: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for members in self.kv.smembers_many([f"b:{k}" for k in keys]):
            if len(members) <= self.max_bucket:  # a key shared by more is too common to use
                found.update(members)
        if not found:
            return found
        ids = sorted(found)
        pointers = self.kv.mget([f"m:{p}" for p in ids])  # one round trip for the first hop
        return {p if ptr is None else self.resolve(ptr) for p, ptr in zip(ids, pointers,
                                                                           strict=True)}

    def save(self, identity: Identity, keys: Iterable[str]) -> None:
        if self.kv.get(f"i:{identity.person_id}") is None:
            self.kv.incr("n:identities")
        self.kv.set(f"i:{identity.person_id}", _dump(identity))
        for key in keys:
            self.kv.sadd(f"b:{key}", [identity.person_id])

    def retire(self, absorbed_id: str, into: str) -> None:
        if absorbed_id == into:
            return
        self.kv.set(f"m:{absorbed_id}", into)
        if self.kv.get(f"i:{absorbed_id}") is not None:
            self.kv.delete(f"i:{absorbed_id}")
            self.kv.set("n:identities", str(max(0, self.count() - 1)))

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
