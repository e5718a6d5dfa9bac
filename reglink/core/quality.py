"""Source quality reports (docs/contract.md §3.5): how well each reporting organisation reports.

An organisation is what a source declares (:attr:`reglink.core.sources.Source.organisation`):
a hotel by ``hotel_id``, a landlord or property by ``property_id``, an employer by
``employer_id``, a registration office by the prefecture (first four digits of
``city_code``) for ``residence``. Sources without one (``watchlist``, ``person``) and records
that do not name theirs (a job without ``employer_id``) are not counted.

:class:`SourceQuality` is a plug-in on the rule interface (:class:`AlertRule`): the pipeline
calls it after the alert rules, in the unit of work of the record, and it keeps one small
JSON object of counters per organisation in the state store (``q:<source>:<organisation>``,
:mod:`reglink.stores.schema`). It emits nothing from its record hooks, so the alerts and
links of a run do not depend on it. Per organisation it counts:

* ``received``: records attributed to it, linked or dead-lettered. A record key counts once:
  a re-delivery, or a later update of the same job (``link.repeated``), is not a new record;
* ``linked`` and ``joined_existing`` (linked to an identity that existed before the record);
* ``deadlettered`` and ``deadletter_reasons`` (by reason code, e.g. ``bad_date``);
* ``quality_flags``: linked records per flag of :data:`matchers.features.QUALITY_FLAGS` (ID
  numbers failing their checksum are ``bad_checksum``); ``flagged``: records with any flag
  but ``upgraded_15`` (a legacy 15-digit ID is a valid number);
* ``without_id_number``: linked records whose person block has no ID number (absent or blank);
* ``late_reports``: records reported more than the source's grace period after the end of the
  day they report (:func:`reported_day`); ``None`` for a source with no such day (a hotel
  reports the instant of the check-in itself);
* ``checkins`` and ``checkins_without_checkout`` (hotels only): a check-in that no check-out
  of the same person at the same hotel follows within :data:`CHECKOUT_WINDOW_S`. It is
  decided by a timer at the check-in time plus the window, when the watermark passes it;
* ``with_problem``: received records with any problem: dead-lettered, flagged, without an ID
  number, late, or a check-in without a check-out (each record once).

**Dead letters.** Both the connector (the contract check before publishing) and a worker (a
record that fails in the core) dead-letter records, and both write them to the
``deadletter`` topic. The count is made where a dead letter is read back from that topic (the
worker consumes it) or, in replay, where replay dead-letters a line: one function,
:meth:`SourceQuality.on_dead_letter`, on the dead-letter message, so replay and stream count
the same dead letters. The organisation is read from the message's original text when that is
a JSON object naming it (a CSV line, or a line that is no JSON, names none and is not
counted). A dead letter is counted once per (source, origin, reason), so a re-delivered one is
not counted twice.

**Reports.** :func:`report` turns the counters into the published object (counts and rates,
no person data: no names, ID numbers, record ids or person ids). Replay writes the final
report of every organisation (:func:`final_reports`); the worker sends the report of each
organisation that changed, at most once per ``every`` seconds, through the outbox
(:meth:`SourceQuality.reports_due`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from matchers import fastjson
from matchers.features import QUALITY_FLAGS
from reglink.core import sources
from reglink.core.outbox import Out
from reglink.core.rules.base import AlertRule, LinkedRecord, RuleContext
from reglink.core.rules.clock import day_end
from reglink.stores import schema as sk
from reglink.stores.kv_api import KeyValue

NAME = "source_quality"
TOPIC = "quality"
#: A hotel check-in without a check-out of the same guest at the same hotel this long after
#: it counts as a check-in without a check-out.
CHECKOUT_WINDOW_S = 30 * 86400
#: Flags that are no problem of the report: a legacy 15-digit ID is a valid number.
NOT_A_PROBLEM = frozenset({"upgraded_15"})

COUNTERS = ("received", "linked", "joined_existing", "deadlettered", "flagged",
            "without_id_number", "late_reports", "checkins", "checkins_without_checkout",
            "with_problem")


def new_state(source: str, organisation: str) -> dict[str, Any]:
    """The counters of an organisation that has reported nothing yet."""
    return {"source": source, "organisation": organisation, **dict.fromkeys(COUNTERS, 0),
            "deadletter_reasons": {}, "quality_flags": {}}


def organisation_of(source: str, record: dict[str, Any]) -> str | None:
    """The organisation ``record`` of ``source`` is reported for, if it names one: a string or
    a number, not blank; for an organisation of leading digits (a prefecture), digits."""
    src = sources.current().get(source)
    if src is None or src.organisation is None:
        return None
    value = record.get(src.organisation.field)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    org = src.organisation.of(record)
    if org is None or not org.strip():
        return None
    digits = src.organisation.digits
    if digits is not None and (len(org) != digits or not org.isdigit()):
        return None
    return org


def reported_day(source: str, record: dict[str, Any], settings: Any
                 ) -> tuple[str, float] | None:
    """``(day, grace_s)``: the civil date a record reports and the grace period its source
    has to report it, from the source's presence declaration; None when the source reports
    no day. A period (rental, job) reports its start (``lease_start``, ``start_date``) with the
    source's grace; a residence registration its ``valid_from``, with none; a deregistration
    its ``left_on``, with the deregistration grace (``grace_deregistration_s``)."""
    src = sources.current().get(source)
    presence = src.presence if src is not None else None
    if isinstance(presence, sources.DateInterval):
        day = record.get(presence.start)
        return (day, presence.grace_s(settings)) if isinstance(day, str) else None
    if isinstance(presence, sources.Registration):
        if presence.is_deregistration(record):
            left = record.get(presence.left_on) if presence.left_on else None
            grace = float(settings.grace_deregistration_s)
            return (left, grace) if isinstance(left, str) else None
        day = record.get(presence.valid_from)
        return (day, 0.0) if isinstance(day, str) else None
    return None


def reports_days(source: str) -> bool:
    """Whether records of ``source`` report a day (:func:`reported_day`)."""
    src = sources.current().get(source)
    return src is not None and isinstance(src.presence, sources.DateInterval | sources.Registration)


def checks_in(source: str) -> bool:
    """Whether records of ``source`` check guests in and out (hotels)."""
    src = sources.current().get(source)
    return src is not None and isinstance(src.presence, sources.CheckInOut)


def _rate(n: int, of: int) -> float | None:
    return round(n / of, 4) if of else None


def report(state: dict[str, Any]) -> dict[str, Any]:
    """The published report of one organisation (``quality.json``): its counts and rates."""
    source = state["source"]
    flags = state["quality_flags"]
    received, linked = state["received"], state["linked"]
    hotel = checks_in(source)
    late = state["late_reports"] if reports_days(source) else None
    checkins = state["checkins"] if hotel else None
    without = state["checkins_without_checkout"] if hotel else None
    return {
        "source": source,
        "organisation": state["organisation"],
        "received": received,
        "linked": linked,
        "joined_existing": state["joined_existing"],
        "deadlettered": state["deadlettered"],
        "deadletter_reasons": dict(sorted(state["deadletter_reasons"].items())),
        "quality_flags": {f: flags.get(f, 0) for f in QUALITY_FLAGS},
        "flagged": state["flagged"],
        "without_id_number": state["without_id_number"],
        "late_reports": late,
        "checkins": checkins,
        "checkins_without_checkout": without,
        "with_problem": state["with_problem"],
        "rates": {
            "problem": _rate(state["with_problem"], received),
            "deadlettered": _rate(state["deadlettered"], received),
            "flagged": _rate(state["flagged"], linked),
            "bad_checksum": _rate(flags.get("bad_checksum", 0), linked),
            "without_id_number": _rate(state["without_id_number"], linked),
            "late": _rate(late, linked) if late is not None else None,
            "without_checkout": _rate(without, checkins) if checkins is not None and
            without is not None else None,
            "joined_existing": _rate(state["joined_existing"], linked),
        },
    }


def worst_first(reports: Iterable[dict[str, Any]], min_received: int = 20
                ) -> list[dict[str, Any]]:
    """Reports ranked worst first: the highest share of received records with any problem
    (``rates.problem``), then the most such records, then source and organisation. Only
    organisations with at least ``min_received`` records are ranked (a share of a handful
    says little); the others follow, in the same order."""
    def key(r: dict[str, Any]) -> tuple[bool, float, int, str, str]:
        return (r["received"] < min_received, -(r["rates"]["problem"] or 0.0),
                -r["with_problem"], r["source"], r["organisation"])
    return sorted(reports, key=key)


def final_reports(kv: KeyValue) -> list[dict[str, Any]]:
    """Every organisation's report from a committed store, by source and organisation."""
    keys = sorted(kv.scan(sk.QUALITY))
    states = [fastjson.loads(raw) for raw in kv.mget(keys) if raw]
    return [report(s) for s in sorted(states, key=lambda s: (s["source"], s["organisation"]))]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


