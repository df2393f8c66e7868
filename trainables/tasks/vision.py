"""The image-classification task family: CIFAR-10 with a ResNet (LoRA on its convolutions).

**Model.** transformers' ``ResNetForImageClassification`` (``microsoft/resnet-18`` is
ResNet-18 with ImageNet weights), by hub name or a local ``save_pretrained`` directory,
loaded with a fresh 10-class head (``num_labels=10, ignore_mismatched_sizes=True``).
torchvision is not used: its wheels pin another torch than ours. A head created fresh is
trained in full (peft ``modules_to_save``) whatever the target group, and is not LoRA-adapted
(:func:`trainables.adapters.mark_new_head` says why). With an adapter (LoRA, ...) the
base's BatchNorm layers stay in eval mode: their running statistics are frozen like every
other base weight, so the saved adapter plus head is the whole change (peft does not save
buffers). ``adapter.method: full`` trains everything, BatchNorm statistics included.

**Data** (``data.source``), three readers giving the same arrays (uint8 N x 32 x 32 x 3 and
int64 labels):

* the official "python version" directory ``cifar-10-batches-py`` (``data_batch_1..5``,
  ``test_batch``, ``batches.meta``: pickles, read by an unpickler that admits numpy arrays
  and plain data only), or a directory holding it, as torchvision downloads it;
* a hub dataset (``cifar10``, ``uoft-cs/cifar10``; columns ``img`` and ``label``) through
  ``datasets``, or a local copy of one (``hf download --repo-type dataset uoft-cs/cifar10
  --local-dir DIR``: its card and ``plain_text/*.parquet`` files), read by the same call;
* an image folder: ``train/<class>/*.png`` and ``test/<class>/*.png`` (classes = the sorted
  folder names; images in class, then file-name order).

**Splits.** The official training set is split 80/20 into train and validation with a
seeded permutation (``data.split_seed``); the official test set is the test set, scored once
at the end (``test_accuracy``). Validation accuracy is reported at every evaluation and is
ASHA's metric.

**Preparation.** Decoded once into the cache as ``.npy`` uint8 arrays (memory-mapped by every
trial; CIFAR-10 is 150 MB at 32 x 32). Normalisation (ImageNet mean and std) and the optional
resize (``data.image_size``, bilinear) happen per batch, so the cache holds native pixels
whatever size a trial asks for: 50,000 images at 224 x 224 would be 7.5 GB.

**Image size default: native (32).** A trial sees the data as published unless it asks for
more; upsampling to 224 costs 49x the compute per image (on CPU that is the difference between
minutes and hours per epoch). The ``paper`` preset of ``cifar_lora`` sets 224, since ImageNet
ResNet-18's filters and its 32x downsampling were made for that size (at 32 x 32 its last stage
sees a 1 x 1 map).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainables.errors import UserError, one_of
from trainables.report import VAL_LOSS
from trainables.tasks.base import MetricSpec, PerExampleLogits, Prepared, Task

if TYPE_CHECKING:
    import torch

    from trainables.config import TrialConfig

#: Bump when preparation changes, so cached arrays are rebuilt.
PREP_VERSION = 1

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VAL_FRACTION = 0.2
"""Share of the official training set held out for validation (the issue's 80/20 split)."""
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
HEAD = ("classifier",)
"""The head module of ``ResNetForImageClassification`` (Flatten, Linear)."""


# --------------------------------------------------------------------------- readers

Arrays = dict[str, tuple[np.ndarray, np.ndarray]]
"""``{'train': (images, labels), 'test': (images, labels)}``: images (N, H, W, 3) uint8."""


#: What a CIFAR-10 batch file may name: numpy arrays and their dtypes (as numpy 1 and 2 pickle
#: them) and the codec Python 3 pickles bytes with. Lists, dicts, strings and numbers need none.
_CIFAR_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles data only: a batch file naming any other class or function (what a crafted
    pickle runs code with) is refused before it is called."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}; a CIFAR-10 batch holds only numpy "
                                         "arrays, lists, dicts, numbers and strings")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            raw = _CifarUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise UserError("data.source", f"{path}: not a CIFAR-10 batch ({e})") from None
    if not isinstance(raw, dict):
        raise UserError("data.source", f"{path}: not a CIFAR-10 batch (a {type(raw).__name__}, not a dict)")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}


