"""``watchlist_match``: when may a watch entry name a person? The ambiguity guard.

A watch entry names **one** person. When it holds no ID (name and birth date only, perhaps
sex and aliases), two people who share those values - namesakes born the same day - both
reach the watchlist threshold, and an alert naming one of them is a coin toss that lands on
an innocent person half the time. The guard asks a second question besides "does identity X
match the entry?": *given that the entry names exactly one of X and Y, how likely is it X?*
With equal priors that is

    P(X, not Y) = odds(X) / (odds(X) + odds(Y)) = 1 / (1 + 2^-(bits(X) - bits(Y)))

where ``bits`` is the calibrated match weight (log2 odds) of the entry against each identity.
X may be named only if this is at or above the same ``watchlist_threshold`` that X's own
match probability must reach, for every other identity Y the entry could mean: no new knob.
An ID on the entry settles it at once (another valid ID is a conflict, not a rival; an equal
one outweighs any name), so the guard bites only where the features cannot tell people apart.

Rivals are the entry's candidate identities that are *different identities* in the store
(the linker kept them apart) and have no hard conflict with the entry; and, for an identity
with no resident ID against an entry with one, the identities holding another valid resident
ID, weighed on the entry's other features (:func:`weight_besides`): a namesake's job ad with
name and birth date only is no evidence for the wanted person. An identity with no ID number
at all has, against such an entry, a rival whether or not their records are in the store: a
namesake born the same day, who matches the entry on name, birth date and sex as well
(:func:`namesake_weight`); only evidence beyond those, e.g. a phone the entry holds, tells
the two apart. An identity review has
cleared for this entry (a dismissal, a "different person" cannot-link, a misused-identity
mark) is neither named nor a rival.

Pure and deterministic: the inputs are the comparisons of the entry with the identities in
the store, which the stream (event-time order) and replay see identically. What the rule does
with the answer (:mod:`reglink.core.rules.watchlist_match`): every time a record links to an
identity the entry could mean, the entry is judged anew against all of them; an ambiguous
person is not named, and an alert already raised on them is withdrawn (``withdrawn_reason:
ambiguous``). Either order of arrival thus ends with the same persons named. If the
identities later merge, the ambiguity is gone and the surviving identity alerts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from matchers.compare import FSComparator
from matchers.normalise import normalise_name
from matchers.types import Comparison, FeatureComparator, Identity, PersonRecord

#: ``withdrawn_reason`` of an alert withdrawn because its entry turned out ambiguous.
AMBIGUOUS = "ambiguous"


def exclusive_probability(bits: float, rival_bits: float) -> float:
    """P(the entry names the first identity rather than the second | it names exactly one
    of them), from the two calibrated log2 match odds, with equal priors."""
    x = bits - rival_bits
    if x > 60:
        return 1.0
    if x < -60:
        return 0.0
    p: float = 1.0 / (1.0 + 2.0 ** -x)
    return p


def rivals(person_id: str, bits: float, others: Mapping[str, float],
           threshold: float) -> list[str]:
    """The identities in ``others`` (person id -> calibrated log2 odds against the same entry)
    that the entry cannot tell apart from ``person_id`` at ``threshold``: those with
    :func:`exclusive_probability` below it. Sorted; empty means the entry may name
    ``person_id``."""
    return sorted(p for p, b in others.items()
                  if p != person_id and exclusive_probability(bits, b) < threshold)


#: What namesakes born the same day share: a resident ID encodes the birth date and sex.
NAMESAKE_FEATURES = ("name", "birth_date", "sex")


def namesake_weight(comparison: Comparison) -> float:
    """The weight a namesake born the same day would reach in ``comparison``'s place: the
    prior and the features such a namesake shares (:data:`NAMESAKE_FEATURES`)."""
    return comparison.prior_weight + sum(f.weight for f in comparison.features
                                         if f.feature in NAMESAKE_FEATURES)


def weight_besides(comparison: Comparison, *features: str) -> float:
    """The comparison's total weight without ``feature``'s: how well an identity that holds
    another valid resident ID than the entry (a hard conflict) matches the entry's other
    features. Such a namesake cannot be the person the entry names, but an identity
    *without* a resident ID that matches the entry no better on name, birth date, sex and
    phone may as well be the namesake's records that the linker could not join: under the
    guard, the namesake is then its rival."""
    return comparison.total_weight - sum(f.weight for f in comparison.features
                                         if f.feature in features)


# ---------------------------------------------------------------------------------------
# Evidence: which record supplied each feature value of an identity
#
# An identity is the union of its records' features (:class:`matchers.types.Identity`), which
# does not say where a value came from. The rule keeps, per identity, a map from a value
# token (``<feature prefix><value>``; ID numbers and phones as the identity holds them,
# pseudonymised) to the smallest key of the records that carried the value: the same
# whatever the order they arrived in, and written only when a value or a smaller key is new.

#: Token prefix of each feature's values, and the :class:`PersonRecord` field holding it.
TOKENS: dict[str, tuple[str, str]] = {
    "id": ("id:", "id_hash"), "name": ("nm:", "name"), "birth_date": ("bd:", "birth_date"),
    "sex": ("sx:", "sex"), "phone": ("ph:", "phone_hash"), "address": ("ad:", "address")}

Evidence = dict[str, str]  # value token -> record key


def record_tokens(rec: PersonRecord) -> list[str]:
    """The value tokens of one record."""
    out = []
    for prefix, attr in TOKENS.values():
        v = getattr(rec, attr)
        if v:
            out.append(prefix + v)
    return out


def add_record(ev: Evidence, rec: PersonRecord) -> bool:
    """Add ``rec``'s values to ``ev``; True when ``ev`` changed."""
    changed = False
    for token in record_tokens(rec):
        got = ev.get(token)
        if got is None or rec.key < got:
            ev[token] = rec.key
            changed = True
    return changed


