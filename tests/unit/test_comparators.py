"""One comparator per feature (matchers.comparators): each grades golden pairs at the expected
level, its upper bound is the maximum weight it can contribute, FSComparator composes what the
model file names, and another comparator of a feature can replace it for an evaluation."""

from __future__ import annotations

import json
import math

import pytest

from matchers.comparators import (
    DEFAULT,
    REGISTRY,
    AddressComparator,
    BirthDateComparator,
    IdComparator,
    LatinAddressComparator,
    NameComparator,
    PhoneComparator,
    PlainNameComparator,
    SexComparator,
    ZhAddressComparator,
    default_specs,
)
from matchers.comparators.address import latin_level
from matchers.compare import FSComparator
from matchers.features import person_record
from matchers.model import DEFAULT_MODEL_FILE, FSModel, ModelError, default_model
from matchers.pseudo import Pseudonymiser
from matchers.types import FeatureComparator, Identity, PersonRecord
from tests.unit.test_golden_pairs import CHEN, WANG, ZHANG_A, ZHANG_B, swap, typo

PSEUDO = Pseudonymiser("comparators")


def _record(source: str, fields: dict) -> dict:
    """A record of ``source`` with the person block ``fields``; an ``address`` among them
    becomes the top-level address of a ``person`` record (a source that gives one)."""
    fields = dict(fields)
    address = fields.pop("address", None)
    if address is None:
        return {"source": source, "person": {"name": "x", **fields}}
    return {"source": "person", "address": address, "person": {"name": "x", **fields}}


def pair(a: dict, b: dict) -> tuple[PersonRecord, Identity]:
    """Record ``b`` against the identity founded by record ``a``."""
    ra = person_record(_record("hotel", a), "hotel:A", PSEUDO)
    rb = person_record(_record("watchlist", b), "wl:B", PSEUDO)
    ident = Identity(person_id="P", anchor="rec:hotel:A")
    ident.absorb(ra)
    return rb, ident


def pp(x: str) -> dict:
    return {"id_number": x, "id_type": "passport"}


LATIN_ADDRESSES = [
    ("1 Main St Springfield 2000", "1 main street, Springfield 2000", "exact"),
    ("1 Main St Springfield 2000", "Unit 4 1 Main Street Springfield", "same_premises"),
    ("1 Main St Springfield 2000", "Main St Springfeld 2000", "similar"),
    ("1 Main St Springfield 2000", "12 Main Street Springfield 2000", "same_street"),
    ("1 Main St Springfield 2000", "7 Oak Road Springfield 2000", "same_area"),
    ("1 Main St Springfield 2000", "99 Other Road Shelbyville 3000", "different"),
    # a space typed one letter early, a postcode with two digits swapped or one replaced
    ("9 kellway street amboyne noble park 2148 vic", "9 kellways treet noble park 2184 vic",
     "same_premises"),
    ("3 partridge street banksia 6530 sa", "3 partridge street banksia 6531 sa",
     "same_premises"),
    ("12 colebatch place brentwood jesmond 3163 vic",
     "12 colebatchplace brentwood jesmond 3163 vic", "similar"),
]
ZH_ADDRESSES = [
    ("杭州市西湖区科技路86号金色名都23栋1单元1302",
     "浙江省杭州市西湖区科技路86号金色名都23栋1单元1302", "exact"),
    ("杭州市西湖区科技路86号金色名都23栋1单元1302", "杭州市西湖区科技路86号金色名都23栋2单元502",
     "same_premises"),
    ("杭州市西湖区科技路86号金色名都23栋1单元1302", "杭州西湖区科技路金色名都23栋1单元1302",
     "similar"),
    ("杭州市西湖区科技路86号金色名都23栋1单元1302", "杭州市西湖区科技路88号702", "same_street"),
    ("杭州市西湖区科技路86号金色名都23栋1单元1302", "杭州市西湖区中山路1号702", "same_area"),
    ("杭州市西湖区科技路86号金色名都23栋1单元1302", "武汉市江岸区工业大道923号706", "different"),
]

