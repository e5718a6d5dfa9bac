"""Secrets for ``docker-compose.yml``: ``reglink compose-env`` writes them to ``.env``.

Docker Compose reads ``.env`` next to ``docker-compose.yml`` for variable interpolation; every
secret in the compose file is written ``${NAME:?...}``, so without the file ``docker compose``
refuses to start and names the command to run. Each service gets only its own secrets:

* ``kafka``  -- every principal's password (``KAFKA_PASSWORD_<PRINCIPAL>``): it creates the
  SCRAM users when it formats its storage (``deploy/kafka/compose-entrypoint.sh``), as
  ``reglink stack up`` does;
* ``redis``  -- every Redis user's password (``REDIS_PASSWORD_<USER>``), hashed into the ACL
  rules of ``deploy/redis/compose-users.acl`` (``deploy/redis/compose-entrypoint.sh``);
* ``topics`` (init) -- the ``admin`` principal; ``worker``, ``console``, ``demo-publisher`` --
  their own principals and Redis users.

Passwords are random (48 hex digits, like the local credentials file); an existing ``.env``
keeps its values (the Kafka volume was formatted with them), and only missing ones are added.
The file is written with mode 0600 and is ignored by git and by the Docker build context.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from reglink import kafka_auth

ENV_FILE = ".env"


def kafka_var(principal: str) -> str:
    """``connector-hotel`` -> ``KAFKA_PASSWORD_CONNECTOR_HOTEL``."""
    return "KAFKA_PASSWORD_" + principal.upper().replace("-", "_")


def redis_var(user: str) -> str:
    return "REDIS_PASSWORD_" + user.upper().replace("-", "_")


def redis_hash_placeholder(user: str) -> str:
    """The placeholder for a user's password hash in ``deploy/redis/compose-users.acl``."""
    return "${REDIS_HASH_" + user.upper().replace("-", "_") + "}"


# Secrets that are not passwords of a principal: the pseudonymisation key, the console's
# first supervisor and the console's session secret.
OTHER_VARS = ("REGLINK_HMAC_KEY", "CONSOLE_ADMIN_PASSWORD", "REGLINK_CONSOLE_SECRET")


def secret_vars() -> list[str]:
    """Every variable ``reglink compose-env`` writes, in file order."""
    return ([kafka_var(p) for p in kafka_auth.kafka_principals()]
            + [redis_var(u) for u in kafka_auth.REDIS_USERS] + list(OTHER_VARS))


def _read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def write_env(path: Path) -> tuple[Path, list[str]]:
    """Create or complete the compose env file. Returns (path, names of variables added)."""
    path = Path(path)
    values = _read_env(path) if path.is_file() else {}
    added = []
    for name in secret_vars():
        if not values.get(name):
            values[name] = secrets.token_hex(24)  # hex: safe in JAAS, sed, URLs, argv
            added.append(name)
    known = set(secret_vars())
    lines = ["# Secrets for docker-compose.yml, written by `reglink compose-env`. Do not commit.",
             *(f"{name}={values[name]}" for name in secret_vars()),
             *(f"{k}={v}" for k, v in values.items() if k not in known)]
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path, added
