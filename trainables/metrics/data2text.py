"""Data-to-text metrics for WebNLG and DART: E2E's scorer plus TER, on subsets of the test set.

The LoRA paper reports BLEU, METEOR and TER on WebNLG and DART, computed by the WebNLG
challenge's GenerationEval script; E2E's five metrics (:func:`trainables.metrics.e2e.score_e2e`:
BLEU, NIST, METEOR, ROUGE-L, CIDEr, each against all references of an input) apply as they
are. TER is added here.

TER follows GenerationEval's definition rather than corpus TER: for each output, the lowest
sentence TER against any one of its references (edits / that reference's length), averaged
over the outputs. The edit distance is sacrebleu's TER (with TERCOM's punctuation
normalisation and lowercasing, where GenerationEval runs pyter on lowercased NLTK tokens), and
the value is x100 like BLEU and METEOR here (the paper prints 0.46 for 46). Lower is better.

WebNLG is reported on its ``seen`` categories (those in the training set), its ``unseen``
ones, and ``all``: :func:`score_data2text` scores the whole test set under the plain metric
names and each named subset under ``<metric>_<subset>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from trainables.metrics.e2e import check_inputs, score_e2e

#: The metrics computed again on every subset (the LoRA paper's WebNLG table: BLEU, MET, TER).
SUBSET_METRICS = ("BLEU", "METEOR", "TER")


def corpus_ter(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> float:
    """Mean over outputs of the lowest sentence TER against any single reference, x100.

    An empty reference counts as TER 100 (GenerationEval counts it 1.0).
    """
    from sacrebleu.metrics import TER

    refs, hyps = check_inputs(references, hypotheses)
    metric = TER(normalized=True, case_sensitive=False)
    total = 0.0
    for group, hyp in zip(refs, hyps):
        total += min(metric.sentence_score(hyp, [ref]).score if ref.strip() else 100.0
                     for ref in group)
    return total / len(hyps)


def score_data2text(references: Sequence[Sequence[str]], hypotheses: Sequence[str], *,
                    subsets: Mapping[str, Sequence[int]] | None = None,
                    meteor: bool | None = None) -> dict[str, float | None]:
    """E2E's metrics and TER on the whole test set, and :data:`SUBSET_METRICS` per subset.

    Args:
        references, hypotheses: as :func:`~trainables.metrics.e2e.score_e2e` takes them.
        subsets: ``name -> indices`` of the items in that subset (WebNLG: ``seen``,
            ``unseen``). An empty subset scores ``None`` (nothing to score, not zero).
        meteor: as :func:`~trainables.metrics.e2e.score_e2e` (None: when Java is found).

    Returns:
        ``BLEU, NIST, METEOR, ROUGE_L, CIDEr, TER`` over all items, plus ``BLEU_seen``,
        ``TER_unseen``, ... for each subset.
    """
    refs, hyps = list(references), list(hypotheses)
    scores: dict[str, float | None] = dict(score_e2e(refs, hyps, meteor=meteor))
    scores["TER"] = corpus_ter(refs, hyps)
    for name, idx in (subsets or {}).items():
        idx = list(idx)
        bad = [i for i in idx if not 0 <= i < len(hyps)]
        if bad:
            raise ValueError(f"subset {name!r} has indices outside 0..{len(hyps) - 1}: {bad[:5]}")
        if not idx:
            scores.update({f"{m}_{name}": None for m in SUBSET_METRICS})
            continue
        sub_refs, sub_hyps = [refs[i] for i in idx], [hyps[i] for i in idx]
        sub = score_e2e(sub_refs, sub_hyps, meteor=meteor)
        scores[f"BLEU_{name}"] = sub["BLEU"]
        scores[f"METEOR_{name}"] = sub["METEOR"]
        scores[f"TER_{name}"] = corpus_ter(sub_refs, sub_hyps)
    return scores
