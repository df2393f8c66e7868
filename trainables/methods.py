"""The fine-tuning methods a sweep can compare, one registry entry each (PEFT's
``register_peft_method``: an explicit dict that refuses duplicates).

Each :class:`Method` says how it is built with peft, which layer kinds it can adapt, whether it
can train on a quantised (4-bit NF4) base, and how its optimizer's parameter groups are formed:

=========  ===========================================================  =====================
method     built with                                                   optimizer
=========  ===========================================================  =====================
full       no adapter: every parameter of the model trains              AdamW
lora       ``LoraConfig``                                               AdamW
rslora     ``LoraConfig(use_rslora=True)``: scale alpha / sqrt(r)       AdamW
dora       ``LoraConfig(use_dora=True)``: magnitude + direction         AdamW
loraplus   ``LoraConfig``                                               peft's LoRA+ groups:
                                                                        lr(B) = ratio x lr(A)
vera       ``VeraConfig``: shared frozen random A/B, trained scalings   AdamW
lora-fa    ``LoraConfig``; lora_A frozen                                peft's LoRA-FA
                                                                        optimizer
pissa      ``LoraConfig(init_lora_weights="pissa")``                    AdamW
olora      ``LoraConfig(init_lora_weights="olora")``                    AdamW
qlora      ``LoraConfig`` on a 4-bit NF4 base                           AdamW
=========  ===========================================================  =====================

Layer kinds were checked against peft 0.21.2's source: VeRA builds only on ``nn.Linear`` and
transformers' ``Conv1D`` (``peft/tuners/vera/model.py``); PiSSA and OLoRA initialise only
``Linear``-like layers (``lora.Embedding`` and ``lora.Conv2d`` would silently fall back to the
default init), and OLoRA's QR ignores ``fan_in_fan_out``, so on GPT-2's ``Conv1D`` it builds
A and B of the wrong shapes (the forward fails: checked on a tiny GPT-2; PiSSA transposes and
works); peft's LoRA-FA optimizer inverts ``A @ A.T`` of 2-D ``lora_A`` matrices, so
it has no conv or embedding (``lora_embedding_A``) support. PiSSA's SVD refuses a quantised
weight ("initialize PiSSA under float32 ... then re-quantize the residual"), and full
fine-tuning cannot update 4-bit weights.

This module is the registry as data: it imports neither torch nor peft nor the config (which
imports it). Building a method's peft config and freezing its fixed parts is
:mod:`trainables.adapters`; its optimizer, :mod:`trainables.optim`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainables.errors import UserError, did_you_mean, one_of

#: The layer kinds a method may adapt, by the names used in messages.
LAYER_KINDS = ("Linear", "Conv1D", "Conv2d", "Embedding")
LINEAR_KINDS = ("Linear", "Conv1D")


@dataclass(frozen=True)
class Method:
    name: str
    doc: str
    source: str
    """Where the method (and the usual value of its settings) comes from."""
    peft_type: str | None
    """``lora``, ``vera``, or None (full fine-tuning: no peft wrapper)."""
    layer_kinds: tuple[str, ...] = LAYER_KINDS
    """Layer kinds it can adapt (of :data:`LAYER_KINDS`)."""
    quantized_base: bool = True
    """Whether it can train on a 4-bit quantised base model."""
    quantizes: bool = False
    """The method itself means a quantised base (``qlora``)."""
    lora_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra ``LoraConfig`` arguments (``use_dora``, ``init_lora_weights``, ...)."""
    init_from_weights: bool = False
    """Its initialisation reads the base weights (PiSSA's SVD, OLoRA's QR): on the meta device,
    for counting, peft's default init is used instead (same shapes, same counts)."""
    optimizer: str = "adamw"
    """``adamw`` (one group of the trainable parameters), ``loraplus`` or ``lorafa``."""
    frozen: tuple[str, ...] = ()
    """Parameter-name parts frozen after the adapter is built (LoRA-FA: ``lora_A``)."""
    uses_alpha: bool = True


METHOD_REGISTRY: dict[str, Method] = {}

PEFT_TYPES = (None, "lora", "vera")
"""The ``peft_type`` values :func:`trainables.adapters.peft_config` builds a config for (None:
no adapter, the whole model trains)."""


def register(method: Method) -> Method:
    if method.name in METHOD_REGISTRY:
        raise ValueError(f"method {method.name!r} is registered twice")
    unknown = set(method.layer_kinds) - set(LAYER_KINDS)
    if unknown:
        raise ValueError(f"method {method.name!r}: unknown layer kinds {sorted(unknown)}")
    if method.peft_type not in PEFT_TYPES:
        raise ValueError(f"method {method.name!r}: peft_type {method.peft_type!r} is not one that "
                         f"trainables.adapters.peft_config builds ({', '.join(map(repr, PEFT_TYPES))}); "
                         "add its config class there first")
    METHOD_REGISTRY[method.name] = method
    return method


register(Method("full", "full fine-tuning: every parameter of the model trains, no adapter "
                        "(the checkpoint is the whole model)",
                "the baseline of every adapter paper (LoRA paper Table 2: 'FT')", None,
                layer_kinds=LAYER_KINDS, quantized_base=False, uses_alpha=False))
