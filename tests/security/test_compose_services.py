"""The docker-compose Kafka and Redis, run for real without Docker.

There is no Docker engine here, so the compose services' entrypoint scripts
(deploy/kafka/compose-entrypoint.sh, deploy/redis/compose-entrypoint.sh) run on this machine:
the Kafka image's launcher scripts are replaced by two that start the same Kafka 3.9.1 jars
the local stack uses (the Maven cache), and the Redis image's entrypoint by plain
`redis-server`. Ports are free ports, data in tmp dirs; the secrets are what
`reglink compose-env` writes. The app side uses exactly the compose services' settings:
a username + password per principal, a Redis URL with user and password in it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from streamkit import free_port

from reglink import kafka_auth
from reglink.core.errors import ServiceUnavailable
from reglink.core.settings import Settings, load_settings
from reglink.devstack import compose, stack

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _compose_env(tmp: Path) -> dict[str, str]:
    path, _ = compose.write_env(tmp / ".env")
    return compose._read_env(path)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# --- Redis ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose_redis(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compose-redis")
    secrets = _compose_env(tmp)
    port = free_port()
    env = {"PATH": os.environ["PATH"], "REGLINK_DEPLOY_DIR": str(ROOT / "deploy/redis"),
           "REGLINK_REDIS_CONF": str(tmp / "conf" / "redis.conf"), "REDIS_EXEC": "env",
           "REDIS_CONTAINER_PORT": str(port), "REDIS_DATA_DIR": str(tmp),
           **{k: v for k, v in secrets.items() if k.startswith("REDIS_PASSWORD_")}}
    log = (tmp / "redis.log").open("wb")
    proc = subprocess.Popen(["sh", str(ROOT / "deploy/redis/compose-entrypoint.sh")], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    while True:
        try:
            redis.Redis.from_url(url, socket_timeout=1).ping()
        except redis.AuthenticationError:
            break  # answering, and refusing the anonymous client: up
        except redis.ConnectionError:
            assert proc.poll() is None, (tmp / "redis.log").read_text()
            assert time.monotonic() < deadline, "compose redis did not come up"
            time.sleep(0.2)
    yield {"url": url, "port": port, "secrets": secrets, "proc": proc}
    _stop(proc)


def _as(r: dict, user: str) -> Settings:
    """The compose service's settings: the Redis URL carries its user and password."""
    pw = r["secrets"][compose.redis_var(user)]
    return load_settings(redis_url=f"redis://{user}:{pw}@127.0.0.1:{r['port']}/0",
                         redis_prefix="reglink:", kafka_security="scram")


