"""An optional judge that scores generated answers: a Python callable or an HTTP endpoint.

``eval.judge`` is either

* ``module:function``: imported in the trial and called as ``function(prompt, answer)``,
  returning a number (e.g. a reward model, a rubric, a call to a grading LLM's API); or
* an ``http://`` / ``https://`` URL: each answer is POSTed as JSON
  ``{"id", "prompt", "answer"}`` and the endpoint answers ``{"score": number}`` (or a bare
  number).

Without a judge nothing is scored: the trial's ``judge_score`` is not computed and its note
(the MLflow tag ``lorasweep.note`` and the summary) says "not judged". Credentials for an
endpoint belong in its own environment, not in the URL (which is recorded with the trial).
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from trainables.errors import UserError

FIELD = "eval.judge"
HTTP_TIMEOUT_S = 60.0
NOT_JUDGED = "not judged (no eval.judge given)"


def _is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def check_judge_spec(spec: str, field: str = FIELD) -> None:
    """The form of ``eval.judge`` (cheap; no import, no request). ``field`` names it in errors
    (``judge`` inside :class:`~trainables.config.EvalConfig`, whose path the schema adds)."""
    if _is_url(spec):
        parts = urlsplit(spec)
        if not parts.hostname:
            raise UserError(field, f"{spec!r} has no host; expected http(s)://host[:port]/path")
        from trainables.credentials import refuse_secrets

        refuse_secrets(field, spec, "give the endpoint its own authentication", user_is_secret=True)
        return
    module, _, name = spec.partition(":")
    if not module or not name or not all(p.isidentifier() for p in module.split(".") + name.split(".")):
        raise UserError(field, f"expected a Python callable 'module:function' or an http(s):// URL, "
                               f"got {spec!r}")


def load_judge(spec: str) -> Callable[[str, str, str], float]:
    """``judge(id, prompt, answer) -> score`` for a spec (imports the callable now)."""
    check_judge_spec(spec)
    if _is_url(spec):
        return lambda id_, prompt, answer: _post(spec, {"id": id_, "prompt": prompt, "answer": answer})
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
    return lambda id_, prompt, answer: _number(fn(prompt, answer), spec)


def _post(url: str, payload: dict[str, Any]) -> float:
    import urllib.request

    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
        body = json.loads(resp.read().decode() or "null")
    return _number(body.get("score") if isinstance(body, dict) else body, url)


def _number(value: Any, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"judge {source} returned {value!r}, not a finite number")
    return float(value)


def judge_all(spec: str | None, items: list[dict[str, str]]) -> tuple[list[float | None], str]:
    """Scores for ``items`` (``id``, ``prompt``, ``answer``) and a note. No judge: all None and
    "not judged". A judge that fails leaves the scores None and the note names the error (the
    trained adapter and its generations are kept either way)."""
    if not spec:
        return [None] * len(items), NOT_JUDGED
    judge = load_judge(spec)
    try:
        scores: list[float | None] = [judge(it["id"], it["prompt"], it["answer"]) for it in items]
    except Exception as e:  # noqa: BLE001 - any judge failure is recorded, not fatal to the trial
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        return [None] * len(items), f"not judged: the judge {spec} failed ({reason})"
    return scores, f"judged by {spec}"
