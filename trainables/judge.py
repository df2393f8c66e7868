"""An optional judge that scores the answers to the fixed prompts.

``eval.judge`` is either

* ``module:function``: imported in the trial and called as ``function(prompt, answer)`` for
  each model's answer, returning a number (a reward model, a rubric, ...). It is code, so it
  is accepted from the command line or a preset only, never from a search space; or
* the ``http(s)://`` URL of an OpenAI-compatible chat-completions API (``.../v1`` or the full
  ``.../v1/chat/completions``) serving ``eval.judge_model``. For each prompt it is sent the
  answers of every ``eval.compare_models`` model side by side, lettered A, B, C, ... in that
  order, with the reproduction report's judge prompt (:data:`INSTRUCTION`), and grades each
  1-9 with a justification. The API key is read from the environment variable
  ``eval.judge_key_env`` where the trial runs; it is never part of a config and never
  recorded or printed.

A prompt that is a conversation (a system turn, earlier turns) reaches either judge as one
text of ``Role: content`` lines, the last the question (:func:`trainables.tasks.answers.
question_of`); a single user message as its text.

Without a judge nothing is scored: no judge metric is logged and the trial's note (the MLflow
tag ``lorasweep.note`` and the summary) says "not judged". A judge that fails (unreachable,
no key, a reply without a score for every answer) scores nothing it did not grade, and the
note says why in one line.
"""

from __future__ import annotations

import importlib
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from trainables.errors import UserError, first_line

