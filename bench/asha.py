"""ASHA pays: the same rank x learning-rate grid run to the end (FIFO) and under ASHA.

The smoke rank study on a larger grid: r in {1, 2, 4, 8, 16, 32} x lr in {2e-5, 2e-4, 2e-3}
(18 trials), 9 epochs of 256 training examples each, validation loss after every epoch,
two 1-CPU trials at a time. ASHA: grace period 1 epoch, reduction factor 3 (rungs at 1 and 3
epochs, then the end at 9), with each of its two promotion rules (``scheduler.promotion``):
``stop``, Ray Tune's ASHAScheduler, which decides as a trial reaches a rung, and ``pause``,
ASHA as Li et al. state it (``sweeps/promotion.py``). The three sweeps run back to back in this
one run; the script prints each one's best validation loss and the trial-epochs it spent (the
sum over trials of the epochs each trained), and the ratios to the grid's.

Which trials asynchronous halving stops depends on the order they reach each rung, so one
run's ratio is one draw. The script then replays both rules (Ray's own ASHA bracket, and our
PromotingASHA scheduler) on the grid run's recorded validation curves: two workers, one epoch
per time step, trials started in a given order. Replayed in a live run's start order it comes
close to that run's figures but need not equal them (live epochs take unequal times, and a
resumed trial sets up again, which changes the order trials reach a rung: the same seeded
``stop`` sweep spent 0.346 and 0.469 of the grid's trial-epochs in two runs); over 500 seeded
random orders it gives the distribution of the ratio, which is what a user can expect.

    python bench/asha.py        # targets: best within 2% of the grid's, <= 40% of its trial-epochs
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

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

GRACE, RF, EPOCHS, WORKERS = 1, 3, 9, 2
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


def curves(work: Path, name: str) -> dict[tuple[str, str], list[float]]:
    """Each trial's validation loss after every epoch, keyed by (r, lr), from Tune's
    per-trial ``result.json``, in the order Tune created (and started) the trials."""
    out = {}
    for trial in sorted((work / "ray_results" / name).glob("tune_trial_*/result.json"),
                        key=lambda p: p.parent.name.split("_")[3]):
        rows = [json.loads(line) for line in trial.read_text().splitlines() if line.strip()]
        config = rows[0]["config"]
        key = (str(config["adapter.r"]), repr(float(config["train.lr"])))
        out[key] = [r["val_loss"] for r in rows if "val_loss" in r]
    return out


def replay(losses: dict[Any, list[float]], order: list[Any], rule: str) -> tuple[float, int]:
    """(best last validation loss, trial-epochs) of ASHA over recorded curves: ``WORKERS``
    trials at a time, each epoch one time step, new trials started in ``order``. ``rule``
    ``stop`` judges every report with Ray's own ASHA bracket; ``pause`` hands reports to our
    PromotingASHA scheduler and lets it choose what a freed worker runs next."""
    from ray.tune.schedulers import TrialScheduler

    trials = {k: SimpleNamespace(trial_id=k, status="PENDING") for k in order}
    if rule == "stop":
        from ray.tune.schedulers.async_hyperband import _Bracket

        bracket = _Bracket(min_t=GRACE, max_t=EPOCHS, reduction_factor=RF, s=0)

        def decide(trial: Any, epoch: int) -> str:
            return bracket.on_result(trial, epoch, -losses[trial.trial_id][epoch - 1])

        def choose() -> Any:
            return next((t for t in trials.values() if t.status == "PENDING"), None)
    else:
        from sweeps.promotion import PromotingASHA

        scheduler = PromotingASHA(time_attr="epoch", grace_period=GRACE, reduction_factor=RF, max_t=EPOCHS,
                                  metric="val_loss", mode="min")
        controller = SimpleNamespace(get_trials=lambda: list(trials.values()),
                                     search_alg=SimpleNamespace(is_finished=lambda: True),
                                     stop_trial=lambda t: setattr(t, "status", "TERMINATED"))

        def decide(trial: Any, epoch: int) -> str:
            return scheduler.on_trial_result(controller, trial, {
                "epoch": epoch, "val_loss": losses[trial.trial_id][epoch - 1]})

        def choose() -> Any:
            return scheduler.choose_trial_to_run(controller)

    reached: dict[Any, int] = {}
    events: list[tuple[int, int, Any]] = []
    tick = itertools.count()
    busy = 0

    def fill(now: int) -> None:
        nonlocal busy
        while busy < WORKERS and (trial := choose()) is not None:
            trial.status = "RUNNING"
            busy += 1
            heapq.heappush(events, (now + 1, next(tick), trial))

    fill(0)
    while events:
        now, _, trial = heapq.heappop(events)
        epoch = reached[trial.trial_id] = reached.get(trial.trial_id, 0) + 1
        action = decide(trial, epoch)
        if epoch >= EPOCHS or action == TrialScheduler.STOP:
            trial.status, busy = "TERMINATED", busy - 1
        elif action == TrialScheduler.PAUSE:
            trial.status, busy = "PAUSED", busy - 1
        else:
            heapq.heappush(events, (now + 1, next(tick), trial))
        fill(now)
    return min(losses[t][e - 1] for t, e in reached.items()), sum(reached.values())


def distribution(full: dict[Any, list[float]], rule: str, grid_best: float, n: int = 500) -> str:
    total = EPOCHS * len(full)
    rng = random.Random(0)
    runs = []
    for _ in range(n):
        order = list(full)
        rng.shuffle(order)
        runs.append(replay(full, order, rule))
    ratios = sorted(spent / total for _, spent in runs)
    q = statistics.quantiles(ratios, n=10)
    within = sum(best / grid_best - 1 <= 0.02 for best, _ in runs) / n
    return (f"median {statistics.median(ratios):.3f}, 10th-90th percentile {q[0]:.3f}-{q[-1]:.3f}, "
            f"max {ratios[-1]:.3f}; {sum(r <= 0.40 for r in ratios) / n:.0%} of orders <= 0.40; "
            f"best within 2% in {within:.0%}")


def main() -> None:
    out: dict[str, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="lorasweep-asha-") as tmp:
        work = Path(tmp)
        (work / "space.yaml").write_text(SPACE)
        recorded: dict[str, dict[Any, list[float]]] = {}
        for name in SWEEPS:
            elapsed, rows = run(work, name)
            best = min(rows, key=lambda r: float(r["val_loss"]))
            epochs = sum(float(r["epoch"]) for r in rows)
            stopped = sum(r["status"] == "stopped_early" for r in rows)
            out[name] = (float(best["val_loss"]), epochs, elapsed)
            recorded[name] = curves(work, name)
            print(f"{name:10s}: {len(rows)} trials, {stopped:2d} stopped early, {epochs:5.1f} trial-epochs, "
                  f"best val loss {float(best['val_loss']):.4f} (r={best['r']}, lr={best['lr']}), "
                  f"{elapsed:5.0f} s", flush=True)
    grid_best, grid_epochs, grid_s = out["fifo"]
    for name, rule in (("asha-stop", "stop"), ("asha-pause", "pause")):
        best, epochs, elapsed = out[name]
        print(f"\n{name}: best / grid best = {best / grid_best:.4f} ({100 * (best / grid_best - 1):+.2f}%, "
              f"target within 2%); trial-epochs / grid's = {epochs / grid_epochs:.3f} (target <= 0.40); "
              f"wall time {elapsed:.0f} s vs {grid_s:.0f} s")

    # The replays, on the grid's curves (every trial ran all EPOCHS there).
    full = {k: v for k, v in recorded["fifo"].items() if len(v) == EPOCHS}
    replay_best = min(v[-1] for v in full.values())
    total = EPOCHS * len(full)
    print(f"\nreplayed on the grid's curves ({len(full)} trials):")
    for name, rule in (("asha-stop", "stop"), ("asha-pause", "pause")):
        live_best, live_epochs, _ = out[name]
        best, spent = replay(full, [k for k in recorded[name] if k in full], rule)
        print(f"  {rule:5s} in the live run's order: {spent / total:.3f}, best {100 * (best / replay_best - 1):+.2f}% "
              f"(live: {live_epochs / grid_epochs:.3f}, {100 * (live_best / grid_best - 1):+.2f}%)")
        print(f"  {rule:5s} over 500 random orders: {distribution(full, rule, replay_best)}", flush=True)


if __name__ == "__main__":
    main()
