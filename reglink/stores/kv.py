"""The storage primitive under the identity store and the rule state.

Two backends honour one :class:`KeyValue` contract: :class:`MemoryKV` (replay, unit tests) and
:class:`RedisKV` (workers). Everything stored is a string; callers serialise.
Keys handed in are already free of personal data (IDs and phones are HMAC-ed upstream).

The Protocols that name what each user needs (:class:`IndexKV` within :class:`IdentityKV`
within :class:`KeyValue` within :class:`SharedKV`, and :class:`UnitOfWorkKV`, what the core
needs of :class:`TxKV`) are in :mod:`reglink.stores.kv_api`.
"""

from __future__ import annotations

import base64
import bisect
import builtins
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, TypeVar, cast

from mypy_extensions import mypyc_attr

from reglink.stores import schema
from reglink.stores.kv_api import Caps, KeyValue, Op, SharedKV, UnitOfWorkKV
from reglink.stores.oversized import Oversized
from reglink.stores.schema import LAYOUT

_pack_command: Callable[..., bytes] | None
try:  # the C packer redis-py uses when it is installed (a dependency of reglink)
    from hiredis import pack_command as _pack_command
except ImportError:  # pragma: no cover - redis-py's own packing then
    _pack_command = None

_T = TypeVar("_T")


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

    def smembers(self, key: str) -> builtins.set[str]:
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

    def smembers_many(self, keys: list[str], caps: Caps = None) -> list[builtins.set[str]]:
        return [self.smembers(k) for k in keys]  # embedded: reading is free, caps unused

    def smembers_many_shared(self, keys: list[str], caps: Caps = None
                             ) -> list[AbstractSet[str]]:
        """The stored sets themselves, not copies: for readers that never mutate them
        (:class:`TxKV`), so a large blocking bucket is not copied on every lookup."""
        got = self._set.get
        return [got(k, _EMPTY) for k in keys]

    def apply(self, ops: list[Op]) -> None:
        for op, key, *args in ops:
            getattr(self, op)(key, *args)


_EMPTY: frozenset[str] = frozenset()


def _remove_sorted(lst: list[tuple[float, str]], item: tuple[float, str]) -> None:
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


class OldLayout(Exception):
    """The store was written in another layout than :data:`LAYOUT` (an older index, or rule
    timers without their rule's name): this version cannot read it."""


# What the layouts before :data:`LAYOUT` were, for the operator's message.
_OLD_LAYOUTS = {
    None: "1 (one Redis set per blocking key, JSON identities)",
    "2": "2 (rule timers without their rule's name)",
}


def ensure_layout(kv: KeyValue, force: bool = False) -> None:
    """Mark an empty store with :data:`LAYOUT`, or check the mark of a used one.

    A store written before the mark existed (identities or a watermark, no ``layout`` key)
    is in the oldest layout: a worker on it would find no candidates in its index and
    found duplicate identities silently, so it is refused with :class:`OldLayout`, as is a
    store marked with another layout. ``force``: mark it anyway (a ``reglink rebuild
    --force`` writing over it)."""
    got = kv.get(schema.LAYOUT_KEY)
    if got == LAYOUT:
        return
    if got is None and (force or (kv.get(schema.IDENTITY_COUNT) is None
                                  and kv.get(schema.WATERMARK) is None)):
        kv.set(schema.LAYOUT_KEY, LAYOUT)
        return
    raise OldLayout(
        f"the state under this Redis prefix was written in layout "
        f"{_OLD_LAYOUTS.get(got, got)}; this version reads and writes layout {LAYOUT} only. "
        "Rebuild it from Kafka into an empty prefix (`reglink rebuild`, see "
        "docs/capacity.md, 'Migrating'), then point the workers at it")


