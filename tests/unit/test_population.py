"""Population statistics (docs/contract.md §3.4): each count on hand-made records, rows final
once the watermark passed the day plus the allowed lateness, late data and merges re-issuing
final rows, and no person, record or ID number in any row. Pure core, no services."""

from __future__ import annotations

import json
import random

from corekit import CHEN, WANG, core_settings, dereg, ordered_corpus, reg, rid

from matchers.normalise import id_check_char
from reglink.core.pipeline import Pipeline
from reglink.core.rules import population as pop
from reglink.replay import run_replay
from reglink.sim.simulate import run_simulate
from reglink.stores import schema as sk
from reglink.stores.kv import MemoryKV

ZERO = dict.fromkeys(pop.FIELDS, 0)


def rental(rec_id, city, start, end, at, person=CHEN):
    r = {"source": "rental", "record_id": rec_id, "property_id": "PR1", "city_code": city,
         "address": "某路1号", "lease_start": start, "registered_at": at, "person": person}
    if end:
        r["lease_end"] = end
    return r






def job(rec_id, city, start, posted, person):
    return {"source": "job", "record_id": rec_id, "employer_name": "某厂", "city_code": city,
            "start_date": start, "posted_at": posted, "person": person}


def hotel(rec_id, city, time, person):
    return {"source": "hotel", "record_id": rec_id, "event": "check_in", "hotel_id": "H9",
            "city_code": city, "time": time, "person": person}


LI = {"name": "李明", "id_number": rid("110105", "1980-05-05", 7), "sex": "M",
      "birth_date": "1980-05-05"}


def clock(day: str) -> list[dict]:
    """Records of LI at home in 1101 from every event source, reported at ``day`` 10:00:
    they move the watermark to 09:00 (one hour of allowed lateness)."""
    at = f"{day}T10:00:00+08:00"
    return [hotel(f"CLOCK{day}", "110105", at, LI),
            rental(f"CLOCK{day}", "110105", day, day, at, LI),
            job(f"CLOCK{day}", "110105", day, at, LI),
            reg(f"CLOCK{day}", "110105", at, day, day, person=LI)]


class Run:
    """A pipeline over the embedded store; ``rows``: every stats message in order.
    ``bounded``: as replay runs it (the rows counted once, at the end of the input)."""

    def __init__(self, bounded: bool = False, **settings) -> None:
        self.pipe = Pipeline(core_settings(**settings), MemoryKV(), bounded=bounded)
        self.rows: list[dict] = []

    def feed(self, *records) -> list[dict]:
        got = []
        for r in records:
            _pid, outs = self.pipe.process(r)
            got += [o.value for o in outs if o.topic == "stats"]
        self.rows += got
        return got

    def finish(self) -> list[dict]:
        got = [o.value for o in self.pipe.finish() if o.topic == "stats"]
        self.rows += got
        return got

    def final(self, pref: str | None = None) -> dict[str, dict]:
        """The last row of each (prefecture, date): by date for ``pref``, else by
        ``<prefecture>|<date>``."""
        out: dict[str, dict] = {}
        for r in self.rows:
            if pref is None or r["prefecture"] == pref:
                out[r["date"] if pref else f"{r['prefecture']}|{r['date']}"] = r
        return out


def counts(row: dict) -> dict:
    return {k: row[k] for k in pop.FIELDS}


def test_days_ranges_and_finality_helpers():
    day = pop.day_of(1772294400.0)  # 2026-03-01 00:00 +08:00
    assert pop.day_iso(day) == "2026-03-01"
    assert pop.day_of(1772294400.0 - 1) == day - 1  # 23:59:59 CST the day before
    assert pop.last_day(1772294400.0, 1772294400.0 + 86400) == day  # to 00:00 next day
    assert pop.last_day(1772294400.0, None) == pop.OPEN
    # final once the watermark passed the end of the day plus the lateness (1 h)
    end = pop.day_end(day)
    assert pop.final_day(end + 3600 - 1, 3600) == day - 1
    assert pop.final_day(end + 3600, 3600) == day
    assert pop.final_day(float("-inf"), 3600) is None
    assert pop.merge([(5, 7), (1, 2), (3, 3), (9, 9)]) == [(1, 3), (5, 7), (9, 9)]
    assert pop.intersect([(1, 5), (8, pop.OPEN)], [(4, 9)]) == [(4, 5), (8, 9)]
    assert pop.subtract([(1, 10)], [(3, 4), (8, pop.OPEN)]) == [(1, 2), (5, 7)]


