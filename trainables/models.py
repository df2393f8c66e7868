"""Where a trial's model and tokenizer come from: a local directory or a hub name, through the
same ``from_pretrained`` code."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainables.config import TrialConfig


def model_source(cfg: TrialConfig) -> str:
    """What ``from_pretrained`` gets: the expanded local path, or the hub id as given."""
    path = Path(cfg.model.name_or_path).expanduser()
    return str(path) if path.exists() else cfg.model.name_or_path


def load_tokenizer(cfg: TrialConfig) -> Any:
    """The model's tokenizer; GPT-2-style tokenizers get pad = eos (they have no pad token)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_source(cfg), revision=cfg.model.revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tokenizer_identity(cfg: TrialConfig) -> str:
    """The digest of the trial's tokenizer (:func:`trainables.cache.tokenizer_digest`). For a
    local model directory it is memoised on the directory's files, so a driver whose data is
    prepared already need not import transformers."""
    from trainables.cache import memoised_on_model, tokenizer_digest

    return memoised_on_model("tokenizer", model_source(cfg), lambda: tokenizer_digest(load_tokenizer(cfg)),
                             libraries=("transformers", "tokenizers"))


def leading_special_ids(tokenizer: Any) -> list[int]:
    """The special tokens ``tokenizer`` puts before every text of its own accord, which a
    prompt built with ``add_special_tokens=False`` must start with to read as the model was
    pretrained: Llama 3's ``<|begin_of_text|>`` (its tokenizer.json's post-processor adds it);
    none for GPT-2, whose tokenizer adds nothing."""
    plain = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("a")["input_ids"])
    for k in range(len(full) - len(plain) + 1):
        if full[k:k + len(plain)] == plain:
            return full[:k]
    return []


def text_ids(tokenizer: Any, text: str) -> list[int]:
    """``text``'s token ids as ``tokenizer`` reads a text of its own accord: the special tokens
    it puts first (:func:`leading_special_ids`) before them, once; a text that starts with
    them already (Llama 3 chat text writes its ``<|begin_of_text|>``) does not get them again."""
    lead = leading_special_ids(tokenizer)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ids if ids[:len(lead)] == lead else lead + ids


#: Names of the learned position-embedding tables of transformers' models (BERT, RoBERTa,
#: GPT-2, OPT, BART, ...): one row per position a token can take.
POSITION_TABLES = ("position_embeddings", "wpe", "embed_positions")


def position_limit(model: Any) -> int | None:
    """How many tokens a sequence of ``model`` (built or on the meta device) can hold: the
    rows of its learned position table less those no token's position takes, where positions
    count from after the padding index (RoBERTa's ``padding_idx``) or from an ``offset`` (OPT's
    and BART's tables); None without such a table."""
    import torch

    def usable(table: torch.nn.Embedding) -> int:
        offset = getattr(table, "offset", 0)
        offset = offset if isinstance(offset, int) else 0
        return table.num_embeddings - offset - (table.padding_idx + 1 if table.padding_idx is not None else 0)

    limits = [usable(m) for name, m in model.named_modules()
              if isinstance(m, torch.nn.Embedding) and name.rsplit(".", 1)[-1] in POSITION_TABLES]
    return min(limits) if limits else None


def untie_adapted_embeddings(model: Any) -> Any:
    """``model`` (a peft model), ready for peft's ``merge_and_unload``: where its base ties the
    output embedding (``lm_head``) to the input embedding (``tie_word_embeddings``, as Llama
    3.2 1B/3B, Qwen2.5 0.5B and GPT-2 do) and the adapter adapts one of the two, the adapted one
    gets its own copy of the shared weight and the config says they are no longer tied. Merged
    into the shared tensor, the update would change the other embedding too (a LoRA on
    ``lm_head`` would also move every input embedding), and the merged model would not compute
    what the adapter computed."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    pair = (base.get_input_embeddings(), base.get_output_embeddings())
    if any(m is None for m in pair) or not any(hasattr(m, "base_layer") for m in pair):
        return model
    layers = [getattr(m, "base_layer", m) for m in pair]
    if layers[0].weight.data_ptr() != layers[1].weight.data_ptr():
        return model
    adapted = layers[1] if hasattr(pair[1], "base_layer") else layers[0]
    adapted.weight = torch.nn.Parameter(adapted.weight.detach().clone(), requires_grad=False)
    base.config.tie_word_embeddings = False
    return model
