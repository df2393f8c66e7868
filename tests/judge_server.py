"""A deterministic local judge: a real HTTP server on 127.0.0.1 speaking OpenAI's
chat-completions format (``POST /v1/chat/completions`` -> ``{"choices": [{"message":
{"role": "assistant", "content": ...}}]}``), so tests exercise the real client path.

Its rule, stated so tests can compute the expected grades on their own: the answers are the
text after ``\\n\\n<letter>: `` in the prompt; an answer of ``w`` whitespace-separated words
gets ``min(9, 1 + w)``, and the reply is in the layout GPT-4o used in the reproduction report
(``Response A:`` / ``Score: N`` / ``Justification: ...``). ``mode`` switches it to a reply
without scores (``malformed``) or to an HTTP 401 (``unauthorized``).
"""

from __future__ import annotations

import json
import re
from http.server import HTTPServer

from local_http import JSONHandler, LocalServer

_ANSWER = re.compile(r"\n\n([A-Z]): (.*?) ?(?=\n\n[A-Z]: |\Z)", re.S)


def rule(answer: str) -> int:
    return min(9, 1 + len(answer.split()))


def grade(prompt: str) -> str:
    """The reply to one judge prompt under :func:`rule`."""
    graded = _ANSWER.findall(prompt.split("QUESTION:", 1)[1])
    return "\n\n".join(f"Response {letter}:\nScore: {rule(a)}\nJustification: {len(a.split())} words."
                       for letter, a in graded)


class JudgeServer(LocalServer):
    """``with JudgeServer() as j: j.url`` (the API base, ``http://127.0.0.1:PORT/v1``);
    ``j.requests`` holds every request body and its Authorization header."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.mode = "ok"
        owner = self

        class Handler(JSONHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                if owner.mode == "unauthorized":
                    return self.send_json(401, {"error": {"message": "Incorrect API key provided"}})
                content = ("I am unable to grade these responses." if owner.mode == "malformed"
                           else grade(body["messages"][-1]["content"]))
                self.send_json(200, {"id": "local", "object": "chat.completion", "model": body["model"],
                                     "choices": [{"index": 0, "finish_reason": "stop",
                                                  "message": {"role": "assistant", "content": content}}]})

        self.http = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.port}/v1"
