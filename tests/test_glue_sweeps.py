"""The classification studies end to end through their command lines: real local Ray, a real
MLflow SQLite store, a tiny RoBERTa pretrained locally and synthetic GLUE / AG News files.

* ``glue_paper.py --preset smoke --task all``: eight sweeps (one per GLUE task), two seeds
  each; every trial in MLflow with its task's metrics; medians printed beside the paper.
* ``glue_rank.py --preset smoke --task cola``: ranks x target groups with ASHA on val MCC.
* ``agnews_budget.py --preset smoke``: one configuration over the parameter budget is never
  launched and is counted; the best trial's predictions reach the parent run.
"""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.integration

GLUE_METRICS = {
    "glue-mnli": {"accuracy_m", "accuracy_mm"}, "glue-sst2": {"accuracy"},
    "glue-mrpc": {"accuracy", "f1"}, "glue-cola": {"mcc", "accuracy"}, "glue-qnli": {"accuracy"},
    "glue-qqp": {"accuracy", "f1"}, "glue-rte": {"accuracy"}, "glue-stsb": {"pearson", "spearman"},
}


def _run(study: str, root, *args: str, timeout: int = 900):
    uri = f"sqlite:///{root / 'mlruns.db'}"
    cmd = [sys.executable, str(REPO / "sweeps" / f"{study}.py"), "--preset", "smoke", "--tracking-uri", uri,
           "--storage", str(root / "ray_results"), *args]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout)
    from mlflow import MlflowClient

    return proc, MlflowClient(tracking_uri=uri)


def _runs(client, experiment):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000)


@pytest.fixture(scope="module")
def glue_paper(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue_paper")
    # Every task, one seed, less data: the pipeline and the record, not the scores (the
    # MiniLM test in test_glue.py checks learning).
    proc, client = _run("glue_paper", root, "--task", "all", "--name", "gp", "--seeds", "1",
                        "--set", "data.train_limit=96", "--set", "data.test_limit=40",
                        "--set", "data.val_limit=40", "--set", "train.epochs=1")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout, _runs(client, "lorasweep-glue_paper")


def test_glue_paper_smoke_runs_every_task_with_its_metrics(glue_paper):
    from trainables.tasks import get_task

    out, runs = glue_paper
    parents = [r for r in runs if r.data.tags.get("lorasweep.kind") == "sweep"]
    assert sorted(p.data.tags["lorasweep.part"] for p in parents) == sorted(
        ["mnli", "sst2", "mrpc", "cola", "qnli", "qqp", "rte", "stsb"])
    trials = [r for r in runs if r.data.tags.get("lorasweep.kind") == "trial"]
    assert len(trials) == 8  # 8 tasks x 1 seed
    for t in trials:
        assert t.data.tags["lorasweep.status"] == "completed"
        task = t.data.params["task"]
        assert GLUE_METRICS[task] <= set(t.data.metrics), (task, sorted(t.data.metrics))
        assert {"val_loss", get_task(task).metric.name} <= set(t.data.metrics)
        assert t.data.params["data.split"] in ("None", "paper")
    seeds = sorted(t.data.params["seed"] for t in trials if t.data.params["task"] == "glue-rte")
    assert seeds == ["0"]
    assert out.count("median over 1 seed:") == 8 and "(paper 86.6)" in out
    assert "8 sweeps (mnli, sst2, mrpc, cola, qnli, qqp, rte, stsb)" in out


def test_glue_rank_smoke_sweeps_rank_and_targets_with_asha(tmp_path):
    proc, client = _run("glue_rank", tmp_path, "--task", "cola", "--name", "gr",
                        "--set", "data.train_limit=96", "--set", "data.val_limit=40",
                        "--set", "data.test_limit=40")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    trials = [r for r in _runs(client, "lorasweep-glue_rank") if r.data.tags.get("lorasweep.kind") == "trial"]
    assert len(trials) == 4
    assert {(t.data.params["adapter.r"], t.data.params["adapter.targets"]) for t in trials} == {
        ("2", "qv"), ("2", "all-linear"), ("16", "qv"), ("16", "all-linear")}
    for t in trials:
        history = client.get_metric_history(t.info.run_id, "val_mcc")
        assert history, "val_mcc is reported at every evaluation (ASHA's metric)"
    counts = {t.data.params["adapter.targets"]: int(t.data.metrics["trainable_params"]) for t in trials
              if t.data.params["adapter.r"] == "16"}
    assert counts["all-linear"] > counts["qv"]
    assert "val MCC" in proc.stdout


def test_agnews_budget_rejects_before_launch_and_logs_best_predictions(tmp_path):
    proc, client = _run("agnews_budget", tmp_path, "--name", "ag", "--set", "data.train_limit=192")
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