def test_present_and_present_unregistered_from_the_deadline_on():
    run = Run()
    # CHEN (home 3401) rents in 4403 from 03-01 to 03-05: she owes registration from the
    # deadline, 03-04 00:00 (3 days of grace), while she is there
    run.feed(rental("R1", "440305", "2026-03-01", "2026-03-05", "2026-03-01T09:00:00+08:00"),
             *clock("2026-03-12"))
    rows = run.final("4403")
    # rows only for the days with a count; LI's records are in 1101
    assert list(rows) == ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04",
                          "2026-03-05"]
    assert all(r["present"] == 1 for r in rows.values())
    assert [d for d in rows if rows[d]["present_unregistered"]] == ["2026-03-04", "2026-03-05"]
    # at home, WANG owes nothing: present (open check-in), never unregistered
    run.feed(hotel("H2", "440305", "2026-03-12T10:00:00+08:00", WANG), *clock("2026-03-20"))
    rows = run.final("4403")
    assert counts(rows["2026-03-12"]) == {**ZERO, "present": 1}
    assert counts(rows["2026-03-18"]) == {**ZERO, "present": 1}


def test_each_count_on_hand_made_records():
    run = Run()
    run.feed(
        # CHEN present in 4403 from 03-01 to 03-05, registered there from 03-02 (recorded
        # on 03-03) to 03-10: not unregistered on the deadline 03-04, nor after it
        rental("R1", "440305", "2026-03-01", "2026-03-05", "2026-03-01T09:00:00+08:00"),
        reg("A", "440305", "2026-03-03T10:00:00+08:00", "2026-03-02", "2026-03-10", "PA"),
        # WANG at home in 4403 from 03-06 by job, open-ended
        job("J1", "440305", "2026-03-06", "2026-03-06T09:00:00+08:00", WANG),
        *clock("2026-03-14"),
    )
    rows = run.final("4403")
    assert counts(rows["2026-03-01"]) == {**ZERO, "present": 1}
    # arrivals on valid_from; registered only once the registration was recorded
    assert counts(rows["2026-03-02"]) == {**ZERO, "present": 1, "arrivals": 1}
    assert counts(rows["2026-03-03"]) == {**ZERO, "present": 1, "registered": 1}
    assert counts(rows["2026-03-04"]) == {**ZERO, "present": 1, "registered": 1}
    assert counts(rows["2026-03-06"]) == {**ZERO, "present": 1, "registered": 1}
    # expiry: the last valid day is still registered, and the departure
    assert counts(rows["2026-03-10"]) == {**ZERO, "present": 1, "registered": 1,
                                          "departures": 1}
    assert counts(rows["2026-03-11"]) == {**ZERO, "present": 1}
    # rows are final only once the watermark passed the day's end plus the lateness:
    # the watermark is 03-14 09:00, so 03-13 is the last final day
    assert max(rows) == "2026-03-13"


def test_stale_open_from_the_deregistration_deadline():
    run = Run()
    run.feed(
        reg("A", "440305", "2026-01-10T10:00:00+08:00", "2026-01-10", "2027-01-09", "PA"),
        reg("B", "330106", "2026-03-05T10:00:00+08:00", "2026-03-05", "2027-03-04"),
        *clock("2026-03-25"),
    )
    rows = run.final("4403")
    # A is superseded by B (valid from 03-05): deadline 03-19, still open after it
    assert rows["2026-03-18"]["stale_open"] == 0
    assert [d for d in rows if rows[d]["stale_open"]] == [
        "2026-03-19", "2026-03-20", "2026-03-21", "2026-03-22", "2026-03-23",
        "2026-03-24"]
    assert all(rows[d]["registered"] == 1 for d in rows if d >= "2026-01-10")
    hz = run.final("3301")
    assert counts(hz["2026-03-05"]) == {**ZERO, "registered": 1, "arrivals": 1}


