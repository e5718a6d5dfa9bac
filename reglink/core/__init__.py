"""The pure core: the contract, settings, the source registry, topics, the pipeline (one
validated record in, output messages out), its unit of work and outbox, and the alert rules.
No Kafka, no Redis, no web framework in here (``tests/unit/test_layering.py``)."""
