"""The matcher's implementations satisfy its interfaces (matchers.types).

mypy checks this module (``make lint``): the annotated assignments below prove that each
implementation matches its Protocol, signatures included. At test time the same objects are
checked for the members the Protocols name, and the Linker runs on them."""

from __future__ import annotations

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
    IdentityStore,
)
from reglink.stores.identity import KVIdentityStore, embedded_store


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
