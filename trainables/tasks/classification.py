"""The sequence-classification task family: a text (or a pair), a label (or a score).

An encoder (RoBERTa, BERT, MiniLM, ...) loaded with ``AutoModelForSequenceClassification``, a
LoRA adapter on its attention (peft's ``SEQ_CLS`` task type also trains the freshly
initialised classification head, as the LoRA paper did), cross-entropy (or mean squared
error for a regression task such as STS-B).

A task of this family only says how to read its labelled splits and which metrics it reports
(:class:`ClassificationTask` subclasses: the GLUE tasks, AG News). Everything else is shared:

* **Split policy** (``data.split``): ``paper`` trains on train and uses the standard dev set as
  both the validation and the test set (what the LoRA paper reports); ``holdout`` carves a
  seeded 10% validation set out of train and keeps dev/test as the test set; ``resplit``
  pools every labelled example and splits it 80/10/10 with ``data.split_seed``.
* **Metrics at every evaluation**: the validation loss and the task's metrics on the
  validation set (``val_accuracy``, ``val_mcc``, ...); ASHA and the search read the first.
  At the end of a full trial the same metrics on the test split(s), without the ``val_``.
* **Augmentation**: optional seeded synonym replacement of training texts, from an offline
  word list (``data.augment=synonyms``).
* **Predictions**: with ``data.predict_file`` (an unlabelled CSV ``id,text`` or
  ``id,title,description``), a completed trial writes ``predictions.csv`` (``id,label``)
  beside its adapter, the form a Kaggle-style competition takes.

Tokenised examples are stored as flat ``.npy`` arrays in the content-keyed cache (built once
per sweep, memory-mapped by every trial), as for the causal-LM tasks.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from trainables.errors import JSON_TOO_DEEP, UserError, one_of
from trainables.report import VAL_LOSS
from trainables.tasks.base import MetricSpec, PerExampleLogits, Prepared, TargetScale, Task, packed, utf8_text

if TYPE_CHECKING:
    import torch

    from trainables.config import TrialConfig

#: Bump when preprocessing changes, so cached tokenisations are rebuilt.
PREP_VERSION = 1

SPLIT_POLICIES = ("paper", "holdout", "resplit")

#: Model families whose classification head starts with a pooler of its own: DeBERTa's
#: ``ContextPooler`` (``pooler.dense``, then the ``classifier``), which the released encoders
#: (deberta-v3-base, ...) do not hold, so it starts random. It is trained in full with the
#: classifier (peft ``modules_to_save``), as RoBERTa's head (``classifier.dense``, then
#: ``classifier.out_proj``) is; BERT's pooler is pretrained and stays frozen.
POOLER_HEADS = {"deberta": ("pooler",), "deberta-v2": ("pooler",)}

#: The test name of the metrics over every test set pooled (a task with several).
POOLED = "all"
METRIC_FORMATS = {"accuracy": "Acc", "f1": "F1", "macro_f1": "macro-F1", "mcc": "MCC",
                  "pearson": "Pearson", "spearman": "Spearman"}


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None
    label: float | int


# --------------------------------------------------------------------------- tokenised storage


class EncodedExamples:
    """Token ids of each example (text or text pair), its label and its index; a torch
    map-style dataset of ``(ids, label, index)``."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray, labels: np.ndarray):
        self.flat, self.offsets, self.labels = flat, offsets, labels
        self.target_scale: TargetScale | None = None
        """Set on evaluation sets of a model trained on standardised targets (its outputs are
        mapped back with it; the labels here stay in the task's units)."""

    def standardized(self, scale: TargetScale) -> EncodedExamples:
        """The same examples with standardised labels (a training set)."""
        return EncodedExamples(self.flat, self.offsets, scale.standardize(self.labels).astype(np.float32))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, Any, int]:
        return self.flat[self.offsets[i]:self.offsets[i + 1]], self.labels[i], i

    @classmethod
    def encode(cls, tokenizer: Any, examples: Sequence[Example], *, max_length: int,
               regression: bool, progress: bool = False, desc: str = "") -> tuple[EncodedExamples, int]:
        """Tokenise (pairs with the model's separator), cut to ``max_length`` (longest text
        first); returns the examples and how many were truncated."""
        from tqdm.auto import tqdm

        ids: list[list[int]] = []
        truncated = 0
        step = 1024
        for start in tqdm(range(0, len(examples), step), desc=f"tokenising {desc}", disable=not progress,
                          leave=False, delay=1.0):
            chunk = examples[start:start + step]
            a = [e.text_a for e in chunk]
            pairs = chunk and chunk[0].text_b is not None
            b = [e.text_b or "" for e in chunk] if pairs else None
            full = tokenizer(a, b)["input_ids"]
            cut = tokenizer(a, b, truncation=True, max_length=max_length)["input_ids"]
            truncated += sum(len(f) > len(c) for f, c in zip(full, cut))
            ids.extend(cut)
        flat, offsets = packed(ids)
        labels = np.asarray([e.label for e in examples], dtype=np.float32 if regression else np.int64)
        return cls(flat, offsets, labels), truncated

    def save(self, directory: Path, name: str) -> None:
        np.save(directory / f"{name}.ids.npy", self.flat)
        np.save(directory / f"{name}.offsets.npy", self.offsets)
        np.save(directory / f"{name}.labels.npy", self.labels)

    @classmethod
    def load(cls, directory: Path, name: str) -> EncodedExamples:
        return cls(np.load(directory / f"{name}.ids.npy", mmap_mode="r"),
                   np.load(directory / f"{name}.offsets.npy"),
                   np.load(directory / f"{name}.labels.npy"))


