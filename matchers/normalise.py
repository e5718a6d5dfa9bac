"""Normalisers for the person block: resident IDs, names, birth dates, sex, phones.

Pure functions, no I/O. docs/matching.md describes the rules they implement.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from operator import mul
from typing import Any

# --- resident ID (GB 11643-1999) ---------------------------------------------------------
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_ID_STRIP = re.compile(r"[\s\-_.]")
MUNICIPALITIES = frozenset({"11", "12", "31", "50"})


def id_check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of the first 17 digits."""
    if len(first17) != 17:
        raise ValueError(f"17 digits expected, got {len(first17)}")
    return _CHECK[sum(map(mul, map(int, first17), _WEIGHTS)) % 11]  # ~3x the generator


@dataclass(frozen=True, slots=True)
class IdInfo:
    """A normalised document number.

    ``kind`` is ``resident`` (18 digits, possibly upgraded from 15) or ``other`` (opaque).
    ``valid`` is True only for a resident ID whose checksum and birth date are right.
    """

    kind: str
    value: str
    valid: bool
    upgraded: bool = False
    birth_date: str | None = None
    sex: str | None = None
    prefecture: str | None = None

    @property
    def flag(self) -> str | None:
        if self.kind == "resident" and not self.valid:
            return "bad_checksum"
        return "upgraded_15" if self.upgraded else None


def _birth(yyyymmdd: str) -> str | None:
    try:
        return date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8])).isoformat()
    except ValueError:
        return None


def upgrade_15(id15: str) -> str:
    """Legacy 15-digit ID -> 18 digits: insert '19' before YYMMDD and add the check char."""
    body = id15[:6] + "19" + id15[6:15]
    return body + id_check_char(body)


def normalise_id(raw: str | None, id_type: str | None = None) -> IdInfo | None:
    """Strip spaces/dashes/case, upgrade 15->18, validate, read birth date/sex/prefecture."""
    if not raw:
        return None
    value = _ID_STRIP.sub("", raw).upper()
    if not value:
        return None
    looks_resident = bool(re.fullmatch(r"\d{17}[\dX]|\d{15}", value))
    if id_type in ("passport", "other") or not looks_resident:
        return IdInfo("other", value, False)
    upgraded = False
    if len(value) == 15:
        value, upgraded = upgrade_15(value), True
    birth = _birth(value[6:14])
    valid = birth is not None and id_check_char(value[:17]) == value[17]
    if not valid:
        return IdInfo("resident", value, False, upgraded)
    sex = "M" if int(value[16]) % 2 else "F"
    return IdInfo("resident", value, True, upgraded, birth, sex, value[:4])


def same_place(prefecture_a: str, prefecture_b: str) -> bool:
    """Two prefecture codes (4 digits) name one place; municipalities compare 2 digits."""
    if prefecture_a[:2] in MUNICIPALITIES or prefecture_b[:2] in MUNICIPALITIES:
        return prefecture_a[:2] == prefecture_b[:2]
    return prefecture_a[:4] == prefecture_b[:4]


# --- names -------------------------------------------------------------------------------
_DOTS = "\u00b7\u2022\u30fb\u2027\uff0e."
_DOT_RE = re.compile(f"[{re.escape(_DOTS)}]")
_HAN_RE = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN_SPLIT = re.compile(r"[^A-Za-z]+")
# Surnames whose reading differs from the common one (单 shan, 曾 zeng, 仇 qiu, ...).
SURNAME_READINGS = {"单": "shan", "曾": "zeng", "仇": "qiu", "解": "xie", "查": "zha",
                    "区": "ou", "朴": "piao", "覃": "qin", "尉迟": "yuchi", "万俟": "moqi",
                    "繁": "po", "缪": "miao", "乐": "yue", "盖": "ge", "员": "yun"}
COMPOUND_SURNAMES = frozenset(
    "欧阳 司马 诸葛 上官 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒 令狐 夏侯 "
    "轩辕 端木 独孤 南宫 万俟 闻人 "
    "澹台 公冶 太史 申屠 东郭 百里 呼延 钟离 第五".split()
)


@lru_cache(maxsize=1)
def _t2s() -> Any:
    import opencc  # opencc-python-reimplemented

    return opencc.OpenCC("t2s")


