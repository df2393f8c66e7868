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

import contextlib
import csv
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trainables.config import SweepConfig, TrialConfig
from trainables.errors import UserError, did_you_mean, one_of
from trainables.mlflow_writer import storage_fs
from trainables.schema import from_dict, to_dict

SWEEP_FILE = "lorasweep_sweep.json"


@dataclass
class Plan:
    """Everything validated and derived before launch."""

    cfg: SweepConfig
    space: Any
    base: dict[str, Any]
    param_space: dict[str, Any]
    n_trials: int | None
    name: str
    storage: str
    tracking_uri: str
    experiment: str
    model_type: str
    prepared: Path | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    adapters: dict[str, str] = field(default_factory=dict)
    """``adapter.init_from`` values -> local adapter directories (warm starts)."""
    points: list[dict[str, Any]] | None = None
    """Under a parameter budget: the grid points within it (the others never launch)."""
    rejected: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    """Under a parameter budget: the grid points over it, with their trainable parameters."""
    max_epoch: float = 1.0
    groups: tuple[str, ...] | None = None
    """The swept settings (Tune keys) whose values make ASHA's groups; None = sweep-wide."""
    group_points: list[dict[str, Any]] | None = None
    """Grouped Optuna: each group's values of the grouping settings (one study each)."""
    bitsandbytes: bool = True
    """Whether a trial may load bitsandbytes (else trial processes skip importing it)."""


@dataclass
class Outcome:
    rows: list[dict[str, Any]]
    counts: dict[str, int]
    csv_path: Path
    parent_run_id: str
    exit_code: int
    lost: dict[str, list[str]] = field(default_factory=dict)
    """MLflow records that could not be written (the store stayed unreachable), per trial."""
    interrupted: str | None = None
    """The signal that interrupted the sweep (SIGINT, SIGTERM), or None."""


# --------------------------------------------------------------------------- sources


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


# --------------------------------------------------------------------------- planning


def default_name(cfg: SweepConfig) -> str:
    part = f"-{cfg.part}" if cfg.part else ""
    return f"{cfg.study}-{cfg.preset}{part}-{time.strftime('%Y%m%d-%H%M%S')}"


def storage_path(cfg: SweepConfig) -> str:
    if cfg.storage and "://" in cfg.storage:
        return cfg.storage
    return str(Path(cfg.storage or "ray_results").expanduser().resolve())


def plan_sweep(cfg: SweepConfig, *, prepare: bool = True,
               config_checked: Callable[[dict[str, Any] | None], None] | None = None) -> Plan:
    """Step 1 (and 2 when ``prepare``): validate everything and prepare the data.

    ``config_checked`` is called once the settings, the search space, the data and model
    sources and the tracking store are checked, before the checks that build the model's
    module tree (seconds, unless memoised) and the data preparation, with the runtime env
    that makes a local Ray's worker processes start warm (:func:`warm_runtime_env`, or None).
    The runner starts Ray there, so that the two overlap (see :func:`run_sweep`).
    """
    from search_spaces import apply_hyperparameters, base_with_fixed, load_space, to_tune
    from trainables.hub import check_model_source
    from trainables.mlflow_names import default_tracking_uri
    from trainables.tasks.registry import get_task

    task = get_task(cfg.trial.task)
    check_storage(storage_path(cfg))
    base = to_dict(cfg.trial)
    space = load_space(cfg.space, base=base)
    if cfg.seeds:
        space = with_seed_replicates(space, cfg.seeds)
    for key in cfg.overrides:
        swept = next((p for p in space.swept if key in _decided_by(p)), None)
        if swept is not None:
            raise UserError(key, f"the search space sweeps it ({swept.kind} {list(swept.values)}); "
                                 "pass a search space without it (--search-space) to fix its value")
    base = apply_hyperparameters(base_with_fixed(base, space), cfg.overrides)
    base = resolve_smoke_sources(base)
    # The checks build trial configs from ``probe``: the base with the first value of every
    # sampled setting (the base alone may lack one: alpha, when alpha_over_r is sampled).
    # Every grid combination must make a valid trial (e.g. alpha never given twice); the
    # method and quantisation checks below read the same trials.
    probe = apply_hyperparameters(base, {p.key: p.tune_values[0] for p in space.swept if p.kind != "grid"})
    grid_trials = [from_dict(TrialConfig, apply_hyperparameters(probe, point))
                   for point in space.grid_points() or [{}]]
    # The trial the driver checks and prepares data for.
    trial0 = from_dict(TrialConfig, apply_hyperparameters(probe, {p.key: p.tune_values[0] for p in space.swept}))
    task.check(trial0)
    check_model_source(trial0.model.name_or_path, revision=trial0.model.revision)
    tracking_uri = cfg.tracking_uri or default_tracking_uri()
    check_tracking_uri(tracking_uri)
    from trainables.quantization import uses_bitsandbytes

    bitsandbytes = uses_bitsandbytes([trial0, *grid_trials], _sampled_keys(space))
    groups = group_keys(cfg, space)
    if config_checked is not None:  # at most the grid's trials (a budget may keep fewer)
        config_checked(warm_runtime_env(cfg, bitsandbytes=bitsandbytes,
                                        max_trials=_trial_count(cfg, space, groups=groups)))
    # imports Ray Tune (~1 s)
    param_space = to_tune(_searched(space, groups) if _grouped_search(cfg, groups) else space,
                          algorithm=cfg.search.algorithm)
    model_type = check_model(cfg, task, trial0, probe, space, grid_trials)
    adapters = _warm_starts(probe, space, model_type, tracking_uri)

    points, rejected = None, []
    if cfg.max_trainable_params:
        points, rejected = _within_budget(cfg, space, probe, task.skeleton(trial0), task.peft_task_type)
    plan = Plan(cfg=cfg, space=space, base=base, param_space=param_space,
                n_trials=_trial_count(cfg, space, points, groups=groups),
                name=cfg.name or default_name(cfg), storage=storage_path(cfg),
                tracking_uri=tracking_uri, experiment=cfg.experiment or f"lorasweep-{cfg.study}",
                model_type=model_type, adapters=adapters, points=points,
                rejected=rejected, bitsandbytes=bitsandbytes, groups=groups,
                group_points=(points if points is not None else _group_points(space, groups))
                if _grouped_search(cfg, groups) else None)
    if prepare:
        plan.prepared = task.prepare(trial0, progress=True)
        plan.stats = json.loads((plan.prepared / "stats.json").read_text())
        plan.max_epoch = _max_epoch(trial0, space, plan.stats)
        if cfg.scheduler.name == "asha" and not leaves_nothing_to_prune(space, groups):
            asha_max_t(cfg, plan.max_epoch)  # before any trial is started or anything written
    return plan


def _decided_by(param: Any) -> set[str]:
    """The trial settings a swept parameter decides: its keys, and alpha for a swept
    alpha_over_r (and the other way round)."""
    keys = set(param.keys)
    tied = {"adapter.alpha": "adapter.alpha_over_r", "adapter.alpha_over_r": "adapter.alpha"}
    return keys | {tied[k] for k in keys if k in tied}


def _trial_count(cfg: SweepConfig, space: Any, points: list[dict[str, Any]] | None = None, *,
                 groups: tuple[str, ...] | None) -> int:
    """Trials the sweep launches: ``num_samples`` of every grid point (``points``: those a
    parameter budget kept), or with Optuna, ``num_samples`` in all or per group."""
    if cfg.search.algorithm == "optuna":
        if not _grouped_search(cfg, groups):
            return cfg.search.num_samples
        return (len(points) if points is not None else len(_group_points(space, groups))) * cfg.search.num_samples
    return (len(points) if points is not None else space.grid_size()) * cfg.search.num_samples


# --------------------------------------------------------------------------- groups


def group_keys(cfg: SweepConfig, space: Any) -> tuple[str, ...] | None:
    """The swept settings whose values make ASHA's groups (``scheduler.groups``), as Tune
    ``param_space`` keys; None = sweep-wide. Replicate seeds always separate groups."""
    setting = cfg.scheduler.groups.strip()
    scientific = [p.key for p in space.swept if p.section == "scientific"]
    seed = [k for k in scientific if k == "seed"]
    if setting == "none":
        return None
    if setting in ("auto", "scientific"):
        if setting == "scientific" and scientific == seed:
            raise UserError("scheduler.groups", f"the search space ({space.source}) has no scientific "
                                                "setting to group trials by; use groups=none (sweep-wide "
                                                "ASHA) or name swept settings")
        return tuple(scientific) or None
    known = {name: p.key for p in space.swept for name in (p.key, p.short)}
    keys = []
    for name in (n.strip() for n in setting.split(",")):
        if name not in known:
            raise UserError("scheduler.groups", f"{name!r} is not swept by the search space; accepted: "
                                                f"auto, scientific, none, or swept settings "
                                                f"({one_of(sorted({p.short for p in space.swept})) or 'none'})"
                                                f"{did_you_mean(name, list(known))}")
        keys.append(known[name])
    return tuple(dict.fromkeys(keys + seed))


