"""The review console in a real browser (Debian's headless Chromium via Selenium) against a
console process on the real stack: Kafka, Redis, a real `reglink worker`, real connectors.

Covers: an alert appearing live (SSE, no reload); opening it and seeing its explanation (a
sentence above the waterfall, the probability inside the chart, the deadline written alike in
the header and the chart); two-reviewer confirmation; a "different person" dismissal that
waits for a second reviewer (a supervisor for a high-priority entry) and then turns into a
cannot-link that changes the next replay's result; a reviewer who acted seeing their decision
instead of the forms; a read-only auditor not being able to decide; the audit table filtered.
Screenshots of the main pages go to docs/screenshots/ (REGLINK_SCREENSHOTS=0 skips them).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from consolekit import decide, login, shot
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait
from streamkit import read_topic, settings_env, wait_for_count


# ---------------------------------------------------------------- tests
def test_alert_appears_live_and_shows_its_explanation(stack):
    url = stack.console.url
    b = stack.browser()
    b.get(f"{url}/")
    assert "/login" in b.current_url
    shot(b, "login")
    login(b, url, "ana")
    WebDriverWait(b, 10).until(EC.text_to_be_present_in_element((By.ID, "live"), "live"))
    assert b.find_elements(By.CSS_SELECTOR, "#rows tr") == []
    b.execute_script("window.__noReload = 42;")

    stack.publish()  # the worker links, the watermark passes deadlines, alerts stream in
    WebDriverWait(b, 180).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#rows tr[data-rule=watchlist_match]"))
        >= 2 and d.find_elements(By.CSS_SELECTOR, "#rows tr[data-rule=unregistered_stay]"))
    assert b.execute_script("return window.__noReload;") == 42, "the page reloaded"
    time.sleep(1.5)
    shot(b, "queue")

    # Filters are server-side and keep the page live.
    Select(b.find_element(By.ID, "f-rule")).select_by_value("unregistered_stay")
    WebDriverWait(b, 10).until(lambda d: "rule=unregistered_stay" in d.current_url)
    rules = {r.get_attribute("data-rule") for r in b.find_elements(By.CSS_SELECTOR, "#rows tr")}
    assert rules == {"unregistered_stay"}

    # Open a watchlist alert: evidence beside the identity, per-feature weights.
    watch = next(a for a in stack.alerts() if a["rule"] == "watchlist_match")
    b.get(f"{url}/alerts/{watch['alert_id']}")
    bars = b.find_elements(By.CSS_SELECTOR, "#weights svg rect.bar")
    features = {r.get_attribute("data-feature") for r in bars}
    assert {f["feature"] for f in watch["explanation"]["features"]} <= features
    # one sentence above the chart; the probability drawn whole inside it, as in the header
    summary = b.find_element(By.CSS_SELECTOR, "#weights p.summary").text
    assert summary.endswith("the same person.") or summary.endswith("closely.")
    prob = b.find_element(By.CSS_SELECTOR, "#weights svg text.prob")
    inside = b.execute_script(
        "const t = arguments[0].getBoundingClientRect(),"
        " s = arguments[0].ownerSVGElement.getBoundingClientRect();"
        "return t.width > 0 && t.left >= s.left && t.right <= s.right"
        " && t.top >= s.top && t.bottom <= s.bottom;", prob)
    assert inside, "the probability runs past the chart's edge"
    assert prob.text == b.find_element(By.ID, "probability").text
    assert b.find_element(By.ID, "raised").text  # when it was raised, never blank
    table = b.find_element(By.ID, "evidence").text
    assert watch["watch_id"] in table and "identity" in table
    shot(b, "alert-watchlist")

    # A stay whose evidence includes a record linked by comparison (the first record of an
    # identity founds it and has no weights to show).
    stays = [a for a in stack.alerts() if a["rule"] == "unregistered_stay"]
    stay = next((a for a in stays if any((e or {}).get("features")
                                         for e in a["explanation"].values())), stays[0])
    b.get(f"{url}/alerts/{stay['alert_id']}")
    assert b.find_elements(By.CSS_SELECTOR, "#timeline svg rect.presence")
    assert b.find_elements(By.CSS_SELECTOR, "#timeline svg line.deadline")
    # the header and the chart write the deadline alike, in the console's zone
    header = b.find_element(By.ID, "deadline").text
    assert header.endswith("+08:00")
    label = b.find_element(By.CSS_SELECTOR, "#timeline svg text.deadline-label").text
    assert label == f"deadline {header}"
    if any((e or {}).get("features") for e in stay["explanation"].values()):
        assert b.find_elements(By.CSS_SELECTOR, "#weights svg rect.bar")
    else:
        assert "No feature weights" in b.find_element(By.ID, "weights").text
    shot(b, "alert-stay")

    # A person look-up asks for a justification and is audited before anything is shown.
    b.get(f"{url}/persons/{stay['person_id']}")
    b.find_element(By.ID, "justification").send_keys("case 2026-114: stay lead review")
    b.find_element(By.ID, "lookup").click()
    WebDriverWait(b, 30).until(EC.presence_of_element_located((By.ID, "timeline-table")))
    assert "unregistered_stay" in b.find_element(By.ID, "timeline-table").text
    shot(b, "person")
    audit = read_topic(stack.s, "audit")
    lookups = [e for e in audit if e["action"] == "person_lookup"]
    assert lookups and lookups[-1]["principal"] == "ana"
    assert lookups[-1]["justification"] == "case 2026-114: stay lead review"
    assert lookups[-1]["subject"] == {"person_id": stay["person_id"]}
    assert any(e["action"] == "alert_view" for e in audit)


def test_two_reviewers_and_a_dismissal_that_becomes_a_cannot_link(stack):
    url, s = stack.console.url, stack.s
    # every watch entry high priority: its dismissal then needs a supervisor
    entries = stack.inputs / "watchlist.jsonl"
    entries.write_text("".join(json.dumps({**json.loads(x), "priority": "high"},
                                          ensure_ascii=False) + "\n"
                               for x in entries.read_text(encoding="utf-8").splitlines()),
                       encoding="utf-8")
    stack.publish()
    watch = sorted((a for a in stack.alerts() if a["rule"] == "watchlist_match"),
                   key=lambda a: a["alert_id"])
    assert len(watch) >= 2 and {a["priority"] for a in watch} == {"high"}
    keep, drop = watch[0], watch[1]

    ana, bo, sup = stack.browser(), stack.browser(), stack.browser()
    login(ana, url, "ana")
    login(bo, url, "bo")
    login(sup, url, "sup")
    WebDriverWait(ana, 30).until(
        lambda d: d.find_elements(By.ID, f"row-{keep['alert_id']}") or d.refresh())

    # Two-reviewer confirmation; the first reviewer then sees their decision, not the forms,
    # and a hand-made second confirmation of theirs is refused.
    assert "1/2" in decide(ana, url, keep["alert_id"], "confirm", "identity_verified")
    ana.get(f"{url}/alerts/{keep['alert_id']}")
    assert "You confirmed this alert" in ana.find_element(By.ID, "your-decision").text
    assert ana.find_elements(By.CSS_SELECTOR, "form.decide") == []
    shot(ana, "alert-awaiting-second")
    refused = ana.execute_script(
        "const r = await fetch(arguments[0], {method: 'POST', body: new URLSearchParams("
        "{action: 'confirm', reason: 'identity_verified'})}); return await r.text();",
        f"{url}/alerts/{keep['alert_id']}/decide")
    assert "you already confirmed this alert" in refused
    ana.get(f"{url}/alerts/{keep['alert_id']}")
    assert "1/2" in ana.find_element(By.ID, "review-status").text
    # Blind second review (high priority): bo sees neither ana's decision nor its trace
    # until he has decided; then he sees both.
    bo.get(f"{url}/alerts/{keep['alert_id']}")
    assert bo.find_element(By.ID, "review-status").text == "blind review"
    assert "another reviewer has decided" in bo.find_element(By.ID, "blind-review").text
    card = bo.find_element(By.ID, "decisions").text
    assert "ana" not in card and "2 of 2" not in card and bo.find_elements(By.ID, "history") == []
    shot(bo, "alert-blind-second-review")
    assert decide(bo, url, keep["alert_id"], "confirm", "documents_checked") == "confirmed"
    assert "ana (operator)" in bo.find_element(By.ID, "history").text

    # The dismissal form starts on no reason: the permanent one must be chosen on purpose.
    ana.get(f"{url}/alerts/{drop['alert_id']}")
    reasons = Select(ana.find_element(By.ID, "reason-dismiss"))
    assert reasons.first_selected_option.get_attribute("value") == ""
    assert reasons.options[1].get_attribute("value") != "different_person"
    # A "different person" dismissal by one operator suppresses nothing: it waits for a
    # second, different reviewer (a supervisor for a high-priority entry).
    state = decide(ana, url, drop["alert_id"], "dismiss", "different_person")
    assert state == "awaiting second dismissal (1/2)"
    assert "Dismissal proposed (1 of 2)" in ana.find_element(By.ID, "flash").text
    assert "You dismissed this alert" in ana.find_element(By.ID, "your-decision").text
    assert ana.find_elements(By.CSS_SELECTOR, "form.decide") == []
    shot(ana, "alert-dismissal-awaiting-second")
    decide(bo, url, drop["alert_id"], "dismiss", "different_person")  # another operator
    assert "supervisor must dismiss it" in bo.find_element(By.ID, "flash").text
    assert bo.find_element(By.ID, "review-status").text == "blind review"  # not decided yet
    sup.get(f"{url}/alerts/{drop['alert_id']}")
    assert sup.find_elements(By.ID, "pending-dismissal") == []  # blind
    assert "ana" not in sup.find_element(By.ID, "decisions").text
    assert "final" not in sup.find_element(By.ID, "do-dismiss").text
    assert decide(sup, url, drop["alert_id"], "dismiss", "different_person") == "dismissed"
    assert "cannot-link" in sup.find_element(By.ID, "history").text

    decisions = wait_for_count(s, "decisions", 4, timeout=30)
    assert [d["action"] for d in decisions] == ["confirm", "confirm", "dismiss", "dismiss"]
    assert {d["reviewer"] for d in decisions[:2]} == {"ana", "bo"}
    assert [(d["reviewer"], d["final"], d["cannot_link"]) for d in decisions[2:]] == [
        ("ana", False, False), ("sup", True, True)]
    audit = [e for e in read_topic(s, "audit") if e["action"] == "decision"]
    assert [e["principal"] for e in audit] == ["ana", "bo", "ana", "sup"]

    # One dismissal alone changes nothing in the next replay; both make a cannot-link.
    first_only = stack.tmp / "first-only.jsonl"
    first_only.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n"
                                  for d in decisions[:3]))
    # The next replay, with the decisions topic dumped to a file, no longer pairs them.
    dump = stack.tmp / "decisions.jsonl"
    dump.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in decisions))
    env = settings_env(s)
    for out, extra in (("before", []), ("one", ["--decisions", str(first_only)]),
                       ("after", ["--decisions", str(dump)])):
        subprocess.run([sys.executable, "-m", "reglink.cli", "replay",
                        str(stack.inputs / "events.jsonl"), "--out", str(stack.tmp / out), *extra],
                       env=env, check=True, capture_output=True)
    before = {json.loads(x)["alert_id"] for x in (stack.tmp / "before/alerts.jsonl").open()}
    after = {json.loads(x)["alert_id"] for x in (stack.tmp / "after/alerts.jsonl").open()}
    one = {json.loads(x)["alert_id"] for x in (stack.tmp / "one/alerts.jsonl").open()}
    assert one == before
    assert drop["alert_id"] in before and drop["alert_id"] not in after
    assert keep["alert_id"] in after and before - after == {drop["alert_id"]}

    # The console rebuilds its state from the topics: restart it and the reviews are there.
    stack.console.stop()
    stack.console.start()
    bo.get(f"{url}/alerts/{keep['alert_id']}")
    assert bo.find_element(By.ID, "review-status").text == "confirmed"
    bo.get(f"{url}/?review=dismissed")
    assert bo.find_elements(By.ID, f"row-{drop['alert_id']}")


def test_read_only_auditor_cannot_decide(stack):
    url, s = stack.console.url, stack.s
    stack.publish()
    alert = stack.alerts()[0]
    b = stack.browser()
    login(b, url, "audrey")
    b.get(f"{url}/alerts/{alert['alert_id']}")
    assert "Read-only" in b.find_element(By.ID, "read-only").text
    assert b.find_elements(By.CSS_SELECTOR, "form.decide") == []
    shot(b, "alert-read-only")
    # Even a hand-made request is refused.
    status = b.execute_script(
        "const r = await fetch(arguments[0], {method: 'POST', body: new URLSearchParams("
        "{action: 'confirm', reason: 'identity_verified'})}); return r.status;",
        f"{url}/alerts/{alert['alert_id']}/decide")
    assert status == 403
    assert read_topic(s, "decisions", idle_ms=1000) == []
    b.get(f"{url}/audit")
    assert "alert view" in b.find_element(By.ID, "audit").text
    # the trail as a table, filtered by who and action: only those rows remain
    Select(b.find_element(By.ID, "a-action")).select_by_value("alert_view")
    Select(b.find_element(By.ID, "a-who")).select_by_value("audrey")
    b.find_element(By.ID, "a-apply").click()
    WebDriverWait(b, 10).until(lambda d: "action=alert_view" in d.current_url)
    rows = b.find_elements(By.CSS_SELECTOR, "#audit tbody tr")
    assert rows and {r.get_attribute("data-action") for r in rows} == {"alert_view"}
    assert all("audrey" in r.text and alert["alert_id"] in r.text for r in rows)
    assert f"{len(rows)} entr" in b.find_element(By.ID, "audit-count").text
    shot(b, "audit")
    href = b.find_element(By.ID, "a-export").get_attribute("href")
    assert href.endswith("/audit.csv?who=audrey&action=alert_view")


def test_cli_person_is_audited_and_alerts_filter(stack):
    """`reglink person` needs a justification and audits before showing anything;
    `reglink alerts --json` filters and de-duplicates; errors are one line."""
    s = stack.s
    stack.publish()
    stay = next(a for a in stack.alerts() if a["rule"] == "unregistered_stay")
    env = settings_env(s)
    cli = [sys.executable, "-m", "reglink.cli"]

    refused = subprocess.run([*cli, "person", stay["person_id"]], env=env, capture_output=True,
                             text=True)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "--justification" in refused.stderr
    assert read_topic(s, "audit", idle_ms=1000) == []

    got = subprocess.run([*cli, "person", stay["person_id"], "--json", "--justification",
                          "case 2026-114: stay lead review"], env=env, capture_output=True,
                         text=True, check=True)
    tl = json.loads(got.stdout)
    assert tl["person_id"] == stay["person_id"] and tl["identity"]["records"] >= 1
    assert any(e["kind"] == "alert" and e["ref"] == stay["alert_id"] for e in tl["events"])
    assert "id_number" not in got.stdout
    (entry,) = read_topic(s, "audit")
    assert entry["action"] == "person_lookup" and entry["via"] == "cli"
    assert entry["justification"] == "case 2026-114: stay lead review"
    assert entry["subject"]["person_ids"] == [stay["person_id"]]

    tail = subprocess.run([*cli, "alerts", "--json", "--from-beginning", "--timeout", "3",
                           "--rule", "unregistered_stay"], env=env, capture_output=True,
                          text=True, check=True)
    rows = [json.loads(x) for x in tail.stdout.splitlines()]
    assert rows and {r["rule"] for r in rows} == {"unregistered_stay"}
    assert len({(r["alert_id"], r["status"]) for r in rows}) == len(rows)

    down = subprocess.run([*cli, "alerts", "--timeout", "1"], capture_output=True, text=True,
                          env={**env, "REGLINK_KAFKA_BOOTSTRAP": "127.0.0.1:1",
                               "REGLINK_KAFKA_PORT": "1"})
    assert down.returncode == 2 and "reglink stack up" in down.stderr
    assert "Traceback" not in down.stderr
