"""GB 11643-1999 resident IDs: make, check, down-convert to 15 digits, and corrupt like a typist."""

from __future__ import annotations

import random

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character for the first 17 digits."""
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def make_id(area: str, birth: str, seq: int) -> str:
    """``area`` 6 digits, ``birth`` YYYYMMDD, ``seq`` 0..999 (odd for men, even for women)."""
    body = f"{area}{birth}{seq:03d}"
    return body + check_char(body)


def is_valid18(s: str) -> bool:
    return (len(s) == 18 and s[:17].isdigit() and s[17] in "0123456789X"
            and check_char(s[:17]) == s[17])


def to15(id18: str) -> str:
    """Legacy 15-digit form: area + YYMMDD + sequence (only for births in 19xx)."""
    assert id18[6:8] == "19", id18
    return id18[:6] + id18[8:17]


def upgrade15(id15: str) -> str:
    body = id15[:6] + "19" + id15[6:15]
    return body + check_char(body)


def normalise(s: str) -> str:
    """Strip spaces and dashes, upper-case x (what a reader of the record would do first)."""
    return s.replace(" ", "").replace("-", "").upper()


def wrong_digit(rng: random.Random, id18: str) -> str:
    """Change one character to another digit; the checksum always catches it."""
    pos = rng.randrange(18)
    old = id18[pos]
    new = rng.choice([d for d in "0123456789" if d != old])
    return id18[:pos] + new + id18[pos + 1:]


def transpose(rng: random.Random, id18: str) -> str | None:
    """Swap two adjacent unequal digits (the checksum catches it); None if no such pair."""
    cands = [i for i in range(17) if id18[i] != id18[i + 1] and id18[i + 1] != "X"]
    if not cands:
        return None
    i = rng.choice(cands)
    return id18[:i] + id18[i + 1] + id18[i] + id18[i + 2:]


def spaced(rng: random.Random, idn: str) -> str:
    """Group with spaces or dashes as people type it: 340102 19880315 0022."""
    sep = rng.choice((" ", " ", "-"))
    if len(idn) == 18:
        return sep.join((idn[:6], idn[6:14], idn[14:]))
    return sep.join((idn[:6], idn[6:12], idn[12:]))
