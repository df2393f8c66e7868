"""Learning curves: every trial's per-report metric against epochs with ASHA's decisions (its
rungs, where it stopped trials), and training loss per optimizer step. Like every figure of the
report (:mod:`analysis.plots`), drawn on an Agg canvas, returned with the numbers it drew."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.load import Sweep, TaskInfo, by_run, status_text
from analysis.plots import _colors, _direction, new_figure
from analysis.tables import R_KEY
from analysis.values import fmt_value, is_number, sort_key
from search_spaces import short_name
from trainables.mlflow_names import STOPPED
from trainables.report import K, LAST_PREFIX

STOP_LABEL = "stopped by ASHA"
STOP_LABEL_OTHER = "stopped early"
RUNG_LABEL = "ASHA rung"
RESTORED_LABEL = "final evaluation on the best report's weights"
#: Line styles told apart in a legend (one per value of a second swept setting).
LINESTYLES = ("-", "--", ":", "-.")


def asha_rungs(grace_period: float, reduction_factor: float, max_t: float) -> list[float]:
    """The epochs at which ASHA compares trials: ``grace_period * reduction_factor**k`` up to
    ``max_t`` (Ray's ``_Bracket``: ``int(log(max_t / grace) / log(rf) + 1)`` rungs)."""
    if grace_period <= 0 or reduction_factor <= 1 or max_t < grace_period:
        return []
    n = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return [grace_period * reduction_factor ** k for k in range(n)]


def curve(history: pd.DataFrame, run_id: str, key: str, *, x: str = "epoch") -> tuple[np.ndarray, np.ndarray]:
    """``key``'s values of one trial against ``x`` (``epoch``, joined on the optimizer step
    both were logged at, or ``step``)."""
    h = history[history["run_id"] == run_id]
    y = h[h["key"] == key][["step", "value"]]
    if x == "step":
        y = y.sort_values("step")
        return y["step"].to_numpy(float), y["value"].to_numpy(float)
    xs = h[h["key"] == x][["step", "value"]].rename(columns={"value": "x"})
    joined = y.merge(xs, on="step").sort_values("step")
    return joined["x"].to_numpy(float), joined["value"].to_numpy(float)


#: A method study colours its curves by method (each method's rank is its own).
METHOD_KEY = "adapter.method"


def color_key(trials: pd.DataFrame, sweep: Sweep | None = None) -> str | None:
    """Colour curves by method where several ran, else by rank; when the rank is fixed, by the
    first numeric swept setting."""
    candidates = [METHOD_KEY, R_KEY] + [p.key for p in (sweep.swept if sweep else ()) if p.numeric and p.key != "seed"]
    for key in candidates:
        if key in trials and trials[key].nunique(dropna=True) > 1:
            return key
    return None


def _val_curve(h: pd.DataFrame, t: pd.Series, key: str, restored: list) -> tuple[np.ndarray, np.ndarray]:
    """A trial's validation curve. Where its final report's value is the restored best
    weights' (keep_best), the curve ends at the last report's own (``last_<key>``) and the
    restored value goes to ``restored`` as a marker."""
    x, y = curve(h, t["run_id"], key)
    own = t.get(LAST_PREFIX + key)
    if len(y) and own is not None and math.isfinite(own):
        restored.append((float(x[-1]), float(y[-1]), t["run_id"]))
        y = np.append(y[:-1], own)
    return x, y


def learning_curves(trials: pd.DataFrame, history: pd.DataFrame, sweep: Sweep, task: TaskInfo,
                    ) -> tuple[Figure, dict[str, Any]]:
    """Left: the per-report metric of every trial against epochs, an X where ASHA stopped a
    trial (its last report), a hollow diamond where a trial's final evaluation ran on its best
    report's restored weights (its curve ends at its last report's own value) and ASHA's
    rungs as vertical lines. Right: training loss per
    optimizer step. Colour: the method where several ran, else the rank (a discrete colormap
    with a colorbar)."""
    metric = task.metric
    fig = new_figure(12, 4.6)
    ax_val, ax_train = fig.subplots(1, 2)
    ckey = color_key(trials, sweep)
    values = sorted(set(trials[ckey].dropna()), key=sort_key) if ckey else [None]
    palette = dict(zip(values, _colors(len(values), qualitative=ckey == METHOD_KEY)))
    style_key = _style_key(trials, sweep, exclude=ckey)
    styles = dict(zip(sorted(set(trials[style_key]), key=sort_key), LINESTYLES)) if style_key else {}

    data: dict[str, Any] = {"curves": {}, "train": {}, "stopped": [], "rungs": [], "restored": [],
                            "color_key": ckey, "style_key": style_key}
    stop_colors: list[Any] = []
    runs = by_run(history)
    for _, t in trials.iterrows():
        color = palette.get(t[ckey] if ckey else None, "0.5")
        ls = styles.get(t[style_key], "-") if style_key else "-"
        h = runs.get(t["run_id"], history.iloc[:0])
        x, y = _val_curve(h, t, metric.name, data["restored"])
        data["curves"][t["run_id"]] = (x, y)
        if len(x):
            ax_val.plot(x, y, color=color, ls=ls, marker=".", ms=4 if len(x) > 2 else 8, lw=1.2, alpha=0.9)
            if t["status"] == STOPPED:
                data["stopped"].append((float(x[-1]), float(y[-1]), t["run_id"]))
                stop_colors.append(color)
        sx, sy = curve(h, t["run_id"], K.train_loss, x="step")
        data["train"][t["run_id"]] = (sx, sy)
        if len(sx):  # a curve of one or two reports gets its points marked, or it is invisible
            ax_train.plot(sx, sy, color=color, ls=ls, lw=0.8, alpha=0.8, marker="." if len(sx) < 3 else None, ms=8)
    if data["restored"]:
        xs, ys, _ = zip(*data["restored"])
        ax_val.plot(xs, ys, ls="none", marker="D", ms=6, mfc="none", mec="black", mew=1.0,
                    label=RESTORED_LABEL, zorder=5)
    if sweep.prunes and sweep.grace_period and sweep.reduction_factor:
        ends = [c[0][-1] for c in data["curves"].values() if len(c[0])]
        max_t = sweep.max_t or (max(ends) if ends else 0.0)
        data["rungs"] = asha_rungs(sweep.grace_period, sweep.reduction_factor, max_t)
        for k, rung in enumerate(data["rungs"]):
            ax_val.axvline(rung, color="0.5", ls=":", lw=1.2, label=RUNG_LABEL if k == 0 else None)
        if data["rungs"]:
            ax_val.set_title(f"{metric.heading} per epoch (ASHA: grace {sweep.grace_period:g}, "
                             f"reduction factor {sweep.reduction_factor:g})", fontsize=10)
    if not ax_val.get_title():
        ax_val.set_title(f"{metric.heading} per epoch ({sweep.scheduler})", fontsize=10)
    ax_val.set_xlabel("epoch")
    ends = [x for x, _ in data["curves"].values() if len(x)]
    if ends and all(float(v).is_integer() for x in ends for v in x):
        ax_val.xaxis.set_major_locator(MaxNLocator(integer=True))  # reports once an epoch
    ax_val.set_ylabel(f"{metric.heading} ({_direction(metric.mode)})")
    ax_train.set_title("training loss per optimizer step", fontsize=10)
    ax_train.set_xlabel("optimizer step")
    ax_train.set_ylabel(_train_loss_label(trials))
    for ax in (ax_val, ax_train):
        ax.grid(alpha=0.3)
    if style_key:
        for v, ls in styles.items():
            ax_train.plot([], [], color="0.3", ls=ls, label=f"{short_name(style_key)}={fmt_value(v)}")
        ax_train.legend(fontsize=7, title=short_name(style_key), title_fontsize=7)
    if ckey:
        _colorbar(fig, [ax_val, ax_train], values, palette, ckey)
    fig.suptitle(f"Learning curves - {sweep.label}: {len(trials)} trials ({status_text(trials['status'])})",
                 fontsize=11)
    if data["stopped"]:
        _stop_markers(ax_val, data["stopped"], stop_colors,
                      STOP_LABEL if sweep.prunes else STOP_LABEL_OTHER)
    if ax_val.get_legend_handles_labels()[0]:
        ax_val.legend(fontsize=7)
    return fig, data


def _colorbar(fig: Figure, axes: list[Any], values: list[Any], palette: dict[Any, Any], key: str) -> None:
    """A discrete colorbar beside ``axes``: one colour per value of ``key``."""
    bounds = np.arange(len(values) + 1) - 0.5
    cmap = ListedColormap([palette[v] for v in values])
    sm = ScalarMappable(norm=BoundaryNorm(bounds, cmap.N), cmap=cmap)
    cb = fig.colorbar(sm, ax=axes, ticks=np.arange(len(values)), pad=0.01, aspect=30)
    cb.ax.set_yticklabels([fmt_value(v) for v in values])
    cb.set_label("LoRA rank r" if key == R_KEY else short_name(key))


def _stop_markers(ax: Any, stopped: Sequence[tuple[float, float, str]], colors: Sequence[Any], label: str) -> None:
    """An X in the trial's colour at each stopped trial's last report; Xs that would sit on
    one another (one epoch, about one value) are set side by side, a marker's width apart."""
    from matplotlib.transforms import offset_copy

    ax.figure.draw_without_rendering()  # final limits and layout: the markers' places in points
    to_pt = 72 / ax.figure.dpi
    pts = [ax.transData.transform((x, y)) * to_pt for x, y, _ in stopped]
    placed: list[tuple[float, float]] = []
    for (x, y, _), (px, py), color in zip(stopped, pts, colors):
        shift = 0.0
        while any(abs(px + shift - qx) < 9 and abs(py - qy) < 9 for qx, qy in placed):
            shift += 9
        placed.append((px + shift, py))
        ax.plot([x], [y], ls="none", marker="X", ms=9, color=color, mec="black", mew=0.8, zorder=5,
                transform=offset_copy(ax.transData, fig=ax.figure, x=shift, units="points"))
    ax.plot([], [], ls="none", marker="X", ms=9, color="0.6", mec="black", mew=0.8, label=label)


def _train_loss_label(trials: pd.DataFrame) -> str:
    """The training loss axis's label: it says when the loss is label-smoothed (not val loss)."""
    smoothing = sorted({float(v) for v in trials.get("train.label_smoothing", pd.Series(dtype=object)).dropna()
                        if is_number(v) and float(v) > 0})
    return f"training loss (label smoothing {', '.join(f'{v:g}' for v in smoothing)})" if smoothing else "training loss"


def _style_key(trials: pd.DataFrame, sweep: Sweep, *, exclude: str | None) -> str | None:
    """A second swept setting with at most four values, told apart by line style."""
    for p in sweep.swept:
        if p.key not in (exclude, "seed") and p.key in trials \
                and 1 < trials[p.key].nunique(dropna=True) <= len(LINESTYLES):
            return p.key
    return None


# --------------------------------------------------------------------------- importance
