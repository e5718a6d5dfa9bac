"""One contract, two stores: the embedded store (replay) and the Redis store (workers).

Every test runs against both. The Redis variant uses the real local Redis server, not an
in-process fake.
"""

import pytest

from matchers.candidates import BlockingCandidates
from matchers.features import person_record
from matchers.linker import Linker
from matchers.normalise import id_check_char
from matchers.pseudo import Pseudonymiser
from matchers.types import Identity
from reglink.stores.identity import KVIdentityStore
from reglink.stores.kv import MemoryKV, RedisKV

BACKENDS = ["embedded", pytest.param("redis", marks=pytest.mark.integration)]


def _kv(request, settings, redis_fixture: str):
    if request.param == "embedded":
        return MemoryKV()
    return RedisKV(request.getfixturevalue(redis_fixture), settings.redis_prefix)


@pytest.fixture(params=BACKENDS)
def kv(request, settings):
    """The worker's view: on Redis, the ``worker`` ACL user."""
    return _kv(request, settings, "redis_worker")


@pytest.fixture(params=BACKENDS)
def sweep_kv(request, settings):
    """The retention sweep's view: it SCANs the keyspace, which the ``worker`` user may not,
    so on Redis it is the ``admin`` user (as ``reglink purge`` runs)."""
    return _kv(request, settings, "redis_client")


@pytest.fixture
def store(kv):
    return KVIdentityStore(kv, max_bucket=3)


@pytest.fixture
def sweep_store(sweep_kv):
    return KVIdentityStore(sweep_kv, max_bucket=3)


def ident(pid, **kw):
    i = Identity(person_id=pid, anchor=f"rec:{pid}")
    for k, v in kw.items():
        setattr(i, k, v)
    return i


def test_save_get_round_trip(store):
    i = ident("P1", names={"陈丽"}, name_keys={"chen li"}, birth_dates={"1988-03-15"},
              records=2, last_report=1.5, last_record="hotel:H1", rid_hash="abc", home="3401")
    store.save(i, ["k1"])
    assert store.get("P1") == i
    assert store.get("nope") is None
    assert store.count() == 1


def test_find_by_any_key_and_overwrite_keeps_old_keys(store):
    store.save(ident("P1"), ["k1"])
    store.save(ident("P1", records=5), ["k2"])
    assert store.find(["k1"]) == {"P1"} == store.find(["k2"])
    assert store.find(["k3"]) == set()
    assert store.get("P1").records == 5 and store.count() == 1


def test_too_common_key_is_skipped(store):
    for n in range(4):
        store.save(ident(f"P{n}"), ["common", f"own{n}"])
    assert store.find(["common"]) == set()  # 4 > max_bucket 3
    assert store.find(["common", "own2"]) == {"P2"}


def test_retire_redirects_find_resolve_and_links(store):
    store.save(ident("P1"), ["a"])
    store.save(ident("P2"), ["b"])
    store.set_link("hotel:H1", "P2")
    store.retire("P2", "P1")
    assert store.get("P2") is None and store.count() == 1
    assert store.resolve("P2") == "P1"
    assert store.find(["b"]) == {"P1"}
    assert store.link_of("hotel:H1") == "P1"
    store.retire("P1", "P0")  # chains resolve to the end
    assert store.resolve("P2") == "P0"


def test_links_are_idempotent(store):
    assert store.link_of("job:J1") is None
    store.set_link("job:J1", "P9")
    store.set_link("job:J1", "P9")
    assert store.link_of("job:J1") == "P9"


def test_kv_sorted_set_and_counter(kv):
    kv.zadd("due", "b", 2.0)
    kv.zadd("due", "a", 1.0)
    kv.zadd("due", "c", 3.0)
    kv.zadd("due", "a", 2.5)  # re-score
    assert kv.zupto("due", 2.5) == [("b", 2.0), ("a", 2.5)]
    kv.zrem("due", "b")
    assert [m for m, _ in kv.zupto("due", 10)] == ["a", "c"]
    assert kv.incr("n") == 1 and kv.incr("n") == 2
    kv.sadd("s", ["x", "y"])
    kv.sadd("s", ["x"])
    assert kv.smembers("s") == {"x", "y"} and kv.scard("s") == 2
    kv.set("k", "v")
    assert kv.mget(["k", "missing"]) == ["v", None]
    kv.delete("k")
    assert kv.get("k") is None


