"""TLS material of the local stack (``kafka_tls``, docs/security.md): a private CA and a
broker certificate for ``localhost`` / ``127.0.0.1``, made with the ``openssl`` CLI.

Files in ``<state_dir>/tls/`` (directory mode 0700):

* ``ca.key``   CA private key (0600), ``ca.pem`` CA certificate -- the file clients trust;
* ``broker.key`` broker private key, PKCS#8, unencrypted (0600), ``broker.pem`` its
  certificate (signed by the CA; SAN ``DNS:localhost, IP:127.0.0.1``; serverAuth);
* ``broker-keystore.pem`` key + certificate chain in one file (0600): Kafka's
  ``ssl.keystore.type=PEM`` store. The broker's truststore is ``ca.pem`` (PEM too).

:func:`ensure` keeps valid files (later ``stack up`` reuse them) and only makes what is
missing, expired within 30 days, or no longer signed by the CA. Nothing here logs a key.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reglink.core.errors import StackError

CA_DAYS = 3650
BROKER_DAYS = 825
RENEW_BEFORE_S = 30 * 86400
SAN = "DNS:localhost,IP:127.0.0.1"

_CONFIG = f"""\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = reglink
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_broker]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = {SAN}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


@dataclass(frozen=True)
class TLSFiles:
    dir: Path

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def broker_key(self) -> Path:
        return self.dir / "broker.key"

    @property
    def broker_cert(self) -> Path:
        return self.dir / "broker.pem"

    @property
    def keystore(self) -> Path:
        return self.dir / "broker-keystore.pem"

    def private(self) -> tuple[Path, ...]:
        """The files that hold a private key (mode 0600)."""
        return (self.ca_key, self.broker_key, self.keystore)


def _openssl() -> str:
    path = shutil.which("openssl")
    if not path:
        raise StackError("`openssl` not found on PATH: install it (Debian/Ubuntu: "
                         "`sudo apt-get install -y openssl`) to run the stack with kafka_tls")
    return path


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # umask 077: every file openssl writes (keys included) is created 0600, never briefly 0644
    return subprocess.run([_openssl(), *args], cwd=cwd, stdin=subprocess.DEVNULL,  # noqa: S603
                          capture_output=True, text=True, umask=0o077)


def _check(proc: subprocess.CompletedProcess, what: str) -> None:
    if proc.returncode != 0:
        err = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise StackError(f"openssl could not {what}" + (f":\n{err}" if err else ""))


def _valid_cert(cert: Path, cwd: Path, ca: Path | None = None) -> bool:
    """True if ``cert`` is readable, valid for at least RENEW_BEFORE_S more seconds and (when
    ``ca`` is given) verifies against it."""
    if not cert.is_file():
        return False
    if _run(["x509", "-in", str(cert), "-noout", "-checkend", str(RENEW_BEFORE_S)],
            cwd).returncode != 0:
        return False
    if ca is not None:
        return _run(["verify", "-CAfile", str(ca), "-purpose", "sslserver", str(cert)],
                    cwd).returncode == 0
    return True


def _same_key(key: Path, cert: Path, cwd: Path) -> bool:
    a = _run(["pkey", "-in", str(key), "-pubout"], cwd)
    b = _run(["x509", "-in", str(cert), "-noout", "-pubkey"], cwd)
    return a.returncode == 0 and b.returncode == 0 and a.stdout == b.stdout


def make_ca(dest: Path, common_name: str = "reglink local CA") -> TLSFiles:
    """A new CA in ``dest`` (``ca.key`` 0600, ``ca.pem``); replaces an existing one."""
    f = TLSFiles(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        cnf = Path(tmp) / "openssl.cnf"
        cnf.write_text(_CONFIG, encoding="utf-8")
        key, cert = Path(tmp) / "ca.key", Path(tmp) / "ca.pem"
        _check(_run(["req", "-x509", "-config", str(cnf), "-extensions", "v3_ca",
                     "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", str(CA_DAYS),
                     "-subj", f"/CN={common_name}", "-keyout", str(key), "-out", str(cert)],
                    Path(tmp)), "make the CA")
        os.chmod(cert, 0o644)
        key.replace(f.ca_key)
        cert.replace(f.ca_cert)
    return f


def make_broker_cert(f: TLSFiles) -> None:
    """A new broker key and certificate signed by the CA in ``f``, and the PEM keystore."""
    with tempfile.TemporaryDirectory(dir=f.dir) as tmp:
        t = Path(tmp)
        cnf = t / "openssl.cnf"
        cnf.write_text(_CONFIG, encoding="utf-8")
        key, csr, cert = t / "broker.key", t / "broker.csr", t / "broker.pem"
        # genpkey writes PKCS#8 ("BEGIN PRIVATE KEY"), what Kafka's PEM store reads
        _check(_run(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                     "-out", str(key)], t), "make the broker key")
        _check(_run(["req", "-new", "-config", str(cnf), "-key", str(key),
                     "-subj", "/CN=localhost", "-out", str(csr)], t), "make the broker CSR")
        _check(_run(["x509", "-req", "-in", str(csr), "-CA", str(f.ca_cert),
                     "-CAkey", str(f.ca_key), "-set_serial", str(int.from_bytes(os.urandom(8),
                                                                              "big")),
                     "-sha256", "-days", str(BROKER_DAYS), "-extfile", str(cnf),
                     "-extensions", "v3_broker", "-out", str(cert)], t),
               "sign the broker certificate")
        os.chmod(cert, 0o644)
        key.replace(f.broker_key)
        cert.replace(f.broker_cert)


def _write_keystore(f: TLSFiles) -> None:
    """Key + chain (broker, CA) in one 0600 file; rewritten only when its content changes."""
    text = (f.broker_key.read_text(encoding="ascii") + f.broker_cert.read_text(encoding="ascii")
            + f.ca_cert.read_text(encoding="ascii"))
    if f.keystore.is_file() and f.keystore.read_text(encoding="ascii") == text:
        os.chmod(f.keystore, 0o600)
        return
    tmp = f.keystore.with_name(f.keystore.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.chmod(tmp, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text)
    tmp.replace(f.keystore)


def ensure(dest: Path) -> tuple[TLSFiles, list[str]]:
    """The CA and broker files in ``dest``, made or renewed where needed. Returns the files and
    what was made (empty when everything was reused)."""
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o700)
    f = TLSFiles(dest)
    made: list[str] = []
    if not (f.ca_key.is_file() and _valid_cert(f.ca_cert, dest)
            and _same_key(f.ca_key, f.ca_cert, dest)):
        make_ca(dest)
        made.append("CA")
    if not (f.broker_key.is_file() and _valid_cert(f.broker_cert, dest, f.ca_cert)
            and _same_key(f.broker_key, f.broker_cert, dest)):
        make_broker_cert(f)
        made.append("broker certificate")
    for path in f.private():
        if path.exists():
            os.chmod(path, 0o600)
    _write_keystore(f)
    return f, made
