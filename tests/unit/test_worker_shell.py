"""The worker's per-message logic without faust or a broker (MemoryKV state)."""

import json

from corekit import EXAMPLES
from prometheus_client import generate_latest

from reglink.core.metrics import PipelineMetrics
from reglink.core.pipeline import Pipeline
from reglink.core.settings import load_settings
from reglink.stores.kv import MemoryKV
from streams.shell import WorkerShell


def make_shell():
    s = load_settings(hmac_key="k", idle_timeout_s=5)
    return WorkerShell(s, Pipeline(s, MemoryKV(), metrics=PipelineMetrics())), s


def test_shell_links_alerts_dead_letters_and_counts():
    shell, s = make_shell()
    out = []
    for n, line in enumerate(EXAMPLES.read_bytes().splitlines()):
        src = json.loads(line)["source"]
        out += shell.handle(line, s.topic(f"{src}.raw"), 0, n, now=1000.0 + n)
    out += shell.handle(b"{broken", s.topic("job.raw"), 0, 99, now=1010.0)
    out += shell.tick(now=2000.0)  # every source idle: the watermark flushes
    topics = [t for t, _k, _v, _o in out]
    assert topics.count(s.topic("linked")) == 7
    assert topics.count(s.topic("deadletter")) == 1
    alerts = [json.loads(v) for t, _k, v, _o in out if t == s.topic("alerts")]
    assert sorted(a["rule"] for a in alerts) == ["unregistered_stay", "watchlist_match"]
    dl = next(json.loads(v) for t, _k, v, _o in out if t == s.topic("deadletter"))
    assert dl["reason"] == "malformed_json" and dl["origin"]["offset"] == 99
    text = generate_latest(shell.pipe.metrics.registry).decode()
    assert 'reglink_deadletter_total{reason="malformed_json",source="job"} 1.0' in text
    # the stay alert is resolved (a registration after the deadline); latency counts raised
    assert 'reglink_alerts_total{rule="unregistered_stay",status="resolved"} 1.0' in text
    assert "reglink_alert_latency_seconds_count 1.0" in text
    assert "reglink_link_latency_seconds_count 6.0" in text  # six records carry a report time
    for id_number in ("340102198803150022", "110105790402031", "110105197904020317"):
        assert id_number not in text
        assert all(id_number not in v.decode() for _t, _k, v, _o in out
                   if _t != s.topic("deadletter"))


def test_outbox_keeps_alerts_until_delivery_is_confirmed():
    s = load_settings(hmac_key="k")
    pipe = Pipeline(s, MemoryKV(), outbox=True)
    shell = WorkerShell(s, pipe)
    out = []
    for n, line in enumerate(EXAMPLES.read_bytes().splitlines()):
        src = json.loads(line)["source"]
        out += shell.handle(line, s.topic(f"{src}.raw"), 0, n, now=1000.0 + n)
    out += shell.tick(now=5000.0)
    kept = [o for _t, _k, _v, o in out if o is not None]
    # both alerts, the two identity creations and the population rows of the days that
    # became final wait in the outbox; links do not
    kept_topics = [t for t, _k, _v, o in out if o is not None]
    assert kept_topics.count(s.topic("alerts")) == 2
    assert kept_topics.count(s.topic("identity.events")) == 2
    assert kept_topics.count(s.topic("stats")) == len(kept) - 4 > 0
    assert len(kept) == len(shell.undelivered())
    assert {t for t, _k, _v, o in out if o is None} == {s.topic("linked")}
    for oid in kept[:-1]:
        shell.delivered(oid)
    (left,) = shell.undelivered()
    assert left[3] == kept[-1] and left[:3] == next(m[:3] for m in out if m[3] == kept[-1])


