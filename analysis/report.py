"""One HTML report of one or more sweeps, read back from MLflow.

Usage::

    python -m analysis.report --tracking-uri sqlite:///mlruns.db --experiment lorasweep-rank_e2e --out report/
    python -m analysis.report --tracking-uri http://mlflow:5000 --sweep RUN_ID [--sweep RUN_ID ...] \\
        --out report/ [--metric val_loss] [--no-log]

It writes into ``--out``:

- ``report.html``: everything below in one self-contained file (images inlined as PNG);
- ``table_<task>.md`` / ``.csv``: the paper-style table, one row per model and scientific
  value (the parent runs' ``lorasweep.scientific`` tags): its best trial that ran to the end,
  the nuisance values it chose, status counts, and each metric (median and range over
  seeds when seeds are replicated, or over the runs of several sweeps);
- ``compare_<task>.md`` / ``.csv``: ours beside each source table that reports on the same
  model and settings (``analysis/references/``): ours / source / deviation in % per cell;
- ``rank_<task>[_<model>].png`` / ``.svg``: each metric against the LoRA rank, with the
  sources' curves of each model;
- ``curves_<sweep>.png`` / ``.svg``: learning curves, ASHA's stops and rungs;
- ``importance_<sweep>.png`` / ``.svg`` / ``.csv``: hyperparameter importance (Optuna sweeps);
- ``optuna_history_<study>.png`` / ``optuna_parallel_<study>.png`` (and ``.svg``): Optuna's
  optimisation history and parallel coordinates of each study an Optuna sweep stored (a
  grouped sweep's: ``<sweep>_<group values>``, titled by the values), and
  ``optuna_pareto_<study>.png`` the Pareto front of a multi-objective one;
- ``trials.csv``: one row per trial.

The files an earlier report wrote into ``--out`` (its ``.lorasweep-report`` lists them) and
this one does not are removed once it is written; nothing else there is touched.

``--metric`` (default: each task's per-epoch validation metric) decides which trial is *best*: the trial each
table row and rank-plot point shows, the edge-of-the-search-space warnings, the importance
objective, and which row a rank plot shows when other scientific settings vary too. A test-split
metric (``BLEU``) selects on the test set: the report warns, and notes under the table, that its
test numbers are then an optimistic estimate. Unless ``--no-log`` is given, the files written
are logged to every selected sweep's parent run under ``analysis/<report id>/``, a folder per
report, and the run's ``lorasweep.analysis`` tag names the current one
(:mod:`analysis.mlflow_copy`). A mistake in the input (no
such store, experiment, run or metric) is one line on stderr and exit code 2, with nothing
written.
"""

from __future__ import annotations

import argparse
import base64
import html
import logging
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.mlflow_copy import CURRENT_TAG, log_report
from analysis.planned import RESULTS_CSV
from search_spaces import short_name
from trainables.errors import UserError, did_you_mean, first_line, one_of
from trainables.report import K

EXIT_USAGE = 2
#: At most this many lines (combinations of the other swept settings) in a rank plot; more,
#: and each rank shows its best configuration instead.
MAX_LINES = 6
#: In ``--out``: the names of the files the last report there wrote; the next one removes
#: those it did not write again (no figure of a sweep since gone stays beside the new ones),
#: once it is written. Nothing else in the folder is touched.
MANIFEST = ".lorasweep-report"


@dataclass
class Report:
    out_dir: Path
    html: Path
    files: list[Path] = field(default_factory=list)
    tables: dict[str, Any] = field(default_factory=dict)
    """Task name -> :class:`analysis.tables.Table`."""
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    """Figure stem -> the data it drew (for tests and notebooks)."""
    importances: dict[str, Any] = field(default_factory=dict)
    """Sweep run id -> :class:`analysis.importance.Importance`."""
    comparisons: dict[str, Any] = field(default_factory=dict)
    """Task name -> :class:`analysis.compare.Comparison` (ours beside the sources)."""


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "x"


