"""Where lorasweep keeps files that outlive one process.

Nothing here touches the disk at import time; every function resolves its path when called,
so tests and cluster jobs can redirect it with ``LORASWEEP_CACHE``.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of lorasweep's cache: offline smoke assets and tokenised datasets.

    ``$LORASWEEP_CACHE`` wins; otherwise ``$XDG_CACHE_HOME/lorasweep`` or ``~/.cache/lorasweep``.
    """
    env = os.environ.get("LORASWEEP_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lorasweep"


def unwritable_folder(path: Path) -> Path | None:
    """The nearest existing one of ``path`` and the folders above it, when it is not a
    writable folder (creating ``path``'s missing folders in it would fail); None otherwise."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return None if path.is_dir() and os.access(path, os.W_OK | os.X_OK) else path
