"""The interfaces of the storage primitive (:mod:`reglink.stores.kv`), each naming what one
user needs: :class:`IndexKV` within :class:`IdentityKV` within :class:`KeyValue` within
:class:`SharedKV`; :class:`UnitOfWorkKV` is what the core needs of a unit of work.

A module of its own so that the stores can be compiled (the compiled core cannot define
run-time checkable Protocols) while the Protocols stay checkable with ``isinstance``."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Protocol, runtime_checkable

Op = tuple[Any, ...]
"""A buffered write ``(op, key, *args)``: ``("set", key, value)``, ``("delete", key)``,
``("sadd", key, members)``, ``("srem", key, member)``, ``("zadd", key, member, score)``,
``("zrem", key, member)``, ``("incrby", key, amount)``."""

Caps = int | Sequence[int | None] | None
"""Caps of a multi-set read: one for every set, or one (or None) per key; None: no cap."""


@runtime_checkable
class IndexKV(Protocol):
    """What :class:`~reglink.stores.identity.KVIdentityStore` needs to save identities and
    find them (the watchlist index, :class:`PrefixedView`, offers no more)."""

    def get(self, key: str) -> str | None: ...
    def mget(self, keys: list[str]) -> list[str | None]: ...
    def set(self, key: str, value: str) -> None: ...
    def sadd(self, key: str, members: Iterable[str]) -> None: ...
    def incr(self, key: str) -> int: ...
    def smembers_many_shared(self, keys: list[str], caps: Caps = None
                             ) -> Sequence[AbstractSet[str]]:
        """Several sets in one round trip, for a reader that never mutates them (they may be
        the store's own). ``caps``: a set with more members than its cap may come back as
        :class:`Oversized` (its size, no members) instead of being transferred."""
        ...


@runtime_checkable
class IdentityKV(IndexKV, Protocol):
    """What the identity store also needs to retire a merged identity."""

    def delete(self, key: str) -> None: ...


@runtime_checkable
class KeyValue(IdentityKV, Protocol):
    """A committed store (:class:`MemoryKV`, :class:`RedisKV`): what the unit of work
    (:class:`TxKV`) reads through and commits to, and what the retention sweep uses."""

    def smembers_many(self, keys: list[str]) -> Sequence[AbstractSet[str]]:
        """Several sets in one round trip (the sweep reads the index with it)."""
        ...
    def zupto(self, key: str, max_score: float) -> list[tuple[str, float]]:
        """Members with score <= max_score, lowest score first (ties by member)."""
        ...
    def apply(self, ops: list[Op]) -> None:
        """Apply buffered writes (:data:`Op`) atomically, in order."""
        ...
    def scan(self, prefix: str) -> Iterable[str]:
        """Every key starting with ``prefix`` (any type), in no particular order. For sweeps
        (``reglink purge``), never on the per-record path."""
        ...


@runtime_checkable
class SharedKV(KeyValue, Protocol):
    """A store several writers share (:class:`RedisKV`): what :class:`TxKV` uses of a base
    that has it (tested with ``hasattr``): compare-and-apply commits, reading ahead, counter
    blocks."""

    def apply_checked(self, ops: list[Op], strings: dict[str, str | None],
                      cards: dict[str, int]) -> None: ...
    def fetch(self, strings: list[str], sets: list[str], caps: Caps = None
              ) -> tuple[Sequence[str | None], Sequence[AbstractSet[str]]]: ...
    def incrby(self, key: str, amount: int) -> int: ...


@runtime_checkable
class UnitOfWorkKV(IdentityKV, Protocol):
    """What the pure core needs of its state store (:class:`TxKV` implements it): reads with
    read-your-writes, buffered writes that :meth:`commit` applies at once (compare-and-apply
    on a shared store), prefetching, sets and sorted sets; and what the identity store needs
    (:class:`IdentityKV`)."""

    base: KeyValue  # the committed store (the outbox confirms deliveries on it directly)
    optimistic: bool  # commits are checked against what the unit of work read

    # reads
    def smembers(self, key: str) -> builtins.set[str]: ...
    def zupto(self, key: str, max_score: float) -> list[tuple[str, float]]: ...

    # reading ahead
    @property
    def can_prefetch(self) -> bool: ...
    def prefetch(self, strings: list[str], sets: list[str], cap: int | None = None) -> None: ...
    def cached_set(self, key: str) -> AbstractSet[str] | None: ...
    def zhint(self, key: str, max_score: float) -> None: ...

    # writes
    def srem(self, key: str, member: str) -> None: ...
    def zadd(self, key: str, member: str, score: float) -> None: ...
    def zrem(self, key: str, member: str) -> None: ...

    # the transaction
    def begin(self, segment: int) -> None: ...
    def commit(self) -> None: ...
    def commit_prefix(self, segment: int, extra: Sequence[Op] = ()) -> None: ...
    def rollback(self) -> None: ...
