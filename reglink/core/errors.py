"""One root exception for the project; every message says what to do."""


class ReglinkError(Exception):
    """Base of every error reglink raises on purpose. ``str(err)`` is one clear line."""


class ConfigError(ReglinkError):
    """Settings are missing or invalid."""


class ServiceUnavailable(ReglinkError):
    """Kafka or Redis cannot be reached."""


class StackError(ReglinkError):
    """The local stack could not be started, stopped or inspected."""
