"""Instruction tuning on OASST1 in the guanaco form (QLoRA's Guanaco), a causal-LM task.

Data: the hub's ``timdettmers/openassistant-guanaco`` (splits ``train`` and ``test``, one
``text`` column: ``### Human: ...### Assistant: ...### Human: ...``) or a local directory of
JSONL files in the same form, through the same parsing: ``train.jsonl`` and ``eval.jsonl``
(or the hub's file names ``openassistant_best_replies_{train,eval}.jsonl``). A local line is
either ``{"text": "### Human: ...### Assistant: ..."}`` or ``{"messages": [{"role": "user" |
"assistant" | "system", "content": ...}, ...]}``.

Formatting: each conversation is rendered with the model's own chat template
(``apply_chat_template``, Llama 3's ``<|start_header_id|>role<|end_header_id|>\\n\\ncontent
<|eot_id|>`` for Llama 3.2). Trailing user turns (questions nobody answered) are dropped; a
conversation with no answer left is skipped. The loss is on the assistant tokens only: each
assistant turn's span is what the template adds between rendering the turns before it with the
generation prompt and rendering them with it (its content and its ``<|eot_id|>``, so the model
learns to stop); every other token (system, user, headers) is labelled -100. Token positions
come from the fast tokenizer's character offsets, so this works for any template that renders
a conversation turn by turn (Llama 3's and most others); one that does not is refused. Too
long: cut at ``data.max_length`` tokens from the end (counted; skipped when no assistant
token is left).

Evaluation: the validation loss on the held-out conversations (what ASHA compares); at the
end of a full trial, generations for a fixed prompt list (``prompts/guanaco_eval.jsonl``, or
``eval.prompts``) written to ``outputs/generations.jsonl`` (an MLflow artifact), scored by
``eval.judge`` when one is given (:mod:`trainables.judge`), else "not judged".
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainables.errors import UserError
from trainables.tasks.base import MetricSpec, Prepared, jsonl_records, packed
from trainables.tasks.causal_lm import IGNORE, CausalLMTask, fixed_subset, pad_collate

if TYPE_CHECKING:
    import torch

    from trainables.config import TrialConfig

#: Bump when preprocessing changes, so cached tokenisations are rebuilt.
PREP_VERSION = 1
HUB_SPLITS = {"train": "train", "val": "test"}
LOCAL_FILES = {"train": ("train.jsonl", "openassistant_best_replies_train.jsonl"),
               "val": ("eval.jsonl", "openassistant_best_replies_eval.jsonl")}
DEFAULT_PROMPTS = Path(__file__).resolve().parent / "prompts" / "guanaco_eval.jsonl"
ROLES = ("system", "user", "assistant")
#: Llama 3.1+ templates print "Today Date: <strftime_now>" unless given a date: fixed, so the
#: rendering (and the cache key) does not change with the day. Other templates ignore it.
TEMPLATE_KWARGS = {"date_string": "26 Jul 2024"}

_TURN = re.compile(r"### (Human|Assistant):")


# --------------------------------------------------------------------------- conversations


def parse_guanaco(text: str) -> list[dict[str, str]]:
    """``### Human: a### Assistant: b`` -> ``[{"role": "user", "content": "a"}, {"role":
    "assistant", "content": "b"}]`` (contents stripped; text before the first marker ignored)."""
    parts = _TURN.split(text)
    turns = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        turns.append({"role": "user" if speaker == "Human" else "assistant", "content": content.strip()})
    return turns


def answered(turns: list[dict[str, str]]) -> tuple[list[dict[str, str]], int]:
    """The conversation without its trailing user turns, and how many were dropped."""
    end = len(turns)
    while end and turns[end - 1]["role"] != "assistant":
        end -= 1
    return turns[:end], len(turns) - end


def _turns_of(obj: Any, where: str) -> list[dict[str, str]]:
    """One local JSONL record (guanaco ``text`` or ``messages``) as role/content turns."""
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        turns = parse_guanaco(obj["text"])
        if not turns:
            raise UserError("data.source", f"{where}: text has no '### Human:' / '### Assistant:' turns")
        return turns
    if isinstance(obj, dict) and isinstance(obj.get("messages"), list):
        turns = []
        for i, m in enumerate(obj["messages"]):
            if not (isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)):
                raise UserError("data.source", f"{where}: messages[{i}]: expected {{\"role\": "
                                               f"{'|'.join(ROLES)}, \"content\": string}}")
            turns.append({"role": m["role"], "content": m["content"]})
        return turns
    raise UserError("data.source", f"{where}: expected {{\"text\": \"### Human: ...### Assistant: ...\"}} "
                                   "or {\"messages\": [{\"role\", \"content\"}, ...]}")


def read_jsonl(path: Path) -> list[list[dict[str, str]]]:
    """Every conversation of a local JSONL file; the first bad line is named."""
    out = [_turns_of(obj, f"{path.name} line {n}") for n, obj in jsonl_records(path, "data.source")]
    if not out:
        raise UserError("data.source", f"{path}: no conversations")
    return out


def local_files(source: Path) -> dict[str, Path]:
    if not source.is_dir():
        raise UserError("data.source", f"{source} is not a directory; expected one with train.jsonl "
                                       "and eval.jsonl (guanaco form)")
    out = {}
    for split, names in LOCAL_FILES.items():
        found = [source / n for n in names if (source / n).is_file()]
        if not found:
            raise UserError("data.source", f"{source} lacks {' or '.join(names)}")
        out[split] = found[0]
    return out


def load_conversations(cfg: TrialConfig) -> dict[str, list[list[dict[str, str]]]]:
    """``{"train", "val"}`` conversations from the local files or the hub."""
    source = Path(cfg.data.source).expanduser()
    if source.exists():
        return {split: read_jsonl(path) for split, path in local_files(source).items()}
    import datasets

    datasets.logging.set_verbosity_error()
    dd = datasets.load_dataset(cfg.data.source, revision=cfg.data.revision)
    out = {}
    for split, hub_split in HUB_SPLITS.items():
        if hub_split not in dd:
            raise UserError("data.source", f"{cfg.data.source} has no {hub_split!r} split")
        out[split] = [_turns_of(row, f"{cfg.data.source}[{hub_split}][{i}]") for i, row in enumerate(dd[hub_split])]
    return out


def read_prompts(path: Path) -> list[dict[str, Any]]:
    """The fixed evaluation prompts: ``{"id", "prompt"}`` or ``{"id", "messages"}`` lines."""
    if not path.is_file():
        raise UserError("eval.prompts", f"prompt file {path} does not exist")
    out = []
    for n, obj in jsonl_records(path, "eval.prompts"):
        if isinstance(obj, dict) and isinstance(obj.get("prompt"), str):
            messages = [{"role": "user", "content": obj["prompt"]}]
        elif isinstance(obj, dict) and isinstance(obj.get("messages"), list):
            messages = obj["messages"]
        else:
            raise UserError("eval.prompts", f"{path} line {n}: expected {{\"id\", \"prompt\"}} or "
                                            "{\"id\", \"messages\"}")
        out.append({"id": str(obj.get("id", n)), "messages": messages})
    if not out:
        raise UserError("eval.prompts", f"{path}: no prompts")
    return out


# --------------------------------------------------------------------------- encoding


def render(tokenizer: Any, turns: list[dict[str, str]], *, generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=generation_prompt,
                                         **TEMPLATE_KWARGS)


def assistant_spans(tokenizer: Any, turns: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn in it."""
    full = render(tokenizer, turns)
    spans = []
    for i, turn in enumerate(turns):
        if turn["role"] != "assistant" or i == 0:
            continue
        before = render(tokenizer, turns[:i], generation_prompt=True)
        upto = render(tokenizer, turns[:i + 1])
        if not (upto.startswith(before) and full.startswith(upto)):
            raise UserError("model.name_or_path", "the tokenizer's chat template does not render a "
                                                  "conversation turn by turn (a prefix of turns is not a "
                                                  "prefix of the text), so assistant tokens cannot be located")
        spans.append((len(before), len(upto)))
    return full, spans


