"""The command line a new user meets: --version, the help examples run as printed, one setting
per endpoint, `stack status` probing only the endpoints the settings name. No services needed
(the examples that need the stack run in tests/integration/test_cli_first_hour.py)."""

from __future__ import annotations

import glob
import json
import re
import shlex
import socket
import threading
from importlib.metadata import version
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from matchers import native
from reglink import cli
from reglink.core.errors import ConfigError
from reglink.core.settings import load_settings
from reglink.devstack import stack
from reglink.devstack.demo import demo_settings

EXAMPLE = re.compile(r"^\s+((?:[A-Z_]+=\S+\s+)*)reglink\s+(.+?)\s*$")

# Every example in the help, by where it is run. A new example must be added to one of these.
RUN_HERE = ("simulate", "train", "model", "replay", "evaluate", "stats")  # no stack: run below
RUN_ON_THE_STACK = ("alerts", "person", "publish", "stack", "console", "console-user", "demo",
                    "worker")  # tests/integration/test_cli_first_hour.py
RUN_ELSEWHERE = ("quality",)  # tests/unit/test_quality.py


@pytest.fixture(autouse=True)
def _endpoints_from_the_test(monkeypatch) -> None:
    """The endpoint settings come from each test alone, not from the caller's environment."""
    for name in ("KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "KAFKA_BOOTSTRAP", "REDIS_PORT",
                 "REDIS_URL"):
        monkeypatch.delenv(f"REGLINK_{name}", raising=False)


def _help_texts() -> dict[str, str]:
    """The help of the group and of every command (sub-groups included), by command path."""
    out: dict[str, str] = {}

    def walk(command: click.Command, path: list[str], parent: click.Context | None) -> None:
        ctx = click.Context(command, info_name=" ".join(["reglink", *path]), parent=parent)
        out[" ".join(path)] = command.get_help(ctx)
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, [*path, name], ctx)

    walk(cli.main, [], None)
    return out


def help_examples() -> list[tuple[str, str]]:
    """``(command path, example line)`` for every ``reglink ...`` line in any help."""
    found = []
    for path, text in _help_texts().items():
        for line in text.splitlines():
            if EXAMPLE.match(line) and not line.strip().startswith("reglink:"):
                found.append((path, line.strip()))
    return found


def _argv(line: str, cwd: Path) -> list[str]:
    """The argv a POSIX shell in ``cwd`` gives ``reglink`` for ``line`` (globs expanded)."""
    m = EXAMPLE.match("  " + line)
    assert m is not None, line
    argv = []
    for word in shlex.split(m.group(2)):
        if any(c in word for c in "*?["):
            matches = sorted(glob.glob(word, root_dir=cwd))
            argv.extend(matches or [word])
        else:
            argv.append(word)
    return argv


def test_version_prints_the_package_version() -> None:
    got = CliRunner().invoke(cli.main, ["--version"])
    assert got.exit_code == 0
    assert got.output == f"reglink {version('reglink')}\ncore: {native.mode()}\n"
    assert got.output.split("core: ")[1].startswith(("compiled (mypyc", "pure Python ("))


def test_every_help_example_is_run_by_a_test() -> None:
    examples = help_examples()
    top = [line for path, line in examples if path == ""]
    assert any(line.startswith("reglink replay") for line in top), top
    for _path, line in examples:
        command = shlex.split(EXAMPLE.match("  " + line).group(2))[0]  # type: ignore[union-attr]
        assert command in RUN_HERE + RUN_ON_THE_STACK + RUN_ELSEWHERE, \
            f"no test runs the example {line!r}"
        assert command in cli.main.commands, line


