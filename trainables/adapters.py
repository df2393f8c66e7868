"""Building, counting, saving and reloading peft adapters; named target groups per model family.

GPT-2 fuses W_q, W_k and W_v into one ``Conv1D`` called ``c_attn`` (out = 3 x d). The LoRA
paper adapted only W_q and W_v (0.39M trainable parameters for GPT-2 medium at r=4: 2 matrices
x 4 x (1024 + 1024) x 24 layers). peft's ``target_modules=["c_attn"]`` puts one LoRA pair on
the whole fused projection, adapting q, k and v together (peft issues #852, #706). The ``qv``
group therefore first splits ``c_attn`` into three ``nn.Linear`` views ``c_attn.q``,
``c_attn.k`` and ``c_attn.v`` holding exactly the same weights (:class:`SplitQKV`), and
then lets peft adapt ``c_attn.q`` and ``c_attn.v`` as ordinary linear layers. Every peft
feature (rsLoRA, DoRA, initialisations) works on them unchanged, and with B = 0 the model
computes exactly what the base model computes. A plain GPT-2 has no ``c_attn.q``: the adapter
others load is the same update written as a LoRA on the fused ``c_attn``
(:mod:`trainables.standard_adapter`); :func:`save_adapter` and :func:`load_adapter` keep the
views' own layout, for resuming and warm starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.errors import UserError, did_you_mean, one_of
from trainables.standard_adapter import ADAPTER_META

if TYPE_CHECKING:
    import torch

    from trainables.config import AdapterConfig


@dataclass(frozen=True)
class TargetGroup:
    modules: tuple[str, ...]
    """peft ``target_modules`` keys (a module matches when its name ends with ``.key``)."""
    split_qkv: bool = False
    """Split GPT-2's fused ``c_attn`` into q/k/v linear views before adapting."""
    doc: str = ""


TARGET_GROUPS: dict[str, dict[str, TargetGroup]] = {
    "gpt2": {
        "qv": TargetGroup(("c_attn.q", "c_attn.v"), split_qkv=True,
                          doc="W_q and W_v only, as in the LoRA paper (c_attn split into views)"),
        "c_attn": TargetGroup(("c_attn",), doc="the fused q,k,v projection as peft adapts it"),
        "attn": TargetGroup(("c_attn",), doc="alias of c_attn: attention q,k,v (fused)"),
        "qkvo": TargetGroup(("c_attn", "attn.c_proj"),
                            doc="attention q,k,v (fused) and the attention output projection"),
        # peft matches a key against the end of a module's name, so the key "c_proj" takes
        # both projections named so: the attention output (attn.c_proj) and the MLP's second
        # layer (mlp.c_proj). This is what target_modules=["c_attn", "c_proj"] adapts.
        "attn+proj": TargetGroup(("c_attn", "c_proj"),
                                 doc="c_attn and every c_proj (attn.c_proj and mlp.c_proj), as "
                                     "peft's suffix match of 'c_proj' selects them"),
        "mlp": TargetGroup(("c_fc", "mlp.c_proj"), doc="both MLP projections"),
        "all-linear": TargetGroup(("c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"),
                                  doc="every linear layer of the blocks (not the LM head)"),
    },
}

# Encoders (RoBERTa, BERT, MiniLM): W_q, W_k, W_v are separate Linear layers named query, key,
# value; W_o is attention.output.dense; the MLP is intermediate.dense and (layer.)output.dense.
_ENCODER_GROUPS = {
    "qv": TargetGroup(("query", "value"), doc="W_q and W_v, as in the LoRA paper (r_q = r_v)"),
    "qkvo": TargetGroup(("query", "key", "value", "attention.output.dense"),
                        doc="all four attention projections"),
    "all-linear": TargetGroup(("query", "key", "value", "attention.output.dense", "intermediate.dense",
                               "output.dense"),
                              doc="every linear layer of the encoder blocks (not the head)"),
}
for _family in ("roberta", "bert", "xlm-roberta"):
    TARGET_GROUPS[_family] = _ENCODER_GROUPS
