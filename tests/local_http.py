"""What the tests' local stand-ins for remote services share (``tests/judge_server.py``,
``tests/hub_server.py``): a request handler that answers in JSON and logs nothing, and a server
on 127.0.0.1 served from a thread for the length of a ``with`` block."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer


class JSONHandler(BaseHTTPRequestHandler):
    def send_json(self, status: int, obj: dict) -> None:
        out = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args) -> None:
        pass


class LocalServer:
    """``with server:`` serves ``server.http`` (an ``HTTPServer`` a subclass sets on
    127.0.0.1) from a thread, and closes it at the end."""

    http: HTTPServer

    @property
    def port(self) -> int:
        return self.http.server_address[1]

    def __enter__(self):
        threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.http.shutdown()
        self.http.server_close()
