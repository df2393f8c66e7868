"""``train.batching`` on the real tiny GPT-2 and Llama with real LoRA adapters: every mode
trains on the padded objective (loss, gradient, validation loss), ``padding_free`` is refused
exactly where packing would mix examples, and length-grouped batches shard for DDP."""

from __future__ import annotations

import collections
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainables.batching import (LengthGroupedSampler, batch_counts, batching_mode, check_padding_free,
                                 collate_for, val_batches)
from trainables.config import TrainConfig
from trainables.errors import UserError
from trainables.loop import run_loop
from trainables.models import load_tokenizer
from trainables.optim import plan_steps
from trainables.session import LocalSession
from trainables.tasks.base import evaluate_loss
from trainables.tasks.causal_lm import IGNORE
from trainables.tasks.guanaco import ChatExamples
from trainables.tasks.registry import get_task

MODES = ("random", "grouped", "padding_free")


def _adapted(task, cfg):
    """The trial's base with its LoRA adapter, B filled with small random values (peft starts
    B at zero, where A's gradient is zero too), in eval mode (no dropout)."""
    from trainables.adapters import build_adapter_model

    model, tokenizer = task.load_model(cfg)
    model = build_adapter_model(model, cfg.adapter, task_type=task.peft_task_type)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval(), tokenizer


def _unpadded_loss(task, model, items, label_smoothing: float) -> torch.Tensor:
    """The reference: each example alone (no padding, no packing), the label-smoothed
    cross-entropy summed over its labelled next tokens, divided by their number."""
    total, count = 0.0, 0
    for ids, extra in items:
        t = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        labels = task.labels_of(t, extra)
        logits = model(input_ids=t[None], use_cache=False).logits[0]
        total = total + F.cross_entropy(logits[:-1], labels[1:], ignore_index=IGNORE,
                                        label_smoothing=label_smoothing, reduction="sum")
        count += int((labels[1:] != IGNORE).sum())
    return total / count


def _grads(model, loss):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params)


@pytest.fixture(scope="module")
def e2e(make_trial_module):
    """The tiny GPT-2 on the synthetic E2E data: (task, cfg, data)."""
    cfg = make_trial_module(train={"label_smoothing": 0.1})
    task = get_task("e2e")
    return task, cfg, task.load_prepared(task.prepare(cfg, progress=False), cfg)


@pytest.fixture(scope="module")
def make_trial_module(smoke_assets):
    from conftest import tiny_trial

    return lambda **overrides: tiny_trial(smoke_assets, **overrides)


