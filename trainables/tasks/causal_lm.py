"""The causal-LM task family: a prompt, a target, loss on the target tokens only.

Examples are stored as one flat int32 token array plus offsets and the prompt length of each
example (``.npy`` files, memory-mapped by every trial: E2E's 42k training examples take about
10 MB instead of ~100 MB of Python lists per trial process).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainables.tasks.base import Prepared, Task, packed

if TYPE_CHECKING:
    import torch

    from trainables.config import EvalConfig, TrialConfig

IGNORE = -100


class TokenizedExamples:
    """``prompt + target`` token sequences; a torch map-style dataset of ``(ids, n_prompt)``."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray, prompt_len: np.ndarray):
        self.flat, self.offsets, self.prompt_len = flat, offsets, prompt_len

    def __len__(self) -> int:
        return len(self.prompt_len)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.flat[self.offsets[i]:self.offsets[i + 1]], int(self.prompt_len[i])

    def num_target_tokens(self) -> int:
        return int((np.diff(self.offsets) - self.prompt_len).sum())

    def lengths(self) -> np.ndarray:
        """Tokens per example (what ``train.batching: grouped`` groups by)."""
        return np.diff(self.offsets)

    @classmethod
    def build(cls, prompts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], *,
              max_length: int) -> tuple[TokenizedExamples, int]:
        """Concatenate each prompt and target, cut to ``max_length`` from the target's end;
        returns the examples and how many were truncated."""
        seqs, plens, truncated = [], [], 0
        for p, t in zip(prompts, targets):
            seq = list(p) + list(t)
            if len(seq) > max_length:
                truncated += 1
                seq = seq[:max_length]
            seqs.append(seq)
            plens.append(min(len(p), len(seq)))
        flat, offsets = packed(seqs)
        return cls(flat, offsets, np.asarray(plens, dtype=np.int32)), truncated

    def save(self, directory: Path, name: str) -> None:
        np.save(directory / f"{name}.ids.npy", self.flat)
        np.save(directory / f"{name}.offsets.npy", self.offsets)
        np.save(directory / f"{name}.prompt_len.npy", self.prompt_len)

    @classmethod
    def load(cls, directory: Path, name: str) -> TokenizedExamples:
        return cls(np.load(directory / f"{name}.ids.npy", mmap_mode="r"),
                   np.load(directory / f"{name}.offsets.npy"),
                   np.load(directory / f"{name}.prompt_len.npy"))


def after_prompt(ids: torch.Tensor, n_prompt: int) -> torch.Tensor:
    """Labels of a prompt + target example: the target's ids, -100 on the prompt."""
    labels = ids.clone()
    labels[:n_prompt] = IGNORE
    return labels


def pad_collate(pad_id: int, labels_of: Callable[[torch.Tensor, Any], torch.Tensor] = after_prompt
                ) -> Callable[[list[tuple[np.ndarray, Any]]], dict[str, Any]]:
    """Right-padded batch of ``(ids, extra)`` examples: labels ``labels_of(ids, extra)`` on
    each example's tokens (by default the ids after a prompt of length ``extra``) and -100 on
    the padding."""
    import torch

    def collate(items: list[tuple[np.ndarray, Any]]) -> dict[str, Any]:
        width = max(len(ids) for ids, _ in items)
        input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, (ids, extra) in enumerate(items):
            t = torch.from_numpy(np.asarray(ids, dtype=np.int64))
            input_ids[row, :len(t)] = t
            labels[row, :len(t)] = labels_of(t, extra)
            mask[row, :len(t)] = 1
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}

    return collate


