"""Bad bytes that reach a source topic directly (bypassing the connector) are dead-lettered by
the worker with a reason and the original bytes; a record whose only fault is a bad optional
person field (or no name beside its ID number) is linked with its quality flag; the worker
keeps going."""

import base64
import json

from kafka import KafkaProducer
from streamkit import WorkerProcess, free_port, wait_for_count

from reglink.kafka_auth import kafka_python_kwargs

GOOD = {"source": "hotel", "record_id": "H-1", "event": "check_in", "hotel_id": "H",
        "city_code": "440305", "time": "2026-03-02T21:14:00+08:00",
        "person": {"name": "陈丽", "id_number": "340102198803150023"}}  # bad checksum: kept

BAD = {
    b"{not json": "malformed_json",
    json.dumps({"source": "hotel", "record_id": "H-2"}).encode(): "missing_field",
    json.dumps({**GOOD, "record_id": "H-3", "city_code": 440305}).encode(): "wrong_type",
    json.dumps({**GOOD, "record_id": "H-4", "time": "yesterday"}).encode(): "bad_date",
    json.dumps({**GOOD, "record_id": "H-5", "room": "x" * 1001}).encode(): "too_long",
    json.dumps({**GOOD, "record_id": "H-6", "person": {"name": " ", "id_number": "不详"}},
               ensure_ascii=False).encode(): "missing_field",
    "陈丽".encode("gbk"): "encoding",
    b"": "empty",
}

# record_id -> the person block and the quality flags of its linked message
KEPT = {
    "H-1": (GOOD["person"], ["bad_checksum"]),  # kept as evidence, flagged, not rejected
    "H-11": ({"name": "陈丽", "birth_date": "19450493"}, ["bad_birth_date"]),
    "H-12": ({"name": "陈丽", "sex": "X", "phone": "12"}, ["bad_sex", "bad_phone"]),
    "H-13": ({"name": "陈丽", "id_number": "不详", "birth_date": 19880315},
             ["bad_id_number", "bad_birth_date"]),
    "H-14": ({"id_number": "11010519491231002X"}, []),  # no name: linked on the ID
}


def test_worker_dead_letters_bad_records_and_keeps_linking(kafka_settings, redis_client,
                                                           tmp_path):
    s = kafka_settings.model_copy(update={"worker_metrics_port": free_port()})
    # as the hotel connector's principal: the only one (besides admin) that may write here
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all",
                             **kafka_python_kwargs(s, "connector-hotel"))
    topic = s.topic("hotel.raw")
    for raw in BAD:
        producer.send(topic, key=b"k", value=raw)
    for rid, (person, _flags) in KEPT.items():
        producer.send(topic, key=b"k", value=json.dumps(
            {**GOOD, "record_id": rid, "person": person}, ensure_ascii=False).encode())
    producer.flush()
    producer.close()

    worker = WorkerProcess(s, tmp_path).start()
    try:
        linked = wait_for_count(s, "linked", len(KEPT), timeout=120, worker=worker)
        dead = wait_for_count(s, "deadletter", len(BAD), timeout=30, worker=worker)
        assert worker.alive(), worker.tail()
    finally:
        worker.stop()

    assert [r["record_id"] for r in linked] == list(KEPT)  # one partition: in order
    assert {r["record_id"]: r["quality_flags"] for r in linked} == {
        rid: flags for rid, (_person, flags) in KEPT.items()}
    assert len(dead) == len(BAD)
    by_original = {base64.b64decode(d["original_b64"]): d for d in dead}
    for raw, code in BAD.items():
        d = by_original[raw]
        assert d["reason"].split(":")[0] == code, (raw, d["reason"])
        assert d["origin"]["topic"] == topic and isinstance(d["origin"]["offset"], int)
        assert d["source"] == "hotel"
    # The worker's log stays JSON lines once faust has started (faust's own set-up replaces
    # the root handler with its text format): the dead-letter warnings come after it.
    lines = [ln for ln in worker.log.read_text(encoding="utf-8").splitlines() if ln.strip()]
    logged = [json.loads(ln) for ln in lines]  # every line: a JSON object
    assert all({"t", "level", "logger", "msg"} <= set(e) for e in logged), lines
    dead_logged = [e for e in logged if e["msg"].startswith("dead-lettered record")]
    assert len(dead_logged) == len(BAD) and all(e["level"] == "warning" for e in dead_logged)
