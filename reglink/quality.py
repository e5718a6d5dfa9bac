"""``reglink quality``: the source quality reports (docs/contract.md §3.5), worst first, and
the receipts an organisation could be sent.

The reports come from the ``quality`` topic (the latest message per organisation, read to the
end of the topic as it is now, as the ``reader`` role) or from a replay's ``quality.jsonl``.
"Worst" is :func:`reglink.core.quality.worst_first`: the highest share of received records
with any problem, among organisations with at least ``--min-records`` records.

A receipt (:func:`receipt`) is one organisation's own report and nothing else: its source,
its id, its counts and rates. Reports hold no personal data (no names, ID numbers, record
ids or person ids), and a receipt copies only the fields of the report schema
(``reglink/schemas/quality.json``), so nothing about another organisation or a person can
reach it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from reglink.core.contract import schema_for
from reglink.core.errors import ReglinkError
from reglink.core.quality import worst_first
from reglink.core.settings import Settings
from reglink.kafka_auth import read_to_end

CSV_COLUMNS = ("rank", "source", "organisation", "received", "with_problem", "problem_rate",
               "deadlettered", "flagged", "bad_checksum", "without_id_number", "late_reports",
               "checkins", "checkins_without_checkout", "joined_existing_rate")
RECEIPT_KIND = "reglink source quality receipt"
_FILE_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Progress:
    """One line on stderr while reading: rewritten in place on a terminal, else written once
    at the end."""

    def __init__(self, what: str, err: IO[str] | None = None) -> None:
        self.what = what
        self.err = err or sys.stderr
        self.tty = self.err.isatty()
        self.last = 0.0

    def show(self, messages: int, organisations: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and (not self.tty or now - self.last < 0.2):
            return
        self.last = now
        line = f"reading {self.what}: {messages:,} messages, {organisations:,} organisations"
        if self.tty:
            self.err.write("\r" + line + ("\n" if final else ""))
        elif final:
            self.err.write(line + "\n")
        self.err.flush()


def read_file(path: Path, err: IO[str] | None = None) -> list[dict[str, Any]]:
    """The reports of a replay's ``quality.jsonl`` (the last line per organisation wins)."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    progress = Progress(str(path), err)
    n = 0
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except ValueError:
                raise ReglinkError(f"{path}:{number} is not a JSON quality report (a replay "
                                   "writes DIR/quality.jsonl, one report per line)") from None
            n += 1
            latest[(r["source"], r["organisation"])] = r
            progress.show(n, len(latest))
    progress.show(n, len(latest), final=True)
    return list(latest.values())


def read_topic(settings: Settings, timeout_s: float = 15.0,
               err: IO[str] | None = None) -> list[dict[str, Any]]:
    """The latest report per organisation on the ``quality`` topic, read from the beginning
    to the end of the topic as it is now; never waits for more."""
    topic = settings.topic("quality")
    progress = Progress(f"topic {topic}", err)
    latest: dict[str, dict[str, Any]] = {}
    read = [0]  # reports read so far (the progress line reads it between polls)
    for m in read_to_end(settings, "reader", topic, timeout_s=timeout_s,
                         on_poll=lambda _total: progress.show(read[0], len(latest))):
        if m.value:
            try:
                latest[(m.key or b"").decode()] = json.loads(m.value)
                read[0] += 1
            except ValueError:
                pass
    progress.show(read[0], len(latest), final=True)
    return list(latest.values())


def select(reports: Iterable[dict[str, Any]], source: str | None = None,
           min_received: int = 20) -> list[dict[str, Any]]:
    """Reports of ``source`` (or all), worst first (:func:`worst_first`)."""
    return worst_first((r for r in reports if source is None or r["source"] == source),
                       min_received)


def _row(rank: int, r: dict[str, Any]) -> dict[str, Any]:
    rates = r["rates"]
    return {"rank": rank, "source": r["source"], "organisation": r["organisation"],
            "received": r["received"], "with_problem": r["with_problem"],
            "problem_rate": rates["problem"], "deadlettered": r["deadlettered"],
            "flagged": r["flagged"], "bad_checksum": r["quality_flags"].get("bad_checksum", 0),
            "without_id_number": r["without_id_number"], "late_reports": r["late_reports"],
            "checkins": r["checkins"], "checkins_without_checkout": r["checkins_without_checkout"],
            "joined_existing_rate": rates["joined_existing"]}


