"""The console's web logic without services: login and roles, queue filters and de-dup,
decisions (two reviewers to confirm or dismiss a watchlist match, the already-acted view,
read-only auditors), what the pages say (one time zone, probabilities, prefecture names, the
sentence above the waterfall, late registrations), the audit table and its CSV export, the
session secret, charts, metrics.

The Kafka sink here is a list (this is a unit test of the web layer); the browser tests in
tests/integration/test_console_browser.py run the same app against the real stack."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from reglink.console import app as console_app
from reglink.console import charts, fmt
from reglink.console.app import check_secret, create_app, mask_id
from reglink.console.auth import Users, add_user, hash_password, verify_password
from reglink.console.state import ConsoleState
from reglink.core.errors import ConfigError
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


def make_env(tmp_path: Path, trail: list[dict] | None = None, **overrides):
    """The app on a state with two alerts; the audit trail it shows is ``trail``, or what
    it wrote to the sink."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    users = tmp_path / "users.json"
    for name, role in (("ana", "operator"), ("bo", "supervisor"), ("au", "auditor"),
                       ("cy", "operator")):
        add_user(users, name, role, f"{name}-pw-123")
    s = load_settings(hmac_key="k", console_users_file=str(users), **overrides)
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
    app = create_app(s, Users.load(users), state, sink, identities=None,
                     audit_reader=lambda: sink.of("audit") if trail is None else trail)
    return app, state, sink


@pytest.fixture
def env(tmp_path: Path):
    return make_env(tmp_path)


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
    assert "<td>2026-03-02 10:00 +08:00</td>" in page  # the hotel record's time, as elsewhere
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


def test_a_watchlist_dismissal_awaits_a_second_reviewer_a_supervisor_for_high_priority(tmp_path):
    # open second review (blind review off): the second reviewer sees the pending dismissal
    app, state, sink = make_env(tmp_path, blind_review_priorities="")
    aid = WATCH["alert_id"]  # priority high
    ana, cy, bo = login(app, "ana"), login(app, "cy"), login(app, "bo")
    page = ana.post(f"/alerts/{aid}/decide",
                    data={"action": "dismiss", "reason": "different_person",
                          "note": "other 陈丽"}).text
    first = sink.of("decisions")[-1]
    assert not first["final"] and not first["cannot_link"] and first["suppress_until"] is None
    assert state.review(aid).status == "awaiting_second_dismissal"
    assert "Dismissal proposed (1 of 2)" in page and "a supervisor" in page
    assert "awaiting second dismissal (1/2)" in page
    assert "awaiting second dismissal 1/2" in ana.get("/").text  # the queue row
    assert "(1 of 2: nothing suppressed yet)" in page  # the review history
    # another operator may not complete it: a high-priority entry needs a supervisor
    page = cy.get(f"/alerts/{aid}").text
    assert 'id="pending-dismissal"' in page and "ana (operator) proposed dismissing" in page
    page = cy.post(f"/alerts/{aid}/decide",
                   data={"action": "dismiss", "reason": "different_person"}).text
    assert "supervisor must dismiss it" in page and len(sink.of("decisions")) == 1
    bo.post(f"/alerts/{aid}/decide", data={"action": "dismiss", "reason": "different_person"})
    d = sink.of("decisions")[-1]
    assert d["final"] and d["cannot_link"] and d["reviewer"] == "bo"
    assert d["watch_id"] == "W-1" and d["person_id"] == WATCH["person_id"]
    assert json.loads(json.dumps(d)) == d
    assert state.review(aid).status == "dismissed"


