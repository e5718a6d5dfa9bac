"""Turn a validated record's person block into a :class:`PersonRecord` (the normalise step).

The clear ID number exists only inside :func:`person_record`: it is normalised, its typo
neighbourhood is computed (:func:`~matchers.normalise.id_neighbours`), and everything leaves
as keyed hashes.
"""

from __future__ import annotations

import re
from typing import Any

from matchers.normalise import (
    IdInfo,
    deletion_variants,
    id_neighbours,
    normalise_birth_date,
    normalise_id,
    normalise_name,
    normalise_phone,
    normalise_sex,
)
from matchers.pseudo import Pseudonymiser
from matchers.types import PersonRecord

_ADDR_SPLIT = re.compile(r"[^\w]+")


def _address(raw: object) -> str | None:
    if not raw or not isinstance(raw, str):
        return None
    toks = [t for t in _ADDR_SPLIT.split(raw.upper()) if t]
    return " ".join(toks) or None


IdPart = tuple[IdInfo | None, str | None, tuple[str, ...], tuple[str, ...], tuple[str, ...],
               str | None]


def _id_part(raw: str | None, id_type: str | None, pseudo: Pseudonymiser) -> IdPart:
    """``(IdInfo, its hash, near, swap, deletion hashes, area)`` of a raw ID number, memoised
    per pseudonymiser: a person's records repeat their ID, and normalising it, its typo
    neighbourhood and their HMACs are about half of normalising a record (py-spy, 100k
    replay; the memo cut 6-10 % of the replay's CPU, docs/performance-history.md)."""
    key = ("id", raw, id_type)
    hit = pseudo.derived.get(key)
    if hit is not None:
        return hit  # type: ignore[return-value]  # what remember() stored under this key
    idi = normalise_id(raw, id_type)
    near: tuple[str, ...] = ()
    swap: tuple[str, ...] = ()
    dels: tuple[str, ...] = ()
    area = None
    if idi is not None:
        if idi.kind == "resident":
            subs, swaps = id_neighbours(idi)
            near = tuple(pseudo("id", v) for v in subs)
            swap = tuple(pseudo("id", v) for v in swaps)
            area = idi.value[:4]
        elif 4 <= len(idi.value) <= 24:
            dels = tuple(pseudo("idd", v) for v in deletion_variants(idi.value))
    id_hash = pseudo("id", idi.value) if idi else None
    return pseudo.remember(key, (idi, id_hash, near, swap, dels, area))


def person_record(record: dict[str, Any], key: str, pseudo: Pseudonymiser) -> PersonRecord:
    person = record.get("person") or {}
    name = normalise_name(person.get("name") or "")
    idi, id_hash, near, swap, dels, area = _id_part(person.get("id_number"),
                                                    person.get("id_type"), pseudo)
    birth = normalise_birth_date(person.get("birth_date"))
    sex = normalise_sex(person.get("sex"))
    if idi is not None and idi.valid:
        # A valid ID carries birth date and sex: evidence when the form left them out.
        birth = birth or idi.birth_date
        sex = sex or idi.sex
    phone = normalise_phone(person.get("phone"))
    aliases = tuple(normalise_name(a) for a in person.get("aliases") or () if a)
    return PersonRecord(
        key=key,
        source=record.get("source", ""),
        name=name.text,
        script=name.script,
        syllables=name.syllables,
        name_key=name.key,
        surname=name.surname,
        aliases=tuple(a.key for a in aliases),
        alias_names=tuple(a.text for a in aliases),
        id_kind=idi.kind if idi else None,
        id_hash=id_hash,
        id_valid=bool(idi and idi.valid),
        id_flag=idi.flag if idi else None,
        birth_date=birth,
        sex=sex,
        phone_hash=pseudo("phone", phone) if phone else None,
        home=idi.prefecture if idi and idi.valid else None,
        id_near=near,
        id_swap=swap,
        id_del=dels,
        id_area=area,
        address=_address(person.get("address")),
    )
