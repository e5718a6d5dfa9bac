"""reglink: cross-registry person matching on a stream.

Layout (docs/architecture.md), imports going down only:

* ``reglink.cli``        the command line: the one composition root.
* ``reglink.devstack``   local Kafka + Redis, compose settings, TLS, the demo.
* shells                 ``streams/`` (faust worker), ``connectors/`` (validate and publish),
                         ``reglink.replay``, ``rebuild``, ``purge``, ``person``, ``console``.
* ``reglink.core``       contract, settings, sources, topics, pipeline, unit of work, outbox,
                         and the alert rules (``reglink.core.rules``).
* ``reglink.stores``     the key-value stores, the state schema, the identity store.
* ``matchers/``          normalise -> candidates -> comparators -> decide (pure).
"""

import matchers as _matchers  # noqa: F401  (installs the compiled core first, if built)

__version__ = "0.1.0"
