"""Bluesky: an ``app.bsky.feed.post`` record with ``reply.root`` and ``reply.parent``.

``POST {base_url}/xrpc/com.atproto.server.createSession`` (``BLUESKY_HANDLE``,
``BLUESKY_APP_PASSWORD``) gives the account's ``did`` and an access token; the reply is
``POST /xrpc/com.atproto.repo.createRecord`` with ``repo`` = the did, ``collection``
``app.bsky.feed.post``, and an ``rkey`` earshot chooses: a TID made from the time the
reply's first attempt began (and the reply's key), the same for every attempt. So the
lookup is exact: ``GET /xrpc/com.atproto.repo.getRecord`` of that rkey, and a second
create of the same rkey could never make a second post anyway.

The parent is the mention (its ``uri`` and ``cid``); the root is the parent's own root when
the mention is itself a reply, else the mention.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from earshot.listener.models import Mention, as_utc, utcnow
from earshot.listener.sources.base import FatalError, SourceError, SourceHttp, decode_json

from .base import Posted, ReplyFatal, Writer, mapped

COLLECTION = "app.bsky.feed.post"
_B32 = "234567abcdefghijklmnopqrstuvwxyz"


def tid(at: datetime, key: str) -> str:
    """A record key in atproto's TID format: 53 bits of microseconds since the epoch and a
    10-bit clock id (from ``key``), base32-sortable, 13 characters."""
    micros = int((as_utc(at) or utcnow()).timestamp() * 1_000_000)
    clock = int.from_bytes(hashlib.sha256(key.encode()).digest()[:2], "big") & 0x3FF
    value = ((micros & ((1 << 53) - 1)) << 10) | clock
    return "".join(_B32[(value >> (5 * i)) & 31] for i in range(12, -1, -1))


def _ref(value: Any) -> dict[str, str] | None:
    if isinstance(value, dict) and isinstance(value.get("uri"), str) and value.get("cid"):
        return {"uri": value["uri"], "cid": str(value["cid"])}
    return None


class BlueskyWriter(Writer):
    platform = "bluesky"

    def __init__(self, http: SourceHttp, base_url: str, handle: str, app_password: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.handle = handle
        self._password = app_password
        self._session: tuple[str, str] | None = None

    def target(self, mention: Mention) -> dict[str, dict[str, str]]:
        raw = mention.raw or {}
        parent = _ref(raw)
        if parent is None:
            raise ReplyFatal("the stored post has no uri and cid to reply to")
        record = raw.get("record") if isinstance(raw.get("record"), dict) else {}
        reply = record.get("reply") if isinstance(record, dict) else None
        root = _ref(reply.get("root")) if isinstance(reply, dict) else None
        return {"root": root or parent, "parent": parent}

    def _login(self) -> tuple[str, str]:
        if self._session is None:
            try:
                data = self.http.post_json(
                    f"{self.base_url}/xrpc/com.atproto.server.createSession",
                    json_body={"identifier": self.handle, "password": self._password},
                )
                self._session = (str(data["accessJwt"]), str(data["did"]))
            except SourceError as exc:
                raise mapped(exc) from None
            except (KeyError, TypeError):
                raise ReplyFatal("bluesky: createSession answered without a session") from None
        return self._session

    def _url(self, did: str, rkey: str) -> str:
        return f"https://bsky.app/profile/{did}/post/{rkey}"

    def post(self, mention: Mention, text: str, key: str, attempted_at: datetime) -> Posted:
        refs = self.target(mention)
        token, did = self._login()
        rkey = tid(attempted_at, key)
        record = {
            "$type": COLLECTION,
            "text": text,
            "createdAt": utcnow().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "reply": refs,
        }
        try:
            data = self.http.post_json(
                f"{self.base_url}/xrpc/com.atproto.repo.createRecord",
                json_body={"repo": did, "collection": COLLECTION, "rkey": rkey, "record": record},
                headers={"Authorization": f"Bearer {token}"},
            )
        except FatalError as exc:
            if exc.status_code == 401:
                self._session = None
            raise mapped(exc) from None
        except SourceError as exc:
            raise mapped(exc) from None
        if not isinstance(data, dict) or not isinstance(data.get("uri"), str):
            raise ReplyFatal("bluesky: createRecord answered without a uri")
        return Posted(data["uri"], self._url(did, rkey), utcnow())

    def find(self, mention: Mention, text: str, key: str, attempted_at: datetime) -> Posted | None:
        token, did = self._login()
        rkey = tid(attempted_at, key)
        try:
            response = self.http.request(
                "GET",
                f"{self.base_url}/xrpc/com.atproto.repo.getRecord",
                params={"repo": did, "collection": COLLECTION, "rkey": rkey},
                headers={"Authorization": f"Bearer {token}"},
                errors=_not_found,
            )
        except _Missing:
            return None
        except SourceError as exc:
            raise mapped(exc) from None
        data = decode_json(response)
        if not isinstance(data, dict) or not isinstance(data.get("uri"), str):
            return None
        return Posted(data["uri"], self._url(did, rkey), None)


class _Missing(FatalError):
    """getRecord: no such record."""


def _not_found(response: Any) -> SourceError | None:
    if response.status_code == 400:
        try:
            if response.json().get("error") == "RecordNotFound":
                return _Missing("no record", status_code=400)
        except ValueError:
            return None
    return None
