"""Paths given to a sweep: relative ones made absolute where they are written (trials run in
folders of their own, where a relative path would name nothing), and ``~user`` ones checked
(expanded where they are read, they would fail there)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trainables.errors import UserError


def in_folder(value: Any, *folders: Path) -> Any:
    """``value`` as an absolute path where it is a relative path to something in one of
    ``folders`` (the first that has it; each item of a list), else unchanged (a bundled model's
    alias too): trials run in folders of their own, where the relative path would name nothing."""
    if isinstance(value, (list, tuple)):  # eval.compare_models, whose "tuned" is the trial's model
        return [v if v == "tuned" else in_folder(v, *folders) for v in value]
    from trainables.offline.registry import MODEL_ALIASES

    if isinstance(value, str) and not value.startswith("~") and value not in MODEL_ALIASES \
            and not Path(value).is_absolute():  # ~ is expanded where read
        for folder in folders:
            if (folder / value).exists():
                return str((folder / value).resolve())
    return value


def check_home(flag: str, value: Any) -> None:
    """Refuse a path beginning ``~user`` for a user without a home directory here (the path
    is expanded wherever it is read, and expanding it would fail there; ``os.path.expanduser``
    would leave it a relative folder named ``~user``). A ``sqlite:///`` URI's path, and each
    item of a list, likewise."""
    if isinstance(value, (list, tuple)):
        for v in value:
            check_home(flag, v)
        return
    if isinstance(value, str) and value.startswith("sqlite:///"):
        value = value.removeprefix("sqlite:///").split("?", 1)[0]
    if isinstance(value, str) and value.startswith("~"):
        try:
            Path(value).expanduser()
        except RuntimeError:
            user = value[1:].split("/", 1)[0]
            raise UserError(flag, f"{value!r} begins with ~{user}, and there is no user {user!r} with a home "
                                  "directory here; give the path in full") from None


def check_homes(data: dict[str, Any], settings: Iterable[tuple[str, ...]]) -> None:
    """:func:`check_home` on each of ``settings`` (key paths) that the sweep settings ``data``
    (as a preset writes them) give; named as ``--set`` takes them (``data.source``)."""
    for keys in settings:
        node: Any = data
        for k in keys:
            node = node.get(k) if isinstance(node, dict) else None
        if node is not None:
            check_home(".".join(keys).removeprefix("trial."), node)
