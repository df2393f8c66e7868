"""A sweep that survives faults, end to end through the command line: real local Ray, real
MLflow (a SQLite store, or a real ``mlflow server`` that is stopped and restarted), real
training of the tiny GPT-2.

* failing trials (a NaN loss, out of memory past ``--memory-limit-mb``) end as failed in Tune
  and MLflow with their error, are retried ``--max-failures`` times, and the others finish;
* a driver killed with SIGKILL mid-sweep is finished by ``--resume``: every trial once in
  MLflow, the Optuna searcher's state restored, nothing left RUNNING;
* a tracking server that goes away mid-sweep: trials keep training, their records reach MLflow
  when it is back; one that never comes back: the lost records are named (no Ray needed).

The sweeps are minimal (a few optimizer steps per trial, no generation): they prove the
machinery, not the model.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

SCRIPT = str(REPO / "sweeps" / "rank_e2e.py")
EXPERIMENT = "lorasweep-rank_e2e"

#: The smoke preset cut to seconds per trial: few examples, no beam search, FIFO.
QUICK = ["--preset", "smoke", "--scheduler", "fifo", "--set", "eval.generate=false",
         "--set", "data.val_limit=32"]


def _sweep_cmd(root: Path, name: str, uri: str, *args: str) -> list[str]:
    return [sys.executable, SCRIPT, *QUICK, "--tracking-uri", uri, "--storage", str(root / "rr"),
            "--name", name, *args]


def _space(root: Path, text: str) -> str:
    path = root / "space.yaml"
    path.write_text(text)
    return str(path)


def _children(client, experiment=EXPERIMENT):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return ([r for r in runs if r.data.tags.get("lorasweep.kind") == "trial"],
            [r for r in runs if r.data.tags.get("lorasweep.kind") == "sweep"])


# --------------------------------------------------------------------------- fault isolation


@pytest.mark.integration
def test_failing_trials_are_isolated_retried_and_reported(tmp_path, smoke_assets):
    """Three grid points: a healthy one; lr 1e6 (the train loss turns NaN: FloatingPointError
    from the loop); batch 4096 under a 300 MiB memory limit (the trial's own RLIMIT_AS: torch's
    allocator fails, the trial fails as out of memory). ``--max-failures 1``: each failing
    trial runs twice; the healthy one completes; exit code 1 and the summary names both."""
    space = _space(tmp_path, "scientific:\n  lr+batch_size: {grid: [[2.0e-3, 16], [1.0e6, 16], [2.0e-3, 4096]]}\n"
                             "fixed: {r: 4, alpha: 32, targets: qv}\n")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    cmd = _sweep_cmd(tmp_path, "faults", uri, "--search-space", space, "--max-failures", "1",
                     "--memory-limit-mb", "300", "--set", "train.max_steps=4",
                     "--set", "train.warmup_steps=0", "--set", "train.log_every_steps=1")
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    out = proc.stdout
    assert proc.returncode == 1, out[-3000:] + proc.stderr[-3000:]
    assert "1 completed, 0 stopped early by ASHA, 2 failed" in out
    assert "failed after 2 attempts: lr+batch_size=[1000000.0, 16]" in out
    assert "FloatingPointError: train loss is nan at step" in out
    assert "failed after 2 attempts: lr+batch_size=[0.002, 4096]" in out
    assert "out of memory: the trial needed more than resources.memory_limit_mb=300 MiB" in out
    assert "can't allocate memory" in out  # the allocator's own words, not an invented failure

    from mlflow import MlflowClient

    children, parents = _children(MlflowClient(tracking_uri=uri))
    by_point = {(float(c.data.params["train.lr"]), int(c.data.params["train.batch_size"])): c
                for c in children}
    assert len(children) == 3 == len(by_point)
    good, nan, oom = by_point[(2e-3, 16)], by_point[(1e6, 16)], by_point[(2e-3, 4096)]
    assert good.info.status == "FINISHED" and good.data.tags["lorasweep.status"] == "completed"
    assert good.data.tags["lorasweep.attempts"] == "1" and good.data.metrics["val_loss"] > 0
    for run, text in ((nan, "FloatingPointError: train loss is nan"),
                      (oom, "TrialOutOfMemory: out of memory")):
        tags = run.data.tags
        assert run.info.status == "FAILED" and tags["lorasweep.status"] == "failed"
        assert tags["lorasweep.attempts"] == "2"  # --max-failures 1: one retry
        assert text in tags["lorasweep.error"].splitlines()[0]
        assert text in tags["lorasweep.error_attempt_1"]  # the first attempt's error, kept
        assert "Trial failed (2 attempts)" in tags["mlflow.note.content"]
    assert parents[0].data.metrics["trials_failed"] == 2.0
    with open(tmp_path / "rr" / "faults" / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["status"] for r in rows) == ["completed", "failed", "failed"]
    assert all(r["error"] for r in rows if r["status"] == "failed")


# --------------------------------------------------------------------------- resume


def _trial_statuses(db: Path) -> list[str]:
    """Child-run statuses, read-only and straight from the SQLite file (the driver writes it)."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return [s for (s,) in con.execute(
                "select r.status from runs r join tags t on t.run_uuid = r.run_uuid "
                "where t.key = 'lorasweep.kind' and t.value = 'trial'")]
    except sqlite3.Error:
        return []


