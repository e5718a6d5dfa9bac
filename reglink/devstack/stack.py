"""The local stack without Docker: Apache Kafka (KRaft, one node) and Redis (AOF).

This module is the one implementation; ``deploy/stack.sh`` and ``reglink stack`` call it.

* Kafka runs from the Maven Central jars (``deploy/kafka/pom.xml``), cached in
  ``${REGLINK_CACHE:-~/.cache/reglink}/kafka-<version>/libs``, with the generated config in
  ``<state_dir>/kafka/`` (``server.properties``, ``log4j.properties``, ``data/``, ``kafka.log``).
* Redis runs ``redis-server <state_dir>/redis/redis.conf`` (AOF on, data in ``<state_dir>/redis``).
* Both are started in their own session; their pids go to ``<state_dir>/kafka.pid`` and
  ``<state_dir>/redis.pid``, and :func:`down` stops exactly those pids.

A service counts as up only when it *answers*: Kafka an admin ``list_topics`` call, Redis a PING.

``python -m reglink.devstack.stack topics`` waits for Kafka and creates the topics and (scram
mode, the default) their ACLs (used by the Docker Compose ``topics`` service, as ``admin``,
where nothing else of this module runs).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reglink import kafka_auth
from reglink.core.errors import ServiceUnavailable, StackError
from reglink.core.settings import Settings
from reglink.core.topics import topic_specs

log = logging.getLogger(__name__)

KAFKA_UP_TIMEOUT_S = 90.0
REDIS_UP_TIMEOUT_S = 20.0
KAFKA_HEAP = "-Xmx1g"


def _say(msg: str) -> None:
    print(msg, flush=True)


# --- paths ---------------------------------------------------------------------------------
def repo_root() -> Path:
    """The source checkout holding ``deploy/`` (the stack runs from a checkout, not a wheel)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "deploy" / "kafka" / "pom.xml").is_file():
        raise StackError(
            f"deploy/ not found next to {Path(__file__).parent}: run `reglink stack` from a "
            "source checkout installed with `pip install -e .`"
        )
    return root


def kafka_version() -> str:
    """The Kafka version pinned in deploy/kafka/pom.xml (single source of truth)."""
    pom = (repo_root() / "deploy" / "kafka" / "pom.xml").read_text(encoding="utf-8")
    m = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", pom)
    if not m:
        raise StackError("deploy/kafka/pom.xml has no <kafka.version> property")
    return m.group(1)


def cache_dir() -> Path:
    """``$REGLINK_CACHE`` or ``~/.cache/reglink`` (read at call time, not import time)."""
    env = os.environ.get("REGLINK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "reglink"


@dataclass(frozen=True)
class _Paths:
    state: Path

    @property
    def kafka(self) -> Path:
        return self.state / "kafka"

    @property
    def kafka_pid(self) -> Path:
        return self.state / "kafka.pid"

    @property
    def kafka_log(self) -> Path:
        return self.kafka / "kafka.log"

    @property
    def redis(self) -> Path:
        return self.state / "redis"

    @property
    def redis_pid(self) -> Path:
        return self.state / "redis.pid"

    @property
    def redis_log(self) -> Path:
        return self.redis / "redis.log"


def _paths(settings: Settings) -> _Paths:
    return _Paths(Path(settings.state_dir).expanduser().resolve())


# --- processes -----------------------------------------------------------------------------
def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int, marker: str) -> bool:
    """True if ``pid`` runs and (where /proc exists) its command line contains ``marker``."""
    try:  # reap it if it is our own exited child (tests call up/down in one process)
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            if proc.joinpath("stat").read_text().split(") ", 1)[1].startswith("Z"):
                return False
            cmdline = proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode()
            # redis-server rewrites its title while starting: cmdline can be briefly empty
            comm = proc.joinpath("comm").read_text().strip()
            return marker in cmdline or marker.startswith(comm) and bool(comm)
        except (OSError, IndexError):
            return False
    return True


