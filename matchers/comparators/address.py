"""The personal address comparator."""

from __future__ import annotations

from rapidfuzz.fuzz import token_set_ratio

from matchers.comparators.base import LevelComparator
from matchers.types import Identity, PersonRecord


class AddressComparator(LevelComparator):
    """A person's own address (upper-case tokens, when a source gives one): ``exact``;
    ``high`` and ``mid`` token-set similarity (>= 90, >= 70) with the closest known address;
    ``different``. Most sources have no personal address, so a missing address is left out of
    explanations."""

    name = "address-tokens"
    version = 1
    feature = "address"
    levels = ("exact", "high", "mid", "different")
    explain_missing = False

    def present(self, rec: PersonRecord, ident: Identity) -> bool:
        return bool(rec.address and ident.addresses)

    def compare(self, rec: PersonRecord, ident: Identity) -> str:
        a = rec.address
        if not a or not ident.addresses:
            return "missing"
        if a in ident.addresses:
            return "exact"
        score = max(token_set_ratio(a, known) for known in ident.addresses)
        return "high" if score >= 90 else "mid" if score >= 70 else "different"
