"""The matcher's types and interfaces (Protocols). Implementations live beside them:

* ``matchers.features``   record -> :class:`PersonRecord` (normalise)
* ``matchers.candidates`` blocking keys -> candidate identities
* ``matchers.comparators`` one graded comparator per feature (:class:`FeatureComparator`)
* ``matchers.compare``    the comparators composed and weighed by a model (:class:`Comparator`)
* ``matchers.decide``     weights -> probability -> link / new / merge
* ``reglink.stores``     :class:`IdentityStore` implementations (embedded, Redis)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from matchers.model import FSModel


@dataclass(slots=True)
class PersonRecord:
    """The normalised person block of one input record (fast internal type, no clear IDs)."""

    key: str  # "<source>:<record_id|watch_id>"
    source: str
    name: str  # normalised display form
    script: str  # 'han' | 'latin'
    syllables: tuple[str, ...]
    name_key: str  # order-free pinyin key
    surname: str
    aliases: tuple[str, ...] = ()  # alias name keys (watchlist)
    alias_names: tuple[str, ...] = ()
    id_kind: str | None = None  # 'resident' | 'other' | None
    id_hash: str | None = None  # HMAC of the normalised ID number
    id_valid: bool = False
    id_flag: str | None = None  # 'bad_checksum' | 'upgraded_15' | None
    quality_flags: tuple[str, ...] = ()  # matchers.features.QUALITY_FLAGS, in that order
    birth_date: str | None = None
    sex: str | None = None
    phone_hash: str | None = None
    home: str | None = None  # prefecture (4 digits) of household registration, from a valid ID
    # Typo neighbourhood of the ID, pseudonymised (see normalise.id_neighbours): the valid IDs
    # one digit off / one adjacent transposition away (resident IDs), or the one-deletion
    # variants (other documents, no checksum).
    id_near: tuple[str, ...] = ()
    id_swap: tuple[str, ...] = ()
    id_del: tuple[str, ...] = ()
    id_area: str | None = None  # first 4 digits of a resident-looking ID, valid or not
    # The record's top-level address on the sources that give where the person lives
    # (rental, residence, person; see matchers.features.ADDRESS_SOURCES), upper-case tokens.
    address: str | None = None


SET_FIELDS = ("id_hashes", "names", "name_keys", "surnames", "birth_dates", "sexes",
              "phone_hashes", "id_near", "id_swap", "id_del", "areas", "addresses")


@dataclass(slots=True)
class Identity:
    """A person as the store knows it: the union of its records' features."""

    person_id: str
    anchor: str  # 'rid:<hash>' when founded on a valid resident ID, else 'rec:<record key>'
    rid_hash: str | None = None  # the valid resident ID (pseudonymised), if known
    home: str | None = None
    id_hashes: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    name_keys: set[str] = field(default_factory=set)
    surnames: set[str] = field(default_factory=set)
    birth_dates: set[str] = field(default_factory=set)
    sexes: set[str] = field(default_factory=set)
    phone_hashes: set[str] = field(default_factory=set)
    id_near: set[str] = field(default_factory=set)  # typo neighbourhoods of its IDs
    id_swap: set[str] = field(default_factory=set)
    id_del: set[str] = field(default_factory=set)
    areas: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)
    records: int = 0
    last_report: float | None = None  # latest report time (epoch s) of its records
    last_record: str | None = None  # key of the latest record linked

    def absorb(self, rec: PersonRecord) -> None:
        """Add one record's features (idempotent on features, counts the record)."""
        if rec.id_hash:
            self.id_hashes.add(rec.id_hash)
            if rec.id_valid and self.rid_hash is None:
                self.rid_hash, self.home = rec.id_hash, rec.home
        self.names.add(rec.name)
        self.name_keys.add(rec.name_key)
        if rec.surname:
            self.surnames.add(rec.surname)
        if rec.birth_date:
            self.birth_dates.add(rec.birth_date)
        if rec.sex:
            self.sexes.add(rec.sex)
        if rec.phone_hash:
            self.phone_hashes.add(rec.phone_hash)
        self.id_near.update(rec.id_near)
        self.id_swap.update(rec.id_swap)
        self.id_del.update(rec.id_del)
        if rec.id_area:
            self.areas.add(rec.id_area)
        if rec.address:
            self.addresses.add(rec.address)
        self.records += 1
        if self.last_record is None:
            self.last_record = rec.key

    def merge_from(self, other: Identity) -> None:
        for attr in SET_FIELDS:
            getattr(self, attr).update(getattr(other, attr))
        if self.rid_hash is None and other.rid_hash is not None:
            self.rid_hash, self.home = other.rid_hash, other.home
        self.records += other.records
        if other.last_report and (not self.last_report or other.last_report > self.last_report):
            self.last_report, self.last_record = other.last_report, other.last_record

    @property
    def rule_anchor(self) -> str:
        """What alert ids hang on: the pseudonymised resident ID when known, else the id."""
        return f"rid:{self.rid_hash}" if self.rid_hash else f"pid:{self.person_id}"


