"""Prefecture names by GB/T 2260 code (reglink.core.geo), for the console and the CLI."""

from __future__ import annotations

from reglink.core import geo
from reglink.sim import geo as sim_geo


def test_every_prefecture_the_simulator_uses_has_a_name():
    missing = {c.prefecture for c in sim_geo.COUNTIES} - set(geo.PREFECTURES)
    assert missing == set()
    for c in sim_geo.COUNTIES:  # the names agree with the simulator's city names
        assert geo.PREFECTURES[c.prefecture].startswith(c.city) or c.city == "延吉", c


def test_place_labels():
    assert geo.place_label("4403") == "4403 深圳市, 广东省"
    assert geo.place_label("440305") == "440305 深圳市, 广东省"
    assert geo.place_label("1101") == "1101 北京市"
    assert geo.place_label("4452") == "4452 (广东省)"  # not in the table: its province
    assert geo.place_label("44") == "44 广东省"
    assert geo.place_label("9901") == "9901"
    assert geo.place_label(None) == geo.place_label("") == ""
    assert geo.province_name("650102") == "新疆维吾尔自治区"
    assert geo.prefecture_name("44") is None
