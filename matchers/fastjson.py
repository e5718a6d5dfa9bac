"""Compact JSON for the state store (identities, stays): msgspec when installed, else json.

Same text as ``json.dumps(obj, ensure_ascii=False, separators=(",", ":"))``, ~7x faster to
encode and ~4x faster to decode (the identity store encodes one identity and decodes its
candidates for every record)."""

from __future__ import annotations

import json

try:  # pragma: no cover - exercised by whichever is installed
    import msgspec

    _enc = msgspec.json.Encoder()
    _dec = msgspec.json.Decoder()

    def dumps(obj) -> str:
        return _enc.encode(obj).decode()

    def loads(raw: str | bytes):
        return _dec.decode(raw)
except ImportError:  # pragma: no cover
    def dumps(obj) -> str:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))

    loads = json.loads
