"""``reglink publish``: read one source's files, validate, publish to Kafka.

Valid records go to ``<prefix><source>.raw`` keyed ``"<source>:<record_id>"``; records that
break the contract go to ``<prefix>deadletter`` keyed by source, with the original bytes, the
reason and the file and line. Every send is acknowledged (``acks=all``, idempotent producer)
before it counts as published or dead-lettered; a send that fails is counted as failed and
the summary then does not reconcile. :class:`PublishSummary` reports the counts, the
dead-letter reasons with their first file:line, and the command's exit status
(:data:`EXIT_OK` and the other ``EXIT_*``). The inputs are checked before this module runs
(:mod:`connectors.checks`).
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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from connectors.readers import STDIN, parse_line, read_files
from reglink.core.contract import DeadLetter, encode_record, reason_code, record_key
from reglink.core.errors import ServiceUnavailable
from reglink.core.settings import Settings
from reglink.kafka_auth import kafka_python_kwargs

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


#: Exit statuses of ``reglink publish`` (2 is the command line's own: a usage error, or Kafka
#: or its topics not reachable, before anything is read).
EXIT_OK = 0  # every record read was published
EXIT_FAILED = 1  # a send was not acknowledged, or an input could not be read to its end
EXIT_DEADLETTERED = 3  # all acknowledged, some records dead-lettered, some published
EXIT_NOTHING_USABLE = 4  # inputs refused before sending, or no record published

#: How many reasons the text summary lists (``--json`` gives them all).
TEXT_REASONS = 12


@dataclass
class FileCounts:
    """Counts for one input (``<stdin>`` for ``-``)."""

    read: int = 0
    published: int = 0
    deadlettered: int = 0
    failed: int = 0

    def all_deadlettered(self) -> bool:
        return self.read > 0 and self.deadlettered == self.read


@dataclass
class ReasonCount:
    """Acknowledged dead letters with one reason, and where the first of them was read."""

    count: int = 0
    first: dict[str, Any] | None = None  # {"file": ..., "line": n}


@dataclass
class PublishSummary:
    """What a publish did: counts (overall and per input), dead letters by reason with the
    first place of each, an input that failed mid-way, or the inputs refused before sending."""

    read: int = 0
    published: int = 0
    deadlettered: int = 0
    failed: int = 0
    reasons: _Counter[str] = field(default_factory=_Counter)  # dead letters by reason code
    # dead letters by full reason ("missing_field: time"), in the order first read
    by_reason: dict[str, ReasonCount] = field(default_factory=dict)
    files: dict[str, FileCounts] = field(default_factory=dict)
    read_error: str | None = None  # an input that failed while being read (reading stopped)
    refused: list[Any] = field(default_factory=list)  # connectors.checks.Problem, nothing sent
    deadletter_topic: str | None = None

    def line(self) -> str:
        text = f"read {self.read}, published {self.published}, dead-lettered {self.deadlettered}"
        return text + (f", FAILED {self.failed}" if self.failed else "")

    def reconciles(self) -> bool:
        """Every record read was acknowledged as published or dead-lettered, none failed."""
        return self.failed == 0 and self.read == self.published + self.deadlettered

    def exit_status(self) -> int:
        """:data:`EXIT_OK`, :data:`EXIT_FAILED`, :data:`EXIT_DEADLETTERED` or
        :data:`EXIT_NOTHING_USABLE` (a failure outranks the others)."""
        if self.refused:
            return EXIT_NOTHING_USABLE
        if not self.reconciles() or self.read_error is not None:
            return EXIT_FAILED
        if self.published == 0:
            return EXIT_NOTHING_USABLE
        return EXIT_DEADLETTERED if self.deadlettered else EXIT_OK

    def sorted_reasons(self) -> list[tuple[str, ReasonCount]]:
        """Reasons with at least one acknowledged dead letter, most frequent first."""
        order = {reason: i for i, reason in enumerate(self.by_reason)}
        return sorted(((r, c) for r, c in self.by_reason.items() if c.count),
                      key=lambda rc: (-rc[1].count, order[rc[0]]))

    def warnings(self) -> list[str]:
        """One line per input whose every record was dead-lettered."""
        return [f"warning: every record of {name} was dead-lettered ({c.read} of {c.read}): "
                "check --source and --format, and the dead-letter reasons"
                for name, c in self.files.items() if c.all_deadlettered()]

    def text(self) -> list[str]:
        """The summary for people: the counts line, then the dead-letter reasons with their
        counts and first places, then per-input counts when there are several inputs."""
        out = [self.line()]
        if self.refused:
            n = len(self.refused)
            return [f"nothing published: {n} input{'s' if n > 1 else ''} refused before "
                    "sending (reasons on stderr)"]
        reasons = self.sorted_reasons()
        if reasons:
            where = f" (on topic {self.deadletter_topic})" if self.deadletter_topic else ""
            out.append(f"dead-letter reasons{where}:")
            width = max(len(str(c.count)) for _, c in reasons)
            for reason, c in reasons[:TEXT_REASONS]:
                place = f"  first at {_place(c.first)}" if c.first else ""
                out.append(f"  {c.count:>{width}}  {reason}{place}")
            if len(reasons) > TEXT_REASONS:
                rest = sum(c.count for _, c in reasons[TEXT_REASONS:])
                out.append(f"  ... {len(reasons) - TEXT_REASONS} more reasons ({rest} records):"
                           " --json lists them all")
        if len(self.files) > 1:
            out.append("per input:")
            for name, c in self.files.items():
                fail = f", FAILED {c.failed}" if c.failed else ""
                out.append(f"  {name}: read {c.read}, published {c.published}, "
                           f"dead-lettered {c.deadlettered}{fail}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The summary as one JSON-ready object (what ``reglink publish --json`` prints)."""
        return {
            "read": self.read,
            "published": self.published,
            "deadlettered": self.deadlettered,
            "failed": self.failed,
            "reasons": [{"reason": reason, "code": reason_code(reason), "count": c.count,
                         "first": c.first} for reason, c in self.sorted_reasons()],
            "files": [{"file": name, "read": c.read, "published": c.published,
                       "deadlettered": c.deadlettered, "failed": c.failed,
                       "all_deadlettered": c.all_deadlettered()}
                      for name, c in self.files.items()],
            "warnings": self.warnings(),
            "read_error": self.read_error,
            "refused": [{"file": p.file, "problem": p.message} for p in self.refused],
            "deadletter_topic": self.deadletter_topic,
            "exit_status": self.exit_status(),
        }


