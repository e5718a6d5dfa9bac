"""`reglink deadletter` on the real stack: the dead letters `reglink publish` made are listed
with their reasons and places, the use is in the audit topic first, the export gives back the
original bytes, and the operators' role (console) reads the topic while no other non-admin
role does, and may not write it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from corekit import EXAMPLES
from streamkit import read_topic, settings_env

from reglink.kafka_auth import kafka_python_kwargs


def cli(s, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reglink.cli", *args], input=stdin,
                          capture_output=True, env=settings_env(s), timeout=120)


def test_deadletter_lists_reasons_and_places_audits_and_exports(kafka_settings, tmp_path):
    s = kafka_settings
    hotel = next(json.loads(x) for x in EXAMPLES.read_text().splitlines()
                 if json.loads(x)["source"] == "hotel")
    no_time = {k: v for k, v in hotel.items() if k != "time"} | {"record_id": "H-NOTIME"}
    lines = [json.dumps(hotel), "{not json", json.dumps(no_time), ""]
    feed = tmp_path / "hotel-in.jsonl"
    feed.write_text("\n".join(lines) + "\n", encoding="utf-8")
    pub = cli(s, "publish", "--source", "hotel", str(feed))
    assert pub.returncode == 3, pub.stderr.decode()  # some records dead-lettered

    # without a justification: refused before anything is read or audited
    refused = cli(s, "deadletter", "--json")
    assert refused.returncode == 2 and b"justification" in refused.stderr

    why = "ticket OPS-7: hotel feed rejects"
    got = cli(s, "deadletter", "-j", why, "--json", "--export", str(tmp_path / "fix"))
    assert got.returncode == 0, got.stderr.decode()
    out = json.loads(got.stdout)
    places = {d["place"]: d["reason"] for d in out["dead_letters"]}
    assert places == {f"{feed}:2": "malformed_json",
                      f"{feed}:3": "missing_field: time",
                      f"{feed}:4": "empty"}
    assert all(d["source"] == "hotel" for d in out["dead_letters"])
    assert {r["reason"]: r["count"] for r in out["reasons"]} == \
        {"malformed_json": 1, "missing_field: time": 1, "empty": 1}
    # the export holds the original bytes of what can be fixed (not the blank line)
    assert out["exported"] == {"hotel.jsonl": 2}
    assert (tmp_path / "fix" / "hotel.jsonl").read_text(encoding="utf-8") == \
        f"{lines[1]}\n{lines[2]}\n"

    audit = [a for a in read_topic(s, "audit") if a.get("action") == "deadletter_read"]
    assert [a["audit_id"] for a in audit] == [out["audit_id"]]
    assert audit[0]["justification"] == why and audit[0]["via"] == "cli"
    assert audit[0]["subject"]["topic"] == s.topic("deadletter")
    assert audit[0]["subject"]["export"] is True

    # filters; a fixed record goes back through `reglink publish`
    only = json.loads(cli(s, "deadletter", "-j", why, "--json", "--reason", "missing_field")
                      .stdout)
    assert [d["place"] for d in only["dead_letters"]] == [f"{feed}:3"]
    later = json.loads(cli(s, "deadletter", "-j", why, "--json", "--since",
                           "2999-01-01").stdout)
    assert later["count"] == 0
    fixed = tmp_path / "fix" / "hotel-fixed.jsonl"
    fixed.write_text(json.dumps(no_time | {"time": hotel["time"]}) + "\n", encoding="utf-8")
    assert cli(s, "publish", "--source", "hotel", str(fixed)).returncode == 0
    text = cli(s, "deadletter", "-j", why)
    assert text.returncode == 0, text.stderr.decode()
    assert b"3 dead letters by reason" in text.stdout and b"missing_field: time" in text.stdout
    assert len([a for a in read_topic(s, "audit") if a.get("action") == "deadletter_read"]) == 4


def _fetch(s, role: str, topic: str) -> str:
    """'allowed', or the broker's error for a Fetch of ``topic`` as ``role`` (a raw Fetch
    request: kafka-python's consumer only logs a refused topic and keeps polling)."""
    import kafka.errors as Errors
    from kafka.admin import KafkaAdminClient
    from kafka.protocol.consumer.fetch import FetchRequest

    admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap, request_timeout_ms=10000,
                             **kafka_python_kwargs(s, role))
    try:
        part = FetchRequest.FetchTopic.FetchPartition(
            partition=0, fetch_offset=0, partition_max_bytes=1 << 16, log_start_offset=-1,
            current_leader_epoch=-1)
        req = FetchRequest(replica_id=-1, max_wait_ms=10, min_bytes=0, max_bytes=1 << 16,
                           isolation_level=0, session_id=0, session_epoch=-1,
                           topics=[FetchRequest.FetchTopic(topic=topic, partitions=[part])],
                           forgotten_topics_data=[], rack_id="", max_version=12)
        resp = admin._manager.run(admin._manager.send, req, 1)
        code = resp.error_code or next(p.error_code for t in resp.responses
                                       for p in t.partitions)
        return "allowed" if code == 0 else Errors.for_code(code).__name__
    finally:
        admin.close()


def test_only_the_operators_role_reads_dead_letters_and_it_cannot_forge_them(kafka_settings):
    from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
    from kafka.errors import KafkaError

    s = kafka_settings
    dl = s.topic("deadletter")
    assert _fetch(s, "console", dl) == "allowed"
    # the worker reads dead letters back only to count them per organisation (quality)
    assert _fetch(s, "worker", dl) == "allowed"
    for role in ("reader", "connector-hotel"):
        assert _fetch(s, role, dl) == "TopicAuthorizationFailedError", role
    for name in ("deadletter", "hotel.raw", "alerts", "linked"):
        p = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, max_block_ms=5000, acks="all",
                          **kafka_python_kwargs(s, "console"))
        try:
            with pytest.raises(KafkaError, match="Authorization"):
                p.send(s.topic(name), key=b"x", value=b"{}").get(timeout=10)
        finally:
            p.close(timeout=2)
    # no consumer group of its own: it reads by assignment only, and commits nothing
    c = KafkaConsumer(bootstrap_servers=s.kafka_bootstrap, group_id="operators",
                      enable_auto_commit=False, request_timeout_ms=10000,
                      **kafka_python_kwargs(s, "console"))
    try:
        tp = TopicPartition(dl, 0)
        c.assign([tp])
        with pytest.raises(KafkaError, match="GroupAuthorizationFailed"):
            c.commit({tp: OffsetAndMetadata(0, "", -1)})
    finally:
        c.close()
