"""A local stand-in for the Hugging Face Hub: a real HTTP server on 127.0.0.1 speaking the part of
the Hub's HTTP API that ``HfApi.create_repo`` and ``HfApi.upload_folder`` call (repository
creation, the README metadata check, the pre-upload query, the NDJSON commit), so an upload goes
through the real client up to the wire. Each commit's files land in ``root/<namespace>/<name>/``.

The pre-upload answer puts every file in the "regular" upload mode (its bytes inline in the
commit, base64), which the Hub itself uses for small files: no LFS or Xet storage is involved.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from http.server import ThreadingHTTPServer
from pathlib import Path

from local_http import JSONHandler, LocalServer

_REPO_CALL = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<call>preupload|commit)/(?P<revision>[^/?]+)")


class HubServer(LocalServer):
    """``with HubServer(root) as hub: hub.url`` (for ``HF_ENDPOINT``); ``hub.requests`` holds
    (method, path, Authorization header) of every request, ``hub.commits`` each commit's header
    and file paths."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.requests: list[tuple[str, str, str | None]] = []
        self.commits: list[dict] = []
        owner = self

        class Handler(JSONHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                owner.requests.append(("POST", self.path, self.headers.get("Authorization")))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_json(*owner.answer(self.path, body))

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.port}"

    def answer(self, path: str, body: bytes) -> tuple[int, dict]:
        if path == "/api/repos/create":
            request = json.loads(body)
            repo = f"{request['organization']}/{request['name']}"
            (self.root / repo).mkdir(parents=True, exist_ok=True)
            return 200, {"url": f"{self.url}/{repo}"}
        if path == "/api/validate-yaml":
            return 200, {}
        m = _REPO_CALL.match(path)
        if m is None or not (self.root / m["repo"]).is_dir():
            return 404, {"error": f"no such repository or call: {path}"}
        if m["call"] == "preupload":
            files = json.loads(body)["files"]
            return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                   for f in files]}
        return 200, self._commit(m["repo"], body)

    def _commit(self, repo: str, body: bytes) -> dict:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(item["value"] for item in lines if item["key"] == "header")
        paths = []
        for item in lines:
            if item["key"] == "file":
                value = item["value"]
                target = self.root / repo / value["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(base64.b64decode(value["content"]))
                paths.append(value["path"])
        self.commits.append({"repo": repo, "header": header, "paths": paths})
        oid = hashlib.sha1(body).hexdigest()
        return {"commitUrl": f"{self.url}/{repo}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None}