def _running_pid(pidfile: Path, marker: str) -> int | None:
    """The pid from ``pidfile`` if that process still runs; a stale pid file is removed."""
    pid = _read_pid(pidfile)
    if pid is None:
        return None
    if _alive(pid, marker):
        return pid
    pidfile.unlink(missing_ok=True)
    return None


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _port_bindable(port: int, host: str = "127.0.0.1") -> bool:
    """Can a server bind ``host:port`` now? Binds as Kafka and Redis do (SO_REUSEADDR), so a
    listener or a connection whose local end is this port (a client socket given it from
    the ephemeral range) makes it unbindable, while TIME_WAIT leftovers do not."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int] | None:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return None


def _port_taken_reason(port: int, p: _Paths) -> str | None:
    """None if a server can bind ``port``; otherwise why not, in words for the operator."""
    if _port_open(port):
        return (f"port {port} is in use by a process not started from state dir {p.state} "
                "(another checkout or cwd?)")
    if _port_bindable(port):
        return None
    eph = _ephemeral_range()
    hint = (f" (it lies in the kernel's ephemeral range {eph[0]}-{eph[1]}, from which "
            "client connections take their local ports: choose a port below "
            f"{eph[0]})" if eph and eph[0] <= port <= eph[1] else "")
    return f"port {port} cannot be bound: a connection holds it{hint}"


def _bootstrap_open(settings: Settings) -> bool:
    """Cheap pre-check: does any bootstrap server accept TCP connections?"""
    for server in settings.kafka_bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if port.isdigit() and _port_open(int(port), host.strip("[]") or "127.0.0.1"):
            return True
    return False


def _spawn(cmd: list[str], *, logfile: Path, cwd: Path, pidfile: Path) -> int:
    if logfile.exists():  # keep the previous run's log for post-mortems
        logfile.replace(logfile.with_name(logfile.name + ".1"))
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the CLI; Ctrl-C in the shell does not hit it
        )
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def _stop(name: str, pidfile: Path, marker: str, grace_s: float) -> None:
    pid = _running_pid(pidfile, marker)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        _say(f"{name}: not running")
        return
    t0 = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    while time.monotonic() - t0 < grace_s and _alive(pid, marker):
        time.sleep(0.1)
    how = "stopped"
    if _alive(pid, marker):
        os.kill(pid, signal.SIGKILL)
        how = f"killed (no exit {grace_s:g} s after SIGTERM)"
        while time.monotonic() - t0 < grace_s + 10 and _alive(pid, marker):
            time.sleep(0.1)
    pidfile.unlink(missing_ok=True)
    _say(f"{name}: {how} (pid {pid}) in {time.monotonic() - t0:.1f} s")


_FIRST_ERROR = re.compile(r"\b(ERROR|FATAL|Exception|Error:)|# Could not|Address already in use")


def _tail(path: Path, lines: int = 15) -> str:
    """The log's last ``lines`` lines, preceded by its first error lines when they come
    earlier: a broker that fails to bind logs the cause once, then pages of shutdown."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    last = text[-lines:]
    first = next((i for i, line in enumerate(text[:-lines]) if _FIRST_ERROR.search(line)),
                 None)
    head = text[first:first + 4] if first is not None else []
    parts = ["    " + line for line in head]
    if head:
        parts.append("    ...")
    return "\n".join(parts + ["    " + line for line in last])


def _render_text(template: Path, values: dict[str, Any]) -> str:
    try:
        return string.Template(template.read_text(encoding="utf-8")).substitute(values)
    except KeyError as exc:
        raise StackError(f"{template}: unknown placeholder ${{{exc.args[0]}}}") from None


def _render(template: Path, dest: Path, values: dict[str, Any]) -> None:
    _write(dest, _render_text(template, values))


