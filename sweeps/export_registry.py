"""The checks of ``python -m sweeps.export --register NAME`` made before anything is written:
a name the MLflow Model Registry accepts, a registry that answers and whose ``NAME`` (if it
exists) is a model, and a trial's run that MLflow can log a model to."""

from __future__ import annotations

import os
from typing import Any

from trainables.errors import UserError, first_line

#: The tag MLflow puts on a prompt of its registry (prompts and models share one namespace).
PROMPT_TAG = "mlflow.prompt.is_prompt"


class RegisterFailed(Exception):
    """The export is written, its registration failed (after writing: exit code 1)."""


def check_register_name(name: str | None) -> None:
    """A name the MLflow Model Registry accepts: not empty, no '/' or ':', not '.' and not
    beginning with '..'."""
    if name is None:
        return
    if not name.strip():
        raise UserError("--register", "name the registered model, e.g. --register e2e-gpt2-lora")
    if "/" in name or ":" in name or name == "." or name.startswith(".."):
        raise UserError("--register", f"{name!r} is not an MLflow registered model name: it cannot contain "
                                      "'/' or ':' (or be '.' or begin with '..'); use e.g. --register e2e-gpt2-lora")


def check_registry(uri: str, name: str | None, trial: Any) -> None:
    """The trial's run and its experiment are not deleted (MLflow logs no model to them), and
    the registry (``MLFLOW_REGISTRY_URI``, else the tracking store) answers and holds no prompt
    named ``name`` (a version registered there would be a version of the prompt)."""
    if name is None:
        return
    from mlflow import MlflowClient

    from trainables.mlflow_names import filter_value

    run_id = trial.info.run_id
    client = MlflowClient(tracking_uri=uri)  # its registry: MLFLOW_REGISTRY_URI, else the tracking store
    experiment = client.get_experiment(trial.info.experiment_id)
    if experiment.lifecycle_stage == "deleted":  # which deletes its runs too
        raise UserError("--register", f"run {run_id}'s experiment {experiment.name!r} is deleted in this MLflow "
                                      "store and MLflow logs no model to it; restore it (mlflow experiments restore "
                                      f"--experiment-id {experiment.experiment_id}) or export without --register")
    if trial.info.lifecycle_stage == "deleted":
        raise UserError("--register", f"run {run_id} is deleted in this MLflow store and MLflow logs no model to a "
                                      f"deleted run; restore it (mlflow runs restore --run-id {run_id}) or export "
                                      "without --register")
    if "'" in name and '"' in name:  # a name MLflow's filter syntax cannot quote: not looked up
        return
    try:  # a prompt is a registered model to the store, one that get_registered_model does not return
        prompts = client.search_registered_models(
            filter_string=f"name = {filter_value(name)} and tags.`{PROMPT_TAG}` = 'true'", max_results=1)
    except Exception as e:  # MLflow's errors, and the database's own (a registry that is not an MLflow store)
        where = os.environ.get("MLFLOW_REGISTRY_URI") or uri
        raise UserError("--register", f"cannot read the MLflow Model Registry {where} "
                                      f"({first_line(e)}); register where it answers") from None
    if prompts:
        raise UserError("--register", f"{name!r} is a prompt in this MLflow registry, not a model; name another "
                                      "registered model (a new name, or one of its models)")
