"""The value of a capped set read that exceeded its cap. A module of its own: it subclasses a
builtin type, which the compiled core cannot, so it stays a Python class that compiled and
pure code share."""

from __future__ import annotations


class Oversized(frozenset[str]):
    """A set read with a cap it exceeds (``smembers_many(keys, caps)``): its size, no members.
    ``len()`` is the set's size, so a caller's "too common" test and the optimistic commit's
    size check both work on it; iterating it yields nothing."""

    size: int

    def __new__(cls, size: int) -> Oversized:
        self = super().__new__(cls)
        self.size = int(size)
        return self

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"Oversized({self.size})"
