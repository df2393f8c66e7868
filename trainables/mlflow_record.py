"""The MLflow record of a sweep: one parent run, one nested child run per trial.

All MLflow writes happen in the driver, in a Tune callback, not in the trials: trials need no
tracking credentials (nothing secret travels to workers), a SQLite store has one writer, and
the driver knows what a trial cannot know about itself - that ASHA stopped it, or that it
failed. Metrics go in batches (``log_batch``, up to 1,000 a call): the train loss and
learning rate of every log step arrive with each report, not one call per step (a SQLite
``log_metric`` costs 20-25 ms with concurrent writers, DESIGN.md).

Child runs are found again by their ``lorasweep.trial_id`` tag, so a resumed sweep keeps
writing to the same runs (every trial appears exactly once); a restored trial that repeats a
report already recorded (it restarts from its last checkpoint) is not recorded twice.

The writes go through a :class:`TrackingWriter`: one thread in the driver that performs them in
order, off Tune's event loop, so a tracking server that goes away mid-sweep never stalls the
trials (Tune waits for its callbacks before it takes the next result). While the store is
unreachable the writes wait in a bounded queue and are retried with backoff (1 s doubling to
5 s); they reach MLflow once it is back. Whatever is still unwritten when the sweep ends
(after ``flush``'s deadline) is listed per trial in the summary, never dropped silently.
"""

from __future__ import annotations

import collections
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from trainables.mlflow_names import (  # noqa: F401
    COMPLETED,
    FAILED,
    INTERRUPTED,
    KIND_TAG,
    NODE_TAG,
    PARENT_TAG,
    REPORT_METRICS,
    RUNNING,
    STATUS_TAG,
    STOPPED,
    SWEEP_TAG,
    TRIAL_TAG,
    default_tracking_uri,
)


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


log = logging.getLogger("lorasweep.mlflow")

#: Writes that wait for an unreachable tracking store at most (each is one trial's report, a
#: few KB); past it the oldest waiting write is dropped and counted as lost for its trial.
MAX_PENDING = 10_000
#: Seconds between attempts while the store is unreachable: doubling from the first to the last.
BACKOFF_S = (1.0, 5.0)
#: MLflow's own HTTP retries (7 tries, backoff factor 2: minutes per call) would hide an outage
#: from the writer's backoff and from the end-of-sweep deadline; while a sweep writes to a
#: tracking server, each call gives up sooner unless these are set in the environment.
HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def transient(error: BaseException) -> bool:
    """Whether a failed MLflow write may succeed later: the store unreachable (MLflow reports a
    connection failure as an internal error, 500), busy (429) or failing (5xx), or a local
    store's I/O. A 4xx (bad value, no such run, no permission) is final."""
    from mlflow.exceptions import MlflowException

    if isinstance(error, MlflowException):
        status = error.get_http_status_code()
        return status >= 500 or status == 429
    return isinstance(error, (OSError, ConnectionError, TimeoutError)) or "sqlite" in type(error).__module__


