"""Failing trials end to end through the command line: real local Ray, a real MLflow SQLite
store, real training of the tiny GPT-2. A NaN loss and an out-of-memory past
``--memory-limit-mb`` end as failed in Tune and MLflow with their error, are retried
``--max-failures`` times, and the others finish.

Kill-and-resume is ``test_chaos.py``, signals and a tracking server that goes away
``test_signals.py``; the parts without Ray are tested in ``test_mlflow_record.py`` and
``test_checkpoints.py``.
"""

from __future__ import annotations

import csv
import subprocess

import pytest
from fault_runs import runs_by_kind, sweep_cmd, write_space


@pytest.mark.integration
def test_failing_trials_are_isolated_retried_and_reported(tmp_path, smoke_assets):
    """Three grid points: a healthy one; lr 1e6 (the train loss turns NaN: FloatingPointError
    from the loop); batch 4096 under a 300 MiB memory limit (the trial's own RLIMIT_AS: torch's
    allocator fails, the trial fails as out of memory). ``--max-failures 1``: each failing
    trial runs twice; the healthy one completes; exit code 1 and the summary names both."""
    space = write_space(tmp_path, "scientific:\n  lr+batch_size: {grid: [[2.0e-3, 16], [1.0e6, 16], [2.0e-3, 4096]]}\n"
                             "fixed: {r: 4, alpha: 32, targets: qv}\n")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    cmd = sweep_cmd(tmp_path, "faults", uri, "--search-space", space, "--max-failures", "1",
                     "--memory-limit-mb", "300", "--set", "train.max_steps=4",
                     "--set", "train.warmup_steps=0", "--set", "train.log_every_steps=1")
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    out = proc.stdout
    assert proc.returncode == 1, out[-3000:] + proc.stderr[-3000:]
    assert "1 completed, 0 stopped early, 2 failed" in out
    assert "failed after 2 attempts: lr+batch_size=[1000000.0, 16]" in out
    assert "FloatingPointError: train loss is nan at step" in out
    assert "failed after 2 attempts: lr+batch_size=[0.002, 4096]" in out
    assert "out of memory: the trial needed more than resources.memory_limit_mb=300 MiB" in out
    assert "can't allocate memory" in out  # the allocator's own words, not an invented failure

    markdown_it = pytest.importorskip("markdown_it")
    from mlflow import MlflowClient

    children, parents = runs_by_kind(MlflowClient(tracking_uri=uri))
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
        # The note (Markdown in MLflow's UI) shows the error as recorded: a code block.
        error = tags["lorasweep.error"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert f"<pre><code>{error.replace(chr(34), '&quot;')}\n</code></pre>" in markdown_it.MarkdownIt(
            "commonmark").render(tags["mlflow.note.content"])
    assert parents[0].data.metrics["trials_failed"] == 2.0
    with open(tmp_path / "rr" / "faults" / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["status"] for r in rows) == ["completed", "failed", "failed"]
    assert all(r["error"] for r in rows if r["status"] == "failed")