def _write(dest: Path, text: str, secret: bool = False) -> None:
    """Write ``text``; a ``secret`` file (it holds a password) is created with mode 0600."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if secret:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.chmod(dest, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        dest.write_text(text, encoding="utf-8")


def _overlay_properties(base: str, overlay: str,
                        source: str = "kafka_security=scram (deploy/kafka/server-scram.properties)"
                        ) -> str:
    """``base`` with every key that ``overlay`` sets replaced (in place) or appended."""
    def key(line: str) -> str | None:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            return None
        return line.split("=", 1)[0].strip()

    over = {key(line): line for line in overlay.splitlines() if key(line)}
    out, used = [], set()
    for line in base.splitlines():
        k = key(line)
        if k in over:
            out.append(over[k])
            used.add(k)
        else:
            out.append(line)
    extra = [line for k, line in over.items() if k not in used]
    if extra:
        out += ["", f"# --- {source} ---", *extra]
    return "\n".join(out) + "\n"


# --- tools ---------------------------------------------------------------------------------
def _need(tool: str, install_hint: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise StackError(f"`{tool}` not found on PATH: install {install_hint}")
    return path


_JAVA_HINT = "a Java 17+ runtime (Debian/Ubuntu: `sudo apt-get install -y openjdk-17-jre-headless`)"


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def ensure_redis_server() -> str:
    """Path of ``redis-server``; installs it with apt-get when missing and running as root."""
    found = shutil.which("redis-server")
    if found:
        return found
    if not (_is_root() and shutil.which("apt-get")):
        raise StackError(
            "`redis-server` not found: install Redis >= 7 (Debian/Ubuntu: "
            "`sudo apt-get install -y redis-server`; macOS: `brew install redis`)"
        )
    _say("redis: redis-server missing, installing it with apt-get ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
        if subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL).returncode != 0:  # noqa: S603
            raise StackError(f"`{' '.join(cmd)}` failed: install redis-server by hand")
    _stop_distro_redis()
    return _need("redis-server", "redis-server (apt-get install -y redis-server)")


def _stop_distro_redis() -> None:
    """The Debian package may start its own redis on 6379 (without AOF): stop that one."""
    for cmd in (["systemctl", "disable", "--now", "redis-server"],
                ["service", "redis-server", "stop"]):
        if shutil.which(cmd[0]):
            subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,  # noqa: S603
                           stderr=subprocess.DEVNULL)


def ensure_kafka_jars() -> Path:
    """The directory of Kafka runtime jars; fetched with Maven into the cache on first use."""
    version = kafka_version()
    libs = cache_dir() / f"kafka-{version}" / "libs"
    if any(libs.glob("kafka_2.13-*.jar")):
        return libs
    mvn = _need("mvn", "Apache Maven (Debian/Ubuntu: `sudo apt-get install -y maven`)")
    _need("java", _JAVA_HINT)
    libs.parent.mkdir(parents=True, exist_ok=True)
    _say(f"kafka: fetching Kafka {version} jars with Maven into {libs} ...")
    t0 = time.monotonic()
    partial = Path(tempfile.mkdtemp(prefix="libs.partial.", dir=libs.parent))
    pom = repo_root() / "deploy" / "kafka" / "pom.xml"
    cmd = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(pom), "dependency:copy-dependencies",
           f"-DoutputDirectory={partial}", "-DincludeScope=runtime"]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)  # noqa: S603
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        out = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise StackError(f"Maven could not fetch the Kafka jars (rerun `{' '.join(cmd)}`)"
                         + (f"\n{out}" if out else ""))
    if not any(partial.glob("kafka_2.13-*.jar")):
        shutil.rmtree(partial, ignore_errors=True)
        raise StackError(f"Maven finished but copied no kafka_2.13 jar: check {pom}")
    if libs.exists():  # a half-finished earlier attempt
        shutil.rmtree(libs)
    partial.rename(libs)  # atomic: a cache dir either has every jar or does not exist
    _say(f"kafka: {len(list(libs.glob('*.jar')))} jars fetched in {time.monotonic() - t0:.1f} s")
    return libs


# --- clients -------------------------------------------------------------------------------
@contextmanager
def _quiet_kafka_logs() -> Iterator[None]:
    """kafka-python logs every refused connection at ERROR; while polling that is just noise."""
    logger = logging.getLogger("kafka")
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(old)


def admin_client(settings: Settings, timeout_s: float = 10.0):
    """A ``KafkaAdminClient`` for ``settings.kafka_bootstrap`` (caller closes it).

    Works with kafka-python 2.x and 3.x: options the installed version lacks are left out.
    """
    from kafka.admin import KafkaAdminClient

    wanted = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": f"{settings.app_id}-admin",
        "request_timeout_ms": int(max(timeout_s, 5.0) * 1000),
        "bootstrap_timeout_ms": int(timeout_s * 1000),  # kafka-python 3.x
        "api_version_auto_timeout_ms": int(timeout_s * 1000),  # kafka-python 2.x
        **kafka_auth.kafka_python_kwargs(settings, kafka_auth.ADMIN),
    }
    known = getattr(KafkaAdminClient, "DEFAULT_CONFIG", wanted)
    return KafkaAdminClient(**{k: v for k, v in wanted.items() if k in known})


def _kafka_answers(settings: Settings, attempt_s: float) -> str | None:
    """None if an admin call answers, else a short reason."""
    try:
        with _quiet_kafka_logs():
            client = admin_client(settings, attempt_s)
            try:
                client.list_topics()
            finally:
                client.close()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not answering"
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


def wait_kafka(settings: Settings, timeout: float = 20.0,
               alive: Callable[[], bool] | None = None) -> None:
    """Block until Kafka answers an admin call, or raise :class:`ServiceUnavailable`.

    ``alive`` (used by :func:`up`) is polled between attempts; if it turns False the broker
    process died and waiting longer is pointless.
    """
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        reason = _kafka_answers(settings, max(0.5, min(3.0, remaining)))
        if reason is None:
            return
        if alive is not None and not alive():
            raise ServiceUnavailable(f"Kafka process exited while starting ({reason})")
        if time.monotonic() >= deadline:
            raise ServiceUnavailable(
                f"Kafka not reachable at {settings.kafka_bootstrap} (waited {timeout:g} s): "
                "run `reglink stack up`"
            )
        time.sleep(0.3)


def _redis_answers(settings: Settings) -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(kafka_auth.redis_url(settings, "admin"),
                                      socket_connect_timeout=1.0,
                                      socket_timeout=2.0)
        try:
            client.ping()
        finally:
            client.close()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


def wait_redis(settings: Settings, timeout: float = 10.0,
               alive: Callable[[], bool] | None = None) -> None:
    """Block until Redis answers PING, or raise :class:`ServiceUnavailable`."""
    deadline = time.monotonic() + timeout
    while True:
        reason = _redis_answers(settings)
        if reason is None:
            return
        if alive is not None and not alive():
            raise ServiceUnavailable(f"redis-server exited while starting ({reason})")
        if time.monotonic() >= deadline:
            url = re.sub(r"//[^@/]*@", "//***@", settings.redis_url)  # no password in messages
            raise ServiceUnavailable(
                f"Redis not reachable at {url} (waited {timeout:g} s): run `reglink stack up`"
            )
        time.sleep(0.2)


# --- topics --------------------------------------------------------------------------------
def _topic_partitions(described: dict[str, Any]) -> list[dict[str, Any]]:
    return list(described.get("partitions") or [])


def _topic_ready(described: dict[str, Any] | None) -> bool:
    if not described or described.get("error_code", 0) != 0:
        return False
    parts = _topic_partitions(described)
    return bool(parts) and all(
        p.get("error_code", 0) == 0 and p.get("leader_id", p.get("leader", -1)) >= 0
        for p in parts
    )


def _describe(client, names: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for t in client.describe_topics(names):
        out[t.get("name", t.get("topic"))] = t
    return out


def create_topics(settings: Settings, timeout: float = 30.0) -> None:
    """Create every topic of :func:`topic_specs` that does not exist yet (idempotent).

    Each gets its partition count, ``retention.ms`` and its other configs; replication factor
    1 (one broker).
    Returns once every topic has a leader for every partition. An existing topic with a
    different partition count is an error: Kafka cannot shrink it, and silently running with
    the wrong count breaks per-key ordering assumptions.
    """
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    specs = {settings.topic(s.name): s for s in topic_specs(settings)}
    client = admin_client(settings, 10.0)
    try:
        existing = set(client.list_topics())
        missing = [n for n in specs if n not in existing]

        def new(name: str) -> NewTopic:
            s = specs[name]
            return NewTopic(name, num_partitions=s.partitions, replication_factor=1,
                            topic_configs={"retention.ms": str(s.retention_ms), **s.configs})

        if missing:
            try:
                client.create_topics([new(n) for n in missing], timeout_ms=int(timeout * 1000))
            except TopicAlreadyExistsError:  # raced with another creator: go one by one
                for name in missing:
                    try:
                        client.create_topics([new(name)], timeout_ms=int(timeout * 1000))
                    except TopicAlreadyExistsError:
                        pass
        deadline = time.monotonic() + timeout
        while True:
            described = _describe(client, list(specs))
            pending = [n for n in specs if not _topic_ready(described.get(n))]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise StackError(f"topics not ready after {timeout:g} s: {', '.join(pending)}")
            time.sleep(0.1)
        wrong = [
            f"{n} has {len(_topic_partitions(described[n]))} partitions, settings say "
            f"{s.partitions}"
            for n, s in specs.items()
            if len(_topic_partitions(described[n])) != s.partitions
        ]
        if wrong:
            raise StackError(
                "; ".join(wrong) + ": delete those topics (or the state dir) or change "
                "REGLINK_SOURCE_PARTITIONS / REGLINK_DERIVED_PARTITIONS"
            )
    finally:
        client.close()
    log.info("topics ready: %d (%d created)", len(specs), len(missing))


def create_topics_and_acls(settings: Settings) -> int:
    """:func:`create_topics`, then (scram mode) the ACLs of ``settings``'s topic prefix and
    app id, as ``admin``: what a run under its own prefix (tests, demo) needs. Returns the
    number of ACLs (0 in plaintext mode)."""
    create_topics(settings)
    if not kafka_auth.secure(settings):
        return 0
    client = admin_client(settings, 10.0)
    try:
        return kafka_auth.apply_acls(settings, client)
    finally:
        client.close()


def _ensure_topics(settings: Settings) -> None:
    t0 = time.monotonic()
    n = create_topics_and_acls(settings)
    _say(f"topics: {len(topic_specs(settings))} ready with prefix {settings.topic_prefix!r} "
         f"({time.monotonic() - t0:.1f} s)")
    if kafka_auth.secure(settings):
        _say(f"acls: {n} Kafka ACLs for {len(kafka_auth.kafka_principals()) - 1} principals; "
             f"credentials in {kafka_auth.credentials_path(settings)}")


# --- kafka ---------------------------------------------------------------------------------
KAFKA_MARKER = "kafka.Kafka"
REDIS_MARKER = "redis-server"


def _cluster_id(kdir: Path) -> str:
    """The cluster id, made once (same format as ``kafka-storage random-uuid``)."""
    f = kdir / "cluster.id"
    if f.is_file():
        return f.read_text().strip()
    cid = "-"
    while cid.startswith("-"):  # like Kafka's Uuid.randomUuid: "-..." reads as an option
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    f.write_text(cid + "\n")
    return cid


def _security_mode(settings: Settings) -> str:
    """What ``<state_dir>/kafka/security.mode`` records: ``plaintext``, ``scram`` or
    ``scram+tls``. The part before ``+`` is fixed at format time (SCRAM users live in the
    metadata log); ``+tls`` only describes the listener of the last start."""
    return settings.kafka_security + ("+tls" if kafka_auth.tls(settings) else "")


def _recorded_mode(p: _Paths) -> str | None:
    f = p.kafka / "security.mode"
    return f.read_text().strip() if f.is_file() else None


def _check_running_mode(settings: Settings, p: _Paths) -> None:
    """A running broker serves the listener it was started with: refuse to carry on as if
    it matched settings that switch TLS on or off (clients would only time out)."""
    running = _recorded_mode(p)
    if running is not None and running != _security_mode(settings):
        raise StackError(
            f"the running Kafka (state dir {p.state}) was started as {running}, settings say "
            f"{_security_mode(settings)}: run `reglink stack down`, then `reglink stack up` "
            "with the new settings")


def _ensure_tls(settings: Settings) -> Path:
    """Make or reuse the CA and broker certificate (devstack/tls.py); returns the tls dir."""
    from reglink.devstack import tls

    files, made = tls.ensure(kafka_auth.tls_dir(settings))
    what = f"made {' and '.join(made)}" if made else "reused CA and broker certificate"
    _say(f"tls: {what} in {files.dir}; clients trust {files.ca_cert}")
    return files.dir


def _check_formatted_mode(settings: Settings, p: _Paths) -> None:
    """A state dir is formatted for one kafka_security mode (SCRAM users are written into the
    metadata log at format time): refuse another, saying how to get going again."""
    data = p.kafka / "data"
    if not (data / "meta.properties").is_file():
        return
    mode_file = p.kafka / "security.mode"
    formatted = mode_file.read_text().strip() if mode_file.is_file() else "plaintext"
    formatted = formatted.split("+", 1)[0]  # "+tls": the listener only, not format time
    if formatted == settings.kafka_security:
        return
    raise StackError(
        f"the Kafka storage in {data} was formatted for kafka_security={formatted}, but "
        f"settings say kafka_security={settings.kafka_security} (scram is the default; SCRAM "
        "users are written into the storage when it is formatted, so a state dir cannot "
        "switch modes). To start afresh: `make clean-state` (or `reglink stack down && rm -rf "
        f"{p.state}`; this deletes the local topics and Redis data), then `reglink stack up`. "
        f"To keep this state dir: REGLINK_KAFKA_SECURITY={formatted}, or use another "
        "REGLINK_STATE_DIR")


def _start_kafka(settings: Settings, p: _Paths) -> int | None:
    """Start the broker unless ours already runs. Returns the new pid, or None if running."""
    pid = _running_pid(p.kafka_pid, KAFKA_MARKER)
    if pid is not None:
        _check_running_mode(settings, p)
        _say(f"kafka: already running (pid {pid})")
        return None
    for port in (settings.kafka_port, settings.kafka_controller_port):
        reason = _port_taken_reason(port, p)
        if reason:
            raise StackError(
                f"{reason}: stop it, or set REGLINK_KAFKA_PORT / "
                "REGLINK_KAFKA_CONTROLLER_PORT and REGLINK_KAFKA_BOOTSTRAP"
            )
    java = _need("java", _JAVA_HINT)
    libs = ensure_kafka_jars()
    deploy = repo_root() / "deploy" / "kafka"
    data = p.kafka / "data"
    data.mkdir(parents=True, exist_ok=True)
    values = {
        "KAFKA_PORT": settings.kafka_port,
        "KAFKA_CONTROLLER_PORT": settings.kafka_controller_port,
        "KAFKA_LOG_DIRS": data,
    }
    scram_args: list[str] = []
    if kafka_auth.secure(settings):
        creds = kafka_auth.ensure_credentials(settings)
        values["ADMIN_PASSWORD"] = creds["kafka"][kafka_auth.ADMIN]
        text = _overlay_properties(_render_text(deploy / "server.properties", values),
                                   _render_text(deploy / "server-scram.properties", values))
        if kafka_auth.tls(settings):  # SASL_SSL on the broker port (docs/security.md)
            values["TLS_DIR"] = _ensure_tls(settings)
            text = _overlay_properties(
                text, _render_text(deploy / "server-tls.properties", values),
                "kafka_tls (deploy/kafka/server-tls.properties)")
        _write(p.kafka / "server.properties", text, secret=True)
        for name in kafka_auth.kafka_principals():  # hex passwords: no quoting needed
            scram_args += ["--add-scram", f"{kafka_auth.MECHANISM}=[name={name},"
                                          f"password={creds['kafka'][name]}]"]
    else:
        _render(deploy / "server.properties", p.kafka / "server.properties", values)
    mode_file = p.kafka / "security.mode"
    if (data / "meta.properties").is_file():
        _check_formatted_mode(settings, p)
        mode_file.write_text(_security_mode(settings) + "\n")  # TLS on/off: just a restart
    shutil.copyfile(deploy / "log4j.properties", p.kafka / "log4j.properties")
    base = [java, f"-Dlog4j.configuration=file:{p.kafka / 'log4j.properties'}",
            "-cp", f"{libs}/*"]
    if not (data / "meta.properties").is_file():
        cid = _cluster_id(p.kafka)
        fmt = subprocess.run(  # noqa: S603
            [*base, "kafka.tools.StorageTool", "format", "--ignore-formatted", "-t", cid,
             "-c", str(p.kafka / "server.properties"), *scram_args],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
        )
        (p.kafka / "format.log").write_text(fmt.stdout + fmt.stderr)
        if fmt.returncode != 0:
            raise StackError(f"formatting Kafka storage failed: see {p.kafka / 'format.log'}")
        mode_file.write_text(_security_mode(settings) + "\n")
        _say(f"kafka: formatted storage in {data} (cluster id {cid})")
    return _spawn([*base[:1], KAFKA_HEAP, "-Djava.awt.headless=true", *base[1:], "kafka.Kafka",
                   str(p.kafka / "server.properties")],
                  logfile=p.kafka_log, cwd=p.kafka, pidfile=p.kafka_pid)


def _redis_tls_lines(settings: Settings) -> list[str]:
    """redis.conf lines for ``redis_tls``: the TLS port replaces the plain one (``port 0``),
    with the stack's server certificate; clients are not asked for certificates (they
    authenticate with their ACL user's password)."""
    d = _ensure_tls(settings)
    return ["", "# --- redis_tls: TLS only, on the same port ---", "port 0",
            f"tls-port {settings.redis_port}", f"tls-cert-file {d / 'broker.pem'}",
            f"tls-key-file {d / 'broker.key'}", f"tls-ca-cert-file {d / 'ca.pem'}",
            "tls-auth-clients no", 'tls-protocols "TLSv1.2 TLSv1.3"']


