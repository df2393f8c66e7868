"""Named target groups of the Llama-layout decoder families (Llama, Qwen2, Qwen3, Mistral, Gemma,
Gemma 2, Gemma 3 text), checked on each family's real architecture built from its transformers config
class on the meta device (real shapes, no weights)."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from transformers import (AutoModelForCausalLM, Gemma2Config, Gemma3TextConfig, GemmaConfig, LlamaConfig,
                          MistralConfig, Qwen2Config, Qwen3Config)

from trainables.adapters import build_adapter_model, check_adapter_targets, count_parameters
from trainables.config import AdapterConfig
from trainables.errors import UserError

#: Published configs (config.json on the hub) of one model per family.
FAMILIES = {
    "llama": (LlamaConfig, dict(  # meta-llama/Llama-3.2-1B
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True)),
    "qwen2": (Qwen2Config, dict(  # Qwen/Qwen2-0.5B
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)),
    "mistral": (MistralConfig, dict(  # mistralai/Mistral-7B-v0.1
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=32000)),
    "gemma": (GemmaConfig, dict(  # google/gemma-2b
        hidden_size=2048, intermediate_size=16384, num_hidden_layers=18, num_attention_heads=8,
        num_key_value_heads=1, head_dim=256, vocab_size=256000)),
    "gemma2": (Gemma2Config, dict(  # google/gemma-2-2b
        hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
        num_key_value_heads=4, head_dim=256, vocab_size=256000)),
    "qwen3": (Qwen3Config, dict(  # Qwen/Qwen3-0.6B
        hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
        num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True)),
    "gemma3_text": (Gemma3TextConfig, dict(  # google/gemma-3-1b-pt
        hidden_size=1152, intermediate_size=6912, num_hidden_layers=26, num_attention_heads=4,
        num_key_value_heads=1, head_dim=256, vocab_size=262144)),
}

GROUPS = {
    "qv": {"self_attn.q_proj", "self_attn.v_proj"},
    "attn": {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"},
    "mlp": {"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"},
    "all-linear": {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                   "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"},
}

#: LoRA r=8 on W_q and W_v: 8 x (d_in + d_out) per matrix, d_out of W_v = kv heads x head dim.
QV_R8 = {
    "llama": 16 * (8 * (2048 + 2048) + 8 * (2048 + 8 * 64)),      # 16 x 53,248
    "qwen2": 24 * (8 * (896 + 896) + 8 * (896 + 2 * 64)),         # head dim 896 / 14 = 64
    "mistral": 32 * (8 * (4096 + 4096) + 8 * (4096 + 8 * 128)),   # head dim 4096 / 32 = 128
    "gemma": 18 * (8 * (2048 + 8 * 256) + 8 * (2048 + 1 * 256)),
    "gemma2": 26 * (8 * (2304 + 8 * 256) + 8 * (2304 + 4 * 256)),
    "qwen3": 28 * (8 * (1024 + 16 * 128) + 8 * (1024 + 8 * 128)),  # q wider than the model: 16 x 128
    "gemma3_text": 26 * (8 * (1152 + 4 * 256) + 8 * (1152 + 1 * 256)),
}


def on_meta(family: str):
    cls, kwargs = FAMILIES[family]
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(cls(**kwargs))


def adapted(model) -> list[str]:
    """The names of the modules peft put a LoRA pair on, without the layer prefix."""
    return [re.sub(r"^.*\.layers\.\d+\.", "", name.removesuffix(".lora_A"))
            for name, _ in model.named_modules() if name.endswith(".lora_A")]


@pytest.mark.parametrize("family", FAMILIES)
def test_each_group_selects_its_projections_in_every_layer(family):
    skeleton = on_meta(family)
    assert skeleton.config.model_type == family
    check_adapter_targets(skeleton, list(GROUPS))
    layers = FAMILIES[family][1]["num_hidden_layers"]
    for group, expected in GROUPS.items():
        model = build_adapter_model(copy.deepcopy(skeleton), AdapterConfig(r=8, alpha=16, targets=group))
        names = adapted(model)
        assert set(names) == expected, group
        assert len(names) == layers * len(expected), group  # every layer, nothing else (no lm_head)
        if group == "qv":
            assert count_parameters(model).trainable == QV_R8[family]


def test_llama_3_2_1b_counts_by_hand():
    # qv: 16 layers x (8 x (2048 + 2048) + 8 x (2048 + 512)) = 16 x 53,248
    assert QV_R8["llama"] == 851_968
    # all-linear: q, o 8 x 4096 each; k, v 8 x 2560 each; gate, up, down 8 x (2048 + 8192) each
    model = build_adapter_model(on_meta("llama"), AdapterConfig(r=8, alpha=16, targets="all-linear"))
    assert count_parameters(model).trainable == 16 * (2 * 32_768 + 2 * 20_480 + 3 * 81_920) == 5_636_096


def test_a_module_the_family_lacks_names_its_groups():
    with pytest.raises(UserError) as err:
        check_adapter_targets(on_meta("qwen2"), ["c_attn"])
    assert "no module named 'c_attn' in this qwen2 model" in err.value.message
    assert "'qv', 'attn', 'mlp' or 'all-linear'" in err.value.message
