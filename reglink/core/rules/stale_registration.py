"""``stale_registration`` (docs/contract.md §2.4, 来有登记、走有注销): a person registered in a
new prefecture whose old registration was not deregistered within the grace period.

State: ``rg:<person_id>``, the person's :class:`~reglink.stores.schema.ResidenceLedger`: every
residence registration and deregistration linked to the person, in every prefecture. Each
linked ``residence`` record is added to it; then every registration of the person is brought
in line with what is known (:meth:`StaleRegistration.evaluate`), and a timer tagged
``stale_registration|<person_id>|<registration key>`` re-evaluates when the watermark passes
the registration's deregistration deadline. A merge moves the absorbed identity's ledger to
the survivor and re-evaluates.

There is one alert per registration A (its ``alert_id`` is derived from A's record key, which
belongs to one person): its status is a function of the ledger alone (:func:`verdict`), so
the final status does not depend on the order the records arrived in.

The ledger also says when a registration was closed by a deregistration (:func:`closed_at`),
which ``unregistered_stay`` reads; this rule is registered before it, so the ledger holds the
record being processed when ``unregistered_stay`` evaluates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from matchers.types import compact_explanation, expand_explanation
from reglink.core import sources
from reglink.core.outbox import Out
from reglink.core.rules.base import AlertRule, IdentityChange, LinkedRecord, RuleContext, alert_id
from reglink.core.rules.clock import iso
from reglink.stores import schema as sk
from reglink.stores.schema import Deregistration, ResidenceLedger, ResidenceRegistration

ACTIVE = ("raised", "resolved")


# ------------------------------------------------------------------ pure
def closes(d: Deregistration, r: ResidenceRegistration) -> bool:
    """Whether deregistration ``d`` ends registration ``r``: the one its permit number names,
    or without one, a registration in its prefecture recorded before it and valid on the day
    the person left (docs/contract.md §1.2)."""
    if d.permit is not None:
        return d.permit == r.permit
    return (d.pref == r.pref and r.registered_at < d.registered_at
            and r.valid_from <= d.left_at < r.valid_until_end)


def closed_at(r: ResidenceRegistration, deregs: list[Deregistration]) -> float | None:
    """The instant ``r`` counts as closed from (the earliest ``left_on`` of the
    deregistrations that end it), or None."""
    lefts = [d.left_at for d in deregs if closes(d, r)]
    return min(lefts) if lefts else None


def superseding(a: ResidenceRegistration,
                regs: list[ResidenceRegistration]) -> list[ResidenceRegistration]:
    """Registrations recorded after ``a`` in another prefecture whose validity starts
    within ``a``'s."""
    return [b for b in regs if b.registered_at > a.registered_at and b.pref != a.pref
            and a.valid_from <= b.valid_from < a.valid_until_end]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the ledger says about one registration: its deregistration deadline and the
    registration that set it (None: not superseded, or expired by then), the alert status
    due at the deadline (None: no alert) and the deregistration that resolved it."""

    deadline: float | None
    superseded_by: ResidenceRegistration | None
    status: str | None
    deregistered_by: Deregistration | None = None


def verdict(a: ResidenceRegistration, ledger: ResidenceLedger, grace: float) -> Verdict:
    sups = superseding(a, ledger.registrations)
    if not sups:
        return Verdict(None, None, None)
    b = min(sups, key=lambda r: (r.valid_from, r.registered_at, r.key))
    deadline = b.valid_from + grace
    if a.valid_until_end <= deadline:
        return Verdict(None, None, None)  # it expires by itself before the deadline
    deregs = sorted((d for d in ledger.deregistrations if closes(d, a)),
                    key=lambda d: (d.registered_at, d.key))
    if deregs and deregs[0].registered_at <= deadline:
        return Verdict(deadline, b, None, deregs[0])
    if deregs:
        return Verdict(deadline, b, "resolved", deregs[0])
    return Verdict(deadline, b, "raised")


# ------------------------------------------------------------------ the rule
class StaleRegistration(AlertRule):
    name: ClassVar[str] = "stale_registration"
    reads: ClassVar[tuple[str, ...]] = (sk.RESIDENCES, sk.ALERT, sk.IDENTITY, sk.MERGED, sk.DUE)
    writes: ClassVar[tuple[str, ...]] = (sk.RESIDENCES, sk.ALERT, sk.DUE)

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        self.registers = {src.name: src.presence for src in sources.current()
                          if isinstance(src.presence, sources.Registration)}
        self.grace = float(ctx.settings.grace_deregistration_s)

    # ------------------------------------------------------------------ state
    def ledger(self, pid: str) -> ResidenceLedger:
        return self.load(sk.residences(pid), sk.decode_residences)

    def _save(self, pid: str, ledger: ResidenceLedger) -> None:
        self.store(sk.residences(pid), ledger, sk.encode_residences)

    def person_keys(self, person_id: str) -> list[str]:
        return [sk.residences(person_id)]

    def timer_keys(self, parts: tuple[str, ...]) -> list[str]:
        pid = parts[0]
        return [sk.merged(pid), sk.identity(pid), sk.residences(pid)]

    # ------------------------------------------------------------------ hooks
    def on_identity_change(self, change: IdentityChange, event: LinkedRecord) -> list[Out]:
        """A merge moves the absorbed identity's ledger to the survivor (evaluated with the
        record's own, :meth:`on_record`)."""
        if change.kind == "merged" and self._move(change.person_id, change.into):
            event.notes[self.name] = True
        return []

    def on_record(self, event: LinkedRecord) -> list[Out]:
        presence = self.registers.get(event.source)
        if presence is not None:
            self._add(event, presence)
        elif not event.notes.get(self.name):
            return []
        return self.evaluate(event.person_id)

    def on_timer(self, parts: tuple[str, ...]) -> list[Out]:
        return self.evaluate(parts[0])

    def reevaluate(self, person_id: str) -> list[Out]:
        """Late data: the verdicts are a function of the ledger alone (:meth:`evaluate`)."""
        return self.evaluate(person_id)

    # ------------------------------------------------------------------ updates
    def _add(self, event: LinkedRecord, presence: sources.Registration) -> None:
        record, key, link = event.record, event.key, event.link
        ledger = self.ledger(link.person_id)
        if key in ledger.keys():
            return  # re-delivered
        pref = str(record["city_code"])[:4]
        permit = presence.permit_of(record)
        digest = self.ctx.pseudo("permit", permit) if permit else None
        if presence.is_deregistration(record):
            at, left = presence.departure(record)
            ledger.deregistrations.append(Deregistration(key, pref, at, left, digest))
        else:
            at, valid_from, valid_until_end = presence.period(record)
            ledger.registrations.append(
                ResidenceRegistration(key, pref, at, valid_from, valid_until_end, digest))
        ledger.explanations[key] = [round(link.probability, 6),
                                   compact_explanation(link.explanation)]
        self._save(link.person_id, ledger)

    def _move(self, absorbed: str, into: str) -> bool:
        old = self.ledger(absorbed)
        if not old.keys():
            return False
        ledger = self.ledger(into)
        have = ledger.keys()
        ledger.registrations += [r for r in old.registrations if r.key not in have]
        ledger.deregistrations += [d for d in old.deregistrations if d.key not in have]
        ledger.explanations.update(old.explanations)
        for r in old.registrations:
            self.cancel((absorbed, r.key))
        self._save(into, ledger)
        self.ctx.kv.delete(sk.residences(absorbed))
        return True

    # ------------------------------------------------------------------ the rule
    def evaluate(self, pid: str) -> list[Out]:
        """Bring the alerts of the person's registrations in line with what is known now."""
        store = self.ctx.store
        pid = store.resolve(pid)
        ident = store.get(pid)
        ledger = self.ledger(pid)
        if ident is None or not ledger.registrations:
            return []
        watermark = self.ctx.watermark.value
        ex = ledger.explanations
        outs: list[Out] = []
        for a in sorted(ledger.registrations, key=lambda r: (r.registered_at, r.key)):
            v = verdict(a, ledger, self.grace)
            aid = alert_id(self.name, a.key)
            if v.deadline is not None and v.deadline > watermark:
                self.schedule((pid, a.key), v.deadline)
                continue
            self.cancel((pid, a.key))
            prev = self.alert_state(aid)
            if v.status is None or v.deadline is None or v.superseded_by is None:
                if prev is not None and prev["status"] in ACTIVE:
                    reason = ("deregistered_by_deadline" if v.deregistered_by is not None
                              else "not_superseded")
                    outs.append(self.update_alert({**prev, "status": "withdrawn",
                                                   "withdrawn_reason": reason}))
                continue
            deadline = iso(v.deadline)
            if prev is not None and prev["status"] == v.status and prev["deadline"] == deadline:
                continue
            b = v.superseded_by
            evidence = [a.key, b.key]
            if v.deregistered_by is not None:
                evidence.append(v.deregistered_by.key)
            probs = [ex[r][0] for r in evidence if r in ex]
            outs.append(self.alert(
                aid, v.status, ident, evidence, min(probs) if probs else None,
                {r: expand_explanation(ex[r][1]) for r in evidence if r in ex}, deadline,
                prefecture=a.pref, new_prefecture=b.pref, deadline=deadline))
        return outs
