"""SQuAD v1.1 (Rajpurkar et al., 2016) as generative QA with a causal LM (GPT-2).

Data: the hub dataset ``squad`` or a local directory with the official release's files,
``train-v1.1.json`` and ``dev-v1.1.json`` (``{"version", "data": [{"title", "paragraphs":
[{"context", "qas": [{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}``), or a
local copy of the hub dataset (``hf download --repo-type dataset rajpurkar/squad --local-dir
DIR``: :func:`trainables.hub.hub_copy`), read as the hub name is. All go through
``datasets.load_dataset`` (the official files with ``field="data"``) and are flattened into the
same question records, so one code path serves them.

Splits: SQuAD's test set is hidden, so, as papers do, the official dev set is the evaluation
set: the validation loss (what ASHA compares) is computed on ``data.val_limit`` dev questions
and EM/F1 on ``data.test_limit`` dev questions.

Formats (``data.format``), loss on the answer tokens only (the prompt is labelled -100):

* ``cqa``: ``Context: <context>``, ``Question: <question>``, ``Answer:`` on three lines, then
  `` <answer><eos>``: the GPT-2 SQuAD LoRA assignment's format (its report's section 3);
* ``tags``: ``<Q> <question> <C> <context> <A>`` then `` <answer><eos>``: the TU Wien
  reproduction's format for its rank-vs-task study (the slide "Extension: Rank & Task
  Difficulty": ``<Q> Is this a test? <C> This is a test context. <A> This is a test text``).

A model whose tokenizer starts every text with a special token of its own (Llama 3's
``<|begin_of_text|>``) gets it before the prompt; GPT-2's adds none.

Truncation never cuts the answer. When ``prompt + answer`` would exceed ``data.max_length``
tokens, the context alone is shortened: a window of context tokens around the answer span,
as wide as the budget allows, centred on the answer. When even the answer span (or the
question) leaves no room, the question is skipped, and counted (``<split>_skipped`` in the
data stats that MLflow records; ``<split>_shortened`` counts the windowed contexts). For
evaluation prompts the budget reserves ``eval.max_new_tokens`` for the generated answer
instead of the gold answer's length (which the model must not be told), and the window is
centred on the gold spans (so that the question stays answerable).

Evaluation: greedy or beam decoding (``eval``) of each dev question's prompt, the answer cut
at the first newline, then EM and F1 with the official normalisation (max over the gold
answers) and the five E2E metrics, BLEU, NIST, METEOR, ROUGE-L and CIDEr, against all gold
answers (:mod:`trainables.metrics.squad`). ``predictions.json`` is written in the official
evaluation script's format (``{id: answer}``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.errors import JSON_TOO_DEEP, UserError, did_you_mean, one_of
from trainables.tasks.base import MetricSpec, Prepared
from trainables.tasks.causal_lm import CausalLMTask, TokenizedExamples, fixed_subset, generate

if TYPE_CHECKING:
    import torch

    from trainables.config import TrialConfig

#: Bump when preprocessing changes, so cached tokenisations are rebuilt.
PREP_VERSION = 3

SPLITS = ("train", "validation")
LOCAL_FILES = {"train": "train-v1.1.json", "validation": "dev-v1.1.json"}

#: data.format -> the prompt's pieces; ``{c}`` and ``{q}`` are the context and the question.
FORMATS: dict[str, tuple[str, ...]] = {
    "cqa": ("Context:", "{c}", "\nQuestion:", "{q}", "\nAnswer:"),
    "tags": ("<Q>", "{q}", " <C>", "{c}", " <A>"),
}


@dataclass(frozen=True)
class Question:
    id: str
    context: str
    question: str
    answers: tuple[str, ...]
    starts: tuple[int, ...]
    """Character offset of each answer in ``context``."""


# --------------------------------------------------------------------------- local files


def local_files(source: Path) -> dict[str, Path]:
    if not source.is_dir():
        raise UserError("data.source", f"{source} is not a directory; expected one with the "
                                       f"official SQuAD v1.1 files ({', '.join(LOCAL_FILES.values())})")
    missing = [n for n in LOCAL_FILES.values() if not (source / n).is_file()]
    if missing:
        raise UserError("data.source", f"{source} lacks {', '.join(missing)} (the official SQuAD v1.1 "
                                       "files; a folder with none of them is read as a local copy of the hub "
                                       "dataset: `hf download --repo-type dataset rajpurkar/squad --local-dir DIR`)")
    return {split: source / n for split, n in LOCAL_FILES.items()}


def hub_copy_of(source: str) -> Path | None:
    """``source`` as a local copy of the hub dataset, read as the hub name is; None when it is
    not one, or when it holds any of the official files (which are read first)."""
    from trainables.hub import hub_copy

    return hub_copy(source, official=LOCAL_FILES.values())


def _expect(cond: bool, path: Path, where: str, what: str) -> None:
    if not cond:
        raise UserError("data.source", f"{path}: {where}: {what}")


def check_squad_json(path: Path) -> int:
    """Strictly check an official-layout SQuAD v1.1 file; returns its number of questions.
    The first problem is reported with the JSON path of the field (``data[3].paragraphs[0]``)."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise UserError("data.source", f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise UserError("data.source", f"{path} line {e.lineno}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise UserError("data.source", f"{path}: {JSON_TOO_DEEP}") from None
    _expect(isinstance(obj, dict) and isinstance(obj.get("data"), list), path, "top level",
            "expected an object with a 'data' list (the SQuAD v1.1 layout)")
    n = 0
    for i, article in enumerate(obj["data"]):
        where = f"data[{i}]"
        _expect(isinstance(article, dict) and isinstance(article.get("paragraphs"), list), path,
                where, "expected an object with a 'paragraphs' list")
        for j, para in enumerate(article["paragraphs"]):
            pw = f"{where}.paragraphs[{j}]"
            _expect(isinstance(para, dict) and isinstance(para.get("context"), str), path,
                    f"{pw}.context", "missing or not a string")
            _expect(isinstance(para.get("qas"), list), path, f"{pw}.qas", "missing or not a list")
            for k, qa in enumerate(para["qas"]):
                qw = f"{pw}.qas[{k}]"
                _expect(isinstance(qa, dict), path, qw, "expected an object")
                for key in ("id", "question"):
                    _expect(isinstance(qa.get(key), str) and qa[key].strip() != "", path,
                            f"{qw}.{key}", "missing or empty")
                answers = qa.get("answers")
                _expect(isinstance(answers, list) and len(answers) > 0, path, f"{qw}.answers",
                        "missing or empty (SQuAD v1.1 questions all have answers)")
                for m, ans in enumerate(answers):
                    aw = f"{qw}.answers[{m}]"
                    _expect(isinstance(ans, dict) and isinstance(ans.get("text"), str), path,
                            f"{aw}.text", "missing or not a string")
                    start = ans.get("answer_start")
                    _expect(isinstance(start, int) and 0 <= start <= len(para["context"]), path,
                            f"{aw}.answer_start", f"expected an offset in 0..{len(para['context'])}, "
                                                  f"got {start!r}")
                n += 1
    _expect(n > 0, path, "data", "no questions")
    return n