GOLDEN: list[tuple[FeatureComparator, dict, dict, str]] = [
    (IdComparator(), {"id_number": CHEN}, {"id_number": CHEN}, "exact_valid"),
    (IdComparator(), pp("E1234567"), pp("E1234567"), "exact_other"),
    (IdComparator(), {"id_number": CHEN}, {"id_number": typo(CHEN, 15)}, "one_digit_off"),
    (IdComparator(), {"id_number": CHEN}, {"id_number": swap(CHEN, 9)}, "transposed"),
    (IdComparator(), pp("E1234567"), pp("E1234576"), "one_char_off"),
    (IdComparator(), pp("E1234567"), pp("G7654321"), "different"),
    (IdComparator(), {"id_number": ZHANG_A}, {"id_number": ZHANG_B}, "different_valid"),
    (IdComparator(), {"id_number": CHEN}, {}, "missing"),
    (NameComparator(), {"name": "陈丽"}, {"name": "陈丽"}, "exact"),
    (NameComparator(), {"name": "陳麗"}, {"name": "陈丽"}, "exact"),  # traditional form
    (NameComparator(), {"name": "王晓明"}, {"name": "王小明"}, "same_pinyin"),
    (NameComparator(), {"name": "LI Wei"}, {"name": "Wei LI"}, "reordered"),
    (NameComparator(), {"name": "陈丽"}, {"name": "Li CHEN"}, "romanised"),
    (NameComparator(), {"name": "陈丽"}, {"name": "陈红", "aliases": ["陈丽"]}, "alias"),
    (NameComparator(), {"name": "张伟"}, {"name": "CHANG Wei"}, "variant"),
    (NameComparator(), {"name": "WONG Mei"}, {"name": "Mei WANG"}, "variant"),
    (NameComparator(), {"name": "王己"}, {"name": "王已"}, "lookalike"),
    (NameComparator(), {"name": "William SMITH"}, {"name": "Bill SMITH"}, "nickname"),
    (NameComparator(), {"name": "John SMITH"}, {"name": "J SMITH"}, "initials"),
    (NameComparator(), {"name": "John A SMITH"}, {"name": "John SMITH"}, "initials"),
    (NameComparator(), {"name": "WANG XIAOMING"}, {"name": "WANG XIAOMIN"}, "jw_high"),
    (NameComparator(), {"name": "STEPHEN CLARK"}, {"name": "STEVEN CLARKE"}, "jw_mid"),
    (NameComparator(), {"name": "陈丽"}, {"name": "陈芳"}, "one_char"),
    (NameComparator(), {"name": "ethan miell"}, {"name": "ethan wihtr"}, "part_agrees"),
    (NameComparator(), {"name": "陈丽"}, {"name": "陈建国"}, "surname_only"),
    (NameComparator(), {"name": "陈丽"}, {"name": "刘强"}, "different"),
    (NameComparator(), {"name": "陈丽"}, {"name": ""}, "missing"),
    (PlainNameComparator(), {"name": "陈丽"}, {"name": "陈丽"}, "exact"),
    (PlainNameComparator(), {"name": "王晓明"}, {"name": "王小明"}, "romanised"),
    (PlainNameComparator(), {"name": "陈丽"}, {"name": "Li CHEN"}, "romanised"),
    (PlainNameComparator(), {"name": "王己"}, {"name": "王已"}, "surname_only"),
    (PlainNameComparator(), {"name": "陈丽"}, {"name": "刘强"}, "different"),
    (PlainNameComparator(), {"name": "陈丽"}, {"name": ""}, "missing"),
    (BirthDateComparator(), {"birth_date": "1988-03-15"}, {"birth_date": "19880315"}, "exact"),
    (BirthDateComparator(), {"birth_date": "1988-03-05"}, {"birth_date": "1988-05-03"},
     "swapped_dm"),
    (BirthDateComparator(), {"birth_date": "1988-03-15"}, {"birth_date": "1988-03-16"},
     "one_digit"),
    (BirthDateComparator(), {"birth_date": "1988-03-15"}, {"birth_date": "1988-07-01"},
     "same_year"),
    (BirthDateComparator(), {"birth_date": "1988-03-15"}, {"birth_date": "1975-06-01"},
     "different"),
    (BirthDateComparator(), {}, {"birth_date": "1975-06-01"}, "missing"),
    (SexComparator(), {"sex": "M"}, {"sex": "男"}, "same"),
    (SexComparator(), {"sex": "M"}, {"sex": "F"}, "different"),
    (SexComparator(), {"sex": "M"}, {}, "missing"),
    (PhoneComparator(), {"phone": "13812345678"}, {"phone": "138-1234-5678"}, "same"),
    (PhoneComparator(), {"phone": "13812345678"}, {"phone": "13912345678"}, "different"),
    (PhoneComparator(), {}, {"phone": "13912345678"}, "missing"),
    *[(comp, {"address": a}, {"address": b}, level)
      for comp in (AddressComparator(), LatinAddressComparator())
      for a, b, level in LATIN_ADDRESSES],
    *[(comp, {"address": a}, {"address": b}, level)
      for comp in (AddressComparator(), ZhAddressComparator())
      for a, b, level in ZH_ADDRESSES],
    (AddressComparator(), {"address": "1 Main St Springfield"}, {}, "missing"),
    (LatinAddressComparator(), {"address": "1 Main St Springfield"}, {}, "missing"),
    (ZhAddressComparator(), {"address": "杭州市西湖区科技路86号"}, {}, "missing"),
]


