"""Watchlist alerts over several simulated worlds: precision and recall, mean and spread.

    .venv/bin/python benchmarks/matching/watchlist.py                 # 8 seeds, 5 % watched
    .venv/bin/python benchmarks/matching/watchlist.py --seeds 1,2,3 --decoys 0   # no decoys

One simulated corpus holds only ~20 watch entries, so one false alert moves precision by 5
points. Here each seed simulates 2000 persons over 30 days with 5 % of them on the watchlist
(~100 entries, plus ~20 innocent-namesake traps: entries with the ID of a hidden person, one
not in the population, who shares name and birth date with an active one), and 20 % of the
watched persons have a decoy: an active namesake born the same day with another ID, whose
records (job ads) may carry no ID. It replays each as ``reglink replay`` does and
scores the raised watchlist alerts against the simulator's truth (``reglink evaluate``: an
alert is right when (watch_id, true person of its evidence) is an expected lead).

Each seed runs twice in the same process: with the ambiguity guard (the default) and without
it, so the before/after comparison is measured in one run on the same corpora. The truth
is the world's, not what a perfect linker could know: a partial entry whose person has a
namesake with the same name and birth date counts as a lead the system should find, so a
guard that stays silent on it pays in recall. Writes ``watchlist.json`` beside this file
unless called from run.py (which folds the figures into results.json / results.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from reglink.core.settings import load_settings  # noqa: E402
from reglink.evaluate import _jsonl, evaluate  # noqa: E402
from reglink.replay import run_replay  # noqa: E402
from reglink.sim.simulate import run_simulate  # noqa: E402

SEEDS = (1, 2, 3, 4, 5, 6, 7, 8)
PERSONS, DAYS, WATCH_SHARE = 2000, 30, 0.05
DECOY_SHARE = 0.2  # watched persons with an active namesake decoy (reglink.sim World.add_decoys)


def _errors(sim: Path, out: Path) -> dict:
    """False alerts and missed leads, by the kind of watch entry (full, partial, +aliases,
    trap) and, for false alerts, whether the person named is the entry person's namesake."""
    truth = {(t.get("record_id") or t.get("watch_id")): t for t in _jsonl(sim / "truth.jsonl")}
    kinds = {t["watch_id"]: "+".join(t.get("kind", [])[:1]) for t in truth.values()
             if "watch_id" in t}
    leads = {(t["watch_id"], t["person"]) for t in _jsonl(sim / "truth_alerts.jsonl")
             if t["rule"] == "watchlist_match"}
    final: dict[str, dict] = {}
    for a in _jsonl(out / "alerts.jsonl"):
        if a["rule"] == "watchlist_match":
            final[a["alert_id"]] = a
    raised, ambiguous = set(), Counter()
    by_pair: dict[tuple, dict] = {}
    for a in final.values():
        votes = Counter(truth[r]["person"] for r in a["record_ids"]
                        if r in truth and not r.startswith("W-"))
        person = votes.most_common(1)[0][0] if votes else None
        by_pair[(a["watch_id"], person)] = a
        if a["status"] == "raised":
            raised.add((a["watch_id"], person))
        elif a.get("withdrawn_reason") == "ambiguous":
            ambiguous[kinds.get(a["watch_id"], "?")] += 1
    fp = Counter(kinds.get(w, "?") for w, _p in raised - leads)
    fn = Counter(kinds.get(w, "?") for w, _p in leads - raised)

    def case(pair: tuple, what: str) -> dict:
        """One error with the alert's own account of it: its status, why it was withdrawn,
        the features with the records behind them, the counterfactuals."""
        a = by_pair.get(pair) or {}
        feats = [f"{f['feature']}={f['level']}" + (f"@{f['record']}" if f.get("record") else "")
                 for f in (a.get("explanation") or {}).get("features", [])
                 if f["level"] != "missing"]
        return {"case": what, "watch_id": pair[0], "person": pair[1],
                "kind": truth.get(pair[0], {}).get("kind", []),
                "status": a.get("status", "no alert"), "reason": a.get("withdrawn_reason"),
                "p": round(a["match_probability"], 4) if a.get("match_probability") else None,
                "features": feats, "counterfactuals": a.get("counterfactuals", [])}

    cases = ([case(x, "false alert") for x in sorted(raised - leads, key=str)]
             + [case(x, "missed") for x in sorted(leads - raised, key=str)])
    return {"false_alerts_by_kind": dict(fp), "missed_by_kind": dict(fn),
            "withdrawn_ambiguous_by_kind": dict(ambiguous), "cases": cases}