def test_kv_scan_by_prefix_and_incrby(sweep_kv):
    kv = sweep_kv
    kv.set("i:a", "1")
    kv.set("i:b", "2")
    kv.sadd("b:k", ["x"])
    kv.zadd("due", "m", 1.0)
    kv.set("wl/i:c", "3")  # another namespace: not under "i:"
    assert sorted(kv.scan("i:")) == ["i:a", "i:b"]
    assert set(kv.scan("")) >= {"i:a", "i:b", "b:k", "due", "wl/i:c"}
    kv.srem("b:k", "x")  # an emptied set is no key any more (as in Redis)
    assert list(kv.scan("b:")) == []
    assert kv.incrby("n", 5) == 5 and kv.incrby("n", -2) == 3
    kv.apply([("incrby", "n", -1)])
    assert kv.get("n") == "2"


def _rid(seq):
    body = f"34010219880315{seq:03d}"
    return body + id_check_char(body)


def test_linker_gives_the_same_clusters_on_both_stores(store):
    pseudo = Pseudonymiser("contract")
    linker = Linker(store, pseudo, 0.9, finder=BlockingCandidates(pseudo))
    recs = [
        {"source": "hotel", "record_id": "1", "person": {"name": "陈丽", "id_number": _rid(2)}},
        {"source": "rental", "record_id": "2",
         "person": {"name": "陈莉", "id_number": _rid(2), "phone": "13955501234"}},
        {"source": "job", "record_id": "3", "person": {"name": "CHEN Li",
                                                        "phone": "13955501234"}},
        {"source": "hotel", "record_id": "4", "person": {"name": "陈丽", "id_number": _rid(4)}},
    ]
    pids = [linker.link(person_record(r, f"{r['source']}:{r['record_id']}", pseudo)).person_id
            for r in recs]
    assert pids[0] == pids[1] == pids[2] != pids[3]
    # Stable ids: the identity founded on a valid ID is named by it, in any store.
    assert pids[0] == linker.person_id_for(f"rid:{pseudo('id', _rid(2))}")


def test_transaction_reads_its_own_writes_and_commits_at_once(kv):
    from reglink.stores.kv import TxKV

    kv.set("s1", "old")
    kv.sadd("set", ["a"])
    kv.zadd("z", "m1", 1.0)
    tx = TxKV(kv)
    tx.set("s1", "new")
    tx.sadd("set", ["b"])
    tx.srem("set", "a")
    tx.zadd("z", "m2", 0.5)
    tx.zrem("z", "m1")
    tx.delete("gone")
    assert tx.incr("n") == 1 and tx.incr("n") == 2
    assert tx.get("s1") == "new" and tx.smembers("set") == {"b"}
    assert tx.zupto("z", 10) == [("m2", 0.5)]
    assert tx.mget(["s1", "n", "x"]) == ["new", "2", None]
    assert tx.smembers_many(["set", "none"]) == [{"b"}, set()]
    # Nothing reached the backend before commit.
    assert kv.get("s1") == "old" and kv.smembers("set") == {"a"} and kv.get("n") is None
    tx.commit()
    assert kv.get("s1") == "new" and kv.smembers("set") == {"b"} and kv.get("n") == "2"
    assert kv.zupto("z", 10) == [("m2", 0.5)]


def test_rollback_discards_everything(kv):
    from reglink.stores.kv import TxKV

    tx = TxKV(kv)
    tx.set("k", "v")
    tx.sadd("s", ["x"])
    tx.rollback()
    tx.commit()
    assert kv.get("k") is None and kv.smembers("s") == set() and tx.get("k") is None


def test_prefetch_and_cached_sets_of_a_unit_of_work(kv):
    """What the core asks of a unit of work before it reads: whether fetching ahead pays
    (a store with round trips), and the sets it has already read, without a base read."""
    from reglink.stores.kv import TxKV

    kv.sadd("b:k1", ["P1", "P2"])
    kv.set("s1", "v")
    tx = TxKV(kv)
    assert tx.can_prefetch == isinstance(kv, RedisKV)
    assert tx.cached_set("b:k1") is None  # not read yet
    tx.prefetch(["s1"], ["b:k1"])
    if tx.can_prefetch:
        assert set(tx.cached_set("b:k1")) == {"P1", "P2"}
    else:  # embedded: nothing fetched ahead, the first read fills the cache
        assert tx.cached_set("b:k1") is None
        assert tx.smembers("b:k1") == {"P1", "P2"}
        assert set(tx.cached_set("b:k1")) == {"P1", "P2"}
    assert tx.get("s1") == "v"
    tx.rollback()
    assert tx.cached_set("b:k1") is None  # a read cache does not outlive its unit


