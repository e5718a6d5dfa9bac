"""Keyed pseudonymisation (HMAC-SHA256). ID numbers and phones never leave the process in clear."""

from __future__ import annotations

import hashlib
import hmac


class Pseudonymiser:
    """``pseudo(kind, value)`` -> short keyed hash. A plain hash of an 18-digit ID is reversible
    by enumeration; a keyed HMAC is not without the key."""

    __slots__ = ("_key",)

    def __init__(self, key: str | bytes):
        self._key = key.encode() if isinstance(key, str) else key

    def __call__(self, kind: str, value: str) -> str:
        mac = hmac.new(self._key, f"{kind}\x1f{value}".encode(), hashlib.sha256)
        return mac.hexdigest()[:24]
