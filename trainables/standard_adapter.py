"""A trial's adapter in peft's standard layout: a directory that plain
``PeftModel.from_pretrained(base, path)`` loads onto the unmodified base model.

Most trials train in that layout already. Two do not, and are converted when saved:

* **The qv split of GPT-2** (:func:`trainables.adapters.split_fused_qkv`): the trial adapts
  views ``c_attn.q`` and ``c_attn.v`` that a plain GPT-2 does not have. The same update is a
  LoRA on the fused ``c_attn`` itself. With n of the three parts adapted at rank r (q and v:
  n = 2), A' = [A_q; A_v] (n r x d) and B' (3d x n r) holds B_q in q's rows and A_q's columns,
  B_v in v's rows and columns, zeros in k's rows, so B' A' = [B_q A_q; 0; B_v A_v]. peft scales
  by alpha / r (rsLoRA: alpha / sqrt(r)), so rank n r keeps the trial's scaling with alpha' =
  n alpha (rsLoRA: sqrt(n) alpha). DoRA's magnitude vector gets, in the rows of a part not
  adapted, the row norms of that part's weight: DoRA then scales those rows by m / ||W|| = 1.
  VeRA's per-layer vectors over its shared projections cannot be fused into one VeRA layer (the
  fused layer would slice other rows of the shared B and share one lambda_d between parts), so
  each VeRA layer first becomes the LoRA it computes: A = diag(lambda_d) A_shared, B =
  diag(lambda_b) B_shared, at scaling 1.
* **PiSSA and OLoRA** initialise A and B from the base weights and leave the trial's base as
  the residual W - s B0 A0. peft's own conversion (``save_pretrained(...,
  path_initial_model_for_weight_conversion=...)``) writes the trained update as a LoRA of rank
  2r on the unmodified W: A' = [A; A0], B' = [B, -B0], alpha doubled. It needs B0 and A0, which
  :func:`remember_initial` keeps when the adapter is built.

Full fine-tuning (``method: full``) has no adapter: peft cannot express it, so its directory is
the whole model (``save_pretrained``), loaded with ``AutoModel...from_pretrained``; the README
written beside the weights says which is which and how to load it.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: Attribute of a peft model holding its adapter's initial weights (PiSSA, OLoRA).
INITIAL_ATTR = "lorasweep_initial_adapter"
#: What ``from_pretrained`` loads the base with, per peft task type.
AUTO_CLASSES = {"CAUSAL_LM": "AutoModelForCausalLM", "SEQ_CLS": "AutoModelForSequenceClassification",
                None: "AutoModelForImageClassification"}
#: The auto classes whose base is given a new head of the trial's size where its own differs.
CLASSIFIERS = ("AutoModelForSequenceClassification", "AutoModelForImageClassification")
PARTS = ("q", "k", "v")
_SPLIT_KEY = re.compile(r"^(?P<layer>.+\.c_attn)\.(?P<part>[qkv])\.(?P<rest>.+)$")

#: The file beside an adapter that says how lorasweep built it.
ADAPTER_META = "lorasweep_adapter.json"


# --------------------------------------------------------------------------- what the trial trains


def _split_layers(model: Any) -> dict[str, Any]:
    """Name -> module of every GPT-2 ``c_attn`` replaced by q/k/v views in ``model``."""
    return {n: m for n, m in model.named_modules() if type(m).__name__ == "SplitQKV"}


def _lora_config(model: Any) -> Any:
    configs = getattr(model, "peft_config", None) or {}
    return configs.get("default")


def _mutates_base(config: Any) -> bool:
    """PiSSA and OLoRA (any of their variants) move part of W into the adapter."""
    init = str(getattr(config, "init_lora_weights", "")).lower()
    return init.startswith(("pissa", "olora"))


def is_standard(model: Any) -> bool:
    """Whether ``model`` (a peft model, or a plain model for ``method: full``) saves in peft's
    standard layout as it is."""
    config = _lora_config(model)
    return config is None or not (_split_layers(model) or _mutates_base(config))


def remember_initial(model: Any) -> None:
    """Keep the initial adapter weights of a PiSSA or OLoRA model (on the CPU, rank r each):
    converting the trained adapter to a plain LoRA needs them."""
    from peft import get_peft_model_state_dict

    if _mutates_base(_lora_config(model)):
        state = get_peft_model_state_dict(model)
        setattr(model, INITIAL_ATTR, {k: v.detach().to("cpu", copy=True) for k, v in state.items()})


# --------------------------------------------------------------------------- saving


def save_standard(model: Any, out: Path, *, meta: dict[str, Any],
                  state_dict: dict[str, Any] | None = None) -> None:
    """``model``'s adapter in peft's standard layout in ``out`` (created), with the meta file
    (``lorasweep_adapter.json``) and a README saying what the directory holds; ``state_dict``:
    the model's parameters to save instead of its own (a sharded model's, gathered: LoRA and
    the q/k/v fusion read nothing else)."""
    out = Path(out)
    config = _lora_config(model)
    notes: list[str] = []
    with _trial_state_kept(model):
        if is_standard(model):
            model.save_pretrained(out, state_dict=state_dict)
        else:
            notes = _save_standard_converted(model, out, config, state_dict)
    meta = {**meta, "layout": "peft", "notes": notes, "base_loading": base_loading(model)}
    (out / ADAPTER_META).write_text(json.dumps(meta, indent=2, sort_keys=True))
    (out / "README.md").write_text(readme(meta))


@contextmanager
def _trial_state_kept(model: Any) -> Iterator[None]:
    """Saving must leave the trial's training as it was. peft's conversion loads the initial
    adapter for inference, which initialises its layers (random draws: the trial's later dropout
    masks would change) and puts the whole model in eval mode (dropout off for the rest of
    training): the random state and every module's mode are put back, and a changed set of
    trainable parameters is an error."""
    import torch

    modes = {m: m.training for m in model.modules()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        for module, mode in modes.items():
            module.training = mode
    if trainable != {n for n, p in model.named_parameters() if p.requires_grad}:
        raise RuntimeError("saving the adapter changed which parameters are trained")


def _save_standard_converted(model: Any, out: Path, config: Any, state_dict: dict[str, Any] | None) -> list[str]:
    """The conversions of the module docstring, through a temporary directory; returns what
    was converted (for the README)."""
    notes = []
    with tempfile.TemporaryDirectory(prefix="lorasweep-adapter-") as tmp:
        saved = Path(tmp) / "saved"
        if _mutates_base(config):
            _save_converted(model, saved, Path(tmp))
            notes.append(f"{config.init_lora_weights!s} initialisation converted by peft "
                         "(path_initial_model_for_weight_conversion) to a LoRA of twice the rank "
                         "on the unmodified base weights")
        else:
            model.save_pretrained(saved, state_dict=state_dict)
        views = _split_layers(model)
        if views:
            notes.append(_fuse_saved(saved, model, views))
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(saved, out)
    return notes


def _save_converted(model: Any, saved: Path, tmp: Path) -> None:
    """peft's PiSSA/OLoRA conversion, from the initial weights :func:`remember_initial` kept."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    initial = getattr(model, INITIAL_ATTR, None)
    if initial is None:
        raise RuntimeError("the adapter's initial weights were not kept (remember_initial), so its "
                           "PiSSA/OLoRA update cannot be converted to a plain LoRA")
    # peft loads the initial adapter under the name of its folder, then deletes it again.
    folder = tmp / "initial" / "lorasweep_initial"
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in initial.items()}, str(folder / "adapter_model.safetensors"),
              metadata={"format": "pt"})
    model.save_pretrained(saved, path_initial_model_for_weight_conversion=str(folder))
    # peft 0.21's conversion (LoraModel.subtract_mutated_init) returns the lora_A/lora_B tensors
    # only: a head trained in full (modules_to_save) would be lost. It is put back as it is.
    path = saved / "adapter_model.safetensors"
    converted = load_file(str(path))
    others = {k: v for k, v in get_peft_model_state_dict(model).items() if ".lora_" not in k}
    if others.keys() - converted.keys():
        save_file({**converted, **{k: v.contiguous() for k, v in others.items()}}, str(path),
                  metadata={"format": "pt"})


