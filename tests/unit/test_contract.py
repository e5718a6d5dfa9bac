"""The input contract (docs/contract.md §1): every bad-input kind, the examples, CSV, and
properties (Hypothesis) of ``parse_record``. Pure: no Kafka."""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from corekit import EXAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.readers import csv_row_to_record, iter_records, read_csv, read_files
from matchers.features import ID_FORM, QUALITY_FLAGS
from reglink.core.contract import (
    REASON_CODES,
    SCHEMA_BASE,
    SOURCES,
    DeadLetter,
    _validators,
    encode_record,
    load_schemas,
    parse_record,
    reason_code,
    record_key,
    report_time,
    schema_for,
    validate_record,
)

ORIGIN = {"file": "test.jsonl", "line": 1}

HOTEL = {
    "source": "hotel", "record_id": "H-1", "event": "check_in", "hotel_id": "H440305-017",
    "city_code": "440305", "time": "2026-03-02T21:14:00+08:00",
    "person": {"name": "陈丽", "id_number": "340102198803150022", "sex": "女"},
}
RENTAL = {
    "source": "rental", "record_id": "R-1", "property_id": "F1", "city_code": "440305",
    "address": "深圳市南山区桃园路88号", "lease_start": "2026-03-04", "lease_end": "2026-09-03",
    "registered_at": "2026-03-05T10:02:00+08:00", "person": {"name": "陈莉"},
}


