"""The sweep's MLflow store: checked before launch, created while Ray starts (SQLite), the
parent run, and the HTTP settings of the sweep's writes."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trainables.errors import UserError, first_line
from trainables.mlflow_names import sqlite_path
from trainables.schema import to_dict
from sweeps.plan import Plan


class StagedStore:
    """A new SQLite MLflow store, created while Ray starts and put in place once the sweep is
    sure to launch.

    MLflow creates a new SQLite store by running its schema migrations, which take seconds of
    CPU. Here they run once per MLflow version (:func:`empty_store`); the store is a copy of
    that empty one in a hidden file beside the one named (``.mlruns.db.lorasweep-<pid>``),
    opened by MLflow, which adds its default experiment, and hard-linked into place by
    :meth:`place` after the last check (a store that appeared meanwhile wins). A sweep refused
    after Ray's start leaves nothing behind (:meth:`discard`). The file is the one MLflow would
    have made: a SQLite database does not record its own path, and the default experiment's
    artifact location comes from the working directory, as it would. Other stores (an existing
    file, a server) are left to MLflow.
    """

    def __init__(self, uri: str) -> None:
        self.path: Path | None = None
        self.staged: Path | None = None
        path = sqlite_path(uri)
        if path is None or path.exists() or not path.parent.is_dir():
            return
        try:  # MLflow's own constructor for a SQLite URI (what MlflowClient would call)
            from mlflow.tracking._tracking_service.utils import _get_sqlalchemy_store
        except ImportError:  # a later MLflow moved it: MlflowClient creates the store instead
            return
        import logging

        self.path, self.staged = path, path.with_name(f".{path.name}.lorasweep-{os.getpid()}")
        # "Creating initial MLflow database tables..." would print before a refusal of the sweep.
        log = logging.getLogger("mlflow.store.db.utils")
        level = log.level
        log.setLevel(logging.WARNING)
        try:
            try:
                shutil.copyfile(empty_store(), self.staged)
            except Exception:  # noqa: BLE001  (no writable cache, say): MLflow migrates this store itself
                self.staged.unlink(missing_ok=True)
            _get_sqlalchemy_store(f"sqlite:///{self.staged}", None).engine.dispose()
        except BaseException:
            self.discard()
            raise
        finally:
            log.setLevel(level)

    def place(self) -> None:
        if self.staged is None or self.path is None:
            return
        try:
            os.link(self.staged, self.path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not self.path.exists():
                os.replace(self.staged, self.path)
        finally:
            self.discard()

    def discard(self) -> None:
        if self.staged is not None:
            for leftover in (self.staged, self.staged.with_name(self.staged.name + "-journal")):
                leftover.unlink(missing_ok=True)
            self.staged = None


def empty_store() -> Path:
    """A SQLite MLflow store with MLflow's schema migrations run and no experiment, made once
    per MLflow version in the ``mlflow`` cache. MLflow adds its default experiment (id 0, its
    artifact location under the working directory) when it opens a copy."""
    import sqlite3

    import mlflow
    from mlflow.tracking._tracking_service.utils import _get_sqlalchemy_store

    from trainables.cache import build_once
    from trainables.paths import cache_dir

    def build(out: Path) -> None:
        _get_sqlalchemy_store(f"sqlite:///{out / 'mlflow.db'}", str(out / "artifacts")).engine.dispose()
        with contextlib.closing(sqlite3.connect(out / "mlflow.db")) as db, db:
            db.execute("DELETE FROM experiments WHERE experiment_id = 0")

    return build_once(cache_dir() / "mlflow", f"mlflow-{mlflow.__version__}", build) / "mlflow.db"


def study_experiment(plan: Plan, client: Any) -> str:
    """The id of the study's experiment, created with the study's description where it is
    new; an existing experiment without a description gets it (one written in the UI is kept)."""
    from sweeps.tracking.links import NOTE_TAG, study_description

    note = study_description(plan.cfg.study, plan.cfg.description or plan.space.description)
    exp = client.get_experiment_by_name(plan.experiment)
    if exp is None:
        return _create_experiment(plan.tracking_uri, client, plan.experiment, {NOTE_TAG: note})
    if not exp.tags.get(NOTE_TAG):
        client.set_experiment_tag(exp.experiment_id, NOTE_TAG, note)
    return exp.experiment_id


def _create_experiment(uri: str, client: Any, name: str, tags: dict[str, str]) -> str:
    """A new experiment. In a SQLite store its artifacts go to ``mlruns/<experiment id>``
    beside the database file (MLflow's default root is the working directory's ``mlruns``),
    so a store keeps its runs' adapters and outputs with it whatever folder a sweep ran from.
    Other stores place artifacts themselves."""
    path = sqlite_path(uri)
    try:
        from mlflow.entities import ExperimentTag
        from mlflow.tracking._tracking_service.utils import _get_sqlalchemy_store
    except ImportError:  # a later MLflow moved it: MLflow's default location
        path = None
    if path is None:
        return client.create_experiment(name, tags=tags)
    store = _get_sqlalchemy_store(uri, str(path.expanduser().resolve().parent / "mlruns"))
    try:
        return store.create_experiment(name, tags=[ExperimentTag(k, v) for k, v in tags.items()])
    finally:
        store.engine.dispose()


def parent_run(plan: Plan, client: Any, experiment_id: str, *, resume: bool) -> str:
    from trainables.mlflow_names import KIND_TAG, SWEEP_TAG
    from sweeps.optuna_store import EXTENDED_TAG, parent_tags
    from sweeps.tracking.mlflow_calls import git_state, log_batch, now_ms, package_versions

    if resume:
        from sweeps.stopping import INTERRUPTED_TAG, RESUME_TAG
        from trainables.mlflow_names import filter_value

        runs = client.search_runs([experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = {filter_value(plan.name)} "
                                                                 f"and tags.`{KIND_TAG}` = 'sweep'", max_results=1)
        if runs:
            client.update_run(runs[0].info.run_id, status="RUNNING")
            for tag in (INTERRUPTED_TAG, RESUME_TAG):
                if tag in runs[0].data.tags:
                    client.delete_tag(runs[0].info.run_id, tag)
            if plan.prior_samples:  # --extend: the samples of each run of the sweep, "2+2"
                before = runs[0].data.tags.get(EXTENDED_TAG) or str(plan.prior_samples)
                client.set_tag(runs[0].info.run_id, EXTENDED_TAG, f"{before}+{plan.cfg.search.num_samples}")
            return runs[0].info.run_id
    _drop_unlaunched(client, experiment_id, plan.name)
    cfg = plan.cfg
    run = client.create_run(experiment_id, start_time=now_ms(), run_name=plan.name, tags={
        KIND_TAG: "sweep", SWEEP_TAG: plan.name, "lorasweep.study": cfg.study,
        "lorasweep.preset": cfg.preset, **({"lorasweep.part": cfg.part} if cfg.part else {}),
        **{f"lorasweep.{section}": ",".join(k for p in plan.space.swept if p.section == section for k in p.keys)
           for section in ("scientific", "nuisance")},
        "lorasweep.groups": ",".join(plan.groups or ()),
        **parent_tags(plan.study_storage, plan.name, None if plan.group_points is None else len(plan.group_points)),
        "mlflow.note.content": cfg.description or plan.space.description,
        **{f"versions.{k}": v for k, v in package_versions().items()}, **git_state()})
    params = {"study": cfg.study, "preset": cfg.preset, "part": cfg.part, "task": cfg.trial.task,
              "model": plan.base["model"]["name_or_path"], "data": plan.base["data"]["source"],
              "n_trials": plan.n_trials, "seed": cfg.seed, "space.source": plan.space.source,
              **{f"search.{k}": v for k, v in to_dict(cfg.search).items()},
              **{f"scheduler.{k}": v for k, v in to_dict(cfg.scheduler).items()},
              **{f"resources.{k}": v for k, v in to_dict(cfg.resources).items()},
              **{f"space.{p.short.replace('+', '/')}": (p.values[0] if p.kind == "fixed" else f"{p.kind}{list(p.values)}")
                 for p in plan.space.params},
              **{f"data.{k}": v for k, v in plan.stats.items()}}
    log_batch(client, run.info.run_id, params=params)
    client.log_dict(run.info.run_id, to_dict(cfg), "sweep_config.json")
    client.log_dict(run.info.run_id, plan.space.as_data(), "search_space.yaml")
    client.log_dict(run.info.run_id, plan.base, "base_trial_config.json")
    return run.info.run_id


def _drop_unlaunched(client: Any, experiment_id: str, name: str) -> None:
    """Delete the parent runs of an earlier try of this sweep name that ended before it was
    launched (stopped or failed with no child run and nothing to resume), so that running the
    command again leaves one run of that name. MLflow keeps a deleted run until ``mlflow gc``;
    ``mlflow runs restore`` brings it back."""
    from sweeps.stopping import INTERRUPTED_TAG, RESUME_TAG
    from trainables.mlflow_names import KIND_TAG, SWEEP_TAG, filter_value

    earlier = client.search_runs([experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = {filter_value(name)} "
                                                                f"and tags.`{KIND_TAG}` = 'sweep'")
    for run in earlier:
        tags = run.data.tags
        if (run.info.status in ("KILLED", "FAILED") and INTERRUPTED_TAG in tags and RESUME_TAG not in tags
                and not client.search_runs([experiment_id], max_results=1,
                                           filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")):
            client.delete_run(run.info.run_id)


@contextlib.contextmanager
def http_settings(uri: str) -> Iterator[None]:
    """MLflow's HTTP retry settings for the sweep's writes to a tracking server
    (:data:`sweeps.tracking.writer.HTTP_SETTINGS`); the environment's own win."""
    from sweeps.tracking.writer import HTTP_SETTINGS

    quick = {k: v for k, v in HTTP_SETTINGS.items() if k not in os.environ} \
        if uri.startswith(("http://", "https://")) else {}
    os.environ.update(quick)
    try:
        yield
    finally:
        for k in quick:
            os.environ.pop(k, None)


