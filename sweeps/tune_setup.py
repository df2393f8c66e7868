"""Ray Tune's side of a sweep: its search algorithm, its scheduler and the Tuner (new, or
restored for ``--resume``)."""

from __future__ import annotations

from typing import Any

from trainables.schema import to_dict
from sweeps.grouping import leaves_nothing_to_prune
from sweeps.plan import Plan
from sweeps.planning import asha_max_t
from sweeps.storage import store_config
from trainables.report import K


def search_alg(plan: Plan, metric: str, mode: str, *, max_concurrent: int | None = None) -> Any:
    """The sweep's search algorithm. ``max_concurrent`` caps a grid's or random search's
    trials at once (its ``BasicVariantGenerator`` ignores Tune's ``max_concurrent_trials``,
    which caps a searcher such as Optuna's)."""
    cfg, space, points = plan.cfg, plan.space, plan.points
    if cfg.search.algorithm == "optuna":
        import optuna

        from sweeps.optuna_store import rdb, sampler, study_name
        from sweeps.searchers import GroupedOptuna, StudySearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if plan.group_points is not None:
            return GroupedOptuna(points=plan.group_points, space=plan.param_space,
                                 samples=cfg.search.num_samples, metric=metric, mode=mode, seed=cfg.seed,
                                 sweep=plan.name, storage=plan.study_storage, prior=plan.prior_samples)
        if cfg.search.objectives == "metric+params":  # the Pareto front of quality and size
            metric, mode = [metric, K.trainable_params], [mode, "min"]  # type: ignore[assignment]
        return StudySearch(metric=metric, mode=mode, sampler=sampler(cfg.seed, prior=plan.prior_samples),
                           study_name=study_name(plan.name), storage=rdb(plan.study_storage))
    import random

    from ray.tune.search import BasicVariantGenerator

    def generator(points: list[dict[str, Any]] | None = None) -> Any:
        return BasicVariantGenerator(points_to_evaluate=points, random_state=cfg.seed,
                                     max_concurrent=max_concurrent or 0)

    if points is not None:  # a budget-filtered grid: exactly these points, seeded order
        order = points * cfg.search.num_samples
        random.Random(cfg.seed).shuffle(order)
        return generator(order)
    if not any(p.kind == "grid" for p in space.swept):
        return generator()
    # A grid runs in a seeded random order, not in the order its values are listed.
    # Asynchronous successive halving (ASHA) compares a trial at a rung with the trials that
    # reached it before; a grid listed weak-to-strong (lr 2e-5, 2e-4, 2e-3) would let every
    # newcomer beat its predecessors and be promoted. Every point is still run exactly
    # ``num_samples`` times, and Tune still sees the grid (its table and config are unchanged).
    # Each point pins the grid keys only: Tune samples the other settings for it, once per trial.
    points = space.grid_points() * cfg.search.num_samples
    random.Random(cfg.seed).shuffle(points)
    return generator(points)


def scheduler_for(plan: Plan) -> Any:
    from ray.tune.schedulers import FIFOScheduler

    cfg = plan.cfg
    if cfg.scheduler.name == "fifo" or leaves_nothing_to_prune(plan.space, plan.groups):
        return FIFOScheduler()
    max_t = asha_max_t(cfg, plan.max_epoch)
    # time_attr 'epoch' is the fraction of data passes done: comparable across trials whatever
    # their batch size or evaluation interval.
    args = {"time_attr": "epoch", "grace_period": cfg.scheduler.grace_period, "max_t": max_t,
            "reduction_factor": cfg.scheduler.reduction_factor, "group_keys": plan.groups or ()}
    if cfg.scheduler.promotion == "pause":
        from sweeps.schedulers import PromotingASHA

        return PromotingASHA(**args)
    from sweeps.schedulers import GroupedASHA

    return GroupedASHA(**args)


def max_concurrent(cfg: Any, cluster: dict[str, float]) -> int | None:
    """Tune's cap on trials at once: ``search.max_concurrent``, and for worker-group trials at
    most as many as the cluster's CPUs and GPUs hold whole. Tune sees only each such trial's
    driver (:data:`trainables.trial.TRAIN_DRIVER_CPU`), so uncapped it starts a trial per
    sliver of a CPU; each started driver then holds a little of what the next worker group
    needs, and with every group waiting for resources none of them starts. ``cluster``: the
    cluster's resources (``ray.cluster_resources()``)."""
    import math

    res, cap = cfg.resources, cfg.search.max_concurrent
    if not res.uses_train_workers:
        return cap
    fits = math.floor(cluster.get("CPU", 0.0) / res.cpus_per_trial + 1e-9)
    if res.gpus_per_trial:
        fits = min(fits, math.floor(cluster.get("GPU", 0.0) / res.gpus_per_trial + 1e-9))
    fits = max(fits, 1)
    return min(cap, fits) if cap else fits


