"""kafka_security=plaintext is still a working, explicit opt-in (the default is scram).

A dedicated plaintext stack (own ports, own state dir): it starts, a connector publishes
without credentials, a worker links the records and raises alerts, Redis answers without
AUTH. Then the same state dir is refused in scram mode -- before anything starts -- with a
message that tells the developer what to do.
"""

from __future__ import annotations

import json

import pytest
import redis
from streamkit import WorkerProcess, free_port, own_stack, read_topic, stack_ports, wait_for_count

from connectors.publish import run_publish
from reglink import kafka_auth
from reglink.core.errors import StackError
from reglink.core.settings import load_settings
from reglink.core.topics import SOURCES
from reglink.devstack import stack
from reglink.replay import run_replay
from reglink.sim.simulate import run_simulate

pytestmark = pytest.mark.integration

PLAIN_PORTS = stack_ports(24092, 24379)  # + REGLINK_TEST_PORT_OFFSET


@pytest.fixture(scope="module")
def plain_stack(tmp_path_factory):
    s = load_settings(state_dir=str(tmp_path_factory.mktemp("plainstack")),
                      kafka_security="plaintext", hmac_key="plain-test-key",
                      idle_timeout_s=3.0, **PLAIN_PORTS)
    with own_stack(s):  # a stack that cannot start fails the tests (never skips)
        yield s


def test_plaintext_stack_runs_the_pipeline_without_credentials(plain_stack, tmp_path):
    s = plain_stack.model_copy(update={"topic_prefix": "plain.", "app_id": "plain-worker",
                                       "worker_metrics_port": free_port()})
    assert not kafka_auth.secure(s)
    assert kafka_auth.kafka_python_kwargs(s, "worker") == {}
    assert kafka_auth.redis_url(s, "worker") == s.redis_url  # no user, no password
    assert not kafka_auth.credentials_path(s).exists()  # plaintext writes no credentials

    # Redis: the default user, no AUTH
    r = redis.Redis.from_url(s.redis_url)
    try:
        assert r.acl_whoami() == "default"
        r.set(f"{s.redis_prefix}plain-probe", "1")
        assert r.get(f"{s.redis_prefix}plain-probe") == b"1"
        r.delete(f"{s.redis_prefix}plain-probe")
    finally:
        r.close()

    stack.create_topics_and_acls(s)  # no ACLs in plaintext mode
    sim = tmp_path / "sim"
    run_simulate(persons=300, days=14, start="2026-03-01", seed=5, out_dir=sim)
    run_replay(s, [sim / "events.jsonl"], tmp_path / "replay")
    expected = {json.loads(line)["alert_id"]
                for line in (tmp_path / "replay" / "alerts.jsonl").open(encoding="utf-8")}
    assert expected, "corpus too small"
    n_linked = 0
    for source in SOURCES:
        summary = run_publish(s, source, [str(sim / f"{source}.jsonl")])
        assert summary.reconciles(), summary.line()
        n_linked += summary.published if source != "watchlist" else 0

    worker = WorkerProcess(s, tmp_path).start()
    try:
        linked = wait_for_count(s, "linked", n_linked, timeout=240, worker=worker)
        got: set[str] = set()
        for _ in range(30):
            got = {a["alert_id"] for a in read_topic(s, "alerts", idle_ms=1500)}
            if expected <= got:
                break
        assert worker.alive(), worker.tail()
    finally:
        worker.stop()
    assert len({r["record_id"] for r in linked}) == n_linked
    assert got == expected


def test_scram_refuses_a_plaintext_state_dir_before_starting_anything(plain_stack):
    scram = plain_stack.model_copy(update={"kafka_security": "scram"})
    with pytest.raises(StackError) as exc:
        stack.up(scram)
    msg = str(exc.value)
    assert "formatted for kafka_security=plaintext" in msg
    assert "make clean-state" in msg and "REGLINK_KAFKA_SECURITY=plaintext" in msg
    # nothing of the scram mode was started or written: the plaintext stack still answers
    # without credentials, and no credentials file appeared
    assert not kafka_auth.credentials_path(scram).exists()
    stack.wait_kafka(plain_stack, 10)
    stack.wait_redis(plain_stack, 5)