def pad_collate(pad_id: int) -> Callable[[list[tuple[np.ndarray, Any, int]]], dict[str, Any]]:
    import torch

    def collate(items: list[tuple[np.ndarray, Any, int]]) -> dict[str, Any]:
        width = max(len(ids) for ids, _, _ in items)
        input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, (ids, _, _) in enumerate(items):
            input_ids[row, :len(ids)] = torch.from_numpy(np.asarray(ids, dtype=np.int64))
            mask[row, :len(ids)] = 1
        labels = torch.as_tensor(np.stack([lab for _, lab, _ in items]))
        index = torch.as_tensor([i for _, _, i in items], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels, "index": index}

    return collate


# --------------------------------------------------------------------------- splits, augmentation


def _shuffled(items: list[Any], seed: int) -> list[Any]:
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


def apply_split_policy(policy: str, splits: dict[str, list[Example]], *, seed: int,
                       test_names: Sequence[str], holdout_size: int | None = None) -> dict[str, list[Example]]:
    """``{'train', 'val', <test names>...}`` from the labelled ``train`` and dev/test splits
    (``splits`` holds ``train`` and one list per name in ``test_names``); ``holdout_size``: how
    many training examples ``holdout`` keeps for validation (None: 10%)."""
    if policy == "paper":
        return {"train": splits["train"], "val": splits[test_names[0]],
                **{n: splits[n] for n in test_names}}
    if policy == "holdout":
        train = _shuffled(splits["train"], seed)
        n_val = min(holdout_size, len(train) - 1) if holdout_size else max(1, len(train) // 10)
        return {"train": train[n_val:], "val": train[:n_val], **{n: splits[n] for n in test_names}}
    # resplit: every labelled example, 80/10/10 (a second test split, e.g. MNLI mismatched,
    # keeps its own examples: it measures transfer to other genres)
    pooled = _shuffled(splits["train"] + splits[test_names[0]], seed)
    n = len(pooled)
    n_val = n_test = max(1, n // 10)
    out = {"train": pooled[n_val + n_test:], "val": pooled[:n_val], test_names[0]: pooled[n_val:n_val + n_test]}
    out.update({name: splits[name] for name in test_names[1:]})
    return out


def synonym_augment(examples: Sequence[Example], synonyms: dict[str, list[str]], *, prob: float,
                    copies: int, seed: int) -> list[Example]:
    """``copies`` extra versions of each example with each word that has synonyms replaced by
    one of them with probability ``prob`` (seeded); the originals come first."""
    rng = random.Random(seed)

    def swap(text: str | None) -> str | None:
        if text is None:
            return None
        words = text.split(" ")
        for i, w in enumerate(words):
            core = w.strip(".,;:!?").lower()
            options = synonyms.get(core)
            if options and rng.random() < prob:
                new = rng.choice(options)
                if w[:1].isupper():
                    new = new[:1].upper() + new[1:]
                words[i] = w.lower().replace(core, new, 1) if w.lower() != core else new
        return " ".join(words)

    out = list(examples)
    for _ in range(copies):
        out += [Example(swap(e.text_a), swap(e.text_b), e.label) for e in examples]
    return out


def read_predict_file(path: Path) -> tuple[list[str], list[Example]]:
    """An unlabelled CSV with a header: ``id`` and one text column (``text``/``sentence``) or
    ``title`` and ``description`` (AG News style) or a pair ``sentence1,sentence2``."""
    with utf8_text(path, "data.predict_file", newline="") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip().lower() for c in reader.fieldnames or []]
        rows = list(reader)
    if "id" not in cols:
        raise UserError("data.predict_file", f"{path}: header {cols} has no 'id' column")
    norm = [{k.strip().lower(): (v or "") for k, v in r.items() if k} for r in rows]
    if "title" in cols and "description" in cols:
        ex = [Example(f"{r['title']} {r['description']}".strip(), None, 0) for r in norm]
    elif "sentence1" in cols and "sentence2" in cols:
        ex = [Example(r["sentence1"], r["sentence2"], 0) for r in norm]
    else:
        col = next((c for c in ("text", "sentence", "question") if c in cols), None)
        if col is None:
            raise UserError("data.predict_file", f"{path}: expected a text column (text, sentence, "
                                                 f"title+description or sentence1+sentence2), got {cols}")
        ex = [Example(r[col], None, 0) for r in norm]
    if not ex:
        raise UserError("data.predict_file", f"{path} has a header but no rows")
    return [r["id"] for r in norm], ex


# --------------------------------------------------------------------------- the task family


class ClassificationTask(PerExampleLogits, Task):
    """Shared model, losses, metrics and data preparation of the classification family."""

    peft_task_type = "seq_cls"
    label_names: ClassVar[tuple[str, ...]] = ()
    """Class names in label-id order; empty for a regression task (one output, MSE)."""
    metric_names: ClassVar[tuple[str, ...]] = ("accuracy",)
    """Metrics of :mod:`trainables.metrics.glue`; the first is the one optimised."""
    test_names: ClassVar[tuple[str, ...]] = ("test",)
    """Test splits (MNLI: matched and mismatched dev sets)."""
    default_split: ClassVar[str] = "paper"
    data_settings = ("split", "augment", "augment_prob", "augment_copies", "synonyms", "predict_file",
                     "predict_labels")
    output_labels: ClassVar[tuple[str, ...] | None] = None
    """The labels of the task's original release, per class id, that ``predictions.csv``
    writes under ``data.predict_labels: release`` (None: the release uses the class ids)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.metric_names:
            return
        cls.metric = MetricSpec(f"val_{cls.metric_names[0]}", "max",
                                f"val {METRIC_FORMATS[cls.metric_names[0]]}", "{:.2f}")
        cls.report_metrics = (cls.metric, MetricSpec(VAL_LOSS, "min", "val loss"),
                              *(MetricSpec(f"val_{m}", "max", f"val {METRIC_FORMATS[m]}", "{:.2f}")
                                for m in cls.metric_names[1:]))
        # Several test sets (MNLI's matched and mismatched dev sets): each one's metrics, after
        # the metrics of them pooled (unsuffixed; the LoRA paper's "overall" MNLI accuracy).
        pooled = () if len(cls.test_names) == 1 else (POOLED,)
        cls.final_metrics = tuple(
            MetricSpec(cls._final_name(m, t), "max", f"{METRIC_FORMATS[m]}{cls._suffix(t)}", "{:.2f}")
            for t in (*pooled, *cls.test_names) for m in cls.metric_names)

    @classmethod
    def _suffix(cls, test_name: str) -> str:
        return "" if len(cls.test_names) == 1 or test_name == POOLED else f"_{test_name}"

    @classmethod
    def _final_name(cls, metric: str, test_name: str) -> str:
        return f"{metric}{cls._suffix(test_name)}"

    @property
    def regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        return len(self.label_names) or 1

    # ----------------------------------------------------------- what a subclass provides
    def read_splits(self, cfg: TrialConfig) -> dict[str, list[Example]]:
        """Labelled examples: ``train`` and one list per name in :attr:`test_names`."""
        raise NotImplementedError

    def data_identity(self, cfg: TrialConfig) -> Any:
        """What the raw data is (file digests or hub name + revision), for the cache key."""
        raise NotImplementedError

    def check_source(self, cfg: TrialConfig) -> None:
        """Fast checks of the data source (files and their headers, or the hub)."""
        raise NotImplementedError

    # ----------------------------------------------------------- before launch
    def check(self, cfg: TrialConfig) -> None:
        policy = cfg.data.split or self.default_split
        if policy not in SPLIT_POLICIES:
            raise UserError("data.split", f"expected {one_of(SPLIT_POLICIES)}, got {policy!r}")
        if cfg.data.holdout_size and policy != "holdout":
            raise UserError("data.holdout_size", f"sizes the holdout split, and data.split is {policy!r}; "
                                                 "use data.split=holdout or data.holdout_size=null")
        if cfg.data.format not in (None, "default"):
            raise UserError("data.format", f"{self.name} has one input format; leave it null")
        self.check_source(cfg)
        if cfg.data.predict_file:
            path = Path(cfg.data.predict_file).expanduser()
            if not path.is_file():
                raise UserError("data.predict_file", f"{path} does not exist")
            read_predict_file(path)
        if cfg.data.augment == "synonyms":
            self.synonyms(cfg)

    def synonyms(self, cfg: TrialConfig) -> dict[str, list[str]]:
        if cfg.data.synonyms:
            path = Path(cfg.data.synonyms).expanduser()
            try:
                data = json.loads(path.read_text())
            except FileNotFoundError:
                raise UserError("data.synonyms", f"{path} does not exist") from None
            except json.JSONDecodeError as e:
                raise UserError("data.synonyms", f"{path}: not valid JSON ({e.msg})") from None
            except RecursionError:
                raise UserError("data.synonyms", f"{path}: {JSON_TOO_DEEP}") from None
            if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
                raise UserError("data.synonyms", f"{path}: expected {{word: [synonym, ...]}}")
            return data
        from trainables.offline.glue_synth.synonyms import synonym_table

        return synonym_table()

    def _key(self, cfg: TrialConfig, tokenizer_id: str | None) -> str:
        from trainables.cache import file_digest, fingerprint

        d = cfg.data
        return fingerprint({
            "task": self.name, "version": PREP_VERSION, "data": self.data_identity(cfg),
            "tokenizer": tokenizer_id, "max_length": d.max_length,
            "split": d.split or self.default_split, "split_seed": d.split_seed,
            **({"holdout_size": d.holdout_size} if d.holdout_size else {}),
            "limits": [d.train_limit, d.val_limit, d.test_limit],
            "augment": [d.augment, d.augment_prob, d.augment_copies,
                        self.synonyms(cfg) if d.augment == "synonyms" else None],
            "predict": file_digest(Path(d.predict_file).expanduser()) if d.predict_file else None,
        })

    def skeleton(self, cfg: TrialConfig) -> Any:
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification

        from trainables.adapters import mark_new_head
        from trainables.models import model_source

        config = AutoConfig.from_pretrained(model_source(cfg), revision=cfg.model.revision,
                                            **self._head_config())
        with torch.device("meta"):
            model = AutoModelForSequenceClassification.from_config(config)
        mark_new_head(model, POOLER_HEADS.get(config.model_type, ()))
        return model

    def _head_config(self) -> dict[str, Any]:
        if self.regression:
            return {"num_labels": 1, "problem_type": "regression"}
        return {"num_labels": self.num_labels, "problem_type": "single_label_classification",
                "id2label": dict(enumerate(self.label_names)),
                "label2id": {n: i for i, n in enumerate(self.label_names)}}

    def split(self, cfg: TrialConfig) -> dict[str, list[Example]]:
        """``{'train', 'val', <test names>...}``: :meth:`read_splits` under the split policy."""
        return apply_split_policy(cfg.data.split or self.default_split, self.read_splits(cfg),
                                  seed=cfg.data.split_seed, test_names=self.test_names,
                                  holdout_size=cfg.data.holdout_size)

    def _build(self, cfg: TrialConfig, tokenizer: Any, out: Path, *, key: str, progress: bool) -> None:
        d = cfg.data
        policy = d.split or self.default_split
        splits = self.split(cfg)
        limits = {"train": d.train_limit, "val": d.val_limit, **{t: d.test_limit for t in self.test_names}}
        stats: dict[str, Any] = {"data_key": key, "split_policy": policy, "split_seed": d.split_seed}
        for name, examples in splits.items():
            if limits.get(name) is not None and limits[name] < len(examples):
                examples = _shuffled(examples, 0)[:limits[name]]
            if name == "train" and d.augment == "synonyms":
                original = len(examples)
                examples = synonym_augment(examples, self.synonyms(cfg), prob=d.augment_prob,
                                           copies=d.augment_copies, seed=d.split_seed)
                stats["train_augmented"] = len(examples) - original
            enc, truncated = EncodedExamples.encode(tokenizer, examples, max_length=d.max_length,
                                                    regression=self.regression, progress=progress,
                                                    desc=name)
            enc.save(out, name)
            stats[f"{name}_examples"] = len(enc)
            stats[f"{name}_truncated"] = truncated
            if not self.regression:
                counts = np.bincount(enc.labels, minlength=self.num_labels)
                stats[f"{name}_label_counts"] = counts.tolist()
        if d.predict_file:
            ids, examples = read_predict_file(Path(d.predict_file).expanduser())
            enc, _ = EncodedExamples.encode(tokenizer, examples, max_length=d.max_length,
                                            regression=self.regression, desc="predict file")
            enc.save(out, "predict")
            (out / "predict_ids.json").write_text(json.dumps(ids))
            stats["predict_examples"] = len(ids)
        (out / "stats.json").write_text(json.dumps(stats, indent=2))

    # ----------------------------------------------------------- in the trial
    def load_prepared(self, path: Path, cfg: TrialConfig) -> Prepared:
        tests = {t: EncodedExamples.load(path, t) for t in self.test_names}
        if (path / "predict_ids.json").exists():
            tests["predict"] = EncodedExamples.load(path, "predict")
        train, val = EncodedExamples.load(path, "train"), EncodedExamples.load(path, "val")
        params: dict[str, Any] = {}
        if self.regression and cfg.data.standardize_targets:
            scale = TargetScale.of(train.labels)
            train = train.standardized(scale)
            for evaluated in (val, *tests.values()):
                evaluated.target_scale = scale
            params = {"data.target_mean": scale.mean, "data.target_std": scale.std}
        return Prepared(train=train, val=val, test=tests, path=path, params=params,
                        stats=json.loads((path / "stats.json").read_text()))

    def load_model(self, cfg: TrialConfig) -> tuple[Any, Any]:
        from transformers import AutoConfig, AutoModelForSequenceClassification

        from trainables.adapters import mark_new_head
        from trainables.quantization import CLASSIFIER_HEADS as HEADS
        from trainables.quantization import from_pretrained_kwargs, prepare_for_training
        from trainables.models import load_tokenizer, model_source

        tokenizer = load_tokenizer(cfg)
        config = AutoConfig.from_pretrained(model_source(cfg), revision=cfg.model.revision)
        pooler = POOLER_HEADS.get(config.model_type, ())
        # A base with a head of another size (a classifier of other labels) gets a new one, as a
        # headless encoder does: the head is trained either way.
        model = AutoModelForSequenceClassification.from_pretrained(
            model_source(cfg), revision=cfg.model.revision, ignore_mismatched_sizes=True,
            **from_pretrained_kwargs(cfg, skip_modules=HEADS + pooler), **self._head_config())
        mark_new_head(model, pooler)
        model.config.pad_token_id = tokenizer.pad_token_id
        return prepare_for_training(model, cfg), tokenizer

    def collate(self, tokenizer: Any) -> Callable[[list[Any]], dict[str, Any]]:
        return pad_collate(tokenizer.pad_token_id)

    def _logits(self, model: Any, batch: dict[str, Any]) -> torch.Tensor:
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str) -> torch.Tensor:
        import torch.nn.functional as F

        if self.regression:
            return F.mse_loss(logits.squeeze(-1).float(), labels.float(), reduction=reduction)
        return F.cross_entropy(logits.float(), labels, reduction=reduction)

    def train_loss(self, model: Any, batch: dict[str, Any], cfg: TrialConfig) -> torch.Tensor:
        return self._loss(self._logits(model, batch), batch["labels"], "mean")

    def _prediction(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.squeeze(-1).float() if self.regression else logits.argmax(-1)

    def validate(self, model: Any, loader: Any, *, device: Any, session: Any,
                 precision: str) -> dict[str, float]:
        from trainables.metrics.glue import compute

        ps, ys, loss = self._gathered(model, loader, device, session, precision)
        scores = compute(self.metric_names, ys, ps)
        return {VAL_LOSS: loss, **{f"val_{k}": v for k, v in scores.items()}}

    def final_eval(self, model: Any, tokenizer: Any, data: Prepared, cfg: TrialConfig, *,
                   device: Any, out_dir: Path, session: Any = None) -> dict[str, Any]:
        from torch.utils.data import DataLoader

        from trainables.metrics.glue import compute

        collate = self.collate(tokenizer)
        out_dir.mkdir(parents=True, exist_ok=True)
        results: dict[str, Any] = {}
        every_label, every_pred = [], []
        for name in self.test_names:
            loader = DataLoader(data.test[name], batch_size=cfg.train.eval_batch_size, collate_fn=collate)
            _, preds, labels, _ = self._predict(model, loader, device)
            for metric, value in compute(self.metric_names, labels, preds).items():
                results[self._final_name(metric, name)] = value
            every_label += list(labels)
            every_pred += list(preds)
            with open(out_dir / f"{name}_predictions.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["index", "label", "prediction"])
                w.writerows((k, self.class_label(y), self.class_label(p))
                            for k, (y, p) in enumerate(zip(labels, preds)))
        if len(self.test_names) > 1:
            results.update(compute(self.metric_names, every_label, every_pred))
        if "predict" in data.test:
            loader = DataLoader(data.test["predict"], batch_size=cfg.train.eval_batch_size, collate_fn=collate)
            _, preds, _, _ = self._predict(model, loader, device)
            ids = json.loads((data.path / "predict_ids.json").read_text())
            with open(out_dir / "predictions.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["id", "label"])
                w.writerows(zip(ids, (self.output_label(p, cfg.data.predict_labels) for p in preds)))
        return results

    def class_label(self, value: Any) -> Any:
        """A label or prediction as ``<test>_predictions.csv`` writes it: the class id (a
        regression target as it is)."""
        return value

    def output_label(self, pred: Any, labels: str = "index") -> Any:
        """A prediction as ``predictions.csv`` writes it (``labels``: ``data.predict_labels``)."""
        if self.regression:
            return round(float(pred), 4)
        return self.output_labels[int(pred)] if labels == "release" and self.output_labels else int(pred)
