"""The pure core end to end, embedded state: no Kafka, no Redis."""

import json
import random

import pytest
from corekit import EXAMPLES, core_settings, rid, run_core

from reglink.core.pipeline import Pipeline
from reglink.stores.kv import MemoryKV

settings = core_settings


run = run_core


def final_status(alerts):
    out = {}
    for a in alerts:
        out[a["alert_id"]] = a["status"]
    return out


def load_examples():
    return [json.loads(line) for line in EXAMPLES.read_text(encoding="utf-8").splitlines()]


CHEN = {"name": "陈丽", "id_number": rid("340102", "1988-03-15", 2), "sex": "F"}


def rental(rec_id, person, lease_start, registered_at, city="440305", lease_end=None):
    r = {"source": "rental", "record_id": rec_id, "property_id": "F1", "city_code": city,
         "address": "深圳市南山区", "lease_start": lease_start, "registered_at": registered_at,
         "person": person}
    if lease_end:
        r["lease_end"] = lease_end
    return r


def residence(rec_id, person, registered_at, valid_from, valid_until, city="440305"):
    return {"source": "residence", "record_id": rec_id, "city_code": city, "address": "x",
            "registered_at": registered_at, "valid_from": valid_from,
            "valid_until": valid_until, "person": person}


def job(rec_id, person, start, posted_at, city="440305"):
    return {"source": "job", "record_id": rec_id, "employer_name": "E", "city_code": city,
            "start_date": start, "posted_at": posted_at, "person": person}


def test_examples_raise_exactly_the_documented_alerts():
    pipe, alerts, links = run(load_examples())
    by_rule = {a["rule"]: a for a in alerts}
    assert len(alerts) == 2 and set(by_rule) == {"unregistered_stay", "watchlist_match"}
    stay = by_rule["unregistered_stay"]
    # 陈丽 registered on 12 March, after the deadline: the alert stood, and is resolved by
    # the registration, which joins its evidence (docs/contract.md §2.2).
    assert stay["status"] == "resolved" and stay["prefecture"] == "4403"
    assert stay["deadline"] == "2026-03-07T00:00:00+08:00" == stay["raised_at"]
    assert "R-5531" in stay["record_ids"] and stay["record_ids"][-1] == "T-44001"
    watch = by_rule["watchlist_match"]
    assert watch["watch_id"] == "W-0001" and watch["priority"] == "high"
    levels = {f["feature"]: f["level"] for f in watch["explanation"]["features"]}
    assert levels["name"] == "exact" and levels["birth_date"] == "exact"
    assert watch["record_ids"] == ["W-0001", "H-90002"]
    # All five of 陈丽's records, homophone and pinyin forms included, are one person.
    chen = {links[r] for r in ("HR-000017", "H-88121", "R-5531", "H-88190", "J-20931",
                               "T-44001")}
    assert len(chen) == 1 and links["H-90002"] not in chen


def test_alerts_carry_contract_fields_and_no_clear_ids():
    _pipe, alerts, _ = run(load_examples())
    for a in alerts:
        for field in ("alert_id", "rule", "status", "person_id", "record_ids",
                      "match_probability", "explanation", "raised_at", "rule_version"):
            assert field in a, field
        text = json.dumps(a, ensure_ascii=False)
        assert "340102198803150022" not in text and "110105197904020317" not in text


def test_alert_ids_are_deterministic_across_runs():
    a1 = final_status(run(load_examples())[1])
    a2 = final_status(run(load_examples())[1])
    assert a1 == a2 and len(a1) == 2


def test_reprocessing_a_record_emits_no_new_alert():
    records = load_examples()
    pipe = Pipeline(settings(), MemoryKV())
    first = [o for r in records for o in pipe.process(r)[1]]
    first += pipe.finish()
    again = [o for r in records for o in pipe.process(r)[1] if o.topic == "alerts"]
    assert [o for o in first if o.topic == "alerts"] and again == []


