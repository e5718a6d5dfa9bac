"""stale_registration (docs/contract.md §2.4), deregistrations closing registrations for
unregistered_stay, and job end dates and updates: pure core, no services.

The hand-made cases are checked against the rule and against the simulator's independent
ground truth (reglink.sim.truth), which must agree."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from corekit import CHEN, core_settings, dereg, ordered_corpus, reg, rid, run_core

from reglink.core.contract import validate_record
from reglink.core.pipeline import Pipeline
from reglink.core.rules.clock import ts
from reglink.core.rules.stale_registration import closed_at, closes, superseding
from reglink.sim import truth
from reglink.stores import schema as sk
from reglink.stores.kv import MemoryKV

WANG = {"name": "王强", "id_number": rid("440305", "1975-07-01", 5), "sex": "M",
        "birth_date": "1975-07-01"}
DEADLINE = "2026-03-19T00:00:00+08:00"  # B's valid_from + 14 days


def job(rec_id, city, start, posted, end=None, person=CHEN):
    r = {"source": "job", "record_id": rec_id, "employer_name": "某厂", "city_code": city,
         "start_date": start, "posted_at": posted, "person": person}
    if end:
        r["end_date"] = end
    return r


A = reg("A", "440305", "2026-01-10T10:00:00+08:00", "2026-01-10", "2027-01-09", "PA")
B = reg("B", "330106", "2026-03-05T10:00:00+08:00", "2026-03-05", "2027-03-04")
# another person's registration (at home), late enough that the watermark passes the
# deadline as it arrives
LATER = reg("W9", "440305", "2026-04-10T12:00:00+08:00", "2026-04-10", "2027-04-09",
            person=WANG)


def stale(alerts):
    return [a for a in alerts if a["rule"] == "stale_registration"]


def final(alerts):
    out: dict[str, str] = {}
    for a in alerts:
        out[a["alert_id"]] = a["status"]
    return out


def expected_by_truth(records):
    """The simulator's ground truth on the same records (all of CHEN's but LATER)."""
    recs = [(r, "WANG" if r["person"] is WANG else "CHEN") for r in records]
    return {(t["registration"], t["deadline"], t["status"])
            for t in truth.stale_registrations(recs)}


def outcome(records):
    _pipe, alerts, _links = run_core(records)
    fin = {a["alert_id"]: a for a in stale(alerts)}
    return {(a["record_ids"][0], a["deadline"], a["status"]) for a in fin.values()
            if a["status"] != "withdrawn"}, stale(alerts)


CASES = {
    "never deregistered": ([A, B, LATER], {("A", DEADLINE, "raised")}),
    "deregistered in time": (
        [A, B, dereg("D", "440305", "2026-03-15T09:00:00+08:00", "PA"), LATER], set()),
    "deregistered in time, by prefecture, arriving late": (
        [A, B, LATER, dereg("D", "440306", "2026-03-15T09:00:00+08:00", left_on="2026-03-04")],
        set()),
    "deregistered late": (
        [A, B, LATER, dereg("D", "440305", "2026-03-25T09:00:00+08:00", "PA")],
        {("A", DEADLINE, "resolved")}),
    "deregistered late, known before the deadline passed": (
        [A, B, dereg("D", "440305", "2026-03-25T09:00:00+08:00", "PA"), LATER],
        {("A", DEADLINE, "resolved")}),
    "a deregistration of another permit": (
        [A, B, dereg("D", "440305", "2026-03-15T09:00:00+08:00", "PX"), LATER],
        {("A", DEADLINE, "raised")}),
    "the earliest superseding valid_from sets the deadline": (
        [A, B, reg("B2", "110105", "2026-03-06T10:00:00+08:00", "2026-03-01", "2026-09-01"),
         LATER], {("A", "2026-03-15T00:00:00+08:00", "raised")}),
    "a new registration in the same prefecture": (
        [A, reg("B", "440306", "2026-03-05T10:00:00+08:00", "2026-03-05", "2027-03-04"), LATER],
        set()),
    "the old registration expires before the deadline": (
        [reg("A", "440305", "2025-09-20T10:00:00+08:00", "2025-09-20", "2026-03-18"), B, LATER],
        set()),
    "the new registration starts after the old one ended": (
        [reg("A", "440305", "2025-09-20T10:00:00+08:00", "2025-09-20", "2026-03-01"), B, LATER],
        set()),
    "the registration that supersedes must be recorded later": (
        [reg("A", "440305", "2026-03-06T10:00:00+08:00", "2026-03-06", "2027-03-05"),
         reg("B", "330106", "2026-03-05T10:00:00+08:00", "2026-03-01", "2027-02-28"), LATER],
        {("B", "2026-03-20T00:00:00+08:00", "raised")}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_stale_registration_cases_agree_with_the_ground_truth(name):
    records, want = CASES[name]
    got, _messages = outcome(records)
    assert got == want
    assert expected_by_truth(records) == want


def test_the_alert_names_both_registrations_and_is_raised_when_the_watermark_passes():
    pipe = Pipeline(core_settings(), MemoryKV())
    pid, outs = pipe.process(A)
    pipe.process(B)
    # not before the deadline: a timer tagged with the rule's name waits for it
    due = dict(pipe.kv.zupto(sk.DUE, float("inf")))
    member = sk.timer_member("stale_registration", pid, "residence:A")
    assert due[member] == ts(DEADLINE)
    assert not stale([o.value for o in outs if o.topic == "alerts"])
    _pid, outs = pipe.process(LATER)
    (alert,) = stale([o.value for o in outs if o.topic == "alerts"])
    assert alert["status"] == "raised" and alert["person_id"] == pid
    assert alert["prefecture"] == "4403" and alert["new_prefecture"] == "3301"
    assert alert["record_ids"] == ["A", "B"]
    assert alert["evidence"] == ["residence:A", "residence:B"]
    assert alert["deadline"] == alert["raised_at"] == DEADLINE
    assert alert["rule_version"] == pipe.s.rule_version
    assert set(alert["explanation"]) == {"residence:A", "residence:B"}
    assert member not in dict(pipe.kv.zupto(sk.DUE, float("inf")))
    # the same alert, the same id, on another run
    _p, alerts, _l = run_core([A, B, LATER])
    assert [a["alert_id"] for a in stale(alerts)] == [alert["alert_id"]]


def test_a_late_deregistration_recorded_in_time_withdraws_and_one_recorded_late_resolves():
    _, messages = outcome([A, B, LATER, dereg("D", "440305", "2026-03-15T09:00:00+08:00", "PA")])
    assert [a["status"] for a in messages] == ["raised", "withdrawn"]
    assert len({a["alert_id"] for a in messages}) == 1
    _, messages = outcome([A, B, LATER, dereg("D", "440305", "2026-03-25T09:00:00+08:00", "PA")])
    assert [a["status"] for a in messages] == ["raised", "resolved"]
    assert messages[-1]["record_ids"] == ["A", "B", "D"]
    # re-delivered records change nothing
    _, again = outcome([A, B, LATER, A, B, LATER])
    assert [a["status"] for a in again] == ["raised"]


@pytest.mark.parametrize("name", list(CASES))
def test_stale_registration_does_not_depend_on_the_order_of_arrival(name):
    records, want = CASES[name]
    for seed in range(6):
        shuffled = list(records)
        random.Random(seed).shuffle(shuffled)
        assert outcome(shuffled)[0] == want, (seed, [r["record_id"] for r in shuffled])


def test_closure_rules_of_a_deregistration():
    a = sk.ResidenceRegistration("residence:A", "4403", 10.0, 0.0, 1000.0, "pa")
    other = sk.ResidenceRegistration("residence:C", "4403", 50.0, 0.0, 1000.0, None)
    by_permit = sk.Deregistration("residence:D1", "3301", 20.0, 15.0, "pa")
    by_pref = sk.Deregistration("residence:D2", "4403", 40.0, 30.0, None)
    assert closes(by_permit, a) and not closes(by_permit, other)
    # by prefecture: registrations recorded before it and valid on the day the person left
    assert closes(by_pref, a) and not closes(by_pref, other)
    assert not closes(sk.Deregistration("residence:D3", "3301", 40.0, 30.0, None), a)
    assert not closes(sk.Deregistration("residence:D4", "4403", 40.0, 1000.0, None), a)
    assert closed_at(a, [by_pref, by_permit]) == 15.0
    assert closed_at(other, [by_permit]) is None
    b = sk.ResidenceRegistration("residence:B", "3301", 60.0, 500.0, 2000.0, None)
    assert superseding(a, [a, other, b]) == [b]


def test_the_residence_ledger_round_trips():
    ledger = sk.ResidenceLedger(
        [sk.ResidenceRegistration("residence:A", "4403", 1.5, 2.0, 3.0, "p1"),
         sk.ResidenceRegistration("residence:B", "3301", 4.0, 5.0, 6.0, None)],
        [sk.Deregistration("residence:D", "4403", 7.0, 8.0, None)],
        {"residence:A": [0.99, {"features": []}]})
    raw = sk.encode_residences(ledger)
    assert sk.decode_residences(raw) == ledger
    assert sk.encode_residences(sk.decode_residences(raw)) == raw
    assert sk.decode_residences(None) == sk.ResidenceLedger()
    # a revised interval keeps its revision time; others are stored as before
    state = sk.StayState(intervals=[sk.Presence("job:J", 1.0, 2.0, 3.0, None, 9.0),
                                    sk.Presence("rental:R", 1.0, None, 3.0)])
    d = state.to_json()
    assert d["iv"] == [["job:J", 1.0, 2.0, 3.0, None, 9.0], ["rental:R", 1.0, None, 3.0, None]]
    assert sk.StayState.from_json(d).intervals == state.intervals


def test_a_permit_number_is_stored_pseudonymised():
    pipe = Pipeline(core_settings(), MemoryKV())
    pid, _ = pipe.process(A)
    raw = pipe.kv.get(sk.residences(pid))
    assert raw and "PA" not in raw.replace("residence:A", "")
    assert sk.decode_residences(raw).registrations[0].permit == pipe.pseudo("permit", "PA")


# ------------------------------------------------------------------ unregistered_stay
RENTAL = {"source": "rental", "record_id": "R1", "property_id": "F1", "city_code": "440305",
          "address": "某路2号", "lease_start": "2026-03-10", "lease_end": "2026-08-31",
          "registered_at": "2026-03-10T18:00:00+08:00", "person": CHEN}


def stays(alerts):
    return final([a for a in alerts if a["rule"] == "unregistered_stay"])


def test_a_deregistration_closes_the_registration_for_unregistered_stay():
    # A covers the stay in 4403 from 2026-03-10 (deadline 2026-03-13): no alert
    _p, alerts, _l = run_core([A, RENTAL, LATER])
    assert not stays(alerts)
    # deregistered from 2026-03-01: at the deadline nothing covers the stay
    gone = dereg("D", "440305", "2026-03-02T09:00:00+08:00", "PA", left_on="2026-03-01")
    for order in ([A, gone, RENTAL, LATER], [A, RENTAL, gone, LATER], [gone, RENTAL, A, LATER]):
        _p, alerts, _l = run_core(order)
        assert list(stays(alerts).values()) == ["raised"], [r["record_id"] for r in order]
    # deregistered from after the deadline: it still covered the stay then
    after = dereg("D", "440305", "2026-03-20T09:00:00+08:00", "PA")
    _p, alerts, _l = run_core([A, RENTAL, after, LATER])
    assert not stays(alerts)


def test_a_deregistration_is_not_a_registration():
    # a deregistration in the stay's prefecture, with the register fields present, covers
    # nothing (it used to count as a registration)
    gone = {**dereg("D", "440305", "2026-03-09T09:00:00+08:00"), "address": "某路1号",
            "valid_from": "2026-03-09", "valid_until": "2027-03-08"}
    _p, alerts, _l = run_core([RENTAL, gone, LATER])
    assert list(stays(alerts).values()) == ["raised"]


J1 = job("J1", "440305", "2026-03-02", "2026-03-01T12:00:00+08:00")
J1_ENDED = job("J1", "440305", "2026-03-02", "2026-03-04T12:00:00+08:00", end="2026-03-03")


def test_a_job_end_date_ends_its_presence():
    # open-ended: owes registration from 2026-03-05
    _p, alerts, _l = run_core([J1, LATER])
    assert list(stays(alerts).values()) == ["raised"]
    # ended on 2026-03-03, before the grace period ran out: nothing owed
    _p, alerts, _l = run_core([{**J1, "end_date": "2026-03-03"}, LATER])
    assert not stays(alerts)


def test_a_later_job_record_with_an_end_date_updates_the_job():
    for order in ([J1, J1_ENDED, LATER], [J1_ENDED, J1, LATER], [J1, J1_ENDED, J1, LATER]):
        pipe, alerts, links = run_core(order)
        assert not stays(alerts), [r["posted_at"] for r in order]
        assert len({pid for k, pid in links.items() if k == "J1"}) == 1
        (iv,) = pipe.kv.get(sk.stays(links["J1"])) and \
            sk.decode_stays(pipe.kv.get(sk.stays(links["J1"])))["4403"].intervals
        assert (iv.end, iv.revised) == (ts("2026-03-04T00:00:00+08:00"),
                                        ts(J1_ENDED["posted_at"]))
    # the latest report with an end wins, whatever the order
    later = job("J1", "440305", "2026-03-02", "2026-03-06T12:00:00+08:00", end="2026-03-20")
    for order in ([J1, J1_ENDED, later, LATER], [later, J1_ENDED, J1, LATER]):
        _p, alerts, _l = run_core(order)
        assert list(stays(alerts).values()) == ["raised"]


# ------------------------------------------------------------------ input
def test_residence_and_job_input_records():
    assert validate_record(dereg("D", "440305", "2026-03-15T09:00:00+08:00"), "residence") \
        is None
    assert validate_record(dereg("D", "440305", "2026-03-15T09:00:00+08:00", "PA",
                                 left_on="2026-03-14"), "residence") is None
    assert validate_record({**A, "action": "register"}, "residence") is None
    missing = {k: v for k, v in A.items() if k != "valid_from"}
    assert validate_record(missing, "residence") == "missing_field: valid_from"
    assert validate_record({**missing, "action": "register"}, "residence") == \
        "missing_field: valid_from"
    assert validate_record({**A, "action": "leave"}, "residence") == "bad_value: action"
    assert validate_record({**dereg("D", "440305", "2026-03-15T09:00:00+08:00"),
                            "left_on": "2026-02-30"}, "residence") == "bad_date: left_on"
    assert validate_record(J1_ENDED, "job") is None
    assert validate_record({**J1_ENDED, "end_date": "2026-03-01"}, "job") == \
        "bad_value: end_date"


# ------------------------------------------------------------------ sequence neutrality
def _shuffled(records, seed):
    """The records in a random order, but for the watchlist's, which keep theirs (an entry's
    removal follows its addition)."""
    out = list(records)
    random.Random(seed).shuffle(out)
    watch = iter([r for r in records if r["source"] == "watchlist"])
    return [next(watch) if r["source"] == "watchlist" else r for r in out]


def _closing(records):
    """One record per event source, 800 days after the last report and about nobody rules
    concern (no ID number): with 400 days of allowed lateness, they move the watermark past
    every deadline once all the records are in."""
    top = max(r.get("time") or r.get("registered_at") or r.get("posted_at") or ""
              for r in records)
    t = (datetime.fromisoformat(top) + timedelta(days=800)).isoformat()
    nobody = {"name": "林某某"}
    return [
        {"source": "hotel", "record_id": "Z1", "event": "check_out", "hotel_id": "Z",
         "city_code": "110105", "time": t, "person": nobody},
        {"source": "rental", "record_id": "Z2", "property_id": "Z", "city_code": "110105",
         "address": "某路", "lease_start": t[:10], "registered_at": t, "person": nobody},
        reg("Z3", "110105", t, t[:10], t[:10], person=nobody),
        job("Z4", "110105", t[:10], t, person=nobody),
    ]


@pytest.mark.parametrize("seed", [3, 7, 11])
def test_final_alert_statuses_do_not_depend_on_the_order_of_arrival(tmp_path, seed):
    """A simulated corpus in event-time order and shuffled: the same final statuses. The
    allowed lateness spans the corpus, so every rule decides on all the records (late data
    with the default lateness: tests/unit/test_late_data_props.py).

    stale_registration and watchlist_match agree exactly. unregistered_stay does not yet:
    in some orders one of its ~40 alerts differs (hotel check-outs paired in arrival order,
    clusters built in another order); the share is measured and bounded here."""
    records = ordered_corpus(tmp_path, persons=400, days=30, seed=seed)
    span = {"lateness_s": 400 * 86400}
    closing = _closing(records)

    def by_rule(recs):
        _p, alerts, _l = run_core(recs + closing, **span)
        last = {a["alert_id"]: a for a in alerts}
        out: dict[str, dict[str, str]] = {}
        for aid, a in last.items():
            if a["status"] != "withdrawn":
                out.setdefault(a["rule"], {})[aid] = a["status"]
        return out

    want = by_rule(records)
    assert set(want) == {"unregistered_stay", "stale_registration", "watchlist_match"}
    for k in range(2):
        got = by_rule(_shuffled(records, seed * 10 + k))
        assert got["stale_registration"] == want["stale_registration"]
        assert got["watchlist_match"] == want["watchlist_match"]
        stays_want, stays_got = want["unregistered_stay"], got["unregistered_stay"]
        differ = set(stays_want.items()) ^ set(stays_got.items())
        assert len(differ) <= 0.03 * len(stays_want), differ


@pytest.mark.parametrize("seed", [3, 7, 11])
def test_stale_registration_is_sequence_neutral_with_late_data(tmp_path, seed):
    """Shuffled with the default allowed lateness (records arrive after the watermark passed
    their deadlines): stale_registration's final statuses are those of event-time order."""
    records = ordered_corpus(tmp_path, persons=400, days=30, seed=seed)

    def stale_final(recs):
        _p, alerts, _l = run_core(recs)
        return {k: v for k, v in final(stale(alerts)).items() if v != "withdrawn"}

    want = stale_final(records)
    assert want
    for k in range(2):
        assert stale_final(_shuffled(records, seed * 10 + k)) == want
