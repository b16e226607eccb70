"""A loopback HTTP server standing in for a public API, for tests that run earshot as a
real subprocess (where respx cannot reach). Routes map a path regex to a handler."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Answer = tuple[int, dict[str, str], bytes]
Handler = Callable[[str, dict[str, str]], Answer]


def json_answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    return (
        status,
        {"content-type": "application/json", **(headers or {})},
        json.dumps(body).encode(),
    )


class FakeAPI:
    """``with FakeAPI() as api: api.route(r"/x", lambda path, params: json_answer({...}))``."""

    def __init__(self) -> None:
        self.routes: list[tuple[re.Pattern[str], Handler]] = []
        self.calls: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, pattern: str, handler: Handler) -> None:
        self.routes.append((re.compile(pattern), handler))

    def __enter__(self) -> FakeAPI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                params = {k: v[0] for k, v in parse_qs(parts.query).items()}
                with api._lock:
                    api.calls.append((parts.path, params))
                for pattern, handler in api.routes:
                    if pattern.search(parts.path):
                        status, headers, body = handler(parts.path, params)
                        break
                else:
                    status, headers, body = 404, {"content-type": "text/plain"}, b"no route"
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
