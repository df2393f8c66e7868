"""Reading instruction-tuning conversations: the forms they are published in, and the splits.

A record is one conversation in one of three forms:

* ``{"text": "### Human: ...### Assistant: ..."}``: the guanaco form
  (``timdettmers/openassistant-guanaco``, QLoRA's OASST1);
* ``{"text": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\\n\\n...<|eot_id|>..."}``:
  a conversation already rendered with Llama 3's chat template, as the TU Wien reproduction
  published its instruction mixture (``yikaiyang/qlora_instruct``: one ``text`` column, one
  ``train`` split; 000_ebca86e218baf75c.txt §5.1.9);
* ``{"messages": [{"role": "system" | "user" | "assistant", "content": ...}, ...]}`` (an
  assistant's answer may not be empty).

Sources: a hub dataset (``datasets.load_dataset``; splits ``train`` and ``test``) or a local
directory of JSONL files through the same parsing: ``train.jsonl`` and, optionally,
``eval.jsonl`` (or the guanaco hub files ``openassistant_best_replies_{train,eval}.jsonl``, so
that a local copy of ``timdettmers/openassistant-guanaco`` is such a directory). A local copy
of another hub dataset (``hf download --repo-type dataset ID --local-dir DIR``: a card listing
its configs, or parquet files) is read as its hub name is.

Splits (:func:`split_conversations`): the validation set is the source's own (hub ``test``,
local ``eval.jsonl``) unless ``data.holdout_size`` holds out that many training conversations
(needed when the source has none); ``data.train_fraction`` then keeps a seeded fraction of the
training conversations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.errors import UserError, did_you_mean, one_of
from trainables.tasks.base import jsonl_records

if TYPE_CHECKING:
    from trainables.config import TrialConfig

HUB_SPLITS = {"train": "train", "val": "test"}
LOCAL_FILES = {"train": ("train.jsonl", "openassistant_best_replies_train.jsonl"),
               "val": ("eval.jsonl", "openassistant_best_replies_eval.jsonl")}
ROLES = ("system", "user", "assistant")
#: Speaker names of OpenAI-style and ShareGPT turns -> chat-template roles.
SPEAKERS = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
LLAMA3_TOKENS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
EMPTY_ANSWER = "the assistant's answer is empty (a target of nothing)"

_TURN = re.compile(r"### (Human|Assistant):")
#: One Llama 3 turn: header, blank line, content, end of turn.
_LLAMA3_TURN = re.compile(r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>", re.S)


@dataclass(frozen=True)
class Conversation:
    """One record. ``turns``: role/content turns (guanaco text, messages); ``text``: the text
    as published (guanaco and Llama 3 text; None for messages); ``form``: ``guanaco``,
    ``llama3`` or ``messages``; ``where``: its file and line (or hub row), for refusals."""

    form: str
    turns: tuple[dict[str, str], ...] = ()
    text: str | None = None
    where: str = field(default="", compare=False)


def parse_guanaco(text: str) -> list[dict[str, str]]:
    """``### Human: a### Assistant: b`` -> ``[{"role": "user", "content": "a"}, {"role":
    "assistant", "content": "b"}]`` (contents stripped; text before the first marker ignored)."""
    parts = _TURN.split(text)
    turns = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        turns.append({"role": "user" if speaker == "Human" else "assistant", "content": content.strip()})
    return turns


def llama3_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the assistant turns of a Llama 3 chat text: each answer's content and
    its ``<|eot_id|>`` (the header is the prompt the model is given)."""
    return [(m.start(2), m.end()) for m in _LLAMA3_TURN.finditer(text) if m.group(1) == "assistant"]


def answered(turns: list[dict[str, str]]) -> tuple[list[dict[str, str]], int]:
    """The conversation without its trailing user turns, and how many were dropped."""
    end = len(turns)
    while end and turns[end - 1]["role"] != "assistant":
        end -= 1
    return turns[:end], len(turns) - end


def asked(turns: list[dict[str, str]]) -> list[dict[str, str]]:
    """The conversation without the assistant turns before its first user turn (a greeting
    answers nothing, so it is no target); system turns are kept."""
    first_user = next((k for k, t in enumerate(turns) if t["role"] == "user"), len(turns))
    return [t for k, t in enumerate(turns) if k >= first_user or t["role"] != "assistant"]


