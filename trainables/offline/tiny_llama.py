"""Offline stand-ins for the QLoRA study: a tiny Llama with a Llama-3-style chat template, and
synthetic conversations in the guanaco form (``timdettmers/openassistant-guanaco``).

* **Data** (``smoke:guanaco``): ``train.jsonl`` and ``eval.jsonl``, one ``{"text": "### Human:
  ...### Assistant: ..."}`` line per conversation, as the hub dataset's files are. The
  conversations are generated from templates (capitals, sums, translations, animal facts, a
  polite follow-up turn), so a fine-tune has something learnable; about one in ten ends with
  an unanswered human turn, as some OASST threads do (the task drops it).
* **Tokenizer**: byte-level BPE trained on that text (as :mod:`trainables.offline.tiny_lm`
  does for GPT-2), with Llama 3's special tokens (``<|begin_of_text|>``, ``<|end_of_text|>``,
  ``<|start_header_id|>``, ``<|end_header_id|>``, ``<|eot_id|>``) and Llama 3's chat template
  (without the system date header of 3.1+), ``<|begin_of_text|>`` before every text it
  tokenises with special tokens and no pad token, as Llama's.
* **Model** (``smoke:llama-tiny``): a ``LlamaForCausalLM`` with 2 layers, hidden size 64 (4
  heads, 2 key-value heads), tied embeddings as Llama 3.2 1B, briefly pretrained on the
  assistant answers (never the chat format), saved with ``save_pretrained`` beside its
  tokenizer. Every one of its block projections is an ``nn.Linear`` that bitsandbytes turns
  into ``Linear4bit``.

Built once per cache under a versioned directory (like the other smoke assets); heavy imports
happen inside functions.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from trainables.cache import build_once, is_built
from trainables.offline.chat_synth import conversations, write_guanaco_dataset
from trainables.paths import cache_dir

GENERATOR_VERSION = "2"
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
SPECIAL = [BOS, EOS, "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]

#: Llama 3's chat template (Meta-Llama-3-8B-Instruct's), whose turns Llama 3.2 keeps.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

RECIPE: dict[str, Any] = {
    "data": {"n_train": 400, "n_eval": 48, "seed": 0, "trailing_human": 0.1},
    "vocab_size": 768,
    "model": {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512},
    # 150 steps x 16 x 64 tokens: a few passes over the answer tokens of the synthetic mixture.
    "pretrain": {"steps": 150, "batch_size": 16, "block_size": 64, "lr": 3e-3, "seed": 0},
    # The instruction-tuned stand-in: the tiny Llama trained further on whole conversations in
    # its chat template (packed in blocks, every token), so that it answers in that format.
    "instruct": {"steps": 120, "batch_size": 16, "block_size": 64, "lr": 2e-3, "seed": 1},
    # The synthetic instruction mixture (trainables.offline.instruct_synth): 7 sources x 40.
    "mixture": {"n_per_source": 40, "seed": 0},
}

def _version() -> str:
    blob = json.dumps(RECIPE, sort_keys=True) + CHAT_TEMPLATE
    return f"guanaco{GENERATOR_VERSION}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


def _log(msg: str) -> None:
    print(f"[lorasweep.smoke] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- tokenizer, model


def train_llama_tokenizer(texts: list[str], out_dir: str | Path, *, vocab_size: int) -> Path:
    """Byte-level BPE with Llama 3's special tokens, chat template and ``<|begin_of_text|>``
    before every text it tokenises with special tokens, saved for AutoTokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer)
    bos = bpe.token_to_id(BOS)  # put before every text, as Llama 3's tokenizer.json does
    bpe.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS}:1 $B:1",
                                                       special_tokens=[(BOS, bos)])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=BOS, eos_token=EOS,
                                  model_max_length=RECIPE["model"]["max_position_embeddings"])
    tok.add_special_tokens({"additional_special_tokens": SPECIAL[2:]})
    tok.chat_template = CHAT_TEMPLATE
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out)
    return out