def resolve_metric(data: Any, name: str | None) -> dict[str, Any]:
    """Task name -> the MetricSpec that ranks its trials (``--metric`` or the task's metric)."""
    out = {}
    for task in data.tasks.values():
        if name is None:
            out[task.name] = task.metric
            continue
        names = [m.name for m in task.metrics]
        if name not in names:
            same = [n for n in names if n.lower() == name.lower()]  # bleu -> BLEU
            hint = f" (did you mean '{same[0]}'?)" if same else did_you_mean(name, names)
            raise UserError("--metric", f"unknown metric {name!r} for task {task.name!r}"
                                        f"{hint}; accepted: {one_of(names)}")
        out[task.name] = task.spec(name)
    return out


def test_split_warnings(data: Any, ranking: dict[str, Any]) -> list[str]:
    """A warning per task whose trials are ranked by a metric of the test data."""
    return [f"task {name}: --metric {spec.name} selects each row's trial on the TEST split and reports "
            f"that same test {spec.heading}: an optimistic estimate, not a held-out result (rank by a "
            f"validation metric, e.g. {data.tasks[name].metric.name}, for that)"
            for name, spec in ranking.items() if data.tasks[name].on_test_data(spec.name)]


# --------------------------------------------------------------------------- building


def build_report(data: Any, out_dir: Path, *, metric: str | None = None) -> Report:
    """Write every table, figure and the HTML report for ``data`` (from :func:`analysis.load.load`)."""
    from analysis import compare, curves, tables
    from analysis import importance as imp
    from analysis.page import page

    ranking = resolve_metric(data, metric)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir=out_dir, html=out_dir / "report.html")
    report.warnings += test_split_warnings(data, ranking)
    sections: list[str] = []
    trials, history = data.trials, data.history

    for task in data.tasks.values():
        sections.append(_task_section(report, data, task, ranking[task.name]))
    if averages := compare.task_averages(report.comparisons):  # the GLUE "Avg." column
        _write_tables(report, "compare_average", [averages[0]], averages[1])
        sections.append("<h2>Ours vs the sources: averages over tasks</h2>" + tables.to_html(averages[0]))

    sections += _cross_task_figure(report, data, trials)
    sections.append("<h2>Learning curves</h2>")
    for sweep in data.sweeps:
        st = trials[trials["sweep_run_id"] == sweep.run_id]
        if why := sweep.interruption:
            report.notes.append(f"sweep {sweep.name}: {why}")
        if why := data.unread.get(sweep.run_id):
            report.notes.append(f"sweep {sweep.name}: its parent run's {RESULTS_CSV} could not be read ({why}): its "
                                "trials without an MLflow run are counted from n_trials alone, as not started (an "
                                "Optuna sweep's not at all), so its unfinished and not-started counts may be wrong")
        if st.empty:
            report.notes.append(f"sweep {sweep.name}: no trial runs")
            continue
        task = data.tasks[st["task"].iloc[0]]
        fig, drawn = curves.learning_curves(st, history, sweep, task)
        asha = (f" ASHA rungs (dotted) at epochs {', '.join(f'{r:g}' for r in drawn['rungs'])}."
                if drawn["rungs"] else "")
        stops = " X marks where a trial was stopped early (its last report)." if drawn["stopped"] else ""
        sections.append(_figure(report, fig, drawn, f"curves_{slug(sweep.name)}",
                                f"Sweep {sweep.label} ({sweep.scheduler}): every trial.{stops}{asha}"))

        for w in imp.edge_warnings(sweep, st, task, ranking[task.name]):
            report.warnings.append(w.message())
        if sweep.algorithm == "optuna":
            res = imp.param_importances(sweep, trials, history, task, ranking[task.name])
            report.importances[sweep.run_id] = res
            sections.append(_importance_section(report, res))
            sections.append(_study_section(report, sweep, task.metric.heading))
    if not any(s.algorithm == "optuna" for s in data.sweeps):
        report.notes.append("no Optuna sweep selected: no hyperparameter importances")

    trial_cols = [c for c in ["sweep", "run_id", "trial_id", "status", "stopped_at_epoch", "task",
                              "model", "seed"] if c in trials]
    hp_keys = list(dict.fromkeys(k for ks in trials["swept"] for k in ks if k != "seed"))
    metric_keys = list(dict.fromkeys([K.trainable_pct, "epoch"] + [m.name for t in data.tasks.values()
                                                                  for m in t.metrics]))
    trials[trial_cols + [k for k in hp_keys + metric_keys if k in trials]].to_csv(
        out_dir / "trials.csv", index=False)
    report.files.append(out_dir / "trials.csv")

    report.html.write_text(page(data, report, sections), encoding="utf-8")
    report.files.append(report.html)
    _replace_manifest(out_dir, {p.name for p in report.files})
    return report


