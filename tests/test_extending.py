"""docs/extending.md is true: its code blocks, applied as written to a copy of the repository's
packages (the repository itself untouched), add a task with its offline data, a LoRA method, a
search space and a study; the study's smoke preset then runs a real sweep through its own
script, with the new method, on real local Ray and a SQLite MLflow store. Nothing else in the
copy changes: not the runner, not any existing ``sweeps/`` module.

Expected values come from the data's definition and hand arithmetic, not from the code: the
synthetic test file alternates class indices 1 and 2, so the recorded labels alternate 0 and
1; accuracy and F1 are recomputed from the predictions the trial wrote; MiCA on W_q and W_v of
MiniLM (6 layers, width 384) at r 8 trains A only, plus the two-class head.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.integration

DOC = REPO / "docs" / "extending.md"
PACKAGES = ("trainables", "sweeps", "search_spaces", "analysis")
#: Where the doc's one-line additions go in existing files (the doc says the same in words).
ANCHORS = {
    "trainables/tasks/registry.py": ("after the last line starting with", "register_task("),
    "trainables/offline/registry.py": ("after the last line starting with", "SMOKE_DATA"),
    "trainables/methods.py": ("before the line starting with", "METHODS = "),
}
BLOCK = re.compile(r'^```\w+ title="([^"]+)"\n(.*?)^```$', re.MULTILINE | re.DOTALL)


def doc_blocks() -> dict[str, str]:
    """``{path: code}`` of the doc's blocks that carry a file title."""
    return dict(BLOCK.findall(DOC.read_text(encoding="utf-8")))


def insert(path: Path, code: str, where: str, prefix: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    hits = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    assert hits, f"{path}: no line starts with {prefix!r}"
    at = hits[-1] + 1 if where.startswith("after") else hits[0]
    lines[at:at] = code.rstrip("\n").splitlines()
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def apply_doc(root: Path, blocks: dict[str, str]) -> None:
    """The repository's packages copied to ``root``, with the doc's files written and its lines
    inserted."""
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    for rel, code in blocks.items():
        target = root / rel
        if rel in ANCHORS:
            insert(target, code, *ANCHORS[rel])
        else:
            assert not target.exists(), f"the doc overwrites {rel}"
            target.write_text(code, encoding="utf-8")


def run(root: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the driver and its Ray workers import the copy
    return subprocess.run([sys.executable, str(root / "sweeps" / "yelp_polarity.py"), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


def test_the_extending_doc_adds_a_task_method_space_and_study_that_run(tmp_path):
    blocks = doc_blocks()
    assert set(ANCHORS) <= set(blocks), sorted(blocks)
    root = tmp_path / "checkout"
    apply_doc(root, blocks)

    dry = run(root, tmp_path, "--preset", "smoke", "--search-space", "yelp_polarity", "--dry-run")
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    assert json.loads(dry.stdout)["n_trials"] == 3 * 3  # ranks x learning rates

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    proc = run(root, tmp_path, "--preset", "smoke", "--set", "adapter.method=mica", "--tracking-uri", uri,
               "--storage", str(tmp_path / "rr"), "--name", "yelp")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 completed, 0 stopped early, 0 failed" in proc.stdout

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("lorasweep-yelp_polarity").experiment_id])
    trials = [r for r in runs if r.data.tags.get("lorasweep.kind") == "trial"]
    assert len(trials) == 1
    trial = trials[0]
    assert trial.info.status == "FINISHED" and trial.data.tags["lorasweep.status"] == "completed"
    assert trial.data.params["task"] == "yelp_polarity" and trial.data.params["adapter.method"] == "mica"
    m = trial.data.metrics
    assert m["trainable_params"] == 6 * 2 * 8 * 384 + (384 * 2 + 2)
    for key in ("val_loss", "val_accuracy", "val_f1", "accuracy", "f1"):
        assert math.isfinite(m[key]), key

    path = client.download_artifacts(trial.info.run_id, "outputs/test_predictions.csv", str(tmp_path))
    rows = [line.split(",") for line in Path(path).read_text().splitlines()[1:]]
    labels, preds = [int(r[1]) for r in rows], [int(r[2]) for r in rows]
    assert labels == [0, 1] * 40
    tp = sum(p == y == 1 for p, y in zip(preds, labels))
    fp = sum(p == 1 and y == 0 for p, y in zip(preds, labels))
    fn = sum(p == 0 and y == 1 for p, y in zip(preds, labels))
    assert m["accuracy"] == pytest.approx(100 * sum(p == y for p, y in zip(preds, labels)) / 80)
    assert m["f1"] == pytest.approx(100 * 2 * tp / (2 * tp + fp + fn))
