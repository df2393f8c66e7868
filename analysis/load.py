"""Read sweeps back from any MLflow tracking store into pandas.

One function, :func:`load`, turns the MLflow record that :mod:`sweeps.tracking.recorder`
writes (one parent run per sweep, one child run per trial) into three things:

- ``sweeps``: one :class:`Sweep` per parent run - its study, task, search algorithm, ASHA
  settings and search space (parsed back from the ``space.<short>`` params);
- ``trials``: a DataFrame, one row per child run - status, every trial setting under its
  dotted name (``adapter.r``, ``train.lr``; parsed from MLflow's strings back to numbers) and
  the last value of every metric (``val_loss``, ``trainable_pct``, ``BLEU``, ...);
- ``history``: a long DataFrame (``run_id, key, step, value``) of the per-report metric
  (``val_loss``), ``epoch`` and ``train_loss`` of every trial, for learning curves.

Which metrics a task has, and in which direction each is better, comes from the task class
(:func:`task_info`), the one place they are declared; the sources' numbers for a task come
from :mod:`analysis.references`. Which settings a sweep is about comes from its parent run's
``lorasweep.scientific`` and ``lorasweep.nuisance`` tags (:attr:`Sweep.scientific`).
"""

from __future__ import annotations

import ast
import collections
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis.references import RefTable, tables_for
from analysis.values import is_number, parse_value  # noqa: F401  (parse_value: analysis.load's API)
from trainables.errors import UserError, did_you_mean, one_of
from trainables.mlflow_names import (COMPLETED, FAILED, INTERRUPTED, KIND_TAG, PARENT_TAG,
                                      RUNNING, STATUS_TAG, STOPPED, SWEEP_TAG,
                                      TRIAL_TAG)
from trainables.report import K, VAL_LOSS
from trainables.tasks.base import MetricSpec

#: Metrics every trial logs whatever its task: not final task metrics.
COST_METRICS = frozenset({VAL_LOSS, *vars(K).values()})

#: Trial params that are not hyperparameters: trials differing only in these are seeds of
#: one configuration (``adapter.lora_alpha`` and ``adapter.target_modules`` are derived from
#: other settings, so they never separate configurations on their own).
NOT_CONFIG = ("seed", "trial_id")

#: Distribution kinds of a search space (``search_spaces.DISTRIBUTIONS``), as written in the
#: parent run's ``space.<short>`` params: ``grid[1, 2, 4]``, ``loguniform[1e-05, 0.001]``.
_SPACE_RE = re.compile(r"^(grid|choice|uniform|loguniform|randint|lograndint)(\[.*\])$", re.S)

#: Statuses of trials that ended; any other (``unfinished``: its sweep was interrupted, or
#: ``running``) counts as unfinished.
ENDED = (COMPLETED, STOPPED, FAILED)


def status_text(statuses: Iterable[str]) -> str:
    """``3 completed, 1 stopped early, 0 failed``, and ``, 2 unfinished`` when some did not end."""
    counts = collections.Counter(statuses)
    unfinished = sum(n for s, n in counts.items() if s not in ENDED)
    return (f"{counts[COMPLETED]} completed, {counts[STOPPED]} stopped early, {counts[FAILED]} failed"
            + (f", {unfinished} unfinished" if unfinished else ""))
#: Parent-run tags naming a sweep's scientific and nuisance settings (comma-separated dotted
#: trial settings; ``seed`` is scientific when the sweep replicates seeds).
SCIENTIFIC_TAG, NUISANCE_TAG, GROUPS_TAG = "lorasweep.scientific", "lorasweep.nuisance", "lorasweep.groups"


@dataclass(frozen=True)
class SpaceParam:
    """One entry of a sweep's search space, as the parent run records it."""

    short: str
    """The name in the search space file (``r``, ``lr``, or a dotted setting)."""
    key: str
    """The dotted trial setting (``adapter.r``): the ``hp.<key>`` tag and the trial param."""
    kind: str
    """``fixed`` or a distribution (``grid``, ``choice``, ``uniform``, ``loguniform``, ...)."""
    values: tuple[Any, ...]
    """The constant, the grid/choice values, or the range bounds ``(low, high)``."""

    @property
    def swept(self) -> bool:
        return self.kind != "fixed"

    @property
    def numeric(self) -> bool:
        return all(is_number(v) for v in self.values)

    def describe(self) -> str:
        return f"{self.kind}{list(self.values)}"