def read_cifar_batches(directory: Path, *, progress: bool = False) -> tuple[Arrays, tuple[str, ...]]:
    """The official ``cifar-10-batches-py`` directory: five training batches and the test
    batch, each ``data`` an N x 3072 uint8 array (R, G, B planes of 32 x 32)."""
    missing = [f for f in CIFAR_FILES if not (directory / f).is_file()]
    if missing:
        raise UserError("data.source", f"{directory} lacks {', '.join(missing)} (expected the "
                                       f"official {CIFAR_DIR} files: {', '.join(CIFAR_FILES)})")
    meta = _unpickle(directory / "batches.meta")
    names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta["label_names"])

    def load(files: list[str]) -> tuple[np.ndarray, np.ndarray]:
        from tqdm.auto import tqdm

        xs, ys = [], []
        for f in tqdm(files, desc="reading CIFAR-10 batches", disable=not progress, leave=False, delay=1.0):
            batch = _unpickle(directory / f)
            data = np.asarray(batch["data"], dtype=np.uint8)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise UserError("data.source", f"{directory / f}: data has shape {data.shape}, "
                                               "expected N x 3072")
            xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(np.asarray(batch["labels"], dtype=np.int64))
        return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)

    return {"train": load(list(CIFAR_FILES[:5])), "test": load(["test_batch"])}, names


def read_imagefolder(directory: Path, *, progress: bool = False) -> tuple[Arrays, tuple[str, ...]]:
    """``train/<class>/*`` and ``test/<class>/*`` image files (classes: sorted folder names,
    the same in both splits)."""
    from PIL import Image
    from tqdm.auto import tqdm

    names: tuple[str, ...] | None = None
    out: Arrays = {}
    for split in ("train", "test"):
        root = directory / split
        classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir())) if root.is_dir() else ()
        if not classes:
            raise UserError("data.source", f"{root} has no class folders (expected "
                                           f"{split}/<class>/<image>.png)")
        if names is not None and classes != names:
            raise UserError("data.source", f"{directory}: train and test have different class folders")
        names = classes
        files = [(p, y) for y, c in enumerate(classes) for p in sorted((root / c).iterdir())
                 if p.suffix.lower() in IMAGE_SUFFIXES]
        images = np.empty((len(files), 32, 32, 3), dtype=np.uint8) if files else None
        for i, (p, _) in enumerate(tqdm(files, desc=f"reading {split} images", disable=not progress,
                                        leave=False, delay=1.0)):
            img = np.asarray(Image.open(p).convert("RGB"))
            if i == 0 and img.shape != images.shape[1:]:
                images = np.empty((len(files), *img.shape), dtype=np.uint8)
            if img.shape != images.shape[1:]:
                raise UserError("data.source", f"{p}: size {img.shape[:2]} differs from the other "
                                               f"images' {images.shape[1:3]}")
            images[i] = img
        if images is None:
            raise UserError("data.source", f"{root} has no image files ({', '.join(IMAGE_SUFFIXES)})")
        out[split] = (images, np.asarray([y for _, y in files], dtype=np.int64))
    return out, names or ()


def read_hub(name: str, revision: str | None, *, progress: bool = False) -> tuple[Arrays, tuple[str, ...]]:
    """A hub dataset with ``train`` and ``test`` splits, an image column (``img`` or
    ``image``) and ``label`` (``cifar10``, ``uoft-cs/cifar10``)."""
    from tqdm.auto import tqdm

    from trainables.hub import hub_copy, read_hub_dataset

    dd = read_hub_dataset(name, revision=revision, copy=hub_copy(name))
    out: Arrays = {}
    for split in ("train", "test"):
        if split not in dd:
            raise UserError("data.source", f"{name} has no {split!r} split (it has {one_of(dd.keys())})")
        ds = dd[split]
        col = next((c for c in ("img", "image") if c in ds.column_names), None)
        if col is None or "label" not in ds.column_names:
            raise UserError("data.source", f"{name}: expected columns img (or image) and label, "
                                           f"got {ds.column_names}")
        images = np.stack([np.asarray(im.convert("RGB")) for im in
                           tqdm(ds[col], desc=f"decoding {split}", disable=not progress, leave=False,
                                delay=1.0)])
        out[split] = (images, np.asarray(ds["label"], dtype=np.int64))
    feature = dd["train"].features.get("label")
    names = tuple(getattr(feature, "names", None) or (str(i) for i in range(int(out["train"][1].max()) + 1)))
    return out, names


