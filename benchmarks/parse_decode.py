"""In-process microbenchmark of ``reglink.core.contract.parse_record``: the msgspec-first decode
against the stdlib-only decode it replaced (``contract._msgspec_decode`` set to None), on the
lines of one corpus, alternated ``--rounds`` times in one process so both see the same machine.

    PYTHONPATH=. .venv/bin/python -m benchmarks.parse_decode [EVENTS_JSONL] [--records 20000]
        [--rounds 3]

``EVENTS_JSONL`` defaults to ``/tmp/reglink-bench/sim-20000/events.jsonl`` (a ``reglink
simulate`` output); each line is parsed under the source its ``source`` field names, as the
replay does. Prints JSON: microseconds per record of each path in each round, and the
dead-letter counts of both (which must be equal). Not a test: figures on a shared machine are
noisy, hence the alternation.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from reglink.core import contract
from reglink.core.contract import SOURCES, parse_record

DEFAULT = Path("/tmp/reglink-bench/sim-20000/events.jsonl")


def _lines(path: Path, limit: int) -> list[tuple[bytes, str]]:
    out = []
    with path.open("rb") as fh:
        for n, raw in enumerate(fh):
            if n >= limit:
                break
            raw = raw.rstrip(b"\r\n")
            try:
                src = json.loads(raw).get("source")
            except (ValueError, AttributeError):
                src = None
            out.append((raw, src if src in SOURCES else "person"))
    return out


def _run(lines: list[tuple[bytes, str]]) -> tuple[float, int]:
    """(microseconds per record, dead letters) of one pass of ``parse_record``."""
    origin = {"file": "bench", "line": 0}
    dead = 0
    t0 = time.perf_counter()
    for raw, src in lines:
        dead += parse_record(raw, src, origin)[1] is not None
    return (time.perf_counter() - t0) / len(lines) * 1e6, dead


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("events", type=Path, nargs="?", default=DEFAULT)
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    lines = _lines(a.events, a.records)
    fast = contract._msgspec_decode
    if fast is None:
        raise SystemExit("msgspec is not installed: nothing to compare")
    _run(lines[:2000])  # warm up: compiled validators, caches
    rounds = []
    dead: dict[str, set[int]] = {"stdlib": set(), "msgspec": set()}
    try:
        for _ in range(a.rounds):
            row = {}
            for name, decode in (("stdlib", None), ("msgspec", fast)):
                contract._msgspec_decode = decode
                row[name], n_dead = _run(lines)
                dead[name].add(n_dead)
            rounds.append({k: round(v, 2) for k, v in row.items()})
    finally:
        contract._msgspec_decode = fast
    mean = {k: round(sum(r[k] for r in rounds) / len(rounds), 2) for k in ("stdlib", "msgspec")}
    print(json.dumps({
        "events": str(a.events), "records": len(lines), "unit": "us per record",
        "rounds": rounds, "mean": mean,
        "speedup": round(mean["stdlib"] / mean["msgspec"], 3),
        "dead_letters": {k: sorted(v) for k, v in dead.items()},
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
