"""Our loading, adapting, decoding and export code on model folders laid out as the real hub
releases are (``tests/real_layouts.py``: Llama 3.2's bfloat16 shards, tied embeddings,
sampling generation config and BOS-adding tokenizer; GPT-2's pytorch_model.bin-only folder;
RoBERTa's 514 positions; DeBERTa v3's projection names and missing pooler), with small hidden
sizes, in process (no Ray)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

import real_layouts
from trainables.config import TrialConfig
from trainables.errors import UserError
from trainables.schema import from_dict
from trainables.tasks.registry import get_task

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def folders(tmp_path_factory, torch_one_thread):
    root = tmp_path_factory.mktemp("real_layouts")
    return {"llama": real_layouts.llama_3_2(root / "llama-3.2"), "gpt2": real_layouts.gpt2(root / "gpt2"),
            "gpt2-bin": real_layouts.gpt2(root / "gpt2-bin", bin_only=True),
            "roberta": real_layouts.roberta(root / "roberta"), "deberta": real_layouts.deberta_v3(root / "deberta")}


def trial(task: str, folder: Path, **sections) -> TrialConfig:
    model = {"name_or_path": str(folder), **sections.pop("model", {})}
    return from_dict(TrialConfig, {"task": task, "model": model, **sections})


def adapted(task: str, folder: Path, **sections):
    from trainables.adapters import build_adapter_model

    cfg = trial(task, folder, **sections)
    t = get_task(task)
    model, tokenizer = t.load_model(cfg)
    return t, cfg, build_adapter_model(model, cfg.adapter, task_type=t.peft_task_type), tokenizer


# --------------------------------------------------------------------------- dtype


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_bfloat16_checkpoint_loads_in_model_dtype(folders, dtype):
    """transformers 5 loads a checkpoint in its own dtype by default (``dtype="auto"``):
    Llama 3.2's config says bfloat16. The base is in ``model.dtype`` whatever the files hold."""
    model, _ = get_task("e2e").load_model(trial("e2e", folders["llama"], model={"dtype": dtype}))
    assert {p.dtype for p in model.parameters()} == {getattr(torch, dtype)}


def test_a_head_over_a_half_precision_base_trains_in_float32(folders):
    """A float16 RoBERTa under fp16 autocast: LoRA and the classifier head peft trains in full
    are float32 (the gradient scaler refuses to unscale float16 gradients), the frozen base
    stays float16, and a bfloat16 base without autocast (precision fp32) runs its float32 head
    on the encoder's bfloat16 output."""
    from trainables.devices import Precision

    for dtype, precision in (("float16", "fp16"), ("bfloat16", "fp32")):
        task, cfg, model, tokenizer = adapted("glue-sst2", folders["roberta"], model={"dtype": dtype},
                                              train={"precision": precision})
        trained = {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}
        assert any("classifier" in n for n in trained) and set(trained.values()) == {torch.float32}
        assert {p.dtype for p in model.parameters() if not p.requires_grad} == {getattr(torch, dtype)}
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-3)
        batch = task.collate(tokenizer)([(tokenizer("the quick fox")["input_ids"], 1, 0),
                                         (tokenizer("hello world")["input_ids"], 0, 1)])
        prec = Precision(precision, CPU)
        before = [p.detach().clone() for p in params]
        with prec.autocast():
            loss = task.train_loss(model, batch, cfg)
        prec.backward(loss)
        assert prec.step(optimizer, params, 1.0)
        assert all(not torch.equal(a, p) for a, p in zip(before, params) if p.grad is not None and p.grad.any())


def test_full_fine_tuning_of_float16_weights_under_fp16_is_refused():
    """Full fine-tuning trains the base's own weights: in float16 their gradients are float16,
    which torch's gradient scaler refuses to unscale (a ValueError at the first step)."""
    with pytest.raises(UserError) as err:
        trial("glue-sst2", Path("roberta-base"), model={"dtype": "float16"}, adapter={"method": "full"},
              train={"precision": "fp16"})
    assert err.value.field == "model.dtype" and "float32" in err.value.message
    trial("glue-sst2", Path("roberta-base"), model={"dtype": "float32"}, adapter={"method": "full"},
          train={"precision": "fp16"})