@dataclass(frozen=True, slots=True)
class NameInfo:
    """A normalised name.

    ``text``: simplified Chinese without dots/spaces, or upper-case Latin tokens joined by ' '.
    ``syllables``: tone-less pinyin in written order (surname first for Han names).
    ``key``: order-free romanisation key: the syllables sorted and joined, so that
    '陈丽', 'CHEN Li', 'Li Chen' and 'CHENLI' can all meet.
    """

    text: str
    script: str  # 'han' or 'latin'
    syllables: tuple[str, ...]
    key: str
    surname: str  # surname in pinyin ('' when unknown)


def load_tables() -> None:
    """Load the name tables now (pinyin and its phrase segmenter, traditional -> simplified,
    four-corner codes: ~190k Python objects) instead of on the first name that needs them,
    so that a process can freeze them out of garbage collection (``reglink.runtime``)."""
    _t2s()
    _pinyin_engine()
    _pinyin_syllables()
    _four_corner()


@lru_cache(maxsize=1)
def _pinyin_engine() -> tuple[Callable[[str], Any], Callable[[str], list[list[str]]]]:
    """What ``pypinyin.lazy_pinyin(text, style=Style.NORMAL)`` builds on every call (its
    defaults: no v->u, no neutral-tone 5, no tone sandhi), built once: (segmenter, converter
    of one segment)."""
    from pypinyin import Style
    from pypinyin.converter import UltimateConverter
    from pypinyin.core import Pinyin

    engine = Pinyin(UltimateConverter(v_to_u=False, neutral_tone_with_five=False,
                                      tone_sandhi=False))
    convert = engine._converter.convert
    normal = Style.NORMAL

    def segment(words: str) -> list[list[str]]:
        return convert(words, normal, False, "default", strict=True)

    return engine.seg, segment


@lru_cache(maxsize=1 << 15)
def _segment_pinyin(words: str) -> tuple[str, ...]:
    """Tone-less pinyin of one segment of a name, as ``lazy_pinyin`` gives it. A segment's
    reading depends on the segment alone (pypinyin converts each segment on its own), and
    the segments of new names are mostly single given-name characters met again and again:
    memoised (bounded), a new name costs its segmentation and a few dict lookups."""
    return tuple(py for readings in _pinyin_engine()[1](words) for py in readings)


def lazy_pinyin_normal(text: str) -> list[str]:
    """``pypinyin.lazy_pinyin(text, style=Style.NORMAL)``, the same list, cheaper on names
    whose segments were seen before (:func:`_segment_pinyin`)."""
    seg = _pinyin_engine()[0]
    return [py for words in seg(text) for py in _segment_pinyin(words)]


def _han_pinyin(text: str) -> tuple[str, ...]:
    surname = text[:2] if text[:2] in COMPOUND_SURNAMES else text[:1]
    head: list[str] = []
    rest = text
    if surname in SURNAME_READINGS:
        head, rest = [SURNAME_READINGS[surname]], text[len(surname):]
    return tuple(head + [s.lower() for s in lazy_pinyin_normal(rest)])


_SYLLABLE_RE = None


def _split_run_together(token: str) -> list[str]:
    """Split 'ZHANGWEI' into pinyin syllables greedily (longest first); fallback: whole token."""
    from pypinyin.contrib.tone_convert import to_normal  # noqa: F401  (ensures pypinyin present)

    syl = _pinyin_syllables()
    t = token.lower()
    out: list[str] = []
    i = 0
    while i < len(t):
        for L in (6, 5, 4, 3, 2, 1):
            piece = t[i:i + L]
            if len(piece) == L and piece in syl:
                # avoid leaving a lone consonant behind
                out.append(piece)
                i += L
                break
        else:
            return [t]
    return out


@lru_cache(maxsize=1)
def _pinyin_syllables() -> frozenset[str]:
    initials = ["", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "zh",
                "ch", "sh", "r", "z", "c", "s", "y", "w"]
    finals = ["a", "o", "e", "i", "u", "v", "ai", "ei", "ui", "ao", "ou", "iu", "ie", "ue", "er",
              "an", "en", "in", "un", "ang", "eng", "ing", "ong", "ia", "ian", "iang", "iao",
              "iong", "ua", "uai", "uan", "uang", "uo", "van", "ve", "vn"]
    return frozenset(i + f for i in initials for f in finals)


