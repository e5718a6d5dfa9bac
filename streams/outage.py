"""What the worker logs while a service it needs is down, and when it is back.

One :class:`Outage` per service and kind of trouble. The first failure of an outage is logged
at once, naming the service, its address and what to do; while it lasts, a reminder follows
at a falling rate (after ``first_reminder`` seconds, then each time twice as long as the
outage has lasted, at most every ``max_interval`` seconds), never once per attempt. The first
success after it logs how long it lasted. The clock is injectable, so the rate limit is tested
without sleeping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

STATUS_HINT = "is it running? `reglink stack status`"


def redis_address(url: str) -> str:
    """``host:port`` of a Redis URL, without the user or password it may carry."""
    parts = urlsplit(url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"


class Outage:
    """Log lines of one service's outages (see the module docstring)."""

    def __init__(self, log: logging.Logger, service: str, address: str, *,
                 problem: str = "unreachable", hint: str = STATUS_HINT,
                 recovered: str = "recovered", clock: Callable[[], float] = time.monotonic,
                 first_reminder: float = 10.0, max_interval: float = 600.0) -> None:
        self.log = log
        self.service, self.address = service, address
        self.problem, self.hint, self.recovered_word = problem, hint, recovered
        self.clock = clock
        self.first_reminder, self.max_interval = first_reminder, max_interval
        self.since: float | None = None  # clock() at the outage's first failure
        self.attempts = 0
        self._next = 0.0  # clock() at which the next reminder is due

    @property
    def active(self) -> bool:
        return self.since is not None

    def failed(self, cause: str) -> None:
        """An attempt failed with ``cause`` (an exception's class name)."""
        now = self.clock()
        self.attempts += 1
        where = f"{self.service} at {self.address}"
        if self.since is None:
            self.since = now
            self._next = now + self.first_reminder
            self.log.warning("%s %s (%s): %s", where, self.problem, cause, self.hint)
            return
        if now >= self._next:
            lasted = now - self.since
            self._next = now + min(self.max_interval, max(self.first_reminder, lasted))
            self.log.warning("%s still %s after %.0f s (%s, %d attempts): %s", where,
                             self.problem, lasted, cause, self.attempts, self.hint)

    def ok(self) -> None:
        """An attempt succeeded: ends the outage, if there was one, with its recovered line."""
        if self.since is None:
            return
        lasted = self.clock() - self.since
        self.log.info("%s at %s %s after %.1f s (%d failed attempts)", self.service,
                         self.address, self.recovered_word, lasted, self.attempts)
        self.since = None
        self.attempts = 0
