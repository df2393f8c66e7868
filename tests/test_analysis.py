"""analysis/: sweeps read back from a real MLflow store, checked against the values logged.

The store is built once per module through the real MLflow API in the layout that
``trainables.mlflow_record`` writes (parent run per sweep, child run per trial, the same
tags, params from a real ``TrialConfig``, metrics at the same steps), with known values:

- ``rank_e2e-A``: gpt2, ranks 1, 4, 16 x seeds 0, 1, grid + ASHA (grace 1, reduction 2,
  3 epochs); (r=1, seed 1) stopped at epoch 1 and (r=4, seed 0) at epoch 2;
- ``rank_e2e-B``: gpt2-medium, the same grid, FIFO, all completed;
- ``lr_optuna-C`` (its own experiment): Optuna over r (choice), lr (loguniform) and dropout
  (uniform); the loss falls with lr and the best trial has lr = 9.8e-4, at the top of
  ``loguniform[1e-05, 0.001]``.
"""

from __future__ import annotations

import math
import random
import re
import statistics
import subprocess
import sys

import pytest

from conftest import REPO

RANKS = (1, 4, 16)
SEEDS = (0, 1)
EPOCH_STEPS = 100  # optimizer steps per epoch: reports at steps 100, 200, 300
EXP_RANK, EXP_OPTUNA, EXP_EMPTY = "lorasweep-rank_e2e", "lorasweep-lr_optuna", "empty"

# Sweep A (gpt2): val loss at each report; a shorter list = stopped early by ASHA.
VAL_A = {(1, 0): [2.00, 1.80, 1.70], (1, 1): [2.10],
         (4, 0): [1.90, 1.70], (4, 1): [1.85, 1.60, 1.50],
         (16, 0): [1.95, 1.75, 1.55], (16, 1): [1.97, 1.72, 1.58]}
BLEU_A = {(1, 0): 60.0, (4, 1): 66.0, (16, 0): 68.0, (16, 1): 69.0}
# Sweep B (gpt2-medium): all completed.
VAL_B = {(r, s): [x + 0.2, x + 0.1, x] for r in RANKS for s in SEEDS
         for x in [round(1.4 - 0.05 * math.log2(r) + 0.02 * s, 4)]}
BLEU_B = {(r, s): 68.0 + math.log2(r) + 0.5 * s for r in RANKS for s in SEEDS}
PCT = {"gpt2": 0.0737, "gpt2-medium": 0.0369}  # % trainable per unit of rank
SIZE = {"gpt2": 124_000_000, "gpt2-medium": 355_000_000}


def finals(bleu: float) -> dict[str, float]:
    return {"BLEU": bleu, "NIST": bleu / 10, "METEOR": bleu * 0.6, "ROUGE_L": bleu + 2, "CIDEr": bleu / 30}


# --------------------------------------------------------------------------- the store


def _parent(client, exp_id, name, *, study, model, algorithm, scheduler, space):
    from trainables.mlflow_record import KIND_TAG, SWEEP_TAG, log_batch

    run = client.create_run(exp_id, run_name=name, tags={
        KIND_TAG: "sweep", SWEEP_TAG: name, "lorasweep.study": study, "lorasweep.preset": "test",
        "git_sha": "0123456789abcdef", "git_dirty": "false"})
    params = {"study": study, "preset": "test", "task": "e2e", "model": model, "data": "e2e_nlg",
              "n_trials": 6, "seed": 0, "space.source": "<inline>", "search.algorithm": algorithm,
              "search.num_samples": 1, "search.max_concurrent": None, "scheduler.name": scheduler,
              "scheduler.grace_period": 1, "scheduler.reduction_factor": 2.0, "scheduler.max_t": None,
              **{f"space.{k}": v for k, v in space.items()}}
    log_batch(client, run.info.run_id, params=params)
    return run.info.run_id


