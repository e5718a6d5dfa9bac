"""Population statistics (docs/contract.md §3.4, 统计): per prefecture and calendar date (CST),
how many linked persons are present, registered, present without the registration they owe,
and how many registrations start, end or stay open past their deregistration deadline.

A plug-in like the alert rules (registered last, so it sees the state the rules have kept for
the record): it emits ``Out("stats", "<prefecture>|<date>", row)`` and no alerts.

What a person adds to the counts is a function of what the rules keep about them alone (the
stays ``s:<person_id>`` of ``unregistered_stay``, the residence ledger ``rg:<person_id>`` of
``stale_registration``, the identity's resident ID and home) and of nothing else, so it does
not depend on the order records arrive in (:func:`contribution`): day ranges per
(prefecture, measure), kept in ``pc:<person_id>``. Each prefecture's counts are kept as a
difference array (day -> change of each count on that day): a range adds one on its first
day and takes it off after its last, an open range never does. The array is stored in blocks
of :data:`BLOCK` days, ``pb:<prefecture>:<block>``, with what each block adds up to in
``pp:<prefecture>``: a record changes a block or two, and the counts of a day are the sums of
the blocks before it plus the changes of its own block up to it. The state thus grows with
prefectures x days of change, not with persons' records; the per-person ranges are what lets
a merge or a late record take a person's old share off and add the new.

Rows are emitted once final: when the watermark has passed the end of the day plus the
allowed lateness. A chain of timers ``population|<day>`` emits the rows of every prefecture
for the days that became final; a change to a day already final re-issues the rows it
changed (the last row for a (prefecture, date) wins; a row whose counts all fell to zero is
re-issued with zeros).

On bounded input (replay, ``RuleContext.bounded``) only the last row of each (prefecture,
date) is kept, and those are the counts of the final state: the plug-in keeps nothing record
by record and, at the end of the input, adds up every live identity's contribution once
(:func:`from_scratch`). The two ways agree (``tests/unit/test_population.py`` runs both over
the same records in several arrival orders).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from typing import Any, ClassVar

from matchers import fastjson
from matchers.normalise import same_place
from matchers.types import Identity
from reglink.core.contract import report_time
from reglink.core.outbox import Out
from reglink.core.rules import stay as st
from reglink.core.rules.base import AlertRule, IdentityChange, LinkedRecord, RuleContext
from reglink.core.rules.stale_registration import closed_at, verdict
from reglink.stores import schema as sk

#: The counts of a row, in the order they are kept.
FIELDS = ("present", "registered", "present_unregistered", "arrivals", "departures",
          "stale_open")
PRESENT, REGISTERED, UNREGISTERED, ARRIVALS, DEPARTURES, STALE_OPEN = range(len(FIELDS))
#: The last day of a range that has no end.
OPEN = 10**7
DAY = 86400
CST_OFFSET = 8 * 3600
#: Days per stored block of a prefecture's difference array.
BLOCK = 32
EPOCH = date(1970, 1, 1)

Range = tuple[int, int]  # first and last day (inclusive), days since 1970-01-01 in CST
#: What a person adds: (prefecture, measure) -> disjoint sorted day ranges.
Contribution = dict[tuple[str, int], list[Range]]
#: A prefecture's difference array: day -> change of each count from that day on.
Deltas = dict[int, list[int]]


# ------------------------------------------------------------------ days and ranges
def day_of(epoch: float) -> int:
    """The CST calendar day of an instant, as days since 1970-01-01."""
    return int((epoch + CST_OFFSET) // DAY)


def day_iso(day: int) -> str:
    return (EPOCH + timedelta(days=day)).isoformat()


def last_day(start: float, end: float | None) -> int:
    """The last day an interval from ``start`` to ``end`` (exclusive; None: open) touches."""
    if end is None:
        return OPEN
    return day_of(end - 1) if end > start else day_of(start)


def final_day(watermark: float, lateness: float) -> int | None:
    """The last day whose row is final under ``watermark``: its end plus the allowed
    lateness has passed. None before the watermark has a value."""
    if watermark == float("-inf"):
        return None
    return int((watermark - lateness + CST_OFFSET) // DAY) - 1


def day_end(day: int) -> float:
    """The end of a day (00:00 CST of the next), epoch seconds."""
    return float((day + 1) * DAY - CST_OFFSET)


def merge(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, disjoint and non-adjacent ranges covering the same days."""
    out: list[Range] = []
    for a, b in sorted(r for r in ranges if r[0] <= r[1]):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def intersect(xs: list[Range], ys: list[Range]) -> list[Range]:
    """The days in both (each argument sorted and disjoint, as :func:`merge` leaves it)."""
    out: list[Range] = []
    i = j = 0
    while i < len(xs) and j < len(ys):
        (a, b), (c, d) = xs[i], ys[j]
        if max(a, c) <= min(b, d):
            out.append((max(a, c), min(b, d)))
        if b < d:
            i += 1
        else:
            j += 1
    return out