def flush_timeout_s() -> float:
    """How long the end of a sweep waits for MLflow writes held back by an unreachable
    tracking store (``LORASWEEP_MLFLOW_FLUSH_S``, default 300 s); what is still unwritten
    then is listed in the summary."""
    value = os.environ.get("LORASWEEP_MLFLOW_FLUSH_S", "300")
    try:
        return max(0.0, float(value))
    except ValueError:
        raise UserError("LORASWEEP_MLFLOW_FLUSH_S", f"must be a number of seconds, got {value!r}") from None


def check_tracking_uri(uri: str) -> None:
    """Refuse a tracking store the sweep cannot use, before anything starts, creating nothing:
    a SQLite file is created only when the sweep launches (here its directory is checked), an
    existing one must be empty or MLflow's (:mod:`trainables.tracking_db`); a tracking server or
    database server must answer within seconds, and its credentials come from the environment."""
    from urllib.parse import urlsplit

    from trainables.credentials import refuse_secrets
    from trainables.tracking_db import check_database_server, is_database_server

    parts = urlsplit(uri)
    web = parts.scheme in ("http", "https")
    refuse_secrets("tracking_uri", uri, "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or "
                                        "MLFLOW_TRACKING_TOKEN) in the environment instead" if web else
                   "give the database client its password instead (PostgreSQL: PGPASSWORD or ~/.pgpass; "
                   "MySQL: an option file)", user_is_secret=web)
    if uri == "databricks":  # MLflow's name for the default Databricks profile's workspace: no path
        return
    if (path := sqlite_path(uri)) is not None:
        if path.exists():
            if not path.is_file():
                raise UserError("tracking_uri", f"cannot use the MLflow tracking store {uri} "
                                                f"({path} is not a file)")
            from trainables.tracking_db import check_sqlite_store

            check_sqlite_store("tracking_uri", uri, path, reader=False)
            return
        from trainables.paths import unwritable_folder

        if (parent := unwritable_folder(path.parent)) is not None:  # MLflow creates missing directories
            raise UserError("tracking_uri", f"cannot create the MLflow tracking store {uri} "
                                            f"({parent} is not a writable directory)")
    elif uri.startswith(("http://", "https://")):
        from mlflow import MlflowClient

        check_tracking(MlflowClient(tracking_uri=uri), uri)
    elif is_database_server(uri):
        check_database_server("tracking_uri", uri, reader=False)
    elif parts.scheme in ("", "file") and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("1", "true"):
        raise UserError("tracking_uri", f"{uri!r} is a folder (MLflow's file store), which MLflow no longer writes "
                                        "to; give sqlite:///PATH.db, a database URL or http(s):// tracking server")
    elif parts.scheme.split("+")[0] not in ("file", "postgresql", "mysql", "mssql", "databricks"):
        raise UserError("tracking_uri", f"{uri!r} is not an MLflow tracking store; accepted: sqlite:///PATH.db, "
                                        "postgresql://..., mysql://..., http(s)://SERVER or databricks")


