"""Fine-tuning methods as a search dimension (trainables/methods.py, sweeps/variants_glue.py).

* Each method builds with real peft on a tiny BERT classifier and takes real optimizer steps
  that change exactly the parameters it should (LoRA-FA: lora_A never; full: the base; PiSSA:
  the base is the residual and the step-0 forward is the base model's).
* LoRA+'s optimizer groups give B ``loraplus_lr_ratio`` times A's learning rate.
* Counting on the meta device (the parameter budget) agrees with the real model per method.
* Combinations a method cannot do are refused before launch, with one line naming both.
* ``variants_glue.py --preset smoke`` end to end (real Ray, real MLflow, one row per method)
  runs in ``test_export.py``, whose adapters of every method are loaded back.
"""

from __future__ import annotations

import dataclasses
import types

import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
)

from trainables.adapters import (
    build_adapter_model,
    check_adapter_methods,
    count_parameters,
)
from trainables.config import AdapterConfig, ModelConfig, TrainConfig, TrialConfig
from trainables.errors import UserError
from trainables.methods import METHODS, check_trial, get_method
from trainables.optim import build_optimizer
from trainables.schema import from_dict

BERT = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=32, num_labels=2)


def tiny_bert(seed: int = 0, meta: bool = False) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    if meta:
        with torch.device("meta"):
            return BertForSequenceClassification(BERT)
    return BertForSequenceClassification(BERT).eval()


def batch(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(1, 120, (4, 12), generator=g),
            "attention_mask": torch.ones(4, 12, dtype=torch.long),
            "labels": torch.tensor([0, 1, 1, 0])}


def adapter(method: str, **kw) -> AdapterConfig:
    r = 16 if method == "vera" else 4
    return AdapterConfig(method=method, r=r, alpha=8, dropout=0.0, targets="qv", **kw)


def train_steps(model, cfg: AdapterConfig, steps: int = 2) -> dict[str, torch.Tensor]:
    """Snapshot every parameter and buffer, take ``steps`` optimizer steps, return the snapshot."""
    before = {n: t.detach().clone() for n, t in [*model.named_parameters(), *model.named_buffers()]}
    opt = build_optimizer(model, TrainConfig(lr=1e-2, weight_decay=0.0), cfg)
    model.train()
    for _ in range(steps):
        model(**batch()).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return before


def changed(model, before) -> set[str]:
    now = dict([*model.named_parameters(), *model.named_buffers()])
    return {n for n, t in before.items() if not torch.equal(t, now[n].detach())}


@pytest.mark.parametrize("method", METHODS)
def test_each_method_builds_and_trains_exactly_its_parameters(method):
    cfg = adapter(method)
    model = build_adapter_model(tiny_bert(), cfg, task_type="seq_cls")
    params = count_parameters(model)
    meta = count_parameters(build_adapter_model(tiny_bert(meta=True), cfg, task_type="seq_cls"))
    assert (meta.trainable, meta.total) == (params.trainable, params.total)  # the budget's count
    before = train_steps(model, cfg)
    moved = changed(model, before)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert moved, "one optimizer step changed nothing"
    assert moved <= trainable, sorted(moved - trainable)[:3]  # no buffer, no frozen weight
    base = {n for n in moved if ".lora_" not in n and "vera_lambda" not in n and "classifier" not in n}
    if method == "full":
        assert params.trainable == params.total
        assert "bert.encoder.layer.0.attention.self.query.weight" in moved
        assert "bert.embeddings.word_embeddings.weight" in moved
        return
    assert not base, f"{method} changed frozen base weights: {sorted(base)[:3]}"
    assert any("classifier" in n for n in moved)  # the head trains with every method
    a = {n for n in before if "lora_A" in n}
    b = {n for n in before if "lora_B" in n}
    if method == "vera":
        assert not a and not b
        assert any("vera_lambda_b" in n for n in moved) and any("vera_lambda_d" in n for n in moved)
        assert not any("vera_A" in n or "vera_B" in n for n in moved)  # shared projections stay frozen
        per_layer = 16 + 32  # d (r values) + b (d_out values), for query and value of 2 layers
        head = sum(p.numel() for n, p in model.named_parameters() if "classifier" in n and p.requires_grad)
        assert params.trainable == 4 * per_layer + head
        return
    assert b and b <= moved, f"{method}: lora_B did not train"
    if method == "lora-fa":
        assert not a & moved and not any(p.requires_grad for n, p in model.named_parameters() if "lora_A" in n)
    else:
        assert a <= moved, f"{method}: lora_A did not train in two steps"
    if method == "dora":
        assert any("lora_magnitude_vector" in n for n in moved)


