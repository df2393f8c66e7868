"""The smoke sweep end to end: real local Ray, a real MLflow SQLite store, real training.

One sweep (six trials, ASHA) is run through the command line once per module, with hub and
tracking credentials planted in its environment, and inspected by the tests below (the last
looks for the credentials in everything it recorded).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, smoke_assets):
    from sweep_runs import smoke_sweep

    return smoke_sweep(tmp_path_factory.mktemp("sweep"))


def _children(sweep):
    return [r for r in sweep["runs"] if r.data.tags.get("lorasweep.kind") == "trial"]


def test_one_parent_and_one_nested_child_per_trial(sweep):
    parents = [r for r in sweep["runs"] if r.data.tags.get("lorasweep.kind") == "sweep"]
    assert len(parents) == 1
    parent = parents[0]
    children = _children(sweep)
    assert len(children) == 6 == len(sweep["runs"]) - 1
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert len({c.data.tags["lorasweep.trial_id"] for c in children}) == 6
    assert {c.data.params["train.batching"] for c in children} == {"grouped"}  # the task's default, recorded
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["lorasweep.study"] == "rank_e2e" and parent.data.tags["lorasweep.preset"] == "smoke"
    assert parent.data.tags["git_sha"] and parent.data.tags["versions.peft"].startswith("0.21")
    assert parent.data.params["search.algorithm"] == "grid" and parent.data.params["scheduler.name"] == "asha"
    artifacts = {a.path for a in sweep["client"].list_artifacts(parent.info.run_id)}
    assert {"results.csv", "search_space.yaml", "sweep_config.json"} <= artifacts
    # Every run's artifacts beside the SQLite store, not in the folder the sweep ran from.
    beside = sweep["root"] / "store" / "mlruns" / parent.info.experiment_id
    assert {Path(r.info.artifact_uri.removeprefix("file://")).parent.parent for r in sweep["runs"]} == {beside}
    assert (beside / parent.info.run_id / "artifacts" / "results.csv").is_file()
    assert not (sweep["root"] / "mlruns").exists()


def test_asha_stopped_some_trials_and_the_rest_completed(sweep):
    status = [c.data.tags["lorasweep.status"] for c in _children(sweep)]
    assert status.count("stopped_early") >= 1
    assert status.count("completed") >= 1
    assert set(status) <= {"completed", "stopped_early"}
    assert all(c.info.status == "FINISHED" for c in _children(sweep))


def test_each_child_records_its_hyperparameters_and_costs(sweep):
    client = sweep["client"]
    for child in _children(sweep):
        p, m = child.data.params, child.data.metrics
        assert p["adapter.targets"] == "qv" and p["adapter.target_modules"] == "c_attn.q,c_attn.v"
        r, alpha = int(p["adapter.r"]), float(p["adapter.lora_alpha"])
        assert r in (1, 4, 16) and alpha == 32.0
        assert float(p["train.lr"]) in (2e-3, 2e-5) and float(p["adapter.dropout"]) == 0.1
        assert int(p["seed"]) > 0
        # qv on the tiny GPT-2 (d=64, 2 layers): 2 x r x (64 + 64) x 2
        assert m["trainable_params"] == 2 * r * 128 * 2 and 0 < m["trainable_pct"] < 100
        for key in ("val_loss", "train_loss", "lr", "epoch", "samples_per_s", "peak_mem_mb", "wall_s"):
            assert math.isfinite(m[key]), key
        val = client.get_metric_history(child.info.run_id, "val_loss")
        train = client.get_metric_history(child.info.run_id, "train_loss")
        lr = client.get_metric_history(child.info.run_id, "lr")
        assert len(val) == int(m["epoch"])  # one validation point per epoch reached
        assert len(train) > len(val) and len(lr) == len(train)  # per log step, logged in batches
        assert [h.step for h in train] == sorted(h.step for h in train)
        assert "trial_config.json" in {a.path for a in client.list_artifacts(child.info.run_id)}


def test_completed_trials_have_generation_metrics_and_artifacts(sweep):
    from trainables.metrics.e2e import java_available

    client = sweep["client"]
    done = [c for c in _children(sweep) if c.data.tags["lorasweep.status"] == "completed"]
    for child in done:
        m = child.data.metrics
        assert m["epoch"] == 3.0
        for key in ("BLEU", "NIST", "ROUGE_L", "CIDEr"):
            assert math.isfinite(m[key]) and m[key] > 0, key
        assert ("METEOR" in m) == java_available()
        paths = {a.path for a in client.list_artifacts(child.info.run_id, "outputs")}
        assert "outputs/predictions.txt" in paths
        adapter = {a.path for a in client.list_artifacts(child.info.run_id, "adapter")}
        assert "adapter/adapter_model.safetensors" in adapter
    stopped = [c for c in _children(sweep) if c.data.tags["lorasweep.status"] == "stopped_early"]
    for child in stopped:
        assert "BLEU" not in child.data.metrics and child.data.metrics["epoch"] < 3.0


def test_every_rank_runs_its_best_learning_rate_to_the_end(sweep):
    """ASHA compares trials within a rank (the space's scientific setting), so every rank has
    a completed trial with the five E2E metrics, whatever the other ranks' losses."""
    parent = next(r for r in sweep["runs"] if r.data.tags.get("lorasweep.kind") == "sweep")
    assert parent.data.tags["lorasweep.scientific"] == "adapter.r"
    assert parent.data.tags["lorasweep.nuisance"] == "train.lr"
    assert parent.data.tags["lorasweep.groups"] == "adapter.r"
    done = {}
    for child in _children(sweep):
        if child.data.tags["lorasweep.status"] == "completed":
            done.setdefault(int(child.data.params["adapter.r"]), []).append(child.data.metrics)
    assert sorted(done) == [1, 4, 16]
    for metrics in done.values():
        assert any(all(k in m for k in ("BLEU", "NIST", "ROUGE_L", "CIDEr")) for m in metrics)


def test_summary_table_and_results_csv(sweep):
    out = sweep["out"]
    assert "% trainable" in out and "BLEU" in out and "ROUGE-L" in out and "CIDEr" in out
    assert "scheduler: asha within each r (grace 1, eta 2)" in out
    # One row per rank, each with its best completed trial's BLEU.
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:3] == ["r", "lr", "trials"])
    end = next(i for i, line in enumerate(lines) if line.startswith("  one row per r:"))
    body = [line.split() for line in lines[head + 2:end]]
    assert [row[0] for row in body] == ["1", "4", "16"]
    assert all(float(row[-5]) > 0 for row in body)  # BLEU (then NIST, METEOR or -, ROUGE-L, CIDEr)
    assert "reference (" not in out  # the smoke model stands in for GPT-2 S; Table 3 is GPT-2 M
    csv_path = sweep["root"] / "ray_results" / sweep["name"] / "results.csv"
    assert f"results CSV: {csv_path}" in out
    rows = list(csv.DictReader(open(csv_path)))
    assert len(rows) == 6 and {"r", "lr", "status", "val_loss", "BLEU", "mlflow_run_id"} <= set(rows[0])
    # Tune's per-trial result files, without TensorBoard event files (MLflow has the metrics).
    trial_dirs = [p for p in csv_path.parent.iterdir() if p.is_dir() and p.name.startswith("tune_trial")]
    assert len(trial_dirs) == 6
    assert all((d / "progress.csv").is_file() and (d / "result.json").is_file() for d in trial_dirs)
    assert not [p for d in trial_dirs for p in d.iterdir() if p.name.startswith("events.out.tfevents")]


