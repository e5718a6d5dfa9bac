"""Shared helpers: corpora, result files, percentiles, subprocess timing with peak RSS."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CACHE = Path(os.environ.get("REGLINK_BENCH_CACHE", "/tmp/reglink-bench"))


def corpus(records: int, days: int = 30) -> Path:
    """A `reglink simulate` corpus of about ``records`` records (cached by size)."""
    out = CACHE / f"sim-{records}"
    if not (out / "events.jsonl").exists():
        persons = max(100, int(records * 55000 / 103834))  # measured: ~1.89 records/person
        subprocess.run([sys.executable, "-m", "reglink.cli", "simulate", "--persons",
                        str(persons), "--days", str(days), "--out", str(out)],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return out


def lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def run_timed(argv: list[str], env: dict | None = None) -> tuple[float, int]:
    """Run a child; (wall seconds, peak RSS in MiB of that child)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv} failed")
    return wall, usage.ru_maxrss // 1024


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def machine() -> dict:
    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "load_avg_at_start": os.getloadavg(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "rusage_self_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2) + "\n")
    return path


def only_plugins(names: list[str]) -> str:
    """Python statements that make this tree's pipelines run only the plug-ins ``names``
    (prepended to a child's ``-c`` code, before reglink's CLI is imported)."""
    return ("import reglink.core.pipeline as p; "
            f"p.PLUGINS = tuple(r for r in p.PLUGINS if r.name in {names!r}); ")

