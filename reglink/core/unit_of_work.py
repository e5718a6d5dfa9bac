"""The unit of work: a record's (or a batch's) state changes commit together or not at all.

On a shared Redis the commit is optimistic (:class:`~reglink.stores.kv.TxKV`): if another
worker changed something the unit read, nothing is applied and the unit runs again on fresh
state, after a short growing pause (:func:`conflict_backoff`). A batch resolves conflicts per
record (:meth:`UnitOfWork.run_batch`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar, TypeVarTuple

from reglink.core.metrics import PipelineMetrics
from reglink.stores.kv import Conflict
from reglink.stores.kv_api import Op, UnitOfWorkKV

MAX_CONFLICT_RETRIES = 20
# Pause before conflict retry n: min(cap, base * 2**n), jittered x0.5-1.5. Retrying at once
# meets the same writer again (a purge sweep commits a unit every few ms); 20 retries wait
# about 0.7 s in all, long enough for a busy writer to move on.
BACKOFF_BASE_S = 0.0005
BACKOFF_CAP_S = 0.05


_Item = TypeVar("_Item", contravariant=True)
_Result = TypeVar("_Result", covariant=True)
_Memory = TypeVar("_Memory")
_I = TypeVar("_I")
_R = TypeVar("_R")
_Args = TypeVarTuple("_Args")


def conflict_backoff(attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before re-running a unit of work after its ``attempt``-th conflict."""
    pause: float = min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2 ** min(attempt, 16))) * (0.5 + rand())
    return pause


class BatchSteps(Protocol[_Item, _Result, _Memory]):
    """What :meth:`UnitOfWork.run_batch` asks of the code that processes the records: items
    of type ``_Item`` give results of type ``_Result``; ``_Memory`` is a copy of the
    in-process state they change."""

    def start(self, items: Sequence[_Item]) -> None:
        """An attempt over ``items`` begins (segment 0 is open): read ahead what it needs."""

    def step(self, item: _Item) -> _Result:
        """Process one item on the attempt's read-your-writes overlay; its result."""

    def end(self) -> None:
        """The attempt is over (committed, conflicted or failed)."""

    def memory(self) -> _Memory:
        """A copy of the in-process state the items change (not in the store), which
        later items do not alter."""

    def restore(self, memory: _Memory) -> None:
        """Put the in-process state back to ``memory``."""

    def closing_writes(self, memory: _Memory) -> list[Op]:
        """Writes ``(op, key, *args)`` that save ``memory`` in the store, committed after
        the items they follow."""


class UnitOfWork:
    """Runs units of work over a :class:`~reglink.stores.kv_api.UnitOfWorkKV`.

    ``forget``: drops in-process caches that may hold a rolled-back unit's changes (decoded
    identities)."""

    def __init__(self, kv: UnitOfWorkKV, metrics: PipelineMetrics,
                 forget: Callable[[], None]) -> None:
        self.kv = kv
        self.metrics = metrics
        self.forget = forget
        self.sleep = time.sleep  # conflict backoff (tests count the pauses)
        self.conflicts = 0  # optimistic commits retried (several workers on one identity)

    def _conflicted(self) -> None:
        self.conflicts += 1
        self.metrics.conflicts.inc()

    def undo(self) -> None:
        self.kv.rollback()
        self.forget()

    def run(self, fn: Callable[[*_Args], _R], *args: *_Args) -> _R:
        """Run ``fn(*args)`` as one unit of work; commit its state changes at once, or none.

        After a conflict the unit runs again on fresh state (its in-process effects must be
        idempotent). After ``MAX_CONFLICT_RETRIES`` it raises :class:`Conflict`; the worker
        then backs off longer and keeps the record."""
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            try:
                result = fn(*args)
                self.kv.commit()
                return result
            except Conflict:
                self.undo()
                self._conflicted()
                if attempt == MAX_CONFLICT_RETRIES:
                    raise
                self.sleep(conflict_backoff(attempt))
            except BaseException:
                self.undo()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def run_batch(self, items: list[_I], steps: BatchSteps[_I, _R, _Memory],
                  max_retries: int = 2) -> list[_R]:
        """Process ``items`` in order as one unit of work; their results.

        Every item runs on a batch-wide read-your-writes overlay (item i+1 sees item i's
        writes) and the whole batch commits at once (one compare-and-apply on Redis), with
        :meth:`BatchSteps.closing_writes` of the final memory.

        Conflicts are resolved per item: the commit's checks are ordered by the item that
        first read each key, so a conflict names the first item that read a changed key.
        The items before it read nothing that changed: they are committed on their own (with
        the memory as it was after them), and only the rest runs again, on fresh state, in
        attempts of half as many items (each conflict halves them again: what other writers
        keep changing is less likely to hit a smaller attempt). When the very first item
        conflicts, nothing is kept: the attempt rolls back (state, caches, memory) and runs
        again; after ``max_retries`` such conflicts in a row it raises :class:`Conflict` with
        ``done`` = the results of the items already committed, and the caller handles the
        others (one at a time). Any other error rolls the uncommitted items back too and is
        raised, likewise with ``done``."""
        kv = self.kv
        done: list[_R] = []
        misses = 0
        track = kv.optimistic
        limit = len(items)  # items per attempt: halved after each conflict
        while True:
            pending = items[len(done):len(done) + limit]
            before = steps.memory()
            snaps: list[_Memory] = []  # the memory after each item (to commit a prefix)
            results: list[_R] = []
            conflict: Conflict | None = None
            try:
                kv.begin(0)
                steps.start(pending)
                for i, item in enumerate(pending):
                    kv.begin(i)
                    results.append(steps.step(item))
                    if track:
                        snaps.append(steps.memory())
                kv.begin(len(pending))
                for op, key, *args in steps.closing_writes(steps.memory()):
                    getattr(kv, op)(key, *args)
                kv.commit()
                done += results
                if len(done) == len(items):
                    return done
            except Conflict as exc:
                conflict = exc
            except BaseException as err:  # not ``exc``: compiled, a name keeps one type
                self.undo()
                steps.restore(before)
                err.done = done  # type: ignore[attr-defined]
                raise
            finally:
                steps.end()
            if conflict is None:
                continue  # committed: the next attempt takes the items after these
            self._conflicted()
            try:
                kept = self._commit_leading(conflict.segment, snaps, steps)
            except BaseException as err:  # e.g. Redis went away: the leading items may
                self.undo()               # or may not be in (re-running them is idempotent)
                steps.restore(before)
                err.done = done  # type: ignore[attr-defined]
                raise
            self.undo()
            steps.restore(snaps[kept - 1] if kept else before)
            done += results[:kept]
            self.metrics.reruns.inc(len(pending) - kept)
            # the rest read what other writers are changing: smaller attempts lose less
            limit = max(1, (len(pending) - kept) // 2)
            misses = 0 if kept else misses + 1
            if misses > max_retries:
                conflict.done = done  # type: ignore[attr-defined]
                raise conflict

    def _commit_leading(self, segment: int, snaps: list[_Memory],
                        steps: BatchSteps[_I, _R, _Memory]) -> int:
        """After a conflict first seen at item ``segment``: commit the items before it
        (their own reads are checked again; a conflict there moves the cut further up).
        Returns how many leading items were committed."""
        while segment > 0:
            try:
                self.kv.commit_prefix(segment, steps.closing_writes(snaps[segment - 1]))
                return segment
            except Conflict as exc:
                self._conflicted()
                segment = min(exc.segment, segment - 1)
        return 0
