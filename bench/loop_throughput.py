"""The training loop itself: samples/s of lorasweep's loop vs a bare peft loop.

Same tiny GPT-2, LoRA r=4 on ``c_attn``, batch 16, the same E2E smoke data and input format,
AdamW + linear schedule, label smoothing 0.1, in this one process and on the same number of
torch threads. The two loops alternate (bare, ours, bare, ours, ...) so that the machine's
drift hits both; each figure counts training steps only (data loading, forward, backward,
optimizer; not model loading or the validation pass).

    python bench/loop_throughput.py            # target: ours / bare >= 0.95
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.overhead import ALPHA, BATCH, LR, R, WARMUP, bare_training  # noqa: E402


def our_trial(steps: int):
    """The smoke preset's trial with the bare loop's settings, resolved as a sweep would."""
    from search_spaces import apply_hyperparameters
    from sweeps.cli import build_config, build_parser
    from sweeps.study_file import load_presets
    from sweeps.planning import plan_sweep
    from trainables.config import TrialConfig
    from trainables.schema import from_dict

    presets, default = load_presets("rank_e2e")
    args = build_parser("rank_e2e", presets, default, "").parse_args(["--preset", "smoke"])
    plan = plan_sweep(build_config("rank_e2e", args, presets), prepare=False)
    base = apply_hyperparameters(plan.base, {
        "adapter.r": R, "adapter.alpha": ALPHA, "adapter.targets": "c_attn", "train.lr": LR,
        "train.warmup_steps": WARMUP, "train.batch_size": BATCH, "train.max_steps": steps,
        "train.eval_every_steps": steps, "eval.generate": False, "seed": 1})
    return from_dict(TrialConfig, base)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from trainables.loop import run_loop
    from trainables.offline.tiny_lm import ensure_smoke_assets
    from trainables.session import LocalSession
    from trainables.tasks.registry import get_task

    torch.set_num_threads(args.threads)
    assets = ensure_smoke_assets(size="s")
    cfg = our_trial(args.steps)
    prepared = get_task(cfg.task).prepare(cfg, progress=False)
    bare, ours = [], []
    with tempfile.TemporaryDirectory(prefix="lorasweep-loop-") as tmp:
        for i in range(args.rounds):
            b = bare_training(str(assets.model_dir), str(assets.data_dir), args.steps, 1, args.threads,
                              str(Path(tmp) / f"bare-{i}"))
            bare.append(args.steps * BATCH / b["train_s"])
            last = run_loop(cfg, LocalSession(), prepared=prepared)
            ours.append(last["samples_per_s"])
            print(f"round {i + 1}: bare {bare[-1]:6.1f} samples/s, lorasweep {ours[-1]:6.1f} samples/s", flush=True)
    ratio = statistics.median(o / b for o, b in zip(ours, bare))
    print(f"\n{args.steps} steps x {args.rounds} rounds, batch {BATCH}, {args.threads} thread(s): "
          f"median ratio lorasweep / bare = {ratio:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
