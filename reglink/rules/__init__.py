"""The alert rules (docs/contract.md §2) and their registry.

A rule is an :class:`~reglink.rules.base.AlertRule` in a module of its own; :data:`RULES`
lists them, one line each, in the order the pipeline calls them (which is the order their
messages are emitted in). Pure helpers: :mod:`.stay`, :mod:`.watchlist`, :mod:`.clock`,
:mod:`.watermark`, :mod:`.merge`; reviewers' decisions: :mod:`.decisions`.
"""

from __future__ import annotations

from .base import AlertRule
from .unregistered_stay import UnregisteredStay
from .watchlist_match import WatchlistMatch

RULES: tuple[type[AlertRule], ...] = (
    UnregisteredStay,
    WatchlistMatch,
)
