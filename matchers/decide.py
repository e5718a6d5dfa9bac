"""The decide step: choose the identity a record joins, or none, and which merges are safe."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from matchers.types import Comparison, Decision, PersonRecord


class ThresholdDecider:
    """Implements :class:`matchers.types.Decider`: join the best candidate at or above
    ``threshold``.

    * A candidate in hard conflict (two different valid resident IDs) is never joined.
    * If two candidates above the threshold carry different resident IDs and the record has
      none, the record is ambiguous (namesakes): it joins neither.
    * Further candidates are merged only on strong evidence (``merge_threshold``), so a weak
      link cannot glue two clusters together (no chaining), and never when they carry
      different resident IDs.
    * ``cannot_link(a, b)`` (human review) vetoes joining the record to an identity
      (``(record key, person id)``) and merging two identities (``(person id, person id)``).
    """

    def __init__(self, threshold: float, merge_threshold: float = 0.9999) -> None:
        self.threshold = threshold
        self.merge_threshold = merge_threshold

    def decide(self, rec: PersonRecord, comparisons: list[Comparison],
               rid_of: Mapping[str, str | None] | None = None,
               cannot_link: Callable[[str, str], bool] | None = None) -> Decision:
        rid_of = rid_of or {}
        ok = sorted((c for c in comparisons if c.conflict is None and
                     c.probability >= self.threshold and
                     not (cannot_link and cannot_link(rec.key, c.person_id))),
                    key=lambda c: (-c.probability, c.person_id))
        if not ok:
            return Decision(None, None)
        best = ok[0]
        best_rid = rid_of.get(best.person_id)
        others = ok[1:]
        if not rec.id_valid and any(
            rid_of.get(c.person_id) and best_rid and rid_of.get(c.person_id) != best_rid
            for c in others
        ):
            return Decision(None, None)
        merge: list[str] = []
        for c in others:  # greedy, strongest first: each merge must fit with all kept ones
            if c.probability < self.merge_threshold:
                continue
            rid = rid_of.get(c.person_id)
            if rid and best_rid and rid != best_rid:
                continue
            if cannot_link and any(cannot_link(p, c.person_id)
                                   for p in (best.person_id, *merge)):
                continue
            merge.append(c.person_id)
        return Decision(best.person_id, best, tuple(merge))
