"""``sft`` rows and ``eval.prompts`` lines the driver refuses or reads before launch: prompt
files, answers before any question, empty answers, chat templates that refuse a row, and
the default system column."""

from __future__ import annotations

import json

import pytest

from trainables.errors import UserError


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- eval.prompts


@pytest.mark.parametrize("line, fragment", [
    ({"id": "p1", "messages": [{"from": "human", "valu": "hi"}]}, "messages[0]: expected"),
    ({"id": "p1", "messages": [{"role": "bot", "content": "hi"}]}, "messages[0]: expected"),
    ({"id": "p1", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
     "the last turn is not a user's question"),
    ({"id": "p1", "messages": []}, "expected {\"id\", \"prompt\": text}"),
    ({"id": "p1", "prompt": " "}, "the prompt is empty"),
    (["hi"], "expected {\"id\", \"prompt\": text}"),
])
def test_a_bad_prompt_line_is_refused_with_its_file_and_line(tmp_path, line, fragment):
    from trainables.tasks.conversations import read_prompts

    path = write_jsonl(tmp_path / "prompts.jsonl", [{"id": "ok", "prompt": "Hello?"}, line])
    with pytest.raises(UserError) as err:
        read_prompts(path)
    assert err.value.field == "eval.prompts"
    assert err.value.message.startswith("prompts.jsonl line 2: ") and fragment in err.value.message
    assert "\n" not in err.value.message


def test_sharegpt_prompts_read_as_role_content_turns(tmp_path):
    from trainables.tasks.conversations import read_prompts

    path = write_jsonl(tmp_path / "prompts.jsonl", [
        {"id": "p1", "messages": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "hi"}]},
        {"prompt": "Name a colour."}])
    assert read_prompts(path) == [
        {"id": "p1", "where": "prompts.jsonl line 1",
         "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]},
        {"id": "2", "where": "prompts.jsonl line 2", "messages": [{"role": "user", "content": "Name a colour."}]}]


# ----------------------------------------------------------------------------- training rows


@pytest.fixture(scope="module")
def tokenizer(torch_one_thread):
    from transformers import AutoTokenizer

    from trainables.offline.tiny_llama import ensure_assets

    return AutoTokenizer.from_pretrained(ensure_assets()["model"])


def _targets(tokenizer, turns):
    from trainables.tasks.conversations import Conversation
    from trainables.tasks.guanaco import encode_text, training_text

    text, spans, dropped = training_text(tokenizer, Conversation("messages", tuple(turns)), "chat")
    if not spans:
        return None, dropped
    ids, mask = encode_text(tokenizer, text, spans)
    return tokenizer.decode([t for t, m in zip(ids, mask) if m]), dropped


def _t(role, content):
    return {"role": role, "content": content}


def test_assistant_turns_before_the_first_question_are_dropped_not_the_conversation(tokenizer):
    # The greeting answers nothing: the conversation trains on A1 only (and is not skipped).
    assert _targets(tokenizer, [_t("assistant", "Welcome!"), _t("user", "Q1"), _t("assistant", "A1")]) \
        == ("A1<|eot_id|>", 0)
    # The system turn stays; "Hi there" is no target.
    got, _ = _targets(tokenizer, [_t("system", "Be brief."), _t("assistant", "Hi there"), _t("user", "Q"),
                                  _t("assistant", "B0")])
    assert got == "B0<|eot_id|>"
    assert _targets(tokenizer, [_t("assistant", "Hello"), _t("user", "Q")]) == (None, 1)


def test_a_validation_prompt_leaves_out_an_opening_greeting():
    from trainables.tasks.conversations import Conversation
    from trainables.tasks.sft import validation_prompts

    conv = Conversation("messages", (_t("system", "S"), _t("assistant", "Hi"), _t("user", "Q"), _t("assistant", "A")))
    assert validation_prompts([conv], 8) == [{"id": "val-0", "messages": [_t("system", "S"), _t("user", "Q")],
                                              "where": ""}]


@pytest.mark.parametrize("turn", [{"role": "assistant", "content": ""}, {"from": "gpt", "value": "  "}])
def test_an_empty_answer_in_a_messages_row_is_refused_as_an_empty_alpaca_output_is(tmp_path, turn):
    from trainables.tasks.sft import conversation
    from trainables.tasks.user_data import read_file

    ok = {"messages": [_t("user", "Q"), _t("assistant", "A")]}
    split = read_file(write_jsonl(tmp_path / "chat.jsonl", [ok, {"messages": [_t("user", "Q"), turn]}]))
    assert list(conversation(split, 0, {"messages": "messages"}).turns) == ok["messages"]
    with pytest.raises(UserError) as err:
        conversation(split, 1, {"messages": "messages"})
    assert err.value.field == "data.columns.messages"
    assert err.value.message == f"{tmp_path / 'chat.jsonl'} line 2: messages[1]: the assistant's answer is empty (a target of nothing)"


# ----------------------------------------------------------------------------- chat templates that refuse

NO_SYSTEM = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
             "{% endif %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>"
             "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")


