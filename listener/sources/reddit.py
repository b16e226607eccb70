"""Reddit through its public JSON listings.

``GET {base_url}/r/{sub}/new.json`` (posts) and ``/r/{sub}/comments.json`` (comments), with
``raw_json=1`` so text is not HTML-escaped. Reddit's search answers 403 without OAuth, so the
source reads the configured subreddits' listings and the pipeline matches them locally.

Cursor, per subreddit and listing: the fullname of the newest item seen (``t3_…``/``t1_…``)
and its ``created_utc``. A poll first asks ``before=<fullname>``, which answers only what is
newer (an empty listing when nothing is). When that page is full, there may be more than one
page of news: the source then walks the listing from the top with ``after`` until it reaches
the stored fullname or the ``created_utc`` watermark (which still holds if that item was
deleted), at most ``max_pages`` pages (Reddit's listings end near 1,000 items anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field

from ..models import Mention
from .base import (
    BadPayloadError,
    Cursor,
    PollResult,
    Source,
    SourceError,
    SourceOptions,
    from_unix,
    id_of,
    logger,
    text_of,
)

WEB = "https://www.reddit.com"
LISTINGS = {"new": "new", "comments": "comments"}


class RedditSource(Source):
    """New posts and comments in a list of subreddits."""

    type = "reddit"
    default_base_url = "https://www.reddit.com"
    #: Documented: 10 requests per minute without OAuth (100 with it).
    default_requests_per_minute = 10.0

    class Options(SourceOptions):
        subreddits: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
        listings: list[Literal["new", "comments"]] = Field(
            default_factory=lambda: ["new", "comments"], min_length=1
        )

    def __init__(
        self,
        *args: Any,
        subreddits: Sequence[str],
        listings: Sequence[str] = ("new", "comments"),
        limit: int = 100,
        max_pages: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.subreddits = [sub.removeprefix("r/").strip("/") for sub in subreddits]
        unknown = [name for name in listings if name not in LISTINGS]
        if unknown:
            raise ValueError(f"unknown reddit listing(s): {', '.join(unknown)}")
        self.listings = list(listings)
        self.limit = limit
        self.max_pages = max_pages

    def poll(self, cursor: Cursor | None, terms: Sequence[str]) -> PollResult:
        states: dict[str, Any] = dict((cursor or {}).get("listings", {}))
        result = PollResult(mentions=[], cursor={"listings": states})
        start = self.http.requests
        for sub in self.subreddits:
            for listing in self.listings:
                result.units += 1
                key = f"{sub}/{listing}"
                try:
                    items = self._read(sub, listing, states.get(key), result)
                except SourceError as exc:
                    if not result.fail(f"reddit r/{sub} {listing}", exc):
                        result.requests = self.http.requests - start
                        return result
                    continue
                if items:
                    newest = max(items, key=lambda m: m.created_at)
                    states[key] = {
                        "name": newest.external_id,
                        "created": newest.created_at.timestamp(),
                    }
                result.mentions.extend(items)
        result.requests = self.http.requests - start
        return result

    def _url(self, sub: str, listing: str) -> str:
        return f"{self.base_url}/r/{sub}/{LISTINGS[listing]}.json"

    def _read(
        self, sub: str, listing: str, state: dict[str, Any] | None, result: PollResult
    ) -> list[Mention]:
        url = self._url(sub, listing)
        if state:
            page, _ = self._page(url, {"before": state["name"]}, result)
            if len(page) < self.limit:
                return page
            return self._walk(url, state.get("name"), float(state.get("created", 0)), result)
        return self._walk(url, None, self.backfill_start(), result)

    def _walk(
        self, url: str, known: str | None, watermark: float, result: PollResult
    ) -> list[Mention]:
        """Read from the top of the listing down to ``known`` or the watermark."""
        items: list[Mention] = []
        after: str | None = None
        tokens: set[str] = set()
        for _ in range(self.max_pages):
            params = {"after": after} if after else {}
            page, after = self._page(url, params, result)
            for mention in page:
                if mention.external_id == known or mention.created_at.timestamp() <= watermark:
                    return items
                items.append(mention)
            if not after or after in tokens:
                return items
            tokens.add(after)
        logger.warning("reddit: %s: stopped after %d pages", url, self.max_pages)
        return items

    def _page(
        self, url: str, params: dict[str, Any], result: PollResult
    ) -> tuple[list[Mention], str | None]:
        data = self.http.get_json(url, params={"limit": self.limit, "raw_json": 1, **params})
        if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
            raise BadPayloadError("reddit: answer is not a Listing")
        listing = data["data"]
        children = listing.get("children")
        if not isinstance(children, list):
            raise BadPayloadError("reddit: Listing has no 'children' list")
        mentions = []
        for child in children:
            mention = self._mention(child)
            if mention is None:
                result.skipped += 1
                continue
            mentions.append(mention)
        after = listing.get("after")
        return mentions, after if isinstance(after, str) else None

    def _mention(self, child: Any) -> Mention | None:
        try:
            kind = child["kind"]
            item = child["data"]
            name = id_of(item["name"])
            created = from_unix(item["created_utc"])
            if not isinstance(item, dict):
                raise TypeError("data is not an object")
        except (KeyError, TypeError, ValueError, OverflowError, OSError):
            logger.warning("reddit: skipped a malformed listing child")
            return None
        permalink = text_of(item.get("permalink"))
        link_permalink = text_of(item.get("link_permalink"))
        if permalink:
            url = permalink if permalink.startswith("http") else WEB + permalink
        elif link_permalink:
            url = f"{link_permalink.rstrip('/')}/{text_of(item.get('id'))}/"
        else:
            url = f"{WEB}/{name}"
        if kind == "t3":
            title, text = text_of(item.get("title")), text_of(item.get("selftext"))
        else:
            title, text = "", text_of(item.get("body"))
        return Mention(
            source=self.type,
            external_id=name,
            url=url,
            author=text_of(item.get("author")),
            site=text_of(item.get("subreddit")),
            title=title,
            text=text,
            created_at=created,
            raw=item,
        )