def to_conversation(obj: Any, where: str) -> Conversation:
    """One record (a JSONL line or a hub row) in any of the three forms."""
    text = obj.get("text") if isinstance(obj, dict) else None
    if isinstance(text, str):
        if _LLAMA3_TURN.search(text):
            return Conversation("llama3", text=text, where=where)
        turns = parse_guanaco(text)
        if not turns:
            raise UserError("data.source", f"{where}: text has neither '### Human:' / '### Assistant:' "
                                           "turns nor Llama 3 chat turns")
        return Conversation("guanaco", tuple(turns), text, where)
    if isinstance(obj, dict) and isinstance(obj.get("messages"), list):
        turns = []
        for i, m in enumerate(obj["messages"]):
            if not (isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)):
                raise UserError("data.source", f"{where}: messages[{i}]: expected {{\"role\": "
                                               f"{'|'.join(ROLES)}, \"content\": string}}")
            turns.append({"role": m["role"], "content": m["content"]})
            if empty_answer(turns[-1]):
                raise UserError("data.source", f"{where}: messages[{i}]: {EMPTY_ANSWER}")
        return Conversation("messages", tuple(turns), where=where)
    raise UserError("data.source", f"{where}: expected {{\"text\": \"### Human: ...### Assistant: ...\"}}, "
                                   "{\"text\": <a Llama 3 chat text>} or {\"messages\": [{\"role\", \"content\"}, ...]}")


def read_jsonl(path: Path) -> list[Conversation]:
    """Every conversation of a local JSONL file; the first bad line is named."""
    out = [to_conversation(obj, f"{path.name} line {n}") for n, obj in jsonl_records(path, "data.source")]
    if not out:
        raise UserError("data.source", f"{path}: no conversations")
    return out


def local_files(source: Path) -> dict[str, Path]:
    """``{"train": path[, "val": path]}`` of a local dataset directory."""
    if not source.is_dir():
        raise UserError("data.source", f"{source} is not a directory; expected one with train.jsonl "
                                       "(and eval.jsonl)")
    out = {}
    for split, names in LOCAL_FILES.items():
        found = [source / n for n in names if (source / n).is_file()]
        if found:
            out[split] = found[0]
    if "train" not in out:
        raise UserError("data.source", f"{source} lacks {' or '.join(LOCAL_FILES['train'])} and is not a "
                                       "local copy of a hub dataset (`hf download --repo-type dataset ID "
                                       "--local-dir DIR`)")
    return out


def hub_copy_of(source: str) -> Path | None:
    """``source`` as a local copy of a hub dataset, read as its hub name is; None when it is
    not one, or when it holds a training JSONL file (a local directory, read first)."""
    from trainables.hub import hub_copy

    return hub_copy(source, official=LOCAL_FILES["train"])


def load_conversations(cfg: TrialConfig) -> dict[str, list[Conversation]]:
    """``{"train"[, "val"]}`` conversations from the local files or the hub (or a local copy of
    a hub dataset)."""
    from trainables.hub import read_hub_dataset

    source = Path(cfg.data.source).expanduser()
    copy = hub_copy_of(cfg.data.source)
    if source.exists() and copy is None:
        return {split: read_jsonl(path) for split, path in local_files(source).items()}
    dd = read_hub_dataset(cfg.data.source, revision=cfg.data.revision, copy=copy)
    if "train" not in dd:
        raise UserError("data.source", f"{cfg.data.source} has no 'train' split")
    return {split: [to_conversation(row, f"{cfg.data.source}[{hub}][{i}]") for i, row in enumerate(dd[hub])]
            for split, hub in HUB_SPLITS.items() if hub in dd}


def check_split(cfg: TrialConfig, has_val: bool) -> None:
    if not has_val and cfg.data.holdout_size is None:
        names = " or ".join(LOCAL_FILES["val"])
        raise UserError("data.holdout_size", f"{cfg.data.source} has no validation split ({names}, or a hub "
                                             f"'{HUB_SPLITS['val']}' split); set how many training "
                                             "conversations to hold out for the validation loss")


