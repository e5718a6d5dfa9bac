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
(the linker kept them apart) and have no hard conflict with the entry. An identity review has
cleared for this entry (a dismissal, a "different person" cannot-link, a misused-identity
mark) is neither named nor a rival.

Pure and deterministic: the inputs are the comparisons of the entry with the identities in
the store at the moment a record is processed, which the stream (event-time order) and
replay see identically. What the pipeline does with the answer: no alert for an ambiguous
pair, and an alert already raised for the entry on a rival is withdrawn (``withdrawn_reason:
ambiguous``) as soon as an identity turns up, at or below the threshold, that puts it in
doubt (:func:`outclassed`: a named person that clearly beats the newcomer keeps its alert).
Either order of arrival thus ends with the same persons named. If the identities later
merge, the ambiguity is gone and the surviving identity alerts.
"""

from __future__ import annotations

from collections.abc import Mapping

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


def outclassed(bits: float, named: Mapping[str, float], threshold: float) -> list[str]:
    """Of ``named`` (person id -> log2 odds against the entry), those whose claim on the
    entry falls below ``threshold`` once an identity with log2 odds ``bits`` is known:
    :func:`exclusive_probability` of theirs against it. One that clearly beats it keeps its
    claim. Sorted."""
    return sorted(p for p, b in named.items() if exclusive_probability(b, bits) < threshold)