def test_a_prefixed_view_keeps_the_watchlist_index_in_its_namespace(kv):
    from reglink.stores.kv import PrefixedView, TxKV

    tx = TxKV(kv)
    watch = KVIdentityStore(PrefixedView(tx, "wl/"))
    watch.save(ident("W1", names={"王伟"}), ["k1"])
    tx.commit()
    assert kv.get("wl/i:W1") is not None and kv.smembers("wl/b:k1") == {"W1"}
    assert kv.get("i:W1") is None and kv.smembers("b:k1") == set()
    assert kv.get("wl/n:identities") == "1" and kv.get("n:identities") is None
    assert watch.find(["k1"]) == {"W1"} and KVIdentityStore(kv).find(["k1"]) == set()


def test_optimistic_commit_detects_a_concurrent_writer(kv):
    """Two writers read one identity; the second to commit must not overwrite the first's
    update blindly (several workers on a shared Redis)."""
    from reglink.stores.kv import Conflict, TxKV

    a, b = TxKV(kv), TxKV(kv)
    if not a.optimistic:  # only the embedded store has one writer by construction
        assert isinstance(kv, MemoryKV)
        return
    kv.set("i:p", "v0")
    kv.sadd("b:k", ["p"])
    assert a.get("i:p") == "v0" and b.get("i:p") == "v0"
    assert a.smembers("b:k") == {"p"} and b.smembers("b:k") == {"p"}
    a.set("i:p", "va")
    a.commit()
    b.set("i:p", "vb")
    with pytest.raises(Conflict):
        b.commit()
    b.rollback()
    assert kv.get("i:p") == "va"
    # a grown blocking set is a conflict too (a new identity the reader did not see)
    c = TxKV(kv)
    assert c.smembers("b:k") == {"p"}
    kv.sadd("b:k", ["q"])
    c.set("i:x", "1")
    with pytest.raises(Conflict):
        c.commit()
    c.rollback()
    assert kv.get("i:x") is None


# ------------------------------------------------------------------ retention sweep (purge)
def _linked_world(store):
    """Three people through the real linker: an old one whose identity absorbed another
    (a merge pointer), an old one with an open stay, and a recent one."""
    pseudo = Pseudonymiser("contract")
    linker = Linker(store, pseudo, 0.9, finder=BlockingCandidates(pseudo))

    def link(src, rid, person, t):
        return linker.link(person_record({"source": src, "record_id": rid, "person": person},
                                         f"{src}:{rid}", pseudo), t).person_id

    # Old person: two records that first found two identities, then a third that merges them.
    a1 = link("job", "1", {"name": "王强", "phone": "13955501234", "birth_date": "1988-03-15"},
              100.0)
    a2 = link("hotel", "2", {"name": "王强", "id_number": _rid(3), "phone": "13800000000"},
              110.0)
    a3 = link("rental", "3", {"name": "王强", "id_number": _rid(3), "phone": "13955501234"},
              120.0)
    b = link("hotel", "4", {"name": "李娜", "id_number": _rid(4)}, 130.0)
    c = link("hotel", "5", {"name": "赵敏", "id_number": _rid(5)}, 10_000.0)
    return linker, a1, a2, a3, b, c


