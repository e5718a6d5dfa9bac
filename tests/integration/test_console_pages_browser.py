"""The statistics and source quality pages in a real browser (headless Chromium) against a
`reglink console` process on the real stack: a real worker links a simulated corpus (35 days,
so that stale registrations are raised and hotel check-ins run out of their check-out window)
and a few records a connector dead-letters; the worker writes `stats` rows as days become
final (every source idle lets the watermark through) and `quality` reports (every
``quality_every_s`` and at shutdown). The figures the pages show are checked against what
the topics hold: the latest day per prefecture, the charts' latest counts, the stale
registration alerts by status, the organisations worst first and one organisation's counts
and dead letters. Screenshots: docs/screenshots/stats.png, quality.png,
quality-organisation.png (REGLINK_SCREENSHOTS=0 skips them).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import date, timedelta

import pytest
from consolekit import login, shot
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from streamkit import final_statuses, read_topic, wait_for_count

from connectors.publish import run_publish
from reglink.console.reports import DEFAULT_DAYS
from reglink.core.rules.population import FIELDS
from reglink.core.topics import SOURCES

CORPUS = {"simulate": {"persons": 300, "days": 35, "seed": 3},
          "settings": {"quality_every_s": 2.0}}


def settle(s, worker, name: str, quiet_s: float = 10.0, timeout: float = 240) -> list[dict]:
    """The messages of topic ``name`` once it has some and no new one came for ``quiet_s``."""
    deadline = time.monotonic() + timeout
    seen: list[dict] = []
    since = time.monotonic()
    while time.monotonic() < deadline:
        got = read_topic(s, name, idle_ms=1000)
        if len(got) != len(seen):
            seen, since = got, time.monotonic()
        elif seen and time.monotonic() - since >= quiet_s:
            return seen
        assert worker.alive(), worker.tail()
        time.sleep(1.0)
    raise AssertionError(f"{name}: {len(seen)} messages, still changing\n{worker.tail()}")


def table(b, table_id: str, key: str, cell: str) -> dict[str, dict[str, str]]:
    """``{row's data-<key>: {cell's data-<cell>: text}}`` of a table on the page."""
    return b.execute_script(
        "const out = {};"
        "for (const tr of document.querySelectorAll(`#${arguments[0]} tbody tr`)) {"
        "  const row = out[tr.dataset[arguments[1]]] = {};"
        "  for (const td of tr.querySelectorAll('td')) {"
        "    const k = td.dataset[arguments[2]]; if (k) row[k] = td.textContent.trim(); } }"
        "return out;", table_id, key, cell)


def reload_until(b, url: str, ok) -> None:
    """Open ``url`` again until ``ok(b)`` (the console's feed follows the topics)."""
    def check(d) -> bool:
        d.get(url)
        return bool(ok(d))
    WebDriverWait(b, 60, poll_frequency=1.5).until(check)


def pct(rate: float | None) -> str:
    return "" if rate is None else f"{rate * 100:.1f} %"


@pytest.mark.parametrize("stack", [CORPUS], indirect=True, ids=["35-days"])
def test_statistics_and_quality_pages_show_the_figures_of_the_topics(stack):
    s, url, sim = stack.s, stack.console.url, stack.inputs
    # records of one hotel that its connector dead-letters: its page lists them by reason
    hotel = json.loads((sim / "hotel.jsonl").open(encoding="utf-8").readline())
    bad = stack.tmp / "bad-hotel.jsonl"
    bad.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [
        {**hotel, "record_id": "BAD-1", "time": "yesterday"},
        {**hotel, "record_id": "BAD-2", "person": {"sex": "M"}}]), encoding="utf-8")
    stack.publish()
    summary = run_publish(s, "hotel", [str(bad)])
    assert summary.deadlettered == summary.read == 2, summary.line()
    n_linked = sum(1 for source in SOURCES if source != "watchlist"
                   for _ in (sim / f"{source}.jsonl").open(encoding="utf-8"))
    wait_for_count(s, "linked", n_linked, timeout=240, worker=stack.worker)
    settle(s, stack.worker, "stats")
    stack.worker.stop()  # at shutdown it sends the quality reports that changed since
    assert stack.worker.proc is not None and stack.worker.proc.returncode == 0, \
        stack.worker.tail()

    # what the topics hold: the last row per (prefecture, date), the last report per key
    last: dict[tuple[str, str], dict] = {}
    for r in read_topic(s, "stats"):
        last[r["prefecture"], r["date"]] = r
    rows = {k: r for k, r in last.items() if any(r[f] for f in FIELDS)}
    reports = {f"{r['source']}:{r['organisation']}": r for r in read_topic(s, "quality")}
    alerts = read_topic(s, "alerts")
    status = final_statuses(alerts)
    stale = Counter((a["prefecture"], status[a["alert_id"]]) for a in
                    {a["alert_id"]: a for a in alerts
                     if a["rule"] == "stale_registration"}.values())
    assert rows and reports and stale, "the corpus gives rows, reports and stale alerts"
    latest = max(d for _p, d in rows)
    first = min(d for _p, d in rows)

    b = stack.browser()
    login(b, url, "audrey")  # an auditor: the pages hold counts only, every role sees them
    b.find_element(By.ID, "nav-stats").click()
    reload_until(b, f"{url}/stats", lambda d: d.find_elements(By.ID, "latest-date")
                 and d.find_element(By.ID, "latest-date").text == latest)
    shown = table(b, "latest", "prefecture", "field")
    on_latest = {p for p, d in rows if d == latest}
    assert on_latest <= set(shown)
    for pref, cells in shown.items():
        r = rows.get((pref, latest), dict.fromkeys(FIELDS, 0))
        assert cells == {f: str(r[f]) for f in FIELDS}, pref
    # the chart of the prefecture with the most persons present: one point per day of the
    # window the filters show, the line ending in the latest day's counts
    top = max(on_latest, key=lambda p: rows[p, latest]["present"])
    card = b.find_element(By.CSS_SELECTOR, f'#multiples .card[data-prefecture="{top}"]')
    ends = {t.get_attribute("data-series"): t.text
            for t in card.find_elements(By.CSS_SELECTOR, "svg text.last")}
    assert ends == {f: str(rows[top, latest][f])
                    for f in ("present", "registered", "present_unregistered", "stale_open")}
    # the window starts at the "from" the filters show (the latest 31 days by default)
    start = b.find_element(By.ID, "s-from").get_attribute("value")
    assert start == (date.fromisoformat(latest) - timedelta(days=DEFAULT_DAYS - 1)).isoformat()
    days = (date.fromisoformat(latest) - date.fromisoformat(min(
        d for _p, d in rows if d >= start))).days + 1
    line = card.find_element(By.CSS_SELECTOR, 'polyline[data-series="present"]')
    assert len(line.get_attribute("points").split()) == days
    shot(b, "stats")

    # every day since the first row: every prefecture, every stale registration alert
    b.get(f"{url}/stats?from={first}")
    assert set(table(b, "latest", "prefecture", "field")) == {p for p, _d in rows}
    got = table(b, "stale", "prefecture", "status")
    assert got == {p: {st: str(stale[p, st]) for st in ("raised", "resolved", "withdrawn")}
                   for p in {p for p, _st in stale}}
    # one prefecture, picked in the selector
    Select(b.find_element(By.ID, "s-prefecture")).select_by_value(top)
    b.find_element(By.ID, "s-apply").click()
    WebDriverWait(b, 10).until(lambda d: f"prefecture={top}" in d.current_url)
    assert set(table(b, "latest", "prefecture", "field")) == {top}

    # source quality: every organisation of the topic, worst first
    b.find_element(By.ID, "nav-quality").click()
    least = 5
    reload_until(b, f"{url}/quality?min={least}", lambda d: len(
        d.find_elements(By.CSS_SELECTOR, "#quality tbody tr")) == len(reports))
    listed = table(b, "quality", "key", "field")
    order = [tr.get_attribute("data-key")
             for tr in b.find_elements(By.CSS_SELECTOR, "#quality tbody tr")]
    assert set(order) == set(reports)
    for key, cells in listed.items():
        r = reports[key]
        assert (cells["received"], cells["problem"], cells["deadlettered"]) == (
            str(r["received"]), pct(r["rates"]["problem"]), str(r["deadlettered"])), key
    ranked = [k for k in order if reports[k]["received"] >= least]
    assert order[:len(ranked)] == ranked  # the ranked ones first, then the others
    for group in (order[:len(ranked)], order[len(ranked):]):
        shares = [reports[k]["rates"]["problem"] or 0.0 for k in group]
        assert shares == sorted(shares, reverse=True)
    shot(b, "quality")

    # the hotel with dead letters: its counts and its dead letters by reason
    key = f"hotel:{hotel['hotel_id']}"
    r = reports[key]
    assert r["deadlettered"] == 2
    b.find_element(By.CSS_SELECTOR, f'#quality tr[data-key="{key}"] a').click()
    WebDriverWait(b, 10).until(lambda d: d.find_elements(By.ID, "counts"))
    counts = {tr.get_attribute("data-field"): tr.find_element(By.CSS_SELECTOR, "td").text
              for tr in b.find_elements(By.CSS_SELECTOR, "#counts tr")}
    for field in ("received", "linked", "deadlettered", "checkins",
                  "checkins_without_checkout", "with_problem"):
        assert counts[field] == str(r[field]), field
    reasons = {tr.get_attribute("data-reason"): tr.find_elements(By.CSS_SELECTOR, "td")[1].text
               for tr in b.find_elements(By.CSS_SELECTOR, "#deadletters tbody tr")}
    assert reasons == {k: str(v) for k, v in r["deadletter_reasons"].items()}
    assert f"of its {r['received']} records" in b.find_element(By.ID, "standing").text
    shot(b, "quality-organisation")
