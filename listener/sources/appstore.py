"""App Store customer reviews of your own app, through Apple's RSS feed (JSON flavour).

``GET {base_url}/{country}/rss/customerreviews/page={n}/id={app_id}/sortby=mostrecent/json``

Every review is a mention (no query needed) and keeps its star rating. The feed serves at
most 10 pages of 50 reviews per storefront, newest first. Cursor, per country: the newest
``updated`` time seen; a poll reads pages until it meets a review at or before it.

Feed quirks handled here: a storefront without reviews has no ``entry`` key, a single
review may come as an object instead of a list, and older feeds put the app's own metadata
in the first entry (it has no ``im:rating`` and is not a review).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

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
)


def _label(entry: dict[str, Any], key: str) -> str:
    value = entry.get(key)
    if isinstance(value, dict):
        label = value.get("label")
        if isinstance(label, str):
            return label
    return ""


class AppStoreSource(Source):
    """Reviews of one app in a list of App Store countries."""

    type = "appstore"
    needs_query = False
    default_base_url = "https://itunes.apple.com"
    #: Undocumented feed: stay gentle.
    default_requests_per_minute = 20.0

    class Options(SourceOptions):
        app_id: Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)] = (
            Field(pattern=r"^\d+$")
        )
        countries: list[Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")]] = Field(
            default_factory=lambda: ["us"], min_length=1
        )
        max_pages: int = Field(10, ge=1, le=10)

    def __init__(
        self,
        *args: Any,
        app_id: str,
        countries: Sequence[str] = ("us",),
        max_pages: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.app_id = str(app_id)
        self.countries = [country.lower() for country in countries]
        self.max_pages = max_pages

    @classmethod
    def default_name(cls, options: Mapping[str, Any]) -> str:
        return f"appstore-{options.get('app_id')}"

    def poll(self, cursor: Cursor | None, terms: Sequence[str]) -> PollResult:
        states: dict[str, float] = dict((cursor or {}).get("countries", {}))
        result = PollResult(mentions=[], cursor={"countries": states})
        start = self.http.requests
        for country in self.countries:
            result.units += 1
            watermark = float(states.get(country) or self.backfill_start())
            try:
                reviews = self._read(country, watermark, result)
            except SourceError as exc:
                if not result.fail(f"appstore {country}", exc):
                    break
                continue
            if reviews:
                states[country] = max(watermark, *(r.created_at.timestamp() for r in reviews))
            result.mentions.extend(reviews)
        result.requests = self.http.requests - start
        return result

    def _read(self, country: str, watermark: float, result: PollResult) -> list[Mention]:
        reviews: list[Mention] = []
        for page in range(1, self.max_pages + 1):
            url = (
                f"{self.base_url}/{country}/rss/customerreviews/page={page}"
                f"/id={self.app_id}/sortby=mostrecent/json"
            )
            data = self.http.get_json(url)
            feed = data.get("feed") if isinstance(data, dict) else None
            if not isinstance(feed, dict):
                raise BadPayloadError("appstore: answer has no 'feed' object")
            entries = feed.get("entry", [])
            if isinstance(entries, dict):
                entries = [entries]
            if not isinstance(entries, list):
                raise BadPayloadError("appstore: 'entry' is neither a list nor an object")
            reached = False
            for entry in entries:
                if isinstance(entry, dict) and "im:rating" not in entry:
                    continue  # the app's own metadata entry in older feeds
                review = self.parse_item(result, lambda e: self._mention(e, country), entry)
                if review is None:
                    continue
                if review.created_at.timestamp() <= watermark:
                    reached = True
                    continue
                reviews.append(review)
            if reached or not entries:
                break
        return reviews

    def _mention(self, entry: Any, country: str) -> Mention:
        if not isinstance(entry, dict):
            raise TypeError(f"review entry is not an object: {entry!r:.40}")
        review_id = _label(entry, "id")
        rating = int(_label(entry, "im:rating"))
        created = from_iso(_label(entry, "updated"))
        if not review_id or not 1 <= rating <= 5:
            raise ValueError(f"review without an id or with rating {rating}")
        author = entry.get("author")
        name = _label(author, "name") if isinstance(author, dict) else ""
        return self.mention(
            external_id=review_id,
            url=f"https://apps.apple.com/{country}/app/id{self.app_id}?see-all=reviews",
            author=name,
            site=country,
            title=_label(entry, "title"),
            text=_label(entry, "content"),
            created_at=created,
            rating=rating,
            raw=entry,
            **reach.appstore(entry),
        )
