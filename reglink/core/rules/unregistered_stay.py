"""``unregistered_stay`` (docs/contract.md §2): a person with a resident ID and a home
elsewhere who stays in a prefecture past the grace period without a valid registration.

State: ``s:<person_id>``, the person's :class:`~reglink.stores.schema.StayState` per
prefecture (presence intervals, registrations, evidence explanations, the ids of the alerts
that stand); a registration counts
as closed from the ``left_on`` of a deregistration that ends it, as the person's residence
ledger ``rg:<person_id>`` (kept by ``stale_registration``) says. Every linked record
of an event source updates it (:func:`presence_update`); then the alerts of (person,
prefecture) are brought in line with it (:meth:`UnregisteredStay.evaluate`), and a timer
tagged ``unregistered_stay|<person_id>|<prefecture>`` re-evaluates when the watermark passes
the next deadline. A merge moves the absorbed identity's stays to the survivor. Late data
(docs/contract.md §2.2) needs nothing else: every evaluation decides on everything known, so
an alert the complete data would not raise is withdrawn and ``resolved`` means the person
registered after the deadline; :meth:`UnregisteredStay.reevaluate` (the late-data hook)
evaluates all the person's prefectures.
The episode and deadline arithmetic is pure (:mod:`reglink.core.rules.stay`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from matchers.normalise import same_place
from matchers.types import Identity, compact_explanation, expand_explanation
from reglink.core import sources
from reglink.core.outbox import Out
from reglink.core.rules import stay as st
from reglink.core.rules.base import AlertRule, IdentityChange, LinkedRecord, RuleContext, alert_id
from reglink.core.rules.clock import iso
from reglink.core.rules.stale_registration import closed_at, closes
from reglink.stores import schema as sk
from reglink.stores.schema import PendingCheckout, Presence, Registered, StayState

ACTIVE = ("raised", "resolved")


def presence_revise(state: StayState, presence: sources.Presence, record: dict[str, Any],
                    key: str) -> bool:
    """A record whose key the state already holds: a revision of its date interval (a
    later report of the same job with an end) takes the place of what is stored; the
    latest report with an end wins, whatever the order they arrive in. Anything else (a
    re-delivery, an earlier report) is a duplicate. True when the state changed."""
    if not isinstance(presence, sources.DateInterval):
        return False
    at = presence.revision(record)
    iv = next((iv for iv in state.intervals if iv.key == key), None)
    if at is None or iv is None:
        return False
    start, end = presence.interval(record)
    if iv.revised is not None and (at, end or 0.0) <= (iv.revised, iv.end or 0.0):
        return False
    iv.start, iv.end, iv.revised = start, end, at
    return True


def presence_update(state: StayState, presence: sources.Presence, record: dict[str, Any],
                    key: str,
                    grace: float) -> None:
    """Add what one record says about the person's presence in the prefecture, as its
    source declares it (:mod:`reglink.core.sources`); ``grace``: seconds until registration
    is owed for that source's presence (unused for a registration)."""
    if isinstance(presence, sources.CheckInOut):
        opens, venue, t = presence.mark(record)
        pending = state.pending_list()  # check-outs not matched yet
        if opens:
            iv = Presence(key, t, None, grace, venue)
            # A check-out can be read before its check-in (another partition): match it.
            outs = sorted((c for c in pending if c.hotel == venue and c.at >= t),
                          key=lambda c: (c.at, c.key))
            if outs:
                iv.end = outs[0].at
                pending.remove(outs[0])
                state.closed_list().append(outs[0].key)
            state.intervals.append(iv)
        else:
            open_ivs = [iv for iv in state.intervals if iv.end is None and iv.hotel is not None
                        and iv.hotel == venue and iv.start <= t]
            if open_ivs:
                max(open_ivs, key=lambda iv: iv.start).end = t
                state.closed_list().append(key)
            elif key not in {c.key for c in pending}:
                pending.append(PendingCheckout(key, venue, t))
    elif isinstance(presence, sources.DateInterval):
        start, end = presence.interval(record)
        state.intervals.append(Presence(key, start, end, grace, None,
                                        presence.revision(record)))
    else:
        at, valid_from, valid_until = presence.period(record)
        state.registrations.append(Registered(key, at, valid_from, valid_until))


def registered_after(ep: st.Episode, deadline: float,
                     registrations: list[st.Registration]) -> st.Registration | None:
    """A registration the person made after the deadline for this episode: recorded after
    it, valid past it and from before the episode ended (the earliest recorded)."""
    end = st.INF if ep.end is None else ep.end
    for reg in sorted(registrations, key=lambda r: (r.registered_at, r.key)):
        if reg.registered_at > deadline and reg.valid_until_end > deadline \
                and reg.valid_from <= end:
            return reg
    return None