# DeBERTa v2/v3 names its attention projections query_proj, key_proj, value_proj (the
# relative-position projections pos_key_proj/pos_query_proj, when not shared, are not matched:
# peft matches ".key_proj" as a whole name part); the rest is laid out as BERT's.
TARGET_GROUPS["deberta-v2"] = {
    "qv": TargetGroup(("query_proj", "value_proj"), doc="W_q and W_v, as in the LoRA paper (r_q = r_v)"),
    "qkvo": TargetGroup(("query_proj", "key_proj", "value_proj", "attention.output.dense"),
                        doc="all four attention projections"),
    "all-linear": TargetGroup(("query_proj", "key_proj", "value_proj", "attention.output.dense",
                               "intermediate.dense", "output.dense"),
                              doc="every linear layer of the encoder blocks (not the head)"),
}

# Decoder LMs of the Llama layout (Llama, Qwen2, Qwen3, Mistral, Gemma, Gemma 2, Gemma 3 text-only
# as gemma-3-1b is; not the multimodal Gemma 3, whose vision tower names q_proj too): separate Linear
# layers self_attn.{q,k,v,o}_proj (with grouped-query attention k and v are narrower than q)
# and a gated MLP mlp.{gate,up,down}_proj. The LM head (lm_head) is in no group.
_ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP = ("gate_proj", "up_proj", "down_proj")
_DECODER_GROUPS = {
    "qv": TargetGroup(("q_proj", "v_proj"), doc="W_q and W_v, as in the LoRA paper"),
    "attn": TargetGroup(_ATTN, doc="all four attention projections"),
    "mlp": TargetGroup(_MLP, doc="the gated MLP's three projections"),
    "all-linear": TargetGroup(_ATTN + _MLP, doc="every linear layer of the blocks (not the LM head)"),
}
for _family in ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "gemma3_text"):
    TARGET_GROUPS[_family] = _DECODER_GROUPS

# ResNet (transformers' ResNetForImageClassification): every convolution is a Conv2d named
# ``...convolution``: the stem ``resnet.embedder.embedder.convolution``; in the stages each
# residual layer's ``layer.0``/``layer.1`` (``layer.2`` too in bottleneck ResNet-50+) and the
# downsampling ``shortcut.convolution``. The head is ``classifier.1`` (Linear after Flatten).
# peft's LoRA on a Conv2d: A is a conv with the layer's kernel (in -> r channels), B a 1x1
# conv (r -> out), so r x (in x k x k + out) parameters per layer.
# A newly initialised head (ImageNet's 1000 classes replaced by 10) is trained in full
# (``modules_to_save``), not through LoRA: see :func:`mark_new_head`.
_RESNET_STAGE_CONVS = ("layer.0.convolution", "layer.1.convolution", "shortcut.convolution")
TARGET_GROUPS["resnet"] = {
    "conv+fc": TargetGroup((*_RESNET_STAGE_CONVS, "classifier.1"),
                           doc="every Conv2d of the basic-block stages and the classifier linear"),
    "conv": TargetGroup(_RESNET_STAGE_CONVS, doc="every Conv2d of the basic-block stages"),
    "fc": TargetGroup(("classifier.1",), doc="the classifier linear only"),
    "all-conv": TargetGroup(("convolution",),
                            doc="every Conv2d: the stem and all stage convolutions (bottleneck too)"),
}

#: The peft wrapper class per task family, so that ``generate`` etc. behave. Image
#: classification has no peft task type: the plain ``PeftModel`` passes ``pixel_values``
#: through, and the head is named in ``modules_to_save``.
PEFT_TASK_TYPES = {"causal_lm": "CAUSAL_LM", "seq_cls": "SEQ_CLS", "image_cls": None}

#: Attribute a task sets on a model whose head it created fresh (see :func:`mark_new_head`).
NEW_HEAD_ATTR = "lorasweep_new_head"


