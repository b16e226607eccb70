"""Slack interactivity with slack-bolt: buttons, modals and ``/earshot``, over Socket Mode or HTTP.

``SlackInteractivity`` builds one ``slack_bolt.App`` whose listeners call the plain handlers
of ``responders/interactions.py`` and carry out their ``Outcome``: ``views.open``,
``chat.update`` of the alert, ``chat.postEphemeral``, the reply to ``/earshot``.

Acks never wait behind Slack (Slack wants each one within 3 seconds): the App runs with
``process_before_response=True``, so a listener runs in the thread that received the request
and returns once it has acked; everything that calls Slack (including the approver-group
lookup a click may need) goes to ``FollowUps``, a bounded executor of its own. Bolt's
default single-workspace authorization (an ``auth.test`` call on the first request) is
replaced by the bot token as is (``_BotToken``), so nothing on the ack path calls Slack.

By ``mode``:

* ``socket`` (default): a ``SocketModeHandler`` (slack-sdk's built-in client, no extra
  dependency) holds an outbound WebSocket; ``watchdog()`` reconnects it when it is down and
  ``readiness()`` reports ``slack_connected`` for ``/readyz``.
* ``http``: ``handle_http(body, headers)`` serves ``POST /slack/events`` on earshot's ops
  port. The signature is checked (HMAC of the raw body, 5-minute window) and, because
  Slack's scheme has no replay memory, every accepted signature is remembered for the
  window and a second use is refused (``ReplayGuard``): 401. Then the body is read strictly
  (``read_request``): one that is not UTF-8, of another content type, not a JSON object, too
  deep, or whose known fields have the wrong type or length gets 400 with the reason, and
  Bolt is given only the known fields. Nothing a request holds can make the endpoint
  answer 500.

Redelivered payloads are harmless: the workflow records each click once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qsl

from slack_bolt import Ack, App, BoltRequest, Respond
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.authorize import Authorize
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import Clock

from earshot.listener import workflow as wf
from earshot.listener.models import Mention
from earshot.listener.reach import describe
from earshot.listener.store import Store

from .blocks import escape_mrkdwn
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
    """Why a request is not from Slack (``None``: it is): signature, age, replay.

    Slack's scheme (docs.slack.dev, "Verifying requests from Slack"): ``v0=`` + hex
    HMAC-SHA256 of ``v0:<timestamp>:<raw body>``, the timestamp within 5 minutes. The HMAC
    is taken over the body's bytes as received (any bytes: a body that is not UTF-8 is
    refused later, as a bad request, not here), and headers that are not ASCII never match.
    """
    clock = clock or Clock()
    signature = _header(headers, "x-slack-signature")
    timestamp = _header(headers, "x-slack-request-timestamp")
    if not signature or not timestamp:
        return "missing signature headers"
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        return "bad timestamp"
    if abs(clock.now() - int(timestamp)) > 300:
        return "timestamp outside the 5-minute window"
    raw = body.encode("utf-8") if isinstance(body, str) else body
    base = b"v0:" + timestamp.encode("ascii") + b":" + raw
    expected = b"v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest().encode()
    given = signature.encode("utf-8", "replace")
    if not signature.isascii() or not hmac.compare_digest(expected, given):
        return "signature mismatch"
    if guard is not None and not guard.first_use(f"{timestamp}:{signature}"):
        return "replayed request"
    return None


# -- reading a request's body ---------------------------------------------------------------


class BadRequest(ValueError):
    """A signed request whose body is not one earshot handles (HTTP 400)."""


#: How deep a payload may nest: Slack's own run to about 13 levels (a modal's blocks).
MAX_DEPTH = 48
#: What each known field of an interaction payload must be (the fields Bolt and the
#: handlers read; other fields are passed on unread). Slack's payload reference:
#: docs.slack.dev/reference/interaction-payloads.


class _Opt:
    """The spec, or null."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec


