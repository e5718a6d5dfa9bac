"""Run one fault scenario: publish the corpus, run a supervised worker, inject faults at
points of progress, then reconcile everything the stream produced against replay."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from streamkit import WorkerProcess, free_port, read_topic

from connectors.publish import run_publish
from reglink.core.settings import Settings
from reglink.core.topics import SOURCES
from reglink.devstack.stack import create_topics_and_acls
from reglink.evaluate import pairwise
from reglink.kafka_auth import kafka_python_kwargs

RESULTS = Path(os.environ.get("REGLINK_FAULT_RESULTS", "fault-results.jsonl"))


class Supervisor:
    """Keeps one worker running, as systemd or Kubernetes would; counts restarts."""

    def __init__(self, s: Settings, workdir: Path) -> None:
        self.s, self.workdir = s, workdir
        self.worker = WorkerProcess(s, workdir).start()
        self.restarts = 0
        self.logs: list[Path] = [self.worker.log]

    def poll(self) -> None:
        if not self.worker.alive():
            self.restarts += 1
            self.worker = WorkerProcess(self.s, self.workdir).start()
            self.logs.append(self.worker.log)

    def kill9(self) -> None:
        if self.worker.proc and self.worker.alive():
            os.kill(self.worker.proc.pid, signal.SIGKILL)
            self.worker.proc.wait(10)
        self.poll()

    def stop(self) -> None:
        self.worker.stop()


def progress(s: Settings) -> float:
    """Share of the source records whose offsets the worker group has committed (read as
    admin: an observer of the worker's group, not a member)."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=s.kafka_bootstrap, group_id=s.app_id,
                      enable_auto_commit=False, request_timeout_ms=10000,
                      **kafka_python_kwargs(s, "admin"))
    try:
        tps = [TopicPartition(s.topic(f"{src}.raw"), p) for src in SOURCES
               for p in sorted(c.partitions_for_topic(s.topic(f"{src}.raw")) or ())]
        ends = c.end_offsets(tps)
        done = sum(min(c.committed(tp) or 0, ends[tp]) for tp in tps)
        return done / max(1, sum(ends.values()))
    except Exception:  # noqa: BLE001 - broker down during a fault: no progress reading
        return -1.0
    finally:
        c.close()


