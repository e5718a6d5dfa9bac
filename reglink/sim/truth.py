"""Ground-truth alerts, computed from the emitted records and the true person of each, by the
rules of docs/contract.md §2 with default settings. Independent of reglink's own rule code."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta

from reglink.sim import geo, ids

GRACE = {"rental": timedelta(days=3), "job": timedelta(days=3), "hotel": timedelta(days=30)}
GAP = timedelta(hours=24)
LATENESS = timedelta(hours=1)


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


def unregistered_stays(records: list[tuple[dict, str]]) -> list[dict]:
    """``records``: (record, true person id) for every emitted record (watchlist excluded).
    Returns one dict per alert that a correct system raises by the end of the replay."""
    by_person: dict[str, list[dict]] = defaultdict(list)
    reports = []
    for rec, pid in records:
        by_person[pid].append(rec)
        rt = report_time(rec)
        if rt:
            reports.append(datetime.fromisoformat(rt))
    if not reports:
        return []
    watermark = max(reports) - LATENESS
    tz = reports[0].tzinfo
    far = datetime.max.replace(tzinfo=tz)  # in the records' time zone
    alerts = []
    for pid in sorted(by_person):
        recs = by_person[pid]
        idn = next((k for r in recs if (k := known_id(r["person"].get("id_number")))), None)
        if idn is None:
            continue
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
            elif r["source"] == "job":
                iv[r["city_code"][:4]].append((_midnight(r["start_date"], tz), far, GRACE["job"],
                                               [r["record_id"]]))
        regs = [r for r in recs if r["source"] == "residence"]
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
                       and deadline < _midnight(r["valid_until"], tz) + timedelta(days=1)
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