def mark_new_head(model: Any, names: tuple[str, ...]) -> None:
    """Record that the modules ``names`` (e.g. ``("classifier",)``) were initialised fresh
    rather than loaded (ImageNet's 1000-class head replaced by a 10-class one). Such a head
    is trained in full (peft ``modules_to_save``): left frozen it would stay random, and LoRA
    on a random matrix only learns a rank-r correction to noise. Training it in full is also
    cheaper than LoRA at the study's rank: ResNet-18's 512 x 10 head has 5,130 parameters,
    LoRA r=14 on it 14 x (512 + 10) = 7,308. LoRA targets inside a new head are dropped."""
    setattr(model, NEW_HEAD_ATTR, tuple(names))


def new_head_of(model: Any) -> tuple[str, ...]:
    return tuple(getattr(model, NEW_HEAD_ATTR, ()))


def _lora_modules(group: TargetGroup, new_head: tuple[str, ...]) -> tuple[str, ...]:
    """The group's keys minus those inside a freshly initialised head."""
    return tuple(k for k in group.modules
                 if not any(k == h or k.startswith(h + ".") for h in new_head))



def target_groups_for(model_type: str) -> dict[str, TargetGroup]:
    return TARGET_GROUPS.get(model_type, {})


def resolve_targets(targets: str, model_type: str) -> TargetGroup:
    """A named group of ``model_type`` or a comma-separated list of module-name keys."""
    groups = target_groups_for(model_type)
    if targets in groups:
        return groups[targets]
    if targets == "all-linear":  # peft resolves this itself for any family
        return TargetGroup(("all-linear",), doc="peft's all-linear (every linear but the head)")
    keys = tuple(t.strip() for t in targets.split(",") if t.strip())
    return TargetGroup(keys, split_qkv=any(k.startswith("c_attn.") for k in keys))


# --------------------------------------------------------------------------- GPT-2 q/k/v split


def _split_qkv_class():
    import torch
    from torch import nn

    class SplitQKV(nn.Module):
        """GPT-2's fused ``c_attn`` (``Conv1D``, y = x @ W + b, W: d x 3d) as three
        ``nn.Linear(d, d)`` views q, k, v whose outputs are concatenated back."""

        def __init__(self, fused: nn.Module):
            super().__init__()
            weight, bias = fused.weight.data, fused.bias.data  # (d_in, 3 d), (3 d,)
            d_in, d3 = weight.shape
            d = d3 // 3
            self.nf = d3  # GPT2Attention reads nothing else, but keep Conv1D's attribute
            for i, name in enumerate(("q", "k", "v")):
                lin = nn.Linear(d_in, d, bias=True, dtype=weight.dtype, device=weight.device)
                # Conv1D keeps W as (in, out); nn.Linear as (out, in).
                lin.weight.data.copy_(weight[:, i * d:(i + 1) * d].t())
                lin.bias.data.copy_(bias[i * d:(i + 1) * d])
                lin.weight.requires_grad_(fused.weight.requires_grad)
                lin.bias.requires_grad_(fused.bias.requires_grad)
                setattr(self, name, lin)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.q(x), self.k(x), self.v(x)], dim=-1)

    return SplitQKV


def split_fused_qkv(model: Any) -> int:
    """Replace every GPT-2 self-attention ``c_attn`` by :class:`SplitQKV`; returns the count."""
    from transformers.pytorch_utils import Conv1D

    SplitQKV = _split_qkv_class()
    count = 0
    for module in list(model.modules()):
        fused = getattr(module, "c_attn", None)
        if isinstance(fused, Conv1D) and not getattr(module, "is_cross_attention", False):
            if fused.weight.shape[1] != 3 * fused.weight.shape[0]:
                continue
            module.c_attn = SplitQKV(fused)
            count += 1
    if count == 0:
        raise UserError("adapter.targets", "the q/k/v split needs GPT-2 style fused c_attn "
                                           "layers, and this model has none")
    return count


