"""The configuration of one sweep: the base trial, the search, the scheduler and the resources.

The sweep script builds a :class:`SweepConfig` from its study's preset plus the command line's
overrides (:mod:`sweeps.cli`); planning (:mod:`sweeps.planning`) turns it into the plan Tune
runs. Each dataclass checks its own values in ``__post_init__``, with the field named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from trainables.config import ResourcesConfig, TrialConfig, positive_int, positive_number, seed_value
from trainables.errors import UserError


#: The longest sweep name: it names a directory, and Tune's trial directories go inside it.
MAX_NAME = 128
#: The most trials one sweep plans (grid points x seeds x samples): Tune holds every trial in
#: the driver, and the planning lists the grid.
MAX_TRIALS = 100_000
#: The largest ``resources.memory_limit_mb``: 1 EiB, far below the 2**63 bytes ``RLIMIT_AS`` takes.
MAX_MEMORY_LIMIT_MB = 2**40


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control character (a newline, a tab, DEL, ...)."""
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def check_sweep_name(name: str, field_name: str = "name") -> None:
    """A sweep name (a directory, an MLflow tag, a word in printed commands): non-empty, at
    most :data:`MAX_NAME` characters, no ``/``, ``\\``, ``"`` or control character, not ``.``
    or ``..``."""
    bad = [c for c in name if c in '/\\"'] or has_control(name)
    if not name.strip() or name.strip() in (".", "..") or bad or len(name) > MAX_NAME:
        raise UserError(field_name, f"must be a name of 1 to {MAX_NAME} characters without '/', '\\', '\"' or "
                                    f"control characters, and not '.' or '..', got {name[:60]!r}"
                                    + (f" ({len(name)} characters)" if len(name) > 60 else ""))


def _short(n: int) -> str:
    """``n`` as written, or in e-notation where it has more than 15 digits."""
    return str(n) if n < 10**15 else f"{n:.3g}"


@dataclass(frozen=True)
class SearchConfig:
    algorithm: Literal["grid", "random", "optuna"] = "grid"
    """``grid``/``random``: Tune's variant generator (grid values are crossed, distributions
    sampled); ``optuna``: Optuna TPE (distributions and choices only, no grid)."""
    num_samples: int = 1
    """Samples of the space (with grids: repeats of the whole grid; with Optuna groups: trials per
    group). Above 1 the space must sample a setting (or the search be optuna): a grid point
    repeated has the same seed, so it would be the same trial; replicates are ``--seeds N``. For
    the same reason, where every sampled setting is a choice, at most their number of
    combinations (per grid point, or per group). A sweep plans at most 100000 trials (grid
    points x seeds x samples)."""
    max_concurrent: int | None = None
    """Trials running at once; null = as many as the resources allow."""
    storage: str | None = None
    """Where an optuna search keeps its Optuna study (one per group with groups), named after
    the sweep: a SQLAlchemy URL (``sqlite:////abs/optuna.db``, ``postgresql://host/db``; the
    password from the environment, e.g. ``PGPASSWORD``). null = ``optuna.db`` beside the MLflow
    SQLite file, else beside a local Tune storage, else in memory. ``--resume`` continues the
    study and ``--extend N`` adds trials to it."""

    objectives: Literal["metric", "metric+params"] = "metric"
    """What an optuna search optimises. ``metric``: the task's metric. ``metric+params``: the
    task's metric and the trainable parameters (fewer is better) at once, with Optuna's
    multi-objective TPE; the summary lists the Pareto front, its trials are tagged
    ``lorasweep.pareto=true`` in MLflow and the report draws it. Needs one study over the whole
    space (``scheduler.groups=none``, or a space without scientific settings) and a stored
    study; ASHA still stops trials on the metric, and ``max_trainable_params`` still rejects
    the configurations over the budget."""

    def __post_init__(self) -> None:
        positive_int("num_samples", self.num_samples)
        positive_int("max_concurrent", self.max_concurrent, allow_none=True)
        if self.objectives != "metric" and self.algorithm != "optuna":
            raise UserError("objectives", f"{self.objectives} needs search.algorithm=optuna (a "
                                          f"multi-objective sampler), got {self.algorithm}")


@dataclass(frozen=True)
class SchedulerConfig:
    name: Literal["asha", "fifo"] = "asha"
    """``asha``: asynchronous successive halving on the task's metric; ``fifo``: run all."""
    grace_period: float = 1.0
    """Epochs (passes over the training data, fractions allowed: 0.5) a trial trains before
    ASHA may stop it; the first rung. A trial is compared at its first report at or past each
    rung, so with ``train.eval_every_steps`` rungs can fall within the first epoch."""
    reduction_factor: float = 2.0
    """ASHA keeps the top 1/reduction_factor of trials at each rung."""
    max_t: float | None = None
    """ASHA's last rung in epochs; null = the epochs a full trial trains."""
    promotion: Literal["stop", "pause"] = "stop"
    """How ASHA promotes. ``stop``: Ray Tune's ``ASHAScheduler`` decides as a trial reaches a
    rung (it goes on unless below the top 1/reduction_factor of those there before it, so the
    first trials at a rung always go on). ``pause``: ASHA as Li et al. (2020) state it: the
    trial waits at the rung (paused at its checkpoint) until it is in the top
    floor(n / reduction_factor) of the n trials that reached it (``sweeps/schedulers.py``)."""
    groups: str = "auto"
    """Which trials ASHA compares. ``auto``: trials that share their values of the search
    space's ``scientific`` settings (and seed, with replicates), so ASHA prunes nuisance
    settings (learning rate, dropout, ...) within each scientific value and never a
    scientific value itself; sweep-wide when the space has no scientific setting.
    ``scientific``: the same, but an error on a space without scientific settings.
    ``none``: every trial against every other (plain tuning). Or a comma-separated list of
    swept settings (short names such as ``r,targets`` or dotted ones). With Optuna, groups
    also split the search: each group's nuisance settings get their own study of
    ``search.num_samples`` trials."""

    def __post_init__(self) -> None:
        if not self.groups.strip():
            raise UserError("groups", "must be auto, scientific, none or a comma-separated list of "
                                      "swept settings (e.g. r,targets)")
        positive_number("grace_period", self.grace_period)
        if not math.isfinite(self.reduction_factor) or self.reduction_factor <= 1:
            raise UserError("reduction_factor", f"must be a number > 1, got {self.reduction_factor!r}")
        positive_number("max_t", self.max_t, allow_none=True)