def enc(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def reason_of(raw: bytes, source: str = "hotel") -> str | None:
    record, dead = parse_record(raw, source, ORIGIN)
    assert (record is None) != (dead is None)
    return None if dead is None else dead.reason


def with_(base: dict, path: str, value) -> dict:
    obj = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = obj
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return obj


_DELETE = object()


def example_lines() -> list[bytes]:
    return [line for line in EXAMPLES.read_bytes().splitlines() if line.strip()]


# --- the examples and the happy path -------------------------------------------------------
def test_every_example_record_is_valid():
    lines = example_lines()
    assert len(lines) >= 8
    for n, line in enumerate(lines, 1):
        source = json.loads(line)["source"]
        record, dead = parse_record(line, source, {"file": str(EXAMPLES), "line": n})
        assert dead is None, dead
        assert record["source"] == source


def test_report_time_is_aware_and_per_source():
    by_source = {}
    for line in example_lines():
        rec = json.loads(line)
        by_source.setdefault(rec["source"], rec)
    hotel = report_time(by_source["hotel"])
    assert hotel is not None and hotel.utcoffset() == timedelta(hours=8)
    assert report_time(by_source["rental"]).isoformat() == "2026-03-05T10:02:00+08:00"
    assert report_time(by_source["job"]).isoformat() == "2026-03-06T09:00:00+08:00"
    assert report_time(by_source["residence"]).isoformat() == "2026-03-12T15:20:00+08:00"
    assert report_time(by_source["watchlist"]) is None
    assert report_time(by_source["person"]) is None


def test_record_key_is_stable():
    assert record_key(HOTEL) == "hotel:H-1"
    assert record_key({"source": "watchlist", "watch_id": "W-0001"}) == "watchlist:W-0001"


def test_missing_source_is_set_from_the_topic_or_file():
    obj = with_(HOTEL, "source", _DELETE)
    record, dead = parse_record(enc(obj), "hotel", ORIGIN)
    assert dead is None and record["source"] == "hotel"


def test_unknown_extra_fields_are_carried_through():
    obj = with_(HOTEL, "vendor_extra", {"a": [1, "x", None], "b": True})
    record, dead = parse_record(enc(obj), "hotel", ORIGIN)
    assert dead is None and record["vendor_extra"] == {"a": [1, "x", None], "b": True}


def test_id_number_failing_its_checksum_is_not_rejected():
    for bad in ("340102198803150023", "340102 19880315 002x", "11010579040203", "ABC-123"):
        assert reason_of(enc(with_(HOTEL, "person.id_number", bad))) is None


@pytest.mark.parametrize("birth", ["1988-03-15", "19880315"])
def test_birth_date_both_forms(birth):
    assert reason_of(enc(with_(HOTEL, "person.birth_date", birth))) is None


@pytest.mark.parametrize("time_value", [
    "2026-03-02T21:14:00Z", "2026-03-02T21:14:00.123+08:00", "2026-03-02T21:14+08:00",
    "2026-03-02T13:14:00-05:30",
])
def test_time_forms_with_offset_are_accepted(time_value):
    assert reason_of(enc(with_(HOTEL, "time", time_value))) is None


def test_watchlist_remove_needs_only_watch_id_and_add_needs_a_person():
    assert reason_of(enc({"watch_id": "W-9", "action": "remove"}), "watchlist") is None
    add = {"watch_id": "W-9", "action": "add", "priority": "low",
           "person": {"id_number": "110105197904020317"}}
    assert reason_of(enc(add), "watchlist") is None  # partial person is fine
    assert reason_of(enc(with_(add, "person", {"sex": "M"})), "watchlist") == (
        "missing_field: person.name")
    assert reason_of(enc(with_(add, "priority", _DELETE)), "watchlist") == (
        "missing_field: priority")
    assert reason_of(enc(with_(add, "priority", "urgent")), "watchlist") == "bad_value: priority"


# --- each bad-input kind of docs/contract.md §1 ---------------------------------------------
@pytest.mark.parametrize("raw, expected", [
    (b'{"record_id": "H-1", "event": ', "malformed_json"),
    (b"{'record_id': 'H-1'}", "malformed_json"),
    (b'{"a": NaN}', "malformed_json"),
    (b"", "empty"),
    (b"   \t ", "empty"),
    (b"[1, 2]", "wrong_type"),
    (b'"a string"', "wrong_type"),
    (b"null", "wrong_type"),
    (b"\xff\xfe{", "encoding"),
    ('{"record_id": "陈丽"}'.encode("gbk"), "encoding"),
    (b'{"record_id": "\\ud800"}', "encoding"),  # lone surrogate escape
    (b"[" * 100_000, "too_deep"),
])
def test_unusable_bytes(raw, expected):
    assert reason_of(raw) == expected


@pytest.mark.parametrize("path, value, expected", [
    ("record_id", _DELETE, "missing_field: record_id"),
    ("record_id", "", "missing_field: record_id"),
    ("person", _DELETE, "missing_field: person"),
    ("time", _DELETE, "missing_field: time"),
    ("record_id", 17, "wrong_type: record_id"),
    ("person", "陈丽", "wrong_type: person"),
    ("person.name", ["陈丽"], "wrong_type: person.name"),
    ("person.name", None, "wrong_type: person.name"),
    ("city_code", 440305, "wrong_type: city_code"),
    ("event", "arrive", "bad_value: event"),
    ("city_code", "44030", "bad_value: city_code"),
    ("time", "2026-03-02T21:14:00", "bad_date: time"),  # no offset
    ("time", "2026-03-02 21:14:00+08:00", "bad_date: time"),
    ("time", "2026-02-30T21:14:00+08:00", "bad_date: time"),
    ("time", "yesterday", "bad_date: time"),
    ("person.name", "陈" * 1001, "too_long: person.name"),
    ("person.birth_date", "1" * 1001, "too_long: person.birth_date"),
    ("person.phone", ["1" * 1001], "too_long: person.phone.0"),
    ("hotel_name", "x" * 1001, "too_long: hotel_name"),
    ("vendor_note", {"deep": ["ok", "y" * 1001]}, "too_long: vendor_note.deep.1"),
    ("source", "rental", "source_mismatch: source"),
])
def test_field_violations_hotel(path, value, expected):
    assert reason_of(enc(with_(HOTEL, path, value))) == expected


# --- the person block: a name or an ID number; bad optional fields are flagged ---------------
@pytest.mark.parametrize("person", [
    {},
    {"sex": "F", "birth_date": "1988-03-15", "phone": "13955501234"},
    {"name": ""},
    {"name": " \u3000\t"},
    {"name": "", "id_number": ""},
    {"id_number": "不详"},
    {"id_number": "N/A"},
    {"id_number": "---"},
    {"id_number": 340102198803150022},
    {"name": "", "id_number": None},
])
def test_a_record_with_neither_a_name_nor_a_usable_id_number_is_dead_lettered(person):
    assert reason_of(enc(with_(HOTEL, "person", person))) == "missing_field: person.name"


@pytest.mark.parametrize("person", [
    {"id_number": "340102198803150022"},
    {"name": "", "id_number": "340102 19880315 002x"},
    {"name": "  ", "id_number": "E12345678", "id_type": "passport"},
    {"id_number": "A123456(7)"},
    {"id_number": "３４０１０２１９８８０３１５００２２"},
])
def test_a_record_with_an_id_number_and_no_name_is_kept(person):
    record, dead = parse_record(enc(with_(HOTEL, "person", person)), "hotel", ORIGIN)
    assert dead is None and record["person"] == person


@pytest.mark.parametrize("field, value", [
    ("birth_date", "19450493"), ("birth_date", "1988-13-01"), ("birth_date", "19880230"),
    ("birth_date", "15/03/1988"), ("birth_date", 19880315), ("birth_date", ""),
    ("sex", "X"), ("sex", "男性"), ("sex", 1), ("sex", None),
    ("phone", "12"), ("phone", 13955501234), ("phone", {"mobile": "13955501234"}),
    ("id_number", "不详"), ("id_number", 340102198803150022),
    ("id_type", "license"), ("id_type", ["passport"]),
])
def test_a_bad_optional_person_field_keeps_the_record_with_its_raw_value(field, value):
    record, dead = parse_record(enc(with_(HOTEL, f"person.{field}", value)), "hotel", ORIGIN)
    assert dead is None
    assert record["person"][field] == value  # published as it came: the raw value is evidence
    assert json.loads(encode_record(record))["person"][field] == value


def test_watchlist_add_needs_a_name_or_an_id_number_in_a_known_form():
    add = {"watch_id": "W-9", "action": "add", "priority": "low", "person": {"name": "刘建国"}}
    assert reason_of(enc(add), "watchlist") is None
    assert reason_of(enc(with_(add, "person.birth_date", "1979-02-30")), "watchlist") is None
    for person in ({"name": " "}, {"id_number": "不详"}, {"name": "", "id_number": 1}):
        assert reason_of(enc(with_(add, "person", person)), "watchlist") == (
            "missing_field: person.name")


def test_the_schema_states_the_id_forms_and_flags_the_code_uses():
    block = schema_for("person-block")
    assert block["$defs"]["identified"]["properties"]["id_number"]["pattern"] == ID_FORM
    linked = schema_for("linked")["properties"]["quality_flags"]["items"]["enum"]
    assert tuple(linked) == QUALITY_FLAGS


def test_string_of_exactly_1000_chars_is_fine():
    assert reason_of(enc(with_(HOTEL, "person.name", "陈" * 1000))) is None


@pytest.mark.parametrize("path, value, expected", [
    ("lease_start", "2026-3-4", "bad_date: lease_start"),
    ("lease_start", "2026-02-29", "bad_date: lease_start"),  # not a leap year
    ("lease_end", "20260903", "bad_date: lease_end"),
    ("lease_end", "2026-03-01", "bad_value: lease_end"),  # ends before it starts
    ("registered_at", "2026-03-05", "bad_date: registered_at"),
    ("landlord", {"name": "黄志强", "phone": 139}, "wrong_type: landlord.phone"),
    ("address", _DELETE, "missing_field: address"),
])
def test_field_violations_rental(path, value, expected):
    assert reason_of(enc(with_(RENTAL, path, value)), "rental") == expected


def test_reason_codes_are_short_and_known():
    samples = [b"", b"{", b"[]", b"\xff", enc(with_(HOTEL, "time", "x")),
               enc(with_(HOTEL, "person.name", "x" * 2000)), enc(with_(HOTEL, "event", "z")),
               enc(with_(HOTEL, "record_id", _DELETE)), enc(with_(HOTEL, "room", 1))]
    for raw in samples:
        reason = reason_of(raw)
        assert reason_code(reason) in REASON_CODES
        assert "陈" not in reason_code(reason)


def test_validate_record_directly():
    assert validate_record(copy.deepcopy(HOTEL), "hotel") is None
    assert validate_record(with_(HOTEL, "event", 1), "hotel") == "wrong_type: event"
    with pytest.raises(ValueError):
        validate_record(copy.deepcopy(HOTEL), "spaceship")


# --- dead letters --------------------------------------------------------------------------
def test_dead_letter_message_keeps_original_bytes_reason_and_origin():
    jsonschema = pytest.importorskip("jsonschema")
    raw = '{"record_id": "陈丽", '.encode("gbk")
    _, dead = parse_record(raw, "hotel", {"file": "in.jsonl", "line": 7})
    msg = dead.to_message()
    assert base64.b64decode(msg["original_b64"]) == raw
    assert msg["reason"] == "encoding" and msg["source"] == "hotel"
    assert msg["origin"] == {"file": "in.jsonl", "line": 7}
    assert "\ufffd" in msg["original_text"]
    assert DeadLetter.from_message(json.loads(json.dumps(msg))) == dead
    _validator("deadletter", jsonschema).validate(msg)
    topic_dead = DeadLetter("job", "empty", b"", {"topic": "t", "partition": 0, "offset": 5})
    _validator("deadletter", jsonschema).validate(topic_dead.to_message())


# --- the schemas themselves ------------------------------------------------------------------
def _registry():
    from referencing import Registry, Resource

    return Registry().with_resources(
        (uri, Resource.from_contents(s)) for uri, s in load_schemas().items())


def _validator(name: str, jsonschema):
    return jsonschema.Draft202012Validator(schema_for(name), registry=_registry())


def test_schemas_are_valid_versioned_draft_2020_12():
    jsonschema = pytest.importorskip("jsonschema")
    schemas = load_schemas()
    names = {uri.removeprefix(SCHEMA_BASE) for uri in schemas}
    for required in [*(f"{s}.json" for s in SOURCES), "person-block.json", "deadletter.json",
                     "linked.json", "alert.json", "identity-event.json"]:
        assert required in names
    for uri, schema in schemas.items():
        assert uri.startswith(SCHEMA_BASE) and "/v1/" in uri
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema.Draft202012Validator.check_schema(schema)


def test_output_schemas_accept_typical_messages():
    jsonschema = pytest.importorskip("jsonschema")
    _validator("linked", jsonschema).validate({
        "record_id": "H-1", "source": "hotel", "person_id": "P-1", "match_probability": 0.97,
        "explanation": {"name": 2.1}, "report_time": "2026-03-02T21:14:00+08:00"})
    _validator("alert", jsonschema).validate({
        "alert_id": "a1", "rule": "unregistered_stay", "status": "raised", "person_id": "P-1",
        "record_ids": ["R-5531"], "prefecture": "4403", "deadline": "2026-03-07T00:00:00+08:00",
        "raised_at": "2026-03-07T00:00:00+08:00", "rule_version": "2026.11-1"})
    with pytest.raises(jsonschema.ValidationError):
        _validator("alert", jsonschema).validate({
            "alert_id": "a1", "rule": "watchlist_match", "status": "raised", "person_id": "P",
            "record_ids": [], "raised_at": "2026-03-07T00:00:00+08:00", "rule_version": "1"})
    _validator("identity-event", jsonschema).validate(
        {"event": "merged", "person_id": "P-2", "into": "P-1"})


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                       st.text(max_size=5), st.sampled_from(["", "x" * 1001, "2026-03-04",
                                                             "440305", "check_in", "add"]))
