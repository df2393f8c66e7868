"""A sweep that loses nothing, end to end through the command line: real local Ray, real
MLflow (a SQLite store, or a real ``mlflow server`` that is stopped and restarted), real
training of the tiny GPT-2.

* failing trials (a NaN loss, out of memory past ``--memory-limit-mb``) end as failed in Tune
  and MLflow with their error, are retried ``--max-failures`` times, and the others finish;
* chaos: one sweep's driver is killed (SIGKILL) during the first epoch, right after a
  checkpoint, during the final evaluation and right after a trial completes, and stopped by an
  error at the end, and ``--resume`` each time: every trial once in MLflow with its final
  metrics and adapter, the Optuna searcher's state restored, nothing left RUNNING;
* signals and the tracking server: SIGTERM and Ctrl-C end a sweep with 143 and 130, the parent
  run ``KILLED`` until resumed and no child run left RUNNING; a server that goes away for a
  moment loses nothing, one that stays away is exit 1 with the lost records listed and kept in
  the journal, which ``--resume`` writes once the server is back;

The parts without Ray are tested in ``test_mlflow_record.py`` and ``test_checkpoints.py``.

The sweeps are minimal (a few optimizer steps per trial): they prove the machinery, not the
model.
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


#: One Optuna study over the whole space (not one per rank): num_samples trials in all.
OPTUNA_SWEEP_WIDE = ["--set", "scheduler.groups=none"]


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


# --------------------------------------------------------------------------- chaos: kill and resume


def _trial_runs(db: Path) -> list[tuple[str, str, str | None, int]]:
    """(run id, MLflow status, lorasweep.status, reports recorded) of each child run, straight
    from the SQLite file (the driver writes it). Only reads, on a read-write connection: after a
    driver is SIGKILLed mid-write, the file's hot journal must be rolled back before it can be
    read, which a read-only connection cannot do."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return list(con.execute(
                "select r.run_uuid, r.status, "
                "(select value from tags s where s.run_uuid = r.run_uuid and s.key = 'lorasweep.status'), "
                "(select count(*) from metrics m where m.run_uuid = r.run_uuid and m.key = 'val_loss') "
                "from runs r join tags t on t.run_uuid = r.run_uuid "
                "where t.key = 'lorasweep.kind' and t.value = 'trial'"))
    except sqlite3.Error:
        return []


def _stop_when(cmd: list[str], cwd: Path, log: Path, ready, what: str, sig: int = signal.SIGKILL,
               group: bool = True, timeout: float = 400, env: dict | None = None) -> int:
    """Run a sweep until ``ready()``, then send ``sig`` (to its whole process group: the driver
    and the Ray it started; else to the driver only); its exit code."""
    with open(log, "a") as fh:
        fh.write(f"\n===== {' '.join(cmd[-3:])}: stopped {what} =====\n")
        fh.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not ready():
        time.sleep(0.2)
    assert proc.poll() is None, f"the sweep ended before it could be stopped {what}:\n" + log.read_text()[-3000:]
    assert time.monotonic() < deadline, f"never {what}:\n" + log.read_text()[-3000:]
    import psutil

    started = psutil.Process(proc.pid).children(recursive=True)  # its Ray and trial processes
    (os.killpg if group else os.kill)(proc.pid, sig)
    code = proc.wait(timeout=120)
    # A trial process outlives a killed driver for a moment (until it sees its raylet gone);
    # the next step starts once every process this sweep started is gone.
    _, alive = psutil.wait_procs(started, timeout=30)
    for p in alive:
        p.kill()
    psutil.wait_procs(alive, timeout=30)
    return code


