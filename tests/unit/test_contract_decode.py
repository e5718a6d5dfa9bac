"""``parse_record`` decodes with msgspec when it can and with ``json.loads`` otherwise: the
result (record, or dead letter with its reason) must be exactly what the stdlib-only path gives,
types and key order included. Each test compares the two paths on the same bytes; the stdlib
path is ``parse_record`` with ``contract._msgspec_decode`` set to None. Pure: no services."""

from __future__ import annotations

import json
import math
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, localcontext
from typing import Any

import pytest
from fuzzkit import mutate, required_fields
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reglink.core import contract
from reglink.core.contract import SOURCES, DeadLetter, parse_record

ORIGIN = {"topic": "raw.hotel", "partition": 0, "offset": 7}
HOTEL = {
    "source": "hotel", "record_id": "H-1", "event": "check_in", "hotel_id": "H440305-017",
    "city_code": "440305", "time": "2026-03-02T21:14:00+08:00",
    "person": {"name": "陈丽", "id_number": "340102198803150022", "sex": "女"},
}


# --- the comparison ------------------------------------------------------------------------
def same(a: Any, b: Any) -> bool:
    """Deep equality that also demands the same types and dict key order: ``1 == 1.0 == True``
    and ``0.0 == -0.0`` in Python, but they are different records downstream. Iterative: the
    values compared nest as deep as the decoders allow, which is deeper than the interpreter's
    stack when the contract runs compiled."""
    stack = [(a, b)]
    while stack:
        a, b = stack.pop()
        if type(a) is not type(b):
            return False
        if isinstance(a, dict):
            if list(a) != list(b):
                return False
            stack.extend((a[k], b[k]) for k in a)
        elif isinstance(a, list | tuple):
            if len(a) != len(b):
                return False
            stack.extend(zip(a, b, strict=True))
        elif isinstance(a, float):
            if math.isnan(a) or math.isnan(b):
                if not (math.isnan(a) and math.isnan(b)):
                    return False
            elif not (a == b and math.copysign(1.0, a) == math.copysign(1.0, b)):
                return False
        elif isinstance(a, DeadLetter):
            stack.extend([(a.source, b.source), (a.reason, b.reason),
                          (a.original, b.original), (a.origin, b.origin)])
        elif a != b:
            return False
    return True


@contextmanager
def stdlib_only() -> Iterator[None]:
    saved = contract._msgspec_decode
    contract._msgspec_decode = None
    try:
        yield
    finally:
        contract._msgspec_decode = saved


def both(raw: bytes, source: str = "hotel") -> tuple[tuple, tuple]:
    new = parse_record(raw, source, ORIGIN)
    with stdlib_only():
        old = parse_record(raw, source, ORIGIN)
    return new, old


def assert_same(raw: bytes, source: str = "hotel") -> tuple:
    new, old = both(raw, source)
    assert same(new, old), (raw[:200], new, old)
    return new


def test_same_tells_types_signs_and_key_order_apart():
    assert not same(1, 1.0) and not same(1, True) and not same(0, False)
    assert not same(0.0, -0.0) and same(float("nan"), float("nan"))
    assert not same({"a": 1, "b": 2}, {"b": 2, "a": 1})
    assert not same({"a": [1]}, {"a": [1.0]}) and not same([1], (1,))
    assert not same(b"x", "x") and same({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]})
    dl = DeadLetter("hotel", "malformed_json", b"{", dict(ORIGIN))
    assert same((None, dl), (None, DeadLetter("hotel", "malformed_json", b"{", dict(ORIGIN))))
    assert not same((None, dl), (None, DeadLetter("hotel", "too_deep", b"{", dict(ORIGIN))))


def test_the_fast_path_is_taken_and_the_switch_turns_it_off(monkeypatch):
    """Otherwise every comparison below would compare the stdlib with itself."""
    calls = []
    real = contract._msgspec_decode
    assert real is not None, "msgspec is a dependency"
    monkeypatch.setattr(contract, "_msgspec_decode", lambda b: calls.append(b) or real(b))
    raw = json.dumps(HOTEL, ensure_ascii=False).encode()
    record, dead = parse_record(raw, "hotel", ORIGIN)
    assert dead is None and calls == [raw]
    with stdlib_only():
        parse_record(raw, "hotel", ORIGIN)
    assert len(calls) == 1
    monkeypatch.setattr(contract.json, "loads", None)  # the fast path alone decodes it
    assert same(parse_record(raw, "hotel", ORIGIN), (record, None))


