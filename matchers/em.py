"""Training the Fellegi-Sunter model on unlabeled records (``reglink train``).

1. Normalise every record (a throw-away HMAC key: hashes only need to be equal within a run).
2. **u** from random record pairs: almost all are different people, so the level frequencies
   among them estimate P(level | non-match) (Splink does the same).
3. **m** and the prior **lambda** by expectation-maximisation over the blocked candidate
   pairs (pairs sharing a blocking key of :mod:`matchers.candidates`), u held fixed, features
   conditionally independent, 'missing' levels skipped. The starting values of
   :mod:`matchers.model` act as a weak Dirichlet prior so that a level never seen in the data
   keeps a sane value.
4. **Term frequencies** of name keys over distinct people (distinct valid IDs, else records).
5. **Calibration** (optional): when ground truth is given, a one-dimensional logistic fit of
   the total weight on the blocked pairs' true labels, so that probabilities are calibrated.
   Without labels the FS posterior is used as it is.
"""

from __future__ import annotations

import math
import random
import secrets
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from .candidates import BlockingCandidates
from .compare import FEATURES, LEVELS, compare_levels
from .features import person_record
from .model import START_M, START_U, FSModel
from .pseudo import Pseudonymiser
from .types import Identity, PersonRecord

PRIOR_STRENGTH = 5.0  # pseudo-pairs behind the starting values


def _single(rec: PersonRecord) -> Identity:
    ident = Identity(person_id=rec.key, anchor=f"rec:{rec.key}")
    ident.absorb(rec)
    return ident


def _encode(levels: dict[str, str]) -> list[int]:
    return [-1 if levels[f] == "missing" else LEVELS[f].index(levels[f]) for f in FEATURES]


def blocked_pairs(recs: Sequence[PersonRecord], finder: BlockingCandidates,
                  max_bucket: int = 50) -> list[tuple[int, int]]:
    buckets: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(recs):
        for k in finder.raw_keys(r):
            buckets[k].append(i)
    pairs: set[tuple[int, int]] = set()
    for members in buckets.values():
        if 1 < len(members) <= max_bucket:
            for a in range(len(members)):
                for b in range(a + 1, len(members)):
                    pairs.add((members[a], members[b]))
    return sorted(pairs)


def _vectors(recs, idents, pairs) -> np.ndarray:
    out = np.empty((len(pairs), len(FEATURES)), dtype=np.int16)
    for n, (i, j) in enumerate(pairs):
        levels, _ = compare_levels(recs[j], idents[i])
        out[n] = _encode(levels)
    return out


