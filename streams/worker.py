"""``reglink worker``: connect to Redis and Kafka, build the core, run the faust app."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

from matchers import native
from matchers.model import load_model
from reglink.core.metrics import PipelineMetrics
from reglink.core.pipeline import Pipeline
from reglink.core.settings import Settings
from reglink.core.topics import SOURCES
from reglink.kafka_auth import connect_redis as _connect_redis
from reglink.kafka_auth import kafka_client, redis_url
from reglink.stores.kv import RedisKV, ensure_layout
from reglink.stores.schema import ensure_model
from streams import overlap
from streams.shell import WorkerShell

log = logging.getLogger("reglink.worker")


def connect_redis(settings: Settings):
    """The worker's (blocking) Redis client; it packs commands as the asyncio one does
    (:func:`streams.overlap.hiredis_packing`)."""
    client = _connect_redis(settings, "worker", retry_on_timeout=True)
    pool = client.connection_pool
    pool.connection_class = overlap.hiredis_packing(pool.connection_class)
    pool.reset()  # the connection that answered PING was made with the class before
    return client


def async_redis(settings: Settings) -> overlap.AsyncRedis:
    """The worker's asyncio Redis client (same server, user and options as
    :func:`connect_redis`; connects on first use, inside the worker's event loop)."""
    import redis.asyncio

    return overlap.AsyncRedis(redis.asyncio.Redis.from_url(
        redis_url(settings, "worker"), socket_timeout=10, retry_on_timeout=True))


def start_positions(settings: Settings) -> dict[tuple[str, int], int]:
    """Where this consumer group will start reading each source partition (committed offset,
    else the beginning). Lets the worker tell unread records from an idle source."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = kafka_client(KafkaConsumer, settings, "worker", group_id=settings.app_id,
                            enable_auto_commit=False, request_timeout_ms=15000)
    try:
        out: dict[tuple[str, int], int] = {}
        for source in SOURCES:
            topic = settings.topic(f"{source}.raw")
            parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            if not tps:
                continue
            begins = consumer.beginning_offsets(tps)
            for tp in tps:
                committed = consumer.committed(tp)
                out[(topic, tp.partition)] = committed if committed is not None else begins[tp]
        return out
    finally:
        consumer.close()


def build_shell(settings: Settings, metrics: PipelineMetrics | None = None) -> WorkerShell:
    client = connect_redis(settings)
    kv = RedisKV(client, settings.redis_prefix)
    kv.io = overlap.io  # inside overlap.run, its round trips do not block the event loop
    ensure_layout(kv)  # refuses a store in an older layout (it would link nothing)
    model = load_model(settings.model)
    ensure_model(kv, model.features, model.version)  # refuses a model of other features
    pipe = Pipeline(settings, kv, metrics=metrics, outbox=True)
    shell = WorkerShell(settings, pipe)
    for (topic, partition), start in start_positions(settings).items():
        shell.positions[(topic, partition)] = start - 1  # last offset consumed
    return shell


# faust, mode and aiokafka log their routine at debug/info; the worker's log keeps warnings
QUIET_LOGGERS = ("faust", "mode", "aiokafka")


def worker_class():
    from faust.worker import Worker

    class JsonLogWorker(Worker):
        """faust's Worker, with reglink's logging kept.

        faust's own set-up replaces the root handler and, for its terminal spinner, puts the
        root logger at DEBUG: every debug call in faust, mode and aiokafka (one per message
        the producer sends) then builds a log record only for the handlers to drop it, and
        the log turns from JSON lines into faust's text. Here the root logger is put back as
        :func:`reglink.logs.configure_json_logging` sets it (JSON lines, INFO), and the
        libraries' loggers at WARNING."""

        #: Called in order (and awaited when they return an awaitable) once the app and all
        #: its tasks have stopped: nothing uses the clients after that.
        closers: tuple = ()

        async def on_shutdown(self) -> None:
            await super().on_shutdown()
            failed = 0
            for close in self.closers:
                try:
                    result = close()
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:  # noqa: BLE001 - stopping anyway: say so, go on
                    failed += 1
                    log.warning("closing a client at shutdown failed: %r", exc)
            if self.closers and not failed:
                log.info("worker stopped; its Redis clients are closed")

        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            from reglink.logs import configure_json_logging

            self.spinner = None
            configure_json_logging()
            for name in QUIET_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)

    return JsonLogWorker


def run_worker(settings: Settings, workdir: str | None = None,
               metrics_port: int | None = None) -> None:
    from prometheus_client import start_http_server

    from reglink.logs import configure_json_logging
    from reglink.runtime import tune_gc

    configure_json_logging()
    tune_gc()
    if settings.uses_dev_key:
        log.warning("using the development HMAC key; set REGLINK_HMAC_KEY in production")
    metrics = PipelineMetrics()
    shell = build_shell(settings, metrics)
    log.info("core: %s", native.mode())  # once it is known to start (a refusal is one line)
    port = settings.worker_metrics_port if metrics_port is None else metrics_port
    if port:
        start_http_server(port, addr=settings.metrics_host, registry=metrics.registry)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, port)
    datadir = Path(workdir or Path(settings.state_dir) / "worker" / settings.app_id)
    datadir.mkdir(parents=True, exist_ok=True)
    from streams.app import configure

    redis_io = async_redis(settings)
    app = configure(settings, shell, str(datadir), redis_io=redis_io)
    worker = worker_class()(app, loglevel="warning", quiet=True)
    worker.closers = (redis_io.aclose, shell.pipe.kv.base.close)
    worker.execute_from_commandline()
