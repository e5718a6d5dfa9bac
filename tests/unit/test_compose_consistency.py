"""docker-compose.yml must describe the same stack as `reglink stack up` (deploy/ + Settings).

Needs no services and no Docker: it parses the files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from reglink import kafka_auth
from reglink.core import sources
from reglink.core.settings import Settings
from reglink.devstack import compose as compose_mod

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


def _props(text: str) -> dict[str, str]:
    """Java properties semantics: the last value of a key wins."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


# Values both renderings get (the compose ones: docker-compose.yml's kafka environment).
ADMIN_PW = "a" * 48


def _compose_kafka_env(compose) -> dict[str, str]:
    env = _env(compose["services"]["kafka"])
    principals = env["KAFKA_PRINCIPALS"].split()
    for p in principals:  # stand-ins for the ${...:?} secrets
        env[compose_mod.kafka_var(p)] = ADMIN_PW if p == "admin" else f"{p}-pw".replace("-", "")
    return env


@pytest.fixture(scope="module")
def kafka_entrypoint_run(compose, tmp_path_factory) -> dict[str, Any]:
    """Run deploy/kafka/compose-entrypoint.sh outside a container: the image's launcher
    scripts are replaced by two that record their arguments (this proves what the container
    renders and formats; the real broker on this config: tests/security/test_compose_services)."""
    tmp = tmp_path_factory.mktemp("compose-kafka")
    home = tmp / "kafka"
    (home / "bin").mkdir(parents=True)
    for name in ("kafka-storage.sh", "kafka-server-start.sh"):
        script = home / "bin" / name
        script.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done'
                          f' > {tmp}/{name}.args\n')
        script.chmod(0o755)
    env = {**_compose_kafka_env(compose), "PATH": os.environ["PATH"], "KAFKA_HOME": str(home),
           "REGLINK_DEPLOY_DIR": str(ROOT / "deploy/kafka"),
           "REGLINK_KAFKA_CONF": str(tmp / "conf"),
           "KAFKA_LOG_DIRS": str(tmp / "data")}  # the container's path is checked below
    proc = subprocess.run(["sh", str(ROOT / "deploy/kafka/compose-entrypoint.sh")], env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    conf = tmp / "conf" / "server.properties"
    return {"env": env, "conf": conf, "props": _props(conf.read_text()),
            "format": (tmp / "kafka-storage.sh.args").read_text().splitlines(),
            "start": (tmp / "kafka-server-start.sh.args").read_text().splitlines(),
            "admin": _props((tmp / "conf" / "admin-client.properties").read_text())}


def _local_scram_props(values: dict[str, Any]) -> dict[str, str]:
    """What `reglink stack up` renders in scram mode (reglink/devstack/stack.py, same functions)."""
    from reglink.devstack.stack import _overlay_properties, _render_text

    deploy = ROOT / "deploy/kafka"
    return _props(_overlay_properties(_render_text(deploy / "server.properties", values),
                                      _render_text(deploy / "server-scram.properties", values)))


def test_compose_kafka_renders_the_local_scram_config_plus_listeners(kafka_entrypoint_run):
    run = kafka_entrypoint_run
    env = run["env"]
    local = _local_scram_props({"KAFKA_PORT": env["KAFKA_PORT"],
                                "KAFKA_CONTROLLER_PORT": env["KAFKA_CONTROLLER_PORT"],
                                "KAFKA_LOG_DIRS": env["KAFKA_LOG_DIRS"],
                                "ADMIN_PASSWORD": ADMIN_PW})
    compose = run["props"]
    overlay = set(_props((ROOT / "deploy/kafka/server-compose.properties").read_text()))
    # the compose overlay touches the listeners only (and gives the extra one its JAAS entry)
    internal_jaas = "listener.name.internal.scram-sha-512.sasl.jaas.config"
    assert overlay == {"listeners", "advertised.listeners", "listener.security.protocol.map",
                       internal_jaas}
    assert compose[internal_jaas] == \
        "org.apache.kafka.common.security.scram.ScramLoginModule required;"  # no credentials
    assert set(compose) == set(local) | {internal_jaas}
    differ = {k for k in local if compose[k] != local[k]}
    assert differ == overlay - {internal_jaas}
    # security: exactly the local scram settings
    for key in ("sasl.enabled.mechanisms", "sasl.mechanism.inter.broker.protocol",
                "inter.broker.listener.name", "authorizer.class.name",
                "allow.everyone.if.no.acl.found", "super.users",
                "sasl.mechanism.controller.protocol",
                "listener.name.controller.sasl.enabled.mechanisms",
                "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config",
                "listener.name.controller.plain.sasl.jaas.config",
                "auto.create.topics.enable", "process.roles"):
        assert compose[key] == local[key], key
    assert compose["allow.everyone.if.no.acl.found"] == "false"
    assert compose["super.users"] == f"User:{kafka_auth.ADMIN}"
    assert f'password="{ADMIN_PW}"' in compose["listener.name.controller.plain.sasl.jaas.config"]
    # every listener speaks SASL; nothing is PLAINTEXT
    protocols = dict(x.split(":") for x in compose["listener.security.protocol.map"].split(","))
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}
    assert set(_listener_ports(compose["listeners"])) == set(protocols)
    assert oct(run["conf"].stat().st_mode & 0o777) == "0o600"  # holds the admin password