@pytest.fixture
def no_system_model(tmp_path, torch_one_thread):
    """The tiny Llama with a template that raises on a system turn (as Gemma's does)."""
    import shutil

    from trainables.offline.tiny_llama import ensure_assets

    model = tmp_path / "no-system"
    shutil.copytree(ensure_assets()["model"], model)
    (model / "chat_template.jinja").write_text(NO_SYSTEM, encoding="utf-8")
    return model


def _sft_trial(source, model, eval=None, **data):
    from trainables.config import TrialConfig
    from trainables.schema import from_dict

    return from_dict(TrialConfig, {"task": "sft", "model": {"name_or_path": str(model)}, "eval": eval or {},
                                   "data": {"source": str(source), "max_length": 128, "holdout_size": 1, **data}})


def test_a_template_that_refuses_a_row_is_one_line_naming_it_before_launch(tmp_path, no_system_model):
    from trainables.tasks.registry import get_task

    rows = [{"instruction": f"Q{i}", "output": f"A{i}"} for i in range(4)]
    rows[2]["system"] = "Be brief."
    cfg = _sft_trial(write_jsonl(tmp_path / "train.jsonl", rows), no_system_model, columns={"system": "system"})
    with pytest.raises(UserError) as err:
        get_task("sft").check(cfg)
    assert err.value.field == "model.name_or_path"
    assert err.value.message == (f"{no_system_model}'s chat template refuses {tmp_path / 'train.jsonl'} line 3: "
                                 "System role not supported")
    with pytest.raises(UserError) as err:  # what the driver's preparation meets too
        get_task("sft").prepare(cfg, progress=False)
    assert "line 3: System role not supported" in err.value.message
    rows[2]["system"] = ""  # no system turn
    get_task("sft").check(_sft_trial(write_jsonl(tmp_path / "train.jsonl", rows), no_system_model,
                                     columns={"system": "system"}))


def test_a_template_that_refuses_a_prompt_names_its_line(tmp_path, no_system_model):
    from trainables.tasks.registry import get_task

    data = write_jsonl(tmp_path / "train.jsonl", [{"instruction": f"Q{i}", "output": f"A{i}"} for i in range(4)])
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "hi"}, {"messages": [_t("system", "S"), _t("user", "Q")]}])
    cfg = _sft_trial(data, no_system_model, eval={"prompts": str(prompts)})
    with pytest.raises(UserError) as err:
        get_task("sft").check(cfg)
    assert err.value.message.endswith("chat template refuses prompts.jsonl line 2: System role not supported")


# ----------------------------------------------------------------------------- guanaco's own data

#: A template that renders any roles but refuses a word in a turn's content.
NO_SECRETS = ("{% for m in messages %}{% if 'secret' in m['content'] %}{{ raise_exception('No secrets') }}"
              "{% endif %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>"
              "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")


def _with_template(tmp_path, template):
    """The tiny Llama with ``template`` as its chat template."""
    import shutil

    from trainables.offline.tiny_llama import ensure_assets

    model = tmp_path / "templated"
    shutil.copytree(ensure_assets()["model"], model)
    (model / "chat_template.jinja").write_text(template, encoding="utf-8")
    return model


def _chat(q, a, system=None):
    return {"messages": ([_t("system", system)] if system else []) + [_t("user", q), _t("assistant", a)]}


def _guanaco_trial(source, model, **data):
    from trainables.config import TrialConfig
    from trainables.schema import from_dict

    return from_dict(TrialConfig, {"task": "guanaco", "model": {"name_or_path": str(model)},
                                   "data": {"source": str(source), "max_length": 128, **data}})


def _guanaco_data(tmp_path, train, val=None):
    write_jsonl(tmp_path / "data" / "train.jsonl", train)
    write_jsonl(tmp_path / "data" / "eval.jsonl", val or [_chat("Q", "A")])
    return tmp_path / "data"


