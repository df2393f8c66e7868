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


def search_alg(plan: Plan, metric: str, mode: str) -> Any:
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

    if points is not None:  # a budget-filtered grid: exactly these points, seeded order
        order = points * cfg.search.num_samples
        random.Random(cfg.seed).shuffle(order)
        return BasicVariantGenerator(points_to_evaluate=order, random_state=cfg.seed)
    if not space.swept or any(p.kind != "grid" for p in space.swept):
        return BasicVariantGenerator(random_state=cfg.seed)
    # A pure grid runs in a seeded random order, not in the order its values are listed.
    # Asynchronous successive halving (ASHA) compares a trial at a rung with the trials that
    # reached it before; a grid listed weak-to-strong (lr 2e-5, 2e-4, 2e-3) would let every
    # newcomer beat its predecessors and be promoted. Every point is still run exactly
    # ``num_samples`` times, and Tune still sees the grid (its table and config are unchanged).
    points = space.grid_points() * cfg.search.num_samples
    random.Random(cfg.seed).shuffle(points)
    return BasicVariantGenerator(points_to_evaluate=points, random_state=cfg.seed)


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


def tuner_for(plan: Plan, task: Any, recorder: Any, keep: Any, *, resume: bool) -> Any:
    """A new Tune sweep, or (``resume``) the interrupted one restored from its storage."""
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
    experiment_path = f"{plan.storage.rstrip('/')}/{plan.name}"
    if resume and tune.Tuner.can_restore(experiment_path):
        tuner = tune.Tuner.restore(experiment_path, trainable=trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
        # Tune restores the callbacks pickled at launch; these are this driver's (its tracking
        # URI, its summary reads them). Tune gives them their saved state (get_state) when the
        # experiment restores: trial outcomes, attempts, MLflow runs, checkpoints to delete.
        # (A Ray Client connection, ray://, runs the tuner remotely: its callbacks stay.)
        if getattr(tuner, "_local_tuner", None) is not None:
            tuner._local_tuner.get_run_config().callbacks = [recorder, keep]
        return tuner
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
            search_alg=search_alg(plan, metric.name, metric.mode),
            scheduler=scheduler_for(plan),
            num_samples=num_samples,
            max_concurrent_trials=cfg.search.max_concurrent,
            # One-process trials reuse their actor: imports and CUDA context survive
            # from one trial to the next.
            reuse_actors=not cfg.resources.uses_train_workers,
        ),
        run_config=tune.RunConfig(
            name=plan.name, storage_path=plan.storage,
            callbacks=[recorder, keep],
            # Every checkpoint stays until the retention callback finds that no snapshot in
            # storage needs it any more (sweeps.retention).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            # A retry restores the trial from its last checkpoint (adapter + optimizer).
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
            verbose=1,
        ),
    )