@pytest.mark.parametrize("comp,a,b,level", GOLDEN,
                         ids=[f"{c.name}-{lvl}-{i}" for i, (c, _a, _b, lvl) in enumerate(GOLDEN)])
def test_golden_pair_level(comp: FeatureComparator, a: dict, b: dict, level: str) -> None:
    rec, ident = pair(a, b)
    assert comp.compare(rec, ident) == level
    assert comp.present(rec, ident) is (level != "missing")


def test_every_registered_comparator_has_golden_pairs_for_each_level() -> None:
    seen: dict[str, set[str]] = {}
    for comp, _a, _b, level in GOLDEN:
        seen.setdefault(comp.name, set()).add(level)
    for name, cls in REGISTRY.items():
        assert seen.get(name, set()) == {*cls.levels, "missing"}, name


@pytest.mark.parametrize("cls", list(REGISTRY.values()), ids=list(REGISTRY))
def test_upper_bound_is_the_maximum_weight(cls: type) -> None:
    comp = cls()
    assert comp.name and comp.version >= 1 and comp.levels and cls.__doc__
    model = default_model()
    level, bound = comp.upper_bound(model)
    weights = {lvl: model.weight(comp.feature, lvl) for lvl in comp.levels}
    assert level in comp.levels and bound == weights[level] == max(weights.values())
    for c, a, b, _lvl in GOLDEN:  # no golden pair gets more than the bound from the feature
        if c.name == comp.name:
            assert model.weight(comp.feature, comp.compare(*pair(a, b))) <= bound


def test_the_bound_follows_the_model_not_the_order_of_the_levels() -> None:
    assert IdComparator().upper_bound(default_model())[0] == "exact_valid"
    model = FSModel(monotone=False)  # uncapped: an estimate may rank a weaker level higher
    model.m["id"]["one_digit_off"], model.u["id"]["one_digit_off"] = 0.99, 1e-6
    model.__post_init__()
    level, bound = IdComparator().upper_bound(model)
    assert level == "one_digit_off" and bound > model.weight("id", "exact_valid")


def test_latin_premises_need_one_street_and_at_most_one_slip_in_the_postcode() -> None:
    two_slips = latin_level("3 partridge street banksia 6530 sa",
                            "3 partridge street banksia 6035 sa")
    other_street = latin_level("9 kellway street noble park 2148 vic",
                               "9 hallway street noble park 2148 vic")
    assert two_slips != "same_premises" and other_street != "same_premises"
    assert latin_level("3 partridge street banksia 6530 sa",
                       "3 partridge street banksia 6350 sa") == "same_premises"


def test_only_two_valid_resident_ids_are_a_hard_conflict() -> None:
    comp = FSComparator()
    for c, a, b, level in GOLDEN:
        if c.name == "cn-id":
            rec, ident = pair(a, b)
            expected = "different_resident_id" if level == "different_valid" else None
            assert comp.compare(rec, ident).conflict == expected


def test_fs_comparator_composes_what_the_model_names() -> None:
    comp = FSComparator()
    assert [type(c) for c in comp.comparators] == list(DEFAULT)
    assert comp.NAME == default_model().version
    assert default_model().comparators == default_specs()
    saved = json.loads(DEFAULT_MODEL_FILE.read_text(encoding="utf-8"))
    assert saved["comparators"] == default_specs()
    assert saved["version"] == default_model().version


def _pairs() -> list[tuple[PersonRecord, Identity]]:
    return [pair(a, b) for _c, a, b, _lvl in GOLDEN] + [
        pair({"name": "陈丽", "id_number": CHEN, "birth_date": "1988-03-15", "sex": "F",
              "phone": "13812345678", "address": "1 Main St"},
             {"name": n, "id_number": i, "birth_date": d, "sex": "F", "address": "1 Main St"})
        for n in ("陈丽", "Li CHEN", "陈芳") for i in (CHEN, typo(CHEN, 15), WANG)
        for d in ("1988-03-15", "1988-05-03")]


def test_weight_bound_sums_cheap_levels_and_best_weights() -> None:
    comp = FSComparator()
    m = comp.model
    for rec, ident in _pairs():
        expected = m.prior_weight
        for c in comp.comparators:
            lvl = c.compare(rec, ident)
            if lvl == "missing":
                continue
            if c.cheap:
                expected += m.weight(c.feature, lvl)
            elif c.tf_levels:
                tf = m.tf_adjust(rec.name_key, "exact")
                expected += max(max(m.weight(c.feature, x) + tf for x in c.tf_levels),
                                max(m.weight(c.feature, x) for x in c.levels
                                    if x not in c.tf_levels))
            else:
                expected += max(0.0, c.upper_bound(m)[1])
        assert comp.weight_bound(rec, ident) == pytest.approx(expected, abs=1e-9)
        assert comp.weight_bound(rec, ident) >= comp.compare(rec, ident).total_weight - 1e-9


