"""Prove a speed change did not change results: replay one fixed corpus with a base revision
and with the working tree, and compare ``links.jsonl``, ``alerts.jsonl`` byte for byte plus the
``reglink evaluate`` figures.

    .venv/bin/python -m benchmarks.equivalence SIM [--base REV|pure] [--rounds N] [--plugins A,B]

The base revision is checked out into a temporary ``git worktree`` and run with the same
interpreter (``PYTHONPATH`` points at it), so both sides see the same dependencies. Exit 0 only
when everything is identical. Prints both runs' records/s (same machine, same run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import only_plugins

ROOT = Path(__file__).resolve().parent.parent
BASE_REV = "5b2600d"  # default base: main before the replay and worker performance work


def _replay(src: Path, files: list[Path], out: Path,
            plugins: list[str] | None = None, pure: bool = False) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child: user + system). ``plugins``: run only the
    pipeline plug-ins of these names (this tree only). ``pure``: without the compiled core."""
    env = {k: v for k, v in os.environ.items() if k != "REGLINK_PURE"}
    env["PYTHONPATH"] = str(src)
    if pure:
        env["REGLINK_PURE"] = "1"
    only = only_plugins(plugins) if plugins else ""
    code = (f"import sys; {only}from reglink.cli import main; "
            "sys.argv=['reglink','replay',*sys.argv[1:]]; main()")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *map(str, files), "--out", str(out)],
                            env=env, cwd=src, stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"replay at {src} failed")
    return time.perf_counter() - t0, usage.ru_utime + usage.ru_stime


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _evaluate(sim: Path, out: Path) -> dict:
    from reglink.evaluate import evaluate
    return evaluate(sim, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sim", type=Path, help="a `reglink simulate` output directory")
    ap.add_argument("--base", default=BASE_REV,
                    help="git revision to compare against; 'pure': this tree without its "
                         "compiled core (REGLINK_PURE=1), against this tree with it")
    ap.add_argument("--json", type=Path, help="write the comparison here")
    ap.add_argument("--rounds", type=int, default=1,
                    help="CPU timing rounds, base and tree alternated (the first pair's "
                         "outputs are compared): one pair moves with the machine by ±10 %%")
    ap.add_argument("--plugins", default=None,
                    help="comma-separated: run this tree with only these pipeline plug-ins "
                         "(e.g. the rules a base revision had, to measure the cost of the "
                         "same work; the others' outputs are then missing from this side)")
    a = ap.parse_args(argv)
    plugins = a.plugins.split(",") if a.plugins else None
    files = [a.sim.resolve() / "events.jsonl"]
    n = sum(1 for _ in files[0].open("rb"))
    with tempfile.TemporaryDirectory(prefix="reglink-eq-") as tmp:
        tmp = Path(tmp)
        pure = a.base == "pure"
        wt = ROOT if pure else tmp / "base"
        if not pure:
            subprocess.run(["git", "worktree", "add", "--detach", str(wt), a.base], cwd=ROOT,
                           check=True, capture_output=True)
        rounds: dict[str, list[tuple[float, float]]] = {"base": [], "new": []}
        try:
            for r in range(max(1, a.rounds)):
                sides = [("base", wt), ("new", ROOT)]
                for side, src in sides if r % 2 == 0 else sides[::-1]:
                    out = tmp / f"out-{side}" if r == 0 else tmp / f"out-{side}-{r}"
                    rounds[side].append(_replay(
                        src, files, out, plugins if side == "new" or pure else None,
                        pure=pure and side == "base"))
        finally:
            if not pure:
                subprocess.run(["git", "worktree", "remove", "--force", str(wt)], cwd=ROOT,
                               capture_output=True)
        same = {}
        names = ["links.jsonl", "alerts.jsonl", "deadletter.jsonl"]
        names += [n for n in ("stats.jsonl", "quality.jsonl")
                  if (tmp / "out-base" / n).exists() and (tmp / "out-new" / n).exists()]
        for name in names:
            same[name] = _digest(tmp / "out-base" / name) == _digest(tmp / "out-new" / name)
        ev_base, ev_new = _evaluate(a.sim, tmp / "out-base"), _evaluate(a.sim, tmp / "out-new")
        alert_ids = [sorted({json.loads(x)["alert_id"] for x in
                             (tmp / d / "alerts.jsonl").open()}) for d in ("out-base", "out-new")]
    # medians over the rounds (one round: that pair)
    (t_base, c_base), (t_new, c_new) = (
        tuple(statistics.median(x[i] for x in rounds[side]) for i in (0, 1))
        for side in ("base", "new"))
    result = {
        "corpus": str(a.sim), "records": n, "base": a.base, "plugins": plugins or "all",
        "identical_files": same, "identical_evaluate": ev_base == ev_new,
        "identical_alert_ids": alert_ids[0] == alert_ids[1], "alerts": len(alert_ids[1]),
        "links_f1": ev_new["links"]["f1"],
        "evaluate": {"base": ev_base, "new": ev_new},
        "seconds": {"base": round(t_base, 2), "new": round(t_new, 2)},
        "records_per_s": {"base": round(n / t_base), "new": round(n / t_new)},
        "speedup": round(t_base / t_new, 2),
        "cpu_seconds": {"base": round(c_base, 2), "new": round(c_new, 2)},
        "records_per_cpu_s": {"base": round(n / c_base), "new": round(n / c_new)},
        "cpu_speedup": round(c_base / c_new, 2),
        "rounds": {side: [{"seconds": round(t, 2), "cpu_seconds": round(c, 2)}
                          for t, c in runs] for side, runs in rounds.items()},
    }
    ok = all(same.values()) and result["identical_evaluate"] and result["identical_alert_ids"]
    result["ok"] = ok
    print(json.dumps(result, indent=2))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
