"""After a study's sweeps: the analysis report of exactly those sweeps, read back from MLflow.

A study whose preset file says ``report: true`` (``rank_vs_model_size``, ``rank_vs_task``,
``squad_grid``) calls :func:`report_study` once all its parts have run. It reads the parent
runs this invocation wrote from the tracking store (not any older sweep of the experiment),
writes the plots, tables and ``report.html`` with :func:`analysis.report.build_report`, and
logs them to each parent run under ``analysis/``, exactly as
``python -m analysis.report --sweep RUN_ID ...`` would.

The folder is ``<storage>/<name>-report`` with ``--name``, else
``<storage>/<study>-<preset>-report-<time>-<six random hex digits>`` (beside the sweeps' Tune
results; a cloud storage URI gets ``./results/...`` as the results CSV does): two studies on one
storage that end in the same second write folders of their own, as their sweeps' default names
differ.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from trainables.errors import UserError


def report_dir(study: str, preset: str, outcomes: list[Any], *, name: str | None) -> Path:
    """Beside the first sweep's results folder (``<storage>/<sweep>/``, ``./results/<sweep>/``
    for cloud storage): the storage each sweep ran with, a resumed one's stored one too."""
    from sweeps.storage import unique_stamp

    root = outcomes[0].csv_path.parent.parent
    stem = f"{name}-report" if name else f"{study}-{preset}-report-{unique_stamp()}"
    return root / stem


def report_study(study: str, cfgs: list[Any], outcomes: list[Any], *, name: str | None = None) -> int:
    """Write and log the report of ``outcomes``' sweeps; returns 0, or 1 when it failed (the
    sweeps themselves are recorded either way)."""
    from analysis.load import load
    from analysis.report import _quiet, build_report, log_report
    from trainables.mlflow_names import default_tracking_uri

    _quiet()
    uri = outcomes[0].tracking_uri or cfgs[0].tracking_uri or default_tracking_uri()
    out = report_dir(study, cfgs[0].preset, outcomes, name=name)
    try:
        data = load(uri, sweep_ids=[o.parent_run_id for o in outcomes])
        report = build_report(data, out)
        log_report(data, report)
    except (UserError, OSError, ValueError) as e:
        print(f"error: the analysis report was not written ({e}); the sweeps are in MLflow: "
              f"python -m analysis.report --tracking-uri {shlex.quote(uri)} "
              + " ".join(f"--sweep {o.parent_run_id}" for o in outcomes) + " --out DIR",
              file=sys.stderr)
        return 1
    figs = sorted(p.name for p in report.files if p.suffix == ".png")
    print(f"\n{study}: analysis report of {len(outcomes)} sweep(s) -> {report.html.resolve()}")
    print(f"  figures (PNG + SVG): {', '.join(figs) or 'none'}")
    print(f"  tables: {', '.join(p.name for p in report.files if p.name.startswith(('table_', 'compare_')) and p.suffix == '.md')}")
    for note in report.notes:
        print(f"  note: {note}")
    for warning in report.warnings:
        print(f"  warning: {warning}")
    return 0
