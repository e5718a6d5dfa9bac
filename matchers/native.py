"""The compiled core: the per-record modules of :data:`COMPILED`, compiled by mypyc from
these very sources into ``build/native/`` (``make setup`` builds them:
``python -m reglink.devstack.native build``).

The sources stay the one truth. A compiled module is imported instead of its source only when
the whole set is usable (:func:`status`):

* ``REGLINK_PURE`` is not set (``REGLINK_PURE=1`` selects pure Python);
* ``build/native/manifest.json`` exists, was built for this interpreter, and names the
  SHA-256 of every source of the set as it is now. An edited source makes the whole set
  unusable until it is built again: the compiled modules call each other directly, so one of
  them cannot be swapped for its source alone.

Otherwise every module is imported from source, as when nothing was built. Either way the
outputs are the same (``tests/unit/test_native.py`` replays a corpus in both modes and
compares the files byte for byte). :func:`install` puts the finder first on
``sys.meta_path``; ``matchers`` installs it on import, before any module of the set loads.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

#: The modules compiled: the per-record work from the input contract to the state stores.
#: Compiled code enforces type annotations at run time, so where untrusted JSON is decoded
#: (``reglink.core.contract``) the value is typed ``Any`` until it has been checked: a value of
#: an unexpected type is dead-lettered with its reason, as in pure Python.
COMPILED: tuple[str, ...] = (
    "matchers.candidates",
    "matchers.compare",
    "matchers.decide",
    "matchers.features",
    "matchers.linker",
    "matchers.model",
    "matchers.normalise",
    "matchers.pseudo",
    "reglink.core.contract",
    "reglink.core.pipeline",
    "reglink.core.quality",
    "reglink.core.rules.clock",
    "reglink.core.rules.population",
    "reglink.core.rules.stale_registration",
    "reglink.core.rules.stay",
    "reglink.core.rules.unregistered_stay",
    "reglink.core.rules.watchlist",
    "reglink.core.rules.watchlist_match",
    "reglink.core.rules.watermark",
    "reglink.core.unit_of_work",
    "reglink.stores.identity",
    "reglink.stores.kv",
    "reglink.stores.schema",
)
#: The name of the library module the compiled modules share.
GROUP = "reglink_core"
ROOT = Path(__file__).resolve().parent.parent
NATIVE = ROOT / "build" / "native"
MANIFEST = "manifest.json"
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def source(module: str, root: Path = ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def compiled(module: str, native: Path = NATIVE) -> Path:
    """Where the build puts ``module``."""
    return native.joinpath(*module.split(".")).with_suffix(SUFFIX)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def interpreter() -> str:
    """What a build is valid for: the implementation, version and extension suffix."""
    return f"{sys.implementation.cache_tag} {SUFFIX}"


def status(native: Path = NATIVE, root: Path = ROOT,
           modules: Sequence[str] = COMPILED) -> tuple[bool, str]:
    """(whether the compiled modules are used, why or why not: one line)."""
    if os.environ.get("REGLINK_PURE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False, "pure Python (REGLINK_PURE is set)"
    try:
        manifest = json.loads((native / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, "pure Python (the compiled core is not built: make setup builds it)"
    if manifest.get("interpreter") != interpreter():
        return False, (f"pure Python (the compiled core was built for "
                       f"{manifest.get('interpreter')}, this is {interpreter()})")
    sources = manifest.get("sources", {})
    for module in modules:
        path = source(module, root)
        if sources.get(module) != (digest(path) if path.exists() else None):
            return False, (f"pure Python ({module} changed since the compiled core was "
                           "built: make setup builds it again)")
        if not compiled(module, native).exists():
            return False, f"pure Python (the compiled {module} is missing: make setup)"
    return True, f"compiled (mypyc {manifest.get('mypy', '?')}, {len(modules)} modules)"


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the modules of the set (and their shared library) in the build directory."""

    def __init__(self, native: Path, modules: Sequence[str]) -> None:
        self.files = {m: compiled(m, native) for m in modules}
        self.files[f"{GROUP}__mypyc"] = native / f"{GROUP}__mypyc{SUFFIX}"

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        return importlib.util.spec_from_file_location(fullname, file)


_state: tuple[bool, str] | None = None


def install() -> tuple[bool, str]:
    """Decide once per process (:func:`status`); when compiled, put the finder first."""
    global _state
    if _state is None:
        _state = status()
        if _state[0]:
            sys.meta_path.insert(0, _Finder(NATIVE, COMPILED))
    return _state


def mode() -> str:
    """The core in use, in one line (``reglink --version``, the worker's start line)."""
    return install()[1]