def test_compose_kafka_formats_with_the_same_scram_users(compose, kafka_entrypoint_run):
    run = kafka_entrypoint_run
    env = run["env"]
    args = run["format"]
    assert args[:2] == ["format", "--ignore-formatted"]
    assert args[args.index("-t") + 1] == env["CLUSTER_ID"]
    scram = [args[i + 1] for i, a in enumerate(args) if a == "--add-scram"]
    want = [f"{kafka_auth.MECHANISM}=[name={p},password={env[compose_mod.kafka_var(p)]}]"
            for p in kafka_auth.kafka_principals()]
    assert scram == want  # same principals, same order, same mechanism as reglink/devstack/stack.py
    assert env["KAFKA_PRINCIPALS"].split() == kafka_auth.kafka_principals()
    assert run["start"] == [str(run["conf"])]
    # the healthcheck's client config: admin over SCRAM
    admin = run["admin"]
    assert admin["security.protocol"] == "SASL_PLAINTEXT"
    assert admin["sasl.mechanism"] == kafka_auth.MECHANISM
    assert f'username="admin" password="{ADMIN_PW}"' in admin["sasl.jaas.config"]
    health = " ".join(compose["services"]["kafka"]["healthcheck"]["test"])
    assert "--command-config /tmp/reglink-kafka/admin-client.properties" in health


def test_compose_kafka_entrypoint_refuses_a_missing_password(compose, tmp_path) -> None:
    env = {**_compose_kafka_env(compose), "PATH": os.environ["PATH"],
           "KAFKA_HOME": str(tmp_path / "none"), "REGLINK_DEPLOY_DIR": str(ROOT / "deploy/kafka"),
           "REGLINK_KAFKA_CONF": str(tmp_path / "conf"), "KAFKA_LOG_DIRS": str(tmp_path / "d")}
    env[compose_mod.kafka_var("worker")] = ""
    proc = subprocess.run(["sh", str(ROOT / "deploy/kafka/compose-entrypoint.sh")], env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "KAFKA_PASSWORD_WORKER is empty" in proc.stderr and "reglink compose-env" in proc.stderr


def test_kafka_ports_match_settings(compose, server_properties, kafka_entrypoint_run) -> None:
    fields = Settings.model_fields
    kafka_port = fields["kafka_port"].default
    controller_port = fields["kafka_controller_port"].default
    assert fields["kafka_bootstrap"].default == f"127.0.0.1:{kafka_port}"

    kafka = compose["services"]["kafka"]
    env = _env(kafka)
    assert _host_ports(kafka) == {kafka_port}
    assert int(env["KAFKA_PORT"]) == kafka_port
    assert int(env["KAFKA_CONTROLLER_PORT"]) == controller_port
    rendered = kafka_entrypoint_run["props"]
    listeners = _listener_ports(rendered["listeners"])
    assert listeners["SASL_PLAINTEXT"] == kafka_port
    assert listeners["CONTROLLER"] == controller_port
    assert rendered["advertised.listeners"].startswith(f"SASL_PLAINTEXT://127.0.0.1:{kafka_port}")
    assert rendered["controller.quorum.voters"].endswith(f":{controller_port}")
    assert rendered["process.roles"] == server_properties["process.roles"] == "broker,controller"
    assert env["KAFKA_LOG_DIRS"] in " ".join(kafka["volumes"])

    # the local templates take their ports from the same Settings fields
    assert server_properties["listeners"] == (
        "PLAINTEXT://127.0.0.1:${KAFKA_PORT},CONTROLLER://127.0.0.1:${KAFKA_CONTROLLER_PORT}"
    )
    scram = _props((ROOT / "deploy/kafka/server-scram.properties").read_text())
    assert scram["listeners"] == (
        "SASL_PLAINTEXT://127.0.0.1:${KAFKA_PORT},CONTROLLER://127.0.0.1:${KAFKA_CONTROLLER_PORT}"
    )


def test_kafka_service_mounts_the_deploy_files_it_renders(compose) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["entrypoint"] == ["/bin/sh", "/deploy/kafka/compose-entrypoint.sh"]
    assert "./deploy/kafka:/deploy/kafka:ro" in kafka["volumes"]
    redis = compose["services"]["redis"]
    assert redis["entrypoint"] == ["/bin/sh", "/deploy/redis/compose-entrypoint.sh"]
    assert "./deploy/redis:/deploy/redis:ro" in redis["volumes"]


def test_auto_create_disabled_in_both(server_properties, kafka_entrypoint_run) -> None:
    assert server_properties["auto.create.topics.enable"] == "false"
    assert kafka_entrypoint_run["props"]["auto.create.topics.enable"] == "false"


def test_single_node_replication_and_rebalance_delay_in_both(server_properties,
                                                             kafka_entrypoint_run) -> None:
    for prop in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                 "group.initial.rebalance.delay.ms"):
        assert kafka_entrypoint_run["props"][prop] == server_properties[prop], prop


