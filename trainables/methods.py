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

Nothing here imports torch or peft at import time (the config module imports this one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trainables.errors import UserError, did_you_mean, one_of

if TYPE_CHECKING:
    from trainables.config import AdapterConfig, TrainConfig, TrialConfig

#: The layer kinds a method may adapt, by the names used in messages.
LAYER_KINDS = ("Linear", "Conv1D", "Conv2d", "Embedding")
LORA_KINDS = LAYER_KINDS
LINEAR_KINDS = ("Linear", "Conv1D")


@dataclass(frozen=True)
class Method:
    name: str
    doc: str
    source: str
    """Where the method (and the usual value of its settings) comes from."""
    peft_type: str | None
    """``lora``, ``vera``, or None (full fine-tuning: no peft wrapper)."""
    layer_kinds: tuple[str, ...] = LORA_KINDS
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


def register(method: Method) -> Method:
    if method.name in METHOD_REGISTRY:
        raise ValueError(f"method {method.name!r} is registered twice")
    unknown = set(method.layer_kinds) - set(LAYER_KINDS)
    if unknown:
        raise ValueError(f"method {method.name!r}: unknown layer kinds {sorted(unknown)}")
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


def quantized(cfg: TrialConfig) -> bool:
    """Whether the trial's base is loaded quantised (``model.quantization: nf4`` or a method
    that quantises, i.e. ``qlora``): :func:`trainables.quantization.quantization_for`."""
    from trainables.quantization import quantization_for

    return quantization_for(cfg) is not None


def check_trial(cfg: TrialConfig) -> None:
    """Combinations of the method with the rest of the trial (cheap: no model needed)."""
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
    opt = cfg.train.optimizer
    if method.optimizer == "lorafa" and opt != "adamw":
        raise UserError("adapter.method", f"'lora-fa' brings its own optimizer (peft's LoRA-FA AdamW) "
                                          f"and cannot use train.optimizer={opt}; use train.optimizer=adamw")


def layer_kind(module: Any) -> str | None:
    """The name of ``module``'s kind in :data:`LAYER_KINDS`, or None for other modules. A 4-bit
    ``Linear4bit`` subclasses ``nn.Linear``, so it is a Linear here."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    for kind, cls in (("Conv1D", Conv1D), ("Linear", nn.Linear), ("Conv2d", nn.Conv2d),
                      ("Embedding", nn.Embedding)):
        if isinstance(module, cls):
            return kind
    return None


def check_layers(model: Any, method: Method, keys: tuple[str, ...], targets: str) -> None:
    """Every module ``keys`` selects must be of a kind ``method`` can adapt (the message names
    the method and the layer)."""
    if method.peft_type is None:
        return
    if keys == ("all-linear",):
        return  # peft picks Linear/Conv1D layers itself, which every method supports
    for name, module in model.named_modules():
        if not any(name == k or name.endswith("." + k) for k in keys):
            continue
        kind = layer_kind(module)
        if kind is not None and kind not in method.layer_kinds:
            able = [m.name for m in METHOD_REGISTRY.values() if m.peft_type and kind in m.layer_kinds]
            raise UserError("adapter.method", f"{method.name!r} cannot adapt {kind} layers, and "
                                              f"adapter.targets={targets!r} selects {name!r} ({kind}); "
                                              f"{method.name} adapts {' and '.join(method.layer_kinds)} "
                                              f"layers; for {kind} use {one_of(able)}")


# --------------------------------------------------------------------------- building


def peft_config(cfg: AdapterConfig, modules: tuple[str, ...], *, task_type: str, conv1d: bool,
                meta: bool = False, modules_to_save: tuple[str, ...] = ()) -> Any:
    """The peft config of ``cfg.method`` (None for ``full``). ``meta``: the model is on the meta
    device (counting only), so an initialisation that reads the weights is left out.
    ``modules_to_save``: modules trained in full beside the adapter (a new classifier head)."""
    from trainables.adapters import PEFT_TASK_TYPES

    method = get_method(cfg.method)
    target = "all-linear" if modules == ("all-linear",) else list(modules)
    common = {"r": cfg.r, "target_modules": target, "bias": "none",
              # GPT-2's Conv1D stores W transposed; peft wants to be told (it warns and fixes
              # it per layer otherwise). Linear views from the qv split are ordinary Linear.
              "fan_in_fan_out": conv1d, "task_type": PEFT_TASK_TYPES[task_type],
              "modules_to_save": list(modules_to_save) or None}
    if method.peft_type is None:
        return None
    if method.peft_type == "vera":
        from peft import VeraConfig

        # VeRA's r is the rank of the shared frozen projections (the paper uses 256-1024); what
        # trains per layer is d (r values) and b (d_out values). There is no alpha.
        return VeraConfig(vera_dropout=cfg.dropout, save_projection=True, **common)
    from peft import LoraConfig

    kwargs = dict(method.lora_kwargs)
    if cfg.init_weights == "gaussian":
        kwargs["init_lora_weights"] = "gaussian"
    if meta and method.init_from_weights:
        kwargs.pop("init_lora_weights", None)
    return LoraConfig(lora_alpha=cfg.lora_alpha, lora_dropout=cfg.dropout, **common, **kwargs)


def after_build(model: Any, cfg: AdapterConfig) -> None:
    """Freeze what the method keeps fixed (LoRA-FA: every ``lora_A``), so trainable-parameter
    counts and the optimizer agree."""
    method = get_method(cfg.method)
    for name, p in model.named_parameters():
        if any(part in name for part in method.frozen):
            p.requires_grad_(False)


def build_optimizer(model: Any, cfg: AdapterConfig, train: TrainConfig, *,
                    optimizer_cls: Callable[..., Any] | None = None) -> Any:
    """The optimizer of ``cfg.method`` over ``model``'s trainable parameters (``model``: the
    peft model, not a DDP wrapper). ``optimizer_cls`` is the AdamW class the trial uses."""
    import torch

    method = get_method(cfg.method)
    optimizer_cls = optimizer_cls or torch.optim.AdamW
    kwargs = {"betas": (train.adam_beta1, train.adam_beta2), "eps": train.adam_eps}
    if method.optimizer == "loraplus":
        from peft.optimizers import create_loraplus_optimizer

        # Groups: A (and other matrices, e.g. the head) at lr; B and 1-D parameters at
        # lr x ratio; LoRA on embeddings at peft's loraplus_lr_embedding.
        return create_loraplus_optimizer(model, optimizer_cls, lr=train.lr,
                                         loraplus_lr_ratio=cfg.loraplus_lr_ratio,
                                         loraplus_weight_decay=train.weight_decay, **kwargs)
    if method.optimizer == "lorafa":
        from peft.optimizers import create_lorafa_optimizer

        optimizer = create_lorafa_optimizer(model, r=cfg.r, lora_alpha=cfg.lora_alpha, lr=train.lr,
                                            weight_decay=train.weight_decay)
        for group in optimizer.param_groups:  # peft fixes betas (0.9, 0.999) and eps 1e-6
            group.update(kwargs)
        return optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    return optimizer_cls(params, lr=train.lr, weight_decay=train.weight_decay, **kwargs)
