"""Helpers for tests of the pure core (no services): a pipeline over the embedded store."""

from __future__ import annotations

from matchers.stores.kv import MemoryKV
from reglink.pipeline import Pipeline
from reglink.settings import Settings, load_settings


def core_settings(**kw) -> Settings:
    return load_settings(hmac_key="unit-test-key", **kw)


def run_core(records, **kw):
    """Feed records in order; return (pipeline, alert messages, record -> person id)."""
    pipe = Pipeline(core_settings(**kw), MemoryKV())
    alerts, links = [], {}
    for r in records:
        pid, outs = pipe.process(r)
        links[r.get("record_id") or r.get("watch_id")] = pid
        alerts += [o.value for o in outs if o.topic == "alerts"]
    alerts += [o.value for o in pipe.finish() if o.topic == "alerts"]
    return pipe, alerts, links
