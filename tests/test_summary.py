"""The end-of-sweep summary's text (``sweeps/summary.py``), without Ray."""

from __future__ import annotations


def test_the_header_lists_a_long_grid_by_its_ends_and_its_size():
    from sweeps.summary import _values_text

    assert _values_text([1, 4, 16]) == "[1, 4, 16]"
    assert _values_text(list(range(1, 9))) == "[1, 2, 3, 4, 5, 6, 7, 8]"
    assert _values_text(list(range(1, 1001))) == "[1, 2, 3, ..., 999, 1000] (1000 values)"


def test_a_best_trial_tied_with_others_says_so(tmp_path, capsys):
    """Four completed trials, three at val MCC 0.0 (the best, mode max) and one at -0.1: the
    first of the three is named, with the two others it ties with."""
    from types import SimpleNamespace

    from search_spaces import load_space
    from sweeps.summary import _print_best
    from trainables.config import TrialConfig
    from trainables.schema import to_dict
    from trainables.tasks.registry import get_task

    space = tmp_path / "space.yaml"
    space.write_text("scientific:\n  r: {grid: [2, 4, 8, 16]}\n")
    plan = SimpleNamespace(space=load_space(str(space), base=to_dict(TrialConfig())), tracking_uri=f"sqlite:///{tmp_path / 'none.db'}",
                           name="s", cfg=SimpleNamespace(trial=TrialConfig()))
    rows = [{"trial_id": f"t{r:02d}", "r": r, "status": "completed", "mlflow_run_id": f"run{r}", "val_mcc": mcc}
            for r, mcc in ((2, 0.0), (4, 0.0), (8, -0.1), (16, 0.0))]
    _print_best(plan, get_task("glue-cola"), rows, "parent", {})
    out = capsys.readouterr().out
    assert "best trial: r=2 (t02), val MCC 0.00" in out
    assert "tied with 2 other completed trial(s) at val MCC 0.00" in out
    assert "    its adapter: runs:/run2/adapter" in out
    _print_best(plan, get_task("glue-cola"), rows[2:], "parent", {})
    assert "tied with" not in capsys.readouterr().out
    plan.name = "quo'te x"  # the printed command pastes into a shell as one argument
    _print_best(plan, get_task("glue-cola"), rows, "parent", {})
    assert "--out 'quo'\"'\"'te x-best'" in capsys.readouterr().out
    # Full fine-tuning saves the whole model where an adapter would be.
    full = [{**row, "method": "full"} for row in rows]
    _print_best(plan, get_task("glue-cola"), full, "parent", {})
    assert "    its model (full fine-tuning): runs:/run2/adapter" in capsys.readouterr().out


def test_seed_summaries_show_the_published_number_only_beside_one_configuration(capsys):
    """The reference is one configuration's (Table 3: GPT-2 M at r=4): a sweep of one
    configuration's seeds shows it beside its summary, a sweep of ranks beside none of them.
    The summary is the statistic the task's table reports its runs by (Table 3: the mean)."""
    from types import SimpleNamespace

    from analysis.references import over_seeds_for
    from sweeps.summary import _print_seed_summaries
    from trainables.tasks.registry import get_task

    task, reference = get_task("e2e"), {"BLEU": 70.4}
    rows = [{"status": "completed", "r": r, "seed": s, "BLEU": b}
            for r, s, b in ((1, 0, 10.0), (1, 1, 14.0), (1, 2, 11.0), (4, 0, 20.0), (4, 1, 30.0))]
    rows.append({"status": "stopped_early", "r": 4, "seed": 2, "BLEU": 99.0})
    seed, rank = SimpleNamespace(short="seed"), SimpleNamespace(short="r")
    _print_seed_summaries(rows, [rank, seed], task, reference, "median")
    out = capsys.readouterr().out
    assert "median over 3 seeds for r=1: BLEU 11.00\n" in out  # median of 10, 11, 14
    assert "median over 2 seeds for r=4: BLEU 25.00\n" in out  # (20 + 30) / 2; the stopped one left out
    assert "paper" not in out
    assert over_seeds_for("e2e") == "mean" and over_seeds_for("glue-cola") == "median"
    _print_seed_summaries(rows[:3], [seed], task, reference, over_seeds_for("e2e"))
    assert "mean over 3 seeds: BLEU 11.67 (paper 70.4)" in capsys.readouterr().out  # (10 + 14 + 11) / 3


def test_the_sweep_and_the_report_pick_the_same_trial_of_a_tie():
    """Trials tied at the best value: the summary and the report both take the first by trial
    id, whatever order the rows come in (the summary's is by swept value)."""
    import pandas as pd

    from analysis.importance import best_trial
    from analysis.load import TaskInfo
    from sweeps.summary import best_completed
    from trainables.tasks.registry import get_task

    task = get_task("glue-sst2")
    rows = [{"trial_id": tid, "status": "completed", "mlflow_run_id": f"run-{tid}", "val_accuracy": acc, "r": r}
            for tid, acc, r in (("a_00003", 85.5, 2), ("a_00001", 85.5, 16), ("a_00002", 80.0, 4))]
    for order in (rows, rows[::-1], sorted(rows, key=lambda row: row["r"])):
        assert best_completed(order, task)["trial_id"] == "a_00001"
        info = TaskInfo(task.name, task.metric, task.final_metrics)
        assert best_trial(pd.DataFrame(order), info, task.metric)["trial_id"] == "a_00001"


