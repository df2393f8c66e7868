"""Training throughput on an accelerator: tokens/s and model FLOPs utilisation (MFU) of our
training loop for GPT-2 medium with LoRA (the E2E study's model), in fp32 and bf16 autocast,
with torch's multi-tensor (foreach) AdamW and its fused AdamW kernel.

Every configuration runs the real trial loop (``trainables.loop.run_loop``, one process, one
device) on the same data (the synthetic E2E training set in the official CSV format), batch and
step count; the configurations alternate over ``--rounds`` so drift hits them all alike. The
model is GPT-2 medium built from its config (the weights do not change the speed: 354.8M
parameters, 24 layers, d=1024), or ``--model NAME|PATH`` for real weights.

FLOPs per trained token for LoRA: the frozen base costs a forward (2N) and the activation
gradients (2N), but no weight gradients; the adapter costs 6 N_adapter; attention scores add
12 L d T (PaLM, appendix B). MFU = achieved FLOP/s over the device's dense bf16 peak (a table
of common accelerators, or ``--peak-tflops``). Tokens are the non-padding tokens the loop
counts, so the MFU is a lower bound (padding is computed too).

    python bench/gpu_throughput.py                       # on a GPU host
    python bench/gpu_throughput.py --arch tiny --device cpu --steps 10   # a check of the script
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ARCHS = {  # GPT2Config fields
    "medium": {"n_layer": 24, "n_embd": 1024, "n_head": 16},
    "small": {"n_layer": 12, "n_embd": 768, "n_head": 12},
    "tiny": {"n_layer": 2, "n_embd": 64, "n_head": 4},
}

# Dense bf16 tensor-core peaks (vendor data sheets), in TFLOP/s.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
                    "A10G": 70.0, "A10": 125.0, "RTX 4090": 165.0, "RTX 3090": 71.0}

CONFIGS = (  # (label, precision, fused optimizer)
    ("fp32, AdamW foreach", "fp32", False),
    ("bf16 autocast, AdamW foreach", "bf16", False),
    ("bf16 autocast, AdamW fused", "bf16", True),
)


def build_model_dir(arch: str, out: Path) -> Path:
    """GPT-2 of ``arch`` from its config, saved with the smoke tokenizer (ids fit any vocab)."""
    import shutil

    from transformers import GPT2Config, GPT2LMHeadModel

    from trainables.offline.tiny_lm import ensure_smoke_assets

    assets = ensure_smoke_assets(size="s")
    config = GPT2Config(**ARCHS[arch], n_positions=1024)
    GPT2LMHeadModel(config).save_pretrained(out)
    for f in Path(assets.model_dir).iterdir():
        if "token" in f.name or f.name == "special_tokens_map.json":
            shutil.copy(f, out / f.name)
    return out


def trial_config(model: str, data: str, *, device_batch: int, steps: int, precision: str, fused: bool):
    from trainables.config import TrialConfig
    from trainables.schema import from_dict

    return from_dict(TrialConfig, {
        "task": "e2e", "seed": 1,
        "model": {"name_or_path": model},
        "data": {"source": data, "max_length": 128, "val_limit": 16},
        "adapter": {"r": 4, "alpha": 32, "targets": "qv"},
        "train": {"batch_size": device_batch, "max_steps": steps, "eval_every_steps": steps,
                  "warmup_steps": 0, "lr": 2e-4, "precision": precision, "fused_optimizer": fused,
                  "log_every_steps": steps},
        "eval": {"generate": False},
    })


def flops_per_token(model_dir: str, report: dict) -> float:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model_dir)
    n_base = report["total_params"] - report["trainable_params"]
    n_adapter = report["trainable_params"]
    seq = 128
    return 4 * n_base + 6 * n_adapter + 12 * cfg.n_layer * cfg.n_embd * seq


def peak_flops(device, override: float | None) -> tuple[float | None, str]:
    import torch

    if override:
        return override * 1e12, f"--peak-tflops {override}"
    if device.type != "cuda":
        return None, "no peak for CPUs: MFU not computed"
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in name:
            return tflops * 1e12, f"{name}: {tflops:g} TFLOP/s dense bf16"
    return None, f"{name}: peak unknown, pass --peak-tflops"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=sorted(ARCHS), default="medium")
    ap.add_argument("--model", help="a hub name or local directory instead of --arch")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--peak-tflops", type=float)
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args()

    import torch

    from trainables.loop import run_loop
    from trainables.offline.tiny_lm import ensure_smoke_assets
    from trainables.session import LocalSession
    from trainables.tasks.registry import get_task

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench/gpu_throughput.py: no CUDA device here; on a CPU host run it with "
                         "--device cpu --arch tiny to check the script")
    data = str(ensure_smoke_assets(size="s").data_dir)
    peak, peak_note = peak_flops(device, args.peak_tflops)

    class DeviceSession(LocalSession):
        @property
        def device(self):  # the loop asks its session where to train
            return device

    with tempfile.TemporaryDirectory(prefix="lorasweep-gpu-bench-") as tmp:
        model = args.model or str(build_model_dir(args.arch, Path(tmp) / args.arch))
        prepared = get_task("e2e").prepare(
            trial_config(model, data, device_batch=args.batch_size, steps=args.steps,
                         precision="fp32", fused=False), progress=False)
        results: dict[str, list[float]] = {label: [] for label, *_ in CONFIGS}
        last: dict[str, dict] = {}
        fpt = 0.0
        for round_ in range(args.rounds):
            for label, precision, fused in CONFIGS:
                cfg = trial_config(model, data, device_batch=args.batch_size, steps=args.steps,
                                   precision=precision, fused=fused)
                report = run_loop(cfg, DeviceSession(), prepared=prepared)
                results[label].append(report["tokens_per_s"])
                last[label] = report
                fpt = flops_per_token(model, report)
                print(f"round {round_ + 1} {label:32s} {report['tokens_per_s']:10.0f} tokens/s "
                      f"peak memory {report['peak_mem_mb']:.0f} MiB", flush=True)

    print(f"\nGPT-2 {args.model or args.arch}, LoRA r=4 on W_q, W_v, batch {args.batch_size}, "
          f"{args.steps} steps, {device} ({peak_note}); {fpt / 1e9:.2f} GFLOP per token")
    base = None
    rows = {}
    for label, *_ in CONFIGS:
        if not results[label]:
            continue
        tps = statistics.median(results[label])
        base = base or tps
        mfu = f"{100 * tps * fpt / peak:5.1f}%" if peak else "  n/a"
        print(f"  {label:32s} {tps:10.0f} tokens/s  x{tps / base:4.2f}  MFU {mfu}  "
              f"peak memory {last[label]['peak_mem_mb']:.0f} MiB")
        rows[label] = {"tokens_per_s": tps, "speedup": tps / base, "mfu": tps * fpt / peak if peak else None,
                       "peak_mem_mb": last[label]["peak_mem_mb"], "peak_mem_kind": last[label]["peak_mem_kind"]}
    if args.json:
        import json

        Path(args.json).write_text(json.dumps({
            "model": args.model or f"gpt2 {args.arch} (random weights)", "device": str(device), "peak": peak_note,
            "batch_size": args.batch_size, "steps": args.steps, "rounds": args.rounds,
            "gflop_per_token": fpt / 1e9, "configs": rows}, indent=2))


if __name__ == "__main__":
    main()