def test_the_second_reviewer_of_a_high_priority_watchlist_match_decides_blind(env):
    app, state, sink = env
    aid = WATCH["alert_id"]  # priority high: blind second review by default
    ana, cy = login(app, "ana"), login(app, "cy")
    ana.post(f"/alerts/{aid}/decide",
             data={"action": "confirm", "reason": "identity_verified", "note": "checked 陈丽"})
    assert state.review(aid).status == "awaiting_second"
    page = html.unescape(cy.get(f"/alerts/{aid}").text)
    assert 'id="blind-review"' in page
    # nothing betrays the first decision: who, what, why, nor the review status
    for leak in ("ana", "checked 陈丽", "awaiting second", 'id="pending-confirmation"',
                 'id="history"', "2 of 2"):
        assert leak not in page, leak
    queue = cy.get("/").text
    row = queue[queue.index(f'id="row-{aid}"'):]
    row = row[:row.index("</tr>")]
    assert "blind review" in row and "awaiting second" not in row
    # nor does a filter on the review status betray it
    assert f'row-{aid}' not in cy.get("/?review=awaiting_second").text
    assert f'row-{aid}' in ana.get("/?review=awaiting_second").text
    # the first reviewer still sees her own decision
    assert 'id="your-decision"' in ana.get(f"/alerts/{aid}").text
    cy.post(f"/alerts/{aid}/decide", data={"action": "confirm", "reason": "documents_checked"})
    d = sink.of("decisions")
    assert [(x["reviewer"], x["blind"]) for x in d] == [("ana", False), ("cy", True)]
    assert state.review(aid).status == "confirmed"
    audited = [e for e in sink.of("audit") if e["action"] == "decision"]
    assert [e["subject"].get("blind") for e in audited] == [None, True]
    # once decided, the second reviewer sees the first decision
    after = html.unescape(cy.get(f"/alerts/{aid}").text)
    assert 'id="history"' in after and "ana (operator)" in after


def test_blind_review_is_a_setting_by_priority(tmp_path):
    app, state, _sink = make_env(tmp_path, blind_review_priorities="high, medium")
    medium = {**WATCH, "alert_id": "Awatch0000002", "priority": "medium"}
    low = {**WATCH, "alert_id": "Awatch0000003", "priority": "low"}
    state.add_alert(medium)
    state.add_alert(low)
    ana, cy = login(app, "ana"), login(app, "cy")
    for a in (medium, low):
        ana.post(f"/alerts/{a['alert_id']}/decide",
                 data={"action": "confirm", "reason": "identity_verified"})
    assert 'id="blind-review"' in cy.get("/alerts/Awatch0000002").text
    page = cy.get("/alerts/Awatch0000003").text
    assert 'id="blind-review"' not in page and 'id="pending-confirmation"' in page


def test_the_counterfactuals_are_shown_beside_the_waterfall(env):
    app, state, _sink = env
    aid = "Awatch0000009"
    state.add_alert({**WATCH, "alert_id": aid, "counterfactuals": [
        {"change": "remove", "feature": "id", "record": "hotel:H-1", "level": "missing",
         "probability": 0.42, "flips": True},
        {"change": "match", "feature": "phone", "level": "same", "probability": 0.9991,
         "flips": False}]})
    page = html.unescape(login(app, "ana").get(f"/alerts/{aid}").text)
    weights = page[page.index('id="weights"'):page.index('id="decisions"')]
    assert 'id="counterfactuals"' in weights
    assert "Without the ID number on hotel:H-1 this would not be raised (0.4200)." in weights
    assert "A matching phone would not raise it (0.9991)." in weights


def test_a_link_near_the_threshold_shows_its_counterfactuals_under_its_waterfall(env):
    app, state, _sink = env
    aid = "Astay00000009"
    near = {**EXPL, "counterfactuals": [
        {"change": "remove", "feature": "birth_date", "person_id": STAY["person_id"],
         "level": "missing", "probability": 0.0312, "flips": True}]}
    state.add_alert({**STAY, "alert_id": aid, "record_ids": ["R-1", "R-2"],
                     "evidence": ["rental:R-1", "rental:R-2"],
                     "explanation": {"rental:R-1": EXPL, "rental:R-2": near}})
    page = html.unescape(login(app, "ana").get(f"/alerts/{aid}").text)
    weights = page[page.index('id="weights"'):page.index('id="decisions"')]
    # once, under the second record's chart, not the first
    assert weights.count("Near the link threshold") == 1
    assert weights.index("rental:R-2") < weights.index("Near the link threshold")
    assert "Without the birth date on this record it would not link (0.0312)." in weights
    assert 'id="counterfactuals"' not in weights  # the alert itself has none


def test_the_dismiss_form_has_no_default_reason(env):
    app, _state, sink = env
    c = login(app, "ana")
    page = c.get(f"/alerts/{WATCH['alert_id']}").text
    select = re.search(r'<select name="reason" id="reason-dismiss" required>(.*?)</select>',
                       page).group(1)
    assert select.startswith('<option value="" selected disabled>')
    assert select.index("different_person") > select.index("data_error")
    page = c.post(f"/alerts/{WATCH['alert_id']}/decide",
                  data={"action": "dismiss", "reason": ""}).text
    assert "choose a reason to dismiss" in page and sink.of("decisions") == []


