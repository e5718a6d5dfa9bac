"""One identity's audited timeline (``reglink person``, and the console's person page).

Every look-up needs a justification and is written to the ``audit`` topic (who, when, what,
why) **before** any data is shown (EU LED 2016/680 art. 25). The timeline comes from the
topics (``linked``, ``identity.events``, ``alerts``, ``decisions``) and the identity from the
identity store in Redis; no ID number is shown, in clear or hashed.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from reglink.core.errors import ReglinkError
from reglink.core.settings import Settings
from reglink.kafka_auth import kafka_client
from reglink.stores import schema as sk

PERSON_ID = re.compile(r"^P[0-9a-f]{16}$")
MIN_JUSTIFICATION = 10


class JustificationRequired(ReglinkError):
    """A person look-up without a proper justification."""


def check_justification(text: str | None) -> str:
    text = (text or "").strip()
    if len(text) < MIN_JUSTIFICATION:
        raise JustificationRequired(
            f"a person look-up needs a justification of at least {MIN_JUSTIFICATION} "
            "characters: add --justification \"case 2026-114: verify hotel lead\"")
    return text[:500]


def audit_entry(principal: str, role: str, action: str, subject: dict, justification: str,
                via: str, now: datetime | None = None, **extra) -> dict:
    """One ``audit`` message: who, when, what, why."""
    at = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds")
    digest = hashlib.sha256(f"{principal}|{action}|{json.dumps(subject, sort_keys=True)}|{at}"
                            .encode()).hexdigest()
    return {"audit_id": "U" + digest[:20], "at": at, "principal": principal, "role": role,
            "action": action, "subject": subject, "justification": justification, "via": via,
            **extra, "schema": "reglink/audit/v1"}


# ------------------------------------------------------------------ identity store (Redis)
def _redis(settings: Settings):
    from reglink.kafka_auth import connect_redis

    return connect_redis(settings, "console")


class IdentityView:
    """Read-only view of the workers' identity store and rule state."""

    def __init__(self, settings: Settings, client=None) -> None:
        from matchers.pseudo import Pseudonymiser
        from reglink.stores.identity import KVIdentityStore
        from reglink.stores.kv import RedisKV

        self.s = settings
        self.kv = RedisKV(client or _redis(settings), settings.redis_prefix)
        self.store = KVIdentityStore(self.kv)
        self.pseudo = Pseudonymiser(settings.hmac_key.get_secret_value())

    def resolve(self, pid: str) -> str:
        return self.store.resolve(pid)

    def summary(self, pid: str) -> dict | None:
        ident = self.store.get(self.store.resolve(pid))
        if ident is None:
            return None
        return {"person_id": ident.person_id, "names": sorted(ident.names),
                "birth_dates": sorted(ident.birth_dates), "sexes": sorted(ident.sexes),
                "home_prefecture": ident.home, "resident_id_known": bool(ident.rid_hash),
                "ids_on_file": len(ident.id_hashes), "phones_on_file": len(ident.phone_hashes),
                "records": ident.records}

    def stays(self, pid: str) -> sk.Stays:
        """The person's stay state per prefecture (empty when none)."""
        return sk.decode_stays(self.kv.get(sk.stays(self.store.resolve(pid))))

    def find_by_name(self, name: str) -> list[str]:
        """Identities whose names match ``name`` (order-free, tone-less pinyin key)."""
        from matchers.features import person_record
        from matchers.linker import Linker

        rec = person_record({"source": "person", "record_id": "lookup", "person": {"name": name}},
                            "person:lookup", self.pseudo)
        linker = Linker(self.store, self.pseudo, self.s.link_threshold)
        hits = [i for i in linker.finder.candidates(rec, self.store)
                if rec.name_key in i.name_keys or rec.name in i.names]
        return sorted({i.person_id for i in hits})


# ------------------------------------------------------------------ timeline (topics)
@dataclass
class Timeline:
    person_id: str
    identity: dict | None
    merged_from: list[str] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)  # {at, kind, text, ref}

    def to_json(self) -> dict:
        return {"person_id": self.person_id, "identity": self.identity,
                "merged_from": self.merged_from, "events": self.events}


def _read_all(settings: Settings, names: list[str], idle_ms: int = 1500) -> dict[str, list]:
    from kafka import KafkaConsumer

    consumer = kafka_client(KafkaConsumer, settings, "console",
                            *[settings.topic(n) for n in names], auto_offset_reset="earliest",
                            enable_auto_commit=False, consumer_timeout_ms=idle_ms,
                            request_timeout_ms=15000)
    out: dict[str, list] = {n: [] for n in names}
    by_topic = {settings.topic(n): n for n in names}
    try:
        for m in consumer:
            try:
                out[by_topic[m.topic]].append((m.timestamp, json.loads(m.value)))
            except (ValueError, KeyError):
                continue
    finally:
        consumer.close()
    return out


