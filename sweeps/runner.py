"""The one sweep runner every study script hands its :class:`SweepConfig` to.

``run_sweep`` does, in order:

1. **Validate everything, launch nothing.** The trial config, the search space (each value
   against the trial schema), the task's data files, the model (local path or hub, within
   seconds), the adapter targets against the model's module tree (built on the meta device,
   no weights), and the resources against the Ray cluster. Any mistake is a UserError:
   one line, exit code 2, no trial launched, nothing written to MLflow. (A local Ray starts
   in the background once the settings are checked, to overlap the model checks; a mistake
   found after that stops it before the error is printed.)
2. **Prepare the data once** (tokenised into a content-keyed cache that every trial opens).
3. **Record and run**: an MLflow parent run, then a Ray Tune sweep whose callbacks write one
   child run per trial and keep the best k adapter checkpoints.
4. **Summarise**: a table (hyperparameters, % trainable parameters, status, val loss, task
   metrics), a results CSV, and where the MLflow runs are.
"""

from __future__ import annotations

from typing import Any

from sweeps.config import SweepConfig
from sweeps.checks import check_resources
from sweeps.plan import Plan
from sweeps.planning import plan_sweep
from sweeps.ray_start import RayStarter, flush_held_worker_output
from sweeps.storage import check_name_is_new, drop_unrecorded_checkpoints, is_stored, snapshot_time, stored_config
from sweeps.summary import Outcome, print_header, status_of, summarise, trial_id_of
from sweeps.tracking.store import (StagedStore, check_sweep_in_store, check_tracking, http_settings, parent_run,
                                   study_experiment)
from sweeps.tune_setup import tuner_for


def run_sweep(cfg: SweepConfig, *, resume: bool = False, extend: int | None = None,
              warm_workers: bool = True) -> Outcome:
    """Validate, prepare, run and summarise one sweep (see the module docstring).

    ``warm_workers``: let a local Ray this sweep starts begin its worker processes warm
    (:func:`warm_runtime_env`). A multi-part study passes False: its later parts run in the
    same Ray, whose runtime env (bitsandbytes skipped or not) the first part would choose.

    Ctrl-C or SIGTERM while Tune runs ends the sweep after Tune's last experiment snapshot:
    the summary shows the trials that did not end as ``unfinished``, the parent run is
    ``KILLED`` with the command that resumes it, and the exit code is 130 (143 for SIGTERM).
    Any other way out (an error, a second signal) also ends the parent run and the open child
    runs, and the MLflow records that could not be written stay in the sweep's journal for
    ``--resume`` (:func:`sweeps.stopping.abort`).

    ``extend``: ``--extend N``, N more samples of a finished optuna sweep (per group with
    groups), from its stored study and under its MLflow parent run, in its Tune storage
    (:func:`sweeps.optuna_store.extension`)."""
    from sweeps.optuna_store import check_new_sweep, extension
    from sweeps.stopping import StopSignals

    prior = 0
    if resume:
        cfg = stored_config(cfg)
        check_sweep_in_store(cfg)
    elif extend:
        cfg, prior = extension(cfg, extend)
    else:
        check_name_is_new(cfg)
        check_new_sweep(cfg)
    with StopSignals() as signals:
        plan = _launch(cfg, warm_workers=warm_workers, stored=resume or bool(extend), prior=prior)
        plan.prior_samples = prior
        signals.install()  # again: a Ray joined from this thread installs its own SIGTERM handler
        return _record_and_run(plan, signals, resume=resume)


def _launch(cfg: SweepConfig, *, warm_workers: bool, stored: bool, prior: int = 0) -> Plan:
    """Plan the sweep while Ray starts, then put a new SQLite store in place.

    Ray starts once the settings are checked, while the model checks and the data
    preparation run. A mistake found after that stops the Ray this sweep started before it is
    reported: no trial was launched and nothing was written to MLflow or Tune storage."""
    ray_starter = RayStarter(dashboard=cfg.resources.uses_train_workers)
    staged = None
    try:
        plan = plan_sweep(cfg, stored=stored, prior=prior,
                          config_checked=lambda env: ray_starter.start(env if warm_workers else None))
        import mlflow  # noqa: F401  (imported while Ray finishes starting)

        staged = StagedStore(plan.tracking_uri)  # a new SQLite store: created meanwhile too
        ray_starter.wait()
        check_resources(cfg)
        staged.place()
    except BaseException:
        ray_starter.shutdown()
        if staged is not None:
            staged.discard()
        raise
    return plan


def _record_and_run(plan: Plan, signals: Any, *, resume: bool) -> Outcome:
    """The MLflow parent run, the Tune sweep and its summary; whatever ends it, the parent and
    child runs are closed and the records not written are kept (see :func:`run_sweep`)."""
    from mlflow import MlflowClient

    from sweeps.stopping import abort
    from trainables.tasks.registry import get_task

    task = get_task(plan.cfg.trial.task)
    client = MlflowClient(tracking_uri=plan.tracking_uri)
    check_tracking(client, plan.tracking_uri)
    experiment_id = study_experiment(plan, client)
    parent = parent_run(plan, client, experiment_id, resume=resume or bool(plan.prior_samples))
    print_header(plan, parent, experiment_id)
    recorder, keep = _callbacks(plan, task, experiment_id, parent)
    with http_settings(plan.tracking_uri):
        try:
            if resume:
                replayed = recorder.replay_journal()
                if replayed:
                    print(f"  MLflow journal: {replayed} record(s) an earlier driver of this sweep could "
                          "not write; written first\n", flush=True)
            since = snapshot_time(plan) if resume else 0.0
            tuner = tuner_for(plan, task, recorder, keep, resume=resume)
            with signals.fit():
                results = tuner.fit()
            outcome = _finish(plan, task, results, recorder, keep, parent, signals, resume=resume, since=since)
        except BaseException as e:
            stored = resume or is_stored(plan)
            abort(plan, recorder, parent, e, signals, resumable=stored)
            e.resumable = stored  # type: ignore[union-attr]  (what the command line says next)
            raise
    return outcome


