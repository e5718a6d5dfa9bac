"""Graded per-feature comparison of a record with an identity (Fellegi-Sunter weights).

Weights are log2 Bayes factors (log2 m/u). These are hand-set, documented starting values for
the pipeline issue; the probabilistic issue replaces them with EM-estimated m and u.
"""

from __future__ import annotations

from .types import Comparison, FeatureScore, Identity, PersonRecord

# level -> weight. Each feature's docstring-like note says what the level means.
WEIGHTS: dict[str, dict[str, float]] = {
    # resident ID: exact (valid), exact (unvalidated / other document), different
    "id": {"exact_valid": 20.0, "exact_other": 12.0, "different": -6.0,
           "different_valid": -40.0, "missing": 0.0},
    # name: same characters; same tone-less pinyin (homophone / script change); alias; differs
    "name": {"exact": 10.0, "same_pinyin": 7.0, "alias": 7.0, "surname_only": -3.0,
             "different": -8.0, "missing": 0.0},
    "birth_date": {"exact": 11.0, "different": -9.0, "missing": 0.0},
    "sex": {"same": 1.0, "different": -7.0, "missing": 0.0},
    "phone": {"same": 10.0, "different": -1.0, "missing": 0.0},
}
PRIOR_WEIGHT = -12.0  # log2 prior odds that a blocked candidate pair is a match


def _prob(weight: float) -> float:
    if weight > 60:
        return 1.0
    if weight < -60:
        return 0.0
    odds = 2.0 ** weight
    return odds / (1.0 + odds)


class RuleWeightComparator:
    """Compare id, name, birth date, sex and phone; return graded levels with weights."""

    NAME = "fs-handset-v1"

    def compare(self, rec: PersonRecord, ident: Identity) -> Comparison:
        conflict = None
        feats: list[FeatureScore] = []

        # id
        if not rec.id_hash or not ident.id_hashes:
            lvl = "missing"
        elif rec.id_hash in ident.id_hashes:
            lvl = "exact_valid" if rec.id_valid else "exact_other"
        elif rec.id_valid and ident.rid_hash and rec.id_kind == "resident":
            lvl, conflict = "different_valid", "different_resident_id"
        else:
            lvl = "different"
        feats.append(FeatureScore("id", lvl, WEIGHTS["id"][lvl]))

        # name
        if not rec.name_key:
            lvl = "missing"
        elif rec.name in ident.names:
            lvl = "exact"
        elif rec.name_key in ident.name_keys:
            lvl = "same_pinyin"
        elif set(rec.aliases) & ident.name_keys:
            lvl = "alias"
        elif rec.surname and rec.surname in ident.surnames:
            lvl = "surname_only"
        else:
            lvl = "different"
        feats.append(FeatureScore("name", lvl, WEIGHTS["name"][lvl]))

        for feat, value, have in (("birth_date", rec.birth_date, ident.birth_dates),):
            lvl = "missing" if not value or not have else (
                "exact" if value in have else "different")
            feats.append(FeatureScore(feat, lvl, WEIGHTS[feat][lvl]))
        lvl = "missing" if not rec.sex or not ident.sexes else (
            "same" if rec.sex in ident.sexes else "different")
        feats.append(FeatureScore("sex", lvl, WEIGHTS["sex"][lvl]))
        lvl = "missing" if not rec.phone_hash or not ident.phone_hashes else (
            "same" if rec.phone_hash in ident.phone_hashes else "different")
        feats.append(FeatureScore("phone", lvl, WEIGHTS["phone"][lvl]))

        total = PRIOR_WEIGHT + sum(f.weight for f in feats)
        return Comparison(ident.person_id, tuple(feats), PRIOR_WEIGHT, _prob(total), conflict)
