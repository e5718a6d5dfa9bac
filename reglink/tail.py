"""``reglink alerts``: tail the alerts topic as a live table (rich), or as JSON lines.

De-duplicated: at-least-once delivery may repeat a message, so each ``(alert_id, status)``
is shown once, and in the table the **latest status per alert_id wins** (one row per alert).
Filters: rule, status, priority, prefecture. Not a TTY (or ``--json``): one line per message.
Before anything else, one line on stderr names the topic and where reading starts.
"""

from __future__ import annotations

import json
import sys
import time
from collections import OrderedDict
from collections.abc import Callable

from reglink.core.settings import Settings
from reglink.kafka_auth import kafka_client

_STYLE = {"raised": "bold red", "resolved": "green", "withdrawn": "yellow"}
_PRIORITY = {"high": "bold red", "medium": "dark_orange", "low": "grey50"}


def format_alert(a: dict) -> str:
    """One terminal line for an alert (no ID numbers: they never appear in alerts)."""
    where = a.get("prefecture") or a.get("watch_id") or ""
    when = a.get("deadline") or a.get("raised_at") or ""
    prob = a.get("match_probability")
    p = f"p={prob:.3f}" if isinstance(prob, int | float) else ""
    return (f"{a.get('status', ''):9} {a.get('rule', ''):18} {a.get('person_id', ''):18} "
            f"{where:8} {when:26} {p} evidence={','.join(a.get('record_ids', []))}")


def wanted(a: dict, rule=None, status=None, priority=None, prefecture=None) -> bool:
    return ((not rule or a.get("rule") == rule)
            and (not status or a.get("status") == status)
            and (not priority or a.get("priority") == priority)
            and (not prefecture or str(a.get("prefecture") or "").startswith(prefecture)))


def alert_table(alerts: list[dict], title: str = "", limit: int = 40):
    """A rich Table of the latest message per alert (newest first)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", expand=False, header_style="bold")
    for col in ("status", "rule", "priority", "where", "person", "deadline / raised", "p",
                "evidence", "alert"):
        table.add_column(col, no_wrap=col not in ("evidence",))
    for a in alerts[:limit]:
        prob = a.get("match_probability")
        table.add_row(
            Text(a.get("status", ""), style=_STYLE.get(a.get("status"), "")),
            (a.get("rule") or "").replace("_", " "),
            Text(a.get("priority") or "", style=_PRIORITY.get(a.get("priority"), "")),
            a.get("prefecture") or a.get("watch_id") or "",
            a.get("person_id", ""),
            (a.get("deadline") or a.get("raised_at") or "")[:16],
            f"{prob:.3f}" if isinstance(prob, int | float) else "",
            ",".join(a.get("record_ids", []))[:40],
            a.get("alert_id", "")[:13])
    if len(alerts) > limit:
        table.caption = f"… and {len(alerts) - limit} more (narrow with --rule/--status/...)"
    return table


def tail_alerts(settings: Settings, as_json: bool = False, rule: str | None = None,
                from_beginning: bool = False, idle_timeout: float | None = None,
                out=None, until=None, status: str | None = None,
                priority: str | None = None, prefecture: str | None = None,
                live: bool | None = None, err=None,
                on_alert: Callable[[dict], None] | None = None) -> int:
    """Show alerts until interrupted, ``idle_timeout`` seconds pass without one, or
    ``until()`` turns true. ``on_alert`` gets every alert shown. Returns how many messages
    were shown."""
    from kafka import KafkaConsumer

    out = out or sys.stdout
    err = err or sys.stderr
    topic = settings.topic("alerts")
    start = ("from the oldest alert" if from_beginning else
             "from now on: only new alerts (--from-beginning shows the earlier ones)")
    stop = (f", until {idle_timeout:g} s pass without one" if idle_timeout is not None
            else ", until Ctrl-C" if until is None else "")
    err.write(f"reading topic {topic} {start}{stop}\n")
    err.flush()
    consumer = kafka_client(KafkaConsumer, settings, "reader", settings.topic("alerts"),
                            auto_offset_reset="earliest" if from_beginning else "latest",
                            enable_auto_commit=False, consumer_timeout_ms=500)
    if live is None:
        live = not as_json and out is sys.stdout and sys.stdout.isatty()
    filters = dict(rule=rule, status=status, priority=priority, prefecture=prefecture)
    title = "alerts " + " ".join(f"{k}={v}" for k, v in filters.items() if v)
    seen: set[tuple[str, str]] = set()
    latest: OrderedDict[str, dict] = OrderedDict()
    last = time.monotonic()
    shown = 0
    view = None
    if live:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=out)
        view = Live(alert_table([], title + " (waiting…)"), console=console,
                    refresh_per_second=4, transient=False)
        view.start()
    try:
        while True:
            got = False
            for msg in consumer:
                got = True
                try:
                    alert = json.loads(msg.value)
                except ValueError:
                    continue
                key = (alert.get("alert_id"), alert.get("status"))
                if key in seen:  # at-least-once delivery: show each (id, status) once
                    continue
                seen.add(key)
                latest[alert.get("alert_id")] = alert
                latest.move_to_end(alert.get("alert_id"))
                if not wanted(alert, **filters) and not live:
                    continue
                shown += 1
                if on_alert is not None:
                    on_alert(alert)
                if as_json:
                    out.write(json.dumps(alert, ensure_ascii=False) + "\n")
                    out.flush()
                elif not live:
                    out.write(format_alert(alert) + "\n")
                    out.flush()
            if got and view is not None:
                rows = [a for a in reversed(latest.values()) if wanted(a, **filters)]
                view.update(alert_table(rows, f"{title} ({len(rows)} alerts, "
                                              f"{len(seen)} messages)"))
            if got:
                last = time.monotonic()
            elif idle_timeout is not None and time.monotonic() - last >= idle_timeout:
                if not shown:
                    err.write(f"no alert on {topic} in {idle_timeout:g} s\n")
                return shown
            if until is not None and until():
                return shown
    except KeyboardInterrupt:
        return shown
    finally:
        if view is not None:
            view.stop()
        consumer.close()