# --------------------------------------------------------------------------- decoding


def _greedy(model, ids: list[int], steps: int, eos: int) -> list[int]:
    """Greedy continuation by hand: the argmax of the next-token logits, one token at a time."""
    out = list(ids)
    with torch.no_grad():
        for _ in range(steps):
            nxt = int(model(input_ids=torch.tensor([out])).logits[0, -1].argmax())
            out.append(nxt)
            if nxt == eos:
                break
    return out[len(ids):]


@pytest.mark.parametrize("name", ["llama", "gpt2-bin"])
def test_greedy_decoding_ignores_the_checkpoints_sampling_settings(folders, name):
    """Llama 3.2's generation_config.json samples (do_sample, temperature 0.6, top_p 0.9) and
    GPT-2's config has task_specific_params that sample: eval with num_beams 1 decodes greedily
    anyway, the same texts under any torch seed, those of an argmax loop."""
    from trainables.config import EvalConfig
    from trainables.tasks.causal_lm import generate

    model, tokenizer = get_task("e2e").load_model(trial("e2e", folders[name]))
    model.eval()
    prompts = [tokenizer("The quick brown")["input_ids"], tokenizer("name[Alimentum], area")["input_ids"]]
    ev = from_dict(EvalConfig, {"num_beams": 1, "max_new_tokens": 6, "batch_size": 1, "no_repeat_ngram_size": 0})
    texts = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        texts.append(generate(model, tokenizer, prompts, ev, device=CPU))
    expected = [" ".join(tokenizer.decode(_greedy(model, p, 6, tokenizer.eos_token_id),
                                          skip_special_tokens=True).split()) for p in prompts]
    assert texts[0] == texts[1] == expected


def _e2e_files(directory: Path) -> Path:
    rows = [("name[Alimentum], area[city centre]", "Alimentum is in the city centre."),
            ("name[Blue Spice], eatType[pub]", "Blue Spice is a pub.")]
    directory.mkdir()
    for name in ("trainset.csv", "devset.csv", "testset_w_refs.csv"):
        with open(directory / name, "w", newline="") as fh:
            csv.writer(fh).writerows([("mr", "ref"), *rows])
    return directory


def test_e2e_prompts_start_with_the_bos_the_llama_tokenizer_adds_and_gpt2_gets_none(folders, tmp_path):
    """Llama's tokenizer.json puts <|begin_of_text|> before every text; the task tokenises
    without special tokens, so it puts it there itself, once. GPT-2's tokenizer adds nothing:
    its prompt is the MR's tokens and <|endoftext|>, as in the LoRA paper."""
    data = _e2e_files(tmp_path / "e2e")
    task = get_task("e2e")
    for name in ("llama", "gpt2"):
        cfg = trial("e2e", folders[name], data={"source": str(data), "max_length": 128}, eval={"meteor": False})
        prepared = task.load_prepared(task.prepare(cfg, progress=False), cfg)
        _, tokenizer = task.load_model(cfg)
        mr = tokenizer("name : Alimentum | area : city centre", add_special_tokens=False)["input_ids"]
        ids, n_prompt = prepared.train[0]
        lead = [tokenizer.bos_token_id] if name == "llama" else []
        assert list(ids[:n_prompt]) == lead + mr + [tokenizer.eos_token_id]
        assert prepared.test["prompts"][0] == lead + mr + [tokenizer.eos_token_id]


def test_squad_prompts_start_with_one_bos_within_max_length(folders):
    from trainables.models import load_tokenizer
    from trainables.tasks.squad import Encoder, Question, encode_split

    tokenizer = load_tokenizer(trial("squad", folders["llama"]))
    context = "The quick brown fox jumps over the lazy dog near the river bank. " * 3
    q = Question("1", context, "Where does the fox jump?", ("over the lazy dog",), (context.index("over"),))
    whole = encode_split(Encoder(tokenizer, "tags"), [q], max_length=512, reserve=None, progress=False, desc="t")
    (prompt,), (target,) = whole[0], whole[1]
    assert prompt[0] == tokenizer.bos_token_id and tokenizer.bos_token_id not in prompt[1:]
    tight = len(prompt) + len(target) - 5  # the context must give up 5 tokens
    (short,), (_,), _, counts = encode_split(Encoder(tokenizer, "tags"), [q], max_length=tight, reserve=None,
                                             progress=False, desc="t")
    assert short[0] == tokenizer.bos_token_id and counts["shortened"] == 1
    assert len(short) + len(target) <= tight


