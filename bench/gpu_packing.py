"""Fractional-GPU packing: trials per hour with one trial per GPU vs several trials sharing one.

Small LoRA trials leave most of a large GPU idle. The same sweep (``--trials`` fixed-step E2E
fine-tunes, a grid over seeds, FIFO, no generation) runs twice through
``sweeps/rank_e2e.py`` as a user runs it, back to back in this one run:

  (a) ``--gpus-per-trial 1``: Ray runs one trial per GPU at a time;
  (b) ``--gpus-per-trial 1/pack``: ``pack`` trials share each GPU (Ray's fractional GPUs).

It prints trials/hour of both and their ratio. CPUs are split so that the packed trials do not
wait for cores (``--cpus-per-trial``). Needs a CUDA host; on a CPU host it says so and exits,
unless ``--cpu``: the same two sweeps with CPUs in place of GPUs (one trial on every CPU, then
``pack`` trials sharing them), a check that the script runs, not a measurement of packing.

    python bench/gpu_packing.py                     # 8 trials, 4 per GPU
    python bench/gpu_packing.py --size l --pack 8
    python bench/gpu_packing.py --cpu --trials 2 --pack 2 --steps 2 --size s --json out.json
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


def sweep(work: Path, name: str, *, trials: int, steps: int, gpus: float, cpus: float, size: str,
          precision: str = "bf16") -> float:
    space = work / f"{name}-space.yaml"
    space.write_text(f"scientific:\n  seed: {{grid: {json.dumps(list(range(trials)))}}}\n"
                     "fixed:\n  r: 4\n  alpha: 32\n  targets: qv\n")
    model = f"smoke:gpt2-{size}"
    return run_smoke_sweep(
        work, name, "--search-space", str(space), "--scheduler", "fifo", "--model", model,
        "--gpus-per-trial", f"{gpus:g}", "--cpus-per-trial", f"{cpus:g}",
        "--set", f"train.max_steps={steps}", "--set", f"train.eval_every_steps={steps}",
        "--set", "eval.generate=false", "--set", f"train.precision={precision}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--pack", type=int, default=4, help="trials sharing one GPU in (b)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--size", choices=("s", "m", "l"), default="l", help="smoke GPT-2 size")
    ap.add_argument("--cpu", action="store_true", help="CPUs in place of GPUs: a check of the script")
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args()

    import os

    import torch

    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit("bench/gpu_packing.py needs a CUDA GPU (none here; --cpu checks the script on "
                         "CPUs); it is documented in the README's Performance section and run on GPU hosts")
    gpus = 0 if args.cpu else torch.cuda.device_count()
    cpus = os.cpu_count() or 1
    if args.cpu:  # one trial on every CPU, then pack trials sharing them
        whole_res, packed_res = (0, float(cpus)), (0, cpus / args.pack)
    else:
        per_trial_cpus = max(1.0, (cpus - 1) // (gpus * args.pack))
        whole_res, packed_res = (1, per_trial_cpus), (1 / args.pack, per_trial_cpus)
    common = {"trials": args.trials, "steps": args.steps, "size": args.size,
              "precision": "fp32" if args.cpu else "bf16"}
    with tempfile.TemporaryDirectory(prefix="lorasweep-bench-") as tmp:
        work = Path(tmp)
        if not args.cpu:  # the first sweep's imports and CUDA start-up are not the comparison's
            sweep(work, "warm-up", trials=1, steps=10, gpus=1, cpus=whole_res[1], size=args.size)
        whole = sweep(work, "one-per-gpu", gpus=whole_res[0], cpus=whole_res[1], **common)
        packed = sweep(work, "packed", gpus=packed_res[0], cpus=packed_res[1], **common)
        done = [len(results(work, n)) for n in ("one-per-gpu", "packed")]

    rate = {k: 3600 * args.trials / s for k, s in (("whole", whole), ("packed", packed))}
    device = "CPU (a check of the script)" if args.cpu else f"{gpus} GPU(s)"
    print(f"\n{args.trials} trials of {args.steps} steps (smoke GPT-2 {args.size}, {common['precision']}) on "
          f"{device}, {whole_res[1]:g} / {packed_res[1]:g} CPUs per trial; trials recorded: {done}")
    print(f"  1 trial per GPU     : {whole:7.1f} s  {rate['whole']:7.0f} trials/hour")
    print(f"  {args.pack} trials per GPU    : {packed:7.1f} s  {rate['packed']:7.0f} trials/hour")
    print(f"  packing speed-up: x{rate['packed'] / rate['whole']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "device": device, "trials": args.trials, "steps": args.steps, "pack": args.pack,
            "trials_recorded": done, "seconds_one_per_gpu": whole, "seconds_packed": packed,
            "trials_per_hour_one_per_gpu": rate["whole"], "trials_per_hour_packed": rate["packed"],
            "speedup": rate["packed"] / rate["whole"]}, indent=2))


if __name__ == "__main__":
    main()
