"""Build the compiled core (:mod:`matchers.native`) with mypyc into ``build/native/``.

    python -m reglink.devstack.native build     # what `make setup` runs
    python -m reglink.devstack.native status    # compiled or pure, and why

The build type-checks the modules of :data:`matchers.native.COMPILED` together, writes C
with mypyc, compiles it (one shared library and a small module per source) and writes the
manifest last: the SHA-256 of every source as it was read for the build. A failed build
leaves no manifest, and reglink then runs as pure Python."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from matchers import native

SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify
files = sys.argv[sys.argv.index("--") + 1:]
sys.argv = sys.argv[:sys.argv.index("--")]
setup(name="reglink-compiled-core", py_modules=[], ext_modules=mypycify(
    ["--no-warn-unused-configs", *files], opt_level="3", debug_level="0",
    group_name={group!r}, target_dir={c_dir!r}))
"""


def build(root: Path = native.ROOT, out: Path = native.NATIVE, quiet: bool = True) -> float:
    """Build the set; returns the seconds it took. Raises CalledProcessError on failure."""
    import mypy.version

    t0 = time.perf_counter()
    sources = {m: native.digest(native.source(m, root)) for m in native.COMPILED}
    if out.exists():
        shutil.rmtree(out)
    tmp = out.parent / "native-build"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    script = tmp / "setup.py"
    script.write_text(SETUP.format(group=native.GROUP, c_dir=str(tmp / "c")),
                      encoding="utf-8")
    files = [str(native.source(m, root).relative_to(root)) for m in native.COMPILED]
    cmd = [sys.executable, str(script), "build_ext", "--build-lib", str(out),
           "--build-temp", str(tmp / "obj"), "-j", "2", "--", *files]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}  # setuptools' notes on pyproject.toml
    subprocess.run(cmd, cwd=root, check=True, env=env,
                   stdout=subprocess.DEVNULL if quiet else None)
    shutil.rmtree(tmp, ignore_errors=True)
    (out / native.MANIFEST).write_text(json.dumps({
        "interpreter": native.interpreter(), "mypy": mypy.version.__version__,
        "sources": sources}, indent=1) + "\n", encoding="utf-8")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["build"]:
        try:
            seconds = build()
        except (subprocess.CalledProcessError, ImportError, OSError) as exc:
            print(f"compiled core: not built ({exc}); reglink runs as pure Python",
                  file=sys.stderr)
            return 1
        ok, why = native.status()
        print(f"compiled core: built in {seconds:.0f} s into {native.NATIVE}: {why}")
        return 0 if ok else 1
    if args[:1] == ["status"]:
        print(native.status()[1])
        return 0
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