def _callbacks(plan: Plan, task: Any, experiment_id: str, parent: str) -> tuple[Any, Any]:
    """The sweep's Tune callbacks: the MLflow recorder and the checkpoint retention (which
    keeps a checkpoint while an MLflow record still has to read its adapter)."""
    from sweeps.retention import CheckpointRetention
    from sweeps.tracking.recorder import MlflowRecorder

    cfg = plan.cfg
    recorder = MlflowRecorder(
        tracking_uri=plan.tracking_uri, experiment_id=experiment_id, parent_run_id=parent,
        base=plan.base, sweep_seed=cfg.seed, sweep_name=plan.name, model_type=plan.model_type,
        name_keys={p.key: p.short for p in plan.space.swept},
        final_metrics=tuple(m.name for m in task.final_metrics),
        report_metrics=tuple(m.name for m in task.report_metrics), storage=plan.storage)
    keep = CheckpointRetention(k=cfg.keep_best_k, metric=task.metric.name, mode=task.metric.mode)
    keep.pinned = recorder.pinned
    return recorder, keep


def _finish(plan: Plan, task: Any, results: Any, recorder: Any, keep: Any, parent: str, signals: Any, *,
            resume: bool, since: float) -> Outcome:
    """After Tune's loop: close what it left open, summarise, delete what no snapshot needs
    (``since``: the time of the Tune snapshot a resume started from)."""
    from trainables.mlflow_names import UNFINISHED

    interrupted = None
    if any(status_of(r, recorder) == UNFINISHED for r in results):
        # Tune's loop ends before every trial has ended only when told to stop (its SIGINT
        # handler, or SIGTERM forwarded to it); its last snapshot is written.
        interrupted = signals.received or "SIGINT"
        recorder.close_unfinished(f"the sweep was interrupted ({interrupted})")
    if resume and not interrupted:  # the killed drivers' orphans in the Optuna study
        from sweeps.optuna_store import fail_orphans

        fail_orphans(plan.study_storage, plan.name)
    if resume:
        recorder.close_stale_runs({trial_id_of(r): status_of(r, recorder) for r in results},
                                  since_ms=int(since * 1000))
        drop_unrecorded_checkpoints(plan, {trial_id_of(r) for r in results}, since=since)
    _settle_worker_output()
    outcome = summarise(plan, task, results, recorder, parent, interrupted=interrupted)
    keep.finish(f"{plan.storage.rstrip('/')}/{plan.name}")
    cfg = plan.cfg
    print(f"  checkpoints: keep_best_k={cfg.keep_best_k}; {len(keep.deleted)} other trial(s)' "
          f"adapter checkpoints deleted from Tune storage ({keep.deleted_bytes / 2**20:.2f} MiB freed)"
          + (f"; {keep.waiting} deletion(s) wait for the MLflow records that read them" if keep.waiting else ""))
    for failure in keep.failed:
        print(f"  could not delete {failure}")
    return outcome


def _settle_worker_output(quiet: float = 0.5, limit: float = 3.0) -> None:
    """Let Ray forward what the trial processes printed last before the summary prints.

    Ray's log monitor tails each worker's output files and sends new lines to the driver,
    behind the trials' reports, and the driver holds back lines that repeat across processes
    (Ray's log deduplication) until a window passes or Ray shuts down: a last trial's closing
    lines (its decoding's progress bars) could otherwise print under the summary. Waits until
    no line has come for ``quiet`` seconds (at most ``limit``: a process may keep printing),
    then prints the held-back lines as Ray's shutdown would, and a traceback cut short that
    :func:`~sweeps.ray_start.filtering` held. Ray has no public flush for this, so both use
    the internals its own printing thread uses; without them, nothing."""
    import sys
    import threading
    import time

    try:
        from ray._private import worker as ray_worker
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        return
    arrived, name = threading.Event(), "lorasweep-settle"
    dispatcher.add_handler(name, lambda data: arrived.set())
    try:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and arrived.wait(max(0.0, min(quiet, deadline - time.monotonic()))):
            arrived.clear()
    finally:
        dispatcher.remove_handler(name)
    try:
        ignore_prefix = ray_worker._should_ignore_worker_log_prefix(ray_worker.global_worker)
        with dispatcher._lock:  # held while Ray's thread prints, so not both at once
            flush_held_worker_output()
            for held, sink in ((ray_worker.stdout_deduplicator, sys.stdout),
                               (ray_worker.stderr_deduplicator, sys.stderr)):
                for batch in held.flush():
                    ray_worker.print_worker_logs(batch, sink, ignore_prefix)
    except AttributeError:
        pass
