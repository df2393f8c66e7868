"""Hyperparameter importance of Optuna sweeps, and best trials on the edge of the space.

**Importance.** The Optuna study a sweep ran in is not stored; it is rebuilt from the MLflow
record with ``optuna.trial.create_trial``: the distributions come from the parent run's
``space.<short>`` params (``loguniform[1e-05, 0.001]`` -> ``FloatDistribution(1e-05, 0.001,
log=True)``; integer ranges are ``[low, high)`` as in Tune, so ``randint[1, 9]`` ->
``IntDistribution(1, 8)``), each trial's values from its params. As in Optuna itself,
completed trials are ``COMPLETE`` with their objective value, trials ASHA stopped are
``PRUNED`` (with their reports as intermediate values) and failed trials ``FAIL``; only
completed trials inform the importances, and only with at least 10 of them and 3 per swept
setting (:func:`needed_trials`; fewer: a note of how many there are and how many are
needed, no importances). The evaluator is fANOVA with a fixed seed
(reproducible; Optuna 5's default, PED-ANOVA, is meant for studies of many trials).

**Edge of the space.** When the best trial's value of a numeric swept setting is the
smallest or largest grid/choice value, or lies within ``tolerance`` (5%) of a range's ends
(measured on a log scale for log ranges), the optimum may lie outside what was searched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.load import SpaceParam, Sweep, TaskInfo, by_run
from analysis.values import is_number
from analysis.values import fmt_value
from search_spaces import short_name
from trainables.mlflow_names import COMPLETED, FAILED, STOPPED
from trainables.tasks.base import MetricSpec

EDGE_TOLERANCE = 0.05
MIN_COMPLETED = 10
"""The fewest completed trials importances are computed from. Optuna computes them from two
and documents no minimum, but fANOVA's random forest fitted on a handful of points gives
importances that are noise. 10 is the number of trials Optuna's TPE sampler draws at random
(``n_startup_trials``) before it models the objective at all."""
PER_SETTING = 3
"""... and at least this many completed trials per swept setting (each one a dimension the
forest splits on): 4 swept settings need 12."""


def needed_trials(n_swept: int) -> int:
    """The completed trials importances need with ``n_swept`` swept settings."""
    return max(MIN_COMPLETED, PER_SETTING * n_swept)


def distribution(p: SpaceParam) -> Any:
    """The Optuna distribution of one swept search-space entry."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if p.kind in ("grid", "choice"):
        return CategoricalDistribution(list(p.values))
    lo, hi = p.values
    if p.kind in ("uniform", "loguniform"):
        return FloatDistribution(float(lo), float(hi), log=p.kind == "loguniform")
    # Tune's randint/lograndint exclude the upper bound; Optuna's IntDistribution includes it.
    return IntDistribution(int(lo), int(hi) - 1, log=p.kind == "lograndint")


def _param_value(p: SpaceParam, dist: Any, value: Any) -> Any:
    """The trial's value as a member of ``dist`` (categories matched by value, then by text)."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        for choice in dist.choices:
            if choice == value or str(choice) == str(value):
                return choice
        return None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    value = int(value) if p.kind in ("randint", "lograndint") else float(value)
    return value if dist.low <= value <= dist.high else None


@dataclass
class Importance:
    sweep: Sweep
    metric: MetricSpec
    importances: dict[str, float]
    """Dotted setting -> importance, normalised to sum 1, most important first."""
    evaluator: str
    n_complete: int
    n_pruned: int
    n_failed: int
    note: str = ""


def rebuild_study(sweep: Sweep, trials: pd.DataFrame, history: pd.DataFrame, task: TaskInfo,
                  metric: MetricSpec) -> Any:
    """An in-memory Optuna study holding the sweep's trials (see the module docstring)."""
    import optuna
    from optuna.trial import TrialState, create_trial

    dists = {p.key: distribution(p) for p in sweep.swept}
    study = optuna.create_study(direction="minimize" if metric.mode == "min" else "maximize",
                                study_name=sweep.name)
    frozen = []
    runs = by_run(history[history["key"] == task.metric.name])
    for _, t in trials[trials["sweep_run_id"] == sweep.run_id].iterrows():
        params = {k: _param_value(p, dists[k], t.get(k)) for p in sweep.swept for k in [p.key]}
        if any(v is None for v in params.values()):
            continue
        h = runs.get(t["run_id"], history.iloc[:0])
        inter = {int(s): float(v) for s, v in zip(h["step"], h["value"]) if math.isfinite(v)}
        value = t.get(metric.name)
        if t["status"] == COMPLETED and value is not None and math.isfinite(float(value)):
            frozen.append(create_trial(state=TrialState.COMPLETE, value=float(value), params=params,
                                       distributions=dists, intermediate_values=inter,
                                       user_attrs={"run_id": t["run_id"]}))
        elif t["status"] in (COMPLETED, STOPPED):
            frozen.append(create_trial(state=TrialState.PRUNED, params=params, distributions=dists,
                                       intermediate_values=inter, user_attrs={"run_id": t["run_id"]}))
        elif t["status"] == FAILED:
            frozen.append(create_trial(state=TrialState.FAIL, params=params, distributions=dists,
                                       user_attrs={"run_id": t["run_id"]}))
    study.add_trials(frozen)
    return study


