"""Offline stand-in for the TU Wien instruction mixture (``smoke:qlora_instruct``).

The group published its mixture as ``yikaiyang/qlora_instruct`` (000_ebca86e218baf75c.txt
§5.1.9): one ``train`` split, one ``text`` column, each row a conversation already rendered
with Llama 3.2 Instruct's chat template (Llama 3.1's format: a system turn opening with
``Cutting Knowledge Date: December 2023`` and ``Today Date: <the day it was rendered>``), the
seven sources concatenated in the order their notebook did (Unnatural Instructions, Alpaca,
Self-Instruct, LongForm, OIG-Chip2, OASST1, HH-RLHF; Flan v2 left out, §5.1.5).

This module writes the same layout from synthetic conversations (``trainables.offline.
tiny_llama``'s templates): ``train.jsonl`` only, one ``{"text": ...}`` line per conversation,
each source's shape kept: Unnatural Instructions' instruction as the system message,
Self-Instruct's ``Output:`` suffix, OASST1's multi-turn threads (some ending with an
unanswered user turn, which the rendering keeps), single exchanges for the others.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from trainables.offline.chat_synth import conversations

GENERATOR_VERSION = "1"
SOURCES = ("unnatural_instructions", "alpaca", "self_instruct", "longform", "chip2", "oasst1", "hh_rlhf")
#: The days the group's notebook rendered its sources on (the template prints the day).
DATES = ("29 Dec 2024", "31 Dec 2024", "04 Jan 2025")
_INSTRUCTIONS = ("Answer the question in one sentence.", "Reply briefly and politely.",
                 "Give the answer and nothing else.")


def llama3_text(turns: list[dict[str, str]], *, date: str) -> str:
    """Turns rendered as Llama 3.1's chat template renders them (system date header first; a
    system message of the turns goes after it)."""
    system = "".join(t["content"].strip() for t in turns if t["role"] == "system")
    head = f"Cutting Knowledge Date: December 2023\nToday Date: {date}\n\n{system}"
    parts = [f"<|start_header_id|>system<|end_header_id|>\n\n{head}<|eot_id|>"]
    parts += [f"<|start_header_id|>{t['role']}<|end_header_id|>\n\n{t['content'].strip()}<|eot_id|>"
              for t in turns if t["role"] != "system"]
    return "<|begin_of_text|>" + "".join(parts)


def _shaped(source: str, turns: list[dict[str, str]], rng: random.Random) -> list[dict[str, str]]:
    """A synthetic conversation in the shape the group gave ``source``."""
    if source == "oasst1":
        return turns
    first = [dict(t) for t in turns[:2]]  # one exchange
    if source == "unnatural_instructions":
        return [{"role": "system", "content": rng.choice(_INSTRUCTIONS)}, *first]
    if source == "self_instruct":
        first[0]["content"] += "\n\nOutput:"
    return first


def mixture(n_per_source: int, *, seed: int = 0) -> list[str]:
    """``n_per_source`` texts of each source, the sources one after the other."""
    rng = random.Random(seed)
    out = []
    for k, source in enumerate(SOURCES):
        trailing = 0.2 if source == "oasst1" else 0.0
        for turns in conversations(n_per_source, seed=seed * 100 + k, trailing_human=trailing):
            out.append(llama3_text(_shaped(source, turns, rng), date=rng.choice(DATES)))
    return out


def write_instruct_dataset(out_dir: str | Path, *, n_per_source: int, seed: int = 0) -> Path:
    """``train.jsonl`` of the synthetic mixture; returns ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"text": t}, ensure_ascii=False) for t in mixture(n_per_source, seed=seed)]
    (out / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
