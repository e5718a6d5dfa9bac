"""``watchlist_match`` (docs/contract.md §2): a linked identity that matches a watch entry.

Watch entries are the records of the ``watchlist`` source, which this rule owns: an entry
is stored (``w:<watch_id>``, :class:`~reglink.stores.schema.WatchEntry`) and indexed like an
identity in the ``wl/`` namespace, then compared with the identities it could mean. Every
linked record then probes the watchlist index with its identity's blocking keys. Which
persons an entry named is kept in ``wp:<watch_id>``, its alerts in ``wa:<watch_id>``; the
ambiguity guard (:mod:`reglink.core.rules.watchlist`) keeps an entry from naming one of several
people it cannot tell apart. Reviewers' dismissals and misused-identity marks
(:mod:`reglink.core.rules.decisions`) clear pairs. Removing an entry withdraws its alerts.

``wk`` holds every blocking key some entry is indexed under and ``wv`` a token of its
additions, so that most records skip the watchlist index without reading it.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from matchers import fastjson
from matchers.compare import FSComparator
from matchers.features import person_record
from matchers.types import Comparison, Identity, PersonRecord
from reglink.core.outbox import Out
from reglink.core.rules import decisions
from reglink.core.rules import watchlist as wl
from reglink.core.rules.base import AlertRule, LinkedRecord, RuleContext, alert_id
from reglink.core.rules.clock import day_end, iso
from reglink.stores import schema as sk
from reglink.stores.schema import WatchEntry


def watch_alert_id(watch_id: str, anchor: str) -> str:
    """The watchlist alert of one (watch entry, person anchor) pair."""
    return alert_id("watchlist_match", watch_id, anchor)


class WatchlistMatch(AlertRule):
    name: ClassVar[str] = "watchlist_match"
    reads: ClassVar[tuple[str, ...]] = (
        sk.WATCH_ENTRY, sk.WATCH_NAMED, sk.WATCH_ALERTS, sk.WATCH_KEYS, sk.WATCH_KEYS_TOKEN,
        sk.WATCH_NS, sk.ALERT, sk.SUPPRESSION, sk.MISUSED, sk.IDENTITY, sk.MERGED,
        sk.BLOCKING)
    writes: ClassVar[tuple[str, ...]] = (
        sk.WATCH_ENTRY, sk.WATCH_NAMED, sk.WATCH_ALERTS, sk.WATCH_KEYS, sk.WATCH_KEYS_TOKEN,
        sk.WATCH_NS, sk.ALERT)
    own_source: ClassVar[str | None] = "watchlist"

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        # In-process copy of "wk" (every blocking key some watchlist entry is indexed under)
        # and the "wv" token it reflects; see _watch_keys().
        self._wkeys: set[str] = set()
        self._wkeys_v: str | None = None

    # ------------------------------------------------------------------ reading ahead
    def keys_ahead(self, record: dict[str, Any], person: PersonRecord,
                   blocking_keys: list[str]) -> tuple[list[str], list[str]]:
        strings = [sk.WATCH_KEYS_TOKEN, sk.watch_index(sk.IDENTITY_COUNT)]
        if record["source"] == self.own_source:  # the entry, and its copy in the index
            wid = str(record["watch_id"])
            strings += [sk.watch_entry(wid), sk.watch_index(sk.IDENTITY + wid)]
        return strings, [sk.watch_index(sk.blocking(k)) for k in blocking_keys
                         if k in self._wkeys]

    def person_keys(self, person_id: str) -> list[str]:
        return [sk.watch_evidence(person_id)]

    # ------------------------------------------------------------------ hooks
    def on_own_record(self, record: dict[str, Any], key: str,
                      report_ts: float | None) -> tuple[str | None, list[Out]]:
        """A watch entry added (compared with the identities it could mean) or removed.
        A removal is final: an entry removed stays off the list, also when its ``add``
        arrives after the ``remove``."""
        ctx = self.ctx
        kv, linker = ctx.kv, ctx.linker
        watch_id = str(record["watch_id"])
        entry = person_record(record, key, ctx.pseudo)
        if record.get("action", "add") == "remove":
            return None, self._withdraw(watch_id, entry)
        raw = kv.get(sk.watch_entry(watch_id))
        if raw and not WatchEntry.decode(raw).active:
            return None, []
        meta = WatchEntry(entry, record.get("priority"), record.get("valid_until"))
        kv.set(sk.watch_entry(watch_id), meta.encode())
        idx = Identity(person_id=watch_id, anchor=f"watch:{watch_id}")
        idx.absorb(entry)
        for alias in entry.aliases:
            idx.name_keys.add(alias)
        wkeys = linker.finder.keys(entry)
        # before the save: a store with saved entries and no token has no usable key set
        self._watch_keys_add(wkeys)
        ctx.watch_store.save(idx, wkeys)
        named, outs = self._evaluate(watch_id, meta, None, None, report_ts)
        return named, outs

    def on_record(self, event: LinkedRecord) -> list[Out]:
        """Keep the identity's evidence, then compare every watch entry that shares a blocking
        key with the identity anew."""
        ctx = self.ctx
        ident = event.identity
        self._keep_evidence(event)
        outs: list[Out] = []
        wkeys = self._watch_keys()
        if wkeys is not None and not wkeys:
            return outs  # no watchlist entry: nothing to probe, no keys to build
        keys = ctx.linker.finder.identity_keys(ident)
        if wkeys is not None:
            keys = [k for k in keys if k in wkeys]
            if not keys:
                return outs
        found = sorted(ctx.watch_store.find(keys))
        if found:  # what _evaluate reads first for each entry (the entry, a reviewer's
            # suppression of this pair, the persons it named, its alerts, misused
            # identities): one round trip on Redis
            anchor = ident.rule_anchor
            ctx.kv.prefetch(
                [k for w in found for k in (
                    sk.watch_entry(w), sk.suppression(watch_alert_id(w, anchor)))],
                [k for w in found for k in (sk.watch_named(w), sk.watch_alerts(w))]
                + [sk.MISUSED])
        for watch_id in found:
            raw = ctx.kv.get(sk.watch_entry(watch_id))
            if not raw:
                continue
            outs += self._evaluate(watch_id, WatchEntry.decode(raw), ident, event.key,
                                   event.report_ts)[1]
        return outs

    # ------------------------------------------------------------------ evidence
    def evidence(self, person_id: str) -> wl.Evidence:
        """Which record supplied each feature value of identity ``person_id``."""
        raw = self.ctx.kv.get(sk.watch_evidence(person_id))
        ev: wl.Evidence = fastjson.loads(raw) if raw else {}
        return ev

    def _keep_evidence(self, event: LinkedRecord) -> None:
        """Fold the identities the record merged into its own and add the record's values."""
        kv = self.ctx.kv
        pid = event.person_id
        ev = self.evidence(pid)
        changed = False
        for absorbed in event.link.merged:
            other = self.evidence(absorbed)
            if other:
                wl.merge_evidence(ev, other)
                kv.delete(sk.watch_evidence(absorbed))
                changed = True
        if not event.link.repeated and wl.add_record(ev, event.person):
            changed = True
        if changed:
            kv.set(sk.watch_evidence(pid), fastjson.dumps(dict(sorted(ev.items()))))

    # ------------------------------------------------------------------ the watch key set
    def _watch_keys(self) -> set[str] | None:
        """Every blocking key under which some watchlist entry is indexed (``wk``), as an
        in-process set, or None when the store holds entries but no such set (then every
        key is probed).

        ``wv`` holds a token that changes with every watchlist entry added (a hash chain of
        the entries' keys, see _watch_keys_add). Reading it is part of the unit of work, so
        an entry another worker adds meanwhile is a conflict, exactly as the grown ``wl/b:``
        set would be: the unit re-runs and reloads. While the token is the one this copy
        reflects, an identity key outside the set cannot meet any entry and costs no read of
        the watchlist index."""
        kv = self.ctx.kv
        v = kv.get(sk.WATCH_KEYS_TOKEN)
        if v is None:
            if int(kv.get(sk.watch_index(sk.IDENTITY_COUNT)) or 0):
                return None
            self._wkeys, self._wkeys_v = set(), None
            return self._wkeys
        if v != self._wkeys_v:
            self._wkeys, self._wkeys_v = set(kv.smembers(sk.WATCH_KEYS)), v
        return self._wkeys

    def _watch_keys_add(self, keys: list[str]) -> None:
        """Record a new entry's blocking keys in ``wk`` and change the token. The in-process
        copy is updated now; if this unit of work is rolled back, the token in the store is
        not this one (unless it made exactly these additions), so the next read reloads."""
        cur = self._watch_keys()
        if cur is None:
            # Entries without the key set (a store where "wk" was deleted): it keeps the
            # full probe rather than a partial set; `reglink rebuild` gives it the set.
            # (Building it here would need a SCAN, which the worker's Redis user may not run.)
            return
        new = [k for k in keys if k not in cur]
        kv = self.ctx.kv
        if new:
            kv.sadd(sk.WATCH_KEYS, new)
        # The token chains the previous one with this entry's keys: deterministic (replay and
        # worker leave the same state), and equal tokens mean the same additions in the same
        # order, hence the same key set (a rolled-back copy can only match a store that made
        # exactly its additions).
        token = hashlib.sha1("|".join([self._wkeys_v or "", *sorted(keys)]).encode()
                             ).hexdigest()[:16]
        kv.set(sk.WATCH_KEYS_TOKEN, token)
        self._wkeys, self._wkeys_v = cur | set(new), token

    # ------------------------------------------------------------------ one entry
    def _evaluate(self, watch_id: str, meta: WatchEntry, trigger: Identity | None,
                  record: str | None, report_ts: float | None) -> tuple[str | None, list[Out]]:
        """Compare entry ``watch_id`` with every identity it could mean, as they are now, and
        bring its alerts in line: a person it names has one raised alert (raised again if it
        had been withdrawn), one it no longer names has its alert withdrawn. ``trigger``: the
        identity a record (``record``, reported at ``report_ts``) was just linked to; None
        when the entry itself arrived. Returns the person named with the highest
        probability, if any, and the messages.

        Named are the identities at or above the threshold, with no hard conflict, not
        cleared by review and, under the ambiguity guard, with no rival
        (:func:`wl.rivals`). Since this depends only on the identities in the store, the
        final statuses do not depend on the order the records arrived in."""
        if not meta.active:
            return None, []
        if meta.valid_until and report_ts is not None and \
                report_ts >= day_end(meta.valid_until):
            return None, []
        ctx = self.ctx
        kv, store = ctx.kv, ctx.store
        comparator = ctx.linker.comparator
        model = comparator.model
        threshold = ctx.settings.watchlist_threshold
        guard = ctx.settings.watchlist_ambiguity_guard
        entry = meta.rec
        cands = {i.person_id: i for i in ctx.linker.finder.candidates(entry, store)}
        if trigger is not None:
            cands[trigger.person_id] = trigger
        # What follows reads, per candidate, a reviewer's suppression of the pair, and the
        # entry's sets: one round trip on Redis (what a record's prefetch already read is not
        # read again), then the entry's alerts in another. (The evidence of an identity is
        # read only for those it names: most candidates never need theirs.)
        kv.prefetch([sk.suppression(watch_alert_id(watch_id, cands[pid].rule_anchor))
                     for pid in sorted(cands)],
                    [sk.watch_named(watch_id), sk.watch_alerts(watch_id), sk.MISUSED])
        aids = sorted(kv.smembers(sk.watch_alerts(watch_id)))
        kv.prefetch([sk.alert(aid) for aid in aids], [])
        # the entry's alerts by the person they now resolve to
        alerts: dict[str, list[dict[str, Any]]] = {}
        for aid in aids:
            prev = self.alert_state(aid)
            if prev:
                alerts.setdefault(store.resolve(prev["person_id"]), []).append(prev)
        comps: dict[str, Comparison] = {}
        bits: dict[str, float] = {}
        namesakes: dict[str, float] = {}
        for pid in sorted(cands):
            ident = cands[pid]
            if self._cleared(watch_alert_id(watch_id, ident.rule_anchor), pid, report_ts):
                continue  # review cleared the pair: neither named nor a rival
            comps[pid] = c = comparator.compare(entry, ident)
            if c.conflict is None:
                bits[pid] = model.log_odds(c.total_weight)
            else:
                namesakes[pid] = model.log_odds(wl.weight_besides(c, "id"))

        def ambiguous(pid: str) -> bool:
            if wl.rivals(pid, bits[pid], bits, threshold):
                return True
            # an identity without a resident ID, against an entry with one: as likely the
            # records of a namesake who holds another ID (see wl.weight_besides)
            if not entry.id_valid or cands[pid].rid_hash:
                return False
            if not cands[pid].id_hashes and wl.rivals(
                    pid, bits[pid], {"": model.log_odds(wl.namesake_weight(comps[pid]))},
                    threshold):
                return True  # no ID at all: a namesake born that day would match as well
            return bool(wl.rivals(pid, bits[pid], namesakes, threshold))

        named = sorted((pid for pid, c in comps.items()
                        if c.conflict is None and c.probability >= threshold
                        and not (guard and ambiguous(pid))),
                       key=lambda pid: (-comps[pid].probability, pid))
        outs: list[Out] = []
        for pid, c in comps.items():
            if pid in named:
                continue
            reason = ("conflict" if c.conflict else
                      "below_threshold" if c.probability < threshold else wl.AMBIGUOUS)
            for prev in alerts.get(pid, ()):
                if prev["status"] == "raised":
                    outs.append(self._reissue(prev, "withdrawn", reason, meta, cands[pid]))
        key = sk.watch_named(watch_id)
        kept = {store.resolve(p) for p in kv.smembers(key)}
        gone = sorted(p for p in kv.smembers(key)
                      if store.resolve(p) in comps and store.resolve(p) not in named)
        for p in gone:
            kv.srem(key, p)
        for pid in named:
            ident = cands[pid]
            aid = watch_alert_id(watch_id, ident.rule_anchor)
            current = None
            for prev in alerts.get(pid, ()):
                if prev["alert_id"] == aid:
                    current = prev
                elif prev["status"] == "raised":  # raised under the identity's former anchor
                    outs.append(self._reissue(prev, "withdrawn", "superseded", meta, ident))
            if current is not None and current["status"] == "raised":
                continue
            if pid not in kept:
                kv.sadd(key, [pid])
            kv.sadd(sk.watch_alerts(watch_id), [aid])
            if pid == (trigger.person_id if trigger else None):
                evidence, at = record, report_ts
            else:
                evidence, at = ident.last_record, ident.last_report
            outs.append(self.alert(
                aid, "raised", ident, [f"watchlist:{watch_id}"] + ([evidence] if evidence else []),
                comps[pid].probability, self._explain(entry, ident, comps[pid]),
                iso(at) if at else None, watch_id=watch_id, priority=meta.priority,
                counterfactuals=self._counterfactuals(entry, ident)))
        return (named[0] if named else None), outs

    def _explain(self, entry: PersonRecord, ident: Identity, comp: Comparison) -> dict[str, Any]:
        comparator = self.ctx.linker.comparator
        if not isinstance(comparator, FSComparator):
            return comp.explanation()
        return wl.explain(comp, comparator.comparators, entry, ident,
                          self.evidence(ident.person_id))

    def _counterfactuals(self, entry: PersonRecord, ident: Identity) -> list[dict[str, Any]]:
        comparator = self.ctx.linker.comparator
        if not isinstance(comparator, FSComparator):
            return []
        return wl.counterfactuals(comparator, entry, ident, self.evidence(ident.person_id),
                                  self.ctx.settings.watchlist_threshold)

    def _reissue(self, prev: dict[str, Any], status: str, reason: str, meta: WatchEntry,
                 ident: Identity) -> Out:
        """``prev`` again with a new status, the comparison as it stands now and its
        counterfactuals (what would raise it again)."""
        entry = meta.rec
        comp = self.ctx.linker.comparator.compare(entry, ident)
        return self.update_alert({
            **prev, "status": status, "withdrawn_reason": reason,
            "match_probability": comp.probability,
            "explanation": self._explain(entry, ident, comp),
            "counterfactuals": self._counterfactuals(entry, ident)})

    def _cleared(self, aid: str, person_id: str, report_ts: float | None) -> bool:
        kv = self.ctx.kv
        return decisions.suppressed(kv.get, kv.smembers, self.ctx.store.resolve, aid,
                                    person_id, report_ts) is not None

    def _withdraw(self, watch_id: str, rec: PersonRecord) -> list[Out]:
        """The entry is off the list for good: it names no one from now on, its raised
        alerts are withdrawn. A removal that comes before its entry leaves the entry
        stored as removed (``rec``: the removal's own person block)."""
        kv = self.ctx.kv
        raw = kv.get(sk.watch_entry(watch_id))
        meta = WatchEntry.decode(raw) if raw else WatchEntry(rec)
        meta.active = False
        kv.set(sk.watch_entry(watch_id), meta.encode())
        outs = []
        for aid in sorted(kv.smembers(sk.watch_alerts(watch_id))):
            prev = self.alert_state(aid)
            if prev and prev["status"] == "raised":
                outs.append(self.update_alert({**prev, "status": "withdrawn",
                                               "withdrawn_reason": "removed"}))
        return outs
