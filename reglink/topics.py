"""The topics of CONTRACT.md section 3, with their partition counts and retention.

Topics are created explicitly (broker auto-create is off) by :func:`topic_specs`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .settings import Settings

SOURCES = ("hotel", "rental", "residence", "job", "watchlist", "person")
EVENT_SOURCES = ("hotel", "rental", "residence", "job")  # these move the watermark

DAY_MS = 86_400_000


@dataclass(frozen=True)
class TopicSpec:
    name: str  # without prefix
    partitions: int
    retention_ms: int
    purpose: str


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic reglink uses. Retention is explicit per topic (minimisation)."""
    sp, dp = settings.source_partitions, settings.derived_partitions
    specs = [
        TopicSpec(f"{s}.raw", sp, 30 * DAY_MS, f"validated {s} input") for s in SOURCES
    ]
    specs += [
        TopicSpec("deadletter", 1, 30 * DAY_MS, "records reglink could not use, with reason"),
        TopicSpec("linked", dp, 90 * DAY_MS, "record -> person links with explanation"),
        TopicSpec("identity.events", dp, 365 * DAY_MS, "identity created/merged/split"),
        TopicSpec("alerts", dp, 365 * DAY_MS, "alert objects"),
        TopicSpec("decisions", 1, 5 * 365 * DAY_MS, "reviewers' decisions on alerts"),
        TopicSpec("audit", 1, 5 * 365 * DAY_MS, "who looked up or decided what, when, why"),
    ]
    return specs


def source_topic(settings: Settings, source: str) -> str:
    return settings.topic(f"{source}.raw")
