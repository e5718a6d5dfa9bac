"""kafka_security=scram end to end, and the pseudonymisation scan of the same run.

`reglink publish` (principal connector-<source>) -> `reglink worker` (principal worker, Redis
user worker) -> alerts read by the downstream principal `reader` (`reglink alerts`). Then every
place a run leaves text behind -- the worker's log, the connectors' log output, the worker's
/metrics, every Redis key and string value -- is scanned for any ID number of the input, raw
or normalised.
"""

from __future__ import annotations

import io
import json
import logging
import time
import urllib.request

import pytest
from streamkit import WorkerProcess, free_port

from connectors.publish import run_publish
from matchers.normalise import normalise_id
from reglink import kafka_auth
from reglink.core.topics import SOURCES
from reglink.devstack.stack import admin_client, create_topics
from reglink.replay import run_replay
from reglink.sim.simulate import run_simulate
from reglink.tail import tail_alerts


class Run:
    pass


@pytest.fixture(scope="module")
def secure_run(secure_stack, tmp_path_factory) -> Run:
    # Redis ACLs cover the stack's redis_prefix (rendered at `stack up`): keep it.
    s = secure_stack.model_copy(update={"topic_prefix": "e2e.", "app_id": "e2e-worker",
                                        "worker_metrics_port": free_port()})
    create_topics(s)
    admin = admin_client(s)
    try:
        kafka_auth.apply_acls(s, admin)
    finally:
        admin.close()
    tmp = tmp_path_factory.mktemp("secure-run")
    sim = tmp / "sim"
    run_simulate(persons=400, days=20, start="2026-03-01", seed=7, out_dir=sim)
    run_replay(s, [sim / "events.jsonl"], tmp / "replay")
    expected = {json.loads(line)["alert_id"]
                for line in (tmp / "replay" / "alerts.jsonl").open(encoding="utf-8")}
    assert expected, "corpus too small"

    # The connectors' log output, for the scan: reglink's own loggers at DEBUG, everything
    # else at INFO. (kafka-python's DEBUG log dumps request payloads, record values included:
    # never run a connector with the kafka logger at DEBUG on real data.)
    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("reglink").setLevel(logging.DEBUG)
    try:
        for source in SOURCES:
            summary = run_publish(s, source, [str(sim / f"{source}.jsonl")])
            assert summary.reconciles(), summary.line()
            logs.write(summary.line() + "\n")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        logging.getLogger("reglink").setLevel(logging.NOTSET)

    worker = WorkerProcess(s, tmp).start()
    got: set[str] = set()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not expected <= got:
            assert worker.alive(), worker.tail()
            out = io.StringIO()
            tail_alerts(s, as_json=True, from_beginning=True, idle_timeout=2.0, out=out)
            got = {json.loads(line)["alert_id"] for line in out.getvalue().splitlines()}
            time.sleep(2)
        metrics = urllib.request.urlopen(
            f"http://127.0.0.1:{s.worker_metrics_port}/metrics", timeout=5).read().decode()
    finally:
        worker.stop()
    r = Run()
    r.s, r.sim, r.expected, r.got, r.metrics = s, sim, expected, got, metrics
    r.worker_log = worker.log.read_text(errors="replace")
    r.connector_log = logs.getvalue()
    return r


def test_publish_worker_alerts_readable_by_reader(secure_run) -> None:
    r = secure_run
    assert r.expected <= r.got, (f"{len(r.expected - r.got)} of {len(r.expected)} alerts "
                                 f"missing\n{r.worker_log[-3000:]}")
    assert "AuthorizationFailed" not in r.worker_log, r.worker_log[-3000:]


def _input_ids(sim) -> set[str]:
    """Every ID number anywhere in the input (person, landlord, companions...), raw and
    normalised to 18 digits."""
    ids: set[str] = set()

    def walk(v) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                if k == "id_number" and isinstance(x, str) and x:
                    ids.add(x)
                    info = normalise_id(x)
                    if info is not None:
                        ids.add(info.value)
                else:
                    walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    for line in (sim / "events.jsonl").open(encoding="utf-8"):
        walk(json.loads(line))
    return ids


def test_no_id_number_in_logs_metrics_or_redis(secure_run) -> None:
    import redis

    r = secure_run
    ids = _input_ids(r.sim)
    assert len(ids) > 100
    client = redis.Redis.from_url(kafka_auth.redis_url(r.s, "admin"))
    dump = []
    try:
        for key in client.scan_iter(match=f"{r.s.redis_prefix}*", count=1000):
            dump.append(key.decode())
            if client.type(key) == b"string":
                dump.append(client.get(key).decode())
            elif client.type(key) == b"set":
                dump += [m.decode() for m in client.smembers(key)]
            elif client.type(key) == b"zset":
                dump += [m.decode() for m in client.zrange(key, 0, -1)]
            elif client.type(key) == b"hash":  # the blocking index (fields, packed members)
                dump += [x.decode() for fv in client.hgetall(key).items() for x in fv]
    finally:
        client.close()
    places = {"worker log": r.worker_log, "connector log": r.connector_log,
              "worker /metrics": r.metrics, "redis keys and values": "\n".join(dump)}
    assert len(dump) > 100 and len(r.worker_log) > 0 and "reglink_" in r.metrics
    leaks = {where: sorted(n for n in ids if n in text)[:5] for where, text in places.items()}
    print(f"\npseudonymisation scan: {len(ids)} ID numbers (raw + normalised) x "
          + ", ".join(f"{w} {len(t)} chars" for w, t in places.items()))
    assert not any(leaks.values()), leaks
