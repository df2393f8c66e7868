"""A tiny GPT-2 and its tokenizer, built locally: the model of tests and ``--preset smoke``.

No machine here reaches a model hub, so the smoke assets are made from scratch:

1. a byte-level BPE tokenizer trained on the synthetic E2E text, saved as a transformers
   ``GPT2Tokenizer`` (one special token, ``<|endoftext|>``, as bos/eos/unk; no pad token, as
   GPT-2);
2. a ``GPT2LMHeadModel`` from a ``GPT2Config`` with 2-4 layers, briefly pretrained as a causal
   LM on the training *references only* (never the MRs), so the base model knows the language
   but a LoRA adapter still has to learn the MR -> text mapping, as with the real GPT-2 on E2E;
3. both saved in one directory, so ``AutoModelForCausalLM.from_pretrained(dir)`` and
   ``AutoTokenizer.from_pretrained(dir)`` work exactly as with a hub checkpoint.

:func:`ensure_smoke_assets` builds all of it once per cache (about 11 s for size s, 19 s
for m, 32 s for l on 2 CPU cores; a cache hit takes milliseconds), under a
file lock and with atomic renames, into a directory named by :data:`SMOKE_VERSION`, which
changes with the generator and the recipe below, so a stale cache is never reused.

Heavy imports (torch, transformers, tokenizers) happen inside functions: importing this module
is cheap, and a cache hit never imports them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainables.cache import build_once, is_built
from trainables.offline import e2e_synth
from trainables.paths import cache_dir

EOT = "<|endoftext|>"  # GPT-2's only special token: bos, eos and unk at once

N_POSITIONS = 256  # E2E MR + reference is < 100 tokens with the smoke tokenizer
SIZES: dict[str, dict[str, int]] = {
    # Named after GPT-2 S/M/L so size sweeps (rank vs model size) have three points to plot.
    "s": {"n_layer": 2, "n_embd": 64, "n_head": 4},
    "m": {"n_layer": 3, "n_embd": 96, "n_head": 4},
    "l": {"n_layer": 4, "n_embd": 128, "n_head": 4},
}

# Bump when the tokenizer, model or pretraining code changes what gets built.
LM_RECIPE_VERSION = "2"

# What ``ensure_smoke_assets`` builds. The dataset: 300 train MRs x ~4 refs = ~1,200 rows,
# enough for a smoke sweep to show learning in a minute; 40 dev / 30 test MRs keep
# generation-based evaluation (beam search over every dev MR) to seconds.
SMOKE_RECIPE: dict[str, Any] = {
    "data": {"n_train_mrs": 300, "n_dev_mrs": 40, "n_test_mrs": 30, "seed": 0},
    # E2E text has a few hundred distinct words; 1,024 ids cover them all as whole-word tokens
    # (256 byte symbols + merges + <|endoftext|>) and keep the embedding matrix small.
    "vocab_size": 1024,
    # ~30k reference tokens / (16 x 64 tokens per step) = ~30 steps per epoch, so 300 steps are
    # ~10 epochs over the references: enough for the tiny GPT-2s to learn the domain's text
    # (a held-out loss far below ln(vocab), the loss of a uniform guess).
    "pretrain": {"steps": 300, "batch_size": 16, "block_size": 64, "lr": 3e-3, "seed": 0},
}


def _recipe_fingerprint() -> str:
    blob = json.dumps(SMOKE_RECIPE, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:8]


# The cache directory name: changes with the generator, the build code and the recipe.
SMOKE_VERSION = (f"e2e{e2e_synth.GENERATOR_VERSION}-lm{LM_RECIPE_VERSION}-{_recipe_fingerprint()}")

BUILD_INFO = "tiny_lm.json"  # provenance written next to the weights


def _log(msg: str) -> None:
    print(f"[lorasweep.smoke] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Tokenizer


def train_tokenizer(texts: Iterable[str], out_dir: str | Path, *, vocab_size: int = 1024,
                    model_max_length: int = N_POSITIONS) -> Path:
    """Train a GPT-2-style byte-level BPE tokenizer on ``texts`` and save it to ``out_dir``.

    Like GPT-2's: byte-level pre-tokenisation with GPT-2's regex, no prefix space, and
    ``<|endoftext|>`` as the one special token (bos = eos = unk), placed as GPT-2 does at the
    last id. No pad token is added; padding is the task code's business. Saved as a
    ``GPT2Tokenizer`` (the fast, tokenizers-backed class in transformers 5), so
    ``AutoTokenizer.from_pretrained(out_dir)`` loads it. Returns ``out_dir``.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Tokenizer

    if vocab_size < 257:
        raise ValueError(f"vocab_size={vocab_size}; must be >= 257 (256 bytes + {EOT})")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    # vocab_size - 1 leaves room for <|endoftext|>, appended after training so it gets the
    # last id as in GPT-2 (50256 of 50257). All 256 byte symbols are seeded so any text encodes.
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[], show_progress=False)
    bpe.train_from_iterator(texts, trainer)
    model_json = json.loads(bpe.to_str())["model"]
    vocab = dict(model_json["vocab"])
    vocab[EOT] = len(vocab)
    # tokenizers >= 0.20 stores merges as pairs; older files as "a b" strings.
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" "))
              for m in model_json["merges"]]
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=merges, unk_token=EOT, bos_token=EOT,
                              eos_token=EOT, add_prefix_space=False,
                              model_max_length=model_max_length)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    return out


