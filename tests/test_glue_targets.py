"""STS-B's regression targets standardised for training (``data.standardize_targets``) and each
GLUE run taken at its best validation epoch (``train.keep_best``): hand arithmetic, a closed-form
least-squares check through the task's own evaluation, and the real MiniLM encoder on synthetic
GLUE data."""

from __future__ import annotations

import csv
import json
import math
import statistics
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from trainables.tasks.base import TargetScale
from trainables.tasks.classification import EncodedExamples, pad_collate
from trainables.tasks.registry import get_task


def _minilm_cfg(task: str, *, data=None, train=None, adapter=None, generate=False):
    from trainables.config import TrialConfig
    from trainables.offline.registry import resolve_smoke
    from trainables.schema import from_dict

    return from_dict(TrialConfig, {
        "task": task, "seed": 0, "model": {"name_or_path": resolve_smoke("minilm", kind="model")},
        "data": {"source": resolve_smoke("smoke:glue", kind="data"), "max_length": 64, **(data or {})},
        "adapter": {"r": 8, "alpha": 16, "targets": "qv", "dropout": 0.0, **(adapter or {})},
        "train": {"batch_size": 16, "epochs": 1, "lr": 5e-3, "warmup_ratio": 0.06, "weight_decay": 0.1,
                  "label_smoothing": 0.0, "log_every_steps": 5, **(train or {})},
        "eval": {"generate": generate}})


def _loader(dataset):
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=64, collate_fn=pad_collate(0))


def _validate(task, model, dataset):
    from trainables.session import Session

    return task.validate(model, _loader(dataset), device=torch.device("cpu"), session=Session(),
                         precision="fp32")


# --------------------------------------------------------------------------- by hand


def test_target_scale_by_hand():
    # Labels 0..5: mean 2.5, population variance 2 * (2.5^2 + 1.5^2 + 0.5^2) / 6 = 35/12.
    scale = TargetScale.of([0, 1, 2, 3, 4, 5])
    assert scale.mean == 2.5 and scale.std == pytest.approx(math.sqrt(35 / 12))
    assert scale.standardize(5.0) == pytest.approx(2.5 / math.sqrt(35 / 12))
    y = np.array([0.0, 3.7, 5.0])
    assert scale.restore(scale.standardize(y)) == pytest.approx(y)
    assert TargetScale.of([2.0, 2.0]) == TargetScale(2.0, 1.0)  # constant labels: std 1, not 0


class Lookup(torch.nn.Module):
    """A model whose output for an example is a fixed number per first token id."""

    def __init__(self, outputs: dict[int, float]):
        super().__init__()
        table = torch.zeros(max(outputs) + 1, 1)
        for token, value in outputs.items():
            table[token, 0] = value
        self.table = torch.nn.Embedding.from_pretrained(table)

    def forward(self, input_ids, attention_mask):
        return SimpleNamespace(logits=self.table(input_ids[:, 0]))


def test_outputs_are_mapped_back_before_the_loss_and_the_predictions():
    """Labels 1, 2.5, 4 with mean 2.5 and std 1.5: outputs z = -1, 0, 1 are exactly the labels
    once mapped back (loss 0); z = -1, 0, 0 misses the last by 1.5 (loss 1.5^2 / 3 = 0.75).
    Without a scale the outputs are taken as they are: ((-1-1)^2 + 2.5^2 + (1-4)^2) / 3."""
    task = get_task("glue-stsb")
    data = EncodedExamples(np.array([5, 6, 7]), np.array([0, 1, 2, 3]), np.array([1.0, 2.5, 4.0], np.float32))
    data.target_scale = TargetScale(2.5, 1.5)
    exact = _validate(task, Lookup({5: -1.0, 6: 0.0, 7: 1.0}), data)
    assert exact["val_loss"] == pytest.approx(0.0) and exact["val_pearson"] == pytest.approx(100.0)
    assert _validate(task, Lookup({5: -1.0, 6: 0.0, 7: 0.0}), data)["val_loss"] == pytest.approx(0.75)
    _, preds, labels, _ = task._predict(Lookup({5: -1.0, 6: 0.0, 7: 0.0}), _loader(data), torch.device("cpu"))
    assert preds == pytest.approx([1.0, 2.5, 2.5]) and labels == pytest.approx([1.0, 2.5, 4.0])
    data.target_scale = None
    raw = _validate(task, Lookup({5: -1.0, 6: 0.0, 7: 1.0}), data)
    assert raw["val_loss"] == pytest.approx((4 + 6.25 + 9) / 3)


