"""Fixtures of the console's browser tests (tests/integration/test_console_*browser.py)."""

from __future__ import annotations

import pytest
from consolekit import console_stack

from reglink.sim.simulate import run_simulate

#: The simulated corpus of ``stack`` unless a test asks for another.
SIMULATE = {"persons": 400, "days": 14, "start": "2026-03-01", "seed": 3}


@pytest.fixture
def stack(request, kafka_settings, redis_client, tmp_path):
    """Simulated data (``stack.inputs``), a users file, a worker and a console on the test's
    own topics (:func:`consolekit.console_stack`). A test changes the corpus or settings with
    indirect parametrisation:
    ``@pytest.mark.parametrize("stack", [{"simulate": {"days": 35}, "settings": {...}}],
    indirect=True)``."""
    opts = getattr(request, "param", {})
    sim = tmp_path / "sim"
    run_simulate(**{**SIMULATE, **opts.get("simulate", {})}, out_dir=sim)
    with console_stack(kafka_settings, tmp_path, sim, **opts.get("settings", {})) as st:
        yield st
