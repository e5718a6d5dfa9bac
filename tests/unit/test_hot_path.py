"""The replay hot path's shortcuts give the answers of the plain code they replace."""

from __future__ import annotations

import json

import pytest

from matchers.compare import FSComparator
from matchers.features import person_record
from matchers.pseudo import Pseudonymiser
from matchers.types import Identity
from reglink.core.contract import parse_record
from reglink.replay import _source_of, parse_line
from reglink.stores.kv import MemoryKV, TxKV

ORIGIN = {"file": "f", "line": 1}
GOOD = {"source": "person", "record_id": "R1", "person": {"name": "王辉"}}


@pytest.mark.parametrize("raw", [
    json.dumps(GOOD, ensure_ascii=False).encode(),
    json.dumps(GOOD).encode(),  # \\u escapes: slow path
    b'{"source": "person", "record_id": "R1", "person": {"name": "x"}, "source": "hotel"}',
    b'{"source": "hotel", "record_id": "R1"',  # malformed: dead letter under the default
    b'{"source": "nope", "record_id": "R1"}',
    b'{"source":"person","record_id":"R2","person":{"name":"LI Wei"}}',
    b'  {"source": "person"}',
    b"",
])
@pytest.mark.parametrize("default", [None, "hotel"])
def test_parse_line_matches_parse_record_with_source_of(raw, default):
    plain = parse_record(raw, _source_of(raw, default), ORIGIN)
    fast = parse_line(raw, default, ORIGIN)
    assert (fast[0], fast[1] and fast[1].to_message()) == \
        (plain[0], plain[1] and plain[1].to_message())


def _records():
    pseudo = Pseudonymiser("k")
    rows = [
        {"name": "王辉", "id_number": "33010619891011707X", "sex": "M", "birth_date": "1989-10-11"},
        {"name": "王辉", "birth_date": "1989-11-10", "sex": "M"},
        {"name": "王晖", "birth_date": "1989-10-11", "phone": "13800000000"},
        {"name": "WANG Hui", "birth_date": "1989-10-12"},
        {"name": "李伟", "birth_date": "1990-01-01", "sex": "F"},
        {"name": "王辉", "id_number": "330106198910117071"},
        {"name": "王辉", "address": "1 Main St"},
    ]
    return [person_record({"source": "person", "person": p}, f"person:{i}", pseudo)
            for i, p in enumerate(rows)]


def test_weight_bound_never_below_the_full_comparison():
    comp = FSComparator()
    recs = _records()
    for i, a in enumerate(recs):
        for b in recs[:i] + recs[i + 1:]:
            ident = Identity(person_id="P", anchor="rec:x")
            ident.absorb(b)
            total = comp.compare(a, ident).total_weight
            assert comp.weight_bound(a, ident) >= total - 1e-9


def test_memoised_score_equals_fresh_score():
    recs = _records()
    fresh = FSComparator()
    for a in recs:
        ident = Identity(person_id="P", anchor="rec:x")
        ident.absorb(recs[0])
        levels = fresh.levels(a, ident)
        memo = FSComparator()
        first = memo.score(a, "P", levels)
        again = memo.score(a, "P", levels)  # from the memo
        assert again == first == fresh.score(a, "P", levels)


def test_threshold_weight_inverts_the_calibration():
    comp = FSComparator()
    w = comp.threshold_weight(0.9)
    assert comp.model.probability(w + 1e-6) >= 0.9 > comp.model.probability(w - 1e-3)


def test_shared_set_reads_see_this_unit_of_work():
    base = MemoryKV()
    base.sadd("b:k", ["p1"])
    tx = TxKV(base)
    assert tx.smembers_many_shared(["b:k", "b:none"]) == [{"p1"}, set()]
    tx.sadd("b:k", ["p2"])
    assert tx.smembers_many_shared(["b:k"]) == [{"p1", "p2"}]
    assert base.smembers("b:k") == {"p1"}  # nothing applied before the commit


def test_typed_identity_decode_equals_the_plain_one():
    from reglink.stores.identity import _dump, _load, _load_fast

    recs = _records()
    ident = Identity(person_id="P", anchor="rid:x")
    for r in recs:
        ident.absorb(r)
    ident.last_report = 1_700_000_000.0
    raw = _dump(ident)
    assert _load_fast(raw, "P") == _load(raw, "P") == ident
    assert raw.startswith('["rid:x",')  # positional: no field names, no person id
    ident.anchor = f"rid:{ident.rid_hash}"  # the usual anchor is elided
    assert _dump(ident).startswith('["=",') and _load(_dump(ident), "P") == ident
    assert '["=",' in _dump(ident) and ident.rid_hash in ident.id_hashes  # the ID once
    assert ident.rid_hash not in json.loads(_dump(ident))[6]  # not repeated in id_hashes
    bare = '{"person_id":"P","anchor":"rec:a"}'  # the older JSON layout: still readable
    assert _load_fast(bare) == _load(bare) == Identity(person_id="P", anchor="rec:a")
    plain = Identity(person_id="Q", anchor="rec:x:1", records=0)
    assert _load_fast(_dump(plain), "Q") == _load(_dump(plain), "Q") == plain


