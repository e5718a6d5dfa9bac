"""The Redis store's script calls (RedisKV._evalsha: EVALSHA packed by hiredis, not redis-py)
on the real Redis: a script the server no longer has is loaded and run, error replies are
raised and leave the connection usable, and no call keeps a connection from the pool."""

from __future__ import annotations

import pytest
import redis

from reglink.kafka_auth import connect_redis
from reglink.stores.kv import RedisKV


@pytest.fixture
def small_pool_kv(settings, redis_worker):
    """A RedisKV on a client whose pool holds at most two connections: a call that kept its
    connection would exhaust it within a few calls."""
    client = connect_redis(settings, "worker", max_connections=2)
    yield RedisKV(client, settings.redis_prefix), client
    client.close()


def test_writes_and_reads_survive_a_flushed_script_cache(settings, redis_client, small_pool_kv):
    kv, _client = small_pool_kv
    kv.apply_checked([("set", "i:p", "值-1"), ("sadd", "b:k", ["p"])], {"i:p": None}, {})
    redis_client.script_flush()  # as after a restart: NOSCRIPT on the next EVALSHA
    kv.apply_checked([("set", "i:p", "值-2")], {"i:p": "值-1"}, {})
    redis_client.script_flush()
    strings, sets = kv.fetch(["i:p", "i:none"], ["b:k"])
    assert strings == ["值-2", None] and sets == [{"p"}]
    for n in range(40):  # the fast path from here on, on a two-connection pool
        kv.apply_checked([("set", "i:p", f"v{n}")], {"i:p": "值-2" if n == 0 else f"v{n - 1}"},
                         {})
    assert kv.get("i:p") == "v39"


def test_an_error_reply_is_raised_and_the_connection_stays_usable(settings, small_pool_kv):
    kv, client = small_pool_kv
    failing = client.register_script("return redis.error_reply('reglink test error')")
    for _ in range(5):  # more than the pool holds: each call gave its connection back
        with pytest.raises(redis.exceptions.ResponseError, match="reglink test error"):
            kv._evalsha(failing, [], [])
    echo = client.register_script("return {KEYS[1], ARGV[1], ARGV[2]}")
    # str as UTF-8, int as decimal: what redis-py would have sent (raw bytes come back)
    key = settings.redis_prefix + "键"  # the worker's user may touch only its prefix
    assert kv._evalsha(echo, [key], ["值", 7]) == [key.encode(), "值".encode(), b"7"]
