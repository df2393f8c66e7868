"""The special tokens that start the instruction tasks' sequences are the tokenizer's own: what
it puts before a text it reads (``tokenizer(text)``: guanaco text under ``data.format text``
and the prompts in that form) or what the chat template writes (``apply_chat_template``: the
``chat`` format, sft, prompts in the template), once. Prepared by the tasks themselves
(``guanaco``, its TU Wien form of Llama 3 chat text, ``sft``) on a GPT-2 tokenizer (nothing
before a text; ``<|endoftext|>`` is its bos_token by name only) and on Llama 3.2's
(``<|begin_of_text|>`` before every text, and written by its chat template), in process,
without a model. Expected ids: the special tokens' ids read from the tokenizer's own files,
and each text's tokens as the tokenizer gives them alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import real_layouts
from trainables.offline.tiny_llama import CHAT_TEMPLATE as LLAMA3_TEMPLATE

#: A template that writes no BOS (ChatML's turns).
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
QUESTION, ANSWER = "Hello world", "The quick brown fox jumps."
TURNS = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": ANSWER}]
GUANACO = f"### Human: {QUESTION}### Assistant: {ANSWER}"


def _folder(root: Path, name: str, template: str) -> Path:
    """A tokenizer folder in a release's layout with ``template`` as its chat template."""
    out = root / name
    if name.startswith("gpt2"):
        real_layouts.gpt2_tokenizer(out)
        (out / "config.json").write_text(json.dumps({"model_type": "gpt2"}))  # picks GPT-2's tokenizer class
    else:
        real_layouts.llama_3_2_tokenizer(out)
    config = json.loads((out / "tokenizer_config.json").read_text())
    (out / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": template}))
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("leading_tokens")
    return {"gpt2": _folder(root, "gpt2", CHATML), "llama": _folder(root, "llama", LLAMA3_TEMPLATE),
            "llama-chatml": _folder(root, "llama-chatml", CHATML)}


def special_id(folder: Path, token: str) -> int:
    """``token``'s id in the folder's vocabulary (vocab.json, else tokenizer.json's added tokens)."""
    if (folder / "vocab.json").is_file():
        return json.loads((folder / "vocab.json").read_text())[token]
    added = json.loads((folder / "tokenizer.json").read_text())["added_tokens"]
    return next(t["id"] for t in added if t["content"] == token)


def config_token(folder: Path, role: str) -> str:
    return json.loads((folder / "tokenizer_config.json").read_text())[f"{role}_token"]


def pieces(folder: Path, text: str) -> list[int]:
    """``text``'s tokens as the folder's tokenizer gives them alone."""
    from transformers import AutoTokenizer

    return list(AutoTokenizer.from_pretrained(folder)(text, add_special_tokens=False)["input_ids"])


def prepared(task: str, folder: Path, tmp_path: Path, rows: list[dict], **data):
    """What ``task`` prepares from ``rows`` (train and eval files) with the model at ``folder``;
    the fixed prompt is QUESTION."""
    from trainables.config import TrialConfig
    from trainables.schema import from_dict
    from trainables.tasks.registry import get_task

    source = tmp_path / "data"
    source.mkdir(parents=True)
    for name in ("train.jsonl", "eval.jsonl"):
        (source / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"id": "q", "prompt": QUESTION}) + "\n")
    cfg = from_dict(TrialConfig, {"task": task, "model": {"name_or_path": str(folder)},
                                  "data": {"source": str(source), **data},
                                  "eval": {"prompts": str(tmp_path / "prompts.jsonl")}})
    t = get_task(task)
    return t.load_prepared(t.prepare(cfg, progress=False), cfg)


def first(examples) -> tuple[list[int], list[int]]:
    ids, mask = examples[0]
    return [int(i) for i in ids], [int(m) for m in mask]


# --------------------------------------------------------------------------- GPT-2


def test_gpt2_guanaco_text_and_its_prompts_start_with_the_text_as_its_tokenizer_adds_nothing(folders, tmp_path):
    """data.format text: the text's tokens and <|endoftext|> after them (GPT-2's eos), nothing
    before: GPT-2's tokenizer puts no token before a text, though its bos_token is named."""
    folder = folders["gpt2"]
    eot = special_id(folder, "<|endoftext|>")
    data = prepared("guanaco", folder, tmp_path, [{"text": GUANACO}], format="text")
    ids, mask = first(data.train)
    assert ids == pieces(folder, GUANACO) + [eot] and all(mask)
    assert data.test["prompt_style"] == "guanaco"
    assert data.test["prompt_ids"] == [pieces(folder, f"### Human: {QUESTION}### Assistant:")]
    assert eot not in data.test["prompt_ids"][0] and eot not in ids[:-1]


@pytest.mark.parametrize("task", ["guanaco", "sft"])
def test_gpt2_chat_is_what_its_template_writes_and_the_loss_is_on_the_answer_alone(folders, tmp_path, task):
    """ChatML writes no BOS: the conversation and the prompt are the rendered text's tokens
    (as apply_chat_template gives them); the labelled tokens are the answer and its turn end."""
    from transformers import AutoTokenizer

    folder = folders["gpt2"]
    data = prepared(task, folder, tmp_path, [{"messages": TURNS}], holdout_size=None)
    ids, mask = first(data.train)
    user = f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    assert ids == pieces(folder, f"{user}{ANSWER}<|im_end|>\n")
    assert ids == list(AutoTokenizer.from_pretrained(folder).apply_chat_template(TURNS, tokenize=True,
                                                                                 return_dict=False))
    assert [i for i, m in zip(ids, mask) if m] == pieces(folder, f"{ANSWER}<|im_end|>\n")
    assert mask == [0] * len(pieces(folder, user)) + [1] * (len(ids) - len(pieces(folder, user)))
    assert data.test["prompt_ids"] == [pieces(folder, user)]
    assert special_id(folder, "<|endoftext|>") not in ids + data.test["prompt_ids"][0]


