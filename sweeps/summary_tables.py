"""The end-of-sweep tables: one row per trial, or one per group of a grouped sweep."""

from __future__ import annotations

import math
from typing import Any

from analysis.values import fmt_value
from trainables.report import K


def extra_report_metrics(task: Any) -> tuple[Any, ...]:
    """The task's per-report validation metrics other than the one optimised."""
    return tuple(s for s in task.report_metrics if s.name != task.metric.name)


def _count(v: Any) -> str:
    """A parameter count as ``1,234,567``."""
    return f"{int(v):,}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def render_group_table(rows: list[dict[str, Any]], swept: Any, groups: tuple[str, ...], task: Any, *,
                       final: bool = True) -> str:
    """The end-of-sweep table of a grouped sweep: one row per group (its scientific values),
    with the settings its best completed trial chose, how many of its trials completed or
    stopped, and that trial's metrics (median and range over seeds with replicates)."""
    from tabulate import tabulate

    from analysis.groups import best_per_group

    keys = [p.short for p in swept if p.key in groups]
    chosen = [p.short for p in swept if p.key not in groups]
    finals = (*extra_report_metrics(task), *(task.final_metrics if final else ()))
    specs = [(task.metric.name, task.metric.heading, task.metric.fmt), *((s.name, s.heading, s.fmt) for s in finals)]
    headers = ([k for k in keys if k != "seed"] + chosen + ["trials", "% trainable", "trainable"]
               + [heading for _, heading, _ in specs])
    body = []
    for group in best_per_group(rows, scientific=keys, metric=task.metric.name, mode=task.metric.mode):
        counts = ", ".join(f"{n} {s.replace('_', ' ')}" for s in ("completed", "stopped_early", "failed",
                                                                  "unfinished") if (n := group.count(s)))
        cells = [fmt_value(v, "{:.3g}") for v in group.values.values()]
        cells += ["/".join(fmt_value(v, "{:.3g}") for v in group.chosen_values(k)) or "-" for k in chosen]
        cells += [f"{len(group.trials)}: {counts}"]
        best = group.chosen[0] if group.chosen else {}
        cells += [fmt_value(best.get(K.trainable_pct), "{:.4f}"), _count(best.get(K.trainable_params))]
        for name, _, fmt in specs:
            stat = group.stat(name)
            cells.append(stat.text(fmt) if stat else "-")
        body.append(cells)
    return "\n" + tabulate(body, headers=headers, tablefmt="simple", disable_numparse=True)


def render_table(rows: list[dict[str, Any]], swept: Any, task: Any, *, final: bool = True) -> str:
    """The end-of-sweep table: swept values, % trainable, status, the metric, final metrics."""
    from tabulate import tabulate

    finals = (*extra_report_metrics(task), *(task.final_metrics if final else ()))
    headers = [p.short for p in swept] + ["% trainable", "trainable", "status", task.metric.heading] + \
        [s.heading for s in finals]
    body = []
    for r in rows:
        body.append([fmt_value(r.get(p.short), "{:.3g}") for p in swept]
                    + [fmt_value(r.get(K.trainable_pct), "{:.4f}"), _count(r.get(K.trainable_params)), r["status"],
                       fmt_value(r.get(task.metric.name), task.metric.fmt)]
                    + [fmt_value(r.get(s.name), s.fmt) for s in finals])
    return "\n" + tabulate(body, headers=headers, tablefmt="simple", disable_numparse=True)