def _check_running_redis_tls(settings: Settings, p: _Paths) -> None:
    """The running redis was started from <state_dir>/redis/redis.conf: refuse settings that
    switch TLS on or off under it (clients would only fail to connect)."""
    try:
        running_tls = "\ntls-port " in (p.redis / "redis.conf").read_text(encoding="utf-8")
    except OSError:
        return
    wanted = kafka_auth.secure(settings) and settings.redis_tls
    if running_tls != wanted:
        raise StackError(
            f"the running redis (state dir {p.state}) was started with redis_tls="
            f"{str(running_tls).lower()}, settings say {str(wanted).lower()}: run "
            "`reglink stack down`, then `reglink stack up` with the new settings")


def _start_redis(settings: Settings, p: _Paths) -> int | None:
    pid = _running_pid(p.redis_pid, REDIS_MARKER)
    if pid is not None:
        _check_running_redis_tls(settings, p)
        _say(f"redis: already running (pid {pid})")
        return None
    reason = _port_taken_reason(settings.redis_port, p)
    if reason:
        raise StackError(
            f"{reason} (a distro redis? `systemctl stop redis-server`): "
            "stop it, or set REGLINK_REDIS_PORT and REGLINK_REDIS_URL"
        )
    server = ensure_redis_server()
    p.redis.mkdir(parents=True, exist_ok=True)
    conf = repo_root() / "deploy" / "redis" / "redis.conf"
    values = {"REDIS_PORT": settings.redis_port, "REDIS_DIR": p.redis}
    if kafka_auth.secure(settings):  # ACL users, default user off (docs/security.md)
        creds = kafka_auth.ensure_credentials(settings)
        text = _render_text(conf, values) + (
            "\n# --- kafka_security=scram: ACL users (passwords as SHA-256) ---\n"
            + "\n".join(kafka_auth.redis_acl_lines(settings, creds)) + "\n")
        if settings.redis_tls:
            text += "\n".join(_redis_tls_lines(settings)) + "\n"
        _write(p.redis / "redis.conf", text, secret=True)
    else:
        _render(conf, p.redis / "redis.conf", values)
    return _spawn([server, str(p.redis / "redis.conf")], logfile=p.redis_log, cwd=p.redis,
                  pidfile=p.redis_pid)


