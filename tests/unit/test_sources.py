"""The source registry (reglink.core.sources): the declarations, the presence helpers, and that a
source added to the registry reaches the topics, the contract, the ACLs and the CLI."""

from __future__ import annotations

import json
from datetime import datetime

import click
import pytest

from reglink import kafka_auth
from reglink.cli import main as cli_main
from reglink.core import contract, sources, topics
from reglink.core.rules.clock import CST
from reglink.core.rules.merge import order_key
from reglink.core.settings import Settings
from reglink.sim import simulate

DAY = 86400.0


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# --- the shipped declarations ----------------------------------------------------------------
def test_the_six_sources_in_topic_order_with_their_merge_ranks() -> None:
    reg = sources.current()
    assert reg.names == ("hotel", "rental", "residence", "job", "watchlist", "person")
    assert reg.event_names == ("hotel", "rental", "residence", "job")
    assert reg.ranks == {"person": 0, "watchlist": 1, "hotel": 2, "rental": 3, "residence": 4,
                         "job": 5}
    assert {s.name: s.report_time for s in reg} == {
        "hotel": "time", "rental": "registered_at", "residence": "registered_at",
        "job": "posted_at", "watchlist": None, "person": None}
    assert [s.name for s in reg if s.id_field == "watch_id"] == ["watchlist"]
    assert [s.name for s in reg if s.id_field != "watch_id"] == [
        "hotel", "rental", "residence", "job", "person"]


def test_live_views_behave_like_the_tuples() -> None:
    assert tuple(sources.NAMES) == sources.current().names
    assert list(sources.EVENT_NAMES) == ["hotel", "rental", "residence", "job"]
    assert len(sources.NAMES) == 6 and sources.NAMES[0] == "hotel"
    assert sources.NAMES[-2:] == ("watchlist", "person")
    assert "job" in sources.EVENT_NAMES and "person" not in sources.EVENT_NAMES
    assert topics.SOURCES is sources.NAMES and topics.EVENT_SOURCES is sources.EVENT_NAMES
    assert contract.SOURCES is sources.NAMES and simulate.SOURCES is sources.NAMES


def test_merge_order_follows_the_rank() -> None:
    keys = sorted(sources.NAMES, key=lambda s: order_key(s, 100.0))
    assert keys == ["person", "watchlist", "hotel", "rental", "residence", "job"]
    assert order_key("person", None) < order_key("hotel", None) < order_key("person", 0.0)
    assert order_key("nonesuch", 5.0) == (1, 5.0, 9)  # unknown names sort after every source


def test_every_source_has_its_schema_and_the_linked_enum_lists_them_all() -> None:
    names = set(contract.schema_names())
    for s in sources.current():
        assert s.schema_file in names
        schema = contract.schema_for(s.name)
        assert schema["properties"]["source"]["const"] == s.name
        assert s.id_field in schema["required"]
        if s.report_time:
            assert s.report_time in schema["required"]
        for f in s.console_fields:
            assert f in schema["properties"], (s.name, f)
        if s.organisation is not None:
            assert s.organisation.field in schema["properties"], s.name
    # the output schema of linked messages cannot import the registry: it must agree with it
    assert contract.schema_for("linked")["properties"]["source"]["enum"] == list(sources.NAMES)


def test_contract_checks_derive_from_schemas_and_presence() -> None:
    _checks, semantic = contract._compiled(sources.current())
    assert {n: (c.times, c.dates, c.period) for n, c in semantic.items()} == {
        "hotel": (("time",), (), None),
        "rental": (("registered_at",), ("lease_start", "lease_end"),
                   ("lease_start", "lease_end")),
        "residence": (("registered_at",), ("valid_from", "valid_until", "left_on"),
                      ("valid_from", "valid_until")),
        "job": (("posted_at",), ("start_date", "end_date"), ("start_date", "end_date")),
        "watchlist": ((), ("valid_until",), None),
        "person": ((), (), None),
    }