def test_a_late_deregistration_changes_final_rows_back_to_its_left_on():
    run = Run()
    run.feed(
        reg("A", "440305", "2026-01-10T10:00:00+08:00", "2026-01-10", "2027-01-09", "PA"),
        reg("B", "330106", "2026-03-05T10:00:00+08:00", "2026-03-05", "2027-03-04"),
        *clock("2026-03-25"),
    )
    before = run.final("4403")
    assert before["2026-03-20"]["registered"] == 1 and before["2026-03-20"]["stale_open"] == 1
    # recorded on 03-26 (after the deadline), the person left on 03-08: A is closed from
    # 03-08 on; the final rows from 03-08 are re-issued, at once
    late = run.feed(dereg("D", "440305", "2026-03-26T09:00:00+08:00", left_on="2026-03-08",
                          permit="PA"))
    assert {r["date"] for r in late if r["prefecture"] == "4403"} == {
        f"2026-03-{d:02d}" for d in range(8, 25)}
    after = run.final("4403")
    assert counts(after["2026-03-07"]) == {**ZERO, "registered": 1}
    assert counts(after["2026-03-08"]) == {**ZERO, "departures": 1}
    # a row whose counts all fell to zero is re-issued with zeros: the last row wins
    assert counts(after["2026-03-20"]) == ZERO
    # a deregistration recorded by the deadline: never stale
    run2 = Run()
    run2.feed(
        reg("A", "440305", "2026-01-10T10:00:00+08:00", "2026-01-10", "2027-01-09", "PA"),
        reg("B", "330106", "2026-03-05T10:00:00+08:00", "2026-03-05", "2027-03-04"),
        dereg("D", "440305", "2026-03-10T09:00:00+08:00", left_on="2026-03-08", permit="PA"),
        *clock("2026-03-25"),
    )
    assert run2.final("4403") == {d: r for d, r in after.items() if any(counts(r).values())}


def test_a_merge_changes_the_counts_of_final_days():
    body = "34010219880315002"
    cid = body + id_check_char(body)
    no_id = {"name": "陈丽", "phone": "13912345678"}
    with_id = {"name": "陈丽", "id_number": cid, "birth_date": "1988-03-15", "sex": "F"}
    both = {**with_id, "phone": "13912345678"}
    run = Run()
    run.feed(hotel("H1", "440305", "2026-03-01T10:00:00+08:00", no_id),
             job("J1", "440305", "2026-03-02", "2026-03-02T10:00:00+08:00", with_id),
             *clock("2026-03-10"))
    before = run.final("4403")
    # two identities, so far: two persons present; the one without an ID owes nothing,
    # the other owes from the job's deadline (03-05)
    assert before["2026-03-02"]["present"] == 2
    assert before["2026-03-05"]["present_unregistered"] == 1
    pid, outs = run.pipe.process(
        job("J2", "330106", "2026-03-03", "2026-03-03T10:00:00+08:00", both))
    late = [o.value for o in outs if o.topic == "stats"]
    run.rows += late
    absorbed = [o.value["person_id"] for o in outs if o.topic == "identity.events"
                and o.value["event"] == "merged"]
    assert len(absorbed) == 1 and absorbed[0] != pid
    after = run.final("4403")
    assert {r["date"] for r in late if r["prefecture"] == "4403"} >= {
        f"2026-03-{d:02d}" for d in range(2, 9)}
    assert after["2026-03-01"]["present"] == 1
    assert after["2026-03-02"]["present"] == 1  # one person after the merge
    assert after["2026-03-05"]["present_unregistered"] == 1
    # the absorbed identity's share went with it; the survivor's holds both records' days
    assert run.pipe.kv.get(sk.population(absorbed[0])) is None
    share = pop.decode_contribution(run.pipe.kv.get(sk.population(pid)))
    assert share[("4403", pop.PRESENT)] == [(pop.day_of(1772294400.0), pop.OPEN)]


def test_left_on_applies_back_in_time_in_any_arrival_order():
    records = [
        reg("A", "440305", "2026-01-10T10:00:00+08:00", "2026-01-10", "2027-01-09", "PA"),
        rental("R1", "440305", "2026-01-10", None, "2026-01-10T09:00:00+08:00"),
        reg("B", "330106", "2026-03-05T10:00:00+08:00", "2026-03-05", "2027-03-04"),
        dereg("D", "440305", "2026-03-28T09:00:00+08:00", left_on="2026-03-08", permit="PA"),
        job("J1", "440305", "2026-02-01", "2026-02-01T10:00:00+08:00", WANG),
        *clock("2026-04-02"),
    ]
    finals = []
    for seed in range(4):
        recs = list(records)
        random.Random(seed).shuffle(recs)
        run = Run()
        run.feed(*recs)
        run.finish()
        finals.append({k: v for k, v in run.final().items() if any(counts(v).values())})
    assert all(f == finals[0] for f in finals[1:])
    rows = {k.split("|")[1]: v for k, v in finals[0].items() if k.startswith("4403|")}
    # from left_on on, CHEN is still present (open lease) but no longer registered: she
    # owes registration (home 3401), so she counts as unregistered there from 03-08
    assert rows["2026-03-07"]["registered"] == 1
    assert rows["2026-03-08"]["registered"] == 0
    assert rows["2026-03-08"]["departures"] == 1
    assert rows["2026-03-07"]["present_unregistered"] == 0
    assert rows["2026-03-08"]["present_unregistered"] == 1


