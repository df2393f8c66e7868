"""ASHA with promotions (``scheduler.promotion: pause``, ``sweeps/schedulers.py``) in a real sweep.

The smoke rank study (ranks 1, 4, 16 x learning rates 2e-3, 2e-5: six trials, three epochs,
rungs at epochs 1 and 2, reduction factor 2), run through the command line with real local
Ray and a real MLflow SQLite store, grouped by rank (the default). What makes this grouped
ASHA and not Ray's rule is checked on the MLflow record: no trial trains past epoch 1 before
the other trial of its rank has reached it, the better of the two is promoted, paused trials
resume in the same MLflow run, and every rank's best trial runs to the end although no rung
above the first ever holds two trials of a rank (the group's last trial goes on once nothing
else can run).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, smoke_assets):
    root = tmp_path_factory.mktemp("promotion")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    cmd = [sys.executable, str(REPO / "sweeps" / "rank_e2e.py"), "--preset", "smoke", "--name", "pause",
           "--tracking-uri", uri, "--storage", str(root / "ray_results"), "--scheduler", "asha",
           "--set", "scheduler.promotion=pause", "--set", "scheduler.reduction_factor=2",
           "--set", "eval.generate=false", "--set", "data.train_limit=256", "--set", "data.val_limit=64"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lorasweep-rank_e2e")
    trials = [r for r in client.search_runs([exp.experiment_id], max_results=100)
              if r.data.tags.get("lorasweep.kind") == "trial"]
    # Each trial's reports: epoch -> (timestamp, validation loss), from its one MLflow run.
    reports = {}
    for run in trials:
        epochs = client.get_metric_history(run.info.run_id, "epoch")
        losses = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_loss")}
        reports[run.info.run_id] = {m.value: (m.timestamp, losses[m.step]) for m in epochs}
    return {"out": proc.stdout, "trials": trials, "reports": reports}


def _rank(run):
    return int(run.data.params["adapter.r"])


def test_each_rank_keeps_its_better_trial_to_the_end_and_stops_the_other(sweep):
    reports = sweep["reports"]
    assert len(sweep["trials"]) == 6
    by_rank = {}
    for run in sweep["trials"]:
        by_rank.setdefault(_rank(run), []).append(run)
    assert sorted(by_rank) == [1, 4, 16]
    for rank, runs in by_rank.items():
        assert len(runs) == 2
        first = {run.info.run_id: reports[run.info.run_id][1.0][1] for run in runs}  # val loss at epoch 1
        winner = min(first, key=first.get)
        for run in runs:
            reached = max(reports[run.info.run_id])
            status = run.data.tags["lorasweep.status"]
            if run.info.run_id == winner:
                assert reached == 3.0 and status == "completed", rank
            else:
                assert reached == 1.0 and status == "stopped_early", rank
            assert run.info.status == "FINISHED" and run.data.tags["lorasweep.attempts"] == "1"
    assert "scheduler: asha within each r (grace 1, eta 2, promotion: pause); max 3 epochs" in sweep["out"]
    assert "3 completed, 3 stopped early, 0 failed" in sweep["out"]


def test_no_trial_goes_past_the_first_rung_before_its_rank_mate_reached_it(sweep):
    """Ray's ASHAScheduler lets the first trial at a rung straight through; promotion waits
    until floor(n / 2) >= 1, i.e. until the second trial of the rank has reported there."""
    by_rank = {}
    for run in sweep["trials"]:
        by_rank.setdefault(_rank(run), []).append(sweep["reports"][run.info.run_id])
    for reports in by_rank.values():
        arrivals = sorted(r[1.0][0] for r in reports)
        first_past = min(r[2.0][0] for r in reports if 2.0 in r)
        assert first_past >= arrivals[1]