def _e2e_items(data):
    """Examples of very different lengths, and one whose prompt is empty: its first token is
    a target, which a padded batch never predicts (no token precedes it) and a packed row must
    not predict from the previous example."""
    order = np.argsort(data.train.lengths(), kind="stable")
    items = [data.train[int(i)] for i in (order[0], order[-1], order[len(order) // 2], order[5])]
    ids, n_prompt = items[2]
    return items + [(ids[n_prompt:], 0)]


def _llama_case():
    """The tiny Llama (rotary positions) on chat examples with assistant-token labels."""
    from trainables.config import TrialConfig
    from trainables.offline.tiny_llama import ensure_assets
    from trainables.schema import from_dict

    assets = ensure_assets()
    cfg = from_dict(TrialConfig, {
        "task": "guanaco", "seed": 1, "model": {"name_or_path": str(assets["model"])},
        "data": {"source": str(assets["data"])},
        "adapter": {"r": 4, "alpha": 16, "targets": "all-linear"}, "train": {"label_smoothing": 0.1}})
    rng = np.random.default_rng(0)
    seqs = []
    for n, first_labelled in ((7, 3), (31, 12), (18, 0), (3, 1)):
        seqs.append((rng.integers(5, 200, n).tolist(), [0] * first_labelled + [1] * (n - first_labelled)))
    examples = ChatExamples.build(seqs)
    return get_task("guanaco"), cfg, [examples[i] for i in range(len(examples))]


@pytest.mark.parametrize("model_name", ["gpt2", "llama"])
@pytest.mark.parametrize("mode", MODES)
def test_each_mode_trains_on_the_unpadded_loss_and_gradient(model_name, mode, e2e, torch_one_thread):
    if model_name == "gpt2":
        task, cfg, data = e2e
        items = _e2e_items(data)
    else:
        task, cfg, items = _llama_case()
    model, tokenizer = _adapted(task, cfg)
    expected = _unpadded_loss(task, model, items, cfg.train.label_smoothing)
    expected_grads = _grads(model, expected)

    batch = collate_for(task, tokenizer, mode)(items)
    assert ("position_ids" in batch) == (mode == "padding_free")
    loss = task.train_loss(model, batch, cfg)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    for got, want in zip(_grads(model, loss), expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_validation_loss_does_not_depend_on_the_batching_mode(e2e, torch_one_thread):
    task, cfg, data = e2e
    model, tokenizer = _adapted(task, cfg)
    with torch.no_grad():
        items = [data.val[i] for i in range(len(data.val))]
        expected = float(_unpadded_loss(task, model, items, 0.0))
    session = LocalSession()
    for mode in MODES:
        loader = val_batches(task, data, cfg, tokenizer, mode=mode, session=session)
        assert evaluate_loss(task, model, loader, torch.device("cpu"), session, "fp32") == \
            pytest.approx(expected, abs=1e-5), mode


def test_a_packed_batch_counts_the_examples_and_tokens_of_the_padded_one(e2e, torch_one_thread):
    task, cfg, data = e2e
    items = _e2e_items(data)
    useful = sum(len(ids) for ids, _ in items)
    tokenizer = load_tokenizer(cfg)
    for mode in MODES:
        assert batch_counts(collate_for(task, tokenizer, mode)(items)) == (len(items), useful)


# ----------------------------------------------------------------------------- padding-free refusal


def _mixes(model, *, positions: bool) -> bool:
    """Whether packing two sequences in one row changes the second one's logits (it attends to
    or carries state from the first)."""
    a, b = torch.tensor([[5, 6, 7, 8, 9]]), torch.tensor([[10, 11, 12]])
    kwargs = {"position_ids": torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2]]), "use_cache": False} if positions else {}
    with torch.no_grad():
        alone = model(input_ids=b).logits[0]
        packed = model(input_ids=torch.cat([a, b], 1), **kwargs).logits[0, 5:]
    return not torch.allclose(packed, alone, atol=1e-4)


def _gpt2(attn: str):
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=64, n_positions=64,
                                      attn_implementation=attn)).eval()


def _llama(attn: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, vocab_size=64, attn_implementation=attn)).eval()