# --------------------------------------------------------------------------- Llama 3.2


def test_llama_guanaco_text_and_its_prompts_start_with_one_begin_of_text(folders, tmp_path):
    """Llama's tokenizer puts <|begin_of_text|> (its config's bos_token) before every text:
    the guanaco text and its prompt start with it, once; <|end_of_text|> ends the text."""
    folder = folders["llama"]
    bos, eos = special_id(folder, config_token(folder, "bos")), special_id(folder, config_token(folder, "eos"))
    data = prepared("guanaco", folder, tmp_path, [{"text": GUANACO}], format="text")
    ids, mask = first(data.train)
    assert ids == [bos] + pieces(folder, GUANACO) + [eos] and all(mask)
    assert data.test["prompt_ids"] == [[bos] + pieces(folder, f"### Human: {QUESTION}### Assistant:")]


def test_llama_chat_text_as_published_keeps_its_own_begin_of_text_alone(folders, tmp_path):
    """The TU Wien mixture's rows are Llama 3 chat text that starts with <|begin_of_text|>:
    under data.format text it is not doubled (their tokenizer(text) doubled it); under chat,
    the loss is on the answer and its <|eot_id|>. The prompts are put in the chat template,
    which writes BOS once."""
    folder = folders["llama"]
    bos, eos = special_id(folder, config_token(folder, "bos")), special_id(folder, config_token(folder, "eos"))
    eot = special_id(folder, "<|eot_id|>")
    head = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
    text = (f"{head}{QUESTION}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n{ANSWER}<|eot_id|>")
    data = prepared("guanaco", folder, tmp_path / "text", [{"text": text}], format="text")
    ids, _ = first(data.train)
    assert ids == pieces(folder, text) + [eos] and ids[0] == bos and ids.count(bos) == 1
    assert data.test["prompt_style"] == "chat"
    prompt = pieces(folder, f"{head}{QUESTION}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert data.test["prompt_ids"] == [prompt] and prompt[0] == bos and prompt.count(bos) == 1
    ids, mask = first(prepared("guanaco", folder, tmp_path / "chat", [{"text": text}], format="chat").train)
    assert ids == pieces(folder, text) and [i for i, m in zip(ids, mask) if m] == pieces(folder, ANSWER) + [eot]


@pytest.mark.parametrize("task", ["guanaco", "sft"])
def test_llama_chat_has_the_begin_of_text_its_template_writes_once(folders, tmp_path, task):
    """Llama 3's template writes {{ bos_token }} and the tokenizer would add another: the
    conversation and the prompt start with one, as apply_chat_template gives them; the loss
    is on the answer and <|eot_id|> alone."""
    from transformers import AutoTokenizer

    folder = folders["llama"]
    bos, eot = special_id(folder, config_token(folder, "bos")), special_id(folder, "<|eot_id|>")
    data = prepared(task, folder, tmp_path, [{"messages": TURNS}], holdout_size=None)
    ids, mask = first(data.train)
    user = (f"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{QUESTION}<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert ids == pieces(folder, f"{user}{ANSWER}<|eot_id|>") and ids[0] == bos and ids.count(bos) == 1
    assert ids == list(AutoTokenizer.from_pretrained(folder).apply_chat_template(TURNS, tokenize=True,
                                                                                 return_dict=False))
    assert mask == [0] * len(pieces(folder, user)) + [1] * (len(pieces(folder, ANSWER)) + 1)
    assert [i for i, m in zip(ids, mask) if m] == pieces(folder, ANSWER) + [eot]
    assert data.test["prompt_ids"] == [pieces(folder, user)]


def test_a_template_without_bos_is_tokenised_as_it_writes_on_a_bos_adding_tokenizer(folders, tmp_path):
    """The chat format follows the template (as apply_chat_template does), not the tokenizer's
    own BOS: a ChatML template on Llama's tokenizer gives no <|begin_of_text|>."""
    from transformers import AutoTokenizer

    folder = folders["llama-chatml"]
    bos = special_id(folder, config_token(folder, "bos"))
    ids, _ = first(prepared("sft", folder, tmp_path, [{"messages": TURNS}], holdout_size=None).train)
    assert ids == pieces(folder, f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n{ANSWER}"
                                 "<|im_end|>\n")
    assert ids == list(AutoTokenizer.from_pretrained(folder).apply_chat_template(TURNS, tokenize=True,
                                                                                 return_dict=False))
    assert bos not in ids


def test_the_tiny_llama_tokenizer_puts_begin_of_text_before_a_text_as_llama_3s_does(tmp_path):
    """The offline Llama stand-in reads a text as Llama 3.2's tokenizer does (its
    tokenizer.json's post-processor), so the instruction tasks start its texts as a real
    Llama's."""
    from transformers import AutoTokenizer

    from trainables.offline.tiny_llama import train_llama_tokenizer

    folder = train_llama_tokenizer(real_layouts.TEXT, tmp_path / "tok", vocab_size=400)
    tok = AutoTokenizer.from_pretrained(folder)
    bos = special_id(folder, config_token(folder, "bos"))
    assert tok("Hello world")["input_ids"] == [bos] + pieces(folder, "Hello world")