def test_a_reviewer_who_acted_sees_their_decision_not_the_form(tmp_path):
    # open second review (blind review off): the second reviewer sees the first decision
    app, _state, _sink = make_env(tmp_path, blind_review_priorities="")
    aid = WATCH["alert_id"]
    ana, cy = login(app, "ana"), login(app, "cy")
    page = ana.post(f"/alerts/{aid}/decide",
                    data={"action": "confirm", "reason": "identity_verified",
                          "note": "photo matches"}).text
    assert 'id="your-decision"' in page and "You confirmed this alert on" in page
    assert "Identity verified against the evidence (photo matches)" in page
    assert "A second, different reviewer must confirm it" in page
    assert 'class="decide"' not in page
    other = cy.get(f"/alerts/{aid}").text
    assert 'id="your-decision"' not in other and 'id="do-confirm"' in other
    assert "(2 of 2, final)" in other and 'id="pending-confirmation"' in other


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


def test_the_stay_chart_draws_the_stored_stays_of_the_alert_prefecture():
    """The detail page's timeline reads the person's stays through the schema codec: the
    intervals and registrations of the alert's prefecture, not the evidence records."""
    from matchers import fastjson
    from reglink.stores.schema import decode_stays

    stays = decode_stays(fastjson.dumps({
        "4403": {"iv": [["rental:R1", 1.70e9, None, 259200, None],
                        ["hotel:H1", 1.71e9, 1.7101e9, 2592000, "H-1"]],
                 "reg": [["residence:S1", 1.72e9, 1.715e9, 1.8e9]], "ex": {}},
        "1101": {"iv": [["job:J9", 1.5e9, None, 259200, None]], "reg": [], "ex": {}}}))
    alert = {"prefecture": "4403", "deadline": "2023-11-17T00:00:00+08:00", "evidence": []}
    intervals, regs = console_app.stay_data(alert, stays, ConsoleState())
    assert intervals == [
        {"label": "rental:R1", "start": 1.70e9, "end": None, "grace": 259200},
        {"label": "hotel:H1", "start": 1.71e9, "end": 1.7101e9, "grace": 2592000}]
    assert regs == [{"label": "residence:S1", "registered_at": 1.72e9,
                     "valid_from": 1.715e9, "valid_until": 1.8e9}]


# ---------------------------------------------------------------- what the pages say
def test_the_queue_shows_the_probability_with_the_precision_of_the_detail(env):
    app, state, _ = env
    near = {**WATCH, "alert_id": "Anear00000001", "match_probability": 0.9999786,
            "explanation": {**EXPL, "probability": 0.999979}}
    state.add_alert(near)
    c = login(app, "ana")
    queue = c.get("/").text
    row = re.search(r'<tr id="row-Anear00000001".*?</tr>', queue, re.S).group(0)
    assert '<td class="p">&gt; 0.9999</td>' in row and "1.000" not in row
    detail = c.get("/alerts/Anear00000001").text
    assert '<strong id="probability">&gt; 0.9999</strong>' in detail
    assert 'class="prob" font-weight="bold">&gt; 0.9999</text>' in detail  # the waterfall
    row = re.search(r'<tr id="row-Awatch0000001".*?</tr>', queue, re.S).group(0)
    assert '<td class="p">0.9941</td>' in row
    assert '<strong id="probability">0.9941</strong>' in c.get("/alerts/Awatch0000001").text
    assert [fmt.prob(p) for p in (1.0, 0.0, 0.99994, 0.99996, 0.00004, None)] == [
        "1.0000", "0.0000", "0.9999", "> 0.9999", "< 0.0001", ""]