def source_layout(source: str) -> tuple[str, Path | str]:
    """``('cifar', dir)``, ``('imagefolder', dir)`` or ``('hub', name)`` for ``data.source``
    (``name`` a Path for a local copy of the hub dataset)."""
    from trainables.hub import hub_copy, looks_local

    if not looks_local(source):
        return "hub", source
    d = Path(source).expanduser()
    if not d.is_dir():
        raise UserError("data.source", f"data directory {source} does not exist")
    if (d / CIFAR_DIR).is_dir():
        return "cifar", d / CIFAR_DIR
    if (d / "batches.meta").is_file() or (d / "data_batch_1").is_file():
        return "cifar", d
    # (train/0000.parquet is one config of the hub's parquet conversion, below)
    if (d / "train").is_dir() and (d / "test").is_dir() and not any((d / "train").glob("*.parquet")):
        return "imagefolder", d
    copy = hub_copy(source)  # a local copy of the hub dataset (plain_text/train-*.parquet)
    if copy is not None:
        return "hub", copy
    raise UserError("data.source", f"{source}: expected {CIFAR_DIR}/ (the official python "
                                   "version), its contents, an image folder train/<class>/, "
                                   "test/<class>/, or a local copy of the hub dataset (`hf "
                                   "download --repo-type dataset uoft-cs/cifar10 --local-dir DIR`)")


def read_source(cfg: TrialConfig, *, progress: bool = False) -> tuple[Arrays, tuple[str, ...]]:
    kind, where = source_layout(cfg.data.source)
    if kind == "cifar":
        return read_cifar_batches(Path(where), progress=progress)
    if kind == "imagefolder":
        return read_imagefolder(Path(where), progress=progress)
    return read_hub(str(where), cfg.data.revision, progress=progress)


def split_indices(n: int, *, seed: int, val_fraction: float = VAL_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """A seeded 80/20 split of ``range(n)``: (train indices, validation indices), disjoint,
    each sorted (so reads from the memory-mapped array go forward)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = round(n * val_fraction)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


# --------------------------------------------------------------------------- datasets, batches


class ImageSet:
    """Images (memory-mapped uint8 N x H x W x 3) selected by ``indices``; a torch map-style
    dataset of ``(image, label, position)``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray):
        self.images, self.labels, self.indices = images, labels, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int, int]:
        j = int(self.indices[i])
        return self.images[j], int(self.labels[j]), i


def image_collate(image_size: int | None) -> Callable[[list[tuple[np.ndarray, int, int]]], dict[str, Any]]:
    """uint8 HWC images -> normalised float NCHW ``pixel_values`` (ImageNet mean/std), resized
    to ``image_size`` (bilinear) when it differs from the images' own size."""
    import torch
    import torch.nn.functional as F

    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def collate(items: list[tuple[np.ndarray, int, int]]) -> dict[str, Any]:
        x = torch.from_numpy(np.stack([np.asarray(img) for img, _, _ in items])).permute(0, 3, 1, 2)
        x = x.float().div_(255.0)
        if image_size is not None and x.shape[-1] != image_size:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
        x = (x - mean) / std
        return {"pixel_values": x.contiguous(),
                "labels": torch.as_tensor([y for _, y, _ in items], dtype=torch.long),
                "index": torch.as_tensor([i for _, _, i in items], dtype=torch.long)}

    return collate


def freeze_batchnorm_stats(model: Any) -> int:
    """Keep every BatchNorm layer in eval mode (running statistics frozen) whatever
    ``model.train()`` is called with; returns how many layers."""
    import types

    from torch import nn

    def stay_eval(self: nn.Module, mode: bool = True) -> nn.Module:
        return nn.Module.train(self, False)

    count = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train = types.MethodType(stay_eval, m)
            m.train(False)
            count += 1
    return count


# --------------------------------------------------------------------------- the task