# --- Redis ----------------------------------------------------------------------------------
REDIS_PWS = {u: f"{u}-redis-pw" for u in kafka_auth.REDIS_USERS}


@pytest.fixture(scope="module")
def redis_entrypoint_run(tmp_path_factory) -> dict[str, Any]:
    """Run deploy/redis/compose-entrypoint.sh outside a container; `echo` stands in for the
    image's entrypoint (the real redis-server on this file:
    tests/security/test_compose_services)."""
    tmp = tmp_path_factory.mktemp("compose-redis")
    env = {"PATH": os.environ["PATH"], "REGLINK_DEPLOY_DIR": str(ROOT / "deploy/redis"),
           "REGLINK_REDIS_CONF": str(tmp / "redis.conf"), "REDIS_EXEC": "echo",
           **{compose_mod.redis_var(u): pw for u, pw in REDIS_PWS.items()}}
    proc = subprocess.run(["sh", str(ROOT / "deploy/redis/compose-entrypoint.sh")], env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    conf = tmp / "redis.conf"
    return {"conf": conf, "text": conf.read_text(), "exec": proc.stdout.split()}


def _directives(text: str) -> list[tuple[str, str]]:
    return [tuple(line.strip().split(None, 1)) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_compose_redis_has_the_local_acl_users(redis_entrypoint_run) -> None:
    run = redis_entrypoint_run
    users = [f"user {rest}" for name, rest in _directives(run["text"]) if name == "user"]
    creds = {"redis": REDIS_PWS}
    settings = Settings(redis_prefix="reglink:")  # the compose services' REGLINK_REDIS_PREFIX
    assert users == kafka_auth.redis_acl_lines(settings, creds)  # same rules, same hashes
    for pw in REDIS_PWS.values():
        assert pw not in run["text"]  # only SHA-256 hashes
    assert oct(run["conf"].stat().st_mode & 0o777) == "0o600"
    assert run["exec"] == ["redis-server", str(run["conf"])]


def test_compose_users_acl_file_is_redis_acl_lines(compose) -> None:
    """deploy/redis/compose-users.acl is kafka_auth.redis_acl_lines with hash placeholders,
    for the prefix the compose services use."""
    env = _env(compose["services"]["worker"])
    settings = Settings(redis_prefix=env["REGLINK_REDIS_PREFIX"])
    fake = {"redis": {u: f"<{u}>" for u in kafka_auth.REDIS_USERS}}
    want = []
    for line in kafka_auth.redis_acl_lines(settings, fake):
        for u in kafka_auth.REDIS_USERS:
            digest = hashlib.sha256(fake["redis"][u].encode()).hexdigest()
            line = line.replace("#" + digest, "#" + compose_mod.redis_hash_placeholder(u))
        want.append(line)
    text = (ROOT / "deploy/redis/compose-users.acl").read_text()
    assert [f"{a} {b}" for a, b in _directives(text)] == want


def test_redis_port_and_appendonly_in_both(compose, redis_entrypoint_run) -> None:
    fields = Settings.model_fields
    redis_port = fields["redis_port"].default
    assert fields["redis_url"].default.startswith(f"redis://127.0.0.1:{redis_port}/")

    redis = compose["services"]["redis"]
    assert redis["image"].split(":")[0] == "redis"
    assert _host_ports(redis) == {redis_port}

    local = dict(_directives((ROOT / "deploy/redis/redis.conf").read_text()))
    assert local["appendonly"] == "yes"
    assert local["port"] == "${REDIS_PORT}"
    assert local["bind"] == "127.0.0.1"
    rendered = _directives(redis_entrypoint_run["text"])
    last = dict(rendered)  # redis.conf: a later directive overrides an earlier one
    assert last["port"] == str(redis_port)
    assert last["appendonly"] == "yes" and last["appendfsync"] == local["appendfsync"]
    assert last["dir"] == "/data" and "redis-data:/data" in redis["volumes"]
    assert last["bind"] == "* -::*"  # the compose network; every user needs a password
    health = " ".join(redis["healthcheck"]["test"])
    assert "--user admin" in health and "REDIS_PASSWORD_ADMIN" in health


# --- principals and secrets -----------------------------------------------------------------
SERVICE_ROLE = {"topics": "admin", "worker": "worker", "console": "console"}
REDIS_USER = {"worker": "worker", "console": "console"}


def _interpolated(value: str) -> list[tuple[str, str, str]]:
    """``${NAME:?msg}`` / ``${NAME:-x}`` / ``${NAME}`` references in a compose value."""
    return re.findall(r"\$\{(\w+)(?:(:[?-])([^}]*))?\}", value.replace("$$", ""))


def test_app_services_run_as_their_own_principals(compose) -> None:
    for svc, role in SERVICE_ROLE.items():
        env = _env(compose["services"][svc])
        assert env["REGLINK_KAFKA_SECURITY"] == "scram", svc
        assert env["REGLINK_KAFKA_USERNAME"] == role, svc
        assert _interpolated(env["REGLINK_KAFKA_PASSWORD"])[0][0] == compose_mod.kafka_var(role)
        # a service gets only its own Kafka secret (plus the HMAC key and, for the console,
        # its first supervisor's password and its session secret)
        secrets = {name for v in env.values() for name, *_ in _interpolated(v)}
        allowed = {compose_mod.kafka_var(role), "REGLINK_HMAC_KEY"}
        if svc in REDIS_USER:
            allowed.add(compose_mod.redis_var(REDIS_USER[svc]))
        if svc == "console":
            allowed |= {"CONSOLE_ADMIN_PASSWORD", "REGLINK_CONSOLE_SECRET"}
        assert secrets == allowed, svc
    for svc, user in REDIS_USER.items():
        url = _env(compose["services"][svc])["REGLINK_REDIS_URL"]
        assert url.startswith(f"redis://{user}:${{{compose_mod.redis_var(user)}:?"), svc
        assert url.endswith("@redis:6379/0"), svc
    # the demo publisher publishes each source as that source's connector principal
    demo = compose["services"]["demo-publisher"]
    env = _env(demo)
    secrets = {name for v in env.values() for name, *_ in _interpolated(v)}
    connectors = [p for p in kafka_auth.kafka_principals() if p.startswith("connector-")]
    assert secrets == {compose_mod.kafka_var(p) for p in connectors} | {"REGLINK_HMAC_KEY"}
    script = demo["command"][0]
    assert 'REGLINK_KAFKA_USERNAME="connector-$$s"' in script
    assert "KAFKA_PASSWORD_CONNECTOR_$$(echo" in script
    assert [s.principal for s in sources.current()] == connectors


def test_every_list_of_sources_is_the_registry_in_order(compose) -> None:
    """docker-compose.yml cannot import reglink.core.sources: its per-source lists are written out,
    and must name exactly the registered sources, in registry order."""
    names = list(sources.current().names)
    principals = [s.principal for s in sources.current()]
    kafka_env = _env(compose["services"]["kafka"])
    listed = kafka_env["KAFKA_PRINCIPALS"].split()
    assert [p for p in listed if p.startswith("connector-")] == principals
    assert listed == kafka_auth.kafka_principals()
    connector_vars = [compose_mod.kafka_var(p) for p in principals]
    assert [k for k in kafka_env if k.startswith("KAFKA_PASSWORD_CONNECTOR_")] == connector_vars
    demo_env = _env(compose["services"]["demo-publisher"])
    assert [k for k in demo_env if k.startswith("KAFKA_PASSWORD_")] == connector_vars
    script = compose["services"]["demo-publisher"]["command"][0]
    loops = re.findall(r"^\s*for s in ([^;]*); do$", script, re.M)
    assert [loop.split() for loop in loops] == [names]


def test_topics_init_creates_topics_and_acls_as_admin(compose) -> None:
    topics = compose["services"]["topics"]
    assert topics["command"] == [
        "python", "-m", "reglink.devstack.stack", "topics", "--wait", "120"]
    assert _env(topics)["REGLINK_KAFKA_USERNAME"] == kafka_auth.ADMIN
    # `python -m reglink.devstack.stack topics` runs _ensure_topics -> create_topics_and_acls,
    # the same code as `reglink stack up`: the same acl_table for the same prefix and app id
    import inspect

    from reglink.devstack import stack

    assert "create_topics_and_acls(settings)" in inspect.getsource(stack._ensure_topics)
    assert "_ensure_topics(settings)" in inspect.getsource(stack._main)
    assert "kafka_auth.apply_acls(settings" in inspect.getsource(stack.create_topics_and_acls)
    for svc in ("topics", "worker", "console", "demo-publisher"):
        env = _env(compose["services"][svc])
        assert env["REGLINK_TOPIC_PREFIX"] == Settings.model_fields["topic_prefix"].default
        assert env.get("REGLINK_APP_ID", Settings.model_fields["app_id"].default) == \
            Settings.model_fields["app_id"].default  # the worker group the ACLs name


def test_every_secret_comes_from_the_env_file_and_fails_clearly(compose) -> None:
    """Every secret is ``${NAME:?...reglink compose-env...}``: without .env, compose stops and
    names the command. The names are exactly what `reglink compose-env` writes."""
    used = {}
    for svc, service in compose["services"].items():
        for key, value in _env(service).items():
            for name, op, msg in _interpolated(value):
                used.setdefault(name, set()).add((op, msg))
                assert op == ":?" and "reglink compose-env" in msg, (svc, key, name)
    assert set(used) == set(compose_mod.secret_vars())
    kafka_env = _env(compose["services"]["kafka"])
    for p in kafka_auth.kafka_principals():
        assert compose_mod.kafka_var(p) in kafka_env
    redis_env = _env(compose["services"]["redis"])
    assert {compose_mod.redis_var(u) for u in kafka_auth.REDIS_USERS} == set(redis_env)
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"[0-9a-f]{32,}", text)  # no password committed
    for ignore in (".gitignore", ".dockerignore"):
        assert ".env" in (ROOT / ignore).read_text().split(), ignore


def test_compose_env_writes_every_secret_once_and_keeps_them(tmp_path) -> None:
    path = tmp_path / ".env"
    _, added = compose_mod.write_env(path)
    assert added == compose_mod.secret_vars()
    values = compose_mod._read_env(path)
    assert set(values) == set(compose_mod.secret_vars())
    assert all(re.fullmatch(r"[0-9a-f]{48}", v) for v in values.values())
    assert len(set(values.values())) == len(values)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    _, added_again = compose_mod.write_env(path)  # idempotent: the volumes keep working
    assert added_again == [] and compose_mod._read_env(path) == values


def test_every_reglink_env_var_is_a_settings_field(compose) -> None:
    fields = set(Settings.model_fields)
    seen = set()
    for name, service in compose["services"].items():
        for key in _env(service):
            if key.startswith("REGLINK_"):
                seen.add(key)
                assert key[len("REGLINK_"):].lower() in fields, f"{name}: {key} is not a Setting"
    assert {"REGLINK_KAFKA_BOOTSTRAP", "REGLINK_REDIS_URL"} <= seen


def test_app_services_use_the_internal_listener_and_redis_service(
        compose, kafka_entrypoint_run) -> None:
    rendered = kafka_entrypoint_run["props"]
    internal = _listener_ports(rendered["listeners"])["INTERNAL"]
    assert f"INTERNAL://kafka:{internal}" in rendered["advertised.listeners"]
    assert int(_env(compose["services"]["kafka"])["KAFKA_INTERNAL_PORT"]) == internal
    for name in ("topics", "worker", "console", "demo-publisher"):
        env = _env(compose["services"][name])
        assert env["REGLINK_KAFKA_BOOTSTRAP"] == f"kafka:{internal}", name
        assert "@redis:6379/" in env["REGLINK_REDIS_URL"] or \
            env["REGLINK_REDIS_URL"].startswith("redis://redis:6379/"), name


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
        "reglink_published_total", "reglink_publish_to_linked_seconds_bucket",
        "reglink_stalled", "reglink_redelivered_total",
        "reglink_watermark_lag_seconds", "reglink_watermark_holding",
    }
    # the worker's publish -> linked stages (reglink/core/metrics.py), means from _sum / _count
    known |= {f"reglink_worker_{stage}_seconds_{part}" for stage in ("intake", "hold", "unit")
              for part in ("sum", "count")}
    from reglink.core.metrics import PipelineMetrics
    exported = {s.name for m in PipelineMetrics().registry.collect() for s in m.samples}
    assert known - exported <= {  # labelled (no sample before a first label) or elsewhere
        "reglink_records_in_total", "reglink_deadletter_total", "reglink_linked_total",
        "reglink_alerts_total", "reglink_consumer_lag", "reglink_published_total",
        "reglink_watermark_lag_seconds", "reglink_watermark_holding"}
    dash = json.loads((ROOT / "deploy/grafana/dashboards/pipeline.json").read_text())
    used = {m for p in dash["panels"] for t in p["targets"]
            for m in re.findall(r"\breglink_\w+", t["expr"])}
    assert used and used <= known, used - known