_json_value = st.recursive(_json_leaf, lambda c: st.one_of(
    st.lists(c, max_size=3), st.dictionaries(st.text(max_size=4), c, max_size=3)), max_leaves=8)
_field_names = st.sampled_from([
    "record_id", "watch_id", "person", "person.name", "person.sex", "person.birth_date",
    "person.aliases", "event", "time", "city_code", "lease_start", "lease_end", "action",
    "priority", "landlord", "landlord.phone", "extra", "source"])


@given(source=st.sampled_from(SOURCES), base=st.sampled_from(range(8)),
       edits=st.lists(st.tuples(_field_names, st.one_of(st.just(_DELETE), _json_value)),
                      max_size=3))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_compiled_validator_agrees_with_jsonschema(source, base, edits):
    """The fast compiled checks and the reference ``jsonschema`` accept the same objects."""
    import jsonschema

    obj = json.loads(example_lines()[base])
    obj["source"] = source
    for path, value in edits:
        *parents, last = path.split(".")
        node = obj
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            if value is _DELETE:
                node.pop(last, None)
            else:
                node[last] = value
    ours = _validators()[source](obj) is None
    theirs = _validator(source, jsonschema).is_valid(obj)
    assert ours == theirs, obj


# --- properties ----------------------------------------------------------------------------
@given(st.binary(max_size=300))
@settings(max_examples=500, deadline=None)
def test_arbitrary_bytes_never_crash_and_yield_exactly_one(raw):
    for source in ("hotel", "watchlist"):
        record, dead = parse_record(raw, source, ORIGIN)
        assert (record is None) != (dead is None)
        if dead is not None:
            assert dead.original == raw and reason_code(dead.reason) in REASON_CODES


