"""The review console: FastAPI, server-rendered Jinja2 pages, a live queue over SSE.

Routes::

    GET  /login, POST /login, POST /logout
    GET  /                      alert queue (filters: rule, priority, status, prefecture, review)
    GET  /events                SSE: queue rows as they change (same filters)
    GET  /alerts/{id}           detail: evidence vs identity, weights, timeline, decisions
    POST /alerts/{id}/decide    confirm / dismiss / more_info / misused_identity + reason code
    GET  /persons, POST /persons            name search (justification, audited)
    GET  /persons/{pid}, POST /persons/{pid} identity timeline (justification, audited)
    GET  /audit                 the audit trail, filtered and paged (auditor, supervisor)
    GET  /audit.csv             the filtered audit trail as CSV (auditor, supervisor)
    GET  /stats                 population statistics per prefecture (filters: prefecture,
                                from, to) and stale registrations per prefecture
    GET  /quality               source quality, organisations worst first (source, min)
    GET  /quality/{source}/{org}  one organisation's report
    GET  /receipts/{source}/{org} its receipt (JSON: its own counts only)
    GET  /metrics, GET /healthz

Every decision goes to ``decisions`` and ``audit`` (acknowledged by the broker) before the page
says it is done. Every route that shows personal data writes one ``audit`` record (who, when,
what, why) before the data is shown: ``/`` (queue_view), ``/events`` (queue_stream when it
opens, queue_row for each row it pushes), ``/alerts/{id}`` (alert_view), ``/persons`` POST
(person_search) and ``/persons/{pid}`` POST (person_lookup; both need a justification, checked
by one gate, :func:`justified`), ``/audit`` (audit_view), ``/audit.csv`` (audit_export); the
decision POST (decision) and the login (login) too. The other routes show no personal data
(forms, metrics, health, and the statistics and source quality pages: counts per prefecture,
per organisation and per alert status, never a person id or a record); the classification is
checked route by route in ``tests/integration/test_audit_completeness.py``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.middleware.sessions import SessionMiddleware

from reglink import person as people
from reglink.console import charts, fmt, reports
from reglink.console.auth import User, Users
from reglink.console.state import ConsoleState, matches
from reglink.core import sources
from reglink.core.errors import ConfigError
from reglink.core.rules import decisions as dec
from reglink.core.rules.clock import ts
from reglink.core.settings import DEV_CONSOLE_SECRET, Settings
from reglink.stores.schema import StayState

log = logging.getLogger("reglink.console")
TEMPLATES = Path(__file__).parent / "templates"
FILTERS = ("rule", "priority", "status", "prefecture", "review")
AUDIT_FILTERS = ("who", "action", "subject", "since", "until")
AUDIT_PAGE = 50
#: the audit actions the console and ``reglink person`` / ``reglink purge`` write
AUDIT_ACTIONS = ("login", "queue_view", "queue_stream", "queue_row", "alert_view", "decision",
                 "person_search", "person_lookup", "audit_view", "audit_export", "purge_start",
                 "purge", "purge_ids", "purge_dry_run")


class Sink(Protocol):
    def send(self, topic: str, key: str, value: dict) -> None: ...


def mask_id(value: str | None) -> str:
    """Show only the area code and length of an ID number (never the whole number)."""
    if not value:
        return ""
    s = "".join(ch for ch in str(value) if ch.isalnum())
    return f"{s[:6]}{'•' * max(len(s) - 6, 0)}" if len(s) > 6 else "•" * len(s)


def mask_phone(value: str | None) -> str:
    s = "".join(ch for ch in str(value or "") if ch.isdigit())
    return f"•••{s[-4:]}" if s else ""


def evidence_view(key: str, rec: dict | None) -> dict:
    """The fields a reviewer compares, with ID numbers and phones masked."""
    source = key.split(":", 1)[0]
    if rec is None:
        return {"key": key, "source": source, "missing": True, "rows": {}}
    p = rec.get("person") or {}
    rows = {"name": p.get("name", ""), "aliases": ", ".join(p.get("aliases") or []),
            "sex": p.get("sex", ""), "birth date": p.get("birth_date", ""),
            "ID": mask_id(p.get("id_number")), "ID type": p.get("id_type", ""),
            "phone": mask_phone(p.get("phone"))}
    decl = sources.current().get(source)
    for f in decl.console_fields if decl is not None else ():
        if rec.get(f) not in (None, ""):
            rows[f.replace("_", " ")] = rec[f]
    return {"key": key, "source": source, "missing": False,
            "rows": {k: v for k, v in rows.items() if v not in (None, "")}}


def stay_data(alert: dict, stays: dict[str, StayState],
              state: ConsoleState) -> tuple[list[dict], list[dict]]:
    """The presence intervals and registrations of the alert's prefecture: from the
    workers' stay state, or, with no identity store, from the evidence records."""
    pref = alert.get("prefecture")
    ps = stays.get(pref) if stays else None
    intervals, regs = [], []
    if ps:
        for iv in ps.intervals:
            intervals.append({"label": iv.key, "start": iv.start, "end": iv.end,
                              "grace": iv.grace})
        for r in ps.registrations:
            regs.append({"label": r.key, "registered_at": r.registered_at,
                         "valid_from": r.valid_from, "valid_until": r.valid_until_end})
    else:  # identity store unavailable: draw what the evidence records say
        for key in alert.get("evidence", []):
            rec = state.record(key) or {}
            decl = sources.current().get(key.split(":", 1)[0])
            presence = decl.presence if decl is not None else None
            try:
                if isinstance(presence, sources.DateInterval):
                    start, end = presence.interval(rec)
                    intervals.append({"label": key, "start": start, "end": end})
                elif isinstance(presence, sources.CheckInOut):  # each event, from its time on
                    intervals.append({"label": key, "start": presence.mark(rec)[2], "end": None})
                elif isinstance(presence, sources.Registration):
                    reg_at, valid_from, valid_until = presence.period(rec)
                    regs.append({"label": key, "registered_at": reg_at,
                                 "valid_from": valid_from, "valid_until": valid_until})
            except (KeyError, ValueError):
                continue
    return intervals, regs