def leaves_nothing_to_prune(space: Any, groups: tuple[str, ...] | None) -> bool:
    """True when every swept setting makes the groups: each group's trials are copies of one
    configuration, and ASHA has nothing to compare."""
    return groups is not None and all(p.key in groups for p in space.swept)


def _grouped_search(cfg: SweepConfig, groups: tuple[str, ...] | None) -> bool:
    return cfg.search.algorithm == "optuna" and groups is not None


def _searched(space: Any, groups: tuple[str, ...]) -> Any:
    """Grouped Optuna: the part of the space each group's study searches (checked)."""
    from search_spaces import SearchSpace

    for p in space.swept:
        if p.key in groups and p.kind not in ("grid", "choice"):
            raise UserError(f"space.{p.section}.{p.short}",
                            f"trials are grouped by it (scheduler.groups), so with search.algorithm "
                            f"optuna its values must be listed ({{grid: [...]}} or {{choice: [...]}}), "
                            f"one Optuna study each; got {p.kind}")
    rest = tuple(p for p in space.params if p.key not in groups)
    if not any(p.kind != "fixed" for p in rest):
        raise UserError("search.algorithm", "optuna searches the settings trials are not grouped by, and "
                                            "every swept setting makes the groups; sweep nuisance settings "
                                            "(e.g. lr), use search.algorithm grid, or scheduler.groups=none")
    return SearchSpace(description=space.description, params=rest, source=space.source)


def _group_points(space: Any, groups: tuple[str, ...] | None) -> list[dict[str, Any]]:
    """Every combination of the grouping settings' listed values (Tune values)."""
    import itertools

    params = [p for p in space.swept if groups and p.key in groups]
    return [dict(zip([p.key for p in params], combo))
            for combo in itertools.product(*[p.tune_values for p in params])]


def _sampled_keys(space: Any) -> set[str]:
    """The settings a search-space dimension samples (choice, uniform, ...) rather than grids."""
    return {k for p in space.swept if p.kind != "grid" for k in p.keys}


def check_model(cfg: SweepConfig, task: Any, trial0: TrialConfig, base: dict[str, Any], space: Any,
                grid_trials: list[TrialConfig]) -> str:
    """Check every adapter target group, method, quantisation and batching mode the sweep may
    use against the model's module tree (built on the meta device from its config); return
    its model type.

    Building that tree needs torch and transformers imported (~5 s on two cores). For a local
    model directory the outcome of checks that passed is memoised on everything they read
    (the directory's config files, the settings checked, the library versions, lorasweep's
    code), so an unchanged sweep launched again skips them; a failure is never memoised.
    """
    from trainables.cache import memoised_on_model
    from trainables.models import model_source

    targets = sorted({trial0.adapter.targets} | set(space.values_of("adapter.targets")))
    pairs = _method_pairs(base, space, grid_trials)
    trials = [trial0, *grid_trials]

    def run() -> str:
        from trainables.adapters import check_adapter_methods, check_adapter_targets
        from trainables.batching import batching_mode
        from trainables.quantization import check_quantization

        skeleton = task.skeleton(trial0)
        for trial in trials:
            batching_mode(task, trial, skeleton)
        check_adapter_targets(skeleton, targets)
        check_adapter_methods(skeleton, pairs)
        check_quantization(trials, skeleton, cfg.resources)
        return skeleton.config.model_type

    return memoised_on_model("model-checks", model_source(trial0), run,
                             libraries=("torch", "transformers", "peft", "bitsandbytes"),
                             task=task.name, targets=targets, pairs=pairs,
                             trials=[to_dict(t) for t in trials], resources=to_dict(cfg.resources))


def _method_pairs(base: dict[str, Any], space: Any, grid_trials: list[TrialConfig]) -> list[tuple[str, str]]:
    """Every (adapter.method, adapter.targets) pair the sweep may run. The grid's trials
    (``grid_trials``) give the pairs exactly (a coupled ``method+targets`` grid pairs only its
    own values); a sampled (choice) method or target group is checked against every value of
    the other, each pair's trial config built, so method/base combinations (a quantised base)
    are checked too."""
    import itertools

    from search_spaces import apply_hyperparameters

    keys = ("adapter.method", "adapter.targets")
    trials = grid_trials
    if _sampled_keys(space) & set(keys):
        methods = [base["adapter"]["method"], *space.values_of("adapter.method")]
        targets = [base["adapter"]["targets"], *space.values_of("adapter.targets")]
        trials = [from_dict(TrialConfig, apply_hyperparameters(base, dict(zip(keys, c))))
                  for c in itertools.product(dict.fromkeys(methods), dict.fromkeys(targets))]
    return list(dict.fromkeys((t.adapter.method, t.adapter.targets) for t in trials))


def _within_budget(cfg: SweepConfig, space: Any, base: dict[str, Any], skeleton: Any,
                   task_type: str) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], int]]]:
    """Split the grid into the points within ``max_trainable_params`` and those over it,
    counting each configuration's trainable parameters on the meta-device model."""
    import copy

    from search_spaces import apply_hyperparameters
    from trainables.adapters import build_adapter_model, count_parameters

    budget = cfg.max_trainable_params
    for p in space.swept:
        if any(k.startswith("adapter.") for k in p.keys) and p.kind != "grid":
            raise UserError(f"space.{p.section}.{p.short}",
                            "under max_trainable_params, adapter settings are swept as grids (or "
                            "coupled grids such as r+targets), so every configuration is counted "
                            f"before launch; got {p.kind}")
    counts: dict[str, int] = {}
    kept, rejected = [], []
    for point in space.grid_points() or [{}]:
        trial = from_dict(TrialConfig, apply_hyperparameters(base, point))
        key = json.dumps(to_dict(trial.adapter), sort_keys=True)
        if key not in counts:
            model = build_adapter_model(copy.deepcopy(skeleton), trial.adapter, task_type=task_type)
            counts[key] = count_parameters(model).trainable
        (kept if counts[key] <= budget else rejected).append(point if counts[key] <= budget
                                                             else (point, counts[key]))
    if not kept:
        smallest = min(n for _, n in rejected)
        raise UserError("max_trainable_params", f"every configuration of the space trains more than "
                                                f"{budget:,} parameters (the smallest {smallest:,})")
    return kept, rejected


def _warm_starts(base: dict[str, Any], space: Any, model_type: str, tracking_uri: str) -> dict[str, str]:
    """Resolve (download) every ``adapter.init_from`` the sweep can use and check that each
    fits every configuration it meets (same rank and target modules)."""
    from search_spaces import apply_hyperparameters
    from trainables.adapters import resolve_targets
    from trainables.warmstart import check_compatible, resolve_init_from

    points = space.grid_points() or [{}]
    swept = {p.key for p in space.swept}
    if "adapter.init_from" in swept and any(p.kind != "grid" for p in space.swept
                                            if p.key in ("adapter.r", "adapter.targets", "adapter.init_from")):
        raise UserError("space.adapter.init_from", "warm starts are checked against each rank and "
                                                    "target group: sweep init_from, r and targets as grids")
    out: dict[str, str] = {}
    for point in points:
        trial = from_dict(TrialConfig, apply_hyperparameters(base, point))
        value = trial.adapter.init_from
        if not value:
            continue
        if value not in out:
            out[value] = str(resolve_init_from(value, tracking_uri))
        check_compatible(Path(out[value]), r=trial.adapter.r, value=value,
                         modules=resolve_targets(trial.adapter.targets, model_type).modules)
    return out


def with_seed_replicates(space: Any, n: int) -> Any:
    """The space with a ``seed`` grid 0..n-1 (replicates of every configuration)."""
    from search_spaces import Param, SearchSpace

    if any(p.key == "seed" for p in space.params):
        raise UserError("seeds", f"the search space already sets the seed ({space.source}); "
                                 "drop one of the two")
    return SearchSpace(description=space.description, source=space.source,
                       params=(*space.params, Param("seed", "grid", tuple(range(n)), "scientific")))


