"""Synthetic assistant conversations (capitals, sums, translations, animal facts) as role and
content turns, and the guanaco dataset's text form of them: the offline stand-ins' data."""

from __future__ import annotations

import json
import random
from pathlib import Path

_COUNTRIES = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"),
              ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Norway", "Oslo"),
              ("Canada", "Ottawa"), ("Chile", "Santiago"), ("Greece", "Athens"), ("India", "New Delhi")]
_WORDS = {"French": {"hello": "bonjour", "water": "eau", "cat": "chat", "bread": "pain"},
          "Spanish": {"hello": "hola", "water": "agua", "cat": "gato", "bread": "pan"},
          "German": {"hello": "hallo", "water": "Wasser", "cat": "Katze", "bread": "Brot"}}
_ANIMALS = {"cat": "sleep for about fifteen hours a day", "owl": "can turn their heads very far",
            "whale": "breathe air through a blowhole", "bee": "dance to show where flowers are",
            "camel": "store fat in their humps", "octopus": "have three hearts"}


def _exchange(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(4)
    if kind == 0:
        country, capital = rng.choice(_COUNTRIES)
        return (rng.choice([f"What is the capital of {country}?", f"Which city is the capital of {country}?"]),
                f"The capital of {country} is {capital}.")
    if kind == 1:
        a, b = rng.randrange(2, 50), rng.randrange(2, 50)
        return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."
    if kind == 2:
        lang = rng.choice(sorted(_WORDS))
        word = rng.choice(sorted(_WORDS[lang]))
        return f"How do I say {word} in {lang}?", f"In {lang}, {word} is \"{_WORDS[lang][word]}\"."
    animal = rng.choice(sorted(_ANIMALS))
    return f"Tell me a fact about the {animal}.", f"Here is one: {animal}s {_ANIMALS[animal]}."


def conversations(n: int, *, seed: int, trailing_human: float = 0.1) -> list[list[dict[str, str]]]:
    """``n`` synthetic conversations as role/content turns (1-2 exchanges, a polite follow-up
    sometimes; a fraction ending with an unanswered human turn)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        turns: list[dict[str, str]] = []
        for _ in range(rng.choice([1, 1, 2])):
            q, a = _exchange(rng)
            turns += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        if rng.random() < 0.25:
            turns += [{"role": "user", "content": "Thank you!"},
                      {"role": "assistant", "content": "You are welcome! Ask me anything else."}]
        if rng.random() < trailing_human:
            turns.append({"role": "user", "content": _exchange(rng)[0]})
        out.append(turns)
    return out


def to_guanaco(turns: list[dict[str, str]]) -> str:
    """Role/content turns in the guanaco dataset's text form."""
    names = {"user": "Human", "assistant": "Assistant"}
    return "".join(f"### {names[t['role']]}: {t['content']}" for t in turns)


def write_guanaco_dataset(out_dir: str | Path, *, n_train: int, n_eval: int, seed: int = 0,
                          trailing_human: float = 0.1) -> Path:
    """``train.jsonl`` and ``eval.jsonl`` in the guanaco form; returns ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, n, s in (("train", n_train, seed), ("eval", n_eval, seed + 1)):
        lines = [json.dumps({"text": to_guanaco(c)}, ensure_ascii=False)
                 for c in conversations(n, seed=s, trailing_human=trailing_human)]
        (out / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
