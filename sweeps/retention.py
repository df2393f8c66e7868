"""Checkpoint retention that never deletes what a resume would need.

Two kinds of checkpoints become deletable during a sweep: a trial's earlier checkpoints once
it reports a newer one (*superseded*), and the checkpoints of finished trials outside the best
k of the whole sweep (*pruned*, ``keep_best_k``; a ``train``-shape trial's Ray Train
checkpoints in ``<storage>/<sweep>-<trial id>-train`` too). Deleting either at once loses
the race with Tune's experiment snapshot, which is written up to ~10 s later: a driver killed
in between leaves a snapshot that names a deleted checkpoint, and ``--resume`` cannot restore
that trial.

So Tune keeps every checkpoint (``num_to_keep=None``) and this callback queues them. Each time
Tune writes a snapshot (``get_state``) and when the sweep ends (:meth:`finish`), it reads the
newest snapshot already in storage and deletes a queued checkpoint only when that snapshot no
longer needs it: the trial's checkpoint there is a newer one, or the trial has ended there.
A checkpoint that an MLflow end record still has to read its adapter from (``pinned``) waits
for that write. The queue, the ranking and what was deleted are part of Tune's experiment
state, so a resumed sweep goes on where the killed one stopped. Deleting never raises into
Tune's event loop: a failure (a full disk, a denied S3 DeleteObject) is listed and the sweep
goes on.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback

from trainables.errors import first_line

#: Tune's checkpoint directory names (``checkpoint_000003``); Ray Train's are timestamps.
_INDEX = re.compile(rb"checkpoint_(\d{6})(?![\d-])")
_ENDED = ("TERMINATED", "ERROR")


class CheckpointRetention(Callback):
    def __init__(self, *, k: int, metric: str, mode: str):
        self.k, self.metric, self.mode = k, metric, mode
        #: Trial id -> (score, its directories whose checkpoints go when it is pruned).
        self._finished: dict[str, tuple[float, list[str]]] = {}
        #: The finished trials best first: (score, order finished, trial id); equal scores in
        #: the order the trials finished. Kept sorted as trials finish (see ``_add``).
        self._ranked: list[tuple[float, int, str]] = []
        self._order: dict[str, int] = {}
        #: Trials ever queued for pruning, and those whose pruning failed (queued again).
        self._pruning: set[str] = set()
        self._retry: set[str] = set()
        #: Waiting deletions: {"tid", "path", "kind": "superseded" | "pruned", "index"}.
        self._queue: list[dict[str, Any]] = []
        self._experiment: str | None = None
        self._fs: Any = None
        #: Checkpoints that must stay for now (set by the runner; see the module docstring).
        self.pinned: Callable[[], set[str]] = set
        self.deleted: list[str] = []
        """Trials whose checkpoints were pruned."""
        self.deleted_bytes = 0
        """Bytes of the checkpoints pruned (what keeping every trial's would have added)."""
        self.superseded_bytes = 0
        self.failed: list[str] = []
        """Deletions that failed: ``path: reason``."""

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fs": None, "pinned": set}

    # ------------------------------------------------------------------ Tune hooks
    def _storage(self, trial: Any) -> Any:
        storage = getattr(trial, "storage", None)
        if storage is not None and self._fs is None:
            self._fs = storage.storage_filesystem
            self._experiment = storage.experiment_fs_path
        return storage

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        """Called before Tune registers ``checkpoint``: the trial's current one is superseded."""
        self._storage(trial)
        previous = getattr(trial, "checkpoint", None)
        if previous is not None:
            self._queue.append({"tid": trial.trial_id, "path": previous.path, "kind": "superseded",
                                "index": _index(previous.path)})
        _forget_superseded(trial)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._add(trial, self._score(trial))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._add(trial, math.inf)

    def get_state(self) -> dict[str, Any]:
        """Called while Tune writes a snapshot: first delete what the last one in storage
        no longer needs."""
        self._process()
        return {"finished": {t: [s, d] for t, (s, d) in self._finished.items()}, "queue": list(self._queue),
                "deleted": list(self.deleted), "deleted_bytes": self.deleted_bytes,
                "superseded_bytes": self.superseded_bytes, "failed": list(self.failed),
                "experiment": self._experiment}

    def set_state(self, state: dict[str, Any]) -> None:
        self._finished.update({t: (float(s), list(d)) for t, (s, d) in state.get("finished", {}).items()})
        queued = {q["path"] for q in self._queue}
        self._queue = [q for q in state.get("queue", []) if q["path"] not in queued] + self._queue
        self.deleted = list(dict.fromkeys([*state.get("deleted", []), *self.deleted]))
        self.deleted_bytes += state.get("deleted_bytes", 0)
        self.superseded_bytes += state.get("superseded_bytes", 0)
        self.failed += state.get("failed", [])
        self._experiment = self._experiment or state.get("experiment")
        self._order = {tid: i for i, tid in enumerate(self._finished)}
        self._ranked = sorted((score, self._order[tid], tid) for tid, (score, _) in self._finished.items())
        self._pruning = {q["tid"] for q in self._queue if q["kind"] == "pruned"} | set(self.deleted)
        self._retry = {tid for _, _, tid in self._ranked[self.k:]} - self._pruning

    @property
    def waiting(self) -> int:
        """Deletions still queued."""
        return len(self._queue)

    def finish(self, experiment_path: str) -> None:
        """At the end of the sweep, after Tune's last snapshot is in storage
        (``experiment_path``: the sweep's directory in Tune storage, a path or URI)."""
        if self._fs is None:
            from sweeps.tracking.writer import storage_fs

            self._fs, self._experiment = storage_fs(experiment_path)
        self._process(final=True)

    # ------------------------------------------------------------------ ranking
    def _score(self, trial: Any) -> float:
        # The metric of the trial's last report: the checkpoint kept is the trial's latest, so
        # that is its value (not the trial's best-ever report, which an overfitting trial's
        # last checkpoint no longer has).
        value = (getattr(trial, "last_result", None) or {}).get(self.metric)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return math.inf
        return value if self.mode == "min" else -value

    def _add(self, trial: Any, score: float) -> None:
        storage = self._storage(trial)
        if storage is None:
            return
        dirs = [storage.trial_fs_path]
        train_ckpt = (getattr(trial, "last_result", None) or {}).get("checkpoint_path")
        if train_ckpt:  # the 'train' shape: Ray Train's run directory holds the checkpoints
            dirs.append(str(train_ckpt).rstrip("/").rsplit("/", 1)[0])
        tid = trial.trial_id
        entry = self._rank(tid, score)
        self._finished[tid] = (score, dirs)
        # One trial's end moves at most one trial out of the best k: itself, or the one it
        # pushed from the k-th place (every trial further down was queued when it fell out).
        out = [t for t in (self._ranked[self.k][2] if len(self._ranked) > self.k else None,
                           tid if bisect.bisect_left(self._ranked, entry) >= self.k else None)
               if t is not None and t not in self._pruning]
        if self._retry:  # pruning that failed: queued again unless queued or done since
            done = {q["tid"] for q in self._queue if q["kind"] == "pruned"} | set(self.deleted)
            out += list(self._retry - done)
            self._retry.clear()
        places = {t: bisect.bisect_left(self._ranked, self._entry(t)) for t in set(out)}
        for t in sorted((t for t in places if places[t] >= self.k), key=places.get):
            self._pruning.add(t)
            self._queue += [{"tid": t, "path": p, "kind": "pruned", "index": None} for p in self._finished[t][1]]

    def _entry(self, tid: str) -> tuple[float, int, str]:
        return (self._finished[tid][0], self._order[tid], tid)

    def _rank(self, tid: str, score: float) -> tuple[float, int, str]:
        """Put a finished trial in its place among the finished trials (again, with its new
        score, when it finishes again: a resumed trial); its ranking entry."""
        if tid in self._order:
            del self._ranked[bisect.bisect_left(self._ranked, self._entry(tid))]
        entry = (score, self._order.setdefault(tid, len(self._order)), tid)
        bisect.insort(self._ranked, entry)
        return entry

    # ------------------------------------------------------------------ deleting
    def _process(self, *, final: bool = False) -> None:
        """Delete what no snapshot in storage needs any more. During the sweep a snapshot that
        cannot be read (Tune may be writing it) is tried again at the next one; after the last
        (``final``) that is a failure."""
        if not self._queue or self._fs is None or self._experiment is None:
            return
        try:
            named = persisted_snapshot(self._fs, self._experiment, {q["tid"] for q in self._queue})
        except Exception as e:  # noqa: BLE001
            if final:
                self._note_failure(self._experiment, e)
            return
        if named is None:
            return
        pinned = self.pinned()
        waiting = []
        for q in self._queue:
            status, latest = named.get(q["tid"], (None, None))
            needed = status is None or (status not in _ENDED and (q["kind"] == "pruned" or latest is None
                                                                   or q["index"] is None
                                                                   or q["index"] >= latest))
            if needed or any(p == q["path"] or p.startswith(q["path"].rstrip("/") + "/") for p in pinned):
                waiting.append(q)
                continue
            self._delete(q)
        self._queue = waiting

    def _delete(self, q: dict[str, Any]) -> None:
        try:
            if q["kind"] == "superseded":
                self.superseded_bytes += _delete_dir(self._fs, q["path"])
                return
            self.deleted_bytes += sum(_delete_dir(self._fs, p) for p in _checkpoint_dirs(self._fs, q["path"]))
            if q["tid"] not in self.deleted:
                self.deleted.append(q["tid"])
        except Exception as e:  # noqa: BLE001 - a failed deletion must not stop the sweep
            self._note_failure(q["path"], e)
            if q["kind"] == "pruned":
                self._retry.add(q["tid"])

    def _note_failure(self, path: str, error: BaseException) -> None:
        entry = f"{path}: {first_line(error)}"
        if entry not in self.failed:
            self.failed.append(entry)


def persisted_snapshot(fs: Any, experiment: str, trial_ids: set[str] | None = None,
                       ) -> dict[str, tuple[str, int | None]] | None:
    """From the newest experiment snapshot in storage (what ``--resume`` would restore): trial
    id -> (its status, the index of the checkpoint a restore would use), for ``trial_ids``
    (default: every trial). None when there is no snapshot yet.

    Only the snapshot's JSON is parsed; a trial's checkpoint list is an encoded pickle inside it,
    searched for checkpoint directory names without being unpickled. The snapshot holds every
    trial of the sweep: only the trials asked for have their run metadata (the larger part)
    parsed.
    """
    import pyarrow.fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(experiment, allow_not_found=True))
    names = sorted(i.base_name for i in infos
                   if i.base_name.startswith("experiment_state-") and i.base_name.endswith(".json"))
    if not names:
        return None
    with fs.open_input_stream(f"{experiment.rstrip('/')}/{names[-1]}") as fh:
        state = json.loads(fh.read().decode())
    out: dict[str, tuple[str, int | None]] = {}
    for trial_json, metadata_json in state["trial_data"]:
        trial = json.loads(trial_json)
        if trial_ids is not None and trial["trial_id"] not in trial_ids:
            continue
        manager = json.loads(metadata_json).get("checkpoint_manager") or {}
        blob = bytes.fromhex(manager.get("value", "")) if isinstance(manager, dict) else b""
        indices = [int(m) for m in _INDEX.findall(blob)]
        out[trial["trial_id"]] = (trial["status"], max(indices) if indices else None)
    return out


