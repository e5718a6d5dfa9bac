"""Fold a py-spy raw profile by function: inclusive and self shares of the samples.

    py-spy record -f raw -o prof.txt -- .venv/bin/python -m reglink.cli replay FILE --out DIR
    .venv/bin/python -m benchmarks.pyspy_fold prof.txt [TOP]
"""

from __future__ import annotations

import re
import sys
from collections import Counter

_FRAME = re.compile(r"(.*) \((.*):(\d+)\)")


def fold(path: str) -> tuple[Counter, Counter, int]:
    incl: Counter = Counter()
    self_: Counter = Counter()
    total = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            stack, _, n = line.rstrip().rpartition(" ")
            if not stack:
                continue
            count = int(n)
            total += count
            names = []
            for frame in stack.split(";"):
                m = _FRAME.match(frame)
                names.append(f"{m.group(1)} ({m.group(2).rsplit('/', 1)[-1]})" if m else frame)
            for name in set(names):
                incl[name] += count
            self_[names[-1]] += count
    return incl, self_, total


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    top = int(args[1]) if len(args) > 1 else 45
    incl, self_, total = fold(args[0])
    print("samples", total)
    print("--- inclusive")
    for name, c in incl.most_common(top):
        print(f"{100 * c / total:5.1f}% {name}")
    print("--- self")
    for name, c in self_.most_common(30):
        print(f"{100 * c / total:5.1f}% {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