@dataclass
class Outcome:
    name: str
    seconds: float = 0.0
    restarts: int = 0
    linked_records: int = 0
    missing_records: int = 0
    deadlettered: int = 0
    alert_messages: int = 0
    alert_ids: int = 0
    duplicate_deliveries: int = 0
    duplicates_differ: int = 0
    alerts_agree: bool = False
    f1_stream: float = 0.0
    f1_replay: float = 0.0
    store_problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run_scenario(name: str, base: Settings, corpus, tmp: Path, faults: dict[float, callable],
                 redis_client, timeout: float = 900.0) -> Outcome:
    """``faults``: progress -> ``fault(base, supervisor)``. A fault restarts services with
    ``base``, the stack's settings: with the scenario's Redis prefix the restarted Redis
    would confine its users to that prefix."""
    u = uuid.uuid4().hex[:6]
    # Redis prefix under the stack's (scram: the Redis users are confined to it); topics and,
    # in scram mode, their ACLs created as admin; the worker and connectors run as their roles
    s = base.model_copy(update={"topic_prefix": f"f{u}.",
                                "redis_prefix": f"{base.redis_prefix}f{u}:",
                                "app_id": f"fault-{u}", "worker_metrics_port": free_port()})
    create_topics_and_acls(s)
    for source in SOURCES:
        summary = run_publish(s, source, [str(corpus.sim / f"{source}.jsonl")])
        assert summary.reconciles(), summary.line()
    out = Outcome(name)
    t0 = time.monotonic()
    sup = Supervisor(s, tmp)
    pending = sorted(faults.items())
    try:
        while time.monotonic() - t0 < timeout:
            sup.poll()
            p = progress(s)
            while pending and p >= pending[0][0]:
                at, fault = pending.pop(0)
                out.notes.append(f"{fault.__name__} at {p:.0%}")
                fault(base, sup)  # the stack's own settings (the scenario's: sup.s)
            if p >= 1.0 and not pending:
                break
            time.sleep(1.0)
        # every source idle -> the watermark flushes; wait for alerts to settle
        settle = time.monotonic() + 90
        last = None
        while time.monotonic() < settle:
            sup.poll()
            alerts = read_topic(s, "alerts", idle_ms=1500)
            final = {a["alert_id"]: a["status"] for a in alerts}
            if final == corpus.final_alerts or (last is not None and final == last
                                                and time.monotonic() > settle - 60):
                break
            last = final
            time.sleep(3)
    finally:
        sup.stop()
    out.seconds = round(time.monotonic() - t0, 1)
    out.restarts = sup.restarts

    linked = read_topic(s, "linked", idle_ms=3000)
    events = read_topic(s, "identity.events", idle_ms=2000)
    dead = read_topic(s, "deadletter", idle_ms=1000)
    alerts = read_topic(s, "alerts", idle_ms=2000)
    seen = {r["record_id"] for r in linked}
    out.linked_records = len(seen)
    out.missing_records = len(corpus.record_ids - seen)
    out.deadlettered = len(dead)

    by_key: dict[tuple, list[str]] = defaultdict(list)
    for a in alerts:
        by_key[(a["alert_id"], a["status"])].append(json.dumps(a, sort_keys=True))
    out.alert_messages = len(alerts)
    out.alert_ids = len({a["alert_id"] for a in alerts})
    out.duplicate_deliveries = sum(len(v) - 1 for v in by_key.values())
    out.duplicates_differ = sum(1 for v in by_key.values() if len(set(v)) > 1)
    final = {}
    for a in alerts:
        final[a["alert_id"]] = a["status"]
    out.alerts_agree = final == corpus.final_alerts
    if not out.alerts_agree:
        diff = {k: (corpus.final_alerts.get(k), final.get(k))
                for k in set(final) | set(corpus.final_alerts)
                if final.get(k) != corpus.final_alerts.get(k)}
        out.notes.append(f"alert differences: {len(diff)} e.g. {list(diff.items())[:5]}")
        seq: dict[str, list[str]] = defaultdict(list)
        for a in alerts:
            seq[a["alert_id"]].append(f'{a["rule"]}:{a["status"]}')
        out.notes.append("their messages in topic order: "
                         + "; ".join(f"{k} {seq[k]}" for k in list(diff)[:8]))

    into = {e["person_id"]: e["into"] for e in events if e.get("event") == "merged"}

    def resolve(pid: str) -> str:
        for _ in range(64):
            if pid not in into:
                break
            pid = into[pid]
        return pid

    final_links: dict[str, str] = {}
    for r in linked:  # a re-delivered record repeats its link; the last one wins
        final_links[r["record_id"]] = resolve(r["person_id"])
    out.f1_stream = pairwise(final_links, corpus.truth)["f1"]
    out.f1_replay = corpus.replay_f1
    out.store_problems = store_problems(redis_client, s.redis_prefix)
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(out.__dict__, ensure_ascii=False) + "\n")
    return out


def store_problems(r, prefix: str) -> list[str]:
    """Half-applied merges or dangling links in the identity store."""
    problems = []
    pointers = {}
    for key in r.scan_iter(match=f"{prefix}m:*", count=2000):
        pointers[key.decode()[len(prefix) + 2:]] = r.get(key).decode()
    def follow(pid: str) -> str:
        for _ in range(64):
            if pid not in pointers:
                break
            pid = pointers[pid]
        return pid

    for absorbed, into in pointers.items():
        if r.exists(f"{prefix}i:{absorbed}"):
            problems.append(f"merged identity {absorbed} still live")
        if not r.exists(f"{prefix}i:{follow(into)}"):
            problems.append(f"merge pointer {absorbed} -> {follow(into)} leads nowhere")
    for n, key in enumerate(r.scan_iter(match=f"{prefix}l:*", count=2000)):
        if n % 25:  # every 25th link is enough to find dangling ones
            continue
        pid = follow(r.get(key).decode())
        if not r.exists(f"{prefix}i:{pid}"):
            problems.append(f"link {key.decode()} -> {pid} leads nowhere")
    return problems[:20]
