"""Slack interactivity with slack-bolt: buttons, modals and ``/earshot``, over Socket Mode or HTTP.

``SlackInteractivity`` builds one ``slack_bolt.App`` (``process_before_response=False``: every
listener acks at once and works after, on Bolt's thread pool) whose listeners call the plain
handlers of ``responders/interactions.py`` and carry out their ``Outcome``: ``views.open``,
``chat.update`` of the alert, ``chat.postEphemeral``. Then, by ``mode``:

* ``socket`` (default): a ``SocketModeHandler`` (slack-sdk's built-in client, no extra
  dependency) holds an outbound WebSocket; ``watchdog()`` reconnects it when it is down and
  ``readiness()`` reports ``slack_connected`` for ``/readyz``.
* ``http``: ``handle_http(body, headers)`` serves ``POST /slack/events`` on earshot's ops
  port. The signature is checked (``SignatureVerifier``: HMAC of the raw body, 5-minute
  window) and, because Slack's scheme has no replay memory, every accepted signature is
  remembered for the window and a second use is refused (``ReplayGuard``). Bolt checks the
  signature again before dispatching.

Redelivered payloads are harmless: the workflow records each click once.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from datetime import datetime
from typing import Any, Literal

from slack_bolt import Ack, App, BoltRequest, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import Clock, SignatureVerifier

from earshot.listener import workflow as wf
from earshot.listener.models import Mention
from earshot.listener.store import Store

from .interactions import (
    INTERACTIONS,
    InteractionConfig,
    Outcome,
    handle_action,
    handle_command,
    handle_view,
)

logger = logging.getLogger("earshot.responders.slack_app")

Mode = Literal["socket", "http"]
HttpAnswer = tuple[int, dict[str, str], bytes]


class ApproverCheck:
    """Who may approve: listed user ids, or members of a user group (cached ``ttl`` s).

    Group membership comes from ``usergroups.users.list`` (scope ``usergroups:read``). If
    Slack cannot be asked, the last known members are used; with none known, nobody from
    the group is allowed (fail closed).
    """

    def __init__(
        self,
        users: Iterable[str] = (),
        group: str | None = None,
        client: WebClient | None = None,
        *,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.users = frozenset(users)
        self.group = group
        self.client = client
        self.ttl = ttl
        self.clock = clock
        self._members: frozenset[str] | None = None
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def members(self) -> frozenset[str]:
        """The group's members (empty without a group)."""
        if not self.group or self.client is None:
            return frozenset()
        with self._lock:
            if self._members is None or self.clock() - self._read_at >= self.ttl:
                try:
                    response = self.client.usergroups_users_list(usergroup=self.group)
                    self._members = frozenset(str(u) for u in response.get("users") or [])
                    self._read_at = self.clock()
                except (SlackApiError, SlackClientError, OSError) as exc:
                    logger.warning("approver group %s: cannot read members: %s", self.group, exc)
            return self._members or frozenset()

    def __call__(self, user_id: str) -> bool:
        return bool(user_id) and (user_id in self.users or user_id in self.members())