def registration_data(alert: dict, state: ConsoleState) -> tuple[list[dict], list[dict]]:
    """The registrations and the deregistration a ``stale_registration`` alert names, from
    its evidence records: ``(registrations, departures)``. A registration is ``old`` (the
    stale one, in the alert's prefecture) or ``new`` (the one that superseded it):
    ``{key, role, prefecture, label, registered_at, valid_from, valid_until}``; a
    deregistration is ``{key, label, registered_at, left_at}`` (when it was recorded, and
    00:00 of the day the person left). Records not in the console's cache are left out."""
    regs, departures = [], []
    for key in alert.get("evidence", []):
        rec = state.record(key)
        decl = sources.current().get(key.split(":", 1)[0])
        presence = decl.presence if decl is not None else None
        if rec is None or not isinstance(presence, sources.Registration):
            continue
        try:
            if presence.is_deregistration(rec):
                at, left = presence.departure(rec)
                departures.append({"key": key, "label": f"deregistration · {key}",
                                   "registered_at": at, "left_at": left})
                continue
            at, valid_from, valid_until = presence.period(rec)
        except (KeyError, ValueError):
            continue
        pref = str(rec.get("city_code", ""))[:4]
        role = "old" if pref == alert.get("prefecture") else "new"
        regs.append({"key": key, "role": role, "prefecture": pref,
                     "label": f"{role} {pref} · {key}", "registered_at": at,
                     "valid_from": valid_from, "valid_until": valid_until})
    regs.sort(key=lambda r: r["role"] != "old")
    return regs, departures