def merge_evidence(ev: Evidence, other: Evidence) -> None:
    """Fold the evidence of an identity merged into this one."""
    for token, key in other.items():
        got = ev.get(token)
        ev[token] = key if got is None else min(got, key)


def _values(ev: Evidence, feature: str) -> list[tuple[str, str]]:
    """(value, record) of one feature, by record then value."""
    prefix = TOKENS[feature][0]
    return sorted(((t[len(prefix):], k) for t, k in ev.items() if t.startswith(prefix)),
                  key=lambda v: (v[1], v[0]))


def single(feature: str, value: str, ident: Identity) -> Identity:
    """An identity holding one value of one feature (a valid resident ID stays valid)."""
    one = Identity(person_id=ident.person_id, anchor=ident.anchor)
    if feature == "id":
        one.id_hashes.add(value)
        if value == ident.rid_hash:
            one.rid_hash = value
    elif feature == "name":
        info = normalise_name(value)
        one.names.add(info.text)
        one.name_keys.add(info.key)
        if info.surname:
            one.surnames.add(info.surname)
    elif feature == "birth_date":
        one.birth_dates.add(value)
    elif feature == "sex":
        one.sexes.add(value)
    elif feature == "phone":
        one.phone_hashes.add(value)
    elif feature == "address":
        one.addresses.add(value)
    return one


def supplier(comp: FeatureComparator, level: str, entry: PersonRecord, ident: Identity,
             ev: Evidence) -> tuple[str, str] | None:
    """The identity's value behind ``comp``'s ``level`` for the pair, as (value, record):
    the first value (by record) that alone grades the same level against the entry.
    A different valid resident ID is the identity's own; a typo level the comparator finds
    through the identity's typo neighbourhood falls back to its first ID. None for a
    'missing' level or a feature without tokens."""
    if level == "missing" or comp.feature not in TOKENS:
        return None
    values = _values(ev, comp.feature)
    if comp.feature == "id" and level in comp.conflicts and ident.rid_hash:
        values = [v for v in values if v[0] == ident.rid_hash] or values
    for v in values:
        if comp.compare(entry, single(comp.feature, v[0], ident)) == level:
            return v
    return values[0] if values and comp.feature == "id" else None


def explain(comparison: Comparison, comparators: tuple[FeatureComparator, ...],
            entry: PersonRecord, ident: Identity, ev: Evidence) -> dict[str, Any]:
    """The comparison's explanation, each feature naming the record that supplied the
    identity's value (``record``, when known)."""
    out = comparison.explanation()
    by_feature = {c.feature: c for c in comparators}
    for f in out["features"]:
        comp = by_feature.get(f["feature"])
        got = supplier(comp, f["level"], entry, ident, ev) if comp else None
        if got is not None:
            f["record"] = got[1]
    return out


