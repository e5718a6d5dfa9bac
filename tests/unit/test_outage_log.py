"""The worker's outage log lines (streams/outage.py, streams/app.py's StoreHealth): one line
when a service goes down, reminders at a falling rate, one recovered line; an injected clock,
no sleeping."""

import logging

import pytest

from reglink.core.metrics import PipelineMetrics
from reglink.core.settings import load_settings
from streams.app import StoreHealth, kafka_unreachable
from streams.outage import Outage, redis_address
from streams.shell import Contended, RetryLater


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger="test.outage")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "test.outage"]


def test_one_line_per_outage_then_reminders_at_a_falling_rate_then_recovered(lines):
    clock = Clock()
    out = Outage(logging.getLogger("test.outage"), "Redis", "127.0.0.1:6379", clock=clock)
    for _ in range(600):  # ten minutes of attempts, one every second
        out.failed("ConnectionError")
        clock.t += 1.0
    got = lines()
    assert got[0] == ("Redis at 127.0.0.1:6379 unreachable (ConnectionError): is it running? "
                      "`reglink stack status`")
    reminders = got[1:]
    assert [r.split(" after ")[1].split(" s ")[0] for r in reminders] == \
        ["10", "20", "40", "80", "160", "320"]
    assert all(r.startswith("Redis at 127.0.0.1:6379 still unreachable after ") for r in reminders)
    assert "(ConnectionError, 321 attempts)" in reminders[-1]
    out.ok()
    assert lines()[-1] == ("Redis at 127.0.0.1:6379 recovered after 600.0 s "
                           "(600 failed attempts)")
    assert not out.active
    out.ok()  # no outage: nothing more
    assert len(lines()) == len(got) + 1


def test_reminders_never_further_apart_than_max_interval(lines):
    clock = Clock()
    out = Outage(logging.getLogger("test.outage"), "Kafka", "h:9092", clock=clock,
                 max_interval=60.0)
    for _ in range(3600):
        out.failed("ConnectionRefusedError")
        clock.t += 1.0
    starts = [float(r.split(" after ")[1].split(" s ")[0]) for r in lines()[1:]]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps and max(gaps) == 60.0 and len(lines()) < 70


def test_each_outage_gets_its_own_first_line(lines):
    clock = Clock()
    out = Outage(logging.getLogger("test.outage"), "Redis", "r:1", clock=clock)
    out.failed("ConnectionError")
    clock.t += 3
    out.ok()
    clock.t += 100
    out.failed("TimeoutError")
    clock.t += 2.5
    out.ok()
    assert lines() == [
        "Redis at r:1 unreachable (ConnectionError): is it running? `reglink stack status`",
        "Redis at r:1 recovered after 3.0 s (1 failed attempts)",
        "Redis at r:1 unreachable (TimeoutError): is it running? `reglink stack status`",
        "Redis at r:1 recovered after 2.5 s (1 failed attempts)",
    ]


def test_redis_address_never_shows_credentials():
    assert redis_address("redis://worker:s3cret@10.0.0.5:6380/0") == "10.0.0.5:6380"
    assert redis_address("rediss://h/0") == "h:6379"


def test_store_health_names_redis_sets_stalled_and_tells_contention_apart(caplog):
    caplog.set_level(logging.INFO, logger="reglink.worker")
    metrics = PipelineMetrics()
    s = load_settings(hmac_key="k", redis_url="redis://worker:pw@127.0.0.1:6399/0")
    health = StoreHealth(s, metrics)
    health.failed(RetryLater("ConnectionError"))
    health.failed(RetryLater("ConnectionError"))
    assert metrics.stalled._value.get() == 1
    health.ok()
    assert metrics.stalled._value.get() == 0
    health.failed(Contended("Conflict"))
    health.ok()
    got = [r.getMessage() for r in caplog.records if r.name == "reglink.worker"]
    assert got[0].startswith("Redis at 127.0.0.1:6399 unreachable (ConnectionError): is it "
                             "running? `reglink stack status`")
    assert got[1].startswith("Redis at 127.0.0.1:6399 recovered after ")
    assert got[2].startswith("Redis at 127.0.0.1:6399 contended: commits keep conflicting")
    assert got[3].startswith("Redis at 127.0.0.1:6399 no longer contended after ")
    assert len(got) == 4 and not any("pw" in line for line in got)


def test_kafka_probe_tells_a_closed_port_from_an_open_one():
    import asyncio

    async def probe() -> tuple:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            up = (await kafka_unreachable(f"127.0.0.1:{port}"),
                  await kafka_unreachable(f"127.0.0.1:1,127.0.0.1:{port}"))
        finally:
            server.close()
            await server.wait_closed()
        return up, await kafka_unreachable(f"127.0.0.1:{port}")

    up, down = asyncio.run(probe())
    assert up == (None, None)
    assert down == "ConnectionRefusedError"