# --- The compact blocking index ----------------------------------------------------------------
# A logical set ``b:<key>`` (and ``<ns>/b:<key>``, e.g. the watchlist index ``wl/b:<key>``) is no
# Redis set of its own: a top-level key costs ~100 B before its members, and a Redis 7.0 set
# of strings is hashtable-encoded (~50 B per member). Instead:
#
# * bucket: the hash ``<prefix><ns>b#<first BUCKET_HEX hex digits of the key>``; field: the next
#   hex digits up to the key's first 64 bits; small hashes are listpack-encoded (a field and
#   its value cost their bytes plus ~4 B). A key that is not hex (tests) gets the bucket of
#   its SHA-1 and the field ``~<key>``.
# * value: the members packed, ``m1,m2,...``; a person id ``P`` + 16 hex digits is packed as
#   its 8 bytes in base64url (11 chars), any other id as ``~<id>``.
# * a set that grows past PACK_MAX members moves to a hash of its own, ``<bucket key>@<field>``
#   (the field then holds ``@``): its size in field ``n``, its members packed the same way
#   over 2^k fields by a hash of the member (k doubles when a field would pass PACK_MAX). A
#   name shared by thousands of people then costs ~12 B per member (a Redis set of strings:
#   ~70 B) and one short field rewrite per add, not a rewrite of one long value.
#
# Truncating keys to 64 bits may put two blocking keys into one logical set. That only adds
# candidates (every candidate is compared with the record), and is rare: ~6 * 10^-5 expected
# colliding pairs among 4.5 * 10^7 keys (10^7 identities).
# The scripts below implement the set operations on this layout; ``RedisKV`` maps keys.
BUCKET_HEX = 5  # 2^20 buckets: ~45 fields each at 10^7 identities, ~450 at 10^8
_KEY_HEX = 16  # bucket + field: the key's first 64 bits
PACK_MAX = 24  # members packed in a field; a larger set moves to its own Redis set
_HEX = re.compile(r"[0-9a-f]{16}")
_PID = re.compile(r"P[0-9a-f]{16}")

# Lua helpers shared by the scripts. ``f`` is the field of a mapped key, '' for a plain key.
_LUA_SETS = """
local function packed_n(v)
  local _, n = string.gsub(v, ',', ',')
  return n + 1
end
local function split(v)
  local ms, i, s = {}, 1, v .. ','
  while i <= #s do
    local j = string.find(s, ',', i, true)
    ms[#ms + 1] = string.sub(s, i, j - 1)
    i = j + 1
  end
  return ms
end
-- A large set: the hash <bucket key>@<field>, n = size, k = bits, members packed over the
-- fields s0 .. s(2^k-1) by a hash of the member, at most PACK_MAX each (doubled when over).
local function slot(m, k)
  return 's' .. (tonumber(string.sub(redis.sha1hex(m), 1, 7), 16) % (2 ^ k))
end
local function spread(o, ms, k)
  while true do
    local by, cnt, over = {}, {}, false
    for _, m in ipairs(ms) do
      local sl = slot(m, k)
      by[sl] = by[sl] and (by[sl] .. ',' .. m) or m
      cnt[sl] = (cnt[sl] or 0) + 1
      if cnt[sl] > PACK_MAX then over = true end
    end
    if not over then
      local args = {'k', k, 'n', #ms}
      for sl, v in pairs(by) do args[#args + 1] = sl; args[#args + 1] = v end
      redis.call('DEL', o)
      redis.call('HSET', o, unpack(args))
      return
    end
    k = k + 1
  end
end
local function omembers(o)
  local all, ms = redis.call('HGETALL', o), {}
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 1) == 's' then
      for _, m in ipairs(split(all[i + 1])) do ms[#ms + 1] = m end
    end
  end
  return ms
end
local function oadd(o, m)
  local k = tonumber(redis.call('HGET', o, 'k'))
  local sl = slot(m, k)
  local v = redis.call('HGET', o, sl)
  if v and string.find(',' .. v .. ',', ',' .. m .. ',', 1, true) then return end
  v = v and (v .. ',' .. m) or m
  if packed_n(v) > PACK_MAX then
    local ms = omembers(o)
    ms[#ms + 1] = m
    spread(o, ms, k + 1)
  else
    redis.call('HSET', o, sl, v)
    redis.call('HINCRBY', o, 'n', 1)
  end
end
local function card(key, f)
  if f == '' then return redis.call('SCARD', key) end
  local v = redis.call('HGET', key, f)
  if not v then return 0 end
  if v == '@' then return tonumber(redis.call('HGET', key .. '@' .. f, 'n')) end
  return packed_n(v)
end
local function hsadd(key, f, a, n)
  local v = redis.call('HGET', key, f)
  if v == '@' then
    for j = a, a + n - 1 do oadd(key .. '@' .. f, ARGV[j]) end
    return
  end
  local s = v and (',' .. v .. ',') or ','
  local c = v and packed_n(v) or 0
  for j = a, a + n - 1 do
    if not string.find(s, ',' .. ARGV[j] .. ',', 1, true) then
      s, c = s .. ARGV[j] .. ',', c + 1
    end
  end
  if c > PACK_MAX then
    spread(key .. '@' .. f, split(string.sub(s, 2, -2)), 1)
    redis.call('HSET', key, f, '@')
  elseif c > 0 then
    redis.call('HSET', key, f, string.sub(s, 2, -2))
  end
end
local function unpacked(v, m)
  local s = ',' .. v .. ','
  local i, j = string.find(s, ',' .. m .. ',', 1, true)
  if not i then return nil end
  s = string.sub(s, 1, i) .. string.sub(s, j + 1)
  return string.sub(s, 2, -2)
end
local function hsrem(key, f, m)
  local v = redis.call('HGET', key, f)
  if not v then return end
  if v == '@' then
    local o = key .. '@' .. f
    local sl = slot(m, tonumber(redis.call('HGET', o, 'k')))
    local w = redis.call('HGET', o, sl)
    local rest = w and unpacked(w, m)
    if not rest then return end
    if rest == '' then redis.call('HDEL', o, sl) else redis.call('HSET', o, sl, rest) end
    if redis.call('HINCRBY', o, 'n', -1) <= 0 then
      redis.call('DEL', o)
      redis.call('HDEL', key, f)
    end
    return
  end
  local rest = unpacked(v, m)
  if not rest then return end
  if rest == '' then redis.call('HDEL', key, f) else redis.call('HSET', key, f, rest) end
end
local function hdel(key, f)
  if redis.call('HGET', key, f) == '@' then redis.call('DEL', key .. '@' .. f) end
  redis.call('HDEL', key, f)
end
""".replace("PACK_MAX", str(PACK_MAX))