# --------------------------------------------------------------------------- validation


def _layer_names(model: Any) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def _adaptable_leaf_names(model: Any) -> list[str]:
    """Last name parts of the layers LoRA can adapt (for the suggestions in errors)."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    kinds = (nn.Linear, nn.Conv2d, nn.Embedding, Conv1D)
    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                   if n and isinstance(m, kinds)})


def check_targets(model: Any, group: TargetGroup, field: str = "adapter.targets") -> None:
    """Every key of ``group`` must match at least one module of ``model`` (cheap on a model
    built on the meta device)."""
    if group.modules == ("all-linear",):
        return
    names = _layer_names(model)
    leaf_names = _adaptable_leaf_names(model)
    model_type = getattr(getattr(model, "config", None), "model_type", "?")
    for key in group.modules:
        if not any(n == key or n.endswith("." + key) for n in names):
            groups = list(target_groups_for(model_type)) or ["all-linear"]
            raise UserError(field, f"no module named {key!r} in this {model_type} model"
                                   f"{did_you_mean(key, leaf_names)}; use a target group "
                                   f"({one_of(groups)}) or module names such as "
                                   f"{', '.join(leaf_names[:12])}")


def check_adapter_targets(skeleton: Any, targets: list[str]) -> None:
    """Validate each ``adapter.targets`` value a sweep may use against the model's module tree
    (``skeleton``: the model built on the meta device, so no weights are loaded)."""
    import copy

    model_type = skeleton.config.model_type
    for value in targets:
        group = resolve_targets(value, model_type)
        model = skeleton
        if group.split_qkv:
            model = copy.deepcopy(skeleton)
            split_fused_qkv(model)
        check_targets(model, group)
        _check_not_only_new_head(group, new_head_of(skeleton), value)


def _check_not_only_new_head(group: TargetGroup, new_head: tuple[str, ...], value: str) -> None:
    if new_head and group.modules != ("all-linear",) and not _lora_modules(group, new_head):
        raise UserError("adapter.targets", f"{value!r} only adapts the head ({', '.join(group.modules)}), "
                                           "which this model initialises fresh and trains in full; "
                                           "LoRA would have nothing to adapt: use conv+fc or conv")


# --------------------------------------------------------------------------- building


def peft_config(cfg: AdapterConfig, group: TargetGroup, *, task_type: str, conv1d: bool,
                new_head: tuple[str, ...] = (), meta: bool = False) -> Any:
    """The peft config of ``cfg.method`` (its registry entry, :mod:`trainables.methods`, says
    which peft config and arguments); None for ``full``. ``new_head``: freshly initialised
    modules, trained in full (``modules_to_save``) and not adapted. ``meta``: the model is on
    the meta device (counting only), so an initialisation that reads the weights is left out."""
    from trainables.methods import get_method

    method = get_method(cfg.method)
    if method.peft_type is None:
        return None
    modules = group.modules if group.modules == ("all-linear",) else _lora_modules(group, new_head)
    target = "all-linear" if modules == ("all-linear",) else list(modules)
    common = {"r": cfg.r, "target_modules": target, "bias": "none",
              # GPT-2's Conv1D stores W transposed; peft wants to be told (it warns and fixes
              # it per layer otherwise). Linear views from the qv split are ordinary Linear.
              "fan_in_fan_out": conv1d, "task_type": PEFT_TASK_TYPES[task_type],
              "modules_to_save": list(new_head) or None}
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


def layer_kind(module: Any) -> str | None:
    """The name of ``module``'s kind in :data:`trainables.methods.LAYER_KINDS`, or None for
    other modules. A 4-bit ``Linear4bit`` subclasses ``nn.Linear``, so it is a Linear here."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    for kind, cls in (("Conv1D", Conv1D), ("Linear", nn.Linear), ("Conv2d", nn.Conv2d),
                      ("Embedding", nn.Embedding)):
        if isinstance(module, cls):
            return kind
    return None


