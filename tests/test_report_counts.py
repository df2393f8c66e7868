"""analysis/: what a report counts and says, checked on small stores built with known values.

Each store is written through the real MLflow API with the helpers of ``test_analysis`` (a
parent run per sweep, a child run per trial, as ``sweeps.tracking.recorder`` writes them);
the expected counts, cells and messages are worked out by hand next to the data.
"""

from __future__ import annotations

import csv
import io
import math
import re

import pytest

from test_analysis import _parent, _trial, finals

SPACE = {"r": "grid[4, 16, 64]", "lr": "grid[0.0002, 0.001]", "alpha": "32", "targets": "qv"}


def _results_csv(rows: list[dict]) -> str:
    """The sweep summary's results CSV (short names for the swept settings)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["r", "lr", "status", "val_loss", "trial_id", "mlflow_run_id"])
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


@pytest.fixture
def cut(tmp_path):
    """Sweep "cut" planned 6 trials (3 ranks x 2 lrs, the parent's n_trials) and was stopped
    by Ctrl-C. t0 (r=4, lr 2e-4) completed; t1 (r=16, lr 2e-4) has a run, unfinished; the
    results CSV also lists t2 (r=4, lr 1e-3) and t3 (r=64, lr 2e-4), created by Tune but never
    started (no run). The other two Tune had not created. By hand, as the sweep's summary
    counts: 1 completed, 3 unfinished (t1, t2, t3), 2 not started: 6 planned, 2 with a run;
    rows r=4: 1 completed + 1 unfinished, r=16: 1 unfinished, r=64: 1 unfinished."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/cut.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("cut", artifact_location=str(tmp_path / "artifacts"))
    parent = _parent(client, exp, "cut", study="rank_e2e", model="gpt2", algorithm="grid", scheduler="fifo",
                     space=SPACE, scientific="adapter.r", nuisance="train.lr")
    client.set_tag(parent, "lorasweep.interrupted", "SIGINT")
    t0 = _trial(client, exp, parent, "cut", "t0", model="gpt2", hp={"adapter.r": 4, "train.lr": 2e-4},
                vals=[2.0, 1.9, 1.6], final=finals(60.0))
    t1 = _trial(client, exp, parent, "cut", "t1", model="gpt2", hp={"adapter.r": 16, "train.lr": 2e-4},
                vals=[2.0], status="unfinished")
    for key, value in (("trials_completed", 1), ("trials_stopped_early", 0), ("trials_failed", 0),
                       ("trials_unfinished", 3)):
        client.log_metric(parent, key, value)
    client.log_text(parent, _results_csv([
        {"r": 4, "lr": 2e-4, "status": "completed", "val_loss": 1.6, "trial_id": "t0", "mlflow_run_id": t0},
        {"r": 16, "lr": 2e-4, "status": "unfinished", "val_loss": 2.0, "trial_id": "t1", "mlflow_run_id": t1},
        {"r": 4, "lr": 1e-3, "status": "unfinished", "trial_id": "t2"},
        {"r": 64, "lr": 2e-4, "status": "unfinished", "trial_id": "t3"}]), "results.csv")
    return uri


def test_an_interrupted_sweeps_trials_without_a_run_are_counted_as_its_summary_counts_them(cut, tmp_path):
    from analysis.load import load
    from analysis.report import build_report
    from analysis.tables import grouping, paper_table, summarise

    data = load(cut, experiment="cut")
    assert len(data.trials) == 2
    assert data.status_text() == "1 completed, 0 stopped early, 0 failed, 3 unfinished, 2 not started"
    assert data.n_planned() == 6
    assert sorted(data.pending["trial_id"]) == ["t2", "t3"]
    groups = grouping(data.trials, data.sweeps)
    summary = summarise(data.trials, data.tasks["e2e"], groups, pending=data.pending)
    table = paper_table(summary, data.tasks["e2e"], groups)
    assert [(row[0], row[1], row[3]) for row in table.rows] == [
        ("4", "0.0002", "1 / 0 / 0 / 1"), ("16", "-", "0 / 0 / 0 / 1"), ("64", "-", "0 / 0 / 0 / 1")]
    assert list(summary["trials"]) == [2, 1, 1]
    assert any(n.startswith("INCOMPLETE rows (r=4; r=16; r=64)") for n in table.notes), table.notes
    report = build_report(data, tmp_path / "report")
    notes = report.tables["e2e"].notes
    assert "sweep cut: 2 more planned trial(s) not started (the sweep was stopped before Tune created " \
        "them), in no row" in notes
    assert "6: 1 completed, 0 stopped early, 0 failed, 3 unfinished, 2 not started" in report.html.read_text()


def test_the_cli_status_line_counts_every_planned_trial(cut, tmp_path, capsys):
    from analysis.report import main

    assert main(["--tracking-uri", cut, "--experiment", "cut", "--out", str(tmp_path / "r"), "--no-log"]) == 0
    out = capsys.readouterr().out
    assert "analysed 6 trials of 1 sweep(s) (1 completed, 0 stopped early, 0 failed, 3 unfinished, " \
        "2 not started; 2 with an MLflow run)" in out


def test_a_results_csv_that_cannot_be_read_is_said_to_make_the_counts_uncertain(cut, tmp_path, capsys):
    """The store copied without its artifact folder: the parent's results CSV is gone, so t2
    and t3 (created by Tune, never started) cannot be told from the two Tune never created.
    By hand: 6 planned less the 2 with a run = 4 counted as not started, 1 unfinished (t1);
    the report says which file it could not read and that these counts may be wrong."""
    import shutil

    from analysis.report import main

    shutil.rmtree(tmp_path / "artifacts")
    assert main(["--tracking-uri", cut, "--experiment", "cut", "--out", str(tmp_path / "r"), "--no-log"]) == 0
    out = capsys.readouterr().out
    assert "(1 completed, 0 stopped early, 0 failed, 1 unfinished, 4 not started; 2 with an MLflow run)" in out
    (note,) = [line for line in out.splitlines() if "results.csv" in line and line.startswith("  note:")]
    assert note.startswith("  note: sweep cut: its parent run's results.csv could not be read ("), note
    assert note.endswith("): its trials without an MLflow run are counted from n_trials alone, as not started "
                         "(an Optuna sweep's not at all), so its unfinished and not-started counts may be wrong"), note
    assert "sweep cut: 4 more planned trial(s) not started (its results.csv could not be read: Tune may have " \
        "created some), in no row" in (tmp_path / "r" / "table_e2e.md").read_text()


# --------------------------------------------------------------------------- the ranking metric


@pytest.fixture
def two(tmp_path):
    """Sweep "two" (grid, ASHA) at r=4 over lr 2e-4 and 1e-3: the lr 2e-4 trial completed at
    val loss 1.50 (BLEU 60); the lr 1e-3 trial was stopped early after 2 epochs at 1.40 (no
    BLEU). The best trial a table row or the sweep's summary can choose is the completed one."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/two.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("two", artifact_location=str(tmp_path / "artifacts"))
    parent = _parent(client, exp, "two", study="rank_e2e", model="gpt2", algorithm="grid", scheduler="asha",
                     space={"r": "grid[4]", "lr": "grid[0.0002, 0.001]", "alpha": "32", "targets": "qv"},
                     scientific="adapter.r", nuisance="train.lr")
    done = _trial(client, exp, parent, "two", "d", model="gpt2", hp={"adapter.r": 4, "train.lr": 2e-4},
                  vals=[1.9, 1.7, 1.5], final=finals(60.0))
    stopped = _trial(client, exp, parent, "two", "s", model="gpt2", hp={"adapter.r": 4, "train.lr": 1e-3},
                     vals=[1.6, 1.4])
    return {"uri": uri, "done": done, "stopped": stopped}


def test_ranking_by_a_test_split_metric_is_warned_about_and_noted_under_the_table(two, tmp_path):
    from analysis.load import load
    from analysis.report import build_report

    data = load(two["uri"], experiment="two")
    report = build_report(data, tmp_path / "bleu", metric="BLEU")
    assert ("task e2e: --metric BLEU selects each row's trial on the TEST split and reports that same test "
            "BLEU: an optimistic estimate, not a held-out result (rank by a validation metric, e.g. "
            "val_loss, for that)") in report.warnings
    assert report.tables["e2e"].notes[0].startswith("SELECTED ON THE TEST SPLIT: each row's trial was "
                                                    "picked by its BLEU on the test data")
    # The "ours vs source" tables show the same chosen trials: they say so too.
    (compared,) = report.comparisons["e2e"].tables
    assert compared.notes[0] == report.tables["e2e"].notes[0]
    assert report.tables["e2e"].notes[0] in (tmp_path / "bleu" / "compare_e2e.md").read_text()
    default = build_report(data, tmp_path / "default")
    assert not any("TEST" in text for text in default.warnings + default.tables["e2e"].notes
                   + default.comparisons["e2e"].tables[0].notes)
    # The CSVs, read without the notes, say what the rows were picked by.
    import pandas as pd

    for folder, picked in (("bleu", "BLEU (test split)"), ("default", "val_loss")):
        for name in ("table_e2e.csv", "compare_e2e.csv"):
            assert set(pd.read_csv(tmp_path / folder / name)["selected_by"]) == {picked}, (folder, name)


def test_edge_warnings_name_the_completed_best_trial_not_one_asha_stopped(two):
    """By val loss, the stopped trial (1.40, lr 1e-3: the largest lr) beats the completed one
    (1.50, lr 2e-4: the smallest); the table and the sweep name the completed one, so the
    warning is about lr 2e-4 at the lower end, run ``done``."""
    from analysis.importance import edge_warnings
    from analysis.load import load

    data = load(two["uri"], experiment="two")
    (w,) = edge_warnings(data.sweeps[0], data.trials, data.tasks["e2e"])
    assert (w.run_id, w.key, w.edge, w.value, w.best_value) == (two["done"], "train.lr", "lower", 2e-4, 1.5)


def test_a_classification_report_ranks_by_any_validation_metric_its_trials_logged(tmp_path):
    """SST-2 trials a (val accuracy 85, val loss 0.45) and b (80, 0.40), r 4 and 16, both
    completed: by val accuracy (the default, highest) a is best, by val loss (lowest) b."""
    from mlflow import MlflowClient

    from analysis.load import load
    from analysis.report import build_report, resolve_metric
    from trainables.mlflow_names import KIND_TAG, PARENT_TAG, STATUS_TAG, SWEEP_TAG, TRIAL_TAG

    uri = f"sqlite:///{tmp_path}/glue.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("glue", artifact_location=str(tmp_path / "artifacts"))
    parent = _parent(client, exp, "glue", study="glue_rank", model="roberta", algorithm="grid",
                     scheduler="fifo", space={"r": "grid[4, 16]"}, scientific="adapter.r")
    for tid, r, acc, loss in (("a", 4, 85.0, 0.45), ("b", 16, 80.0, 0.40)):
        run = client.create_run(exp, run_name=tid, tags={
            PARENT_TAG: parent, TRIAL_TAG: tid, SWEEP_TAG: "glue", KIND_TAG: "trial", STATUS_TAG: "completed",
            "hp.adapter.r": str(r)})
        rid = run.info.run_id
        for k, v in {"task": "glue-sst2", "model.name_or_path": "roberta", "adapter.r": r}.items():
            client.log_param(rid, k, v)
        for k, v in {"val_accuracy": acc, "val_loss": loss, "accuracy": acc + 1, "trainable_pct": r / 10}.items():
            client.log_metric(rid, k, v, step=100)
        client.set_terminated(rid)
    data = load(uri, experiment="glue")
    task = data.tasks["glue-sst2"]
    assert [m.name for m in task.metrics] == ["val_accuracy", "val_loss", "accuracy"]
    assert resolve_metric(data, "val_loss")["glue-sst2"].mode == "min"
    by_loss = build_report(data, tmp_path / "loss", metric="val_loss").tables["glue-sst2"]
    assert by_loss.headers[-3:] == ["val Acc", "val loss", "Acc"]
    assert [(row[0], row[-2]) for row in by_loss.rows] == [("4", "0.4500"), ("16", "0.4000")]
    assert {(i, len(by_loss.headers) - 2) for i in (1,)} <= by_loss.best  # b's val loss is the best
    assert (1, len(by_loss.headers) - 3) not in by_loss.best  # b's val accuracy is not


def test_a_bleu_in_lower_case_gets_a_did_you_mean(two):
    from analysis.load import load
    from analysis.report import resolve_metric
    from trainables.errors import UserError

    with pytest.raises(UserError) as e:
        resolve_metric(load(two["uri"], experiment="two"), "bleu")
    assert "unknown metric 'bleu' for task 'e2e' (did you mean 'BLEU'?)" in e.value.message


def test_a_sqlite_file_given_without_its_scheme_gets_the_sqlite_uri_suggested(two, tmp_path):
    from analysis.load import load
    from trainables.errors import UserError

    path = str(tmp_path / "two.db")
    with pytest.raises(UserError) as e:
        load(path, experiment="two")
    assert e.value.field == "--tracking-uri"
    assert e.value.message.endswith(f"; {path} is a file: for a SQLite database give "
                                    f"--tracking-uri sqlite:///{path}")


# --------------------------------------------------------------------------- the table CSV


def test_the_csv_gives_each_pooled_run_its_seed_and_sweep_beside_its_run_id(tmp_path):
    """Sweep P1 (no seed replicates) picks lr 2e-4 (1.60 < 1.80); P2 replicates seeds 0 and 1:
    seed 0 picks lr 2e-4 (1.50 < 1.55), seed 1 lr 1e-3 (1.65 < 1.70). The row's three runs:
    (P1's run, -, pool-1), (P2 seed 0's, 0, pool-2), (P2 seed 1's, 1, pool-2)."""
    from mlflow import MlflowClient

    from analysis.load import load
    from analysis.tables import grouping, paper_table, summarise

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/pool.db")
    exp = client.create_experiment("pool", artifact_location=str(tmp_path / "artifacts"))
    space = {"r": "grid[4]", "lr": "grid[0.0002, 0.001]", "alpha": "32", "targets": "qv"}
    p1 = _parent(client, exp, "pool-1", study="rank_e2e", model="gpt2", algorithm="grid", scheduler="fifo",
                 space=space, scientific="adapter.r", nuisance="train.lr")
    ids = {}
    for i, (lr, last) in enumerate(((2e-4, 1.60), (1e-3, 1.80))):
        ids["p1", lr] = _trial(client, exp, p1, "pool-1", f"p1_{i}", model="gpt2",
                               hp={"adapter.r": 4, "train.lr": lr}, vals=[2.0, 1.9, last], final=finals(60.0),
                               seed=11 + 11 * i)
    p2 = _parent(client, exp, "pool-2", study="rank_e2e", model="gpt2", algorithm="grid", scheduler="fifo",
                 space={**space, "seed": "grid[0, 1]"}, scientific="adapter.r,seed", nuisance="train.lr")
    for seed, lr, last in ((0, 2e-4, 1.50), (0, 1e-3, 1.55), (1, 2e-4, 1.70), (1, 1e-3, 1.65)):
        ids[seed, lr] = _trial(client, exp, p2, "pool-2", f"p2_{seed}_{lr:g}", model="gpt2",
                               hp={"adapter.r": 4, "seed": seed, "train.lr": lr}, vals=[2.0, 1.9, last],
                               final=finals(60.0))
    data = load(f"sqlite:///{tmp_path}/pool.db", experiment="pool")
    groups = grouping(data.trials, data.sweeps)
    frame = paper_table(summarise(data.trials, data.tasks["e2e"], groups), data.tasks["e2e"], groups).frame
    (row,) = frame.to_dict("records")
    runs = list(zip(row["run_ids"].split(" "), row["seeds"].split(" "), row["run_sweeps"].split(" | ")))
    assert sorted(runs) == sorted([(ids["p1", 2e-4], "-", "pool-1"), (ids[0, 2e-4], "0", "pool-2"),
                                   (ids[1, 1e-3], "1", "pool-2")])


# --------------------------------------------------------------------------- importances

# Importances need max(10, 3 per swept setting) completed trials (docs/analysis.md): 2 swept
# settings (lr, dropout) need max(10, 6) = 10; 4 (r, lr, dropout, weight decay) need
# max(10, 12) = 12.
SWEPT_2 = {"r": "4", "lr": "loguniform[1e-05, 0.001]", "dropout": "uniform[0.0, 0.3]", "alpha": "32",
           "targets": "qv"}
SWEPT_4 = {**SWEPT_2, "r": "choice[4, 8]", "weight_decay": "uniform[0.0, 0.1]"}


def _optuna_sweep(tmp_path, space: dict, n_completed: int) -> str:
    """Optuna sweep "imp" over ``space``: ``n_completed`` completed trials (the val loss falls
    with lr) and one trial ASHA stopped, which is pruned and not counted."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/imp.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("imp", artifact_location=str(tmp_path / "artifacts"))
    parent = _parent(client, exp, "imp", study="lr_optuna", model="gpt2", algorithm="optuna", scheduler="asha",
                     space=space, scientific="", nuisance="train.lr,adapter.dropout")
    for i in range(n_completed + 1):
        lr, dropout = 10 ** (-5 + 2 * i / (n_completed + 1)), round(0.3 * ((i * 7) % 10) / 10, 3)
        hp = {"train.lr": lr, "adapter.dropout": dropout}
        if "weight_decay" in space:
            hp.update({"adapter.r": (4, 8)[i % 2], "train.weight_decay": round(0.01 * (i % 10), 3)})
        x = 2.0 - 0.2 * (math.log10(lr) + 5) + 0.01 * dropout
        stopped = i == n_completed
        _trial(client, exp, parent, "imp", f"t{i:02d}", model="gpt2", hp=hp,
               vals=[x + 0.3] if stopped else [x + 0.2, x + 0.1, x], final=None if stopped else finals(60.0 + i))
    return uri


@pytest.mark.parametrize("space, n_completed, need", [(SWEPT_2, 9, 10), (SWEPT_4, 11, 12)],
                         ids=["2-swept-9-of-10", "4-swept-11-of-12"])
def test_too_few_completed_trials_give_one_line_and_no_importances(tmp_path, capsys, space, n_completed, need):
    from analysis.report import main

    uri = _optuna_sweep(tmp_path, space, n_completed)
    out = tmp_path / "report"
    assert main(["--tracking-uri", uri, "--experiment", "imp", "--out", str(out), "--no-log"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "importances" in ln]
    n_swept = len([v for v in space.values() if "[" in v])
    assert lines == [f"  note: sweep imp: no importances ({n_completed} completed trial(s) with val_loss; "
                     f"importances need at least {need} (the larger of 10 and 3 per swept setting; "
                     f"{n_swept} swept))"]
    assert not list(out.glob("importance_*"))
    assert "No importances: " in (out / "report.html").read_text()


@pytest.mark.parametrize("space, need", [(SWEPT_2, 10), (SWEPT_4, 12)], ids=["2-swept-10", "4-swept-12"])
def test_importances_from_as_many_completed_trials_as_needed(tmp_path, space, need):
    from analysis.load import load
    from analysis.report import build_report

    uri = _optuna_sweep(tmp_path, space, need)
    report = build_report(load(uri, experiment="imp"), tmp_path / "report")
    (res,) = report.importances.values()
    assert (res.n_complete, res.n_pruned, res.note) == (need, 1, "")
    assert len(res.importances) == len([v for v in space.values() if "[" in v])
    assert sum(res.importances.values()) == pytest.approx(1.0)
    assert next(iter(res.importances)) == "train.lr"  # the loss only really depends on lr
    assert (tmp_path / "report" / "importance_imp.png").is_file()


# --------------------------------------------------------------------------- grouped Optuna studies


def test_a_grouped_sweeps_optuna_plots_are_titled_by_their_groups_values(tmp_path):
    """Optuna sweep "grp" grouped by r (scientific) over 4 and 16: the real grouped searcher
    stores one study per group, ``grp/group-0`` (r=4) and ``grp/group-1`` (r=16), 2 trials
    each; the parent run names them as a sweep does. Each plot is titled, captioned and
    named by its group's r, not by the group's number."""
    import matplotlib.pyplot as plt
    from mlflow import MlflowClient
    from ray import tune

    from analysis.load import load
    from analysis.report import Report, _study_section
    from analysis.studies import stored_studies, study_figures
    from sweeps.optuna_store import parent_tags
    from sweeps.searchers import GroupedOptuna

    url = f"sqlite:///{tmp_path}/optuna.db"
    searcher = GroupedOptuna(points=[{"adapter.r": 4}, {"adapter.r": 16}], samples=2, metric="val_loss",
                             mode="min", seed=0, sweep="grp", storage=url,
                             space={"train.lr": tune.loguniform(1e-4, 1e-2)})
    uri = f"sqlite:///{tmp_path}/grp.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("grp", artifact_location=str(tmp_path / "artifacts"))
    parent = _parent(client, exp, "grp", study="lr_optuna", model="gpt2", algorithm="optuna", scheduler="fifo",
                     space={"r": "grid[4, 16]", "lr": "loguniform[0.0001, 0.01]"}, scientific="adapter.r",
                     nuisance="train.lr")
    for tag, value in parent_tags(url, "grp", 2).items():
        client.set_tag(parent, tag, value)
    for i in range(4):
        hp = searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"val_loss": 1.5 + 0.1 * i, "is_final": True})
        _trial(client, exp, parent, "grp", f"t{i}", model="gpt2", hp=hp, vals=[1.7 + 0.1 * i, 1.6 + 0.1 * i,
                                                                               1.5 + 0.1 * i], final=finals(60.0))
    (sweep,) = load(uri, experiment="grp").sweeps
    studies, _ = stored_studies(sweep)
    assert [(s.name, s.label) for s in studies] == [("grp/group-0", "r=4"), ("grp/group-1", "r=16")]
    for stored, r in zip(studies, (4, 16)):
        figures = study_figures(stored.study, "val loss", stored.label)
        assert [(kind, fig.axes[0].get_title()) for kind, fig, _ in figures] == [
            ("history", f"r={r}: Optimization History Plot"), ("parallel", f"r={r}: Parallel Coordinate Plot")]
        for _, fig, _ in figures:
            plt.close(fig)
    report = Report(out_dir=tmp_path, html=tmp_path / "report.html")
    page = _study_section(report, sweep, "val loss")
    assert sorted(report.figures) == ["optuna_history_grp_r-16", "optuna_history_grp_r-4",
                                      "optuna_parallel_grp_r-16", "optuna_parallel_grp_r-4"]
    assert "Study grp/group-0 (trials of r=4): optimisation history" in page
    assert "Study grp/group-1 (trials of r=16): parallel coordinates" in page


# --------------------------------------------------------------------------- the copy in MLflow


def test_the_current_mlflow_copy_holds_only_the_latest_reports_files(tmp_path, capsys):
    """Sweeps "one" and "other" (grid, r=4, lr 2e-4 and 1e-3, both completed): a report of
    both logs ``curves_other.png`` to both parent runs; a second report, of "one" alone, has
    no such figure. MLflow cannot delete the first copy's files, so the second goes into a
    folder of its own, and "one"'s tag names it: that folder holds exactly the files of the
    second report. "other", not in the second report, keeps the first. Report ids are the
    UTC time to the millisecond, then four random hex digits: they sort oldest first."""
    from mlflow import MlflowClient

    from analysis.mlflow_copy import current_report, report_id
    from analysis.report import main

    uri = f"sqlite:///{tmp_path}/copy.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("copy", artifact_location=str(tmp_path / "artifacts"))
    parents = {}
    for name in ("one", "other"):
        parents[name] = _parent(client, exp, name, study="rank_e2e", model="gpt2", algorithm="grid",
                                scheduler="fifo", space={"r": "grid[4]", "lr": "grid[0.0002, 0.001]"},
                                scientific="adapter.r", nuisance="train.lr")
        for i, lr in enumerate((2e-4, 1e-3)):
            _trial(client, exp, parents[name], name, f"{name}_{i}", model="gpt2", hp={"adapter.r": 4, "train.lr": lr},
                   vals=[2.0, 1.9, 1.6 + 0.1 * i], final=finals(60.0))

    def copy(run_id: str, folder: str) -> set[str]:
        return {a.path.removeprefix(f"{folder}/") for a in client.list_artifacts(run_id, folder)}

    assert main(["--tracking-uri", uri, "--experiment", "copy", "--out", str(tmp_path / "first")]) == 0
    first = current_report(client, parents["one"])
    assert current_report(client, parents["other"]) == first
    assert main(["--tracking-uri", uri, "--sweep", parents["one"], "--out", str(tmp_path / "second")]) == 0
    second = current_report(client, parents["one"])
    assert f"MLflow: logged to {second}/ of parent run(s) {parents['one']}" in capsys.readouterr().out
    written = {p.name for p in (tmp_path / "second").iterdir()} - {".lorasweep-report"}
    assert "curves_other.png" in copy(parents["one"], first) and "curves_other.png" not in written
    assert second != first and copy(parents["one"], second) == written
    assert current_report(client, parents["other"]) == first
    assert "curves_one.png" in copy(parents["other"], first)
    # 0 s since the epoch is 1970-01-01 00:00:00.000 UTC; 0.25 s is millisecond 250, and
    # 61.001 s is 00:01:01.001.
    runs = [parents["one"], parents["other"]]
    ids = [report_id(client, runs, now=t) for t in (0, 0.25, 61.001)]
    for got, stamp in zip(ids, ("19700101-000000-000", "19700101-000000-250", "19700101-000101-001")):
        assert re.fullmatch(rf"{stamp}-[0-9a-f]{{4}}", got), got
    assert sorted(ids) == ids


def test_two_reports_started_in_the_same_second_get_folders_of_their_own(tmp_path):
    """Two reports of one sweep started at the same instant (two processes, each listing the
    parent run's ``analysis/`` folders before either has logged a file) get different
    folders, each holding only its own report's file, both under the instant's UTC second."""
    import datetime
    import time

    from mlflow import MlflowClient

    from analysis.mlflow_copy import ARTIFACT_PATH, report_id

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/same.db")
    exp = client.create_experiment("same", artifact_location=str(tmp_path / "artifacts"))
    parent = _parent(client, exp, "one", study="rank_e2e", model="gpt2", algorithm="grid", scheduler="fifo",
                     space={"r": "grid[4]"}, scientific="adapter.r", nuisance="train.lr")
    now = time.time()
    first, second = report_id(client, [parent], now=now), report_id(client, [parent], now=now)
    assert first != second
    utc = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    for folder in (first, second):
        assert folder.startswith(utc.strftime("%Y%m%d-%H%M%S-")), folder
    for folder in (first, second):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{folder}.md").write_text(folder)
        client.log_artifact(parent, str(tmp_path / folder / f"{folder}.md"), f"{ARTIFACT_PATH}/{folder}")
    for folder in (first, second):
        assert [a.path for a in client.list_artifacts(parent, f"{ARTIFACT_PATH}/{folder}")] == \
            [f"{ARTIFACT_PATH}/{folder}/{folder}.md"]
