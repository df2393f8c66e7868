"""The classification studies end to end through their command lines: real local Ray, a real
MLflow SQLite store, a tiny RoBERTa pretrained locally and synthetic GLUE / AG News files.

* ``glue_paper.py --preset smoke --task mnli,mrpc,stsb``: three sweeps (matched and
  mismatched test sets, a pair task scored by F1 too, a regression), one per task; every trial
  in MLflow with its task's metrics; medians printed beside the paper. ``--task all``'s eight
  parts are planned by the dry runs of ``test_glue_presets.py``, read by the readers of
  ``test_glue.py``, and declare the metrics checked here; CoLA and RTE also run below.
* ``glue_rank.py --preset smoke --task cola``: ranks x target groups with ASHA on val MCC.
* ``agnews_budget.py --preset smoke``: one configuration over the parameter budget is never
  launched and is counted; the best trial's predictions reach the parent run.
* ``glue_paper.py --preset smoke-warm --task mnli,rte``: MNLI first, then RTE started from the
  best MNLI trial's adapter (and, in a later command, from the earlier MNLI sweep); MNLI
  reported matched and mismatched; each run taken at its best epoch, recorded in MLflow.
"""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch

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


def test_every_glue_task_declares_its_benchmark_metrics():
    """What a sweep records for each of the eight tasks (the runs below check it is recorded)."""
    from trainables.tasks.registry import get_task

    for task, metrics in GLUE_METRICS.items():
        assert {m.name for m in get_task(task).final_metrics} == metrics, task


@pytest.fixture(scope="module")
def glue_paper(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue_paper")
    # Three tasks, one seed, less data: the pipeline and the record, not the scores (the
    # MiniLM test in test_glue.py checks learning).
    proc, client = _run("glue_paper", root, "--task", "mnli,mrpc,stsb", "--name", "gp", "--seeds", "1",
                        "--set", "data.train_limit=96", "--set", "data.test_limit=40",
                        "--set", "data.val_limit=40", "--set", "train.epochs=1")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout, _runs(client, "lorasweep-glue_paper")


def test_glue_paper_smoke_runs_each_task_with_its_metrics(glue_paper):
    from trainables.tasks.registry import get_task

    out, runs = glue_paper
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
    proc, client = _run("agnews_budget", tmp_path, "--name", "ag", "--set", "data.train_limit=192",
                        "--set", "data.val_limit=64", "--set", "data.test_limit=64")
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


# --------------------------------------------------------------------------- the MNLI warm start


def _lora(client, run_id, root):
    from safetensors.torch import load_file

    local = client.download_artifacts(run_id, "adapter/adapter_model.safetensors", str(root / run_id))
    return {k: v for k, v in load_file(local).items() if ".lora_" in k}


def test_mnli_warm_start_chain(tmp_path):
    """The warm start's two commands, run once and checked three ways (one test: its commands
    run once whatever the test runner's distribution)."""
    chain = _warm_chain(tmp_path)
    _check_rte_starts_from_the_best_mnli_trials_adapter(chain)
    _check_mnli_is_reported_matched_and_mismatched_with_the_paper_on_matched(chain)
    _check_each_run_is_recorded_at_its_best_epoch(chain)


def _warm_chain(root):
    """lr 1e-12: a step that small is below float32's resolution for these weights, so every
    trial ends with the adapter it started from (what it was initialised with is readable from
    its final adapter in MLflow), and its validation accuracy never improves after epoch 1
    (keep_best then restores epoch 1 for the final evaluation)."""
    small = ["--set", "data.train_limit=64", "--set", "data.val_limit=40", "--set", "data.test_limit=40",
             "--set", "train.epochs=2", "--set", "train.lr=1e-12"]
    first, client = _run("glue_paper", root, "--preset", "smoke-warm", "--task", "rte,mnli", "--name", "gw",
                         *small)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    later, _ = _run("glue_paper", root, "--preset", "smoke-warm", "--task", "rte", "--name", "gw2", *small)
    assert later.returncode == 0, later.stdout[-4000:] + later.stderr[-4000:]
    runs = _runs(client, "lorasweep-glue_paper")
    parents = {r.info.run_id: r.info.run_name for r in runs if r.data.tags.get("lorasweep.kind") == "sweep"}
    trials = {}
    for r in runs:
        if r.data.tags.get("lorasweep.kind") == "trial":
            trials.setdefault(parents[r.data.tags["mlflow.parentRunId"]], []).append(r)
    return root, client, first.stdout, later.stdout, trials


def _check_rte_starts_from_the_best_mnli_trials_adapter(warm_chain):
    root, client, out, later, trials = warm_chain
    assert sorted(trials) == ["gw-mnli", "gw-rte", "gw2-rte"] and all(len(t) == 2 for t in trials.values())
    assert out.index("-> gw-mnli") < out.index("-> gw-rte")  # MNLI ran first though named second
    mnli = {t.info.run_id: t.data.metrics["val_accuracy"] for t in trials["gw-mnli"]}
    (chosen,) = {t.data.params["adapter.init_from"] for t in trials["gw-rte"] + trials["gw2-rte"]}
    best = chosen.removeprefix("runs:/")
    assert mnli[best] == max(mnli.values())
    assert f"rte: adapter.init_from=best:mnli -> {chosen} (the best completed trial of this command's" in out
    assert f"rte: adapter.init_from=best:mnli -> {chosen} (the best completed trial of the earlier mnli " \
           "sweep gw-mnli" in later
    source = _lora(client, best, root)
    assert len(source) == 6 * 2 * 2  # MiniLM's 6 layers x (query, value) x (A, B)
    for t in trials["gw-rte"] + trials["gw2-rte"]:
        mine = _lora(client, t.info.run_id, root)
        assert mine.keys() == source.keys()
        assert all(torch.allclose(mine[k], source[k], atol=1e-6) for k in source), t.info.run_id
    (other,) = set(mnli) - {best}  # the other seed's adapter: a different initialisation
    assert not all(torch.allclose(o, source[k], atol=1e-6) for k, o in _lora(client, other, root).items())


def _check_mnli_is_reported_matched_and_mismatched_with_the_paper_on_matched(warm_chain):
    _, _, out, _, trials = warm_chain
    for t in trials["gw-mnli"]:
        assert {"accuracy_m", "accuracy_mm", "val_accuracy"} <= set(t.data.metrics)
    assert "Acc_m" in out and "Acc_mm" in out
    assert "reference (LoRA paper (Hu et al. 2021) Table 2, RoBERTa-base): Acc_m 87.5\n" in out
    line = next(ln for ln in out.splitlines() if "median over 2 seeds: Acc_m" in ln)
    assert "(paper 87.5)" in line and "Acc_mm" in line.split("(paper 87.5)")[1]


def _check_each_run_is_recorded_at_its_best_epoch(warm_chain):
    """The final report after keep_best's restore reaches MLflow: its test metrics, and the
    epoch they come from."""
    _, client, _, _, trials = warm_chain
    for t in trials["gw-rte"] + trials["gw-mnli"]:
        m = t.data.metrics
        assert t.data.tags["lorasweep.status"] == "completed"
        assert m["best_epoch"] == 1.0 and m["epoch"] == 2.0
        assert t.data.tags["lorasweep.note"].startswith("keep_best: the last report's val_accuracy was not")
        final = [h.value for h in client.get_metric_history(t.info.run_id, "val_accuracy")]
        assert len(final) == 2 and final[-1] == final[0]
        assert ("accuracy" in m) if t.data.params["task"] == "glue-rte" else ("accuracy_m" in m)

