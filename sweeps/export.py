"""A sweep's best adapter, or any trial's, out of MLflow as a directory others can use.

    python -m sweeps.export --run RUN_ID --out DIR      # a trial's run, or a sweep's parent run
    python -m sweeps.export --sweep NAME --out DIR      # the latest sweep of that name
    python -m sweeps.export --study rank_e2e --out DIR  # the study's latest finished sweep

A sweep (its parent run, ``--sweep`` or ``--study``) means its best completed trial (the parent's
``lorasweep.best_run_id`` tag). ``DIR`` gets the trial's adapter as peft saves it (plain
``PeftModel.from_pretrained`` loads it on the unmodified base), the base's tokenizer, for a task
that generates text the trial's decoding (``generation_config.json``: greedy or beam search with
the sweep's ``eval`` settings) and a model card (``README.md``: the sweep, the hyperparameters,
the metrics, how to load it in the trial's ``model.dtype``).

* ``--merge``: the adapter merged into the base (peft ``merge_and_unload``), saved as a plain
  transformers model (``from_pretrained`` loads it without peft).
* ``--register NAME``: also a version of the registered model ``NAME`` in the MLflow Model
  Registry (the transformers flavour; an adapter is logged with a reference to its base; a
  classifier's base, with the trial's head, is saved for it in ``DIR/base``).
* ``--push-to-hub REPO``: also uploaded to the Hugging Face Hub repository ``REPO``.

A mistake (no such run, no adapter, no base model here, an ``--out`` in use): one line, exit 2, nothing written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from sweeps.export_registry import (REGISTERED_BASE, RegisterFailed, check_register_name, check_registry,
                                    needs_own_base, register)
from trainables.errors import UserError, first_line, one_of

EXIT_USAGE = 2
SOURCES = ("--run", "--sweep", "--study")
_EXPECTED = {"--run": "a run id", "--sweep": "a sweep's name", "--study": "a study's name (e.g. rank_e2e)",
             "--tracking-uri": "sqlite:///PATH.db, a database URL or an http(s):// tracking server"}


def build_parser() -> argparse.ArgumentParser:
    from sweeps.cli import _Parser

    p = _Parser(prog="python -m sweeps.export", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", metavar="RUN_ID", help="a trial's MLflow run, or a sweep's parent run (its best trial)")
    source.add_argument("--sweep", metavar="NAME", help="the latest sweep of this name (--name of the sweep)")
    source.add_argument("--study", metavar="STUDY", help="the latest finished sweep of this study (e.g. rank_e2e)")
    p.add_argument("--out", required=True, metavar="DIR", help="the directory to write (new, or empty)")
    p.add_argument("--merge", action="store_true", help="merge the adapter into the base (a plain transformers model)")
    p.add_argument("--register", metavar="NAME", help="register it in the MLflow Model Registry as NAME")
    p.add_argument("--push-to-hub", metavar="REPO", help="upload it to the Hugging Face Hub repository REPO")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlruns.db)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        export(args)
    except UserError as e:
        print(f"error: {e.field}: {e.message}", file=sys.stderr)
        return EXIT_USAGE
    except RegisterFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------- which trial


def _client(uri: str) -> Any:
    """A client for an existing store, only read (:func:`trainables.tracking_db.reader_client`)."""
    from trainables.mlflow_names import sqlite_path
    from trainables.tracking_db import check_file_store_readable, reader_client

    if uri.strip() and sqlite_path(uri) is None:
        from sweeps.tracking.store import check_tracking_uri

        check_file_store_readable("--tracking-uri", uri)  # a folder: before the sweeps' check refuses it
        try:
            check_tracking_uri(uri)
        except UserError as e:
            raise UserError("--tracking-uri", e.message) from None
    return reader_client(uri, "--tracking-uri")


def _get_run(client: Any, run_id: str, field: str, uri: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        raise UserError(field, f"no MLflow run {run_id} in {uri}") from None


def _latest_sweep(client: Any, field: str, value: str, where: str) -> Any:
    from trainables.mlflow_names import KIND_TAG, SWEEP_TAG

    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(ids, filter_string=f"tags.`{KIND_TAG}` = 'sweep' and {where}",
                              order_by=["attributes.start_time DESC"], max_results=1) if ids else []
    if runs:
        return runs[0]
    # What the store has instead: a sweep of several parts is named <name>-<part>.
    tag, what, plural = ((SWEEP_TAG, "sweep", "sweeps") if field == "--sweep"
                         else ("lorasweep.study", "finished sweep of study", "studies"))
    sweeps = client.search_runs(ids, filter_string=f"tags.`{KIND_TAG}` = 'sweep'", max_results=1000) if ids else []
    names = sorted({r.data.tags[tag] for r in sweeps if r.data.tags.get(tag)},
                   key=lambda n: (not n.startswith(f"{value}-"), n))
    if field == "--study" and value in names:  # there, but none of its sweeps finished
        own = [r.data.tags.get(SWEEP_TAG, r.info.run_id) for r in sweeps if r.data.tags.get(tag) == value]
        raise UserError(field, f"no sweep of study {value!r} finished in this MLflow store; export one of its "
                               f"sweeps by name with --sweep: {one_of(own[:8])}")
    more = f" and {len(names) - 8} more" if len(names) > 8 else ""
    has = f"; its {plural}: {one_of(names[:8])}{more}" if names else ""
    raise UserError(field, f"no {what} {value!r} in this MLflow store{has}")


def best_of(client: Any, parent: Any, field: str, uri: str) -> Any:
    """The best completed trial of a sweep's parent run: the one its tag names (a sweep recorded
    without the tag: the best by the task's metric)."""
    from trainables.mlflow_names import BEST_RUN_TAG
    from trainables.warmstart import best_trial

    best = parent.data.tags.get(BEST_RUN_TAG)
    if best:
        return _get_run(client, best, field, uri)
    try:
        return _get_run(client, best_trial(client, parent)[0], field, uri)
    except UserError as e:
        raise UserError(field, e.message) from None