def test_instruction_encodings_hold_one_bos_with_the_llama_tokenizer(folders):
    """The chat template writes <|begin_of_text|> and the tokenizer would add another: the
    instruction tasks tokenise without special tokens, so a conversation, a prompt and a
    plain text (data.format text, EOS after it) each start with exactly one."""
    from trainables.models import load_tokenizer
    from trainables.offline.tiny_llama import CHAT_TEMPLATE
    from trainables.tasks.chat import prompt_ids
    from trainables.tasks.guanaco import encode_conversation, encode_text

    tokenizer = load_tokenizer(trial("guanaco", folders["llama"]))
    tokenizer.chat_template = CHAT_TEMPLATE  # Llama 3 Instruct's turns
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    turns = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hello world"}]
    text, _ = encode_text(tokenizer, "### Human: Hello### Assistant: Hello world", None)
    for ids in (text, encode_conversation(tokenizer, turns)[0], prompt_ids(tokenizer, turns[:1], "chat")):
        assert ids[0] == bos and bos not in ids[1:]
    assert text[-1] == eos


# --------------------------------------------------------------------------- positions, targets


def test_roberta_holds_512_tokens_of_its_514_positions(folders):
    """RoBERTa's table has max_position_embeddings = 514 rows, and positions count from
    padding_idx + 1 = 2: 512 tokens fit, 513 do not."""
    from sweeps.checks import check_max_length

    skeleton = get_task("glue-sst2").skeleton(trial("glue-sst2", folders["roberta"]))
    check_max_length(skeleton, [512])
    with pytest.raises(UserError) as err:
        check_max_length(skeleton, [513])
    assert err.value.field == "data.max_length" and "this model's 512 positions" in err.value.message


def test_deberta_v3_groups_adapt_its_projections_and_train_its_pooler_with_the_head(folders):
    """DeBERTa v2/v3 names W_q, W_k, W_v query_proj, key_proj, value_proj. LoRA r=8 on qv: 2
    layers x 2 matrices x 8 x (32 + 32) = 2,048. Its ContextPooler (pooler.dense, 32 x 32 + 32)
    is not in the released checkpoint, so it trains in full with the classifier (32 x 2 + 2).
    Its tokenizer is the release's spm.model alone: [CLS] (piece 1) text [SEP] (piece 2)."""
    from trainables.adapters import check_adapter_targets, count_parameters

    folder = folders["deberta"]
    check_adapter_targets(get_task("glue-sst2").skeleton(trial("glue-sst2", folder)), ["qv", "qkvo", "all-linear"])
    _, _, model, tokenizer = adapted("glue-sst2", folder, adapter={"targets": "qv", "r": 8})
    ids = tokenizer("The quick brown fox")["input_ids"]
    assert (ids[0], ids[-1], tokenizer.pad_token_id) == (1, 2, 0) and len(ids) > 3
    lora = sorted({n.split(".")[-4] for n, _ in model.named_parameters() if ".lora_A." in n})
    assert lora == ["query_proj", "value_proj"]
    assert any("pooler.modules_to_save" in n and p.requires_grad for n, p in model.named_parameters())
    assert count_parameters(model).trainable == 2 * 2 * 8 * (32 + 32) + (32 * 32 + 32) + (32 * 2 + 2)


# --------------------------------------------------------------------------- export, cache


