"""Output messages, and the outbox that keeps them until the broker has them.

With an outbox (the worker), alerts and identity events are written to the state store in
the same unit of work as the state change that caused them, and deleted when the shell has
seen the broker acknowledge them; after a crash the shell re-sends what is still there
(duplicates are allowed, losses are not). Replay and rebuild run without one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from reglink.stores import schema as sk
from reglink.stores.kv_api import Op, UnitOfWorkKV


@dataclass(frozen=True, slots=True)
class Out:
    """One output message: topic name without prefix, key, JSON value."""

    topic: str
    key: str
    value: dict[str, Any]  # a JSON object
    oid: str | None = None  # outbox id while the message awaits delivery (worker only)


class Outbox:
    """Messages awaiting delivery in the state store: ``o:<oid>`` holds one, the sorted set
    ``outbox`` their ids (:mod:`reglink.stores.schema`). Ids come from the atomic counter
    ``n:outbox`` (unique across workers)."""

    def __init__(self, kv: UnitOfWorkKV, enabled: bool) -> None:
        self.kv = kv
        self.enabled = enabled

    def keep(self, out: Out) -> Out:
        """Put a message in the outbox, in the current unit of work (same commit as its
        cause). Without an outbox, the message as it is."""
        if not self.enabled:
            return out
        oid = f"{self.kv.incr(sk.OUTBOX_COUNTER):012d}"
        self.kv.set(sk.outbox_message(oid),
                    json.dumps([out.topic, out.key, out.value], ensure_ascii=False))
        self.kv.zadd(sk.OUTBOX, oid, float(int(oid)))
        return Out(out.topic, out.key, out.value, oid)

    @staticmethod
    def _forget(oid: str) -> tuple[Op, Op]:
        return ("zrem", sk.OUTBOX, oid), ("delete", sk.outbox_message(oid))

    def delivered(self, oid: str) -> None:
        """The shell saw the broker acknowledge an outbox message: forget it (on the
        committed store, one round trip)."""
        self.kv.base.apply(list(self._forget(oid)))

    def delivered_many(self, oids: list[str]) -> None:
        """Several confirmations at once: one round trip."""
        if oids:
            self.kv.base.apply([op for oid in oids for op in self._forget(oid)])

    def undelivered(self) -> list[Out]:
        """Outbox messages not yet confirmed, oldest first."""
        base = self.kv.base
        outs = []
        for oid, _score in base.zupto(sk.OUTBOX, float("inf")):
            raw = base.get(sk.outbox_message(oid))
            if raw:
                topic, key, value = json.loads(raw)
                outs.append(Out(topic, key, value, oid))
        return outs
