"""The sweep's checks against its model before launch (adapter targets, methods, quantisation,
a parameter budget, warm starts), and its resources against the Ray cluster."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from sweeps.config import SweepConfig

from trainables.config import TrialConfig
from trainables.errors import UserError
from trainables.schema import from_dict, to_dict
from sweeps.grouping import sampled_keys

#: Every grid point of the search space (``{}`` without a grid) and its trial's config.
Grid = list[tuple[dict[str, Any], TrialConfig]]


def check_trial_base(cfg: TrialConfig, field: str) -> None:
    """The base model a finished trial trained on can be loaded here, as an export of its
    adapter loads it: its local directory is still there, or its hub id is cached or the hub
    answers."""
    from trainables.hub import OFFLINE_HINT, check_model_source

    try:
        check_model_source(cfg.model.name_or_path, revision=cfg.model.revision)
    except UserError as e:
        # The sweeps' offline hint (--preset smoke, --model PATH) is no option of an export.
        reason = e.message.removesuffix(OFFLINE_HINT).rstrip(". ")
        raise UserError(field, f"the trial's base model (model.name_or_path in its run): {reason}; export "
                               "where that base is, e.g. on the machine that ran the sweep") from None


def check_repeats(cfg: SweepConfig, space: Any, *, prior: int = 0) -> None:
    """More than one sample of a space that samples nothing repeats every grid point with the
    same hyperparameters, hence the same seed (:func:`trainables.trial.derive_seed`): identical
    trials. Replicates are ``--seeds N`` (a seed grid dimension). So do more samples than the
    sampled settings have combinations when each of them is a choice: some combination is
    drawn twice, counting the ``prior`` samples an extension (``--extend``) adds to."""
    n = cfg.search.num_samples
    if n > 1 and cfg.search.algorithm != "optuna" and not sampled_keys(space):
        raise UserError("search.num_samples", f"{n} samples of a search space that samples nothing (only grid "
                                              f"and fixed settings) would run every configuration {n} times with "
                                              f"the same seed; use --seeds {n} for replicates (seeds 0..{n - 1}), "
                                              "or sample a setting (choice, uniform, ...) or use optuna")
    drawn, per = _drawn(cfg, space)
    if n + prior < 2 or not drawn or any(p.kind != "choice" for p in drawn):
        return
    combos = math.prod(len(p.values) for p in drawn)
    names = ", ".join(p.short for p in drawn)
    if prior and n + prior > combos:
        left = f"--extend {combos - prior} at most" if combos > prior else "no more samples"
        raise UserError("--extend", _repeat_reason(f"{n} more samples{per} after the sweep's {prior}", names,
                                                   combos, "again", f"again as the same trial; {left}"))
    if n > combos:
        raise UserError("search.num_samples", _repeat_reason(
            f"{n} samples{per}", names, combos, "twice", f"twice as the same trial; use --num-samples {combos} or "
            "less, a grid to run every combination once, or --seeds N for replicates"))


def _repeat_reason(samples: str, names: str, combos: int, repeat: str, remedy: str) -> str:
    """Why more samples than choice combinations repeat a trial, and what to do instead."""
    return (f"{samples} of {names}, all choices ({combos} combination{'s' * (combos > 1)}), draw some "
            f"combination {repeat}, and a trial's seed comes from its hyperparameters: it would run {remedy}")


def _drawn(cfg: SweepConfig, space: Any) -> tuple[list[Any], str]:
    """The settings each of ``num_samples`` samples draws, and what it is counted per: Tune's
    generator samples every non-grid setting once per sample of each grid point; Optuna
    with groups samples the settings not grouped by, per group, and without, every setting."""
    from sweeps.grouping import group_keys, grouped_search

    if cfg.search.algorithm == "optuna":
        groups = group_keys(cfg, space)
        if grouped_search(cfg, groups):
            return [p for p in space.swept if p.key not in groups], " per group"
        return list(space.swept), ""
    grid = " per grid point" if any(p.kind == "grid" for p in space.swept) else ""
    return [p for p in space.swept if p.kind != "grid"], grid


def check_model(cfg: SweepConfig, task: Any, trial0: TrialConfig, base: dict[str, Any], space: Any,
                grid_trials: list[TrialConfig]) -> str:
    """Check every adapter target group, method, quantisation and batching mode the sweep may
    use against the model's module tree (built on the meta device from its config); return
    its model type.

    Building that tree needs torch and transformers imported (seconds). For a local
    model directory the outcome of checks that passed is memoised on everything they read
    (the directory's config files, the settings checked, the library versions, lorasweep's
    code), so an unchanged sweep launched again skips them; a failure is never memoised.
    """
    from trainables.cache import memoised_on_model
    from trainables.models import model_source
    from trainables.quantization import BITSANDBYTES_KEYS

    targets = sorted({trial0.adapter.targets} | set(space.values_of("adapter.targets")))
    pairs = method_pairs(base, space, grid_trials)
    trials = [trial0, *grid_trials]
    # Every value a sampled method, quantisation or optimizer can take, on one grid trial per
    # distinct combination of those settings in the grid: the quantisation checks read them.
    distinct = {(t.model.quantization, t.adapter.method, t.train.optimizer): t for t in grid_trials}
    sampled = sampled_trials([to_dict(t) for t in distinct.values()], space, set(BITSANDBYTES_KEYS))
    lengths = sorted({t.data.max_length for t in trials} | set(swept_lengths(cfg, space)))

    def run() -> str:
        from trainables.adapters import check_adapter_methods, check_adapter_targets
        from trainables.batching import batching_mode
        from trainables.quantization import check_quantization

        skeleton = task.skeleton(trial0)
        for trial in trials:
            batching_mode(task, trial, skeleton)
        check_cpu_precisions(cfg, trials, space)
        check_adapter_targets(skeleton, targets)
        check_adapter_methods(skeleton, pairs)
        check_quantization([*trials, *sampled], skeleton)
        check_max_length(skeleton, lengths)
        return skeleton.config.model_type

    return memoised_on_model("model-checks", model_source(trial0), run,
                             libraries=("torch", "transformers", "peft", "bitsandbytes"),
                             task=task.name, targets=targets, pairs=pairs, lengths=lengths,
                             trials=[to_dict(t) for t in trials], sampled=[to_dict(t) for t in sampled],
                             resources=to_dict(cfg.resources))


def sampled_trials(bases: list[dict[str, Any]], space: Any, keys: set[str]) -> list[TrialConfig]:
    """A trial for every combination of the values that the sampled parameters (choice or
    range) setting any of ``keys`` can take, on each of ``bases`` (trial settings): the grid's
    trials carry a sampled setting at its first value only, and the other values reach
    trials too; none when no sampled parameter sets one of ``keys``.

    A choice gives each of its values. A range gives its two ends (an integer range
    ``[low, high)`` its last integer, high - 1): as low < high, at least one of them differs
    from the setting's default whenever any sampled value can.
    """
    import itertools

    from search_spaces import apply_hyperparameters

    params = [p for p in space.swept if p.kind != "grid" and keys & set(p.keys)]
    if not params:
        return []
    values = []
    for p in params:
        if p.kind == "choice":
            values.append(list(p.tune_values))
        else:
            low, high = p.values
            values.append([low, high - 1 if p.kind in ("randint", "lograndint") else high])
    return [from_dict(TrialConfig, apply_hyperparameters(base, dict(zip([p.key for p in params], combo))))
            for base in bases for combo in itertools.product(*values)]


def swept_lengths(cfg: SweepConfig, space: Any) -> list[int]:
    """Every ``data.max_length`` the search space gives a trial (an integer range's largest
    draw: ranges are ``[low, high)``); none where the command line sets it (it wins over the
    space's fixed value)."""
    if "data.max_length" in cfg.overrides:
        return []
    ranges = [p.values[1] - 1 for p in space.params if p.key == "data.max_length" and p.kind in ("randint", "lograndint")]
    return [*space.values_of("data.max_length"), *ranges]


def check_max_length(skeleton: Any, lengths: list[int]) -> None:
    """Refuse a ``data.max_length`` longer than the model's learned position embeddings hold
    (an example that long would fail every trial); models without them (rotary, relative,
    images) take any."""
    from trainables.models import position_limit

    limit = position_limit(skeleton)
    if limit is not None and max(lengths) > limit:
        raise UserError("data.max_length", f"{max(lengths)} tokens is more than this model's {limit} positions "
                                           f"({skeleton.config.model_type}); accepted: 1..{limit}")


def check_cpu_precisions(cfg: SweepConfig, trials: list[TrialConfig], space: Any) -> None:
    """Refuse a ``train.precision`` of CPU trials (``gpus_per_trial`` 0) that this torch's CPU
    autocast cannot compute in. A GPU trial checks its own device as it starts (the driver
    may have none)."""
    from trainables.devices import check_precision

    if cfg.resources.gpus_per_trial:
        return
    for precision in sorted({t.train.precision for t in trials} | set(space.values_of("train.precision"))):
        check_precision(precision, "cpu")


def method_pairs(base: dict[str, Any], space: Any, grid_trials: list[TrialConfig]) -> list[tuple[str, str]]:
    """Every (adapter.method, adapter.targets) pair the sweep may run. The grid's trials
    (``grid_trials``) give the pairs exactly (a coupled ``method+targets`` grid pairs only its
    own values); a sampled (choice) method or target group is checked against every value of
    the other, each pair's trial config built, so method/base combinations (a quantised base)
    are checked too."""
    import itertools

    from search_spaces import apply_hyperparameters

    keys = ("adapter.method", "adapter.targets")
    trials = grid_trials
    if sampled_keys(space) & set(keys):
        methods = [base["adapter"]["method"], *space.values_of("adapter.method")]
        targets = [base["adapter"]["targets"], *space.values_of("adapter.targets")]
        trials = [from_dict(TrialConfig, apply_hyperparameters(base, dict(zip(keys, c))))
                  for c in itertools.product(dict.fromkeys(methods), dict.fromkeys(targets))]
    return list(dict.fromkeys((t.adapter.method, t.adapter.targets) for t in trials))


def within_budget(cfg: SweepConfig, space: Any, grid: Grid, skeleton: Any,
                   task_type: str) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], int]]]:
    """Split the grid into the points within ``max_trainable_params`` and those over it,
    counting each configuration's trainable parameters on the meta-device model."""
    import copy

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
    for point, trial in grid:
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


