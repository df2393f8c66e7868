"""Instruction tuning (QLoRA's Guanaco, the TU Wien instruction mixture), a causal-LM task.

Data: conversations in the guanaco form (``timdettmers/openassistant-guanaco``), rendered
with Llama 3's chat template (``yikaiyang/qlora_instruct``) or as ``messages``, from the hub or
local JSONL files, with an optional hold-out and training fraction
(:mod:`trainables.tasks.conversations`).

Formats (``data.format``):

* ``chat`` (the default): each conversation as the model's chat template renders it
  (``apply_chat_template``; Llama 3's ``<|start_header_id|>role<|end_header_id|>\\n\\n
  content<|eot_id|>``), or as published when it is a Llama 3 chat text already; the loss is on
  the assistant tokens only (each answer and its end-of-turn token, so the model learns to
  stop). A turn's span is what the template adds between rendering the turns before it with
  the generation prompt and rendering them with it; token positions come from the fast
  tokenizer's character offsets, so any template that renders turn by turn works (one that
  does not is refused). Assistant turns before the first user turn (a greeting, answering
  nothing) and trailing user turns (questions nobody answered) are dropped; a conversation
  with no answer left is skipped.
* ``text``: the text as published (``messages`` rendered with the template), after the
  special tokens the tokenizer puts before every text of its own accord (Llama 3's
  ``<|begin_of_text|>``, not doubled where the text starts with it; none for GPT-2) and with
  EOS after it, the loss on every token: what QLoRA's ``qlora.py`` does with OASST1 on its
  LLaMA models (``input: ''``, ``output: text``, ``train_on_source False``; the tokenizer's
  ``bos_token`` before the text, the token LLaMA's tokenizer puts there itself) and the TU
  Wien script with its mixture (``tokenizer(text)`` in a plain causal-LM trainer). A model
  trained on guanaco text is prompted in that form (``### Human: ...### Assistant:``), after
  the same leading tokens. The ``chat`` format has the special tokens the chat template
  writes, as ``apply_chat_template`` tokenises (Llama 3's template writes its BOS).

Too long: cut at ``data.max_length`` tokens from the end (counted; skipped when no labelled
token is left).

Evaluation: the validation loss on the held-out conversations (what ASHA compares); at the
end of a full trial, every ``eval.compare_models`` model answers a fixed prompt list
(``prompts/guanaco_eval.jsonl``, or ``eval.prompts``), and ``eval.judge`` grades the answers
when one is given (:mod:`trainables.tasks.answers`, :mod:`trainables.judge`), else "not judged".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainables.errors import UserError, first_line
from trainables.tasks.base import MetricSpec, Prepared, packed
from trainables.tasks.causal_lm import IGNORE, CausalLMTask, fixed_subset, pad_collate
from trainables.tasks.chat import GUANACO_PROMPT, prompt_ids, render
from trainables.tasks.conversations import (
    LLAMA3_TOKENS,
    Conversation,
    answered,
    asked,
    llama3_spans,
    load_conversations,
    local_files,
    parse_guanaco,
    read_jsonl,
    read_prompts,
    split_conversations,
)

if TYPE_CHECKING:
    import torch

    from trainables.config import TrialConfig

__all__ = ["GuanacoTask", "answered", "parse_guanaco", "read_jsonl", "encode_conversation"]

#: Bump when preprocessing changes, so cached tokenisations are rebuilt.
PREP_VERSION = 4
DEFAULT_PROMPTS = Path(__file__).resolve().parent / "prompts" / "guanaco_eval.jsonl"


# --------------------------------------------------------------------------- encoding


def assistant_spans(tokenizer: Any, turns: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn in it."""
    full = render(tokenizer, turns)
    spans = []
    for i, turn in enumerate(turns):
        if turn["role"] != "assistant" or i == 0:
            continue
        before = render(tokenizer, turns[:i], generation_prompt=True)
        upto = render(tokenizer, turns[:i + 1])
        if not (upto.startswith(before) and full.startswith(upto)):
            raise UserError("model.name_or_path", "the tokenizer's chat template does not render a "
                                                  "conversation turn by turn (a prefix of turns is not a "
                                                  "prefix of the text), so assistant tokens cannot be located")
        spans.append((len(before), len(upto)))
    return full, spans


