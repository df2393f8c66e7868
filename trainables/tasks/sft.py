"""Supervised fine-tuning on your own instruction or chat data (``sft``), a causal-LM task.

Data (:mod:`trainables.tasks.user_data`): a JSONL, JSON or CSV file, a directory of them per
split, or a hub dataset. Each row is one conversation, read through a column mapping
(``data.columns``) in one of the forms LLaMA-Factory and Axolotl datasets come in:

* **Alpaca** ``{prompt: instruction, query: input, response: output}``, the default for the
  roles ``data.columns`` leaves out (``query`` and ``system`` are optional), as LLaMA-Factory's
  ``columns`` default them: the user turn is the prompt
  and the query joined by a newline (as LLaMA-Factory renders them), the assistant turn the
  response;
* **messages**: a list of ``{"role": "system"|"user"|"assistant", "content"}`` turns (OpenAI
  / TRL) or ShareGPT's ``{"from": "system"|"human"|"gpt", "value"}``, the default when the
  data has a ``messages`` or ``conversations`` column (in a CSV cell, as JSON text).

An optional ``system`` column (``data.columns.system``; by default a column named ``system``,
in either form) becomes the system turn. Every conversation is rendered with the
tokenizer's chat template and the loss is on the assistant tokens only (each answer and its
end-of-turn token), encoded as the ``guanaco`` task encodes them (:mod:`trainables.tasks.guanaco`).

Validation: the source's validation split (else its test split), or ``data.holdout_size`` held
out of train, or a seeded 10% of train (:func:`~trainables.tasks.user_data.train_and_val`);
its loss is reported at every evaluation (ASHA's metric). At the end of a full trial the model
answers the first ``data.test_limit`` (default 8) validation prompts, or ``eval.prompts``;
the answers go to ``outputs/generations.jsonl``, graded by ``eval.judge`` when one is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.errors import UserError
from trainables.tasks.conversations import (
    EMPTY_ANSWER,
    Conversation,
    answered,
    asked,
    empty_answer,
    read_prompts,
    speaker_turn,
)
from trainables.tasks.guanaco import GuanacoTask, check_chat_tokenizer, prepared_subset, write_prepared
from trainables.tasks.user_data import Split, cell, check_roles, column_mapping, load_splits, train_and_val

if TYPE_CHECKING:
    from trainables.config import TrialConfig

#: Bump when preprocessing changes, so cached tokenisations are rebuilt.
PREP_VERSION = 2
ROLES = ("prompt", "query", "response", "system", "messages")
ALPACA = {"prompt": "instruction", "query": "input", "response": "output"}
MESSAGE_COLUMNS = ("messages", "conversations")
DEFAULT_TEST_PROMPTS = 8


def default_columns(columns: tuple[str, ...], given: dict[str, str]) -> dict[str, str]:
    """LLaMA-Factory's defaults for the roles ``given`` leaves out: a messages column when the
    data has one (and no prompt/response role is given), else Alpaca's names that it has; and
    in either form a column named ``system`` as the system turn."""
    system = {"system": "system"} if "system" in columns and "system" not in given else {}
    if "messages" in given:
        return system
    messages = next((c for c in MESSAGE_COLUMNS if c in columns), None)
    if messages and not {"prompt", "query", "response"} & set(given):
        return {"messages": messages, **system}
    return {**{role: column for role, column in ALPACA.items() if column in columns}, **system}


def columns_of(cfg: TrialConfig, splits: dict[str, Split]) -> dict[str, str]:
    """The checked columns of an ``sft`` source: ``data.columns`` over the defaults."""
    given = check_roles(cfg.data.columns, ROLES, "sft")
    chosen = {**default_columns(splits["train"].columns, given), **given}
    if "messages" in chosen and ({"prompt", "query", "response"} & set(chosen)):
        raise UserError("data.columns", "give either a messages column or prompt/response columns, not both")
    return column_mapping(chosen, splits, required=("messages",) if "messages" in chosen else ("prompt", "response"))


def _messages(split: Split, i: int, column: str) -> list[dict[str, str]]:
    value = split.rows[i].get(column)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, RecursionError):  # not a list of turns: refused below
            pass
    if not (isinstance(value, list) and value):
        raise UserError("data.columns.messages", f"{split.at(i)}: column {column!r} is not a list of turns")
    turns = []
    for j, m in enumerate(value):
        turn, why = speaker_turn(m)
        if turn is None:
            raise UserError("data.columns.messages", f"{split.at(i)}: {column}[{j}]: {why}")
        if empty_answer(turn):
            raise UserError("data.columns.messages", f"{split.at(i)}: {column}[{j}]: {EMPTY_ANSWER}")
        turns.append(turn)
    return turns


def conversation(split: Split, i: int, columns: dict[str, str]) -> Conversation:
    """Row ``i`` as role/content turns."""
    system = cell(split, i, columns["system"], "system", optional=True) if "system" in columns else ""
    turns = [{"role": "system", "content": system}] if system else []
    if "messages" in columns:
        turns += _messages(split, i, columns["messages"])
        if system and any(t["role"] == "system" for t in turns[1:]):
            raise UserError("data.columns.system", f"{split.at(i)}: has a system turn in column "
                                                   f"{columns['messages']!r} and in column {columns['system']!r}; "
                                                   "give it in one")
    else:
        query = cell(split, i, columns["query"], "query", optional=True) if "query" in columns else ""
        user = "\n".join(t for t in (cell(split, i, columns["prompt"], "prompt"), query) if t)
        turns += [{"role": "user", "content": user},
                  {"role": "assistant", "content": cell(split, i, columns["response"], "response")}]
    return Conversation("messages", tuple(turns), where=split.at(i))


def validation_prompts(convs: list[Conversation], n: int) -> list[dict[str, Any]]:
    """The first ``n`` validation conversations as prompts: their turns before the last answer."""
    out = []
    for k, conv in enumerate(convs):
        turns, _ = answered(asked(list(conv.turns)))
        if len(out) == n:
            break
        if len(turns) > 1 and turns[-2]["role"] == "user":
            out.append({"id": f"val-{k}", "messages": turns[:-1], "where": conv.where})
    return out


class SFTTask(GuanacoTask):
    """Chat SFT on a user's data; encoding, batches and the final answers are the guanaco task's."""

    name = "sft"
    formats = ("chat",)
    data_settings = ("columns",)

    def conversations(self, cfg: TrialConfig, splits: dict[str, Split]) -> tuple[dict[str, list[Conversation]],
                                                                                  dict[str, Any]]:
        """Train and validation conversations, and what to record about them."""
        columns = columns_of(cfg, splits)
        convs = {role: [conversation(s, i, columns) for i in range(len(s.rows))] for role, s in splits.items()}
        val_role = "val" if "val" in convs else "test"  # a source's test split validates when it is all it has
        data, origin = train_and_val(convs["train"], convs.get(val_role), cfg)
        where = {"val": "validation split", "test": "test split"}[val_role] if origin == "source" else origin
        return data, {"columns": columns, "val_from": where}

    def check(self, cfg: TrialConfig) -> None:
        from trainables.tasks.user_data import check_source

        if cfg.data.format not in (None, "chat"):
            raise UserError("data.format", f"sft renders every conversation with the chat template: leave it "
                                           f"null (or 'chat'), got {cfg.data.format!r}")
        data, _ = self.conversations(cfg, check_source(cfg))
        self.check_answering(cfg)
        self.check_template(cfg, *prepared_subset(data, self._prompts(cfg, data), cfg))  # what is encoded

    def _prompts(self, cfg: TrialConfig, data: dict[str, list[Conversation]]) -> list[dict[str, Any]]:
        """``eval.prompts``, else the first ``data.test_limit`` validation conversations."""
        if cfg.eval.prompts:
            return read_prompts(self._prompts_path(cfg))
        return validation_prompts(data["val"], cfg.data.test_limit or DEFAULT_TEST_PROMPTS)

    def _key(self, cfg: TrialConfig, tokenizer_id: str | None) -> str:
        from trainables.cache import file_digest, fingerprint
        from trainables.tasks.user_data import source_identity

        d = cfg.data
        return fingerprint({
            "task": self.name, "version": PREP_VERSION, "data": source_identity(cfg), "columns": d.columns,
            "tokenizer": tokenizer_id, "max_length": d.max_length,
            "prompts": file_digest(self._prompts_path(cfg)) if cfg.eval.prompts else None,
            "limits": [d.train_limit, d.val_limit, d.test_limit],
            "split": [d.holdout_size, d.train_fraction, d.split_seed],
        })

    def _build(self, cfg: TrialConfig, tokenizer: Any, out: Path, *, key: str, progress: bool) -> None:
        check_chat_tokenizer(tokenizer, cfg)
        data, record = self.conversations(cfg, load_splits(cfg))
        write_prepared(out, tokenizer, data, self._prompts(cfg, data), cfg, fmt="chat", style="chat",
                       stats={"data_key": key, **record}, progress=progress)
