"""Review decisions: the state machine (two reviewers for watchlist hits, reason codes, roles)
and their feedback into matching (Pipeline.apply_decision), with embedded state."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from matchers.normalise import id_check_char
from reglink.core.pipeline import Pipeline
from reglink.core.rules import decisions as dec
from reglink.core.settings import load_settings
from reglink.replay import run_replay
from reglink.stores.kv import MemoryKV


def settings(**kw):
    return load_settings(hmac_key="unit-test-key", **kw)


def rid(area: str, birth: str, seq: int) -> str:
    body = f"{area}{birth.replace('-', '')}{seq:03d}"
    return body + id_check_char(body)


CHEN = {"name": "陈丽", "id_number": rid("340102", "1988-03-15", 2), "sex": "F"}
WATCH = {"source": "watchlist", "watch_id": "W-9", "action": "add", "priority": "medium",
         "person": {"name": "陈丽", "birth_date": "1988-03-15", "sex": "F"}}


def hotel_in(rec_id, person, time, city="440305"):
    return {"source": "hotel", "record_id": rec_id, "event": "check_in", "hotel_id": "H1",
            "city_code": city, "time": time, "person": person}


NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
WATCH_ALERT = {"alert_id": "Aw1", "rule": "watchlist_match", "person_id": "P1",
               "watch_id": "W-9", "status": "raised"}
STAY_ALERT = {"alert_id": "As1", "rule": "unregistered_stay", "person_id": "P1",
              "prefecture": "4403", "status": "raised"}


def decide(review, alert, action, reason, who, role="operator", now=NOW):
    dec.check(alert, review, action, reason, who, role)
    d = dec.make_decision(alert, action, reason, who, role, now=now, review=review)
    review.apply(d)
    return d


def dismissed(alert, reason="different_person", second_reason=None, suppress_s=90 * 86400):
    """The decisions of two reviewers dismissing ``alert`` (first ana, then the supervisor)."""
    review = dec.Review(alert["alert_id"], alert["rule"])
    first = decide(review, alert, "dismiss", reason, "ana")
    dec.check(alert, review, "dismiss", second_reason or reason, "sup", "supervisor")
    second = dec.make_decision(alert, "dismiss", second_reason or reason, "sup", "supervisor",
                               now=NOW, suppress_s=suppress_s, review=review)
    return [first, second]


def test_watchlist_match_needs_two_different_reviewers():
    review = dec.Review("Aw1", "watchlist_match")
    decide(review, WATCH_ALERT, "confirm", "identity_verified", "ana")
    assert review.status == dec.AWAITING_SECOND
    with pytest.raises(dec.DecisionError, match="different reviewer"):
        dec.check(WATCH_ALERT, review, "confirm", "identity_verified", "ana", "operator")
    decide(review, WATCH_ALERT, "confirm", "documents_checked", "bo", "supervisor")
    assert review.status == dec.CONFIRMED and review.confirmers == ["ana", "bo"]
    assert review.decided_at == NOW.isoformat(timespec="seconds")


def test_stay_is_confirmed_by_one_reviewer():
    review = dec.Review("As1", "unregistered_stay")
    decide(review, STAY_ALERT, "confirm", "stay_confirmed", "ana")
    assert review.status == dec.CONFIRMED


def test_auditor_cannot_decide_and_reason_codes_are_checked():
    review = dec.Review("Aw1", "watchlist_match")
    with pytest.raises(dec.DecisionError, match="auditor"):
        dec.check(WATCH_ALERT, review, "confirm", "identity_verified", "au", "auditor")
    with pytest.raises(dec.DecisionError, match="reason code"):
        dec.check(WATCH_ALERT, review, "dismiss", "identity_verified", "ana", "operator")
    with pytest.raises(dec.DecisionError, match="may not"):
        dec.check(WATCH_ALERT, review, "misused_identity", "documents_misused", "ana",
                  "operator")


def test_terminal_states_take_no_more_decisions_and_fold_is_idempotent():
    review = dec.Review("Aw1", "watchlist_match")
    decide(review, WATCH_ALERT, "dismiss", "data_error", "ana")
    d = decide(review, WATCH_ALERT, "dismiss", "data_error", "cy")
    review.apply(d)  # re-delivered
    assert review.status == dec.DISMISSED and len(review.history) == 2
    with pytest.raises(dec.DecisionError, match="already dismissed"):
        dec.check(WATCH_ALERT, review, "more_info", "need_documents", "bo", "operator")
    again = dec.fold("Aw1", review.history, "watchlist_match")
    assert again.to_json() == review.to_json()


def test_more_info_keeps_the_alert_open_for_decisions():
    review = dec.Review("Aw1", "watchlist_match")
    decide(review, WATCH_ALERT, "more_info", "need_documents", "ana")
    assert review.status == dec.MORE_INFO
    decide(review, WATCH_ALERT, "dismiss", "different_person", "bo")
    assert review.status == dec.AWAITING_SECOND_DISMISSAL
    decide(review, WATCH_ALERT, "dismiss", "different_person", "ana")
    assert review.status == dec.DISMISSED and review.dismissers == ["bo", "ana"]


def test_different_person_is_a_permanent_cannot_link_other_dismissals_expire():
    cl = dismissed(WATCH_ALERT)[-1]
    assert cl["cannot_link"] and cl["suppress_until"] is None
    tmp = dismissed(WATCH_ALERT, "data_error", suppress_s=86400)[-1]
    assert tmp["suppress_until"] == "2026-03-11T09:00:00+00:00" and not tmp["cannot_link"]
    kv = MemoryKV()
    for _op, key, value in dec.effects(tmp):
        kv.set(key, value)
    args = (kv.get, kv.smembers, lambda p: p, "Aw1", "P1")
    assert dec.suppressed(*args, NOW.timestamp()) == "dismissed"
    assert dec.suppressed(*args, NOW.timestamp() + 2 * 86400) is None
    for _op, key, value in dec.effects(cl):
        kv.set(key, value)
    assert dec.suppressed(*args, NOW.timestamp() + 900 * 86400) == "cannot_link"


def _watch_alerts(pipe_decisions):
    pipe = Pipeline(settings(), MemoryKV())
    for d in pipe_decisions:
        pipe.apply_decision(d)
    alerts = []
    for r in [WATCH, hotel_in("H1", CHEN, "2026-03-01T10:00:00+08:00")]:
        alerts += [o.value for o in pipe.process(r)[1] if o.topic == "alerts"]
    return alerts


def test_a_different_person_dismissal_stops_the_pair_in_the_next_run():
    first = _watch_alerts([])
    assert len(first) == 1
    both = dismissed(first[0])
    assert _watch_alerts([json.loads(json.dumps(both[0]))]) == first  # one is not enough
    assert _watch_alerts([json.loads(json.dumps(d)) for d in both]) == []


def test_a_misused_identity_mark_stops_every_watch_entry_for_that_person():
    first = _watch_alerts([])
    d = dec.make_decision(first[0], "misused_identity", "documents_misused", "sup",
                          "supervisor", now=NOW)
    assert _watch_alerts([d]) == []


def test_confirmations_and_more_info_do_not_suppress():
    first = _watch_alerts([])
    d = dec.make_decision(first[0], "confirm", "identity_verified", "ana", "operator", now=NOW)
    assert [a["alert_id"] for a in _watch_alerts([d])] == [first[0]["alert_id"]]


def test_replay_applies_a_decisions_file(tmp_path: Path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in
                           [WATCH, hotel_in("H1", CHEN, "2026-03-01T10:00:00+08:00")]))
    r1 = run_replay(settings(), [src], tmp_path / "o1")
    alert = json.loads((tmp_path / "o1" / "alerts.jsonl").read_text().splitlines()[0])
    r2 = run_replay(settings(), [src], tmp_path / "o2", decisions=dismissed(alert))
    assert (r1.alerts, r2.alerts) == (1, 0)


def test_a_decision_is_committed_to_the_base_store_at_once():
    base = MemoryKV()
    pipe = Pipeline(settings(), base)
    first = _watch_alerts([])
    for d in dismissed(first[0]):
        pipe.apply_decision(d)
    assert base.get(f"sup:{first[0]['alert_id']}") is not None


def test_a_watchlist_dismissal_needs_a_second_different_reviewer():
    review = dec.Review("Aw1", "watchlist_match")
    first = decide(review, WATCH_ALERT, "dismiss", "different_person", "ana")
    assert review.status == dec.AWAITING_SECOND_DISMISSAL and review.dismissers == ["ana"]
    assert not first["final"] and not first["cannot_link"] and first["suppress_until"] is None
    assert dec.effects(first) == []  # nothing is suppressed until a second reviewer agrees
    with pytest.raises(dec.DecisionError, match="already dismissed"):
        dec.check(WATCH_ALERT, review, "dismiss", "different_person", "ana", "operator")
    second = decide(review, WATCH_ALERT, "dismiss", "different_person", "bo")
    assert second["final"] and second["cannot_link"] and review.status == dec.DISMISSED
    assert [op for op, _k, _v in dec.effects(second)] == ["set"]
    assert dec.fold("Aw1", review.history).to_json() == review.to_json()


def test_a_cannot_link_needs_both_reviewers_to_say_different_person():
    mixed = dismissed(WATCH_ALERT, "different_person", second_reason="data_error")
    assert not mixed[-1]["cannot_link"] and mixed[-1]["suppress_until"]
    mixed = dismissed(WATCH_ALERT, "data_error", second_reason="different_person")
    assert not mixed[-1]["cannot_link"] and mixed[-1]["suppress_until"]


def test_a_high_priority_dismissal_needs_a_supervisor():
    high = {**WATCH_ALERT, "priority": "high"}
    review = dec.Review("Aw1", "watchlist_match")
    decide(review, high, "dismiss", "data_error", "ana")
    with pytest.raises(dec.DecisionError, match="supervisor"):
        dec.check(high, review, "dismiss", "data_error", "bo", "operator")
    decide(review, high, "dismiss", "data_error", "sup", "supervisor")
    assert review.status == dec.DISMISSED
    # a supervisor first: an operator may complete it
    review = dec.Review("Aw1", "watchlist_match")
    decide(review, high, "dismiss", "data_error", "sup", "supervisor")
    decide(review, high, "dismiss", "data_error", "bo")
    assert review.status == dec.DISMISSED
    # medium priority: two operators
    review = dec.Review("Aw1", "watchlist_match")
    decide(review, WATCH_ALERT, "dismiss", "data_error", "ana")
    decide(review, WATCH_ALERT, "dismiss", "data_error", "bo")
    assert review.status == dec.DISMISSED


def test_a_stay_dismissal_takes_one_reviewer():
    review = dec.Review("As1", "unregistered_stay")
    d = decide(review, STAY_ALERT, "dismiss", "registered_elsewhere", "ana")
    assert d["final"] and review.status == dec.DISMISSED and dec.effects(d) == []


def test_a_reviewer_who_acted_takes_no_second_decision():
    review = dec.Review("Aw1", "watchlist_match")
    decide(review, WATCH_ALERT, "confirm", "identity_verified", "ana")
    assert review.acted("ana")["action"] == "confirm" and review.acted("bo") is None
    for action, reason in (("dismiss", "data_error"), ("more_info", "need_documents")):
        with pytest.raises(dec.DecisionError, match="already confirmed"):
            dec.check(WATCH_ALERT, review, action, reason, "ana", "operator")
    decide(review, WATCH_ALERT, "more_info", "need_documents", "bo")  # bo has not acted yet
    assert review.acted("bo") is None


def test_rule_specific_reasons_are_offered_and_accepted_for_their_rule_only():
    stale = {"alert_id": "Ar1", "rule": "stale_registration", "person_id": "P1",
             "prefecture": "4403", "new_prefecture": "3301", "status": "raised"}
    assert list(dec.reasons("stale_registration", "confirm")) == [
        "identity_verified", "documents_checked", "registration_stale"]
    assert "deregistered_elsewhere" in dec.reasons("stale_registration", "dismiss")
    assert "registered_elsewhere" in dec.reasons("unregistered_stay", "dismiss")
    assert "entry_outdated" in dec.reasons("watchlist_match", "dismiss")
    for alert, action, reason in ((stale, "confirm", "stay_confirmed"),
                                  (stale, "dismiss", "entry_outdated"),
                                  (STAY_ALERT, "confirm", "registration_stale"),
                                  (WATCH_ALERT, "dismiss", "deregistered_elsewhere")):
        with pytest.raises(dec.DecisionError, match="not a reason code"):
            dec.check(alert, dec.Review(alert["alert_id"], alert["rule"]), action, reason,
                      "ana", "operator")
    # one reviewer decides a stale registration, as a stay
    review = dec.Review("Ar1", "stale_registration")
    decide(review, stale, "confirm", "registration_stale", "ana")
    assert review.status == dec.CONFIRMED
    with pytest.raises(dec.DecisionError, match="watchlist matches only"):
        dec.check(stale, dec.Review("Ar1"), "misused_identity", "documents_misused", "bo",
                  "supervisor")


def test_the_default_dismissal_reason_is_not_the_permanent_one():
    assert next(iter(dec.REASONS["dismiss"])) != "different_person"


def test_a_single_dismissal_without_final_is_final():
    """Messages of schema reglink/decision/v1 have no ``final``: one dismissal ended it."""
    v1 = {"decision_id": "D1", "alert_id": "Aw1", "rule": "watchlist_match", "person_id": "P1",
          "action": "dismiss", "reason": "data_error", "reviewer": "ana", "role": "operator",
          "decided_at": "2026-03-10T09:00:00+00:00", "cannot_link": False,
          "suppress_until": "2026-06-08T09:00:00+00:00", "schema": "reglink/decision/v1"}
    assert dec.fold("Aw1", [v1]).status == dec.DISMISSED
    assert [k for _op, k, _v in dec.effects(v1)] == [dec.suppression_key("Aw1")]