@given(st.dictionaries(st.sampled_from(list(HOTEL) + ["x", "room", "hotel_name"]),
                       _json_value, max_size=10))
@settings(max_examples=300, deadline=None)
def test_arbitrary_objects_never_crash(obj):
    for source in SOURCES:
        record, dead = parse_record(enc(obj), source, ORIGIN)
        assert (record is None) != (dead is None)
        if record is not None:  # whatever passes re-encodes and has a key and a report time
            json.dumps(record, ensure_ascii=False).encode("utf-8")
            assert record_key(record).startswith(f"{source}:")
            rt = report_time(record)
            assert rt is None or rt.utcoffset() is not None


# --- files: JSON Lines, CSV, follow, reconciliation -----------------------------------------
def _mixed_jsonl(tmp_path: Path) -> tuple[Path, int, int]:
    lines = [enc(HOTEL), b'{"bad', b"", enc(with_(HOTEL, "time", "soon")),
             enc(with_(HOTEL, "record_id", "H-2")), '{"record_id": "陈"}'.encode("gbk"),
             enc(with_(HOTEL, "person.name", "x" * 1001)), b"   ",
             enc(with_(HOTEL, "person.id_number", "340102198803150099")),
             enc(with_(HOTEL, "person", _DELETE)), b"[]"]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, 3, len(lines) - 3


