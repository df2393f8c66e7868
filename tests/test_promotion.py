"""ASHA with promotions (``scheduler.promotion: pause``, ``sweeps/promotion.py``) in a real sweep.

The smoke rank study (six trials, three epochs, rungs at epochs 1 and 2, reduction factor 2),
run through the command line with real local Ray and a real MLflow SQLite store. What makes
this ASHA and not Ray's rule is checked on the MLflow record: no trial trains past a rung
before two trials have reached it, paused trials resume in the same MLflow run, and the best
trial at each rung is promoted.
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


def test_every_trial_reaches_the_first_rung_and_the_grid_is_halved(sweep):
    reports = sweep["reports"]
    assert len(sweep["trials"]) == 6
    reached = sorted(max(r) for r in reports.values())
    assert all(1.0 in r for r in reports.values())
    # At least floor(6/2) = 3 go on from rung 1 and floor(n/2) from rung 2. (More may: a trial
    # promoted while in the top floor(n/2) stays promoted as n grows, as in Li et al.)
    assert sum(e >= 2.0 for e in reached) >= 3 and reached.count(3.0) >= 1
    assert sum(reached) < 18
    for run in sweep["trials"]:
        status = run.data.tags["lorasweep.status"]
        assert status == ("completed" if max(reports[run.info.run_id]) == 3.0 else "stopped_early")
        assert run.info.status == "FINISHED" and run.data.tags["lorasweep.attempts"] == "1"
    assert "scheduler: asha (promotion: pause), max 3 epochs" in sweep["out"]
    n_done = reached.count(3.0)
    assert f"{n_done} completed, {6 - n_done} stopped early by ASHA, 0 failed" in sweep["out"]


def test_no_trial_goes_past_a_rung_before_two_trials_reached_it(sweep):
    """Ray's ASHAScheduler lets the first trial at a rung straight through; promotion waits
    until floor(n / 2) >= 1, i.e. until a second trial has reported there."""
    reports = sweep["reports"].values()
    for rung in (1.0, 2.0):
        arrivals = sorted(r[rung][0] for r in reports if rung in r)
        first_past = min(r[rung + 1][0] for r in reports if rung + 1 in r)
        assert len(arrivals) >= 2 and first_past >= arrivals[1]


def test_the_best_trial_at_each_rung_is_promoted(sweep):
    reports = list(sweep["reports"].values())
    for rung in (1.0, 2.0):
        at_rung = [r for r in reports if rung in r]
        best = min(at_rung, key=lambda r: r[rung][1])
        assert rung + 1 in best
