"""``payscore dashboard``: serve the Streamlit monitoring page as a child process; and
``payscore dashboard hash-password``: make an analyst's ``dashboard_users`` entry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import typer

from payscore.cli.common import DatabaseUrl, console, settings_from
from payscore.config import ENV_PREFIX, SECRET_FIELDS, Settings
from payscore.errors import InputError, PayscoreError

REFRESH_ENV = "PAYSCORE_DASHBOARD_REFRESH"


MAX_PASSWORD_BYTES = 72  # bcrypt reads no further
MIN_PASSWORD_CHARS = 12


def register(app: typer.Typer) -> None:
    """A group: serving is its own callback, so ``payscore dashboard --port ...`` still works."""
    app.info.name = "dashboard"
    app.callback(invoke_without_command=True)(dashboard)
    app.command("hash-password")(hash_password)


def app_path() -> Path:
    """The installed dashboard script that ``streamlit run`` executes."""
    import payscore.dashboard

    return Path(payscore.dashboard.__file__).resolve().parent / "app.py"


def child_env(
    settings: Settings, refresh: int, base: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment for the Streamlit process: every effective setting as PAYSCORE_*.

    Secrets travel in the environment, never on the command line where ``ps`` shows them.
    """
    env = dict(os.environ if base is None else base)
    env.pop(f"{ENV_PREFIX}CONFIG", None)  # the effective values below already include the file
    for name in Settings.model_fields:
        value = getattr(settings, name)
        key = f"{ENV_PREFIX}{name.upper()}"
        if value is None:
            env.pop(key, None)
        elif name in SECRET_FIELDS:
            env[key] = value.get_secret_value()
        elif isinstance(value, bool):
            env[key] = "true" if value else "false"
        else:
            env[key] = str(value)
    env[REFRESH_ENV] = str(refresh)
    return env


def streamlit_command(host: str, port: int, script: Path | None = None) -> list[str]:
    """``streamlit run`` of the dashboard (or of ``script``, with the same server options)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script or app_path()),
        "--server.headless",
        "true",
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "minimal",
        # No forced full collection after every run (payscore/dashboard/gcfreeze.py): it held
        # the GIL while the browser waited for the run's end, and grew with the server's age.
        "--runner.postScriptGC",
        "false",
    ]


def dashboard(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8501, "--port", min=1, max=65535, help="Port to serve on."),
    database_url: DatabaseUrl = None,
    refresh: int = typer.Option(
        0,
        "--refresh",
        min=0,
        max=3600,
        help="Default auto-refresh interval in seconds (0 = off); the page can change it.",
    ),
) -> None:
    """Start the Streamlit monitoring dashboard on the decisions database (Ctrl-C stops it)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_from(ctx, database_url=database_url)
    if settings.dashboard_labelling and settings.dashboard_users is None:
        raise InputError(
            "dashboard_labelling is on but dashboard_users names no analyst; add one with "
            "`payscore dashboard hash-password NAME`, or turn labelling off"
        )
    if not host or len(host) > 255 or any(c.isspace() for c in host):
        raise InputError(f"--host {host!r} is not a host name or address")
    shown_host = f"[{host}]" if ":" in host else host
    console.print(f"payscore dashboard: http://{shown_host}:{port}  (Ctrl-C to stop)", markup=False)
    try:
        child = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            streamlit_command(host, port), env=child_env(settings, refresh)
        )
    except OSError as e:
        raise PayscoreError(f"cannot start Streamlit: {e}") from e
    # A SIGTERM to this process must not orphan the server: treat it like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = child.wait()
    except KeyboardInterrupt:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        console.print("dashboard stopped")
        return
    if code != 0:
        raise PayscoreError(f"Streamlit exited with code {code} (is port {port} already in use?)")


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def hash_password(
    name: str = typer.Argument(..., help="The analyst's sign-in name (lower case)."),
) -> None:
    """Print a dashboard_users entry (name:bcrypt-hash) for a password typed at a prompt.

    The password is read from the terminal without echo (twice), or from the first line of
    standard input when that is not a terminal; never from the command line.
    """
    from payscore.config import parse_dashboard_users
    from payscore.dashboard.auth import hash_password as bcrypt_hash

    if sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < MIN_PASSWORD_CHARS:
        raise InputError(f"the password needs at least {MIN_PASSWORD_CHARS} characters")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise InputError(f"the password must fit in {MAX_PASSWORD_BYTES} bytes (bcrypt's limit)")
    entry = f"{name}:{bcrypt_hash(password)}"
    try:
        parse_dashboard_users(entry)
    except ValueError as e:
        raise InputError(str(e)) from e
    # Only the hash is printed; the password itself is never shown or logged.
    console.print(entry, markup=False, highlight=False, soft_wrap=True)
