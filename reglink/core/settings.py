"""One typed, frozen settings object, built once at the entry point and passed down.

Values come from (highest first): explicit overrides, ``REGLINK_*`` environment variables,
a settings file (``REGLINK_CONFIG`` or ``--config``; JSON or ``KEY=VALUE`` lines), defaults.
Nothing here runs at import time: call :func:`load_settings`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from reglink.core.errors import ConfigError

DEV_HMAC_KEY = "reglink-dev-key-change-me"
DEV_CONSOLE_SECRET = "reglink-console-dev-secret"

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

#: A per-source setting: seconds by source name, written ``residence=93600,job=7200``.
PerSource = Annotated[dict[str, float], NoDecode]


def _per_source(value: Any) -> Any:
    """``"residence=93600, job=7200"`` (or a JSON object, or a mapping) as a mapping of
    source name to non-negative seconds."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            value = json.loads(text)
        else:
            value = {}
            for item in filter(None, (i.strip() for i in text.split(","))):
                name, sep, seconds = item.partition("=")
                if not sep or not name.strip():
                    raise ValueError(f"{item!r} is not source=seconds "
                                     "(e.g. residence=93600,job=7200)")
                value[name.strip()] = seconds.strip()
    if not isinstance(value, dict):
        return value
    out = {}
    for name, seconds in value.items():
        try:
            number = float(seconds)
        except (TypeError, ValueError):
            number = float("nan")
        if not number >= 0:
            raise ValueError(f"{name}: seconds must be a number >= 0, not {seconds!r}")
        out[str(name)] = number
    return out


