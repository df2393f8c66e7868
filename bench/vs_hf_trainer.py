"""lorasweep vs ``transformers.Trainer.hyperparameter_search(backend="ray")`` on one sweep.

What a user would pick instead of lorasweep: HF Trainer's built-in Ray Tune search. Both run
the same 4-trial grid, r in {4, 16} x lr in {2e-4, 2e-3}, on the same tiny GPT-2 (LoRA on
``c_attn``, alpha 32, dropout 0.1), the same smoke E2E data and input format (loss on the
text only), batch 16, 3 epochs, validation loss after each epoch, label smoothing 0.1, AdamW
with a linear schedule and 10 warmup steps, two 1-CPU trials at a time. Each side is a fresh
``python`` process timed from start to exit, back to back in this one run.

    python bench/vs_hf_trainer.py        # target: lorasweep wall time / HF's <= 0.8

lorasweep records every trial in MLflow (parent + child runs, metrics, adapters); the HF side
records nothing beyond Ray's own result files (``report_to="none"``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import run_smoke_sweep  # noqa: E402

RANKS, LRS, EPOCHS, BATCH, ALPHA, WARMUP, VAL = (4, 16), (2e-4, 2e-3), 3, 16, 32, 10, 200


def hf_search(work: Path) -> dict:
    """The HF side: Trainer + peft + DataCollatorForSeq2Seq + hyperparameter_search(ray)."""
    import csv

    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from ray import tune
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer,
                              TrainingArguments)

    from trainables.offline.tiny_lm import ensure_smoke_assets
    from trainables.tasks.e2e import format_mr  # the same input text as lorasweep's trials

    assets = ensure_smoke_assets(size="s")
    tok = AutoTokenizer.from_pretrained(assets.model_dir)
    tok.pad_token = tok.eos_token

    def load(name: str, limit: int | None = None) -> Dataset:
        with open(assets.data_dir / name, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))[:limit]
        feats = {"input_ids": [], "labels": []}
        for row in rows:
            prompt = tok(format_mr(row["mr"], "paper"))["input_ids"] + [tok.eos_token_id]
            target = tok(" " + row["ref"])["input_ids"] + [tok.eos_token_id]
            ids = (prompt + target)[:128]
            feats["input_ids"].append(ids)
            feats["labels"].append(([-100] * len(prompt) + target)[:128])
        return Dataset.from_dict(feats)

    train, val = load("trainset.csv"), load("devset.csv", VAL)
    model_dir = str(assets.model_dir)

    def model_init(trial):
        r = int((trial or {}).get("r", RANKS[0]))
        base = AutoModelForCausalLM.from_pretrained(model_dir)
        return get_peft_model(base, LoraConfig(r=r, lora_alpha=ALPHA, lora_dropout=0.1, target_modules=["c_attn"],
                                               fan_in_fan_out=True, task_type="CAUSAL_LM"))

    args = TrainingArguments(
        output_dir=str(work / "hf"), num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=16, eval_strategy="epoch", save_strategy="no", logging_steps=5,
        learning_rate=LRS[0], weight_decay=0.01, warmup_steps=WARMUP, lr_scheduler_type="linear",
        label_smoothing_factor=0.1, report_to="none", use_cpu=True, disable_tqdm=True, seed=1)
    trainer = Trainer(model_init=model_init, args=args, train_dataset=train, eval_dataset=val,
                      data_collator=DataCollatorForSeq2Seq(tok, padding=True))
    best = trainer.hyperparameter_search(
        hp_space=lambda _: {"r": tune.grid_search(list(RANKS)), "learning_rate": tune.grid_search(list(LRS))},
        backend="ray", n_trials=1, direction="minimize", compute_objective=lambda m: m["eval_loss"],
        resources_per_trial={"cpu": 1}, storage_path=str(work / "hf_ray"), name="hf", verbose=1)
    return {"best_eval_loss": best.objective, "best": best.hyperparameters}


def run_ours(work: Path) -> float:
    (work / "space.yaml").write_text(
        "scientific:\n  r: {grid: %s}\n  lr: {grid: %s}\nfixed:\n  alpha: %d\n  targets: c_attn\n"
        % (json.dumps(list(RANKS)), json.dumps(list(LRS)), ALPHA))
    return run_smoke_sweep(
        work, "ours", "--search-space", str(work / "space.yaml"), "--scheduler", "fifo",
        "--cpus-per-trial", "1", "--set", f"train.epochs={EPOCHS}", "--set", f"train.batch_size={BATCH}",
        "--set", f"train.warmup_steps={WARMUP}", "--set", f"data.val_limit={VAL}",
        "--set", "eval.generate=false")


def run_hf(work: Path) -> tuple[float, dict]:
    code = (f"import json, sys; from pathlib import Path; sys.path.insert(0, {str(REPO)!r}); "
            f"from bench.vs_hf_trainer import hf_search; print('RESULT', json.dumps(hf_search(Path({str(work)!r}))))")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"HF hyperparameter_search failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return elapsed, json.loads(line[len("RESULT "):])


def count_mlflow_trials(work: Path) -> tuple[int, int]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlruns.db'}")
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps, filter_string="tags.`lorasweep.kind` = 'trial'")
    complete = [r for r in runs if "val_loss" in r.data.metrics and "adapter.r" in r.data.params
                and client.list_artifacts(r.info.run_id, "adapter")]
    return len(runs), len(complete)


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    from trainables.offline.tiny_lm import ensure_smoke_assets

    ensure_smoke_assets(size="s")
    hf_total = ours_total = 0.0
    # A B B A: drift of the machine's speed over the run hits both sides alike.
    for i, side in enumerate(("hf", "ours", "ours", "hf")):
        with tempfile.TemporaryDirectory(prefix="lorasweep-vs-hf-") as tmp:
            work = Path(tmp)
            if side == "hf":
                seconds, hf = run_hf(work)
                hf_total += seconds
                print(f"run {i + 1} HF Trainer.hyperparameter_search(ray): {seconds:6.1f} s, best trial "
                      f"{hf['best']}", flush=True)
            else:
                seconds = run_ours(work)
                ours_total += seconds
                n_runs, n_complete = count_mlflow_trials(work)
                print(f"run {i + 1} lorasweep                            : {seconds:6.1f} s, {n_runs} trial "
                      f"runs in MLflow, {n_complete} with metrics, params and adapter", flush=True)
    print(f"\nlorasweep / HF = {ours_total / hf_total:.3f} (target <= 0.8)")


if __name__ == "__main__":
    main()