def _merged_export(model, tokenizer, cfg, tmp_path):
    """``model``'s adapter with a random update (not peft's zero one) saved and exported
    with --merge into tmp_path/stage; returns a prompt's ids and the adapter model's float32
    logits on them."""
    from sweeps.export import write

    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "lora_embedding_" in name:  # peft starts an embedding's A at zero
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    model.eval().save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([tokenizer("The quick brown fox")["input_ids"]])
    with torch.no_grad():
        expected = model(input_ids=ids).logits.float()
    (tmp_path / "stage").mkdir()
    meta = {"method": "lora", "base_loading": {"auto_class": "AutoModelForCausalLM", "kwargs": {}}}
    write(tmp_path / "stage", tmp_path / "adapter", cfg, meta, merge=True)
    return ids, expected


@pytest.mark.parametrize("targets", ["q_proj,v_proj,lm_head", "q_proj,embed_tokens"])
def test_merged_export_of_an_lm_head_adapter_on_tied_embeddings_computes_what_the_adapter_does(folders, tmp_path,
                                                                                             targets):
    """Llama 3.2 ties lm_head to embed_tokens. Merged into the shared tensor, a LoRA on lm_head
    would also move every input embedding (and one on embed_tokens every output row); the
    export unties them first, so the merged model loaded with plain from_pretrained gives the
    adapter's logits."""
    from transformers import AutoModelForCausalLM

    task, cfg, model, tokenizer = adapted("e2e", folders["llama"], adapter={"targets": targets, "r": 4, "alpha": 8})
    ids, expected = _merged_export(model, tokenizer, cfg, tmp_path)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "stage", dtype=torch.float32).eval()
    with torch.no_grad():
        got = merged(input_ids=ids).logits
    assert float((got - expected).abs().max()) < 1e-4


#: The sweep's decoding settings, as a study file's ``eval`` section would write them.
TRIAL_EVAL = {"num_beams": 3, "length_penalty": 0.7, "no_repeat_ngram_size": 2, "max_new_tokens": 5}
LORA = {"method": "lora", "base_loading": {"auto_class": "AutoModelForCausalLM", "kwargs": {}}}


