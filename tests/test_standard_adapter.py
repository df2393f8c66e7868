"""Adapters saved in peft's standard layout (trainables/standard_adapter.py): every method, after
real training steps, loads with plain ``PeftModel.from_pretrained`` on the unmodified base and
gives the trained model's logits.

The fused GPT-2 layout is also checked against hand arithmetic: rank 2r on ``c_attn``, alpha
2 alpha (rsLoRA: sqrt(2) alpha, so that alpha / sqrt(r) is kept), zeros in k's rows of B.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

from trainables.adapters import build_adapter_model
from trainables.config import AdapterConfig, TrainConfig
from trainables.optim import build_optimizer
from trainables.standard_adapter import is_standard, save_standard

D = 32
GPT2 = GPT2Config(n_layer=2, n_embd=D, n_head=4, vocab_size=100, n_positions=32, bos_token_id=0, eos_token_id=0)
BERT = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=32, num_labels=3)


def gpt2():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2).eval()


def bert():
    torch.manual_seed(0)
    return BertForSequenceClassification(BERT).eval()


def ids(vocab: int) -> torch.Tensor:
    return torch.randint(1, vocab, (3, 10), generator=torch.Generator().manual_seed(1))


def trained(model, cfg: AdapterConfig, x: torch.Tensor, labels: torch.Tensor, task_type: str):
    """``model`` with the adapter ``cfg``, after three real optimizer steps (B != 0)."""
    model = build_adapter_model(model, cfg, task_type=task_type)
    opt = build_optimizer(model, TrainConfig(lr=1e-2, weight_decay=0.0), cfg)
    model.train()
    for _ in range(3):
        model(input_ids=x, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return model.eval()


def logits(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=x).logits


GPT2_CASES = [(m, "qv") for m in ("lora", "rslora", "dora", "vera", "pissa", "olora", "lora-fa", "loraplus")] + \
             [(m, "c_attn") for m in ("lora", "dora", "vera", "pissa")] + \
             [(m, "c_attn.q,c_attn.v,c_fc") for m in ("lora", "rslora", "vera")]  # views beside another target


@pytest.mark.parametrize("method, targets", GPT2_CASES)
def test_gpt2_adapters_load_with_plain_peft_on_the_unmodified_base(tmp_path, method, targets):
    x = ids(100)
    cfg = AdapterConfig(method=method, r=16 if method == "vera" else 4, alpha=8, dropout=0.0, targets=targets)
    model = trained(gpt2(), cfg, x, x, "causal_lm")
    want = logits(model, x)
    assert (logits(gpt2(), x) - want).abs().max() > 1e-3  # the adapter changed the model
    save_standard(model, tmp_path / "a", meta={"method": method, "task": "e2e", "base_model": "tiny"})
    torch.testing.assert_close(logits(model, x), want, atol=0, rtol=0)  # saving left the trial as it was
    got = logits(PeftModel.from_pretrained(gpt2(), str(tmp_path / "a")).eval(), x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert is_standard(model) == (targets == "c_attn" and method != "pissa")


@pytest.mark.parametrize("method", ["full", "lora", "dora", "vera", "loraplus", "lora-fa", "pissa"])
def test_encoder_classifier_adapters_load_with_plain_peft(tmp_path, method):
    """The variants_glue smoke methods on a tiny BERT with a new 3-class head."""
    from transformers import AutoModelForSequenceClassification

    x, y = ids(120), torch.tensor([0, 2, 1])
    cfg = AdapterConfig(method=method, r=16 if method == "vera" else 4, alpha=8, dropout=0.0, targets="qv")
    model = trained(bert(), cfg, x, y, "seq_cls")
    want = logits(model, x)
    save_standard(model, tmp_path / "a", meta={"method": method, "task": "glue-mnli", "base_model": "tiny"})
    readme = (tmp_path / "a" / "README.md").read_text()
    if method == "full":
        assert "peft cannot express this" in readme
        got = logits(AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "a")).eval(), x)
    else:
        assert "num_labels=3" in readme and "PeftModel.from_pretrained" in readme
        got = logits(PeftModel.from_pretrained(bert(), str(tmp_path / "a")).eval(), x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method, alpha", [("lora", 2 * 8), ("rslora", math.sqrt(2) * 8)])
def test_the_fused_qv_adapter_is_rank_2r_with_the_trials_scaling_and_zero_k_rows(tmp_path, method, alpha):
    x = ids(100)
    cfg = AdapterConfig(method=method, r=4, alpha=8, dropout=0.0, targets="qv")
    model = trained(gpt2(), cfg, x, x, "causal_lm")
    save_standard(model, tmp_path / "a", meta={"method": method})
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["target_modules"] == ["c_attn"] and config["r"] == 8 and config["fan_in_fan_out"]
    assert config["lora_alpha"] == pytest.approx(alpha)
    state = load_file(str(tmp_path / "a" / "adapter_model.safetensors"))
    a = state["base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"]
    b = state["base_model.model.transformer.h.0.attn.c_attn.lora_B.weight"]
    assert a.shape == (8, D) and b.shape == (3 * D, 8)
    layer = model.base_model.model.transformer.h[0].attn.c_attn
    assert torch.equal(b[D:2 * D], torch.zeros(D, 8))  # k is not adapted
    assert torch.equal(b[:D, 4:], torch.zeros(D, 4)) and torch.equal(b[2 * D:, :4], torch.zeros(D, 4))
    assert torch.equal(a[:4], layer.q.lora_A["default"].weight) and torch.equal(a[4:], layer.v.lora_A["default"].weight)
    assert torch.equal(b[:D, :4], layer.q.lora_B["default"].weight)
    assert torch.equal(b[2 * D:, 4:], layer.v.lora_B["default"].weight)


@pytest.mark.parametrize("method", ["lora", "pissa", "olora", "vera"])
def test_saving_leaves_the_trial_training_with_its_dropout(tmp_path, method):
    """peft's PiSSA/OLoRA conversion loads an adapter for inference, which draws random numbers
    and switches the model to eval mode: after saving, the random state is as it was and every
    module is in the mode it trained in."""
    x = ids(100)
    cfg = AdapterConfig(method=method, r=16 if method == "vera" else 4, alpha=8, dropout=0.1, targets="qv")
    model = trained(gpt2(), cfg, x, x, "causal_lm").train()
    rng = torch.get_rng_state()
    save_standard(model, tmp_path / "a", meta={"method": method, "task": "e2e", "base_model": "tiny"})
    assert [n for n, m in model.named_modules() if not m.training] == []
    assert torch.equal(torch.get_rng_state(), rng)  # the trial's next dropout masks are unchanged
    model.eval().transformer.h[0].train()  # a mixed state is kept as it is
    before = {n: m.training for n, m in model.named_modules()}
    save_standard(model, tmp_path / "b", meta={"method": method, "task": "e2e", "base_model": "tiny"})
    assert {n: m.training for n, m in model.named_modules()} == before


def test_the_readme_loads_the_base_in_the_trials_dtype(tmp_path):
    """A trial in bfloat16 over a base saved in float32 (whose config.json names float32, so
    from_pretrained's "auto" would load float32): the README's code, run as written, loads
    the base in bfloat16 (and the adapter in float32, as peft loads it and the trial trained it)."""
    import re

    x = ids(100)
    base = tmp_path / "base"
    gpt2().save_pretrained(base)
    model = trained(gpt2(), AdapterConfig(r=4, alpha=8, dropout=0.0, targets="c_attn"), x, x, "causal_lm")
    save_standard(model, tmp_path / "a", meta={"method": "lora", "task": "e2e", "base_model": str(base),
                                               "dtype": "bfloat16"})
    code = re.search(r"```python\n(.*?)```", (tmp_path / "a" / "README.md").read_text(), re.S).group(1)
    scope: dict = {}
    exec(code.replace("'<this directory>'", repr(str(tmp_path / "a"))), scope)
    dtypes = {("lora_" in n, p.dtype) for n, p in scope["model"].named_parameters()}
    assert dtypes == {(False, torch.bfloat16), (True, torch.float32)}
