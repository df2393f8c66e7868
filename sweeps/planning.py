"""Step 1 of a sweep: validate everything, launch nothing, and prepare the data once.

:func:`plan_sweep` checks the trial config, the search space (each value against the trial
schema), the task's data files, the model (local path or hub, within seconds), the adapter
targets against the model's module tree (built on the meta device, no weights), and the
tracking store and storage; any mistake is a :class:`~trainables.errors.UserError` (one line,
exit code 2, nothing launched or written). It returns the :class:`~sweeps.plan.Plan`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sweeps.config import SweepConfig

from trainables.config import TrialConfig
from trainables.errors import UserError
from trainables.schema import OTHER_ALPHA, from_dict, to_dict
from sweeps.checks import check_model, check_repeats, check_workers, sampled_trials, warm_starts, within_budget
from sweeps.grouping import group_keys, group_points, grouped_search, leaves_nothing_to_prune, sampled_keys, searched_space
from sweeps.optuna_store import check_objectives, check_study_storage, study_storage
from sweeps.plan import Plan
from sweeps.ray_start import warm_runtime_env
from sweeps.storage import check_storage, default_name, storage_path
from sweeps.tracking.store import check_tracking_uri, flush_timeout_s


def resolve_smoke_sources(trial: dict[str, Any]) -> dict[str, Any]:
    """``smoke:<name>`` model and data sources -> the local directories of the offline assets
    (built once into the cache; see :mod:`trainables.offline.registry`), so the trial loads them like
    any local path."""
    from trainables.offline.registry import resolve_smoke

    out = json.loads(json.dumps(trial))
    out["model"]["name_or_path"] = resolve_smoke(out["model"]["name_or_path"], kind="model")
    out["data"]["source"] = resolve_smoke(out["data"]["source"], kind="data")
    if out["data"].get("predict_file"):
        out["data"]["predict_file"] = resolve_smoke(out["data"]["predict_file"], kind="data")
    if out["eval"].get("compare_models"):
        out["eval"]["compare_models"] = [resolve_smoke(m, kind="model") for m in out["eval"]["compare_models"]]
    return out


def check_data_path(source: str) -> None:
    """A local data path that is not there, refused before an offline model is built for the
    sweep (the task checks the layout of one that is)."""
    from trainables.hub import looks_local

    if not source.startswith("smoke:") and looks_local(source) and not Path(source).expanduser().exists():
        raise UserError("data.source", f"{source} does not exist")


def sweep_space(cfg: SweepConfig, *, prior: int = 0) -> Any:
    """The search space the sweep runs (its seed replicates included), checked against the
    sweep's other settings (``prior``: the samples an extension adds to): read from the
    settings alone (no model, data or store)."""
    from search_spaces import load_space

    space = load_space(cfg.space, base=to_dict(cfg.trial))
    check_trial_count(cfg, space)
    if cfg.seeds:
        space = with_seed_replicates(space, cfg.seeds)
    check_repeats(cfg, space, prior=prior)
    check_overrides(cfg, space)
    check_timing_listed(space)
    return space


def check_trial_count(cfg: SweepConfig, space: Any) -> None:
    """Refuse a sweep of more than :data:`~sweeps.config.MAX_TRIALS` trials (grid points x
    seeds x samples, counted before any of them is listed)."""
    from sweeps.config import MAX_TRIALS

    grid, seeds, samples = space.grid_size(), cfg.seeds or 1, cfg.search.num_samples
    if grid * seeds * samples <= MAX_TRIALS:
        return
    made = f"{grid} grid points x {seeds} seeds x {samples} samples make {grid * seeds * samples} trials"
    field, flag, per = ("seeds", "--seeds", grid * samples) if cfg.seeds and seeds >= samples else \
        ("search.num_samples", "--num-samples", grid * seeds)
    raise UserError(field, f"{made}, more than the {MAX_TRIALS} a sweep plans; accepted here: {flag} "
                           f"1..{max(MAX_TRIALS // per, 1)}, or a smaller grid")


def check_overrides(cfg: SweepConfig, space: Any) -> None:
    """A setting given on the command line that the search space (or ``--seeds``) sweeps."""
    for key in cfg.overrides:
        swept = next((p for p in space.swept if key in _decided_by(p)), None)
        if swept is not None:
            raise UserError(key, f"--seeds {cfg.seeds} gives every configuration the seeds 0..{cfg.seeds - 1}; "
                                 "drop one of the two" if key == "seed" and cfg.seeds else
                            f"the search space sweeps it ({swept.kind} {list(swept.values)}); "
                            "pass a search space without it (--search-space) to fix its value")


def with_task_defaults(trial: dict[str, Any], task: Any) -> dict[str, Any]:
    """``trial`` with the task's default written where it leaves a setting to the task
    (``train.batching: null``), so that MLflow records what each trial ran with."""
    trial["train"]["batching"] = trial["train"].get("batching") or task.batchings[0]
    return trial


def plan_sweep(cfg: SweepConfig, *, prepare: bool = True, stored: bool = False, prior: int = 0,
               config_checked: Callable[[dict[str, Any] | None], None] | None = None) -> Plan:
    """Step 1 (and 2 when ``prepare``): validate everything and prepare the data.

    ``config_checked`` is called once the settings, the search space, the data and model
    sources and the tracking store are checked, before the checks that build the model's
    module tree (seconds, unless memoised) and the data preparation, with the runtime env
    that makes a local Ray's worker processes start warm (:func:`warm_runtime_env`, or None).
    The runner starts Ray there, so that the two overlap (see :func:`run_sweep`).

    ``stored``: the sweep as it was launched (``--resume``, ``--extend``), which cannot change;
    checks added since it was launched that only refuse a setting it could not act on (a data
    setting its task does not read) are left out, so that it still runs as it ran then.
    ``prior``: the samples (per group with groups) the sweep ran before an ``--extend``."""
    from search_spaces import apply_hyperparameters, base_with_fixed, to_tune
    from trainables.hub import check_model_source
    from trainables.mlflow_names import default_tracking_uri
    from trainables.tasks.registry import check_data_settings, get_task

    task = get_task(cfg.trial.task)
    check_storage(storage_path(cfg))
    base = to_dict(cfg.trial)
    space = sweep_space(cfg, prior=prior)
    base = base_with_fixed(base, space, keep=cfg.overrides)
    check_data_path(base["data"]["source"])
    base = with_task_defaults(resolve_smoke_sources(base), task)
    # The checks build trial configs from ``probe``: the base with the first value of every
    # sampled setting (the base alone may lack one: alpha, when alpha_over_r is sampled).
    # Every grid combination must make a valid trial (e.g. alpha never given twice); the
    # method and quantisation checks below read the same trials.
    probe = apply_hyperparameters(base, {p.key: p.tune_values[0] for p in space.swept if p.kind != "grid"})
    grid = [(point, from_dict(TrialConfig, apply_hyperparameters(probe, point)))
            for point in space.grid_points() or [{}]]
    grid_trials = [trial for _, trial in grid]
    # The trial the driver checks and prepares data for: every swept setting at its first value.
    trial0 = grid_trials[0]
    # The model first: a task's own checks may load its tokenizer.
    check_model_source(trial0.model.name_or_path, revision=trial0.model.revision)
    for trial in [*grid_trials, *sampled_data_trials(probe, space)] if not stored else []:
        check_data_settings(trial)
    task.check(trial0)
    check_workers(cfg, grid_trials, space)
    tracking_uri = cfg.tracking_uri or default_tracking_uri()
    check_tracking_uri(tracking_uri)
    flush_timeout_s()  # read at the sweep's end: a bad value is refused before anything is written
    study_url = study_storage(cfg, tracking_uri, storage_path(cfg))
    check_study_storage(study_url)
    from trainables.quantization import uses_bitsandbytes

    bitsandbytes = uses_bitsandbytes([trial0, *grid_trials], sampled_keys(space))
    groups = group_keys(cfg, space)
    check_before_ray(cfg, trial0, space, groups, launching=config_checked is not None)
    if config_checked is not None:  # at most the grid's trials (a budget may keep fewer)
        config_checked(warm_runtime_env(cfg, bitsandbytes=bitsandbytes,
                                        max_trials=trial_count(cfg, space, groups=groups)))
    check_objectives(cfg, groups, study_url)
    # imports Ray Tune
    param_space = to_tune(searched_space(space, groups) if grouped_search(cfg, groups) else space,
                          algorithm=cfg.search.algorithm)
    model_type = check_model(cfg, task, trial0, probe, space, grid_trials)
    adapters = warm_starts(grid, space, model_type, tracking_uri)

    points, rejected = None, []
    if cfg.max_trainable_params:
        points, rejected = within_budget(cfg, space, grid, task.skeleton(trial0), task.peft_task_type)
    plan = Plan(cfg=cfg, space=space, base=base, param_space=param_space,
                n_trials=trial_count(cfg, space, points, groups=groups),
                name=cfg.name or default_name(cfg), storage=storage_path(cfg),
                tracking_uri=tracking_uri, experiment=cfg.experiment_name,
                model_type=model_type, adapters=adapters, points=points,
                rejected=rejected, bitsandbytes=bitsandbytes, groups=groups, study_storage=study_url,
                group_points=(points if points is not None else group_points(space, groups))
                if grouped_search(cfg, groups) else None)
    if prepare:
        plan.prepared = task.prepare(trial0, progress=True)
        plan.stats = json.loads((plan.prepared / "stats.json").read_text())
        plan.max_epoch = max_epoch_of(trial0, space, plan.stats)
        if cfg.scheduler.name == "asha" and not leaves_nothing_to_prune(space, groups):
            asha_max_t(cfg, plan.max_epoch)  # before any trial is started or anything written
    return plan


def sampled_data_trials(probe: dict[str, Any], space: Any) -> list[TrialConfig]:
    """A trial for every value that sampled parameters can give each data setting only some
    tasks read, the rest as in ``probe`` (:func:`~sweeps.checks.sampled_trials`, one setting at
    a time: the check reads each setting alone, so their values are not combined)."""
    from trainables.tasks.base import TASK_DATA_SETTINGS

    return [t for name in TASK_DATA_SETTINGS for t in sampled_trials([probe], space, {f"data.{name}"})]


def _decided_by(param: Any) -> set[str]:
    """The trial settings a swept parameter decides: its keys, and alpha for a swept
    alpha_over_r (and the other way round)."""
    keys = set(param.keys)
    return keys | {OTHER_ALPHA[k] for k in keys if k in OTHER_ALPHA}


def trial_count(cfg: SweepConfig, space: Any, points: list[dict[str, Any]] | None = None, *,
                 groups: tuple[str, ...] | None) -> int:
    """Trials the sweep launches: ``num_samples`` of every grid point (``points``: those a
    parameter budget kept), or with Optuna, ``num_samples`` in all or per group."""
    if cfg.search.algorithm == "optuna":
        if not grouped_search(cfg, groups):
            return cfg.search.num_samples
        return (len(points) if points is not None else len(group_points(space, groups))) * cfg.search.num_samples
    return (len(points) if points is not None else space.grid_size()) * cfg.search.num_samples


def with_seed_replicates(space: Any, n: int) -> Any:
    """The space with a ``seed`` grid 0..n-1 (replicates of every configuration)."""
    from search_spaces import Param, SearchSpace

    if any(p.key == "seed" for p in space.params):
        raise UserError("seeds", f"the search space already sets the seed ({space.source}); "
                                 "drop one of the two")
    return SearchSpace(description=space.description, source=space.source,
                       params=(*space.params, Param("seed", "grid", tuple(range(n)), "scientific")))


def max_epoch_of(trial0: TrialConfig, space: Any, stats: dict[str, Any]) -> float:
    """The epoch value of the longest trial's last report: ASHA's max_t. Every combination of
    the swept values that change a trial's length is planned (pure arithmetic)."""
    import itertools

    from search_spaces import apply_hyperparameters
    from trainables.optim import plan_steps

    timing = check_timing_listed(space)
    longest = 0.0
    for combo in itertools.product(*[p.values for p in timing]):
        hp = dict(zip([p.key for p in timing], combo))
        cfg = from_dict(TrialConfig, apply_hyperparameters(to_dict(trial0), hp))
        steps = plan_steps(cfg.train, int(stats["train_examples"]))
        longest = max(longest, steps.epoch_at(steps.total_steps))
    return longest


