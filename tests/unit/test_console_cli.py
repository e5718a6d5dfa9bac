"""`reglink alerts` table and filters, `reglink person` justification: no services needed."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from reglink.person import JustificationRequired, audit_entry, check_justification
from reglink.tail import alert_table, wanted

A = {"alert_id": "A1234567890123", "rule": "unregistered_stay", "status": "raised",
     "person_id": "P1", "prefecture": "4403", "record_ids": ["R-1"],
     "deadline": "2026-03-04T00:00:00+08:00", "match_probability": 0.99}
W = {"alert_id": "A9", "rule": "watchlist_match", "status": "withdrawn", "person_id": "P2",
     "watch_id": "W-1", "priority": "high", "record_ids": ["W-1", "H-1"]}


def test_filters():
    assert wanted(A, rule="unregistered_stay", prefecture="44")
    assert not wanted(A, prefecture="3201")
    assert wanted(W, priority="high", status="withdrawn") and not wanted(W, status="raised")


def test_table_renders_each_alert_once():
    buf = io.StringIO()
    Console(file=buf, width=200).print(alert_table([A, W], "alerts"))
    text = buf.getvalue()
    assert "unregistered stay" in text and "W-1" in text and "4403" in text
    assert text.count("A1234567890") == 1


def test_person_lookup_needs_a_justification():
    with pytest.raises(JustificationRequired, match="--justification"):
        check_justification("  ")
    assert check_justification(" case 7: verify lead ") == "case 7: verify lead"
    e = audit_entry("ana", "operator", "person_lookup", {"person_id": "P1"}, "case 7", "cli")
    assert {"audit_id", "at", "principal", "action", "subject", "justification"} <= set(e)


def test_console_refuses_to_start_with_the_default_secret(tmp_path):
    """`reglink console` with the public default session secret stops before it serves or
    connects, with one line that says how to go on; the development opt-in lets it past that
    check (it then fails on the missing users file, the next thing it needs)."""
    from click.testing import CliRunner

    from reglink.cli import main

    env = {"REGLINK_CONSOLE_SECRET": None, "REGLINK_CONSOLE_DEV_SECRET": None,
           "REGLINK_CONSOLE_USERS_FILE": None, "REGLINK_CONFIG": None}
    got = CliRunner().invoke(main, ["console"], env=env)
    assert got.exit_code == 2
    lines = got.output.strip().splitlines()
    assert len(lines) == 1 and "session secret is the public default" in lines[0]
    assert "REGLINK_CONSOLE_DEV_SECRET=1" in lines[0]
    got = CliRunner().invoke(main, ["console"], env={**env, "REGLINK_CONSOLE_DEV_SECRET": "1"})
    assert got.exit_code == 2 and "no console users" in got.output