def test_mixed_file_counts_reconcile(tmp_path):
    path, n_valid, n_dead = _mixed_jsonl(tmp_path)
    results = list(iter_records([path], "hotel"))
    assert len(results) == n_valid + n_dead
    good = [r for r, d in results if r is not None]
    dead = [d for r, d in results if d is not None]
    assert len(good) == n_valid and len(dead) == n_dead
    assert [d.origin["line"] for d in dead] == [2, 3, 4, 6, 7, 8, 10, 11]
    assert all(d.origin["file"] == str(path) for d in dead)
    raw_lines = path.read_bytes().split(b"\n")
    for d in dead:
        assert d.original == raw_lines[d.origin["line"] - 1]


def test_jsonl_crlf_bom_and_missing_final_newline(tmp_path):
    path = tmp_path / "win.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + enc(HOTEL) + b"\r\n" + enc(with_(HOTEL, "record_id", "H-2")))
    results = list(iter_records([path], "hotel"))
    assert [r["record_id"] for r, _ in results] == ["H-1", "H-2"]


CSV_TEXT = (
    "source,record_id,event,hotel_id,city_code,time,person.name,person.id_number,person.sex,"
    "person.aliases,vendor.note\n"
    "hotel,H-1,check_in,H440305-017,440305,2026-03-02T21:14:00+08:00,陈丽,340102198803150022,"
    "女,,\n"
    ",H-2,check_out,H440305-017,440305,2026-03-04T11:30:00+08:00,\"Chen, Li\",,F,陈莉|CHEN Li,"
    "\"two\nlines\"\n"
    "hotel,H-3,check_in,H1,440305,not a time,陈丽,,,,\n"
    "hotel,H-4,check_in,H1,440305,2026-03-02T21:14:00+08:00,陈丽,,,\"[\"\"a\"\",\"\"b\"\"]\",,x\n"
    "\n"
    "hotel,H-6,check_in,H1,440305,2026-03-02T21:14:00+08:00,陈丽,,,\"[\"\"a\"\",\"\"b\"\"]\",\n"
)


