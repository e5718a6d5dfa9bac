"""The storage primitive under the identity store and the rule state.

Two backends honour one :class:`KeyValue` contract: :class:`MemoryKV` (replay, unit tests) and
:class:`RedisKV` (workers). Everything stored is a string; callers serialise.
Keys handed in are already free of personal data (IDs and phones are HMAC-ed upstream).
"""

from __future__ import annotations

import bisect
import hashlib
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
    def srem(self, key: str, member: str) -> None: ...
    def smembers_many(self, keys: list[str]) -> list[set[str]]:
        """Several sets in one round trip."""
        ...
    def apply(self, ops: list[tuple]) -> None:
        """Apply buffered writes ``(op, key, *args)`` atomically, in order."""
        ...
    def scan(self, prefix: str) -> Iterable[str]:
        """Every key starting with ``prefix`` (any type), in no particular order. For sweeps
        (``reglink purge``), never on the per-record path."""
        ...


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
            _remove_sorted(lst, (z[member], member))
        z[member] = score
        bisect.insort(lst, (score, member))

    def zrem(self, key: str, member: str) -> None:
        z = self._z.get(key)
        if z and member in z:
            _remove_sorted(self._zsorted[key], (z.pop(member), member))

    def zupto(self, key: str, max_score: float) -> list[tuple[str, float]]:
        lst = self._zsorted.get(key, [])
        end = bisect.bisect_right(lst, (max_score, "\uffff"))
        return [(m, s) for s, m in lst[:end]]

    def incr(self, key: str) -> int:
        return self.incrby(key, 1)

    def srem(self, key: str, member: str) -> None:
        self._set.get(key, set()).discard(member)

    def incrby(self, key: str, amount: int) -> int:
        value = int(self._str.get(key, "0")) + int(amount)
        self._str[key] = str(value)
        return value

    def scan(self, prefix: str) -> list[str]:
        # like Redis, an emptied set or sorted set is no key any more
        return [k for d in (self._str, self._set, self._z) for k in list(d)
                if k.startswith(prefix) and (d is self._str or d[k])]

    def smembers_many(self, keys: list[str]) -> list[set[str]]:
        return [self.smembers(k) for k in keys]

    def smembers_many_shared(self, keys: list[str]) -> list[set[str] | frozenset[str]]:
        """The stored sets themselves, not copies: for readers that never mutate them
        (:class:`TxKV`), so a large blocking bucket is not copied on every lookup."""
        got = self._set.get
        return [got(k, _EMPTY) for k in keys]

    def apply(self, ops: list[tuple]) -> None:
        for op, key, *args in ops:
            getattr(self, op)(key, *args)


_EMPTY: frozenset[str] = frozenset()


def _remove_sorted(lst: list, item) -> None:
    """Remove ``item`` from a sorted list in O(log n) search (list.remove scans)."""
    i = bisect.bisect_left(lst, item)
    if i < len(lst) and lst[i] == item:
        del lst[i]
    else:  # pragma: no cover - the index and the dict always agree
        lst.remove(item)


_HASH_OVER = 64  # strings read longer than this are compared by SHA-1 in the commit script


class Conflict(Exception):
    """Another writer changed a key this unit of work read: nothing was applied; retry it.

    ``key``: the first checked key found changed, when the store says which (its checks are
    ordered by the record that first read each key, so a batch can keep the records before
    that one: :meth:`TxKV.commit_prefix`). ``segment``: that record's index (set by
    :class:`TxKV`; 0 when unknown, i.e. the whole unit must run again)."""

    def __init__(self, msg: str = "", key: str | None = None) -> None:
        super().__init__(msg)
        self.key = key
        self.segment = 0