def test_trainable_counts_order_the_methods():
    counts = {m: count_parameters(build_adapter_model(tiny_bert(meta=True), adapter(m), task_type="seq_cls"))
              for m in ("full", "lora", "dora", "vera", "lora-fa")}
    t = {m: c.trainable for m, c in counts.items()}
    head = t["lora"] - 2 * 2 * 4 * (32 + 32)  # 2 layers x (q, v) x r=4 x (d_in + d_out)
    assert t["full"] == counts["full"].total
    assert t["lora-fa"] == head + 2 * 2 * 4 * 32  # only B (d_out x r)
    assert t["dora"] == t["lora"] + 2 * 2 * 32  # plus a magnitude per output row
    assert t["vera"] < t["lora-fa"] < t["lora"] < t["dora"] < t["full"]


def test_loraplus_gives_b_ratio_times_the_learning_rate_of_a():
    cfg = adapter("loraplus", loraplus_lr_ratio=16)
    model = build_adapter_model(tiny_bert(), cfg, task_type="seq_cls")
    opt = build_optimizer(model, TrainConfig(lr=1e-3, weight_decay=0.01), cfg)
    ids = {id(p): n for n, p in model.named_parameters()}
    lr_of = {ids[id(p)]: g["lr"] for g in opt.param_groups for p in g["params"]}
    a = [lr for n, lr in lr_of.items() if "lora_A" in n]
    b = [lr for n, lr in lr_of.items() if "lora_B" in n]
    assert len(a) == len(b) == 4
    assert a == [1e-3] * 4 and b == pytest.approx([16e-3] * 4)
    assert set(lr_of) == {n for n, p in model.named_parameters() if p.requires_grad}


def test_pissa_moves_the_principal_part_out_of_the_base_and_starts_at_the_base_model():
    x = batch()
    base = tiny_bert()
    with torch.no_grad():
        want = base(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits
    w0 = base.bert.encoder.layer[0].attention.self.query.weight.detach().clone()
    model = build_adapter_model(tiny_bert(), AdapterConfig(method="pissa", r=4, alpha=4, dropout=0.0,
                                                           targets="qv"), task_type="seq_cls")
    model.eval()
    layer = model.base_model.model.bert.encoder.layer[0].attention.self.query
    assert not torch.allclose(layer.base_layer.weight, w0, atol=1e-3)  # the residual W - BA
    with torch.no_grad():
        got = model(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    # ... and B A holds W's top singular directions: B A + residual = W.
    delta = layer.lora_B["default"].weight @ layer.lora_A["default"].weight * layer.scaling["default"]
    torch.testing.assert_close(layer.base_layer.weight + delta, w0, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", ["vera", "dora", "lora-fa"])
def test_a_trained_adapter_saves_and_reloads_onto_a_fresh_base(tmp_path, method):
    from trainables.adapters import load_adapter, save_adapter

    cfg = adapter(method)
    model = build_adapter_model(tiny_bert(), cfg, task_type="seq_cls")
    train_steps(model, cfg)
    model.eval()
    x = batch()
    with torch.no_grad():
        want = model(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits
    save_adapter(model, tmp_path / "a", meta={"method": method})
    again = load_adapter(tiny_bert(), tmp_path / "a").eval()
    with torch.no_grad():
        got = again(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits
    torch.testing.assert_close(got, want)


# --------------------------------------------------------------------------- rejected


def tiny_resnet():
    from transformers import ResNetConfig, ResNetForImageClassification

    with torch.device("meta"):
        return ResNetForImageClassification(ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16],
                                                         depths=[1, 1], num_labels=3))


def test_vera_on_a_conv2d_target_is_refused_naming_both():
    with pytest.raises(UserError) as e:
        check_adapter_methods(tiny_resnet(), [("lora", "convolution"), ("vera", "convolution")])
    msg = str(e.value)
    assert e.value.field == "adapter.method" and "\n" not in msg
    assert "'vera' cannot adapt Conv2d layers" in msg and "adapter.targets='convolution'" in msg
    assert "for Conv2d use 'lora', 'rslora', 'dora', 'loraplus' or 'qlora'" in msg
    with pytest.raises(UserError, match="'pissa' cannot adapt Conv2d"):
        build_adapter_model(tiny_resnet(), AdapterConfig(method="pissa", targets="convolution"),
                            task_type="seq_cls")
    build_adapter_model(tiny_resnet(), AdapterConfig(method="dora", targets="convolution"), task_type="seq_cls")


def test_olora_on_gpt2_conv1d_is_refused_but_the_qv_split_works():
    with torch.device("meta"):
        gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100, n_positions=32))
    with pytest.raises(UserError, match=r"'olora' cannot adapt Conv1D layers, and adapter.targets='c_attn'"):
        check_adapter_methods(gpt2, [("olora", "c_attn")])
    check_adapter_methods(gpt2, [("olora", "qv"), ("pissa", "c_attn"), ("vera", "c_attn")])


def _quantised(method: str):
    """A trial on a quantised base: ``model.quantization=nf4`` where that field exists (the
    qlora branch); until the merge, the same check on a config carrying it."""
    if "quantization" in {f.name for f in dataclasses.fields(ModelConfig)}:
        return {"model": {"quantization": "nf4"}, "adapter": {"method": method}}
    return types.SimpleNamespace(model=types.SimpleNamespace(quantization="nf4"),
                                 adapter=AdapterConfig(method=method), train=TrainConfig())


@pytest.mark.parametrize("method, ok", [("full", False), ("pissa", False), ("lora", True), ("dora", True),
                                        ("vera", True), ("qlora", True)])
def test_a_quantised_base_refuses_methods_that_cannot_train_on_it(method, ok):
    cfg = _quantised(method)
    run = (lambda: from_dict(TrialConfig, cfg)) if isinstance(cfg, dict) else (lambda: check_trial(cfg))
    if ok:
        run()
        return
    with pytest.raises(UserError) as e:
        run()
    assert e.value.field.endswith("adapter.method")
    assert f"'{method}' cannot train on model.quantization=nf4" in e.value.message
    assert get_method("qlora").quantizes and check_trial(TrialConfig(adapter=AdapterConfig(method="qlora"))) is None


@pytest.mark.parametrize("data, field, words", [
    ({"adapter": {"method": "lora_fa"}}, "adapter.method", ["did you mean 'lora-fa'", "'full'", "'qlora'"]),
    ({"adapter": {"method": "verra"}}, "adapter.method", ["did you mean 'vera'"]),
    ({"adapter": {"method": "full", "init_from": "/x"}}, "adapter.init_from", ["'full' has no adapter"]),
    ({"adapter": {"loraplus_lr_ratio": 0.5}}, "adapter.loraplus_lr_ratio", [">= 1"]),
])
def test_bad_method_settings_are_one_line_naming_the_field(data, field, words):
    with pytest.raises(UserError) as e:
        from_dict(TrialConfig, data)
    assert e.value.field == field and "\n" not in str(e.value)
    for w in words:
        assert w in e.value.message


@pytest.mark.parametrize("space, code, needle", [
    ("scientific:\n  method: {grid: [lora, olora]}\nfixed:\n  targets: c_attn\n", 2,
     "error: adapter.method: 'olora' cannot adapt Conv1D layers, and adapter.targets='c_attn'"),
    ("scientific:\n  method: {choice: [lora, vrea]}\n", 2, "did you mean 'vera'"),
    # A coupled grid is checked pair by pair: olora only ever meets the qv split's Linear views.
    ("scientific:\n  method+targets: {grid: [[olora, qv], [vera, c_attn]]}\n", 0, '"n_trials": 2'),
])
def test_a_sweep_checks_every_method_before_launch(tmp_path, capsys, smoke_assets, space, code, needle):
    from sweeps.cli import run_study

    path = tmp_path / "space.yaml"
    path.write_text(space)
    got = run_study("rank_e2e", ["--preset", "smoke", "--search-space", str(path), "--dry-run",
                                 "--storage", str(tmp_path / "rr"),
                                 "--tracking-uri", f"sqlite:///{tmp_path / 'mlruns.db'}"])
    out, err = capsys.readouterr()
    assert got == code, out[-2000:] + err[-2000:]
    assert needle in (err if code else out)
    if code:
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "mlruns.db").exists() and not (tmp_path / "rr").exists()


