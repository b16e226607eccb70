"""Discourse: a post in the topic, ``POST {base_url}/posts.json`` with ``raw``,
``topic_id`` and ``reply_to_post_number`` (headers ``Api-Key`` and ``Api-Username``).

Lookup: ``GET /t/{topic_id}.json`` lists the topic's posts; one by the API user replying to
the same post number, made since the first attempt, is the earlier attempt's. (Discourse
itself also refuses a post "too similar to what you recently posted".)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from earshot.listener.models import Mention, as_utc
from earshot.listener.sources.base import SourceError, SourceHttp, decode_json, from_iso

from .base import Posted, ReplyFatal, Writer, mapped


class DiscourseWriter(Writer):
    platform = "discourse"

    def __init__(self, http: SourceHttp, base_url: str, api_key: str, username: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.headers = {"Api-Key": api_key, "Api-Username": username}

    def target(self, mention: Mention) -> tuple[int, int]:
        raw = mention.raw or {}
        topic, number = raw.get("topic_id"), raw.get("post_number")
        if not isinstance(topic, int) or not isinstance(number, int):
            raise ReplyFatal("the stored post has no topic_id and post_number")
        return topic, number

    def post(self, mention: Mention, text: str, key: str, attempted_at: datetime) -> Posted:
        topic, number = self.target(mention)
        body = {"raw": text, "topic_id": topic, "reply_to_post_number": number}
        try:
            response = self.http.request(
                "POST", f"{self.base_url}/posts.json", headers=self.headers, json_body=body
            )
            return self._posted(decode_json(response))
        except SourceError as exc:
            raise mapped(exc) from None

    def find(self, mention: Mention, text: str, key: str, attempted_at: datetime) -> Posted | None:
        topic, number = self.target(mention)
        since = as_utc(attempted_at)
        try:
            data = self.http.get_json(f"{self.base_url}/t/{topic}.json", headers=self.headers)
        except SourceError as exc:
            raise mapped(exc) from None
        posts = ((data or {}).get("post_stream") or {}).get("posts") or []
        for post in posts:
            if not isinstance(post, dict) or post.get("username") != self.username:
                continue
            if post.get("reply_to_post_number") != number:
                continue
            posted = self._posted(post)
            if since is None or posted.at is None or posted.at >= since.replace(microsecond=0):
                return posted
        return None

    def _posted(self, post: Any) -> Posted:
        try:
            at = from_iso(post["created_at"]) if post.get("created_at") else None
            slug = post.get("topic_slug") or "-"
            url = f"{self.base_url}/t/{slug}/{post['topic_id']}/{post['post_number']}"
            return Posted(str(post["id"]), url, at)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ReplyFatal("discourse: the answer is not a post") from None
