"""E2E NLG Challenge metrics: BLEU, NIST, METEOR, ROUGE-L and CIDEr, offline.

The numbers agree with the official challenge scorer (``measure_scores.py`` of
tuetschek/e2e-metrics) on the same outputs, and are returned on the scale the LoRA paper
reports them (GPT-2 M + LoRA on E2E: BLEU 70.4, NIST 8.85, METEOR 46.8, ROUGE-L 71.8,
CIDEr 2.53): BLEU, METEOR and ROUGE-L x100, NIST and CIDEr as they are.

How each metric is computed, and why that matches the official scorer:

* BLEU: sacrebleu corpus BLEU, lowercased, ``13a`` tokenization, one reference list per
  hypothesis (of any length). ``13a`` is the tokenization of the official scorer's
  ``mteval-v13a`` (Perl) and of its Python port (``-p``); sacrebleu's default ``exp``
  smoothing is mteval's, and its closest-reference length (ties go to the shorter) is too.
* NIST: a small implementation below (:func:`_nist`), because no maintained library computes
  mteval's NIST: ``nltk.translate.nist_score.corpus_nist`` scores each hypothesis against its
  single best reference and uses that reference's length for the brevity term, where mteval
  clips n-gram matches against all references at once and uses the average reference length,
  so the two disagree whenever a hypothesis has several references. The implementation here
  is tested against the official scorer's own outputs (``tests/data/e2e_scorer``).
* METEOR, ROUGE-L, CIDEr: pycocoevalcap's ``Meteor`` (METEOR 1.5, its bundled Java jar),
  ``Rouge`` and ``Cider`` classes, the same code the official scorer vendors. The official
  scorer first runs the Stanford PTB tokenizer (a Java jar, lowercasing) and drops punctuation
  tokens; we do that tokenization in Python (:func:`ptb_tokenize`, nltk's Treebank tokenizer
  plus the few Stanford habits that matter on E2E text) so ROUGE-L and CIDEr need no Java and
  do not change when Java is present.

METEOR needs Java. Without it METEOR is skipped and reported as ``None``; no other value is
ever substituted.

CLI::

    python -m trainables.metrics.e2e REFS SYSTEM_OUTPUT [--no-meteor]

prints the five metrics as one JSON object; bad input exits with status 2 and a one-line error.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from trainables.metrics.e2e_files import load_pair, one_line

METRIC_NAMES = ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr")

# METEOR's Java process gets this long, plus a little per hypothesis, before it is killed and
# scoring fails with a clear error instead of waiting forever on a stuck JVM. The limit is
# far above what a JVM start, the paraphrase table and the scoring itself take.
METEOR_TIMEOUT_S = 120.0
METEOR_TIMEOUT_PER_ITEM_S = 0.2

# NIST's n-gram order (mteval-v13a and the official scorer's Python port both use 5).
NIST_ORDER = 5


class MeteorError(RuntimeError):
    """METEOR's Java process failed, died or timed out."""


# --------------------------------------------------------------------------------------------
# Public API