def test_the_connectors_principals_and_acls_come_from_the_registry() -> None:
    principals = kafka_auth.kafka_principals()
    assert principals[1:7] == [f"connector-{n}" for n in sources.NAMES]
    rows = kafka_auth.acl_table(Settings(topic_prefix="p."))
    assert ("connector-rental", "TOPIC", "p.rental.raw", "LITERAL", "WRITE") in rows
    worker_reads = [r[2] for r in rows if r[0] == "worker" and r[4] == "READ" and r[1] == "TOPIC"]
    assert worker_reads == [f"p.{n}.raw" for n in sources.NAMES] + ["p.decisions",
                                                                     "p.deadletter"]


# --- presence ---------------------------------------------------------------------------------
def test_date_interval_from_start_of_day_to_end_of_last_day() -> None:
    rental = sources.current()["rental"].presence
    assert isinstance(rental, sources.DateInterval)
    start, end = rental.interval({"lease_start": "2026-03-04", "lease_end": "2026-09-03"})
    assert start == _epoch("2026-03-04T00:00:00+08:00")
    assert end == _epoch("2026-09-04T00:00:00+08:00")
    assert rental.interval({"lease_start": "2026-03-04"}) == (start, None)  # open-ended
    job = sources.current()["job"].presence
    assert isinstance(job, sources.DateInterval) and job.end == "end_date"
    # a job lasts to the end of its last day worked; open-ended while none is known
    assert job.interval({"start_date": "2026-03-04", "end_date": "2026-03-10"}) == (
        start, _epoch("2026-03-11T00:00:00+08:00"))
    assert job.interval({"start_date": "2026-03-04"}) == (start, None)
    # a job record with an end revises the stored interval as of its posted_at; a rental
    # record never revises one (a repeated key is a duplicate), nor does a job without an end
    posted = "2026-03-12T09:00:00+08:00"
    assert job.revision({"start_date": "2026-03-04", "end_date": "2026-03-10",
                         "posted_at": posted}) == _epoch(posted)
    assert job.revision({"start_date": "2026-03-04", "posted_at": posted}) is None
    assert rental.revision({"lease_start": "2026-03-04", "lease_end": "2026-09-03",
                            "registered_at": posted}) is None


def test_check_in_out_marks_and_registration_period() -> None:
    hotel = sources.current()["hotel"].presence
    assert isinstance(hotel, sources.CheckInOut)
    rec = {"event": "check_in", "hotel_id": "H1", "time": "2026-03-02T21:14:00+08:00"}
    assert hotel.mark(rec) == (True, "H1", _epoch(rec["time"]))
    assert hotel.mark({**rec, "event": "check_out"})[0] is False
    residence = sources.current()["residence"].presence
    assert isinstance(residence, sources.Registration)
    reg = {"registered_at": "2026-03-12T15:20:00+08:00", "valid_from": "2026-03-12",
           "valid_until": "2026-03-31"}
    assert residence.period(reg) == (_epoch(reg["registered_at"]),
                                     _epoch("2026-03-12T00:00:00+08:00"),
                                     _epoch("2026-04-01T00:00:00+08:00"))
    assert datetime.fromtimestamp(residence.period(reg)[2], CST).hour == 0
    assert not residence.is_deregistration(reg)
    assert not residence.is_deregistration({**reg, "action": "register"})
    # a deregistration: recorded at registered_at, closed from 00:00 of left_on (by default
    # of the day it was recorded)
    dereg = {"action": "deregister", "registered_at": "2026-04-02T10:00:00+08:00",
             "left_on": "2026-03-28", "permit_no": "P-1"}
    assert residence.is_deregistration(dereg)
    assert residence.departure(dereg) == (_epoch(dereg["registered_at"]),
                                          _epoch("2026-03-28T00:00:00+08:00"))
    late_night = {"action": "deregister", "registered_at": "2026-04-02T23:30:00+08:00"}
    assert residence.departure(late_night)[1] == _epoch("2026-04-02T00:00:00+08:00")
    assert residence.permit_of(dereg) == "P-1" and residence.permit_of(late_night) is None


def test_graces_are_settings_fields() -> None:
    s = Settings(grace_hotel_s=11, grace_rental_s=22, grace_job_s=33)
    assert sources.graces(s) == {"hotel": 11, "rental": 22, "job": 33}
    assert sources.graces(Settings()) == {"hotel": 30 * DAY, "rental": 3 * DAY, "job": 3 * DAY}
    kinds = {s.name: s.presence.kind if s.presence else None for s in sources.current()}
    assert kinds == {"hotel": "check_in_out", "rental": "date_interval",
                     "residence": "registration", "job": "date_interval",
                     "watchlist": None, "person": None}