def find_trial(client: Any, args: argparse.Namespace, uri: str) -> tuple[Any, Any]:
    """(the trial run to export, its sweep's parent run or None)."""
    from trainables.mlflow_names import KIND_TAG, PARENT_TAG, SWEEP_TAG, filter_value

    if args.run:
        run = _get_run(client, args.run, "--run", uri)
        kind = run.data.tags.get(KIND_TAG)
        if kind == "sweep":
            return best_of(client, run, "--run", uri), run
        if kind != "trial":
            raise UserError("--run", f"run {args.run} is not a lorasweep trial or sweep run")
        parent = run.data.tags.get(PARENT_TAG)
        return run, (_get_run(client, parent, "--run", uri) if parent else None)
    if args.sweep:
        parent = _latest_sweep(client, "--sweep", args.sweep, f"tags.`{SWEEP_TAG}` = {filter_value(args.sweep)}")
        return best_of(client, parent, "--sweep", uri), parent
    parent = _latest_sweep(client, "--study", args.study, f"tags.`lorasweep.study` = {filter_value(args.study)} "
                                                            "and attributes.status = 'FINISHED'")
    return best_of(client, parent, "--study", uri), parent


def _field(args: argparse.Namespace) -> str:
    return next(f for f in SOURCES if getattr(args, f.removeprefix("--")))


def check_has_adapter(client: Any, trial: Any, field: str) -> None:
    from trainables.checkpointing import ADAPTER_DIR
    from trainables.mlflow_names import COMPLETED, STATUS_TAG

    names = {a.path for a in client.list_artifacts(trial.info.run_id)}
    if ADAPTER_DIR not in names or "trial_config.json" not in names:
        status = trial.data.tags.get(STATUS_TAG, trial.info.status)
        why = ("only completed trials record theirs; export a completed trial or its sweep" if status != COMPLETED
               else f"its artifact location {trial.info.artifact_uri} does not hold it (moved, or never logged)")
        raise UserError(field, f"run {trial.info.run_id} ({status}) has no adapter in MLflow: {why}")


# --------------------------------------------------------------------------- checks before writing