def check_layers(model: Any, method: Any, keys: tuple[str, ...], targets: str) -> None:
    """Every module ``keys`` selects must be of a kind ``method`` (a
    :class:`trainables.methods.Method`) can adapt; the message names the method and the layer."""
    if method.peft_type is None:
        return
    if keys == ("all-linear",):
        return  # peft picks Linear/Conv1D layers itself, which every method supports
    for name, module in model.named_modules():
        if not any(name == k or name.endswith("." + k) for k in keys):
            continue
        kind = layer_kind(module)
        if kind is not None and kind not in method.layer_kinds:
            from trainables.methods import METHOD_REGISTRY

            able = [m.name for m in METHOD_REGISTRY.values() if m.peft_type and kind in m.layer_kinds]
            raise UserError("adapter.method", f"{method.name!r} cannot adapt {kind} layers, and "
                                              f"adapter.targets={targets!r} selects {name!r} ({kind}); "
                                              f"{method.name} adapts {' and '.join(method.layer_kinds)} "
                                              f"layers; for {kind} use {one_of(able)}")


def check_adapter_methods(skeleton: Any, pairs: list[tuple[str, str]]) -> None:
    """Each (``adapter.method``, ``adapter.targets``) pair a sweep may use must fit the model:
    the method must be able to adapt every layer the targets select (VeRA: no Conv2d)."""
    import copy

    from trainables.methods import get_method

    model_type = skeleton.config.model_type
    split = None
    for method, targets in pairs:
        group = resolve_targets(targets, model_type)
        model = skeleton
        if group.split_qkv:
            if split is None:
                split = copy.deepcopy(skeleton)
                split_fused_qkv(split)
            model = split
        check_layers(model, get_method(method), group.modules, targets)


def _targets_conv1d(model: Any, group: TargetGroup) -> bool:
    from transformers.pytorch_utils import Conv1D

    for name, module in model.named_modules():
        if any(name == k or name.endswith("." + k) for k in group.modules):
            return isinstance(module, Conv1D)
    return False


def build_adapter_model(model: Any, cfg: AdapterConfig, *, task_type: str = "causal_lm") -> Any:
    """Freeze ``model`` and add the adapter ``cfg`` describes; returns the peft model. With
    ``method: full`` there is no adapter: every parameter of ``model`` trains and it is
    returned as it is."""
    from peft import get_peft_model

    from trainables.methods import get_method

    method = get_method(cfg.method)
    if method.peft_type is None:
        model.requires_grad_(True)
        return model
    model_type = model.config.model_type
    group = resolve_targets(cfg.targets, model_type)
    if group.split_qkv:
        split_fused_qkv(model)
    check_targets(model, group)
    check_layers(model, method, group.modules, cfg.targets)
    new_head = new_head_of(model)
    _check_not_only_new_head(group, new_head, cfg.targets)
    meta = any(p.is_meta for p in model.parameters())
    pcfg = peft_config(cfg, group, task_type=task_type, conv1d=_targets_conv1d(model, group),
                       new_head=new_head, meta=meta)
    import warnings

    with warnings.catch_warnings():
        # peft 0.21 reads transformers 5's deprecated ``is_gradient_checkpointing``: a warning
        # per call, on the driver's stderr too (budget counting before launch), about neither.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(model, pcfg)
    # What the method keeps fixed (LoRA-FA: every lora_A) is frozen, so trainable-parameter
    # counts and the optimizer agree.
    for name, p in peft_model.named_parameters():
        if any(part in name for part in method.frozen):
            p.requires_grad_(False)
    from trainables.devices import train_in_float32

    train_in_float32(peft_model)  # a head peft copied from a bfloat16/float16 base
    if method.init_from_weights and not meta:
        from trainables.standard_adapter import remember_initial

        remember_initial(peft_model)
    return peft_model