# --- tricky inputs -------------------------------------------------------------------------
def hotel_with(literal: str) -> bytes:
    """The hotel record with an extra field whose JSON text is ``literal`` (any bytes)."""
    return (json.dumps(HOTEL, ensure_ascii=False)[:-1] + f', "x": {literal}}}').encode()


def nested(depth: int, opener: str = "[") -> str:
    """JSON nested ``depth`` deep in arrays, or in objects (``{"a": {"a": ... 1}}``)."""
    if opener == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


BIG = [str(2**63 - 1), str(2**63), str(2**64 - 1), str(2**64), str(-(2**63)), str(-(2**63) - 1),
       str(-(2**64)), "1" + "0" * 40, "9" * 4300, "-" + "9" * 4300, "9" * 4301, "-" + "9" * 4301]
FLOATS = ["1e400", "-1e400", "1E400", "1e999999999999", "1e-400", "-1e-400", "-0.0", "-0", "0",
          "1.0", "1", "1e2", "1E+2", "1e-2", "0.1", "0.30000000000000004", "5e-324", "2.4e-324",
          "1.7976931348623157e308", "1.7976931348623159e308", "2.2250738585072011e-308",
          "0." + "1" * 5000, "1" + "0" * 400 + ".0", "123456789012345678901234567890.5",
          "9007199254740993", "9007199254740993.0", "1e23", "8.98846567431158e307"]
BAD_NUMBERS = ["NaN", "-NaN", "Infinity", "-Infinity", "nan", "inf", "01", "+1", "1.", ".5",
               "0x10", "1e", "1e+", "--1", "1_000"]
STRINGS = [r'"\ud800"', r'"\udc00"', r'"\ud83d\ude00"', r'"\ude00\ud83d"', r'"\ud800\u0041"',
           r'"\ud800x"', r'"\uD800"', r'"\u0000"', r'"\/"', r'"\x"', r'"\u12"', '"a\tb"',
           '"a\x00b"', '"a\x1fb"', '"a\x7fb"', '"a\u2028b"', '"陈丽"', r'"\u9648\u4e3d"',
           '"' + "x" * 1001 + '"']
OTHER = ["true", "false", "null", "[]", "{}", '{"a": 1, "a": 2}', '{"a": 1, "b": 2, "a": 3}',
         "[1, 2,]", "{'a': 1}", "1 /* c */", nested(63), nested(70), nested(40, "{")]
WHOLE_LINES = [
    b"", b"   ", b"\t\r\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf{}", b"\xef\xbb\xbf" + hotel_with("1"),
    b"\xef\xbb\xbf\xef\xbb\xbf{}", b"{}", b"[]", b"[1, 2]", b'"a string"', b"1", b"1.5", b"null",
    b"true", b"NaN", b"\xff\xfe{", '{"record_id": "陈丽"}'.encode("gbk"), b'{"a": 1} x',
    b'{"a": 1}{"b": 2}', b' \t\r\n{"a": 1} \n', "\u00a0{}".encode(), "\u3000{}".encode(),
    b"\x0c{}", b"\x0b{}", b'{"record_id": "H-1", "event": ', b"{" * 100_000, b"[" * 100_000,
    ("{\"a\":" + "[" * 990 + "]" * 990 + "}").encode(), nested(995).encode(),
    nested(1000, "{").encode(), nested(2000).encode(), b'{"source": "rental"}',
    json.dumps({**HOTEL, "source": "rental"}).encode(), json.dumps(HOTEL).encode(),
    json.dumps(HOTEL, indent=2).encode(), json.dumps(HOTEL, separators=(",", ":")).encode(),
    json.dumps({k: v for k, v in HOTEL.items() if k != "source"}).encode(),
    b'{"record_id": "\\ud800"}', b'{"a": "\\ud83d\\ude00", "b": "\\ud800"}',
    (json.dumps(HOTEL)[:-1] + ', "record_id": "H-2"}').encode(),
]


