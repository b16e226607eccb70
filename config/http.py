"""The small in-process HTTP endpoint for ops: ``/healthz``, ``/readyz``, ``/metrics``.

* ``/healthz``: the process is alive and its scheduler thread runs (liveness).
* ``/readyz``: the database answers, the scheduler runs, and not every source is failing
  (readiness); the JSON body says which check failed.
* ``/metrics``: Prometheus text format (``earshot_*`` series).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from earshot.listener import metrics

logger = logging.getLogger("earshot.http")

Check = Callable[[], dict[str, Any]]
#: A POST route: (raw body, headers) -> (status, headers, body), e.g. ``/slack/events``.
PostRoute = Callable[[bytes, dict[str, str]], tuple[int, dict[str, str], bytes]]
MAX_POST_BYTES = 1_000_000


class _Server(ThreadingHTTPServer):
    """A thread per request, and room for bursts of connections.

    socketserver's default backlog of 5 reset connections when Slack sent a burst of
    interactions at once (20 concurrent clicks: some got "connection reset by peer").
    """

    daemon_threads = True
    request_queue_size = 128


class OpsServer:
    """Serves health, readiness and metrics on ``host:port`` from a daemon thread."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ready: Check,
        alive: Callable[[], bool] = lambda: True,
        before_metrics: Callable[[], None] | None = None,
        post: dict[str, PostRoute] | None = None,
    ) -> None:
        self.ready = ready
        self.post = post or {}
        self.alive = alive
        self.before_metrics = before_metrics
        self.server = _Server((host, port), self._handler())
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="ops-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()
        logger.info("ops endpoint on port %d: /healthz /readyz /metrics", self.port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        ops = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                try:
                    if path == "/healthz":
                        ok = ops.alive()
                        self._send(200 if ok else 503, b"ok\n" if ok else b"dead\n", "text/plain")
                    elif path == "/readyz":
                        report = ops.ready()
                        status = 200 if report.get("ready") else 503
                        self._send(status, json.dumps(report).encode(), "application/json")
                    elif path == "/metrics":
                        if ops.before_metrics:
                            ops.before_metrics()
                        self._send(200, generate_latest(metrics.REGISTRY), CONTENT_TYPE_LATEST)
                    else:
                        self._send(404, b"not found\n", "text/plain")
                except Exception:
                    logger.exception("ops endpoint %s failed", path)
                    self._send(500, b"error\n", "text/plain")

            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0]
                route = ops.post.get(path)
                if route is None:
                    self._send(404, b"not found\n", "text/plain")
                    return
                try:
                    length = int(self.headers.get("content-length") or 0)
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_POST_BYTES:
                    self._send(413, b"bad content-length\n", "text/plain")
                    return
                body = self.rfile.read(length)
                try:
                    status, headers, answer = route(body, dict(self.headers.items()))
                except Exception:
                    logger.exception("POST %s failed", path)
                    self._send(500, b"error\n", "text/plain")
                    return
                self._send(status, answer, headers.get("content-type", "text/plain"))

        return Handler
