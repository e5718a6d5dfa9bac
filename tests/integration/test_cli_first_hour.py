"""The first hour at the command line, on the real local stack: `reglink person` says "not
found" and audits the look-up with its outcome, `reglink alerts` names its topic and start,
the demo's printed commands find what the demo made, and the help examples that need the
stack run (tests/unit/test_cli.py runs the others)."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from reglink import cli
from reglink.core.settings import Settings, load_settings
from reglink.devstack.demo import demo_settings, run_demo
from reglink.kafka_auth import kafka_client
from tests.conftest import _delete_test_topics
from tests.streamkit import read_topic
from tests.unit.test_cli import (
    EXAMPLE,
    RUN_ELSEWHERE,
    RUN_HERE,
    RUN_ON_THE_STACK,
    help_examples,
)

pytestmark = pytest.mark.integration

WHY = "case 2026-114: verify hotel lead"


def _name(s: Settings) -> str:
    """The run name whose --prefix names this test's topics and Redis keys."""
    name = s.topic_prefix.rstrip(".")
    assert cli.prefixed(load_settings(), name).redis_prefix == s.redis_prefix
    return name


def _invoke(line: str, input: str | None = None, **env: str):
    """``line`` (``[VAR=value ...] reglink ARGS``) as a shell would run it, in this process."""
    m = EXAMPLE.match("  " + line)
    assert m is not None, line
    env.update(dict(a.split("=", 1) for a in shlex.split(m.group(1))))
    return CliRunner().invoke(cli.main, shlex.split(m.group(2)), env=env, input=input,
                              catch_exceptions=False)


def _console_shows(line: str, env: dict[str, str], person_ids: set[str]) -> None:
    """Start the console as ``line`` says (on a free port), sign in as the user the demo's
    previous command made, and wait for its queue to list ``person_ids``."""
    import httpx

    m = EXAMPLE.match("  " + line)
    assert m is not None, line
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, **env, "REGLINK_CONSOLE_PORT": str(port),
           **dict(a.split("=", 1) for a in shlex.split(m.group(1)))}
    proc = subprocess.Popen([sys.executable, "-m", "reglink.cli", *shlex.split(m.group(2))],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=url, timeout=5, follow_redirects=True) as web:
            while True:
                assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
                try:
                    if web.get("/login").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the console did not answer"
                time.sleep(0.5)
            signed = web.post("/login", data={"username": "demo", "password": "demo-password-1"})
            assert signed.status_code == 200, signed.text
            while True:
                page = web.get("/").text
                if all(pid in page for pid in person_ids):
                    return
                assert time.monotonic() < deadline, f"the console's queue lacks {person_ids}"
                time.sleep(1)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _send_alert(s: Settings, alert: dict) -> None:
    from kafka import KafkaProducer

    producer = kafka_client(KafkaProducer, s, "worker", acks="all")
    try:
        producer.send(s.topic("alerts"), key=alert["alert_id"].encode(),
                      value=json.dumps(alert).encode()).get(timeout=15)
    finally:
        producer.close(timeout=5)


def test_person_not_found_says_so_and_is_audited(kafka_settings: Settings, redis_client) -> None:
    s = kafka_settings
    unknown = "P00000000deadbeef"
    got = _invoke(f'reglink person {unknown} --prefix {_name(s)} -j "{WHY}"')
    assert got.exit_code == 1
    assert got.stdout == ""
    assert got.stderr.startswith(f"reglink person: not found: no identity '{unknown}'")
    by_name = _invoke(f'reglink person 无此人 --prefix {_name(s)} --json -j "{WHY}"')
    assert by_name.exit_code == 1 and by_name.stdout == ""
    assert "not found" in by_name.stderr
    audit = read_topic(s, "audit", idle_ms=3000)
    assert [(e["action"], e["subject"], e["outcome"], e["justification"], e["via"])
            for e in audit] == [
        ("person_lookup", {"query_kind": "person_id", "person_ids": [unknown]}, "not_found",
         WHY, "cli"),
        ("person_lookup", {"query_kind": "name", "person_ids": []}, "not_found", WHY, "cli")]
    assert audit[0]["audit_id"] in got.stderr


def test_alerts_names_the_topic_and_where_it_starts(kafka_settings: Settings) -> None:
    s = kafka_settings
    alert = {"alert_id": "A0123456789abc", "rule": "unregistered_stay", "status": "raised",
             "person_id": "P0123456789abcdef", "prefecture": "4403", "record_ids": ["R-1"]}
    _send_alert(s, alert)
    old = _invoke(f"reglink alerts --prefix {_name(s)} --from-beginning --timeout 3 --json")
    assert old.exit_code == 0
    assert old.stderr.splitlines()[0] == (
        f"reading topic {s.topic('alerts')} from the oldest alert, until 3 s pass without one")
    assert [json.loads(line) for line in old.stdout.splitlines()] == [alert]
    new = _invoke(f"reglink alerts --prefix {_name(s)} --timeout 2 --json")
    assert new.exit_code == 0 and new.stdout == ""
    assert new.stderr.splitlines() == [
        f"reading topic {s.topic('alerts')} from now on: only new alerts (--from-beginning "
        "shows the earlier ones), until 2 s pass without one",
        f"no alert on {s.topic('alerts')} in 2 s"]