def _replace_manifest(out_dir: Path, written: set[str]) -> None:
    """Remove the files the last report in ``out_dir`` wrote (its :data:`MANIFEST`) that this
    one did not, then list this one's."""
    manifest = out_dir / MANIFEST
    if manifest.is_file():
        for name in set(manifest.read_text(encoding="utf-8").splitlines()) - written:
            if name and name == Path(name).name and (out_dir / name).is_file():
                (out_dir / name).unlink()
    manifest.write_text("".join(f"{name}\n" for name in sorted(written)), encoding="utf-8")


def _task_section(report: Report, data: Any, task: Any, select: Any) -> str:
    """A task's paper-style table (one row per scientific value), its "ours vs source"
    tables, and its rank plots with the sources' curves."""
    from analysis import compare, tables
    from analysis.judge import judge_section

    tt = data.trials[data.trials["task"] == task.name]
    grouping = tables.grouping(tt, data.sweeps)
    summary = tables.summarise(tt, task, grouping, select, pending=data.pending)
    studies = ", ".join(dict.fromkeys(tt["study"]))
    table = tables.paper_table(summary, task, grouping, title=f"{studies} - task {task.name}", select=select)
    for run_id, n in data.not_started.items():
        if run_id in set(tt["sweep_run_id"]):
            why = (f"its {RESULTS_CSV} could not be read: Tune may have created some" if run_id in data.unread
                   else "the sweep was stopped before Tune created them")
            table.notes.append(f"sweep {data.sweep(run_id).name}: {n} more planned trial(s) not started ({why}), "
                               "in no row")
    report.tables[task.name] = table
    _write_tables(report, f"table_{slug(task.name)}", [table], table.frame)
    parts = [f"<h2>Task {html.escape(task.name)}</h2>", tables.to_html(table)]
    judged, files = judge_section(tt, report.out_dir, f"judge_{slug(task.name)}")
    parts, report.files = parts + judged, report.files + files
    if not task.registered:
        report.notes.append(f"task {task.name!r} is not registered in this checkout: metric "
                            "directions guessed (final metrics: higher is better), no references")
    found = compare.compare(summary, tt, task, grouping, select)
    if task.on_test_data(select.name):  # its rows are the trials chosen on the test split too
        found.selection = tables.test_selection_warning(select)
        for t in found.tables:
            t.notes.insert(0, found.selection)
    report.notes += [f"task {task.name}: {n}" for n in found.notes]
    if found.tables:
        report.comparisons[task.name] = found
        _write_tables(report, f"compare_{slug(task.name)}", found.tables, found.frame)
        parts += [f"<h3>Ours vs the sources ({html.escape(task.name)})</h3>"]
        parts += [tables.to_html(t) for t in found.tables]
    if found.stand_ins:
        report.notes.append(f"task {task.name}: {compare.stand_in_rule(found.stand_ins)}")
    if grouping.untagged:
        report.notes.append(f"task {task.name}: sweep(s) {', '.join(grouping.untagged)} have no "
                            "lorasweep.scientific tag: every swept setting counts as scientific "
                            "(one table row per configuration)")
    if tables.R_KEY not in tt or tt[tables.R_KEY].dropna().nunique() < 2:
        report.notes.append(f"task {task.name}: the LoRA rank was not varied, so no rank plots")
    elif tables.R_KEY not in grouping.keys:
        report.notes.append(f"task {task.name}: the LoRA rank was tuned (a nuisance setting), not "
                            "studied, so no rank plots (a table row per rank needs r among the "
                            "scientific settings); Optuna's parallel-coordinates plot shows r")
    elif (coupled := tables.rank_only_with(summary, grouping)):
        report.notes.append(f"task {task.name}: the LoRA rank changed only together with "
                            f"{', '.join(coupled)} (one rank each), so no rank plots")
    else:
        parts += _rank_figures(report, summary, task, grouping, select, studies,
                               compare.source_curves(summary, task))
    return "\n".join(parts + _lr_rank_figures(report, tt, data.sweeps, select, studies))