def test_one_plain_sentence_above_the_waterfall(env):
    assert fmt.summary(EXPL) == ("Same ID number; similar name (pinyin); different sex: these "
                                 "records are very likely the same person.")
    strong = {"prior_weight": 0.97, "probability": 1.0, "total_weight": 35.7, "features": [
        {"feature": "id", "level": "exact_valid", "weight": 11.2},
        {"feature": "name", "level": "exact", "weight": 11.5},
        {"feature": "birth_date", "level": "exact", "weight": 11.1},
        {"feature": "sex", "level": "same", "weight": 0.99},
        {"feature": "phone", "level": "missing", "weight": 0.0}]}
    assert fmt.summary(strong) == ("Same ID number, name and birth date: these records are "
                                   "almost certainly the same person.")
    weak = {"probability": 0.3, "features": [{"feature": "name", "level": "different",
                                              "weight": -6.0}]}
    assert fmt.summary(weak) == ("Different name: these records are probably not the same "
                                 "person.")
    assert fmt.summary({"new_identity": True}) is None  # the chart says there are none
    app, _state, _ = env
    page = login(app, "ana").get(f"/alerts/{WATCH['alert_id']}").text
    sentence = page.index('<p class="summary">Same ID number; similar name (pinyin)')
    assert sentence < page.index('class="chart waterfall"')


def _texts(svg: str):
    for m in re.finditer(r'<text x="([\d.-]+)"[^>]*?(?:text-anchor="(\w+)")?[^>]*>(.*?)</text>',
                         svg):
        yield float(m[1]), m[2] or "start", html.unescape(re.sub(r"<[^>]+>", "", m[3]))


@pytest.mark.parametrize("total", [7.4, 35.75, -20.0])
def test_the_waterfall_keeps_every_label_inside_the_chart(total):
    """Each text fits between 0 and the chart's width (an upper bound of 7 px a character
    at the chart's 11 px), whatever the sign and size of the weights."""
    expl = {**EXPL, "features": [*EXPL["features"],
                                 {"feature": "birth_date", "level": "exact",
                                  "weight": total - 7.4 + 8.0 - 15.4 + 8.0}],
            "total_weight": total, "probability": 0.9999786}
    svg = charts.waterfall(expl, width=560)
    width = float(re.search(r'width="(\d+)"', svg)[1])
    texts = list(_texts(svg))
    assert any(t == "> 0.9999" for _x, _a, t in texts)
    for x, anchor, text in texts:
        if anchor == "end":
            assert x - 7 * len(text) >= 0, text
        elif not text.startswith("bits of evidence"):  # the caption, in 10 px text
            assert x + 7 * len(text) <= width, (text, x)
    caption = next(t for _x, _a, t in texts if t.startswith("bits of evidence"))
    assert 4 + 6 * len(caption) <= width


def test_every_time_is_shown_in_one_zone(env, tmp_path):
    app, _state, _ = env
    c = login(app, "ana")
    stay = c.get(f"/alerts/{STAY['alert_id']}").text
    assert '<span id="deadline">2026-03-04 00:00 +08:00</span>' in stay
    assert "deadline 2026-03-04 00:00 +08:00</text>" in stay  # the chart, same day
    assert ">03-04</text>" in stay and "T00:00:00" not in stay
    c.post(f"/alerts/{STAY['alert_id']}/decide",
           data={"action": "confirm", "reason": "stay_confirmed"})
    history = c.get(f"/alerts/{STAY['alert_id']}").text
    decided = re.search(r'<table id="history">.*?<td>([^<]*)</td>', history, re.S)[1]
    assert decided.endswith(" +08:00")
    shown = datetime.strptime(decided, "%Y-%m-%d %H:%M %z")
    assert shown.utcoffset() == timedelta(hours=8)
    assert abs(shown - datetime.now(UTC)) < timedelta(minutes=2)
    # another zone, set once, moves every time with it
    app_utc, _s, _k = make_env(tmp_path / "utc", console_tz="UTC")
    stay = login(app_utc, "ana").get(f"/alerts/{STAY['alert_id']}").text
    assert '<span id="deadline">2026-03-03 16:00 +00:00</span>' in stay
    assert "deadline 2026-03-03 16:00 +00:00</text>" in stay
    with pytest.raises(ConfigError, match="console_tz"):
        fmt.zone("Mars/Olympus")
    assert fmt.when("2026-03-09T00:00:00+08:00", fmt.zone("Asia/Shanghai")) == (
        "2026-03-09 00:00 +08:00")


def test_prefectures_have_names(env):
    app, _state, _ = env
    c = login(app, "ana")
    queue = c.get("/").text
    assert "<td>4403 深圳市, 广东省</td>" in queue
    assert '<option value="4403" >4403 深圳市, 广东省</option>' in queue  # the filter
    assert "(4403 深圳市, 广东省)</h2>" in c.get(f"/alerts/{STAY['alert_id']}").text