# ---------------------------------------------------------------------------------------
# Counterfactuals: the smallest change of evidence that flips the decision

#: How many counterfactuals an alert carries.
COUNTERFACTUALS = 3


def without(ident: Identity, feature: str, value: str) -> Identity:
    """A copy of ``ident`` without one value of one feature (an ID's typo neighbourhood goes
    with it when it was the only ID)."""
    out = Identity(person_id=ident.person_id, anchor=ident.anchor, rid_hash=ident.rid_hash,
                   home=ident.home)
    out.merge_from(ident)
    if feature == "id":
        out.id_hashes.discard(value)
        if out.rid_hash == value:
            out.rid_hash = None
        if not out.id_hashes:
            out.id_near, out.id_swap, out.id_del = set(), set(), set()
    elif feature == "name":
        out.names.discard(value)
        rest = [normalise_name(n) for n in sorted(out.names)]
        out.name_keys = {i.key for i in rest}
        out.surnames = {i.surname for i in rest if i.surname}
    else:
        getattr(out, {"birth_date": "birth_dates", "sex": "sexes", "phone": "phone_hashes",
                      "address": "addresses"}[feature]).discard(value)
    return out


def counterfactuals(comparator: FSComparator, entry: PersonRecord, ident: Identity,
                    ev: Evidence, threshold: float) -> list[dict[str, Any]]:
    """The single changes of evidence that flip the entry-against-identity decision (a
    probability at or above ``threshold`` with no hard conflict), smallest change of weight
    first, computed with the model:

    * ``remove``: the identity without one of its values (from every record carrying it;
      ``record`` names the first): "without the resident ID on record R this would not be raised";
    * ``match``: a feature the entry has, graded at its strongest level (what a record
      carrying the entry's value would bring): "a matching phone would raise it".

    When no single change flips it, the one that comes closest, marked ``flips: false``.
    At most :data:`COUNTERFACTUALS`."""
    model = comparator.model
    base = comparator.compare(entry, ident)
    raised = base.conflict is None and base.probability >= threshold
    levels = dict(zip((c.feature for c in comparator.comparators),
                      comparator.levels(entry, ident), strict=True))
    found: list[tuple[float, dict[str, Any]]] = []
    for comp in comparator.comparators:
        f, level = comp.feature, levels[comp.feature]
        if f in TOKENS and level != "missing":
            for value, record in _values(ev, f):
                if comp.compare(entry, single(f, value, ident)) == "missing":
                    continue
                c = comparator.compare(entry, without(ident, f, value))
                if c.features == base.features:
                    continue
                found.append((abs(c.total_weight - base.total_weight), {
                    "change": "remove", "feature": f, "record": record,
                    "level": _level(c, f), "probability": round(c.probability, 6),
                    "flips": (c.conflict is None and c.probability >= threshold) != raised}))
        if raised or f not in TOKENS or not getattr(entry, TOKENS[f][1]):
            continue
        best, w = comp.upper_bound(model)
        if best in comp.tf_levels:
            w += model.tf_adjust(entry.name_key, best)
        if level == best:
            continue
        now = next((s.weight for s in base.features if s.feature == f), 0.0)
        total = base.total_weight - now + w
        conflict = base.conflict if comp.conflicts.get(level) is None else None
        p = model.probability(total)
        found.append((abs(total - base.total_weight), {
            "change": "match", "feature": f, "level": best, "probability": round(p, 6),
            "flips": conflict is None and p >= threshold}))
    flipping = [x for x in sorted(found, key=lambda x: (x[0], x[1]["feature"]))
                if x[1]["flips"]]
    if flipping:
        return [d for _w, d in flipping[:COUNTERFACTUALS]]
    closest = sorted(found, key=lambda x: (x[1]["probability"] if raised
                                           else -x[1]["probability"], x[1]["feature"]))
    return [d for _w, d in closest[:1]]


def _level(c: Comparison, feature: str) -> str:
    return next((s.level for s in c.features if s.feature == feature), "missing")