def test_registration_in_time_means_no_alert():
    recs = [rental("R1", CHEN, "2026-03-01", "2026-03-01T10:00:00+08:00"),
            residence("T1", CHEN, "2026-03-02T10:00:00+08:00", "2026-03-02", "2027-03-01"),
            job("J9", {"name": "王五"}, "2026-03-20", "2026-03-20T09:00:00+08:00")]
    _p, alerts, _ = run(recs)
    assert alerts == []


def test_late_registration_that_covers_the_deadline_withdraws_the_alert():
    # The residence source sends nothing until later, so it does not hold the watermark:
    # the alert is raised, then withdrawn when the registration recorded by the deadline
    # arrives (the complete data would not have raised it).
    recs = [rental("R1", CHEN, "2026-03-01", "2026-03-01T10:00:00+08:00"),
            job("J9", {"name": "王五"}, "2026-03-20", "2026-03-20T09:00:00+08:00"),
            rental("R2", {"name": "赵六"}, "2026-03-20", "2026-03-21T09:00:00+08:00"),
            residence("T1", CHEN, "2026-03-03T10:00:00+08:00", "2026-03-03", "2027-03-01")]
    _p, alerts, _ = run(recs)
    assert [a["status"] for a in alerts] == ["raised", "withdrawn"]
    assert alerts[0]["alert_id"] == alerts[1]["alert_id"]
    assert alerts[0]["deadline"] == "2026-03-04T00:00:00+08:00"
    assert alerts[1]["withdrawn_reason"] == "registered_by_deadline"


def test_late_presence_that_moves_the_deadline_withdraws_the_old_alert():
    # The job started on 1 March but is reported after the watermark passed 13 March: the
    # episode starts earlier, so its deadline is 4 March, not 13 March.
    recs = [rental("R1", CHEN, "2026-03-10", "2026-03-10T10:00:00+08:00"),
            rental("R2", {"name": "赵六"}, "2026-03-20", "2026-03-21T09:00:00+08:00"),
            job("J1", CHEN, "2026-03-01", "2026-03-21T10:00:00+08:00")]
    _p, alerts, _ = run(recs)
    got = [(a["deadline"][:10], a["status"], a.get("withdrawn_reason")) for a in alerts]
    assert got == [("2026-03-13", "raised", None), ("2026-03-04", "raised", None),
                   ("2026-03-13", "withdrawn", "episode_changed")]
    in_order = [recs[2], recs[0], recs[1]]  # by report time, had the job been reported on time
    in_order[0] = {**recs[2], "posted_at": "2026-03-01T10:00:00+08:00"}
    _p, alerts, _ = run(in_order)
    assert [(a["deadline"][:10], a["status"]) for a in alerts] == [("2026-03-04", "raised")]


def test_a_registration_made_after_the_deadline_resolves_the_alert():
    recs = [rental("R1", CHEN, "2026-03-01", "2026-03-01T10:00:00+08:00"),
            rental("R2", {"name": "赵六"}, "2026-03-20", "2026-03-21T09:00:00+08:00"),
            residence("T1", CHEN, "2026-03-21T10:00:00+08:00", "2026-03-21", "2027-03-01")]
    _p, alerts, _ = run(recs)
    assert [a["status"] for a in alerts] == ["raised", "resolved"]
    assert alerts[1]["record_ids"] == ["R1", "T1"]  # the late registration is evidence


def test_locals_and_municipalities_owe_nothing():
    local = {"name": "李雷", "id_number": rid("440305", "1990-01-01", 11)}
    beijing = {"name": "韩梅梅", "id_number": rid("110105", "1990-01-01", 12)}
    recs = [rental("R1", local, "2026-03-01", "2026-03-01T10:00:00+08:00", city="440306"),
            rental("R2", beijing, "2026-03-01", "2026-03-01T10:00:00+08:00", city="110108"),
            job("J9", {"name": "王五"}, "2026-04-20", "2026-04-20T09:00:00+08:00")]
    _p, alerts, _ = run(recs)
    assert alerts == []


