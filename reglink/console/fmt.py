"""How the console writes times, probabilities, places and match weights for a reader.

Every time on every page is shown in one zone (``Settings.console_tz``, ``+08:00`` unless set),
with the zone written out; a probability is written the same way everywhere (four decimals,
never rounded up to 1 or down to 0); a rate as a percentage to one decimal; a prefecture code
comes with its name.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reglink.core import geo
from reglink.core.errors import ConfigError

_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")


def zone(spec: str) -> tzinfo:
    """``"+08:00"`` (a fixed offset), ``"UTC"`` or an IANA name (``"Asia/Shanghai"``)."""
    spec = spec.strip()
    if spec.upper() in ("UTC", "Z"):
        return UTC
    m = _OFFSET.fullmatch(spec)
    if m:
        sign = -1 if m[1] == "-" else 1
        return timezone(sign * timedelta(hours=int(m[2]), minutes=int(m[3])))
    try:
        return ZoneInfo(spec)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"console_tz {spec!r} is not a zone: use an offset such as +08:00 "
                          "or a name such as Asia/Shanghai") from None


def _aware(value: str | float | datetime | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        t = value
    elif isinstance(value, int | float):
        t = datetime.fromtimestamp(value, UTC)
    else:
        try:
            t = datetime.fromisoformat(str(value))
        except ValueError:
            return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def offset(tz: tzinfo, at: datetime | None = None) -> str:
    """The zone as the offset it has at ``at`` (now if ``None``): ``+08:00``."""
    delta = (at or datetime.now(UTC)).astimezone(tz).utcoffset() or timedelta(0)
    minutes = int(delta.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def when(value: str | float | datetime | None, tz: tzinfo) -> str:
    """An ISO time or epoch seconds as ``2026-03-09 00:00 +08:00`` in ``tz``; the input
    unchanged if it is no time, ``""`` for none."""
    t = _aware(value)
    if t is None:
        return "" if value is None else str(value)
    local = t.astimezone(tz)
    return f"{local:%Y-%m-%d %H:%M} {offset(tz, t)}"


def day(value: str | float | datetime, tz: tzinfo) -> str:
    """Month and day in ``tz``: ``03-09``."""
    t = _aware(value)
    return "" if t is None else f"{t.astimezone(tz):%m-%d}"


def local_midnight_after(t: float, tz: tzinfo) -> float:
    """Epoch seconds of the first midnight in ``tz`` after ``t``."""
    local = datetime.fromtimestamp(t, UTC).astimezone(tz)
    nxt = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return nxt.timestamp()


def prob(p: float | None) -> str:
    """A probability to four decimals, everywhere the same: ``0.9941``; ``> 0.9999`` when it
    is below 1 but would round to 1, ``< 0.0001`` when above 0 but would round to 0."""
    if not isinstance(p, int | float):
        return ""
    text = f"{p:.4f}"
    if p < 1 and text == "1.0000":
        return "> 0.9999"
    if p > 0 and text == "0.0000":
        return "< 0.0001"
    return text


def pct(rate: float | None) -> str:
    """A rate (0..1) as a percentage to one decimal: ``12.5 %``; ``""`` for none (a rate
    whose denominator is 0, or one that does not apply to the source)."""
    if not isinstance(rate, int | float):
        return ""
    return f"{rate * 100:.1f} %"


def place(code: str | None) -> str:
    """``4403`` -> ``4403 深圳市, 广东省`` (see :func:`reglink.core.geo.place_label`)."""
    return geo.place_label(code)


_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}.*")


def field(value: object, tz: tzinfo) -> object:
    """A record's field for a reader: a date-time in ``tz`` like every other time on the
    page; anything else (a bare date too) as it is."""
    if isinstance(value, str) and _ISO_TIME.fullmatch(value) and _aware(value) is not None:
        return when(value, tz)
    return value


# ---------------------------------------------------------------- match weights in words
FEATURE_NAMES = {"id": "ID number", "name": "name", "birth_date": "birth date", "sex": "sex",
                 "phone": "phone", "address": "address"}
SAME_LEVELS = frozenset({"exact", "exact_valid", "exact_other", "same"})
#: bits of evidence (log2 Bayes factor) a feature must give to be named in the sentence
STRONG = 1.0


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def verdict(p: float | None) -> str:
    if not isinstance(p, int | float):
        return "the weights do not give a probability"
    if p >= 0.999:
        return "these records are almost certainly the same person"
    if p >= 0.99:
        return "these records are very likely the same person"
    if p >= 0.9:
        return "these records are probably the same person; check the evidence"
    if p >= 0.5:
        return "these records may be the same person; check the evidence closely"
    return "these records are probably not the same person"


def summary(explanation: dict | None) -> str | None:
    """One plain sentence from the per-feature weights: what agrees, what is only similar,
    what differs, and what the probability means. E.g. "Same ID number, name and birth
    date: these records are almost certainly the same person."; ``None`` without weights
    (the chart says so)."""
    if not explanation or not explanation.get("features"):
        return None
    same, similar, differ = [], [], []
    for f in explanation["features"]:
        w, level = float(f.get("weight") or 0.0), str(f.get("level") or "")
        name = FEATURE_NAMES.get(f.get("feature"), str(f.get("feature")).replace("_", " "))
        if w >= STRONG:
            (same if level in SAME_LEVELS else similar).append(
                name if level in SAME_LEVELS else f"{name} ({level.replace('_', ' ')})")
        elif w <= -STRONG:
            differ.append(name)
    parts = []
    if same:
        parts.append(f"Same {_join(same)}")
    if similar:
        parts.append(f"{'similar' if parts else 'Similar'} {_join(similar)}")
    if differ:
        parts.append(f"{'different' if parts else 'Different'} {_join(differ)}")
    head = "; ".join(parts) if parts else "No feature agrees or differs strongly"
    return f"{head}: {verdict(explanation.get('probability'))}."


def counterfactual(c: dict, raised: bool) -> str:
    """One counterfactual of a watchlist alert as a sentence: "Without the ID number on
    rental:R17 this would not be raised (0.4210)."; "A matching phone would raise it
    (0.9990)."."""
    name = FEATURE_NAMES.get(c.get("feature"), str(c.get("feature")).replace("_", " "))
    p = prob(c.get("probability"))
    if c.get("change") == "remove":
        change = f"Without the {name} on {c.get('record')}"
        if not c.get("flips"):
            return f"{change} it would still {'be raised' if raised else 'not be raised'} ({p})."
        return f"{change} this would {'not be raised' if raised else 'be raised'} ({p})."
    change = f"A matching {name}"
    if not c.get("flips"):
        return f"{change} would {'still not' if not raised else 'not'} raise it ({p})."
    return f"{change} would raise it above the threshold ({p})."


