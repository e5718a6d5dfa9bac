"""Helpers for the console's browser tests: a console process, a worker and a console on a
test's own topics (:func:`console_stack`), headless Chromium, and the steps a reviewer takes
(log in, decide, take a screenshot for docs/screenshots/, skipped with REGLINK_SCREENSHOTS=0)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait
from streamkit import WorkerProcess, free_port, settings_env, stop_process, wait_for_count

from connectors.publish import run_publish
from reglink.console.auth import add_user
from reglink.core.settings import Settings
from reglink.core.topics import SOURCES

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots"
PASSWORDS = {"ana": "ana-pw-1234", "bo": "bo-pw-1234", "sup": "sup-pw-1234",
             "audrey": "audrey-pw-1234"}
ROLES = {"ana": "operator", "bo": "operator", "sup": "supervisor", "audrey": "auditor"}


# ---------------------------------------------------------------- processes
class ConsoleProcess:
    def __init__(self, s, workdir: Path) -> None:
        self.s, self.port = s, s.console_port
        self.log = workdir / "console.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> ConsoleProcess:
        env = {**settings_env(self.s), "REGLINK_CONSOLE_DEV_SECRET": "1"}  # a test's console
        self.proc = subprocess.Popen([sys.executable, "-m", "reglink.cli", "console"],
                                     env=env, stdout=self.log.open("wb"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"console died:\n{self.log.read_text()[-3000:]}")
            try:
                got = json.loads(urllib.request.urlopen(f"{self.url}/healthz", timeout=2).read())
                if got["ready"]:
                    return self
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"console not ready:\n{self.log.read_text()[-3000:]}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)


def chromium() -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", "--window-size=1400,1000",
                f"--user-data-dir={tempfile.mkdtemp(prefix='reglink-chromium-')}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


class ConsoleStack:
    """A worker and a console on a test's own topics (settings ``s``), the users of
    :data:`PASSWORDS`, the input files in ``inputs`` (``<source>.jsonl``) and the browsers
    the test opened."""

    def __init__(self, s: Settings, worker: WorkerProcess, console: ConsoleProcess,
                 inputs: Path, tmp: Path) -> None:
        self.s, self.worker, self.console, self.inputs, self.tmp = s, worker, console, inputs, tmp
        self.browsers: list[webdriver.Chrome] = []

    def browser(self) -> webdriver.Chrome:
        b = chromium()
        self.browsers.append(b)
        return b

    def publish(self) -> None:
        """Publish every source's file in ``inputs`` with the connector, as an operator would."""
        for source in SOURCES:
            path = self.inputs / f"{source}.jsonl"
            if path.exists():
                summary = run_publish(self.s, source, [str(path)])
                assert summary.reconciles(), summary.line()

    def alerts(self, n: int = 4) -> list[dict]:
        """The alert messages once there are at least ``n`` (the worker must stay up)."""
        got = wait_for_count(self.s, "alerts", n, timeout=180, worker=self.worker)
        assert len(got) >= n, f"{len(got)} alerts\n{self.worker.tail()}"
        return got


@contextlib.contextmanager
def console_stack(kafka_settings: Settings, tmp_path: Path, inputs: Path,
                  **settings: object) -> Iterator[ConsoleStack]:
    """A users file, a worker and a console on the test's topics, stopped at the end with
    the browsers the test opened. Sources idle after 3 s, so the watermark moves on once
    the input is in; ``settings`` override the stack's (e.g. ``quality_every_s``)."""
    users = tmp_path / "users.json"
    for name, pw in PASSWORDS.items():
        add_user(users, name, ROLES[name], pw)
    s = kafka_settings.model_copy(update={
        "idle_timeout_s": 3.0, "worker_metrics_port": free_port(),
        "console_port": free_port(), "console_users_file": users, **settings})
    worker = WorkerProcess(s, tmp_path).start()
    console: ConsoleProcess | None = None
    st: ConsoleStack | None = None
    try:
        console = ConsoleProcess(s, tmp_path).start()
        st = ConsoleStack(s, worker, console, inputs, tmp_path)
        yield st
    finally:
        for b in st.browsers if st is not None else ():
            b.quit()
        if console is not None:
            console.stop()
        worker.stop()


# ---------------------------------------------------------------- a reviewer's steps
def login(b: webdriver.Chrome, url: str, name: str) -> None:
    b.get(f"{url}/login")
    b.find_element(By.ID, "username").send_keys(name)
    b.find_element(By.ID, "password").send_keys(PASSWORDS[name])
    b.find_element(By.ID, "login").click()
    WebDriverWait(b, 10).until(EC.presence_of_element_located((By.ID, "who")))


def shot(b: webdriver.Chrome, name: str) -> None:
    if os.environ.get("REGLINK_SCREENSHOTS", "1") != "0":
        SHOTS.mkdir(parents=True, exist_ok=True)
        height = b.execute_script("return document.documentElement.scrollHeight;")
        b.set_window_size(1400, min(max(int(height) + 140, 700), 2400))
        b.save_screenshot(str(SHOTS / f"{name}.png"))
        b.set_window_size(1400, 1000)


def decide(b: webdriver.Chrome, url: str, aid: str, action: str, reason: str) -> str:
    """Take a decision through the form; returns the review state the page then shows."""
    b.get(f"{url}/alerts/{aid}")
    Select(b.find_element(By.ID, f"reason-{action}")).select_by_value(reason)
    b.find_element(By.ID, f"do-{action}").click()
    WebDriverWait(b, 10).until(EC.presence_of_element_located((By.ID, "flash")))
    return b.find_element(By.ID, "review-status").text