@dataclass(frozen=True)
class Sweep:
    """A sweep's parent run: what was searched, how, and with which scheduler."""

    run_id: str
    name: str
    study: str
    experiment_id: str
    task: str
    algorithm: str
    """``grid``, ``random`` or ``optuna``."""
    scheduler: str
    """``asha`` or ``fifo``."""
    grace_period: float | None
    reduction_factor: float | None
    max_t: float | None
    """ASHA's last rung in epochs when set explicitly; None = the longest trial's length."""
    space: tuple[SpaceParam, ...]
    params: dict[str, str] = field(repr=False)
    tags: dict[str, str] = field(repr=False)
    metrics: dict[str, float] = field(default_factory=dict, repr=False)
    """The parent run's summary metrics (``trials_completed``, ``trials_unfinished``, ...)."""

    @property
    def interruption(self) -> str | None:
        """What a sweep stopped before its end says: why, and how to resume it (None when it
        was not interrupted, or was resumed since)."""
        from sweeps.stopping import INTERRUPTED_TAG, RESUME_TAG

        if INTERRUPTED_TAG not in self.tags:
            return None
        resume = self.tags.get(RESUME_TAG)
        return (f"interrupted ({self.tags[INTERRUPTED_TAG]}): its unfinished trials are in no metric "
                "cell" + (f"; resume it with: {resume}" if resume else ""))

    @property
    def swept(self) -> tuple[SpaceParam, ...]:
        return tuple(p for p in self.space if p.swept)

    @property
    def label(self) -> str:
        return f"{self.study} / {self.name}" if self.study and self.study != self.name else self.name

    @property
    def scientific(self) -> tuple[str, ...] | None:
        """The settings the sweep is about (``adapter.r``; ``seed`` when seeds are
        replicated); None when the parent run has no such tag."""
        return _keys(self.tags.get(SCIENTIFIC_TAG))

    @property
    def nuisance(self) -> tuple[str, ...] | None:
        """The settings tuned so that each scientific value gets a fair chance (``train.lr``)."""
        return _keys(self.tags.get(NUISANCE_TAG))

    @property
    def prunes(self) -> bool:
        """Whether ASHA could stop trials: an ``asha`` sweep with a swept setting outside its
        groups (where every swept setting makes the groups, each trial runs to the end)."""
        from search_spaces import ALIASES

        groups = _keys(self.tags.get(GROUPS_TAG))
        if self.scheduler != "asha" or not groups:
            return self.scheduler == "asha"
        grouped = {k for g in groups for k in g.split("+")}  # a coupled key: adapter.r+adapter.targets
        # A coupled entry is recorded under its short names (space.r/targets).
        return any(not {ALIASES.get(s, s) for s in re.split(r"[/+]", p.short)} <= grouped for p in self.swept)


def _keys(tag: str | None) -> tuple[str, ...] | None:
    return None if tag is None else tuple(k.strip() for k in tag.split(",") if k.strip())


@dataclass(frozen=True)
class TaskInfo:
    """A task's metrics and the sources' tables that report on it."""

    name: str
    metric: MetricSpec
    """The per-report metric ASHA used (``val_loss``)."""
    final_metrics: tuple[MetricSpec, ...]
    """Computed once at the end of a trial, on the test data: never what a trial is tuned on."""
    references: tuple[RefTable, ...] = ()
    registered: bool = True
    report_metrics: tuple[MetricSpec, ...] = ()
    """The other validation metrics every evaluation reports (``val_loss`` of a classification
    task, whose :attr:`metric` is ``val_accuracy``), where its trials logged them."""

    @property
    def metrics(self) -> tuple[MetricSpec, ...]:
        return (self.metric, *self.report_metrics, *self.final_metrics)

    @property
    def per_report(self) -> tuple[MetricSpec, ...]:
        """The validation metrics of every evaluation: :attr:`metric` and :attr:`report_metrics`."""
        return (self.metric, *self.report_metrics)

    def on_test_data(self, name: str) -> bool:
        """Whether metric ``name`` is a final metric (measured on the test data)."""
        return any(m.name == name for m in self.final_metrics)

    def spec(self, name: str) -> MetricSpec:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)


