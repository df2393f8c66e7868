"""Step 4 of a sweep: the end-of-sweep summary (the table, the results CSV, where the MLflow
runs are) and the parent run's final record."""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.values import finite, fmt_value, sort_key
from sweeps.grouping import leaves_nothing_to_prune
from sweeps.optuna_store import record_pareto
from sweeps.plan import Plan
from sweeps.tracking.links import print_links
from sweeps.summary_tables import extra_report_metrics, render_group_table, render_table
from sweeps.tracking.store import flush_timeout_s
from trainables.mlflow_names import default_tracking_uri
from trainables.report import K


@dataclass
class Outcome:
    rows: list[dict[str, Any]]
    counts: dict[str, int]
    csv_path: Path
    parent_run_id: str
    exit_code: int
    lost: dict[str, list[str]] = field(default_factory=dict)
    """MLflow records that could not be written (the store stayed unreachable), per trial."""
    interrupted: str | None = None
    """The signal that interrupted the sweep (SIGINT, SIGTERM), or None."""
    tracking_uri: str = ""
    """The MLflow store the sweep recorded into (a resumed sweep's own, stored one)."""


def print_header(plan: Plan, parent: str, experiment_id: str) -> None:
    cfg = plan.cfg
    swept = ", ".join(f"{p.short}: {p.kind} {_values_text(p.values)}" for p in plan.space.swept) or "nothing"
    print(f"\nlorasweep {cfg.study} [{cfg.preset}] -> {plan.name}")
    per = " per group" if plan.group_points else ""
    extra = f"; {plan.n_trials} more after {plan.prior_samples} sample(s){per}" if plan.prior_samples else ""
    print(f"  trials: {plan.n_trials} ({cfg.search.algorithm}; sweeping {swept}{extra})")
    if plan.study_storage:
        n = len(plan.group_points or [])
        which = f"studies {plan.name}/group-0..{n - 1} (one per group)" if n else f"study {plan.name}"
        print(f"  Optuna {which} in {plan.study_storage}")
    print(f"  scheduler: {scheduler_text(plan)}; max {plan.max_epoch:.3g} epochs, "
          f"{plan.stats.get('train_examples', '?')} training examples")
    print(f"  MLflow: {plan.tracking_uri} experiment '{plan.experiment}' (id {experiment_id}), "
          f"parent run {parent}")
    if cfg.max_trainable_params:
        print(f"  budget: {cfg.max_trainable_params:,} trainable parameters; "
              f"{len(plan.rejected)} configuration(s) over it, not launched: "
              + (", ".join(f"{_point_text(p)} ({n:,})" for p, n in plan.rejected) or "none"))
    print(f"  Tune storage: {plan.storage}/{plan.name}\n", flush=True)


def _values_text(values: Any, most: int = 8) -> str:
    """A swept setting's values for the header: all of them, or a grid of a thousand seeds as
    ``[1, 2, 3, ..., 999, 1000] (1000 values)``."""
    values = list(values)
    if len(values) <= most:
        return str(values)
    return f"[{', '.join(map(str, values[:3]))}, ..., {', '.join(map(str, values[-2:]))}] ({len(values)} values)"


def scheduler_text(plan: Plan) -> str:
    """How trials are stopped and searched, in one line of the header."""
    cfg = plan.cfg
    names = {p.key: p.short for p in plan.space.swept}
    within = " and ".join(names[k] for k in plan.groups or ())
    optuna = f"; one Optuna study per {within}" if plan.group_points is not None else ""
    if cfg.scheduler.name == "fifo":
        return f"fifo (every trial runs to the end){optuna}"
    if leaves_nothing_to_prune(plan.space, plan.groups):
        return (f"asha has nothing to prune: every swept setting ({within}) is scientific, so each "
                "trial is its own group and runs to the end")
    rule = ", promotion: pause" if cfg.scheduler.promotion == "pause" else ""
    where = f"within each {within}" if within else "sweep-wide"
    return f"asha {where} (grace {cfg.scheduler.grace_period:g}, eta {cfg.scheduler.reduction_factor:g}{rule}){optuna}"


def _point_text(point: dict[str, Any]) -> str:
    return " ".join(f"{k.replace('adapter.', '').replace('train.', '')}={v}" for k, v in point.items())