def encode_text(tokenizer: Any, text: str, spans: list[tuple[int, int]] | None) -> tuple[list[int], list[int]]:
    """Token ids of ``text`` and a 0/1 mask of the tokens inside ``spans``; ``spans`` None: the
    whole text is the target, after the special tokens the tokenizer puts first (once:
    :func:`~trainables.models.text_ids`; Llama 3's BOS, nothing for GPT-2) and with EOS after."""
    if spans is None:
        from trainables.models import text_ids

        eos = tokenizer.eos_token_id
        ids = text_ids(tokenizer, text) + ([eos] if eos is not None else [])
        return ids, [1] * len(ids)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(e > s and any(a <= s and e <= b for a, b in spans)) for s, e in enc["offset_mapping"]]
    return list(enc["input_ids"]), mask


def encode_conversation(tokenizer: Any, turns: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation and a 0/1 mask of the assistant tokens."""
    return encode_text(tokenizer, *assistant_spans(tokenizer, turns))


def training_text(tokenizer: Any, conv: Conversation, fmt: str) -> tuple[str, list[tuple[int, int]] | None, int]:
    """What one conversation trains on under ``data.format`` ``fmt``: the text, the character
    spans of its targets (None: every token; empty: nothing to learn) and how many trailing
    user turns were dropped."""
    if fmt == "text":
        return (conv.text if conv.text is not None else render(tokenizer, list(conv.turns))), None, 0
    if conv.form == "llama3":
        return conv.text, llama3_spans(conv.text), 0
    turns, dropped = answered(asked(list(conv.turns)))
    if not any(t["role"] == "assistant" for t in turns):
        return "", [], dropped
    full, spans = assistant_spans(tokenizer, turns)
    return full, spans, dropped


def template_refusal(e: Exception, where: str, model: str) -> UserError:
    """A chat template's ``raise_exception`` (a system turn it does not support, roles that do
    not alternate) as one line naming the row and the template's message."""
    return UserError("model.name_or_path", f"{model}'s chat template refuses {where or 'a conversation'}: "
                                           f"{first_line(e, limit=None)}")


def rendered(tokenizer: Any, conv: Conversation, fmt: str, model: str) -> tuple[str, list[tuple[int, int]] | None,
                                                                                  int]:
    """:func:`training_text`, a template's refusal a UserError naming the conversation."""
    from jinja2.exceptions import TemplateError

    try:
        return training_text(tokenizer, conv, fmt)
    except TemplateError as e:
        raise template_refusal(e, conv.where, model) from None


def prompt_of(tokenizer: Any, prompt: dict[str, Any], style: str, model: str) -> list[int]:
    """A prompt's token ids (:func:`~trainables.tasks.chat.prompt_ids`), a template's refusal a
    UserError naming the prompt."""
    from jinja2.exceptions import TemplateError

    try:
        return prompt_ids(tokenizer, prompt["messages"], style)
    except TemplateError as e:
        raise template_refusal(e, prompt.get("where") or f"prompt {prompt['id']}", model) from None


#: The most conversations the check before launch renders whole (:func:`check_rendering`).
RENDER_CHECK_LIMIT = 5_000


def renders_with_template(conv: Conversation, fmt: str) -> bool:
    """Whether training on ``conv`` under ``data.format`` ``fmt`` renders it with the chat
    template (not for a text as published: guanaco text under ``text``, Llama 3 chat text)."""
    return conv.text is None if fmt == "text" else conv.form != "llama3"


def prompt_style(data: dict[str, list[Conversation]], fmt: str) -> str:
    """How the fixed prompts are put to the model: in the guanaco form when it trains on
    guanaco text as published, else in its chat template."""
    return GUANACO_PROMPT if fmt == "text" and all(c.form == "guanaco" for c in data["train"]) else "chat"


def prepared_subset(data: dict[str, list[Conversation]], prompts: list[dict[str, Any]],
                    cfg: TrialConfig) -> tuple[dict[str, list[Conversation]], list[dict[str, Any]]]:
    """The conversations and prompts the preparation encodes: ``data.train_limit``,
    ``data.val_limit`` and ``data.test_limit`` applied."""
    limits = {"train": cfg.data.train_limit, "val": cfg.data.val_limit}
    subset = {split: fixed_subset(convs, limits[split]) for split, convs in data.items()}
    return subset, prompts if cfg.data.test_limit is None else prompts[:cfg.data.test_limit]


