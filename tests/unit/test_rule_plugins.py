"""Alert rules are plug-ins: a rule is an AlertRule subclass plus one registration, and the
pipeline calls its hooks and emits its messages without knowing it.

The rule here exists only in this test: every linked hotel record raises a "seen" alert and
sets a timer a day later that raises a "follow-up" alert."""

from corekit import core_settings, ordered_corpus, rid

from reglink.core.pipeline import Pipeline
from reglink.core.rules.base import AlertRule, alert_id
from reglink.core.rules.clock import iso
from reglink.core.rules.registry import RULES
from reglink.stores import schema as sk
from reglink.stores.kv import MemoryKV

DAY = 86400.0



CHEN = {"name": "陈丽", "id_number": rid("340102", "1988-03-15", 2), "sex": "F"}
WANG = {"name": "王强", "id_number": rid("440305", "1975-07-01", 5), "sex": "M"}


def hotel_in(rec_id, person, time, city="440305"):
    return {"source": "hotel", "record_id": rec_id, "event": "check_in", "hotel_id": "H1",
            "city_code": city, "time": time, "person": person}


def job(rec_id, person, start, posted_at, city="440305"):
    return {"source": "job", "record_id": rec_id, "employer_name": "E", "city_code": city,
            "start_date": start, "posted_at": posted_at, "person": person}


class HotelFollowUp(AlertRule):
    name = "hotel_follow_up"
    reads = (sk.ALERT, sk.DUE)
    writes = (sk.ALERT, sk.DUE)

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.calls: list[tuple] = []

    def on_identity_change(self, change, event):
        self.calls.append(("change", change.kind, change.person_id, change.into, event.key))
        return []

    def on_record(self, event):
        self.calls.append(("record", event.key, event.person_id))
        if event.source != "hotel" or event.report_ts is None:
            return []
        self.schedule((event.person_id, event.key), event.report_ts + DAY)
        return [self.alert(alert_id(self.name, event.key), "raised", event.identity,
                           [event.key], None, {}, iso(event.report_ts), stage="seen")]

    def on_timer(self, parts):
        self.calls.append(("timer", *parts))
        pid, key = parts
        ident = self.ctx.store.get(self.ctx.store.resolve(pid))
        return [self.alert(alert_id(self.name, key, "follow-up"), "raised", ident, [key],
                           None, {}, None, stage="follow-up")]


RECORDS = [
    hotel_in("H1", CHEN, "2026-03-01T10:00:00+08:00"),
    job("J1", WANG, "2026-03-02", "2026-03-01T12:00:00+08:00"),
    job("J2", WANG, "2026-03-10", "2026-03-09T12:00:00+08:00"),
]


def _run(rules, finish=True):
    pipe = Pipeline(core_settings(), MemoryKV(), rules=rules)
    per_record = [pipe.process(r)[1] for r in RECORDS]
    return pipe, per_record, pipe.finish() if finish else []


def _rule(pipe, name):
    return next(r for r in pipe.rules if r.name == name)


def test_a_registered_rule_sees_its_hooks_called_and_its_messages_emitted():
    pipe, per_record, _final = _run((*RULES, HotelFollowUp), finish=False)
    probe = _rule(pipe, "hotel_follow_up")
    pids = [pipe.store.link_of(f"{r['source']}:{r['record_id']}") for r in RECORDS]
    assert [c for c in probe.calls if c[0] == "record"] == [
        ("record", "hotel:H1", pids[0]), ("record", "job:J1", pids[1]),
        ("record", "job:J2", pids[2])]
    # the hotel record's own alert, from the record hook, after the built-in rules' messages
    seen = [o.value for o in per_record[0] if o.value.get("rule") == "hotel_follow_up"]
    assert [(a["stage"], a["person_id"], a["evidence"]) for a in seen] == [
        ("seen", pids[0], ["hotel:H1"])]
    assert per_record[0][-1].value["stage"] == "seen"
    assert seen[0]["rule_version"] == pipe.s.rule_version
    # the timer fires once the watermark passes it: here at the end of input (the hotel
    # source, silent after H1, holds the watermark until then), not before
    assert not [c for c in probe.calls if c[0] == "timer"]
    pipe2, per_record2, final = _run((*RULES, HotelFollowUp))
    assert not [o for outs in per_record2[1:] for o in outs
                if o.value.get("rule") == "hotel_follow_up"]
    probe2 = _rule(pipe2, "hotel_follow_up")
    fired = [o.value for o in final if o.value.get("rule") == "hotel_follow_up"]
    assert ("timer", pids[0], "hotel:H1") in probe2.calls
    assert [(a["stage"], a["person_id"]) for a in fired] == [("follow-up", pids[0])]
    assert pipe2.kv.get(sk.alert(fired[0]["alert_id"])) is not None
    assert not [m for m, _s in pipe2.kv.zupto(sk.DUE, float("inf"))
                if m.startswith("hotel_follow_up|")]