def test_watchlist_rows_show_when_they_were_raised(env):
    app, state, _ = env
    published = datetime(2026, 3, 5, 2, 30, tzinfo=UTC).timestamp()
    state.add_alert({**WATCH, "alert_id": "Anotime000001", "raised_at": None}, at=published)
    queue = login(app, "ana").get("/").text
    row = re.search(r'<tr id="row-Awatch0000001".*?</tr>', queue, re.S).group(0)
    assert '<td class="raised">2026-03-02 10:00 +08:00</td>' in row
    row = re.search(r'<tr id="row-Anotime000001".*?</tr>', queue, re.S).group(0)
    assert '<td class="raised">2026-03-05 10:30 +08:00 (published)</td>' in row


def test_a_registration_after_the_deadline_is_noted(env):
    app, state, _ = env
    state.add_record("residence:S-1", {"source": "residence", "permit_no": "S-1",
                                       "city_code": "440305",
                                       "registered_at": "2026-03-06T10:00:00+08:00",
                                       "valid_from": "2026-03-01", "valid_until": "2026-09-01",
                                       "person": {"name": "陈丽"}})
    state.add_alert({**STAY, "alert_id": "Alate00000001",
                     "evidence": ["rental:R-1", "residence:S-1"]})
    c = login(app, "ana")
    page = c.get("/alerts/Alate00000001").text
    note = re.search(r'<div class="notice" id="late-registration">(.*?)</div>', page, re.S)[1]
    assert "residence:S-1 was registered 2026-03-06 10:00 +08:00, 2 d 10 h after the deadline" \
        in note and "made too late to count" in note
    assert 'id="late-registration"' not in c.get(f"/alerts/{STAY['alert_id']}").text


# ---------------------------------------------------------------- audit trail
def _trail(n: int) -> list[dict]:
    from reglink.person import audit_entry

    t0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
    return [audit_entry("ana" if i % 2 else "bo", "operator", "alert_view" if i % 3 else
                        "person_lookup", {"alert_id": f"A{i:04d}", "person_id": f"P{i % 7}"},
                        "=HYPERLINK(\"x\")" if i == 5 else f"case {i}", "console",
                        now=t0 + timedelta(hours=i)) for i in range(n)]


def test_the_audit_trail_is_a_filtered_paged_table(tmp_path):
    trail = _trail(120)
    app, _state, sink = make_env(tmp_path, trail)
    c = login(app, "bo")
    page = c.get("/audit").text
    assert "120 entries, page 1 of 3" in page and page.count('<tr data-action=') == 50
    assert "{&#34;" not in page and "alert id A0119; person id P0" in page  # not raw JSON
    assert "2026-03-05 23:00 +08:00" in page  # the newest, in the console's zone
    older = c.get("/audit?page=3").text
    assert older.count('<tr data-action=') == 20 and "alert id A0000" in older
    only = c.get("/audit?who=ana&action=alert_view").text
    rows = re.findall(r'<tr data-action="(\w+)"><td>[^<]*</td><td>(\w+)</td>', only)
    expected = [e for e in trail if e["principal"] == "ana" and e["action"] == "alert_view"]
    assert f"{len(expected)} entries" in only and set(rows) == {("alert_view", "ana")}
    assert "1 entry" in c.get("/audit?subject=A0042").text
    window = c.get("/audit?since=2026-03-01T10:00&until=2026-03-01T12:00").text  # +08:00
    assert "2 entries" in window  # 02:00 and 03:00 UTC = 10:00 and 11:00 +08:00
    assert "16 entries" in c.get("/audit?until=2026-03-01").text  # the whole day, +08:00
    assert "10 entries" in c.get("/audit?until=2026-03-01T18:00").text
    views = [e for e in sink.of("audit") if e["action"] == "audit_view"]
    assert views[-1]["subject"]["filters"] == {"until": "2026-03-01T18:00"}
    assert len(views) == 7 and views[1]["subject"]["page"] == 3