# Compare-and-apply: the unit of work's reads still hold (strings equal, sets the same size:
# the sets it reads only ever grow), then its writes, all inside one atomic script.
# A long string read is compared by its SHA-1 ('2'), so a batch's identities are not sent
# back to Redis in full just to be compared. A set is checked by (key, field): see card().
# Returns 1 when applied, else -i for the first check found failing (KEYS[i]): nothing is
# applied.
_CAS = _LUA_SETS + """
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
  if card(KEYS[i], ARGV[a]) ~= tonumber(ARGV[a + 1]) then return -i end
  a = a + 2
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
  elseif op == 'hsadd' then hsadd(key, ARGV[a], a + 1, n - 1)
  elseif op == 'hsrem' then hsrem(key, ARGV[a], ARGV[a + 1])
  elseif op == 'hdel' then hdel(key, ARGV[a])
  elseif op == 'zadd' then redis.call('ZADD', key, ARGV[a + 1], ARGV[a])
  elseif op == 'zrem' then redis.call('ZREM', key, ARGV[a])
  elseif op == 'incrby' then redis.call('INCRBY', key, ARGV[a]) end
  a = a + n
end
return 1
"""


# A read-only script: GET the first ARGV[1] keys, then the sets (one atomic snapshot). Per set
# two ARGV: its field ('' for a plain set) and its cap ('' for none). A set over its cap comes
# back as its size only (an integer), so a lookup's cost does not grow with a common key's
# population; a packed field comes back as its packed string, a Redis set as its members.
_FETCH = _LUA_SETS + """
local ns = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  if i <= ns then out[i] = redis.call('GET', KEYS[i])
  else
    local a = 2 + 2 * (i - ns - 1)
    local key, f, cap = KEYS[i], ARGV[a], tonumber(ARGV[a + 1])
    local v = nil
    if f ~= '' then
      v = redis.call('HGET', key, f)
      end
    if v == '@' then
      local o = key .. '@' .. f
      local n = tonumber(redis.call('HGET', o, 'n'))
      if cap and n > cap then out[i] = n else out[i] = omembers(o) end
    elseif f == '' then
      if cap then
        local n = redis.call('SCARD', key)
        if n > cap then out[i] = n else out[i] = redis.call('SMEMBERS', key) end
      else out[i] = redis.call('SMEMBERS', key) end
    elseif not v then out[i] = ''
    elseif cap and packed_n(v) > cap then out[i] = packed_n(v)
    else out[i] = v end
  end
end
return out
"""


CAS_SCRIPT = _CAS


def _enc_member(m: str) -> str:
    """A member of a mapped set as packed: ``P`` + 16 hex -> its 8 bytes in base64url."""
    if len(m) == 17 and _PID.fullmatch(m):
        return base64.urlsafe_b64encode(bytes.fromhex(m[1:]))[:11].decode()
    if "," in m:
        raise ValueError(f"an index member may not contain ',': {m!r}")
    return "~" + m


def _dec_member(m: str) -> str:
    if m[:1] == "~":
        return m[1:]
    return "P" + base64.urlsafe_b64decode(m + "=").hex()


