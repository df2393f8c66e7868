"""Ours beside the sources' numbers: one table per source table, a deviation in every cell.

A row of ours (one model and scientific value, :func:`analysis.tables.summarise`) meets a
source row when the model is the one the source table reports on (by the names in
``analysis/references/models.yaml``) and every setting the table matches on
(``match: [adapter.r]``, ``[adapter.method]``, ...) has the row's value. Each metric cell is
``ours / source / deviation``: the source's number on lorasweep's scale (a BLEU printed as
a fraction is x100), and ``(ours - source) / |source| * 100``, positive when ours is higher.
A metric the table flags as not comparable (another implementation of METEOR) shows both
numbers and no deviation.

**Stand-ins.** A smoke model (``smoke:gpt2-s``, a tiny GPT-2 on synthetic data) is compared
with the numbers of the model it stands for (GPT-2 S), so that a smoke report has the shape
of the real one; its rows and deviations are labelled ``smoke`` and say that they are no
reproduction result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis import references
from analysis.load import TaskInfo
from analysis.references import RefTable, deviation
from analysis.tables import R_KEY, SMOKE, Grouping, Table, chosen_text, model_legend, selected_by
from analysis.values import fmt_value
from search_spaces import short_name
from trainables.report import K
from trainables.tasks.base import MetricSpec

TRAINABLE = MetricSpec(K.trainable_pct, "max", "% trainable", "{:.4f}")
#: What :func:`source_curves` gives for each source point a rank plot draws.
SOURCE_COLUMNS = ["model", "our_model", "stand_in", "table", "label", "kind", "r", "metric", "value"]


def stand_in_rule(stand_ins: Mapping[str, str]) -> str:
    """The report's note on smoke stand-ins: ``stand_ins`` maps each recorded model that is one
    to the models.yaml name of the model it stands for."""
    from analysis.tables import model_label

    which = ", ".join(sorted(f"{model_label(ours)} for {references.model_label(name)}"
                             for ours, name in stand_ins.items()))
    return ("a smoke model (an offline stand-in) is compared with the sources' numbers for the model "
            f"it stands for (analysis/references/models.yaml: {which}), so that the tables and plots "
            "have the shape of the real study; its deviations, marked (smoke), measure a tiny model "
            "on synthetic data and are no reproduction result")


def _metrics(task: TaskInfo) -> dict[str, MetricSpec]:
    return {**{m.name: m for m in task.metrics}, TRAINABLE.name: TRAINABLE}


# --------------------------------------------------------------------------- rank curves


def source_curves(summary: pd.DataFrame, task: TaskInfo) -> pd.DataFrame:
    """The source values a rank plot draws for each model of ``summary``: every table of the
    task matched on the rank alone, with a row for the model (or the model a stand-in stands
    for), each comparable metric of ours, on lorasweep's scale."""
    metrics = {m.name for m in task.metrics}
    rows = []
    for our in dict.fromkeys(summary["model"]) if len(summary) else ():
        name, stand_in = references.resolve_model(our)
        for table in task.references:
            if name is None or table.match != (R_KEY,):
                continue
            for row in table.rows_for(task.name, name):
                rows += [{"model": name, "our_model": our, "stand_in": stand_in, "table": table.id,
                          "label": table.label, "kind": table.kind, "r": float(row[R_KEY]), "metric": m,
                          "value": table.value(row, m)}
                         for m in table.metrics if m in metrics and table.comparable(m) and row.get(m) is not None
                         and not table.is_failed(row)]
    return pd.DataFrame(rows, columns=SOURCE_COLUMNS)


# --------------------------------------------------------------------------- tables


@dataclass
class Comparison:
    """Every "ours vs source" table of a task, their numbers (long CSV) and notes."""

    tables: list[Table] = field(default_factory=list)
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)
    stand_ins: dict[str, str] = field(default_factory=dict)
    """Each recorded model compared as a stand-in (in a table, or drawn beside its model's
    numbers on a rank plot) -> the models.yaml name it stands for."""
    selection: str = ""
    """The warning that its rows' trials were chosen on the test split (``--metric`` a test
    metric), said under its tables and under an average over it; empty otherwise."""


