"""What the console knows, rebuilt from the topics at every start (nothing lives only here).

* ``alerts``     -> latest message per ``alert_id`` (de-duplicated; the latest status wins)
* ``decisions``  -> review state per alert (:mod:`reglink.core.rules.decisions`)
* ``<source>.raw`` -> the evidence records, by ``source:record_id`` (bounded cache)
* ``stats``      -> the latest population row per (prefecture, date) (counts only)
* ``quality``    -> the latest source quality report per ``<source>:<organisation>``

A background thread (:class:`Feed`) reads the topics with kafka-python from the beginning and
keeps following them; :class:`ConsoleState` notifies SSE subscribers of every change.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from reglink.core import sources
from reglink.core.rules import decisions as dec
from reglink.core.rules import registry
from reglink.core.settings import Settings
from reglink.core.topics import SOURCES
from reglink.kafka_auth import kafka_python_kwargs

log = logging.getLogger("reglink.console")

PRIORITY_RANK = {"high": 0, "medium": 1, "low": 2, None: 3}
#: the rules whose alerts the console reviews: their metric series exist and the rule filter
#: offers them before any of their alerts arrives
RULES = tuple(sorted(r.name for r in registry.RULES if "alerts" in r.emits))


class ConsoleMetrics:
    """Console metrics on their own registry (/metrics). Labels: rule, status, priority,
    4-digit prefecture codes (a region, not personal data), action and reason codes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        self.alerts = Gauge("reglink_console_alerts",
                            "Distinct alerts by latest status (de-duplicated by alert_id)",
                            ["rule", "status", "prefecture"], registry=r)
        self.backlog = Gauge("reglink_console_review_backlog",
                             "Raised alerts awaiting a final review decision",
                             ["rule", "priority"], registry=r)
        self.decisions = Counter("reglink_console_decisions", "Review decisions",
                                 ["rule", "action", "reason"], registry=r)
        self.time_to_decision = Histogram(
            "reglink_console_time_to_decision_seconds",
            "From an alert's first publication to its final review decision", ["rule"],
            buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400), registry=r)
        self.lookups = Counter("reglink_console_lookups", "Audited look-ups",
                               ["kind"], registry=r)
        self.sse_clients = Gauge("reglink_console_sse_clients", "Open live-queue streams",
                                 registry=r)
        for rule in RULES:  # series exist from the start
            self.time_to_decision.labels(rule)
            for prio in (("high", "medium", "low") if rule == "watchlist_match" else ("",)):
                self.backlog.labels(rule, prio).set(0)
        for kind in ("person", "alert"):
            self.lookups.labels(kind)


def prefecture_label(value) -> str:
    s = str(value or "")
    return s if re.fullmatch(r"\d{4}", s) else "none"