def status_of(result: Any, recorder: Any) -> str:
    """A trial's outcome: failed, completed (also when its own early stopping ended it),
    stopped early by ASHA, or unfinished. The recorder has the outcome of every trial that
    ended, in this driver or an earlier one of the sweep (Tune's experiment state keeps it);
    a trial without one was still running, or waiting, when the sweep was interrupted (Tune
    marks those it stops then as terminated too). A trial that never reported was never
    stopped by ASHA (which acts on reports): it had not started, or had just started."""
    from trainables.mlflow_names import COMPLETED, FAILED, STOPPED, UNFINISHED

    metrics = result.metrics or {}
    if result.error is not None:
        return FAILED
    if metrics.get("trial_id") in recorder.outcomes:
        return recorder.outcomes[metrics["trial_id"]]
    if "training_iteration" not in metrics:  # Tune adds it to every report
        return UNFINISHED
    if not recorder.attempts:  # no trial event reached this driver (Ray Client runs Tune remotely)
        return COMPLETED if metrics.get("is_final") else STOPPED
    return UNFINISHED


def trial_id_of(result: Any) -> str | None:
    """A result's trial id (Tune fills it in also for a trial that never reported)."""
    return (result.metrics or {}).get("trial_id")


def _error_line(result: Any, recorder: Any, tid: str | None) -> str:
    """The exception line of a failed trial ("FloatingPointError: train loss is nan ...")."""
    if result.error is None:
        return ""
    if tid in recorder.errors:
        return recorder.errors[tid][:300]
    lines = [ln.strip() for ln in str(result.error).splitlines() if ln.strip()]
    return lines[-1][:300] if lines else type(result.error).__name__


def summarise(plan: Plan, task: Any, results: Any, recorder: Any, parent: str, *,
               interrupted: str | None = None) -> Outcome:
    """The end of a sweep: its trials' MLflow writes, the table, the results CSV and the
    parent run's summary (``KILLED`` with how to resume it when ``interrupted``)."""
    from trainables.mlflow_names import FAILED, STOPPED, UNFINISHED

    # The trials' MLflow writes first (their run ids go in the table); a store that is down
    # gets until the deadline to come back, then what is left is reported, not dropped.
    deadline = time.monotonic() + flush_timeout_s()
    pending = recorder.writer.pending()
    if pending and recorder.writer.down:
        print(f"\n  waiting up to {flush_timeout_s():.0f} s for {pending} MLflow write(s) "
              f"({plan.tracking_uri} unreachable)", flush=True)
    recorder.writer.flush(max(0.0, deadline - time.monotonic()))
    # Beside the sweep's Tune results (a cluster job's working directory is temporary); a
    # cloud storage URI gets a local copy, and MLflow always has one (the parent's artifact).
    out_dir = Path("results") / plan.name if "://" in plan.storage else Path(plan.storage) / plan.name
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "results.csv"
    rows = _summary_rows(plan, task, results, recorder)
    rows = sorted(earlier_rows(csv_path, rows) + rows, key=lambda r: tuple(sort_key(r.get(p.short))
                                                                           for p in plan.space.swept))
    counts = {s: sum(r["status"] == s for r in rows) for s in ("completed", STOPPED, FAILED, UNFINISHED)}
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in rows for k in r)) or ["status"])
        writer.writeheader()
        writer.writerows(rows)
    _print_summary(plan, task, rows, counts, out_dir, recorder, parent, interrupted)
    record_pareto(plan, rows, recorder, lambda r: f"{_label(r, plan.space.swept)} ({task.metric.heading} "
                  f"{fmt_value(r.get(task.metric.name), task.metric.fmt)}, {fmt_value(r.get(K.trainable_params), '{:,}')})")
    print(f"  results CSV: {csv_path.resolve()}")
    print_links(plan.tracking_uri, recorder.experiment_id, parent, plan.name, (task.metric.name, task.metric.mode))
    _record_parent(plan, task, rows, counts, csv_path, recorder, parent, interrupted)
    lost = recorder.flush(max(5.0, deadline - time.monotonic()))
    recorder.save_journal()
    _print_lost(plan, recorder, lost)
    _print_best(plan, task, rows, parent, lost)
    if interrupted:
        from sweeps.stopping import exit_code

        code = exit_code(interrupted)
    else:
        code = 1 if counts[FAILED] or lost else 0
    return Outcome(rows=rows, counts=counts, csv_path=csv_path, parent_run_id=parent, exit_code=code,
                   lost=lost, interrupted=interrupted, tracking_uri=plan.tracking_uri)


