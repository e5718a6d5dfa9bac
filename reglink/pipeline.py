"""The pure core, assembled: one validated record in, output messages out.

normalise -> candidates -> compare -> decide (matchers.Linker) -> rules (reglink.rules).

No Kafka and no Redis in here: identity and rule state live behind the
:class:`~matchers.stores.kv.KeyValue` interface handed in. The faust worker (streams/) and
``reglink replay`` are two thin shells over :class:`Pipeline`, which is why they can agree.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass

from matchers import fastjson
from matchers.features import person_record
from matchers.linker import Linker, LinkResult
from matchers.normalise import same_place
from matchers.pseudo import Pseudonymiser
from matchers.stores import schema as sk
from matchers.stores.identity import KVIdentityStore
from matchers.stores.kv import Conflict, KeyValue, TxKV
from matchers.types import Identity, PersonRecord

from .contract import record_key, report_time
from .metrics import PipelineMetrics
from .rules import decisions
from .rules import stay as st
from .rules import watchlist as wl
from .rules.clock import day_end, day_start, iso, ts
from .rules.watermark import Watermark
from .settings import Settings
from .topics import EVENT_SOURCES


@dataclass(frozen=True, slots=True)
class Out:
    """One output message: topic name without prefix, key, JSON value."""

    topic: str
    key: str
    value: dict
    oid: str | None = None  # outbox id while the message awaits delivery (worker only)


MAX_CONFLICT_RETRIES = 20
# Pause before conflict retry n: min(cap, base * 2**n), jittered x0.5-1.5. Retrying at once
# meets the same writer again (a purge sweep commits a unit every few ms); 20 retries wait
# about 0.7 s in all, long enough for a busy writer to move on.
BACKOFF_BASE_S = 0.0005
BACKOFF_CAP_S = 0.05


def conflict_backoff(attempt: int, rand=random.random) -> float:
    """Seconds to wait before re-running a unit of work after its ``attempt``-th conflict."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2 ** min(attempt, 16))) * (0.5 + rand())


def _alert_id(*parts: str) -> str:
    return "A" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _watch_alert_id(watch_id: str, anchor: str) -> str:
    """The watchlist alert of one (watch entry, person anchor) pair."""
    return _alert_id("watchlist_match", watch_id, anchor)


