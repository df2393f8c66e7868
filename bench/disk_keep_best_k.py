"""Disk used by a 50-trial sweep's checkpoints under the sweep-wide keep-best-k.

The smoke rank study on a 50-point grid: r in {1, 2, 4, 8, 16} x lr in ten values from 1e-4 to
5e-3, one epoch of 64 training examples (4 optimizer steps), no generation, FIFO (every trial
runs to its end), two 1-CPU trials at a time, ``--keep-best-k 3``. Each trial checkpoints at its
report: the adapter weights (peft ``save_pretrained``), the optimizer and scheduler state and
the trial config; never the base model.

After the sweep the script walks Tune storage and prints: the bytes in it (total, checkpoints,
the rest), each kept checkpoint's bytes, what keeping every trial's checkpoint would have used
(kept + what keep-best-k deleted, as the sweep reports it), and the base model's size for
comparison. It checks that exactly k checkpoints remain (FIFO: every trial finished, so there
is no unfinished trial's latest checkpoint) and that they belong to the k best trials by
validation loss (results CSV).

    python bench/disk_keep_best_k.py [--k 3]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import results, smoke_sweep_cmd

LRS = [1e-4, 2e-4, 3e-4, 5e-4, 7e-4, 1e-3, 1.5e-3, 2e-3, 3e-3, 5e-3]
SPACE = f"""\
description: bench/disk_keep_best_k.py grid (50 trials)
scientific:
  r: {{grid: [1, 2, 4, 8, 16]}}
nuisance:
  lr: {{grid: {LRS}}}
fixed:
  alpha: 32
  targets: qv
"""


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lorasweep-disk-") as tmp:
        work = Path(tmp)
        (work / "space.yaml").write_text(SPACE)
        name = "disk"
        start = time.perf_counter()
        proc = subprocess.run(smoke_sweep_cmd(
            work, name, "--search-space", str(work / "space.yaml"), "--scheduler", "fifo",
            "--keep-best-k", str(args.k), "--set", "train.epochs=1", "--set", "data.train_limit=64",
            "--set", "data.val_limit=16", "--set", "eval.generate=false", "--set", "train.warmup_steps=1"),
            cwd=work, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"sweep failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        rows = results(work, name)
        freed = re.search(r"checkpoints: keep_best_k=\d+; (\d+) other trial\(s\)' adapter checkpoints "
                          r"deleted from Tune storage \(([\d.]+) MiB freed\)", proc.stdout)
        assert freed, proc.stdout[-2000:]
        n_deleted, deleted_mib = int(freed.group(1)), float(freed.group(2))

        exp = work / "ray_results" / name
        ckpts = sorted(p for p in exp.glob("*/checkpoint_*") if p.is_dir())
        total, in_ckpts = tree_bytes(exp), sum(tree_bytes(c) for c in ckpts)
        adapters = [tree_bytes(c / "adapter") for c in ckpts]
        from trainables.offline.registry import resolve_smoke

        base = Path(resolve_smoke("smoke:gpt2-s", kind="model"))
        base_bytes = sum(p.stat().st_size for p in base.glob("*.safetensors"))

        done = [r for r in rows if r["status"] == "completed"]
        best = sorted(done, key=lambda r: float(r["val_loss"]))[:args.k]
        # Trial directories are named tune_trial_<trial id>_<n>_<params>_<date>.
        kept_match = all(any(f"_{r['trial_id']}_" in c.parent.name for c in ckpts) for r in best)

        print(f"{len(rows)} trials ({len(done)} completed) in {elapsed:.0f} s; keep_best_k={args.k}")
        print(f"Tune storage: {total / 2**20:.2f} MiB in all; {len(ckpts)} checkpoint(s) "
              f"{in_ckpts / 2**10:.1f} KiB, the rest (results, params, experiment state) "
              f"{(total - in_ckpts) / 2**20:.2f} MiB")
        for c, a in zip(ckpts, adapters):
            print(f"  kept {c.parent.name[:40]}/{c.name}: {tree_bytes(c) / 2**10:.1f} KiB "
                  f"(adapter {a / 2**10:.1f} KiB)")
        every = in_ckpts + deleted_mib * 2**20
        print(f"keeping every trial's checkpoint: {every / 2**20:.2f} MiB ({len(ckpts) + n_deleted} "
              f"checkpoints); keep-best-{args.k}: {in_ckpts / 2**20:.3f} MiB "
              f"({in_ckpts / every:.1%} of it); {n_deleted} deleted, {deleted_mib:.2f} MiB freed")
        print(f"the base model (not in any checkpoint): {base_bytes / 2**10:.0f} KiB of weights")
        ok = len(ckpts) == args.k and n_deleted == len(rows) - args.k and kept_match
        print(f"check: exactly {args.k} checkpoints remain, those of the {args.k} best trials by "
              f"val loss: {'yes' if ok else 'NO'}")
        if not ok:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