def _fuse_saved(saved: Path, model: Any, views: dict[str, Any]) -> str:
    """Rewrite the adapter in ``saved`` from the q/k/v views to the fused ``c_attn``."""
    from peft import LoraConfig, VeraConfig
    from safetensors.torch import load_file, save_file

    config_data = json.loads((saved / "adapter_config.json").read_text())
    state = load_file(str(saved / "adapter_model.safetensors"))
    note = ""
    if config_data.get("peft_type") == "VERA":
        vera = VeraConfig.from_pretrained(str(saved))
        state, config = vera_as_lora(state, vera, model), _lora_from_vera(vera)
        note = "VeRA expressed as the LoRA it computes (A = diag(lambda_d) A_shared, B = diag(lambda_b) B_shared); "
    else:
        config = LoraConfig.from_pretrained(str(saved))
    norms = {name: {p: getattr(m, p).weight.detach() for p in PARTS} for name, m in views.items()}
    state, n = fuse_qkv_state(state, norms)
    fuse_qkv_config(config, n)
    for f in ("adapter_model.safetensors", "adapter_config.json"):
        (saved / f).unlink()
    save_file(state, str(saved / "adapter_model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(str(saved))
    return (note + f"trained on GPT-2's c_attn split into q/k/v views ({n} of them adapted); saved as "
            f"the same update on the fused c_attn: rank x{n}, alpha set to keep the trial's scaling")


# --------------------------------------------------------------------------- the q/k/v fusion


def fuse_qkv_state(state: dict[str, torch.Tensor], weights: dict[str, dict[str, torch.Tensor]]
                   ) -> tuple[dict[str, torch.Tensor], int]:
    """The LoRA (or DoRA) tensors of q/k/v views as tensors of the fused ``c_attn``; returns
    them and n, the number of parts adapted per layer. ``weights``: per fused layer (the
    module name the state's keys start with), each part's view weight (d x d_in), whose row
    norms are the DoRA magnitudes of the parts not adapted."""
    import torch

    layers: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = _SPLIT_KEY.match(key)
        if m is None:
            out[key] = value
        else:
            layers.setdefault(m["layer"], {}).setdefault(m["part"], {})[m["rest"]] = value
    counts = set()
    for layer, parts in layers.items():
        adapted = [p for p in PARTS if p in parts]
        counts.add(len(adapted))
        a = [parts[p]["lora_A.weight"] for p in adapted]
        b = [parts[p]["lora_B.weight"] for p in adapted]
        r, d = a[0].shape[0], b[0].shape[0]
        fused_b = b[0].new_zeros(3 * d, len(adapted) * r)
        for j, p in enumerate(adapted):
            i = PARTS.index(p)
            fused_b[i * d:(i + 1) * d, j * r:(j + 1) * r] = b[j]
        out[f"{layer}.lora_A.weight"] = torch.cat(a).contiguous()
        out[f"{layer}.lora_B.weight"] = fused_b
        if "lora_magnitude_vector" in parts[adapted[0]]:
            # DoRA's weight norm is per output row (peft: torch.linalg.norm(W + s B A, dim=1)).
            out[f"{layer}.lora_magnitude_vector"] = torch.cat([
                parts[p]["lora_magnitude_vector"] if p in parts
                else torch.linalg.norm(weights[layer][p], dim=1).to(b[0].dtype) for p in PARTS])
    if len(counts) != 1:
        raise ValueError(f"the q/k/v views adapt different parts in different layers ({sorted(counts)})")
    return out, counts.pop()


def fuse_qkv_config(config: Any, n: int) -> None:
    """``config`` (a peft ``LoraConfig`` of the views) made the fused layer's: target ``c_attn``
    at rank n r with the same scaling; other targets keep their rank (``rank_pattern``)."""
    keys = sorted(config.target_modules) if not isinstance(config.target_modules, str) else None
    if keys is None or config.rank_pattern or config.alpha_pattern:
        raise ValueError("the q/k/v fusion handles a list of target modules without rank or alpha patterns")
    others = [k for k in keys if not k.startswith("c_attn.")]
    r, alpha = config.r * n, config.lora_alpha * (math.sqrt(n) if config.use_rslora else n)
    config.target_modules = set(others) | {"c_attn"}
    config.fan_in_fan_out = True  # c_attn is a transformers Conv1D (W stored as in x out)
    if others:
        config.rank_pattern, config.alpha_pattern = {"c_attn": r}, {"c_attn": alpha}
    else:
        config.r, config.lora_alpha = r, alpha


def vera_as_lora(state: dict[str, torch.Tensor], config: Any, model: Any) -> dict[str, torch.Tensor]:
    """The LoRA tensors a VeRA adapter's layers compute: lambda_b * (B (lambda_d * (A x))) =
    (diag(lambda_b) B)(diag(lambda_d) A) x, A and B the shared projections cut to the layer."""
    shared_a, shared_b = state["base_model.vera_A"], state["base_model.vera_B"]
    out: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    for key, value in state.items():
        if key.endswith(".vera_lambda_d"):
            layer = key.removesuffix(".vera_lambda_d")
            lambda_b = state[f"{layer}.vera_lambda_b"]
            d_in = modules[layer].in_features
            out[f"{layer}.lora_A.weight"] = (value[:, None] * shared_a[:, :d_in]).contiguous()
            out[f"{layer}.lora_B.weight"] = (lambda_b[:, None] * shared_b[:lambda_b.shape[0], :]).contiguous()
        elif ".vera_" not in key and not key.startswith("base_model.vera_"):
            out[key] = value
    return out


def _lora_from_vera(vera: Any) -> Any:
    from peft import LoraConfig

    # Scaling 1 (alpha = r): the LoRA matrices carry the VeRA vectors already.
    return LoraConfig(r=vera.r, lora_alpha=vera.r, target_modules=vera.target_modules,
                      lora_dropout=vera.vera_dropout, fan_in_fan_out=vera.fan_in_fan_out, bias=vera.bias,
                      modules_to_save=vera.modules_to_save, task_type=vera.task_type,
                      base_model_name_or_path=vera.base_model_name_or_path)


# --------------------------------------------------------------------------- the README


def base_loading(model: Any) -> dict[str, Any]:
    """How to load the base ``model`` was built on: the ``transformers`` auto class and the
    ``from_pretrained`` arguments that give it the trial's head (JSON data)."""
    config = getattr(model, "config", None)
    lora = _lora_config(model)
    task_type = getattr(lora, "task_type", None) if lora is not None else None
    auto = auto_class_of(model) if lora is None else AUTO_CLASSES.get(str(task_type) if task_type else None)
    kwargs: dict[str, Any] = {}
    if auto != "AutoModelForCausalLM" and config is not None and getattr(config, "num_labels", None):
        kwargs["num_labels"] = config.num_labels
        if getattr(config, "problem_type", None):
            kwargs["problem_type"] = config.problem_type
        names = {str(k): v for k, v in (getattr(config, "id2label", None) or {}).items()}
        if names and names != {str(i): f"LABEL_{i}" for i in range(len(names))}:
            kwargs["id2label"] = names  # label2id, its inverse, is derived on loading (base_kwargs)
        if auto == "AutoModelForSequenceClassification" and getattr(config, "pad_token_id", None) is not None:
            kwargs["pad_token_id"] = config.pad_token_id  # the token a decoder's classifier pools before
        if auto in CLASSIFIERS:
            kwargs["ignore_mismatched_sizes"] = True  # a base's head of another size is replaced
    return {"auto_class": auto, "kwargs": kwargs}


def base_kwargs(loading: dict[str, Any]) -> dict[str, Any]:
    """The ``from_pretrained`` keyword arguments of a recorded :func:`base_loading`: ``id2label``
    keyed by the integer ids (JSON keeps them as text), and ``label2id`` its inverse."""
    kwargs = dict(loading["kwargs"])
    if "id2label" in kwargs:
        kwargs["id2label"] = {int(k): v for k, v in kwargs["id2label"].items()}
        kwargs["label2id"] = {v: k for k, v in kwargs["id2label"].items()}
    return kwargs


def load_snippet(base: str, loading: dict[str, Any], *, adapter: bool, path: str = "<this directory>",
                 dtype: str | None = None, decoding: bool = False) -> str:
    """The Python lines that load a saved directory: the base with the trial's head, then the
    adapter; or (``adapter`` False) the whole model at ``path``. ``dtype`` (a torch dtype's
    name): loaded in it. ``decoding``: an adapter's model also gets the ``generation_config.json``
    at ``path``."""
    auto = loading["auto_class"]
    torch = "import torch\n" if dtype else ""
    cast = f", dtype=torch.{dtype}" if dtype else ""
    if not adapter:
        return f"{torch}from transformers import {auto}\nmodel = {auto}.from_pretrained({path!r}{cast})"
    kwargs = cast + "".join(f", {k}={v!r}" for k, v in base_kwargs(loading).items())
    imports = f"{auto}, GenerationConfig" if decoding else auto
    return (f"{torch}from peft import PeftModel\nfrom transformers import {imports}\n"
            f"base = {auto}.from_pretrained({base!r}{kwargs})\n"
            f"model = PeftModel.from_pretrained(base, {path!r})" +
            (f"\nmodel.generation_config = GenerationConfig.from_pretrained({path!r})" if decoding else ""))


def auto_class_of(model: Any) -> str:
    """The ``transformers`` auto class that loads a model of ``model``'s class."""
    name = type(model).__name__
    for suffix, auto in (("ForSequenceClassification", "AutoModelForSequenceClassification"),
                         ("ForImageClassification", "AutoModelForImageClassification"),
                         ("LMHeadModel", "AutoModelForCausalLM"), ("ForCausalLM", "AutoModelForCausalLM")):
        if name.endswith(suffix):
            return auto
    return "AutoModel"


def readme(meta: dict[str, Any]) -> str:
    """The README of a saved adapter (or, for full fine-tuning, of the saved model): what it
    is, how it was converted (``meta["notes"]``) and how to load it (in the trial's
    ``meta["dtype"]``, where given)."""
    base = str(meta.get("base_model", ""))
    full = meta.get("method") == "full"
    if full:
        what = ("Full fine-tuning: every weight of the model was trained. peft cannot express this "
                "as an adapter, so this directory is the whole model (transformers save_pretrained).")
    else:
        what = (f"A peft adapter in peft's standard layout: `PeftModel.from_pretrained` loads it onto "
                f"the unmodified base model `{base}`.")
    lines = ["---", "library_name: " + ("transformers" if full else "peft"), f"base_model: {base}",
             "tags: [lorasweep" + ("" if full else ", lora") + "]", "---", "",
             f"# {meta.get('method', 'adapter')} on {meta.get('task', '?')}", "", what, ""]
    lines += [f"- {note}" for note in meta.get("notes", [])] + ([""] if meta.get("notes") else [])
    lines += ["```python", load_snippet(base, meta["base_loading"], adapter=not full, dtype=meta.get("dtype")),
              "```", ""]
    return "\n".join(lines)