class ReplayGuard:
    """Remembers accepted request signatures for ``ttl`` seconds; a second use is a replay."""

    def __init__(
        self,
        ttl: float = 330.0,
        *,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_use(self, signature: str) -> bool:
        """True the first time ``signature`` is seen within ``ttl``; remembers it."""
        now = self.clock()
        with self._lock:
            while self._seen:
                oldest, at = next(iter(self._seen.items()))
                if now - at < self.ttl and len(self._seen) < self.max_entries:
                    break
                del self._seen[oldest]
            if signature in self._seen:
                return False
            self._seen[signature] = now
            return True


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            value = value[0] if isinstance(value, list | tuple) else value
            return str(value)
    return None


def verify_request(
    signing_secret: str,
    body: bytes | str,
    headers: Mapping[str, Any],
    guard: ReplayGuard | None = None,
    *,
    clock: Clock | None = None,
) -> str | None:
    """Why a request is not from Slack (``None``: it is): signature, age, replay."""
    clock = clock or Clock()
    verifier = SignatureVerifier(signing_secret, clock=clock)
    signature = _header(headers, "x-slack-signature")
    timestamp = _header(headers, "x-slack-request-timestamp")
    if not signature or not timestamp:
        return "missing signature headers"
    try:
        int(timestamp)
    except ValueError:
        return "bad timestamp"
    if not verifier.is_valid(body, timestamp, signature):
        now = clock.now()
        if abs(now - int(timestamp)) > 300:
            return "timestamp outside the 5-minute window"
        return "signature mismatch"
    if guard is not None and not guard.first_use(f"{timestamp}:{signature}"):
        return "replayed request"
    return None


def apply_outcome(client: WebClient, outcome: Outcome) -> None:
    """Carry out an ``Outcome`` in Slack. Slack errors are logged and counted, never raised."""
    if outcome.view and outcome.trigger_id:
        try:
            client.views_open(trigger_id=outcome.trigger_id, view=outcome.view)
        except (SlackApiError, SlackClientError, OSError) as exc:
            logger.warning("views.open failed: %s", exc)
            INTERACTIONS.labels(outcome.kind, "views_open_failed").inc()
            if outcome.ephemeral is None:
                outcome.ephemeral = "Sorry, earshot could not open the form. Try again."
    if outcome.update is not None:
        if outcome.channel and outcome.ts:
            try:
                client.chat_update(
                    channel=outcome.channel,
                    ts=outcome.ts,
                    text=outcome.update.text,
                    blocks=outcome.update.blocks,
                )
            except (SlackApiError, SlackClientError, OSError) as exc:
                error = _slack_error(exc)
                logger.warning(
                    "chat.update of %s/%s failed: %s", outcome.channel, outcome.ts, error
                )
                INTERACTIONS.labels(outcome.kind, "update_failed").inc()
                outcome.ephemeral = f"Saved, but the alert could not be updated in Slack ({error})."
        else:
            logger.info("no message to update for a %s action", outcome.kind)
    if outcome.ephemeral and outcome.user_id and outcome.reply_channel:
        try:
            client.chat_postEphemeral(
                channel=outcome.reply_channel, user=outcome.user_id, text=outcome.ephemeral
            )
        except (SlackApiError, SlackClientError, OSError) as exc:
            logger.warning("chat.postEphemeral failed: %s", _slack_error(exc))
            INTERACTIONS.labels(outcome.kind, "ephemeral_failed").inc()


def _slack_error(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        try:
            return str(exc.response.get("error") or exc.response.status_code)
        except Exception:
            return "slack error"
    return type(exc).__name__


def escalation_text(oncall_group: str | None, sla_seconds: float) -> Callable[[Mention], str]:
    """The thread reply of an SLA escalation, mentioning the on-call group."""
    minutes = round(sla_seconds / 60)
    who = f"<!subteam^{oncall_group}> " if oncall_group else ""

    def text(_mention: Mention) -> str:
        return (
            f"⏰ {who}this alert has not been handled within {minutes} min. "
            "Can someone on call take it? (Assign to me / Handled above.)"
        )

    return text


class SlackInteractivity:
    """The Bolt app, its connection (Socket Mode) or endpoint (HTTP), and its jobs."""

    def __init__(
        self,
        store: Store,
        config: InteractionConfig,
        *,
        client: WebClient,
        mode: Mode = "socket",
        app_token: str | None = None,
        signing_secret: str | None = None,
        oncall_group: str | None = None,
        replay_guard: ReplayGuard | None = None,
        listener_executor: Executor | None = None,
    ) -> None:
        if mode == "socket" and not app_token:
            raise ValueError("Socket Mode needs an app-level token (SLACK_APP_TOKEN)")
        if mode == "http" and not signing_secret:
            raise ValueError("HTTP mode needs the signing secret (SLACK_SIGNING_SECRET)")
        self.store = store
        self.config = config
        self.client = client
        self.mode: Mode = mode
        self.app_token = app_token
        self.signing_secret = signing_secret or ""
        self.oncall_group = oncall_group
        self.replay_guard = replay_guard or ReplayGuard()
        self.handler: Any = None
        self.last_error: str | None = None
        self.reconnects = 0
        self.listener_executor = listener_executor
        config.connected = self.connected
        self.app = self._build_app()

    # -- the Bolt app ---------------------------------------------------------------------

    def _build_app(self) -> App:
        app = App(
            client=self.client,
            signing_secret=self.signing_secret,
            process_before_response=False,
            token_verification_enabled=False,
            request_verification_enabled=self.mode == "http",
            name="earshot",
            listener_executor=self.listener_executor,
        )
        store, config = self.store, self.config

        @app.action(re.compile(r".+"))
        def on_action(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
            ack()
            apply_outcome(client, handle_action(store, body, config))

        @app.view(re.compile(r".+"))
        def on_view(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
            # Validation and one short database write come before the ack, so a bad entry
            # can be shown in the modal (errors must travel in the ack); Slack calls follow.
            outcome = handle_view(store, body, config)
            if outcome.errors:
                ack(response_action="errors", errors=outcome.errors)
                return
            ack()
            apply_outcome(client, outcome)

        @app.command("/earshot")
        def on_command(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
            ack()
            outcome = handle_command(store, body, config)
            text = outcome.ephemeral or ""
            try:
                if body.get("response_url"):
                    respond(text=text, response_type="ephemeral")
                else:
                    apply_outcome(client, outcome)
            except Exception as exc:
                logger.warning("/earshot reply failed: %s", exc)
                INTERACTIONS.labels("command", "reply_failed").inc()

        @app.error
        def on_error(error: Exception, body: dict[str, Any]) -> None:
            logger.error("slack listener failed: %s: %s", type(error).__name__, error)
            INTERACTIONS.labels(str((body or {}).get("type") or "unknown"), "error").inc()

        return app

    # -- Socket Mode ----------------------------------------------------------------------

    def _socket_handler(self) -> Any:
        if self.handler is None:
            from slack_bolt.adapter.socket_mode import SocketModeHandler

            self.handler = SocketModeHandler(self.app, self.app_token)
        return self.handler

    def start(self) -> None:
        """Open the Socket Mode connection (HTTP mode: nothing to start)."""
        if self.mode != "socket":
            return
        self._connect()

    def _connect(self) -> bool:
        try:
            self._socket_handler().connect()
            self.last_error = None
            logger.info("slack: Socket Mode connected")
            return True
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            logger.error("slack: Socket Mode connection failed: %s", self.last_error)
            return False

    def connected(self) -> bool:
        """Whether earshot can receive clicks: the socket is up (HTTP mode: always)."""
        if self.mode != "socket":
            return True
        handler = self.handler
        if handler is None:
            return False
        try:
            return bool(handler.client.is_connected())
        except Exception:
            return False

    def watchdog(self) -> bool:
        """Reconnect a dropped socket (a backstop to the client's own reconnects)."""
        if self.mode != "socket" or self.connected():
            return True
        logger.warning("slack: Socket Mode is not connected; reconnecting")
        self.reconnects += 1
        return self._connect() and self.connected()

    def readiness(self) -> dict[str, Any]:
        """For ``/readyz``: ``slack_connected`` (``Service.readiness`` ANDs it into ready)."""
        report: dict[str, Any] = {"slack_mode": self.mode, "slack_connected": self.connected()}
        if self.last_error and not report["slack_connected"]:
            report["slack_error"] = self.last_error[:200]
        return report

    def stop(self) -> None:
        """Close the socket."""
        if self.handler is not None:
            try:
                self.handler.close()
            except Exception:
                logger.exception("slack: closing the socket failed")

    # -- HTTP -----------------------------------------------------------------------------

    def handle_http(self, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        """Serve one ``POST /slack/events``: verify, refuse replays, dispatch to Bolt."""
        problem = verify_request(self.signing_secret, body, headers, self.replay_guard)
        if problem:
            logger.warning("slack http: refused: %s", problem)
            INTERACTIONS.labels("http", "refused").inc()
            return 401, {"content-type": "text/plain"}, f"{problem}\n".encode()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return 400, {"content-type": "text/plain"}, b"body is not UTF-8\n"
        request = BoltRequest(
            body=text, headers={k.lower(): v for k, v in headers.items()}, mode="http"
        )
        response = self.app.dispatch(request)
        out = {k: v[0] for k, v in response.headers.items() if v}
        return response.status, out, (response.body or "").encode()

    # -- jobs -----------------------------------------------------------------------------

    def escalate(self, now: datetime | None = None) -> list[int]:
        """Queue SLA escalations (thread replies) for overdue negative alerts."""
        try:
            return wf.escalate_overdue(
                self.store,
                alerts_channel=self.config.alerts_channel,
                sla_seconds=self.config.sla_seconds,
                text=escalation_text(self.oncall_group, self.config.sla_seconds),
                now=now,
            )
        except Exception:
            logger.exception("SLA escalation round failed")
            return []

    def jobs(self) -> list[tuple[str, float, Callable[[], object]]]:
        """Scheduler jobs: ``(id, every seconds, function)``."""
        jobs: list[tuple[str, float, Callable[[], object]]] = [("slack-sla", 60.0, self.escalate)]
        if self.mode == "socket":
            jobs.append(("slack-watchdog", 30.0, self.watchdog))
        return jobs