# --------------------------------------------------------------------------- the prepared data


def _stsb_scores(source: str) -> list[float]:
    with open(f"{source}/STS-B/train.tsv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    col = rows[0].index("score")
    return [float(r[col]) for r in rows[1:] if r]


def _prepared(cfg):
    task = get_task(cfg.task)
    return task.load_prepared(task.prepare(cfg, progress=False), cfg)


def test_only_the_training_labels_are_standardised_with_their_own_mean_and_std():
    cfg = _minilm_cfg("glue-stsb")
    scores = _stsb_scores(cfg.data.source)  # the whole train.tsv: split 'paper', no limit
    mean, std = statistics.fmean(scores), statistics.pstdev(scores)
    data = _prepared(cfg)
    assert data.params == {"data.target_mean": pytest.approx(mean), "data.target_std": pytest.approx(std)}
    assert np.asarray(data.train.labels) == pytest.approx((np.array(scores) - mean) / std, abs=1e-5)
    assert data.train.target_scale is None
    for evaluated in (data.val, *data.test.values()):  # labels stay 0-5; outputs get mapped back
        assert evaluated.target_scale == TargetScale(pytest.approx(mean), pytest.approx(std))
        assert 0.0 <= float(np.min(evaluated.labels)) and float(np.max(evaluated.labels)) <= 5.0

    raw = _prepared(_minilm_cfg("glue-stsb", data={"standardize_targets": False}))
    assert raw.params == {} and raw.val.target_scale is None
    assert np.asarray(raw.train.labels) == pytest.approx(scores)
    rte = _prepared(_minilm_cfg("glue-rte"))  # classification: nothing to standardise
    assert rte.params == {} and rte.val.target_scale is None


class BagOfTokens(torch.nn.Module):
    """Linear regression on hashed token counts (32 buckets) plus a bias."""

    BUCKETS = 32

    def __init__(self, weights: np.ndarray):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(weights, dtype=torch.float64))

    @classmethod
    def features(cls, ids: np.ndarray) -> np.ndarray:
        return np.append(np.bincount(np.asarray(ids) % cls.BUCKETS, minlength=cls.BUCKETS), 1.0)

    def forward(self, input_ids, attention_mask):
        counts = (torch.nn.functional.one_hot(input_ids % self.BUCKETS, self.BUCKETS)
                  * attention_mask[..., None]).sum(1)
        x = torch.cat([counts, torch.ones(len(counts), 1)], 1).double()
        return SimpleNamespace(logits=(x @ self.w)[:, None].float())

    @classmethod
    def fitted(cls, train: EncodedExamples) -> BagOfTokens:
        """The least-squares fit to the labels the training set holds (where gradient
        descent on the MSE converges)."""
        x = np.stack([cls.features(train[i][0]) for i in range(len(train))])
        w, *_ = np.linalg.lstsq(x, np.asarray(train.labels, np.float64), rcond=None)
        return cls(w)


def test_standardised_and_raw_targets_converge_to_the_same_metrics():
    """Least squares is equivariant under an affine map of the targets: fitted to z = (y - m)/s
    its outputs are (fit to y - m)/s, so once the task maps them back, the validation loss and
    every metric equal those of the fit to the raw labels."""
    task = get_task("glue-stsb")
    std_data = _prepared(_minilm_cfg("glue-stsb"))
    raw_data = _prepared(_minilm_cfg("glue-stsb", data={"standardize_targets": False}))
    on_std = _validate(task, BagOfTokens.fitted(std_data.train), std_data.val)
    on_raw = _validate(task, BagOfTokens.fitted(raw_data.train), raw_data.val)
    assert on_std == {k: pytest.approx(v, rel=1e-4) for k, v in on_raw.items()}
    # Not a constant: the fit's predictions vary with the input (its Pearson is defined).
    assert math.isfinite(on_raw["val_pearson"]) and on_raw["val_loss"] > 0


# --------------------------------------------------------------------------- MiniLM


