"""ASHA pays: the same rank x learning-rate grid run to the end (FIFO) and under ASHA.

The smoke rank study on a larger grid: r in {1, 2, 4, 8, 16, 32} x lr in {2e-5, 2e-4, 2e-3}
(18 trials), 9 epochs of 256 training examples each, validation loss after every epoch,
two 1-CPU trials at a time. ASHA: grace period 1 epoch, reduction factor 3 (rungs at 1, 3
and 9 epochs). Both sweeps run back to back in this one run; the script prints each one's
best validation loss and the trial-epochs it spent (the sum over trials of the epochs each
trained), and the two ratios.

    python bench/asha.py        # targets: best within 2% of the grid's, <= 40% of its trial-epochs
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import results, run_smoke_sweep  # noqa: E402

SPACE = """\
description: bench/asha.py grid (18 trials)
scientific:
  r: {grid: [1, 2, 4, 8, 16, 32]}
  lr: {grid: [2.0e-5, 2.0e-4, 2.0e-3]}
fixed:
  alpha: 32
  targets: qv
"""


def run(work: Path, scheduler: str) -> tuple[float, list[dict[str, str]]]:
    name = f"grid-{scheduler}"
    elapsed = run_smoke_sweep(
        work, name, "--search-space", str(work / "space.yaml"), "--scheduler", scheduler,
        "--set", "scheduler.grace_period=1", "--set", "scheduler.reduction_factor=3",
        "--set", "train.epochs=9", "--set", "data.train_limit=256", "--set", "data.val_limit=100",
        "--set", "eval.generate=false", "--set", "train.warmup_steps=5")
    return elapsed, results(work, name)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="lorasweep-asha-") as tmp:
        work = Path(tmp)
        (work / "space.yaml").write_text(SPACE)
        out = {}
        for scheduler in ("fifo", "asha"):
            elapsed, rows = run(work, scheduler)
            best = min(rows, key=lambda r: float(r["val_loss"]))
            epochs = sum(float(r["epoch"]) for r in rows)
            stopped = sum(r["status"] == "stopped_early" for r in rows)
            out[scheduler] = (float(best["val_loss"]), epochs, elapsed)
            print(f"{scheduler:5s}: {len(rows)} trials, {stopped} stopped early, {epochs:5.1f} trial-epochs, "
                  f"best val loss {float(best['val_loss']):.4f} (r={best['r']}, lr={best['lr']}), "
                  f"{elapsed:5.0f} s", flush=True)
    (grid_best, grid_epochs, grid_s), (asha_best, asha_epochs, asha_s) = out["fifo"], out["asha"]
    print(f"\nASHA best / grid best = {asha_best / grid_best:.4f} (within {100 * (asha_best / grid_best - 1):+.2f}%, "
          f"target within 2%)")
    print(f"ASHA trial-epochs / grid trial-epochs = {asha_epochs / grid_epochs:.3f} (target <= 0.40); "
          f"wall time {asha_s:.0f} s vs {grid_s:.0f} s")


if __name__ == "__main__":
    main()