@lru_cache(maxsize=65536)
def normalise_name(raw: str) -> NameInfo:
    """Traditional->simplified, drop middle dots and spaces, tone-less pinyin, order-free key."""
    text = unicodedata.normalize("NFKC", raw).strip()
    if _HAN_RE.search(text):
        han = _DOT_RE.sub("", re.sub(r"\s+", "", text))
        han = _t2s().convert(han)
        syl = _han_pinyin(han)
        surname_len = 2 if han[:2] in COMPOUND_SURNAMES else 1
        return NameInfo(han, "han", syl, " ".join(sorted(syl)), "".join(syl[:surname_len]))
    tokens = [t for t in _LATIN_SPLIT.split(text) if t]
    syl_list: list[str] = []
    for tok in tokens:
        syl_list.extend(_split_run_together(tok))
    syl = tuple(syl_list)
    # In Latin script the surname may be first or last; an upper-cased token marks it.
    upper = [t.lower() for t in tokens if t.isupper() and len(tokens) > 1]
    surname = upper[0] if upper else ""
    return NameInfo(" ".join(t.upper() for t in tokens), "latin", syl, " ".join(sorted(syl)),
                    surname)


# --- birth date, sex, phone ---------------------------------------------------------------
def normalise_birth_date(raw: str | None) -> str | None:
    if not raw:
        return None
    digits = raw.replace("-", "").strip()
    if len(digits) != 8 or not digits.isdigit():
        return None
    return _birth(digits)


_SEX = {"M": "M", "F": "F", "男": "M", "女": "F", "m": "M", "f": "F"}


def normalise_sex(raw: str | None) -> str | None:
    return _SEX.get(raw.strip()) if raw else None


def normalise_phone(raw: str | None) -> str | None:
    """Digits only, without a +86/0086 prefix; None if fewer than 7 digits."""
    if not raw:
        return None
    digits = re.sub(r"\D", "", raw)
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) == 11:
            digits = digits[len(prefix):]
    return digits if len(digits) >= 7 else None


# --- ID typo neighbourhoods (used only in memory, before pseudonymisation) ----------------
_INV11 = {w: pow(w, -1, 11) for w in set(_WEIGHTS)}


def _valid18(value: str) -> bool:
    return (len(value) == 18 and value[:17].isdigit() and _birth(value[6:14]) is not None
            and id_check_char(value[:17]) == value[17])


