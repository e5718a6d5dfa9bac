"""The local stack refuses a port it cannot bind, and says why; a failed start shows the
log's first error, not only its shutdown lines. No services: plain sockets on loopback."""

from __future__ import annotations

import socket

import pytest

from reglink.core.errors import StackError
from reglink.core.settings import load_settings
from reglink.devstack import stack


def _paths(tmp_path):
    return stack._Paths(tmp_path)  # noqa: SLF001


def test_a_listening_port_is_refused_as_in_use(tmp_path):
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        reason = stack._port_taken_reason(port, _paths(tmp_path))  # noqa: SLF001
    assert reason and f"port {port} is in use" in reason


def test_a_port_held_by_a_client_connection_is_refused(tmp_path):
    """The failure a fixed test port inside the ephemeral range meets: nothing listens there,
    but a client socket's local end is that port, so the broker cannot bind it."""
    with socket.socket() as srv, socket.socket() as cli:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        cli.connect(srv.getsockname())
        held = cli.getsockname()[1]  # the client's ephemeral local port
        conn, _ = srv.accept()
        with conn:
            assert not stack._port_open(held)  # noqa: SLF001 - nothing listens there
            reason = stack._port_taken_reason(held, _paths(tmp_path))  # noqa: SLF001
    assert reason and "cannot be bound" in reason
    lo_hi = stack._ephemeral_range()  # noqa: SLF001
    if lo_hi and lo_hi[0] <= held <= lo_hi[1]:
        assert "ephemeral range" in reason


def test_a_free_port_is_accepted(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert stack._port_taken_reason(port, _paths(tmp_path)) is None  # noqa: SLF001


def test_start_kafka_refuses_a_held_port_before_spawning(tmp_path, monkeypatch):
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        s = load_settings(state_dir=str(tmp_path), kafka_port=port,
                          kafka_controller_port=port + 1,
                          kafka_bootstrap=f"127.0.0.1:{port}")
        monkeypatch.setattr(stack, "_spawn", lambda *a, **k: pytest.fail("spawned"))
        with pytest.raises(StackError, match=f"port {port} is in use"):
            stack._start_kafka(s, stack._Paths(tmp_path))  # noqa: SLF001


def test_the_log_excerpt_leads_with_the_first_error(tmp_path):
    log = tmp_path / "kafka.log"
    lines = ["INFO starting"] * 5 + [
        "ERROR [KafkaServer id=1] Fatal error during KafkaServer startup.",
        "org.apache.kafka.common.KafkaException: Socket server failed to bind to "
        "127.0.0.1:24093: Address already in use.",
    ] + [f"INFO shutting down {i}" for i in range(30)]
    log.write_text("\n".join(lines) + "\n")
    text = stack._tail(log)  # noqa: SLF001
    assert text.splitlines()[0].strip().startswith("ERROR [KafkaServer id=1] Fatal error")
    assert "Address already in use" in text
    assert text.splitlines()[-1].strip() == "INFO shutting down 29"
    # no error before the last lines: only the last lines
    log.write_text("\n".join(f"INFO {i}" for i in range(40)) + "\n")
    assert stack._tail(log).splitlines()[0].strip() == "INFO 25"  # noqa: SLF001
