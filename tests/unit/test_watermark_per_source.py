"""Allowed lateness and idle timeout per source (docs/contract.md §2.1): the settings, the
watermark they make, and the per-source gauges that say which source holds it back."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from reglink.core.errors import ConfigError
from reglink.core.metrics import PipelineMetrics
from reglink.core.rules.watermark import Watermark
from reglink.core.settings import Settings, load_settings

H = 3600.0
SRC = ("hotel", "rental", "residence", "job")


def nightly() -> Watermark:
    """A residence registry that uploads once a night: 26 hours for both."""
    return Watermark(SRC, H, 300.0, {"residence": 26 * H}, {"residence": 26 * H})


def test_each_source_is_held_back_by_its_own_lateness():
    w = nightly()
    w.observe("hotel", 100 * H, now=0)
    w.observe("residence", 100 * H, now=0)
    assert w.advance(now=1) == 74 * H  # residence: 100 h - 26 h; hotel alone: 99 h
    w.observe("residence#3", 130 * H, now=2)  # a partition's channel: its source's lateness
    w.observe("residence", 130 * H, now=2)
    w.observe("hotel", 101 * H, now=2)
    assert w.advance(now=2) == 100 * H  # now hotel (101 h - 1 h) holds it


def test_a_batch_source_holds_between_batches_for_its_own_idle_timeout():
    w = nightly()
    w.observe("residence", 10 * H, now=0)  # last night's batch
    w.observe("hotel", 30 * H, now=0)
    for minute in (10, 60, 20 * 60):  # hotel keeps sending; residence is silent for hours
        w.observe("hotel", 30 * H + minute * 60, now=minute * 60)
        assert w.advance(now=minute * 60) == -16 * H, minute  # 10 h - 26 h
    w.observe("hotel", 60 * H, now=27 * H)
    assert w.advance(now=27 * H) == 59 * H  # 26 h of silence: residence no longer holds


def test_default_idle_timeout_stops_a_silent_source_from_holding():
    w = Watermark(SRC, H, 300.0)
    w.observe("residence", 10 * H, now=0)
    w.observe("hotel", 30 * H, now=0)
    assert w.advance(now=1) == 9 * H
    w.observe("hotel", 30 * H + 600, now=600)
    assert w.advance(now=600) == 29 * H + 600


def test_end_of_input_takes_the_greatest_of_each_source_less_its_lateness():
    w = nightly()
    w.observe("hotel", 100 * H, now=0)
    w.observe("residence", 120 * H, now=0)
    assert w.advance(final=True) == 99 * H  # max(100 - 1, 120 - 26)


def test_ceiling_bounds_what_the_watermark_can_reach():
    w = nightly()
    assert w.ceiling(100 * H) == 99 * H  # the least lateness of any source
    w.observe("hotel", 100 * H, now=0)
    w.observe("residence", 130 * H, now=0)
    w.advance(final=True)
    assert w.ceiling(101 * H) == 104 * H  # never below the watermark itself


def test_lag_and_holding_name_the_source_that_holds_the_watermark_back():
    w = nightly()
    w.observe("hotel", 100 * H, now=0)
    w.observe("rental#0", 90 * H, now=0)
    w.observe("rental#1", 95 * H, now=0)
    w.observe("residence", 110 * H, now=0)
    assert w.advance(now=1) == 84 * H  # residence: 110 h - 26 h
    assert w.lag() == {"hotel": 16 * H, "rental": 6 * H, "residence": 26 * H}
    assert w.holding(now=1) == {"residence"}
    w.expect("job", now=1)
    assert w.holding(now=2) == {"residence", "job"}  # records waiting unread hold it too

    metrics = PipelineMetrics()
    metrics.observe_watermark(w.lag(), w.holding(now=2))
    text = generate_latest(metrics.registry).decode()
    assert 'reglink_watermark_lag_seconds{source="rental"} 21600.0' in text
    assert 'reglink_watermark_holding{source="residence"} 1.0' in text
    assert 'reglink_watermark_holding{source="hotel"} 0.0' in text
    assert 'reglink_watermark_lag_seconds{source="job"}' not in text  # nothing seen yet


def test_settings_read_per_source_seconds_from_the_environment(monkeypatch):
    monkeypatch.setenv("REGLINK_LATENESS_S_BY_SOURCE", "residence=93600, job=7200")
    monkeypatch.setenv("REGLINK_IDLE_TIMEOUT_S_BY_SOURCE", '{"residence": 93600}')
    s = load_settings()
    assert s.lateness_for("residence") == 93600 and s.lateness_for("job") == 7200
    assert s.lateness_for("hotel") == 3600  # the default
    assert s.idle_timeout_for("residence") == 93600 and s.idle_timeout_for("rental") == 300
    env = s.to_env()  # handed to a child process, read back the same
    assert env["REGLINK_LATENESS_S_BY_SOURCE"] == "residence=93600,job=7200"
    monkeypatch.setenv("REGLINK_LATENESS_S_BY_SOURCE", env["REGLINK_LATENESS_S_BY_SOURCE"])
    assert load_settings().lateness_s_by_source == {"residence": 93600, "job": 7200}
    w = Watermark.from_settings(SRC, s)
    assert w.lateness_of("residence#2") == 93600 and w.lateness_of("hotel") == 3600


@pytest.mark.parametrize("value, message", [
    ("residence", "is not source=seconds"),
    ("residence=-5", "must be a number >= 0"),
    ("residence=soon", "residence: seconds must be a number"),
])
def test_bad_per_source_settings_are_refused_clearly(value, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(lateness_s_by_source=value)


def test_a_per_source_setting_for_no_event_source_is_refused():
    with pytest.raises(ValueError, match="lateness set for resdence: not an event source"):
        Watermark.from_settings(SRC, Settings(lateness_s_by_source={"resdence": 60}))
