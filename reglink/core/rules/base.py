"""The alert-rule plug-in interface: what a rule is, what it may use, when it is called.

A rule is a subclass of :class:`AlertRule` in a module of its own, registered with one line
in :data:`reglink.core.rules.registry.RULES`; the pipeline builds one instance per rule and
calls its hooks inside the unit of work of the record (or tick) that caused them:

* :meth:`AlertRule.on_identity_change` for each identity change a linked record caused (the
  linker reports merges), before
* :meth:`AlertRule.on_record` for the linked record itself;
* :meth:`AlertRule.on_timer` when the watermark passes a timer the rule set
  (:meth:`AlertRule.schedule`);
* :meth:`AlertRule.reevaluate` for the person of a record that arrived late (the watermark
  had passed its report time) or caused a merge, after :meth:`AlertRule.on_record`: the
  late-data hook every rule implements (docs/contract.md §2);
* :meth:`AlertRule.on_own_record` for the records of the source the rule owns
  (:attr:`AlertRule.own_source`: such records configure the rule and are not linked);
* :meth:`AlertRule.on_end_of_input` once, after the last record and timer, when the input is
  bounded (``RuleContext.bounded``: replay).

Rules are called in registration order and their messages are emitted in the order they are
returned, so the output of a run is deterministic (replay and the workers agree).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from matchers.linker import Linker, LinkResult
from matchers.pseudo import Pseudonymiser
from matchers.types import Identity, PersonRecord
from reglink.core.metrics import PipelineMetrics
from reglink.core.outbox import Out, Outbox
from reglink.core.rules.watermark import Watermark
from reglink.core.settings import Settings
from reglink.stores import schema as sk
from reglink.stores.identity import KVIdentityStore
from reglink.stores.kv import PrefixedView
from reglink.stores.kv_api import UnitOfWorkKV

_T = TypeVar("_T")


def alert_id(*parts: str) -> str:
    """The id of an alert: a digest of what identifies it (rule, anchor, ...)."""
    return "A" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


class LinkedRecord:
    """A validated record after linking: what :meth:`AlertRule.on_record` sees.

    ``person_id`` and ``identity``: the identity it linked to (``link.person_id``,
    ``link.identity``, read once here rather than by every hook). ``notes``: scratch space
    of this record's hooks, by rule name (an identity-change hook may leave there what the
    rule's record hook needs)."""

    __slots__ = ("record", "key", "source", "person", "link", "report_ts", "person_id",
                 "identity", "notes")

    def __init__(self, record: dict[str, Any], key: str, source: str, person: PersonRecord,
                 link: LinkResult, report_ts: float | None) -> None:
        self.record = record  # the validated record (JSON)
        self.key = key  # record key, ``<source>:<record_id>``
        self.source = source
        self.person = person
        self.link = link
        self.report_ts = report_ts
        self.person_id: str = link.person_id
        self.identity: Identity = link.identity
        self.notes: dict[str, object] = {}


@dataclass(frozen=True, slots=True)
class IdentityChange:
    """Identity ``person_id`` was merged into ``into`` (``kind`` ``"merged"``)."""

    kind: str
    person_id: str
    into: str


@dataclass(slots=True)
class RuleContext:
    """What a rule may use: the unit of work's state store, the identity store and its
    watchlist twin, the linker (blocking, comparison), the settings, the watermark, the
    metrics and the outbox.

    ``bounded``: the whole input is given and its end announced (replay). A plug-in whose
    messages matter only as they stand at the end (rows keyed by date, say) may then compute
    them once, in :meth:`AlertRule.on_end_of_input`, instead of keeping them up to date
    record by record as the stream must."""

    settings: Settings
    kv: UnitOfWorkKV
    store: KVIdentityStore[UnitOfWorkKV]
    watch_store: KVIdentityStore[PrefixedView]
    linker: Linker
    pseudo: Pseudonymiser
    watermark: Watermark
    metrics: PipelineMetrics
    outbox: Outbox
    decoded: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    bounded: bool = False


