"""Training the Fellegi-Sunter model on unlabeled records (``reglink train``).

1. Normalise every record (a throw-away HMAC key: hashes only need to be equal within a run).
2. **u** from random record pairs: almost all are different people, so the level frequencies
   among them estimate P(level | non-match) (Splink does the same).
3. **m** by expectation-maximisation, u held fixed, features conditionally independent,
   'missing' levels skipped, in *sessions* as Splink does: pairs blocked on the ID estimate
   the m of every feature but the ID, pairs blocked on name+birth keys estimate all but name,
   birth date and sex, pairs blocked on the phone all but the phone. A feature used to block is
   masked in its session, because blocking selects on it (non-matching pairs that share a
   name block agree on the name far more often than random pairs: u no longer holds). Each
   feature's m is the match-weighted mean of its sessions. The starting values of
   :mod:`matchers.model` act as a weak Dirichlet prior so that a level never seen in the
   data keeps a sane value.
   The prior **lambda** is the chance that two *random* records match, as Splink estimates it:
   the matches expected among all blocked pairs under the final m (their posteriors' sum),
   over all record pairs. It goes with u, which is measured on random pairs too; the share
   of matches among blocked pairs would count the agreement that selected them twice (on
   FEBRL2/3 it let a one-character-off document number outweigh a different name, birth
   date and address).
4. **Term frequencies** of name keys over distinct people (distinct valid IDs, else records).
5. **Calibration** (optional): when ground truth is given, a one-dimensional logistic fit of
   the total weight on the blocked pairs' true labels, so that probabilities are calibrated.
   Without labels the FS posterior is used as it is.

Levels come from one comparator per feature (:mod:`matchers.comparators`, the default set
unless others are given); the model file names them and their versions.
"""

from __future__ import annotations

import json
import math
import random
import secrets
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from matchers.candidates import BlockingCandidates
from matchers.comparators import default_comparators
from matchers.compare import FSComparator
from matchers.features import ADDRESS_SOURCES, person_record
from matchers.model import START_LAMBDA, START_M, START_U, FSModel
from matchers.pseudo import Pseudonymiser
from matchers.types import FeatureComparator, Identity, PersonRecord

Probs = dict[str, dict[str, float]]  # feature -> level -> probability
Log = Callable[[str], object]

PRIOR_STRENGTH = 5.0  # pseudo-pairs behind the starting values


def _single(rec: PersonRecord) -> Identity:
    ident = Identity(person_id=rec.key, anchor=f"rec:{rec.key}")
    ident.absorb(rec)
    return ident


class _Grader:
    """The comparators' levels of a pair, encoded: a level's index, -1 for 'missing'."""

    def __init__(self, comparators: Sequence[FeatureComparator]) -> None:
        self.comparators = tuple(comparators)
        self.features = tuple(c.feature for c in self.comparators)
        self.levels = {c.feature: c.levels for c in self.comparators}

    def vectors(self, recs: Sequence[PersonRecord], idents: Sequence[Identity],
                pairs: Sequence[tuple[int, int]]) -> npt.NDArray[np.int16]:
        out = np.empty((len(pairs), len(self.comparators)), dtype=np.int16)
        for n, (i, j) in enumerate(pairs):
            rec, ident = recs[j], idents[i]
            out[n] = [-1 if (lvl := c.compare(rec, ident)) == "missing" else c.levels.index(lvl)
                      for c in self.comparators]
        return out


# Blocking-key families and the features each one selects on (masked in its EM session).
FAMILIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "id": (("id", "idd"), ("id",)),
    # name+birth keys; sex is masked too: given names are sex-specific, so a shared name
    # selects the sex as well. (The bare name key 'nk' is too loose to learn from.)
    "name": (("nb", "sb", "lx"), ("name", "birth_date", "sex")),
    "phone": (("ph",), ("phone",)),
}


def blocked_pairs(recs: Sequence[PersonRecord], finder: BlockingCandidates,
                  max_bucket: int = 50, kinds: tuple[str, ...] | None = None
                  ) -> list[tuple[int, int]]:
    """Record pairs sharing a blocking key (of the given key kinds; all when None)."""
    buckets: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(recs):
        for k in finder.raw_keys(r):
            if kinds is None or k.split("|", 1)[0] in kinds:
                buckets[k].append(i)
    pairs: set[tuple[int, int]] = set()
    for members in buckets.values():
        if 1 < len(members) <= max_bucket:
            for a in range(len(members)):
                for b in range(a + 1, len(members)):
                    pairs.add((members[a], members[b]))
    return sorted(pairs)