def test_standardised_targets_are_ahead_after_a_short_budget(torch_one_thread, tmp_path):
    """One epoch (20 steps) of LoRA on MiniLM: a fresh head trained on the raw 0-5 scores is
    still growing towards their scale; on standardised scores the adapter is already learning.
    The validation loss stays in the task's units: it is the mean squared error of the
    predictions the final evaluation writes (validation and test are both the dev set)."""
    from trainables.checkpointing import OUTPUTS_DIR
    from trainables.loop import run_loop
    from trainables.session import LocalSession

    last = {}
    for standardize in (False, True):
        cfg = _minilm_cfg("glue-stsb", data={"train_limit": 320, "standardize_targets": standardize},
                          generate=True)
        session = LocalSession(tmp_path / str(standardize))
        last[standardize] = run_loop(cfg, session)
        with open(session.checkpoints[-1] / OUTPUTS_DIR / "test_predictions.csv") as fh:
            rows = [(float(r["label"]), float(r["prediction"])) for r in csv.DictReader(fh)]
        assert last[standardize]["val_loss"] == pytest.approx(statistics.fmean((y - p) ** 2 for y, p in rows),
                                                             rel=1e-4)
    raw, std = last[False], last[True]
    assert std["val_pearson"] > raw["val_pearson"] + 20, (raw["val_pearson"], std["val_pearson"])
    assert std["val_loss"] < raw["val_loss"]
    assert std["trial_params"]["data.target_std"] > 0 and raw["trial_params"] == {}


# --------------------------------------------------------------------------- the best epoch


def test_keep_best_evaluates_the_best_epochs_weights_without_stopping(torch_one_thread, tmp_path):
    """lr 1e-6 moves the weights but not RTE's validation accuracy: epoch 2 is no improvement
    (equal is not better), so the trial trains both epochs and its final evaluation and saved
    adapter are epoch 1's; the record says so (``best_epoch`` 1)."""
    from safetensors.torch import load_file

    from trainables.checkpointing import ADAPTER_DIR
    from trainables.loop import run_loop
    from trainables.session import LocalSession

    def adapter(checkpoint):
        return load_file(str(checkpoint / ADAPTER_DIR / "adapter_model.safetensors"))

    runs = {}
    for keep_best in (False, True):
        cfg = _minilm_cfg("glue-rte", data={"train_limit": 64}, generate=True,
                          train={"epochs": 2, "lr": 1e-6, "keep_best": keep_best})
        session = LocalSession(tmp_path / str(keep_best))
        runs[keep_best] = (run_loop(cfg, session), session)
    last, session = runs[True]
    first = session.reports[0]
    assert [r["epoch"] for r in session.reports] == [1.0, 2.0] and last["is_final"]
    assert last["val_accuracy"] == first["val_accuracy"] and last["accuracy"] == first["val_accuracy"]
    assert (last["best_epoch"], last["best_step"]) == (1.0, first["step"]) and "stopped_early_at" not in last
    assert last["final_note"].startswith("keep_best: the last report's val_accuracy was not the best")
    best, final = adapter(session.checkpoints[0]), adapter(session.checkpoints[-1])
    assert all(torch.equal(best[k], final[k]) for k in best)
    plain, plain_session = runs[False]
    assert "best_epoch" not in plain and "final_note" not in plain and "last_val_loss" not in plain
    moved = adapter(plain_session.checkpoints[-1])
    assert any(not torch.equal(best[k], moved[k]) for k in best)  # epoch 2 did change the weights
    # Epoch 2's own validation stays in the record (the run without keep_best trained the same
    # weights and ended on them); the saved adapter says which step its weights are.
    assert last["last_val_loss"] == pytest.approx(plain["val_loss"], abs=1e-6)
    assert last["last_val_accuracy"] == plain["val_accuracy"]
    assert last["val_loss"] == pytest.approx(first["val_loss"], abs=1e-6)  # the restored weights'
    assert abs(first["val_loss"] - plain["val_loss"]) > 1e-9  # not epoch 2's
    meta = [json.loads((c / ADAPTER_DIR / "lorasweep_adapter.json").read_text())["step"]
            for c in (session.checkpoints[-1], plain_session.checkpoints[-1])]
    assert meta == [first["step"], plain["step"]] and first["step"] < plain["step"]
