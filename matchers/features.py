"""Turn a validated record's person block into a :class:`PersonRecord` (the normalise step).

The clear ID number exists only inside :func:`person_record`: it is normalised, its typo
neighbourhood is computed (:func:`~matchers.normalise.id_neighbours`), and everything leaves
as keyed hashes.

The contract (docs/contract.md §1.4) lets the optional fields of the person block hold values
that cannot be read. Such a value is no evidence: its feature is absent, and the record gets
the field's quality flag (:data:`QUALITY_FLAGS`, in ``PersonRecord.quality_flags``). A field
that is absent, null or blank is absent evidence and not flagged.
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

#: Every quality flag, in the order ``PersonRecord.quality_flags`` lists them (the order of
#: the person block's fields). ``bad_checksum`` and ``upgraded_15`` are the ID's own flags
#: (:attr:`IdInfo.flag <matchers.normalise.IdInfo.flag>`): the number is still evidence.
QUALITY_FLAGS = ("bad_id_type", "bad_id_number", "bad_checksum", "upgraded_15", "bad_sex",
                 "bad_birth_date", "bad_phone")
#: The known forms of an ID number: at least one digit, and only digits and Latin letters (half
#: or full width), parentheses, slashes and the separators :func:`normalise_id` strips.
#: ``reglink/schemas/person-block.json`` (``#/$defs/identified``) states the same pattern.
ID_FORM = r"^[\s\-_.()/0-9A-Za-z０-９Ａ-Ｚａ-ｚ]*[0-9０-９][\s\-_.()/0-9A-Za-z０-９Ａ-Ｚａ-ｚ]*$"
_ID_FORM = re.compile(ID_FORM)
_ID_TYPES = frozenset({"resident_id", "passport", "other"})
_BIRTH_FORM = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{8}")
#: The sources whose top-level ``address`` is where the person lives (docs/contract.md §1): a
#: hotel's or an employer's address is not the person's.
ADDRESS_SOURCES = frozenset({"rental", "residence", "person"})


def _address(raw: object) -> str | None:
    if not raw or not isinstance(raw, str):
        return None
    toks = [t for t in _ADDR_SPLIT.split(raw.upper()) if t]
    return " ".join(toks) or None


IdPart = tuple[IdInfo | None, str | None, tuple[str, ...], tuple[str, ...], tuple[str, ...],
               str | None, str | None]
_NO_ID: IdPart = (None, None, (), (), (), None, None)
_BAD_ID: IdPart = (None, None, (), (), (), None, "bad_id_number")


def _id_part(raw: str, id_type: str | None, pseudo: Pseudonymiser) -> IdPart:
    """``(IdInfo, its hash, near, swap, deletion hashes, area, flag)`` of a raw ID number,
    memoised per pseudonymiser: a person's records repeat their ID, and
    normalising it, its typo neighbourhood and their HMACs are about half of normalising a
    record (py-spy, 100k replay; the memo cut 6-10 % of the replay's CPU,
    docs/performance-history.md). ``flag``: ``bad_id_number`` for a number in no known form
    (:data:`ID_FORM`, then no evidence; a blank one is absent, no flag), else the ID's own
    flag."""
    key = ("id", raw, id_type)
    hit = pseudo.derived.get(key)
    if hit is not None:
        return hit  # type: ignore[return-value]  # what remember() stored under this key
    if not _ID_FORM.match(raw):
        return pseudo.remember(key, _BAD_ID if raw.strip() else _NO_ID)
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
    return pseudo.remember(key, (idi, id_hash, near, swap, dels, area,
                                 idi.flag if idi else None))


def _given(value: object) -> bool:
    """The field holds something: not absent, null, empty or blank."""
    return value is not None and not (type(value) is str and not value.strip())


def person_record(record: dict[str, Any], key: str, pseudo: Pseudonymiser) -> PersonRecord:
    person = record.get("person") or {}
    flags: list[str] = []
    name = normalise_name(person.get("name") or "")
    id_type = person.get("id_type")
    if id_type is not None and (type(id_type) is not str
                                or (id_type not in _ID_TYPES and id_type.strip())):
        flags.append("bad_id_type")
        id_type = None
    raw_id = person.get("id_number")
    if type(raw_id) is str:
        id_part = _id_part(raw_id, id_type, pseudo)
    else:
        id_part = _NO_ID if raw_id is None else _BAD_ID
    idi, id_hash, near, swap, dels, area, id_flag = id_part
    if id_flag is not None:
        flags.append(id_flag)
    raw = person.get("sex")
    sex = normalise_sex(raw) if type(raw) is str else None
    if sex is None and raw is not None and _given(raw):
        flags.append("bad_sex")
    raw = person.get("birth_date")
    birth = (normalise_birth_date(raw) if type(raw) is str and _BIRTH_FORM.fullmatch(raw)
             else None)
    if birth is None and raw is not None and _given(raw):
        flags.append("bad_birth_date")
    if idi is not None and idi.valid:
        # A valid ID carries birth date and sex: evidence when the form left them out.
        birth = birth or idi.birth_date
        sex = sex or idi.sex
    raw = person.get("phone")
    phone = normalise_phone(raw) if type(raw) is str else None
    if phone is None and raw is not None and _given(raw):
        flags.append("bad_phone")
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
        quality_flags=tuple(flags),
        birth_date=birth,
        sex=sex,
        phone_hash=pseudo("phone", phone) if phone else None,
        home=idi.prefecture if idi and idi.valid else None,
        id_near=near,
        id_swap=swap,
        id_del=dels,
        id_area=area,
        address=(_address(record.get("address"))
                 if record.get("source") in ADDRESS_SOURCES else None),
    )