def _card_model(card: str, directory: Path):
    """The model the card's loading code (its Python block) gives, run as it stands."""
    code = card.split("## Loading", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(code.replace("'<this directory>'", repr(str(directory))), scope)  # noqa: S102
    return scope["model"].eval()


def test_an_export_decodes_by_default_as_its_trial_did_in_the_trials_dtype(folders, tmp_path):
    """Llama 3.2's generation_config.json samples (do_sample, temperature 0.6, top_p 0.9) and its
    config.json says bfloat16. The e2e trial (model.dtype float32) decodes by beam search with the
    sweep's eval settings and stops at eos. Merged or not, the export's generation_config.json
    holds those settings, eos, pad (eos: the tokenizer has none) and the base's bos, and no
    sampling setting; generate() with its defaults, on the merged model and on the adapter loaded
    by its card's code, gives the tokens of generate() with the trial's settings passed (and the
    text of the trial's own decoding), and the card's code loads the trial's float32."""
    import json
    from types import SimpleNamespace as NS

    from transformers import AutoModelForCausalLM

    from sweeps.export import model_card, write
    from trainables.tasks.causal_lm import generate

    task, cfg, model, tokenizer = adapted("e2e", folders["llama"], adapter={"targets": "q_proj,v_proj", "r": 4},
                                          eval=TRIAL_EVAL)
    ids, _ = _merged_export(model, tokenizer, cfg, tmp_path)
    (tmp_path / "plain").mkdir()
    write(tmp_path / "plain", tmp_path / "adapter", cfg, LORA, merge=False)
    release = json.loads((folders["llama"] / "config.json").read_text())
    eos = release["eos_token_id"]
    trials = {**TRIAL_EVAL, "do_sample": False, "eos_token_id": eos, "pad_token_id": eos}
    for out in ("stage", "plain"):
        written = json.loads((tmp_path / out / "generation_config.json").read_text())
        expected = {**trials, "bos_token_id": release["bos_token_id"]}
        assert {k: written.get(k) for k in expected} == expected, out
        assert not written.keys() & {"temperature", "top_p"}, out

    run = NS(info=NS(run_id="0" * 32, run_name="t"), data=NS(tags={}, params={}, metrics={}))
    loaded = {"merged": AutoModelForCausalLM.from_pretrained(tmp_path / "stage").eval(),
              "merged card": _card_model(model_card(run, None, cfg, LORA, merged=True, directory=tmp_path / "stage"),
                                         tmp_path / "stage"),
              "adapter card": _card_model(model_card(run, None, cfg, LORA, merged=False, directory=tmp_path / "plain"),
                                          tmp_path / "plain")}

    def tokens(m, **explicit):
        torch.manual_seed(0)
        with torch.no_grad():
            return m.generate(ids, attention_mask=torch.ones_like(ids), **explicit)

    for name, m in loaded.items():
        assert {p.dtype for p in m.parameters()} == {torch.float32}, name
        got = tokens(m)
        assert torch.equal(got, tokens(m, **trials)), name
        text = " ".join(tokenizer.decode(got[0, ids.shape[1]:], skip_special_tokens=True).split())
        assert generate(m, tokenizer, [ids[0].tolist()], cfg.eval, device=CPU) == [text], name


def test_an_instruction_export_stops_at_the_end_of_turn_and_a_greedy_one_has_no_beam_settings(folders, tmp_path):
    """The instruction tasks' answers end at eos or at <|eot_id|>; decoded greedily (num_beams 1)
    with the default length_penalty 0.9, which greedy search never reads (and transformers
    refuses to save beside num_beams 1). A classifier generates nothing: no generation_config.json."""
    import json

    from sweeps.export_loading import save_generation_config
    from trainables.models import load_tokenizer

    cfg = trial("guanaco", folders["llama"], eval={"num_beams": 1, "max_new_tokens": 7})
    tokenizer = load_tokenizer(cfg)
    vocab = json.loads((folders["llama"] / "tokenizer.json").read_text())["model"]["vocab"]
    assert save_generation_config(tmp_path, cfg, tokenizer)
    written = json.loads((tmp_path / "generation_config.json").read_text())
    assert written["eos_token_id"] == [vocab["<|end_of_text|>"], vocab["<|eot_id|>"]]
    assert (written["num_beams"], written["max_new_tokens"], written["do_sample"]) == (1, 7, False)
    assert "length_penalty" not in written
    (tmp_path / "cls").mkdir()
    assert not save_generation_config(tmp_path / "cls", trial("glue-sst2", folders["roberta"]), tokenizer)
    assert list((tmp_path / "cls").iterdir()) == []


def test_weight_files_of_a_full_hub_download_are_not_read_to_identify_it(folders, tmp_path):
    """A full download of gpt2 or roberta-base holds rust_model.ot, tf_model.h5 and
    flax_model.msgpack beside model.safetensors: hundreds of MB each, none of them config."""
    import shutil

    from trainables.cache import local_model_identity

    folder = shutil.copytree(folders["gpt2"], tmp_path / "gpt2")
    for name in ("rust_model.ot", "tf_model.h5", "flax_model.msgpack", "64.tflite"):
        (folder / name).write_bytes(b"\0" * 16)
    assert set(local_model_identity(folder)) == {"config.json", "generation_config.json", "merges.txt",
                                                 "tokenizer.json", "tokenizer_config.json", "vocab.json"}


@pytest.fixture(scope="module")
def llama_in_4_bits(folders, tmp_path_factory):
    """The Llama 3.2 folder saved quantised, as unsloth/Llama-3.2-1B-bnb-4bit is: NF4, double
    quantisation, bfloat16 compute, the quantization_config in its config.json."""
    import shutil

    pytest.importorskip("bitsandbytes")
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    out = tmp_path_factory.mktemp("bnb") / "llama-3.2-bnb-4bit"
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.bfloat16)
    AutoModelForCausalLM.from_pretrained(folders["llama"], quantization_config=bnb,
                                         device_map={"": "cpu"}).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(folders["llama"] / name, out / name)
    return out


