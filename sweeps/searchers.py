"""Optuna per scientific value: "the best learning rate for each rank" as one sweep.

With groups (``scheduler.groups``, see :mod:`sweeps.schedulers`), an Optuna sweep does not
let TPE choose the scientific values: every group (each combination of the grouping
settings' grid or choice values) gets its own Optuna study over the remaining (nuisance)
settings, with ``search.num_samples`` trials. Groups take turns, so each group's sampler
has seen its earlier trials' results before it suggests the next, and ASHA (grouped the
same way) prunes within the group.

Every study lives in the sweep's Optuna storage (:mod:`sweeps.optuna_store`), and
:class:`StudySearch` tells it how each trial ended.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from sweeps.optuna_store import rdb, sampler, study_name
from trainables.report import K


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class StudySearch(OptunaSearch):
    """Ray Tune's ``OptunaSearch``, telling the study how each trial ended.

    A trial that ran to its end is ``COMPLETE`` with the metric of its final report. One that
    ASHA stopped is ``PRUNED``: Optuna records its last reported value as it does for a trial
    its own pruner stops, and TPE ranks it below the completed ones (Tune would tell it
    ``COMPLETE`` with a value from fewer epochs). One that raised, or whose last value is not
    a finite number, is ``FAIL`` (TPE ignores it). With a list of metrics (multi-objective),
    the study gets each trial's values of all of them. Each Optuna trial keeps its Tune trial
    id (user attribute ``trial_id``), which names its MLflow child run.

    The study lives in its storage, ahead of Tune's experiment snapshot: a trial a killed
    driver's searcher had already told the study keeps that record when ``--resume`` runs it
    again from its checkpoint (its reports and end are not told twice)."""

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict[str, Any],
                              **spec: Any) -> bool:
        if isinstance(self._metric, list):  # the objectives given at construction stay
            metric, mode = None, None
        return super().set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        config = super().suggest(trial_id)
        if trial_id in self._ot_trials and "trial_id" not in self._ot_trials[trial_id].user_attrs:
            self._ot_trials[trial_id].set_user_attr("trial_id", trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        if trial_id in self._ot_trials and not isinstance(self.metric, list) and _number(result.get(self.metric)):
            try:
                super().on_trial_result(trial_id, result)
            except UpdateFinishedTrialError:
                pass  # told already, by the driver a --resume took over from

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        from optuna.trial import TrialState

        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        values = [(result or {}).get(m) for m in metrics]
        if error or not all(_number(v) for v in values):
            state, told = TrialState.FAIL, None
        elif not (result or {}).get(K.is_final):
            state, told = TrialState.PRUNED, None
        else:
            told = [float(v) for v in values]
            state, told = TrialState.COMPLETE, told if isinstance(self.metric, list) else told[0]
        self._ot_study.tell(self._ot_trials[trial_id], told, state=state, skip_if_finished=True)
        self._completed_trials.add(trial_id)


class GroupedOptuna(Searcher):
    """One Optuna TPE study per group of trials, ``samples`` trials each, groups in turn;
    the studies are ``<sweep>/group-<i>`` in ``storage`` (a URL; None: in memory), and
    ``prior`` is the trials each had before this run (``--extend``)."""

    def __init__(self, *, points: list[dict[str, Any]], space: dict[str, Any], samples: int,
                 metric: str, mode: str, seed: int, sweep: str, storage: str | None = None,
                 prior: int = 0) -> None:
        super().__init__(metric=metric, mode=mode)
        self.points = points
        """Each group's values of the grouping settings (Tune ``param_space`` keys)."""
        self.distributions = OptunaSearch.convert_search_space(space)
        self.samples = samples
        self.seed = seed
        self.sweep, self.storage, self.prior = sweep, storage, prior
        self.studies: dict[int, StudySearch] = {}
        self.issued = [0] * len(points)
        self.group_of: dict[str, int] = {}
        self._turn = 0

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict[str, Any],
                              **spec: Any) -> bool:
        return True  # the space, metric and mode were given at construction

    def _study(self, group: int) -> StudySearch:
        if group not in self.studies:
            search = StudySearch(space=self.distributions, metric=self.metric, mode=self.mode,
                                 sampler=sampler(self.seed, group=group, prior=self.prior),
                                 study_name=study_name(self.sweep, group), storage=rdb(self.storage))
            search._ot_study.set_user_attr("group", {k: _plain(v) for k, v in self.points[group].items()})
            self.studies[group] = search
        return self.studies[group]

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        n = len(self.points)
        group = next((g % n for g in range(self._turn, self._turn + n)
                      if self.issued[g % n] < self.samples), None)
        if group is None:
            return Searcher.FINISHED
        config = self._study(group).suggest(trial_id)
        if config is None:
            return None
        self.issued[group] += 1
        self.group_of[trial_id] = group
        self._turn = group + 1
        return {**self.points[group], **config}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id in self.group_of:
            self._study(self.group_of[trial_id]).on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        if trial_id in self.group_of:
            self._study(self.group_of[trial_id]).on_trial_complete(trial_id, result, error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__dict__.copy(), fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))


def _plain(value: Any) -> Any:
    """A grouping value as JSON data (Optuna's user attributes are JSON)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value
