"""What a worker says about a Redis outage, on a stack of its own (tests/faults/conftest.py):
Redis stopped under a running worker and started again. The worker logs the outage once,
naming Redis and its address (no line per attempt, no faust "overlapping" timer warning),
then how long it lasted; the records published meanwhile are linked afterwards. The same
file published twice counts as re-delivered."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

from corekit import EXAMPLES
from streamkit import WorkerProcess, free_port, read_topic, wait_for_count

from connectors.publish import run_publish
from reglink.devstack import stack
from reglink.devstack.stack import create_topics_and_acls
from streams.outage import redis_address


def messages(worker: WorkerProcess) -> list[str]:
    out = []
    for line in worker.log.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line)["msg"])
        except (ValueError, KeyError, TypeError):
            out.append(line)  # not one of ours: kept as is (faust's own text)
    return out


def metric(s, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{s.worker_metrics_port}/metrics",
                                  timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name))


def test_redis_outage_is_logged_once_then_recovered_and_redelivery_is_counted(
        fault_stack, tmp_path):
    u = uuid.uuid4().hex[:6]
    s = fault_stack.model_copy(update={"topic_prefix": f"o{u}.",
                                       "redis_prefix": f"{fault_stack.redis_prefix}o{u}:",
                                       "app_id": f"outage-{u}", "worker_metrics_port": free_port()})
    create_topics_and_acls(s)
    hotel = [json.loads(x) for x in EXAMPLES.read_text().splitlines()
             if json.loads(x)["source"] == "hotel"]
    first = tmp_path / "first.jsonl"
    first.write_text("".join(json.dumps(r | {"record_id": f"A-{i}"}) + "\n"
                             for i, r in enumerate(hotel)))
    later = tmp_path / "later.jsonl"
    later.write_text("".join(json.dumps(r | {"record_id": f"B-{i}"}) + "\n"
                             for i, r in enumerate(hotel)))
    worker = WorkerProcess(s, tmp_path).start()
    try:
        assert run_publish(s, "hotel", [str(first)]).reconciles()
        assert len(wait_for_count(s, "linked", len(hotel), 120, worker)) == len(hotel), \
            worker.tail()
        where = f"Redis at {redis_address(s.redis_url)}"

        # stopped and started with the fault stack's own settings: its Redis users then keep
        # the key patterns every test on this stack uses (a test's own prefix would confine them)
        stack.stop_service(fault_stack, "redis")
        assert run_publish(s, "hotel", [str(later)]).reconciles()  # waits in Kafka
        time.sleep(12)  # a dozen ticks and unit retries, one reminder due at 10 s
        assert metric(s, "reglink_stalled") == 1.0
        stack.up(fault_stack)
        linked = wait_for_count(s, "linked", 2 * len(hotel), 120, worker)
        assert {r["record_id"] for r in linked} >= {f"B-{i}" for i in range(len(hotel))}
        deadline = time.monotonic() + 30
        while not any(m.startswith(f"{where} recovered after ") for m in messages(worker)):
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.5)
        assert metric(s, "reglink_stalled") == 0.0

        logged = messages(worker)
        down = [m for m in logged if m.startswith(f"{where} unreachable (")]
        assert len(down) == 1, worker.tail(60)
        assert down[0].endswith("is it running? `reglink stack status`; the worker keeps its "
                                "records and retries")
        assert len([m for m in logged if m.startswith(f"{where} still unreachable")]) <= 2
        recovered = [m for m in logged if m.startswith(f"{where} recovered after ")]
        assert len(recovered) == 1
        assert float(recovered[0].split(" after ")[1].split(" s ")[0]) >= 10
        assert not any("overlapping" in m for m in logged), worker.tail(60)
        assert not any("during tick" in m or "retrying in" in m for m in logged)

        # the same file again: every record is a re-delivery, linked to the same person
        before = metric(s, 'reglink_redelivered_total{source="hotel"}')
        assert run_publish(s, "hotel", [str(first)]).reconciles()
        deadline = time.monotonic() + 60
        while metric(s, 'reglink_redelivered_total{source="hotel"}') < before + len(hotel):
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.5)
        assert metric(s, 'reglink_redelivered_total{source="hotel"}') == before + len(hotel)
        people = {}
        for r in read_topic(s, "linked", idle_ms=1500):
            people.setdefault(r["record_id"], set()).add(r["person_id"])
        assert all(len(p) == 1 for p in people.values())
    finally:
        worker.stop()
