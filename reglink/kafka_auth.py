"""One place for client credentials: Kafka (kafka-python, faust) and Redis, per role.

``settings.kafka_security`` selects the mode:

* ``scram`` (default): Kafka SASL_PLAINTEXT with SCRAM-SHA-512 and ACLs, one principal per
  role; Redis ACL users with the ``default`` user off. docs/security.md has the tables.
* ``plaintext`` (explicit opt-in, ``REGLINK_KAFKA_SECURITY=plaintext``): no authentication;
  every helper here adds nothing (no extra kwargs, ``broker_credentials=None``,
  ``settings.redis_url``).
* ``scram`` + ``settings.kafka_tls``: the same over TLS (SASL_SSL); clients trust
  ``settings.kafka_ssl_cafile`` (default ``<state_dir>/tls/ca.pem``, made by ``stack up``)
  and check that the broker's certificate names the host they connect to.

Roles: ``admin`` (stack set-up, super user), ``connector-<source>`` for each source of the
registry (:mod:`reglink.core.sources`), ``worker``, ``console`` (the operators' role: review
console, ``reglink person``, ``reglink deadletter``), ``reader`` (``reglink alerts``,
downstream).
Passwords come from ``settings.kafka_username``/``kafka_password`` (a deployed process gets
only its own), else from the credentials file (``settings.kafka_credentials_file``, default
``<state_dir>/credentials.json``) that the first ``reglink stack up`` in scram mode writes
with mode 0600. No password is ever logged or put in an exception message.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from reglink.core import sources
from reglink.core.errors import ConfigError, ReglinkError, ServiceUnavailable
from reglink.core.settings import Settings

MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"
REDIS_USERS = ("admin", "worker", "console")


def kafka_principals() -> list[str]:
    """Every Kafka principal of the secure stack (admin first)."""
    return [ADMIN, *(s.principal for s in sources.current()), "worker", "console", "reader"]


def secure(settings: Settings) -> bool:
    return settings.kafka_security == "scram"


def tls(settings: Settings) -> bool:
    """True when Kafka clients speak SASL_SSL (``kafka_tls``, on top of scram)."""
    return secure(settings) and settings.kafka_tls


def tls_dir(settings: Settings) -> Path:
    """Where ``stack up`` keeps the CA and the broker's key and certificate."""
    return Path(settings.state_dir).expanduser().resolve() / "tls"


def ssl_cafile(settings: Settings) -> Path:
    """The CA certificate Kafka clients trust: ``kafka_ssl_cafile`` or
    ``<state_dir>/tls/ca.pem``. A clear ConfigError when it does not exist."""
    path = (Path(settings.kafka_ssl_cafile).expanduser().resolve()
            if settings.kafka_ssl_cafile is not None else tls_dir(settings) / "ca.pem")
    if not path.is_file():
        raise ConfigError(
            f"kafka_tls is on but there is no CA certificate at {path}: run `reglink stack up` "
            "(it makes one) or set REGLINK_KAFKA_SSL_CAFILE")
    return path


def ssl_context(settings: Settings):
    """An :class:`ssl.SSLContext` that trusts only :func:`ssl_cafile` and checks host names
    (for faust/aiokafka)."""
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ssl_cafile(settings)))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


# --- the credentials file --------------------------------------------------------------------
def credentials_path(settings: Settings) -> Path:
    if settings.kafka_credentials_file is not None:
        return Path(settings.kafka_credentials_file).expanduser().resolve()
    return Path(settings.state_dir).expanduser().resolve() / "credentials.json"


def ensure_credentials(settings: Settings) -> dict[str, dict[str, str]]:
    """Read the credentials file; create it (0600, random passwords) when missing, and add
    a password for any principal the file lacks (a new role in a later release)."""
    path = credentials_path(settings)
    creds: dict[str, dict[str, str]] = {"kafka": {}, "redis": {}}
    if path.is_file():
        creds = _read(path)
    changed = False
    for section, names in (("kafka", kafka_principals()), ("redis", REDIS_USERS)):
        for name in names:
            if name not in creds.setdefault(section, {}):
                creds[section][name] = secrets.token_hex(24)  # hex: safe in JAAS and argv
                changed = True
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(creds, fh, indent=1, sort_keys=True)
        os.chmod(tmp, 0o600)
        tmp.replace(path)
    return creds


