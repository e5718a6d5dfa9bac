"""Address comparators: one for Chinese addresses, one for Latin-script addresses, and the one a
model names for the ``address`` feature, which picks between them per record by script.

All three grade the same levels, strongest first:

* ``exact``: the same address once normalised;
* ``same_premises``: the same building (Chinese: district, road and number, plus the estate
  building when both give one; Latin: house number and street) with another or no unit or
  room;
* ``similar``: similarity >= 90 of the whole addresses (typos, missing parts; Chinese:
  of the characters, Latin: token-set, or of the characters with the spaces dropped, which
  a space typed one letter early does not move), house numbers not contradicting;
* ``same_street``: the same road or street, another number;
* ``same_area``: the same district (Chinese) or postcode or locality (Latin);
* ``different``.

Latin streets are the same when their words are, or similar >= 90 as words or as letters
with the spaces dropped ("kellways treet" is "kellway street"); Latin postcodes agree when
equal, absent on one side, or one typing slip apart (one digit replaced, or two adjacent
digits swapped).

The address is a record's own, top-level ``address`` on the sources that give where the person
lives (``rental``, ``residence``, ``person``: :data:`matchers.features.ADDRESS_SOURCES`); a
hotel's or employer's address says nothing about who stayed or works there. Each record is
graded against every address the identity has, the strongest level wins. Most records have no
address, so a missing one is left out of explanations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from rapidfuzz.fuzz import ratio, token_set_ratio

from matchers.comparators.base import LevelComparator
from matchers.types import Identity, PersonRecord

LEVELS = ("exact", "same_premises", "similar", "same_street", "same_area", "different")
_RANK = {lvl: i for i, lvl in enumerate(LEVELS)}
_HAN = re.compile(r"[\u3400-\u9fff]")
SIMILAR = 90


def is_han(address: str) -> bool:
    """The address is written in Chinese characters (else it is graded as Latin script)."""
    return _HAN.search(address) is not None


# --- Chinese --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ZhAddress:
    """A Chinese address in its parts (each '' when absent): province, city, district, road,
    number (门牌号), building (estate and 栋/幢/号楼), and the rest (unit, room)."""

    province: str
    city: str
    district: str
    road: str
    number: str
    building: str
    rest: str


_ZH = re.compile(
    r"^(?P<province>.+?(?:省|自治区))?"
    r"(?P<city>.+?(?:市|自治州|地区|盟))?"
    r"(?P<district>.+?(?:区|县|旗))?"
    r"(?P<road>.+?(?:大道|路|街|道|巷|胡同|弄|里))?"
    r"(?P<number>\d+号)?"
    r"(?P<building>.*?\d+(?:栋|幢|号楼|座))?"
    r"(?P<rest>.*)$")
_ZH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")


@lru_cache(maxsize=65536)
def parse_zh(address: str) -> ZhAddress:
    """The parts of a Chinese address (spaces and punctuation dropped, full-width digits
    made half-width). A part the pattern cannot find stays '' and the text goes to ``rest``."""
    text = re.sub(r"[\s,，、·\-#]", "", address.translate(_ZH_DIGITS))
    m = _ZH.match(text)
    assert m is not None  # every group is optional and rest takes the remainder
    g = {k: v or "" for k, v in m.groupdict().items()}
    return ZhAddress(g["province"], g["city"], g["district"], g["road"], g["number"],
                     g["building"], g["rest"])


def _agree(a: str, b: str) -> bool:
    """Two parts do not contradict: equal, or one side does not give it."""
    return not a or not b or a == b


def zh_level(a: str, b: str) -> str:
    """The level of two Chinese addresses (see the module's docstring)."""
    if a == b:
        return "exact"
    pa, pb = parse_zh(a), parse_zh(b)
    area = (_agree(pa.province, pb.province) and _agree(pa.city, pb.city)
            and _agree(pa.district, pb.district) and bool(pa.city or pa.district)
            and bool(pb.city or pb.district))
    if area and pa.road and pa.road == pb.road:
        if pa.number and pa.number == pb.number and _agree(pa.building, pb.building):
            if pa.building == pb.building and pa.rest == pb.rest:
                return "exact"
            return "same_premises"
    if _agree(pa.number, pb.number) and ratio(_zh_text(pa), _zh_text(pb)) >= SIMILAR:
        return "similar"
    if area and pa.road and pa.road == pb.road:
        return "same_street"
    if pa.district and pa.district == pb.district and _agree(pa.city, pb.city):
        return "same_area"
    return "different"


def _zh_text(p: ZhAddress) -> str:
    """The address without its province (often left out), for a character-level similarity."""
    return p.city + p.district + p.road + p.number + p.building + p.rest


# --- Latin script ---------------------------------------------------------------------------
#: Street-type and direction words and their abbreviations, to one spelling.
STREET_WORDS = {
    "ST": "STREET", "STR": "STREET", "RD": "ROAD", "AVE": "AVENUE", "AV": "AVENUE",
    "BLVD": "BOULEVARD", "DR": "DRIVE", "CT": "COURT", "CRT": "COURT", "PL": "PLACE",
    "LN": "LANE", "TCE": "TERRACE", "CRES": "CRESCENT", "CR": "CRESCENT", "HWY": "HIGHWAY",
    "PDE": "PARADE", "CL": "CLOSE", "SQ": "SQUARE", "PKWY": "PARKWAY", "CIR": "CIRCLE",
    "WY": "WAY", "GR": "GROVE", "CCT": "CIRCUIT", "ESP": "ESPLANADE", "N": "NORTH",
    "S": "SOUTH", "E": "EAST", "W": "WEST",
    "APT": "UNIT", "FLAT": "UNIT", "U": "UNIT", "STE": "UNIT", "SUITE": "UNIT",
}
_STREET_TYPES = frozenset({"STREET", "ROAD", "AVENUE", "BOULEVARD", "DRIVE", "COURT", "PLACE",
                           "LANE", "TERRACE", "CRESCENT", "HIGHWAY", "PARADE", "CLOSE",
                           "SQUARE", "PARKWAY", "CIRCLE", "WAY", "GROVE", "CIRCUIT",
                           "ESPLANADE"})
_LATIN_SPLIT = re.compile(r"[^0-9A-Z]+")
_NUMBER = re.compile(r"^\d+[A-Z]?$")
_POSTCODE = re.compile(r"^\d{4,6}$")


@dataclass(frozen=True, slots=True)
class LatinAddress:
    """A Latin-script address: its normalised tokens, the house number (the first number
    before the street), the street (the words up to and including a street type), the
    postcode (a 4-6 digit number after the street) and the locality (the words after the
    street)."""

    tokens: tuple[str, ...]
    number: str
    street: str
    postcode: str
    locality: str


@lru_cache(maxsize=65536)
def parse_latin(address: str) -> LatinAddress:
    toks = tuple(STREET_WORDS.get(t, t) for t in _LATIN_SPLIT.split(address.upper()) if t)
    number = ""
    words: list[str] = []
    i = 0
    while i < len(toks) and (_NUMBER.match(toks[i]) or toks[i] == "UNIT"):
        if _NUMBER.match(toks[i]):
            number = toks[i]  # '5 / 12 main st': the last number before the street
        i += 1
    rest = toks[i:]
    cut = next((j for j, t in enumerate(rest) if t in _STREET_TYPES), -1)
    street_words = rest[:cut + 1] if cut >= 0 else rest[:2]
    after = rest[len(street_words):]
    words = [t for t in after if not _POSTCODE.match(t)]
    postcode = next((t for t in after if _POSTCODE.match(t)), "")
    return LatinAddress(toks, number, " ".join(street_words), postcode, " ".join(words))


def _one_slip(a: str, b: str) -> bool:
    """Equal, or one typing slip apart: one character replaced, or two adjacent swapped."""
    if a == b:
        return True
    if len(a) != len(b):
        return False
    diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                              and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])


