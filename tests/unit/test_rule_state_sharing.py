"""AlertRule.load/store: a state value one rule decoded or stored is handed to the next rule
of the same record as the same object, and never outlives the record or a rollback."""

from __future__ import annotations

from corekit import HOTEL, core_settings

from reglink.core.pipeline import Pipeline
from reglink.stores.kv import MemoryKV

KEY = "s:person-1"


class Counting:
    """A decoder that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, raw: str | None) -> list[str]:
        self.calls += 1
        return [raw or ""]


def _pipeline() -> Pipeline:
    return Pipeline(core_settings(), MemoryKV())


def test_a_stored_value_is_shared_with_the_next_rule_without_decoding() -> None:
    pipe = _pipeline()
    writer, reader = pipe.rules[0], pipe.rules[-1]
    decode = Counting()
    value = ["written"]
    writer.store(KEY, value, lambda v: v[0])
    assert pipe.kv.get(KEY) == "written"
    assert reader.load(KEY, decode) is value
    assert decode.calls == 0


def test_a_value_read_twice_is_decoded_once() -> None:
    pipe = _pipeline()
    pipe.kv.set(KEY, "stored")
    decode = Counting()
    first = pipe.rules[0].load(KEY, decode)
    assert pipe.rules[1].load(KEY, decode) is first
    assert first == ["stored"] and decode.calls == 1


def test_a_value_written_by_other_code_is_decoded_afresh() -> None:
    pipe = _pipeline()
    rule = pipe.rules[0]
    rule.store(KEY, ["mine"], lambda v: v[0])
    pipe.kv.set(KEY, "theirs")  # not through store(): the shared value is stale
    assert rule.load(KEY, Counting()) == ["theirs"]


def test_an_absent_value_is_a_fresh_object_each_time() -> None:
    pipe = _pipeline()
    decode = Counting()
    a = pipe.rules[0].load(KEY, decode)
    a.append("changed but not stored")
    assert pipe.rules[1].load(KEY, decode) == [""]
    assert decode.calls == 2


def test_a_rollback_and_the_next_record_forget_the_shared_values() -> None:
    pipe = _pipeline()
    pipe.kv.set(KEY, "stored")
    pipe.kv.commit()
    decode = Counting()
    changed = pipe.rules[0].load(KEY, decode)
    changed.append("changed, then the unit of work failed before storing it")
    pipe.work.undo()
    assert pipe.rules[0].load(KEY, decode) == ["stored"]
    assert decode.calls == 2
    # a record starts: nothing decoded for an earlier record is handed out
    pipe.rules[0].load(KEY, decode)
    assert KEY in pipe.rules[0].ctx.decoded
    pipe.process(dict(HOTEL))
    assert KEY not in pipe.rules[0].ctx.decoded