def test_no_person_record_or_id_number_in_any_row(tmp_path):
    sim = tmp_path / "sim"
    run_simulate(persons=300, days=20, start="2026-03-01", seed=5, out_dir=sim)
    run_replay(core_settings(), [sim / "events.jsonl"], tmp_path / "out")
    rows = [json.loads(line) for line in (tmp_path / "out" / "stats.jsonl").open()]
    assert len(rows) > 50
    secret: set[str] = set()
    for line in (sim / "events.jsonl").open(encoding="utf-8"):
        r = json.loads(line)
        secret |= {str(r.get("record_id") or r.get("watch_id"))}
        secret |= {v for k, v in r.get("person", {}).items() if isinstance(v, str)}
    for line in (tmp_path / "out" / "links.jsonl").open():
        secret.add(json.loads(line)["person_id"] or "")
    secret -= {""}
    for row in rows:
        assert set(row) == {"prefecture", "date", *pop.FIELDS}
        assert all(type(row[k]) is int and row[k] >= 0 for k in pop.FIELDS)
        assert len(row["prefecture"]) == 4 and row["prefecture"].isdigit()
        text = json.dumps(row, ensure_ascii=False)
        assert not [s for s in secret if len(s) > 4 and s in text]
    # sorted, one per (prefecture, date), none all zero
    keys = [(r["prefecture"], r["date"]) for r in rows]
    assert keys == sorted(set(keys))
    assert all(any(r[k] for k in pop.FIELDS) for r in rows)


def test_final_rows_are_those_of_the_final_state_whatever_the_arrival_order(tmp_path):
    """The stream's way (counts kept record by record through merges, late records and
    re-issues) ends where replay's way ends (every live identity's final state counted once
    at the end of the input), in event-time order, with a source a whole upload behind the
    others, and shuffled."""
    records = ordered_corpus(tmp_path, persons=300, days=25, seed=11)
    late_jobs = [r for r in records if r["source"] != "job"] + [
        r for r in records if r["source"] == "job"]
    shuffled = random.Random(5).sample(records, len(records))
    for recs in (records, late_jobs, shuffled):
        run = Run()
        run.feed(*recs)
        run.finish()
        got = {k: counts(v) for k, v in run.final().items() if any(counts(v).values())}
        assert len(got) > 100
        # every measure occurs in the corpus
        assert all(any(r[f] for r in got.values()) for f in pop.FIELDS)
        once = Run(bounded=True)
        assert once.feed(*recs) == []  # nothing before the end of the input
        at_end = once.finish()
        assert at_end == once.rows and all(any(counts(r).values()) for r in at_end)
        assert {f"{r['prefecture']}|{r['date']}": counts(r) for r in at_end} == got
        # and it kept no statistics state on the way
        kv = once.pipe.kv.base
        assert not [k for p in (sk.POPULATION, sk.POPULATION_COUNTS, sk.POPULATION_BLOCK,
                                sk.POPULATION_PREFECTURES) for k in kv.scan(p)]
        assert not [m for m, _s in kv.zupto(sk.DUE, float("inf")) if "population" in m]


def test_state_grows_with_prefectures_and_days_not_with_records():
    run = Run()
    recs = [rental(f"R{i}", "440305", "2026-03-01", "2026-03-20", "2026-03-01T09:00:00+08:00",
                   person={"name": f"人{i}", "id_number": rid("340102", "1990-01-01", i)})
            for i in range(1, 60)]
    run.feed(*recs)
    kv = run.pipe.kv.base
    deltas: pop.Deltas = {}
    for key in kv.scan(sk.population_block("4403", 0)[:-1]):
        deltas.update(pop.decode_deltas(kv.get(key)))
    # 59 persons with the same days: three change days (start, deadline, after the end)
    first = pop.day_of(1772294400.0)
    assert sorted(deltas) == [first, first + 3, first + 20]
    assert deltas[first][pop.PRESENT] == 59
    assert deltas[first + 3][pop.UNREGISTERED] == 59
    assert deltas[first + 20] == [-59, 0, -59, 0, 0, 0]
    # what each block adds up to, kept beside them
    totals = pop.decode_deltas(kv.get(sk.population_counts("4403")))
    assert sorted(totals) == sorted({d // pop.BLOCK for d in deltas})
    assert [sum(v[pop.PRESENT] for v in totals.values())] == [0]
