"""Deny matrix on a kafka_security=scram stack: every principal, plus an unauthenticated client
and a wrong password, against every topic and operation (and the groups, the cluster, Redis).

A combination must succeed exactly where the access rules allow it, and fail with an
authorization or authentication error everywhere else. The expected table below is written
from the rules (docs/security.md), independently of ``reglink.kafka_auth.acl_table``.
The figures go to ``deny-matrix.json`` next to the test's tmp dir and are printed.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter

import pytest

from reglink import kafka_auth
from reglink.core.topics import SOURCES, topic_specs
from reglink.devstack.stack import admin_client, create_topics

TOPIC_OPS = ("produce", "fetch", "describe", "create", "delete", "alter_configs")
AUTH_ERRORS = {"TopicAuthorizationFailedError", "GroupAuthorizationFailedError",
               "ClusterAuthorizationFailedError", "SaslAuthenticationFailedError",
               "BrokerClosedUnauthenticated"}


# --- what the rules allow ------------------------------------------------------------------
def allowed_topic_op(principal: str, topic: str, op: str) -> bool:
    if principal == "admin":
        return True
    writes, reads = set(), set()
    if principal.startswith("connector-"):
        writes = {f"{principal.removeprefix('connector-')}.raw", "deadletter"}
    elif principal == "worker":
        # dead letters read back to count them per organisation (source quality)
        reads = {f"{s}.raw" for s in SOURCES} | {"decisions", "deadletter"}
        writes = {"linked", "identity.events", "alerts", "deadletter", "stats", "quality"}
    elif principal == "console":
        # evidence shown to an authorised operator; dead letters for `reglink deadletter`
        reads = {"alerts", "decisions", "audit", "linked", "identity.events", "deadletter",
                 "stats", "quality"} | {f"{s}.raw" for s in SOURCES}
        writes = {"decisions", "audit"}
    elif principal == "reader":
        reads = {"alerts", "stats", "quality"}  # counts only
    if op == "produce":
        return topic in writes
    if op == "fetch":
        return topic in reads
    if op == "describe":
        return topic in reads | writes
    return False  # create, delete, alter_configs: admin only


def allowed_group(principal: str, group: str, app_id: str) -> bool:
    return principal == "admin" or (principal == "worker" and group.startswith(app_id)) or (
        principal == "reader" and group.startswith("reader."))


# --- probes --------------------------------------------------------------------------------
class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.text.append(record.getMessage())


def _login_failure(cap: _Capture) -> str | None:
    """Why the client could not connect, from kafka-python's log (it retries internally and
    surfaces only a bootstrap timeout): a SASL failure, or the broker closing a client that
    did not authenticate."""
    joined = "\n".join(cap.text)
    if "SaslAuthenticationFailedError" in joined:
        return "SaslAuthenticationFailedError"
    if "socket disconnected" in joined:
        return "BrokerClosedUnauthenticated"
    return None


def _client_kwargs(s, principal: str) -> dict:
    if principal == "anonymous":
        return {}
    if principal == "wrong-password":
        return {**kafka_auth.kafka_python_kwargs(s, "reader"),
                "sasl_plain_password": "not-the-password"}
    return kafka_auth.kafka_python_kwargs(s, principal)


class Clients:
    """One admin client, producer and raw-fetch path per principal (reused across topics)."""

    def __init__(self, s, principal: str) -> None:
        from kafka import KafkaProducer
        from kafka.admin import KafkaAdminClient

        self.s, self.principal = s, principal
        kw = _client_kwargs(s, principal)
        self.admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap,
                                      request_timeout_ms=5000, **kw)
        self.producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, max_block_ms=5000,
                                      acks="all", **kw)

    def close(self) -> None:
        self.producer.close(timeout=2)
        self.admin.close()

    def fetch_error(self, topic: str) -> int:
        from kafka.protocol.consumer.fetch import FetchRequest

        part = FetchRequest.FetchTopic.FetchPartition(
            partition=0, fetch_offset=0, partition_max_bytes=1 << 16, log_start_offset=-1,
            current_leader_epoch=-1)
        req = FetchRequest(replica_id=-1, max_wait_ms=10, min_bytes=0, max_bytes=1 << 16,
                           isolation_level=0, session_id=0, session_epoch=-1,
                           topics=[FetchRequest.FetchTopic(topic=topic, partitions=[part])],
                           forgotten_topics_data=[], rack_id="", max_version=12)
        resp = self.admin._manager.run(self.admin._manager.send, req, 1)
        if resp.error_code:
            return resp.error_code
        return next(p.error_code for t in resp.responses for p in t.partitions)


def _error_name(code: int) -> str:
    import kafka.errors as Errors

    return Errors.for_code(code).__name__


def run_topic_op(c: Clients, topic: str, op: str) -> str:
    """'allowed' or the error class name."""
    from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    retention = next((str(t.retention_ms) for t in topic_specs(c.s)
                      if c.s.topic(t.name) == topic), "86400000")  # the value it has already
    try:
        if op == "produce":  # a fresh producer: kafka-python keeps earlier topic failures
            from kafka import KafkaProducer

            p = KafkaProducer(bootstrap_servers=c.s.kafka_bootstrap, max_block_ms=5000,
                              acks="all", **_client_kwargs(c.s, c.principal))
            try:
                p.send(topic, key=b"deny-matrix", value=b"{}").get(timeout=10)
            finally:
                p.close(timeout=2)
        elif op == "fetch":
            code = c.fetch_error(topic)
            return "allowed" if code == 0 else _error_name(code)
        elif op == "describe":
            (d,) = c.admin.describe_topics([topic])
            return "allowed" if d["error_code"] == 0 else _error_name(d["error_code"])
        elif op == "create":
            try:
                c.admin.create_topics([NewTopic(topic, 1, 1)])
            except TopicAlreadyExistsError:
                pass  # authorised: the broker got past the ACL check
        elif op == "delete":
            c.admin.delete_topics([topic])
        elif op == "alter_configs":
            res = ConfigResource(ConfigResourceType.TOPIC, topic,
                                 configs={"retention.ms": (AlterConfigOp.SET, retention)})
            out = c.admin.alter_configs([res], incremental=True, raise_on_unknown=False)
            for per_type in out.values():
                for err in per_type.values():
                    name = _error_of(err)
                    if name:
                        return name
        else:  # pragma: no cover
            raise ValueError(op)
        return "allowed"
    except KafkaError as exc:
        return _classify(exc)
    except Exception as exc:  # noqa: BLE001 - a non-Kafka error is a finding, report it
        return f"unexpected:{type(exc).__name__}:{exc}"


def _classify(exc: BaseException) -> str:
    """The error's class name; for a generic KafkaError that wraps a broker error (kafka-python
    reports a refused InitProducerId of the idempotent producer like that), the wrapped one."""
    name = type(exc).__name__
    if name in AUTH_ERRORS:
        return name
    m = re.search(r"\b(\w+AuthorizationFailedError|SaslAuthenticationFailedError)\b", str(exc))
    return m.group(1) if m else name


def _error_of(value) -> str | None:
    """The error class name in an admin result entry, or None when it is a success."""
    if isinstance(value, str):  # alter_configs: '[Error 29] TopicAuthorizationFailedError: ...'
        m = re.match(r"\[Error (-?\d+)\] (\w+)", value)
        return m.group(2) if m and m.group(1) != "0" else None
    if isinstance(value, type) and issubclass(value, BaseException):
        return None if getattr(value, "errno", 1) == 0 else value.__name__
    if isinstance(value, BaseException):
        return None if getattr(value, "errno", 1) == 0 else type(value).__name__
    if isinstance(value, dict) and value.get("error_code"):
        return _error_name(value["error_code"])
    return None


def run_group_op(c: Clients, group: str) -> str:
    from kafka.errors import CoordinatorNotAvailableError, KafkaError

    deadline = time.monotonic() + 20  # the offsets topic is created on first use
    while True:
        try:
            (d,) = c.admin.describe_groups([group])
            code = d.get("error_code", 0) if isinstance(d, dict) else getattr(d, "error_code",
                                                                               0)
            return "allowed" if not code else _error_name(code)
        except CoordinatorNotAvailableError:
            if time.monotonic() > deadline:
                return "CoordinatorNotAvailableError"
            time.sleep(0.5)
        except KafkaError as exc:
            return _classify(exc)


def run_cluster_op(c: Clients, op: str) -> str:
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourcePatternFilter,
        ResourceType,
    )
    from kafka.errors import KafkaError

    try:
        if op == "describe_acls":
            c.admin.describe_acls(ACLFilter(
                principal=None, host="*", operation=ACLOperation.ANY,
                permission_type=ACLPermissionType.ANY,
                resource_pattern=ResourcePatternFilter(ResourceType.ANY, None,
                                                       ACLResourcePatternType.ANY)))
        elif op == "grant_self_all":  # privilege escalation attempt
            res = c.admin.create_acls([ACL(
                principal=f"User:{c.principal}", host="*", operation=ACLOperation.ALL,
                permission_type=ACLPermissionType.ALLOW,
                resource_pattern=ResourcePattern(ResourceType.TOPIC, "deny-matrix-probe",
                                                 ACLResourcePatternType.LITERAL))])
            if res.get("failed"):
                err = res["failed"][0]
                if isinstance(err, tuple):
                    err = next(e for e in err if isinstance(e, BaseException)
                               or isinstance(e, type) and issubclass(e, BaseException))
                return err.__name__ if isinstance(err, type) else type(err).__name__
        elif op == "create_topic_new":
            from kafka.admin import NewTopic

            c.admin.create_topics([NewTopic(f"deny-matrix-new-{c.principal}", 1, 1)])
        return "allowed"
    except KafkaError as exc:
        return _classify(exc)


def _unauthenticated(s, principal: str, what: str) -> str:
    """An unauthenticated or wrong-password client trying one operation: it never gets
    past the broker's authentication, whichever client the operation needs."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    cap = _Capture()
    logger = logging.getLogger("kafka")
    old = logger.level, logger.propagate
    logger.addHandler(cap)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    kw = dict(bootstrap_servers=s.kafka_bootstrap, **_client_kwargs(s, principal))
    wait_ms = 1500 if principal == "wrong-password" else 600  # let the SASL answer arrive
    try:
        if what == "produce":
            p = KafkaProducer(max_block_ms=wait_ms, bootstrap_timeout_ms=wait_ms, **kw)
            p.send(s.topic("alerts"), b"x").get(timeout=2)
            p.close(timeout=1)
        elif what == "fetch":
            c = KafkaConsumer(s.topic("alerts"), bootstrap_timeout_ms=wait_ms,
                              consumer_timeout_ms=300, **kw)
            list(c)
            c.close()
        else:
            a = KafkaAdminClient(bootstrap_timeout_ms=wait_ms, request_timeout_ms=2000, **kw)
            a.list_topics()
            a.close()
        return "allowed"
    except KafkaError:
        return _login_failure(cap) or "unexplained-failure"
    finally:
        logger.removeHandler(cap)
        logger.setLevel(old[0])
        logger.propagate = old[1]


