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
import json
import logging
import time

import faust
from faust.types import TP

from reglink.core.rules.merge import EventTimeMerger
from reglink.core.settings import Settings
from reglink.core.topics import SOURCES
from reglink.kafka_auth import faust_broker_credentials
from streams import intake, overlap
from streams.outage import STATUS_HINT, Outage, redis_address
from streams.shell import Contended, RetryLater, WorkerShell

log = logging.getLogger("reglink.worker")

app = faust.App("reglink-worker", autodiscover=False)

RESEND_EVERY_S = 30.0
BATCH_MAX = 500  # records per unit of work (one prefetch, one commit, one ack round)
BATCH_WAIT_S = 0.02  # at most this long letting the fetch loop hand over what the broker has
# ... and only while at least this many records wait in the broker: a few records behind
# (those published during the last fetch, at a moderate rate) are not worth a wait that
# every record of the unit pays; the next unit takes them.
LAG_WAIT = 32
# With several workers a unit of work may conflict with another worker's commit; the records
# after the first conflicted one then run again. Units shrink (halve, down to BATCH_MIN) after
# a conflict and grow back (+BATCH_GROW) after each unit without one: the records exposed to
# a re-run stay few where workers collide, and one worker keeps full-size units.
BATCH_MIN = 16
BATCH_GROW = 16
YIELD_EVERY = 256  # records of one fetch parsed between two turns of the event loop
TICK_S = 1.0  # between two ticks (watermark of idle sources, rule timers, outbox re-sends)
KAFKA_PROBE_S = 2.0  # between two checks that a Kafka bootstrap server accepts connections


class StoreHealth:
    """The state store's outages (the ``reglink_stalled`` gauge and the log lines of
    streams/outage.py): Redis unreachable, or contended (other writers kept changing what a
    unit read, through all its conflict retries)."""

    def __init__(self, settings: Settings, metrics) -> None:
        address = redis_address(settings.redis_url)
        self.metrics = metrics
        self.down = Outage(log, "Redis", address,
                           hint=STATUS_HINT + "; the worker keeps its records and retries")
        self.contended = Outage(
            log, "Redis", address,
            problem="contended: commits keep conflicting with other writers (a purge sweep "
                    "or other workers)",
            hint="the worker keeps its records and retries", recovered="no longer contended")

    def failed(self, exc: RetryLater) -> None:
        self.metrics.stalled.set(1)
        (self.contended if isinstance(exc, Contended) else self.down).failed(str(exc))

    def ok(self) -> None:
        self.metrics.stalled.set(0)
        self.down.ok()
        self.contended.ok()


async def kafka_unreachable(bootstrap: str, timeout: float = 2.0) -> str | None:
    """None when one of the bootstrap servers (``host:port,...``) accepts a TCP connection,
    else why the last one did not (an exception's class name)."""
    cause = "no bootstrap server"
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]") or "127.0.0.1", int(port)), timeout)
        except (OSError, ValueError, TimeoutError) as exc:
            cause = type(exc).__name__
            continue
        writer.close()
        return None
    return cause


def _records_histogram(registry, name: str, doc: str):
    from prometheus_client import Histogram

    try:
        return Histogram(name, doc, buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
                         registry=registry)
    except ValueError:  # already registered (configure() called twice in one process)
        return None


