"""``reglink demo``: the whole pipeline on this machine, live.

stack up -> simulate N days -> a worker process -> the simulated days are written out one at a
time into per-source files, each followed by its source's connector (`publish --follow`) ->
alerts are printed as the worker emits them. Each run uses its own topic prefix and Redis prefix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from reglink.core import sources
from reglink.core.settings import Settings
from reglink.core.topics import SOURCES


def _day_of(record: dict) -> str:
    """The record's report date; "" for a source without a report time (they come first)."""
    field = sources.current()[record["source"]].report_time
    return record[field][:10] if field else ""


def run_demo(settings: Settings, persons: int = 400, days: int = 20, pace_s: float = 1.0,
             seed: int = 7) -> None:
    from connectors.publish import run_publish
    from reglink.devstack import stack
    from reglink.sim.simulate import run_simulate
    from reglink.tail import tail_alerts

    stack.up(settings)
    run_id = datetime.now().astimezone().strftime("%H%M%S")
    # The Redis prefix nests under the stack's: in scram mode the worker's Redis user may only
    # touch keys under the prefix the stack was started with.
    s = settings.model_copy(update={
        "topic_prefix": f"demo{run_id}.", "redis_prefix": f"{settings.redis_prefix}demo{run_id}:",
        "app_id": f"reglink-demo-{run_id}", "idle_timeout_s": 5.0})
    stack.create_topics_and_acls(s)  # scram: ACLs for the run's topics and worker group
    base = Path(s.state_dir) / "demo" / run_id
    print(run_simulate(persons=persons, days=days, start="2026-03-01", seed=seed,
                       out_dir=base / "sim"))

    worker = subprocess.Popen([sys.executable, "-m", "reglink.cli", "worker"],
                              env={**os.environ, **s.to_env()},
                              stdout=(base / "worker.log").open("wb"), stderr=subprocess.STDOUT)
    live = base / "live"
    live.mkdir(parents=True, exist_ok=True)
    for source in SOURCES:
        (live / f"{source}.jsonl").touch()
    stop = threading.Event()
    fed: list[float] = []  # monotonic time the feed finished
    summaries: dict[str, object] = {}

    def follow(source: str) -> None:
        summaries[source] = run_publish(s, source, [str(live / f"{source}.jsonl")],
                                        follow=True, stop=stop)

    threads = [threading.Thread(target=follow, args=(src,), daemon=True) for src in SOURCES]
    for t in threads:
        t.start()

    def feed() -> None:
        lines = (base / "sim" / "events.jsonl").read_text(encoding="utf-8").splitlines()
        by_day: dict[str, list[str]] = {}
        for line in lines:
            by_day.setdefault(_day_of(json.loads(line)), []).append(line)
        for day in sorted(by_day):
            handles = {}
            for line in by_day[day]:
                src = json.loads(line)["source"]
                if src not in handles:
                    handles[src] = (live / f"{src}.jsonl").open("a", encoding="utf-8")
                handles[src].write(line + "\n")
            for fh in handles.values():
                fh.close()
            if day:
                print(f"-- {day}: {len(by_day[day])} registry events sent", flush=True)
                time.sleep(pace_s)
        time.sleep(2.0)
        stop.set()
        fed.append(time.monotonic())

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    print(f"metrics: worker http://127.0.0.1:{s.worker_metrics_port}/metrics  "
          f"(worker log: {base / 'worker.log'})")
    print(f"alerts (topic {s.topic('alerts')}), live:", flush=True)
    try:
        # After the feed, every source goes idle and the worker flushes its watermark.
        shown = tail_alerts(s, from_beginning=True, until=lambda: bool(fed) and
                            time.monotonic() > fed[0] + s.idle_timeout_s + 8)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
    for source in SOURCES:
        summary = summaries.get(source)
        if summary is not None:
            print(f"  {source:9} {summary.line()}")
    print(f"{shown} alert messages. Replay the same input: "
          f"reglink replay {base / 'sim' / 'events.jsonl'} --out {base / 'replay'}")
