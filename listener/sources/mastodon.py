"""Mastodon, one instance per configured source: hashtag timelines and status search.

``GET {base_url}/api/v1/timelines/tag/{hashtag}?min_id=CURSOR&limit=40`` (public) and
``GET {base_url}/api/v2/search?q=TERM&type=statuses&min_id=CURSOR`` (most instances answer
status searches only with a user token: the optional ``access_token`` secret).

Cursor, per hashtag and per search term: the id of the newest status seen. Status ids are
strings that sort as integers (Mastodon's are time-based snowflakes: unix milliseconds
shifted left 16 bits), so a first run starts from the id of ``backfill_start()``.

Timelines are read forward with ``min_id`` ("the statuses immediately newer than"), which
is gap-free: each page is the oldest chunk after the cursor, and the next page starts at the
``min_id`` of the ``Link: <…>; rel="prev"`` header (the newest id of the page) until a page
is empty or short, a ``Link`` repeats, or ``max_pages`` is reached; the next poll goes on
from where this one stopped. Search results are not ordered by id, so search pages with
``offset`` (allowed only with a token; without one a poll reads one page) and ``min_id`` as a
filter. ``content`` is HTML and becomes plain text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import Field, model_validator

from .. import reach
from ..models import Mention
from .base import (
    BadPayloadError,
    Cursor,
    PollResult,
    Source,
    SourceError,
    SourceOptions,
    decode_json,
    from_iso,
    html_to_text,
    link_of,
    logger,
)


def snowflake(unix_seconds: float) -> str:
    """The smallest Mastodon status id of a moment (ids are ``milliseconds << 16``)."""
    return str(max(0, int(unix_seconds * 1000)) << 16)


def id_key(status_id: str) -> tuple[int, str]:
    """Sort key of a status id: numeric ids compare as integers (and ULIDs as strings)."""
    return (len(status_id), status_id)


def _newer(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return a if id_key(a) >= id_key(b) else b


def _link_param(response: httpx.Response, rel: str, name: str) -> str | None:
    """The query parameter ``name`` of the ``Link`` header's ``rel`` URL, if any.

    Only a link to the instance that answered counts (a link elsewhere could make the
    source jump past statuses); an unreadable one is none.
    """
    try:
        url = response.links.get(rel, {}).get("url")
        if not url:
            return None
        link = httpx.URL(url)
        asked = response.request.url
        if (link.scheme, link.host, link.port) != (asked.scheme, asked.host, asked.port):
            logger.warning("mastodon: ignored a Link to another origin: %.80s", url)
            return None
        value = link.params.get(name)
        return value if value and len(value) <= 64 else None
    except (httpx.InvalidURL, ValueError, TypeError, UnicodeError):
        return None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


class MastodonSource(Source):
    """Public statuses of one Mastodon instance: hashtag timelines and (with a token) search."""

    type = "mastodon"
    default_base_url = "https://mastodon.social"
    #: Documented default: 300 requests per 5 minutes per account and per IP.
    default_requests_per_minute = 60.0
    secrets: ClassVar[Mapping[str, str]] = {"access_token": "MASTODON_ACCESS_TOKEN"}

    class Options(SourceOptions):
        hashtags: list[Annotated[str, Field(pattern=r"^#?[^\s#/?&]+$")]] = Field(
            default_factory=list
        )
        search: bool = False
        limit: int = Field(40, ge=1, le=40)
        max_pages: int = Field(10, ge=1, le=100)

        @model_validator(mode="after")
        def _something_to_read(self) -> MastodonSource.Options:
            if not self.hashtags and not self.search:
                raise ValueError("set hashtags = [...] or search = true (or both)")
            return self

    def __init__(
        self,
        *args: Any,
        hashtags: Sequence[str] = (),
        search: bool = False,
        limit: int = 40,
        max_pages: int = 10,
        access_token: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.hashtags = [tag.lstrip("#") for tag in hashtags]
        self.search = search
        self.limit = limit
        self.max_pages = max_pages
        self.keep_secret(access_token)
        self._headers: Mapping[str, str] | None = (
            {"Authorization": f"Bearer {access_token}"} if access_token else None
        )
        self.site = urlsplit(self.base_url).hostname or self.base_url

    def poll(self, cursor: Cursor | None, terms: Sequence[str]) -> PollResult:
        tags: dict[str, str] = dict((cursor or {}).get("hashtags", {}))
        searches: dict[str, str] = dict((cursor or {}).get("search", {}))
        result = PollResult(mentions=[], cursor={"hashtags": tags, "search": searches})
        start = self.http.requests
        found: dict[str, Mention] = {}
        units: list[tuple[str, str, dict[str, str]]] = [("tag", tag, tags) for tag in self.hashtags]
        if self.search:
            units += [("search", term, searches) for term in terms]
        for kind, unit, states in units:
            result.units += 1
            since = states.get(unit)
            batch: dict[str, Mention] = {}
            try:
                if kind == "tag":
                    newest = self._timeline(unit, since, batch, result)
                else:
                    newest = self._search(unit, since, batch, result)
            except SourceError as exc:
                found.update(batch)  # the store drops repeats; the cursor stays
                if not result.fail(f"mastodon {self.site} {kind} {unit!r}", exc):
                    break
                continue
            found.update(batch)
            if newest is not None:
                states[unit] = newest
        result.mentions = list(found.values())
        result.requests = self.http.requests - start
        return result

    def _timeline(
        self, tag: str, since: str | None, found: dict[str, Mention], result: PollResult
    ) -> str | None:
        """Read the hashtag forward from ``since``; return the newest id seen."""
        url = f"{self.base_url}/api/v1/timelines/tag/{quote(tag, safe='')}"
        floor = since or snowflake(self.backfill_start())
        min_id, newest = floor, since
        tokens = {min_id}
        for _ in range(self.max_pages):
            response = self.http.get(
                url, params={"limit": self.limit, "min_id": min_id}, headers=self._headers
            )
            statuses = decode_json(response)
            if not isinstance(statuses, list):
                raise BadPayloadError("mastodon: tag timeline is not a list of statuses")
            page_newest = self._take(statuses, floor, found, result)
            newest = _newer(newest, page_newest)
            if len(statuses) < self.limit or page_newest is None:
                return newest
            following = _link_param(response, "prev", "min_id") or page_newest
            if following in tokens or id_key(following) <= id_key(min_id):
                return newest  # the same page again: the end, or a server ignoring min_id
            tokens.add(following)
            min_id = following
        logger.warning("mastodon: #%s: stopped after %d pages", tag, self.max_pages)
        return newest

    def _search(
        self, term: str, since: str | None, found: dict[str, Mention], result: PollResult
    ) -> str | None:
        """Search statuses newer than ``since`` (paged by ``offset`` when authorized)."""
        floor = since or snowflake(self.backfill_start())
        newest = since
        pages = self.max_pages if self._headers else 1
        for page in range(pages):
            params: dict[str, Any] = {
                "q": term,
                "type": "statuses",
                "limit": self.limit,
                "min_id": floor,
            }
            if page:
                params["offset"] = page * self.limit
            data = self.http.get_json(
                f"{self.base_url}/api/v2/search", params=params, headers=self._headers
            )
            statuses = data.get("statuses") if isinstance(data, dict) else None
            if not isinstance(statuses, list):
                raise BadPayloadError("mastodon: search answer has no 'statuses' list")
            newest = _newer(newest, self._take(statuses, floor, found, result))
            if len(statuses) < self.limit:
                return newest
        if self._headers:
            logger.warning("mastodon: search %r: stopped after %d pages", term, pages)
        else:
            logger.warning("mastodon: search %r: a full page, but paging needs a token", term)
        return newest

    def _take(
        self, statuses: list[Any], floor: str, found: dict[str, Mention], result: PollResult
    ) -> str | None:
        """Turn a page into mentions (those newer than ``floor``); return its newest id."""
        newest: str | None = None
        for status in statuses:
            mention = self.parse_item(result, self._mention, status)
            if mention is None:
                continue
            status_id = status["id"]
            if id_key(status_id) <= id_key(floor):
                continue  # known already (a server that ignores min_id)
            newest = _newer(newest, status_id)
            found.setdefault(mention.external_id, mention)
        return newest

    def _mention(self, status: Any) -> Mention:
        status_id = status["id"]
        if not isinstance(status_id, str) or not status_id or len(status_id) > 64:
            raise TypeError("status id is not a string (of at most 64 characters)")
        created = from_iso(status["created_at"])
        account = status.get("account")
        author = _str(account.get("acct")) if isinstance(account, dict) else ""
        uri = _str(status.get("uri"))
        url = _str(status.get("url")) or uri
        if not url.startswith(("https://", "http://")):
            url = f"{self.base_url}/statuses/{quote(status_id, safe='')}"
        # The ActivityPub uri is global: the same status seen through two instances is one.
        external_id = uri if uri and len(uri) <= 255 else f"{self.site}/{status_id}"
        language = _str(status.get("language"))[:16] or None
        card = status.get("card")
        return self.mention(
            external_id=external_id,
            url=url,
            link=link_of(card.get("url")) if isinstance(card, dict) else None,
            author=author,
            site=self.site,
            title=html_to_text(_str(status.get("spoiler_text"))),
            text=html_to_text(_str(status.get("content"))),
            created_at=created,
            language=language,
            raw=status,
            **reach.mastodon(status),
        )
