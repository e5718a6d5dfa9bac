"""Fuzz: 10,000 generated bad records through the connector and, bypassing it, straight into
the worker. No crash; every record either dead-lettered with the right reason or, with a bad
optional person field (or an ID number and no name), published and linked with the right
quality flag; the counts reconcile; the worker still links the next good record."""

import base64
import json
import random
from collections import Counter

from fuzzkit import ID_FLAGS, Mutation, mutate, required_fields
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


def bad_lines(good, seed) -> list[tuple[str, Mutation]]:
    rng = random.Random(seed)
    req = required_fields()
    out = []
    for _ in range(N):
        source = rng.choice(SOURCES)
        out.append((source, mutate(rng.choice(good[source]), rng, req)))
    return out


def kept_ids(lines: list[tuple[str, Mutation]]) -> dict[tuple[str, str], Mutation]:
    """(source, record_id) -> mutation, for the mutations that must be linked."""
    return {(s, json.loads(m.raw)["record_id"]): m for s, m in lines if m.dead is None}


def check_linked(linked: list[dict], kept: dict[tuple[str, str], Mutation]) -> None:
    """One linked message per kept record, with the flag its mutation must get."""
    assert Counter((m["source"], m["record_id"]) for m in linked) == Counter(list(kept))
    for msg in linked:
        mutation = kept[(msg["source"], msg["record_id"])]
        flags = msg["quality_flags"]
        assert set(flags) - {mutation.flag} <= ID_FLAGS, (mutation, flags)
        assert mutation.flag is None or mutation.flag in flags, (mutation, flags)


def test_connector_publishes_or_dead_letters_every_fuzzed_record(kafka_settings, tmp_path):
    lines = bad_lines(corpus(tmp_path), seed=1)
    kept = kept_ids(lines)
    expected = Counter(m.dead for _s, m in lines if m.dead is not None)
    assert len(kept) > N // 10 and len(expected) >= 8  # both fates, many reasons
    for source in SOURCES:
        mine = [m for s, m in lines if s == source]
        path = tmp_path / f"bad-{source}.jsonl"
        path.write_bytes(b"".join(m.raw + b"\n" for m in mine))
        summary = run_publish(kafka_settings, source, [str(path)])
        assert summary.reconciles(), summary.line()
        n_kept = sum(m.dead is None for m in mine)
        assert (summary.read, summary.published, summary.deadlettered) == (
            len(mine), n_kept, len(mine) - n_kept)
        # published as they came: the bad values are on the raw topic, as evidence
        raw = {(source, r["record_id"]): r for r in read_topic(kafka_settings, f"{source}.raw")}
        assert set(raw) == {k for k in kept if k[0] == source}
        for key, record in raw.items():
            assert record["person"] == json.loads(kept[key].raw)["person"]
    dead = read_topic(kafka_settings, "deadletter", idle_ms=3000)
    assert len(dead) == sum(expected.values()) == N - len(kept)
    got = Counter(d["reason"].split(":")[0] for d in dead)
    assert got == expected, (got, expected)
    assert all(d["origin"]["file"].endswith(".jsonl") and d["origin"]["line"] >= 1 for d in dead)


def test_worker_links_or_dead_letters_fuzzed_records_on_its_topics(kafka_settings,
                                                                  redis_client, tmp_path):
    s = kafka_settings.model_copy(update={"worker_metrics_port": free_port()})
    good = corpus(tmp_path)
    lines = bad_lines(good, seed=2)
    kept = kept_ids(lines)
    # one producer per source, as that source's connector principal (what the ACLs allow)
    producers = {src: KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all",
                                    linger_ms=20, **kafka_python_kwargs(s, f"connector-{src}"))
                 for src in SOURCES}
    for source, m in lines:
        producers[source].send(s.topic(f"{source}.raw"), key=b"fuzz", value=m.raw)
    # then one good record per source: the worker must still be alive and linking
    for source in SOURCES:
        record = good[source][0]
        kept[(source, record["record_id"])] = Mutation(b"", None)
        producers[source].send(s.topic(f"{source}.raw"), key=b"good",
                               value=json.dumps(record, ensure_ascii=False).encode())
    for producer in producers.values():
        producer.flush()
        producer.close()
    n_dead = sum(m.dead is not None for _s, m in lines)
    worker = WorkerProcess(s, tmp_path).start()
    try:
        linked = wait_for_count(s, "linked", len(kept), timeout=300, worker=worker)
        dead = wait_for_count(s, "deadletter", n_dead, timeout=120, worker=worker)
        assert worker.alive(), worker.tail()
    finally:
        worker.stop()
    # read = published + dead-lettered; published = linked
    assert len(linked) + len(dead) == N + len(SOURCES)
    check_linked(linked, kept)
    expected = Counter(m.dead for _s, m in lines if m.dead is not None)
    assert Counter(d["reason"].split(":")[0] for d in dead) == expected
    assert all({"topic", "partition", "offset"} <= set(d["origin"]) for d in dead)
    dead_raw = {base64.b64decode(d["original_b64"]) for d in dead}
    assert not any(m.raw in dead_raw for _s, m in lines if m.dead is None)
