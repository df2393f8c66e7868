"""Names in the MLflow record (tags, statuses, per-report metrics) and the default store.

Kept apart from :mod:`sweeps.tracking.recorder` (which subclasses a Ray Tune callback) so
that readers of the record, such as ``analysis/``, do not import Ray.
"""

from __future__ import annotations

import os
from pathlib import Path

TRIAL_TAG = "lorasweep.trial_id"
SWEEP_TAG = "lorasweep.sweep"
STATUS_TAG = "lorasweep.status"
KIND_TAG = "lorasweep.kind"
PARENT_TAG = "mlflow.parentRunId"
#: The Ray node id a trial trained on (``ray.get_runtime_context().get_node_id()``).
NODE_TAG = "lorasweep.ray_node_id"
#: On a sweep's parent run: the child run and trial id of its best completed trial.
BEST_RUN_TAG = "lorasweep.best_run_id"
BEST_TRIAL_TAG = "lorasweep.best_trial_id"


COMPLETED, STOPPED, FAILED, RUNNING = "completed", "stopped_early", "failed", "running"
#: A child run an interrupted driver left behind for a trial Ray Tune never recorded (see
#: ``MlflowRecorder.close_stale_runs``); its configuration ran again in the resumed sweep.
INTERRUPTED = "interrupted"
#: A trial the sweep's driver was stopping when it stopped (Ctrl-C, SIGTERM, an error): its
#: child run is ``KILLED``; ``--resume`` continues it from its last checkpoint in the same run.
UNFINISHED = "unfinished"


def filter_value(text: str) -> str:
    """``text`` as a string literal in an MLflow search filter. MLflow's filter syntax has no
    escapes: a value holding ``'`` is quoted with ``"`` (sweep names hold at most one kind)."""
    return f'"{text}"' if "'" in text else f"'{text}'"


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlruns.db"


def sqlite_path(uri: str) -> Path | None:
    """The database file a ``sqlite:///`` tracking URI names (``~`` expanded, query dropped);
    None for any other store and for an in-memory database."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path).expanduser() if path and path != ":memory:" else None
