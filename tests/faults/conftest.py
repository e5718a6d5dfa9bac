"""Fault-injection fixtures: a stack of its own (other ports, own state dir) that the tests may
kill and restart without disturbing the shared stack, and one corpus replayed once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamkit import own_stack, stack_ports

from reglink.core.settings import Settings, load_settings
from reglink.evaluate import pairwise
from reglink.replay import run_replay
from reglink.sim.simulate import run_simulate

FAULT_PORTS = stack_ports(29092, 26379)  # + REGLINK_TEST_PORT_OFFSET
PERSONS = 11_000  # about 20k records over 30 days


@pytest.fixture(scope="session")
def fault_stack(tmp_path_factory) -> Settings:
    s = load_settings(state_dir=str(tmp_path_factory.mktemp("faultstack")),
                      hmac_key="fault-test-key", idle_timeout_s=3.0, **FAULT_PORTS)
    with own_stack(s):  # a stack that cannot start fails the tests (never skips)
        yield s


class Corpus:
    def __init__(self, sim: Path, replay: Path) -> None:
        self.sim, self.replay = sim, replay
        self.truth = {(r.get("record_id") or r.get("watch_id")): r["person"]
                      for r in map(json.loads, (sim / "truth.jsonl").open(encoding="utf-8"))}
        alerts = [json.loads(line) for line in (replay / "alerts.jsonl").open(encoding="utf-8")]
        self.final_alerts = {a["alert_id"]: a["status"] for a in alerts}
        links = [json.loads(line) for line in (replay / "links.jsonl").open(encoding="utf-8")]
        self.replay_links = {r["record_id"]: r["person_id"] for r in links if "record_id" in r}
        self.replay_f1 = pairwise(self.replay_links, self.truth)["f1"]
        self.record_ids = set(self.replay_links)
        self.records = sum(1 for _ in (sim / "events.jsonl").open(encoding="utf-8"))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, fault_stack) -> Corpus:
    base = tmp_path_factory.mktemp("corpus")
    run_simulate(persons=PERSONS, days=30, start="2026-03-01", seed=23, out_dir=base / "sim")
    run_replay(fault_stack, [base / "sim" / "events.jsonl"], base / "replay")
    c = Corpus(base / "sim", base / "replay")
    assert c.records >= 20_000 and len(c.final_alerts) > 100
    return c
