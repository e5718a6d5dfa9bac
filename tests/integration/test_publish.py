"""``reglink publish`` against the REAL local Kafka (``reglink stack up``); no mocks.

Each test has its own topic prefix and topics (``kafka_settings`` in tests/conftest.py).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from corekit import HOTEL, JOB
from prometheus_client import CollectorRegistry

from connectors.publish import run_publish
from reglink.core.errors import ServiceUnavailable
from reglink.core.settings import Settings, load_settings

pytestmark = pytest.mark.integration

REGLINK = str(Path(sys.executable).with_name("reglink"))



def enc(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def hotel(**changes) -> dict:
    obj = json.loads(json.dumps(HOTEL))
    for key, value in changes.items():
        if key == "person_name":
            obj["person"]["name"] = value
        elif value is None:
            obj.pop(key, None)
        else:
            obj[key] = value
    return obj


def consume(settings: Settings, topic: str, expected: int, timeout_s: float = 30.0) -> list:
    """Every message of ``settings.topic(topic)`` from the start, waiting for ``expected``."""
    from kafka import KafkaConsumer
    from streamkit import reader_role

    from reglink.kafka_auth import kafka_python_kwargs

    consumer = KafkaConsumer(
        settings.topic(topic), bootstrap_servers=settings.kafka_bootstrap, group_id=None,
        auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=1000,
        **kafka_python_kwargs(settings, reader_role(topic)))
    out: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            out.extend(consumer)  # stops after 1 s without messages
            if len(out) >= expected:
                time.sleep(0.5)  # nothing extra may follow
                out.extend(consumer)
                break
    finally:
        consumer.close()
    return out


def dead_letters(settings: Settings, expected: int) -> dict[int, dict]:
    msgs = consume(settings, "deadletter", expected)
    assert len(msgs) == expected
    return {json.loads(m.value)["origin"]["line"]: {**json.loads(m.value), "_key": m.key}
            for m in msgs}


# --- JSON Lines: every bad kind ---------------------------------------------------------------
def test_mixed_jsonl_file(kafka_settings: Settings, tmp_path: Path):
    lines = [
        enc(hotel()),                                             # 1 valid
        b'{"record_id": "H-2", "event": ',                        # 2 malformed JSON
        enc(hotel(record_id="H-3", time=None)),                   # 3 missing required field
        enc(hotel(record_id=4)),                                  # 4 wrong type
        enc(hotel(record_id="H-5", time="2026-03-02 21:14")),     # 5 unparseable time
        enc(hotel(record_id="H-6", person_name="陈" * 1001)),     # 6 string over 1,000 chars
        '{"record_id": "H-7", "person": {"name": "陈丽"}}'.encode("gbk"),  # 7 wrong encoding
        b"",                                                      # 8 empty line
        enc(hotel(record_id="H-9", person={"name": "陈丽", "id_number": "340102198803150023"})),
        enc(hotel(record_id="H-10", source=None)),                # 10 valid, source implied
        enc(hotel(record_id="H-11", source="rental")),            # 11 source mismatch
    ]
    path = tmp_path / "hotel.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    registry = CollectorRegistry()

    summary = run_publish(kafka_settings, "hotel", [str(path)], registry=registry)

    assert (summary.read, summary.published, summary.deadlettered, summary.failed) == (11, 3, 8, 0)
    assert summary.reconciles()
    assert summary.line() == "read 11, published 3, dead-lettered 8"

    valid = consume(kafka_settings, "hotel.raw", 3)
    assert [m.key for m in valid] == [b"hotel:H-1", b"hotel:H-9", b"hotel:H-10"]
    records = [json.loads(m.value) for m in valid]
    assert records[0] == HOTEL
    assert records[1]["person"]["id_number"] == "340102198803150023"  # bad checksum kept
    assert records[2]["source"] == "hotel"

    dead = dead_letters(kafka_settings, 8)
    assert {n: d["reason"] for n, d in dead.items()} == {
        2: "malformed_json", 3: "missing_field: time", 4: "wrong_type: record_id",
        5: "bad_date: time", 6: "too_long: person.name", 7: "encoding", 8: "empty",
        11: "source_mismatch: source"}
    for n, d in dead.items():
        assert d["_key"] == b"hotel"
        assert d["source"] == "hotel"
        assert d["origin"] == {"file": str(path), "line": n}
        assert base64.b64decode(d["original_b64"]) == lines[n - 1]
        assert d["schema_version"] == "v1"

    sample = registry.get_sample_value
    assert sample("reglink_records_in_total", {"source": "hotel"}) == 11
    assert sample("reglink_published_total", {"source": "hotel"}) == 3
    assert sample("reglink_deadletter_total", {"source": "hotel", "reason": "encoding"}) == 1
    assert sample("reglink_deadletter_total", {"source": "hotel", "reason": "bad_date"}) == 1
    labels = {s.labels.get("reason") for m in registry.collect() for s in m.samples
              if m.name == "reglink_deadletter"}
    assert labels <= {"malformed_json", "missing_field", "wrong_type", "bad_date", "too_long",
                      "encoding", "empty", "source_mismatch"}  # codes only, no field paths


# --- CSV -----------------------------------------------------------------------------------------
def test_csv_file(kafka_settings: Settings, tmp_path: Path):
    header = b"record_id,employer_name,city_code,start_date,posted_at,person.name,person.aliases"
    rows = [
        "J-1,华胜电子,440305,2026-03-06,2026-03-06T09:00:00+08:00,陈丽,陈莉|CHEN Li".encode(),
        "J-2,华胜电子,440305,2026-03-32,2026-03-06T09:00:00+08:00,陈丽,".encode(),
        "J-3,华胜电子,440305,2026-03-06,2026-03-06T09:00:00+08:00,陈丽,".encode("gbk"),
        "J-4,华胜电子,440305,2026-03-06,2026-03-06T09:00:00+08:00,,".encode(),
        "J-5,华胜电子,440305,2026-03-06,2026-03-06T09:00:00+08:00,陈丽".encode(),  # short
        "J-6,华胜电子,440305,2026-03-06,2026-03-06T09:00:00+08:00,陈丽,,x".encode(),  # long
    ]
    path = tmp_path / "job.csv"
    path.write_bytes(b"\r\n".join([header, *rows]) + b"\r\n")

    summary = run_publish(kafka_settings, "job", [str(path)], registry=CollectorRegistry())

    assert summary.line() == "read 6, published 1, dead-lettered 5" and summary.reconciles()
    [msg] = consume(kafka_settings, "job.raw", 1)
    assert msg.key == b"job:J-1"
    assert json.loads(msg.value) == {
        "record_id": "J-1", "employer_name": "华胜电子", "city_code": "440305",
        "start_date": "2026-03-06", "posted_at": "2026-03-06T09:00:00+08:00",
        "person": {"name": "陈丽", "aliases": ["陈莉", "CHEN Li"]}, "source": "job"}
    dead = dead_letters(kafka_settings, 5)
    assert {n: d["reason"] for n, d in dead.items()} == {
        3: "bad_date: start_date", 4: "encoding", 5: "missing_field: person",  # no person.* cell
        6: "malformed_csv: fewer fields than header columns",
        7: "malformed_csv: more fields than header columns"}
    for n, d in dead.items():  # the dead letter keeps the CSV line, not the JSON made from it
        assert base64.b64decode(d["original_b64"]) == rows[n - 2]


# --- stdin and the CLI ---------------------------------------------------------------------------
def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGLINK_")}
    env.update(REGLINK_TOPIC_PREFIX=settings.topic_prefix,
               REGLINK_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
               # where the stack's credentials are (scram): not always ./.reglink
               REGLINK_STATE_DIR=str(settings.state_dir),
               REGLINK_KAFKA_SECURITY=settings.kafka_security, **extra)
    return env


def test_stdin_through_the_cli(kafka_settings: Settings):
    data = b"\n".join([enc(JOB), b"not json", enc({**JOB, "record_id": "J-2"})]) + b"\n"
    proc = subprocess.run([REGLINK, "publish", "--source", "job", "-"], input=data,
                          capture_output=True, env=_env(kafka_settings), timeout=60)
    assert proc.returncode == 3, proc.stderr.decode()  # some dead-lettered
    assert proc.stdout.decode().splitlines() == [
        "read 3, published 2, dead-lettered 1",
        f"dead-letter reasons (on topic {kafka_settings.topic('deadletter')}):",
        "  1  malformed_json  first at <stdin>:2"]
    assert [m.key for m in consume(kafka_settings, "job.raw", 2)] == [b"job:J-1", b"job:J-2"]
    dead = dead_letters(kafka_settings, 1)
    assert dead[2]["origin"] == {"file": "<stdin>", "line": 2}
    assert base64.b64decode(dead[2]["original_b64"]) == b"not json"


def test_follow_until_sigterm(kafka_settings: Settings, tmp_path: Path):
    path = tmp_path / "grow.jsonl"
    path.write_bytes(enc(JOB) + b"\n")
    proc = subprocess.Popen([REGLINK, "publish", "--source", "job", "--follow", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(kafka_settings))
    try:
        consume(kafka_settings, "job.raw", 1)
        with open(path, "ab") as fh:
            fh.write(enc({**JOB, "record_id": "J-2"}) + b"\n{oops\n")
        got = consume(kafka_settings, "job.raw", 2)
        assert [m.key for m in got] == [b"job:J-1", b"job:J-2"]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err.decode()
    assert out.decode().splitlines()[0] == "read 3, published 2, dead-lettered 1"
    assert dead_letters(kafka_settings, 1)[3]["reason"] == "malformed_json"


def test_follow_in_process_stops_on_event(kafka_settings: Settings, tmp_path: Path):
    path = tmp_path / "grow.jsonl"
    path.write_bytes(b"")
    stop = threading.Event()
    result: list = []
    t = threading.Thread(target=lambda: result.append(run_publish(
        kafka_settings, "job", [str(path)], follow=True, stop=stop, poll_s=0.05,
        registry=CollectorRegistry())))
    t.start()
    with open(path, "ab") as fh:
        for i in range(50):
            fh.write(enc({**JOB, "record_id": f"J-{i}"}) + b"\n")
    assert len(consume(kafka_settings, "job.raw", 50)) == 50
    stop.set()
    t.join(30)
    assert result and result[0].line() == "read 50, published 50, dead-lettered 0"


def test_unreachable_kafka_is_one_clear_error(tmp_path: Path):
    settings = load_settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="nowhere.")
    path = tmp_path / "x.jsonl"
    path.write_bytes(enc(JOB) + b"\n")
    with pytest.raises(ServiceUnavailable, match=r"Kafka not reachable at 127.0.0.1:1: run "):
        run_publish(settings, "job", [str(path)], registry=CollectorRegistry())
    proc = subprocess.run([REGLINK, "publish", "--source", "job", str(path)],
                          capture_output=True, timeout=60,
                          env={**_env(settings), "REGLINK_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert proc.returncode == 2
    assert "Kafka not reachable at 127.0.0.1:1: run `reglink stack up`" in proc.stderr.decode()


# --- honest about what it did: checks before sending, reasons, exit statuses, --json ----------
def publish_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([REGLINK, "publish", *args], capture_output=True,
                          env=_env(settings), timeout=120)


def nothing_on(settings: Settings, *topics: str) -> None:
    for topic in topics:
        assert consume(settings, topic, 0, timeout_s=3) == [], topic


def test_a_missing_file_among_several_sends_nothing(kafka_settings: Settings, tmp_path: Path):
    good = tmp_path / "a.jsonl"
    good.write_bytes(enc(hotel()) + b"\n" + enc(hotel(record_id="H-2")) + b"\n")
    missing = tmp_path / "missing.jsonl"

    proc = publish_cli(kafka_settings, "--source", "hotel", str(good), str(missing))

    assert proc.returncode == 4
    assert proc.stderr.decode().splitlines() == [
        f"reglink publish: {missing}: no such file: check the path"]
    assert proc.stdout.decode().splitlines() == [
        "nothing published: 1 input refused before sending (reasons on stderr)"]
    nothing_on(kafka_settings, "hotel.raw", "deadletter")
    # fixed, the rerun sends each record once
    missing.write_bytes(enc(hotel(record_id="H-3")) + b"\n")
    proc = publish_cli(kafka_settings, "--source", "hotel", str(good), str(missing))
    assert proc.returncode == 0, proc.stderr.decode()
    assert [m.key for m in consume(kafka_settings, "hotel.raw", 3)] == [
        b"hotel:H-1", b"hotel:H-2", b"hotel:H-3"]


def test_wrong_inputs_are_refused_one_line_each(kafka_settings: Settings, tmp_path: Path):
    no_time = tmp_path / "hotel.csv"
    no_time.write_text("record_id,event,hotel_id,city_code,person.name\n"
                       "H-1,check_in,H1,440305,陈丽\n", encoding="utf-8")
    hotel_file = tmp_path / "hotel.jsonl"
    hotel_file.write_bytes(enc(hotel()) + b"\n")
    binary = tmp_path / "blob.jsonl"
    binary.write_bytes(bytes(range(256)) * 8)

    proc = publish_cli(kafka_settings, "--source", "hotel", str(no_time), str(tmp_path),
                       str(binary))
    assert proc.returncode == 4
    err = proc.stderr.decode().splitlines()
    assert err == [
        f"reglink publish: {no_time}: the header lacks the column time that every hotel record "
        "needs: add it to the first row",
        f"reglink publish: {tmp_path}: is a directory: pass the files in it "
        "(for example DIR/*.jsonl)",
        f"reglink publish: {binary}: line 1 is binary data, not JSON Lines: pass a JSON Lines "
        "(.jsonl) or CSV (.csv) file"]
    proc = publish_cli(kafka_settings, "--source", "rental", str(hotel_file))
    assert proc.returncode == 4
    assert proc.stderr.decode().strip() == (
        f"reglink publish: {hotel_file}: line 1 is a hotel record, not rental: use --source hotel")
    nothing_on(kafka_settings, "hotel.raw", "rental.raw", "deadletter")


def test_summary_gives_reasons_first_places_and_the_all_dead_warning(
        kafka_settings: Settings, tmp_path: Path):
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(b"\n".join([
        enc(hotel()),
        enc(hotel(record_id="H-2", time=None)),                # missing_field: time
        b"{oops",                                              # malformed_json
        enc(hotel(record_id="H-4", time=None)),                # missing_field: time
    ]) + b"\n")
    all_bad = tmp_path / "all-bad.jsonl"  # its head passes the check, every record is bad
    all_bad.write_bytes(b"\n".join([
        enc(hotel(record_id="H-5", time="2026-03-02 21:14")),  # bad_date: time
        enc(hotel(record_id="H-6", time=None)),                # missing_field: time
    ]) + b"\n")

    proc = publish_cli(kafka_settings, "--source", "hotel", str(mixed), str(all_bad))

    assert proc.returncode == 3, proc.stderr.decode()
    assert proc.stdout.decode().splitlines() == [
        "read 6, published 1, dead-lettered 5",
        f"dead-letter reasons (on topic {kafka_settings.topic('deadletter')}):",
        f"  3  missing_field: time  first at {mixed}:2",
        f"  1  malformed_json  first at {mixed}:3",
        f"  1  bad_date: time  first at {all_bad}:1",
        "per input:",
        f"  {mixed}: read 4, published 1, dead-lettered 3",
        f"  {all_bad}: read 2, published 0, dead-lettered 2",
    ]
    assert proc.stderr.decode().splitlines() == [
        f"reglink publish: warning: every record of {all_bad} was dead-lettered (2 of 2): "
        "check --source and --format, and the dead-letter reasons"]
    assert [m.key for m in consume(kafka_settings, "hotel.raw", 1)] == [b"hotel:H-1"]
    assert len(consume(kafka_settings, "deadletter", 5)) == 5  # lines repeat across files

    # the bad file alone: nothing usable
    proc = publish_cli(kafka_settings, "--source", "hotel", str(all_bad))
    assert proc.returncode == 4
    assert "every record of" in proc.stderr.decode()


def test_json_summary(kafka_settings: Settings, tmp_path: Path):
    path = tmp_path / "job.csv"
    path.write_bytes(
        b"record_id,employer_name,city_code,start_date,posted_at,person.name\n"
        + "J-1,华胜电子,440305,2026-03-06,2026-03-06T09:00:00+08:00,陈丽\n".encode()
        + "J-2,华胜电子,440305,2026-03-06,2026-03-06T09:00:00+08:00\n".encode()   # short
        + "J-3,华胜电子,440305,2026-03-06,2026-03-06T09:00:00+08:00,陈丽,x\n".encode())  # long

    proc = publish_cli(kafka_settings, "--source", "job", "--json", str(path))

    assert proc.returncode == 3, proc.stderr.decode()
    assert json.loads(proc.stdout) == {
        "read": 3, "published": 1, "deadlettered": 2, "failed": 0,
        "reasons": [
            {"reason": "malformed_csv: fewer fields than header columns",
             "code": "malformed_csv", "count": 1, "first": {"file": str(path), "line": 3}},
            {"reason": "malformed_csv: more fields than header columns",
             "code": "malformed_csv", "count": 1, "first": {"file": str(path), "line": 4}}],
        "files": [{"file": str(path), "read": 3, "published": 1, "deadlettered": 2,
                   "failed": 0, "all_deadlettered": False}],
        "warnings": [], "read_error": None, "refused": [],
        "deadletter_topic": kafka_settings.topic("deadletter"), "exit_status": 3}
    assert [m.key for m in consume(kafka_settings, "job.raw", 1)] == [b"job:J-1"]

    refused = publish_cli(kafka_settings, "--source", "job", "--json", str(tmp_path / "no.csv"))
    assert refused.returncode == 4
    obj = json.loads(refused.stdout)
    assert obj["refused"] == [{"file": str(tmp_path / "no.csv"),
                               "problem": "no such file: check the path"}]
    assert (obj["read"], obj["exit_status"]) == (0, 4)


def test_an_input_failing_mid_way_stops_reading_and_counts_what_was_sent(
        kafka_settings: Settings, tmp_path: Path):
    good = tmp_path / "a.jsonl"
    good.write_bytes(enc(hotel()) + b"\n")
    # run_publish does not check its inputs (the command does): a directory fails on opening
    summary = run_publish(kafka_settings, "hotel", [str(good), str(tmp_path)],
                          registry=CollectorRegistry())
    assert summary.read_error == f"{tmp_path}: Is a directory"
    assert (summary.read, summary.published, summary.failed) == (1, 1, 0)
    assert summary.exit_status() == 1
    assert [m.key for m in consume(kafka_settings, "hotel.raw", 1)] == [b"hotel:H-1"]
