"""Helpers for stream tests: run `reglink worker` as a real process, read topics to the end."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from reglink.core.settings import Settings
from reglink.devstack import stack


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


EPHEMERAL_START = (stack._ephemeral_range() or (32768, 60999))[0]  # Linux default if unread


def stack_ports(kafka: int, redis: int) -> dict:
    """Settings for a test's own stack: Kafka on ``kafka`` (controller ``kafka + 1``), Redis on
    ``redis``, both shifted by ``REGLINK_TEST_PORT_OFFSET`` so that two checkouts can run the
    suite at once."""
    off = int(os.environ.get("REGLINK_TEST_PORT_OFFSET", "0"))
    k, r = kafka + off, redis + off
    if max(k + 1, r) >= EPHEMERAL_START:
        # client sockets take local ports from that range: a broker there can fail to bind
        raise ValueError(f"REGLINK_TEST_PORT_OFFSET={off} puts ports at or past "
                         f"{EPHEMERAL_START}, the kernel's ephemeral range (use <= 3000)")
    return {"kafka_port": k, "kafka_controller_port": k + 1,
            "kafka_bootstrap": f"127.0.0.1:{k}", "redis_port": r,
            "redis_url": f"redis://127.0.0.1:{r}/0"}


@contextlib.contextmanager
def own_stack(s: Settings):
    """A test's own stack (ports, state dir of its own) for the ``with`` block. Stopped at the
    end, and also when starting it fails halfway (a Redis that came up before Kafka timed out
    would otherwise hold its port against the next run)."""
    try:
        stack.up(s)
        yield s
    finally:
        stack.down(s)


def stop_process(proc: subprocess.Popen | None, grace_s: float = 15) -> None:
    """Terminate a child process, then kill it if it has not exited within ``grace_s``."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def settings_env(s: Settings) -> dict[str, str]:
    return {**os.environ, **s.to_env()}


class WorkerProcess:
    """`reglink worker` in a subprocess with the test's settings."""

    def __init__(self, s: Settings, workdir: Path) -> None:
        self.s = s
        self.log = workdir / f"worker-{int(time.time() * 1000)}.log"
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        fh = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reglink.cli", "worker", "--workdir",
             str(self.workdir / "faust")],
            env=settings_env(self.s), stdout=fh, stderr=subprocess.STDOUT)
        return self

    def stop(self) -> None:
        stop_process(self.proc, 20)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


# Who reads a topic in a test, in scram mode: the principal the ACL table lets read it
# (docs/security.md), so that reading the results also exercises the ACLs. The dead letters
# (raw input) are read by the operators' role, as `reglink deadletter` does.
READER_OF = {"alerts": "reader", "linked": "console", "identity.events": "console",
             "decisions": "console", "audit": "console", "deadletter": "console",
             "stats": "reader"}


def publish_simulation(s: Settings, sim: Path) -> tuple[int, int]:
    """Publish every source file of a simulated corpus (each must reconcile: read = published
    + dead-lettered); returns (records published, records the worker will link: all but the
    watchlist's)."""
    from connectors.publish import run_publish
    from reglink.core.topics import SOURCES

    published = linked = 0
    for source in SOURCES:
        summary = run_publish(s, source, [str(sim / f"{source}.jsonl")])
        assert summary.reconciles(), summary.line()
        published += summary.published
        linked += summary.published if source != "watchlist" else 0
    return published, linked


def reader_role(name: str) -> str:
    return READER_OF.get(name, "console" if name.endswith(".raw") else "admin")


def read_topic(s: Settings, name: str, idle_ms: int = 2000, role: str | None = None) -> list[dict]:
    from kafka import KafkaConsumer

    from reglink.kafka_auth import kafka_python_kwargs

    consumer = KafkaConsumer(s.topic(name), bootstrap_servers=s.kafka_bootstrap,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=idle_ms,
                             **kafka_python_kwargs(s, role or reader_role(name)))
    try:
        return [json.loads(m.value) for m in consumer]
    finally:
        consumer.close()


def wait_for_count(s: Settings, name: str, want: int, timeout: float,
                   worker: WorkerProcess | None = None) -> list[dict]:
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = read_topic(s, name, idle_ms=1000)
        if len(rows) >= want:
            return rows
        if worker is not None and not worker.alive():
            raise AssertionError(f"worker died:\n{worker.tail()}")
        time.sleep(1.0)
    return rows


def final_statuses(alerts: list[dict]) -> dict[str, str]:
    """alert_id -> last status, in emission order (duplicates collapse)."""
    out: dict[str, str] = {}
    for a in alerts:
        out[a["alert_id"]] = a["status"]
    return out