# --------------------------------------------------------------------------- loading


def _flatten_official(articles: Any) -> list[Question]:
    """Rows of ``load_dataset('json', field='data')`` (one per article) -> questions."""
    out = []
    for paragraphs in articles["paragraphs"]:
        for para in paragraphs:
            for qa in para["qas"]:
                out.append(Question(str(qa["id"]), para["context"], qa["question"],
                                    tuple(a["text"] for a in qa["answers"]),
                                    tuple(int(a["answer_start"]) for a in qa["answers"])))
    return out


def _flatten_hub(ds: Any) -> list[Question]:
    """The hub's flat rows (id, title, context, question, answers{text, answer_start})."""
    missing = [c for c in ("id", "context", "question", "answers") if c not in ds.column_names]
    if missing:
        raise UserError("data.source", f"columns {ds.column_names} lack {', '.join(missing)}; "
                                       "expected SQuAD's id, context, question, answers")
    return [Question(str(i), c, q, tuple(a["text"]), tuple(int(s) for s in a["answer_start"]))
            for i, c, q, a in zip(ds["id"], ds["context"], ds["question"], ds["answers"])]


def load_questions(cfg: TrialConfig) -> dict[str, list[Question]]:
    """Questions per split from the hub (or a local copy of it) or the official local files,
    through ``load_dataset``."""
    import datasets

    from trainables.hub import no_progress_bars, read_hub_dataset

    datasets.logging.set_verbosity_error()
    source = Path(cfg.data.source).expanduser()
    copy = hub_copy_of(cfg.data.source)
    if source.exists() and copy is None:
        files = local_files(source)
        with no_progress_bars():
            dd = datasets.load_dataset("json", field="data", data_files={k: str(v) for k, v in files.items()})
        flatten = _flatten_official
    else:
        dd = read_hub_dataset(cfg.data.source, revision=cfg.data.revision, copy=copy)
        flatten = _flatten_hub
    out = {}
    for split in SPLITS:
        if split not in dd:
            raise UserError("data.source", f"{cfg.data.source} has no {split!r} split "
                                           f"(it has {one_of(dd.keys())})")
        out[split] = flatten(dd[split] if flatten is _flatten_hub else dd[split][:])
    return out


