"""The fixed prompts answered by every compared model, graded, and recorded.

At the end of a full trial each model of ``eval.compare_models`` answers the prompts, in that
order: ``tuned`` is the trial's own model (the base with its adapter, prompted the way it was
trained); any other entry is a hub name or local directory, loaded unquantised in
``model.dtype`` on the trial's device, prompted with its own chat template, and freed before
the next. All decode with the same ``eval`` settings. The judge (:mod:`trainables.judge`)
then grades them, given each prompt as :func:`question_of` writes it (a conversation with its
earlier turns). Written to the trial's outputs (MLflow artifacts):

* ``generations.jsonl``: the trial's model's answers, one line per prompt (``id``,
  ``prompt``: the last user message, ``messages``: the whole conversation the model was
  asked, ``answer``, ``score``);
* ``judge_table.json``: one row per prompt and model (``id``, ``prompt``, ``model``,
  ``letter``, ``answer``, ``score``, ``justification``) in MLflow's table format (what
  ``mlflow.log_table`` writes: pandas' ``split`` JSON; ``mlflow.load_table`` reads it back).

Metrics: ``judge_score``, the trial's model's mean grade, and ``judge_score/<model>`` for each
compared model (``tuned`` and the last part of each other name), over the prompts graded;
None when nothing was.
"""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.errors import UserError, first_line

if TYPE_CHECKING:
    import torch

    from trainables.config import TrialConfig

METRIC = "judge_score"
TABLE = "judge_table.json"
TABLE_COLUMNS = ("id", "prompt", "model", "letter", "answer", "score", "justification")


def model_labels(names: list[str]) -> list[str]:
    """Short metric-safe names of the compared models (the last part of a hub name or path;
    the whole name where two would read alike)."""
    def clean(s: str) -> str:
        return re.sub(r"[^\w.\- ]", "_", s).strip("._ ") or "model"

    short = [clean(Path(n.rstrip("/")).name) for n in names]
    return [s if short.count(s) == 1 else clean(n) for s, n in zip(short, names)]


def answer_and_judge(model: Any, tokenizer: Any, test: dict[str, Any], cfg: TrialConfig, *,
                     device: torch.device, out_dir: Path) -> dict[str, Any]:
    """Answers of every compared model, their grades, the outputs and the metrics."""
    from trainables.judge import TUNED, Judged, judge_all, letters
    from trainables.quantization import optimizer_note

    names = list(cfg.eval.compare_models)
    answers, failures = [], []
    for name in names:
        try:
            answers.append(answers_of(name, model, tokenizer, test, cfg, device=device))
        except Exception as e:  # noqa: BLE001 - a comparison model that fails costs no trained adapter
            answers.append([None] * len(test["ids"]))
            failures.append(f"{name} could not answer ({first_line(e, limit=160)})")
    rows = [list(r) for r in zip(*answers)]  # prompt x model
    if failures:
        judged = Judged([[None] * len(names)] * len(rows), [[None] * len(names)] * len(rows),
                        f"not judged: {failures[0]}", [None] * len(rows))
    else:
        judged = judge_all(cfg.eval, [question_of(m) for m in conversations(test)], rows)
    labels = model_labels(names)
    write_outputs(out_dir, test, names, letters(len(names)), rows, judged)
    scores = {f"{METRIC}/{label}": _mean([s[j] for s in judged.scores]) for j, label in enumerate(labels)}
    notes = [judged.note, *failures[1:], optimizer_note(cfg.train, device)]
    return {METRIC: scores[f"{METRIC}/{labels[names.index(TUNED)]}"], **scores,
            "generations": len(rows), "tables": f"outputs/{TABLE}",
            "final_note": "; ".join(n for n in notes if n)}


SPEAKER_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}


def conversations(test: dict[str, Any]) -> list[list[dict[str, str]]]:
    """The turns each prompt asks (a single user turn where only its text is known)."""
    return test.get("messages") or [[{"role": "user", "content": p}] for p in test["prompts"]]


