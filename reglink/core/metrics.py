"""Prometheus metrics on a registry that is passed in. No personal data in any label:
labels are sources, reason codes, rules, statuses, prefecture codes and the names of the
population counts only."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from reglink.core import sources

_LAT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600,
                86400, 7 * 86400)


class PipelineMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.records_in = Counter("reglink_records_in", "Records read by the worker", ["source"],
                                  registry=r)
        self.deadletter = Counter("reglink_deadletter", "Records dead-lettered",
                                  ["source", "reason"], registry=r)
        self.linked = Counter("reglink_linked", "Records linked to an identity", ["source"],
                              registry=r)
        self.redelivered = Counter(
            "reglink_redelivered", "Records seen again after they had been linked (a "
            "re-delivery after a crash or rebalance, or the same record published twice); "
            "they link to the same identity and change nothing", ["source"], registry=r)
        for name in sources.current().names:  # at 0 from the start: rate() sees the first one
            self.redelivered.labels(name)
        self.created = Counter("reglink_identities_created", "New identities", registry=r)
        self.merges = Counter("reglink_identity_merges", "Identity merges", registry=r)
        self.alerts = Counter("reglink_alerts", "Alert messages emitted", ["rule", "status"],
                              registry=r)
        self.link_latency = Histogram(
            "reglink_link_latency_seconds", "Time from a record's report time to its link",
            buckets=_LAT_BUCKETS, registry=r)
        self.publish_latency = Histogram(
            "reglink_publish_to_linked_seconds",
            "Time from a source record's publication (its Kafka timestamp) to the worker's "
            "outputs for it: fetch, event-time merge, queueing and processing",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r)
        # publish -> linked, stage by stage (the three add up to it): where a record's
        # latency goes (docs/capacity.md)
        stage = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
        self.intake_latency = Histogram(
            "reglink_worker_intake_seconds",
            "Time from a source record's publication (its Kafka timestamp) until the worker "
            "has it: producer batching, broker, fetch", buckets=stage, registry=r)
        self.hold_latency = Histogram(
            "reglink_worker_hold_seconds",
            "Time from the worker having a record until its unit of work starts: batching "
            "window, event-time merge, the unit before it", buckets=stage, registry=r)
        self.unit_latency = Histogram(
            "reglink_worker_unit_seconds",
            "Time from a record's unit of work starting until the unit's outputs are ready "
            "(every record of a unit waits for the whole unit)", buckets=stage, registry=r)
        self.process_latency = Histogram(
            "reglink_process_seconds", "Processing time of one record in the worker",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1), registry=r)
        self.alert_latency = Histogram(
            "reglink_alert_latency_seconds",
            "Time from an alert's event time (deadline / linking report time) to its emission",
            buckets=_LAT_BUCKETS, registry=r)
        self.watermark = Gauge("reglink_watermark_seconds", "Event-time watermark (epoch s)",
                               registry=r)
        self.watermark_lag = Gauge(
            "reglink_watermark_lag_seconds",
            "How far the watermark is behind the source's latest report time (s); negative: "
            "the watermark passed all it sent, its next record at that time is late",
            ["source"], registry=r)
        self.watermark_holding = Gauge(
            "reglink_watermark_holding",
            "1 for a source that holds the watermark back (its latest report time less its "
            "allowed lateness is the watermark, or its records are waiting unread)",
            ["source"], registry=r)
        self.stalled = Gauge("reglink_stalled",
                             "1 while the worker waits for an unavailable state store",
                             registry=r)
        self.conflicts = Counter(
            "reglink_commit_conflicts",
            "Per-record commits refused because another worker changed what the record read "
            "(the record is rerun on fresh state)", registry=r)
        self.reruns = Counter(
            "reglink_conflict_reruns",
            "Records processed again after a commit conflict (a batch commits the records "
            "before the first one that read a changed key, and runs only the rest again)",
            registry=r)
        self.population = Gauge(
            "reglink_population",
            "Population statistics (docs/contract.md §3.4) of each prefecture's latest final "
            "day: persons present, registered, present_unregistered; registrations with "
            "arrivals, departures, stale_open on that day", ["prefecture", "measure"],
            registry=r)
        self.population_day = Gauge(
            "reglink_population_day_seconds",
            "Start (00:00 CST, epoch s) of the day reglink_population shows, per prefecture",
            ["prefecture"], registry=r)
        self.lag = Gauge("reglink_consumer_lag", "Records not yet consumed",
                         ["topic", "partition"], registry=r)

    def set_population(self, prefecture: str, day_start: float, counts: dict[str, int]) -> None:
        """The population counts of ``prefecture`` on its latest final day."""
        for measure, value in counts.items():
            self.population.labels(prefecture, measure).set(value)
        self.population_day.labels(prefecture).set(day_start)

    def observe_watermark(self, lag: dict[str, float], holding: set[str]) -> None:
        """The watermark's per-source gauges (:meth:`Watermark.lag`, :meth:`Watermark.holding`);
        a source not seen yet has no lag and does not hold."""
        for name in sources.current().event_names:
            if name in lag:
                self.watermark_lag.labels(name).set(lag[name])
            self.watermark_holding.labels(name).set(1 if name in holding else 0)
