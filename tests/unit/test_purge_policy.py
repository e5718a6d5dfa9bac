"""The retention policy's pure parts (no services): the cut-off, what an open stay is, and
which alerts are "under review" (alert state in the store + the reviewers' decisions)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from reglink.core.errors import ReglinkError
from reglink.core.rules import decisions as dec
from reglink.core.settings import load_settings
from reglink.purge import alerts_by_person, cutoff_of, open_stay
from reglink.stores.identity import KVIdentityStore
from reglink.stores.kv import MemoryKV

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_cutoff_from_date_time_or_days():
    s = load_settings(hmac_key="k")
    assert cutoff_of("2026-05-01", None, s) == datetime(2026, 5, 1, tzinfo=UTC)
    assert cutoff_of("2026-05-01T08:00:00+08:00", None, s) == datetime(2026, 5, 1, tzinfo=UTC)
    assert (NOW - cutoff_of(None, None, s, now=NOW)).days == 180
    assert (NOW - cutoff_of(None, 30, s, now=NOW)).days == 30
    s7 = load_settings(hmac_key="k", purge_after_days=7)
    assert (NOW - cutoff_of(None, None, s7, now=NOW)).days == 7
    with pytest.raises(ReglinkError):
        cutoff_of("01/05/2026", None, s)


def test_open_stay_is_an_interval_without_end_or_ending_after_the_cutoff():
    def stays(*ends):
        return json.dumps({"4403": {"iv": [[f"r:{n}", 0.0, e, 1.0, None]
                                           for n, e in enumerate(ends)],
                                    "reg": [], "ex": {}}})

    assert not open_stay(None, 100.0) and not open_stay(stays(), 100.0)
    assert not open_stay(stays(50.0, 99.0), 100.0)
    assert open_stay(stays(50.0, 100.0), 100.0)
    assert open_stay(stays(50.0, None), 100.0)  # a job, an open lease, no check-out


def _alert(aid, pid, status, rule="watchlist_match"):
    return {"alert_id": aid, "person_id": pid, "status": status, "rule": rule}


def test_under_review_means_raised_and_no_final_decision():
    kv = MemoryKV()
    store = KVIdentityStore(kv)
    cases = {  # alert -> (person, latest status, decisions, under review?)
        "A1": ("P1", "raised", [], True),
        "A2": ("P2", "raised", [("more_info", "need_documents", "ana")], True),
        "A3": ("P3", "raised", [("confirm", "identity_verified", "ana")], True),  # 1 of 2
        "A4": ("P4", "raised", [("confirm", "identity_verified", "ana"),
                                ("confirm", "documents_checked", "bo")], False),
        "A5": ("P5", "raised", [("dismiss", "different_person", "ana"),
                                ("dismiss", "different_person", "bo")], False),
        "A9": ("P9", "raised", [("dismiss", "different_person", "ana")], True),  # 1 of 2
        "A6": ("P6", "resolved", [], False),
        "A7": ("P7", "withdrawn", [], False),
    }
    decisions = []
    for aid, (pid, status, ds, _) in cases.items():
        alert = _alert(aid, pid, status)
        kv.set(f"a:{aid}", json.dumps(alert))
        review = dec.Review(aid, alert["rule"])
        for n, (action, reason, who) in enumerate(ds):
            decisions.append(dec.make_decision(alert, action, reason, who, "operator",
                                               now=datetime(2026, 1, 1, 0, n, tzinfo=UTC),
                                               review=review))
            review.apply(decisions[-1])
    kv.set("m:P8", "P1")  # an alert on an identity since merged into P1
    kv.set("a:A8", json.dumps(_alert("A8", "P8", "resolved")))
    under, keys = alerts_by_person(kv, store, decisions)
    assert under == {cases[a][0] for a in cases if cases[a][3]}
    assert keys["P1"] == ["a:A1", "a:A8"] and keys["P5"] == ["a:A5"]