class AlertRule(ABC):
    """One alert rule. Subclasses set :attr:`name` and the state they use, and override the
    hooks they need (each returns the messages it emits, in order; the default emits
    nothing)."""

    #: The rule's name: the ``rule`` of its alerts and the tag of its timers.
    name: ClassVar[str]
    #: Key families (:mod:`reglink.stores.schema`) the rule reads and writes.
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    #: Topics it emits to.
    emits: ClassVar[tuple[str, ...]] = ("alerts",)
    #: A source whose records go to :meth:`on_own_record` instead of being linked.
    own_source: ClassVar[str | None] = None

    def __init__(self, ctx: RuleContext) -> None:
        self.ctx = ctx

    @property
    def version(self) -> str:
        """The ``rule_version`` its alerts carry: the deployment's rule-set version."""
        return self.ctx.settings.rule_version

    # ------------------------------------------------------------------ hooks
    def on_identity_change(self, change: IdentityChange, event: LinkedRecord) -> list[Out]:
        """An identity change caused by ``event``'s record (before :meth:`on_record`)."""
        return []

    def on_record(self, event: LinkedRecord) -> list[Out]:
        """A record was linked to ``event.person_id``."""
        return []

    def on_timer(self, parts: tuple[str, ...]) -> list[Out]:
        """The watermark passed a timer set with :meth:`schedule` (``parts`` as given)."""
        return []

    def reevaluate(self, person_id: str) -> list[Out]:
        """Late data: bring every alert of this rule about ``person_id`` in line with
        everything known now, as if the records had arrived in order: an alert the complete
        data would not raise is re-issued as ``withdrawn``, the alerts it raises are
        ``raised`` (``resolved`` only where the rule says the alert stood and was then
        answered). Emits nothing for what is already in line (it may run more than once)."""
        return []

    def on_end_of_input(self) -> list[Out]:
        """The input ended (bounded input only, after the watermark's last move and its
        timers): what a plug-in computes once rather than record by record."""
        return []

    def on_own_record(self, record: dict[str, Any], key: str,
                      report_ts: float | None) -> tuple[str | None, list[Out]]:
        """A record of :attr:`own_source`: (the person it designates, if any; messages)."""
        raise NotImplementedError(f"{self.name} owns no source")

    def current(self, topic: str, key: str) -> dict[str, Any] | None:
        """What the rule's latest message on ``topic`` under ``key`` says now, or None when
        the message is not the rule's. An outbox re-send (after a crash) may put an older
        message after a newer one of the same key; the pipeline then sends this value again
        last. The default answers for the rule's alerts (their stored state)."""
        if topic != "alerts":
            return None
        value = self.alert_state(key)
        return value if value is not None and value.get("rule") == self.name else None

    # ------------------------------------------------------------------ reading ahead
    def person_keys(self, person_id: str) -> list[str]:
        """The rule's per-person state keys, fetched ahead with a candidate's identity."""
        return []

    def keys_ahead(self, record: dict[str, Any], person: PersonRecord,
                   blocking_keys: list[str]) -> tuple[list[str], list[str]]:
        """Strings and sets the rule will read for ``record`` (fetched ahead, batched)."""
        return [], []

    def keys_after(self, record: dict[str, Any]) -> list[str]:
        """Strings the rule will read for ``record`` that follow from what
        :meth:`keys_ahead` read (its sets are cached by then, ``ctx.kv.cached_set``): fetched
        in the batch's second round trip, with the candidates' keys."""
        return []

    def timer_keys(self, parts: tuple[str, ...]) -> list[str]:
        """Strings :meth:`on_timer` will read for ``parts`` (fetched ahead together)."""
        return []

    # ------------------------------------------------------------------ services
    def load(self, key: str, decode: Callable[[Any], _T]) -> _T:
        """The state value ``key`` decoded with ``decode``, shared by the rules within a
        record: a value read again as the same stored object (the one this unit of work read
        or wrote: the store hands back what it holds) is not decoded again. Whoever changes
        the decoded value stores it again (:meth:`store`) before the record ends."""
        raw: Any = self.ctx.kv.get(key)
        if raw is None:  # nothing stored: a fresh empty value each time
            return decode(None)
        seen = self.ctx.decoded.get(key)
        if seen is not None and seen[0] is raw:
            value: _T = seen[1]
            return value
        value = decode(raw)
        self.ctx.decoded[key] = (raw, value)
        return value

    def store(self, key: str, value: Any, encode: Callable[[Any], str]) -> None:
        """Store a decoded state value (encoded with ``encode``) and share it (:meth:`load`)."""
        raw = encode(value)
        self.ctx.kv.set(key, raw)
        self.ctx.decoded[key] = (raw, value)

    def schedule(self, parts: tuple[str, ...], at: float) -> None:
        """Call :meth:`on_timer` with ``parts`` once the watermark reaches ``at``
        (replaces the timer's previous time)."""
        self.ctx.kv.zadd(sk.DUE, sk.timer_member(self.name, *parts), at)

    def cancel(self, parts: tuple[str, ...]) -> None:
        self.ctx.kv.zrem(sk.DUE, sk.timer_member(self.name, *parts))

    def alert_state(self, aid: str) -> dict[str, Any] | None:
        """The latest value of an alert (its last message), or None."""
        raw = self.ctx.kv.get(sk.alert(aid))
        value: dict[str, Any] | None = json.loads(raw) if raw else None
        return value

    def alert(self, aid: str, status: str, ident: Identity, record_ids: list[str],
              prob: float | None, explanation: dict[str, Any], raised_at: str | None,
              **extra: Any) -> Out:
        """An alert message of this rule about ``ident`` (evidence: ``record_ids``)."""
        value = {
            "alert_id": aid, "rule": self.name, "status": status,
            "person_id": ident.person_id,
            "record_ids": [r.split(":", 1)[1] for r in record_ids],
            "evidence": record_ids, **extra,
            "match_probability": prob, "explanation": explanation, "raised_at": raised_at,
            "rule_version": self.version, "model": self.ctx.linker.model_id,
        }
        return self.update_alert(value)

    def update_alert(self, value: dict[str, Any]) -> Out:
        """Store an alert's new value and emit it (through the outbox)."""
        self.ctx.kv.set(sk.alert(value["alert_id"]), json.dumps(value, ensure_ascii=False))
        self.ctx.metrics.alerts.labels(self.name, value["status"]).inc()
        return self.ctx.outbox.keep(Out("alerts", value["alert_id"], value))
