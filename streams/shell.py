"""What the faust agent does with one Kafka message, without faust: parse, dead-letter or
process, and turn core outputs into (topic, key, value bytes). Testable without a broker."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from matchers.fastjson import dumpb
from reglink.core.contract import parse_record, reason_code, report_time
from reglink.core.pipeline import Out, Pipeline
from reglink.core.rules.clock import ts
from reglink.core.rules.merge import order_key
from reglink.core.settings import Settings
from reglink.core.topics import SOURCES
from reglink.stores.kv import Conflict

log = logging.getLogger("reglink.worker")

Message = tuple[str, bytes, bytes, str | None]  # topic, key, value, outbox id


class RetryLater(Exception):
    """The state store is unreachable: keep the record, back off, try it again."""

    what = "state store unavailable"


class Contended(RetryLater):
    """Other writers (a purge sweep, other workers) kept changing what the record reads for
    all of its conflict retries: keep it, back off, try it again. Never dead-lettered."""

    what = "state store contended"


def _infrastructure_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
            redis.exceptions.BusyLoadingError, redis.exceptions.ReadOnlyError)


@dataclass(slots=True)
class Item:
    """A valid record waiting to be processed, with where it came from."""

    record: dict
    source: str
    channel: str  # source#partition
    order: tuple
    report_ts: float | None
    received: float
    raw: bytes
    origin: dict
    published: float | None = None  # the source message's Kafka timestamp (epoch s)


class WorkerShell:
    def __init__(self, settings: Settings, pipeline: Pipeline) -> None:
        self.s = settings
        self.pipe = pipeline
        self.source_of = {settings.topic(f"{s}.raw"): s for s in SOURCES}
        self.positions: dict[tuple[str, int], int] = {}
        self._infra = _infrastructure_errors()
        self._confirmed: list[str] = []  # outbox ids the broker acknowledged, not yet cleared

    def handle(self, raw: bytes, topic: str, partition: int, offset: int,
               now: float | None = None) -> list[Message]:
        """Accept and process one message at once (no event-time reordering)."""
        item, msgs = self.accept(raw, topic, partition, offset, now)
        return msgs if item is None else self.process(item, now)

    def accept(self, raw: bytes, topic: str, partition: int, offset: int,
               now: float | None = None, published: float | None = None
               ) -> tuple[Item | None, list[Message]]:
        """Parse one message. A record the contract rejects becomes its dead letter at once;
        a valid one becomes an :class:`Item` to process (possibly after reordering).
        ``published``: the message's Kafka timestamp, for the publish -> linked histogram."""
        now = time.time() if now is None else now
        self.positions[(topic, partition)] = offset
        source = self.source_of.get(topic, "person")
        origin = {"topic": topic, "partition": partition, "offset": offset}
        record, dl = parse_record(raw or b"", source, origin)
        if dl is not None:
            code = reason_code(dl.reason)
            self.pipe.metrics.deadletter.labels(source, code).inc()
            log.warning("dead-lettered record from %s[%d]@%d: %s", topic, partition, offset, code)
            return None, [(self.s.topic("deadletter"), source.encode(),
                           json.dumps(dl.to_message(), ensure_ascii=False).encode(), None)]
        rt = report_time(record)
        ts_ = rt.timestamp() if rt is not None else None
        if published is not None:
            self.pipe.metrics.intake_latency.observe(max(0.0, now - published))
        return Item(record, source, f"{source}#{partition}", order_key(source, ts_), ts_, now,
                    raw, origin, published), []

    def starting(self, items: list[Item]) -> None:
        """``items``' unit of work starts now: how long each waited since it arrived."""
        now = time.time()
        hold = self.pipe.metrics.hold_latency
        for it in items:
            hold.observe(max(0.0, now - it.received))

    def process(self, item: Item, now: float | None = None) -> list[Message]:
        now = time.time() if now is None else now
        t0 = time.perf_counter()
        try:
            _pid, outs = self.pipe.process(item.record, now, channel=item.channel)
        except self._infra as exc:  # Redis down or loading: not the record's fault
            raise RetryLater(type(exc).__name__) from exc
        except Conflict as exc:  # contention (e.g. a purge sweep): not the record's fault
            raise Contended("Conflict") from exc
        except Exception as exc:  # a record the core cannot handle must not stop the worker
            o = item.origin
            log.exception("record %s[%d]@%d failed in the core", o["topic"], o["partition"],
                          o["offset"])
            self.pipe.metrics.deadletter.labels(item.source, "processing_error").inc()
            msg = {"source": item.source, "reason": f"processing_error: {type(exc).__name__}",
                   "origin": o, "original_text": item.raw.decode("utf-8", "replace")}
            return [(self.s.topic("deadletter"), item.source.encode(),
                     json.dumps(msg, ensure_ascii=False).encode(), None)]
        took = time.perf_counter() - t0
        self.pipe.metrics.process_latency.observe(took)
        self.pipe.metrics.unit_latency.observe(took)
        if item.report_ts is not None:
            self.pipe.metrics.link_latency.observe(max(0.0, item.received - item.report_ts))
        self._observe_published([item])
        self._observe_alerts(outs, now)
        return self.encode(outs)

    def process_batch(self, items: list[Item], now: float | None = None) -> list[Message]:
        """Process several released records (in that order) as one unit of work: the same
        messages as :meth:`process` on each in turn. A conflict with another worker's commit
        re-runs only the records from the first one that read a changed key (the pipeline
        commits those before it); if the first record conflicts twice in a row, what is
        left is split in halves (down to single records, which retry on their own). A batch
        the core cannot finish (a record it fails on) is rolled back and its uncommitted
        records are processed one by one, so a bad record is dead-lettered alone."""
        if len(items) <= 1:
            return [m for it in items for m in self.process(it, now)]
        now = time.time() if now is None else now
        t0 = time.perf_counter()
        try:
            results = self.pipe.process_batch([(it.record, it.channel) for it in items], now,
                                              max_retries=1)
        except self._infra as exc:
            raise RetryLater(type(exc).__name__) from exc
        except Conflict as exc:
            # Other workers keep changing what the rest of this batch reads: halves read
            # less, so they conflict less; in order, they give the same results.
            done = getattr(exc, "done", [])
            out = self._emit(items[:len(done)], done, now, t0)
            rest = items[len(done):]
            half = max(1, len(rest) // 2)
            return out + self.process_batch(rest[:half], now) + \
                self.process_batch(rest[half:], now)
        except Exception as exc:  # noqa: BLE001 - the fallback finds the culprit
            done = getattr(exc, "done", [])
            log.warning("batch of %d records not committed (%s); processing one by one",
                        len(items) - len(done), type(exc).__name__)
            return self._emit(items[:len(done)], done, now, t0) + \
                [m for it in items[len(done):] for m in self.process(it, now)]
        return self._emit(items, results, now, t0)

    def _emit(self, items: list[Item], results, now: float, t0: float) -> list[Message]:
        """Metrics and messages of processed records."""
        if not items:
            return []
        took = time.perf_counter() - t0
        per = took / len(items)
        out: list[Message] = []
        metrics = self.pipe.metrics
        for it, (_pid, outs) in zip(items, results, strict=True):
            metrics.process_latency.observe(per)
            metrics.unit_latency.observe(took)
            if it.report_ts is not None:
                metrics.link_latency.observe(max(0.0, it.received - it.report_ts))
            self._observe_alerts(outs, now)
            out += self.encode(outs)
        self._observe_published(items)
        return out

    def _observe_published(self, items: list[Item]) -> None:
        """Publish -> linked: from each source message's Kafka timestamp to now, when its
        outputs are ready (what a downstream consumer waits, less the produce)."""
        done = time.time()
        hist = self.pipe.metrics.publish_latency
        for it in items:
            if it.published is not None:
                hist.observe(max(0.0, done - it.published))

    def tick(self, now: float | None = None) -> list[Message]:
        now = time.time() if now is None else now
        try:
            outs = self.pipe.tick(now)
        except self._infra as exc:
            raise RetryLater(type(exc).__name__) from exc
        except Conflict as exc:  # the next tick tries again
            raise Contended("Conflict") from exc
        self._observe_alerts(outs, now)
        wm = self.pipe.wm
        self.pipe.metrics.observe_watermark(wm.lag(), wm.holding(now))
        return self.encode(outs)

    def count_dead_letter(self, value: bytes) -> None:
        """A message of the ``deadletter`` topic (a connector's or a worker's), read back:
        counted for its organisation (:mod:`reglink.core.quality`)."""
        try:
            message = json.loads(value)
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(message, dict):
            return
        try:
            self.pipe.dead_lettered(message)
        except self._infra as exc:
            raise RetryLater(type(exc).__name__) from exc
        except Conflict as exc:
            raise Contended("Conflict") from exc

    def quality(self, now: float | None = None, final: bool = False) -> list[Message]:
        """The source quality reports due: each organisation whose report changed, at most
        once per ``quality_every_s``; ``final`` (at shutdown): every one that changed."""
        now = time.time() if now is None else now
        try:
            outs = self.pipe.quality_reports(now, self.s.quality_every_s, final)
        except self._infra as exc:
            raise RetryLater(type(exc).__name__) from exc
        except Conflict as exc:  # the next tick tries again
            raise Contended("Conflict") from exc
        return self.encode(outs)

    def _observe_alerts(self, outs: list[Out], now: float) -> None:
        """Record -> alert latency: from the alert's event time (deadline, or the linking
        record's report time) to its emission."""
        for o in outs:
            if o.topic == "alerts" and o.value.get("raised_at") and o.value["status"] == "raised":
                self.pipe.metrics.alert_latency.observe(max(0.0, now - ts(o.value["raised_at"])))

    def undelivered(self) -> list[Message]:
        """Outbox messages whose delivery was never confirmed (e.g. after kill -9)."""
        try:
            self.flush_confirmed()
            return self.encode(self.pipe.undelivered())
        except self._infra as exc:
            raise RetryLater(type(exc).__name__) from exc

    def delivered(self, oid: str) -> None:
        try:
            self.pipe.delivered(oid)
        except self._infra:  # stays in the outbox; re-sent later (a duplicate, never a loss)
            log.warning("could not clear outbox entry %s; it will be re-sent", oid)

    def confirmed(self, oid: str) -> None:
        """The broker acknowledged an outbox message: clear it with the next flush."""
        self._confirmed.append(oid)

    def flush_confirmed(self) -> None:
        """Clear every acknowledged outbox message in one round trip. Until then they stay in
        the outbox (a crash re-sends them: a duplicate, never a loss)."""
        if not self._confirmed:
            return
        oids, self._confirmed = self._confirmed, []
        try:
            self.pipe.delivered_many(oids)
        except self._infra:
            self._confirmed[:0] = oids  # try again with the next flush
            log.warning("could not clear %d outbox entries; will retry", len(oids))

    def encode(self, outs: list[Out]) -> list[Message]:
        topic = self.s.topic
        return [(topic(o.topic), o.key.encode(), dumpb(o.value), o.oid) for o in outs]
