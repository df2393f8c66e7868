"""Where a sweep's runs are in the MLflow UI: the links the summary prints and the study's
experiment description.

MLflow 3's UI opens an experiment on its GenAI overview (traces) unless the URL names the
"Model training" workspace (``workflowType=machine_learning``), and its runs table nests
child runs under a collapsed parent while it is unfiltered or sorted by start time (the
default). The sweep's link therefore filters the table to the sweep's runs and sorts it by the
task's metric, best first (or by run name), which lists every trial flat, with no click, and the
parent run (which has no such metric) after them."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

#: The address ``mlflow ui`` serves on by default.
LOCAL_UI = "http://127.0.0.1:5000"
#: MLflow's experiment description (shown on the experiment's pages and in its list).
NOTE_TAG = "mlflow.note.content"
WORKSPACE = {"workflowType": "machine_learning"}
#: MLflow's runs-table sort key for the run name (the UI's own ``RUN_NAME`` key).
BY_RUN_NAME = "tags.`mlflow.runName`"
#: The runs table's default sort (newest first), under which child runs nest under their parent.
BY_START_TIME = "attributes.start_time"


@dataclass(frozen=True)
class UiLinks:
    sweep: str
    """The experiment's runs table filtered to the sweep: every trial, best first, and its
    parent run."""
    parent: str
    """The sweep's parent run."""
    experiment: str
    """The experiment's runs table (every sweep of the study, newest first, trials nested under
    their sweep)."""
    served_by: str | None
    """The command that serves these URLs (a local store), or None (a tracking server)."""


def ui_base(tracking_uri: str) -> tuple[str, str | None] | None:
    """The MLflow UI's base URL for a tracking URI and the command that serves it there: a
    tracking server's own address, or ``mlflow ui`` on its default address for a local store
    (SQLite, a database, a ``./mlruns`` folder). None for Databricks (its own workspace UI)."""
    if tracking_uri.startswith(("http://", "https://")):
        parts = urlsplit(tracking_uri)
        return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/"), None
    if tracking_uri.startswith("databricks"):
        return None
    return LOCAL_UI, f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)}"


def sweep_filter(sweep: str) -> str:
    """The runs-table search that keeps one sweep's runs (the parent and its trials carry the
    sweep tag)."""
    from trainables.mlflow_names import SWEEP_TAG, filter_value

    return f"tags.`{SWEEP_TAG}` = {filter_value(sweep)}"


def ui_links(tracking_uri: str, experiment_id: str, parent_run_id: str, sweep: str,
             best_first: tuple[str, str] | None = None) -> UiLinks | None:
    """The sweep's MLflow UI links, or None where the store has no MLflow UI of its own.
    ``best_first``: the metric and its mode (``("val_loss", "min")``) that order the sweep's
    runs, best first; without it they are in run-name order."""
    where = ui_base(tracking_uri)
    if where is None:
        return None
    base, served_by = where
    page = f"{base}/#/experiments/{experiment_id}"
    key, ascending = (f"metrics.`{best_first[0]}`", best_first[1] == "min") if best_first else (BY_RUN_NAME, True)
    query = urlencode({**WORKSPACE, "searchFilter": sweep_filter(sweep), "orderByKey": key,
                       "orderByAsc": str(ascending).lower()}, quote_via=quote)
    # The study's table with the UI's default view, named: without it the UI restores the
    # search and sort last used on the experiment (the browser keeps them).
    study = urlencode({**WORKSPACE, "searchFilter": "", "orderByKey": BY_START_TIME, "orderByAsc": "false"},
                      quote_via=quote)
    return UiLinks(sweep=f"{page}/runs?{query}", parent=f"{page}/runs/{parent_run_id}?{urlencode(WORKSPACE)}",
                   experiment=f"{page}/runs?{study}", served_by=served_by)


def print_links(tracking_uri: str, experiment_id: str, parent_run_id: str, sweep: str,
                best_first: tuple[str, str] | None = None) -> None:
    """The summary's MLflow lines: the store, the parent run and where to see them."""
    print(f"  MLflow: parent run {parent_run_id} in {tracking_uri}")
    links = ui_links(tracking_uri, experiment_id, parent_run_id, sweep, best_first)
    if links is None:
        return
    if links.served_by:
        print(f"  MLflow UI: {links.served_by}  (serves {LOCAL_UI}), then open")
    else:
        print("  MLflow UI:")
    print(f"    this sweep's runs:  {links.sweep}")
    print(f"    its parent run:     {links.parent}")
    print(f"    the study's runs:   {links.experiment}")


def study_description(study: str, fallback: str) -> str:
    """The study's experiment description (markdown): the first paragraph of its script's
    docstring (``sweeps/<study>.py``), else ``fallback`` (the preset's description, Markdown as
    written), else the study's name, and where its runs are in the UI."""
    import importlib

    from analysis import markdown
    from sweeps.study_file import studies

    text = ""
    if study in studies():  # not a study file of one's own
        text = (importlib.import_module(f"sweeps.{study}").__doc__ or "").strip().split("\n\n", 1)[0]
    text = " ".join((text or fallback or f"lorasweep study {markdown.text(study)}").split())
    return (f"{text}\n\nOne parent run per sweep, one child run per trial: the **Model training** "
            "workspace's Runs tab lists them; the link each sweep prints at its end opens its runs.")