def after(seconds: float) -> str:
    """How long after something: ``2 d 10 h``, ``5 h``, ``under 1 h``."""
    days, hours = int(seconds // 86400), int(seconds % 86400 // 3600)
    return f"{days} d {hours} h" if days else f"{max(hours, 1)} h" if hours else "under 1 h"


def late_registrations(regs: list[dict], deadline: float | None, tz: tzinfo) -> list[str]:
    """One sentence per registration made after the deadline: it does not clear the alert
    (a registration counts from when it was made), but the reviewer should know of it."""
    if deadline is None:
        return []
    out = []
    for r in sorted(regs, key=lambda r: r["registered_at"]):
        late = r["registered_at"] - deadline
        if late <= 0:
            continue
        cover = (" Its validity covers the deadline, but it was made too late to count."
                 if r["valid_from"] <= deadline < r["valid_until"] else "")
        out.append(f"{r['label']} was registered {fmt.when(r['registered_at'], tz)}, "
                   f"{after(late)} after the deadline.{cover}")
    return out


def deregistered_late(departures: list[dict], deadline: float | None, tz: tzinfo) -> str:
    """What a resolved ``stale_registration`` alert's header says: when the old registration
    was deregistered, after the deadline."""
    if not departures or deadline is None:
        return ("Deregistered after the deadline (the deregistration record is not in the "
                "console cache).")
    d = min(departures, key=lambda d: d["registered_at"])
    return (f"Deregistered after the deadline on {fmt.when(d['registered_at'], tz)}, "
            f"{after(max(d['registered_at'] - deadline, 0))} late ({d['key']}; the person left "
            f"on {fmt.when(d['left_at'], tz)}).")


def check_secret(settings: Settings) -> None:
    """Refuse the default session secret (anyone could forge a session with it) unless the
    settings opt in for development."""
    if (settings.console_secret.get_secret_value() == DEV_CONSOLE_SECRET
            and not settings.console_dev_secret):
        raise ConfigError("the console's session secret is the public default: set "
                          "REGLINK_CONSOLE_SECRET=$(openssl rand -hex 32), or "
                          "REGLINK_CONSOLE_DEV_SECRET=1 to run with it for development")


def subject_text(subject: dict | None) -> str:
    """An audit subject for a reader: ``alert id A1; person id P1``; a list by its count and
    first three items, a mapping as ``key=value`` pairs."""
    parts = []
    for k, v in (subject or {}).items():
        if isinstance(v, list):
            head = ", ".join(str(x) for x in v[:3])
            v = f"{len(v)}: {head}{', …' if len(v) > 3 else ''}" if v else "none"
        elif isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items()) or "none"
        parts.append(f"{k.replace('_', ' ')} {v}")
    return "; ".join(parts)


def _bound(value: str, tz: tzinfo, end: bool) -> datetime | None:
    """A filter's date (``2026-03-09``) or minute (``2026-03-09T10:00``) in ``tz``: the start
    of it, or for ``end`` the start of the next day for a bare date."""
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    if len(value) == 10 and end:
        t += timedelta(days=1)
    return t if t.tzinfo else t.replace(tzinfo=tz)


def audit_matches(e: dict, f: dict[str, str], tz: tzinfo) -> bool:
    """Whether audit entry ``e`` passes the filters: who and action exactly, subject as any
    part of the subject's JSON (an alert, person or decision id), time from ``since`` up to
    (not including) ``until``."""
    if f.get("who") and e.get("principal") != f["who"]:
        return False
    if f.get("action") and e.get("action") != f["action"]:
        return False
    if f.get("subject") and f["subject"] not in json.dumps(e.get("subject"),
                                                           ensure_ascii=False):
        return False
    since, until = _bound(f.get("since", ""), tz, False), _bound(f.get("until", ""), tz, True)
    if since or until:
        try:
            at = datetime.fromisoformat(e["at"])
        except (KeyError, ValueError):
            return False
        if (since and at < since) or (until and at >= until):
            return False
    return True


def read_audit(settings: Settings) -> list[dict]:
    """The audit topic from the beginning, oldest first."""
    got = people._read_all(settings, ["audit"], 800)
    return [e for _t, e in got["audit"] if isinstance(e, dict)]