class UnregisteredStay(AlertRule):
    name: ClassVar[str] = "unregistered_stay"
    reads: ClassVar[tuple[str, ...]] = (sk.STAYS, sk.RESIDENCES, sk.ALERT, sk.IDENTITY,
                                        sk.MERGED, sk.DUE)
    writes: ClassVar[tuple[str, ...]] = (sk.STAYS, sk.ALERT, sk.DUE)

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        # what each source's records say about presence, and its grace period
        self.presence = {src.name: src.presence for src in sources.current()
                         if src.presence is not None}
        self.grace = sources.graces(ctx.settings)

    # ------------------------------------------------------------------ state
    def _stays(self, pid: str) -> sk.Stays:
        return self.load(sk.stays(pid), sk.decode_stays)

    def _save(self, pid: str, data: sk.Stays) -> None:
        self.store(sk.stays(pid), data, sk.encode_stays)

    def _ledger(self, pid: str) -> sk.ResidenceLedger:
        return self.load(sk.residences(pid), sk.decode_residences)

    def person_keys(self, person_id: str) -> list[str]:
        # (the residence ledger it also reads is stale_registration's, which reads it ahead)
        return [sk.stays(person_id)]

    def timer_keys(self, parts: tuple[str, ...]) -> list[str]:
        pid = parts[0]
        return [sk.merged(pid), sk.identity(pid), sk.stays(pid), sk.residences(pid)]

    # ------------------------------------------------------------------ hooks
    def on_identity_change(self, change: IdentityChange, event: LinkedRecord) -> list[Out]:
        """A merge moves the absorbed identity's stays to the survivor; the prefectures
        they touch are evaluated with the record's own (:meth:`on_record`)."""
        if change.kind == "merged":
            touched = event.notes.setdefault(self.name, set())
            touched |= self._move(change.person_id, change.into)  # type: ignore[operator]
        return []

    def on_record(self, event: LinkedRecord) -> list[Out]:
        touched: set[str] = event.notes.get(self.name, set())  # type: ignore[assignment]
        if event.source in self.presence:
            touched |= self._update(event)
        # A record with a valid resident ID may be the first to give the person one, and so a
        # home: then the prefectures with no alert standing may owe registration from now on.
        gives_id = event.person.id_valid and event.identity.rid_hash == event.person.id_hash
        return self.evaluate_prefs(event.person_id, touched, gives_id)

    def on_timer(self, parts: tuple[str, ...]) -> list[Out]:
        pid, pref = parts
        return self.evaluate(pid, pref)

    # ------------------------------------------------------------------ the rule
    def _update(self, event: LinkedRecord) -> set[str]:
        record, key, link = event.record, event.key, event.link
        presence = self.presence[event.source]
        registers = presence if isinstance(presence, sources.Registration) else None
        pref = str(record["city_code"])[:4]
        if registers is not None and registers.is_deregistration(record):
            # Not a registration: it closes some (in the ledger kept by stale_registration).
            ledger = self._ledger(link.person_id)
            dereg = next((d for d in ledger.deregistrations if d.key == key), None)
            return {pref} | {r.pref for r in ledger.registrations
                             if dereg is not None and closes(dereg, r)}
        data = self._stays(link.person_id)
        ps = data.get(pref)
        if ps is None:
            ps = data[pref] = StayState()
        if key in ps.keys() or (ps.closed and key in ps.closed):
            # re-delivered or revised: re-evaluate either way (idempotent)
            if presence_revise(ps, presence, record, key):
                self._save(link.person_id, data)
            return {pref}
        presence_update(ps, presence, record, key,
                        self.grace.get(event.source, 0.0))
        ps.explanations[key] = [round(link.probability, 6),
                               compact_explanation(link.explanation)]
        self._save(link.person_id, data)
        return {pref}

    def _move(self, absorbed: str, into: str) -> set[str]:
        old = self._stays(absorbed)
        if not old:
            return set()
        data = self._stays(into)
        for pref, ps in old.items():
            dst = data.get(pref)
            if dst is None:
                dst = data[pref] = StayState()
            have = {iv.key for iv in dst.intervals} | {r.key for r in dst.registrations}
            dst.intervals += [iv for iv in ps.intervals if iv.key not in have]
            dst.registrations += [r for r in ps.registrations if r.key not in have]
            dst.explanations.update(ps.explanations)
            dst.alerts += [aid for aid in ps.alerts if aid not in dst.alerts]
            dst.closed_list().extend(ps.closed or ())
            dst.pending_list().extend(ps.pending or ())
            self.cancel((absorbed, pref))
        self._save(into, data)
        self.ctx.kv.delete(sk.stays(absorbed))
        return set(old)

    def evaluate(self, pid: str, pref: str) -> list[Out]:
        """Bring the alerts of (person, prefecture) in line with everything known now
        (:meth:`evaluate_prefs`)."""
        return self.evaluate_prefs(pid, {pref})

    def evaluate_prefs(self, pid: str, prefs: set[str], unalerted: bool = False
                       ) -> list[Out]:
        """Bring the alerts of the person in ``prefs`` (and with ``unalerted``, in every
        prefecture with no alert standing) in line with everything known now, as if the
        records had arrived in order (docs/contract.md §2.2): for each episode whose deadline
        the watermark passed, no alert when a registration recorded by the deadline covers
        it, ``resolved`` when the person registered after it, else ``raised``; an alert the
        data no longer raises (its deadline moved, a registration recorded by the deadline
        arrived late, the person owes none here) is re-issued as ``withdrawn``."""
        store = self.ctx.store
        pid = store.resolve(pid)
        ident = store.get(pid)
        if ident is None:
            return []
        data = self._stays(pid)
        if unalerted:
            prefs = prefs | {pref for pref in data.keys() if not data[pref].alerts}
        outs: list[Out] = []
        changed = False
        for pref in sorted(prefs):
            ps = data.get(pref)
            self.cancel((pid, pref))
            if ps is None:
                continue
            standing: list[str] = []  # alert ids the data raises: raised or resolved
            covered: set[str] = set()  # ids a registration recorded by the deadline covers
            # Owes registration only with a known resident ID and a home elsewhere.
            owes = bool(ident.rid_hash and ident.home and not same_place(ident.home, pref))
            if owes:
                outs += self._judge(pid, pref, ident, ps, standing, covered)
            for aid in ps.alerts:
                prev = None if aid in standing else self.alert_state(aid)
                if prev is None or prev["status"] not in ACTIVE:
                    continue
                reason = ("registered_by_deadline" if aid in covered
                          else "episode_changed" if owes else "not_owed")
                outs.append(self.update_alert({**prev, "status": "withdrawn",
                                               "withdrawn_reason": reason}))
            if ps.alerts != standing:
                ps.alerts, changed = standing, True
        if changed:
            self._save(pid, data)
        return outs

    def reevaluate(self, person_id: str) -> list[Out]:
        """Every prefecture of the person, on everything known now (:meth:`evaluate_prefs`)."""
        pid = self.ctx.store.resolve(person_id)
        return self.evaluate_prefs(pid, set(self._stays(pid).keys()))

    def _judge(self, pid: str, pref: str, ident: Identity, ps: StayState,
               standing: list[str], covered: set[str]) -> list[Out]:
        """The alerts of the episodes whose deadline the watermark passed (adds the ids the
        data raises to ``standing``, those a timely registration covers to ``covered``);
        a timer at the next deadline."""
        intervals = ps.intervals  # read only here: the stored objects, not copies
        regs = ps.registrations
        if regs:  # a deregistration closes a registration from its left_on
            ledger = self._ledger(pid)
            if ledger.deregistrations:
                closed = {r.key: at for r in ledger.registrations
                          if (at := closed_at(r, ledger.deregistrations)) is not None}
                regs = [Registered(r.key, r.registered_at, r.valid_from,
                                   min(r.valid_until_end, closed[r.key]))
                        if r.key in closed else r for r in regs]
        ex = ps.explanations
        watermark = self.ctx.watermark.value
        outs: list[Out] = []
        next_due = None
        for ep in st.episodes(intervals, self.ctx.settings.episode_gap_s):
            deadline = ep.deadline
            if deadline is None:
                continue
            aid = alert_id(self.name, ident.rule_anchor, pref, iso(deadline))
            if deadline > watermark:
                next_due = deadline if next_due is None else min(next_due, deadline)
                if aid in ps.alerts:
                    # Raised when the watermark had passed it: the watermark is behind that
                    # only while a unit of work re-runs after a lost commit reply, and then
                    # the alert stands as it was (re-running is idempotent).
                    standing.append(aid)
                continue
            if st.covered(deadline, regs) is not None:
                covered.add(aid)
                continue
            reg = registered_after(ep, deadline, regs)
            status = "resolved" if reg else "raised"
            standing.append(aid)
            prev = self.alert_state(aid)
            if prev is not None and prev["status"] == status:
                continue
            evidence = st.evidence_ids(ep, deadline)
            if reg:
                evidence.append(reg.key)
            probs = [ex[r][0] for r in evidence if r in ex]
            outs.append(self.alert(
                aid, status, ident, evidence, min(probs) if probs else None,
                {r: expand_explanation(ex[r][1]) for r in evidence if r in ex},
                iso(deadline), prefecture=pref, deadline=iso(deadline)))
        if next_due is not None:
            self.schedule((pid, pref), next_due)
        return outs