def test_the_demo_says_what_to_run_next_and_it_works(kafka_settings: Settings, provision,
                                                     redis_client, tmp_path, capsys) -> None:
    """A small demo under the test's prefix; then every command it printed, as printed (but
    the reset, which would delete the shared stack's data)."""
    run = f"{_name(kafka_settings)}.demo"
    s = provision(demo_settings(kafka_settings, run))
    try:
        run_demo(kafka_settings, persons=300, days=6, pace_s=0.2, run=run,
                 out_dir=tmp_path / "demo")
        # the commands run in the demo's environment: the stack's Redis prefix is the test's
        env = {"REGLINK_REDIS_PREFIX": kafka_settings.redis_prefix}
        _check_what_the_demo_printed(s, run, capsys.readouterr().out, tmp_path, env)
    finally:  # the run's topics, the worker's internal topics and the run's ACLs
        _delete_test_topics(s)


def _check_what_the_demo_printed(s: Settings, run: str, printed: str, tmp_path: Path,
                                 env: dict[str, str]) -> None:
    steps = printed[printed.index("The demo's records"):]
    commands = [line.strip() for line in steps.splitlines() if EXAMPLE.match(line)]
    assert [shlex.split(EXAMPLE.match("  " + c).group(2))[0]  # type: ignore[union-attr]
            for c in commands] == [
        "alerts", "person", "console-user", "console", "replay", "stack"]
    assert commands[-1].startswith("reglink stack down && rm -rf ")  # the reset: not run here

    shown = _invoke(commands[0], **env)
    assert shown.exit_code == 0, shown.output
    assert shown.stderr.splitlines()[0].startswith(f"reading topic {s.topic('alerts')} from "
                                                   "the oldest alert")
    alerts = read_topic(s, "alerts", idle_ms=3000)
    assert alerts, "the demo raised no alert: too small a world for this test"
    assert len(shown.stdout.splitlines()) == len({(a["alert_id"], a["status"]) for a in alerts})
    for a in alerts:
        assert a["person_id"] in shown.stdout

    person = _invoke(commands[1], **env)
    assert person.exit_code == 0, person.output
    pid = re.search(r"reglink person (P[0-9a-f]{16}) ", commands[1]).group(1)  # type: ignore[union-attr]
    assert pid in {a["person_id"] for a in alerts}
    assert pid in person.stdout and "records: ?" not in person.stdout
    assert "not found" not in person.output
    lookups = [e for e in read_topic(s, "audit", idle_ms=3000) if e["action"] == "person_lookup"]
    assert [(e["subject"]["person_ids"], e["outcome"]) for e in lookups] == [([pid], "found")]

    users = Path(shlex.split(commands[2])[-1])
    assert users.parent == (tmp_path / "demo").resolve()
    made = _invoke(commands[2], **env, input="demo-password-1\ndemo-password-1\n")
    assert made.exit_code == 0, made.output
    _console_shows(commands[3], env, {a["person_id"] for a in alerts})

    replay = _invoke(commands[4], **env)
    assert replay.exit_code == 0, replay.output
    assert (tmp_path / "demo" / "replay" / "alerts.jsonl").is_file()


def test_the_help_examples_on_the_stack_run(kafka_settings: Settings, redis_client,
                                            tmp_path, monkeypatch) -> None:
    """`stack up` (the stack is up: nothing starts), `publish` of a simulated source and the
    `alerts` examples, on the test's prefix. `person`, `console` and `demo` examples name a
    run and a person: the demo test runs the commands the demo prints for them; `worker` is
    what the demo starts."""
    # the stack's own state dir (credentials, pids), named before leaving the checkout
    s = kafka_settings.model_copy(update={"state_dir": Path(kafka_settings.state_dir).resolve()})
    state_dir = str(s.state_dir)
    monkeypatch.chdir(tmp_path)
    env = {"REGLINK_TOPIC_PREFIX": s.topic_prefix, "REGLINK_REDIS_PREFIX": s.redis_prefix,
           "REGLINK_STATE_DIR": state_dir}
    assert _invoke("reglink simulate --persons 300 --days 5 --out data/").exit_code == 0
    ran = set()
    for _path, line in help_examples():
        command = shlex.split(EXAMPLE.match("  " + line).group(2))[0]  # type: ignore[union-attr]
        assert command in RUN_ON_THE_STACK + RUN_HERE + RUN_ELSEWHERE
        if command in ("stack", "publish") or (command == "alerts" and "--prefix" not in line):
            got = _invoke(line, **env)
            assert got.exit_code == 0, f"{line}: {got.output}"
            ran.add(command)
            if command == "publish":
                assert "published" in got.stdout, got.output
            if command == "alerts":
                assert got.stderr.startswith(f"reading topic {s.topic('alerts')} from the "
                                             "oldest alert")
    assert ran == {"stack", "publish", "alerts"}
    hotel = (tmp_path / "data" / "hotel.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(read_topic(s, "hotel.raw", idle_ms=3000)) == len(hotel) > 0
