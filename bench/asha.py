"""ASHA pays, and never decides the scientific question: a rank x learning-rate study run to the
end (FIFO) and under grouped ASHA.

The smoke rank study on a larger space: r in {1, 4, 16, 64} (scientific) x lr in {2e-5, 2e-4,
2e-3} (nuisance), 12 trials of 9 epochs of 256 training examples each, validation loss after
every epoch, two 1-CPU trials at a time. ASHA: grace period 1 epoch, reduction factor 3 (rungs
at 1 and 3 epochs, then the end at 9), grouped by rank (``scheduler.groups: auto``), with each
of its two promotion rules (``scheduler.promotion``): ``stop``, Ray Tune's rule, which decides
as a trial reaches a rung, and ``pause``, ASHA as Li et al. state it. The three sweeps run back
to back; the script prints, for every rank, the best final validation loss each found against
the grid's (target: within 1%), and the trial-epochs each spent (the sum over trials of the
epochs each trained) as a fraction of the grid's (target: <= 0.5).

Which trials asynchronous halving stops depends on the order they reach each rung, so one
run's ratio is one draw. The script then replays both rules (``analysis.replay``, running the
sweep's own schedulers on a simulated clock) on the grid's recorded curves over 500 seeded
random start orders, grouped and sweep-wide (``scheduler.groups: none``): the distribution a
user can expect, and what sweep-wide ASHA would have cost the study (ranks with no trial run
to the end).

    python bench/asha.py
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import results, run_smoke_sweep  # noqa: E402

RANKS, LRS = (1, 4, 16, 64), (2.0e-5, 2.0e-4, 2.0e-3)
SPACE = f"""\
description: bench/asha.py, rank (scientific) x learning rate (nuisance), 12 trials
scientific:
  r: {{grid: {list(RANKS)}}}
nuisance:
  lr: {{grid: {list(LRS)}}}
fixed:
  alpha: 32
  targets: qv
"""

GRACE, RF, EPOCHS, WORKERS, ORDERS = 1, 3, 9, 2, 500
SWEEPS = {"fifo": ["--scheduler", "fifo"],
          "asha-stop": ["--scheduler", "asha", "--set", "scheduler.promotion=stop"],
          "asha-pause": ["--scheduler", "asha", "--set", "scheduler.promotion=pause"]}


def run(work: Path, name: str) -> tuple[float, list[dict[str, str]]]:
    elapsed = run_smoke_sweep(
        work, name, "--search-space", str(work / "space.yaml"), *SWEEPS[name],
        "--set", f"scheduler.grace_period={GRACE}", "--set", f"scheduler.reduction_factor={RF}",
        "--set", f"train.epochs={EPOCHS}", "--set", "data.train_limit=256", "--set", "data.val_limit=100",
        "--set", "eval.generate=false", "--set", "train.warmup_steps=5")
    return elapsed, results(work, name)


def curves(work: Path, name: str) -> dict[tuple[int, float], list[float]]:
    """Each trial's validation loss after every epoch, keyed by (r, lr), from Tune's per-trial
    ``result.json``."""
    out = {}
    for trial in (work / "ray_results" / name).glob("tune_trial_*/result.json"):
        rows = [json.loads(line) for line in trial.read_text().splitlines() if line.strip()]
        config = rows[0]["config"]
        out[(int(config["adapter.r"]), float(config["train.lr"]))] = [r["val_loss"] for r in rows if "val_loss" in r]
    return out


def best_per_rank(rows: list[dict[str, str]]) -> dict[int, float]:
    """Each rank's best final validation loss among its completed trials (inf: none completed)."""
    best = {r: float("inf") for r in RANKS}
    for row in rows:
        if row["status"] == "completed":
            best[int(row["r"])] = min(best[int(row["r"])], float(row["val_loss"]))
    return best


def live(out: dict[str, Any]) -> None:
    grid_best, grid_epochs, grid_s = best_per_rank(out["fifo"][1]), out["fifo"][2], out["fifo"][0]
    for name in ("asha-stop", "asha-pause"):
        elapsed, rows, epochs = out[name]
        best = best_per_rank(rows)
        worst = max(abs(best[r] / grid_best[r] - 1) for r in RANKS)
        print(f"\n{name} (grouped by r): trial-epochs / grid's = {epochs / grid_epochs:.3f} (target <= 0.5); "
              f"wall time {elapsed:.0f} s vs {grid_s:.0f} s; largest best-per-rank gap {100 * worst:.2f}% "
              "(target <= 1%)")
        for r in RANKS:
            print(f"  r={r:<3d} best val loss {best[r]:.4f} vs grid {grid_best[r]:.4f} "
                  f"({100 * (best[r] / grid_best[r] - 1):+.2f}%)")


def replays(full: dict[tuple[int, float], list[float]]) -> None:
    from analysis.replay import replay

    total = EPOCHS * len(full)
    grid_best = {r: min(v[-1] for (rr, _), v in full.items() if rr == r) for r in RANKS}
    rng = random.Random(0)
    draws = []
    for _ in range(ORDERS):
        order = list(full)
        rng.shuffle(order)
        draws.append(order)
    print(f"\nreplayed on the grid's curves ({len(full)} trials, {ORDERS} random start orders):")
    for grouped in (True, False):
        for rule in ("stop", "pause"):
            runs = [replay(full, order, rule=rule, grace=GRACE, eta=RF, workers=WORKERS,
                           group_of=(lambda k: k[0]) if grouped else None) for order in draws]
            ratios = sorted(run.spent / total for run in runs)
            q = statistics.quantiles(ratios, n=10)
            exact = sum(all(min((full[k][-1] for k in run.completed() if k[0] == r), default=float("inf"))
                            <= grid_best[r] * 1.01 for r in RANKS) for run in runs) / ORDERS
            lost = statistics.mean(sum(not any(k[0] == r for k in run.completed()) for r in RANKS) for run in runs)
            print(f"  {'grouped   ' if grouped else 'sweep-wide'} {rule:5s}: trial-epochs / grid's median "
                  f"{statistics.median(ratios):.3f} (10th-90th percentile {q[0]:.3f}-{q[-1]:.3f}, max "
                  f"{ratios[-1]:.3f}); every rank's best within 1% in {exact:.0%} of orders; "
                  f"ranks with no trial run to the end: {lost:.2f} on average", flush=True)


def main() -> None:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lorasweep-asha-") as tmp:
        work = Path(tmp)
        (work / "space.yaml").write_text(SPACE)
        for name in SWEEPS:
            elapsed, rows = run(work, name)
            epochs = sum(float(r["epoch"]) for r in rows)
            stopped = sum(r["status"] == "stopped_early" for r in rows)
            out[name] = (elapsed, rows, epochs)
            print(f"{name:10s}: {len(rows)} trials, {stopped:2d} stopped early, {epochs:5.1f} trial-epochs, "
                  f"{elapsed:5.0f} s", flush=True)
        full = {k: v for k, v in curves(work, "fifo").items() if len(v) == EPOCHS}
    live(out)
    replays(full)


if __name__ == "__main__":
    main()
