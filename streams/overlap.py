"""Let a unit of work's commit wait for Redis without blocking the worker's event loop.

The core is synchronous (``Pipeline.process_batch``: prefetch, link, commit), and so are its
Redis calls. Run as they were, every round trip blocked the loop: while Redis ran a unit's
fetch or compare-and-apply script (about 11 % of the worker's time on a backlog), faust could
neither take the next records nor fetch more.

:func:`run` runs the unit of work in a greenlet of its own, on the loop's thread. A call it
makes through :func:`io` (``RedisKV.io``: the commit script and the outbox clean-up) switches
back to :func:`run`, which sends the same command with an asyncio Redis client
(:class:`AsyncRedis`) and awaits the reply; then it switches back into the unit of work with
the reply, or raises the error there. Meanwhile the loop serves its other tasks: the fetch
loop hands over the next records, faust fetches. Nothing runs in another thread: the core's CPU work
and the replies' parsing stay on the loop's thread, so they do not compete with it for the
GIL (a thread per round trip, tried first, did; so did linking in a thread of its own, see
docs/performance-history.md).

The reads stay blocking (``RedisKV.fetch``): overlapped too, a reply waited for the loop,
which lengthened the time between a unit's reads and its commit, and with two workers more
units conflicted (135 -> 178-189 per 20k records, and two workers were slower than with the
blocking worker). Overlapping only the commit gave the most throughput of the variants
measured (docs/performance-history.md).

What runs meanwhile must not touch the pipeline: the worker holds one lock around every
pipeline call (streams/app.py). Outside :func:`run`, :func:`io` calls straight through, so
replay, tests and the purge sweep use the same ``RedisKV`` unchanged.
"""

from __future__ import annotations

import asyncio

import greenlet


class _Unit(greenlet.greenlet):
    """A unit of work started by :func:`run`: only these hand their round trips over."""


class Call:
    """One blocking call a unit of work handed over: ``fn(*args, **kw)``."""

    __slots__ = ("args", "fn", "kw")

    def __init__(self, fn, args: tuple, kw: dict) -> None:
        self.fn, self.args, self.kw = fn, args, kw

    def __call__(self):
        return self.fn(*self.args, **self.kw)


def io(fn, *args, **kw):
    """``fn(*args, **kw)``, awaited by :func:`run` when called from a unit of work it runs,
    else called here and now."""
    current = greenlet.getcurrent()
    if isinstance(current, _Unit):
        return current.parent.switch(Call(fn, args, kw))
    return fn(*args, **kw)


def hiredis_packing(connection_class):
    """``connection_class`` packing commands with hiredis in C, straight: a unit of work's
    scripts carry thousands of arguments, and redis-py's own hiredis packer first copies them
    through a generator (to turn buffers into bytes, which the worker never sends), about
    half of its time. The asyncio client packs in Python without this (~11 % of the worker's
    main thread when it sent the commit). Anything hiredis refuses goes to redis-py's packer,
    which raises its usual error."""
    from redis.connection import HiredisRespSerializer
    from redis.utils import HIREDIS_AVAILABLE

    if not HIREDIS_AVAILABLE:
        return connection_class
    import hiredis

    packer = HiredisRespSerializer()
    pack = hiredis.pack_command

    class HiredisPacking(connection_class):
        def pack_command(self, *args):
            first = args[0]
            if isinstance(first, str):  # e.g. "SCRIPT LOAD": one word per argument
                args = (*first.encode().split(), *args[1:])
            elif b" " in first:
                args = (*first.split(), *args[1:])
            try:
                return [pack(args)]
            except TypeError:
                return packer.pack(*args)

    return HiredisPacking


class AsyncRedis:
    """Makes a handed-over call of the sync client with an asyncio client of the same server:
    a script call (``Script``) as ``EVALSHA`` (loading the script if the server lacks it), a
    pipeline's ``execute`` as the same commands in an asyncio pipeline. Anything else is
    called as it is (it blocks the loop, as before)."""

    def __init__(self, client) -> None:
        self.client = client  # redis.asyncio.Redis; connects on first use
        pool = client.connection_pool
        pool.connection_class = hiredis_packing(pool.connection_class)

    async def __call__(self, call: Call):
        from redis.client import Pipeline
        from redis.commands.core import Script

        fn = call.fn
        if isinstance(fn, Script):
            return await self._script(fn, call.kw.get("keys", ()), call.kw.get("args", ()))
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, Pipeline) and fn.__name__ == "execute" and not call.args:
            return await self._pipeline(owner)
        return call()

    async def _script(self, script, keys, args):
        from redis.exceptions import NoScriptError

        try:
            return await self.client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.client.script_load(script.script)
            return await self.client.evalsha(script.sha, len(keys), *keys, *args)

    async def _pipeline(self, pipe):
        stack, pipe.command_stack = pipe.command_stack, []  # as execute() leaves it: reset
        apipe = self.client.pipeline(transaction=pipe.transaction)
        for args, options in stack:
            apipe.execute_command(*args, **options)
        return await apipe.execute()

    async def aclose(self) -> None:
        await self.client.aclose()


async def run(make, fn, *args):
    """``fn(*args)``, its :func:`io` calls made by the coroutine function ``make`` (an
    :class:`AsyncRedis`; None: ``fn`` runs as it is, blocking); returns or raises as ``fn``
    does. Cancelled while a call is in flight, the unit of work is unwound first
    (``GreenletExit`` raised inside it: it rolls back), then the cancellation goes on."""
    if make is None:
        return fn(*args)
    unit = _Unit(fn)
    step = unit.switch(*args)
    while not unit.dead:
        try:
            reply = await make(step)
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            unit.throw(greenlet.GreenletExit)
            raise
        except BaseException as exc:  # noqa: BLE001 - raised inside the unit of work
            step = unit.throw(exc)
        else:
            step = unit.switch(reply)
    return step
