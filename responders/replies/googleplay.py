"""Google Play: ``reviews.reply`` of the Android Publisher API (replies, or replaces the
developer's existing reply).

``POST {base}/androidpublisher/v3/applications/{package}/reviews/{reviewId}:reply`` with
``{"replyText": "..."}`` (at most about 350 characters, HTML stripped), authenticated with
the ``googleplay`` source's service-account access token (OAuth 2 JWT-bearer exchange; the
account needs "Reply to reviews" in Play Console). Lookup: ``reviews.get`` of the review;
its ``developerComment`` holding the same text is an earlier attempt's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from earshot.listener.models import Mention
from earshot.listener.sources.base import FatalError, SourceError, decode_json, from_unix
from earshot.listener.sources.googleplay import GooglePlaySource

from .base import Posted, ReplyFatal, Writer, mapped


class GooglePlayWriter(Writer):
    platform = "googleplay"

    def __init__(self, source: GooglePlaySource) -> None:
        self.source = source

    def _url(self, mention: Mention) -> str:
        return (
            f"{self.source.base_url}/androidpublisher/v3/applications/"
            f"{self.source.package_name}/reviews/{mention.external_id}"
        )

    def _call(self, method: str, url: str, body: Any = None) -> Any:
        tokens = self.source._tokens
        for attempt in (1, 2):
            token = tokens.get()
            try:
                response = self.source.http.request(
                    method, url, headers={"Authorization": f"Bearer {token}"}, json_body=body
                )
                return decode_json(response)
            except FatalError as exc:
                if exc.status_code == 401 and attempt == 1:
                    tokens.clear(token)
                    continue
                raise mapped(exc) from None
            except SourceError as exc:
                raise mapped(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def post(self, mention: Mention, text: str, key: str, attempted_at: datetime) -> Posted:
        data = self._call("POST", self._url(mention) + ":reply", {"replyText": text})
        result = data.get("result") if isinstance(data, dict) else None
        if not isinstance(result, dict):
            raise ReplyFatal("Google Play: the answer has no result")
        return Posted(mention.external_id, mention.url, _when(result.get("lastEdited")))

    def find(self, mention: Mention, text: str, key: str, attempted_at: datetime) -> Posted | None:
        data = self._call("GET", self._url(mention))
        for comment in (data or {}).get("comments") or []:
            developer = comment.get("developerComment") if isinstance(comment, dict) else None
            if isinstance(developer, dict) and developer.get("text") == text:
                return Posted(
                    mention.external_id, mention.url, _when(developer.get("lastModified"))
                )
        return None


def _when(stamp: Any) -> datetime | None:
    try:
        return from_unix(int(stamp["seconds"]))
    except (KeyError, TypeError, ValueError):
        return None
