"""The Slack channel: ``chat.postMessage`` through slack-sdk's ``WebClient``.

Slack answers most errors with HTTP 200 and ``{"ok": false, "error": ...}``; rate limits
with HTTP 429 and ``Retry-After``. This module sorts them into ``DeliveryRetry`` (429,
5xx, ``internal_error``, network trouble) and ``DeliveryFatal`` (``invalid_auth``,
``channel_not_found``, ``not_in_channel``...). It never sleeps: the outbox does the waiting.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from .base import DeliveryFatal, DeliveryRetry, Outgoing, Sent
from .blocks import RenderedMessage

logger = logging.getLogger("earshot.responders.slack")

#: Errors that may pass: try again later.
RETRIABLE_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
    }
)


def retry_after_of(response: Any) -> float | None:
    """The ``Retry-After`` header of a Slack response, in seconds."""
    headers = getattr(response, "headers", None) or {}
    for name, value in headers.items():
        if name.lower() == "retry-after":
            value = value[0] if isinstance(value, list) else value
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


#: Errors that mean the token itself is unusable: every message would fail the same way.
TOKEN_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)


def classify_slack_error(exc: SlackApiError) -> DeliveryRetry | DeliveryFatal:
    """Sort a ``SlackApiError`` into a retry or a permanent failure."""
    response = exc.response
    status = getattr(response, "status_code", 0) or 0
    try:
        error = str(response.get("error") or "") if response is not None else ""
    except Exception:
        error = ""
    error = error or f"http_{status}"
    if status == 429 or error in ("ratelimited", "rate_limited"):
        return DeliveryRetry(f"slack: {error}", retry_after=retry_after_of(response))
    if status >= 500 or error in RETRIABLE_ERRORS:
        # "It's possible some aspect of the operation succeeded before the error was raised."
        return DeliveryRetry(f"slack: {error}", uncertain=True)
    return DeliveryFatal(f"slack: {error}", everywhere=error in TOKEN_ERRORS)


_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")
#: Pages of 200 read when looking for an earlier post: of the channel's history (since the
#: row was queued), or of a thread (a storm thread holds every alert past the threshold).
HISTORY_PAGES = 5
THREAD_PAGES = 25


class SlackChannel:
    """Posts alerts to Slack channels with a bot token."""

    name = "slack"

    def __init__(self, client: WebClient) -> None:
        self.client = client
        self._ids: dict[str, str] = {}

    @classmethod
    def from_token(cls, token: str, api_url: str, *, timeout: int = 15) -> SlackChannel:
        base_url = api_url if api_url.endswith("/") else api_url + "/"
        # No SDK-level retries: slack-sdk's connection-error handler would re-post a message
        # that may already be in Slack. The outbox retries, after checking the channel.
        return cls(WebClient(token=token, base_url=base_url, timeout=timeout, retry_handlers=[]))

    def send(self, outgoing: Outgoing) -> Sent:
        message = outgoing.message
        kwargs: dict[str, Any] = {
            "channel": outgoing.channel,
            "text": message.text,
            "blocks": message.blocks,
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if message.metadata:
            kwargs["metadata"] = message.metadata
        if outgoing.thread_ts:
            kwargs["thread_ts"] = outgoing.thread_ts
        try:
            response = self.client.chat_postMessage(**kwargs)
        except SlackApiError as exc:
            raise classify_slack_error(exc) from exc
        except (SlackClientError, OSError) as exc:
            refused = isinstance(exc, ConnectionRefusedError) or isinstance(
                getattr(exc, "reason", None), ConnectionRefusedError
            )
            raise DeliveryRetry(
                f"slack: {type(exc).__name__}: {exc}", uncertain=not refused
            ) from exc
        data = response.data if isinstance(response.data, dict) else {}
        return Sent(channel_id=data.get("channel"), ts=data.get("ts"))

    def update(self, channel_id: str, ts: str, message: RenderedMessage) -> Sent:
        """Replace the message at ``channel_id``/``ts`` (``chat.update``; a story's live
        count). Slack's errors are sorted as for a post; ``message_not_found`` and
        ``cant_update_message`` are permanent."""
        kwargs: dict[str, Any] = {
            "channel": channel_id,
            "ts": ts,
            "text": message.text,
            "blocks": message.blocks,
        }
        if message.metadata:
            kwargs["metadata"] = message.metadata
        try:
            response = self.client.chat_update(**kwargs)
        except SlackApiError as exc:
            raise classify_slack_error(exc) from exc
        except (SlackClientError, OSError) as exc:
            raise DeliveryRetry(f"slack: {type(exc).__name__}: {exc}") from exc
        data = response.data if isinstance(response.data, dict) else {}
        return Sent(channel_id=data.get("channel") or channel_id, ts=data.get("ts") or ts)

    def _channel_id(self, name: str) -> str | None:
        if _CHANNEL_ID.match(name):
            return name
        wanted = name.lstrip("#")
        if wanted in self._ids:
            return self._ids[wanted]
        cursor = None
        for _ in range(20):
            page = self.client.conversations_list(
                limit=200,
                cursor=cursor,
                exclude_archived=True,
                types="public_channel,private_channel",
            )
            for channel in page.get("channels") or []:
                self._ids[str(channel.get("name"))] = str(channel.get("id"))
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if wanted in self._ids or not cursor:
                break
        return self._ids.get(wanted)

    def find_sent(self, outgoing: Outgoing, since: float, channel_id: str | None) -> Sent | None:
        """Look for an earlier post of this message (by its metadata key) where Slack keeps it.

        A top-level message is in ``conversations.history``; a thread reply is not (history
        holds parent messages only), so a reply is looked for in its thread with
        ``conversations.replies``. Both need ``include_all_metadata`` to return the key.
        """
        try:
            channel = channel_id or self._channel_id(outgoing.channel)
            if channel is None:
                logger.warning(
                    "slack: cannot resolve %s to check for a prior post", outgoing.channel
                )
                return None
            cursor = None
            pages = HISTORY_PAGES if outgoing.thread_ts is None else THREAD_PAGES
            for _ in range(pages):
                args: dict[str, Any] = {
                    "channel": channel,
                    "oldest": f"{since:.6f}",
                    "include_all_metadata": True,
                    "limit": 200,
                    "cursor": cursor,
                }
                if outgoing.thread_ts is None:
                    page = self.client.conversations_history(**args)
                else:
                    page = self.client.conversations_replies(ts=outgoing.thread_ts, **args)
                for message in page.get("messages") or []:
                    payload = (message.get("metadata") or {}).get("event_payload") or {}
                    if payload.get("key") == outgoing.key:
                        return Sent(channel_id=channel, ts=message.get("ts"))
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
            else:
                logger.warning(
                    "slack: %s not found in the first %d pages of %s; posting",
                    outgoing.key,
                    pages,
                    "its thread" if outgoing.thread_ts else "the channel history",
                )
        except SlackApiError as exc:
            problem = classify_slack_error(exc)
            if isinstance(problem, DeliveryRetry):
                raise problem from exc
            # The lookup itself is not allowed (e.g. a missing history scope): post rather
            # than hold the alert forever, and say so.
            logger.warning("slack: cannot check for a prior post (%s); posting", problem)
        except (SlackClientError, OSError) as exc:
            raise DeliveryRetry(f"slack: {type(exc).__name__}: {exc}") from exc
        return None
