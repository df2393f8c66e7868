"""Target groups, the faithful GPT-2 ``qv`` group, parameter counts and adapter reloading."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from trainables.adapters import (TARGET_GROUPS, build_adapter_model, check_adapter_targets,
                                 count_parameters, load_adapter, resolve_targets, save_adapter)
from trainables.config import AdapterConfig
from trainables.errors import UserError


def tiny_gpt2(seed: int = 0, n_layer: int = 2, n_embd: int = 64) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=4, vocab_size=300, n_positions=64,
                     bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg).eval()


def gpt2_medium_on_meta() -> GPT2LMHeadModel:
    """GPT-2 medium's real shapes (d=1024, 24 layers) without allocating its weights."""
    cfg = GPT2Config(n_layer=24, n_embd=1024, n_head=16)
    with torch.device("meta"):
        return GPT2LMHeadModel(cfg)


def gpt2_small_on_meta() -> GPT2LMHeadModel:
    with torch.device("meta"):
        return GPT2LMHeadModel(GPT2Config())


@pytest.mark.parametrize("group, count", [
    # The GPT-2 SQuAD assignment's Table 7 (002_e9ac2efa5dd60dba.txt), r = 4 on GPT-2 small:
    # "att" 147,456 = 12 x 4 x (768 + 2304); "att + proj" 405,504 = 12 x 4 x (3072 + 1536 + 3840).
    ("attn", 147_456),
    ("attn+proj", 405_504),
])
def test_squad_assignment_groups_give_its_table_7_counts_on_gpt2_small(group, count):
    model = build_adapter_model(gpt2_small_on_meta(), AdapterConfig(r=4, alpha=16, targets=group))
    assert count_parameters(model).trainable == count
    adapted = {n.rsplit(".lora_A", 1)[0].split("h.0.", 1)[-1] for n, _ in model.named_modules()
               if ".h.0." in n and n.endswith("lora_A")}
    assert adapted == ({"attn.c_attn"} if group == "attn" else {"attn.c_attn", "attn.c_proj", "mlp.c_proj"})


@pytest.mark.parametrize("r", [1, 4, 64])
def test_qv_count_is_the_papers_closed_form_for_gpt2_medium(r):
    # 2 matrices (W_q, W_v) x r x (d_in + d_out) x 24 layers, d = 1024.
    model = build_adapter_model(gpt2_medium_on_meta(), AdapterConfig(r=r, targets="qv"))
    assert count_parameters(model).trainable == 2 * r * (1024 + 1024) * 24
    if r == 4:
        assert count_parameters(model).trainable == 393_216


@pytest.mark.parametrize("group, per_layer", [
    # r * (d_in + d_out) per adapted matrix, d = 64, one layer.
    ("qv", 2 * (64 + 64)),
    ("c_attn", 64 + 3 * 64),             # one pair on the fused (d -> 3d) projection
    ("qkvo", (64 + 3 * 64) + (64 + 64)),
    # c_attn and both c_proj: the attention output (d -> d) and the MLP's (4d -> d)
    ("attn+proj", (64 + 3 * 64) + (64 + 64) + (4 * 64 + 64)),
    ("mlp", (64 + 4 * 64) + (4 * 64 + 64)),
    ("all-linear", (64 + 3 * 64) + (64 + 64) + (64 + 4 * 64) + (4 * 64 + 64)),
])
def test_every_gpt2_group_matches_its_closed_form(group, per_layer):
    r, layers = 4, 2
    model = build_adapter_model(tiny_gpt2(), AdapterConfig(r=r, targets=group))
    count = count_parameters(model)
    assert count.trainable == r * per_layer * layers
    assert 0 < count.percent < 100


def test_qv_with_b_zero_computes_exactly_the_base_model():
    base = tiny_gpt2()
    x = torch.randint(0, 300, (3, 12))
    with torch.no_grad():
        expected = base(x).logits
        adapted = build_adapter_model(copy.deepcopy(base), AdapterConfig(r=8, targets="qv", dropout=0.0))
        adapted.eval()
        assert torch.equal(adapted(x).logits, expected)
        # ... and adapting only q and v leaves k untouched once B is not zero.
        for name, p in adapted.named_parameters():
            if "lora_B" in name:
                p.normal_()
        assert not torch.allclose(adapted(x).logits, expected)
    names = [n for n, _ in adapted.named_modules()]
    assert any(n.endswith("c_attn.q.lora_A.default") for n in names)
    assert any(n.endswith("c_attn.v.lora_B.default") for n in names)
    assert not any("c_attn.k.lora" in n for n in names)


