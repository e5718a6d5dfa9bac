"""Reliability under faults, on the real stack (docs/reliability.md). Each scenario streams a
20k-record simulated corpus through Kafka, a supervised worker and Redis, injects its fault,
then checks: nothing lost, alerts complete (= replay), duplicates only as exact repeats,
clustering F1 within 0.002 of replay, and no half-applied merges in the identity store."""

import random
import time

import pytest

from reglink import kafka_auth
from reglink.devstack import stack


@pytest.fixture
def fault_redis(fault_stack):
    client = kafka_auth.connect_redis(fault_stack, "admin")  # inspection: SCAN, EXISTS
    yield client
    client.close()


def check(out, corpus):
    print(out)
    assert out.missing_records == 0, out
    assert out.deadlettered == 0, out  # the corpus is valid: nothing may be dead-lettered
    assert out.alerts_agree, out.notes
    assert out.duplicates_differ == 0, out
    assert abs(out.f1_stream - out.f1_replay) <= 0.002, out
    assert out.store_problems == [], out.store_problems


def kill_worker(s, sup):
    sup.kill9()


def restart_kafka(s, sup):
    stack.stop_service(s, "kafka")
    time.sleep(5)
    stack.up(s)


STALLS: list[str] = []


def restart_redis(s, sup):
    import urllib.request

    stack.stop_service(s, "redis")  # SIGTERM: Redis syncs its append-only file
    end = time.monotonic() + 6
    while time.monotonic() < end:  # the stall must be visible while it lasts
        try:
            text = urllib.request.urlopen(
                f"http://127.0.0.1:{sup.s.worker_metrics_port}/metrics", timeout=2).read().decode()
            STALLS.extend(line for line in text.splitlines() if line.startswith("reglink_stalled "))
        except OSError:
            pass
        time.sleep(0.5)
    stack.up(s)


def test_worker_killed_five_times(fault_stack, corpus, tmp_path, fault_redis):
    from harness import run_scenario

    rng = random.Random(5)
    points = sorted(rng.uniform(0.05, 0.9) for _ in range(5))
    faults = {p + i * 1e-6: kill_worker for i, p in enumerate(points)}
    out = run_scenario("kill -9 worker x5", fault_stack, corpus, tmp_path, faults, fault_redis)
    assert len(out.notes) >= 5 and out.restarts >= 5, out
    check(out, corpus)


def test_kafka_broker_restarted_twice(fault_stack, corpus, tmp_path, fault_redis):
    from harness import run_scenario

    faults = {0.25: restart_kafka, 0.65: restart_kafka}
    out = run_scenario("kafka restart x2", fault_stack, corpus, tmp_path, faults, fault_redis)
    assert sum("restart_kafka" in n for n in out.notes) == 2, out
    check(out, corpus)


def test_redis_restarted_from_its_aof(fault_stack, corpus, tmp_path, fault_redis):
    from harness import run_scenario

    faults = {0.45: restart_redis}
    out = run_scenario("redis restart", fault_stack, corpus, tmp_path, faults, fault_redis)
    assert any("restart_redis" in n for n in out.notes), out
    assert out.restarts == 0, "the worker must pause and resume, not crash"
    assert "reglink_stalled 1.0" in STALLS, STALLS  # metrics show the stall...
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("worker-*.log"))
    where = f"Redis at 127.0.0.1:{fault_stack.redis_port}"
    assert f"{where} unreachable (" in logs  # ...and so do the logs, and its end
    assert f"{where} recovered after " in logs
    check(out, corpus)