def test_csv_dotted_columns_become_nested_objects(tmp_path):
    path = tmp_path / "hotel.csv"
    path.write_bytes(CSV_TEXT.encode("utf-8") + "hotel,H-7,check_in,H1,440305,2026-03-02T21:14:"
                     "00+08:00,陈丽,,,,\n".encode("gbk"))
    results = list(iter_records([path], "hotel"))
    good = {r["record_id"]: r for r, d in results if r is not None}
    dead = {d.origin["line"]: d for r, d in results if d is not None}
    assert set(good) == {"H-1", "H-2", "H-6"}
    assert good["H-1"]["person"] == {"name": "陈丽", "id_number": "340102198803150022", "sex": "女"}
    assert good["H-2"]["source"] == "hotel"
    assert good["H-2"]["person"]["aliases"] == ["陈莉", "CHEN Li"]
    assert good["H-2"]["person"]["name"] == "Chen, Li"
    assert good["H-2"]["vendor"] == {"note": "two\nlines"}
    assert good["H-6"]["person"]["aliases"] == ["a", "b"]
    # line numbers: header 1, H-1 2, H-2 3-4, H-3 5, H-4 6, blank 7, H-6 8, H-7 9
    assert {n: d.reason for n, d in dead.items()} == {
        5: "bad_date: time", 6: "malformed_csv: more fields than header columns", 7: "empty",
        9: "encoding"}
    raw = path.read_bytes().split(b"\n")
    assert dead[5].original == raw[4]  # the CSV line, not the JSON made from it
    assert dead[9].original == raw[8]
    assert len(results) == 7  # 3 published + 4 dead letters, header not counted


def test_csv_row_to_record_rejects_clashing_columns():
    assert csv_row_to_record(["person", "person.name"], ["x", "y"])[1].startswith("malformed_csv")
    assert csv_row_to_record(["a.b.c"], ["1"]) == ({"a": {"b": {"c": "1"}}}, None)


def test_csv_unclosed_quote_at_end(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text('record_id,person.name\nR-1,"open\n', encoding="utf-8")
    [item] = list(read_csv(str(path)))
    assert item.error == "malformed_csv: unclosed quote"


def test_follow_reads_a_growing_file_until_stopped(tmp_path):
    path = tmp_path / "grow.jsonl"
    path.write_bytes(enc(HOTEL) + b"\n")
    stop = threading.Event()
    got: list = []

    def consume():
        for item in read_files([str(path)], follow=True, stop=stop, poll_s=0.02):
            got.append(item)

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.1)
    with open(path, "ab") as fh:
        fh.write(enc(with_(HOTEL, "record_id", "H-2")) + b"\n" + b'{"partial":')
        fh.flush()
        time.sleep(0.1)
        fh.write(b' 1}\n')
    time.sleep(0.2)
    stop.set()
    t.join(5)
    assert not t.is_alive()
    assert [item.origin["line"] for item in got] == [1, 2, 3]
    assert got[2].data == b'{"partial": 1}'


# --- linking what remains: quality flags, absent evidence -------------------------------------
def _linked(records: list[dict]) -> list[dict]:
    """The ``linked`` messages of ``records``, each validated first, through one pipeline."""
    from reglink.core.pipeline import Pipeline
    from reglink.core.settings import load_settings
    from reglink.stores.kv import MemoryKV

    pipe = Pipeline(load_settings(hmac_key="k"), MemoryKV())
    out = []
    for n, obj in enumerate(records, 1):
        record, dead = parse_record(enc(obj), obj["source"], {"file": "t", "line": n})
        assert dead is None, dead
        out += [o.value for o in pipe.process(record)[1] if o.topic == "linked"]
    return out


def _features(linked: dict) -> dict[str, str]:
    return {f["feature"]: f["level"] for f in linked["explanation"].get("features", [])}


PERSON = {"source": "person", "record_id": "HR-1",
          "person": {"name": "陈丽", "birth_date": "1988-03-15", "phone": "13955501234"}}