def _freq(g: _Grader, vec: npt.NDArray[np.int16],
          weights: npt.NDArray[np.float64] | None = None) -> Probs:
    """Level frequencies per feature (missing excluded), smoothed with the start values."""
    out = {}
    for fi, f in enumerate(g.features):
        col = vec[:, fi]
        w = np.ones(len(col)) if weights is None else weights
        have = col >= 0
        total = float(w[have].sum())
        start = START_U[f] if weights is None else START_M[f]
        row = {}
        for li, lvl in enumerate(g.levels[f]):
            c = float(w[col == li].sum())
            row[lvl] = (c + PRIOR_STRENGTH * start[lvl]) / (total + PRIOR_STRENGTH)
        out[f] = row
    return out


def _log_likelihood(g: _Grader, vec: npt.NDArray[np.int16],
                    probs: Probs) -> npt.NDArray[np.float64]:
    ll = np.zeros(len(vec))
    for fi, f in enumerate(g.features):
        table = np.array([math.log(max(probs[f][lvl], 1e-9)) for lvl in g.levels[f]] + [0.0])
        ll += table[vec[:, fi]]  # index -1 (missing) picks the trailing 0.0
    return ll


def _posterior(g: _Grader, vec: npt.NDArray[np.int16], m: Probs, u: Probs,
               lam: float) -> npt.NDArray[np.float64]:
    logit = (np.log(lam) - np.log1p(-lam) + _log_likelihood(g, vec, m)
             - _log_likelihood(g, vec, u))
    out: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))
    return out


def em(g: _Grader, vec: npt.NDArray[np.int16], u: Probs, m0: Probs, lam0: float,
       iterations: int = 40, tol: float = 1e-6
       ) -> tuple[Probs, float, int, npt.NDArray[np.float64]]:
    """EM for m and lambda with u fixed; returns (m, lambda, iterations, posteriors)."""
    m, lam = m0, lam0
    it = 0
    post = np.zeros(len(vec))
    while it < iterations:
        it += 1
        post = _posterior(g, vec, m, u, lam)
        new_lam = float(np.clip(post.mean(), 1e-4, 1 - 1e-4))
        m = _freq(g, vec, post)
        if abs(new_lam - lam) < tol:
            lam = new_lam
            break
        lam = new_lam
    return m, lam, it, post


def em_sessions(g: _Grader, recs: Sequence[PersonRecord], idents: Sequence[Identity],
                finder: BlockingCandidates, u: Probs, iterations: int = 40,
                log: Log = print) -> tuple[Probs, int]:
    """One EM session per blocking family, its own features masked; m combined per feature."""
    acc: dict[str, list[tuple[float, dict[str, float]]]] = defaultdict(list)
    its = 0
    for fam, (kinds, masked) in FAMILIES.items():
        pairs = blocked_pairs(recs, finder, kinds=kinds)
        if not pairs:
            continue
        vec = g.vectors(recs, idents, pairs)
        for f in masked:
            if f in g.features:
                vec[:, g.features.index(f)] = -1
        m, lam, it, post = em(g, vec, u, START_M, 0.5, iterations)
        its += it
        log(f"train: EM session '{fam}': {len(pairs)} pairs, {it} iterations, "
            f"match share {lam:.3f}")
        for fi, f in enumerate(g.features):
            if f in masked:
                continue
            weight = float(post[vec[:, fi] >= 0].sum())
            if weight > 0:
                acc[f].append((weight, m[f]))
    m_final = {}
    for f in g.features:
        if not acc[f]:
            m_final[f] = {lvl: START_M[f][lvl] for lvl in g.levels[f]}
            continue
        total = sum(w for w, _ in acc[f])
        m_final[f] = {lvl: sum(w * row[lvl] for w, row in acc[f]) / total
                      for lvl in g.levels[f]}
    return m_final, its


def term_frequencies(recs: Sequence[PersonRecord], min_count: int = 2
                     ) -> tuple[dict[str, float], float, float]:
    """Share of distinct people per name key; only keys held by ``min_count``+ people are kept
    (common names: no single person can be read out of the table)."""
    people: dict[str, set[str]] = defaultdict(set)
    for r in recs:
        if r.name_key:
            people[r.name_key].add(r.id_hash if r.id_valid and r.id_hash else r.key)
    counts = Counter({k: len(v) for k, v in people.items()})
    total = sum(counts.values())
    if not total:
        return {}, 0.0, 0.0
    s2 = sum((c / total) ** 2 for c in counts.values())
    table = {k: c / total for k, c in counts.items() if c >= min_count}
    return table, 1.0 / total, s2