def test_the_examples_without_the_stack_run_as_printed(tmp_path, monkeypatch) -> None:
    """simulate -> train -> model show -> replay -> evaluate in a temp dir, each as the help
    prints it; the replay
    reads every record once (a glob over the simulator's directory would read the truth files
    and the per-source copies too)."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    lines: list[str] = []
    for _path, line in help_examples():
        if shlex.split(line)[1] in RUN_HERE and line not in lines:
            lines.append(line)
    order = {name: i for i, name in enumerate(RUN_HERE)}
    lines.sort(key=lambda line: order[shlex.split(line)[1]])
    assert [shlex.split(line)[1] for line in lines] == list(RUN_HERE), lines
    outputs = {}
    for line in lines:
        got = runner.invoke(cli.main, _argv(line, tmp_path), catch_exceptions=False)
        assert got.exit_code == 0, f"{line}: {got.output}"
        outputs[shlex.split(line)[1]] = got.output
    events = (tmp_path / "data" / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(events) > 100
    m = re.search(r"read (\d+), linked (\d+)", outputs["replay"])
    assert m is not None, outputs["replay"]
    assert int(m.group(1)) == len(events)
    links = (tmp_path / "out" / "links.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(links) == int(m.group(2)) > 0
    scores = json.loads(outputs["evaluate"])
    assert scores, outputs["evaluate"]
    trained = json.loads((tmp_path / "model.json").read_text(encoding="utf-8"))
    assert trained["trained_on"]["files"] == ["data/events.jsonl"]
    assert outputs["model"].startswith(f"model {trained['version']} ")


def test_prefix_names_the_runs_topics_and_redis_keys() -> None:
    base = load_settings()
    s = cli.prefixed(base, "demo143025")
    assert s.topic("alerts") == "demo143025.alerts"
    assert s.redis_prefix == f"{base.redis_prefix}demo143025:"
    demo = demo_settings(base, "demo143025")  # what the demo writes under that name
    assert (demo.topic_prefix, demo.redis_prefix) == (s.topic_prefix, s.redis_prefix)


@pytest.mark.parametrize("bad", ["a/b", "demo 1", "", "."])
def test_prefix_rejects_what_is_no_topic_name(bad: str) -> None:
    got = CliRunner().invoke(cli.main, ["alerts", "--prefix", bad])
    assert got.exit_code == 2
    assert "--prefix" in got.output


# --- one setting per endpoint ------------------------------------------------------------
def test_a_port_implies_the_client_address(monkeypatch) -> None:
    monkeypatch.setenv("REGLINK_KAFKA_PORT", "19192")
    monkeypatch.setenv("REGLINK_REDIS_PORT", "16400")
    s = load_settings()
    assert s.kafka_bootstrap == "127.0.0.1:19192"
    assert s.kafka_controller_port == 19193
    assert s.redis_url == "redis://127.0.0.1:16400/0"


def test_a_local_address_implies_the_port(monkeypatch) -> None:
    monkeypatch.setenv("REGLINK_KAFKA_BOOTSTRAP", "localhost:19300")
    monkeypatch.setenv("REGLINK_REDIS_URL", "redis://u:pw@127.0.0.1:16401/0")
    s = load_settings()
    assert (s.kafka_port, s.kafka_controller_port, s.redis_port) == (19300, 19301, 16401)
    assert s.redis_url == "redis://u:pw@127.0.0.1:16401/0"


def test_defaults_and_remote_addresses_keep_their_values() -> None:
    s = load_settings()
    assert (s.kafka_bootstrap, s.kafka_port, s.kafka_controller_port) == (
        "127.0.0.1:9092", 9092, 9093)
    assert (s.redis_url, s.redis_port) == ("redis://127.0.0.1:6379/0", 6379)
    remote = load_settings(kafka_bootstrap="kafka:19092", redis_url="redis://redis:6379/0",
                           redis_port=16400)
    assert (remote.kafka_bootstrap, remote.kafka_port) == ("kafka:19092", 9092)
    assert (remote.redis_url, remote.redis_port) == ("redis://redis:6379/0", 16400)


def test_a_port_that_contradicts_its_address_is_refused_in_one_line(monkeypatch) -> None:
    monkeypatch.setenv("REGLINK_REDIS_PORT", "16400")
    monkeypatch.setenv("REGLINK_REDIS_URL", "redis://worker:secret@127.0.0.1:6379/0")
    with pytest.raises(ConfigError) as err:
        load_settings()
    msg = str(err.value)
    assert "\n" not in msg
    assert "REGLINK_REDIS_PORT=16400" in msg and "names port 6379" in msg
    assert "secret" not in msg
    got = CliRunner().invoke(cli.main, ["stack", "status"])
    assert got.exit_code == 2
    assert got.output.count("\n") == 1 and "REGLINK_REDIS_PORT" in got.output


def test_kafka_port_and_bootstrap_must_agree(monkeypatch) -> None:
    monkeypatch.setenv("REGLINK_KAFKA_PORT", "19192")
    monkeypatch.setenv("REGLINK_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    with pytest.raises(ConfigError, match="REGLINK_KAFKA_PORT=19192 .* names port 9092"):
        load_settings()


# --- stack status ------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_status_probes_only_the_ports_the_settings_name(tmp_path, monkeypatch) -> None:
    """Only the ports are set: status reaches the Redis port they name (a listener here that
    no reglink state dir started, and is named as such), and no other."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    redis_port, kafka_port = listener.getsockname()[1], _free_port()
    accepted: list[int] = []

    def accept() -> None:
        listener.settimeout(10)
        try:
            conn, _ = listener.accept()
            accepted.append(conn.getsockname()[1])
            conn.close()
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.setenv("REGLINK_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("REGLINK_KAFKA_SECURITY", "plaintext")
    monkeypatch.setenv("REGLINK_REDIS_PORT", str(redis_port))
    monkeypatch.setenv("REGLINK_KAFKA_PORT", str(kafka_port))
    got = CliRunner().invoke(cli.main, ["stack", "status"])
    thread.join(10)
    listener.close()
    assert got.exit_code == 1
    lines = got.output.splitlines()
    assert lines[0] == f"stack  state dir {tmp_path}"
    kafka = next(line for line in lines if line.startswith("kafka"))
    redis = next(line for line in lines if line.startswith("redis"))
    assert f"127.0.0.1:{kafka_port}" in kafka and "answers no" in kafka
    assert f"redis://127.0.0.1:{redis_port}/0" in redis
    assert f"port {redis_port} is served by a process not started from state dir" in redis
    assert accepted == [redis_port]


def test_the_port_a_service_was_started_with(tmp_path) -> None:
    conf = tmp_path / "redis.conf"
    conf.write_text("bind 127.0.0.1\nport 16379\n")
    assert stack._started_port(conf, stack.REDIS_PORT_LINE) == 16379
    conf.write_text("port 16379\n# --- redis_tls ---\nport 0\ntls-port 16380\n")
    assert stack._started_port(conf, stack.REDIS_PORT_LINE) == 16380
    props = tmp_path / "server.properties"
    props.write_text("listeners=SASL_PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093\n"
                     "advertised.listeners=SASL_PLAINTEXT://127.0.0.1:19092\n")
    assert stack._started_port(props, stack.KAFKA_PORT_LINE) == 19092
    assert stack._started_port(tmp_path / "missing.conf", stack.REDIS_PORT_LINE) is None
