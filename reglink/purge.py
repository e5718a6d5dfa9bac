"""``reglink purge``: the retention sweep of the identity store (docs/security.md, "Identity
store: records past their purpose").

Policy: an identity with no record for ``purge_after_days`` (180) days, no open stay and no
alert under review is deleted from the store: its identity key, its blocking-index entries,
the merged-into pointers and record links that lead to it, its stay state (``s:<pid>``) and
the alert states of its alerts (``a:<alert_id>``).

* **No record since the cut-off:** the identity's ``last_report`` (latest report time of its
  records, event time) is before the cut-off. An identity without any report time (bulk
  ``person`` imports, watchlist-only) is kept: its age is unknown.
* **Open stay:** a presence interval in its stay state that has no end (a job, a lease
  without ``lease_end``, a hotel check-in without its check-out) or ends at/after the cut-off.
* **Alert under review:** one of its alerts (the workers' alert state ``a:<alert_id>`` in the
  store, latest status per alert) whose latest status is ``raised`` and whose review, folded
  from the ``decisions`` topic (5 years' retention), is not final (confirmed, dismissed,
  misused identity): open, awaiting the second reviewer, or more information needed. A
  resolved or withdrawn alert is not under review.

Kept on purpose: the reviewers' decisions' effects (``sup:`` suppressions, the ``misused``
set: a cannot-link must hold if the person comes back) and the watchlist pair memory
(``wp:``/``wa:``: which persons a watch entry already alerted on; ids only).

The run is recorded in ``audit``: ``purge_start`` (who, when, the cut-off) before anything is
deleted, then ``purge`` with the counts and the purged person ids in ``purge_ids`` batches of
1,000; a dry run writes one ``purge_dry_run`` record with its counts. No ``identity.events``
message: the contract's identity events are ``created``, ``merged`` and ``split``
(``reglink/schemas/identity-event.json`` enumerates them), and a consumer validating against
it would reject a ``purged`` event.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from matchers.types import PurgeReport
from reglink.core.errors import ReglinkError
from reglink.core.rules import decisions as dec
from reglink.core.settings import Settings
from reglink.stores import schema as sk

AUDIT_BATCH = 1000


@dataclass
class PurgeResult:
    cutoff: datetime
    report: PurgeReport
    under_review: int  # persons with an alert under review (kept if otherwise expired)
    audit_ids: list[str]

    def line(self) -> str:
        r = self.report
        kept = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in sorted(r.kept.items()))
        verb = "would purge" if r.dry_run else "purged"
        return (f"{'dry run: ' if r.dry_run else ''}{verb} {r.purged} of {r.examined} "
                f"identities with no record since {self.cutoff.isoformat()} "
                f"({r.expired} older; kept: {kept or 'none'}); removed {r.index_entries} index "
                f"entries, {r.links} record links, {r.pointers} merge pointers, "
                f"{r.state_keys} state keys; {r.conflicts} left to the next run "
                f"(changed by a worker meanwhile); audited {', '.join(self.audit_ids)}")


def cutoff_of(before: str | None, older_than_days: int | None, settings: Settings,
              now: datetime | None = None) -> datetime:
    """``--before DATE`` (00:00 UTC of that day, or an ISO time) or now - ``--older-than``
    days (default ``settings.purge_after_days``)."""
    if before:
        try:
            if len(before) == 10:
                return datetime.combine(date.fromisoformat(before), datetime.min.time(), UTC)
            t = datetime.fromisoformat(before)
        except ValueError:
            raise ReglinkError(f"--before {before!r}: use YYYY-MM-DD or an ISO time") from None
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    days = settings.purge_after_days if older_than_days is None else older_than_days
    if days < 0:
        raise ReglinkError("--older-than must be 0 or more days")
    return (now or datetime.now(UTC)) - timedelta(days=days)


def open_stay(raw_stays: str | None, cutoff: float) -> bool:
    """Any presence interval without an end, or ending at/after the cut-off."""
    return any(iv.end is None or iv.end >= cutoff
               for ps in sk.decode_stays(raw_stays).values() for iv in ps.intervals)


def _read_decisions(settings: Settings) -> list[dict]:
    from reglink.rebuild import _read_all

    out = []
    for _t, _p, _o, raw in _read_all(settings, [settings.topic("decisions")]):
        try:
            d = json.loads(raw)
        except (TypeError, ValueError):
            continue
        if isinstance(d, dict) and d.get("alert_id"):
            out.append(d)
    return out


def alerts_by_person(kv, store, decisions: list[dict]) -> tuple[set[str], dict[str, list[str]]]:
    """(persons with an alert under review, alert-state keys per person), person ids
    resolved through merges."""
    reviews: dict[str, dec.Review] = {}
    for d in decisions:
        reviews.setdefault(d["alert_id"], dec.Review(d["alert_id"], d.get("rule"))).apply(d)
    under: set[str] = set()
    keys: dict[str, list[str]] = {}
    akeys = sorted(kv.scan(sk.ALERT))
    for n in range(0, len(akeys), 500):
        chunk = akeys[n:n + 500]
        for k, raw in zip(chunk, kv.mget(chunk), strict=True):
            if raw is None:
                continue
            a = json.loads(raw)
            pid = store.resolve(a.get("person_id") or "")
            keys.setdefault(pid, []).append(k)
            review = reviews.get(k[len(sk.ALERT):])
            if a.get("status") == "raised" and (review is None
                                                or review.status not in dec.TERMINAL):
                under.add(pid)
    return under, keys


def run_purge(settings: Settings, before: str | None = None, older_than_days: int | None = None,
              dry_run: bool = False, principal: str | None = None,
              now: datetime | None = None) -> PurgeResult:
    from kafka import KafkaProducer

    from reglink.kafka_auth import connect_redis, kafka_client
    from reglink.person import audit_entry
    from reglink.stores.identity import KVIdentityStore
    from reglink.stores.kv import RedisKV

    cutoff = cutoff_of(before, older_than_days, settings, now)
    limit = cutoff.timestamp()
    principal = principal or getpass.getuser()
    client = connect_redis(settings, "admin")  # SCAN: the sweep, like the stack checks
    producer = kafka_client(KafkaProducer, settings, "admin", acks="all",
                            request_timeout_ms=15000)
    try:
        kv = RedisKV(client, settings.redis_prefix)
        store = KVIdentityStore(kv)
        under, alert_keys = alerts_by_person(kv, store, _read_decisions(settings))

        def keep(ident, state) -> str | None:
            if ident.person_id in under:
                return "alert_under_review"
            if open_stay(state.get(sk.stays(ident.person_id)), limit):
                return "open_stay"
            return None

        why = (f"retention policy: no record since {cutoff.isoformat()}, no open stay, "
               "no alert under review (docs/security.md)")

        def record(entries: list[dict]) -> None:  # acknowledged by the broker (acks=all)
            futures = [producer.send(settings.topic("audit"), key=principal.encode(),
                                     value=json.dumps(e, ensure_ascii=False).encode())
                       for e in entries]
            for f in futures:
                f.get(timeout=15)

        start = None
        if not dry_run:  # a deletion is on record before it starts (a run cut short shows)
            start = audit_entry(principal, "admin", "purge_start",
                                {"cutoff": cutoff.isoformat()}, why, "cli", now=now)
            record([start])
        report = store.purge(limit, keep=keep,
                             state_keys=lambda p: [sk.stays(p), sk.residences(p),
                                                     sk.watch_evidence(p),
                                                     *alert_keys.get(p, [])],
                             dry_run=dry_run)
        at = now or datetime.now(UTC)
        ids = [] if dry_run else report.person_ids  # a dry run records its counts only
        batches = [ids[n:n + AUDIT_BATCH] for n in range(0, len(ids), AUDIT_BATCH)]
        run = audit_entry(principal, "admin", "purge_dry_run" if dry_run else "purge",
                          {"cutoff": cutoff.isoformat(), **report.counts(),
                           "id_batches": len(batches),
                           **({"start": start["audit_id"]} if start else {})},
                          why, "cli", now=at)
        entries = [run] + [
            audit_entry(principal, "admin", "purge_ids",
                        {"run": run["audit_id"], "batch": n, "person_ids": b}, why, "cli", now=at)
            for n, b in enumerate(batches)]
        record(entries)
        if start:
            entries.insert(0, start)
    finally:
        producer.close(timeout=5)
        client.close()
    return PurgeResult(cutoff, report, len(under), [e["audit_id"] for e in entries])
