"""Offline stand-ins for hub models and datasets: ``smoke:<name>`` sources.

A preset may name ``model.name_or_path: smoke:gpt2-s`` or ``data.source: smoke:e2e``; before
launch the runner replaces each by the local directory its builder returns (built once into
the cache), so trials load it exactly like any local path. A task family registers its own
offline assets here, one line each: ``name -> 'module:function'``, where the function takes
no arguments and returns the directory (importing this registry imports no builder).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from trainables.errors import UserError, did_you_mean, one_of

PREFIX = "smoke:"

SMOKE_MODELS: dict[str, str] = {
    "gpt2-s": "trainables.offline.tiny_lm:smoke_gpt2_s",
    "gpt2-m": "trainables.offline.tiny_lm:smoke_gpt2_m",
    "gpt2-l": "trainables.offline.tiny_lm:smoke_gpt2_l",
    "minilm": "trainables.offline.classification_assets:minilm",
    "llama-tiny": "trainables.offline.tiny_llama:smoke_llama_tiny",
    "llama-tiny-instruct": "trainables.offline.tiny_llama:smoke_llama_tiny_instruct",
    "resnet-tiny": "trainables.offline.vision_synth:smoke_resnet",
}
#: Short model names that stand for an offline source (``--model minilm``).
MODEL_ALIASES = {"minilm": "smoke:minilm"}
SMOKE_DATA: dict[str, str] = {
    "e2e": "trainables.offline.tiny_lm:smoke_e2e_data",
    "squad": "trainables.offline.squad_synth:smoke_squad_data",
    "webnlg": "trainables.offline.data2text_synth:smoke_webnlg_data",
    "dart": "trainables.offline.data2text_synth:smoke_dart_data",
    "glue": "trainables.offline.classification_assets:smoke_glue_data",
    "ag_news": "trainables.offline.classification_assets:smoke_ag_news_data",
    "guanaco": "trainables.offline.tiny_llama:smoke_guanaco_data",
    "qlora_instruct": "trainables.offline.tiny_llama:smoke_qlora_instruct_data",
    "cifar10": "trainables.offline.vision_synth:smoke_cifar10_data",
    "sft": "trainables.offline.user_data_synth:smoke_sft_data",
    "text_classification": "trainables.offline.user_data_synth:smoke_text_classification_data",
}


def _build(target: str) -> Path:
    module, fn = target.split(":")
    return Path(getattr(importlib.import_module(module), fn)())


def resolve_smoke(source: str, *, kind: str) -> str:
    """``smoke:<name>`` -> its local directory (built on first use); other sources unchanged.
    ``kind`` is ``model`` or ``data``."""
    if kind == "model":
        source = MODEL_ALIASES.get(source, source)
    if not source.startswith(PREFIX):
        return source
    table, field = (SMOKE_MODELS, "model.name_or_path") if kind == "model" else (SMOKE_DATA, "data.source")
    name, _, sub = source[len(PREFIX):].partition("/")  # smoke:ag_news/unlabelled.csv
    if name not in table:
        accepted = [PREFIX + n for n in table]
        raise UserError(field, f"unknown offline {kind} {source!r}{did_you_mean(source, accepted)}; "
                               f"accepted: {one_of(accepted)}")
    built = _build(table[name])
    return str(built / sub) if sub else str(built)
