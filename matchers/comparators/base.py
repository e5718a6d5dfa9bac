"""What every feature comparator shares: its upper bound under a model, and the defaults."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from matchers.types import Identity, PersonRecord

if TYPE_CHECKING:
    from matchers.model import FSModel


class LevelComparator:
    """Base of the feature comparators (:class:`matchers.types.FeatureComparator`).

    A subclass names itself (``name``, ``version``), the model feature it grades
    (``feature``), its ``levels`` strongest first, and implements :meth:`compare` and
    :meth:`present`. 'missing' (either side lacks the value) is implicit: it is not one of
    ``levels`` and always weighs 0.
    """

    name = ""
    version = 1
    feature = ""
    levels: tuple[str, ...] = ()
    # Levels whose weight takes the model's name term-frequency adjustment (names only).
    tf_levels: frozenset[str] = frozenset()
    # Levels that are a hard reason to keep the pair apart, and that reason.
    conflicts: Mapping[str, str] = {}
    # Graded exactly when bounding a pair's weight (a few set lookups): see
    # FSComparator.weight_bound. Otherwise bounded by its best weight when present.
    cheap = False
    # Whether a 'missing' level is listed in a comparison's explanation.
    explain_missing = True

    def compare(self, rec: PersonRecord, ident: Identity) -> str:
        raise NotImplementedError

    def present(self, rec: PersonRecord, ident: Identity) -> bool:
        """Both sides carry a value: :meth:`compare` returns one of ``levels``."""
        raise NotImplementedError

    def upper_bound(self, model: FSModel) -> tuple[str, float]:
        """The level with the highest weight under ``model`` and that weight (before any
        term-frequency adjustment): no pair gets more from this feature."""
        return max(((lvl, model.weight(self.feature, lvl)) for lvl in self.levels),
                   key=lambda lw: lw[1])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}@{self.version})"
