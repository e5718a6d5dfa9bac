"""The input contract (docs/contract.md §1) as a pure validation layer.

Used by the connectors (files -> Kafka) and by the stream worker (Kafka -> core). No I/O here:
bytes in, ``(record, None)`` or ``(None, DeadLetter)`` out. Errors are data.

The JSON Schemas in ``reglink/schemas/`` are the published contract. They are compiled once,
lazily, into plain Python closures (:func:`_compile`), because the general-purpose
``jsonschema`` validator is far too slow for the stream (about 3,400 records/s against about
57,000 for parse + validate here, on simulated records). ``tests/unit/test_contract.py`` checks
with Hypothesis that both accept the same objects. The compiler supports
exactly the keywords the schemas use and refuses any other, so a schema edit cannot silently
stop being enforced.

The sources, their schema files and report times come from the registry
(:mod:`reglink.core.sources`). The checks a schema pattern cannot make (a real calendar date, a real
time, a presence period that does not run backwards) are derived from the source's schema and
its presence declaration.

The person block needs a name or an ID number in a known form; its optional fields
(``id_type``, ``id_number``, ``sex``, ``birth_date``, ``phone``) are not checked here beyond
the length of their strings: a value that cannot be read keeps the record, is no matching
evidence and flags it (:mod:`matchers.features`, ``quality_flags`` on the ``linked``
message). The record is published as it came, the raw value included.

A dead-letter reason is ``"<code>"`` or ``"<code>: <field path>"``; the code is one of
:data:`REASON_CODES` and is safe to use as a metric label (no personal data).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urldefrag, urljoin

from reglink.core import sources

try:  # pragma: no cover - exercised by whichever is installed
    import msgspec

    _msgspec_decode: Callable[[bytes], Any] | None = msgspec.json.Decoder().decode
except ImportError:  # pragma: no cover
    _msgspec_decode = None

SCHEMA_VERSION = "v1"
SCHEMA_BASE = f"https://reglink.example/schemas/{SCHEMA_VERSION}/"

SOURCES = sources.NAMES
MAX_STRING = 1000

REASON_CODES = (
    "encoding",  # not UTF-8 (or a lone surrogate escape)
    "empty",  # empty or blank line
    "malformed_json",  # not JSON (also NaN / Infinity, huge integers)
    "malformed_csv",  # a CSV row that does not fit its header
    "too_deep",  # nesting deeper than the parser / validator handles
    "wrong_type",  # not an object, or a field of the wrong JSON type
    "source_mismatch",  # `source` present and not the source being read
    "missing_field",  # a required field absent (or an empty string)
    "too_long",  # a string over 1000 characters, anywhere
    "bad_value",  # not one of the allowed values / not the required shape
    "bad_date",  # unparseable date or time, or a time without an offset
)

_CITY_CODE = re.compile(r"[0-9]{6}")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# The msgspec fast path only takes lines with at most this many "[" and "{" (a bound on the
# nesting): see :func:`_decode_fast`. Records nest two or three deep.
_FAST_MAX_OPENERS = 64


# --- dead letters ------------------------------------------------------------------------
@dataclass
class DeadLetter:
    """A record reglink cannot use: original bytes, why, and where it was read from.

    ``origin`` is ``{"file": path, "line": n}`` or ``{"topic", "partition", "offset"}``.
    """

    source: str | None
    reason: str
    original: bytes
    origin: dict[str, Any] = field(default_factory=dict)

    @property
    def code(self) -> str:
        """The stable short reason code (before the colon): safe as a metric label."""
        return reason_code(self.reason)

    def to_message(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "reason": self.reason,
            "origin": dict(self.origin),
            "original_b64": base64.b64encode(self.original).decode("ascii"),
            "original_text": self.original.decode("utf-8", errors="replace"),
            "schema_version": SCHEMA_VERSION,
        }

    @classmethod
    def from_message(cls, msg: dict[str, Any]) -> DeadLetter:
        return cls(msg.get("source"), msg["reason"], base64.b64decode(msg["original_b64"]),
                   dict(msg.get("origin") or {}))


def reason_code(reason: str) -> str:
    return reason.split(":", 1)[0]


# --- schema loading and compiling --------------------------------------------------------
def schema_names() -> list[str]:
    """File names of every published schema (``hotel.json``, ``deadletter.json``, ...)."""
    return sorted(p.name for p in resources.files("reglink").joinpath("schemas").iterdir()
                  if p.name.endswith(".json"))


@cache
def _package_schemas() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    base = resources.files("reglink").joinpath("schemas")
    for name in schema_names():
        schema = json.loads(base.joinpath(name).read_text(encoding="utf-8"))
        out[schema["$id"]] = schema
    return out


@cache
def _registry_schemas(registry: sources.Registry) -> dict[str, dict[str, Any]]:
    out = dict(_package_schemas())
    for s in registry:
        if s.schema_dir is not None:
            schema = json.loads((s.schema_dir / s.schema_file).read_text(encoding="utf-8"))
            out[schema["$id"]] = schema
        if f"{SCHEMA_BASE}{s.schema_file}" not in out:
            raise ValueError(f"source {s.name!r} has no schema {SCHEMA_BASE}{s.schema_file}")
    return out


def load_schemas() -> dict[str, dict[str, Any]]:
    """All schemas keyed by ``$id``: reglink/schemas plus any registered source's schema
    kept elsewhere. Read once per registry."""
    return _registry_schemas(sources.current())


def schema_for(name: str) -> dict[str, Any]:
    """The schema document for ``name`` (a source, ``person-block``, ``deadletter``, ...)."""
    return load_schemas()[f"{SCHEMA_BASE}{name}.json"]


# A compiled check returns None when the value is valid, else an error list
# ``[code, key_n, ..., key_1]`` (the path is appended while unwinding: no cost when valid).
Check = Callable[[Any], "list[str] | None"]

_ANNOTATIONS = frozenset({
    "$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples",
    "format", "contentEncoding", "contentMediaType", "x-reason",
})

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
}


def _json_equal(a: Any, b: Any) -> bool:
    same: bool
    if isinstance(a, bool) or isinstance(b, bool):
        same = type(a) is type(b) and a == b
    else:
        same = a == b
    return same


class _Compiler:
    def __init__(self, schemas: dict[str, dict[str, Any]]):
        self.schemas = schemas
        self.by_uri: dict[str, Check] = {}

    def resolve(self, ref: str, base: str) -> tuple[dict[str, Any], str]:
        uri, frag = urldefrag(urljoin(base, ref))
        node: Any = self.schemas[uri]
        for part in [p for p in frag.split("/") if p]:
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node, uri

    def ref(self, ref: str, base: str) -> Check:
        key = urljoin(base, ref)
        if key not in self.by_uri:  # a cell first, so recursive refs terminate
            cell: list[Check] = []
            self.by_uri[key] = lambda v: cell[0](v)
            node, uri = self.resolve(ref, base)
            compiled = self.compile(node, uri)
            cell.append(compiled)
            self.by_uri[key] = compiled
        return self.by_uri[key]

    def compile(self, s: dict[str, Any] | bool, base: str) -> Check:  # noqa: C901
        if s is True:
            return lambda v: None
        if s is False:
            return lambda v: ["bad_value"]
        base = s.get("$id", base)
        unknown = set(s) - _ANNOTATIONS - {
            "$ref", "type", "const", "enum", "minLength", "maxLength", "pattern", "minimum",
            "maximum", "required", "properties", "additionalProperties", "items", "allOf",
            "anyOf", "oneOf", "if", "then", "else",
        }
        if unknown:
            raise ValueError(f"schema keyword(s) not supported by reglink.core.contract: {unknown}")
        checks: list[Check] = []
        if "$ref" in s:
            checks.append(self.ref(s["$ref"], base))
        if "type" in s:
            names = [s["type"]] if isinstance(s["type"], str) else list(s["type"])
            preds = [_JSON_TYPES[n] for n in names]
            if names == ["string"]:
                checks.append(lambda v: None if isinstance(v, str) else ["wrong_type"])
            elif names == ["object"]:
                checks.append(lambda v: None if isinstance(v, dict) else ["wrong_type"])
            else:
                checks.append(lambda v: None if any(p(v) for p in preds) else ["wrong_type"])
        if "const" in s:
            const = s["const"]
            checks.append(lambda v: None if _json_equal(v, const) else ["bad_value"])
        if "enum" in s:
            enum = list(s["enum"])
            if all(isinstance(e, str) for e in enum):
                enum_set = frozenset(enum)
                checks.append(lambda v: None if isinstance(v, str) and v in enum_set
                              or any(_json_equal(v, e) for e in enum) else ["bad_value"])
            else:
                checks.append(lambda v: None if any(_json_equal(v, e) for e in enum)
                              else ["bad_value"])
        if "minLength" in s:
            lo = s["minLength"]
            checks.append(lambda v: ["missing_field"] if isinstance(v, str) and len(v) < lo
                          else None)
        if "maxLength" in s:
            hi = s["maxLength"]
            checks.append(lambda v: ["too_long"] if isinstance(v, str) and len(v) > hi else None)
        if "pattern" in s:
            rx = re.compile(s["pattern"])
            code = s.get("x-reason", "bad_value")
            checks.append(lambda v: [code] if isinstance(v, str) and not rx.search(v) else None)
        if "minimum" in s or "maximum" in s:
            lo, hi = s.get("minimum"), s.get("maximum")

            def bounds(v: Any) -> list[str] | None:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    return None
                if (lo is not None and v < lo) or (hi is not None and v > hi):
                    return ["bad_value"]
                return None

            checks.append(bounds)
        if "required" in s:
            req = tuple(s["required"])

            def required(v: Any) -> list[str] | None:
                if isinstance(v, dict):
                    for k in req:
                        if k not in v:
                            return ["missing_field", k]
                return None

            checks.append(required)
        if "properties" in s or "additionalProperties" in s:
            props = {k: self.compile(sub, base) for k, sub in s.get("properties", {}).items()}
            prop_items = tuple(props.items())
            extra = s.get("additionalProperties", True)
            extra_check = None if extra is True else self.compile(extra, base)

            def properties(v: Any) -> list[str] | None:
                if not isinstance(v, dict):
                    return None
                for k, chk in prop_items:
                    if k in v:
                        err = chk(v[k])
                        if err is not None:
                            err.append(k)
                            return err
                if extra_check is not None and len(v) > 0:
                    for k, item in v.items():
                        if k not in props:
                            err = extra_check(item)
                            if err is not None:
                                err.append(k)
                                return err
                return None

            checks.append(properties)
        if "items" in s:
            item_check = self.compile(s["items"], base)

            def items(v: Any) -> list[str] | None:
                if isinstance(v, list):
                    for i, item in enumerate(v):
                        err = item_check(item)
                        if err is not None:
                            err.append(str(i))
                            return err
                return None

            checks.append(items)
        for sub in s.get("allOf", ()):
            checks.append(self.compile(sub, base))
        if "anyOf" in s:
            branches = [self.compile(sub, base) for sub in s["anyOf"]]

            def any_of(v: Any) -> list[str] | None:
                first = None
                for b in branches:
                    err = b(v)
                    if err is None:
                        return None
                    first = first or err
                return first

            checks.append(any_of)
        if "oneOf" in s:
            branches = [self.compile(sub, base) for sub in s["oneOf"]]

            def one_of(v: Any) -> list[str] | None:
                errs = [b(v) for b in branches]
                ok = sum(e is None for e in errs)
                if ok == 1:
                    return None
                return next(e for e in errs if e is not None) if ok == 0 else ["bad_value"]

            checks.append(one_of)
        if "if" in s:
            cond = self.compile(s["if"], base)
            then = self.compile(s.get("then", True), base)
            other = self.compile(s.get("else", True), base)
            checks.append(lambda v: then(v) if cond(v) is None else other(v))

        if not checks:
            return lambda v: None
        if len(checks) == 1:
            return checks[0]
        seq = tuple(checks)

        def all_checks(v: Any) -> list[str] | None:
            for c in seq:
                err = c(v)
                if err is not None:
                    return err
            return None

        return all_checks


@dataclass(frozen=True)
class _Semantic:
    """A source's checks beyond its schema, on top-level fields."""

    times: tuple[str, ...]  # fields of common.json's dateTime: a real time with an offset
    dates: tuple[str, ...]  # fields of common.json's date: a real calendar date
    period: tuple[str, str] | None  # (first, last) date of its presence: last >= first