@dataclass(frozen=True)
class SweepConfig:
    """One study run: the base trial, the space searched around it, and how to run it."""

    study: str = "custom"
    """Study name (the sweep script's), recorded as the MLflow parent run's tag."""
    preset: str = "custom"
    """The preset of the study's preset file this sweep was built from (recorded with it)."""
    part: str | None = None
    """Which part of a multi-part study this sweep is (a GLUE task, a model size)."""
    description: str = ""
    """What the sweep is for: the preset's description, shown as the MLflow parent run's note."""
    name: str | None = None
    """Tune experiment and MLflow parent run name; null = ``<study>-<preset>-<timestamp>-<random>``
    (six hex digits: sweeps launched in the same second differ). In a multi-part study each
    part's sweep has ``-<part>`` at the end (after a given name too)."""
    space: dict[str, Any] | str = "e2e_rank_paper"
    """The search space: a file name in ``search_spaces/``, a YAML path, or inline data."""
    trial: TrialConfig = field(default_factory=TrialConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    seed: int = 0
    """Sweep seed: seeds the search algorithm and, with each trial's hyperparameters, the trial."""
    max_trainable_params: int | None = None
    """A budget: grid configurations whose adapter (and head) would train more parameters are
    rejected before launch, and counted in the summary."""
    seeds: int | None = None
    """Replicates: every configuration runs with trial seeds 0..N-1 (adds a ``seed`` grid to
    the space); null = one run per configuration, seeded from the sweep seed. A sweep plans at
    most 100000 trials (grid points x seeds x samples)."""
    keep_best_k: int = 3
    """Adapter checkpoints kept in Tune storage across the whole sweep (best by the metric)."""
    max_failures: int = 0
    """Retries of a failed trial (Tune's ``FailureConfig``): a retry restores the trial from
    its last checkpoint (from the start when it failed before its first report). 0 = a trial
    that raises (an error, a non-finite loss, out of memory) fails at once; the others go on."""
    tracking_uri: str | None = None
    """MLflow tracking URI; null = ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns.db`` here."""
    experiment: str | None = None
    """MLflow experiment name; null = ``lorasweep-<study>``."""
    storage: str | None = None
    """Tune storage (results, checkpoints): a local or shared path or ``s3://``/``gs://`` URI;
    null = ``./ray_results``."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Trial settings given on the command line (dotted, e.g. ``train.lr``). They win over the
    search space's fixed values; a setting the space sweeps cannot be overridden."""

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment: ``experiment``, or ``lorasweep-<study>``."""
        return self.experiment or f"lorasweep-{self.study}"

    def __post_init__(self) -> None:
        positive_int("keep_best_k", self.keep_best_k)
        if not isinstance(self.max_failures, int) or self.max_failures < 0:
            raise UserError("max_failures", f"must be an integer >= 0, got {self.max_failures!r}")
        positive_int("seeds", self.seeds, allow_none=True)
        if self.seeds is not None and self.seeds > MAX_TRIALS:
            raise UserError("seeds", f"must be an integer from 1 to {MAX_TRIALS} (replicates of each "
                                     f"configuration; a sweep plans at most {MAX_TRIALS} trials), got {self.seeds}")
        if self.search.num_samples > MAX_TRIALS:
            raise UserError("search.num_samples", f"must be an integer from 1 to {MAX_TRIALS} (a sweep plans at "
                                                  f"most {MAX_TRIALS} trials), got {self.search.num_samples}")
        memory = self.resources.memory_limit_mb
        if isinstance(memory, int) and memory > MAX_MEMORY_LIMIT_MB:
            raise UserError("resources.memory_limit_mb", f"must be a number of MiB from 1 to {MAX_MEMORY_LIMIT_MB} "
                                                         f"(2**40, 1 EiB), got {_short(memory)}")
        seed_value("seed", self.seed)
        positive_int("max_trainable_params", self.max_trainable_params, allow_none=True)
        if self.scheduler.promotion == "pause" and self.search.max_concurrent:
            raise UserError("search.max_concurrent", "cannot be combined with scheduler.promotion=pause "
                                                     "(Tune counts paused trials against the limit); "
                                                     "limit concurrency with resources.cpus_per_trial")
        if self.scheduler.promotion == "pause" and self.resources.uses_train_workers:
            raise UserError("scheduler.promotion", "pause needs one-process trials (workers_per_trial 1, "
                                                   "trial_shape auto or function); use promotion=stop "
                                                   "with Ray Train worker groups")
        if self.name is not None:
            check_sweep_name(self.name)
        for key, default in (("tracking_uri", "$MLFLOW_TRACKING_URI or sqlite:///mlruns.db"),
                             ("experiment", f"lorasweep-{self.study}"), ("storage", "./ray_results")):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise UserError(key, f"is empty; give a value or leave it out for the default ({default})")
        if self.experiment is not None and has_control(self.experiment):
            raise UserError("experiment", "must be an MLflow experiment name without control characters (a "
                                          f"newline, a tab), got {self.experiment[:60]!r}")
