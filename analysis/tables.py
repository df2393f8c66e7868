"""Seed-averaged summaries and paper-style tables (the LoRA paper's Table 18).

:func:`summarise` groups trials that share every setting but the seed (one *configuration*)
and gives, per configuration, mean, standard deviation (``ddof=1``, the sample std; none
from a single seed) and count of each metric:

- the per-report metric (``val_loss``) over completed trials and trials ASHA stopped (their
  value at their last report, so a configuration's mean can mix epochs; tables mark such
  cells with a dagger);
- final metrics (BLEU, ...) over completed trials only: stopped trials never computed them;
- failed and still-running trials count in no mean.

:func:`paper_table` lays a summary out as rows of swept hyperparameters and columns of
``% trainable``, val loss and every final metric as ``mean ± std``, plus a reference row
where the task has published numbers; :func:`to_markdown`, :func:`to_html` and
``Table.frame`` (the CSV) render it.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis.load import TaskInfo, is_number
from trainables.mlflow_names import COMPLETED, FAILED, STOPPED

R_KEY = "adapter.r"
MODEL_KEY = "model.name_or_path"
#: Settings computed from others (``lora_alpha`` from alpha or alpha_over_r and r, the
#: module list from the target group): never shown as their own column.
DERIVED = ("adapter.lora_alpha", "adapter.target_modules")
#: Shown elsewhere than as a hyperparameter column.
_NOT_HP = ("task", MODEL_KEY, *DERIVED)
DAGGER = "†"


# --------------------------------------------------------------------------- names


def short_name(key: str) -> str:
    """``adapter.r`` -> ``r``, ``train.lr`` -> ``lr`` (the search spaces' short names)."""
    from search_spaces import ALIASES

    for alias, full in ALIASES.items():
        if full == key and alias != "rank":
            return alias
    return key


def model_label(name_or_path: str) -> str:
    """``/models/gpt2-medium/`` -> ``gpt2-medium``; hub names stay as they are."""
    text = str(name_or_path).rstrip("/")
    return text.rsplit("/", 1)[-1] if text.startswith(("/", ".", "~")) else text


def fmt_value(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def sort_key(v: Any) -> tuple[int, Any]:
    """Numbers in numeric order, then everything else as text (None last)."""
    if is_number(v) and not pd.isna(v):
        return (0, float(v))
    return (2, "") if v is None or (isinstance(v, float) and math.isnan(v)) else (1, str(v))


# --------------------------------------------------------------------------- summary


def hp_columns(trials: pd.DataFrame) -> list[str]:
    """Settings whose value differs between configurations of these trials (rank first,
    then the swept ones, then any other setting that differs, e.g. between two sweeps)."""
    configs = [json.loads(k) for k in dict.fromkeys(trials["config_key"])]
    keys = sorted(set().union(*configs)) if configs else []
    varying = [k for k in keys if k not in _NOT_HP and len({c.get(k) for c in configs}) > 1]
    from search_spaces import ALIASES

    swept = {k for ks in trials["swept"] for k in ks}
    order = {k: i for i, k in enumerate(dict.fromkeys([R_KEY, *ALIASES.values()]))}
    return sorted(varying, key=lambda k: (k not in swept, order.get(k, len(order)), k))


def eligible(trials: pd.DataFrame, task: TaskInfo, metric: str) -> pd.Series:
    """Which trials count towards ``metric``'s mean (see the module docstring)."""
    if metric == task.metric.name:
        return trials["status"].isin([COMPLETED, STOPPED])
    if any(m.name == metric for m in task.final_metrics):
        return trials["status"] == COMPLETED
    return trials["status"] != FAILED


def model_order(trials: pd.DataFrame) -> list[str]:
    """Models from smallest to largest (frozen parameter count), else by name."""
    def size(m: str) -> float:
        g = trials[trials["model"] == m]
        if {"total_params", "trainable_params"} <= set(g.columns):
            frozen = (g["total_params"] - g["trainable_params"]).dropna()
            if len(frozen):
                return float(frozen.min())
        return math.inf
    return sorted(dict.fromkeys(trials["model"]), key=lambda m: (size(m), str(m)))


def summarise(trials: pd.DataFrame, task: TaskInfo, hp_cols: list[str] | None = None) -> pd.DataFrame:
    """One row per configuration of ``task``'s trials: its settings, status counts, mean %
    trainable, and ``<metric>_mean``, ``<metric>_std``, ``<metric>_n`` for every metric."""
    trials = trials[trials["task"] == task.name]
    hp_cols = hp_columns(trials) if hp_cols is None else hp_cols
    rows = []
    for key, g in trials.groupby("config_key", sort=False):
        row: dict[str, Any] = {"task": task.name, "model": g["model"].iloc[0]}
        row.update({c: g[c].iloc[0] if c in g else None for c in hp_cols})
        row.update({"trials": len(g), "completed": int((g["status"] == COMPLETED).sum()),
                    "stopped_early": int((g["status"] == STOPPED).sum()),
                    "failed": int((g["status"] == FAILED).sum()),
                    "seeds": sorted({int(s) for s in g["seed"].dropna()}) if "seed" in g else []})
        pct = g["trainable_pct"].dropna() if "trainable_pct" in g else pd.Series(dtype=float)
        row["trainable_pct"] = float(pct.mean()) if len(pct) else math.nan
        for m in task.metrics:
            ok = eligible(g, task, m.name)
            vals = g.loc[ok, m.name].dropna().astype(float) if m.name in g else pd.Series(dtype=float)
            row[f"{m.name}_mean"] = float(vals.mean()) if len(vals) else math.nan
            row[f"{m.name}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
            row[f"{m.name}_n"] = len(vals)
        stopped = g.loc[eligible(g, task, task.metric.name), "status"] == STOPPED
        row[f"{task.metric.name}_includes_stopped"] = bool(stopped.any())
        row["config_key"] = key
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    rank = {m: i for i, m in enumerate(model_order(trials))}
    order = sorted(range(len(out)), key=lambda i: (rank[out["model"].iloc[i]],
                                                    *(sort_key(out[c].iloc[i]) for c in hp_cols)))
    return out.iloc[order].reset_index(drop=True)


# --------------------------------------------------------------------------- tables


@dataclass
class Table:
    """A paper-style table: plain cell text plus what to emphasise, and its CSV frame."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    align: list[str]
    """``l`` or ``r`` per column."""
    best: set[tuple[int, int]] = field(default_factory=set)
    """(row, column) of the best mean in each metric column (bold)."""
    reference: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    """The numbers behind the cells (mean, std and count per metric): the CSV."""


def cell(mean: float, std: float, fmt: str) -> str:
    """``70.12 ± 0.31``; just the mean from one seed; ``-`` from none."""
    if mean is None or math.isnan(mean):
        return "-"
    if std is None or math.isnan(std):
        return fmt.format(mean)
    return f"{fmt.format(mean)} ± {fmt.format(std)}"


def paper_table(summary: pd.DataFrame, task: TaskInfo, hp_cols: list[str], *, title: str = "") -> Table:
    """Rows: model (when there are several) and swept settings; columns: % trainable,
    completed/trials, then val loss and each final metric as mean ± std over seeds."""
    models = list(dict.fromkeys(summary["model"])) if len(summary) else []
    show_model = len(models) > 1
    metrics = [m for m in task.metrics if summary.get(f"{m.name}_n", pd.Series(dtype=int)).sum() > 0
               or m.name in task.reference]
    headers = (["model"] if show_model else []) + [short_name(c) for c in hp_cols] + \
        ["% trainable", "completed / trials"] + [m.heading for m in metrics]
    n_lead = len(headers) - len(metrics)
    rows, best = [], set()
    for _, s in summary.iterrows():
        row = ([model_label(s["model"])] if show_model else []) + [fmt_value(s[c]) for c in hp_cols]
        row += [cell(s["trainable_pct"], math.nan, "{:.4f}"), f"{s['completed']} / {s['trials']}"]
        for m in metrics:
            text = cell(s[f"{m.name}_mean"], s[f"{m.name}_std"], m.fmt)
            if m.name == task.metric.name and s.get(f"{m.name}_includes_stopped") and text != "-":
                text += DAGGER
            row.append(text)
        rows.append(row)
    for j, m in enumerate(metrics):
        means = summary[f"{m.name}_mean"]
        if means.notna().sum() > 1:
            i = int(means.idxmin() if m.mode == "min" else means.idxmax())
            best.add((i, n_lead + j))
    notes = [f"mean ± std (sample std, ddof=1) over seeds; {task.metric.heading} over completed "
             "trials and trials stopped early, final metrics over completed trials only"]
    if any(DAGGER in c for r in rows for c in r):
        notes.append(f"{DAGGER} includes trials stopped early by ASHA (their {task.metric.heading} "
                     "at their last report, i.e. after fewer epochs)")
    reference = None
    if any(m.name in task.reference for m in metrics):
        reference = ["reference"] + [""] * (n_lead - 1) + \
            [m.fmt.format(task.reference[m.name]) if m.name in task.reference else "" for m in metrics]
        notes.append(f"reference: {task.reference_note or 'published numbers'}")
    return Table(title=title or f"{task.name}: results by {', '.join(headers[:n_lead - 2]) or 'configuration'}",
                 headers=headers, rows=rows, align=["l"] * (n_lead - 2) + ["r"] * (len(metrics) + 2),
                 best=best, reference=reference, notes=notes,
                 frame=csv_frame(summary, task, hp_cols, metrics))


def csv_frame(summary: pd.DataFrame, task: TaskInfo, hp_cols: list[str], metrics: list[Any]) -> pd.DataFrame:
    """The table's numbers: settings, counts, and mean/std/n (and reference) per metric."""
    cols: dict[str, Any] = {"task": summary["task"], "model": summary["model"]}
    cols.update({short_name(c): summary[c] for c in hp_cols})
    cols.update({k: summary[k] for k in ("trainable_pct", "trials", "completed", "stopped_early", "failed")})
    cols["seeds"] = summary["seeds"].map(lambda s: " ".join(map(str, s)))
    for m in metrics:
        for suffix in ("mean", "std", "n"):
            cols[f"{m.name}_{suffix}"] = summary[f"{m.name}_{suffix}"]
        if m.name in task.reference:
            cols[f"{m.name}_reference"] = task.reference[m.name]
    return pd.DataFrame(cols)


def to_markdown(table: Table) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [f"**{esc(table.title)}**", "",
             "| " + " | ".join(esc(h) for h in table.headers) + " |",
             "|" + "|".join("---:" if a == "r" else ":---" for a in table.align) + "|"]
    for i, row in enumerate(table.rows):
        cells = [f"**{esc(c)}**" if (i, j) in table.best else esc(c) for j, c in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    if table.reference:
        lines.append("| " + " | ".join(f"*{esc(c)}*" if c else "" for c in table.reference) + " |")
    lines.append("")
    lines += [f"- {esc(n)}" for n in table.notes]
    return "\n".join(lines) + "\n"


def to_html(table: Table) -> str:
    def td(text: str, j: int, tag: str = "td", bold: bool = False, em: bool = False) -> str:
        body = html.escape(text)
        body = f"<b>{body}</b>" if bold else f"<i>{body}</i>" if em and body else body
        return f'<{tag} class="{table.align[j]}">{body}</{tag}>'

    out = [f"<table><caption>{html.escape(table.title)}</caption><thead><tr>",
           "".join(td(h, j, "th") for j, h in enumerate(table.headers)), "</tr></thead><tbody>"]
    for i, row in enumerate(table.rows):
        out.append("<tr>" + "".join(td(c, j, bold=(i, j) in table.best) for j, c in enumerate(row)) + "</tr>")
    if table.reference:
        cells = "".join(td(c, j, em=True) for j, c in enumerate(table.reference))
        out.append(f'<tr class="reference">{cells}</tr>')
    out.append("</tbody></table>")
    out += [f'<p class="note">{html.escape(n)}</p>' for n in table.notes]
    return "\n".join(out)