def warm_starts(grid: Grid, space: Any, model_type: str, tracking_uri: str) -> dict[str, str]:
    """Resolve (download) every ``adapter.init_from`` the sweep can use and check that each
    fits every configuration it meets (same rank and target modules)."""
    from trainables.adapters import resolve_targets
    from trainables.warmstart import check_compatible, resolve_init_from

    swept = {p.key for p in space.swept}
    if "adapter.init_from" in swept and any(p.kind != "grid" for p in space.swept
                                            if p.key in ("adapter.r", "adapter.targets", "adapter.init_from")):
        raise UserError("space.adapter.init_from", "warm starts are checked against each rank and "
                                                    "target group: sweep init_from, r and targets as grids")
    out: dict[str, str] = {}
    for _, trial in grid:
        value = trial.adapter.init_from
        if not value:
            continue
        if value not in out:
            out[value] = str(resolve_init_from(value, tracking_uri))
        check_compatible(Path(out[value]), r=trial.adapter.r, value=value,
                         modules=resolve_targets(trial.adapter.targets, model_type).modules)
    return out


def check_workers(cfg: SweepConfig, trials: list[TrialConfig], space: Any) -> None:
    """Refuse, before launch, a batch size the trial's workers cannot share evenly
    (``train.batch_size`` is the global batch: :func:`trainables.optim.rank_batch_size`), of the
    base trial, a grid point or a listed value of the space, and ``train.strategy: fsdp`` on one
    worker (nothing to shard over)."""
    from trainables.optim import rank_batch_size

    workers = cfg.resources.workers_per_trial
    for size in sorted({t.train.batch_size for t in trials} | set(space.values_of("train.batch_size"))):
        rank_batch_size(size, workers)
    strategies = {t.train.strategy for t in trials} | set(space.values_of("train.strategy"))
    if "fsdp" in strategies:
        _check_fsdp(workers, trials)


