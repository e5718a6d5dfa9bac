"""Conflicts are resolved per record, not per batch: a batch whose commit finds a key changed
by another worker keeps the records before the first one that read that key (committed once)
and runs only the rest again. Real Redis (the compare-and-apply script), no broker."""

import pytest
from corekit import ordered_corpus

from matchers.features import person_record
from reglink.core.contract import record_key
from reglink.core.pipeline import Pipeline
from reglink.stores.kv import Conflict, RedisKV, TxKV


def test_the_conflict_names_the_record_that_first_read_the_changed_key(settings, redis_client):
    base = RedisKV(redis_client, settings.redis_prefix)
    base.apply([("set", "a", "1"), ("set", "b", "1"), ("sadd", "bucket", ["p1"])])
    tx = TxKV(base)
    assert tx.optimistic
    tx.begin(0)
    assert tx.get("a") == "1"
    tx.set("w0", "written by record 0")
    tx.begin(1)
    assert tx.get("a") == "1"  # read again: still record 0's key
    assert tx.smembers("bucket") == {"p1"}
    assert tx.get("b") == "1"
    tx.set("w1", "written by record 1")
    tx.begin(2)
    tx.set("w2", "written by record 2")
    redis_client.set(settings.redis_prefix + "b", "2")  # another worker, meanwhile
    with pytest.raises(Conflict) as info:
        tx.commit()
    assert info.value.key == "b" and info.value.segment == 1
    assert base.get("w0") is None  # nothing applied
    tx.commit_prefix(1)  # record 0 read only "a": it commits alone
    assert base.get("w0") == "written by record 0"
    assert base.get("w1") is None and base.get("w2") is None
    # the rest was rolled back: the overlay no longer holds it, and no later commit applies it
    assert tx.get("w1") is None and tx.get("w2") is None
    tx.commit()
    assert base.get("w1") is None and base.get("w2") is None


def test_a_grown_set_is_a_conflict_of_the_record_that_read_it(settings, redis_client):
    base = RedisKV(redis_client, settings.redis_prefix)
    base.apply([("set", "a", "1"), ("sadd", "bucket", ["p1"])])
    tx = TxKV(base)
    tx.begin(0)
    tx.prefetch(["a"], ["bucket"])  # fetched ahead: attributed to whoever uses it first
    tx.get("a")
    tx.set("w0", "x")
    tx.begin(1)
    tx.begin(2)
    tx.smembers("bucket")
    tx.set("w2", "y")
    redis_client.sadd(settings.redis_prefix + "bucket", "p2")
    with pytest.raises(Conflict) as info:
        tx.commit()
    assert info.value.key == "bucket" and info.value.segment == 2


def test_a_prefix_whose_own_read_changed_is_refused(settings, redis_client):
    base = RedisKV(redis_client, settings.redis_prefix)
    base.apply([("set", "a", "1"), ("set", "b", "1")])
    tx = TxKV(base)
    tx.begin(0)
    tx.get("a")
    tx.set("w0", "x")
    tx.begin(1)
    tx.get("b")
    tx.set("w1", "y")
    redis_client.set(settings.redis_prefix + "b", "2")
    with pytest.raises(Conflict) as info:
        tx.commit()
    assert info.value.segment == 1
    redis_client.set(settings.redis_prefix + "a", "2")  # and record 0's read changes too
    with pytest.raises(Conflict) as info:
        tx.commit_prefix(1)
    assert info.value.segment == 0
    assert base.get("w0") is None


def test_keys_fetched_ahead_but_never_used_are_not_checked(settings, redis_client):
    base = RedisKV(redis_client, settings.redis_prefix)
    base.apply([("set", "a", "1"), ("set", "unused", "1"), ("sadd", "bucket", ["p1"])])
    tx = TxKV(base)
    tx.begin(0)
    tx.prefetch(["a", "unused"], ["bucket"])
    tx.get("a")
    tx.set("w0", "x")
    redis_client.set(settings.redis_prefix + "unused", "2")
    redis_client.sadd(settings.redis_prefix + "bucket", "p2")
    tx.commit()  # no record depended on them
    assert base.get("w0") == "x"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return ordered_corpus(tmp_path_factory.mktemp("sim"), persons=300, days=20, seed=11)


def _ch(rec):
    return f"{rec['source']}#0"