_TIME_REF = f"{SCHEMA_BASE}common.json#/$defs/dateTime"
_DATE_REF = f"{SCHEMA_BASE}common.json#/$defs/date"


def _period(presence: sources.Presence | None) -> tuple[str, str] | None:
    if isinstance(presence, sources.DateInterval) and presence.end is not None:
        return presence.start, presence.end
    if isinstance(presence, sources.Registration):
        return presence.valid_from, presence.valid_until
    return None


@cache
def _compiled(registry: sources.Registry) -> tuple[dict[str, Check], dict[str, _Semantic]]:
    """Compiled validator and semantic checks per source of ``registry``, built once."""
    schemas = _registry_schemas(registry)
    compiler = _Compiler(schemas)
    checks: dict[str, Check] = {}
    semantic: dict[str, _Semantic] = {}
    for s in registry:
        checks[s.name] = compiler.ref(s.schema_file, SCHEMA_BASE)
        schema = schemas[f"{SCHEMA_BASE}{s.schema_file}"]
        refs = {k: urljoin(schema["$id"], sub["$ref"])
                for k, sub in schema.get("properties", {}).items() if "$ref" in sub}
        semantic[s.name] = _Semantic(
            times=tuple(k for k, ref in refs.items() if ref == _TIME_REF),
            dates=tuple(k for k, ref in refs.items() if ref == _DATE_REF),
            period=_period(s.presence))
    return checks, semantic


