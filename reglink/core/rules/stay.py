"""`unregistered_stay`: presence intervals -> episodes -> deadline -> owed registration.

All functions are pure. Times are epoch seconds; ``None`` as an end means open-ended. They
work on the stay state's own objects (:class:`~reglink.stores.schema.Presence`,
:class:`~reglink.stores.schema.Registered`), which the rule reads from its codec and passes
on without copying: :data:`Interval` and :data:`Registration` name them here.
"""

from __future__ import annotations

from dataclasses import dataclass

from reglink.stores.schema import Presence, Registered

INF = float("inf")

#: Evidence of presence: record key, start, end (None: open), grace period.
Interval = Presence
#: A residence registration: record key, registered at, valid from, and the end of its last
#: valid day (00:00 after the inclusive ``valid_until`` day: an exclusive bound).
Registration = Registered


def _start_key(iv: Presence) -> tuple[float, str]:
    return iv.start, iv.key


def _registered_key(reg: Registered) -> tuple[float, str]:
    return reg.registered_at, reg.key


@dataclass(frozen=True, slots=True)
class Episode:
    start: float
    end: float | None
    intervals: tuple[Interval, ...]

    @property
    def deadline(self) -> float | None:
        """Earliest ``start + grace`` the episode still covers (has not ended before)."""
        end = INF if self.end is None else self.end
        best: float | None = None
        for i in self.intervals:
            due = i.start + i.grace
            if end >= due and (best is None or due < best):
                best = due
        return best


def episodes(intervals: list[Interval], gap: float) -> list[Episode]:
    """Join intervals (in one prefecture) whose gap is under ``gap`` seconds."""
    out: list[Episode] = []
    cur: list[Interval] = []
    cur_start, cur_end = 0.0, 0.0
    for iv in sorted(intervals, key=_start_key):
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


def covers(reg: Registration, deadline: float) -> bool:
    """The registration was filed by the deadline and is valid at it."""
    return (reg.registered_at <= deadline < reg.valid_until_end
            and reg.valid_from <= deadline)


def covered(deadline: float, registrations: list[Registration]) -> Registration | None:
    for reg in sorted(registrations, key=_registered_key):
        if covers(reg, deadline):
            return reg
    return None


def evidence_ids(ep: Episode, deadline: float) -> list[str]:
    """Records that place the person in the prefecture up to the deadline."""
    return sorted({i.key for i in ep.intervals if i.start <= deadline})
