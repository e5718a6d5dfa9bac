"""Fuzz: 10,000 generated bad records through the connector and, bypassing it,
straight into the worker. No crash; every record dead-lettered with the right reason; the
counts reconcile; the worker still links the next good record."""

import json
import random
from collections import Counter

from fuzzkit import mutate, required_fields
from kafka import KafkaProducer
from streamkit import WorkerProcess, free_port, read_topic, wait_for_count

from connectors.publish import run_publish
from reglink.kafka_auth import kafka_python_kwargs
from reglink.sim.simulate import run_simulate

N = 10_000
SOURCES = ("hotel", "rental", "residence", "job", "person")


def corpus(tmp_path):
    sim = tmp_path / "sim"
    run_simulate(persons=600, days=20, start="2026-03-01", seed=4, out_dir=sim)
    return {s: [json.loads(x) for x in (sim / f"{s}.jsonl").open(encoding="utf-8")]
            for s in SOURCES}


def bad_lines(good, seed):
    rng = random.Random(seed)
    req = required_fields()
    out = []
    for _ in range(N):
        source = rng.choice(SOURCES)
        raw, code = mutate(rng.choice(good[source]), rng, req)
        out.append((source, raw, code))
    return out


def test_connector_dead_letters_every_fuzzed_record(kafka_settings, tmp_path):
    lines = bad_lines(corpus(tmp_path), seed=1)
    per_source = Counter()
    expected = Counter()
    for source in SOURCES:
        mine = [(raw, code) for s, raw, code in lines if s == source]
        path = tmp_path / f"bad-{source}.jsonl"
        path.write_bytes(b"".join(raw + b"\n" for raw, _ in mine))
        summary = run_publish(kafka_settings, source, [str(path)])
        assert summary.reconciles(), summary.line()
        assert (summary.read, summary.published, summary.deadlettered) == (len(mine), 0, len(mine))
        per_source[source] = len(mine)
        expected.update(code for _, code in mine)
    dead = read_topic(kafka_settings, "deadletter", idle_ms=3000)
    assert len(dead) == N == sum(per_source.values())
    got = Counter(d["reason"].split(":")[0] for d in dead)
    assert got == expected, (got, expected)
    assert all(d["origin"]["file"].endswith(".jsonl") and d["origin"]["line"] >= 1 for d in dead)


def test_worker_survives_fuzzed_records_on_its_topics(kafka_settings, redis_client, tmp_path):
    s = kafka_settings.model_copy(update={"worker_metrics_port": free_port()})
    good = corpus(tmp_path)
    lines = bad_lines(good, seed=2)
    # one producer per source, as that source's connector principal (what the ACLs allow)
    producers = {src: KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all",
                                    linger_ms=20, **kafka_python_kwargs(s, f"connector-{src}"))
                 for src in SOURCES}
    for source, raw, _code in lines:
        producers[source].send(s.topic(f"{source}.raw"), key=b"fuzz", value=raw)
    # then one good record per source: the worker must still be alive and linking
    for source in SOURCES:
        producers[source].send(s.topic(f"{source}.raw"), key=b"good",
                               value=json.dumps(good[source][0], ensure_ascii=False).encode())
    for producer in producers.values():
        producer.flush()
        producer.close()
    worker = WorkerProcess(s, tmp_path).start()
    try:
        linked = wait_for_count(s, "linked", len(SOURCES), timeout=300, worker=worker)
        dead = wait_for_count(s, "deadletter", N, timeout=120, worker=worker)
        assert worker.alive(), worker.tail()
    finally:
        worker.stop()
    assert len(linked) == len(SOURCES)
    assert len(dead) == N
    expected = Counter(code for _s, _r, code in lines)
    assert Counter(d["reason"].split(":")[0] for d in dead) == expected
    assert all({"topic", "partition", "offset"} <= set(d["origin"]) for d in dead)
