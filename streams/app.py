"""The module-level faust app. Imported only by the worker entry point (never by matchers/ or
connectors/). :func:`configure` applies settings and wires the agent at start-up, so nothing
is read from the environment at import time.

Delivery: at least once. faust flushes the producer before it commits a source offset, so a
record's outputs are in Kafka before its offset is committed. Alerts and identity events also
sit in the state store's outbox (committed with the state change that caused them) until the
broker acknowledges them; after a crash the outbox is re-sent, so none is lost between the
Redis commit and the Kafka flush. Repeats are exact duplicates (same alert_id and status).
"""

from __future__ import annotations

import asyncio
import logging
import time

import faust

from reglink.settings import Settings
from reglink.topics import SOURCES

from .shell import RetryLater, WorkerShell

log = logging.getLogger("reglink.worker")

app = faust.App("reglink-worker", autodiscover=False)

RESEND_EVERY_S = 30.0


def configure(settings: Settings, shell: WorkerShell, datadir: str) -> faust.App:
    # The app id (= consumer group) comes from settings; faust keeps it beside the defaults.
    _appid, defaults = app._default_options
    app._default_options = (settings.app_id, defaults)
    app.config_from_object({
        "broker": f"kafka://{settings.kafka_bootstrap}",
        "store": "memory://",
        "datadir": datadir,
        "web_enabled": False,
        "topic_allow_declare": False,   # topics are created explicitly by `reglink stack up`
        "topic_disable_leader": True,
        "producer_acks": -1,
        "consumer_auto_offset_reset": "earliest",
        "broker_commit_every": 500,
        "broker_commit_interval": 1.0,
        "stream_buffer_maxsize": 4096,
    })
    sources = app.topic(*[settings.topic(f"{s}.raw") for s in SOURCES],
                        key_type=bytes, value_type=bytes, key_serializer="raw",
                        value_serializer="raw")
    outputs: dict[str, faust.TopicT] = {}
    metrics = shell.pipe.metrics
    state = {"last_resend": 0.0}

    def out(name: str) -> faust.TopicT:
        if name not in outputs:
            outputs[name] = app.topic(name, key_type=bytes, value_type=bytes,
                                      key_serializer="raw", value_serializer="raw")
        return outputs[name]

    def _confirm(oid: str):
        def done(fut) -> None:
            if not fut.cancelled() and fut.exception() is None:
                shell.delivered(oid)
        return done

    async def send_all(msgs) -> None:
        for topic, key, value, oid in msgs:
            fut = await out(topic).send(key=key, value=value)
            if oid is not None:
                fut.add_done_callback(_confirm(oid))

    async def with_retry(what: str, fn, *args):
        """Back off while the state store is down; the record is kept, never dead-lettered."""
        delay = 0.2
        while True:
            try:
                result = fn(*args)
            except RetryLater as exc:
                metrics.stalled.set(1)
                log.warning("state store unavailable (%s) during %s; retrying in %.1fs",
                            exc, what, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            metrics.stalled.set(0)
            return result

    @app.agent(sources, concurrency=1, name="link")
    async def link(stream):
        async for event in stream.events():
            msg = event.message
            msgs = await with_retry("a record", shell.handle, event.value, msg.topic,
                                    msg.partition, msg.offset)
            await send_all(msgs)

    def refresh_backlog() -> None:
        """Lag per source partition; a partition with unread records is not idle."""
        from faust.types import TP

        consumer = app.consumer
        now = time.time()
        for tp in list(consumer.assignment()):
            try:
                high = consumer.highwater(TP(tp.topic, tp.partition))
            except Exception:  # noqa: BLE001 - revoked meanwhile
                continue
            pos = shell.positions.get((tp.topic, tp.partition))
            if high is None or pos is None:
                continue
            lag = high - (pos + 1)
            metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, lag))
            source = shell.source_of.get(tp.topic)
            if lag > 0 and source is not None:
                shell.pipe.backlog(f"{source}#{tp.partition}", now)

    @app.timer(interval=1.0)
    async def tick():
        refresh_backlog()  # first: the idle decision in shell.tick() relies on it
        try:
            await send_all(shell.tick(time.time()))
            if time.monotonic() - state["last_resend"] >= RESEND_EVERY_S:
                state["last_resend"] = time.monotonic()
                await send_all(shell.undelivered())
        except RetryLater as exc:
            metrics.stalled.set(1)
            log.warning("state store unavailable (%s) during tick", exc)

    return app