def _read(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read credentials file {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"credentials file {path} is not valid JSON") from None
    if not isinstance(data, dict):
        raise ConfigError(f"credentials file {path}: expected an object")
    return {k: dict(v) for k, v in data.items() if isinstance(v, dict)}


def load_credentials(settings: Settings) -> dict[str, dict[str, str]]:
    path = credentials_path(settings)
    if not path.is_file():
        raise ConfigError(
            f"kafka_security=scram but no credentials file at {path}: run `reglink stack up` "
            "(it generates one) or set REGLINK_KAFKA_USERNAME and REGLINK_KAFKA_PASSWORD")
    return _read(path)


def kafka_login(settings: Settings, role: str) -> tuple[str, str]:
    """(principal, password) for ``role`` in scram mode."""
    if settings.kafka_username and settings.kafka_password is not None:
        return settings.kafka_username, settings.kafka_password.get_secret_value()
    name = settings.kafka_username or role
    try:
        return name, load_credentials(settings)["kafka"][name]
    except KeyError:
        raise ConfigError(f"no Kafka password for principal {name!r} in "
                          f"{credentials_path(settings)}") from None


# --- Kafka clients ---------------------------------------------------------------------------
def kafka_python_kwargs(settings: Settings, role: str) -> dict[str, Any]:
    """Extra kwargs for a kafka-python client (``KafkaProducer``/``KafkaConsumer``/admin) of
    ``role``. Empty in plaintext mode, so clients behave exactly as before."""
    if not secure(settings):
        return {}
    user, password = kafka_login(settings, role)
    kwargs: dict[str, Any] = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": MECHANISM,
                              "sasl_plain_username": user, "sasl_plain_password": password}
    if tls(settings):
        kwargs.update(security_protocol="SASL_SSL", ssl_cafile=str(ssl_cafile(settings)),
                      ssl_check_hostname=True)
    return kwargs


def kafka_client(factory: Any, settings: Settings, role: str, *topics: str, **kwargs: Any):
    """A kafka-python client (``KafkaConsumer``/``KafkaProducer``/...) as ``role``; a broker
    that does not answer becomes one clear :class:`ServiceUnavailable` line."""
    from kafka.errors import KafkaError

    try:
        return factory(*topics, bootstrap_servers=settings.kafka_bootstrap, **kwargs,
                       **kafka_python_kwargs(settings, role))
    except KafkaError:
        raise ServiceUnavailable(
            f"Kafka not reachable at {settings.kafka_bootstrap}: run `reglink stack up`"
        ) from None


def read_to_end(settings: Settings, role: str, topic: str, *, since_ms: int | None = None,
                timeout_s: float = 15.0,
                on_poll: Callable[[int], None] | None = None) -> Iterator[Any]:
    """Every message of ``topic`` (a full name) from its start, or from the Kafka timestamp
    ``since_ms``, to the end the topic has now, read as ``role``: the command-line readers'
    one loop. Never waits for more. A missing topic, or no message for ``timeout_s`` while
    some are due, is one :class:`ReglinkError` line. ``on_poll(total)`` runs after every poll
    (``total``: the messages due in all), for a progress line."""
    import time

    from kafka import KafkaConsumer, TopicPartition

    consumer = kafka_client(KafkaConsumer, settings, role, enable_auto_commit=False,
                            request_timeout_ms=int(max(timeout_s, 1) * 1000))
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise ReglinkError(f"no topic {topic}: run `reglink stack up` (it creates the "
                               "topics), or check the prefix (REGLINK_TOPIC_PREFIX, --prefix)")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        starts = consumer.beginning_offsets(tps)
        if since_ms is not None:
            found = consumer.offsets_for_times({tp: since_ms for tp in tps})
            starts = {tp: (found[tp].offset if found.get(tp) else ends[tp]) for tp in tps}
        for tp in tps:
            consumer.seek(tp, starts[tp])
        total = sum(ends[tp] - starts[tp] for tp in tps)
        todo = {tp for tp in tps if starts[tp] < ends[tp]}
        deadline = time.monotonic() + timeout_s  # without a message for this long: give up
        while todo:
            batch = consumer.poll(timeout_ms=500)
            if batch:
                deadline = time.monotonic() + timeout_s
            elif time.monotonic() > deadline:
                raise ReglinkError(f"reading {topic} stalled for {timeout_s:g} s: is Kafka "
                                   "slow or down? `reglink stack status`")
            for tp, msgs in batch.items():
                for m in msgs:
                    if m.offset < ends[tp]:
                        yield m
                    if m.offset + 1 >= ends[tp]:
                        todo.discard(tp)
            if on_poll is not None:
                on_poll(total)
        if on_poll is not None:
            on_poll(total)
    finally:
        consumer.close()


