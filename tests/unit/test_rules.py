import math

from reglink.core.rules.clock import day_end, day_start, ts
from reglink.core.rules.stay import Interval, Registration, covered, episodes
from reglink.core.rules.watermark import Watermark

H = 3600.0
D = 86400.0
SRC = ("hotel", "rental", "residence", "job")


def wm(**kw):
    return Watermark(SRC, lateness=kw.get("lateness", H), idle_timeout=kw.get("idle", 300))


def test_watermark_is_min_of_active_sources_minus_lateness():
    w = wm()
    w.observe("hotel", 100 * H, now=0)
    w.observe("rental", 50 * H, now=0)
    assert w.advance(now=1) == 49 * H


def test_silent_source_does_not_hold_but_expected_one_does():
    w = wm()
    w.observe("hotel", 100 * H, now=0)
    assert w.advance(now=1) == 99 * H  # rental, job, residence have sent nothing
    w2 = wm()
    w2.observe("hotel", 100 * H, now=0)
    w2.expect("residence", now=0)
    assert w2.advance(now=1) == -math.inf  # residence has records waiting: hold
    w2.observe("residence", 10 * H, now=2)
    assert w2.advance(now=2) == 9 * H


def test_idle_source_stops_holding_and_all_idle_uses_top():
    w = wm(idle=300)
    w.observe("hotel", 100 * H, now=0)
    w.observe("rental", 50 * H, now=1000)
    assert w.advance(now=1000) == 49 * H
    w.observe("hotel", 101 * H, now=1200)
    assert w.advance(now=1400) == 100 * H  # rental idle since 1000
    assert w.advance(now=5000) == 100 * H  # all idle -> top - lateness


def test_watermark_never_moves_backwards_and_final_flushes():
    w = wm()
    w.observe("hotel", 100 * H, now=0)
    assert w.advance(now=0) == 99 * H
    w.observe("rental", 10 * H, now=0)
    assert w.advance(now=0) == 99 * H
    w.observe("job", 200 * H, now=0)
    assert w.advance(final=True) == 199 * H


def test_watermark_round_trips_through_json():
    w = wm()
    w.observe("hotel", 100 * H, now=0)
    w.expect("job", now=0)
    w.advance(now=0)
    w2 = wm()
    w2.load_json(w.to_json())
    assert w2.to_json() == w.to_json()


def test_example_episode_deadline_is_rental_start_plus_three_days():
    hotel = Interval("hotel:H1", ts("2026-03-02T21:14:00+08:00"), ts("2026-03-04T11:30:00+08:00"),
                     30 * D)
    rental = Interval("rental:R1", day_start("2026-03-04"), day_end("2026-09-03"), 3 * D)
    job = Interval("job:J1", day_start("2026-03-06"), None, 3 * D)
    eps = episodes([job, hotel, rental], gap=D)
    assert len(eps) == 1
    assert eps[0].deadline == ts("2026-03-07T00:00:00+08:00")


def test_short_hotel_stay_has_no_deadline():
    hotel = Interval("hotel:H1", ts("2026-03-02T21:00:00+08:00"), ts("2026-03-04T11:00:00+08:00"),
                     30 * D)
    (ep,) = episodes([hotel], gap=D)
    assert ep.deadline is None


def test_gap_of_a_day_or_more_splits_episodes():
    a = Interval("rental:A", day_start("2026-01-01"), day_end("2026-01-10"), 3 * D)
    b = Interval("rental:B", day_end("2026-01-10") + D, None, 3 * D)
    c = Interval("rental:C", day_end("2026-01-10") + D - 1, None, 3 * D)
    assert len(episodes([a, b], gap=D)) == 2
    assert len(episodes([a, c], gap=D)) == 1


def test_registration_must_be_filed_by_and_valid_at_the_deadline():
    d = ts("2026-03-07T00:00:00+08:00")
    late = Registration("residence:T1", ts("2026-03-12T15:20:00+08:00"), day_start("2026-03-12"),
                        day_end("2027-03-11"))
    ok = Registration("residence:T2", ts("2026-03-05T10:00:00+08:00"), day_start("2026-03-05"),
                      day_end("2026-03-31"))
    expired = Registration("residence:T3", ts("2026-01-05T10:00:00+08:00"),
                           day_start("2026-01-05"), day_end("2026-03-06"))
    assert covered(d, [late]) is None
    assert covered(d, [expired]) is None
    assert covered(d, [late, ok]) == ok


def test_partitions_are_channels_that_hold_on_their_own():
    w = wm()
    w.observe("hotel#0", 100 * H, now=0)
    w.observe("hotel#1", 20 * H, now=0)
    assert w.advance(now=0) == 19 * H
    w.expect("rental#2", now=0)
    w.observe("hotel#1", 200 * H, now=0)
    assert w.advance(now=0) == 19 * H  # rental#2 has unread records
    w.observe("unknown#0", 500 * H, now=0)
    assert "unknown#0" not in w.max_seen


def test_a_backlogged_channel_is_not_idle():
    w = wm(idle=3)
    w.observe("hotel#0", 100 * H, now=0)
    w.observe("rental#0", 10 * H, now=0)
    w.touch("rental#0", now=9)  # unread rental records sit in the broker
    w.observe("hotel#0", 200 * H, now=10)
    assert w.advance(now=10) == 9 * H
    assert w.advance(now=20) == 199 * H  # really silent now
