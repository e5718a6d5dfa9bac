"""Candidate retrieval: blocking keys shared by a record and the identities it may belong to.

Every key is pseudonymised, so the store never sees a name, ID or phone in a key. The same
keys serve to search (a record's keys) and to index (the identity it joins), so each key kind
works identically against the embedded and the Redis store.

Keys (``raw_keys``):

* ``id|h``          the ID (HMAC). A mistyped resident ID (bad checksum) also carries the keys
                    of its valid one-digit-off / transposed neighbours, so a typo and the true
                    ID meet in either arrival order. A valid ID has no valid neighbour.
* ``idd|h``         one-deletion variants of an opaque document number (no checksum to repair).
* ``ph|h``          phone (HMAC).
* ``nb|key|birth``  order-free pinyin key + birth date (homophones, romanised names).
* ``nk|key``        order-free pinyin key alone (skipped by the store once too common).
* ``sb|surname|birth|prefecture``  surname + birth date + ID prefecture: look-alike given names.
* ``sb|surname|birth``             the same without the prefecture when the record has no ID.
* ``lx|soundex…|birth``, ``lx|soundex…``  Latin names: sorted Soundex codes of the tokens, with
                    and without the birth date (misspellings, any token order).
* ``lt|soundex|birth``  Latin names: each name part's Soundex + birth date (the other part
                    badly misspelt or missing).
"""

from __future__ import annotations

import re
from collections.abc import Collection

from matchers.normalise import soundex
from matchers.pseudo import Pseudonymiser
from matchers.types import Identity, IdentityStore, PersonRecord

# A weak key (a name alone) that holds more identities than this is not searched. With the
# shipped model a name agreement plus the same sex, without a birth date (or with a
# mistyped one), ID or phone, reaches the link threshold only with a TF adjustment >= +0.6,
# which no name in the model's TF table has: only names too rare to be listed link on the
# name alone, and a name held by more than ~20 identities is not one. Measured with
# benchmarks/recall.py (100k corpus: candidate recall 0.99997 -> 0.99938, links F1 0.99488 ->
# 0.99507; matching corpora unchanged).
WEAK_CAP = 20


def _weak(raw_key: str) -> bool:
    return raw_key.startswith("nk|") or (raw_key.startswith("lx|") and raw_key.count("|") == 1)



class BlockingCandidates:
    """Implements :class:`matchers.types.CandidateFinder` with several blocking keys; a key
    shared by too many identities is skipped by the store.

    Weak keys (name alone: ``nk|``, Latin Soundex alone: ``lx|`` without a birth date) are
    searched only while they hold at most ``weak_cap`` identities (the store's ``max_bucket``
    still bounds the others). A name shared by more people than that is no evidence on its
    own (see ``weak_cap`` below); the records such a key exists for (birth date missing or
    mistyped) still meet their person through the ID, phone and surname keys."""

    NAME = "blocking-v2"

    def __init__(self, pseudo: Pseudonymiser, weak_cap: int | None = WEAK_CAP) -> None:
        self._pseudo = pseudo
        self.weak_cap = weak_cap
        self._last: tuple[PersonRecord, list[str], list[str]] | None = None

    @staticmethod
    def _raw(id_hash: str | None, near: Collection[str], dels: Collection[str],
             phones: Collection[str], name_keys: Collection[str], births: Collection[str],
             surnames: Collection[str], areas: Collection[str],
             latin_texts: Collection[str]) -> list[str]:
        keys: list[str] = []
        add = keys.append
        if id_hash:
            add(f"id|{id_hash}")
        for h in sorted(near):
            add(f"id|{h}")
        for h in sorted(dels):
            add(f"idd|{h}")
        for h in sorted(phones):
            add(f"ph|{h}")
        births = sorted(births)
        for nk in sorted(name_keys):
            for b in births:
                add(f"nb|{nk}|{b}")
            add(f"nk|{nk}")
        if surnames and births:
            areas = sorted(areas)
            for s in sorted(surnames):
                for b in births:
                    add(f"sb|{s}|{b}")  # superset; the prefecture form stays usable
                    for a in areas:  # when this one is too big
                        add(f"sb|{s}|{b}|{a}")
        for text in sorted(latin_texts):
            codes = [soundex(t) for t in text.split() if not _is_han(t)]
            sx = " ".join(sorted(codes))
            if sx:
                for b in births:
                    add(f"lx|{sx}|{b}")
                add(f"lx|{sx}")  # birth date missing or mistyped
            for tok in sorted(set(codes) - {""}):
                for b in births:
                    add(f"lt|{tok}|{b}")  # one name part misspelt
        return keys

    def raw_keys(self, rec: PersonRecord) -> list[str]:
        # Upgraded 15-digit IDs carry ~120 neighbours: compared, but not blocked on.
        near = () if rec.id_flag == "upgraded_15" else rec.id_near + rec.id_swap
        surname = rec.surname or (rec.syllables[0] if rec.syllables else "")
        return self._raw(
            rec.id_hash, near, rec.id_del, (rec.phone_hash,) if rec.phone_hash else (),
            {rec.name_key, *rec.aliases} - {""},
            (rec.birth_date,) if rec.birth_date else (),
            (surname,) if surname and rec.script == "han" else (),
            (rec.id_area,) if rec.id_area else (),
            (rec.name, *rec.alias_names) if rec.script == "latin" else rec.alias_names,
        )

    def _keyed(self, rec: PersonRecord) -> tuple[list[str], list[str]]:
        """(raw keys, pseudonymised keys) of a record; the last record's are kept, as the
        linker asks for its keys and then for its candidates."""
        last = self._last
        if last is not None and last[0] is rec:
            return last[1], last[2]
        raw = self.raw_keys(rec)
        pseudo = self._pseudo
        keys = [pseudo("blk", k) for k in raw]
        self._last = (rec, raw, keys)
        return raw, keys

    def keys(self, rec: PersonRecord) -> list[str]:
        return list(self._keyed(rec)[1])

    def identity_keys(self, ident: Identity) -> list[str]:
        """Keys to search *with an identity* (e.g. an identity against the watchlist), and the
        keys a merged identity brings to its survivor."""
        latin = {n for n in ident.names if n and not _is_han(n)}
        raw: list[str] = []
        for h in sorted(ident.id_hashes):
            raw.append(f"id|{h}")
        raw += self._raw(None, ident.id_near | ident.id_swap if len(ident.id_near) < 40
                         else ident.id_swap, ident.id_del, ident.phone_hashes,
                         ident.name_keys - {""}, ident.birth_dates,
                         {s for s in ident.surnames if s}, ident.areas, latin)
        return [self._pseudo("blk", k) for k in dict.fromkeys(raw)]

    def candidates(self, rec: PersonRecord, store: IdentityStore) -> list[Identity]:
        raw, keys = self._keyed(rec)
        cap = self.weak_cap
        limits = [cap if _weak(k) else None for k in raw] if cap is not None else None
        if limits is not None and any(x is not None for x in limits):
            ids = sorted(store.find(keys, limits))
        else:
            ids = sorted(store.find(keys))
        return store.get_many(ids)


_HAN = re.compile("[\u3400-\u9fff]")


def _is_han(text: str) -> bool:
    return _HAN.search(text) is not None
