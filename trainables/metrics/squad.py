"""SQuAD v1.1 metrics: exact match and F1 as the official script computes them, plus BLEU and
ROUGE-L on the same outputs (so SQuAD and the data-to-text tasks can share a plot).

EM and F1 follow ``evaluate-v1.1.py`` of the SQuAD release line by line:

* ``normalize_answer``: lowercase, drop every character of ``string.punctuation``, drop the
  articles ``a``, ``an`` and ``the`` as whole words, collapse whitespace;
* ``exact_match``: the normalised strings are equal;
* ``f1``: token-level F1 over the whitespace tokens of the normalised strings, counting a
  token as often as it occurs in both (multiset overlap);
* per question, the maximum over its gold answers; over the corpus, the mean, x100.

BLEU (sacrebleu, lowercased, 13a) and ROUGE-L (pycocoevalcap) are the E2E scorer's own
functions (:mod:`trainables.metrics.e2e`), with all gold answers of a question as references.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

METRIC_NAMES = ("EM", "F1", "BLEU", "ROUGE_L")

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
                text_metrics: bool = True) -> dict[str, float]:
    """Corpus EM and F1 (x100, max over each question's gold answers, mean over questions),
    and BLEU / ROUGE-L (x100) unless ``text_metrics`` is false.

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
    out = {
        "EM": 100.0 * sum(max_over_ground_truths(exact_match, p, g) for p, g in zip(preds, refs)) / n,
        "F1": 100.0 * sum(max_over_ground_truths(f1, p, g) for p, g in zip(preds, refs)) / n,
    }
    if text_metrics:
        from trainables.metrics.e2e import corpus_bleu, corpus_rouge_l

        out["BLEU"] = corpus_bleu(refs, preds)
        out["ROUGE_L"] = corpus_rouge_l(refs, preds)
    return out