def build_timeline(settings: Settings, person_id: str, view: IdentityView | None,
                   topics: dict[str, list] | None = None) -> Timeline:
    topics = topics or _read_all(settings, ["identity.events", "linked", "alerts", "decisions"])
    into: dict[str, str] = {}
    for _ts, ev in topics["identity.events"]:
        if ev.get("event") == "merged" and ev.get("into"):
            into[ev["person_id"]] = ev["into"]

    def resolve(p: str) -> str:
        seen = set()
        while p in into and p not in seen:
            seen.add(p)
            p = into[p]
        return p

    target = view.resolve(person_id) if view else resolve(person_id)
    mine = {p for p in set(into) | {person_id} if resolve(p) == target} | {target}
    tl = Timeline(target, view.summary(target) if view else None,
                  merged_from=sorted(mine - {target}))
    report = {f"{ln.get('source')}:{ln.get('record_id')}": ln.get("report_time")
              for _t, ln in topics["linked"]}
    for kts, ev in topics["identity.events"]:
        if ev.get("person_id") in mine:
            what = ("identity created" if ev["event"] == "created"
                    else f"merged into {ev.get('into')}" if ev["event"] == "merged"
                    else ev["event"])
            at = report.get(ev.get("record")) or _kafka_iso(kts)  # event time when known
            tl.events.append({"at": at, "kind": "identity", "text": what,
                              "ref": ev.get("record")})
    for _kts, ln in topics["linked"]:
        if ln.get("person_id") in mine:
            p = ln.get("match_probability")
            tl.events.append({"at": ln.get("report_time"), "kind": ln.get("source"),
                              "text": f"{ln.get('source')} record linked"
                                      + (f" (p={p:.3f})" if isinstance(p, float) else ""),
                              "ref": f"{ln.get('source')}:{ln.get('record_id')}"})
    alert_ids = set()
    for _kts, a in topics["alerts"]:
        if a.get("person_id") in mine:
            alert_ids.add(a["alert_id"])
            where = a.get("prefecture") or a.get("watch_id") or ""
            if a.get("new_prefecture"):  # a stale registration: the old and the new
                where = f"{where} -> {a['new_prefecture']}"
            tl.events.append({"at": a.get("raised_at"), "kind": "alert",
                              "text": f"{a['rule']} {where} {a['status']}",
                              "ref": a["alert_id"]})
    for _kts, d in topics["decisions"]:
        if d.get("alert_id") in alert_ids:
            tl.events.append({"at": d.get("decided_at"), "kind": "decision",
                              "text": f"{d.get('action')} ({d.get('reason')}) by "
                                      f"{d.get('reviewer')}", "ref": d["alert_id"]})
    tl.events.sort(key=lambda e: (e["at"] is None, _sortable(e["at"])))
    return tl


def _kafka_iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms else None


def _sortable(at: str | None) -> float:
    if not at:
        return 0.0
    try:
        return datetime.fromisoformat(at).timestamp()
    except ValueError:
        return 0.0


# ------------------------------------------------------------------ the CLI command
def run_person(settings: Settings, query: str, justification: str | None,
               as_json: bool = False, principal: str | None = None, out=None, err=None) -> int:
    """``reglink person``: look up, audit (with the outcome), then show the timeline(s).

    Returns the number of persons shown; none found is "not found" on ``err``, after the
    audit record is written.
    """
    import sys

    from kafka import KafkaProducer

    why = check_justification(justification)
    principal = principal or getpass.getuser()
    view = IdentityView(settings)
    by_id = bool(PERSON_ID.match(query))
    if by_id:  # a merged-away id still finds the identity it was merged into
        found = view.summary(query) is not None
        pids = [query] if found else []
    else:
        pids = view.find_by_name(query)
        found = bool(pids)
    producer = kafka_client(KafkaProducer, settings, "console", acks="all",
                            request_timeout_ms=15000)
    entry = audit_entry(principal, "cli", "person_lookup",
                        {"query_kind": "person_id" if by_id else "name",
                         "person_ids": [query] if by_id else pids},
                        why, "cli", outcome="found" if found else "not_found")
    producer.send(settings.topic("audit"), key=principal.encode(),
                  value=json.dumps(entry, ensure_ascii=False).encode()).get(timeout=15)
    producer.close(timeout=5)
    out = out or sys.stdout
    if not found:
        (err or sys.stderr).write(
            f"reglink person: not found: no identity {query!r} under topic prefix "
            f"{settings.topic_prefix!r} and Redis prefix {settings.redis_prefix!r} (audited: "
            f"{entry['audit_id']}); try a person id (P…) from `reglink alerts`, another "
            "spelling of the name, or --prefix for a demo run\n")
        return 0
    topics = _read_all(settings, ["identity.events", "linked", "alerts", "decisions"])
    timelines = [build_timeline(settings, p, view, topics) for p in pids]
    if as_json:
        for tl in timelines:
            out.write(json.dumps(tl.to_json(), ensure_ascii=False) + "\n")
        return len(timelines)
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, highlight=False)
    console.print(f"[dim]audited: {entry['audit_id']} by {principal}: {why}[/dim]")
    for tl in timelines:
        ident = tl.identity or {}
        console.print(f"\n[bold]{tl.person_id}[/bold]  names: {', '.join(ident.get('names', []))}"
                      f"  born: {', '.join(ident.get('birth_dates', []))}"
                      f"  sex: {', '.join(ident.get('sexes', []))}"
                      f"  home: {ident.get('home_prefecture') or '?'}"
                      f"  records: {ident.get('records', '?')}")
        if tl.merged_from:
            console.print(f"  merged from: {', '.join(tl.merged_from)}")
        table = Table(show_header=True, header_style="bold")
        for col in ("when", "what", "event", "reference"):
            table.add_column(col)
        for e in tl.events:
            table.add_row(e["at"] or "", e["kind"] or "", e["text"], e["ref"] or "")
        console.print(table)
    return len(timelines)