class TrackingWriter:
    """MLflow writes performed in order by one background thread, retried with backoff while
    the tracking store is unreachable (see the module docstring)."""

    def __init__(self, tracking_uri: str, *, max_pending: int = MAX_PENDING,
                 backoff_s: tuple[float, float] = BACKOFF_S):
        self.tracking_uri = tracking_uri
        self.max_pending = max_pending
        self.backoff_s = backoff_s
        self._queue: collections.deque = collections.deque()
        self._cv = threading.Condition()
        self._busy = False
        self._abandoned = False
        self._thread: threading.Thread | None = None
        self._client: Any = None
        #: Label (a trial id, or "sweep") -> what could not be written, and why.
        self.lost: dict[str, list[str]] = {}
        #: Seconds the store was unreachable, and how many outages there were.
        self.outage_s = 0.0
        self.outages = 0

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def submit(self, label: str, what: str, fn: Any) -> None:
        """Queue ``fn(client)``; returns at once."""
        with self._cv:
            if self._abandoned:
                self.lost.setdefault(label, []).append(f"{what} (after the sweep's deadline)")
                return
            while len(self._queue) >= self.max_pending:
                # The head may be in progress; drop the oldest one waiting behind it.
                old = self._queue[1] if self._busy and len(self._queue) > 1 else self._queue[0]
                self._queue.remove(old)
                self.lost.setdefault(old[0], []).append(f"{old[1]} (queue full)")
            self._queue.append((label, what, fn))
            self._cv.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="lorasweep-mlflow", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                item = self._queue[0]
                self._busy = True
            label, what, fn = item
            delay, down_since = self.backoff_s[0], None
            while True:
                try:
                    fn(self.client)
                    break
                except Exception as e:  # noqa: BLE001 - every failure is either retried or recorded
                    reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
                    if self._abandoned:  # flush gave up on it and listed it already
                        break
                    if not transient(e):
                        with self._cv:
                            self.lost.setdefault(label, []).append(f"{what} ({reason})")
                        break
                    if down_since is None:
                        down_since = time.monotonic()
                        self.outages += 1
                        log.warning("MLflow store %s unreachable (%s); trials go on, their records "
                                    "wait and are retried", self.tracking_uri, reason)
                    with self._cv:
                        self._cv.wait_for(lambda: self._abandoned, timeout=delay)
                    delay = min(delay * 2, self.backoff_s[1])
            if down_since is not None:
                self.outage_s += time.monotonic() - down_since
                if not self._abandoned:
                    log.warning("MLflow store %s reachable again after %.0f s", self.tracking_uri,
                                time.monotonic() - down_since)
            with self._cv:
                if self._queue and self._queue[0] is item:
                    self._queue.popleft()
                self._busy = False
                self._cv.notify_all()

    def pending(self) -> int:
        with self._cv:
            return len(self._queue)

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every queued write; what is still unwritten then
        is given up and listed in :attr:`lost`. True when everything was written."""
        with self._cv:
            done = self._cv.wait_for(lambda: not self._queue and not self._busy, timeout=timeout)
            if done:
                return True
            self._abandoned = True
            for label, what, _ in self._queue:
                self.lost.setdefault(label, []).append(f"{what} (store unreachable until the deadline)")
            self._queue.clear()
            self._cv.notify_all()
            return False


class MlflowRecorder(Callback):
    """Tune callback writing each trial's child run under the sweep's parent run.

    The hooks run on Tune's event loop and only queue writes (:class:`TrackingWriter`);
    what the summary needs (each trial's outcome, attempts, error) is kept here and, through
    ``get_state``/``set_state``, in Tune's experiment state, so a resumed sweep knows the
    outcomes of the trials that ended before the interruption.
    """

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
        self._writer: TrackingWriter | None = None
        self._runs: dict[str, str] = {}
        #: Trial id -> the optimizer step of its last report recorded in MLflow (writer thread).
        self._recorded_step: dict[str, int] = {}
        self.outcomes: dict[str, str] = {}
        #: Trial id -> attempts made (1 + retries under ``max_failures``) and the last error.
        self.attempts: dict[str, int] = {}
        self.errors: dict[str, str] = {}
        #: Child runs closed as ``interrupted`` by :meth:`close_stale_runs`.
        self.interrupted: list[str] = []

    # Tune pickles callbacks into its experiment state; the writer is rebuilt on demand.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_writer": None}

    def get_state(self) -> dict[str, Any]:
        return {"runs": dict(self._runs), "outcomes": dict(self.outcomes),
                "attempts": dict(self.attempts), "errors": dict(self.errors)}

    def set_state(self, state: dict[str, Any]) -> None:
        self._runs.update(state.get("runs", {}))
        self.outcomes.update(state.get("outcomes", {}))
        self.attempts.update(state.get("attempts", {}))
        self.errors.update(state.get("errors", {}))

    def run_name(self, hp: dict[str, Any]) -> str:
        """``r=4 lr=0.0002``: the swept values, as the MLflow UI's run list shows them."""
        return " ".join(f"{short}={_short(hp[k])}" for k, short in self.name_keys.items() if k in hp)

    @property
    def writer(self) -> TrackingWriter:
        if self._writer is None:
            self._writer = TrackingWriter(self.tracking_uri)
        return self._writer

    @property
    def client(self) -> Any:
        return self.writer.client

    # ------------------------------------------------------------------ run lookup
    def run_id(self, trial_id: str) -> str | None:
        return self._runs.get(trial_id)

    def _find_run(self, client: Any, trial_id: str) -> str | None:
        runs = client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}' and tags.`{PARENT_TAG}` = '{self.parent_run_id}'",
            max_results=1)
        return runs[0].info.run_id if runs else None

    def _run_for(self, client: Any, tid: str, hp: dict[str, Any]) -> str:
        """The trial's child run (writer thread): found again by its tag, or created."""
        if tid in self._runs and tid in self._recorded_step:
            return self._runs[tid]
        existing = self._runs.get(tid) or self._find_run(client, tid)
        if existing:
            # A resumed or retried trial: it goes on in the same run, after the last report
            # already recorded there.
            client.update_run(existing, status="RUNNING")
            steps = [m.step for m in client.get_metric_history(existing, "epoch")]
            self._recorded_step[tid] = max(steps, default=-1)
            self._runs[tid] = existing
            return existing
        from trainables.adapters import resolve_targets
        from trainables.schema import to_dict
        from trainables.trial import resolve_trial

        cfg = resolve_trial(self.base, hp, self.sweep_seed)
        group = resolve_targets(cfg.adapter.targets, self.model_type)
        run = client.create_run(
            self.experiment_id, start_time=now_ms(), run_name=self.run_name(hp) or tid,
            tags={PARENT_TAG: self.parent_run_id, TRIAL_TAG: tid, SWEEP_TAG: self.sweep_name,
                  KIND_TAG: "trial", STATUS_TAG: RUNNING})
        run_id = run.info.run_id
        params = flatten(to_dict(cfg))
        params.update({"adapter.lora_alpha": cfg.adapter.lora_alpha,
                       "adapter.target_modules": ",".join(group.modules),
                       "trial_id": tid})
        log_batch(client, run_id, params=params,
                  # MLflow names allow no '+': a coupled r+targets is tagged hp.adapter.r/adapter.targets
                  tags={f"hp.{k.replace('+', '/')}": v for k, v in hp.items()})
        client.log_dict(run_id, to_dict(cfg), "trial_config.json")
        self._runs[tid] = run_id
        self._recorded_step[tid] = -1
        return run_id

    def _submit(self, trial: Any, what: str, fn: Any) -> None:
        tid, hp = trial.trial_id, dict(trial.config)
        self.writer.submit(tid, what, lambda client: fn(client, self._run_for(client, tid, hp)))

    # ------------------------------------------------------------------ Tune hooks
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.attempts.setdefault(trial.trial_id, 1)
        self._submit(trial, "run", lambda client, run_id: None)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        from mlflow.entities import Metric

        tid = trial.trial_id
        ts, step = now_ms(), int(result.get("step", result.get("training_iteration", 0)))
        metrics = [Metric(k, float(result[k]), ts, step) for k in self.report_metrics
                   if _is_number(result.get(k))]
        hist = result.get("history") or {}
        for key in ("train_loss", "lr"):
            metrics += [Metric(key, float(v), ts, int(s))
                        for s, v in zip(hist.get("step", []), hist.get(key, [])) if _is_number(v)]
        once = [Metric(k, float(result[k]), ts, 0)
                for k in ("trainable_params", "total_params", "trainable_pct", "setup_s", "data_s")
                if _is_number(result.get(k))]
        once_tags = {"lorasweep.peak_mem_kind": result["peak_mem_kind"]} if "peak_mem_kind" in result else {}
        # Settings the trial derived from its data (a regression task's target mean and std).
        once_params = dict(result.get("trial_params") or {})
        if result.get("node_id"):
            # A tag, not a param: a resumed trial may continue on another node.
            once_tags[NODE_TAG] = result["node_id"]
        tags = {}
        if result.get("is_final"):
            metrics += [Metric(k, float(result[k]), ts, step) for k in self.final_metrics
                        if _is_number(result.get(k))]
            # A final metric's value per part (per compared model: judge_score/<model>).
            metrics += [Metric(k, float(v), ts, step) for k, v in result.items()
                        if "/" in k and k.split("/", 1)[0] in self.final_metrics and _is_number(v)]
            # Early stopping (train.early_stopping_patience): where it stopped and the best report.
            metrics += [Metric(k, float(result[k]), ts, step)
                        for k in ("generate_s", "stopped_early_at", "best_epoch", "best_step")
                        if _is_number(result.get(k))]
            skipped = [k for k in self.final_metrics if k in result and result[k] is None]
            if skipped:
                tags["lorasweep.skipped_metrics"] = ",".join(skipped)
            if result.get("final_note"):
                tags["lorasweep.note"] = result["final_note"]
            if result.get("tables"):  # artifacts in MLflow's table format (comma-separated paths)
                tags["mlflow.loggedArtifacts"] = json.dumps([{"path": p, "type": "table"}
                                                             for p in result["tables"].split(",")])

        def write(client: Any, run_id: str) -> None:
            done = self._recorded_step.get(tid, -1)
            if step <= done:  # a restored trial repeating a report MLflow already has
                return
            first = done < 0
            log_batch(client, run_id, metrics=metrics + (once if first else []),
                      params=once_params if first else None,
                      tags={**tags, **(once_tags if first else {})})
            self._recorded_step[tid] = step

        self._submit(trial, f"report at step {step}", write)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        status = COMPLETED if last.get("is_final") else STOPPED
        tags = {STATUS_TAG: status, "lorasweep.attempts": self.attempts.get(trial.trial_id, 1)}
        if status == STOPPED:
            tags["lorasweep.stopped_at_epoch"] = f"{last.get('epoch', 0):.3g}"
        # Copied now: the sweep-wide keep-best-k may delete the checkpoint before the write.
        staged = self._stage_checkpoint(trial, last) if status == COMPLETED else None

        def write(client: Any, run_id: str) -> None:
            log_batch(client, run_id, tags=tags)
            if staged is not None:
                for sub in sorted(p.name for p in staged.iterdir()):
                    client.log_artifacts(run_id, str(staged / sub), sub)
            client.set_terminated(run_id, status="FINISHED", end_time=now_ms())
            if staged is not None:
                shutil.rmtree(staged, ignore_errors=True)

        self._submit(trial, f"end ({status})", write)
        self.outcomes[trial.trial_id] = status

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A failed trial that ``max_failures`` retries (from its last checkpoint)."""
        tid = trial.trial_id
        n = self.attempts.get(tid, 1)
        error = _error_text(trial)
        self.attempts[tid] = n + 1
        self.errors[tid] = error.split("\n", 1)[0]
        tags = {f"lorasweep.error_attempt_{n}": error, "lorasweep.attempts": n + 1}
        self._submit(trial, f"retry {n}", lambda client, run_id: log_batch(client, run_id, tags=tags))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        tid = trial.trial_id
        error = _error_text(trial)
        attempts = self.attempts.get(tid, 1)
        self.errors[tid] = error.split("\n", 1)[0]
        tags = {STATUS_TAG: FAILED, "lorasweep.error": error, "lorasweep.attempts": attempts,
                "mlflow.note.content": f"Trial failed ({attempts} attempt{'s' if attempts > 1 else ''}):"
                                       f"\n\n{error}"}

        def write(client: Any, run_id: str) -> None:
            log_batch(client, run_id, tags=tags)
            client.set_terminated(run_id, status="FAILED", end_time=now_ms())

        self._submit(trial, "end (failed)", write)
        self.outcomes[tid] = FAILED

    # ------------------------------------------------------------------ end of the sweep
    def close_stale_runs(self, statuses: dict[str, str]) -> None:
        """At the end of a sweep (after every queued write), close the child runs an
        interrupted driver left RUNNING:

        * a trial Tune has a result for (it ended before the interruption, but the killed
          driver's last writes for it were lost): finished with that status;
        * a trial Tune never recorded (it started after Tune's last experiment snapshot; the
          resumed searcher suggested its configuration again as a new trial): ``KILLED``, status
          ``interrupted``.
        """

        def write(client: Any) -> None:
            runs = client.search_runs([self.experiment_id], filter_string=(
                f"tags.`{PARENT_TAG}` = '{self.parent_run_id}' and attributes.status = 'RUNNING'"),
                max_results=1000)
            for run in runs:
                tid = run.data.tags.get(TRIAL_TAG)
                status = statuses.get(tid)
                if status is not None:
                    log_batch(client, run.info.run_id, tags={STATUS_TAG: status})
                    client.set_terminated(run.info.run_id, end_time=now_ms(),
                                          status="FAILED" if status == FAILED else "FINISHED")
                    continue
                log_batch(client, run.info.run_id, tags={
                    STATUS_TAG: INTERRUPTED, "mlflow.note.content":
                    "Interrupted: the sweep's driver stopped before Ray Tune recorded this trial; "
                    "the resumed sweep ran its configuration again as a new trial."})
                client.set_terminated(run.info.run_id, status="KILLED", end_time=now_ms())
                self.interrupted.append(run.info.run_id)

        self.writer.submit("sweep", "closing the runs the interrupted driver left open", write)

    def flush(self, timeout: float) -> dict[str, list[str]]:
        """Wait for the queued writes; returns what could not be written, per trial."""
        if self._writer is None:
            return {}
        self._writer.flush(timeout)
        return dict(self._writer.lost)

    # ------------------------------------------------------------------ artifacts
    def _stage_checkpoint(self, trial: Any, last: dict[str, Any]) -> Path | None:
        """A local copy of the adapter weights and generated outputs of the trial's final
        checkpoint (what its MLflow run gets)."""
        from trainables.loop import ADAPTER_DIR, OUTPUTS_DIR

        ckpt = _latest_checkpoint(trial, last)
        if ckpt is None:
            return None
        staged = Path(tempfile.mkdtemp(prefix="lorasweep-artifacts-"))
        with ckpt.as_directory() as d:
            for sub in (ADAPTER_DIR, OUTPUTS_DIR):
                if (Path(d) / sub).is_dir():
                    shutil.copytree(Path(d) / sub, staged / sub)
        return staged


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
