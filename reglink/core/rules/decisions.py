"""Reviewers' decisions on alerts: the review state machine and the feedback into matching.

Pure: no Kafka, no Redis, no web. The console builds decision messages here and folds the
``decisions`` topic into review states; the pipeline (worker and replay) turns the same messages
into suppression state in its ``KeyValue`` (:func:`effects`, :func:`suppressed`).

Safeguards (docs/console.md, docs/security.md): a human reviews every alert; each review
state carries a reason code, one that applies to every rule or to the alert's rule alone
(:func:`reasons`); an ``unregistered_stay`` or ``stale_registration`` alert is decided by one
reviewer (it names no wanted person and its dismissal suppresses nothing), while a
``watchlist_match`` needs two *different* reviewers to
confirm it and two to dismiss it (one of them a supervisor for a high-priority entry), since
its dismissal suppresses the (person, watch entry) pair for a period, or for good when both
reviewers say "different person" (a cannot-link); a reviewer who has confirmed or dismissed
takes no second decision on the alert; the second reviewer of a watchlist match of a
configured priority (``high`` by default) decides blind, without seeing the first decision
(:func:`blind`); a person can be marked as a **misused identity** so
that no watchlist entry hits them again.

A decision message (topic ``decisions``, key ``alert_id``)::

    {decision_id, alert_id, rule, person_id, watch_id?, action, reason, note, reviewer, role,
     decided_at, final, suppress_until?, cannot_link, blind, schema}

``final`` is true when the decision ends the review (the second of two watchlist
dismissals, or a one-step decision); only a final dismissal feeds back into matching. A
message without ``final`` (schema ``reglink/decision/v1``) is final.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from reglink.stores import schema as sk

SCHEMA = "reglink/decision/v2"

ACTIONS = ("confirm", "dismiss", "more_info", "misused_identity")

#: reason codes per action, with the label the console shows.
REASONS: dict[str, dict[str, str]] = {
    "confirm": {
        "identity_verified": "Identity verified against the evidence",
        "documents_checked": "Documents checked",
        "stay_confirmed": "Unregistered stay confirmed",
        "registration_stale": "Old registration still open: its office deregisters it",
    },
    "dismiss": {
        "data_error": "Data-entry error in the evidence",
        "registered_elsewhere": "Registration exists (not in the data)",
        "deregistered_elsewhere": "Deregistration exists (not in the data)",
        "entry_outdated": "Watchlist entry outdated",
        "duplicate": "Duplicate of another alert",
        "different_person": "Different person (cannot-link: never pair them again)",
    },
    "more_info": {
        "need_documents": "Need documents",
        "need_field_check": "Need a field check",
        "ambiguous_identity": "Identity ambiguous",
    },
    "misused_identity": {
        "documents_misused": "Someone else used this person's documents",
    },
}

#: reason codes that apply to the alerts of one rule only; the others apply to every rule.
RULE_REASONS: dict[str, str] = {
    "stay_confirmed": "unregistered_stay",
    "registered_elsewhere": "unregistered_stay",
    "registration_stale": "stale_registration",
    "deregistered_elsewhere": "stale_registration",
    "entry_outdated": "watchlist_match",
}


def reasons(rule: str | None, action: str) -> dict[str, str]:
    """The reason codes (with their labels) a reviewer may give for ``action`` on an alert of
    ``rule``: those of every rule and those of ``rule`` alone."""
    return {code: label for code, label in REASONS.get(action, {}).items()
            if RULE_REASONS.get(code, rule) == rule}


ROLES = ("operator", "supervisor", "auditor")
#: which role may take which action; auditors are read-only.
ALLOWED: dict[str, frozenset[str]] = {
    "operator": frozenset({"confirm", "dismiss", "more_info"}),
    "supervisor": frozenset(ACTIONS),
    "auditor": frozenset(),
}

OPEN, AWAITING_SECOND, AWAITING_SECOND_DISMISSAL = (
    "open", "awaiting_second", "awaiting_second_dismissal")
CONFIRMED, DISMISSED, MORE_INFO, MISUSED = (
    "confirmed", "dismissed", "more_info", "misused_identity")
TERMINAL = frozenset({CONFIRMED, DISMISSED, MISUSED})
#: the review states, in the order the console lists them
STATUSES = (OPEN, AWAITING_SECOND, AWAITING_SECOND_DISMISSAL, MORE_INFO, CONFIRMED, DISMISSED,
            MISUSED)


def confirmations_needed(rule: str | None) -> int:
    """A watchlist hit needs two separate confirmations (EU AI Act art. 14(5))."""
    return 2 if rule == "watchlist_match" else 1


def dismissals_needed(rule: str | None) -> int:
    """A watchlist dismissal suppresses a wanted-person match: two separate reviewers, as
    for a confirmation."""
    return 2 if rule == "watchlist_match" else 1


def supervisor_needed(alert: dict) -> bool:
    """One of the reviewers who dismiss a high-priority watchlist match is a supervisor."""
    return alert.get("rule") == "watchlist_match" and alert.get("priority") == "high"


class DecisionError(ValueError):
    """A decision that the rules do not allow; ``str()`` says why, in one line."""


@dataclass
class Review:
    """Where one alert stands in review, folded from its decisions in order."""

    alert_id: str
    rule: str | None = None
    status: str = OPEN
    reason: str | None = None
    confirmers: list[str] = field(default_factory=list)
    dismissals: list[dict] = field(default_factory=list)  # dismissals awaiting a second
    history: list[dict] = field(default_factory=list)
    decided_at: str | None = None  # when it reached a terminal state

    @property
    def dismissers(self) -> list[str]:
        return [d.get("reviewer", "") for d in self.dismissals]

    def acted(self, reviewer: str) -> dict | None:
        """``reviewer``'s confirmation or dismissal of this alert, if they gave one: they
        take no second decision on it."""
        for d in reversed(self.history):
            if d.get("reviewer") == reviewer and d.get("action") in ("confirm", "dismiss"):
                return d
        return None

    def to_json(self) -> dict:
        return {"alert_id": self.alert_id, "status": self.status, "reason": self.reason,
                "confirmers": list(self.confirmers), "dismissers": self.dismissers,
                "decided_at": self.decided_at, "decisions": len(self.history)}

    def apply(self, d: dict) -> None:
        """Fold one (already validated) decision in. Idempotent on ``decision_id``."""
        if any(h.get("decision_id") == d.get("decision_id") for h in self.history):
            return
        self.history.append(d)
        self.rule = self.rule or d.get("rule")
        action = d.get("action")
        if action == "confirm":
            if d.get("reviewer") not in self.confirmers:
                self.confirmers.append(d.get("reviewer"))
            if len(self.confirmers) >= confirmations_needed(self.rule):
                self._terminal(CONFIRMED, d)
            else:
                self.status, self.reason = AWAITING_SECOND, d.get("reason")
        elif action == "dismiss":
            if d.get("reviewer") not in self.dismissers:
                self.dismissals.append(d)
            if d.get("final", True):
                self._terminal(DISMISSED, d)
            else:
                self.status, self.reason = AWAITING_SECOND_DISMISSAL, d.get("reason")
        elif action == "misused_identity":
            self._terminal(MISUSED, d)
        elif action == "more_info":
            self.status, self.reason = MORE_INFO, d.get("reason")

    def _terminal(self, status: str, d: dict) -> None:
        self.status, self.reason = status, d.get("reason")
        self.decided_at = self.decided_at or d.get("decided_at")


def fold(alert_id: str, decisions: Iterable[dict], rule: str | None = None) -> Review:
    review = Review(alert_id, rule)
    for d in decisions:
        review.apply(d)
    return review


#: Review status a blind second reviewer sees in place of the decisions taken so far.
BLIND = "blind_review"


def blind(alert: dict, review: Review, reviewer: str, priorities: Collection[str]) -> bool:
    """Whether ``reviewer`` decides on ``alert`` blind: a watchlist match of one of
    ``priorities`` (a setting, ``high`` by default), still under review, on which another
    reviewer has decided and ``reviewer`` has not. The console then shows neither that
    decision nor anything that betrays it (the review status, who confirmed or dismissed,
    a pending dismissal) until ``reviewer`` has decided."""
    return (alert.get("rule") == "watchlist_match" and alert.get("priority") in priorities
            and review.status not in TERMINAL and bool(review.history)
            and not any(d.get("reviewer") == reviewer for d in review.history))


def blinded(review: Review) -> Review:
    """What a blind reviewer sees of ``review``: that it is under review, no decision."""
    return Review(review.alert_id, review.rule, status=BLIND)


def check(alert: dict, review: Review, action: str, reason: str, reviewer: str,
          role: str) -> None:
    """Raise :class:`DecisionError` unless ``reviewer`` (``role``) may take this decision."""
    if action not in ACTIONS:
        raise DecisionError(f"unknown action {action!r}")
    if action not in ALLOWED.get(role, frozenset()):
        raise DecisionError(f"role {role!r} may not {action.replace('_', ' ')}")
    allowed = reasons(alert.get("rule"), action)
    if reason not in allowed:
        raise DecisionError(f"reason {reason!r} is not a reason code for {action} on "
                            f"{alert.get('rule')}: use one of {', '.join(allowed)}")
    if action == "misused_identity" and alert.get("rule") != "watchlist_match":
        raise DecisionError("misused identity applies to watchlist matches only")
    if review.status in TERMINAL:
        raise DecisionError(f"alert already {review.status.replace('_', ' ')}")
    done = review.acted(reviewer)
    if done is not None:
        verb = "confirmed" if done["action"] == "confirm" else "dismissed"
        raise DecisionError(f"you already {verb} this alert: a second, different reviewer "
                            "must decide it")
    if (action == "dismiss" and role != "supervisor" and supervisor_needed(alert)
            and len(review.dismissals) + 1 >= dismissals_needed(review.rule or alert.get("rule"))
            and not any(d.get("role") == "supervisor" for d in review.dismissals)):
        raise DecisionError("a high-priority watchlist match is dismissed by two reviewers, "
                            "one of them a supervisor: a supervisor must dismiss it")


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds")


def make_decision(alert: dict, action: str, reason: str, reviewer: str, role: str,
                  note: str = "", now: datetime | None = None,
                  suppress_s: int = 90 * 86400, review: Review | None = None,
                  blind_review: bool = False) -> dict:
    """The decision message for ``alert`` after the decisions folded in ``review`` (none if
    ``None``); validate with :func:`check` first. A dismissal is final when it is the last
    one the rule needs; a final dismissal of a watchlist match is a cannot-link when every
    reviewer who dismissed it said "different person", and otherwise suppresses the pair for
    ``suppress_s`` from now. ``blind_review``: the reviewer decided without having seen the
    decisions taken before (:func:`blind`); the message says so, for the audit."""
    now = now or datetime.now(UTC)
    rule = alert.get("rule")
    prior = review if review is not None else Review(alert["alert_id"], rule)
    decided_at = _iso(now)
    if action == "dismiss":
        final = len(prior.dismissals) + 1 >= dismissals_needed(rule)
    elif action == "confirm":
        final = len({*prior.confirmers, reviewer}) >= confirmations_needed(rule)
    else:
        final = action == "misused_identity"
    reasons = [d.get("reason") for d in prior.dismissals] + [reason]
    cannot_link = (action == "dismiss" and final
                   and all(r == "different_person" for r in reasons))
    digest = hashlib.sha256(
        f"{alert['alert_id']}|{reviewer}|{action}|{decided_at}|{note}".encode()).hexdigest()
    d = {
        "decision_id": "D" + digest[:20],
        "alert_id": alert["alert_id"],
        "rule": rule,
        "person_id": alert.get("person_id"),
        "watch_id": alert.get("watch_id"),
        "prefecture": alert.get("prefecture"),
        "action": action,
        "reason": reason,
        "note": note[:500],
        "reviewer": reviewer,
        "role": role,
        "decided_at": decided_at,
        "final": final,
        "cannot_link": cannot_link,
        "suppress_until": None,
        "blind": blind_review,
        "schema": SCHEMA,
    }
    if action == "dismiss" and final and not cannot_link:
        d["suppress_until"] = _iso(datetime.fromtimestamp(now.timestamp() + suppress_s, UTC))
    return d


# ---------------------------------------------------------------- feedback into matching
MISUSED_SET = sk.MISUSED  # person ids whose identity a reviewer marked misused
#: Where a reviewer's dismissal of the pair behind an alert id is kept.
suppression_key = sk.suppression


def effects(decision: dict) -> list[tuple[str, str, str]]:
    """What a decision changes in the pipeline's state: ``(op, key, value)`` with op
    ``set`` or ``sadd``. Only final dismissals and misused-identity marks feed back."""
    action = decision.get("action")
    if (action == "dismiss" and decision.get("rule") == "watchlist_match"
            and decision.get("final", True)):
        until = None if decision.get("cannot_link") else decision.get("suppress_until")
        value = {"until": until, "reason": decision.get("reason"),
                 "decision_id": decision.get("decision_id")}
        return [("set", suppression_key(decision["alert_id"]), json.dumps(value))]
    if action == "misused_identity" and decision.get("person_id"):
        return [("sadd", MISUSED_SET, decision["person_id"])]
    return []


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def suppressed(get: Callable[[str], str | None], members: Callable[[str], set[str]],
               resolve: Callable[[str], str], alert_id: str, person_id: str,
               at: float | None) -> str | None:
    """Why the (person, watch entry) pair behind ``alert_id`` must not alert at event time
    ``at`` (``None``: unknown, treated as inside any period), or ``None`` if it may."""
    raw = get(suppression_key(alert_id))
    if raw:
        sup = json.loads(raw)
        if sup.get("until") is None:
            return "cannot_link"
        if at is None or at < _ts(sup["until"]):
            return "dismissed"
    for marked in members(MISUSED_SET):
        if marked == person_id or resolve(marked) == person_id:
            return "misused_identity"
    return None
