"""The local stack as the rest of reglink relies on it: real Kafka (KRaft) and real Redis."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reglink.core.settings import Settings
from reglink.core.topics import topic_specs
from reglink.devstack.stack import admin_client, create_topics
from reglink.kafka_auth import kafka_python_kwargs

pytestmark = pytest.mark.integration


def _topic_retention(client, names: list[str]) -> dict[str, str]:
    from kafka.admin import ConfigResource, ConfigResourceType

    result = client.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n, configs=None) for n in names],
        config_filter="all",
    )
    topics = result["topic"]
    out = {}
    for name in names:
        entry = topics[name]["retention.ms"]
        out[name] = entry["value"] if isinstance(entry, dict) else entry
    return out


def test_topics_exist_with_partitions_and_retention(kafka_settings: Settings) -> None:
    specs = {kafka_settings.topic(s.name): s for s in topic_specs(kafka_settings)}
    client = admin_client(kafka_settings)
    try:
        described = {t["name"]: t for t in client.describe_topics(list(specs))}
        assert set(described) == set(specs)
        for name, spec in specs.items():
            assert described[name]["error_code"] == 0, name
            assert len(described[name]["partitions"]) == spec.partitions, name
        retention = _topic_retention(client, list(specs))
        assert retention == {n: str(s.retention_ms) for n, s in specs.items()}
    finally:
        client.close()


def test_create_topics_is_idempotent(kafka_settings: Settings) -> None:
    create_topics(kafka_settings)  # second call: every topic exists already
    create_topics(kafka_settings)


def test_more_partitions_when_configured(settings: Settings, _kafka_reachable) -> None:
    """Source and derived partition counts come from settings (the multi-partition topology)."""
    from reglink.devstack.stack import wait_kafka

    _kafka_reachable.check(lambda: wait_kafka(settings, 20))
    multi = settings.model_copy(update={"source_partitions": 3, "derived_partitions": 2})
    create_topics(multi)
    client = admin_client(multi)
    try:
        described = {t["name"]: t for t in client.describe_topics(
            [multi.topic("hotel.raw"), multi.topic("linked"), multi.topic("deadletter")])}
        assert len(described[multi.topic("hotel.raw")]["partitions"]) == 3
        assert len(described[multi.topic("linked")]["partitions"]) == 2
        assert len(described[multi.topic("deadletter")]["partitions"]) == 1
        client.delete_topics([multi.topic(s.name) for s in topic_specs(multi)])
    finally:
        client.close()


def test_broker_does_not_auto_create_topics(kafka_settings: Settings) -> None:
    from kafka import KafkaProducer
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.errors import KafkaError

    client = admin_client(kafka_settings)
    try:
        broker = client.describe_configs(
            [ConfigResource(ConfigResourceType.BROKER, "1", configs=None)], config_filter="all")
        entry = broker["broker"]["1"]["auto.create.topics.enable"]
        assert (entry["value"] if isinstance(entry, dict) else entry) == "false"

        unknown = kafka_settings.topic("no-such-topic")
        # as admin (super user in scram mode): a role would be refused by the ACLs before
        # the broker's auto-create setting matters
        producer = KafkaProducer(bootstrap_servers=kafka_settings.kafka_bootstrap,
                                 max_block_ms=3000,
                                 **kafka_python_kwargs(kafka_settings, "admin"))
        try:
            with pytest.raises(KafkaError):
                producer.send(unknown, b"x").get(timeout=5)
        finally:
            producer.close(timeout=2)
        assert unknown not in client.list_topics()
    finally:
        client.close()


def test_redis_appends_to_aof(redis_client, settings: Settings) -> None:
    assert redis_client.config_get("appendonly") == {"appendonly": "yes"}
    key = f"{settings.redis_prefix}probe"
    redis_client.set(key, "1")
    assert redis_client.get(key) == b"1"


def test_stack_status_exits_zero(kafka_settings: Settings, redis_client) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reglink.cli", "stack", "status"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("kafka") and "answers yes" in line for line in lines)
    assert any(line.startswith("redis") and "answers yes" in line for line in lines)


def test_a_test_prefix_gets_real_acls_and_loses_them(kafka_settings: Settings) -> None:
    """The per-test ACLs (kafka_settings -> create_topics_and_acls) are the only thing that
    lets a role principal touch the test's topics: another prefix's topics stay closed, and
    after remove_acls the test's own are closed too."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError, TopicAuthorizationFailedError

    from reglink import kafka_auth
    from reglink.devstack.stack import create_topics

    if not kafka_auth.secure(kafka_settings):
        pytest.skip("the shared stack runs kafka_security=plaintext (explicit opt-in)")

    def send(s: Settings) -> type[Exception] | None:
        producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, max_block_ms=8000,
                                 **kafka_python_kwargs(s, "connector-hotel"))
        try:
            producer.send(s.topic("hotel.raw"), b"{}").get(timeout=10)
            return None
        except KafkaError as exc:
            return type(exc)
        finally:
            producer.close(timeout=2)

    other = kafka_settings.model_copy(update={"topic_prefix": f"{kafka_settings.topic_prefix}x.",
                                              "app_id": f"{kafka_settings.app_id}-x"})
    create_topics(other)  # topics, no ACLs
    assert send(kafka_settings) is None
    assert send(other) is TopicAuthorizationFailedError

    client = admin_client(kafka_settings)
    try:
        removed = kafka_auth.remove_acls(kafka_settings, client)
        # every row of the table but the shared `reader.` group
        assert removed == len(kafka_auth.acl_table(kafka_settings)) - 1
        assert send(kafka_settings) is TopicAuthorizationFailedError
        kafka_auth.apply_acls(kafka_settings, client)  # the fixture's teardown removes them
    finally:
        client.close()