def subtract(xs: list[Range], ys: list[Range]) -> list[Range]:
    out: list[Range] = []
    for a, b in xs:
        pieces = [(a, b)]
        for c, d in ys:
            pieces = [p for x, y in pieces
                      for p in ((x, min(y, c - 1)), (max(x, d + 1), y)) if p[0] <= p[1]]
        out += pieces
    return merge(out)


# ------------------------------------------------------------------ one person
def owes(ident: Identity | None, pref: str) -> bool:
    """Whether the person owes registration in ``pref`` (docs/contract.md §2.2)."""
    return (ident is not None and bool(ident.rid_hash) and bool(ident.home)
            and not same_place(ident.home or "", pref))


def contribution(stays: sk.Stays, ledger: sk.ResidenceLedger, ident: Identity | None,
                 gap: float, grace_deregistration: float) -> Contribution:
    """The days on which one person counts in each (prefecture, measure): a function of the
    person's stays, residence ledger and identity only."""
    got: dict[tuple[str, int], list[Range]] = {}

    def add(pref: str, measure: int, a: int, b: int) -> None:
        got.setdefault((pref, measure), []).append((a, b))

    for r in ledger.registrations:
        closed = closed_at(r, ledger.deregistrations)
        end = r.valid_until_end if closed is None else min(closed, r.valid_until_end)
        first, last = day_of(r.valid_from), day_of(end - 1)
        add(r.pref, REGISTERED, max(first, day_of(r.registered_at)), last)
        add(r.pref, ARRIVALS, first, first)
        gone = day_of(closed) if closed is not None and closed < r.valid_until_end \
            else day_of(r.valid_until_end - 1)
        add(r.pref, DEPARTURES, gone, gone)
        v = verdict(r, ledger, grace_deregistration)
        if v.status is not None and v.deadline is not None:
            add(r.pref, STALE_OPEN, max(first, day_of(v.deadline)), last)
    for pref in stays:
        ps = stays[pref]
        for iv in ps.intervals:
            add(pref, PRESENT, day_of(iv.start), last_day(iv.start, iv.end))
        if not ps.intervals or not owes(ident, pref):
            continue
        for ep in st.episodes(ps.intervals, gap):
            if ep.deadline is not None:
                add(pref, UNREGISTERED, day_of(ep.deadline), last_day(ep.start, ep.end))
    out: Contribution = {k: merge(v) for k, v in got.items()}
    for pref in {p for p, m in out if m == UNREGISTERED}:
        days = intersect(out[(pref, UNREGISTERED)], out.get((pref, PRESENT), []))
        out[(pref, UNREGISTERED)] = subtract(days, out.get((pref, REGISTERED), []))
    return {k: v for k, v in sorted(out.items()) if v}


def from_scratch(kv: Any, store: Any, gap: float, grace_deregistration: float
                 ) -> dict[str, Deltas]:
    """Every prefecture's difference array counted from the committed state alone: the sum
    of the contributions of the identities live in ``kv`` (a merged-away identity has no
    identity key; its stays and registrations moved to the survivor)."""
    total: dict[str, Deltas] = {}
    for key in sorted(kv.scan(sk.IDENTITY)):
        pid = key[len(sk.IDENTITY):]
        stays = sk.decode_stays(kv.get(sk.stays(pid)))
        ledger = sk.decode_residences(kv.get(sk.residences(pid)))
        if len(stays) or ledger.registrations:
            deltas(contribution(stays, ledger, store.get(pid), gap, grace_deregistration), 1,
                   total)
    return total


def encode_contribution(c: Contribution) -> str:
    return fastjson.dumps([[pref, m, a, b] for (pref, m), rs in c.items() for a, b in rs])