# Compare-and-apply: the unit of work's reads still hold (strings equal, sets the same size:
# the sets it reads only ever grow), then its writes, all inside one atomic script.
# A long string read is compared by its SHA-1 ('2'), so a batch's identities are not sent
# back to Redis in full just to be compared. Returns 1 when applied, else -i for the first
# check found failing (KEYS[i]): nothing is applied.
_CAS = """
local ns, nc = tonumber(ARGV[1]), tonumber(ARGV[2])
local a = 3
for i = 1, ns do
  local v = redis.call('GET', KEYS[i])
  local how = ARGV[a]
  if how == '1' then
    if v ~= ARGV[a + 1] then return -i end
  elseif how == '2' then
    if (not v) or redis.sha1hex(v) ~= ARGV[a + 1] then return -i end
  elseif v then return -i end
  a = a + 2
end
for i = ns + 1, ns + nc do
  if redis.call('SCARD', KEYS[i]) ~= tonumber(ARGV[a]) then return -i end
  a = a + 1
end
local k = ns + nc + 1
while a <= #ARGV do
  local op, n = ARGV[a], tonumber(ARGV[a + 1])
  local key = KEYS[k]
  a, k = a + 2, k + 1
  if op == 'set' then redis.call('SET', key, ARGV[a])
  elseif op == 'delete' then redis.call('DEL', key)
  elseif op == 'sadd' then redis.call('SADD', key, unpack(ARGV, a, a + n - 1))
  elseif op == 'srem' then redis.call('SREM', key, ARGV[a])
  elseif op == 'zadd' then redis.call('ZADD', key, ARGV[a + 1], ARGV[a])
  elseif op == 'zrem' then redis.call('ZREM', key, ARGV[a])
  elseif op == 'incrby' then redis.call('INCRBY', key, ARGV[a]) end
  a = a + n
end
return 1
"""


# A read-only script: GET the first ARGV[1] keys, SMEMBERS the rest (one atomic snapshot).
_FETCH = """
local ns = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  if i <= ns then out[i] = redis.call('GET', KEYS[i])
  else out[i] = redis.call('SMEMBERS', KEYS[i]) end
end
return out
"""


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

    def srem(self, key: str, member: str) -> None:
        self._r.srem(self._k(key), member)

    def incrby(self, key: str, amount: int) -> int:
        return int(self._r.incrby(self._k(key), int(amount)))

    def scan(self, prefix: str):
        """SCAN (cursor, not KEYS: the server keeps answering others) for ``prefix*``."""
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self._p + prefix) + "*"
        n = len(self._p)
        for k in self._r.scan_iter(match=pattern, count=1000):
            yield self._s(k)[n:]

    def smembers_many(self, keys: list[str]) -> list[set[str]]:
        if not keys:
            return []
        from redis.exceptions import NoPermissionError

        if not getattr(self, "_no_scripts", False):
            try:
                return self.fetch([], keys)[1]  # one script call, not one command per key
            except NoPermissionError:
                # A read-only user (the console's) may not run scripts: pipelined SMEMBERS.
                self._no_scripts = True
        pipe = self._r.pipeline(transaction=False)
        for k in keys:
            pipe.smembers(self._k(k))
        return [{self._s(m) for m in members} for members in pipe.execute()]

    def fetch(self, strings: list[str], sets: list[str]) -> tuple[list, list]:
        """GETs and SMEMBERS in one round trip: one script call, so a batch's thousands of
        keys cost one command to pack and send, not one each."""
        if not strings and not sets:
            return [], []
        script = getattr(self, "_fetch_script", None)
        if script is None:
            script = self._fetch_script = self._r.register_script(_FETCH)
        res = script(keys=[self._k(k) for k in strings] + [self._k(k) for k in sets],
                     args=[len(strings)])
        n = len(strings)
        vals = [self._s(v) for v in res[:n]]
        return vals, [{self._s(m) for m in members} for members in res[n:]]

    def apply_checked(self, ops: list[tuple], strings: dict[str, str | None],
                      cards: dict[str, int]) -> None:
        """Apply ``ops`` atomically only if every string in ``strings`` still has the value
        read and every set in ``cards`` still has that many members (one EVALSHA);
        raise :class:`Conflict` otherwise (nothing applied), naming the first key found
        changed (strings are checked first, each group in the order given)."""
        keys: list[str] = []
        argv: list = [len(strings), len(cards)]
        for k, v in strings.items():
            keys.append(self._k(k))
            if v is None:
                argv += ["0", ""]
            elif len(v) > _HASH_OVER:
                argv += ["2", hashlib.sha1(v.encode()).hexdigest()]  # noqa: S324 - not security
            else:
                argv += ["1", v]
        for k, n in cards.items():
            keys.append(self._k(k))
            argv.append(n)
        for op, key, *args in ops:
            keys.append(self._k(key))
            if op == "sadd":
                vals = list(args[0])
            elif op == "zadd":
                vals = [args[0], repr(float(args[1]))]
            else:
                vals = list(args)
            argv += [op, len(vals), *vals]
        script = getattr(self, "_cas", None)
        if script is None:
            script = self._cas = self._r.register_script(_CAS)
        res = int(script(keys=keys, args=argv))
        if res != 1:
            # -i: KEYS[i] is the first check that failed (strings first, then sets)
            i, key = -res - 1, None
            if 0 <= i < len(strings):
                key = list(strings)[i]
            elif len(strings) <= i < len(strings) + len(cards):
                key = list(cards)[i - len(strings)]
            raise Conflict("a key read by this unit of work changed", key)

    def apply(self, ops: list[tuple]) -> None:
        """One MULTI/EXEC: all of a record's writes land together or not at all."""
        pipe = self._r.pipeline(transaction=True)
        for op, key, *args in ops:
            k = self._k(key)
            if op == "set":
                pipe.set(k, args[0])
            elif op == "delete":
                pipe.delete(k)
            elif op == "sadd":
                pipe.sadd(k, *args[0])
            elif op == "srem":
                pipe.srem(k, args[0])
            elif op == "zadd":
                pipe.zadd(k, {args[0]: args[1]})
            elif op == "zrem":
                pipe.zrem(k, args[0])
            elif op == "incrby":
                pipe.incrby(k, int(args[0]))
            else:  # pragma: no cover - programming error
                raise ValueError(f"unknown op {op}")
        pipe.execute()


