"""A ``stale_registration`` alert in the review console, in a real browser (headless
Chromium) against a console on the real stack: Kafka, Redis, a real `reglink worker` and the
residence connector.

Hand-made residence records: 陈丽 registers in 4403 (Shenzhen) and later in 3301 (Hangzhou)
and never deregisters in 4403 (raised); 刘洋 registers in 1101 (Beijing), then in 4403, and
is deregistered in 1101 only after the deadline (resolved); a third person's registration,
weeks later, moves the watermark past both deadlines. The reviewer sees the alert in the
queue with both prefectures and its deadline, opens it (its header, both registrations and
the deadline on one timeline), confirms it, finds alert and decision on the person's audited
timeline, and the decision is in the audit trail. The
alert page goes to docs/screenshots/alert-stale-registration.png (REGLINK_SCREENSHOTS=0
skips it).
"""

from __future__ import annotations

import json

import pytest
from consolekit import console_stack, decide, login, shot
from corekit import dereg, reg, rid
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from streamkit import final_statuses, read_topic

from reglink.console import fmt
from reglink.core.contract import validate_record

LIU = {"name": "刘洋", "id_number": rid("110105", "1990-06-12", 7), "sex": "M",
       "birth_date": "1990-06-12"}
WANG = {"name": "王强", "id_number": rid("440305", "1975-07-01", 5), "sex": "M",
        "birth_date": "1975-07-01"}
RECORDS = [
    # 陈丽: 4403, then 3301 from 03-05 (deadline 03-19 00:00 +08:00); never deregistered
    reg("SA-1", "440305", "2026-01-10T10:00:00+08:00", "2026-01-10", "2027-01-09", "PA-1"),
    reg("SB-1", "330106", "2026-03-05T10:00:00+08:00", "2026-03-05", "2027-03-04", "PB-1"),
    # 刘洋: 1101, then 4403 from 03-06 (deadline 03-20); deregistered in 1101 on 03-22
    reg("SA-2", "110105", "2026-01-20T09:30:00+08:00", "2026-01-20", "2027-01-19", "PA-2",
        person=LIU),
    reg("SB-2", "440305", "2026-03-06T11:00:00+08:00", "2026-03-06", "2027-03-05", "PB-2",
        person=LIU),
    dereg("SD-2", "110105", "2026-03-22T09:00:00+08:00", permit="PA-2", left_on="2026-03-04",
          person=LIU),
    # another person, at home, weeks later: the watermark passes both deadlines
    reg("SW-9", "440305", "2026-04-10T12:00:00+08:00", "2026-04-10", "2027-04-09",
        person=WANG),
]