def _freq(vec: np.ndarray, weights: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Level frequencies per feature (missing excluded), smoothed with the start values."""
    out = {}
    for fi, f in enumerate(FEATURES):
        col = vec[:, fi]
        w = np.ones(len(col)) if weights is None else weights
        have = col >= 0
        total = float(w[have].sum())
        start = START_U[f] if weights is None else START_M[f]
        row = {}
        for li, lvl in enumerate(LEVELS[f]):
            c = float(w[col == li].sum())
            row[lvl] = (c + PRIOR_STRENGTH * start[lvl]) / (total + PRIOR_STRENGTH)
        out[f] = row
    return out


def _log_likelihood(vec: np.ndarray, probs: dict[str, dict[str, float]]) -> np.ndarray:
    ll = np.zeros(len(vec))
    for fi, f in enumerate(FEATURES):
        table = np.array([math.log(max(probs[f][lvl], 1e-9)) for lvl in LEVELS[f]] + [0.0])
        ll += table[vec[:, fi]]  # index -1 (missing) picks the trailing 0.0
    return ll


def em(vec: np.ndarray, u: dict, m0: dict, lam0: float, iterations: int = 40,
       tol: float = 1e-6) -> tuple[dict, float, int]:
    m, lam = m0, lam0
    lu = _log_likelihood(vec, u)
    it = 0
    for it in range(1, iterations + 1):
        lm = _log_likelihood(vec, m)
        logit = np.log(lam) - np.log1p(-lam) + lm - lu
        g = 1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))
        new_lam = float(np.clip(g.mean(), 1e-4, 1 - 1e-4))
        m = _freq(vec, g)
        if abs(new_lam - lam) < tol:
            lam = new_lam
            break
        lam = new_lam
    return m, lam, it


def term_frequencies(recs: Sequence[PersonRecord], min_count: int = 2):
    """Share of distinct people per name key; only keys held by ``min_count``+ people are kept
    (common names: no single person can be read out of the table)."""
    people: dict[str, set[str]] = defaultdict(set)
    for r in recs:
        if r.name_key:
            people[r.name_key].add(r.id_hash if r.id_valid else r.key)
    counts = Counter({k: len(v) for k, v in people.items()})
    total = sum(counts.values())
    if not total:
        return {}, 0.0, 0.0
    s2 = sum((c / total) ** 2 for c in counts.values())
    table = {k: c / total for k, c in counts.items() if c >= min_count}
    return table, 1.0 / total, s2


def calibrate(total: np.ndarray, labels: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """Fit p = 1/(1+2^-(a*w+b)) by Newton's method (logistic regression on one input)."""
    x = total * math.log(2.0)
    a, b = 1.0, 0.0
    for _ in range(iterations):
        z = np.clip(a * x + b * math.log(2.0), -50, 50)
        p = 1.0 / (1.0 + np.exp(-z))
        w = p * (1 - p) + 1e-9
        ga, gb = float(((labels - p) * x).sum()), float(((labels - p) * math.log(2.0)).sum())
        haa = -float((w * x * x).sum()) - 1e-6
        hab = -float((w * x * math.log(2.0)).sum())
        hbb = -float((w * math.log(2.0) ** 2).sum()) - 1e-6
        det = haa * hbb - hab * hab
        if abs(det) < 1e-12:
            break
        da = (hbb * ga - hab * gb) / det
        db = (-hab * ga + haa * gb) / det
        a, b = a - da, b - db
        if abs(da) < 1e-8 and abs(db) < 1e-8:
            break
    return a, b


def train(records: Sequence[tuple[dict, str]], truth: dict[str, str] | None = None, *,
          u_pairs: int = 100_000, seed: int = 7, source: str = "",
          iterations: int = 40, log=print) -> FSModel:
    """``records``: (validated record, record key). ``truth``: record key -> true person
    (only for the optional calibration). Returns the trained model."""
    pseudo = Pseudonymiser(secrets.token_bytes(32))
    finder = BlockingCandidates(pseudo)
    recs = [person_record(r, k, pseudo) for r, k in records if r.get("person")]
    idents = [_single(r) for r in recs]
    rng = random.Random(seed)
    n = len(recs)
    rand = [(i, j) for i, j in ((rng.randrange(n), rng.randrange(n)) for _ in range(u_pairs))
            if i != j] if n > 1 else []
    u = _freq(_vectors(recs, idents, rand))
    pairs = blocked_pairs(recs, finder)
    vec = _vectors(recs, idents, pairs)
    log(f"train: {n} records, {len(rand)} random pairs for u, {len(pairs)} blocked pairs for m")
    m, lam, its = em(vec, u, START_M, 0.3, iterations)
    tf, tf_floor, s2 = term_frequencies(recs)
    model = FSModel(lam=lam, m=m, u=u, tf=tf, tf_floor=tf_floor, tf_s2=s2)
    cal = (1.0, 0.0)
    if truth:
        labelled = [(p, truth.get(recs[i].key), truth.get(recs[j].key)) for p, (i, j)
                    in enumerate(pairs)]
        keep = [p for p, a, b in labelled if a is not None and b is not None]
        if keep:
            from .compare import FSComparator

            comp = FSComparator(model)
            totals, labels = [], []
            for p in keep:
                i, j = pairs[p]
                levels, conflict = compare_levels(recs[j], idents[i])
                totals.append(comp.score(recs[j], "", levels, conflict).total_weight)
                labels.append(1.0 if truth[recs[i].key] == truth[recs[j].key] else 0.0)
            cal = calibrate(np.array(totals), np.array(labels))
    model.calibration = (round(cal[0], 6), round(cal[1], 6))
    model.trained = {"source": source, "records": n, "u_pairs": len(rand),
                     "blocked_pairs": len(pairs), "em_iterations": its,
                     "calibrated_on_truth": bool(truth),
                     "date": datetime.now(UTC).date().isoformat()}
    model.__post_init__()
    return model