def test_a_trial_note_names_its_trials_unless_every_trial_has_it(capsys):
    from types import SimpleNamespace

    from sweeps.summary import _print_notes

    swept = [SimpleNamespace(short="r")]
    rows = [{"trial_id": f"t{r}", "r": r, "note": note} for r, note in
            ((1, "keep_best: epoch 1 restored"), (4, "METEOR skipped"), (16, "keep_best: epoch 1 restored"))]
    _print_notes(rows, swept)
    assert capsys.readouterr().out == "  note (r=4): METEOR skipped\n  note (r=1, r=16): keep_best: epoch 1 restored\n"
    _print_notes([{**r, "note": "METEOR skipped"} for r in rows], swept)
    assert capsys.readouterr().out == "  note: METEOR skipped\n"
    _print_notes([{"trial_id": f"t{i}", "r": i, "note": "x"} for i in range(6)] + [{"trial_id": "u", "r": 9}], swept)
    assert capsys.readouterr().out == "  note (r=0, r=1, r=2, r=3 and 2 more): x\n"
    # A note of every completed trial's final evaluation (the stopped ones had none).
    done = [{**r, "status": "completed", "note": "METEOR skipped"} for r in rows[:2]]
    _print_notes([*done, {"trial_id": "s", "r": 64, "status": "stopped_early"}], swept)
    assert capsys.readouterr().out == "  note: METEOR skipped\n"


def test_a_groups_chosen_trial_of_a_tie_is_the_best_trial_the_summary_names(tmp_path):
    """Two trials of r=8 tied at the best value: the group table's chosen lr is that of the
    trial the best-trial line names (the first by trial id), whatever the rows' order."""
    from search_spaces import load_space
    from sweeps.summary import best_completed
    from sweeps.summary_tables import render_group_table
    from trainables.config import TrialConfig
    from trainables.schema import to_dict
    from trainables.tasks.registry import get_task

    space = tmp_path / "space.yaml"
    space.write_text("scientific:\n  r: {grid: [8]}\nnuisance:\n  lr: {grid: [2.0e-5, 2.0e-3]}\n")
    swept = load_space(str(space), base=to_dict(TrialConfig())).swept
    task = get_task("glue-cola")
    rows = [{"trial_id": tid, "r": 8, "lr": lr, "status": "completed", "mlflow_run_id": tid, "val_mcc": 0.0}
            for tid, lr in (("a_00001", 2e-5), ("a_00000", 2e-3))]
    assert best_completed(rows, task)["lr"] == 2e-3
    table = render_group_table(rows, swept, ("adapter.r",), task, final=False)
    row = next(line for line in table.splitlines() if line.startswith("8 "))
    assert row.split()[1] == "0.002", table


def test_an_interrupted_sweeps_count_names_the_trials_tune_had_not_started(tmp_path, capsys):
    """Stopped with one of two grid trials running and the other not yet created (a worker
    group's trials run one at a time on 2 CPUs): the count says so, not just "1 unfinished"."""
    from types import SimpleNamespace

    from conftest import sweep_config
    from search_spaces import load_space
    from sweeps.summary import _print_summary
    from trainables.schema import to_dict
    from trainables.tasks.registry import get_task

    space = tmp_path / "space.yaml"
    space.write_text("scientific:\n  r: {grid: [1, 4]}\nfixed: {lr: 2.0e-3}\n")
    cfg = sweep_config("rank_e2e", "--preset", "smoke", "--search-space", str(space), "--set", "eval.generate=false")
    plan = SimpleNamespace(cfg=cfg, space=load_space(str(space), base=to_dict(cfg.trial)), groups=(), n_trials=2,
                           rejected=[], name="intr")
    rows = [{"trial_id": "t0", "r": 1, "adapter.r": 1, "status": "unfinished", "mlflow_run_id": "run0",
             "attempts": 1, "error": ""}]
    counts = {"completed": 0, "stopped_early": 0, "failed": 0, "unfinished": 1}
    _print_summary(plan, get_task("e2e"), rows, counts, tmp_path, SimpleNamespace(interrupted=[]), "parent",
                   "SIGINT")
    assert "  0 completed, 0 stopped early, 0 failed, 1 unfinished, 1 not started\n" in capsys.readouterr().out
    _print_summary(plan, get_task("e2e"), rows, counts, tmp_path, SimpleNamespace(interrupted=[]), "parent", None)
    assert "not started" not in capsys.readouterr().out  # a sweep that ended created every trial
