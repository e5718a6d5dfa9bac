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
