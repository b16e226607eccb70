"""Stack Exchange questions through ``/2.3/search/advanced``, per site and per search term.

``GET {base_url}/search/advanced?q=TERM&site=SITE&fromdate=CURSOR&sort=creation&order=desc``
``&page=N&pagesize=100&filter=withbody`` (plus ``key`` when the optional secret is set).

Cursor, per site and term: the newest ``creation_date`` seen (``fromdate`` is inclusive, so
the question ids seen at exactly that second are kept too, and not reported twice). Pages
follow ``page`` while ``has_more``, until the stored cursor is reached or ``max_pages``.

The API's own throttling lives in the body:

* ``backoff`` (seconds): no call to the method before it has passed. The deadline is kept in
  the source and in the cursor (``backoff_until``), so a restart honours it too; a short one
  is waited out by the rate limiter, a long one ends the poll with ``RateLimitedError``.
* ``quota_remaining``: when it reaches 0 the poll stops with ``RateLimitedError`` (the daily
  quota comes back at midnight UTC): 300 requests a day per IP without a key, 10,000 with.
* errors come as ``{error_id, error_name, error_message}`` (older docs: ``description``):
  ``throttle_violation`` (502) is a ``RateLimitedError``, other 5xx are retriable, the rest
  (``bad_parameter``, ``access_denied``, ...) are ``FatalError``.

Titles and names carry HTML entities; bodies are HTML. Both become plain text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar

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
    RetriableError,
    Source,
    SourceError,
    SourceOptions,
    bounded_seconds,
    from_unix,
    html_to_text,
    logger,
    require,
)

_SECONDS = re.compile(r"(\d+)\s*seconds?")


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def api_error(response: httpx.Response) -> SourceError | None:
    """The ``SourceError`` for a Stack Exchange error wrapper, or None if it is not one."""
    try:
        body = json.loads(response.content)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict) or "error_id" not in body:
        return None
    name = _str(body.get("error_name")) or "error"
    message = _str(body.get("error_message")) or _str(body.get("description"))
    text = f"stackexchange {response.status_code} {name}: {message}"[:300]
    status = response.status_code
    if name == "throttle_violation":
        found = _SECONDS.search(message)
        retry_after = float(found.group(1)) if found else None
        return RateLimitedError(text, status_code=status, retry_after=retry_after)
    if status >= 500 or name in ("internal_error", "temporarily_unavailable"):
        return RetriableError(text, status_code=status)
    return FatalError(text, status_code=status)


_COM = frozenset({"stackoverflow", "superuser", "serverfault", "askubuntu", "stackapps"})


def _domain(site: str) -> str:
    """The web domain of a ``site`` parameter (``stackoverflow``, ``math``, or a domain)."""
    if "." in site:
        return site
    return f"{site}.com" if site in _COM else f"{site}.stackexchange.com"


class StackExchangeSource(Source):
    """New questions on Stack Exchange sites that match the search terms."""

    type = "stackexchange"
    default_base_url = "https://api.stackexchange.com/2.3"
    #: 300 requests a day per IP without a key (10,000 with one): one every 5 minutes.
    default_requests_per_minute = 0.2
    secrets: ClassVar[Mapping[str, str]] = {"api_key": "STACKEXCHANGE_KEY"}

    class Options(SourceOptions):
        sites: list[Annotated[str, Field(pattern=r"^[a-z0-9.-]+$")]] = Field(
            default_factory=lambda: ["stackoverflow"], min_length=1
        )
        pagesize: int = Field(100, ge=1, le=100)
        max_pages: int = Field(5, ge=1, le=25)

    def __init__(
        self,
        *args: Any,
        sites: Sequence[str] = ("stackoverflow",),
        pagesize: int = 100,
        max_pages: int = 5,
        api_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.sites = list(sites)
        self.pagesize = pagesize
        self.max_pages = max_pages
        self.api_key = api_key
        self.keep_secret(api_key)
        #: Unix time before which the API asked not to be called (its ``backoff``).
        self.backoff_until = 0.0
        #: The last ``quota_remaining`` the API reported (None: not seen yet).
        self.quota_remaining: int | None = None

    def poll(self, cursor: Cursor | None, terms: Sequence[str]) -> PollResult:
        stored = cursor or {}
        sites: dict[str, dict[str, Any]] = {
            site: dict(states)
            for site, states in stored.get("sites", {}).items()
            if isinstance(states, dict)
        }
        result = PollResult(mentions=[], cursor={**stored, "sites": sites})
        until = stored.get("backoff_until")
        if isinstance(until, int | float) and not isinstance(until, bool):
            # A stored deadline is bounded too (a cursor written before the bound, or by
            # hand, must not hold the source back for ever).
            left = bounded_seconds(float(until) - self.clock())
            if left is not None:
                self.backoff_until = max(self.backoff_until, self.clock() + left)
        start = self.http.requests
        found: dict[str, Mention] = {}
        stop = False
        for site in self.sites:
            states = sites.setdefault(site, {})
            for term in terms:
                result.units += 1
                batch: dict[str, tuple[Mention, int]] = {}
                try:
                    state = self._read(site, term, states.get(term), batch, result)
                except SourceError as exc:
                    found.update((k, m) for k, (m, _) in batch.items())
                    if not result.fail(f"stackexchange {site} {term!r}", exc):
                        stop = True
                        break
                    continue
                found.update((k, m) for k, (m, _) in batch.items())
                if state is not None:
                    states[term] = state
            if stop:
                break
        if self.backoff_until > self.clock():
            result.cursor["backoff_until"] = self.backoff_until
        else:
            result.cursor.pop("backoff_until", None)
        result.cursor["sites"] = {site: states for site, states in sites.items() if states}
        result.mentions = list(found.values())
        result.requests = self.http.requests - start
        return result

    def _call(self, params: Mapping[str, Any]) -> Any:
        """One ``search/advanced`` call, after any backoff; reads backoff and quota."""
        if self.quota_remaining == 0:
            raise RateLimitedError(
                "stackexchange: daily quota exhausted", retry_after=self._until_midnight()
            )
        wait = self.backoff_until - self.clock()
        if wait > 0:
            if wait > self.http.limiter.max_wait:
                raise RateLimitedError(
                    f"stackexchange: backoff for {wait:.0f}s more", retry_after=wait
                )
            self.http.limiter.block_for(wait)
        if self.api_key:
            params = {**params, "key": self.api_key}
        data = self.http.get_json(
            f"{self.base_url}/search/advanced", params=params, errors=api_error
        )
        if not isinstance(data, dict):
            raise BadPayloadError("stackexchange: answer is not an object")
        if "backoff" in data:
            raw = data["backoff"]
            backoff = None if isinstance(raw, str) else bounded_seconds(raw)
            if backoff is None:
                logger.warning("stackexchange: unreadable backoff %.40r ignored", raw)
            elif backoff > 0:
                logger.info("stackexchange: backoff %ss requested", backoff)
                self.backoff_until = max(self.backoff_until, self.clock() + backoff)
        quota = data.get("quota_remaining")
        if isinstance(quota, int) and not isinstance(quota, bool):
            self.quota_remaining = quota
            if quota == 0:
                logger.warning("stackexchange: daily quota exhausted")
        return data

    def _until_midnight(self) -> float:
        now = datetime.fromtimestamp(self.clock(), UTC)
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return (midnight - now).total_seconds()

    def _read(
        self,
        site: str,
        term: str,
        state: Any,
        found: dict[str, tuple[Mention, int]],
        result: PollResult,
    ) -> dict[str, Any] | None:
        """Read ``term`` on ``site`` down to the stored cursor; return the new cursor."""
        since, seen = self._since(state)
        params: dict[str, Any] = {
            "q": term,
            "site": site,
            "fromdate": since,
            "sort": "creation",
            "order": "desc",
            "pagesize": self.pagesize,
            "filter": "withbody",
        }
        ids: set[str] = set()
        for page in range(1, self.max_pages + 1):
            data = self._call({**params, "page": page})
            items = require(data, "items", list, "stackexchange search/advanced")
            reached, fresh = False, 0
            for item in items:
                parsed = self.parse_item(result, lambda i: self._mention(i, site), item)
                if parsed is None:
                    continue
                mention, created = parsed
                if created < since or (created == since and mention.external_id in seen):
                    reached = True
                    continue
                if mention.external_id not in ids:
                    fresh += 1
                    ids.add(mention.external_id)
                found.setdefault(mention.external_id, parsed)
            if reached or not items or not fresh or data.get("has_more") is not True:
                break
        else:
            logger.warning(
                "stackexchange: %s %r: stopped after %d pages", site, term, self.max_pages
            )
        if not found:
            return None
        newest = max(created for _, created in found.values())
        at_newest = {k for k, (_, created) in found.items() if created == newest}
        if newest == since:
            at_newest |= seen
        return {"from": newest, "ids": sorted(at_newest)}

    def _since(self, state: Any) -> tuple[int, set[str]]:
        if isinstance(state, dict) and isinstance(state.get("from"), int):
            ids = state.get("ids")
            seen = {i for i in ids if isinstance(i, str)} if isinstance(ids, list) else set()
            return state["from"], seen
        return int(self.backfill_start()), set()

    def _mention(self, item: Any, site: str) -> tuple[Mention, int]:
        question_id = item["question_id"]
        if isinstance(question_id, bool) or not isinstance(question_id, int):
            raise TypeError("question_id is not an integer")
        stamp = item["creation_date"]
        if isinstance(stamp, bool) or not isinstance(stamp, int):
            raise TypeError("creation_date is not an integer")
        created = from_unix(stamp)
        link = _str(item.get("link"))
        if not link.startswith(("https://", "http://")):
            link = f"https://{_domain(site)}/q/{question_id}"
        owner = item.get("owner")
        author = html_to_text(_str(owner.get("display_name"))) if isinstance(owner, dict) else ""
        mention = self.mention(
            external_id=f"{site}:{question_id}",
            url=link,
            author=author,
            site=site,
            title=html_to_text(_str(item.get("title"))),
            text=html_to_text(_str(item.get("body"))),
            created_at=created,
            raw=item,
            **reach.stackexchange(item),
        )
        return mention, stamp
