"""streams/intake.py without services: the fetch loop hands the source topics' messages over
a whole fetch at a time and keeps faust's per-message bookkeeping; other topics still go
through faust's callback one message at a time."""

import asyncio
import inspect
from collections import defaultdict
from types import SimpleNamespace

from faust.transport.consumer import Consumer as FaustConsumer

from streams import intake


def msg(topic: str, offset: int, partition: int = 0):
    return SimpleNamespace(topic=topic, partition=partition, offset=offset,
                           tp=(topic, partition))


class FakeBase:
    """The attributes of faust's consumer that the fetch loop uses; ``fetches`` are the
    broker's answers, one list of messages per ``getmany``; the loop stops after the last."""

    consumer_stopped_errors = (ConnectionError,)

    def __init__(self, fetches, commit_every=None):
        self.fetches = list(fetches)
        self._stopped = asyncio.Event()
        self._read_offset = defaultdict(lambda: None)
        self._commit_every = commit_every
        self._n_acked = 0
        self.diag = SimpleNamespace(set_flag=lambda f: None, unset_flag=lambda f: None)
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda t: True))
        self.transport = SimpleNamespace(app=SimpleNamespace(should_stop=False))
        self.should_stop = False
        self.suspend_flow = asyncio.Event()
        self.via_callback: list = []
        self.gaps: list = []
        self.commits = 0

    async def getmany(self, timeout):
        if not self.fetches:
            self._stopped.set()
            return
        for m in self.fetches.pop(0):
            yield m.tp, m

    async def sleep(self, _s):
        await asyncio.sleep(0)

    async def callback(self, message):
        self.via_callback.append(message.offset)

    async def wait_first(self, callback, flow):
        flow.close()  # faust races the callback with suspend_flow.wait()
        await callback

    async def _add_gap(self, tp, start, end):
        self.gaps.append((tp, start, end))

    async def commit(self):
        self.commits += 1


def run(fetches, commit_every=None, topics=("hotel.raw",)):
    batches: list = []

    async def on_batch(messages):
        batches.append([(m.topic, m.offset) for m in messages])
        consumer._n_acked += len(messages)  # as if the worker acked them all

    cls = intake.batch_consumer(FakeBase, topics, on_batch)
    consumer = cls(fetches, commit_every)
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    asyncio.run(consumer._drain_messages(fetcher))
    return consumer, batches


def test_a_whole_fetch_is_one_hand_over_and_other_topics_go_one_by_one():
    fetches = [[msg("hotel.raw", 0), msg("decisions", 0), msg("hotel.raw", 1),
                msg("hotel.raw", 2)],
               [msg("hotel.raw", 3)]]
    consumer, batches = run(fetches)
    assert batches == [[("hotel.raw", 0), ("hotel.raw", 1), ("hotel.raw", 2)],
                       [("hotel.raw", 3)]]
    assert consumer.via_callback == [0]  # the decision, through faust's callback
    assert consumer._read_offset[("hotel.raw", 0)] == 3
    assert consumer._read_offset[("decisions", 0)] == 0


def test_already_read_offsets_are_dropped_and_gaps_recorded():
    fetches = [[msg("hotel.raw", 5), msg("hotel.raw", 6)],
               [msg("hotel.raw", 5), msg("hotel.raw", 9)]]  # 5 again (re-fetch), 7-8 missing
    consumer, batches = run(fetches)
    assert batches == [[("hotel.raw", 5), ("hotel.raw", 6)], [("hotel.raw", 9)]]
    assert consumer.gaps == [(("hotel.raw", 0), 7, 9)]


def test_the_commit_cadence_is_kept():
    # faust commits once every commit_every acks, checked as messages come in
    fetches = [[msg("hotel.raw", i) for i in range(4)], [msg("hotel.raw", 4)],
               [msg("hotel.raw", 5)]]
    consumer, _ = run(fetches, commit_every=4)
    assert consumer.commits == 1  # the 4 acks of the first fetch, seen at the second
    assert consumer._n_acked == 2


def test_faust_loop_still_matches_the_copy():
    """The override is faust's own fetch loop with one change. Should a faust upgrade change
    that loop, this fails, so that the copy is brought up to date."""
    src = inspect.getsource(FaustConsumer._drain_messages)
    for line in ("ait = cast(AsyncIterator, getmany(timeout=1.0))",
                 "if r_offset is None or offset >= r_offset:",
                 "await self._add_gap(tp, r_offset + 1, offset)",
                 "if self._n_acked >= commit_every:",
                 "callback(message), self.suspend_flow.wait()",
                 "set_read_offset(tp, offset)"):
        assert line in src, line
    assert src.count("await ") == 6, "faust's fetch loop awaits something new"
