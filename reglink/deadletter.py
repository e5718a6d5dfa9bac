"""``reglink deadletter``: read the dead-letter topic, summarise it by reason, export the
original records for fixing.

Dead letters hold raw input (personal data), so reading them is audited like a person
look-up: a justification is required and an ``audit`` entry (who, when, what, why) is written
**before** the topic is read. It runs as the ``console`` principal, the operators' role, the
only one besides admin that may read the topic (reglink/kafka_auth.py).

A fixed record goes back in the way it came: ``--export DIR`` writes each source's original
bytes to ``DIR/<source>.jsonl`` (rows read from CSV files to ``DIR/<source>.csv``, without a
header line), the operator fixes them and publishes them again with ``reglink publish``, which
checks them against the contract like any other input. Blank lines (reason ``empty``) are
not exported: there is nothing to fix.
"""

from __future__ import annotations

import base64
import getpass
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reglink.core.contract import reason_code
from reglink.core.errors import ReglinkError
from reglink.core.settings import Settings
from reglink.kafka_auth import kafka_client, read_to_end
from reglink.person import audit_entry, check_justification

ROLE = "console"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since``: a duration back from now (``90s``, ``30m``, ``2h``, ``7d``) or an ISO date
    or time (``2026-03-01``, ``2026-03-01T08:00``; UTC unless it says otherwise)."""
    now = now or datetime.now(UTC)
    m = _DURATION.match(text.strip())
    if m:
        return now - timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ReglinkError(f"--since {text!r}: give a duration (30m, 2h, 7d) or an ISO date "
                           "or time (2026-03-01, 2026-03-01T08:00)") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def place(origin: dict[str, Any] | None) -> str:
    """Where the record was read: ``file:line`` (connector) or ``topic[partition]@offset``
    (worker)."""
    origin = origin or {}
    if "file" in origin:
        return f"{origin['file']}:{origin.get('line', '?')}"
    if "topic" in origin:
        return f"{origin['topic']}[{origin.get('partition', '?')}]@{origin.get('offset', '?')}"
    return "?"


@dataclass(frozen=True)
class Entry:
    """One dead letter as read from the topic."""

    at: datetime  # the dead letter's Kafka timestamp
    partition: int
    offset: int  # on the dead-letter topic
    source: str | None
    reason: str
    origin: dict[str, Any] = field(default_factory=dict)
    original: bytes = b""

    @property
    def code(self) -> str:
        return reason_code(self.reason)

    @property
    def place(self) -> str:
        return place(self.origin)

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(timespec="milliseconds"), "source": self.source,
                "reason": self.reason, "code": self.code, "place": self.place,
                "origin": self.origin, "deadletter_partition": self.partition,
                "deadletter_offset": self.offset,
                "original_text": self.original.decode("utf-8", errors="replace")}


def entry_of(value: bytes, timestamp_ms: int, partition: int, offset: int) -> Entry | None:
    """An :class:`Entry` from one message of the topic; None for a message that is not a
    dead letter (not JSON, no reason)."""
    try:
        msg = json.loads(value)
    except ValueError:
        return None
    if not isinstance(msg, dict) or not isinstance(msg.get("reason"), str):
        return None
    if isinstance(msg.get("original_b64"), str):
        original = base64.b64decode(msg["original_b64"])
    else:  # the worker's processing errors carry the text only
        original = str(msg.get("original_text") or "").encode()
    origin = msg.get("origin") if isinstance(msg.get("origin"), dict) else {}
    return Entry(datetime.fromtimestamp(timestamp_ms / 1000, UTC), partition, offset,
                 msg.get("source"), msg["reason"], origin, original)


def select(entries: list[Entry], since: datetime | None = None, source: str | None = None,
           reason: str | None = None) -> list[Entry]:
    """The entries at or after ``since``, of ``source``, whose reason code (or full reason)
    is ``reason``; in the order they were dead-lettered."""
    return sorted((e for e in entries
                   if (since is None or e.at >= since)
                   and (source is None or e.source == source)
                   and (reason is None or reason in (e.code, e.reason))),
                  key=lambda e: (e.at, e.partition, e.offset))


def summary(entries: list[Entry]) -> list[dict[str, Any]]:
    """Dead letters by full reason: count, code, sources and the first place; most first."""
    counts: Counter[str] = Counter()
    first: dict[str, Entry] = {}
    sources: dict[str, set[str]] = {}
    for e in entries:
        counts[e.reason] += 1
        first.setdefault(e.reason, e)
        sources.setdefault(e.reason, set()).add(e.source or "?")
    return [{"reason": r, "code": reason_code(r), "count": n, "sources": sorted(sources[r]),
             "first": first[r].place}
            for r, n in sorted(counts.items(), key=lambda rc: (-rc[1], rc[0]))]


def export(entries: list[Entry], out_dir: Path) -> dict[str, int]:
    """Write each entry's original bytes, one record a line, to ``<source>.jsonl`` (or
    ``<source>.csv`` for rows read from a CSV file) in ``out_dir``. Returns the count per
    file name. Files are replaced, not appended to."""
    groups: dict[str, list[bytes]] = {}
    for e in entries:
        if e.code == "empty" or not e.original.strip():
            continue
        ext = "csv" if str(e.origin.get("file", "")).lower().endswith(".csv") else "jsonl"
        groups.setdefault(f"{e.source or 'unknown'}.{ext}", []).append(e.original)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, lines in groups.items():
        with (out_dir / name).open("wb") as fh:
            for line in lines:
                fh.write(line if line.endswith(b"\n") else line + b"\n")
    return {name: len(lines) for name, lines in sorted(groups.items())}


def read_entries(settings: Settings, since: datetime | None = None,
                 timeout_s: float = 15.0) -> list[Entry]:
    """Every dead letter from ``since`` (Kafka timestamps) to the end of the topic as it is
    now, read as the operators' role; stops at the end, never waits for more."""
    since_ms = int(since.timestamp() * 1000) if since is not None else None
    out: list[Entry] = []
    for m in read_to_end(settings, ROLE, settings.topic("deadletter"), since_ms=since_ms,
                         timeout_s=timeout_s):
        e = entry_of(m.value or b"", m.timestamp, m.partition, m.offset)
        if e is not None:
            out.append(e)
    return out


