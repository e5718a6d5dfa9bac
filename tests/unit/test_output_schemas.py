"""Every message the core emits validates against the schema reglink publishes for its topic."""

import pytest

from reglink.core.contract import compiled_validator, parse_record
from reglink.core.pipeline import Pipeline
from reglink.core.settings import load_settings
from reglink.sim.simulate import run_simulate
from reglink.stores.kv import MemoryKV

SCHEMA_OF = {"linked": "linked", "alerts": "alert", "identity.events": "identity-event",
             "stats": "stats"}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    sim = tmp_path_factory.mktemp("sim")
    run_simulate(persons=400, days=20, start="2026-03-01", seed=3, out_dir=sim)
    pipe = Pipeline(load_settings(hmac_key="k"), MemoryKV())
    outs = []
    for n, raw in enumerate((sim / "events.jsonl").read_bytes().splitlines(), 1):
        import json

        record, dead = parse_record(raw, json.loads(raw)["source"], {"file": "e", "line": n})
        assert dead is None, dead
        outs += pipe.process(record)[1]
    return outs + pipe.finish()


def test_every_output_message_matches_its_schema(outputs):
    checks = {topic: compiled_validator(name) for topic, name in SCHEMA_OF.items()}
    seen = set()
    for out in outputs:
        err = checks[out.topic](out.value)
        assert err is None, (out.topic, err, out.value)
        seen.add((out.topic, out.value.get("rule"), out.value.get("status")))
    topics = {t for t, _, _ in seen}
    assert topics == set(SCHEMA_OF), seen
    assert ("alerts", "unregistered_stay", "raised") in seen
    assert ("alerts", "watchlist_match", "raised") in seen


def test_a_stats_row_holds_counts_only():
    check = compiled_validator("stats")
    row = {"prefecture": "4403", "date": "2026-03-01", "present": 3, "registered": 1,
           "present_unregistered": 1, "arrivals": 0, "departures": 0, "stale_open": 0}
    assert check(row) is None
    assert check({**row, "person_id": "P0123456789abcdef"}) is not None
    assert check({**row, "present": -1}) is not None
    assert check({**row, "prefecture": "440305"}) is not None
