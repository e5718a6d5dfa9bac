"""Person blocks per source, with the noise each source is known for (homophones, wrong
digits, missing or legacy IDs).

Each builder returns ``(block, tags)``; the tags name the noise applied and go to truth.jsonl,
so evaluations can break recall down by noise kind. Rates are module constants so tests and
the summary can compare measured against intended rates.
"""

from __future__ import annotations

import random

from reglink.sim import ids, names
from reglink.sim.population import Person

# rental (landlords type it by hand)
RENTAL_HOMOPHONE = 0.08
RENTAL_LOOKALIKE = 0.03
RENTAL_ID_MISSING = 0.06
RENTAL_LEGACY15_OLD = 0.35     # of records of people born before 1975
RENTAL_WRONG_DIGIT = 0.04
RENTAL_TRANSPOSED = 0.01
RENTAL_SPACED = 0.08
LOWER_X = 0.6                   # of IDs ending in X, when typed by hand
DOT_VARIANT = 0.4               # of minority names with a middle dot, hand-typed sources
# job (the noisiest)
JOB_ID_MISSING = 0.55
JOB_PINYIN = 0.20
JOB_TRADITIONAL = 0.06
JOB_HOMOPHONE = 0.04
JOB_WRONG_DIGIT = 0.03
JOB_SPACED = 0.05
# hotel (read from the card)
HOTEL_LEGACY15_OLD = 0.10       # of records of people born before 1965 (old cards)
HOTEL_NO_CHECKOUT = 0.04


def _sex(rng: random.Random, p: Person, han_share: float) -> str:
    if rng.random() < han_share:
        return "男" if p.sex == "M" else "女"
    return p.sex


def _hand_name(rng: random.Random, p: Person, homophone: float, lookalike: float,
               tags: list[str]) -> str:
    r = rng.random()
    if r < homophone:
        n = names.homophone(rng, p.surname, p.given)
        if n:
            tags.append("homophone")
            return n
    elif r < homophone + lookalike:
        n = names.lookalike(rng, p.surname, p.given)
        if n:
            tags.append("lookalike")
            return n
    if names.DOT in p.name and rng.random() < DOT_VARIANT:
        tags.append("dot_variant")
        return names.dot_variant(rng, p.name) or p.name
    return p.name


def _hand_id(rng: random.Random, p: Person, tags: list[str], *, missing: float,
             legacy15: float, wrong: float, transposed: float, spaced: float) -> str | None:
    if rng.random() < missing:
        tags.append("id_missing")
        return None
    idn = p.id18
    if p.birth.year < 1975 and rng.random() < legacy15:
        idn = ids.to15(idn)
        tags.append("id_legacy15")
    else:
        r = rng.random()
        if r < wrong:
            idn = ids.wrong_digit(rng, idn)
            tags.append("id_wrong_digit")
        elif r < wrong + transposed:
            t = ids.transpose(rng, idn)
            if t:
                idn = t
                tags.append("id_transposed")
    if idn.endswith("X") and rng.random() < LOWER_X:
        idn = idn[:-1] + "x"
        tags.append("id_lower_x")
    if rng.random() < spaced:
        idn = ids.spaced(rng, idn)
        tags.append("id_spaced")
    return idn


def hotel_block(rng: random.Random, p: Person) -> tuple[dict, list[str]]:
    tags: list[str] = []
    idn = p.id18
    if p.birth.year < 1965 and rng.random() < HOTEL_LEGACY15_OLD:
        idn = ids.to15(idn)
        tags.append("id_legacy15")
    b: dict = {"name": p.name, "id_number": idn}
    b["sex"] = _sex(rng, p, 0.5)
    if rng.random() < 0.3:
        b["birth_date"] = p.birth.isoformat()
    if rng.random() < 0.6:
        b["phone"] = p.phone
    return b, tags


def rental_block(rng: random.Random, p: Person) -> tuple[dict, list[str]]:
    tags: list[str] = []
    b: dict = {"name": _hand_name(rng, p, RENTAL_HOMOPHONE, RENTAL_LOOKALIKE, tags)}
    idn = _hand_id(rng, p, tags, missing=RENTAL_ID_MISSING, legacy15=RENTAL_LEGACY15_OLD,
                   wrong=RENTAL_WRONG_DIGIT, transposed=RENTAL_TRANSPOSED, spaced=RENTAL_SPACED)
    if idn is not None:
        b["id_number"] = idn
    if rng.random() < 0.6:
        b["sex"] = _sex(rng, p, 0.8)
    if rng.random() < 0.25:
        b["birth_date"] = p.birth.isoformat()
    if rng.random() < 0.9:
        b["phone"] = p.phone
    return b, tags


def residence_block(rng: random.Random, p: Person) -> tuple[dict, list[str]]:
    b: dict = {"name": p.name, "id_number": p.id18, "sex": p.sex, "birth_date": p.birth.isoformat()}
    if rng.random() < 0.5:
        b["id_type"] = "resident_id"
    if rng.random() < 0.5:
        b["phone"] = p.phone
    return b, []


def job_block(rng: random.Random, p: Person) -> tuple[dict, list[str]]:
    tags: list[str] = []
    r = rng.random()
    name = None
    if r < JOB_PINYIN:
        name = names.romanise(rng, p.surname, p.given)
        tags.append("pinyin")
    elif r < JOB_PINYIN + JOB_TRADITIONAL:
        t = names.traditional(p.name)
        if t != p.name:
            name = t
            tags.append("traditional")
    elif r < JOB_PINYIN + JOB_TRADITIONAL + JOB_HOMOPHONE:
        n = names.homophone(rng, p.surname, p.given)
        if n:
            name = n
            tags.append("homophone")
    if name is None:
        if names.DOT in p.name and rng.random() < DOT_VARIANT:
            name = names.dot_variant(rng, p.name)
            tags.append("dot_variant")
        else:
            name = p.name
    b: dict = {"name": name}
    idn = _hand_id(rng, p, tags, missing=JOB_ID_MISSING, legacy15=0.0, wrong=JOB_WRONG_DIGIT,
                   transposed=0.0, spaced=JOB_SPACED)
    if idn is not None:
        b["id_number"] = idn
    if rng.random() < 0.5:
        b["sex"] = _sex(rng, p, 0.7)
    if rng.random() < 0.35:
        b["birth_date"] = p.birth8 if rng.random() < 0.5 else p.birth.isoformat()
    if rng.random() < 0.85:
        b["phone"] = p.phone
    return b, tags


def register_block(p: Person) -> dict:
    """Household-register import: clean."""
    return {"name": p.name, "id_number": p.id18, "sex": p.sex, "birth_date": p.birth.isoformat()}


def alias_for(rng: random.Random, p: Person) -> str:
    """An alias as a watchlist would hold one: a homophone or look-alike spelling, pinyin,
    or a former given name."""
    for f in rng.sample(["homophone", "lookalike", "pinyin", "former"], 4):
        if f == "homophone" and (n := names.homophone(rng, p.surname, p.given)):
            return n
        if f == "lookalike" and (n := names.lookalike(rng, p.surname, p.given)):
            return n
        if f == "pinyin":
            return names.romanise(rng, p.surname, p.given)
        if f == "former" and p.surname:
            return p.surname + names.given_name(rng, p.sex)
    return names.romanise(rng, p.surname, p.given)
