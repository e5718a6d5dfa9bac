"""The implementations satisfy their interfaces: the matcher's (matchers.types) and the
state stores' (reglink.stores.kv).

mypy checks this module (``make lint``): the annotated assignments below prove that each
implementation matches its Protocol, signatures included, and :func:`_rejected_by_mypy` holds
uses the types forbid (``warn_unused_ignores`` fails the check if one becomes allowed). At test
time the same objects are checked for the members the Protocols name, with parameters that
accept the Protocol's, and the Linker and the identity store run on them."""

from __future__ import annotations

import importlib.util
import inspect
from typing import Any

import redis

from matchers import native
from matchers.candidates import BlockingCandidates
from matchers.comparators import REGISTRY
from matchers.compare import FSComparator
from matchers.decide import ThresholdDecider
from matchers.features import person_record
from matchers.linker import Linker
from matchers.pseudo import Pseudonymiser
from matchers.types import (
    CandidateFinder,
    Comparator,
    Decider,
    FeatureComparator,
    Identity,
    IdentityStore,
)
from reglink.stores import schema as sk
from reglink.stores.identity import KVIdentityStore, embedded_store
from reglink.stores.kv import MemoryKV, PrefixedView, RedisKV, TxKV
from reglink.stores.kv_api import IdentityKV, IndexKV, KeyValue, SharedKV, UnitOfWorkKV


def test_every_implementation_satisfies_its_protocol() -> None:
    pseudo = Pseudonymiser("interfaces")
    store: IdentityStore = embedded_store()
    finder: CandidateFinder = BlockingCandidates(pseudo)
    comparator: Comparator = FSComparator()
    decider: Decider = ThresholdDecider(0.9)
    features: list[FeatureComparator] = [cls() for cls in REGISTRY.values()]
    assert isinstance(store, KVIdentityStore) and isinstance(store, IdentityStore)
    assert isinstance(finder, CandidateFinder)
    assert isinstance(comparator, Comparator)
    assert isinstance(decider, Decider)
    assert all(isinstance(f, FeatureComparator) for f in features)


def test_the_linker_runs_on_the_protocols() -> None:
    pseudo = Pseudonymiser("interfaces")
    comparator: Comparator = FSComparator()
    linker = Linker(embedded_store(), pseudo, 0.9, finder=BlockingCandidates(pseudo),
                    comparator=comparator, decider=ThresholdDecider(0.9))
    assert linker.version == f"blocking-v2+{comparator.model.version}"
    rows = [{"name": "陈丽", "birth_date": "1988-03-15", "phone": "13812345678"},
            {"name": "陈丽", "birth_date": "1988-03-15", "phone": "13812345678", "sex": "F"}]
    results = [linker.link(person_record({"source": "hotel", "person": p}, f"hotel:{i}",
                                         pseudo))
               for i, p in enumerate(rows)]
    assert results[0].created and not results[1].created
    assert results[1].person_id == results[0].person_id
    assert results[1].probability >= 0.9


def _parameters(impl: object, name: str, bound: Any) -> list[inspect.Parameter]:
    """The parameters of method ``name`` of ``impl`` (bound: without self). A compiled method
    may carry no signature; then its source's, loaded as pure Python, is read."""
    try:
        return list(inspect.signature(bound).parameters.values())
    except ValueError:
        cls = type(impl)
        spec = importlib.util.spec_from_file_location(
            f"_pure_{cls.__module__.replace('.', '_')}", native.source(cls.__module__))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        fn = getattr(getattr(module, cls.__name__), name)
        return list(inspect.signature(fn).parameters.values())[1:]  # without self


def _accepts(impl: object, proto: type) -> list[str]:
    """The members of ``proto`` that ``impl`` lacks, or whose parameters do not take the
    Protocol's (same names in the same order; any further ones optional)."""
    wrong = []
    for name, member in inspect.getmembers(proto):
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        got = getattr(impl, name, None)
        if got is None:
            wrong.append(name)
            continue
        want = list(inspect.signature(member).parameters)[1:]  # without self
        have = _parameters(impl, name, got)
        if [p.name for p in have[:len(want)]] != want or any(
                p.default is inspect.Parameter.empty for p in have[len(want):]):
            wrong.append(name)
    return wrong


def test_the_state_stores_satisfy_theirs() -> None:
    memory = MemoryKV()
    shared = RedisKV(redis.Redis(), "interfaces:")  # no round trip: the client connects lazily
    committed: list[KeyValue] = [memory, shared]
    sharing: SharedKV = shared
    unit: UnitOfWorkKV = TxKV(memory)
    merging: list[IdentityKV] = [memory, shared, unit]
    view: IndexKV = PrefixedView(unit, "wl/")
    for impl, proto in [(memory, KeyValue), (shared, KeyValue), (sharing, SharedKV),
                        (unit, UnitOfWorkKV), (view, IndexKV), *((m, IdentityKV) for m in merging)]:
        assert isinstance(impl, proto), (impl, proto)
        assert _accepts(impl, proto) == [], (type(impl).__name__, proto.__name__)
    assert all(isinstance(kv, KeyValue) for kv in committed)
    # the unit of work and the watchlist view are no committed store; memory shares no state
    assert not isinstance(unit, KeyValue) and not isinstance(view, IdentityKV)
    assert not isinstance(memory, SharedKV)


def test_the_identity_store_runs_on_a_unit_of_work_and_its_watchlist_view() -> None:
    base = MemoryKV()
    unit = TxKV(base)
    store: IdentityStore = KVIdentityStore(unit)  # retire: a unit of work can delete
    watch = KVIdentityStore(PrefixedView(unit, "wl/"))
    store.save(Identity(person_id="P1", anchor="rid:1"), ["k"])
    store.save(Identity(person_id="P2", anchor="rid:2"), ["k"])
    store.retire("P2", "P1")
    watch.save(Identity(person_id="W1", anchor="watch:W1"), ["k"])
    assert store.find(["k"]) == {"P1"} and watch.find(["k"]) == {"W1"}
    assert base.get(sk.identity("P1")) is None  # nothing reaches the store before the commit
    unit.commit()
    assert base.get(sk.merged("P2")) == "P1" and base.get(sk.identity("P2")) is None
    assert base.get(sk.WATCH_NS + sk.identity("W1")) is not None
    assert base.get(sk.identity("W1")) is None  # the watchlist lives in its own namespace
    assert KVIdentityStore(base).find(["k"]) == {"P1"}
    assert KVIdentityStore(PrefixedView(TxKV(base), sk.WATCH_NS)).find(["k"]) == {"W1"}


def test_a_protocol_member_missing_or_taking_other_parameters_is_reported() -> None:
    class Narrow:
        def get(self, key: str) -> None: ...
        def mget(self, names: list[str]) -> None: ...
        def set(self, key: str, value: str, ttl: int) -> None: ...

    assert _accepts(Narrow(), IndexKV) == ["incr", "mget", "sadd", "set",
                                           "smembers_many_shared"]


def _rejected_by_mypy(unit: UnitOfWorkKV, memory: MemoryKV, anything: Any) -> None:
    """Never called: mypy checks that each line below is an error (an ignore it no longer
    needs fails the check)."""
    committed: KeyValue = unit  # type: ignore[assignment]  # a unit of work commits; no apply
    watch = KVIdentityStore(PrefixedView(unit, "wl/"))
    watch.retire("W1", "W2")  # type: ignore[misc]  # the watchlist view cannot delete
    watch.purge(0.0)  # type: ignore[misc]  # nor sweep
    sharing: SharedKV = memory  # type: ignore[assignment]  # no compare-and-apply
    del committed, sharing, anything
