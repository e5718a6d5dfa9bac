"""The pure core, assembled: one validated record in, output messages out.

normalise -> candidates -> compare -> decide (matchers.Linker) -> alert rules
(:data:`reglink.core.rules.registry.RULES`) -> source quality counters
(:mod:`reglink.core.quality`, a plug-in on the same interface).

No Kafka and no Redis in here: identity and rule state live behind the unit of work's store
(:class:`~reglink.stores.kv_api.UnitOfWorkKV`) handed in. The faust worker (streams/) and
``reglink replay`` are two thin shells over :class:`Pipeline`, which is why they can agree.
The pipeline links each record and dispatches to the rules' hooks; the unit of work
(:mod:`reglink.core.unit_of_work`) commits a record's (or a batch's) changes at once, and the
outbox (:mod:`reglink.core.outbox`) keeps its messages until they are delivered.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import Counter

from matchers import fastjson
from matchers.compare import FSComparator
from matchers.features import person_record
from matchers.linker import Linker, LinkResult
from matchers.model import load_model
from matchers.pseudo import Pseudonymiser
from matchers.types import PersonRecord
from reglink.core.contract import record_key, report_time
from reglink.core.metrics import PipelineMetrics
from reglink.core.outbox import Out, Outbox
from reglink.core.quality import SourceQuality
from reglink.core.rules import decisions
from reglink.core.rules.base import AlertRule, IdentityChange, LinkedRecord, RuleContext
from reglink.core.rules.registry import RULES
from reglink.core.rules.watermark import Watermark, WatermarkState
from reglink.core.settings import Settings
from reglink.core.topics import EVENT_SOURCES
from reglink.core.unit_of_work import UnitOfWork
from reglink.stores import schema as sk
from reglink.stores.identity import KVIdentityStore
from reglink.stores.kv import PrefixedView, TxKV
from reglink.stores.kv_api import KeyValue, Op, UnitOfWorkKV

__all__ = ["Out", "Pipeline"]


#: The plug-ins a pipeline runs unless given others: the alert rules, then the quality counters.
PLUGINS: tuple[type[AlertRule], ...] = (*RULES, SourceQuality)


class Pipeline:
    """Stateful (through ``kv``) but deterministic: same records in, same messages out.

    ``rules``: the plug-ins to run, called in that order (default: :data:`PLUGINS`).
    ``bounded``: the input is finite and :meth:`finish` ends it (replay; ``RuleContext``)."""

    def __init__(self, settings: Settings, kv: KeyValue | TxKV,
                 metrics: PipelineMetrics | None = None, outbox: bool = False,
                 identity_cache: int = 50_000,
                 rules: tuple[type[AlertRule], ...] | None = None,
                 bounded: bool = False) -> None:
        self.s = settings
        self.bounded = bounded
        # Every record's state changes commit together (one MULTI/EXEC on Redis).
        # Outbox ids come from blocks reserved with one INCRBY; the approximate identity count
        # is incremented inside the commit: neither costs a round trip of its own.
        self.kv: UnitOfWorkKV = kv if isinstance(kv, TxKV) else TxKV(
            kv, atomic_counters=frozenset({sk.OUTBOX_COUNTER}),
            deferred_counters=frozenset({sk.IDENTITY_COUNT}), counter_block=256)
        self._batch = False  # inside process_batch: the watermark is saved once, at its end
        self._pre: dict[int, PersonRecord] = {}  # id(record) -> its PersonRecord (batch)
        self.pseudo = Pseudonymiser(settings.hmac_key.get_secret_value())
        # Through the buffer too: identity writes (save, merge pointers, links) land in the
        # record's MULTI/EXEC with the rule state, not one round trip each ahead of it.
        # identity_cache: decoded identities kept (see KVIdentityStore); replay keeps them all.
        self.store: KVIdentityStore[UnitOfWorkKV] = KVIdentityStore(self.kv,
                                                                    cache=identity_cache)
        # Watchlist entries are indexed like identities, in their own namespace.
        self.watch_store = KVIdentityStore(PrefixedView(self.kv, sk.WATCH_NS))
        self.linker = Linker(self.store, self.pseudo, settings.link_threshold,
                             comparator=FSComparator(load_model(settings.model)))
        if outbox:
            self.linker.prefetch_extra = (sk.OUTBOX_COUNTER,)
        self.metrics = metrics or PipelineMetrics()
        self._children: dict[tuple[int, str], Counter] = {}
        # With an outbox, alerts and identity events are kept in the state store, in the same
        # commit as the state change that caused them, until the shell confirms delivery.
        self.outbox = Outbox(self.kv, outbox)
        # the rules' decoded state values (RuleContext.decoded): emptied as each record
        # starts, and on a rollback
        self._decoded: dict[str, tuple[Any, Any]] = {}
        self.work = UnitOfWork(self.kv, self.metrics,
                               _forgetting(self.store, self.watch_store, memo=self._decoded))
        self.wm = Watermark.from_settings(EVENT_SOURCES, settings)
        ctx = RuleContext(settings, self.kv, self.store, self.watch_store, self.linker,
                          self.pseudo, self.wm, self.metrics, self.outbox, self._decoded,
                          bounded)
        self.rules: list[AlertRule] = [rule(ctx) for rule in
                                       (PLUGINS if rules is None else rules)]
        # The reading-ahead hooks of the rules that override them (the others read nothing
        # ahead): called per record and per candidate of a batch.
        self._keys_ahead = [r.keys_ahead for r in self.rules
                            if type(r).keys_ahead is not AlertRule.keys_ahead]
        self._rule_person_keys = [r.person_keys for r in self.rules
                                  if type(r).person_keys is not AlertRule.person_keys]
        self._keys_after = [r.keys_after for r in self.rules
                            if type(r).keys_after is not AlertRule.keys_after]
        self._by_name = {r.name: r for r in self.rules}
        self._owners = {r.own_source: r for r in self.rules if r.own_source}
        raw = self.kv.get(sk.WATERMARK)
        if raw:
            self.wm.load_json(json.loads(raw))

    @property
    def conflicts(self) -> int:
        """Optimistic commits retried (several workers on one identity)."""
        return self.work.conflicts

    # ------------------------------------------------------------------ entry points
    def process(self, record: dict[str, Any], now: float | None = None,
                channel: str | None = None) -> tuple[str | None, list[Out]]:
        """Handle one validated record. Returns (person_id it linked to, messages).

        ``channel`` names the ordered stream it came from for the watermark (default: its
        source; the worker passes ``source#partition``). All state changes of the record
        commit together."""
        pid, outs = self.work.run(self._process_one, record, now, channel)
        return pid, outs

    def _process_one(self, record: dict[str, Any], now: float | None,
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

    def process_batch(self, items: list[tuple[dict[str, Any], str | None]],
                      now: float | None = None, max_retries: int = 2
                      ) -> list[tuple[str | None, list[Out]]]:
        """Handle several validated records ``(record, channel)``, in the order given, as one
        unit of work: the same results as calling :meth:`process` on each in turn, committed
        at once, with per-record conflict resolution (:meth:`UnitOfWork.run_batch`; a
        conflict or error it cannot resolve is raised with ``done`` = the results of the
        records already committed). What the batch will read is fetched ahead in two
        pipelined round trips."""
        return self.work.run_batch(items, _BatchSteps(self, now), max_retries)

    def _prefetch_batch(self, records: list[dict[str, Any]]) -> bool:
        """Warm the overlay's read cache with what the batch will read, in two round trips:
        each record's link, blocking sets, the identity it would found and what the rules
        read for it (:meth:`AlertRule.keys_ahead`, :meth:`AlertRule.person_keys`); then the
        pointers, identities and rule state of every candidate, and what the rules read
        that follows from the first (:meth:`AlertRule.keys_after`).
        True when it did (the linker's own per-record prefetch then has nothing to add)."""
        if not self.kv.can_prefetch:
            return False  # embedded store: reads are free
        strings: list[str] = [sk.IDENTITY_COUNT, sk.OUTBOX_COUNTER]
        index: list[str] = []  # the identity index's sets
        sets: list[str] = []  # the rules' sets
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
            index += [sk.BLOCKING + k for k in keys]
            for keys_ahead in self._keys_ahead:
                more, more_sets = keys_ahead(record, rec, keys)
                strings += more
                sets += more_sets
            if record["source"] in self._owners:
                continue  # not linked
            anchor = f"rid:{rec.id_hash}" if rec.id_valid else f"rec:{rec.key}"
            pid = self.linker.person_id_for(anchor)
            strings += [sk.link(key), *self._person_keys(pid)]
        # The watermark cannot pass the highest report time of the batch - the least
        # lateness: one read of the due set up to there serves every record's advance.
        self.kv.zhint(sk.DUE, self.wm.ceiling(top))
        self.kv.prefetch(strings, index + sets, self.store.max_bucket)  # larger: a size
        members: set[str] = set()
        for k in dict.fromkeys(index):
            got = self.kv.cached_set(k)
            if got and len(got) <= self.store.max_bucket:
                members |= got
        then = [k for keys_after in self._keys_after for r in records for k in keys_after(r)]
        if members or then:
            self.kv.prefetch([k for pid in sorted(members) for k in self._person_keys(pid)]
                             + then, [])
        return True

    def _person_keys(self, pid: str) -> list[str]:
        """A person's merged-into pointer, identity and the rules' state of them."""
        keys = [sk.MERGED + pid, sk.IDENTITY + pid]
        for person_keys in self._rule_person_keys:
            keys += person_keys(pid)
        return keys

    def _counter(self, metric: Counter, label: str) -> Counter:
        """A labelled child of a metric, looked up once (``labels()`` costs a lock and a
        tuple key per call)."""
        key = (id(metric), label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(label)
        return child

    # ------------------------------------------------------------------ delivery
    def delivered(self, oid: str) -> None:
        """The shell saw the broker acknowledge an outbox message: forget it."""
        self.outbox.delivered(oid)

    def delivered_many(self, oids: list[str]) -> None:
        """Several confirmations at once: one round trip."""
        self.outbox.delivered_many(oids)

    def undelivered(self) -> list[Out]:
        """Outbox messages not yet confirmed (re-sent after a crash; duplicates are allowed),
        oldest first. Where the last of them for a key is no longer what the rule that sent
        it says now (:meth:`AlertRule.current`: a newer message was delivered meanwhile, e.g.
        ``resolved`` after the ``raised`` being re-sent), the current value follows, so the
        last message of every key on a topic stays its current one."""
        return self.work.run(self._undelivered)

    def _undelivered(self) -> list[Out]:
        outs = self.outbox.undelivered()
        last = {(o.topic, o.key): o.value for o in outs}
        for (topic, key), value in last.items():
            for rule in self.rules:
                now = rule.current(topic, key)
                if now is not None:
                    if now != value:
                        outs.append(Out(topic, key, now))
                    break
        return outs

    # ------------------------------------------------------------------ one record
    def _process(self, record: dict[str, Any], now: float | None,
                 channel: str | None) -> tuple[str | None, list[Out]]:
        source = record["source"]
        key = record_key(record)
        self._decoded.clear()
        self._counter(self.metrics.records_in, source).inc()
        rt = report_time(record)
        report_ts = rt.timestamp() if rt else None
        owner = self._owners.get(source)
        if owner is not None:  # it configures its rule (a watch entry): not linked
            return owner.on_own_record(record, key, report_ts)
        rec = self._pre.pop(id(record), None) or person_record(record, key, self.pseudo)
        link = self.linker.link(rec, report_ts)
        outs = self._link_outputs(record, rec, link, rt)
        event = LinkedRecord(record, key, source, rec, link, report_ts)
        for absorbed in link.merged:
            change = IdentityChange("merged", absorbed, link.person_id)
            for rule in self.rules:
                outs += rule.on_identity_change(change, event)
        for rule in self.rules:
            outs += rule.on_record(event)
        if link.merged or (report_ts is not None and report_ts <= self.wm.value):
            for rule in self.rules:  # late data, or a merge: the late-data hook
                outs += rule.reevaluate(link.person_id)
        if report_ts is not None:
            self.wm.observe(channel or source, report_ts, now)
            # Idleness is judged only by tick(), after the shell refreshed what is still
            # waiting in the broker; here every channel with data holds the watermark.
            outs += self._advance(None)
        return link.person_id, outs

    def tick(self, now: float) -> list[Out]:
        """Processing-time tick: lets idle sources stop holding the watermark."""
        return self.work.run(self._advance, now)

    def backlog(self, channel: str, now: float) -> None:
        """The shell sees unread records for ``channel`` in the broker: not idle, and if
        nothing was read from it yet, it holds the watermark."""
        self.wm.expect(channel, now)
        self.wm.touch(channel, now)

    def expect(self, channel: str, now: float | None = None) -> None:
        """A channel has records waiting that the shell has not read yet (stream only)."""
        self.wm.expect(channel, now)

    def apply_decision(self, decision: dict[str, Any]) -> list[Out]:
        """A reviewer's decision (``decisions`` topic) feeds back into matching: a dismissal
        suppresses its (person, watch entry) pair, permanently for "different person"
        (cannot-link); a misused-identity mark stops watchlist hits on that person.
        See :mod:`reglink.core.rules.decisions`. Emits nothing. Committed at once."""
        return self.work.run(self._apply_decision, decision)

    def _apply_decision(self, decision: dict[str, Any]) -> list[Out]:
        for op, key, value in decisions.effects(decision):
            if op == "sadd":
                self.kv.sadd(key, [value])
            else:
                self.kv.set(key, value)
        return []

    def dead_lettered(self, message: dict[str, Any]) -> None:
        """A dead-letter message (replay's own, or one read from the ``deadletter`` topic):
        counted for its organisation (:meth:`SourceQuality.on_dead_letter`). Committed at
        once."""
        quality = self._by_name.get(SourceQuality.name)
        if isinstance(quality, SourceQuality):
            self.work.run(quality.on_dead_letter, message)

    def quality_reports(self, now: float, every: float, final: bool = False) -> list[Out]:
        """The source quality reports due (:meth:`SourceQuality.reports_due`)."""
        quality = self._by_name.get(SourceQuality.name)
        if not isinstance(quality, SourceQuality):
            return []
        return self.work.run(quality.reports_due, now, every, final)

    def finish(self) -> list[Out]:
        """End of input (replay): the watermark moves to the greatest of the sources' top
        report time less their lateness; then, bounded, the plug-ins' end-of-input hooks."""
        outs = self.work.run(self._advance, None, True)
        if self.bounded:
            outs += self.work.run(self._end_of_input)
        return outs

    def _end_of_input(self) -> list[Out]:
        return [o for rule in self.rules for o in rule.on_end_of_input()]

    def _link_outputs(self, record: dict[str, Any], rec: PersonRecord, link: LinkResult,
                      rt: datetime | None) -> list[Out]:
        outs = []
        if link.repeated:
            self._counter(self.metrics.redelivered, rec.source).inc()
        else:
            self._counter(self.metrics.linked, rec.source).inc()
        for ev in link.events:
            if ev["event"] == "created":
                self.metrics.created.inc()
            elif ev["event"] == "merged":
                self.metrics.merges.inc()
            outs.append(self.outbox.keep(Out("identity.events", ev["person_id"], ev)))
        rid = record.get("record_id")
        value = {
            "record_id": rid, "source": rec.source, "person_id": link.person_id,
            "match_probability": round(link.probability, 6), "explanation": link.explanation,
            "report_time": rt.isoformat() if rt else None, "linker": self.linker.version,
            "model": self.linker.model_id,
            "quality_flags": list(rec.quality_flags),
        }
        outs.append(Out("linked", link.person_id, value))
        return outs

    # ------------------------------------------------------------------ watermark, timers
    def _advance(self, now: float | None, final: bool = False) -> list[Out]:
        """Move the watermark; fire the rule timers it passed, in (time, member) order."""
        before = self.wm.value
        value = self.wm.advance(now, final)
        if not self._batch:  # a batch saves it once, at its end (same commit)
            self.kv.set(sk.WATERMARK, fastjson.dumps(self.wm.to_json()))  # same MULTI
        if value <= before:
            return []
        self.metrics.watermark.set(value)
        outs: list[Out] = []
        timers = [(member, *sk.parse_timer(member))
                  for member, _score in self.kv.zupto(sk.DUE, value)]
        if timers:  # what the hooks read first, in one round trip (Redis), not one each
            self.kv.prefetch([k for _m, name, parts in timers if name in self._by_name
                              for k in self._by_name[name].timer_keys(parts)], [])
        for member, name, parts in timers:
            self.kv.zrem(sk.DUE, member)
            rule = self._by_name.get(name)
            if rule is not None:  # a timer of a rule not registered here is dropped
                outs += rule.on_timer(parts)
        return outs


def _forgetting(*stores: KVIdentityStore[Any], memo: dict[str, Any]) -> Callable[[], None]:
    """What the unit of work calls on a rollback: drop the stores' decoded identities and
    the rules' decoded state values (they may hold the rolled-back unit's changes). A closure
    over them, not a method of the pipeline: a unit of work holding a bound method would keep
    its pipeline in a reference cycle, and the whole state (identities, their sets, the
    embedded store) would wait for the cyclic garbage collector to traverse and free it
    (0.27 CPU-s at the end of an 18.7k-record replay)."""

    def forget() -> None:
        for store in stores:
            store.forget()
        memo.clear()

    return forget


class _BatchSteps:
    """:meth:`Pipeline.process_batch` as :class:`~reglink.core.unit_of_work.BatchSteps`: items
    are ``(record, channel)``; the in-process memory is the watermark."""

    def __init__(self, pipe: Pipeline, now: float | None) -> None:
        self.pipe, self.now = pipe, now

    def start(self, items: Sequence[tuple[dict[str, Any], str | None]]) -> None:
        pipe = self.pipe
        pipe._batch = True
        pipe.linker.fetched_ahead = pipe._prefetch_batch([r for r, _c in items])

    def step(self, item: tuple[dict[str, Any], str | None]) -> tuple[str | None, list[Out]]:
        record, channel = item
        return self.pipe._process(record, self.now, channel)

    def end(self) -> None:
        pipe = self.pipe
        pipe._batch = False
        pipe.linker.fetched_ahead = False
        pipe._pre.clear()

    def memory(self) -> WatermarkState:
        """A watermark state (``Watermark.to_json``) that later changes do not alter."""
        d = self.pipe.wm.to_json()
        return {**d, "max_seen": dict(d["max_seen"]), "last_active": dict(d["last_active"])}

    def restore(self, memory: WatermarkState) -> None:
        self.pipe.wm.load_json(memory)

    def closing_writes(self, memory: WatermarkState) -> list[Op]:
        return [("set", sk.WATERMARK, fastjson.dumps(memory))]
