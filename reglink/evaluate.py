"""``reglink evaluate``: score replay/stream output against the simulator's ground truth.

Links: pairwise precision/recall/F1 over record pairs, and B-cubed.
Alerts: unregistered_stay keyed by (true person, prefecture, deadline), counting ``raised`` and
``resolved`` (the person registered after the deadline: the alert stood); watchlist_match by
(watch_id, true person); stale_registration by (true person, stale registration, deadline,
final status), counting ``raised`` and ``resolved``. A ``withdrawn`` alert counts as none. An
alert's true person is the majority truth of its evidence records; a stale registration's is
the true person of the registration itself.
Statistics: each field of ``stats.jsonl`` against ``truth_stats.jsonl`` over every (prefecture,
date) either holds (a row one side lacks counts as zeros): the share of rows where it matches
exactly and the mean absolute error.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from reglink.core.errors import ReglinkError


def _jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _key(row: dict) -> str:
    if "watch_id" in row:
        return f"watchlist:{row['watch_id']}"
    return f"{row.get('source', '')}:{row['record_id']}" if "source" in row else row["record_id"]


def pairwise(pred: dict[str, str], truth: dict[str, str]) -> dict[str, float]:
    """Pairwise P/R/F1 and B-cubed over the records present in both mappings."""
    items = [k for k in pred if k in truth]
    pc, tc = defaultdict(set), defaultdict(set)
    for k in items:
        pc[pred[k]].add(k)
        tc[truth[k]].add(k)
    both = Counter((pred[k], truth[k]) for k in items)
    tp = sum(n * (n - 1) // 2 for n in both.values())
    pp = sum(len(v) * (len(v) - 1) // 2 for v in pc.values())
    tt = sum(len(v) * (len(v) - 1) // 2 for v in tc.values())
    p = tp / pp if pp else 1.0
    r = tp / tt if tt else 1.0
    bp = sum(both[(pred[k], truth[k])] / len(pc[pred[k]]) for k in items) / max(1, len(items))
    br = sum(both[(pred[k], truth[k])] / len(tc[truth[k]]) for k in items) / max(1, len(items))
    return {"records": len(items), "precision": p, "recall": r,
            "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "bcubed_precision": bp, "bcubed_recall": br,
            "bcubed_f1": 2 * bp * br / (bp + br) if bp + br else 0.0}


def _prf(pred: set, truth: set) -> dict[str, float]:
    tp = len(pred & truth)
    p = tp / len(pred) if pred else 1.0
    r = tp / len(truth) if truth else 1.0
    return {"predicted": len(pred), "true": len(truth), "tp": tp, "precision": p, "recall": r,
            "f1": 2 * p * r / (p + r) if p + r else 0.0}


def evaluate(sim_dir: Path, out_dir: Path, model: str | None = None) -> dict:
    """The scores of ``out_dir`` against ``sim_dir``'s truth, and ``model``: the model ids
    its alerts carry. ``model`` given: an alert that carries another id raises
    :class:`ReglinkError` (the output was not made with that model)."""
    truth_rows = _jsonl(sim_dir / "truth.jsonl")
    # record ids are unique per source; links.jsonl lines carry record_id only, so key by id
    # within source order: the simulator's ids carry a source prefix (H-, R-, T-, J-, HR-, W-).
    truth = {(r.get("record_id") or r.get("watch_id")): r["person"] for r in truth_rows}
    links = _jsonl(out_dir / "links.jsonl")
    pred = {(r.get("record_id") or r.get("watch_id")): r["person_id"] for r in links
            if "record_id" in r and r.get("person_id")}
    result = {"links": pairwise(pred, {k: v for k, v in truth.items() if k in pred})}
    alerts: dict[str, dict] = {}
    for a in _jsonl(out_dir / "alerts.jsonl"):
        alerts[a["alert_id"]] = {**alerts.get(a["alert_id"], {}), **a}
    models = sorted({str(a["model"]) for a in alerts.values() if a.get("model")})
    if model is not None and any(m != model for m in models):
        raise ReglinkError(f"{out_dir}/alerts.jsonl was made with model "
                           f"{', '.join(models)}, not {model}: replay with --model first")
    result["model"] = models
    raised = [a for a in alerts.values() if a["status"] == "raised"]

    def true_person(a: dict) -> str | None:
        votes = Counter(truth[r] for r in a.get("record_ids", []) if r in truth
                        and not str(r).startswith("W-"))
        return votes.most_common(1)[0][0] if votes else None

    pred_stay = {(true_person(a), a["prefecture"], a["deadline"]) for a in alerts.values()
                 if a["rule"] == "unregistered_stay" and a["status"] in ("raised", "resolved")}
    pred_watch = {(a["watch_id"], true_person(a)) for a in raised
                  if a["rule"] == "watchlist_match"}
    ta = _jsonl(sim_dir / "truth_alerts.jsonl") if (sim_dir / "truth_alerts.jsonl").exists() \
        else []
    true_stay = {(t["person"], t["prefecture"], t["deadline"]) for t in ta
                 if t["rule"] == "unregistered_stay"}
    true_watch = {(t["watch_id"], t["person"]) for t in ta if t["rule"] == "watchlist_match"}
    pred_stale = {(truth.get(a["record_ids"][0]), a["record_ids"][0], a["deadline"], a["status"])
                  for a in alerts.values()
                  if a["rule"] == "stale_registration" and a["status"] in ("raised", "resolved")}
    true_stale = {(t["person"], t["registration"], t["deadline"], t["status"]) for t in ta
                  if t["rule"] == "stale_registration"}
    result["unregistered_stay"] = _prf(pred_stay, true_stay)
    result["stale_registration"] = _prf(pred_stale, true_stale)
    result["watchlist_match"] = _prf(pred_watch, true_watch)
    if (sim_dir / "truth_stats.jsonl").exists() and (out_dir / "stats.jsonl").exists():
        result["stats"] = stats_accuracy(_jsonl(out_dir / "stats.jsonl"),
                                         _jsonl(sim_dir / "truth_stats.jsonl"))
    return result


STATS_FIELDS = ("present", "registered", "present_unregistered", "arrivals", "departures",
                "stale_open")


def stats_accuracy(pred: list[dict], truth: list[dict]) -> dict:
    """Per statistics field: the share of (prefecture, date) rows on which the counts match
    exactly, and the mean absolute error, over the rows either side holds (a missing row is
    all zeros); with the rows compared and the true total of each field."""
    def by_key(rows: list[dict]) -> dict[tuple[str, str], dict]:
        return {(r["prefecture"], r["date"]): r for r in rows}

    p, t = by_key(pred), by_key(truth)
    keys = sorted(set(p) | set(t))
    out: dict = {"rows": len(keys), "rows_predicted": len(p), "rows_true": len(t)}
    for f in STATS_FIELDS:
        errs = [abs(p.get(k, {}).get(f, 0) - t.get(k, {}).get(f, 0)) for k in keys]
        out[f] = {"exact": sum(1 for e in errs if e == 0) / len(keys) if keys else 1.0,
                  "mae": sum(errs) / len(keys) if keys else 0.0,
                  "true_total": sum(r.get(f, 0) for r in truth)}
    return out
