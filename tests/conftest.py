"""Shared fixtures. Integration fixtures use the real local stack (`reglink stack up`).

* ``settings``        -- fresh Settings per test: own topic prefix, Redis key prefix (under the
                         stack's ``redis_prefix``: in scram mode, the default, the Redis ACL
                         users are confined to it), app id.
* ``kafka_settings``  -- ``settings`` after checking Kafka answers and creating the test's topics
                         and, in scram mode, the ACLs of the test's topic prefix and consumer
                         group (``kafka_auth.acl_table``), both as ``admin``; the test's clients
                         then run as their roles' principals, so the ACLs are exercised.
                         Kafka unreachable -> the test FAILS with one line (never skips).
                         Teardown deletes the test's topics and ACLs (``REGLINK_TEST_KEEP_TOPICS=1``
                         keeps them for debugging).
* ``redis_client``    -- Redis client as the ``admin`` user (inspection: SCAN, TYPE, CONFIG;
                         clean-up) after a PING; fails when unreachable; deletes the test's keys
                         (``redis_prefix*``) at teardown.
* ``redis_worker``    -- Redis client as the ``worker`` user (what ``RedisKV`` runs as).

A test that uses one of these service fixtures is marked ``integration`` automatically, so
``pytest -m "not integration"`` runs without the stack.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from reglink.core.errors import ServiceUnavailable
from reglink.core.settings import Settings, load_settings

_INTEGRATION_FIXTURES = {"kafka_settings", "redis_client", "redis_worker", "provision"}


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python 3.x loads its protocol schemas with the deprecated importlib.resources API
    # (hundreds of identical warnings per run); they are not ours to fix.
    for msg in ("read_text is deprecated", "open_text is deprecated"):
        config.addinivalue_line("filterwarnings", f"ignore:{msg}:DeprecationWarning")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def settings() -> Settings:
    """Settings isolated to this test (topics, Redis keys, consumer group / app id)."""
    u = uuid.uuid4().hex[:8]
    base = load_settings()  # the stack's settings (REGLINK_* environment)
    return load_settings(
        topic_prefix=f"t{u}.",
        redis_prefix=f"{base.redis_prefix}t{u}:",
        app_id=f"test-{u}",
        hmac_key="test-key",
    )


class _Reachability:
    """Checks a service once per session; after one failure later tests fail at once."""

    def __init__(self) -> None:
        self.error: str | None = None
        self.ok = False

    def check(self, probe) -> None:
        if self.ok:
            return
        if self.error is None:
            try:
                probe()
                self.ok = True
                return
            except ServiceUnavailable as exc:
                self.error = str(exc)
        pytest.fail(self.error, pytrace=False)


@pytest.fixture(scope="session")
def _kafka_reachable() -> _Reachability:
    return _Reachability()


@pytest.fixture
def kafka_settings(settings: Settings, _kafka_reachable: _Reachability) -> Iterator[Settings]:
    """``settings`` with Kafka answering, every topic of the test created and (scram mode)
    the ACLs of the test's prefix granted to the role principals."""
    from reglink.devstack.stack import create_topics_and_acls, wait_kafka

    _kafka_reachable.check(lambda: wait_kafka(settings, 20))
    create_topics_and_acls(settings)
    yield settings
    if os.environ.get("REGLINK_TEST_KEEP_TOPICS") != "1":
        _delete_test_topics(settings)


@pytest.fixture
def provision(kafka_settings: Settings):
    """``provision(s)``: topics and (scram) ACLs for settings derived from ``kafka_settings``
    with a sub-prefix (``<test prefix>p3.``), as admin; their ACLs are removed at teardown
    (their topics go with the test's own)."""
    from reglink.devstack.stack import create_topics_and_acls

    made: list[Settings] = []

    def make(s: Settings) -> Settings:
        assert s.topic_prefix.startswith(kafka_settings.topic_prefix)
        create_topics_and_acls(s)
        made.append(s)
        return s

    yield make
    if os.environ.get("REGLINK_TEST_KEEP_TOPICS") != "1":
        for s in made:
            _remove_test_acls(s)


def _remove_test_acls(settings: Settings) -> None:
    from reglink import kafka_auth
    from reglink.devstack.stack import admin_client

    if not kafka_auth.secure(settings):
        return
    try:
        client = admin_client(settings, 5.0)
    except Exception:  # noqa: BLE001 - cleanup must never fail a test
        return
    try:
        kafka_auth.remove_acls(settings, client)
    except Exception:  # noqa: BLE001, S110
        pass
    finally:
        client.close()


def _delete_test_topics(settings: Settings) -> None:
    """Best effort: drop the test's topics and faust's internal ones (``<app_id>-...``), and
    the test's ACLs (Kafka keeps ACLs of deleted topics)."""
    from reglink.devstack.stack import admin_client

    _remove_test_acls(settings)

    try:
        client = admin_client(settings, 5.0)
    except Exception:  # noqa: BLE001 - cleanup must never fail a test
        return
    try:
        mine = [
            t for t in client.list_topics()
            if t.startswith(settings.topic_prefix) or t.startswith(f"{settings.app_id}-")
        ]
        if mine:
            client.delete_topics(mine, timeout_ms=10_000)
    except Exception:  # noqa: BLE001, S110
        pass
    finally:
        client.close()


@pytest.fixture(scope="session")
def _redis_reachable() -> _Reachability:
    return _Reachability()


@pytest.fixture
def redis_client(settings: Settings, _redis_reachable: _Reachability):
    """A Redis client (user ``admin`` in scram mode) on the real local Redis; the test's keys
    are removed afterwards."""
    from reglink.devstack.stack import wait_redis
    from reglink.kafka_auth import connect_redis

    _redis_reachable.check(lambda: wait_redis(settings, 5))
    client = connect_redis(settings, "admin")
    yield client
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{settings.redis_prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()


@pytest.fixture
def redis_worker(settings: Settings, redis_client):
    """A Redis client as the ``worker`` user (scram mode): what ``RedisKV`` runs as in a
    worker, so a store test also proves the worker's ACL allows every command it issues.
    Depends on ``redis_client`` for the reachability check and the clean-up."""
    from reglink.kafka_auth import connect_redis

    client = connect_redis(settings, "worker")
    yield client
    client.close()