def _summary_rows(plan: Plan, task: Any, results: Any, recorder: Any) -> list[dict[str, Any]]:
    """One row per trial: swept values, status, metrics, costs and where it is recorded."""
    swept = plan.space.swept
    compare_methods = any("adapter.method" in p.keys for p in swept)
    rows: list[dict[str, Any]] = []
    # A trial that never reported (waiting when the sweep was interrupted) has no config in its
    # Result; Tune's trial has it.
    analysis = getattr(results, "_experiment_analysis", None)
    configs = {t.trial_id: t.config for t in getattr(analysis, "trials", None) or []}
    for result in results:
        m = result.metrics or {}
        tid = trial_id_of(result)
        cfg_hp = result.config or configs.get(tid) or {}
        row: dict[str, Any] = {p.short: cfg_hp.get(p.key) for p in swept}
        row.update({
            K.trainable_pct: m.get(K.trainable_pct), K.trainable_params: m.get(K.trainable_params),
            "status": status_of(result, recorder), "epoch": m.get("epoch"),
            # With keep_best, the epoch whose weights the final metrics are of (empty otherwise).
            K.best_epoch: m.get(K.best_epoch), task.metric.name: m.get(task.metric.name),
        })
        for spec in (*extra_report_metrics(task), *task.final_metrics):
            row[spec.name] = m.get(spec.name)
        row["note"] = m.get("final_note", "")
        row.update({K.samples_per_s: m.get(K.samples_per_s), K.peak_mem_mb: m.get(K.peak_mem_mb),
                    "wall_s": m.get("wall_s"), "trial_id": m.get("trial_id"),
                    "mlflow_run_id": recorder.run_id(m.get("trial_id") or ""),
                    "attempts": recorder.attempts.get(tid, 1),
                    "error": _error_line(result, recorder, tid)})
        if compare_methods and "method" not in row:  # swept coupled, e.g. method+r
            from search_spaces import apply_hyperparameters

            row["method"] = apply_hyperparameters(plan.base, cfg_hp)["adapter"]["method"]
        rows.append(row)
    rows.sort(key=lambda r: tuple(sort_key(r.get(p.short)) for p in swept))
    return rows


#: Results CSV columns that are text whatever they look like.
_TEXT_COLUMNS = ("trial_id", "mlflow_run_id", "status", "note", "error")