def _trial(client, exp_id, parent, sweep, tid, *, model, hp, vals, final=None, status=None):
    """One child run as MlflowRecorder writes it (``hp``: dotted setting -> swept value)."""
    from mlflow.entities import Metric

    from trainables.config import TrialConfig
    from trainables.mlflow_record import (COMPLETED, KIND_TAG, PARENT_TAG, STATUS_TAG, STOPPED,
                                          SWEEP_TAG, TRIAL_TAG, flatten, log_batch)
    from trainables.schema import from_dict, set_path, to_dict

    data = {"task": "e2e", "model": {"name_or_path": model}, "train": {"epochs": 3}, "seed": 0}
    for k, v in hp.items():
        set_path(data, k, v)
    cfg = from_dict(TrialConfig, data)
    run = client.create_run(exp_id, run_name=tid, tags={
        PARENT_TAG: parent, TRIAL_TAG: tid, SWEEP_TAG: sweep, KIND_TAG: "trial", STATUS_TAG: "running"})
    rid = run.info.run_id
    params = flatten(to_dict(cfg))
    params.update({"adapter.lora_alpha": cfg.adapter.lora_alpha,
                   "adapter.target_modules": "c_attn.q,c_attn.v", "trial_id": tid})
    r = cfg.adapter.r
    pct = round(PCT[model] * r, 4)
    ms = [Metric("trainable_pct", pct, 0, 0), Metric("trainable_params", r * 98_304, 0, 0),
          Metric("total_params", SIZE[model] + r * 98_304, 0, 0)]
    for e, v in enumerate(vals, 1):
        ms += [Metric("val_loss", v, e, e * EPOCH_STEPS), Metric("epoch", float(e), e, e * EPOCH_STEPS)]
    ms += [Metric("train_loss", vals[0] + 0.5 - 0.001 * s, s, s)
           for s in range(10, len(vals) * EPOCH_STEPS + 1, 10)]
    if final:
        ms += [Metric(k, v, 9, len(vals) * EPOCH_STEPS) for k, v in final.items()]
    status = status or (COMPLETED if len(vals) == 3 else STOPPED)
    tags = {f"hp.{k}": v for k, v in hp.items()}
    tags[STATUS_TAG] = status
    if status == STOPPED:
        tags["lorasweep.stopped_at_epoch"] = f"{float(len(vals)):.3g}"
    log_batch(client, rid, metrics=ms, params=params, tags=tags)
    client.set_terminated(rid, status="FINISHED")
    return rid


OPTUNA_SPACE = {"r": "choice[1, 2, 4, 8]", "lr": "loguniform[1e-05, 0.001]",
                "dropout": "uniform[0.0, 0.3]", "alpha": "32", "targets": "qv"}


