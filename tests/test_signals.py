"""Signals and the tracking server, end to end through the command line: real local Ray, a
real ``mlflow server``, real training of the tiny GPT-2. SIGTERM and Ctrl-C end a sweep with 143
and 130, the parent run ``KILLED`` until resumed and no child run left RUNNING; a server that
goes away for a moment loses nothing, one that stays away is exit 1 with the lost records listed
and kept in the journal, which ``--resume`` writes once the server is back.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_runs import EXPERIMENT, runs_by_kind, stop_when, sweep_cmd, write_space
from sweep_runs import ONE_AT_A_TIME

from sweeps.ray_start import free_port


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

        self.target, self.port = target, free_port()
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
    """One sweep (2 trials of 8 epochs, one at a time, keep_best_k 1) against a real
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
    port = free_port()
    server = _start_server(tmp_path, port)
    link = _Link(port)
    space = write_space(tmp_path, "scientific:\n  r: {grid: [2, 4]}\nfixed: {alpha: 32, targets: qv, lr: 2.0e-3}\n")
    # One trial at a time, on one CPU: its tiny matrices gain nothing from a second torch thread.
    cmd = sweep_cmd(tmp_path, "signals", f"http://127.0.0.1:{link.port}", "--search-space", space,
                     *ONE_AT_A_TIME, "--keep-best-k", "1", "--set", "train.epochs=8",
                     "--set", "data.train_limit=128")  # 8 steps an epoch: reports at steps 8 ... 64
    log = tmp_path / "sweep.log"
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")  # the test's own view: never cut

    def runs():
        return runs_by_kind(client) if client.get_experiment_by_name(EXPERIMENT) else ([], [])

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
        code = stop_when(cmd, tmp_path, log, after_an_outage, "by SIGTERM after an outage", sig=signal.SIGTERM,
                          group=False)
        assert code == 143, log.read_text()[-3000:]
        assert "every record was written when it returned" in section()
        _check_killed(runs(), "SIGTERM", section())

        resume = [*cmd, "--resume"]
        # Eight short epochs leave the resumed trial room to make a new checkpoint before its
        # last (indices 0-6), even when the SIGTERM came several reports after the outage.
        before = checkpoints()
        code = stop_when(resume, tmp_path, log, lambda: bool(checkpoints("0-6") - before), "by Ctrl-C",
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
    # A summary per driver that reached the server (the two interrupted ones and the last: the
    # one cut off is redone by the last), each at the number of trials ended by then, so that
    # in the metric's history they follow one another.
    summaries = sorted(client.get_metric_history(parents[0].info.run_id, "trials_completed"), key=lambda m: m.timestamp)
    assert len(summaries) == 3 and [m.step for m in summaries] == sorted(m.step for m in summaries)
    assert (summaries[-1].step, summaries[-1].value) == (2, 2.0)
    during = 0
    for c in children:
        assert c.info.status == "FINISHED" and c.data.tags["lorasweep.status"] == "completed"
        history = client.get_metric_history(c.info.run_id, "val_loss")
        assert [m.step for m in history] == list(range(8, 65, 8))  # every report, each once
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
    # Only lorasweep's way to resume, and none of what Ray's workers print as SIGTERM ends them.
    assert "Tuner.restore(" not in out and "SIGTERM received" not in out and "SystemExit" not in out, out[-3000:]
    for c in children:
        assert (c.info.status, c.data.tags["lorasweep.status"]) in {("FINISHED", "completed"),
                                                                    ("KILLED", "unfinished")}
