"""The ``lorasweep`` console command, run as pip's launcher runs it: the entry point that
pyproject.toml declares, in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest
from conftest import REPO


def lorasweep(*args: str) -> subprocess.CompletedProcess:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["lorasweep"].split(":")
    launcher = f"import sys; sys.argv[0] = 'lorasweep'; from {module} import {function}; sys.exit({function}())"
    return subprocess.run([sys.executable, "-c", launcher, *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("args, words", [
    (["--help"], ["lorasweep run STUDY", "studies: agnews_budget", "rank_e2e", "variants_glue"]),
    (["run", "rank_e2e", "--help"], ["usage: lorasweep run rank_e2e", "--preset", "smoke"]),
    (["run", "--config", str(REPO / "sweeps" / "presets" / "rank_e2e.yaml"), "--help"],
     ["usage: lorasweep run", "--config FILE", "smoke"]),
    (["report", "--help"], ["--experiment", "--sweep RUN_ID"]),
    (["export", "--help"], ["--merge", "--register NAME", "--push-to-hub REPO"]),
    (["settings", "--help"], ["--markdown"]),
])
def test_each_command_answers_help(args, words):
    proc = lorasweep(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for w in words:
        assert w in proc.stdout, (w, proc.stdout[-2000:])


def test_settings_lists_every_setting():
    proc = lorasweep("settings")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for key in ("adapter.r", "train.lr", "search.num_samples", "scheduler.groups"):
        assert key in proc.stdout


@pytest.mark.parametrize("args, message", [
    ([], "error: name a command: 'run', 'report', 'export' or 'settings'"),
    (["rnu"], "error: unknown command 'rnu' (did you mean 'run'?)"),
    (["run", "rank_e2"], "error: unknown study 'rank_e2' (did you mean 'rank_e2e'?)"),
])
def test_a_wrong_command_or_study_is_one_line_exit_2(args, message):
    proc = lorasweep(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(message), proc.stderr
