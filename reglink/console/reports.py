"""What the statistics and source quality pages show, from what the console holds: the latest
``stats`` row per prefecture and date, the latest ``quality`` report per organisation, and
the alerts. Pure functions over those messages (no web framework, no broker); counts only,
no person ids.

The rows and reports are read, never recomputed: which row of a (prefecture, date) counts
and which rows a filter keeps is :mod:`reglink.stats` (as ``reglink stats`` shows them), the
order of the organisations and the look-up of one is :mod:`reglink.quality` (as ``reglink
quality`` lists them). The stale registrations are counted from the ``stale_registration``
alerts as they were published (their latest status).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from reglink import quality as q
from reglink import stats as st
from reglink.core.errors import ReglinkError
from reglink.core.rules.clock import ts
from reglink.core.rules.population import FIELDS, day_iso, day_of

#: The counts drawn over time, with their colours (the legend and the charts share them).
CHARTED = {"present": "#1565c0", "registered": "#2e7d32", "present_unregistered": "#c62828",
           "stale_open": "#6a1b9a"}  # registrations open past their deregistration deadline
STALE_RULE = "stale_registration"
ALERT_STATUSES = ("raised", "resolved", "withdrawn")
#: Days the statistics page shows when no "from" date is given, up to the latest day.
DEFAULT_DAYS = 31
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PREFECTURE = re.compile(r"\d{2}|\d{4}")


class FilterError(ValueError):
    """A filter value the page cannot use (its message says which and why)."""


@dataclass
class StatsFilters:
    prefecture: str = ""
    date_from: str = ""
    date_to: str = ""


def stats_filters(prefecture: str, date_from: str, date_to: str) -> StatsFilters:
    """The statistics page's filters, checked: a prefecture code (4 digits, or a province's
    2) and dates ``YYYY-MM-DD``, the first not after the second."""
    f = StatsFilters(prefecture.strip(), date_from.strip(), date_to.strip())
    if f.prefecture and not _PREFECTURE.fullmatch(f.prefecture):
        raise FilterError(f"prefecture {f.prefecture!r}: give its 4-digit code (or a "
                          "province's 2 digits)")
    for name, value in (("from", f.date_from), ("to", f.date_to)):
        if value:
            try:
                if not _DATE.fullmatch(value):
                    raise ValueError
                date.fromisoformat(value)
            except ValueError:
                raise FilterError(f"{name} date {value!r}: write it as YYYY-MM-DD") from None
    if f.date_from and f.date_to and f.date_from > f.date_to:
        raise FilterError(f"from {f.date_from} is after to {f.date_to}")
    return f


@dataclass
class StatsView:
    """The statistics page: ``dates`` on the charts' axis, the charted counts per prefecture
    (``series[pref][count]``, one value per date), the latest day's rows (every count, per
    prefecture), the stale registration alerts per prefecture by status, and the prefectures
    the selector offers (every prefecture with a row, whatever the filters)."""

    filters: StatsFilters
    dates: list[str]
    series: dict[str, dict[str, list[int]]]
    latest_date: str | None
    latest: list[dict[str, Any]]
    stale: list[dict[str, Any]]
    stale_total: dict[str, int]
    prefectures: list[str] = field(default_factory=list)


def stale_counts(alerts: list[dict[str, Any]], prefecture: str = "", date_from: str = "",
                 date_to: str = "") -> list[dict[str, Any]]:
    """``stale_registration`` alerts per prefecture (the office holding the old registration)
    by their latest status, sorted by prefecture: ``{prefecture, raised, resolved,
    withdrawn}``. Filtered by prefecture (as the statistics are) and by the day of the
    deregistration deadline (a day in China Standard Time, as the statistics' days are)."""
    counts: dict[str, Counter[str]] = {}
    for a in alerts:
        if a.get("rule") != STALE_RULE:
            continue
        pref = str(a.get("prefecture") or "")
        if prefecture and not pref.startswith(prefecture):
            continue
        if date_from or date_to:
            try:
                day = day_iso(day_of(ts(a["deadline"])))
            except (KeyError, TypeError, ValueError):
                continue
            if (date_from and day < date_from) or (date_to and day > date_to):
                continue
        counts.setdefault(pref, Counter())[str(a.get("status"))] += 1
    return [{"prefecture": p, **{s: c[s] for s in ALERT_STATUSES}}
            for p, c in sorted(counts.items())]


def stats_view(rows: list[dict[str, Any]], alerts: list[dict[str, Any]],
               filters: StatsFilters) -> StatsView:
    """The statistics page from the ``stats`` rows and the alerts. The days run from the
    first row the filters keep to the latest day with a row of any prefecture (up to "to");
    without a "from" date the page shows the last :data:`DEFAULT_DAYS` of them (and says so
    in its filters). A day without a row of a prefecture counted nobody there: the stream
    writes a row only when a count is not zero."""
    final = st.latest(rows)
    f = filters
    # the latest day with rows of any prefecture (up to "to"): a prefecture without a row
    # on it counted nobody that day
    upto = [r["date"] for r in st.wanted(final, None, None, f.date_to or None)]
    end = max(upto) if upto else None
    if not f.date_from and end is not None:
        start = date.fromisoformat(end) - timedelta(days=DEFAULT_DAYS - 1)
        f = StatsFilters(f.prefecture, start.isoformat(), f.date_to)
    kept = st.wanted(final, f.prefecture or None, f.date_from or None, f.date_to or None)
    by_pref: dict[str, dict[str, dict[str, Any]]] = {}
    for r in kept:
        by_pref.setdefault(r["prefecture"], {})[r["date"]] = r
    dates = _days(min(r["date"] for r in kept), end) if kept and end else []
    series = {p: {c: [days.get(d, {}).get(c, 0) for d in dates] for c in CHARTED}
              for p, days in sorted(by_pref.items())}
    latest_date = dates[-1] if dates else None
    latest = [{"prefecture": p, **{c: days.get(latest_date or "", {}).get(c, 0)
                                   for c in FIELDS}}
              for p, days in sorted(by_pref.items())]
    stale = stale_counts(alerts, f.prefecture, f.date_from, f.date_to)
    total = {s: sum(r[s] for r in stale) for s in ALERT_STATUSES}
    return StatsView(f, dates, series, latest_date, latest, stale, total,
                     sorted({r["prefecture"] for r in final}))


def _days(first: str, last: str) -> list[str]:
    """Every day from ``first`` to ``last`` (ISO dates), both included."""
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return [(a + timedelta(days=n)).isoformat() for n in range((b - a).days + 1)]


# ------------------------------------------------------------------ source quality
#: An organisation's counts as the page names them, in the order it lists them.
COUNTS = (("received", "records received (linked or dead-lettered)"),
          ("linked", "records linked"),
          ("joined_existing", "linked to an identity that existed before"),
          ("deadlettered", "records dead-lettered"),
          ("flagged", "linked records with a quality flag"),
          ("without_id_number", "linked records without an ID number"),
          ("late_reports", "records reported late (after the day reported plus the "
                           "source's grace period)"),
          ("checkins", "check-ins"),
          ("checkins_without_checkout", "check-ins without a check-out within 30 days"),
          ("with_problem", "records with any problem"))
#: Records an organisation needs to be ranked (``reglink quality --min-records``'s default).
MIN_RECORDS = 20
#: Each rate of a report: what it is a share of, as (rate, label, numerator, denominator).
RATES = (("problem", "records with any problem", "with_problem", "received"),
         ("deadlettered", "dead-lettered", "deadlettered", "received"),
         ("flagged", "with a quality flag", "flagged", "linked"),
         ("bad_checksum", "ID number failing its checksum", "bad_checksum", "linked"),
         ("without_id_number", "without an ID number", "without_id_number", "linked"),
         ("late", "reported late", "late_reports", "linked"),
         ("without_checkout", "check-ins without a check-out", "checkins_without_checkout",
          "checkins"),
         ("joined_existing", "joined an existing identity", "joined_existing", "linked"))


def ranked(reports: list[dict[str, Any]], source: str = "",
           min_received: int = MIN_RECORDS) -> list[dict[str, Any]]:
    """The reports worst first, as ``reglink quality`` lists them (:func:`q.select`)."""
    return q.select(reports, source or None, min_received)


@dataclass
class OrganisationView:
    report: dict[str, Any]
    rank: int
    of: int
    counts: list[tuple[str, str, int | None]]
    rates: list[tuple[str, str, float | None, int | None, int | None]]


def organisation_view(reports: list[dict[str, Any]], source: str, organisation: str,
                      min_received: int = MIN_RECORDS) -> OrganisationView | None:
    """One organisation's report, its place in the list of all sources (worst first), its
    counts and its rates each with what it is a share of; None when there is no report."""
    order = ranked(reports, "", min_received)
    try:
        report = q.find(order, organisation, source)
    except ReglinkError:
        return None
    counts = [(k, label, report.get(k)) for k, label in COUNTS]
    values = {**report, "bad_checksum": (report.get("quality_flags") or {}).get("bad_checksum")}
    rates = [(k, label, (report.get("rates") or {}).get(k), values.get(num), values.get(den))
             for k, label, num, den in RATES]
    return OrganisationView(report, order.index(report) + 1, len(order), counts, rates)


def receipt(report: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The receipt an organisation could be sent (its own counts only) and its file name,
    as ``reglink quality --receipt`` writes it."""
    return q.receipt_name(report), q.receipt(report)
