"""Candidate retrieval: blocking keys shared by a record and the identities it may belong to.

Every key is pseudonymised, so the store never sees a name, ID or phone in a key.
"""

from __future__ import annotations

from .pseudo import Pseudonymiser
from .types import Identity, IdentityStore, PersonRecord


class BlockingCandidates:
    """Several blocking keys; a key shared by too many identities is skipped by the store."""

    NAME = "blocking-v1"

    def __init__(self, pseudo: Pseudonymiser) -> None:
        self._pseudo = pseudo

    def raw_keys(self, rec: PersonRecord) -> list[str]:
        keys: list[str] = []
        if rec.id_hash:
            keys.append(f"id|{rec.id_hash}")
        if rec.phone_hash:
            keys.append(f"ph|{rec.phone_hash}")
        name_keys = {rec.name_key, *rec.aliases} - {""}
        for nk in sorted(name_keys):
            if rec.birth_date:
                keys.append(f"nb|{nk}|{rec.birth_date}")
            keys.append(f"nk|{nk}")
        return keys

    def keys(self, rec: PersonRecord) -> list[str]:
        return [self._pseudo("blk", k) for k in self.raw_keys(rec)]

    def identity_keys(self, ident: Identity) -> list[str]:
        """Keys to search *with an identity* (e.g. an identity against the watchlist)."""
        raw = [f"id|{h}" for h in sorted(ident.id_hashes)]
        raw += [f"ph|{h}" for h in sorted(ident.phone_hashes)]
        for nk in sorted(ident.name_keys - {""}):
            raw += [f"nb|{nk}|{b}" for b in sorted(ident.birth_dates)]
            raw.append(f"nk|{nk}")
        return [self._pseudo("blk", k) for k in raw]

    def candidates(self, rec: PersonRecord, store: IdentityStore) -> list[Identity]:
        ids = sorted(store.find(self.keys(rec)))
        getter = getattr(store, "get_many", None)
        if getter is not None:
            return getter(ids)
        return [i for i in (store.get(p) for p in ids) if i is not None]
