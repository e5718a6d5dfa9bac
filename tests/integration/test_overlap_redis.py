"""A unit of work run as the worker runs it (streams/overlap.py) on the real Redis: its commit
goes through the asyncio client, the event loop serves other tasks while it waits, and the
outputs and the stored state are those of the same records run the blocking way."""

import asyncio
import uuid

import pytest
import redis
import redis.asyncio
from corekit import ordered_corpus

from reglink.core.pipeline import Pipeline
from reglink.kafka_auth import redis_url
from reglink.stores.kv import RedisKV
from streams import overlap


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return ordered_corpus(tmp_path_factory.mktemp("sim"), persons=200, days=15, seed=11)


def _state(admin, prefix: str) -> dict[str, str]:
    """The stored identities, links, pointers, stays and outbox (read as admin: the worker's
    user may not SCAN)."""
    kv = RedisKV(admin, prefix)
    keys = sorted(k for k in kv.scan("") if k[:2] in ("i:", "l:", "m:", "s:", "o:"))
    return dict(zip(keys, kv.mget(keys), strict=True))


class Counting(overlap.AsyncRedis):
    def __init__(self, client) -> None:
        super().__init__(client)
        self.calls: list[str] = []

    async def __call__(self, call):
        self.calls.append(getattr(call.fn, "__name__", type(call.fn).__name__))
        return await super().__call__(call)


def _batches(records, n=25):
    return [[(r, f"{r['source']}#0") for r in records[i:i + n]]
            for i in range(0, len(records), n)]


def test_overlapped_batches_match_blocking_ones_and_free_the_loop(settings, redis_client,
                                                                   redis_worker, corpus):
    records = corpus[:300]
    block_s = settings.model_copy(update={"redis_prefix": settings.redis_prefix + "blk:"})
    over_s = settings.model_copy(update={"redis_prefix": settings.redis_prefix + "ovl:"})
    block_kv = RedisKV(redis_worker, block_s.redis_prefix)
    over_kv = RedisKV(redis_worker, over_s.redis_prefix)
    over_kv.io = overlap.io
    block = Pipeline(block_s, block_kv, outbox=True)
    over = Pipeline(over_s, over_kv, outbox=True)

    got_block = []
    for items in _batches(records):
        got_block += block.process_batch(items, 1.0)
    oids_block = [o.oid for _p, outs in got_block for o in outs if o.oid]
    block.delivered_many(oids_block[: len(oids_block) // 2])

    async def main():
        make = Counting(redis.asyncio.Redis.from_url(redis_url(settings, "worker")))
        ticks = {"n": 0}

        async def ticker():
            while True:
                ticks["n"] += 1
                await asyncio.sleep(0)

        t = asyncio.ensure_future(ticker())
        got = []
        for items in _batches(records):
            got += await overlap.run(make, over.process_batch, items, 1.0)
        oids = [o.oid for _p, outs in got for o in outs if o.oid]
        await overlap.run(make, over.delivered_many, oids[: len(oids) // 2])
        t.cancel()
        await make.aclose()
        return got, make.calls, ticks["n"]

    got_over, calls, ticks = asyncio.run(main())

    assert [pid for pid, _o in got_over] == [pid for pid, _o in got_block]
    assert [[(o.topic, o.key, o.value) for o in outs] for _p, outs in got_over] == \
        [[(o.topic, o.key, o.value) for o in outs] for _p, outs in got_block]
    assert _state(redis_client, over_s.redis_prefix) == _state(redis_client, block_s.redis_prefix)
    assert over_kv.zupto("outbox", float("inf")) == block_kv.zupto("outbox", float("inf"))
    # every batch's commit went through the asyncio client, and so did the outbox clean-up
    # (a MULTI/EXEC pipeline); the loop ran the ticker while they waited
    batches = len(_batches(records))
    assert calls.count("Script") == batches
    assert calls.count("execute") == 1
    assert ticks >= len(calls)


def test_a_redis_error_reaches_the_unit_of_work_and_rolls_it_back(settings, redis_client,
                                                                    redis_worker, corpus):
    s = settings.model_copy(update={"redis_prefix": settings.redis_prefix + "err:"})
    kv = RedisKV(redis_worker, s.redis_prefix)
    kv.io = overlap.io
    pipe = Pipeline(s, kv, outbox=True)

    async def main():
        # nothing listens there: the asyncio client's connection fails at the first trip
        bad = overlap.AsyncRedis(redis.asyncio.Redis(host="127.0.0.1", port=1,
                                                     socket_connect_timeout=1))
        with pytest.raises(redis.exceptions.ConnectionError) as info:
            await overlap.run(bad, pipe.process_batch, _batches(corpus[:20])[0], 1.0)
        await bad.aclose()
        return info.value

    exc = asyncio.run(main())
    assert exc.done == []  # nothing committed
    # the unit's writes were rolled back: its overlay no longer counts the identities it made
    assert pipe.store.count() == 0
    assert _state(redis_client, s.redis_prefix) == {}


def test_a_script_the_server_lacks_is_loaded(settings, redis_client, redis_worker):
    script = redis_worker.register_script(f"return 7 -- {uuid.uuid4().hex}")
    assert redis_client.script_exists(script.sha) == [False]

    async def main():
        make = overlap.AsyncRedis(redis.asyncio.Redis.from_url(redis_url(settings, "worker")))
        got = await overlap.run(make, lambda: overlap.io(script, keys=[], args=[]))
        await make.aclose()
        return got

    assert asyncio.run(main()) == 7
    assert redis_client.script_exists(script.sha) == [True]
