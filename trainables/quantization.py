"""QLoRA's pieces: a 4-bit NF4 base (bitsandbytes), k-bit preparation, paged AdamW.

One place decides whether a trial's base is quantised (:func:`quantization_for`: ``model.
quantization: nf4``, or ``adapter.method: qlora``), what ``from_pretrained`` then receives
(:func:`from_pretrained_kwargs`: a ``BitsAndBytesConfig`` with NF4, double quantisation and
the compute dtype), and how the loaded model is made ready to train
(:func:`prepare_for_training`: peft's ``prepare_model_for_kbit_training`` for a 4-bit base,
gradient checkpointing for any). Every task family's ``load_model`` calls the last two, so
any task's base can be quantised.

What runs where: 4-bit NF4 + LoRA trains on CPU too (bitsandbytes dequantises and multiplies
in the compute dtype), which is how the tests exercise it. The paged optimizers run on CPU, but bitsandbytes keeps their state unpaged there (there is no
unified GPU memory to page from); :func:`optimizer_note` says so, and the trial records it.

Setups refused before launch (:func:`check_quantization`): bitsandbytes missing; a model with
no ``nn.Linear`` layers to quantise (GPT-2's blocks are ``Conv1D``, which bitsandbytes leaves
as they are, so "4-bit GPT-2" would silently be a full-precision model); a model saved in
4-bit NF4 (unsloth/Llama-3.2-1B-bnb-4bit) without ``model.quantization: nf4``, as it loads in 4
bits anyway (with the quantisation settings its config.json holds); a model saved quantised
otherwise (bitsandbytes 8-bit or 4-bit FP4, GPTQ, AWQ, ...), which loads as saved under nf4
too, or not at all. The sweep checks every trial it may run: the base trial, every grid
point's and every value a sampled quantisation, method or optimizer can take.

Several Ray Train workers per trial (DDP) work over a 4-bit base: each rank quantises its own
copy as it loads it on its device, and only the LoRA weights train, so DDP averages their
gradients alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainables.errors import UserError

if TYPE_CHECKING:
    from trainables.config import TrainConfig, TrialConfig

BNB_REQUIREMENT = "bitsandbytes>=0.50,<0.51"

#: Heads of sequence-classification models: trained in full (peft's ``modules_to_save``), so
#: never quantised.
CLASSIFIER_HEADS = ("classifier", "score")


def quantization_for(cfg: TrialConfig) -> str | None:
    """``"nf4"`` when the trial's base is loaded in 4 bits (:func:`trainables.methods.quantized`),
    else None."""
    from trainables.methods import quantized

    return "nf4" if quantized(cfg) else None


def require_bitsandbytes(field: str, *, load: bool = True) -> Any:
    """bitsandbytes, imported quietly (``load``), or only checked to be installed (the driver's
    check before launch: importing it there costs seconds and logs a line)."""
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError(field, f"needs bitsandbytes, which is not installed: pip install "
                               f"'{BNB_REQUIREMENT}'")
    if not load:
        return None
    import bitsandbytes  # its import-time warning on CPUs is quieted in trainables/__init__.py

    return bitsandbytes


def from_pretrained_kwargs(cfg: TrialConfig, *, skip_modules: tuple[str, ...] = ()) -> dict[str, Any]:
    """Keyword arguments of ``from_pretrained`` for the trial's base: its dtype, and for a
    4-bit base the ``BitsAndBytesConfig`` and the device it is quantised on."""
    import torch

    kwargs: dict[str, Any] = {"dtype": getattr(torch, cfg.model.dtype)}
    if quantization_for(cfg) is None:
        return kwargs
    require_bitsandbytes("model.quantization")
    from transformers import BitsAndBytesConfig

    kwargs["quantization_config"] = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=cfg.model.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, cfg.model.compute_dtype),
        # transformers already keeps the LM head in full precision; a classifier's head
        # trains in full, so it must not become a frozen Linear4bit.
        llm_int8_skip_modules=list(skip_modules) or None,
    )
    # Quantisation happens as the weights are placed: on this process's GPU, else the CPU.
    device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    kwargs["device_map"] = {"": device}
    return kwargs


def unquantised(model: Any, cfg: TrialConfig) -> Any:
    """``model`` with real weights in ``model.dtype``: a checkpoint saved already quantised
    (its config.json holds a ``quantization_config``, e.g. unsloth/Llama-3.2-1B-bnb-4bit)
    loads quantised whatever ``from_pretrained`` is told, so its 4-bit layers are dequantised
    (transformers' ``dequantize``) into the weights the trial's 4-bit layers computed with."""
    import torch

    if getattr(model, "hf_quantizer", None) is None:
        return model
    return model.dequantize(dtype=getattr(torch, cfg.model.dtype))


def prepare_for_training(model: Any, cfg: TrialConfig) -> Any:
    """A freshly loaded base, ready for the adapter: for a 4-bit base, peft's
    ``prepare_model_for_kbit_training`` (base frozen, norms and head upcast to fp32, input
    gradients on, optional gradient checkpointing); otherwise gradient checkpointing when set."""
    if quantization_for(cfg) is not None:
        from peft import prepare_model_for_kbit_training

        # Checkpointing is switched on below, not by peft: peft 0.21 calls transformers'
        # old ``gradient_checkpointing_enable``, which transformers 5.24 deprecates (a
        # warning per trial). Non-reentrant checkpointing needs no input gradients.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if cfg.train.gradient_checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.24
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        model.config.use_cache = False
    return model


BITSANDBYTES_KEYS = ("model.quantization", "adapter.method", "train.optimizer")
"""The trial settings that decide whether a trial loads bitsandbytes."""


def uses_bitsandbytes(trials: list[TrialConfig], sampled_keys: set[str]) -> bool:
    """Whether any trial of a sweep may load bitsandbytes: a 4-bit base or a paged optimizer in
    one of ``trials`` (the base trial and every grid point's), or a sampled dimension
    (``sampled_keys``: choice, uniform, ...) over the quantisation, the method or the optimizer."""
    return (any(quantization_for(t) is not None or t.train.optimizer != "adamw" for t in trials)
            or bool(sampled_keys & set(BITSANDBYTES_KEYS)))


def check_quantization(trials: list[TrialConfig], skeleton: Any) -> None:
    """Refuse, before launch, quantisation or paged optimizers the setup cannot honour
    (``trials``: the base trial, every grid point's and every sampled value's; ``skeleton``:
    the meta-device model)."""
    quantized = [t for t in trials if quantization_for(t) is not None]
    if any(t.train.optimizer != "adamw" for t in trials):
        require_bitsandbytes("train.optimizer", load=False)
    saved = saved_quantization(skeleton.config)
    if saved is not None:
        check_saved_quantization(saved, none_asked=len(quantized) < len(trials))
    if not quantized:
        return
    field = ("model.quantization" if quantized[0].model.quantization == "nf4" else "adapter.method")
    require_bitsandbytes(field, load=False)
    from torch import nn

    model_type = getattr(skeleton.config, "model_type", "?")
    linears = [n for n, m in skeleton.named_modules()
               if isinstance(m, nn.Linear) and not n.endswith("lm_head")]
    if not linears:
        kinds = sorted({type(m).__name__ for n, m in skeleton.named_modules()
                        if n and type(m).__name__ in ("Conv1D", "Conv2d", "Conv1d")})
        raise UserError(field, f"4-bit NF4 quantises nn.Linear layers and this {model_type} model has "
                               f"none{' (its layers are ' + ', '.join(kinds) + ')' if kinds else ''}; "
                               "use a model with Linear layers (Llama, RoBERTa) or quantization=none")


def saved_quantization(config: Any) -> dict[str, Any] | None:
    """The ``quantization_config`` of a model saved quantised, as its config.json holds it (a
    dict as AutoConfig reads it; a loaded model's config holds a ``QuantizationConfigMixin``,
    whose ``quant_method`` may be a ``QuantizationMethod``); None for a model saved unquantised."""
    saved = getattr(config, "quantization_config", None)
    if saved is None:
        return None
    saved = dict(saved) if isinstance(saved, dict) else saved.to_dict()
    # transformers reads load_in_4bit or load_in_8bit without a quant_method as bitsandbytes.
    bnb = saved.get("load_in_4bit") or saved.get("load_in_8bit")
    method = saved.get("quant_method", "bitsandbytes" if bnb else "?")
    return {**saved, "quant_method": getattr(method, "value", method)}


def check_saved_quantization(saved: dict[str, Any], *, none_asked: bool) -> None:
    """Refuse a base saved quantised (``saved``: its config.json's ``quantization_config``) that
    the trials cannot train as they say (``none_asked``: some trial asks for no quantisation).
    transformers loads a saved quantisation whatever ``from_pretrained`` is given, and refuses
    a config of another method: a base saved in 4-bit NF4 (bitsandbytes) is what a
    ``model.quantization: nf4`` trial trains; one saved in 8 bits or 4-bit FP4 would train as
    saved under nf4 too, and one saved with GPTQ or AWQ would not load under nf4."""
    method = saved["quant_method"]
    if saved.get("load_in_8bit"):
        method += ", load_in_8bit"
    elif saved.get("load_in_4bit"):
        method += f", load_in_4bit, bnb_4bit_quant_type {saved.get('bnb_4bit_quant_type', 'fp4')}"
    if method != "bitsandbytes, load_in_4bit, bnb_4bit_quant_type nf4":
        raise UserError("model.quantization", f"this model is saved quantised ({method}: its config.json has a "
                                              "quantization_config), which no model.quantization trains: none "
                                              "would load it as saved and nf4 cannot quantise it again; accepted: "
                                              "a base saved unquantised or in 4-bit NF4 (bitsandbytes, "
                                              "load_in_4bit, bnb_4bit_quant_type nf4)")
    if none_asked:
        raise UserError("model.quantization", "this model is saved quantised (bitsandbytes: its config.json has a "
                                              "quantization_config) and loads quantised whatever model.quantization "
                                              "says; accepted: nf4 (or adapter.method=qlora)")


def optimizer_note(train: TrainConfig, device: Any) -> str:
    """What the record should say about the optimizer on ``device`` ('' when nothing)."""
    if train.optimizer.startswith("paged_") and getattr(device, "type", str(device)) != "cuda":
        return (f"{train.optimizer} on {getattr(device, 'type', device)}: bitsandbytes keeps the "
                "optimizer state unpaged (paging needs a CUDA device)")
    return ""
