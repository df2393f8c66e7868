"""A sweep run as a user runs it (the real command in a subprocess), or through the same entry
point in the test process on a local Ray shared by a module's sweeps, and its MLflow record;
the smoke sweep that several test modules inspect."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

from conftest import REPO

#: For sweeps whose results do not depend on how many trials run at once (FIFO, no
#: concurrency checked): one trial process, reused for every trial, instead of one per CPU,
#: each importing torch and peft. On this machine's two cores the tests are CPU-bound.
ONE_AT_A_TIME = ("--max-concurrent", "1")


def run_sweep_command(cmd: list[str], *, cwd, uri: str, experiment: str, completed: int) -> SimpleNamespace:
    """Run ``cmd``; it must exit 0 with ``completed`` trials completed. Returns its ``out``
    (stdout), the MLflow ``client``, the sweep's ``parent`` run and its ``trials``."""
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return _recorded(proc.stdout, uri, experiment, completed)


def _recorded(out: str, uri: str, experiment: str, completed: int | None) -> SimpleNamespace:
    """A finished sweep's ``out``, with its parent run and trial runs read from MLflow; with
    ``completed``, the summary must say that many trials completed and none stopped or failed."""
    from mlflow import MlflowClient

    if completed is not None:
        assert f"{completed} completed, 0 stopped early, 0 failed" in out
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return SimpleNamespace(out=out, client=client,
                           parent=next(r for r in runs if r.data.tags.get("lorasweep.kind") == "sweep"),
                           trials=[r for r in runs if r.data.tags.get("lorasweep.kind") == "trial"])


@contextlib.contextmanager
def local_ray():
    """One local Ray in this test process, which the sweeps of :func:`run_sweep_in_process`
    join (as the parts of a multi-part study do) instead of each starting and stopping its own.
    The environment variables that Ray's start sets here are restored after."""
    import ray

    from sweeps.ray_start import _init_ray

    saved = dict(os.environ)
    started = _init_ray()
    try:
        yield
    finally:
        if started:
            ray.shutdown()
        os.environ.clear()
        os.environ.update(saved)


def run_study_here(study: str, argv: list[str], *, cwd) -> tuple[int, str]:
    """``sweeps/<study>.py *argv`` run by its entry point (``run_study``) in this process, from
    ``cwd``, inside :func:`local_ray`: its exit code and standard output."""
    from sweeps.cli import run_study

    out, here = io.StringIO(), os.getcwd()
    os.chdir(cwd)  # MLflow's default artifact root is ./mlruns, as for the command
    try:
        with contextlib.redirect_stdout(out):
            code = run_study(study, argv)
    finally:
        os.chdir(here)
    return code, out.getvalue()


def run_sweep_in_process(study: str, argv: list[str], *, cwd, uri: str, experiment: str,
                         completed: int | None = None, exit_code: int = 0) -> SimpleNamespace:
    """:func:`run_study_here`, which must return ``exit_code`` (and, with ``completed``, have
    that many trials completed, as :func:`run_sweep_command`); returns what that returns."""
    code, out = run_study_here(study, argv, cwd=cwd)
    assert code == exit_code, out[-4000:]
    return _recorded(out, uri, experiment, completed)


def smoke_sweep(root: Path) -> dict:
    """``rank_e2e.py --preset smoke`` (six trials, ASHA) in ``root``, its store in
    ``root/store``, with hub and tracking
    credentials planted in its environment. Its ``out`` and ``err``, the MLflow ``client`` and
    ``runs``, its store's ``uri``, its ``name`` (random: it must be found wherever the sweep
    is recorded), and the ``planted`` variables with their common ``mark``."""
    from mlflow import MlflowClient

    mark, name = uuid.uuid4().hex[:12], f"smoke-{uuid.uuid4().hex[:12]}"
    planted = {
        "HF_TOKEN": f"hf_planted{mark}hub",
        "HUGGING_FACE_HUB_TOKEN": f"hf_planted{mark}legacy",
        "MLFLOW_TRACKING_USERNAME": f"planted{mark}user",
        "MLFLOW_TRACKING_PASSWORD": f"planted{mark}password",
        "MLFLOW_TRACKING_TOKEN": f"planted{mark}token",
    }
    (root / "store").mkdir()  # the store in its own folder: its artifacts go beside it
    uri = f"sqlite:///{root / 'store' / 'mlruns.db'}"
    cmd = [sys.executable, str(REPO / "sweeps" / "rank_e2e.py"), "--preset", "smoke",
           "--tracking-uri", uri, "--storage", str(root / "ray_results"), "--name", name]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900, env={**os.environ, **planted},
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("lorasweep-rank_e2e").experiment_id], max_results=1000)
    return {"root": root, "uri": uri, "out": proc.stdout, "err": proc.stderr, "client": client, "runs": runs,
            "name": name, "planted": planted, "mark": mark}