def flat_collate(labels_of: Callable[[torch.Tensor, Any], torch.Tensor] = after_prompt
                 ) -> Callable[[list[tuple[np.ndarray, Any]]], dict[str, Any]]:
    """A batch of ``(ids, extra)`` examples as one row without padding (transformers'
    ``DataCollatorWithFlattening``): ``input_ids``, ``position_ids`` restarting at 0 for each
    example, and labels ``labels_of(ids, extra)`` with each example's first label -100, so
    that no example's last token is trained to predict the next example's first (which the
    padded batch never predicts either)."""
    import torch
    from transformers import DataCollatorWithFlattening

    flatten = DataCollatorWithFlattening(return_tensors="pt")

    def collate(items: list[tuple[np.ndarray, Any]]) -> dict[str, Any]:
        features = []
        for ids, extra in items:
            t = torch.from_numpy(np.asarray(ids, dtype=np.int64))
            features.append({"input_ids": t, "labels": labels_of(t, extra)})
        return flatten(features)

    return collate


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """What the model gets of a padded batch (ids and attention mask) or a flat one (ids and
    restarting positions, no mask: transformers then masks attention across examples). No
    key/value cache: with one, transformers' mask builder ignores restarting positions and a
    flat row's examples would attend to each other."""
    return {**{k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch},
            "use_cache": False}