def write_audit(settings: Settings, principal: str, subject: dict[str, Any],
                justification: str) -> dict[str, Any]:
    """Send the audit entry of one use (acknowledged before anything is read)."""
    from kafka import KafkaProducer

    entry = audit_entry(principal, "cli", "deadletter_read", subject, justification, "cli")
    producer = kafka_client(KafkaProducer, settings, ROLE, acks="all", request_timeout_ms=15000)
    try:
        producer.send(settings.topic("audit"), key=principal.encode(),
                      value=json.dumps(entry, ensure_ascii=False).encode()).get(timeout=15)
    finally:
        producer.close(timeout=5)
    return entry


def run_deadletter(settings: Settings, justification: str | None, since: str | None = None,
                   source: str | None = None, reason: str | None = None,
                   as_json: bool = False, export_dir: str | None = None,
                   limit: int = 50, principal: str | None = None, out=None) -> list[Entry]:
    """``reglink deadletter``: audit, read, filter, then print (or export). Returns the
    dead letters selected."""
    why = check_justification(justification)
    since_at = parse_since(since) if since else None
    principal = principal or getpass.getuser()
    subject = {"topic": settings.topic("deadletter"), "since": since_at.isoformat()
               if since_at else None, "source": source, "reason": reason,
               "export": export_dir is not None}
    entry = write_audit(settings, principal, subject, why)
    chosen = select(read_entries(settings, since_at), since_at, source, reason)
    out = out or sys.stdout
    exported = export(chosen, Path(export_dir)) if export_dir else None
    if as_json:
        out.write(json.dumps({"audit_id": entry["audit_id"], "count": len(chosen),
                              "reasons": summary(chosen),
                              "dead_letters": [e.to_json() for e in chosen],
                              **({"exported": exported} if exported is not None else {})},
                             ensure_ascii=False) + "\n")
        return chosen
    _print_text(chosen, entry, principal, why, exported, export_dir, limit, out)
    return chosen


def _print_text(chosen: list[Entry], entry: dict[str, Any], principal: str, why: str,
                exported: dict[str, int] | None, export_dir: str | None, limit: int,
                out) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, highlight=False)
    console.print(f"[dim]audited: {entry['audit_id']} by {principal}: {why}[/dim]")
    if not chosen:
        console.print("no dead letters")
        return
    table = Table(show_header=True, header_style="bold")
    for col in ("when", "source", "reason", "place"):
        table.add_column(col, overflow="fold")
    for e in chosen[-limit:] if limit else chosen:
        table.add_row(e.at.isoformat(timespec="seconds"), e.source or "?", e.reason, e.place)
    console.print(table)
    if limit and len(chosen) > limit:
        console.print(f"the last {limit} of {len(chosen)} shown (--limit 0: all; --json)")
    console.print(f"\n{len(chosen)} dead letters by reason:")
    for r in summary(chosen):
        console.print(f"  {r['count']:>6}  {r['reason']}  ({', '.join(r['sources'])}; "
                      f"first at {r['first']})")
    if exported is not None:
        console.print(f"\nexported to {export_dir}:" if exported else "\nnothing to export")
        for name, n in exported.items():
            src, _, ext = name.rpartition(".")
            hint = ("; put the original file's header line first" if ext == "csv" else "")
            console.print(f"  {n:>6}  {name}: fix, then `reglink publish --source {src} "
                          f"{Path(export_dir or '.') / name}`{hint}")
