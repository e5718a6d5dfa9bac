"""Source quality reports (docs/contract.md §3.5): each count on hand-made records, the
throttled sending, the ranking, the receipt's privacy, ``reglink quality`` and the reports of
a simulated corpus."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from corekit import core_settings

from reglink.cli import main
from reglink.core.contract import compiled_validator, parse_record
from reglink.core.pipeline import Pipeline
from reglink.core.quality import (
    final_reports,
    report,
    worst_first,
)
from reglink.quality import find, receipt, receipt_name, write_receipts
from reglink.replay import run_replay
from reglink.stores import schema as sk
from reglink.stores.kv import MemoryKV

_W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def resident_id(body17: str) -> str:
    """An 18-digit resident ID with its right check character."""
    return body17 + "10X98765432"[sum(int(c) * w for c, w in zip(body17, _W, strict=True)) % 11]


ZHANG = {"name": "张伟", "id_number": resident_id("11010119900307123"), "sex": "男",
         "birth_date": "1990-03-07", "phone": "13800138000"}
LI = {"name": "李娜", "id_number": resident_id("31010119851111456"), "sex": "女",
      "birth_date": "1985-11-11", "phone": "13900139000"}


def hotel(rid: str, event: str, time: str, person: dict, hotel_id: str = "H1") -> dict:
    return {"source": "hotel", "record_id": rid, "event": event, "hotel_id": hotel_id,
            "hotel_name": "如家", "city_code": "110101", "room": "101", "time": time,
            "person": person}


def rental(rid: str, lease_start: str, registered_at: str, person: dict,
           property_id: str = "F1") -> dict:
    return {"source": "rental", "record_id": rid, "property_id": property_id,
            "city_code": "330106", "address": "杭州市西湖区科技路86号",
            "lease_start": lease_start, "registered_at": registered_at, "person": person}


def job(rid: str, start_date: str, posted_at: str, person: dict) -> dict:
    return {"source": "job", "record_id": rid, "employer_id": "E1", "employer_name": "某公司",
            "city_code": "440106", "start_date": start_date, "posted_at": posted_at,
            "person": person}


def residence(rid: str, registered_at: str, valid_from: str, person: dict, **extra) -> dict:
    return {"source": "residence", "record_id": rid, "city_code": "440106",
            "address": "广州市天河区体育西路1号", "registered_at": registered_at,
            "valid_from": valid_from, "valid_until": "2027-03-01", "person": person, **extra}


def valid(record: dict) -> dict:
    got, dead = parse_record(json.dumps(record, ensure_ascii=False).encode(), record["source"],
                             {"file": "t", "line": 1})
    assert dead is None, dead
    return got


def run(records: list[dict], finish: bool = True, **kw) -> tuple[Pipeline, dict[str, dict]]:
    """Records through the core in order; the reports by ``<source>:<organisation>``."""
    pipe = Pipeline(core_settings(**kw), MemoryKV())
    for r in records:
        pipe.process(valid(r))
    if finish:
        pipe.finish()
    return pipe, reports_of(pipe)


def reports_of(pipe: Pipeline) -> dict[str, dict]:
    return {f"{r['source']}:{r['organisation']}": r for r in final_reports(pipe.kv.base)}


# --- each count ----------------------------------------------------------------------------
def test_received_linked_and_joined_existing_per_hotel():
    _pipe, got = run([
        hotel("h1", "check_in", "2026-03-01T20:00:00+08:00", ZHANG),
        hotel("h2", "check_out", "2026-03-02T08:00:00+08:00", ZHANG),
        hotel("h3", "check_in", "2026-03-01T21:00:00+08:00", LI, hotel_id="H2"),
    ])
    h1, h2 = got["hotel:H1"], got["hotel:H2"]
    assert (h1["received"], h1["linked"], h1["joined_existing"]) == (2, 2, 1)
    assert h1["rates"]["joined_existing"] == 0.5
    assert (h2["received"], h2["linked"], h2["joined_existing"]) == (1, 1, 0)
    assert h1["with_problem"] == h1["deadlettered"] == h1["flagged"] == 0
    assert h1["late_reports"] is None  # a hotel reports the instant itself: no day to be late on


def test_a_repeated_record_counts_once():
    r = hotel("h1", "check_in", "2026-03-01T20:00:00+08:00", ZHANG)
    _pipe, got = run([r, r])
    assert got["hotel:H1"]["received"] == 1
    assert got["hotel:H1"]["checkins"] == 1


@pytest.mark.parametrize(("person", "flags", "problem"), [
    ({**ZHANG, "birth_date": "19450493"}, {"bad_birth_date"}, True),
    ({**ZHANG, "sex": "X"}, {"bad_sex"}, True),
    ({**ZHANG, "phone": "call me"}, {"bad_phone"}, True),
    ({**ZHANG, "id_type": "licence"}, {"bad_id_type"}, True),
    ({**ZHANG, "id_number": "张伟的证件"}, {"bad_id_number"}, True),
    ({**ZHANG, "id_number": ZHANG["id_number"][:17] + ("1" if ZHANG["id_number"][17] != "1"
                                                       else "2")}, {"bad_checksum"}, True),
    ({**ZHANG, "id_number": "110101900307123"}, {"upgraded_15"}, False),  # a valid legacy ID
])
def test_each_quality_flag_is_counted(person, flags, problem):
    _pipe, got = run([rental("r1", "2026-03-01", "2026-03-01T10:00:00+08:00", person)])
    r = got["rental:F1"]
    assert {f for f, n in r["quality_flags"].items() if n} == flags
    assert all(n in (0, 1) for n in r["quality_flags"].values())
    assert r["flagged"] == int(problem)
    assert r["with_problem"] == int(problem)
    assert r["rates"]["bad_checksum"] == (1.0 if "bad_checksum" in flags else 0.0)


def test_records_without_an_id_number():
    no_id = {k: v for k, v in LI.items() if k != "id_number"}
    _pipe, got = run([
        rental("r1", "2026-03-01", "2026-03-01T10:00:00+08:00", no_id),
        rental("r2", "2026-03-01", "2026-03-01T11:00:00+08:00", {**LI, "id_number": "  "},
               property_id="F1"),
        rental("r3", "2026-03-01", "2026-03-01T12:00:00+08:00", ZHANG),
    ])
    r = got["rental:F1"]
    assert r["without_id_number"] == 2
    assert r["with_problem"] == 2
    assert r["rates"]["without_id_number"] == round(2 / 3, 4)


def test_late_reports_rental_and_job_after_their_grace():
    # grace 3 days after the end of the reported day: lease_start 03-01 is due by 03-05 00:00
    _pipe, got = run([
        rental("r1", "2026-03-01", "2026-03-04T23:59:59+08:00", ZHANG),  # in time
        rental("r2", "2026-03-01", "2026-03-05T00:00:01+08:00", LI),  # late
        job("j1", "2026-03-01", "2026-03-05T00:00:00+08:00", ZHANG),  # on the dot: in time
        job("j2", "2026-03-01", "2026-03-09T09:00:00+08:00", LI),  # late
    ])
    assert got["rental:F1"]["late_reports"] == 1
    assert got["rental:F1"]["rates"]["late"] == 0.5
    assert got["job:E1"]["late_reports"] == 1
    assert got["job:E1"]["with_problem"] == 1


def test_late_reports_residence_registration_and_deregistration():
    _pipe, got = run([
        residence("g1", "2026-03-01T10:00:00+08:00", "2026-03-01", ZHANG),  # on the day
        residence("g2", "2026-03-02T00:00:01+08:00", "2026-03-01", LI),  # after it: late
        # a deregistration reports the day the person left, with the deregistration grace
        residence("d1", "2026-04-10T09:00:00+08:00", "2026-03-01", ZHANG,
                  action="deregister", left_on="2026-03-20"),  # due by 04-04: late
        residence("d2", "2026-04-03T09:00:00+08:00", "2026-03-01", LI,
                  action="deregister", left_on="2026-03-25"),  # in time
    ])
    office = got["residence:4401"]  # a registration office: the prefecture of city_code
    assert office["received"] == 4
    assert office["late_reports"] == 2


def test_checkin_without_checkout_30_days_later():
    t0 = "2026-03-01T20:00:00+08:00"
    records = [
        hotel("a-in", "check_in", t0, ZHANG),
        hotel("a-out", "check_out", "2026-03-03T08:00:00+08:00", ZHANG),  # closes it
        hotel("b-in", "check_in", "2026-03-02T20:00:00+08:00", LI),
        # another guest's check-out, or a check-out at another hotel, closes nothing
        hotel("x-out", "check_out", "2026-03-04T08:00:00+08:00", ZHANG),
        hotel("c-out", "check_out", "2026-03-05T08:00:00+08:00", LI, hotel_id="H2"),
    ]
    pipe, got = run(records, finish=False)
    assert got["hotel:H1"]["checkins"] == 2
    assert got["hotel:H1"]["checkins_without_checkout"] == 0  # 30 days have not passed
    # time moves on past 30 days after the second check-in (the watermark passes its timer)
    pipe.process(valid(hotel("z-in", "check_in", "2026-04-05T20:00:00+08:00",
                             {**ZHANG, "name": "王芳", "id_number":
                              resident_id("11010119700101001")}, hotel_id="H3")))
    got = reports_of(pipe)
    h1 = got["hotel:H1"]
    assert h1["checkins_without_checkout"] == 1
    assert h1["rates"]["without_checkout"] == 0.5
    assert h1["with_problem"] == 1
    assert got["hotel:H3"]["checkins_without_checkout"] == 0


def test_a_checkout_after_the_window_does_not_close_the_checkin():
    pipe, got = run([
        hotel("a-in", "check_in", "2026-03-01T20:00:00+08:00", ZHANG),
        hotel("a-out", "check_out", "2026-04-01T08:00:00+08:00", ZHANG),
    ])
    assert got["hotel:H1"]["checkins_without_checkout"] == 1
    assert pipe.kv.base.scan(sk.QUALITY_CHECKIN) == []  # nothing left open


def test_a_flagged_checkin_without_checkout_is_one_problem_record():
    _pipe, got = run([
        hotel("a-in", "check_in", "2026-03-01T20:00:00+08:00", {**ZHANG, "sex": "?"}),
        hotel("z", "check_in", "2026-04-05T20:00:00+08:00", LI, hotel_id="H9"),
    ])
    assert got["hotel:H1"]["checkins_without_checkout"] == 1
    assert got["hotel:H1"]["with_problem"] == 1


def dead_letter(raw: dict | str, source: str, line: int) -> dict:
    text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)
    record, dl = parse_record(text.encode(), source, {"file": "in.jsonl", "line": line})
    assert record is None and dl is not None
    return dl.to_message()


def test_dead_letters_per_organisation_and_reason_once_each():
    pipe = Pipeline(core_settings(), MemoryKV())
    bad_time = hotel("h1", "check_in", "yesterday", ZHANG)
    no_person = {**hotel("h2", "check_in", "2026-03-01T20:00:00+08:00", ZHANG),
                 "person": {"sex": "M"}}
    office = residence("g1", "2026-03-01T10:00:00+08:00", "2026-13-45", ZHANG)
    messages = [dead_letter(bad_time, "hotel", 1), dead_letter(no_person, "hotel", 2),
                dead_letter(office, "residence", 3),
                dead_letter("not json {", "hotel", 4),  # names no organisation
                dead_letter({**bad_time, "hotel_id": None}, "hotel", 5)]
    for m in messages:
        pipe.dead_lettered(m)
    pipe.dead_lettered(messages[0])  # the same dead letter again (a re-delivery)
    pipe.process(valid(hotel("h3", "check_in", "2026-03-01T20:00:00+08:00", LI)))
    got = reports_of(pipe)
    assert set(got) == {"hotel:H1", "residence:4401"}
    h1 = got["hotel:H1"]
    assert (h1["received"], h1["linked"], h1["deadlettered"], h1["with_problem"]) == (3, 1, 2, 2)
    assert h1["deadletter_reasons"] == {"bad_date": 1, "missing_field": 1}
    assert h1["rates"]["deadlettered"] == round(2 / 3, 4)
    assert got["residence:4401"]["deadletter_reasons"] == {"bad_date": 1}


def test_replay_counts_its_dead_letters(tmp_path):
    lines = [hotel("h1", "check_in", "2026-03-01T20:00:00+08:00", ZHANG),
             hotel("h2", "check_in", "not a time", LI)]
    src = tmp_path / "hotel.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines),
                   encoding="utf-8")
    result = run_replay(core_settings(), [src], tmp_path / "out")
    assert result.deadlettered == 1
    (line,) = [json.loads(x) for x in (tmp_path / "out" / "quality.jsonl").open()]
    assert (line["received"], line["linked"], line["deadlettered"]) == (2, 1, 1)


# --- sending -------------------------------------------------------------------------------
def test_reports_are_sent_when_changed_at_most_once_per_interval():
    pipe = Pipeline(core_settings(), MemoryKV(), outbox=True)
    pipe.process(valid(hotel("h1", "check_in", "2026-03-01T20:00:00+08:00", ZHANG)))
    plain = Pipeline(core_settings(), MemoryKV())  # no outbox (replay): it sends nothing
    plain.process(valid(hotel("h1", "check_in", "2026-03-01T20:00:00+08:00", ZHANG)))
    assert plain.quality_reports(1000.0, 60.0) == [] and reports_of(plain)
    first = pipe.quality_reports(1000.0, 60.0)
    assert [(o.topic, o.key) for o in first] == [("quality", "hotel:H1")]
    assert first[0].value == reports_of(pipe)["hotel:H1"]
    assert pipe.quality_reports(1001.0, 60.0) == []  # nothing changed
    pipe.process(valid(hotel("h2", "check_out", "2026-03-02T08:00:00+08:00", ZHANG)))
    pipe.process(valid(hotel("h3", "check_in", "2026-03-02T09:00:00+08:00", LI, "H2")))
    soon = pipe.quality_reports(1030.0, 60.0)
    assert [o.key for o in soon] == ["hotel:H2"]  # H1 was sent 30 s ago: it waits
    later = pipe.quality_reports(1060.0, 60.0)
    assert [o.key for o in later] == ["hotel:H1"]
    assert later[0].value["received"] == 2
    pipe.process(valid(hotel("h4", "check_out", "2026-03-03T08:00:00+08:00", LI, "H2")))
    assert pipe.quality_reports(1061.0, 60.0) == []  # H2 sent 31 s ago
    final = pipe.quality_reports(1061.0, 60.0, final=True)  # at shutdown: whatever changed
    assert [o.key for o in final] == ["hotel:H2"]
    assert final[0].value == reports_of(pipe)["hotel:H2"]


def test_reports_wait_in_the_outbox_until_delivered():
    pipe = Pipeline(core_settings(), MemoryKV(), outbox=True)
    pipe.process(valid(hotel("h1", "check_in", "2026-03-01T20:00:00+08:00", ZHANG)))
    (out,) = pipe.quality_reports(0.0, 60.0)
    assert out.oid is not None
    assert ("quality", "hotel:H1") in {(o.topic, o.key) for o in pipe.undelivered()}
    pipe.delivered(out.oid)
    assert all(o.topic != "quality" for o in pipe.undelivered())


# --- the report, the ranking ---------------------------------------------------------------
def test_reports_match_their_schema_and_hold_counts_only():
    check = compiled_validator("quality")
    _pipe, got = run([
        hotel("h1", "check_in", "2026-03-01T20:00:00+08:00", ZHANG),
        rental("r1", "2026-03-01", "2026-03-09T10:00:00+08:00", {**LI, "sex": "?"}),
        job("j1", "2026-03-01", "2026-03-01T10:00:00+08:00", LI),
        residence("g1", "2026-03-01T10:00:00+08:00", "2026-03-01", ZHANG),
    ])
    assert set(got) == {"hotel:H1", "rental:F1", "job:E1", "residence:4401"}
    for r in got.values():
        assert check(r) is None, r
        assert r["checkins"] is None or r["source"] == "hotel"
    assert got["rental:F1"]["rates"]["problem"] == 1.0


def _r(org: str, received: int, problems: int) -> dict:
    state = {"source": "hotel", "organisation": org, "received": received, "linked": received,
             "joined_existing": 0, "deadlettered": 0, "flagged": problems,
             "without_id_number": 0, "late_reports": 0, "checkins": 0,
             "checkins_without_checkout": 0, "with_problem": problems,
             "deadletter_reasons": {}, "quality_flags": {}}
    return report(state)


def test_worst_first_ranks_by_the_share_with_a_problem_among_large_enough_ones():
    reports = [_r("ok", 100, 1), _r("bad", 50, 25), _r("tiny", 3, 3), _r("worse", 40, 30),
               _r("bad-big", 100, 50)]
    ranked = [r["organisation"] for r in worst_first(reports, min_received=20)]
    assert ranked == ["worse", "bad-big", "bad", "ok", "tiny"]
    assert [r["organisation"] for r in worst_first(reports, min_received=0)][0] == "tiny"


# --- receipts ------------------------------------------------------------------------------
def test_a_hotels_receipt_holds_nothing_about_other_organisations_or_any_person(tmp_path):
    records = [
        hotel("HR-1", "check_in", "2026-03-01T20:00:00+08:00", ZHANG, hotel_id="H-SHOWN"),
        hotel("HR-2", "check_out", "2026-03-02T08:00:00+08:00", ZHANG, hotel_id="H-SHOWN"),
        hotel("HR-3", "check_in", "2026-03-01T21:00:00+08:00", {**LI, "birth_date": "x"},
              hotel_id="H-SHOWN"),
        hotel("OT-1", "check_in", "2026-03-01T22:00:00+08:00", LI, hotel_id="H-OTHER"),
        rental("RR-1", "2026-03-01", "2026-03-09T10:00:00+08:00", ZHANG, property_id="F-OTHER"),
        residence("GR-1", "2026-03-01T10:00:00+08:00", "2026-03-01", LI),
    ]
    src = tmp_path / "events.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
                   + json.dumps({**records[0], "record_id": "HR-9", "time": "bad"}) + "\n",
                   encoding="utf-8")
    out = tmp_path / "out"
    run_replay(core_settings(), [src], out)
    reports = [json.loads(x) for x in (out / "quality.jsonl").open(encoding="utf-8")]
    shown = find(reports, "H-SHOWN", "hotel")
    assert shown["received"] == 4 and shown["deadlettered"] == 1  # it is about H-SHOWN
    text = json.dumps(receipt(shown), ensure_ascii=False)
    person_ids = {json.loads(x)["person_id"] for x in (out / "links.jsonl").open()}
    forbidden = {
        "H-OTHER", "F-OTHER", "4401", "330106", "440106",  # other organisations
        *(r["record_id"] for r in records), "HR-9",  # record ids
        *person_ids,  # person ids
        ZHANG["name"], LI["name"], ZHANG["id_number"], LI["id_number"],
        ZHANG["id_number"][:6], ZHANG["phone"], LI["phone"], "1990-03-07", "19900307",
        "如家", "101",  # the hotel's name and room as records carry them
    }
    leaked = {f for f in forbidden if f in text}
    assert not leaked, leaked
    body = receipt(shown)["report"]
    assert set(body) == set(compiled_schema_props())
    assert body == shown  # nothing dropped either: its own counts and rates, all of them


def compiled_schema_props() -> list[str]:
    from reglink.core.contract import schema_for

    return list(schema_for("quality")["properties"])


def test_receipts_one_file_per_organisation_never_sharing_a_name(tmp_path):
    reports = [_r("H/1", 5, 1), _r("H_1", 5, 0), _r("H2", 5, 0)]
    assert write_receipts(reports, tmp_path) == 3
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(set(files)) == 3 and "hotel-H2.json" in files
    assert receipt_name(reports[0]) != receipt_name(reports[1])
    for p in tmp_path.iterdir():
        body = json.loads(p.read_text(encoding="utf-8"))["report"]
        assert p.name == receipt_name(body)


# --- the command ---------------------------------------------------------------------------
@pytest.fixture
def quality_file(tmp_path):
    path = tmp_path / "quality.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in
                            [_r("ok", 100, 1), _r("bad", 50, 25), _r("tiny", 3, 3)]))
    return path


def test_cli_quality_json_csv_and_table(quality_file):
    runner = CliRunner()
    res = runner.invoke(main, ["quality", "--from", str(quality_file), "--json"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [r["organisation"] for r in lines] == ["bad", "ok", "tiny"]
    assert "reading" in res.stderr and "3 organisations" in res.stderr  # the progress line
    res = runner.invoke(main, ["quality", "--from", str(quality_file), "--csv"])
    rows = res.stdout.splitlines()
    assert rows[0].startswith("rank,source,organisation,received,with_problem,problem_rate")
    assert rows[1].startswith("1,hotel,bad,50,25,0.5,")
    res = runner.invoke(main, ["quality", "--from", str(quality_file)])
    assert res.exit_code == 0 and "bad" in res.stdout and "50.0 %" in res.stdout
    res = runner.invoke(main, ["quality", "--from", str(quality_file), "--source", "rental"])
    assert "no quality reports for source rental" in res.stdout


def test_cli_quality_receipts(quality_file, tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["quality", "--from", str(quality_file), "--receipt", "bad"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["report"]["organisation"] == "bad"
    res = runner.invoke(main, ["quality", "--from", str(quality_file), "--receipt", "nope"])
    assert res.exit_code == 2 and "no quality report for organisation 'nope'" in res.stderr
    res = runner.invoke(main, ["quality", "--from", str(quality_file), "--receipts",
                               str(tmp_path / "r")])
    assert res.exit_code == 0 and len(list((tmp_path / "r").iterdir())) == 3


# --- a simulated corpus --------------------------------------------------------------------
def test_simulated_reports_reconcile_with_the_input(tmp_path):
    from reglink.core.quality import organisation_of
    from reglink.sim.simulate import run_simulate

    run_simulate(persons=300, days=40, start="2026-03-01", seed=5, out_dir=tmp_path / "sim")
    events = tmp_path / "sim" / "events.jsonl"
    run_replay(core_settings(), [events], tmp_path / "out")
    reports = [json.loads(x) for x in (tmp_path / "out" / "quality.jsonl").open()]
    records = [json.loads(x) for x in events.open(encoding="utf-8")]
    by_org: dict[str, int] = {}
    for r in records:
        org = organisation_of(r["source"], r)
        if org is not None:
            by_org[f"{r['source']}:{org}"] = by_org.get(f"{r['source']}:{org}", 0) + 1
    assert {f"{r['source']}:{r['organisation']}": r["received"] for r in reports} == by_org
    assert {r["source"] for r in reports} == {"hotel", "rental", "residence", "job"}
    check = compiled_validator("quality")
    assert all(check(r) is None for r in reports)
    total = {k: sum((r[k] or 0) for r in reports) for k in
             ("late_reports", "checkins", "checkins_without_checkout", "joined_existing")}
    # 40 days: some check-ins are older than 30 days, and guests check out within days
    assert 0 < total["checkins_without_checkout"] < total["checkins"] * 0.2
    assert total["late_reports"] > 0  # landlords report up to 5 days after the lease starts
    assert total["joined_existing"] > sum(r["received"] for r in reports) / 2


def test_the_help_examples_run_as_printed(tmp_path, monkeypatch):
    from test_cli import _argv, help_examples

    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    office = {**_r("4401", 30, 3), "source": "residence"}
    (tmp_path / "out" / "quality.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in [_r("H1", 40, 20), _r("H2", 25, 0), office]))
    lines = [line for path, line in help_examples() if path == "quality"]
    assert len(lines) == 4, lines
    runner = CliRunner()
    outputs = {}
    for line in lines:
        got = runner.invoke(main, _argv(line, tmp_path))
        assert got.exit_code == 0, f"{line}: {got.output}"
        outputs[line] = got.stdout
    table, csv_text, one, many = (outputs[line] for line in lines)
    assert table.index("H1") < table.index("H2") and "4401" not in table  # --source hotel
    assert csv_text.splitlines()[1].startswith("1,hotel,H1,40,20,0.5,")
    assert json.loads(one)["report"]["organisation"] == "4401"
    assert "wrote 3 receipts" in many and len(list((tmp_path / "receipts").iterdir())) == 3


def test_a_newer_report_drops_the_older_one_from_the_outbox():
    pipe = Pipeline(core_settings(), MemoryKV(), outbox=True)
    pipe.process(valid(hotel("h1", "check_in", "2026-03-01T20:00:00+08:00", ZHANG)))
    (old,) = pipe.quality_reports(0.0, 60.0)
    pipe.process(valid(hotel("h2", "check_out", "2026-03-02T08:00:00+08:00", ZHANG)))
    (new,) = pipe.quality_reports(60.0, 60.0)  # the first was never confirmed
    waiting = [o for o in pipe.undelivered() if o.topic == "quality"]
    assert [(o.oid, o.value["received"]) for o in waiting] == [(new.oid, 2)]
    assert old.oid != new.oid
