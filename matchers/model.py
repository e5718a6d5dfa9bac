"""The Fellegi-Sunter model: m and u per feature level, the prior, the name term frequencies
and the calibration, loaded from a versioned JSON file (``matchers/models/*.json``).

* weight(feature, level) = log2(m / u), 0 when the value is missing on either side;
* term-frequency adjustment for names (Splink-style): for an agreeing name with key k,
  u becomes the share of people whose name has key k, so 张伟 counts for less than a rare
  name: adjustment = log2(S2 / tf(k)) with S2 = sum of tf^2 (the average u of agreement);
* probability = 1 / (1 + 2^-(a * total + b)), where total = prior weight + sum of weights and
  (a, b) is a calibration fitted on labelled pairs when the training data had ground truth
  (identity otherwise).

The file also names the comparator (and its version) that grades each feature's levels
(``comparators``, see :mod:`matchers.comparators`); loading checks that this code has them.
The version digests the parameters only.

``reglink train`` writes the file (:mod:`matchers.em`); :func:`default_model` loads the one
shipped in the repository, or, when none is there, the documented starting values below.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import matchers

# The package's directory, not this module's: compiled, this module lives under build/native.
MODELS_DIR = Path(matchers.__file__).resolve().parent / "models"
DEFAULT_MODEL_FILE = MODELS_DIR / "fs-zh.json"
_FLOOR = 1e-6

ComparatorSpecs = dict[str, dict[str, str | int]]  # feature -> {"name": ..., "version": ...}


class ModelError(ValueError):
    """A model file this code cannot use. ``str(err)`` is one line that says why."""


def _default_specs() -> ComparatorSpecs:
    from matchers.comparators import default_specs

    return default_specs()


def check_comparators(specs: ComparatorSpecs) -> None:
    """Raise :class:`ModelError` unless every comparator named exists with that version."""
    from matchers.comparators import by_spec

    try:
        by_spec(specs)
    except LookupError as exc:
        raise ModelError(f"model: {exc.args[0]}") from None

# Starting values (EM initialisation, and the model when no trained file exists).
# m: P(level | same person); u: P(level | different people). Each row sums to 1.
START_M: dict[str, dict[str, float]] = {
    "id": {"exact_valid": 0.86, "exact_other": 0.04, "one_digit_off": 0.04, "transposed": 0.01,
           "one_char_off": 0.01, "different": 0.039, "different_valid": 0.001},
    "name": {"exact": 0.78, "same_pinyin": 0.06, "reordered": 0.01, "romanised": 0.06,
             "variant": 0.005, "alias": 0.01, "lookalike": 0.02, "nickname": 0.005,
             "initials": 0.01, "jw_high": 0.01, "jw_mid": 0.005, "one_char": 0.005,
             "part_agrees": 0.005, "surname_only": 0.01, "different": 0.005},
    "birth_date": {"exact": 0.96, "swapped_dm": 0.01, "one_digit": 0.01, "same_year": 0.01,
                   "different": 0.01},
    "sex": {"same": 0.98, "different": 0.02},
    "phone": {"same": 0.85, "different": 0.15},
    "address": {"exact": 0.5, "same_premises": 0.1, "similar": 0.1, "same_street": 0.05,
                "same_area": 0.05, "different": 0.2},
}
START_U: dict[str, dict[str, float]] = {
    "id": {"exact_valid": 1e-6, "exact_other": 1e-6, "one_digit_off": 1e-5, "transposed": 1e-6,
           "one_char_off": 1e-4, "different": 0.3, "different_valid": 0.7},
    "name": {"exact": 0.001, "same_pinyin": 0.0005, "reordered": 1e-4, "romanised": 0.0005,
             "variant": 1e-4, "alias": 1e-4, "lookalike": 0.001, "nickname": 1e-4,
             "initials": 5e-4, "jw_high": 0.002, "jw_mid": 0.01, "one_char": 0.005,
             "part_agrees": 0.02, "surname_only": 0.05, "different": 0.9197},
    "birth_date": {"exact": 5e-5, "swapped_dm": 1e-5, "one_digit": 5e-4, "same_year": 0.02,
                   "different": 0.98},
    "sex": {"same": 0.5, "different": 0.5},
    "phone": {"same": 1e-4, "different": 0.9999},
    "address": {"exact": 1e-4, "same_premises": 2e-4, "similar": 1e-3, "same_street": 2e-3,
                "same_area": 0.05, "different": 0.9467},
}
# The prior match probability of a pair (`reglink train` estimates it for two random records).
START_LAMBDA = 0.3

# Monotone weights. A level that is a degraded form of another level of the same feature (a
# fuzzy name of an exact one, a typo'd ID of an equal one) is weaker evidence, so it never
# weighs more. Estimates can say otherwise only by sampling error: u of a level that random
# pairs almost never reach rests on the smoothing prior alone (a one-token name like
# "isabelle" vs "isabella" scores jw_high, which two-token random pairs never do, and came out
# at 17 bits against 12 for an exact name). Each level's weight is capped at the weights of
# the levels listed for it; listed in an order where those come first, so caps chain.
# A listed level whose u rests on the floor (random pairs never reach it) and that matches
# reach less often than the capped one does not cap it: its weight is the floor's, not
# evidence (name order swapped is rare where names are always written first name first, and
# capping common fuzzy-name levels by it took away most of what a missing first name leaves).
# In its place the levels listed for it cap, so nothing ever weighs more than an exact value.
WEAKER_THAN: dict[str, dict[str, tuple[str, ...]]] = {
    "id": {"one_digit_off": ("exact_valid",), "transposed": ("exact_valid",),
           "one_char_off": ("exact_other",), "different_valid": ("different",)},
    "name": {"same_pinyin": ("exact",), "reordered": ("exact",), "romanised": ("exact",),
             "variant": ("romanised",), "alias": ("exact",), "lookalike": ("exact",),
             "nickname": ("exact", "reordered"), "initials": ("exact", "reordered"),
             "jw_high": ("exact", "reordered"), "jw_mid": ("jw_high",),
             "one_char": ("lookalike",), "part_agrees": ("jw_mid", "initials"),
             "surname_only": ("one_char", "jw_mid", "initials")},
    "birth_date": {"swapped_dm": ("exact",), "one_digit": ("exact",),
                   "same_year": ("swapped_dm", "one_digit"), "different": ("same_year",)},
    "address": {"same_premises": ("exact",), "similar": ("exact",),
                "same_street": ("same_premises", "similar"), "same_area": ("same_street",),
                "different": ("same_area",)},
}


@dataclass
class FSModel:
    name: str = "reglink-fs"
    lam: float = START_LAMBDA
    m: dict[str, dict[str, float]] = field(default_factory=lambda: json.loads(
        json.dumps(START_M)))
    u: dict[str, dict[str, float]] = field(default_factory=lambda: json.loads(
        json.dumps(START_U)))
    tf: dict[str, float] = field(default_factory=dict)
    tf_floor: float = 0.0  # tf of a name key not in the table (0: no TF adjustment)
    tf_s2: float = 0.0
    tf_cap: tuple[float, float] = (-8.0, 4.0)
    calibration: tuple[float, float] = (1.0, 0.0)
    trained: dict[str, Any] = field(default_factory=dict)  # EM figures: pairs, iterations
    # What it was trained on: corpus file names, records read, person blocks, date.
    trained_on: dict[str, Any] = field(default_factory=dict)
    monotone: bool = True  # cap weights by WEAKER_THAN
    comparators: ComparatorSpecs = field(default_factory=_default_specs)

    def __post_init__(self) -> None:
        self._w = {f: {lvl: math.log2(max(self.m[f].get(lvl, _FLOOR), _FLOOR)
                                      / max(self.u[f].get(lvl, _FLOOR), _FLOOR))
                       for lvl in self.m[f]} for f in self.m}
        if self.monotone:
            for f, caps in WEAKER_THAN.items():
                w, m, u = self._w.get(f, {}), self.m.get(f, {}), self.u.get(f, {})
                for lvl, stronger in caps.items():
                    if lvl not in w:
                        continue
                    limits, todo = [w[lvl]], list(stronger)
                    while todo:
                        s = todo.pop()
                        if s not in w:
                            continue
                        if u.get(s, 0.0) >= _FLOOR or m.get(s, 0.0) >= m.get(lvl, 0.0):
                            limits.append(w[s])
                        else:  # its weight rests on the floor of u: what caps it caps
                            todo += caps.get(s, ())
                    w[lvl] = min(limits)
        self.prior_weight = math.log2(self.lam / (1.0 - self.lam))

    @property
    def version(self) -> str:
        """The model id, ``fs-<8 hex>``: a digest of the parameters and the comparators that
        grade the levels, so every link, alert and explanation names its model."""
        body = json.dumps({**self.params(), "comparators": self.comparators},
                          sort_keys=True).encode()
        return f"fs-{hashlib.sha256(body).hexdigest()[:8]}"

    @property
    def features(self) -> str:
        """The features and their comparators, ``id=cn-id@1,name=zh-name@1,...``: what a
        store's identities are compared on (recorded in the store, see
        :func:`reglink.stores.schema.ensure_model`)."""
        return ",".join(f"{f}={spec.get('name')}@{spec.get('version')}"
                        for f, spec in self.comparators.items())

    def weight(self, feature: str, level: str) -> float:
        if level == "missing":
            return 0.0
        return self._w[feature][level]

    def tf_adjust(self, key: str, level: str) -> float:
        if not self.tf_s2 or not key:
            return 0.0
        tf = self.tf.get(key, self.tf_floor)
        if tf <= 0:
            return 0.0
        lo, hi = self.tf_cap
        return min(hi, max(lo, math.log2(self.tf_s2 / tf)))

    def log_odds(self, total_weight: float) -> float:
        """Calibrated log2 match odds of a total weight (what :meth:`probability` maps)."""
        a, b = self.calibration
        return a * total_weight + b

    def probability(self, total_weight: float) -> float:
        x = self.log_odds(total_weight)
        if x > 60:
            return 1.0
        if x < -60:
            return 0.0
        p: float = 1.0 / (1.0 + 2.0 ** -x)
        return p

    # ---------------------------------------------------------------- persistence
    def params(self) -> dict[str, Any]:
        def r(d: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
            return {f: {k: float(f"{v:.6g}") for k, v in lv.items()} for f, lv in d.items()}

        return {"lambda": float(f"{self.lam:.6g}"), "m": r(self.m), "u": r(self.u),
                "tf": {k: float(f"{v:.6g}") for k, v in sorted(self.tf.items())},
                "tf_floor": self.tf_floor, "tf_s2": self.tf_s2, "tf_cap": list(self.tf_cap),
                "calibration": list(self.calibration), "monotone": self.monotone}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "trained_on": self.trained_on,
                "trained": self.trained, "comparators": self.comparators, **self.params()}

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n",
                        encoding="utf-8")

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FSModel:
        """Raises :class:`ModelError` when the file names no comparators or one this code
        does not have (name and version)."""
        specs = d.get("comparators")
        if not isinstance(specs, dict) or not specs:
            raise ModelError("model: no 'comparators' field naming the comparator of each "
                             "feature: retrain the model (reglink train)")
        check_comparators(specs)
        m = cls(name=d.get("name", "reglink-fs"), lam=d["lambda"], m=d["m"], u=d["u"],
                tf=d.get("tf", {}), tf_floor=d.get("tf_floor", 0.0), tf_s2=d.get("tf_s2", 0.0),
                tf_cap=tuple(d.get("tf_cap", (-8.0, 4.0))),
                calibration=tuple(d.get("calibration", (1.0, 0.0))),
                trained=d.get("trained", {}), trained_on=d.get("trained_on", {}),
                monotone=d.get("monotone", True),
                comparators=specs)
        # levels added after the file was written keep their starting values
        for f, lv in START_M.items():
            for k in lv:
                m.m.setdefault(f, {}).setdefault(k, START_M[f][k])
                m.u.setdefault(f, {}).setdefault(k, START_U[f][k])
        m.__post_init__()
        return m

    @classmethod
    def load(cls, path: Path | str) -> FSModel:
        """Raises :class:`ModelError` (one line) for a file that is missing, not JSON, or not
        a model this code can use."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ModelError(f"model {path}: {exc.strerror}") from None
        except ValueError:
            raise ModelError(f"model {path}: not a JSON model file (reglink train writes "
                             "one)") from None
        try:
            if not isinstance(data, dict):
                raise ModelError("model: not a JSON object")
            return cls.from_json(data)
        except KeyError as missing:  # one name per exception type (compiled, a name has one)
            raise ModelError(f"{path}: model: no {missing.args[0]!r} field") from None
        except ModelError as bad:
            raise ModelError(f"{path}: {bad}") from None