def test_dashboard_provider_points_at_the_mounted_dashboards(compose) -> None:
    provider = _load_yaml("deploy/grafana/provisioning/dashboards/dashboards.yml")
    path = provider["providers"][0]["options"]["path"]
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in mounts


def test_redis_keeps_the_index_buckets_listpack_encoded_in_both(redis_entrypoint_run) -> None:
    """The compact blocking index (reglink/stores/kv.py) needs hashes with values up to a
    full packed field to stay listpack-encoded; the local stack and the compose Redis render
    the same deploy/redis/redis.conf, so both get these limits."""
    from reglink.stores.kv import BUCKET_HEX, PACK_MAX

    local = dict(_directives((ROOT / "deploy/redis/redis.conf").read_text()))
    rendered = dict(_directives(redis_entrypoint_run["text"]))
    for conf in (local, rendered):
        packed = PACK_MAX * 11 + (PACK_MAX - 1)  # person ids of 11 chars, comma-separated
        assert int(conf["hash-max-listpack-value"]) >= packed
        # ~4.5 index keys per identity over 16^BUCKET_HEX buckets: up to 10^8 identities
        assert int(conf["hash-max-listpack-entries"]) >= 4.5 * 10**8 / 16**BUCKET_HEX * 2
    assert local["hash-max-listpack-value"] == rendered["hash-max-listpack-value"]
    assert local["hash-max-listpack-entries"] == rendered["hash-max-listpack-entries"]
    import inspect

    from reglink.devstack import stack
    assert 'deploy" / "redis" / "redis.conf"' in inspect.getsource(stack._start_redis)