def _train_blocks(model: Any, ids: list[int], recipe: dict[str, Any]) -> float:
    """``recipe["steps"]`` AdamW steps on random blocks of the token stream ``ids``; the last loss."""
    import torch

    block = recipe["block_size"]
    blocks = torch.tensor(ids[: len(ids) // block * block]).view(-1, block)
    gen = torch.Generator().manual_seed(recipe["seed"])
    optim = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=recipe["lr"], total_steps=recipe["steps"])
    model.train()
    for _ in range(recipe["steps"]):
        batch = blocks[torch.randint(len(blocks), (recipe["batch_size"],), generator=gen)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optim.step()
        sched.step()
        optim.zero_grad(set_to_none=True)
    model.eval()
    return loss.item()


def _one_thread(fn: Any) -> Any:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls; deterministic; see tiny_lm.build_tiny_gpt2
    try:
        return fn()
    finally:
        torch.set_num_threads(threads)


def build_tiny_llama(out_dir: str | Path, *, tokenizer_dir: str | Path, pretrain_texts: list[str]) -> Path:
    """The tiny Llama of :data:`RECIPE`, pretrained on ``pretrain_texts``, saved with its tokenizer."""
    def build() -> Path:
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        torch.manual_seed(RECIPE["pretrain"]["seed"])
        config = LlamaConfig(vocab_size=len(tokenizer), **RECIPE["model"], tie_word_embeddings=True,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
        model = LlamaForCausalLM(config)
        ids: list[int] = []
        for enc in tokenizer(pretrain_texts, add_special_tokens=False)["input_ids"]:
            ids += enc + [tokenizer.eos_token_id]
        t0 = time.perf_counter()
        loss = _train_blocks(model, ids, RECIPE["pretrain"])
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        info = {"recipe": RECIPE, "n_params": sum(p.numel() for p in model.parameters()),
                "vocab_size": len(tokenizer), "pretrain_loss_last": loss,
                "pretrain_seconds": round(time.perf_counter() - t0, 2)}
        (out / "tiny_llama.json").write_text(json.dumps(info, indent=2) + "\n")
        return out

    return _one_thread(build)


def build_tiny_llama_instruct(out_dir: str | Path, *, base_dir: str | Path,
                              chats: list[list[dict[str, str]]]) -> Path:
    """The tiny Llama at ``base_dir`` trained further on ``chats`` in its chat template."""
    def build() -> Path:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        model = AutoModelForCausalLM.from_pretrained(base_dir)
        ids: list[int] = []
        texts = [tokenizer.apply_chat_template(turns, tokenize=False) for turns in chats]
        for enc in tokenizer(texts, add_special_tokens=False)["input_ids"]:
            ids += enc
        loss = _train_blocks(model, ids, RECIPE["instruct"])
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / "tiny_llama.json").write_text(json.dumps({"recipe": RECIPE, "instruct_loss_last": loss}, indent=2) + "\n")
        return out

    return _one_thread(build)


def ensure_assets(cache: str | Path | None = None) -> dict[str, Path]:
    """``{"data", "tokenizer", "model"}`` directories, built once per cache (file-locked)."""
    root = (Path(cache).expanduser() if cache is not None else cache_dir()) / "smoke" / _version()
    dirs = {"data": root / "guanaco", "tokenizer": root / "llama-tokenizer", "model": root / "llama-tiny"}
    if all(is_built(d) for d in dirs.values()):
        return dirs
    build_once(root, dirs["data"].name, lambda d: write_guanaco_dataset(d, **RECIPE["data"]))
    train = [json.loads(line)["text"] for line in
             (dirs["data"] / "train.jsonl").read_text(encoding="utf-8").splitlines()]

    def tokenizer(d: Path) -> None:
        _log(f"training the Llama-style tokenizer into {dirs['tokenizer']}")
        from trainables.tasks.conversations import parse_guanaco

        texts = [t["content"] for text in train for t in parse_guanaco(text)]
        train_llama_tokenizer(texts + [CHAT_TEMPLATE], d, vocab_size=RECIPE["vocab_size"])

    build_once(root, dirs["tokenizer"].name, tokenizer)

    def model(d: Path) -> None:
        _log(f"building and pretraining the tiny Llama into {dirs['model']}")
        from trainables.tasks.conversations import parse_guanaco

        answers = [t["content"] for text in train for t in parse_guanaco(text) if t["role"] == "assistant"]
        build_tiny_llama(d, tokenizer_dir=dirs["tokenizer"], pretrain_texts=answers)

    build_once(root, dirs["model"].name, model)
    return dirs


def ensure_instruct_assets(cache: str | Path | None = None) -> dict[str, Path]:
    """``{"mixture", "instruct_model"}``: the synthetic TU Wien instruction mixture and the
    instruction-tuned tiny Llama, built once per cache beside :func:`ensure_assets`' assets."""
    from trainables.offline.instruct_synth import GENERATOR_VERSION, write_instruct_dataset

    base = ensure_assets(cache)
    root = base["model"].parent
    dirs = {"mixture": root / f"qlora-instruct{GENERATOR_VERSION}", "instruct_model": root / "llama-tiny-instruct"}
    build_once(root, dirs["mixture"].name, lambda d: write_instruct_dataset(d, **RECIPE["mixture"]))

    def model(d: Path) -> None:
        _log(f"instruction-tuning the tiny Llama into {dirs['instruct_model']}")
        chats = conversations(RECIPE["data"]["n_train"], seed=RECIPE["instruct"]["seed"], trailing_human=0.0)
        build_tiny_llama_instruct(d, base_dir=base["model"], chats=chats)

    build_once(root, dirs["instruct_model"].name, model)
    return dirs


# Builders of the ``smoke:`` sources (see trainables.offline)
def smoke_llama_tiny() -> Path:
    return ensure_assets()["model"]


def smoke_guanaco_data() -> Path:
    return ensure_assets()["data"]


def smoke_llama_tiny_instruct() -> Path:
    return ensure_instruct_assets()["instruct_model"]


def smoke_qlora_instruct_data() -> Path:
    return ensure_instruct_assets()["mixture"]
