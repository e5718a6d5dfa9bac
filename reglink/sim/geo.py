"""Real county-level division codes (GB/T 2260) with names, and generators for places in them.

``ORIGIN`` weights follow where floating people come from (Henan, Sichuan, Anhui, Hunan...),
``DEST`` weights where they go (Guangdong, Zhejiang, Shanghai, Beijing, Jiangsu...).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import accumulate


@dataclass(frozen=True, slots=True)
class County:
    code: str
    city: str       # 深圳
    district: str   # 南山区
    origin: float   # weight as a place of household registration
    dest: float     # weight as a destination

    @property
    def prefecture(self) -> str:
        return self.code[:4]


# code, city, district, origin weight, destination weight
_RAW = [
    ("110101", "北京", "东城区", 0.4, 1.5), ("110102", "北京", "西城区", 0.4, 1.5),
    ("110105", "北京", "朝阳区", 1.0, 4.0), ("110106", "北京", "丰台区", 0.6, 2.0),
    ("110108", "北京", "海淀区", 0.8, 3.5), ("110114", "北京", "昌平区", 0.4, 1.5),
    ("120101", "天津", "和平区", 0.4, 1.0), ("120104", "天津", "南开区", 0.5, 1.2),
    ("310101", "上海", "黄浦区", 0.4, 2.0), ("310104", "上海", "徐汇区", 0.5, 2.0),
    ("310112", "上海", "闵行区", 0.6, 3.0), ("310115", "上海", "浦东新区", 1.0, 5.0),
    ("500103", "重庆", "渝中区", 0.8, 1.5), ("500112", "重庆", "渝北区", 1.0, 1.5),
    ("440103", "广州", "荔湾区", 0.4, 1.5), ("440104", "广州", "越秀区", 0.4, 2.0),
    ("440106", "广州", "天河区", 0.5, 3.5), ("440111", "广州", "白云区", 0.5, 3.0),
    ("440303", "深圳", "罗湖区", 0.3, 2.0), ("440304", "深圳", "福田区", 0.4, 3.0),
    ("440305", "深圳", "南山区", 0.4, 3.5), ("440306", "深圳", "宝安区", 0.4, 4.0),
    ("440307", "深圳", "龙岗区", 0.4, 3.5), ("441900", "东莞", "", 0.4, 4.0),
    ("440604", "佛山", "禅城区", 0.3, 1.5), ("440606", "佛山", "顺德区", 0.3, 1.5),
    ("330102", "杭州", "上城区", 0.3, 1.5), ("330106", "杭州", "西湖区", 0.4, 2.5),
    ("330108", "杭州", "滨江区", 0.2, 2.0), ("330203", "宁波", "海曙区", 0.3, 1.5),
    ("320505", "苏州", "虎丘区", 0.3, 2.0), ("320508", "苏州", "姑苏区", 0.3, 1.5),
    ("320102", "南京", "玄武区", 0.4, 1.2), ("320106", "南京", "鼓楼区", 0.4, 1.2),
    ("340102", "合肥", "瑶海区", 1.0, 0.8), ("340104", "合肥", "蜀山区", 0.8, 0.8),
    ("341202", "阜阳", "颍州区", 1.5, 0.2), ("341221", "阜阳", "临泉县", 2.0, 0.1),
    ("510104", "成都", "锦江区", 0.8, 1.2), ("510107", "成都", "武侯区", 0.9, 1.5),
    ("510108", "成都", "成华区", 0.8, 1.0), ("511302", "南充", "顺庆区", 1.8, 0.2),
    ("420102", "武汉", "江岸区", 0.7, 1.0), ("420106", "武汉", "武昌区", 0.8, 1.2),
    ("420111", "武汉", "洪山区", 0.7, 1.0), ("430102", "长沙", "芙蓉区", 0.7, 0.8),
    ("430104", "长沙", "岳麓区", 0.7, 0.8), ("430502", "邵阳", "双清区", 1.6, 0.1),
    ("410102", "郑州", "中原区", 0.9, 0.8), ("410105", "郑州", "金水区", 0.9, 1.0),
    ("411602", "周口", "川汇区", 2.2, 0.1), ("411302", "南阳", "宛城区", 2.0, 0.1),
    ("411502", "信阳", "浉河区", 1.8, 0.1), ("370102", "济南", "历下区", 0.7, 0.8),
    ("371302", "临沂", "兰山区", 1.6, 0.2), ("370402", "枣庄", "市中区", 0.8, 0.2),
    ("610103", "西安", "碑林区", 0.6, 0.8), ("610113", "西安", "雁塔区", 0.7, 1.0),
    ("450102", "南宁", "兴宁区", 1.2, 0.4), ("360702", "赣州", "章贡区", 1.6, 0.2),
    ("360102", "南昌", "东湖区", 0.8, 0.4), ("520102", "贵阳", "南明区", 1.0, 0.4),
    ("530102", "昆明", "五华区", 0.8, 0.5), ("230102", "哈尔滨", "道里区", 0.8, 0.3),
    ("210102", "沈阳", "和平区", 0.7, 0.4), ("130102", "石家庄", "长安区", 0.9, 0.4),
    ("140105", "太原", "小店区", 0.6, 0.3), ("350203", "厦门", "思明区", 0.3, 1.0),
    ("350102", "福州", "鼓楼区", 0.5, 0.6), ("150102", "呼和浩特", "新城区", 0.4, 0.2),
    ("650102", "乌鲁木齐", "天山区", 0.4, 0.2), ("653101", "喀什", "", 0.3, 0.05),
    ("540102", "拉萨", "城关区", 0.1, 0.05), ("222401", "延吉", "", 0.3, 0.05),
]

COUNTIES: list[County] = [County(*r) for r in _RAW]
BY_CODE: dict[str, County] = {c.code: c for c in COUNTIES}
BY_PREFECTURE: dict[str, list[County]] = {}
for _c in COUNTIES:
    BY_PREFECTURE.setdefault(_c.prefecture, []).append(_c)

ORIGIN_W = list(accumulate(c.origin for c in COUNTIES))  # cumulative, for rng.choices(cum_weights=)
DEST_W = list(accumulate(c.dest for c in COUNTIES))
MINORITY_HOME = {"uyghur": ["650102", "653101"], "tibetan": ["540102"], "korean": ["222401"],
                 "mongol": ["150102"]}

MUNICIPALITIES = ("11", "12", "31", "50")


def is_local(id_number: str, city_code: str) -> bool:
    """CONTRACT 2: same prefecture (first 4 digits), or same first 2 digits for municipalities."""
    if id_number[:2] in MUNICIPALITIES or city_code[:2] in MUNICIPALITIES:
        return id_number[:2] == city_code[:2]
    return id_number[:4] == city_code[:4]


def city_label(c: County) -> str:
    return f"{c.city}市{c.district}"


_ROADS = ["人民路", "解放路", "建设路", "中山路", "胜利路", "和平路", "新华路", "文化路",
          "朝阳路", "长江路", "黄河路", "青年路", "学府路", "科技路", "工业大道", "桃园路",
          "滨河路", "光明路", "幸福路", "东风路", "南京路", "北京路", "翠竹路", "花园路",
          "湖滨路", "创业路"]
_ESTATES = ["花园", "小区", "新村", "公寓", "家园", "城", "苑", "雅居", "名都", "华府"]
_ESTATE_PRE = ["阳光", "锦绣", "金色", "碧桂", "万科", "翠湖", "幸福", "富力", "保利", "世纪",
               "东方", "龙湖", "绿地", "恒大", "城市", "滨江"]
_HOTEL_BRANDS = ["如家酒店", "汉庭酒店", "7天连锁酒店", "锦江之星", "全季酒店", "亚朵酒店",
                 "维也纳酒店", "格林豪泰", "桔子酒店", "希尔顿欢朋", "城市便捷酒店", "速8酒店",
                 "宾馆", "大酒店", "商务酒店", "快捷酒店"]
_FIRM_WORDS = ["华胜", "鑫达", "宏远", "恒通", "盛世", "天成", "永兴", "金鹏", "瑞丰", "安达",
               "博远", "中联", "新思", "众创", "泰和", "立信", "海纳", "卓越", "捷讯", "德盛"]
_FIRM_TRADES = ["电子", "科技", "物流", "建筑工程", "餐饮管理", "服装", "家政服务", "贸易",
                "机械制造", "物业管理", "网络科技", "汽车服务", "食品", "塑胶制品", "快递"]
_FIRM_FORMS = ["有限公司", "有限公司", "有限责任公司", "股份有限公司", "厂", "分公司"]


def address(rng: random.Random, c: County) -> str:
    road = rng.choice(_ROADS)
    if rng.random() < 0.6:
        est = rng.choice(_ESTATE_PRE) + rng.choice(_ESTATES)
        return (f"{city_label(c)}{road}{rng.randint(1, 399)}号{est}{rng.randint(1, 30)}栋"
                f"{rng.randint(1, 4)}单元{rng.randint(1, 33)}{rng.randint(1, 8):02d}")
    return (f"{city_label(c)}{road}{rng.randint(1, 999)}号"
            f"{rng.randint(1, 12)}{rng.randint(1, 6):02d}")


class Catalog:
    """Per-county hotels and employers, fixed for one seed (so IDs and names recur)."""

    def __init__(self, rng: random.Random, hotels_per_county: int = 25, firms_per_county: int = 40):
        self.hotels: dict[str, list[tuple[str, str]]] = {}
        self.firms: dict[str, list[tuple[str | None, str]]] = {}
        for c in COUNTIES:
            hs = []
            for i in range(1, hotels_per_county + 1):
                brand = rng.choice(_HOTEL_BRANDS)
                where = (c.district or c.city).rstrip("区县")
                hs.append((f"H{c.code}-{i:03d}", f"{c.city}{where}{rng.choice(_ROADS)}{brand}"))
            self.hotels[c.code] = hs
            fs = []
            for i in range(1, firms_per_county + 1):
                name = (f"{c.city}市{rng.choice(_FIRM_WORDS)}{rng.choice(_FIRM_TRADES)}"
                        f"{rng.choice(_FIRM_FORMS)}")
                uscc = f"91{c.code[:4]}00MA{rng.randint(0, 0xFFFFFF):06X}{i:02d}"[:18]
                fs.append((uscc if rng.random() < 0.75 else None, name))
            self.firms[c.code] = fs