_OPEN_SETS: dict[tuple[str, str], str] = {}  # (source, hotel) -> its open check-ins' key


def _open_set(source: str, hotel: str) -> str:
    key = _OPEN_SETS.get((source, hotel))
    if key is None:
        if len(_OPEN_SETS) >= 100_000:
            _OPEN_SETS.clear()
        key = _OPEN_SETS[source, hotel] = sk.quality_open(_digest(f"{source}:{hotel}"))
    return key


def _original(message: dict[str, Any]) -> Any:
    """The dead-lettered record as JSON, when its original text is JSON; else None."""
    text = message.get("original_text")
    if not isinstance(text, str) and isinstance(message.get("original_b64"), str):
        try:
            text = base64.b64decode(message["original_b64"]).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _has_id_number(record: dict[str, Any]) -> bool:
    person = record.get("person")
    value = person.get("id_number") if isinstance(person, dict) else None
    return value is not None and not (isinstance(value, str) and not value.strip())


class SourceQuality(AlertRule):
    """The counters of :mod:`reglink.core.quality`, per organisation (see the module)."""

    name = NAME
    reads = (sk.QUALITY, sk.QUALITY_CHECKIN, sk.QUALITY_OPEN, sk.QUALITY_DEADLETTER,
             sk.QUALITY_SENT, sk.QUALITY_DIRTY, sk.MERGED)
    writes = (sk.QUALITY, sk.QUALITY_CHECKIN, sk.QUALITY_OPEN, sk.QUALITY_DEADLETTER,
              sk.QUALITY_SENT, sk.QUALITY_DIRTY, sk.DUE)
    emits = (TOPIC,)

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        # the sources whose records check guests in and out, with how (read once: per record
        # the registry lookups cost more than the counting)
        self._stays = {s.name: s.presence for s in sources.current()
                       if isinstance(s.presence, sources.CheckInOut)}
        # Only a pipeline with an outbox (the worker) sends reports, so only there is it
        # noted which organisations changed since their report was sent.
        self._sends = ctx.outbox.enabled
        self._counted = frozenset(s.name for s in sources.current() if s.organisation)

    # ------------------------------------------------------------------ state
    def _load(self, source: str, org: str) -> dict[str, Any]:
        raw = self.ctx.kv.get(sk.quality(f"{source}:{org}"))
        state: dict[str, Any] = fastjson.loads(raw) if raw else new_state(source, org)
        return state

    def _save(self, state: dict[str, Any]) -> None:
        org_key = f"{state['source']}:{state['organisation']}"
        self.ctx.kv.set(sk.quality(org_key), fastjson.dumps(state))
        if self._sends:
            self.ctx.kv.sadd(sk.QUALITY_DIRTY, [org_key])

    # ------------------------------------------------------------------ hooks
    def on_record(self, event: LinkedRecord) -> list[Out]:
        record, source = event.record, event.source
        if source not in self._counted or event.link.repeated:
            return []
        org = organisation_of(source, record)
        if org is None:
            return []
        state = self._load(source, org)
        state["received"] += 1
        state["linked"] += 1
        if not event.link.created:
            state["joined_existing"] += 1
        problem = False
        flags = state["quality_flags"]
        for flag in event.person.quality_flags:
            flags[flag] = flags.get(flag, 0) + 1
        if any(f not in NOT_A_PROBLEM for f in event.person.quality_flags):
            state["flagged"] += 1
            problem = True
        if not _has_id_number(record):
            state["without_id_number"] += 1
            problem = True
        day = reported_day(source, record, self.ctx.settings)
        if day is not None and event.report_ts is not None:
            try:
                due = day_end(day[0]) + day[1]
            except ValueError:  # not a date: the contract check lets none through
                due = None
            if due is not None and event.report_ts > due:
                state["late_reports"] += 1
                problem = True
        if problem:
            state["with_problem"] += 1
        stays = self._stays.get(source)
        if stays is not None and event.report_ts is not None:
            self._hotel(state, event, org, stays.opens == record.get(stays.event), problem)
        self._save(state)
        return []

    def _hotel(self, state: dict[str, Any], event: LinkedRecord, hotel: str, check_in: bool,
               problem: bool) -> None:
        """Pair check-ins with check-outs of the same person at the same hotel."""
        kv = self.ctx.kv
        at = event.report_ts
        assert at is not None
        open_set = _open_set(event.source, hotel)
        if check_in:
            state["checkins"] += 1
            d = _digest(event.key)
            kv.set(sk.quality_checkin(d),
                   fastjson.dumps([event.source, hotel, event.person_id, at, int(problem)]))
            kv.sadd(open_set, [d])
            self.schedule((d,), at + CHECKOUT_WINDOW_S)
            return
        members = sorted(kv.smembers(open_set))
        if not members:
            return
        # The open check-ins in the window, by identity: those recorded under the check-out's
        # own person id first; those of identities since merged into it only without one
        # (resolving every open check-in's person id would read the store once each).
        mine: list[tuple[float, str]] = []
        others: list[tuple[float, str, str]] = []
        for d, raw in zip(members, kv.mget([sk.quality_checkin(m) for m in members]),
                          strict=True):
            if raw is None:
                continue
            _s, _h, pid, t_in, _p = fastjson.loads(raw)
            if t_in <= at <= t_in + CHECKOUT_WINDOW_S:
                if pid == event.person_id:
                    mine.append((t_in, d))
                else:
                    others.append((t_in, d, pid))
        if not mine and others:
            person = self.ctx.store.resolve(event.person_id)
            mine = [(t, d) for t, d, pid in others if self.ctx.store.resolve(pid) == person]
        best = max(mine) if mine else None
        if best is not None:  # the latest open check-in before it is closed
            kv.delete(sk.quality_checkin(best[1]))
            kv.srem(open_set, best[1])
            self.cancel((best[1],))

    def on_timer(self, parts: tuple[str, ...]) -> list[Out]:
        """A check-in's window ended with no check-out."""
        (d,) = parts
        kv = self.ctx.kv
        raw = kv.get(sk.quality_checkin(d))
        if raw is None:
            return []
        source, hotel, _pid, _at, problem = fastjson.loads(raw)
        kv.delete(sk.quality_checkin(d))
        kv.srem(_open_set(source, hotel), d)
        state = self._load(source, hotel)
        state["checkins_without_checkout"] += 1
        if not problem:
            state["with_problem"] += 1
        self._save(state)
        return []

    def timer_keys(self, parts: tuple[str, ...]) -> list[str]:
        return [sk.quality_checkin(parts[0])]

    def keys_ahead(self, record: dict[str, Any], person: Any,
                   blocking_keys: list[str]) -> tuple[list[str], list[str]]:
        org = organisation_of(record["source"], record)
        if org is None:
            return [], []
        sets = [_open_set(record["source"], org)] if checks_in(record["source"]) else []
        return [sk.quality(f"{record['source']}:{org}")], sets

    def keys_after(self, record: dict[str, Any]) -> list[str]:
        """A check-out: the open check-ins of its hotel (:meth:`_hotel` reads them all)."""
        source = record["source"]
        stays = self._stays.get(source)
        if stays is None or stays.opens == record.get(stays.event):
            return []
        org = organisation_of(source, record)
        if org is None:
            return []
        members = self.ctx.kv.cached_set(_open_set(source, org))
        return [sk.quality_checkin(m) for m in sorted(members)] if members else []

    def on_dead_letter(self, message: dict[str, Any]) -> None:
        """A dead-letter message (``deadletter.json``): counted for its organisation when the
        original record names one; once per (source, origin, reason)."""
        source, reason = message.get("source"), message.get("reason")
        if not isinstance(source, str) or not isinstance(reason, str):
            return
        original = _original(message)
        if not isinstance(original, dict):
            return
        org = organisation_of(source, original)
        if org is None:
            return
        seen = sk.quality_deadletter(_digest(json.dumps(
            [source, message.get("origin"), reason], sort_keys=True, ensure_ascii=False)))
        kv = self.ctx.kv
        if kv.get(seen) is not None:
            return
        kv.set(seen, "1")
        state = self._load(source, org)
        state["received"] += 1
        state["deadlettered"] += 1
        state["with_problem"] += 1
        code = reason.split(":", 1)[0]
        reasons = state["deadletter_reasons"]
        reasons[code] = reasons.get(code, 0) + 1
        self._save(state)

    # ------------------------------------------------------------------ sending
    def reports_due(self, now: float, every: float, final: bool = False) -> list[Out]:
        """The reports of the organisations that changed since their report was last sent,
        each at most once per ``every`` seconds (``final``: all of them, at shutdown), kept
        in the outbox until the broker has them. Keyed ``<source>:<organisation>``. None
        without an outbox (replay writes the final reports instead). A report still in the
        outbox when the next one of its organisation is made is dropped from it: an outbox
        re-send never puts an older report after a newer one."""
        kv = self.ctx.kv
        dirty = sorted(kv.smembers(sk.QUALITY_DIRTY))
        if not dirty:
            return []
        sent = {k: fastjson.loads(v) for k, v in
                zip(dirty, kv.mget([sk.quality_sent(k) for k in dirty]), strict=True) if v}
        due = [k for k in dirty if final or k not in sent or now - sent[k][0] >= every]
        outs = []
        for org_key, raw in zip(due, kv.mget([sk.quality(k) for k in due]), strict=True):
            kv.srem(sk.QUALITY_DIRTY, org_key)
            if raw is None:
                continue
            before = sent.get(org_key, (None, None))[1]
            if before is not None:  # superseded: an outbox re-send must not follow this one
                kv.zrem(sk.OUTBOX, before)
                kv.delete(sk.outbox_message(before))
            out = self.ctx.outbox.keep(Out(TOPIC, org_key, report(fastjson.loads(raw))))
            kv.set(sk.quality_sent(org_key), fastjson.dumps([now, out.oid]))
            outs.append(out)
        return outs