@pytest.mark.parametrize("fmt", ["chat", "text"])
def test_guanaco_refuses_a_row_its_template_refuses_before_launch(tmp_path, no_system_model, fmt):
    from trainables.tasks.registry import get_task

    data = _guanaco_data(tmp_path, [_chat("Q1", "A1"), _chat("Q2", "A2"), _chat("Q3", "A3", system="Be brief.")])
    with pytest.raises(UserError) as err:
        get_task("guanaco").check(_guanaco_trial(data, no_system_model, format=fmt))
    assert err.value.field == "model.name_or_path"
    assert err.value.message == f"{no_system_model}'s chat template refuses train.jsonl line 3: System role not supported"
    # Without the system turn the same data is accepted.
    get_task("guanaco").check(_guanaco_trial(_guanaco_data(tmp_path, [_chat("Q1", "A1"), _chat("Q2", "A2")]),
                                             no_system_model, format=fmt))


def test_guanaco_refuses_a_row_whose_content_its_template_refuses_past_the_first_of_its_roles(tmp_path):
    from trainables.tasks.conversations import read_jsonl
    from trainables.tasks.guanaco import check_rendering
    from trainables.tasks.registry import get_task

    model = _with_template(tmp_path, NO_SECRETS)
    data = _guanaco_data(tmp_path, [_chat("Q1", "A1"), _chat("Q2", "A2"), _chat("Q3", "the secret is 4"),
                                    _chat("Q4", "A4")])
    with pytest.raises(UserError) as err:
        get_task("guanaco").check(_guanaco_trial(data, model))
    assert err.value.message == f"{model}'s chat template refuses train.jsonl line 3: No secrets"
    # Past the check's limit, one conversation of each sequence of roles is rendered.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    convs = {"train": read_jsonl(data / "train.jsonl")}
    check_rendering(tokenizer, convs, [], str(model), limit=2)
    with pytest.raises(UserError, match="line 3: No secrets"):
        check_rendering(tokenizer, convs, [], str(model), limit=3)


def test_guanaco_guanaco_text_loads_no_tokenizer_before_launch(tmp_path):
    """Guanaco text trained as published and put to the model in the guanaco form renders
    nothing with a template: a model folder with no tokenizer at all still plans."""
    from trainables.offline.chat_synth import write_guanaco_dataset
    from trainables.offline.tiny_llama import ensure_assets
    from trainables.tasks.registry import get_task

    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "config.json").write_bytes((ensure_assets()["model"] / "config.json").read_bytes())
    data = write_guanaco_dataset(tmp_path / "g", n_train=4, n_eval=2)
    get_task("guanaco").check(_guanaco_trial(data, tmp_path / "config-only", format="text"))
    with pytest.raises((OSError, ValueError)):  # the chat format needs the tokenizer this folder lacks
        get_task("guanaco").check(_guanaco_trial(data, tmp_path / "config-only", format="chat"))


def test_a_template_changed_after_a_check_passed_is_checked_again(tmp_path):
    """A passed check is memoised on the model's files: the same folder with a template that
    now refuses the data is refused."""
    from trainables.tasks.registry import get_task

    model = _with_template(tmp_path, NO_SECRETS)
    cfg = _guanaco_trial(_guanaco_data(tmp_path, [_chat("Q1", "A1", system="Be brief."), _chat("Q2", "A2")]), model)
    get_task("guanaco").check(cfg)
    get_task("guanaco").check(cfg)  # memoised
    (model / "chat_template.jinja").write_text(NO_SYSTEM, encoding="utf-8")
    with pytest.raises(UserError, match="refuses train.jsonl line 1: System role not supported"):
        get_task("guanaco").check(cfg)


@pytest.mark.parametrize("turn", [{"role": "assistant", "content": ""}, {"role": "assistant", "content": " \n"}])
def test_an_empty_answer_in_a_guanaco_messages_row_is_refused(tmp_path, turn):
    from trainables.tasks.registry import get_task

    data = _guanaco_data(tmp_path, [_chat("Q1", "A1"), {"messages": [_t("user", "Q2"), turn]}])
    with pytest.raises(UserError) as err:
        get_task("guanaco").check(_guanaco_trial(data, "unused"))
    assert err.value.field == "data.source"
    assert err.value.message == "train.jsonl line 2: messages[1]: the assistant's answer is empty (a target of nothing)"


def test_the_qlora_command_refuses_a_template_at_dry_run_in_one_line(tmp_path, no_system_model, capsys):
    from sweeps.cli import run_study

    data = _guanaco_data(tmp_path, [_chat("Q1", "A1"), _chat("Q2", "A2", system="Be brief.")])
    work = tmp_path / "work"
    work.mkdir()
    capsys.readouterr()
    code = run_study("qlora_guanaco", ["--preset", "smoke", "--dry-run", "--model", str(no_system_model),
                                       "--data", str(data), "--storage", str(work / "rr"),
                                       "--tracking-uri", f"sqlite:///{work / 'm.db'}"])
    out, err = capsys.readouterr()
    assert code == 2 and [ln for ln in err.splitlines() if ln.strip()] == [
        f"error: model.name_or_path: {no_system_model}'s chat template refuses train.jsonl line 2: "
        "System role not supported"]
    assert list(work.iterdir()) == [] and "trial" not in out.lower()


