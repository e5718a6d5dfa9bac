"""A record the core sees again after it was linked counts as re-delivered, not as linked."""

import json

from corekit import EXAMPLES, core_settings
from prometheus_client import generate_latest

from reglink.core.metrics import PipelineMetrics
from reglink.core.pipeline import Pipeline
from reglink.stores.kv import MemoryKV


def test_a_repeated_record_counts_as_redelivered_and_links_to_the_same_person():
    pipe = Pipeline(core_settings(), MemoryKV(), metrics=PipelineMetrics())
    records = [json.loads(line) for line in EXAMPLES.read_text().splitlines()]
    hotel = next(r for r in records if r["source"] == "hotel")
    first, _ = pipe.process(hotel)
    text = generate_latest(pipe.metrics.registry).decode()
    assert 'reglink_redelivered_total{source="hotel"} 0.0' in text
    again, outs = pipe.process(dict(hotel))
    assert again == first
    assert [o.topic for o in outs if o.topic == "identity.events"] == []
    text = generate_latest(pipe.metrics.registry).decode()
    assert 'reglink_redelivered_total{source="hotel"} 1.0' in text
    assert 'reglink_linked_total{source="hotel"} 1.0' in text