class ConsoleState:
    def __init__(self, metrics: ConsoleMetrics | None = None, max_records: int = 500_000):
        self.metrics = metrics or ConsoleMetrics()
        self.lock = threading.RLock()
        self.alerts: dict[str, dict] = {}
        self.first_seen: dict[str, float] = {}  # alert_id -> epoch s of its first message
        self.reviews: dict[str, dec.Review] = {}
        self.records: OrderedDict[str, dict] = OrderedDict()
        self.max_records = max_records
        self.subscribers: list[Callable[[str, str], None]] = []
        self.stats: dict[tuple[str, str], dict] = {}  # (prefecture, date) -> latest row
        self.quality: dict[str, dict] = {}  # <source>:<organisation> -> latest report
        self.ready = threading.Event()

    # ------------------------------------------------------------------ updates
    def add_alert(self, alert: dict, at: float | None = None) -> None:
        aid = alert.get("alert_id")
        if not aid:
            return
        with self.lock:
            prev = self.alerts.get(aid)
            if prev is not None and prev.get("status") == alert.get("status"):
                return  # at-least-once delivery: same (alert_id, status) again
            self.alerts[aid] = alert
            self.first_seen.setdefault(aid, at or time.time())
            self.reviews.setdefault(aid, dec.Review(aid, alert.get("rule")))
            self._recount()
        self._notify("alert", aid)

    def add_decision(self, d: dict) -> bool:
        aid = d.get("alert_id")
        if not aid:
            return False
        with self.lock:
            review = self.reviews.setdefault(aid, dec.Review(aid, d.get("rule")))
            if any(h.get("decision_id") == d.get("decision_id") for h in review.history):
                return False
            was_terminal = review.status in dec.TERMINAL
            review.apply(d)
            rule = d.get("rule") or "unknown"
            self.metrics.decisions.labels(rule, d.get("action"), d.get("reason")).inc()
            if review.status in dec.TERMINAL and not was_terminal:
                start = self.first_seen.get(aid)
                try:
                    end = datetime.fromisoformat(d["decided_at"]).timestamp()
                except (KeyError, ValueError):
                    end = None
                if start is not None and end is not None:
                    self.metrics.time_to_decision.labels(rule).observe(max(0.0, end - start))
            self._recount()
        self._notify("alert", aid)
        return True

    def add_record(self, key: str, record: dict) -> None:
        with self.lock:
            self.records[key] = record
            self.records.move_to_end(key)
            while len(self.records) > self.max_records:
                self.records.popitem(last=False)

    def add_stats(self, row: dict) -> None:
        """A population row (``stats``): the latest one of its (prefecture, date) wins."""
        pref, day = row.get("prefecture"), row.get("date")
        if isinstance(pref, str) and isinstance(day, str):
            with self.lock:
                self.stats[pref, day] = row

    def add_quality(self, report: dict) -> None:
        """A source quality report (``quality``): the latest one of its organisation wins."""
        source, org = report.get("source"), report.get("organisation")
        if isinstance(source, str) and isinstance(org, str):
            with self.lock:
                self.quality[f"{source}:{org}"] = report

    def _recount(self) -> None:
        m = self.metrics
        counts: dict[tuple, int] = {}
        backlog: dict[tuple, int] = {}
        for aid, a in self.alerts.items():
            key = (a.get("rule", ""), a.get("status", ""), prefecture_label(a.get("prefecture")))
            counts[key] = counts.get(key, 0) + 1
            review = self.reviews.get(aid)
            if a.get("status") == "raised" and (review is None or
                                                 review.status not in dec.TERMINAL):
                bk = (a.get("rule", ""), a.get("priority") or "")
                backlog[bk] = backlog.get(bk, 0) + 1
        for key, n in counts.items():
            m.alerts.labels(*key).set(n)
        for labels in list(m.backlog._metrics):  # zero the ones that emptied
            m.backlog.labels(*labels).set(backlog.get(labels, 0))
        for key, n in backlog.items():
            m.backlog.labels(*key).set(n)

    # ------------------------------------------------------------------ reads
    def review(self, aid: str) -> dec.Review:
        with self.lock:
            return self.reviews.get(aid) or dec.Review(aid, self.alerts.get(aid, {}).get("rule"))

    def alert(self, aid: str) -> dict | None:
        with self.lock:
            return self.alerts.get(aid)

    def record(self, key: str) -> dict | None:
        with self.lock:
            return self.records.get(key)

    def stats_rows(self) -> list[dict]:
        with self.lock:
            return list(self.stats.values())

    def quality_reports(self) -> list[dict]:
        with self.lock:
            return list(self.quality.values())

    def alerts_of(self, rule: str) -> list[dict]:
        """The latest message of every alert of ``rule``."""
        with self.lock:
            return [a for a in self.alerts.values() if a.get("rule") == rule]

    def queue(self, rule: str | None = None, priority: str | None = None,
              status: str | None = None, prefecture: str | None = None,
              review: str | None = None, limit: int = 500) -> list[tuple[dict, dec.Review]]:
        with self.lock:
            rows = [(a, self.reviews.get(aid) or dec.Review(aid)) for aid, a in
                    self.alerts.items()]
        rows = [r for r in rows if matches(r[0], r[1], rule, priority, status, prefecture,
                                           review)]
        rows.sort(key=lambda r: (r[1].status in dec.TERMINAL,
                                 r[0].get("status") != "raised",
                                 PRIORITY_RANK.get(r[0].get("priority"), 3),
                                 -self.first_seen.get(r[0]["alert_id"], 0)))
        return rows[:limit]

    def facets(self) -> dict[str, list[str]]:
        with self.lock:
            alerts = list(self.alerts.values())
        return {
            "rule": sorted({a.get("rule", "") for a in alerts} | set(RULES)),
            "priority": ["high", "medium", "low"],
            "status": ["raised", "resolved", "withdrawn"],
            "prefecture": sorted({a["prefecture"] for a in alerts if a.get("prefecture")}),
            "review": list(dec.STATUSES),
        }

    # ------------------------------------------------------------------ SSE
    def subscribe(self, fn: Callable[[str, str], None]) -> None:
        with self.lock:
            self.subscribers.append(fn)

    def unsubscribe(self, fn: Callable[[str, str], None]) -> None:
        with self.lock:
            if fn in self.subscribers:
                self.subscribers.remove(fn)

    def _notify(self, kind: str, aid: str) -> None:
        with self.lock:
            subs = list(self.subscribers)
        for fn in subs:
            try:
                fn(kind, aid)
            except Exception:  # noqa: BLE001 - a gone client must not stop the feed
                log.debug("subscriber failed", exc_info=True)