def check_timing_listed(space: Any) -> list[Any]:
    """The swept settings that change a trial's length, each refused unless its values are
    listed (grid or choice): ASHA's rungs and the longest trial are planned from them."""
    timing = [p for p in space.swept
              if p.key in ("train.epochs", "train.max_steps", "train.batch_size", "train.grad_accum")]
    for p in timing:
        if p.kind not in ("grid", "choice"):
            raise UserError(f"space.{p.section}.{p.short}",
                            "a sampled range of a setting that changes the trial length leaves "
                            "ASHA's rungs undefined; use grid or choice")
    return timing


def check_before_ray(cfg: SweepConfig, trial0: TrialConfig, space: Any, groups: Any, *, launching: bool) -> None:
    """What can be refused before a local Ray starts: ASHA's rungs where the trials' length
    is a number of epochs (with ``train.max_steps`` it needs the data's size), and, when
    ``launching`` (not a dry run, which may plan for another machine), CPUs or GPUs per trial
    that this machine's Ray could never give."""
    from sweeps.checks import check_local_resources

    timed = {p.key for p in space.swept if p.key != "train.epochs" or p.kind not in ("grid", "choice")} & {
        "train.max_steps", "train.batch_size", "train.grad_accum", "train.epochs"}
    if cfg.scheduler.name == "asha" and not leaves_nothing_to_prune(space, groups) and not timed \
            and trial0.train.max_steps is None:
        epochs = [p.values for p in space.swept if p.key == "train.epochs" and p.kind in ("grid", "choice")]
        asha_max_t(cfg, float(max(epochs[0])) if epochs else float(trial0.train.epochs))
    if launching:
        check_local_resources(cfg)


def asha_max_t(cfg: SweepConfig, max_epoch: float) -> float:
    """ASHA's last rung in epochs; refuses a grace period that leaves no rung before it."""
    max_t = cfg.scheduler.max_t or max_epoch
    if cfg.scheduler.grace_period >= max_t:
        raise UserError("scheduler.grace_period", f"{cfg.scheduler.grace_period:g} epochs leaves ASHA "
                                                  f"no rung before the end of a trial ({max_t:g} "
                                                  "epochs); lower it or use scheduler.name=fifo")
    return max_t
