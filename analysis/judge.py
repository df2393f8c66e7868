"""The judge's grades per compared model (instruction tuning with ``eval.judge``): each judged
trial's ``judge_score/<model>`` metrics (:mod:`trainables.tasks.answers`) as one table, the
models in the order the judge saw their answers (A, B, C, ...)."""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd

from analysis.tables import Table, to_html

PREFIX = "judge_score/"


def _model_order(trials: pd.DataFrame, labels: list[str]) -> list[str]:
    """``labels`` in ``eval.compare_models`` order (the first judged trial's), others after."""
    from trainables.tasks.answers import model_labels

    try:
        names = ast.literal_eval(str(trials["eval.compare_models"].iloc[0]))
        order = [m for m in model_labels(list(names)) if m in labels]
    except (KeyError, ValueError, SyntaxError, TypeError):
        order = []
    return order + sorted(set(labels) - set(order))


def judge_grades(trials: pd.DataFrame) -> Table | None:
    """One row per judged trial (sweep, run), one column per compared model: its mean grade
    (1-9) over the prompts graded; None when no trial was judged."""
    cols = [c for c in trials.columns if c.startswith(PREFIX)]
    judged = trials[trials[cols].notna().any(axis=1)] if cols else trials.iloc[:0]
    if judged.empty:
        return None
    models = _model_order(judged, [c.removeprefix(PREFIX) for c in cols])
    rows = [[str(r["sweep"]), str(r["run_name"]),
             *(f"{r[PREFIX + m]:.2f}" if pd.notna(r[PREFIX + m]) else "-" for m in models)]
            for _, r in judged.iterrows()]
    frame = judged[["sweep", "run_id", "run_name", *(PREFIX + m for m in models)]]
    return Table(title="Judge grades per compared model (1-9, mean over the prompts)",
                 headers=["sweep", "trial", *models], rows=rows, align=["l", "l", *["r"] * len(models)],
                 notes=["every prompt, answer, grade and justification: outputs/judge_table.json "
                        "in each trial's run"], frame=frame)


def judge_section(trials: pd.DataFrame, out_dir: Path, stem: str) -> tuple[list[str], list[Path]]:
    """The report's HTML for :func:`judge_grades` and the CSV written beside it (nothing when
    no trial was judged)."""
    table = judge_grades(trials)
    if table is None:
        return [], []
    path = Path(out_dir) / f"{stem}.csv"
    table.frame.to_csv(path, index=False)
    return [to_html(table)], [path]