class _Each:
    """A list whose items follow the spec."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec


class _Map:
    """An object of any keys whose values follow the spec."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec


class _Text:
    """A string of at most ``limit`` characters."""

    def __init__(self, limit: int) -> None:
        self.limit = limit


#: Slack's ids and timestamps are short (``U0123ABCD``, ``1700000000.000100``); the
#: database keeps them in 64 characters. Other limits are Slack's own (Block Kit).
_ID = _Text(64)
_NAME = _Text(255)
_ELEMENT_STATE = {"type": str, "value": _Opt(str), "selected_option": _Opt({"value": str})}
_STATE = {"values": _Map(_Map(_ELEMENT_STATE))}
_SHAPE: dict[str, Any] = {
    "type": str,
    "token": str,
    "api_app_id": str,
    "trigger_id": _NAME,
    "response_url": str,
    "response_urls": _Each({"response_url": str, "channel_id": _ID}),
    "is_enterprise_install": bool,
    "user": {"id": _ID, "username": _NAME, "name": _NAME, "team_id": _ID},
    "team": _Opt({"id": _ID, "domain": _NAME, "enterprise_id": _ID}),
    "enterprise": _Opt({"id": _ID, "name": _NAME}),
    "channel": _Opt({"id": _ID, "name": _NAME}),
    "container": {
        "type": str,
        "channel_id": _ID,
        "message_ts": _ID,
        "thread_ts": _ID,
        "is_ephemeral": bool,
        "view_id": _ID,
    },
    "message": {"ts": _ID, "thread_ts": _ID, "user": _ID, "text": str},
    "actions": _Each(
        {
            "action_id": _Text(255),
            "block_id": _Text(255),
            "value": _Text(2000),
            "action_ts": _ID,
            "type": str,
        }
    ),
    "state": _STATE,
    "view": {
        "id": _ID,
        "team_id": _ID,
        "callback_id": _Text(255),
        "private_metadata": _Text(3000),
        "hash": _ID,
        "state": _STATE,
    },
}
#: The fields of a slash command (and of Slack's SSL check) passed on to Bolt, with their
#: limits (every other field at most 4000 characters, the command's text included).
_COMMAND_IDS = frozenset({"team_id", "enterprise_id", "channel_id", "user_id"})
_COMMAND_FIELDS = frozenset(
    {
        "ssl_check",
        "token",
        "team_id",
        "team_domain",
        "enterprise_id",
        "enterprise_name",
        "channel_id",
        "channel_name",
        "user_id",
        "user_name",
        "command",
        "text",
        "response_url",
        "trigger_id",
        "api_app_id",
        "is_enterprise_install",
    }
)
#: What each interaction type must carry, beyond the shape.
_REQUIRED = {
    "block_actions": ("user", "actions"),
    "view_submission": ("user", "view"),
}


def _check(value: Any, spec: Any, where: str) -> None:
    if isinstance(spec, _Opt):
        if value is not None:
            _check(value, spec.spec, where)
    elif isinstance(spec, _Each):
        if not isinstance(value, list):
            raise BadRequest(f"{where} is not a list")
        for index, item in enumerate(value):
            _check(item, spec.spec, f"{where}[{index}]")
    elif isinstance(spec, _Map):
        if not isinstance(value, dict):
            raise BadRequest(f"{where} is not an object")
        for key, item in value.items():
            _check(item, spec.spec, f"{where}.{key}"[:200])
    elif isinstance(spec, dict):
        if not isinstance(value, dict):
            raise BadRequest(f"{where} is not an object")
        for key, item_spec in spec.items():
            if key in value:
                _check(value[key], item_spec, f"{where}.{key}")
    elif isinstance(spec, _Text):
        if not isinstance(value, str):
            raise BadRequest(f"{where} is not a string")
        if len(value) > spec.limit:
            raise BadRequest(f"{where} is longer than {spec.limit} characters")
    elif spec is str or spec is bool:
        if not isinstance(value, spec):
            raise BadRequest(f"{where} is not a {'string' if spec is str else 'boolean'}")
    else:  # pragma: no cover - a mistake in _SHAPE
        raise TypeError(f"unknown spec {spec!r}")


