"""Counterfactuals of links near the threshold: which single change of a record's evidence
would flip its decision, computed with the model. Through the real Linker with the shipped
model; no services."""

from test_golden_pairs import CASES, CHEN, ZHANG_A, ZHANG_B, P

from matchers.features import person_record
from matchers.linker import NEAR_BITS, Linker
from matchers.pseudo import Pseudonymiser
from reglink.console import fmt
from reglink.stores.identity import embedded_store

THRESHOLD = 0.90


def link_two(a: dict, b: dict, near_bits: float = NEAR_BITS):
    """Link ``a`` then ``b``; (a's result, a's identity as b met it, b's result)."""
    pseudo = Pseudonymiser("golden")
    linker = Linker(embedded_store(), pseudo, THRESHOLD, near_bits=near_bits)
    ra = linker.link(person_record({"source": "hotel", "person": a}, "hotel:A", pseudo))
    met = linker.store.get(ra.person_id)
    snapshot = type(met)(person_id=met.person_id, anchor=met.anchor, rid_hash=met.rid_hash,
                         home=met.home)
    snapshot.merge_from(met)
    rb = linker.link(person_record({"source": "rental", "person": b}, "rental:B", pseudo))
    return ra, snapshot, rb


def probability_without(b: dict, field: str, ident) -> float:
    """What the model gives ``b`` without ``field`` against ``ident``: the check of a
    ``remove`` counterfactual, by comparing a record that really lacks the value."""
    pseudo = Pseudonymiser("golden")
    rest = {k: v for k, v in b.items() if k != field}
    rec = person_record({"source": "rental", "person": rest}, "rental:B", pseudo)
    linker = Linker(embedded_store(), pseudo, THRESHOLD)
    return linker.comparator.compare(rec, ident).probability


def test_a_join_near_the_threshold_says_what_would_undo_it():
    b = {"name": "陈丽", "birth_date": "1988-03-15"}
    ra, ident, rb = link_two({"name": "陈丽", "id_number": CHEN, "phone": P}, b,
                             near_bits=100)
    assert rb.person_id == ra.person_id
    cfs = rb.explanation["counterfactuals"]
    assert cfs and all(c["flips"] and c["person_id"] == ra.person_id for c in cfs)
    assert all(c["change"] == "remove" and c["probability"] < THRESHOLD for c in cfs)
    by_feature = {c["feature"]: c for c in cfs}
    assert {"name", "birth_date"} <= set(by_feature)
    # computed from the model: the record really without its birth date gets that probability
    assert by_feature["birth_date"]["probability"] == round(
        probability_without(b, "birth_date", ident), 6)
    # smallest change of weight first: the probabilities left rise along the list
    assert [c["probability"] for c in cfs] == sorted(c["probability"] for c in cfs)[::-1]
    text = fmt.link_counterfactuals(rb.explanation)
    assert any(t.startswith("Without the birth date on this record it would not link")
               for t in text)


def test_a_record_that_founds_an_identity_says_what_would_have_linked_it():
    ra, _ident, rb = link_two({"name": "陈丽", "id_number": CHEN},
                              {"name": "陈丽", "birth_date": "1991-02-03"}, near_bits=100)
    assert rb.person_id != ra.person_id and rb.created
    expl = rb.explanation
    assert expl["new_identity"] and expl["closest"]["person_id"] == ra.person_id
    assert expl["closest"]["probability"] < THRESHOLD
    flips = [c for c in expl["counterfactuals"] if c["flips"]]
    match = next(c for c in flips if c["feature"] == "birth_date")
    assert match["change"] == "match" and match["level"] == "exact"
    assert match["probability"] >= THRESHOLD and match["person_id"] == ra.person_id
    assert f"A matching birth date would link it to {ra.person_id}" in " ".join(
        fmt.link_counterfactuals(expl))


def test_a_conflicting_resident_id_is_named_as_what_kept_namesakes_apart():
    ra, _ident, rb = link_two({"name": "张伟", "id_number": ZHANG_A},
                              {"name": "张伟", "id_number": ZHANG_B}, near_bits=100)
    assert rb.person_id != ra.person_id
    assert rb.explanation["closest"]["conflict"]
    first = rb.explanation["counterfactuals"][0]
    assert (first["change"], first["feature"], first["flips"]) == ("remove", "id", True)
    assert first["probability"] >= THRESHOLD


def test_decisions_far_from_the_threshold_carry_none():
    _ra, _ident, rb = link_two({"name": "陈丽", "id_number": CHEN, "phone": P},
                               {"name": "陈丽", "id_number": CHEN, "phone": P})
    assert "counterfactuals" not in rb.explanation
    assert fmt.link_counterfactuals(rb.explanation) == []


def test_the_band_changes_explanations_only_never_a_decision():
    """Candidates within the band below the threshold are compared in full (to explain a
    record that founds an identity); whom each record joins stays the same."""
    for label, a, b, _same in CASES:
        narrow = link_two(a, b, near_bits=0.0)
        wide = link_two(a, b, near_bits=100.0)
        assert (narrow[2].person_id == narrow[0].person_id) == (
            wide[2].person_id == wide[0].person_id), label
