"""An optuna sweep's stored Optuna studies (``search.storage``, see :mod:`sweeps.optuna_store`)
drawn with Optuna's own matplotlib plots: the optimisation history and the parallel
coordinates of every study the sweep's parent run names."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from analysis.values import fmt_value
from search_spaces import short_name
from sweeps.optuna_store import STORAGE_TAG, STUDIES_TAG
from trainables.mlflow_names import sqlite_path


@dataclass
class StoredStudy:
    name: str
    study: Any
    """The ``optuna.Study``, loaded read only."""

    @property
    def group(self) -> dict[str, Any]:
        """The values of the settings that make the study's group (``{'adapter.r': 4}``, its
        ``group`` user attribute; see :class:`sweeps.searchers.GroupedOptuna`); empty for
        the one study of an ungrouped sweep."""
        return dict(self.study.user_attrs.get("group") or {})

    @property
    def label(self) -> str:
        """What the study holds: its group's values (``r=4``), else its name. A grouped
        study's name (``<sweep>/group-<i>``) numbers the groups in the order they were
        listed, which says nothing of what each one is."""
        if not self.group:
            return self.name
        return ", ".join(f"{short_name(k)}={fmt_value(v)}" for k, v in self.group.items())

    @property
    def stem(self) -> str:
        """The study in a file name: its name, or for a group the sweep and the group's
        values (``<sweep>_r=4``)."""
        return f"{self.name.rpartition('/group-')[0] or self.name}_{self.label}" if self.group else self.name


def stored_studies(sweep: Any) -> tuple[list[StoredStudy], str]:
    """The studies the sweep's parent run names, and a note when there are none to draw."""
    url, names = sweep.tags.get(STORAGE_TAG), sweep.tags.get(STUDIES_TAG)
    if not url or not names:
        return [], "its Optuna study was not stored (in memory)"
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return [], f"its Optuna storage {url} is not on this machine"
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url)
    found = set(optuna.get_all_study_names(storage))
    studies = [StoredStudy(n, optuna.load_study(study_name=n, storage=storage))
               for n in names.split(",") if n in found]
    return studies, "" if studies else f"none of its Optuna studies ({names}) is in {url}"


def study_figures(study: Any, objective: str, title: str = "") -> list[tuple[str, Any, dict[str, Any]]]:
    """``(kind, figure, drawn)`` for the optimisation history and the parallel coordinates
    (the latter once the study has completed trials) of ``objective`` (the first value); for
    a multi-objective study (``search.objectives=metric+params``) also its Pareto front.
    ``title`` (a group's values, ``r=4``) goes before each plot's own title."""
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    multi = len(study.directions) > 1
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    drawn = {"trials": len(study.trials), "completed": len(done), "values": [t.values[0] for t in done]}
    first = {"target": (lambda t: t.values[0]) if multi else None, "target_name": objective}
    out = []
    with warnings.catch_warnings():  # Optuna's matplotlib plots are marked experimental
        warnings.simplefilter("ignore")
        out.append(("history", ovm.plot_optimization_history(study, **first).figure, drawn))
        if done:
            out.append(("parallel", ovm.plot_parallel_coordinate(study, **first).figure, drawn))
        if multi and done:
            front = {**drawn, "front": sorted(tuple(t.values) for t in study.best_trials)}
            ax = ovm.plot_pareto_front(study, target_names=[objective, "trainable parameters"])
            out.append(("pareto", ax.figure, front))
    for _, fig, _ in out:
        if title:
            ax = fig.axes[0]  # the plot's (a parallel-coordinates plot's colour bar comes after)
            ax.set_title(f"{title}: {ax.get_title()}")
        fig.tight_layout()
    return out