# --------------------------------------------------------------------------------------------
# Model


def _pack(tokenizer: Any, texts: Sequence[str], block_size: int):
    """Concatenate ``text <|endoftext|>`` for all texts (GPT-2's packing) and cut the stream
    into ``[n_blocks, block_size]`` (the tail shorter than one block is dropped)."""
    import torch

    ids: list[int] = []
    for enc in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(tokenizer.eos_token_id)
    n_blocks = len(ids) // block_size
    if n_blocks == 0:
        raise ValueError(f"{len(ids)} tokens of text: fewer than one block of {block_size}")
    return torch.tensor(ids[: n_blocks * block_size], dtype=torch.long).view(n_blocks, block_size)


def evaluate_lm_loss(model: Any, tokenizer: Any, texts: Sequence[str], *,
                     block_size: int = 64, batch_size: int = 32) -> float:
    """Mean next-token cross-entropy (nats/token) of ``model`` on ``texts``, packed as in
    pretraining. ln(vocab_size) (6.93 for 1,024 ids) is what a uniform guess scores."""
    import torch

    blocks = _pack(tokenizer, texts, block_size)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(blocks), batch_size):
            batch = blocks[start:start + batch_size]
            loss = model(input_ids=batch, labels=batch).loss
            n = batch.shape[0] * (block_size - 1)  # each block predicts block_size - 1 tokens
            total += loss.item() * n
            count += n
    model.train(was_training)
    return total / count


def build_tiny_gpt2(out_dir: str | Path, *, tokenizer_dir: str | Path, size: str = "s",
                    pretrain_texts: Sequence[str] | None = None, pretrain_steps: int = 0,
                    eval_texts: Sequence[str] | None = None, batch_size: int = 16,
                    block_size: int = 64, lr: float = 3e-3, seed: int = 0) -> Path:
    """Build a tiny ``GPT2LMHeadModel``, optionally pretrain it, and save it with its tokenizer.

    ``size`` picks a row of :data:`SIZES`; the vocabulary and bos/eos ids come from the
    tokenizer in ``tokenizer_dir``. With ``pretrain_texts`` and ``pretrain_steps > 0`` the model
    is trained as a causal LM on those texts (packed into ``block_size``-token blocks, random
    batches of ``batch_size``, AdamW at ``lr`` with warmup and cosine decay). ``eval_texts``
    (held out) are scored before and after, and the losses written to ``tiny_lm.json``.
    Runs on one CPU thread (see below), so it is deterministic given ``seed``. Returns ``out_dir``, from which both
    ``AutoModelForCausalLM`` and ``AutoTokenizer`` load.
    """
    if size not in SIZES:
        raise ValueError(f"size={size!r}; accepted: {sorted(SIZES)}")
    import torch

    # One intra-op thread while building. These matmuls are tiny (64-128 wide), so a second
    # thread gains little, and when another process holds a core OpenMP's spinning threads
    # slow down many times over. It also makes the weights independent of the machine's core
    # count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build(out_dir, tokenizer_dir=tokenizer_dir, size=size,
                      pretrain_texts=pretrain_texts, pretrain_steps=pretrain_steps,
                      eval_texts=eval_texts, batch_size=batch_size, block_size=block_size,
                      lr=lr, seed=seed)
    finally:
        torch.set_num_threads(threads)