def test_a_rule_sets_timers_under_its_own_name():
    pipe = Pipeline(core_settings(), MemoryKV(), rules=(*RULES, HotelFollowUp))
    pid, _outs = pipe.process(RECORDS[0])
    due = dict(pipe.kv.zupto(sk.DUE, float("inf")))
    member = sk.timer_member("hotel_follow_up", pid, "hotel:H1")
    assert member == f"hotel_follow_up|{pid}|hotel:H1"
    assert sk.parse_timer(member) == ("hotel_follow_up", (pid, "hotel:H1"))
    assert member in due
    # unregistered_stay's timer for the same person sits beside it, tagged with its name
    assert any(sk.parse_timer(m)[0] == "unregistered_stay" for m in due)


def test_an_extra_rule_adds_its_messages_and_changes_nothing_else():
    base, base_records, base_final = _run(RULES)
    plus, plus_records, plus_final = _run((*RULES, HotelFollowUp))

    def without(outs):
        return [(o.topic, o.key, o.value) for o in outs
                if o.value.get("rule") != "hotel_follow_up"]

    for a, b in zip(base_records, plus_records, strict=True):
        assert without(b) == [(o.topic, o.key, o.value) for o in a]
    assert without(plus_final) == [(o.topic, o.key, o.value) for o in base_final]


def test_identity_changes_reach_every_rule_before_the_record_hook(tmp_path):
    records = ordered_corpus(tmp_path, persons=400, days=30, seed=7)
    pipe = Pipeline(core_settings(), MemoryKV(), rules=(*RULES, HotelFollowUp))
    merges = []
    for r in records:
        _pid, outs = pipe.process(r)
        merges += [(o.value["person_id"], o.value["into"]) for o in outs
                   if o.topic == "identity.events" and o.value["event"] == "merged"]
    probe = _rule(pipe, "hotel_follow_up")
    changes = [c for c in probe.calls if c[0] == "change"]
    assert merges and [(c[2], c[3]) for c in changes] == merges
    assert all(c[1] == "merged" for c in changes)
    for c in changes:  # each change is followed by the record hook of the record behind it
        i = probe.calls.index(c)
        after = next(x for x in probe.calls[i:] if x[0] == "record")
        assert after[1] == c[4] and after[2] == c[3]


def test_the_registry_names_each_rule_once_with_its_state_in_the_schema():
    families = {v for k, v in vars(sk).items() if k.isupper() and isinstance(v, str)}
    names = [rule.name for rule in RULES]
    # the order messages come in; stale_registration keeps the residence ledger that
    # unregistered_stay reads, so it comes first; the population statistics count from what
    # the rules kept, so they come last
    assert names == ["stale_registration", "unregistered_stay", "watchlist_match",
                     "population"]
    for rule in RULES:
        assert set(rule.reads) | set(rule.writes) <= families, rule.name
    assert [r.emits for r in RULES] == [("alerts",)] * 3 + [("stats",)]
    assert [r.own_source for r in RULES] == [None, None, "watchlist", None]
