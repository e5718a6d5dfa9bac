"""Golden table: known match and non-match pairs with their expected decisions, hard negatives
included (namesakes, relatives sharing a phone, a valid ID that belongs to someone else).
Each case links record A, then record B, through the real Linker with the shipped model."""

import pytest

from matchers.features import person_record
from matchers.linker import Linker
from matchers.normalise import id_check_char
from matchers.pseudo import Pseudonymiser
from reglink.stores.identity import embedded_store


def rid(area: str, birth: str, seq: int) -> str:
    body = f"{area}{birth}{seq:03d}"
    return body + id_check_char(body)


CHEN = rid("340102", "19880315", 2)
CHEN_SISTER = rid("340102", "19900704", 4)
WANG = rid("110105", "19790402", 31)
ZHANG_A = rid("320102", "19900101", 11)
ZHANG_B = rid("440305", "19900101", 13)


def typo(idn: str, pos: int) -> str:
    d = str((int(idn[pos]) + 1) % 10)
    return idn[:pos] + d + idn[pos + 1:]


def swap(idn: str, pos: int) -> str:
    return idn[:pos] + idn[pos + 1] + idn[pos] + idn[pos + 2:]


P = "13812345678"
SAME = True
DIFF = False
CASES = [
    # --- matches -------------------------------------------------------------------------
    ("exact ID and name", {"name": "陈丽", "id_number": CHEN},
     {"name": "陈丽", "id_number": CHEN, "phone": P}, SAME),
    ("homophone, same ID", {"name": "王晓明", "id_number": WANG},
     {"name": "王小明", "id_number": WANG}, SAME),
    ("legacy 15-digit ID", {"name": "王晓明", "id_number": WANG},
     {"name": "王晓明", "id_number": WANG[:6] + WANG[8:17]}, SAME),
    ("one digit off, name and phone agree", {"name": "陈丽", "id_number": CHEN, "phone": P},
     {"name": "陈丽", "id_number": typo(CHEN, 15), "phone": P}, SAME),
    ("transposed digits, birth date agrees", {"name": "陈丽", "id_number": CHEN},
     {"name": "陈丽", "id_number": swap(CHEN, 9), "birth_date": "1988-03-15"}, SAME),
    ("pinyin in any order, no ID, birth and phone",
     {"name": "陈丽", "id_number": CHEN, "phone": P},
     {"name": "Li CHEN", "birth_date": "19880315", "phone": P}, SAME),
    ("traditional characters", {"name": "陈丽", "id_number": CHEN},
     {"name": "陳麗", "id_number": CHEN}, SAME),
    ("look-alike character, same ID", {"name": "王己", "id_number": WANG},
     {"name": "王已", "id_number": WANG}, SAME),
    ("minority name, dot variant", {"name": "买买提·吐尔逊", "id_number": WANG},
     {"name": "买买提•吐尔逊", "id_number": WANG}, SAME),
    # --- hard negatives ------------------------------------------------------------------
    ("namesakes, same birth date, different valid IDs",
     {"name": "张伟", "id_number": ZHANG_A}, {"name": "张伟", "id_number": ZHANG_B}, DIFF),
    ("relatives sharing a phone", {"name": "陈丽", "id_number": CHEN, "phone": P},
     {"name": "陈芳", "id_number": CHEN_SISTER, "phone": P}, DIFF),
    ("relative sharing a phone, no ID", {"name": "陈丽", "id_number": CHEN, "phone": P},
     {"name": "陈建国", "phone": P, "sex": "M"}, DIFF),
    ("a valid ID of someone else", {"name": "陈丽", "id_number": CHEN, "sex": "F"},
     {"name": "刘强", "id_number": CHEN, "sex": "M", "birth_date": "1975-06-01"}, DIFF),
    ("common name alone", {"name": "张伟", "id_number": ZHANG_A},
     {"name": "张伟"}, DIFF),
    ("same name, other birth date, no ID", {"name": "陈丽", "id_number": CHEN},
     {"name": "陈丽", "birth_date": "1991-02-03"}, DIFF),
]


def link_pair(a: dict, b: dict):
    pseudo = Pseudonymiser("golden")
    linker = Linker(embedded_store(), pseudo, 0.90)
    ra = linker.link(person_record({"source": "hotel", "person": a}, "hotel:A", pseudo))
    rb = linker.link(person_record({"source": "rental", "person": b}, "rental:B", pseudo))
    return ra, rb


@pytest.mark.parametrize("label,a,b,same", CASES, ids=[c[0] for c in CASES])
def test_golden_pair(label, a, b, same):
    ra, rb = link_pair(a, b)
    assert (ra.person_id == rb.person_id) is same, (label, rb.explanation)


def test_id_typo_levels_are_named_in_the_explanation():
    _, rb = link_pair({"name": "陈丽", "id_number": CHEN},
                      {"name": "陈丽", "id_number": typo(CHEN, 15)})
    levels = {f["feature"]: f["level"] for f in rb.explanation["features"]}
    assert levels["id"] == "one_digit_off"
    _, rb = link_pair({"name": "陈丽", "id_number": CHEN},
                      {"name": "陈丽", "id_number": swap(CHEN, 9)})
    assert {f["feature"]: f["level"] for f in rb.explanation["features"]}["id"] == "transposed"


def test_every_explanation_carries_per_feature_weights():
    _, rb = link_pair({"name": "王晓明", "id_number": WANG}, {"name": "王小明", "id_number": WANG})
    feats = rb.explanation["features"]
    assert {f["feature"] for f in feats} >= {"id", "name", "birth_date", "sex", "phone"}
    assert all(isinstance(f["weight"], float) for f in feats)
    assert rb.explanation["probability"] >= 0.9


def test_common_names_weigh_less_than_rare_ones():
    from matchers.model import default_model

    m = default_model()
    common = max(m.tf, key=m.tf.get)
    assert m.tf_adjust(common, "exact") < m.tf_adjust("zz unseen name", "exact")


def test_cannot_link_vetoes_a_join():
    pseudo = Pseudonymiser("golden")
    vetoed = set()
    linker = Linker(embedded_store(), pseudo, 0.90,
                    cannot_link=lambda a, b: (a, b) in vetoed)
    a = linker.link(person_record({"source": "hotel", "person": {"name": "陈丽",
                                                                  "id_number": CHEN}},
                                  "hotel:A", pseudo))
    vetoed.add(("rental:B", a.person_id))
    b = linker.link(person_record({"source": "rental", "person": {"name": "陈丽",
                                                                   "id_number": CHEN}},
                                  "rental:B", pseudo))
    assert b.person_id != a.person_id
