"""On the same input, the stream path emits the same alert ids with the same final statuses as
`reglink replay` (docs/contract.md §3). Real Kafka, real Redis, a real worker process."""

import json
import time
import urllib.request

import pytest
from streamkit import (
    WorkerProcess,
    final_statuses,
    free_port,
    publish_simulation,
    read_topic,
    wait_for_count,
)

from matchers.normalise import normalise_id
from reglink.replay import run_replay
from reglink.sim.simulate import run_simulate


@pytest.mark.parametrize("partitions", [1, 3])
def test_stream_emits_the_same_alerts_as_replay(kafka_settings, redis_client, provision,
                                                tmp_path, partitions):
    s = kafka_settings.model_copy(update={
        "topic_prefix": f"{kafka_settings.topic_prefix}p{partitions}.",
        "app_id": f"{kafka_settings.app_id}-p{partitions}",
        "source_partitions": partitions, "derived_partitions": partitions,
        "idle_timeout_s": 3.0, "worker_metrics_port": free_port()})
    provision(s)  # topics and (scram) ACLs of the sub-prefix, as admin
    sim = tmp_path / "sim"
    # 30 % watched: enough watch entries that some cannot tell namesakes apart, so the
    # ambiguity guard withdraws alerts, in the stream as in replay
    run_simulate(persons=700, days=25, start="2026-03-01", seed=11, out_dir=sim,
                 watch_share=0.3)

    replay = run_replay(s, [sim / "events.jsonl"], tmp_path / "replay")
    replayed = [json.loads(line) for line in
                (tmp_path / "replay" / "alerts.jsonl").open(encoding="utf-8")]
    expected = final_statuses(replayed)
    assert len(expected) >= 5, "corpus too small to prove anything"
    assert {"raised", "withdrawn"} <= set(expected.values())
    assert any(a.get("withdrawn_reason") == "ambiguous" for a in replayed)
    # persons who moved and registered anew while their old registration stayed open, some
    # deregistered late: stale_registration alerts, raised when the watermark passes their
    # deadlines, in the stream as in replay
    stale = {a["alert_id"] for a in replayed if a["rule"] == "stale_registration"}
    assert len([k for k in stale if expected[k] == "raised"]) >= 3

    published, n_linked = publish_simulation(s, sim)
    assert published == replay.read - replay.deadlettered

    worker = WorkerProcess(s, tmp_path).start()
    try:
        linked = wait_for_count(s, "linked", n_linked, timeout=240, worker=worker)
        assert len({(r["source"], r["record_id"]) for r in linked}) == n_linked, worker.tail()
        # Once every source is idle the watermark flushes, as replay's end of input does.
        # The flush is asynchronous (idle timeout + timer tick), so poll for a while.
        deadline = time.monotonic() + s.idle_timeout_s + 60
        while True:
            got = final_statuses(read_topic(s, "alerts"))
            if got == expected or time.monotonic() > deadline:
                break
            time.sleep(2)
        metrics = urllib.request.urlopen(
            f"http://127.0.0.1:{s.worker_metrics_port}/metrics", timeout=5).read().decode()
    finally:
        worker.stop()
    # A clean stop: the worker closed its Redis clients once the app and its tasks had
    # stopped (streams/worker.py, JsonLogWorker.on_shutdown), and exited 0.
    assert worker.proc is not None and worker.proc.returncode == 0, worker.tail()
    assert any(json.loads(line).get("msg") == "worker stopped; its Redis clients are closed"
               for line in worker.log.read_text().splitlines() if line.startswith("{")), \
        worker.tail()

    # Pseudonymisation: no ID number of the input, raw or normalised, in any Redis key or value.
    ids = set()
    for line in (sim / "events.jsonl").open(encoding="utf-8"):
        number = json.loads(line).get("person", {}).get("id_number")
        if number:
            ids.add(number)
            info = normalise_id(number)
            if info is not None:
                ids.add(info.value)
    assert len(ids) > 100
    dump = []
    for key in redis_client.scan_iter(match=f"{s.redis_prefix}*", count=1000):
        dump.append(key.decode())
        if redis_client.type(key) == b"string":
            dump.append(redis_client.get(key).decode())
    blob = "\n".join(dump)
    assert len(dump) > 100 and not [n for n in ids if n in blob]

    missing = {k: v for k, v in expected.items() if got.get(k) != v}
    extra = {k: v for k, v in got.items() if k not in expected}
    assert not missing and not extra, f"missing/different {missing}, extra {extra}"
    def metric(name: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                   if line.startswith(name + " ") or line.startswith(name + "{"))
    assert metric("reglink_linked_total") >= n_linked

    # Every source record came through the whole-fetch intake (streams/intake.py), not one by
    # one through faust's stream, and fetches carried more than one record on average.
    fetched, fetches = (metric("reglink_worker_fetch_records_sum"),
                        metric("reglink_worker_fetch_records_count"))
    assert fetched == published, (fetched, published)
    assert 0 < fetches < fetched
