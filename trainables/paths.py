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


def check_cache_dir(*, create: bool) -> Path:
    """The cache root (:func:`cache_dir`), refused as one line naming the variable that set it
    when it cannot be a folder: a file, a path that cannot be created or written (``create``:
    it is created here, as the first cache written would), or ``~user`` of an unknown user."""
    from trainables.errors import UserError

    var = next((v for v in ("LORASWEEP_CACHE", "XDG_CACHE_HOME") if os.environ.get(v)), "HOME")
    hint = "; point LORASWEEP_CACHE at a writable folder"
    try:
        root = cache_dir()
    except RuntimeError as e:  # Path.expanduser: ~user of no user here
        raise UserError(var, f"cannot find lorasweep's cache folder ({e}){hint}") from None
    if root.exists() and not root.is_dir():
        raise UserError(var, f"lorasweep's cache folder {root} is a file, not a folder{hint}")
    if create:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(var, f"cannot create lorasweep's cache folder {root} "
                                 f"({e.strerror or type(e).__name__}){hint}") from None
        if unwritable_folder(root) is not None:
            raise UserError(var, f"lorasweep's cache folder {root} is not writable{hint}")
    return root


def unwritable_folder(path: Path) -> Path | None:
    """The nearest existing one of ``path`` and the folders above it, when it is not a
    writable folder (creating ``path``'s missing folders in it would fail); None otherwise."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return None if path.is_dir() and os.access(path, os.W_OK | os.X_OK) else path