def param_importances(sweep: Sweep, trials: pd.DataFrame, history: pd.DataFrame, task: TaskInfo,
                      metric: MetricSpec | None = None) -> Importance:
    """``optuna.importance.get_param_importances`` on the rebuilt study of ``sweep``."""
    import optuna
    from optuna.trial import TrialState

    metric = metric or task.metric
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = rebuild_study(sweep, trials, history, task, metric)
    counts = {s: len(study.get_trials(deepcopy=False, states=(s,)))
              for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    try:
        evaluator, name = optuna.importance.FanovaImportanceEvaluator(seed=0), "fANOVA"
    except ImportError:  # fANOVA needs scikit-learn
        evaluator, name = optuna.importance.PedAnovaImportanceEvaluator(), "PED-ANOVA"
    out = Importance(sweep, metric, {}, name, counts[TrialState.COMPLETE], counts[TrialState.PRUNED],
                     counts[TrialState.FAIL])
    if not sweep.swept:
        out.note = "nothing swept"
    elif out.n_complete < (need := needed_trials(len(sweep.swept))):
        out.note = (f"{out.n_complete} completed trial(s) with {metric.name}; importances need at "
                    f"least {need} (the larger of {MIN_COMPLETED} and {PER_SETTING} per swept setting; "
                    f"{len(sweep.swept)} swept)")
    else:
        try:
            imp = optuna.importance.get_param_importances(study, evaluator=evaluator)
        except (ValueError, RuntimeError) as e:
            out.note = f"Optuna could not compute importances: {e}"
        else:
            out.importances = {k: float(v) for k, v in sorted(imp.items(), key=lambda kv: -kv[1])}
    return out


# --------------------------------------------------------------------------- edge of the space


@dataclass(frozen=True)
class EdgeWarning:
    sweep: str
    key: str
    value: float
    edge: str
    """``lower`` or ``upper``."""
    space: SpaceParam
    metric: MetricSpec
    best_value: float
    run_id: str

    def message(self) -> str:
        where = "smallest" if self.edge == "lower" else "largest"
        searched = (f"{where} value of {self.space.describe()}" if self.space.kind in ("grid", "choice")
                    else f"{self.edge} end of {self.space.describe()}")
        further = "smaller" if self.edge == "lower" else "larger"
        return (f"{self.sweep}: the best trial ({self.metric.heading} "
                f"{self.metric.fmt.format(self.best_value)}, run {self.run_id}) has "
                f"{short_name(self.key)}={fmt_value(self.value)}, the {searched}; the optimum may "
                f"lie outside the search space (try {further} values)")


def best_trials(trials: pd.DataFrame, task: TaskInfo, metric: MetricSpec) -> pd.DataFrame:
    """The completed trials tied at the best ``metric``, by trial id: the trials a table row
    and the sweep's summary can choose (a trial ASHA stopped early never is the best, even
    where its last report beat every completed trial)."""
    if metric.name not in trials:
        return trials.iloc[0:0]
    ok = trials[(trials["status"] == COMPLETED) & trials[metric.name].notna()]
    vals = ok[metric.name].astype(float)
    tied = ok[vals == (vals.min() if metric.mode == "min" else vals.max())] if len(ok) else ok
    return tied.sort_values("trial_id", kind="stable") if "trial_id" in tied else tied


def best_trial(trials: pd.DataFrame, task: TaskInfo, metric: MetricSpec) -> pd.Series | None:
    """The completed trial with the best ``metric``; of trials tied at that value, the first
    by trial id (the one the sweep named best and recorded)."""
    tied = best_trials(trials, task, metric)
    return None if tied.empty else tied.iloc[0]


def edge_position(p: SpaceParam, value: float) -> float | None:
    """Where ``value`` sits in the searched values: 0 at the lower end, 1 at the upper end."""
    if p.kind in ("grid", "choice"):
        lo, hi = min(p.values), max(p.values)
    else:
        lo, hi = p.values
        if p.kind in ("randint", "lograndint"):
            hi = hi - 1  # [low, high)
    if not lo < hi:
        return None
    if p.kind.startswith("log") and lo > 0 and value > 0:
        return (math.log(value) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return (value - lo) / (hi - lo)


def edge_warnings(sweep: Sweep, trials: pd.DataFrame, task: TaskInfo, metric: MetricSpec | None = None,
                  *, tolerance: float = EDGE_TOLERANCE) -> list[EdgeWarning]:
    """Numeric swept settings whose best-trial value is at an edge of the search space
    (grid/choice: exactly the smallest or largest value; ranges: within ``tolerance``). With
    trials tied at the best value, only an edge every one of them is at."""
    metric = metric or task.metric
    tied = best_trials(trials[trials["sweep_run_id"] == sweep.run_id], task, metric)
    if tied.empty:
        return []
    best, out = tied.iloc[0], []
    for p in sweep.swept:
        if p.key == "seed" or not p.numeric:
            continue
        edges = {_edge(p, t.get(p.key), tolerance) for _, t in tied.iterrows()}
        if len(edges) == 1 and (edge := edges.pop()):
            out.append(EdgeWarning(sweep.name, p.key, float(best[p.key]), edge, p, metric,
                                   float(best[metric.name]), best["run_id"]))
    return out


def _edge(p: SpaceParam, value: Any, tolerance: float) -> str | None:
    """``lower`` or ``upper`` when ``value`` is at that edge of what ``p`` searched, else None."""
    if not is_number(value) or pd.isna(value) or (pos := edge_position(p, float(value))) is None:
        return None
    tol = 1e-9 if p.kind in ("grid", "choice") else tolerance
    return "lower" if pos <= tol else "upper" if pos >= 1 - tol else None