def _validators() -> dict[str, Check]:
    """Compiled validator per source of the registry in force."""
    return _compiled(sources.current())[0]


def compiled_validator(name: str) -> Check:
    """A compiled check for any published schema (used for output messages in tests)."""
    compiler = _Compiler(load_schemas())
    return compiler.ref(f"{name}.json", SCHEMA_BASE)


def error_reason(err: list[str]) -> str:
    code, path = err[0], ".".join(reversed(err[1:]))
    return f"{code}: {path}" if path else code


# --- semantic checks ---------------------------------------------------------------------
def _parse_time(value: str) -> datetime | None:
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo is not None and t.utcoffset() is not None else None


def _parse_date(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        return None


def _semantic(obj: dict[str, Any], checks: _Semantic) -> str | None:
    for f in checks.times:
        if f in obj and _parse_time(obj[f]) is None:
            return f"bad_date: {f}"
    dates = {}
    for f in checks.dates:
        if f in obj:
            d = _parse_date(obj[f])
            if d is None:
                return f"bad_date: {f}"
            dates[f] = d
    pair = checks.period
    if pair and pair[0] in dates and pair[1] in dates and dates[pair[1]] < dates[pair[0]]:
        return f"bad_value: {pair[1]}"
    cc = obj.get("city_code")
    if cc is not None and not _CITY_CODE.fullmatch(cc):
        return "bad_value: city_code"
    return None


# --- public API --------------------------------------------------------------------------
def validate_record(obj: dict[str, Any], source: str) -> str | None:
    """The reason ``obj`` breaks the contract for ``source``, or None when it is valid.

    ``obj`` must already carry ``source`` (:func:`parse_record` sets it when absent).
    A bad optional person field is valid here: it is flagged when the record is linked.
    """
    checks, semantic = _compiled(sources.current())
    check = checks.get(source)
    if check is None:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(checks)}")
    if not isinstance(obj, dict):
        return "wrong_type"
    if obj.get("source", source) != source:
        return "source_mismatch: source"
    try:
        err = check(obj)
    except RecursionError:
        return "too_deep"
    if err is not None:
        return error_reason(err)
    return _semantic(obj, semantic[source])


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _decode_fast(raw: bytes) -> dict[str, Any] | None:
    """msgspec's decode of ``raw`` when it is an object, else None: then the caller decodes with
    ``json.loads`` exactly as before, which decides every dead-letter reason.

    ``raw`` must be valid UTF-8 (the caller has decoded it). msgspec decodes a simulated record
    in about 2.7 us against 6.6 us for ``json.loads`` and, where it succeeds, gives the same
    values, types and key order (the last of duplicate keys wins, at the first one's place;
    integers of any size up to the interpreter's digit limit are ``int``; floats are correctly
    rounded). What the stdlib treats specially makes msgspec fail, so ``json.loads`` decides
    it: NaN / Infinity, a lone surrogate escape (the stdlib accepts it and :func:`parse_record`
    then reports ``encoding``), a float beyond the double range (the stdlib gives ``inf``), an
    integer over the digit limit. A non-object goes there too. The one thing msgspec accepts
    that the stdlib may not is nesting a few levels deeper from the same stack: ``json.loads``
    is three Python frames deep when it starts, msgspec is C. Hence the bound on ``[`` and
    ``{``: a line that could nest deeper goes to the stdlib, which reports ``too_deep`` as before.
    With ``_msgspec_decode`` set to None, :func:`parse_record` is the stdlib-only path again
    (``tests/unit/test_contract_decode.py`` and ``benchmarks.parse_decode`` compare the two).
    """
    if _msgspec_decode is None or raw.count(b"[") + raw.count(b"{") > _FAST_MAX_OPENERS:
        return None
    if raw.startswith(b"\xef\xbb\xbf"):  # the BOM parse_record strips from the text
        raw = raw[3:]
    try:
        obj = _msgspec_decode(raw)
    except Exception:  # any failure: the stdlib path decides, exactly as before
        return None
    return obj if type(obj) is dict else None


