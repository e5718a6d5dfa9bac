"""The true population: who exists, with which ID, name, phone and habits."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from reglink.sim import geo, ids, names

_PHONE_PREFIX = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151",
                 "152", "155", "156", "157", "158", "159", "166", "170", "173", "176", "177",
                 "180", "181", "182", "185", "186", "187", "188", "189", "191", "198", "199"]


@dataclass(slots=True)
class Person:
    pid: str
    surname: str
    given: str
    sex: str            # M / F
    birth: date
    area: str           # county of household registration (first 6 digits of the ID)
    id18: str
    phone: str
    travel_rate: float  # hotel trips per day
    minority: str = ""
    namesake_of: str | None = None     # pid of the person with the same name and birth date
    relative_of: str | None = None     # pid of the relative whose phone this person shares
    hidden: bool = False               # exists (e.g. a watchlist target) but sends no events

    @property
    def name(self) -> str:
        return self.surname + self.given

    @property
    def birth8(self) -> str:
        return self.birth.strftime("%Y%m%d")

    @property
    def prefecture(self) -> str:
        return self.area[:4]


class Registry:
    """Issues unique resident IDs and phones."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.ids: dict[str, str] = {}
        self.phones: dict[str, str] = {}

    def issue_id(self, area: str, birth: date, sex: str, owner: str) -> str:
        b8 = birth.strftime("%Y%m%d")
        while True:
            seq = self.rng.randrange(1, 1000)
            if (seq % 2 == 1) != (sex == "M"):
                seq = seq - 1 if seq > 1 else seq + 1
            idn = ids.make_id(area, b8, seq)
            if idn not in self.ids:
                self.ids[idn] = owner
                return idn

    def issue_phone(self, owner: str) -> str:
        while True:
            p = self.rng.choice(_PHONE_PREFIX) + f"{self.rng.randrange(10**8):08d}"
            if p not in self.phones:
                self.phones[p] = owner
                return p


_AGE_BUCKETS = [(18, 24, 18), (25, 34, 30), (35, 44, 22), (45, 54, 15), (55, 64, 9), (65, 78, 6)]


def birth_date(rng: random.Random, ref: date, lo: int | None = None, hi: int | None = None) -> date:
    if lo is None:
        lo, hi, _ = rng.choices(_AGE_BUCKETS, [b[2] for b in _AGE_BUCKETS])[0]
    age_days = rng.randint(lo * 365 + 1, hi * 365 + 300)
    return ref - timedelta(days=age_days)


def _travel_rate(rng: random.Random) -> float:
    r = rng.random()
    if r < 0.55:
        return 0.008
    if r < 0.88:
        return 0.03
    return 0.12


def make_population(rng: random.Random, n: int, ref: date) -> tuple[list[Person], Registry, dict]:
    """``n`` persons, including namesake pairs (same name and birth date, different ID) and
    relatives who share a phone. Returns (persons, registry, stats)."""
    reg = Registry(rng)
    people: list[Person] = []
    stats = {"namesake_pairs": 0, "shared_phone_pairs": 0, "minority": 0}
    for i in range(n):
        pid = f"P{i + 1:07d}"
        sex = "M" if rng.random() < 0.52 else "F"
        r = rng.random()
        if people and r < 0.012:
            # namesake: same name, sex and birth date; a different ID (often another county)
            o = rng.choice(people)
            area = (o.area if rng.random() < 0.3
                    else rng.choices(geo.COUNTIES, cum_weights=geo.ORIGIN_W)[0].code)
            p = Person(pid, o.surname, o.given, o.sex, o.birth, area,
                       reg.issue_id(area, o.birth, o.sex, pid), reg.issue_phone(pid),
                       _travel_rate(rng), minority=o.minority, namesake_of=o.pid)
            stats["namesake_pairs"] += 1
        elif people and r < 0.012 + 0.05:
            # relative in the same household: same county, shares the phone
            o = rng.choice(people)
            if o.minority or o.relative_of:
                surname, given = names.han_name(rng, sex)
            elif rng.random() < 0.6:   # child or sibling: same surname
                surname, given = names.han_name(rng, sex, o.surname)
            else:                      # spouse
                surname, given = names.han_name(rng, sex)
            b = birth_date(rng, ref)
            p = Person(pid, surname, given, sex, b, o.area, reg.issue_id(o.area, b, sex, pid),
                       o.phone, _travel_rate(rng), relative_of=o.pid)
            stats["shared_phone_pairs"] += 1
        else:
            minority = ""
            if rng.random() < 0.015:
                minority = rng.choice(["uyghur", "uyghur", "tibetan", "korean", "mongol"])
                area = rng.choice(geo.MINORITY_HOME[minority])
                surname, given = names.minority_name(rng, sex, minority)
                stats["minority"] += 1
            else:
                area = rng.choices(geo.COUNTIES, cum_weights=geo.ORIGIN_W)[0].code
                surname, given = names.han_name(rng, sex)
            b = birth_date(rng, ref)
            p = Person(pid, surname, given, sex, b, area, reg.issue_id(area, b, sex, pid),
                       reg.issue_phone(pid), _travel_rate(rng), minority=minority)
        people.append(p)
    return people, reg, stats


def make_hidden_namesake(rng: random.Random, reg: Registry, of: Person, pid: str) -> Person:
    """A person outside the active population who shares ``of``'s name and birth date."""
    area = rng.choices(geo.COUNTIES, cum_weights=geo.ORIGIN_W)[0].code
    return Person(pid, of.surname, of.given, of.sex, of.birth, area,
                  reg.issue_id(area, of.birth, of.sex, pid), reg.issue_phone(pid), 0.0,
                  minority=of.minority, namesake_of=of.pid, hidden=True)
