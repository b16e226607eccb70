"""A Discourse forum's latest posts.

``GET {base_url}/posts.json`` answers the forum's newest posts (all topics, newest first,
about 50 a page); ``?before=<post id>`` answers the ones older than that id. The whole forum
is one unit: the source matches posts locally. Post ids are per forum, so a mention's id is
``<host>:<post id>``. Cursor: the newest post id seen. A poll reads
the first page and pages down with ``before=<smallest id so far>`` until it reaches the
stored id (a first poll: a post created before the backfill window), a page comes back
empty, a ``before`` value repeats, or ``max_pages`` is reached.

``base_url`` is the forum root (``https://forum.example.com``) and is required: every
Discourse is its own API. Posts are ``cooked`` HTML, turned into text; small-action posts
("closed this topic") and whispers are not mentions. Discourse answers 429 with a
``Retry-After`` when its per-IP limits are reached (200 requests a minute by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field

from .. import reach
from ..models import Mention
from .base import (
    BadPayloadError,
    Cursor,
    PollResult,
    Source,
    SourceError,
    SourceOptions,
    from_iso,
    html_to_text,
    logger,
    text_of,
)

#: ``post_type`` values that are not someone writing: small actions and staff whispers.
NOT_POSTS = frozenset({3, 4})


class DiscourseSource(Source):
    """New posts on one Discourse forum."""

    type = "discourse"
    #: Required in the config: each forum is its own API.
    default_base_url = ""
    #: Discourse's default per-IP limit is 200 requests a minute; stay well below.
    default_requests_per_minute = 60.0

    class Options(SourceOptions):
        max_pages: int = Field(20, ge=1, le=200)

    def __init__(self, *args: Any, max_pages: int = 20, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError("discourse: base_url (the forum root, https://...) is required")
        self.max_pages = max_pages
        self.host = urlsplit(self.base_url).hostname or ""

    def poll(self, cursor: Cursor | None, terms: Sequence[str]) -> PollResult:
        state = dict(cursor or {})
        result = PollResult(mentions=[], cursor=state, units=1)
        start = self.http.requests
        known = state.get("post_id")
        known = known if isinstance(known, int) and not isinstance(known, bool) else None
        try:
            posts = self._read(known, result)
        except SourceError as exc:
            result.fail(f"discourse {self.host}", exc)
            result.requests = self.http.requests - start
            return result
        if posts:
            newest = max(int(m.raw["id"]) for m in posts)
            state["post_id"] = max(newest, known or 0)
        result.mentions = posts
        result.requests = self.http.requests - start
        return result

    def _read(self, known: int | None, result: PollResult) -> list[Mention]:
        watermark = self.backfill_start()
        found: dict[int, Mention] = {}
        before: int | None = None
        asked: set[int] = set()
        for _ in range(self.max_pages):
            params = {"before": before} if before is not None else None
            data = self.http.get_json(f"{self.base_url}/posts.json", params=params)
            if not isinstance(data, dict) or not isinstance(data.get("latest_posts"), list):
                raise BadPayloadError("discourse: answer has no 'latest_posts' list")
            page: list[Any] = data["latest_posts"]
            ids: list[int] = []
            reached = False
            for post in page:
                item = self.parse_item(result, lambda p: self._post(p, known, watermark), post)
                if item is None:
                    continue
                post_id, mention, at_known = item
                ids.append(post_id)
                reached = reached or at_known
                if mention is not None:
                    found.setdefault(post_id, mention)
            if reached or not ids:
                return list(found.values())
            before = min(ids)
            if before in asked:
                return list(found.values())
            asked.add(before)
        logger.warning("discourse: %s: stopped after %d pages", self.host, self.max_pages)
        return list(found.values())

    def _post(
        self, post: Any, known: int | None, watermark: float
    ) -> tuple[int, Mention | None, bool]:
        """One entry of ``latest_posts``: ``(id, mention or None, reached)``. The mention is
        ``None`` for a post that is not one (a small action, a whisper) and when the paging
        has ``reached`` known ground (the stored id, or the backfill window). A malformed
        post raises."""
        post_id = post["id"]
        if not isinstance(post_id, int) or isinstance(post_id, bool):
            raise TypeError(f"post id is not an integer: {post_id!r:.40}")
        if known is not None and post_id <= known:
            return post_id, None, True
        post_type = post.get("post_type", 1)
        if post_type is not None and (
            isinstance(post_type, bool) or not isinstance(post_type, int)
        ):
            raise TypeError(f"post_type is not an integer: {post_type!r:.40}")
        if post_type in NOT_POSTS:
            return post_id, None, False
        mention = self._mention(post)
        if known is None and mention.created_at.timestamp() <= watermark:
            return post_id, None, True
        return post_id, mention, False

    def _mention(self, post: dict[str, Any]) -> Mention:
        post_id = _integer(post["id"], "id")
        created = from_iso(post["created_at"])
        topic_id = _integer(post["topic_id"], "topic_id")
        number = _integer(post["post_number"], "post_number")
        slug = text_of(post.get("topic_slug")) or "-"
        return self.mention(
            external_id=f"{self.host}:{post_id}",
            url=f"{self.base_url}/t/{slug}/{topic_id}/{number}",
            author=text_of(post.get("username")),
            site=self.host,
            title=html_to_text(post.get("topic_title")) if number == 1 else "",
            text=html_to_text(post.get("cooked")),
            created_at=created,
            raw=post,
            **reach.discourse(post),
        )


def _integer(value: Any, name: str) -> int:
    """``value`` if it is an integer (an integral float too, as JSON may spell one)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} is a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise TypeError(f"{name} is not an integer: {value!r:.40}")