def _max_epoch(trial0: TrialConfig, space: Any, stats: dict[str, Any]) -> float:
    """The epoch value of the longest trial's last report: ASHA's max_t. Every combination of
    the swept values that change a trial's length is planned (pure arithmetic)."""
    import itertools

    from search_spaces import apply_hyperparameters
    from trainables.optim import plan_steps

    timing = [p for p in space.swept
              if p.key in ("train.epochs", "train.max_steps", "train.batch_size", "train.grad_accum")]
    for p in timing:
        if p.kind not in ("grid", "choice"):
            raise UserError(f"space.{p.section}.{p.short}",
                            "a sampled range of a setting that changes the trial length leaves "
                            "ASHA's rungs undefined; use grid or choice")
    longest = 0.0
    for combo in itertools.product(*[p.values for p in timing]):
        hp = dict(zip([p.key for p in timing], combo))
        cfg = from_dict(TrialConfig, apply_hyperparameters(to_dict(trial0), hp))
        steps = plan_steps(cfg.train, int(stats["train_examples"]))
        longest = max(longest, steps.epoch_at(steps.total_steps))
    return longest


def check_resources(cfg: SweepConfig) -> None:
    """Refuse requests the running Ray cluster can never meet (they would hang silently)."""
    import ray

    total = ray.cluster_resources()
    cpus, gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
    res = cfg.resources
    if res.cpus_per_trial > cpus:
        raise UserError("resources.cpus_per_trial", f"{res.cpus_per_trial:g} CPUs per trial, but the "
                                                    f"Ray cluster has {cpus:g}")
    if res.gpus_per_trial > gpus:
        raise UserError("resources.gpus_per_trial",
                        f"{res.gpus_per_trial:g} GPUs per trial, but the Ray cluster has {gpus:g}"
                        + ("; use --gpus-per-trial 0 to train on CPU" if gpus == 0 else ""))
    if res.uses_train_workers:
        from trainables.trial import TRAIN_DRIVER_CPU

        if res.cpus_per_trial - TRAIN_DRIVER_CPU <= 0:
            raise UserError("resources.cpus_per_trial", "too small for a Ray Train worker group")


# --------------------------------------------------------------------------- running


def _search_alg(plan: Plan, metric: str, mode: str) -> Any:
    cfg, space, points = plan.cfg, plan.space, plan.points
    if cfg.search.algorithm == "optuna":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if plan.group_points is not None:
            from sweeps.searchers import GroupedOptuna

            return GroupedOptuna(points=plan.group_points, space=plan.param_space,
                                 samples=cfg.search.num_samples, metric=metric, mode=mode, seed=cfg.seed)
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(metric=metric, mode=mode, sampler=optuna.samplers.TPESampler(seed=cfg.seed))
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


def asha_max_t(cfg: SweepConfig, max_epoch: float) -> float:
    """ASHA's last rung in epochs; refuses a grace period that leaves no rung before it."""
    max_t = cfg.scheduler.max_t or max_epoch
    if cfg.scheduler.grace_period >= max_t:
        raise UserError("scheduler.grace_period", f"{cfg.scheduler.grace_period} epochs leaves ASHA "
                                                  f"no rung before the end of a trial ({max_t:g} "
                                                  "epochs); lower it or use scheduler.name=fifo")
    return max_t


def _scheduler(plan: Plan) -> Any:
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


class RayStarter:
    """Starts Ray in a background thread while the driver goes on validating and preparing.

    A local Ray takes 3-5 s to start, mostly waiting on the processes it launches. Meanwhile
    the driver imports Ray Tune, checks the model (memoised: :func:`check_model`), prepares
    the data (cached) and creates a new MLflow store (:class:`StagedStore`); Ray's new worker
    processes import what the trials need (:func:`warm_runtime_env`). On two cores a smoke
    sweep printed its header after 5.0-5.2 s (8.4-9.9 s with only Ray's start overlapped, ~12.6 s
    with nothing; ``bench/cold_start.py``).

    The thread lives as long as the process (or until :meth:`shutdown`): Ray binds the
    processes it starts to the lifetime of the thread that started them (Linux
    ``PR_SET_PDEATHSIG``), so that thread must not end while Ray runs.
    """

    def __init__(self) -> None:
        import threading

        self._ready = threading.Event()
        self._release = threading.Event()
        self._thread: Any = None
        self._error: BaseException | None = None
        self.started = False
        """True when this starter initialised Ray (it was not already initialised)."""

    def start(self, runtime_env: dict[str, Any] | None = None) -> None:
        """Start a local Ray in the background (``runtime_env``: its job's, see
        :func:`warm_runtime_env`); nothing when joining ``$RAY_ADDRESS``."""
        import threading

        if os.environ.get("RAY_ADDRESS"):
            # Joining a running cluster (a job on it, or Ray Client) takes about a second and
            # starts no processes: it happens in :meth:`wait`, in the driver's thread.
            return
        if self._thread is None:
            # SIGTERM meanwhile is the runner's (sweeps.stopping.StopSignals): it raises in the
            # main thread, and the atexit handlers stop Ray's processes.
            self._thread = threading.Thread(target=self._run, args=(runtime_env,), name="lorasweep-ray",
                                            daemon=True)
            self._thread.start()

    def _run(self, runtime_env: dict[str, Any] | None) -> None:
        try:
            self.started = _init_ray(runtime_env)
        except BaseException as e:  # re-raised in the driver's thread by wait()
            self._error = e
        finally:
            self._ready.set()
        if self.started:
            self._release.wait()

    def wait(self) -> None:
        """Ray is up (started now if :meth:`start` was never called)."""
        if self._thread is None:
            self.started = _init_ray()
            return
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def shutdown(self) -> None:
        """Stop the Ray this starter started (a mistake was found after it started)."""
        if self._thread is not None:
            self._ready.wait()
        if self.started:
            import ray

            ray.shutdown()
            self.started = False
        self._release.set()