def index_location(key: str, prefix: str = "", buckets_hex: int = BUCKET_HEX
                   ) -> tuple[str, str | None]:
    """Where a logical key lives in Redis: ``(redis key, hash field)`` for a blocking-index
    set (``b:<key>``, ``<ns>/b:<key>``), ``(redis key, None)`` for any other key."""
    ns, sep, rest = key.partition(schema.BLOCKING)
    if not sep or (ns and (not ns.endswith("/") or ":" in ns)):
        return prefix + key, None
    if _HEX.match(rest):
        return f"{prefix}{ns}b#{rest[:buckets_hex]}", rest[buckets_hex:_KEY_HEX]
    digest = hashlib.sha1(rest.encode()).hexdigest()  # noqa: S324 - a bucket, not security
    return f"{prefix}{ns}b#{digest[:buckets_hex]}", "~" + rest


def _logical(name: str, field: str) -> str:
    """The logical key of a bucket's field (``name``: the bucket key without the prefix);
    hex keys come back as their first 64 bits, which map to the same field."""
    ns, _, bucket = name.partition("b#")
    return f"{ns}b:{field[1:]}" if field[:1] == "~" else f"{ns}b:{bucket}{field}"


def _is_bucket(name: str) -> bool | None:
    """True for a bucket hash, False for an overflow set, None for any other key."""
    ns, sep, rest = name.partition("b#")
    if not sep or (ns and (not ns.endswith("/") or ":" in ns)):
        return None
    return "@" not in rest


def _direct(fn: Callable[..., _T], *args: Any, **kw: Any) -> _T:
    return fn(*args, **kw)


def _text(v: bytes | str) -> str:
    """A Redis reply as text (the client decodes replies or not, as it was built)."""
    return v.decode() if isinstance(v, bytes) else v


