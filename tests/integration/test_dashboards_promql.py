"""The dashboards work: Debian's `prometheus` (own port, own data dir, 1 s scrapes) scrapes a
real worker, a real connector (`reglink publish --follow`, connector metrics on) and a real
console; a simulated stream runs, reviewers decide; then EVERY PromQL expression in every
dashboard JSON under deploy/grafana/dashboards/ is executed against Prometheus' HTTP API and
must return data. The shipped alerting rules load in that Prometheus and pass promtool."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import httpx
from consolekit import PASSWORDS, ROLES, ConsoleProcess
from streamkit import WorkerProcess, free_port, read_topic, settings_env, wait_for_count

from connectors.publish import run_publish
from reglink.console.auth import add_user
from reglink.sim.simulate import run_simulate

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))
RULES = ROOT / "deploy/prometheus/alerts.yml"


def dashboard_exprs() -> list[tuple[str, str, str]]:
    out = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for t in panel.get("targets", []):
                out.append((path.name, panel["title"], t["expr"]))
    return out


def prom_query(base: str, expr: str) -> dict:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    return json.loads(urllib.request.urlopen(url, timeout=10).read())


def test_alert_rules_and_config_pass_promtool():
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: apt-get install -y prometheus"
    for args in (["check", "rules", str(RULES)],
                 ["check", "config", str(ROOT / "deploy/prometheus/prometheus.yml")],
                 # the rules' unit tests: given series, the alert fires (or stays quiet)
                 ["test", "rules", str(ROOT / "deploy/prometheus/alerts_test.yml")]):
        got = subprocess.run([promtool, *args], capture_output=True, text=True)
        assert got.returncode == 0, got.stdout + got.stderr


def test_every_dashboard_expression_returns_data(kafka_settings, redis_client, tmp_path):
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus missing: apt-get install -y prometheus"
    users = tmp_path / "users.json"
    for name in ("ana", "bo"):
        add_user(users, name, ROLES[name], PASSWORDS[name])
    s = kafka_settings.model_copy(update={
        "idle_timeout_s": 3.0, "worker_metrics_port": free_port(),
        "connector_metrics_port": free_port(), "console_port": free_port(),
        "console_users_file": users})
    sim = tmp_path / "sim"
    run_simulate(persons=400, days=14, start="2026-03-01", seed=3, out_dir=sim)

    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "reglink-worker",
             "static_configs": [{"targets": [f"127.0.0.1:{s.worker_metrics_port}"]}]},
            {"job_name": "reglink-connectors",
             "static_configs": [{"targets": [f"127.0.0.1:{s.connector_metrics_port}"]}]},
            {"job_name": "reglink-console",
             "static_configs": [{"targets": [f"127.0.0.1:{s.console_port}"]}]},
        ]}))
    prom_log = (tmp_path / "prometheus.log").open("wb")
    prom = subprocess.Popen([prometheus, f"--config.file={config}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=prom_log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{prom_port}"
    worker = WorkerProcess(s, tmp_path).start()
    console = ConsoleProcess(s, tmp_path).start()
    # The connector: hotel records through `reglink publish --follow`, metrics on; two bad
    # lines so that dead letters exist. The other sources are published in-process.
    feed = tmp_path / "hotel-feed.jsonl"
    feed.write_text((sim / "hotel.jsonl").read_text() + "{not json\n"
                    '{"source": "hotel", "record_id": "BAD-1"}\n')
    conn_env = {**settings_env(s), "REGLINK_CONNECTOR_METRICS": "true"}
    connector = subprocess.Popen(
        [sys.executable, "-m", "reglink.cli", "publish", "--source", "hotel", "--follow",
         str(feed)], env=conn_env, stdout=(tmp_path / "connector.log").open("wb"),
        stderr=subprocess.STDOUT)
    try:
        quiet = s.model_copy(update={"connector_metrics": False})
        for source in ("person", "watchlist", "rental", "residence", "job"):
            assert run_publish(quiet, source, [str(sim / f"{source}.jsonl")]).reconciles()
        alerts = wait_for_count(s, "alerts", 4, timeout=180, worker=worker)
        assert len(alerts) >= 4, worker.tail()

        # Reviewers decide through the console's HTTP interface.
        watch = sorted({a["alert_id"] for a in alerts if a["rule"] == "watchlist_match"})
        stay = sorted({a["alert_id"] for a in alerts if a["rule"] == "unregistered_stay"})
        clients = {}
        for name in ("ana", "bo"):
            c = httpx.Client(base_url=console.url, follow_redirects=True)
            r = c.post("/login", data={"username": name, "password": PASSWORDS[name]})
            assert r.status_code == 200, r.text
            clients[name] = c
        deadline = time.monotonic() + 30
        while clients["ana"].get(f"/alerts/{watch[0]}").status_code == 404:
            assert time.monotonic() < deadline, "console never saw the alerts"
            time.sleep(0.5)
        for who, aid, action, reason in (("ana", watch[0], "confirm", "identity_verified"),
                                         ("bo", watch[0], "confirm", "documents_checked"),
                                         ("ana", watch[1], "dismiss", "different_person"),
                                         ("bo", stay[0], "confirm", "stay_confirmed")):
            r = clients[who].post(f"/alerts/{aid}/decide",
                                  data={"action": action, "reason": reason})
            assert r.status_code == 200, r.text
        assert len(wait_for_count(s, "decisions", 4, timeout=30)) == 4
        for c in clients.values():
            c.close()

        # Every target up, then every expression answers (rate windows need a few scrapes).
        deadline = time.monotonic() + 60
        while True:
            up = prom_query(base, 'up{job=~"reglink.*"}')["data"]["result"]
            if len(up) == 3 and all(r["value"][1] == "1" for r in up):
                break
            assert time.monotonic() < deadline, f"targets not up: {up}"
            time.sleep(1)
        time.sleep(8)
        exprs = dashboard_exprs()
        assert len(exprs) >= 25 and {d for d, _p, _e in exprs} >= {
            "pipeline.json", "alerting.json", "population.json"}
        empty: list[str] = []
        deadline = time.monotonic() + 45
        while True:
            empty = []
            for dash, title, expr in exprs:
                got = prom_query(base, expr)
                assert got["status"] == "success", (dash, title, expr, got)
                if not got["data"]["result"]:
                    empty.append(f"{dash} / {title}: {expr}")
            if not empty or time.monotonic() > deadline:
                break
            time.sleep(3)
        assert not empty, "expressions without data:\n" + "\n".join(empty)

        # The alerting rules are loaded and evaluated by that Prometheus.
        rules = json.loads(urllib.request.urlopen(f"{base}/api/v1/rules", timeout=10).read())
        names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
        assert {"ReglinkWorkerDown", "ReglinkConsumerLagGrowing", "ReglinkLinkingSlow",
                "ReglinkDeadLetterRateHigh"} <= names
        assert read_topic(s, "deadletter")  # the connector's bad lines
    finally:
        connector.terminate()
        connector.wait(15)
        console.stop()
        worker.stop()
        prom.terminate()
        prom.wait(15)