def test_only_adapter_weights_train():
    model = build_adapter_model(tiny_gpt2(), AdapterConfig(r=2, targets="qv"))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_saved_adapter_reloads_onto_a_fresh_base(tmp_path):
    base = tiny_gpt2(seed=1)
    model = build_adapter_model(copy.deepcopy(base), AdapterConfig(r=4, targets="qv", dropout=0.0))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    model.eval()
    x = torch.randint(0, 300, (2, 10))
    expected = model(x).logits
    save_adapter(model, tmp_path / "adapter", meta={"targets": "qv"})
    files = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files
    assert not any(f.startswith(("model.safetensors", "pytorch_model")) for f in files)  # adapter only
    reloaded = load_adapter(tiny_gpt2(seed=1), tmp_path / "adapter").eval()
    assert torch.allclose(reloaded(x).logits, expected, atol=1e-6)


@pytest.mark.parametrize("targets, fragment", [
    ("c_atn", "did you mean 'c_attn'"),
    ("q_proj,v_proj", "no module named 'q_proj'"),
])
def test_unknown_targets_are_refused_on_the_meta_model(targets, fragment):
    with pytest.raises(UserError) as err:
        check_adapter_targets(gpt2_medium_on_meta(), [targets])
    assert err.value.field == "adapter.targets" and fragment in err.value.message
    assert "'qv'" in err.value.message  # names the groups that exist


def test_module_lists_and_peft_all_linear_resolve():
    assert resolve_targets("c_fc, mlp.c_proj", "gpt2").modules == ("c_fc", "mlp.c_proj")
    assert resolve_targets("all-linear", "opt").modules == ("all-linear",)
    assert resolve_targets("qv", "gpt2").split_qkv
    assert set(TARGET_GROUPS["gpt2"]) >= {"qv", "c_attn", "qkvo", "attn+proj", "mlp", "all-linear"}
    check_adapter_targets(gpt2_medium_on_meta(), ["qv", "c_attn", "qkvo", "attn+proj", "mlp", "all-linear"])


@pytest.mark.parametrize("method", ["rslora", "dora"])
def test_peft_variants_build_on_the_qv_split(method):
    model = build_adapter_model(tiny_gpt2(), AdapterConfig(r=4, targets="qv", method=method))
    x = torch.randint(0, 300, (2, 8))
    out = model(input_ids=x, labels=x)
    out.loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)


def _lora_a(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for n, p in model.named_parameters() if "lora_A" in n])


def test_gaussian_init_draws_a_with_std_one_over_r_and_keeps_b_zero():
    # peft's init_lora_weights="gaussian": A ~ N(0, (1/r)^2); the default (loralib's) is
    # Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)): here 1/8.
    r = 4
    torch.manual_seed(0)
    gauss = build_adapter_model(tiny_gpt2(), AdapterConfig(r=r, targets="c_attn", init_weights="gaussian"))
    torch.manual_seed(0)
    default = build_adapter_model(tiny_gpt2(), AdapterConfig(r=r, targets="c_attn"))
    a_gauss, a_default = _lora_a(gauss), _lora_a(default)
    assert a_gauss.numel() == 2 * r * 64  # two layers' A: r x d_in each
    assert abs(float(a_gauss.std()) - 1 / r) < 0.05 / r
    assert float(a_default.abs().max()) <= 1 / 64 ** 0.5 < float(a_gauss.abs().max())
    assert all(float(p.abs().max()) == 0 for n, p in gauss.named_parameters() if "lora_B" in n)


@pytest.mark.parametrize("method", ["pissa", "vera", "full"])
def test_gaussian_init_is_refused_where_the_method_sets_its_own(method):
    from trainables.config import TrialConfig
    from trainables.schema import from_dict

    with pytest.raises(UserError) as err:
        from_dict(TrialConfig, {"adapter": {"method": method, "init_weights": "gaussian"}})
    assert err.value.field == "adapter.init_weights" and "'lora'" in err.value.message
