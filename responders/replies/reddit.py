"""Reddit: a comment through OAuth, when the ``reddit`` source is configured with a script
app (``REDDIT_CLIENT_ID``, ``REDDIT_CLIENT_SECRET``, ``REDDIT_USERNAME``,
``REDDIT_PASSWORD``; the app's token needs the ``submit`` scope).

``POST {oauth base}/api/comment`` (a form: ``api_type=json``, ``thing_id`` = the post's or
comment's fullname, ``text``). Reddit answers most refusals with a 200 and
``{"json": {"errors": [["TOO_LONG", "this is too long (max: 10000)", "text"]]}}``:
``RATELIMIT`` is retried later, the others are fatal. Lookup: the account's newest comments
(``GET /user/{username}/comments?sort=new``) for one whose ``parent_id`` is the same thing,
made since the first attempt.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import httpx

from earshot.listener.models import Mention, as_utc
from earshot.listener.sources.base import SourceError, from_unix, parse_retry_after
from earshot.listener.sources.reddit import WEB, RedditSource

from .base import Posted, ReplyFatal, ReplyRetry, Writer, mapped

_FULLNAME = re.compile(r"^t[13]_[a-z0-9]+$")
_MINUTES = re.compile(r"(\d+) minute")


class RedditWriter(Writer):
    platform = "reddit"

    def __init__(self, source: RedditSource) -> None:
        if not source.oauth:
            raise ValueError("reddit: replying needs the source's OAuth credentials")
        self.source = source

    def target(self, mention: Mention) -> str:
        if not _FULLNAME.match(mention.external_id):
            raise ReplyFatal("not a Reddit post or comment earshot can answer")
        return mention.external_id

    def _send(self, method: str, url: str, **kwargs: Any) -> Any:
        source = self.source
        for attempt in (1, 2):
            try:
                headers = source._headers()
            except SourceError as exc:
                raise mapped(exc) from None
            source.http.limiter.acquire()
            try:
                response = source.http.client.request(method, url, headers=headers, **kwargs)
            except httpx.HTTPError as exc:
                raise ReplyRetry(f"{type(exc).__name__}: {method} reddit", uncertain=True) from None
            status = response.status_code
            if status == 401 and attempt == 1:
                with source._token_lock:
                    source._token = None
                continue
            if status == 429:
                wait = parse_retry_after(response.headers.get("retry-after"))
                raise ReplyRetry(f"429: {method} reddit", wait)
            if status >= 500 or status == 408:
                raise ReplyRetry(f"{status}: {method} reddit", uncertain=True)
            if status >= 400:
                raise ReplyFatal(f"{status}: {method} {url.split('?', 1)[0]}")
            try:
                return response.json()
            except ValueError:
                raise ReplyRetry(
                    f"reddit: {method} answered without JSON", uncertain=True
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def post(self, mention: Mention, text: str, key: str, attempted_at: datetime) -> Posted:
        form = {"api_type": "json", "thing_id": self.target(mention), "text": text}
        data = self._send("POST", f"{self.source.base_url}/api/comment", data=form)
        answer = data.get("json") if isinstance(data, dict) else None
        errors = answer.get("errors") if isinstance(answer, dict) else None
        if errors:
            code, message = str(errors[0][0]), str(errors[0][1])[:200]
            if code == "RATELIMIT":
                minutes = _MINUTES.search(message)
                raise ReplyRetry(f"reddit: {message}", 60.0 * int(minutes[1]) if minutes else 600.0)
            raise ReplyFatal(f"reddit refused the comment: {code}: {message}")
        try:
            thing = answer["data"]["things"][0]["data"]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            raise ReplyFatal("reddit: the answer holds no comment") from None
        return _posted(thing)

    def find(self, mention: Mention, text: str, key: str, attempted_at: datetime) -> Posted | None:
        target = self.target(mention)
        since = (as_utc(attempted_at) or attempted_at).timestamp() - 1
        url = f"{self.source.base_url}/user/{self.source._username}/comments"
        data = self._send("GET", url, params={"sort": "new", "limit": 25})
        children = ((data or {}).get("data") or {}).get("children") or []
        for child in children:
            item = child.get("data") if isinstance(child, dict) else None
            if not isinstance(item, dict) or item.get("parent_id") != target:
                continue
            created = item.get("created_utc")
            if isinstance(created, int | float) and created >= since:
                return _posted(item)
        return None


def _posted(thing: Any) -> Posted:
    try:
        permalink = str(thing.get("permalink") or "")
        url = (
            permalink if permalink.startswith("http") else (WEB + permalink if permalink else None)
        )
        at = from_unix(thing["created_utc"]) if thing.get("created_utc") else None
        return Posted(str(thing["name"]), url, at)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ReplyFatal("reddit: the answer is not a comment") from None
