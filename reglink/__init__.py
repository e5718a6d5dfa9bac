"""reglink: cross-registry person matching on a stream.

Layout (the architecture):

* ``matchers/``   pure core: normalise -> candidates -> compare -> decide, identity stores.
* ``reglink/core/rules`` pure core: event-time watermark and the two alert rules.
* ``reglink/core/pipeline.py`` glues the core together; no Kafka, no Redis inside.
* ``streams/``    thin shell #1: the faust worker.
* ``reglink/replay.py`` thin shell #2: one-process replay with the embedded store.
* ``connectors/`` validate input and publish it to Kafka (dead-letter on failure).
"""

__version__ = "0.1.0"