@dataclass(frozen=True, slots=True)
class FeatureScore:
    """One feature's comparison: graded level and its match weight (log2 Bayes factor)."""

    feature: str
    level: str
    weight: float

    def to_json(self) -> dict[str, Any]:
        return {"feature": self.feature, "level": self.level, "weight": round(self.weight, 3)}


@dataclass(frozen=True, slots=True)
class Comparison:
    person_id: str
    features: tuple[FeatureScore, ...]
    prior_weight: float
    probability: float
    conflict: str | None = None  # a hard reason to keep apart, e.g. 'different_resident_id'

    @property
    def total_weight(self) -> float:
        return self.prior_weight + sum(f.weight for f in self.features)

    def explanation(self) -> dict[str, Any]:
        return {
            "prior_weight": round(self.prior_weight, 3),
            "features": [f.to_json() for f in self.features],
            "total_weight": round(self.total_weight, 3),
            "probability": round(self.probability, 6),
            **({"conflict": self.conflict} if self.conflict else {}),
        }


_EXPLANATION_KEYS = ("prior_weight", "features", "total_weight", "probability")
_FEATURE_KEYS = ("feature", "level", "weight")


def compact_explanation(expl: dict[str, Any]) -> Any:
    """An explanation (:meth:`Comparison.explanation`) as positional lists for storage:
    ``[prior, [[feature, level, weight], ...], total, probability(, conflict)]``, about half
    the bytes. Anything of another shape is kept as it is. :func:`expand_explanation` gives
    back the same dict, keys in the same order."""
    keys = tuple(expl)
    if keys[:4] != _EXPLANATION_KEYS or keys[4:] not in ((), ("conflict",)):
        return expl
    feats = expl["features"]
    if any(tuple(f) != _FEATURE_KEYS for f in feats):
        return expl
    out = [expl["prior_weight"], [[f["feature"], f["level"], f["weight"]] for f in feats],
           expl["total_weight"], expl["probability"]]
    if "conflict" in expl:
        out.append(expl["conflict"])
    return out


