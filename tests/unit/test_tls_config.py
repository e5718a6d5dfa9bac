"""kafka_tls without a stack: settings, client options (kafka-python, faust/aiokafka), the CA
and broker certificate files (real openssl), and the state dir's mode marker."""

from __future__ import annotations

import ssl
import stat
import subprocess

import pytest

from reglink import kafka_auth
from reglink.core.errors import ConfigError, StackError
from reglink.core.settings import load_settings
from reglink.devstack import stack, tls


def _settings(tmp_path, **kw):
    base = dict(state_dir=str(tmp_path / "state"), kafka_security="scram",
                kafka_username="worker", kafka_password="pw-for-test")
    return load_settings(**{**base, **kw})


def test_tls_needs_scram() -> None:
    with pytest.raises(ConfigError, match="kafka_tls=true needs kafka_security=scram"):
        load_settings(kafka_security="plaintext", kafka_tls=True)


def test_redis_tls_needs_kafka_tls() -> None:
    with pytest.raises(ConfigError, match="redis_tls=true needs kafka_tls=true"):
        load_settings(kafka_security="scram", redis_tls=True)


def test_redis_url_over_tls(tmp_path) -> None:
    from urllib.parse import parse_qs, urlsplit

    s = _settings(tmp_path, kafka_tls=True, redis_tls=True,
                  redis_url="redis://127.0.0.1:6399/0",
                  kafka_credentials_file=str(tmp_path / "creds.json"))
    kafka_auth.ensure_credentials(s)
    files, _ = tls.ensure(kafka_auth.tls_dir(s))
    url = urlsplit(kafka_auth.redis_url(s, "worker"))
    assert url.scheme == "rediss" and url.username == "worker" and url.port == 6399
    assert parse_qs(url.query) == {"ssl_ca_certs": [str(files.ca_cert)]}
    # a URL that carries credentials (a deployed process) is switched to TLS too
    given = s.model_copy(update={"redis_url": "redis://worker:pw@10.0.0.5:6379/0"})
    url2 = urlsplit(kafka_auth.redis_url(given, "worker"))
    assert url2.scheme == "rediss" and url2.password == "pw" and url2.hostname == "10.0.0.5"
    no_tls = s.model_copy(update={"redis_tls": False})
    assert kafka_auth.redis_url(no_tls, "worker").startswith("redis://worker:")


def test_tls_from_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("REGLINK_KAFKA_SECURITY", "scram")
    monkeypatch.setenv("REGLINK_KAFKA_TLS", "1")
    monkeypatch.setenv("REGLINK_KAFKA_SSL_CAFILE", str(tmp_path / "ca.pem"))
    s = load_settings()
    assert s.kafka_tls is True and s.kafka_ssl_cafile == tmp_path / "ca.pem"
    # handed to child processes (the worker) unchanged
    env = s.to_env()
    assert env["REGLINK_KAFKA_TLS"] == "True"
    assert env["REGLINK_KAFKA_SSL_CAFILE"] == str(tmp_path / "ca.pem")


def test_kafka_python_kwargs_tls(tmp_path) -> None:
    plain_scram = kafka_auth.kafka_python_kwargs(_settings(tmp_path), "worker")
    assert plain_scram["security_protocol"] == "SASL_PLAINTEXT"
    assert not any(k.startswith("ssl_") for k in plain_scram)

    s = _settings(tmp_path, kafka_tls=True)
    with pytest.raises(ConfigError, match="no CA certificate at .*stack up"):
        kafka_auth.kafka_python_kwargs(s, "worker")
    files, _ = tls.ensure(kafka_auth.tls_dir(s))
    kw = kafka_auth.kafka_python_kwargs(s, "worker")
    assert kw == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                  "sasl_plain_username": "worker", "sasl_plain_password": "pw-for-test",
                  "ssl_cafile": str(files.ca_cert), "ssl_check_hostname": True}
    other = tmp_path / "elsewhere.pem"
    other.write_bytes(files.ca_cert.read_bytes())
    s2 = _settings(tmp_path, kafka_tls=True, kafka_ssl_cafile=str(other))
    assert kafka_auth.kafka_python_kwargs(s2, "worker")["ssl_cafile"] == str(other)


