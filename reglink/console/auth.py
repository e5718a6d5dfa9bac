"""Console users: operator, supervisor, auditor, with scrypt-hashed passwords (stdlib only).

The users file (``Settings.console_users_file``, JSON) maps a user name to its role and
password hash::

    {"ana": {"role": "operator", "password_hash": "scrypt$16384$8$1$<salt>$<hash>"}}

``reglink console-user NAME --role ROLE --users-file FILE`` adds or replaces one entry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path

from reglink.core.errors import ConfigError
from reglink.core.rules.decisions import ROLES

_N, _R, _P = 2**14, 8, 1


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                             r=int(r), p=int(p), dklen=len(base64.b64decode(digest)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def can_decide(self) -> bool:
        return self.role in ("operator", "supervisor")


class Users:
    def __init__(self, entries: dict[str, dict]) -> None:
        self._entries = entries

    @classmethod
    def load(cls, path: Path | None) -> Users:
        if path is None:
            raise ConfigError("no console users: create them with `reglink console-user NAME "
                              "--role operator --users-file users.json` and set "
                              "REGLINK_CONSOLE_USERS_FILE=users.json")
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read console users file {path}: {exc.strerror}: create "
                              "it with `reglink console-user`") from None
        except ValueError:
            raise ConfigError(f"console users file {path} is not valid JSON") from None
        for name, e in data.items():
            if e.get("role") not in ROLES:
                raise ConfigError(f"console user {name!r} has role {e.get('role')!r}: use one "
                                  f"of {', '.join(ROLES)}")
            if not str(e.get("password_hash", "")).startswith("scrypt$"):
                raise ConfigError(f"console user {name!r} has no scrypt password_hash: set it "
                                  "with `reglink console-user`")
        return cls(data)

    def authenticate(self, name: str, password: str) -> User | None:
        e = self._entries.get(name)
        if e is None:
            verify_password(password, hash_password("x", b"0" * 16))  # same work either way
            return None
        if not verify_password(password, e["password_hash"]):
            return None
        return User(name, e["role"])

    def get(self, name: str) -> User | None:
        e = self._entries.get(name)
        return User(name, e["role"]) if e else None


def add_user(path: Path, name: str, role: str, password: str) -> None:
    if role not in ROLES:
        raise ConfigError(f"role {role!r}: use one of {', '.join(ROLES)}")
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    data[name] = {"role": role, "password_hash": hash_password(password)}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