def write_csv(reports: list[dict[str, Any]], out: IO[str]) -> None:
    w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for rank, r in enumerate(reports, 1):
        w.writerow({k: "" if v is None else v for k, v in _row(rank, r).items()})


def _pct(rate: float | None) -> str:
    return "" if rate is None else f"{rate * 100:.1f} %"


def table(reports: list[dict[str, Any]], min_received: int, limit: int):
    """A rich Table of the first ``limit`` reports."""
    from rich.table import Table

    t = Table(title=f"source quality, worst first (share of records with a problem, at least "
                    f"{min_received} records)", title_justify="left", header_style="bold")
    for col in ("#", "source", "organisation", "records", "problem", "dead-lettered",
                "flagged", "no ID number", "late", "no check-out", "joined existing"):
        t.add_column(col, no_wrap=True, justify="left" if col in ("source", "organisation")
                     else "right")
    for rank, r in enumerate(reports[:limit], 1):
        rates = r["rates"]
        t.add_row(str(rank), r["source"], r["organisation"], str(r["received"]),
                  _pct(rates["problem"]), str(r["deadlettered"]), str(r["flagged"]),
                  str(r["without_id_number"]),
                  "" if r["late_reports"] is None else str(r["late_reports"]),
                  "" if r["checkins_without_checkout"] is None else
                  f"{r['checkins_without_checkout']}/{r['checkins']}",
                  _pct(rates["joined_existing"]))
    return t


# --- receipts ------------------------------------------------------------------------------
def _copy(schema: dict[str, Any], value: Any) -> Any:
    """``value`` with only what ``schema`` (an object schema of quality.json) names; the
    per-flag and per-reason maps hold counts only and are copied as counts."""
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is None:  # a map of counts (quality_flags, deadletter_reasons)
            return {str(k): int(v) for k, v in value.items()}
        return {k: _copy(props[k], value[k]) for k in props if k in value}
    if value is None or isinstance(value, int | float):
        return value
    return str(value)


def receipt(report: dict[str, Any]) -> dict[str, Any]:
    """What an organisation could be sent: its own report, the fields of the report schema
    only, under a title that says what it is."""
    return {"kind": RECEIPT_KIND, "schema": schema_for("quality")["$id"],
            "report": _copy(schema_for("quality"), report)}


def find(reports: list[dict[str, Any]], organisation: str,
         source: str | None = None) -> dict[str, Any]:
    """The report of ``organisation`` (of ``source``, when two sources share the id)."""
    found = [r for r in reports if r["organisation"] == organisation
             and (source is None or r["source"] == source)]
    if not found:
        raise ReglinkError(f"no quality report for organisation {organisation!r}"
                           + (f" of source {source}" if source else "") +
                           ": check the id (`reglink quality` lists them)")
    if len(found) > 1:
        raise ReglinkError(f"organisation {organisation!r} reports for "
                           f"{', '.join(sorted(r['source'] for r in found))}: give --source")
    return found[0]


def receipt_name(report: dict[str, Any]) -> str:
    """The receipt's file name: ``<source>-<organisation>.json``; an id with other characters
    than letters, digits, ``.``, ``_`` and ``-`` has them as ``_`` and a digest of the id
    appended, so two ids never share a file."""
    org = report["organisation"]
    safe = _FILE_SAFE.sub("_", org)
    if safe != org:
        safe += "-" + hashlib.sha256(org.encode()).hexdigest()[:8]
    return f"{report['source']}-{safe}.json"


def write_receipts(reports: list[dict[str, Any]], out_dir: Path) -> int:
    """One receipt file per organisation in ``out_dir``; how many."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for r in reports:
        (out_dir / receipt_name(r)).write_text(
            json.dumps(receipt(r), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return len(reports)