def optuna_trials() -> list[tuple[dict, list[float], str]]:
    """(hp, val losses, status): the loss falls with lr; the best trial has lr = 9.8e-4."""
    rng = random.Random(7)
    out = []
    for i in range(11):
        hp = {"adapter.r": rng.choice([1, 2, 4, 8]), "train.lr": 10 ** rng.uniform(-5, -3.3),
              "adapter.dropout": round(rng.uniform(0.0, 0.3), 3)}
        out.append((hp, i < 2))
    out.append(({"adapter.r": 2, "train.lr": 9.8e-4, "adapter.dropout": 0.15}, False))
    rows = []
    for hp, stopped in out:
        x = 3.0 - 0.4 * (math.log10(hp["train.lr"]) + 5) + 0.002 * hp["adapter.r"] + 0.01 * hp["adapter.dropout"]
        vals = [x + 0.3] if stopped else [x + 0.2, x + 0.1, x]
        rows.append((hp, vals, "stopped_early" if stopped else "completed"))
    return rows


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("analysis-store")
    uri = f"sqlite:///{root}/mlruns.db"
    client = MlflowClient(tracking_uri=uri)
    ids: dict[str, str] = {}
    exp = client.create_experiment(EXP_RANK, artifact_location=str(root / "artifacts"))
    grid = {"r": "grid[1, 4, 16]", "seed": "grid[0, 1]", "alpha": "32", "targets": "qv"}
    ids["A"] = _parent(client, exp, "rank_e2e-A", study="rank_e2e", model="gpt2", algorithm="grid",
                       scheduler="asha", space=grid)
    ids["B"] = _parent(client, exp, "rank_e2e-B", study="rank_e2e", model="gpt2-medium",
                       algorithm="grid", scheduler="fifo", space=grid)
    for (r, s), vals in VAL_A.items():
        ids[f"A{r}-{s}"] = _trial(client, exp, ids["A"], "rank_e2e-A", f"a_{r}_{s}", model="gpt2",
                                  hp={"adapter.r": r, "seed": s}, vals=vals,
                                  final=finals(BLEU_A[r, s]) if (r, s) in BLEU_A else None)
    for (r, s), vals in VAL_B.items():
        _trial(client, exp, ids["B"], "rank_e2e-B", f"b_{r}_{s}", model="gpt2-medium",
               hp={"adapter.r": r, "seed": s}, vals=vals, final=finals(BLEU_B[r, s]))
    exp_c = client.create_experiment(EXP_OPTUNA, artifact_location=str(root / "artifacts-c"))
    ids["C"] = _parent(client, exp_c, "lr_optuna-C", study="lr_optuna", model="gpt2",
                       algorithm="optuna", scheduler="asha", space=OPTUNA_SPACE)
    for i, (hp, vals, status) in enumerate(optuna_trials()):
        _trial(client, exp_c, ids["C"], "lr_optuna-C", f"c_{i:02d}", model="gpt2", hp=hp, vals=vals,
               final=finals(60 + i) if status == "completed" else None, status=status)
    client.create_experiment(EXP_EMPTY, artifact_location=str(root / "artifacts-e"))
    exp_d = client.create_experiment("childless", artifact_location=str(root / "artifacts-d"))
    ids["D"] = _parent(client, exp_d, "interrupted-D", study="rank_e2e", model="gpt2", algorithm="grid",
                       scheduler="asha", space=grid)  # a sweep that never started a trial
    return {"uri": uri, "ids": ids, "root": root, "client": client}


@pytest.fixture(scope="module")
def rank_data(store):
    from analysis.load import load

    return load(store["uri"], experiment=EXP_RANK)


@pytest.fixture(scope="module")
def optuna_data(store):
    from analysis.load import load

    return load(store["uri"], sweep_ids=[store["ids"]["C"]])


@pytest.fixture(scope="module")
def summary(rank_data):
    from analysis.tables import hp_columns, summarise

    task = rank_data.tasks["e2e"]
    return summarise(rank_data.trials, task, hp_columns(rank_data.trials))


# --------------------------------------------------------------------------- load


def test_load_reads_sweeps_trials_and_histories(rank_data, optuna_data, store):
    t = rank_data.trials
    assert [s.name for s in rank_data.sweeps] == ["rank_e2e-A", "rank_e2e-B"]
    a = rank_data.sweep(store["ids"]["A"])
    assert (a.algorithm, a.scheduler, a.grace_period, a.reduction_factor, a.max_t) == ("grid", "asha", 1, 2, None)
    r = next(p for p in a.space if p.short == "r")
    assert (r.key, r.kind, r.values) == ("adapter.r", "grid", (1, 4, 16))
    assert next(p for p in a.space if p.short == "alpha").kind == "fixed"
    assert len(t) == 12 and set(t["model"]) == {"gpt2", "gpt2-medium"}
    assert t["adapter.r"].map(type).eq(int).all() and t["train.lr"].map(type).eq(float).all()
    row = t[t["trial_id"] == "a_4_0"].iloc[0]
    assert (row["status"], row["stopped_at_epoch"]) == ("stopped_early", 2.0)
    assert (row["val_loss"], row["epoch"]) == (1.70, 2.0)
    assert math.isnan(row["BLEU"])
    assert t[t["trial_id"] == "a_16_1"].iloc[0]["BLEU"] == 69.0
    # Trials differing only in the seed share a configuration.
    assert t[t["model"] == "gpt2"].groupby("config_key").size().tolist() == [2, 2, 2]
    h = rank_data.history
    v = h[(h["run_id"] == store["ids"]["A4-1"]) & (h["key"] == "val_loss")]
    assert v["step"].tolist() == [100, 200, 300] and v["value"].tolist() == VAL_A[4, 1]
    lr = next(p for p in optuna_data.sweeps[0].space if p.short == "lr")
    assert (lr.kind, lr.values) == ("loguniform", (1e-05, 0.001))
    assert rank_data.tasks["e2e"].reference["BLEU"] == 70.4


