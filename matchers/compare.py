"""A record against an identity, weighed by a Fellegi-Sunter model.

:class:`FSComparator` composes one comparator per feature (:mod:`matchers.comparators`, the
ones the model file names), turns their levels into match weights (log2 m/u) with the
versioned model of :mod:`matchers.model` (EM-estimated m and u, term-frequency adjustment for
names) and returns a :class:`~matchers.types.Comparison` whose explanation carries every
feature's weight.

Hard conflicts are not weights: a level a comparator lists in its ``conflicts`` (two different
checksum-valid resident IDs with no typo between them) means two people, whatever the names
say.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from .comparators import by_spec
from .model import FSModel, ModelError, default_model
from .types import Comparison, FeatureComparator, FeatureScore, Identity, PersonRecord

Levels = tuple[str, ...]  # one level per comparator, in the model's feature order
_Scored = tuple[tuple[FeatureScore, ...], float, float, str | None]


class FSComparator:
    """Fellegi-Sunter comparator over graded levels, with a versioned model file.

    ``overrides`` (feature -> comparator) replaces the comparators the model names, to run two
    comparators of one feature side by side on the same model; an override must grade levels
    the model weighs. :attr:`NAME` then names the overrides too.

    Scoring is memoised on (levels, name TF adjustment): a few thousand combinations recur for
    every candidate, and building the feature scores is most of a comparison's cost.
    :meth:`may_link` bounds a pair's weight from its cheap features so that a candidate that
    cannot reach a threshold skips the full comparison (see :meth:`weight_bound`)."""

    def __init__(self, model: FSModel | None = None,
                 overrides: Mapping[str, FeatureComparator] | None = None) -> None:
        self.model = m = model or default_model()
        comps = list(by_spec(m.comparators))
        features = [c.feature for c in comps]
        for feature, comp in (overrides or {}).items():
            if feature not in features or comp.feature != feature:
                raise ModelError(f"override {comp!r} for feature {feature!r}: the model "
                                 f"weighs {', '.join(features)}")
            comps[features.index(feature)] = comp
        for comp in comps:
            unweighed = [lvl for lvl in comp.levels if lvl not in m.m.get(comp.feature, {})]
            if unweighed:
                raise ModelError(f"comparator {comp!r} grades levels the model does not "
                                 f"weigh: {', '.join(unweighed)}")
        self.comparators: tuple[FeatureComparator, ...] = tuple(comps)
        self.NAME = m.version + "".join(f"/{c.feature}={c.name}@{c.version}"
                                        for c in self.comparators
                                        if overrides and c.feature in overrides)
        self._memo: dict[tuple[Levels, float], _Scored] = {}
        self._calls: tuple[Callable[[PersonRecord, Identity], str], ...] = tuple(
            c.compare for c in comps)
        # The name comparator: its levels that take the TF adjustment of the record's name key.
        tf_at = [i for i, c in enumerate(comps) if c.tf_levels]
        self._tf_index = tf_at[0] if tf_at else -1
        self._tf_levels = comps[tf_at[0]].tf_levels if tf_at else frozenset()
        # weight_bound: cheap features graded exactly ('missing' weighs 0), the others at
        # their best weight when present; names at their best with the record's TF.
        self._graded = tuple((c.compare, {"missing": 0.0, **{lvl: m.weight(c.feature, lvl)
                                                             for lvl in c.levels}})
                             for c in comps if c.cheap)
        self._bounded = tuple((c.present, max(0.0, c.upper_bound(m)[1]))
                              for c in comps if not c.cheap and not c.tf_levels)
        if tf_at:
            name = comps[tf_at[0]]
            w = {lvl: m.weight(name.feature, lvl) for lvl in name.levels}
            self._name_present: Callable[[PersonRecord, Identity], bool] | None = name.present
            self._name_tf_max = max(v for lvl, v in w.items() if lvl in name.tf_levels)
            self._name_other_max = max((v for lvl, v in w.items() if lvl not in name.tf_levels),
                                       default=-math.inf)
        else:
            self._name_present = None
            self._name_tf_max = self._name_other_max = 0.0

    def levels(self, rec: PersonRecord, ident: Identity) -> Levels:
        """Every comparator's level for the pair, in the model's feature order."""
        return tuple([f(rec, ident) for f in self._calls])

    def compare(self, rec: PersonRecord, ident: Identity) -> Comparison:
        return self.score(rec, ident.person_id, tuple([f(rec, ident) for f in self._calls]))

    def threshold_weight(self, probability: float) -> float | None:
        """The total weight at which the calibrated probability reaches ``probability``
        (None when the calibration is not increasing: no bound then)."""
        a, b = self.model.calibration
        if a <= 0 or not 0.0 < probability < 1.0:
            return None
        return (math.log2(probability / (1.0 - probability)) - b) / a

    def weight_bound(self, rec: PersonRecord, ident: Identity) -> float:
        """An upper bound on ``compare(rec, ident).total_weight``: the cheap features (ID,
        birth date, sex, phone: set lookups and a memoised date pair) graded exactly, the
        others (name, address) at the best weight their levels can reach."""
        m = self.model
        total = m.prior_weight
        for compare, weights in self._graded:
            total += weights[compare(rec, ident)]
        for present, best in self._bounded:
            if present(rec, ident):
                total += best
        name_present = self._name_present
        if name_present is not None and name_present(rec, ident):
            # every TF level gets the same adjustment
            tf = m.tf_adjust(rec.name_key, "exact")
            total += max(self._name_tf_max + tf, self._name_other_max)
        return total

    def may_link(self, rec: PersonRecord, ident: Identity, min_weight: float | None) -> bool:
        """False only when the pair's total weight is certainly below ``min_weight``."""
        return min_weight is None or self.weight_bound(rec, ident) >= min_weight - 1e-6

    def score(self, rec: PersonRecord, person_id: str, levels: Levels) -> Comparison:
        """The comparison of a record with levels ``levels`` (see :meth:`levels`)."""
        m = self.model
        i = self._tf_index
        tf = (m.tf_adjust(rec.name_key, levels[i])
              if i >= 0 and levels[i] in self._tf_levels else 0.0)
        key = (levels, tf)
        hit = self._memo.get(key)
        if hit is None:
            feats = []
            conflict = None
            for comp, lvl in zip(self.comparators, levels, strict=True):
                if lvl == "missing" and not comp.explain_missing:
                    continue
                w = m.weight(comp.feature, lvl)
                if lvl in comp.tf_levels:
                    w += tf
                feats.append(FeatureScore(comp.feature, lvl, w))
                if conflict is None:
                    conflict = comp.conflicts.get(lvl)
            prior = m.prior_weight
            total = prior + sum(f.weight for f in feats)
            hit = (tuple(feats), prior, m.probability(total), conflict)
            if len(self._memo) >= 1 << 16:
                self._memo.clear()
            self._memo[key] = hit
        return Comparison(person_id, hit[0], hit[1], hit[2], hit[3])
