"""The phone number comparator."""

from __future__ import annotations

from matchers.comparators.base import LevelComparator
from matchers.types import Identity, PersonRecord


class PhoneComparator(LevelComparator):
    """Normalised phone numbers, compared on keyed hashes: ``same`` when the identity has the
    record's number, else ``different`` (relatives share phones: the model weighs it)."""

    name = "phone"
    version = 1
    feature = "phone"
    levels = ("same", "different")
    cheap = True

    def present(self, rec: PersonRecord, ident: Identity) -> bool:
        return bool(rec.phone_hash and ident.phone_hashes)

    def compare(self, rec: PersonRecord, ident: Identity) -> str:
        h = rec.phone_hash
        if not h or not ident.phone_hashes:
            return "missing"
        return "same" if h in ident.phone_hashes else "different"
