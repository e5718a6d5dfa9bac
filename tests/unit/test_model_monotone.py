"""Monotone weights (matchers.model.WEAKER_THAN): a degraded form of agreement never weighs more
than the agreement it degrades, whatever the estimates say."""

import json

from matchers.model import START_M, START_U, WEAKER_THAN, FSModel, default_model


def _model(**kw) -> FSModel:
    m, u = json.loads(json.dumps(START_M)), json.loads(json.dumps(START_U))
    # the FEBRL4 estimate: jw_high never seen in random pairs, u rests on the prior alone
    m["name"].update(exact=0.48, jw_high=0.158)
    u["name"].update(exact=1.2e-4, jw_high=1e-7)
    return FSModel(m=m, u=u, **kw)


def test_a_fuzzy_name_never_outweighs_an_exact_one():
    raw, capped = _model(monotone=False), _model()
    assert raw.weight("name", "jw_high") > raw.weight("name", "exact") + 5
    assert capped.weight("name", "jw_high") == min(capped.weight("name", "exact"),
                                                   capped.weight("name", "reordered"))
    assert capped.weight("name", "jw_mid") <= capped.weight("name", "jw_high")
    assert capped.version != raw.version  # the version names the weights in force


def test_every_listed_level_is_capped_in_the_shipped_model():
    model = default_model()
    for feature, caps in WEAKER_THAN.items():
        for level, stronger in caps.items():
            for s in stronger:
                assert model.weight(feature, level) <= model.weight(feature, s), (feature,
                                                                                   level, s)


def test_caps_survive_a_round_trip_through_json():
    m = _model()
    again = FSModel.from_json(json.loads(json.dumps(m.to_json())))
    assert again.weight("name", "jw_high") == m.weight("name", "jw_high")
    assert again.version == m.version


def _rare_reordered(**name_m_u) -> tuple[FSModel, FSModel]:
    """Capped and raw models whose 'reordered' level matches almost never reach and random
    pairs never do (u on the floor): names always written in one order."""
    m, u = json.loads(json.dumps(START_M)), json.loads(json.dumps(START_U))
    m["name"].update(exact=0.7725, reordered=5.5e-6, initials=2.3e-4, jw_high=0.0094,
                     jw_mid=0.0717, part_agrees=0.1088)
    u["name"].update(exact=3e-5, reordered=5e-9, initials=2.5e-8, jw_high=1e-7,
                     jw_mid=1.1e-4, part_agrees=3.7e-3)
    for level, (mv, uv) in name_m_u.items():
        m["name"][level], u["name"][level] = mv, uv
    return FSModel(m=m, u=u), FSModel(m=m, u=u, monotone=False)


def test_a_level_whose_weight_rests_on_the_floor_of_u_caps_no_commoner_level():
    capped, raw = _rare_reordered()
    rare = capped.weight("name", "reordered")
    assert rare < 3  # log2(5.5e-6 / 1e-6): the floor's weight, not evidence
    for level in ("jw_high", "jw_mid", "part_agrees"):
        assert capped.weight("name", level) == raw.weight("name", level) > rare + 1, level
    # what the rare level's own caps say still holds: nothing outweighs an exact name
    assert all(capped.weight("name", lvl) <= capped.weight("name", "exact")
               for lvl in ("jw_high", "jw_mid", "part_agrees", "nickname", "initials"))


def test_skipping_a_rare_cap_falls_back_on_what_caps_it():
    # jw_high estimated above an exact name (sampling error), the rare 'reordered' between
    capped, raw = _rare_reordered(jw_high=(0.158, 1e-7), exact=(0.48, 1.2e-4))
    assert raw.weight("name", "jw_high") > raw.weight("name", "exact") + 5
    assert capped.weight("name", "jw_high") == capped.weight("name", "exact")