def _check_fsdp(workers: int, trials: list[TrialConfig]) -> None:
    """What ``train.strategy: fsdp`` needs of the sweep (the trial's own settings:
    :func:`trainables.fsdp.check_strategy`)."""
    from trainables.tasks.registry import get_task

    if workers == 1:
        raise UserError("train.strategy", "fsdp shards the model over a trial's workers, and "
                                          "resources.workers_per_trial is 1; use --workers-per-trial 2 "
                                          "or more, or train.strategy=ddp")
    task = get_task(trials[0].task)
    if not task.final_eval_on_every_rank and any(t.eval.generate for t in trials):
        raise UserError("train.strategy", f"fsdp runs a trial's final evaluation on every worker, and "
                                          f"{task.name}'s (answers of every compared model, the judge) runs "
                                          "once; use eval.generate=false or train.strategy=ddp")


def check_local_resources(cfg: SweepConfig) -> None:
    """Before a local Ray starts: refuse CPUs or GPUs per trial this machine does not have
    (what :func:`check_resources` would find in the Ray it starts). A cluster joined through
    ``$RAY_ADDRESS`` is checked once joined."""
    import glob

    if os.environ.get("RAY_ADDRESS"):
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    no_gpu = visible is not None and not visible.strip() or not (glob.glob("/dev/nvidia[0-9]*") or
                                                                os.path.exists("/dev/kfd"))
    # Some GPU is all that can be told without Ray or torch: a request of any size passes.
    _check_counts(cfg, cpus=os.cpu_count() or 1, gpus=0.0 if no_gpu else math.inf)