# --------------------------------------------------------------------------- tables


def _srow(summary, model, r):
    return summary[(summary["model"] == model) & (summary["adapter.r"] == r)].iloc[0]


def test_summary_is_mean_and_std_over_seeds(summary):
    # val loss: completed and stopped trials (last report); BLEU: completed only.
    for r in RANKS:
        s = _srow(summary, "gpt2", r)
        vals = [VAL_A[r, seed][-1] for seed in SEEDS]
        assert s["val_loss_mean"] == pytest.approx(statistics.mean(vals))
        assert s["val_loss_std"] == pytest.approx(statistics.stdev(vals))
        bleu = [BLEU_A[r, seed] for seed in SEEDS if (r, seed) in BLEU_A]
        assert s["BLEU_n"] == len(bleu) and s["BLEU_mean"] == pytest.approx(statistics.mean(bleu))
        if len(bleu) > 1:
            assert s["BLEU_std"] == pytest.approx(statistics.stdev(bleu))
        else:
            assert math.isnan(s["BLEU_std"])
        assert s["trainable_pct"] == pytest.approx(round(PCT["gpt2"] * r, 4))
        assert s["seeds"] == [0, 1]
        m = _srow(summary, "gpt2-medium", r)
        assert m["NIST_mean"] == pytest.approx(statistics.mean(BLEU_B[r, s_] / 10 for s_ in SEEDS))
        assert m["NIST_std"] == pytest.approx(statistics.stdev(BLEU_B[r, s_] / 10 for s_ in SEEDS))
    assert summary["model"].tolist()[:3] == ["gpt2"] * 3  # smaller model first


def test_paper_table_cells_reference_and_csv(rank_data, summary):
    from analysis.tables import hp_columns, paper_table, to_html, to_markdown

    task = rank_data.tasks["e2e"]
    table = paper_table(summary, task, hp_columns(rank_data.trials))
    assert table.headers == ["model", "r", "% trainable", "completed / trials", "val loss", "BLEU",
                             "NIST", "METEOR", "ROUGE-L", "CIDEr"]
    order = [(m, str(r)) for m in ("gpt2", "gpt2-medium") for r in RANKS]  # smaller model first
    assert [(row[0], row[1]) for row in table.rows] == order
    rows = {(row[0], row[1]): row for row in table.rows}
    r1 = rows["gpt2", "1"]
    assert r1[2] == f"{PCT['gpt2']:.4f}" and r1[3] == "1 / 2"
    assert r1[4] == f"{statistics.mean([1.70, 2.10]):.4f} ± {statistics.stdev([1.70, 2.10]):.4f}†"
    assert r1[5] == "60.00"  # one completed seed: no std
    r16 = rows["gpt2", "16"]
    assert r16[5] == f"68.50 ± {statistics.stdev([68.0, 69.0]):.2f}"
    assert r16[6] == f"{6.85:.3f} ± {statistics.stdev([6.8, 6.9]):.3f}"
    assert "†" not in rows["gpt2-medium", "4"][4]
    # The reference row and columns (LoRA paper numbers), in every rendering.
    assert table.reference[-5:] == ["70.40", "8.850", "46.80", "71.80", "2.530"]
    md = to_markdown(table)
    assert "| *reference* |" in md and "LoRA paper" in md and "68.50 ± 0.71" in md
    best_bleu = max(BLEU_B[16, s] for s in SEEDS)
    assert f"**{statistics.mean(BLEU_B[16, s] for s in SEEDS):.2f} ± " in md and best_bleu > 68.5
    assert 'class="reference"' in to_html(table)
    csv = table.frame
    assert {"BLEU_mean", "BLEU_std", "BLEU_n", "BLEU_reference", "val_loss_mean"} <= set(csv.columns)
    assert (csv["BLEU_reference"] == 70.4).all()
    bleu_std = csv.loc[(csv["model"] == "gpt2") & (csv["r"] == 16), "BLEU_std"].item()
    assert bleu_std == pytest.approx(statistics.stdev([68.0, 69.0]))


