"""streams/overlap.py without services: a synchronous unit of work whose blocking calls are
awaited by the event loop, which serves other tasks meanwhile."""

import asyncio

import pytest

from streams import overlap


class Slow:
    """Makes a handed-over call after a pause on the loop (a round trip), and logs it."""

    def __init__(self, pause: float = 0.01) -> None:
        self.pause = pause
        self.made: list[tuple] = []

    async def __call__(self, call: overlap.Call):
        await asyncio.sleep(self.pause)
        self.made.append((call.fn.__name__, call.args))
        return call()


def fetch(x):
    return x * 10


def boom(_x):
    raise ConnectionError("redis went away")


def unit(values, trace):
    """What a unit of work looks like to overlap: sync code with io() where it blocks."""
    out = []
    for v in values:
        out.append(overlap.io(fetch, v))
        trace.append(v)
    return out


def test_results_come_back_in_order_and_other_tasks_run_meanwhile():
    async def main():
        ticks = {"n": 0, "during": 0}
        busy = {"on": False}

        async def ticker():
            while True:
                ticks["n"] += 1
                if busy["on"]:
                    ticks["during"] += 1
                await asyncio.sleep(0.001)

        t = asyncio.ensure_future(ticker())
        make = Slow()
        trace: list[int] = []
        busy["on"] = True
        got = await overlap.run(make, unit, [1, 2, 3], trace)
        busy["on"] = False
        t.cancel()
        return got, trace, make.made, ticks["during"]

    got, trace, made, during = asyncio.run(main())
    assert got == [10, 20, 30]
    assert trace == [1, 2, 3]
    assert made == [("fetch", (1,)), ("fetch", (2,)), ("fetch", (3,))]
    assert during >= 3  # the loop ran the ticker while each call was awaited


def test_blocking_run_does_not_let_other_tasks_in():
    """The control: without an async maker the unit runs as before, blocking the loop."""
    async def main():
        ticks = {"during": 0, "on": False}

        async def ticker():
            while True:
                if ticks["on"]:
                    ticks["during"] += 1
                await asyncio.sleep(0)

        t = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        ticks["on"] = True
        got = await overlap.run(None, unit, [1, 2], [])
        ticks["on"] = False
        t.cancel()
        return got, ticks["during"]

    assert asyncio.run(main()) == ([10, 20], 0)


def test_an_error_of_the_call_is_raised_inside_the_unit_of_work():
    seen = []

    def careful():
        try:
            overlap.io(boom, 1)
        except ConnectionError as exc:
            seen.append(str(exc))
            return overlap.io(fetch, 4)  # it may go on after handling it
        return None

    def careless():
        return overlap.io(boom, 1)

    async def main():
        a = await overlap.run(Slow(0), careful)
        with pytest.raises(ConnectionError, match="went away"):
            await overlap.run(Slow(0), careless)
        return a

    assert asyncio.run(main()) == 40
    assert seen == ["redis went away"]


def test_cancelled_while_a_call_is_in_flight_the_unit_unwinds_first():
    unwound = []

    def work():
        try:
            overlap.io(fetch, 1)
            overlap.io(fetch, 2)  # never reached
        except BaseException as exc:
            unwound.append(type(exc).__name__)  # e.g. the pipeline's rollback
            raise

    async def main():
        task = asyncio.ensure_future(overlap.run(Slow(10), work))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert unwound == ["GreenletExit"]


def test_outside_run_io_calls_straight_through():
    assert overlap.io(fetch, 7) == 70
    assert unit([5], []) == [50]


def test_the_clients_pack_commands_as_redis_py_does():
    """In C (hiredis), byte for byte what redis-py's own Python packer sends: the asyncio
    client and the blocking one, for what the worker sends and for what only hiredis's
    refusal sends on to redis-py (a memoryview)."""
    import redis
    import redis.asyncio
    from redis.connection import PythonRespSerializer

    make = overlap.AsyncRedis(redis.asyncio.Redis())
    sync_pool = redis.Redis().connection_pool
    sync_pool.connection_class = overlap.hiredis_packing(sync_pool.connection_class)
    for conn in (make.client.connection_pool.make_connection(), sync_pool.make_connection()):
        assert type(conn).__name__ == "HiredisPacking"
        for args in (("EVALSHA", "ab" * 20, 2, "k1", "k2", "ü", 3.5, b"\x00raw"),
                     ("SCRIPT LOAD", "return 1"), (b"SCRIPT LOAD", "return 1"),
                     ("SET", "k", memoryview(b"v"))):
            python = PythonRespSerializer(6000, conn.encoder.encode).pack(*args)
            assert b"".join(conn.pack_command(*args)) == b"".join(python), args
