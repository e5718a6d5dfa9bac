"""`reglink deadletter` without a broker: messages of the topic to entries, the filters, the
summary by reason, the export of the originals, and the justification asked first."""

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from reglink.core.contract import DeadLetter
from reglink.deadletter import entry_of, export, parse_since, run_deadletter, select, summary
from reglink.person import JustificationRequired

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def message(source, reason, origin, original: bytes) -> bytes:
    return json.dumps(DeadLetter(source, reason, original, origin).to_message()).encode()


def entries():
    rows = [
        ("hotel", "missing_field: time", {"file": "in/hotel.jsonl", "line": 3},
         b'{"source":"hotel","record_id":"h1"}'),
        ("hotel", "missing_field: time", {"file": "in/hotel.jsonl", "line": 7},
         b'{"source":"hotel","record_id":"h2"}'),
        ("rental", "malformed_csv: 3 columns, header has 5", {"file": "in/rent.CSV", "line": 2},
         b"r1,\xe5\xbc\xa0\xe4\xb8\x89,x"),
        ("job", "malformed_json", {"topic": "reglink.job.raw", "partition": 2, "offset": 41},
         b"{broken"),
        ("hotel", "empty", {"file": "in/hotel.jsonl", "line": 9}, b""),
    ]
    return [entry_of(message(*r), int((T0 + timedelta(minutes=10 * i)).timestamp() * 1000),
                     i % 2, 100 + i)
            for i, r in enumerate(rows)]


def test_entries_keep_reason_place_original_and_when():
    e = entries()
    assert [x.place for x in e] == ["in/hotel.jsonl:3", "in/hotel.jsonl:7", "in/rent.CSV:2",
                                    "reglink.job.raw[2]@41", "in/hotel.jsonl:9"]
    assert e[0].code == "missing_field" and e[0].reason == "missing_field: time"
    assert e[2].original == b"r1,\xe5\xbc\xa0\xe4\xb8\x89,x"
    assert e[3].at == T0 + timedelta(minutes=30) and (e[3].partition, e[3].offset) == (1, 103)
    as_json = e[2].to_json()
    assert as_json["original_text"] == "r1,张三,x" and as_json["place"] == "in/rent.CSV:2"


def test_worker_processing_errors_and_foreign_messages():
    worker = json.dumps({"source": "hotel", "reason": "processing_error: KeyError",
                         "origin": {"topic": "t", "partition": 0, "offset": 5},
                         "original_text": "{\"a\":1}"}).encode()
    e = entry_of(worker, 0, 0, 0)
    assert e is not None and e.original == b'{"a":1}' and e.code == "processing_error"
    assert entry_of(b"not json", 0, 0, 0) is None
    assert entry_of(b'{"no": "reason"}', 0, 0, 0) is None


def test_filters_by_since_source_and_reason():
    e = entries()
    assert [x.place for x in select(e, source="hotel", reason="missing_field")] == \
        ["in/hotel.jsonl:3", "in/hotel.jsonl:7"]
    assert len(select(e, reason="missing_field: time")) == 2
    assert select(e, reason="missing_field: name") == []
    assert [x.source for x in select(e, since=T0 + timedelta(minutes=20))] == \
        ["rental", "job", "hotel"]
    assert select(e, source="residence") == []
    shuffled = list(reversed(e))
    assert [x.offset for x in select(shuffled)] == [100, 101, 102, 103, 104]


def test_summary_by_reason_most_first_with_first_place():
    got = summary(entries())
    assert got[0] == {"reason": "missing_field: time", "code": "missing_field", "count": 2,
                      "sources": ["hotel"], "first": "in/hotel.jsonl:3"}
    assert [r["reason"] for r in got[1:]] == ["empty", "malformed_csv: 3 columns, header has 5",
                                              "malformed_json"]
    assert sum(r["count"] for r in got) == 5


def test_export_writes_originals_per_source_and_format(tmp_path):
    counts = export(entries(), tmp_path / "fix")
    assert counts == {"hotel.jsonl": 2, "job.jsonl": 1, "rental.csv": 1}  # `empty`: nothing
    assert (tmp_path / "fix" / "hotel.jsonl").read_bytes() == \
        b'{"source":"hotel","record_id":"h1"}\n{"source":"hotel","record_id":"h2"}\n'
    assert (tmp_path / "fix" / "rental.csv").read_bytes() == b"r1,\xe5\xbc\xa0\xe4\xb8\x89,x\n"
    export(entries()[:1], tmp_path / "fix")  # replaced, not appended
    assert (tmp_path / "fix" / "hotel.jsonl").read_bytes().count(b"\n") == 1


def test_since_accepts_durations_and_iso_times():
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("1.5d", now) == now - timedelta(hours=36)
    assert parse_since("2026-03-01", now) == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_since("2026-03-01T08:00+08:00", now) == datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
    with pytest.raises(Exception, match="give a duration"):
        parse_since("yesterday", now)


def test_a_justification_is_asked_before_kafka_is_touched(monkeypatch):
    from reglink import deadletter

    def no_kafka(*a, **k):
        raise AssertionError("Kafka touched before the justification was checked")

    monkeypatch.setattr(deadletter, "write_audit", no_kafka)
    monkeypatch.setattr(deadletter, "read_entries", no_kafka)
    with pytest.raises(JustificationRequired):
        run_deadletter(object(), "too short")  # type: ignore[arg-type]


def test_original_bytes_roundtrip_through_the_message():
    raw = bytes(range(256))
    e = entry_of(message("hotel", "not_utf8", {"file": "f", "line": 1}, raw), 0, 0, 0)
    assert e is not None and e.original == raw
    assert json.loads(message("hotel", "x", {}, raw))["original_b64"] == \
        base64.b64encode(raw).decode()
