"""The classification studies end to end through their entry point (``run_study``, what
``sweeps/<study>.py`` calls; here in the test process, on one local Ray for the module): real
local Ray, a real MLflow SQLite store, a tiny RoBERTa pretrained locally and synthetic GLUE /
AG News files.

* ``glue_paper.py --preset smoke --task mnli,mrpc,stsb``: three sweeps (matched and
  mismatched test sets, a pair task scored by F1 too, a regression), one per task; every trial
  in MLflow with its task's metrics; medians printed beside the paper. ``--task all``'s eight
  parts are planned by the dry runs of ``test_glue_presets.py``, read by the readers of
  ``test_glue.py``, and declare the metrics checked here; CoLA runs below, RTE in
  ``test_glue_warm_start.py``.
* ``glue_rank.py --preset smoke --task cola``: ranks x target groups with ASHA on val MCC.

``agnews_budget.py`` runs in ``test_agnews_budget.py``, the MNLI warm start in
``test_glue_warm_start.py``.
"""

from __future__ import annotations

import csv
import subprocess

import pytest

from sweep_runs import ONE_AT_A_TIME, run_study_here

pytestmark = pytest.mark.integration

GLUE_METRICS = {
    "glue-mnli": {"accuracy", "accuracy_m", "accuracy_mm"}, "glue-sst2": {"accuracy"},
    "glue-mrpc": {"accuracy", "f1"}, "glue-cola": {"mcc", "accuracy"}, "glue-qnli": {"accuracy"},
    "glue-qqp": {"accuracy", "f1"}, "glue-rte": {"accuracy"}, "glue-stsb": {"pearson", "spearman"},
}


def _smoke_argv(root, *args: str) -> tuple[str, list[str]]:
    """The smoke sweep's store URI and arguments, recording into ``root``."""
    uri = f"sqlite:///{root / 'mlruns.db'}"
    return uri, ["--preset", "smoke", "--tracking-uri", uri, "--storage", str(root / "ray_results"), *args]


def _run_here(study: str, root, *args: str):
    """The smoke sweep of ``sweeps/<study>.py *args``, through the study's entry point
    (``run_study``) in this process, inside ``sweep_runs.local_ray`` (the ``one_local_ray``
    fixture): a completed process (its exit code and standard output) and the MLflow client."""
    from mlflow import MlflowClient

    uri, argv = _smoke_argv(root, *args)
    code, out = run_study_here(study, argv, cwd=root)
    return subprocess.CompletedProcess(study, code, out, ""), MlflowClient(tracking_uri=uri)


def _runs(client, experiment):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000)


def test_every_glue_task_declares_its_benchmark_metrics():
    """What a sweep records for each of the eight tasks (the runs below check it is recorded)."""
    from trainables.tasks.registry import get_task

    for task, metrics in GLUE_METRICS.items():
        assert {m.name for m in get_task(task).final_metrics} == metrics, task


@pytest.fixture(scope="module")
def glue_paper(tmp_path_factory, one_local_ray):
    root = tmp_path_factory.mktemp("glue_paper")
    # Three tasks, one seed, less data: the pipeline and the record, not the scores (the
    # MiniLM test in test_glue.py checks learning).
    proc, client = _run_here("glue_paper", root, "--task", "mnli,mrpc,stsb", "--name", "gp", "--seeds", "1", *ONE_AT_A_TIME,
                        "--set", "data.train_limit=96", "--set", "data.test_limit=40",
                        "--set", "data.val_limit=40", "--set", "train.epochs=1")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout, _runs(client, "lorasweep-glue_paper"), root


def test_glue_paper_smoke_runs_each_task_with_its_metrics(glue_paper):
    from trainables.tasks.registry import get_task

    out, runs, root = glue_paper
    parents = [r for r in runs if r.data.tags.get("lorasweep.kind") == "sweep"]
    assert sorted(p.data.tags["lorasweep.part"] for p in parents) == ["mnli", "mrpc", "stsb"]
    trials = [r for r in runs if r.data.tags.get("lorasweep.kind") == "trial"]
    assert len(trials) == 3  # 3 tasks x 1 seed
    for t in trials:
        assert t.data.tags["lorasweep.status"] == "completed"
        task = t.data.params["task"]
        assert GLUE_METRICS[task] <= set(t.data.metrics), (task, sorted(t.data.metrics))
        assert {"val_loss", get_task(task).metric.name} <= set(t.data.metrics)
        assert t.data.params["data.split"] in ("None", "paper")
    seeds = sorted(t.data.params["seed"] for t in trials if t.data.params["task"] == "glue-mrpc")
    assert seeds == ["0"]
    # STS-B trained on standardised scores (the smoke preset): the mean and std it used, with it.
    stsb = next(t.data.params for t in trials if t.data.params["task"] == "glue-stsb")
    assert stsb["data.standardize_targets"] == "True"
    assert 0 < float(stsb["data.target_mean"]) < 5 and float(stsb["data.target_std"]) > 0
    assert out.count("median over 1 seed:") == 3 and "(paper 89.7)" in out  # MRPC, Table 2
    assert "3 sweeps (mnli, mrpc, stsb)" in out
    # keep_best (the preset's): the results CSV says which epoch the final metrics are of.
    for part in ("mnli", "mrpc", "stsb"):
        with open(next(root.glob(f"ray_results/gp-{part}/results.csv"))) as fh:
            (row,) = list(csv.DictReader(fh))
        trial = next(t for t in trials if t.data.tags["lorasweep.trial_id"] == row["trial_id"])
        assert float(row["best_epoch"]) == trial.data.metrics["best_epoch"] == 1.0, row


def test_glue_rank_smoke_sweeps_rank_and_targets_with_asha(tmp_path, one_local_ray):
    proc, client = _run_here("glue_rank", tmp_path, "--task", "cola", "--name", "gr", *ONE_AT_A_TIME,
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
        # keep_best: a final report on restored weights keeps its last report's own values.
        restored = "best_step" in t.data.metrics and t.data.metrics["best_step"] < max(m.step for m in history)
        assert restored == ("last_val_mcc" in t.data.metrics) == ("last_val_loss" in t.data.metrics)
    counts = {t.data.params["adapter.targets"]: int(t.data.metrics["trainable_params"]) for t in trials
              if t.data.params["adapter.r"] == "16"}
    assert counts["all-linear"] > counts["qv"]
    assert "val MCC" in proc.stdout