def test_unknown_resident_id_owes_nothing():
    recs = [rental("R1", {"name": "无名氏", "phone": "13900000000"}, "2026-03-01",
                   "2026-03-01T10:00:00+08:00"),
            job("J9", {"name": "王五"}, "2026-04-20", "2026-04-20T09:00:00+08:00")]
    assert run(recs)[1] == []


def test_grace_periods_are_settings():
    recs = [rental("R1", CHEN, "2026-03-01", "2026-03-01T10:00:00+08:00"),
            job("J9", {"name": "王五"}, "2026-03-07", "2026-03-07T09:00:00+08:00")]
    assert len(run(recs)[1]) == 1
    assert run(recs, grace_rental_s=10 * 86400)[1] == []


WATCH = {"source": "watchlist", "watch_id": "W-9", "action": "add", "priority": "medium",
         "person": {"name": "陈丽", "birth_date": "1988-03-15", "sex": "F"}}


def hotel_in(rec_id, person, time, city="440305"):
    return {"source": "hotel", "record_id": rec_id, "event": "check_in", "hotel_id": "H1",
            "city_code": city, "time": time, "person": person}


def test_watchlist_remove_withdraws_and_stops_alerts():
    recs = [WATCH, hotel_in("H1", CHEN, "2026-03-01T10:00:00+08:00"),
            {**WATCH, "action": "remove"},
            hotel_in("H2", CHEN, "2026-03-05T10:00:00+08:00")]
    _p, alerts, _ = run(recs)
    assert [(a["rule"], a["status"]) for a in alerts] == [
        ("watchlist_match", "raised"), ("watchlist_match", "withdrawn")]


def test_watchlist_raises_once_per_person_in_either_order():
    h1 = hotel_in("H1", CHEN, "2026-03-01T10:00:00+08:00")
    h2 = hotel_in("H2", CHEN, "2026-03-02T10:00:00+08:00")
    a_before = run([WATCH, h1, h2])[1]
    a_after = run([h1, h2, WATCH])[1]
    assert len(a_before) == 1 and final_status(a_before) == final_status(a_after)


def test_namesake_with_another_valid_id_is_not_a_watchlist_match():
    entry = {**WATCH, "person": {**WATCH["person"], "id_number": rid("340102", "1988-03-15", 4)}}
    _p, alerts, _ = run([entry, hotel_in("H1", CHEN, "2026-03-01T10:00:00+08:00")])
    assert alerts == []


def test_namesakes_with_different_ids_stay_apart():
    twin = {"name": "陈丽", "id_number": rid("340102", "1988-03-15", 4), "sex": "F"}
    _p, _a, links = run([hotel_in("H1", CHEN, "2026-03-01T10:00:00+08:00"),
                         hotel_in("H2", twin, "2026-03-01T11:00:00+08:00")])
    assert links["H1"] != links["H2"]


@pytest.mark.parametrize("seed", range(5))
def test_final_statuses_do_not_depend_on_source_interleaving(seed):
    records = load_examples()
    by_source: dict[str, list] = {}
    for r in records:
        by_source.setdefault(r["source"], []).append(r)
    rng = random.Random(seed)
    queues = {s: list(rs) for s, rs in by_source.items()}
    mixed = []
    while queues:
        s = rng.choice(sorted(queues))
        mixed.append(queues[s].pop(0))
        if not queues[s]:
            del queues[s]
    assert final_status(run(mixed)[1]) == final_status(run(records)[1])


