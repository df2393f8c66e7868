"""Conversations as a model reads them: rendered with its chat template, or in the guanaco
form a model trained on guanaco text knows, and the tokens that end its answer."""

from __future__ import annotations

from typing import Any

#: Llama 3.1+ templates print "Today Date: <strftime_now>" unless given a date: fixed, so the
#: rendering (and the cache key) does not change with the day. Other templates ignore it.
TEMPLATE_KWARGS = {"date_string": "26 Jul 2024"}
GUANACO_PROMPT = "guanaco"
"""The prompt style of a model trained on guanaco text (``data.format: text``)."""


def render(tokenizer: Any, turns: list[dict[str, str]], *, generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=generation_prompt,
                                         **TEMPLATE_KWARGS)


def guanaco_prompt(messages: list[dict[str, str]]) -> str:
    """A prompt in the guanaco form (system messages have no place in it and are left out)."""
    names = {"user": "Human", "assistant": "Assistant"}
    return "".join(f"### {names[m['role']]}: {m['content']}" for m in messages if m["role"] in names) + "### Assistant:"


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]], style: str) -> list[int]:
    """A prompt's token ids in the model's chat template (its special tokens where the template
    writes them, as ``apply_chat_template`` tokenises), or in the guanaco form after the
    special tokens the tokenizer puts first (:func:`~trainables.models.text_ids`, as the
    guanaco text was trained)."""
    from trainables.models import text_ids

    if style != GUANACO_PROMPT:
        return tokenizer(render(tokenizer, messages, generation_prompt=True), add_special_tokens=False)["input_ids"]
    return text_ids(tokenizer, guanaco_prompt(messages))


def stop_ids(tokenizer: Any) -> list[int]:
    """Token ids that end an answer: eos, and the end-of-turn token when the vocabulary has one
    (Llama 3: ``<|eot_id|>``; the base model's eos is ``<|end_of_text|>``)."""
    ids = [tokenizer.eos_token_id]
    for tok in ("<|eot_id|>", "<|im_end|>", "<end_of_turn>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid not in ids:
            ids.append(tid)
    return [i for i in ids if i is not None]