def test_the_study_presets_validate_every_method_of_every_part(tmp_path, capsys):
    """Every preset, all four tasks, without training: the paper spaces (the report's five
    methods, QLoRA on CoLA, VeRA at r=256) and all-methods' ten, checked against an encoder's
    skeleton shapes, here MiniLM's (no hub)."""
    from sweeps.cli import run_study

    common = ["--dry-run", "--task", "all", "--storage", str(tmp_path / "rr")]
    assert run_study("variants_glue", ["--preset", "smoke", *common]) == 0
    out = capsys.readouterr().out
    assert out.count('"n_trials": 7') == 4  # smoke: 7 methods, one seed, x 4 tasks
    local = ["--model", "minilm", "--data", "smoke:glue", *common]
    assert run_study("variants_glue", ["--preset", "paper", *local]) == 0
    out = capsys.readouterr().out
    # paper: 5 methods on MRPC, RTE and STS-B, and QLoRA too on CoLA (Table 1), one run each
    assert out.count('"n_trials": 5') == 3 and out.count('"n_trials": 6') == 1
    assert out.count('"qlora",') == 1 and "256" in out
    assert run_study("variants_glue", ["--preset", "all-methods", *local]) == 0
    assert capsys.readouterr().out.count('"n_trials": 10') == 4


# --------------------------------------------------------------------------- the study, end to end


def test_a_method_of_a_peft_type_no_config_is_built_for_is_refused_at_registration():
    """Registered as it is, a LoHa method would train plain LoRA under its name (peft_config
    builds a LoraConfig for every type but VeRA's and none)."""
    from trainables.methods import METHOD_REGISTRY, Method, register

    with pytest.raises(ValueError, match="peft_type 'loha' is not one that trainables.adapters.peft_config builds"):
        register(Method("loha-test", "LoHa", "Hyeon-Woo et al. 2022", "loha"))
    assert "loha-test" not in METHOD_REGISTRY
