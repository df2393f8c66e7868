"""An optuna sweep's stored Optuna studies (``search.storage``, see :mod:`sweeps.optuna_store`)
drawn with Optuna's own matplotlib plots: the optimisation history and the parallel
coordinates of every study the sweep's parent run names."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from sweeps.optuna_store import STORAGE_TAG, STUDIES_TAG
from trainables.mlflow_names import sqlite_path


@dataclass
class StoredStudy:
    name: str
    study: Any
    """The ``optuna.Study``, loaded read only."""


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


def study_figures(study: Any, objective: str) -> list[tuple[str, Any, dict[str, Any]]]:
    """``(kind, figure, drawn)`` for the optimisation history and the parallel coordinates
    (the latter once the study has completed trials); ``objective``: the value's name."""
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    drawn = {"trials": len(study.trials), "completed": len(done), "values": [t.value for t in done]}
    out = []
    with warnings.catch_warnings():  # Optuna's matplotlib plots are marked experimental
        warnings.simplefilter("ignore")
        ax = ovm.plot_optimization_history(study, target_name=objective)
        ax.figure.tight_layout()
        out.append(("history", ax.figure, drawn))
        if done:
            ax = ovm.plot_parallel_coordinate(study, target_name=objective)
            ax.figure.tight_layout()
            out.append(("parallel", ax.figure, drawn))
    return out