def test_purge_deletes_old_identities_with_their_index_links_and_pointers(sweep_store, sweep_kv):
    store, kv = sweep_store, sweep_kv
    linker, a1, a2, a3, b, c = _linked_world(store)
    old = store.resolve(a1)
    assert a1 != a2 and store.resolve(a2) == old == a3  # two identities, merged by record 3
    kv.set(f"s:{old}", "closed stays")
    kv.set(f"s:{b}", "open stay")
    n_before = store.count()
    ids_before = {p for p in (old, b, c)}
    assert len(ids_before) == 3

    def keep(ident, state):
        return "open_stay" if state.get(f"s:{ident.person_id}") == "open stay" else None

    dry = store.purge(5_000.0, keep=keep, state_keys=lambda p: [f"s:{p}"], dry_run=True)
    assert dry.dry_run and dry.person_ids == [old] and dry.kept == {"open_stay": 1}
    assert store.get(old) is not None and kv.get(f"s:{old}") == "closed stays"  # untouched

    rep = store.purge(5_000.0, keep=keep, state_keys=lambda p: [f"s:{p}"])
    assert rep.counts() == {**dry.counts(), "dry_run": False}
    assert rep.examined == 3 and rep.expired == 2 and rep.person_ids == [old]
    assert rep.links == 3 and rep.pointers == 1 and rep.state_keys == 1
    assert rep.index_entries > 0 and rep.conflicts == 0
    # Gone: the identity, its stay state, its links, the pointer, every index entry.
    assert store.get(old) is None and kv.get(f"s:{old}") is None
    assert all(store.link_of(f"{s}:{r}") is None for s, r in
               (("hotel", "1"), ("job", "2"), ("rental", "3")))
    absorbed = ({a1, a2} - {old}).pop()
    assert store.resolve(absorbed) == absorbed  # no pointer left
    for k in kv.scan("b:"):
        assert not kv.smembers(k) & {a1, a2}
    assert store.count() == n_before - 1
    # Kept: the open stay and the recent person, with their links and index.
    assert store.get(b) is not None and kv.get(f"s:{b}") == "open stay"
    assert store.get(c) is not None and store.link_of("hotel:5") == c
    pseudo = Pseudonymiser("contract")
    rec = person_record({"source": "hotel", "record_id": "9",
                         "person": {"name": "李娜", "id_number": _rid(4)}}, "hotel:9", pseudo)
    assert store.find(linker.finder.keys(rec)) == {b}
    # A second run finds nothing more to delete.
    again = store.purge(5_000.0, keep=keep, state_keys=lambda p: [f"s:{p}"])
    assert again.person_ids == [] and again.examined == 2 and again.kept == {"open_stay": 1}


def test_purge_keeps_identities_without_a_report_time_and_recent_ones(sweep_store):
    store = sweep_store
    store.save(ident("P1", last_report=None), ["k1"])
    store.save(ident("P2", last_report=50.0), ["k2"])
    store.save(ident("P3", last_report=100.0), ["k3"])  # exactly at the cut-off: kept
    rep = store.purge(100.0)
    assert rep.person_ids == ["P2"] and rep.kept == {"no_report_time": 1}
    assert store.get("P1") and store.get("P3") and store.get("P2") is None
    assert store.find(["k2"]) == set() and store.find(["k1"]) == {"P1"}


def test_purge_leaves_an_identity_a_concurrent_writer_changed(sweep_kv, sweep_store):
    """The sweep reads, a worker updates the identity, the sweep's commit must not delete
    the fresh identity (compare-and-apply); the embedded store has one writer only."""
    kv, store = sweep_kv, sweep_store
    from reglink.stores.kv import TxKV

    store.save(ident("P1", last_report=10.0), ["k1"])
    store.set_link("hotel:1", "P1")
    if not TxKV(kv).optimistic:
        assert isinstance(kv, MemoryKV)
        return

    def worker_writes_meanwhile(identity, state):
        # what a worker linking a new record to P1 commits while the sweep runs
        fresh = ident("P1", last_report=99_999.0, records=2)
        KVIdentityStore(kv).save(fresh, ["k1", "k9"])
        return None

    rep = store.purge(1_000.0, keep=worker_writes_meanwhile)
    assert rep.conflicts == 1 and rep.person_ids == []
    got = KVIdentityStore(kv).get("P1")
    assert got is not None and got.last_report == 99_999.0
    assert store.link_of("hotel:1") == "P1" and store.find(["k9"]) == {"P1"}
    # A worker that read the identity before the purge commits after it: conflict, re-read.
    w = TxKV(kv)
    w2 = KVIdentityStore(w)
    assert w2.get("P1") is not None
    KVIdentityStore(kv).purge(10**9)  # P1 (and the junk i:P2) are old now
    w2.save(ident("P1", last_report=5.0), ["k1"])
    from reglink.stores.kv import Conflict

    with pytest.raises(Conflict):
        w.commit()