def test_compose_redis_enforces_the_acl_users(compose_redis) -> None:
    r = compose_redis
    anon = redis.Redis.from_url(r["url"])
    with pytest.raises(redis.AuthenticationError):
        anon.get("reglink:x")
    wrong = redis.Redis(host="127.0.0.1", port=r["port"], username="worker", password="wrong")
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()

    worker = kafka_auth.connect_redis(_as(r, "worker"), "worker")  # URL used as is
    worker.set("reglink:compose-probe", "1")
    assert worker.get("reglink:compose-probe") == b"1"
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker.set("elsewhere:probe", "1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker.keys("*")

    console = kafka_auth.connect_redis(_as(r, "console"), "console")
    assert console.get("reglink:compose-probe") == b"1"
    with pytest.raises(redis.exceptions.NoPermissionError):
        console.set("reglink:compose-probe", "2")

    admin = kafka_auth.connect_redis(_as(r, "admin"), "admin")
    assert admin.acl_whoami() == "admin"
    assert admin.config_get("appendonly") == {"appendonly": "yes"}
    assert sorted(admin.acl_users()) == sorted(["default", *kafka_auth.REDIS_USERS])
    assert admin.delete("reglink:compose-probe") == 1


# --- Kafka ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose_kafka(tmp_path_factory):
    import yaml

    tmp = tmp_path_factory.mktemp("compose-kafka")
    secrets = _compose_env(tmp)
    libs = stack.ensure_kafka_jars()
    home = tmp / "kafka"
    (home / "bin").mkdir(parents=True)
    java = f'exec java -Xmx512m -Dlog4j.configuration=file:{ROOT}/deploy/kafka/log4j.properties ' \
           f'-cp "{libs}/*"'
    (home / "bin" / "kafka-storage.sh").write_text(
        f'#!/bin/sh\n{java} kafka.tools.StorageTool "$@"\n')
    (home / "bin" / "kafka-server-start.sh").write_text(f'#!/bin/sh\n{java} kafka.Kafka "$@"\n')
    for f in (home / "bin").iterdir():
        f.chmod(0o755)
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["kafka"]
    ports = {"KAFKA_PORT": free_port(), "KAFKA_CONTROLLER_PORT": free_port(),
             "KAFKA_INTERNAL_PORT": free_port()}
    env = {"PATH": os.environ["PATH"], "KAFKA_HOME": str(home),
           "REGLINK_DEPLOY_DIR": str(ROOT / "deploy/kafka"),
           "REGLINK_KAFKA_CONF": str(tmp / "conf"), "KAFKA_LOG_DIRS": str(tmp / "data"),
           "CLUSTER_ID": str(service["environment"]["CLUSTER_ID"]),
           "KAFKA_PRINCIPALS": service["environment"]["KAFKA_PRINCIPALS"],
           **{k: str(v) for k, v in ports.items()},
           **{k: v for k, v in secrets.items() if k.startswith("KAFKA_PASSWORD_")}}
    log = (tmp / "kafka.log").open("wb")
    proc = subprocess.Popen(["sh", str(ROOT / "deploy/kafka/compose-entrypoint.sh")], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    bootstrap = f"127.0.0.1:{ports['KAFKA_PORT']}"

    def as_principal(name: str, **kw) -> Settings:
        return load_settings(kafka_bootstrap=bootstrap, kafka_security="scram",
                             kafka_username=name,
                             kafka_password=secrets[compose.kafka_var(name)], **kw)

    try:
        stack.wait_kafka(as_principal("admin"), 120, alive=lambda: proc.poll() is None)
    except ServiceUnavailable:
        _stop(proc)
        pytest.fail("compose kafka did not come up:\n"
                    + "\n".join((tmp / "kafka.log").read_text().splitlines()[-30:]))
    yield {"as": as_principal, "proc": proc, "tmp": tmp}
    _stop(proc)


def test_compose_kafka_runs_scram_with_the_acls_of_the_topics_init(compose_kafka) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import KafkaError, TopicAuthorizationFailedError

    as_ = compose_kafka["as"]
    # the `topics` init container: `python -m reglink.devstack.stack topics` as admin
    admin = as_("admin")
    proc = subprocess.run([sys.executable, "-m", "reglink.devstack.stack", "topics",
                           "--wait", "60"],
                          env={**os.environ, **admin.to_env()},
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"acls: {len(kafka_auth.acl_table(admin))} Kafka ACLs" in proc.stdout

    def produce(name: str, topic: str) -> type[Exception] | None:
        s = as_(name)
        p = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, max_block_ms=8000,
                          **kafka_auth.kafka_python_kwargs(s, name))
        try:
            p.send(s.topic(topic), b"{}").get(timeout=10)
            return None
        except KafkaError as exc:
            return type(exc)
        finally:
            p.close(timeout=2)

    assert produce("connector-hotel", "hotel.raw") is None
    assert produce("connector-hotel", "rental.raw") is TopicAuthorizationFailedError
    assert produce("worker", "hotel.raw") is TopicAuthorizationFailedError
    assert produce("worker", "alerts") is None

    reader = as_("reader")
    c = KafkaConsumer(reader.topic("alerts"), bootstrap_servers=reader.kafka_bootstrap,
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=3000, **kafka_auth.kafka_python_kwargs(reader, "reader"))
    try:
        assert len(list(c)) == 1  # the worker's record
    finally:
        c.close()

    # a wrong password is refused
    wrong = load_settings(kafka_bootstrap=reader.kafka_bootstrap, kafka_security="scram",
                          kafka_username="reader", kafka_password="wrong")
    with pytest.raises(ServiceUnavailable):
        stack.wait_kafka(wrong, 5)


def test_redis_with_acl_users_keeps_transactions_across_a_restart(tmp_path) -> None:
    """Redis replays its AOF as the default user, and Redis < 8 re-checks EXEC's ACL while
    loading: with a default user without rights every MULTI/EXEC was dropped on restart
    (the fault suite found it). The same ACL rules as the local and compose stacks."""
    from reglink.stores.kv import RedisKV

    secrets = _compose_env(tmp_path)
    port = free_port()
    env = {"PATH": os.environ["PATH"], "REGLINK_DEPLOY_DIR": str(ROOT / "deploy/redis"),
           "REGLINK_REDIS_CONF": str(tmp_path / "conf" / "redis.conf"), "REDIS_EXEC": "env",
           "REDIS_CONTAINER_PORT": str(port), "REDIS_DATA_DIR": str(tmp_path),
           **{k: v for k, v in secrets.items() if k.startswith("REDIS_PASSWORD_")}}
    r = {"port": port, "secrets": secrets}

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(["sh", str(ROOT / "deploy/redis/compose-entrypoint.sh")],
                                env=env, stdout=(tmp_path / "redis.log").open("ab"),
                                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                kafka_auth.connect_redis(_as(r, "admin"), "admin").ping()
                return proc
            except Exception:  # noqa: BLE001 - not up yet
                assert proc.poll() is None and time.monotonic() < deadline, \
                    (tmp_path / "redis.log").read_text()
                time.sleep(0.2)

    proc = start()
    try:
        kv = RedisKV(kafka_auth.connect_redis(_as(r, "worker"), "worker"), "reglink:t:")
        kv.apply([("set", "i:P1", "one"), ("sadd", "b:k", ["P1", "P2"]), ("zadd", "d", "P1", 5.0)])
        kv.set("plain", "x")  # a write outside a transaction, for comparison
    finally:
        _stop(proc)  # SIGTERM: Redis fsyncs its AOF
    proc = start()
    try:
        kv = RedisKV(kafka_auth.connect_redis(_as(r, "worker"), "worker"), "reglink:t:")
        assert kv.get("plain") == "x"
        assert kv.get("i:P1") == "one"  # the transaction survived the restart
        assert kv.smembers("b:k") == {"P1", "P2"}
        log = (tmp_path / "redis.log").read_text()
        assert "NOPERM" not in log, log[-2000:]
    finally:
        _stop(proc)
