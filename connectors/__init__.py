"""Connectors: read source files, validate against the contract, publish to Kafka.

Never imports the faust app (only `streams/` does); Kafka is imported only inside
:mod:`connectors.publish`.
"""