def decode_contribution(raw: str | bytes | None) -> Contribution:
    out: Contribution = {}
    for pref, m, a, b in fastjson.loads(raw) if raw else ():
        out.setdefault((pref, m), []).append((a, b))
    return out


def deltas(c: Contribution, sign: int, into: dict[str, Deltas]) -> None:
    """Add ``sign`` times the difference array of ``c`` to ``into`` (per prefecture)."""
    for (pref, m), rs in c.items():
        _add_ranges(into.setdefault(pref, {}), m, rs, sign)


def _add_ranges(d: Deltas, m: int, rs: list[Range], sign: int) -> None:
    for a, b in rs:
        d.setdefault(a, [0] * len(FIELDS))[m] += sign
        if b < OPEN:
            d.setdefault(b + 1, [0] * len(FIELDS))[m] -= sign


def difference(new: Contribution, old: Contribution) -> dict[str, Deltas]:
    """The change of the difference arrays from ``old`` to ``new`` (per prefecture): what
    ``deltas(new, 1)`` and ``deltas(old, -1)`` add up to, computed only for the (prefecture,
    measure) pairs whose ranges differ (a record most often moves one range's end)."""
    into: dict[str, Deltas] = {}
    for key, rs in new.items():
        was = old.get(key)
        if rs != was:
            d = into.setdefault(key[0], {})
            _add_ranges(d, key[1], rs, 1)
            if was:
                _add_ranges(d, key[1], was, -1)
    for key, was in old.items():
        if key not in new:
            _add_ranges(into.setdefault(key[0], {}), key[1], was, -1)
    return into


def segments(arrays: list[Deltas], lo: int, hi: int
             ) -> Iterator[tuple[int, int, list[list[int]]]]:
    """``(first, last, counts of each array)`` over [lo, hi], in pieces where every array's
    running sum is constant."""
    cuts = sorted({lo, *(d for arr in arrays for d in arr if lo < d <= hi)})
    sums = [[0] * len(FIELDS) for _ in arrays]
    for i, arr in enumerate(arrays):
        for d, v in arr.items():
            if d <= lo:
                sums[i] = [x + y for x, y in zip(sums[i], v, strict=True)]
    for j, cut in enumerate(cuts):
        if j:
            for i, arr in enumerate(arrays):
                if cut in arr:
                    sums[i] = [x + y for x, y in zip(sums[i], arr[cut], strict=True)]
        end = cuts[j + 1] - 1 if j + 1 < len(cuts) else hi
        yield cut, end, [list(s) for s in sums]


def row(pref: str, day: int, counts: list[int]) -> dict[str, object]:
    return {"prefecture": pref, "date": day_iso(day), **dict(zip(FIELDS, counts, strict=True))}


def encode_deltas(d: Deltas) -> str:
    """``[[day, [change of each count]], ...]`` (in no particular order)."""
    return fastjson.dumps(list(d.items()))


def decode_deltas(raw: str | bytes | None) -> Deltas:
    return {day: v for day, v in fastjson.loads(raw)} if raw else {}


