"""Where a warm start's adapter comes from: a directory, or an MLflow run.

``adapter.init_from`` names the adapter whose LoRA weights initialise a trial's adapter (the
LoRA paper started MRPC, RTE and STS-B from its best MNLI adapter):

* a directory written by peft's ``save_pretrained`` (``adapter_model.safetensors``);
* ``runs:/<run_id>``: a trial run's ``adapter`` artifact, or, for a sweep's parent run, the
  adapter of its best completed trial by the sweep task's metric.

MLflow downloads go once into the cache (``<cache>/adapters/<run_id>``). The driver resolves
and checks every value before launch; trials get the local paths.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainables.errors import UserError

FIELD = "adapter.init_from"


def _best_child(client: Any, parent: Any) -> str:
    from trainables.mlflow_names import COMPLETED, KIND_TAG, PARENT_TAG, STATUS_TAG
    from trainables.tasks import get_task

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
    return (max(scored) if task.metric.mode == "max" else min(scored))[1]


def resolve_init_from(value: str, tracking_uri: str) -> Path:
    """A local adapter directory for ``value`` (downloaded from MLflow once)."""
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
    db = tracking_uri.removeprefix("sqlite:///") if tracking_uri.startswith("sqlite:///") else None
    if db is not None and not Path(db).is_file():  # the client would create an empty store
        raise UserError(FIELD, f"no MLflow run {run_id} in {tracking_uri} (no store there yet)")
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UserError(FIELD, f"no MLflow run {run_id} in {tracking_uri}") from None
    if run.data.tags.get(KIND_TAG) == "sweep":
        run_id = _best_child(client, run)

    def download(d: Path) -> None:
        try:
            client.download_artifacts(run_id, "adapter", str(d))
        except Exception as e:  # no such artifact
            raise UserError(FIELD, f"run {run_id} has no adapter artifact ({str(e).splitlines()[0][:120]})") from None

    return build_once(cache_dir() / "adapters", run_id, download) / "adapter"


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
