"""Bluesky posts through ``app.bsky.feed.searchPosts``, logged in with an app password.

``GET {base_url}/xrpc/app.bsky.feed.searchPosts?q=TERM&sort=latest&since=CURSOR&limit=100``

Search needs a session in practice (the public AppView often answers 403): the source logs
in once with ``com.atproto.server.createSession`` (``handle`` + ``app_password``, secrets
from the environment) and keeps the session; when the access token expires (400
``ExpiredToken`` or 401) it calls ``com.atproto.server.refreshSession``, or logs in again if
that fails, and repeats the request once. Logins are rate limited far more tightly than
reads (30 per 5 minutes), so a session lives as long as the source.

One request series per search term. Cursor, per term: the newest ``sortAt`` seen (the
earlier of ``createdAt`` and ``indexedAt``, which is what ``since`` filters on) and the URIs
seen at exactly that instant (``since`` is inclusive, so they are not reported twice).
Pages follow the opaque ``cursor`` until a page is empty or older than the stored cursor, a
cursor repeats, or ``max_pages`` is reached.

Reach refresh (``refresh_reach``): ``GET {base_url}/xrpc/app.bsky.feed.getPosts?uris=A&uris=B``
reads up to 25 posts by URI in one request, as the same post views search returns (likes,
reposts, replies, quotes); a deleted post is missing from the answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from pydantic import Field

from .. import reach
from ..models import Mention
from .base import (
    Cursor,
    FatalError,
    PollResult,
    Source,
    SourceError,
    SourceOptions,
    from_iso,
    link_of,
    logger,
    require,
)

SEARCH = "/xrpc/app.bsky.feed.searchPosts"
GET_POSTS = "/xrpc/app.bsky.feed.getPosts"
CREATE_SESSION = "/xrpc/com.atproto.server.createSession"
REFRESH_SESSION = "/xrpc/com.atproto.server.refreshSession"
WEB = "https://bsky.app"
_EXPIRED = frozenset({"ExpiredToken", "InvalidToken"})


class SessionExpiredError(FatalError):
    """The access token is no longer accepted: refresh the session and ask again."""


def iso(value: datetime) -> str:
    """An RFC 3339 UTC timestamp as Bluesky writes them (``…Z``)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def post_url(uri: str, author: str) -> str | None:
    """``https://bsky.app/profile/{author}/post/{rkey}`` from ``at://did/app.bsky.feed.post/rkey``."""
    parts = uri.removeprefix("at://").split("/")
    if not uri.startswith("at://") or len(parts) != 3 or parts[1] != "app.bsky.feed.post":
        return None
    did, _, rkey = parts
    if not rkey or not (author or did):
        return None
    return f"{WEB}/profile/{author or did}/post/{rkey}"


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


