"""The state schema: every key family of the state store, the timer member format, the
layout version and the typed codecs of the rule state.

Every key is pseudonymous (person ids, record keys, HMAC-ed blocking keys). A family is
named here once; code builds keys with these functions and constants, never with its own
f-strings, so a reader finds the whole store in this module.

Identity store (:mod:`reglink.stores.identity`):
  ``i:<person_id>``   the identity (positional JSON, see ``identity._dump``)
  ``m:<person_id>``   the person id it was merged into
  ``l:<record key>``  the person id a record linked to
  ``b:<blocking key>`` set of person ids (on Redis: a field of a bucket hash, see
                      ``reglink.stores.kv.index_location``)
  ``n:identities``    live identity count (approximate across writers)

Watchlist index: the same families under the namespace ``wl/`` (``wl/i:``, ``wl/b:``, ...).

Rule state (:mod:`reglink.core.rules`):
  ``s:<person_id>``   stays of ``unregistered_stay`` (:class:`StayState` per prefecture)
  ``rg:<person_id>``  residence registrations and deregistrations of a person, every
                      prefecture (:class:`ResidenceLedger`): ``stale_registration``
                      keeps it, ``unregistered_stay`` reads the closures from it
  ``a:<alert_id>``    latest value of an alert (its last message)
  ``w:<watch_id>``    a watch entry (:class:`WatchEntry`)
  ``wp:<watch_id>``   set: person ids the entry names
  ``wa:<watch_id>``   set: alert ids the entry raised
  ``we:<person_id>``  which record supplied each feature value of an identity (JSON, value
                      token -> [first record key, records]): ``watchlist_match`` names them
  ``wk``              set: every blocking key some watch entry is indexed under
  ``wv``              token of the additions to ``wk`` (changes with every entry added)
  ``due``             sorted set of rule timers (:func:`timer_member`), score = when due
  ``sup:<alert_id>``  a reviewer's dismissal of the pair behind an alert
  ``misused``         set: person ids whose identity a reviewer marked misused
  ``pc:<person_id>``  what a person adds to the population statistics (``population``):
                      day ranges per (prefecture, measure)
  ``pp:<prefecture>`` the prefecture's population counts: what each block of days of
                      ``pb:`` changes them by (``population``)
  ``pb:<prefecture>:<block>`` the changes of the counts on each day of one block of days
  ``pps``             set: every prefecture with population counts

Source quality (:mod:`reglink.core.quality`; counts, no person data):
  ``q:<source>:<organisation>``  the organisation's counters (JSON)
  ``qc:<digest>``     an open hotel check-in (source, hotel, person id, time, whether the
                      record had a problem); digest of the record key
  ``qo:<digest>``     set: the digests of a hotel's open check-ins; digest of
                      ``<source>:<hotel>``
  ``qdl:<digest>``    a dead letter already counted (digest of source, origin and reason)
  ``qd``              set: ``<source>:<organisation>`` whose report changed since it was sent
  ``qs:<source>:<organisation>``  when its report was last sent (epoch s) and its outbox id
                      (JSON; the worker only)

Pipeline:
  ``wm``              the event-time watermark (JSON)
  ``outbox``          sorted set of outbox ids awaiting delivery (score = the id)
  ``o:<outbox id>``   one undelivered message ``[topic, key, value]``
  ``n:outbox``        outbox id counter
  ``layout``          :data:`LAYOUT` of the store
  ``model``           the features the store's identities are matched on
                      (:attr:`FSModel.features <matchers.model.FSModel.features>`,
                      :func:`ensure_model`)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import starmap
from typing import Any

import msgspec

from matchers import fastjson
from matchers.model import ModelError
from matchers.types import PersonRecord

#: The layout this version reads and writes: packed blocking-index buckets, positional
#: identities, rule timers tagged with the rule's name. Stored under :data:`LAYOUT_KEY`.
LAYOUT = "3"
LAYOUT_KEY = "layout"
#: The features (and their comparators) of the model the store's workers match with.
MODEL_KEY = "model"

IDENTITY = "i:"
MERGED = "m:"
LINK = "l:"
BLOCKING = "b:"
STAYS = "s:"
RESIDENCES = "rg:"
ALERT = "a:"
WATCH_ENTRY = "w:"
WATCH_NAMED = "wp:"
WATCH_ALERTS = "wa:"
WATCH_EVIDENCE = "we:"
OUTBOX_MESSAGE = "o:"
SUPPRESSION = "sup:"
POPULATION = "pc:"
POPULATION_COUNTS = "pp:"
POPULATION_BLOCK = "pb:"
QUALITY = "q:"
QUALITY_CHECKIN = "qc:"
QUALITY_OPEN = "qo:"
QUALITY_DEADLETTER = "qdl:"
QUALITY_SENT = "qs:"

IDENTITY_COUNT = "n:identities"
OUTBOX_COUNTER = "n:outbox"
OUTBOX = "outbox"
WATERMARK = "wm"
DUE = "due"
WATCH_KEYS = "wk"
WATCH_KEYS_TOKEN = "wv"
MISUSED = "misused"
POPULATION_PREFECTURES = "pps"
QUALITY_DIRTY = "qd"
#: Namespace of the watchlist index (identity-store families under it).
WATCH_NS = "wl/"


def identity(person_id: str) -> str:
    return IDENTITY + person_id


def merged(person_id: str) -> str:
    return MERGED + person_id


def link(record_key: str) -> str:
    return LINK + record_key


def blocking(key: str) -> str:
    return BLOCKING + key


def stays(person_id: str) -> str:
    return STAYS + person_id


def residences(person_id: str) -> str:
    return RESIDENCES + person_id


def alert(alert_id: str) -> str:
    return ALERT + alert_id


def watch_entry(watch_id: str) -> str:
    return WATCH_ENTRY + watch_id


def watch_named(watch_id: str) -> str:
    return WATCH_NAMED + watch_id


def watch_alerts(watch_id: str) -> str:
    return WATCH_ALERTS + watch_id


def watch_evidence(person_id: str) -> str:
    return WATCH_EVIDENCE + person_id


def outbox_message(oid: str) -> str:
    return OUTBOX_MESSAGE + oid


def suppression(alert_id: str) -> str:
    return SUPPRESSION + alert_id


def population(person_id: str) -> str:
    return POPULATION + person_id


def population_counts(prefecture: str) -> str:
    return POPULATION_COUNTS + prefecture


def population_block(prefecture: str, block: int) -> str:
    return f"{POPULATION_BLOCK}{prefecture}:{block}"


def quality(org_key: str) -> str:
    return QUALITY + org_key


def quality_checkin(digest: str) -> str:
    return QUALITY_CHECKIN + digest


def quality_open(digest: str) -> str:
    return QUALITY_OPEN + digest


def quality_deadletter(digest: str) -> str:
    return QUALITY_DEADLETTER + digest


def quality_sent(org_key: str) -> str:
    return QUALITY_SENT + org_key


def watch_index(key: str) -> str:
    """A key of the identity-store families inside the watchlist namespace."""
    return WATCH_NS + key


# ------------------------------------------------------------------ timers
TIMER_SEP = "|"


def timer_member(rule: str, *parts: str) -> str:
    """The member of :data:`DUE` for one timer of ``rule``: ``<rule>|<part>|...``."""
    return TIMER_SEP.join((rule, *parts))


def parse_timer(member: str) -> tuple[str, tuple[str, ...]]:
    """``(rule, parts)`` of a :data:`DUE` member."""
    rule, *parts = member.split(TIMER_SEP)
    return rule, tuple(parts)


# ------------------------------------------------------------------ stays (unregistered_stay)
# Presence, Registered and PendingCheckout are msgspec structs: built once per stored
# interval on every decode of a person's stays (twice per record), they cost half what a
# slotted dataclass does, and they hold only strings and numbers, so the garbage collector
# does not track them (``gc=False``). Times are ``int | float`` so that a number is written
# back exactly as it was read (an int stays an int).
Number = int | float


class Presence(msgspec.Struct, array_like=True, gc=False):
    """Evidence that places the person in the prefecture from ``start`` (epoch s) to ``end``
    (None: open), owing registration ``grace`` seconds after ``start``. ``hotel``: the hotel
    id of a check-in (matched with its check-out), else None. ``revised``: for a source
    whose later records revise an interval, the report time of the record its ``end`` comes
    from (stored only when set)."""

    key: str
    start: Number
    end: Number | None
    grace: Number
    hotel: str | None = None
    revised: Number | None = None  # report time of the record that set ``end`` (revisable)


class Registered(msgspec.Struct, array_like=True, gc=False):
    """A residence registration: registered at, valid from, end of its last valid day."""

    key: str
    registered_at: Number
    valid_from: Number
    valid_until_end: Number


class PendingCheckout(msgspec.Struct, array_like=True, gc=False):
    """A hotel check-out read before its check-in."""

    key: str
    hotel: str | None
    at: Number


@dataclass(slots=True)
class StayState:
    """What ``unregistered_stay`` knows of one person in one prefecture.

    ``explanations``: record key -> (match probability, explanation) of the evidence.
    ``alerts``: the ids of its alerts whose last status is ``raised`` or ``resolved`` (stored
    only when there are some), so that one the data no longer raises can be withdrawn.
    ``closed``: check-outs already matched with a check-in; ``pending``: check-outs waiting
    for theirs. Both are stored only once needed (None until then); ``tail`` is the order in
    which they were first needed, which is the order they are stored in."""

    intervals: list[Presence] = field(default_factory=list)
    registrations: list[Registered] = field(default_factory=list)
    explanations: dict[str, list[Any]] = field(default_factory=dict)
    closed: list[str] | None = None
    pending: list[PendingCheckout] | None = None
    tail: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)

    def closed_list(self) -> list[str]:
        if self.closed is None:
            self.closed = []
            self.tail.append("closed")
        return self.closed

    def pending_list(self) -> list[PendingCheckout]:
        if self.pending is None:
            self.pending = []
            self.tail.append("co")
        return self.pending

    def keys(self) -> set[str]:
        """Record keys this state already holds (evidence, registrations, check-outs)."""
        known = {iv.key for iv in self.intervals}
        for r in self.registrations:
            known.add(r.key)
        if self.pending:
            for c in self.pending:
                known.add(c.key)
        return known

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "iv": [[iv.key, iv.start, iv.end, iv.grace, iv.hotel] if iv.revised is None
                   else [iv.key, iv.start, iv.end, iv.grace, iv.hotel, iv.revised]
                   for iv in self.intervals],
            "reg": [[r.key, r.registered_at, r.valid_from, r.valid_until_end]
                    for r in self.registrations],
            "ex": self.explanations,
        }
        if self.alerts:
            d["al"] = self.alerts
        for name in self.tail:
            if name == "closed":
                d["closed"] = self.closed
            else:
                d["co"] = [[c.key, c.hotel, c.at] for c in self.pending or ()]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StayState:
        """A stored state: ``iv``, ``reg`` and ``ex`` always, then ``closed`` and ``co``
        when they were needed (in that order of need)."""
        state = cls(list(starmap(Presence, d["iv"])), list(starmap(Registered, d["reg"])),
                    d["ex"])
        if len(d) > 3:
            for name, value in d.items():
                if name == "closed":
                    state.closed = value
                    state.tail.append(name)
                elif name == "co":
                    state.pending = list(starmap(PendingCheckout, value))
                    state.tail.append(name)
                elif name == "al":
                    state.alerts = value
        return state


class Stays:
    """The value of :func:`stays`: prefecture -> :class:`StayState`, in stored order.

    A prefecture's state is decoded the first time it is asked for: a record touches one
    prefecture, and the others go back to the store as they were read."""

    __slots__ = ("_by_pref",)

    def __init__(self, stored: dict[str, dict[str, Any]] | None = None) -> None:
        by_pref: dict[str, StayState | dict[str, Any]] = {}
        if stored is not None:
            by_pref = stored  # type: ignore[assignment]  # values are decoded in place
        self._by_pref = by_pref

    def get(self, pref: str) -> StayState | None:
        ps = self._by_pref.get(pref)
        if ps is None or isinstance(ps, StayState):
            return ps
        state = self._by_pref[pref] = StayState.from_json(ps)
        return state

    def __getitem__(self, pref: str) -> StayState:
        state = self.get(pref)
        if state is None:
            raise KeyError(pref)
        return state

    def __setitem__(self, pref: str, state: StayState) -> None:
        self._by_pref[pref] = state

    def __contains__(self, pref: object) -> bool:
        return pref in self._by_pref

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_pref)

    def __len__(self) -> int:
        return len(self._by_pref)

    def keys(self) -> list[str]:
        return list(self._by_pref)

    def items(self) -> list[tuple[str, StayState]]:
        return [(pref, self[pref]) for pref in self._by_pref]

    def values(self) -> list[StayState]:
        return [self[pref] for pref in self._by_pref]

    def to_json(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for pref, ps in self._by_pref.items():
            out[pref] = ps.to_json() if isinstance(ps, StayState) else ps
        return out


def decode_stays(raw: str | bytes | None) -> Stays:
    """The value of :func:`stays` (empty when absent)."""
    return Stays(fastjson.loads(raw)) if raw else Stays()


def encode_stays(states: Stays) -> str:
    return fastjson.dumps(states.to_json())


# ------------------------------------------------------------------ residence ledger
@dataclass(slots=True)
class ResidenceRegistration:
    """A registration in prefecture ``pref``: recorded at, valid from, end of its last
    valid day (epoch s); ``permit``: pseudonym of its permit number, or None."""

    key: str
    pref: str
    registered_at: float
    valid_from: float
    valid_until_end: float
    permit: str | None = None


@dataclass(slots=True)
class Deregistration:
    """A deregistration recorded at ``registered_at`` in ``pref``: the person left at
    ``left_at`` (00:00 CST of ``left_on``); ``permit``: pseudonym of the permit number it
    names, or None (it ends the person's registrations in ``pref``)."""

    key: str
    pref: str
    registered_at: float
    left_at: float
    permit: str | None = None


@dataclass(slots=True)
class ResidenceLedger:
    """The value of :func:`residences`: a person's registrations and deregistrations, and
    the (match probability, explanation) of each record, by record key."""

    registrations: list[ResidenceRegistration] = field(default_factory=list)
    deregistrations: list[Deregistration] = field(default_factory=list)
    explanations: dict[str, list[Any]] = field(default_factory=dict)

    def keys(self) -> set[str]:
        return ({r.key for r in self.registrations}
                | {d.key for d in self.deregistrations})

    def to_json(self) -> dict[str, Any]:
        return {
            "reg": [[r.key, r.pref, r.registered_at, r.valid_from, r.valid_until_end, r.permit]
                    for r in self.registrations],
            "dereg": [[d.key, d.pref, d.registered_at, d.left_at, d.permit]
                      for d in self.deregistrations],
            "ex": self.explanations,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ResidenceLedger:
        return cls([ResidenceRegistration(*r) for r in d.get("reg", ())],
                   [Deregistration(*x) for x in d.get("dereg", ())], d.get("ex", {}))


def decode_residences(raw: str | bytes | None) -> ResidenceLedger:
    """The value of :func:`residences` (empty when absent)."""
    return ResidenceLedger.from_json(fastjson.loads(raw)) if raw else ResidenceLedger()


def encode_residences(ledger: ResidenceLedger) -> str:
    return fastjson.dumps(ledger.to_json())


# ------------------------------------------------------------------ watch entries
@dataclass(slots=True)
class WatchEntry:
    """A watchlist entry as stored (:func:`watch_entry`): its normalised person, priority,
    last valid day, and whether it is still on the list."""

    rec: PersonRecord
    priority: str | None = None
    valid_until: str | None = None
    active: bool = True

    def encode(self) -> str:
        return json.dumps({"rec": dataclasses.asdict(self.rec), "priority": self.priority,
                           "valid_until": self.valid_until, "active": self.active},
                          ensure_ascii=False)

    @classmethod
    def decode(cls, raw: str) -> WatchEntry:
        d = json.loads(raw)
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in d["rec"].items()}
        rec = PersonRecord(**fields)
        return cls(rec, d.get("priority"), d.get("valid_until"), bool(d.get("active")))


def ensure_model(kv: Any, features: str, model_id: str, force: bool = False) -> None:
    """Mark a store with the features of the model its workers match with (:data:`MODEL_KEY`),
    or check the mark: a worker whose model weighs other features (or grades one with another
    comparator) would link the same records differently from the workers already on the
    store, so it is refused with :class:`~matchers.model.ModelError` (one line). A store
    without the mark takes this model's. ``force``: mark it anyway (a ``reglink rebuild
    --force`` writing over it). ``kv``: anything with ``get`` and ``set`` of strings."""
    got = kv.get(MODEL_KEY)
    if got == features:
        return
    if got is None or force:
        kv.set(MODEL_KEY, features)
        return
    raise ModelError(f"model {model_id} matches on {features}, but this store's identities are "
                     f"matched on {got}: use a model with those features, or rebuild the store "
                     "with this model into an empty prefix (reglink rebuild --prefix)")