def matches(a: dict, review: dec.Review, rule=None, priority=None, status=None,
            prefecture=None, review_status=None) -> bool:
    """Whether alert ``a`` passes the queue's filters. A withdrawn alert has left the queue:
    it is shown only when the status filter asks for ``withdrawn``."""
    return ((not rule or a.get("rule") == rule)
            and (not priority or a.get("priority") == priority)
            and (a.get("status") == status if status else a.get("status") != "withdrawn")
            and (not prefecture or a.get("prefecture") == prefecture)
            and (not review_status or review.status == review_status))


class Feed(threading.Thread):
    """Reads alerts, decisions, the raw topics, ``stats`` and ``quality`` from the beginning,
    then follows them."""

    def __init__(self, settings: Settings, state: ConsoleState) -> None:
        super().__init__(name="console-feed", daemon=True)
        self.s = settings
        self.state = state
        self.stopping = threading.Event()
        self.error: str | None = None

    def run(self) -> None:  # pragma: no cover - exercised by the integration tests
        from kafka import KafkaConsumer, TopicPartition

        s = self.s
        raw_topics = {s.topic(f"{src}.raw"): src for src in SOURCES}
        names = [s.topic("alerts"), s.topic("decisions"), s.topic("stats"), s.topic("quality"),
                 *raw_topics]
        while not self.stopping.is_set():
            try:
                consumer = KafkaConsumer(bootstrap_servers=s.kafka_bootstrap,
                                         enable_auto_commit=False, group_id=None,
                                         request_timeout_ms=15000,
                                         **kafka_python_kwargs(s, "console"))
                tps = [TopicPartition(t, p) for t in names
                       for p in sorted(consumer.partitions_for_topic(t) or ())]
                consumer.assign(tps)
                consumer.seek_to_beginning(*tps)
                ends = consumer.end_offsets(tps)
                self._follow(consumer, raw_topics, ends)
            except Exception as exc:  # noqa: BLE001 - keep retrying; the page shows why
                self.error = f"Kafka not reachable at {s.kafka_bootstrap}: {exc}"
                log.warning("console feed: %s", self.error)
                time.sleep(2)

    def _follow(self, consumer, raw_topics, ends) -> None:  # pragma: no cover
        s, st = self.s, self.state
        alerts_t, decisions_t = s.topic("alerts"), s.topic("decisions")
        stats_t, quality_t = s.topic("stats"), s.topic("quality")
        caught_up = {tp for tp, end in ends.items() if end == 0}
        if len(caught_up) == len(ends):
            st.ready.set()
        self.error = None
        while not self.stopping.is_set():
            batches = consumer.poll(timeout_ms=300, max_records=2000)
            for tp, msgs in batches.items():
                for m in msgs:
                    try:
                        value = json.loads(m.value)
                    except (ValueError, TypeError):
                        continue
                    if not isinstance(value, dict):
                        continue
                    if tp.topic == alerts_t:
                        st.add_alert(value, m.timestamp / 1000 if m.timestamp else None)
                    elif tp.topic == decisions_t:
                        st.add_decision(value)
                    elif tp.topic == stats_t:
                        st.add_stats(value)
                    elif tp.topic == quality_t:
                        st.add_quality(value)
                    elif tp.topic in raw_topics:
                        src = raw_topics[tp.topic]
                        rid = value.get(sources.current()[src].id_field)
                        if rid is not None:
                            st.add_record(f"{src}:{rid}", value)
                    if m.offset + 1 >= ends.get(tp, 0):
                        caught_up.add(tp)
            if not st.ready.is_set() and len(caught_up) >= len(ends):
                st.ready.set()
        consumer.close()


class Publisher:
    """Writes decisions and audit entries; waits for the broker's ack before returning."""

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaProducer

        self.s = settings
        self.producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                      request_timeout_ms=15000,
                                      **kafka_python_kwargs(settings, "console"))

    def send(self, topic: str, key: str, value: dict) -> None:
        fut = self.producer.send(self.s.topic(topic), key=key.encode(),
                                 value=json.dumps(value, ensure_ascii=False).encode())
        fut.get(timeout=15)

    def close(self) -> None:
        self.producer.close(timeout=5)