@pytest.fixture
def stack(kafka_settings, redis_client, tmp_path):
    """The records above in ``residence.jsonl``, a worker and a console on the test's topics."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    assert all(validate_record(r, "residence") is None for r in RECORDS)
    (inputs / "residence.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS), encoding="utf-8")
    with console_stack(kafka_settings, tmp_path, inputs) as st:
        yield st


def wait_for_final(stack) -> dict[str, dict]:
    """The two stale alerts by the key of their old registration, once one is raised and
    the other resolved."""
    for _ in range(60):
        alerts = stack.alerts(2)
        last = {a["alert_id"]: a for a in alerts}
        statuses = final_statuses(alerts)
        if sorted(statuses.values()) == ["raised", "resolved"]:
            return {a["evidence"][0]: a for a in last.values()}
    raise AssertionError(f"alerts never settled: {statuses}\n{stack.worker.tail()}")


def test_a_stale_registration_is_reviewed_in_the_console(stack):
    url, s = stack.console.url, stack.s
    stack.publish()
    alerts = wait_for_final(stack)
    raised, resolved = alerts["residence:SA-1"], alerts["residence:SA-2"]
    assert {a["rule"] for a in alerts.values()} == {"stale_registration"}
    assert (raised["status"], raised["prefecture"], raised["new_prefecture"]) == (
        "raised", "4403", "3301")
    assert raised["evidence"] == ["residence:SA-1", "residence:SB-1"]
    assert resolved["status"] == "resolved" and resolved["evidence"][2] == "residence:SD-2"
    aid = raised["alert_id"]

    # The queue: both prefectures by name and the deadline, in the console's zone.
    ana = stack.browser()
    login(ana, url, "ana")
    WebDriverWait(ana, 60).until(
        lambda d: d.find_elements(By.ID, f"row-{aid}") or d.refresh())
    row = ana.find_element(By.ID, f"row-{aid}")
    assert row.get_attribute("data-rule") == "stale_registration"
    assert f"{fmt.place('4403')} → {fmt.place('3301')}" in row.text
    assert row.find_element(By.CSS_SELECTOR, "td.raised").text == "2026-03-19 00:00 +08:00"

    # The alert: its header, and both registrations and the deadline on one timeline.
    ana.get(f"{url}/alerts/{aid}")
    assert ana.find_element(By.ID, "alert-status").text == "raised"
    assert ana.find_element(By.ID, "old-prefecture").text == fmt.place("4403")
    assert ana.find_element(By.ID, "new-prefecture").text == fmt.place("3301")
    deadline = ana.find_element(By.ID, "deadline").text
    assert deadline == "2026-03-19 00:00 +08:00"
    assert "Not deregistered by the deadline" in ana.find_element(By.ID, "stale-status").text
    assert "watch entry" not in ana.find_element(By.TAG_NAME, "main").text
    chart = ana.find_element(By.CSS_SELECTOR, "#timeline svg")
    labels = [t.text for t in chart.find_elements(By.CSS_SELECTOR, "text.lab")]
    assert labels == ["old 4403 · residence:SA-1", "new 3301 · residence:SB-1"]
    bars = chart.find_elements(By.CSS_SELECTOR, "rect.registration")
    line = chart.find_element(By.CSS_SELECTOR, "line.deadline")
    assert len(bars) == 2
    a_bar, b_bar = (b.rect for b in bars)
    x_deadline = line.rect["x"]
    # A is open across the deadline; B starts 14 days before it
    assert a_bar["x"] < b_bar["x"] < x_deadline < a_bar["x"] + a_bar["width"]
    label = chart.find_element(By.CSS_SELECTOR, "text.deadline-label").text
    assert label == f"deadline {deadline}"
    titles = [h.text for h in ana.find_elements(By.CSS_SELECTOR, "#weights h3")]
    assert titles == ["old 4403 · residence:SA-1", "new 3301 · residence:SB-1"]
    assert ana.find_elements(By.CSS_SELECTOR, "#weights svg rect.bar")  # B linked by weights
    shot(ana, "alert-stale-registration")

    # One reviewer decides it, with a reason of this rule.
    assert decide(ana, url, aid, "confirm", "registration_stale") == "confirmed"
    assert ana.find_element(By.ID, "flash").text == "Confirmed."
    assert "Old registration still open" in ana.find_element(By.ID, "history").text

    # The resolved one says when the old registration was deregistered, and draws it.
    ana.get(f"{url}/alerts/{resolved['alert_id']}")
    assert ana.find_element(By.ID, "alert-status").text == "resolved"
    assert ana.find_element(By.ID, "stale-status").text.startswith(
        "Resolved. Deregistered after the deadline on 2026-03-22 09:00 +08:00, 2 d 9 h late")
    assert ana.find_elements(By.CSS_SELECTOR, "#timeline svg rect.deregistration")

    # The person's audited timeline names the alert with both prefectures, and the decision.
    ana.get(f"{url}/persons/{raised['person_id']}")
    ana.find_element(By.ID, "justification").send_keys("case 2026-207: stale registration")
    ana.find_element(By.ID, "lookup").click()
    WebDriverWait(ana, 30).until(lambda d: d.find_elements(By.ID, "timeline-table"))
    table = ana.find_element(By.ID, "timeline-table").text
    assert "stale_registration 4403 -> 3301 raised" in table
    assert "confirm (registration_stale) by ana" in table

    # The decision and the views are in the audit trail, as a supervisor sees it.
    sup = stack.browser()
    login(sup, url, "sup")
    sup.get(f"{url}/audit?subject={aid}")
    rows = sup.find_elements(By.CSS_SELECTOR, "#audit tbody tr")
    actions = [(r.get_attribute("data-action"), r.find_elements(By.TAG_NAME, "td")[1].text)
               for r in rows]
    assert ("decision", "ana") in actions and ("alert_view", "ana") in actions
    decision = next(r for r in rows if r.get_attribute("data-action") == "decision")
    assert "confirm: registration_stale" in decision.text
    audit = [e for e in read_topic(s, "audit") if e["action"] == "decision"]
    assert [(e["principal"], e["subject"]["alert_id"]) for e in audit] == [("ana", aid)]
    (d,) = read_topic(s, "decisions")
    assert (d["rule"], d["action"], d["reason"], d["final"]) == (
        "stale_registration", "confirm", "registration_stale", True)
