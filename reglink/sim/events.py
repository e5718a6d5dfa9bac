"""Life in the window: hotel trips, moves (rent, job, residence registration), household-register
imports and the watchlist. Produces records without record_ids plus who they truly belong to.

Some persons already live away from home with a residence registration, recorded before or in
the window. When such a person moves, the old registration is deregistered in time, late or
never, and some in-time deregistrations reach the stream days after they were recorded (a
registry's late upload): the only records placed out of report-time order. These persons'
records are drawn from a random stream of their own, so the rest of the world is the same as
without them."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from itertools import accumulate

from reglink.sim import geo, names, noise
from reglink.sim.population import Person, Registry, birth_date, make_hidden_namesake

TZ = timezone(timedelta(hours=8))
ID_PREFIX = {"hotel": "H-", "rental": "R-", "residence": "T-", "job": "J-", "person": "HR-"}

MOVE_RATE = 0.004            # per person and day
MOVE_LOCAL = 0.15            # of moves: within the home prefecture (no registration owed)
MOVE_PRE_HOTEL = 0.30        # of non-local moves: a few hotel nights before the lease starts
MOVE_RENT = 0.85             # of moves: rent a flat (else: employer dormitory, job only)
MOVE_JOB_IF_RENT = 0.70
REG_TIMELY, REG_LATE = 0.78, 0.12   # the rest never register
TRIP_LOCAL = 0.12
LONG_STAY_REGISTERS = 0.5
PERSON_RECORD_SHARE = 0.25
WATCH_SHARE = 0.01
TRAP_SHARE = 0.2             # innocent-namesake traps, relative to real entries
REMOVE_SHARE = 0.08
FLOATING_SHARE = 0.10        # persons with a registration away from home when the window opens
FLOATING_MOVE = 0.45         # of those not moving anyway: they move in the window too
FLOATING_SINCE_DAYS = 200    # their registration was recorded up to this long before the move
DEREG_TIMELY, DEREG_LATE = 0.55, 0.25   # of their moves; the rest never deregister
DEREG_DELAYED = 0.30         # of in-time deregistrations: uploaded days after being recorded
DEREG_BY_PERMIT = 0.70       # of deregistrations of a registration with a permit number
DEREG_GRACE_DAYS = 14

_NIGHTS = list(range(1, 6)) + list(range(6, 15)) + list(range(20, 61, 5))
_NIGHTS_W = list(accumulate([35, 25, 15, 10, 7] + [5 / 9] * 9 + [3 / 9] * 9))  # cumulative
_REPORT_DELAY_DAYS = [0, 1, 2, 3, 4, 5]
_REPORT_DELAY_W = [30, 25, 15, 12, 10, 8]
_REASONS = ["court_warrant", "fugitive", "absconded_bail", "missing_person",
            "wanted_for_questioning", "fraud_investigation", "escaped_custody"]


@dataclass(slots=True)
class Rec:
    at: datetime | None
    source: str
    body: dict
    pid: str
    tags: list[str]
    order: int
    key: str = ""                      # record_id or watch_id, assigned at the end
    extra: dict = field(default_factory=dict)


def iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


class World:
    def __init__(self, rng: random.Random, people: list[Person], reg: Registry,
                 catalog: geo.Catalog, start: date, days: int, watch_share: float = WATCH_SHARE,
                 decoy_share: float = 0.0):
        self.rng = rng
        # share of watched persons given a decoy: an active namesake (same name, sex and birth
        # date, another ID) who sends records of their own; 0 leaves the world as it was
        self.decoy_share = decoy_share
        self.people = people
        self.reg = reg
        self.catalog = catalog
        self.start = start
        self.days = days
        self.watch_share = watch_share
        self.t0 = datetime.combine(start, time(0), TZ)
        self.t_end = self.t0 + timedelta(days=days)
        self.recs: list[Rec] = []
        self.watch: list[Rec] = []
        self.hidden: list[Person] = []
        self.emitted: dict[str, int] = {}
        self.stats = {"moves": 0, "moves_local": 0, "reg_timely": 0, "reg_late": 0, "reg_never": 0,
                      "trips": 0, "long_stays": 0, "dropped_outside_window": 0,
                      "floating": 0, "dereg_timely": 0, "dereg_delayed": 0, "dereg_late": 0,
                      "dereg_never": 0}
        self._permit = 0
        # the floating persons' own stream (seeded from the world's, which it leaves as is)
        self.side = random.Random(repr(rng.getstate()))
        self.last_move: tuple[geo.County, date | None] | None = None
        self.last_residence: dict = {}

    # --- helpers ---------------------------------------------------------------------------
    def at(self, d: date, h_lo: float, h_hi: float) -> datetime:
        minutes = self.rng.randrange(int(h_lo * 60), int(h_hi * 60))
        return datetime.combine(d, time(0), TZ) + timedelta(minutes=minutes)

    def emit(self, at: datetime | None, source: str, body: dict, p: Person,
             tags: list[str], before_window: bool = False) -> bool:
        """Add a record arriving at ``at`` (its report time, but for a delayed upload);
        ``before_window``: a registration recorded before the window opened is kept."""
        if at is not None and not ((before_window or self.t0 <= at) and at < self.t_end):
            self.stats["dropped_outside_window"] += 1
            return False
        self.recs.append(Rec(at, source, body, p.pid, tags, len(self.recs)))
        self.emitted[p.pid] = self.emitted.get(p.pid, 0) + 1
        return True

    def elsewhere(self, p: Person) -> geo.County:
        while True:
            c = self.rng.choices(geo.COUNTIES, cum_weights=geo.DEST_W)[0]
            if not geo.is_local(p.id18, c.code):
                return c

    def nearby(self, p: Person) -> geo.County:
        if p.area[:2] in geo.MUNICIPALITIES:
            cands = [c for c in geo.COUNTIES if c.code[:2] == p.area[:2]]
        else:
            cands = geo.BY_PREFECTURE.get(p.prefecture) or [geo.BY_CODE[p.area]]
        return self.rng.choice(cands)

    # --- sources ---------------------------------------------------------------------------
    def hotel_stay(self, p: Person, c: geo.County, ci: datetime, nights: int) -> datetime:
        rng = self.rng
        hotel_id, hotel_name = rng.choice(self.catalog.hotels[c.code])
        room = f"{rng.randint(2, 18)}{rng.randint(1, 40):02d}"
        co = self.at((ci - timedelta(hours=6)).date() + timedelta(days=nights), 6.5, 13)
        block, tags = noise.hotel_block(rng, p)
        drop_co = rng.random() < noise.HOTEL_NO_CHECKOUT
        if drop_co:
            tags.append("no_check_out")
        elif co >= self.t_end:
            tags.append("open_at_end")
        body = {"event": "check_in", "hotel_id": hotel_id}
        if rng.random() < 0.9:
            body["hotel_name"] = hotel_name
        body["city_code"] = c.code
        if rng.random() < 0.85:
            body["room"] = room
        body["time"] = iso(ci)
        body["person"] = block
        if not self.emit(ci, "hotel", body, p, tags):
            return co
        if not drop_co:
            # same card, same reading: the check-out repeats the check-in's name and number
            cblock = {"name": block["name"], "id_number": block["id_number"]}
            ctags = [t for t in tags if t.startswith("id_")]
            cbody = {"event": "check_out", "hotel_id": hotel_id, "city_code": c.code}
            if "room" in body:
                cbody["room"] = room
            cbody["time"] = iso(co)
            cbody["person"] = cblock
            self.emit(co, "hotel", cbody, p, ctags)
        return co

    def residence(self, p: Person, c: geo.County, addr: str, reg_at: datetime, tag: str,
                  before_window: bool = False) -> bool:
        rng = self.rng
        block, tags = noise.residence_block(rng, p)
        vf = reg_at.date()
        vu = vf + timedelta(days=rng.choice((182, 365, 365)) - 1)
        body: dict = {}
        if rng.random() < 0.85:
            self._permit += 1
            body["permit_no"] = f"{c.code}{vf:%y}{self._permit:06d}"
        body.update({"city_code": c.code, "address": addr, "registered_at": iso(reg_at),
                     "valid_from": vf.isoformat(), "valid_until": vu.isoformat(), "person": block})
        self.last_residence = body
        return self.emit(reg_at, "residence", body, p, tags + [tag], before_window)

    def deregistration(self, p: Person, reg: dict, reg_at: datetime, left_on: date | None,
                       arrives: datetime, tags: list[str]) -> None:
        """A deregistration of ``reg``, recorded at ``reg_at`` and arriving at ``arrives``:
        by its permit number, or by the prefecture of its ``city_code``."""
        rng = self.rng
        block, noise_tags = noise.residence_block(rng, p)
        body: dict = {"action": "deregister"}
        if "permit_no" in reg and rng.random() < DEREG_BY_PERMIT:
            body["permit_no"] = reg["permit_no"]
        body.update({"city_code": reg["city_code"], "registered_at": iso(reg_at)})
        if left_on is not None:
            body["left_on"] = left_on.isoformat()
        body["person"] = block
        self.emit(arrives, "residence", body, p, noise_tags + tags)

    def rental(self, p: Person, c: geo.County, addr: str, lease_start: date) -> None:
        rng = self.rng
        months = rng.choices((3, 6, 12), (2, 5, 5))[0]
        y, m = divmod(lease_start.month - 1 + months, 12)
        end = _safe_date(lease_start.year + y, m + 1, lease_start.day) - timedelta(days=1)
        delay = rng.choices(_REPORT_DELAY_DAYS, _REPORT_DELAY_W)[0]
        reg_at = self.at(lease_start + timedelta(days=delay), 8, 21.5)
        block, tags = noise.rental_block(rng, p)
        body: dict = {"property_id": f"F{c.code}-{rng.randrange(100000):05d}", "city_code": c.code,
                      "address": addr, "lease_start": lease_start.isoformat()}
        if rng.random() < 0.85:
            body["lease_end"] = end.isoformat()
        body["registered_at"] = iso(reg_at)
        if rng.random() < 0.85:
            lsex = rng.choice("MF")
            ls, lg = names.han_name(rng, lsex)
            lb = birth_date(rng, self.start, 35, 70)
            landlord = {"name": ls + lg}
            if rng.random() < 0.7:
                landlord["id_number"] = self.reg.issue_id(c.code, lb, lsex, "landlord")
            landlord["phone"] = self.reg.issue_phone("landlord")
            body["landlord"] = landlord
        body["person"] = block
        self.emit(reg_at, "rental", body, p, tags)

    def job(self, p: Person, c: geo.County, start_date: date) -> None:
        rng = self.rng
        employer_id, employer_name = rng.choice(self.catalog.firms[c.code])
        posted = self.at(start_date + timedelta(days=rng.choice((-1, 0, 0, 1, 1, 2, 3))), 9, 18.5)
        block, tags = noise.job_block(rng, p)
        body: dict = {}
        if employer_id:
            body["employer_id"] = employer_id
        body.update({"employer_name": employer_name, "city_code": c.code,
                     "start_date": start_date.isoformat(), "posted_at": iso(posted),
                     "person": block})
        self.emit(posted, "job", body, p, tags)

    # --- behaviour -------------------------------------------------------------------------
    def trips(self, p: Person, force: bool = False,
              busy: tuple[date, date] | None = None) -> None:
        """Hotel trips; none overlaps another, nor the ``busy`` days (a move's hotel nights)."""
        rng = self.rng
        day = 0.0
        n = 0
        while True:
            day += rng.expovariate(p.travel_rate) if p.travel_rate > 0 else self.days
            if force and n == 0 and day >= self.days:
                day = rng.randrange(self.days)
            if day >= self.days:
                return
            n += 1
            d = self.start + timedelta(days=int(day))
            nights = rng.choices(_NIGHTS, cum_weights=_NIGHTS_W)[0]
            if busy and d <= busy[1] and d + timedelta(days=nights + 1) >= busy[0]:
                day = (busy[1] - self.start).days + 1.0
                busy = None
                continue
            local = rng.random() < TRIP_LOCAL
            c = self.nearby(p) if local else self.elsewhere(p)
            if rng.random() < 0.9:
                ci = self.at(d, 13, 24)
            else:
                ci = self.at(d + timedelta(days=1), 0, 3)
            self.stats["trips"] += 1
            co = self.hotel_stay(p, c, ci, nights)
            if nights >= 20:
                self.stats["long_stays"] += 1
                if not local and rng.random() < LONG_STAY_REGISTERS:
                    reg_at = self.at(ci.date() + timedelta(days=rng.randint(3, 25)), 9, 17.5)
                    self.residence(p, c, self.catalog_hotel_address(c), reg_at, "long_stay")
            day = (co.date() - self.start).days + 1.0

    def catalog_hotel_address(self, c: geo.County) -> str:
        return geo.address(self.rng, c)

    def move(self, p: Person, m: date) -> tuple[date, date] | None:
        """Move on day ``m``; returns the days spent in a hotel before it, if any."""
        rng = self.rng
        busy = None
        local = rng.random() < MOVE_LOCAL
        self.stats["moves"] += 1
        self.stats["moves_local"] += local
        dest = self.nearby(p) if local else self.elsewhere(p)
        addr = geo.address(rng, dest)
        m0 = datetime.combine(m, time(0), TZ)
        cands: list[datetime] = []
        if not local and rng.random() < MOVE_PRE_HOTEL:
            nights = rng.randint(1, 4)
            ci = self.at(m - timedelta(days=nights), 15, 23.5)
            if ci >= self.t0:
                co = self.hotel_stay(p, dest, ci, nights)
                busy = (ci.date(), co.date())
                cands.append(ci + timedelta(days=30))
        rent = rng.random() < MOVE_RENT
        if rent:
            self.rental(p, dest, addr, m)
            cands.append(m0 + timedelta(days=3))
        if not rent or rng.random() < MOVE_JOB_IF_RENT:
            jc = dest if rng.random() < 0.8 else self.nearby_of(dest)
            sd = m + timedelta(days=rng.randint(0, 10) if rent else 0)
            self.job(p, jc, sd)
            cands.append(datetime.combine(sd, time(0), TZ) + timedelta(days=3))
        self.last_move = (dest, None)
        if local:
            return busy
        deadline = min(cands)
        r = rng.random()
        if r < REG_TIMELY:
            reg_at = self.at(deadline.date() - timedelta(days=rng.randint(1, 3)), 9, 17.5)
            self.stats["reg_timely"] += 1
            if self.residence(p, dest, addr, reg_at, "timely"):
                self.last_move = (dest, reg_at.date())
        elif r < REG_TIMELY + REG_LATE:
            reg_at = self.at(deadline.date() + timedelta(days=rng.randint(0, 20)), 9, 17.5)
            self.stats["reg_late"] += 1
            if self.residence(p, dest, addr, reg_at, "late"):
                self.last_move = (dest, reg_at.date())
        else:
            self.stats["reg_never"] += 1
        return busy

    def nearby_of(self, c: geo.County) -> geo.County:
        return self.rng.choice(geo.BY_PREFECTURE[c.prefecture])

    # --- whole run -------------------------------------------------------------------------
    def run(self) -> None:
        rng = self.rng
        p_move = 1.0 - (1.0 - MOVE_RATE) ** self.days
        watched = self.pick_watched()
        if self.decoy_share > 0:
            self.add_decoys(watched)
        floating = {p.pid for p in self.people if self.side.random() < FLOATING_SHARE}
        for p in self.people:
            busy = None
            self.last_move = None
            moved_on = None
            if rng.random() < p_move:
                moved_on = self.start + timedelta(days=rng.randrange(self.days))
                busy = self.move(p, moved_on)
            elif p.pid in floating:
                with self._side():
                    if self.rng.random() < FLOATING_MOVE:
                        moved_on = self.start + timedelta(days=self.rng.randrange(self.days))
                        busy = self.move(p, moved_on)
            self.trips(p, force=p.pid in watched and rng.random() < 0.85, busy=busy)
            if p.pid in floating:
                with self._side():
                    self.floating(p, moved_on)
        self.build_watchlist(watched)
        for p in self.people + self.hidden:
            share = 0.4 if p.hidden else PERSON_RECORD_SHARE
            if rng.random() < share:
                body = {"person": noise.register_block(p),
                        "address": geo.address(rng, geo.BY_CODE[p.area]), "city_code": p.area}
                self.emit(None, "person", body, p, [])

    @contextmanager
    def _side(self) -> Iterator[None]:
        """Draw from the floating persons' stream (the world's and the ID registry's)."""
        rng, reg_rng = self.rng, self.reg.rng
        self.rng = self.reg.rng = self.side
        try:
            yield
        finally:
            self.rng, self.reg.rng = rng, reg_rng

    def floating(self, p: Person, moved_on: date | None) -> None:
        """A person registered away from home since before the move on ``moved_on``, if
        any (``last_move`` says where to and when the new registration starts); the move
        deregisters the old registration in time, late or never."""
        rng = self.rng
        old = self.elsewhere(p)
        if moved_on is None:
            since = self.start + timedelta(days=rng.randrange(-FLOATING_SINCE_DAYS, self.days))
        else:
            since = moved_on - timedelta(days=rng.randint(20, FLOATING_SINCE_DAYS))
        self.stats["floating"] += 1
        if not self.residence(p, old, geo.address(rng, old), self.at(since, 9, 17.5),
                              "floating", before_window=True):
            return
        reg = self.last_residence
        if moved_on is None or self.last_move is None:
            return
        new_from = self.last_move[1]
        deadline = (new_from or moved_on) + timedelta(days=DEREG_GRACE_DAYS)
        left_on = moved_on - timedelta(days=rng.randint(0, 2)) if rng.random() < 0.6 else None
        r = rng.random()
        if r < DEREG_TIMELY:
            day = moved_on + timedelta(days=rng.randint(-2, 12))
            day = min(day, deadline - timedelta(days=1))
            if left_on is not None:
                left_on = min(left_on, day)
            at = self.at(day, 9, 17.5)
            arrives, tags = at, ["dereg_timely"]
            if rng.random() < DEREG_DELAYED:
                arrives = at + timedelta(days=rng.randint(3, 25))
                tags.append("out_of_order")
                self.stats["dereg_delayed"] += 1
            self.stats["dereg_timely"] += 1
            self.deregistration(p, reg, at, left_on, arrives, tags)
        elif r < DEREG_TIMELY + DEREG_LATE:
            at = self.at(deadline + timedelta(days=rng.randint(0, 30)), 9, 17.5)
            self.stats["dereg_late"] += 1
            self.deregistration(p, reg, at, left_on, at, ["dereg_late"])
        else:
            self.stats["dereg_never"] += 1

    def pick_watched(self) -> dict[str, int]:
        n = max(2, round(len(self.people) * self.watch_share))
        chosen = self.rng.sample(range(len(self.people)), min(n, len(self.people)))
        return {self.people[i].pid: i for i in sorted(chosen)}

    def add_decoys(self, watched: dict[str, int]) -> None:
        """Decoys for a share of the watched persons: namesakes born the same day, with their
        own ID, phone and home county, who travel, rent and work like anyone (so some of
        their records carry no ID). Drawn from a stream of their own."""
        drng = random.Random(f"decoys|{self.rng.random()}")
        for i in sorted(watched.values()):
            if drng.random() >= self.decoy_share:
                continue
            w = self.people[i]
            pid = f"P{len(self.people) + 1:07d}"
            area = drng.choices(geo.COUNTIES, cum_weights=geo.ORIGIN_W)[0].code
            self.people.append(Person(
                pid, w.surname, w.given, w.sex, w.birth, area,
                self.reg.issue_id(area, w.birth, w.sex, pid), self.reg.issue_phone(pid),
                w.travel_rate, minority=w.minority, namesake_of=w.pid))
            self.stats["decoys"] = self.stats.get("decoys", 0) + 1

    def build_watchlist(self, watched: dict[str, int]) -> None:
        rng = self.rng
        horizon = self.start + timedelta(days=self.days)
        entries: list[tuple[Person, dict, list[str]]] = []
        for i in watched.values():
            p = self.people[i]
            r = rng.random()
            if r < 0.35:
                block = noise.register_block(p)
                kind = "full"
            else:
                block = {"name": p.name, "birth_date": p.birth.isoformat()}
                if rng.random() < 0.6:
                    block["sex"] = p.sex
                kind = "partial"
            if rng.random() < 0.3:
                aliases = [noise.alias_for(rng, p) for _ in range(rng.randint(1, 2))]
                block["aliases"] = sorted(set(aliases) - {p.name})
                kind += "+aliases"
            entries.append((p, block, [kind]))
        n_traps = max(1, round(len(watched) * TRAP_SHARE))
        innocents = [p for p in self.people if p.pid not in watched and not p.minority]
        for x in rng.sample(innocents, min(n_traps, len(innocents))):
            y_pid = f"P{len(self.people) + len(self.hidden) + 1:07d}"
            y = make_hidden_namesake(rng, self.reg, x, y_pid)
            self.hidden.append(y)
            block = noise.register_block(y)
            entries.append((y, block, ["trap", f"innocent:{x.pid}"]))
        rng.shuffle(entries)
        removes = []
        for k, (p, block, tags) in enumerate(entries, 1):
            prio = rng.choices(("high", "medium", "low"), (25, 45, 30))[0]
            body = {"action": "add", "priority": prio, "reason": rng.choice(_REASONS)}
            if rng.random() < 0.4:
                body["valid_until"] = (horizon + timedelta(days=rng.randint(90, 720))).isoformat()
            body["person"] = block
            rec = Rec(None, "watchlist", body, p.pid, tags, k, key=f"W-{k:04d}")
            self.watch.append(rec)
            if rng.random() < REMOVE_SHARE:
                rb = {"action": "remove", "priority": body["priority"], "person": dict(block)}
                removes.append(Rec(None, "watchlist", rb, p.pid, tags + ["removed"], k,
                                   key=rec.key))
                rec.tags.append("removed")
        self.watch.extend(removes)


def _safe_date(y: int, m: int, d: int) -> date:
    while True:
        try:
            return date(y, m, d)
        except ValueError:
            d -= 1
