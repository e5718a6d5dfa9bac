"""benchmarks/matching/side_by_side.py: one corpus linked with two comparators of a feature,
both evaluations reported."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from matchers.comparators import NameComparator, PlainNameComparator

HERE = Path(__file__).resolve().parents[2] / "benchmarks" / "matching"


def _module():
    sys.path.insert(0, str(HERE))
    try:
        spec = importlib.util.spec_from_file_location("side_by_side", HERE / "side_by_side.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(HERE))


def _corpus():
    people = [("王晓明", "王小明", "1988-03-11"), ("陈丽", "陈丽", "1990-07-02"),
              ("张伟", "张伟", "1979-01-30"), ("李娜", "李娜", "1985-12-12")]
    out = []
    for p, (name, variant, birth) in enumerate(people):
        for i in range(6):
            person = {"name": variant if i % 2 else name, "birth_date": birth,
                      **({"phone": f"1380000{p:04d}"} if i % 3 == 0 else {})}
            key = f"rental:R{p}-{i}"
            out.append(({"source": "rental", "record_id": f"R{p}-{i}", "person": person},
                        key, f"T{p}"))
    return out


def test_both_sides_are_scored_and_differ_only_in_the_feature():
    mod = _module()
    row = mod.side_by_side(_corpus(), "tiny", "name", PlainNameComparator())
    assert row["model"]["comparator"] == f"zh-name@{NameComparator.version}"
    assert row["other"]["comparator"] == "plain-name@1"
    for side in ("model", "other"):
        assert row[side]["records"] == 24
        assert 0.0 <= row[side]["precision"] <= 1.0 and 0.0 <= row[side]["recall"] <= 1.0
    assert mod.load_comparator("matchers.comparators.names:PlainNameComparator").name == \
        "plain-name"
