"""The console's statistics and source quality pages without services: what the state keeps
of the ``stats`` and ``quality`` topics (the latest message per key), the page views built
from it (filters, days with no row, the latest day, stale registrations by status, the
organisations worst first as ``reglink quality`` orders them, one organisation's counts and
rates, its receipt), the SVG charts, who may see the pages, and that viewing them is not
audited (counts only). The app runs on a list sink, as in tests/unit/test_console_app.py."""

from __future__ import annotations

import html
import json
import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_console_app import login, make_env

from reglink import quality as q
from reglink.console import charts, reports
from reglink.console.state import ConsoleState
from reglink.core.quality import new_state
from reglink.core.quality import report as quality_report
from reglink.core.rules.population import FIELDS


def row(pref: str, day: str, present: int = 0, registered: int = 0, unreg: int = 0,
        **more: int) -> dict:
    counts = {"present": present, "registered": registered, "present_unregistered": unreg,
              **more}
    return {"prefecture": pref, "date": day, **{f: counts.get(f, 0) for f in FIELDS}}


def stale(aid: str, pref: str, status: str, deadline: str) -> dict:
    return {"alert_id": aid, "rule": "stale_registration", "status": status,
            "person_id": f"P{aid}", "prefecture": pref, "new_prefecture": "1101",
            "deadline": deadline, "raised_at": deadline, "record_ids": [], "evidence": []}


def org(source: str, organisation: str, received: int, problems: int, **counts) -> dict:
    """A report as the worker publishes it (:func:`reglink.core.quality.report`)."""
    state = {**new_state(source, organisation), "received": received, "linked": received,
             "with_problem": problems, "without_id_number": problems, **counts}
    return quality_report(state)


DAYS = [(date(2026, 3, 1) + timedelta(days=n)).isoformat() for n in range(40)]


