"""`unregistered_stay`: presence intervals -> episodes -> deadline -> owed registration.

All functions are pure. Times are epoch seconds; ``None`` as an end means open-ended.
"""

from __future__ import annotations

from dataclasses import dataclass

INF = float("inf")


@dataclass(frozen=True, slots=True)
class Interval:
    record_id: str  # record key of the evidence
    start: float
    end: float | None
    grace: float

    @property
    def due(self) -> float:
        return self.start + self.grace


@dataclass(frozen=True, slots=True)
class Registration:
    record_id: str
    registered_at: float
    valid_from: float
    valid_until_end: float  # 00:00 after the inclusive valid_until day (exclusive bound)

    def covers(self, deadline: float) -> bool:
        return (self.registered_at <= deadline < self.valid_until_end
                and self.valid_from <= deadline)


@dataclass(frozen=True, slots=True)
class Episode:
    start: float
    end: float | None
    intervals: tuple[Interval, ...]

    @property
    def deadline(self) -> float | None:
        """Earliest ``start + grace`` the episode still covers (has not ended before)."""
        end = INF if self.end is None else self.end
        dues = [i.due for i in self.intervals if end >= i.due]
        return min(dues) if dues else None


def episodes(intervals: list[Interval], gap: float) -> list[Episode]:
    """Join intervals (in one prefecture) whose gap is under ``gap`` seconds."""
    out: list[Episode] = []
    cur: list[Interval] = []
    cur_start, cur_end = 0.0, 0.0
    for iv in sorted(intervals, key=lambda i: (i.start, i.record_id)):
        iv_end = INF if iv.end is None else iv.end
        if cur and iv.start - cur_end < gap:
            cur.append(iv)
            cur_end = max(cur_end, iv_end)
            continue
        if cur:
            out.append(Episode(cur_start, None if cur_end == INF else cur_end, tuple(cur)))
        cur, cur_start, cur_end = [iv], iv.start, iv_end
    if cur:
        out.append(Episode(cur_start, None if cur_end == INF else cur_end, tuple(cur)))
    return out


def covered(deadline: float, registrations: list[Registration]) -> Registration | None:
    for reg in sorted(registrations, key=lambda r: (r.registered_at, r.record_id)):
        if reg.covers(deadline):
            return reg
    return None


def evidence_ids(ep: Episode, deadline: float) -> list[str]:
    """Records that place the person in the prefecture up to the deadline."""
    return sorted({i.record_id for i in ep.intervals if i.start <= deadline})