def test_the_audit_trail_exports_csv_and_the_export_is_audited(tmp_path):
    trail = _trail(30)
    app, _state, sink = make_env(tmp_path, trail)
    au = login(app, "au")
    r = au.get("/audit.csv?who=ana")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith('attachment; filename="reglink-audit-')
    rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    expected = [e for e in reversed(trail) if e["principal"] == "ana"]
    assert [row["audit_id"] for row in rows] == [e["audit_id"] for e in expected]
    assert json.loads(rows[0]["subject"]) == expected[0]["subject"]
    assert rows[0]["at (+08:00)"].endswith("+08:00")
    hyper = next(row for row in rows if row["audit_id"] == trail[5]["audit_id"])
    assert hyper["justification"] == "'=HYPERLINK(\"x\")"  # text, not a formula
    (export,) = [e for e in sink.of("audit") if e["action"] == "audit_export"]
    assert export["principal"] == "au" and export["subject"]["filters"] == {"who": "ana"}
    assert export["subject"]["entries"] == len(expected)
    assert login(app, "ana").get("/audit.csv").status_code == 403
    assert len([e for e in sink.of("audit") if e["action"] == "audit_export"]) == 1


# ---------------------------------------------------------------- the session secret
def test_the_console_refuses_the_default_secret_unless_opted_in():
    with pytest.raises(ConfigError) as exc:
        check_secret(load_settings(hmac_key="k"))
    msg = str(exc.value)
    assert "\n" not in msg and "REGLINK_CONSOLE_SECRET" in msg
    assert "REGLINK_CONSOLE_DEV_SECRET=1" in msg
    check_secret(load_settings(hmac_key="k", console_dev_secret=True))
    check_secret(load_settings(hmac_key="k", console_secret="0" * 64))


def test_a_withdrawn_alert_leaves_the_queue_with_a_note_and_keeps_its_history(env):
    app, state, sink = env
    ana = login(app, "ana")
    aid = STAY["alert_id"]
    ana.post(f"/alerts/{aid}/decide", data={"action": "more_info",
                                            "reason": "need_documents"})
    assert state.review(aid).status == "more_info"
    assert f"row-{aid}" in ana.get("/").text
    state.add_alert({**STAY, "status": "withdrawn", "withdrawn_reason": "registered_by_deadline"})
    assert f"row-{aid}" not in ana.get("/").text  # left the queue
    assert f"row-{aid}" not in ana.get("/?rule=unregistered_stay").text
    assert f"row-{aid}" in ana.get("/?status=withdrawn").text  # still findable
    page = ana.get(f"/alerts/{aid}").text
    assert 'id="withdrawn-note"' in page
    assert "A registration recorded by the deadline arrived late" in page
    assert "Its review history below is kept." in page and 'id="history"' in page
    assert [e["subject"]["alert_id"] for e in sink.of("audit")
            if e["action"] == "decision"] == [aid]  # the audit trail keeps the decision
    assert "no decision is needed" in page and 'id="do-confirm"' not in page
    ana.post(f"/alerts/{aid}/decide", data={"action": "confirm",
                                            "reason": "identity_verified"})
    assert state.review(aid).status == "more_info"  # a withdrawn alert takes no decision
    assert 'id="withdrawn-note"' not in ana.get(f"/alerts/{WATCH['alert_id']}").text


# ---------------------------------------------------------------- stale registration
def stale_env(tmp_path: Path, deregistered: bool = False):
    """The app with a ``stale_registration`` alert as the rule emits it (registration A in
    4403, B in 3301 from 2026-03-05, deadline 2026-03-19 00:00 +08:00) and its evidence in
    the console's cache; ``deregistered``: A deregistered after the deadline (resolved)."""
    from corekit import dereg, reg, rid, run_core

    wang = {"name": "王强", "id_number": rid("440305", "1975-07-01", 5), "sex": "M",
            "birth_date": "1975-07-01"}
    records = [reg("A", "440305", "2026-01-10T10:00:00+08:00", "2026-01-10", "2027-01-09",
                   "PA"),
               reg("B", "330106", "2026-03-05T10:00:00+08:00", "2026-03-05", "2027-03-04")]
    if deregistered:
        records.append(dereg("D", "440305", "2026-03-21T09:00:00+08:00", permit="PA",
                             left_on="2026-03-02"))
    records.append(reg("W9", "440305", "2026-04-10T12:00:00+08:00", "2026-04-10",
                       "2027-04-09", person=wang))  # moves the watermark past the deadline
    _pipe, alerts, _links = run_core(records)
    app, state, sink = make_env(tmp_path)
    for r in records:
        state.add_record(f"residence:{r['record_id']}", r)
    for a in alerts:
        state.add_alert(a)
    (alert,) = {a["alert_id"]: a for a in alerts}.values()
    assert alert["rule"] == "stale_registration"
    return app, state, sink, state.alert(alert["alert_id"])