def faust_broker_credentials(settings: Settings, role: str = "worker") -> Any:
    """``broker_credentials`` for the faust app: None in plaintext mode. With ``kafka_tls``
    the credentials carry an SSL context, which makes faust pick SASL_SSL for aiokafka."""
    if not secure(settings):
        return None
    import faust

    user, password = kafka_login(settings, role)
    return faust.SASLCredentials(username=user, password=password, mechanism=MECHANISM,
                                 ssl_context=ssl_context(settings) if tls(settings) else None)


# --- Redis -----------------------------------------------------------------------------------
def connect_redis(settings: Settings, role: str, **kwargs: Any):
    """A Redis client for ``role`` that answered PING, or one clear ServiceUnavailable line."""
    import redis

    from reglink.core.errors import ServiceUnavailable

    client = redis.Redis.from_url(redis_url(settings, role), socket_timeout=10, **kwargs)
    try:
        client.ping()
    except redis.RedisError:
        raise ServiceUnavailable(
            f"Redis not reachable at {settings.redis_url}: run `reglink stack up`") from None
    return client


def redis_url(settings: Settings, role: str) -> str:
    """The Redis URL for ``role``: ``settings.redis_url`` as is in plaintext mode or when it
    already carries credentials, else with the role's ACL user and password in it."""
    url = settings.redis_url
    if not secure(settings):
        return url
    parts = urlsplit(url)
    if parts.username or parts.password:
        return redis_tls_url(settings, url)
    user = role if role in REDIS_USERS else None
    if user is None:
        raise ConfigError(f"role {role!r} has no Redis user (users: {', '.join(REDIS_USERS)})")
    try:
        password = load_credentials(settings)["redis"][user]
    except KeyError:
        raise ConfigError(f"no Redis password for user {user!r} in "
                          f"{credentials_path(settings)}") from None
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.netloc}"
    return redis_tls_url(settings, urlunsplit((parts.scheme, netloc, parts.path, parts.query,
                                                parts.fragment)))


def redis_tls_url(settings: Settings, url: str) -> str:
    """``url`` unchanged unless ``settings.redis_tls``; then ``rediss://`` (redis-py checks
    the certificate and the host name by default) trusting :func:`ssl_cafile` via the
    ``ssl_ca_certs`` query argument, unless the URL already names a CA file."""
    if not (secure(settings) and settings.redis_tls):
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(k == "ssl_ca_certs" for k, _ in query):
        query.append(("ssl_ca_certs", str(ssl_cafile(settings))))
    scheme = "rediss" if parts.scheme == "redis" else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


# Commands per Redis user: exactly what reglink/stores/kv.py (RedisKV) and the health checks
# issue. The worker writes; the console (IdentityView) only reads.
REDIS_WORKER_COMMANDS = ("ping", "get", "mget", "set", "del", "sadd", "srem", "smembers",
                         "scard", "zadd", "zrem", "zrangebyscore", "incr", "incrby", "multi",
                         "exec", "discard",  # redis-py sends INCR as INCRBY
                         # RedisKV's compare-and-apply Lua script (several workers on one
                         # Redis); Redis 7 checks the script's own calls against this ACL too
                         "evalsha", "eval", "script|load",
                         # the blocking index's bucket hashes (RedisKV.index_location)
                         "hget", "hset", "hdel", "hgetall", "hincrby")
REDIS_CONSOLE_COMMANDS = ("ping", "get", "mget", "smembers", "scard", "zrangebyscore", "hget",
                          "hgetall")


def redis_acl_lines(settings: Settings, creds: dict[str, dict[str, str]]) -> list[str]:
    """``user`` directives for redis.conf. Passwords appear only as SHA-256 hashes."""
    def pw(user: str) -> str:
        return "#" + hashlib.sha256(creds["redis"][user].encode()).hexdigest()

    keys = f"~{settings.redis_prefix}*"
    return [
        # The default user is off and has no password (resetpass), so no client can act as
        # it: every connection must AUTH as one of the users below. It keeps all rights
        # because Redis replays the AOF as the default user, and Redis < 8 re-checks EXEC's
        # ACL while loading (redis/redis#14541, fixed by #14545): without them a restart
        # silently drops every MULTI/EXEC of the AOF -- found by the fault suite.
        "user default off resetpass ~* &* +@all",
        f"user admin on {pw('admin')} ~* &* +@all",
        f"user worker on {pw('worker')} resetkeys {keys} resetchannels -@all "
        + " ".join(f"+{c}" for c in REDIS_WORKER_COMMANDS),
        f"user console on {pw('console')} resetkeys %R{keys} resetchannels -@all "
        + " ".join(f"+{c}" for c in REDIS_CONSOLE_COMMANDS),
    ]


