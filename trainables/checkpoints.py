"""Sweep-wide checkpoint retention: keep the adapters of the best k trials, delete the rest.

Tune keeps each trial's latest checkpoint (``num_to_keep=1``, needed to resume it); this
callback bounds the sweep's disk use as trials finish. It runs after the MLflow recorder, which
has already copied finished trials' adapters (to be written into their MLflow runs). Its
ranking is part of Tune's experiment state (``get_state``), so a resumed sweep still keeps k in
all, counting the trials that ended before the interruption.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune import Callback


class KeepBestCheckpoints(Callback):
    def __init__(self, *, k: int, metric: str, mode: str):
        self.k, self.metric, self.mode = k, metric, mode
        #: Trial id -> (score, the trial's directory in Tune storage).
        self._finished: dict[str, tuple[float, str]] = {}
        self._fs: Any = None
        self.deleted: list[str] = []
        #: Bytes of the checkpoints deleted (what keeping every trial's would have added).
        self.deleted_bytes = 0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fs": None}

    def _score(self, trial: Any) -> float:
        # The metric of the trial's last report: Tune keeps the trial's latest checkpoint, so
        # that is the value of the checkpoint kept (not the trial's best-ever report, which an
        # overfitting trial's last checkpoint no longer has).
        value = (getattr(trial, "last_result", None) or {}).get(self.metric)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return math.inf
        return value if self.mode == "min" else -value

    def _add(self, trial: Any, score: float) -> None:
        storage = getattr(trial, "storage", None)
        if storage is None:
            return
        self._fs = storage.storage_filesystem
        self._finished[trial.trial_id] = (score, storage.trial_fs_path)
        self._prune()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._add(trial, self._score(trial))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._add(trial, math.inf)

    def _prune(self) -> None:
        ranked = sorted(self._finished.items(), key=lambda kv: kv[1][0])
        for tid, (_, path) in ranked[self.k:]:
            if tid not in self.deleted:
                freed = _delete_checkpoints(self._fs, path)
                if freed is not None:
                    self.deleted.append(tid)
                    self.deleted_bytes += freed

    def get_state(self) -> dict[str, Any]:
        return {"finished": dict(self._finished), "deleted": list(self.deleted),
                "deleted_bytes": self.deleted_bytes}

    def set_state(self, state: dict[str, Any]) -> None:
        self._finished.update({tid: tuple(v) for tid, v in state.get("finished", {}).items()})
        self.deleted = list(dict.fromkeys([*state.get("deleted", []), *self.deleted]))
        self.deleted_bytes += state.get("deleted_bytes", 0)


def _delete_checkpoints(fs: Any, root: str) -> int | None:
    """Remove the ``checkpoint_*`` directories under a trial's directory in Tune storage
    (local or cloud); the bytes freed, or None when it cannot be read."""
    import pyarrow.fs as pafs

    try:
        infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    except OSError:
        return None
    freed = 0
    for info in infos:
        if info.type == pafs.FileType.Directory and info.base_name.startswith("checkpoint_"):
            files = fs.get_file_info(pafs.FileSelector(info.path, recursive=True))
            freed += sum(f.size or 0 for f in files if f.type == pafs.FileType.File)
            fs.delete_dir(info.path)
    return freed