def test_a_base_saved_in_4_bits_needs_nf4_and_its_merged_export_is_dequantised(llama_in_4_bits, tmp_path):
    """Such a base loads in 4 bits whatever model.quantization says: 'none' is refused before
    launch. --merge dequantises it (saving a merged 4-bit model fails in transformers) into the
    weights the trial's 4-bit layers computed with: plain Linear layers, no quantization_config,
    the adapter's logits up to the trial's bfloat16 compute (8 significant bits: within 4 x 2^-8
    of the logits' scale)."""
    import json

    from transformers import AutoModelForCausalLM

    from trainables.quantization import check_quantization

    skeleton = get_task("e2e").skeleton(trial("e2e", llama_in_4_bits))
    with pytest.raises(UserError) as err:
        check_quantization([trial("e2e", llama_in_4_bits)], skeleton)
    assert err.value.field == "model.quantization" and "accepted: nf4" in err.value.message
    task, cfg, model, tokenizer = adapted("e2e", llama_in_4_bits, model={"quantization": "nf4"},
                                          adapter={"targets": "q_proj,v_proj", "r": 4, "alpha": 8})
    check_quantization([cfg], skeleton)
    ids, expected = _merged_export(model, tokenizer, cfg, tmp_path)
    assert "quantization_config" not in json.loads((tmp_path / "stage" / "config.json").read_text())
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "stage", dtype=torch.float32).eval()
    assert type(merged.model.layers[0].self_attn.q_proj) is torch.nn.Linear
    with torch.no_grad():
        got = merged(input_ids=ids).logits
    assert float((got - expected).abs().max()) < 4 * 2 ** -8 * float(expected.abs().max())


def test_a_comparison_model_saved_in_4_bits_answers_unquantised_in_the_models_dtype(llama_in_4_bits):
    """eval.compare_models are loaded unquantised in model.dtype: a folder saved in 4 bits is
    dequantised (plain Linear layers in float32, no quantizer left)."""
    from trainables.tasks.answers import load_compare_model

    cfg = trial("guanaco", llama_in_4_bits, model={"dtype": "float32"})
    model, _ = load_compare_model(str(llama_in_4_bits), cfg, CPU)
    q_proj = model.model.layers[0].self_attn.q_proj
    assert type(q_proj) is torch.nn.Linear and q_proj.weight.dtype == torch.float32
    assert getattr(model, "hf_quantizer", None) is None


def _dry_run(folder: Path, tmp_path: Path, space: str, study: str = "rank_e2e") -> int:
    """``sweeps/<study>.py --preset smoke --dry-run`` over ``folder`` with the search space
    ``space`` (YAML), as the command runs it."""
    from sweeps.cli import run_study

    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "space.yaml").write_text(space)
    return run_study(study, ["--preset", "smoke", "--dry-run", "--model", str(folder), "--num-samples", "2",
                                  "--search-space", str(tmp_path / "space.yaml"), "--storage", str(tmp_path / "rr"),
                                  "--tracking-uri", f"sqlite:///{tmp_path / 'mlruns.db'}"])


@pytest.mark.parametrize("space, study", [
    ("scientific:\n  method: {choice: [qlora, lora]}\n", "rank_e2e"),  # model.quantization none
    ("scientific:\n  model.quantization: {choice: [nf4, none]}\n", "rank_e2e"),
    # QLoRA's preset: model.quantization nf4, method lora. No grid point (each with the first
    # sampled method, qlora) nor sampled method on the preset's nf4 asks for none: the grid's
    # none with the sampled lora does.
    ("scientific:\n  model.quantization: {grid: [nf4, none]}\n  method: {choice: [qlora, lora]}\n",
     "qlora_guanaco"),
], ids=["choice-method", "choice-quantization", "grid-quantization-x-choice-method"])
def test_every_sampled_value_is_checked_against_a_base_saved_in_4_bits(llama_in_4_bits, smoke_assets, tmp_path,
                                                                      capsys, space, study):
    """A trial that a sampled method or quantisation makes unquantised (lora, none) would load
    the 4-bit base in 4 bits all the same: the sweep is refused with one line, exit code 2,
    before anything is written."""
    if study == "qlora_guanaco":
        from trainables.offline.tiny_llama import ensure_assets

        ensure_assets()  # the preset's offline assets (data, its own model), built beforehand
        capsys.readouterr()
    assert _dry_run(llama_in_4_bits, tmp_path, space, study) == 2
    assert capsys.readouterr().err.strip() == (
        "error: model.quantization: this model is saved quantised (bitsandbytes: its config.json has a "
        "quantization_config) and loads quantised whatever model.quantization says; accepted: nf4 (or "
        "adapter.method=qlora)")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["space.yaml"]


