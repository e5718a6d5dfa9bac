"""The topics of docs/contract.md §3, with their partition counts, retention and other configs
(``stats`` is compacted: keyed ``<prefecture>|<date>``, the last row of each key is kept).

Topics are created explicitly (broker auto-create is off) by :func:`topic_specs`. There is one
``<source>.raw`` topic per source of the registry (:mod:`reglink.core.sources`), in its order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reglink.core import sources
from reglink.core.settings import Settings

SOURCES = sources.NAMES  # every source, in registry order (a live view of the registry)
EVENT_SOURCES = sources.EVENT_NAMES  # the sources that move the watermark

DAY_MS = 86_400_000


@dataclass(frozen=True)
class TopicSpec:
    name: str  # without prefix
    partitions: int
    retention_ms: int
    purpose: str
    #: Further topic configs (``cleanup.policy`` of a compacted topic, ...).
    configs: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic reglink uses. Retention is explicit per topic (minimisation)."""
    sp, dp = settings.source_partitions, settings.derived_partitions
    specs = [
        TopicSpec(s.topic, sp, 30 * DAY_MS, f"validated {s.name} input")
        for s in sources.current()
    ]
    specs += [
        TopicSpec("deadletter", 1, 30 * DAY_MS, "records reglink could not use, with reason"),
        TopicSpec("linked", dp, 90 * DAY_MS, "record -> person links with explanation"),
        TopicSpec("identity.events", dp, 365 * DAY_MS, "identity created/merged/split"),
        TopicSpec("alerts", dp, 365 * DAY_MS, "alert objects"),
        TopicSpec("decisions", 1, 5 * 365 * DAY_MS, "reviewers' decisions on alerts"),
        TopicSpec("audit", 1, 5 * 365 * DAY_MS, "who looked up or decided what, when, why"),
        TopicSpec("stats", dp, 5 * 365 * DAY_MS,
                  "population statistics per prefecture and date, the last row of each wins",
                  {"cleanup.policy": "compact"}),
        TopicSpec("quality", 1, 365 * DAY_MS, "source quality report per organisation"),
    ]
    return specs