def check_rendering(tokenizer: Any, data: dict[str, list[Conversation]], prompts: list[dict[str, Any]],
                    model: str, *, fmt: str = "chat", style: str = "chat", limit: int = RENDER_CHECK_LIMIT) -> None:
    """Before launch: the chat template renders the conversations in ``data`` as the
    preparation renders them, and every prompt. The first ``limit`` conversations (in split
    order) are rendered whole, so a template that refuses some content is caught; past
    ``limit``, one conversation of each sequence of roles (what a template mostly refuses by:
    a system turn, non-alternation)."""
    seen: set[tuple[str, ...]] = set()
    n = 0
    for convs in data.values():
        for conv in convs:
            if not renders_with_template(conv, fmt):
                continue
            roles = tuple(t["role"] for t in conv.turns)
            if n < limit or roles not in seen:
                seen.add(roles)
                n += 1
                rendered(tokenizer, conv, fmt, model)
    for prompt in prompts:
        prompt_of(tokenizer, prompt, style, model)


def check_llama3_tokens(tokenizer: Any, data: dict[str, list[Conversation]], model: str) -> None:
    """Llama 3 chat texts need a tokenizer that reads their markers as single special tokens."""
    if not any(c.form == "llama3" for convs in data.values() for c in convs):
        return
    missing = [t for t in LLAMA3_TOKENS if len(tokenizer(t, add_special_tokens=False)["input_ids"]) != 1]
    if missing:
        raise UserError("model.name_or_path", f"the data is Llama 3 chat text and {model}'s tokenizer "
                                              f"has no special token {missing[0]}; use a Llama 3 model")


class ChatExamples:
    """Token sequences with a per-token loss mask (assistant tokens = 1); items ``(ids, mask)``.
    Stored as flat ``.npy`` arrays plus offsets, memory-mapped by every trial."""

    def __init__(self, flat: np.ndarray, mask: np.ndarray, offsets: np.ndarray):
        self.flat, self.mask, self.offsets = flat, mask, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.flat[a:b], self.mask[a:b]

    def num_target_tokens(self) -> int:
        return int(self.mask.sum())

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def build(cls, seqs: list[tuple[list[int], list[int]]]) -> ChatExamples:
        flat, offsets = packed([ids for ids, _ in seqs])
        mask, _ = packed([mask for _, mask in seqs], np.uint8)
        return cls(flat, mask, offsets)

    def save(self, directory: Path, name: str) -> None:
        np.save(directory / f"{name}.ids.npy", self.flat)
        np.save(directory / f"{name}.mask.npy", self.mask)
        np.save(directory / f"{name}.offsets.npy", self.offsets)

    @classmethod
    def load(cls, directory: Path, name: str) -> ChatExamples:
        return cls(np.load(directory / f"{name}.ids.npy", mmap_mode="r"),
                   np.load(directory / f"{name}.mask.npy", mmap_mode="r"),
                   np.load(directory / f"{name}.offsets.npy"))


def masked_collate(pad_id: int) -> Callable[[list[tuple[np.ndarray, np.ndarray]]], dict[str, Any]]:
    """Right-padded batch; labels are the ids on assistant tokens and -100 elsewhere."""
    return pad_collate(pad_id, labels_of=_on_assistant_tokens)


def _on_assistant_tokens(ids: torch.Tensor, mask: np.ndarray) -> torch.Tensor:
    import torch

    return torch.where(torch.from_numpy(np.asarray(mask, dtype=np.bool_)), ids, torch.full_like(ids, IGNORE))


# --------------------------------------------------------------------------- the task


