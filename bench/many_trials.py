"""A sweep of many very short trials: what the platform costs per trial, and whether any of it
grows with the number of trials.

N trials (a grid over ``seed``) of the smoke E2E study, each a couple of optimizer steps on a
tiny GPT-2 with a tiny validation set and no decoding, FIFO, ``--max-concurrent`` = the
machine's CPUs, are run twice, each side in a fresh process timed from its start to its exit:

  (a) the platform, as a user runs it: ``python sweeps/rank_e2e.py --preset smoke`` with a
      real MLflow SQLite store, the MLflow recorder and the checkpoint retention;
  (b) plain Ray Tune: the same trainable (``trainables.trial.tune_trial``) bound to the same
      ``base`` and sweep parameters, the same trial configurations in the same order (the
      platform's own planning builds them), a ``tune.Tuner`` with no lorasweep callbacks.

Each driver runs under a small harness (this file, ``--driver``) that records the time of
every Tune experiment snapshot (``TuneController.save_to_dir``) and, on the platform's side,
the time spent in each lorasweep callback hook and MLflow write; this process samples the
driver's resident memory. Printed:

* wall time of each side, their ratio (target <= 1.2) and the platform's time per trial over
  plain Tune's (target <= 0.5 s);
* the time per trial in the first and the last quarter of each sweep (equal when nothing
  grows with the trials done);
* the driver's peak RSS and its growth from 10% of the trials done to the end, per 1,000
  trials (target <= 200 MB);
* Tune's experiment snapshot: its size and write time at the end;
* the MLflow store's size and the time of ``python -m analysis.report`` on it (target
  <= 60 s).

The two sides run one after the other: on a shared machine, compare ratios from runs in both
orders (``--platform-first``).

    python bench/many_trials.py --trials 50           # a few minutes
    python bench/many_trials.py                       # 1,000 trials (10-25 min per side on 2 CPUs)
    python bench/many_trials.py --trials 200 --platform-first --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import smoke_sweep_cmd  # noqa: E402

#: Every trial: two optimizer steps of batch 4, one validation pass over 8 examples at the
#: end, no decoding (``eval.generate=false``), one checkpoint (the adapter).
TRIAL_SETTINGS = ("train.max_steps=2", "train.eval_every_steps=2", "train.log_every_steps=1",
                  "train.batch_size=4", "train.warmup_steps=0", "data.val_limit=8",
                  "data.train_limit=64", "eval.generate=false", "eval.meteor=false")
TIMINGS_ENV = "LORASWEEP_BENCH_TIMINGS"


# --------------------------------------------------------------------------- the drivers


def _timed(owner: Any, name: str, into: dict[str, list[float]], key: str) -> None:
    """Wrap ``owner.name`` so that each call's seconds are appended to ``into[key]``."""
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            into.setdefault(key, []).append(time.perf_counter() - t0)

    setattr(owner, name, wrapper)


def _instrument() -> dict[str, list[float]]:
    """Time Tune's snapshots and the lorasweep callbacks in this driver; written to
    ``$LORASWEEP_BENCH_TIMINGS`` at exit."""
    import atexit

    from ray.tune.execution.tune_controller import TuneController

    timings: dict[str, list[float]] = {}
    _timed(TuneController, "save_to_dir", timings, "snapshot")
    from sweeps.retention import CheckpointRetention
    from sweeps.tracking.recorder import MlflowRecorder

    for cls in (MlflowRecorder, CheckpointRetention):
        for name in ("on_trial_start", "on_trial_result", "on_trial_complete", "on_checkpoint",
                     "get_state"):
            if name in vars(cls):
                _timed(cls, name, timings, f"{cls.__name__}.{name}")
    _timed(MlflowRecorder, "perform", timings, "MlflowRecorder.perform (writer thread)")

    def dump() -> None:
        Path(os.environ[TIMINGS_ENV]).write_text(json.dumps(timings))

    atexit.register(dump)
    return timings


def platform_driver(argv: list[str]) -> int:
    """Side (a): the study script itself, instrumented."""
    _instrument()
    from sweeps.cli import main

    return main("rank_e2e", argv=argv)


