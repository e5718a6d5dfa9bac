"""The sex comparator."""

from __future__ import annotations

from matchers.comparators.base import LevelComparator
from matchers.types import Identity, PersonRecord


class SexComparator(LevelComparator):
    """Normalised sex (``M`` / ``F``): ``same`` when the identity has the record's value among
    its values, else ``different``."""

    name = "sex"
    version = 1
    feature = "sex"
    levels = ("same", "different")
    cheap = True

    def present(self, rec: PersonRecord, ident: Identity) -> bool:
        return bool(rec.sex and ident.sexes)

    def compare(self, rec: PersonRecord, ident: Identity) -> str:
        s = rec.sex
        if not s or not ident.sexes:
            return "missing"
        return "same" if s in ident.sexes else "different"