def split_conversations(data: dict[str, list[Any]], cfg: TrialConfig) -> dict[str, list[Any]]:
    """Train and validation conversations after ``data.holdout_size`` and ``data.train_fraction``.

    The hold-out is the one ``datasets``' ``train_test_split(test_size=k, shuffle=True,
    seed=split_seed)`` makes (the first ``k`` of the seeded permutation ``np.random.
    default_rng(seed).permutation(n)``), so a recipe that split its data that way gets the same
    two sets. The fraction keeps ``floor(m * train_fraction)`` of the ``m`` remaining
    conversations, drawn with the same seed; both keep the source's order.
    """
    import numpy as np

    d = cfg.data
    check_split(cfg, "val" in data)
    train, val = data["train"], data.get("val")
    if d.holdout_size is not None:
        if d.holdout_size >= len(train):
            raise UserError("data.holdout_size", f"{d.holdout_size} is not fewer than the "
                                                 f"{len(train)} training conversations")
        perm = np.random.default_rng(d.split_seed).permutation(len(train))
        keep = np.sort(perm[d.holdout_size:])
        val = [train[i] for i in np.sort(perm[:d.holdout_size])]
        train = [train[i] for i in keep]
    if d.train_fraction < 1.0:
        n = int(len(train) * d.train_fraction)
        if n < 1:
            raise UserError("data.train_fraction", f"{d.train_fraction} of {len(train)} conversations is none")
        pick = np.sort(np.random.default_rng(d.split_seed).permutation(len(train))[:n])
        train = [train[i] for i in pick]
    return {"train": train, "val": val}


def speaker_turn(m: Any) -> tuple[dict[str, str] | None, str]:
    """An OpenAI-style ``{role, content}`` or ShareGPT ``{from, value}`` turn as a role/content
    turn (ShareGPT's ``human``/``gpt`` as ``user``/``assistant``), and ``""``; when it is
    neither, None and why not (what is expected, and the speaker its role is closest to)."""
    role = m.get("role", m.get("from")) if isinstance(m, dict) else None
    content = m.get("content", m.get("value")) if isinstance(m, dict) else None
    if role not in SPEAKERS or not isinstance(content, str):
        return None, (f"expected {{role, content}} or {{from, value}} with a role of {one_of(SPEAKERS)}"
                      f"{did_you_mean(str(role), SPEAKERS)}")
    return {"role": SPEAKERS[role], "content": content}, ""


def empty_answer(turn: dict[str, str]) -> bool:
    """Whether ``turn`` is an assistant turn with nothing to learn (empty or blank)."""
    return turn["role"] == "assistant" and not turn["content"].strip()


def prompt_messages(obj: Any, where: str) -> list[dict[str, str]]:
    """One ``eval.prompts`` line as the turns the model is asked: ``{"prompt": text}`` or
    ``{"messages": [turn, ...]}`` (turns as :func:`speaker_turn` reads them) ending with a user
    turn."""
    expected = ("expected {\"id\", \"prompt\": text} or {\"id\", \"messages\": [{\"role\": "
                "system|user|assistant, \"content\": text}, ...]} ending with a user turn")
    if isinstance(obj, dict) and isinstance(obj.get("prompt"), str):
        if not obj["prompt"].strip():
            raise UserError("eval.prompts", f"{where}: the prompt is empty")
        return [{"role": "user", "content": obj["prompt"]}]
    if not (isinstance(obj, dict) and isinstance(obj.get("messages"), list) and obj["messages"]):
        raise UserError("eval.prompts", f"{where}: {expected}")
    turns = []
    for j, m in enumerate(obj["messages"]):
        turn, _ = speaker_turn(m)
        if turn is None:
            raise UserError("eval.prompts", f"{where}: messages[{j}]: {expected} (ShareGPT {{from, value}} "
                                            "turns are read alike)")
        turns.append(turn)
    if turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
        raise UserError("eval.prompts", f"{where}: the last turn is not a user's question; {expected}")
    return turns


def read_prompts(path: Path) -> list[dict[str, Any]]:
    """The fixed evaluation prompts: ``{"id", "prompt"}`` or ``{"id", "messages"}`` lines
    (:func:`prompt_messages`); each keeps ``where`` (file and line) for later refusals."""
    if not path.is_file():
        raise UserError("eval.prompts", f"prompt file {path} does not exist")
    out = []
    for n, obj in jsonl_records(path, "eval.prompts"):
        where = f"{path.name} line {n}"
        messages = prompt_messages(obj, where)
        out.append({"id": str(obj.get("id", n)), "messages": messages, "where": where})
    if not out:
        raise UserError("eval.prompts", f"{path}: no prompts")
    return out
