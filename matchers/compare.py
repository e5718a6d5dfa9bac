"""Graded per-feature comparison of a record with an identity, weighed by a Fellegi-Sunter model.

:func:`compare_levels` is the pure comparison: one graded *level* per feature (no weights).
:class:`FSComparator` turns levels into match weights (log2 m/u) with the versioned model of
:mod:`matchers.model` (EM-estimated m and u, term-frequency adjustment for names) and returns a
:class:`~matchers.types.Comparison` whose explanation carries every feature's weight.

Hard conflicts are not weights: two different checksum-valid resident IDs (with no typo
between them) mean two people, whatever the names say.
"""

from __future__ import annotations

import math
from itertools import permutations

from rapidfuzz.distance import JaroWinkler
from rapidfuzz.fuzz import token_set_ratio

from .model import FSModel, default_model
from .normalise import birth_level, latin_forms, latin_tokens, lookalike, normalise_name
from .types import Comparison, FeatureScore, Identity, PersonRecord

# Every level of every feature, strongest first. 'missing' (either side lacks the value) is
# implicit and always weighs 0: absence is no evidence.
LEVELS: dict[str, tuple[str, ...]] = {
    "id": ("exact_valid", "exact_other", "one_digit_off", "transposed", "one_char_off",
           "different", "different_valid"),
    "name": ("exact", "same_pinyin", "reordered", "romanised", "alias", "lookalike", "jw_high",
             "jw_mid", "one_char", "surname_only", "different"),
    "birth_date": ("exact", "swapped_dm", "one_digit", "same_year", "different"),
    "sex": ("same", "different"),
    "phone": ("same", "different"),
    "address": ("exact", "high", "mid", "different"),
}
FEATURES = tuple(LEVELS)
TF_LEVELS = frozenset({"exact", "same_pinyin", "reordered", "romanised"})
JW_HIGH, JW_MID = 0.95, 0.88


def id_level(rec: PersonRecord, ident: Identity) -> tuple[str, str | None]:
    """ID: ``exact_valid``; ``exact_other`` (same unvalidated/other number); ``one_digit_off``
    and ``transposed`` (a mistyped resident ID whose valid neighbour is the other side's ID,
    tested on HMACs of the neighbours, 15->18 included); ``one_char_off`` (opaque numbers
    within one edit); ``different``; ``different_valid`` (two valid resident IDs: a conflict)."""
    if not rec.id_hash or not ident.id_hashes:
        return "missing", None
    if rec.id_hash in ident.id_hashes:
        return ("exact_valid" if rec.id_valid else "exact_other"), None
    if (ident.id_hashes.intersection(rec.id_near) or rec.id_hash in ident.id_near
            or ident.id_near.intersection(rec.id_near)):
        return "one_digit_off", None
    if (ident.id_hashes.intersection(rec.id_swap) or rec.id_hash in ident.id_swap
            or ident.id_swap.intersection(rec.id_swap)):
        return "transposed", None
    if rec.id_del and ident.id_del.intersection(rec.id_del):
        return "one_char_off", None
    if rec.id_valid and rec.id_kind == "resident" and ident.rid_hash:
        return "different_valid", "different_resident_id"
    return "different", None


def name_level(rec: PersonRecord, ident: Identity) -> str:
    """Name: ``exact`` characters; ``same_pinyin`` (Han homophone or traditional form);
    ``reordered`` (Latin, same tokens in another order/case); ``romanised`` (pinyin of the
    other side's Han name, any order); ``alias`` (a watchlist alias); ``lookalike`` (one Han
    character differs and looks alike by four-corner code); ``jw_high``/``jw_mid``
    (Jaro-Winkler of the romanisations, Latin on either side); ``one_char`` (one Han character
    differs); ``surname_only``; ``different``."""
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
    if rec.script == "latin" or any(o.script == "latin" for o in others):
        jw = max((_latin_similarity(rec, o) for o in others
                  if not (rec.script == "han" and o.script == "han")), default=0.0)
        if jw >= JW_HIGH:
            return "jw_high"
        if jw >= JW_MID and best is None:
            best = "jw_mid"
    if best:
        return best
    if rec.surname and rec.surname in ident.surnames:
        return "surname_only"
    return "different"


def _latin_similarity(rec: PersonRecord, other) -> float:
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


def address_level(rec: PersonRecord, ident: Identity) -> str:
    """Address tokens (when a source gives a person's own address): ``exact``; ``high`` and
    ``mid`` token-set similarity (>= 90, >= 70); ``different``."""
    if not rec.address or not ident.addresses:
        return "missing"
    if rec.address in ident.addresses:
        return "exact"
    score = max(token_set_ratio(rec.address, a) for a in ident.addresses)
    return "high" if score >= 90 else "mid" if score >= 70 else "different"


