"""Normalise -> candidates -> comparators -> decide: the pure matcher.

Importing it installs the compiled core when it is built and current (:mod:`matchers.native`).
"""

from matchers import native as _native

_native.install()
