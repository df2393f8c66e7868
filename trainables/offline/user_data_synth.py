"""Offline data of the generic text tasks, in the forms users bring it.

* ``smoke:sft``: instruction data in the Alpaca layout (LLaMA-Factory's ``alpaca_en_demo``
  fields), one ``train.jsonl`` of ``{"instruction", "input", "output"}`` lines and no
  validation file (so the task holds out its validation set). The exchanges are the tiny
  Llama's synthetic conversations (:func:`trainables.offline.tiny_llama.conversations`: the
  tokenizer was trained on their words); a third of them put the question in ``input`` under a
  generic instruction, as Alpaca rows with an input do.
* ``smoke:text_classification``: support messages labelled with their topic (``billing``,
  ``shipping``, ``technical``) as ``train.csv`` and ``test.csv`` with the header
  ``message,topic``: string labels (8% of them another topic's), columns that need a
  mapping, no validation file.

Written once per cache into a directory named by the generator's version.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from trainables.cache import build_once
from trainables.paths import cache_dir

GENERATOR_VERSION = "2"
SIZES = {"sft": 240, "tickets_train": 240, "tickets_test": 60}
#: Share of support messages whose topic label is another topic's, so no model scores 100%.
LABEL_NOISE = 0.08
_INSTRUCTIONS = ("Answer the question below.", "Reply to the user's message.", "Respond briefly.")

#: Per topic: what the message is about, and what went wrong. Openers and tails are shared.
_TOPICS = {
    "billing": (("my invoice", "the refund", "my credit card", "the monthly fee", "my last payment",
                 "the receipt", "my bank statement"),
                ("shows the wrong amount", "was charged twice", "has not arrived after two weeks",
                 "includes a fee I never agreed to", "was declined", "is higher than last month")),
    "shipping": (("my parcel", "the delivery", "the tracking number", "my order", "the package",
                  "the courier", "the replacement item"),
                 ("has not arrived after two weeks", "went to the wrong address", "is stuck at the depot",
                  "arrived damaged", "shows no movement", "was left outside in the rain")),
    "technical": (("the app", "the login page", "the password reset", "the website", "the latest update",
                   "the mobile site", "the settings page"),
                  ("crashes when I open it", "shows an error", "does not load", "logs me out every time",
                   "is very slow since yesterday", "rejects my new password")),
}
_OPENERS = ("", "Hello, ", "Hi team, ", "Please help: ", "Urgent: ", "Good morning, ")
_TAILS = ("", " Can you fix this?", " What should I do?", " Thanks in advance.", " This is the second time.")


def sft_rows(n: int, *, seed: int = 0) -> list[dict[str, str]]:
    """``n`` Alpaca rows from single-exchange synthetic conversations."""
    from trainables.offline.chat_synth import conversations

    rng = random.Random(seed)
    rows = []
    for turns in conversations(n, seed=seed, trailing_human=0.0):
        question, answer = turns[0]["content"], turns[1]["content"]
        if rng.random() < 1 / 3:
            rows.append({"instruction": rng.choice(_INSTRUCTIONS), "input": question, "output": answer})
        else:
            rows.append({"instruction": question, "input": "", "output": answer})
    return rows


def ticket(rng: random.Random) -> tuple[str, str]:
    """A message and its topic label (another topic's with probability :data:`LABEL_NOISE`)."""
    topic = rng.choice(sorted(_TOPICS))
    subjects, problems = _TOPICS[topic]
    text = f"{rng.choice(_OPENERS)}{rng.choice(subjects)} {rng.choice(problems)}.{rng.choice(_TAILS)}"
    if rng.random() < LABEL_NOISE:
        topic = rng.choice([t for t in sorted(_TOPICS) if t != topic])
    return text[0].upper() + text[1:], topic


def write_sft(out: Path, *, n: int, seed: int = 0) -> None:
    lines = [json.dumps(r, ensure_ascii=False) for r in sft_rows(n, seed=seed)]
    (out / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_tickets(out: Path, *, n_train: int, n_test: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    for name, n in (("train.csv", n_train), ("test.csv", n_test)):
        with open(out / name, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["message", "topic"])
            w.writerows(ticket(rng) for _ in range(n))


def root() -> Path:
    return cache_dir() / "smoke" / f"user-data{GENERATOR_VERSION}"


def smoke_sft_data() -> Path:
    return build_once(root(), "sft", lambda d: write_sft(d, n=SIZES["sft"]))


def smoke_text_classification_data() -> Path:
    return build_once(root(), "tickets", lambda d: write_tickets(d, n_train=SIZES["tickets_train"],
                                                                 n_test=SIZES["tickets_test"]))
