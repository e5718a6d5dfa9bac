"""The console's web logic without services: login and roles, queue filters and de-dup,
decisions (two reviewers, read-only auditors), audit entries, charts, metrics.

The Kafka sink here is a list (this is a unit test of the web layer); the browser tests in
tests/integration/test_console_browser.py run the same app against the real stack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from reglink.console import charts
from reglink.console.app import create_app, mask_id
from reglink.console.auth import Users, add_user, hash_password, verify_password
from reglink.console.state import ConsoleState
from reglink.core.settings import load_settings

EXPL = {"prior_weight": -8.0, "features": [
    {"feature": "id", "level": "exact", "weight": 12.5},
    {"feature": "name", "level": "pinyin", "weight": 4.1},
    {"feature": "sex", "level": "differs", "weight": -1.2}],
    "total_weight": 7.4, "probability": 0.9941}
WATCH = {"alert_id": "Awatch0000001", "rule": "watchlist_match", "status": "raised",
         "person_id": "P0123456789abcdef", "record_ids": ["W-1", "H-1"],
         "evidence": ["watchlist:W-1", "hotel:H-1"], "watch_id": "W-1", "priority": "high",
         "match_probability": 0.9941, "explanation": EXPL,
         "raised_at": "2026-03-02T10:00:00+08:00", "rule_version": "x"}
STAY = {"alert_id": "Astay00000001", "rule": "unregistered_stay", "status": "raised",
        "person_id": "P0123456789abcdef", "record_ids": ["R-1"], "evidence": ["rental:R-1"],
        "prefecture": "4403", "deadline": "2026-03-04T00:00:00+08:00",
        "match_probability": 0.99, "explanation": {"rental:R-1": EXPL},
        "raised_at": "2026-03-04T00:00:00+08:00", "rule_version": "x"}


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict]] = []

    def send(self, topic: str, key: str, value: dict) -> None:
        self.sent.append((topic, key, value))

    def of(self, topic: str) -> list[dict]:
        return [v for t, _k, v in self.sent if t == topic]


@pytest.fixture
def env(tmp_path: Path):
    users = tmp_path / "users.json"
    for name, role in (("ana", "operator"), ("bo", "supervisor"), ("au", "auditor")):
        add_user(users, name, role, f"{name}-pw-123")
    s = load_settings(hmac_key="k", console_users_file=str(users))
    state, sink = ConsoleState(), Sink()
    state.add_record("hotel:H-1", {"source": "hotel", "record_id": "H-1", "event": "check_in",
                                   "city_code": "440305", "time": "2026-03-02T10:00:00+08:00",
                                   "person": {"name": "陈丽", "id_number": "340102198803150026",
                                              "sex": "F", "phone": "13800001234"}})
    state.add_record("rental:R-1", {"source": "rental", "record_id": "R-1",
                                    "lease_start": "2026-03-01", "city_code": "440305",
                                    "registered_at": "2026-03-01T09:00:00+08:00",
                                    "address": "x", "person": {"name": "陈丽"}})
    state.add_alert(WATCH)
    state.add_alert(STAY)
    app = create_app(s, Users.load(users), state, sink, identities=None)
    return app, state, sink


def login(app, name):
    c = TestClient(app)
    r = c.post("/login", data={"username": name, "password": f"{name}-pw-123", "next": "/"},
               follow_redirects=False)
    assert r.status_code == 303
    return c


def test_passwords_are_scrypt_hashed_and_verified():
    h = hash_password("s3cret")
    assert h.startswith("scrypt$") and "s3cret" not in h
    assert verify_password("s3cret", h) and not verify_password("S3cret", h)


def test_pages_need_a_login_and_bad_passwords_fail(env):
    app, _state, sink = env
    c = TestClient(app)
    assert c.get("/", follow_redirects=False).status_code == 303
    r = c.post("/login", data={"username": "ana", "password": "nope"})
    assert r.status_code == 401 and "Wrong user name" in r.text
    login(app, "ana")
    assert [e["action"] for e in sink.of("audit")] == ["login"]


def test_queue_filters_and_dedups(env):
    app, state, _ = env
    c = login(app, "ana")
    page = c.get("/").text
    assert "Awatch0000001"[:13] in page and "Astay00000001"[:13] in page
    only = c.get("/?rule=unregistered_stay").text
    assert "row-Astay00000001" in only and "row-Awatch0000001" not in only
    assert "row-Awatch0000001" in c.get("/?priority=high").text
    assert "row-Astay00000001" in c.get("/?prefecture=4403").text
    state.add_alert(WATCH)  # repeat delivery
    state.add_alert({**WATCH, "status": "withdrawn"})  # latest status wins
    assert len(state.alerts) == 2 and state.alert(WATCH["alert_id"])["status"] == "withdrawn"
    assert "row-Awatch0000001" in c.get("/?status=withdrawn").text


def test_detail_shows_evidence_weights_and_audits_the_view(env):
    app, _state, sink = env
    c = login(app, "ana")
    page = c.get(f"/alerts/{WATCH['alert_id']}").text
    assert 'class="chart waterfall"' in page and 'data-feature="id"' in page
    assert "陈丽" in page and "340102••••" in page and "340102198803150026" not in page
    assert "•••1234" in page
    assert sink.of("audit")[-1]["action"] == "alert_view"
    stay = c.get(f"/alerts/{STAY['alert_id']}").text
    assert 'class="chart timeline"' in stay and 'class="deadline"' in stay


def test_watchlist_confirmation_needs_two_different_reviewers(env):
    app, state, sink = env
    aid = WATCH["alert_id"]
    ana, bo = login(app, "ana"), login(app, "bo")
    ana.post(f"/alerts/{aid}/decide", data={"action": "confirm", "reason": "identity_verified"})
    assert state.review(aid).status == "awaiting_second"
    page = ana.post(f"/alerts/{aid}/decide",
                    data={"action": "confirm", "reason": "identity_verified"}).text
    assert "different reviewer" in page and state.review(aid).status == "awaiting_second"
    bo.post(f"/alerts/{aid}/decide", data={"action": "confirm", "reason": "documents_checked"})
    assert state.review(aid).status == "confirmed"
    decisions = sink.of("decisions")
    assert [d["reviewer"] for d in decisions] == ["ana", "bo"]
    assert [e["action"] for e in sink.of("audit")].count("decision") == 2
    metrics = TestClient(app).get("/metrics").text
    assert 'reglink_console_decisions_total{action="confirm"' in metrics
    assert "reglink_console_time_to_decision_seconds_count" in metrics


def test_auditor_is_read_only(env):
    app, state, sink = env
    c = login(app, "au")
    page = c.get(f"/alerts/{WATCH['alert_id']}").text
    assert 'id="read-only"' in page and 'id="do-confirm"' not in page
    r = c.post(f"/alerts/{WATCH['alert_id']}/decide",
               data={"action": "dismiss", "reason": "different_person"})
    assert r.status_code == 403 and sink.of("decisions") == []
    assert state.review(WATCH["alert_id"]).status == "open"
    assert login(app, "ana").get("/audit").status_code == 403  # operators: no audit trail


def test_different_person_dismissal_is_a_cannot_link_decision(env):
    app, _state, sink = env
    c = login(app, "ana")
    c.post(f"/alerts/{WATCH['alert_id']}/decide",
           data={"action": "dismiss", "reason": "different_person", "note": "other 陈丽"})
    d = sink.of("decisions")[-1]
    assert d["cannot_link"] and d["watch_id"] == "W-1" and d["person_id"] == WATCH["person_id"]
    assert json.loads(json.dumps(d)) == d


def test_person_lookup_requires_a_justification(env):
    app, _state, sink = env
    c = login(app, "ana")
    r = c.post(f"/persons/{WATCH['person_id']}", data={"justification": "x"})
    assert r.status_code == 400 and not [e for e in sink.of("audit")
                                         if e["action"] == "person_lookup"]


def test_charts_and_masks():
    svg = charts.waterfall(EXPL)
    assert svg.count('class="bar"') == 4 and "+7.40" in svg
    assert "No feature weights" in charts.waterfall({"new_identity": True})
    tl = charts.timeline([{"label": "rental:R-1", "start": 1.77e9, "end": None, "grace": 259200}],
                         [{"label": "residence:S-1", "registered_at": 1.7705e9,
                           "valid_from": 1.7705e9, "valid_until": 1.78e9}], 1.7703e9)
    assert 'class="presence"' in tl and 'class="registration"' in tl
    assert mask_id("340102198803150026") == "340102" + "•" * 12


def test_the_stay_chart_draws_the_stored_stays_of_the_alert_prefecture(monkeypatch):
    """The detail page's timeline reads the person's stays through the schema codec: the
    intervals and registrations of the alert's prefecture, not the evidence records."""
    from matchers import fastjson
    from reglink.console import app as console_app
    from reglink.stores.schema import decode_stays

    stays = decode_stays(fastjson.dumps({
        "4403": {"iv": [["rental:R1", 1.70e9, None, 259200, None],
                        ["hotel:H1", 1.71e9, 1.7101e9, 2592000, "H-1"]],
                 "reg": [["residence:S1", 1.72e9, 1.715e9, 1.8e9]], "ex": {}},
        "1101": {"iv": [["job:J9", 1.5e9, None, 259200, None]], "reg": [], "ex": {}}}))
    drawn = {}

    def timeline(intervals, regs, deadline):
        drawn.update(intervals=intervals, regs=regs, deadline=deadline)
        return "<svg/>"

    monkeypatch.setattr(console_app.charts, "timeline", timeline)
    alert = {"prefecture": "4403", "deadline": "2023-11-17T00:00:00+08:00", "evidence": []}
    assert console_app._stay_chart(alert, stays, ConsoleState()) == "<svg/>"
    assert drawn["intervals"] == [
        {"label": "rental:R1", "start": 1.70e9, "end": None, "grace": 259200},
        {"label": "hotel:H1", "start": 1.71e9, "end": 1.7101e9, "grace": 2592000}]
    assert drawn["regs"] == [{"label": "residence:S1", "registered_at": 1.72e9,
                              "valid_from": 1.715e9, "valid_until": 1.8e9}]
    assert drawn["deadline"] is not None