class GuanacoTask(CausalLMTask):
    final_eval_on_every_rank = False  # answers from every compared model, then the judge
    name = "guanaco"
    formats = ("chat", "text")
    labels_of = staticmethod(_on_assistant_tokens)
    final_metrics = (MetricSpec("judge_score", "max", "judge", "{:.3f}"),)
    """The trial's own model's mean grade; each compared model's is ``judge_score/<model>``."""

    def _prompts_path(self, cfg: TrialConfig) -> Path:
        """``eval.prompts``: a JSONL path, or the name of a list in ``prompts/`` (``tuwien_queries``)."""
        if not cfg.eval.prompts:
            return DEFAULT_PROMPTS
        bundled = DEFAULT_PROMPTS.parent / f"{cfg.eval.prompts}.jsonl"
        return bundled if bundled.is_file() else Path(cfg.eval.prompts).expanduser()

    # ----------------------------------------------------------- before launch
    def check(self, cfg: TrialConfig) -> None:
        from trainables.errors import did_you_mean, one_of
        from trainables.hub import check_dataset_source, check_hub_copy, looks_local
        from trainables.tasks.conversations import check_split, hub_copy_of

        fmt = cfg.data.format or self.default_format()
        if fmt not in self.formats:
            raise UserError("data.format", f"instruction tuning accepts {one_of(self.formats)}, got "
                                           f"{fmt!r}{did_you_mean(str(fmt), self.formats)}")
        if not looks_local(cfg.data.source):  # a hub dataset is read when the data is prepared
            check_dataset_source(cfg.data.source, revision=cfg.data.revision)
            self.check_answering(cfg)
            return
        source = Path(cfg.data.source).expanduser()
        if not source.exists():
            raise UserError("data.source", f"data directory {cfg.data.source} does not exist")
        copy = hub_copy_of(cfg.data.source)
        if copy is not None:
            check_hub_copy(copy, None, ("train",))
        # The conversations as the source gives them (a copy read as the hub dataset is): the
        # hold-out, the fraction and the limits pick among them when the data is prepared.
        data = (load_conversations(cfg) if copy is not None
                else {split: read_jsonl(path) for split, path in local_files(source).items()})
        check_split(cfg, "val" in data)
        self.check_answering(cfg)
        prompts = read_prompts(self._prompts_path(cfg))[:cfg.data.test_limit]
        self.check_template(cfg, data, prompts, fmt=fmt, style=prompt_style(data, fmt))

    def check_template(self, cfg: TrialConfig, data: dict[str, list[Conversation]], prompts: list[dict[str, Any]],
                       *, fmt: str = "chat", style: str = "chat") -> None:
        """Before launch: the model's chat template renders the conversations and the prompts
        as the preparation renders them (:func:`check_rendering`). Nothing is loaded when none
        of them is rendered with the template; for a local model a check that passed is
        memoised on the model's files, the data and the settings
        (:func:`~trainables.cache.memoised_on_model`), so an unchanged sweep planned again need
        not import transformers."""
        from trainables.cache import memoised_on_model
        from trainables.models import model_source
        from trainables.schema import to_dict

        if style != "chat" and not any(renders_with_template(c, fmt) for convs in data.values() for c in convs):
            return

        def run() -> bool:
            from trainables.models import load_tokenizer

            tokenizer = load_tokenizer(cfg)
            check_chat_tokenizer(tokenizer, cfg)
            check_llama3_tokens(tokenizer, data, cfg.model.name_or_path)
            check_rendering(tokenizer, data, prompts, cfg.model.name_or_path, fmt=fmt, style=style)
            return True

        memoised_on_model("chat-template-check", model_source(cfg), run,
                          libraries=("transformers", "tokenizers", "jinja2"), data=self._key(cfg, None),
                          settings=to_dict(cfg.model), fmt=fmt, style=style)

    def check_answering(self, cfg: TrialConfig) -> None:
        """Before launch: the fixed prompts, the compared models and the judge."""
        from trainables.hub import check_model_source
        from trainables.judge import TUNED, check_judge_ready

        read_prompts(self._prompts_path(cfg))
        for name in cfg.eval.compare_models:
            if name != TUNED:
                check_model_source(name, field="eval.compare_models")
        check_judge_ready(cfg.eval)  # a callable is imported now, not after training

    def _key(self, cfg: TrialConfig, tokenizer_id: str | None) -> str:
        from trainables.cache import file_digest, fingerprint, source_identity
        from trainables.tasks.conversations import hub_copy_of

        d = cfg.data
        data_id = source_identity(d.source, d.revision, local_files, copy=hub_copy_of(d.source))
        return fingerprint({
            "task": self.name, "version": PREP_VERSION, "data": data_id,
            "tokenizer": tokenizer_id, "format": d.format or self.default_format(),
            "max_length": d.max_length, "prompts": file_digest(self._prompts_path(cfg)),
            "limits": [d.train_limit, d.val_limit, d.test_limit],
            "split": [d.holdout_size, d.train_fraction, d.split_seed],
        })

    def _build(self, cfg: TrialConfig, tokenizer: Any, out: Path, *, key: str, progress: bool) -> None:
        check_chat_tokenizer(tokenizer, cfg)
        data = split_conversations(load_conversations(cfg), cfg)
        check_llama3_tokens(tokenizer, data, cfg.model.name_or_path)
        fmt = cfg.data.format or self.default_format()
        write_prepared(out, tokenizer, data, read_prompts(self._prompts_path(cfg)), cfg, fmt=fmt,
                       style=prompt_style(data, fmt), stats={"data_key": key}, progress=progress)

    # ----------------------------------------------------------- in the trial
    def load_prepared(self, path: Path, cfg: TrialConfig) -> Prepared:
        return Prepared(train=ChatExamples.load(path, "train"), val=ChatExamples.load(path, "val"),
                        test=json.loads((path / "test.json").read_text()),
                        stats=json.loads((path / "stats.json").read_text()), path=path)

    def decoding(self, cfg: TrialConfig, tokenizer: Any) -> dict[str, Any] | None:
        """The answers' settings: they stop at eos or at the chat template's end-of-turn token."""
        from trainables.tasks.causal_lm import decoding_settings

        return decoding_settings(cfg.eval, tokenizer, chat=True)

    def final_eval(self, model: Any, tokenizer: Any, data: Prepared, cfg: TrialConfig, *,
                   device: torch.device, out_dir: Path, session: Any = None) -> dict[str, Any]:
        from trainables.tasks.answers import answer_and_judge

        return answer_and_judge(model, tokenizer, data.test, cfg, device=device, out_dir=out_dir)


