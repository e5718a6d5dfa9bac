"""Names of Chinese administrative divisions by their GB/T 2260 code, for people to read.

Province-level names for every 2-digit code; prefecture-level names (4 digits) for the
prefectures the simulator places people in (``reglink.sim.geo``) and the four
municipalities. A prefecture without a name here is labelled with its province.
"""

from __future__ import annotations

PROVINCES: dict[str, str] = {
    "11": "北京市", "12": "天津市", "13": "河北省", "14": "山西省", "15": "内蒙古自治区",
    "21": "辽宁省", "22": "吉林省", "23": "黑龙江省",
    "31": "上海市", "32": "江苏省", "33": "浙江省", "34": "安徽省", "35": "福建省",
    "36": "江西省", "37": "山东省",
    "41": "河南省", "42": "湖北省", "43": "湖南省", "44": "广东省", "45": "广西壮族自治区",
    "46": "海南省",
    "50": "重庆市", "51": "四川省", "52": "贵州省", "53": "云南省", "54": "西藏自治区",
    "61": "陕西省", "62": "甘肃省", "63": "青海省", "64": "宁夏回族自治区",
    "65": "新疆维吾尔自治区",
    "71": "台湾省", "81": "香港特别行政区", "82": "澳门特别行政区",
}

MUNICIPALITIES = frozenset({"11", "12", "31", "50"})

PREFECTURES: dict[str, str] = {
    "1101": "北京市", "1201": "天津市", "3101": "上海市", "5001": "重庆市", "5002": "重庆市",
    "1301": "石家庄市", "1401": "太原市", "1501": "呼和浩特市",
    "2101": "沈阳市", "2224": "延边朝鲜族自治州", "2301": "哈尔滨市",
    "3201": "南京市", "3205": "苏州市", "3301": "杭州市", "3302": "宁波市",
    "3401": "合肥市", "3412": "阜阳市", "3501": "福州市", "3502": "厦门市",
    "3601": "南昌市", "3607": "赣州市", "3701": "济南市", "3704": "枣庄市", "3713": "临沂市",
    "4101": "郑州市", "4113": "南阳市", "4115": "信阳市", "4116": "周口市",
    "4201": "武汉市", "4301": "长沙市", "4305": "邵阳市",
    "4401": "广州市", "4403": "深圳市", "4406": "佛山市", "4419": "东莞市",
    "4501": "南宁市", "5101": "成都市", "5113": "南充市", "5201": "贵阳市", "5301": "昆明市",
    "5401": "拉萨市", "6101": "西安市", "6501": "乌鲁木齐市", "6531": "喀什地区",
}


def province_name(code: str | None) -> str | None:
    """``"440305"`` or ``"4403"`` or ``"44"`` -> ``"广东省"``; ``None`` if unknown."""
    return PROVINCES.get(str(code or "")[:2])


def prefecture_name(code: str | None) -> str | None:
    """``"4403"`` (or a longer code in it) -> ``"深圳市"``; ``None`` if not in the table."""
    s = str(code or "")
    if len(s) < 4:
        return None
    return PREFECTURES.get(s[:4])


def place_label(code: str | None) -> str:
    """A code with its name for a reader: ``"4403 深圳市, 广东省"``, ``"1101 北京市"``,
    ``"4452 (广东省)"`` for a prefecture not in the table, the bare code if even the province
    is unknown, ``""`` for none."""
    s = str(code or "")
    if not s:
        return ""
    prov = province_name(s)
    if prov is None:
        return s
    pref = prefecture_name(s) if len(s) >= 4 else None
    if pref is None:
        return f"{s} {prov}" if len(s) == 2 else f"{s} ({prov})"
    if s[:2] in MUNICIPALITIES:
        return f"{s} {pref}"
    return f"{s} {pref}, {prov}"