def _sound(value: Any, what: str) -> None:
    """Refuse nesting past ``MAX_DEPTH`` and text that is not Unicode (a lone surrogate)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadRequest(f"{what} nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((key, depth) for key in item)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(f"{what} holds text that is not valid Unicode") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json(text: str, what: str) -> Any:
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise BadRequest(f"{what} nests deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        raise BadRequest(f"{what} is not JSON") from None
    _sound(value, what)
    return value


def read_request(body: bytes, headers: Mapping[str, Any]) -> dict[str, Any]:
    """The payload of a (verified) request to ``/slack/events``, or ``BadRequest``.

    Slack sends interactions (``payload=<JSON>``), slash commands and its SSL check as
    ``application/x-www-form-urlencoded``, and Events API callbacks (here only
    ``url_verification``) as ``application/json`` (docs.slack.dev, "Handling user
    interaction"; "Implementing slash commands"). Anything else, a payload that is not a
    JSON object of a known type, or a known field of the wrong type is refused.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8") from None
    media = (_header(headers, "content-type") or "").split(";", 1)[0].strip().lower()
    if media == "application/json":
        data = _json(text, "body")
        if not isinstance(data, dict):
            raise BadRequest("body is not a JSON object")
        if data.get("type") != "url_verification" or not isinstance(data.get("challenge"), str):
            raise BadRequest("a JSON body must be Slack's url_verification")
        return {"type": "url_verification", "challenge": data["challenge"]}
    if media not in ("application/x-www-form-urlencoded", ""):  # "": read as Slack's form
        raise BadRequest(f"unsupported content type {media[:60]!r}")
    try:
        fields = parse_qsl(text, keep_blank_values=True, strict_parsing=True, max_num_fields=100)
    except ValueError:
        raise BadRequest("body is not a form") from None
    form = dict(fields)
    if len(form) != len(fields):
        raise BadRequest("a form field is repeated")
    if "payload" not in form:
        if form.get("ssl_check") == "1" or form.get("command") == "/earshot":
            for key, value in form.items():
                if len(value) > (64 if key in _COMMAND_IDS else 4000):
                    raise BadRequest(f"{key} is too long")
            return {key: value for key, value in form.items() if key in _COMMAND_FIELDS}
        raise BadRequest("neither an interaction payload nor the /earshot command")
    payload = _json(form["payload"], "payload")
    if not isinstance(payload, dict):
        raise BadRequest("payload is not a JSON object")
    kind = payload.get("type")
    if not isinstance(kind, str) or kind not in _REQUIRED:
        raise BadRequest(f"unsupported payload type {str(kind)[:40]!r}")
    _check(payload, _SHAPE, "payload")
    for key in _REQUIRED[kind]:
        if key not in payload:
            raise BadRequest(f"payload.{key} is missing")
    if kind == "block_actions" and not payload["actions"]:
        raise BadRequest("payload.actions is empty")
    if kind == "block_actions" and not all("action_id" in a for a in payload["actions"]):
        raise BadRequest("an action has no action_id")
    if "id" not in payload["user"]:
        raise BadRequest("payload.user.id is missing")
    if kind == "view_submission" and "callback_id" not in payload["view"]:
        raise BadRequest("payload.view.callback_id is missing")
    # Bolt is given the known fields only: it reads some others (event, authorizations...)
    # without checking their types.
    return {key: value for key, value in payload.items() if key in _SHAPE}


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


def reach_escalation_text(oncall_group: str | None, sla_seconds: float) -> Callable[[Mention], str]:
    """The thread reply of a high-reach escalation (the shorter SLA), with the figures."""
    minutes = max(1, round(sla_seconds / 60))
    who = f"<!subteam^{oncall_group}> " if oncall_group else ""

    def text(mention: Mention) -> str:
        figures = escape_mrkdwn(describe(mention.reach_detail) or f"reach {mention.reach}")
        return (
            f"⏰📣 {who}high reach ({figures}) and not handled within {minutes} min. "
            "Can someone on call take it? (Assign to me / Handled above.)"
        )

    return text


class Busy(RuntimeError):
    """The follow-up queue is full."""


class FollowUps(Executor):
    """A bounded executor for the work after an ack: ``workers`` threads, ``queue`` waiting.

    Acks never wait on it: a listener acks and hands its Slack calls (and, for clicks, the
    handling itself) here. When ``queue`` tasks already wait, ``submit`` raises ``Busy`` at
    once instead of growing without bound.
    """

    def __init__(self, workers: int = 8, queue: int = 1000) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slack-follow-up")
        self._capacity = workers + queue
        self._slots = threading.BoundedSemaphore(self._capacity)
        self._idle = threading.Condition()
        self._pending = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if not self._slots.acquire(blocking=False):
            raise Busy("the Slack follow-up queue is full")
        with self._idle:
            self._pending += 1
        try:
            future = self._pool.submit(fn, *args, **kwargs)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: Future[Any] | None) -> None:
        self._slots.release()
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    @property
    def pending(self) -> int:
        """Tasks queued or running."""
        return self._pending

    @property
    def full(self) -> bool:
        """Whether ``submit`` would raise ``Busy`` now."""
        return self._pending >= self._capacity

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or running; False if ``timeout`` ran out first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