def expand_explanation(stored: Any) -> dict[str, Any]:
    """The explanation :func:`compact_explanation` stored (a dict stored as it was is
    returned as it is)."""
    if isinstance(stored, dict):
        return stored
    out: dict[str, Any] = {
        "prior_weight": stored[0],
        "features": [{"feature": f, "level": lv, "weight": w} for f, lv, w in stored[1]],
        "total_weight": stored[2], "probability": stored[3]}
    if len(stored) > 4:
        out["conflict"] = stored[4]
    return out


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of the decide step for one record."""

    person_id: str | None  # identity the record joins; None -> create a new identity
    comparison: Comparison | None  # evidence for the chosen identity
    merge: tuple[str, ...] = ()  # further identities the evidence says are the same person


@dataclass(slots=True)
class PurgeReport:
    """What a retention sweep (:meth:`IdentityStore.purge`) deleted, or would delete."""

    dry_run: bool = False
    examined: int = 0  # identities read
    expired: int = 0  # latest record before the cut-off
    kept: dict[str, int] = field(default_factory=dict)  # reason -> identities kept anyway
    person_ids: list[str] = field(default_factory=list)  # purged (dry run: would be)
    index_entries: int = 0  # blocking-index memberships removed
    links: int = 0  # record -> person links removed
    pointers: int = 0  # merged-into pointers removed
    state_keys: int = 0  # caller's rule-state keys removed (stays, alert states)
    conflicts: int = 0  # a concurrent writer changed the identity: left for the next run

    @property
    def purged(self) -> int:
        return len(self.person_ids)

    def counts(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "examined": self.examined, "expired": self.expired,
                "kept": dict(sorted(self.kept.items())), "purged": self.purged,
                "index_entries": self.index_entries, "links": self.links,
                "pointers": self.pointers, "state_keys": self.state_keys,
                "conflicts": self.conflicts}


@runtime_checkable
class IdentityStore(Protocol):
    """Where identities live. Embedded (replay, tests) and Redis (workers) honour one contract,
    checked by ``tests/contract/test_identity_stores.py``."""

    def get(self, person_id: str) -> Identity | None: ...

    def get_many(self, person_ids: list[str]) -> list[Identity]:
        """The identities of ``person_ids`` that exist, in that order (one read)."""
        ...

    def find(self, keys: Iterable[str], limits: list[int | None] | None = None) -> set[str]:
        """Live person ids indexed under any of the blocking keys (merged ids resolved).
        ``limits`` (one per key, optional): a smaller bucket bound for that key."""
        ...

    def save(self, identity: Identity, keys: Iterable[str]) -> None:
        """Create or overwrite an identity and index it under ``keys`` (added to old keys)."""
        ...

    def retire(self, absorbed_id: str, into: str) -> None:
        """Mark ``absorbed_id`` merged into ``into``: find/resolve then return ``into``."""
        ...

    def resolve(self, person_id: str) -> str: ...

    def prefetch(self, record_key: str, keys: list[str], person_ids: tuple[str, ...] = (),
                 extra: tuple[str, ...] = ()) -> None:
        """Warm the read cache with what linking a record reads first: its link, its blocking
        keys ``keys``, the identities ``person_ids`` and the ``extra`` raw keys (a no-op where
        reads cost nothing)."""
        ...

    def link_of(self, record_key: str) -> str | None:
        """The person a record was linked to (for idempotent re-processing)."""
        ...

    def set_link(self, record_key: str, person_id: str) -> None: ...

    def count(self) -> int: ...

    def purge(self, before: float,
              keep: Callable[[Identity, dict[str, Any]], str | None] | None = None,
              state_keys: Callable[[str], list[str]] | None = None,
              dry_run: bool = False) -> PurgeReport:
        """Retention sweep: delete identities whose latest record is older than ``before``
        (epoch s) -- identity, index entries, pointers and links leading to it, and the
        caller's ``state_keys(person_id)`` -- unless ``keep(identity, state)`` names a
        reason. Safe beside running writers (see ``KVIdentityStore.purge``)."""
        ...


@runtime_checkable
class CandidateFinder(Protocol):
    """Blocking: the keys a record is searched and indexed under, and its candidates."""

    NAME: str  # versioned name, part of the linker's version

    def keys(self, rec: PersonRecord) -> list[str]:
        """Blocking keys of a record (used both to search and to index)."""
        ...

    def identity_keys(self, ident: Identity) -> list[str]:
        """Keys to search with an identity, and the keys a merged identity brings along."""
        ...

    def candidates(self, rec: PersonRecord, store: IdentityStore) -> list[Identity]: ...


@runtime_checkable
class FeatureComparator(Protocol):
    """One feature's graded comparison of a record with an identity (``matchers.comparators``).

    ``levels`` are strongest first; 'missing' (either side lacks the value) is implicit, not
    one of them, and weighs 0. The model file names each feature's comparator and version.
    """

    name: str
    version: int
    feature: str  # the model feature whose weights grade the levels
    levels: tuple[str, ...]
    tf_levels: frozenset[str]  # levels that take the model's name term-frequency adjustment
    conflicts: Mapping[str, str]  # level -> hard reason to keep the pair apart
    cheap: bool  # graded exactly when bounding a pair's weight
    explain_missing: bool  # a 'missing' level is listed in explanations

    def compare(self, rec: PersonRecord, ident: Identity) -> str:
        """The pair's level: one of ``levels``, or 'missing'."""
        ...

    def present(self, rec: PersonRecord, ident: Identity) -> bool:
        """Both sides carry a value (``compare`` does not return 'missing')."""
        ...

    def upper_bound(self, model: FSModel) -> tuple[str, float]:
        """The best level under ``model`` (the highest weight) and that weight: the most this
        comparator contributes to a pair's total (before a term-frequency adjustment)."""
        ...


@runtime_checkable
class Comparator(Protocol):
    """A record against one identity: every feature's level and weight, and the probability."""

    NAME: str  # versioned name, part of the linker's version

    @property
    def model(self) -> FSModel: ...

    def compare(self, rec: PersonRecord, ident: Identity) -> Comparison: ...

    def threshold_weight(self, probability: float) -> float | None:
        """The total weight at which the probability reaches ``probability`` (None: no
        such bound)."""
        ...

    def compare_if(self, rec: PersonRecord, ident: Identity,
                   min_weight: float | None) -> Comparison | None:
        """``compare(rec, ident)``, or None when the pair's total weight is certainly below
        ``min_weight`` (None: no bound)."""
        ...

    def counterfactuals(self, rec: PersonRecord, ident: Identity, threshold: float,
                        limit: int = 3) -> list[dict[str, Any]]:
        """The single changes of the record's evidence that flip its decision against
        ``ident`` at ``threshold`` (or the closest one), computed with the model."""
        ...


@runtime_checkable
class Decider(Protocol):
    """Which identity a record joins (or none), and which further identities merge."""

    threshold: float  # the probability a join needs

    def decide(self, rec: PersonRecord, comparisons: list[Comparison],
               rid_of: Mapping[str, str | None] | None = None,
               cannot_link: Callable[[str, str], bool] | None = None) -> Decision:
        """``rid_of``: person id -> its valid resident ID hash; ``cannot_link(a, b)``: review's
        veto of a join (record key, person id) or merge (person id, person id)."""
        ...