def test_table_of_a_task_without_references(rank_data, summary):
    from dataclasses import replace

    from analysis.tables import paper_table, to_markdown
    from trainables.tasks.base import MetricSpec

    task = replace(rank_data.tasks["e2e"], name="future", reference={}, reference_note="",
                   final_metrics=(MetricSpec("BLEU", "max"), MetricSpec("accuracy", "max")))
    table = paper_table(summary, task, ["adapter.r"])
    assert table.reference is None and "accuracy" not in table.headers  # never logged: no column
    assert "reference" not in to_markdown(table) and not any(c.endswith("_reference") for c in table.frame)


# --------------------------------------------------------------------------- plots


def _errorbars(ax):
    """label -> (x, y, half-length of each error bar) read back from the Axes."""
    out = {}
    for c in ax.containers:
        line, _, (bars,) = c.lines
        x, y = line.get_xdata(), line.get_ydata()
        half = [abs(seg[1][1] - seg[0][1]) / 2 for seg in bars.get_segments()]
        out[c.get_label()] = (list(x), list(y), half)
    return out


def test_rank_plot_points_are_the_stored_means_and_stds(rank_data, summary):
    from analysis.plots import rank_figure

    task = rank_data.tasks["e2e"]
    fig, points = rank_figure(summary, task, line_by=["model"], title="t")
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    val_ax = next(ax for ax in axes if ax.get_title() == "val loss vs rank")
    bars = _errorbars(val_ax)
    x, y, half = bars["gpt2"]
    assert x == list(map(float, RANKS))
    assert y == pytest.approx([statistics.mean(VAL_A[r, s][-1] for s in SEEDS) for r in RANKS])
    assert half == pytest.approx([statistics.stdev(VAL_A[r, s][-1] for s in SEEDS) for r in RANKS])
    assert val_ax.get_xscale() == "log" and [t.get_text() for t in val_ax.get_xticklabels()] == ["1", "4", "16"]
    bleu_ax = next(ax for ax in axes if ax.get_title() == "BLEU vs rank")
    x, y, half = _errorbars(bleu_ax)["gpt2-medium"]
    assert y == pytest.approx([statistics.mean(BLEU_B[r, s] for s in SEEDS) for r in RANKS])
    assert half == pytest.approx([statistics.stdev(BLEU_B[r, s] for s in SEEDS) for r in RANKS])
    assert _errorbars(bleu_ax)["gpt2"][2][0] == 0  # r=1: one completed seed, no spread
    ref = [ln for ln in bleu_ax.get_lines() if ln.get_label() == "reference"]
    assert ref and ref[0].get_ydata()[0] == 70.4
    # Two models: % trainable differs per model at a rank, so each point is annotated.
    notes = {t.get_text() for t in val_ax.texts}
    assert f"{PCT['gpt2'] * 4:.3g}%" in notes and f"{PCT['gpt2-medium'] * 16:.3g}%" in notes
    assert set(points["metric"]) == {"val_loss", "BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"}

    # One model: % trainable on a secondary top axis.
    fig, _ = rank_figure(summary[summary["model"] == "gpt2"], task, line_by=[], title="t", metrics=["val_loss"])
    top = fig.axes[0].child_axes[0]
    assert [t.get_text() for t in top.get_xticklabels()] == [f"{PCT['gpt2'] * r:.3g}" for r in RANKS]
    assert "% trainable" in top.get_xlabel()


