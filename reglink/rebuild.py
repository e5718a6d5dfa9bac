"""``reglink rebuild``: rebuild the Redis state (identities, links, stays, alert statuses,
watchlist, watermark) from the source topics in Kafka. Redis is not the record of truth.

It reads every source topic from the beginning, puts the records in the canonical event-time
order the worker processes them in (reglink.core.rules.merge), runs the same core, and writes
the state under a Redis prefix. Nothing is published: the alerts were published when they
first happened. Decisions (``decisions`` topic) are applied after the records.
The target prefix must be empty unless ``force``: stop the workers first.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass

from reglink.core.contract import parse_record, report_time
from reglink.core.errors import ReglinkError
from reglink.core.rules.merge import order_key
from reglink.core.settings import Settings
from reglink.core.topics import SOURCES


@dataclass
class RebuildResult:
    read: int
    processed: int
    deadlettered: int
    decisions: int
    identities: int
    seconds: float
    prefix: str

    def line(self) -> str:
        return (f"rebuilt {self.prefix!r} from Kafka: read {self.read}, processed "
                f"{self.processed}, skipped {self.deadlettered} invalid, applied "
                f"{self.decisions} decisions, {self.identities} identities in "
                f"{self.seconds:.1f}s")


def _read_all(settings: Settings, topics: list[str], progress=None):
    """Every message of ``topics`` up to their current end: (topic, partition, offset, value)."""
    from kafka import KafkaConsumer, TopicPartition

    from reglink.kafka_auth import kafka_client

    consumer = kafka_client(KafkaConsumer, settings, "admin", enable_auto_commit=False,
                            consumer_timeout_ms=5000, max_poll_records=5000)
    try:
        tps = [TopicPartition(t, p) for t in topics
               for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not tps:
            return
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > consumer.position(tp)}
        while remaining:
            batch = consumer.poll(timeout_ms=2000)
            if not batch:
                remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}
                continue
            for tp, msgs in batch.items():
                for m in msgs:
                    if m.offset < ends[tp]:
                        if progress:
                            progress(1)
                        yield m.topic, m.partition, m.offset, m.value
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        consumer.close()


def run_rebuild(settings: Settings, prefix: str | None = None, force: bool = False,
                progress: bool | None = None) -> RebuildResult:
    from matchers.model import load_model
    from reglink.core.pipeline import Pipeline
    from reglink.kafka_auth import connect_redis
    from reglink.stores.kv import RedisKV, ensure_layout
    from reglink.stores.schema import ensure_model

    prefix = prefix or settings.redis_prefix
    # admin: a rebuild SCANs the prefix (and may write into another one, --prefix), which the
    # worker's Redis user may not (docs/security.md)
    client = connect_redis(settings, "admin", retry_on_timeout=True)
    if not force and next(client.scan_iter(match=f"{prefix}*", count=100), None) is not None:
        raise ReglinkError(f"Redis prefix {prefix!r} is not empty: stop the workers and delete "
                           f"it, rebuild into another prefix (--prefix), or pass --force")
    t0 = time.perf_counter()
    source_of = {settings.topic(f"{s}.raw"): s for s in SOURCES}
    bar = task = None
    if progress is None:
        progress = sys.stderr.isatty()
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        task = bar.add_task("reading source topics", total=None)
        bar.start()
    advance = (lambda n: bar.advance(task, n)) if bar is not None else None
    items, read, dead = [], 0, 0
    try:
        for topic, partition, offset, value in _read_all(settings, list(source_of), advance):
            read += 1
            source = source_of[topic]
            origin = {"topic": topic, "partition": partition, "offset": offset}
            record, dl = parse_record(value or b"", source, origin)
            if dl is not None:
                dead += 1  # it went to the dead-letter topic when the worker first saw it
                continue
            rt = report_time(record)
            key = (order_key(source, rt.timestamp() if rt else None), f"{source}#{partition}",
                   offset)
            items.append((key, record))
        items.sort(key=lambda kv: kv[0])
        kv = RedisKV(client, prefix)
        ensure_layout(kv, force=force)
        model = load_model(settings.model)
        ensure_model(kv, model.features, model.version, force=force)
        pipe = Pipeline(settings, kv)
        if bar is not None:
            bar.update(task, description="linking", total=len(items), completed=0)
        for (_k, channel, _o), record in items:
            pipe.process(record, None, channel=channel)
            if advance:
                advance(1)
        decisions = 0
        for _t, _p, _o, value in _read_all(settings, [settings.topic("decisions")]):
            try:
                pipe.apply_decision(json.loads(value))
                decisions += 1
            except (ValueError, KeyError):
                continue
    finally:
        if bar is not None:
            bar.stop()
    return RebuildResult(read, len(items), dead, decisions, pipe.store.count(),
                         time.perf_counter() - t0, prefix)
