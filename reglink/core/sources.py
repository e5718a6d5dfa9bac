"""The source registry: one frozen declaration per input source.

Every per-source fact lives here, and the rest of reglink derives from it:

* :mod:`reglink.core.topics` -- the ``<source>.raw`` topics, in declaration order;
* :mod:`reglink.core.contract` -- the schema each source is validated against
  (``reglink/schemas/<name>.json``), the report time, the date periods that must not run
  backwards (the presence periods below);
* :mod:`reglink.core.rules.merge` -- the canonical order of records with equal report times (rank);
* the watermark -- the sources that move it (``event``);
* ``reglink publish --source`` -- the CLI choices;
* :mod:`reglink.kafka_auth` -- one ``connector-<name>`` principal per source and its ACLs;
* the review console -- the fields shown per source and the evidence timeline;
* :mod:`reglink.sim.simulate` -- one output file per source.

docker-compose.yml cannot import Python; ``tests/unit/test_compose_consistency.py`` checks
that its principals, secrets and publish loop name exactly the sources registered here.

Adding a source takes one :class:`Source` in :data:`DECLARED`, its JSON schema
``reglink/schemas/<name>.json`` and its part of the simulator (:mod:`reglink.sim.events`).
Two written-out lists must then name it too, and tests say so when they do not: the
``source`` enum of the published output schema ``reglink/schemas/linked.json``
(``tests/unit/test_sources.py``) and docker-compose.yml.

:func:`registered` adds declarations for the duration of a ``with`` block. Everything above
reads the registry in force when it runs (:data:`NAMES` and :data:`EVENT_NAMES` are live views
of it), so a source added that way gets its topic, its contract checks and its CLI choice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, overload

from reglink.core.rules.clock import day_end, day_start, iso, ts


# --- presence: how a record places a person in a prefecture ------------------------------
# The unregistered_stay rule (docs/contract.md §2) builds presence intervals per person and
# prefecture and looks for a residence registration that covers them. These descriptors say,
# per source, which fields make an interval (or a registration); the helpers turn a valid
# record into epoch seconds with the same arithmetic as the rule (reglink.core.rules.clock).
@dataclass(frozen=True)
class CheckInOut:
    """Presence from paired events: a ``check_in`` opens an interval at ``time``; the
    matching ``check_out`` (same ``venue``, at or after it) closes it."""

    kind: ClassVar[Literal["check_in_out"]] = "check_in_out"
    time: str
    event: str
    opens: str
    closes: str
    venue: str
    grace: str  # the Settings attribute with the grace period, in seconds

    def mark(self, record: dict[str, Any]) -> tuple[bool, str | None, float]:
        """``(opens, venue, at)``: whether the record opens (else closes) an interval, at
        which venue, at what instant (epoch seconds)."""
        return record[self.event] == self.opens, record.get(self.venue), ts(record[self.time])

    def grace_s(self, settings: Any) -> float:
        grace: float = getattr(settings, self.grace)
        return grace


@dataclass(frozen=True)
class DateInterval:
    """Presence from civil dates (CST): from 00:00 of ``start`` to the end of ``end``
    (00:00 of the next day). Open-ended when ``end`` is None or the record lacks it.

    ``revised_at``: the report-time field of a source whose later records may revise an
    interval (same record key, later report time, an ``end``); None: a repeated key is a
    duplicate. :meth:`revision` says whether a repeated record revises the stored one."""

    kind: ClassVar[Literal["date_interval"]] = "date_interval"
    start: str
    end: str | None
    grace: str  # the Settings attribute with the grace period, in seconds
    revised_at: str | None = None

    def interval(self, record: dict[str, Any]) -> tuple[float, float | None]:
        """``(start_ts, end_ts or None)`` in epoch seconds."""
        end = record.get(self.end) if self.end is not None else None
        return day_start(record[self.start]), day_end(end) if end else None

    def revision(self, record: dict[str, Any]) -> float | None:
        """The report time (epoch s) at which ``record`` states the interval's end, when it
        is a record that can revise an interval (its source takes revisions and it has an
        end); else None."""
        if self.revised_at is None or self.end is None or not record.get(self.end):
            return None
        return ts(record[self.revised_at])

    def grace_s(self, settings: Any) -> float:
        grace: float = getattr(settings, self.grace)
        return grace


@dataclass(frozen=True)
class Registration:
    """Not presence: a residence registration made at ``at``, valid from 00:00 of
    ``valid_from`` to the end of ``valid_until``. It answers presence; it has no grace.

    A record whose ``action`` is ``deregister`` is a deregistration instead: recorded at
    ``at``, the person left on ``left_on`` (default: the date of ``at``); it names the
    registration it ends by ``permit`` or, without one, ends the person's registrations in
    its prefecture (docs/contract.md §1.2)."""

    kind: ClassVar[Literal["registration"]] = "registration"
    at: str
    valid_from: str
    valid_until: str
    action: str | None = None
    deregister: str = "deregister"
    left_on: str | None = None
    permit: str | None = None

    def period(self, record: dict[str, Any]) -> tuple[float, float, float]:
        """``(registered_ts, valid_from_ts, valid_until_end_ts)`` in epoch seconds."""
        return (ts(record[self.at]), day_start(record[self.valid_from]),
                day_end(record[self.valid_until]))

    def is_deregistration(self, record: dict[str, Any]) -> bool:
        return self.action is not None and record.get(self.action) == self.deregister

    def departure(self, record: dict[str, Any]) -> tuple[float, float]:
        """A deregistration's ``(registered_ts, left_ts)``: when it was recorded and 00:00
        (CST) of the day the person left, from which the registration counts as closed."""
        at = record[self.at]
        left = record.get(self.left_on) if self.left_on is not None else None
        return ts(at), day_start(left) if left else _cst_midnight(ts(at))

    def permit_of(self, record: dict[str, Any]) -> str | None:
        return record.get(self.permit) if self.permit is not None else None


Presence = CheckInOut | DateInterval | Registration


def _cst_midnight(epoch: float) -> float:
    """00:00 (CST) of the day of an instant."""
    return day_start(iso(epoch)[:10])


@dataclass(frozen=True)
class Organisation:
    """The organisation a record is reported for: ``record[field]``, or its first ``digits``
    characters (a prefecture is the first 4 digits of a ``city_code``)."""

    field: str
    digits: int | None = None

    def of(self, record: dict[str, Any]) -> str | None:
        value = record.get(self.field)
        if value is None:
            return None
        return str(value)[:self.digits] if self.digits is not None else str(value)


# --- the declaration ------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """Everything reglink needs to know about one input source."""

    name: str
    rank: int  # canonical order among records with equal report times (lowest first)
    report_time: str | None  # the field with the instant the source learned of the record
    event: bool  # its report times move the watermark
    presence: Presence | None
    organisation: Organisation | None
    console_fields: tuple[str, ...]  # what a reviewer sees of a record, in this order
    id_field: str = "record_id"  # the record's key within the source
    schema_dir: Path | None = None  # where ``<name>.json`` lives; None: reglink/schemas

    @property
    def schema_file(self) -> str:
        return f"{self.name}.json"

    @property
    def topic(self) -> str:
        """The raw topic's name, without the deployment's prefix."""
        return f"{self.name}.raw"

    @property
    def principal(self) -> str:
        """The Kafka principal of this source's connector."""
        return f"connector-{self.name}"


