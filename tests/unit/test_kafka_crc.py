"""kafka-python computes the CRC-32C of every record batch it produces (the connectors) and
checks it on every batch it fetches (console, tail, tests); in pure Python unless the
``crc32c`` package is importable (a dependency: benchmarks/publish_crc.py)."""

import os

import kafka.record.util as util


def test_kafka_python_takes_the_c_crc32c():
    assert util.crc32c_c is not None, "crc32c is not installed: pip install -e ."
    assert util.calc_crc32c.__defaults__[0] is util.crc32c_c


def test_the_c_crc32c_agrees_with_kafka_pythons_own():
    assert util.calc_crc32c(memoryview(b"123456789")) == 0xE3069283  # the CRC-32C check value
    for n in (0, 1, 7, 64, 1000, 65537):
        data = memoryview(os.urandom(n))
        assert util.calc_crc32c(data) == util.crc32c_py(data)