def answer_span(q: Question, k: int = 0) -> tuple[int, int] | None:
    """Character span of answer ``k`` in the context: at ``answer_start`` when the text is
    there, else its first occurrence; None when the context does not contain it."""
    text, start = q.answers[k], q.starts[k]
    if q.context[start:start + len(text)] == text:
        return start, start + len(text)
    found = q.context.find(text)
    return (found, found + len(text)) if found >= 0 else None


# --------------------------------------------------------------------------- encoding


def fit_context(offsets: list[tuple[int, int]], span: tuple[int, int], budget: int) -> tuple[int, int] | None:
    """The token window ``[lo, hi)`` of a context, at most ``budget`` tokens, that contains
    every token overlapping the character ``span``, centred on it; None when the span alone
    needs more than ``budget`` tokens (or the budget is not positive)."""
    n = len(offsets)
    if budget <= 0:
        return None
    if n <= budget:
        return 0, n
    inside = [t for t, (s, e) in enumerate(offsets) if s < span[1] and e > span[0]]
    if not inside:
        return None
    a_lo, a_hi = inside[0], inside[-1] + 1
    if a_hi - a_lo > budget:
        return None
    lo = a_lo - (budget - (a_hi - a_lo)) // 2
    lo = max(0, min(lo, n - budget))
    return lo, lo + budget


class Encoder:
    """Token ids of prompts (context windowed around the answer) and targets for one format."""

    def __init__(self, tokenizer: Any, fmt: str):
        from trainables.models import leading_special_ids

        self.tok = tokenizer
        self.fmt = FORMATS[fmt]
        self.eos = tokenizer.eos_token_id
        self.lead = leading_special_ids(tokenizer)  # Llama's BOS; nothing for GPT-2
        self.static = {p: self._ids(p) for p in self.fmt if p not in ("{c}", "{q}")}
        self._contexts: dict[str, tuple[list[int], list[tuple[int, int]]]] = {}

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def add_contexts(self, contexts: list[str], *, progress: bool, desc: str) -> None:
        from tqdm.auto import tqdm

        todo = [c for c in dict.fromkeys(contexts) if c not in self._contexts]
        step = 512
        for i in tqdm(range(0, len(todo), step), desc=f"tokenising {desc} contexts",
                      disable=not progress, leave=False, delay=1.0):
            chunk = todo[i:i + step]
            enc = self.tok([" " + c for c in chunk], add_special_tokens=False,
                           return_offsets_mapping=True)
            for c, ids, offs in zip(chunk, enc["input_ids"], enc["offset_mapping"]):
                # Offsets are into " " + context: shift them back to the context's own.
                self._contexts[c] = (list(ids), [(s - 1, e - 1) for s, e in offs])

    def prompt(self, q: Question, q_ids: list[int], spans: list[tuple[int, int]],
               reserve: int, max_length: int) -> tuple[list[int], bool] | None:
        """The prompt's ids and whether its context was shortened; None to skip. ``reserve``
        tokens are kept free for the answer."""
        ctx_ids, offsets = self._contexts[q.context]
        fixed = len(self.lead) + sum(len(v) for v in self.static.values()) + len(q_ids)
        budget = max_length - reserve - fixed
        window = None
        if len(spans) > 1:  # all gold spans when they fit, else the first one's
            window = fit_context(offsets, (min(s for s, _ in spans), max(e for _, e in spans)), budget)
        if window is None:
            window = fit_context(offsets, spans[0], budget)
        if window is None:
            return None
        lo, hi = window
        ids: list[int] = list(self.lead)
        for piece in self.fmt:
            ids += ctx_ids[lo:hi] if piece == "{c}" else q_ids if piece == "{q}" else self.static[piece]
        return ids, (hi - lo) < len(ctx_ids)


