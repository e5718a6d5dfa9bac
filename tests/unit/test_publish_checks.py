"""``reglink publish``'s input checks (made before anything is sent), the CSV row width, and the
summary's exit statuses and reports. No Kafka here."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from corekit import HOTEL, JOB

from connectors.checks import check_file, check_inputs, missing_columns, required_fields
from connectors.publish import (
    EXIT_DEADLETTERED,
    EXIT_FAILED,
    EXIT_NOTHING_USABLE,
    EXIT_OK,
    FileCounts,
    PublishSummary,
    ReasonCount,
)
from connectors.readers import csv_row_to_record, read_csv, read_files
from reglink.core.contract import SOURCES, schema_for

HOTEL_HEADER = "source,record_id,event,hotel_id,city_code,time,person.name,person.id_number"
HOTEL_ROW = ("hotel,H-1,check_in,H440305-017,440305,2026-03-02T21:14:00+08:00,陈丽,"
             "340102198803150022")


def enc(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


# --- the contract's required fields --------------------------------------------------------
def test_required_fields_are_the_schemas_without_source():
    for source in SOURCES:
        expected = [f for f in schema_for(source)["required"] if f != "source"]
        assert list(required_fields(source)) == expected
    assert {"time", "city_code"} <= set(required_fields("hotel"))
    assert "registered_at" in required_fields("rental")


def test_dotted_columns_provide_their_top_level_field():
    header = HOTEL_HEADER.split(",")
    assert missing_columns(header, "hotel") == []
    assert missing_columns([c for c in header if c != "time"], "hotel") == ["time"]
    assert missing_columns([c for c in header if not c.startswith("person.")], "hotel") == [
        "person"]


# --- files ---------------------------------------------------------------------------------
def test_missing_file_and_directory(tmp_path: Path):
    assert check_file(str(tmp_path / "nope.jsonl"), "hotel") == "no such file: check the path"
    problem = check_file(str(tmp_path), "hotel")
    assert problem is not None and problem.startswith("is a directory: pass the files in it")


def test_fifo_is_not_a_regular_file(tmp_path: Path):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    problem = check_file(str(fifo), "hotel")
    assert problem is not None and problem.startswith("is not a regular file")


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Permission denied on open (simulated: these tests run as root, who reads any file)."""
    import connectors.checks as checks

    path = write(tmp_path, "locked.jsonl", enc(HOTEL) + b"\n")

    def denied(name, *args, **kwargs):
        if str(name) == str(path):
            raise PermissionError(13, "Permission denied", str(name))
        return open(name, *args, **kwargs)

    monkeypatch.setattr(checks, "open", denied, raising=False)
    assert check_file(path, "hotel") == (
        "cannot be read (permission denied): check its permissions")


def test_empty_file_is_refused_unless_followed(tmp_path: Path):
    for name in ("empty.jsonl", "blank.jsonl"):
        path = write(tmp_path, name, b"" if name == "empty.jsonl" else b"\n  \n")
        assert check_file(path, "hotel") == (
            "has no records (it is empty or blank): nothing to publish")
        assert check_file(path, "hotel", follow=True) is None
    path = write(tmp_path, "empty.csv", b"")
    assert check_file(path, "hotel").startswith("is empty: a CSV file needs a header row")
    assert check_file(path, "hotel", follow=True) is None


def test_valid_inputs_pass(tmp_path: Path):
    jsonl = write(tmp_path, "h.jsonl", b"\n" + enc(HOTEL) + b"\n")  # a blank line first
    no_source = write(tmp_path, "h2.jsonl", enc({k: v for k, v in HOTEL.items()
                                                 if k != "source"}) + b"\n")
    bad_record = write(tmp_path, "h3.jsonl", enc({**HOTEL, "time": "yesterday"}) + b"\n")
    csv_path = write(tmp_path, "h.csv", f"{HOTEL_HEADER}\n{HOTEL_ROW}\n".encode())
    bom_csv = write(tmp_path, "bom.csv", b"\xef\xbb\xbf" + f"{HOTEL_HEADER}\r\n".encode())
    checked = check_inputs([jsonl, no_source, bad_record, csv_path, bom_csv], "hotel")
    assert checked.problems == [] and checked.stdin is None