@pytest.fixture
def env(tmp_path: Path):
    """The app on a state holding 40 days of rows of two prefectures (4403 every day, 1101
    every other day), a row re-issued with other counts, one re-issued with zeros, stale
    registration alerts, and quality reports."""
    app, state, sink = make_env(tmp_path)
    for n, day in enumerate(DAYS):
        state.add_stats(row("4403", day, present=10 + n, registered=5 + n // 2, unreg=n % 3))
        if n % 2 == 0:
            state.add_stats(row("1101", day, present=2, registered=1, unreg=1))
    state.add_stats(row("4403", DAYS[-1], present=99, registered=77, unreg=7, stale_open=3))
    state.add_stats(row("1101", DAYS[-2], present=4, registered=3))
    state.add_stats(row("1101", DAYS[-2]))  # re-issued with zeros: counted nobody
    for n, (pref, status, day) in enumerate([
            ("4403", "raised", DAYS[-1]), ("4403", "raised", DAYS[-3]),
            ("4403", "resolved", DAYS[-2]), ("1101", "withdrawn", DAYS[-1]),
            ("1101", "raised", DAYS[0])]):
        state.add_alert(stale(f"S{n}", pref, status, f"{day}T00:00:00+08:00"))
    for r in (org("hotel", "H-1", 40, 4), org("hotel", "H-2", 30, 15),
              org("rental", "F-1", 50, 5, deadlettered=2,
                  deadletter_reasons={"bad_date": 2}),
              org("hotel", "H-3", 5, 5), org("rental", "a/b 1", 25, 0)):
        state.add_quality(r)
    return app, state, sink


def cells(page: str, table: str) -> dict[str, dict[str, str]]:
    """``{data-prefecture or data-key: {data-field or data-status: text}}`` of a table."""
    body = page.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    out: dict[str, dict[str, str]] = {}
    for key, tr in re.findall(r'<tr data-(?:prefecture|key)="([^"]+)"[^>]*>(.*?)</tr>', body,
                              re.S):
        out[html.unescape(key)] = {k: html.unescape(re.sub(r"<[^>]+>", "", v)).strip()
                                   for k, v in re.findall(
                                       r'data-(?:field|status)="([^"]+)">(.*?)</td>', tr, re.S)}
    return out


# ---------------------------------------------------------------- state
def test_the_state_keeps_the_latest_row_and_report_per_key():
    state = ConsoleState()
    state.add_stats(row("4403", "2026-03-01", present=1))
    state.add_stats(row("4403", "2026-03-01", present=2))
    state.add_stats(row("4403", "2026-03-02", present=3))
    state.add_stats({"date": "2026-03-01"})  # no prefecture: not a row
    assert sorted((r["date"], r["present"]) for r in state.stats_rows()) == [
        ("2026-03-01", 2), ("2026-03-02", 3)]
    state.add_quality(org("hotel", "H-1", 10, 1))
    state.add_quality(org("hotel", "H-1", 12, 3))
    state.add_quality({"received": 1})  # no source or organisation
    (only,) = state.quality_reports()
    assert (only["received"], only["with_problem"]) == (12, 3)


# ---------------------------------------------------------------- statistics
def test_the_statistics_view_fills_days_without_a_row_and_shows_the_latest_day(env):
    _app, state, _ = env
    view = reports.stats_view(state.stats_rows(), state.alerts_of("stale_registration"),
                              reports.StatsFilters())
    # no "from": the last DEFAULT_DAYS days up to the latest, said in the filters
    assert view.dates == DAYS[-reports.DEFAULT_DAYS:]
    assert view.filters.date_from == DAYS[-reports.DEFAULT_DAYS]
    assert list(view.series) == ["1101", "4403"] and view.prefectures == ["1101", "4403"]
    first = DAYS.index(view.dates[0])
    assert view.series["4403"]["present"][:-1] == [10 + n for n in range(first, 39)]
    assert view.series["4403"]["present"][-1] == 99  # the re-issued row wins
    # 1101 has rows every other day; the zero re-issue of the day before the last is none
    assert view.series["1101"]["present"] == [
        0 if n % 2 or n == 38 else 2 for n in range(first, 40)]
    assert view.latest_date == DAYS[-1]
    latest = {r["prefecture"]: r for r in view.latest}
    assert latest["4403"] == {"prefecture": "4403", **{
        f: row("4403", DAYS[-1], 99, 77, 7, stale_open=3)[f] for f in FIELDS}}
    assert {f: latest["1101"][f] for f in FIELDS} == dict.fromkeys(FIELDS, 0)


def test_the_statistics_filters(env):
    _app, state, _ = env
    rows, alerts = state.stats_rows(), state.alerts_of("stale_registration")
    f = reports.stats_filters("4403", DAYS[2], DAYS[5])
    view = reports.stats_view(rows, alerts, f)
    assert view.dates == DAYS[2:6] and list(view.series) == ["4403"]
    assert view.series["4403"]["registered"] == [5 + n // 2 for n in range(2, 6)]
    assert view.prefectures == ["1101", "4403"]  # the selector still offers every one
    # a prefecture without a row on the latest day: its latest day counted nobody there
    view = reports.stats_view(rows, alerts, reports.stats_filters("1101", "", ""))
    assert view.latest_date == DAYS[-1] and view.dates[-1] == DAYS[-1]
    assert [r["present"] for r in view.latest] == [0]
    assert view.series["1101"]["present"][-4:] == [2, 0, 0, 0]
    # a province's two digits keep its prefectures; "to" alone ends the default window
    assert list(reports.stats_view(rows, alerts, reports.stats_filters("11", "", "")).series
                ) == ["1101"]
    view = reports.stats_view(rows, alerts, reports.stats_filters("", "", DAYS[35]))
    assert view.dates == DAYS[35 - reports.DEFAULT_DAYS + 1:36]
    for bad in (("44x3", "", ""), ("", "2026-3-1", ""), ("", "2026-02-30", ""),
                ("", DAYS[5], DAYS[2])):
        with pytest.raises(reports.FilterError):
            reports.stats_filters(*bad)


def test_stale_registrations_are_counted_by_prefecture_and_status(env):
    _app, state, _ = env
    alerts = state.alerts_of("stale_registration") + state.alerts_of("unregistered_stay")
    got = reports.stale_counts(alerts)
    assert got == [{"prefecture": "1101", "raised": 1, "resolved": 0, "withdrawn": 1},
                   {"prefecture": "4403", "raised": 2, "resolved": 1, "withdrawn": 0}]
    # by the day of the deadline, both ends included, and by prefecture
    assert reports.stale_counts(alerts, "", DAYS[-2], DAYS[-1]) == [
        {"prefecture": "1101", "raised": 0, "resolved": 0, "withdrawn": 1},
        {"prefecture": "4403", "raised": 1, "resolved": 1, "withdrawn": 0}]
    assert [r["prefecture"] for r in reports.stale_counts(alerts, "4403")] == ["4403"]
    # a later message of an alert replaces its status (the state keeps the latest)
    state.add_alert(stale("S0", "4403", "resolved", f"{DAYS[-1]}T00:00:00+08:00"))
    assert reports.stale_counts(state.alerts_of("stale_registration"), "4403") == [
        {"prefecture": "4403", "raised": 1, "resolved": 2, "withdrawn": 0}]


def test_the_statistics_page_shows_charts_tables_and_names(env):
    app, state, _ = env
    c = login(app, "ana")
    page = c.get("/stats").text
    latest = cells(page, "latest")
    assert latest["4403"] == {"present": "99", "registered": "77", "present_unregistered": "7",
                              "arrivals": "0", "departures": "0", "stale_open": "3"}
    assert "4403 深圳市, 广东省" in page and "1101 北京市" in page
    assert f'id="latest-date">{DAYS[-1]}<' in page
    stale_cells = cells(page, "stale")
    assert stale_cells["4403"] == {"raised": "2", "resolved": "1", "withdrawn": "0"}
    # 1101's raised alert has its deadline on the first day, before the page's window
    assert stale_cells["1101"] == {"raised": "0", "resolved": "0", "withdrawn": "1"}
    assert re.search(r'id="stale-total">.*?data-status="raised">2<', page, re.S)
    # one small multiple per prefecture, each line ending in the latest count
    cards = re.findall(r'<div class="card" data-prefecture="(\d+)">(.*?)</div>', page, re.S)
    assert [p for p, _ in cards] == ["1101", "4403"]
    svg = dict(cards)["4403"]
    ends = dict(re.findall(r'class="last" data-series="(\w+)"[^>]*>(\d+)<', svg))
    assert ends == {"present": "99", "registered": "77", "present_unregistered": "7",
                    "stale_open": "3"}  # the stale registrations over time, too
    one = c.get(f"/stats?prefecture=4403&from={DAYS[0]}&to={DAYS[9]}").text
    assert 'class="multiples single"' in one and "1101 北京市</td>" not in one
    assert set(cells(one, "latest")) == {"4403"}
    assert f'value="{DAYS[0]}"' in one and f'id="latest-date">{DAYS[9]}<' in one
    bad = c.get("/stats?from=yesterday")
    assert bad.status_code == 400 and "write it as YYYY-MM-DD" in bad.text


def test_the_pages_without_rows_or_reports_say_why(tmp_path):
    app, state, _ = make_env(tmp_path)
    view = reports.stats_view(state.stats_rows(), [], reports.StatsFilters())
    assert view.dates == [] and view.latest == [] and view.latest_date is None
    c = login(app, "ana")
    page = c.get("/stats").text
    assert 'id="no-rows"' in page and 'id="no-stale"' in page and "<svg" not in page
    assert 'id="no-reports"' in c.get("/quality").text


# ---------------------------------------------------------------- charts
def test_the_series_chart_draws_every_day_and_keeps_its_labels_apart():
    days = DAYS[:10]
    values = {"present": [0] * 10, "registered": [0] * 10, "present_unregistered": [0] * 10}
    svg = charts.series(days, values, reports.CHARTED, "x")
    lines = re.findall(r'<polyline class="line" data-series="(\w+)" points="([^"]+)"', svg)
    assert [name for name, _ in lines] == list(values)
    assert all(len(points.split()) == 10 for _, points in lines)
    # three equal latest counts: written one under the other, all inside the chart
    ys = sorted(float(y) for y in re.findall(r'class="last"[^>]* y="([\d.]+)"', svg))
    height = float(re.search(r'height="(\d+)"', svg)[1])
    assert len(ys) == 3 and all(b - a >= 11 for a, b in zip(ys, ys[1:], strict=False))
    assert ys[-1] <= height
    assert svg.count('<rect class="day"') == 10 and f"<title>{days[3]}: present 0" in svg
    # one line at the top, two at the bottom: only the bottom ones move, none leaves the chart
    svg = charts.series(days, {"present": [1] * 10, "registered": [0] * 10,
                               "present_unregistered": [0] * 10}, reports.CHARTED, "x")
    label = r'class="last" data-series="(\w+)"[^>]* y="([\d.]+)"'
    ends = {n: float(y) for n, y in re.findall(label, svg)}
    assert 11 <= ends["present"] < ends["registered"] - 11 and ends["registered"] <= height
    assert abs(ends["registered"] - ends["present_unregistered"]) >= 11
    # the y axis ends at a round number at or above the largest count
    svg = charts.series(days, {"present": list(range(30, 40))}, reports.CHARTED, "x")
    assert ">50</text>" in svg and ">25</text>" in svg
    five = charts.series(days, {"present": [1, 5, 3, 0, 0, 0, 0, 0, 0, 4]}, reports.CHARTED, "x")
    assert ">5</text>" in five and ">2.5</text>" not in five  # counts are whole numbers
    assert "No rows" in charts.series([], {}, reports.CHARTED, "x")
    long = [f"d{n}" for n in range(charts.TITLED_DAYS + 1)]
    assert '<rect class="day"' not in charts.series(long, {"present": [1] * len(long)},
                                                    reports.CHARTED, "x")


def test_a_share_is_a_bar_of_its_width():
    assert 'width="45.0"' in charts.share(0.5) and charts.share(None) == ""
    assert 'width="90.0"' in charts.share(1.7)


# ---------------------------------------------------------------- source quality
def test_the_quality_page_lists_organisations_as_reglink_quality_does(env):
    app, state, _ = env
    c = login(app, "ana")
    page = c.get("/quality").text
    keys = [html.unescape(k) for k in re.findall(r'<tr data-key="([^"]+)"', page)]
    # 50 % of 30, 10 % of 40 and of 50 (more problems first), 0 % of 25; then 5 records
    assert keys == ["hotel:H-2", "rental:F-1", "hotel:H-1", "rental:a/b 1", "hotel:H-3"]
    assert keys == [f"{r['source']}:{r['organisation']}"
                    for r in q.select(state.quality_reports(), None, 20)]
    got = cells(page, "quality")
    assert got["hotel:H-2"]["problem"] == "50.0 %" and got["hotel:H-2"]["received"] == "30"
    assert got["rental:F-1"]["late_reports"] == "0" and got["hotel:H-1"]["late_reports"] == "—"
    assert got["hotel:H-1"]["checkins_without_checkout"] == "0/0"
    assert re.search(r'<tr data-key="hotel:H-3" class="few">', page)
    # a source filter, and the threshold under which an organisation is not ranked
    only = c.get("/quality?source=rental").text
    assert re.findall(r'<tr data-key="([^"]+)"', only) == ["rental:F-1", "rental:a/b 1"]
    low = c.get("/quality?min=5").text
    assert re.findall(r'<tr data-key="([^"]+)"', low)[0] == "hotel:H-3"
    assert c.get("/quality?min=-1").status_code == 400


def test_one_organisation_shows_its_counts_rates_and_dead_letters(env):
    app, _state, _ = env
    c = login(app, "ana")
    page = c.get("/quality").text
    link = re.search(r'href="(/quality/rental/[^"]*F-1)"', page)[1]
    got = c.get(link)
    assert got.status_code == 200
    text = got.text
    counts = dict(re.findall(r'<tr data-field="(\w+)"><th>[^<]*</th><td class="num">([^<]*)<',
                             text))
    assert counts["received"] == "50" and counts["deadlettered"] == "2"
    assert counts["checkins"] == "does not apply"
    assert re.search(r'data-reason="bad_date"><td>bad date</td><td class="num">2<', text)
    assert re.search(r'data-rate="problem"><th>[^<]*</th><td class="num">10.0 %</td>.*?5 / 50',
                     text, re.S)
    assert "number 2 of 5 organisations" in text
    # an id with a slash and a space is reached through its quoted link
    odd = re.search(r'href="(/quality/rental/a[^"]+)"', page)[1]
    assert "%2F" in odd and c.get(odd).status_code == 200
    assert c.get("/quality/rental/nobody").status_code == 404


def test_the_receipt_holds_the_organisations_own_report_only(env):
    app, state, _ = env
    c = login(app, "au")
    got = c.get("/receipts/rental/F-1")
    assert got.status_code == 200
    assert 'filename="rental-F-1.json"' in got.headers["content-disposition"]
    report = next(r for r in state.quality_reports() if r["organisation"] == "F-1")
    assert json.loads(got.text) == q.receipt(report)


# ---------------------------------------------------------------- who, and the audit
@pytest.mark.parametrize("name", ["ana", "bo", "au"])  # operator, supervisor, auditor
def test_every_role_sees_the_pages_and_viewing_them_is_not_audited(env, name):
    app, _state, sink = env
    c = login(app, name)
    before = len(sink.of("audit"))
    for path in ("/stats", "/quality", "/quality/hotel/H-1", "/receipts/hotel/H-1"):
        assert c.get(path).status_code == 200, path
    assert len(sink.of("audit")) == before  # counts only: nothing to audit
    nav = c.get("/stats").text
    assert 'href="/stats" id="nav-stats"' in nav and 'href="/quality" id="nav-quality"' in nav


def test_the_pages_need_a_login(env):
    app, _state, _ = env
    c = TestClient(app)
    for path in ("/stats", "/quality", "/quality/hotel/H-1", "/receipts/hotel/H-1"):
        got = c.get(path, follow_redirects=False)
        assert got.status_code == 303 and got.headers["location"].startswith("/login"), path