def _result_files() -> list[Any]:
    """Tune's per-trial result files (``progress.csv``, ``result.json``) without its
    TensorBoard event files, which Tune adds unless told not to: MLflow holds every metric, and
    importing tensorboardX slows every sweep's start. ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=0``
    in the environment brings the event files back."""
    import os

    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    return [CSVLoggerCallback(), JsonLoggerCallback()]


def _records_of(scheduler: Any) -> list[Any]:
    """The callback that keeps ``scheduler``'s rung records across ``--resume`` (none for FIFO)."""
    from sweeps.schedulers import GroupedASHA, PromotingASHA, SchedulerRecords

    return [SchedulerRecords(scheduler)] if isinstance(scheduler, (GroupedASHA, PromotingASHA)) else []


def tuner_for(plan: Plan, task: Any, recorder: Any, keep: Any, *, resume: bool) -> Any:
    """A new Tune sweep, or (``resume``) the interrupted one restored from its storage."""
    import ray
    from ray import tune

    from trainables.trial import trial_resources, tune_trial

    cfg = plan.cfg
    sweep_info = {"seed": cfg.seed, "resources": to_dict(cfg.resources),
                  "prepared": str(plan.prepared) if plan.prepared else None,
                  "storage": plan.storage, "adapters": plan.adapters, "bitsandbytes": plan.bitsandbytes}
    trainable = tune.with_resources(
        tune.with_parameters(tune_trial, base=plan.base, sweep=sweep_info),
        trial_resources(sweep_info["resources"]))
    # Tune prints these (not the per-step history lists) when a trial reports or ends.
    trainable._progress_metrics = list(dict.fromkeys([
        K.epoch, task.metric.name, *(m.name for m in task.report_metrics), K.train_loss,
        K.trainable_pct, K.samples_per_s, *(m.name for m in task.final_metrics)]))
    metric = task.metric
    limit = max_concurrent(cfg, ray.cluster_resources())
    experiment_path = f"{plan.storage.rstrip('/')}/{plan.name}"
    callbacks = [recorder, keep, *_result_files()]
    if resume and tune.Tuner.can_restore(experiment_path):
        tuner = tune.Tuner.restore(experiment_path, trainable=trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
        # Tune restores the callbacks pickled at launch; these are this driver's (its tracking
        # URI, its summary reads them). Tune gives them their saved state (get_state) when the
        # experiment restores: trial outcomes, attempts, MLflow runs, checkpoints to delete,
        # the scheduler's rung records (loaded into the restored Tuner's own scheduler).
        # (A Ray Client connection, ray://, runs the tuner remotely: its callbacks stay.)
        local = getattr(tuner, "_local_tuner", None)
        if local is not None:
            local.get_run_config().callbacks = callbacks + _records_of(local._tune_config.scheduler)
        return tuner
    scheduler = scheduler_for(plan)
    store_config(plan)
    param_space, num_samples = plan.param_space, cfg.search.num_samples
    if plan.group_points is not None:  # grouped Optuna: its searcher gives every setting
        param_space, num_samples = {}, plan.n_trials
    elif plan.points is not None:  # budget: the kept grid points are the whole sweep
        # Tune fills these from the points; a grid here would add its own trials.
        param_space = {k: tune.choice(v["grid_search"]) if isinstance(v, dict) and "grid_search" in v
                       else v for k, v in param_space.items()}
        num_samples = len(plan.points) * cfg.search.num_samples
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=metric.name, mode=metric.mode,
            search_alg=search_alg(plan, metric.name, metric.mode, max_concurrent=limit),
            scheduler=scheduler,
            num_samples=num_samples,
            # A searcher (Optuna) is capped here; grid and random search by their generator.
            max_concurrent_trials=limit if cfg.search.algorithm == "optuna" else None,
            # One-process trials reuse their actor: imports and CUDA context survive
            # from one trial to the next.
            reuse_actors=not cfg.resources.uses_train_workers,
        ),
        run_config=tune.RunConfig(
            name=plan.name, storage_path=plan.storage,
            callbacks=callbacks + _records_of(scheduler),
            # Every checkpoint stays until the retention callback finds that no snapshot in
            # storage needs it any more (sweeps.retention).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            # A retry restores the trial from its last checkpoint (adapter + optimizer).
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
            verbose=1,
        ),
    )