def _lr_rank_figures(report: Report, tt: Any, sweeps: Any, select: Any, studies: str) -> list[str]:
    """Per model whose trials vary both the learning rate and the rank (each on a grid): the
    lr x rank heatmap of the ranking metric, each cell its best completed trial."""
    from analysis import heatmap, tables
    from analysis.curves import METHOD_KEY as method

    parts, grid = [], heatmap.on_a_grid(tt, sweeps)
    methods = grid[method].dropna().unique() if method in grid else []
    for model in dict.fromkeys(grid["model"]):
        mt = grid[grid["model"] == model]
        if len(methods) > 1:  # a rank means something else to each method: LoRA's only
            mt = mt[mt[method] == "lora"]
        if not heatmap.varies_lr_and_rank(mt):
            continue
        label = tables.model_label(model) + (", LoRA" if len(methods) > 1 else "")
        cells = heatmap.lr_rank_cells(mt, select.name, select.mode)
        fig, drawn = heatmap.lr_rank_figure(
            cells, heading=select.heading, mode=select.mode, fmt=select.fmt,
            title=f"{studies} ({mt['task'].iloc[0]}), model {label}: {select.heading} by lr and rank "
                  "(each cell its best completed trial: the best seed, where the tables give the median)")
        parts.append(_figure(report, fig, drawn, f"lr_rank_{slug(mt['task'].iloc[0])}_{slug(label)}",
                             f"Model {label}: {select.heading} of the best completed trial of each learning "
                             "rate and rank (over seeds and the other settings); - where none completed."))
    return parts


def _write_tables(report: Report, stem: str, found: list[Any], frame: Any) -> None:
    from analysis.tables import to_markdown

    md, csv = report.out_dir / f"{stem}.md", report.out_dir / f"{stem}.csv"
    md.write_text("\n".join(to_markdown(t) for t in found), encoding="utf-8")
    frame.to_csv(csv, index=False)
    report.files += [md, csv]


def _rank_figures(report: Report, summary: Any, task: Any, grouping: Any, ranking: Any,
                  studies: str, sources: Any) -> list[str]:
    """Metrics against rank: one figure for the task (a line per model, each with its own
    source curves) and one per model (a line per combination of the other scientific
    settings, when there are few)."""
    from analysis import plots, tables

    names = [ranking.name] + [m.name for m in task.metrics if m.name != ranking.name]
    if not any(summary[f"{n}_n"].sum() for n in names):
        report.notes.append(f"task {task.name}: no trial ran to the end, so no rank plots")
        return []
    others = [k for k in grouping.keys if k != tables.R_KEY]
    models = list(dict.fromkeys(summary["model"]))
    best_of = (f"; per rank, the best {', '.join(map(short_name, others))} by {ranking.heading}"
               if others else "")
    fig, drawn = plots.rank_figure(
        summary, task, line_by=["model"], metrics=names, select_by=ranking.name, others=others,
        nuisance=grouping.nuisance, sources=sources,
        title=f"{studies} ({task.name}): metrics vs LoRA rank, by model{best_of}")
    parts = [_figure(report, fig, drawn, f"rank_{slug(task.name)}",
                     f"Metrics against rank, one line per model{best_of}; each model's source "
                     "curves in its colour.")]
    for model in models:
        ms = summary[summary["model"] == model]
        combos = len(ms[others].astype(str).drop_duplicates()) if others else 0
        line_by = others if 0 < combos <= MAX_LINES else []
        if len(models) == 1 and not line_by:
            continue  # the figure above already shows exactly this
        label = tables.model_label(model)
        if not any(ms[f"{n}_n"].sum() for n in names):
            report.notes.append(f"task {task.name}, model {label}: no trial ran to the end, so no rank plot")
            continue
        fig, drawn = plots.rank_figure(
            ms, task, line_by=line_by, metrics=names, select_by=ranking.name,
            others=[] if line_by else others, nuisance=grouping.nuisance,
            sources=sources[sources["our_model"] == model],
            title=f"{studies} ({task.name}), model {label}: metrics vs LoRA rank"
                  f"{'' if line_by else best_of}")
        parts.append(_figure(report, fig, drawn, f"rank_{slug(task.name)}_{slug(label)}",
                             f"Model {label}" + (f", one line per {', '.join(map(short_name, others))}."
                                                 if line_by else f"{best_of}.")))
    return parts