class StagedStore:
    """A new SQLite MLflow store, created while Ray starts and put in place once the sweep is
    sure to launch.

    MLflow creates a new SQLite store by running its schema migrations: ~2 s on two cores,
    which used to follow Ray's start. Here the store is created in a hidden file beside the
    one named (``.mlruns.db.lorasweep-<pid>``), in the time the driver otherwise spends waiting
    for Ray, and hard-linked into place by :meth:`place` after the last check (a store that
    appeared meanwhile wins). A sweep refused after Ray's start leaves nothing behind
    (:meth:`discard`). The file is the one MLflow would have made: a SQLite database does not
    record its own path, and the default experiment's artifact location comes from the working
    directory, as it would. Other stores (an existing file, a server) are left to MLflow.
    """

    def __init__(self, uri: str) -> None:
        self.path: Path | None = None
        self.staged: Path | None = None
        if not uri.startswith("sqlite:///"):
            return
        path = Path(uri.removeprefix("sqlite:///")).expanduser()
        if path.exists() or not path.parent.is_dir():
            return
        try:  # MLflow's own constructor for a SQLite URI (what MlflowClient would call)
            from mlflow.tracking._tracking_service.utils import _get_sqlalchemy_store
        except ImportError:  # a later MLflow moved it: MlflowClient creates the store instead
            return
        import logging

        self.path, self.staged = path, path.with_name(f".{path.name}.lorasweep-{os.getpid()}")
        # "Creating initial MLflow database tables..." would print before a refusal of the sweep.
        log = logging.getLogger("mlflow.store.db.utils")
        level = log.level
        log.setLevel(logging.WARNING)
        try:
            _get_sqlalchemy_store(f"sqlite:///{self.staged}", None).engine.dispose()
        except BaseException:
            self.discard()
            raise
        finally:
            log.setLevel(level)

    def place(self) -> None:
        if self.staged is None or self.path is None:
            return
        try:
            os.link(self.staged, self.path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not self.path.exists():
                os.replace(self.staged, self.path)
        finally:
            self.discard()

    def discard(self) -> None:
        if self.staged is not None:
            for leftover in (self.staged, self.staged.with_name(self.staged.name + "-journal")):
                leftover.unlink(missing_ok=True)
            self.staged = None


TUNE_ACTOR_ENV_VARS = {"PL_DISABLE_FORK": "1"}
"""What Ray Tune puts in its trial actors' runtime env (``ray.tune.execution.class_cache``:
``DEFAULT_ENV_VARS``), plus those of :data:`TUNE_PROPAGATED_ENV` set in the driver's
environment. tests/test_cold_start.py checks both against the installed Ray."""
TUNE_PROPAGATED_ENV = frozenset({
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN", "NCCL_RAS_ADDR",
    "RAY_CHDIR_TO_TRIAL_DIR", "RAY_TRAIN_CHECKPOINT_UPLOAD_WARN_INTERVAL_S", "RAY_TRAIN_COLLECTIVE_TIMEOUT_S",
    "RAY_TRAIN_COLLECTIVE_WARN_INTERVAL_S", "RAY_TRAIN_ENABLE_CONTROLLER_STRUCTURED_LOGGING",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "RAY_TRAIN_ENABLE_PRINT_PATCH",
    "RAY_TRAIN_ENABLE_STATE_ACTOR_RECONCILIATION", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS",
    "RAY_TRAIN_ENABLE_WORKER_STRUCTURED_LOGGING", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S",
    "RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S", "RAY_TRAIN_STATE_ACTOR_RECONCILIATION_INTERVAL_S",
    "RAY_TRAIN_V2_ENABLED", "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "RAY_TRAIN_WORKER_HEALTH_CHECK_TIMEOUT_S",
    "RAY_WARN_BLOCKING_GET_INSIDE_ASYNC", "TORCHFT_LIGHTHOUSE", "TRAIN_COPY_DIRECTORY_CHECKPOINTS_INSTEAD_OF_MOVING",
})


def warm_runtime_env(cfg: SweepConfig, *, bitsandbytes: bool, max_trials: int) -> dict[str, Any] | None:
    """The job runtime env that makes a new local Ray start its worker processes warm, or None.

    A local Ray prestarts one worker process per CPU for its first driver, but Tune's trial
    actors do not use them: a worker serves only its own runtime env, and Tune gives its actors
    one (:data:`TUNE_ACTOR_ENV_VARS`). With the job's runtime env equal to what the actors'
    merges into, they do; and ``worker_process_setup_hook`` (:func:`trainables.trial.warm_worker`)
    has each prestarted process import Ray Tune, torch, transformers and peft while the driver
    is still checking, preparing and writing the MLflow parent run, instead of after Tune hands
    it a trial. On two cores the first trial's setup fell from 3.1-3.7 s to 0.4 s
    (``bench/cold_start.py``).

    Only where every prestarted process will host a trial: a Ray this sweep starts (not
    ``$RAY_ADDRESS``), one-process CPU trials of at most one CPU each, at least as many trials
    as CPUs and no concurrency cap below that. ``LORASWEEP_WARM_WORKERS=0`` turns it off.
    """
    from trainables.trial import WARM_ENV

    res, cpus = cfg.resources, os.cpu_count() or 1
    if (os.environ.get("RAY_ADDRESS") or os.environ.get("LORASWEEP_WARM_WORKERS") == "0"
            or res.uses_train_workers or res.gpus_per_trial or res.cpus_per_trial > 1 or max_trials < cpus
            or (cfg.search.max_concurrent and cfg.search.max_concurrent < cpus)):
        return None
    propagated = {k: os.environ[k] for k in sorted(TUNE_PROPAGATED_ENV) if k in os.environ}
    env_vars = {**TUNE_ACTOR_ENV_VARS, **propagated,
                WARM_ENV: "bitsandbytes" if bitsandbytes else "skip-bitsandbytes"}
    return {"env_vars": env_vars, "worker_process_setup_hook": "trainables.trial.warm_worker"}


_USER_PRESTART = os.environ.get("RAY_prestart_worker_first_driver")


def _init_ray(runtime_env: dict[str, Any] | None = None) -> bool:
    """Connect to ``$RAY_ADDRESS`` or start a local Ray (``runtime_env``: its job's, see
    :func:`warm_runtime_env`); True when this call did either (False when Ray was already
    initialised in this process)."""
    import logging

    import ray

    # Trials checkpoint at every report by design (adapters are small); Tune's warning about
    # frequent experiment snapshots is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # A new local Ray prestarts one idle worker per CPU for the first driver. Tune's trial
    # actors use them only with the warm runtime env (see warm_runtime_env); otherwise, on a
    # small machine, they only take CPU from the sweep's start (~1 s of CPU on 2 cores). Read
    # by the raylet a sweep starts; a running cluster keeps its setting, as does the user's.
    os.environ["RAY_prestart_worker_first_driver"] = _USER_PRESTART or ("1" if runtime_env else "0")

    if ray.is_initialized():
        return False
    # A new local cluster has token authentication on by default, as our cluster configs want;
    # Ray's warning saying so would be a second line beside a one-line bad-input error.
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
        lambda record: not record.getMessage().startswith("Token authentication is enabled"))
    # Started from RayStarter's thread, Ray cannot install its SIGTERM handler (Python allows
    # that in the main thread only) and warns; RayStarter installs the same one.
    logging.getLogger("ray._private.worker").addFilter(
        lambda record: not record.getMessage().startswith("SIGTERM handler is not set"))
    ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
             logging_level=logging.WARNING, log_to_driver=True, runtime_env=runtime_env)
    return True


