"""The report's copy in MLflow, in the artifacts of every selected sweep's parent run.

MLflow cannot delete an artifact, so a report logged over an earlier one would leave that
one's files (a figure of a sweep since left out, say) beside its own. Each report is
therefore logged into a folder of its own, ``analysis/<report id>/``, the id being the UTC
time it was logged, to the millisecond, then four random hex digits
(``20261207-143005-281-7c0e``), so the folders list oldest first. The random digits tell
apart two reports started in the same millisecond (two processes reporting on one sweep):
each process draws its own, where a scheme of listing the folders and taking the next free
name would give both the same folder, as neither sees the other's before it logs. Once every
file is logged, the run's tag ``lorasweep.analysis`` names the folder of its current report
(``analysis/20261207-143005-281-7c0e``): a copy cut short by an error leaves the tag on the
last complete one. Code that reads a report back follows the tag (:func:`current_report`).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

ARTIFACT_PATH = "analysis"
#: Parent-run tag: the artifact folder of the run's current report.
CURRENT_TAG = "lorasweep.analysis"


def report_id(client: Any, run_ids: list[str], now: float | None = None) -> str:
    """A folder name under ``analysis/`` that none of ``run_ids`` has yet: the UTC time
    ``now`` (seconds since the epoch; default the clock) to the millisecond, and four random
    hex digits, drawn again while one of the runs has that folder already."""
    now = time.time() if now is None else now
    stamp = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}-{int(now * 1000) % 1000:03d}"
    taken = {a.path.rpartition("/")[2] for run_id in run_ids
             for a in client.list_artifacts(run_id, ARTIFACT_PATH) if a.is_dir}
    while (name := f"{stamp}-{secrets.token_hex(2)}") in taken:
        pass
    return name


def log_report(data: Any, report: Any) -> tuple[str, list[str]]:
    """Log the files ``report`` wrote (not whatever else its folder holds) to every selected
    sweep's parent run under ``analysis/<report id>/``, then tag each run with that folder.
    Returns the folder and the run ids."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=data.tracking_uri)
    runs = [s.run_id for s in data.sweeps]
    folder = f"{ARTIFACT_PATH}/{report_id(client, runs)}"
    files = list(dict.fromkeys(report.files))
    for run_id in runs:
        for path in files:
            client.log_artifact(run_id, str(path), folder)
    for run_id in runs:
        client.set_tag(run_id, CURRENT_TAG, folder)
    return folder, runs


def current_report(client: Any, run_id: str) -> str | None:
    """The artifact folder of the run's current report (None: no report was logged)."""
    return client.get_run(run_id).data.tags.get(CURRENT_TAG)