def earlier_rows(csv_path: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trials of the sweep's earlier Tune runs (before an ``--extend``) that this run's
    results do not hold, read back from its results CSV (numbers as numbers)."""
    if not csv_path.exists():
        return []
    known = {r.get("trial_id") for r in rows}
    with open(csv_path, newline="") as fh:
        earlier = [{k: v if k in _TEXT_COLUMNS else _cell(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    return [r for r in earlier if r.get("trial_id") and r["trial_id"] not in known]


def _cell(text: str) -> Any:
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def _print_summary(plan: Plan, task: Any, rows: list[dict[str, Any]], counts: dict[str, int], out_dir: Path,
                   recorder: Any, parent: str, interrupted: str | None) -> None:
    from trainables.mlflow_names import FAILED, INTERRUPTED, STOPPED, UNFINISHED

    swept = plan.space.swept
    generated = plan.cfg.trial.eval.generate
    if plan.groups:
        print(render_group_table(rows, swept, plan.groups, task, final=generated))
        print(f"  one row per {' and '.join(p.short for p in swept if p.key in plan.groups and p.key != 'seed')}: "
              f"its best completed trial by {task.metric.heading}; every trial is in the results CSV")
    else:
        print(render_table(rows, swept, task, final=generated))
    from analysis.references import method_references, over_seeds_for, reference_for

    methods = any("adapter.method" in p.keys for p in swept) and rows
    per_method, cited = method_references(plan.cfg.study, plan.cfg.trial.task) if methods else ({}, "")
    reference, note = reference_for(plan.cfg.trial, plan.space)
    if per_method and generated:
        print(f"  reference ({cited}): each method's, in the methods table below")
    elif reference and generated:
        ref = "  ".join(f"{s.heading} {reference[s.name]:g}" for s in task.final_metrics
                        if s.name in reference)
        print(f"  reference ({note}): {ref}")
    if task.final_metrics and not generated:
        print("  generation metrics off (eval.generate=false)")
    if methods:
        _compare_methods(plan, task, rows, out_dir, recorder, parent, per_method if generated else {})
    _print_seed_summaries(rows, swept, task, reference, over_seeds_for(plan.cfg.trial.task))
    _print_notes(rows, plan.space.swept)
    rejected = f", {len(plan.rejected)} rejected over the parameter budget" if plan.cfg.max_trainable_params else ""
    unfinished = f", {counts[UNFINISHED]} unfinished" if counts[UNFINISHED] else ""
    # Trials Tune had not created yet when the sweep was stopped (held back by a concurrency
    # cap): --resume runs them. Not counted for Optuna sweeps: a resumed --extend plans the
    # sweep's samples in all, and its Tune run holds only the trials it adds.
    not_started = plan.n_trials - len(rows) if interrupted and plan.cfg.search.algorithm != "optuna" else 0
    unfinished += f", {not_started} not started" if not_started > 0 else ""
    print(f"\n  {counts['completed']} completed, {counts[STOPPED]} stopped early, "
          f"{counts[FAILED]} failed{unfinished}{rejected}")
    for r in rows:
        if r["status"] == FAILED:
            tries = f" after {r['attempts']} attempts" if r["attempts"] > 1 else ""
            print(f"  failed{tries}: {_label(r, swept)} ({r['trial_id']}): {r['error']}")
    if interrupted:
        from sweeps.stopping import resume_command

        print(f"  interrupted ({interrupted}): finish the sweep with\n    {resume_command(plan.cfg, plan.name)}")
    if recorder.interrupted:
        print(f"  {len(recorder.interrupted)} MLflow run(s) of trials interrupted before Tune "
              f"recorded them closed as {INTERRUPTED} (their configurations ran again)")


def _print_notes(rows: list[dict[str, Any]], swept: Any, most: int = 4) -> None:
    """Each trial note once, naming its trials where it is not every trial's (or every
    completed trial's: a note of the final evaluation)."""
    by_note: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("note"):
            by_note.setdefault(r["note"], []).append(r)
    completed = [r for r in rows if r.get("status") == "completed"]
    for note in sorted(by_note):
        noted = by_note[note]
        labels = [_label(r, swept) for r in noted]
        more = f" and {len(labels) - most} more" if len(labels) > most else ""
        everyone = len(noted) == len(rows) or (completed and noted == completed)
        which = "" if everyone else f" ({', '.join(labels[:most])}{more})"
        print(f"  note{which}: {note}")


def _label(row: dict[str, Any], swept: Any) -> str:
    """A trial's swept values (``r=4 lr=0.002``), or its trial id."""
    return " ".join(f"{p.short}={fmt_value(row.get(p.short), '{:.3g}')}" for p in swept) or row["trial_id"]


def best_completed(rows: list[dict[str, Any]], task: Any) -> dict[str, Any] | None:
    """The completed trial with the best value of the task's metric that has an MLflow run (the
    one whose adapter the sweep recorded), or None. Of trials tied at that value, the first by
    trial id, as the report picks it (:func:`analysis.importance.best_trial`)."""
    from analysis.groups import best_first

    key = task.metric.name
    done = [r for r in rows if r["status"] == "completed" and r.get("mlflow_run_id") and finite(r.get(key))]
    return min(done, key=best_first(key, task.metric.mode)) if done else None


def _best_metrics(task: Any, rows: list[dict[str, Any]], best: dict[str, Any] | None) -> dict[str, float]:
    """``best_<metric>``: the best completed trial's metric, validation metrics and final
    metrics (without one, the best value of the metric over every trial that reported it)."""
    if best is None:
        values = [r[task.metric.name] for r in rows if finite(r.get(task.metric.name))]
        pick = min if task.metric.mode == "min" else max
        return {f"best_{task.metric.name}": float(pick(values))} if values else {}
    names = (task.metric.name, *(s.name for s in (*extra_report_metrics(task), *task.final_metrics)),
             K.trainable_params)
    return {f"best_{n}": float(best[n]) for n in names if finite(best.get(n))}


def _record_parent(plan: Plan, task: Any, rows: list[dict[str, Any]], counts: dict[str, int], csv_path: Path,
                   recorder: Any, parent: str, interrupted: str | None) -> None:
    """The parent run's summary: trial counts, the best trial (its run id as a tag, its metrics),
    the results CSV, its status."""
    from mlflow.entities import Metric

    from sweeps.stopping import interruption_tags
    from trainables.mlflow_names import BEST_RUN_TAG, BEST_TRIAL_TAG, FAILED, STOPPED
    from sweeps.tracking.mlflow_calls import log_batch, now_ms

    # Step: the trials ended so far (an interrupted, resumed or extended sweep's summaries in order).
    step = sum(counts[k] for k in ("completed", STOPPED, FAILED))
    metrics = [Metric(f"trials_{k}", float(v), now_ms(), step) for k, v in counts.items()]
    if plan.cfg.max_trainable_params:
        metrics.append(Metric("trials_rejected_over_budget", float(len(plan.rejected)), now_ms(), step))
    best = best_completed(rows, task)
    metrics += [Metric(k, v, now_ms(), step) for k, v in _best_metrics(task, rows, best).items()]
    status = "FAILED" if rows and counts[FAILED] == len(rows) else "FINISHED"
    tags = interruption_tags(plan, interrupted) if interrupted else {}
    if best is not None:
        tags.update({BEST_RUN_TAG: best["mlflow_run_id"], BEST_TRIAL_TAG: best["trial_id"]})

    def record(client: Any) -> None:
        log_batch(client, parent, metrics=metrics, tags=tags)
        client.log_artifact(parent, str(csv_path))
        _log_best_predictions(client, parent, best)
        client.set_terminated(parent, status="KILLED" if interrupted else status, end_time=now_ms())

    recorder.writer.submit("sweep", "the sweep's summary (parent run)", record)


def _print_best(plan: Plan, task: Any, rows: list[dict[str, Any]], parent: str,
                lost: dict[str, list[str]]) -> None:
    """The best completed trial, where its adapter is and the command that exports it."""
    best = best_completed(rows, task)
    if best is None:
        return
    run = best["mlflow_run_id"]
    value = fmt_value(best.get(task.metric.name), task.metric.fmt)
    print(f"  best trial: {_label(best, plan.space.swept)} ({best['trial_id']}), {task.metric.heading} {value}")
    tied = [r for r in rows if r is not best and r["status"] == "completed" and r.get(task.metric.name) ==
            best[task.metric.name]]
    if tied:
        print(f"    tied with {len(tied)} other completed trial(s) at {task.metric.heading} {value}: "
              "the metric does not tell them apart (the first by trial id is shown)")
    if best["trial_id"] in lost:
        print("    its weights are not in MLflow yet (see above)")
        return
    where = f"runs:/{run}/adapter"
    try:
        from mlflow import MlflowClient

        where += f" ({MlflowClient(tracking_uri=plan.tracking_uri).get_run(run).info.artifact_uri}/adapter)"
    except Exception:  # noqa: BLE001 - the store went away: the runs:/ URI says it all
        pass
    import shlex

    uri = "" if plan.tracking_uri == default_tracking_uri() else f" --tracking-uri {shlex.quote(plan.tracking_uri)}"
    full = best.get("method", plan.cfg.trial.adapter.method) == "full"
    print(f"    {'its model (full fine-tuning)' if full else 'its adapter'}: {where}")
    print(f"    export it: python -m sweeps.export --run {parent}{uri} --out {shlex.quote(plan.name + '-best')}  "
          "(--merge: merged model)")


def _print_lost(plan: Plan, recorder: Any, lost: dict[str, list[str]]) -> None:
    """What could not be written to MLflow (kept in the sweep's journal), or the outages
    survived."""
    import sys

    from sweeps.tracking.writer import JOURNAL_FILE

    if lost:
        print(f"  MLflow records NOT written ({plan.tracking_uri} unreachable until the deadline; "
              "the results CSV has every trial):")
        for label, what in lost.items():
            run = recorder.run_id(label)
            print(f"    {label}{f' (run {run})' if run else ''}: {len(what)} record(s): "
                  + "; ".join(what[:3]) + (" ..." if len(what) > 3 else ""))
        if recorder.writer.pending_records():
            from sweeps.stopping import resume_command

            print(f"  the trials' records are kept in {plan.storage.rstrip('/')}/{plan.name}/{JOURNAL_FILE}; "
                  f"once MLflow is back, write them with\n    {resume_command(plan.cfg, plan.name)}")
    elif recorder.writer.outages:
        print(f"  MLflow was unreachable {recorder.writer.outages} time(s), "
              f"{recorder.writer.outage_s:.0f} s in all; every record was written when it returned")
    for error in recorder.journal_errors[-3:]:
        print(f"  warning: could not save the MLflow journal ({error})", file=sys.stderr)


def _compare_methods(plan: Plan, task: Any, rows: list[dict[str, Any]], out_dir: Path, recorder: Any,
                     parent: str, per_method: dict[str, dict[str, float]]) -> None:
    """A sweep over ``adapter.method``: its methods' quality / speed / memory table (printed with
    ``per_method``'s source numbers, ``methods.csv``) and plot (``methods.png``), also logged."""
    from analysis.methods import method_rows, plot, render

    finals = task.final_metrics if plan.cfg.trial.eval.generate else ()
    # The metric the source reports, where it reports one of ours (MRPC: F1, not accuracy).
    cited = [m for m in finals if any(m.name in values for values in per_method.values())]
    spec = (cited or finals or (task.metric,))[0]
    table = method_rows(rows, spec.name)
    title = f"methods on {plan.cfg.trial.task} ({spec.heading}: median over completed trials; " \
            f"peak memory {'GPU' if plan.cfg.resources.gpus_per_trial else 'process RSS'})"
    source = {method: "  ".join(f"{m.heading} {m.fmt.format(values[m.name])}" for m in task.final_metrics
                                if m.name in values) for method, values in per_method.items()}
    print(render(table, heading=spec.heading, fmt=spec.fmt, title=title, source=source))
    path = out_dir / "methods.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    png = plot(table, out_dir / "methods.png", heading=spec.heading, title=f"{plan.name}: {plan.cfg.trial.task}")
    if png is not None:
        print(f"  methods plot: {png.resolve()}")
    files = [path] + ([png] if png is not None else [])

    def record(client: Any) -> None:
        for f in files:
            client.log_artifact(parent, str(f))

    recorder.writer.submit("sweep", "the methods table and plot (parent run)", record)


def _print_seed_summaries(rows: list[dict[str, Any]], swept: Any, task: Any, reference: dict[str, float],
                          over_seeds: str) -> None:
    """With seed replicates: each final metric over the completed seeds of every configuration,
    as ``over_seeds`` (the ``median`` or ``mean``, as the task's published table reports its
    runs); with no other setting swept, beside the published number (the reference is one
    configuration's: a sweep of ranks shows it once, in its own line with its rank)."""
    import statistics

    if not any(p.short == "seed" for p in swept):
        return
    summarise = statistics.fmean if over_seeds == "mean" else statistics.median
    others = [p.short for p in swept if p.short != "seed"]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        if r["status"] == "completed":
            groups.setdefault(tuple(str(r.get(k)) for k in others), []).append(r)
    for key, group in groups.items():
        parts = []
        for spec in task.final_metrics:
            vals = [r[spec.name] for r in group if isinstance(r.get(spec.name), (int, float))
                    and math.isfinite(r[spec.name])]
            if vals:
                ref = f" (paper {reference[spec.name]:g})" if spec.name in reference and not others else ""
                parts.append(f"{spec.heading} {spec.fmt.format(summarise(vals))}{ref}")
        label = " ".join(f"{k}={v}" for k, v in zip(others, key))
        if parts:
            seeds = f"{len(group)} seed{'s' if len(group) != 1 else ''}"
            print(f"  {over_seeds} over {seeds}{' for ' + label if label else ''}: {'  '.join(parts)}")


def _log_best_predictions(client: Any, parent: str, best: dict[str, Any] | None) -> None:
    """The best completed trial's ``predictions.csv`` (unlabelled-file predictions), also
    logged to the sweep's parent run as ``best_predictions.csv``."""
    import tempfile

    if best is None:
        return
    names = {a.path for a in client.list_artifacts(best["mlflow_run_id"], "outputs")}
    if "outputs/predictions.csv" not in names:
        return
    with tempfile.TemporaryDirectory() as d:
        local = Path(client.download_artifacts(best["mlflow_run_id"], "outputs/predictions.csv", d))
        target = Path(d) / "best_predictions.csv"
        local.rename(target)
        client.log_artifact(parent, str(target))
    print(f"  predictions of the best trial ({best['mlflow_run_id']}): best_predictions.csv in the parent run")