@pytest.mark.integration
def test_chaos_every_kill_resumes_to_every_trial_once_with_its_adapter(tmp_path, smoke_assets):
    """One Optuna sweep (3 trials, one at a time, keep_best_k 1, generation on, a name with a
    quote), its driver and local Ray SIGKILLed during the first epoch, right after a
    checkpoint, during a final evaluation and right after a trial completes (a trial worse
    than one before it, whose checkpoint keep_best_k prunes), then stopped by an error after
    the last trial (its results CSV cannot be written), and resumed each time. In the end:
    the 3 trials of an uninterrupted sweep, each once among the child runs with its every
    report once, its final metrics and adapter; no trial failed for a missing checkpoint; the
    parent run FINISHED; one checkpoint left in Tune storage, the best trial's."""
    # Seeded TPE draws learning rates of about 3e-4, 3e-3 and 3e-4: the second trial ends
    # worse than the first (3e-3 overshoots), and keep_best_k prunes it as it completes.
    space = _space(tmp_path, "scientific:\n  r: {choice: [2, 4, 8]}\n"
                             "nuisance:\n  lr: {loguniform: [1.0e-5, 5.0e-3]}\n"
                             "fixed: {alpha: 32, targets: qv}\n")
    db, name, scratch = tmp_path / "mlruns.db", "it's-chaos", tmp_path / "scratch"
    scratch.mkdir()
    uri = f"sqlite:///{db}"
    cmd = _sweep_cmd(tmp_path, name, uri, "--search-space", space, "--search-alg", "optuna",
                     "--num-samples", "3", *OPTUNA_SWEEP_WIDE, "--max-concurrent", "1", "--keep-best-k", "1",
                     "--set", "train.epochs=2", "--set", "data.train_limit=128", "--set", "eval.generate=true",
                     "--set", "data.test_limit=4", "--set", "eval.num_beams=2", "--set", "eval.max_new_tokens=16")
    env = {**os.environ, "LORASWEEP_TMP": str(scratch)}  # the trials' checkpoint scratch directories
    log, sweep_dir = tmp_path / "chaos.log", tmp_path / "rr" / name
    resume = [*cmd, "--resume"]

    def checkpoints():
        return [p for p in sweep_dir.glob("*/checkpoint_*") if (p / "trainer_state.pt").is_file()]

    def completed():
        return sum(s == "completed" for _, _, s, _ in _trial_runs(db))

    _stop_when(cmd, tmp_path, log, lambda: any(st == "RUNNING" and n == 0 for _, st, _, n in _trial_runs(db)),
               "during the first epoch", env=env)
    before = set(checkpoints())
    _stop_when(resume, tmp_path, log, lambda: bool(set(checkpoints()) - before), "right after a checkpoint", env=env)
    seen: dict[str, set] = {}

    def in_final_evaluation() -> bool:
        """After the running trial's first report (step 8 of 16) is recorded, its next
        checkpoint scratch directory is its final report's: made before the beam search."""
        if not any(st == "RUNNING" and n == 1 for _, st, _, n in _trial_runs(db)):
            seen.clear()
            return False
        return bool(set(scratch.iterdir()) - seen.setdefault("at first report", set(scratch.iterdir())))

    _stop_when(resume, tmp_path, log, in_final_evaluation, "during a final evaluation", env=env)
    _stop_when(resume, tmp_path, log, lambda: completed() >= 2, "right after the second trial completed", env=env)
    assert completed() == 2
    (sweep_dir / "results.csv").unlink(missing_ok=True)
    (sweep_dir / "results.csv").mkdir()  # the summary cannot write its CSV: the driver fails
    failed = subprocess.run(resume, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert failed.returncode == 1 and "IsADirectoryError" in failed.stderr, failed.stderr[-3000:]
    assert f"sweep {name} stopped (IsADirectoryError" in failed.stderr

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    children, parents = _children(client)
    assert len(parents) == 1 and parents[0].info.status == "FAILED"  # not left RUNNING
    assert "--resume" in parents[0].data.tags["lorasweep.resume_with"]
    assert not [c for c in children if c.info.status == "RUNNING"]
    assert sum(c.data.tags["lorasweep.status"] == "completed" for c in children) == 3  # flushed

    (sweep_dir / "results.csv").rmdir()
    done = subprocess.run(resume, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "3 completed, 0 stopped early by ASHA, 0 failed" in done.stdout
    _check_every_trial_once(client, uri, space, tmp_path / "rr" / name, done.stdout)


def _expected_optuna_configs(space: str, n: int) -> list[tuple[int, float]]:
    """What an uninterrupted sweep's seeded Optuna searcher suggests (its first suggestions
    are TPE's seeded random start-up samples, independent of the trials' results)."""
    from sweeps.cli import build_config, build_parser
    from sweeps.study_file import load_study
    from sweeps.planning import plan_sweep
    from sweeps.tune_setup import search_alg
    from trainables.tasks.registry import get_task

    study = load_study("rank_e2e")
    args = build_parser(study).parse_args([*QUICK, "--search-space", space, "--search-alg", "optuna",
                                           "--num-samples", str(n), *OPTUNA_SWEEP_WIDE])
    cfg = build_config(study, args)
    plan = plan_sweep(cfg, prepare=False)
    plan.study_storage = None  # an in-memory study: the sweep's stored one is not touched
    metric = get_task(cfg.trial.task).metric
    searcher = search_alg(plan, metric.name, metric.mode)
    searcher.set_search_properties(metric.name, metric.mode, plan.param_space)
    out = []
    for i in range(n):
        hp = searcher.suggest(f"t{i}")
        out.append((int(hp["adapter.r"]), round(float(hp["train.lr"]), 12)))
    return out


def _check_every_trial_once(client, uri: str, space: str, sweep_dir: Path, out: str) -> None:
    children, parents = _children(client)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # the parent was reused
    assert parents[0].info.run_id in out and "lorasweep.resume_with" not in parents[0].data.tags
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    assert not [c for c in children if c.info.status == "RUNNING"]
    trials = [c for c in children if c.data.tags["lorasweep.status"] != "interrupted"]
    assert all(c.info.status == "KILLED" for c in children if c not in trials)
    assert len(trials) == 3 and len({c.data.tags["lorasweep.trial_id"] for c in trials}) == 3
    for c in trials:
        assert c.info.status == "FINISHED" and c.data.tags["lorasweep.status"] == "completed"
        assert c.data.tags["lorasweep.params_logged"] == "true" and c.data.params["adapter.r"]
        steps = [m.step for m in client.get_metric_history(c.info.run_id, "val_loss")]
        assert steps == [8, 16], (c.data.tags["lorasweep.trial_id"], steps)  # every report once
        assert {"BLEU", "ROUGE_L", "CIDEr"} <= set(c.data.metrics)  # its final metrics
        artifacts = {a.path for a in client.list_artifacts(c.info.run_id, "adapter")}
        assert "adapter/adapter_model.safetensors" in artifacts
        assert "outputs/predictions.txt" in {a.path for a in client.list_artifacts(c.info.run_id, "outputs")}
    got = sorted((int(c.data.params["adapter.r"]), round(float(c.data.params["train.lr"]), 12)) for c in trials)
    assert got == sorted(_expected_optuna_configs(space, 3))
    from analysis.load import load

    data = load(uri, experiment=EXPERIMENT)  # what the plots read: the 3 trials, no partial duplicate
    assert sorted(data.trials["trial_id"]) == sorted(c.data.tags["lorasweep.trial_id"] for c in trials)
    with open(sweep_dir / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and all(r["mlflow_run_id"] for r in rows)
    # keep_best_k 1 across every interruption: the best trial's last checkpoint, nothing else
    # (no superseded checkpoint, none of an interrupted run's trial).
    kept = [p.parent.name for p in sweep_dir.glob("*/checkpoint_*")]
    best = min(rows, key=lambda r: float(r["val_loss"]))
    assert len(kept) == 1 and f"_{best['trial_id']}_" in kept[0], kept


# --------------------------------------------------------------------------- signals, tracking server


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


class _Link:
    """The network between the sweep and its tracking server: a TCP relay on its own port to
    the server's, that can be cut (connections dropped, new ones refused, as when the server
    or its host is gone) and restored, in an instant."""

    def __init__(self, target: int):
        import threading

        self.target, self.port = target, _free_port()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self.restore()

    def restore(self) -> None:
        import threading

        listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: the same port again
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            for sock in ([self._listener] if self._listener else []) + self._conns:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the threads blocked on it
                except OSError:
                    pass
                sock.close()
            self._listener = None
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        import threading

        while True:
            try:
                client, _ = listener.accept()
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.mark.integration
def test_signals_and_a_tracking_server_that_goes_away_lose_nothing(tmp_path, smoke_assets):
    """One sweep (2 trials of 4 epochs, one at a time, keep_best_k 1) against a real
    ``mlflow server``, reached through a link the test can cut:

    1. once a trial made its first checkpoint, the link is cut until a write has found the
       server gone (2 s at least) and a trial has reported since, and restored: the trials train on and their records reach the
       server when it is back; then SIGTERM to the driver: exit 143 after Tune's last
       snapshot, the parent run KILLED with the command that resumes it, the runs of the
       trials that did not end KILLED (unfinished), none RUNNING;
    2. ``--resume``; Ctrl-C (SIGINT) once a trial made a new checkpoint before its last:
       exit 130, the same;
    3. ``--resume``; the link is cut for good once the parent is running again: the trials
       finish, and at the deadline the sweep exits 1 naming the records not written, which
       stay in the sweep's journal;
    4. the link back, ``--resume`` writes the journal: both trials complete, every report
       once, each its adapter (the worse trial's checkpoint was kept for its unwritten end
       record), the parent FINISHED.
    """
    port = _free_port()
    server = _start_server(tmp_path, port)
    link = _Link(port)
    space = _space(tmp_path, "scientific:\n  r: {grid: [2, 4]}\nfixed: {alpha: 32, targets: qv, lr: 2.0e-3}\n")
    # One trial at a time: each takes every CPU (Tune caps concurrency only for searchers).
    cmd = _sweep_cmd(tmp_path, "signals", f"http://127.0.0.1:{link.port}", "--search-space", space,
                     "--cpus-per-trial", str(os.cpu_count()), "--keep-best-k", "1", "--set", "train.epochs=4",
                     "--set", "data.train_limit=512")  # 32 steps an epoch: reports at steps 32 ... 128
    log = tmp_path / "sweep.log"
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")  # the test's own view: never cut

    def runs():
        return _children(client) if client.get_experiment_by_name(EXPERIMENT) else ([], [])

    def section() -> str:
        return log.read_text().split("=====")[-1]

    def checkpoints(indices: str = "0-9") -> set[Path]:
        return set((tmp_path / "rr" / "signals").glob(f"*/checkpoint_00000[{indices}]/trainer_state.pt"))

    outage: dict[str, float] = {}

    def after_an_outage() -> bool:
        if "down" not in outage and checkpoints():
            at_cut = checkpoints()
            link.cut()
            outage["down"] = time.time() * 1000
            # Out until a write found the server gone and a trial reported (a new checkpoint)
            # while it was: however slow the machine, a report is made during the outage.
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and (time.time() * 1000 - outage["down"] < 2000
                                                   or "unreachable" not in section()
                                                   or not checkpoints() - at_cut):
                time.sleep(0.1)
            link.restore()
            outage["up"] = time.time() * 1000
        return "reachable again" in section()

    try:
        code = _stop_when(cmd, tmp_path, log, after_an_outage, "by SIGTERM after an outage", sig=signal.SIGTERM,
                          group=False)
        assert code == 143, log.read_text()[-3000:]
        assert "every record was written when it returned" in section()
        _check_killed(runs(), "SIGTERM", section())

        resume = [*cmd, "--resume"]
        before = checkpoints()
        code = _stop_when(resume, tmp_path, log, lambda: bool(checkpoints("0-2") - before), "by Ctrl-C",
                          sig=signal.SIGINT, group=False)
        assert code == 130, log.read_text()[-3000:]
        _check_killed(runs(), "SIGINT", section())

        journal = _lose_the_server_for_good(resume, tmp_path, log, link)
        link.restore()
        done = subprocess.run(resume, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        with open(log, "a") as fh:
            fh.write(f"\n===== the server is back =====\n{done.stdout}{done.stderr}")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "MLflow journal:" in done.stdout and not journal.exists()
        _check_all_recorded(client, runs(), outage)
    finally:
        link.cut()
        _stop_server(server)


def _check_all_recorded(client, found, outage: dict[str, float]) -> None:
    children, parents = found
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert not {"lorasweep.interrupted", "lorasweep.resume_with"} & set(parents[0].data.tags)
    assert len(children) == 2 and parents[0].data.metrics["trials_completed"] == 2.0
    during = 0
    for c in children:
        assert c.info.status == "FINISHED" and c.data.tags["lorasweep.status"] == "completed"
        history = client.get_metric_history(c.info.run_id, "val_loss")
        assert [m.step for m in history] == [32, 64, 96, 128]  # every report, each once
        during += sum(outage["down"] <= m.timestamp <= outage["up"] for m in history)
        assert "adapter/adapter_model.safetensors" in {
            a.path for a in client.list_artifacts(c.info.run_id, "adapter")}
    assert during >= 1  # made while the server was out of reach, recorded after


def _lose_the_server_for_good(resume: list[str], root: Path, log: Path, link: _Link) -> Path:
    """Resume the sweep and cut the link to the tracking server once the parent run is running
    again: the trials finish, the writes wait 5 s at the end, and the sweep exits 1 naming
    what it could not write and where it kept it (the journal, returned)."""
    env = {**os.environ, "LORASWEEP_MLFLOW_FLUSH_S": "5"}
    with open(log, "a") as fh:
        fh.write("\n===== the server goes away for good =====\n")
        fh.flush()
        lost = subprocess.Popen(resume, cwd=root, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    deadline = time.monotonic() + 300
    while "Tune storage:" not in log.read_text().split("=====")[-1]:  # the parent is RUNNING again
        assert lost.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.3)
    link.cut()
    assert lost.wait(timeout=600) == 1, log.read_text()[-3000:]
    out = log.read_text().split("=====")[-1]
    assert "MLflow records NOT written" in out and "report at step" in out
    journal = root / "rr" / "signals" / "lorasweep_mlflow_journal.json"
    assert journal.is_file() and str(journal) in out
    return journal


def _check_killed(found, signal_name: str, out: str) -> None:
    """After a sweep stopped by a signal: the parent KILLED with how to resume it, every child
    run ended (the trials that did not end: KILLED, unfinished)."""
    children, parents = found
    assert len(parents) == 1 and parents[0].info.status == "KILLED"
    tags = parents[0].data.tags
    assert tags["lorasweep.interrupted"] == signal_name
    assert tags["lorasweep.resume_with"].startswith("python sweeps/rank_e2e.py --resume --name signals")
    assert f"interrupted ({signal_name}): finish the sweep with" in out and " unfinished" in out
    for c in children:
        assert (c.info.status, c.data.tags["lorasweep.status"]) in {("FINISHED", "completed"),
                                                                    ("KILLED", "unfinished")}
