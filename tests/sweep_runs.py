"""A sweep run as a user runs it (the real command in a subprocess), and its MLflow record."""

from __future__ import annotations

import os
import subprocess
from types import SimpleNamespace

from conftest import REPO


def run_sweep_command(cmd: list[str], *, cwd, uri: str, experiment: str, completed: int) -> SimpleNamespace:
    """Run ``cmd``; it must exit 0 with ``completed`` trials completed. Returns its ``out``
    (stdout), the MLflow ``client``, the sweep's ``parent`` run and its ``trials``."""
    from mlflow import MlflowClient

    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert f"{completed} completed, 0 stopped early by ASHA, 0 failed" in proc.stdout
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return SimpleNamespace(out=proc.stdout, client=client,
                           parent=next(r for r in runs if r.data.tags.get("lorasweep.kind") == "sweep"),
                           trials=[r for r in runs if r.data.tags.get("lorasweep.kind") == "trial"])
