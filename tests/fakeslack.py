"""A loopback fake of the Slack Web API, for tests: real HTTP, real slack-sdk client.

It records every ``chat.postMessage`` and can be told to misbehave: a scripted list of
faults answered before normal service (429 with Retry-After, 500 HTML, ``invalid_auth``...),
or a per-channel rate limit of one message per ``rate_window`` seconds.

It keeps Slack's contract where earshot relies on it (the docs.slack.dev method pages):
arguments come as a GET query string, a form body or both, JSON bodies only for write
methods, and a call without a token gets ``not_authed``; ``chat.postMessage`` answers with
the channel's id (whatever name was posted to) and the ``ts``; ``conversations.history``
holds parent messages only (thread replies are not in it), ``conversations.replies``
returns the parent first and then the thread; both paginate with ``cursor`` and return
message metadata only with ``include_all_metadata``; ``chat.update`` of a message it never
posted (or posted in another channel) is refused with ``message_not_found``, of a person's
message with ``cant_update_message``, and an accepted one changes the stored message.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

FIXTURES = Path(__file__).parent / "fixtures" / "slack" / "web_api"
#: Methods that only read: GET or form arguments (Slack takes JSON bodies for writes only).
READ_METHODS = frozenset({"conversations.history", "conversations.replies", "conversations.list"})


@dataclass
class Fault:
    """One scripted answer: an HTTP status, headers and a body (JSON or raw bytes)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "chat.postMessage"
    #: Apply the post anyway before answering (Slack's "it may have succeeded" errors).
    apply: bool = False
    #: Wait this long before answering (longer than the client's timeout: a timeout).
    delay: float = 0.0
    #: Close the connection without any answer (a connection reset).
    reset: bool = False
    #: Only for posts in a thread (True) or outside one (False); None: any.
    in_thread: bool | None = None

    def matches(self, method: str, params: dict[str, Any]) -> bool:
        if method != self.method:
            return False
        return self.in_thread is None or bool(params.get("thread_ts")) == self.in_thread


def _flag(value: Any) -> bool:
    """A boolean argument as Slack reads it: ``1``/``true`` (slack-sdk sends ``1``)."""
    return str(value).lower() in ("1", "true")


def _error(error: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"ok": False, "error": error}).encode()
    return 200, {"content-type": "application/json"}, body


def fault_from_case(name: str) -> Fault:
    """A ``Fault`` from a named case of fixtures/slack/web_api/error_cases.json."""
    cases = json.loads((FIXTURES / "error_cases.json").read_text())["cases"]
    case = next(c for c in cases if c["name"] == name)
    body: Any = case.get("body")
    if case.get("body_file"):
        raw = (FIXTURES / case["body_file"]).read_bytes()
        body = json.loads(raw) if case["body_file"].endswith(".json") else raw
    return Fault(status=case["http_status"], body=body, headers=dict(case.get("headers") or {}))


