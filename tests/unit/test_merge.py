from reglink.core.rules.merge import EventTimeMerger, order_key


def push(m, ch, source, ts, name):
    m.push(ch, order_key(source, ts), name)


def test_releases_in_canonical_order_once_every_backlogged_channel_has_a_head():
    m = EventTimeMerger()
    backlog = {"hotel#0": True, "rental#0": True, "person#0": True}
    push(m, "hotel#0", "hotel", 10.0, "h10")
    push(m, "hotel#0", "hotel", 30.0, "h30")
    assert m.release(backlog, backlog.get) == []  # rental and person may hold earlier ones
    push(m, "rental#0", "rental", 20.0, "r20")
    assert m.release(backlog, backlog.get) == []  # person records come before any event
    push(m, "person#0", "person", None, "p1")
    backlog["person#0"] = False  # person topic read to its end
    assert m.release(backlog, backlog.get) == ["p1", "h10", "r20"]
    backlog["rental#0"] = False
    assert m.release(backlog, backlog.get) == ["h30"]


def test_ties_go_by_source_rank_then_arrival():
    m = EventTimeMerger()
    push(m, "job#0", "job", 5.0, "j")
    push(m, "hotel#1", "hotel", 5.0, "h1")
    push(m, "hotel#1", "hotel", 5.0, "h2")
    assert m.release(["job#0", "hotel#1"], lambda c: False) == ["h1", "h2", "j"]


def test_a_caught_up_channel_is_not_waited_for():
    m = EventTimeMerger()
    push(m, "hotel#0", "hotel", 10.0, "h")
    assert m.release(["hotel#0", "job#0"], lambda c: False) == ["h"]


def test_a_waiting_channel_already_past_the_head_does_not_block():
    m = EventTimeMerger()
    push(m, "rental#0", "rental", 50.0, "r50")
    assert m.release(["rental#0"], lambda c: True) == ["r50"]
    push(m, "hotel#0", "hotel", 60.0, "h60")
    # rental#0 is empty but waiting; its last record (50) < 60, so it could send 55: wait
    assert m.release(["rental#0", "hotel#0"], lambda c: c == "rental#0") == []
    push(m, "rental#0", "rental", 70.0, "r70")
    assert m.release(["rental#0", "hotel#0"], lambda c: c == "rental#0") == ["h60", "r70"]


def test_memory_bound_releases_anyway():
    m = EventTimeMerger(max_buffered=2)
    push(m, "hotel#0", "hotel", 1.0, "a")
    push(m, "hotel#0", "hotel", 2.0, "b")
    assert m.release(["hotel#0", "job#0"], lambda c: c == "job#0") == ["a"]
    assert m.size == 1
    assert m.drop_channel("hotel#0") == ["b"] and m.size == 0