def encode_conversation(tokenizer: Any, turns: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation and a 0/1 mask of the assistant tokens."""
    full, spans = assistant_spans(tokenizer, turns)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(e > s and any(a <= s and e <= b for a, b in spans)) for s, e in enc["offset_mapping"]]
    return list(enc["input_ids"]), mask


class ChatExamples:
    """Token sequences with a per-token loss mask (assistant tokens = 1); items ``(ids, mask)``.
    Stored as flat ``.npy`` arrays plus offsets, memory-mapped by every trial."""

    def __init__(self, flat: np.ndarray, mask: np.ndarray, offsets: np.ndarray):
        self.flat, self.mask, self.offsets = flat, mask, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.flat[a:b], self.mask[a:b]

    def num_target_tokens(self) -> int:
        return int(self.mask.sum())

    @classmethod
    def build(cls, seqs: list[tuple[list[int], list[int]]]) -> ChatExamples:
        flat, offsets = packed([ids for ids, _ in seqs])
        mask, _ = packed([mask for _, mask in seqs], np.uint8)
        return cls(flat, mask, offsets)

    def save(self, directory: Path, name: str) -> None:
        np.save(directory / f"{name}.ids.npy", self.flat)
        np.save(directory / f"{name}.mask.npy", self.mask)
        np.save(directory / f"{name}.offsets.npy", self.offsets)

    @classmethod
    def load(cls, directory: Path, name: str) -> ChatExamples:
        return cls(np.load(directory / f"{name}.ids.npy", mmap_mode="r"),
                   np.load(directory / f"{name}.mask.npy", mmap_mode="r"),
                   np.load(directory / f"{name}.offsets.npy"))


def masked_collate(pad_id: int) -> Callable[[list[tuple[np.ndarray, np.ndarray]]], dict[str, Any]]:
    """Right-padded batch; labels are the ids on assistant tokens and -100 elsewhere."""
    return pad_collate(pad_id, labels_of=_on_assistant_tokens)


def _on_assistant_tokens(ids: torch.Tensor, mask: np.ndarray) -> torch.Tensor:
    import torch

    return torch.where(torch.from_numpy(np.asarray(mask, dtype=np.bool_)), ids, torch.full_like(ids, IGNORE))


def stop_ids(tokenizer: Any) -> list[int]:
    """Token ids that end an answer: eos, and the end-of-turn token when the vocabulary has one
    (Llama 3: ``<|eot_id|>``; the base model's eos is ``<|end_of_text|>``)."""
    ids = [tokenizer.eos_token_id]
    for tok in ("<|eot_id|>", "<|im_end|>", "<end_of_turn>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid not in ids:
            ids.append(tid)
    return [i for i in ids if i is not None]


# --------------------------------------------------------------------------- the task


class GuanacoTask(CausalLMTask):
    name = "guanaco"
    final_metrics = (MetricSpec("judge_score", "max", "judge", "{:.3f}"),)

    def _prompts_path(self, cfg: TrialConfig) -> Path:
        return Path(cfg.eval.prompts).expanduser() if cfg.eval.prompts else DEFAULT_PROMPTS

    # ----------------------------------------------------------- before launch
    def check(self, cfg: TrialConfig) -> None:
        from trainables.hub import check_dataset_source, looks_local

        if looks_local(cfg.data.source):
            source = Path(cfg.data.source).expanduser()
            if not source.exists():
                raise UserError("data.source", f"data directory {cfg.data.source} does not exist")
            for path in local_files(source).values():
                read_jsonl(path)
        else:
            check_dataset_source(cfg.data.source, revision=cfg.data.revision)
        read_prompts(self._prompts_path(cfg))
        if cfg.eval.judge:
            from trainables.judge import load_judge

            load_judge(cfg.eval.judge)  # a callable is imported now, not after training

    def _key(self, cfg: TrialConfig, tokenizer_id: str | None) -> str:
        from trainables.cache import file_digest, fingerprint, source_identity

        data_id = source_identity(cfg.data.source, cfg.data.revision, local_files)
        return fingerprint({
            "task": self.name, "version": PREP_VERSION, "data": data_id,
            "tokenizer": tokenizer_id,
            "max_length": cfg.data.max_length, "prompts": file_digest(self._prompts_path(cfg)),
            "limits": [cfg.data.train_limit, cfg.data.val_limit, cfg.data.test_limit],
        })

    def _build(self, cfg: TrialConfig, tokenizer: Any, out: Path, *, key: str, progress: bool) -> None:
        from tqdm.auto import tqdm

        if not getattr(tokenizer, "chat_template", None):
            raise UserError("model.name_or_path", f"{cfg.model.name_or_path}'s tokenizer has no chat "
                                                  "template (tokenizer_config.json chat_template)")
        if not getattr(tokenizer, "is_fast", False):
            raise UserError("model.name_or_path", "locating assistant tokens needs a fast tokenizer "
                                                  "(character offsets)")
        data = load_conversations(cfg)
        limits = {"train": cfg.data.train_limit, "val": cfg.data.val_limit}
        stats: dict[str, Any] = {"data_key": key}
        for split, convs in data.items():
            convs = fixed_subset(convs, limits[split])
            seqs, dropped, unanswered, truncated, too_long = [], 0, 0, 0, 0
            for turns in tqdm(convs, desc=f"tokenising {split} conversations", disable=not progress,
                              leave=False, delay=1.0):
                turns, n_dropped = answered(turns)
                dropped += n_dropped
                if not any(t["role"] == "assistant" for t in turns) or turns[0]["role"] == "assistant":
                    unanswered += 1
                    continue
                ids, mask = encode_conversation(tokenizer, turns)
                if len(ids) > cfg.data.max_length:
                    truncated += 1
                    ids, mask = ids[:cfg.data.max_length], mask[:cfg.data.max_length]
                    if not any(mask):
                        too_long += 1
                        continue
                seqs.append((ids, mask))
            if not seqs:
                raise UserError("data.source", f"no usable {split} conversation ({len(convs)} read: "
                                               f"{unanswered} without an answer, {too_long} with no answer "
                                               f"token within data.max_length)")
            examples = ChatExamples.build(seqs)
            examples.save(out, split)
            stats.update({f"{split}_examples": len(examples), f"{split}_target_tokens": examples.num_target_tokens(),
                          f"{split}_trailing_user_turns_dropped": dropped,
                          f"{split}_skipped_unanswered": unanswered, f"{split}_truncated": truncated,
                          f"{split}_skipped_too_long": too_long})
        prompts = read_prompts(self._prompts_path(cfg))
        if cfg.data.test_limit is not None:
            prompts = prompts[:cfg.data.test_limit]
        texts = [render(tokenizer, p["messages"], generation_prompt=True) for p in prompts]
        ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        (out / "test.json").write_text(json.dumps({
            "ids": [p["id"] for p in prompts],
            "prompts": [p["messages"][-1]["content"] for p in prompts],
            "prompt_ids": ids,
        }, ensure_ascii=False))
        stats["test_prompts"] = len(prompts)
        (out / "stats.json").write_text(json.dumps(stats, indent=2))

    # ----------------------------------------------------------- in the trial
    def load_prepared(self, path: Path, cfg: TrialConfig) -> Prepared:
        return Prepared(train=ChatExamples.load(path, "train"), val=ChatExamples.load(path, "val"),
                        test=json.loads((path / "test.json").read_text()),
                        stats=json.loads((path / "stats.json").read_text()), path=path)

    def collate(self, tokenizer: Any) -> Callable[[list[Any]], dict[str, Any]]:
        return masked_collate(tokenizer.pad_token_id)

    def final_eval(self, model: Any, tokenizer: Any, data: Prepared, cfg: TrialConfig, *,
                   device: torch.device, out_dir: Path) -> dict[str, Any]:
        from trainables.judge import judge_all
        from trainables.quantization import optimizer_note

        test = data.test
        answers = generate_answers(model, tokenizer, test["prompt_ids"], cfg, device=device)
        items = [{"id": i, "prompt": p, "answer": a} for i, p, a in zip(test["ids"], test["prompts"], answers)]
        scores, note = judge_all(cfg.eval.judge, items)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "generations.jsonl").write_text(
            "".join(json.dumps({**item, "score": score}, ensure_ascii=False) + "\n"
                    for item, score in zip(items, scores)), encoding="utf-8")
        judged = [s for s in scores if s is not None]
        notes = [note, optimizer_note(cfg.train, device)]
        return {"judge_score": sum(judged) / len(judged) if judged else None,
                "generations": len(items), "final_note": "; ".join(n for n in notes if n)}


def generate_answers(model: Any, tokenizer: Any, prompts: list[list[int]], cfg: TrialConfig, *,
                     device: torch.device) -> list[str]:
    """Decoded answers to chat-formatted prompt ids (left-padded batches; ``eval`` settings;
    stops at eos or the end-of-turn token)."""
    import torch

    e = cfg.eval
    pad_id, stops = tokenizer.pad_token_id, stop_ids(tokenizer)
    model.eval()
    answers = []
    for start in range(0, len(prompts), e.batch_size):
        chunk = prompts[start:start + e.batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, p in enumerate(chunk):
            ids[row, width - len(p):] = torch.as_tensor(p, dtype=torch.long)
            mask[row, width - len(p):] = 1
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 num_beams=e.num_beams, length_penalty=e.length_penalty,
                                 no_repeat_ngram_size=e.no_repeat_ngram_size, max_new_tokens=e.max_new_tokens,
                                 do_sample=False, eos_token_id=stops, pad_token_id=pad_id, use_cache=True)
        answers += [tokenizer.decode(row, skip_special_tokens=True).strip() for row in out[:, width:]]
    return answers