# --- Kafka ACLs ------------------------------------------------------------------------------
# (principal, resource type, resource name, pattern, operation); topic names without prefix.
def acl_table(settings: Settings) -> list[tuple[str, str, str, str, str]]:
    t = settings.topic
    rows: list[tuple[str, str, str, str, str]] = []
    raw = [s.topic for s in sources.current()]
    for s in sources.current():
        for name in (s.topic, "deadletter"):
            rows += [(s.principal, "TOPIC", t(name), "LITERAL", "WRITE"),
                     (s.principal, "TOPIC", t(name), "LITERAL", "DESCRIBE")]
    # The worker reads the dead letters back to count them per organisation (source quality).
    for name in [*raw, "decisions", "deadletter"]:
        rows.append(("worker", "TOPIC", t(name), "LITERAL", "READ"))
    for name in ("linked", "identity.events", "alerts", "deadletter", "quality"):
        rows.append(("worker", "TOPIC", t(name), "LITERAL", "WRITE"))
    rows.append(("worker", "TOPIC", t("stats"), "LITERAL", "WRITE"))
    rows.append(("worker", "GROUP", settings.app_id, "PREFIXED", "READ"))
    # The console is the operators' role: it shows alert evidence (the raw records), person
    # timelines (linked, identity.events), the audit trail and, for `reglink deadletter`,
    # the dead letters (raw records too); it writes decisions and audit entries.
    for name in ["alerts", "decisions", "audit", "linked", "identity.events", "deadletter",
                 "quality", *raw]:
        rows.append(("console", "TOPIC", t(name), "LITERAL", "READ"))
    for name in ("decisions", "audit"):
        rows.append(("console", "TOPIC", t(name), "LITERAL", "WRITE"))
    rows.append(("reader", "TOPIC", t("alerts"), "LITERAL", "READ"))
    # source quality reports hold counts only: a downstream reader may have them
    rows.append(("reader", "TOPIC", t("quality"), "LITERAL", "READ"))
    rows.append(("reader", "GROUP", "reader.", "PREFIXED", "READ"))  # downstream groups
    # population statistics: counts only, for the operators and downstream
    rows += [(role, "TOPIC", t("stats"), "LITERAL", "READ") for role in ("console", "reader")]
    return rows


def _acl_objects(settings: Settings) -> list[Any]:
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    return [ACL(principal=f"User:{p}", host="*", operation=ACLOperation[op],
                permission_type=ACLPermissionType.ALLOW,
                resource_pattern=ResourcePattern(ResourceType[rt], name,
                                                 ACLResourcePatternType[pat]))
            for p, rt, name, pat, op in acl_table(settings)]


def apply_acls(settings: Settings, admin: Any, wait_s: float = 30.0) -> int:
    """Create the ACLs of :func:`acl_table` with an admin client (idempotent), and wait until
    the broker's authorizer has them (KRaft applies them from the metadata log a moment after
    CreateAcls returns; a client of the role connecting in between would be refused).
    Returns the count."""
    import time

    acls = _acl_objects(settings)
    result = admin.create_acls(acls)
    failed = result.get("failed") if isinstance(result, dict) else None
    if failed:
        raise ConfigError(f"creating {len(failed)} Kafka ACL(s) failed: {failed[0]}")
    deadline = time.monotonic() + wait_s
    while not set(acls) <= _described_acls(admin):
        if time.monotonic() > deadline:
            raise ConfigError(f"Kafka ACLs created but not in effect after {wait_s:g} s")
        time.sleep(0.1)
    return len(acls)


def _described_acls(admin: Any) -> set[Any]:
    """Every ACL binding the broker's authorizer holds (DescribeAcls, any filter)."""
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    any_acl = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                        permission_type=ACLPermissionType.ANY,
                        resource_pattern=ResourcePatternFilter(ResourceType.ANY, None,
                                                               ACLResourcePatternType.ANY))
    described, _error = admin.describe_acls(any_acl)
    return set(described or ())


def remove_acls(settings: Settings, admin: Any) -> int:
    """Delete the ACLs :func:`apply_acls` created for ``settings``'s own topics (its topic
    prefix) and consumer group (its app id), e.g. when a test or demo run drops its topics:
    Kafka keeps an ACL after its topic is deleted. Rows shared by every prefix (the
    ``reader.`` group) stay. Returns how many ACL bindings were deleted."""
    own = [a for a in _acl_objects(settings)
           if a.resource_pattern.resource_name.startswith(settings.topic_prefix)
           or a.resource_pattern.resource_name == settings.app_id]
    # an ACL is also an exact-match filter (kafka-python's ACL subclasses ACLFilter)
    return sum(len(matches) for _f, matches, _err in admin.delete_acls(own))