def _expected_optuna_configs(space: str, n: int) -> list[tuple[int, float]]:
    """What an uninterrupted sweep's seeded Optuna searcher suggests (its first suggestions
    are TPE's seeded random start-up samples, independent of the trials' results)."""
    from sweeps.cli import build_config, build_parser, load_study
    from sweeps.runner import _search_alg, plan_sweep
    from trainables.tasks import get_task

    study = load_study("rank_e2e")
    args = build_parser(study).parse_args([*QUICK, "--search-space", space, "--search-alg", "optuna",
                                           "--num-samples", str(n)])
    cfg = build_config(study, args)
    plan = plan_sweep(cfg, prepare=False)
    metric = get_task(cfg.trial.task).metric
    searcher = _search_alg(cfg, plan.space, metric.name, metric.mode)
    searcher.set_search_properties(metric.name, metric.mode, plan.param_space)
    out = []
    for i in range(n):
        hp = searcher.suggest(f"t{i}")
        out.append((int(hp["adapter.r"]), round(float(hp["train.lr"]), 12)))
    return out


@pytest.mark.integration
def test_a_killed_sweep_resumes_to_the_uninterrupted_set_of_trials(tmp_path, smoke_assets):
    """SIGKILL the driver's whole process group (driver, its local Ray) once one trial has
    finished and another is running; ``--resume`` finishes the sweep in the same MLflow parent
    run: 4 trials (num_samples, not more: the Optuna searcher's state was restored), each once
    among the child runs, their configurations those of an uninterrupted sweep, none RUNNING."""
    space = _space(tmp_path, "scientific:\n  r: {choice: [2, 4, 8]}\n"
                             "nuisance:\n  lr: {loguniform: [1.0e-3, 5.0e-3]}\n"
                             "fixed: {alpha: 32, targets: qv}\n")
    db = tmp_path / "mlruns.db"
    uri = f"sqlite:///{db}"
    cmd = _sweep_cmd(tmp_path, "resume", uri, "--search-space", space, "--search-alg", "optuna",
                     "--num-samples", "4", "--max-concurrent", "1", "--set", "train.epochs=2",
                     "--set", "data.train_limit=128")
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(cmd, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    deadline = time.monotonic() + 300
    statuses: list[str] = []
    while time.monotonic() < deadline and first.poll() is None:
        statuses = _trial_statuses(db)
        if "FINISHED" in statuses and "RUNNING" in statuses:
            break
        time.sleep(0.3)
    assert first.poll() is None, "the sweep ended before it could be interrupted:\n" + \
        (tmp_path / "first.log").read_text()[-3000:]
    assert "FINISHED" in statuses and "RUNNING" in statuses, (tmp_path / "first.log").read_text()[-3000:]
    os.killpg(first.pid, signal.SIGKILL)  # the driver and the Ray it started, no clean-up
    first.wait(timeout=30)

    t0 = time.monotonic()
    resumed = subprocess.run([*cmd, "--resume"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=600, check=False)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert time.monotonic() - t0 < 300  # started cleanly beside the killed driver's leftovers
    assert "4 completed, 0 stopped early by ASHA, 0 failed" in resumed.stdout

    from mlflow import MlflowClient

    children, parents = _children(MlflowClient(tracking_uri=uri))
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # the parent was reused
    assert parents[0].info.run_id in resumed.stdout
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    assert not [c for c in children if c.info.status == "RUNNING"]
    trials = [c for c in children if c.data.tags["lorasweep.status"] != "interrupted"]
    interrupted = [c for c in children if c.data.tags["lorasweep.status"] == "interrupted"]
    assert all(c.info.status == "KILLED" for c in interrupted)
    assert len(trials) == 4 and len({c.data.tags["lorasweep.trial_id"] for c in trials}) == 4
    assert all(c.info.status == "FINISHED" and c.data.tags["lorasweep.status"] == "completed"
               for c in trials)
    for c in trials:  # every report once, also for the trial restored from its checkpoint
        steps = [m.step for m in MlflowClient(tracking_uri=uri).get_metric_history(c.info.run_id, "val_loss")]
        assert steps == [8, 16], (c.data.tags["lorasweep.trial_id"], steps)
    got = sorted((int(c.data.params["adapter.r"]), round(float(c.data.params["train.lr"]), 12))
                 for c in trials)
    assert got == sorted(_expected_optuna_configs(space, 4))
    from analysis.load import load

    data = load(uri, experiment=EXPERIMENT)  # what the plots read: the 4 trials, no partial duplicate
    assert sorted(data.trials["trial_id"]) == sorted(c.data.tags["lorasweep.trial_id"] for c in trials)
    with open(tmp_path / "rr" / "resume" / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and all(r["mlflow_run_id"] for r in rows)
    # keep-best-k (3) across the interruption: the 3 best trials' checkpoints, nothing else
    # (not the interrupted trial's, which no Tune trial owns).
    kept = [p.parent.name for p in (tmp_path / "rr" / "resume").glob("*/checkpoint_*")]
    best = sorted(rows, key=lambda r: float(r["val_loss"]))[:3]
    assert len(kept) == 3 and all(any(f"_{r['trial_id']}_" in k for k in kept) for r in best), kept


# --------------------------------------------------------------------------- tracking server down


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(root: Path, port: int) -> subprocess.Popen:
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    with open(root / "server.log", "a") as log:
        proc = subprocess.Popen(
            [mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
             "--artifacts-destination", str(root / "artifacts")],
            cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            assert proc.poll() is None, (root / "server.log").read_text()[-2000:]
            time.sleep(0.3)
    raise AssertionError("mlflow server did not start:\n" + (root / "server.log").read_text()[-2000:])


def _stop_server(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


@pytest.mark.integration
def test_a_tracking_server_down_mid_sweep_loses_nothing(tmp_path, smoke_assets):
    """A real ``mlflow server`` (SQLite backend) is killed after the first trial's first
    report reached it and restarted on the same port 5 s later: the trials trained on
    (reports made during the outage carry its timestamps) and every report reached MLflow."""
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    server = _start_server(tmp_path, port)
    space = _space(tmp_path, "scientific:\n  r: {grid: [2, 4]}\nfixed: {alpha: 32, targets: qv, lr: 2.0e-3}\n")
    cmd = _sweep_cmd(tmp_path, "outage", uri, "--search-space", space, "--max-concurrent", "1",
                     "--set", "train.epochs=3", "--set", "data.train_limit=128")
    with open(tmp_path / "sweep.log", "w") as log:
        sweep = subprocess.Popen(cmd, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and sweep.poll() is None:
            children = _children(client)[0] if client.get_experiment_by_name(EXPERIMENT) else []
            if any("val_loss" in c.data.metrics for c in children):
                break
            time.sleep(0.5)
        assert sweep.poll() is None, (tmp_path / "sweep.log").read_text()[-3000:]
        _stop_server(server)
        down, t_down = time.time() * 1000, time.monotonic()
        time.sleep(5)
        server = _start_server(tmp_path, port)
        up = time.time() * 1000
        sweep.wait(timeout=600)
        out = (tmp_path / "sweep.log").read_text()
        assert sweep.returncode == 0, out[-3000:]
        assert time.monotonic() - t_down >= 5
        assert "MLflow was unreachable" in out and "every record was written when it returned" in out
        assert "NOT written" not in out

        children, parents = _children(client)
        assert len(children) == 2 and parents[0].info.status == "FINISHED"
        during = 0
        for c in children:
            assert c.info.status == "FINISHED" and c.data.tags["lorasweep.status"] == "completed"
            history = client.get_metric_history(c.info.run_id, "val_loss")
            assert [m.step for m in history] == [8, 16, 24]  # every report, each once
            during += sum(down <= m.timestamp <= up for m in history)
            assert "adapter/adapter_model.safetensors" in {
                a.path for a in client.list_artifacts(c.info.run_id, "adapter")}
        assert during >= 1  # reports made while the server was down, recorded after it returned
        assert parents[0].data.metrics["trials_completed"] == 2.0
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
        _stop_server(server)


def test_records_a_store_never_reachable_again_are_named_not_dropped():
    """The recorder's writer against a tracking server that is not there: the trials' writes
    wait and are retried; at the deadline they are given up and listed per trial."""
    from trainables.mlflow_record import TrackingWriter, transient

    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        writer = TrackingWriter(f"http://127.0.0.1:{_free_port()}", backoff_s=(0.2, 0.5))
        done: list[str] = []
        writer.submit("t_00000", "report at step 8",
                      lambda client: client.search_experiments(max_results=1))
        writer.submit("t_00001", "end (completed)", lambda client: done.append("never"))
        t0 = time.monotonic()
        assert writer.flush(3.0) is False
        assert 2.5 <= time.monotonic() - t0 < 10  # waited for the store, then gave up
        assert writer.outages == 1 and not done
        assert writer.lost["t_00000"] == ["report at step 8 (store unreachable until the deadline)"]
        assert writer.lost["t_00001"] == ["end (completed) (store unreachable until the deadline)"]
        writer.submit("t_00002", "late", lambda client: None)
        assert "t_00002" in writer.lost  # after the deadline: recorded as lost, not queued
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)

    from mlflow.exceptions import MlflowException, RestException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    assert transient(ConnectionError("refused"))
    assert transient(MlflowException("API request failed: Max retries exceeded"))
    assert transient(RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "503"}))
    assert not transient(MlflowException("bad", error_code=INVALID_PARAMETER_VALUE))
    assert not transient(RestException({"error_code": "BAD_REQUEST", "message": "no"}))
