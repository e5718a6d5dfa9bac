"""Chinese names as they occur, and the ways source systems garble them.

Surname weights are rough shares of the population (per mille); given names are drawn from
per-sex character pools with a heavy head (伟, 芳, 敏...), so common full names such as 张伟
recur the way they do in life.
"""

from __future__ import annotations

import random
from functools import lru_cache
from itertools import accumulate

# --- surnames ------------------------------------------------------------------------------
_SURNAMES = (
    "王71 李70 张67 刘54 陈45 杨31 黄22 赵20 吴19 周19 徐15 孙14 马13 朱13 胡12 郭12 何12 "
    "林11 高11 罗11 郑10 梁9 谢8 宋8 唐8 许7 韩7 冯7 邓7 曹7 彭6 曾6 肖6 田6 董5 袁5 潘5 "
    "于5 蒋5 蔡5 余5 杜5 叶5 程5 苏4 魏4 吕4 丁4 任4 沈4 姚4 卢4 姜4 崔3 钟3 谭3 陆3 汪3 "
    "范3 金3 石3 廖3 贾3 夏3 韦3 付3 方3 白3 邹3 孟3 熊3 秦3 邱3 江3 尹3 薛2 闫2 段2 雷2 "
    "侯2 龙2 史2 陶2 黎2 贺2 顾2 毛2 郝2 龚2 邵2 万2 钱2 严2 覃2 武2 戴2 莫2 孔2 向2 汤2 "
    "常1 葛1 温1 康1 施1 文1 牛1 樊1 葛1 邢1 安1 齐1 易1 乔1 伍1 庞1 颜1 倪1 庄1 聂1 章1 "
    "鲁1 岳1 翟1 殷1 詹1 申1 欧1 耿1 关1 兰1 焦1 俞1 左1 柳1 甘1 祝1 包1 宁1 尚1 符1 舒1 "
    "阮1 柯1 纪1 梅1 童1 凌1 毕1 单0.6 解0.4 查0.4 仇0.3 区0.2 朴0.3 盖0.2 "
    "欧阳0.6 司马0.1 诸葛0.1 上官0.1 司徒0.2 东方0.1 皇甫0.1 令狐0.05 慕容0.05 夏侯0.05"
)
SURNAMES: list[str] = []
SURNAME_W: list[float] = []
for _tok in _SURNAMES.split():
    _i = next(i for i, ch in enumerate(_tok) if ch.isdigit())
    if _tok[:_i] not in SURNAMES:
        SURNAMES.append(_tok[:_i])
        SURNAME_W.append(float(_tok[_i:]))

SURNAME_CW = list(accumulate(SURNAME_W))
COMPOUND = {s for s in SURNAMES if len(s) == 2}

# Special surname readings (单 shan, 曾 zeng, ...); everything else goes through pypinyin.
SURNAME_READING = {"单": "shan", "曾": "zeng", "仇": "qiu", "解": "xie", "查": "zha", "区": "ou",
                   "朴": "piao", "盖": "ge", "覃": "qin", "尉迟": "yuchi", "长孙": "zhangsun",
                   "乐": "yue", "召": "shao", "缪": "miao", "单于": "chanyu"}

# --- given names ---------------------------------------------------------------------------
# (token, weight): tokens of length 2 are whole given names; length 1 can be a single-character
# name or combined into a two-character one.
_MALE = ("伟12 强7 磊7 军7 勇6 杰6 涛5 斌5 超5 明5 辉4 刚4 平4 鹏4 飞4 波4 华4 亮3 俊3 峰3 "
         "浩3 宇3 鑫3 晨3 建3 志3 文3 海3 林3 东3 国3 龙2 成2 凯2 帅2 阳2 兵2 博2 旭2 晓2 "
         "建国3 建华2 志强2 志明2 国强2 晓明2 文博1 子豪2 浩然2 宇轩2 俊杰2 家豪1 梓涵1 "
         "海涛1 春生1 德华1 立新1 克己0.5 永康1 天佑1 振宇1 明辉1 云飞1")
_FEMALE = ("芳12 娜8 敏8 静8 丽7 艳6 娟5 霞5 秀英4 桂英3 玉兰3 婷5 雪4 颖4 慧4 琳3 洁3 "
           "玲3 燕4 红4 萍3 莉3 倩3 欣3 佳3 梅3 兰2 云2 菲2 晶2 蕾2 琴2 凤2 晓2 "
           "丽娟2 晓燕2 秀兰2 婷婷2 欣怡2 梓涵2 雨涵2 诗涵1 思雨1 佳怡1 晓红1 春梅1 "
           "海燕1 淑珍1 玉珍1 美玲1 雅琴1 晴0.5 己0.1 慧敏1 文静1 丹1 瑶2")