# ------------------------------------------------------------------ the plug-in
class Population(AlertRule):
    name: ClassVar[str] = "population"
    reads: ClassVar[tuple[str, ...]] = (sk.STAYS, sk.RESIDENCES, sk.IDENTITY, sk.MERGED,
                                        sk.POPULATION, sk.POPULATION_COUNTS,
                                        sk.POPULATION_BLOCK, sk.POPULATION_PREFECTURES, sk.DUE)
    writes: ClassVar[tuple[str, ...]] = (sk.POPULATION, sk.POPULATION_COUNTS,
                                         sk.POPULATION_BLOCK, sk.POPULATION_PREFECTURES,
                                         sk.DUE)
    emits: ClassVar[tuple[str, ...]] = ("stats",)

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        s = ctx.settings
        self.gap = float(s.episode_gap_s)
        self.grace = float(s.grace_deregistration_s)
        self.lateness = float(s.lateness_s)
        self.bounded = ctx.bounded  # counted once at the end of the input (replay)
        # key -> (the stored value, decoded): a value read again as the same object (the
        # embedded store hands back what was set) is not decoded again; a value of another
        # unit of work, or read from Redis, is a new object and decoded afresh
        self._decoded: dict[str, tuple[str | bytes, Deltas]] = {}

    # ------------------------------------------------------------------ state
    def person_keys(self, person_id: str) -> list[str]:
        return [] if self.bounded else [sk.population(person_id)]

    def keys_ahead(self, record: dict[str, Any], person: Any,
                   blocking_keys: list[str]) -> tuple[list[str], list[str]]:
        """The counts a record most often changes, read with the batch's other reads: its
        prefecture's block totals and the blocks of its report day and the 31 days before
        (a presence starts at or before it is reported). What else a merge or an older
        interval changes is read when needed."""
        if self.bounded:
            return [], []
        city = record.get("city_code")
        rt = report_time(record)
        if not city or rt is None:
            return [], []
        pref, day = str(city)[:4], day_of(rt.timestamp())
        blocks = {day // BLOCK, (day - 31) // BLOCK}
        return [sk.population_counts(pref),
                *(sk.population_block(pref, b) for b in sorted(blocks))], []

    def _load(self, key: str) -> Deltas:
        """A stored day (or block) -> counts map (a copy the caller may change)."""
        raw = self.ctx.kv.get(key)
        if not raw:
            return {}
        seen = self._decoded.get(key)
        if seen is None or seen[0] is not raw:
            seen = self._decoded[key] = (raw, decode_deltas(raw))
        return dict(seen[1])

    def _store(self, key: str, value: Deltas) -> None:
        """Store a map (the caller no longer changes ``value``); an empty one is deleted."""
        if not value:
            self.ctx.kv.delete(key)
            self._decoded.pop(key, None)
            return
        raw = encode_deltas(value)
        self.ctx.kv.set(key, raw)
        self._decoded[key] = (raw, value)

    def _read(self, pref: str, lo: int, hi: int) -> Deltas:
        """The prefecture's difference array as far as the days [lo, hi] need it: the
        changes in the blocks they fall in, and what every earlier block adds up to, on
        ``lo`` (:func:`segments` over [lo, hi] gives the counts)."""
        totals = self._load(sk.population_counts(pref))
        first, last = lo // BLOCK, hi // BLOCK
        out: Deltas = {}
        carry = [0] * len(FIELDS)
        for b in sorted(totals):
            if b < first:
                carry = [x + y for x, y in zip(carry, totals[b], strict=True)]
            elif b <= last:
                out.update(self._load(sk.population_block(pref, b)))
        out[lo] = [x + y for x, y in zip(out.get(lo, [0] * len(FIELDS)), carry, strict=True)]
        return out

    def _final(self) -> int | None:
        return final_day(self.ctx.watermark.value, self.lateness)

    # ------------------------------------------------------------------ hooks
    def on_identity_change(self, change: IdentityChange, event: LinkedRecord) -> list[Out]:
        """A merge: the absorbed identity's share is taken off with the record's own
        update (:meth:`on_record`)."""
        if change.kind == "merged" and not self.bounded:
            absorbed = event.notes.setdefault(self.name, [])
            absorbed.append(change.person_id)  # type: ignore[attr-defined]
        return []

    def on_record(self, event: LinkedRecord) -> list[Out]:
        if self.bounded:
            return []
        kv = self.ctx.kv
        pid = event.person_id
        absorbed: list[str] = event.notes.get(self.name, [])  # type: ignore[assignment]
        old_raw = kv.get(sk.population(pid))
        stays = self.load(sk.stays(pid), sk.decode_stays)
        ledger = self.load(sk.residences(pid), sk.decode_residences)
        if not old_raw and not absorbed and not len(stays) and not ledger.registrations:
            return []
        new = contribution(stays, ledger, event.identity, self.gap, self.grace)
        old = decode_contribution(old_raw)
        if new == old and not absorbed:
            return []
        change = difference(new, old)
        for other in absorbed:
            key = sk.population(other)
            deltas(decode_contribution(kv.get(key)), -1, change)
            kv.delete(key)
        if new:
            kv.set(sk.population(pid), encode_contribution(new))
        elif old_raw:
            kv.delete(sk.population(pid))
        return self._apply(change)

    def on_timer(self, parts: tuple[str, ...]) -> list[Out]:
        """Days up to the final one became final: every prefecture's rows for them."""
        start, final = int(parts[0]), self._final()
        if final is None or final < start:
            return []
        outs: list[Out] = []
        kv = self.ctx.kv
        prefs = sorted(kv.smembers(sk.POPULATION_PREFECTURES))
        # every prefecture's totals, then the blocks the rows need: two round trips on
        # Redis, not two per prefecture
        kv.prefetch([sk.population_counts(pref) for pref in prefs], [])
        kv.prefetch([sk.population_block(pref, b) for pref in prefs
                     for b in self._load(sk.population_counts(pref))
                     if start // BLOCK <= b <= final // BLOCK], [])
        for pref in prefs:
            totals = self._load(sk.population_counts(pref))
            if not totals:
                continue
            lo = max(start, min(totals) * BLOCK)
            counts = self._read(pref, lo, final)
            for a, b, (now,) in segments([counts], lo, final):
                if any(now):
                    outs += [self._row(pref, day, now) for day in range(a, b + 1)]
            self._gauge(pref, final, counts)
        self.schedule((str(final + 1),), day_end(final + 1) + self.lateness)
        return outs

    def on_end_of_input(self) -> list[Out]:
        """Bounded input: the rows of every final day, from the final state at once."""
        final = self._final()
        if not self.bounded or final is None:
            return []
        total = from_scratch(self.ctx.kv, self.ctx.store, self.gap, self.grace)
        outs: list[Out] = []
        for pref in sorted(total):
            counts = total[pref]  # never empty: a contribution holds no empty range list
            lo = min(counts)
            for a, b, (now,) in segments([counts], lo, max(lo, final)):
                if any(now):
                    outs += [self._row(pref, day, now) for day in range(a, min(b, final) + 1)]
            self._gauge(pref, final, counts)
        return outs

    # ------------------------------------------------------------------ counts
    def _apply(self, change: dict[str, Deltas]) -> list[Out]:
        """Add a change to the prefectures' counts; re-issue the final rows it changed."""
        kv, final = self.ctx.kv, self._final()
        outs: list[Out] = []
        for pref in sorted(change):
            net = {d: v for d, v in change[pref].items() if any(v)}
            if not net:
                continue
            totals = self._load(sk.population_counts(pref))
            if not totals:
                kv.sadd(sk.POPULATION_PREFECTURES, [pref])
            blocks: dict[int, Deltas] = {}
            for d, v in net.items():
                blocks.setdefault(d // BLOCK, {})[d] = v
            for b, part in blocks.items():
                key = sk.population_block(pref, b)
                block = self._load(key)
                # what the block adds up to moves by what its days move by
                total = totals.get(b) or [0] * len(FIELDS)
                for d, v in part.items():
                    was = block.get(d)
                    now = [x + y for x, y in zip(was, v, strict=True)] if was else v
                    if any(now):
                        block[d] = now
                    elif was:
                        del block[d]
                    total = [x + y for x, y in zip(total, v, strict=True)]
                self._store(key, block)
                if block:
                    totals[b] = total
                else:
                    totals.pop(b, None)
            self._store(sk.population_counts(pref), totals)
            if final is None or min(net) > final:
                continue
            counts = self._read(pref, min(net), final)
            for a, b, (now, moved) in segments([counts, net], min(net), final):
                if any(moved):
                    outs += [self._row(pref, day, now) for day in range(a, b + 1)]
            self._gauge(pref, final, counts)
        # the rows of days not final yet come with the timer of the next day to become final
        nxt = 0 if final is None else final + 1
        self.schedule((str(nxt),), day_end(nxt) + self.lateness)
        return outs

    def current(self, topic: str, key: str) -> dict[str, Any] | None:
        """A statistics row as the counts stand now (``key``: ``<prefecture>|<date>``)."""
        if topic != "stats":
            return None
        pref, _, iso_date = key.partition("|")
        day = (date.fromisoformat(iso_date) - EPOCH).days
        ((_a, _b, (counts,)),) = list(segments([self._read(pref, day, day)], day, day))
        return row(pref, day, counts)

    def _row(self, pref: str, day: int, counts: list[int]) -> Out:
        value = row(pref, day, counts)
        return self.ctx.outbox.keep(Out("stats", f"{pref}|{value['date']}", value))

    def _gauge(self, pref: str, day: int, counts: Deltas) -> None:
        """The gauges of a prefecture show its latest final day."""
        ((_a, _b, (now,)),) = list(segments([counts], day, day))
        self.ctx.metrics.set_population(pref, day_end(day) - DAY,
                                        dict(zip(FIELDS, now, strict=True)))
