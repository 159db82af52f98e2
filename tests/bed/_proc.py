"""Small helpers shared by the test-bed services: cache dir, free ports, child processes."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
from pathlib import Path

BED_DIR = Path(__file__).resolve().parent


class BedError(RuntimeError):
    """A test-bed service could not be fetched or started; the message says why."""


def cache_dir() -> Path:
    """Where downloads are cached between runs: $PAYSCORE_CACHE_DIR or ~/.cache/payscore."""
    configured = os.environ.get("PAYSCORE_CACHE_DIR")
    path = Path(configured) if configured else Path.home() / ".cache" / "payscore"
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports, found by binding port 0 (all held until all are chosen)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM us if the test process dies without cleaning up."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def spawn(args: list[str], log_path: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a service process with its output in log_path, in its own session.

    Its own session keeps a terminal Ctrl-C away from it, so the fixture decides when it stops.
    """
    with open(log_path, "ab") as log:
        return subprocess.Popen(  # fixed argument lists built by the bed
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent if os.name == "posix" else None,
        )


def terminate(proc: subprocess.Popen[bytes] | None, grace: float = 30.0) -> None:
    """Stop a child politely (SIGTERM), then by force if it does not exit within grace s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"
