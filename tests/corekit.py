"""Helpers for tests of the pure core (no services): a pipeline over the embedded store."""

from __future__ import annotations

from pathlib import Path

from matchers.normalise import id_check_char
from reglink.core.pipeline import Pipeline
from reglink.core.settings import Settings, load_settings
from reglink.stores.kv import MemoryKV

# The hand-written example records (tests/fixtures/README.md says what they exercise).
EXAMPLES = Path(__file__).resolve().parent / "fixtures" / "records.jsonl"


# One valid hotel check-in and one job record (no "source": the publisher's --source sets it),
# for the publisher's checks.
HOTEL = {
    "source": "hotel", "record_id": "H-1", "event": "check_in", "hotel_id": "H440305-017",
    "city_code": "440305", "time": "2026-03-02T21:14:00+08:00",
    "person": {"name": "陈丽", "id_number": "340102198803150022", "sex": "女"},
}
JOB = {
    "record_id": "J-1", "employer_name": "深圳华胜电子有限公司", "city_code": "440305",
    "start_date": "2026-03-06", "posted_at": "2026-03-06T09:00:00+08:00",
    "person": {"name": "CHEN Li", "phone": "13955501234"},
}


def core_settings(**kw) -> Settings:
    return load_settings(hmac_key="unit-test-key", **kw)


def run_core(records, **kw):
    """Feed records in order; return (pipeline, alert messages, record -> person id)."""
    pipe = Pipeline(core_settings(**kw), MemoryKV())
    alerts, links = [], {}
    for r in records:
        pid, outs = pipe.process(r)
        links[r.get("record_id") or r.get("watch_id")] = pid
        alerts += [o.value for o in outs if o.topic == "alerts"]
    alerts += [o.value for o in pipe.finish() if o.topic == "alerts"]
    return pipe, alerts, links


def ordered_corpus(out_dir: Path, persons: int, days: int, seed: int,
                   start: str = "2026-03-01") -> list[dict]:
    """A simulated corpus's valid records in the event-time merge order of the worker (by
    ``order_key``, then file line): what a batch or a replay of it sees."""
    from reglink.core.contract import report_time
    from reglink.core.rules.merge import order_key
    from reglink.replay import iter_lines, parse_line
    from reglink.sim.simulate import run_simulate

    run_simulate(persons=persons, days=days, start=start, seed=seed, out_dir=out_dir)
    recs = []
    for n, raw in iter_lines(out_dir / "events.jsonl"):  # the replay's own reader
        rec, dl = parse_line(raw, None, {"line": n})
        if dl is None:
            rt = report_time(rec)
            recs.append((order_key(rec["source"], rt.timestamp() if rt else None), n, rec))
    recs.sort(key=lambda r: (r[0], r[1]))
    return [r for _k, _n, r in recs]


def rid(area: str, birth: str, seq: int) -> str:
    """A valid resident ID number (GB 11643 check character) for area, birth date, sequence."""
    body = f"{area}{birth.replace('-', '')}{seq:03d}"
    return body + id_check_char(body)


CHEN = {"name": "陈丽", "id_number": rid("340102", "1988-03-15", 2), "sex": "F",
        "birth_date": "1988-03-15"}
WANG = {"name": "王强", "id_number": rid("440305", "1975-07-01", 5), "sex": "M",
        "birth_date": "1975-07-01"}


def reg(rec_id, city, at, valid_from, valid_until, permit=None, person=CHEN):
    """A residence registration record (contract v2)."""
    r = {"source": "residence", "record_id": rec_id, "city_code": city, "address": "某路1号",
         "registered_at": at, "valid_from": valid_from, "valid_until": valid_until,
         "person": person}
    if permit:
        r["permit_no"] = permit
    return r


def dereg(rec_id, city, at, *, permit=None, left_on=None, person=CHEN):
    """A residence deregistration record: by ``permit`` number, else by prefecture."""
    r = {"source": "residence", "record_id": rec_id, "action": "deregister", "city_code": city,
         "registered_at": at, "person": person}
    if permit:
        r["permit_no"] = permit
    if left_on:
        r["left_on"] = left_on
    return r


def count_round_trips(client, kv) -> dict:
    """Count what this client sends to Redis: each command or script call (also those ``kv``
    packs itself), and each pipeline (one round trip however many commands it carries)."""
    trips = {"n": 0}
    send, pipeline, script = client.execute_command, client.pipeline, kv._evalsha

    def evalsha(*args, **kwargs):
        trips["n"] += 1
        return script(*args, **kwargs)

    def execute_command(*args, **kwargs):
        trips["n"] += 1
        return send(*args, **kwargs)

    def counted_pipeline(*args, **kwargs):
        pipe = pipeline(*args, **kwargs)
        run = pipe.execute

        def execute(*a, **k):
            trips["n"] += 1
            return run(*a, **k)
        pipe.execute = execute
        return pipe

    client.execute_command = execute_command
    client.pipeline = counted_pipeline
    kv._evalsha = evalsha
    return trips