class VisionTask(PerExampleLogits, Task):
    """CIFAR-10-style image classification (ten classes) with an image-classification model."""

    name = "cifar10"
    peft_task_type = "image_cls"
    data_settings = ("image_size",)
    num_labels = 10
    metric = MetricSpec("val_accuracy", "max", "val Acc", "{:.2f}")
    report_metrics = (metric, MetricSpec(VAL_LOSS, "min", "val loss"))
    final_metrics = (MetricSpec("test_accuracy", "max", "test Acc", "{:.2f}"),
                     MetricSpec("test_loss", "min", "test loss"))

    # ----------------------------------------------------------- before launch
    def check(self, cfg: TrialConfig) -> None:
        if cfg.data.format not in (None, "default"):
            raise UserError("data.format", f"{self.name} has one input format; leave it null")
        kind, where = source_layout(cfg.data.source)
        if kind == "hub" and isinstance(where, str):
            from trainables.hub import check_dataset_source

            check_dataset_source(str(where), revision=cfg.data.revision)
        elif kind == "hub":
            from trainables.hub import check_hub_copy

            check_hub_copy(Path(where), None, ("train", "test"))
        elif kind == "cifar":
            missing = [f for f in CIFAR_FILES if not (Path(where) / f).is_file()]
            if missing:
                raise UserError("data.source", f"{where} lacks {', '.join(missing)}")

    def prepare(self, cfg: TrialConfig, *, progress: bool = True) -> Path:
        from trainables.cache import build_once
        from trainables.paths import cache_dir

        key = self._key(cfg, None)
        return build_once(cache_dir() / "data", f"{self.name}-{key}",
                          lambda tmp: self._build(cfg, None, tmp, key=key, progress=progress))

    def _key(self, cfg: TrialConfig, tokenizer_id: str | None) -> str:
        from trainables.cache import fingerprint, source_identity

        d = cfg.data
        kind, where = source_layout(d.source)
        if kind == "imagefolder":  # (size, mtime) of each image: reading every image would take long
            root = Path(where)
            identity: Any = sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                                   for p in root.rglob("*") if p.is_file())
        else:  # the CIFAR batches, a local copy of the hub dataset, or the hub name
            identity = source_identity(d.source, d.revision, lambda _: {f: Path(where) / f for f in CIFAR_FILES},
                                       copy=where if kind == "hub" and isinstance(where, Path) else None)
        return fingerprint({"task": self.name, "version": PREP_VERSION, "data": identity,
                            "split_seed": d.split_seed, "limits": [d.train_limit, d.val_limit, d.test_limit]})

    def _build(self, cfg: TrialConfig, tokenizer: Any, out: Path, *, key: str, progress: bool) -> None:
        d = cfg.data
        arrays, names = read_source(cfg, progress=progress)
        if len(names) != self.num_labels:
            raise UserError("data.source", f"{d.source} has {len(names)} classes, {self.name} expects "
                                           f"{self.num_labels}")
        train_x, train_y = arrays["train"]
        test_x, test_y = arrays["test"]
        train_idx, val_idx = split_indices(len(train_y), seed=d.split_seed)
        test_idx = np.arange(len(test_y))
        # Limits keep a seeded random subset of each split (classes stay mixed).
        rng = np.random.default_rng(0)
        picked = {}
        for split, idx, limit in (("train", train_idx, d.train_limit), ("val", val_idx, d.val_limit),
                                  ("test", test_idx, d.test_limit)):
            if limit is not None and limit < len(idx):
                idx = np.sort(rng.choice(idx, size=limit, replace=False))
            picked[split] = idx
        np.save(out / "train_images.npy", train_x)
        np.save(out / "train_labels.npy", train_y)
        np.save(out / "test_images.npy", test_x)
        np.save(out / "test_labels.npy", test_y)
        for split, idx in picked.items():
            np.save(out / f"{split}_index.npy", idx)
        stats: dict[str, Any] = {"data_key": key, "split_policy": "train 80/20", "split_seed": d.split_seed,
                                 "image_shape": list(train_x.shape[1:]), "label_names": list(names)}
        for split, idx in picked.items():
            labels = (test_y if split == "test" else train_y)[idx]
            stats[f"{split}_examples"] = len(idx)
            stats[f"{split}_label_counts"] = np.bincount(labels, minlength=self.num_labels).tolist()
        (out / "stats.json").write_text(json.dumps(stats, indent=2))

    def _source_config(self, cfg: TrialConfig) -> Any:
        from transformers import AutoConfig

        from trainables.models import model_source

        return AutoConfig.from_pretrained(model_source(cfg), revision=cfg.model.revision)

    def _labels(self) -> dict[str, Any]:
        """Label maps of the new head (ids only: the class names are the data's, in stats)."""
        return {"id2label": {i: f"LABEL_{i}" for i in range(self.num_labels)},
                "label2id": {f"LABEL_{i}": i for i in range(self.num_labels)}}

    def _new_head(self, source_config: Any) -> bool:
        return getattr(source_config, "num_labels", None) != self.num_labels

    def skeleton(self, cfg: TrialConfig) -> Any:
        import torch
        from transformers import AutoModelForImageClassification

        from trainables.adapters import mark_new_head

        source = self._source_config(cfg)
        new = self._new_head(source)
        for k, v in self._labels().items():
            setattr(source, k, v)
        with torch.device("meta"):
            model = AutoModelForImageClassification.from_config(source)
        if new:
            mark_new_head(model, HEAD)
        return model

    # ----------------------------------------------------------- in the trial
    def load_prepared(self, path: Path, cfg: TrialConfig) -> Prepared:
        train_x = np.load(path / "train_images.npy", mmap_mode="r")
        train_y = np.load(path / "train_labels.npy")
        test_x = np.load(path / "test_images.npy", mmap_mode="r")
        test_y = np.load(path / "test_labels.npy")
        return Prepared(train=ImageSet(train_x, train_y, np.load(path / "train_index.npy")),
                        val=ImageSet(train_x, train_y, np.load(path / "val_index.npy")),
                        test=ImageSet(test_x, test_y, np.load(path / "test_index.npy")),
                        stats=json.loads((path / "stats.json").read_text()), path=path)

    def load_model(self, cfg: TrialConfig) -> tuple[Any, Any]:
        """The model with a ``num_labels``-class head, and the image size for the collate
        (this family's "tokenizer")."""
        import torch
        from transformers import AutoModelForImageClassification

        from trainables.adapters import mark_new_head
        from trainables.models import model_source

        new = self._new_head(self._source_config(cfg))
        model = AutoModelForImageClassification.from_pretrained(
            model_source(cfg), revision=cfg.model.revision, dtype=getattr(torch, cfg.model.dtype),
            ignore_mismatched_sizes=True, **self._labels())  # num_labels = len(id2label)
        if new:
            mark_new_head(model, HEAD)
        if cfg.adapter.method != "full":
            freeze_batchnorm_stats(model)
        return model, cfg.data.image_size

    def collate(self, tokenizer: Any) -> Callable[[list[Any]], dict[str, Any]]:
        return image_collate(tokenizer)

    def _logits(self, model: Any, batch: dict[str, Any]) -> torch.Tensor:
        return model(pixel_values=batch["pixel_values"]).logits

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean",
              label_smoothing: float = 0.0) -> torch.Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(logits.float(), labels, reduction=reduction, label_smoothing=label_smoothing)

    def train_loss(self, model: Any, batch: dict[str, Any], cfg: TrialConfig) -> torch.Tensor:
        return self._loss(self._logits(model, batch), batch["labels"],
                          label_smoothing=cfg.train.label_smoothing)

    def validate(self, model: Any, loader: Any, *, device: Any, session: Any,
                 precision: str) -> dict[str, float]:
        preds, labels, loss = self._gathered(model, loader, device, session, precision)
        correct = sum(p == y for p, y in zip(preds, labels))
        return {"val_accuracy": 100.0 * correct / max(len(labels), 1), VAL_LOSS: loss}

    def final_eval(self, model: Any, tokenizer: Any, data: Prepared, cfg: TrialConfig, *,
                   device: Any, out_dir: Path, session: Any = None) -> dict[str, Any]:
        """Accuracy on the official test set; ``test_predictions.csv`` in the outputs."""
        import csv

        from torch.utils.data import DataLoader

        loader = DataLoader(data.test, batch_size=cfg.train.eval_batch_size, collate_fn=self.collate(tokenizer))
        _, preds, labels, loss = self._predict(model, loader, device, cfg.train.precision)
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "test_predictions.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["index", "label", "prediction"])
            w.writerows(zip(range(len(preds)), labels, preds))
        n = max(len(labels), 1)
        return {"test_accuracy": 100.0 * sum(p == y for p, y in zip(preds, labels)) / n,
                "test_loss": loss / n}