def test_sampled_methods_over_a_base_saved_in_4_bits_plan_under_nf4(llama_in_4_bits, smoke_assets, tmp_path, capsys):
    space = "scientific:\n  method: {choice: [lora, qlora]}\nfixed:\n  model.quantization: nf4\n"
    assert _dry_run(llama_in_4_bits, tmp_path, space) == 0
    assert '"n_trials": 2' in capsys.readouterr().out


def _saved_quantised(folders, out: Path, quantization_config) -> Path:
    """The Llama 3.2 folder saved by transformers under ``quantization_config`` (a
    ``BitsAndBytesConfig``), or with a ``quantization_config`` dict written into its config.json
    as a GPTQ or AWQ release on the hub has it (their libraries do not install here)."""
    import json
    import shutil

    from transformers import AutoModelForCausalLM

    if isinstance(quantization_config, dict):
        shutil.copytree(folders["llama"], out)
        config = json.loads((out / "config.json").read_text())
        (out / "config.json").write_text(json.dumps({**config, "quantization_config": quantization_config}))
        return out
    AutoModelForCausalLM.from_pretrained(folders["llama"], quantization_config=quantization_config,
                                         device_map={"": "cpu"}).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(folders["llama"] / name, out / name)
    return out


GPTQ = {"bits": 4, "group_size": 128, "damp_percent": 0.01, "desc_act": True, "sym": True, "true_sequential": True,
        "model_name_or_path": None, "model_file_base_name": "model", "quant_method": "gptq"}
AWQ = {"quant_method": "awq", "zero_point": True, "group_size": 128, "bits": 4, "version": "gemm"}


@pytest.mark.parametrize("saved, named", [
    ("8bit", "bitsandbytes, load_in_8bit"), ("fp4", "bitsandbytes, load_in_4bit, bnb_4bit_quant_type fp4"),
    (GPTQ, "gptq"), (AWQ, "awq")], ids=["bnb-8bit", "bnb-4bit-fp4", "gptq", "awq"])
def test_a_base_saved_quantised_otherwise_than_in_nf4_is_refused_under_nf4_and_none(folders, smoke_assets, tmp_path,
                                                                                     capsys, saved, named):
    """transformers loads a saved quantisation whatever BitsAndBytesConfig it is given (8 bits
    or FP4 then train under a trial that says nf4), or refuses one of another method (GPTQ,
    AWQ) as the trial loads it: refused before launch, naming the method as config.json
    spells it ("quant_method", and bitsandbytes' "load_in_8bit" or "bnb_4bit_quant_type")."""
    if saved in ("8bit", "fp4"):
        from transformers import BitsAndBytesConfig

        pytest.importorskip("bitsandbytes")
        saved = BitsAndBytesConfig(load_in_8bit=True) if saved == "8bit" else BitsAndBytesConfig(load_in_4bit=True)
    folder = _saved_quantised(folders, tmp_path / "saved", saved)
    capsys.readouterr()  # transformers' progress bars as it saves
    for quantization in ("nf4", "none"):
        space = f"scientific:\n  r: {{choice: [4, 8]}}\nfixed:\n  model.quantization: {quantization}\n"
        assert _dry_run(folder, tmp_path / quantization, space) == 2
        assert capsys.readouterr().err.strip() == (
            f"error: model.quantization: this model is saved quantised ({named}: its config.json has a "
            "quantization_config), which no model.quantization trains: none would load it as saved and nf4 cannot "
            "quantise it again; accepted: a base saved unquantised or in 4-bit NF4 (bitsandbytes, load_in_4bit, "
            "bnb_4bit_quant_type nf4)")
        assert sorted(f.name for f in (tmp_path / quantization).iterdir()) == ["space.yaml"]
