"""The MLflow record of a sweep: one parent run, one nested child run per trial.

All MLflow writes happen in the driver, in a Tune callback, not in the trials: trials need no
tracking credentials (nothing secret travels to workers), a SQLite store has one writer, and
the driver knows what a trial cannot know about itself - that ASHA stopped it, or that it
failed. Metrics go in batches (``log_batch``, up to 1,000 a call): the train loss and
learning rate of every log step arrive with each report, not one call per step.

Child runs are found again by their ``lorasweep.trial_id`` tag, so a resumed sweep keeps
writing to the same runs (every trial appears exactly once). A run gets its parameters and
``trial_config.json`` before the tag that says so (``lorasweep.params_logged``), so a run
created by a driver that died in between gets them from the next. A restored trial that
repeats a report already recorded (it restarts from its last checkpoint) is not recorded
twice; a trial's final report is recorded even where it repeats the step of the report before
it (early stopping ends a trial with its final evaluation at the step it stopped).

The hooks run on Tune's event loop and only queue writes, as plain-data records, on a
:class:`~sweeps.tracking.writer.TrackingWriter` (one thread, retried while the store is
away). Each time Tune writes an experiment snapshot (``get_state``) the records not yet
written are saved in the sweep's :class:`~sweeps.tracking.writer.Journal`, which the next
driver replays (``--resume``). A trial's adapter is read from its final checkpoint when its end
record is written; the checkpoint retention keeps a checkpoint that a waiting end record names
(:meth:`MlflowRecorder.pinned`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ray.tune import Callback

from analysis.markdown import fenced
from trainables.errors import first_line
from trainables.mlflow_names import (
    COMPLETED,
    FAILED,
    INTERRUPTED,
    KIND_TAG,
    NODE_TAG,
    PARENT_TAG,
    RUNNING,
    STATUS_TAG,
    STOPPED,
    SWEEP_TAG,
    TRIAL_TAG,
    UNFINISHED,
)
from trainables.report import FINAL_EXTRAS, LAST_PREFIX, ONCE, PER_REPORT
from sweeps.retention import checkpoint_contents, latest_checkpoint_path
from sweeps.tracking.mlflow_calls import flatten, log_batch, now_ms
from sweeps.tracking.writer import Journal, TrackingWriter, storage_fs


#: Set on a child run once its parameters and trial_config.json are logged (the last write of
#: its creation).
COMPLETE_TAG = "lorasweep.params_logged"
#: The step of the final report recorded in a child run.
FINAL_TAG = "lorasweep.final_step"


class MlflowRecorder(Callback):
    """Tune callback writing each trial's child run under the sweep's parent run.

    What the summary needs (each trial's outcome, attempts, error) is kept here and, through
    ``get_state``/``set_state``, in Tune's experiment state, so a resumed sweep knows the
    outcomes of the trials that ended before the interruption. ``storage`` (the sweep's Tune
    storage) holds the journal and the checkpoints end records read adapters from.
    """

    def __init__(self, *, tracking_uri: str, experiment_id: str, parent_run_id: str,
                 base: dict[str, Any], sweep_seed: int, sweep_name: str, model_type: str,
                 name_keys: dict[str, str] | None = None, final_metrics: tuple[str, ...] = (),
                 report_metrics: tuple[str, ...] = (), storage: str | None = None):
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
        self.report_metrics = tuple(dict.fromkeys((*PER_REPORT, *report_metrics)))
        self.storage = storage
        self._writer: TrackingWriter | None = None
        self._runs: dict[str, str] = {}
        #: Trial id -> child run of the runs already in the store when this driver first
        #: looked (writer thread): one query for the sweep, not one per trial.
        self._existing: dict[str, str] | None = None
        #: Trial id -> (step, final) of its last report recorded in MLflow (writer thread).
        self._recorded: dict[str, tuple[int, bool]] = {}
        #: Trials started by this driver and not ended (event loop).
        self._open: dict[str, dict[str, Any]] = {}
        self.outcomes: dict[str, str] = {}
        #: Trial id -> attempts made (1 + retries under ``max_failures``) and the last error.
        self.attempts: dict[str, int] = {}
        self.errors: dict[str, str] = {}
        #: Child runs closed as ``interrupted`` by :meth:`close_stale_runs`.
        self.interrupted: list[str] = []
        #: Journal saves that failed (the reason), listed in the summary.
        self.journal_errors: list[str] = []

    # Tune pickles callbacks into its experiment state; the writer is rebuilt on demand.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_writer": None, "_existing": None}

    def get_state(self) -> dict[str, Any]:
        """Called while Tune writes an experiment snapshot: the records not yet written go to
        the journal first."""
        self.save_journal()
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

    # ------------------------------------------------------------------ journal
    def _journal(self) -> Journal | None:
        return Journal(self.storage, self.sweep_name) if self.storage else None

    def save_journal(self) -> None:
        """The records not yet written, saved beside Tune's state (never raises: a failure is
        listed in the summary)."""
        journal = self._journal()
        if journal is None or self._writer is None:
            return
        try:
            journal.save(self._writer.pending_records())
        except Exception as e:  # noqa: BLE001 - a snapshot must not fail because of it
            self.journal_errors.append(first_line(e))

    def replay_journal(self) -> int:
        """Queue the records an earlier driver left unwritten; returns how many."""
        journal = self._journal()
        records = journal.load() if journal is not None else []
        for record in records:
            self._queue(record)
        return len(records)

    def pinned(self) -> set[str]:
        """Checkpoints that end records waiting to be written read adapters from."""
        if self._writer is None:
            return set()
        return {r["checkpoint"] for r in self._writer.pending_records()
                if r.get("op") == "end" and r.get("checkpoint")}

    # ------------------------------------------------------------------ run lookup
    def run_id(self, trial_id: str) -> str | None:
        return self._runs.get(trial_id)

    def _find_run(self, client: Any, trial_id: str) -> Any:
        """The trial's child run created by an earlier driver of the sweep, or None. The
        sweep's child runs are listed once: the runs this driver creates are in ``_runs``."""
        if self._existing is None:
            self._existing = {}
            for run in _child_runs(client, self.experiment_id, self.parent_run_id):  # newest first
                if TRIAL_TAG in run.data.tags:
                    self._existing.setdefault(run.data.tags[TRIAL_TAG], run.info.run_id)
        run_id = self._existing.get(trial_id)
        return client.get_run(run_id) if run_id else None

    def _run_for(self, client: Any, tid: str, hp: dict[str, Any]) -> str:
        """The trial's child run (writer thread): found again by its tag, or created; its
        parameters logged unless the completeness tag says they are."""
        if tid in self._recorded:
            return self._runs[tid]
        run = client.get_run(self._runs[tid]) if tid in self._runs else self._find_run(client, tid)
        if run is None:
            run = client.create_run(
                self.experiment_id, start_time=now_ms(), run_name=self.run_name(hp) or tid,
                tags={PARENT_TAG: self.parent_run_id, TRIAL_TAG: tid, SWEEP_TAG: self.sweep_name,
                      KIND_TAG: "trial", STATUS_TAG: RUNNING})
            recorded = (-1, False)
        else:
            # A resumed or retried trial: it goes on in the same run, after the last report
            # already recorded there.
            client.update_run(run.info.run_id, status="RUNNING")
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "epoch")]
            last = max(steps, default=-1)
            recorded = (last, run.data.tags.get(FINAL_TAG) == str(last))
        if run.data.tags.get(COMPLETE_TAG) != "true":
            self._log_params(client, run.info.run_id, tid, hp)
        self._runs[tid] = run.info.run_id
        self._recorded[tid] = recorded
        return run.info.run_id

    def _log_params(self, client: Any, run_id: str, tid: str, hp: dict[str, Any]) -> None:
        from trainables.adapters import resolve_targets
        from trainables.schema import to_dict
        from trainables.trial import resolve_trial

        cfg = resolve_trial(self.base, hp, self.sweep_seed)
        group = resolve_targets(cfg.adapter.targets, self.model_type)
        params = flatten(to_dict(cfg))
        params.update({"adapter.lora_alpha": cfg.adapter.lora_alpha,
                       "adapter.target_modules": ",".join(group.modules), "trial_id": tid})
        log_batch(client, run_id, params=params,
                  # MLflow names allow no '+': a coupled r+targets is tagged hp.adapter.r/adapter.targets
                  tags={f"hp.{k.replace('+', '/')}": v for k, v in hp.items()})
        client.log_dict(run_id, to_dict(cfg), "trial_config.json")
        log_batch(client, run_id, tags={COMPLETE_TAG: "true"})

    # ------------------------------------------------------------------ records
    def _queue(self, record: dict[str, Any]) -> None:
        self.writer.submit(record["tid"], record["what"], lambda client: self.perform(client, record),
                           record=record, end=record["op"] == "end")

    def _record(self, trial: Any, op: str, what: str, **data: Any) -> None:
        self._queue({"op": op, "tid": trial.trial_id, "hp": _plain(dict(trial.config)), "what": what, **data})

    def perform(self, client: Any, record: dict[str, Any]) -> None:
        """Write one record (writer thread)."""
        tid = record["tid"]
        run_id = self._run_for(client, tid, record["hp"])
        op = record["op"]
        if op == "report":
            self._write_report(client, run_id, record)
        elif op == "tags":
            log_batch(client, run_id, tags=record["tags"])
        elif op == "end":
            log_batch(client, run_id, tags=record["tags"])
            if record.get("checkpoint"):
                self._log_adapter(client, run_id, tid, record["checkpoint"])
            client.set_terminated(run_id, status=record["run_status"], end_time=now_ms())

    def _write_report(self, client: Any, run_id: str, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        tid, key = record["tid"], (record["step"], record["final"])
        done = self._recorded.get(tid, (-1, False))
        if key <= done:  # a restored trial repeating a report MLflow already has
            return
        first = done[0] < 0
        metrics = [Metric(*m) for m in record["metrics"] + (record["once"] if first else [])]
        tags = {**record["tags"], **(record["once_tags"] if first else {})}
        if record["final"]:
            tags[FINAL_TAG] = str(record["step"])
        log_batch(client, run_id, metrics=metrics, tags=tags,
                  params=record.get("once_params") if first else None)
        self._recorded[tid] = key

    def _log_adapter(self, client: Any, run_id: str, tid: str, path: str) -> None:
        """The adapter weights and generated outputs of a trial's final checkpoint. A
        checkpoint that cannot be read (gone, a full disk while copying it from a bucket) is
        listed as lost; the copy is removed either way."""
        import tempfile

        import pyarrow.fs

        fs = storage_fs(self.storage)[0] if self.storage else pyarrow.fs.LocalFileSystem()
        with tempfile.TemporaryDirectory(prefix="lorasweep-artifacts-") as tmp:
            try:
                local = checkpoint_contents(fs, path, Path(tmp))
            except OSError as e:
                self.writer.note_lost(tid, f"adapter and outputs (reading its checkpoint {path}: {first_line(e)})")
                return
            for sub, directory in sorted(local.items()):
                client.log_artifacts(run_id, str(directory), sub)

    # ------------------------------------------------------------------ Tune hooks
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.attempts.setdefault(trial.trial_id, 1)
        self._open[trial.trial_id] = _plain(dict(trial.config))
        self._record(trial, "run", "run")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        ts, step = now_ms(), int(result.get("step", result.get("training_iteration", 0)))
        final = bool(result.get("is_final"))

        def numbers(keys: Any, at: int) -> list[list[Any]]:
            return [[k, float(result[k]), ts, at] for k in keys if _is_number(result.get(k))]

        metrics = numbers(self.report_metrics, step)
        # The log steps' values go to MLflow only: Tune keeps each trial's last result in its
        # experiment state, writes every result to the trial's result.json and prints it, and
        # a report's history (every log step since the one before) is most of a report.
        # (Tune lets a callback change the result before it stores it.)
        hist = result.pop("history", None) or {}
        for key in (k for k in hist if k != "step"):  # train_loss, lr (and the fp16 loss_scale)
            metrics += [[key, float(v), ts, int(s)] for s, v in zip(hist.get("step", []), hist.get(key, []))
                        if _is_number(v)]
        once_tags = {"lorasweep.peak_mem_kind": result["peak_mem_kind"]} if "peak_mem_kind" in result else {}
        # Settings the trial derived from its data (a regression task's target mean and std).
        once_params = dict(result.get("trial_params") or {})
        if result.get("node_id"):
            # A tag, not a param: a resumed trial may continue on another node.
            once_tags[NODE_TAG] = result["node_id"]
        tags = {}
        if final:
            metrics += numbers((*self.final_metrics, *FINAL_EXTRAS), step)
            # The last report's own validation metrics, where the final ones are restored weights'.
            metrics += numbers([k for k in result if k.startswith(LAST_PREFIX)], step)
            # A final metric's value per part (per compared model: judge_score/<model>).
            metrics += numbers([k for k in result if "/" in k and k.split("/", 1)[0] in self.final_metrics], step)
            skipped = [k for k in self.final_metrics if k in result and result[k] is None]
            if skipped:
                tags["lorasweep.skipped_metrics"] = ",".join(skipped)
            if result.get("final_note"):
                tags["lorasweep.note"] = result["final_note"]
            if result.get("tables"):  # artifacts in MLflow's table format (comma-separated paths)
                tags["mlflow.loggedArtifacts"] = json.dumps([{"path": p, "type": "table"}
                                                             for p in result["tables"].split(",")])
        self._record(trial, "report", f"{'final ' if final else ''}report at step {step}", step=step,
                     final=final, metrics=metrics, once=numbers(ONCE, 0), tags=tags,
                     once_tags=once_tags, once_params=once_params)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        status = COMPLETED if last.get("is_final") else STOPPED
        tags = {STATUS_TAG: status, "lorasweep.attempts": self.attempts.get(trial.trial_id, 1)}
        if status == STOPPED:
            tags["lorasweep.stopped_at_epoch"] = f"{last.get('epoch', 0):.3g}"
        checkpoint = latest_checkpoint_path(trial, last) if status == COMPLETED else None
        self._record(trial, "end", f"end ({status})", status=status, tags=tags, checkpoint=checkpoint,
                     run_status="FINISHED")
        self.outcomes[trial.trial_id] = status
        self._open.pop(trial.trial_id, None)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A failed trial that ``max_failures`` retries (from its last checkpoint)."""
        tid = trial.trial_id
        n = self.attempts.get(tid, 1)
        error = _error_text(trial)
        self.attempts[tid] = n + 1
        self.errors[tid] = error.split("\n", 1)[0]
        self._record(trial, "tags", f"retry {n}",
                     tags={f"lorasweep.error_attempt_{n}": error, "lorasweep.attempts": n + 1})

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        tid = trial.trial_id
        error = _error_text(trial)
        attempts = self.attempts.get(tid, 1)
        self.errors[tid] = error.split("\n", 1)[0]
        tags = {STATUS_TAG: FAILED, "lorasweep.error": error, "lorasweep.attempts": attempts,
                "mlflow.note.content": f"Trial failed ({attempts} attempt{'s' if attempts > 1 else ''}):"
                                       f"\n\n{fenced(error)}"}
        self._record(trial, "end", "end (failed)", status=FAILED, tags=tags, checkpoint=None,
                     run_status="FAILED")
        self.outcomes[tid] = FAILED
        self._open.pop(tid, None)

    # ------------------------------------------------------------------ end of the sweep
    def close_unfinished(self, why: str) -> None:
        """End the child runs of trials this driver started and that did not end (the sweep
        was interrupted): ``KILLED``, status ``unfinished``; a resumed sweep reopens them."""
        note = f"Unfinished: {why}; --resume continues it from its last checkpoint."
        for tid, hp in sorted(self._open.items()):
            self._queue({"op": "end", "tid": tid, "hp": hp, "what": "end (unfinished)", "status": UNFINISHED,
                         "checkpoint": None, "run_status": "KILLED",
                         "tags": {STATUS_TAG: UNFINISHED, "mlflow.note.content": note}})
        self._open.clear()

    def close_stale_runs(self, statuses: dict[str, str], *, since_ms: int = 0) -> None:
        """At the end of a resumed sweep (after every queued write), settle the child runs an
        interrupted driver left:

        * a run left open for a trial Tune has a result for (it ended before the interruption,
          but the killed driver's last writes for it were lost): ended with that status;
        * a run of a trial Tune never recorded (it started, and maybe ended, after Tune's last
          experiment snapshot; the resumed searcher suggested its configuration again as a new
          trial): ``KILLED``, status ``interrupted``, so that each trial is recorded once;
          but not one begun before ``since_ms`` (the snapshot resumed): an extended sweep's.
        """

        def write(client: Any) -> None:
            for run in _child_runs(client, self.experiment_id, self.parent_run_id):
                tid, tag = run.data.tags.get(TRIAL_TAG), run.data.tags.get(STATUS_TAG)
                status = statuses.get(tid)
                if status is None and (run.info.start_time or 0) < since_ms:
                    continue
                if tag == INTERRUPTED or (status is not None and (
                        run.info.status in ("FINISHED", "FAILED")
                        or (status == UNFINISHED and run.info.status == "KILLED"))):
                    continue
                if status is not None:
                    log_batch(client, run.info.run_id, tags={STATUS_TAG: status})
                    client.set_terminated(run.info.run_id, end_time=now_ms(), status=_run_status(status))
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


def _child_runs(client: Any, experiment_id: str, parent_run_id: str) -> list[Any]:
    """Every child run of a parent run (all pages)."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
                                  max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _run_status(status: str) -> str:
    """The MLflow run status of a trial outcome."""
    return {FAILED: "FAILED", UNFINISHED: "KILLED"}.get(status, "FINISHED")


def _plain(value: Any) -> Any:
    """``value`` as JSON data (numpy scalars a searcher suggests become Python numbers)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


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