def java_available() -> bool:
    """Whether a working ``java`` is on PATH (METEOR 1.5 is a Java program)."""
    java = shutil.which("java")
    if java is None:
        return False
    try:
        # A `java` that cannot even print its version (a broken JDK, a stub) counts as missing.
        done = subprocess.run([java, "-version"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def meteor_skipped_note(meteor: bool | None) -> str:
    """Why a score has no METEOR (``meteor``: the ``eval.meteor`` setting it was scored with)."""
    if meteor is False:
        return "METEOR skipped: eval.meteor is false"
    if not java_available():
        return "METEOR skipped: Java was not found (METEOR 1.5 is a Java program)"
    return "METEOR skipped"


def score_e2e(references: Sequence[Sequence[str]], hypotheses: Sequence[str], *,
              meteor: bool | None = None) -> dict[str, float | None]:
    """Corpus-level E2E metrics of ``hypotheses`` against ``references``.

    Args:
        references: ``references[i]`` is the list of reference texts for hypothesis ``i``;
            lists may differ in length (E2E MRs have 1 to 40+ references).
        hypotheses: one system output per item (plain, detokenized text).
        meteor: ``True`` to compute METEOR (raises :class:`MeteorError` without Java),
            ``False`` to skip it, ``None`` (default) to compute it when Java is available.

    Returns:
        ``{"BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"}`` on the LoRA paper's scale (BLEU,
        METEOR, ROUGE_L x100). ``METEOR`` is ``None`` when skipped.

    Raises:
        ValueError: lengths differ, the corpus is empty, a reference group is empty, or an
            item is not text.
        MeteorError: METEOR was asked for but Java is missing, or its process failed.
    """
    refs, hyps = check_inputs(references, hypotheses)
    if meteor is None:
        meteor = java_available()
    elif meteor and not java_available():
        raise MeteorError("METEOR needs Java, and no working `java` was found on PATH")

    scores: dict[str, float | None] = dict.fromkeys(METRIC_NAMES)
    scores["BLEU"] = _bleu(refs, hyps)
    scores["NIST"] = _nist(refs, hyps)
    # The official scorer tokenizes once and feeds the same text to METEOR, ROUGE-L and CIDEr.
    gts = {i: [ptb_tokenize(r) for r in group] for i, group in enumerate(refs)}
    res = {i: [ptb_tokenize(h)] for i, h in enumerate(hyps)}
    if meteor:
        scores["METEOR"] = 100.0 * _meteor(gts, res)
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    scores["ROUGE_L"] = 100.0 * float(Rouge().compute_score(gts, res)[0])
    scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    return scores


# --------------------------------------------------------------------------------------------
# Input checks


def check_inputs(references: Sequence[Sequence[str]],
                  hypotheses: Sequence[str]) -> tuple[list[list[str]], list[str]]:
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise ValueError("references and hypotheses must be sequences, not single strings")
    refs_in, hyps_in = list(references), list(hypotheses)
    if len(refs_in) != len(hyps_in):
        raise ValueError(f"{len(refs_in)} reference groups but {len(hyps_in)} hypotheses; "
                         "references[i] must be the list of references of hypotheses[i]")
    if not hyps_in:
        raise ValueError("nothing to score: no hypotheses")
    refs: list[list[str]] = []
    hyps: list[str] = []
    for i, (group, hyp) in enumerate(zip(refs_in, hyps_in)):
        if not isinstance(hyp, str):
            raise ValueError(f"hypotheses[{i}] is {type(hyp).__name__}, not str")
        if isinstance(group, str):
            raise ValueError(f"references[{i}] is a str; it must be a list of reference "
                             "strings (wrap a single reference in a list)")
        group = list(group)
        if not group:
            raise ValueError(f"references[{i}] is empty: every hypothesis needs at least one "
                             "reference")
        for j, ref in enumerate(group):
            if not isinstance(ref, str):
                raise ValueError(f"references[{i}][{j}] is {type(ref).__name__}, not str")
        # One line per item: the official scorer joins lines of a caption with spaces, and a
        # newline would break METEOR's line protocol.
        refs.append([one_line(r) for r in group])
        hyps.append(one_line(hyp))
    return refs, hyps


# --------------------------------------------------------------------------------------------
# BLEU and NIST (mteval-v13a)


def _bleu(refs: list[list[str]], hyps: list[str]) -> float:
    from sacrebleu.metrics import BLEU

    # sacrebleu takes references as parallel streams; a group shorter than the longest is
    # padded with None, which sacrebleu drops (an empty string would count as a 0-word
    # reference in the brevity penalty; mteval-v13a skips padded references too).
    width = max(len(group) for group in refs)
    streams = [[group[k] if k < len(group) else None for group in refs] for k in range(width)]
    # force=True: E2E outputs ending in " ." are legitimate, don't warn about tokenized input.
    metric = BLEU(lowercase=True, tokenize="13a", force=True)
    return float(metric.corpus_score(hyps, streams).score)


@functools.cache
def _tokenizer_13a():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()


def _mteval_tokens(text: str) -> list[str]:
    # mteval-v13a lowercases, then tokenizes (its default, non-international tokenization).
    return _tokenizer_13a()(text.lower()).split()


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _nist(refs: list[list[str]], hyps: list[str], order: int = NIST_ORDER) -> float:
    """Corpus NIST as mteval-v13a computes it (Doddington 2002), hand-written because no
    maintained library does (see the module docstring).

    score = LP * sum_n [ sum over matched n-grams of info(ngram) / #hypothesis n-grams ]
    info(w1..wn) = log2( count(w1..wn-1) / count(w1..wn) ), counted over all references of
    the corpus (count of the empty prefix = total reference words); a hypothesis n-gram
    matches at most as often as it occurs in its most generous single reference.
    LP = exp(-beta * ln(ratio)^2) for ratio = hypothesis words / reference words < 1, with
    beta chosen so that ratio 2/3 gives LP 0.5: beta = -ln(0.5) / ln(1.5)^2 = 4.22.

    The reference length in LP is the sum over items of the item's mean reference length,
    as in the official scorer's Python port (``measure_scores.py -p``, what the LoRA paper
    ran). Its Perl path divides all reference words by the mean number of references per
    item instead; the two agree when every item has as many references as every other, or
    when the system is not shorter than the references. Counting follows mteval-v13a: an
    empty hypothesis has no words and short hypotheses contribute no (not negative) n-grams.
    """
    ref_tokens = [[_mteval_tokens(r) for r in group] for group in refs]
    hyp_tokens = [_mteval_tokens(h) for h in hyps]

    counts: Counter = Counter()
    for group in ref_tokens:
        for ref in group:
            counts[()] += len(ref)
            for n in range(1, order + 1):
                counts.update(_ngrams(ref, n))

    def info(ngram: tuple[str, ...]) -> float:
        return math.log2(counts[ngram[:-1]] / counts[ngram])

    matched_info = [0.0] * order
    hyp_ngram_total = [0] * order
    sys_len = 0
    ref_len = 0.0
    for group, hyp in zip(ref_tokens, hyp_tokens):
        for n in range(1, order + 1):
            best: Counter = Counter()
            for ref in group:
                best |= _ngrams(ref, n)  # |= keeps the max count per n-gram
            for ngram, count in _ngrams(hyp, n).items():
                hits = min(count, best[ngram])
                if hits:
                    matched_info[n - 1] += info(ngram) * hits
            hyp_ngram_total[n - 1] += max(0, len(hyp) - n + 1)
        sys_len += len(hyp)
        ref_len += sum(len(ref) for ref in group) / len(group)

    score = sum(m / max(t, 1) for m, t in zip(matched_info, hyp_ngram_total))
    if ref_len == 0:
        return 0.0
    ratio = sys_len / ref_len
    if ratio >= 1:
        penalty = 1.0
    elif ratio <= 0:
        penalty = 0.0
    else:
        beta = -math.log(0.5) / math.log(1.5) ** 2
        penalty = math.exp(-beta * math.log(ratio) ** 2)
    return penalty * score


# --------------------------------------------------------------------------------------------
# The official scorer's tokenization for METEOR, ROUGE-L and CIDEr, in Python

# Abbreviations whose final period Stanford's tokenizer keeps ("St. John's", "e.g.", "U.S.").
_ABBREVIATION = re.compile(
    r"(?:[A-Za-z]\.)+[A-Za-z]|(?:mr|mrs|ms|dr|st|prof|jr|sr|vs|etc|inc|ltd|co|mt)", re.I)
# A word ending in one or two periods, possibly followed by closing quotes or brackets:
# "shop.", "value).", "yes.." (Stanford: "yes . ."), but not "...".
_TRAILING_PERIOD = re.compile(r"(.*[^.])(\.\.?)([\"')\]}]*)")
# An opening single quote ('nice'), not a contraction ('s, 're, 'Twas).
_OPENING_QUOTE = re.compile(r"(?<![\w'`])'(?!(?:s|re|ve|ll|d|m|t|em|n)\b)(?=\w)", re.I)
# Stanford keeps "!!" and "?!" as single tokens (which the punctuation filter then keeps);
# Treebank would split them, so they are swapped for a placeholder word while it runs.
_PUNCT_RUN = re.compile(r"[!?]{2,}")
_PLACEHOLDER = "qxpunctrunqx"


def ptb_tokenize(text: str) -> str:
    """Tokenize like the official scorer before METEOR/ROUGE-L/CIDEr, without Java.

    The official scorer runs Stanford CoreNLP 3.4.1's PTBTokenizer (``-preserveLines
    -lowerCase``) and then drops the tokens in pycocoevalcap's ``PUNCTUATIONS`` list. Here
    nltk's TreebankWordTokenizer does the work, after bridging the Stanford habits that matter
    on E2E text (each checked against the jar): a period ending any word is split off, not just
    at the end of the text ("shop. It" -> "shop . it") unless the word is an abbreviation;
    "£" becomes "#" and "€" "$" (Stanford normalizes currency; "#" then stays as a token);
    en/em dashes become "--"; opening single quotes become "`"; runs like "!!" stay one token.
    Tokens are lowercased before the punctuation filter, as in the official pipeline, so
    "-LRB-" (lowercased to "-lrb-") survives the filter there and here alike.

    Returns the kept tokens joined by single spaces.
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

    text = one_line(text).replace("£", "#").replace("€", "$")
    text = re.sub("[\u2013\u2014]", " -- ", text)
    runs: dict[str, str] = {}  # placeholder -> the run it stands for

    def _protect(match: re.Match) -> str:
        placeholder = f"{_PLACEHOLDER}{len(runs)}x"
        runs[placeholder] = match.group(0)
        return f" {placeholder} "

    text = _PUNCT_RUN.sub(_protect, text)
    words = []
    for word in text.split():
        m = _TRAILING_PERIOD.fullmatch(word)
        if m and not (m.group(2) == "." and _ABBREVIATION.fullmatch(m.group(1))):
            word = f"{m.group(1)} {' '.join(m.group(2))} {m.group(3)}"
        words.append(word)
    text = _OPENING_QUOTE.sub("` ", " ".join(words)).replace("`", " ` ")
    tokens = _treebank().tokenize(text, convert_parentheses=True)
    out = []
    for token in tokens:
        token = runs.get(token, token).lower()
        if token not in PUNCTUATIONS:
            out.append(token)
    return " ".join(out)


@functools.cache
def _treebank():
    from nltk.tokenize import TreebankWordTokenizer

    return TreebankWordTokenizer()


# --------------------------------------------------------------------------------------------
# METEOR (Java)


def _meteor(gts: dict[int, list[str]], res: dict[int, list[str]]) -> float:
    """METEOR 1.5 through pycocoevalcap's wrapper; the Java process is always shut down.

    The wrapper starts ``java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en -norm`` and talks
    to it line by line, blocking on each answer: a JVM that hangs would block forever, so a
    timer kills it after a limit, and the blocked read then ends. The wrapper never releases
    its lock when a read fails, and its ``__del__`` waits on that lock; :func:`_close_meteor`
    therefore shuts the process down itself and gives the object a fresh lock.
    """
    from pycocoevalcap.meteor.meteor import Meteor

    # The stats protocol separates fields with "|||"; the wrapper strips it from hypotheses
    # only, so strip it from references too rather than desynchronise the protocol.
    gts = {k: [r.replace("|||", "") for r in v] for k, v in gts.items()}
    limit = METEOR_TIMEOUT_S + METEOR_TIMEOUT_PER_ITEM_S * len(res)
    try:
        scorer = Meteor()
    except OSError as exc:
        raise MeteorError(f"could not start Java for METEOR: {exc}") from None
    timed_out = threading.Event()

    def _kill() -> None:
        timed_out.set()
        scorer.meteor_p.kill()

    timer = threading.Timer(limit, _kill)
    timer.daemon = True
    timer.start()
    try:
        score, _ = scorer.compute_score(gts, res)
        return float(score)
    except (ValueError, OSError) as exc:
        # A dead JVM shows up as an empty answer (float('') -> ValueError) or a broken pipe.
        if timed_out.is_set():
            raise MeteorError(f"METEOR (Java) did not answer within {limit:.0f} s and was "
                              "killed") from None
        detail = _meteor_stderr(scorer) or str(exc)
        raise MeteorError(f"METEOR (Java) failed: {detail}") from None
    finally:
        timer.cancel()
        _close_meteor(scorer)


def _meteor_stderr(scorer) -> str:
    proc = scorer.meteor_p
    try:
        proc.kill()
        proc.wait(timeout=10)
        lines = proc.stderr.read().decode("utf-8", "replace").strip().splitlines()
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return ""
    return f"exit status {proc.returncode}" + (f": {lines[-1].strip()}" if lines else "")


def _close_meteor(scorer) -> None:
    proc = scorer.meteor_p
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        try:
            stream.close()
        except OSError:
            pass
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    # Meteor.__del__ acquires this lock (held forever if compute_score raised), then closes
    # stdin, kills and waits: with a fresh lock and a finished process all of that is a no-op.
    scorer.lock = threading.Lock()


# --------------------------------------------------------------------------------------------
# CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Score a system output file against a reference file; print the metrics as JSON.

    Returns the exit status: 0 on success, 2 on bad input, 1 when METEOR's Java fails.
    """
    parser = argparse.ArgumentParser(
        prog="python -m trainables.metrics.e2e",
        description="E2E NLG metrics (BLEU, NIST, METEOR, ROUGE-L, CIDEr), as the official "
                    "E2E scorer computes them, on the LoRA paper's scale.")
    parser.add_argument("refs", type=Path,
                        help="references: .csv/.tsv with MR and reference columns, or plain "
                             "text with blank-line-separated groups")
    parser.add_argument("system_output", type=Path,
                        help="system outputs: one per line, or .csv/.tsv with MR and output "
                             "columns")
    parser.add_argument("--no-meteor", action="store_true",
                        help="skip METEOR (it needs Java and takes the most time)")
    args = parser.parse_args(argv)
    try:
        refs, hyps = load_pair(args.refs, args.system_output)
    except OSError as exc:
        name = exc.filename if exc.filename is not None else ""
        print(f"error: {name}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        # meteor=None: computed when Java is available, else skipped (None) with a note.
        scores = score_e2e(refs, hyps, meteor=False if args.no_meteor else None)
    except ValueError as exc:
        print(f"error: {args.refs} / {args.system_output}: {exc}", file=sys.stderr)
        return 2
    except MeteorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if scores["METEOR"] is None and not args.no_meteor:
        print("note: Java was not found, so METEOR was skipped (null); install a Java runtime "
              "to compute it", file=sys.stderr)
    print(json.dumps({k: (None if v is None else round(v, 4)) for k, v in scores.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