_DELETED = object()


def _coalesce(ops: list[tuple]) -> list[tuple]:
    """Drop string writes that a later write of the same key overwrites (a batch sets the
    watermark or an identity many times; only the last value needs to reach the base)."""
    if len(ops) < 2:
        return ops
    overwritten: set[str] = set()  # keys whose every later op is a set or delete
    touched: set[str] = set()
    keep: list[tuple] = []
    for op in reversed(ops):
        key = op[1]
        if op[0] == "set" and key in overwritten:
            continue
        if op[0] in ("set", "delete"):
            if key not in touched:
                overwritten.add(key)
        else:
            overwritten.discard(key)
        touched.add(key)
        keep.append(op)
    keep.reverse()
    return keep


class TxKV:
    """Read-your-writes buffer over a :class:`KeyValue`; :meth:`commit` applies every buffered
    write at once (one ``MULTI``/``EXEC`` on Redis). One record's state changes are therefore
    all-or-nothing: a crash or a Redis outage mid-record leaves no half-applied merge.

    With a base that offers ``apply_checked`` (Redis), the commit is optimistic: it applies
    only if every string this unit of work read is unchanged and every set it read has the
    same size, else raises :class:`Conflict` (the caller rolls back and retries). Several
    workers may then update one identity concurrently without losing an update. Counters
    named in ``atomic_counters`` are real atomic increments outside the unit of work (unique
    across writers; a rolled-back unit leaves a gap) and never a cause of conflict.

    A unit of work of several records (a batch) calls :meth:`begin` before each record: every
    base key is then attributed to the record that first *used* it (a key fetched ahead but
    never used by any record is not checked: nothing depended on it), the commit's checks go
    in that order, and a :class:`Conflict` says which record first read a changed key
    (``segment``). The records before it depend only on keys first read before it, so
    :meth:`commit_prefix` can commit them alone, and only the rest runs again."""

    def __init__(self, base: KeyValue, optimistic: bool | None = None,
                 atomic_counters: frozenset[str] = frozenset(),
                 deferred_counters: frozenset[str] = frozenset(),
                 counter_block: int = 1) -> None:
        self.base = base
        self.optimistic = (hasattr(base, "apply_checked") if optimistic is None
                           else optimistic)
        self.atomic_counters = atomic_counters if self.optimistic else frozenset()
        # Counters incremented inside the commit (INCRBY in the script): no round trip of
        # their own, never a cause of conflict; their value is approximate across writers.
        self.deferred_counters = deferred_counters if self.optimistic else frozenset()
        # Atomic counters hand out ids from blocks reserved with one INCRBY each (unique
        # across writers; unused ids of a block are a gap, like a rolled-back unit's).
        self.counter_block = max(1, counter_block)
        self._blocks: dict[str, tuple[int, int]] = {}  # key -> (next, last) reserved
        self._zhint: dict[str, float] = {}
        self._used: dict[str, int] | None = None  # key -> first record using it (batches)
        self._seg = 0
        self._marks: list[int] = []  # len(self._ops) when record i began
        self.rollback()

    # -- transaction ----------------------------------------------------------------------
    def rollback(self) -> None:
        self._str: dict[str, object] = {}
        self._sets: dict[str, tuple[bool, set[str]]] = {}  # key -> (base deleted?, added)
        self._z: dict[str, tuple[bool, dict[str, float | None]]] = {}
        self._ops: list[tuple] = []
        # Base reads of this unit of work (strings and sets): a key read twice in one record
        # costs one round trip. Dropped at commit/rollback, so nothing outlives the record.
        self._rs: dict[str, str | None] = {}
        self._rset: dict[str, set[str]] = {}
        self._rz: dict[str, tuple[float, list[tuple[str, float]]]] = {}  # key -> (upto, rows)
        self._zhint = {}
        self._used = None
        self._seg = 0
        self._marks = []

    def begin(self, segment: int) -> None:
        """Record ``segment`` of this unit of work starts (0, 1, ... in order): from now on
        base keys first used are attributed to it (see the class docstring)."""
        if self._used is None:
            self._used = {}
        while len(self._marks) <= segment:
            self._marks.append(len(self._ops))
        self._seg = segment

    def _checks(self, before: int | None = None
                ) -> tuple[dict[str, str | None], dict[str, int]]:
        """What the commit compares: every base read (one record), or in a batch the keys
        some record used, in the order they were first used; ``before``: only those first
        used by records before that one."""
        skip = self.atomic_counters | self.deferred_counters
        rs, rset, used = self._rs, self._rset, self._used
        if used is None:
            return ({k: v for k, v in rs.items() if k not in skip},
                    {k: len(v) for k, v in rset.items()})
        strings: dict[str, str | None] = {}
        cards: dict[str, int] = {}
        for k, seg in used.items():
            if before is not None and seg >= before:
                break  # first uses are recorded in record order
            if k in rs:
                if k not in skip:
                    strings[k] = rs[k]
            elif k in rset:
                cards[k] = len(rset[k])
        return strings, cards

    def _apply_checked(self, ops: list[tuple], before: int | None = None) -> None:
        strings, cards = self._checks(before)
        try:
            self.base.apply_checked(ops, strings, cards)  # type: ignore[attr-defined]
        except Conflict as exc:
            if self._used is not None and exc.key is not None:
                exc.segment = self._used.get(exc.key, 0)
            raise

    def commit(self) -> None:
        if self._ops:
            ops = _coalesce(self._ops)
            if self.optimistic:
                self._apply_checked(ops)
            else:
                self.base.apply(ops)
        self.rollback()

    def commit_prefix(self, segment: int, extra: list[tuple] = ()) -> None:
        """Commit only what records ``0 .. segment-1`` of this unit of work wrote (plus
        ``extra`` writes), checked against only what they read; then roll back the rest.
        Raises :class:`Conflict` (nothing applied, its ``segment`` < ``segment``) if one of
        their reads changed too."""
        if segment >= len(self._marks):
            raise ValueError(f"no record {segment} began in this unit of work")
        ops = self._ops[:self._marks[segment]] + list(extra)
        if ops:
            ops = _coalesce(ops)
            if self.optimistic:
                self._apply_checked(ops, segment)
            else:
                self.base.apply(ops)
        self.rollback()

    @property
    def pending(self) -> int:
        return len(self._ops)

    def scan(self, prefix: str) -> Iterable[str]:
        """Keys of the base (a sweep reads committed state, not this unit's writes)."""
        return self.base.scan(prefix)

    # -- reads ----------------------------------------------------------------------------
    def _base_get(self, key: str) -> str | None:
        used = self._used
        if used is not None and key not in used:
            used[key] = self._seg
        rs = self._rs
        if key in rs:
            return rs[key]
        v = rs[key] = self.base.get(key)
        return v

    def _base_smembers(self, key: str) -> set[str]:
        used = self._used
        if used is not None and key not in used:
            used[key] = self._seg
        got = self._rset.get(key)
        if got is None:
            got = self._rset[key] = self._read_sets([key])[0]
        return got

    def _read_sets(self, keys: list[str]) -> list:
        """Base sets, shared (uncopied) when the base offers it: never mutated here, every
        set handed out is a fresh union."""
        shared = getattr(self.base, "smembers_many_shared", None)
        return shared(keys) if shared is not None else self.base.smembers_many(keys)

    def get(self, key: str) -> str | None:
        if key in self._str:
            v = self._str[key]
            return None if v is _DELETED else v  # type: ignore[return-value]
        return self._base_get(key)

    def mget(self, keys: list[str]) -> list[str | None]:
        rs = self._rs
        missing = list(dict.fromkeys(k for k in keys if k not in self._str and k not in rs))
        if missing:
            rs.update(zip(missing, self.base.mget(missing), strict=True))
        return [self.get(k) for k in keys]

    def smembers(self, key: str) -> set[str]:
        deleted, added = self._sets.get(key, (False, set()))
        out = set() if deleted else set(self._base_smembers(key))  # a fresh, mutable copy
        if added:
            out |= added
        return out

    def smembers_many(self, keys: list[str]) -> list[set[str]]:
        want = [k for k in dict.fromkeys(keys)
                if not self._sets.get(k, (False,))[0] and k not in self._rset]
        if want:
            self._rset.update(zip(want, self._read_sets(want), strict=True))
        return [self.smembers(k) for k in keys]

    def smembers_many_shared(self, keys: list[str]) -> list[set[str] | frozenset[str]]:
        """Like :meth:`smembers_many`, but a set this unit of work did not change is handed
        out uncopied (the base's own set when it shares them): for readers that never mutate
        what they get (the identity store's ``find``)."""
        want = [k for k in dict.fromkeys(keys)
                if not self._sets.get(k, (False,))[0] and k not in self._rset]
        if want:
            self._rset.update(zip(want, self._read_sets(want), strict=True))
        sets, rset, used = self._sets, self._rset, self._used
        if used is not None:
            seg = self._seg
            for k in keys:
                if k not in used and k not in sets:
                    used[k] = seg
        return [rset[k] if k not in sets else self.smembers(k) for k in keys]

    def scard(self, key: str) -> int:
        return len(self.smembers(key))

    def prefetch(self, strings: list[str], sets: list[str]) -> None:
        """Read strings and sets this unit of work is about to need, in one round trip when
        the base can (``RedisKV.fetch``); later reads of them hit the read cache."""
        fetch = getattr(self.base, "fetch", None)
        if fetch is None:  # an embedded base: reads cost nothing, fetching ahead would
            return
        strings = [k for k in dict.fromkeys(strings) if k not in self._str and k not in self._rs]
        sets = [k for k in dict.fromkeys(sets)
                if not self._sets.get(k, (False,))[0] and k not in self._rset]
        vals, members = fetch(strings, sets)
        self._rs.update(zip(strings, vals, strict=True))
        self._rset.update(zip(sets, members, strict=True))

    def zhint(self, key: str, max_score: float) -> None:
        """This unit of work will ask ``zupto(key, s)`` only for ``s <= max_score``: the first
        such call reads the base up to ``max_score`` once, the later ones filter that read."""
        self._zhint[key] = max(max_score, self._zhint.get(key, max_score))

    def _base_zupto(self, key: str, max_score: float) -> list[tuple[str, float]]:
        got = self._rz.get(key)
        if got is None or got[0] < max_score:
            if not hasattr(self.base, "fetch"):  # embedded: reading is free, read exactly
                return self.base.zupto(key, max_score)
            upto = max(max_score, self._zhint.get(key, max_score))
            got = self._rz[key] = (upto, self.base.zupto(key, upto))
        return [r for r in got[1] if r[1] <= max_score]

    def zupto(self, key: str, max_score: float) -> list[tuple[str, float]]:
        deleted, over = self._z.get(key, (False, {}))
        rows = {} if deleted else dict(self._base_zupto(key, max_score))
        for m, s in over.items():
            rows.pop(m, None)
            if s is not None and s <= max_score:
                rows[m] = s
        return sorted(rows.items(), key=lambda r: (r[1], r[0]))

    # -- writes ---------------------------------------------------------------------------
    def set(self, key: str, value: str) -> None:
        self._str[key] = value
        self._ops.append(("set", key, value))

    def delete(self, key: str) -> None:
        self._str[key] = _DELETED
        self._sets[key] = (True, set())
        self._z[key] = (True, {})
        self._ops.append(("delete", key))

    def sadd(self, key: str, members: Iterable[str]) -> None:
        members = set(members)
        if not members:
            return
        if key not in self._sets:
            read = self._rset.get(key)
            if read is not None and members <= read:
                return  # already members of the set this unit of work read: a no-op write
        deleted, added = self._sets.setdefault(key, (False, set()))
        added |= members
        self._ops.append(("sadd", key, sorted(members)))

    def srem(self, key: str, member: str) -> None:
        deleted, added = self._sets.get(key, (False, set()))
        added.discard(member)
        if not deleted:  # materialise: base members minus the removed one
            self._sets[key] = (True, (set(self._base_smembers(key)) | added) - {member})
        self._ops.append(("srem", key, member))

    def zadd(self, key: str, member: str, score: float) -> None:
        self._z.setdefault(key, (False, {}))[1][member] = score
        self._ops.append(("zadd", key, member, score))

    def zrem(self, key: str, member: str) -> None:
        self._z.setdefault(key, (False, {}))[1][member] = None
        self._ops.append(("zrem", key, member))

    def incr(self, key: str) -> int:
        if key in self.atomic_counters:  # shared: atomic now, never a cause of conflict
            if self.counter_block == 1 or not hasattr(self.base, "incrby"):
                return self.base.incr(key)
            nxt, last = self._blocks.get(key, (1, 0))
            if nxt > last:
                last = self.base.incrby(key, self.counter_block)  # type: ignore[attr-defined]
                nxt = last - self.counter_block + 1
            self._blocks[key] = (nxt + 1, last)
            return nxt
        value = int(self.get(key) or 0) + 1
        if key in self.deferred_counters:  # applied as INCRBY by the commit
            self._str[key] = str(value)
            self._ops.append(("incrby", key, 1))
            return value
        self.set(key, str(value))
        return value
