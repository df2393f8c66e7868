"""Fractional-GPU packing: trials per hour with one trial per GPU vs several trials sharing one.

Small LoRA trials leave most of a large GPU idle. The same sweep (``--trials`` fixed-step E2E
fine-tunes, a grid over seeds, FIFO, no generation) runs twice through
``sweeps/rank_e2e.py`` as a user runs it, back to back in this one run:

  (a) ``--gpus-per-trial 1``: Ray runs one trial per GPU at a time;
  (b) ``--gpus-per-trial 1/pack``: ``pack`` trials share each GPU (Ray's fractional GPUs).

It prints trials/hour of both and their ratio. CPUs are split so that the packed trials do not
wait for cores (``--cpus-per-trial``). Needs a CUDA host; on a CPU host it says so and exits.

    python bench/gpu_packing.py                     # 8 trials, 4 per GPU
    python bench/gpu_packing.py --size l --pack 8
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import results, run_smoke_sweep  # noqa: E402


def sweep(work: Path, name: str, *, trials: int, steps: int, gpus: float, cpus: float, size: str) -> float:
    space = work / f"{name}-space.yaml"
    space.write_text(f"scientific:\n  seed: {{grid: {json.dumps(list(range(trials)))}}}\n"
                     "fixed:\n  r: 4\n  alpha: 32\n  targets: qv\n")
    model = f"smoke:gpt2-{size}"
    return run_smoke_sweep(
        work, name, "--search-space", str(space), "--scheduler", "fifo", "--model", model,
        "--gpus-per-trial", f"{gpus:g}", "--cpus-per-trial", f"{cpus:g}",
        "--set", f"train.max_steps={steps}", "--set", f"train.eval_every_steps={steps}",
        "--set", "eval.generate=false", "--set", "train.precision=bf16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--pack", type=int, default=4, help="trials sharing one GPU in (b)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--size", choices=("s", "m", "l"), default="l", help="smoke GPT-2 size")
    args = ap.parse_args()

    import os

    import torch

    if not torch.cuda.is_available():
        raise SystemExit("bench/gpu_packing.py needs a CUDA GPU (none here); it is documented in "
                         "the README's Performance section and run on GPU hosts")
    gpus = torch.cuda.device_count()
    cpus = os.cpu_count() or 1
    per_trial_cpus = max(1.0, (cpus - 1) // (gpus * args.pack))
    with tempfile.TemporaryDirectory(prefix="lorasweep-bench-") as tmp:
        work = Path(tmp)
        sweep(work, "warm-up", trials=1, steps=10, gpus=1, cpus=per_trial_cpus, size=args.size)
        whole = sweep(work, "one-per-gpu", trials=args.trials, steps=args.steps, gpus=1,
                      cpus=per_trial_cpus, size=args.size)
        packed = sweep(work, "packed", trials=args.trials, steps=args.steps, gpus=1 / args.pack,
                       cpus=per_trial_cpus, size=args.size)
        done = [len(results(work, n)) for n in ("one-per-gpu", "packed")]

    rate = {k: 3600 * args.trials / s for k, s in (("whole", whole), ("packed", packed))}
    print(f"\n{args.trials} trials of {args.steps} steps (smoke GPT-2 {args.size}, bf16) on {gpus} "
          f"GPU(s), {per_trial_cpus:g} CPUs per trial; trials recorded: {done}")
    print(f"  1 trial per GPU     : {whole:7.1f} s  {rate['whole']:7.0f} trials/hour")
    print(f"  {args.pack} trials per GPU    : {packed:7.1f} s  {rate['packed']:7.0f} trials/hour")
    print(f"  packing speed-up: x{rate['packed'] / rate['whole']:.2f}")


if __name__ == "__main__":
    main()
