"""The alert rules the pipeline runs, one line each, in the order it calls them (which is the
order their messages are emitted in). Adding a rule: its module, one line here, its tests.

``stale_registration`` comes before ``unregistered_stay``, which reads the deregistrations from
its ledger. ``population`` (the statistics) comes last: it counts from the state the rules
have kept for the record."""

from __future__ import annotations

from reglink.core.rules.base import AlertRule
from reglink.core.rules.population import Population
from reglink.core.rules.stale_registration import StaleRegistration
from reglink.core.rules.unregistered_stay import UnregisteredStay
from reglink.core.rules.watchlist_match import WatchlistMatch

RULES: tuple[type[AlertRule], ...] = (
    StaleRegistration,
    UnregisteredStay,
    WatchlistMatch,
    Population,
)
