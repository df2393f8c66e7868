"""Small model folders in the layout of real hub releases: the files each release ships, its
config.json fields as the release writes them (old ``torch_dtype``, ``rope_scaling``, no pad
token, ...), its tokenizer's special-token behaviour, with small hidden sizes and a tokenizer
trained on a few sentences. What differs from the tiny models the offline assets build is
what a real checkpoint would bring to our code; the ``from_pretrained`` path is the same.

* :func:`llama_3_2` (meta-llama/Llama-3.2-1B): bfloat16 weights sharded with
  ``model.safetensors.index.json``, ``tie_word_embeddings: true`` (no lm_head tensor),
  ``rope_scaling`` of type llama3, ``generation_config.json`` that samples (temperature 0.6,
  top_p 0.9), a ``tokenizer.json`` whose post-processor puts ``<|begin_of_text|>`` before
  every text, ``tokenizer_class: PreTrainedTokenizerFast`` and no pad token.
* :func:`gpt2` (openai-community/gpt2-medium): no ``torch_dtype``, n_ctx = n_positions = 1024,
  ``task_specific_params`` that sample, vocab.json + merges.txt and tokenizer.json, no pad token;
  ``bin_only``: the weights as ``pytorch_model.bin`` alone (older repositories).
* :func:`roberta` (FacebookAI/roberta-base): a RobertaForMaskedLM checkpoint (LM head, no
  classifier), max_position_embeddings 514, pad_token_id 1, type_vocab_size 1, no
  tokenizer_config.json.
* :func:`deberta_v3` (microsoft/deberta-v3-base): deberta-v2 config with relative attention,
  ``position_biased_input: false``, ``pos_att_type: "p2c|c2p"``; a masked-LM checkpoint
  (no pooler, no classifier). Its tokenizer is the release's: an ``spm.model`` (SentencePiece
  unigram; [PAD], [CLS], [SEP], [UNK] at 0-3) and a tokenizer_config.json that only says
  ``vocab_type: spm``, no tokenizer.json, so transformers converts it (with sentencepiece).
"""

from __future__ import annotations

import json
from pathlib import Path

TEXT = ["The quick brown fox jumps over the lazy dog near the river bank.",
        "name[Alimentum], area[city centre], familyFriendly[no] serves food.",
        "Hello world, this is a small corpus for a tiny tokenizer with some words."] * 40


def _bpe(special: list[str], vocab: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXT, trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return tok


def _json(out: Path, name: str, obj: dict) -> None:
    (out / name).write_text(json.dumps(obj, indent=2))


def _save(model, out: Path, config: dict, **kwargs) -> None:
    """The weights as ``save_pretrained`` writes them, under the release's own config.json."""
    model.save_pretrained(out, **kwargs)
    _json(out, "config.json", config)


LLAMA3_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                  "<|eot_id|>"]


def llama_3_2_tokenizer(out: Path):
    """Llama 3.2's tokenizer files alone (tokenizer.json, tokenizer_config.json); returns the
    ``tokenizers.Tokenizer``."""
    from tokenizers import processors

    out.mkdir(parents=True, exist_ok=True)
    tok = _bpe(LLAMA3_SPECIAL)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
        special_tokens=[("<|begin_of_text|>", bos)])
    tok.save(str(out / "tokenizer.json"))
    _json(out, "tokenizer_config.json", {
        "bos_token": "<|begin_of_text|>", "clean_up_tokenization_spaces": True, "eos_token": "<|end_of_text|>",
        "model_input_names": ["input_ids", "attention_mask"], "model_max_length": 131072,
        "tokenizer_class": "PreTrainedTokenizerFast"})
    return tok