def test_a_resend_after_a_newer_delivered_message_ends_with_the_current_value():
    """A crash leaves ``raised`` unconfirmed in the outbox; the next worker delivers
    ``resolved``; the re-send must not leave ``raised`` as the alert's last message."""
    s = load_settings(hmac_key="k")
    pipe = Pipeline(s, MemoryKV(), outbox=True)
    shell = WorkerShell(s, pipe)
    lines = EXAMPLES.read_bytes().splitlines()
    residence = next(n for n, line in enumerate(lines)
                     if json.loads(line)["source"] == "residence")
    out = []
    for n, line in enumerate(lines):
        if n != residence:
            src = json.loads(line)["source"]
            out += shell.handle(line, s.topic(f"{src}.raw"), 0, n, now=1000.0 + n)
    out += shell.tick(now=5000.0)  # the deadline passes: raised
    raised = [m for m in out if m[0] == s.topic("alerts")
              and json.loads(m[2])["rule"] == "unregistered_stay"]
    assert [json.loads(m[2])["status"] for m in raised] == ["raised"]
    later = shell.handle(lines[residence], s.topic("residence.raw"), 0, residence, now=6000.0)
    (resolved,) = [m for m in later if m[0] == s.topic("alerts")]
    assert json.loads(resolved[2])["status"] == "resolved"
    shell.delivered(resolved[3])  # delivered and confirmed; ``raised`` never confirmed
    again = [m for m in shell.undelivered() if m[1] == raised[0][1]]
    assert [json.loads(m[2])["status"] for m in again] == ["raised", "resolved"]
    assert again[-1][2] == resolved[2] and again[-1][3] is None  # the current value, untracked
    # rows of the statistics: what is re-sent is current, nothing follows them
    rows = [m for m in shell.undelivered() if m[0] == s.topic("stats")]
    assert rows and all(m[3] is not None for m in rows)
    for m in rows:
        assert pipe.rules[[r.name for r in pipe.rules].index("population")].current(
            "stats", m[1].decode()) == json.loads(m[2])


def test_redis_outage_is_retried_not_dead_lettered():
    import pytest
    import redis

    from streams.shell import RetryLater

    s = load_settings(hmac_key="k")
    # A Redis client on a port where nothing listens: the state store is "down".
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    from reglink.stores.kv import RedisKV

    pipe = Pipeline(s, MemoryKV())  # built over a working store, then the backend goes away
    pipe.kv.base = RedisKV(dead, "x:")
    shell = WorkerShell(s, pipe)
    line = EXAMPLES.read_bytes().splitlines()[2]
    with pytest.raises(RetryLater):
        shell.handle(line, s.topic("hotel.raw"), 0, 0, now=1.0)


def test_publish_to_linked_is_observed_per_record_from_its_kafka_timestamp():
    """Batches and single records both observe each record's publish -> outputs time, from
    the Kafka timestamp ``accept`` was given; a record without one is not observed."""
    import time

    shell, s = make_shell()
    lines = EXAMPLES.read_bytes().splitlines()
    items = []
    published = time.time() - 2.0  # published two seconds ago
    for n, line in enumerate(lines):
        src = json.loads(line)["source"]
        item, _dl = shell.accept(line, s.topic(f"{src}.raw"), 0, n,
                                 published=published if n else None)
        if item is not None:
            items.append(item)
    shell.process_batch(items[:-1])
    shell.process_batch(items[-1:])  # a batch of one goes through process()
    hist = shell.pipe.metrics.publish_latency
    text = generate_latest(shell.pipe.metrics.registry).decode()
    assert f"reglink_publish_to_linked_seconds_count {len(items) - 1}.0" in text
    total = hist._sum.get()  # every observation is about 2 s (>= 2, well below 2 + 60)
    assert 2.0 * (len(items) - 1) <= total < (2.0 + 60) * (len(items) - 1)
    assert 'reglink_publish_to_linked_seconds_bucket{le="1.0"} 0.0' in text


def test_publish_to_linked_is_split_into_stages():
    """Intake (publish -> received), hold (received -> unit start) and unit (unit start ->
    outputs) are observed per record, and add up to publish -> linked."""
    import time

    shell, s = make_shell()
    lines = EXAMPLES.read_bytes().splitlines()
    now = time.time()
    items = []
    for n, line in enumerate(lines):
        src = json.loads(line)["source"]
        item, _ = shell.accept(line, s.topic(f"{src}.raw"), 0, n, now=now,
                               published=now - 0.2)  # published 200 ms before it arrived
        if item is not None:
            items.append(item)
    time.sleep(0.05)  # the records wait in the merger
    shell.starting(items)
    shell.process_batch(items)
    m = shell.pipe.metrics
    n = len(items)

    def mean(hist):
        samples = {x.name: x.value for x in hist.collect()[0].samples}
        assert samples[f"{hist._name}_count"] == n
        return samples[f"{hist._name}_sum"] / n

    intake, hold, unit = (mean(m.intake_latency), mean(m.hold_latency),
                          mean(m.unit_latency))
    assert abs(intake - 0.2) < 1e-6
    assert 0.05 <= hold < 0.5 and 0 < unit < 5
    total = mean(m.publish_latency)
    assert abs(total - (intake + hold + unit)) < 0.01
