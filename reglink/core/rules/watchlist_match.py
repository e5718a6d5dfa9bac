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
        if record["source"] == self.own_source:
            strings.append(sk.watch_entry(record["watch_id"]))
        return strings, [sk.watch_index(sk.blocking(k)) for k in blocking_keys
                         if k in self._wkeys]

    # ------------------------------------------------------------------ hooks
    def on_own_record(self, record: dict[str, Any], key: str,
                      report_ts: float | None) -> tuple[str | None, list[Out]]:
        """A watch entry added (compared with the identities it could mean) or removed."""
        ctx = self.ctx
        kv, linker = ctx.kv, ctx.linker
        watch_id = str(record["watch_id"])
        if record.get("action", "add") == "remove":
            return None, self._withdraw(watch_id)
        entry = person_record(record, key, ctx.pseudo)
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
        outs: list[Out] = []
        best_pid, best_p = None, -1.0
        threshold = ctx.settings.watchlist_threshold
        cands = linker.finder.candidates(entry, ctx.store)
        for ident in cands:
            outs += self._pair(watch_id, meta, ident, ident.last_record, ident.last_report,
                               pool=cands)
            p = linker.comparator.compare(entry, ident).probability
            if p >= threshold and p > best_p:
                best_pid, best_p = ident.person_id, p
        if ctx.settings.watchlist_ambiguity_guard and best_pid is not None and \
                best_pid not in kv.smembers(sk.watch_named(watch_id)):
            best_pid = None  # the entry cannot tell its best match from another: names no one
        return best_pid, outs

    def on_record(self, event: LinkedRecord) -> list[Out]:
        """Probe the watchlist index with the identity the record linked to."""
        ctx = self.ctx
        ident = event.identity
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
        if found:  # what _pair reads for each entry (the entry, the persons it named, its
            # alerts, a reviewer's suppression of this pair, misused identities): one round
            # trip on Redis instead of up to five per entry
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
            outs += self._pair(watch_id, WatchEntry.decode(raw), ident, event.key,
                               event.report_ts)
        return outs

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

    # ------------------------------------------------------------------ one pair
    def _pair(self, watch_id: str, meta: WatchEntry, ident: Identity, record: str | None,
              report_ts: float | None, pool: list[Identity] | None = None) -> list[Out]:
        """Does entry ``watch_id`` name ``ident`` now (``record``: the evidence)?"""
        if not meta.active:
            return []
        if meta.valid_until and report_ts is not None and \
                report_ts >= day_end(meta.valid_until):
            return []
        ctx = self.ctx
        entry = meta.rec
        comp = ctx.linker.comparator.compare(entry, ident)
        guard = ctx.settings.watchlist_ambiguity_guard
        below = comp.probability < ctx.settings.watchlist_threshold
        if comp.conflict or (below and not guard):
            return []
        named = sk.watch_named(watch_id)
        alerted = {ctx.store.resolve(p) for p in ctx.kv.smembers(named)}
        if ident.person_id in alerted or (below and not alerted):
            return []  # named already, or neither named nor able to doubt anyone named
        aid = watch_alert_id(watch_id, ident.rule_anchor)
        if self._cleared(aid, ident.person_id, report_ts):
            return []  # a reviewer cleared this pair, or marked the person's identity misused
        outs: list[Out] = []
        if guard and alerted:  # does this identity put a person already named in doubt?
            outs += self._withdraw_ambiguous(watch_id, entry, comp, report_ts)
        if below:
            return outs
        if guard and self._rivals(watch_id, entry, ident, comp, report_ts, pool):
            return outs  # the entry cannot tell these people apart: name none of them
        ctx.kv.sadd(named, [ident.person_id])
        ctx.kv.sadd(sk.watch_alerts(watch_id), [aid])
        evidence = [f"watchlist:{watch_id}"] + ([record] if record else [])
        return outs + [self.alert(aid, "raised", ident, evidence, comp.probability,
                                  comp.explanation(), iso(report_ts) if report_ts else None,
                                  watch_id=watch_id, priority=meta.priority)]

    def _cleared(self, aid: str, person_id: str, report_ts: float | None) -> bool:
        kv = self.ctx.kv
        return decisions.suppressed(kv.get, kv.smembers, self.ctx.store.resolve, aid,
                                    person_id, report_ts) is not None

    def _rivals(self, watch_id: str, entry: PersonRecord, ident: Identity, comp: Comparison,
                report_ts: float | None, pool: list[Identity] | None) -> list[str]:
        """Other identities the entry cannot tell apart from ``ident``
        (:mod:`reglink.core.rules.watchlist`): candidates of the entry with no hard conflict,
        except those review has cleared for this entry (they are neither named nor rivals)."""
        ctx = self.ctx
        comparator = ctx.linker.comparator
        model = comparator.model
        others: dict[str, float] = {}
        for other in (pool if pool is not None
                      else ctx.linker.finder.candidates(entry, ctx.store)):
            if other.person_id == ident.person_id:
                continue
            c = comparator.compare(entry, other)
            if c.conflict:
                continue
            others[other.person_id] = model.log_odds(c.total_weight)
        found = wl.rivals(ident.person_id, model.log_odds(comp.total_weight), others,
                          ctx.settings.watchlist_threshold)
        by_id = {o.person_id: o for o in (pool or ())}
        kept = []
        for pid in found:
            rival = by_id.get(pid) or ctx.store.get(pid)
            if rival is not None and not self._cleared(
                    watch_alert_id(watch_id, rival.rule_anchor), pid, report_ts):
                kept.append(pid)
        return kept

    def _withdraw_ambiguous(self, watch_id: str, entry: PersonRecord, comp: Comparison,
                            report_ts: float | None) -> list[Out]:
        """Withdraw the entry's raised alerts on persons whose claim on the entry falls below
        the threshold now that the identity of ``comp`` is known (:func:`wl.outclassed`);
        alerts review has already cleared stay as they are. A person withdrawn here may be
        named again if the ambiguity goes away (the identities merge)."""
        ctx = self.ctx
        kv, store = ctx.kv, ctx.store
        model = ctx.linker.comparator.model
        raised: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        named: dict[str, float] = {}
        for aid in sorted(kv.smembers(sk.watch_alerts(watch_id))):
            prev = self.alert_state(aid)
            if not prev or prev["status"] != "raised":
                continue
            pid = store.resolve(prev["person_id"])
            other = store.get(pid)
            if other is None or self._cleared(aid, pid, report_ts):
                continue
            raised.setdefault(pid, []).append((aid, prev))
            if pid not in named:
                c = ctx.linker.comparator.compare(entry, other)
                named[pid] = model.log_odds(c.total_weight)
        outs: list[Out] = []
        doubtful = wl.outclassed(model.log_odds(comp.total_weight), named,
                                 ctx.settings.watchlist_threshold)
        key = sk.watch_named(watch_id)
        for p in sorted(kv.smembers(key)) if doubtful else ():
            if store.resolve(p) in doubtful:
                kv.srem(key, p)
        for pid in doubtful:
            for _aid, prev in raised[pid]:
                outs.append(self.update_alert(
                    {**prev, "status": "withdrawn", "withdrawn_reason": wl.AMBIGUOUS}))
        return outs

    def _withdraw(self, watch_id: str) -> list[Out]:
        """The entry is off the list: it names no one from now on, its raised alerts are
        withdrawn."""
        kv = self.ctx.kv
        raw = kv.get(sk.watch_entry(watch_id))
        if raw:
            meta = WatchEntry.decode(raw)
            meta.active = False
            kv.set(sk.watch_entry(watch_id), meta.encode())
        outs = []
        for aid in sorted(kv.smembers(sk.watch_alerts(watch_id))):
            prev = self.alert_state(aid)
            if prev and prev["status"] == "raised":
                outs.append(self.update_alert({**prev, "status": "withdrawn"}))
        return outs