# ----------------------------------------------------------------------------- the system column


def test_a_column_named_system_is_the_system_turn_by_default(tmp_path):
    from trainables.tasks.sft import columns_of, conversation
    from trainables.tasks.user_data import read_file

    alpaca = read_file(write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Q", "output": "A", "system": "Be brief."}]))
    cfg = _sft_trial(alpaca.where, "m")
    columns = columns_of(cfg, {"train": alpaca})
    assert columns == {"prompt": "instruction", "response": "output", "system": "system"}
    assert list(conversation(alpaca, 0, columns).turns) == [_t("system", "Be brief."), _t("user", "Q"),
                                                            _t("assistant", "A")]
    chats = read_file(write_jsonl(tmp_path / "m.jsonl", [
        {"messages": [_t("user", "Q"), _t("assistant", "A")], "system": "Be brief."},
        {"messages": [_t("system", "S"), _t("user", "Q"), _t("assistant", "A")], "system": "Be brief."}]))
    columns = columns_of(_sft_trial(chats.where, "m"), {"train": chats})
    assert columns == {"messages": "messages", "system": "system"}
    assert list(conversation(chats, 0, columns).turns) == [_t("system", "Be brief."), _t("user", "Q"),
                                                           _t("assistant", "A")]
    with pytest.raises(UserError) as err:
        conversation(chats, 1, columns)
    assert err.value.field == "data.columns.system" and "m.jsonl line 2: has a system turn in column" in err.value.message
    # A system role given another column keeps it.
    assert columns_of(_sft_trial(alpaca.where, "m", columns={"system": "instruction"}), {"train": alpaca})["system"] \
        == "instruction"


# ----------------------------------------------------------------------------- answers to conversations


def test_a_multi_turn_prompt_is_recorded_whole_and_the_judge_sees_its_earlier_turns(tmp_path):
    from trainables.judge import Judged
    from trainables.tasks.answers import question_of, write_outputs

    chat = [_t("system", "Be brief."), _t("user", "Name a fruit."), _t("assistant", "Apple."), _t("user", "Its colour?")]
    single = [_t("user", "What is 2+2?")]
    assert question_of(single) == "What is 2+2?"  # a single-turn judge call is unchanged
    assert question_of(chat) == "System: Be brief.\nUser: Name a fruit.\nAssistant: Apple.\nUser: Its colour?"
    test = {"ids": ["c", "s"], "prompts": ["Its colour?", "What is 2+2?"], "messages": [chat, single]}
    judged = Judged([[7], [None]], [["ok"], [None]], "", [None, None])
    write_outputs(tmp_path, test, ["tuned"], ["A"], [["Red."], ["4"]], judged)
    lines = [json.loads(line) for line in (tmp_path / "generations.jsonl").read_text().splitlines()]
    assert lines == [{"id": "c", "prompt": "Its colour?", "messages": chat, "answer": "Red.", "score": 7},
                     {"id": "s", "prompt": "What is 2+2?", "messages": single, "answer": "4", "score": None}]


def test_a_callable_judge_is_asked_the_conversation(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import trainables.tasks.answers as answers
    from trainables.judge import Judged

    asked = []

    def judge_all(e, prompts, rows):
        asked.extend(prompts)
        return Judged([[1]] * len(rows), [[""]] * len(rows), "", [None] * len(rows))

    monkeypatch.setattr(answers, "answers_of", lambda name, *a, **k: ["Red.", "4"])
    monkeypatch.setattr("trainables.judge.judge_all", judge_all)
    chat = [_t("user", "Name a fruit."), _t("assistant", "Apple."), _t("user", "Its colour?")]
    test = {"ids": ["c", "s"], "prompts": ["Its colour?", "2+2?"], "messages": [chat, [_t("user", "2+2?")]]}
    cfg = SimpleNamespace(eval=SimpleNamespace(compare_models=["tuned"]), train=None)
    monkeypatch.setattr("trainables.quantization.optimizer_note", lambda *a: "")
    answers.answer_and_judge(None, None, test, cfg, device=None, out_dir=tmp_path)
    assert asked == ["User: Name a fruit.\nAssistant: Apple.\nUser: Its colour?", "2+2?"]