def plain_driver(argv: list[str]) -> int:
    """Side (b): the same trials through a plain ``tune.Tuner``; ``argv`` as the platform's."""
    _instrument()
    import ray
    from ray import tune

    from sweeps.cli import build_config, build_parser, study_for
    from sweeps.planning import plan_sweep
    from sweeps.tune_setup import search_alg
    from trainables.schema import to_dict
    from trainables.tasks.registry import get_task
    from trainables.trial import trial_resources, tune_trial

    study = study_for("rank_e2e", argv)
    cfg = build_config(study, build_parser(study).parse_args(argv))
    plan = plan_sweep(cfg)
    metric = get_task(cfg.trial.task).metric
    sweep = {"seed": cfg.seed, "resources": to_dict(cfg.resources), "prepared": str(plan.prepared),
             "storage": plan.storage, "adapters": plan.adapters, "bitsandbytes": plan.bitsandbytes}
    ray.init(include_dashboard=False)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(tune_trial, base=plan.base, sweep=sweep),
                            trial_resources(sweep["resources"])),
        param_space=plan.param_space,
        tune_config=tune.TuneConfig(metric=metric.name, mode=metric.mode,
                                    search_alg=search_alg(plan, metric.name, metric.mode),
                                    num_samples=cfg.search.num_samples,
                                    max_concurrent_trials=cfg.search.max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(name=plan.name, storage_path=plan.storage, verbose=1))
    results = tuner.fit()
    errors = sum(r.error is not None for r in results)
    print(f"plain Tune: {len(results)} trials, {errors} failed")
    return 1 if errors else 0


# --------------------------------------------------------------------------- measuring


