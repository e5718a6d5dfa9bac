"""Feature comparators: one per feature the model weighs, each a small class with a name,
a version and its graded levels (:class:`matchers.types.FeatureComparator`).

:class:`matchers.compare.FSComparator` composes the ones a model file names (its
``comparators`` field: feature -> name and version); :data:`REGISTRY` is where a name is looked
up. A comparator whose levels change gets a new version, and a model trained with the old one
no longer loads (retrain it with ``reglink train``).
"""

from __future__ import annotations

from collections.abc import Mapping

from matchers.comparators.address import (
    AddressComparator,
    LatinAddressComparator,
    ZhAddressComparator,
)
from matchers.comparators.base import LevelComparator
from matchers.comparators.birth import BirthDateComparator
from matchers.comparators.ids import IdComparator
from matchers.comparators.names import NameComparator, PlainNameComparator
from matchers.comparators.phone import PhoneComparator
from matchers.comparators.sex import SexComparator
from matchers.types import FeatureComparator

__all__ = ["DEFAULT", "REGISTRY", "AddressComparator", "BirthDateComparator", "IdComparator",
           "LatinAddressComparator", "LevelComparator", "NameComparator", "PhoneComparator",
           "PlainNameComparator", "SexComparator", "ZhAddressComparator", "by_spec",
           "default_comparators", "default_specs"]

# Every comparator a model file may name, by name.
REGISTRY: dict[str, type[LevelComparator]] = {c.name: c for c in (
    IdComparator, NameComparator, PlainNameComparator, BirthDateComparator, SexComparator,
    PhoneComparator, AddressComparator, ZhAddressComparator, LatinAddressComparator)}

# The features of the shipped model, in the order explanations list them, and their
# comparators.
DEFAULT: tuple[type[LevelComparator], ...] = (
    IdComparator, NameComparator, BirthDateComparator, SexComparator, PhoneComparator,
    AddressComparator)


def default_comparators() -> tuple[FeatureComparator, ...]:
    return tuple(c() for c in DEFAULT)


def default_specs() -> dict[str, dict[str, str | int]]:
    """The ``comparators`` field of a model that uses :data:`DEFAULT`."""
    return {c.feature: {"name": c.name, "version": c.version} for c in DEFAULT}


def by_spec(specs: Mapping[str, Mapping[str, str | int]]) -> tuple[FeatureComparator, ...]:
    """The comparators a model's ``comparators`` field names, in its order. Raises
    ``LookupError`` (one line) for a name not registered, another version, or a comparator
    of another feature."""
    out: list[FeatureComparator] = []
    for feature, spec in specs.items():
        name, version = spec.get("name"), spec.get("version")
        cls = REGISTRY.get(str(name))
        if cls is None:
            raise LookupError(f"feature {feature!r} names comparator {name!r}, which does not "
                              f"exist (known: {', '.join(sorted(REGISTRY))})")
        if cls.version != version:
            raise LookupError(f"feature {feature!r} names comparator {name!r} version "
                              f"{version!r}, but this code has version {cls.version}: "
                              "retrain the model (reglink train)")
        if cls.feature != feature:
            raise LookupError(f"comparator {name!r} grades feature {cls.feature!r}, "
                              f"not {feature!r}")
        out.append(cls())
    return tuple(out)
