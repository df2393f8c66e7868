"""The learning rate x LoRA rank heatmap of a metric: per cell, the best trial that ran to the
end, its value written in the cell (the view the LoRA and QLoRA papers' lr/rank grids give)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.tables import R_KEY
from analysis.values import finite, fmt_value
from trainables.mlflow_names import COMPLETED

LR_KEY = "train.lr"


#: Search-space kinds with a few set values: a heatmap has a row or column per value.
DISCRETE = ("grid", "choice")


def on_a_grid(trials: pd.DataFrame, sweeps: Any) -> pd.DataFrame:
    """The trials of the sweeps that draw lr and rank, where swept, from a set of values (an
    Optuna ``loguniform`` lr would give a row per trial)."""
    drawn = {s.run_id for s in sweeps
             if any(p.key in (LR_KEY, R_KEY) and p.kind not in DISCRETE for p in s.swept)}
    return trials[~trials["sweep_run_id"].isin(drawn)]


def varies_lr_and_rank(trials: pd.DataFrame) -> bool:
    """Whether the trials tried at least two learning rates and two ranks."""
    return all(k in trials and trials[k].dropna().nunique() > 1 for k in (LR_KEY, R_KEY))


def lr_rank_cells(trials: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    """The best value of ``metric`` (``mode``: ``min`` or ``max``) over the completed trials of
    each (lr, rank): rows are learning rates, columns ranks, both ascending; a cell with no
    completed trial (every one stopped early or failed) is NaN."""
    done = trials[(trials["status"] == COMPLETED) & trials[LR_KEY].notna() & trials[R_KEY].notna()]
    done = done[done[metric].map(finite)] if metric in done else done.iloc[0:0]
    lrs = sorted(float(v) for v in trials[LR_KEY].dropna().unique())
    ranks = sorted(int(v) for v in trials[R_KEY].dropna().unique())
    cells = pd.DataFrame(np.nan, index=pd.Index(lrs, name=LR_KEY), columns=pd.Index(ranks, name=R_KEY))
    if not done.empty:
        best = done.groupby([done[LR_KEY].astype(float), done[R_KEY].astype(int)])[metric]
        for (lr, r), value in (best.max() if mode == "max" else best.min()).items():
            cells.loc[lr, r] = float(value)
    return cells


def lr_rank_figure(cells: pd.DataFrame, *, heading: str, mode: str, fmt: str, title: str) -> tuple[Any, dict]:
    """The heatmap of :func:`lr_rank_cells`: colour and text per cell (``-`` where no trial
    completed), the better end of the colour scale brighter."""
    from analysis.plots import CMAP, new_figure

    values = cells.to_numpy(dtype=float)
    fig = new_figure(1.6 + 0.75 * len(cells.columns), 1.4 + 0.45 * len(cells.index))
    ax = fig.add_subplot()
    cmap = CMAP if mode == "max" else f"{CMAP}_r"
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, aspect="auto", origin="lower")
    fig.colorbar(image, ax=ax, label=f"{heading} ({'higher' if mode == 'max' else 'lower'} is better)")
    ax.set_xticks(range(len(cells.columns)), [str(r) for r in cells.columns])
    ax.set_yticks(range(len(cells.index)), [f"{lr:.3g}" for lr in cells.index])
    ax.set_xlabel("LoRA rank r")
    ax.set_ylabel("learning rate")
    ax.set_title(title, fontsize=9, wrap=True)
    finite = values[np.isfinite(values)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for (i, j), v in np.ndenumerate(values):
        light = math.isfinite(v) and (v > middle if mode == "max" else v < middle)
        ax.text(j, i, fmt_value(v if math.isfinite(v) else None, fmt), ha="center", va="center",
                fontsize=8, color="black" if light else "white" if math.isfinite(v) else "gray")
    return fig, {"lr": list(cells.index), "r": list(cells.columns), "values": values.tolist()}