def check_tracking(client: Any, uri: str) -> None:
    """Refuse a tracking server that does not answer, under the sweep's HTTP settings (MLflow's
    own retries take minutes to report a server that is not there)."""
    try:
        with http_settings(uri):
            client.search_experiments(max_results=1)
    except Exception as e:
        raise unusable_store(uri, e) from None


def unusable_store(uri: str, error: Exception) -> UserError:
    """The one line for a tracking store that failed ``error``'s call: its first line."""
    return UserError("tracking_uri", f"cannot use the MLflow tracking store {uri} ({first_line(error)})")


def check_sweep_in_store(cfg: Any) -> None:
    """On ``--resume``: the tracking store holds the sweep's parent run. A resume writes into
    the store the sweep was launched with; any other has none of its runs (checked before
    anything is written, a SQLite file not created)."""
    from mlflow import MlflowClient

    from trainables.mlflow_names import KIND_TAG, SWEEP_TAG, default_tracking_uri, filter_value

    uri = cfg.tracking_uri or default_tracking_uri()
    experiment = cfg.experiment_name
    missing = (f"has no parent run of sweep {cfg.name!r} (experiment {experiment!r}); --resume continues a sweep "
               "in the store it was launched with: give that --tracking-uri")
    if (path := sqlite_path(uri)) is not None and not path.is_file():
        raise UserError("tracking_uri", f"{uri} {missing}")
    check_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    try:
        with http_settings(uri):
            exp = client.get_experiment_by_name(experiment)
            runs = exp and client.search_runs([exp.experiment_id], max_results=1, filter_string=(
                f"tags.`{SWEEP_TAG}` = {filter_value(cfg.name)} and tags.`{KIND_TAG}` = 'sweep'"))
    except Exception as e:  # a store MLflow cannot read (an old schema, a server refusing)
        raise unusable_store(uri, e) from None
    if not runs:
        raise UserError("tracking_uri", f"{uri} {missing}")