def csv_cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text, never runs as a formula."""
    s = "" if value is None else str(value)
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s


def create_app(settings: Settings, users: Users, state: ConsoleState, sink: Sink,
               identities: people.IdentityView | None = None,
               audit_reader: Callable[[], list[dict]] | None = None) -> FastAPI:
    """The console on ``state``, writing to ``sink``; ``audit_reader`` returns the audit
    trail oldest first (default: the ``audit`` topic, read from the beginning)."""
    app = FastAPI(title="reglink review console", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_middleware(SessionMiddleware, secret_key=settings.console_secret.get_secret_value(),
                       session_cookie="reglink_console", same_site="strict", https_only=False,
                       max_age=8 * 3600)
    tz = fmt.zone(settings.console_tz)
    blind_priorities = {p.strip() for p in settings.blind_review_priorities.split(",")
                        if p.strip()}
    read_trail = audit_reader or (lambda: read_audit(settings))

    def raised(a: dict) -> str:
        """When a queue row's alert fell due: its deadline (a stay, a stale registration),
        its event time (a watchlist match), or else when the alert was published."""
        for key in ("deadline", "raised_at"):
            if a.get(key):
                return fmt.when(a[key], tz)
        first = state.first_seen.get(a.get("alert_id", ""))
        return f"{fmt.when(first, tz)} (published)" if first else ""

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape())
    env.filters.update(when=lambda v: fmt.when(v, tz), field=lambda v: fmt.field(v, tz),
                       prob=fmt.prob, place=fmt.place, subject=subject_text, pct=fmt.pct,
                       share=charts.share, quote=lambda v: quote(str(v), safe=""))
    env.globals.update(REASONS=dec.REASONS, ALLOWED=dec.ALLOWED, TERMINAL=dec.TERMINAL,
                       STATUSES=dec.STATUSES, reasons=dec.reasons,
                       needed=dec.confirmations_needed,
                       dismissals_needed=dec.dismissals_needed,
                       supervisor_needed=dec.supervisor_needed, raised=raised,
                       TZ=fmt.offset(tz), SUPPRESS_DAYS=settings.dismissal_suppress_s // 86400,
                       STALE_STATUSES=reports.ALERT_STATUSES, DEFAULT_DAYS=reports.DEFAULT_DAYS,
                       MIN_RECORDS=reports.MIN_RECORDS)
    row_tpl = env.get_template("_row.html")

    def page(name: str, request: Request, user: User | None, status_code: int = 200, **ctx):
        flash = request.session.pop("flash", None) if user else None
        html = env.get_template(name).render(user=user, flash=flash, request=request, **ctx)
        return HTMLResponse(html, status_code=status_code)

    def shown(alert: dict, review: dec.Review, user: User) -> dec.Review:
        """The review as ``user`` may see it: blinded while they are a blind second
        reviewer (:func:`dec.blind`)."""
        if dec.blind(alert, review, user.name, blind_priorities):
            return dec.blinded(review)
        return review

    def current(request: Request) -> User | None:
        name = request.session.get("user")
        return users.get(name) if name else None

    def login_redirect(request: Request) -> RedirectResponse:
        nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': nxt})}", status_code=303)

    def audit(user: User, action: str, subject: dict, why: str) -> dict:
        entry = people.audit_entry(user.name, user.role, action, subject, why, "console")
        sink.send("audit", user.name, entry)
        return entry

    def justified(request: Request, justification: str, pid: str | None,
                  q: str) -> tuple[User, str] | Response:
        """The gate of both person routes: a signed-in user and a justification of at least
        ``people.MIN_JUSTIFICATION`` characters. Returns ``(user, justification)``, or the
        response to send instead (the login redirect, or the form again with the error and
        no data, 400; nothing is audited because nothing is shown)."""
        user = current(request)
        if user is None:
            return login_redirect(request)
        try:
            return user, people.check_justification(justification)
        except people.JustificationRequired as exc:
            return page("person.html", request, user, pid=pid, q=q, tl=None, hits=None,
                        error=str(exc).split(":")[0] + ".", status_code=400)

    def filters_of(request: Request) -> dict[str, str]:
        return {k: request.query_params.get(k, "") for k in FILTERS}

    # ------------------------------------------------------------------ auth
    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/"):
        return page("login.html", request, None, next=next, error=None)

    @app.post("/login")
    def login(request: Request, username: str = Form(...), password: str = Form(...),
              next: str = Form("/")):
        user = users.authenticate(username, password)
        if user is None:
            log.warning("console login failed for a user name")
            return page("login.html", request, None, status_code=401, next=next,
                        error="Wrong user name or password.")
        request.session.clear()
        request.session["user"] = user.name
        audit(user, "login", {}, "session start")
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        return RedirectResponse(target, status_code=303)

    @app.post("/logout")
    def logout(request: Request):
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # ------------------------------------------------------------------ queue + SSE
    @app.get("/", response_class=HTMLResponse)
    def queue(request: Request):
        user = current(request)
        if user is None:
            return login_redirect(request)
        f = filters_of(request)
        # filtered on the review as the user may see it: a blind reviewer's filter on a
        # review status must not tell which alerts a first reviewer confirmed or dismissed
        rows = [(a, r) for a, r in
                ((a, shown(a, r, user)) for a, r in
                 state.queue(f["rule"], f["priority"], f["status"], f["prefecture"]))
                if not f["review"] or r.status == f["review"]]
        audit(user, "queue_view", {"filters": {k: v for k, v in f.items() if v},
                                   "alert_ids": [a["alert_id"] for a, _r in rows]},
              "alert queue: review work")
        return page("queue.html", request, user, rows=rows, filters=f, facets=state.facets(),
                    ready=state.ready.is_set(), query=urlencode({k: v for k, v in f.items()
                                                                 if v}))

    @app.get("/events")
    async def events(request: Request):
        user = current(request)
        if user is None:
            return Response("login required", status_code=401)
        f = filters_of(request)
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[str] = asyncio.Queue()

        def push(_kind: str, aid: str) -> None:
            loop.call_soon_threadsafe(q.put_nowait, aid)

        live = {k: v for k, v in f.items() if v}
        await asyncio.to_thread(audit, user, "queue_stream", {"filters": live},
                                "live alert queue: review work")
        state.subscribe(push)
        state.metrics.sse_clients.inc()

        async def stream():
            try:
                yield "retry: 2000\n\n"
                while True:
                    if await request.is_disconnected():
                        break
                    try:
                        aid = await asyncio.wait_for(q.get(), 5.0)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    alert = state.alert(aid)
                    if alert is None:
                        continue
                    review = shown(alert, state.review(aid), user)
                    html = ""
                    if matches(alert, review, f["rule"], f["priority"], f["status"],
                               f["prefecture"], f["review"]):
                        # a row shown live is a queue view of one alert: audited first
                        await asyncio.to_thread(
                            audit, user, "queue_row", {"filters": live, "alert_id": aid,
                                                       "person_id": alert.get("person_id")},
                            "live alert queue: review work")
                        html = row_tpl.render(a=alert, r=review)
                    yield f"event: alert\ndata: {json.dumps({'id': aid, 'html': html})}\n\n"
            finally:
                state.unsubscribe(push)
                state.metrics.sse_clients.dec()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    # ------------------------------------------------------------------ alert detail
    @app.get("/alerts/{aid}", response_class=HTMLResponse)
    def alert_detail(request: Request, aid: str):
        user = current(request)
        if user is None:
            return login_redirect(request)
        alert = state.alert(aid)
        if alert is None:
            return page("error.html", request, user, status_code=404,
                        message=f"No alert {aid} (yet). The queue fills from the alerts topic.")
        audit(user, "alert_view", {"alert_id": aid, "person_id": alert.get("person_id")},
              f"review of alert {aid}")
        state.metrics.lookups.labels("alert").inc()
        identity, stays = None, {}
        if identities is not None:
            try:
                identity = identities.summary(alert["person_id"])
                if alert.get("rule") == "unregistered_stay":
                    stays = identities.stays(alert["person_id"])
            except Exception:  # noqa: BLE001 - the page still shows the evidence
                log.warning("identity store not reachable", exc_info=True)
        evidence = [evidence_view(k, state.record(k)) for k in alert.get("evidence", [])]
        expl = alert.get("explanation") or {}
        rule = alert.get("rule")
        deadline = ts(alert["deadline"]) if alert.get("deadline") else None
        late: list[str] = []
        resolved_note = None
        titles: dict[str, str] = {}
        if rule == "unregistered_stay":
            intervals, regs = stay_data(alert, stays, state)
            timeline = charts.timeline(intervals, regs, deadline, tz=tz)
            late = late_registrations(regs, deadline, tz)
        elif rule == "stale_registration":
            regs, departures = registration_data(alert, state)
            timeline = charts.timeline([], regs, deadline, tz=tz, departures=departures)
            titles = {r["key"]: r["label"] for r in regs + departures}
            if alert.get("status") == "resolved":
                resolved_note = deregistered_late(departures, deadline, tz)
        else:
            timeline = None
        if timeline is None:  # one comparison: the watch entry with the identity
            weight_charts = [("watch entry vs identity", fmt.summary(expl),
                              charts.waterfall(expl), [])]
        else:  # one chart per evidence record, in the order of the evidence
            order = {k: i for i, k in enumerate(alert.get("evidence", []))}
            weight_charts = [(titles.get(k, k), fmt.summary(v), charts.waterfall(v),
                              fmt.link_counterfactuals(v))
                             for k, v in sorted(expl.items(),
                                                key=lambda kv: (order.get(kv[0], len(order)),
                                                                kv[0]))]
        row_names = ["name", "aliases", "sex", "birth date", "ID", "ID type", "phone"]
        row_names = [n for n in row_names if any(n in ev["rows"] for ev in evidence)]
        for ev in evidence:
            row_names += [k for k in ev["rows"] if k not in row_names]
        review = shown(alert, state.review(aid), user)
        return page("alert.html", request, user, a=alert, r=review, evidence=evidence,
                    identity=identity, row_names=row_names, weight_charts=weight_charts,
                    counterfactuals=fmt.counterfactuals(alert),
                    timeline=timeline, late=late, resolved_note=resolved_note,
                    mine=review.acted(user.name),
                    withdrawn=(fmt.withdrawn_note(alert) if alert.get("status") == "withdrawn"
                               else None),
                    actions=sorted(dec.ALLOWED[user.role], key=dec.ACTIONS.index))

    @app.post("/alerts/{aid}/decide")
    def decide(request: Request, aid: str, action: str = Form(...), reason: str = Form(""),
               note: str = Form("")):
        user = current(request)
        if user is None:
            return login_redirect(request)
        alert = state.alert(aid)
        if alert is None:
            return page("error.html", request, user, status_code=404, message=f"No alert {aid}")
        if not user.can_decide:
            return page("error.html", request, user, status_code=403,
                        message="Your role is read-only: auditors cannot decide on alerts.")
        review = state.review(aid)
        blind = dec.blind(alert, review, user.name, blind_priorities)
        try:
            if alert.get("status") == "withdrawn":
                raise dec.DecisionError("this alert was withdrawn: no decision is needed")
            if not reason:
                raise dec.DecisionError(f"choose a reason to {action.replace('_', ' ')}")
            dec.check(alert, review, action, reason, user.name, user.role)
        except dec.DecisionError as exc:
            request.session["flash"] = {"kind": "error", "text": str(exc)}
            return RedirectResponse(f"/alerts/{aid}", status_code=303)
        d = dec.make_decision(alert, action, reason, user.name, user.role, note.strip(),
                              suppress_s=settings.dismissal_suppress_s, review=review,
                              blind_review=blind)
        sink.send("decisions", aid, d)
        audit(user, "decision", {"alert_id": aid, "decision_id": d["decision_id"],
                                 "person_id": alert.get("person_id"),
                                 **({"blind": True} if blind else {})},
              f"{action}: {reason}" + (f" ({note.strip()[:200]})" if note.strip() else ""))
        state.add_decision(d)
        after = state.review(aid)
        second = ("a second, different reviewer, a supervisor," if dec.supervisor_needed(alert)
                  and user.role != "supervisor" else "a second, different reviewer")
        text = {dec.AWAITING_SECOND: "Confirmed (1 of 2): a second, different reviewer must "
                                     "confirm this watchlist match.",
                dec.AWAITING_SECOND_DISMISSAL: f"Dismissal proposed (1 of 2): {second} must "
                                               "dismiss it too; until then the match is not "
                                               "suppressed.",
                dec.CONFIRMED: "Confirmed.", dec.DISMISSED: "Dismissed.",
                dec.MORE_INFO: "Marked as needing more information.",
                dec.MISUSED: "Marked as misused identity: this person is not hit again."}
        request.session["flash"] = {"kind": "ok", "text": text.get(after.status, "Recorded.")}
        return RedirectResponse(f"/alerts/{aid}", status_code=303)

    # ------------------------------------------------------------------ persons
    @app.get("/persons", response_class=HTMLResponse)
    def person_search_form(request: Request, q: str = ""):
        user = current(request)
        if user is None:
            return login_redirect(request)
        return page("person.html", request, user, pid=None, q=q, tl=None, hits=None,
                    error=None)

    @app.post("/persons", response_class=HTMLResponse)
    def person_search(request: Request, q: str = Form(...), justification: str = Form("")):
        gate = justified(request, justification, pid=None, q=q)
        if isinstance(gate, Response):
            return gate
        user, why = gate
        hits = identities.find_by_name(q) if identities is not None else []
        audit(user, "person_search", {"query_kind": "name", "person_ids": hits}, why)
        state.metrics.lookups.labels("person").inc()
        request.session["why"] = why
        return page("person.html", request, user, pid=None, q=q, tl=None, hits=hits,
                    error=None)

    @app.get("/persons/{pid}", response_class=HTMLResponse)
    def person_form(request: Request, pid: str):
        user = current(request)
        if user is None:
            return login_redirect(request)
        return page("person.html", request, user, pid=pid, q="", tl=None, hits=None,
                    error=None, why=request.session.get("why", ""))

    @app.post("/persons/{pid}", response_class=HTMLResponse)
    async def person_lookup(request: Request, pid: str, justification: str = Form("")):
        gate = justified(request, justification, pid=pid, q="")
        if isinstance(gate, Response):
            return gate
        user, why = gate
        await asyncio.to_thread(audit, user, "person_lookup", {"person_id": pid}, why)
        state.metrics.lookups.labels("person").inc()
        tl = await asyncio.to_thread(people.build_timeline, settings, pid, identities)
        return page("person.html", request, user, pid=pid, q="", tl=tl, hits=None,
                    error=None, why=why)

    # ------------------------------------------------------------------ audit trail
    def trail_filters(request: Request) -> dict[str, str]:
        return {k: request.query_params.get(k, "").strip() for k in AUDIT_FILTERS}

    def overseer(request: Request) -> User | Response:
        user = current(request)
        if user is None:
            return login_redirect(request)
        if user.role not in ("auditor", "supervisor"):
            return page("error.html", request, user, status_code=403,
                        message="The audit trail is for auditors and supervisors.")
        return user

    @app.get("/audit", response_class=HTMLResponse)
    async def audit_trail(request: Request, page_no: int = Query(1, alias="page")):
        user = overseer(request)
        if isinstance(user, Response):
            return user
        f = trail_filters(request)
        trail = await asyncio.to_thread(read_trail)
        found = [e for e in reversed(trail) if audit_matches(e, f, tz)]
        pages = max(1, -(-len(found) // AUDIT_PAGE))
        page_no = min(max(page_no, 1), pages)
        entries = found[(page_no - 1) * AUDIT_PAGE: page_no * AUDIT_PAGE]
        # the trail names persons and justifications: reading it is audited too
        await asyncio.to_thread(
            audit, user, "audit_view",
            {"filters": {k: v for k, v in f.items() if v}, "page": page_no,
             "entries": len(entries), "newest": entries[0].get("audit_id") if entries else None},
            "audit trail: oversight")
        query = urlencode({k: v for k, v in f.items() if v})
        return page("audit.html", request, user, entries=entries, filters=f, found=len(found),
                    page_no=page_no, pages=pages, query=query, actions=AUDIT_ACTIONS,
                    people=sorted({str(e.get("principal")) for e in trail
                                   if e.get("principal")}))

    @app.get("/audit.csv")
    async def audit_export(request: Request):
        user = overseer(request)
        if isinstance(user, Response):
            return user
        f = trail_filters(request)
        trail = await asyncio.to_thread(read_trail)
        found = [e for e in reversed(trail) if audit_matches(e, f, tz)]
        # an export carries the same personal data as the page: audited before it is sent
        await asyncio.to_thread(
            audit, user, "audit_export",
            {"filters": {k: v for k, v in f.items() if v}, "entries": len(found),
             "newest": found[0].get("audit_id") if found else None},
            "audit trail export: oversight")
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["audit_id", "at", f"at ({fmt.offset(tz)})", "principal", "role", "action",
                    "subject", "justification", "via"])
        for e in found:
            w.writerow([csv_cell(v) for v in (
                e.get("audit_id"), e.get("at"), fmt.when(e.get("at"), tz), e.get("principal"),
                e.get("role"), e.get("action"),
                json.dumps(e.get("subject"), ensure_ascii=False, sort_keys=True),
                e.get("justification"), e.get("via"))])
        name = f"reglink-audit-{datetime.now(tz):%Y%m%d-%H%M%S}.csv"
        return Response("\ufeff" + buf.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    # ------------------------------------------------------------------ statistics, quality
    # Counts only (per prefecture and day, per organisation, per alert status): every signed-in
    # role may see them, and viewing them is not audited (no personal data is shown).
    @app.get("/stats", response_class=HTMLResponse)
    def statistics(request: Request, prefecture: str = "", date_from: str = Query("", alias="from"),
                   date_to: str = Query("", alias="to")):
        user = current(request)
        if user is None:
            return login_redirect(request)
        try:
            f = reports.stats_filters(prefecture, date_from, date_to)
        except reports.FilterError as exc:
            f, error = reports.StatsFilters(), str(exc)
        else:
            error = None
        view = reports.stats_view(state.stats_rows(), state.alerts_of(reports.STALE_RULE), f)
        label = "present, registered and present unregistered per day in "
        # one prefecture gets a chart as wide as the page, several a small multiple each
        size = {"width": 900, "height": 260} if len(view.series) == 1 else {}
        svgs = {p: charts.series(view.dates, vs, reports.CHARTED, label + p, **size)
                for p, vs in view.series.items()}
        return page("stats.html", request, user, view=view, charts=svgs, error=error,
                    colours=reports.CHARTED, ready=state.ready.is_set(),
                    status_code=400 if error else 200)

    def min_records(request: Request) -> int | None:
        """The ``min`` records an organisation needs to be ranked; None if it is no count."""
        raw = request.query_params.get("min", "").strip()
        return reports.MIN_RECORDS if raw == "" else int(raw) if raw.isdigit() else None

    @app.get("/quality", response_class=HTMLResponse)
    def quality(request: Request, source: str = ""):
        user = current(request)
        if user is None:
            return login_redirect(request)
        least = min_records(request)
        if least is None:
            return page("error.html", request, user, status_code=400,
                        message="min: give a whole number of records (0 or more).")
        held = state.quality_reports()
        rows = reports.ranked(held, source, least)
        return page("quality.html", request, user, rows=rows, source=source, least=least,
                    sources=sorted({r["source"] for r in held}), ready=state.ready.is_set())

    def organisation(request: Request, source: str, org: str
                     ) -> tuple[User, reports.OrganisationView, int] | Response:
        user = current(request)
        if user is None:
            return login_redirect(request)
        least = min_records(request)
        least = reports.MIN_RECORDS if least is None else least
        view = reports.organisation_view(state.quality_reports(), source, org, least)
        if view is None:
            return page("error.html", request, user, status_code=404,
                        message=f"No quality report for {source} organisation {org} (yet). "
                                "The reports come from the quality topic.")
        return user, view, least

    @app.get("/quality/{source}/{org:path}", response_class=HTMLResponse)
    def quality_organisation(request: Request, source: str, org: str):
        got = organisation(request, source, org)
        if isinstance(got, Response):
            return got
        user, view, least = got
        return page("quality_org.html", request, user, v=view, r=view.report, least=least)

    @app.get("/receipts/{source}/{org:path}")
    def quality_receipt(request: Request, source: str, org: str):
        got = organisation(request, source, org)
        if isinstance(got, Response):
            return got
        name, body = reports.receipt(got[1].report)
        return Response(json.dumps(body, ensure_ascii=False, indent=2) + "\n",
                        media_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    # ------------------------------------------------------------------ ops
    @app.get("/metrics")
    def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz():
        return {"ready": state.ready.is_set(), "alerts": len(state.alerts)}

    return app


def run_console(settings: Settings, port: int | None = None) -> None:
    """``reglink console``: rebuild state from the topics, then serve on 127.0.0.1."""
    import uvicorn
    from kafka.errors import KafkaError

    from reglink.console.state import Feed, Publisher
    from reglink.core.errors import ServiceUnavailable
    from reglink.logs import configure_json_logging

    check_secret(settings)
    fmt.zone(settings.console_tz)
    configure_json_logging()
    users = Users.load(settings.console_users_file)
    try:
        sink = Publisher(settings)
    except KafkaError:
        raise ServiceUnavailable(
            f"Kafka not reachable at {settings.kafka_bootstrap}: run `reglink stack up`"
        ) from None
    identities = people.IdentityView(settings)
    state = ConsoleState()
    feed = Feed(settings, state)
    feed.start()
    app = create_app(settings, users, state, sink, identities)
    port = settings.console_port if port is None else port
    log.info("review console on http://%s:%d/", settings.console_host, port)
    try:
        uvicorn.run(app, host=settings.console_host, port=port, log_level="warning",
                    timeout_graceful_shutdown=2)
    finally:
        feed.stopping.set()
        sink.close()
