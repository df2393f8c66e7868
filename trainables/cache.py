"""Content-keyed build-once directories (tokenised datasets, offline assets).

A directory is built into a temporary sibling (named by host, pid and a random id) and renamed
into place under a file lock, so concurrent trials or a driver and its trials never see a
half-written cache, and the second caller just opens what the first built; a cache completed
by another host meanwhile is never replaced. Keys are hashes of everything the content depends on
(data file contents, tokenizer, preprocessing settings, code version), so a stale cache is
never reused and nothing needs invalidating by hand. A file's digest is computed once per process
while the file stays unchanged (:func:`settled_file_digest`), so a hub copy's files are read once
for a preparation's key and its ``datasets`` cache folder.

:func:`memoised` keeps small JSON results the same way: values that take seconds only because
computing them needs torch or transformers imported (a tokenizer's digest, the checks of a
model's module tree), so that a sweep's driver need not import them when nothing changed.
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
    """Hash of a fast tokenizer's full definition plus its special tokens and chat template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else repr(tokenizer.get_vocab())
    specials = {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())}
    return fingerprint({"tokenizer": hashlib.sha256(body.encode()).hexdigest(), "special": specials,
                        "chat_template": getattr(tokenizer, "chat_template", None)})


def source_identity(source: str, revision: str | None, local_files: Callable[[Path], dict[str, Path]], *,
                    copy: Path | None = None) -> dict[str, Any]:
    """What identifies a task's data in a cache key: ``{"hub_copy": ...}`` for a local copy of a
    hub dataset ``copy`` (:func:`hub_copy_identity`), the digests of the files a local source
    provides (``local_files(path)``: role -> file), or the hub name and revision."""
    if copy is not None:
        return {"hub_copy": hub_copy_identity(copy)}
    path = Path(source).expanduser()
    if path.exists():
        return {k: file_digest(v) for k, v in sorted(local_files(path).items())}
    return {"hub": source, "revision": revision}


def hub_copy_files(d: Path) -> dict[str, Path]:
    """A hub copy's files by their path in it, less the download tool's own records
    (``.cache/``, ``.git/``)."""
    return {str(f.relative_to(d)): f for f in sorted(d.rglob("*"))
            if f.is_file() and not {".cache", ".git"} & set(f.relative_to(d).parts)}


def hub_copy_identity(d: Path) -> dict[str, str]:
    """What a hub copy's prepared data depends on: every file's sha256 by its path
    (:func:`hub_copy_files`), each file read once per process while it stays as it is
    (:func:`settled_file_digest`)."""
    return {name: settled_file_digest(f) for name, f in hub_copy_files(d).items()}


#: Seconds since a file's last change (its ctime) after which what was read of it is kept.
SETTLED_S = 2.0
_SETTLED_DIGESTS: dict[tuple[str, int, int, int, int], str] = {}


def settled_version(path: str | Path) -> tuple[str, int, int, int, int] | None:
    """The file's path, inode, size, mtime and ctime, once its ctime is ``SETTLED_S`` old (None
    before, or without the file): what is read of it may be kept under this key for the
    process. Any later write or ``touch`` sets the ctime to the time of that change, which the
    file system's clock tick (milliseconds, a second on some file systems) tells from one
    ``SETTLED_S`` earlier; a file changed more recently is read every time, since a second write
    within the same tick would leave all five alike."""
    import time

    try:
        st = os.stat(path)
    except OSError:
        return None
    if time.time_ns() - st.st_ctime_ns <= SETTLED_S * 1e9:
        return None
    return str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def settled_file_digest(path: Path) -> str:
    """:func:`file_digest`, kept for the process by :func:`settled_version` (a file that changes
    while it is read is not kept)."""
    key = settled_version(path)
    if key is not None and key in _SETTLED_DIGESTS:
        return _SETTLED_DIGESTS[key]
    digest = file_digest(path)
    if key is not None and settled_version(path) == key:
        _SETTLED_DIGESTS[key] = digest
    return digest


#: Weight files of a model directory, in every format a hub repository may hold (a full
#: download of gpt2-medium or roberta-base also brings rust_model.ot, tf_model.h5,
#: flax_model.msgpack and, for gpt2, 64.tflite): never read to identify the model.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".onnx",
                   ".ot", ".tflite")


def local_model_identity(source: str | Path) -> dict[str, str] | None:
    """The digests of a local model directory's files other than its weights (config,
    tokenizer, chat template, ...), or None for a hub id (not a local directory)."""
    path = Path(source).expanduser()
    if not path.is_dir():
        return None
    return {f.name: file_digest(f) for f in sorted(path.iterdir())
            if f.is_file() and not f.name.endswith(WEIGHT_SUFFIXES)}


def library_versions(*names: str) -> dict[str, str | None]:
    """Installed versions of ``names`` (None when not installed)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


_CODE_VERSION: str | None = None


def code_version() -> str:
    """Hash of lorasweep's own trainable-side code (every ``.py`` and data file of the
    ``trainables`` package): a memoised result computed by an older version is not reused."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        root = Path(__file__).resolve().parent
        h = hashlib.sha256()
        for f in sorted(root.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
        _CODE_VERSION = h.hexdigest()[:16]
    return _CODE_VERSION


def memoised(kind: str, inputs: Any, compute: Callable[[], Any]) -> Any:
    """What ``compute()`` returned for the same ``inputs`` before, or its value now (stored as
    ``<cache>/memo/<kind>-<hash of inputs>.json``). ``inputs`` must hold everything the value
    depends on (file digests, library versions, :func:`code_version`); the value must be plain
    JSON. A ``compute()`` that raises stores nothing, and a cache that cannot be written only
    costs the next call the same computation."""
    from trainables.paths import cache_dir

    path = cache_dir() / "memo" / f"{kind}-{fingerprint(inputs, length=24)}.json"
    try:
        return json.loads(path.read_text())["value"]
    except (OSError, ValueError, KeyError):
        pass
    value = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{_builder_id()}")
        tmp.write_text(json.dumps({"inputs": inputs, "value": value}, sort_keys=True, default=str))
        os.replace(tmp, path)
    except OSError:
        pass
    return value


def memoised_on_model(kind: str, source: str | Path, compute: Callable[[], Any], *,
                      libraries: tuple[str, ...], **inputs: Any) -> Any:
    """``compute()``, :func:`memoised` on a local model directory's non-weight files
    (:func:`local_model_identity`), ``inputs``, the versions of ``libraries`` and
    :func:`code_version`. For a hub id (its files come from the hub cache or the hub) it is
    computed every time."""
    files = local_model_identity(source)
    if files is None:
        return compute()
    return memoised(kind, {**inputs, "model": files, "libraries": library_versions(*libraries),
                           "code": code_version()}, compute)


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
        tmp = root / f".{key}.tmp-{_builder_id()}"
        tmp.mkdir(parents=True)
        try:
            build(tmp)
            (tmp / _COMPLETE).write_text("ok\n")
            # On a cache shared between hosts (NFS) the lock may not exclude a builder on
            # another host: what it completed meanwhile is kept, and this build dropped.
            if not is_built(final):
                shutil.rmtree(final, ignore_errors=True)  # a half-built leftover from a crash
                os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _builder_id() -> str:
    """A name no other build uses, on any host sharing the cache (a pid alone repeats across
    hosts)."""
    import socket
    import uuid

    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
