#!/usr/bin/env bash
# One prepared check of the GPU paths, at most about 8 minutes on one GPU; prints one JSON
# summary (every step's exit code, seconds and numbers; "ok": true when all passed).
#
#   1. e2e_packed: the E2E smoke sweep (6 trials, ASHA, beam search) with 4 trials packed on one
#      GPU (--gpus-per-trial 0.25), in fp16 through the gradient scaler;
#   2. qlora: the QLoRA smoke sweep (tiny Llama in 4-bit NF4) on bitsandbytes' CUDA kernels;
#   3. throughput: bench/gpu_throughput.py (tokens/s, peak memory, MFU of GPT-2 medium + LoRA
#      on W_q, W_v in fp32, bf16 and bf16 with fused AdamW; random weights from its config);
#   4. packing: bench/gpu_packing.py (trials/hour, one trial per GPU vs 4 sharing it).
#
# Each step runs under its own time limit, so a hung step is reported and the next one runs.
#
#   bench/gpu_check.sh          # on a CUDA host (PYTHON=... to pick the interpreter)
#   bench/gpu_check.sh --cpu    # the same steps shrunk, on CPU: a check that the script runs
set -u

MODE=gpu
if [ "${1:-}" = "--cpu" ]; then MODE=cpu; elif [ -n "${1:-}" ]; then
  echo "usage: bench/gpu_check.sh [--cpu]" >&2; exit 2
fi
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lorasweep-gpu-check-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if [ "$MODE" = gpu ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "bench/gpu_check.sh: no CUDA device here; bench/gpu_check.sh --cpu checks the script on CPU" >&2
  exit 2
fi

# step NAME LIMIT_S COMMAND...: run it, keep its log, write "exit-code milliseconds" to NAME.status.
step() {
  local name=$1 limit=$2 start rc
  shift 2
  start=$(date +%s%N)
  timeout --kill-after=20 "$limit" "$@" >"$WORK/$name.log" 2>&1
  rc=$?
  echo "$rc $((($(date +%s%N) - start) / 1000000))" >"$WORK/$name.status"
  echo "bench/gpu_check.sh: $name exit $rc" >&2
}

# sweep NAME LIMIT_S SCRIPT FLAGS...: a study's sweep into WORK, then what it recorded.
sweep() {
  local name=$1 limit=$2 script=$3
  shift 3
  step "$name" "$limit" "$PY" "$REPO/sweeps/$script" --name "$name" --storage "$WORK/rr" \
    --tracking-uri "sqlite:///$WORK/$name.db" "$@"
  if [ -f "$WORK/rr/$name/results.csv" ]; then
    "$PY" "$REPO/bench/gpu_check.py" sweep "$WORK" "$name" >>"$WORK/$name.log" 2>&1
  fi
}

if [ "$MODE" = gpu ]; then
  sweep e2e_packed 120 rank_e2e.py --preset smoke --gpus-per-trial 0.25 --cpus-per-trial 2 \
    --set train.precision=fp16
  sweep qlora 100 qlora_guanaco.py --preset smoke --gpus-per-trial 0.25 --cpus-per-trial 2
  step throughput 100 "$PY" "$REPO/bench/gpu_throughput.py" --steps 50 --rounds 2 --json "$WORK/throughput.json"
  step packing 130 "$PY" "$REPO/bench/gpu_packing.py" --trials 8 --pack 4 --steps 100 --json "$WORK/packing.json"
else
  printf 'scientific:\n  r: {grid: [1, 4]}\nfixed: {alpha: 32, targets: qv, lr: 2.0e-3}\n' >"$WORK/e2e.yaml"
  printf 'scientific:\n  r: {grid: [4]}\nfixed: {alpha: 16, dropout: 0.1, targets: all-linear, lr: 1.0e-3}\n' \
    >"$WORK/qlora.yaml"
  sweep e2e_packed 300 rank_e2e.py --preset smoke --cpus-per-trial 1 --search-space "$WORK/e2e.yaml" \
    --scheduler fifo --set train.precision=fp16 --set train.max_steps=1 --set data.val_limit=8 \
    --set data.test_limit=2 --set eval.num_beams=1 --set eval.max_new_tokens=8 --set eval.meteor=false
  sweep qlora 300 qlora_guanaco.py --preset smoke --search-space "$WORK/qlora.yaml" --set train.max_steps=1 \
    --set data.val_limit=8 --set eval.generate=false
  step throughput 300 "$PY" "$REPO/bench/gpu_throughput.py" --device cpu --arch tiny --batch-size 4 --steps 1 \
    --rounds 1 --json "$WORK/throughput.json"
  step packing 300 "$PY" "$REPO/bench/gpu_packing.py" --cpu --trials 2 --pack 2 --steps 1 --size s \
    --json "$WORK/packing.json"
fi

"$PY" "$REPO/bench/gpu_check.py" summary "$WORK" "$MODE"