def shifted_ce(logits: torch.Tensor, labels: torch.Tensor, *, label_smoothing: float = 0.0,
               reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy over the labelled positions (logits[t] predicts labels[t+1]).

    Label smoothing eps gives (1 - eps) * NLL + eps * mean_v(-log p_v), the form of the LoRA
    paper's GPT-2 code.
    """
    import torch.nn.functional as F

    logits = logits[:, :-1, :]
    labels = labels[:, 1:]
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                           ignore_index=IGNORE, label_smoothing=label_smoothing, reduction=reduction)


class CausalLMTask(Task):
    """Model, losses and decoding shared by every prompt -> text task."""

    peft_task_type = "causal_lm"
    batchings = ("grouped", "random", "padding_free")
    labels_of: Callable[[torch.Tensor, Any], torch.Tensor] = staticmethod(after_prompt)
    """The labels of one stored example ``(ids, extra)``: the target's ids, -100 elsewhere."""

    def load_model(self, cfg: TrialConfig) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM

        from trainables.models import load_tokenizer, model_source
        from trainables.quantization import from_pretrained_kwargs, prepare_for_training

        tokenizer = load_tokenizer(cfg)
        # dtype, and for a 4-bit base (model.quantization / adapter.method qlora) NF4 via bitsandbytes
        model = AutoModelForCausalLM.from_pretrained(
            model_source(cfg), revision=cfg.model.revision, **from_pretrained_kwargs(cfg))
        model.config.pad_token_id = tokenizer.pad_token_id
        return prepare_for_training(model, cfg), tokenizer

    def decoding(self, cfg: TrialConfig, tokenizer: Any) -> dict[str, Any] | None:
        """:func:`generate`'s settings: it stops at the tokenizer's eos alone."""
        return decoding_settings(cfg.eval, tokenizer)

    def skeleton(self, cfg: TrialConfig) -> Any:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from trainables.models import model_source

        config = AutoConfig.from_pretrained(model_source(cfg), revision=cfg.model.revision)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)

    def load_prepared(self, path: Path, cfg: TrialConfig) -> Prepared:
        """What the family's ``prepare`` writes: train/val token arrays (memory-mapped), the
        grouped test set (``test.json``) and the data statistics."""
        import json

        return Prepared(
            train=TokenizedExamples.load(path, "train"),
            val=TokenizedExamples.load(path, "val"),
            test=json.loads((path / "test.json").read_text()),
            stats=json.loads((path / "stats.json").read_text()),
            path=path,
        )

    def collate(self, tokenizer: Any) -> Callable[[list[Any]], dict[str, Any]]:
        return pad_collate(tokenizer.pad_token_id, self.labels_of)

    def packed_collate(self, tokenizer: Any) -> Callable[[list[Any]], dict[str, Any]]:
        return flat_collate(self.labels_of)

    def train_loss(self, model: Any, batch: dict[str, Any], cfg: TrialConfig) -> torch.Tensor:
        out = model(**model_inputs(batch))
        return shifted_ce(out.logits, batch["labels"], label_smoothing=cfg.train.label_smoothing)

    def train_targets(self, batch: dict[str, Any]) -> int:
        return int((batch["labels"][:, 1:] != IGNORE).sum())

    def eval_loss(self, model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
        out = model(**model_inputs(batch))
        total = shifted_ce(out.logits, batch["labels"], reduction="sum")
        return total, self.train_targets(batch)


def fixed_subset(rows: list[Any], limit: int | None) -> list[Any]:
    """A fixed random subset (seed 0) of ``limit`` rows in their original order, when limited:
    more variety than the first N rows, which official files group by input or article."""
    if limit is None or limit >= len(rows):
        return rows
    import random

    keep = sorted(random.Random(0).sample(range(len(rows)), limit))
    return [rows[i] for i in keep]


def decoding_settings(cfg: EvalConfig, tokenizer: Any, *, chat: bool = False) -> dict[str, Any]:
    """The ``generate`` arguments of a trial's final decoding: greedy (``num_beams`` 1) or beam
    search with the ``eval`` settings, never sampling, padding with the tokenizer's pad token
    and ending at its eos, or (``chat``) at eos or the chat template's end-of-turn token."""
    from trainables.tasks.chat import stop_ids

    return {"num_beams": cfg.num_beams, "length_penalty": cfg.length_penalty,
            "no_repeat_ngram_size": cfg.no_repeat_ngram_size, "max_new_tokens": cfg.max_new_tokens,
            "do_sample": False, "eos_token_id": stop_ids(tokenizer) if chat else tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}


def generate(model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], cfg: EvalConfig, *,
             device: torch.device, session: Any = None) -> list[str]:
    """Beam-search continuations of token prompts, decoded and whitespace-normalised.

    Prompts are decoded ``cfg.batch_size`` at a time, left-padded so that every continuation
    starts at the same position; decoding stops at the tokenizer's eos (the E2E format ends
    every target with it). With a ``session`` of several ranks (every rank calls this), rank
    ``r`` decodes batches ``r``, ``r + world_size``, ... (each the batch one process decodes,
    so each text is the one it decodes) and every rank returns all the texts, in order. Under
    FSDP (``session.lockstep``: every forward is a collective) every rank decodes as many
    batches (a rank with fewer decodes the first batch again and drops it) and transformers'
    ``synced_gpus`` keeps a rank whose beams have finished stepping until every rank's have.
    Progress per batch goes to stderr: a bar on a terminal, a line every half minute in a
    trial's log.
    """
    from trainables.progress import progress

    world, rank = (session.world_size, session.world_rank) if session is not None else (1, 0)
    lockstep = bool(getattr(session, "lockstep", False))
    starts = range(0, len(prompts), cfg.batch_size)
    share = list(starts[rank::world])
    fillers = math.ceil(len(starts) / world) - len(share) if lockstep else 0
    mine = {}
    for i, start in enumerate(progress(share + [0] * fillers, desc=f"beam search ({len(prompts)} inputs, "
                                                                   f"batches of {cfg.batch_size})")):
        texts = _beam_search(model, tokenizer, prompts[start:start + cfg.batch_size], cfg, device, synced=lockstep)
        if i < len(share):
            mine[start] = texts
    if world > 1:
        for part in session.all_gather(mine):
            mine.update(part)
    return [text for start in starts for text in mine[start]]


def _beam_search(model: Any, tokenizer: Any, chunk: Sequence[Sequence[int]], cfg: EvalConfig,
                 device: torch.device, *, synced: bool = False) -> list[str]:
    """One batch of :func:`generate` (``synced``: transformers' ``synced_gpus``)."""
    import torch

    model.eval()
    ids, mask = left_padded(chunk, tokenizer.pad_token_id)
    with torch.no_grad():
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), synced_gpus=synced,
                             **decoding_settings(cfg, tokenizer))
    return [" ".join(tokenizer.decode(row, skip_special_tokens=True).split()) for row in out[:, ids.shape[1]:]]


def left_padded(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token prompts as one batch for ``generate``: ids left-padded with ``pad_id`` to the
    longest, so that every continuation starts at the same position, and the attention mask."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
        mask[row, width - len(p):] = 1
    return ids, mask
