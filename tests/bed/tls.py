"""Throwaway TLS material for the test bed, made with ``openssl`` when a bed service starts.

One private CA per service; leaf certificates name ``localhost`` and ``127.0.0.1`` so that
clients checking the host name accept them, and serve as server and client certificates
alike. P-256 keys: a whole CA and two leaves take a few tens of milliseconds. A key password
reaches openssl through an environment variable, never its command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.bed._proc import BedError

#: What a leaf certificate names: the host names clients use to reach the bed.
SUBJECT_ALT_NAMES = "DNS:localhost, IP:127.0.0.1"
VALID_DAYS = "2"
_PASSWORD_ENV = "PAYSCORE_BED_KEY_PASSWORD"
_CONFIG = f"""\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = payscore test bed
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = {SUBJECT_ALT_NAMES}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class Issued:
    """A PEM certificate and its PKCS#8 key (encrypted when issued with a password)."""

    cert: Path
    key: Path

    def write_bundle(self, path: Path) -> Path:
        """Key then certificate in one file: the layout of a Java ``PEM`` keystore."""
        path.write_text(self.key.read_text() + self.cert.read_text())
        path.chmod(0o600)
        return path


def openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise BedError(
            "openssl is needed to make the test bed's TLS certificates, but it is not on PATH; "
            "install it (apt-get install openssl)"
        )
    return found


class TestCA:
    """A certificate authority in ``directory`` that issues leaf certificates for the bed."""

    __test__ = False  # a helper, not a pytest test class

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        self._config = self.dir / "openssl.cnf"
        self._config.write_text(_CONFIG)
        self.cert = self.dir / "ca.crt"
        self._key = self.dir / "ca.key"
        self._run("-x509", "-extensions", "ca", "-keyout", self._key, "-out", self.cert, "-noenc")

    def issue(self, name: str, password: str | None = None) -> Issued:
        """A leaf certificate signed by this CA; its key encrypted with ``password`` if given."""
        cert, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        if password is None:
            protect: list[str | Path] = ["-noenc"]
            env = None
        else:
            protect = ["-passout", f"env:{_PASSWORD_ENV}"]
            env = {**os.environ, _PASSWORD_ENV: password}
        self._run(
            "-x509",
            "-CA",
            self.cert,
            "-CAkey",
            self._key,
            "-extensions",
            "leaf",
            "-subj",
            f"/CN={name}",
            "-keyout",
            key,
            "-out",
            cert,
            *protect,
            env=env,
        )
        return Issued(cert, key)

    def _run(self, *args: str | Path, env: dict[str, str] | None = None) -> None:
        cmd = [
            openssl(),
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-days",
            VALID_DAYS,
            "-config",
            str(self._config),
            *map(str, args),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise BedError(f"openssl req failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
        for path in self.dir.glob("*.key"):
            path.chmod(0o600)