def settings_of(s: Mapping[str, Any], trials: pd.DataFrame, grouping: Grouping) -> dict[str, Any]:
    """The settings a summary row ran with: its first chosen trial's (else its first trial's),
    its scientific values, and each nuisance value when all its seeds chose the same."""
    ids = list(s["run_ids"]) or list(s["trial_run_ids"])
    first = trials[trials["run_id"] == ids[0]].iloc[0].to_dict() if ids else {}
    values = {**first, **{k: s[k] for k in grouping.keys}}
    for k in grouping.nuisance:
        chosen = s.get(f"chosen.{k}") or ()
        values[k] = chosen[0] if len(chosen) == 1 else None
    return values


def compare(summary: pd.DataFrame, trials: pd.DataFrame, task: TaskInfo, grouping: Grouping,
            select: MetricSpec | None = None) -> Comparison:
    """One :class:`analysis.tables.Table` per source table with a row matching a row of ours;
    its CSV says what our rows' trials were picked by (``select``, else the task's metric)."""
    out = Comparison()
    frames = []
    ours = [(s, *references.resolve_model(s["model"])) for _, s in summary.iterrows()]
    mine = [settings_of(s, trials, grouping) for s, _, _ in ours]
    for table in task.references:
        hits = [(s, src, stand_in, values) for (s, name, stand_in), values in zip(ours, mine) if name is not None
                for src in [table.find(task.name, name, values)] if src]
        matched = [hit[:3] for hit in hits]
        left_out = _left_out(table, [v for (_, name, _), v in zip(ours, mine)
                                     if name is not None and table.rows_for(task.name, name)])
        if matched:
            cmp_table, frame = _table(table, matched, task, grouping)
            cmp_table.notes[2:2] = _setup_notes(table, [hit[3] for hit in hits]) + left_out
            out.tables.append(cmp_table)
            frames.append(frame)
            out.stand_ins.update({s["model"]: src["model"] for s, src, stand_in in matched if stand_in})
        else:
            out.notes += left_out or _unmatched(table, task, ours, grouping)
    drawn = source_curves(summary, task)  # a rank plot sets a stand-in's model's numbers beside it too
    out.stand_ins.update(zip(drawn.loc[drawn["stand_in"], "our_model"], drawn.loc[drawn["stand_in"], "model"]))
    out.frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frames:
        out.frame.insert(out.frame.columns.get_loc("our_model") + 1, "selected_by",
                         selected_by(task, select or task.metric))
    return out


def _setup_notes(table: RefTable, ours: Sequence[Mapping[str, Any]]) -> list[str]:
    """A note naming each setting the source ran every row with (``setup``) that rows of ours
    compared with it ran otherwise; the deviations include that difference."""
    other = _other_values(table.setup, ours)
    if not other:
        return []
    theirs = ", ".join(f"{key} {fmt_value(table.setup[key])}" for key in other)
    mine = " or ".join(f"{key} {', '.join(values)}" for key, values in other.items())
    return [f"setup differs: the source ran {theirs}; the Δ% of rows of ours with {mine} include that difference"]