class Pipeline:
    """Stateful (through ``kv``) but deterministic: same records in, same messages out."""

    def __init__(self, settings: Settings, kv: KeyValue, watch_kv: KeyValue | None = None,
                 metrics: PipelineMetrics | None = None, outbox: bool = False,
                 identity_cache: int = 50_000) -> None:
        self.s = settings
        self.sleep = time.sleep  # conflict backoff (tests count the pauses)
        # Every record's state changes commit together (one MULTI/EXEC on Redis).
        # Outbox ids come from blocks reserved with one INCRBY; the approximate identity count
        # is incremented inside the commit: neither costs a round trip of its own.
        self.kv = kv if isinstance(kv, TxKV) else TxKV(
            kv, atomic_counters=frozenset({sk.OUTBOX_COUNTER}),
            deferred_counters=frozenset({sk.IDENTITY_COUNT}), counter_block=256)
        self._batch = False  # inside process_batch: the watermark is saved once, at its end
        self._pre: dict[int, PersonRecord] = {}  # id(record) -> its PersonRecord (batch)
        self.conflicts = 0  # optimistic commits retried (several workers on one identity)
        self.pseudo = Pseudonymiser(settings.hmac_key.get_secret_value())
        # Through the buffer too: identity writes (save, merge pointers, links) land in the
        # record's MULTI/EXEC with the rule state, not one round trip each ahead of it.
        # identity_cache: decoded identities kept (see KVIdentityStore); replay keeps them all.
        self.store = KVIdentityStore(self.kv, cache=identity_cache)
        # Watchlist entries are indexed like identities, in their own namespace.
        self.watch_store = KVIdentityStore(
            watch_kv if watch_kv is not None else _Prefixed(self.kv))
        self.linker = Linker(self.store, self.pseudo, settings.link_threshold)
        # In-process copy of "wk" (every blocking key some watchlist entry is indexed under)
        # and the "wv" token it reflects; see _watch_keys().
        self._wkeys: set[str] = set()
        self._wkeys_v: str | None = None
        if outbox:
            self.linker.prefetch_extra = (sk.OUTBOX_COUNTER,)
        self.metrics = metrics or PipelineMetrics()
        self._children: dict[tuple[int, str], object] = {}
        # With an outbox, alerts and identity events are kept in the state store, in the same
        # commit as the state change that caused them, until the shell confirms delivery.
        self.outbox = outbox
        self.grace = {"rental": settings.grace_rental_s, "job": settings.grace_job_s,
                      "hotel": settings.grace_hotel_s}
        self.wm = Watermark(EVENT_SOURCES, settings.lateness_s, settings.idle_timeout_s)
        raw = self.kv.get(sk.WATERMARK)
        if raw:
            self.wm.load_json(json.loads(raw))

    def _atomic(self, fn, *args):
        """Run one unit of work; commit its state changes at once, or none of them.

        On a shared Redis the commit is optimistic (see :class:`TxKV`): if another worker
        changed something this unit read, nothing is applied and the unit runs again on
        fresh state (its in-memory effects, the watermark, are idempotent), after a short
        growing pause (:func:`conflict_backoff`). After ``MAX_CONFLICT_RETRIES`` it raises
        :class:`Conflict`; the worker then backs off longer and keeps the record."""
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            try:
                result = fn(*args)
                self.kv.commit()
                return result
            except Conflict:
                self._undo()
                self.conflicts += 1
                self.metrics.conflicts.inc()
                if attempt == MAX_CONFLICT_RETRIES:
                    raise
                self.sleep(conflict_backoff(attempt))
            except BaseException:
                self._undo()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _undo(self) -> None:
        self.kv.rollback()
        self.store.forget()  # decoded identities may hold the undone changes
        self.watch_store.forget()

    # ------------------------------------------------------------------ entry points
    def process(self, record: dict, now: float | None = None,
                channel: str | None = None) -> tuple[str | None, list[Out]]:
        """Handle one validated record. Returns (person_id it linked to, messages).

        ``channel`` names the ordered stream it came from for the watermark (default: its
        source; the worker passes ``source#partition``). All state changes of the record
        commit together."""
        pid, outs = self._atomic(self._process_one, record, now, channel)
        return pid, outs

    def _process_one(self, record: dict, now: float | None,
                     channel: str | None) -> tuple[str | None, list[Out]]:
        """One record as a unit of work of its own. Over Redis, what it will read is fetched
        ahead as for a batch (:meth:`_prefetch_batch`: two round trips, where reading as it
        goes took about five), and the commit checks only the keys it used."""
        self.linker.fetched_ahead = self._prefetch_batch([record])  # False when embedded
        if self.linker.fetched_ahead:
            self.kv.begin(0)  # from here on, reads are attributed: only used keys are checked
        try:
            return self._process(record, now, channel)
        finally:
            self.linker.fetched_ahead = False
            self._pre.clear()

    def process_batch(self, items: list[tuple[dict, str | None]], now: float | None = None,
                      max_retries: int = 2) -> list[tuple[str | None, list[Out]]]:
        """Handle several validated records, in the order given, as one unit of work.

        Same results as calling :meth:`process` on each in turn: every record runs through
        the core on a batch-wide read-your-writes overlay (record i+1 sees record i's
        writes), and the whole batch commits at once (one compare-and-apply on Redis). What
        the batch will read is fetched ahead in two pipelined round trips.

        Conflicts are resolved per record: the commit's checks are ordered by the record that
        first read each key, so a conflict names the first record that read a changed key.
        The records before it read nothing that changed: they are committed on their own
        (with the watermark as it was after them), and only the rest runs again, on fresh
        state, in attempts of half as many records (each conflict halves them again: what
        other writers keep changing is less likely to hit a smaller attempt). When the very
        first record conflicts, nothing is kept: the attempt rolls back (state, decoded
        identities, in-memory watermark) and runs again; after ``max_retries`` such
        conflicts in a row it raises :class:`Conflict` with ``done`` = the results of the
        records already committed, and the caller handles the others (one at a time). Any
        other error rolls the uncommitted records back too and is raised, likewise with
        ``done``."""
        done: list[tuple[str | None, list[Out]]] = []
        misses = 0
        track = self.kv.optimistic
        limit = len(items)  # records per attempt: halved after each conflict
        while True:
            pending = items[len(done):len(done) + limit]
            wm = _wm_copy(self.wm.to_json())
            snaps: list[dict] = []  # the watermark after each record (to commit a prefix)
            results: list[tuple[str | None, list[Out]]] = []
            self._batch = True
            try:
                self.kv.begin(0)
                self.linker.fetched_ahead = self._prefetch_batch([r for r, _c in pending])
                for i, (r, c) in enumerate(pending):
                    self.kv.begin(i)
                    results.append(self._process(r, now, c))
                    if track:
                        snaps.append(_wm_copy(self.wm.to_json()))
                self.kv.begin(len(pending))
                self.kv.set(sk.WATERMARK, fastjson.dumps(self.wm.to_json()))
                self.kv.commit()
                done += results
                if len(done) == len(items):
                    return done
                continue
            except Conflict as exc:
                conflict = exc
            except BaseException as exc:
                self._undo()
                self.wm.load_json(wm)
                exc.done = done  # type: ignore[attr-defined]
                raise
            finally:
                self._batch = False
                self.linker.fetched_ahead = False
                self._pre.clear()
            self.conflicts += 1
            self.metrics.conflicts.inc()
            try:
                kept = self._commit_leading(conflict.segment, snaps)
            except BaseException as exc:  # e.g. Redis went away: the leading records may
                self._undo()              # or may not be in (re-running them is idempotent)
                self.wm.load_json(wm)
                exc.done = done  # type: ignore[attr-defined]
                raise
            self._undo()
            self.wm.load_json(snaps[kept - 1] if kept else wm)
            done += results[:kept]
            self.metrics.reruns.inc(len(pending) - kept)
            # the rest read what other writers are changing: smaller attempts lose less
            limit = max(1, (len(pending) - kept) // 2)
            misses = 0 if kept else misses + 1
            if misses > max_retries:
                conflict.done = done  # type: ignore[attr-defined]
                raise conflict

    def _commit_leading(self, segment: int, snaps: list[dict]) -> int:
        """After a conflict first seen at record ``segment``: commit the records before it
        (their own reads are checked again; a conflict there moves the cut further up).
        Returns how many leading records were committed."""
        while segment > 0:
            try:
                self.kv.commit_prefix(segment, [("set", sk.WATERMARK,
                                                 fastjson.dumps(snaps[segment - 1]))])
                return segment
            except Conflict as exc:
                self.conflicts += 1
                self.metrics.conflicts.inc()
                segment = min(exc.segment, segment - 1)
        return 0

    def _prefetch_batch(self, records: list[dict]) -> bool:
        """Warm the overlay's read cache with what the batch will read, in two round trips:
        each record's link, blocking sets (identities and watchlist), the identity it would
        found and its stays; then the pointers, identities and stays of every candidate.
        True when it did (the linker's own per-record prefetch then has nothing to add)."""
        if not hasattr(self.kv.base, "fetch"):
            return False  # embedded store: reads are free
        strings: list[str] = [sk.IDENTITY_COUNT, sk.OUTBOX_COUNTER, sk.WATCH_KEYS_TOKEN,
                              sk.watch_index(sk.IDENTITY_COUNT)]
        sets: list[str] = []
        top = max(self.wm.max_seen.values(), default=float("-inf"))
        finder = self.linker.finder
        for record in records:
            key = record_key(record)
            rt = report_time(record)
            if rt is not None:
                top = max(top, rt.timestamp())
            rec = person_record(record, key, self.pseudo)
            self._pre[id(record)] = rec
            keys = finder.keys(rec)
            sets += [sk.blocking(k) for k in keys]
            sets += [sk.watch_index(sk.blocking(k)) for k in keys if k in self._wkeys]
            if record["source"] == "watchlist":
                strings.append(sk.watch_entry(record["watch_id"]))
                continue
            anchor = f"rid:{rec.id_hash}" if rec.id_valid else f"rec:{rec.key}"
            pid = self.linker.person_id_for(anchor)
            strings += [sk.link(key), sk.identity(pid), sk.stays(pid), sk.merged(pid)]
        # The watermark cannot pass the highest report time of the batch - lateness: one
        # read of the due set up to there serves every record's advance.
        self.kv.zhint(sk.DUE, max(self.wm.value, top - self.s.lateness_s))
        self.kv.prefetch(strings, sets, self.store.max_bucket)  # larger buckets: a size
        members: set[str] = set()
        for k in dict.fromkeys(sets):
            got = self.kv._rset.get(k)
            if got and len(got) <= self.store.max_bucket and not k.startswith(sk.WATCH_NS):
                members |= got
        if members:
            self._prefetch_persons(sorted(members))
        return True

    def _prefetch_persons(self, pids) -> None:
        """Each person's merged-into pointer, identity and stays, in one round trip."""
        self.kv.prefetch([k for pid in pids
                          for k in (sk.merged(pid), sk.identity(pid), sk.stays(pid))], [])

    def _counter(self, metric, label: str):
        """A labelled child of a metric, looked up once (``labels()`` costs a lock and a
        tuple key per call)."""
        key = (id(metric), label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(label)
        return child

    def _keep(self, out: Out) -> Out:
        """Put a message in the outbox (same transaction as its cause)."""
        if not self.outbox:
            return out
        oid = f"{self.kv.incr(sk.OUTBOX_COUNTER):012d}"
        self.kv.set(sk.outbox_message(oid), json.dumps([out.topic, out.key, out.value], ensure_ascii=False))
        self.kv.zadd(sk.OUTBOX, oid, float(int(oid)))
        return Out(out.topic, out.key, out.value, oid)

    def delivered(self, oid: str) -> None:
        """The shell saw the broker acknowledge an outbox message: forget it."""
        self.kv.base.apply([("zrem", sk.OUTBOX, oid), ("delete", sk.outbox_message(oid))])  # one trip

    def delivered_many(self, oids: list[str]) -> None:
        """Several confirmations at once: one round trip."""
        if oids:
            self.kv.base.apply([op for oid in oids
                                for op in (("zrem", sk.OUTBOX, oid), ("delete", sk.outbox_message(oid)))])

    def undelivered(self) -> list[Out]:
        """Outbox messages not yet confirmed (re-sent after a crash; duplicates are allowed)."""
        outs = []
        for oid, _score in self.kv.base.zupto(sk.OUTBOX, float("inf")):
            raw = self.kv.base.get(sk.outbox_message(oid))
            if raw:
                topic, key, value = json.loads(raw)
                outs.append(Out(topic, key, value, oid))
        return outs

    def _process(self, record: dict, now: float | None,
                 channel: str | None) -> tuple[str | None, list[Out]]:
        source = record["source"]
        key = record_key(record)
        self._counter(self.metrics.records_in, source).inc()
        rt = report_time(record)
        report_ts = rt.timestamp() if rt else None
        if source == "watchlist":
            pid, outs = self._watchlist(record, key)
            return pid, outs
        rec = self._pre.pop(id(record), None) or person_record(record, key, self.pseudo)
        link = self.linker.link(rec, report_ts)
        outs = self._link_outputs(record, rec, link, rt)
        touched: set[str] = set()
        for absorbed in link.merged:
            touched |= self._move_stays(absorbed, link.person_id)
        if source in EVENT_SOURCES:
            touched |= self._stay_update(link, record, key)
        for pref in sorted(touched):
            outs += self._evaluate(link.person_id, pref)
        outs += self._watch_check(link.identity, key, report_ts)
        if report_ts is not None:
            self.wm.observe(channel or source, report_ts, now)
            # Idleness is judged only by tick(), after the shell refreshed what is still
            # waiting in the broker; here every channel with data holds the watermark.
            outs += self._advance(None)
        return link.person_id, outs

    def tick(self, now: float) -> list[Out]:
        """Processing-time tick: lets idle sources stop holding the watermark."""
        return self._atomic(self._advance, now)

    def backlog(self, channel: str, now: float) -> None:
        """The shell sees unread records for ``channel`` in the broker: not idle, and if
        nothing was read from it yet, it holds the watermark."""
        self.wm.expect(channel, now)
        self.wm.touch(channel, now)

    def expect(self, channel: str, now: float | None = None) -> None:
        """A channel has records waiting that the shell has not read yet (stream only)."""
        self.wm.expect(channel, now)

    def apply_decision(self, decision: dict) -> list[Out]:
        """A reviewer's decision (``decisions`` topic) feeds back into matching: a dismissal
        suppresses its (person, watch entry) pair, permanently for "different person"
        (cannot-link); a misused-identity mark stops watchlist hits on that person.
        See :mod:`reglink.rules.decisions`. Emits nothing today. Committed at once."""
        return self._atomic(self._apply_decision, decision)

    def _apply_decision(self, decision: dict) -> list[Out]:
        for op, key, value in decisions.effects(decision):
            if op == "sadd":
                self.kv.sadd(key, [value])
            else:
                self.kv.set(key, value)
        return []

    def finish(self) -> list[Out]:
        """End of input (replay): the watermark moves to the top report time - lateness."""
        return self._atomic(self._advance, None, True)

    # ------------------------------------------------------------------ linking
    def _link_outputs(self, record: dict, rec: PersonRecord, link: LinkResult, rt) -> list[Out]:
        outs = []
        if not link.repeated:
            self._counter(self.metrics.linked, rec.source).inc()
        for ev in link.events:
            if ev["event"] == "created":
                self.metrics.created.inc()
            elif ev["event"] == "merged":
                self.metrics.merges.inc()
            outs.append(self._keep(Out("identity.events", ev["person_id"], ev)))
        rid = record.get("record_id")
        value = {
            "record_id": rid, "source": rec.source, "person_id": link.person_id,
            "match_probability": round(link.probability, 6), "explanation": link.explanation,
            "report_time": rt.isoformat() if rt else None, "linker": self.linker.version,
        }
        if rec.id_flag:
            value["flags"] = [rec.id_flag]
        outs.append(Out("linked", link.person_id, value))
        return outs

    # ------------------------------------------------------------------ unregistered_stay
    def _stays(self, pid: str) -> dict[str, sk.StayState]:
        return sk.decode_stays(self.kv.get(sk.stays(pid)))

    def _save_stays(self, pid: str, data: dict[str, sk.StayState]) -> None:
        self.kv.set(sk.stays(pid), sk.encode_stays(data))

    def _stay_update(self, link: LinkResult, record: dict, key: str) -> set[str]:
        source = record["source"]
        pref = str(record["city_code"])[:4]
        data = self._stays(link.person_id)
        ps = data.get(pref)
        if ps is None:
            ps = data[pref] = sk.StayState()
        if key in ps.keys() or (ps.closed and key in ps.closed):
            return {pref}  # re-delivered: nothing to add, but re-evaluate (idempotent)
        if source == "hotel":
            t, hotel = ts(record["time"]), record.get("hotel_id")
            pending = ps.pending_list()  # check-outs not matched yet
            if record["event"] == "check_in":
                iv = sk.Presence(key, t, None, self.grace["hotel"], hotel)
                # A check-out can be read before its check-in (another partition): match it.
                outs = sorted((c for c in pending if c.hotel == hotel and c.at >= t),
                              key=lambda c: (c.at, c.key))
                if outs:
                    iv.end = outs[0].at
                    pending.remove(outs[0])
                    ps.closed_list().append(outs[0].key)
                ps.intervals.append(iv)
            else:
                open_ivs = [iv for iv in ps.intervals if iv.end is None and iv.hotel is not None
                            and iv.hotel == hotel and iv.start <= t]
                if open_ivs:
                    max(open_ivs, key=lambda iv: iv.start).end = t
                    ps.closed_list().append(key)
                elif key not in {c.key for c in pending}:
                    pending.append(sk.PendingCheckout(key, hotel, t))
        elif source == "rental":
            end = day_end(record["lease_end"]) if record.get("lease_end") else None
            ps.intervals.append(sk.Presence(key, day_start(record["lease_start"]), end,
                                            self.grace["rental"], None))
        elif source == "job":
            ps.intervals.append(sk.Presence(key, day_start(record["start_date"]), None,
                                            self.grace["job"], None))
        elif source == "residence":
            ps.registrations.append(sk.Registered(
                key, ts(record["registered_at"]), day_start(record["valid_from"]),
                day_end(record["valid_until"])))
        ps.explanations[key] = [round(link.probability, 6), link.explanation]
        self._save_stays(link.person_id, data)
        return {pref}

    def _move_stays(self, absorbed: str, into: str) -> set[str]:
        old = self._stays(absorbed)
        if not old:
            return set()
        data = self._stays(into)
        for pref, ps in old.items():
            dst = data.get(pref)
            if dst is None:
                dst = data[pref] = sk.StayState()
            have = {iv.key for iv in dst.intervals} | {r.key for r in dst.registrations}
            dst.intervals += [iv for iv in ps.intervals if iv.key not in have]
            dst.registrations += [r for r in ps.registrations if r.key not in have]
            dst.explanations.update(ps.explanations)
            dst.closed_list().extend(ps.closed or ())
            dst.pending_list().extend(ps.pending or ())
            self.kv.zrem(sk.DUE, f"{absorbed}|{pref}")
        self._save_stays(into, data)
        self.kv.delete(sk.stays(absorbed))
        return set(old)

    def _evaluate(self, pid: str, pref: str) -> list[Out]:
        """Bring the alerts of (person, prefecture) in line with what is known now."""
        pid = self.store.resolve(pid)
        ident = self.store.get(pid)
        ps = self._stays(pid).get(pref)
        self.kv.zrem(sk.DUE, f"{pid}|{pref}")
        if ident is None or ps is None:
            return []
        # Owes registration only with a known resident ID and a home elsewhere.
        if not ident.rid_hash or not ident.home or same_place(ident.home, pref):
            return []
        intervals = [st.Interval(iv.key, iv.start, iv.end, iv.grace) for iv in ps.intervals]
        regs = [st.Registration(r.key, r.registered_at, r.valid_from, r.valid_until_end)
                for r in ps.registrations]
        ex = ps.explanations
        outs: list[Out] = []
        next_due = None
        for ep in st.episodes(intervals, self.s.episode_gap_s):
            deadline = ep.deadline
            if deadline is None:
                continue
            if deadline > self.wm.value:
                next_due = deadline if next_due is None else min(next_due, deadline)
                continue
            reg = st.covered(deadline, regs)
            aid = _alert_id("unregistered_stay", ident.rule_anchor, pref, iso(deadline))
            status = "resolved" if reg else "raised"
            prev = self._alert_status(aid)
            if prev == status or (prev is None and status == "resolved"):
                continue
            evidence = st.evidence_ids(ep, deadline)
            if reg:
                evidence.append(reg.record_id)
            probs = [ex[r][0] for r in evidence if r in ex]
            alert = self._alert(
                aid, "unregistered_stay", status, ident, evidence,
                min(probs) if probs else None,
                {r: ex[r][1] for r in evidence if r in ex},
                iso(deadline), prefecture=pref, deadline=iso(deadline))
            outs.append(alert)
        if next_due is not None:
            self.kv.zadd(sk.DUE, f"{pid}|{pref}", next_due)
        return outs

    def _advance(self, now: float | None, final: bool = False) -> list[Out]:
        before = self.wm.value
        value = self.wm.advance(now, final)
        if not self._batch:  # a batch saves it once, at its end (same commit)
            self.kv.set(sk.WATERMARK, fastjson.dumps(self.wm.to_json()))  # same MULTI as the record
        if value <= before:
            return []
        self.metrics.watermark.set(value)
        outs: list[Out] = []
        due = self.kv.zupto(sk.DUE, value)
        if due:  # what _evaluate reads first for each, in one round trip (Redis) not three
            self._prefetch_persons(dict.fromkeys(m.rsplit("|", 1)[0] for m, _score in due))
        for member, _score in due:
            pid, pref = member.rsplit("|", 1)
            self.kv.zrem(sk.DUE, member)
            outs += self._evaluate(pid, pref)
        return outs

    # ------------------------------------------------------------------ alerts
    def _alert_status(self, aid: str) -> str | None:
        raw = self.kv.get(sk.alert(aid))
        return fastjson.loads(raw)["status"] if raw else None

    def _alert(self, aid: str, rule: str, status: str, ident: Identity, record_ids: list[str],
               prob: float | None, explanation: dict, raised_at: str | None, **extra) -> Out:
        value = {
            "alert_id": aid, "rule": rule, "status": status, "person_id": ident.person_id,
            "record_ids": [r.split(":", 1)[1] for r in record_ids],
            "evidence": record_ids, **extra,
            "match_probability": prob, "explanation": explanation, "raised_at": raised_at,
            "rule_version": self.s.rule_version,
        }
        self.kv.set(sk.alert(aid), json.dumps(value, ensure_ascii=False))
        self.metrics.alerts.labels(rule, status).inc()
        return self._keep(Out("alerts", aid, value))

    # ------------------------------------------------------------------ watchlist_match
    def _watchlist(self, record: dict, key: str) -> tuple[str | None, list[Out]]:
        watch_id = str(record["watch_id"])
        if record.get("action", "add") == "remove":
            return None, self._withdraw(watch_id)
        entry = person_record(record, key, self.pseudo)
        meta = sk.WatchEntry(entry, record.get("priority"), record.get("valid_until"))
        self.kv.set(sk.watch_entry(watch_id), meta.encode())
        idx = Identity(person_id=watch_id, anchor=f"watch:{watch_id}")
        idx.absorb(entry)
        for alias in entry.aliases:
            idx.name_keys.add(alias)
        wkeys = self.linker.finder.keys(entry)
        self._watch_keys_add(wkeys)  # before the save: it tells a store that predates "wk"
        self.watch_store.save(idx, wkeys)
        outs: list[Out] = []
        best_pid, best_p = None, -1.0
        cands = self.linker.finder.candidates(entry, self.store)
        for ident in cands:
            outs += self._watch_pair(watch_id, meta, entry, ident, ident.last_record,
                                     ident.last_report, pool=cands)
            p = self.linker.comparator.compare(entry, ident).probability
            if p >= self.s.watchlist_threshold and p > best_p:
                best_pid, best_p = ident.person_id, p
        if self.s.watchlist_ambiguity_guard and best_pid is not None and \
                best_pid not in self.kv.smembers(sk.watch_named(watch_id)):
            best_pid = None  # the entry cannot tell its best match from another: names no one
        return best_pid, outs

    def _watch_keys(self) -> set[str] | None:
        """Every blocking key under which some watchlist entry is indexed (``wk``), as an
        in-process set, or None when the store predates that set (then every key is probed).

        ``wv`` holds a token that changes with every watchlist entry added (a hash chain of
        the entries' keys, see _watch_keys_add). Reading it is part of the unit of
        work, so an entry another worker adds meanwhile is a conflict, exactly as the grown
        ``wl/b:`` set was before: the unit re-runs and reloads. While the token is the one
        this copy reflects, an identity key outside the set cannot meet any entry and costs
        no read of the watchlist index."""
        v = self.kv.get(sk.WATCH_KEYS_TOKEN)
        if v is None:
            if int(self.kv.get(sk.watch_index(sk.IDENTITY_COUNT)) or 0):
                return None
            self._wkeys, self._wkeys_v = set(), None
            return self._wkeys
        if v != self._wkeys_v:
            self._wkeys, self._wkeys_v = set(self.kv.smembers(sk.WATCH_KEYS)), v
        return self._wkeys

    def _watch_keys_add(self, keys: list[str]) -> None:
        """Record a new entry's blocking keys in ``wk`` and change the token. The in-process
        copy is updated now; if this unit of work is rolled back, the token in the store is
        not this one (unless it made exactly these additions), so the next read reloads."""
        cur = self._watch_keys()
        if cur is None:
            # A store written before "wk" existed (watch entries, no token): it keeps the full
            # probe rather than a partial set; `reglink rebuild` gives it the set. (Building
            # it here would need a SCAN, which the worker's Redis user may not run.)
            return
        new = [k for k in keys if k not in cur]
        if new:
            self.kv.sadd(sk.WATCH_KEYS, new)
        # The token chains the previous one with this entry's keys: deterministic (replay and
        # worker leave the same state), and equal tokens mean the same additions in the same
        # order, hence the same key set (a rolled-back copy can only match a store that made
        # exactly its additions).
        token = hashlib.sha1("|".join([self._wkeys_v or "", *sorted(keys)]).encode()
                             ).hexdigest()[:16]
        self.kv.set(sk.WATCH_KEYS_TOKEN, token)
        self._wkeys, self._wkeys_v = cur | set(new), token

    def _watch_check(self, ident: Identity, key: str, report_ts: float | None) -> list[Out]:
        outs: list[Out] = []
        wkeys = self._watch_keys()
        if wkeys is not None and not wkeys:
            return outs  # no watchlist entry: nothing to probe, no keys to build
        keys = self.linker.finder.identity_keys(ident)
        if wkeys is not None:
            keys = [k for k in keys if k in wkeys]
            if not keys:
                return outs
        found = sorted(self.watch_store.find(keys))
        if found:  # what _watch_pair reads for each entry (the entry, the persons it named,
            # its alerts, a reviewer's suppression of this pair, misused identities): one
            # round trip on Redis instead of up to five per entry
            anchor = ident.rule_anchor
            self.kv.prefetch(
                [k for w in found for k in (
                    sk.watch_entry(w), sk.suppression(_watch_alert_id(w, anchor)))],
                [k for w in found for k in (sk.watch_named(w), sk.watch_alerts(w))]
                + [sk.MISUSED])
        for watch_id in found:
            raw = self.kv.get(sk.watch_entry(watch_id))
            if not raw:
                continue
            meta = sk.WatchEntry.decode(raw)
            outs += self._watch_pair(watch_id, meta, meta.rec, ident, key, report_ts)
        return outs

    def _watch_pair(self, watch_id: str, meta: sk.WatchEntry, entry: PersonRecord, ident: Identity,
                    record: str | None, report_ts: float | None,
                    pool: list[Identity] | None = None) -> list[Out]:
        if not meta.active:
            return []
        if meta.valid_until and report_ts is not None and \
                report_ts >= day_end(meta.valid_until):
            return []
        comp = self.linker.comparator.compare(entry, ident)
        guard = self.s.watchlist_ambiguity_guard
        below = comp.probability < self.s.watchlist_threshold
        if comp.conflict or (below and not guard):
            return []
        alerted = {self.store.resolve(p) for p in self.kv.smembers(sk.watch_named(watch_id))}
        if ident.person_id in alerted or (below and not alerted):
            return []  # named already, or neither named nor able to doubt anyone named
        aid = _watch_alert_id(watch_id, ident.rule_anchor)
        if self._cleared(aid, ident.person_id, report_ts):
            return []  # a reviewer cleared this pair, or marked the person's identity misused
        outs: list[Out] = []
        if guard and alerted:  # does this identity put a person already named in doubt?
            outs += self._withdraw_ambiguous(watch_id, entry, comp, report_ts)
        if below:
            return outs
        if guard and self._watch_rivals(watch_id, entry, ident, comp, report_ts, pool):
            return outs  # the entry cannot tell these people apart: name none of them
        self.kv.sadd(sk.watch_named(watch_id), [ident.person_id])
        self.kv.sadd(sk.watch_alerts(watch_id), [aid])
        evidence = [f"watchlist:{watch_id}"] + ([record] if record else [])
        return outs + [self._alert(aid, "watchlist_match", "raised", ident, evidence,
                                   comp.probability, comp.explanation(),
                                   iso(report_ts) if report_ts else None,
                                   watch_id=watch_id, priority=meta.priority)]

    def _cleared(self, aid: str, person_id: str, report_ts: float | None) -> bool:
        return decisions.suppressed(self.kv.get, self.kv.smembers, self.store.resolve, aid,
                                    person_id, report_ts) is not None

    def _watch_rivals(self, watch_id: str, entry: PersonRecord, ident: Identity, comp,
                      report_ts: float | None, pool: list[Identity] | None) -> list[str]:
        """Other identities the entry cannot tell apart from ``ident``
        (:mod:`reglink.rules.watchlist`): candidates of the entry with no hard conflict,
        except those review has cleared for this entry (they are neither named nor rivals)."""
        model = self.linker.comparator.model
        others: dict[str, float] = {}
        for other in (pool if pool is not None
                      else self.linker.finder.candidates(entry, self.store)):
            if other.person_id == ident.person_id:
                continue
            c = self.linker.comparator.compare(entry, other)
            if c.conflict:
                continue
            others[other.person_id] = model.log_odds(c.total_weight)
        found = wl.rivals(ident.person_id, model.log_odds(comp.total_weight), others,
                          self.s.watchlist_threshold)
        by_id = {o.person_id: o for o in (pool or ())}
        kept = []
        for pid in found:
            other = by_id.get(pid) or self.store.get(pid)
            if other is not None and not self._cleared(
                    _watch_alert_id(watch_id, other.rule_anchor), pid, report_ts):
                kept.append(pid)
        return kept

    def _withdraw_ambiguous(self, watch_id: str, entry: PersonRecord, comp,
                            report_ts: float | None) -> list[Out]:
        """Withdraw the entry's raised alerts on persons whose claim on the entry falls below
        the threshold now that the identity of ``comp`` is known (:func:`wl.outclassed`);
        alerts review has already cleared stay as they are. A person withdrawn here may be
        named again if the ambiguity goes away (the identities merge)."""
        model = self.linker.comparator.model
        raised: dict[str, list[tuple[str, dict]]] = {}
        named: dict[str, float] = {}
        for aid in sorted(self.kv.smembers(sk.watch_alerts(watch_id))):
            prev = json.loads(self.kv.get(sk.alert(aid)) or "null")
            if not prev or prev["status"] != "raised":
                continue
            pid = self.store.resolve(prev["person_id"])
            other = self.store.get(pid)
            if other is None or self._cleared(aid, pid, report_ts):
                continue
            raised.setdefault(pid, []).append((aid, prev))
            if pid not in named:
                c = self.linker.comparator.compare(entry, other)
                named[pid] = model.log_odds(c.total_weight)
        outs: list[Out] = []
        doubtful = wl.outclassed(model.log_odds(comp.total_weight), named,
                                 self.s.watchlist_threshold)
        for p in sorted(self.kv.smembers(sk.watch_named(watch_id))) if doubtful else ():
            if self.store.resolve(p) in doubtful:
                self.kv.srem(sk.watch_named(watch_id), p)
        for pid in doubtful:
            for aid, prev in raised[pid]:
                value = {**prev, "status": "withdrawn", "withdrawn_reason": wl.AMBIGUOUS}
                self.kv.set(sk.alert(aid), json.dumps(value, ensure_ascii=False))
                self.metrics.alerts.labels("watchlist_match", "withdrawn").inc()
                outs.append(self._keep(Out("alerts", aid, value)))
        return outs

    def _withdraw(self, watch_id: str) -> list[Out]:
        raw = self.kv.get(sk.watch_entry(watch_id))
        if raw:
            meta = sk.WatchEntry.decode(raw)
            meta.active = False
            self.kv.set(sk.watch_entry(watch_id), meta.encode())
        outs = []
        for aid in sorted(self.kv.smembers(sk.watch_alerts(watch_id))):
            prev = json.loads(self.kv.get(sk.alert(aid)) or "null")
            if prev and prev["status"] == "raised":
                value = {**prev, "status": "withdrawn"}
                self.kv.set(sk.alert(aid), json.dumps(value, ensure_ascii=False))
                self.metrics.alerts.labels("watchlist_match", "withdrawn").inc()
                outs.append(self._keep(Out("alerts", aid, value)))
        return outs


def _wm_copy(d: dict) -> dict:
    """A watermark state (``Watermark.to_json``) that later changes to it do not alter."""
    return {**d, "max_seen": dict(d["max_seen"]), "last_active": dict(d["last_active"])}


class _Prefixed:
    """A view of a KeyValue under a sub-prefix (the watchlist index namespace)."""

    def __init__(self, kv: KeyValue, prefix: str = "wl/") -> None:
        self._kv, self._p = kv, prefix

    def __getattr__(self, name):
        fn = getattr(self._kv, name)

        p = self._p

        def call(key, *args):
            if isinstance(key, list):
                return fn([p + k for k in key], *args)
            return fn(p + key, *args)

        self.__dict__[name] = call  # found directly next time: no wrapper built per call
        return call
