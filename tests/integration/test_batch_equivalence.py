"""The worker's micro-batches (``Pipeline.process_batch``) give the same results as one record
at a time (``Pipeline.process``): same messages in the same order, same state in Redis.
Real Redis (the batch path prefetches and commits through ``RedisKV``), no broker needed."""

import json

import pytest
from corekit import ordered_corpus

from reglink.core.contract import record_key
from reglink.core.pipeline import Pipeline
from reglink.stores.kv import Conflict, MemoryKV, RedisKV


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    recs = ordered_corpus(tmp_path_factory.mktemp("sim"), persons=700, days=25, seed=5)
    assert len(recs) > 1000
    return recs


def _channel(rec):
    return f"{rec['source']}#0"


def _messages(results):
    """Messages without their outbox ids (ids come from reserved blocks: only unique)."""
    return [(o.topic, o.key, json.dumps(o.value, sort_keys=True))
            for _pid, outs in results for o in outs]


def _state(client, prefix):
    """Every key of a deployment, typed, minus the outbox bookkeeping (ids differ)."""
    out = {}
    for k in client.scan_iter(match=f"{prefix}*", count=2000):
        name = k.decode()[len(prefix):]
        if name.startswith("o:") or name in ("outbox", "n:outbox"):
            continue
        kind = client.type(k).decode()
        if kind == "string":
            out[name] = client.get(k)
        elif kind == "set":
            out[name] = sorted(client.smembers(k))
        elif kind == "zset":
            out[name] = client.zrange(k, 0, -1, withscores=True)
        elif kind == "hash":  # the blocking index's buckets: packed members, in add order
            out[name] = sorted((f, sorted(v.split(b","))) for f, v in client.hgetall(k).items())
    return out


def _run(pipe, recs, batch, now=1_000_000.0):
    results = []
    if batch == 1:
        for r in recs:
            results.append(pipe.process(r, now, channel=_channel(r)))
    else:
        for i in range(0, len(recs), batch):
            chunk = recs[i:i + batch]
            results += pipe.process_batch([(r, _channel(r)) for r in chunk], now)
    results.append((None, pipe.tick(now + 10_000)))  # every channel idle: the flush
    return results


@pytest.mark.parametrize("batch", [7, 200])
def test_batches_equal_one_by_one_on_redis(settings, redis_client, corpus, batch):
    a_prefix, b_prefix = settings.redis_prefix + "a:", settings.redis_prefix + "b:"
    one = Pipeline(settings, RedisKV(redis_client, a_prefix), outbox=True)
    many = Pipeline(settings, RedisKV(redis_client, b_prefix), outbox=True)
    ra = _run(one, corpus, 1)
    rb = _run(many, corpus, batch)
    assert [p for p, _o in ra] == [p for p, _o in rb]
    ma, mb = _messages(ra), _messages(rb)
    assert any(t == "alerts" for t, _k, _v in ma), "corpus too small to prove anything"
    assert ma == mb
    sa, sb = _state(redis_client, a_prefix), _state(redis_client, b_prefix)
    assert len(sa) > 1000
    assert sa == sb
    # every kept message is in the outbox under a unique id
    kept = [o.oid for _p, outs in rb for o in outs if o.oid is not None]
    assert len(kept) == len(set(kept)) == len(many.undelivered())


def test_batches_equal_one_by_one_embedded(settings, corpus):
    ra = _run(Pipeline(settings, MemoryKV()), corpus, 1)
    rb = _run(Pipeline(settings, MemoryKV()), corpus, 50)
    assert _messages(ra) == _messages(rb)