# A plain Python class even when compiled (its methods still are): fault-injection tests
# replace a method on one instance (a lost reply, a competing writer), which a compiled
# class forbids.
@mypyc_attr(native_class=False)
class RedisKV:
    """Redis backend. ``prefix`` isolates deployments and tests (e.g. ``reglink:``).

    Blocking-index sets (``b:...``, ``<ns>/b:...``) are stored compactly as fields of
    bucket hashes (see ``index_location``); every method maps them, so callers see the same
    logical sets as with :class:`MemoryKV`. Writes to them go through a Lua script."""

    LOC_MEMO = 1 << 16  # blocking-index locations remembered (see _loc)

    def __init__(self, client: Any, prefix: str, buckets_hex: int = BUCKET_HEX) -> None:
        # a redis-py client; its replies are untyped (bytes or str, as it was built)
        self._r = client
        self._p = prefix
        self._bh = buckets_hex
        self._locs: dict[str, tuple[str, str | None]] = {}
        # How the writes of a unit of work (compare-and-apply, apply) are sent:
        # ``io(fn, *args, **kw)`` returns ``fn(*args, **kw)``. The worker lets them wait
        # without blocking its event loop (streams/overlap.py); called directly by default.
        # Reads (fetch, get) stay direct: a read that waited for the loop would lengthen the
        # time between a unit's reads and its commit, in which another worker's commit
        # makes it conflict.
        self.io: Callable[..., Any] = _direct

    def _k(self, key: str) -> str:
        return self._p + key

    def close(self) -> None:
        """Close the client's connections (the worker, at shutdown)."""
        self._r.close()

    def _loc(self, key: str) -> tuple[str, str | None]:
        """``index_location`` of a key. A blocking-index key's location (a regex match or a
        SHA-1) is remembered, bounded: a unit of work places each of its sets twice (read,
        then checked at commit) and the same keys recur for every record of a person."""
        got = self._locs.get(key)
        if got is None:
            got = index_location(key, self._p, self._bh)
            if got[1] is not None:  # other keys cost a partition: not worth a slot
                if len(self._locs) >= self.LOC_MEMO:
                    self._locs.clear()
                self._locs[key] = got
        return got

    @staticmethod
    def _s(v: bytes | str | None) -> str | None:
        return v.decode() if isinstance(v, bytes) else v

    def _unpack(self, raw: int | bytes | str | list[bytes | str], mapped: bool
                ) -> builtins.set[str] | Oversized:
        """A set as the fetch script returns it: an integer (over its cap), a packed string
        (a field), or the members of a Redis set (mapped: packed members)."""
        if isinstance(raw, int):
            return Oversized(raw)
        if isinstance(raw, bytes | str):
            packed = _text(raw)
            return {_dec_member(m) for m in packed.split(",")} if packed else set()
        if mapped:
            return {_dec_member(_text(m)) for m in raw}
        return {_text(m) for m in raw}

    def get(self, key: str) -> str | None:
        return self._s(self._r.get(self._k(key)))

    def mget(self, keys: list[str]) -> list[str | None]:
        if not keys:
            return []
        return [self._s(v) for v in self._r.mget([self._k(k) for k in keys])]

    def set(self, key: str, value: str) -> None:
        self._r.set(self._k(key), value)

    def delete(self, key: str) -> None:
        if self._loc(key)[1] is not None:
            self.apply([("delete", key)])
        else:
            self._r.delete(self._k(key))

    def sadd(self, key: str, members: Iterable[str]) -> None:
        members = list(members)
        if not members:
            return
        if self._loc(key)[1] is not None:
            self.apply([("sadd", key, members)])
        else:
            self._r.sadd(self._k(key), *members)

    def smembers(self, key: str) -> builtins.set[str]:
        if self._loc(key)[1] is not None:
            return cast(builtins.set[str], self._read_plain([key])[0])  # no cap: a set
        return {_text(m) for m in self._r.smembers(self._k(key))}

    def scard(self, key: str) -> int:
        rk, f = self._loc(key)
        if f is None:
            return int(self._r.scard(rk))
        v = self._s(self._r.hget(rk, f))
        if not v:
            return 0
        return int(self._r.hget(f"{rk}@{f}", "n")) if v == "@" else v.count(",") + 1

    def zadd(self, key: str, member: str, score: float) -> None:
        self._r.zadd(self._k(key), {member: score})

    def zrem(self, key: str, member: str) -> None:
        self._r.zrem(self._k(key), member)

    def zupto(self, key: str, max_score: float) -> list[tuple[str, float]]:
        rows = self._r.zrangebyscore(self._k(key), "-inf", max_score, withscores=True)
        return [(_text(m), float(s)) for m, s in rows]

    def incr(self, key: str) -> int:
        return int(self._r.incr(self._k(key)))

    def srem(self, key: str, member: str) -> None:
        if self._loc(key)[1] is not None:
            self.apply([("srem", key, member)])
        else:
            self._r.srem(self._k(key), member)

    def incrby(self, key: str, amount: int) -> int:
        return int(self._r.incrby(self._k(key), int(amount)))

    def scan(self, prefix: str) -> Iterator[str]:
        """SCAN (cursor, not KEYS: the server keeps answering others) for ``prefix*``; the
        fields of the index's bucket hashes come out as logical keys (``b:<64 bits>``)."""
        n = len(self._p)
        ns, sep, _ = prefix.partition(schema.BLOCKING)
        if sep and not (ns and (not ns.endswith("/") or ":" in ns)):
            physical = ns + "b#"  # a prefix inside the index: only its buckets can match
        else:
            physical = prefix
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self._p + physical) + "*"
        buckets: list[str] = []
        for k in self._r.scan_iter(match=pattern, count=1000):
            name = _text(k)[n:]
            kind = _is_bucket(name)
            if kind is None:
                if self._loc(name)[1] is not None:
                    raise OldLayout(
                        f"Redis key {self._p + name!r} is a blocking-index set in layout 1 "
                        "(one Redis set per key); this version reads the "
                        "packed index only. Rebuild the state from Kafka into an empty prefix "
                        "(`reglink rebuild`, see docs/capacity.md, 'Migrating')")
                if name.startswith(prefix):
                    yield name
            elif kind:
                buckets.append(name)
                if len(buckets) >= 500:
                    yield from self._scan_fields(buckets, prefix)
                    buckets = []
        yield from self._scan_fields(buckets, prefix)

    def _scan_fields(self, buckets: list[str], prefix: str) -> Iterator[str]:
        if not buckets:
            return
        pipe = self._r.pipeline(transaction=False)
        for name in buckets:
            pipe.hkeys(self._p + name)
        for name, fields in zip(buckets, pipe.execute(), strict=True):
            for f in fields:
                key = _logical(name, _text(f))
                if key.startswith(prefix):
                    yield key

    def _read_plain(self, keys: list[str]) -> list[builtins.set[str] | Oversized]:
        """Sets without a script (a read-only user may not run one): pipelined SMEMBERS and
        HGET, then HGETALL of the large sets that moved to a hash of their own."""
        pipe = self._r.pipeline(transaction=False)
        locs = [self._loc(k) for k in keys]
        for rk, f in locs:
            if f is None:
                pipe.smembers(rk)
            else:
                pipe.hget(rk, f)
        raw = pipe.execute()
        over = [i for i, (v, (_rk, f)) in enumerate(zip(raw, locs, strict=True))
                if f is not None and self._s(v) == "@"]
        if over:
            for i in over:
                rk, f = locs[i]
                pipe.hgetall(f"{rk}@{f}")
            for i, fields in zip(over, pipe.execute(), strict=True):
                raw[i] = [m for sl, v in fields.items() if _text(sl)[:1] == "s"
                          for m in _text(v).split(",")]
        return [self._unpack(v if v is not None else "", f is not None)
                for v, (_rk, f) in zip(raw, locs, strict=True)]

    def smembers_many(self, keys: list[str], caps: Caps = None
                      ) -> list[builtins.set[str] | Oversized]:
        if not keys:
            return []
        from redis.exceptions import NoPermissionError

        if not getattr(self, "_no_scripts", False):
            try:
                return self.fetch([], keys, caps)[1]  # one script call, not one command per key
            except NoPermissionError:
                # A read-only user (the console's) may not run scripts: pipelined reads.
                self._no_scripts = True
        return self._read_plain(keys)

    def smembers_many_shared(self, keys: list[str], caps: Caps = None
                             ) -> list[builtins.set[str] | Oversized]:
        """:meth:`smembers_many`: sets read from Redis are the caller's own anyway."""
        return self.smembers_many(keys, caps)

    def fetch(self, strings: list[str], sets: list[str], caps: Caps = None
              ) -> tuple[list[str | None], list[builtins.set[str] | Oversized]]:
        """GETs and set reads in one round trip: one script call, so a batch's thousands of
        keys cost one command to pack and send, not one each. ``caps``: see
        :meth:`KeyValue.smembers_many`."""
        if not strings and not sets:
            return [], []
        script = getattr(self, "_fetch_script", None)
        if script is None:
            script = self._fetch_script = self._r.register_script(_FETCH)
        per_key = [caps] * len(sets) if caps is None or isinstance(caps, int) else caps
        keys = [self._k(k) for k in strings]
        argv: list[str | int] = [len(strings)]
        mapped = []
        for k, cap in zip(sets, per_key, strict=True):
            rk, f = self._loc(k)
            keys.append(rk)
            argv += ["" if f is None else f, "" if cap is None else int(cap)]
            mapped.append(f is not None)
        res = self._evalsha(script, keys, argv)
        n = len(strings)
        vals = [self._s(v) for v in res[:n]]
        return vals, [self._unpack(v, m) for v, m in zip(res[n:], mapped, strict=True)]

    def _evalsha(self, script: Any, keys: list[str], args: list[str | int]) -> Any:
        """``script(keys=keys, args=args)``, with the command packed by hiredis in one call.

        A batch's script call carries tens of thousands of arguments; redis-py checks and
        encodes each one in Python before handing them to hiredis (a fifth of the worker's
        CPU on a backlog). Here the tuple goes to ``hiredis.pack_command`` as it is (str
        as UTF-8, int as decimal, as redis-py would send them) on a connection of the
        client's pool. A server without the script cached (NOSCRIPT: a restart, SCRIPT
        FLUSH) is left to redis-py's call, which loads it; so is a client without hiredis.
        A connection error closes the connection and is raised as redis-py would raise it
        (the unit of work's caller retries; the call is not repeated here)."""
        if _pack_command is None:
            return script(keys=keys, args=args)
        from redis.exceptions import NoScriptError, ResponseError

        packed = _pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))
        pool = self._r.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command([packed])
            res = conn.read_response()
        except NoScriptError:
            pool.release(conn)
            return script(keys=keys, args=args)
        except ResponseError:  # an error reply (the whole reply was read): usable
            pool.release(conn)
            raise
        except BaseException:
            conn.disconnect()
            pool.release(conn)
            raise
        pool.release(conn)
        return res

    def apply_checked(self, ops: list[Op], strings: dict[str, str | None],
                      cards: dict[str, int]) -> None:
        """Apply ``ops`` atomically only if every string in ``strings`` still has the value
        read and every set in ``cards`` still has that many members (one EVALSHA);
        raise :class:`Conflict` otherwise (nothing applied), naming the first key found
        changed (strings are checked first, each group in the order given)."""
        keys, argv = self.cas_args(ops, strings, cards)
        script = getattr(self, "_cas", None)
        if script is None:
            script = self._cas = self._r.register_script(_CAS)
        # handed to ``io`` as the script itself: the worker's io sends it with its asyncio
        # client (streams/overlap.py); called here and now, packed by hiredis
        res = int(self._evalsha(script, keys, argv) if self.io is _direct
                  else self.io(script, keys=keys, args=argv))
        if res != 1:
            # -i: KEYS[i] is the first check that failed (strings first, then sets)
            i, key = -res - 1, cast(str | None, None)
            if 0 <= i < len(strings):
                key = list(strings)[i]
            elif len(strings) <= i < len(strings) + len(cards):
                key = list(cards)[i - len(strings)]
            raise Conflict("a key read by this unit of work changed", key)

    def cas_args(self, ops: list[Op], strings: dict[str, str | None],
                 cards: dict[str, int]) -> tuple[list[str], list[str | int]]:
        """KEYS and ARGV of the compare-and-apply script (:data:`CAS_SCRIPT`) for
        :meth:`apply_checked`; a bulk loader sends them itself (benchmarks/store.py)."""
        keys: list[str] = []
        argv: list[str | int] = [len(strings), len(cards)]
        for k, v in strings.items():
            keys.append(self._k(k))
            if v is None:
                argv += ["0", ""]
            elif len(v) > _HASH_OVER:
                argv += ["2", hashlib.sha1(v.encode()).hexdigest()]  # noqa: S324 - not security
            else:
                argv += ["1", v]
        for k, n in cards.items():
            rk, f = self._loc(k)
            keys.append(rk)
            argv += ["" if f is None else f, n]
        for op, key, *args in ops:
            rk, f = self._loc(key)
            keys.append(rk)
            if f is not None and op in ("sadd", "srem", "delete"):
                op = "h" + op if op != "delete" else "hdel"
                vals = [f, *(_enc_member(m) for m in (args[0] if op == "hsadd" else args))]
            elif op == "sadd":
                vals = list(args[0])
            elif op == "zadd":
                vals = [args[0], repr(float(args[1]))]
            else:
                vals = list(args)
            argv += [op, len(vals), *vals]
        return keys, argv

    def apply(self, ops: list[Op]) -> None:
        """All of a record's writes land together or not at all: one MULTI/EXEC, or the
        compare-and-apply script without checks when a blocking-index set is written."""
        if any(self._loc(key)[1] is not None for _op, key, *_ in ops):
            self.apply_checked(ops, {}, {})
            return
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
        self.io(pipe.execute)


