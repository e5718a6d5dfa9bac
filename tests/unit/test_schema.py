"""The state schema: key families and the typed codecs of the rule state, which must
store exactly the JSON the rules have always stored (stores and outputs do not change)."""

import json

import pytest

from matchers import fastjson
from matchers.features import person_record
from matchers.pseudo import Pseudonymiser
from reglink.stores import schema as sk

STAYS = [
    # a rental and a registration
    {"4403": {"iv": [["rental:R1", 1.7e9, None, 259200, None]],
              "reg": [["residence:S1", 1.7e9, 1.69e9, 1.8e9]],
              "ex": {"rental:R1": [0.99, {"features": []}]}}},
    # hotel: pending check-outs first needed, then a closed one
    {"1101": {"iv": [["hotel:H1", 1700000000.0, 1700086400.0, 2592000, "H-9"]], "reg": [],
              "ex": {"hotel:H1": [1.0, None]},
              "co": [["hotel:H3", "H-7", 1700090000.0]], "closed": ["hotel:H2"]}},
    # merged stays: closed first, then pending (both empty), several prefectures
    {"4403": {"iv": [], "reg": [], "ex": {}, "closed": [], "co": []},
     "3101": {"iv": [["job:J1", 1.6e9, None, 259200, None]], "reg": [], "ex": {}}},
]


@pytest.mark.parametrize("stored", STAYS)
def test_stay_state_round_trips_to_the_same_json(stored):
    raw = fastjson.dumps(stored)
    decoded = sk.decode_stays(raw)
    assert sk.encode_stays(decoded) == raw


def test_stay_state_fields_are_typed():
    ps = sk.decode_stays(fastjson.dumps(STAYS[1]))["1101"]
    (iv,) = ps.intervals
    assert (iv.key, iv.start, iv.end, iv.grace, iv.hotel) == (
        "hotel:H1", 1700000000.0, 1700086400.0, 2592000, "H-9")
    assert ps.pending == [sk.PendingCheckout("hotel:H3", "H-7", 1700090000.0)]
    assert ps.closed == ["hotel:H2"] and ps.keys() == {"hotel:H1", "hotel:H3"}
    assert len(sk.decode_stays(None)) == 0 and len(sk.decode_stays("")) == 0


def test_stays_decode_a_prefecture_only_when_asked_and_keep_the_others_as_stored():
    stored = {"1101": STAYS[1]["1101"], "4403": {"iv": [["rental:R1", 1.0, None, 259200, None]],
                                                 "reg": [], "ex": {}}}
    stays = sk.decode_stays(fastjson.dumps(stored))
    assert list(stays) == ["1101", "4403"] and len(stays) == 2 and "4403" in stays
    ps = stays["4403"]
    ps.intervals.append(sk.Presence("job:J1", 2.0, None, 259200))
    assert isinstance(stays.to_json()["1101"], dict)  # untouched: the stored JSON as read
    assert stays.to_json()["4403"]["iv"][1] == ["job:J1", 2.0, None, 259200, None]
    assert [p for p, _ in stays.items()] == ["1101", "4403"]
    assert stays.get("9999") is None
    with pytest.raises(KeyError):
        stays["9999"]


def test_a_new_stay_state_stores_its_lists_in_the_order_first_needed():
    ps = sk.StayState()
    assert list(ps.to_json()) == ["iv", "reg", "ex"]
    ps.pending_list()
    ps.closed_list().append("hotel:H2")
    assert list(ps.to_json()) == ["iv", "reg", "ex", "co", "closed"]
    other = sk.StayState()
    other.closed_list()
    other.pending_list()
    assert list(other.to_json()) == ["iv", "reg", "ex", "closed", "co"]


def test_watch_entry_round_trips_to_the_same_json():
    rec = person_record({"source": "watchlist", "watch_id": "W1", "action": "add",
                         "person": {"name": "陈丽", "sex": "F", "birth_date": "1988-03-15",
                                    "aliases": ["陈莉"]}}, "watchlist:W1", Pseudonymiser("k"))
    entry = sk.WatchEntry(rec, "high", "2027-01-01")
    raw = entry.encode()
    assert json.loads(raw)["active"] is True and json.loads(raw)["rec"]["key"] == "watchlist:W1"
    back = sk.WatchEntry.decode(raw)
    assert back == entry and back.encode() == raw
    back.active = False
    assert json.loads(back.encode()) == {**json.loads(raw), "active": False}


def test_timer_members_carry_the_rule_name():
    m = sk.timer_member("unregistered_stay", "P0123456789abcdef", "4403")
    assert m == "unregistered_stay|P0123456789abcdef|4403"
    assert sk.parse_timer(m) == ("unregistered_stay", ("P0123456789abcdef", "4403"))


def test_key_families():
    assert (sk.identity("P1"), sk.merged("P1"), sk.link("hotel:H1"), sk.blocking("k")) == (
        "i:P1", "m:P1", "l:hotel:H1", "b:k")
    assert (sk.stays("P1"), sk.alert("A1"), sk.watch_entry("W1"), sk.watch_named("W1"),
            sk.watch_alerts("W1"), sk.outbox_message("7"), sk.suppression("A1")) == (
        "s:P1", "a:A1", "w:W1", "wp:W1", "wa:W1", "o:7", "sup:A1")
    assert sk.watch_index(sk.blocking("k")) == "wl/b:k"
    assert sk.watch_index(sk.IDENTITY_COUNT) == "wl/n:identities"


def test_stored_explanations_are_compact_and_expand_to_the_same_dict():
    from matchers.types import Comparison, FeatureScore, compact_explanation, expand_explanation

    for conflict in (None, "different_resident_id"):
        c = Comparison("P1", (FeatureScore("id", "exact_valid", 11.1912),
                              FeatureScore("name", "exact", 11.5123)), 0.9721, 0.9999991,
                       conflict)
        expl = c.explanation()
        stored = compact_explanation(expl)
        assert isinstance(stored, list)
        back = expand_explanation(json.loads(json.dumps(stored)))
        assert json.dumps(back) == json.dumps(expl)  # same keys, same order, same values
        assert len(json.dumps(stored)) < 0.7 * len(json.dumps(expl))
    # other shapes, and explanations stored before, are kept as they are
    for other in ({"new_identity": True, "features": []},
                  {**expl, "features": [{**expl["features"][0], "record": "hotel:H-1"}]}):
        assert compact_explanation(other) is other
        assert expand_explanation(other) is other