# ------------------------------------------------------------------------ the compact index
# On Redis a blocking-index set is a field of a bucket hash, packed; past PACK_MAX members it
# moves to a hash of its own (reglink/stores/kv.py). Same logical sets on both stores.
def _pid(n: int) -> str:
    return f"P{n:016x}"


HEXKEY = "b:" + "3f2a" * 6  # a real blocking key: 24 hex digits


def test_large_set_grows_shrinks_and_reads_the_same(sweep_kv):
    kv = sweep_kv
    members = [_pid(n) for n in range(700)] + ["W-watch-1", "P1"]  # also non-canonical ids
    kv.sadd(HEXKEY, members[:10])
    for m in members[10:40]:  # one by one past PACK_MAX: moves to its own hash
        kv.sadd(HEXKEY, [m])
    kv.sadd(HEXKEY, members[40:])  # in bulk: the large set's fields split (doubling)
    kv.sadd(HEXKEY, members[:50])  # already members: no-ops
    assert kv.smembers(HEXKEY) == set(members)
    assert kv.scard(HEXKEY) == len(members)
    assert kv.smembers_many([HEXKEY, "b:none"]) == [set(members), set()]
    for m in members[:690]:
        kv.srem(HEXKEY, m)
    kv.srem(HEXKEY, "P-not-a-member")
    assert kv.smembers(HEXKEY) == set(members[690:]) and kv.scard(HEXKEY) == 12
    for m in members[690:]:
        kv.srem(HEXKEY, m)
    assert kv.smembers(HEXKEY) == set() and kv.scard(HEXKEY) == 0
    assert list(kv.scan("b:")) == []  # an emptied set is no key any more, large or small


def test_capped_reads_give_the_size_of_a_set_over_its_cap(kv):
    """``caps``: a set over its cap may come back without members (Redis does not send it),
    but always with its size; a set within its cap comes back whole."""
    small, big = "b:" + "a1" * 12, "b:" + "b2" * 12
    kv.sadd(small, [_pid(1), _pid(2)])
    kv.sadd(big, [_pid(n) for n in range(40)])
    got = kv.smembers_many([small, big, "b:none"], [5, 5, None])
    assert got[0] == {_pid(1), _pid(2)} and got[2] == set()
    assert len(got[1]) == 40 and set(got[1]) in (set(), {_pid(n) for n in range(40)})
    assert [len(x) for x in kv.smembers_many([small, big], 100)] == [2, 40]


def test_find_skips_a_bucket_over_the_cap_without_reading_it(store, kv):
    for n in range(30):
        store.save(ident(_pid(n)), ["k-common", f"k-own-{n}"])
    assert store.find(["k-common"]) == set()  # max_bucket=3
    assert store.find(["k-common", "k-own-7"]) == {_pid(7)}
    assert store.find(["k-own-7", "k-own-8"], [1, None]) == {_pid(7), _pid(8)}


def test_index_namespaces_and_scan_of_mapped_keys(sweep_kv):
    kv = sweep_kv
    kv.sadd(HEXKEY, [_pid(1)])
    kv.sadd("wl/" + HEXKEY, ["W1"])  # the watchlist index: a namespace of its own
    kv.sadd("b:plain-key", [_pid(2)])
    kv.sadd("wp:W1", [_pid(3)])  # not an index set
    assert kv.smembers("wl/" + HEXKEY) == {"W1"} and kv.smembers(HEXKEY) == {_pid(1)}
    found = {k: frozenset(kv.smembers(k)) for k in kv.scan("b:")}
    assert sorted(found.values(), key=sorted) == [{_pid(1)}, {_pid(2)}]
    # keys may come back truncated to their first 64 bits: the same logical set
    assert all(HEXKEY.startswith(k) or k == "b:plain-key" for k in found)
    assert [frozenset(kv.smembers(k)) for k in kv.scan("wl/b:")] == [{"W1"}]
    assert set(kv.scan("wl/")) <= {"wl/" + HEXKEY, "wl/" + HEXKEY[:18]}
    assert {k for k in kv.scan("") if "b:" in k} == set(found) | set(kv.scan("wl/b:"))
    kv.delete(HEXKEY)
    assert kv.smembers(HEXKEY) == set() and kv.smembers("wl/" + HEXKEY) == {"W1"}


