"""How an export is used as the trial used it: the decoding its ``generate`` defaults to
(``generation_config.json``) and the model card's loading code (the trial's dtype)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Settings only sampling reads (transformers refuses to save them beside ``do_sample`` false).
SAMPLING_ONLY = ("temperature", "top_p", "top_k", "min_p", "top_h", "typical_p", "epsilon_cutoff", "eta_cutoff")
#: Settings only beam search reads (refused likewise beside ``num_beams`` 1).
BEAM_ONLY = ("length_penalty", "early_stopping")


def save_generation_config(out: Path, cfg: Any, tokenizer: Any, model: Any = None) -> bool:
    """``generation_config.json`` in ``out`` holding the decoding of the trial's final evaluation
    (the task's :meth:`~trainables.tasks.base.Task.decoding`: greedy or beam search with the
    ``eval`` settings, its stop and pad tokens) over the generation config the trial's model had
    (the base's: its bos, ...), so that ``generate`` with its defaults decodes as the trial did.
    The base's sampling settings (Llama 3.2's ``do_sample``, temperature 0.6, top_p 0.9), which
    greedy and beam search never read, are left out, as are beam search's under greedy decoding.
    ``model`` (a merged model) gets the same config. Returns whether one was written: a task that
    does not generate text writes none."""
    import copy

    from trainables.tasks.registry import get_task

    settings = get_task(cfg.task).decoding(cfg, tokenizer)
    if settings is None:
        return False
    config = copy.deepcopy(model.generation_config) if model is not None else _base_generation_config(out, cfg)
    config.update(**settings)
    unread = (SAMPLING_ONLY if not config.do_sample else ()) + (BEAM_ONLY if config.num_beams in (None, 1) else ())
    for name in unread:
        setattr(config, name, None)
    config._from_model_config = False  # the trial's decoding, not defaults taken from config.json
    config.save_pretrained(out)
    if model is not None:
        model.generation_config = config
    return True


def _base_generation_config(out: Path, cfg: Any) -> Any:
    """The generation config a trial's model started with: a fully fine-tuned model's own (in
    ``out``), else the base's ``generation_config.json``, else what ``from_pretrained`` derives
    from the base's config.json (its bos and eos)."""
    from transformers import AutoConfig, GenerationConfig

    from trainables.models import model_source

    if (out / "generation_config.json").is_file():
        return GenerationConfig.from_pretrained(out)
    try:
        return GenerationConfig.from_pretrained(model_source(cfg), revision=cfg.model.revision)
    except OSError:  # a base saved without one
        return GenerationConfig.from_model_config(AutoConfig.from_pretrained(model_source(cfg),
                                                                             revision=cfg.model.revision))


def default_dtype(source: str, revision: str | None = None) -> str | None:
    """The dtype ``from_pretrained(source)`` loads in without a ``dtype`` argument (transformers
    5: ``"auto"``, the ``dtype`` or ``torch_dtype`` of config.json), or None where config.json
    names none (then the weights' own dtype decides) or cannot be read."""
    from transformers import PretrainedConfig

    try:
        config, _ = PretrainedConfig.get_config_dict(source, revision=revision)
    except OSError:
        return None
    named = config.get("dtype") or config.get("torch_dtype")
    return str(named).removeprefix("torch.") if named else None


def loading_section(cfg: Any, meta: dict[str, Any], *, adapter: bool, directory: Path | None) -> list[str]:
    """The card's "Loading" section for the export in ``directory``: the code that loads it in
    the trial's ``model.dtype`` (named where the default would load another), and for an
    adapter its ``generation_config.json`` (which peft does not read), when the export has one."""
    from trainables.models import model_source
    from trainables.standard_adapter import load_snippet

    base = model_source(cfg)
    loads = base if adapter else (str(directory) if directory is not None else None)
    named = default_dtype(loads, cfg.model.revision if adapter else None) if loads is not None else None
    decodes = directory is not None and (directory / "generation_config.json").is_file()
    code = load_snippet(base, meta["base_loading"], adapter=adapter,
                        dtype=None if named == cfg.model.dtype else cfg.model.dtype, decoding=adapter and decodes)
    lines = ["## Loading", "", "```python", code, "```", ""]
    if decodes:
        lines += ["`generation_config.json` holds the decoding of the trial's final evaluation (greedy or beam "
                  "search with the sweep's `eval` settings, never sampling; its stop and pad tokens): `generate` "
                  "with its defaults decodes as the trial did." + (" peft does not read it: the code above sets it."
                                                                    if adapter else ""), ""]
    return lines