def test_a_batch_keeps_the_records_before_the_conflicted_one(settings, redis_client, corpus):
    """Another worker links the batch's last record between the batch's reads and its
    commit. The records before the first one that read what it changed are committed once,
    in the first commit after the conflict; only the rest runs again. Results equal a run
    in which the other worker's commit came first."""
    prefix = settings.redis_prefix
    kv = RedisKV(redis_client, prefix)
    mine = Pipeline(settings, kv, outbox=True)
    other = Pipeline(settings, RedisKV(redis_client, prefix), outbox=True)
    first = corpus[:200]
    rest = [r for r in corpus[200:] if r["source"] != "watchlist"][:120]
    # The other worker's record founds an identity no record before it can block onto (its
    # blocking keys are new), so only that record of the batch reads what it changes.
    def keys(r):
        return set(mine.linker.finder.keys(person_record(r, record_key(r), mine.pseudo)))

    seen_keys = set().union(*(keys(r) for r in first + rest[:-1]))
    rest[-1] = next(r for r in corpus[320:] if r["source"] not in ("watchlist", "person")
                    and not keys(r) & seen_keys)
    mine.process_batch([(r, _ch(r)) for r in first], 1.0)
    real = kv.apply_checked
    commits: list[tuple[int, list[str]]] = []  # (ops, links written) per successful commit
    seen: list[Conflict] = []

    def commit_after_the_other_worker(ops, *args):
        if not commits and not seen:  # the other worker links the batch's last record first
            other.process(rest[-1], 1.0, channel=_ch(rest[-1]))
        try:
            real(ops, *args)
        except Conflict as exc:
            seen.append(exc)
            raise
        commits.append((len(ops), [op[1] for op in ops if op[0] == "set"
                                   and op[1].startswith("l:")]))

    kv.apply_checked = commit_after_the_other_worker
    before = mine.metrics.reruns._value.get()
    results = mine.process_batch([(r, _ch(r)) for r in rest], 1.0)
    assert len(seen) == 1 and mine.conflicts == 1
    cut = seen[0].segment
    assert 0 < cut < len(rest)  # a record after the first read what the other changed
    # the leading records were committed once, by the first commit after the conflict ...
    assert commits[0][1] == [f"l:{record_key(r)}" for r in rest[:cut]]
    # ... and only the others ran again (in attempts of half their number), committed after it
    assert mine.metrics.reruns._value.get() - before == len(rest) - cut
    n = len(rest) - cut
    assert len(commits) == 1 + -(-n // max(1, n // 2))
    assert [k for _n, links in commits[1:] for k in links] == \
        [f"l:{record_key(r)}" for r in rest[cut:-1]]
    # the record the other worker linked keeps its person, and the batch saw that link
    assert results[-1][0] == other.store.link_of(record_key(rest[-1])) is not None
    assert len(results) == len(rest)
    for r in rest:
        assert mine.store.link_of(record_key(r)) is not None


def _state(kv: RedisKV) -> dict[str, str]:
    """Identities and record links as stored (what a rerun must not change)."""
    keys = sorted(k for k in kv.scan("") if k[:2] in ("i:", "l:", "m:"))
    return dict(zip(keys, kv.mget(keys), strict=True))


def test_a_lost_reply_after_a_partial_commit_repeats_links_and_loses_nothing(
        settings, redis_client, corpus):
    """The records before the conflicted one are committed (``commit_prefix``), but Redis
    goes away before its reply arrives. The worker shell keeps the batch (RetryLater, never a
    dead letter) and, with Redis back, runs all of it again: the committed records take the
    re-delivery path and repeat their ``linked`` message with the same person; nothing is
    linked, founded or queued twice, and the end state equals that of a run without the
    fault. (docs/topics.md: a repeat carries the same record_id and person_id.)"""
    import json

    import redis

    from streams.shell import Contended, RetryLater, WorkerShell

    first = corpus[:200]
    rest = [r for r in corpus[200:] if r["source"] != "watchlist"][:120]

    def run(prefix: str, fault: bool):
        kv = RedisKV(redis_client, prefix)
        mine = Pipeline(settings, kv, outbox=True)
        other = Pipeline(settings, RedisKV(redis_client, prefix), outbox=True)
        mine.process_batch([(r, _ch(r)) for r in first], 1.0)
        shell = WorkerShell(settings, mine)
        items = []
        for n, r in enumerate(rest):
            item, dl = shell.accept(json.dumps(r, ensure_ascii=False).encode(),
                                    settings.topic(f"{r['source']}.raw"), 0, 1000 + n, 1.0)
            assert item is not None and not dl
            items.append(item)
        if not fault:  # the other worker's commit simply comes first
            other.process(rest[-1], 1.0, channel=_ch(rest[-1]))
            return kv, mine, shell.process_batch(items, 1.0), None
        real = kv.apply_checked
        calls: list[int] = []

        def commit_then_lose_the_reply(ops, *args):
            calls.append(len(ops))
            if len(calls) == 1:  # between the batch's reads and its commit
                other.process(rest[-1], 1.0, channel=_ch(rest[-1]))
            real(ops, *args)  # raises Conflict on the first call
            if len(calls) == 2:  # the leading records' commit: applied, reply lost
                raise redis.exceptions.ConnectionError("Connection reset by peer")

        kv.apply_checked = commit_then_lose_the_reply
        with pytest.raises(RetryLater) as info:
            shell.process_batch(items, 1.0)
        assert not isinstance(info.value, Contended)  # an outage, reported as one
        kv.apply_checked = real
        committed = [r for r in rest[:-1]  # the last one: linked by the other worker
                     if mine.store.link_of(record_key(r)) is not None]
        return kv, mine, shell.process_batch(items, 1.0), committed

    ref_kv, ref, ref_out, _ = run(settings.redis_prefix + "ref/", fault=False)
    kv, mine, out, committed = run(settings.redis_prefix + "fault/", fault=True)
    # the fault happened where intended: some leading records in, the rest not yet
    assert 0 < len(committed) < len(rest)
    assert committed == rest[:len(committed)]

    def linked(messages):
        return [json.loads(v) for t, _k, v, _o in messages if t == settings.topic("linked")]

    ref_links, links = linked(ref_out), linked(out)
    assert len(links) == len(rest) == len(ref_links)  # every record once in this delivery
    assert [(m["record_id"], m["person_id"]) for m in links] == \
        [(m["record_id"], m["person_id"]) for m in ref_links]
    assert not any(t == settings.topic("deadletter") for t, *_ in out)
    # nothing founded, linked or queued twice: the stored state and the outbox equal the
    # run without the fault
    assert _state(kv) == _state(ref_kv)
    assert mine.store.count() == ref.store.count()

    def queued(p):
        return sorted(json.dumps(o.value, sort_keys=True) for o in p.outbox.undelivered())

    assert queued(mine) == queued(ref)

    def last(p):  # what a re-send leaves last for each key: its current value
        return {(o.topic, o.key): o.value for o in p.undelivered()}

    assert last(mine) == last(ref)
