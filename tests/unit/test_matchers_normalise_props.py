"""Hypothesis properties of the typo neighbourhoods and graded comparators used for matching
(the basic ID/name normaliser properties live in test_normalise.py)."""

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from matchers.normalise import (
    birth_level,
    deletion_variants,
    id_check_char,
    id_neighbours,
    lookalike,
    normalise_id,
    soundex,
)


@st.composite
def valid_ids(draw):
    area = draw(st.sampled_from(["110105", "340102", "440305", "510104", "654301"]))
    born = date(1930, 1, 1) + timedelta(days=draw(st.integers(0, 30000)))
    seq = draw(st.integers(0, 999))
    body = f"{area}{born:%Y%m%d}{seq:03d}"
    return body + id_check_char(body)


@given(valid_ids())
def test_a_valid_id_has_no_valid_neighbour(id18):
    assert id_neighbours(normalise_id(id18)) == ((), ())


@given(valid_ids(), st.integers(0, 16), st.integers(1, 9))
def test_a_one_digit_typo_lists_the_true_id_among_its_neighbours(id18, pos, delta):
    bad = id18[:pos] + str((int(id18[pos]) + delta) % 10) + id18[pos + 1:]
    info = normalise_id(bad)
    subs, swaps = id_neighbours(info)
    assert not info.valid and id18 in subs
    assert all(normalise_id(v).valid for v in subs + swaps)


@given(valid_ids(), st.integers(0, 15))
def test_a_transposition_lists_the_true_id(id18, pos):
    if id18[pos] == id18[pos + 1]:
        return
    bad = id18[:pos] + id18[pos + 1] + id18[pos] + id18[pos + 2:]
    assert id18 in id_neighbours(normalise_id(bad))[1]


@given(valid_ids(), st.integers(6, 14), st.integers(1, 9))
def test_legacy_15_neighbours_cover_a_typo_in_the_15_digits(id18, pos, delta):
    if id18[6:8] != "19":
        return
    id15 = id18[:6] + id18[8:17]
    bad15 = id15[:pos] + str((int(id15[pos]) + delta) % 10) + id15[pos + 1:]
    info = normalise_id(bad15)
    if info.valid:
        assert id18 in id_neighbours(info)[0]


@given(st.text("0123456789AB", min_size=4, max_size=12), st.integers(0, 11),
       st.sampled_from("0123456789"))
def test_a_substitution_or_transposition_shares_a_deletion_variant(s, pos, ch):
    pos %= len(s)
    subst = s[:pos] + ch + s[pos + 1:]
    assert set(deletion_variants(s)) & set(deletion_variants(subst))
    if pos + 1 < len(s):
        swapped = s[:pos] + s[pos + 1] + s[pos] + s[pos + 2:]
        assert set(deletion_variants(s)) & set(deletion_variants(swapped))


@given(st.dates(date(1920, 1, 1), date(2020, 12, 31)))
def test_birth_levels(d):
    iso = d.isoformat()
    assert birth_level(iso, {iso}) == "exact"
    if d.day <= 12 and d.day != d.month:
        assert birth_level(iso, {f"{d.year}-{d.day:02d}-{d.month:02d}"}) == "swapped_dm"


def test_lookalike_uses_four_corner_codes():
    assert lookalike("己", "已") and lookalike("未", "末") and lookalike("戊", "戌")
    assert not lookalike("张", "章") and not lookalike("王", "王")


@given(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=12))
def test_soundex_shape(token):
    code = soundex(token)
    assert len(code) == 4 and code[0] == token[0] and code[1:].isdigit()
