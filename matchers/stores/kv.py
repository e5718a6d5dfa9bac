"""The storage primitive under the identity store and the rule state.

Two backends honour one :class:`KeyValue` contract: :class:`MemoryKV` (replay, unit tests) and
:class:`RedisKV` (workers). Everything stored is a string; callers serialise.
Keys handed in are already free of personal data (IDs and phones are HMAC-ed upstream).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Protocol


class KeyValue(Protocol):
    def get(self, key: str) -> str | None: ...
    def mget(self, keys: list[str]) -> list[str | None]: ...
    def set(self, key: str, value: str) -> None: ...
    def delete(self, key: str) -> None: ...
    def sadd(self, key: str, members: Iterable[str]) -> None: ...
    def smembers(self, key: str) -> set[str]: ...
    def scard(self, key: str) -> int: ...
    def zadd(self, key: str, member: str, score: float) -> None: ...
    def zrem(self, key: str, member: str) -> None: ...
    def zupto(self, key: str, max_score: float) -> list[tuple[str, float]]:
        """Members with score <= max_score, lowest score first (ties by member)."""
        ...
    def incr(self, key: str) -> int: ...


class MemoryKV:
    """Embedded backend: plain dicts, one process, no persistence."""

    def __init__(self) -> None:
        self._str: dict[str, str] = {}
        self._set: dict[str, set[str]] = {}
        self._z: dict[str, dict[str, float]] = {}
        self._zsorted: dict[str, list[tuple[float, str]]] = {}

    def get(self, key: str) -> str | None:
        return self._str.get(key)

    def mget(self, keys: list[str]) -> list[str | None]:
        return [self._str.get(k) for k in keys]

    def set(self, key: str, value: str) -> None:
        self._str[key] = value

    def delete(self, key: str) -> None:
        self._str.pop(key, None)
        self._set.pop(key, None)
        self._z.pop(key, None)
        self._zsorted.pop(key, None)

    def sadd(self, key: str, members: Iterable[str]) -> None:
        self._set.setdefault(key, set()).update(members)

    def smembers(self, key: str) -> set[str]:
        return set(self._set.get(key, ()))

    def scard(self, key: str) -> int:
        return len(self._set.get(key, ()))

    def zadd(self, key: str, member: str, score: float) -> None:
        z = self._z.setdefault(key, {})
        lst = self._zsorted.setdefault(key, [])
        if member in z:
            lst.remove((z[member], member))
        z[member] = score
        bisect.insort(lst, (score, member))

    def zrem(self, key: str, member: str) -> None:
        z = self._z.get(key)
        if z and member in z:
            self._zsorted[key].remove((z.pop(member), member))

    def zupto(self, key: str, max_score: float) -> list[tuple[str, float]]:
        lst = self._zsorted.get(key, [])
        end = bisect.bisect_right(lst, (max_score, "\uffff"))
        return [(m, s) for s, m in lst[:end]]

    def incr(self, key: str) -> int:
        value = int(self._str.get(key, "0")) + 1
        self._str[key] = str(value)
        return value


class RedisKV:
    """Redis backend. ``prefix`` isolates deployments and tests (e.g. ``reglink:``)."""

    def __init__(self, client, prefix: str) -> None:
        self._r = client
        self._p = prefix

    def _k(self, key: str) -> str:
        return self._p + key

    @staticmethod
    def _s(v) -> str | None:
        return v.decode() if isinstance(v, bytes) else v

    def get(self, key: str) -> str | None:
        return self._s(self._r.get(self._k(key)))

    def mget(self, keys: list[str]) -> list[str | None]:
        if not keys:
            return []
        return [self._s(v) for v in self._r.mget([self._k(k) for k in keys])]

    def set(self, key: str, value: str) -> None:
        self._r.set(self._k(key), value)

    def delete(self, key: str) -> None:
        self._r.delete(self._k(key))

    def sadd(self, key: str, members: Iterable[str]) -> None:
        members = list(members)
        if members:
            self._r.sadd(self._k(key), *members)

    def smembers(self, key: str) -> set[str]:
        return {self._s(m) for m in self._r.smembers(self._k(key))}

    def scard(self, key: str) -> int:
        return int(self._r.scard(self._k(key)))

    def zadd(self, key: str, member: str, score: float) -> None:
        self._r.zadd(self._k(key), {member: score})

    def zrem(self, key: str, member: str) -> None:
        self._r.zrem(self._k(key), member)

    def zupto(self, key: str, max_score: float) -> list[tuple[str, float]]:
        rows = self._r.zrangebyscore(self._k(key), "-inf", max_score, withscores=True)
        return [(self._s(m), float(s)) for m, s in rows]

    def incr(self, key: str) -> int:
        return int(self._r.incr(self._k(key)))