def _parent_run(plan: Plan, client: Any, experiment_id: str, *, resume: bool) -> str:
    from trainables.mlflow_record import (KIND_TAG, SWEEP_TAG, git_state, log_batch, now_ms,
                                          package_versions)

    if resume:
        from sweeps.stopping import INTERRUPTED_TAG, RESUME_TAG
        from trainables.mlflow_names import filter_value

        runs = client.search_runs([experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = {filter_value(plan.name)} "
                                                                 f"and tags.`{KIND_TAG}` = 'sweep'", max_results=1)
        if runs:
            client.update_run(runs[0].info.run_id, status="RUNNING")
            for tag in (INTERRUPTED_TAG, RESUME_TAG):
                if tag in runs[0].data.tags:
                    client.delete_tag(runs[0].info.run_id, tag)
            return runs[0].info.run_id
    cfg = plan.cfg
    run = client.create_run(experiment_id, start_time=now_ms(), run_name=plan.name, tags={
        KIND_TAG: "sweep", SWEEP_TAG: plan.name, "lorasweep.study": cfg.study,
        "lorasweep.preset": cfg.preset, **({"lorasweep.part": cfg.part} if cfg.part else {}),
        **{f"lorasweep.{section}": ",".join(k for p in plan.space.swept if p.section == section for k in p.keys)
           for section in ("scientific", "nuisance")},
        "lorasweep.groups": ",".join(plan.groups or ()),
        "mlflow.note.content": cfg.description or plan.space.description,
        **{f"versions.{k}": v for k, v in package_versions().items()}, **git_state()})
    params = {"study": cfg.study, "preset": cfg.preset, "part": cfg.part, "task": cfg.trial.task,
              "model": plan.base["model"]["name_or_path"], "data": plan.base["data"]["source"],
              "n_trials": plan.n_trials, "seed": cfg.seed, "space.source": plan.space.source,
              **{f"search.{k}": v for k, v in to_dict(cfg.search).items()},
              **{f"scheduler.{k}": v for k, v in to_dict(cfg.scheduler).items()},
              **{f"resources.{k}": v for k, v in to_dict(cfg.resources).items()},
              **{f"space.{p.short.replace('+', '/')}": (p.values[0] if p.kind == "fixed" else f"{p.kind}{list(p.values)}")
                 for p in plan.space.params},
              **{f"data.{k}": v for k, v in plan.stats.items()}}
    log_batch(client, run.info.run_id, params=params)
    client.log_dict(run.info.run_id, to_dict(cfg), "sweep_config.json")
    client.log_dict(run.info.run_id, plan.space.as_data(), "search_space.yaml")
    client.log_dict(run.info.run_id, plan.base, "base_trial_config.json")
    return run.info.run_id


def run_sweep(cfg: SweepConfig, *, resume: bool = False, warm_workers: bool = True) -> Outcome:
    """Validate, prepare, run and summarise one sweep (see the module docstring).

    ``warm_workers``: let a local Ray this sweep starts begin its worker processes warm
    (:func:`warm_runtime_env`). A multi-part study passes False: its later parts run in the
    same Ray, whose runtime env (bitsandbytes skipped or not) the first part would choose.

    Ctrl-C or SIGTERM while Tune runs ends the sweep after Tune's last experiment snapshot:
    the summary shows the trials that did not end as ``unfinished``, the parent run is
    ``KILLED`` with the command that resumes it, and the exit code is 130 (143 for SIGTERM).
    Any other way out (an error, a second signal) also ends the parent run and the open child
    runs, and the MLflow records that could not be written stay in the sweep's journal for
    ``--resume`` (:func:`sweeps.stopping.abort`)."""
    from sweeps.stopping import StopSignals

    if resume:
        cfg = _stored_config(cfg)
    else:
        check_name_is_new(cfg)
    with StopSignals() as signals:
        plan = _launch(cfg, warm_workers=warm_workers)
        signals.install()  # again: a Ray joined from this thread installs its own SIGTERM handler
        return _record_and_run(plan, signals, resume=resume)


def _launch(cfg: SweepConfig, *, warm_workers: bool) -> Plan:
    """Plan the sweep while Ray starts, then put a new SQLite store in place.

    Ray starts once the settings are checked, while the model checks and the data
    preparation run. A mistake found after that stops the Ray this sweep started before it is
    reported: no trial was launched and nothing was written to MLflow or Tune storage."""
    ray_starter = RayStarter()
    staged = None
    try:
        plan = plan_sweep(cfg, config_checked=lambda env: ray_starter.start(env if warm_workers else None))
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
    _check_tracking(client, plan.tracking_uri)
    exp = client.get_experiment_by_name(plan.experiment)
    experiment_id = exp.experiment_id if exp else client.create_experiment(plan.experiment)
    parent = _parent_run(plan, client, experiment_id, resume=resume)
    _print_header(plan, parent, experiment_id)
    recorder, keep = _callbacks(plan, task, experiment_id, parent)
    with _http_settings(plan.tracking_uri):
        try:
            if resume:
                replayed = recorder.replay_journal()
                if replayed:
                    print(f"  MLflow journal: {replayed} record(s) an earlier driver of this sweep could "
                          "not write; written first\n", flush=True)
            tuner = _tuner(plan, task, recorder, keep, resume=resume)
            with signals.fit():
                results = tuner.fit()
            outcome = _finish(plan, task, results, recorder, keep, parent, signals, resume=resume)
        except BaseException as e:
            abort(plan, recorder, parent, e, signals)
            raise
    return outcome


def _callbacks(plan: Plan, task: Any, experiment_id: str, parent: str) -> tuple[Any, Any]:
    """The sweep's Tune callbacks: the MLflow recorder and the checkpoint retention (which
    keeps a checkpoint while an MLflow record still has to read its adapter)."""
    from trainables.checkpoints import CheckpointRetention
    from trainables.mlflow_record import MlflowRecorder

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


def _tuner(plan: Plan, task: Any, recorder: Any, keep: Any, *, resume: bool) -> Any:
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
        "epoch", task.metric.name, *(m.name for m in task.report_metrics), "train_loss",
        "trainable_pct", "samples_per_s", *(m.name for m in task.final_metrics)]))
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
    _store_config(plan)
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
            search_alg=_search_alg(plan, metric.name, metric.mode),
            scheduler=_scheduler(plan),
            num_samples=num_samples,
            max_concurrent_trials=cfg.search.max_concurrent,
            # One-process trials reuse their actor: imports and CUDA context survive
            # from one trial to the next (~10 s saved per trial on CPU).
            reuse_actors=not cfg.resources.uses_train_workers,
        ),
        run_config=tune.RunConfig(
            name=plan.name, storage_path=plan.storage,
            callbacks=[recorder, keep],
            # Every checkpoint stays until the retention callback finds that no snapshot in
            # storage needs it any more (trainables.checkpoints).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            # A retry restores the trial from its last checkpoint (adapter + optimizer).
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
            verbose=1,
        ),
    )


def _finish(plan: Plan, task: Any, results: Any, recorder: Any, keep: Any, parent: str, signals: Any, *,
            resume: bool) -> Outcome:
    """After Tune's loop: close what it left open, summarise, delete what no snapshot needs."""
    from trainables.mlflow_record import UNFINISHED

    interrupted = None
    if any(_status_of(r, recorder) == UNFINISHED for r in results):
        # Tune's loop ends before every trial has ended only when told to stop (its SIGINT
        # handler, or SIGTERM forwarded to it); its last snapshot is written.
        interrupted = signals.received or "SIGINT"
        recorder.close_unfinished(f"the sweep was interrupted ({interrupted})")
    if resume:
        recorder.close_stale_runs({_trial_id(r): _status_of(r, recorder) for r in results})
        _drop_unrecorded_checkpoints(plan, {_trial_id(r) for r in results})
    outcome = _summarise(plan, task, results, recorder, parent, interrupted=interrupted)
    keep.finish(f"{plan.storage.rstrip('/')}/{plan.name}")
    cfg = plan.cfg
    print(f"  checkpoints: keep_best_k={cfg.keep_best_k}; {len(keep.deleted)} other trial(s)' "
          f"adapter checkpoints deleted from Tune storage ({keep.deleted_bytes / 2**20:.2f} MiB freed)"
          + (f"; {keep.waiting} deletion(s) wait for the MLflow records that read them" if keep.waiting else ""))
    for failure in keep.failed:
        print(f"  could not delete {failure}")
    return outcome


def _drop_unrecorded_checkpoints(plan: Plan, trial_ids: set[str | None]) -> None:
    """Checkpoints of trials an interrupted driver started after Tune's last experiment
    snapshot: no Tune trial owns them (they can never be resumed), so keep-best-k never sees
    them; deleted after a resume (local storage)."""
    import shutil

    if "://" in plan.storage:
        return
    for ckpt in (Path(plan.storage) / plan.name).glob("*/checkpoint_*"):
        if ckpt.is_dir() and not any(f"_{tid}_" in ckpt.parent.name for tid in trial_ids if tid):
            shutil.rmtree(ckpt, ignore_errors=True)


@contextlib.contextmanager
def _http_settings(uri: str) -> Iterator[None]:
    """MLflow's HTTP retry settings for the sweep's writes to a tracking server
    (:data:`trainables.mlflow_writer.HTTP_SETTINGS`); the environment's own win."""
    from trainables.mlflow_writer import HTTP_SETTINGS

    quick = {k: v for k, v in HTTP_SETTINGS.items() if k not in os.environ} \
        if uri.startswith(("http://", "https://")) else {}
    os.environ.update(quick)
    try:
        yield
    finally:
        for k in quick:
            os.environ.pop(k, None)


def flush_timeout_s() -> float:
    """How long the end of a sweep waits for MLflow writes held back by an unreachable
    tracking store (``LORASWEEP_MLFLOW_FLUSH_S``, default 300 s); what is still unwritten
    then is listed in the summary."""
    value = os.environ.get("LORASWEEP_MLFLOW_FLUSH_S", "300")
    try:
        return max(0.0, float(value))
    except ValueError:
        raise UserError("LORASWEEP_MLFLOW_FLUSH_S", f"must be a number of seconds, got {value!r}") from None


# --------------------------------------------------------------------------- resume


def _store_config(plan: Plan) -> None:
    """The sweep as launched, beside Tune's experiment state, so ``--resume`` can rebuild it
    (on a shared path or in the cloud bucket alike)."""
    fs, root = storage_fs(plan.storage)
    fs.create_dir(f"{root}/{plan.name}", recursive=True)
    with fs.open_output_stream(f"{root}/{plan.name}/{SWEEP_FILE}") as out:
        out.write(json.dumps(to_dict(replace(plan.cfg, name=plan.name)), indent=2).encode())


def check_name_is_new(cfg: SweepConfig) -> None:
    """Refuse a new sweep under the name of one already in Tune storage: the two would share
    the experiment directory (its state, checkpoints and journal), and a later ``--resume``
    of either would restore the other's trials."""
    if not cfg.name:
        return
    import pyarrow.fs

    storage = storage_path(cfg)
    fs, root = storage_fs(storage)
    try:
        found = fs.get_file_info(f"{root.rstrip('/')}/{cfg.name}").type != pyarrow.fs.FileType.NotFound
    except OSError:  # an unreachable store: check_storage names the problem next
        return
    if found:
        raise UserError("name", f"a sweep named {cfg.name!r} already exists under {storage}; finish it "
                                "with --resume, or give this one another --name")


