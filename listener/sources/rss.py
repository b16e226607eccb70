"""Any RSS or Atom feed, Google Alerts included, parsed with ``feedparser``.

``GET <feed URL>`` for each URL in ``feeds`` (each feed is its own unit with its own cursor;
``base_url`` is not used). The bytes are fetched through ``SourceHttp`` (pacing, timeouts,
the User-Agent, error mapping) and only parsed by ``feedparser``, which never fetches.

A feed has no pagination: each fetch returns the latest entries. The cursor, per feed, keeps
the ``ETag`` and ``Last-Modified`` of the last answer (sent back as ``If-None-Match`` and
``If-Modified-Since``, so an unchanged feed answers 304 and costs nothing), the newest
published time seen, and the ids of the entries seen (the latest 500). An entry is new
when its id (``<id>``/``<guid>``, else its link) is not among those and it is not older than
the backfill window before the newest time seen (a first poll: the backfill window).

Google Alerts quirks handled here: links are ``https://www.google.com/url?...&url=<target>``
redirects, unwrapped to the target; titles and content carry escaped ``<b>`` highlights,
turned into plain text like every entry's HTML.
"""

from __future__ import annotations

import calendar
import hashlib
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from pydantic import Field

from ..models import Mention
from .base import (
    MAX_ID,
    BadPayloadError,
    Cursor,
    PollResult,
    Source,
    SourceError,
    SourceOptions,
    describe,
    html_to_text,
    text_of,
)

