"""Cold start: from ``python sweeps/rank_e2e.py --preset smoke`` to the first reported metric.

The clock starts when the command is launched and stops when the first trial's first result
(a validation loss, after one epoch of training) lands in Tune's storage. The sweep is then
interrupted (Ctrl-C, which the CLI turns into a clean stop). Three cases are timed:

  empty - a new, empty cache directory: the tiny GPT-2, its tokenizer and the synthetic data
          are built first (a once-per-machine cost; reported, not the target);
  new   - the smoke assets and the tokenised data are cached, in a new working directory (a
          new MLflow SQLite store is created): the target, median of ``--runs`` runs;
  again - a second run in the same working directory (its MLflow store exists).

Each run is split at the lines the sweep prints: the sweep header (validated, Ray up, MLflow
parent run written), the first trial's start (its process is up: on a local Ray with one-CPU
trials, a process Ray started warm, having imported Ray Tune, torch, transformers and peft;
see ``sweeps.ray_start.warm_runtime_env``) and the first metric. The trial's own timings
(``setup_s``: imports not done yet, model and adapter; the rest: one epoch and the validation
pass) come from its first result. ``--runs 5`` gives a steadier median on a noisy machine.

    python bench/cold_start.py            # target: new < 20 s
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import smoke_sweep_cmd  # noqa: E402


def time_to_first_metric(work: Path, name: str, env: dict[str, str], timeout: float = 300.0) -> dict[str, float]:
    """Seconds from launch to the sweep header, the first trial start and the first metric,
    and the first result's own timings."""
    storage = work / "ray_results"
    marks: dict[str, float] = {}
    start = time.perf_counter()
    proc = subprocess.Popen(smoke_sweep_cmd(work, name), cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            now = time.perf_counter() - start
            if line.startswith("lorasweep "):
                marks.setdefault("header", now)
            elif "started with configuration" in line:
                marks.setdefault("trial_start", now)
            tail.append(line)
            del tail[:-40]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while time.perf_counter() - start < timeout:
            for path in glob.glob(str(storage / name / "*" / "result.json")):
                if os.path.getsize(path) > 0:
                    marks["first_metric"] = time.perf_counter() - start
                    first = json.loads(Path(path).read_text().splitlines()[0])
                    marks["trial_setup_s"] = first["setup_s"]
                    marks["trial_total_s"] = first["time_total_s"]
                    return marks
            if proc.poll() is not None:
                reader.join(5)
                raise SystemExit("the sweep ended before reporting:\n" + "".join(tail))
            time.sleep(0.05)
        raise SystemExit(f"no metric within {timeout:.0f} s")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def describe(m: dict[str, float]) -> str:
    return (f"first metric after {m['first_metric']:5.1f} s  (header {m.get('header', float('nan')):4.1f} s, "
            f"first trial started {m.get('trial_start', float('nan')):4.1f} s; in the trial: "
            f"{m['trial_setup_s']:.1f} s of setup (model, adapter, and the imports its process had not "
            f"done), {m['trial_total_s'] - m['trial_setup_s']:.1f} s of the rest: one epoch, validation)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-empty", action="store_true", help="skip the empty-cache case")
    ap.add_argument("--runs", type=int, default=3, help="runs of the 'new' case (median reported)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="lorasweep-cold-") as tmp:
        if not args.skip_empty:
            work = Path(tmp) / "empty"
            work.mkdir()
            env = dict(os.environ, LORASWEEP_CACHE=str(Path(tmp) / "empty-cache"))
            empty = time_to_first_metric(work, "cold", env)
            print(f"empty cache:                {describe(empty)}", flush=True)
        # Prime the default cache (assets + tokenised data) so that the other cases are warm.
        from trainables.offline.tiny_lm import ensure_smoke_assets

        ensure_smoke_assets(size="s")
        env = dict(os.environ)
        warmup = Path(tmp) / "warmup"
        warmup.mkdir()
        time_to_first_metric(warmup, "cold", env)  # tokenises into the cache if it must
        new = []
        for i in range(args.runs):
            work = Path(tmp) / f"new-{i}"
            work.mkdir()
            new.append(time_to_first_metric(work, "cold", env))
            print(f"new directory, run {i + 1}:   {describe(new[-1])}", flush=True)
        again = time_to_first_metric(Path(tmp) / "new-0", "again", env)
        print(f"same directory, again:      {describe(again)}", flush=True)

    median = statistics.median(m["first_metric"] for m in new)
    print(f"\ncold start (warm cache, new directory): {median:.1f} s to the first reported metric, "
          f"median of {len(new)} (target < 20 s); a second run in the same directory "
          f"{again['first_metric']:.1f} s" + (f"; with an empty cache {empty['first_metric']:.1f} s"
                                                 if not args.skip_empty else ""))


if __name__ == "__main__":
    main()