def test_the_output_holds_no_traceback(sweep):
    """Trial processes Ray ends with SIGTERM print Ray's SystemExit traceback into their logs;
    the driver prints none of it (whether one comes depends on timing: it often does not)."""
    assert "Traceback" not in sweep["out"] + sweep["err"], sweep["out"][-3000:] + sweep["err"][-3000:]


def test_a_logged_adapter_reloads_and_reproduces_its_val_loss(sweep, smoke_assets, tmp_path):
    import mlflow
    import torch
    from peft import PeftModel
    from torch.utils.data import DataLoader

    from trainables.adapters import needs_qkv_split
    from trainables.config import TrialConfig
    from trainables.schema import from_dict
    from trainables.session import Session
    from trainables.tasks.base import evaluate_loss
    from trainables.tasks.registry import get_task

    torch.set_num_threads(1)
    done = [c for c in _children(sweep) if c.data.tags["lorasweep.status"] == "completed"]
    best = min(done, key=lambda c: c.data.metrics["val_loss"])
    local = mlflow.artifacts.download_artifacts(run_id=best.info.run_id, artifact_path="",
                                                dst_path=str(tmp_path), tracking_uri=sweep["uri"])
    cfg = from_dict(TrialConfig, json.loads((Path(local) / "trial_config.json").read_text()))
    task = get_task("e2e")
    base, tokenizer = task.load_model(cfg)
    # adapter/ is peft's standard layout (the qv views fused into c_attn): plain peft on the
    # unmodified base; the trial's own layout (the views) is trial_adapter/.
    assert needs_qkv_split(Path(local) / "trial_adapter") and not needs_qkv_split(Path(local) / "adapter")
    model = PeftModel.from_pretrained(base, str(Path(local) / "adapter"))
    data = task.load_prepared(task.prepare(cfg, progress=False), cfg)
    loader = DataLoader(data.val, batch_size=cfg.train.eval_batch_size, collate_fn=task.collate(tokenizer))
    val = evaluate_loss(task, model, loader, torch.device("cpu"), Session(), "fp32")
    assert val == pytest.approx(best.data.metrics["val_loss"], rel=1e-5)


