"""Padding: how much of each batch is padding, and what removing it buys (``train.batching``).

1. The fraction of pad tokens per batch over one epoch, for each ``train.batching`` mode, on
   the length distribution of each causal-LM task's smoke data (tokenised by the task, batch
   size of the study's smoke preset) and on E2E-like lengths. The official E2E release is not
   reachable here; its MR + reference lengths are mostly 20-80 GPT-2 tokens, so the E2E-like
   sample draws 42,061 lengths (the release's training set size) from a log-normal with a
   median of 45 tokens and a log-space sigma of 0.35 (most of it between 20 and 80 tokens:
   the bench prints the share), rounded and clipped to 8-200, batched as the paper's E2E
   runs (8).
2. The E2E smoke trial (``bench/loop_throughput.py``'s: tiny GPT-2, LoRA r=4, batch 16, one
   torch thread) trained for the same steps in each mode, the modes alternating within each round and each
   round on its own seed: useful (non-pad) tokens per second of the training steps, and the
   validation loss after those steps, each as a ratio to the ``random`` (padded) run of the
   same round; medians over rounds.

    python bench/padding.py     # target: grouped >= 1.5x random's useful tokens/s, val loss within 1%
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.loop_throughput import our_trial  # noqa: E402

MODES = ("random", "grouped", "padding_free")
SMOKE_DATA = [("e2e", "rank_e2e", None), ("squad", "squad_grid", None), ("webnlg", "rank_vs_task", "webnlg"),
              ("dart", "rank_vs_task", "dart"), ("guanaco", "qlora_guanaco", None)]


def smoke_trial(study: str, part: str | None) -> object:
    """The trial config of a study's smoke preset (one part), as the sweep would plan it."""
    from sweeps.cli import build_configs, build_parser
    from sweeps.study_file import load_study
    from sweeps.planning import plan_sweep
    from trainables.config import TrialConfig
    from trainables.schema import from_dict

    spec = load_study(study)
    argv = ["--preset", "smoke", *([f"--{spec.part_flag}", part] if part else [])]
    (cfg,) = build_configs(spec, build_parser(spec).parse_args(argv))
    return from_dict(TrialConfig, {**plan_sweep(cfg, prepare=False).base, "seed": 0})


def with_settings(cfg: object, *, seed: int | None = None, **train: object) -> object:
    """``cfg`` with other ``train`` settings (and seed)."""
    from trainables.config import TrialConfig
    from trainables.schema import deep_merge, from_dict, to_dict

    return from_dict(TrialConfig, deep_merge(to_dict(cfg), {"train": train, **({"seed": seed} if seed else {})}))


def e2e_like(n: int = 42_061, seed: int = 0) -> object:
    """Token sequences of E2E-like lengths (module docstring), half prompt, half target."""
    import numpy as np

    from trainables.tasks.causal_lm import TokenizedExamples

    rng = np.random.default_rng(seed)
    lengths = np.clip(np.rint(np.exp(rng.normal(np.log(45), 0.35, n))), 8, 200).astype(int)
    seqs = [rng.integers(0, 1000, n_tok).tolist() for n_tok in lengths]
    examples, _ = TokenizedExamples.build([s[:len(s) // 2] for s in seqs], [s[len(s) // 2:] for s in seqs],
                                          max_length=512)
    return examples


def pad_fractions(task: object, train: object, cfg: object, tokenizer: object, mode: str) -> list[float]:
    """Each batch's share of pad tokens over one epoch of the mode's real loader and collate."""
    from trainables.batching import batch_counts, train_batches
    from trainables.session import LocalSession
    from trainables.tasks.base import Prepared

    loader = train_batches(task, Prepared(train=train, val=None, test=None), cfg, tokenizer, mode=mode,
                           session=LocalSession())
    return [1 - batch_counts(b)[1] / b["input_ids"].numel() for b in loader]


def padding_table() -> None:
    import numpy as np

    from trainables.tasks.registry import get_task
    from trainables.models import load_tokenizer

    print(f"{'data':<22} {'examples':>8} {'batch':>5}  " + "  ".join(f"{m:>22}" for m in MODES))
    print(f"{'':<22} {'':>8} {'':>5}  " + "  ".join(f"{'pad/batch: mean (max)':>22}" for _ in MODES))
    rows = []
    for name, study, part in SMOKE_DATA:
        cfg = smoke_trial(study, part)
        task = get_task(cfg.task)
        rows.append((f"{name} smoke", task, task.load_prepared(task.prepare(cfg, progress=False), cfg).train, cfg))
    like = e2e_like()
    rows.append(("E2E-like lengths", get_task("e2e"), like, with_settings(rows[0][3], batch_size=8)))
    for label, task, train, cfg in rows:
        tokenizer = load_tokenizer(cfg)
        cells = []
        for mode in MODES:
            fr = pad_fractions(task, train, cfg, tokenizer, mode)
            cells.append(f"{statistics.mean(fr):.3f} ({max(fr):.3f})")
        print(f"{label:<22} {len(train):>8} {cfg.train.batch_size:>5}  " + "  ".join(f"{c:>22}" for c in cells),
              flush=True)
    n = like.lengths()
    print(f"E2E-like sample: median {np.median(n):.0f} tokens, {np.mean((n >= 20) & (n <= 80)):.1%} "
          f"of it 20-80 tokens")


def throughput(steps: int, rounds: int, modes: tuple[str, ...]) -> None:
    from trainables.loop import run_loop
    from trainables.session import LocalSession
    from trainables.tasks.registry import get_task

    base = our_trial(steps)
    prepared = get_task(base.task).prepare(base, progress=False)
    tok_ratio: dict[str, list[float]] = {m: [] for m in modes}
    val_ratio: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds):
        order = modes[r % len(modes):] + modes[:r % len(modes)]
        got = {}
        for mode in order:
            last = run_loop(with_settings(base, batching=mode, seed=r + 1), LocalSession(), prepared=prepared)
            got[mode] = (last["tokens_per_s"], last["val_loss"])
        for mode in modes:
            tok_ratio[mode].append(got[mode][0] / got["random"][0])
            val_ratio[mode].append(got[mode][1] / got["random"][1])
        print(f"round {r + 1} (seed {r + 1}): " + ", ".join(
            f"{m} {got[m][0]:,.0f} tok/s val {got[m][1]:.4f}" for m in modes), flush=True)
    print(f"\nE2E smoke, {steps} steps x batch {base.train.batch_size}, {rounds} rounds, medians of the ratio to random:")
    for mode in modes[1:]:
        ratios = sorted(tok_ratio[mode])
        print(f"  {mode:<13} useful tokens/s x{statistics.median(ratios):.3f} ({ratios[0]:.3f}-{ratios[-1]:.3f})   "
              f"val loss x{statistics.median(val_ratio[mode]):.4f} "
              f"({min(val_ratio[mode]):.4f}-{max(val_ratio[mode]):.4f})")
    print("target: grouped useful tokens/s >= 1.5x random, val loss within 1% (ratio 0.99-1.01)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=146, help="training steps per run (73 = one epoch of the smoke data)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--modes", default=",".join(MODES), help="the modes trained (random first)")
    ap.add_argument("--skip-padding", action="store_true", help="only the throughput runs")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if not args.skip_padding:
        padding_table()
        print()
    modes = tuple(m for m in args.modes.split(",") if m)
    if modes[0] != "random" or not set(modes) <= set(MODES):
        ap.error(f"--modes: random first, then any of {', '.join(MODES[1:])}")
    throughput(args.steps, args.rounds, modes)


if __name__ == "__main__":
    main()