class _BotToken(Authorize):
    """The one workspace's bot token for every request, without calling Slack.

    Bolt's default for a single workspace calls ``auth.test`` on the first request, on the
    ack path; with a slow Slack that first ack would wait on it.
    """

    def __init__(self, token: str | None) -> None:
        self.token = token

    def __call__(
        self,
        *,
        context: Any,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None,
        **_: Any,
    ) -> AuthorizeResult:
        return AuthorizeResult(
            enterprise_id=enterprise_id, team_id=team_id, user_id=user_id, bot_token=self.token
        )


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
        #: Runs the work after each ack (Slack calls); tests pass one that runs it inline.
        self.listener_executor: Executor = listener_executor or FollowUps()
        config.connected = self.connected
        self.app = self._build_app()

    # -- the Bolt app ---------------------------------------------------------------------

    def _build_app(self) -> App:
        # process_before_response: each listener runs in the thread that received the
        # request and returns as soon as it has acked; what needs Slack (views.open,
        # chat.update, respond, the approver group) goes to ``listener_executor``, so an ack
        # never waits behind a slow Slack call (Bolt's own pool of 5 served both).
        app = App(
            client=WebClient(token=None, base_url=self.client.base_url, timeout=10),
            authorize=_BotToken(self.client.token),
            signing_secret=self.signing_secret,
            process_before_response=True,
            # handle_http has verified the signature on the raw body; Bolt gets the parsed
            # payload (read_request), which it could not verify again.
            request_verification_enabled=False,
            name="earshot",
        )
        store, config, client = self.store, self.config, self.client

        @app.action(re.compile(r".*"))
        def on_action(ack: Ack, body: dict[str, Any]) -> None:
            # Handling a click may ask Slack (the approver group): all of it follows the ack.
            if self._follow_up(
                "action", lambda: apply_outcome(client, handle_action(store, body, config))
            ):
                ack()

        @app.view(re.compile(r".*"))
        def on_view(ack: Ack, body: dict[str, Any]) -> None:
            # Validation and one short database write come before the ack, so a bad entry
            # can be shown in the modal (errors must travel in the ack); Slack calls follow.
            outcome = handle_view(store, body, config)
            if outcome.errors:
                ack(response_action="errors", errors=outcome.errors)
                return
            ack()
            self._follow_up("view", lambda: apply_outcome(client, outcome))

        @app.command("/earshot")
        def on_command(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
            def reply() -> None:
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

            if self._follow_up("command", reply):
                ack()
            else:
                ack(text="earshot is busy right now; nothing was done. Try again in a minute.")

        @app.error
        def on_error(error: Exception, body: dict[str, Any]) -> None:
            logger.error("slack listener failed: %s: %s", type(error).__name__, error)
            INTERACTIONS.labels(str((body or {}).get("type") or "unknown"), "error").inc()

        return app

    def _follow_up(self, kind: str, work: Callable[[], object]) -> bool:
        """Hand ``work`` to the follow-up executor; False (logged, counted) when it is full."""

        def run() -> None:
            try:
                work()
            except Exception:
                logger.exception("slack %s: follow-up failed", kind)
                INTERACTIONS.labels(kind, "error").inc()

        try:
            self.listener_executor.submit(run)
        except Busy:
            logger.error("slack %s: refused, the follow-up queue is full", kind)
            INTERACTIONS.labels(kind, "busy").inc()
            return False
        return True

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

    def stop(self, timeout: float = 15.0) -> None:
        """Close the socket; give the clicks already acked ``timeout`` s to finish."""
        if self.handler is not None:
            try:
                self.handler.close()
            except Exception:
                logger.exception("slack: closing the socket failed")
        followups = self.listener_executor
        if isinstance(followups, FollowUps):
            if not followups.wait_idle(timeout):
                logger.error(
                    "slack: %d acked interactions not finished at shutdown", followups.pending
                )
            followups.shutdown(wait=False, cancel_futures=True)

    # -- HTTP -----------------------------------------------------------------------------

    def handle_http(self, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        """Serve one ``POST /slack/events``: verify, refuse replays, read, dispatch to Bolt.

        An unsigned (or wrongly signed, stale, replayed) request gets 401; a signed one that
        is not a request earshot handles gets 400 with the reason (``read_request``); 503
        when the follow-up queue is full. Bolt answers the rest.
        """
        problem = verify_request(self.signing_secret, body, headers, self.replay_guard)
        if problem:
            logger.warning("slack http: refused: %s", problem)
            INTERACTIONS.labels("http", "refused").inc()
            return 401, {"content-type": "text/plain"}, f"{problem}\n".encode()
        try:
            payload = read_request(body, headers)
        except BadRequest as exc:
            logger.warning("slack http: bad request: %s", exc)
            INTERACTIONS.labels("http", "bad_request").inc()
            return 400, {"content-type": "text/plain"}, f"{exc}\n".encode()
        followups = self.listener_executor
        if isinstance(followups, FollowUps) and followups.full and "ssl_check" not in payload:
            INTERACTIONS.labels("http", "busy").inc()
            return 503, {"content-type": "text/plain", "retry-after": "10"}, b"busy\n"
        forwarded = {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-slack")}
        request = BoltRequest(
            body=json.dumps(payload),
            headers={**forwarded, "content-type": "application/json"},
            mode="http",
        )
        response = self.app.dispatch(request)
        out = {k: v[0] for k, v in response.headers.items() if v}
        return response.status, out, (response.body or "").encode()

    # -- jobs -----------------------------------------------------------------------------

    def escalate(self, now: datetime | None = None) -> list[int]:
        """Queue SLA escalations (thread replies) for overdue negative alerts; high-reach
        complaints on the shorter ``[reach] sla``."""
        try:
            reach = self.config.reach
            return wf.escalate_overdue(
                self.store,
                alerts_channel=self.config.alerts_channel,
                sla_seconds=self.config.sla_seconds,
                text=escalation_text(self.oncall_group, self.config.sla_seconds),
                now=now,
                reach=reach,
                reach_text=reach_escalation_text(self.oncall_group, reach.sla_seconds)
                if reach is not None and reach.sla_seconds
                else None,
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
