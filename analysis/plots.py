"""Figures: metric vs LoRA rank, across tasks, importances (learning curves: :mod:`analysis.curves`).

Figures are ``matplotlib.figure.Figure`` objects drawn on an Agg canvas directly, not through
pyplot: no global figure registry and no backend switch when this module is imported. Each
plot function returns the figure *and* the numbers it drew, so tests (and notebooks) can check
one against the other; :func:`save` writes PNG and SVG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from analysis.load import TaskInfo
from analysis.compare import SOURCE_COLUMNS
from analysis.references import model_label as source_model_label
from analysis.tables import R_KEY, chosen_text, model_legend
from analysis.values import fmt_value, sort_key
from search_spaces import short_name
from trainables.report import K

CMAP = "viridis"


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """``<stem>.png`` (150 dpi) and ``<stem>.svg`` in ``out_dir``."""
    paths = [Path(out_dir) / f"{stem}.png", Path(out_dir) / f"{stem}.svg"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    return paths


def _direction(mode: str) -> str:
    return "lower is better" if mode == "min" else "higher is better"


def _rank_axis(ax: Any, ranks: Sequence[float]) -> None:
    """log2 x axis with a tick at every rank, labelled 1, 2, 4, ... (not 2^0, 2^1)."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(sorted(ranks)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    if len(ranks) == 1:
        ax.set_xlim(ranks[0] / 2, ranks[0] * 2)


# --------------------------------------------------------------------------- rank plots

POINT_COLUMNS = ["line", "r", "metric", "value", "low", "high", "n", "sweeps", K.trainable_pct, "model",
                 "rows", "chosen", "others", "run_ids"]
#: Line style of a source curve by the kind of its table.
SOURCE_STYLES = {"paper": "--", "reproduction": ":", "report": "-."}