def _alike(a: str, b: str) -> bool:
    """Two runs of words similar >= 90: as word sets, or as letters without the spaces."""
    return (token_set_ratio(a, b) >= SIMILAR
            or ratio(a.replace(" ", ""), b.replace(" ", "")) >= SIMILAR)


def latin_level(a: str, b: str) -> str:
    """The level of two Latin-script addresses (see the module's docstring)."""
    if a == b:
        return "exact"
    pa, pb = parse_latin(a), parse_latin(b)
    if pa.tokens == pb.tokens:
        return "exact"
    street = bool(pa.street and pb.street) and (
        pa.street == pb.street or _alike(pa.street, pb.street))
    place = not pa.postcode or not pb.postcode or _one_slip(pa.postcode, pb.postcode)
    if street and place and pa.number and pa.number == pb.number:
        return "same_premises"
    if _agree(pa.number, pb.number) and _alike(" ".join(pa.tokens), " ".join(pb.tokens)):
        return "similar"
    if street and place:
        return "same_street"
    if (pa.postcode and pa.postcode == pb.postcode) or (
            pa.locality and pa.locality == pb.locality):
        return "same_area"
    return "different"


# --- the comparators ------------------------------------------------------------------------
class _AddressLevels(LevelComparator):
    feature = "address"
    levels = LEVELS
    explain_missing = False

    def present(self, rec: PersonRecord, ident: Identity) -> bool:
        return bool(rec.address and ident.addresses)

    def compare(self, rec: PersonRecord, ident: Identity) -> str:
        a = rec.address
        if not a or not ident.addresses:
            return "missing"
        if a in ident.addresses:
            return "exact"
        best = "different"
        for known in ident.addresses:
            lvl = self.pair(a, known)
            if _RANK[lvl] < _RANK[best]:
                best = lvl
                if lvl == "exact":
                    break
        return best

    def pair(self, a: str, b: str) -> str:
        raise NotImplementedError


class ZhAddressComparator(_AddressLevels):
    """Chinese addresses, parsed into province / city / district / road / number / building
    (:func:`parse_zh`)."""

    name = "zh-address"
    version = 1

    def pair(self, a: str, b: str) -> str:
        return zh_level(a, b)


class LatinAddressComparator(_AddressLevels):
    """Latin-script addresses: normalised tokens (street words spelled out), house number,
    street, postcode and locality (:func:`parse_latin`)."""

    name = "latin-address"
    version = 2

    def pair(self, a: str, b: str) -> str:
        return latin_level(a, b)


class AddressComparator(_AddressLevels):
    """The ``address`` feature of the shipped model: a pair in which both addresses are in
    Chinese characters is graded as Chinese (:class:`ZhAddressComparator`), any other as
    Latin script (:class:`LatinAddressComparator`)."""

    name = "address"
    version = 2

    def pair(self, a: str, b: str) -> str:
        return zh_level(a, b) if is_han(a) and is_han(b) else latin_level(a, b)