# --- the test ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def matrix_settings(secure_stack):
    """Topics and ACLs under a prefix of their own, so the probes' writes touch nothing else."""
    s = secure_stack.model_copy(update={"topic_prefix": "dm.", "app_id": "dm-worker",
                                        "redis_prefix": "dm:"})
    create_topics(s)
    client = admin_client(s)
    try:
        kafka_auth.apply_acls(s, client)
    finally:
        client.close()
    return s


def test_kafka_deny_matrix(matrix_settings, tmp_path_factory) -> None:
    s = matrix_settings
    topics = [s.topic(t.name) for t in topic_specs(s)]
    principals = kafka_auth.kafka_principals()
    groups = [s.app_id, "reader.downstream", "console", "other-group"]
    results: list[dict] = []
    wrong: list[str] = []

    def record(principal, resource, op, want: bool, got: str) -> None:
        ok = (got == "allowed") if want else (got in AUTH_ERRORS)
        results.append({"principal": principal, "resource": resource, "op": op,
                        "expected": "allow" if want else "deny", "got": got})
        if not ok:
            wrong.append(f"{principal} {op} {resource}: expected "
                         f"{'allow' if want else 'an auth error'}, got {got}")

    scratch = s.topic("scratch")
    for principal in principals:
        c = Clients(s, principal)
        try:
            for topic in topics:
                for op in TOPIC_OPS:
                    if principal == "admin" and op == "delete":
                        continue  # the super user's delete is tried on a scratch topic below
                    record(principal, topic, op, allowed_topic_op(principal, topic.removeprefix(
                        s.topic_prefix), op), run_topic_op(c, topic, op))
            for group in groups:
                record(principal, f"group:{group}", "describe_group",
                       allowed_group(principal, group, s.app_id), run_group_op(c, group))
            for op in ("describe_acls", "grant_self_all", "create_topic_new"):
                if principal == "admin" and op != "describe_acls":
                    continue
                record(principal, "cluster", op, principal == "admin", run_cluster_op(c, op))
            if principal == "admin":
                from kafka.admin import NewTopic

                c.admin.create_topics([NewTopic(scratch, 1, 1)])
                time.sleep(0.5)
                record(principal, scratch, "delete", True, run_topic_op(c, scratch, "delete"))
        finally:
            c.close()

    for principal in ("anonymous", "wrong-password"):
        for topic in topics:
            for op in TOPIC_OPS:
                what = op if op in ("produce", "fetch") else "admin"
                record(principal, topic, op, False, _unauthenticated(s, principal, what))
        for group in groups:
            record(principal, f"group:{group}", "describe_group", False,
                   _unauthenticated(s, principal, "admin"))

    counts = Counter((r["expected"], r["got"] == "allowed") for r in results)
    denied_by = Counter(r["got"] for r in results if r["got"] != "allowed")
    summary = {"combinations": len(results),
               "allowed_as_expected": counts[("allow", True)],
               "denied_as_expected": sum(1 for r in results
                                         if r["expected"] == "deny" and r["got"] in AUTH_ERRORS),
               "wrong": len(wrong), "denied_by": dict(denied_by),
               "principals": len(principals) + 2, "topics": len(topics)}
    out = tmp_path_factory.getbasetemp() / "deny-matrix.json"
    out.write_text(json.dumps({"summary": summary, "results": results}, indent=1))
    print("\ndeny matrix:", json.dumps(summary))
    assert not wrong, "\n".join(wrong[:40])
    assert summary["denied_as_expected"] > summary["allowed_as_expected"] > 50


