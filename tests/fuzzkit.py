"""A seeded, contract-aware mutation fuzzer: valid records in, records the contract must
reject out (docs/contract.md §1), each with the reason code it must be dead-lettered with."""

from __future__ import annotations

import json
import random

from reglink.core.contract import load_schemas

BAD_TIMES = ["yesterday", "2026-13-01T00:00:00+08:00", "2026-03-02 21:14", "2026-03-02T25:00:00Z",
             "2026-03-02T21:14:00", "", "20260302", "2026-02-30T10:00:00+08:00"]
BAD_DATES = ["2026-02-30", "03/04/2026", "2026-3-4", "tomorrow", "2026-03-04T00:00:00+08:00", ""]
TIME_FIELDS = {"time", "registered_at", "posted_at"}
DATE_FIELDS = {"lease_start", "lease_end", "valid_from", "valid_until", "start_date"}


def required_fields() -> dict[str, list[str]]:
    out = {}
    for sid, schema in load_schemas().items():
        name = sid.rsplit("/", 1)[-1].removesuffix(".json")
        if name in ("hotel", "rental", "residence", "job", "person"):
            out[name] = [f for f in schema.get("required", []) if f != "source"]
    return out


def mutate(record: dict, rng: random.Random, required: dict[str, list[str]]) -> tuple[bytes, str]:
    """One bad line (no newline inside) and the reason code it must get."""
    r = json.loads(json.dumps(record))
    fields = required[r["source"]]
    kind = rng.choice(["drop", "drop_name", "type", "time", "date", "long", "encoding",
                       "truncate", "not_object", "empty", "binary", "enum"])
    if kind == "date" and not any(f in r for f in DATE_FIELDS):
        kind = "time" if any(f in r for f in TIME_FIELDS) else "drop"
    if kind == "time" and not any(f in r for f in TIME_FIELDS):
        kind = "drop"
    if kind == "enum" and r["source"] != "hotel":
        kind = "type"
    if kind == "drop":
        del r[rng.choice(fields)]
        return _dump(r), "missing_field"
    if kind == "drop_name":
        r["person"].pop("name", None)
        return _dump(r), "missing_field"
    if kind == "type":
        f = rng.choice(fields)
        r[f] = rng.choice([12345, 1.5, True, ["x"], {"a": 1}] if f != "person" else
                          [12345, "a string", ["x"], True])
        return _dump(r), "wrong_type"
    if kind == "time":
        r[rng.choice([f for f in TIME_FIELDS if f in r])] = rng.choice(BAD_TIMES)
        return _dump(r), "bad_date"
    if kind == "date":
        r[rng.choice([f for f in DATE_FIELDS if f in r])] = rng.choice(BAD_DATES)
        return _dump(r), "bad_date"
    if kind == "long":
        target = rng.choice(["name", "record_id", "city_code" if "city_code" in r else "record_id"])
        text = "長" * rng.randint(1001, 3000)
        if target == "name":
            r["person"]["name"] = text
        else:
            r[target] = text
        return _dump(r), "too_long"
    if kind == "encoding":
        # GBK bytes; a name ending in 张 (GBK d5 c5) can never be read as UTF-8. (Some GBK
        # strings happen to be valid UTF-8 mojibake: no validator can tell those apart.)
        r["person"]["name"] = (r["person"].get("name") or "王") + "张"
        return json.dumps(r, ensure_ascii=False).encode("gbk", "replace"), "encoding"
    if kind == "truncate":  # cut between characters, so it is bad JSON, not bad UTF-8
        text = json.dumps(r, ensure_ascii=False)
        return text[: rng.randint(1, len(text) - 2)].encode("utf-8"), "malformed_json"
    if kind == "not_object":
        return rng.choice([b"[1, 2, 3]", b"42", b'"a string"', b"null", b"true"]), "wrong_type"
    if kind == "empty":
        return rng.choice([b"", b"   ", b"\t"]), "empty"
    if kind == "enum":
        r["event"] = rng.choice(["checkin", "CHECK_IN", "arrival", ""])
        return _dump(r), "bad_value"
    # binary: random bytes, never a newline, never valid UTF-8 JSON
    return b"\xff" + bytes(rng.choice([b for b in range(256) if b != 10])
                           for _ in range(rng.randint(1, 200))), "encoding"


def _dump(r: dict) -> bytes:
    return json.dumps(r, ensure_ascii=False).encode("utf-8")