def test_faust_credentials_pick_sasl_ssl(tmp_path) -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    s = _settings(tmp_path, kafka_tls=True)
    tls.ensure(kafka_auth.tls_dir(s))
    creds = kafka_auth.faust_broker_credentials(s, "worker")
    auth = credentials_to_aiokafka_auth(creds)  # what faust hands to aiokafka
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512" and auth["sasl_plain_username"] == "worker"
    ctx = auth["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname is True
    assert len(ctx.get_ca_certs()) == 1  # only the stack's CA, not the system store
    no_tls = credentials_to_aiokafka_auth(
        kafka_auth.faust_broker_credentials(_settings(tmp_path), "worker"))
    assert no_tls["security_protocol"] == "SASL_PLAINTEXT" and no_tls["ssl_context"] is None


def _openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], capture_output=True, text=True,
                          check=True).stdout


def test_ensure_makes_ca_and_broker_cert_with_private_modes(tmp_path) -> None:
    d = tmp_path / "tls"
    files, made = tls.ensure(d)
    assert made == ["CA", "broker certificate"]
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for path in files.private():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in (files.ca_cert, files.broker_cert):
        assert "PRIVATE" not in path.read_text()
    assert files.broker_key.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    text = _openssl("x509", "-in", str(files.broker_cert), "-noout", "-text")
    assert "DNS:localhost, IP Address:127.0.0.1" in text and "TLS Web Server Authentication" in text
    _openssl("verify", "-CAfile", str(files.ca_cert), str(files.broker_cert))
    ks = files.keystore.read_text()  # Kafka PEM keystore: key, broker cert, CA cert
    assert ks.count("BEGIN PRIVATE KEY") == 1 and ks.count("BEGIN CERTIFICATE") == 2
    assert ks.index(files.broker_cert.read_text()) < ks.index(files.ca_cert.read_text())


def test_ensure_reuses_then_renews_what_is_invalid(tmp_path, monkeypatch) -> None:
    d = tmp_path / "tls"
    files, _ = tls.ensure(d)
    ca, broker = files.ca_cert.read_bytes(), files.broker_cert.read_bytes()
    assert tls.ensure(d)[1] == []
    assert files.ca_cert.read_bytes() == ca and files.broker_cert.read_bytes() == broker

    monkeypatch.setattr(tls, "BROKER_DAYS", 1)  # a certificate about to expire
    tls.make_broker_cert(files)
    monkeypatch.undo()
    assert tls.ensure(d)[1] == ["broker certificate"]
    assert files.ca_cert.read_bytes() == ca

    files.ca_key.unlink()  # CA lost: new CA, and the broker cert it no longer signs is renewed
    assert tls.ensure(d)[1] == ["CA", "broker certificate"]
    assert files.ca_cert.read_bytes() != ca
    _openssl("verify", "-CAfile", str(files.ca_cert), str(files.broker_cert))
    assert files.broker_cert.read_text() in files.keystore.read_text()


def test_mode_marker_and_running_broker_mismatch(tmp_path) -> None:
    s_tls = _settings(tmp_path, kafka_tls=True)
    s_scram = _settings(tmp_path)
    assert stack._security_mode(s_tls) == "scram+tls"
    assert stack._security_mode(s_scram) == "scram"
    assert stack._security_mode(load_settings(kafka_security="plaintext")) == "plaintext"
    p = stack._paths(s_tls)
    (p.kafka).mkdir(parents=True)
    (p.kafka / "security.mode").write_text("scram+tls\n")
    stack._check_running_mode(s_tls, p)  # matches: no error
    with pytest.raises(StackError, match="started as scram\\+tls, settings say scram: run "
                                         "`reglink stack down`"):
        stack._check_running_mode(s_scram, p)
