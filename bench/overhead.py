"""Per-trial overhead of a lorasweep sweep over a bare peft training loop.

The same fixed-step E2E fine-tune (tiny GPT-2 from the smoke assets, LoRA r=4 on ``c_attn``,
batch 16, AdamW + linear schedule, validation loss at the end, adapter saved) is run

  (a) through the platform: ``python sweeps/rank_e2e.py`` with N trials (a grid over seeds),
      FIFO scheduler, one trial at a time, MLflow SQLite store, Tune storage, checkpoints;
  (b) as a bare peft loop written here by hand, the N trainings back to back in one fresh
      ``python`` process, as a user would run them without any sweep tool,

back to back in this one run (the machines are noisy: compare only numbers from one run).
Both are timed from process start to exit. The step count is calibrated so that one bare
training takes about ``--seconds``.

    python bench/overhead.py                           # 1 trial of ~60 s (target: ratio <= 1.15)
    python bench/overhead.py --trials 8 --seconds 30   # 8 trials of ~30 s (target: <= 1.25)
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import results, run_smoke_sweep  # noqa: E402

BATCH, MAX_LEN, R, ALPHA, LR, WARMUP = 16, 128, 4, 32, 2e-3, 10


def bare_training(model_dir: str, data_dir: str, steps: int, seed: int, threads: int, out: str) -> dict:
    """A plain transformers + peft fine-tune: what one trial does, without the platform."""
    t0 = time.perf_counter()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup

    from trainables.tasks.e2e import format_mr  # the same input text as the trial: "name : X | Type : Y"

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model = get_peft_model(model, LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=0.1,
                                             target_modules=["c_attn"], fan_in_fan_out=True,
                                             task_type="CAUSAL_LM"))

    def load(name: str) -> list[tuple[list[int], int]]:
        with open(Path(data_dir) / name, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        out_rows = []
        for row in rows:
            prompt = tok(format_mr(row["mr"], "paper"))["input_ids"] + [tok.eos_token_id]
            target = tok(" " + row["ref"])["input_ids"] + [tok.eos_token_id]
            out_rows.append(((prompt + target)[:MAX_LEN], len(prompt)))
        return out_rows

    train, val = load("trainset.csv"), load("devset.csv")[:200]

    def batch(items):
        width = max(len(ids) for ids, _ in items)
        ids = torch.full((len(items), width), tok.eos_token_id)
        labels = torch.full((len(items), width), -100)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for i, (seq, n) in enumerate(items):
            ids[i, :len(seq)] = torch.tensor(seq)
            labels[i, n:len(seq)] = torch.tensor(seq[n:])
            mask[i, :len(seq)] = 1
        return ids, mask, labels

    def loss_of(ids, mask, labels, smoothing):
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                                 ignore_index=-100, label_smoothing=smoothing)

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, WARMUP, steps)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    t_train = time.perf_counter()
    step = 0
    while step < steps:
        for idx in torch.randperm(len(train), generator=gen).split(BATCH):
            loss = loss_of(*batch([train[i] for i in idx]), 0.1)
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            if step == steps:
                break
    train_s = time.perf_counter() - t_train
    model.eval()
    with torch.no_grad():
        val_loss = sum(float(loss_of(*batch(val[i:i + 16]), 0.0)) for i in range(0, len(val), 16))
    model.save_pretrained(out)
    return {"train_s": train_s, "total_s": time.perf_counter() - t0, "val_loss_sum": val_loss}


def run_bare(assets, steps: int, seeds: list[int], threads: int, work: Path) -> tuple[float, list[dict]]:
    """All trainings back to back in one fresh ``python`` process (imports paid once)."""
    code = ("import json, sys; sys.path.insert(0, %r); from bench.overhead import bare_training; "
            "print(json.dumps([bare_training(%r, %r, %d, seed, %d, %r + str(seed)) for seed in %r]))"
            % (str(REPO), str(assets.model_dir), str(assets.data_dir), steps, threads,
               str(work / "bare-"), seeds))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    return elapsed, json.loads(proc.stdout.strip().splitlines()[-1])


def run_platform(steps: int, seeds: list[int], threads: int, work: Path, name: str) -> tuple[float, list[dict]]:
    space = work / f"{name}-space.yaml"
    space.write_text("scientific:\n  seed: {grid: %s}\nfixed:\n  r: %d\n  alpha: %d\n  targets: c_attn\n"
                     % (json.dumps(seeds), R, ALPHA))
    # One validation pass at the end, as the bare loop does (a sweep under ASHA evaluates at
    # every rung; FIFO over a fixed step count needs only the last).
    elapsed = run_smoke_sweep(
        work, name, "--search-space", str(space), "--scheduler", "fifo", "--max-concurrent", "1",
        "--cpus-per-trial", str(threads),
        "--set", f"train.max_steps={steps}", "--set", f"train.eval_every_steps={steps}",
        "--set", "eval.generate=false",
        "--set", f"train.lr={LR}", "--set", f"train.warmup_steps={WARMUP}",
        "--set", f"train.batch_size={BATCH}", "--set", "train.log_every_steps=10")
    trials = results(work, name)
    return elapsed, trials


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=60.0, help="target length of one bare training")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of one training (= CPUs per trial)")
    args = ap.parse_args()

    from trainables.offline.tiny_lm import ensure_smoke_assets

    assets = ensure_smoke_assets(size="s")
    seeds = list(range(1, args.trials + 1))
    with tempfile.TemporaryDirectory(prefix="lorasweep-bench-") as tmp:
        work = Path(tmp)
        # Calibrate: a short bare training gives the step time, then size the real one.
        probe_steps = 100  # enough that the slow first steps do not skew the step time
        probe = bare_training(str(assets.model_dir), str(assets.data_dir), probe_steps, 0, args.threads,
                              str(work / "probe"))
        step_s = probe["train_s"] / probe_steps
        setup_s = probe["total_s"] - probe["train_s"]
        steps = max(10, round((args.seconds - setup_s - 3) / step_s))
        print(f"calibration: {step_s * 1000:.1f} ms/step -> {steps} steps per training", flush=True)

        # Warm what a second sweep finds ready (tokenised data, the MLflow database), then measure.
        run_platform(10, [0], args.threads, work, "warm-up")
        bare_s, bare = run_bare(assets, steps, seeds, args.threads, work)
        plat_s, trials = run_platform(steps, seeds, args.threads, work, "measured")

    n = args.trials
    per_bare = bare_s / n
    print(f"\n{n} training(s) of {steps} steps, batch {BATCH}, {args.threads} thread(s), one at a time")
    print(f"  bare peft loop : {bare_s:7.1f} s total, {per_bare:6.1f} s per training "
          f"(of which training steps {sum(b['train_s'] for b in bare) / n:.1f} s)")
    steps_s = sum(steps * BATCH / float(t["samples_per_s"]) for t in trials) / n
    trial_s = sum(float(t["wall_s"]) for t in trials) / n
    print(f"  lorasweep sweep: {plat_s:7.1f} s total, {plat_s / n:6.1f} s per trial "
          f"(of which training steps {steps_s:.1f} s, the trial function {trial_s:.1f} s)")
    print(f"  overhead per trial: {(plat_s - bare_s) / n:+.1f} s;  ratio sweep/bare = {plat_s / bare_s:.3f}")


if __name__ == "__main__":
    main()
