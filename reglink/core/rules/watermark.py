"""The event-time watermark (docs/contract.md §2.1).

wm = min over *holding* channels of (highest report time seen - the source's lateness),
never backwards. A channel (a source, or ``source#partition`` in the worker) holds unless it
has sent nothing yet or has been idle past its source's idle timeout. When every channel is
idle (or the input ended) wm = max over channels of (highest report time seen - lateness).
Allowed lateness and idle timeout are per source (:meth:`Watermark.from_settings`).

The stream shell may also call :meth:`expect` for a source whose topic holds records not yet
consumed: such a source holds the watermark where it is until its first record is read. This
is what makes the stream agree with replay when topics are consumed unevenly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

NEG_INF = float("-inf")


class WatermarkState(TypedDict):
    """A watermark as stored (:meth:`Watermark.to_json`); ``value`` None: no value yet."""

    max_seen: dict[str, float]
    last_active: dict[str, float]
    expected: list[str]
    value: float | None


@dataclass
class Watermark:
    """``lateness`` and ``idle_timeout``: the defaults; ``lateness_by_source`` and
    ``idle_by_source``: the sources that differ (seconds)."""

    sources: Sequence[str]
    lateness: float
    idle_timeout: float
    lateness_by_source: Mapping[str, float] = field(default_factory=dict)
    idle_by_source: Mapping[str, float] = field(default_factory=dict)
    max_seen: dict[str, float] = field(default_factory=dict)
    last_active: dict[str, float] = field(default_factory=dict)  # processing time
    expected: set[str] = field(default_factory=set)
    value: float = NEG_INF
    _known_sources: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # looked up once per record: a set of the names, not the registry's live view
        self._known_sources = frozenset(self.sources)
        for what, per in (("lateness", self.lateness_by_source),
                          ("idle timeout", self.idle_by_source)):
            unknown = sorted(set(per) - self._known_sources)
            if unknown:
                raise ValueError(f"{what} set for {', '.join(unknown)}: not an event source "
                                 f"(the event sources: {', '.join(self.sources)})")

    @classmethod
    def from_settings(cls, sources: Sequence[str], settings: Any) -> Watermark:
        """The watermark the settings describe (``lateness_s``, ``idle_timeout_s`` and their
        ``*_by_source`` overrides)."""
        return cls(sources, float(settings.lateness_s), float(settings.idle_timeout_s),
                   dict(settings.lateness_s_by_source), dict(settings.idle_timeout_s_by_source))

    def _known(self, channel: str) -> bool:
        return channel.split("#", 1)[0] in self._known_sources

    def lateness_of(self, channel: str) -> float:
        """The allowed lateness of the channel's source."""
        return self.lateness_by_source.get(channel.split("#", 1)[0], self.lateness)

    def ceiling(self, top: float) -> float:
        """The highest the watermark can reach while no report time exceeds ``top``."""
        return max(self.value, top - min((self.lateness, *self.lateness_by_source.values())))

    def lag(self) -> dict[str, float]:
        """Per source: how far the watermark is behind its latest report time (seconds; the
        least over the source's channels). Negative: the watermark passed everything it sent,
        so what it sends next at that report time is late."""
        out: dict[str, float] = {}
        if self.value == NEG_INF:
            return out
        for channel, seen in self.max_seen.items():
            source = channel.split("#", 1)[0]
            out[source] = min(out.get(source, seen - self.value), seen - self.value)
        return out

    def holding(self, now: float | None = None) -> set[str]:
        """The sources that hold the watermark where it is: a channel not idle whose latest
        report time less its lateness is the watermark, or that is expected to send."""
        out = {c.split("#", 1)[0] for c in self.expected if not self._idle(c, now)}
        for channel, seen in self.max_seen.items():
            if not self._idle(channel, now) and seen - self.lateness_of(channel) <= self.value:
                out.add(channel.split("#", 1)[0])
        return out

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
        timeout = self.idle_by_source.get(source.split("#", 1)[0], self.idle_timeout)
        return last is not None and now - last >= timeout

    def advance(self, now: float | None = None, final: bool = False) -> float:
        """Recompute and return the watermark (epoch s); never moves backwards."""
        if not self.max_seen:
            return self.value
        bound = {c: seen - self.lateness_of(c) for c, seen in self.max_seen.items()}
        top = max(bound.values())
        if final:
            candidate = top
        else:
            holds = [b for c, b in bound.items() if not self._idle(c, now)]
            if any(not self._idle(c, now) for c in self.expected):
                holds.append(NEG_INF)
            candidate = min(holds) if holds else top
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
