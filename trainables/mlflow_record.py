"""The MLflow record of a sweep: one parent run, one nested child run per trial.

All MLflow writes happen in the driver, in a Tune callback, not in the trials: trials need no
tracking credentials (nothing secret travels to workers), a SQLite store has one writer, and
the driver knows what a trial cannot know about itself - that ASHA stopped it, or that it
failed. Metrics go in batches (``log_batch``, up to 1,000 a call): the train loss and
learning rate of every log step arrive with each report, not one call per step (a SQLite
``log_metric`` costs 20-25 ms with concurrent writers, DESIGN.md).

Child runs are found again by their ``lorasweep.trial_id`` tag, so a resumed sweep keeps
writing to the same runs (every trial appears exactly once).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from trainables.mlflow_names import (COMPLETED, FAILED, KIND_TAG, PARENT_TAG,  # noqa: F401
                                     REPORT_METRICS, RUNNING, STATUS_TAG, STOPPED, SWEEP_TAG,
                                     TRIAL_TAG, default_tracking_uri)
from trainables.mlflow_names import NODE_TAG


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _chunks(items: list[Any], n: int):
    for i in range(0, len(items), n):
        yield items[i:i + n]


def log_batch(client: Any, run_id: str, *, metrics: list[Any] = (), params: dict[str, Any] | None = None,
              tags: dict[str, Any] | None = None) -> None:
    """``log_batch`` within MLflow's per-call limits (1,000 metrics, 100 params + tags)."""
    from mlflow.entities import Param, RunTag

    params_l = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()]
    tags_l = [RunTag(k, str(v)[:8000]) for k, v in (tags or {}).items()]
    for chunk in _chunks(list(metrics), 1000):
        client.log_batch(run_id, metrics=chunk, synchronous=True)
    for chunk in _chunks(params_l, 100):
        client.log_batch(run_id, params=chunk, synchronous=True)
    for chunk in _chunks(tags_l, 100):
        client.log_batch(run_id, tags=chunk, synchronous=True)


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("torch", "ray", "transformers", "peft", "mlflow", "optuna", "datasets",
                 "sacrebleu", "lorasweep"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_state(root: Path | None = None) -> dict[str, str]:
    """SHA and dirty flag of the checkout the sweep runs from (empty outside git)."""
    root = root or Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_sha": sha, "git_dirty": str(bool(dirty)).lower()}


def now_ms() -> int:
    return int(time.time() * 1000)


class MlflowRecorder(Callback):
    """Tune callback writing each trial's child run under the sweep's parent run."""

    def __init__(self, *, tracking_uri: str, experiment_id: str, parent_run_id: str,
                 base: dict[str, Any], sweep_seed: int, sweep_name: str, model_type: str,
                 name_keys: dict[str, str] | None = None, final_metrics: tuple[str, ...] = (),
                 report_metrics: tuple[str, ...] = ()):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.base = base
        self.sweep_seed = sweep_seed
        self.sweep_name = sweep_name
        self.model_type = model_type
        self.name_keys = name_keys or {}
        self.final_metrics = final_metrics
        #: Logged at every report: the common ones and the task's validation metrics.
        self.report_metrics = tuple(dict.fromkeys((*REPORT_METRICS, *report_metrics)))
        self._client: Any = None
        self._runs: dict[str, str] = {}
        self._last: dict[str, dict[str, Any]] = {}
        self.outcomes: dict[str, str] = {}

    # Tune pickles callbacks into its experiment state; the client is rebuilt on demand.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None}

    def run_name(self, hp: dict[str, Any]) -> str:
        """``r=4 lr=0.0002``: the swept values, as the MLflow UI's run list shows them."""
        return " ".join(f"{short}={_short(hp[k])}" for k, short in self.name_keys.items() if k in hp)

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    # ------------------------------------------------------------------ run lookup
    def run_id(self, trial_id: str) -> str | None:
        return self._runs.get(trial_id)

    def _find_run(self, trial_id: str) -> str | None:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}' and tags.`{PARENT_TAG}` = '{self.parent_run_id}'",
            max_results=1)
        return runs[0].info.run_id if runs else None

    def _ensure_run(self, trial: Any) -> str:
        tid = trial.trial_id
        if tid in self._runs:
            return self._runs[tid]
        existing = self._find_run(tid)
        if existing:
            self.client.update_run(existing, status="RUNNING")
            self._runs[tid] = existing
            return existing
        from trainables.adapters import resolve_targets
        from trainables.trial import resolve_trial
        from trainables.schema import to_dict

        hp = dict(trial.config)
        cfg = resolve_trial(self.base, hp, self.sweep_seed)
        group = resolve_targets(cfg.adapter.targets, self.model_type)
        run = self.client.create_run(
            self.experiment_id, start_time=now_ms(), run_name=self.run_name(hp) or trial.trial_id,
            tags={PARENT_TAG: self.parent_run_id, TRIAL_TAG: tid, SWEEP_TAG: self.sweep_name,
                  KIND_TAG: "trial", STATUS_TAG: RUNNING})
        run_id = run.info.run_id
        params = flatten(to_dict(cfg))
        params.update({"adapter.lora_alpha": cfg.adapter.lora_alpha,
                       "adapter.target_modules": ",".join(group.modules),
                       "trial_id": tid})
        log_batch(self.client, run_id, params=params,
                  # MLflow names allow no '+': a coupled r+targets is tagged hp.adapter.r/adapter.targets
                  tags={f"hp.{k.replace('+', '/')}": v for k, v in hp.items()})
        self.client.log_dict(run_id, to_dict(cfg), "trial_config.json")
        self._runs[tid] = run_id
        return run_id

    # ------------------------------------------------------------------ Tune hooks
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ensure_run(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        from mlflow.entities import Metric

        run_id = self._ensure_run(trial)
        ts, step = now_ms(), int(result.get("step", result.get("training_iteration", 0)))
        metrics = [Metric(k, float(result[k]), ts, step) for k in self.report_metrics
                   if _is_number(result.get(k))]
        hist = result.get("history") or {}
        for key in ("train_loss", "lr"):
            metrics += [Metric(key, float(v), ts, int(s))
                        for s, v in zip(hist.get("step", []), hist.get(key, [])) if _is_number(v)]
        first = trial.trial_id not in self._last
        if first:
            metrics += [Metric(k, float(result[k]), ts, 0)
                        for k in ("trainable_params", "total_params", "trainable_pct", "setup_s", "data_s")
                        if _is_number(result.get(k))]
        tags = {}
        if result.get("is_final"):
            metrics += [Metric(k, float(result[k]), ts, step) for k in self.final_metrics
                        if _is_number(result.get(k))]
            metrics += [Metric(k, float(result[k]), ts, step) for k in ("generate_s",)
                        if _is_number(result.get(k))]
            skipped = [k for k in self.final_metrics if k in result and result[k] is None]
            if skipped:
                tags["lorasweep.skipped_metrics"] = ",".join(skipped)
            if result.get("final_note"):
                tags["lorasweep.note"] = result["final_note"]
        if first and "peak_mem_kind" in result:
            tags["lorasweep.peak_mem_kind"] = result["peak_mem_kind"]
        if first and result.get("node_id"):
            # A tag, not a param: a resumed trial may continue on another node.
            tags[NODE_TAG] = result["node_id"]
        log_batch(self.client, run_id, metrics=metrics, tags=tags)
        self._last[trial.trial_id] = {k: v for k, v in result.items() if k != "history"}

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._ensure_run(trial)
        last = self._last.get(trial.trial_id) or trial.last_result or {}
        status = COMPLETED if last.get("is_final") else STOPPED
        tags = {STATUS_TAG: status}
        if status == STOPPED:
            tags["lorasweep.stopped_at_epoch"] = f"{last.get('epoch', 0):.3g}"
        log_batch(self.client, run_id, tags=tags)
        if status == COMPLETED:
            self._log_checkpoint(run_id, trial, last)
        self.client.set_terminated(run_id, status="FINISHED", end_time=now_ms())
        self.outcomes[trial.trial_id] = status

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._ensure_run(trial)
        error = _error_text(trial)
        log_batch(self.client, run_id, tags={STATUS_TAG: FAILED, "lorasweep.error": error,
                                             "mlflow.note.content": f"Trial failed:\n\n{error}"})
        self.client.set_terminated(run_id, status="FAILED", end_time=now_ms())
        self.outcomes[trial.trial_id] = FAILED

    # ------------------------------------------------------------------ artifacts
    def _log_checkpoint(self, run_id: str, trial: Any, last: dict[str, Any]) -> None:
        """Adapter weights and generated outputs of the trial's final checkpoint."""
        from trainables.loop import ADAPTER_DIR, OUTPUTS_DIR

        ckpt = _latest_checkpoint(trial, last)
        if ckpt is None:
            return
        with ckpt.as_directory() as d:
            for sub in (ADAPTER_DIR, OUTPUTS_DIR):
                if (Path(d) / sub).is_dir():
                    self.client.log_artifacts(run_id, str(Path(d) / sub), sub)


def _latest_checkpoint(trial: Any, last: dict[str, Any]) -> Any:
    from ray.tune import Checkpoint

    if last.get("checkpoint_path"):  # the 'train' shape: TuneReportCallback's path
        return Checkpoint(last["checkpoint_path"])
    return getattr(trial, "checkpoint", None)


def _error_text(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    text = ""
    if path and Path(path).is_file():
        text = Path(path).read_text(errors="replace")
    if not text:
        text = str(getattr(trial, "error_msg", "") or "unknown error")
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    # The exception line (last) first, then the end of the traceback for context.
    return (lines[-1] + "\n\n" + "\n".join(lines[-40:]))[:7000] if lines else "unknown error"


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _is_number(v: Any) -> bool:
    import math

    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