# --- CSV headers ---------------------------------------------------------------------------
def test_csv_header_without_the_time_column(tmp_path: Path):
    header = HOTEL_HEADER.replace(",time", "")
    path = write(tmp_path, "h.csv", f"{header}\n".encode())
    assert check_file(path, "hotel") == (
        "the header lacks the column time that every hotel record needs: add it to the first row")


def test_csv_header_of_another_source_names_it(tmp_path: Path):
    path = write(tmp_path, "job.csv",
                 b"record_id,employer_name,city_code,start_date,posted_at,person.name\n")
    problem = check_file(path, "rental")
    assert problem is not None
    assert problem.startswith("the header lacks the columns property_id, address, lease_start, "
                              "registered_at that every rental record needs")
    assert problem.endswith("; the header fits --source job")


def test_csv_header_not_utf8_or_not_csv(tmp_path: Path):
    gbk = write(tmp_path, "gbk.csv", "记录,姓名\n".encode("gbk"))
    assert "not UTF-8" in check_file(gbk, "hotel")
    jsonl_named_csv = write(tmp_path, "x.csv", enc(HOTEL) + b"\n")
    assert check_file(jsonl_named_csv, "hotel").endswith(
        "the file looks like JSON Lines: pass --format jsonl")
    assert check_file(jsonl_named_csv, "hotel", fmt="jsonl") is None
    binary = write(tmp_path, "bin.csv", b"\x00\x01\x02\xff\n")
    assert check_file(binary, "hotel").startswith("the first row is binary data")


# --- JSON Lines heads ----------------------------------------------------------------------
def test_jsonl_of_another_source(tmp_path: Path):
    path = write(tmp_path, "h.jsonl", enc(HOTEL) + b"\n")
    assert check_file(path, "rental") == "line 1 is a hotel record, not rental: use --source hotel"
    odd = write(tmp_path, "odd.jsonl", enc({**HOTEL, "source": 7}) + b"\n")
    assert check_file(odd, "hotel").startswith('line 1 has a "source" that is not "hotel"')


def test_jsonl_without_source_that_is_another_sources_record(tmp_path: Path):
    path = write(tmp_path, "job.jsonl", b"\n" + enc(JOB) + b"\n")
    assert check_file(path, "hotel") == (
        'line 2 has no "source" and is a valid job record, not a hotel one: use --source job')
    assert check_file(path, "job") is None
    assert check_file(path, "person") is None  # a job record is also a valid person record


def test_jsonl_binary_encoding_and_csv(tmp_path: Path):
    binary = write(tmp_path, "b.jsonl", bytes(range(256)) * 4)
    assert check_file(binary, "hotel").startswith("line 1 is binary data, not JSON Lines")
    gbk = write(tmp_path, "g.jsonl", '{"姓名": "陈丽"}\n'.encode("gbk"))
    assert check_file(gbk, "hotel").startswith("line 1 is not UTF-8 text: convert the file")
    csv_named_jsonl = write(tmp_path, "c.jsonl", f"{HOTEL_HEADER}\n".encode())
    assert check_file(csv_named_jsonl, "hotel") == (
        "line 1 is not JSON: JSON Lines needs one JSON object per line; if the file is CSV, "
        "name it .csv or pass --format csv")
    array = write(tmp_path, "a.jsonl", b"[1, 2]\n")
    assert check_file(array, "hotel").startswith("line 1 is not a JSON object")


# --- several inputs, stdin -----------------------------------------------------------------
def test_every_problem_is_one_line_naming_its_file(tmp_path: Path):
    good = write(tmp_path, "good.jsonl", enc(HOTEL) + b"\n")
    missing = str(tmp_path / "missing.jsonl")
    no_time = write(tmp_path, "no-time.csv", HOTEL_HEADER.replace(",time", "").encode() + b"\n")
    checked = check_inputs([good, missing, str(tmp_path), no_time, good], "hotel")
    assert [p.file for p in checked.problems] == [missing, str(tmp_path), no_time, good]
    assert checked.problems[-1].message == "is given twice: pass each input once"
    for problem in checked.problems:
        assert "\n" not in problem.line() and problem.line().startswith(problem.file + ": ")


def test_stdin_head_is_checked_then_published_whole():
    data = b"\n" + enc(HOTEL) + b"\n" + b"{oops\n"
    checked = check_inputs(["-"], "hotel", stdin=io.BytesIO(data))
    assert checked.problems == []
    items = list(read_files(["-"], stdin=checked.stdin))
    assert [(item.origin["line"], item.data) for item in items] == [
        (1, b""), (2, enc(HOTEL)), (3, b"{oops")]