def test_organisation_reported_for() -> None:
    org = {s.name: s.organisation for s in sources.current()}
    assert org["hotel"].of({"hotel_id": "H440305-017"}) == "H440305-017"
    assert org["rental"].of({"property_id": "F1"}) == "F1"
    assert org["job"].of({"employer_name": "x"}) is None  # employer_id is optional
    assert org["job"].of({"employer_id": "E9"}) == "E9"
    assert org["residence"].of({"city_code": "440305"}) == "4403"  # the prefecture
    assert org["watchlist"] is None and org["person"] is None


def test_registry_refuses_inconsistent_declarations() -> None:
    hotel = sources.current()["hotel"]
    with pytest.raises(ValueError, match="declared twice"):
        sources.current().adding(hotel)
    with pytest.raises(ValueError, match="share rank 2"):
        sources.current().adding(_visa(rank=2))
    with pytest.raises(ValueError, match="needs a report_time"):
        sources.current().adding(_visa(report_time=None))
    with pytest.raises(KeyError, match="unknown source 'visa'"):
        sources.current()["visa"]


# --- a fifth source -----------------------------------------------------------------------
VISA_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": f"{contract.SCHEMA_BASE}visa.json",
    "title": "visa input record (a test source)",
    "type": "object",
    "required": ["source", "record_id", "person", "city_code", "entry_date", "reported_at"],
    "properties": {
        "source": {"type": "string", "const": "visa"},
        "record_id": {"$ref": "common.json#/$defs/recordId"},
        "person": {"$ref": "person-block.json"},
        "city_code": {"$ref": "common.json#/$defs/cityCode"},
        "entry_date": {"$ref": "common.json#/$defs/date"},
        "exit_date": {"$ref": "common.json#/$defs/date"},
        "reported_at": {"$ref": "common.json#/$defs/dateTime"},
    },
    "additionalProperties": {"$ref": "common.json#/$defs/any"},
}
VISA = {"source": "visa", "record_id": "V-1", "person": {"name": "陈丽"}, "city_code": "440305",
        "entry_date": "2026-03-04", "exit_date": "2026-03-20",
        "reported_at": "2026-03-05T10:02:00+08:00"}


def _visa(schema_dir=None, **kw) -> sources.Source:
    decl = {"name": "visa", "rank": 6, "report_time": "reported_at", "event": True,
            "presence": sources.DateInterval(start="entry_date", end="exit_date",
                                             grace="grace_rental_s"),
            "organisation": sources.Organisation("city_code", digits=4),
            "console_fields": ("city_code", "entry_date", "exit_date"),
            "schema_dir": schema_dir, **kw}
    return sources.Source(**decl)


@pytest.fixture
def visa(tmp_path):
    (tmp_path / "visa.json").write_text(json.dumps(VISA_SCHEMA), encoding="utf-8")
    with sources.registered(_visa(tmp_path)) as reg:
        yield reg


def _reason(obj: dict) -> str | None:
    raw = json.dumps(obj, ensure_ascii=False).encode()
    record, dead = contract.parse_record(raw, "visa", {"file": "v.jsonl", "line": 1})
    return None if dead is None else dead.reason


def test_a_registered_source_gets_its_topic_principal_and_acls(visa) -> None:
    names = [t.name for t in topics.topic_specs(Settings())]
    assert names[:7] == [f"{n}.raw" for n in
                         ("hotel", "rental", "residence", "job", "watchlist", "person", "visa")]
    assert "visa" in topics.SOURCES and "visa" in topics.EVENT_SOURCES
    assert "connector-visa" in kafka_auth.kafka_principals()
    rows = kafka_auth.acl_table(Settings(topic_prefix="p."))
    assert ("connector-visa", "TOPIC", "p.visa.raw", "LITERAL", "WRITE") in rows
    assert ("worker", "TOPIC", "p.visa.raw", "LITERAL", "READ") in rows
    assert order_key("visa", 1.0) == (1, 1.0, 6)
    assert list(simulate.SOURCES)[-1] == "visa"


