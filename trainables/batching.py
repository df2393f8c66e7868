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
from collections.abc import Iterator, Sequence, Sized
from typing import TYPE_CHECKING, Any

from torch.utils.data import DistributedSampler, Sampler

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


class GlobalBatchSampler(DistributedSampler):
    """One rank's examples for an epoch, in global batches of ``batch_size x world_size``
    examples that do not depend on the number of ranks.

    The epoch's order (:meth:`order`: a seeded permutation, as ``RandomSampler`` draws it) is
    padded as ``DistributedSampler`` pads (the first examples again, until every rank has
    ``ceil(n / world_size)``) and cut into global batches; rank ``r`` takes every
    ``world_size``-th example of each global batch from position ``r``. So the ranks' ``i``-th
    batches together are the ``i``-th batch of a one-process trial with the same seed and
    ``batch_size x world_size`` examples per batch (when ``world_size`` divides the number of
    examples: otherwise the padding repeats a few), each rank yields
    ``ceil(ceil(n / world_size) / batch_size)`` batches (what :func:`trainables.optim.plan_steps`
    counts), and the ranks hold disjoint examples but for the padding's repeats.

    A ``DistributedSampler``, so the loop's ``set_epoch`` reseeds it: the order depends only on
    the seed and the epoch (:func:`epoch_seed`).
    """

    def __init__(self, dataset: Sized, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1):
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        self.batch_size = batch_size

    def order(self, generator: Any) -> list[int]:
        """The epoch's examples in order (before padding and sharding)."""
        import torch

        return torch.randperm(len(self.dataset), generator=generator).tolist()

    def batch_starts(self, generator: Any, step: int) -> list[int]:
        """Where each global batch of ``step`` examples starts in the padded order."""
        return list(range(0, self.total_size, step))

    def __iter__(self) -> Iterator[int]:
        import torch

        g = torch.Generator()
        g.manual_seed(epoch_seed(self.seed, self.epoch))
        step = self.batch_size * self.num_replicas
        order = self.order(g)
        order = (order * math.ceil(self.total_size / len(order)))[:self.total_size]
        starts = self.batch_starts(g, step)
        return iter([i for s in starts for i in order[s:s + step][self.rank::self.num_replicas]])


class LengthGroupedSampler(GlobalBatchSampler):
    """:class:`GlobalBatchSampler` in global batches of examples of similar length.

    The epoch's order is transformers' ``get_length_grouped_indices`` (a seeded permutation,
    cut into groups of up to 50 global batches, each group sorted by length); the full global
    batches are shuffled (transformers' order runs each group from its longest batch to its
    shortest), the short one last. So the ranks' ``i``-th batches have about the same length,
    and no rank waits long for another.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, seed: int, rank: int = 0,
                 world_size: int = 1):
        super().__init__(lengths, batch_size, seed=seed, rank=rank, world_size=world_size)
        self.lengths = [int(n) for n in lengths]

    def order(self, generator: Any) -> list[int]:
        from transformers.trainer_pt_utils import get_length_grouped_indices

        return get_length_grouped_indices(self.lengths, self.batch_size * self.num_replicas, generator=generator)

    def batch_starts(self, generator: Any, step: int) -> list[int]:
        import torch

        full = self.total_size // step
        starts = [i * step for i in torch.randperm(full, generator=generator).tolist()]
        if full * step < self.total_size:
            starts.append(full * step)
        return starts


class RankBatches(Sampler):
    """Rank ``r``'s batches of an evaluation pass: ``indices`` cut into batches of
    ``batch_size``, and batches ``r``, ``r + world_size``, ... of them. Every example is
    evaluated once across the ranks (no padding repeats one), and each batch is the one a
    one-process pass makes, so sums over the ranks' batches equal the one-process sums.

    ``even`` (FSDP, whose every forward is a collective): every rank gets as many batches as
    the rank with the most; a rank with fewer repeats the pass's first batch, and only its
    first :attr:`counted` batches count (:func:`trainables.tasks.base.evaluation_batches`)."""

    def __init__(self, indices: Sequence[int], batch_size: int, *, rank: int = 0, world_size: int = 1,
                 even: bool = False):
        self.batches = [list(indices[s:s + batch_size]) for s in range(0, len(indices), batch_size)]
        self.mine = self.batches[rank::world_size]
        self.counted = len(self.mine)
        if even and self.batches:
            self.mine += [self.batches[0]] * (math.ceil(len(self.batches) / world_size) - self.counted)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.mine)

    def __len__(self) -> int:
        return len(self.mine)


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
                  session: Session) -> Any:
    """This rank's training batches of ``mode``: ``train.batch_size`` is the global batch,
    ``batch_size / world_size`` examples on each rank (:func:`~trainables.optim.rank_batch_size`),
    in the global batches a one-process trial of the same seed takes
    (:class:`GlobalBatchSampler`; ``grouped``: :class:`LengthGroupedSampler`)."""
    from torch.utils.data import DataLoader

    from trainables.optim import rank_batch_size

    per_rank = rank_batch_size(cfg.train.batch_size, session.world_size)
    kind = LengthGroupedSampler if mode == "grouped" else GlobalBatchSampler
    sampler = kind(data.train.lengths() if mode == "grouped" else data.train, per_rank, seed=cfg.seed,
                   rank=session.world_rank, world_size=session.world_size)
    return DataLoader(data.train, batch_size=per_rank, sampler=sampler, collate_fn=collate_for(task, tokenizer, mode))


def val_batches(task: Task, data: Prepared, cfg: TrialConfig, tokenizer: Any, *, mode: str,
                session: Session) -> Any:
    """This rank's validation batches of ``mode`` (:class:`RankBatches`: each example once
    across the ranks); ``grouped`` takes the examples longest first, so that each batch holds
    examples of about the same length (the validation loss is a sum over tokens: the order
    does not change it)."""
    import numpy as np
    from torch.utils.data import DataLoader

    val = data.val
    order = (np.argsort(-val.lengths(), kind="stable").tolist() if mode == "grouped"
             else list(range(len(val))))
    batches = RankBatches(order, cfg.train.eval_batch_size, rank=session.world_rank, world_size=session.world_size,
                          even=session.lockstep)
    return DataLoader(val, batch_sampler=batches, collate_fn=collate_for(task, tokenizer, mode))


def batch_counts(batch: dict[str, Any]) -> tuple[int, int]:
    """(examples, tokens that are not padding) of a batch: a flat row counts its examples by
    their restarting positions; a batch without token ids (images) counts no tokens."""
    if "position_ids" in batch:
        return int((batch["position_ids"] == 0).sum()), batch["input_ids"].numel()
    if "attention_mask" in batch:
        return batch["labels"].shape[0], int(batch["attention_mask"].sum())
    return batch["labels"].shape[0], 0