def test_rank_plot_shows_the_best_configuration_per_rank(optuna_data):
    from analysis.plots import rank_points
    from analysis.tables import hp_columns, summarise

    task, t = optuna_data.tasks["e2e"], optuna_data.trials
    summary = summarise(t, task, hp_columns(t))
    points = rank_points(summary, task, line_by=[], metrics=["val_loss", "BLEU"],
                         chosen_by=["train.lr", "adapter.dropout"])
    done = t[t["status"] == "completed"]
    for r, p in points[points["metric"] == "val_loss"].set_index("r").iterrows():
        mine = t[(t["adapter.r"] == r) & t["status"].isin(["completed", "stopped_early"])]
        best = mine.loc[mine["val_loss"].idxmin()]
        assert p["mean"] == best["val_loss"] and p["configurations"] == len(mine)
        assert p["chosen"] == f"lr={best['train.lr']:.4g} dropout={best['adapter.dropout']:g}"
        # BLEU is shown for the same configuration, not the best BLEU at that rank.
        bleu = points[(points["metric"] == "BLEU") & (points["r"] == r)]
        assert bleu.empty or bleu["mean"].item() == done.loc[done["run_id"] == best["run_id"], "BLEU"].item()
    chosen = points.loc[(points["metric"] == "val_loss") & (points["r"] == 2), "chosen"].item()
    assert chosen == "lr=0.00098 dropout=0.15"


def test_learning_curves_mark_asha_stops_and_rungs(rank_data, store):
    from analysis.plots import RUNG_LABEL, STOP_LABEL, asha_rungs, learning_curves

    task = rank_data.tasks["e2e"]
    t = rank_data.trials
    a = rank_data.sweep(store["ids"]["A"])
    fig, drawn = learning_curves(t[t["sweep_run_id"] == a.run_id], rank_data.history, a, task)
    ax = fig.axes[0]
    stop = next(ln for ln in ax.get_lines() if ln.get_label() == STOP_LABEL)
    assert sorted(map(tuple, stop.get_xydata())) == sorted([(1.0, VAL_A[1, 1][-1]), (2.0, VAL_A[4, 0][-1])])
    rungs = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert sorted(ln.get_xdata()[0] for ln in rungs) == [1.0, 2.0] == drawn["rungs"]
    assert any(ln.get_label() == RUNG_LABEL for ln in rungs)
    x, y = drawn["curves"][store["ids"]["A4-1"]]
    assert list(x) == [1.0, 2.0, 3.0] and list(y) == VAL_A[4, 1]
    plotted = [ln for ln in ax.get_lines() if list(ln.get_ydata()) == VAL_A[4, 1]]
    assert len(plotted) == 1 and drawn["color_key"] == "adapter.r"
    assert any(a_.get_label() == "<colorbar>" for a_ in fig.axes) and len(fig.axes) == 3
    assert len(fig.axes[1].get_lines()) == 6  # train loss per step, every trial
    b = rank_data.sweep(next(s.run_id for s in rank_data.sweeps if s.name == "rank_e2e-B"))
    _, drawn_b = learning_curves(t[t["sweep_run_id"] == b.run_id], rank_data.history, b, task)
    assert drawn_b["rungs"] == [] and drawn_b["stopped"] == []  # FIFO: no rungs, no stops
    assert asha_rungs(1, 2, 3) == [1, 2] and asha_rungs(1, 2, 4) == [1, 2, 4]
    assert asha_rungs(2, 3, 20) == [2, 6, 18]


# --------------------------------------------------------------------------- importance and edges


