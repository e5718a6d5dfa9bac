"""Ground truth computed from the emitted records and the true person of each, with default
settings: the alerts of docs/contract.md §2 (``unregistered_stay``, ``stale_registration``,
``watchlist_match``) and the population statistics of §3.4. Independent of reglink's own rule
code."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, tzinfo

from reglink.sim import geo, ids

GRACE = {"rental": timedelta(days=3), "job": timedelta(days=3), "hotel": timedelta(days=30)}
GAP = timedelta(hours=24)
LATENESS = timedelta(hours=1)
DEREG_GRACE = timedelta(days=14)


def known_id(id_number: str | None) -> str | None:
    """A valid 18-digit ID, or a 15-digit one upgraded; None otherwise."""
    if not id_number:
        return None
    s = ids.normalise(id_number)
    if len(s) == 18 and ids.is_valid18(s):
        return s
    if len(s) == 15 and s.isdigit():
        return ids.upgrade15(s)
    return None


def _midnight(d: str, tz) -> datetime:
    return datetime.combine(date.fromisoformat(d), time(0), tz)


def report_time(rec: dict) -> str | None:
    return {"hotel": rec.get("time"), "rental": rec.get("registered_at"),
            "residence": rec.get("registered_at"), "job": rec.get("posted_at")}.get(rec["source"])


def _by_person(records: list[tuple[dict, str]]
               ) -> tuple[dict[str, list[dict]], datetime, tzinfo | None] | None:
    """``records`` grouped by true person, the final watermark (the latest report time less
    the allowed lateness) and the records' time zone; None when no record has a report
    time."""
    by_person: dict[str, list[dict]] = defaultdict(list)
    reports = []
    for rec, pid in records:
        by_person[pid].append(rec)
        rt = report_time(rec)
        if rt:
            reports.append(datetime.fromisoformat(rt))
    if not reports:
        return None
    return by_person, max(reports) - LATENESS, reports[0].tzinfo


def unregistered_stays(records: list[tuple[dict, str]]) -> list[dict]:
    """``records``: (record, true person id) for every emitted record (watchlist excluded).
    Returns one dict per alert that a correct system raises by the end of the replay."""
    seen = _by_person(records)
    if seen is None:
        return []
    by_person, watermark, tz = seen
    far = datetime.max.replace(tzinfo=tz)  # in the records' time zone
    alerts = []
    for pid in sorted(by_person):
        recs = by_person[pid]
        idn = next((k for r in recs if (k := known_id(r["person"].get("id_number")))), None)
        if idn is None:
            continue
        iv = _presence(recs, tz, far)
        regs = [r for r in recs if r["source"] == "residence" and not _is_dereg(r)]
        deregs = [r for r in recs if r["source"] == "residence" and _is_dereg(r)]
        ends = {r["record_id"]: _closed(r, deregs, tz) for r in regs}
        for pref in sorted(iv):
            if geo.is_local(idn, pref + "00"):
                continue
            for ep in _episodes(iv[pref]):
                start, end, members = ep
                cands = [s + g for s, _e, g, _ids in members if end >= s + g]
                if not cands:
                    continue
                deadline = min(cands)
                if deadline > watermark:
                    continue
                if any(r["city_code"][:4] == pref
                       and datetime.fromisoformat(r["registered_at"]) <= deadline
                       and deadline < ends[r["record_id"]]
                       and _midnight(r["valid_from"], tz) <= deadline for r in regs):
                    continue
                rids = sorted({i for m in members for i in m[3]})
                alerts.append({"rule": "unregistered_stay", "person": pid, "prefecture": pref,
                               "deadline": deadline.isoformat(timespec="seconds"),
                               "episode_start": start.isoformat(timespec="seconds"),
                               "episode_end": (None if end == far
                                               else end.isoformat(timespec="seconds")),
                               "record_ids": rids})
    return alerts


def _presence(recs: list[dict], tz, far: datetime
              ) -> dict[str, list[tuple[datetime, datetime, timedelta, list[str]]]]:
    """One person's presence intervals per prefecture: (start, end, grace, record ids);
    ``far`` is the end of an open interval."""
    # a job is what its latest report with an end_date says, else its first report
    jobs: dict[str, dict] = {}
    for r in sorted((r for r in recs if r["source"] == "job"),
                    key=lambda r: (bool(r.get("end_date")), r["posted_at"])):
        if r.get("end_date") or r["record_id"] not in jobs:
            jobs[r["record_id"]] = r
    jobs_seen: set[str] = set()
    # presence intervals per prefecture: (start, end, grace, record_ids)
    iv: dict[str, list[tuple[datetime, datetime, timedelta, list[str]]]] = defaultdict(list)
    hotel = sorted((r for r in recs if r["source"] == "hotel"), key=lambda r: r["time"])
    open_in: dict[str, dict] = {}
    for r in hotel:
        if r["event"] == "check_in":
            if r["hotel_id"] in open_in:   # check-in without check-out: stays open
                o = open_in[r["hotel_id"]]
                iv[o["city_code"][:4]].append((datetime.fromisoformat(o["time"]), far,
                                               GRACE["hotel"], [o["record_id"]]))
            open_in[r["hotel_id"]] = r
        else:
            o = open_in.pop(r["hotel_id"], None)
            if o is not None:
                start = datetime.fromisoformat(o["time"])
                end = datetime.fromisoformat(r["time"])
                iv[o["city_code"][:4]].append((start, end, GRACE["hotel"],
                                               [o["record_id"], r["record_id"]]))
    for o in open_in.values():
        iv[o["city_code"][:4]].append((datetime.fromisoformat(o["time"]), far, GRACE["hotel"],
                                       [o["record_id"]]))
    for r in recs:
        if r["source"] == "rental":
            end = far
            if r.get("lease_end"):
                end = _midnight(r["lease_end"], tz) + timedelta(days=1)
            iv[r["city_code"][:4]].append((_midnight(r["lease_start"], tz), end,
                                           GRACE["rental"], [r["record_id"]]))
        elif r["source"] == "job" and r["record_id"] not in jobs_seen:
            job = jobs[r["record_id"]]
            jobs_seen.add(r["record_id"])
            end = far
            if job.get("end_date"):
                end = _midnight(job["end_date"], tz) + timedelta(days=1)
            iv[r["city_code"][:4]].append((_midnight(job["start_date"], tz), end,
                                           GRACE["job"], [r["record_id"]]))
    return iv


def _is_dereg(rec: dict) -> bool:
    return rec.get("action") == "deregister"


def _left(dereg: dict, tz) -> datetime:
    """00:00 of the day the person left: ``left_on``, else the day it was recorded."""
    day = dereg.get("left_on") or dereg["registered_at"][:10]
    return _midnight(day, tz)


def _ends(dereg: dict, reg: dict, tz) -> bool:
    """Whether ``dereg`` ends ``reg`` (docs/contract.md §1.2)."""
    if dereg.get("permit_no"):
        return dereg["permit_no"] == reg.get("permit_no")
    left = _left(dereg, tz)
    return (dereg["city_code"][:4] == reg["city_code"][:4]
            and datetime.fromisoformat(reg["registered_at"])
            < datetime.fromisoformat(dereg["registered_at"])
            and _midnight(reg["valid_from"], tz) <= left
            < _midnight(reg["valid_until"], tz) + timedelta(days=1))


def _closed(reg: dict, deregs: list[dict], tz) -> datetime:
    """The end of a registration: its expiry, or the earliest departure that ends it."""
    end = _midnight(reg["valid_until"], tz) + timedelta(days=1)
    return min([end] + [_left(d, tz) for d in deregs if _ends(d, reg, tz)])


def stale_registrations(records: list[tuple[dict, str]]) -> list[dict]:
    """``records``: (record, true person id) for every emitted record. One dict per
    registration that a correct system leaves alerted (``raised``, or ``resolved`` when the
    deregistration came after the deadline) by the end of the replay (docs/contract.md §2.4)."""
    by_person: dict[str, list[dict]] = defaultdict(list)
    reports = []
    for rec, pid in records:
        rt = report_time(rec)
        if rt:
            reports.append(datetime.fromisoformat(rt))
        if rec["source"] == "residence":
            by_person[pid].append(rec)
    if not reports:
        return []
    watermark = max(reports) - LATENESS
    tz = reports[0].tzinfo
    alerts = []
    for pid in sorted(by_person):
        regs = [r for r in by_person[pid] if not _is_dereg(r)]
        deregs = [r for r in by_person[pid] if _is_dereg(r)]
        for a in regs:
            a_end = _midnight(a["valid_until"], tz) + timedelta(days=1)
            newer = _superseding(a, regs, tz)
            if not newer:
                continue
            b = min(newer, key=lambda r: (r["valid_from"], r["registered_at"], r["record_id"]))
            deadline = _midnight(b["valid_from"], tz) + DEREG_GRACE
            if deadline > watermark or a_end <= deadline:
                continue
            ended = sorted(datetime.fromisoformat(d["registered_at"]) for d in deregs
                           if _ends(d, a, tz))
            if ended and ended[0] <= deadline:
                continue
            alerts.append({"rule": "stale_registration", "person": pid,
                           "status": "resolved" if ended else "raised",
                           "registration": a["record_id"], "superseded_by": b["record_id"],
                           "prefecture": a["city_code"][:4],
                           "new_prefecture": b["city_code"][:4],
                           "deadline": deadline.isoformat(timespec="seconds"),
                           "record_ids": [a["record_id"], b["record_id"]]})
    return alerts


def _episodes(intervals):
    ivs = sorted(intervals, key=lambda x: (x[0], x[1]))
    out = []
    cur_s, cur_e, mem = ivs[0][0], ivs[0][1], [ivs[0]]
    for it in ivs[1:]:
        if it[0] - cur_e < GAP:
            cur_e = max(cur_e, it[1])
            mem.append(it)
        else:
            out.append((cur_s, cur_e, mem))
            cur_s, cur_e, mem = it[0], it[1], [it]
    out.append((cur_s, cur_e, mem))
    return out


def watchlist_matches(watch: list[tuple[dict, str]], records: list[tuple[dict, str]]) -> list[dict]:
    """One expected lead per active (not removed) entry whose true person sent any record."""
    by_person: dict[str, list[str]] = defaultdict(list)
    for rec, pid in records:
        by_person[pid].append(rec["record_id"])
    removed = {w["watch_id"] for w, _ in watch if w["action"] == "remove"}
    out = []
    for w, pid in watch:
        if w["action"] != "add" or w["watch_id"] in removed or pid not in by_person:
            continue
        out.append({"rule": "watchlist_match", "watch_id": w["watch_id"], "person": pid,
                    "priority": w["priority"], "record_ids": by_person[pid]})
    return out


# ------------------------------------------------------------------ population statistics
STATS_FIELDS = ("present", "registered", "present_unregistered", "arrivals", "departures",
                "stale_open")


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def population_stats(records: list[tuple[dict, str]]) -> list[dict]:
    """The final rows of docs/contract.md §3.4 that a perfect linker writes by the end of the
    replay: per (prefecture, date) up to the last date whose end plus the allowed lateness
    the final watermark passed, the number of true persons present, registered, present
    without the registration they owe (from their episode's deadline), and of true persons
    with a registration starting (arrivals), ending (departures) or open past its
    deregistration deadline (stale_open) that day. Rows whose counts are all zero are left
    out; sorted by prefecture and date."""
    seen = _by_person(records)
    if seen is None:
        return []
    by_person, watermark, tz = seen
    far = datetime.max.replace(tzinfo=tz)
    # the last date D with 00:00 of D+1 + lateness <= watermark
    last_final = (watermark - LATENESS).astimezone(tz).date() - timedelta(days=1)
    who: dict[tuple[str, date, str], set[str]] = defaultdict(set)

    def count(pref: str, field: str, days: Iterable[date], pid: str) -> None:
        for d in days:
            if d <= last_final:
                who[(pref, d, field)].add(pid)

    def last_day(start: datetime, end: datetime) -> date:
        if end == far:
            return last_final
        return max(start, end - timedelta(microseconds=1)).astimezone(tz).date()

    for pid in sorted(by_person):
        recs = by_person[pid]
        regs = [r for r in recs if r["source"] == "residence" and not _is_dereg(r)]
        deregs = [r for r in recs if r["source"] == "residence" and _is_dereg(r)]
        registered: dict[str, set[date]] = defaultdict(set)
        for a in regs:
            pref = a["city_code"][:4]
            first = date.fromisoformat(a["valid_from"])
            expiry = _midnight(a["valid_until"], tz) + timedelta(days=1)
            closed = _closed(a, deregs, tz)
            last_open = (closed - timedelta(days=1)).date()
            recorded = datetime.fromisoformat(a["registered_at"]).astimezone(tz).date()
            on = _days(max(first, recorded), min(last_open, last_final))
            registered[pref] |= set(on)
            count(pref, "registered", on, pid)
            count(pref, "arrivals", [first], pid)
            gone = closed.date() if closed < expiry else date.fromisoformat(a["valid_until"])
            count(pref, "departures", [gone], pid)
            deadline = _stale_deadline(a, regs, deregs, tz)
            if deadline is not None:
                count(pref, "stale_open",
                      _days(max(first, deadline.date()), min(last_open, last_final)), pid)
        idn = next((k for r in recs if (k := known_id(r["person"].get("id_number")))), None)
        for pref, ivs in _presence(recs, tz, far).items():
            present: set[date] = set()
            for start, end, _g, _ids in ivs:
                present |= set(_days(start.astimezone(tz).date(), last_day(start, end)))
            count(pref, "present", present, pid)
            if idn is None or geo.is_local(idn, pref + "00"):
                continue
            for start, end, members in _episodes(ivs):
                cands = [s + g for s, _e, g, _ids in members if end >= s + g]
                if cands:
                    owed = _days(min(cands).astimezone(tz).date(), last_day(start, end))
                    count(pref, "present_unregistered",
                          [d for d in owed if d in present and d not in registered[pref]], pid)
    rows: dict[tuple[str, date], dict] = {}
    for (pref, d, field), pids in who.items():
        row = rows.setdefault((pref, d), {"prefecture": pref, "date": d.isoformat(),
                                          **dict.fromkeys(STATS_FIELDS, 0)})
        row[field] = len(pids)
    return [rows[k] for k in sorted(rows) if any(rows[k][f] for f in STATS_FIELDS)]


def _superseding(a: dict, regs: list[dict], tz) -> list[dict]:
    """Registrations recorded after ``a`` in another prefecture whose validity starts within
    ``a``'s."""
    a_at = datetime.fromisoformat(a["registered_at"])
    a_from = _midnight(a["valid_from"], tz)
    a_end = _midnight(a["valid_until"], tz) + timedelta(days=1)
    return [b for b in regs
            if datetime.fromisoformat(b["registered_at"]) > a_at
            and b["city_code"][:4] != a["city_code"][:4]
            and a_from <= _midnight(b["valid_from"], tz) < a_end]


def _stale_deadline(a: dict, regs: list[dict], deregs: list[dict], tz) -> datetime | None:
    """When registration ``a`` became stale (docs/contract.md §2.4): its deregistration
    deadline, if it was superseded, had not expired by then and no deregistration of it was
    recorded by then; else None."""
    a_end = _midnight(a["valid_until"], tz) + timedelta(days=1)
    newer = _superseding(a, regs, tz)
    if not newer:
        return None
    deadline = min(_midnight(b["valid_from"], tz) for b in newer) + DEREG_GRACE
    if a_end <= deadline:
        return None
    if any(datetime.fromisoformat(d["registered_at"]) <= deadline
           for d in deregs if _ends(d, a, tz)):
        return None
    return deadline
