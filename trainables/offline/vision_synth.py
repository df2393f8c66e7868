"""Offline sources of the vision study: synthetic CIFAR-10 and a tiny ResNet.

* ``smoke:cifar10``: 32x32 RGB images of ten classes, each a shape in a colour (circle,
  square, triangle, cross, diamond x red, blue), drawn with position, size and colour jitter on
  a random background with pixel noise. They are written in the official "python version"
  layout, ``cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``, ``batches.meta``:
  pickled dicts with byte-string keys, ``data`` as N x 3072 uint8 rows of R, G then B planes),
  so the smoke run goes through the real reader. :func:`write_imagefolder` writes the same
  images as ``train/<class>/*.png`` and ``test/<class>/*.png``, :func:`write_hub_parquet` as
  the hub dataset's parquet files.
* ``smoke:resnet-tiny``: a ResNet (basic blocks, depths [1, 1, 1, 1], widths 16-64, 0.2M
  parameters) with a 1000-class head like ImageNet checkpoints, pretrained for a few seconds
  on shape recognition in other colours (:func:`pretraining_images`) and saved with
  ``save_pretrained``, so the task replaces its head exactly as it does ResNet-18's.

Class names are sorted alphabetically in label order, as CIFAR-10's own are, so an
image-folder copy (classes = sorted folder names) gets the same labels.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np

from trainables.cache import build_once
from trainables.paths import cache_dir

#: Bump when the generated images change.
GENERATOR_VERSION = 2

SHAPES = ("circle", "cross", "diamond", "square", "triangle")
COLOURS = {"blue": (40, 90, 230), "red": (230, 50, 40)}
LABEL_NAMES = tuple(sorted(f"{s}-{c}" for s in SHAPES for c in COLOURS))
SIZE = 32
BATCHES = 5
#: Optimizer steps (batch 32) of the tiny ResNet's pretraining: a few seconds on one CPU thread.
PRETRAIN_STEPS = 100


def _log(msg: str) -> None:
    print(f"[lorasweep.smoke] {msg}", file=sys.stderr, flush=True)


def _mask(shape: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    dy, dx = yy - cy, xx - cx
    if shape == "circle":
        return dy ** 2 + dx ** 2 <= r ** 2
    if shape == "square":
        return (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)
    if shape == "diamond":
        return np.abs(dy) + np.abs(dx) <= r
    if shape == "cross":
        w = max(1.5, r / 3)
        return ((np.abs(dy) <= w) & (np.abs(dx) <= r)) | ((np.abs(dx) <= w) & (np.abs(dy) <= r))
    if shape == "triangle":  # apex up: inside when below the apex and within the widening sides
        top = cy - r
        return (dy <= r * 0.8) & (yy >= top) & (np.abs(dx) <= (yy - top) * 0.6)
    raise ValueError(shape)


def _draw(rng: np.random.Generator, shape: str, rgb: tuple[int, int, int], yy: np.ndarray,
          xx: np.ndarray) -> np.ndarray:
    """One 32x32 image: ``shape`` in ``rgb`` (jittered), random position, size and background,
    Gaussian pixel noise."""
    background = rng.integers(20, 140, size=3)
    img = np.broadcast_to(background, (SIZE, SIZE, 3)).astype(np.float32)
    r = rng.uniform(6.0, 10.0)
    cy, cx = SIZE / 2 + rng.uniform(-5, 5, size=2)
    fg = np.clip(np.asarray(rgb) + rng.integers(-30, 31, size=3), 0, 255)
    img[_mask(shape, yy, xx, cy, cx, r)] = fg
    img += rng.normal(0.0, 12.0, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_images(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (N, 32, 32, 3) uint8 and their labels (N,) int64, classes balanced."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(LABEL_NAMES)
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    images = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        shape, colour = LABEL_NAMES[label].split("-")
        images[i] = _draw(rng, shape, COLOURS[colour], yy, xx)
    return images, labels.astype(np.int64)


#: Colours of the tiny ResNet's pretraining images (none of the ten classes' colours).
PRETRAIN_COLOURS = ((60, 200, 60), (230, 210, 50), (235, 235, 235))


def pretraining_images(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The tiny ResNet's "ImageNet": the same shapes in other colours, labelled by shape only."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    labels = rng.integers(0, len(SHAPES), size=n)
    images = np.stack([_draw(rng, SHAPES[y], PRETRAIN_COLOURS[rng.integers(len(PRETRAIN_COLOURS))], yy, xx)
                       for y in labels])
    return images, labels.astype(np.int64)


def to_rows(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) -> CIFAR's (N, 3072) rows: the R plane, then G, then B, row-major."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))


def write_cifar_batches(out: Path, *, n_train: int, n_test: int, seed: int = 0) -> Path:
    """``out/cifar-10-batches-py`` as the official archive unpacks."""
    d = Path(out) / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    train_x, train_y = make_images(n_train, seed=seed)
    test_x, test_y = make_images(n_test, seed=seed + 1)
    per = -(-n_train // BATCHES)
    for b in range(BATCHES):
        sl = slice(b * per, (b + 1) * per)
        _dump(d / f"data_batch_{b + 1}", f"training batch {b + 1} of {BATCHES}", train_x[sl], train_y[sl],
              start=b * per)
    _dump(d / "test_batch", "testing batch 1 of 1", test_x, test_y, start=0)
    with open(d / "batches.meta", "wb") as fh:
        pickle.dump({b"num_cases_per_batch": per, b"label_names": [n.encode() for n in LABEL_NAMES],
                     b"num_vis": SIZE * SIZE * 3}, fh, protocol=2)
    return d


def _dump(path: Path, name: str, images: np.ndarray, labels: np.ndarray, *, start: int) -> None:
    with open(path, "wb") as fh:
        pickle.dump({b"batch_label": name.encode(), b"labels": [int(y) for y in labels],
                     b"data": to_rows(images),
                     b"filenames": [f"synth_{start + i:06d}.png".encode() for i in range(len(labels))]},
                    fh, protocol=2)


def write_imagefolder(out: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]],
                      label_names: tuple[str, ...] = LABEL_NAMES) -> Path:
    """``out/<split>/<class>/<index>.png`` (lossless PNG) for each split's images."""
    from PIL import Image

    for split, (images, labels) in splits.items():
        for name in label_names:
            (Path(out) / split / name).mkdir(parents=True, exist_ok=True)
        for i, (img, y) in enumerate(zip(images, labels)):
            Image.fromarray(img).save(Path(out) / split / label_names[int(y)] / f"{i:06d}.png")
    return Path(out)


