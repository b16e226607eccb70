"""App Store Connect: ``POST /v1/customerReviewResponses`` (create, or replace: a review
has at most one response, and posting again overwrites it).

The body is JSON:API::

    {"data": {"type": "customerReviewResponses",
              "attributes": {"responseBody": "..."},
              "relationships": {"review": {"data": {"type": "customerReviews", "id": "..."}}}}}

Authenticated with the ES256 team-key JWT of the ``appstoreconnect`` source (its token
cache: the same key, short expiry, audience ``appstoreconnect-v1``; the key needs a role
that may respond, Customer Support or above). Lookup: ``GET
/v1/customerReviews/{id}/response``; the response holding the same text is the one an
earlier attempt made (and posting again would only replace it with the same text).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from earshot.listener.models import Mention
from earshot.listener.sources.appstoreconnect import AppStoreConnectSource
from earshot.listener.sources.base import FatalError, SourceError, decode_json, from_iso

from .base import Posted, ReplyFatal, Writer, mapped


class AppStoreConnectWriter(Writer):
    platform = "appstoreconnect"

    def __init__(self, source: AppStoreConnectSource) -> None:
        self.source = source

    def _call(self, method: str, path: str, body: Any = None, *, missing_ok: bool = False) -> Any:
        tokens = self.source._tokens
        for attempt in (1, 2):
            token = tokens.get()
            try:
                response = self.source.http.request(
                    method,
                    f"{self.source.base_url}{path}",
                    headers={"Authorization": f"Bearer {token}"},
                    json_body=body,
                )
                return decode_json(response)
            except FatalError as exc:
                if exc.status_code == 404 and missing_ok:
                    return None
                if exc.status_code == 401 and attempt == 1:
                    tokens.clear(token)
                    continue
                raise mapped(exc) from None
            except SourceError as exc:
                raise mapped(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def post(self, mention: Mention, text: str, key: str, attempted_at: datetime) -> Posted:
        body = {
            "data": {
                "type": "customerReviewResponses",
                "attributes": {"responseBody": text},
                "relationships": {
                    "review": {"data": {"type": "customerReviews", "id": mention.external_id}}
                },
            }
        }
        return self._posted(self._call("POST", "/v1/customerReviewResponses", body), mention)

    def find(self, mention: Mention, text: str, key: str, attempted_at: datetime) -> Posted | None:
        path = f"/v1/customerReviews/{mention.external_id}/response"
        data = self._call("GET", path, missing_ok=True)
        if data is None:
            return None
        posted = self._posted(data, mention)
        body = ((data.get("data") or {}).get("attributes") or {}).get("responseBody")
        return posted if body == text else None

    def _posted(self, data: Any, mention: Mention) -> Posted:
        try:
            resource = data["data"]
            attributes = resource.get("attributes") or {}
            modified = attributes.get("lastModifiedDate")
            return Posted(
                str(resource["id"]), mention.url, from_iso(modified) if modified else None
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ReplyFatal("App Store Connect: the answer is not a review response") from None
