"""The ID document number comparator."""

from __future__ import annotations

from matchers.comparators.base import LevelComparator
from matchers.types import Identity, PersonRecord


class IdComparator(LevelComparator):
    """Document numbers, compared on keyed hashes (no clear ID reaches the matcher).

    ``exact_valid`` (the same checksum-valid resident ID); ``exact_other`` (the same
    unvalidated or non-resident number); ``one_digit_off`` and ``transposed`` (a mistyped
    resident ID whose valid neighbour is the other side's ID, tested on the hashes of the
    neighbours, 15->18-digit upgrades included); ``one_char_off`` (opaque numbers within one
    deletion); ``different``; ``different_valid`` (two different valid resident IDs with no
    typo between them: two people, whatever the names say -- a hard conflict).
    """

    name = "cn-id"
    version = 1
    feature = "id"
    levels = ("exact_valid", "exact_other", "one_digit_off", "transposed", "one_char_off",
              "different", "different_valid")
    conflicts = {"different_valid": "different_resident_id"}
    cheap = True

    def present(self, rec: PersonRecord, ident: Identity) -> bool:
        return bool(rec.id_hash and ident.id_hashes)

    def compare(self, rec: PersonRecord, ident: Identity) -> str:
        h = rec.id_hash
        hashes = ident.id_hashes
        if not h or not hashes:
            return "missing"
        if h in hashes:
            return "exact_valid" if rec.id_valid else "exact_other"
        near = ident.id_near
        if hashes.intersection(rec.id_near) or h in near or near.intersection(rec.id_near):
            return "one_digit_off"
        swap = ident.id_swap
        if hashes.intersection(rec.id_swap) or h in swap or swap.intersection(rec.id_swap):
            return "transposed"
        if rec.id_del and ident.id_del.intersection(rec.id_del):
            return "one_char_off"
        if rec.id_valid and rec.id_kind == "resident" and ident.rid_hash:
            return "different_valid"
        return "different"