def _stored_config(cfg: SweepConfig) -> SweepConfig:
    """On ``--resume``, the sweep exactly as it was launched (only where it logs may change)."""
    import pyarrow.fs

    storage = storage_path(cfg)
    fs, root = storage_fs(storage)

    def read(path: str) -> dict[str, Any] | None:
        try:
            with fs.open_input_stream(path) as fh:
                return json.loads(fh.read().decode())
        except OSError:  # missing too
            return None

    if cfg.name:
        data = read(f"{root}/{cfg.name}/{SWEEP_FILE}")
        if data is None:
            raise UserError("name", f"no sweep named {cfg.name!r} under {storage} to resume")
    else:
        try:
            dirs = fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
        except OSError:
            dirs = []
        found = []
        for info in dirs:
            if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith(f"{cfg.study}-"):
                data = read(f"{info.path}/{SWEEP_FILE}")
                if data is not None and data.get("part") == cfg.part:
                    found.append((fs.get_file_info(f"{info.path}/{SWEEP_FILE}").mtime, data))
        if not found:
            raise UserError("resume", f"no {cfg.study} sweep to resume under {storage}")
        data = max(found, key=lambda item: item[0])[1]
    stored = from_dict(SweepConfig, data)
    return replace(stored, tracking_uri=cfg.tracking_uri or stored.tracking_uri,
                   storage=cfg.storage or stored.storage)


#: ``--storage`` URI schemes: the cloud stores Tune writes through pyarrow's filesystems.
STORAGE_SCHEMES = ("s3", "gs")


def check_storage(storage: str, *, timeout_s: float = 20.0) -> None:
    """Refuse a ``--storage`` URI the sweep could not write to, before anything starts.

    A local or shared-filesystem path needs nothing here (Tune creates it). An ``s3://`` or
    ``gs://`` URI is opened with pyarrow, as Tune and Ray Train open it, and its prefix is
    looked up once: a missing bucket, missing credentials or an unreachable endpoint is one
    line within ``timeout_s`` seconds rather than a failure of every trial at its first
    checkpoint. pyarrow's own query options (``?endpoint_override=...&region=...``) pass
    through, as they do to Tune.
    """
    import threading
    from urllib.parse import urlsplit

    if "://" not in storage:
        return
    from trainables.credentials import refuse_secrets

    scheme = urlsplit(storage).scheme
    refuse_secrets("storage", storage, f"give them through the environment instead ({_credentials_hint(scheme)})")
    if scheme not in STORAGE_SCHEMES:
        raise UserError("storage", f"{scheme}:// is not a storage Tune can write to here; give a "
                                   "path (a shared filesystem on a cluster) or an s3:// or gs:// URI")
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            import pyarrow.fs

            fs, path = pyarrow.fs.FileSystem.from_uri(storage)
            fs.get_file_info(path)  # credentials and reachability; a missing prefix is fine
            bucket = path.split("/", 1)[0]
            if fs.get_file_info(bucket).type == pyarrow.fs.FileType.NotFound:
                raise FileNotFoundError(f"bucket {bucket!r} does not exist")
            outcome.append(None)
        except Exception as e:  # noqa: BLE001 - pyarrow raises OSError, ArrowInvalid, ... with the reason
            outcome.append(e)

    # A daemon thread: pyarrow's GCS client retries for minutes and cannot be cancelled, and
    # must not keep the process alive after the error.
    thread = threading.Thread(target=probe, name="lorasweep-storage-check", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not outcome:
        raise UserError("storage", f"cannot reach {storage} (no answer in {timeout_s:g} s); check the "
                                   "network and the credentials of this machine and the nodes")
    if outcome[0] is not None:
        e = outcome[0]
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise UserError("storage", f"cannot use {storage} ({reason}); {_credentials_hint(scheme)}")


def _credentials_hint(scheme: str) -> str:
    if scheme == "s3":
        return ("the nodes need write access: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, "
                "or an instance role")
    return "the nodes need write access: GOOGLE_APPLICATION_CREDENTIALS or Workload Identity"


def check_tracking_uri(uri: str) -> None:
    """Refuse a tracking store the sweep cannot use, before anything starts, creating nothing:
    a SQLite file is created only when the sweep launches (here its directory is checked); a
    tracking server must answer within seconds, and its credentials come from the environment."""
    from urllib.parse import urlsplit

    from trainables.credentials import refuse_secrets

    parts = urlsplit(uri)
    web = parts.scheme in ("http", "https")
    refuse_secrets("tracking_uri", uri, "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or "
                                        "MLFLOW_TRACKING_TOKEN) in the environment instead" if web else
                   "give the database client its password instead (PostgreSQL: PGPASSWORD or ~/.pgpass; "
                   "MySQL: an option file)", user_is_secret=web)
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///")).expanduser()
        if path.exists():
            if not path.is_file():
                raise UserError("tracking_uri", f"cannot use the MLflow tracking store {uri} "
                                                f"({path} is not a file)")
            return
        parent = path.parent
        while not parent.exists():  # MLflow creates missing directories
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise UserError("tracking_uri", f"cannot create the MLflow tracking store {uri} "
                                            f"({parent} is not a writable directory)")
    elif uri.startswith(("http://", "https://")):
        from mlflow import MlflowClient

        _check_tracking(MlflowClient(tracking_uri=uri), uri)


def _check_tracking(client: Any, uri: str) -> None:
    # One retry, 15 s timeout: MLflow's defaults (7 retries, exponential backoff) take minutes
    # to report a server that is not there. A setting in the environment wins.
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
             "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}
    quick = {k: v for k, v in quick.items() if k not in os.environ}
    os.environ.update(quick)
    try:
        client.search_experiments(max_results=1)
    except Exception as e:
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise UserError("tracking_uri", f"cannot use the MLflow tracking store {uri} ({reason})") from None
    finally:
        for k in quick:
            os.environ.pop(k, None)


# --------------------------------------------------------------------------- summary


def _print_header(plan: Plan, parent: str, experiment_id: str) -> None:
    cfg = plan.cfg
    swept = ", ".join(f"{p.short}: {p.kind} {list(p.values)}" for p in plan.space.swept) or "nothing"
    print(f"\nlorasweep {cfg.study} [{cfg.preset}] -> {plan.name}")
    print(f"  trials: {plan.n_trials} ({cfg.search.algorithm}; sweeping {swept})")
    print(f"  scheduler: {_scheduler_text(plan)}; max {plan.max_epoch:g} epochs, "
          f"{plan.stats.get('train_examples', '?')} training examples")
    print(f"  MLflow: {plan.tracking_uri} experiment '{plan.experiment}' (id {experiment_id}), "
          f"parent run {parent}")
    if cfg.max_trainable_params:
        print(f"  budget: {cfg.max_trainable_params:,} trainable parameters; "
              f"{len(plan.rejected)} configuration(s) over it, not launched: "
              + (", ".join(f"{_point_text(p)} ({n:,})" for p, n in plan.rejected) or "none"))
    print(f"  Tune storage: {plan.storage}/{plan.name}\n", flush=True)


def _scheduler_text(plan: Plan) -> str:
    """How trials are stopped and searched, in one line of the header."""
    cfg = plan.cfg
    names = {p.key: p.short for p in plan.space.swept}
    within = " and ".join(names[k] for k in plan.groups or ())
    optuna = f"; one Optuna study per {within}" if plan.group_points is not None else ""
    if cfg.scheduler.name == "fifo":
        return f"fifo (every trial runs to the end){optuna}"
    if leaves_nothing_to_prune(plan.space, plan.groups):
        return (f"asha has nothing to prune: every swept setting ({within}) is scientific, so each "
                "trial is its own group and runs to the end")
    rule = ", promotion: pause" if cfg.scheduler.promotion == "pause" else ""
    where = f"within each {within}" if within else "sweep-wide"
    return f"asha {where} (grace {cfg.scheduler.grace_period}, eta {cfg.scheduler.reduction_factor:g}{rule}){optuna}"


def _point_text(point: dict[str, Any]) -> str:
    return " ".join(f"{k.replace('adapter.', '').replace('train.', '')}={v}" for k, v in point.items())


def _status_of(result: Any, recorder: Any) -> str:
    """A trial's outcome: failed, completed (also when its own early stopping ended it),
    stopped early by ASHA, or unfinished. The recorder has the outcome of every trial that
    ended, in this driver or an earlier one of the sweep (Tune's experiment state keeps it);
    a trial without one was still running, or waiting, when the sweep was interrupted (Tune
    marks those it stops then as terminated too)."""
    from trainables.mlflow_record import COMPLETED, FAILED, STOPPED, UNFINISHED

    metrics = result.metrics or {}
    if result.error is not None:
        return FAILED
    if metrics.get("trial_id") in recorder.outcomes:
        return recorder.outcomes[metrics["trial_id"]]
    if not recorder.attempts:  # no trial event reached this driver (Ray Client runs Tune remotely)
        return COMPLETED if metrics.get("is_final") else STOPPED
    return UNFINISHED


def _trial_id(result: Any) -> str | None:
    """A result's trial id (Tune fills it in also for a trial that never reported)."""
    return (result.metrics or {}).get("trial_id")


def _error_line(result: Any, recorder: Any, tid: str | None) -> str:
    """The exception line of a failed trial ("FloatingPointError: train loss is nan ...")."""
    if result.error is None:
        return ""
    if tid in recorder.errors:
        return recorder.errors[tid][:300]
    lines = [ln.strip() for ln in str(result.error).splitlines() if ln.strip()]
    return lines[-1][:300] if lines else type(result.error).__name__


def _summarise(plan: Plan, task: Any, results: Any, recorder: Any, parent: str, *,
               interrupted: str | None = None) -> Outcome:
    """The end of a sweep: its trials' MLflow writes, the table, the results CSV and the
    parent run's summary (``KILLED`` with how to resume it when ``interrupted``)."""
    from trainables.mlflow_record import FAILED, STOPPED, UNFINISHED

    # The trials' MLflow writes first (their run ids go in the table); a store that is down
    # gets until the deadline to come back, then what is left is reported, not dropped.
    deadline = time.monotonic() + flush_timeout_s()
    pending = recorder.writer.pending()
    if pending and recorder.writer.down:
        print(f"\n  waiting up to {flush_timeout_s():.0f} s for {pending} MLflow write(s) "
              f"({plan.tracking_uri} unreachable)", flush=True)
    recorder.writer.flush(max(0.0, deadline - time.monotonic()))
    rows = _summary_rows(plan, task, results, recorder)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("completed", STOPPED, FAILED, UNFINISHED)}
    # Beside the sweep's Tune results (a cluster job's working directory is temporary); a
    # cloud storage URI gets a local copy, and MLflow always has one (the parent's artifact).
    out_dir = Path("results") / plan.name if "://" in plan.storage else Path(plan.storage) / plan.name
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "results.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["status"])
        writer.writeheader()
        writer.writerows(rows)
    _print_summary(plan, task, rows, counts, out_dir, recorder, parent, interrupted)
    print(f"  results CSV: {csv_path.resolve()}")
    print(f"  MLflow: parent run {parent} in {plan.tracking_uri}")
    if plan.tracking_uri.startswith("sqlite:"):
        print(f"  browse: mlflow ui --backend-store-uri {plan.tracking_uri}")
    _record_parent(plan, task, rows, counts, csv_path, recorder, parent, interrupted)
    lost = recorder.flush(max(5.0, deadline - time.monotonic()))
    recorder.save_journal()
    _print_lost(plan, recorder, lost)
    if interrupted:
        from sweeps.stopping import exit_code

        code = exit_code(interrupted)
    else:
        code = 1 if counts[FAILED] or lost else 0
    return Outcome(rows=rows, counts=counts, csv_path=csv_path, parent_run_id=parent, exit_code=code,
                   lost=lost, interrupted=interrupted)