def test_importance_from_rebuilt_optuna_study(optuna_data):
    from optuna.distributions import FloatDistribution, IntDistribution
    from optuna.trial import TrialState

    from analysis.importance import distribution, param_importances, rebuild_study
    from analysis.load import SpaceParam

    sweep, task = optuna_data.sweeps[0], optuna_data.tasks["e2e"]
    study = rebuild_study(sweep, optuna_data.trials, optuna_data.history, task, task.metric)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 10
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert len(pruned) == 2 and all(len(p.intermediate_values) == 1 for p in pruned)
    assert study.best_trial.params["train.lr"] == 9.8e-4
    assert study.best_trial.distributions["train.lr"] == FloatDistribution(1e-5, 1e-3, log=True)
    res = param_importances(sweep, optuna_data.trials, optuna_data.history, task)
    assert set(res.importances) == {"adapter.r", "train.lr", "adapter.dropout"}
    assert sum(res.importances.values()) == pytest.approx(1.0)
    assert next(iter(res.importances)) == "train.lr"  # the loss only really depends on lr
    assert (res.n_complete, res.n_pruned, res.n_failed) == (10, 2, 0)
    # Tune's integer ranges exclude the upper bound, Optuna's include it.
    assert distribution(SpaceParam("r", "adapter.r", "randint", (1, 9))) == IntDistribution(1, 8)


def test_edge_of_space_warning(optuna_data, rank_data, store):
    from analysis.importance import edge_warnings

    task = rank_data.tasks["e2e"]
    c = optuna_data.sweeps[0]
    warns = edge_warnings(c, optuna_data.trials, task)
    assert [(w.key, w.edge) for w in warns] == [("train.lr", "upper")]
    assert "lr=0.00098" in warns[0].message() and "loguniform[1e-05, 0.001]" in warns[0].message()
    # Best lr moved to the middle of the range: no warning.
    t = optuna_data.trials.copy()
    t.loc[t["train.lr"] == 9.8e-4, "train.lr"] = 1e-4
    assert edge_warnings(c, t, task) == []
    # Grid sweep A: the best trial has r=4, inside [1, 4, 16] (the swept seed never counts).
    a = rank_data.sweep(store["ids"]["A"])
    assert edge_warnings(a, rank_data.trials, task) == []
    # ... and r=16 at the largest grid value when it is the best.
    t = rank_data.trials.copy()
    t.loc[t["trial_id"] == "a_16_0", "val_loss"] = 1.0
    warns = edge_warnings(a, t, task)
    assert [(w.key, w.edge, w.value) for w in warns] == [("adapter.r", "upper", 16)]
    assert "largest value of grid[1, 4, 16]" in warns[0].message()
    # Ranked by BLEU instead: the best BLEU in sweep A is r=16 (69.0).
    assert [w.key for w in edge_warnings(a, rank_data.trials, task, task.spec("BLEU"))] == ["adapter.r"]


# --------------------------------------------------------------------------- report and CLI


