"""``reglink publish``: read one source's files, validate, publish to Kafka.

Valid records go to ``<prefix><source>.raw`` keyed ``"<source>:<record_id>"``; records that
break the contract go to ``<prefix>deadletter`` keyed by source, with the original bytes, the
reason and the file and line. Every send is acknowledged (``acks=all``, idempotent producer)
before it counts as published or dead-lettered; a send that fails is counted as failed and
the summary then does not reconcile (non-zero exit).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import weakref
from collections import Counter as _Counter
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from reglink.contract import DeadLetter, encode_record, record_key
from reglink.errors import ServiceUnavailable
from reglink.kafka_auth import kafka_python_kwargs
from reglink.settings import Settings

from .readers import STDIN, parse_line, read_files

log = logging.getLogger("reglink.connectors.publish")

#: Registry used when none is passed in (served by ``metrics_port``).
REGISTRY = CollectorRegistry()


class ConnectorMetrics:
    """The connector's counters. Labels are sources and reason codes only (no personal data)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.records_in = Counter("reglink_records_in_total", "Records read by a connector",
                                  ["source"], registry=registry)
        self.published = Counter("reglink_published_total",
                                 "Valid records acknowledged by Kafka", ["source"],
                                 registry=registry)
        self.deadletter = Counter("reglink_deadletter_total",
                                  "Records dead-lettered (acknowledged), by reason code",
                                  ["source", "reason"], registry=registry)
        self.failed = Counter("reglink_publish_failed_total",
                              "Sends that Kafka did not acknowledge", ["source"],
                              registry=registry)


_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, ConnectorMetrics] = (
    weakref.WeakKeyDictionary())


def metrics_for(registry: CollectorRegistry | None = None) -> ConnectorMetrics:
    """One :class:`ConnectorMetrics` per registry (metrics register once per registry)."""
    registry = REGISTRY if registry is None else registry
    if registry not in _METRICS:
        _METRICS[registry] = ConnectorMetrics(registry)
    return _METRICS[registry]


@dataclass
class PublishSummary:
    read: int = 0
    published: int = 0
    deadlettered: int = 0
    failed: int = 0
    reasons: _Counter[str] = field(default_factory=_Counter)  # dead letters by reason code

    def line(self) -> str:
        text = f"read {self.read}, published {self.published}, dead-lettered {self.deadlettered}"
        return text + (f", FAILED {self.failed}" if self.failed else "")

    def reconciles(self) -> bool:
        """Every record read was acknowledged as published or dead-lettered, none failed."""
        return self.failed == 0 and self.read == self.published + self.deadlettered


def _unreachable(settings: Settings) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"Kafka not reachable at {settings.kafka_bootstrap}: run `reglink stack up`")


def make_producer(settings: Settings, *, bootstrap_timeout_s: float = 10.0,
                  role: str = "connector") -> Any:
    """An idempotent ``acks=all`` producer; :class:`ServiceUnavailable` if Kafka is down.
    ``role`` is the Kafka principal in scram mode (``connector-<source>``)."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    config: dict[str, Any] = dict(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id="reglink-publish",
        acks="all",
        linger_ms=5,
        retries=2**31 - 1,
        max_in_flight_requests_per_connection=5,
        max_block_ms=15_000,
        delivery_timeout_ms=120_000,
        bootstrap_timeout_ms=int(bootstrap_timeout_s * 1000),
        compression_type=None,
        **kafka_python_kwargs(settings, role),
    )
    if "enable_idempotence" in KafkaProducer.DEFAULT_CONFIG:
        config["enable_idempotence"] = True
    try:
        return KafkaProducer(**config)
    except KafkaError as exc:  # NoBrokersAvailable, KafkaTimeoutError (bootstrap)
        raise _unreachable(settings) from exc


def _check_topics(settings: Settings, topics: list[str], timeout_s: float = 10.0,
                  role: str = "connector") -> None:
    """Fail fast with the fix when a topic is missing (broker auto-create is off; a send to a
    missing topic would otherwise block for ``max_block_ms``)."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    try:
        probe = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                              client_id="reglink-publish-check",
                              request_timeout_ms=int(timeout_s * 1000),
                              bootstrap_timeout_ms=int(timeout_s * 1000),
                              **kafka_python_kwargs(settings, role))
    except KafkaError as exc:
        raise _unreachable(settings) from exc
    try:
        existing = probe.topics()
    except KafkaError as exc:
        raise _unreachable(settings) from exc
    finally:
        probe.close()
    missing = [t for t in topics if t not in existing]
    if missing:
        raise ServiceUnavailable(
            f"topic(s) {', '.join(missing)} missing at {settings.kafka_bootstrap}: "
            "run `reglink stack up` (it creates the topics)")