def llama_3_2(out: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = llama_3_2_tokenizer(out)
    bos, eos = tok.token_to_id("<|begin_of_text|>"), tok.token_to_id("<|end_of_text|>")
    config = {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": bos, "eos_token_id": eos, "head_dim": 16, "hidden_act": "silu", "hidden_size": 64,
        "initializer_range": 0.02, "intermediate_size": 128, "max_position_embeddings": 131072,
        "mlp_bias": False, "model_type": "llama", "num_attention_heads": 4, "num_hidden_layers": 2,
        "num_key_value_heads": 2, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
        "transformers_version": "4.45.0.dev0", "use_cache": True, "vocab_size": tok.get_vocab_size()}
    torch.manual_seed(0)
    _save(LlamaForCausalLM(LlamaConfig(**config)).to(torch.bfloat16), out, config, max_shard_size="40KB")
    _json(out, "generation_config.json", {
        "_from_model_config": True, "bos_token_id": bos, "do_sample": True, "eos_token_id": eos,
        "temperature": 0.6, "top_p": 0.9, "transformers_version": "4.45.0.dev0"})
    return out


def gpt2_tokenizer(out: Path):
    """GPT-2's tokenizer files alone (tokenizer.json, vocab.json, merges.txt,
    tokenizer_config.json); returns the ``tokenizers.Tokenizer``. Its class (GPT-2's, whose
    bos, eos and unk are ``<|endoftext|>``) comes from config.json's ``model_type``."""
    out.mkdir(parents=True, exist_ok=True)
    tok = _bpe(["<|endoftext|>"])
    tok.save(str(out / "tokenizer.json"))
    tok.model.save(str(out))  # vocab.json, merges.txt
    _json(out, "tokenizer_config.json", {"model_max_length": 1024})
    return tok


def gpt2(out: Path, *, bin_only: bool = False) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = gpt2_tokenizer(out)
    eos = tok.token_to_id("<|endoftext|>")
    config = {
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
        "bos_token_id": eos, "embd_pdrop": 0.1, "eos_token_id": eos, "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 32, "n_head": 2,
        "n_layer": 2, "n_positions": 1024, "n_special": 0, "predict_special_tokens": True,
        "resid_pdrop": 0.1, "summary_activation": None, "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True, "summary_type": "cls_index", "summary_use_proj": True,
        "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
        "vocab_size": tok.get_vocab_size()}
    torch.manual_seed(0)
    _save(GPT2LMHeadModel(GPT2Config(**config)), out, config)
    _json(out, "generation_config.json", {"_from_model_config": True, "bos_token_id": eos, "eos_token_id": eos,
                                          "transformers_version": "4.27.0.dev0"})
    if bin_only:
        from safetensors.torch import load_file

        weights = load_file(out / "model.safetensors")
        (out / "model.safetensors").unlink()
        torch.save(weights, out / "pytorch_model.bin")
    return out


def roberta(out: Path) -> Path:
    import torch
    from tokenizers import processors
    from transformers import RobertaConfig, RobertaForMaskedLM

    out.mkdir(parents=True, exist_ok=True)
    tok = _bpe(["<s>", "<pad>", "</s>", "<unk>"])
    tok.add_special_tokens(["<mask>"])
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True,
                                                      add_prefix_space=False)
    tok.save(str(out / "tokenizer.json"))
    tok.model.save(str(out))
    config = {
        "architectures": ["RobertaForMaskedLM"], "attention_probs_dropout_prob": 0.1, "bos_token_id": 0,
        "eos_token_id": 2, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 32,
        "initializer_range": 0.02, "intermediate_size": 64, "layer_norm_eps": 1e-05,
        "max_position_embeddings": 514, "model_type": "roberta", "num_attention_heads": 2,
        "num_hidden_layers": 2, "pad_token_id": 1, "type_vocab_size": 1, "vocab_size": tok.get_vocab_size()}
    torch.manual_seed(0)
    _save(RobertaForMaskedLM(RobertaConfig(**config)), out, config)
    return out


def deberta_v3(out: Path) -> Path:
    import sentencepiece
    import torch
    from transformers import DebertaV2Config, DebertaV2ForMaskedLM

    out.mkdir(parents=True, exist_ok=True)
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXT), model_prefix=str(out / "spm"), model_type="unigram", vocab_size=80,
        pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]",
        unk_piece="[UNK]", hard_vocab_limit=False, minloglevel=2)
    (out / "spm.vocab").unlink()
    _json(out, "tokenizer_config.json", {"do_lower_case": False, "vocab_type": "spm"})
    config = {
        "model_type": "deberta-v2", "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 64,
        "max_position_embeddings": 512, "relative_attention": True, "position_buckets": 256,
        "norm_rel_ebd": "layer_norm", "share_att_key": True, "pos_att_type": "p2c|c2p", "layer_norm_eps": 1e-7,
        "max_relative_positions": -1, "position_biased_input": False, "num_attention_heads": 2,
        "num_hidden_layers": 2, "type_vocab_size": 0, "vocab_size": 96}  # room for the added [MASK]
    torch.manual_seed(0)
    _save(DebertaV2ForMaskedLM(DebertaV2Config(**config)), out, config)
    return out
