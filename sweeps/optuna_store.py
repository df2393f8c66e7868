"""Where an optuna sweep keeps its Optuna study: an Optuna RDB storage (SQLite beside the
MLflow store by default, or any SQLAlchemy URL), one study named after the sweep (one per
group with groups), so that ``--resume`` continues it, ``--extend N`` adds trials that learn
from the earlier ones, and ``optuna-dashboard`` or ``optuna.load_study`` open it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sweeps.config import SweepConfig
from trainables.errors import UserError, first_line
from trainables.mlflow_names import sqlite_path

STUDY_FILE = "optuna.db"
#: Parent-run tags: where the sweep's studies are and their names (read by the report).
STORAGE_TAG, STUDIES_TAG = "lorasweep.optuna.storage", "lorasweep.optuna.studies"
#: Parent-run tag of an extended sweep: the samples each of its runs added ("2+2").
EXTENDED_TAG = "lorasweep.extended"


def study_storage(cfg: SweepConfig, tracking_uri: str, storage: str) -> str | None:
    """The study's storage URL: ``search.storage``, else ``optuna.db`` beside the MLflow SQLite
    file, else beside a local Tune storage; None (in memory) for other searches, and for an
    optuna search with a remote tracking store and cloud Tune storage."""
    if cfg.search.algorithm != "optuna":
        return None
    if cfg.search.storage:
        return cfg.search.storage
    mlflow_db = sqlite_path(tracking_uri)
    if mlflow_db is not None:
        return f"sqlite:///{mlflow_db.resolve().parent / STUDY_FILE}"
    if "://" not in storage:
        return f"sqlite:///{Path(storage) / STUDY_FILE}"
    return None


def _check_reachable(url: str, backend: str) -> None:
    """Connect to a database storage once, within seconds: one line if it does not answer."""
    from sqlalchemy import create_engine

    from trainables.credentials import redact_uri

    timeout = {"connect_args": {"connect_timeout": 10}} if backend in ("postgresql", "mysql") else {}
    engine = create_engine(url, **timeout)
    try:
        with engine.connect():
            pass
    except Exception as e:  # noqa: BLE001 - the driver's error, shortened to its first line
        reason = first_line(getattr(e, "orig", None) or e)
        raise UserError("search.storage", f"cannot reach the Optuna study storage {redact_uri(url)} ({reason})") from None
    finally:
        engine.dispose()


def check_study_storage(url: str | None) -> None:
    """Refuse a storage URL Optuna could not use, before anything starts, creating nothing."""
    if url is None:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from trainables.credentials import refuse_secrets

    refuse_secrets("search.storage", url, "give the database client its password instead (PostgreSQL: "
                                          "PGPASSWORD or ~/.pgpass; MySQL: an option file)")
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except ArgumentError:
        raise UserError("search.storage", f"{url!r} is not a SQLAlchemy database URL; accepted: e.g. "
                                          "sqlite:////abs/path/optuna.db or postgresql://host/db") from None
    try:
        dialect.import_dbapi()
    except ImportError:
        hint = " (pip install -e \".[server]\" brings psycopg)" if dialect.driver == "psycopg" else ""
        raise UserError("search.storage", f"the {parsed.get_backend_name()} driver {dialect.driver!r} is not "
                                          f"installed{hint}") from None
    path = sqlite_path(url)
    if path is None:
        _check_reachable(url, parsed.get_backend_name())
    elif not path.exists():
        from trainables.paths import unwritable_folder

        if (parent := unwritable_folder(path.parent)) is not None:
            raise UserError("search.storage", f"cannot create the Optuna study storage {url} "
                                              f"({parent} is not a writable directory)")


def study_name(sweep: str, group: int | None = None) -> str:
    """The sweep's study; with groups, each group's (``<sweep>/group-<i>``, its values in the
    study's ``group`` user attribute)."""
    return sweep if group is None else f"{sweep}/group-{group}"


def rdb(url: str | None) -> Any:
    """Optuna's storage for ``url`` (None: Optuna's in-memory storage)."""
    if url is None:
        return None
    import optuna

    if (path := sqlite_path(url)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(url)


def sweep_studies(url: str | None, sweep: str) -> list[str]:
    """The studies of ``sweep`` in ``url``, read only (a SQLite file that is not there is not
    created)."""
    if url is None:
        return []
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return []
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = optuna.get_all_study_names(storage=rdb(url))
    return [n for n in names if n == sweep or n.startswith(f"{sweep}/group-")]


def check_study_is_new(url: str | None, sweep: str) -> None:
    """A new sweep must not join the study of an earlier sweep of the same name."""
    found = sweep_studies(url, sweep)
    if found:
        raise UserError("name", f"the Optuna study {found[0]!r} already exists in {url}; extend that "
                                "sweep with --extend N, or give this one another --name")


def sampler(seed: int, *, group: int = 0, prior: int = 0) -> Any:
    """TPE seeded from the sweep seed, the group and the trials the study had before this run
    (an extension draws new startup points, not the first run's again), mixed by numpy's
    ``SeedSequence`` into one 32-bit sampler seed, so that different triples get unrelated
    seeds (not sums that coincide): a sweep and its replicate under another sweep seed draw
    independent start-up points in every group."""
    import numpy as np
    import optuna

    return optuna.samplers.TPESampler(seed=int(np.random.SeedSequence([seed, group, prior]).generate_state(1)[0]))


def check_new_sweep(cfg: SweepConfig) -> None:
    """A new optuna sweep named with ``--name`` must not join the study of an earlier sweep
    of that name (whose Tune storage is gone)."""
    if cfg.search.algorithm != "optuna" or not cfg.name:
        return
    from sweeps.storage import storage_path
    from trainables.mlflow_names import default_tracking_uri

    url = study_storage(cfg, cfg.tracking_uri or default_tracking_uri(), storage_path(cfg))
    check_study_storage(url)
    found = sweep_studies(url, cfg.name)
    if found:
        raise UserError("name", f"the Optuna study {found[0]!r} already exists in {url}; add trials to "
                                "that sweep with --extend N, or give this one another --name")


def extension(cfg: SweepConfig, n: int) -> tuple[SweepConfig, int]:
    """``--extend n``: the finished optuna sweep ``cfg`` names (``--name``, or the study's
    latest) as launched, set to run ``n`` more samples (per group with groups), and the
    samples it ran before. Refused, with nothing written, for a sweep that is not there, that
    sampled nothing with Optuna, whose study is not stored, or that was interrupted."""
    from dataclasses import replace

    from sweeps.storage import storage_path, stored_config
    from trainables.mlflow_names import default_tracking_uri

    stored = stored_config(cfg, verb="extend")
    name, algorithm = stored.name or cfg.name or "", stored.search.algorithm
    if algorithm != "optuna":
        raise UserError("--extend", f"sweep {name!r} used {algorithm} search: no Optuna study to add trials "
                                    "to; only a search.algorithm=optuna sweep can be extended")
    tracking_uri = stored.tracking_uri or default_tracking_uri()
    url = study_storage(stored, tracking_uri, storage_path(stored))
    if not sweep_studies(url, name):
        where = f"in {url}" if url else "stored (it was kept in memory: set search.storage)"
        raise UserError("--extend", f"sweep {name!r} has no Optuna study {where}")
    _check_finished(stored, name, tracking_uri)
    return replace(stored, search=replace(stored.search, num_samples=n)), stored.search.num_samples


def _check_finished(cfg: SweepConfig, name: str, tracking_uri: str) -> None:
    """The sweep's MLflow parent run is there and was not interrupted (read only)."""
    from mlflow import MlflowClient

    from sweeps.stopping import INTERRUPTED_TAG
    from trainables.mlflow_names import KIND_TAG, SWEEP_TAG, filter_value

    path = sqlite_path(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri) if path is None or path.exists() else None
    exp = client.get_experiment_by_name(cfg.experiment_name) if client else None
    runs = client.search_runs([exp.experiment_id], max_results=1, filter_string=(
        f"tags.`{SWEEP_TAG}` = {filter_value(name)} and tags.`{KIND_TAG}` = 'sweep'")) if exp else []
    if not runs:
        raise UserError("--extend", f"sweep {name!r} has no MLflow parent run in {tracking_uri}; "
                                    "give the --tracking-uri it was recorded in")
    if INTERRUPTED_TAG in runs[0].data.tags or runs[0].info.status == "RUNNING":
        raise UserError("--extend", f"sweep {name!r} did not finish; finish it with --resume first")


def parent_tags(url: str | None, sweep: str, groups: int | None) -> dict[str, str]:
    """The parent run's record of where its studies are (no tags for an in-memory study)."""
    if url is None:
        return {}
    names = [study_name(sweep)] if groups is None else [study_name(sweep, g) for g in range(groups)]
    return {STORAGE_TAG: url, STUDIES_TAG: ",".join(names)}


def fail_orphans(url: str | None, sweep: str) -> int:
    """Once a sweep has run to its end, the trials its studies still hold as running were
    asked for by a driver killed before Tune's experiment snapshot recorded them (the resumed
    searcher asked again, as a new trial): told ``FAIL``, so that the study holds each trial's
    outcome once. Returns how many."""
    import optuna
    from optuna.trial import TrialState

    count = 0
    for name in sweep_studies(url, sweep):
        study = optuna.load_study(study_name=name, storage=rdb(url))
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(trial.number, state=TrialState.FAIL)
            count += 1
    return count


def check_objectives(cfg: SweepConfig, groups: tuple[str, ...] | None, url: str | None) -> None:
    """``search.objectives=metric+params`` needs one study over the whole space, stored."""
    if cfg.search.objectives == "metric":
        return
    if groups is not None:
        raise UserError("search.objectives", f"{cfg.search.objectives} needs one Optuna study over the whole "
                                             f"space, but trials are grouped by {', '.join(groups)} "
                                             "(scheduler.groups); set scheduler.groups=none")
    if url is None:
        raise UserError("search.objectives", f"{cfg.search.objectives} needs a stored Optuna study; set "
                                             "search.storage to a SQLAlchemy URL")


#: Child-run tag of a multi-objective sweep's trials: "true" on its Pareto front.
PARETO_TAG = "lorasweep.pareto"


def pareto_trial_ids(url: str | None, sweep: str) -> set[str] | None:
    """The Tune trial ids of the Pareto front of a multi-objective sweep's study (None for a
    single-objective study or none stored)."""
    if url is None or study_name(sweep) not in sweep_studies(url, sweep):
        return None
    import optuna

    study = optuna.load_study(study_name=study_name(sweep), storage=rdb(url))
    if len(study.directions) < 2:
        return None
    return {t.user_attrs.get("trial_id") for t in study.best_trials}


def record_pareto(plan: Any, rows: list[dict[str, Any]], recorder: Any, describe: Any) -> None:
    """A multi-objective sweep's Pareto front: printed (``describe(row)`` names a trial) and
    tagged on every trial's MLflow run (``true`` on the front, ``false`` off it; an extension
    moves the front)."""
    front = pareto_trial_ids(plan.study_storage, plan.name)
    if front is None:
        return
    on = [r for r in rows if r.get("trial_id") in front]
    print(f"  Pareto front ({plan.cfg.search.objectives}): {len(on)} of {len(rows)} trials: "
          + "; ".join(describe(r) for r in on))
    tagged = [(r["mlflow_run_id"], "true" if r in on else "false") for r in rows if r.get("mlflow_run_id")]

    def write(client: Any) -> None:
        for run_id, value in tagged:
            client.set_tag(run_id, PARETO_TAG, value)

    recorder.writer.submit("sweep", "the Pareto front's tags", write)