def _local_port(address: str, default: int) -> int | None:
    """The port of ``address`` (``host:port`` or a URL) if its host is this machine."""
    parts = urlsplit(address if "//" in address else f"//{address}")
    if parts.hostname not in LOCAL_HOSTS:
        return None
    try:
        return parts.port or default
    except ValueError:  # not a number: pydantic or the client reports the address itself
        return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REGLINK_", frozen=True, extra="ignore")

    # --- wiring -------------------------------------------------------------------------
    topic_prefix: str = "reglink."
    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "reglink:"
    app_id: str = "reglink-worker"
    source_partitions: int = Field(1, ge=1)
    derived_partitions: int = Field(1, ge=1)
    state_dir: Path = Path(".reglink")
    # A local endpoint is one setting: the port alone implies the client address
    # (127.0.0.1:<kafka_port>, redis://127.0.0.1:<redis_port>/0), a local address alone implies
    # the port, and a port that contradicts a local address is refused. kafka_controller_port
    # defaults to kafka_port + 1.
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    redis_port: int = 6379
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in containers, so Prometheus can scrape
    worker_metrics_port: int = 9108
    connector_metrics_port: int = 9109
    connector_metrics: bool = False  # serve connector metrics on connector_metrics_port

    # --- security (docs/security.md) ---------------------------------------------------------
    # scram (default): Kafka SASL/SCRAM-SHA-512 + ACLs, one principal per role, and Redis ACL
    # users (default user off). plaintext: no authentication, only as an explicit opt-in
    # (REGLINK_KAFKA_SECURITY=plaintext). See reglink/kafka_auth.py.
    kafka_security: Literal["plaintext", "scram"] = "scram"
    # {"kafka": {principal: password}, "redis": {user: password}}; default
    # <state_dir>/credentials.json, written (mode 0600) by the first `stack up` in scram mode.
    kafka_credentials_file: Path | None = None
    # Override the role's principal: a deployed process gets only its own secret.
    kafka_username: str | None = None
    kafka_password: SecretStr | None = None
    # TLS on top of scram (REGLINK_KAFKA_TLS=1): the broker port speaks SASL_SSL; `stack up`
    # makes a private CA and a broker certificate in <state_dir>/tls/. Clients trust
    # kafka_ssl_cafile (default <state_dir>/tls/ca.pem) and check the broker's host name.
    kafka_tls: bool = False
    kafka_ssl_cafile: Path | None = None
    # Redis over TLS too (REGLINK_REDIS_TLS=1, needs kafka_tls: same CA and server certificate);
    # clients then use rediss:// and trust kafka_ssl_cafile.
    redis_tls: bool = False

    # --- review console (reglink console) -------------------------------------------------
    console_host: str = "127.0.0.1"
    console_port: int = 8088
    console_users_file: Path | None = None  # JSON {user: {role, password_hash}}; see docs
    console_secret: SecretStr = SecretStr(DEV_CONSOLE_SECRET)  # signs session cookies
    console_dev_secret: bool = False  # let the console start with the default secret (dev)
    console_tz: str = "+08:00"  # the zone the console shows every time in (offset or IANA)
    dismissal_suppress_s: int = 90 * 86400  # a dismissed (person, watch entry) pair stays quiet
    # Priorities (comma-separated) of the watchlist matches whose second reviewer decides
    # blind, without seeing the first decision (reglink.core.rules.decisions.blind); ""
    # turns it off.
    blind_review_priorities: str = "high"

    # --- privacy ------------------------------------------------------------------------
    hmac_key: SecretStr = SecretStr(DEV_HMAC_KEY)
    # `reglink purge`: identities with no record for this many days (no open stay, no alert
    # under review) are deleted from the identity store (docs/security.md)
    purge_after_days: int = Field(180, ge=0)

    # --- rules (docs/contract.md §2); durations in seconds ------------------------------
    grace_rental_s: int = 3 * 86400
    grace_job_s: int = 3 * 86400
    grace_hotel_s: int = 30 * 86400
    grace_deregistration_s: int = 14 * 86400  # stale_registration: superseded -> deregistered
    # The watermark (docs/contract.md §2.1): each event source's allowed lateness and idle
    # timeout; *_by_source overrides the default for the sources it names, e.g. a residence
    # registry that uploads once a night: lateness_s_by_source=residence=93600 and
    # idle_timeout_s_by_source=residence=93600 (docs/reliability.md, "A source that lags").
    lateness_s: int = 3600
    lateness_s_by_source: PerSource = Field(default_factory=dict)
    idle_timeout_s: float = 300.0
    idle_timeout_s_by_source: PerSource = Field(default_factory=dict)
    episode_gap_s: int = 86400
    rule_version: str = "2026.11-1"
    quality_every_s: float = 60.0  # a source quality report is sent at most this often

    # --- matching -----------------------------------------------------------------------
    link_threshold: float = Field(0.90, ge=0.0, le=1.0)
    watchlist_threshold: float = Field(0.99, ge=0.0, le=1.0)
    # A watch entry names no one it cannot tell apart from another identity at the watchlist
    # threshold (reglink.core.rules.watchlist). Off, every identity at the threshold is named: the
    # matching benchmark (benchmarks/matching/watchlist.py) and a unit test compare the two.
    watchlist_ambiguity_guard: bool = True
    # The Fellegi-Sunter model file the matcher weighs with (`reglink train --out` writes one);
    # unset: the shipped matchers/models/fs-zh.json.
    model: Path | None = None

    @field_validator("lateness_s_by_source", "idle_timeout_s_by_source", mode="before")
    @classmethod
    def _read_per_source(cls, value: Any) -> Any:
        return _per_source(value)

    def lateness_for(self, source: str) -> float:
        """The allowed lateness of ``source`` (seconds)."""
        return self.lateness_s_by_source.get(source, float(self.lateness_s))

    def idle_timeout_for(self, source: str) -> float:
        """The idle timeout of ``source`` (processing-time seconds)."""
        return self.idle_timeout_s_by_source.get(source, self.idle_timeout_s)

    @model_validator(mode="before")
    @classmethod
    def _one_setting_per_endpoint(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for port_name, address_name, address_of, default in (
                ("kafka_port", "kafka_bootstrap", "127.0.0.1:{}".format, 9092),
                ("redis_port", "redis_url", "redis://127.0.0.1:{}/0".format, 6379)):
            port, address = data.get(port_name), data.get(address_name)
            if address is None:
                if port is not None:
                    data[address_name] = address_of(port)
                continue
            implied = next((p for a in str(address).split(",")
                            if (p := _local_port(a.strip(), default)) is not None), None)
            if implied is None:
                continue
            if port is None:
                data[port_name] = implied
            elif str(port) != str(implied):
                shown = re.sub(r"//[^@/]*@", "//***@", str(address))  # no password shown
                raise ValueError(
                    f"REGLINK_{port_name.upper()}={port} but REGLINK_{address_name.upper()}="
                    f"{shown} names port {implied}: set only REGLINK_{port_name.upper()} (it "
                    f"implies the address), or make the two agree")
        if data.get("kafka_controller_port") is None and data.get("kafka_port") is not None:
            data["kafka_controller_port"] = int(data["kafka_port"]) + 1
        return data

    @model_validator(mode="after")
    def _tls_needs_scram(self) -> Settings:
        if self.kafka_tls and self.kafka_security != "scram":
            raise ValueError("kafka_tls=true needs kafka_security=scram (TLS is offered on "
                             "top of SASL/SCRAM only)")
        if self.redis_tls and not self.kafka_tls:
            raise ValueError("redis_tls=true needs kafka_tls=true (and kafka_security=scram): "
                             "Redis uses the stack's CA and server certificate")
        return self

    @property
    def uses_dev_key(self) -> bool:
        return self.hmac_key.get_secret_value() == DEV_HMAC_KEY

    def to_env(self) -> dict[str, str]:
        """These settings as ``REGLINK_*`` variables, to hand to a child process."""
        env = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, dict):  # a per-source setting, as it is written
                value = ",".join(f"{k}={v:g}" for k, v in value.items())
            env[f"REGLINK_{name.upper()}"] = str(value)
        return env

    def topic(self, name: str) -> str:
        """Full topic name, e.g. ``topic('hotel.raw') -> 'reglink.hotel.raw'``."""
        return f"{self.topic_prefix}{name}"


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc.strerror}") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"settings file {path} is not valid JSON: {exc}") from None
        return {k.lower().removeprefix("reglink_"): v for k, v in data.items()}
    out: dict[str, Any] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out[key.strip().lower().removeprefix("reglink_")] = value.strip().strip('"')
    return out


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings once. Environment beats the file; explicit overrides beat both."""
    import os

    file_values: dict[str, Any] = {}
    config_file = config_file or os.environ.get("REGLINK_CONFIG")
    if config_file:
        file_values = _read_file(Path(config_file))
    env_names = {k[len("REGLINK_"):].lower() for k in os.environ if k.startswith("REGLINK_")}
    merged = {k: v for k, v in file_values.items() if k not in env_names}
    merged.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**merged)
    except ValidationError as exc:  # one clear line per problem, without pydantic's framing
        problems = "; ".join(
            (f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from None
    except Exception as exc:
        raise ConfigError(f"invalid settings: {exc}") from None
