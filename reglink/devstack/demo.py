"""``reglink demo``: the whole pipeline on this machine, live.

stack up -> simulate N days -> a worker process -> the simulated days are written out one at a
time into per-source files, each followed by its source's connector (`publish --follow`) ->
alerts are printed as the worker emits them. Each run uses its own topic prefix and Redis prefix
(the run name, demo<HHMMSS>); at the end the demo prints the commands that look at what it made
(`--prefix <run name>`) and the one that resets the stack.
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


def demo_settings(settings: Settings, run: str) -> Settings:
    """The settings of the demo run ``run``: topic prefix ``<run>.``; the Redis prefix nests
    under the stack's (in scram mode the Redis users may only touch keys under the prefix the
    stack was started with). `--prefix <run>` on the command line names the same prefixes."""
    return settings.model_copy(update={
        "topic_prefix": f"{run}.", "redis_prefix": f"{settings.redis_prefix}{run}:",
        "app_id": f"reglink-{run}", "idle_timeout_s": 5.0})


def next_steps(s: Settings, run: str, person_id: str | None, base: Path) -> list[str]:
    """The commands that look at what the run ``run`` made, as the demo prints them."""
    state, here = Path(s.state_dir).resolve(), base.resolve()
    users = here / "users.json"
    who = person_id or "<a person id (P…) from the alerts>"
    return [
        f"The demo's records, identities and alerts stay on the stack under topic prefix "
        f"{s.topic_prefix} and Redis prefix {s.redis_prefix} (run name {run}). Next:",
        "  see its alerts (all of them, then stop after 5 idle seconds):",
        f"    reglink alerts --prefix {run} --from-beginning --timeout 5",
        "  look up a person (audited; the justification is required):",
        f'    reglink person {who} --prefix {run} -j "demo: look at a linked person"',
        "  review in the console (http://127.0.0.1:"
        f"{s.console_port}/; the first command asks for a password; the demo's console runs "
        "with the development session secret, never do that in production):",
        f"    reglink console-user demo --role supervisor --users-file {users}",
        f"    REGLINK_CONSOLE_DEV_SECRET=1 REGLINK_CONSOLE_USERS_FILE={users} "
        f"reglink console --prefix {run}",
        "  replay the same input in one process (no stack):",
        f"    reglink replay {here / 'sim' / 'events.jsonl'} --out {here / 'replay'}",
        "  reset: stop the stack and delete its data (every demo run, all topics and Redis keys):",
        f"    reglink stack down && rm -rf {state}",
    ]


def run_demo(settings: Settings, persons: int = 400, days: int = 20, pace_s: float = 1.0,
             seed: int = 7, run: str | None = None, out_dir: Path | None = None) -> None:
    """The demo; ``run`` names it (default demo<HHMMSS>), ``out_dir`` gets its files (default
    <state_dir>/demo/<HHMMSS>)."""
    from connectors.publish import run_publish
    from reglink.devstack import stack
    from reglink.person import _read_all
    from reglink.sim.simulate import run_simulate
    from reglink.tail import tail_alerts

    stack.up(settings)
    run_id = datetime.now().astimezone().strftime("%H%M%S")
    run = run or f"demo{run_id}"
    s = demo_settings(settings, run)
    stack.create_topics_and_acls(s)  # scram: ACLs for the run's topics and worker group
    base = out_dir or Path(s.state_dir) / "demo" / run_id
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
    persons_seen: list[str] = []
    try:
        # After the feed, every source goes idle and the worker flushes its watermark.
        shown = tail_alerts(s, from_beginning=True, until=lambda: bool(fed) and
                            time.monotonic() > fed[0] + s.idle_timeout_s + 8,
                            on_alert=lambda a: persons_seen.append(a.get("person_id") or ""))
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
    person_id = next((p for p in persons_seen if p), None)
    if person_id is None:
        person_id = next((ln["person_id"] for _ts, ln in _read_all(s, ["linked"])["linked"]
                          if ln.get("person_id")), None)
    print(f"{shown} alert messages; the worker has stopped.\n")
    print("\n".join(next_steps(s, run, person_id, base)), flush=True)