def test_idle_sources_release_the_watermark_on_tick():
    # The stream has no end of input: the idle timeout flushes what replay's finish() does.
    recs = [rental("R1", CHEN, "2026-03-01", "2026-03-01T10:00:00+08:00"),
            job("J9", {"name": "王五"}, "2026-03-07", "2026-03-07T09:00:00+08:00"),
            residence("T9", {"name": "赵六"}, "2026-03-02T09:00:00+08:00", "2026-03-02",
                      "2026-04-01")]
    pipe = Pipeline(settings(idle_timeout_s=5), MemoryKV())
    outs = []
    for n, r in enumerate(recs):
        outs += pipe.process(r, now=100.0 + n, channel=f"{r['source']}#0")[1]
    assert [o for o in outs if o.topic == "alerts"] == []  # residence#0 holds at 2 March
    assert pipe.tick(now=103.0) == []
    flushed = [o.value for o in pipe.tick(now=120.0) if o.topic == "alerts"]
    assert [(a["rule"], a["status"]) for a in flushed] == [("unregistered_stay", "raised")]


def hotel_out(rec_id, person, time, city="440305"):
    return {**hotel_in(rec_id, person, time, city), "event": "check_out"}


def test_check_out_read_before_its_check_in_still_closes_the_stay():
    stay = [hotel_in("H1", CHEN, "2026-03-01T10:00:00+08:00"),
            hotel_out("H2", CHEN, "2026-03-03T10:00:00+08:00"),
            job("J9", {"name": "王五"}, "2026-05-01", "2026-05-01T09:00:00+08:00")]
    in_order = run(stay)[1]
    swapped = run([stay[1], stay[0], stay[2]])[1]
    assert in_order == [] and swapped == []  # a 2-night stay owes nothing
    open_stay = run([stay[0], stay[2]])[1]  # never checked out: 30-day deadline passes
    assert [a["rule"] for a in open_stay] == ["unregistered_stay"]


# --- the watchlist pre-filter: an in-process copy of the watch-index keys ("wk", token "wv")

OTHER_WATCH = {"source": "watchlist", "watch_id": "W-OTHER", "action": "add",
               "person": {"name": "欧阳娜", "id_number": rid("110101", "1970-01-01", 7),
                          "sex": "F"}}


def test_an_entry_added_by_another_pipeline_is_seen_through_the_token():
    """Two pipelines on one store, as two workers on one Redis: A has cached the watch keys,
    then B adds an entry for CHEN. A's next record of CHEN must still raise the alert: the
    changed token makes A reload the keys instead of trusting its copy."""
    kv = MemoryKV()
    a, b = Pipeline(settings(), kv), Pipeline(settings(), kv)
    a.process(OTHER_WATCH)
    stranger = {"name": "赵强", "id_number": rid("440305", "1990-05-05", 3), "sex": "M"}
    a.process(hotel_in("H0", stranger, "2026-02-28T10:00:00+08:00"))  # A's copy: OTHER's keys
    watch = a.rules[[r.name for r in a.rules].index("watchlist_match")]
    assert watch._wkeys_v is not None and watch._wkeys
    b.process(WATCH)
    _pid, outs = a.process(hotel_in("H1", CHEN, "2026-03-01T10:00:00+08:00"))
    assert [(o.value["rule"], o.value["status"]) for o in outs if o.topic == "alerts"] == [
        ("watchlist_match", "raised")]


def test_a_store_without_the_key_set_keeps_the_full_probe():
    """A store with watch entries but no "wk" set and no token: every key is probed,
    also after more entries are added, so no entry is missed; `reglink rebuild` gives it the
    pre-filter."""
    kv = MemoryKV()
    p = Pipeline(settings(), kv)
    p.process(OTHER_WATCH)
    kv.delete("wk")
    kv.delete("wv")
    fresh = Pipeline(settings(), kv)
    fresh.process(WATCH)
    assert kv.get("wv") is None and not kv.smembers("wk")
    _pid, outs = fresh.process(hotel_in("H1", CHEN, "2026-03-01T10:00:00+08:00"))
    assert [o.value["rule"] for o in outs if o.topic == "alerts"] == ["watchlist_match"]
