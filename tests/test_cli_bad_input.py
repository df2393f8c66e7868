"""Bad input: one line naming the field, exit code 2, no trial launched, nothing written."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = str(REPO / "sweeps" / "rank_e2e.py")


def _corrupt_csv(data_dir):
    path = data_dir / "trainset.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.insert(5, '"name[Broken], eatType[pub]",one ref,another field')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _remove_devset(data_dir):
    (data_dir / "devset.csv").unlink()


CASES = [
    # (flags, field the message must start with, fragment, data-dir mutation)
    (["--set", "task=e2f"], "task", "unknown task 'e2f'", None),
    (["--set", "adapter.r=0"], "adapter.r", "positive integer", None),
    (["--set", "train.lr=-1e-4"], "train.lr", "> 0", None),
    (["--set", "adapter.targets=c_atn"], "adapter.targets", "no module named 'c_atn'", None),
    (["--search-space", "{tmp}/space.yaml"], "space.scientific.r.grid[1]", "positive integer", None),
    ([], "data.source", "lacks devset.csv", _remove_devset),
    ([], "data.source", "trainset.csv line 6: expected 2 fields (mr,ref), found 3", _corrupt_csv),
    (["--model", "{tmp}/no-such-model"], "model.name_or_path", "does not exist", None),
    (["--preset", "paper", "--model", "gpt2-medium-not-cached", "--data", "{data}"],
     "model.name_or_path", "--preset smoke", None),
    (["--set", "train.lrr=1"], "train.lrr", "did you mean 'lr'", None),
    (["--num-samples", "0"], "search.num_samples", "positive integer", None),
    (["--search-alg", "optuna"], "space.scientific.r", "grid is not supported", None),
    (["--unknown-flag"], "unrecognized arguments", "", None),
    (["--set", "train.max_steps=20"], "scheduler.grace_period", "no rung before the end", None),
]


@pytest.mark.parametrize("flags, field, fragment, mutate", CASES,
                         ids=[c[1] + ("-" + c[2][:20] if c[2] else "") for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(flags, field, fragment, mutate, tmp_path, smoke_assets):
    data = tmp_path / "e2e"
    shutil.copytree(smoke_assets.data_dir, data)
    if mutate:
        mutate(data)
    (tmp_path / "space.yaml").write_text("scientific:\n  r: {grid: [4, -2]}\n")
    flags = [f.format(tmp=tmp_path, data=data) for f in flags]
    db = tmp_path / "mlruns.db"
    cmd = [sys.executable, SCRIPT, "--preset", "smoke", "--data", str(data), *flags,
           "--tracking-uri", f"sqlite:///{db}", "--storage", str(tmp_path / "ray_results")]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {field}"), lines[0]
    assert fragment in lines[0]
    assert "Traceback" not in proc.stderr
    assert not db.exists() and not (tmp_path / "mlruns").exists()
    assert not (tmp_path / "ray_results").exists()