DECLARED: tuple[Source, ...] = (
    Source(
        name="hotel", rank=2, report_time="time", event=True,
        presence=CheckInOut(time="time", event="event", opens="check_in", closes="check_out",
                            venue="hotel_id", grace="grace_hotel_s"),
        organisation=Organisation("hotel_id"),
        console_fields=("event", "hotel_name", "hotel_id", "city_code", "room", "time"),
    ),
    Source(
        name="rental", rank=3, report_time="registered_at", event=True,
        presence=DateInterval(start="lease_start", end="lease_end", grace="grace_rental_s"),
        organisation=Organisation("property_id"),
        console_fields=("city_code", "address", "lease_start", "lease_end", "registered_at"),
    ),
    Source(
        name="residence", rank=4, report_time="registered_at", event=True,
        presence=Registration(at="registered_at", valid_from="valid_from",
                              valid_until="valid_until", action="action",
                              deregister="deregister", left_on="left_on", permit="permit_no"),
        organisation=Organisation("city_code", digits=4),
        console_fields=("action", "permit_no", "city_code", "address", "registered_at",
                        "valid_from", "valid_until", "left_on"),
    ),
    Source(
        # A job lasts from start_date to the end of end_date, open-ended while no end_date
        # is known; a later record of the same job (later posted_at) with an end_date
        # revises it (docs/contract.md §1.2, job updates).
        name="job", rank=5, report_time="posted_at", event=True,
        presence=DateInterval(start="start_date", end="end_date", grace="grace_job_s",
                              revised_at="posted_at"),
        organisation=Organisation("employer_id"),
        console_fields=("employer_name", "city_code", "start_date", "end_date", "posted_at"),
    ),
    Source(
        name="watchlist", rank=1, report_time=None, event=False, presence=None,
        organisation=None, console_fields=("action", "priority", "reason", "valid_until"),
        id_field="watch_id",
    ),
    Source(
        name="person", rank=0, report_time=None, event=False, presence=None,
        organisation=None, console_fields=("city_code", "address"),
    ),
)