def encode_split(encoder: Encoder, questions: list[Question], *, max_length: int,
                 reserve: int | None, progress: bool, desc: str) -> tuple[list[list[int]], list[list[int]], list[int], dict[str, int]]:
    """Prompts, targets (first answer + eos) and kept indices of ``questions``; with
    ``reserve`` None the target's own length is reserved (training/validation), else
    ``reserve`` tokens (evaluation prompts)."""
    from tqdm.auto import tqdm

    encoder.add_contexts([q.context for q in questions], progress=progress, desc=desc)
    prompts, targets, kept = [], [], []
    counts = {"skipped": 0, "shortened": 0, "answer_not_in_context": 0}
    step = 2048
    for i in tqdm(range(0, len(questions), step), desc=f"tokenising {desc} questions",
                  disable=not progress, leave=False, delay=1.0):
        chunk = questions[i:i + step]
        q_ids = encoder.tok([" " + q.question.strip() for q in chunk], add_special_tokens=False)["input_ids"]
        a_ids = encoder.tok([" " + q.answers[0].strip() for q in chunk], add_special_tokens=False)["input_ids"]
        for j, q in enumerate(chunk):
            spans = [s for k in range(len(q.answers)) if (s := answer_span(q, k)) is not None]
            if not spans:
                counts["answer_not_in_context"] += 1
                counts["skipped"] += 1
                continue
            target = list(a_ids[j]) + [encoder.eos]
            got = encoder.prompt(q, list(q_ids[j]), spans,
                                 len(target) if reserve is None else reserve, max_length)
            if got is None:
                counts["skipped"] += 1
                continue
            ids, shortened = got
            counts["shortened"] += shortened
            prompts.append(ids)
            targets.append(target)
            kept.append(i + j)
    return prompts, targets, kept, counts


