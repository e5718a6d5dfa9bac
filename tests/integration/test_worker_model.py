"""A store is matched on one model's features: on the real Redis, the first worker marks the
store with its model's features, a worker whose model weighs other features is refused in one
line before it reads a record, and a worker of the same features (another model id) starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from matchers.model import FSModel, ModelError, default_model
from reglink.stores import schema as sk
from reglink.stores.kv import RedisKV
from streams.worker import build_shell

ROOT = Path(__file__).resolve().parents[2]


def _other_features(tmp_path: Path) -> Path:
    """A model file that grades names with the plain comparator (other features)."""
    model = FSModel.load(ROOT / "matchers" / "models" / "fs-zh.json")
    model.comparators = {**model.comparators, "name": {"name": "plain-name", "version": 1}}
    path = tmp_path / "plain-name.json"
    model.save(path)
    return path


def test_a_worker_marks_the_store_and_refuses_a_model_of_other_features(
        kafka_settings, redis_client, tmp_path) -> None:
    shipped = default_model()
    shell = build_shell(kafka_settings)  # the first worker on an empty store marks it
    shell.pipe.kv.base.close()
    kv = RedisKV(redis_client, kafka_settings.redis_prefix)
    assert kv.get(sk.MODEL_KEY) == shipped.features

    other = _other_features(tmp_path)
    with pytest.raises(ModelError) as err:
        build_shell(kafka_settings.model_copy(update={"model": other}))
    assert "\n" not in str(err.value) and "name=plain-name@1" in str(err.value)
    assert kv.get(sk.MODEL_KEY) == shipped.features  # the refused worker changed nothing

    # Same features, other parameters (another model id): it joins.
    same = FSModel.load(ROOT / "matchers" / "models" / "fs-zh.json")
    same.lam = 0.5
    same_path = tmp_path / "same-features.json"
    same.save(same_path)
    assert same.version != shipped.version
    shell = build_shell(kafka_settings.model_copy(update={"model": same_path}))
    assert shell.pipe.linker.model_id == same.version
    shell.pipe.kv.base.close()

    # From the command line: one line, exit 2, no worker started.
    env = {**os.environ, **kafka_settings.to_env(), "PYTHONPATH": str(ROOT)}
    got = subprocess.run([sys.executable, "-m", "reglink.cli", "worker", "--model", str(other)],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert got.returncode == 2, got.stderr
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and "plain-name@1" in lines[0] and shipped.features in lines[0]