def test_the_worker_sets_the_watermark_per_source_and_the_example_parses(compose) -> None:
    """The worker's watermark settings are the Settings defaults, and the nightly residence
    example its comment gives is a valid per-source setting for an event source."""
    from reglink.core.rules.watermark import Watermark

    env = _env(compose["services"]["worker"])
    fields = Settings.model_fields
    assert float(env["REGLINK_LATENESS_S"]) == fields["lateness_s"].default
    assert float(env["REGLINK_IDLE_TIMEOUT_S"]) == fields["idle_timeout_s"].default
    s = Settings(**{k[len("REGLINK_"):].lower(): v for k, v in env.items()
                    if "LATENESS" in k or "IDLE_TIMEOUT" in k})
    assert s.lateness_s_by_source == {} and s.idle_timeout_s_by_source == {}
    text = (ROOT / "docker-compose.yml").read_text()
    example = re.findall(r'(REGLINK_(?:LATENESS|IDLE_TIMEOUT)_S_BY_SOURCE): "([^"]+)"', text)
    assert len(example) == 2, example
    nightly = Settings(**{k[len("REGLINK_"):].lower(): v for k, v in example})
    wm = Watermark.from_settings(sources.current().event_names, nightly)
    assert wm.lateness_of("residence") == 26 * 3600 == nightly.idle_timeout_for("residence")
    assert wm.lateness_of("hotel") == fields["lateness_s"].default
