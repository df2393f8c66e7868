"""Where a warm start's adapter comes from: a directory, or an MLflow run.

``adapter.init_from`` names the adapter whose LoRA weights initialise a trial's adapter (the
LoRA paper started MRPC, RTE and STS-B from its best MNLI adapter):

* a directory written by peft's ``save_pretrained`` (``adapter_model.safetensors``);
* ``runs:/<run_id>``: a trial run's adapter, or, for a sweep's parent run, the adapter of its
  best completed trial by the sweep task's metric; in the layout the trial trained in (the
  ``trial_adapter`` artifact where that is not peft's standard one, else ``adapter``);
* ``best:<part>`` (multi-part studies only, see :mod:`sweeps.chain`): the best completed trial
  of another part of the same study, run first in the same command (or found in the MLflow
  experiment), resolved to ``runs:/<run_id>`` before this part launches.

MLflow downloads go once into the cache (``<cache>/adapters/<run_id>``). The driver resolves
and checks every value before launch; trials get the local paths.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainables.errors import UserError, first_line
from trainables.mlflow_names import sqlite_path

FIELD = "adapter.init_from"
BEST_PREFIX = "best:"


def best_trial(client: Any, parent: Any) -> tuple[str, float]:
    """The run id and metric value of the best completed trial of a sweep's parent run
    (``parent``, an MLflow run), by the sweep task's metric."""
    from trainables.mlflow_names import COMPLETED, KIND_TAG, PARENT_TAG, STATUS_TAG
    from trainables.tasks.registry import get_task

    task = get_task(parent.data.params.get("task", ""))
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}' and tags.`{KIND_TAG}` = 'trial' "
                      f"and tags.`{STATUS_TAG}` = '{COMPLETED}'")
    scored = [(r.data.metrics[task.metric.name], r.info.run_id) for r in children
              if task.metric.name in r.data.metrics]
    if not scored:
        raise UserError(FIELD, f"sweep run {parent.info.run_id} has no completed trial with "
                               f"{task.metric.name}")
    value, run_id = max(scored) if task.metric.mode == "max" else min(scored)
    return run_id, value


def latest_sweep(tracking_uri: str, experiment: str, *, study: str, part: str,
                 model: str) -> tuple[Any, str, float] | None:
    """The latest finished sweep of ``study``'s ``part`` on ``model`` in the experiment that has
    a completed trial: (its parent run, its best trial's run id, that trial's metric value);
    None when there is none (or no store yet: a SQLite store is not created by looking)."""
    from mlflow import MlflowClient

    from trainables.mlflow_names import KIND_TAG

    if _no_store(tracking_uri):
        return None
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs(
        [exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=100,
        filter_string=f"tags.`{KIND_TAG}` = 'sweep' and tags.`lorasweep.study` = '{study}' and "
                      f"tags.`lorasweep.part` = '{part}' and params.model = '{model}' and "
                      "attributes.status = 'FINISHED'")
    for run in runs:
        try:
            return (run, *best_trial(client, run))
        except UserError:  # no completed trial in that sweep
            continue
    return None


def _no_store(tracking_uri: str) -> bool:
    """A SQLite tracking URI whose file does not exist (yet)."""
    db = sqlite_path(tracking_uri)
    return db is not None and not db.is_file()


def resolve_init_from(value: str, tracking_uri: str) -> Path:
    """A local adapter directory for ``value`` (downloaded from MLflow once)."""
    if value.startswith(BEST_PREFIX):
        raise UserError(FIELD, f"{value}: best:<part> names another part of a multi-part study, run "
                               "first in the same command (e.g. glue_paper.py --task mnli,rte --set "
                               "adapter.init_from=best:mnli); a single sweep or a search space takes "
                               "a directory or runs:/<run_id>")
    if not value.startswith("runs:/"):
        path = Path(value).expanduser()
        if not (path / "adapter_model.safetensors").is_file():
            raise UserError(FIELD, f"{value} is not an adapter directory (no adapter_model.safetensors)"
                                   " and not runs:/<run_id>")
        return path.resolve()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from trainables.cache import build_once
    from trainables.mlflow_names import KIND_TAG
    from trainables.paths import cache_dir

    run_id = value.removeprefix("runs:/").strip("/").split("/")[0]
    if _no_store(tracking_uri):  # the client would create an empty store
        raise UserError(FIELD, f"no MLflow run {run_id} in {tracking_uri} (no store there yet)")
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UserError(FIELD, f"no MLflow run {run_id} in {tracking_uri}") from None
    if run.data.tags.get(KIND_TAG) == "sweep":
        run_id = best_trial(client, run)[0]

    from trainables.checkpointing import ADAPTER_DIR, TRIAL_ADAPTER_DIR

    names = {a.path for a in client.list_artifacts(run_id)}
    artifact = TRIAL_ADAPTER_DIR if TRIAL_ADAPTER_DIR in names else ADAPTER_DIR

    def download(d: Path) -> None:
        import os

        # MLflow's download bar would print between the sweep's own lines.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        try:
            client.download_artifacts(run_id, artifact, str(d))
        except Exception as e:  # no such artifact
            raise UserError(FIELD, f"run {run_id} has no adapter artifact ({first_line(e, limit=120)})") from None

    return build_once(cache_dir() / "adapters", run_id, download) / artifact


def check_compatible(adapter_dir: Path, *, r: int, modules: tuple[str, ...], value: str) -> None:
    """The source adapter must have this trial's rank and adapt the same module keys."""
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    if cfg.get("r") != r:
        raise UserError(FIELD, f"{value} has rank r={cfg.get('r')}, the trial r={r}; warm starts "
                               "need the same rank")
    theirs = cfg.get("target_modules") or []
    theirs = [theirs] if isinstance(theirs, str) else theirs
    if sorted(theirs) != sorted(modules):
        raise UserError(FIELD, f"{value} adapts {sorted(theirs)}, the trial {sorted(modules)}; use the "
                               "same adapter.targets")