@pytest.mark.parametrize("literal", BIG + FLOATS + BAD_NUMBERS + STRINGS + OTHER)
@pytest.mark.parametrize("where", ["field", "nested", "top"])
def test_tricky_literal(literal, where):
    if where == "field":
        raw = hotel_with(literal)
    elif where == "nested":
        raw = hotel_with(f'{{"v": [{literal}, {{"w": {literal}}}]}}')
    else:
        raw = literal.encode()
    for source in ("hotel", "person"):
        assert_same(raw, source)


@pytest.mark.parametrize("raw", WHOLE_LINES, ids=lambda r: repr(r[:30]))
def test_tricky_line(raw):
    for source in SOURCES:
        assert_same(raw, source)


@pytest.mark.parametrize("raw, reason", [
    (hotel_with("NaN"), "malformed_json"), (hotel_with("Infinity"), "malformed_json"),
    (hotel_with("9" * 4301), "malformed_json"), (hotel_with(r'"\ud800"'), "encoding"),
    (hotel_with(r'"\ude00\ud83d"'), "encoding"), (hotel_with('"a\x01"'), "malformed_json"),
    (b"[" * 100_000, "too_deep"), (nested(2000).encode(), "too_deep"), (b"[1]", "wrong_type"),
    (b"\xef\xbb\xbf\xef\xbb\xbf{}", "malformed_json"), ("\u00a0{}".encode(), "malformed_json"),
])
def test_reasons_where_msgspec_fails_are_the_stdlib_ones(raw, reason):
    assert contract._decode_fast(raw) is None  # the stdlib path decides these
    assert assert_same(raw)[1].reason == reason


@pytest.mark.parametrize("literal, value", [
    ("1e400", math.inf), ("-1e400", -math.inf), (str(2**64), 2**64), ("-0.0", -0.0),
    ("1.0", 1.0), ("1", 1), ("-0", 0), ("1e2", 100.0), ("9" * 4300, int("9" * 4300)),
])
def test_values_reach_the_record_with_the_stdlib_type(literal, value):
    record, dead = assert_same(hotel_with(literal))
    assert dead is None and same(record["x"], value)


def test_duplicate_keys_last_value_wins_at_the_first_position():
    raw = hotel_with('{"p": 1, "q": 2, "p": [3]}, "record_id": "H-2", "x": {"p": 1, "q": 2, '
                     '"p": 3}, "y": 0')
    record, dead = assert_same(raw)
    assert dead is None and record["record_id"] == "H-2"
    assert list(record) == [*HOTEL, "x", "y"] and list(record["x"].items()) == [("p", 3), ("q", 2)]


def test_nesting_at_the_bound_takes_the_fast_path_and_above_it_does_not():
    at = hotel_with(nested(contract._FAST_MAX_OPENERS - 2))  # the record has two "{" already
    assert contract._decode_fast(at) is not None
    assert contract._decode_fast(hotel_with(nested(contract._FAST_MAX_OPENERS))) is None
    assert_same(at)


def test_nesting_just_beyond_the_stdlib_recursion_limit():
    """msgspec, a C call, nests a few levels deeper than ``json.loads`` (three Python frames
    deep when it starts) from the same stack: the bound on "[" and "{" must send such lines to
    the stdlib, which reports ``too_deep``. The limit depends on the stack, so find it here."""
    def parses(depth: int) -> bool:
        with stdlib_only():
            return parse_record(nested(depth).encode(), "hotel", ORIGIN)[1].reason != "too_deep"

    lo, hi = 1, sys.getrecursionlimit() + 10
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if parses(mid) else (lo, mid - 1)
    for depth in range(lo - 2, lo + 8):
        for opener in "[{":
            assert_same(nested(depth, opener).encode())
            assert_same(hotel_with(nested(depth, opener)))


@pytest.mark.parametrize("limit", [640, 4300, 0])
def test_integer_digit_limit_is_honoured_whatever_it_is(limit):
    saved = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(limit)
    try:
        for digits in (639, 640, 641, 4299, 4300, 4301, 5000):
            for sign in ("", "-"):
                assert_same(hotel_with(sign + "7" * digits))
    finally:
        sys.set_int_max_str_digits(saved)