class FakeSlack:
    """Start with ``with FakeSlack() as slack:``; point ``api_url`` at ``slack.api_url``."""

    def __init__(self, *, rate_window: float | None = None, post_delay: float = 0.0) -> None:
        #: Seconds to wait after a post is recorded and before answering: widens the window in
        #: which a client can die between "sent" and "marked sent" (crash tests).
        self.post_delay = post_delay
        self.channel_ids: dict[str, str] = {}
        self.messages: list[dict[str, Any]] = []
        # Interactivity (tests/test_slack_*.py): what earshot did in answer to clicks.
        self.updates: list[dict[str, Any]] = []  # chat.update
        self.ephemerals: list[dict[str, Any]] = []  # chat.postEphemeral
        self.views: list[dict[str, Any]] = []  # views.open
        self.responses: list[dict[str, Any]] = []  # posts to response_url (see response_url)
        self.usergroups: dict[str, list[str]] = {}  # usergroups.users.list answers
        # File uploads (files_upload_v2): getUploadURLExternal, the upload POST, complete.
        self.uploads: dict[str, dict[str, Any]] = {}  # file_id -> filename, length, content
        self.files: list[dict[str, Any]] = []  # completed: id, title, channel_id, content
        self.update_error: str | None = None  # answer chat.update with this error once
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.faults: list[Fault] = []
        self.rate_window = rate_window
        #: Read methods return at most this many messages a page, whatever the ``limit``
        #: (Slack: "fewer than the requested number of items may be returned").
        self.page_cap: int | None = None
        self.rejected = 0
        #: A slow Slack: while ``gate`` is set up (``slow_down``), every call waits for it to
        #: open (or ``hold`` seconds) before it is answered; ``held`` counts waiting calls.
        self.gate: threading.Event | None = None
        self._watches: list[tuple[int, threading.Event]] = []
        self.hold = 0.0
        self.held = 0
        self._last_post: dict[str, float] = {}
        self._lock = threading.Lock()
        self._ts = 1_700_000_000
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def api_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/api/"

    def __enter__(self) -> FakeSlack:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def response_url(self) -> str:
        """A ``response_url`` for payloads: posts to it are recorded in ``responses``."""
        return self.api_url + "response.url"

    def when_posted(self, count: int) -> threading.Event:
        """An event set as soon as ``count`` messages have been posted in all (crash tests
        kill a client right then, while the fake holds its answer for ``post_delay``)."""
        event = threading.Event()
        with self._lock:
            if len(self.messages) >= count:
                event.set()
            else:
                self._watches.append((count, event))
        return event

    def slow_down(self, hold: float) -> threading.Event:
        """From now on answer each call after ``hold`` s, or once the returned gate is set."""
        self.hold = hold
        self.gate = threading.Event()
        return self.gate

    def _wait_at_gate(self) -> None:
        gate = self.gate
        if gate is None:
            return
        with self._lock:
            self.held += 1
        gate.wait(self.hold)

    def texts(self) -> list[str]:
        return [m.get("text", "") for m in self.messages]

    def _answer(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requests.append((method, params))
            fault = next((f for f in self.faults if f.matches(method, params)), None)
            if fault is not None:
                self.faults.remove(fault)
                if fault.apply and method == "chat.postMessage":
                    self._post(params)
                body = fault.body
                raw = body if isinstance(body, bytes) else json.dumps(body or {}).encode()
                headers = {"content-type": "application/json; charset=utf-8", **fault.headers}
                if fault.delay:
                    headers["x-fake-delay"] = str(fault.delay)
                if fault.reset:
                    headers["x-fake-reset"] = "1"
                return fault.status, headers, raw
            if method == "chat.postMessage":
                channel = str(params.get("channel"))
                now = time.monotonic()
                last = self._last_post.get(channel)
                if self.rate_window and last is not None and now - last < self.rate_window:
                    self.rejected += 1
                    wait = max(1, round(self.rate_window - (now - last) + 0.49))
                    return (
                        429,
                        {"retry-after": str(wait), "content-type": "application/json"},
                        b'{"ok": false, "error": "ratelimited"}',
                    )
                self._last_post[channel] = now
                message = self._post(params)
                body = {
                    "ok": True,
                    "channel": message["channel_id"],
                    "ts": message["ts"],
                    "message": self._as_read(message, metadata=False),
                }
                return 200, {"content-type": "application/json"}, json.dumps(body).encode()
            if method == "conversations.list":
                channels = [
                    {"id": cid, "name": name.lstrip("#")} for name, cid in self.channel_ids.items()
                ]
                body = {"ok": True, "channels": channels, "response_metadata": {"next_cursor": ""}}
                return 200, {"content-type": "application/json"}, json.dumps(body).encode()
            if method in ("conversations.history", "conversations.replies"):
                return self._read(method, params)
            if method in ("chat.update", "chat.postEphemeral", "views.open", "response.url"):
                records = {
                    "chat.update": self.updates,
                    "chat.postEphemeral": self.ephemerals,
                    "views.open": self.views,
                    "response.url": self.responses,
                }[method]
                for key in ("blocks", "view"):
                    if isinstance(params.get(key), str):
                        params[key] = json.loads(params[key])
                edited = None
                if method == "chat.update":
                    # As in Slack: the message must exist in that very channel, and only
                    # the bot's own messages can be edited by its token.
                    edited = self._message(
                        self.channel_id(str(params.get("channel") or "")), str(params.get("ts"))
                    )
                    if edited is None:
                        return _error("message_not_found")
                    if edited.get("user"):
                        return _error("cant_update_message")
                if method == "chat.update" and self.update_error:
                    error, self.update_error = self.update_error, None
                    return (
                        200,
                        {"content-type": "application/json"},
                        json.dumps({"ok": False, "error": error}).encode(),
                    )
                records.append(params)
                if edited is not None:
                    for key in ("text", "blocks", "metadata"):
                        if key in params:
                            value = params[key]
                            if key == "metadata" and isinstance(value, str):
                                value = json.loads(value)
                            edited[key] = value
                    edited["edited"] = {"user": "UBOT", "ts": f"{time.time():.6f}"}
                channel = params.get("channel")
                if method == "chat.update":  # Slack answers with the channel's id
                    channel = self.channel_id(str(channel or ""))
                body = {"ok": True, "channel": channel, "ts": params.get("ts")}
                return 200, {"content-type": "application/json"}, json.dumps(body).encode()
            if method == "files.getUploadURLExternal":
                real = json.loads(
                    (
                        FIXTURES / "response_real_files_getUploadURLExternal.sdk_docs.json"
                    ).read_text()
                )
                file_id = f"F{len(self.uploads) + 1:08d}"
                self.uploads[file_id] = {
                    "filename": params.get("filename"),
                    "length": int(params.get("length") or 0),
                    "content": None,
                }
                body = {**real["body"], "file_id": file_id}
                body["upload_url"] = f"{self.api_url.removesuffix('/api/')}/upload/v1/{file_id}"
                return 200, {"content-type": "application/json"}, json.dumps(body).encode()
            if method == "files.completeUploadExternal":
                files = params.get("files")
                files = json.loads(files) if isinstance(files, str) else files or []
                done = []
                for item in files:
                    upload = self.uploads.get(str(item.get("id")))
                    if upload is None or upload["content"] is None:
                        body = {"ok": False, "error": "file_not_found"}
                        return 200, {"content-type": "application/json"}, json.dumps(body).encode()
                    record = {
                        "id": item["id"],
                        "title": item.get("title"),
                        "name": upload["filename"],
                        "channel_id": params.get("channel_id"),
                        "initial_comment": params.get("initial_comment"),
                        "content": upload["content"],
                    }
                    self.files.append(record)
                    done.append({"id": item["id"], "title": item.get("title")})
                body = {"ok": True, "files": done}
                return 200, {"content-type": "application/json"}, json.dumps(body).encode()
            if method == "usergroups.users.list":
                group = str(params.get("usergroup"))
                if group not in self.usergroups:
                    body = {"ok": False, "error": "no_such_subteam"}
                else:
                    body = {"ok": True, "users": self.usergroups[group]}
                return 200, {"content-type": "application/json"}, json.dumps(body).encode()
            if method == "apps.connections.open":
                body = {"ok": False, "error": "invalid_auth"}
                return 200, {"content-type": "application/json"}, json.dumps(body).encode()
            if method == "auth.test":
                body = {"ok": True, "user_id": "UBOT", "team_id": "T1", "bot_id": "B1"}
                return 200, {"content-type": "application/json"}, json.dumps(body).encode()
            return 200, {"content-type": "application/json"}, b'{"ok": true}'

    def channel_id(self, name: str) -> str:
        if name.startswith("C") and name[1:].isalnum() and name.isupper():
            return name
        return self.channel_ids.setdefault(name, f"C{len(self.channel_ids) + 1:08d}")

    def _post(self, params: dict[str, Any]) -> dict[str, Any]:
        self._ts += 1
        message = dict(params)
        # Real-time-ish timestamps, so `oldest=` lookups behave like Slack's.
        message["ts"] = f"{max(self._ts, int(time.time())) + 0:d}.{self._ts % 1_000_000:06d}"
        message["channel_id"] = self.channel_id(str(params.get("channel")))
        if message.get("thread_ts"):
            # A reply to a reply joins the parent's thread, as in Slack.
            parent = self._message(message["channel_id"], str(message["thread_ts"]))
            if parent is not None and parent.get("thread_ts"):
                message["thread_ts"] = parent["thread_ts"]
        self.messages.append(message)
        for count, event in list(self._watches):
            if len(self.messages) >= count:
                event.set()
                self._watches.remove((count, event))
        return message

    def post_as_user(self, channel: str, text: str, user: str = "U0PERSON") -> str:
        """A message a person posted (the bot cannot edit it: ``cant_update_message``)."""
        with self._lock:
            return str(self._post({"channel": channel, "text": text, "user": user})["ts"])

    def _message(self, channel_id: str, ts: str) -> dict[str, Any] | None:
        return next(
            (m for m in self.messages if m["channel_id"] == channel_id and m["ts"] == ts), None
        )

    def _as_read(self, message: dict[str, Any], *, metadata: bool) -> dict[str, Any]:
        """A stored message as the read methods return it (a bot message)."""
        read: dict[str, Any] = {
            "type": "message",
            "user": "UBOT",
            "bot_id": "B1",
            "app_id": "A1",
            "text": message.get("text", ""),
            "ts": message["ts"],
        }
        if message.get("blocks"):
            read["blocks"] = message["blocks"]
        thread = message.get("thread_ts")
        replies = [
            m
            for m in self.messages
            if m["channel_id"] == message["channel_id"] and m.get("thread_ts") == message["ts"]
        ]
        if thread:
            read["thread_ts"] = thread
            read["parent_user_id"] = "UBOT"
        elif replies:  # a thread's parent
            read.update(
                thread_ts=message["ts"],
                reply_count=len(replies),
                reply_users=["UBOT"],
                reply_users_count=1,
                latest_reply=replies[-1]["ts"],
            )
        if metadata and message.get("metadata"):
            read["metadata"] = message["metadata"]
        return read

    def _read(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """``conversations.history`` (parents only, newest first) or ``.replies`` (a thread).

        As in Slack: history never holds thread replies (only parents, and replies sent with
        ``reply_broadcast``); replies returns the parent first, then its replies oldest
        first; metadata comes back only with ``include_all_metadata``; ``oldest``/``latest``
        are exclusive unless ``inclusive``; pages follow ``limit`` and ``cursor``, and a page
        may hold fewer than ``limit`` messages (``page_cap``) while ``has_more`` says more.
        """
        cid = str(params.get("channel") or "")
        known = set(self.channel_ids.values()) | {m["channel_id"] for m in self.messages}
        if cid not in known:
            return _error("channel_not_found")
        inclusive = _flag(params.get("inclusive"))
        try:
            oldest = float(params.get("oldest") or 0)
            latest = float(params["latest"]) if params.get("latest") else float("inf")
        except ValueError:
            return _error("invalid_ts_oldest")

        def within(m: dict[str, Any]) -> bool:
            ts = float(m["ts"])
            if inclusive:
                return oldest <= ts <= latest
            return oldest < ts < latest

        in_channel = [m for m in self.messages if m["channel_id"] == cid]
        lead: list[dict[str, Any]] = []
        if method == "conversations.history":
            found = [
                m
                for m in reversed(in_channel)
                if within(m) and (not m.get("thread_ts") or _flag(m.get("reply_broadcast")))
            ]
            default_limit = 100
        else:
            asked = self._message(cid, str(params.get("ts") or ""))
            if asked is None:
                return _error("thread_not_found")
            root = str(asked.get("thread_ts") or asked["ts"])
            parent = self._message(cid, root)
            lead = [parent] if parent is not None else []
            found = [m for m in in_channel if m.get("thread_ts") == root and within(m)]
            default_limit = 1000
        found = lead + found
        try:
            start = int(base64.b64decode(str(params["cursor"])).decode().removeprefix("next:"))
        except KeyError:
            start = 0
        except ValueError:
            return _error("invalid_cursor")
        limit = int(params.get("limit") or default_limit)
        if self.page_cap:
            limit = min(limit, self.page_cap)
        page = found[start : start + limit]
        more = start + limit < len(found)
        metadata = _flag(params.get("include_all_metadata"))
        body: dict[str, Any] = {
            "ok": True,
            "messages": [self._as_read(m, metadata=metadata) for m in page],
            "has_more": more,
            "response_metadata": {
                "next_cursor": base64.b64encode(f"next:{start + limit}".encode()).decode()
                if more
                else ""
            },
        }
        return 200, {"content-type": "application/json"}, json.dumps(body).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                if self.path.startswith("/upload/v1/"):  # files_upload_v2 step 2: raw bytes
                    file_id = self.path.rsplit("/", 1)[-1]
                    with fake._lock:
                        upload = fake.uploads.get(file_id)
                        if upload is not None:
                            upload["content"] = raw
                    status = 200 if upload is not None else 404
                    answer = b"OK - " + str(len(raw)).encode()
                    self.send_response(status)
                    self.send_header("content-type", "text/plain")
                    self.send_header("content-length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                    return
                path, _, query = self.path.partition("?")
                method = path.rsplit("/", 1)[-1]
                kind = self.headers.get("content-type", "")
                params: dict[str, Any] = {}
                if "json" in kind:
                    # Slack reads JSON bodies for write methods only; a read method given
                    # one sees no arguments.
                    if method not in READ_METHODS:
                        params = json.loads(raw or b"{}")
                else:
                    params = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                    for key in ("blocks", "metadata"):
                        if isinstance(params.get(key), str):
                            params[key] = json.loads(params[key])
                if query:  # GET query string arguments, alone or mixed with a POST body
                    params.update({k: v[0] for k, v in parse_qs(query).items()})
                fake._wait_at_gate()
                bearer = self.headers.get("authorization", "").removeprefix("Bearer ").strip()
                if method == "response.url" or bearer or params.get("token"):
                    status, headers, body = fake._answer(method, params)
                else:
                    status, headers, body = _error("not_authed")
                if method == "chat.postMessage" and fake.post_delay and status == 200:
                    time.sleep(fake.post_delay)
                if "x-fake-delay" in headers:
                    time.sleep(float(headers.pop("x-fake-delay")))
                if headers.pop("x-fake-reset", None):
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(2)
                    return
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                # The client may have been killed mid-request (crash tests).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            do_GET = do_POST

        return Handler
