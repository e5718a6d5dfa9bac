"""The birth date comparator."""

from __future__ import annotations

from matchers.comparators.base import LevelComparator
from matchers.normalise import birth_level
from matchers.types import Identity, PersonRecord


class BirthDateComparator(LevelComparator):
    """ISO birth dates against the identity's known dates (:func:`matchers.normalise.birth_level`):
    ``exact``; ``swapped_dm`` (day and month swapped); ``one_digit`` (one of the 8 digits
    differs); ``same_year``; ``different``. The strongest level over the known dates."""

    name = "birth-date"
    version = 1
    feature = "birth_date"
    levels = ("exact", "swapped_dm", "one_digit", "same_year", "different")
    cheap = True

    def present(self, rec: PersonRecord, ident: Identity) -> bool:
        return bool(rec.birth_date and ident.birth_dates)

    def compare(self, rec: PersonRecord, ident: Identity) -> str:
        b = rec.birth_date
        if not b or not ident.birth_dates:
            return "missing"
        return birth_level(b, ident.birth_dates)
