"""Security fixtures: a dedicated kafka_security=scram stack (own ports, own state dir, own
credentials) apart from the shared stack -- the deny matrix creates and probes freely there;
started once per session and stopped at the end. (The shared stack runs scram too, by default;
tests/security/test_plaintext_mode.py starts a plaintext one.)"""

from __future__ import annotations

import pytest
from streamkit import own_stack, stack_ports

from reglink.core.settings import Settings, load_settings

SECURE_PORTS = stack_ports(21092, 21379)  # + REGLINK_TEST_PORT_OFFSET


@pytest.fixture(scope="session")
def secure_stack(tmp_path_factory) -> Settings:
    s = load_settings(state_dir=str(tmp_path_factory.mktemp("securestack")),
                      kafka_security="scram", hmac_key="secure-test-key", idle_timeout_s=3.0,
                      **SECURE_PORTS)
    with own_stack(s):  # a stack that cannot start fails the tests (never skips)
        yield s
