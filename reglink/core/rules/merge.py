"""Event-time merge of the source channels (the stream's answer to replay's file order).

The worker receives records in whatever order the broker fetches them: often a burst of one
topic, then of another. Linking is incremental, so that order matters (a noisy record seen
before the clean record of the same person may found an identity of its own). The merger
buffers records per channel (a source partition, in order) and releases them in the
canonical order replay sees in a time-sorted file:

    records without a report time (person, watchlist) first, then by report time,
    ties by source rank (reglink.core.sources: person, watchlist, hotel, rental, residence, job),
    then arrival.

It releases the smallest head only when no channel that still has unread records in the
broker (``waiting``) could hold something smaller. A channel that is caught up is not waited
for: the stream does not stall on a quiet source. ``max_buffered`` bounds memory; past it the
smallest head is released anyway (order degrades gracefully, nothing is dropped).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from reglink.core import sources

Key = tuple[int, float, int]
_MIN: Key = (-1, 0.0, -1)


def order_key(source: str, report_ts: float | None) -> Key:
    """``source``'s records in canonical order; a name no source has ranks after them all."""
    if report_ts is None:
        return (0, 0.0, sources.rank(source))
    return (1, report_ts, sources.rank(source))


class EventTimeMerger:
    def __init__(self, max_buffered: int = 50_000) -> None:
        self.max_buffered = max_buffered
        self._buf: dict[str, deque[tuple[Key, Any]]] = {}
        self._last: dict[str, Key] = {}
        self.size = 0

    def push(self, channel: str, key: Key, item: Any) -> None:
        self._buf.setdefault(channel, deque()).append((key, item))
        self.size += 1

    def release(self, channels: Iterable[str], waiting: Callable[[str], bool]) -> list[Any]:
        """Items now safe to process, in canonical order. ``channels``: every source channel
        this worker owns; ``waiting(c)``: c has unread records in the broker."""
        channels = set(channels) | set(self._buf)
        out: list[Any] = []
        while self.size:
            heads = [(q[0][0], ch) for ch, q in self._buf.items() if q]
            key, ch = min(heads)
            blocked = any(not self._buf.get(c) and self._last.get(c, _MIN) < key and waiting(c)
                          for c in channels if c != ch)
            if blocked and self.size < self.max_buffered:
                break
            _k, item = self._buf[ch].popleft()
            self.size -= 1
            self._last[ch] = key
            out.append(item)
        return out

    def buffered(self, channel: str) -> int:
        return len(self._buf.get(channel, ()))

    def drop_channel(self, channel: str) -> list[Any]:
        """A partition was revoked: forget its buffered records (they are re-delivered)."""
        q = self._buf.pop(channel, deque())
        self.size -= len(q)
        self._last.pop(channel, None)
        return [item for _k, item in q]