def run(seeds=SEEDS, persons: int = PERSONS, days: int = DAYS,
        watch_share: float = WATCH_SHARE, decoy_share: float = DECOY_SHARE, log=print) -> dict:
    base = load_settings(hmac_key="bench-watchlist")
    variants = {"guard": base,
                "no_guard": base.model_copy(update={"watchlist_ambiguity_guard": False})}
    per_seed: dict[str, list[dict]] = {v: [] for v in variants}
    tmp = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    t0 = time.perf_counter()
    for seed in seeds:
        sim = tmp / f"sim{seed}"
        run_simulate(persons=persons, days=days, start="2026-03-01", seed=seed, out_dir=sim,
                     watch_share=watch_share, decoy_share=decoy_share)
        entries = sum(1 for w in _jsonl(sim / "watchlist.jsonl") if w["action"] == "add")
        for name, s in variants.items():
            out = tmp / f"out{seed}-{name}"
            run_replay(s, [sim / "events.jsonl"], out)
            ev = evaluate(sim, out)
            w = ev["watchlist_match"]
            row = {"seed": seed, "entries": entries, "leads": w["true"],
                   "alerts": w["predicted"], "tp": w["tp"],
                   "precision": round(w["precision"], 4), "recall": round(w["recall"], 4),
                   "links_f1": round(ev["links"]["f1"], 4), **_errors(sim, out)}
            per_seed[name].append(row)
            log(f"watchlist seed {seed} {name}: {json.dumps(row)}")
    result: dict = {"persons": persons, "days": days, "watch_share": watch_share,
                    "decoy_share": decoy_share,
                    "seeds": list(seeds), "seconds": round(time.perf_counter() - t0, 1)}
    for name, rows in per_seed.items():
        tp = sum(r["tp"] for r in rows)
        alerts = sum(r["alerts"] for r in rows)
        leads = sum(r["leads"] for r in rows)
        summary = {"alerts": alerts, "leads": leads, "tp": tp,
                   "pooled_precision": round(tp / alerts, 4) if alerts else 1.0,
                   "pooled_recall": round(tp / leads, 4) if leads else 1.0}
        for m in ("precision", "recall"):
            vals = [r[m] for r in rows]
            summary[m] = {"mean": round(statistics.fmean(vals), 4),
                          "sd": round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0,
                          "min": min(vals), "max": max(vals)}
        fp, fn, amb = Counter(), Counter(), Counter()
        for r in rows:
            fp.update(r["false_alerts_by_kind"])
            fn.update(r["missed_by_kind"])
            amb.update(r["withdrawn_ambiguous_by_kind"])
        summary.update(false_alerts_by_kind=dict(fp), missed_by_kind=dict(fn),
                       withdrawn_ambiguous_by_kind=dict(amb))
        result[name] = {"summary": summary, "per_seed": rows}
    return result


def markdown(w: dict) -> str:
    lines = [f"Watchlist alerts: {len(w['seeds'])} simulated worlds (seeds "
             f"{', '.join(map(str, w['seeds']))}), {w['persons']} persons, {w['days']} days, "
             f"{w['watch_share']:.0%} of persons watched, plus innocent-namesake traps; "
             f"{w.get('decoy_share', 0):.0%} of the watched with an active namesake decoy; "
             "`reglink replay` with the shipped model, scored like `reglink evaluate`. "
             "Precision and recall per seed: mean ± sd [min, max]; pooled over all seeds.", "",
             "| policy | entries | leads | alerts | P mean ± sd [min, max] | "
             "R mean ± sd [min, max] | pooled P | pooled R | false alerts by entry kind | "
             "missed leads by entry kind |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, label in (("guard", "ambiguity guard (default)"), ("no_guard", "no guard")):
        s = w[name]["summary"]
        entries = sum(r["entries"] for r in w[name]["per_seed"])
        p, r = s["precision"], s["recall"]
        fmt = lambda d: ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"  # noqa: E731
        lines.append(
            f"| {label} | {entries} | {s['leads']} | {s['alerts']} | "
            f"{p['mean']:.4f} ± {p['sd']:.4f} [{p['min']:.4f}, {p['max']:.4f}] | "
            f"{r['mean']:.4f} ± {r['sd']:.4f} [{r['min']:.4f}, {r['max']:.4f}] | "
            f"{s['pooled_precision']:.4f} | {s['pooled_recall']:.4f} | "
            f"{fmt(s['false_alerts_by_kind'])} | {fmt(s['missed_by_kind'])} |")
    amb = w["guard"]["summary"]["withdrawn_ambiguous_by_kind"]
    lines += ["", "Alerts withdrawn as ambiguous (guard): "
              + (", ".join(f"{k} {v}" for k, v in sorted(amb.items())) or "none") + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    ap.add_argument("--persons", type=int, default=PERSONS)
    ap.add_argument("--watch-share", type=float, default=WATCH_SHARE)
    ap.add_argument("--decoys", type=float, default=DECOY_SHARE,
                    help="share of watched persons with an active namesake decoy")
    args = ap.parse_args()
    w = run(tuple(int(s) for s in args.seeds.split(",")), args.persons, DAYS, args.watch_share,
            args.decoys)
    (HERE / "watchlist.json").write_text(json.dumps(w, indent=1) + "\n", encoding="utf-8")
    print(markdown(w))


if __name__ == "__main__":
    main()