class BlueskySource(Source):
    """Bluesky posts that match the search terms, newest first."""

    type = "bluesky"
    default_base_url = "https://bsky.social"
    #: Documented: 3,000 requests per 5 minutes per IP; searchPosts is for human-directed
    #: search, so stay well below.
    default_requests_per_minute = 100.0
    #: ``getPosts`` takes up to 25 URIs.
    refresh_batch: ClassVar[int] = 25
    secrets: ClassVar[Mapping[str, str]] = {
        "handle": "BLUESKY_HANDLE",
        "app_password": "BLUESKY_APP_PASSWORD",
    }

    class Options(SourceOptions):
        limit: int = Field(100, ge=1, le=100)
        max_pages: int = Field(10, ge=1, le=100)

    def __init__(
        self,
        *args: Any,
        limit: int = 100,
        max_pages: int = 10,
        handle: str | None = None,
        app_password: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.limit = limit
        self.max_pages = max_pages
        self.handle = handle
        self._password = app_password
        self.keep_secret(app_password)
        self._access: str | None = None
        self._refresh: str | None = None

    # -- session ------------------------------------------------------------------------

    @property
    def authenticated(self) -> bool:
        """Whether the source has credentials (without them it searches anonymously)."""
        return bool(self.handle and self._password)

    def _login(self) -> None:
        data = self.http.post_json(
            self.base_url + CREATE_SESSION,
            json_body={"identifier": self.handle, "password": self._password},
        )
        self._access = require(data, "accessJwt", str, "bluesky createSession")
        refresh = data.get("refreshJwt")
        self._refresh = refresh if isinstance(refresh, str) else None
        self.keep_secret(self._access, self._refresh, slot="session")

    def _renew(self) -> None:
        """Refresh the session, or log in again when the refresh token is refused too."""
        self._access = None
        if self._refresh:
            try:
                data = self.http.post_json(
                    self.base_url + REFRESH_SESSION,
                    headers={"Authorization": f"Bearer {self._refresh}"},
                )
                self._access = require(data, "accessJwt", str, "bluesky refreshSession")
                refresh = data.get("refreshJwt")
                self._refresh = refresh if isinstance(refresh, str) else None
                self.keep_secret(self._access, self._refresh, slot="session")
                return
            except FatalError:
                logger.info("bluesky: refreshSession refused; logging in again")
        self._login()

    def _headers(self) -> Mapping[str, str] | None:
        if not self.authenticated:
            return None
        if self._access is None:
            self._login()
        return {"Authorization": f"Bearer {self._access}"}

    def _expired(self, response: httpx.Response) -> SourceError | None:
        if not self.authenticated or response.status_code not in (400, 401):
            return None
        try:
            error = json.loads(response.content).get("error")
        except (ValueError, AttributeError, RecursionError):
            error = None
        if response.status_code == 401 or error in _EXPIRED:
            return SessionExpiredError(
                f"bluesky: session expired ({error or response.status_code})",
                status_code=response.status_code,
            )
        return None

    def _search(self, params: Mapping[str, Any]) -> Any:
        return self._get(self.base_url + SEARCH, params)

    def _get(self, url: str, params: Mapping[str, Any]) -> Any:
        try:
            return self.http.get_json(
                url, params=params, headers=self._headers(), errors=self._expired
            )
        except SessionExpiredError:
            self._renew()
            # Once more with the new token; expiring again at once is a plain FatalError.
            return self.http.get_json(url, params=params, headers=self._headers())

    # -- polling ------------------------------------------------------------------------

    def poll(self, cursor: Cursor | None, terms: Sequence[str]) -> PollResult:
        states: dict[str, Any] = dict((cursor or {}).get("terms", {}))
        result = PollResult(mentions=[], cursor={"terms": states})
        start = self.http.requests
        found: dict[str, Mention] = {}
        for term in terms:
            result.units += 1
            batch: dict[str, tuple[Mention, datetime]] = {}
            try:
                state = self._read(term, states.get(term), batch, result)
            except SourceError as exc:
                found.update((k, m) for k, (m, _) in batch.items())
                if not result.fail(f"bluesky {term!r}", exc):
                    break
                continue
            found.update((k, m) for k, (m, _) in batch.items())
            if state is not None:
                states[term] = state
        result.mentions = list(found.values())
        result.requests = self.http.requests - start
        return result

    def _read(
        self,
        term: str,
        state: Any,
        found: dict[str, tuple[Mention, datetime]],
        result: PollResult,
    ) -> dict[str, Any] | None:
        """Read ``term`` down to the stored cursor; return the new cursor (None: unchanged)."""
        since, seen = self._since(state)
        params: dict[str, Any] = {"q": term, "sort": "latest", "since": iso(since)}
        params["limit"] = self.limit
        tokens: set[str] = set()
        for _ in range(self.max_pages):
            data = self._search(params)
            posts = require(data, "posts", list, "bluesky searchPosts")
            reached = False
            for post in posts:
                item = self.parse_item(result, self._mention, post)
                if item is None:
                    continue
                mention, sort_at = item
                if sort_at < since or (sort_at == since and mention.external_id in seen):
                    reached = True
                    continue
                found.setdefault(mention.external_id, item)
            page = data.get("cursor")
            if reached or not posts or not isinstance(page, str) or page in tokens:
                break
            tokens.add(page)
            params["cursor"] = page
        else:
            logger.warning("bluesky: %r: stopped after %d pages", term, self.max_pages)
        if not found:
            return None
        newest = max(sort_at for _, sort_at in found.values())
        uris = sorted(k for k, (_, sort_at) in found.items() if sort_at == newest)
        if newest == since:
            uris = sorted(set(uris) | seen)
        return {"since": iso(newest), "uris": uris}

    def _since(self, state: Any) -> tuple[datetime, set[str]]:
        if isinstance(state, dict) and isinstance(state.get("since"), str):
            try:
                uris = state.get("uris")
                seen = {u for u in uris if isinstance(u, str)} if isinstance(uris, list) else set()
                return from_iso(state["since"]), seen
            except ValueError:
                logger.warning("bluesky: unreadable cursor %r; backfilling", state)
        return datetime.fromtimestamp(self.backfill_start(), UTC), set()

    def refresh_reach(self, ids: Sequence[str]) -> dict[str, reach.Fields]:
        """The current likes, reposts, replies and quotes of the posts ``ids`` (``at://``
        URIs), in one ``getPosts`` request."""
        uris = list(dict.fromkeys(i for i in ids if i.startswith("at://")))[: self.refresh_batch]
        if not uris:
            return {}
        data = self._get(self.base_url + GET_POSTS, {"uris": uris})
        posts = require(data, "posts", list, "bluesky getPosts")
        asked = set(uris)
        found: dict[str, reach.Fields] = {}
        for post in posts:
            uri = post.get("uri") if isinstance(post, dict) else None
            if isinstance(uri, str) and uri in asked:
                found[uri] = reach.bluesky(post)
        return found

    def _mention(self, post: Any) -> tuple[Mention, datetime]:
        uri = post["uri"]
        record = post["record"]
        author = post.get("author")
        if not isinstance(uri, str) or not isinstance(record, dict):
            raise TypeError("post without uri/record")
        indexed = from_iso(post["indexedAt"]) if post.get("indexedAt") else None
        created = from_iso(record["createdAt"]) if record.get("createdAt") else indexed
        if created is None:
            raise ValueError("post without a time")
        handle = _str(author.get("handle")) if isinstance(author, dict) else ""
        did = _str(author.get("did")) if isinstance(author, dict) else ""
        url = post_url(uri, handle if handle and handle != "handle.invalid" else did)
        if url is None:
            raise ValueError(f"unexpected post uri {uri[:80]!r}")
        langs = record.get("langs")
        language = (
            langs[0][:16]
            if isinstance(langs, list) and langs and isinstance(langs[0], str)
            else None
        )
        sort_at = min(created, indexed) if indexed is not None else created
        mention = self.mention(
            external_id=uri,
            url=url,
            link=_external_link(post, record),
            author=handle or did,
            site="bsky.app",
            title="",
            text=_str(record.get("text")),
            created_at=created,
            language=language,
            raw=post,
            **reach.bluesky(post),
        )
        return mention, sort_at


def _external_link(post: dict[str, Any], record: dict[str, Any]) -> str | None:
    """The URL of a post's external link card (``app.bsky.embed.external``), if any."""
    for embed in (post.get("embed"), record.get("embed")):
        if isinstance(embed, dict) and isinstance(embed.get("external"), dict):
            found = link_of(embed["external"].get("uri"))
            if found:
                return found
    return None
