"""``agnews_budget.py --preset smoke`` end to end through its entry point (``run_study``, what
the script calls; here in the test process, real local Ray, a real MLflow SQLite store, MiniLM
on synthetic AG News): one configuration over the parameter budget is never launched and is
counted; the best trial's predictions reach the parent run."""

from __future__ import annotations

import csv

import pytest
from sweep_runs import ONE_AT_A_TIME
from test_glue_sweeps import _run_here, _runs

pytestmark = pytest.mark.integration


def test_agnews_budget_rejects_before_launch_and_logs_best_predictions(tmp_path, one_local_ray):
    # 64 training examples in batches of 16 (4 steps an epoch), 32 to validate and to test;
    # the two trials one after the other in one trial process.
    proc, client = _run_here("agnews_budget", tmp_path, "--name", "ag", "--set", "data.train_limit=64",
                             "--set", "train.batch_size=16", "--set", "data.val_limit=32",
                             "--set", "data.test_limit=32", *ONE_AT_A_TIME)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert '1 configuration(s) over it, not launched: r+targets=[16, "qv"] (148,996)' in proc.stdout
    assert "1 rejected over the parameter budget" in proc.stdout
    runs = _runs(client, "lorasweep-agnews_budget")
    parent = next(r for r in runs if r.data.tags.get("lorasweep.kind") == "sweep")
    trials = [r for r in runs if r.data.tags.get("lorasweep.kind") == "trial"]
    assert len(trials) == 2 and parent.data.metrics["trials_rejected_over_budget"] == 1
    assert all(int(t.data.metrics["trainable_params"]) <= 100000 for t in trials)
    assert all(len(client.get_metric_history(t.info.run_id, "val_accuracy")) >= 2 for t in trials)
    local = client.download_artifacts(parent.info.run_id, "best_predictions.csv", str(tmp_path))
    with open(local) as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["id", "label"] and len(rows) > 1
    assert {r[1] for r in rows[1:]} <= {"0", "1", "2", "3"}  # the competition's class ids