def _gpt2_unmasked_attention():
    """GPT-2 on an attention function registered under a new name, as a user registers a
    kernel: transformers builds no mask for a name it does not know."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    AttentionInterface.register("lorasweep_test_sdpa", sdpa_attention_forward)
    return _gpt2("lorasweep_test_sdpa")


def _kosmos2_text():
    """A decoder with position_ids that builds its own 4D mask."""
    from transformers import Kosmos2TextConfig
    from transformers.models.kosmos2.modeling_kosmos2 import Kosmos2TextForCausalLM

    return Kosmos2TextForCausalLM(Kosmos2TextConfig(vocab_size=64, embed_dim=32, layers=2, attention_heads=4,
                                                    ffn_dim=64, max_position_embeddings=64)).eval()


def _mamba():
    from transformers import MambaConfig, MambaForCausalLM

    return MambaForCausalLM(MambaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, state_size=4)).eval()


@pytest.mark.parametrize("build, accepted, why", [
    (lambda: _gpt2("sdpa"), True, None),
    (lambda: _gpt2("eager"), True, None),
    (lambda: _llama("sdpa"), True, None),
    (lambda: _llama("eager"), True, None),
    (_gpt2_unmasked_attention, False, "transformers builds no mask for its attention implementation"),
    (_kosmos2_text, False, "its code builds no transformers causal mask"),
    (_mamba, False, "its forward takes no position_ids"),
], ids=["gpt2-sdpa", "gpt2-eager", "llama-sdpa", "llama-eager", "registered-attention", "kosmos2", "mamba"])
def test_padding_free_is_refused_exactly_where_packed_examples_would_mix(build, accepted, why, torch_one_thread):
    torch.manual_seed(0)
    model = build()
    takes_positions = why != "its forward takes no position_ids"
    assert _mixes(model, positions=takes_positions) is not accepted
    if accepted:
        check_padding_free(model)
        return
    with pytest.raises(UserError) as err:
        check_padding_free(model)
    assert err.value.field == "train.batching" and why in str(err.value)
    assert "\n" not in str(err.value) and "accepted here: grouped or random" in str(err.value)


def test_a_task_without_a_mode_refuses_it_and_null_is_the_task_default(make_trial_module):
    from trainables.config import TrialConfig
    from trainables.schema import from_dict

    e2e_cfg = make_trial_module()
    assert batching_mode(get_task("e2e"), e2e_cfg) == "grouped"
    glue = from_dict(TrialConfig, {"task": "glue-rte", "train": {"batching": "grouped"}})
    with pytest.raises(UserError, match="glue-rte has no grouped batches; accepted: 'random'"):
        batching_mode(get_task("glue-rte"), glue)
    with pytest.raises(UserError, match="expected one of 'random', 'grouped' or 'padding_free'"):
        from_dict(TrialConfig, {"train": {"batching": "packed"}})


# ----------------------------------------------------------------------------- length-grouped batches


def _rank_batches(lengths, batch_size, *, seed=3, epoch=0, rank=0, world_size=1) -> list[list[int]]:
    """The batches the loop's DataLoader makes of one rank's sampler in one epoch."""
    from torch.utils.data import DataLoader

    sampler = LengthGroupedSampler(lengths, batch_size, seed=seed, rank=rank, world_size=world_size)
    sampler.set_epoch(epoch)
    return list(DataLoader(range(len(lengths)), batch_size=batch_size, sampler=sampler, collate_fn=list))


def _pad_fraction(lengths, batches) -> float:
    slots = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - sum(lengths[i] for b in batches for i in b) / slots


def test_grouped_batches_cover_the_epoch_with_little_padding_in_shuffled_order(make_trial_module):
    cfg = make_trial_module(data={"train_limit": None})  # the whole synthetic training set
    task = get_task("e2e")
    lengths = [int(n) for n in task.load_prepared(task.prepare(cfg, progress=False), cfg).train.lengths()]
    batches = _rank_batches(lengths, 16)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert [len(b) for b in batches[:-1]] == [16] * (len(batches) - 1)
    # a random batch of 16 pads to its longest example; a grouped one to a near neighbour
    random_order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist()
    random_batches = [random_order[i:i + 16] for i in range(0, len(lengths), 16)]
    assert _pad_fraction(lengths, batches) < 0.25 * _pad_fraction(lengths, random_batches)
    # the batches are shuffled: their lengths do not run down as in a group sorted by length
    longest = [max(lengths[i] for i in b) for b in batches[:-1]]
    assert np.mean(np.diff(longest) <= 0) < 0.75
    # the order depends on the seed and the epoch only
    assert _rank_batches(lengths, 16) == batches
    assert _rank_batches(lengths, 16, epoch=1) != batches
    assert _rank_batches(lengths, 16, seed=4) != batches


@pytest.mark.parametrize("n, batch_size, world_size", [
    (1164, 16, 2), (1000, 8, 4), (9, 4, 2), (3, 1, 2), (50, 4, 3), (1, 2, 2)])
def test_grouped_batches_give_each_rank_a_disjoint_shard_and_the_same_number_of_batches(n, batch_size, world_size):
    lengths = np.random.default_rng(n).integers(20, 120, n).tolist()
    per_rank = [_rank_batches(lengths, batch_size, epoch=2, rank=r, world_size=world_size)
                for r in range(world_size)]
    # train.batch_size is the global batch: batch_size examples on each rank
    planned = plan_steps(TrainConfig(batch_size=batch_size * world_size), n,
                         world_size=world_size).micro_batches_per_epoch
    assert [len(b) for b in per_rank] == [planned] * world_size
    # Every example on one rank; only the padding that evens out the shards (as
    # DistributedSampler's) repeats an example on another rank.
    seen = collections.Counter(i for batches in per_rank for b in batches for i in b)
    assert set(seen) == set(range(n))
    assert sum(seen.values()) - n == math.ceil(n / world_size) * world_size - n
    # The ranks step through batches of about the same length at the same time (but for the
    # last, which holds the epoch's remainder).
    if n >= 1000:
        longest = np.array([[max(lengths[i] for i in b) for b in batches[:-1]] for batches in per_rank])
        assert np.abs(longest - longest[0]).max() <= 4  # tokens, of lengths 20-119


@pytest.mark.parametrize("mode", ["random", "padding_free"])
def test_a_trial_counts_every_example_and_useful_token_of_an_epoch(mode, make_trial_module, e2e,
                                                                   torch_one_thread, tmp_path):
    cfg = make_trial_module(train={"epochs": 1, "batching": mode}, eval={"generate": False})
    _task, _cfg, data = e2e
    last = run_loop(cfg, LocalSession())
    assert math.isfinite(last["val_loss"])
    assert last["tokens_per_s"] / last["samples_per_s"] == pytest.approx(float(data.train.lengths().mean()))


# ----------------------------------------------------------------------------- global batches across ranks


@pytest.mark.parametrize("kind", ["random", "grouped"])
@pytest.mark.parametrize("world_size", [2, 4])
def test_the_ranks_batches_of_a_step_make_the_one_process_batch_of_that_step(kind, world_size):
    """train.batch_size is the global batch: with the same seed and epoch, the ranks' i-th
    batches together are the i-th batch of one process taking all of it."""
    from torch.utils.data import DataLoader

    from trainables.batching import GlobalBatchSampler

    n, per_rank, seed, epoch = 96, 4, 7, 1
    lengths = np.random.default_rng(0).integers(20, 120, n).tolist()

    def batches(rank: int, world: int) -> list[list[int]]:
        size = per_rank * world_size // world
        sampler = (LengthGroupedSampler(lengths, size, seed=seed, rank=rank, world_size=world) if kind == "grouped"
                   else GlobalBatchSampler(range(n), size, seed=seed, rank=rank, world_size=world))
        sampler.set_epoch(epoch)
        return list(DataLoader(range(n), batch_size=size, sampler=sampler, collate_fn=list))

    one = batches(0, 1)
    ranks = [batches(r, world_size) for r in range(world_size)]
    assert all(len(b) == len(one) for b in ranks)
    for i, whole in enumerate(one):
        assert sorted(x for r in ranks for x in r[i]) == sorted(whole)
        assert all(len(r[i]) == per_rank for r in ranks)


def test_one_process_random_batches_are_random_samplers_epoch_order():
    """The one-process order is what torch's RandomSampler draws from a generator seeded with
    the epoch's seed (epoch_seed), so a trial's data order does not change with the sampler."""
    from torch.utils.data import RandomSampler

    from trainables.batching import GlobalBatchSampler, epoch_seed

    sampler = GlobalBatchSampler(range(50), 8, seed=11)
    sampler.set_epoch(3)
    expected = list(RandomSampler(range(50), generator=torch.Generator().manual_seed(epoch_seed(11, 3))))
    assert list(sampler) == expected


@pytest.mark.parametrize("n, batch, world_size", [(10, 3, 2), (7, 2, 3), (2, 4, 2), (16, 4, 4)])
def test_evaluation_batches_give_every_example_once_in_the_one_process_batches(n, batch, world_size):
    from trainables.batching import RankBatches

    order = np.random.default_rng(n).permutation(n).tolist()
    one = list(RankBatches(order, batch))
    ranks = [list(RankBatches(order, batch, rank=r, world_size=world_size)) for r in range(world_size)]
    assert sorted(i for r in ranks for b in r for i in b) == list(range(n))  # no padding repeats
    assert sorted(map(tuple, (b for r in ranks for b in r))) == sorted(map(tuple, one))
