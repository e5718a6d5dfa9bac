"""`reglink purge` on the real stack: Redis state written by the pipeline core on a Redis
backend (what a worker writes), decisions on Kafka, the CLI as a subprocess.

Six persons, one per case of the retention policy (docs/security.md):

* A  old, closed stay, no alert                    -> purged
* B  old, open-ended stay (a job at home: no alert) -> kept: open stay
* C  old, closed stay, alert raised, no decision   -> kept: alert under review
* D  old, closed stay, alert dismissed by a reviewer -> purged (with its alert state)
* E  recent hotel stay                             -> not expired
* F  household-register record only (no report time) -> kept: no report time
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

from kafka import KafkaProducer
from streamkit import read_topic, settings_env

from matchers.normalise import id_check_char
from reglink.core.pipeline import Pipeline
from reglink.core.rules import decisions as dec
from reglink.kafka_auth import kafka_python_kwargs
from reglink.stores.identity import KVIdentityStore
from reglink.stores.kv import RedisKV


def rid(area: str, seq: int) -> str:
    body = f"{area}19880315{seq:03d}"
    return body + id_check_char(body)


def records() -> list[dict]:
    def p(name, area, seq):
        return {"name": name, "id_number": rid(area, seq), "sex": "F"}

    def lease(rid_, person, start, end, reg):
        return {"source": "rental", "record_id": rid_, "property_id": "X1",
                "city_code": "440305", "address": "深圳南山路1号", "lease_start": start,
                "lease_end": end, "registered_at": reg, "person": person}

    return [
        lease("R-A", p("陈丽", "340102", 1), "2025-01-01", "2025-01-02",
              "2025-01-01T09:00:00+08:00"),  # 2 days < 3 days' grace: no deadline, no alert
        {"source": "job", "record_id": "J-B", "employer_name": "某公司", "city_code": "340104",
         "start_date": "2025-01-05", "posted_at": "2025-01-05T09:00:00+08:00",
         "person": p("王芳", "340102", 2)},
        lease("R-C", p("李娜", "340102", 3), "2025-02-01", "2025-03-31",
              "2025-02-01T09:00:00+08:00"),
        lease("R-D", p("赵敏", "340102", 4), "2025-02-01", "2025-03-31",
              "2025-02-01T10:00:00+08:00"),
        {"source": "hotel", "record_id": "H-E1", "event": "check_in", "hotel_id": "H1",
         "city_code": "440305", "time": "2026-11-20T21:00:00+08:00",
         "person": p("孙悦", "340102", 5)},
        {"source": "hotel", "record_id": "H-E2", "event": "check_out", "hotel_id": "H1",
         "city_code": "440305", "time": "2026-11-21T09:00:00+08:00",
         "person": p("孙悦", "340102", 5)},
        {"source": "person", "record_id": "HR-F", "person": p("周杰", "340102", 6),
         "city_code": "340102"},
    ]


def test_purge_cli_applies_the_policy_and_is_audited(kafka_settings, redis_client):
    s = kafka_settings
    kv = RedisKV(redis_client, s.redis_prefix)
    pipe = Pipeline(s, kv)
    pids, alerts = {}, []
    for r in records():
        pid, outs = pipe.process(r)
        pids[r["record_id"]] = pid
        alerts += [o.value for o in outs if o.topic == "alerts"]
    alerts += [o.value for o in pipe.finish() if o.topic == "alerts"]
    by_pid = {a["person_id"]: a for a in alerts}
    a_c, a_d = by_pid[pids["R-C"]], by_pid[pids["R-D"]]
    assert {a["person_id"] for a in alerts} == {pids["R-C"], pids["R-D"]}
    decision = dec.make_decision(a_d, "dismiss", "registered_elsewhere", "ana", "operator")
    prod = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all",
                         **kafka_python_kwargs(s, "console"))  # the console writes decisions
    prod.send(s.topic("decisions"), key=a_d["alert_id"].encode(),
              value=json.dumps(decision).encode()).get(timeout=15)
    prod.close()
    store = KVIdentityStore(kv)
    assert store.count() == 6
    env = settings_env(s)
    cli = [sys.executable, "-m", "reglink.cli", "purge"]
    t0 = datetime.now(UTC)

    # Dry run: counts, nothing deleted.
    dry = subprocess.run([*cli, "--older-than", "180", "--dry-run", "--json"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    got = json.loads(dry.stdout)
    assert got["dry_run"] is True and got["purged"] == 2 and got["examined"] == 6
    assert got["expired"] == 4
    assert got["kept"] == {"alert_under_review": 1, "open_stay": 1, "no_report_time": 1}
    assert store.count() == 6 and store.get(pids["R-A"]) is not None

    # The real run, with a worker linking a new record at the same time.
    def worker():
        w = Pipeline(s, RedisKV(redis_client, s.redis_prefix))
        for n in range(30):
            w.process({"source": "hotel", "record_id": f"H-W{n}", "event": "check_in",
                       "hotel_id": "H2", "city_code": "440305",
                       "time": "2026-11-22T21:00:00+08:00",
                       "person": {"name": "孙悦", "id_number": rid("340102", 5), "sex": "F"}})

    th = threading.Thread(target=worker)
    th.start()
    run = subprocess.run([*cli, "--older-than", "180", "--json"], env=env,
                         capture_output=True, text=True, timeout=120)
    th.join(60)
    assert run.returncode == 0, run.stderr
    res = json.loads(run.stdout)
    assert res["dry_run"] is False and res["purged"] == 2 and res["conflicts"] == 0
    # 2 stay states, 2 watch evidence maps (which record supplied each value) + D's alert state
    assert res["links"] == 2 and res["state_keys"] == 5
    assert res["index_entries"] > 0
    t1 = datetime.now(UTC)

    # Purged: A and D, with their links, stays, evidence, D's alert state, every index entry.
    for key in ("R-A", "R-D"):
        assert store.get(pids[key]) is None and store.link_of(f"rental:{key}") is None
        assert kv.get(f"s:{pids[key]}") is None
        assert kv.get(f"we:{pids[key]}") is None
    assert kv.get(f"a:{a_d['alert_id']}") is None
    assert kv.get(f"we:{pids['H-E1']}") is not None  # a kept identity keeps its evidence
    for k in kv.scan("b:"):
        assert not kv.smembers(k) & {pids["R-A"], pids["R-D"]}
    # Kept: B (open stay), C (under review, with its alert state), E (recent, and the
    # worker's 30 new records on it), F (no report time).
    for key in ("J-B", "R-C", "H-E1", "HR-F"):
        assert store.get(pids[key]) is not None
    assert kv.get(f"a:{a_c['alert_id']}") is not None
    assert store.get(pids["H-E1"]).records == 32
    assert store.count() == 4

    # Audited: the dry run's counts; the real run on record before it deletes, then its
    # counts and the purged ids.
    audit = read_topic(s, "audit")
    assert [e["action"] for e in audit] == ["purge_dry_run", "purge_start", "purge",
                                            "purge_ids"]
    for e in audit:
        assert e["principal"] and e["role"] == "admin" and e["via"] == "cli"
        assert "retention policy" in e["justification"]
        assert t0 <= datetime.fromisoformat(e["at"]) <= t1
    dry_rec, start, done, ids = audit
    assert dry_rec["subject"]["purged"] == 2 and dry_rec["subject"]["dry_run"] is True
    assert start["subject"]["cutoff"] == done["subject"]["cutoff"]
    assert done["subject"]["start"] == start["audit_id"] and done["subject"]["purged"] == 2
    assert done["subject"]["index_entries"] == res["index_entries"]
    assert sorted(ids["subject"]["person_ids"]) == sorted([pids["R-A"], pids["R-D"]])
    assert ids["subject"]["run"] == done["audit_id"]
    assert res["audit_ids"] == [start["audit_id"], done["audit_id"], ids["audit_id"]]

    # A second run has nothing left to purge; bad options are one line.
    again = subprocess.run([*cli, "--before", "2025-06-01"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.startswith("purged 0 of 4 identities")
    both = subprocess.run([*cli, "--before", "2025-06-01", "--older-than", "3"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert both.returncode == 2 and "not both" in both.stderr


def test_purge_beside_a_linking_worker_leaves_no_dangling_state(kafka_settings, redis_client):
    """`reglink purge` runs while a pipeline on the same Redis keeps linking new records to
    some of the old persons (it starts when the sweep starts deleting). Whichever commits
    first, the end state is consistent: every new record is linked to a live identity, no
    link or index entry points to a deleted identity, each returning person is one identity
    (kept, or purged and founded anew), nobody else is left."""
    s = kafka_settings
    kv = RedisKV(redis_client, s.redis_prefix)
    pipe = Pipeline(s, kv)
    n_people = 1500

    def person(n):
        body = f"340102{1950 + n // 1000}0315{n % 1000:03d}"
        return {"name": f"测试{n:04d}", "id_number": body + id_check_char(body), "sex": "F"}

    for n in range(n_people):
        pipe.process({"source": "rental", "record_id": f"R{n}", "property_id": "X",
                      "city_code": "340104", "address": "合肥路1号",  # local: no alert
                      "lease_start": "2025-01-01", "lease_end": "2025-01-02",
                      "registered_at": "2025-01-01T09:00:00+08:00", "person": person(n)})
    store = KVIdentityStore(kv)
    assert store.count() == n_people
    back = list(range(0, n_people, 3))  # these persons come back while the sweep runs
    stop = threading.Event()
    linked: list[str] = []
    retries: list[int] = []

    def worker():
        w = Pipeline(s, RedisKV(redis_client, s.redis_prefix))
        while not stop.is_set() and store.count() == n_people:
            time.sleep(0.001)  # start when the sweep starts deleting: the two overlap
        k = 0
        while not stop.is_set() or k < len(back):
            n = back[k % len(back)]
            key = f"H{k}"
            w.process({"source": "hotel", "record_id": key, "event": "check_in",
                       "hotel_id": "H9", "city_code": "340104",
                       "time": "2026-11-22T21:00:00+08:00", "person": person(n)})
            linked.append(f"hotel:{key}")
            k += 1
        retries.append(w.conflicts)

    th = threading.Thread(target=worker)
    th.start()
    try:
        run = subprocess.run([sys.executable, "-m", "reglink.cli", "purge", "--before",
                              "2026-01-01", "--json"], env=settings_env(s),
                             capture_output=True, text=True, timeout=300)
    finally:
        stop.set()
        th.join(120)
    assert run.returncode == 0, run.stderr
    res = json.loads(run.stdout)
    assert len(linked) >= len(back)
    recreated = sum(1 for n in back if store.link_of(f"rental:R{n}") is None)

    live = {k[2:] for k in kv.scan("i:")}
    # The counter: the sweep decrements it once per identity it deleted, atomically; the
    # worker's increments are atomic outside its unit of work, so a unit that founded an
    # identity and then conflicted (rolled back, re-run) counted it twice (TxKV: "a
    # rolled-back unit leaves a gap"). Over-counted by at most the worker's retries.
    assert 0 <= store.count() - len(live) <= retries[0]
    for key in linked:  # every new record sits on a live identity
        pid = store.link_of(key)
        assert pid in live and store.get(pid).last_record is not None
    # the persons who came back exist once each (kept, or purged and founded anew)
    pids_back = {store.link_of(f"hotel:H{k}") for k in range(len(linked))}
    assert len(pids_back) == len(back)
    for k in kv.scan("l:"):  # no link to a deleted identity
        assert store.resolve(kv.get(k)) in live
    for k in kv.scan("b:"):  # no index entry for a deleted identity
        assert {store.resolve(m) for m in kv.smembers(k)} <= live
    gone = [n for n in range(n_people) if n not in back]
    assert all(store.link_of(f"rental:R{n}") is None for n in gone)
    # each returning person was either kept whole (its old link survives: the worker came
    # first, or the sweep conflicted) or purged and then founded anew by the worker
    assert res["purged"] == len(gone) + recreated
    print(f"purge beside a worker: {res['purged']} purged ({recreated} of the {len(back)} "
          f"returning persons among them, founded anew), {res['conflicts']} sweep conflicts, "
          f"{retries[0]} worker retries, {len(linked)} records linked meanwhile, counter "
          f"{store.count()} for {len(live)} identities")


def test_a_worker_refuses_state_in_an_older_layout_in_one_line(kafka_settings, redis_client):
    """`reglink worker` on a prefix whose state predates the layout mark stops before it
    consumes anything, with one line that says to rebuild (exit 2, no traceback)."""
    s = kafka_settings
    redis_client.set(s.redis_prefix + "n:identities", "3")
    run = subprocess.run([sys.executable, "-m", "reglink.cli", "worker"], env=settings_env(s),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "reglink rebuild" in run.stderr and "Traceback" not in run.stderr
    assert redis_client.get(s.redis_prefix + "layout") is None