class Registry:
    """An immutable, ordered set of source declarations (declaration order is topic order)."""

    def __init__(self, declarations: Sequence[Source]) -> None:
        by_name: dict[str, Source] = {}
        ranks: dict[int, str] = {}
        for s in declarations:
            if s.name in by_name:
                raise ValueError(f"source {s.name!r} declared twice")
            if s.rank in ranks:
                raise ValueError(f"sources {ranks[s.rank]!r} and {s.name!r} share rank {s.rank}")
            if s.event and s.report_time is None:
                raise ValueError(f"event source {s.name!r} needs a report_time field")
            by_name[s.name] = s
            ranks[s.rank] = s.name
        self._by_name = by_name
        self.names: tuple[str, ...] = tuple(by_name)
        self.event_names: tuple[str, ...] = tuple(s.name for s in declarations if s.event)
        self.ranks: dict[str, int] = {s.name: s.rank for s in declarations}

    def __iter__(self) -> Iterator[Source]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Source:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"unknown source {name!r}; expected one of "
                           f"{', '.join(self.names)}") from None

    def get(self, name: str) -> Source | None:
        return self._by_name.get(name)

    def adding(self, *declarations: Source) -> Registry:
        """A new registry: these declarations after the present ones."""
        return Registry((*self, *declarations))


_current = Registry(DECLARED)


def current() -> Registry:
    """The registry in force."""
    return _current


@contextmanager
def registered(*declarations: Source) -> Iterator[Registry]:
    """Add ``declarations`` to the registry for the duration of the block."""
    global _current
    before = _current
    _current = before.adding(*declarations)
    try:
        yield _current
    finally:
        _current = before


class _Names(Sequence[str]):
    """The names of the registered sources (``events``: the event sources only), in
    declaration order, read from the registry in force at each use."""

    def __init__(self, events: bool) -> None:
        self._events = events

    def _names(self) -> tuple[str, ...]:
        return _current.event_names if self._events else _current.names

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...
    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        return self._names()[i]

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, name: object) -> bool:
        return name in (_current.event_names if self._events else _current.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __repr__(self) -> str:
        return repr(self._names())


NAMES: Sequence[str] = _Names(events=False)
"""Every source, in declaration order (the order of the raw topics)."""
EVENT_NAMES: Sequence[str] = _Names(events=True)
"""The sources whose report times move the watermark."""


def rank(name: str, default: int = 9) -> int:
    """The merge rank of ``name`` (``default`` for a name no source has)."""
    return _current.ranks.get(name, default)


def graces(settings: Any) -> dict[str, float]:
    """The grace period (seconds) of every source that gives presence, by source name."""
    return {s.name: s.presence.grace_s(settings) for s in _current
            if isinstance(s.presence, CheckInOut | DateInterval)}
