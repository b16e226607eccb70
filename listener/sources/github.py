"""GitHub issues and pull requests (REST search), and discussions (GraphQL search).

``GET {base_url}/search/issues?q=TERM created:>=ISO&sort=created&order=desc&per_page=100``

Each search term gets its own search and its own cursor: the newest ``created_at`` seen and
the ids created in that same second (``created:>=`` is inclusive, so those come back and are
dropped here). Pages follow the ``Link: rel="next"`` header. GitHub serves at most 1,000
results per search, so when a burst is larger the source narrows the window below the oldest
item it got (``created:<=OLDEST``) and goes on, until the window is complete. A search that
timed out on GitHub's side answers ``incomplete_results: true``: the items are kept, the
poll logs it, and the next poll's inclusive window reads that stretch again.

Discussions have no REST search. With ``discussions = true`` (which needs a token: GitHub's
GraphQL API refuses anonymous calls) the source also runs
``search(query: "TERM created:>=ISO sort:created-desc", type: DISCUSSION)`` through
``POST {base_url}/graphql``, paged with ``pageInfo.endCursor``, with its own cursor per term.

Budget: the search API allows 30 requests a minute with a token, 10 without. Primary
limits come as ``X-RateLimit-Remaining``/``X-RateLimit-Reset`` (epoch seconds); secondary
limits answer 403 or 429 with a message that names a "rate limit" and, sometimes, a
``Retry-After``. Following GitHub's guidance the source then waits ``Retry-After`` seconds,
else until ``X-RateLimit-Reset`` when nothing remains, else one minute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field

from .. import reach
from ..models import Mention
from .base import (
    BadPayloadError,
    Cursor,
    FatalError,
    PollResult,
    RateLimitedError,
    Source,
    SourceError,
    SourceOptions,
    decode_json,
    from_iso,
    id_of,
    logger,
    parse_retry_after,
    reset_seconds,
    same_origin,
    text_of,
)

API_VERSION = "2022-11-28"
KINDS: tuple[Literal["issues", "discussions"], ...] = ("issues",)
#: Without a token GitHub allows 10 search requests a minute; with one, 30.
TOKEN_REQUESTS_PER_MINUTE = 30.0
#: GitHub's advice when a secondary limit gives no other hint: wait at least a minute.
SECONDARY_WAIT = 60.0

DISCUSSIONS_QUERY = """
query($q: String!, $first: Int!, $after: String) {
  search(query: $q, type: DISCUSSION, first: $first, after: $after) {
    discussionCount
    pageInfo { hasNextPage endCursor }
    nodes {
      ... on Discussion {
        id number title body url createdAt
        author { login }
        repository { nameWithOwner }
        comments { totalCount }
        reactions { totalCount }
        upvoteCount
      }
    }
  }
}
"""


def iso(stamp: float) -> str:
    """``stamp`` (unix seconds) as GitHub's search qualifiers write it: ``2024-01-02T03:04:05Z``."""
    return datetime.fromtimestamp(int(stamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def search_phrase(term: str) -> str:
    """A search term as GitHub's query syntax takes it: several words are quoted."""
    term = term.replace('"', " ").strip()
    return f'"{term}"' if any(ch.isspace() for ch in term) else term


def github_errors(response: httpx.Response) -> SourceError | None:
    """GitHub's rate-limit answers (403 or 429), read the way GitHub documents them.

    A primary limit has ``X-RateLimit-Remaining: 0``; a secondary one says "rate limit" in
    its message. Wait ``Retry-After`` if given, else until ``X-RateLimit-Reset`` when the
    window is spent, else one minute. Any other 403 is left to the default (fatal).
    """
    if response.status_code not in (403, 429):
        return None
    remaining = response.headers.get("x-ratelimit-remaining")
    spent = remaining is not None and remaining.strip() in ("0", "0.0")
    message = response.content[:2000].decode("utf-8", errors="replace").lower()
    if response.status_code == 403 and not spent and "rate limit" not in message:
        return None
    wait = parse_retry_after(response.headers.get("retry-after"))
    if wait is None and spent:
        wait = reset_seconds(response.headers)
    if wait is None:
        wait = SECONDARY_WAIT
    where = str(response.request.url).split("?", 1)[0]
    kind = "primary" if spent else "secondary"
    return RateLimitedError(
        f"{response.status_code} {kind} rate limit: GET {where}",
        status_code=response.status_code,
        retry_after=wait,
    )


class GitHubSource(Source):
    """Issues, pull requests and (with a token) discussions that contain a query term."""

    type = "github"
    default_base_url = "https://api.github.com"
    #: Documented: 10 search requests a minute without a token (30 with one, set below).
    default_requests_per_minute = 10.0
    secrets: ClassVar[Mapping[str, str]] = {"token": "GITHUB_TOKEN"}

    class Options(SourceOptions):
        kinds: list[Literal["issues", "discussions"]] = Field(
            default_factory=lambda: list(KINDS), min_length=1
        )
        qualifiers: str = ""
        per_page: int = Field(100, ge=1, le=100)

    def __init__(
        self,
        *args: Any,
        kinds: Sequence[str] = ("issues",),
        qualifiers: str = "",
        per_page: int = 100,
        token: str | None = None,
        max_requests_per_term: int = 40,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        unknown = [kind for kind in kinds if kind not in ("issues", "discussions")]
        if unknown:
            raise ValueError(f"unknown github kind(s): {', '.join(unknown)}")
        if "discussions" in kinds and not token:
            raise ValueError(
                "github: kinds = ['discussions'] needs a token (GITHUB_TOKEN): "
                "GitHub's GraphQL search does not answer anonymous calls"
            )
        self.kinds = list(dict.fromkeys(kinds))
        self.qualifiers = qualifiers.strip()
        self.per_page = per_page
        self.token = token
        self.keep_secret(token)
        self.max_requests_per_term = max_requests_per_term
        limiter = self.http.limiter
        if token and abs(limiter.interval - 60.0 / self.default_requests_per_minute) < 1e-9:
            # The config left the budget at the anonymous default: a token allows 30/min.
            limiter.interval = 60.0 / TOKEN_REQUESTS_PER_MINUTE

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def poll(self, cursor: Cursor | None, terms: Sequence[str]) -> PollResult:
        states: dict[str, Any] = dict((cursor or {}).get("searches", {}))
        result = PollResult(mentions=[], cursor={"searches": states})
        start = self.http.requests
        found: dict[str, Mention] = {}
        stop = False
        for kind in self.kinds:
            for term in terms:
                result.units += 1
                key = f"{kind}:{term}"
                state = states.get(key) or {}
                since = float(state.get("since") or self.backfill_start())
                known = {str(i) for i in state.get("ids", [])}
                batch: dict[str, Mention] = {}
                try:
                    if kind == "issues":
                        self._search_issues(term, since, batch, result)
                    else:
                        self._search_discussions(term, since, batch, result)
                except SourceError as exc:
                    found.update((k, m) for k, m in batch.items() if k not in known)
                    if not result.fail(f"github {kind} {term!r}", exc):
                        stop = True
                        break
                    continue
                fresh = {k: m for k, m in batch.items() if k not in known}
                found.update(fresh)
                states[key] = _advance(since, known, batch.values())
            if stop:
                break
        result.mentions = list(found.values())
        result.requests = self.http.requests - start
        return result

    def _query(self, term: str, since: float, upper: float | None) -> str:
        parts = [search_phrase(term), f"created:>={iso(since)}"]
        if upper is not None:
            parts.append(f"created:<={iso(upper)}")
        if self.qualifiers:
            parts.append(self.qualifiers)
        return " ".join(parts)

    def _search_issues(
        self, term: str, since: float, found: dict[str, Mention], result: PollResult
    ) -> None:
        upper: float | None = None
        requests = 0
        while True:
            url: str | None = f"{self.base_url}/search/issues"
            params: dict[str, Any] | None = {
                "q": self._query(term, since, upper),
                "sort": "created",
                "order": "desc",
                "per_page": self.per_page,
            }
            fetched = 0
            total: int | None = None
            oldest: float | None = None
            pages: set[str] = set()
            while url:
                response = self.http.get(
                    url, params=params, headers=self._headers(), errors=github_errors
                )
                requests += 1
                data = decode_json(response)
                if not isinstance(data, dict) or not isinstance(data.get("items"), list):
                    raise BadPayloadError("github: answer has no 'items' list")
                if data.get("incomplete_results") is True:
                    logger.warning("github: search for %r timed out upstream (incomplete)", term)
                if isinstance(data.get("total_count"), int):
                    total = data["total_count"]
                items: list[Any] = data["items"]
                for item in items:
                    mention = self.parse_item(result, self._issue, item)
                    if mention is None:
                        continue
                    found.setdefault(mention.external_id, mention)
                    stamp = mention.created_at.timestamp()
                    oldest = stamp if oldest is None else min(oldest, stamp)
                fetched += len(items)
                following = _next_link(response)
                if not items or not following or following in pages:
                    break
                # The next page gets the token: only ever from the configured API.
                same_origin(following, self.base_url)
                if requests >= self.max_requests_per_term:
                    logger.warning("github: request cap reached for %r", term)
                    return
                pages.add(following)
                url, params = following, None
            truncated = total is not None and total > fetched and fetched > 0
            if not truncated or oldest is None or (upper is not None and oldest >= upper):
                return
            if requests >= self.max_requests_per_term:
                logger.warning("github: request cap reached for %r", term)
                return
            # More results than GitHub pages through (1,000): read the older part too.
            upper = oldest

    def _search_discussions(
        self, term: str, since: float, found: dict[str, Mention], result: PollResult
    ) -> None:
        query = f"{self._query(term, since, None)} sort:created-desc"
        after: str | None = None
        tokens: set[str] = set()
        for _ in range(self.max_requests_per_term):
            data = self.http.post_json(
                f"{self.base_url}/graphql",
                json_body={
                    "query": DISCUSSIONS_QUERY,
                    "variables": {"q": query, "first": min(self.per_page, 100), "after": after},
                },
                headers=self._headers(),
                errors=github_errors,
            )
            search = _graphql_search(data)
            nodes = search.get("nodes")
            if not isinstance(nodes, list):
                raise BadPayloadError("github: GraphQL search has no 'nodes' list")
            for node in nodes:
                mention = self.parse_item(result, self._discussion, node)
                if mention is None:
                    continue
                found.setdefault(mention.external_id, mention)
            info = search.get("pageInfo")
            if not isinstance(info, dict) or info.get("hasNextPage") is not True:
                return
            after = info.get("endCursor")
            if not nodes or not isinstance(after, str) or after in tokens:
                return
            tokens.add(after)
        logger.warning("github: request cap reached for discussions %r", term)

    def _issue(self, item: Any) -> Mention:
        number = id_of(item["id"])
        created = from_iso(item["created_at"])
        url = item["html_url"]
        if not isinstance(url, str) or not url.startswith("http"):
            raise ValueError("no html_url")
        user = item.get("user")
        repository = text_of(item.get("repository_url"))
        return self.mention(
            external_id=number,
            url=url,
            author=text_of(user.get("login")) if isinstance(user, dict) else "",
            site=repository.split("/repos/", 1)[1] if "/repos/" in repository else "",
            title=text_of(item.get("title")),
            text=text_of(item.get("body")),
            created_at=created,
            raw=item,
            **reach.github_issue(item),
        )

    def _discussion(self, node: Any) -> Mention:
        node_id = id_of(node["id"])
        created = from_iso(node["createdAt"])
        url = node["url"]
        if not isinstance(url, str) or not url.startswith("http"):
            raise ValueError("no url")
        author = node.get("author")
        repository = node.get("repository")
        return self.mention(
            external_id=node_id,
            url=url,
            author=text_of(author.get("login")) if isinstance(author, dict) else "",
            site=text_of(repository.get("nameWithOwner")) if isinstance(repository, dict) else "",
            title=text_of(node.get("title")),
            text=text_of(node.get("body")),
            created_at=created,
            raw=node,
            **reach.github_discussion(node),
        )


def _graphql_search(data: Any) -> dict[str, Any]:
    """The ``search`` object of a GraphQL answer; GraphQL errors come with a 200."""
    if isinstance(data, dict) and isinstance(data.get("errors"), list) and data["errors"]:
        first = data["errors"][0] if isinstance(data["errors"][0], dict) else {}
        kind = text_of(first.get("type"))
        message = text_of(first.get("message"))[:200]
        if kind == "RATE_LIMITED":
            raise RateLimitedError(f"github GraphQL: {message}", retry_after=SECONDARY_WAIT)
        if kind in ("FORBIDDEN", "NOT_FOUND", "INSUFFICIENT_SCOPES"):
            raise FatalError(f"github GraphQL {kind}: {message}")
        raise BadPayloadError(f"github GraphQL {kind or 'error'}: {message}")
    payload = data.get("data") if isinstance(data, dict) else None
    search = payload.get("search") if isinstance(payload, dict) else None
    if not isinstance(search, dict):
        raise BadPayloadError("github: GraphQL answer has no data.search")
    return search


def _next_link(response: httpx.Response) -> str | None:
    """The ``Link: <…>; rel="next"`` URL of ``response``, if any (never raises)."""
    try:
        url = response.links.get("next", {}).get("url")
    except Exception:  # a header httpx cannot split is no link at all
        return None
    return url if isinstance(url, str) and url else None


def _advance(since: float, known: set[str], batch: Any) -> dict[str, Any]:
    """The cursor after a complete search: the newest second seen and the ids in it."""
    mentions = list(batch)
    newest = max([int(since), *(int(m.created_at.timestamp()) for m in mentions)])
    ids = {m.external_id for m in mentions if int(m.created_at.timestamp()) == newest}
    if newest == int(since):
        ids |= known
    return {"since": newest, "ids": sorted(ids)}
