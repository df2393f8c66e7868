"""analysis/plots.py: rank plots drawn from small hand-made summary frames (no sweep, no
store), checked for what a reader has to be able to see: every label legible, none printed
over another, each number where the axis says it is."""

from __future__ import annotations

import pandas as pd
import pytest

RANKS = [2.0 ** k for k in range(11)]  # 1 ... 1024, the LoRA paper's Table 18 ranks
#: % trainable parameters per unit of rank (LoRA's count is linear in r on fixed targets).
PER_R = {"gpt2": 0.0737, "gpt2-medium": 0.0369, "gpt2-large": 0.0211}


def _summary(models, *, lr=lambda r: 2e-4, value=lambda m, r: 1.2):
    """Rows as analysis.tables.summarise writes them: one per (model, rank), three seeds."""
    rows = []
    for m in models:
        for r in RANKS:
            row = {"adapter.r": r, "model": m, "sweeps": ("s",), "run_ids": ("run",),
                   "trainable_pct": PER_R[m] * r, "chosen.train.lr": (lr(r),)}
            for metric in ("val_loss", "BLEU"):
                v = value(m, r)
                row.update({metric: v, f"{metric}_low": v - 0.01, f"{metric}_high": v + 0.01, f"{metric}_n": 3})
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def task():
    from analysis.load import task_info

    return task_info("e2e")


def _overlaps(texts, renderer):
    boxes = [t.get_window_extent(renderer) for t in texts]
    return [(a.get_text(), b.get_text()) for i, a in enumerate(texts) for j, b in enumerate(texts)
            if i < j and boxes[i].overlaps(boxes[j])]


def test_three_models_get_a_row_of_trainable_pct_each_on_top_at_the_ranks(task):
    """Three models x 11 ranks: each point's % of trainable parameters differs by model, so
    each model has its own row of them above the panel, in its colour, at its ranks."""
    from analysis.plots import rank_figure

    models = ["gpt2", "gpt2-medium", "gpt2-large"]
    fig, _ = rank_figure(_summary(models), task, line_by=["model"], title="t", metrics=["val_loss", "BLEU"])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in [a for a in fig.axes if a.get_visible() and a.get_title()]:
        assert not ax.texts  # no % written beside the 33 points
        color = {c.get_label(): c.lines[0].get_color() for c in ax.containers}
        assert len(ax.child_axes) == 3
        for top, m in zip(ax.child_axes, models):
            labels = top.get_xticklabels()
            assert [t.get_text() for t in labels] == [f"{PER_R[m] * r:.3g}" for r in RANKS]
            assert {t.get_color() for t in labels} == {color[m]}
            # Each label above its rank: the same x on screen as the primary axis's tick.
            below = [ax.transData.transform((r, 1.0))[0] for r in RANKS]
            assert [t.get_window_extent(renderer).x0 <= x <= t.get_window_extent(renderer).x1
                    for t, x in zip(labels, below)] == [True] * len(RANKS)
        rows = [t for top in ax.child_axes for t in top.get_xticklabels()]
        assert _overlaps(rows + [ax.child_axes[-1].xaxis.label, ax.title], renderer) == []
        assert [t.get_text() for t in ax.get_xticklabels()] == [f"{r:g}" for r in RANKS]


def test_notes_beside_points_do_not_overprint_the_next_ranks(task):
    """Each rank chose another learning rate: its note beside its point. At 11 ranks on a
    level line the notes of neighbouring ranks would run into one another."""
    from analysis.plots import rank_figure

    lrs = {r: 1e-4 * (1 + k) for k, r in enumerate(RANKS)}
    fig, drawn = rank_figure(_summary(["gpt2"], lr=lambda r: lrs[r]), task, line_by=[], title="t",
                             metrics=["val_loss", "BLEU"], nuisance=["train.lr"])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in [a for a in fig.axes if a.get_visible() and a.get_title()]:
        assert sorted(t.get_text() for t in ax.texts) == sorted(f"lr={lrs[r]:.4g}" for r in RANKS)
        assert _overlaps(ax.texts, renderer) == []
        assert all(ax.bbox.contains(*t.get_window_extent(renderer).p0) for t in ax.texts)


def test_a_setting_chosen_alike_at_every_rank_is_said_once_in_the_legend(task):
    from analysis.plots import rank_figure

    fig, _ = rank_figure(_summary(["gpt2"]), task, line_by=[], title="t", metrics=["val_loss"],
                         nuisance=["train.lr"])
    ax = fig.axes[0]
    assert not ax.texts
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["gpt2 (lr=0.0002 at every rank)"]


def test_a_single_models_source_curves_are_in_its_lines_colour(task):
    from analysis.compare import SOURCE_COLUMNS
    from analysis.plots import rank_figure

    src = pd.DataFrame([{"model": "gpt2-medium", "our_model": "gpt2-medium", "stand_in": False, "table": "t18",
                         "label": "LoRA paper Table 18", "kind": "paper", "r": r, "metric": "val_loss",
                         "value": 1.16} for r in RANKS], columns=SOURCE_COLUMNS)
    fig, _ = rank_figure(_summary(["gpt2-medium"]), task, line_by=[], title="t", metrics=["val_loss"], sources=src)
    ax = fig.axes[0]
    (ours,) = ax.containers
    (theirs,) = [ln for ln in ax.get_lines() if ln.get_label() == "GPT-2 M: LoRA paper Table 18"]
    assert theirs.get_color() == ours.lines[0].get_color() and theirs.get_linestyle() == "--"


def test_an_importance_plots_title_of_a_long_sweep_name_stays_inside_the_figure():
    from analysis.plots import importance_figure

    name = "lr_optuna / lr_optuna-smoke-20261207-170916-41d5af"  # a sweep's label as the report writes it
    fig = importance_figure({"train.lr": 0.61, "adapter.r": 0.22, "adapter.dropout": 0.17},
                            title=f"Hyperparameter importance for val loss - {name}", evaluator="FanovaImportanceEvaluator")
    fig.canvas.draw()
    title = fig.axes[0].title
    box = title.get_window_extent(fig.canvas.get_renderer())
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1, (box, fig.bbox)
    assert name in title.get_text().replace("\n", " ")


def test_lines_sharing_a_pct_still_get_a_row_of_room_each(task, monkeypatch):
    """Two of three models with the same % at every rank: the top axes still draw one row per
    line, so the figure is as tall as for three different %s."""
    from analysis.plots import rank_figure

    monkeypatch.setitem(PER_R, "gpt2-xl", PER_R["gpt2-large"])
    heights = []
    for models in (["gpt2", "gpt2-medium", "gpt2-large"], ["gpt2", "gpt2-large", "gpt2-xl"]):
        fig, _ = rank_figure(_summary(models), task, line_by=["model"], title="t", metrics=["val_loss", "BLEU"])
        assert all(len(ax.child_axes) == 3 for ax in fig.axes if ax.get_visible() and ax.get_title())
        heights.append(fig.get_size_inches()[1])
    assert heights[0] == heights[1]