_SECOND_M = "伟强磊军勇杰涛斌超明辉刚平鹏飞波华亮俊峰浩宇鑫晨龙成凯阳兵博旭林东"
_SECOND_F = "芳娜敏静丽艳娟霞婷雪颖慧琳洁玲燕红萍莉倩欣佳梅兰云菲晶蕾琴凤瑶丹"
_FIRST_M = "晓建志国文海子家天永明俊宇浩振云春德立新金小"
_FIRST_F = "晓丽秀春海玉美雅淑慧文欣佳思雨诗梓小金红"


def _pool(spec: str) -> tuple[list[str], list[float]]:
    toks, ws = [], []
    for tok in spec.split():
        i = next(i for i, ch in enumerate(tok) if ch.isdigit() or ch == ".")
        toks.append(tok[:i])
        ws.append(float(tok[i:]))
    return toks, ws


_M_TOK, _M_W = _pool(_MALE)
_F_TOK, _F_W = _pool(_FEMALE)
_M_W = list(accumulate(_M_W))  # cumulative
_F_W = list(accumulate(_F_W))

# Minority names: a given-name part, the middle dot, a father's-name part (Uyghur style);
# Tibetan and Mongol names without a dot.
_UYGHUR_M = ["买买提", "艾力", "阿不都", "吐尔逊", "艾合买提", "阿布拉", "努尔", "依明", "热合曼"]
_UYGHUR_F = ["阿依古丽", "古丽娜尔", "热依拉", "帕提古丽", "迪丽拜尔", "米日古丽", "努尔古丽"]
_UYGHUR_FATHER = ["吐尔逊", "艾买提", "吾斯曼", "阿不都", "买买提", "热合曼", "司马义", "伊力"]
_TIBETAN = ["扎西次仁", "次仁多吉", "卓玛", "央金", "格桑", "平措", "德吉", "拉巴次仁", "尼玛"]
_MONGOL = ["巴特尔", "乌兰", "其其格", "苏和", "额尔敦", "那仁", "斯琴"]
DOT = "\u00b7"
DOT_VARIANTS = ("\u2022", "\u30fb", "\u2027", "")


def given_name(rng: random.Random, sex: str) -> str:
    toks, ws = (_M_TOK, _M_W) if sex == "M" else (_F_TOK, _F_W)
    r = rng.random()
    if r < 0.65:
        return rng.choices(toks, cum_weights=ws)[0]
    first = rng.choice(_FIRST_M if sex == "M" else _FIRST_F)
    second = rng.choice(_SECOND_M if sex == "M" else _SECOND_F)
    return first + second


def han_name(rng: random.Random, sex: str, surname: str | None = None) -> tuple[str, str]:
    """Return (surname, given)."""
    s = surname or rng.choices(SURNAMES, cum_weights=SURNAME_CW)[0]
    return s, given_name(rng, sex)


def minority_name(rng: random.Random, sex: str, group: str) -> tuple[str, str]:
    """Return ('', full name) - these names have no Han surname."""
    if group == "uyghur":
        first = rng.choice(_UYGHUR_M if sex == "M" else _UYGHUR_F)
        return "", first + DOT + rng.choice(_UYGHUR_FATHER)
    if group == "tibetan":
        return "", rng.choice(_TIBETAN)
    if group == "mongol":
        return "", rng.choice(_MONGOL)
    # korean (Yanbian): Han-character names with Korean surnames
    s = rng.choice(["朴", "金", "崔", "李", "郑"])
    return s, given_name(rng, sex)


# --- garbling ------------------------------------------------------------------------------
# Homophones (same toneless pinyin): the wrong IME candidate.
HOMOPHONES: dict[str, str] = {
    "晓": "小", "小": "晓", "明": "铭", "伟": "玮", "丽": "莉", "莉": "丽", "静": "婧",
    "芳": "方", "军": "君", "杰": "洁", "华": "化", "燕": "艳", "艳": "燕", "敏": "民",
    "霞": "侠", "刚": "钢", "建": "健", "平": "萍", "萍": "平", "红": "宏", "波": "博",
    "涛": "滔", "峰": "锋", "磊": "蕾", "玲": "铃", "娟": "鹃", "婷": "亭",
    "颖": "莹", "雪": "学", "梅": "玫", "兰": "岚", "秀": "绣", "英": "瑛", "志": "智",
    "文": "雯", "斌": "彬", "超": "潮", "勇": "永", "云": "芸", "飞": "菲",
    "东": "冬", "林": "琳", "宇": "雨", "浩": "昊", "欣": "心", "佳": "家", "慧": "惠",
    "琴": "勤", "倩": "茜", "凤": "峰", "龙": "隆", "成": "诚", "凯": "铠", "阳": "洋",
    "兵": "冰", "旭": "序", "晨": "辰", "鑫": "欣", "强": "墙", "娜": "纳", "瑶": "遥",
    "国": "帼", "海": "亥", "子": "紫", "俊": "骏", "春": "纯", "德": "得", "丹": "单",
    # surnames, rarer
    "张": "章", "王": "汪", "杨": "阳", "刘": "柳", "徐": "许", "肖": "萧", "付": "傅",
    "吴": "伍", "程": "成", "黄": "皇",
}
SURNAME_HOMOPHONE_SHARE = 0.15  # share of homophone slips that hit the surname