@dataclass
class SweepData:
    """What :func:`load` read: sweeps, one row per trial, and the trials' metric histories."""

    tracking_uri: str
    experiment: str | None
    sweeps: list[Sweep]
    trials: pd.DataFrame
    history: pd.DataFrame
    tasks: dict[str, TaskInfo]
    pending: pd.DataFrame = field(default_factory=pd.DataFrame)
    """The planned trials of an interrupted sweep that have no MLflow run (Tune had not
    started them): one row each, from the parent run's results CSV, with the sweep, task,
    model, swept values and status ``unfinished``, as in ``trials`` but no ``run_id``."""
    not_started: dict[str, int] = field(default_factory=dict)
    """Parent run id -> how many more planned trials of its (interrupted) sweep are in neither
    frame: Tune had not created them, so no configuration of theirs is known."""
    unread: dict[str, str] = field(default_factory=dict)
    """Parent run id -> why its (interrupted) sweep's results CSV could not be read: its
    trials without a run are then all counted in ``not_started``, none in ``pending``."""

    def sweep(self, run_id: str) -> Sweep:
        return next(s for s in self.sweeps if s.run_id == run_id)

    def status_text(self, sweep_run_id: str | None = None) -> str:
        """The sweep's (default: every sweep's) planned trials by status, as the sweep's own
        summary counts them: trials without a run count as unfinished, those Tune never
        created as not started."""
        statuses, missing = self._planned(sweep_run_id)
        return status_text(statuses) + (f", {missing} not started" if missing else "")

    def n_planned(self, sweep_run_id: str | None = None) -> int:
        """Trials with a run, without one, and never created, of one sweep or all."""
        statuses, missing = self._planned(sweep_run_id)
        return len(statuses) + missing

    def _planned(self, sweep_run_id: str | None) -> tuple[list[str], int]:
        """The statuses of the trials with and without a run, and how many Tune never created,
        of one sweep or all."""
        statuses = [s for frame in (self.trials, self.pending) if not frame.empty
                    for s in (frame["status"] if sweep_run_id is None else
                              frame.loc[frame["sweep_run_id"] == sweep_run_id, "status"])]
        missing = sum(n for k, n in self.not_started.items() if sweep_run_id in (None, k))
        return statuses, missing