def _cross_task_figure(report: Report, data: Any, trials: Any) -> list[str]:
    """With several tasks whose ranks vary: the metrics they share on one figure (rank vs task)."""
    from analysis import plots, tables

    per_task = {}
    for task in data.tasks.values():
        tt = trials[trials["task"] == task.name]
        if tables.R_KEY in tt and tt[tables.R_KEY].dropna().nunique() >= 2:
            per_task[task.name] = (tables.summarise(tt, task, tables.grouping(tt, data.sweeps)), task)
    if len(per_task) < 2:
        return []
    names = [set(m.name for m in t.final_metrics) for _, t in per_task.values()]
    shared = sorted(set.intersection(*names))
    if not shared:
        report.notes.append(f"tasks {', '.join(per_task)} share no final metric: no cross-task figure")
        return []
    any_task = next(iter(per_task.values()))[1]  # each shares the metrics: its headings are theirs
    studies, headings = ", ".join(dict.fromkeys(trials["study"])), [any_task.spec(m).heading for m in shared]
    fig, points = plots.cross_task_figure(per_task, shared, title=f"{studies}: {', '.join(per_task)} "
                                                                  "on one axis")
    return ["<h2>Rank vs task</h2>",
            _figure(report, fig, points, "rank_by_task",
                    f"The metrics {', '.join(headings)} of every task, one line per task and model.")]


def _figure(report: Report, fig: Any, drawn: Any, stem: str, caption: str) -> str:
    from analysis.plots import save

    base, n = stem, 1
    while stem in report.figures:  # two models or sweeps with the same short name
        n += 1
        stem = f"{base}-{n}"
    paths = save(fig, report.out_dir, stem)
    report.files += paths
    report.figures[stem] = drawn
    png = base64.b64encode(paths[0].read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(stem)}" src="data:image/png;base64,{png}">'
            f"<figcaption>{html.escape(caption)} Files: {html.escape(paths[0].name)}, "
            f"{html.escape(paths[1].name)}.</figcaption></figure>")


def _importance_section(report: Report, res: Any) -> str:
    from analysis.plots import importance_figure

    head = f"<h2>Hyperparameter importance: {html.escape(res.sweep.label)}</h2>"
    counts = (f"{res.n_complete} completed trials ({res.metric.name}); {res.n_pruned} stopped early "
              f"(pruned, not used) and {res.n_failed} failed")
    if not res.importances:
        report.notes.append(f"sweep {res.sweep.name}: no importances ({res.note})")
        return f"{head}<p>No importances: {html.escape(res.note)} ({html.escape(counts)}).</p>"
    stem = f"importance_{slug(res.sweep.name)}"
    import pandas as pd

    pd.DataFrame({"setting": list(res.importances), "name": [short_name(k) for k in res.importances],
                  "importance": list(res.importances.values())}).to_csv(report.out_dir / f"{stem}.csv",
                                                                         index=False)
    report.files.append(report.out_dir / f"{stem}.csv")
    fig = importance_figure(res.importances, evaluator=res.evaluator,
                            title=f"Hyperparameter importance for {res.metric.heading} - {res.sweep.label}")
    return head + _figure(report, fig, res.importances, stem,
                          f"optuna.importance.get_param_importances ({res.evaluator}) on the study "
                          f"rebuilt from MLflow: {counts}.")