def _abort(name: str, pidfile: Path, marker: str, logfile: Path, why: str) -> StackError:
    _stop(name, pidfile, marker, 10.0)
    tail = _tail(logfile)
    return StackError(f"{why}; see {logfile}" + (f"\n  last lines:\n{tail}" if tail else ""))


def _wait_running(name: str, wait: Callable[[], None], pidfile: Path, logfile: Path) -> None:
    try:
        wait()
    except ServiceUnavailable:
        raise StackError(
            f"{name} (pid {_read_pid(pidfile)}) runs but does not answer; see {logfile}, or "
            "restart it: `reglink stack down && reglink stack up`"
        ) from None


@contextmanager
def _locked(p: _Paths) -> Iterator[None]:
    """One `stack up`/`down` at a time per state dir (parallel test sessions, make -j)."""
    p.state.mkdir(parents=True, exist_ok=True)
    with open(p.state / "stack.lock", "w") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- public API ----------------------------------------------------------------------------
def up(settings: Settings) -> None:
    """Start Kafka and Redis (idempotent) and make sure every topic exists."""
    p = _paths(settings)
    with _locked(p):
        _up(settings, p)


def _up(settings: Settings, p: _Paths) -> None:
    t0 = time.monotonic()
    _check_formatted_mode(settings, p)  # before anything starts
    redis_pid = _start_redis(settings, p)
    if redis_pid is not None:
        try:
            wait_redis(settings, REDIS_UP_TIMEOUT_S,
                       alive=lambda: _alive(redis_pid, REDIS_MARKER))
        except ServiceUnavailable:
            why = (f"redis-server started but did not answer PING within {REDIS_UP_TIMEOUT_S:g} s"
                   if _alive(redis_pid, REDIS_MARKER) else "redis-server exited while starting")
            raise _abort("redis", p.redis_pid, REDIS_MARKER, p.redis_log, why) from None
        _say(f"redis: started (pid {redis_pid}), answering after {time.monotonic() - t0:.1f} s;"
             f" log {p.redis_log}")
    else:
        _wait_running("redis", lambda: wait_redis(settings, 5.0), p.redis_pid, p.redis_log)

    kafka_pid = _start_kafka(settings, p)
    if kafka_pid is not None:
        t1 = time.monotonic()
        try:
            wait_kafka(settings, KAFKA_UP_TIMEOUT_S,
                       alive=lambda: _alive(kafka_pid, KAFKA_MARKER))
        except ServiceUnavailable:
            why = (f"Kafka started but did not answer an admin call at {settings.kafka_bootstrap}"
                   f" within {KAFKA_UP_TIMEOUT_S:g} s (stopped it again)"
                   if _alive(kafka_pid, KAFKA_MARKER) else "Kafka exited while starting")
            raise _abort("kafka", p.kafka_pid, KAFKA_MARKER, p.kafka_log, why) from None
        _say(f"kafka: started (pid {kafka_pid}), admin API answering after "
             f"{time.monotonic() - t1:.1f} s; log {p.kafka_log}")
    else:
        _wait_running("kafka", lambda: wait_kafka(settings, 30.0), p.kafka_pid, p.kafka_log)

    _ensure_topics(settings)
    _say(f"stack: up in {time.monotonic() - t0:.1f} s (state in {p.state})")


