"""Names in the MLflow record (tags, statuses, per-report metrics) and the default store.

Kept apart from :mod:`trainables.mlflow_record` (which subclasses a Ray Tune callback) so
that readers of the record, such as ``analysis/``, do not import Ray.
"""

from __future__ import annotations

import os

TRIAL_TAG = "lorasweep.trial_id"
SWEEP_TAG = "lorasweep.sweep"
STATUS_TAG = "lorasweep.status"
KIND_TAG = "lorasweep.kind"
PARENT_TAG = "mlflow.parentRunId"
#: The Ray node id a trial trained on (``ray.get_runtime_context().get_node_id()``).
NODE_TAG = "lorasweep.ray_node_id"

#: Per-report metrics logged at the report's optimizer step.
REPORT_METRICS = ("val_loss", "epoch", "samples_per_s", "tokens_per_s", "peak_mem_mb", "wall_s")

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