def test_floats_round_like_the_stdlib_on_exact_halfway_strings():
    rng = random.Random(3)
    with localcontext() as ctx:
        ctx.prec = 1200
        for _ in range(400):
            x = rng.choice([rng.uniform(-1e6, 1e6), rng.uniform(-1, 1) * 10.0 ** rng.randint(
                -300, 300), math.ldexp(rng.random(), rng.randint(-1074, 1023))])
            mid = (Decimal(x) + Decimal(math.nextafter(x, math.inf))) / 2
            for text in (repr(x), format(mid, "e"), format(mid, "f")[:900]):
                assert_same(hotel_with(text))


# --- ordinary records of every source, and their mutations ---------------------------------
@pytest.fixture(scope="module")
def sim_lines() -> list[tuple[bytes, str]]:
    from reglink.sim.simulate import _record, generate

    world, _ = generate(persons=300, days=20, start="2026-03-01", seed=13)
    recs = [_record(r) for r in [*world.watch, *world.recs]]
    assert {r["source"] for r in recs} == set(SOURCES)
    return [(json.dumps(r, ensure_ascii=False).encode(), r["source"]) for r in recs]


def test_simulated_records_of_every_source(sim_lines):
    valid = 0
    for raw, source in sim_lines:
        assert contract._decode_fast(raw) is not None
        valid += assert_same(raw, source)[1] is None
        assert_same(raw, "hotel" if source != "hotel" else "job")  # source_mismatch
        assert_same(b"\xef\xbb\xbf" + raw, source)
        assert_same(json.dumps(json.loads(raw)).encode(), source)  # \\u escapes
    assert valid > len(sim_lines) * 0.9


def test_fuzzkit_mutations_of_simulated_records(sim_lines):
    rng = random.Random(5)
    required = required_fields()
    recs = [json.loads(raw) for raw, source in sim_lines if source != "watchlist"]
    for _ in range(1500):
        assert_same(mutate(rng.choice(recs), rng, required).raw, rng.choice(SOURCES))


def test_byte_mutations_of_simulated_records(sim_lines):
    """Single-character edits with JSON's own alphabet: where a faster parser is most likely to
    be laxer (or stricter) than the stdlib."""
    rng = random.Random(9)
    alphabet = list('{}[]:,"\\ 0123456789.eE+-tfnulrsaINy\t\n\x00\x7f') + ["\\u", "\\ud800"]
    for _ in range(3000):
        raw, source = rng.choice(sim_lines)
        text = raw.decode()
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(text))
            op = rng.randrange(3)
            if op == 0:
                text = text[:i] + text[i + 1:]
            elif op == 1:
                text = text[:i] + rng.choice(alphabet) + text[i:]
            else:
                text = text[:i] + rng.choice(alphabet) + text[i + 1:]
        assert_same(text.encode("utf-8", "surrogatepass"), source)


# --- properties ------------------------------------------------------------------------------
_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.text(st.characters(codec="utf-8"), max_size=4),
    st.sampled_from(["\ud800", "\udfff", "x\ud83dy", "陈丽", "2026-03-04", "440305"]),
)
_value = st.recursive(_leaf, lambda c: st.one_of(
    st.lists(c, max_size=4), st.dictionaries(st.text(max_size=4), c, max_size=4)), max_leaves=12)


@given(extra=st.dictionaries(st.sampled_from(["x", "person", "record_id", "time", "source",
                                              "aliases", "n"]), _value, max_size=4),
       source=st.sampled_from(SOURCES), ensure_ascii=st.booleans(),
       indent=st.sampled_from([None, 0, 2]))
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_records_decode_the_same(extra, source, ensure_ascii, indent):
    obj = {**HOTEL, **extra}
    text = json.dumps(obj, ensure_ascii=ensure_ascii, indent=indent)  # NaN, Infinity too
    assert_same(text.encode("utf-8", "surrogatepass"), source)


@given(value=_value)
@settings(max_examples=400, deadline=None)
def test_generated_values_at_the_top_level_decode_the_same(value):
    assert_same(json.dumps(value).encode(), "person")


@given(st.binary(max_size=200))
@settings(max_examples=400, deadline=None)
def test_arbitrary_bytes_decode_the_same(raw):
    assert_same(raw, "watchlist")