def _build(out_dir, *, tokenizer_dir, size, pretrain_texts, pretrain_steps, eval_texts,
           batch_size, block_size, lr, seed) -> Path:
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    eot_id = tokenizer.convert_tokens_to_ids(EOT)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=N_POSITIONS, **SIZES[size],
                        bos_token_id=eot_id, eos_token_id=eot_id)
    torch.manual_seed(seed)  # the weight init draws from the global generator
    model = GPT2LMHeadModel(config)
    # Name the loss GPT-2 uses anyway; unset, transformers warns on the first forward. Set on
    # the instance, not the config, so config.json stays what a hub GPT-2 has.
    model.loss_type = "ForCausalLM"
    info: dict[str, Any] = {
        "size": size, **SIZES[size], "n_positions": N_POSITIONS, "vocab_size": len(tokenizer),
        "n_params": sum(p.numel() for p in model.parameters()), "seed": seed,
        "pretrain_steps": 0, "recipe_version": LM_RECIPE_VERSION,
    }
    if eval_texts:
        info["eval_loss_init"] = evaluate_lm_loss(model, tokenizer, eval_texts,
                                                  block_size=block_size)

    if pretrain_texts and pretrain_steps > 0:
        blocks = _pack(tokenizer, pretrain_texts, block_size)
        gen = torch.Generator().manual_seed(seed)  # batch order, independent of the init
        optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        warmup = max(1, pretrain_steps // 10)

        def lr_factor(step: int) -> float:
            # Linear warmup over the first 10% of steps, then cosine decay to 10% of ``lr``.
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, pretrain_steps - warmup)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(optim, lr_factor)
        model.train()
        t0 = time.perf_counter()
        bar = tqdm(range(pretrain_steps), desc=f"pretrain gpt2-{size}", unit="step",
                   file=sys.stderr, leave=False, disable=None, mininterval=1.0)  # tty only
        for _ in bar:
            idx = torch.randint(len(blocks), (batch_size,), generator=gen)
            batch = blocks[idx]
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            sched.step()
            optim.zero_grad(set_to_none=True)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        bar.close()
        model.eval()
        info.update(pretrain_steps=pretrain_steps, batch_size=batch_size, block_size=block_size,
                    lr=lr, pretrain_tokens=pretrain_steps * batch_size * block_size,
                    pretrain_corpus_tokens=int(blocks.numel()),
                    pretrain_seconds=round(time.perf_counter() - t0, 2),
                    train_loss_last=loss.item())
    if eval_texts:
        info["eval_loss"] = evaluate_lm_loss(model, tokenizer, eval_texts, block_size=block_size)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.model_max_length = N_POSITIONS
    tokenizer.save_pretrained(out)
    (out / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return out


# --------------------------------------------------------------------------------------------
# Smoke assets, built once per cache


@dataclass(frozen=True)
class SmokeAssets:
    """Where the smoke preset's model and data live."""

    model_dir: Path  # from_pretrained directory: weights, config, tokenizer, tiny_lm.json
    data_dir: Path  # trainset.csv, devset.csv, testset_w_refs.csv (official E2E format)


def smoke_root(cache: str | Path | None = None) -> Path:
    """``<cache>/smoke/<SMOKE_VERSION>``; ``cache`` defaults to
    :func:`trainables.paths.cache_dir`."""
    root = Path(cache).expanduser() if cache is not None else cache_dir()
    return root / "smoke" / SMOKE_VERSION


def ensure_smoke_assets(*, cache: str | Path | None = None, size: str = "s") -> SmokeAssets:
    """The smoke preset's synthetic E2E data and tiny pretrained GPT-2, built on first use.

    Layout: ``<cache>/smoke/<SMOKE_VERSION>/{e2e, tokenizer, gpt2-<size>}``. The dataset and
    tokenizer are shared by all sizes. Idempotent and safe for concurrent callers (trials
    starting together): a present, complete build returns at once without importing torch;
    otherwise one process builds under a file lock while the others wait, then reuse it.
    """
    if size not in SIZES:
        raise ValueError(f"size={size!r}; accepted: {sorted(SIZES)}")
    root = smoke_root(cache)
    data_dir, tok_dir, model_dir = root / "e2e", root / "tokenizer", root / f"gpt2-{size}"
    assets = SmokeAssets(model_dir=model_dir, data_dir=data_dir)
    if all(is_built(d) for d in (data_dir, tok_dir, model_dir)):
        return assets

    t0 = time.perf_counter()

    def write_data(d: Path) -> None:
        _log(f"writing synthetic E2E data to {data_dir}")
        e2e_synth.write_e2e_dataset(d, **SMOKE_RECIPE["data"])

    build_once(root, data_dir.name, write_data)
    train = e2e_synth.read_e2e_file(data_dir / "trainset.csv")

    def write_tokenizer(d: Path) -> None:
        _log(f"training the tokenizer into {tok_dir}")
        # MRs are in the tokenizer's corpus (the fine-tune reads them), not in pretraining.
        texts = [mr for mr, _ in train] + [ref for _, refs in train for ref in refs]
        train_tokenizer(texts, d, vocab_size=SMOKE_RECIPE["vocab_size"])

    build_once(root, tok_dir.name, write_tokenizer)

    def write_model(d: Path) -> None:
        _log(f"building and pretraining gpt2-{size} into {model_dir}")
        dev = e2e_synth.read_e2e_file(data_dir / "devset.csv")
        pre = SMOKE_RECIPE["pretrain"]
        build_tiny_gpt2(d, tokenizer_dir=tok_dir, size=size,
                        pretrain_texts=[ref for _, refs in train for ref in refs],
                        eval_texts=[ref for _, refs in dev for ref in refs],
                        pretrain_steps=pre["steps"], batch_size=pre["batch_size"],
                        block_size=pre["block_size"], lr=pre["lr"], seed=pre["seed"])
        _log(f"smoke assets ready in {time.perf_counter() - t0:.1f} s")

    build_once(root, model_dir.name, write_model)
    return assets


# Builders of the ``smoke:`` sources (see trainables.offline)
def smoke_gpt2_s() -> Path:
    return ensure_smoke_assets(size="s").model_dir


def smoke_gpt2_m() -> Path:
    return ensure_smoke_assets(size="m").model_dir


def smoke_gpt2_l() -> Path:
    return ensure_smoke_assets(size="l").model_dir


def smoke_e2e_data() -> Path:
    return ensure_smoke_assets(size="s").data_dir


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m trainables.offline.tiny_lm",
        description="Build (once) the smoke preset's tiny GPT-2 and synthetic E2E data.")
    parser.add_argument("--size", choices=sorted(SIZES), default="s")
    parser.add_argument("--cache", type=Path, default=None,
                        help="cache root (default: $LORASWEEP_CACHE or ~/.cache/lorasweep)")
    args = parser.parse_args(argv)
    assets = ensure_smoke_assets(cache=args.cache, size=args.size)
    print(f"model_dir: {assets.model_dir}")
    print(f"data_dir:  {assets.data_dir}")
    info_path = assets.model_dir / BUILD_INFO
    if info_path.exists():
        info = json.loads(info_path.read_text())
        print(f"gpt2-{args.size}: {info['n_params']:,} params, vocab {info['vocab_size']}, "
              f"held-out LM loss {info.get('eval_loss_init', float('nan')):.3f} (init) -> "
              f"{info.get('eval_loss', float('nan')):.3f} (pretrained)")


if __name__ == "__main__":
    main()
