"""Every person look-up, alert view and review decision is audited -- 100 %, and
nothing extra.

1. The console's routes are enumerated from the FastAPI app object; each must be classified
   here as showing personal data (and then audited, with its audit action) or not. A new
   route that nobody classified fails the test.
2. Against the real stack (a `reglink console` process, Kafka, Redis with identities written
   by the pipeline core, the CLI `reglink person`), a known number of look-ups of every
   audited kind is made; the audit topic read back holds exactly one record per look-up
   (who, action, subject, justification, time inside the test's window), and none for
   refused or unauthenticated requests, which show no data.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest
from fastapi.routing import APIRoute
from kafka import KafkaProducer
from streamkit import free_port, read_topic, settings_env, stop_process

from matchers.normalise import id_check_char
from reglink.console.app import create_app
from reglink.console.auth import Users, add_user
from reglink.console.state import ConsoleState
from reglink.core.contract import record_key
from reglink.core.pipeline import Pipeline
from reglink.core.settings import load_settings
from reglink.kafka_auth import kafka_python_kwargs
from reglink.stores.kv import RedisKV

#: (method, path) -> audit action written when the route shows personal data, or None for
#: a route that shows none. Every route of the app must be here, and nothing else.
ROUTES: dict[tuple[str, str], str | None] = {
    ("GET", "/login"): None,  # the form
    ("POST", "/login"): "login",  # no personal data, audited as the session start
    ("POST", "/logout"): None,
    ("GET", "/"): "queue_view",  # alert rows: pseudonymous person ids, places, deadlines
    ("GET", "/events"): "queue_stream",  # + one queue_row per row pushed
    ("GET", "/alerts/{aid}"): "alert_view",  # evidence records, identity, weights
    ("POST", "/alerts/{aid}/decide"): "decision",
    ("GET", "/persons"): None,  # the search form
    ("POST", "/persons"): "person_search",  # justification required
    ("GET", "/persons/{pid}"): None,  # the justification form (the id the user typed)
    ("POST", "/persons/{pid}"): "person_lookup",  # justification required
    ("GET", "/audit"): "audit_view",  # who looked up whom, and why
    ("GET", "/audit.csv"): "audit_export",  # the same, as a file
    ("GET", "/stats"): None,  # counts per prefecture and day, stale alerts per status
    ("GET", "/quality"): None,  # counts and rates per reporting organisation
    ("GET", "/quality/{source}/{org:path}"): None,  # one organisation's counts and rates
    ("GET", "/receipts/{source}/{org:path}"): None,  # the same, as its receipt (JSON)
    ("GET", "/metrics"): None,  # labels: sources, rules, statuses, prefectures
    ("GET", "/healthz"): None,
}

PASSWORDS = {"ana": ("operator", "ana-pw-1234"), "bo": ("operator", "bo-pw-1234"),
             "sup": ("supervisor", "sup-pw-1234")}


def test_every_console_route_is_classified(tmp_path):
    users = tmp_path / "users.json"
    add_user(users, "x", "operator", "x-pw-12345")
    app = create_app(load_settings(hmac_key="k"), Users.load(users), ConsoleState(),
                     sink=None, identities=None)  # type: ignore[arg-type]
    found = {(m, r.path) for r in app.routes if isinstance(r, APIRoute) for m in r.methods}
    others = [r for r in app.routes if not isinstance(r, APIRoute)]
    assert others == []  # no mounted apps or raw routes that bypass the classification
    assert found - set(ROUTES) == set(), f"unclassified console routes: {found - set(ROUTES)}"
    assert set(ROUTES) - found == set(), f"classified routes gone: {set(ROUTES) - found}"


# ---------------------------------------------------------------- the real stack
def rid(seq: int) -> str:
    body = f"34010219880315{seq:03d}"
    return body + id_check_char(body)


def records() -> list[dict]:
    out = []
    for n, name in enumerate(("李娜", "赵敏", "孙悦")):
        out.append({"source": "rental", "record_id": f"R-{n}", "property_id": f"X{n}",
                    "city_code": "440305", "address": "深圳南山路1号",
                    "lease_start": "2026-03-01", "lease_end": "2026-04-30",
                    "registered_at": f"2026-03-01T0{n}:00:00+08:00",
                    "person": {"name": name, "id_number": rid(n), "sex": "F",
                               "phone": f"1395550{n:04d}"}})
        out.append({"source": "hotel", "record_id": f"H-{n}", "event": "check_in",
                    "hotel_id": "H1", "city_code": "440305",
                    "time": f"2026-03-10T1{n}:00:00+08:00",
                    "person": {"name": name, "id_number": rid(n), "sex": "女"}})
    return out


class Console:
    """`reglink console` as a process on the test's settings."""

    def __init__(self, s, tmp) -> None:
        self.s, self.log = s, tmp / "console.log"
        self.url = f"http://127.0.0.1:{s.console_port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "reglink.cli", "console"],
                                     env=settings_env(s), stdout=self.log.open("wb"),
                                     stderr=subprocess.STDOUT)

    def ready(self, alerts: int) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                got = httpx.get(f"{self.url}/healthz", timeout=2).json()
                if got["ready"] and got["alerts"] >= alerts:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"console not ready:\n{self.log.read_text()[-3000:]}")

    def client(self, name: str) -> httpx.Client:
        c = httpx.Client(base_url=self.url, timeout=30)
        r = c.post("/login", data={"username": name, "password": PASSWORDS[name][1],
                                   "next": "/"})
        assert r.status_code == 303
        return c

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def world(kafka_settings, redis_client, tmp_path):
    """Identities in Redis and linked/identity.events/alerts/raw records on Kafka, written by
    the pipeline core on a Redis backend (what a worker writes), and a console process."""
    users = tmp_path / "users.json"
    for name, (role, pw) in PASSWORDS.items():
        add_user(users, name, role, pw)
    s = kafka_settings.model_copy(update={"console_port": free_port(),
                                          "console_users_file": users,
                                          "console_dev_secret": True})
    pipe = Pipeline(s, RedisKV(redis_client, s.redis_prefix))
    # set-up data for the look-ups, written as admin (the connectors' ACLs are tested elsewhere)
    prod = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all",
                         **kafka_python_kwargs(s, "admin"))
    alerts: dict[str, dict] = {}
    pids: dict[str, str] = {}
    futures = []
    for r in records():
        futures.append(prod.send(s.topic(f"{r['source']}.raw"),
                                 key=record_key(r).encode(), value=json.dumps(r).encode()))
        pid, outs = pipe.process(r)
        pids[r["person"]["name"]] = pid
        for o in outs:
            futures.append(prod.send(s.topic(o.topic), key=o.key.encode(),
                                     value=json.dumps(o.value).encode()))
            if o.topic == "alerts":
                alerts[o.value["alert_id"]] = o.value
    for o in pipe.finish():  # end of input: the watermark passes the leases' deadlines
        futures.append(prod.send(s.topic(o.topic), key=o.key.encode(),
                                 value=json.dumps(o.value).encode()))
        if o.topic == "alerts":
            alerts[o.value["alert_id"]] = o.value
    for f in futures:
        f.get(timeout=15)
    assert len(alerts) == 3 and len(set(pids.values())) == 3
    console = Console(s, tmp_path)
    try:
        console.ready(len(alerts))
        yield type("World", (), {"s": s, "console": console, "alerts": alerts, "pids": pids,
                                 "producer": prod})
    finally:
        console.stop()
        prod.close()