_DELETED = object()


def _coalesce(ops: list[Op]) -> list[Op]:
    """Drop string writes that a later write of the same key overwrites (a batch sets the
    watermark or an identity many times; only the last value needs to reach the base)."""
    if len(ops) < 2:
        return ops
    overwritten: set[str] = set()  # keys whose every later op is a set or delete
    touched: set[str] = set()
    keep: list[Op] = []
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
        #: True when the base reads several keys in one round trip (Redis): fetching what a
        #: unit of work will read ahead then saves round trips. False for an embedded base,
        #: whose reads cost nothing.
        self.can_prefetch = hasattr(base, "fetch")
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
        self._ops: list[Op] = []
        # Base reads of this unit of work (strings and sets): a key read twice in one record
        # costs one round trip. Dropped at commit/rollback, so nothing outlives the record.
        self._rs: dict[str, str | None] = {}
        self._rset: dict[str, AbstractSet[str]] = {}  # shared, never mutated here
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

    def _apply_checked(self, ops: list[Op], before: int | None = None) -> None:
        strings, cards = self._checks(before)
        try:
            cast(SharedKV, self.base).apply_checked(ops, strings, cards)  # optimistic: shared
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

    def commit_prefix(self, segment: int, extra: Sequence[Op] = ()) -> None:
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

    def cached_set(self, key: str) -> AbstractSet[str] | None:
        """The base set ``key`` as this unit of work read or prefetched it (an
        :class:`Oversized` when it was read over a cap), or None if it was not read. Never
        a base read; not to be mutated."""
        return self._rset.get(key)

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

    def _base_smembers(self, key: str) -> AbstractSet[str]:
        used = self._used
        if used is not None and key not in used:
            used[key] = self._seg
        got = self._rset.get(key)
        if got is None or isinstance(got, Oversized):  # a capped read has no members
            got = self._rset[key] = self._read_sets([key])[0]
        return got

    def _read_sets(self, keys: list[str], caps: Caps = None) -> Sequence[AbstractSet[str]]:
        """Base sets, shared (uncopied) when the base keeps them: never mutated here, every
        set handed out is a fresh union. ``caps``: see :meth:`IndexKV.smembers_many_shared`."""
        return self.base.smembers_many_shared(keys, caps)

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

    def smembers(self, key: str) -> builtins.set[str]:
        deleted, added = self._sets.get(key, (False, set()))
        # a fresh, mutable copy
        out: builtins.set[str] = set() if deleted else set(self._base_smembers(key))
        if added:
            out |= added
        return out

    def smembers_many(self, keys: list[str]) -> list[builtins.set[str]]:
        want = [k for k in dict.fromkeys(keys)
                if not self._sets.get(k, (False,))[0] and k not in self._rset]
        if want:
            self._rset.update(zip(want, self._read_sets(want), strict=True))
        return [self.smembers(k) for k in keys]

    def smembers_many_shared(self, keys: list[str], caps: Caps = None
                             ) -> list[AbstractSet[str]]:
        """Like :meth:`smembers_many`, but a set this unit of work did not change is handed
        out uncopied (the base's own set when it shares them): for readers that never mutate
        what they get (the identity store's ``find``). With ``caps``, a set over its cap may
        come back as :class:`Oversized` (a size, no members)."""
        per_key = [caps] * len(keys) if caps is None or isinstance(caps, int) else caps
        want: dict[str, int | None] = {}
        rset = self._rset
        for k, cap in zip(keys, per_key, strict=True):
            if self._sets.get(k, (False,))[0]:
                continue
            got = rset.get(k)
            # not read yet, or read with a smaller cap than this reader's and over it
            if got is None or (isinstance(got, Oversized) and (cap is None or len(got) <= cap)):
                want[k] = cap
        if want:
            rset.update(zip(want, self._read_sets(list(want), list(want.values())),
                            strict=True))
        sets, used = self._sets, self._used
        if used is not None:
            seg = self._seg
            for k in keys:
                if k not in used and k not in sets:
                    used[k] = seg
        return [rset[k] if k not in sets else self._shared_union(k) for k in keys]

    def _shared_union(self, key: str) -> AbstractSet[str]:
        """A set this unit of work changed: base + added, or, when the base was read over
        its cap, still only a size (the base's plus what was added: over the cap too)."""
        deleted, added = self._sets[key]
        got = self._rset.get(key)
        if not deleted and isinstance(got, Oversized):
            return Oversized(len(got) + len(added))
        return self.smembers(key)

    def scard(self, key: str) -> int:
        return len(self.smembers(key))

    def prefetch(self, strings: list[str], sets: list[str], cap: int | None = None) -> None:
        """Read strings and sets this unit of work is about to need, in one round trip when
        the base can (``RedisKV.fetch``); later reads of them hit the read cache. ``cap``:
        a set with more members comes back as :class:`Oversized` (see ``smembers_many``)."""
        if not self.can_prefetch:  # an embedded base: reads cost nothing
            return
        fetch = cast(SharedKV, self.base).fetch
        strings = [k for k in dict.fromkeys(strings) if k not in self._str and k not in self._rs]
        sets = [k for k in dict.fromkeys(sets)
                if not self._sets.get(k, (False,))[0] and k not in self._rset]
        vals, members = fetch(strings, sets, cap) if cap is not None else fetch(strings, sets)
        self._rs.update(zip(strings, vals, strict=True))
        self._rset.update(zip(sets, members, strict=True))

    def zhint(self, key: str, max_score: float) -> None:
        """This unit of work will ask ``zupto(key, s)`` only for ``s <= max_score``: the first
        such call reads the base up to ``max_score`` once, the later ones filter that read."""
        self._zhint[key] = max(max_score, self._zhint.get(key, max_score))

    def _base_zupto(self, key: str, max_score: float) -> list[tuple[str, float]]:
        got = self._rz.get(key)
        if got is None or got[0] < max_score:
            if not self.can_prefetch:  # embedded: reading is free, read exactly
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
                last = cast(SharedKV, self.base).incrby(key, self.counter_block)
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


class PrefixedView:
    """The identity-store operations of a unit of work under a key namespace (the watchlist
    index, ``wl/``): exactly what :class:`~reglink.stores.identity.KVIdentityStore` uses to
    save entries and find them (:class:`IndexKV`)."""

    def __init__(self, kv: UnitOfWorkKV, prefix: str) -> None:
        self._kv, self._p = kv, prefix

    def get(self, key: str) -> str | None:
        return self._kv.get(self._p + key)

    def mget(self, keys: list[str]) -> list[str | None]:
        return self._kv.mget([self._p + k for k in keys])

    def set(self, key: str, value: str) -> None:
        self._kv.set(self._p + key, value)

    def sadd(self, key: str, members: Iterable[str]) -> None:
        self._kv.sadd(self._p + key, members)

    def incr(self, key: str) -> int:
        return self._kv.incr(self._p + key)

    def smembers_many_shared(self, keys: list[str], caps: Caps = None
                             ) -> Sequence[AbstractSet[str]]:
        return self._kv.smembers_many_shared([self._p + k for k in keys], caps)