FIELD = "eval.judge"
TUNED = "tuned"
"""The name of the trial's own model (the base with its adapter) in ``eval.compare_models``."""
HTTP_TIMEOUT_S = 120.0
NOT_JUDGED = "not judged (no eval.judge given)"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: The judge prompt of 000_ebca86e218baf75c.txt §5.4 (and 001_02f543aa5dd0cc94.txt, "AI Based
#: Evaluation"), worded and laid out as the group sent it to GPT-4o (their
#: qlora/gpt4-evaluation-prompts.csv: a period after the format, the question and the lettered
#: answers after blank lines). The report prints it for three responses; ``count`` and
#: ``letters`` generalise it to the number of compared models.
INSTRUCTION = ("You will be given {count} {responses}: {letters}. Based on a QUESTION, grade the {lower} "
               "{letters} on a scale of 1-9 (1 = poor, 9 = excellent) to determine whether the response "
               "addresses the QUESTION. For each score, provide a justification in the format "
               "<SCORE, JUSTIFICATION>. ")
_COUNTS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: Sampling temperature of the judge. The report does not state it; 0 so that re-running the
#: judge on the same answers gives the same grades as far as the endpoint allows.
TEMPERATURE = 0.0


def _is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def is_callable_spec(spec: Any) -> bool:
    """``eval.judge`` names Python code (``module:function``), not an endpoint."""
    return isinstance(spec, str) and not _is_url(spec) and ":" in spec


def check_judge_spec(spec: str, field: str = FIELD) -> None:
    """The form of ``eval.judge`` (cheap; no import, no request). ``field`` names it in errors
    (``judge`` inside :class:`~trainables.config.EvalConfig`, whose path the schema adds)."""
    if _is_url(spec):
        parts = urlsplit(spec)
        if not parts.hostname:
            raise UserError(field, f"{spec!r} has no host; expected http(s)://host[:port]/v1")
        if parts.username or parts.password or parts.query:
            raise UserError(field, "credentials in the judge URL would be recorded with the trial; "
                                   "put the API key in the environment variable eval.judge_key_env")
        return
    module, _, name = spec.partition(":")
    if not module or not name or not all(p.isidentifier() for p in module.split(".") + name.split(".")):
        raise UserError(field, f"expected a Python callable 'module:function' or an http(s):// URL, "
                               f"got {spec!r}")


def check_judging(e: Any) -> None:
    """The judge settings of one :class:`~trainables.config.EvalConfig` (field names relative
    to it, as its ``__post_init__`` raises them)."""
    if e.judge is not None:
        check_judge_spec(e.judge, field="judge")
        if _is_url(e.judge) and not (e.judge_model or "").strip():
            raise UserError("judge_model", "an http(s):// judge is a chat-completions API and needs the "
                                           "model to ask, e.g. --set eval.judge_model=gpt-4o")
    if not _ENV_NAME.fullmatch(e.judge_key_env):
        raise UserError("judge_key_env", f"must be an environment variable name, got {e.judge_key_env!r}")
    models = list(e.compare_models)
    if models.count(TUNED) != 1:
        raise UserError("compare_models", f"must name the trial's model {TUNED!r} exactly once, got {models}")
    if any(not m.strip() for m in models) or len(set(models)) != len(models):
        raise UserError("compare_models", f"expected distinct hub names or local paths, got {models}")
    if len(models) > len(_COUNTS):
        raise UserError("compare_models", f"at most {len(_COUNTS)} models answer side by side, got {len(models)}")


def check_judge_ready(e: Any) -> None:
    """Before launch: a callable judge imports, an endpoint's API key is in the environment."""
    if not e.judge:
        return
    if not _is_url(e.judge):
        load_callable(e.judge)
    elif not os.environ.get(e.judge_key_env):
        raise UserError(FIELD, f"the judge at {e.judge} needs its API key in ${e.judge_key_env} "
                               "(eval.judge_key_env); export it, or run unjudged with --set eval.judge=null")


def load_callable(spec: str) -> Callable[[str, str], float]:
    """``judge(prompt, answer) -> score`` for a ``module:function`` spec (imported now)."""
    check_judge_spec(spec)
    module, _, name = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as e:
        raise UserError(FIELD, f"cannot import {module!r} ({e})") from None
    for part in name.split("."):
        obj = getattr(obj, part, None)
    if not callable(obj):
        raise UserError(FIELD, f"{spec!r} is not a callable in {module!r}")
    fn = obj
    return lambda prompt, answer: _number(fn(prompt, answer), spec)


def _number(value: Any, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"judge {source} returned {value!r}, not a finite number")
    return float(value)


# --------------------------------------------------------------------------- side by side


def letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


def judge_prompt(question: str, answers: list[str]) -> str:
    """The judge prompt for one question and the answers A, B, C, ... (:data:`INSTRUCTION`)."""
    ls = letters(len(answers))
    plural = len(answers) > 1
    head = INSTRUCTION.format(count=_COUNTS[len(answers) - 1], responses="RESPONSES" if plural else "RESPONSE",
                              lower="responses" if plural else "response", letters=",".join(ls))
    return head + f"\n\nQUESTION: {question} " + " ".join(f"\n\n{k}: {a}" for k, a in zip(ls, answers))


class MalformedReply(ValueError):
    """The judge answered, but not with a 1-9 score for every response."""


_HEADING = re.compile(r"^[\s*#>_-]*(?:[Rr]esponse\s+)?([A-Z])[\s*]*[:.)]", re.M)
_ANGLE = re.compile(r"<\s*(\d+)\s*,\s*([^>]*)>")
_SCORE = re.compile(r"[Ss]core[\s*:=]*(\d+)")
_JUSTIFICATION = re.compile(r"[Jj]ustification[\s*:]*(.*)", re.S)


def parse_grades(reply: str, n: int) -> list[tuple[int, str]]:
    """``(score, justification)`` for responses A.. of a judge's reply, in either form seen:

    * sections headed by the letter (``Response A:``, ``**B.**``, ``C)``), each with
      ``Score: N`` and ``Justification: ...`` (how GPT-4o answered the reproduction,
      000_ebca86e218baf75c.txt §5.4.1) or with ``<N, justification>``;
    * else exactly ``n`` tuples ``<N, justification>``, in order (the format the prompt asks for).

    Every response needs one integer score in 1-9, else :class:`MalformedReply`.
    """
    heads = list(_HEADING.finditer(reply))
    sections: dict[str, str] = {}
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(reply)
        sections.setdefault(m.group(1), reply[m.end():end])
    grades = []
    if sections:
        for letter in letters(n):
            if letter not in sections:
                raise MalformedReply(f"no section for response {letter}")
            grades.append(_grade(sections[letter], letter))
    else:
        tuples = _ANGLE.findall(reply)
        if len(tuples) != n:
            raise MalformedReply(f"{len(tuples)} <SCORE, JUSTIFICATION> grades for {n} responses")
        grades = [_checked(int(s), j.strip(), letter) for (s, j), letter in zip(tuples, letters(n))]
    return grades


def _grade(section: str, letter: str) -> tuple[int, str]:
    angle = _ANGLE.search(section)
    if angle:
        return _checked(int(angle.group(1)), angle.group(2).strip(), letter)
    score = _SCORE.search(section)
    if not score:
        raise MalformedReply(f"no score for response {letter}")
    just = _JUSTIFICATION.search(section)
    text = just.group(1) if just else section[score.end():]
    return _checked(int(score.group(1)), " ".join(text.split()), letter)


def _checked(score: int, justification: str, letter: str) -> tuple[int, str]:
    if not 1 <= score <= 9:
        raise MalformedReply(f"score {score} for response {letter} is outside 1-9")
    return score, justification


# --------------------------------------------------------------------------- the endpoint


def completions_url(url: str) -> str:
    """The chat-completions endpoint of an API base URL (``.../v1`` -> ``.../v1/chat/completions``)."""
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


class ChatJudge:
    """One OpenAI-compatible chat-completions endpoint, asked one prompt per question.

    HTTP through ``requests`` (installed with MLflow) with urllib3's ``Retry``, which backs off
    on 429/5xx and honours ``Retry-After``: one JSON POST per question needs no more client."""

    def __init__(self, url: str, model: str, key: str):
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        self.url, self.model, self._key = completions_url(url), model, key
        retry = Retry(total=4, connect=1, read=1, status=4, backoff_factor=2.0, allowed_methods=None,
                      status_forcelist=(429, 500, 502, 503, 504), raise_on_status=False)
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))

    def ask(self, prompt: str) -> str:
        """The judge's reply text; ``MalformedReply`` when the answer is no chat completion,
        ``OSError`` subclasses (``requests`` errors) when the endpoint cannot be used."""
        body = {"model": self.model, "temperature": TEMPERATURE,
                "messages": [{"role": "user", "content": prompt}]}
        resp = self.session.post(self.url, json=body, timeout=HTTP_TIMEOUT_S,
                                 headers={"Authorization": f"Bearer {self._key}"})
        if resp.status_code != 200:
            raise ConnectionError(f"HTTP {resp.status_code}: {_error_text(resp)}")
        try:
            content = resp.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise MalformedReply("the reply is not a chat completion (no choices[0].message.content)") from None
        if not isinstance(content, str):
            raise MalformedReply("the reply's message content is not text")
        return content

    def redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def _error_text(resp: Any) -> str:
    try:
        err = resp.json().get("error")
        msg = err.get("message") if isinstance(err, dict) else err
    except (ValueError, AttributeError):
        msg = None
    return " ".join(str(msg or resp.text or resp.reason).split())[:200]


