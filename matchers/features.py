"""Turn a validated record's person block into a :class:`PersonRecord` (the normalise step)."""

from __future__ import annotations

from .normalise import (
    normalise_birth_date,
    normalise_id,
    normalise_name,
    normalise_phone,
    normalise_sex,
)
from .pseudo import Pseudonymiser
from .types import PersonRecord


def person_record(record: dict, key: str, pseudo: Pseudonymiser) -> PersonRecord:
    person = record.get("person") or {}
    name = normalise_name(person.get("name") or "")
    idi = normalise_id(person.get("id_number"), person.get("id_type"))
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
        id_hash=pseudo("id", idi.value) if idi else None,
        id_valid=bool(idi and idi.valid),
        id_flag=idi.flag if idi else None,
        birth_date=birth,
        sex=sex,
        phone_hash=pseudo("phone", phone) if phone else None,
        home=idi.prefecture if idi and idi.valid else None,
    )
