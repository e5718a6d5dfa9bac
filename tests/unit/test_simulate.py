"""reglink simulate: determinism, contract validity, IDs, truth, noise rates, namesakes, order."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from pypinyin import lazy_pinyin

from reglink.sim import geo, ids, names, noise, truth
from reglink.sim.simulate import SOURCES, generate, noise_rates, run_simulate

START = "2026-03-01"
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+08:00$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
REPORT = {"hotel": "time", "rental": "registered_at", "residence": "registered_at",
          "job": "posted_at"}
REQUIRED = {
    "hotel": ("event", "hotel_id", "city_code", "time"),
    "rental": ("property_id", "city_code", "address", "lease_start", "registered_at"),
    "residence": ("city_code", "registered_at"),
    "job": ("employer_name", "city_code", "start_date", "posted_at"),
    "watchlist": ("action", "priority"),
    "person": (),
}
DATE_FIELDS = {"rental": ("lease_start", "lease_end"),
               "residence": ("valid_from", "valid_until", "left_on"),
               "job": ("start_date",), "watchlist": ("valid_until",)}


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    run_simulate(persons=1500, days=30, start=START, seed=11, out_dir=out)
    return out


@pytest.fixture(scope="module")
def big_world():
    """Large enough for noise-rate statistics (a few thousand rental/job records)."""
    world, stats = generate(persons=12000, days=30, start=START, seed=5)
    return world, stats


# --- determinism -----------------------------------------------------------------------------
def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    run_simulate(300, 10, START, 42, a)
    run_simulate(300, 10, START, 42, b)
    run_simulate(300, 10, START, 43, c)
    files = sorted(p.name for p in a.iterdir())
    assert {"events.jsonl", "truth.jsonl", "truth_alerts.jsonl",
            *(f"{s}.jsonl" for s in SOURCES)} <= set(files)
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert (a / "events.jsonl").read_bytes() != (c / "events.jsonl").read_bytes()


def test_watch_share_scales_the_watchlist_and_keeps_the_default_world(tmp_path):
    default, _ = generate(persons=600, days=5, start=START, seed=3)
    same, _ = generate(persons=600, days=5, start=START, seed=3, watch_share=0.01)
    more, _ = generate(persons=600, days=5, start=START, seed=3, watch_share=0.1)
    adds = lambda w: [r for r in w.watch if r.body["action"] == "add"]  # noqa: E731
    assert [r.body for r in adds(default)] == [r.body for r in adds(same)]
    real = lambda w: [r for r in adds(w) if "trap" not in r.tags]  # noqa: E731
    assert len(real(default)) == 6 and len(real(more)) == 60


def test_summary_line_and_bad_arguments(tmp_path):
    line = run_simulate(200, 5, START, 1, tmp_path)
    assert "\n" not in line
    n = sum(1 for _ in (tmp_path / "events.jsonl").open(encoding="utf-8"))
    assert f"{n} records" in line
    with pytest.raises(ValueError):
        generate(0, 5, START, 1)


# --- contract validity -------------------------------------------------------------------------
def test_every_record_is_valid_per_contract(sim_dir):
    records = _read(sim_dir / "events.jsonl")
    assert len(records) > 1000
    try:
        from reglink.core.contract import validate_record
    except ImportError:  # pragma: no cover - the contract module is another engineer's file
        validate_record = None
    seen: dict[str, set] = defaultdict(set)
    for r in records:
        s = r["source"]
        assert s in SOURCES
        key = "watch_id" if s == "watchlist" else "record_id"
        assert isinstance(r[key], str) and r[key]
        if s != "watchlist":
            assert r[key] not in seen[s], f"duplicate {s} record_id {r[key]}"
            seen[s].add(r[key])
        for f in REQUIRED[s]:
            assert f in r, (s, f, r)
        p = r["person"]
        assert isinstance(p, dict)
        if s != "watchlist":
            assert isinstance(p["name"], str) and p["name"]
        for f, v in p.items():
            if f == "aliases":
                assert isinstance(v, list) and all(isinstance(x, str) and x for x in v)
            else:
                assert isinstance(v, str), (f, v)
        if "sex" in p:
            assert p["sex"] in ("M", "F", "男", "女")
        if "birth_date" in p:
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}|\d{8}", p["birth_date"])
        if s in REPORT:
            assert TIME_RE.match(r[REPORT[s]]), r[REPORT[s]]
            assert datetime.fromisoformat(r[REPORT[s]]).utcoffset() == timedelta(hours=8)
        for f in DATE_FIELDS.get(s, ()):
            if f in r:
                assert DATE_RE.match(r[f]) and date.fromisoformat(r[f])
        if "city_code" in r:
            assert r["city_code"] in geo.BY_CODE
        if s == "hotel":
            assert r["event"] in ("check_in", "check_out")
        if s == "watchlist":
            assert r["action"] in ("add", "remove") and r["priority"] in ("high", "medium", "low")
        if s == "rental" and "lease_end" in r:
            assert r["lease_end"] >= r["lease_start"]
        if s == "residence" and r.get("action") == "deregister":
            assert "permit_no" in r or r["city_code"]
            assert r.get("left_on", r["registered_at"][:10]) <= r["registered_at"][:10]
        elif s == "residence":
            for f in ("address", "valid_from", "valid_until"):
                assert f in r, (f, r)
            assert r["valid_from"] <= r["valid_until"]
            assert r["registered_at"][:10] == r["valid_from"]
        if validate_record is not None:
            assert validate_record(r, s) is None, (validate_record(r, s), r)
    assert set(seen) >= {"hotel", "rental", "residence", "job", "person"}


def test_per_source_files_partition_events(sim_dir):
    events = (sim_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()
    per = []
    for s in SOURCES:
        lines = (sim_dir / f"{s}.jsonl").read_text(encoding="utf-8").splitlines()
        assert lines, s
        assert all(json.loads(x)["source"] == s for x in lines)
        per += lines
    assert Counter(per) == Counter(events)


# --- order -----------------------------------------------------------------------------------
def test_files_sorted_by_report_time_but_late_uploads(sim_dir):
    tags = {t["record_id"]: t.get("noise", []) for t in _read(sim_dir / "truth.jsonl")
            if "record_id" in t}
    late = {k for k, v in tags.items() if "out_of_order" in v}
    # only deregistrations recorded in time arrive late, and some do
    assert late and all("dereg_timely" in tags[k] for k in late)

    def in_order(recs):
        return [r for r in recs if r.get("record_id") not in late]

    for s, f in REPORT.items():
        times = [datetime.fromisoformat(r[f]) for r in in_order(_read(sim_dir / f"{s}.jsonl"))]
        assert times == sorted(times), s
    recs = _read(sim_dir / "events.jsonl")
    # a late upload comes after records reported after it
    pos = {r.get("record_id"): i for i, r in enumerate(recs)}
    for k in late:
        rec = recs[pos[k]]
        assert any(r["source"] in REPORT and r[REPORT[r["source"]]] > rec["registered_at"]
                   for r in recs[:pos[k]])
    recs = in_order(recs)
    kinds = [r["source"] for r in recs]
    n_person, n_watch = kinds.count("person"), kinds.count("watchlist")
    assert kinds[:n_person] == ["person"] * n_person
    assert kinds[n_person:n_person + n_watch] == ["watchlist"] * n_watch
    rest = recs[n_person + n_watch:]
    times = [datetime.fromisoformat(r[REPORT[r["source"]]]) for r in rest]
    assert times == sorted(times)
    # every watchlist remove comes after its add
    pos = {}
    for i, r in enumerate(recs):
        if r["source"] == "watchlist":
            if r["action"] == "add":
                pos[r["watch_id"]] = i
            else:
                assert pos[r["watch_id"]] < i


# --- IDs ---------------------------------------------------------------------------------------
def test_id_helpers_match_the_standard():
    assert ids.is_valid18("340102198803150022")
    assert ids.upgrade15("110105790402031") == "110105197904020317"
    assert ids.to15("110105197904020317") == "110105790402031"
    assert ids.normalise("340102 19880315 0022") == "340102198803150022"
    assert ids.normalise("11010519790402031x") == "11010519790402031X"
    idn = ids.make_id("440305", "19900101", 123)
    assert ids.is_valid18(idn) and idn[14:17] == "123"


def test_every_generated_id_passes_checksum_and_encodes_person(big_world):
    world, _ = big_world
    import random

    rng = random.Random(0)
    for p in world.people + world.hidden:
        assert ids.is_valid18(p.id18), p
        assert p.id18[:6] == p.area and p.id18[6:14] == p.birth8
        assert int(p.id18[16]) % 2 == (1 if p.sex == "M" else 0)
        bad = ids.wrong_digit(rng, p.id18)
        assert bad != p.id18 and not ids.is_valid18(bad)   # the check catches one wrong digit
    everyone = world.people + world.hidden
    assert len({p.id18 for p in everyone}) == len(everyone)


def test_record_ids_are_true_ids_unless_tagged(big_world):
    world, _ = big_world
    true_id = {p.pid: p.id18 for p in world.people + world.hidden}
    n_checked = 0
    for r in world.recs:
        idn = r.body["person"].get("id_number")
        if idn is None:
            assert r.source in ("rental", "job") and "id_missing" in r.tags
            continue
        known = truth.known_id(idn)
        if {"id_wrong_digit", "id_transposed"} & set(r.tags):
            assert known is None, idn                      # invalid: caught by the checksum
        else:
            assert known == true_id[r.pid], (r.source, idn, r.tags)
            n_checked += 1
        if r.source in ("residence", "person"):
            assert idn == true_id[r.pid]                   # clean sources
        if r.source == "hotel" and "id_legacy15" not in r.tags:
            assert idn == true_id[r.pid]
    assert n_checked > 1000


# --- truth -------------------------------------------------------------------------------------
def test_truth_covers_every_record(sim_dir):
    events = _read(sim_dir / "events.jsonl")
    tr = _read(sim_dir / "truth.jsonl")
    assert len(tr) == len(events)
    for e, t in zip(events, tr, strict=True):
        key = "watch_id" if e["source"] == "watchlist" else "record_id"
        assert t["source"] == e["source"] and t[key] == e[key]
        assert re.fullmatch(r"P\d{7}", t["person"])
        if e["source"] == "watchlist":
            assert t["action"] == e["action"]


def test_truth_person_is_consistent_with_clean_records(sim_dir):
    """Clean records (residence, household register) carry exactly one ID per true person."""
    events = _read(sim_dir / "events.jsonl")
    tr = _read(sim_dir / "truth.jsonl")
    id_of: dict[str, str] = {}
    for e, t in zip(events, tr, strict=True):
        if e["source"] in ("residence", "person"):
            idn = e["person"]["id_number"]
            assert id_of.setdefault(t["person"], idn) == idn
    assert len(set(id_of.values())) == len(id_of)


def test_truth_alerts_follow_the_rules(sim_dir):
    events = _read(sim_dir / "events.jsonl")
    tr = _read(sim_dir / "truth.jsonl")
    alerts = _read(sim_dir / "truth_alerts.jsonl")
    stays = [a for a in alerts if a["rule"] == "unregistered_stay"]
    leads = [a for a in alerts if a["rule"] == "watchlist_match"]
    assert stays and leads
    pid_of = {(t["source"], t.get("record_id")): t["person"] for t in tr if "record_id" in t}
    rec_by_id = {r["record_id"]: r for r in events if "record_id" in r}
    last = max(datetime.fromisoformat(r[REPORT[r["source"]]])
               for r in events if r["source"] in REPORT)
    for a in stays:
        deadline = datetime.fromisoformat(a["deadline"])
        assert deadline <= last - timedelta(hours=1)
        for rid in a["record_ids"]:
            r = rec_by_id[rid]
            assert pid_of[(r["source"], rid)] == a["person"]
            assert r["city_code"][:4] == a["prefecture"]
        # no residence registration of that person covers the deadline in that prefecture
        for r in events:
            if (r["source"] == "residence" and pid_of[("residence", r["record_id"])] == a["person"]
                    and r["city_code"][:4] == a["prefecture"]):
                covers = (datetime.fromisoformat(r["registered_at"]) <= deadline
                          and r["valid_from"] <= a["deadline"][:10] <= r["valid_until"])
                assert not covers
    assert len({(a["person"], a["prefecture"], a["deadline"]) for a in stays}) == len(stays)
    removed = {r["watch_id"] for r in events
               if r["source"] == "watchlist" and r["action"] == "remove"}
    assert not {a["watch_id"] for a in leads} & removed


def test_truth_alerts_on_the_contract_example():
    """The hand-written example of tests/fixtures/records.jsonl: 陈丽 is late in 4403
    (deadline 7 March, hotel joins the rental episode); 刘建国 is local to Beijing."""
    recs = [
        {"source": "hotel", "record_id": "H-88121", "event": "check_in", "hotel_id": "H440305-017",
         "city_code": "440305", "time": "2026-03-02T21:14:00+08:00",
         "person": {"name": "陈丽", "id_number": "340102198803150022"}},
        {"source": "rental", "record_id": "R-5531", "city_code": "440305",
         "lease_start": "2026-03-04", "lease_end": "2026-09-03",
         "registered_at": "2026-03-05T10:02:00+08:00",
         "person": {"name": "陈莉", "id_number": "340102 19880315 0022"}},
        {"source": "hotel", "record_id": "H-88190", "event": "check_out", "hotel_id": "H440305-017",
         "city_code": "440305", "time": "2026-03-04T11:30:00+08:00",
         "person": {"name": "陈丽", "id_number": "340102198803150022"}},
        {"source": "job", "record_id": "J-20931", "city_code": "440305", "start_date": "2026-03-06",
         "posted_at": "2026-03-06T09:00:00+08:00", "person": {"name": "CHEN Li"}},
        {"source": "residence", "record_id": "T-44001", "city_code": "440305",
         "registered_at": "2026-03-12T15:20:00+08:00", "valid_from": "2026-03-12",
         "valid_until": "2027-03-11",
         "person": {"name": "陈丽", "id_number": "340102198803150022"}},
        {"source": "hotel", "record_id": "H-90002", "event": "check_in", "hotel_id": "H110105-003",
         "city_code": "110105", "time": "2026-03-09T23:40:00+08:00",
         "person": {"name": "刘建国", "id_number": "110105790402031"}},
    ]
    who = ["chen"] * 5 + ["liu"]
    out = truth.unregistered_stays(list(zip(recs, who, strict=True)))
    assert [(a["person"], a["prefecture"], a["deadline"]) for a in out] == \
        [("chen", "4403", "2026-03-07T00:00:00+08:00")]
    assert out[0]["record_ids"] == ["H-88121", "H-88190", "J-20931", "R-5531"]
    # registering on 6 March instead covers the deadline: no alert
    recs[4] = {**recs[4], "registered_at": "2026-03-06T15:20:00+08:00", "valid_from": "2026-03-06"}
    assert truth.unregistered_stays(list(zip(recs, who, strict=True))) == []


def test_some_moves_register_late_or_never(sim_dir, big_world):
    world, _ = big_world
    st = world.stats
    assert st["reg_timely"] > st["reg_late"] > 0 and st["reg_never"] > 0
    alerts = _read(sim_dir / "truth_alerts.jsonl")
    prefs = {a["prefecture"] for a in alerts if a["rule"] == "unregistered_stay"}
    assert len(prefs) >= 3


# --- noise ---------------------------------------------------------------------------------------
def test_noise_rates_within_expected_bounds(big_world):
    world, _ = big_world
    rates = noise_rates(world)
    n = Counter(r.source for r in world.recs)
    assert n["rental"] > 800 and n["job"] > 600

    def within(src, tag, target, rel=0.45, floor=0.0):
        got = rates[src].get(tag, 0.0)
        assert max(floor, target * (1 - rel)) <= got <= target * (1 + rel), (src, tag, got, target)

    within("rental", "homophone", noise.RENTAL_HOMOPHONE)
    within("rental", "id_missing", noise.RENTAL_ID_MISSING)
    within("rental", "id_spaced", noise.RENTAL_SPACED * (1 - noise.RENTAL_ID_MISSING))
    within("rental", "id_wrong_digit", noise.RENTAL_WRONG_DIGIT, rel=0.6)
    assert 0.005 <= rates["rental"].get("lookalike", 0) <= noise.RENTAL_LOOKALIKE * 1.5
    assert 0.01 <= rates["rental"].get("id_legacy15", 0) <= 0.2
    assert rates["rental"].get("id_lower_x", 0) > 0
    within("job", "id_missing", noise.JOB_ID_MISSING, rel=0.15)
    within("job", "pinyin", noise.JOB_PINYIN, rel=0.3)
    assert 0.01 <= rates["job"].get("traditional", 0) <= noise.JOB_TRADITIONAL * 1.5
    # hotel and residence stay clean: no name or ID typing errors at all
    for src in ("hotel", "residence", "person"):
        assert not {"homophone", "lookalike", "pinyin", "id_wrong_digit", "id_missing",
                    "id_spaced"} & set(rates.get(src, {}))
    assert 0 < rates["hotel"].get("no_check_out", 0) < 0.05
    names_of = {p.pid: p.name for p in world.people + world.hidden}
    for r in world.recs:
        if r.source in ("hotel", "residence", "person"):
            assert r.body["person"]["name"] == names_of[r.pid]


def test_noisy_names_are_the_kind_they_claim(big_world):
    world, _ = big_world
    by = {p.pid: p for p in world.people}
    kinds = Counter()
    for r in world.recs:
        if r.source not in ("rental", "job"):
            continue
        p, got = by[r.pid], r.body["person"]["name"]
        if "homophone" in r.tags:
            assert got != p.name and lazy_pinyin(got) == lazy_pinyin(p.name)
        elif "lookalike" in r.tags:
            assert got != p.name and len(got) == len(p.name)
            assert lazy_pinyin(got) != lazy_pinyin(p.name)
        elif "pinyin" in r.tags:
            assert got.isascii() and got.replace(" ", "").isalpha()
            sp, _ = names.pinyin_parts(p.surname, p.given)
            if sp:
                assert sp in got.lower().replace(" ", "")
        elif "traditional" in r.tags:
            from opencc import OpenCC

            assert got != p.name and OpenCC("t2s").convert(got) == p.name
        elif "dot_variant" not in r.tags:
            assert got == p.name
        kinds.update(t for t in r.tags if t in ("homophone", "lookalike", "pinyin", "traditional"))
    assert all(kinds[k] > 5 for k in ("homophone", "lookalike", "pinyin", "traditional")), kinds


def test_name_tables_and_special_readings():
    for a, b in names.HOMOPHONES.items():
        assert lazy_pinyin(a) == lazy_pinyin(b), (a, b)
    for a, b in names.LOOKALIKES.items():
        assert a != b and lazy_pinyin(a) != lazy_pinyin(b), (a, b)
    assert names.pinyin_parts("单", "晓明") == ("shan", ["xiao", "ming"])
    assert names.pinyin_parts("曾", "伟")[0] == "zeng"
    assert names.pinyin_parts("欧阳", "娜")[0] == "ouyang"
    assert {"欧阳", "司马", "单", "曾", "解", "查", "区", "朴"} <= set(names.SURNAMES)


# --- population realism ----------------------------------------------------------------------
def test_namesakes_shared_phones_and_name_mix(big_world):
    world, stats = big_world
    people = world.people
    same = defaultdict(list)
    for p in people:
        same[(p.name, p.birth)].append(p.id18)
    pairs = [v for v in same.values() if len(v) > 1]
    assert len(pairs) >= 20 and all(len(set(v)) == len(v) for v in pairs)
    assert stats["namesake_pairs"] >= 20
    phones = Counter(p.phone for p in people)
    assert sum(1 for c in phones.values() if c > 1) >= 100
    surnames = Counter(p.surname for p in people)
    top = [s for s, _ in surnames.most_common(5)]
    assert set(top) <= {"王", "李", "张", "刘", "陈", "杨"}
    assert any(len(p.surname) == 2 for p in people)                 # 欧阳, 司马...
    assert any(names.DOT in p.name for p in people)                 # minority names
    assert Counter(p.name for p in people).most_common(1)[0][1] >= 5  # 张伟-style common names
    # relatives who share a phone also appear with it in records of both
    rec_phones = defaultdict(set)
    for r in world.recs:
        if "phone" in r.body["person"]:
            rec_phones[r.body["person"]["phone"]].add(r.pid)
    assert sum(1 for v in rec_phones.values() if len(v) > 1) >= 10


def test_watchlist_entries_and_innocent_namesake_traps(big_world):
    world, _ = big_world
    adds = [r for r in world.watch if r.body["action"] == "add"]
    assert 0.007 * len(world.people) <= len(adds) <= 0.02 * len(world.people)
    assert len({r.key for r in adds}) == len(adds)
    active = {p.pid: p for p in world.people}
    hidden = {p.pid: p for p in world.hidden}
    sent = Counter(r.pid for r in world.recs if r.source != "person")
    traps = [r for r in adds if "trap" in r.tags]
    assert traps
    for t in traps:
        y = hidden[t.pid]                                     # truth: the intended person
        innocent = active[next(x for x in t.tags if x.startswith("innocent:")).split(":")[1]]
        assert (innocent.name, innocent.birth) == (y.name, y.birth) and innocent.id18 != y.id18
        assert t.body["person"]["id_number"] == y.id18
        assert sent[y.pid] == 0                               # never appears in events
    partial = [r for r in adds if "id_number" not in r.body["person"]]
    assert partial and all({"name", "birth_date"} <= set(r.body["person"]) for r in partial)
    assert any("aliases" in r.body["person"] for r in adds)
    real = [r for r in adds if "trap" not in r.tags]
    assert sum(1 for r in real if sent[r.pid]) >= 0.7 * len(real)


def test_locals_and_visitors_both_present(big_world):
    world, _ = big_world
    by = {p.pid: p for p in world.people}
    local = away = 0
    for r in world.recs:
        if r.source in ("hotel", "rental", "job"):
            if geo.is_local(by[r.pid].id18, r.body["city_code"]):
                local += 1
            else:
                away += 1
    assert away > local > 0.03 * (local + away)
    assert not any(r.source == "residence" and geo.is_local(by[r.pid].id18, r.body["city_code"])
                   for r in world.recs)


def test_hotel_stays_mostly_short_with_some_long(big_world):
    world, _ = big_world
    ins: dict[tuple, datetime] = {}
    nights = []
    for r in world.recs:
        if r.source != "hotel":
            continue
        k = (r.pid, r.body["hotel_id"])
        if r.body["event"] == "check_in":
            ins[k] = r.at
        elif k in ins:
            nights.append((r.at - ins.pop(k)).days + 1)
    short = sum(1 for n in nights if n <= 5)
    assert short / len(nights) > 0.8
    assert any(n >= 20 for n in nights)


def test_check_out_repeats_the_check_in_identity(big_world):
    world, _ = big_world
    last_in: dict[tuple, dict] = {}
    n = 0
    for r in world.recs:
        if r.source != "hotel":
            continue
        k = (r.pid, r.body["hotel_id"])
        if r.body["event"] == "check_in":
            last_in[k] = r.body["person"]
        else:
            ci = last_in.pop(k)
            assert r.body["person"] == {"name": ci["name"], "id_number": ci["id_number"]}
            n += 1
    assert n > 1000


def test_no_person_is_in_two_hotels_at_once(big_world):
    world, _ = big_world
    stays: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    open_: dict[tuple, datetime] = {}
    for r in world.recs:
        if r.source == "hotel":
            k = (r.pid, r.body["hotel_id"])
            if r.body["event"] == "check_in":
                open_[k] = r.at
            else:
                stays[r.pid].append((open_.pop(k), r.at))
    # stays left open (check-out not reported) have no known end: not checked
    for pid, ss in stays.items():
        ss.sort()
        for (a0, a1), (b0, _b1) in pairwise(ss):
            assert b0 >= a1, (pid, a0, a1, b0)