@pytest.mark.parametrize("field, value, flag", [
    ("birth_date", "19450493", "bad_birth_date"),
    ("birth_date", 19880315, "bad_birth_date"),
    ("phone", "12", "bad_phone"),
    ("phone", 13955501234, "bad_phone"),
])
def test_a_bad_field_is_no_evidence_and_is_flagged(field, value, flag):
    first, second = _linked([PERSON, with_(with_(PERSON, "record_id", "HR-2"),
                                           f"person.{field}", value)])
    assert first["quality_flags"] == []
    assert second["quality_flags"] == [flag]
    assert second["person_id"] == first["person_id"]  # linked on what remains
    feature = "birth_date" if field == "birth_date" else "phone"
    assert _features(second)[feature] == "missing"


def test_a_mistyped_birth_date_does_not_count_against_the_match():
    """A birth date that is a real date but another one counts against the match; one that is
    no date is absent evidence."""
    second = with_(PERSON, "record_id", "HR-2")
    first, wrong = _linked([PERSON, with_(second, "person.birth_date", "1971-07-01")])
    _, bad = _linked([PERSON, with_(second, "person.birth_date", "19710799")])
    assert wrong["quality_flags"] == [] and bad["quality_flags"] == ["bad_birth_date"]
    assert bad["person_id"] == first["person_id"]
    assert (wrong["person_id"] != first["person_id"]
            or wrong["match_probability"] < bad["match_probability"])


def test_quality_flags_come_in_the_fixed_order():
    person = {"name": "陈丽", "phone": "x", "birth_date": "1988-02-30", "sex": "?",
              "id_number": "340102198803150023", "id_type": "身份证"}
    [linked] = _linked([with_(PERSON, "person", person)])
    assert linked["quality_flags"] == ["bad_id_type", "bad_checksum", "bad_sex",
                                       "bad_birth_date", "bad_phone"]
    assert linked["quality_flags"] == sorted(linked["quality_flags"], key=QUALITY_FLAGS.index)
    [linked] = _linked([with_(with_(PERSON, "person.id_number", "不详"), "person.sex", 7)])
    assert linked["quality_flags"] == ["bad_id_number", "bad_sex"]


def test_an_id_number_in_no_known_form_is_no_evidence():
    """Two different people who both wrote 不详 (unknown) as their ID number do not share it."""
    a, b = _linked([with_(PERSON, "person", {"name": "陈丽", "id_number": "不详"}),
                    {"source": "person", "record_id": "HR-2",
                     "person": {"name": "王建国", "id_number": "不详"}}])
    assert a["person_id"] != b["person_id"]
    assert _features(b).get("id", "missing") == "missing"
    assert a["quality_flags"] == b["quality_flags"] == ["bad_id_number"]


def test_a_record_with_an_id_number_and_no_name_is_linked_on_the_id():
    rid = "11010519491231002X"
    named = with_(PERSON, "person", {"name": "刘建国", "id_number": rid})
    nameless = {**HOTEL, "record_id": "H-9", "person": {"name": "", "id_number": rid}}
    missing = {**HOTEL, "record_id": "H-10", "person": {"id_number": rid}}
    first, second, third = _linked([named, nameless, missing])
    assert first["quality_flags"] == []  # a valid ID
    assert second["person_id"] == third["person_id"] == first["person_id"]
    assert second["quality_flags"] == third["quality_flags"] == []


def test_version_1_records_are_read_as_before(tmp_path):
    """The example records and a simulated corpus (all version 1) are all valid, and the only
    quality flags they get are the ID's own, where the simulator put its noise."""
    from reglink.sim.simulate import run_simulate

    examples = _linked([json.loads(line) for line in example_lines()
                        if b'"watchlist"' not in line])
    assert {m["record_id"]: m["quality_flags"] for m in examples if m["quality_flags"]} == {
        "H-90002": ["upgraded_15"]}  # its legacy 15-digit ID
    assert len(examples) == len(example_lines()) - 1
    run_simulate(persons=400, days=20, start="2026-03-01", seed=5, out_dir=tmp_path)
    truth = {f"{t['source']}:{t.get('record_id') or t.get('watch_id')}": set(t.get("noise", ()))
             for t in map(json.loads, (tmp_path / "truth.jsonl").open(encoding="utf-8"))}
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").open(encoding="utf-8")]
    linked = _linked([e for e in events if e["source"] != "watchlist"])
    assert len(linked) == sum(e["source"] != "watchlist" for e in events)
    for m in linked:
        noise = truth[f"{m['source']}:{m['record_id']}"]
        expected = (["bad_checksum"] if noise & {"id_wrong_digit", "id_transposed"} else
                    ["upgraded_15"] if "id_legacy15" in noise else [])
        assert m["quality_flags"] == expected, (m, noise)
    assert any(m["quality_flags"] == ["bad_checksum"] for m in linked)
    assert any(m["quality_flags"] == ["upgraded_15"] for m in linked)