register(Method("lora", "LoRA: W + (alpha/r) B A, B = 0 at the start",
                "Hu et al. 2021, arXiv:2106.09685", "lora"))
register(Method("rslora", "rank-stabilised LoRA: the update is scaled by alpha/sqrt(r)",
                "Kalajdzievski 2023, arXiv:2312.03732", "lora", lora_kwargs={"use_rslora": True}))
register(Method("dora", "DoRA: weight decomposed into a trained magnitude and a LoRA-updated "
                        "direction", "Liu et al. 2024, arXiv:2402.09353", "lora",
                lora_kwargs={"use_dora": True}))
register(Method("loraplus", "LoRA+: LoRA with B's learning rate adapter.loraplus_lr_ratio times A's",
                "Hayou et al. 2024, arXiv:2402.12354 (ratio 2^4 = 16 recommended)", "lora",
                optimizer="loraplus"))
register(Method("vera", "VeRA: one pair of frozen random matrices (rank adapter.r) shared by all "
                        "adapted layers; each layer trains two scaling vectors (r + d_out values)",
                "Kopiczko et al. 2024, arXiv:2310.11454", "vera", layer_kinds=LINEAR_KINDS,
                uses_alpha=False))
register(Method("lora-fa", "LoRA-FA: A frozen at its random init, only B trains (peft's LoRA-FA "
                           "optimizer projects B's gradient)",
                "Zhang et al. 2023, arXiv:2308.03303", "lora", layer_kinds=LINEAR_KINDS,
                optimizer="lorafa", frozen=("lora_A",)))
register(Method("pissa", "PiSSA: A and B from the top-r singular vectors of W, the base keeps the "
                         "residual", "Meng et al. 2024, arXiv:2404.02948", "lora",
                layer_kinds=LINEAR_KINDS, quantized_base=False, init_from_weights=True,
                lora_kwargs={"init_lora_weights": "pissa"}))
register(Method("olora", "OLoRA: A and B from a QR decomposition of W, the base keeps the residual",
                "Büyükakyüz 2024, arXiv:2406.01775", "lora", layer_kinds=("Linear",),
                init_from_weights=True, lora_kwargs={"init_lora_weights": "olora"}))
register(Method("qlora", "QLoRA: LoRA on a base quantised to 4-bit NF4 (double quantisation, "
                         "paged optimizer: see model.quantization)",
                "Dettmers et al. 2023, arXiv:2305.14314", "lora", quantizes=True))

METHODS = tuple(METHOD_REGISTRY)


def get_method(name: str, field: str = "adapter.method") -> Method:
    if name not in METHOD_REGISTRY:
        raise UserError(field, f"unknown adapter method {name!r}{did_you_mean(name, METHODS)}; "
                               f"accepted: {one_of(METHODS)}")
    return METHOD_REGISTRY[name]


# --------------------------------------------------------------------------- before launch


def quantized(cfg: Any) -> bool:
    """Whether the trial config ``cfg`` loads its base quantised: ``model.quantization: nf4``,
    or a method that quantises (``qlora``)."""
    return cfg.model.quantization == "nf4" or get_method(cfg.adapter.method).quantizes


def check_trial(cfg: Any) -> None:
    """Combinations of the method with the rest of the trial config ``cfg`` (cheap: no model
    needed; called by the config's own checks)."""
    method = get_method(cfg.adapter.method)
    if quantized(cfg) and not method.quantized_base:
        why = "model.quantization=nf4" if cfg.model.quantization == "nf4" else "a quantised base"
        ok = [m.name for m in METHOD_REGISTRY.values() if m.quantized_base and m.peft_type]
        raise UserError("adapter.method", f"{method.name!r} cannot train on {why} (4-bit NF4 "
                                          f"weights {'cannot be updated' if method.peft_type is None else 'cannot be initialised from'}); "
                                          f"use model.quantization=none or a method that can: {one_of(ok)}")
    if cfg.adapter.init_weights != "default" and (method.peft_type != "lora"
                                                  or "init_lora_weights" in method.lora_kwargs):
        ok = [m.name for m in METHOD_REGISTRY.values()
              if m.peft_type == "lora" and "init_lora_weights" not in m.lora_kwargs]
        raise UserError("adapter.init_weights", f"{method.name!r} sets its own initialisation; "
                                                f"{cfg.adapter.init_weights!r} applies to {one_of(ok)}")
    if method.peft_type is None and cfg.model.dtype == "float16" and cfg.train.precision == "fp16":
        raise UserError("model.dtype", "'full' trains the float16 weights themselves, and train.precision "
                                       "fp16's gradient scaler cannot unscale float16 gradients; use "
                                       "model.dtype float32 (fp16 autocast computes in float16 all the same) "
                                       "or bfloat16 with train.precision bf16")
    opt = cfg.train.optimizer
    if method.optimizer == "lorafa" and opt != "adamw":
        raise UserError("adapter.method", f"'lora-fa' brings its own optimizer (peft's LoRA-FA AdamW) "
                                          f"and cannot use train.optimizer={opt}; use train.optimizer=adamw")
    from trainables.fsdp import check_strategy

    check_strategy(cfg, quantized=quantized(cfg))
