"""Name comparators: the full graded one the shipped model uses, and a plain one to measure
what the fuzzy levels buy (``benchmarks/matching/side_by_side.py``)."""

from __future__ import annotations

from itertools import permutations

from rapidfuzz.distance import JaroWinkler

from matchers.comparators.base import LevelComparator
from matchers.comparators.latin_names import initials_match, nickname_match, variant_keys
from matchers.normalise import NameInfo, latin_forms, latin_tokens, lookalike, normalise_name
from matchers.types import Identity, PersonRecord

JW_HIGH, JW_MID = 0.95, 0.88


class NameComparator(LevelComparator):
    """Chinese and romanised names.

    ``exact`` characters; ``same_pinyin`` (Han homophone or traditional form); ``reordered``
    (Latin, same tokens in another order or case); ``romanised`` (pinyin of the other side's
    Han name, any order); ``variant`` (the same with a surname in another romanisation:
    Wade-Giles, Cantonese, ... ``CHANG WEI`` / 张伟, ``WONG`` / ``WANG``); ``alias`` (a
    watchlist alias); ``lookalike`` (one Han character differs and looks alike by four-corner
    code); ``nickname`` (Latin, a given name and its short form, ``BILL`` / ``WILLIAM``);
    ``initials`` (Latin, given names as initials or a middle initial dropped, ``J SMITH`` /
    ``JOHN SMITH``); ``jw_high`` / ``jw_mid`` (Jaro-Winkler of the romanisations, Latin on
    either side); ``one_char`` (one Han character differs); ``part_agrees`` (Latin on both
    sides, one name part of two or more letters the same and another not, where no upper-case
    surname marks which part is which: ``ETHAN MIELL`` / ``ETHAN WIHTR``); ``surname_only``;
    ``different``.
    The agreements on the whole name take the model's term-frequency adjustment (a common
    name is weaker evidence than a rare one).
    """

    name = "zh-name"
    version = 2
    feature = "name"
    levels = ("exact", "same_pinyin", "reordered", "romanised", "variant", "alias",
              "lookalike", "nickname", "initials", "jw_high", "jw_mid", "one_char",
              "part_agrees", "surname_only", "different")
    tf_levels = frozenset({"exact", "same_pinyin", "reordered", "romanised"})

    def present(self, rec: PersonRecord, ident: Identity) -> bool:
        return bool(rec.name_key and ident.names)

    def compare(self, rec: PersonRecord, ident: Identity) -> str:
        if not rec.name_key or not ident.names:
            return "missing"
        if rec.name in ident.names:
            return "exact"
        others = [normalise_name(n) for n in sorted(ident.names)]
        if rec.name_key in ident.name_keys:
            if rec.script == "han" and any(o.script == "han" and o.key == rec.name_key
                                           for o in others):
                return "same_pinyin"
            if rec.script == "latin" and any(o.script == "latin" and o.key == rec.name_key
                                             for o in others):
                return "reordered"
            if any(o.key == rec.name_key for o in others):
                return "romanised"
        latin = rec.script == "latin" or any(o.script == "latin" for o in others)
        if latin and _variant(rec, others):
            return "variant"
        if (rec.aliases and ident.name_keys.intersection(rec.aliases)) or \
                (rec.alias_names and ident.names.intersection(rec.alias_names)):
            return "alias"
        best = None
        if rec.script == "han":
            for o in others:
                if o.script != "han" or len(o.text) != len(rec.name) or len(o.text) < 2:
                    continue
                diff = [(a, b) for a, b in zip(rec.name, o.text, strict=True) if a != b]
                if len(diff) == 1:
                    if lookalike(*diff[0]):
                        return "lookalike"
                    best = "one_char"
        if rec.script == "latin":
            mine = tuple(rec.name.split())
            theirs = [tuple(o.text.split()) for o in others if o.script == "latin"]
            if any(nickname_match(mine, t) for t in theirs):
                return "nickname"
            if any(initials_match(mine, t) for t in theirs):
                return "initials"
        if latin:
            jw = max((latin_similarity(rec, o) for o in others
                      if not (rec.script == "han" and o.script == "han")), default=0.0)
            if jw >= JW_HIGH:
                return "jw_high"
            if jw >= JW_MID and best is None:
                best = "jw_mid"
        if best:
            return best
        if rec.surname and rec.surname in ident.surnames:
            return "surname_only"
        if rec.script == "latin" and _part_agrees(rec.name, others):
            return "part_agrees"
        return "different"


def _part_agrees(name: str, others: list[NameInfo]) -> bool:
    """A Latin name shares a token of two or more letters with another Latin name."""
    mine = {t for t in name.split() if len(t) > 1}
    return any(o.script == "latin" and mine.intersection(o.text.split()) for o in others)


def _variant(rec: PersonRecord, others: list[NameInfo]) -> bool:
    """One side is a Latin name that, with a surname read as another romanisation
    (:func:`~matchers.comparators.latin_names.variant_keys`), has the other's name key."""
    if rec.script == "latin" and variant_keys(rec.syllables).intersection(
            o.key for o in others):
        return True
    return any(o.script == "latin" and rec.name_key in variant_keys(o.syllables)
               for o in others)


def latin_similarity(rec: PersonRecord, other: NameInfo) -> float:
    """Jaro-Winkler of two names in Latin letters, token by token: with as many tokens on
    each side, the best token order's *weakest* token (so that twins sharing a surname do not
    score high on the surname alone); otherwise the names run together (ZHANGWEI), capped
    below the high level."""
    mine = latin_tokens(rec.name, rec.script, rec.syllables)
    theirs = latin_tokens(other.text, other.script, other.syllables)
    if mine and len(mine) == len(theirs) and len(mine) <= 3:
        return max(min(JaroWinkler.similarity(a, b) for a, b in zip(perm, theirs, strict=True))
                   for perm in permutations(mine))
    joined = max((JaroWinkler.similarity(a, b)
                  for a in latin_forms(rec.name, rec.script, rec.syllables)
                  for b in latin_forms(other.text, other.script, other.syllables)),
                 default=0.0)
    return min(joined, JW_HIGH - 1e-9)


class PlainNameComparator(LevelComparator):
    """Names without fuzzy levels: ``exact`` characters; ``romanised`` (the same order-free
    pinyin key, any script: homophones and romanisations alike); ``surname_only``;
    ``different``. A baseline for :class:`NameComparator` (it grades a subset of its levels,
    so the same model weighs both)."""

    name = "plain-name"
    version = 1
    feature = "name"
    levels = ("exact", "romanised", "surname_only", "different")
    tf_levels = frozenset({"exact", "romanised"})

    def present(self, rec: PersonRecord, ident: Identity) -> bool:
        return bool(rec.name_key and ident.names)

    def compare(self, rec: PersonRecord, ident: Identity) -> str:
        if not rec.name_key or not ident.names:
            return "missing"
        if rec.name in ident.names:
            return "exact"
        if rec.name_key in ident.name_keys:
            return "romanised"
        if rec.surname and rec.surname in ident.surnames:
            return "surname_only"
        return "different"
