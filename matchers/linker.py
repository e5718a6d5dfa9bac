"""The linking step of the pure core: normalise -> candidates -> compare -> decide -> store.

No Kafka, no Redis here: the store is whatever :class:`~matchers.types.IdentityStore` is passed.
Each step is typed on its interface in :mod:`matchers.types` (``CandidateFinder``,
``Comparator``, ``Decider``); the defaults are the blocking finder, the Fellegi-Sunter
comparator of the shipped model and the threshold decider.

A decision near the threshold carries its counterfactuals in its explanation
(``counterfactuals``, :meth:`~matchers.compare.FSComparator.counterfactuals`): a record that
joined an identity with a total weight within :data:`NEAR_BITS` of the threshold's, or that
founded a new identity while its best candidate came that close, says which single change of
its evidence would have flipped the decision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from matchers.candidates import BlockingCandidates
from matchers.compare import FSComparator
from matchers.decide import ThresholdDecider
from matchers.pseudo import Pseudonymiser
from matchers.types import (
    CandidateFinder,
    Comparator,
    Comparison,
    Decider,
    Identity,
    IdentityStore,
    PersonRecord,
)

#: How close to the threshold's total weight (bits of evidence, either side) a decision must be
#: to carry counterfactuals: about half of what one agreeing name or birth date weighs.
NEAR_BITS = 6.0


@dataclass
class LinkResult:
    person_id: str
    identity: Identity
    probability: float
    explanation: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)  # identity.events payloads
    created: bool = False
    merged: list[str] = field(default_factory=list)  # absorbed person ids
    repeated: bool = False  # the record had been linked before (re-delivery)


class Linker:
    """Links one record at a time to an identity, creating or merging identities.

    ``cannot_link(a, b) -> bool`` (optional) vetoes a join or merge that human review has ruled
    out. It is asked with ``(record key, person id)`` before a record joins an identity and with
    ``(person id, person id)`` before two identities merge; ``True`` keeps them apart.
    """

    def __init__(self, store: IdentityStore, pseudo: Pseudonymiser, threshold: float,
                 finder: CandidateFinder | None = None,
                 comparator: Comparator | None = None,
                 decider: Decider | None = None,
                 cannot_link: Callable[[str, str], bool] | None = None,
                 near_bits: float = NEAR_BITS) -> None:
        self.store = store
        self.pseudo = pseudo
        self.finder: CandidateFinder = finder or BlockingCandidates(pseudo)
        self.comparator: Comparator = comparator or FSComparator()
        self.decider: Decider = decider or ThresholdDecider(threshold)
        self.cannot_link = cannot_link
        self.prefetch_extra: tuple[str, ...] = ()  # more raw keys the caller will read
        # True while the caller has already fetched what link() reads first for the records
        # it passes (a batch's prefetch): link() then builds no prefetch of its own.
        self.fetched_ahead = False
        # Only candidates at or above the decider's threshold can be joined or merged: one
        # whose cheap features already bound its weight below this skips the full comparison.
        # Candidates within ``near_bits`` below it are compared too: the best of them says
        # what would have linked a record that founds an identity.
        self._min_weight = self.comparator.threshold_weight(self.decider.threshold)
        self.near_bits = near_bits
        self._compare_floor = (None if self._min_weight is None
                               else self._min_weight - near_bits)

    @property
    def version(self) -> str:
        """Blocking and comparison, ``<finder>+<model id>``: the ``linker`` of a link."""
        return f"{self.finder.NAME}+{self.comparator.NAME}"

    @property
    def model_id(self) -> str:
        """The id of the model that weighs the comparisons (the ``model`` of links and
        alerts)."""
        return self.comparator.NAME

    def person_id_for(self, anchor: str) -> str:
        return "P" + self.pseudo("person", anchor)[:16]

    def link(self, rec: PersonRecord, report_ts: float | None = None) -> LinkResult:
        keys = self.finder.keys(rec)
        if not self.fetched_ahead:  # the identity this record would found, and its link
            anchor = f"rid:{rec.id_hash}" if rec.id_valid else f"rec:{rec.key}"
            self.store.prefetch(rec.key, keys, (self.person_id_for(anchor),),
                                self.prefetch_extra)
        known = self.store.link_of(rec.key)
        if known is not None and (ident := self.store.get(known)) is not None:
            again = self.comparator.compare(rec, ident)
            return LinkResult(known, ident, again.probability, again.explanation(),
                              repeated=True)

        cands = self.finder.candidates(rec, self.store)
        compare_if, floor = self.comparator.compare_if, self._compare_floor
        comps = [comp for c in cands if (comp := compare_if(rec, c, floor)) is not None]
        by_id = {c.person_id: c for c in cands}
        decision = self.decider.decide(rec, comps, {c.person_id: c.rid_hash for c in cands},
                                       cannot_link=self.cannot_link)
        events: list[dict[str, Any]] = []

        if decision.person_id is None:
            anchor = f"rid:{rec.id_hash}" if rec.id_valid else f"rec:{rec.key}"
            pid = self.person_id_for(anchor)
            if anchor.startswith("rid:") and pid in by_id:
                # The identity founded on this very ID was a candidate and was not chosen:
                # the evidence says another person used the ID (or review vetoed the link).
                anchor = f"rec:{rec.key}"
                pid = self.person_id_for(anchor)
            found = self.store.get(pid)
            created = found is None
            if found is None:
                ident = Identity(person_id=pid, anchor=anchor)
                events.append({"event": "created", "person_id": pid, "record": rec.key})
                comp = None
            else:
                ident = found
                comp = self.comparator.compare(rec, ident)
            self._absorb(ident, rec, report_ts)
            self.store.save(ident, keys)
            self.store.set_link(rec.key, pid)
            if comp is not None:
                expl = comp.explanation()
            else:  # how close the best candidate came
                expl = {"new_identity": True, "features": []}
                best = max(comps, key=lambda c: (c.total_weight, c.person_id), default=None)
                if best is not None and self._near(best) and (
                        best.conflict is not None or best.probability < self.decider.threshold):
                    expl["closest"] = {"person_id": best.person_id,
                                       "probability": round(best.probability, 6),
                                       **({"conflict": best.conflict} if best.conflict else {})}
                    self._explain(rec, by_id[best.person_id], best, expl)
            return LinkResult(pid, ident, comp.probability if comp else 1.0, expl, events,
                              created=created)

        # Join the best; merge further identities the evidence says are the same person.
        joined = decision.comparison
        assert joined is not None
        # explained before the record and the merges change the identity it was compared with
        expl = self._explain(rec, by_id[joined.person_id], joined, joined.explanation())
        group = [by_id[decision.person_id]] + [by_id[p] for p in decision.merge]
        survivor = min(group, key=lambda i: (not i.anchor.startswith("rid:"), i.person_id))
        absorbed = [i for i in group if i.person_id != survivor.person_id]
        for other in absorbed:
            survivor.merge_from(other)
        self._absorb(survivor, rec, report_ts)
        merge_keys = [k for other in absorbed for k in self.finder.identity_keys(other)]
        self.store.save(survivor, keys + merge_keys)
        for other in absorbed:
            self.store.retire(other.person_id, survivor.person_id)
            events.append({"event": "merged", "person_id": other.person_id,
                           "into": survivor.person_id, "record": rec.key,
                           "explanation": _best_expl(comps, other.person_id)})
        self.store.set_link(rec.key, survivor.person_id)
        return LinkResult(survivor.person_id, survivor, joined.probability, expl,
                          events, merged=[o.person_id for o in absorbed])

    def _explain(self, rec: PersonRecord, ident: Identity, comp: Comparison,
                 expl: dict[str, Any]) -> dict[str, Any]:
        """``expl`` with the counterfactuals of ``comp`` when it lies near the threshold."""
        if self._near(comp):
            expl["counterfactuals"] = self.comparator.counterfactuals(rec, ident,
                                                                      self.decider.threshold)
        return expl

    def _near(self, comp: Comparison) -> bool:
        """Whether ``comp``'s total weight lies within :data:`NEAR_BITS` of the threshold's."""
        at = self._min_weight
        return at is not None and abs(comp.total_weight - at) <= self.near_bits

    @staticmethod
    def _absorb(ident: Identity, rec: PersonRecord, report_ts: float | None) -> None:
        ident.absorb(rec)
        if report_ts is not None and (ident.last_report is None or report_ts > ident.last_report):
            ident.last_report = report_ts
            ident.last_record = rec.key


def _best_expl(comps: list[Comparison], person_id: str) -> dict[str, Any] | None:
    for c in comps:
        if c.person_id == person_id:
            return c.explanation()
    return None
