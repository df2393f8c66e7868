"""SQuAD v1.1 metrics: exact match and F1 as the official script computes them, plus the five
E2E metrics on the same outputs (so SQuAD and the data-to-text tasks share plots and tables,
as the TU Wien reproduction's Table 9 reports SQuAD with E2E's metrics).

EM and F1 follow ``evaluate-v1.1.py`` of the SQuAD release line by line:

* ``normalize_answer``: lowercase, drop every character of ``string.punctuation``, drop the
  articles ``a``, ``an`` and ``the`` as whole words, collapse whitespace;
* ``exact_match``: the normalised strings are equal;
* ``f1``: token-level F1 over the whitespace tokens of the normalised strings, counting a
  token as often as it occurs in both (multiset overlap);
* per question, the maximum over its gold answers; over the corpus, the mean, x100.

BLEU, NIST, METEOR, ROUGE-L and CIDEr are the E2E scorer's (:func:`trainables.metrics.e2e.
score_e2e`), with all gold answers of a question as its references; METEOR needs Java.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

METRIC_NAMES = ("EM", "F1", "BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (the official order:
    lower, remove punctuation, remove articles, fix whitespace)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1(prediction: str, ground_truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(ground_truth).split()
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def max_over_ground_truths(metric, prediction: str, ground_truths: Sequence[str]) -> float:
    return max(metric(prediction, gt) for gt in ground_truths)


def score_squad(references: Sequence[Sequence[str]], predictions: Sequence[str], *,
                text_metrics: bool = True, meteor: bool | None = None) -> dict[str, float | None]:
    """Corpus EM and F1 (x100, max over each question's gold answers, mean over questions),
    and the E2E metrics as :func:`~trainables.metrics.e2e.score_e2e` gives them (BLEU, METEOR
    and ROUGE-L x100) unless ``text_metrics`` is false
    (``meteor``: as :func:`~trainables.metrics.e2e.score_e2e` takes it).

    Raises ValueError when the lengths differ, the corpus is empty or a question has no
    gold answer.
    """
    if len(references) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} questions")
    if not predictions:
        raise ValueError("no predictions to score")
    for i, golds in enumerate(references):
        if not golds:
            raise ValueError(f"question {i} has no gold answer")
    refs = [list(g) for g in references]
    preds = [str(p) for p in predictions]
    n = len(preds)
    out: dict[str, float | None] = {
        "EM": 100.0 * sum(max_over_ground_truths(exact_match, p, g) for p, g in zip(preds, refs)) / n,
        "F1": 100.0 * sum(max_over_ground_truths(f1, p, g) for p, g in zip(preds, refs)) / n,
    }
    if text_metrics:
        from trainables.metrics.e2e import score_e2e

        out.update(score_e2e(refs, preds, meteor=meteor))
    return out
