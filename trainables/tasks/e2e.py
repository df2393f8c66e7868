"""E2E NLG (Novikova et al., 2017): restaurant meaning representations -> English text.

Data: the hub dataset ``e2e_nlg``, a local copy of it (``hf download --repo-type dataset
e2e_nlg --local-dir DIR``, read by the same ``load_dataset`` call as the hub id), or a local
directory in the official release's layout (``trainset.csv``, ``devset.csv``,
``testset_w_refs.csv`` with columns ``mr,ref``, one row per reference, so an MR with k
references has k rows), or JSONL files with the same fields (``train.jsonl``, ``dev.jsonl``,
``test.jsonl``). The CSVs are read with Python's ``csv``, as they are checked (every cell is
text); the hub and JSONL go through ``datasets.load_dataset``.

Format: ``MR <sep> text <eos>`` with GPT-2's ``<|endoftext|>`` as both sep and eos, loss on the
text tokens only, as in the LoRA paper's ``gpt2_encode.py --add_bos --add_eos``. The ``paper``
MR linearisation is the paper's (``name : Blue Spice | Type : pub | ...``); ``raw`` keeps the
official ``name[Blue Spice], eatType[pub]`` string. A model whose tokenizer starts every text
with a special token of its own (Llama 3's ``<|begin_of_text|>``) gets it before the MR, as it
was pretrained; GPT-2's adds none.

Evaluation: beam search on the unique test MRs, each scored against all its references with
BLEU, NIST, METEOR, ROUGE-L and CIDEr (:mod:`trainables.metrics.e2e`).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.errors import UserError, did_you_mean, one_of
from trainables.tasks.base import MetricSpec, Prepared, jsonl_records, utf8_text
from trainables.tasks.causal_lm import CausalLMTask, TokenizedExamples, fixed_subset, generate

if TYPE_CHECKING:
    import torch

    from trainables.config import TrialConfig

#: Bump when preprocessing changes, so cached tokenisations are rebuilt.
PREP_VERSION = 2

SPLITS = ("train", "validation", "test")
LOCAL_FILES = {
    "csv": {"train": "trainset.csv", "validation": "devset.csv", "test": "testset_w_refs.csv"},
    "jsonl": {"train": "train.jsonl", "validation": "dev.jsonl", "test": "test.jsonl"},
}
MR_COLUMNS = ("mr", "meaning_representation")
REF_COLUMNS = ("ref", "human_reference")

#: Slot names as the paper's E2E files write them; the others are kept as they are.
PAPER_SLOT_NAMES = {"eatType": "Type", "priceRange": "price", "familyFriendly": "family friendly"}
_SLOT = re.compile(r"\s*([^\[\],]+?)\s*\[(.*?)\]\s*(?:,|$)")


def parse_mr(mr: str) -> list[tuple[str, str]]:
    """``'name[The Eagle], eatType[pub]'`` -> ``[('name', 'The Eagle'), ('eatType', 'pub')]``."""
    return [(m.group(1), m.group(2)) for m in _SLOT.finditer(mr)]


def format_mr(mr: str, fmt: str) -> str:
    if fmt == "raw":
        return mr.strip()
    slots = parse_mr(mr)
    if not slots:  # not in the official syntax: use it as it is
        return mr.strip()
    return " | ".join(f"{PAPER_SLOT_NAMES.get(k, k)} : {v}" for k, v in slots)


def _pick(columns: Iterable[str], wanted: tuple[str, ...]) -> str | None:
    norm = {c.strip().lstrip("\ufeff").lower(): c for c in columns}
    return next((norm[w] for w in wanted if w in norm), None)


# --------------------------------------------------------------------------- local files


def local_files(source: Path) -> tuple[str, dict[str, Path]]:
    """The official CSVs or the JSONL files of a local E2E directory."""
    if not source.is_dir():
        raise UserError("data.source", f"{source} is not a directory; expected the E2E "
                                       "release's directory (trainset.csv, devset.csv, "
                                       "testset_w_refs.csv) or train/dev/test.jsonl")
    for kind, names in LOCAL_FILES.items():
        if (source / names["train"]).is_file():
            missing = [n for n in names.values() if not (source / n).is_file()]
            if missing:
                raise UserError("data.source", f"{source} has {names['train']} but lacks "
                                               f"{', '.join(missing)}")
            return kind, {split: source / n for split, n in names.items()}
    raise UserError("data.source", f"{source} has neither the official E2E CSVs "
                                   "(trainset.csv, devset.csv, testset_w_refs.csv) nor "
                                   "train.jsonl/dev.jsonl/test.jsonl nor a local copy of the hub "
                                   "dataset (`hf download --repo-type dataset e2e_nlg --local-dir DIR`)")


def e2e_hub_copy(source: str) -> Path | None:
    """``source`` as a local copy of the hub dataset, when it has none of the local files."""
    from trainables.hub import hub_copy

    return hub_copy(source, official=[names["train"] for names in LOCAL_FILES.values()])


def csv_rows(path: Path) -> Iterator[tuple[str, str]]:
    """(mr, ref) of each row of an official E2E CSV, read strictly (every cell text, as
    written: ``NA`` or ``None`` is a word here); UserError at the first malformed row."""
    with utf8_text(path, "data.source", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise UserError("data.source", f"{path} is empty") from None
        except csv.Error as e:
            raise UserError("data.source", f"{path} line 1: not valid CSV ({e})") from None
        mr_col, ref_col = _pick(header, MR_COLUMNS), _pick(header, REF_COLUMNS)
        if mr_col is None or ref_col is None:
            raise UserError("data.source", f"{path} line 1: header {header} lacks an 'mr' and "
                                           "a 'ref' column")
        i_mr, i_ref = header.index(mr_col), header.index(ref_col)
        try:
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise UserError("data.source", f"{path} line {reader.line_num}: expected "
                                                   f"{len(header)} fields ({','.join(header)}), "
                                                   f"found {len(row)}")
                if not row[i_mr].strip() or not row[i_ref].strip():
                    raise UserError("data.source", f"{path} line {reader.line_num}: empty mr or ref")
                yield row[i_mr], row[i_ref]
        except csv.Error as e:
            raise UserError("data.source", f"{path} line {reader.line_num}: not valid CSV ({e})") from None


def check_csv(path: Path) -> int:
    """Strictly read an official E2E CSV; raise UserError at the first malformed row."""
    rows = sum(1 for _ in csv_rows(path))
    if rows == 0:
        raise UserError("data.source", f"{path} has a header but no rows")
    return rows


def check_jsonl(path: Path) -> int:
    rows = 0
    for n, obj in jsonl_records(path, "data.source"):
        if not isinstance(obj, dict) or _pick(obj, MR_COLUMNS) is None or _pick(obj, REF_COLUMNS) is None:
            raise UserError("data.source", f"{path} line {n}: expected an object with 'mr' "
                                           "and 'ref' fields")
        rows += 1
    if rows == 0:
        raise UserError("data.source", f"{path} has no rows")
    return rows


# --------------------------------------------------------------------------- loading


def load_rows(cfg: TrialConfig) -> dict[str, list[tuple[str, str]]]:
    """(mr, ref) rows per split from the hub or the local files, through ``load_dataset``."""
    import datasets

    from trainables.hub import no_progress_bars, read_hub_dataset

    source = Path(cfg.data.source).expanduser()
    copy = e2e_hub_copy(cfg.data.source)
    datasets.logging.set_verbosity_error()
    if source.exists() and copy is None:
        kind, files = local_files(source)
        if kind == "csv":  # read as checked, not through pandas (which makes 'NA' a missing value)
            return {split: list(csv_rows(path)) for split, path in files.items()}
        with no_progress_bars():
            dd = datasets.load_dataset("json", data_files={k: str(v) for k, v in files.items()})
    else:
        dd = read_hub_dataset(cfg.data.source, revision=cfg.data.revision, copy=copy)
    out: dict[str, list[tuple[str, str]]] = {}
    for split in SPLITS:
        if split not in dd:
            raise UserError("data.source", f"{cfg.data.source} has no {split!r} split "
                                           f"(it has {one_of(dd.keys())})")
        ds = dd[split]
        mr_col, ref_col = _pick(ds.column_names, MR_COLUMNS), _pick(ds.column_names, REF_COLUMNS)
        if mr_col is None or ref_col is None:
            raise UserError("data.source", f"{cfg.data.source} split {split!r} has columns "
                                           f"{ds.column_names}, not mr/ref")
        out[split] = [(str(m), str(r)) for m, r in zip(ds[mr_col], ds[ref_col])]
    return out


def group_references(rows: list[tuple[str, str]]) -> tuple[list[str], list[list[str]]]:
    """Unique MRs in first-seen order, each with all of its references."""
    groups: dict[str, list[str]] = {}
    for mr, ref in rows:
        groups.setdefault(mr, []).append(ref)
    return list(groups), list(groups.values())


class E2ETask(CausalLMTask):
    name = "e2e"
    final_metrics = (
        MetricSpec("BLEU", "max", "BLEU", "{:.2f}"),
        MetricSpec("NIST", "max", "NIST", "{:.3f}"),
        MetricSpec("METEOR", "max", "METEOR", "{:.2f}"),
        MetricSpec("ROUGE_L", "max", "ROUGE-L", "{:.2f}"),
        MetricSpec("CIDEr", "max", "CIDEr", "{:.3f}"),
    )
    formats = ("paper", "raw")
    shards_final_eval = True

    # ----------------------------------------------------------- before launch
    def check(self, cfg: TrialConfig) -> None:
        fmt = cfg.data.format or self.default_format()
        if fmt not in self.formats:
            raise UserError("data.format", f"E2E accepts {one_of(self.formats)}, got {fmt!r}"
                                           f"{did_you_mean(str(fmt), self.formats)}")
        source = Path(cfg.data.source).expanduser()
        from trainables.hub import check_dataset_source, check_hub_copy, looks_local

        copy = self.hub_copy(cfg.data.source)
        if copy is not None:
            check_hub_copy(copy, None, SPLITS)
        elif looks_local(cfg.data.source):
            if not source.exists():
                raise UserError("data.source", f"data directory {cfg.data.source} does not exist")
            self.check_local(source)
        else:
            check_dataset_source(cfg.data.source, revision=cfg.data.revision)

    # Hooks for tasks of the same family (data-to-text with several references per input:
    # trainables.tasks.data2text); E2E's own data handling is the default.
    def check_local(self, source: Path) -> None:
        """Strictly check a local data directory (UserError naming the file and line)."""
        kind, files = local_files(source)
        for path in files.values():
            (check_csv if kind == "csv" else check_jsonl)(path)

    def hub_copy(self, source: str) -> Path | None:
        """``source`` as a local copy of the hub dataset (read as the hub id is), else None."""
        return e2e_hub_copy(source)

    def data_files(self, source: Path) -> dict[str, Path]:
        """The local files whose content keys the tokenisation cache."""
        return local_files(source)[1]

    def read_rows(self, cfg: TrialConfig) -> dict[str, Any]:
        """``(input, reference)`` rows under ``train``, ``validation`` and ``test``."""
        return load_rows(cfg)

    def format_input(self, text: str, fmt: str) -> str:
        return format_mr(text, fmt)

    def limit_test(self, n_inputs: int, limit: int | None) -> list[int]:
        """Which grouped test inputs to keep under ``data.test_limit`` (E2E: the first N)."""
        return list(range(n_inputs if limit is None else min(limit, n_inputs)))

    def test_extras(self, rows: dict[str, Any], inputs: list[str]) -> dict[str, Any]:
        """More test-set fields saved with the prompts (WebNLG: seen/unseen subsets)."""
        return {}

    def score(self, test: dict[str, Any], hyps: list[str], cfg: TrialConfig) -> dict[str, Any]:
        """The final metrics of ``hyps`` on the grouped test set."""
        from trainables.metrics.e2e import score_e2e

        return dict(score_e2e(test["references"], hyps, meteor=cfg.eval.meteor))

    def _key(self, cfg: TrialConfig, tokenizer_id: str | None) -> str:
        from trainables.cache import fingerprint, source_identity

        data_id = source_identity(cfg.data.source, cfg.data.revision, self.data_files,
                                  copy=self.hub_copy(cfg.data.source))
        return fingerprint({
            "task": self.name, "version": PREP_VERSION, "data": data_id,
            "tokenizer": tokenizer_id, "format": cfg.data.format or self.default_format(),
            "max_length": cfg.data.max_length, "limits": [cfg.data.train_limit, cfg.data.val_limit,
                                                          cfg.data.test_limit],
        })

    def _build(self, cfg: TrialConfig, tokenizer: Any, out: Path, *, key: str, progress: bool) -> None:
        from tqdm.auto import tqdm

        from trainables.models import leading_special_ids

        fmt = cfg.data.format or self.default_format()
        rows = self.read_rows(cfg)
        eos = tokenizer.eos_token_id
        lead = leading_special_ids(tokenizer)  # Llama's BOS; nothing for GPT-2
        train = fixed_subset(rows["train"], cfg.data.train_limit)
        val = fixed_subset(rows["validation"], cfg.data.val_limit)
        test_mrs, test_refs = group_references(rows["test"])
        keep = self.limit_test(len(test_mrs), cfg.data.test_limit)
        test_mrs, test_refs = [test_mrs[i] for i in keep], [test_refs[i] for i in keep]

        def encode(texts: list[str], desc: str) -> list[list[int]]:
            out_ids: list[list[int]] = []
            step = 2048
            for i in tqdm(range(0, len(texts), step), desc=f"tokenising {desc}",
                          disable=not progress, leave=False, delay=1.0):
                out_ids.extend(tokenizer(texts[i:i + step], add_special_tokens=False)["input_ids"])
            return out_ids

        stats: dict[str, Any] = {"data_key": key, "format": fmt}
        for name, split_rows in (("train", train), ("val", val)):
            prompts = [lead + ids + [eos] for ids in encode([self.format_input(m, fmt) for m, _ in split_rows],
                                                     f"{name} MRs")]
            targets = [ids + [eos] for ids in encode([" " + r.strip() for _, r in split_rows],
                                                     f"{name} texts")]
            examples, truncated = TokenizedExamples.build(prompts, targets,
                                                          max_length=cfg.data.max_length)
            examples.save(out, name)
            stats[f"{name}_examples"] = len(examples)
            stats[f"{name}_truncated"] = truncated
            stats[f"{name}_target_tokens"] = examples.num_target_tokens()
        test_prompts = [lead + ids + [eos] for ids in encode([self.format_input(m, fmt) for m in test_mrs],
                                                      "test MRs")]
        (out / "test.json").write_text(json.dumps(
            {"mrs": test_mrs, "prompts": test_prompts, "references": test_refs,
             **self.test_extras(rows, test_mrs)}, ensure_ascii=False))
        stats["test_mrs"] = len(test_mrs)
        stats["test_references"] = sum(len(r) for r in test_refs)
        (out / "stats.json").write_text(json.dumps(stats, indent=2))

    # ----------------------------------------------------------- in the trial
    def final_eval(self, model: Any, tokenizer: Any, data: Prepared, cfg: TrialConfig, *,
                   device: torch.device, out_dir: Path, session: Any = None) -> dict[str, Any]:
        from trainables.metrics.e2e import meteor_skipped_note

        test = data.test
        hyps = generate(model, tokenizer, test["prompts"], cfg.eval, device=device, session=session)
        if session is not None and not session.is_chief:
            return {}
        scores = self.score(test, hyps, cfg)
        if scores.get("METEOR") is None:
            scores["final_note"] = meteor_skipped_note(cfg.eval.meteor)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "predictions.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
        (out_dir / "references.txt").write_text(
            "\n\n".join("\n".join(refs) for refs in test["references"]) + "\n", encoding="utf-8")
        (out_dir / "mrs.txt").write_text("\n".join(test["mrs"]) + "\n", encoding="utf-8")
        return scores