def _place(origin: dict[str, Any] | None) -> str:
    if not origin:
        return "?"
    return f"{origin.get('file')}:{origin.get('line')}"


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
    stdin: Iterable[bytes] | None = None,
) -> PublishSummary:
    """Publish ``files`` (``-`` is stdin) of ``source``; return the reconciled counts.

    The inputs are not checked here (every record read is published or dead-lettered):
    :func:`connectors.checks.check_inputs` checks them first, and its ``stdin`` lines go in
    ``stdin``. An input that fails while being read stops the reading; what was read is
    flushed and counted, and :attr:`PublishSummary.read_error` says which input failed.

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
    summary = PublishSummary(deadletter_topic=dl_topic)
    lock = threading.Lock()
    stop = stop or threading.Event()

    def on_published(counts: FileCounts) -> Any:
        def done(_meta: Any) -> None:
            with lock:
                summary.published += 1
                counts.published += 1
            metrics.published.labels(source).inc()
        return done

    def on_deadlettered(dead: DeadLetter, counts: FileCounts) -> Any:
        code = dead.code
        with lock:  # the first place is the first in reading order, not in acknowledgement order
            entry = summary.by_reason.setdefault(dead.reason, ReasonCount())
            if entry.first is None:
                entry.first = dict(dead.origin)

        def done(_meta: Any) -> None:
            with lock:
                summary.deadlettered += 1
                summary.reasons[code] += 1
                entry.count += 1
                counts.deadlettered += 1
            metrics.deadletter.labels(source, code).inc()
        return done

    def on_failed(counts: FileCounts) -> Any:
        def failed(exc: BaseException) -> None:
            with lock:
                summary.failed += 1
                counts.failed += 1
            metrics.failed.labels(source).inc()
            log.error("send failed: %s", type(exc).__name__)
        return failed

    def send(topic: str, key: bytes, value: bytes, ok: Any, failed: Any) -> None:
        try:
            future = producer.send(topic, key=key, value=value)
        except Exception as exc:  # noqa: BLE001 - e.g. MessageSizeTooLarge, buffer timeout
            failed(exc)
            return
        future.add_callback(ok)
        future.add_errback(failed)

    # per input: its counts, its "published" callback and its errback
    callbacks: dict[str, tuple[FileCounts, Any, Any]] = {}

    bar = task = None
    if sys.stderr.isatty():
        bar, task = _progress_bar(files, follow)
    advance = (lambda n: bar.advance(task, n)) if bar is not None else None

    try:
        if bar is not None:
            bar.start()
        with _StopOnSignal(stop):
            try:
                for item in read_files(files, fmt, follow=follow, stop=stop, poll_s=poll_s,
                                       progress=advance, stdin=stdin):
                    name = item.origin["file"]
                    if name not in callbacks:
                        with lock:
                            counts = summary.files.setdefault(name, FileCounts())
                        callbacks[name] = (counts, on_published(counts), on_failed(counts))
                    counts, published, failed = callbacks[name]
                    summary.read += 1  # read counts are written by this thread only
                    counts.read += 1
                    metrics.records_in.labels(source).inc()
                    record, dead = parse_line(item, source)
                    if record is not None:
                        send(raw_topic, record_key(record).encode("utf-8"),
                             encode_record(record), published, failed)
                    else:
                        assert dead is not None
                        log.debug("dead letter %s at %s", dead.code, dead.origin)
                        send(dl_topic, source.encode("utf-8"), _encode_dead(dead),
                             on_deadlettered(dead, counts), failed)
                    if bar is not None and summary.read % 1000 == 0:
                        bar.update(task, description=f"read {summary.read}")
            except OSError as exc:  # an input vanished or failed mid-way: count what was sent
                summary.read_error = (f"{exc.filename or 'an input'}: "
                                      f"{exc.strerror or type(exc).__name__}")
                log.error("reading stopped: %s", summary.read_error)
        _flush(producer)
    finally:
        if bar is not None:
            bar.update(task, description=f"read {summary.read}")
            bar.stop()
        if own_producer:
            _close(producer)
    with lock:  # anything neither acknowledged nor failed by now (flush timed out) failed
        for counts in summary.files.values():
            missing = counts.read - counts.published - counts.deadlettered - counts.failed
            if missing > 0:
                counts.failed += missing
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