def test_a_grown_bucket_over_the_cap_is_still_a_conflict(kv):
    """A writer that read a bucket (over its cap: only its size) and another that grew it
    meanwhile: the first must not commit (the grown set may hold an identity it missed)."""
    from reglink.stores.kv import Conflict, TxKV

    big = "b:" + "c3" * 12
    kv.sadd(big, [_pid(n) for n in range(30)])
    a = TxKV(kv)
    if not a.optimistic:
        assert isinstance(kv, MemoryKV)
        return
    got = a.smembers_many_shared([big], [5])[0]
    assert len(got) == 30
    kv.sadd(big, [_pid(99)])
    a.sadd(big, [_pid(100)])
    with pytest.raises(Conflict):
        a.commit()
    a.rollback()
    assert kv.scard(big) == 31
    # a capped read then a full read in one unit of work: the full read has the members
    b = TxKV(kv)
    assert len(b.smembers_many_shared([big], [5])[0]) == 31
    assert b.smembers(big) == {_pid(n) for n in range(30)} | {_pid(99)}
    b.sadd(big, [_pid(100)])
    assert len(b.smembers_many_shared([big], [5])[0]) == 32
    b.commit()
    assert kv.scard(big) == 32


def test_purge_removes_members_of_a_large_bucket(sweep_store, sweep_kv):
    store, kv = sweep_store, sweep_kv
    for n in range(40):
        store.save(ident(_pid(n), last_report=10.0 if n % 2 else 10**9), ["k-common"])
    rep = store.purge(1_000.0)
    assert len(rep.person_ids) == 20
    (key,) = [k for k in kv.scan("b:")]
    assert kv.smembers(key) == {_pid(n) for n in range(0, 40, 2)}


@pytest.mark.integration
def test_a_sweep_refuses_the_layout_1_index(redis_client, settings):
    """A plain Redis set at ``b:<key>`` (the old layout) is never read as an empty index:
    the sweep stops with a clear message instead of purging around it."""
    from reglink.stores.kv import OldLayout

    kv = RedisKV(redis_client, settings.redis_prefix)
    redis_client.sadd(settings.redis_prefix + "b:" + "ab" * 12, "P0000000000000001")
    with pytest.raises(OldLayout, match="reglink rebuild"):
        list(kv.scan(""))
    with pytest.raises(OldLayout):
        KVIdentityStore(kv).purge(10**9)


# --- the layout mark: a store in another layout is refused, never read as empty ------------

def test_an_empty_store_is_marked_with_the_layout_and_then_accepted(kv):
    from reglink.stores.kv import LAYOUT, ensure_layout

    ensure_layout(kv)
    assert kv.get("layout") == LAYOUT
    KVIdentityStore(kv).save(ident("P1", names={"王伟"}), ["k1"])
    ensure_layout(kv)  # marked: a used store of this layout is fine (a worker restart)


def test_a_used_store_without_the_mark_is_refused_unless_forced(kv):
    """State written before the mark existed (identities, no ``layout``): an older layout.
    A worker would find no candidates in its index and found duplicates silently."""
    from reglink.stores.kv import LAYOUT, OldLayout, ensure_layout

    kv.set("n:identities", "5")
    with pytest.raises(OldLayout, match="reglink rebuild"):
        ensure_layout(kv)
    assert kv.get("layout") is None
    ensure_layout(kv, force=True)  # reglink rebuild --force writes over it
    assert kv.get("layout") == LAYOUT


def test_a_store_marked_with_another_layout_is_refused(kv):
    from reglink.stores.kv import OldLayout, ensure_layout

    kv.set("layout", "9")
    with pytest.raises(OldLayout, match="layout 9"):
        ensure_layout(kv)


def test_a_store_with_untagged_rule_timers_is_refused(kv):
    """Layout 2 held the timers of unregistered_stay as ``<pid>|<pref>``, without the
    rule's name: a worker would drop them, so the store is refused and must be rebuilt."""
    from reglink.stores.kv import LAYOUT, OldLayout, ensure_layout

    assert LAYOUT == "3"
    kv.set("layout", "2")
    with pytest.raises(OldLayout, match="layout 2 .*rule's name.*reglink rebuild"):
        ensure_layout(kv)
    assert kv.get("layout") == "2"
