"""kafka_tls: SASL/SCRAM-SHA-512 over TLS (SASL_SSL) on a dedicated stack of its own.

The stack (ports 22092/22093/22379 + REGLINK_TEST_PORT_OFFSET, own state dir) is started with
kafka_security=scram, kafka_tls=true and redis_tls=true; `stack up` makes the private CA and
the server certificate. The tests show: the pipeline works end to end over TLS (connector ->
faust worker, identity store in Redis over TLS -> reader), a client without TLS and a client
that trusts another CA are refused (Kafka and Redis), a wrong password is still an
authentication failure, and the private keys are mode 0600.

Where a client's failure is only a bootstrap timeout (kafka-python retries internally), the
reason is read from the broker's log, matched on the client's own source port.
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import ssl
import stat
import time
from pathlib import Path

import pytest
from streamkit import WorkerProcess, free_port, own_stack, stack_ports

from connectors.publish import run_publish
from reglink import kafka_auth
from reglink.core.settings import Settings, load_settings
from reglink.core.topics import SOURCES
from reglink.devstack import stack, tls
from reglink.replay import run_replay
from reglink.sim.simulate import run_simulate
from reglink.tail import tail_alerts

TLS_PORTS = stack_ports(22092, 22379)  # + REGLINK_TEST_PORT_OFFSET


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory) -> Settings:
    s = load_settings(state_dir=str(tmp_path_factory.mktemp("tlsstack")),
                      kafka_security="scram", kafka_tls=True, redis_tls=True,
                      hmac_key="tls-test-key",
                      idle_timeout_s=3.0, **TLS_PORTS)
    with own_stack(s):  # a stack that cannot start fails the tests (never skips)
        yield s


# --- helpers -------------------------------------------------------------------------------
class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _try_admin(s: Settings, kwargs: dict) -> tuple[Exception | None, list[str]]:
    """Bootstrap a kafka-python admin client with ``kwargs`` and list topics. Returns the
    exception (None on success) and kafka-python's log lines of the attempt."""
    from kafka.admin import KafkaAdminClient

    cap = _Capture()
    logger = logging.getLogger("kafka")
    old = logger.level
    logger.addHandler(cap)
    logger.setLevel(logging.INFO)
    try:
        client = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap, request_timeout_ms=5000,
                                  bootstrap_timeout_ms=5000, **kwargs)
        try:
            client.list_topics()
        finally:
            client.close()
        return None, cap.lines
    except Exception as exc:  # noqa: BLE001 - the failure is what the test looks at
        return exc, cap.lines
    finally:
        logger.removeHandler(cap)
        logger.setLevel(old)


def _client_ports(lines: list[str]) -> set[str]:
    """The local ports kafka-python connected from (``[127.0.0.1:9092<-54321]``)."""
    return {m.group(1) for line in lines for m in re.finditer(r"<-(\d+)\]", line)}


def _broker_log(s: Settings) -> Path:
    return Path(s.state_dir) / "kafka" / "kafka.log"


def _log_mark(s: Settings) -> int:
    """Where the broker log ends now: reasons are read from here on (an ephemeral port an
    earlier test's connection used can come back, with that connection's reason)."""
    return _broker_log(s).stat().st_size


def _broker_reasons(s: Settings, ports: set[str], since: int, timeout: float = 10.0) -> set[str]:
    """The broker's 'Failed authentication' reasons for connections from ``ports``, logged
    after byte ``since`` of the broker log."""
    log = _broker_log(s)
    pat = re.compile(r"Failed authentication with /127\.0\.0\.1 \(channelId=[^-]+-127\.0\.0\.1:"
                     r"(\d+)-\d+\) \((.*?)\) \(org\.apache")
    deadline = time.monotonic() + timeout
    while True:
        with log.open("rb") as fh:
            fh.seek(since)
            text = fh.read().decode(errors="replace")
        reasons = {m.group(2) for m in pat.finditer(text) if m.group(1) in ports}
        if reasons or time.monotonic() > deadline:
            return reasons
        time.sleep(0.5)


