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

OAuth (a "script" app): when ``client_id``, ``client_secret``, ``username`` and ``password``
are all set (secrets, from ``REDDIT_CLIENT_ID``, ``REDDIT_CLIENT_SECRET``,
``REDDIT_USERNAME``, ``REDDIT_PASSWORD``), the source gets a bearer token with
``POST {auth_url}/api/v1/access_token`` (``grant_type=password``, HTTP basic auth with the
app's id and secret), renews it shortly before it expires or when a call answers 401, and
reads ``https://oauth.reddit.com`` (``/r/{sub}/new``, no ``.json``) instead of the public
JSON. The budget is then 100 requests a minute instead of 10. OAuth also allows search
across all of Reddit: with ``search = true``, each query term gets
``GET /search?q=TERM&sort=new&limit=100&restrict_sr=`` with the same before/after cursor as
a listing (key ``search:TERM``). Reddit asks for a unique User-Agent,
``<platform>:<app id>:<version> (by /u/<name>)``: set ``user_agent``; with OAuth and none
set, one is made from the app id and the username.

Reach refresh (``refresh_reach``) reads up to 100 posts and comments by fullname in one
``GET /api/info?id=t3_a,t1_b`` (``/api/info.json`` without OAuth); a deleted or removed item
(``[deleted]``/``[removed]``) is left as it was.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal

import httpx
from pydantic import Field, model_validator

from .. import __version__, reach
from ..models import Mention
from .base import (
    BadPayloadError,
    Cursor,
    FatalError,
    PollResult,
    RateLimitedError,
    RetriableError,
    Source,
    SourceError,
    SourceOptions,
    decode_json,
    describe,
    explain,
    from_unix,
    id_of,
    link_of,
    logger,
    parse_retry_after,
    text_of,
)

WEB = "https://www.reddit.com"
OAUTH_API = "https://oauth.reddit.com"
LISTINGS = {"new": "new", "comments": "comments"}
#: With OAuth, Reddit's free tier allows 100 requests a minute per client id.
OAUTH_REQUESTS_PER_MINUTE = 100.0
#: Renew a token this many seconds before Reddit says it expires.
TOKEN_MARGIN = 60.0
_LISTING_DEFAULT: tuple[Literal["new", "comments"], ...] = ("new", "comments")


class RedditSource(Source):
    """New posts and comments in a list of subreddits."""

    type = "reddit"
    default_base_url = "https://www.reddit.com"
    #: Documented: 10 requests per minute without OAuth (100 with it).
    default_requests_per_minute = 10.0
    #: ``/api/info`` takes up to 100 fullnames.
    refresh_batch: ClassVar[int] = 100

    secrets: ClassVar[Mapping[str, str]] = {
        "client_id": "REDDIT_CLIENT_ID",
        "client_secret": "REDDIT_CLIENT_SECRET",
        "username": "REDDIT_USERNAME",
        "password": "REDDIT_PASSWORD",
    }

    class Options(SourceOptions):
        subreddits: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
        listings: list[Literal["new", "comments"]] = Field(
            default_factory=lambda: list(_LISTING_DEFAULT), min_length=1
        )
        search: bool = False
        user_agent: str | None = Field(None, min_length=1)
        auth_url: str = Field(WEB, pattern=r"^https?://")

        @model_validator(mode="after")
        def _something_to_read(self) -> RedditSource.Options:
            if not self.subreddits and not self.search:
                raise ValueError("give 'subreddits', or 'search = true' (which needs OAuth)")
            return self

    def __init__(
        self,
        *args: Any,
        subreddits: Sequence[str] = (),
        listings: Sequence[str] = ("new", "comments"),
        search: bool = False,
        user_agent: str | None = None,
        auth_url: str = WEB,
        client_id: str | None = None,
        client_secret: str | None = None,
        username: str | None = None,
        password: str | None = None,
        limit: int = 100,
        max_pages: int = 10,
        **kwargs: Any,
    ) -> None:
        credentials = {
            "client_id": client_id,
            "client_secret": client_secret,
            "username": username,
            "password": password,
        }
        given = [key for key, value in credentials.items() if value]
        if given and len(given) < len(credentials):
            missing = [f"REDDIT_{k.upper()}" for k, v in credentials.items() if not v]
            raise ValueError(f"reddit OAuth needs all four credentials; missing {missing}")
        self.oauth = bool(given)
        if self.oauth and not kwargs.get("base_url"):
            kwargs["base_url"] = OAUTH_API
        super().__init__(*args, **kwargs)
        self.subreddits = [sub.removeprefix("r/").strip("/") for sub in subreddits]
        unknown = [name for name in listings if name not in LISTINGS]
        if unknown:
            raise ValueError(f"unknown reddit listing(s): {', '.join(unknown)}")
        if search and not self.oauth:
            raise ValueError("reddit: search = true needs OAuth (REDDIT_CLIENT_ID etc.)")
        if not self.subreddits and not search:
            raise ValueError("reddit: give subreddits, or search = true")
        self.listings = list(listings)
        self.search = search
        self.limit = limit
        self.max_pages = max_pages
        self.auth_url = auth_url.rstrip("/")
        self._client_id = client_id or ""
        self._client_secret = client_secret or ""
        self._username = username or ""
        self._password = password or ""
        self.keep_secret(client_secret, password)
        if user_agent:
            self.user_agent: str | None = user_agent
        elif self.oauth:
            self.user_agent = f"python:earshot.{client_id}:v{__version__} (by /u/{username})"
        else:
            self.user_agent = None
        self._token: str | None = None
        self._expires = 0.0
        self._token_lock = threading.Lock()
        limiter = self.http.limiter
        if self.oauth and abs(limiter.interval - 60.0 / self.default_requests_per_minute) < 1e-9:
            # The config left the budget at the anonymous default: OAuth allows 100/min.
            limiter.interval = 60.0 / OAUTH_REQUESTS_PER_MINUTE

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
        if self.search:
            seen = {m.external_id for m in result.mentions}
            for term in terms:
                result.units += 1
                key = f"search:{term}"
                url = f"{self.base_url}/search"
                query = {"q": search_phrase(term), "sort": "new", "restrict_sr": ""}
                try:
                    items = self._read_url(url, query, states.get(key), result)
                except SourceError as exc:
                    if not result.fail(f"reddit search {term!r}", exc):
                        break
                    continue
                if items:
                    newest = max(items, key=lambda m: m.created_at)
                    states[key] = {
                        "name": newest.external_id,
                        "created": newest.created_at.timestamp(),
                    }
                fresh = [m for m in items if m.external_id not in seen]
                seen.update(m.external_id for m in fresh)
                result.mentions.extend(fresh)
        result.requests = self.http.requests - start
        return result

    def _url(self, sub: str, listing: str) -> str:
        if self.oauth:
            return f"{self.base_url}/r/{sub}/{LISTINGS[listing]}"
        return f"{self.base_url}/r/{sub}/{LISTINGS[listing]}.json"

    def _read(
        self, sub: str, listing: str, state: dict[str, Any] | None, result: PollResult
    ) -> list[Mention]:
        return self._read_url(self._url(sub, listing), {}, state, result)

    def _read_url(
        self,
        url: str,
        query: dict[str, Any],
        state: dict[str, Any] | None,
        result: PollResult,
    ) -> list[Mention]:
        if state:
            page, _, count = self._page(url, {**query, "before": state["name"]}, result)
            if count < self.limit:
                return page
            known, created = state.get("name"), float(state.get("created", 0))
            return self._walk(url, query, known, created, result)
        return self._walk(url, query, None, self.backfill_start(), result)

    def _walk(
        self,
        url: str,
        query: dict[str, Any],
        known: str | None,
        watermark: float,
        result: PollResult,
    ) -> list[Mention]:
        """Read from the top of the listing down to ``known`` or the watermark."""
        items: list[Mention] = []
        after: str | None = None
        tokens: set[str] = set()
        for _ in range(self.max_pages):
            params = {**query, "after": after} if after else dict(query)
            page, after, _ = self._page(url, params, result)
            reached = False
            for mention in page:
                # The rest of the page is still read: one item with a wrong time must not
                # hide the ones after it.
                if mention.external_id == known or mention.created_at.timestamp() <= watermark:
                    reached = True
                    continue
                items.append(mention)
            if reached or not after or after in tokens:
                return items
            tokens.add(after)
        logger.warning("reddit: %s: stopped after %d pages", url, self.max_pages)
        return items

    def _page(
        self, url: str, params: dict[str, Any], result: PollResult
    ) -> tuple[list[Mention], str | None, int]:
        """One Listing page: its mentions, its ``after`` token and how many children it had."""
        data = self._get_json(url, {"limit": self.limit, "raw_json": 1, **params})
        if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
            raise BadPayloadError("reddit: answer is not a Listing")
        listing = data["data"]
        children = listing.get("children")
        if not isinstance(children, list):
            raise BadPayloadError("reddit: Listing has no 'children' list")
        mentions = []
        for child in children:
            mention = self.parse_item(result, self._mention, child)
            if mention is not None:
                mentions.append(mention)
        after = listing.get("after")
        return mentions, after if isinstance(after, str) else None, len(children)

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": self.user_agent} if self.user_agent else {}
        if self.oauth:
            headers["Authorization"] = f"bearer {self._access_token()}"
        return headers

    def _get_json(self, url: str, params: dict[str, Any]) -> Any:
        """GET a Listing; with OAuth, a 401 (token revoked or expired early) renews the
        token and asks once more."""
        try:
            return self.http.get_json(url, params=params, headers=self._headers())
        except FatalError as exc:
            if not self.oauth or exc.status_code != 401:
                raise
            logger.info("reddit: token refused (401); getting a new one")
            with self._token_lock:
                self._token = None
            return self.http.get_json(url, params=params, headers=self._headers())

    def _access_token(self) -> str:
        """The current bearer token, fetched (or renewed) when missing or about to expire."""
        with self._token_lock:
            if self._token is None or self.clock() >= self._expires:
                self._token, lifetime = self._fetch_token()
                self.keep_secret(self._token, slot="token")
                self._expires = self.clock() + max(0.0, lifetime - TOKEN_MARGIN)
            return self._token

    def _fetch_token(self) -> tuple[str, float]:
        """``POST /api/v1/access_token`` with the script app's password grant.

        ``SourceHttp`` sends JSON bodies only, and this endpoint takes a form with HTTP basic
        auth, so the call is made on the shared client here, paced by the same limiter and
        mapped to the same errors. Reddit answers a wrong password with a 200 and
        ``{"error": "invalid_grant"}``, a wrong app id or secret with a 401.
        """
        url = f"{self.auth_url}/api/v1/access_token"
        http = self.http
        http.limiter.acquire()
        if http.stop is not None and http.stop.is_set():
            raise RetriableError("shutting down: reddit token request not sent")
        http.requests += 1
        extra: dict[str, Any] = {}
        if http.timeout is not None:
            extra["timeout"] = http.timeout
        try:
            response = http.client.post(
                url,
                data={
                    "grant_type": "password",
                    "username": self._username,
                    "password": self._password,
                },
                auth=(self._client_id, self._client_secret),
                headers={"User-Agent": self.user_agent or ""} if self.user_agent else None,
                **extra,
            )
        except httpx.TimeoutException as exc:
            raise RetriableError(f"timeout: POST reddit access_token: {describe(exc)}") from exc
        except httpx.HTTPError as exc:
            label, message = explain(exc)
            raise RetriableError(f"{label}: POST reddit access_token: {message}") from exc
        http.limiter.observe(response.headers)
        status = response.status_code
        if status == 429:
            wait = parse_retry_after(response.headers.get("retry-after"))
            if wait is not None:
                http.limiter.block_for(min(wait, http.limiter.max_wait))
            raise RateLimitedError(
                "429: POST reddit access_token", status_code=429, retry_after=wait
            )
        if status >= 500 or status == 408:
            raise RetriableError(f"{status}: POST reddit access_token", status_code=status)
        if status >= 300:
            # The body is not quoted: it may echo what was sent.
            raise FatalError(
                f"{status}: POST reddit access_token (check REDDIT_CLIENT_ID/SECRET)",
                status_code=status,
            )
        data = decode_json(response)
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            error = text_of(data.get("error")) if isinstance(data, dict) else ""
            if error:
                raise FatalError(
                    f"reddit access_token: {error[:60]} (check REDDIT_USERNAME/PASSWORD)",
                    status_code=status,
                )
            raise BadPayloadError("reddit access_token: answer has no access_token")
        lifetime = data.get("expires_in")
        if not isinstance(lifetime, int | float) or isinstance(lifetime, bool):
            lifetime = 3600.0
        return token, float(lifetime)

    def refresh_reach(self, ids: Sequence[str]) -> dict[str, reach.Fields]:
        """The current score and comments of the posts and comments ``ids`` (fullnames,
        ``t3_…``/``t1_…``), in one ``/api/info`` request."""
        names = list(dict.fromkeys(i for i in ids if _FULLNAME.match(i)))[: self.refresh_batch]
        if not names:
            return {}
        url = f"{self.base_url}/api/info" if self.oauth else f"{self.base_url}/api/info.json"
        data = self._get_json(url, {"id": ",".join(names), "raw_json": 1})
        listing = data.get("data") if isinstance(data, dict) else None
        children = listing.get("children") if isinstance(listing, dict) else None
        if not isinstance(children, list):
            raise BadPayloadError("reddit: /api/info answer is not a Listing")
        asked = set(names)
        found: dict[str, reach.Fields] = {}
        for child in children:
            kind = child.get("kind") if isinstance(child, dict) else None
            item = child.get("data") if isinstance(child, dict) else None
            if kind not in ("t1", "t3") or not isinstance(item, dict):
                continue
            name = item.get("name")
            if isinstance(name, str) and name in asked and not deleted(item):
                found[name] = reach.reddit(item, kind)
        return found

    def _mention(self, child: Any) -> Mention:
        kind = child["kind"]
        item = child["data"]
        if not isinstance(item, dict):
            raise TypeError("data is not an object")
        name = id_of(item["name"])
        created = from_unix(item["created_utc"])
        permalink = text_of(item.get("permalink"))
        link_permalink = text_of(item.get("link_permalink"))
        if permalink:
            url = permalink if permalink.startswith("http") else WEB + permalink
        elif link_permalink:
            url = f"{link_permalink.rstrip('/')}/{text_of(item.get('id'))}/"
        else:
            url = f"{WEB}/{name}"
        link = None
        if kind == "t3":
            title, text = text_of(item.get("title")), text_of(item.get("selftext"))
            if item.get("is_self") is False:  # a link post: keyed by what it links to
                link = link_of(item.get("url_overridden_by_dest") or item.get("url"))
        else:
            title, text = "", text_of(item.get("body"))
        return self.mention(
            external_id=name,
            url=url,
            link=link,
            author=text_of(item.get("author")),
            site=text_of(item.get("subreddit")),
            title=title,
            text=text,
            created_at=created,
            raw=item,
            **reach.reddit(item, kind),
        )


_FULLNAME = re.compile(r"^t[13]_[0-9a-z]{1,16}$")
#: What Reddit puts in the author and text of a deleted or removed item.
_GONE = ("[deleted]", "[removed]")


def deleted(item: dict[str, Any]) -> bool:
    """Whether a post or comment was deleted or removed (its figures are no longer the
    item's: a refresh leaves the stored ones as they were)."""
    if item.get("author") in _GONE or item.get("removed_by_category"):
        return True
    text = item.get("body") if "body" in item else item.get("selftext")
    return text in _GONE


def search_phrase(term: str) -> str:
    """A search term as Reddit's search takes it: several words are quoted."""
    term = term.replace('"', " ").strip()
    return f'"{term}"' if any(ch.isspace() for ch in term) else term