def id_neighbours(info: IdInfo) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The checksum-valid resident IDs one typo away from ``info``: ``(one_digit_off,
    transposed)``.

    GB 11643 catches every single-digit error and adjacent transposition, so a *valid* 18-digit
    ID has no valid neighbour and we return nothing. An invalid one has at most ~18 valid
    single-digit corrections (at most one per position: the checksum fixes the digit) plus a few
    valid transpositions; a 15-digit ID upgraded to 18 had no checksum, so its neighbours are the
    upgrades of every one-digit change of the 15 digits. The caller pseudonymises the result;
    the clear variants never leave the process.
    """
    if info.kind != "resident":
        return (), ()
    v = info.value
    if info.upgraded:
        body15 = v[:6] + v[8:17]
        subs = []
        for i in range(15):
            for d in "0123456789":
                if d != body15[i]:
                    cand = upgrade_15(body15[:i] + d + body15[i + 1:])
                    if _birth(cand[6:14]) is not None:
                        subs.append(cand)
        return tuple(subs), ()
    if info.valid or not v[:17].isdigit():
        return (), ()
    target = _CHECK.index(v[17]) if v[17] in _CHECK else None
    total = sum(int(c) * w for c, w in zip(v[:17], _WEIGHTS, strict=True))
    subs = [v[:17] + id_check_char(v[:17])] if _birth(v[6:14]) else []
    if target is not None:
        for i, w in enumerate(_WEIGHTS):
            rest = total - w * int(v[i])
            digit = ((target - rest) * _INV11[w]) % 11
            if digit < 10 and str(digit) != v[i]:
                cand = v[:i] + str(digit) + v[i + 1:]
                if _birth(cand[6:14]) is not None:
                    subs.append(cand)
    swaps = []
    for i in range(17):
        if v[i] != v[i + 1]:
            cand = v[:i] + v[i + 1] + v[i] + v[i + 2:]
            if _valid18(cand):
                swaps.append(cand)
    return tuple(subs), tuple(swaps)


def deletion_variants(value: str) -> tuple[str, ...]:
    """Each string with one character deleted. Two equally long strings one substitution or
    one adjacent transposition apart share a variant (symmetric-delete neighbourhood): the
    typo test for opaque document numbers, which carry no checksum. (An inserted or dropped
    character is not caught: the variants differ in length.)"""
    return tuple(sorted({value[:i] + value[i + 1:] for i in range(len(value))}))


# --- look-alike characters (four-corner codes) --------------------------------------------
@lru_cache(maxsize=1)
def _four_corner() -> dict[str, str]:
    try:
        from four_corner_method import FourCornerMethod
    except ImportError:  # optional: without it, no look-alike level (a weaker name comparator)
        return {}
    data: dict[str, str] = FourCornerMethod().data
    return data


@lru_cache(maxsize=65536)
def lookalike(a: str, b: str) -> bool:
    """Two different Han characters that look alike (形近字): their four-corner codes agree in
    at least three of the four corners. Pinyin cannot see these (己/已, 未/末, 戊/戌)."""
    if a == b:
        return False
    table = _four_corner()
    ca, cb = table.get(a), table.get(b)
    if not ca or not cb:
        return False
    return sum(x == y for x, y in zip(ca[:4], cb[:4], strict=True)) >= 3


# --- birth dates ----------------------------------------------------------------------------
_BIRTH_RANK = {"swapped_dm": 3, "one_digit": 2, "same_year": 1, "different": 0}


@lru_cache(maxsize=1 << 18)
def _birth_pair(value: str, k: str) -> str:
    """Level of one known date against ``value`` (not equal)."""
    y, m, d = value[:4], value[5:7], value[8:10]
    if k[:4] == y and k[5:7] == d and k[8:10] == m:
        return "swapped_dm"
    digits = y + m + d
    kd = k[:4] + k[5:7] + k[8:10]
    if sum(a != b for a, b in zip(digits, kd, strict=True)) == 1:
        return "one_digit"
    return "same_year" if k[:4] == y else "different"


def birth_level(value: str, known: set[str] | frozenset[str]) -> str:
    """Graded comparison of an ISO birth date with a set: ``exact``, ``swapped_dm`` (day and
    month swapped), ``one_digit`` (one of the 8 digits differs), ``same_year``, ``different``.
    The strongest level over the known dates (swapped > one digit > same year); pairs are
    memoised: the same dates meet again for every record of a person."""
    if value in known:
        return "exact"
    best = "different"
    for k in known:
        level = _birth_pair(value, k)
        if level == "swapped_dm":
            return level
        if _BIRTH_RANK[level] > _BIRTH_RANK[best]:
            best = level
    return best


# --- Latin forms of names -------------------------------------------------------------------
@lru_cache(maxsize=65536)
def latin_forms(text: str, script: str, syllables: tuple[str, ...]) -> tuple[str, ...]:
    """Lower-case letter strings a name can be written as, in any token order (for
    Jaro-Winkler). Han names: their pinyin, surname first and last. Latin names: the tokens
    joined in every order (up to three tokens; more: as written and reversed)."""
    from itertools import permutations

    if script == "han":
        if not syllables:
            return ()
        return tuple(dict.fromkeys(("".join(syllables),
                                    "".join(syllables[1:] + syllables[:1]))))
    toks = [t.lower() for t in text.split()]
    if not toks:
        return ()
    if len(toks) <= 3:
        return tuple(dict.fromkeys("".join(p) for p in permutations(toks)))
    return ("".join(toks), "".join(reversed(toks)))


@lru_cache(maxsize=65536)
def latin_tokens(text: str, script: str, syllables: tuple[str, ...]) -> tuple[str, ...]:
    """Name parts as lower-case Latin tokens: a Han name gives (surname pinyin, given-name
    pinyin), a Latin name its tokens."""
    if script == "han":
        if not syllables:
            return ()
        return (syllables[0], "".join(syllables[1:])) if len(syllables) > 1 else syllables
    return tuple(t.lower() for t in text.split())


_SOUNDEX = {**dict.fromkeys("BFPV", "1"), **dict.fromkeys("CGJKQSXZ", "2"),
            **dict.fromkeys("DT", "3"), "L": "4", **dict.fromkeys("MN", "5"), "R": "6"}


@lru_cache(maxsize=65536)
def soundex(token: str) -> str:
    """American Soundex of one Latin token (a blocking key for misspelt Latin names)."""
    codes = _SOUNDEX
    t = "".join(c for c in token.upper() if "A" <= c <= "Z")
    if not t:
        return ""
    out, last = t[0], codes.get(t[0], "")
    for c in t[1:]:
        code = codes.get(c, "")
        if code and code != last:
            out += code
        if c not in "HW":
            last = code
    return (out + "000")[:4]