# --- Redis -----------------------------------------------------------------------------------
REDIS_OPS = {  # name -> (command args with {k} = a key, read-only?)
    "get": (("GET", "{k}s"), True),
    "mget": (("MGET", "{k}s"), True),
    "set": (("SET", "{k}s", "v"), False),
    "del": (("DEL", "{k}gone"), False),
    "sadd": (("SADD", "{k}set", "m"), False),
    "smembers": (("SMEMBERS", "{k}set"), True),
    "scard": (("SCARD", "{k}set"), True),
    "zadd": (("ZADD", "{k}z", "1", "m"), False),
    "zrangebyscore": (("ZRANGEBYSCORE", "{k}z", "-inf", "+inf"), True),
    "incr": (("INCR", "{k}n"), False),
    "keys": (("KEYS", "*"), True),
    "scan": (("SCAN", "0"), True),
    "hset": (("HSET", "{k}h", "f", "v"), False),  # the blocking index's bucket hashes
    "hget": (("HGET", "{k}h", "f"), True),
    "lpush": (("LPUSH", "{k}l", "v"), False),  # a data command no application user has
    # a script may touch only what its user may: the worker's Lua script on its own keys
    "eval": (("EVAL", "return redis.call('GET', KEYS[1])", "1", "{k}s"), False),
    "config_get": (("CONFIG", "GET", "dir"), True),
    "acl_list": (("ACL", "LIST"), True),
    "flushall": (("FLUSHALL",), False),
    "shutdown": (("SHUTDOWN", "NOSAVE"), False),
}
WORKER_CMDS = set(kafka_auth.REDIS_WORKER_COMMANDS)
CONSOLE_CMDS = set(kafka_auth.REDIS_CONSOLE_COMMANDS)


