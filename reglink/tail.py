"""``reglink alerts``: tail the alerts topic, de-duplicated by (alert_id, status)."""

from __future__ import annotations

import json
import sys
import time

from .errors import ServiceUnavailable
from .settings import Settings

_STYLE = {"raised": "bold red", "resolved": "green", "withdrawn": "yellow"}


def format_alert(a: dict) -> str:
    """One terminal line for an alert (no ID numbers: they never appear in alerts)."""
    where = a.get("prefecture") or a.get("watch_id") or ""
    when = a.get("deadline") or a.get("raised_at") or ""
    prob = a.get("match_probability")
    p = f"p={prob:.3f}" if isinstance(prob, int | float) else ""
    return (f"{a.get('status', ''):9} {a.get('rule', ''):18} {a.get('person_id', ''):18} "
            f"{where:8} {when:26} {p} evidence={','.join(a.get('record_ids', []))}")


def tail_alerts(settings: Settings, as_json: bool = False, rule: str | None = None,
                from_beginning: bool = False, idle_timeout: float | None = None,
                out=None, until=None) -> int:
    """Print alerts until interrupted, ``idle_timeout`` seconds pass without one, or
    ``until()`` turns true. Returns how many were shown."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    out = out or sys.stdout
    try:
        consumer = KafkaConsumer(
            settings.topic("alerts"), bootstrap_servers=settings.kafka_bootstrap,
            auto_offset_reset="earliest" if from_beginning else "latest",
            enable_auto_commit=False, consumer_timeout_ms=500)
    except KafkaError:
        raise ServiceUnavailable(
            f"Kafka not reachable at {settings.kafka_bootstrap}: run `reglink stack up`"
        ) from None
    console = None
    if not as_json and out is sys.stdout and sys.stdout.isatty():
        from rich.console import Console

        console = Console()
    seen: set[tuple[str, str]] = set()
    last = time.monotonic()
    shown = 0
    try:
        while True:
            got = False
            for msg in consumer:
                got = True
                alert = json.loads(msg.value)
                if rule and alert.get("rule") != rule:
                    continue
                key = (alert.get("alert_id"), alert.get("status"))
                if key in seen:  # at-least-once delivery: show each (id, status) once
                    continue
                seen.add(key)
                shown += 1
                if as_json:
                    out.write(json.dumps(alert, ensure_ascii=False) + "\n")
                elif console is not None:
                    console.print(format_alert(alert), style=_STYLE.get(alert.get("status")),
                                  markup=False, highlight=False)
                else:
                    out.write(format_alert(alert) + "\n")
                out.flush()
            if got:
                last = time.monotonic()
            elif idle_timeout is not None and time.monotonic() - last >= idle_timeout:
                return shown
            if until is not None and until():
                return shown
    except KeyboardInterrupt:
        return shown
    finally:
        consumer.close()