def test_a_registered_source_is_validated_by_its_schema(visa) -> None:
    assert _reason(VISA) is None
    assert contract.report_time(VISA) == datetime.fromisoformat(VISA["reported_at"])
    assert _reason({k: v for k, v in VISA.items() if k != "entry_date"}) == \
        "missing_field: entry_date"
    assert _reason({**VISA, "entry_date": "2026-02-30"}) == "bad_date: entry_date"
    assert _reason({**VISA, "reported_at": "2026-03-05T25:02:00+08:00"}) == \
        "bad_date: reported_at"
    assert _reason({**VISA, "exit_date": "2026-03-01"}) == "bad_value: exit_date"  # backwards
    assert _reason({**VISA, "source": "hotel"}) == "source_mismatch: source"
    assert sources.current()["visa"].presence.interval(VISA) == (
        _epoch("2026-03-04T00:00:00+08:00"), _epoch("2026-03-21T00:00:00+08:00"))


def test_a_registered_source_is_a_cli_choice(visa) -> None:
    ctx = cli_main.commands["publish"].make_context("publish", ["--source", "visa", "v.jsonl"])
    assert ctx.params["source"] == "visa"
    help_text = cli_main.commands["publish"].get_help(click.Context(cli_main))
    assert "person|visa" in help_text


def test_the_registry_is_restored_after_the_block(tmp_path) -> None:
    (tmp_path / "visa.json").write_text(json.dumps(VISA_SCHEMA), encoding="utf-8")
    before = sources.current()
    with sources.registered(_visa(tmp_path)):
        assert "visa" in sources.NAMES
    assert sources.current() is before and "visa" not in sources.NAMES
    assert "visa.raw" not in [t.name for t in topics.topic_specs(Settings())]
    with pytest.raises(ValueError, match="unknown source 'visa'"):
        contract.parse_record(b"{}", "visa", {})
    with pytest.raises(click.BadParameter):
        cli_main.commands["publish"].make_context("publish", ["--source", "visa", "v.jsonl"])


def test_a_source_without_a_schema_is_refused(tmp_path) -> None:
    with sources.registered(_visa(tmp_path)), pytest.raises(FileNotFoundError):
        contract.parse_record(json.dumps(VISA).encode(), "visa", {})
    with sources.registered(_visa()), pytest.raises(ValueError, match="has no schema"):
        contract.parse_record(json.dumps(VISA).encode(), "visa", {})


# --- the review console -------------------------------------------------------------------
class _Records:
    def __init__(self, records: dict[str, dict]) -> None:
        self.records = records

    def record(self, key: str) -> dict | None:
        return self.records.get(key)


def test_console_timeline_from_evidence_draws_each_presence_kind() -> None:
    from reglink.console import charts
    from reglink.console.app import stay_data

    records = {
        "hotel:H-1": {"event": "check_in", "hotel_id": "H1",
                      "time": "2026-03-02T21:14:00+08:00"},
        "rental:R-1": {"lease_start": "2026-03-04", "lease_end": "2026-09-03"},
        "job:J-1": {"start_date": "2026-03-05"},
        "residence:T-1": {"registered_at": "2026-03-12T15:20:00+08:00",
                          "valid_from": "2026-03-12", "valid_until": "2026-09-11"},
        "person:P-1": {"city_code": "440305"},
    }
    alert = {"prefecture": "4403", "evidence": list(records),
             "deadline": "2026-03-07T00:00:00+08:00"}
    svg = charts.timeline(*stay_data(alert, {}, _Records(records)), None)
    for key in ("hotel:H-1", "rental:R-1", "job:J-1", "residence:T-1"):
        assert f">{key}</text>" in svg, key
    assert "person:P-1" not in svg  # gives no presence


def test_a_registered_source_shows_its_console_fields(visa) -> None:
    from reglink.console.app import evidence_view

    rows = evidence_view("visa:V-1", VISA)["rows"]
    assert [k for k in rows if k in ("city code", "entry date", "exit date")] == [
        "city code", "entry date", "exit date"]
    assert evidence_view("nonesuch:1", VISA)["rows"] == {"name": "陈丽"}
