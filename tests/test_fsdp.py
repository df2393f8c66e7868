"""FSDP trials (``train.strategy: fsdp``, :mod:`trainables.fsdp`) on 2 real gloo ranks, the tiny
GPT-2 with a LoRA on its q/k/v views sharded with FSDP2: a checkpoint saved and resumed, and beam
search whose ranks finish at different steps. The E2E trial through the command line is in
``test_ray_train.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeps.ray_start import free_port

pytestmark = pytest.mark.integration


def _sharded(cfg):
    import torch

    from trainables.adapters import build_adapter_model
    from trainables.fsdp import shard
    from trainables.optim import build_optimizer
    from trainables.tasks.registry import get_task

    task = get_task(cfg.task)
    torch.manual_seed(cfg.seed)
    model, _ = task.load_model(cfg)
    model = shard(build_adapter_model(model, cfg.adapter, task_type=task.peft_task_type), torch.device("cpu"))
    return model, build_optimizer(model, cfg.train, cfg.adapter)


def _step(model, optimizer, rank: int) -> None:
    import torch

    ids = torch.arange(rank * 7, rank * 7 + 24).reshape(2, 12) % 200
    model.eval()  # no dropout: the two models' steps draw no random masks
    model(input_ids=ids, labels=ids).loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 0.5)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _rank(rank: int, port: int, cfg, out: str, results: str) -> None:
    import os

    import torch
    import torch.distributed as dist

    from trainables.checkpointing import restore_checkpoint, save_checkpoint
    from trainables.fsdp import gather_state

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    model, optimizer = _sharded(cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    for _ in range(2):
        _step(model, optimizer, rank)
    saved = gather_state(model, optimizer)
    if rank == 0:
        save_checkpoint(Path(out), model=model, optimizer=optimizer, scheduler=scheduler, step=2, cfg=cfg,
                        gathered=saved)
    dist.barrier()
    restored, optimizer2 = _sharded(cfg)
    scheduler2 = torch.optim.lr_scheduler.LambdaLR(optimizer2, lambda step: 1.0)
    step, final = restore_checkpoint(Path(out), model=restored, optimizer=optimizer2, scheduler=scheduler2)
    loaded = gather_state(restored, optimizer2)
    for m, o in ((model, optimizer), (restored, optimizer2)):
        _step(m, o, rank)
    after = [gather_state(m, o).adapter for m, o in ((model, optimizer), (restored, optimizer2))]
    if rank == 0:
        torch.save({"step": step, "final": final, "saved": saved.adapter, "saved_optim": saved.optimizer,
                    "loaded": loaded.adapter, "loaded_optim": loaded.optimizer, "after": after}, results)
    dist.destroy_process_group()


def test_an_fsdp_checkpoint_resumes_into_the_shards_what_was_saved(tmp_path, make_trial):
    """Two AdamW steps with gradient clipping; rank 0 writes the checkpoint from the gathered
    adapter and optimizer state; a freshly sharded model restores it on both ranks. The restored
    shards hold the saved adapter and AdamW moments exactly, and a further step from the
    restored state moves the weights as the same step from the original does."""
    import torch
    import torch.multiprocessing as mp
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = make_trial(train={"strategy": "fsdp", "max_grad_norm": 0.5})
    results = tmp_path / "results.pt"
    mp.start_processes(_rank, args=(free_port(), cfg, str(tmp_path / "ckpt"), str(results)), nprocs=2,
                       start_method="spawn")
    got = torch.load(results, weights_only=True)
    assert (got["step"], got["final"]) == (2, False)
    saved, loaded = got["saved"], got["loaded"]
    lora = [k for k in saved if ".lora_" in k]
    assert len(lora) == 8  # 2 layers x (q, v) x (A, B)
    for k in lora:
        assert torch.equal(saved[k], loaded[k]), k
    states = got["saved_optim"]["state"], got["loaded_optim"]["state"]
    assert states[0].keys() == states[1].keys() and states[0]
    for k, state in states[0].items():
        for moment in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(state[moment], states[1][k][moment]), (k, moment)
    original, resumed = got["after"]
    for k in lora:
        assert torch.equal(original[k], resumed[k]), k
        assert not torch.equal(original[k], saved[k]), k  # the further step moved it
    # The checkpoint's adapter is a plain peft adapter of the unmodified base (the q/k/v views
    # fused back into c_attn).
    base = AutoModelForCausalLM.from_pretrained(cfg.model.name_or_path)
    PeftModel.from_pretrained(base, str(tmp_path / "ckpt" / "adapter"))


def _decode(rank: int, port: int, cfg, prompts, results: str) -> None:
    import os

    import torch
    import torch.distributed as dist

    from trainables.models import load_tokenizer
    from trainables.session import TrainSession
    from trainables.tasks.causal_lm import generate

    class GlooSession(TrainSession):
        """TrainSession's collectives on this test's process group (no Ray Train context)."""

        def __init__(self) -> None:
            self.world_rank, self.world_size, self.strategy, self.lockstep = rank, 2, "fsdp", True

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    model, _ = _sharded(cfg)
    texts = generate(model, load_tokenizer(cfg), prompts, cfg.eval, device=torch.device("cpu"),
                     session=GlooSession())
    if rank == 0:
        torch.save(texts, results)
    dist.destroy_process_group()


def test_fsdp_beam_search_keeps_the_ranks_in_step_and_decodes_what_one_process_does(tmp_path, make_trial):
    """3 E2E test inputs decoded one at a time: rank 0 decodes inputs 0 and 2, rank 1 input 1 and
    then input 0 again (dropped), so that both run as many ``generate`` calls. The inputs are
    ordered so that rank 0's beams take more decoding steps in all than rank 1's (counted on
    one process): every step's forward all-gathers the shards, and only ``synced_gpus`` keeps
    the rank that finished stepping with the other. The texts are those one process decodes
    with the same (unsharded) model."""
    import torch
    import torch.multiprocessing as mp

    from trainables.adapters import build_adapter_model
    from trainables.models import load_tokenizer
    from trainables.tasks.causal_lm import generate
    from trainables.tasks.registry import get_task

    cfg = make_trial(train={"strategy": "fsdp"}, eval={"num_beams": 2, "max_new_tokens": 40, "batch_size": 1})
    task = get_task(cfg.task)
    test = task.load_prepared(task.prepare(cfg, progress=False), cfg).test["prompts"]
    prompts = [test[1], test[0], test[2]]
    torch.manual_seed(cfg.seed)
    model, _ = task.load_model(cfg)
    model = build_adapter_model(model, cfg.adapter, task_type=task.peft_task_type)
    forwards = [0]
    model.get_base_model().register_forward_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))
    want, steps = [], []
    for p in prompts:
        forwards[0] = 0
        want += generate(model, load_tokenizer(cfg), [p], cfg.eval, device=torch.device("cpu"))
        steps.append(forwards[0])
    assert steps[0] + steps[2] != steps[1] + steps[0], steps  # rank 0's steps, rank 1's with its filler
    results = tmp_path / "texts.pt"
    mp.start_processes(_decode, args=(free_port(), cfg, prompts, str(results)), nprocs=2, start_method="spawn")
    assert torch.load(results) == want


def test_the_adapter_file_keys_of_the_trained_parameters_are_peft_s_own():
    """Restoring a sharded trial maps each key of the saved adapter file to the parameter it
    loads into; the keys must be those peft's ``get_peft_model_state_dict`` writes, for LoRA's
    matrices and for a head trained whole (``modules_to_save``) alike."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers import BertConfig, BertForSequenceClassification

    from trainables.fsdp import peft_key

    base = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=32, num_labels=3))
    model = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=2, target_modules=["query", "value"]))
    trained = {peft_key(n, model.active_adapter) for n, p in model.named_parameters() if p.requires_grad}
    saved = set(get_peft_model_state_dict(model))
    assert trained == saved
    assert {"base_model.model.classifier.weight", "base_model.model.classifier.bias"} <= saved