def test_every_lookup_is_audited_once_and_nothing_else(world):
    s, con, alerts, pids = world.s, world.console, world.alerts, world.pids
    aids = sorted(alerts)
    t0 = datetime.now(UTC)
    expected: list[tuple[str, str, dict, str | None]] = []  # principal, action, subject ⊆, why

    # Refused and unauthenticated requests first: nothing shown, nothing audited.
    anon = httpx.Client(base_url=con.url, timeout=30)
    for method, path in (("GET", "/"), ("GET", f"/alerts/{aids[0]}"), ("GET", "/audit"),
                         ("GET", "/audit.csv"), ("POST", f"/persons/{pids['李娜']}"),
                         ("POST", "/persons")):
        r = anon.request(method, path, data={"q": "李娜", "justification": "x" * 20})
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert anon.get("/events").status_code == 401
    ana = con.client("ana")
    bo = con.client("bo")
    sup = con.client("sup")
    expected += [(n, "login", {}, "session start") for n in ("ana", "bo", "sup")]
    for why in ("", "too short"):
        r = ana.post(f"/persons/{pids['李娜']}", data={"justification": why})
        assert r.status_code == 400 and "timeline-table" not in r.text
        assert "李娜" not in r.text and "justification" in r.text
        r = ana.post("/persons", data={"q": "李娜", "justification": why})
        assert r.status_code == 400 and pids["李娜"] not in r.text
    r = ana.get("/audit")
    assert r.status_code == 403  # operators do not see the trail; nothing shown
    assert ana.get("/audit.csv").status_code == 403

    # Queue: 3 views with different filters.
    for query in ("", "?rule=unregistered_stay", "?status=raised&prefecture=4403"):
        r = ana.get(f"/{query}")
        assert r.status_code == 200
        filters = dict(httpx.QueryParams(query.lstrip("?")))
        expected.append(("ana", "queue_view", {"filters": filters, "alert_ids": None},
                         "alert queue: review work"))
    # Alert views: every alert by ana, two by bo.
    for who, client, ids in (("ana", ana, aids), ("bo", bo, aids[:2])):
        for aid in ids:
            r = client.get(f"/alerts/{aid}")
            assert r.status_code == 200 and aid in r.text
            expected.append((who, "alert_view", {"alert_id": aid,
                                                 "person_id": alerts[aid]["person_id"]}, None))
    # A decision (the redirect not followed: that would be one more alert view).
    r = bo.post(f"/alerts/{aids[2]}/decide", data={"action": "more_info",
                                                     "reason": "need_documents", "note": ""},
                follow_redirects=False)
    assert r.status_code == 303
    expected.append(("bo", "decision", {"alert_id": aids[2]}, "more_info: need_documents"))
    # Person searches (2) and look-ups (3), each with its justification.
    for who, client, q in (("ana", ana, "李娜"), ("bo", bo, "赵敏")):
        why = f"case 2026-{len(expected):03d}: verify lead"
        r = client.post("/persons", data={"q": q, "justification": why})
        assert r.status_code == 200 and pids[q] in r.text
        expected.append((who, "person_search", {"person_ids": [pids[q]]}, why))
    for who, client, name in (("ana", ana, "李娜"), ("ana", ana, "孙悦"), ("sup", sup, "赵敏")):
        why = f"case 2026-{len(expected):03d}: stay lead review"
        r = client.post(f"/persons/{pids[name]}", data={"justification": why})
        assert r.status_code == 200 and "timeline-table" in r.text and name in r.text
        expected.append((who, "person_lookup", {"person_id": pids[name]}, why))
    # The live queue: the stream opens (1 record), one alert changes, its row is pushed (1).
    with sup.stream("GET", "/events") as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")
        changed = {**alerts[aids[0]], "status": "resolved"}
        world.producer.send(s.topic("alerts"), key=aids[0].encode(),
                            value=json.dumps(changed).encode()).get(timeout=15)
        for line in lines:
            if line.startswith("data:"):
                assert json.loads(line[5:])["id"] == aids[0]
                break
    expected.append(("sup", "queue_stream", {"filters": {}}, "live alert queue: review work"))
    expected.append(("sup", "queue_row", {"alert_id": aids[0],
                                          "person_id": alerts[aids[0]]["person_id"]},
                     "live alert queue: review work"))
    # The audit trail, by a supervisor.
    r = sup.get("/audit")
    assert r.status_code == 200
    expected.append(("sup", "audit_view", {}, "audit trail: oversight"))
    r = sup.get("/audit.csv?who=ana")
    assert r.status_code == 200 and "person_lookup" in r.text
    expected.append(("sup", "audit_export", {"filters": {"who": "ana"}},
                     "audit trail export: oversight"))
    # The command line: one look-up by person id, one by name; one refused (no record).
    cli = [sys.executable, "-m", "reglink.cli", "person"]
    env = settings_env(s)
    refused = subprocess.run([*cli, pids["李娜"]], env=env, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and refused.stdout == ""
    for query, pid in ((pids["孙悦"], pids["孙悦"]), ("赵敏", pids["赵敏"])):
        why = f"case 2026-{len(expected):03d}: cli check"
        got = subprocess.run([*cli, query, "--json", "--justification", why], env=env,
                             capture_output=True, text=True, timeout=120)
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["person_id"] == pid
        expected.append((None, "person_lookup", {"person_ids": [pid]}, why))
    time.sleep(1.0)  # let the closed stream's generator notice the disconnect
    t1 = datetime.now(UTC)

    audit = read_topic(s, "audit", idle_ms=3000)
    # 100 % and no extra: as many records as look-ups, of the same kinds.
    assert Counter(e["action"] for e in audit) == Counter(x[1] for x in expected)
    assert len(audit) == len(expected)
    unmatched = list(audit)
    for principal, action, subject, why in expected:
        match = next((e for e in unmatched if e["action"] == action
                      and (principal is None or e["principal"] == principal)
                      and all(v is None or e["subject"].get(k) == v
                              for k, v in subject.items())
                      and (why is None or e["justification"] == why)), None)
        assert match is not None, f"no audit record for {principal} {action} {subject}"
        unmatched.remove(match)
        assert match["principal"] and match["role"] and match["justification"]
        assert t0 <= datetime.fromisoformat(match["at"]) <= t1
        assert match["via"] == ("cli" if principal is None else "console")
        assert match["schema"] == "reglink/audit/v1"
    assert unmatched == []
    # A queue view names exactly the alerts it showed.
    first = next(e for e in audit if e["action"] == "queue_view" and not e["subject"]["filters"])
    assert sorted(first["subject"]["alert_ids"]) == aids
    assert len({e["audit_id"] for e in audit}) == len(audit)