# Look-alike characters (handwriting, scanning); pinyin does NOT make these equal.
LOOKALIKES: dict[str, str] = {
    "己": "已", "已": "己", "未": "末", "末": "未", "戊": "戌", "戌": "戊", "土": "士",
    "士": "土", "王": "玉", "玉": "王", "大": "太", "太": "大", "晴": "睛", "春": "舂",
    "英": "荚", "桂": "挂", "伟": "传", "明": "朋", "东": "车",
    "洁": "浩", "林": "材", "红": "江", "秀": "季",
    "军": "车", "敏": "繁",
    "李": "季", "陈": "阵", "赵": "赶", "孙": "逊", "周": "同", "胡": "故", "郭": "部",
    "丽": "而", "芳": "芬", "平": "乎", "波": "坡", "刘": "刻", "杰": "杏",
    "超": "起", "华": "毕", "斌": "赋", "霞": "震", "燕": "蒸",
    "梅": "海", "海": "梅", "雪": "雷",
    "佳": "住", "欣": "炊", "宇": "字", "浩": "活", "飞": "长", "亮": "高",
    "成": "戍", "志": "忐", "国": "固", "文": "丈", "子": "孑", "龙": "尤",
    "晨": "晟", "倩": "情", "玲": "冷", "兰": "三",
}


def _swap_one(rng: random.Random, surname: str, given: str, table: dict[str, str],
              surname_share: float) -> str | None:
    """Replace one character from ``table``; None if no character of the name is in it."""
    gi = [i for i, ch in enumerate(given) if ch in table]
    si = [i for i, ch in enumerate(surname) if ch in table]
    if si and (not gi or rng.random() < surname_share):
        i = rng.choice(si)
        return surname[:i] + table[surname[i]] + surname[i + 1:] + given
    if gi:
        i = rng.choice(gi)
        return surname + given[:i] + table[given[i]] + given[i + 1:]
    return None


def homophone(rng: random.Random, surname: str, given: str) -> str | None:
    return _swap_one(rng, surname, given, HOMOPHONES, SURNAME_HOMOPHONE_SHARE)


def lookalike(rng: random.Random, surname: str, given: str) -> str | None:
    return _swap_one(rng, surname, given, LOOKALIKES, 0.3)


def dot_variant(rng: random.Random, name: str) -> str | None:
    if DOT not in name:
        return None
    return name.replace(DOT, rng.choice(DOT_VARIANTS))


# --- romanisation and script -----------------------------------------------------------------
@lru_cache(maxsize=65536)
def _syllables(text: str) -> tuple[str, ...]:
    from pypinyin import Style, lazy_pinyin

    return tuple(s for s in lazy_pinyin(text.replace(DOT, " "), style=Style.NORMAL,
                                        errors="ignore") if s.strip())


def pinyin_parts(surname: str, given: str) -> tuple[str, list[str]]:
    """(surname pinyin, given-name syllables), with the special surname readings."""
    if surname:
        sp = SURNAME_READING.get(surname) or "".join(_syllables(surname))
    else:
        sp = ""
    return sp, list(_syllables(given))


def romanise(rng: random.Random, surname: str, given: str) -> str:
    """A Latin-script rendering in one of the forms seen on forms: any order, any case."""
    sp, gs = pinyin_parts(surname, given)
    if not sp:  # minority: transliterate as-is, parts by the dot
        parts = [("".join(_syllables(p))).capitalize() for p in given.split(DOT) if p]
        out = " ".join(parts)
        return out.upper() if rng.random() < 0.5 else out
    g = "".join(gs)
    form = rng.random()
    if form < 0.30:
        return f"{sp.upper()} {g.capitalize()}"          # ZHANG Xiaoming
    if form < 0.50:
        return f"{g.capitalize()} {sp.capitalize()}"     # Xiaoming Zhang
    if form < 0.62:
        return f"{sp}{g}".upper()                        # ZHANGXIAOMING
    if form < 0.74:
        return f"{sp.capitalize()} {g.capitalize()}"     # Zhang Xiaoming
    if form < 0.84:
        return f"{sp} {g}"                               # zhang xiaoming
    if form < 0.92:
        return " ".join([sp.upper()] + [s.upper() for s in gs])   # ZHANG XIAO MING
    return f"{g.upper()} {sp.upper()}"                   # XIAOMING ZHANG


@lru_cache(maxsize=65536)
def traditional(name: str) -> str:
    return _cc().convert(name)


@lru_cache(maxsize=1)
def _cc():
    from opencc import OpenCC

    return OpenCC("s2t")