def by_run(history: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Each trial's rows of a ``history`` frame, split in one pass: selecting one trial's rows
    from the whole frame, once per trial, costs the square of the trials."""
    return {run_id: rows for run_id, rows in history.groupby("run_id", sort=False)}


# --------------------------------------------------------------------------- values


def parse_space(short: str, text: str) -> SpaceParam:
    """``space.r = "grid[1, 4, 16]"`` -> ``SpaceParam('r', 'adapter.r', 'grid', (1, 4, 16))``."""
    from search_spaces import ALIASES

    key = ALIASES.get(short, short)
    m = _SPACE_RE.match(text.strip())
    if m:
        try:
            values = ast.literal_eval(m.group(2))
        except (ValueError, SyntaxError):
            values = None
        if isinstance(values, list) and values:
            return SpaceParam(short, key, m.group(1), tuple(values))
    return SpaceParam(short, key, "fixed", (parse_value(text),))


def _number(text: str | None) -> float | None:
    value = parse_value(text)
    return float(value) if is_number(value) else None


# --------------------------------------------------------------------------- tasks


def task_info(name: str, metric_names: Iterable[str] = ()) -> TaskInfo:
    """The task's declared metrics and references; for a task this checkout does not know
    (recorded elsewhere), ``val_loss`` and whatever final metrics its trials logged."""
    from trainables.tasks.registry import get_task

    try:
        task = get_task(name)
    except UserError:
        finals = tuple(MetricSpec(m, "max") for m in sorted(set(metric_names) - COST_METRICS))
        return TaskInfo(name, MetricSpec(VAL_LOSS, "min", "val loss"), finals, registered=False)
    logged = set(metric_names)
    others = tuple(m for m in task.report_metrics if m.name != task.metric.name and m.name in logged)
    return TaskInfo(name, task.metric, tuple(task.final_metrics), tuple(tables_for(name)),
                    report_metrics=others)


# --------------------------------------------------------------------------- MLflow


def _client(tracking_uri: str) -> Any:
    """A client for an existing store; never creates one (a mistyped SQLite path would) nor
    writes to it (:func:`trainables.tracking_db.reader_client`)."""
    from sweeps.tracking.store import http_settings
    from trainables.tracking_db import check_file_store_readable, reader_client

    if tracking_uri.strip() and tracking_uri != "databricks" and ("://" not in tracking_uri
                                                                  or tracking_uri.startswith("file:")):
        path = tracking_uri.removeprefix("file://").removeprefix("file:")
        if not os.path.isdir(path):
            bare_file = path == tracking_uri and os.path.isfile(path)  # a SQLite file without its scheme
            hint = (f"; {tracking_uri} is a file: for a SQLite database give --tracking-uri "
                    f"sqlite:///{os.path.abspath(tracking_uri)}") if bare_file else ""
            raise UserError("--tracking-uri", f"no MLflow file store at {os.path.abspath(path)}{hint}")
        check_file_store_readable("--tracking-uri", tracking_uri)
    with http_settings(tracking_uri):  # a server that is not there: refused in seconds, not minutes
        return reader_client(tracking_uri, "--tracking-uri")


def _search(client: Any, experiment_ids: list[str], filter_string: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, max_results=1000,
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _parents(client: Any, tracking_uri: str, experiment: str | None, sweep_ids: Sequence[str]) -> list[Any]:
    if experiment is not None:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            names = [e.name for e in client.search_experiments(max_results=1000)]
            raise UserError("--experiment", f"no experiment {experiment!r} in {tracking_uri}"
                                            f"{did_you_mean(experiment, names)}; experiments there: "
                                            f"{one_of(names) or 'none'}")
        runs = _search(client, [exp.experiment_id], f"tags.`{KIND_TAG}` = 'sweep'")
        if not runs:
            raise UserError("--experiment", f"experiment {experiment!r} has no sweep runs "
                                            f"(parent runs tagged {KIND_TAG}=sweep)")
        return sorted(runs, key=lambda r: r.info.start_time or 0)
    runs = []
    for run_id in dict.fromkeys(sweep_ids):
        try:
            run = client.get_run(run_id)
        except Exception:
            raise UserError("--sweep", f"no run {run_id!r} in {tracking_uri}") from None
        kind = run.data.tags.get(KIND_TAG)
        if kind != "sweep":
            parent = run.data.tags.get(PARENT_TAG)
            hint = f"; its sweep's parent run is {parent}" if parent else ""
            raise UserError("--sweep", f"run {run_id} is not a sweep's parent run "
                                       f"({KIND_TAG} is {kind!r}){hint}")
        runs.append(run)
    return runs


def _sweep(run: Any) -> Sweep:
    p, t = dict(run.data.params), dict(run.data.tags)
    space = tuple(parse_space(k.removeprefix("space."), v) for k, v in sorted(p.items())
                  if k.startswith("space.") and k != "space.source")
    return Sweep(
        run_id=run.info.run_id, name=t.get(SWEEP_TAG) or run.info.run_name or run.info.run_id,
        study=t.get("lorasweep.study") or p.get("study", ""), experiment_id=run.info.experiment_id,
        task=p.get("task", ""), algorithm=p.get("search.algorithm", "grid"),
        scheduler=p.get("scheduler.name", "fifo"),
        grace_period=_number(p.get("scheduler.grace_period")),
        reduction_factor=_number(p.get("scheduler.reduction_factor")),
        max_t=_number(p.get("scheduler.max_t")), space=space, params=p, tags=t,
        metrics=dict(run.data.metrics))


#: Runs per bulk history query: bounds the values one query returns (a trial logs a train
#: loss every few steps).
HISTORY_RUNS_PER_QUERY = 100


def _histories(client: Any, run_ids: Sequence[str], key: str) -> dict[str, list[tuple[int, float]]]:
    """Each run's ``(step, value)`` of a metric, one value per step (the last logged, after a
    resume).

    A SQL store (SQLite, PostgreSQL, MySQL) is asked for many runs at once: its
    ``get_metric_history_bulk``, which MLflow's UI charts use (the client has no bulk call).
    Asked run by run, SQLite finds one run's values by scanning every run's values of the
    metric (its plan uses the metrics table's key index), so reading N trials costs N^2.
    Any other store (a tracking server) is asked run by run."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    bulk = getattr(store, "get_metric_history_bulk", None)
    found: dict[str, list[Any]] = {run_id: [] for run_id in run_ids}
    if bulk is None:
        for run_id in found:
            found[run_id] = client.get_metric_history(run_id, key)
    else:
        ids = list(found)
        for i in range(0, len(ids), HISTORY_RUNS_PER_QUERY):
            for m in bulk(ids[i:i + HISTORY_RUNS_PER_QUERY], key, max_results=2**62):
                found[m.run_id].append(m)
    return {run_id: _per_step(metrics) for run_id, metrics in found.items()}


def _per_step(metrics: Iterable[Any]) -> list[tuple[int, float]]:
    latest: dict[int, tuple[int, float]] = {}
    for m in metrics:
        if m.step not in latest or m.timestamp >= latest[m.step][0]:
            latest[m.step] = (m.timestamp, m.value)
    return [(step, value) for step, (_, value) in sorted(latest.items())]


def load(tracking_uri: str, *, experiment: str | None = None, sweep_ids: Sequence[str] = (),
         history_keys: Sequence[str] = (K.epoch, K.train_loss)) -> SweepData:
    """Read the sweeps of ``experiment`` (by name), or the sweeps whose parent run ids are
    ``sweep_ids``, with all their trials. Raises :class:`UserError` naming the CLI flag when
    the store, experiment or runs are not there."""
    if (experiment is None) == (not sweep_ids):
        raise UserError("--experiment", "give an experiment name or one or more --sweep run ids")
    client = _client(tracking_uri)
    sweeps = [_sweep(r) for r in _parents(client, tracking_uri, experiment, sweep_ids)]

    rows: list[dict[str, Any]] = []
    for sweep in sweeps:
        children = _search(client, [sweep.experiment_id],
                           f"tags.`{PARENT_TAG}` = '{sweep.run_id}' and tags.`{KIND_TAG}` = 'trial'")
        # An interrupted run is a partial duplicate: its configuration ran again after a resume.
        rows += [_trial_row(sweep, run) for run in children
                 if run.data.tags.get(STATUS_TAG) != INTERRUPTED]
    if not rows:
        where = f"experiment {experiment!r}" if experiment is not None else \
            "sweep " + ", ".join(s.run_id for s in sweeps)
        raise UserError("--experiment" if experiment is not None else "--sweep",
                        f"{where} has no trial runs (child runs tagged {KIND_TAG}=trial)")
    trials = pd.DataFrame(rows)
    trials = trials.sort_values(["sweep_run_id", "trial_id"], kind="stable").reset_index(drop=True)

    tasks = {name: task_info(name, set().union(*(r["_metrics"] for r in rows if r["task"] == name)))
             for name in dict.fromkeys(trials["task"])}
    trials = trials.drop(columns="_metrics")

    keys = {task: list(dict.fromkeys([tasks[task].metric.name, *history_keys])) for task in tasks}
    found: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for task, runs in trials.groupby("task", sort=False)["run_id"]:
        for key in keys[task]:
            found.update(((run_id, key), values) for run_id, values in _histories(client, list(runs), key).items())
    hist = [(run_id, key, s, v) for run_id, task in zip(trials["run_id"], trials["task"])
            for key in keys[task] for s, v in found[(run_id, key)]]
    history = pd.DataFrame(hist, columns=["run_id", "key", "step", "value"])
    from analysis.planned import unstarted

    pending, not_started, unread = [], {}, {}
    for sweep in sweeps:
        started = set(trials.loc[trials["sweep_run_id"] == sweep.run_id, "trial_id"])
        rows_of, missing, unread[sweep.run_id] = unstarted(client, sweep, started)
        pending += rows_of
        if missing:
            not_started[sweep.run_id] = missing
    return SweepData(tracking_uri=tracking_uri, experiment=experiment, sweeps=sweeps,
                     trials=trials, history=history, tasks=tasks, pending=pd.DataFrame(pending),
                     not_started=not_started, unread={k: v for k, v in unread.items() if v})


def _trial_row(sweep: Sweep, run: Any) -> dict[str, Any]:
    tags, params, metrics = run.data.tags, dict(run.data.params), dict(run.data.metrics)
    config = {k: v for k, v in sorted(params.items()) if k not in NOT_CONFIG}
    row: dict[str, Any] = {
        "run_id": run.info.run_id, "run_name": run.info.run_name,
        "sweep_run_id": sweep.run_id, "sweep": sweep.name, "study": sweep.study,
        "trial_id": tags.get(TRIAL_TAG, run.info.run_id),
        "status": tags.get(STATUS_TAG, RUNNING),
        "stopped_at_epoch": _number(tags.get("lorasweep.stopped_at_epoch")),
        "swept": tuple(sorted(k.removeprefix("hp.") for k in tags if k.startswith("hp."))),
        # Trials with the same config_key differ only in their seed.
        "config_key": json.dumps(config, sort_keys=True),
        "task": params.get("task", sweep.task),
        "model": params.get("model.name_or_path", sweep.params.get("model", "")),
    }
    for k, v in params.items():
        row.setdefault(k, parse_value(v))
    for k, v in metrics.items():
        row.setdefault(k, v)
    row["_metrics"] = set(metrics)
    return row
