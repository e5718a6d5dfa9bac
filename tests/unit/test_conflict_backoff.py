"""Contention is never the record's fault: a unit of work that keeps meeting other writers'
commits waits a little longer before each retry, and a worker that runs out of retries keeps
the record (backs off, tries again) instead of dead-lettering it."""

import json

import pytest
from corekit import EXAMPLES

from matchers.types import Identity
from reglink.core import unit_of_work as pl
from reglink.core.metrics import PipelineMetrics
from reglink.core.pipeline import Pipeline
from reglink.core.settings import load_settings
from reglink.core.unit_of_work import conflict_backoff
from reglink.stores.kv import Conflict, MemoryKV
from streams.shell import Contended, RetryLater, WorkerShell


class _SharedMemory:
    """A :class:`MemoryKV` that a unit of work treats as a shared store (it has
    ``apply_checked``, so commits are optimistic). A wrapper, not a subclass: the compiled
    store admits no interpreted subclasses."""

    def __init__(self) -> None:
        self.mem = MemoryKV()

    def __getattr__(self, name):
        return getattr(self.mem, name)


class ContendedKV(_SharedMemory):
    """A shared store where another writer's commit lands before each of this writer's
    first ``losses`` commits."""

    def __init__(self, losses: int) -> None:
        super().__init__()
        self.losses = losses
        self.commits = 0

    def apply_checked(self, ops, strings, cards) -> None:
        self.commits += 1
        if self.losses > 0:
            self.losses -= 1
            raise Conflict("changed meanwhile", key=next(iter(strings), None))
        self.apply(ops)


def _pipeline(losses: int):
    s = load_settings(hmac_key="k")
    pipe = Pipeline(s, ContendedKV(losses), metrics=PipelineMetrics())
    pauses: list[float] = []
    pipe.work.sleep = pauses.append
    return pipe, pauses, s


HOTEL = EXAMPLES.read_bytes().splitlines()[2]  # a hotel check-in


def _record():
    return json.loads(HOTEL)


def test_backoff_grows_then_stays_capped_and_is_jittered():
    lo = [conflict_backoff(n, rand=lambda: 0.0) for n in range(25)]
    hi = [conflict_backoff(n, rand=lambda: 1.0) for n in range(25)]
    assert lo[0] == pytest.approx(pl.BACKOFF_BASE_S * 0.5)
    assert all(b > a for a, b in zip(lo[:6], lo[1:7], strict=True))  # doubles at first
    assert max(hi) == pytest.approx(pl.BACKOFF_CAP_S * 1.5)  # never more than the cap
    assert hi[24] == pytest.approx(pl.BACKOFF_CAP_S * 1.5) and lo[24] == pytest.approx(
        pl.BACKOFF_CAP_S * 0.5)
    # all retries of one record wait well under a second, yet far longer than no pause
    total = sum(conflict_backoff(n, rand=lambda: 0.5) for n in range(pl.MAX_CONFLICT_RETRIES))
    assert 0.3 < total < 1.0


def test_a_record_that_conflicts_waits_before_each_retry_then_commits():
    pipe, pauses, _s = _pipeline(losses=5)
    pid, outs = pipe.process(_record(), now=1000.0)
    assert pid and any(o.topic == "linked" for o in outs)
    assert pipe.conflicts == 5 and pipe.kv.base.commits == 6
    assert len(pauses) == 5 and all(p > 0 for p in pauses)
    assert pipe.store.count() == 1  # committed once, the retries left nothing behind


def test_a_record_that_keeps_conflicting_raises_after_the_last_retry():
    pipe, pauses, _s = _pipeline(losses=pl.MAX_CONFLICT_RETRIES + 1)
    with pytest.raises(Conflict):
        pipe.process(_record(), now=1000.0)
    assert len(pauses) == pl.MAX_CONFLICT_RETRIES  # no pause after the last attempt
    assert pipe.store.count() == 0 and pipe.kv.base.commits == pl.MAX_CONFLICT_RETRIES + 1


def test_the_worker_keeps_a_record_it_could_not_commit_and_dead_letters_nothing():
    pipe, _pauses, s = _pipeline(losses=pl.MAX_CONFLICT_RETRIES + 1)
    shell = WorkerShell(s, pipe)
    line, src = HOTEL, "hotel"
    with pytest.raises(Contended) as got:
        shell.handle(line, s.topic(f"{src}.raw"), 0, 7, now=1000.0)
    assert isinstance(got.value, RetryLater)  # the worker's back-off-and-retry path
    assert got.value.what == "state store contended"
    # the same record, offered again once the other writers moved on, links normally
    out = shell.handle(line, s.topic(f"{src}.raw"), 0, 7, now=1001.0)
    assert [t for t, *_ in out].count(s.topic("linked")) == 1
    assert s.topic("deadletter") not in {t for t, *_ in out}


def test_a_purge_sweep_on_a_shared_store_leaves_writers_a_window_after_each_unit():
    import time

    from reglink.stores.identity import KVIdentityStore

    class Shared(_SharedMemory):
        def __init__(self):
            super().__init__()
            self.spans: list[tuple[float, float]] = []

        def apply_checked(self, ops, strings, cards):
            t0 = time.perf_counter()
            time.sleep(0.02)  # a unit of 50 deletions: a few ms on Redis, longer here
            self.apply(ops)
            self.spans.append((t0, time.perf_counter()))

    def filled(n_people: int) -> tuple[Shared, KVIdentityStore]:
        kv = Shared()
        store = KVIdentityStore(kv)
        for n in range(n_people):
            store.save(Identity(person_id=f"P{n}", anchor=f"a{n}", names={f"N{n}"},
                                last_report=100.0), [f"name:N{n}", "common"])
        return kv, store

    kv, store = filled(200)
    rep = store.purge(before=1000.0)
    assert len(rep.person_ids) == 200 and store.count() == 0
    assert len(kv.spans) == 4  # units of 50
    gaps = [b[0] - a[1] for a, b in zip(kv.spans, kv.spans[1:])]  # noqa: B905
    took = [b - a for a, b in kv.spans[:-1]]
    assert all(g >= 0.9 * t for g, t in zip(gaps, took, strict=True)), (gaps, took)
    kv2, store2 = filled(200)
    store2.purge(before=1000.0, yield_ratio=0)
    # without yielding: back to back (the smallest of 3 gaps, far under a unit's 20 ms)
    assert min(b[0] - a[1] for a, b in zip(kv2.spans, kv2.spans[1:])) < 0.01  # noqa: B905