def check_chat_tokenizer(tokenizer: Any, cfg: TrialConfig) -> None:
    """The chat format needs the tokenizer's chat template, and locating the assistant tokens
    needs a fast tokenizer's character offsets."""
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("model.name_or_path", f"{cfg.model.name_or_path}'s tokenizer has no chat "
                                              "template (tokenizer_config.json chat_template)")
    if not getattr(tokenizer, "is_fast", False):
        raise UserError("model.name_or_path", "locating assistant tokens needs a fast tokenizer "
                                              "(character offsets)")


def write_prepared(out: Path, tokenizer: Any, data: dict[str, list[Conversation]], prompts: list[dict[str, Any]],
                   cfg: TrialConfig, *, fmt: str, style: str, stats: dict[str, Any], progress: bool) -> None:
    """What :meth:`GuanacoTask.load_prepared` opens: the train and val conversations encoded
    (``data.train_limit``/``val_limit`` applied), the first ``data.test_limit`` of the fixed
    ``prompts`` in the prompt ``style`` (``test.json``), and ``stats`` with the counts."""
    data, prompts = prepared_subset(data, prompts, cfg)
    for split, convs in data.items():
        examples, counts = encode_split(tokenizer, convs, cfg, fmt, split=split, progress=progress)
        examples.save(out, split)
        stats.update({f"{split}_{k}": v for k, v in counts.items()})
    (out / "test.json").write_text(json.dumps({
        "ids": [p["id"] for p in prompts],
        "prompts": [p["messages"][-1]["content"] for p in prompts],
        "messages": [p["messages"] for p in prompts],
        "prompt_ids": [prompt_of(tokenizer, p, style, cfg.model.name_or_path) for p in prompts],
        "prompt_style": style,
    }, ensure_ascii=False))
    stats["test_prompts"] = len(prompts)
    (out / "stats.json").write_text(json.dumps(stats, indent=2))


def encode_split(tokenizer: Any, convs: list[Conversation], cfg: TrialConfig, fmt: str, *, split: str,
                 progress: bool) -> tuple[ChatExamples, dict[str, int]]:
    """One split's examples and counts (kept, target tokens, what was dropped, cut or skipped)."""
    from tqdm.auto import tqdm

    seqs, n = [], {"dropped": 0, "unanswered": 0, "truncated": 0, "too_long": 0}
    for conv in tqdm(convs, desc=f"tokenising {split} conversations", disable=not progress, leave=False,
                     delay=1.0):
        text, spans, dropped = rendered(tokenizer, conv, fmt, cfg.model.name_or_path)
        n["dropped"] += dropped
        if spans is not None and not spans:
            n["unanswered"] += 1
            continue
        ids, mask = encode_text(tokenizer, text, spans)
        if len(ids) > cfg.data.max_length:
            n["truncated"] += 1
            ids, mask = ids[:cfg.data.max_length], mask[:cfg.data.max_length]
            if not any(mask):
                n["too_long"] += 1
                continue
        seqs.append((ids, mask))
    if not seqs:
        raise UserError("data.source", f"no usable {split} conversation ({len(convs)} read: "
                                       f"{n['unanswered']} without an answer, {n['too_long']} with no answer "
                                       f"token within data.max_length)")
    examples = ChatExamples.build(seqs)
    return examples, {"examples": len(examples), "target_tokens": examples.num_target_tokens(),
                      "trailing_user_turns_dropped": n["dropped"], "skipped_unanswered": n["unanswered"],
                      "truncated": n["truncated"], "skipped_too_long": n["too_long"]}