def _summary_rows(plan: Plan, task: Any, results: Any, recorder: Any) -> list[dict[str, Any]]:
    """One row per trial: swept values, status, metrics, costs and where it is recorded."""
    swept = plan.space.swept
    compare_methods = any("adapter.method" in p.keys for p in swept)
    rows: list[dict[str, Any]] = []
    for result in results:
        m = result.metrics or {}
        tid = _trial_id(result)
        cfg_hp = result.config or {}
        row: dict[str, Any] = {p.short: cfg_hp.get(p.key) for p in swept}
        row.update({
            "trainable_pct": m.get("trainable_pct"), "trainable_params": m.get("trainable_params"),
            "status": _status_of(result, recorder), "epoch": m.get("epoch"),
            task.metric.name: m.get(task.metric.name),
        })
        for spec in (*_extra_report_metrics(task), *task.final_metrics):
            row[spec.name] = m.get(spec.name)
        row["note"] = m.get("final_note", "")
        row.update({"samples_per_s": m.get("samples_per_s"), "peak_mem_mb": m.get("peak_mem_mb"),
                    "wall_s": m.get("wall_s"), "trial_id": m.get("trial_id"),
                    "mlflow_run_id": recorder.run_id(m.get("trial_id") or ""),
                    "attempts": recorder.attempts.get(tid, 1),
                    "error": _error_line(result, recorder, tid)})
        if compare_methods and "method" not in row:  # swept coupled, e.g. method+r
            from search_spaces import apply_hyperparameters

            row["method"] = apply_hyperparameters(plan.base, cfg_hp)["adapter"]["method"]
        rows.append(row)
    rows.sort(key=lambda r: tuple(_sort_key(r.get(p.short)) for p in swept))
    return rows


def _print_summary(plan: Plan, task: Any, rows: list[dict[str, Any]], counts: dict[str, int], out_dir: Path,
                   recorder: Any, parent: str, interrupted: str | None) -> None:
    from trainables.mlflow_record import FAILED, INTERRUPTED, STOPPED, UNFINISHED

    swept = plan.space.swept
    generated = plan.cfg.trial.eval.generate
    if plan.groups:
        print(render_group_table(rows, swept, plan.groups, task, final=generated))
        print(f"  one row per {' and '.join(p.short for p in swept if p.key in plan.groups and p.key != 'seed')}: "
              f"its best completed trial by {task.metric.heading}; every trial is in the results CSV")
    else:
        print(render_table(rows, swept, task, final=generated))
    from analysis.references import reference_for

    reference, note = reference_for(plan.cfg.trial)
    if reference and generated:
        ref = "  ".join(f"{s.heading} {reference[s.name]:g}" for s in task.final_metrics
                        if s.name in reference)
        print(f"  reference ({note}): {ref}")
    if task.final_metrics and not generated:
        print("  generation metrics off (eval.generate=false)")
    if any("adapter.method" in p.keys for p in swept) and rows:
        _compare_methods(plan, task, rows, out_dir, recorder, parent)
    _print_seed_medians(rows, swept, task, reference)
    for note in sorted({r["note"] for r in rows if r.get("note")}):
        print(f"  note: {note}")
    rejected = f", {len(plan.rejected)} rejected over the parameter budget" if plan.cfg.max_trainable_params else ""
    unfinished = f", {counts[UNFINISHED]} unfinished" if counts[UNFINISHED] else ""
    print(f"\n  {counts['completed']} completed, {counts[STOPPED]} stopped early by ASHA, "
          f"{counts[FAILED]} failed{unfinished}{rejected}")
    for r in rows:
        if r["status"] == FAILED:
            tries = f" after {r['attempts']} attempts" if r["attempts"] > 1 else ""
            label = " ".join(f"{p.short}={_fmt(r.get(p.short), '{:.3g}')}" for p in swept) or r["trial_id"]
            print(f"  failed{tries}: {label} ({r['trial_id']}): {r['error']}")
    if interrupted:
        from sweeps.stopping import resume_command

        print(f"  interrupted ({interrupted}): finish the sweep with\n    {resume_command(plan.cfg, plan.name)}")
    if recorder.interrupted:
        print(f"  {len(recorder.interrupted)} MLflow run(s) of trials interrupted before Tune "
              f"recorded them closed as {INTERRUPTED} (their configurations ran again)")