def compare_levels(rec: PersonRecord, ident: Identity) -> tuple[dict[str, str], str | None]:
    """One graded level per feature, and a hard conflict if any."""
    idl, conflict = id_level(rec, ident)
    levels = {"id": idl, "name": name_level(rec, ident)}
    levels["birth_date"] = (birth_level(rec.birth_date, ident.birth_dates)
                            if rec.birth_date and ident.birth_dates else "missing")
    levels["sex"] = ("missing" if not rec.sex or not ident.sexes else
                     "same" if rec.sex in ident.sexes else "different")
    levels["phone"] = ("missing" if not rec.phone_hash or not ident.phone_hashes else
                       "same" if rec.phone_hash in ident.phone_hashes else "different")
    levels["address"] = address_level(rec, ident)
    return levels, conflict


class FSComparator:
    """Fellegi-Sunter comparator over graded levels, with a versioned model file.

    Scoring is memoised on (levels, name TF adjustment): a few thousand combinations recur for
    every candidate, and building the feature scores is most of a comparison's cost.
    :meth:`may_link` bounds a pair's weight from its cheap features so that a candidate that
    cannot reach a threshold skips the full comparison (see :meth:`weight_bound`)."""

    def __init__(self, model: FSModel | None = None) -> None:
        self.model = model or default_model()
        self.NAME = self.model.version
        self._memo: dict[tuple, tuple[tuple[FeatureScore, ...], float, float]] = {}
        m = self.model
        w = m._w
        # Upper bounds for the features the bound does not grade (name, address).
        self._name_tf_max = max(w["name"][lvl] for lvl in TF_LEVELS if lvl in w["name"])
        self._name_other_max = max(v for lvl, v in w["name"].items() if lvl not in TF_LEVELS)
        self._addr_max = max(0.0, *w["address"].values())
        self._w_id, self._w_birth = w["id"], w["birth_date"]
        self._w_sex, self._w_phone = w["sex"], w["phone"]

    def compare(self, rec: PersonRecord, ident: Identity) -> Comparison:
        levels, conflict = compare_levels(rec, ident)
        return self.score(rec, ident.person_id, levels, conflict)

    def threshold_weight(self, probability: float) -> float | None:
        """The total weight at which the calibrated probability reaches ``probability``
        (None when the calibration is not increasing: no bound then)."""
        a, b = self.model.calibration
        if a <= 0 or not 0.0 < probability < 1.0:
            return None
        return (math.log2(probability / (1.0 - probability)) - b) / a

    def weight_bound(self, rec: PersonRecord, ident: Identity) -> float:
        """An upper bound on ``compare(rec, ident).total_weight``: ID, birth date, sex and
        phone graded exactly (cheap: set lookups and a memoised date pair), name and address
        at the best weight their levels can reach."""
        m = self.model
        total = m.prior_weight
        idl, _ = id_level(rec, ident)
        if idl != "missing":
            total += self._w_id[idl]
        if rec.birth_date and ident.birth_dates:
            total += self._w_birth[birth_level(rec.birth_date, ident.birth_dates)]
        if rec.sex and ident.sexes:
            total += self._w_sex["same" if rec.sex in ident.sexes else "different"]
        if rec.phone_hash and ident.phone_hashes:
            total += self._w_phone["same" if rec.phone_hash in ident.phone_hashes
                                   else "different"]
        if rec.name_key and ident.names:  # every TF level gets the same adjustment
            tf = m.tf_adjust(rec.name_key, "exact")
            total += max(self._name_tf_max + tf, self._name_other_max)
        if rec.address and ident.addresses:
            total += self._addr_max
        return total

    def may_link(self, rec: PersonRecord, ident: Identity, min_weight: float | None) -> bool:
        """False only when the pair's total weight is certainly below ``min_weight``."""
        return min_weight is None or self.weight_bound(rec, ident) >= min_weight - 1e-6

    def score(self, rec: PersonRecord, person_id: str, levels: dict[str, str],
              conflict: str | None) -> Comparison:
        m = self.model
        name_lvl = levels["name"]
        tf = m.tf_adjust(rec.name_key, name_lvl) if name_lvl in TF_LEVELS else 0.0
        key = (levels["id"], name_lvl, levels["birth_date"], levels["sex"], levels["phone"],
               levels["address"], tf)
        hit = self._memo.get(key)
        if hit is None:
            feats = []
            for feat in FEATURES:
                lvl = levels[feat]
                if lvl == "missing" and feat == "address":
                    continue  # most sources have no personal address: keep explanations short
                w = m.weight(feat, lvl)
                if feat == "name" and lvl in TF_LEVELS:
                    w += tf
                feats.append(FeatureScore(feat, lvl, w))
            prior = m.prior_weight
            total = prior + sum(f.weight for f in feats)
            hit = (tuple(feats), prior, m.probability(total))
            if len(self._memo) >= 1 << 16:
                self._memo.clear()
            self._memo[key] = hit
        return Comparison(person_id, hit[0], hit[1], hit[2], conflict)


# The hand-set comparator of release 0.1 is replaced by the trained model; the old name stays
# importable for callers that construct it explicitly.
RuleWeightComparator = FSComparator