def link_counterfactual(c: dict, joined: bool) -> str:
    """One counterfactual of a link near the threshold as a sentence: "Without the phone on
    this record it would not link (0.4210)."; "A matching birth date would link it to
    P0a1b... (0.9990)."."""
    name = FEATURE_NAMES.get(c.get("feature"), str(c.get("feature")).replace("_", " "))
    p = prob(c.get("probability"))
    to = "" if joined else f" to {c.get('person_id')}"
    if c.get("change") == "remove":
        change = f"Without the {name} on this record"
        if not c.get("flips"):
            return f"{change} it would still {'link' if joined else 'not link'}{to} ({p})."
        return f"{change} it would {'not link' if joined else 'link'}{to} ({p})."
    if not c.get("flips"):
        return f"A matching {name} would still not link it{to} ({p})."
    return f"A matching {name} would link it{to} ({p})."


def link_counterfactuals(explanation: dict | None) -> list[str]:
    """A link explanation's counterfactuals as sentences (none unless it was near the
    threshold)."""
    if not isinstance(explanation, dict):
        return []
    joined = not explanation.get("new_identity")
    return [link_counterfactual(c, joined) for c in explanation.get("counterfactuals") or ()]


def counterfactuals(alert: dict) -> list[str]:
    """The alert's counterfactuals as sentences (none for other rules)."""
    raised = alert.get("status") == "raised"
    return [counterfactual(c, raised) for c in alert.get("counterfactuals") or ()]


#: Why an alert was withdrawn (its ``withdrawn_reason``), in a sentence for the reviewer.
WITHDRAWN = {
    "registered_by_deadline": "A registration recorded by the deadline arrived late: with "
                              "it, the data does not raise this alert.",
    "episode_changed": "Records that arrived late changed the presence episode (its start, "
                       "its end or whose records these are), so this deadline no longer "
                       "applies; an alert for the new deadline is raised if one is due.",
    "not_owed": "With the records that arrived late the person owes no registration in this "
                "prefecture (no resident ID on file, or a home in it).",
    "deregistered_by_deadline": "A deregistration recorded by the deadline arrived late: the "
                                "old registration was closed in time.",
    "not_superseded": "With the records that arrived late, no newer registration elsewhere "
                      "supersedes this one by the deadline.",
    "ambiguous": "The watch entry cannot be told apart from another identity: it names no "
                 "one.",
    "conflict": "The identity now carries a valid resident ID different from the watch "
                "entry's.",
    "below_threshold": "The identity as a whole no longer reaches the watchlist threshold.",
    "superseded": "The person is named again under a new alert (the identity learnt its "
                  "resident ID, or merged into one with another anchor).",
    "removed": "The watch entry was removed from the list.",
}


def withdrawn_note(alert: dict) -> str:
    """The reviewer's sentence for a withdrawn alert: why it left the queue."""
    reason = alert.get("withdrawn_reason")
    if reason in WITHDRAWN:
        return WITHDRAWN[reason]
    if alert.get("rule") == "watchlist_match":
        return "The watch entry was removed, or the evidence no longer reaches the threshold."
    return "The complete data does not raise this alert."
