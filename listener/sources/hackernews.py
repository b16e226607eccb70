"""Hacker News through the Algolia search API.

``GET {base_url}/search_by_date?query=TERM&tags=(story,comment)&numericFilters=created_at_i>CURSOR``

Algolia does not parse OR/AND, so each search term gets its own request and its own cursor
(the newest ``created_at_i`` seen). Results come newest first; the source pages with
``page``/``hitsPerPage`` until ``nbPages`` is reached. Algolia serves at most 1,000 hits per
query, so when a burst is larger the source narrows the window below the oldest hit it got
(``created_at_i<=oldest``) and goes on, until the window is complete.

Reach refresh (``refresh_reach``): Algolia tags every story ``story_<id>`` (its comments
too, with their story's id), so ``tags=story,(story_1,story_2,...)`` answers the stories of
a batch of ids, with their current ``points`` and ``num_comments``, in one request.
Comments have no points on Algolia and are not asked for again; a story Algolia no longer
has is simply not in the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

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
    from_unix,
    html_to_text,
    id_of,
    link_of,
    logger,
    text_of,
)

ITEM_URL = "https://news.ycombinator.com/item?id={id}"


class HackerNewsSource(Source):
    """Stories and comments on Hacker News that contain a query term."""

    type = "hackernews"
    default_base_url = "https://hn.algolia.com/api/v1"
    #: Documented: 10,000 requests per hour per IP.
    default_requests_per_minute = 10_000 / 60
    #: Stories per reach-refresh request (one ``story_<id>`` tag each, ORed).
    refresh_batch: ClassVar[int] = 50

    class Options(SourceOptions):
        tags: str = "(story,comment)"
        hits_per_page: int = Field(100, ge=1, le=1000)

    def __init__(
        self,
        *args: Any,
        tags: str = "(story,comment)",
        hits_per_page: int = 100,
        max_requests_per_term: int = 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.tags = tags
        self.hits_per_page = hits_per_page
        self.max_requests_per_term = max_requests_per_term

    def poll(self, cursor: Cursor | None, terms: Sequence[str]) -> PollResult:
        seen = dict((cursor or {}).get("terms", {}))
        result = PollResult(mentions=[], cursor={"terms": seen})
        start = self.http.requests
        found: dict[str, Mention] = {}
        for term in terms:
            result.units += 1
            since = int(seen.get(term) or self.backfill_start())
            batch: dict[str, Mention] = {}
            try:
                newest = self._poll_term(term, since, batch, result)
            except SourceError as exc:
                # Keep what this term already gave (the store drops repeats), but leave its
                # cursor where it was, so the next poll reads the same window again.
                found.update(batch)
                if not result.fail(f"hackernews {term!r}", exc):
                    break
                continue
            found.update(batch)
            seen[term] = max(newest, since)
        result.mentions = list(found.values())
        result.requests = self.http.requests - start
        return result

    def _poll_term(
        self, term: str, since: int, found: dict[str, Mention], result: PollResult
    ) -> int:
        newest = since
        upper: int | None = None
        requests = 0
        while True:
            oldest: int | None = None
            fetched = 0
            page = 0
            while True:
                filters = f"created_at_i>{since}"
                if upper is not None:
                    filters += f",created_at_i<={upper}"
                data = self.http.get_json(
                    f"{self.base_url}/search_by_date",
                    params={
                        "query": term,
                        "tags": self.tags,
                        "numericFilters": filters,
                        "hitsPerPage": self.hits_per_page,
                        "page": page,
                    },
                )
                requests += 1
                if not isinstance(data, dict) or not isinstance(data.get("hits"), list):
                    raise BadPayloadError("hackernews: answer has no 'hits' list")
                hits: list[Any] = data["hits"]
                for hit in hits:
                    mention = self.parse_item(result, self._mention, hit)
                    if mention is None:
                        continue
                    found.setdefault(mention.external_id, mention)
                    stamp = int(mention.created_at.timestamp())
                    newest = max(newest, stamp)
                    oldest = stamp if oldest is None else min(oldest, stamp)
                fetched += len(hits)
                pages = data.get("nbPages")
                if not hits or not isinstance(pages, int) or page + 1 >= pages:
                    break
                if requests >= self.max_requests_per_term:
                    logger.warning("hackernews: request cap reached for %r", term)
                    return newest
                page += 1
            total = data.get("nbHits")
            truncated = isinstance(total, int) and total > fetched and fetched > 0
            if not truncated or oldest is None or (upper is not None and oldest >= upper):
                return newest
            if requests >= self.max_requests_per_term:
                logger.warning("hackernews: request cap reached for %r", term)
                return newest
            # More hits than Algolia will page through: read the older part of the window.
            upper = oldest

    def refreshes(self, mention: Mention) -> bool:
        """Stories only: a comment has no points on Algolia (its stored reach is none)."""
        return mention.reach is not None or "points" in (mention.reach_detail or {})

    def refresh_reach(self, ids: Sequence[str]) -> dict[str, reach.Fields]:
        """The current points and comments of the stories ``ids``, in one request."""
        wanted = list(dict.fromkeys(i for i in ids if i.isascii() and i.isdigit()))
        wanted = wanted[: self.refresh_batch]
        if not wanted:
            return {}
        data = self.http.get_json(
            f"{self.base_url}/search_by_date",
            params={
                "tags": "story,(" + ",".join(f"story_{i}" for i in wanted) + ")",
                "hitsPerPage": len(wanted),
            },
        )
        if not isinstance(data, dict) or not isinstance(data.get("hits"), list):
            raise BadPayloadError("hackernews: answer has no 'hits' list")
        asked = set(wanted)
        found: dict[str, reach.Fields] = {}
        for hit in data["hits"]:
            object_id = hit.get("objectID") if isinstance(hit, dict) else None
            if isinstance(object_id, int) and not isinstance(object_id, bool):
                object_id = str(object_id)
            if isinstance(object_id, str) and object_id in asked:
                found[object_id] = reach.hackernews(hit)
        return found

    def _mention(self, hit: Any) -> Mention:
        object_id = id_of(hit["objectID"])
        created = from_unix(hit["created_at_i"])
        tags = hit.get("_tags") if isinstance(hit.get("_tags"), list) else []
        is_comment = "comment" in tags or isinstance(hit.get("comment_text"), str)
        link = None
        if is_comment:
            title = ""
            text = html_to_text(hit.get("comment_text"))
        else:
            title = html_to_text(hit.get("title"))
            text = html_to_text(hit.get("story_text"))
            link = link_of(hit.get("url"))  # a link post's target (none for Ask HN)
        return self.mention(
            external_id=object_id,
            url=ITEM_URL.format(id=object_id),
            author=text_of(hit.get("author")),
            site="news.ycombinator.com",
            title=title,
            text=text,
            link=link,
            created_at=created,
            raw=hit,
            **reach.hackernews(hit),
        )