def _handshake(s: Settings, cafile: Path, server_hostname: str) -> dict:
    """A bare TLS handshake with the broker port; returns the peer certificate."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", s.kafka_port), timeout=5) as sock:
        with ctx.wrap_socket(sock, server_hostname=server_hostname) as tsock:
            return tsock.getpeercert()


# --- (1) end to end over SASL_SSL ----------------------------------------------------------
def test_connector_worker_reader_end_to_end_over_tls(tls_stack, tmp_path) -> None:
    s = tls_stack.model_copy(update={"topic_prefix": "tls.", "app_id": "tls-worker",
                                     "worker_metrics_port": free_port()})
    stack.create_topics(s)
    admin = stack.admin_client(s)
    try:
        kafka_auth.apply_acls(s, admin)
    finally:
        admin.close()
    sim = tmp_path / "sim"
    run_simulate(persons=40, days=10, start="2026-03-01", seed=7, out_dir=sim)
    replay = run_replay(s, [sim / "events.jsonl"], tmp_path / "replay")
    expected_alerts = {json.loads(line)["alert_id"]
                       for line in (tmp_path / "replay" / "alerts.jsonl").open(encoding="utf-8")}
    replay_person = {r["record_id"]: r["person_id"] for r in map(
        json.loads, (tmp_path / "replay" / "links.jsonl").open(encoding="utf-8"))
        if "record_id" in r}  # watchlist entries are keyed by watch_id
    assert expected_alerts and 20 <= replay.read <= 100, "corpus: a few dozen records"

    published = 0
    for source in SOURCES:  # principal connector-<source>, over SASL_SSL
        summary = run_publish(s, source, [str(sim / f"{source}.jsonl")])
        assert summary.reconciles(), summary.line()
        published += summary.published
    assert published == replay.read - replay.deadlettered
    n_linked = published - sum(1 for _ in (sim / "watchlist.jsonl").open())

    worker = WorkerProcess(s, tmp_path).start()  # faust/aiokafka, principal worker, SASL_SSL
    linked: list[dict] = []
    got: set[str] = set()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and (len(linked) < n_linked
                                               or not expected_alerts <= got):
            assert worker.alive(), worker.tail()
            linked = _read_linked(s)
            out = io.StringIO()  # principal reader (`reglink alerts`)
            tail_alerts(s, as_json=True, from_beginning=True, idle_timeout=2.0, out=out)
            got = {json.loads(line)["alert_id"] for line in out.getvalue().splitlines()}
            time.sleep(1)
    finally:
        worker.stop()
    log = worker.log.read_text(errors="replace")
    assert len({r["record_id"] for r in linked}) == n_linked, log[-3000:]
    assert expected_alerts <= got, f"{len(expected_alerts - got)} alerts missing\n{log[-3000:]}"
    # The stream links the records into the same persons as the offline replay.
    def groups(person_of: dict[str, str]) -> set[frozenset[str]]:
        by: dict[str, set[str]] = {}
        for rid, pid in person_of.items():
            by.setdefault(pid, set()).add(rid)
        return {frozenset(g) for g in by.values()}

    stream_person = {r["record_id"]: r["person_id"] for r in linked}
    assert groups(stream_person) == groups({k: replay_person[k] for k in stream_person})
    # ... and kept its identity store in Redis over TLS
    client = kafka_auth.connect_redis(s, "admin")
    try:
        assert client.connection_pool.connection_class.__name__ == "SSLConnection"
        assert sum(1 for _ in client.scan_iter(match=f"{s.redis_prefix}*")) > n_linked
    finally:
        client.close()
    assert not re.search(r"SSLError|CERTIFICATE_VERIFY|AuthenticationFailed", log), log[-3000:]


def _read_linked(s: Settings) -> list[dict]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(s.topic("linked"), bootstrap_servers=s.kafka_bootstrap,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=1500,
                             **kafka_auth.kafka_python_kwargs(s, "console"))
    try:
        return [json.loads(m.value) for m in consumer]
    finally:
        consumer.close()


# --- (2) no TLS: refused -------------------------------------------------------------------
def test_client_without_tls_is_refused(tls_stack) -> None:
    s = tls_stack
    good = kafka_auth.kafka_python_kwargs(s, "admin")
    assert good["security_protocol"] == "SASL_SSL" and good["ssl_check_hostname"] is True
    exc, _ = _try_admin(s, good)
    assert exc is None, f"control: the TLS client must connect ({exc!r})"
    for name, kwargs in (("SASL_PLAINTEXT, right password",
                          {**good, "security_protocol": "SASL_PLAINTEXT"}),
                         ("PLAINTEXT, no credentials", {})):
        mark = _log_mark(s)
        exc, lines = _try_admin(s, kwargs)
        assert exc is not None, f"{name}: connected to the TLS port without TLS"
        ports = _client_ports(lines)
        assert ports, lines
        assert _broker_reasons(s, ports, mark) == {"SSL handshake failed"}, (name, lines)
        assert not any("Authenticated as" in line for line in lines), (name, lines)


# --- (3) a client that trusts another CA ---------------------------------------------------
def test_client_trusting_another_ca_fails_verification(tls_stack, tmp_path) -> None:
    s = tls_stack
    other = tls.make_ca(tmp_path / "other", common_name="some other CA")
    exc, lines = _try_admin(s, {**kafka_auth.kafka_python_kwargs(s, "admin"),
                                "ssl_cafile": str(other.ca_cert)})
    assert exc is not None
    assert any("CERTIFICATE_VERIFY_FAILED" in line for line in lines), lines
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(s, other.ca_cert, "localhost")
    # faust/aiokafka's context: same verdict with the other CA, success with the stack's
    ok = kafka_auth.ssl_context(s)
    bad = kafka_auth.ssl_context(s.model_copy(update={"kafka_ssl_cafile": other.ca_cert}))
    for ctx, fails in ((ok, False), (bad, True)):
        with socket.create_connection(("127.0.0.1", s.kafka_port), timeout=5) as sock:
            if fails:
                with pytest.raises(ssl.SSLCertVerificationError):
                    ctx.wrap_socket(sock, server_hostname="127.0.0.1")
            else:
                ctx.wrap_socket(sock, server_hostname="127.0.0.1").close()


def test_broker_certificate_names_only_localhost(tls_stack) -> None:
    s = tls_stack
    ca = kafka_auth.ssl_cafile(s)
    cert = _handshake(s, ca, "127.0.0.1")
    assert set(cert["subjectAltName"]) == {("DNS", "localhost"), ("IP Address", "127.0.0.1")}
    _handshake(s, ca, "localhost")
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _handshake(s, ca, "broker.example.org")  # host name checks are on


# --- (4) key files -------------------------------------------------------------------------
def test_private_keys_are_0600_and_reused(tls_stack) -> None:
    s = tls_stack
    d = kafka_auth.tls_dir(s)
    files = tls.TLSFiles(d)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for path in files.private():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert "PRIVATE KEY" in path.read_text()
    assert stat.S_IMODE((Path(s.state_dir) / "kafka" / "server.properties").stat().st_mode) \
        == 0o600
    assert kafka_auth.ssl_cafile(s) == files.ca_cert and "PRIVATE" not in files.ca_cert.read_text()
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    _, made = tls.ensure(d)  # what a later `stack up` does
    assert made == []
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    assert (Path(s.state_dir) / "kafka" / "security.mode").read_text().strip() == "scram+tls"


# --- (5) wrong password over TLS -----------------------------------------------------------
def test_wrong_password_over_tls_is_an_authentication_failure(tls_stack) -> None:
    s = tls_stack
    mark = _log_mark(s)
    exc, lines = _try_admin(s, {**kafka_auth.kafka_python_kwargs(s, "reader"),
                                "sasl_plain_password": "not-the-password"})
    assert exc is not None
    assert any("KafkaSSLTransport" in line for line in lines), lines  # TLS itself worked
    reasons = _broker_reasons(s, _client_ports(lines), mark)
    assert reasons and all("invalid credentials with SASL mechanism SCRAM-SHA-512" in r
                           for r in reasons), (reasons, lines)


# --- Redis over TLS ------------------------------------------------------------------------
def test_redis_needs_tls_and_the_stack_ca(tls_stack, tmp_path) -> None:
    import redis

    s = tls_stack
    url = kafka_auth.redis_url(s, "admin")
    assert url.startswith("rediss://admin:")
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        assert client.ping() is True  # control
    finally:
        client.close()
    plain = "redis://" + url.removeprefix("rediss://").split("?", 1)[0]  # right password
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(plain, socket_timeout=5).ping()
    other = tls.make_ca(tmp_path / "other", common_name="some other CA")
    foreign = kafka_auth.redis_url(
        s.model_copy(update={"kafka_ssl_cafile": other.ca_cert}), "admin")
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED|certificate verify"):
        redis.Redis.from_url(foreign, socket_timeout=5).ping()
    wrong = url.replace(url.split("@", 1)[0], "rediss://admin:not-the-password")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(wrong, socket_timeout=5).ping()


# --- switching TLS on one state dir (runs last: it restarts the module's stack) ------------
def test_switching_tls_needs_a_restart_not_a_new_state_dir(tls_stack, capsys) -> None:
    from reglink.core.errors import StackError

    s = tls_stack
    no_tls = s.model_copy(update={"kafka_tls": False, "redis_tls": False})
    with pytest.raises(StackError, match="run `reglink stack down`"):
        stack.up(no_tls)  # refused while the TLS services run
    mode = Path(s.state_dir) / "kafka" / "security.mode"
    meta = (Path(s.state_dir) / "kafka" / "data" / "meta.properties").read_text()
    try:
        stack.down(s)
        stack.up(no_tls)
        assert mode.read_text().strip() == "scram"
        exc, _ = _try_admin(no_tls, kafka_auth.kafka_python_kwargs(no_tls, "admin"))
        assert exc is None and kafka_auth.kafka_python_kwargs(
            no_tls, "admin")["security_protocol"] == "SASL_PLAINTEXT"
        exc, _ = _try_admin(s, kafka_auth.kafka_python_kwargs(s, "admin"))
        assert exc is not None  # a TLS client to the now plaintext port
        stack.down(no_tls)
    finally:
        stack.up(s)  # back to TLS for the fixture's teardown (and any later test)
    assert mode.read_text().strip() == "scram+tls"
    out = capsys.readouterr().out
    assert "formatted storage" not in out  # same storage, same SCRAM users
    assert (Path(s.state_dir) / "kafka" / "data" / "meta.properties").read_text() == meta
    exc, _ = _try_admin(s, kafka_auth.kafka_python_kwargs(s, "admin"))
    assert exc is None
