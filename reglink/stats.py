"""``reglink stats``: the population statistics (docs/contract.md §3.4) of a replay's
``stats.jsonl`` or of the compacted ``stats`` topic, filtered, as a table, JSON Lines or CSV.

Rows hold counts only. The topic may hold several rows of one (prefecture, date), a later one
re-issued by late data: the last one read wins, and a row whose counts are all zero (a
re-issue that cleared it) is not shown, as replay does not write one.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from reglink.core.errors import ReglinkError
from reglink.core.rules.population import FIELDS
from reglink.core.settings import Settings
from reglink.kafka_auth import read_to_end

COLUMNS = ("prefecture", "date", *FIELDS)
#: Short table headings, so that a row fits an 80-column terminal.
HEADINGS = {"prefecture": "pref", "registered": "reg", "present_unregistered": "unreg",
            "arrivals": "arr", "departures": "dep", "stale_open": "stale"}


def read_file(path: Path) -> list[dict[str, Any]]:
    """The rows of a replay directory's ``stats.jsonl`` (or of that file)."""
    if path.is_dir():
        path = path / "stats.jsonl"
    if not path.is_file():
        raise ReglinkError(f"no {path}: run `reglink replay FILE... --out DIR` first (it "
                           "writes DIR/stats.jsonl), or leave the argument out to read the "
                           "stats topic")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    raise ReglinkError(f"{path}:{n} is not a JSON row") from None
    return rows


def read_topic(settings: Settings, err: IO[str] | None = None,
               timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every row of the ``stats`` topic, from its start to the end it has now, with a
    progress line on ``err`` while it reads."""
    out = err or sys.stderr
    topic = settings.topic("stats")
    rows: list[dict[str, Any]] = []
    total, shown = [0], [0.0]

    def progress(due: int) -> None:
        total[0] = due
        if time.monotonic() - shown[0] > 0.2:
            out.write(f"\rreading {topic}: {len(rows):,} of {due:,} messages")
            out.flush()
            shown[0] = time.monotonic()

    for msg in read_to_end(settings, "reader", topic, timeout_s=timeout, on_poll=progress):
        if msg.value is not None:
            try:
                rows.append(json.loads(msg.value))
            except ValueError:
                continue
    out.write(f"\rreading {topic}: {len(rows):,} of {total[0]:,} messages, done\n")
    out.flush()
    return rows


def latest(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last row of each (prefecture, date), without those whose counts are all zero,
    sorted by prefecture and date."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        last[(r["prefecture"], r["date"])] = r
    return [r for _k, r in sorted(last.items()) if any(r.get(f) for f in FIELDS)]


def wanted(rows: list[dict[str, Any]], prefecture: str | None = None,
           date_from: str | None = None, date_to: str | None = None) -> list[dict[str, Any]]:
    """Rows of a prefecture (4 digits, or a prefix of them) between two dates (inclusive)."""
    return [r for r in rows
            if (prefecture is None or r["prefecture"].startswith(prefecture))
            and (date_from is None or r["date"] >= date_from)
            and (date_to is None or r["date"] <= date_to)]


def write(rows: list[dict[str, Any]], fmt: str, out: IO[str] | None = None) -> None:
    """``fmt``: ``table`` (rich), ``json`` (JSON Lines) or ``csv``."""
    out = out or sys.stdout
    if fmt == "json":
        for r in rows:
            out.write(json.dumps({c: r[c] for c in COLUMNS}, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(COLUMNS)
        w.writerows([r[c] for c in COLUMNS] for r in rows)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"population statistics ({len(rows)} rows)",
                      caption="reg: registered, unreg: present_unregistered, arr: arrivals, "
                              "dep: departures, stale: stale_open")
        for c in COLUMNS:
            table.add_column(HEADINGS.get(c, c), no_wrap=True,
                             justify="left" if c in ("prefecture", "date") else "right")
        for r in rows:
            table.add_row(*(str(r[c]) for c in COLUMNS))
        Console(file=out).print(table)
