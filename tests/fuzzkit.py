"""A seeded, contract-aware mutation fuzzer: valid records in, bad ones out
(docs/contract.md §1.4), each with what must become of it: dead-lettered with a reason code, or
linked with a quality flag (a bad optional person field) or with none (an ID number, no name).
"""

from __future__ import annotations

import json
import random
from typing import NamedTuple

from reglink.core.contract import load_schemas

BAD_TIMES = ["yesterday", "2026-13-01T00:00:00+08:00", "2026-03-02 21:14", "2026-03-02T25:00:00Z",
             "2026-03-02T21:14:00", "", "20260302", "2026-02-30T10:00:00+08:00"]
BAD_DATES = ["2026-02-30", "03/04/2026", "2026-3-4", "tomorrow", "2026-03-04T00:00:00+08:00", ""]
TIME_FIELDS = {"time", "registered_at", "posted_at"}
DATE_FIELDS = {"lease_start", "lease_end", "valid_from", "valid_until", "start_date"}
# Values of an optional person field that cannot be read, per flag: the record is kept.
BAD_OPTIONAL = {
    "bad_birth_date": ("person.birth_date", ["19450493", "1988-02-30", "15/03/1988", "1988-3-15",
                                             "unknown", "不详", 19880315, ["1988"]]),
    "bad_sex": ("person.sex", ["X", "男性", "1", "unknown", 1, True]),
    "bad_phone": ("person.phone", ["12", "无", "n/a", "+86-", 13800138000, {"mobile": "1"}]),
    "bad_id_number": ("person.id_number", ["不详", "无", "N/A", "?", "身份证", 110101, [1]]),
    "bad_id_type": ("person.id_type", ["身份证", "ID", "resident", 1]),
}
# The flags a simulated record may carry already (its ID's own), besides the one added.
ID_FLAGS = frozenset({"bad_checksum", "upgraded_15"})


class Mutation(NamedTuple):
    """One bad line (no newline inside) and its fate: ``dead`` is the reason code it must be
    dead-lettered with; when None it must be linked, with ``flag`` among its quality flags
    (None: no flag of its own) and, besides it, at most :data:`ID_FLAGS`. A kept record gets
    a record_id of its own, so that its linked message can be told from the others."""

    raw: bytes
    dead: str | None
    flag: str | None = None


def required_fields() -> dict[str, list[str]]:
    out = {}
    for sid, schema in load_schemas().items():
        name = sid.rsplit("/", 1)[-1].removesuffix(".json")
        if name in ("hotel", "rental", "residence", "job", "person"):
            out[name] = [f for f in schema.get("required", []) if f != "source"]
    return out


def mutate(record: dict, rng: random.Random, required: dict[str, list[str]]) -> Mutation:
    """One bad line and its fate (:class:`Mutation`)."""
    r = json.loads(json.dumps(record))
    fields = required[r["source"]]
    kind = rng.choice(["drop", "drop_name", "type", "time", "date", "long", "encoding",
                       "truncate", "not_object", "empty", "binary", "enum", "optional",
                       "optional", "id_only"])
    if kind == "date" and not any(f in r for f in DATE_FIELDS):
        kind = "time" if any(f in r for f in TIME_FIELDS) else "drop"
    if kind == "time" and not any(f in r for f in TIME_FIELDS):
        kind = "drop"
    if kind == "enum" and r["source"] != "hotel":
        kind = "type"
    if kind == "id_only" and not r["person"].get("id_number"):
        kind = "drop_name"
    if kind == "drop":
        del r[rng.choice(fields)]
        return Mutation(_dump(r), "missing_field")
    if kind == "drop_name":  # neither a name nor a usable ID number
        person = r["person"]
        person.pop("name", None)
        person.pop("id_number", None)
        if rng.random() < 0.5:
            person["id_number"] = rng.choice(BAD_OPTIONAL["bad_id_number"][1])
        if rng.random() < 0.3:
            person["name"] = rng.choice(["", "  ", "\u3000"])
        return Mutation(_dump(r), "missing_field")
    if kind == "id_only":  # an ID number and no name: kept, linked on the ID
        if rng.random() < 0.5:
            del r["person"]["name"]
        else:
            r["person"]["name"] = ""
        return Mutation(_dump(_own_id(r, rng)), None)
    if kind == "optional":
        flag = rng.choice(sorted(BAD_OPTIONAL))
        path, values = BAD_OPTIONAL[flag]
        r["person"][path.split(".")[1]] = rng.choice(values)
        return Mutation(_dump(_own_id(r, rng)), None, flag)
    if kind == "type":
        f = rng.choice(fields)
        r[f] = rng.choice([12345, 1.5, True, ["x"], {"a": 1}] if f != "person" else
                          [12345, "a string", ["x"], True])
        return Mutation(_dump(r), "wrong_type")
    if kind == "time":
        r[rng.choice([f for f in TIME_FIELDS if f in r])] = rng.choice(BAD_TIMES)
        return Mutation(_dump(r), "bad_date")
    if kind == "date":
        r[rng.choice([f for f in DATE_FIELDS if f in r])] = rng.choice(BAD_DATES)
        return Mutation(_dump(r), "bad_date")
    if kind == "long":
        target = rng.choice(["name", "birth_date", "record_id",
                             "city_code" if "city_code" in r else "record_id"])
        text = "長" * rng.randint(1001, 3000)
        if target in ("name", "birth_date"):
            r["person"][target] = text
        else:
            r[target] = text
        return Mutation(_dump(r), "too_long")
    if kind == "encoding":
        # GBK bytes; a name ending in 张 (GBK d5 c5) can never be read as UTF-8. (Some GBK
        # strings happen to be valid UTF-8 mojibake: no validator can tell those apart.)
        r["person"]["name"] = (r["person"].get("name") or "王") + "张"
        return Mutation(json.dumps(r, ensure_ascii=False).encode("gbk", "replace"), "encoding")
    if kind == "truncate":  # cut between characters, so it is bad JSON, not bad UTF-8
        text = json.dumps(r, ensure_ascii=False)
        return Mutation(text[: rng.randint(1, len(text) - 2)].encode("utf-8"), "malformed_json")
    if kind == "not_object":
        return Mutation(rng.choice([b"[1, 2, 3]", b"42", b'"a string"', b"null", b"true"]),
                        "wrong_type")
    if kind == "empty":
        return Mutation(rng.choice([b"", b"   ", b"\t"]), "empty")
    if kind == "enum":
        r["event"] = rng.choice(["checkin", "CHECK_IN", "arrival", ""])
        return Mutation(_dump(r), "bad_value")
    # binary: random bytes, never a newline, never valid UTF-8 JSON
    return Mutation(b"\xff" + bytes(rng.choice([b for b in range(256) if b != 10])
                                    for _ in range(rng.randint(1, 200))), "encoding")


def _own_id(r: dict, rng: random.Random) -> dict:
    key = "watch_id" if r["source"] == "watchlist" else "record_id"
    r[key] = f"{r[key]}~fuzz-{rng.getrandbits(48):012x}"
    return r


def _dump(r: dict) -> bytes:
    return json.dumps(r, ensure_ascii=False).encode("utf-8")
