"""docker-compose.yml must describe the same stack as `reglink stack up` (deploy/ + Settings).

Needs no services and no Docker: it parses the files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from reglink.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _load_yaml(rel: str) -> Any:
    return yaml.safe_load((ROOT / rel).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load_yaml("docker-compose.yml")


@pytest.fixture(scope="module")
def server_properties() -> dict[str, str]:
    out = {}
    for line in (ROOT / "deploy/kafka/server.properties").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _host_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for spec in service.get("ports", []):
        host = str(spec).split(":")[-2] if ":" in str(spec) else str(spec)
        ports.add(int(host))
    return ports


def _listener_ports(listeners: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"(\w+)://[^:,]*:(\d+)", listeners)}


def test_kafka_image_matches_pom_version(compose) -> None:
    pom = (ROOT / "deploy/kafka/pom.xml").read_text()
    version = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom).group(1).strip()
    image = compose["services"]["kafka"]["image"]
    assert image == f"apache/kafka:{version}"


def test_kafka_ports_match_settings(compose, server_properties) -> None:
    fields = Settings.model_fields
    kafka_port = fields["kafka_port"].default
    controller_port = fields["kafka_controller_port"].default
    assert fields["kafka_bootstrap"].default == f"127.0.0.1:{kafka_port}"

    kafka = compose["services"]["kafka"]
    env = _env(kafka)
    assert _host_ports(kafka) == {kafka_port}
    listeners = _listener_ports(env["KAFKA_LISTENERS"])
    assert listeners["PLAINTEXT"] == kafka_port
    assert listeners["CONTROLLER"] == controller_port
    assert env["KAFKA_ADVERTISED_LISTENERS"].startswith(f"PLAINTEXT://127.0.0.1:{kafka_port}")
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].endswith(f":{controller_port}")
    assert env["KAFKA_PROCESS_ROLES"] == server_properties["process.roles"] == "broker,controller"

    # the local template takes its ports from the same Settings fields
    assert server_properties["listeners"] == (
        "PLAINTEXT://127.0.0.1:${KAFKA_PORT},CONTROLLER://127.0.0.1:${KAFKA_CONTROLLER_PORT}"
    )


def test_auto_create_disabled_in_both(compose, server_properties) -> None:
    assert server_properties["auto.create.topics.enable"] == "false"
    assert _env(compose["services"]["kafka"])["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_single_node_replication_and_rebalance_delay_in_both(compose, server_properties) -> None:
    env = _env(compose["services"]["kafka"])
    for prop in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                 "group.initial.rebalance.delay.ms"):
        env_name = "KAFKA_" + prop.upper().replace(".", "_")
        assert env[env_name] == server_properties[prop], prop


def test_redis_port_and_appendonly_in_both(compose) -> None:
    fields = Settings.model_fields
    redis_port = fields["redis_port"].default
    assert fields["redis_url"].default.startswith(f"redis://127.0.0.1:{redis_port}/")

    redis = compose["services"]["redis"]
    assert redis["image"].split(":")[0] == "redis"
    assert _host_ports(redis) == {redis_port}
    cmd = redis["command"]
    cmd = cmd if isinstance(cmd, list) else cmd.split()
    assert cmd[cmd.index("--appendonly") + 1] == "yes"

    conf = (ROOT / "deploy/redis/redis.conf").read_text()
    directives = dict(
        line.split(None, 1) for line in conf.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    assert directives["appendonly"].strip() == "yes"
    assert directives["port"].strip() == "${REDIS_PORT}"
    assert directives["bind"].strip() == "127.0.0.1"


def test_every_reglink_env_var_is_a_settings_field(compose) -> None:
    fields = set(Settings.model_fields)
    seen = set()
    for name, service in compose["services"].items():
        for key in _env(service):
            if key.startswith("REGLINK_"):
                seen.add(key)
                assert key[len("REGLINK_"):].lower() in fields, f"{name}: {key} is not a Setting"
    assert {"REGLINK_KAFKA_BOOTSTRAP", "REGLINK_REDIS_URL"} <= seen


def test_app_services_use_the_internal_listener_and_redis_service(compose) -> None:
    kafka_env = _env(compose["services"]["kafka"])
    internal = _listener_ports(kafka_env["KAFKA_LISTENERS"])["INTERNAL"]
    assert f"INTERNAL://kafka:{internal}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    for name in ("topics", "worker", "demo-publisher"):
        env = _env(compose["services"][name])
        assert env["REGLINK_KAFKA_BOOTSTRAP"] == f"kafka:{internal}", name
        assert env["REGLINK_REDIS_URL"].startswith("redis://redis:6379/"), name


def test_prometheus_scrapes_the_metrics_ports(compose) -> None:
    fields = Settings.model_fields
    want = {
        "worker": fields["worker_metrics_port"].default,
        "demo-publisher": fields["connector_metrics_port"].default,
        "console": fields["console_port"].default,
    }
    prom = _load_yaml("deploy/prometheus/prometheus.yml")
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]}
    assert targets == {f"{svc}:{port}" for svc, port in want.items()}
    for svc, port in want.items():
        assert svc in compose["services"]
        env = _env(compose["services"][svc])
        key = {"worker": "REGLINK_WORKER_METRICS_PORT", "console": "REGLINK_CONSOLE_PORT"}.get(
            svc, "REGLINK_CONNECTOR_METRICS_PORT")
        assert int(env.get(key, port)) == port
        if "metrics_host" in fields:  # metrics must listen beyond the container's loopback
            assert env.get("REGLINK_METRICS_HOST") == "0.0.0.0", svc
        if svc == "demo-publisher" and "connector_metrics" in fields:
            assert env.get("REGLINK_CONNECTOR_METRICS", "").lower() in {"1", "true", "yes"}


def test_grafana_dashboard_uses_the_provisioned_datasource() -> None:
    provisioned = _load_yaml("deploy/grafana/provisioning/datasources/datasource.yml")
    uids = {ds["uid"] for ds in provisioned["datasources"]}
    assert len(uids) == 1
    dash = json.loads((ROOT / "deploy/grafana/dashboards/pipeline.json").read_text())
    assert dash["panels"]
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] in uids, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids, panel["title"]


def test_dashboard_only_uses_known_metric_names() -> None:
    known = {
        "reglink_records_in_total", "reglink_deadletter_total", "reglink_linked_total",
        "reglink_identities_created_total", "reglink_identity_merges_total",
        "reglink_alerts_total", "reglink_link_latency_seconds_bucket",
        "reglink_alert_latency_seconds_bucket", "reglink_consumer_lag",
        "reglink_published_total",
    }
    dash = json.loads((ROOT / "deploy/grafana/dashboards/pipeline.json").read_text())
    used = {m for p in dash["panels"] for t in p["targets"]
            for m in re.findall(r"\breglink_\w+", t["expr"])}
    assert used and used <= known, used - known


def test_dashboard_provider_points_at_the_mounted_dashboards(compose) -> None:
    provider = _load_yaml("deploy/grafana/provisioning/dashboards/dashboards.yml")
    path = provider["providers"][0]["options"]["path"]
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in mounts