# --------------------------------------------------------------------------- warm start


def lora_weights(adapter_dir: str | Path) -> dict[str, Any]:
    """The LoRA matrices (``lora_A``/``lora_B``, and DoRA magnitudes) of a saved adapter; a
    classification head or other ``modules_to_save`` are left out (a new task's head has
    other labels)."""
    from safetensors.torch import load_file

    path = Path(adapter_dir) / "adapter_model.safetensors"
    if not path.is_file():
        raise UserError("adapter.init_from", f"{adapter_dir} has no adapter_model.safetensors")
    return {k: v for k, v in load_file(str(path)).items() if ".lora_" in k}


def warm_start(model: Any, adapter_dir: str | Path) -> int:
    """Copy a saved adapter's LoRA weights into ``model`` (a peft model with the same targets
    and rank); returns how many tensors were copied. Shapes must agree exactly."""
    from peft import get_peft_model_state_dict

    weights = lora_weights(adapter_dir)
    own = {k: v for k, v in get_peft_model_state_dict(model).items() if ".lora_" in k}
    missing = sorted(set(own) - set(weights))
    extra = sorted(set(weights) - set(own))
    if missing or extra:
        example = (missing or extra)[0]
        raise UserError("adapter.init_from", f"{adapter_dir} adapts other layers than this trial "
                                             f"({len(missing)} missing, {len(extra)} extra, e.g. {example}); "
                                             "use the same adapter.targets")
    for k, v in weights.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise UserError("adapter.init_from", f"{adapter_dir}: {k} has shape {tuple(v.shape)}, this "
                                                 f"trial's {tuple(own[k].shape)}; use the same adapter.r")
    # Copy in place (peft's set_peft_model_state_dict wants the head too): the saved names
    # are the parameter names without the adapter's name ("lora_A.weight" for
    # "lora_A.default.weight").
    import torch

    name = getattr(model, "active_adapter", "default")
    params = {k.replace(f".{name}.", ".").replace(f".{name}", ""): p for k, p in model.named_parameters()}
    with torch.no_grad():
        for k, v in weights.items():
            if k not in params:
                raise UserError("adapter.init_from", f"{adapter_dir}: {k} has no place in this model")
            params[k].copy_(v.to(params[k].dtype))
    return len(weights)


@dataclass(frozen=True)
class ParamCount:
    trainable: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0


def count_parameters(model: torch.nn.Module) -> ParamCount:
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":  # two 4-bit weights per stored byte (as peft counts)
            n *= 2 * getattr(getattr(p, "quant_storage", None), "itemsize", 1)
        total += n
        if p.requires_grad:
            trainable += n
    return ParamCount(trainable=trainable, total=total)


# --------------------------------------------------------------------------- save / load


def save_adapter(model: Any, out_dir: str | Path, *, meta: dict[str, Any],
                 state_dict: dict[str, Any] | None = None) -> Path:
    """peft ``save_pretrained`` (adapter weights only) plus what reloading needs to know;
    ``state_dict``: the model's parameters to save instead of its own (a sharded model's,
    gathered)."""
    out = Path(out_dir)
    model.save_pretrained(out, state_dict=state_dict)
    (out / ADAPTER_META).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return out


def needs_qkv_split(adapter_dir: str | Path) -> bool:
    cfg = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    targets = cfg.get("target_modules") or []
    if isinstance(targets, str):
        return False
    return any(str(t).startswith("c_attn.") for t in targets)


def load_adapter(base_model: Any, adapter_dir: str | Path, *, is_trainable: bool = False) -> Any:
    """Reload an adapter saved by :func:`save_adapter` onto a freshly loaded base model
    (with ``PeftModel.from_pretrained``), redoing the q/k/v split when it was used."""
    from peft import PeftModel

    if needs_qkv_split(adapter_dir):
        split_fused_qkv(base_model)
    return PeftModel.from_pretrained(base_model, str(adapter_dir), is_trainable=is_trainable)
