"""The planned trials of an interrupted sweep that never got an MLflow run.

A sweep stopped before its end (Ctrl-C, a time limit) leaves trials Tune had created but not
started (held back by the concurrency cap): they have no child run, but the sweep's summary
lists them, as ``unfinished``, in the results CSV it logs to the parent run. Trials Tune had
not even created are only a count: the plan's ``n_trials`` param less the trials listed.
:func:`unstarted` reads both, so that a report counts every planned trial as the sweep's own
summary does.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from analysis.values import is_number, parse_value
from trainables.errors import first_line
from trainables.mlflow_names import UNFINISHED


#: The sweep summary's table of every trial Tune knew, logged to the parent run.
RESULTS_CSV = "results.csv"


def unstarted(client: Any, sweep: Any, started: set[str]) -> tuple[list[dict[str, Any]], int, str | None]:
    """An interrupted sweep's (:class:`analysis.load.Sweep`) planned trials without a run: rows
    for those its results CSV lists (Tune had created them), how many more it planned
    (``n_trials``) that Tune had not created yet, and why its results CSV could not be read
    (None when it was). An Optuna sweep plans no fixed set, so only its listed trials count.
    Without the CSV, every planned trial without a run counts as not created."""
    from sweeps.stopping import INTERRUPTED_TAG

    if INTERRUPTED_TAG not in sweep.tags and not sweep.metrics.get("trials_unfinished"):
        return [], 0, None
    listed, unread = _results_csv(client, sweep.run_id)
    rows = [_pending_row(sweep, r) for r in listed or () if r.get("trial_id") not in started]
    known = len(listed) if listed is not None else len(started)
    planned = parse_value(sweep.params.get("n_trials"))
    if sweep.algorithm == "optuna" or not is_number(planned):
        return rows, 0, unread
    return rows, max(0, int(planned) - max(known, len(started) + len(rows))), unread


def _results_csv(client: Any, run_id: str) -> tuple[list[dict[str, str]] | None, str | None]:
    """The rows of a parent run's results CSV, or None and why not (it has none, or its
    artifact store cannot be reached: a store copied without its artifact folder)."""
    import csv
    import tempfile

    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR as BAR

    before = os.environ.get(BAR.name)
    os.environ[BAR.name] = "false"  # no progress bar on the report's output
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, RESULTS_CSV, tmp)
            with open(path, newline="", encoding="utf-8") as fh:
                return list(csv.DictReader(fh)), None
    except Exception as e:  # no such artifact, or an artifact store this client cannot reach
        return None, first_line(e)
    finally:
        if before is None:
            os.environ.pop(BAR.name, None)
        else:
            os.environ[BAR.name] = before


def _pending_row(sweep: Any, listed: dict[str, str]) -> dict[str, Any]:
    """A trial row (as ``analysis.load._trial_row`` makes) for a results-CSV row with no MLflow run:
    the swept values from its columns (short names), the fixed ones from the search space."""
    from search_spaces import ALIASES

    values: dict[str, Any] = {p.key: p.values[0] for p in sweep.space if not p.swept}
    swept = []
    for p in sweep.swept:
        for short in re.split(r"[/+]", p.short):
            if short in listed:
                key = ALIASES.get(short, short)
                values[key] = parse_value(listed[short])
                swept.append(key)
    return {"run_id": "", "run_name": "", "sweep_run_id": sweep.run_id, "sweep": sweep.name,
            "study": sweep.study, "trial_id": listed.get("trial_id", ""),
            "status": listed.get("status") or UNFINISHED, "stopped_at_epoch": None,
            "swept": tuple(sorted(swept)), "config_key": json.dumps(values, sort_keys=True, default=str),
            "task": sweep.task, "model": sweep.params.get("model", ""), **values}