def _forget_superseded(trial: Any) -> None:
    """Drop the results of a trial's superseded checkpoints from Tune's own list of them (it
    keeps them all with ``num_to_keep=None``), so that the experiment state does not grow with
    every report; the latest stays (the one a restore uses)."""
    manager = getattr(getattr(trial, "run_metadata", None), "checkpoint_manager", None)
    latest = getattr(manager, "latest_checkpoint_result", None)
    if manager is not None and isinstance(getattr(manager, "_checkpoint_results", None), list):
        manager._checkpoint_results = [r for r in manager._checkpoint_results if r is latest]


def _index(path: str) -> int | None:
    found = _INDEX.findall(path.encode())
    return int(found[-1]) if found else None


def _checkpoint_dirs(fs: Any, root: str) -> list[str]:
    """The ``checkpoint_*`` directories directly under ``root`` (none when it is gone)."""
    import pyarrow.fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    return [i.path for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")]


def _delete_dir(fs: Any, path: str) -> int:
    """Delete a directory in the storage filesystem; the bytes freed (0 when it is gone)."""
    import pyarrow.fs as pafs

    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return 0
    files = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    freed = sum(f.size or 0 for f in files if f.type == pafs.FileType.File)
    fs.delete_dir(path)
    return freed


def latest_checkpoint_path(trial: Any, last: dict[str, Any]) -> str | None:
    """A trial's final checkpoint, as a path in the storage filesystem."""
    if last.get("checkpoint_path"):  # the 'train' shape: TuneReportCallback's path
        return str(last["checkpoint_path"])
    ckpt = getattr(trial, "checkpoint", None)
    return ckpt.path if ckpt is not None else None


def checkpoint_contents(fs: Any, path: str, tmp: Path) -> dict[str, Path]:
    """The adapter (``adapter/``, and ``trial_adapter/`` where the trial's layout is not
    peft's standard one) and generated-outputs directories of a checkpoint, on this machine: in place
    on a local or shared filesystem, else copied into ``tmp``. Raises OSError when the
    checkpoint is gone or cannot be read."""
    import pyarrow.fs as pafs

    from trainables.checkpointing import ADAPTER_DIR, OUTPUTS_DIR, TRIAL_ADAPTER_DIR

    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{path} is gone")
    subs = [sub for sub in (ADAPTER_DIR, TRIAL_ADAPTER_DIR, OUTPUTS_DIR)
            if fs.get_file_info(f"{path}/{sub}").type == pafs.FileType.Directory]
    if isinstance(fs, pafs.LocalFileSystem):
        return {sub: Path(path) / sub for sub in subs}
    for sub in subs:
        pafs.copy_files(f"{path}/{sub}", str(tmp / sub), source_filesystem=fs,
                        destination_filesystem=pafs.LocalFileSystem())
    return {sub: tmp / sub for sub in subs}