def _other_values(wanted: Mapping[str, Any], ours: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Each setting of ``wanted`` that rows of ours set otherwise: its distinct values of ours."""
    found = [references.differing(wanted, s) for s in ours]
    values = {k: list(dict.fromkeys(fmt_value(d[k]) for d in found if k in d)) for k in wanted}
    return {k: v for k, v in values.items() if v}


def _left_out(table: RefTable, ours: Sequence[Mapping[str, Any]]) -> list[str]:
    """A note naming the values of ours that the table's ``only`` leaves out of it."""
    parts = [f"{short_name(key)} {', '.join(values)}" for key, values in _other_values(table.only, ours).items()]
    if not parts:
        return []
    ran = ", ".join(f"{short_name(k)} {fmt_value(v)}" for k, v in table.only.items())
    return [f"{table.label} ran {ran} only: rows of ours with {'; '.join(parts)} are not compared with it"]


def _unmatched(table: RefTable, task: TaskInfo, ours: Sequence[Any], grouping: Grouping) -> list[str]:
    """Why a table of one of our models met no row of ours (its rows' values against ours)."""
    notes = []
    for name in dict.fromkeys(n for _, n, _ in ours if n is not None):
        rows = table.rows_for(task.name, name)
        if not rows:
            continue
        theirs = "; ".join(f"{short_name(k)}: {', '.join(fmt_value(r.get(k)) for r in rows)}" for k in table.match)
        mine = "; ".join(f"{short_name(k)}: {', '.join(dict.fromkeys(fmt_value(s.get(k)) for s, n, _ in ours if n == name))}"
                         for k in table.match if k in grouping.keys)
        notes.append(f"{table.label} ({references.model_label(name)}; {theirs}) matches no row of ours"
                     + (f" ({mine})" if mine else ""))
    return notes


def _table(table: RefTable, matched: Sequence[Any], task: TaskInfo, grouping: Grouping,
           ) -> tuple[Table, pd.DataFrame]:
    specs = _metrics(task)
    metrics = [specs[m] for m in table.metrics if m in specs]
    # What picked the source's row but is not a column of ours (a rank fixed in every trial).
    unseen = [k for k in table.match if k not in grouping.keys]
    headers = ["model"] + [short_name(k) for k in grouping.keys] + \
        [f"{short_name(k)} (chosen)" for k in grouping.nuisance] + \
        [f"{short_name(k)} (source row)" for k in unseen] + \
        [f"{m.heading}: ours / source / Δ%" for m in metrics]
    rows, long = [], []
    for s, src, stand_in in matched:
        row = [model_legend(s["model"])] + [fmt_value(s[k]) for k in grouping.keys] + \
            [chosen_text(s, k) for k in grouping.nuisance] + [fmt_value(src.get(k)) for k in unseen]
        for m in metrics:
            cell, record = _cell(table, m, s, src, stand_in)
            row.append(cell)
            long.append({"table": table.id, "source": table.source, "file": table.file,
                         "task": task.name, "our_model": s["model"], "model": src["model"],
                         "stand_in": stand_in, **{short_name(k): s[k] for k in grouping.keys}, **record})
        rows.append(row)
    smoke = any(stand_in for _, _, stand_in in matched)
    title = f"Ours vs {table.source}, task {task.name}" + \
        (f" - {SMOKE.upper()} STAND-INS: deviations are not reproduction results" if smoke else "")
    return Table(title=title, headers=headers, rows=rows, align=["l"] * (len(headers) - len(metrics))
                 + ["r"] * len(metrics), notes=_notes(table, metrics, smoke)), _with_counts(pd.DataFrame(long))


def _cell(table: RefTable, m: MetricSpec, s: Mapping[str, Any], src: Mapping[str, Any],
          stand_in: bool) -> tuple[str, dict[str, Any]]:
    # % trainable is the configuration's, the same for every seed: no mean column.
    mean = table.over_seeds == "mean" and m.name != TRAINABLE.name
    ours = s.get(f"{m.name}_mean" if mean else m.name)
    ours = None if ours is None or pd.isna(ours) else float(ours)
    source = table.value(src, m.name)
    failed = table.is_failed(src) and m.name != TRAINABLE.name  # its % trainable is still its configuration's
    comparable = table.comparable(m.name) and not failed
    dev = deviation(ours, source) if comparable else None
    text = "failed" if failed else "n.c." if not comparable else "-" if dev is None else f"{dev:+.1f}%"
    if stand_in and dev is not None:
        text += f" ({SMOKE})"
    cell = f"{'-' if ours is None else m.fmt.format(ours)} / {'-' if source is None else m.fmt.format(source)} / {text}"
    record = {"metric": m.name, "ours": ours, "ours_over_seeds": table.over_seeds,
              "ours_low": s.get(f"{m.name}_low"),
              "ours_high": s.get(f"{m.name}_high"), "ours_n": _count(s.get(f"{m.name}_n")),
              "source_printed": src.get(m.name), "source_unit": table.units[m.name],
              "source_value": source, "deviation_pct": dev, "comparable": comparable}
    return cell, record


def _count(n: Any) -> int | None:
    """A number of seeds as a count (a table's column of them is float where a cell is missing)."""
    return None if n is None or pd.isna(n) else int(n)


def _with_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its seed counts as integers (missing ones empty), as the CSV writes them."""
    if "ours_n" in frame:
        frame["ours_n"] = frame["ours_n"].astype("Int64")
    return frame


def _notes(table: RefTable, metrics: Sequence[MetricSpec], smoke: bool) -> list[str]:
    notes = [f"source: {table.source}" + (f", transcribed from {table.file}" if table.file
                                          else " (not one of the source reports transcribed)"), table.note,
             "Δ% = (ours - source) / |source| x 100: positive when ours is higher (for a loss, "
             f"higher is worse); ours is the {table.over_seeds} over the seeds (or runs) of each row's chosen "
             "trials"]
    fractions = [m.heading for m in metrics if table.units[m.name] == "fraction"]
    if fractions:
        notes.append(f"the source prints {', '.join(fractions)} as fractions (0-1): shown x100, "
                     "lorasweep's scale; the CSV keeps the printed values")
    notes += [f"{m.heading} not comparable (n.c.): {table.not_comparable[m.name]}" for m in metrics
              if not table.comparable(m.name)]
    if table.failed:
        runs = "; ".join(", ".join(f"{short_name(k)}={fmt_value(v)}" for k, v in f.items()) for f in table.failed)
        notes.append(f"failed: the source's run at {runs} failed (its note says how): its task metrics are "
                     "shown but neither compared nor drawn (its % trainable, the configuration's, is compared)")
    if smoke:
        notes.append(f"{SMOKE.upper()}: a deviation marked ({SMOKE}) compares a tiny stand-in model on "
                     "synthetic data with the numbers of the model it stands for: no reproduction result")
    return [n for n in notes if n]


# --------------------------------------------------------------------------- averages


def task_averages(found: Mapping[str, Comparison], *, task: str = "glue-average",
                  ) -> tuple[Table, pd.DataFrame] | None:
    """The sources' averages over tasks (the GLUE "Avg." column: rows of ``task``) beside the
    mean of ours: for a source table and model with exactly one row of ours on each task the
    table averages, each in the metric its row reports. None when no table has one."""
    frames = [c.frame for c in found.values() if not c.frame.empty]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    rows, long = [], []
    for table in references.load().values() if not frame.empty else ():
        for avg in table.rows:
            if avg["task"] != task or any(avg.get(k) is not None for k in table.match):
                continue  # an average of rows picked by a setting (warm start or not): not ours
            metric_of = {r["task"]: next(m for m in table.metrics if r.get(m) is not None)
                         for r in table.rows if r["model"] == avg["model"] and r["task"] != task}
            mine = frame[(frame["table"] == table.id) & (frame["model"] == avg["model"])]
            for our_model, m in mine.groupby("our_model", sort=False):
                values = [m[(m["task"] == t) & (m["metric"] == metric)]["ours"] for t, metric in metric_of.items()]
                if not all(len(v) == 1 and pd.notna(v.iloc[0]) for v in values):
                    continue
                ours = float(sum(v.iloc[0] for v in values) / len(values))
                source = table.value(avg, next(k for k in table.metrics if avg.get(k) is not None))
                dev = deviation(ours, source)
                stand_in = bool(m["stand_in"].any()) if "stand_in" in m else False
                picked = " | ".join(dict.fromkeys(m["selected_by"]))
                text = "-" if dev is None else f"{dev:+.1f}%" + (f" ({SMOKE})" if stand_in else "")
                rows.append([model_legend(our_model), table.label, str(len(values)),
                             f"{ours:.2f} / {source:.2f} / {text}"])
                long.append({"table": table.id, "source": table.source, "over_seeds": table.over_seeds,
                             "our_model": our_model, "selected_by": picked,
                             "model": avg["model"], "stand_in": stand_in, "tasks": len(values), "ours": ours,
                             "source_value": source, "deviation_pct": dev})
    if not rows:
        return None
    smoke = any(r["stand_in"] for r in long)
    notes = [f"source: {', '.join(dict.fromkeys(r['source'] for r in long))}",
             "ours: the mean over the table's tasks of each task's metric as its row reports it (MNLI "
             "overall accuracy, CoLA Matthews correlation, STS-B Pearson, accuracy elsewhere), each the "
             f"{' or '.join(dict.fromkeys(r['over_seeds'] for r in long))} over seeds of its chosen trials; "
             "Δ% = (ours - source) / |source| x 100"]
    notes[:0] = sorted({c.selection for c in found.values() if c.selection})
    if smoke:
        notes.append(f"{SMOKE.upper()}: a deviation marked ({SMOKE}) averages a tiny stand-in model on "
                     "synthetic data against the numbers of the model it stands for: no reproduction result")
    title = f"Ours vs the sources' {task}" + (f" - {SMOKE.upper()} STAND-INS: deviations are not reproduction "
                                             "results" if smoke else "")
    return (Table(title=title, headers=["model", "source", "tasks", "average: ours / source / Δ%"],
                  rows=rows, align=["l", "l", "r", "r"], notes=notes), pd.DataFrame(long))
