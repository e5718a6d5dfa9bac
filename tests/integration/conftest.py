"""Fixtures of the console's browser tests (tests/integration/test_console_*browser.py)."""

from __future__ import annotations

import pytest
from streamkit import (
    PASSWORDS,
    ROLES,
    ConsoleProcess,
    WorkerProcess,
    chromium,
    free_port,
    wait_for_count,
)

from connectors.publish import run_publish
from reglink.console.auth import add_user
from reglink.core.topics import SOURCES
from reglink.sim.simulate import run_simulate

#: The simulated corpus of ``stack`` unless a test asks for another.
SIMULATE = {"persons": 400, "days": 14, "start": "2026-03-01", "seed": 3}


@pytest.fixture
def stack(request, kafka_settings, redis_client, tmp_path):
    """Simulated data, a users file, a worker and a console on the test's own topics. A test
    changes the corpus or settings with indirect parametrisation:
    ``@pytest.mark.parametrize("stack", [{"simulate": {"days": 35}, "settings": {...}}],
    indirect=True)``."""
    opts = getattr(request, "param", {})
    users = tmp_path / "users.json"
    for name, pw in PASSWORDS.items():
        add_user(users, name, ROLES[name], pw)
    s = kafka_settings.model_copy(update={
        "idle_timeout_s": 3.0, "worker_metrics_port": free_port(),
        "console_port": free_port(), "console_users_file": users, **opts.get("settings", {})})
    sim = tmp_path / "sim"
    run_simulate(**{**SIMULATE, **opts.get("simulate", {})}, out_dir=sim)
    worker = WorkerProcess(s, tmp_path).start()
    console = ConsoleProcess(s, tmp_path).start()
    browsers: list = []

    def browser():
        b = chromium()
        browsers.append(b)
        return b

    def publish() -> None:
        for source in SOURCES:
            summary = run_publish(s, source, [str(sim / f"{source}.jsonl")])
            assert summary.reconciles(), summary.line()

    def alerts(n: int = 4) -> list[dict]:
        got = wait_for_count(s, "alerts", n, timeout=180, worker=worker)
        assert len(got) >= n, f"{len(got)} alerts\n{worker.tail()}"
        return got

    yield type("Stack", (), {"s": s, "sim": sim, "worker": worker, "console": console,
                             "browser": staticmethod(browser), "publish": staticmethod(publish),
                             "alerts": staticmethod(alerts), "tmp": tmp_path})
    for b in browsers:
        b.quit()
    console.stop()
    worker.stop()
