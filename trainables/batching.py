"""How a trial batches examples of different lengths (``train.batching``).

* ``random``: random batches, each padded to its longest example.
* ``grouped``: batches of examples of similar length (:class:`LengthGroupedSampler`), padded.
* ``padding_free``: ``random``'s batches, each concatenated into one row without padding (the
  task's ``packed_collate``), for models whose attention keeps the row's examples apart
  (:func:`check_padding_free`).

Every mode computes the same per-token loss on the same examples; only which examples share a
batch (``grouped``) and how much padding is computed change.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from torch.utils.data import DistributedSampler

from trainables.errors import UserError

if TYPE_CHECKING:
    from trainables.config import TrialConfig
    from trainables.session import Session
    from trainables.tasks.base import Prepared, Task

#: The transformers functions that build a causal mask and split a row whose positions restart.
PACKING_MASKS = ("create_causal_mask", "create_sliding_window_causal_mask", "create_chunked_causal_mask")


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's data order: it depends only on the trial seed and the epoch, so
    a trial restored from a checkpoint sees the batches it would have seen."""
    return seed * 1000 + epoch


class LengthGroupedSampler(DistributedSampler):
    """One rank's examples for an epoch, in batches of examples of similar length.

    The epoch's order is transformers' ``get_length_grouped_indices`` (a seeded permutation,
    cut into groups of up to 50 global batches of ``batch_size x world_size`` examples, each
    group sorted by length), padded as ``DistributedSampler`` pads (the first examples again,
    until every rank has ``ceil(n / world_size)``), cut into global batches, and the full
    global batches shuffled (transformers' order runs each group from its longest batch to
    its shortest), the short one last. Rank ``r`` takes every ``world_size``-th example of
    each global batch from position ``r``. So the ranks hold disjoint examples (but for the
    padding's repeats), each rank yields ``ceil(ceil(n / world_size) / batch_size)`` batches
    (what :func:`trainables.optim.plan_steps` counts), and the ranks' i-th batches have about
    the same length, so no rank waits long for another.

    A ``DistributedSampler``, so that Ray Train's ``prepare_data_loader`` keeps it, and the
    loop's ``set_epoch`` reseeds it.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, seed: int, rank: int = 0,
                 world_size: int = 1):
        super().__init__(lengths, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        self.lengths = [int(n) for n in lengths]
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[int]:
        import torch
        from transformers.trainer_pt_utils import get_length_grouped_indices

        g = torch.Generator()
        g.manual_seed(epoch_seed(self.seed, self.epoch))
        step = self.batch_size * self.num_replicas
        order = get_length_grouped_indices(self.lengths, step, generator=g)
        order = (order * math.ceil(self.total_size / len(order)))[:self.total_size]
        full = self.total_size // step
        starts = [i * step for i in torch.randperm(full, generator=g).tolist()]
        if full * step < self.total_size:
            starts.append(full * step)
        return iter([i for s in starts for i in order[s:s + step][self.rank::self.num_replicas]])


def check_padding_free(model: Any) -> None:
    """Refuse ``padding_free`` for a model whose attention would let the examples of a row
    attend to each other. Transformers keeps them apart when the model's code builds its
    causal mask with ``masking_utils`` from positions that restart, with no attention mask and
    no cache (a block-diagonal mask for sdpa, eager and flex attention; the sequence
    boundaries for flash-attention): the model must take ``position_ids``, build its masks
    there, and use an attention implementation that transformers builds masks for. ``model``
    may be a skeleton on the meta device."""
    import inspect
    import sys

    from transformers import masking_utils

    impl = model.config._attn_implementation
    module = sys.modules.get(type(model).__module__)
    builders = {getattr(masking_utils, name) for name in PACKING_MASKS}
    why = None
    if "position_ids" not in inspect.signature(model.forward).parameters:
        why = "its forward takes no position_ids"
    elif not any(getattr(module, name, None) in builders for name in PACKING_MASKS):
        why = "its code builds no transformers causal mask"
    # masking_utils gives an implementation missing from this mapping no mask at all
    elif impl not in masking_utils.ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        why = f"transformers builds no mask for its attention implementation {impl!r}"
    if why is not None:
        raise UserError("train.batching", f"padding_free would mix the examples packed in a row in "
                                          f"{model.config.model_type} ({why}); accepted here: grouped or random")


def batching_mode(task: Task, cfg: TrialConfig, model: Any = None) -> str:
    """The trial's batching mode (``train.batching`` or the task's default), checked against the
    task and, for ``padding_free``, against ``model`` when given."""
    mode = task.batching(cfg)
    if mode == "padding_free" and model is not None:
        check_padding_free(model)
    return mode


def collate_for(task: Task, tokenizer: Any, mode: str) -> Any:
    """The task's batch builder for ``mode``: a flat row for ``padding_free``, else padded."""
    return task.packed_collate(tokenizer) if mode == "padding_free" else task.collate(tokenizer)


def train_batches(task: Task, data: Prepared, cfg: TrialConfig, tokenizer: Any, *, mode: str,
                 session: Session, generator: Any) -> Any:
    """The training batches of ``mode``, through ``session.prepare_loader`` (under Ray Train
    the ``random`` and ``padding_free`` samplers become a ``DistributedSampler``; the grouped
    sampler is one). ``generator`` shuffles ``random`` and ``padding_free``; the loop reseeds
    it every epoch with :func:`epoch_seed`."""
    from torch.utils.data import DataLoader, RandomSampler

    if mode == "grouped":
        sampler = LengthGroupedSampler(data.train.lengths(), cfg.train.batch_size, seed=cfg.seed,
                                       rank=session.world_rank, world_size=session.world_size)
    else:
        sampler = RandomSampler(data.train, generator=generator)
    return session.prepare_loader(DataLoader(data.train, batch_size=cfg.train.batch_size, sampler=sampler,
                                             collate_fn=collate_for(task, tokenizer, mode)))


def val_batches(task: Task, data: Prepared, cfg: TrialConfig, tokenizer: Any, *, mode: str,
               session: Session) -> Any:
    """The validation batches of ``mode``; ``grouped`` takes the examples longest first, so
    that each batch holds examples of about the same length (the validation loss is a sum
    over tokens: the order does not change it)."""
    import numpy as np
    from torch.utils.data import DataLoader, Subset

    val = data.val
    if mode == "grouped":
        val = Subset(val, np.argsort(-val.lengths(), kind="stable").tolist())
    return session.prepare_loader(DataLoader(val, batch_size=cfg.train.eval_batch_size,
                                             collate_fn=collate_for(task, tokenizer, mode)))


def batch_counts(batch: dict[str, Any]) -> tuple[int, int]:
    """(examples, tokens that are not padding) of a batch: a flat row counts its examples by
    their restarting positions; a batch without token ids (images) counts no tokens."""
    if "position_ids" in batch:
        return int((batch["position_ids"] == 0).sum()), batch["input_ids"].numel()
    if "attention_mask" in batch:
        return batch["labels"].shape[0], int(batch["attention_mask"].sum())
    return batch["labels"].shape[0], 0