def test_a_conflicting_writer_makes_the_batch_run_again(settings, redis_client, corpus):
    """Another worker commits between this batch's reads and its commit: the batch's
    compare-and-apply fails, the batch is rolled back (watermark included) and re-run on
    fresh state (in halves: what other writers change is less likely to hit a smaller
    attempt); nothing the other worker wrote is lost."""
    kv = RedisKV(redis_client, settings.redis_prefix)
    mine = Pipeline(settings, kv, outbox=True)
    other = Pipeline(settings, RedisKV(redis_client, settings.redis_prefix), outbox=True)
    first = corpus[:300]
    rest = [r for r in corpus[300:] if r["source"] != "watchlist"][:100]
    mine.process_batch([(r, _channel(r)) for r in first], 1.0)
    real = kv.apply_checked
    calls = {"n": 0}

    def commit_after_the_other_worker(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:  # the other worker links one of this batch's records first
            other.process(rest[0], 1.0, channel=_channel(rest[0]))
        return real(*args, **kwargs)

    kv.apply_checked = commit_after_the_other_worker
    results = mine.process_batch([(r, _channel(r)) for r in rest], 1.0)
    # the first record read what changed: nothing kept, the batch ran again in two halves
    assert mine.conflicts == 1 and calls["n"] == 3
    assert len(results) == len(rest)
    # the record the other worker linked keeps its person, and the batch saw that link
    assert results[0][0] == other.store.link_of(record_key(rest[0])) is not None
    for r in rest:
        assert mine.store.link_of(record_key(r)) is not None


def test_repeated_conflicts_raise_for_the_per_record_fallback(settings, redis_client, corpus):
    kv = RedisKV(redis_client, settings.redis_prefix)
    pipe = Pipeline(settings, kv, outbox=True)

    def always_conflict(*args, **kwargs):
        raise Conflict("test: another writer every time")

    kv.apply_checked = always_conflict
    wm = json.dumps(pipe.wm.to_json(), sort_keys=True)
    with pytest.raises(Conflict):
        pipe.process_batch([(r, _channel(r)) for r in corpus[:20]], 1.0, max_retries=2)
    assert pipe.conflicts == 3
    assert json.dumps(pipe.wm.to_json(), sort_keys=True) == wm  # rolled back
    assert redis_client.keys(f"{settings.redis_prefix}l:*") == []  # nothing applied


def test_a_batch_that_keeps_conflicting_is_split_with_the_same_results(settings, redis_client,
                                                                       corpus):
    """The worker shell splits a batch that conflicts twice into halves (then quarters ...):
    here every commit larger than the largest one-record commit "conflicts", as if other
    workers kept changing what large batches read. The messages equal one-record-at-a-time
    processing."""
    from reglink.core.contract import encode_record
    from streams.shell import WorkerShell

    recs = corpus[:240]
    a_prefix, b_prefix = settings.redis_prefix + "a:", settings.redis_prefix + "b:"
    seq_kv = RedisKV(redis_client, a_prefix)
    seq = Pipeline(settings, seq_kv, outbox=True)
    one_record: list[int] = []
    seq_apply = seq_kv.apply_checked

    def measured(ops, *args):
        one_record.append(len(ops))
        return seq_apply(ops, *args)

    seq_kv.apply_checked = measured
    expected = _messages(_run(seq, recs, 1)[:-1])
    limit = max(one_record)  # what one record alone writes, at most: it always gets through

    kv = RedisKV(redis_client, b_prefix)
    shell = WorkerShell(settings, Pipeline(settings, kv, outbox=True))
    real = kv.apply_checked
    sizes = []

    def small_commits_only(ops, *args):
        sizes.append(len(ops))
        if len(ops) > limit:
            raise Conflict("test: a large batch lost the race")
        return real(ops, *args)

    kv.apply_checked = small_commits_only
    items = []
    for n, r in enumerate(recs):
        item, dead = shell.accept(encode_record(r), settings.topic(f"{r['source']}.raw"), 0, n)
        assert item is not None and not dead
        item = type(item)(**{**{f: getattr(item, f) for f in item.__slots__},
                             "channel": _channel(r)})
        items.append(item)
    msgs = shell.process_batch(items, now=1_000_000.0)
    got = [(t[len(settings.topic_prefix):], k.decode(), json.dumps(json.loads(v), sort_keys=True))
           for t, k, v, _o in msgs]
    assert got == expected
    assert max(sizes) > limit and shell.pipe.conflicts > 2  # it did conflict, and split
    assert sum(1 for s in sizes if s <= limit) > 1
