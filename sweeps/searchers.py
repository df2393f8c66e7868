"""Optuna per scientific value: "the best learning rate for each rank" as one sweep.

With groups (``scheduler.groups``, see :mod:`sweeps.schedulers`), an Optuna sweep does not
let TPE choose the scientific values: every group (each combination of the grouping
settings' grid or choice values) gets its own Optuna study over the remaining (nuisance)
settings, with ``search.num_samples`` trials. Groups take turns, so each group's sampler
has seen its earlier trials' results before it suggests the next, and ASHA (grouped the
same way) prunes within the group.
"""

from __future__ import annotations

import pickle
from typing import Any

from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch


class GroupedOptuna(Searcher):
    """One Optuna TPE study per group of trials, ``samples`` trials each, groups in turn."""

    def __init__(self, *, points: list[dict[str, Any]], space: dict[str, Any], samples: int,
                 metric: str, mode: str, seed: int) -> None:
        super().__init__(metric=metric, mode=mode)
        self.points = points
        """Each group's values of the grouping settings (Tune ``param_space`` keys)."""
        self.distributions = OptunaSearch.convert_search_space(space)
        self.samples = samples
        self.seed = seed
        self.studies: dict[int, OptunaSearch] = {}
        self.issued = [0] * len(points)
        self.group_of: dict[str, int] = {}
        self._turn = 0

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict[str, Any],
                              **spec: Any) -> bool:
        return True  # the space, metric and mode were given at construction

    def _study(self, group: int) -> OptunaSearch:
        if group not in self.studies:
            import optuna

            sampler = optuna.samplers.TPESampler(seed=self.seed + group)
            self.studies[group] = OptunaSearch(space=self.distributions, metric=self.metric,
                                               mode=self.mode, sampler=sampler,
                                               study_name=f"group-{group}")
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
        if trial_id in self.group_of and self.metric in result:
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