def test_planted_credentials_are_recorded_nowhere(sweep, tmp_path):
    """Secrets stay in the environment: the hub and tracking credentials planted in the
    sweep's environment are in no MLflow record (params, tags, metric names, run names,
    artifacts, the SQLite file itself), in no file of Tune storage, nor in what the sweep
    printed."""
    planted, mark = sweep["planted"], sweep["mark"]
    control = sweep["name"]  # the sweep's name, random: recorded, so the scan must find it
    root, client = sweep["root"], sweep["client"]

    def leaks(text: str | bytes) -> list[str]:
        data = text.encode() if isinstance(text, str) else text
        return [k for k, v in planted.items() if v.encode() in data or mark.encode() in data]

    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 7  # the sweep's parent run and its six trials
    downloads = tmp_path / "downloaded"
    for run in runs:
        fields = {"name": run.info.run_name, **{f"param {k}": v for k, v in run.data.params.items()},
                  **{f"tag {k}": v for k, v in run.data.tags.items()},
                  **{f"metric {k}": k for k in run.data.metrics}}
        for where, value in fields.items():
            assert not leaks(f"{where}={value}"), (run.info.run_id, where)
        assert client.list_artifacts(run.info.run_id)
        client.download_artifacts(run.info.run_id, "", str(downloads / run.info.run_id))
    storage = root / "ray_results"
    files = [p for d in (root, downloads) for p in d.rglob("*") if p.is_file()]
    # The SQLite store, every artifact (downloaded and in mlruns/ beside the store), Tune
    # storage, results CSV.
    store = root / "store"
    assert any(p.name == "mlruns.db" for p in files) and any(storage in p.parents for p in files)
    assert any(downloads in p.parents for p in files) and any(store / "mlruns" in p.parents for p in files)
    found = {str(p): leaks(p.read_bytes()) for p in files}
    for where in (store / "mlruns.db", storage, downloads):  # the scan reads what is recorded
        assert any(control.encode() in p.read_bytes() for p in files if p == where or where in p.parents), where
    assert not {p: k for p, k in found.items() if k}
    assert not leaks(sweep["out"]) and not leaks(sweep["err"])
