"""Whole-fetch intake: the source records of one broker fetch reach the worker as one list.

faust hands every consumed message to its stream one at a time. For each message its fetch
loop runs ``Service.wait_first(callback(message), suspend_flow.wait())``, which creates four
tasks and an ``asyncio.wait``; the conductor then awaits flow control, decodes an ``Event``
and queues it; the agent's stream takes it off the queue on a later loop turn. The bare
forwarder of ``benchmarks/`` pays exactly this per message and little else: about half of its
CPU per record is this path, and a worker without this intake pays it as well.

:func:`batch_consumer` subclasses the transport's consumer so that messages of the worker's
source topics skip that path: the fetch loop collects them for the whole fetch and awaits
``on_batch(messages)`` once. Everything else the loop does per message is kept (read offsets,
gaps, the commit cadence), and every other topic (reviewers' decisions) still goes through
faust's callback, message by message. ``on_batch`` must *track* each message it keeps
(:func:`track`) and ack it when its outputs are handed to the producer, as a stream would: the
offsets faust commits are still the highest contiguous acked ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

CONSUMER_FETCHING = "FETCHING"  # faust.transport.consumer's diagnostic flag


def track(app, message) -> bool:
    """Register ``message`` with the consumer as a stream does before it yields it (pending
    ack, monitor sensors). False for a message a rebalance made stale: flow stopped, or
    fetched under an earlier consumer generation; faust seeks back to the committed offset
    when flow resumes, so it comes again (faust's stream skips such messages too)."""
    if not app.flow_control.is_active() or \
            message.generation_id != app.consumer_generation_id:
        return False
    if not message.tracked:
        message.tracked = True
        app.consumer.track_message(message)
    return True


def batch_consumer(base: type, topics: Iterable[str],
                   on_batch: Callable[[list], Awaitable[Any]]) -> type:
    """A subclass of the consumer class ``base`` whose fetch loop hands the messages of
    ``topics`` to ``on_batch`` a whole fetch at a time."""
    batch_topics = frozenset(topics)

    class BatchIntakeConsumer(base):  # type: ignore[misc, valid-type]
        async def _drain_messages(self, fetcher) -> None:  # noqa: C901 - faust's loop, kept
            # faust.transport.consumer.Consumer._drain_messages, with one change: messages of
            # ``batch_topics`` are collected and handed over once per fetch.
            callback = self.callback
            getmany = self.getmany
            consumer_should_stop = self._stopped.is_set
            fetcher_should_stop = fetcher._stopped.is_set
            read_offset = self._read_offset
            set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
            commit_every = self._commit_every
            acks_enabled_for = self.app.topics.acks_enabled_for
            try:
                while not (consumer_should_stop() or fetcher_should_stop()):
                    set_flag(CONSUMER_FETCHING)
                    ait = getmany(timeout=1.0)
                    await self.sleep(0)
                    if self.should_stop:
                        continue
                    batch: list = []
                    async for tp, message in ait:
                        offset = message.offset
                        r_offset = read_offset[tp]
                        if r_offset is not None and offset < r_offset:
                            continue  # already read (faust drops these too)
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if message.topic in batch_topics:
                            batch.append(message)
                        else:
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        read_offset[tp] = offset
                    if batch:
                        await on_batch(batch)
                    unset_flag(CONSUMER_FETCHING)
            except self.consumer_stopped_errors:
                if self.transport.app.should_stop:
                    self.log.info("Broker stopped consumer, shutting down...")
                    return
                raise
            except asyncio.CancelledError:
                if self.transport.app.should_stop:
                    self.log.info("Consumer shutting down for user cancel.")
                    return
                raise
            finally:
                unset_flag(CONSUMER_FETCHING)

    return BatchIntakeConsumer
