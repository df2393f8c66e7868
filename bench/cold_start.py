"""Cold start: from ``python sweeps/rank_e2e.py --preset smoke`` to the first reported metric.

The clock starts when the command is launched and stops when the first trial's first result
(a validation loss) lands in Tune's storage. The sweep is then interrupted (Ctrl-C, which
the CLI turns into a clean stop). Two cases are timed:

  warm  - the smoke assets and the tokenised data are cached (every run after the first);
  empty - a new, empty cache directory: the tiny GPT-2, its tokenizer and the synthetic data
          are built first (a once-per-machine cost; reported, not the target).

    python bench/cold_start.py            # target: warm < 20 s
"""

from __future__ import annotations

import argparse
import glob
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import smoke_sweep_cmd  # noqa: E402


def time_to_first_metric(work: Path, env: dict[str, str], timeout: float = 300.0) -> float:
    storage = work / "ray_results"
    cmd = smoke_sweep_cmd(work, "cold")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        while time.perf_counter() - start < timeout:
            for path in glob.glob(str(storage / "cold" / "*" / "result.json")):
                if os.path.getsize(path) > 0:
                    elapsed = time.perf_counter() - start
                    return elapsed
            if proc.poll() is not None:
                raise SystemExit(f"the sweep ended before reporting:\n{proc.stderr.read()[-2000:]}")
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-empty", action="store_true", help="time only the warm-cache start")
    args = ap.parse_args()

    results = {}
    with tempfile.TemporaryDirectory(prefix="lorasweep-cold-") as tmp:
        cases = [("warm", os.environ.get("LORASWEEP_CACHE"))]
        if not args.skip_empty:
            cases.insert(0, ("empty", str(Path(tmp) / "empty-cache")))
        # Prime the default cache (assets + tokenised data) so that "warm" is warm.
        from trainables.offline.tiny_lm import ensure_smoke_assets

        ensure_smoke_assets(size="s")
        for label, cache in cases:
            for attempt in (1, 2) if label == "warm" else (1,):
                work = Path(tmp) / f"{label}-{attempt}"
                work.mkdir()
                env = dict(os.environ)
                if cache:
                    env["LORASWEEP_CACHE"] = cache
                seconds = time_to_first_metric(work, env)
                # The first warm run also tokenises the data into the cache; the second is
                # what a user sees on every later run.
                results[label] = seconds
                print(f"{label:5s} cache, run {attempt}: first metric after {seconds:5.1f} s", flush=True)
    print(f"\ncold start (warm cache): {results['warm']:.1f} s to the first reported metric "
          f"(target < 20 s)" + (f"; with an empty cache {results['empty']:.1f} s" if "empty" in results else ""))


if __name__ == "__main__":
    main()
