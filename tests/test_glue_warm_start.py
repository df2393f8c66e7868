"""``glue_paper.py --preset smoke-warm --task mnli,rte`` end to end through its entry point
(``run_study`` in the test process; real local Ray, one for both commands, a real MLflow SQLite
store, MiniLM on synthetic GLUE): MNLI first, then RTE started from the best MNLI trial's
adapter (and, in a later command, from the earlier MNLI sweep); MNLI reported matched and
mismatched; each run taken at its best epoch, recorded in MLflow."""

from __future__ import annotations

import pytest
import torch
from sweep_runs import ONE_AT_A_TIME
from test_glue_sweeps import _run_here, _runs

pytestmark = pytest.mark.integration


def _lora(client, run_id, root):
    from safetensors.torch import load_file

    local = client.download_artifacts(run_id, "adapter/adapter_model.safetensors", str(root / run_id))
    return {k: v for k, v in load_file(local).items() if ".lora_" in k}


def test_mnli_warm_start_chain(tmp_path, one_local_ray):
    """The warm start's two commands, run once and checked three ways (one test: its commands
    run once whatever the test runner's distribution)."""
    chain = _warm_chain(tmp_path)
    _check_rte_starts_from_the_best_mnli_trials_adapter(chain)
    _check_mnli_is_reported_matched_mismatched_and_overall_with_the_paper_on_overall(chain, tmp_path / "dl")
    _check_each_run_is_recorded_at_its_best_epoch(chain)


def _warm_chain(root):
    """lr 1e-12: a step that small is below float32's resolution for these weights, so every
    trial ends with the adapter it started from (what it was initialised with is readable from
    its final adapter in MLflow), and its validation accuracy never improves after epoch 1
    (keep_best then restores epoch 1 for the final evaluation)."""
    small = ["--set", "data.train_limit=64", "--set", "data.val_limit=40", "--set", "data.test_limit=40",
             "--set", "train.epochs=2", "--set", "train.lr=1e-12", *ONE_AT_A_TIME]
    first, client = _run_here("glue_paper", root, "--preset", "smoke-warm", "--task", "rte,mnli", "--name", "gw",
                         *small)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    # The later command with one seed: its one trial starts from the earlier MNLI sweep's best.
    later, _ = _run_here("glue_paper", root, "--preset", "smoke-warm", "--task", "rte", "--name", "gw2",
                         "--seeds", "1", *small)
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
    assert {sweep: len(t) for sweep, t in trials.items()} == {"gw-mnli": 2, "gw-rte": 2, "gw2-rte": 1}
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


def _check_mnli_is_reported_matched_mismatched_and_overall_with_the_paper_on_overall(warm_chain, tmp_path):
    """MNLI's accuracy on each dev set and over both pooled (the paper's overall accuracy),
    the pooled one recomputed here from the two prediction files the trial logged."""
    import csv

    _, client, out, _, trials = warm_chain
    tmp_path.mkdir()
    for t in trials["gw-mnli"]:
        m = t.data.metrics
        assert {"accuracy", "accuracy_m", "accuracy_mm", "val_accuracy"} <= set(m)
        rows = []
        for name in ("m", "mm"):
            path = client.download_artifacts(t.info.run_id, f"outputs/{name}_predictions.csv", str(tmp_path))
            with open(path, newline="") as fh:
                rows += list(csv.DictReader(fh))
        right = sum(r["label"] == r["prediction"] for r in rows)
        assert m["accuracy"] == pytest.approx(100 * right / len(rows), abs=1e-9)
    assert "Acc_m" in out and "Acc_mm" in out
    assert "reference (LoRA paper (Hu et al. 2021) Table 2, RoBERTa-base, targets=qv, r=8): Acc 87.5\n" in out
    line = next(ln for ln in out.splitlines() if "median over 2 seeds: Acc " in ln)
    assert "(paper 87.5)" in line and "Acc_m " in line.split("(paper 87.5)")[1]


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

