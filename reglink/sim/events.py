"""Life in the window: hotel trips, moves (rent, job, residence registration), household-register
imports and the watchlist. Produces records without record_ids plus who they truly belong to."""

from __future__ import annotations

import random
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
                 catalog: geo.Catalog, start: date, days: int, watch_share: float = WATCH_SHARE):
        self.rng = rng
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
                      "trips": 0, "long_stays": 0, "dropped_outside_window": 0}
        self._permit = 0

    # --- helpers ---------------------------------------------------------------------------
    def at(self, d: date, h_lo: float, h_hi: float) -> datetime:
        minutes = self.rng.randrange(int(h_lo * 60), int(h_hi * 60))
        return datetime.combine(d, time(0), TZ) + timedelta(minutes=minutes)

    def emit(self, at: datetime | None, source: str, body: dict, p: Person,
             tags: list[str]) -> bool:
        if at is not None and not (self.t0 <= at < self.t_end):
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

    def residence(self, p: Person, c: geo.County, addr: str, reg_at: datetime, tag: str) -> None:
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
        self.emit(reg_at, "residence", body, p, tags + [tag])

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
        if local:
            return busy
        deadline = min(cands)
        r = rng.random()
        if r < REG_TIMELY:
            reg_at = self.at(deadline.date() - timedelta(days=rng.randint(1, 3)), 9, 17.5)
            self.stats["reg_timely"] += 1
            self.residence(p, dest, addr, reg_at, "timely")
        elif r < REG_TIMELY + REG_LATE:
            reg_at = self.at(deadline.date() + timedelta(days=rng.randint(0, 20)), 9, 17.5)
            self.stats["reg_late"] += 1
            self.residence(p, dest, addr, reg_at, "late")
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
        for p in self.people:
            busy = None
            if rng.random() < p_move:
                busy = self.move(p, self.start + timedelta(days=rng.randrange(self.days)))
            self.trips(p, force=p.pid in watched and rng.random() < 0.85, busy=busy)
        self.build_watchlist(watched)
        for p in self.people + self.hidden:
            share = 0.4 if p.hidden else PERSON_RECORD_SHARE
            if rng.random() < share:
                body = {"person": noise.register_block(p),
                        "address": geo.address(rng, geo.BY_CODE[p.area]), "city_code": p.area}
                self.emit(None, "person", body, p, [])

    def pick_watched(self) -> dict[str, int]:
        n = max(2, round(len(self.people) * self.watch_share))
        chosen = self.rng.sample(range(len(self.people)), min(n, len(self.people)))
        return {self.people[i].pid: i for i in sorted(chosen)}

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
