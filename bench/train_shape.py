"""What a trial's shape costs at start-up: a one-process trial (``function``) vs a 2-worker Ray
Train group (``train``, DDP over gloo on CPU), the same one-trial E2E smoke sweep run as a user
runs it, the two shapes alternating over ``--rounds`` so drift hits both alike.

For each trial, from Tune's own record of it (``result.json`` in the trial's directory):

* to first report: the trial's ``time_total_s`` at its first report (from the trial's start in
  its Tune actor to that report: for ``train``, the controller, the workers' placement group,
  their processes, imports and process group, then the loop);
* before the loop: that minus the report's ``wall_s`` (the loop's own time, from its start):
  what the shape adds before any lorasweep code of the trial runs;
* loop setup: the report's ``setup_s`` (data, model, adapter, DDP wrapping).

    python bench/train_shape.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import run_smoke_sweep  # noqa: E402

SHAPES = {"function (1 process)": ["--cpus-per-trial", "1"],
          "train (2 workers)": ["--workers-per-trial", "2", "--cpus-per-trial", "2"]}


def first_report(work: Path, name: str) -> dict[str, float]:
    (path,) = (work / "ray_results" / name).glob("tune_trial_*/result.json")
    first = json.loads(path.read_text().splitlines()[0])
    return {"to first report": first["time_total_s"], "before the loop": first["time_total_s"] - first["wall_s"],
            "loop setup": first["setup_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    measured: dict[str, list[dict[str, float]]] = {shape: [] for shape in SHAPES}
    with tempfile.TemporaryDirectory(prefix="lorasweep-bench-") as tmp:
        work = Path(tmp)
        space = work / "space.yaml"
        space.write_text("scientific:\n  r: {grid: [4]}\nfixed: {alpha: 32, targets: qv, lr: 2.0e-3}\n")
        for round_ in range(args.rounds):
            for i, (shape, flags) in enumerate(SHAPES.items()):
                name = f"shape-{round_}-{i}"
                run_smoke_sweep(work, name, "--search-space", str(space), "--scheduler", "fifo",
                                "--set", "train.max_steps=2", "--set", "eval.generate=false",
                                "--set", "data.val_limit=16", *flags)
                measured[shape].append(first_report(work, name))
                print(f"round {round_ + 1} {shape:22s} " + "  ".join(
                    f"{k} {v:5.1f} s" for k, v in measured[shape][-1].items()), flush=True)
    print(f"\nmedians of {args.rounds} round(s), one-trial E2E smoke sweep (2 steps):")
    for shape, rows in measured.items():
        print(f"  {shape:22s} " + "  ".join(f"{k} {statistics.median(r[k] for r in rows):5.1f} s"
                                            for k in rows[0]))


if __name__ == "__main__":
    main()
