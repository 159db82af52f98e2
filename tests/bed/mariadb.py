"""A throwaway MariaDB server for the tests: own data dir, own socket, a free loopback port.

It can be stopped and started again on the same data dir and port, which is what the outage
tests need. Settings are MariaDB's durable defaults, with small memory buffers.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bed._proc import BedError, free_ports, spawn, tail, terminate
from tests.bed.tls import Issued, TestCA

USER = "payscore"
DATABASE = "payscore_test"
SERVER_OPTIONS = [
    "--skip-name-resolve",
    "--skip-log-bin",
    "--performance-schema=OFF",
    "--innodb-buffer-pool-size=64M",
    "--innodb-log-file-size=32M",
    "--max-connections=300",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_unicode_ci",
]
MISSING = "MariaDB server is not installed ({what} not found); run: bash tests/bed/install.sh"


def _binary(*names: str) -> str:
    for name in names:
        for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
            if candidate and os.access(candidate, os.X_OK):
                return candidate
    raise BedError(MISSING.format(what=" or ".join(names)))


def _as_root_args() -> list[str]:
    """mariadbd refuses to run as root unless told which user to run as."""
    return ["--user=root"] if os.geteuid() == 0 else []


class MariaDBServer:
    """One private MariaDB server: install() once, then start()/stop() as often as needed."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="payscore-mariadb-"))
        self.datadir = self.workdir / "data"
        self.socket = self.workdir / "mariadb.sock"
        self.log_path = self.workdir / "error.log"
        (self.port,) = free_ports(1)
        self.password = secrets.token_urlsafe(16)
        self.proc: subprocess.Popen[bytes] | None = None
        self._installed = False
        self.tls_dir = self.workdir / "tls"
        self._tls: tuple[Issued, Issued] | None = None  # server's, a client's

    @property
    def ca_file(self) -> Path:
        """The CA that signed the server's certificate (and ``client_tls``)."""
        return self.tls_dir / "ca.crt"

    @property
    def client_tls(self) -> Issued:
        """A client certificate and key from the server's CA, for clients that present one."""
        if self._tls is None:
            raise BedError("MariaDB has not been started yet")
        return self._tls[1]

    def _make_tls(self) -> list[str]:
        """Server options for TLS, with a CA and certificates made now (once per data dir).

        TLS is offered to every client but required only of users created ``REQUIRE SSL``
        (``add_user``); a client asks for it with ssl_* options (e.g. ``ssl_ca``).
        """
        if self._tls is None:
            ca = TestCA(self.tls_dir)
            self._tls = (ca.issue("mariadb"), ca.issue("client"))
        server = self._tls[0]
        return [f"--ssl-ca={self.ca_file}", f"--ssl-cert={server.cert}", f"--ssl-key={server.key}"]

    def add_user(self, user: str, password: str, database: str, require: str = "SSL") -> None:
        """A user with all rights on its own new database, who must connect as ``require``."""
        if require not in {"SSL", "X509", "NONE"}:
            raise ValueError(require)
        conn = self._root_connect()
        try:
            cur = conn.cursor()
            cur.execute(
                f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s REQUIRE {require}",
                (password,),
            )
            cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
            cur.execute(f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{user}'@'127.0.0.1'")
            conn.commit()
        finally:
            conn.close()

    def url(self, database: str = DATABASE) -> str:
        """SQLAlchemy URL for the test user (password included: tests only)."""
        return f"mysql+mysqldb://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def install(self) -> None:
        """Create the system tables in a fresh data dir (root without password, local only)."""
        install_db = _binary("mariadb-install-db", "mysql_install_db")
        result = subprocess.run(
            [
                install_db,
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
                *_as_root_args(),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=180,
        )
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            raise BedError(f"mariadb-install-db failed (exit {result.returncode}):\n{output}")
        self._installed = True

    def start(self, timeout: float = 90.0) -> None:
        """Start the server (installing the data dir the first time) and wait for connections."""
        if self.running:
            return
        if not self._installed:
            self.install()
            first = True
        else:
            first = False
        mariadbd = _binary("mariadbd", "mysqld")
        args = [
            mariadbd,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--pid-file={self.workdir / 'mariadb.pid'}",
            f"--log-error={self.log_path}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            *SERVER_OPTIONS,
            *self._make_tls(),
            *_as_root_args(),
        ]
        self.proc = spawn(args, self.workdir / "stdout.log")
        self._wait_ready(timeout)
        if first:
            self._create_user()

    def _root_connect(self) -> Any:
        import MySQLdb

        return MySQLdb.connect(unix_socket=str(self.socket), user="root", connect_timeout=5)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = self.proc.returncode if self.proc else "?"
                raise BedError(
                    f"MariaDB server exited with code {code} while starting; error log tail:\n"
                    f"{tail(self.log_path)}"
                )
            if self.socket.exists():
                try:
                    self._root_connect().close()
                    return
                except Exception as e:  # "not yet" until the deadline
                    last = e
            time.sleep(0.2)
        self.stop()
        raise BedError(
            f"MariaDB not accepting connections after {timeout:.0f}s ({last!r}); "
            f"error log tail:\n{tail(self.log_path)}"
        )

    def _create_user(self) -> None:
        conn = self._root_connect()
        try:
            cur = conn.cursor()
            for host in ("127.0.0.1", "localhost"):
                cur.execute(f"CREATE USER '{USER}'@'{host}' IDENTIFIED BY %s", (self.password,))
                cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'{host}' WITH GRANT OPTION")
            cur.execute(f"CREATE DATABASE `{DATABASE}` CHARACTER SET utf8mb4")
            conn.commit()
        finally:
            conn.close()

    def stop(self) -> None:
        """Shut the server down cleanly (SIGTERM, SIGKILL after 60 s); data dir is kept."""
        terminate(self.proc, grace=60.0)
        self.proc = None

    def destroy(self) -> None:
        """Stop and delete every file of this server."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