def day(iso_date: str) -> float:
    """00:00 +08:00 of a date, in epoch seconds."""
    return datetime.fromisoformat(f"{iso_date}T00:00:00+08:00").timestamp()


def test_the_registrations_of_a_stale_alert_come_from_its_evidence_records(tmp_path):
    _app, state, _sink, alert = stale_env(tmp_path, deregistered=True)
    assert alert["status"] == "resolved"
    regs, departures = console_app.registration_data(alert, state)
    assert [(r["key"], r["role"], r["prefecture"], r["label"]) for r in regs] == [
        ("residence:A", "old", "4403", "old 4403 · residence:A"),
        ("residence:B", "new", "3301", "new 3301 · residence:B")]
    a, b = regs
    assert (a["valid_from"], a["valid_until"]) == (day("2026-01-10"), day("2027-01-10"))
    assert a["registered_at"] == datetime.fromisoformat("2026-01-10T10:00:00+08:00").timestamp()
    assert (b["valid_from"], b["valid_until"]) == (day("2026-03-05"), day("2027-03-05"))
    assert departures == [{
        "key": "residence:D", "label": "deregistration · residence:D",
        "registered_at": datetime.fromisoformat("2026-03-21T09:00:00+08:00").timestamp(),
        "left_at": day("2026-03-02")}]
    # a record the cache no longer holds is left out, the others still drawn
    state.records.pop("residence:A")
    regs, _ = console_app.registration_data(alert, state)
    assert [r["key"] for r in regs] == ["residence:B"]


def test_the_stale_timeline_draws_both_registrations_the_departure_and_the_deadline(tmp_path):
    _app, state, _sink, alert = stale_env(tmp_path, deregistered=True)
    regs, departures = console_app.registration_data(alert, state)
    svg = charts.timeline([], regs, day("2026-03-19"), tz=fmt.zone("+08:00"),
                          departures=departures)
    assert svg.count('class="registration"') == 2 and svg.count('class="deregistration"') == 1
    assert 'class="presence"' not in svg and 'aria-label="registration timeline"' in svg
    labels = [t for _x, _a, t in _texts(svg)]
    assert {"old 4403 · residence:A", "new 3301 · residence:B",
            "deregistration · residence:D"} <= set(labels)
    assert ">deadline 2026-03-19 00:00 +08:00</text>" in svg
    legend = labels[-1]
    assert "green: registration" in legend and "purple: left" in legend
    assert "orange" not in legend
    # the deadline line sits after B's start, the departure mark before it
    xs = {m[1]: float(m[2]) for m in re.finditer(
        r'class="(registration|deregistration|deadline)" x1?="([\d.]+)"', svg)}
    assert xs["deregistration"] < xs["deadline"]
    b_start = float(re.findall(r'class="registration" x="([\d.]+)"', svg)[1])
    assert b_start < xs["deadline"]


def test_a_stale_alert_page_has_its_own_header_timeline_and_waterfalls(tmp_path):
    app, _state, sink, alert = stale_env(tmp_path)
    aid = alert["alert_id"]
    c = login(app, "ana")
    page = html.unescape(c.get(f"/alerts/{aid}").text)
    assert '<span id="old-prefecture">4403 深圳市, 广东省</span>' in page
    assert '<span id="new-prefecture">3301 杭州市, 浙江省</span>' in page
    assert '<span id="deadline">2026-03-19 00:00 +08:00</span>' in page
    assert "watch entry" not in page and "priority" not in page
    status = re.search(r'<p class="notice" id="stale-status">(.*?)</p>', page, re.S)[1]
    assert "Not deregistered by the deadline" in status and "4403 深圳市" in status
    timeline = page[page.index('id="timeline"'):page.index('id="decisions"')]
    assert "<h2>Registrations and deadline (4403 深圳市, 广东省 → 3301 杭州市" in timeline
    assert timeline.count('class="registration"') == 2
    assert "deadline 2026-03-19 00:00 +08:00</text>" in timeline
    # one waterfall per evidence record, titled by its role, in the order of the evidence
    weights = page[page.index('id="weights"'):page.index('id="timeline"')]
    titles = re.findall(r'<h3 class="muted"[^>]*>([^<]*)</h3>', weights)
    assert titles == ["old 4403 · residence:A", "new 3301 · residence:B"]
    assert "No feature weights" in weights  # A founded the identity
    assert weights.count('class="chart waterfall"') == 1
    # the reasons offered are those of this rule
    options = re.findall(r'<option value="(\w+)">', page)
    assert "registration_stale" in options and "deregistered_elsewhere" in options
    assert not {"stay_confirmed", "registered_elsewhere", "entry_outdated"} & set(options)
    assert sink.of("audit")[-1]["subject"] == {"alert_id": aid,
                                               "person_id": alert["person_id"]}