def test_fuzzed_records_are_linked_with_their_flag_or_dead_lettered(tmp_path):
    """Every mutation of a simulated record is either linked, with the quality flag it must
    get, or dead-lettered with the reason it must get; read = published + dead-lettered and
    published = linked."""
    import random
    from collections import Counter

    from fuzzkit import ID_FLAGS, mutate, required_fields

    from reglink.core.pipeline import Pipeline
    from reglink.core.settings import load_settings
    from reglink.sim.simulate import run_simulate
    from reglink.stores.kv import MemoryKV

    run_simulate(persons=300, days=15, start="2026-03-01", seed=4, out_dir=tmp_path)
    good = [json.loads(x) for x in (tmp_path / "events.jsonl").open(encoding="utf-8")]
    good = [r for r in good if r["source"] != "watchlist"]
    rng, required = random.Random(11), required_fields()
    pipe = Pipeline(load_settings(hmac_key="k"), MemoryKV())
    fates: Counter[str] = Counter()
    published = linked = 0
    for n in range(3000):
        base = rng.choice(good)
        m = mutate(base, rng, required)
        record, dead = parse_record(m.raw, base["source"], {"file": "fuzz", "line": n})
        if m.dead is not None:
            assert dead is not None and dead.code == m.dead, (m, dead)
            assert dead.original == m.raw
            fates["dead"] += 1
            continue
        assert dead is None, (m, dead)
        published += 1
        [msg] = [o.value for o in pipe.process(record)[1] if o.topic == "linked"]
        linked += 1
        assert msg["record_id"] == record["record_id"]
        flags = msg["quality_flags"]
        assert flags == sorted(flags, key=QUALITY_FLAGS.index)
        assert set(flags) - {m.flag} <= ID_FLAGS, (m, flags)
        if m.flag is not None:
            assert m.flag in flags, (m, flags)
            fates[m.flag] += 1
        else:
            fates["no_name"] += 1
    assert published + fates["dead"] == 3000 and published == linked
    assert set(fates) == {"dead", "no_name", "bad_birth_date", "bad_sex", "bad_phone",
                          "bad_id_number", "bad_id_type"}, fates


def test_csv_cells_of_bad_optional_fields_keep_the_row(tmp_path):
    path = tmp_path / "hotel.csv"
    path.write_text(
        "record_id,event,hotel_id,city_code,time,person.name,person.id_number,person.sex,"
        "person.birth_date,person.phone\n"
        "H-1,check_in,H1,440305,2026-03-02T21:14:00+08:00,陈丽,,未知,1945/04/93,无\n"
        "H-2,check_in,H1,440305,2026-03-02T21:15:00+08:00,,11010519491231002X,,,\n"
        "H-3,check_in,H1,440305,2026-03-02T21:16:00+08:00,,不详,M,,\n"
        "H-4,check_in,H1,440305,2026-03-02T21:17:00+08:00, ,,,,\n", encoding="utf-8")
    results = list(iter_records([path], "hotel"))
    good = {r["record_id"]: r for r, _d in results if r is not None}
    assert good["H-1"]["person"] == {"name": "陈丽", "sex": "未知", "birth_date": "1945/04/93",
                                     "phone": "无"}
    assert good["H-2"]["person"] == {"id_number": "11010519491231002X"}
    assert [(d.origin["line"], d.reason) for _r, d in results if d is not None] == [
        (4, "missing_field: person.name"), (5, "missing_field: person.name")]
    flags = {m["record_id"]: m["quality_flags"] for m in _linked(list(good.values()))}
    assert flags == {"H-1": ["bad_sex", "bad_birth_date", "bad_phone"], "H-2": []}
