from hypothesis import given
from hypothesis import strategies as st

from matchers.normalise import (
    id_check_char,
    normalise_birth_date,
    normalise_id,
    normalise_name,
    normalise_phone,
    normalise_sex,
    same_place,
    upgrade_15,
)


def test_valid_id_reads_birth_sex_prefecture():
    info = normalise_id("340102198803150022")
    assert info.valid and info.kind == "resident"
    assert (info.birth_date, info.sex, info.prefecture) == ("1988-03-15", "F", "3401")


def test_spaces_dashes_and_lower_x_are_stripped():
    body = "11010519491231002"
    full = body + id_check_char(body)
    messy = f"{full[:6]} {full[6:14]}-{full[14:]}".lower()
    assert normalise_id(messy).value == full.upper()


def test_legacy_15_upgrades_like_the_example():
    info = normalise_id("110105790402031")
    assert info.value == "110105197904020317" and info.valid and info.upgraded
    assert info.flag == "upgraded_15" and info.sex == "M"


def test_bad_checksum_is_kept_and_flagged():
    info = normalise_id("340102198803150023")
    assert info.kind == "resident" and not info.valid and info.flag == "bad_checksum"
    assert info.value == "340102198803150023"


def test_other_documents_are_opaque():
    info = normalise_id("E1234-5678", "passport")
    assert (info.kind, info.value, info.valid) == ("other", "E12345678", False)
    assert normalise_id("") is None and normalise_id(None) is None


DIGITS = st.text("0123456789", min_size=1, max_size=1)


@st.composite
def valid_ids(draw):
    area = draw(st.sampled_from(["110105", "340102", "440305", "310115", "500103"]))
    birth = draw(st.dates(min_value=__import__("datetime").date(1920, 1, 1),
                          max_value=__import__("datetime").date(2020, 12, 31)))
    seq = draw(st.integers(0, 999))
    body = f"{area}{birth:%Y%m%d}{seq:03d}"
    return body + id_check_char(body)


@given(valid_ids())
def test_valid_id_round_trips(id18):
    info = normalise_id(id18)
    assert info.valid and info.value == id18
    again = normalise_id(info.value)
    assert again == info


@given(valid_ids())
def test_upgrading_twice_equals_once(id18):
    if id18[6:8] != "19":
        return
    id15 = id18[:6] + id18[8:17]
    once = normalise_id(id15)
    assert once.value == upgrade_15(id15)
    twice = normalise_id(once.value)
    assert twice.value == once.value and twice.valid


@given(valid_ids(), st.integers(0, 16), st.integers(1, 9))
def test_checksum_catches_every_single_digit_error(id18, pos, delta):
    wrong = id18[:pos] + str((int(id18[pos]) + delta) % 10) + id18[pos + 1:]
    assert not normalise_id(wrong).valid


@given(st.text(max_size=40))
def test_normalise_id_never_crashes(raw):
    info = normalise_id(raw)
    assert info is None or info.kind in ("resident", "other")


def test_names_homophones_and_romanisation_share_a_key():
    keys = {normalise_name(n).key for n in ["陈丽", "陈莉", "CHEN Li", "Li Chen", "chenli"]}
    assert keys == {"chen li"}


def test_traditional_to_simplified_and_special_surnames():
    assert normalise_name("單偉").text == "单伟"
    assert normalise_name("单伟").syllables[0] == "shan"
    assert normalise_name("曾小贤").syllables[0] == "zeng"
    assert normalise_name("欧阳娜娜").surname == "ouyang"


def test_middle_dot_variants_are_equal():
    forms = ["阿依古丽·买买提", "阿依古丽•买买提", "阿依古丽・买买提", "阿依古丽买买提"]
    assert len({normalise_name(f).text for f in forms}) == 1


def test_look_alikes_are_not_homophones():
    # 己/已 differ in pinyin: the name key alone must not make them equal.
    assert normalise_name("李己").key != normalise_name("李已").key


def test_birth_sex_phone():
    assert normalise_birth_date("19880315") == "1988-03-15"
    assert normalise_birth_date("1988-02-30") is None
    assert normalise_sex("女") == "F" and normalise_sex("M") == "M" and normalise_sex("?") is None
    assert normalise_phone("+86 139-5550-1234") == "13955501234"
    assert normalise_phone("12") is None


def test_municipalities_compare_two_digits():
    assert same_place("1101", "1105")
    assert not same_place("4403", "4401")
    assert same_place("3101", "3115")
