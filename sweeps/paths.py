"""Relative paths given to a sweep, made absolute where they are written: trials run in
folders of their own, where a relative path would name nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