def down(settings: Settings) -> None:
    """Stop what :func:`up` started, by pid: SIGTERM, wait, then SIGKILL."""
    p = _paths(settings)
    if not p.state.is_dir():
        _say(f"stack: nothing to stop ({p.state} does not exist)")
        return
    with _locked(p):
        _stop("kafka", p.kafka_pid, KAFKA_MARKER, 30.0)  # a clean KRaft shutdown takes a few s
        _stop("redis", p.redis_pid, REDIS_MARKER, 10.0)
    for name, port in (("kafka", settings.kafka_port), ("redis", settings.redis_port)):
        if _port_open(port):
            _say(f"{name}: note: something reglink did not start still listens on port {port}")


def stop_service(settings: Settings, name: str) -> None:
    """Stop one service of the stack (``kafka`` or ``redis``); ``up`` starts it again.
    Used by the fault-injection tests; Redis is stopped with SIGTERM, so it syncs its AOF."""
    p = _paths(settings)
    with _locked(p):
        if name == "kafka":
            _stop("kafka", p.kafka_pid, KAFKA_MARKER, 30.0)
        elif name == "redis":
            _stop("redis", p.redis_pid, REDIS_MARKER, 10.0)
        else:
            raise StackError(f"unknown service {name!r}: use kafka or redis")


