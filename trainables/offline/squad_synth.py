"""A synthetic SQuAD v1.1 dataset in the official JSON layout, for tests and ``--preset smoke``.

The official files (``train-v1.1.json``, ``dev-v1.1.json``) are::

    {"version": "1.1", "data": [
      {"title": "...", "paragraphs": [
        {"context": "...", "qas": [
          {"id": "...", "question": "...",
           "answers": [{"text": "...", "answer_start": 123}, ...]}]}]}]}

with every answer a span of its paragraph (``context[answer_start:][:len(text)] == text``),
one answer per training question and usually three (often overlapping, e.g. "the city centre"
and "city centre") per dev question. This module writes such files about the restaurants of
the synthetic E2E data (:mod:`trainables.offline.e2e_synth`), so the smoke GPT-2, whose
tokenizer and pretraining saw that vocabulary, can learn to copy the right span. Everything is
a pure function of ``seed``.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from pathlib import Path

from trainables.offline.e2e_synth import NAMES, NEAR, VALUES

# Bump when the generated files change in any way (the smoke cache is keyed on it).
GENERATOR_VERSION = "1"

FILES = {"train": "train-v1.1.json", "dev": "dev-v1.1.json"}

_FOOD = tuple(v for v in VALUES["food"] if v != "Fast food")  # not "Fast food food"
_PRICE = VALUES["priceRange"]
_RATING = VALUES["customer rating"]
_TYPES = VALUES["eatType"]
_AREAS = VALUES["area"]

# A fact as a sentence with one answer slot ("{}"), the question it answers, and the extra
# gold answers an annotator of the dev set would also accept (prefix, answer, suffix around
# the span: "the city centre" for "city centre").
_FACTS: dict[str, dict[str, Sequence]] = {
    "eatType": {"values": _TYPES,
                "sentences": ["{name} is a {}.", "{name} is a popular {}."],
                "questions": ["What kind of place is {name}?", "What type of venue is {name}?"],
                "alts": [("a ", "")]},
    "food": {"values": _FOOD,
             "sentences": ["{name} serves {} food.", "At {name} you can eat {} food."],
             "questions": ["What food does {name} serve?", "What kind of food is served at {name}?"],
             "alts": [("", " food")]},
    "area": {"values": _AREAS,
             "sentences": ["{name} is located in the {}.", "You can find {name} in the {}."],
             "questions": ["Where is {name} located?", "Which area is {name} in?"],
             "alts": [("the ", "")]},
    "near": {"values": NEAR,
             "sentences": ["{name} is near {}.", "{name} is close to {}."],
             "questions": ["What is {name} near?", "What is close to {name}?"],
             "alts": [("near ", "")]},
    "priceRange": {"values": _PRICE,
                   "sentences": ["Prices at {name} are {}.", "{name} has a {} price range."],
                   "questions": ["What is the price range of {name}?", "How expensive is {name}?"],
                   "alts": []},
    "rating": {"values": _RATING,
               "sentences": ["Customers rate {name} as {}.", "The customer rating of {name} is {}."],
               "questions": ["What rating do customers give {name}?", "How is {name} rated?"],
               "alts": []},
}


def _paragraph(rng: random.Random, names: list[str], *, dev: bool, pid: str) -> dict:
    """One paragraph about 1-2 venues, and one question per fact stated."""
    context = ""
    spans: list[tuple[str, str, str, int]] = []  # (slot, name, value, start)
    for name in names:
        slots = rng.sample(list(_FACTS), rng.randint(2, 4))
        for slot in slots:
            fact = _FACTS[slot]
            value = rng.choice([v for v in fact["values"] if v != name])
            template = rng.choice(fact["sentences"]).replace("{name}", name)
            head, tail = template.split("{}")
            sentence_start = len(context) + (1 if context else 0)
            context = f"{context} {head}{value}{tail}" if context else f"{head}{value}{tail}"
            spans.append((slot, name, value, sentence_start + len(head)))
    qas = []
    for k, (slot, name, value, start) in enumerate(spans):
        assert context[start:start + len(value)] == value
        question = rng.choice(_FACTS[slot]["questions"]).replace("{name}", name)
        answers = [{"text": value, "answer_start": start}]
        if dev:
            # Dev questions carry several gold answers, as the official dev set does: the same
            # span again (two annotators agreeing) and, where the context has it, a longer one.
            answers.append({"text": value, "answer_start": start})
            for pre, post in _FACTS[slot]["alts"]:
                s = start - len(pre)
                text = pre + value + post
                if s >= 0 and context[s:s + len(text)].lower() == text.lower():
                    answers.append({"text": context[s:s + len(text)], "answer_start": s})
        qas.append({"id": f"{pid}-{k}", "question": question, "answers": answers})
    return {"context": context, "qas": qas}


def generate_squad(n_paragraphs: int, *, seed: int = 0, dev: bool = False,
                   paragraphs_per_article: int = 5, prefix: str = "t") -> dict:
    """A SQuAD v1.1 object with ``n_paragraphs`` paragraphs grouped into articles."""
    rng = random.Random(seed)
    data: list[dict] = []
    for i in range(n_paragraphs):
        if i % paragraphs_per_article == 0:
            data.append({"title": f"Cambridge_dining_{prefix}{len(data)}", "paragraphs": []})
        names = rng.sample(NAMES, rng.randint(1, 2))
        data[-1]["paragraphs"].append(_paragraph(rng, names, dev=dev, pid=f"{prefix}{i}"))
    return {"version": "1.1", "data": data}


def write_squad_dataset(out_dir: str | Path, *, n_train: int = 150, n_dev: int = 24,
                        seed: int = 0) -> Path:
    """``train-v1.1.json`` (``n_train`` paragraphs, ~3 questions each... about 600 questions
    with the default) and ``dev-v1.1.json`` (``n_dev`` paragraphs) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split, n, s, dev in (("train", n_train, seed, False), ("dev", n_dev, seed + 1, True)):
        obj = generate_squad(n, seed=s, dev=dev, prefix=split[0])
        (out / FILES[split]).write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return out


def count_questions(path: str | Path) -> int:
    obj = json.loads(Path(path).read_text(encoding="utf-8"))
    return sum(len(p["qas"]) for a in obj["data"] for p in a["paragraphs"])


def smoke_squad_data() -> Path:
    """The ``smoke:squad`` source: built once into the cache."""
    from trainables.cache import build_once
    from trainables.paths import cache_dir

    return build_once(cache_dir() / "smoke", f"squad-v{GENERATOR_VERSION}",
                      lambda d: write_squad_dataset(d))


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m trainables.offline.squad_synth",
                                description="Write a synthetic SQuAD v1.1 dataset (official JSON layout).")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--n-train", type=int, default=150, help="training paragraphs (default 150)")
    p.add_argument("--n-dev", type=int, default=24, help="dev paragraphs (default 24)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    out = write_squad_dataset(a.out_dir, n_train=a.n_train, n_dev=a.n_dev, seed=a.seed)
    for name in FILES.values():
        print(f"{out / name}: {count_questions(out / name)} questions")


if __name__ == "__main__":
    main()
