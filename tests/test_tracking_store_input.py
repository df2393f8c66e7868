"""A tracking store MLflow should not open is refused before it is opened: one line on stderr
naming the field, exit code 2, nothing written.

The read-only commands (``python -m analysis.report``, ``python -m sweeps.export``) and a sweep's
check of its store (``check_tracking_uri``) are given real files (another program's SQLite
database, a file that is not a database, an empty file), a database server on a closed port,
a database whose driver is not installed and empty values. The commands run in this process;
a few run as the real commands too.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

from trainables.errors import UserError


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _foreign(path: Path) -> None:
    """Another program's SQLite database (an Optuna study file, say)."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE studies (study_id INTEGER PRIMARY KEY, study_name TEXT)")
        db.execute("INSERT INTO studies VALUES (1, 'mine')")
    db.close()


def _not_a_database(path: Path) -> None:
    path.write_text("hi\n")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _mlflow_store(path: Path) -> None:
    """An MLflow store as a sweep leaves it (MLflow has added its default experiment)."""
    from mlflow import MlflowClient

    from sweeps.tracking.store import empty_store

    shutil.copyfile(empty_store(), path)
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments(max_results=1)


def _state(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its checksum."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


#: (case id, how the store file is made (None: no file), the URI ({db}: that file, {port}: a
#: closed port), what the one line says).
STORES: list[tuple[str, Callable[[Path], None] | None, str, str]] = [
    ("another-programs-sqlite", _foreign, "sqlite:///{db}",
     "is another program's SQLite database (tables studies), not an MLflow store"),
    ("not-a-database", _not_a_database, "sqlite:///{db}", "is not a SQLite database"),
    ("postgresql-closed-port", None, "postgresql://lorasweep@127.0.0.1:{port}/mlflow",
     "cannot use the MLflow tracking store postgresql://lorasweep@127.0.0.1:{port}/mlflow ("),
    ("mysql", None, "mysql://127.0.0.1:{port}/mlflow", "cannot use the MLflow tracking store mysql://127.0.0.1:"),
]
READER_STORES = STORES + [
    ("empty-file", _empty, "sqlite:///{db}", "is empty, not an MLflow store"),
    ("empty-uri", None, "", "--tracking-uri: is empty; give sqlite:///PATH.db"),
    ("unknown-scheme", None, "ftp://x", "ftp://x"),
    ("server-closed-port", None, "http://127.0.0.1:{port}", "cannot use the MLflow tracking store http://127.0.0.1:{port} ("),
]


def _uri(template: str, tmp_path: Path, make: Callable[[Path], None] | None) -> tuple[str, int]:
    db = tmp_path / "store.db"
    if make is not None:
        make(db)
    port = _closed_port()
    return template.format(db=db, port=port), port


def _one_line(code: int, err: str, field: str, fragment: str) -> str:
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {field}: "), lines[0]
    assert fragment in lines[0], lines[0]
    return lines[0]


def _report(uri: str, out: Path) -> int:
    from analysis.report import main

    return main(["--tracking-uri", uri, "--experiment", "lorasweep-rank_e2e", "--out", str(out)])


def _export(uri: str, out: Path) -> int:
    from sweeps.export import main

    return main(["--tracking-uri", uri, "--study", "rank_e2e", "--out", str(out)])


@pytest.mark.parametrize("command", [_report, _export], ids=["report", "export"])
@pytest.mark.parametrize("make, template, fragment", [c[1:] for c in READER_STORES], ids=[c[0] for c in READER_STORES])
def test_a_read_only_command_refuses_a_store_it_cannot_read_and_writes_nothing(command, make, template, fragment,
                                                                               tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri, port = _uri(template, tmp_path, make)
    before = _state(tmp_path)
    capfd.readouterr()
    start = time.monotonic()
    code = command(uri, tmp_path / "out")
    took = time.monotonic() - start
    err = capfd.readouterr().err
    _one_line(code, err, "--tracking-uri", fragment.format(port=port))
    assert _state(tmp_path) == before
    assert took < 30, took  # not MLflow's retries


@pytest.mark.parametrize("command", [_report, _export], ids=["report", "export"])
def test_databricks_without_credentials_is_one_line(command, tmp_path, capfd, monkeypatch):
    for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.databrickscfg
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    code = command("databricks", tmp_path / "out")
    _one_line(code, capfd.readouterr().err, "--tracking-uri", "cannot use the MLflow tracking store databricks (")
    assert _state(tmp_path) == {}


@pytest.mark.parametrize("flag", ["--run", "--sweep", "--study"])
def test_an_empty_export_source_is_one_line(flag, tmp_path, capfd):
    from sweeps.export import main

    db = tmp_path / "mlruns.db"
    _mlflow_store(db)
    before = _state(tmp_path)
    capfd.readouterr()
    code = main(["--tracking-uri", f"sqlite:///{db}", flag, "", "--out", str(tmp_path / "out")])
    _one_line(code, capfd.readouterr().err, flag, "is empty; give ")
    assert _state(tmp_path) == before


def test_a_read_only_command_still_reads_an_mlflow_store(tmp_path, capfd):
    db = tmp_path / "mlruns.db"
    _mlflow_store(db)
    before = _state(tmp_path)
    capfd.readouterr()
    code = _export(f"sqlite:///{db}", tmp_path / "out")  # the store is read: it has no such study
    _one_line(code, capfd.readouterr().err, "--study", "no finished sweep of study 'rank_e2e'")
    assert _state(tmp_path) == before


def test_a_completed_trial_whose_artifacts_are_not_where_the_store_says_is_named_so(tmp_path, capfd):
    """A database moved or copied without its artifact folder: the completed trial's adapter is
    not at its artifact location, which the one line names (not "only completed trials record
    theirs", which it is)."""
    from mlflow import MlflowClient

    from sweeps.export import main

    db = tmp_path / "mlruns.db"
    _mlflow_store(db)
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.create_experiment("lorasweep-rank_e2e", artifact_location=str(tmp_path / "moved-away"))
    run = client.create_run(exp, tags={"lorasweep.kind": "trial", "lorasweep.status": "completed"})
    client.set_terminated(run.info.run_id)
    before = _state(tmp_path)
    capfd.readouterr()
    code = main(["--tracking-uri", f"sqlite:///{db}", "--run", run.info.run_id, "--out", str(tmp_path / "out")])
    line = _one_line(code, capfd.readouterr().err, "--run", f"run {run.info.run_id} (completed) has no adapter")
    assert line.endswith(f"its artifact location {run.info.artifact_uri} does not hold it (moved, or never logged)")
    assert _state(tmp_path) == before


def _trial_with_adapter(tmp_path: Path, db: Path, base: str) -> Any:
    """A completed trial's run in a new MLflow store ``db``, with an adapter's files and its
    trial config (base model ``base``) logged as a trial logs them."""
    import json

    from mlflow import MlflowClient

    from trainables.config import TrialConfig
    from trainables.schema import to_dict

    _mlflow_store(db)
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.create_experiment("lorasweep-rank_e2e", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(exp, tags={"lorasweep.kind": "trial", "lorasweep.status": "completed"})
    files = tmp_path / "files"
    (files / "adapter").mkdir(parents=True)
    (files / "adapter" / "lorasweep_adapter.json").write_text(json.dumps(
        {"base_loading": {"auto_class": "AutoModelForCausalLM", "kwargs": {}}, "method": "lora"}))
    cfg = to_dict(TrialConfig())
    cfg["model"]["name_or_path"] = base
    (files / "trial_config.json").write_text(json.dumps(cfg))
    client.log_artifact(run.info.run_id, str(files / "trial_config.json"))
    client.log_artifacts(run.info.run_id, str(files / "adapter"), "adapter")
    client.set_terminated(run.info.run_id)
    return run


@pytest.mark.parametrize("base", ["local", "hub"])
def test_a_trial_whose_base_is_not_here_is_one_line_and_nothing_written(tmp_path, capfd, monkeypatch, base):
    """The store copied to another machine, or the base model's folder deleted since the sweep,
    or a hub base neither cached nor reachable (offline): the export names the base it cannot
    find, before it writes anything (``--out`` below two folders that do not exist yet)."""
    from sweeps.export import main

    db = tmp_path / "mlruns.db"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = _trial_with_adapter(tmp_path, db, str(tmp_path / "gone" / "gpt2") if base == "local"
                              else "lorasweep-test/no-such-base")
    before = _state(tmp_path)
    capfd.readouterr()
    code = main(["--tracking-uri", f"sqlite:///{db}", "--run", run.info.run_id, "--out", str(tmp_path / "a" / "b" / "out")])
    reason = (f"model directory {tmp_path}/gone/gpt2 does not exist" if base == "local" else
              "model 'lorasweep-test/no-such-base' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
    _one_line(code, capfd.readouterr().err, "--run", f"the trial's base model (model.name_or_path in its run): "
                                                     f"{reason}; export where")
    assert _state(tmp_path) == before and not (tmp_path / "a").exists()


@pytest.mark.parametrize("make, template, fragment", [c[1:] for c in STORES], ids=[c[0] for c in STORES])
def test_a_sweep_refuses_a_store_it_cannot_use(make, template, fragment, tmp_path):
    from sweeps.tracking.store import check_tracking_uri

    uri, port = _uri(template, tmp_path, make)
    before = _state(tmp_path)
    with pytest.raises(UserError) as refused:
        check_tracking_uri(uri)
    assert refused.value.field == "tracking_uri"
    assert fragment.format(port=port) in refused.value.message
    assert "\n" not in refused.value.message
    assert _state(tmp_path) == before


def test_a_missing_database_driver_names_what_to_install(tmp_path):
    from sweeps.tracking.store import check_tracking_uri

    if importlib.util.find_spec("pymysql") is not None:
        pytest.skip("pymysql is installed here")
    with pytest.raises(UserError, match=r"the database driver pymysql is not installed; pip install pymysql"):
        check_tracking_uri(f"mysql+pymysql://127.0.0.1:{_closed_port()}/mlflow")


@pytest.mark.parametrize("make", [_empty, _mlflow_store], ids=["empty-file", "mlflow-store"])
def test_a_sweep_accepts_an_empty_file_or_an_mlflow_store_and_writes_nothing_checking_it(make, tmp_path):
    from sweeps.tracking.store import check_tracking_uri

    db = tmp_path / "mlruns.db"
    make(db)
    before = _state(tmp_path)
    check_tracking_uri(f"sqlite:///{db}")
    assert _state(tmp_path) == before


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *cmd], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})


def test_the_real_commands_refuse_in_one_line(tmp_path, smoke_assets):
    """A sweep's dry run given another program's database (the sweep's own Optuna file, say);
    the report given a database server on a closed port; the export given a file that is not
    a database."""
    foreign, bad = tmp_path / "optuna.db", tmp_path / "bad.db"
    _foreign(foreign)
    _not_a_database(bad)
    port = _closed_port()
    before = _state(tmp_path)
    sweep = _run([str(REPO / "sweeps" / "rank_e2e.py"), "--preset", "smoke", "--dry-run", "--tracking-uri",
                  f"sqlite:///{foreign}", "--storage", str(tmp_path / "rr")], tmp_path)
    _one_line(sweep.returncode, sweep.stderr, "tracking_uri", "is another program's SQLite database")
    report = _run(["-m", "analysis.report", "--experiment", "x", "--out", "o", "--tracking-uri",
                   f"postgresql://127.0.0.1:{port}/x"], tmp_path)
    _one_line(report.returncode, report.stderr, "--tracking-uri",
              f"cannot use the MLflow tracking store postgresql://127.0.0.1:{port}/x (")
    export = _run(["-m", "sweeps.export", "--run", "x", "--out", "o", "--tracking-uri", f"sqlite:///{bad}"], tmp_path)
    _one_line(export.returncode, export.stderr, "--tracking-uri", "is not a SQLite database")
    assert _state(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["bad.db", "optuna.db"]


@pytest.mark.parametrize("case", ["deleted-run", "deleted-experiment", "prompt", "registry-not-a-database"])
def test_a_registration_mlflow_would_refuse_or_misfile_is_one_line_before_anything_is_written(case, tmp_path, capfd,
                                                                                              monkeypatch):
    """``--register`` where MLflow cannot log the model (the trial's run, or its experiment,
    deleted), cannot read the registry (``MLFLOW_REGISTRY_URI`` naming a file that is not a
    database) or would file it as a version of a prompt (prompts and models share the registry's
    names): one line naming ``--register``, exit code 2, before anything is written. The trial's
    base is one this machine does not have: the check comes before the base is looked for."""
    from mlflow import MlflowClient

    from sweeps.export import main

    db = tmp_path / "mlruns.db"
    run = _trial_with_adapter(tmp_path, db, str(tmp_path / "gone" / "gpt2"))
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    name, exp = "e2e-best", client.get_experiment(run.info.experiment_id)
    if case == "deleted-run":
        client.delete_run(run.info.run_id)
        fragment = (f"run {run.info.run_id} is deleted in this MLflow store and MLflow logs no model to a deleted "
                    f"run; restore it (mlflow runs restore --run-id {run.info.run_id}) or export without --register")
    elif case == "deleted-experiment":
        client.delete_experiment(exp.experiment_id)
        fragment = (f"run {run.info.run_id}'s experiment 'lorasweep-rank_e2e' is deleted in this MLflow store and "
                    f"MLflow logs no model to it; restore it (mlflow experiments restore --experiment-id "
                    f"{exp.experiment_id}) or export without --register")
    elif case == "registry-not-a-database":
        _not_a_database(tmp_path / "registry.db")
        monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{tmp_path}/registry.db")
        fragment = (f"cannot read the MLflow Model Registry sqlite:///{tmp_path}/registry.db ((sqlite3.DatabaseError) "
                    "file is not a database); register where it answers")
    else:
        name = "e2e-prompt"
        client.register_prompt(name, "Summarise: {{text}}")
        filter_string = f"name = '{name}' and tags.`mlflow.prompt.is_prompt` = 'true'"
        for _ in range(100):  # MLflow links the prompt to its experiment a moment later, from another thread
            if "_mlflow_experiment_ids" in client.search_registered_models(filter_string)[0].tags:
                break
            time.sleep(0.1)
        fragment = "'e2e-prompt' is a prompt in this MLflow registry, not a model; name another registered model"
    before = _state(tmp_path)
    capfd.readouterr()
    code = main(["--tracking-uri", f"sqlite:///{db}", "--run", run.info.run_id, "--register", name,
                 "--out", str(tmp_path / "out")])
    line = _one_line(code, capfd.readouterr().err, "--register", fragment)
    assert line == f"error: --register: {fragment}" or case == "prompt", line
    assert _state(tmp_path) == before