def service_pid(settings: Settings, name: str) -> int | None:
    p = _paths(settings)
    if name == "kafka":
        return _running_pid(p.kafka_pid, KAFKA_MARKER)
    return _running_pid(p.redis_pid, REDIS_MARKER)


KAFKA_PORT_LINE = r"^advertised\.listeners=\w+://[^:,]+:(\d+)"  # in <state>/kafka/server.properties
REDIS_PORT_LINE = r"^(?:tls-)?port (\d+)$"  # in <state>/redis/redis.conf


def _started_port(config: Path, pattern: str) -> int | None:
    """The port a service of this state dir was started with, read from its rendered config."""
    try:
        found = re.findall(pattern, config.read_text(encoding="utf-8"), re.MULTILINE)
    except OSError:
        return None
    ports = [int(port) for port in found if int(port)]  # redis_tls: "port 0", then tls-port
    return ports[-1] if ports else None


def status(settings: Settings) -> int:
    """Print one line per service; 0 only if both Kafka and Redis answer.

    Only the endpoints the settings name are probed. A service this state dir started on
    another port is reported with the setting that reaches it, and not probed; a port served
    by a process this state dir did not start is named as such.
    """
    p = _paths(settings)
    _say(f"stack  state dir {p.state}")
    rows = [
        ("kafka", "REGLINK_KAFKA_PORT", settings.kafka_port,
         _running_pid(p.kafka_pid, KAFKA_MARKER),
         _started_port(p.kafka / "server.properties", KAFKA_PORT_LINE),
         settings.kafka_bootstrap + (" (SASL_SSL)" if kafka_auth.tls(settings) else ""),
         lambda: _kafka_answers(settings, 3.0) if _bootstrap_open(settings) else "port closed",
         p.kafka_log),
        ("redis", "REGLINK_REDIS_PORT", settings.redis_port,
         _running_pid(p.redis_pid, REDIS_MARKER),
         _started_port(p.redis / "redis.conf", REDIS_PORT_LINE),
         re.sub(r"//[^@/]*@", "//***@", settings.redis_url)
         + (" (TLS)" if kafka_auth.secure(settings) and settings.redis_tls else ""),
         lambda: _redis_answers(settings), p.redis_log),
    ]
    ok = True
    for name, variable, port, pid, started_port, where, probe, logfile in rows:
        if pid is not None and started_port not in (None, port):
            ok = False
            _say(f"{name:<6} {'up':<5} pid {pid:<8} answers ?    {where}  (this state dir's "
                 f"{name} listens on port {started_port}, the settings name port {port}: set "
                 f"{variable}={started_port}; not probed)")
            continue
        reason = probe()
        answers = reason is None
        ok &= answers
        state = "up" if pid is not None else ("up (not started by reglink)" if answers else "down")
        line = (f"{name:<6} {state:<5} pid {pid if pid is not None else '-':<8} "
                f"answers {'yes' if answers else 'no '}  {where}")
        if pid is not None and not answers:
            line += f"  ({reason}; see {logfile})"
        elif pid is None and not answers and _port_open(port):
            line += (f"  (port {port} is served by a process not started from state dir "
                     f"{p.state}: {reason})")
        _say(line)
    return 0 if ok else 1


def _main(argv: list[str]) -> int:
    """``python -m reglink.devstack.stack topics [--wait S]``: wait for Kafka, create topics."""
    from reglink.core.errors import ReglinkError
    from reglink.core.settings import load_settings

    if not argv or argv[0] != "topics":
        print("usage: python -m reglink.devstack.stack topics [--wait SECONDS]", file=sys.stderr)
        return 2
    wait = float(argv[argv.index("--wait") + 1]) if "--wait" in argv else 120.0
    try:
        settings = load_settings()
        wait_kafka(settings, wait)
        _ensure_topics(settings)
    except ReglinkError as exc:
        print(f"reglink: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