class RssSampler(threading.Thread):
    """Samples a process's resident memory every ``period`` seconds: (wall-clock time, bytes)."""

    def __init__(self, pid: int, period: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        import psutil

        proc = psutil.Process(self.pid)
        while not self.stop.is_set():
            try:
                rss = proc.memory_info().rss
            except psutil.Error:
                return
            if rss:  # 0 once the process has exited (a zombie until it is waited for)
                self.samples.append((time.time(), rss))
            self.stop.wait(self.period)


def run_side(side: str, work: Path, name: str, flags: list[str], n: int) -> dict[str, Any]:
    """One side in a fresh process: wall time, RSS, snapshot and callback timings."""
    timings = work / f"{name}-timings.json"
    cmd = smoke_sweep_cmd(work, name, *flags)
    cmd[1:2] = [str(Path(__file__).resolve()), "--driver", side, "--"]
    env = {**os.environ, TIMINGS_ENV: str(timings)}
    with open(work / f"{name}.log", "w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env)
        sampler = RssSampler(proc.pid)
        sampler.start()
        code = proc.wait()
        wall = time.perf_counter() - start
        sampler.stop.set()
        sampler.join()
    if code != 0:
        raise SystemExit(f"{side} side failed ({code}):\n{(work / f'{name}.log').read_text()[-4000:]}")
    ends = trial_ends(work / "ray_results" / name)
    out = {"wall_s": wall, **rss_figures(sampler.samples, ends), **trial_pace(ends)}
    out["timings"] = json.loads(timings.read_text()) if timings.is_file() else {}
    states = sorted((work / "ray_results" / name).glob("experiment_state-*.json"))
    out["snapshot_mb"] = states[-1].stat().st_size / 2**20 if states else None
    return out


def trial_ends(experiment: Path) -> list[float]:
    """When each trial made its last report (the ``timestamp`` of its last ``result.json``
    line, whole seconds), in order."""
    ends = []
    for path in experiment.glob("tune_trial_*/result.json"):
        lines = path.read_text().strip().splitlines()
        if lines:
            ends.append(float(json.loads(lines[-1])["timestamp"]))
    return sorted(ends)


def rss_figures(samples: list[tuple[float, int]], ends: list[float]) -> dict[str, float]:
    """Peak RSS, and its growth from the time 10% of the trials had ended to the end, per
    1,000 trials."""
    if not samples or len(ends) < 10:
        return {}
    tenth = len(ends) // 10
    at = next((rss for t, rss in samples if t >= ends[tenth - 1]), samples[-1][1])
    last = samples[-1][1]
    return {"peak_rss_mb": max(rss for _, rss in samples) / 2**20, "rss_at_10pct_mb": at / 2**20,
            "rss_end_mb": last / 2**20,
            "rss_growth_mb_per_1000": (last - at) / 2**20 * 1000 / (len(ends) - tenth)}


def trial_pace(ends: list[float]) -> dict[str, float]:
    """Seconds per trial in the first and the last quarter of the trials."""
    if len(ends) < 8:
        return {}
    q = len(ends) // 4
    return {"s_per_trial_first_quarter": (ends[q] - ends[0]) / q,
            "s_per_trial_last_quarter": (ends[-1] - ends[-1 - q]) / q}


def report_time(work: Path, experiment: str) -> float:
    """Seconds of ``python -m analysis.report`` on the platform's MLflow store."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "analysis.report", "--tracking-uri",
                           f"sqlite:///{work / 'mlruns.db'}", "--experiment", experiment,
                           "--out", str(work / "report"), "--no-log"], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"analysis.report failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


# --------------------------------------------------------------------------- the bench


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def summary(n: int, plain: dict[str, Any], platform: dict[str, Any], report_s: float, store_mb: float) -> str:
    ratio = platform["wall_s"] / plain["wall_s"]
    lines = [f"\n{n} trials, {os.cpu_count()} at a time (FIFO; 2 optimizer steps, 8 validation examples each)",
             f"{'':28}{'plain Tune':>14}{'lorasweep':>14}"]

    def row(label: str, key: str, fmt: str) -> None:
        a, b = plain.get(key), platform.get(key)
        lines.append(f"  {label:26}" + "".join(f"{format(v, fmt) if v is not None else '-':>14}" for v in (a, b)))

    row("wall time (s)", "wall_s", ".1f")
    row("s/trial, first quarter", "s_per_trial_first_quarter", ".3f")
    row("s/trial, last quarter", "s_per_trial_last_quarter", ".3f")
    row("driver peak RSS (MB)", "peak_rss_mb", ".0f")
    row("RSS growth (MB/1000 trials)", "rss_growth_mb_per_1000", ".0f")
    row("last snapshot size (MB)", "snapshot_mb", ".2f")
    for side in (plain, platform):
        snaps = side["timings"].get("snapshot", [])
        side["snapshots"] = len(snaps)
        side["last_snapshot_s"] = snaps[-1] if snaps else None
        side["snapshot_total_s"] = sum(snaps)
    row("snapshots written", "snapshots", "d")
    row("last snapshot (s)", "last_snapshot_s", ".3f")
    row("all snapshots (s)", "snapshot_total_s", ".1f")
    lines.append(f"  ratio lorasweep / plain = {ratio:.3f} (target <= 1.2); platform time per trial "
                 f"{(platform['wall_s'] - plain['wall_s']) / n:+.3f} s (target <= 0.5)")
    lines.append("  lorasweep hooks in the driver: calls, total s, mean ms over all / the first / the last "
                 "quarter of the calls")
    for key, values in sorted(platform["timings"].items()):
        if key != "snapshot":
            q = max(1, len(values) // 4)
            lines.append(f"    {key:40} {len(values):6d} {sum(values):7.1f} {_mean(values) * 1000:8.2f} "
                         f"{_mean(values[:q]) * 1000:8.2f} {_mean(values[-q:]) * 1000:8.2f}")
    lines.append(f"  MLflow store: {store_mb:.1f} MB; python -m analysis.report on it: {report_s:.1f} s "
                 "(target <= 60)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--max-concurrent", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    ap.add_argument("--platform-first", action="store_true",
                    help="run the platform's side first (the machine's load changes over a run)")
    ap.add_argument("--keep", metavar="DIR", help="run in DIR and keep it (default: a temporary directory)")
    args = ap.parse_args()
    n = args.trials
    with tempfile.TemporaryDirectory(prefix="lorasweep-many-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        space = work / "space.yaml"
        space.write_text(f"scientific:\n  seed: {{grid: {json.dumps(list(range(1, n + 1)))}}}\n"
                         "fixed:\n  r: 4\n  alpha: 32\n  targets: c_attn\n")
        flags = ["--search-space", str(space), "--scheduler", "fifo", "--max-concurrent",
                 str(args.max_concurrent), "--cpus-per-trial", "1"]
        for setting in TRIAL_SETTINGS:
            flags += ["--set", setting]
        sides = {}
        for side in (("platform", "plain") if args.platform_first else ("plain", "platform")):
            sides[side] = run_side(side, work, "plain" if side == "plain" else "lorasweep", flags, n)
            print(f"{side}: {sides[side]['wall_s']:.1f} s", flush=True)
        plain, platform = sides["plain"], sides["platform"]
        store_mb = (work / "mlruns.db").stat().st_size / 2**20
        report_s = report_time(work, "lorasweep-rank_e2e")
    print(summary(n, plain, platform, report_s, store_mb))
    if args.json:
        print(json.dumps({"trials": n, "plain": plain, "lorasweep": platform, "report_s": report_s,
                          "mlflow_store_mb": store_mb}))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--driver":
        side, rest = sys.argv[2], sys.argv[sys.argv.index("--") + 1:]
        sys.exit((platform_driver if side == "platform" else plain_driver)(rest))
    main()
