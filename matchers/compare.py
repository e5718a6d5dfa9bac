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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from matchers.comparators import by_spec
from matchers.model import FSModel, ModelError, default_model
from matchers.types import Comparison, FeatureComparator, FeatureScore, Identity, PersonRecord

Levels = tuple[str, ...]  # one level per comparator, in the model's feature order
_Scored = tuple[tuple[FeatureScore, ...], float, float, str | None]
CompareIf = Callable[[PersonRecord, Identity, float | None], Comparison | None]


class FSComparator:
    """Fellegi-Sunter comparator over graded levels, with a versioned model file.

    ``overrides`` (feature -> comparator) replaces the comparators the model names, to run two
    comparators of one feature side by side on the same model; an override must grade levels
    the model weighs. :attr:`NAME` then names the overrides too.

    Scoring is memoised on (levels, name TF adjustment): a few thousand combinations recur for
    every candidate, and building the feature scores is most of a comparison's cost.
    :attr:`compare_if` bounds a pair's weight from its cheap features so that a candidate
    that cannot reach a threshold skips the full comparison (see :meth:`weight_bound`)."""

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
        self._levels = _all_levels(comps)
        # The name comparator: its levels that take the TF adjustment of the record's name key.
        tf_at = [i for i, c in enumerate(comps) if c.tf_levels]
        self._tf_index = tf_at[0] if tf_at else -1
        self._tf_levels = comps[tf_at[0]].tf_levels if tf_at else frozenset()
        self._bound = _weight_bound(m, comps)
        #: ``compare_if(rec, ident, min_weight)``: :meth:`compare` unless the pair's
        #: :meth:`weight_bound` is certainly below ``min_weight`` (then None), grading the
        #: cheap features once for both (the linker's call per candidate; generated, see
        #: :func:`_compare_if`).
        self.compare_if: CompareIf = _compare_if(m, comps, self.score)

    def levels(self, rec: PersonRecord, ident: Identity) -> Levels:
        """Every comparator's level for the pair, in the model's feature order."""
        return self._levels(rec, ident)

    def compare(self, rec: PersonRecord, ident: Identity) -> Comparison:
        return self.score(rec, ident.person_id, self._levels(rec, ident))

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
        others (name, address) at the best weight their levels can reach when present."""
        return self._bound(rec, ident)

    def counterfactuals(self, rec: PersonRecord, ident: Identity, threshold: float,
                        limit: int = 3) -> list[dict[str, Any]]:
        """The single changes of the record's evidence that flip its decision against
        ``ident`` (it joins at ``threshold`` or above with no hard conflict), computed with
        the model, the smallest change of weight first:

        * ``remove``: the record without its value of one feature ("without the phone on
          this record it would not link");
        * ``match``: for a record that does not join, one feature at its strongest level
          ("a matching birth date would link it").

        When no single change flips the decision, the one that comes closest, marked
        ``flips: false``. Each names the identity compared (``person_id``), the feature, the
        level it would be graded at and the probability it would give."""
        levels = self.levels(rec, ident)
        pid = ident.person_id
        base = self.score(rec, pid, levels)
        joined = base.conflict is None and base.probability >= threshold
        found: list[tuple[bool, float, int, dict[str, Any]]] = []
        for i, comp in enumerate(self.comparators):
            now = levels[i]
            options = [("remove", "missing")] if now != "missing" else []
            best = comp.upper_bound(self.model)[0]
            if not joined and now != best:
                options.append(("match", best))
            for change, level in options:
                c = self.score(rec, pid, (*levels[:i], level, *levels[i + 1:]))
                flips = (c.conflict is None and c.probability >= threshold) != joined
                found.append((not flips, abs(c.total_weight - base.total_weight), len(found),
                              {"change": change, "feature": comp.feature, "person_id": pid,
                               "level": level, "probability": round(c.probability, 6),
                               "flips": flips}))
        found.sort(key=lambda f: f[:3])
        flipping = [f[3] for f in found if not f[0]]
        return flipping[:limit] if flipping else [f[3] for f in found[:1]]

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


# The two per-candidate functions below are written out for the model's comparators (as
# ``collections.namedtuple`` writes its ``__new__``): a loop or comprehension over the
# comparators costs more than the comparators' calls themselves.
Pair = Callable[[PersonRecord, Identity], Any]


def _compiled(expr: str, names: dict[str, Any]) -> Pair:
    fn: Pair = eval(f"lambda rec, ident: {expr}", names)  # noqa: S307 -- built here, no input
    return fn


def _all_levels(comps: Sequence[FeatureComparator]) -> Callable[[PersonRecord, Identity], Levels]:
    """``lambda rec, ident: (comps[0].compare(rec, ident), comps[1].compare(rec, ident), ...)``"""
    body = "".join(f"c{i}(rec, ident), " for i in range(len(comps)))
    return _compiled(f"({body})", {f"c{i}": c.compare for i, c in enumerate(comps)})


def _bound_expr(m: FSModel, comps: Sequence[FeatureComparator], names: dict[str, Any],
                cheap_level: Callable[[int], str]) -> str:
    """The expression of a pair's weight bound (``rec``, ``ident``; ``cheap_level(i)``: the
    expression of cheap comparator ``i``'s level), with what it names added to ``names``:
    the prior weight, plus each cheap comparator's weight for the pair's level (a lookup in
    its weights, 'missing' 0), plus the name comparator's best weight with the record's TF
    adjustment (every TF level gets the same), plus every other comparator's best weight
    (at least 0) when present."""
    names.update(prior=m.prior_weight, tf_adjust=m.tf_adjust)
    terms = ["prior"]
    for i, c in enumerate(comps):
        if c.cheap and not c.tf_levels:
            names[f"c{i}"] = c.compare
            names[f"w{i}"] = {"missing": 0.0, **{lvl: m.weight(c.feature, lvl)
                                                 for lvl in c.levels}}
            terms.append(f"w{i}[{cheap_level(i)}]")
    for i, c in enumerate(comps):
        if c.tf_levels:
            w = {lvl: m.weight(c.feature, lvl) for lvl in c.levels}
            names[f"p{i}"] = c.present
            names[f"t{i}"] = max(v for lvl, v in w.items() if lvl in c.tf_levels)
            names[f"o{i}"] = max((v for lvl, v in w.items() if lvl not in c.tf_levels),
                                 default=-math.inf)
            terms.append(f"(max(t{i} + tf_adjust(rec.name_key, 'exact'), o{i}) "
                         f"if p{i}(rec, ident) else 0.0)")
    for i, c in enumerate(comps):
        if not c.cheap and not c.tf_levels:
            names[f"p{i}"] = c.present
            names[f"b{i}"] = max(0.0, c.upper_bound(m)[1])
            terms.append(f"(b{i} if p{i}(rec, ident) else 0.0)")
    return " + ".join(terms)


def _weight_bound(m: FSModel, comps: Sequence[FeatureComparator]
                  ) -> Callable[[PersonRecord, Identity], float]:
    """``lambda rec, ident: <the bound>`` (see :func:`_bound_expr`)."""
    names: dict[str, Any] = {}
    return _compiled(_bound_expr(m, comps, names, lambda i: f"c{i}(rec, ident)"), names)


def _compare_if(m: FSModel, comps: Sequence[FeatureComparator],
                score: Callable[[PersonRecord, str, Levels], Comparison]) -> CompareIf:
    """The comparison of a pair that may reach ``min_weight`` (None: no bound), else None:
    the cheap comparators grade the pair once, for the bound and for the levels::

        def compare_if(rec, ident, min_weight):
            l0 = c0(rec, ident); l2 = c2(rec, ident); ...   # the cheap comparators
            if min_weight is not None and not (<bound over l0, l2, ...> >= min_weight - 1e-6):
                return None
            return score(rec, ident.person_id, (l0, c1(rec, ident), l2, ...))

    The bound is the expression of :func:`_weight_bound` with the same terms in the same
    order, so the bound it tests is exactly :meth:`FSComparator.weight_bound`."""
    names: dict[str, Any] = {"score": score}
    cheap = [i for i, c in enumerate(comps) if c.cheap and not c.tf_levels]
    bound = _bound_expr(m, comps, names, lambda i: f"l{i}")
    for i, c in enumerate(comps):
        names[f"c{i}"] = c.compare
    graded = "".join(f"    l{i} = c{i}(rec, ident)\n" for i in cheap)
    levels = "".join(f"l{i}, " if i in cheap else f"c{i}(rec, ident), "
                     for i in range(len(comps)))
    src = (f"def compare_if(rec, ident, min_weight):\n{graded}"
           f"    if min_weight is not None and not ({bound} >= min_weight - 1e-6):\n"
           f"        return None\n"
           f"    return score(rec, ident.person_id, ({levels}))\n")
    exec(src, names)  # noqa: S102 -- built here from the comparators, no input
    fn: CompareIf = names["compare_if"]
    return fn