def rank_points(summary: pd.DataFrame, task: TaskInfo, *, line_by: Sequence[str],
                metrics: Sequence[str], select_by: str | None = None, others: Sequence[str] = (),
                nuisance: Sequence[str] = ()) -> pd.DataFrame:
    """The points of a rank plot from :func:`analysis.tables.summarise` rows: one line per
    value of ``line_by`` (``model`` or scientific settings), one point per rank and metric
    (the median over seeds of the row's chosen trials, and their range).

    When ``others`` (scientific settings not in ``line_by``) vary too, each (line, rank) shows
    the row with the best ``select_by`` (default: the task's per-report metric), the same row
    in every panel; ``chosen`` names its values of ``others`` and the ``nuisance`` values its
    trials chose (``lr=0.002``).
    """
    if summary.empty or R_KEY not in summary:
        return pd.DataFrame(columns=POINT_COLUMNS)
    select = task.spec(select_by or task.metric.name)
    s = summary[summary[R_KEY].notna()]
    labels = _line_label(s, line_by)
    models = {m: i for i, m in enumerate(dict.fromkeys(s["model"]))}

    def line_key(label: str) -> tuple:
        first = s[labels == label].iloc[0]
        return tuple((0, models[first[c]]) if c == "model" else sort_key(first[c]) for c in line_by)

    order = {lab: i for i, lab in enumerate(sorted(dict.fromkeys(labels), key=line_key))}
    rows = []
    for (line, r), g in sorted(s.groupby([labels, R_KEY], sort=False), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        col = g[select.name]
        pick = g.loc[col.idxmin() if select.mode == "min" else col.idxmax()] if col.notna().any() else g.iloc[0]
        picked = [f"{short_name(k)}={fmt_value(pick[k])}" for k in others]
        chosen = picked + [f"{short_name(k)}={chosen_text(pick, k)}" for k in nuisance]
        for m in metrics:
            if pd.isna(pick[m]):
                continue
            rows.append({"line": line, "r": float(r), "metric": m, "value": float(pick[m]),
                         "low": float(pick[f"{m}_low"]), "high": float(pick[f"{m}_high"]),
                         "n": int(pick[f"{m}_n"]), "sweeps": len(pick.get("sweeps", ())),
                         K.trainable_pct: float(pick[K.trainable_pct]),
                         "model": pick["model"], "rows": len(g), "chosen": " ".join(chosen),
                         "others": " ".join(picked),
                         "run_ids": " ".join(pick["run_ids"])})
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def _line_label(s: pd.DataFrame, line_by: Sequence[str]) -> pd.Series:
    if not line_by:
        return pd.Series([""] * len(s), index=s.index)
    parts = []
    for c in line_by:
        if c == "model":
            parts.append(s["model"].map(model_legend))
        else:
            parts.append(s[c].map(lambda v, c=c: f"{short_name(c)}={fmt_value(v)}"))
    out = parts[0]
    for p in parts[1:]:
        out = out + " " + p
    return out


def _grid(n_panels: int) -> tuple[int, int, float]:
    ncols = min(3, max(1, n_panels))
    return ncols, max(1, math.ceil(n_panels / ncols)), max(4.6 * ncols, 7.0)


def _errorbar(ax: Any, p: pd.DataFrame, color: Any, label: str) -> None:
    """Median and range over seeds (a bar from the lowest to the highest seed)."""
    yerr = [(p["value"] - p["low"]).clip(lower=0), (p["high"] - p["value"]).clip(lower=0)]
    ax.errorbar(p["r"], p["value"], yerr=yerr, marker="o", ms=4, capsize=3, color=color, label=label)


def rank_figure(summary: pd.DataFrame, task: TaskInfo, *, line_by: Sequence[str], title: str,
                metrics: Sequence[str] | None = None, select_by: str | None = None,
                others: Sequence[str] = (), nuisance: Sequence[str] = (),
                sources: pd.DataFrame | None = None) -> tuple[Figure, dict[str, pd.DataFrame]]:
    """One panel per metric against the LoRA rank (log2 axis): ours as median and range over
    seeds, with the % of trainable parameters on a top axis (or beside each point when one
    rank has several, or the ranks' points differ in ``others``), and each model's source curves (``sources``, from
    :func:`analysis.compare.source_curves`) dashed in the model's colour. Returns the figure
    and what it drew: ``points`` (ours) and ``sources`` (the source values drawn)."""
    names = list(metrics or [m.name for m in task.metrics])
    points = rank_points(summary, task, line_by=line_by, metrics=names, select_by=select_by,
                         others=others, nuisance=nuisance)
    sources = sources if sources is not None else pd.DataFrame(columns=SOURCE_COLUMNS)
    panels = [m for m in names if (points["metric"] == m).any()]
    ncols, nrows, width = _grid(len(panels))
    lines = list(dict.fromkeys(points["line"]))
    # Rows of % on the top axes: one, or one per line where the lines differ at some rank.
    pct_rows = len(lines) if len(points) and points.groupby("r")[K.trainable_pct].nunique().max() > 1 else 1
    fig = new_figure(width, (3.6 + 0.3 * (pct_rows - 1)) * nrows + 1.2)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    colors = dict(zip(lines, _colors(len(lines), qualitative=True)))
    everywhere = _same_at_every_rank(points)
    drawn = []
    for ax, name in zip(axes, panels):
        spec = task.spec(name)
        pts = points[points["metric"] == name]
        for line in lines:
            p = pts[pts["line"] == line].sort_values("r")
            if not p.empty:
                label = line or model_legend(p["model"].iloc[0])
                _errorbar(ax, p, colors[line], f"{label} ({everywhere[line]})" if line in everywhere else label)
        # Each model's source curves in its line's colour (one line: the model's line).
        model_color = ({m: colors[ln] for ln, m in zip(pts["line"], pts["model"])}
                       if "model" in line_by or len(lines) == 1 else {})
        drawn.append(_draw_sources(ax, sources[sources["metric"] == name], model_color))
        ax.set_xlabel("LoRA rank r (log2 scale)")
        ax.set_ylabel(f"{spec.heading} ({_direction(spec.mode)})")
        ax.set_title(f"{spec.heading} vs rank", fontsize=10)
        ax.grid(alpha=0.3)
    # The same rank axis on every panel: ours and every source rank drawn.
    ranks = sorted(set(points["r"]).union(*(d["r"] for d in drawn)))
    notes = {}
    for ax, name in zip(axes, panels):
        _rank_axis(ax, ranks)
        if len(ranks) > 1:
            ax.set_xlim(ranks[0] / 1.4, ranks[-1] * 1.4)
        pts = points[points["metric"] == name]
        pts = pts.assign(chosen=pts["chosen"].where(~pts["line"].isin(everywhere), ""))
        notes[ax] = _trainable_pct(ax, pts, colors, on_top=pts["others"].nunique() <= 1)
        if notes[ax]:
            ax.margins(y=0.12)  # room above the highest point for its note
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    _figure_legend(fig, axes[:len(panels)])
    text = f"{title}\n{_spread(points)}; final metrics from completed trials"
    if drawn and any(len(d) for d in drawn):
        text += ("; the sources' numbers for each model, unit-converted (dashed: paper, dotted: "
                 "reproduction, dash-dot: other report; star: a single row)")
    if any("%" in n[2] for its_notes in notes.values() for n in its_notes):
        text += "; beside a point: its % of trainable parameters"
    if sources["stand_in"].any():
        text += ("\nSMOKE STAND-INS (tiny models, synthetic data) beside the numbers of the models "
                 "they stand for: no reproduction result")
    fig.suptitle(_wrap(text, width), fontsize=10)
    if any(notes.values()):
        fig.draw_without_rendering()  # the final layout: where the notes' points are
        for ax, its_notes in notes.items():
            _annotate(ax, its_notes, colors)
    drawn_sources = pd.concat(drawn, ignore_index=True) if drawn else sources.iloc[0:0]
    return fig, {"points": points, "sources": drawn_sources}


def _draw_sources(ax: Any, src: pd.DataFrame, model_color: dict[str, Any]) -> pd.DataFrame:
    """Each (model, table) of ``src`` as a curve (or one star, for a one-row table) in the
    colour of our line for that model, one line style per table of the model."""
    parts = []
    for (our_model, _), c in src.groupby(["our_model", "table"], sort=False):
        if model_color and our_model not in model_color:
            continue
        c = c.sort_values("r")
        first = c.iloc[0]
        style = SOURCE_STYLES[first["kind"]]
        label = f"{source_model_label(first['model'])}: {first['label']}"
        color = model_color.get(our_model, "0.25")
        if len(c) == 1:
            ax.plot(c["r"], c["value"], ls="none", marker="*", ms=10, color=color, mec="black",
                    mew=0.5, label=label, zorder=4)
        else:
            ax.plot(c["r"], c["value"], ls=style, marker="x", ms=4, lw=1.1, color=color, alpha=0.85,
                    label=label)
        parts.append(c)
    return pd.concat(parts, ignore_index=True) if parts else src.iloc[0:0]


def _same_at_every_rank(points: pd.DataFrame) -> dict[str, str]:
    """Line -> its points' ``chosen`` text where it is one text at every rank of the line
    (``lr=0.0002``): said once in the line's legend entry, not beside each point."""
    same = {}
    for line, p in points.groupby("line", sort=False):
        texts = set(p["chosen"])
        if len(texts) == 1 and p["r"].nunique() > 1 and (text := texts.pop()):
            same[line] = f"{text} at every rank"
    return same


def _trainable_pct(ax: Any, pts: pd.DataFrame, colors: dict[str, Any], *,
                   on_top: bool = True) -> list[tuple[float, float, str, str]]:
    """The % of trainable parameters of each rank on top axes (unless not ``on_top``: the
    points of different ranks are of different other settings, LoRA targets say): one row
    of tick labels when every line has the same % at a rank, else one row per line in the
    line's colour. Returns the notes to write beside the points (r, value, text, line):
    each point's % where no top axis shows it; the values of the other settings a point
    was chosen by."""
    known = pts[pts[K.trainable_pct].notna()]
    per_rank = known.groupby("r")[K.trainable_pct].agg(lambda v: len(set(np.round(v, 6))))
    per_line = known.groupby(["line", "r"])[K.trainable_pct].agg(lambda v: len(set(np.round(v, 6))))
    every_point = len(known) == len(pts)
    if on_top and every_point and (per_rank == 1).all():
        _pct_rows(ax, [known], ["black"])
    elif on_top and every_point and (per_line == 1).all():
        lines = list(dict.fromkeys(known["line"]))
        _pct_rows(ax, [known[known["line"] == ln] for ln in lines], [colors[ln] for ln in lines])
    else:
        on_top = False
    return [(p["r"], p["value"], text, p["line"]) for _, p in pts.iterrows()
            if (text := " ".join(t for t in ("" if on_top or pd.isna(p[K.trainable_pct])
                                             else f"{p['trainable_pct']:.3g}%", p["chosen"]) if t))]


def _pct_rows(ax: Any, rows: Sequence[pd.DataFrame], colors: Sequence[Any], fontsize: float = 7) -> None:
    """One secondary top axis per row: its ranks' % as tick labels in ``colors``, the first
    row next to the axes, each further one a row of text higher."""
    pcts = [row.groupby("r")[K.trainable_pct].first() for row in rows]
    rotation = 30 if max(map(len, pcts)) > 6 else 0
    chars = max(len(f"{v:.3g}") for pct in pcts for v in pct)
    # A row's height: a rotated label's box is half its length (sin 30) plus its height.
    row_pt = fontsize * (0.65 * chars / 2 + 1.4 if rotation else 1.3)
    for k, (pct, color) in enumerate(zip(pcts, colors)):
        top = ax.secondary_xaxis("top")
        top.xaxis.set_minor_locator(NullLocator())
        top.set_xticks(list(pct.index), [f"{v:.3g}" for v in pct], fontsize=fontsize, rotation=rotation,
                       color=color)
        top.tick_params(axis="x", length=3.5 if k == 0 else 0, pad=2 + k * row_pt)
        if k == len(rows) - 1:
            top.set_xlabel("% trainable parameters (ours" + (", one row per line in its colour)"
                                                             if len(rows) > 1 else ")"), fontsize=8)


def _annotate(ax: Any, notes: Sequence[tuple[float, float, str, str]], colors: dict[str, Any],
              line_pt: float = 8) -> None:
    """Each note beside its point, in its line's colour; a note that would overprint one
    written before it (at its rank or the next) goes up a line at a time. Call once the
    figure's layout is final (the offsets are in points)."""
    renderer = ax.figure.canvas.get_renderer()
    ys = [ax.transData.transform((r, v))[1] for r, v, _, _ in notes]
    placed: list[Any] = []
    for i in sorted(range(len(notes)), key=lambda i: (notes[i][0], ys[i])):
        r, value, text, line = notes[i]
        note = ax.annotate(text, (r, value), xytext=(4, line_pt / 2), textcoords="offset points",
                           fontsize=6, color=colors[line])
        box = note.get_window_extent(renderer)
        lift = 0.0
        while any(box.translated(0, lift * ax.figure.dpi / 72).overlaps(b) for b in placed):
            lift += line_pt / 2
        note.xyann = (4, line_pt / 2 + lift)
        placed.append(note.get_window_extent(renderer))


def _figure_legend(fig: Figure, axes: Sequence[Any]) -> None:
    """One legend for all panels, below them (every label once)."""
    from matplotlib.container import ErrorbarContainer

    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    # Ours first, then the sources.
    seen = dict(sorted(seen.items(), key=lambda kv: not isinstance(kv[1], ErrorbarContainer)))
    if seen:  # as many columns as the longest label leaves room for; labels wrapped to a column
        import textwrap

        width, char_in, handle_in = fig.get_figwidth(), 0.055, 0.6  # inches at 7 pt
        ncols = max(1, min(3, len(seen), int(width // (handle_in + char_in * max(map(len, seen))))))
        chars = max(20, int((width / ncols - handle_in) / char_in))
        fig.legend(list(seen.values()), [textwrap.fill(label, chars) for label in seen],
                   loc="outside lower center", fontsize=7, ncols=ncols, frameon=False)


def cross_task_figure(per_task: dict[str, tuple[pd.DataFrame, TaskInfo]], metrics: Sequence[str], *,
                      title: str) -> tuple[Figure, pd.DataFrame]:
    """Tasks side by side: one panel per metric they share (SQuAD and E2E both report BLEU and
    ROUGE-L), one line per task and model, the best row of each rank by the task's own
    per-report metric, median and range over seeds against the rank (log2 axis)."""
    frames = []
    for name, (summary, task) in per_task.items():
        pts = rank_points(summary, task, line_by=["model"], metrics=metrics)
        pts["line"] = [f"{name}: {line}" if line else name for line in pts["line"]]
        frames.append(pts)
    points = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=POINT_COLUMNS)
    panels = [m for m in metrics if (points["metric"] == m).any()]
    ncols, nrows, width = _grid(len(panels))
    fig = new_figure(width, 3.6 * nrows + 0.8)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    lines = list(dict.fromkeys(points["line"]))
    colors = dict(zip(lines, _colors(len(lines), qualitative=True)))
    any_task = next(iter(per_task.values()))[1]
    for ax, name in zip(axes, panels):
        spec = any_task.spec(name)
        pts = points[points["metric"] == name]
        for line in lines:
            p = pts[pts["line"] == line].sort_values("r")
            if not p.empty:
                _errorbar(ax, p, colors[line], line)
        _rank_axis(ax, sorted(set(pts["r"])))
        ax.set_xlabel("LoRA rank r (log2 scale)")
        ax.set_ylabel(f"{spec.heading} ({_direction(spec.mode)})")
        ax.set_title(f"{spec.heading} vs rank, by task", fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    _figure_legend(fig, axes[:len(panels)])
    fig.suptitle(_wrap(f"{title}\n{_spread(points)}; per rank the best row by each "
                       "task's own validation metric", width), fontsize=10)
    return fig, points


def _spread(points: pd.DataFrame) -> str:
    """What a point and its bar show: the median and range over seeds (or over the runs of
    several sweeps, each picking its own best trial), or one seed."""
    n_seeds = points["n"].max() if len(points) else 0
    if n_seeds > 1 and points["sweeps"].max() > 1:
        return f"median and range over runs: each sweep's best, per seed (up to {n_seeds} per point)"
    return f"median and range over seeds (up to {n_seeds} per point)" if n_seeds > 1 else "one seed per point"


def _wrap(text: str, width_in: float, fontsize: float = 10) -> str:
    """Wrap each line of a title to the figure's width (about 7 characters per inch at 10 pt)."""
    import textwrap

    chars = max(40, int(width_in * 72 / (0.55 * fontsize)))
    return "\n".join(textwrap.fill(line, chars, break_on_hyphens=False) for line in text.split("\n"))


def _colors(n: int, *, qualitative: bool = False) -> list[Any]:
    from matplotlib import colormaps

    if qualitative and n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    cmap = colormaps[CMAP]
    return [cmap(0.5)] if n == 1 else [cmap(0.9 * i / (n - 1)) for i in range(n)]


# --------------------------------------------------------------------------- importances


def importance_figure(importances: dict[str, float], *, title: str, evaluator: str) -> Figure:
    """Horizontal bars, most important on top."""
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = new_figure(6.4, 1.4 + 0.45 * max(1, len(items)))
    ax = fig.subplots()
    names = [short_name(k) for k, _ in items]
    vals = [v for _, v in items]
    bars = ax.barh(names, vals, color=_colors(1)[0])
    ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
    ax.set_xlim(0, max(vals + [0.0]) * 1.18 or 1)
    ax.set_xlabel(f"importance ({evaluator}, normalised to sum 1)")
    ax.set_ylabel("hyperparameter")
    ax.set_title(_wrap(title, fig.get_figwidth()), fontsize=10)  # a sweep's long name: no cut-off
    ax.grid(axis="x", alpha=0.3)
    return fig