def check_out(out: Path) -> None:
    if not str(out).strip() or out == Path():
        raise UserError("--out", "name a new directory to write (e.g. --out best-adapter/)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError("--out", f"{out} exists and is not an empty directory; name a new one")
    base = next(p for p in out.absolute().parents if p.exists())
    if not base.is_dir():
        raise UserError("--out", f"{base} is a file, not a directory to write {out} in")
    try:  # write access, as the export will need it (a permission check would pass for root)
        os.rmdir(tempfile.mkdtemp(prefix=".lorasweep-export-check-", dir=base))
    except OSError as e:
        raise UserError("--out", f"cannot write in {base} ({e.strerror}); name a directory you can write") from None


def _readable_as_umask_allows(root: Path) -> None:
    """Give ``root`` and everything in it the modes a new file or directory gets under the
    process's umask (a staging directory from ``mkdtemp`` and downloaded files are private)."""
    mask = os.umask(0)
    os.umask(mask)
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def check_hub(repo: str | None) -> None:
    """The repository name and that an upload can happen (a token, not offline)."""
    if repo is None:
        return
    from huggingface_hub import constants, get_token
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError as e:
        raise UserError("--push-to-hub", f"{repo!r} is not a Hub repository id ({first_line(e, limit=None)}); "
                                         "use NAME or NAMESPACE/NAME") from None
    if constants.HF_HUB_OFFLINE:
        raise UserError("--push-to-hub", "HF_HUB_OFFLINE is set: the Hub cannot be reached; unset it to upload")
    if get_token() is None:
        raise UserError("--push-to-hub", "no Hugging Face token: run `hf auth login` or set HF_TOKEN")


# --------------------------------------------------------------------------- the export


def export(args: argparse.Namespace) -> Path:
    """Check everything, then write ``args.out`` (through a staging directory beside it, so
    a failure leaves nothing behind); returns it."""
    from sweeps.checks import check_trial_base
    from trainables.mlflow_names import default_tracking_uri

    for field in (*SOURCES, "--tracking-uri"):
        if (value := getattr(args, field.removeprefix("--").replace("-", "_"))) is not None and not value.strip():
            raise UserError(field, f"is empty; give {_EXPECTED[field]}")
    uri = args.tracking_uri or default_tracking_uri()
    out = Path(args.out).expanduser()
    check_out(out)
    check_hub(args.push_to_hub)
    check_register_name(args.register)
    client = _client(uri)
    trial, parent = find_trial(client, args, uri)
    check_has_adapter(client, trial, _field(args))
    check_registry(uri, args.register, trial)
    with tempfile.TemporaryDirectory(prefix="lorasweep-export-") as tmp:
        adapter = _download(client, trial, Path(tmp))
        cfg, meta = _trial_config(adapter.parent), json.loads((adapter / "lorasweep_adapter.json").read_text())
        check_trial_base(cfg, _field(args))
        if args.register is not None:
            _check_registrable(meta)
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            model = write(stage, adapter, cfg, meta, merge=args.merge)
            if args.register is not None and model is None and needs_own_base(meta):
                load_base(cfg, meta).save_pretrained(stage / REGISTERED_BASE)
            (stage / "README.md").write_text(model_card(trial, parent, cfg, meta, merged=args.merge or
                                                        meta.get("method") == "full", directory=stage))
            _readable_as_umask_allows(stage)
            if out.exists():
                out.rmdir()
            stage.rename(out)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    print(f"exported trial run {trial.info.run_id} ({trial.info.run_name}) to {out.resolve()}")
    if args.register is not None:
        try:
            if model is None:
                model = _load_saved(out, meta) if meta.get("method") == "full" else load_with_adapter(out, cfg, meta)
            register(model, out, cfg, meta, trial, name=args.register, uri=uri)
        except Exception as e:  # the export is written: say so, and why the registration failed
            raise RegisterFailed(f"--register: registering {args.register!r} in MLflow failed ({first_line(e)}); "
                                 f"the export is written to {out.resolve()}") from e
    if args.push_to_hub:
        push(out, args.push_to_hub)
    return out


def _download(client: Any, trial: Any, tmp: Path) -> Path:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client.download_artifacts(trial.info.run_id, "trial_config.json", str(tmp))
    return Path(client.download_artifacts(trial.info.run_id, "adapter", str(tmp)))


def _trial_config(directory: Path) -> Any:
    from trainables.config import TrialConfig
    from trainables.schema import from_dict

    return from_dict(TrialConfig, json.loads((directory / "trial_config.json").read_text()))


def write(stage: Path, adapter: Path, cfg: Any, meta: dict[str, Any], *, merge: bool) -> Any:
    """The adapter (or merged model) and the tokenizer into ``stage``; returns the model
    loaded when one was needed (``--merge``), else None."""
    model = None
    if merge and meta.get("method") != "full":
        from trainables.models import untie_adapted_embeddings

        model = untie_adapted_embeddings(load_with_adapter(adapter, cfg, meta)).merge_and_unload()
        model.save_pretrained(stage)
    else:
        for f in adapter.iterdir():
            if f.name != "README.md":
                shutil.copy2(f, stage / f.name)
    tokenizer = save_preprocessor(cfg, stage)
    if meta["base_loading"]["auto_class"] == "AutoModelForCausalLM":
        from sweeps.export_loading import save_generation_config

        save_generation_config(stage, cfg, tokenizer, model)
    return model


def load_base(cfg: Any, meta: dict[str, Any]) -> Any:
    """The unmodified base the trial started from, with the trial's head, in full precision
    (merging needs real weights: a 4-bit base is loaded unquantised, or dequantised if saved so)."""
    import torch
    import transformers

    from trainables.models import model_source
    from trainables.quantization import unquantised
    from trainables.standard_adapter import base_kwargs

    loading = meta["base_loading"]
    auto = getattr(transformers, loading["auto_class"])
    return unquantised(auto.from_pretrained(model_source(cfg), revision=cfg.model.revision,
                                            dtype=getattr(torch, cfg.model.dtype), **base_kwargs(loading)), cfg)


def load_with_adapter(adapter: Path, cfg: Any, meta: dict[str, Any]) -> Any:
    import warnings

    from peft import PeftModel

    base = load_base(cfg, meta)
    with warnings.catch_warnings():
        # peft 0.21 reads transformers 5's deprecated ``is_gradient_checkpointing`` (a warning, about neither).
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return PeftModel.from_pretrained(base, str(adapter)).eval()


def save_preprocessor(cfg: Any, out: Path) -> Any:
    """The base's tokenizer (as the trial used it: pad = eos where there was no pad), or for an
    image model its image processor; returns the tokenizer (None for an image model)."""
    from trainables.tasks.registry import get_task

    if get_task(cfg.task).peft_task_type == "image_cls":
        from transformers import AutoImageProcessor

        from trainables.models import model_source

        try:
            AutoImageProcessor.from_pretrained(model_source(cfg), revision=cfg.model.revision).save_pretrained(out)
        except OSError:  # a base saved without one (the offline test models)
            pass
        return None
    from trainables.models import load_tokenizer

    tokenizer = load_tokenizer(cfg)
    tokenizer.save_pretrained(out)
    return tokenizer


# --------------------------------------------------------------------------- the model card


def model_card(trial: Any, parent: Any, cfg: Any, meta: dict[str, Any], *, merged: bool,
               directory: Path | None = None) -> str:
    """README.md: the sweep and trial it comes from, the hyperparameters, the metrics, how it
    was saved and how to load it (:func:`~sweeps.export_loading.loading_section`: ``directory``
    is the export's, with its config.json and ``generation_config.json``)."""
    from analysis.markdown import code, text
    from sweeps.export_loading import loading_section
    from trainables.methods import quantized
    from trainables.models import model_source
    from trainables.tasks.registry import get_task

    base = model_source(cfg)
    tags, params = trial.data.tags, trial.data.params
    sweep = parent.data.tags if parent is not None else {}
    swept = {k.removeprefix("hp."): v for k, v in tags.items() if k.startswith("hp.")}
    settings = {k: params[k] for k in ("task", "adapter.method", "adapter.r", "adapter.lora_alpha", "adapter.dropout",
                                       "adapter.targets", "adapter.target_modules", "train.lr", "train.epochs",
                                       "train.max_steps", "train.batch_size", "train.batching", "train.warmup_steps",
                                       "train.warmup_ratio", "train.weight_decay", "train.label_smoothing", "seed",
                                       "data.source", "data.format", "data.max_length")
                if params.get(k) not in (None, "None")}
    if "train.warmup_ratio" in settings:  # the ratio sets the warmup; the step count is unused
        settings.pop("train.warmup_steps", None)
    metrics = {k: v for k, v in sorted(trial.data.metrics.items()) if k != "lr"}
    library = "transformers" if merged else "peft"
    lines = ["---", f"library_name: {library}", f"base_model: {base}",
             f"tags: [lorasweep, {meta.get('method', 'lora')}]", "---", "",
             f"# {text(sweep.get('lorasweep.sweep', trial.info.run_name))}: {text(meta.get('method'))} on "
             f"{text(cfg.task)}", ""]
    origin = (f"the best completed trial of the lorasweep sweep {code(sweep['lorasweep.sweep'])} (study "
              f"{code(sweep.get('lorasweep.study'))}, preset {code(sweep.get('lorasweep.preset'))}; MLflow parent "
              f"run `{parent.info.run_id}`)" if sweep and sweep.get("lorasweep.best_run_id") == trial.info.run_id
              else f"a trial of the lorasweep sweep {code(sweep.get('lorasweep.sweep', '?'))}")
    lines += [f"Fine-tuned from {code(base)}: {origin}; trial {code(tags.get('lorasweep.trial_id'))}, MLflow run "
              f"`{trial.info.run_id}` ({code(trial.info.run_name)}).", ""]
    if merged and meta.get("method") != "full":
        lines += ["The adapter is merged into the base weights (peft `merge_and_unload`): a plain "
                  "transformers model." + (" The trial trained on the base quantised to 4-bit NF4; "
                                           "this is the adapter merged into the unquantised base."
                                           if quantized(cfg) else ""), ""]
    lines += [f"- {n}" for n in meta.get("notes", [])] + ([""] if meta.get("notes") and not merged else [])
    lines += _table("Hyperparameters swept", swept) + _table("Settings", settings) + _table("Metrics", metrics)
    lines += _measured(trial, parent, generates=get_task(cfg.task).peft_task_type == "causal_lm")
    lines += loading_section(cfg, meta, adapter=not merged and meta.get("method") != "full", directory=directory)
    return "\n".join(lines)


def _measured(trial: Any, parent: Any, *, generates: bool) -> list[str]:
    """How the metrics were measured: the evaluation sets' sizes, the decoding settings of a
    generation task (``generates``), and which report's weights they (and these weights) are."""
    params, metrics = trial.data.params, trial.data.metrics
    sizes = {k.removeprefix("data."): v for k, v in (parent.data.params if parent is not None else {}).items()
             if k.startswith("data.") and k.split(".", 1)[1].startswith(("val_", "test_"))}
    lines = ["## How the metrics were measured", ""]
    if sizes:
        lines.append("Validation (`val_*`) and test sets: " + ", ".join(f"{k} {v}" for k, v in sizes.items()) + ".")
    if generates and params.get("eval.generate") == "True" and params.get("eval.num_beams") not in (None, "None"):
        decoding = {k: params.get(f"eval.{k}") for k in ("num_beams", "length_penalty", "no_repeat_ngram_size",
                                                          "max_new_tokens")}
        lines.append("Generated with " + ", ".join(f"{k} {v}" for k, v in decoding.items()) +
                     f"; the input as `data.format` {params.get('data.format')} lays it out.")
    if "best_step" in metrics:
        lines.append(f"The final metrics and these weights are those of the report at step "
                     f"{int(metrics['best_step'])} (epoch {metrics.get('best_epoch', float('nan')):g}): "
                     "the trial kept its best report's weights.")
    return lines + [""] if len(lines) > 2 else []


def _table(title: str, values: dict[str, Any]) -> list[str]:
    if not values:
        return []
    from analysis.markdown import text

    rows = [f"| {k} | {text(_value(v))} |" for k, v in values.items()]
    return [f"## {title}", "", "| name | value |", "| --- | --- |", *rows, ""]


def _value(v: Any) -> str:
    """A table cell: an integer-valued float (a parameter count, a step) in full, another
    float to 6 significant digits."""
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else f"{v:.6g}"
    return str(v)


# --------------------------------------------------------------------------- registry and hub


def _check_registrable(meta: dict[str, Any]) -> None:
    if meta["base_loading"]["auto_class"] == "AutoModelForImageClassification":
        raise UserError("--register", "this export registers text models (causal LM, sequence classification) "
                                      "through MLflow's transformers flavour; export this image model without --register")


def _load_saved(out: Path, meta: dict[str, Any]) -> Any:
    import transformers

    return getattr(transformers, meta["base_loading"]["auto_class"]).from_pretrained(out)


def push(out: Path, repo: str) -> None:
    """Upload ``out`` to the Hub repository ``repo`` (created if needed)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo, exist_ok=True)
    commit = api.upload_folder(folder_path=str(out), repo_id=repo, commit_message="lorasweep export")
    print(f"pushed to the Hub: {commit}")


if __name__ == "__main__":
    sys.exit(main())