def parse_record(
    raw: bytes, source: str, origin: dict[str, Any], *, original: bytes | None = None
) -> tuple[dict[str, Any] | None, DeadLetter | None]:
    """Decode, parse and validate one input line. Exactly one side of the pair is set.

    ``original`` is what a dead letter keeps when ``raw`` is not the bytes as read (a CSV row
    converted to JSON); it defaults to ``raw``.
    """
    if source not in sources.current():
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    keep = raw if original is None else original

    def dead(reason: str) -> tuple[None, DeadLetter]:
        return None, DeadLetter(source, reason, bytes(keep), dict(origin))

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return dead("encoding")
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        return dead("empty")
    obj: Any = _decode_fast(raw)  # json.loads below may give any JSON value
    if obj is None:
        try:
            obj = json.loads(text, parse_constant=_reject_constant)
        except RecursionError:
            return dead("too_deep")
        except ValueError:  # JSONDecodeError, NaN/Infinity, integer too long
            return dead("malformed_json")
        if not isinstance(obj, dict):
            return dead("wrong_type")
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        try:  # a lone surrogate cannot be re-encoded as UTF-8 downstream
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return dead("encoding")
        except RecursionError:
            return dead("too_deep")
    if "source" not in obj:
        obj["source"] = source
    reason = validate_record(obj, source)
    if reason is not None:
        return dead(reason)
    return obj, None


def report_time(record: dict[str, Any]) -> datetime | None:
    """The aware time at which the source learned of ``record``; None for a source without a
    report time (watchlist, person)."""
    decl = sources.current().get(record.get("source", ""))
    name = decl.report_time if decl is not None else None
    if name is None or name not in record:
        return None
    return _parse_time(record[name])


def record_key(record: dict[str, Any]) -> str:
    """Stable key ``"<source>:<record_id>"`` (``watch_id`` for watchlist entries)."""
    rid = record.get("record_id")
    if rid is None:
        rid = record.get("watch_id")
    return f"{record.get('source')}:{rid}"


def encode_record(record: dict[str, Any]) -> bytes:
    """Canonical compact UTF-8 JSON for a validated record (what the raw topics carry)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
