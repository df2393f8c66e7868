"""``python -m sweeps.export --register NAME``: the checks made before anything is written (a
name the MLflow Model Registry accepts, a registry that answers and whose ``NAME``, if it
exists, is a model, a trial's run that MLflow can log a model to) and the registration."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trainables.errors import UserError, first_line

#: The folder of the export directory that holds, for ``--register``, the base with the trial's
#: head (a classifier's): MLflow loads a registered adapter's base from a folder without arguments.
REGISTERED_BASE = "base"
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


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("torch", "transformers", "peft")]


def needs_own_base(meta: dict[str, Any]) -> bool:
    """Whether the adapter's base takes ``from_pretrained`` arguments (a classifier's head:
    its labels), which MLflow does not pass when it loads a registered adapter's base."""
    return meta.get("method") != "full" and bool(meta["base_loading"]["kwargs"])


def register(model: Any, out: Path, cfg: Any, meta: dict[str, Any], trial: Any, *, name: str, uri: str) -> None:
    """A new version of the registered model ``name`` (MLflow's transformers flavour), logged
    as a model of the trial's run. An adapter is logged as peft's adapter with a reference to
    its base: the export's ``base`` folder where the base takes arguments (a classifier's, saved
    with the trial's head: MLflow loads it with ``from_pretrained(folder)`` alone), else a local
    base directory by path, a hub model by its id."""
    import mlflow
    import torch
    from huggingface_hub import ModelCard
    from transformers import AutoTokenizer

    from trainables.models import model_source
    from trainables.tasks.registry import get_task

    peft_model = type(model).__name__.startswith("Peft")
    source = model_source(cfg)
    if peft_model and needs_own_base(meta):  # written by export()
        source = str((out / REGISTERED_BASE).resolve())
    task = "text-generation" if meta["base_loading"]["auto_class"] == "AutoModelForCausalLM" else "text-classification"
    tokenizer = AutoTokenizer.from_pretrained(out)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=trial.info.experiment_id)
    info = mlflow.transformers.log_model(
        transformers_model={"model": model, "tokenizer": tokenizer}, name="model",
        task=task, registered_model_name=name, run_id=trial.info.run_id, pip_requirements=_requirements(),
        model_card=ModelCard((out / "README.md").read_text()),
        base_model_path=source if peft_model and Path(source).is_dir() else None,
        # A registered adapter's pipeline loads its base's generation config: the trial's
        # decoding goes with every predict call, and the base loads in the trial's dtype.
        model_config=get_task(cfg.task).decoding(cfg, tokenizer), torch_dtype=getattr(torch, cfg.model.dtype))
    print(f"registered: MLflow model {name!r} version {info.registered_model_version} ({info.model_uri})")
