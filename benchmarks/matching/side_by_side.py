"""Two comparators of one feature, side by side: link the same corpora with the model's own
comparator and with another one, and print both evaluations.

    .venv/bin/python benchmarks/matching/side_by_side.py --feature name \
        --with matchers.comparators.names:PlainNameComparator [--corpora sim,latin] [--retrain]

Everything else is the same on both sides: the records, the blocking, the decider, the other
features' comparators, and the model's weights (the other comparator must grade levels the
model weighs: :class:`matchers.compare.FSComparator` checks). On the simulate corpus both sides
use the shipped model; on the others each side's model is estimated by EM on the corpus,
unlabeled, with its own comparators, as ``run.py`` does. ``--retrain`` estimates the sim
corpus's models too (then each side's weights fit its own levels). Scores are those of
``run.py``: pairwise precision / recall / F1 and B-cubed F1 (:mod:`reglink.evaluate`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from run import Corpus, febrl, latin_corpus, run_reglink, score, sim_corpus  # noqa: E402

from matchers.comparators import by_spec  # noqa: E402
from matchers.em import train  # noqa: E402
from matchers.model import FSModel, default_model  # noqa: E402
from matchers.types import FeatureComparator  # noqa: E402

CORPORA = {"sim": sim_corpus, "latin": latin_corpus,
           **{f"febrl{n}": (lambda n=n: febrl(n)) for n in (1, 2, 3, 4)}}


def load_comparator(spec: str) -> FeatureComparator:
    """``module:Class`` -> an instance."""
    module, _, name = spec.partition(":")
    comp: FeatureComparator = getattr(importlib.import_module(module), name)()
    return comp


def _model(corpus: Corpus, comparators: list[FeatureComparator] | None, name: str,
           retrain: bool) -> FSModel:
    if name == "sim" and not retrain:
        return default_model()
    return train([(r, k) for r, k, _ in corpus], None, files=[name], log=lambda *_: None,
                 comparators=comparators)


def side_by_side(corpus: Corpus, name: str, feature: str, other: FeatureComparator,
                 retrain: bool = False) -> dict[str, dict]:
    """Both sides' scores on one corpus: ``model`` (the comparators the model names) and
    ``other`` (``other`` grading ``feature``)."""
    base_comps = list(by_spec(default_model().comparators))
    alt_comps = [other if c.feature == feature else c for c in base_comps]
    out: dict[str, dict] = {}
    for side, comps, overrides in (("model", None, None),
                                   ("other", alt_comps, {feature: other})):
        model = _model(corpus, comps, name, retrain)
        pred, info = run_reglink(corpus, model, overrides)
        used = next(c for c in (comps or base_comps) if c.feature == feature)
        out[side] = {"comparator": f"{used.name}@{used.version}", "model": model.version,
                     **score(pred, corpus), **info}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--feature", required=True, help="the feature to compare, e.g. name")
    ap.add_argument("--with", dest="other", required=True,
                    help="the other comparator, module:Class")
    ap.add_argument("--corpora", default="sim", help=f"comma-separated: {', '.join(CORPORA)}")
    ap.add_argument("--retrain", action="store_true",
                    help="estimate the sim corpus's models too (each side its own)")
    args = ap.parse_args(argv)
    other = load_comparator(args.other)
    for name in args.corpora.split(","):
        row = side_by_side(CORPORA[name](), name, args.feature, other, args.retrain)
        print(name, json.dumps(row, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