ACCEPT = (
    "application/atom+xml, application/rss+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
#: Hosts whose ``/url?url=<target>`` links are redirects to unwrap (Google Alerts).
REDIRECT_HOSTS = frozenset({"www.google.com", "google.com"})
#: At most this many entry ids are kept per feed in the cursor.
MAX_SEEN = 500


_CHAR_REF = re.compile(rb"&#(?:[xX]([0-9A-Fa-f]{1,8})|([0-9]{1,10}));")


def _safe_ref(match: re.Match[bytes]) -> bytes:
    hexa, decimal = match.groups()
    point = int(hexa, 16) if hexa else int(decimal)
    if point == 0 or 0xD800 <= point <= 0xDFFF or point > 0x10FFFF:
        return b"&#xFFFD;"  # feedparser raised on a lone surrogate's reference
    return match.group(0)


def defuse(content: bytes) -> bytes:
    """``content`` with character references no text can hold (NUL, surrogates, beyond
    U+10FFFF) replaced by U+FFFD: one such entry made the whole feed unreadable."""
    return _CHAR_REF.sub(_safe_ref, content) if b"&#" in content else content


def web_link(link: str) -> str:
    """``link`` if it is an http(s) URL with a host that parses, else ``""``."""
    try:
        parts = urlsplit(link)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # http://[::1/ and friends
        ok = False
    return link if ok else ""


def entry_key(entry_id: str) -> str:
    """An entry's ``external_id``: its id, or, when longer than the database holds, a digest
    of it (cutting it would make two entries with a common start one)."""
    if len(entry_id) <= MAX_ID:
        return entry_id
    digest = hashlib.sha256(entry_id.encode("utf-8", errors="surrogatepass")).hexdigest()
    return f"sha256:{digest}"


def unwrap_link(link: str) -> str:
    """The target of a Google redirect link (``google.com/url?...&url=<target>``), else ``link``."""
    try:
        parts = urlsplit(link)
    except ValueError:
        return link
    if parts.hostname in REDIRECT_HOSTS and parts.path == "/url":
        query = parse_qs(parts.query)
        for key in ("url", "q"):
            target = query.get(key, [""])[0]
            if target.startswith(("http://", "https://")):
                return target
    return link


def _when(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            try:
                return datetime.fromtimestamp(calendar.timegm(value), UTC)
            except (TypeError, ValueError, OverflowError, OSError):
                continue
    return None


class RssSource(Source):
    """Entries of a list of RSS/Atom feeds (Google Alerts, blogs, forums, news)."""

    type = "rss"
    #: Not used: every feed is a full URL.
    default_base_url = ""
    #: No documented budget; feeds are fetched once per poll each.
    default_requests_per_minute = 30.0

    class Options(SourceOptions):
        feeds: list[Annotated[str, Field(pattern=r"^https?://\S+$")]] = Field(min_length=1)

    def __init__(self, *args: Any, feeds: Sequence[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        bad = [url for url in feeds if not url.startswith(("http://", "https://"))]
        if bad or not feeds:
            raise ValueError(f"rss: feeds must be http(s) URLs, got {bad or 'none'}")
        self.feeds = list(dict.fromkeys(feeds))

    def poll(self, cursor: Cursor | None, terms: Sequence[str]) -> PollResult:
        states: dict[str, Any] = dict((cursor or {}).get("feeds", {}))
        result = PollResult(mentions=[], cursor={"feeds": states})
        start = self.http.requests
        for url in self.feeds:
            result.units += 1
            try:
                entries, state = self._read(url, states.get(url), result)
            except SourceError as exc:
                if not result.fail(f"rss {url.split('?', 1)[0]}", exc):
                    break
                continue
            states[url] = state
            result.mentions.extend(entries)
        result.requests = self.http.requests - start
        return result

    def _read(
        self, url: str, state: dict[str, Any] | None, result: PollResult
    ) -> tuple[list[Mention], dict[str, Any]]:
        state = dict(state or {})
        headers = {"Accept": ACCEPT}
        if isinstance(state.get("etag"), str):
            headers["If-None-Match"] = state["etag"]
        if isinstance(state.get("modified"), str):
            headers["If-Modified-Since"] = state["modified"]
        response = self.http.get(url, headers=headers)
        if response.status_code == 304:
            return [], state
        import feedparser  # only where a feed is configured (it costs ~9 MB)

        try:
            parsed = feedparser.parse(
                defuse(response.content),
                response_headers={"content-type": response.headers.get("content-type", "")},
            )
        except Exception as exc:  # feedparser is lenient; what it still trips on is junk
            where = url.split("?", 1)[0]
            raise BadPayloadError(f"rss: {where} could not be parsed: {describe(exc)}") from exc
        if not parsed.get("version") and not parsed.entries:
            problem = parsed.get("bozo_exception")
            raise BadPayloadError(f"rss: {url.split('?', 1)[0]} is not a feed: {problem}")
        seen = {str(i) for i in state.get("seen", [])}
        newest = state.get("newest")
        if not isinstance(newest, int | float) or isinstance(newest, bool):
            newest = None
        floor = newest - self.backfill_seconds if newest is not None else self.backfill_start()
        fetched = self.clock()
        mentions: list[Mention] = []
        ids: list[str] = []
        for entry in parsed.entries:
            mention = self.parse_item(result, lambda e: self._mention(e, url, fetched), entry)
            if mention is None:
                continue
            ids.append(mention.external_id)
            # An id longer than 255 characters was stored cut before it became a digest:
            # the cut form in the cursor still means "seen" (no second alert on upgrade).
            if mention.external_id in seen or str(mention.raw.get("id"))[:MAX_ID] in seen:
                continue
            if mention.raw.get("dated") and mention.created_at.timestamp() <= floor:
                continue
            seen.add(mention.external_id)
            mentions.append(mention)
        dated = [m.created_at.timestamp() for m in mentions if m.raw.get("dated")]
        if dated:
            state["newest"] = max(dated) if newest is None else max(newest, *dated)
        # The ids the feed holds now (it only ever shows its latest entries), then the ones
        # seen before, so an entry that drops out and comes back is not new again.
        before = [str(i) for i in state.get("seen", [])]
        state["seen"] = list(dict.fromkeys([*ids, *before]))[:MAX_SEEN]
        for header, key in (("etag", "etag"), ("last-modified", "modified")):
            value = response.headers.get(header)
            if value:
                state[key] = value
        return mentions, state

    def _mention(self, entry: Any, feed: str, fetched: float) -> Mention:
        unwrapped = unwrap_link(text_of(entry.get("link")))
        link = web_link(unwrapped)
        entry_id = text_of(entry.get("id")) or unwrapped
        if not entry_id:
            raise ValueError("entry without id or link")
        when = _when(entry)
        content = entry.get("content")
        body = ""
        if isinstance(content, list) and content and isinstance(content[0], dict):
            body = text_of(content[0].get("value"))
        body = body or text_of(entry.get("summary"))
        author = text_of(entry.get("author"))
        raw = {
            "id": entry_id,
            "link": text_of(entry.get("link")),
            "title": text_of(entry.get("title")),
            "summary": body,
            "author": author,
            "published": text_of(entry.get("published") or entry.get("updated")),
            "feed": feed,
            "dated": when is not None,
        }
        return self.mention(
            external_id=entry_key(entry_id),
            url=link or feed,
            # The entry is the article (a feed item, a Google Alert): its own link.
            link=link or None,
            author=author,
            site=urlsplit(link or feed).hostname or "",
            title=html_to_text(entry.get("title")),
            text=html_to_text(body),
            created_at=when or datetime.fromtimestamp(fetched, UTC),
            raw=raw,
        )