def test_report_is_self_contained_and_logged_to_the_parent_runs(store, tmp_path, capsys):
    from analysis.report import main

    out = tmp_path / "report"
    out.mkdir()
    (out / "unrelated.txt").write_text("not part of the report")
    assert main(["--tracking-uri", store["uri"], "--experiment", EXP_RANK, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "report: " in printed and "68.50 ± 0.71" in printed and "MLflow: logged" in printed
    page = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
    assert "<link" not in page and "<script" not in page
    assert page.count("data:image/png;base64,") == 5  # rank by model, 2 per-model, 2 curves
    assert "rank_e2e-A" in page and "LoRA paper" in page and "68.50 ± 0.71" in page
    expected = {"report.html", "table_e2e.md", "table_e2e.csv", "trials.csv", "rank_e2e.png",
                "rank_e2e.svg", "rank_e2e_gpt2.png", "rank_e2e_gpt2-medium.svg",
                "curves_rank_e2e-A.png", "curves_rank_e2e-B.svg"}
    assert expected <= {p.name for p in out.iterdir()}
    client = store["client"]
    for key in ("A", "B"):
        logged = {a.path for a in client.list_artifacts(store["ids"][key], "analysis")}
        assert {f"analysis/{n}" for n in expected} <= logged and "analysis/unrelated.txt" not in logged


def test_report_of_an_optuna_sweep_has_importances_and_warning(store, tmp_path, capsys):
    from analysis.report import main

    out = tmp_path / "c"
    code = main(["--tracking-uri", store["uri"], "--sweep", store["ids"]["C"], "--out", str(out),
                 "--metric", "BLEU", "--no-log"])
    captured = capsys.readouterr()
    assert code == 0
    assert "warning: lr_optuna-C" in captured.err and "lr=" in captured.err
    assert {"importance_lr_optuna-C.png", "importance_lr_optuna-C.svg", "importance_lr_optuna-C.csv"} \
        <= {p.name for p in out.iterdir()}
    page = (out / "report.html").read_text()
    assert "Hyperparameter importance" in page and 'class="warn"' in page
    assert page.count("data:image/png;base64,") == 3  # rank (one model: no per-model copy), curves, importance
    header = (out / "table_e2e.md").read_text().splitlines()[2]
    assert header.startswith("| r | dropout | lr | % trainable |")
    assert not store["client"].list_artifacts(store["ids"]["C"], "analysis")  # --no-log


BAD = [
    (["--experiment", "lorasweep-rank_e2f"], "--experiment", "did you mean 'lorasweep-rank_e2e'"),
    (["--experiment", EXP_EMPTY], "--experiment", "has no sweep runs"),
    (["--sweep", "0" * 32], "--sweep", "no run"),
    (["--sweep", "{trial}"], "--sweep", "not a sweep's parent run"),
    (["--sweep", "{childless}"], "--sweep", "has no trial runs"),
    (["--experiment", EXP_RANK, "--metric", "BLUE"], "--metric", "did you mean 'BLEU'"),
    (["--experiment", EXP_RANK, "--tracking-uri", "sqlite:///{tmp}/nope.db"], "--tracking-uri",
     "no MLflow database"),
]


@pytest.mark.parametrize("flags, field, fragment", BAD, ids=[f"{c[1]}-{c[2][:16]}" for c in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(store, tmp_path, capsys, flags, field, fragment):
    from analysis.report import main

    flags = [f.format(trial=store["ids"]["A4-1"], childless=store["ids"]["D"], tmp=tmp_path) for f in flags]
    out = tmp_path / "out"
    assert main(["--tracking-uri", store["uri"], *flags, "--out", str(out)]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}: ") and fragment in lines[0], lines
    assert not out.exists() and not (tmp_path / "nope.db").exists()


def test_cli_module_exit_code_2(store, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "analysis.report", "--tracking-uri", store["uri"],
                           "--experiment", "no-such-experiment", "--out", str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: --experiment: no experiment 'no-such-experiment'")
    assert not (tmp_path / "out").exists() and proc.stdout == ""


def test_cross_task_figure_puts_the_shared_metrics_of_two_tasks_on_one_axis(rank_data):
    """Rank vs task (E2E and SQuAD both report BLEU and ROUGE-L): one line per task, each the
    same points as that task's own rank plot."""
    from dataclasses import replace

    from analysis.plots import cross_task_figure, rank_points
    from analysis.tables import hp_columns, summarise

    e2e = rank_data.tasks["e2e"]
    t = rank_data.trials
    a = summarise(t[t["model"] == "gpt2"], e2e, hp_columns(t))
    b = summarise(t[t["model"] == "gpt2-medium"], e2e, hp_columns(t))
    other = replace(e2e, name="squad")  # a second task reporting the same BLEU and ROUGE-L
    fig, points = cross_task_figure({"e2e": (a, e2e), "squad": (b, other)}, ["BLEU", "ROUGE_L"], title="t")
    assert set(points["line"]) == {"e2e (gpt2)", "squad (gpt2-medium)"}
    own = rank_points(b, other, line_by=["model"], metrics=["BLEU", "ROUGE_L"])
    mine = points[points["line"] == "squad (gpt2-medium)"]
    assert mine["mean"].tolist() == own["mean"].tolist() and mine["r"].tolist() == own["r"].tolist()
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert titles == ["BLEU vs rank, by task", "ROUGE-L vs rank, by task"]
    bleu_ax = fig.axes[0]
    assert {ln.get_label() for ln in bleu_ax.containers} >= {"e2e (gpt2)", "squad (gpt2-medium)"}