def test_weak_key_cap_limits_name_only_buckets_only():
    from matchers.candidates import BlockingCandidates
    from reglink.stores.identity import embedded_store

    pseudo = Pseudonymiser("k")
    finder = BlockingCandidates(pseudo, weak_cap=20)
    store = embedded_store()
    mk = lambda i, birth: person_record(  # noqa: E731
        {"source": "person", "person": {"name": "王辉", "birth_date": birth}}, f"p:{i}", pseudo)
    for i in range(25):  # 25 namesakes, each with another birth date: one nk| bucket of 25
        rec = mk(i, f"19{50 + i}-01-01")
        ident = Identity(person_id=f"P{i:02d}", anchor=f"rec:{rec.key}")
        ident.absorb(rec)
        store.save(ident, finder.keys(rec))
    probe = mk(99, "1960-01-01")  # same birth date as P10: its name+birth key still finds it
    assert [i.person_id for i in finder.candidates(probe, store)] == ["P10"]
    finder.weak_cap = None  # only max_bucket (200): the whole name bucket
    assert len(finder.candidates(probe, store)) == 25


# Names whose pinyin depends on phrases (segments of several characters), polyphones,
# surnames with their own reading, mixed scripts and characters without pinyin.
PINYIN_CASES = ["王辉", "重庆人", "长城", "银行行长", "单于", "朝阳", "覃朝阳", "音乐会", "乐乐",
                "曾经", "重重", "欧阳长春", "衣裳", "你好吗", "abc中文x", "", "  ", "李·娜",
                "𠮷野", "张 伟", "解放军", "了解", "行为", "尉迟恭"]


@pytest.mark.parametrize("text", PINYIN_CASES)
def test_memoised_pinyin_equals_lazy_pinyin(text):
    from pypinyin import Style, lazy_pinyin

    from matchers.normalise import lazy_pinyin_normal
    assert lazy_pinyin_normal(text) == lazy_pinyin(text, style=Style.NORMAL)
    assert lazy_pinyin_normal(text) == lazy_pinyin(text, style=Style.NORMAL)  # memo hit


def test_pinyin_segment_memo_is_bounded():
    from matchers.normalise import _segment_pinyin
    assert _segment_pinyin.cache_info().maxsize is not None


def test_id_check_char_matches_the_standard():
    from matchers.normalise import id_check_char
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    for body in ("11010519491231002", "33010619891011707", "00000000000000000",
                 "99999999999999999", "44030519811031135"):
        plain = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]
        assert id_check_char(body) == plain
    with pytest.raises(ValueError):
        id_check_char("1234")


def test_redis_index_locations_are_remembered_bounded_and_equal():
    from reglink.stores.kv import RedisKV, index_location
    kv = RedisKV(client=None, prefix="p:")  # _loc needs no connection
    kv.LOC_MEMO = 8
    keys = [f"b:{i:032x}" for i in range(20)] + ["wl/b:nk|x", "b:sb|wang|1990-01-01",
                                                 "i:P0123456789abcdef", "l:hotel:H-1"]
    for _ in range(2):
        for k in keys:
            assert kv._loc(k) == index_location(k, "p:")
            assert len(kv._locs) <= 8
    assert "i:P0123456789abcdef" not in kv._locs  # only index keys take a slot


def _plain_person_record(record: dict, key: str, pseudo: Pseudonymiser):
    """person_record without the ID memo: a fresh pseudonymiser (empty memos) each time."""
    return person_record(record, key, Pseudonymiser(pseudo._key))


@pytest.mark.parametrize("id_number,id_type", [
    ("110101199003071234", None),        # resident, maybe a bad checksum
    ("11010119900307123X", None),
    ("110101900307123", None),           # 15 digits, upgraded
    ("E12345678", "passport"),           # opaque: deletion variants
    ("  110101-19900307-1234 ", None),   # the same digits, spaced: a different raw key
    (None, None), ("", None),
])
def test_memoised_id_part_equals_a_fresh_one(id_number, id_type):
    pseudo = Pseudonymiser("k")
    rec = {"source": "hotel", "person": {"name": "王辉", "id_number": id_number,
                                         "id_type": id_type}}
    first = person_record(rec, "hotel:1", pseudo)
    again = person_record(rec, "hotel:2", pseudo)  # from the memo
    assert again == _plain_person_record(rec, "hotel:2", pseudo)
    assert first.id_hash == again.id_hash and first.id_near == again.id_near
    if id_number:
        assert pseudo.derived, "the ID part was not memoised"
        # memoised per key: another pseudonymiser's hashes are its own
        other = person_record(rec, "hotel:2", Pseudonymiser("other"))
        assert other.id_hash != again.id_hash


def test_id_memo_is_bounded():
    pseudo = Pseudonymiser("k", memo=4)
    for i in range(10):
        person_record({"source": "hotel", "person": {"id_number": f"E{i:08d}"}}, "k", pseudo)
        assert len(pseudo.derived) <= 4

