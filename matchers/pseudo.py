"""Keyed pseudonymisation (HMAC-SHA256). ID numbers and phones never leave the process in clear."""

from __future__ import annotations

import hmac
from typing import TypeVar

T = TypeVar("T")


class Pseudonymiser:
    """``pseudo(kind, value)`` -> short keyed hash. A plain hash of an 18-digit ID is reversible
    by enumeration; a keyed HMAC is not without the key.

    Results are memoised (bounded): the same blocking keys, IDs and typo neighbours recur for
    every record of a person, and one HMAC costs more than a dict lookup. The cache holds only
    what the caller already holds in clear, in this process."""

    __slots__ = ("_key", "_memo", "_max", "derived")

    def __init__(self, key: str | bytes, memo: int = 1 << 18):
        self._key = key.encode() if isinstance(key, str) else key
        self._memo: dict[tuple[str, str], str] = {}
        self._max = memo
        # Values derived from clear input and pseudonymised under this key (e.g. an ID's
        # hashes and its typo neighbours' hashes), memoised by their callers: see
        # :meth:`remember`. Same bound and same reason as the HMAC memo.
        self.derived: dict[tuple[object, ...], object] = {}

    def remember(self, key: tuple[object, ...], value: T) -> T:
        """Keep ``value`` (immutable) under ``key`` in :attr:`derived`; returns it."""
        derived = self.derived
        if len(derived) >= self._max:
            derived.clear()
        derived[key] = value
        return value

    def __call__(self, kind: str, value: str) -> str:
        memo = self._memo
        k = (kind, value)
        h = memo.get(k)
        if h is None:
            h = hmac.digest(self._key, f"{kind}\x1f{value}".encode(), "sha256").hex()[:24]
            if len(memo) >= self._max:
                memo.clear()  # cheap bound; the working set refills it at once
            memo[k] = h
        return h
