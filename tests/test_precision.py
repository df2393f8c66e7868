"""Mixed precision (``train.precision``) on the real tiny GPT-2 with a real LoRA adapter: fp16
keeps gradients that float16 alone would flush to zero (torch's gradient scaler), skips a step
whose gradients overflowed, records its loss scale and checkpoints it; a precision the device
cannot compute in is refused with one line naming the field. CPU autocast computes in float16
and bfloat16 in this torch, so the fp16 path runs here as it runs on a GPU."""

from __future__ import annotations

import math

import pytest
import torch

from trainables.checkpointing import STATE_FILE
from trainables.devices import Precision, check_precision
from trainables.errors import UserError
from trainables.loop import run_loop
from trainables.session import LocalSession
from trainables.tasks.registry import get_task

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def adapted(smoke_assets, torch_one_thread):
    """(task, cfg, model, batch): the tiny GPT-2 with LoRA on W_q, W_v, B filled with small
    random values (peft starts B at zero, where A's gradient is zero too), no dropout."""
    from conftest import tiny_trial

    from trainables.adapters import build_adapter_model

    cfg = tiny_trial(smoke_assets, adapter={"dropout": 0.0})
    task = get_task("e2e")
    data = task.load_prepared(task.prepare(cfg, progress=False), cfg)
    model, tokenizer = task.load_model(cfg)
    model = build_adapter_model(model, cfg.adapter, task_type=task.peft_task_type).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    batch = task.collate(tokenizer)([data.train[i] for i in range(8)])
    return task, cfg, model, batch


def _grads(adapted, precision: str, factor: float, *, scaled: bool) -> torch.Tensor:
    """The adapter's gradient of ``factor`` x the batch's loss, computed under ``precision``'s
    autocast, through the gradient scaler (``scaled``: backward, then unscale) or plainly."""
    task, cfg, model, batch = adapted
    params = [p for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    prec = Precision(precision, CPU)
    with prec.autocast():
        loss = task.train_loss(model, batch, cfg) * factor
    if scaled:
        prec.backward(loss)
        if prec.scaler is not None:
            prec.scaler.unscale_(torch.optim.SGD(params, lr=0.0))
    else:
        loss.backward()
    return torch.cat([p.grad.flatten() for p in params])


def test_fp16_keeps_gradients_that_float16_alone_flushes_to_zero(adapted):
    """A loss 1e-5 times the batch's: its gradients (largest about 5e-6, per-token terms far
    smaller) are below float16's smallest subnormal, 2^-24 = 6e-8, inside the backward pass.
    Unscaled, every one of them is 0; through the scaler (x 2^16) every one survives and
    matches float32's within float16's precision (relative error 2^-11 = 5e-4 per element)."""
    factor = 1e-5
    fp32 = _grads(adapted, "fp32", factor, scaled=False)
    assert bool((fp32 != 0).all())
    assert not bool((_grads(adapted, "fp16", factor, scaled=False) != 0).any())  # what the scaler prevents
    fp16 = _grads(adapted, "fp16", factor, scaled=True)
    assert bool((fp16 != 0).all())
    assert float(torch.linalg.vector_norm(fp16 - fp32) / torch.linalg.vector_norm(fp32)) < 1e-2
    assert float(torch.nn.functional.cosine_similarity(fp16, fp32, dim=0)) > 0.999


def test_fp16_skips_a_step_whose_gradients_overflow_and_halves_the_scale(adapted):
    """A loss 1e6 times the batch's, scaled by 2^16, overflows float16's 65,504 in the backward
    pass: the step is skipped (the weights do not move), the scale halves; a normal step then
    moves them."""
    task, cfg, model, batch = adapted
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    prec = Precision("fp16", CPU)
    before = [p.detach().clone() for p in params]

    def step(factor: float) -> bool:
        optimizer.zero_grad()
        with prec.autocast():
            loss = task.train_loss(model, batch, cfg) * factor
        prec.backward(loss)
        return prec.step(optimizer, params, max_grad_norm=1.0)

    assert prec.loss_scale == 2.0 ** 16
    assert step(1e6) is False
    assert prec.loss_scale == 2.0 ** 15
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    assert step(1.0) is True and prec.loss_scale == 2.0 ** 15
    assert not all(torch.equal(p, b) for p, b in zip(params, before))
    with torch.no_grad():  # leave the module's model as it was
        for p, b in zip(params, before):
            p.copy_(b)


def test_an_fp16_trial_records_its_loss_scale_and_checkpoints_it(make_trial, torch_one_thread, tmp_path):
    cfg = make_trial(train={"precision": "fp16", "max_steps": 8, "eval_every_steps": 4, "log_every_steps": 2},
                     eval={"generate": False})
    session = LocalSession(tmp_path)
    last = run_loop(cfg, session)
    assert math.isfinite(last["val_loss"]) and math.isfinite(last["train_loss"])
    for report in session.reports:
        history = report["history"]
        assert len(history["loss_scale"]) == len(history["step"]) == 2
        assert all(s in (2.0 ** 16, 2.0 ** 15, 2.0 ** 14) for s in history["loss_scale"])
    state = torch.load(session.checkpoints[-1] / STATE_FILE, weights_only=True)
    assert state["scaler"]["scale"] == session.reports[-1]["history"]["loss_scale"][-1]
    fp32 = LocalSession()
    run_loop(make_trial(train={"max_steps": 2, "eval_every_steps": 2}, eval={"generate": False}), fp32)
    assert "loss_scale" not in fp32.reports[-1]["history"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="refuses CUDA precisions only where there is no CUDA")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_a_precision_the_device_cannot_compute_in_is_refused_in_one_line(precision):
    check_precision(precision, "cpu")  # this torch's CPU autocast has both
    with pytest.raises(UserError) as err:
        check_precision(precision, "cuda")
    text = str(err.value)
    assert err.value.field == "train.precision" and "\n" not in text
    assert f"{precision} is not available on cuda here" in text and text.endswith("accepted here: fp32")
