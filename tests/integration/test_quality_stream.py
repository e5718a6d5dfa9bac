"""Source quality reports (docs/contract.md §3.5): on the same input, the last message per
organisation on the ``quality`` topic equals replay's ``quality.jsonl`` line, dead letters of
the connectors included; a worker sends an organisation's report at most once per
``quality_every_s``, and what changed since at shutdown. Real Kafka, real Redis, a real worker
process."""

import json
import time

from streamkit import WorkerProcess, free_port, publish_simulation, wait_for_count

from connectors.publish import run_publish
from reglink.core.contract import report_time
from reglink.core.rules.merge import order_key
from reglink.kafka_auth import kafka_python_kwargs
from reglink.quality import read_topic as read_reports
from reglink.replay import iter_lines, parse_line, run_replay
from reglink.sim.simulate import run_simulate

EVERY_S = 5.0


def quality_messages(s) -> list[tuple[str, int, dict]]:
    """``(key, Kafka timestamp ms, report)`` of every message, read as the ``reader`` role
    (a downstream consumer may read the reports: counts only)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(s.topic("quality"), bootstrap_servers=s.kafka_bootstrap,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=2000, **kafka_python_kwargs(s, "reader"))
    try:
        return [(m.key.decode(), m.timestamp, json.loads(m.value)) for m in consumer]
    finally:
        consumer.close()


def by_org(reports: list[dict]) -> dict[str, dict]:
    return {f"{r['source']}:{r['organisation']}": r for r in reports}


def test_the_stream_sends_the_reports_replay_writes(kafka_settings, redis_client, provision,
                                                     tmp_path):
    s = kafka_settings.model_copy(update={
        "topic_prefix": f"{kafka_settings.topic_prefix}q.",
        "app_id": f"{kafka_settings.app_id}-q", "idle_timeout_s": 3.0,
        "quality_every_s": EVERY_S, "worker_metrics_port": free_port()})
    provision(s)
    sim = tmp_path / "sim"
    # 35 days: the watermark passes 30 days after the first check-ins
    run_simulate(persons=300, days=35, start="2026-03-01", seed=11, out_dir=sim)
    # Records a connector dead-letters, for organisations of the corpus: the worker counts
    # them from the deadletter topic, replay where it dead-letters them.
    hotel = json.loads((sim / "hotel.jsonl").open(encoding="utf-8").readline())
    rental = json.loads((sim / "rental.jsonl").open(encoding="utf-8").readline())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "hotel.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [
        {**hotel, "record_id": "BAD-1", "time": "yesterday"},
        {**hotel, "record_id": "BAD-2", "person": {"sex": "M"}},
        {**hotel, "record_id": "BAD-3", "hotel_id": "H-ONLY-DEAD", "time": "soon"},
    ]), encoding="utf-8")
    (bad / "rental.jsonl").write_text(json.dumps(
        {**rental, "record_id": "BAD-4", "lease_start": "2026-02-30"}, ensure_ascii=False)
        + "\n", encoding="utf-8")
    # Replay takes the records in the worker's event-time order (all of them are in the
    # broker before it starts): which record founds an identity, and which check-out
    # closes which check-in, depend on the order.
    keyed = []
    for n, raw in iter_lines(sim / "events.jsonl"):
        rec, dl = parse_line(raw, None, {"line": n})
        assert dl is None, dl
        rt = report_time(rec)
        keyed.append((order_key(rec["source"], rt.timestamp() if rt else None), n, raw))
    ordered = tmp_path / "ordered.jsonl"
    ordered.write_bytes(b"".join(raw + b"\n" for _k, _n, raw in sorted(keyed)))
    replay = run_replay(s, [ordered, bad / "hotel.jsonl", bad / "rental.jsonl"],
                        tmp_path / "replay")
    assert replay.deadlettered == 4
    expected = by_org([json.loads(x) for x in
                       (tmp_path / "replay" / "quality.jsonl").open(encoding="utf-8")])
    assert expected[f"hotel:{hotel['hotel_id']}"]["deadlettered"] == 2
    assert expected["hotel:H-ONLY-DEAD"]["received"] == 1
    assert sum(r["checkins_without_checkout"] or 0 for r in expected.values()) > 0

    _published, n_linked = publish_simulation(s, sim)
    for source in ("hotel", "rental"):
        summary = run_publish(s, source, [str(bad / f"{source}.jsonl")])
        assert summary.deadlettered == summary.read, summary.line()

    worker = WorkerProcess(s, tmp_path).start()
    try:
        wait_for_count(s, "linked", n_linked, timeout=240, worker=worker)
        # The reports follow within a few intervals once the watermark has flushed.
        deadline = time.monotonic() + s.idle_timeout_s + 10 * EVERY_S + 30
        while True:
            got = by_org(read_reports(s))
            if got == expected or time.monotonic() > deadline:
                break
            time.sleep(2)
        stopping_ms = time.time() * 1000
    finally:
        worker.stop()
    assert worker.proc is not None and worker.proc.returncode == 0, worker.tail()
    assert got.keys() == expected.keys()
    differ = sorted(k for k in expected if got[k] != expected[k])
    assert not differ, (differ[:5], [(got[k], expected[k]) for k in differ[:2]])

    messages = quality_messages(s)
    assert by_org([r for _k, _t, r in messages]) == expected  # after the shutdown too
    assert all(k == f"{r['source']}:{r['organisation']}" for k, _t, r in messages)
    # At most one report per organisation per interval while running (the shutdown sends
    # what changed since, whenever it was last sent). An outbox re-send repeats a report
    # unchanged (at least once delivery): a repeat is not a new report.
    last: dict[str, tuple[int, dict]] = {}
    updated = 0  # reports that followed an earlier one of their organisation
    for key, ts, r in messages:
        if ts < stopping_ms:
            if key in last and last[key][1] != r:
                assert ts - last[key][0] >= EVERY_S * 1000 - 1000, (key, ts - last[key][0])
                updated += 1
            if key not in last or last[key][1] != r:
                last[key] = (ts, r)
    assert updated > 0, "no organisation changed after its first report: nothing throttled"
    assert len(messages) < 3 * len(expected)  # not one message per record