def test_stdin_refused():
    checked = check_inputs(["-"], "rental", stdin=io.BytesIO(enc(HOTEL) + b"\n"))
    assert [p.line() for p in checked.problems] == [
        "<stdin>: line 1 is a hotel record, not rental: use --source hotel"]
    empty = check_inputs(["-"], "hotel", stdin=io.BytesIO(b""))
    assert [p.file for p in empty.problems] == ["<stdin>"]


# --- CSV rows that do not fit their header -------------------------------------------------
def test_short_and_long_csv_rows_are_rejected_with_their_own_reasons(tmp_path: Path):
    header = ["record_id", "person.name", "city_code"]
    assert csv_row_to_record(header, ["R-1", "陈丽"]) == (
        None, "malformed_csv: fewer fields than header columns")
    assert csv_row_to_record(header, ["R-1", "陈丽", "440305", "x"]) == (
        None, "malformed_csv: more fields than header columns")
    assert csv_row_to_record(header, ["R-1", "", ""]) == ({"record_id": "R-1"}, None)
    path = write(tmp_path, "h.csv", f"{HOTEL_HEADER}\n{HOTEL_ROW}\n{HOTEL_ROW.rsplit(',', 2)[0]}\n"
                 f"{HOTEL_ROW},extra\n".encode())
    assert [(item.origin["line"], item.error) for item in read_csv(path)] == [
        (2, None), (3, "malformed_csv: fewer fields than header columns"),
        (4, "malformed_csv: more fields than header columns")]


# --- the summary -----------------------------------------------------------------------------
def summary(read: int, published: int, dead: int, failed: int = 0, **kw) -> PublishSummary:
    files = {"a.jsonl": FileCounts(read, published, dead, failed)}
    return PublishSummary(read=read, published=published, deadlettered=dead, failed=failed,
                          files=files, **kw)


def test_exit_statuses():
    assert summary(3, 3, 0).exit_status() == EXIT_OK == 0
    assert summary(3, 1, 2).exit_status() == EXIT_DEADLETTERED == 3
    assert summary(3, 0, 3).exit_status() == EXIT_NOTHING_USABLE == 4
    assert summary(0, 0, 0).exit_status() == EXIT_NOTHING_USABLE
    assert summary(3, 1, 1, 1).exit_status() == EXIT_FAILED == 1
    assert summary(3, 3, 0, read_error="b.jsonl: Input/output error").exit_status() == EXIT_FAILED
    assert PublishSummary(refused=["x"]).exit_status() == EXIT_NOTHING_USABLE


def test_summary_text_and_json_give_reasons_with_first_places():
    s = summary(6, 2, 4, deadletter_topic="t.deadletter", by_reason={
        "malformed_json": ReasonCount(1, {"file": "a.jsonl", "line": 2}),
        "missing_field: time": ReasonCount(3, {"file": "a.jsonl", "line": 4}),
        "encoding": ReasonCount(0, {"file": "a.jsonl", "line": 5}),  # its send failed
    })
    s.files["b.jsonl"] = FileCounts(2, 0, 2)
    assert s.text() == [
        "read 6, published 2, dead-lettered 4",
        "dead-letter reasons (on topic t.deadletter):",
        "  3  missing_field: time  first at a.jsonl:4",
        "  1  malformed_json  first at a.jsonl:2",
        "per input:",
        "  a.jsonl: read 6, published 2, dead-lettered 4",
        "  b.jsonl: read 2, published 0, dead-lettered 2",
    ]
    assert s.warnings() == ["warning: every record of b.jsonl was dead-lettered (2 of 2): check "
                            "--source and --format, and the dead-letter reasons"]
    obj = json.loads(json.dumps(s.to_dict()))
    assert obj["reasons"] == [
        {"reason": "missing_field: time", "code": "missing_field", "count": 3,
         "first": {"file": "a.jsonl", "line": 4}},
        {"reason": "malformed_json", "code": "malformed_json", "count": 1,
         "first": {"file": "a.jsonl", "line": 2}}]
    assert [f["all_deadlettered"] for f in obj["files"]] == [False, True]
    assert obj["exit_status"] == EXIT_DEADLETTERED and obj["refused"] == []