def write_hub_parquet(out: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]],
                      label_names: tuple[str, ...] = LABEL_NAMES) -> Path:
    """The hub dataset's layout (``uoft-cs/cifar10``): a card with the ``plain_text`` config and
    ``plain_text/<split>-00000-of-00001.parquet`` with an ``img`` image column and a ``label``
    class column."""
    import datasets
    from PIL import Image

    from trainables.offline.hub_copy import write_hub_copy

    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=list(label_names))})
    return write_hub_copy(out, {"plain_text": {
        split: datasets.Dataset.from_dict({"img": [Image.fromarray(x) for x in images],
                                           "label": [int(y) for y in labels]}, features=features)
        for split, (images, labels) in splits.items()}})


def _root() -> Path:
    return cache_dir() / "smoke" / f"vision{GENERATOR_VERSION}"


def smoke_cifar10_data() -> Path:
    """The synthetic CIFAR-10 directory (``cifar-10-batches-py`` inside): 1,000 training
    images (800 train + 200 validation after the 80/20 split), 200 test images."""

    def write(d: Path) -> None:
        _log(f"writing synthetic CIFAR-10 to {d}")
        write_cifar_batches(d, n_train=1000, n_test=200, seed=0)

    return build_once(_root(), "cifar10", write)


def smoke_resnet() -> Path:
    """A tiny ResNet, briefly pretrained on :func:`pretraining_images` (shape recognition in
    colours the study's classes do not use) so that, like ResNet-18's ImageNet weights, its
    features are worth adapting; saved with ``save_pretrained`` with a 1000-class head."""

    def write(d: Path) -> None:
        import torch
        import torch.nn.functional as F
        from transformers import ResNetConfig, ResNetForImageClassification

        from trainables.tasks.vision import image_collate

        _log(f"building and pretraining a tiny ResNet in {d} (a few seconds)")
        torch.manual_seed(0)
        config = ResNetConfig(num_channels=3, embedding_size=16, hidden_sizes=[16, 32, 64, 64],
                              depths=[1, 1, 1, 1], layer_type="basic", hidden_act="relu",
                              num_labels=1000)
        model = ResNetForImageClassification(config)
        images, labels = pretraining_images(PRETRAIN_STEPS * 32, seed=100)
        collate = image_collate(None)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for step in range(PRETRAIN_STEPS):
            sl = slice(step * 32, (step + 1) * 32)
            batch = collate([(x, int(y), 0) for x, y in zip(images[sl], labels[sl])])
            loss = F.cross_entropy(model(pixel_values=batch["pixel_values"]).logits, batch["labels"])
            opt.zero_grad()
            loss.backward()
            opt.step()
        (d / "pretraining.json").write_text(f'{{"steps": {PRETRAIN_STEPS}, "last_loss": {float(loss.detach()):.4f}}}\n')
        model.save_pretrained(d)

    return build_once(_root(), "resnet-tiny", write)
