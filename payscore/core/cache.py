"""Where payscore keeps what it can rebuild: generated worlds and compiled code.

Never inside the installed package: a site-packages folder may be read-only, and files pip did
not install there survive an uninstall (a left-behind ``payscore/`` folder without its
``__init__.py`` then shadows the next install as an empty namespace package).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ENV = "PAYSCORE_CACHE_DIR"


def cache_dir() -> Path:
    """``$PAYSCORE_CACHE_DIR`` (the ``cache_dir`` setting), else the user cache directory."""
    configured = os.environ.get(ENV)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "payscore"


def writable_subdir(name: str) -> Path | None:
    """``cache_dir()/name``, created, or None when it cannot be created or written."""
    path = cache_dir() / name
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return None
    return path
