"""The module-level faust app. Imported only by the worker entry point (never by matchers/ or
connectors/). :func:`configure` applies settings and wires the agent at start-up, so nothing
is read from the environment at import time."""

from __future__ import annotations

import json
import logging
import time

import faust

from reglink.settings import Settings
from reglink.topics import SOURCES

from .shell import WorkerShell

log = logging.getLogger("reglink.worker")

app = faust.App("reglink-worker", autodiscover=False)


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

    def out(name: str) -> faust.TopicT:
        if name not in outputs:
            outputs[name] = app.topic(name, key_type=bytes, value_type=bytes,
                                      key_serializer="raw", value_serializer="raw")
        return outputs[name]

    async def send_all(msgs) -> None:
        for topic, key, value in msgs:
            await out(topic).send(key=key, value=value)

    @app.agent(sources, concurrency=1, name="link")
    async def link(stream):
        async for event in stream.events():
            msg = event.message
            await send_all(shell.handle(event.value, msg.topic, msg.partition, msg.offset))

    decisions = app.topic(settings.topic("decisions"), key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw")

    @app.agent(decisions, concurrency=1, name="decide")
    async def decide(stream):
        """Reviewers' decisions feed back into matching (suppressions, misused identities)."""
        async for event in stream.events():
            try:
                decision = json.loads(event.value)
            except ValueError:
                log.warning("ignored a decision that is not JSON at offset %s",
                            event.message.offset)
                continue
            await send_all(shell.encode(shell.pipe.apply_decision(decision)))

    @app.timer(interval=1.0)
    async def tick():
        await send_all(shell.tick(time.time()))
        consumer = app.consumer
        for (topic, partition), pos in list(shell.positions.items()):
            try:
                from faust.types import TP

                high = consumer.highwater(TP(topic, partition))
            except Exception:  # not assigned any more
                continue
            if high is not None:
                shell.pipe.metrics.lag.labels(topic, str(partition)).set(max(0, high - pos - 1))

    return app