def _record_parent(plan: Plan, task: Any, rows: list[dict[str, Any]], counts: dict[str, int], csv_path: Path,
                   recorder: Any, parent: str, interrupted: str | None) -> None:
    """The parent run's summary: trial counts, the best metric, the results CSV, its status."""
    from mlflow.entities import Metric

    from sweeps.stopping import interruption_tags
    from trainables.mlflow_record import FAILED, log_batch, now_ms

    key = task.metric.name
    best = [r for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    metrics = [Metric(f"trials_{k}", float(v), now_ms(), 0) for k, v in counts.items()]
    if plan.cfg.max_trainable_params:
        metrics.append(Metric("trials_rejected_over_budget", float(len(plan.rejected)), now_ms(), 0))
    if best:
        pick = min if task.metric.mode == "min" else max
        metrics.append(Metric(f"best_{task.metric.name}", float(pick(r[key] for r in best)), now_ms(), 0))
    status = "FAILED" if rows and counts[FAILED] == len(rows) else "FINISHED"
    tags = interruption_tags(plan, interrupted) if interrupted else {}

    def record(client: Any) -> None:
        log_batch(client, parent, metrics=metrics, tags=tags)
        client.log_artifact(parent, str(csv_path))
        _log_best_predictions(client, parent, rows, task)
        client.set_terminated(parent, status="KILLED" if interrupted else status, end_time=now_ms())

    recorder.writer.submit("sweep", "the sweep's summary (parent run)", record)


def _print_lost(plan: Plan, recorder: Any, lost: dict[str, list[str]]) -> None:
    """What could not be written to MLflow (kept in the sweep's journal), or the outages
    survived."""
    import sys

    from trainables.mlflow_writer import JOURNAL_FILE

    if lost:
        print(f"  MLflow records NOT written ({plan.tracking_uri} unreachable until the deadline; "
              "the results CSV has every trial):")
        for label, what in lost.items():
            run = recorder.run_id(label)
            print(f"    {label}{f' (run {run})' if run else ''}: {len(what)} record(s): "
                  + "; ".join(what[:3]) + (" ..." if len(what) > 3 else ""))
        if recorder.writer.pending_records():
            from sweeps.stopping import resume_command

            print(f"  the trials' records are kept in {plan.storage.rstrip('/')}/{plan.name}/{JOURNAL_FILE}; "
                  f"once MLflow is back, write them with\n    {resume_command(plan.cfg, plan.name)}")
    elif recorder.writer.outages:
        print(f"  MLflow was unreachable {recorder.writer.outages} time(s), "
              f"{recorder.writer.outage_s:.0f} s in all; every record was written when it returned")
    for error in recorder.journal_errors[-3:]:
        print(f"  warning: could not save the MLflow journal ({error})", file=sys.stderr)


def _compare_methods(plan: Plan, task: Any, rows: list[dict[str, Any]], out_dir: Path, recorder: Any,
                     parent: str) -> None:
    """A sweep over ``adapter.method``: the quality / speed / memory table of its methods
    (printed, ``methods.csv``) and its plot (``methods.png``), both also on the parent run."""
    from analysis.methods import method_rows, plot, render

    spec = task.final_metrics[0] if task.final_metrics and plan.cfg.trial.eval.generate else task.metric
    table = method_rows(rows, spec.name)
    title = f"methods on {plan.cfg.trial.task} ({spec.heading}: median over completed trials; " \
            f"peak memory {'GPU' if plan.cfg.resources.gpus_per_trial else 'process RSS'})"
    print(render(table, heading=spec.heading, fmt=spec.fmt, title=title))
    path = out_dir / "methods.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    png = plot(table, out_dir / "methods.png", heading=spec.heading, title=f"{plan.name}: {plan.cfg.trial.task}")
    if png is not None:
        print(f"  methods plot: {png.resolve()}")
    files = [path] + ([png] if png is not None else [])

    def record(client: Any) -> None:
        for f in files:
            client.log_artifact(parent, str(f))

    recorder.writer.submit("sweep", "the methods table and plot (parent run)", record)


def _print_seed_medians(rows: list[dict[str, Any]], swept: Any, task: Any,
                        reference: dict[str, float]) -> None:
    """With seed replicates: the median of each final metric over the completed seeds of every
    configuration (what the LoRA paper reports), beside the published number."""
    import statistics

    if not any(p.short == "seed" for p in swept):
        return
    others = [p.short for p in swept if p.short != "seed"]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        if r["status"] == "completed":
            groups.setdefault(tuple(str(r.get(k)) for k in others), []).append(r)
    for key, group in groups.items():
        parts = []
        for spec in task.final_metrics:
            vals = [r[spec.name] for r in group if isinstance(r.get(spec.name), (int, float))
                    and math.isfinite(r[spec.name])]
            if vals:
                ref = f" (paper {reference[spec.name]:g})" if spec.name in reference else ""
                parts.append(f"{spec.heading} {spec.fmt.format(statistics.median(vals))}{ref}")
        label = " ".join(f"{k}={v}" for k, v in zip(others, key))
        if parts:
            seeds = f"{len(group)} seed{'s' if len(group) != 1 else ''}"
            print(f"  median over {seeds}{' for ' + label if label else ''}: {'  '.join(parts)}")


def _log_best_predictions(client: Any, parent: str, rows: list[dict[str, Any]], task: Any) -> None:
    """The best completed trial's ``predictions.csv`` (unlabelled-file predictions), also
    logged to the sweep's parent run as ``best_predictions.csv``."""
    import tempfile

    key = task.metric.name
    done = [r for r in rows if r["status"] == "completed" and r.get("mlflow_run_id")
            and isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    if not done:
        return
    best = (max if task.metric.mode == "max" else min)(done, key=lambda r: r[key])
    names = {a.path for a in client.list_artifacts(best["mlflow_run_id"], "outputs")}
    if "outputs/predictions.csv" not in names:
        return
    with tempfile.TemporaryDirectory() as d:
        local = Path(client.download_artifacts(best["mlflow_run_id"], "outputs/predictions.csv", d))
        target = Path(d) / "best_predictions.csv"
        local.rename(target)
        client.log_artifact(parent, str(target))
    print(f"  predictions of the best trial ({best['mlflow_run_id']}): best_predictions.csv in the parent run")


def _extra_report_metrics(task: Any) -> tuple[Any, ...]:
    """The task's per-report validation metrics other than the one optimised."""
    return tuple(s for s in task.report_metrics if s.name != task.metric.name)


def _sort_key(v: Any) -> tuple[int, Any]:
    return (0, v) if isinstance(v, (int, float)) else (1, str(v))


def _fmt(v: Any, fmt: str = "{:.4f}") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if not math.isfinite(v) else fmt.format(v)
    return str(v)


def _count(v: Any) -> str:
    """A parameter count as ``1,234,567``."""
    return f"{int(v):,}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def render_group_table(rows: list[dict[str, Any]], swept: Any, groups: tuple[str, ...], task: Any, *,
                       final: bool = True) -> str:
    """The end-of-sweep table of a grouped sweep: one row per group (its scientific values),
    with the settings its best completed trial chose, how many of its trials completed or
    stopped, and that trial's metrics (median and range over seeds with replicates)."""
    from tabulate import tabulate

    from analysis.groups import best_per_group

    keys = [p.short for p in swept if p.key in groups]
    chosen = [p.short for p in swept if p.key not in groups]
    finals = (*_extra_report_metrics(task), *(task.final_metrics if final else ()))
    specs = [(task.metric.name, task.metric.heading, "{:.4f}"), *((s.name, s.heading, s.fmt) for s in finals)]
    headers = ([k for k in keys if k != "seed"] + chosen + ["trials", "% trainable", "trainable"]
               + [heading for _, heading, _ in specs])
    body = []
    for group in best_per_group(rows, scientific=keys, metric=task.metric.name, mode=task.metric.mode):
        counts = ", ".join(f"{n} {s.replace('_', ' ')}" for s in ("completed", "stopped_early", "failed",
                                                                  "unfinished") if (n := group.count(s)))
        cells = [_fmt(v, "{:.3g}") for v in group.values.values()]
        cells += ["/".join(_fmt(v, "{:.3g}") for v in group.chosen_values(k)) or "-" for k in chosen]
        cells += [f"{len(group.trials)}: {counts}"]
        best = group.chosen[0] if group.chosen else {}
        cells += [_fmt(best.get("trainable_pct"), "{:.4f}"), _count(best.get("trainable_params"))]
        for name, _, fmt in specs:
            stat = group.stat(name)
            cells.append(stat.text(fmt) if stat else "-")
        body.append(cells)
    return "\n" + tabulate(body, headers=headers, tablefmt="simple", disable_numparse=True)


def render_table(rows: list[dict[str, Any]], swept: Any, task: Any, *, final: bool = True) -> str:
    """The end-of-sweep table: swept values, % trainable, status, the metric, final metrics."""
    from tabulate import tabulate

    finals = (*_extra_report_metrics(task), *(task.final_metrics if final else ()))
    headers = [p.short for p in swept] + ["% trainable", "trainable", "status", task.metric.heading] + \
        [s.heading for s in finals]
    body = []
    for r in rows:
        body.append([_fmt(r.get(p.short), "{:.3g}") for p in swept]
                    + [_fmt(r.get("trainable_pct"), "{:.4f}"), _count(r.get("trainable_params")), r["status"],
                       _fmt(r.get(task.metric.name))]
                    + [_fmt(r.get(s.name), s.fmt) for s in finals])
    return "\n" + tabulate(body, headers=headers, tablefmt="simple", disable_numparse=True)
