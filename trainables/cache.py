"""Content-keyed build-once directories (tokenised datasets, offline assets).

A directory is built into a temporary sibling and renamed into place under a file lock, so
concurrent trials or a driver and its trials never see a half-written cache, and the second
caller just opens what the first built. Keys are hashes of everything the content depends on
(data file contents, tokenizer, preprocessing settings, code version), so a stale cache is
never reused and nothing needs invalidating by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

_COMPLETE = ".complete"


def fingerprint(obj: Any, *, length: int = 16) -> str:
    """Stable short hash of plain data (dict keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def file_digest(path: str | Path) -> str:
    """sha256 of a file's contents (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tokenizer_digest(tokenizer: Any) -> str:
    """Hash of a fast tokenizer's full definition plus its special tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else repr(tokenizer.get_vocab())
    specials = {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())}
    return fingerprint({"tokenizer": hashlib.sha256(body.encode()).hexdigest(), "special": specials})


def source_identity(source: str, revision: str | None,
                    local_files: Callable[[Path], dict[str, Path]]) -> Any:
    """What identifies a task's data in a cache key: the digests of the files a local source
    provides (``local_files(path)``: role -> file), or the hub name and revision."""
    path = Path(source).expanduser()
    if path.exists():
        return {k: file_digest(v) for k, v in sorted(local_files(path).items())}
    return {"hub": source, "revision": revision}


def is_built(path: Path) -> bool:
    return (path / _COMPLETE).exists()


def build_once(root: str | Path, key: str, build: Callable[[Path], None]) -> Path:
    """``root/key``, built by ``build(tmp_dir)`` the first time (by one process only)."""
    from filelock import FileLock

    root = Path(root)
    final = root / key
    if is_built(final):
        return final
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{key}.lock")):
        if is_built(final):
            return final
        tmp = root / f".{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            build(tmp)
            (tmp / _COMPLETE).write_text("ok\n")
            shutil.rmtree(final, ignore_errors=True)  # a half-built leftover from a crash
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final
