"""Event-time helpers. Every instant is an aware datetime or epoch seconds (UTC-based)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

# Contract dates (lease_start, valid_until, ...) carry no zone; they are civil dates in
# China Standard Time, where the registries are.
CST = timezone(timedelta(hours=8))


def ts(iso: str) -> float:
    """ISO 8601 instant with offset -> epoch seconds."""
    dt = datetime.fromisoformat(iso)
    if dt.tzinfo is None:
        raise ValueError(f"time without offset: {iso!r}")
    return dt.timestamp()


def day_start(iso_date: str) -> float:
    return datetime.combine(date.fromisoformat(iso_date), datetime.min.time(), CST).timestamp()


def day_end(iso_date: str) -> float:
    """The end of an inclusive date: 00:00 of the next day."""
    return day_start(iso_date) + 86400.0


def iso(epoch: float) -> str:
    """Epoch seconds -> ISO 8601 in CST (stable text, used in alert ids)."""
    return datetime.fromtimestamp(epoch, CST).isoformat()
