"""The event-time watermark (docs/contract.md §2).

wm = min over *holding* sources of (highest report time seen) - lateness, never backwards.
A source holds unless it has sent nothing yet or has been idle past the idle timeout.
When every source is idle (or the input ended) wm = highest report time seen - lateness.

The stream shell may also call :meth:`expect` for a source whose topic holds records not yet
consumed: such a source holds the watermark where it is until its first record is read. This
is what makes the stream agree with replay when topics are consumed unevenly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypedDict

NEG_INF = float("-inf")


class WatermarkState(TypedDict):
    """A watermark as stored (:meth:`Watermark.to_json`); ``value`` None: no value yet."""

    max_seen: dict[str, float]
    last_active: dict[str, float]
    expected: list[str]
    value: float | None


@dataclass
class Watermark:
    sources: Sequence[str]
    lateness: float
    idle_timeout: float
    max_seen: dict[str, float] = field(default_factory=dict)
    last_active: dict[str, float] = field(default_factory=dict)  # processing time
    expected: set[str] = field(default_factory=set)
    value: float = NEG_INF
    _known_sources: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # looked up once per record: a set of the names, not the registry's live view
        self._known_sources = frozenset(self.sources)

    def _known(self, channel: str) -> bool:
        return channel.split("#", 1)[0] in self._known_sources

    def observe(self, source: str, report_ts: float, now: float | None = None) -> None:
        if not self._known(source):
            return
        if report_ts > self.max_seen.get(source, NEG_INF):
            self.max_seen[source] = report_ts
        if now is not None:
            self.last_active[source] = now
        self.expected.discard(source)

    def expect(self, source: str, now: float | None = None) -> None:
        """The source has records waiting that have not been read yet."""
        if self._known(source) and source not in self.max_seen:
            self.expected.add(source)
            if now is not None:
                self.last_active.setdefault(source, now)

    def touch(self, channel: str, now: float) -> None:
        """The channel has records waiting in the broker: it has not gone silent."""
        if self._known(channel):
            self.last_active[channel] = max(now, self.last_active.get(channel, now))

    def _idle(self, source: str, now: float | None) -> bool:
        if now is None:
            return False
        last = self.last_active.get(source)
        return last is not None and now - last >= self.idle_timeout

    def advance(self, now: float | None = None, final: bool = False) -> float:
        """Recompute and return the watermark (epoch s); never moves backwards."""
        if not self.max_seen:
            return self.value
        top = max(self.max_seen.values())
        if final:
            candidate = top - self.lateness
        else:
            holds = [self.max_seen[s] for s in self.max_seen if not self._idle(s, now)]
            if any(not self._idle(s, now) for s in self.expected):
                holds.append(NEG_INF)
            candidate = (min(holds) if holds else top) - self.lateness
        if candidate > self.value:
            self.value = candidate
        return self.value

    def to_json(self) -> WatermarkState:
        return {"max_seen": self.max_seen, "last_active": self.last_active,
                "expected": sorted(self.expected),
                "value": None if self.value == NEG_INF else self.value}

    def load_json(self, d: WatermarkState) -> None:
        self.max_seen = dict(d.get("max_seen", {}))
        self.last_active = dict(d.get("last_active", {}))
        self.expected = set(d.get("expected", ()))
        value = d.get("value")
        self.value = NEG_INF if value is None else float(value)