class _StopOnSignal:
    """SIGINT/SIGTERM set ``stop`` (the reader ends, everything sent is flushed and counted).
    A second signal interrupts at once. Only installable from the main thread."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.saved: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def _progress_bar(files: list[str], follow: bool):  # pragma: no cover - needs a TTY
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    total = None
    if not follow and STDIN not in files:
        try:
            total = sum(os.path.getsize(f) for f in files)
        except OSError:
            total = None
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                        DownloadColumn(), TimeElapsedColumn(), console=Console(stderr=True),
                        transient=False)
    task = progress.add_task("publishing", total=total)
    return progress, task


def run_publish(
    settings: Settings,
    source: str,
    files: list[str],
    fmt: str = "auto",
    follow: bool = False,
    *,
    registry: CollectorRegistry | None = None,
    metrics_port: int | None = None,
    stop: threading.Event | None = None,
    poll_s: float = 0.2,
    producer: Any = None,
) -> PublishSummary:
    """Publish ``files`` (``-`` is stdin) of ``source``; return the reconciled counts.

    Metrics go to ``registry`` (default: this module's :data:`REGISTRY`), served over HTTP on
    ``metrics_port`` when given, or on ``settings.connector_metrics_port`` when the
    setting ``connector_metrics`` is on. ``stop`` ends a ``follow`` early (signals set it too).
    """
    files = list(files) or [STDIN]
    metrics = metrics_for(registry)
    if metrics_port is None and settings.connector_metrics:
        metrics_port = settings.connector_metrics_port
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=settings.metrics_host,
                          registry=REGISTRY if registry is None else registry)

    raw_topic = settings.topic(f"{source}.raw")
    dl_topic = settings.topic("deadletter")
    own_producer = producer is None
    if own_producer:
        producer = make_producer(settings, role=f"connector-{source}")
    try:
        _check_topics(settings, [raw_topic, dl_topic], role=f"connector-{source}")
    except BaseException:
        if own_producer:
            _close(producer)
        raise
    summary = PublishSummary()
    lock = threading.Lock()
    stop = stop or threading.Event()

    def on_published(_meta: Any) -> None:
        with lock:
            summary.published += 1
        metrics.published.labels(source).inc()

    def on_deadlettered(code: str) -> Any:
        def done(_meta: Any) -> None:
            with lock:
                summary.deadlettered += 1
                summary.reasons[code] += 1
            metrics.deadletter.labels(source, code).inc()
        return done

    def on_failed(exc: BaseException) -> None:
        with lock:
            summary.failed += 1
        metrics.failed.labels(source).inc()
        log.error("send failed: %s", type(exc).__name__)

    def send(topic: str, key: bytes, value: bytes, ok: Any) -> None:
        try:
            future = producer.send(topic, key=key, value=value)
        except Exception as exc:  # noqa: BLE001 - e.g. MessageSizeTooLarge, buffer timeout
            on_failed(exc)
            return
        future.add_callback(ok)
        future.add_errback(on_failed)

    bar = task = None
    if sys.stderr.isatty():
        bar, task = _progress_bar(files, follow)
    advance = (lambda n: bar.advance(task, n)) if bar is not None else None

    try:
        if bar is not None:
            bar.start()
        with _StopOnSignal(stop):
            for item in read_files(files, fmt, follow=follow, stop=stop, poll_s=poll_s,
                                   progress=advance):
                summary.read += 1
                metrics.records_in.labels(source).inc()
                record, dead = parse_line(item, source)
                if record is not None:
                    send(raw_topic, record_key(record).encode("utf-8"), encode_record(record),
                         on_published)
                else:
                    assert dead is not None
                    log.debug("dead letter %s at %s", dead.code, dead.origin)
                    send(dl_topic, source.encode("utf-8"), _encode_dead(dead),
                         on_deadlettered(dead.code))
                if bar is not None and summary.read % 1000 == 0:
                    bar.update(task, description=f"read {summary.read}")
        _flush(producer)
    finally:
        if bar is not None:
            bar.update(task, description=f"read {summary.read}")
            bar.stop()
        if own_producer:
            _close(producer)
    with lock:  # anything neither acknowledged nor failed by now (flush timed out) failed
        missing = summary.read - summary.published - summary.deadlettered - summary.failed
        if missing > 0:
            summary.failed += missing
    return summary


def _encode_dead(dead: DeadLetter) -> bytes:
    return json.dumps(dead.to_message(), ensure_ascii=False, separators=(",", ":")).encode()


def _flush(producer: Any, timeout_s: float = 180.0) -> None:
    from kafka.errors import KafkaError

    try:
        producer.flush(timeout=timeout_s)
    except KafkaError as exc:
        log.error("flush did not complete: %s", type(exc).__name__)


def _close(producer: Any) -> None:
    try:
        producer.close(timeout=10)
    except Exception:  # noqa: BLE001 - closing must not hide the summary
        log.warning("producer did not close cleanly", exc_info=True)