def test_a_resolved_stale_alert_says_when_it_was_deregistered(tmp_path):
    app, _state, _sink, alert = stale_env(tmp_path, deregistered=True)
    page = html.unescape(login(app, "ana").get(f"/alerts/{alert['alert_id']}").text)
    status = re.search(r'<p class="notice" id="stale-status">(.*?)</p>', page, re.S)[1]
    assert status == ("<strong>Resolved.</strong> Deregistered after the deadline on "
                      "2026-03-21 09:00 +08:00, 2 d 9 h late (residence:D; the person left on "
                      "2026-03-02 00:00 +08:00).")
    assert 'class="deregistration"' in page
    assert "<h2>Registrations, deregistration and deadline (4403" in page
    # withdrawn: the withdrawn note, not the status sentence
    app2, state2, _s, alert2 = stale_env(tmp_path / "w")
    state2.add_alert({**alert2, "status": "withdrawn",
                      "withdrawn_reason": "deregistered_by_deadline"})
    page = login(app2, "ana").get(f"/alerts/{alert2['alert_id']}").text
    assert 'id="stale-status"' not in page
    assert "closed in time" in page and 'id="withdrawn-note"' in page


def test_stale_alerts_sit_in_the_queue_with_both_prefectures_and_the_deadline(tmp_path):
    app, _state, _sink, alert = stale_env(tmp_path)
    c = login(app, "ana")
    queue = c.get("/").text
    row = re.search(rf'<tr id="row-{alert["alert_id"]}".*?</tr>', queue, re.S).group(0)
    assert 'data-rule="stale_registration"' in row
    assert "<td>4403 深圳市, 广东省 → 3301 杭州市, 浙江省</td>" in row
    assert '<td class="raised">2026-03-19 00:00 +08:00</td>' in row
    assert '<option value="stale_registration" >stale registration</option>' in queue
    only = c.get("/?rule=stale_registration").text
    assert f'row-{alert["alert_id"]}' in only and "row-Astay00000001" not in only
    assert f'row-{alert["alert_id"]}' in c.get("/?prefecture=4403").text  # A's office


def test_a_stale_alert_is_decided_by_one_reviewer_audited_and_counted(tmp_path):
    app, state, sink, alert = stale_env(tmp_path)
    aid = alert["alert_id"]
    metrics = TestClient(app).get("/metrics").text
    assert ('reglink_console_review_backlog{priority="",rule="stale_registration"} 1.0'
            in metrics)
    assert ('reglink_console_time_to_decision_seconds_count{rule="stale_registration"} 0.0'
            in metrics)
    ana = login(app, "ana")
    page = ana.post(f"/alerts/{aid}/decide",
                    data={"action": "confirm", "reason": "stay_confirmed"}).text
    assert "not a reason code for confirm on stale_registration" in page
    assert sink.of("decisions") == []
    page = ana.post(f"/alerts/{aid}/decide",
                    data={"action": "confirm", "reason": "registration_stale",
                          "note": "office notified"}).text
    assert "Confirmed." in page and state.review(aid).status == "confirmed"
    (d,) = sink.of("decisions")
    assert (d["rule"], d["final"], d["prefecture"]) == ("stale_registration", True, "4403")
    audited = [e for e in sink.of("audit") if e["action"] == "decision"]
    assert audited[-1]["subject"]["decision_id"] == d["decision_id"]
    history = re.search(r'<table id="history">.*?</table>', html.unescape(page), re.S)[0]
    assert "Old registration still open: its office deregisters it" in history
    metrics = TestClient(app).get("/metrics").text
    assert ('reglink_console_review_backlog{priority="",rule="stale_registration"} 0.0'
            in metrics)
    assert ('reglink_console_time_to_decision_seconds_count{rule="stale_registration"} 1.0'
            in metrics)
    assert ('reglink_console_decisions_total{action="confirm",reason="registration_stale",'
            'rule="stale_registration"} 1.0' in metrics)
