"""What Latin-script names get beside Jaro-Winkler: transliteration variants of Chinese
surnames, nicknames, and initials. Small tables, upper-case tokens as
:func:`matchers.normalise.normalise_name` writes Latin names; every test is on whole tokens.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

#: Romanisations of Chinese surnames other than Hanyu Pinyin (Wade-Giles, Cantonese, Hokkien,
#: older spellings) -> the pinyin syllables they can stand for.
SURNAME_VARIANTS: dict[str, tuple[str, ...]] = {
    "chang": ("zhang",), "cheung": ("zhang",), "chong": ("zhang", "zhong"),
    "chan": ("chen",), "chen": ("chen",), "tan": ("chen",), "tin": ("tian",),
    "wong": ("wang", "huang"), "hwang": ("huang",), "ng": ("wu",), "woo": ("wu",),
    "lee": ("li",), "lei": ("li",), "ly": ("li",), "hsu": ("xu",),
    "tsui": ("xu",), "chui": ("xu",), "chow": ("zhou",), "chou": ("zhou",), "chau": ("zhou",),
    "tsai": ("cai",), "choi": ("cai",), "chua": ("cai",), "lau": ("liu",), "lao": ("liu",),
    "yeung": ("yang",), "yeoh": ("yang",), "lam": ("lin",), "lim": ("lin",),
    "kwok": ("guo",), "kuo": ("guo",), "koh": ("xu", "gao"), "ho": ("he",), "hoh": ("he",),
    "ko": ("gao",), "kao": ("gao",), "ma": ("ma",), "mah": ("ma",), "leung": ("liang",),
    "tang": ("deng", "tang"), "teng": ("deng",), "tsang": ("zeng",), "tseng": ("zeng",),
    "chu": ("zhu",), "chiu": ("zhao", "qiu"), "chao": ("zhao",), "siu": ("xiao",),
    "hsiao": ("xiao",), "sun": ("sun",), "suen": ("sun",), "soon": ("sun",), "hu": ("hu",),
    "wu": ("wu",), "fung": ("feng",), "fong": ("fang",), "kong": ("kong", "jiang"),
    "chiang": ("jiang",), "keung": ("jiang",), "tse": ("xie",), "hsieh": ("xie",),
    "cheng": ("zheng", "cheng"), "tay": ("zheng",), "yip": ("ye",), "yeh": ("ye",),
    "lo": ("luo", "lu"), "law": ("luo",), "lu": ("lu",), "loo": ("lu",), "pang": ("peng",),
    "pan": ("pan",), "poon": ("pan",), "tung": ("dong",), "yu": ("yu",), "yue": ("yu",),
    "tsao": ("cao",), "tso": ("cao",), "shih": ("shi",), "sze": ("shi",),
    "tai": ("dai",), "tsoi": ("cai",), "kwan": ("guan",), "kuan": ("guan",), "liao": ("liao",),
    "liu": ("liu",), "yuen": ("yuan",), "yuan": ("yuan",), "mok": ("mo",), "mo": ("mo",),
}

#: Nicknames and short forms -> the given names they stand for (English, a small table).
NICKNAMES: dict[str, tuple[str, ...]] = {
    "BILL": ("WILLIAM",), "BILLY": ("WILLIAM",), "WILL": ("WILLIAM",), "LIAM": ("WILLIAM",),
    "BOB": ("ROBERT",), "BOBBY": ("ROBERT",), "ROB": ("ROBERT",), "ROBBIE": ("ROBERT",),
    "BERT": ("ROBERT", "ALBERT", "HERBERT"), "DICK": ("RICHARD",), "RICK": ("RICHARD",),
    "RICH": ("RICHARD",), "RICKY": ("RICHARD",), "JIM": ("JAMES",), "JIMMY": ("JAMES",),
    "JAMIE": ("JAMES",), "JACK": ("JOHN",), "JOHNNY": ("JOHN",), "JON": ("JONATHAN", "JOHN"),
    "MIKE": ("MICHAEL",), "MICK": ("MICHAEL",), "MICKY": ("MICHAEL",), "TOM": ("THOMAS",),
    "TOMMY": ("THOMAS",), "DAVE": ("DAVID",), "DAVY": ("DAVID",), "STEVE": ("STEPHEN", "STEVEN"),
    "CHRIS": ("CHRISTOPHER", "CHRISTINE", "CHRISTINA"), "KIT": ("CHRISTOPHER",),
    "TONY": ("ANTHONY",), "DAN": ("DANIEL",), "DANNY": ("DANIEL",), "SAM": ("SAMUEL", "SAMANTHA"),
    "BEN": ("BENJAMIN",), "JOE": ("JOSEPH",), "JOEY": ("JOSEPH",), "ED": ("EDWARD",),
    "EDDIE": ("EDWARD",), "TED": ("EDWARD", "THEODORE"), "NED": ("EDWARD",),
    "ANDY": ("ANDREW",), "DREW": ("ANDREW",), "MATT": ("MATTHEW",), "PAT": ("PATRICK", "PATRICIA"),
    "PETE": ("PETER",), "NICK": ("NICHOLAS",), "NICKY": ("NICHOLAS", "NICOLE"),
    "ALEX": ("ALEXANDER", "ALEXANDRA"), "SANDY": ("ALEXANDRA", "SANDRA"), "FRED": ("FREDERICK",),
    "HARRY": ("HENRY", "HAROLD"), "HANK": ("HENRY",), "CHARLIE": ("CHARLES",),
    "CHUCK": ("CHARLES",), "GREG": ("GREGORY",), "JEFF": ("JEFFREY",), "KEN": ("KENNETH",),
    "LARRY": ("LAWRENCE",), "LEN": ("LEONARD",), "PHIL": ("PHILIP",), "RAY": ("RAYMOND",),
    "RON": ("RONALD",), "DON": ("DONALD",), "GERRY": ("GERALD",), "JERRY": ("GERALD", "JEROME"),
    "TIM": ("TIMOTHY",), "VIN": ("VINCENT",), "VINNY": ("VINCENT",), "ZAC": ("ZACHARY",),
    "ZACK": ("ZACHARY",), "NATE": ("NATHAN", "NATHANIEL"), "JOSH": ("JOSHUA",),
    "LIZ": ("ELIZABETH",), "BETH": ("ELIZABETH",), "BETTY": ("ELIZABETH",),
    "LIZZIE": ("ELIZABETH",), "ELIZA": ("ELIZABETH",), "KATE": ("KATHERINE", "CATHERINE"),
    "KATIE": ("KATHERINE", "CATHERINE"), "KATHY": ("KATHERINE", "KATHLEEN"),
    "CATHY": ("CATHERINE",), "MAGGIE": ("MARGARET",), "MEG": ("MARGARET",),
    "PEGGY": ("MARGARET",), "JENNY": ("JENNIFER",), "JEN": ("JENNIFER",),
    "SUE": ("SUSAN", "SUZANNE"), "SUSIE": ("SUSAN",), "ABBY": ("ABIGAIL",), "MANDY": ("AMANDA",),
    "BECKY": ("REBECCA",), "BECCA": ("REBECCA",), "VICKY": ("VICTORIA",), "TORI": ("VICTORIA",),
    "DEBBIE": ("DEBORAH",), "DEB": ("DEBORAH",), "JESS": ("JESSICA",), "JESSIE": ("JESSICA",),
    "MOLLY": ("MARY",), "POLLY": ("MARY",), "NANCY": ("ANN", "ANNE"), "ANNIE": ("ANN", "ANNE"),
    "TRISH": ("PATRICIA",), "PATTY": ("PATRICIA",), "TINA": ("CHRISTINA", "CHRISTINE"),
    "STEPH": ("STEPHANIE",), "ALLIE": ("ALISON",), "EMMY": ("EMILY",), "MILLIE": ("MILDRED",),
    "LOU": ("LOUIS", "LOUISE"), "LULU": ("LOUISE",), "TESS": ("TERESA",), "TERRY": ("TERENCE",),
}


@lru_cache(maxsize=4096)
def _given_forms(token: str) -> frozenset[str]:
    """The forms a name token stands for: itself and, for a nickname, its full names."""
    return frozenset((token, *NICKNAMES.get(token, ())))


def nickname_match(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """As many tokens on each side, one to one equal or nickname and full name (at least one
    nickname pair): ``BILL SMITH`` / ``SMITH WILLIAM``."""
    if len(a) != len(b) or not a or Counter(a) == Counter(b):
        return False
    rest = list(b)
    for t in a:
        hit = next((o for o in rest if o == t), None)
        if hit is None:
            hit = next((o for o in rest if _given_forms(t) & _given_forms(o)), None)
        if hit is None:
            return False
        rest.remove(hit)
    return True


def initials_match(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """One side abbreviates given names to initials, or drops a middle initial, and every
    other token agrees: ``J SMITH`` / ``JOHN SMITH``, ``JOHN A SMITH`` / ``JOHN SMITH``. At least
    one full token of two or more letters must be equal on both sides."""
    if not a or not b or Counter(a) == Counter(b):
        return False
    if not any(len(t) == 1 for t in a + b):
        return False
    full_a = [t for t in a if len(t) > 1]
    full_b = [t for t in b if len(t) > 1]
    if not set(full_a) & set(full_b):
        return False
    # Every full token of one side is on the other, as itself or as its initial; an initial
    # that has no token is a dropped middle initial (allowed on one side only).
    for mine, theirs in ((a, b), (b, a)):
        pool = list(theirs)
        for t in (t for t in mine if len(t) > 1):
            if t in pool:
                pool.remove(t)
            elif t[0] in pool:
                pool.remove(t[0])
            else:
                return False
    return True


def surname_readings(token: str) -> tuple[str, ...]:
    """The pinyin syllables a lower-case Latin surname token can stand for (itself first)."""
    return (token, *(v for v in SURNAME_VARIANTS.get(token, ()) if v != token))


@lru_cache(maxsize=65536)
def variant_keys(syllables: tuple[str, ...]) -> frozenset[str]:
    """Order-free name keys (:attr:`NameInfo.key <matchers.normalise.NameInfo.key>`) of a Latin
    name with one token read as another romanisation of a Chinese surname: ``CHANG WEI``
    gives ``wei zhang``, the key of 张伟."""
    out: set[str] = set()
    for i, t in enumerate(syllables):
        for v in SURNAME_VARIANTS.get(t, ()):
            if v != t:
                out.add(" ".join(sorted((*syllables[:i], v, *syllables[i + 1:]))))
    return frozenset(out)