def question_of(messages: list[dict[str, str]]) -> str:
    """What the judge is asked about: a single user turn's text as it is; a conversation
    (a system turn, earlier turns) as ``Role: content`` lines, the last the question."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n".join(f"{SPEAKER_NAMES.get(m['role'], m['role'])}: {m['content']}" for m in messages)


def _mean(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return sum(got) / len(got) if got else None


def answers_of(name: str, model: Any, tokenizer: Any, test: dict[str, Any], cfg: TrialConfig, *,
               device: torch.device) -> list[str]:
    """One compared model's answers: the trial's own (``tuned``) or a model loaded for it."""
    from trainables.judge import TUNED

    if name == TUNED:
        answers = generate_answers(model, tokenizer, test["prompt_ids"], cfg, device=device)
        if test.get("prompt_style") == "guanaco":  # it goes on with the next '### Human:' turn
            answers = [a.split("### Human:")[0].strip() for a in answers]
        return answers
    other, other_tokenizer = load_compare_model(name, cfg, device)
    try:
        from trainables.tasks.chat import prompt_ids

        if not getattr(other_tokenizer, "chat_template", None):
            raise UserError("eval.compare_models", f"{name}'s tokenizer has no chat template")
        ids = [prompt_ids(other_tokenizer, m, "chat") for m in test["messages"]]
        return generate_answers(other, other_tokenizer, ids, cfg, device=device)
    finally:
        del other
        gc.collect()
        if device.type == "cuda":
            import torch

            torch.cuda.empty_cache()


def load_compare_model(name: str, cfg: TrialConfig, device: torch.device) -> tuple[Any, Any]:
    """A comparison model and its tokenizer, unquantised in ``model.dtype``, on ``device`` (one
    saved already quantised is dequantised)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainables.quantization import unquantised

    path = Path(name).expanduser()
    source = str(path) if path.exists() else name
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, cfg.model.dtype))
    return unquantised(model, cfg).to(device), tokenizer


def generate_answers(model: Any, tokenizer: Any, prompts: list[list[int]], cfg: TrialConfig, *,
                     device: torch.device) -> list[str]:
    """Decoded answers to prompt ids (left-padded batches; ``eval`` settings; greedy; stops at
    eos or the end-of-turn token)."""
    import torch

    from trainables.tasks.causal_lm import decoding_settings, left_padded

    e = cfg.eval
    model.eval()
    answers = []
    for start in range(0, len(prompts), e.batch_size):
        ids, mask = left_padded(prompts[start:start + e.batch_size], tokenizer.pad_token_id)
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=True,
                                 **decoding_settings(e, tokenizer, chat=True))
        answers += [tokenizer.decode(row, skip_special_tokens=True).strip() for row in out[:, ids.shape[1]:]]
    return answers


def write_outputs(out_dir: Path, test: dict[str, Any], names: list[str], letters: list[str],
                  rows: list[list[str | None]], judged: Any) -> None:
    """``generations.jsonl`` (the trial's model) and ``judge_table.json`` (every model)."""
    import pandas as pd

    from trainables.judge import TUNED

    out_dir.mkdir(parents=True, exist_ok=True)
    t = names.index(TUNED)
    (out_dir / "generations.jsonl").write_text(
        "".join(json.dumps({"id": i, "prompt": p, "messages": m, "answer": r[t], "score": s[t]},
                           ensure_ascii=False) + "\n"
                for i, p, m, r, s in zip(test["ids"], test["prompts"], conversations(test), rows, judged.scores)),
        encoding="utf-8")
    table = [[i, p, name, letter, r[j], s[j], js[j]]
             for i, p, r, s, js in zip(test["ids"], test["prompts"], rows, judged.scores, judged.justifications)
             for j, (name, letter) in enumerate(zip(names, letters))]
    pd.DataFrame(table, columns=list(TABLE_COLUMNS)).to_json(out_dir / TABLE, orient="split", index=False,
                                                             force_ascii=False)