def test_an_override_replaces_one_feature_and_is_named() -> None:
    model = default_model()
    base = FSComparator(model)
    plain = FSComparator(model, overrides={"name": PlainNameComparator()})
    assert plain.NAME == f"{model.version}/name=plain-name@1"
    rec, ident = pair({"name": "王晓明", "birth_date": "1990-01-01"},
                      {"name": "王小明", "birth_date": "1990-01-01"})
    levels = {f.feature: f.level for f in base.compare(rec, ident).features}
    alt = {f.feature: f.level for f in plain.compare(rec, ident).features}
    assert levels["name"] == "same_pinyin" and alt["name"] == "romanised"
    assert {k: v for k, v in levels.items() if k != "name"} == \
        {k: v for k, v in alt.items() if k != "name"}
    for rec, ident in _pairs():  # the bound holds for the override too
        assert plain.weight_bound(rec, ident) >= plain.compare(rec, ident).total_weight - 1e-9


def test_an_override_must_fit_the_model() -> None:
    with pytest.raises(ModelError, match="feature 'surname'"):
        FSComparator(overrides={"surname": PlainNameComparator()})
    with pytest.raises(ModelError, match="feature 'sex'"):
        FSComparator(overrides={"sex": PlainNameComparator()})

    class Soundalike(PlainNameComparator):
        name = "soundalike"
        levels = ("exact", "sounds_alike", "different")

    with pytest.raises(ModelError, match="does not weigh: sounds_alike"):
        FSComparator(overrides={"name": Soundalike()})


def _model_json(**change: object) -> dict:
    d = default_model().to_json()
    d.update(change)
    return d


@pytest.mark.parametrize("specs,message", [
    ({**default_specs(), "name": {"name": "no-such", "version": 1}},
     "feature 'name' names comparator 'no-such', which does not exist"),
    ({**default_specs(), "name": {"name": "zh-name", "version": 7}},
     "feature 'name' names comparator 'zh-name' version 7, but this code has version 2"),
    ({**default_specs(), "sex": {"name": "phone", "version": 1}},
     "comparator 'phone' grades feature 'phone', not 'sex'"),
    (None, "no 'comparators' field"),
])
def test_the_loader_names_a_missing_comparator_in_one_line(tmp_path, specs, message) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps(_model_json(comparators=specs)), encoding="utf-8")
    with pytest.raises(ModelError) as err:
        FSModel.load(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_the_comparators_field_survives_a_round_trip_and_is_part_of_the_model_id() -> None:
    """Two models with the same parameters that grade a feature with different comparators
    are different models: their ids differ, and each survives a save and load."""
    m = FSModel()
    m.comparators = {**default_specs(), "name": {"name": "plain-name", "version": 1}}
    again = FSModel.from_json(json.loads(json.dumps(m.to_json())))
    assert again.comparators == m.comparators
    assert again.version == m.version != FSModel().version
    assert "name=plain-name@1" in again.features
    assert f"name=zh-name@{NameComparator.version}" in FSModel().features


def _records(n: int = 40) -> list[tuple[dict, str]]:
    names = ["陈丽", "王晓明", "张伟", "李娜"]
    out = []
    for i in range(n):
        k = i % 8
        person = {"name": names[k % 4] if i % 3 else ["陈丽", "王小明", "张伟", "李娜"][k % 4],
                  "birth_date": f"1988-03-1{k}", "phone": f"1380000{k:04d}"}
        out.append(({"source": "rental", "record_id": f"R{i}", "person": person},
                    f"rental:R{i}"))
    return out


def test_training_writes_the_comparators_it_graded_with() -> None:
    from matchers.em import train

    quiet = lambda *_: None  # noqa: E731
    model = train(_records(), u_pairs=500, log=quiet)
    assert model.comparators == default_specs()
    plain = train(_records(), u_pairs=500, log=quiet,
                  comparators=[c() if c is not NameComparator else PlainNameComparator()
                               for c in DEFAULT])
    assert plain.comparators["name"] == {"name": "plain-name", "version": 1}
    assert set(plain.m["name"]) >= set(PlainNameComparator.levels)
    assert all(math.isfinite(plain.weight("name", lvl)) for lvl in PlainNameComparator.levels)
    FSModel.from_json(json.loads(json.dumps(plain.to_json())))  # loads again