class SquadTask(CausalLMTask):
    name = "squad"
    shards_final_eval = True
    final_metrics = (
        MetricSpec("EM", "max", "EM", "{:.2f}"),
        MetricSpec("F1", "max", "F1", "{:.2f}"),
        MetricSpec("BLEU", "max", "BLEU", "{:.2f}"),
        MetricSpec("NIST", "max", "NIST", "{:.3f}"),
        MetricSpec("METEOR", "max", "METEOR", "{:.2f}"),
        MetricSpec("ROUGE_L", "max", "ROUGE-L", "{:.2f}"),
        MetricSpec("CIDEr", "max", "CIDEr", "{:.3f}"),
    )
    formats = tuple(FORMATS)

    # ----------------------------------------------------------- before launch
    def check(self, cfg: TrialConfig) -> None:
        fmt = cfg.data.format or self.default_format()
        if fmt not in self.formats:
            raise UserError("data.format", f"SQuAD accepts {one_of(self.formats)}, got {fmt!r}"
                                           f"{did_you_mean(str(fmt), self.formats)}")
        from trainables.hub import check_dataset_source, check_hub_copy, looks_local

        if looks_local(cfg.data.source):
            source = Path(cfg.data.source).expanduser()
            if not source.exists():
                raise UserError("data.source", f"data directory {cfg.data.source} does not exist")
            copy = hub_copy_of(cfg.data.source)
            if copy is not None:
                check_hub_copy(copy, None, SPLITS)
                return
            for path in local_files(source).values():
                check_squad_json(path)
        else:
            check_dataset_source(cfg.data.source, revision=cfg.data.revision)

    def _key(self, cfg: TrialConfig, tokenizer_id: str | None) -> str:
        from trainables.cache import fingerprint, source_identity

        data_id = source_identity(cfg.data.source, cfg.data.revision, local_files,
                                  copy=hub_copy_of(cfg.data.source))
        return fingerprint({
            "task": self.name, "version": PREP_VERSION, "data": data_id,
            "tokenizer": tokenizer_id, "format": cfg.data.format or self.default_format(),
            "max_length": cfg.data.max_length, "reserve": cfg.eval.max_new_tokens,
            "limits": [cfg.data.train_limit, cfg.data.val_limit, cfg.data.test_limit],
        })

    def _build(self, cfg: TrialConfig, tokenizer: Any, out: Path, *, key: str, progress: bool) -> None:
        fmt = cfg.data.format or self.default_format()
        data = load_questions(cfg)
        encoder = Encoder(tokenizer, fmt)
        stats: dict[str, Any] = {"data_key": key, "format": fmt}
        splits = {"train": fixed_subset(data["train"], cfg.data.train_limit),
                  "val": fixed_subset(data["validation"], cfg.data.val_limit)}
        for name, questions in splits.items():
            prompts, targets, _, counts = encode_split(encoder, questions, max_length=cfg.data.max_length,
                                                       reserve=None, progress=progress, desc=name)
            if not prompts:
                raise UserError("data.max_length", f"{cfg.data.max_length} tokens leave no {name} "
                                                   f"question room for its answer ({len(questions)} skipped)")
            examples, truncated = TokenizedExamples.build(prompts, targets, max_length=cfg.data.max_length)
            assert truncated == 0  # the context was shortened instead
            examples.save(out, name)
            stats[f"{name}_examples"] = len(examples)
            stats[f"{name}_target_tokens"] = examples.num_target_tokens()
            stats.update({f"{name}_{k}": v for k, v in counts.items()})
        test = data["validation"]
        if cfg.data.test_limit is not None:
            test = test[:cfg.data.test_limit]
        prompts, _, kept, counts = encode_split(encoder, test, max_length=cfg.data.max_length,
                                                reserve=cfg.eval.max_new_tokens, progress=progress,
                                                desc="test")
        (out / "test.json").write_text(json.dumps({
            "ids": [test[i].id for i in kept], "prompts": prompts,
            "references": [list(test[i].answers) for i in kept],
        }, ensure_ascii=False))
        stats["test_questions"] = len(kept)
        stats.update({f"test_{k}": v for k, v in counts.items()})
        (out / "stats.json").write_text(json.dumps(stats, indent=2))

    # ----------------------------------------------------------- in the trial
    def final_eval(self, model: Any, tokenizer: Any, data: Prepared, cfg: TrialConfig, *,
                   device: torch.device, out_dir: Path, session: Any = None) -> dict[str, Any]:
        from trainables.metrics.e2e import meteor_skipped_note
        from trainables.metrics.squad import score_squad

        test = data.test
        outputs = generate(model, tokenizer, test["prompts"], cfg.eval, device=device, session=session)
        if session is not None and not session.is_chief:
            return {}
        answers = [o.split("\n")[0].strip() for o in outputs]
        scores: dict[str, Any] = dict(score_squad(test["references"], answers, meteor=cfg.eval.meteor))
        skipped = data.stats.get("test_skipped", 0)
        notes = [f"{skipped} dev question(s) skipped: no context window of data.max_length "
                 "tokens holds the answer" if skipped else "",
                 meteor_skipped_note(cfg.eval.meteor) if scores.get("METEOR") is None else ""]
        if any(notes):
            scores["final_note"] = "; ".join(n for n in notes if n)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "predictions.json").write_text(
            json.dumps(dict(zip(test["ids"], answers)), ensure_ascii=False, indent=0), encoding="utf-8")
        (out_dir / "predictions.txt").write_text("\n".join(answers) + "\n", encoding="utf-8")
        # Each question's gold answers on consecutive lines, a blank line between questions:
        # ``lorasweep score squad references.txt predictions.txt`` gives back these scores
        # (whitespace inside an answer is one space, which the SQuAD normalisation ignores).
        (out_dir / "references.txt").write_text("\n\n".join(
            "\n".join(" ".join(a.split()) for a in refs) for refs in test["references"]) + "\n", encoding="utf-8")
        return scores