def configure(settings: Settings, shell: WorkerShell, datadir: str,
              redis_io: overlap.AsyncRedis | None = None) -> faust.App:
    """The app for ``shell``. ``redis_io``: sends a unit of work's commit (and the outbox
    clean-up) without blocking the loop (streams/overlap.py); None: they block it."""
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
        # A killed worker's partitions are reassigned after this long without heartbeats.
        "broker_session_timeout": 10.0,
        "broker_heartbeat_interval": 2.0,
        "stream_buffer_maxsize": 4096,
        # Outputs of a batch leave in few produce requests rather than one per message.
        "producer_linger": 0.005,
        "broker_credentials": faust_broker_credentials(settings, "worker"),  # None: plaintext
    })
    sources = app.topic(*[settings.topic(f"{s}.raw") for s in SOURCES],
                        key_type=bytes, value_type=bytes, key_serializer="raw",
                        value_serializer="raw")
    metrics = shell.pipe.metrics
    state = {"last_resend": 0.0, "pushed": 0}
    store = StoreHealth(settings, metrics)
    kafka = Outage(log, "Kafka", settings.kafka_bootstrap,
                   hint=STATUS_HINT + "; the worker keeps its records and reconnects")

    def _confirm(oid: str):
        def done(fut) -> None:
            if not fut.cancelled() and fut.exception() is None:
                shell.confirmed(oid)  # cleared from the outbox in bulk (flush_confirmed)
        return done

    async def send_all(msgs) -> None:
        # Straight to the app's producer (bytes in, no codec, no faust message wrapper): the
        # same producer faust flushes before it commits offsets, so the delivery order of
        # docs/reliability.md holds.
        send = app.producer.send
        for topic, key, value, oid in msgs:
            fut = await send(topic, key, value, None, None, None)
            if oid is not None:
                fut.add_done_callback(_confirm(oid))

    # Every call into the pipeline holds this lock: a unit of work waits for its commit off
    # the loop (streams/overlap.py), and nothing else may touch the pipeline's state (its
    # overlay, watermark, decoded identities) meanwhile; nor while a unit backs off through
    # a Redis outage (a tick's watermark update would otherwise land between its attempts).
    pipe_lock = asyncio.Lock()

    async def with_retry(fn, *args):
        """Back off while the state store is down; the record is kept, never dead-lettered.
        The caller holds ``pipe_lock``."""
        delay = 0.2
        while True:
            try:
                result = await overlap.run(redis_io, fn, *args)
            except RetryLater as exc:
                store.failed(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            store.ok()
            return result

    async def crashing_on_error(step, what: str) -> bool:
        """Run one step of a task; an error other than cancellation crashes the app, as an
        agent's would (the supervisor restarts the worker). False when it did."""
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - as if an agent had crashed
            log.exception(what)
            await app.crash(exc)
            return False
        return True

    merger = EventTimeMerger()
    unit = {"max": 4 * BATCH_MIN}  # records per unit of work now (see BATCH_MIN)
    tp_of: dict[str, TP] = {}

    def channels() -> list[str]:
        out = []
        for tp in app.consumer.assignment():
            source = shell.source_of.get(tp.topic)
            if source is not None:
                ch = f"{source}#{tp.partition}"
                tp_of[ch] = TP(tp.topic, tp.partition)
                out.append(ch)
        return out

    def lag(channel: str) -> int:
        """Records of ``channel`` in the broker that this worker has not received yet."""
        tp = tp_of.get(channel)
        if tp is None:
            return 0
        high = app.consumer.highwater(tp)
        pos = shell.positions.get((tp.topic, tp.partition))
        if high is None or pos is None:
            return 0
        return max(0, high - (pos + 1))

    async def drain() -> None:
        """Process every record the merger releases, in event-time order, in batches of up
        to BATCH_MAX: one unit of work per batch, its outputs handed to the producer, then
        its records acked."""
        async with pipe_lock:
            state["pushed"] = 0
            released = merger.release(channels(), lambda c: lag(c) > 0)
            i = 0
            while i < len(released):
                batch = released[i:i + unit["max"]]
                i += len(batch)
                metrics_batch(len(batch))
                items = [item for item, _msg in batch]
                shell.starting(items)
                conflicts = shell.pipe.conflicts
                msgs = await with_retry(shell.process_batch, items)
                if shell.pipe.conflicts != conflicts:
                    unit["max"] = max(BATCH_MIN, min(unit["max"], len(batch)) // 2)
                else:
                    unit["max"] = min(BATCH_MAX, unit["max"] + BATCH_GROW)
                await send_all(msgs)
                consumer = app.consumer
                for _item, msg in batch:
                    msg.ack(consumer)
            await overlap.run(redis_io, shell.flush_confirmed)

    batch_sizes = _records_histogram(metrics.registry, "reglink_worker_batch_records",
                                     "Records per unit of work (batch)")
    fetch_sizes = _records_histogram(metrics.registry, "reglink_worker_fetch_records",
                                     "Source records per broker fetch handed to the worker")

    def metrics_batch(n: int) -> None:
        if batch_sizes is not None:
            batch_sizes.observe(n)

    wake = asyncio.Event()

    @app.task
    async def drainer() -> None:
        """Drains whenever the fetch loop has handed over what the broker had ready: at a low
        rate a batch is one record (no added latency), under load it is what arrived
        meanwhile (up to BATCH_MAX; the fetch loop drains itself when that many are
        waiting, see ``on_batch``)."""
        loop = asyncio.get_running_loop()
        while True:
            await wake.wait()
            # Let the fetch loop hand over what the consumer has fetched (a whole fetch per
            # hand-over). Caught up or nearly (fewer than LAG_WAIT unread records in the broker):
            # drain after two turns without a new record, so a record waits no timed delay.
            # Behind: keep taking records for up to BATCH_WAIT_S or BATCH_MAX, so the batch
            # is large.
            t_end = loop.time() + BATCH_WAIT_S
            idle = 0
            while state["pushed"] < BATCH_MAX and loop.time() < t_end:
                before = state["pushed"]
                await asyncio.sleep(0)
                if state["pushed"] != before:
                    idle = 0
                    continue
                idle += 1
                if idle >= 2:
                    if sum(lag(c) for c in channels()) < LAG_WAIT:
                        break
                    await asyncio.sleep(0.002)  # the next fetch is on its way
            wake.clear()
            if not await crashing_on_error(drain, "drain failed"):
                return

    async def on_batch(messages) -> None:
        """The source records of one fetch (streams/intake.py): parsed and put into the
        event-time merger; dead letters sent and acked at once. Records are acked only once
        processed (faust commits the highest contiguous acked offset), so a record that waits
        in the merger is never committed early."""
        dead = []
        for n, msg in enumerate(messages, 1):
            if n % YIELD_EVERY == 0:
                # a fetch on a backlog holds thousands: let an in-flight unit's commit reply
                # and the producer through meanwhile, as faust's loop yields every 100
                await asyncio.sleep(0)
            if not intake.track(app, msg):
                continue
            item, msgs = shell.accept(msg.value, msg.topic, msg.partition, msg.offset,
                                      published=msg.timestamp)
            if item is None:  # dead letter: no ordering needed
                dead.append((msg, msgs))
                continue
            merger.push(item.channel, item.order, (item, msg))
            state["pushed"] += 1
        for msg, msgs in dead:
            await send_all(msgs)
            msg.ack(app.consumer)
        if state["pushed"] >= BATCH_MAX:
            await drain()  # backpressure: the fetch loop waits for the pipeline
        elif state["pushed"]:
            wake.set()  # the drainer runs once the fetch loop waits for the broker

    # The source topics' messages come a whole fetch at a time (streams/intake.py) instead of
    # one by one through faust's stream; the transport builds its consumer from this class.
    async def from_fetch(messages) -> None:
        if fetch_sizes is not None:
            fetch_sizes.observe(len(messages))
        await on_batch(messages)

    app.transport.Consumer = intake.batch_consumer(
        type(app.transport).Consumer, sources.topics, from_fetch)

    @app.agent(sources, concurrency=1, name="link")
    async def link(stream):
        # Subscribes the source topics. With the whole-fetch consumer above no message comes
        # this way; should one (another transport), it is handled the same.
        async for event in stream.noack().events():
            await on_batch([event.message])

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
            async with pipe_lock:
                outs = await with_retry(shell.pipe.apply_decision, decision)
                await send_all(shell.encode(outs))

    deadletters = app.topic(settings.topic("deadletter"), key_type=bytes, value_type=bytes,
                            key_serializer="raw", value_serializer="raw")

    @app.agent(deadletters, concurrency=1, name="quality-deadletters")
    async def count_dead_letters(stream):
        """Dead letters, the connectors' and the workers' own, counted per organisation for
        the source quality reports (reglink/core/quality.py)."""
        async for event in stream.events():
            async with pipe_lock:
                await with_retry(shell.count_dead_letter, event.value)

    @app.on_before_shutdown.connect
    async def send_quality(sender, **kwargs) -> None:  # noqa: ARG001
        """At shutdown, before the producer's last flush: every report that changed since
        it was sent, whenever that was."""
        try:
            async with pipe_lock:
                await send_all(await overlap.run(redis_io, shell.quality, time.time(), True))
        except Exception as exc:  # noqa: BLE001 - stopping anyway; sent after a restart
            log.warning("could not send the source quality reports at shutdown: %r", exc)

    @app.on_partitions_revoked.connect
    async def on_revoked(sender, revoked, **kwargs) -> None:  # noqa: ARG001
        # Not under pipe_lock: the merger is not the pipeline (a unit in flight took its
        # records out already), and a unit retrying through a Redis outage must not hold up
        # the consumer group's rebalance.
        for tp in revoked:
            source = shell.source_of.get(tp.topic)
            if source is not None:  # buffered records are re-delivered to the new owner
                merger.drop_channel(f"{source}#{tp.partition}")

    def refresh_backlog() -> None:
        """Lag per source partition. A channel with records still in the broker or waiting
        in the merger is not idle: it must not be left out of the watermark."""
        now = time.time()
        for ch in channels():
            n = lag(ch)
            tp = tp_of[ch]
            metrics.lag.labels(tp.topic, str(tp.partition)).set(n)
            if n > 0 or merger.buffered(ch):
                shell.pipe.backlog(ch, now)

    async def tick_once() -> None:
        async with pipe_lock:
            refresh_backlog()  # first: the idle decision in shell.tick() relies on it
        try:
            await drain()  # a channel that caught up no longer holds the merge back
            # Messages go to the producer under the lock they were made under: a unit of work
            # in between could otherwise send a newer message of the same key first.
            async with pipe_lock:
                await send_all(await overlap.run(redis_io, shell.tick, time.time()))
                store.ok()
                await send_all(await overlap.run(redis_io, shell.quality, time.time()))
                if time.monotonic() - state["last_resend"] >= RESEND_EVERY_S:
                    state["last_resend"] = time.monotonic()
                    await send_all(await overlap.run(redis_io, shell.undelivered))
        except RetryLater as exc:
            store.failed(exc)

    @app.task
    async def ticker() -> None:
        """Ticks a second apart, one at a time: a tick that waits (a unit backing off through
        a Redis outage holds the pipeline) delays the next one instead of overlapping it."""
        while True:
            await asyncio.sleep(TICK_S)
            if not await crashing_on_error(tick_once, "tick failed"):
                return

    @app.task
    async def kafka_watch() -> None:
        """Says when no Kafka bootstrap server accepts a connection, and when one does
        again (the clients themselves retry: records wait in the broker or the producer)."""
        while True:
            await asyncio.sleep(KAFKA_PROBE_S)
            cause = await kafka_unreachable(settings.kafka_bootstrap)
            if cause is None:
                kafka.ok()
            else:
                kafka.failed(cause)

    return app