def redis_allowed(user: str, op: str, own_key: bool) -> bool:
    if user == "admin":
        return True
    if op in ("keys", "scan", "config_get", "acl_list", "flushall", "shutdown", "lpush"):
        return False
    if user == "worker":
        return own_key
    if user == "console":
        return own_key and REDIS_OPS[op][1]
    return False


def test_redis_deny_matrix(secure_stack) -> None:
    import redis

    s = secure_stack
    creds = kafka_auth.load_credentials(s)
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # No client-side retries: a refused AUTH is an answer to record, not an outage to ride
    # out (redis-py retries connection errors, AuthenticationError among them, with backoff:
    # ~4 s per command for the wrong password, minutes for the whole matrix).
    base = dict(host="127.0.0.1", port=s.redis_port, socket_timeout=5,
                retry=Retry(NoBackoff(), 0))
    users = {"admin": creds["redis"]["admin"], "worker": creds["redis"]["worker"],
             "console": creds["redis"]["console"], "default (no AUTH)": None,
             "wrong-password": "nope"}
    wrong, rows = [], Counter()
    for user, password in users.items():
        if password is None:
            client = redis.Redis(**base)
        else:
            name = "worker" if user == "wrong-password" else user
            client = redis.Redis(username=name, password=password, **base)
        for own_key in (True, False):
            prefix = s.redis_prefix if own_key else "elsewhere:"
            for op, (args, _ro) in REDIS_OPS.items():
                if user == "admin" and op in ("flushall", "shutdown"):
                    continue  # would take the test stack down; admin is +@all
                want = redis_allowed(user, op, own_key) and user in ("admin", "worker",
                                                                     "console")
                cmd = [a.format(k=prefix) for a in args]
                try:
                    client.execute_command(*cmd)
                    got = "allowed"
                except redis.exceptions.NoPermissionError:
                    got = "NOPERM"
                except redis.exceptions.AuthenticationError as exc:
                    got = "WRONGPASS" if "WRONGPASS" in str(exc) or "invalid" in str(exc) \
                        else "NOAUTH"
                except redis.exceptions.ResponseError as exc:
                    got = "NOAUTH" if "NOAUTH" in str(exc) else f"error:{exc}"
                ok = got == "allowed" if want else got in ("NOPERM", "NOAUTH", "WRONGPASS")
                rows[("allow" if want else "deny", got)] += 1
                if not ok:
                    wrong.append(f"redis {user} {op} {'own' if own_key else 'other'} key: "
                                 f"expected {'allow' if want else 'deny'}, got {got}")
        client.close()
    print("\nredis deny matrix:", {f"{k[0]}/{k[1]}": v for k, v in rows.items()},
          "total", sum(rows.values()))
    assert not wrong, "\n".join(wrong)
