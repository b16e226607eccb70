"""The Slack channel: ``chat.postMessage`` through slack-sdk's ``WebClient``.

Slack answers most errors with HTTP 200 and ``{"ok": false, "error": ...}``; rate limits
with HTTP 429 and ``Retry-After``. This module sorts them into ``DeliveryRetry`` (429,
5xx, ``internal_error``, network trouble) and ``DeliveryFatal`` (``invalid_auth``,
``channel_not_found``, ``not_in_channel``...). It never sleeps: the outbox does the waiting.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from .base import DeliveryFatal, DeliveryRetry, Outgoing, Sent

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
        return DeliveryRetry(f"slack: {error}")
    return DeliveryFatal(f"slack: {error}")


class SlackChannel:
    """Posts alerts to Slack channels with a bot token."""

    name = "slack"

    def __init__(self, client: WebClient) -> None:
        self.client = client

    @classmethod
    def from_token(cls, token: str, api_url: str, *, timeout: int = 15) -> SlackChannel:
        base_url = api_url if api_url.endswith("/") else api_url + "/"
        return cls(WebClient(token=token, base_url=base_url, timeout=timeout))

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
        try:
            response = self.client.chat_postMessage(**kwargs)
        except SlackApiError as exc:
            raise classify_slack_error(exc) from exc
        except (SlackClientError, OSError) as exc:
            raise DeliveryRetry(f"slack: {type(exc).__name__}: {exc}") from exc
        data = response.data if isinstance(response.data, dict) else {}
        return Sent(channel_id=data.get("channel"), ts=data.get("ts"))
