"""What a longer allowed lateness costs: how much later alerts fire, and the state the
late-data re-evaluation keeps (docs/reliability.md, "A source that lags").

    .venv/bin/python -m benchmarks.lateness SIM_DIR [--source residence --hours 26]

Replays ``SIM_DIR/events.jsonl`` in file order twice, with the default allowed lateness and
with ``--hours`` for ``--source``, and reports for each alert's first ``raised`` or
``resolved`` message its delay: the highest report time read so far (the stream's event-time
"now") less the alert's ``raised_at``. Then the per-person state the re-evaluation keeps (the
ids of the standing alerts in each ``s:<person_id>``) and how many records arrived late.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from reglink.core.contract import report_time
from reglink.core.pipeline import Pipeline
from reglink.core.rules.clock import ts
from reglink.core.settings import load_settings
from reglink.replay import iter_lines, parse_line
from reglink.stores import schema as sk
from reglink.stores.kv import MemoryKV


def run(sim: Path, **overrides: object) -> dict[str, object]:
    store = MemoryKV()
    pipe = Pipeline(load_settings(hmac_key="lateness-benchmark", **overrides), store)
    now = float("-inf")
    delays: dict[str, float] = {}
    late = 0
    for n, raw in iter_lines(sim / "events.jsonl"):
        record, dl = parse_line(raw, None, {"line": n})
        if dl is not None:
            continue
        rt = report_time(record)
        if rt is not None:
            late += rt.timestamp() <= pipe.wm.value
            now = max(now, rt.timestamp())
        _pid, outs = pipe.process(record)
        for o in outs:
            a = o.value
            if o.topic == "alerts" and a["status"] in ("raised", "resolved") \
                    and a["rule"] != "watchlist_match":
                delays.setdefault(a["alert_id"], (now - ts(a["raised_at"])) / 3600)
    pipe.finish()
    ids = bytes_ = persons = 0
    for key, value in store._str.items():  # the committed strings of the embedded store
        if not key.startswith(sk.STAYS):
            continue
        stays = sk.decode_stays(value)
        held = [ps.alerts for ps in stays.values() if ps.alerts]
        if held:
            persons += 1
            ids += sum(len(a) for a in held)
            bytes_ += sum(len(json.dumps(a)) + len('"al":,') for a in held)
    hours = sorted(delays.values())
    q = statistics.quantiles(hours, n=20) if len(hours) > 1 else hours * 19
    return {"alerts_fired_in_stream": len(hours), "late_records": late,
            "delay_hours": {"median": round(statistics.median(hours), 1),
                            "p95": round(q[18], 1), "max": round(hours[-1], 1)},
            "standing_alert_ids": {"persons": persons, "ids": ids, "bytes": bytes_}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sim", type=Path)
    ap.add_argument("--source", default="residence")
    ap.add_argument("--hours", type=float, default=26.0)
    a = ap.parse_args(argv)
    out = {"default": run(a.sim),
           f"{a.source}_{a.hours:g}h": run(a.sim, lateness_s_by_source={
               a.source: a.hours * 3600})}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