# --------------------------------------------------------------------------- judging


@dataclass
class Judged:
    """The grades of every prompt (rows) for every compared model (columns)."""

    scores: list[list[float | None]]
    justifications: list[list[str | None]]
    note: str
    errors: list[str | None] = field(default_factory=list)
    """Per prompt: why it was not graded (None when it was)."""


def judge_all(e: Any, prompts: list[str], answers: list[list[str]]) -> Judged:
    """Grades for ``answers[i][j]`` (prompt ``i``, model ``j`` of ``e.compare_models``)."""
    none = Judged([[None] * len(a) for a in answers], [[None] * len(a) for a in answers], NOT_JUDGED,
                  [None] * len(answers))
    if not e.judge:
        return none
    if not _is_url(e.judge):
        return _judge_each(e.judge, prompts, answers, none)
    key = os.environ.get(e.judge_key_env)
    if not key:
        none.note = f"not judged: ${e.judge_key_env} (the judge's API key) is not set where the trial runs"
        return none
    return _judge_side_by_side(ChatJudge(e.judge, e.judge_model or "", key), prompts, answers, none)


def _judge_each(spec: str, prompts: list[str], answers: list[list[str]], out: Judged) -> Judged:
    judge = load_callable(spec)
    try:
        out.scores = [[judge(p, a) for a in row] for p, row in zip(prompts, answers)]
    except Exception as e:  # noqa: BLE001 - any judge failure is recorded, not fatal to the trial
        out.note = f"not judged: the judge {spec} failed ({first_line(e)})"
        return out
    out.note = f"judged by {spec}"
    return out


def _judge_side_by_side(judge: ChatJudge, prompts: list[str], answers: list[list[str]], out: Judged) -> Judged:
    where = f"{judge.model} at {judge.url}"
    for i, (p, row) in enumerate(zip(prompts, answers)):
        try:
            grades = parse_grades(judge.ask(judge_prompt(p, row)), len(row))
        except MalformedReply as e:
            out.errors[i] = f"{e}"
            continue
        except (OSError, ValueError) as e:  # requests' errors are OSErrors; stop at the first
            out.note = f"not judged: the judge {where} could not be used ({judge.redact(first_line(e))})"
            out.scores = [[None] * len(r) for r in answers]
            out.justifications = [[None] * len(r) for r in answers]
            return out
        out.scores[i] = [float(s) for s, _ in grades]
        out.justifications[i] = [j for _, j in grades]
    failed = [(i, err) for i, err in enumerate(out.errors) if err]
    done = len(prompts) - len(failed)
    out.note = f"judged by {where} ({done} of {len(prompts)} prompts)"
    if failed:
        i, err = failed[0]
        out.note = (f"{'not judged' if not done else out.note}: {len(failed)} judge repl"
                    f"{'y' if len(failed) == 1 else 'ies'} without a 1-9 score for every answer "
                    f"(prompt {i + 1}: {err})")
    return out