def calibrate(total: npt.NDArray[np.float64],
              labels: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Fit p = 1/(1+2^-(a*w+b)) to labelled pairs by maximum likelihood over a bounded grid
    (a in [0.5, 2], b in [-20, 20] bits): separable data cannot push it to infinity."""
    best, best_ll = (1.0, 0.0), -math.inf
    y = labels.astype(float)
    for a in np.arange(0.5, 2.0001, 0.05):
        for b in np.arange(-20.0, 20.0001, 0.5):
            z = np.clip((a * total + b) * math.log(2.0), -50, 50)
            ll = float((y * -np.log1p(np.exp(-z)) + (1 - y) * -np.log1p(np.exp(z))).sum())
            ll -= 0.5 * ((a - 1.0) ** 2 + (b / 10.0) ** 2)  # weak pull towards no change
            if ll > best_ll:
                best, best_ll = (float(a), float(b)), ll
    return best


def train(records: Sequence[tuple[dict[str, Any], str]], truth: dict[str, str] | None = None,
          *, u_pairs: int = 100_000, seed: int = 7, files: Sequence[str] = (),
          iterations: int = 40, log: Log = print,
          comparators: Sequence[FeatureComparator] | None = None) -> FSModel:
    """``records``: (validated record, record key). ``truth``: record key -> true person
    (only for the optional calibration). ``files``: the corpus file names, for the model's
    ``trained_on``. ``comparators``: one per feature (default: the shipped set); the model
    names them. Returns the trained model."""
    g = _Grader(comparators or default_comparators())
    pseudo = Pseudonymiser(secrets.token_bytes(32))
    finder = BlockingCandidates(pseudo)
    # One record per distinct person block (with the record's address, where it is the
    # person's): a hotel check-out repeats its check-in's card reading, and such copies
    # would teach the model that records agree more than they do.
    seen: set[str] = set()
    recs = []
    for r, k in records:
        if not r.get("person"):
            continue
        address = r.get("address") if r.get("source") in ADDRESS_SOURCES else None
        sig = json.dumps([r["person"], address], sort_keys=True, ensure_ascii=False)
        if sig not in seen:
            seen.add(sig)
            recs.append(person_record(r, k, pseudo))
    idents = [_single(r) for r in recs]
    rng = random.Random(seed)
    n = len(recs)
    rand = [(i, j) for i, j in ((rng.randrange(n), rng.randrange(n)) for _ in range(u_pairs))
            if i != j] if n > 1 else []
    u = _freq(g, g.vectors(recs, idents, rand))
    log(f"train: {n} distinct person blocks, {len(rand)} random pairs for u")
    m, its = em_sessions(g, recs, idents, finder, u, iterations, log)
    pairs = blocked_pairs(recs, finder)
    vec = g.vectors(recs, idents, pairs)
    post = _posterior(g, vec, m, u, 0.5)
    share = float(np.clip(post.mean(), 1e-4, 1 - 1e-4))
    all_pairs = n * (n - 1) / 2
    lam = float(np.clip(post.sum() / all_pairs, 1e-12, 0.5)) if all_pairs else START_LAMBDA
    log(f"train: {len(pairs)} blocked pairs, estimated match share {share:.3f}; "
        f"two random records match with probability {lam:.3g}")
    tf, tf_floor, s2 = term_frequencies(recs)
    specs: dict[str, dict[str, str | int]] = {
        c.feature: {"name": c.name, "version": c.version} for c in g.comparators}
    model = FSModel(lam=lam, m=m, u=u, tf=tf, tf_floor=tf_floor, tf_s2=s2, comparators=specs)
    cal = (1.0, 0.0)
    if truth:
        labelled = [(p, truth.get(recs[i].key), truth.get(recs[j].key)) for p, (i, j)
                    in enumerate(pairs)]
        keep = [p for p, a, b in labelled if a is not None and b is not None]
        if keep:
            comp = FSComparator(model, {c.feature: c for c in g.comparators})
            totals, labels = [], []
            for p in keep:
                i, j = pairs[p]
                totals.append(comp.compare(recs[j], idents[i]).total_weight)
                labels.append(1.0 if truth[recs[i].key] == truth[recs[j].key] else 0.0)
            cal = calibrate(np.array(totals), np.array(labels))
    model.calibration = (round(cal[0], 6), round(cal[1], 6))
    model.trained_on = {"files": list(files), "records": len(records), "person_blocks": n,
                        "date": datetime.now(UTC).date().isoformat()}
    model.trained = {"u_pairs": len(rand), "blocked_pairs": len(pairs),
                     "blocked_match_share": round(share, 6), "em_iterations": its,
                     "calibrated_on_truth": bool(truth)}
    model.__post_init__()
    return model
