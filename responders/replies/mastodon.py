"""Mastodon: a status with ``in_reply_to_id``, posted with an ``Idempotency-Key``.

``POST {base_url}/api/v1/statuses`` (``Authorization: Bearer MASTODON_ACCESS_TOKEN``, scope
``write:statuses``) with ``status``, ``in_reply_to_id`` (the status id on this instance: the
source's instance, where earshot read it) and ``visibility``. Mastodon keeps an
``Idempotency-Key`` for an hour: the same key posts once. Lookup after an uncertain attempt:
the bot's own statuses (``GET /api/v1/accounts/verify_credentials``, then
``GET /api/v1/accounts/{id}/statuses``) for one replying to the same status since then.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from earshot.listener.models import Mention, as_utc
from earshot.listener.sources.base import SourceError, SourceHttp, decode_json, from_iso

from .base import Posted, ReplyFatal, Writer, mapped


class MastodonWriter(Writer):
    platform = "mastodon"

    def __init__(self, http: SourceHttp, base_url: str, token: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self._me: str | None = None

    def target(self, mention: Mention) -> str:
        status_id = (mention.raw or {}).get("id")
        if not isinstance(status_id, str) or not status_id:
            raise ReplyFatal("the stored status has no id to reply to")
        return status_id

    def post(self, mention: Mention, text: str, key: str, attempted_at: datetime) -> Posted:
        body = {"status": text, "in_reply_to_id": self.target(mention), "visibility": "public"}
        headers = {**self.headers, "Idempotency-Key": key}
        try:
            response = self.http.request(
                "POST", f"{self.base_url}/api/v1/statuses", headers=headers, json_body=body
            )
            return _posted(decode_json(response))
        except SourceError as exc:
            raise mapped(exc) from None

    def find(self, mention: Mention, text: str, key: str, attempted_at: datetime) -> Posted | None:
        target = self.target(mention)
        since = as_utc(attempted_at)
        try:
            if self._me is None:
                me = self.http.get_json(
                    f"{self.base_url}/api/v1/accounts/verify_credentials", headers=self.headers
                )
                self._me = str(me["id"])
            statuses = self.http.get_json(
                f"{self.base_url}/api/v1/accounts/{self._me}/statuses",
                params={"limit": 40, "exclude_reblogs": "true"},
                headers=self.headers,
            )
        except SourceError as exc:
            raise mapped(exc) from None
        except (KeyError, TypeError) as exc:
            raise ReplyFatal(f"mastodon: unexpected account answer ({exc})") from None
        for status in statuses if isinstance(statuses, list) else []:
            if not isinstance(status, dict) or status.get("in_reply_to_id") != target:
                continue
            posted = _posted(status)
            if since is None or posted.at is None or posted.at >= since.replace(microsecond=0):
                return posted
        return None


def _posted(status: Any) -> Posted:
    try:
        at = from_iso(status["created_at"]) if status.get("created_at") else None
        return Posted(str(status["id"]), status.get("url") or status.get("uri"), at)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ReplyFatal("mastodon: the answer is not a status") from None