@lru_cache(maxsize=4)
def _load_cached(path: str) -> FSModel:
    return FSModel.load(path)


def default_model() -> FSModel:
    """The model shipped in the repository, or the starting values when none is there."""
    if DEFAULT_MODEL_FILE.exists():
        return _load_cached(str(DEFAULT_MODEL_FILE))
    return FSModel()


def load_model(path: Path | str | None) -> FSModel:
    """The model in ``path`` (the ``model`` setting, ``--model``), or :func:`default_model`
    when None. Loaded once per path and process."""
    if path is None or str(path) == "":
        return default_model()
    return _load_cached(str(Path(path).resolve()))


def is_shipped(path: Path | str) -> bool:
    """``path`` is the shipped model file (``reglink train`` does not write over it)."""
    return Path(path).resolve() == DEFAULT_MODEL_FILE.resolve()


def card(model: FSModel) -> list[str]:
    """The model card (``reglink model show``): id, what it was trained on, the comparators,
    lambda and calibration, the TF table, and per feature each level's m, u and weight."""
    lines = [f"model {model.version} ({model.name})"]
    on = model.trained_on
    if on:
        lines.append("trained on: " + "; ".join(
            f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in on.items()))
    else:
        lines.append("trained on: not recorded (a model written before trained_on existed)")
    if model.trained:
        lines.append("training: " + ", ".join(f"{k} {v}" for k, v in model.trained.items()))
    lines.append(f"lambda {model.lam:.6g} (prior {model.prior_weight:+.2f} bits); "
                 f"calibration a={model.calibration[0]:g} b={model.calibration[1]:g}; "
                 f"monotone weights {'on' if model.monotone else 'off'}")
    lines.append(f"name term frequencies: {len(model.tf)} keys, floor {model.tf_floor:.3g}, "
                 f"S2 {model.tf_s2:.3g}, adjustment capped to {list(model.tf_cap)} bits")
    from matchers.comparators import by_spec

    for comp in by_spec(model.comparators):
        f = comp.feature
        lines.append(f"feature {f}: comparator {comp.name}@{comp.version}, "
                     f"levels {', '.join(comp.levels)}")
        lines.append(f"  {'level':<16}{'m':>12}{'u':>12}{'weight':>9}")
        for lvl in comp.levels:
            lines.append(f"  {lvl:<16}{model.m[f].get(lvl, 0.0):>12.4g}"
                         f"{model.u[f].get(lvl, 0.0):>12.4g}{model.weight(f, lvl):>+9.2f}")
    return lines
