"""The stream baseline: a faust agent that only forwards every source record to ``linked``.

Same broker, same topics, same faust settings and Worker class as the worker (manual commit
cadence, acks=-1); no parsing, no matching, no Redis. Run:
``python -m benchmarks.bare_forwarder`` with the ``REGLINK_*`` environment of the run."""

from __future__ import annotations

import atexit
import shutil
import tempfile

import faust

from reglink.core.settings import load_settings
from reglink.core.topics import SOURCES
from reglink.kafka_auth import faust_broker_credentials


def main() -> None:
    s = load_settings()
    datadir = tempfile.mkdtemp(prefix=f"faust-{s.app_id}-")
    atexit.register(shutil.rmtree, datadir, ignore_errors=True)  # one per run, not left behind
    app = faust.App(s.app_id, broker=f"kafka://{s.kafka_bootstrap}", store="memory://",
                    web_enabled=False, topic_allow_declare=False, topic_disable_leader=True,
                    producer_acks=-1, consumer_auto_offset_reset="earliest",
                    broker_commit_every=500, broker_commit_interval=1.0,
                    stream_buffer_maxsize=4096, autodiscover=False,
                    datadir=datadir,
                    broker_credentials=faust_broker_credentials(s, "worker"))
    src = app.topic(*[s.topic(f"{x}.raw") for x in SOURCES], key_type=bytes, value_type=bytes,
                    key_serializer="raw", value_serializer="raw")
    out = app.topic(s.topic("linked"), key_type=bytes, value_type=bytes, key_serializer="raw",
                    value_serializer="raw")

    @app.agent(src, concurrency=1)
    async def forward(stream):
        async for event in stream.events():
            await out.send(key=event.key, value=event.value)

    from streams.worker import worker_class
    # the worker's Worker class: the same logging set-up (faust's own costs a log record per
    # debug call), so the ceiling carries none of the overhead the worker was spared
    worker_class()(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
