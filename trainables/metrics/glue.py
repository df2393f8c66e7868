"""GLUE metrics as the LoRA paper (and the GLUE leaderboard) report them.

Accuracy (MNLI-m/mm, SST-2, QNLI, RTE), accuracy and F1 of the positive class (MRPC, QQP),
Matthews correlation (CoLA), Pearson and Spearman correlation (STS-B), and macro-F1 (the
unweighted mean of the classes' F1) for the generic text classification task. Thin wrappers over
scikit-learn and SciPy, the implementations behind the ``evaluate`` library's ``glue`` metric,
in percent as papers print them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

METRIC_NAMES = ("accuracy", "f1", "macro_f1", "mcc", "pearson", "spearman")


def accuracy(labels: Sequence[int], preds: Sequence[int]) -> float:
    from sklearn.metrics import accuracy_score

    return 100.0 * float(accuracy_score(labels, preds))


def f1(labels: Sequence[int], preds: Sequence[int]) -> float:
    """F1 of class 1 (MRPC: paraphrase, QQP: duplicate)."""
    from sklearn.metrics import f1_score

    return 100.0 * float(f1_score(labels, preds, pos_label=1, average="binary", zero_division=0))


def macro_f1(labels: Sequence[int], preds: Sequence[int]) -> float:
    """The unweighted mean of every class's F1 (classes: those in the labels or predictions)."""
    from sklearn.metrics import f1_score

    return 100.0 * float(f1_score(labels, preds, average="macro", zero_division=0))


def mcc(labels: Sequence[int], preds: Sequence[int]) -> float:
    """Matthews correlation (0 when a side is constant, as scikit-learn defines it)."""
    from sklearn.metrics import matthews_corrcoef

    return 100.0 * float(matthews_corrcoef(labels, preds))


def pearson(labels: Sequence[float], preds: Sequence[float]) -> float:
    from scipy.stats import pearsonr

    if len(set(preds)) < 2 or len(set(labels)) < 2:
        return float("nan")  # undefined for a constant side
    return 100.0 * float(pearsonr(preds, labels)[0])


def spearman(labels: Sequence[float], preds: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    if len(set(preds)) < 2 or len(set(labels)) < 2:
        return float("nan")
    return 100.0 * float(spearmanr(preds, labels)[0])


FUNCTIONS = {"accuracy": accuracy, "f1": f1, "macro_f1": macro_f1, "mcc": mcc, "pearson": pearson,
             "spearman": spearman}


def compute(names: Sequence[str], labels: Sequence[float], preds: Sequence[float]) -> dict[str, float]:
    """``{name: value}`` for each metric name (see :data:`METRIC_NAMES`)."""
    out = {}
    for name in names:
        value = FUNCTIONS[name](labels, preds)
        out[name] = value if math.isfinite(value) else float("nan")
    return out