def _study_section(report: Report, sweep: Any, objective: str) -> str:
    """The sweep's stored Optuna studies: Optuna's optimisation history and parallel
    coordinates of each (one study per group with groups)."""
    import matplotlib.pyplot as plt

    from analysis.studies import stored_studies, study_figures

    studies, note = stored_studies(sweep)
    if not studies:
        report.notes.append(f"sweep {sweep.name}: no Optuna study plots ({note})")
        return ""
    parts = [f"<h2>Optuna study: {html.escape(sweep.label)}</h2>"]
    for stored in studies:
        group = f" (trials of {stored.label})" if stored.group else ""
        for kind, fig, drawn in study_figures(stored.study, objective, stored.label if group else ""):
            what = {"history": "optimisation history", "parallel": "parallel coordinates",
                    "pareto": "Pareto front of the metric and the trainable parameters"}[kind]
            parts.append(_figure(report, fig, drawn, f"optuna_{kind}_{slug(stored.stem)}",
                                 f"Study {stored.name}{group}: {what} (optuna.visualization.matplotlib), "
                                 f"{drawn['completed']} of {drawn['trials']} trials completed."))
            plt.close(fig)
    return "".join(parts)


# --------------------------------------------------------------------------- CLI


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (``error: ...``) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from trainables.mlflow_names import default_tracking_uri

    p = _Parser(prog="python -m analysis.report", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracking-uri", default=default_tracking_uri(),
                   help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlruns.db)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", help="MLflow experiment name: every sweep in it")
    which.add_argument("--sweep", action="append", metavar="RUN_ID",
                       help="a sweep's parent run id (repeatable)")
    p.add_argument("--out", required=True, help="output folder (created; the files of a report written there before are replaced, "
                                                      "others kept)")
    p.add_argument("--metric", help="metric that ranks trials (default: each task's per-epoch validation metric, "
                                    "val_loss for E2E, val_accuracy for SST-2; any per-epoch validation metric "
                                    "logged, e.g. val_loss for SST-2). A test-split metric (BLEU, accuracy) "
                                    "selects on the test set: an optimistic estimate, warned about")
    p.add_argument("--no-log", action="store_true", help="do not log the files to MLflow")
    return p


def _quiet() -> None:
    """MLflow's and alembic's INFO lines when a SQLite store is opened are not ours to show."""
    for name in ("alembic", "mlflow", "matplotlib", "optuna"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet()
    from analysis.load import load

    try:
        if not args.out.strip():
            raise UserError("--out", "is empty; name the report's folder (e.g. --out report/)")
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise UserError("--out", f"{out} exists and is not a folder")
        data = load(args.tracking_uri, experiment=args.experiment, sweep_ids=args.sweep or ())
        resolve_metric(data, args.metric)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError("--out", f"cannot create the folder {out} ({e.strerror or e})") from None
        try:  # write access, as the report will need it (a permission check would pass for root)
            os.rmdir(tempfile.mkdtemp(prefix=".lorasweep-report-check-", dir=out))
        except OSError as e:
            raise UserError("--out", f"cannot write in the folder {out} ({e.strerror or e}); "
                                     "name a folder you can write") from None
        report = build_report(data, out, metric=args.metric)
    except UserError as e:
        print(f"error: {e.field}: {e.message}" if e.field else f"error: {e.message}", file=sys.stderr)
        return EXIT_USAGE

    from analysis.tables import to_markdown

    for table in report.tables.values():
        print(to_markdown(table))
    for found in report.comparisons.values():
        for table in found.tables:
            print(to_markdown(table))
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"analysed {data.n_planned()} trials of {len(data.sweeps)} sweep(s) ({data.status_text()}; "
          f"{len(data.trials)} with an MLflow run) from {data.tracking_uri}")
    print(f"  report: {report.html.resolve()}")
    print(f"  tables: {', '.join(p.name for p in report.files if p.name.startswith(('table_', 'compare_')))}")
    figs = sorted(p.name for p in report.files if p.suffix == ".png")
    print(f"  figures (PNG + SVG): {', '.join(figs) or 'none'}")
    print(f"  folder: {report.out_dir.resolve()}")
    for n in report.notes:
        print(f"  note: {n}")
    if args.no_log:
        return 0
    try:
        folder, runs = log_report(data, report)
    except Exception as e:  # the files are written; say what went wrong with the upload
        print(f"error: logging to MLflow failed ({first_line(e)}); the files are in {report.out_dir}",
              file=sys.stderr)
        return 1
    print(f"  MLflow: logged to {folder}/ of parent run(s) {', '.join(runs)} (their current report: "
          f"tag {CURRENT_TAG})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