def _check_counts(cfg: SweepConfig, *, cpus: float, gpus: float) -> None:
    """Refuse more CPUs or GPUs per trial than the cluster's ``cpus`` and ``gpus``."""
    res = cfg.resources
    if res.cpus_per_trial > cpus:
        group = f" for its {res.workers_per_trial} workers" if res.uses_train_workers else ""
        raise UserError("resources.cpus_per_trial", f"{res.cpus_per_trial:g} CPUs per trial{group}, but the "
                                                    f"Ray cluster has {cpus:g}")
    if res.gpus_per_trial > gpus:
        raise UserError("resources.gpus_per_trial",
                        f"{res.gpus_per_trial:g} GPUs per trial, but the Ray cluster has {gpus:g}"
                        + ("; use --gpus-per-trial 0 to train on CPU" if gpus == 0 else ""))


def check_resources(cfg: SweepConfig) -> None:
    """Refuse requests the running Ray cluster can never meet (they would hang silently)."""
    import ray

    total = ray.cluster_resources()
    _check_counts(cfg, cpus=total.get("CPU", 0.0), gpus=total.get("GPU", 0.0))
    res = cfg.resources
    if res.uses_train_workers:
        from trainables.trial import TRAIN_DRIVER_CPU

        if res.cpus_per_trial - TRAIN_DRIVER_CPU <= 0:
            raise UserError("resources.cpus_per_trial", "too small for a Ray Train worker group")
        if needs_state_api(cfg) and not _has_state_api():
            raise UserError("resources.workers_per_trial",
                            f"{res.workers_per_trial} workers per trial under the {cfg.scheduler.name} scheduler "
                            "need the Ray cluster's dashboard (Ray Train frees a stopped trial's workers through "
                            "its state API), and this cluster has none; start Ray with its dashboard or use "
                            "--scheduler fifo")


def needs_state_api(cfg: SweepConfig) -> bool:
    """Whether the sweep's Ray needs its state API (served by its dashboard): worker-group
    trials that Tune may stop (any scheduler but FIFO), whose groups Ray Train's
    placement-group cleaner frees by asking that API whether their controller still lives.
    Under FIFO every trial ends by itself and its controller frees its own group."""
    return cfg.resources.uses_train_workers and cfg.scheduler.name != "fifo"


def _has_state_api() -> bool:
    """Whether the connected Ray cluster answers its state API (served by its dashboard): the
    API server it names must list this driver's node (a Ray started without its dashboard
    still names the default port, where another local Ray's dashboard may answer). A Ray
    Client connection (``ray://``) is not asked: its sweep runs on the cluster."""
    if os.environ.get("RAY_ADDRESS", "").startswith("ray://"):
        return True
    import ray
    from ray.util.state import list_nodes

    here = ray.get_runtime_context()
    try:
        nodes = list_nodes(address=here.gcs_address, timeout=10, raise_on_missing_output=False)
    except Exception:  # noqa: BLE001  (ServerUnavailable, a timeout, a refused connection)
        return False
    return any(node.node_id == here.get_node_id() for node in nodes)
