"""The compiled core (matchers.native): when it is used, and that it changes nothing but speed.

CI builds it (``make setup``) and must run it: there a missing or stale build fails the test
that both modes replay alike, instead of skipping it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from matchers import native

ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = ("links.jsonl", "alerts.jsonl", "deadletter.jsonl", "stats.jsonl", "quality.jsonl")


def _tree(tmp: Path, *, interpreter: str | None = None, edit: bool = False,
          so: bool = True) -> tuple[Path, Path]:
    """A source root with one module ``pkg.mod`` and a build of it (a manifest, a module)."""
    root, out = tmp / "src", tmp / "native"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("X = 1\n")
    (out / "pkg").mkdir(parents=True)
    if so:
        (out / "pkg" / f"mod{native.SUFFIX}").write_bytes(b"")
    (out / native.MANIFEST).write_text(json.dumps({
        "interpreter": interpreter or native.interpreter(), "mypy": "1.0",
        "sources": {"pkg.mod": hashlib.sha256(b"X = 1\n").hexdigest()}}))
    if edit:
        (root / "pkg" / "mod.py").write_text("X = 2\n")
    return root, out


def test_a_current_build_is_used(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("REGLINK_PURE", raising=False)
    root, out = _tree(tmp_path)
    assert native.status(out, root, ["pkg.mod"]) == (True, "compiled (mypyc 1.0, 1 modules)")


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_reglink_pure_selects_pure_python(tmp_path, monkeypatch, value) -> None:
    monkeypatch.setenv("REGLINK_PURE", value)
    root, out = _tree(tmp_path)
    assert native.status(out, root, ["pkg.mod"]) == (False, "pure Python (REGLINK_PURE is set)")


def test_an_edited_source_makes_the_build_unusable(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("REGLINK_PURE", raising=False)
    root, out = _tree(tmp_path, edit=True)
    used, why = native.status(out, root, ["pkg.mod"])
    assert not used and "pkg.mod changed since the compiled core was built" in why


def test_a_build_for_another_interpreter_or_incomplete_is_not_used(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("REGLINK_PURE", raising=False)
    root, out = _tree(tmp_path / "a", interpreter="cpython-310 .so")
    used, why = native.status(out, root, ["pkg.mod"])
    assert not used and "built for cpython-310 .so" in why
    root, out = _tree(tmp_path / "b", so=False)
    used, why = native.status(out, root, ["pkg.mod"])
    assert not used and "the compiled pkg.mod is missing" in why
    used, why = native.status(tmp_path / "nothing", root, ["pkg.mod"])
    assert not used and "not built" in why


def _env(pure: bool) -> dict[str, str]:
    """This process's environment for a child run of this tree, in pure Python or not
    (whatever REGLINK_PURE this test process was started with)."""
    env = {k: v for k, v in os.environ.items() if k != "REGLINK_PURE"}
    env["PYTHONPATH"] = str(ROOT)
    if pure:
        env["REGLINK_PURE"] = "1"
    return env


def _run(code: str, pure: bool, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], env=_env(pure), cwd=ROOT,
                          capture_output=True, text=True, check=True)


def _built() -> tuple[bool, str]:
    """Whether the compiled core is usable when not switched off."""
    got = _run("import matchers.native as n; print(n.mode())", False).stdout.strip()
    return got.startswith("compiled"), got


def test_both_modes_replay_a_corpus_byte_for_byte_alike(tmp_path) -> None:
    built, why = _built()
    if not built:
        if os.environ.get("CI"):
            pytest.fail(f"CI builds the compiled core (make setup), but: {why}")
        pytest.skip(why)
    where = ("import matchers.native as n, reglink.core.pipeline as p, matchers.linker as l; "
             "print(n.mode()); print(p.__file__); print(l.__file__)")
    compiled = _run(where, False).stdout.splitlines()
    pure = _run(where, True).stdout.splitlines()
    assert compiled[0].startswith("compiled") and compiled[1].endswith(native.SUFFIX)
    assert compiled[2].endswith(native.SUFFIX)
    assert pure[0] == "pure Python (REGLINK_PURE is set)" and pure[1].endswith(".py")
    cli = "import sys; from reglink.cli import main; sys.argv = ['reglink', *sys.argv[1:]]; main()"
    sim = tmp_path / "sim"
    _run(cli, True, "simulate", "--persons", "600", "--days", "12", "--seed", "3",
         "--out", str(sim))
    for mode, pure_mode in (("compiled", False), ("pure", True)):
        _run(cli, pure_mode, "replay", str(sim / "events.jsonl"), "--out", str(tmp_path / mode))
    for name in OUTPUTS:
        a = (tmp_path / "compiled" / name).read_bytes()
        b = (tmp_path / "pure" / name).read_bytes()
        assert a == b, f"{name} differs between the compiled and the pure core"
    assert (tmp_path / "pure" / "alerts.jsonl").read_text().count("\n") > 5
