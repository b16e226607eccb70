"""What every source shares: the error classes, polite HTTP, the cursor contract.

A source is one small class. It turns one API into ``Mention`` objects and owns a JSON
cursor that says where it stopped reading. The pipeline hands it the stored cursor and the
search terms, and stores the new cursor only after every item of the poll is stored, so a
failed poll is simply repeated: nothing is skipped, and duplicates are dropped by the store.

Errors are split the way Singer SDK splits them:

* ``RetriableError``: a timeout, a 5xx, a 429, a truncated or non-JSON body. The next poll
  tries again; ``retry_after`` (seconds) says when the API asked us to come back.
* ``FatalError``: a 401, 403 or 404, a request the API will never answer. Retrying at once
  will not help; the source is reported failing until its configuration is fixed.
"""

from __future__ import annotations

import builtins
import email.utils
import html
import json
import logging
import math
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict

from ..models import Mention
from ..reach import Fields, figure
from ..redaction import REDACTOR, redact

logger = logging.getLogger("earshot.listener.sources")

Cursor = dict[str, Any]

#: A source's own reading of an error response: a ``SourceError``, or ``None`` for the default.
ErrorMapper = Callable[[httpx.Response], "SourceError | None"]

#: How much of a response body goes into an error message.
_SNIPPET = 200
#: How much of the body is read (and redacted) before the snippet is cut from it, so that
#: a secret straddling the cut is masked whole rather than half shown.
_SNIPPET_WINDOW = 4096
#: The longest pause any API hint (``Retry-After``, a rate-limit reset, Stack Exchange's
#: ``backoff``) can impose: longer ones are taken as this. The longest documented window
#: (Bluesky's daily login budget) is a day.
MAX_WAIT_HINT = 24 * 3600.0
#: An item dated further than this in the future is malformed: it would carry a source's
#: time cursor past everything that comes after it.
FUTURE_SLACK = 24 * 3600.0
#: ``external_id`` is a ``VARCHAR(255)`` in the database.
MAX_ID = 255

T = TypeVar("T")


class SourceError(Exception):
    """A poll failed. ``retriable`` says whether the next poll may simply try again.

    The message is redacted (``earshot.listener.redaction``) when the error is made, so it
    can go to the logs, the stored source health and the Slack health alert as it is.
    """

    retriable: ClassVar[bool] = True

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(redact(message))
        self.status_code = status_code


class BadItemError(ValueError):
    """One item of a page is not a usable mention; the poll skips it and counts it."""


def explain(exc: BaseException) -> tuple[str, str]:
    """``(type names, message)`` of ``exc`` with its cause, e.g. ``("ConnectError",
    "[Errno -2] Name or service not known")``.

    httpx's errors often say nothing themselves; the reason is in the chained
    ``__cause__``/``__context__`` (the socket's ``OSError``, the TLS error). The first
    non-empty message along the chain is used; the types passed on the way are named in
    brackets. Both parts are redacted.
    """
    names: list[str] = []
    message = ""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 8:
        seen.add(id(current))
        name = type(current).__name__
        if name not in names:
            names.append(name)
        text = " ".join(str(current).split())
        if text:
            message = text
            break
        current = current.__cause__ or current.__context__
    label = names[0] if len(names) == 1 else f"{names[0]} ({', '.join(names[1:])})"
    return label, redact(message[:300])


def describe(exc: BaseException) -> str:
    """``exc`` in one line with its cause: ``ConnectError: [Errno -2] Name or service...``."""
    label, message = explain(exc)
    return f"{label}: {message}" if message else label


class RetriableError(SourceError):
    """A passing failure: timeout, connection reset, 5xx, 429, malformed body."""

    retriable = True

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after


class RateLimitedError(RetriableError):
    """The API said "too many requests"; ``retry_after`` holds its requested pause."""


class BadPayloadError(RetriableError):
    """The API answered 200 with something that is not the documented shape."""


class FatalError(SourceError):
    """An answer that will not change by asking again (401, 403, 404, other 4xx)."""

    retriable = False


def bounded_seconds(value: Any, maximum: float = MAX_WAIT_HINT) -> float | None:
    """A pause an API asked for, as seconds in ``[0, maximum]``; ``None`` if unreadable.

    Takes a number or a numeric string. Infinities, NaN, booleans, numbers too large for a
    float (``1e400``, 400 digits) and anything else give ``None``; a readable but huge value
    is cut to ``maximum``, so no answer can stop a source for longer than that.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        return None
    if not math.isfinite(seconds):
        return None
    return min(maximum, max(0.0, seconds))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Never raises: an unreadable value is ``None``, a huge one is ``MAX_WAIT_HINT``.
    """
    if not value or not isinstance(value, str):
        return None
    value = value.strip()
    seconds = bounded_seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        stamp = when.timestamp()
    except (TypeError, ValueError, OverflowError, OSError, IndexError):
        return None
    current = now if now is not None else time.time()
    return bounded_seconds(stamp - current)


class RateLimiter:
    """Keeps one source within its documented request budget.

    Two rules, both thread-safe:

    * pacing: at most ``requests_per_minute`` requests, spaced evenly (a small burst is
      allowed so that a poll of a few requests does not wait at all);
    * the API's own word: after a response says the window is spent (``remaining`` 0) the
      next request waits until the window resets (at most ``max_wait`` seconds; longer
      waits are raised as ``RateLimitedError`` so the poll is retried later instead).
    """

    def __init__(
        self,
        requests_per_minute: float | None,
        *,
        burst: int = 5,
        max_wait: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self.burst = max(1, burst)
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(self.burst)
        self._updated = clock()
        self._blocked_until = 0.0
        self.waited = 0.0

    def acquire(self) -> None:
        """Wait for the next request slot, or raise ``RateLimitedError`` if it is far off."""
        with self._lock:
            now = self._clock()
            wait = max(0.0, self._blocked_until - now)
            if self.interval:
                self._tokens = min(
                    float(self.burst), self._tokens + (now - self._updated) / self.interval
                )
                self._updated = now
                if self._tokens < 1.0:
                    wait = max(wait, (1.0 - self._tokens) * self.interval)
            if wait > self.max_wait:
                raise RateLimitedError(
                    f"rate limit: next request allowed in {wait:.0f}s", retry_after=wait
                )
            if self.interval:
                self._tokens -= 1.0
        if wait > 0:
            self.waited += wait
            self._sleep(wait)

    def block_for(self, seconds: float) -> None:
        """The API asked for a pause: no request before ``seconds`` from now.

        The pause is bounded by ``MAX_WAIT_HINT``; a non-finite one is ignored.
        """
        pause = bounded_seconds(seconds)
        if pause is None:
            return
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + pause)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read the rate-limit headers of a response (``X-RateLimit-*``, ``RateLimit-*``)."""
        remaining = _header_float(headers, "x-ratelimit-remaining", "ratelimit-remaining")
        if remaining is None or remaining >= 1:
            return
        seconds = reset_seconds(headers)
        if seconds is None:
            return
        self.block_for(seconds)


def reset_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds until the rate-limit window resets, from ``X-RateLimit-Reset``/``RateLimit-Reset``.

    Three spellings are in use: seconds until the reset (Reddit), an epoch timestamp
    (GitHub, Bluesky) and an ISO 8601 timestamp (Mastodon). ``None`` when absent or
    unreadable; at most ``MAX_WAIT_HINT``. Never raises, whatever the header holds.
    """
    value = None
    for name in ("x-ratelimit-reset", "ratelimit-reset"):
        value = headers.get(name)
        if value is not None:
            break
    if value is None:
        return None
    current = time.time() if now is None else now
    try:
        reset = float(value)
    except (ValueError, OverflowError):
        try:
            when = from_iso(value.strip())
        except ValueError:
            return None
        return bounded_seconds(when.timestamp() - current)
    if not math.isfinite(reset):
        return None
    return bounded_seconds(reset - current if reset > 1_000_000_000 else reset)


def _header_float(headers: Mapping[str, str], *names: str) -> float | None:
    for name in names:
        value = headers.get(name)
        if value is None:
            continue
        try:
            number = float(value)
        except (ValueError, OverflowError):
            return None
        return number if math.isfinite(number) else None
    return None


class SourceHttp:
    """One source's view of the shared ``httpx.Client``: pacing plus error mapping.

    Every failure leaves here as a ``SourceError`` subclass with a short, secret-free
    message (the URL without its query string, the status, the start of the body).
    """

    def __init__(
        self,
        client: httpx.Client,
        limiter: RateLimiter | None = None,
        *,
        timeout: float | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.client = client
        self.limiter = limiter or RateLimiter(None)
        self.timeout = timeout
        self.stop = stop
        self.requests = 0

    def get(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        errors: ErrorMapper | None = None,
    ) -> httpx.Response:
        """GET ``url``; return the response if it is a 2xx or 304, raise otherwise.

        ``errors`` lets a source map its API's own error bodies (e.g. Stack Exchange's
        ``error_name``) to a ``SourceError``; when it returns ``None`` the usual mapping by
        status code applies.
        """
        return self.request("GET", url, params=params, headers=headers, errors=errors)

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        errors: ErrorMapper | None = None,
    ) -> httpx.Response:
        """Send one paced request; return a 2xx/304 response or raise a ``SourceError``."""
        where = url.split("?", 1)[0]
        self.limiter.acquire()
        if self.stop is not None and self.stop.is_set():
            # Shutting down: abandon the poll; its cursor stays, nothing is lost.
            raise RetriableError(f"shutting down: {method} {where} not sent")
        self.requests += 1
        extra: dict[str, Any] = {}
        if self.timeout is not None:
            extra["timeout"] = self.timeout
        if json_body is not None:
            extra["json"] = json_body
        try:
            if method == "GET":
                response = self.client.get(url, params=params, headers=headers, **extra)
            else:
                response = self.client.request(method, url, params=params, headers=headers, **extra)
        except httpx.TimeoutException as exc:
            raise RetriableError(f"timeout: {method} {where}: {describe(exc)}") from exc
        except httpx.HTTPError as exc:
            label, message = explain(exc)
            raise RetriableError(f"{label}: {method} {where}: {message}".rstrip(": ")) from exc
        except (httpx.InvalidURL, ValueError) as exc:
            # A URL or header built from a payload (a next link, an id) httpx cannot send.
            raise BadPayloadError(f"cannot send {method} {where}: {describe(exc)}") from exc
        self.limiter.observe(response.headers)
        status = response.status_code
        if status < 300 or status == 304:
            return response
        if errors is not None:
            mapped = errors(response)
            if mapped is not None:
                if isinstance(mapped, RetriableError) and mapped.retry_after is not None:
                    self.limiter.block_for(min(mapped.retry_after, self.limiter.max_wait))
                raise mapped
        snippet = _snippet(response)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after is None:
                retry_after = reset_seconds(response.headers)
            if retry_after is not None:
                self.limiter.block_for(min(retry_after, self.limiter.max_wait))
            raise RateLimitedError(
                f"429 Too Many Requests: {method} {where}", status_code=429, retry_after=retry_after
            )
        if status >= 500 or status == 408:
            raise RetriableError(f"{status}: {method} {where}: {snippet}", status_code=status)
        if status == 403 and "rate limit" in snippet.lower():
            # GitHub's secondary limits answer 403 with a Retry-After.
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise RateLimitedError(
                f"403 rate limited: {method} {where}", status_code=403, retry_after=retry_after
            )
        raise FatalError(f"{status}: {method} {where}: {snippet}", status_code=status)

    def get_json(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        errors: ErrorMapper | None = None,
    ) -> Any:
        """GET ``url`` and decode its JSON body; a non-JSON body is a ``BadPayloadError``."""
        response = self.get(url, params=params, headers=headers, errors=errors)
        return decode_json(response)

    def post_json(
        self,
        url: str,
        *,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        errors: ErrorMapper | None = None,
    ) -> Any:
        """POST ``json_body`` to ``url`` and decode the JSON answer (e.g. a login call)."""
        response = self.request("POST", url, headers=headers, json_body=json_body, errors=errors)
        return decode_json(response)


def decode_json(response: httpx.Response) -> Any:
    """The JSON body of ``response``; a non-JSON body is a ``BadPayloadError``."""
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError) as exc:
        where = str(response.request.url).split("?", 1)[0]
        raise BadPayloadError(
            f"invalid JSON from {response.request.method} {where}: {_snippet(response)}",
            status_code=response.status_code,
        ) from exc


def _snippet(response: httpx.Response) -> str:
    """The start of the body for an error message: redacted first, then cut, one line."""
    text = response.content[:_SNIPPET_WINDOW].decode("utf-8", errors="replace")
    return redact(" ".join(text.split()))[:_SNIPPET]


def same_origin(link: str, base_url: str) -> str:
    """``link`` if it is an absolute http(s) URL on ``base_url``'s scheme, host and port.

    Pagination links (``Link: rel="next"``) are followed with the source's credentials, so
    one that leads anywhere else, or that cannot be parsed (``http://[::1>``, a relative
    path), is a ``BadPayloadError``, never a request.
    """
    try:
        target = httpx.URL(link)
        base = httpx.URL(base_url)
        ok = (
            target.scheme in ("http", "https")
            and bool(target.host)
            and (target.scheme, target.host, target.port) == (base.scheme, base.host, base.port)
        )
    except (httpx.InvalidURL, ValueError, TypeError, UnicodeError):
        ok = False
    if not ok:
        shown = redact(link[:120]).split("?", 1)[0]
        raise BadPayloadError(f"pagination link not on {base_url}: {shown!r}")
    return link


@dataclass
class PollResult:
    """What one poll produced: the mentions (all pages) and the cursor to store after them.

    A source that reads several units (terms, subreddits, countries) carries on past a unit
    that fails: that unit's error goes into ``errors`` and its part of the cursor is left
    where it was, so the next poll reads it again.
    """

    mentions: list[Mention]
    cursor: Cursor
    requests: int = 0
    errors: list[SourceError] = field(default_factory=list)
    skipped: int = 0
    #: How many units (terms, listings, countries) the poll tried; all failed = poll failed.
    units: int = 0

    def skip(self, source: str, exc: BaseException, item: Any = None) -> None:
        """Count one malformed item as skipped and log why (the first of a poll as a
        warning, the rest at debug level, so a page of junk is one warning)."""
        self.skipped += 1
        level = logging.WARNING if self.skipped == 1 else logging.DEBUG
        hint = ""
        if isinstance(item, dict):
            for key in ("id", "objectID", "uri", "question_id", "name"):
                if isinstance(item.get(key), str | int) and not isinstance(item.get(key), bool):
                    hint = f" {key}={str(item[key])[:80]!r}"
                    break
        logger.log(
            level,
            "%s: skipped a malformed item%s: %s",
            source,
            redact(hint),
            describe(exc),
            extra={"source": source},
        )

    def fail(self, unit: str, exc: SourceError) -> bool:
        """Record that ``unit`` failed; return False when the whole poll should stop."""
        logger.warning("%s failed: %s", unit, exc)
        self.errors.append(exc)
        return not isinstance(exc, RateLimitedError)


class SourceOptions(BaseModel):
    """The settings keys of one source type, beyond the ones every source has.

    A source declares them as a nested ``Options`` class; the config layer validates the
    ``[[sources]]`` table against it (unknown keys rejected) and passes the values to the
    source's constructor as keyword arguments.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


#: Every ``Source`` subclass with a ``type``, by type name (filled by ``__init_subclass__``).
REGISTRY: dict[str, type[Source]] = {}


class Source(ABC):
    """One configured source. Subclasses set ``type`` and implement ``poll``.

    ``needs_query`` is False for sources whose every item is a mention (your own app's
    reviews); for the others, the pipeline keeps an item only if a query matches it.
    Defining a subclass with a ``type`` registers it: the config ``type`` name selects it.
    """

    type: ClassVar[str]
    needs_query: ClassVar[bool] = True
    default_base_url: ClassVar[str]
    #: The documented request budget, used when the config does not set one.
    default_requests_per_minute: ClassVar[float | None] = None
    #: The type-specific settings keys.
    Options: ClassVar[builtins.type[SourceOptions]] = SourceOptions
    #: Secrets the source takes, as constructor keyword -> default environment variable
    #: (e.g. ``{"token": "GITHUB_TOKEN"}``). The config layer reads the environment and
    #: passes the values in; ``listener`` never reads the environment itself.
    secrets: ClassVar[Mapping[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("type")
        if isinstance(kind, str):
            REGISTRY[kind] = cls

    @classmethod
    def default_name(cls, options: Mapping[str, Any]) -> str:
        """The name used when the config gives none (``options``: the type's settings)."""
        return cls.type

    def __init__(
        self,
        http: SourceHttp,
        *,
        name: str | None = None,
        base_url: str | None = None,
        backfill_seconds: float = 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.http = http
        self.name = name or self.type
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.backfill_seconds = backfill_seconds
        self.clock = clock

    @property
    def key(self) -> str:
        """The stable identity of this source's cursor and health in the database: its
        name, unique in the config."""
        return self.name

    @abstractmethod
    def poll(self, cursor: Cursor | None, terms: Sequence[str]) -> PollResult:
        """Read everything new since ``cursor`` (``None``: first run, backfill a window)."""

    #: How many items one ``refresh_reach`` call reads at most (one request where the API
    #: reads items by id in batches); 0: the source cannot read its items again by id, so
    #: their reach stays the snapshot taken when they were fetched.
    refresh_batch: ClassVar[int] = 0

    def refreshes(self, mention: Mention) -> bool:
        """Whether ``mention`` (one of this source type's, as stored) is worth reading
        again; default: every one (a source whose items include some that never have a
        figure, such as HN comments, says no to those)."""
        return True

    def refresh_reach(self, ids: Sequence[str]) -> dict[str, Fields]:
        """The current reach of the items ``ids`` (their ``external_id``; at most
        ``refresh_batch``), read from the API again: ``{external_id: {"reach": ...,
        "reach_detail": {...}}}`` as the parser's ``listener/reach.py`` function reads them.

        An item the API no longer has (deleted, removed) is left out, and so is an id the
        source cannot ask for. HTTP failures raise ``SourceError`` as a poll's do. Sources
        that cannot read items by id (``refresh_batch`` 0) raise ``NotImplementedError``.
        """
        raise NotImplementedError(f"{self.type}: reach cannot be refreshed")

    def keep_secret(self, *values: str | None, slot: str | None = None) -> None:
        """Mask these values in every error, log line and health alert from now on.

        ``slot`` names a renewable secret (a session token): its new values replace the old.
        """
        if slot is None:
            REDACTOR.add(*values)
        else:
            REDACTOR.put(f"{self.type}:{self.name}:{slot}:{id(self)}", *values)

    def backfill_start(self) -> float:
        """The unix time a first run reads back to."""
        return self.clock() - self.backfill_seconds

    def parse_item(
        self, result: PollResult, parse: Callable[[Any], T | None], item: Any
    ) -> T | None:
        """Run ``parse`` on one item of a page; a malformed item is a counted skip.

        This is the one place where an item's failure stops being the page's: whatever
        ``parse`` raises (a missing key, a wrong type, a timestamp out of range, an id the
        database cannot hold) is logged, counted in ``result.skipped``, and ``None`` is
        returned, so the rest of the page is stored and the cursor moves. ``parse`` returns
        ``None`` for an item that is deliberately not a mention (not counted). A
        ``SourceError`` (an HTTP call inside ``parse``) is the unit's failure and is raised.
        """
        try:
            return parse(item)
        except SourceError:
            raise
        except Exception as exc:
            result.skip(self.name, exc, item)
            return None

    def mention(self, **fields: Any) -> Mention:
        """A ``Mention`` of this source, checked: anything it cannot be stored as is raises
        ``BadItemError`` (see ``check_mention``)."""
        fields.setdefault("source", self.type)
        # The later of the source's clock and the wall clock: a test's clock may be set in
        # the past, and no real item is from the future either way.
        return check_mention(Mention(**fields), now=max(self.clock(), time.time()))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key} {self.base_url}>"


class _TextExtractor(HTMLParser):
    _BLOCK = frozenset({"p", "br", "div", "li", "blockquote", "pre", "tr", "h1", "h2", "h3"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("p", "blockquote", "pre", "li"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


_BLANKS = re.compile(r"\n\s*\n+")
_SPACES = re.compile(r"[ \t\r\f\v]+")


def html_to_text(value: Any) -> str:
    """Plain text from an HTML fragment: tags dropped, entities decoded, paragraphs kept.

    Anything that is not a string (a payload with the wrong type) gives ``""``.
    """
    if not value or not isinstance(value, str):
        return ""
    if "<" not in value:
        return html.unescape(value).strip()
    parser = _TextExtractor()
    try:
        parser.feed(value)
        parser.close()
    except Exception:  # pragma: no cover - HTMLParser is lenient; keep the text anyway
        return html.unescape(re.sub(r"<[^>]*>", " ", value)).strip()
    text = "".join(parser.parts)
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def text_of(value: Any) -> str:
    """``value`` if it is a string, else ``""`` (payload fields of the wrong type)."""
    return value if isinstance(value, str) else ""


#: Longer links are not kept as ``Mention.link`` (no real article URL is this long).
MAX_LINK = 2000


def link_of(value: Any) -> str | None:
    """A payload's link field as ``Mention.link``: an http(s) URL with a host, else
    ``None`` (missing, the wrong type, another scheme, unparseable or absurdly long)."""
    if not isinstance(value, str) or len(value) > MAX_LINK:
        return None
    try:
        parts = urlsplit(value.strip())
        ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return None
    return value.strip() if ok else None


def id_of(value: Any) -> str:
    """An item id from a string or an integer; anything else is a ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise ValueError(f"not an id: {value!r}")
    return str(value)


def from_unix(value: Any) -> datetime:
    """An aware UTC datetime from unix seconds (int, float or numeric string).

    Anything else, or a time Python cannot represent, is a ``ValueError``.
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (OverflowError, OSError, TypeError) as exc:
        raise ValueError(f"not a unix time: {value!r:.40}") from exc


def from_iso(value: str) -> datetime:
    """An aware UTC datetime from an ISO 8601 string (``Z`` or an offset).

    Anything else, or a time that leaves Python's range once moved to UTC (year 1 with a
    positive offset, year 9999 with a negative one), is a ``ValueError``.
    """
    if not isinstance(value, str):
        raise ValueError(f"not an ISO 8601 string: {value!r:.40}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"time out of range: {value!r:.40}") from exc


def check_id(value: Any) -> str:
    """``value`` if the database can hold it as an ``external_id``, else ``BadItemError``:
    a non-empty string of at most 255 characters, without NUL or lone surrogates (which
    PostgreSQL and SQLite refuse; cleaning them would make two items one)."""
    if not isinstance(value, str) or not value:
        raise BadItemError(f"external id is not a non-empty string: {value!r:.80}")
    if len(value) > MAX_ID:
        raise BadItemError(f"external id longer than {MAX_ID} characters ({len(value)})")
    if "\x00" in value:
        raise BadItemError("external id contains NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadItemError("external id is not valid Unicode (a lone surrogate)") from exc
    return value


def check_time(value: Any, *, now: float) -> datetime:
    """``value`` if it is an aware datetime not more than ``FUTURE_SLACK`` ahead of ``now``."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise BadItemError(f"created_at is not an aware datetime: {value!r:.80}")
    try:
        stamp = value.timestamp()
    except (OverflowError, OSError, ValueError) as exc:
        raise BadItemError(f"created_at out of range: {value!r:.80}") from exc
    if stamp > now + FUTURE_SLACK:
        raise BadItemError(f"created_at in the future: {value.isoformat()}")
    return value.astimezone(UTC)


def _clean_text(value: str) -> str:
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", errors="replace").decode("utf-8")
    return value


def storable(value: Any, depth: int = 0) -> Any:
    """``value`` (a decoded payload) made storable as JSON on SQLite and PostgreSQL:
    strings without NUL or lone surrogates, no infinities or NaN (PostgreSQL's ``json``
    refuses them; they become ``None``), keys as strings. Deeper than 64 levels is cut."""
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= 64:
        return None
    if isinstance(value, dict):
        return {_clean_text(str(k)): storable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v, depth + 1) for v in value]
    return _clean_text(str(value))


def check_mention(mention: Mention, *, now: float | None = None) -> Mention:
    """``mention`` made safe to store, or ``BadItemError`` if it cannot be.

    Its id must be storable as it is (``check_id``) and its time real and not in the future
    (``check_time``); its text fields lose NUL and lone surrogates and its ``raw`` payload
    becomes storable JSON (``storable``). Its reach figures keep only what is a figure
    (``reach.figure``): anything else is dropped, never a reason to skip the item.
    """
    mention.external_id = check_id(mention.external_id)
    mention.created_at = check_time(mention.created_at, now=time.time() if now is None else now)
    for name in ("url", "author", "site", "title", "text"):
        value = getattr(mention, name)
        setattr(mention, name, _clean_text(value) if isinstance(value, str) else "")
    if mention.language is not None:
        language = mention.language if isinstance(mention.language, str) else ""
        mention.language = _clean_text(language)[:16] or None
    if mention.rating is not None and (
        isinstance(mention.rating, bool) or not isinstance(mention.rating, int)
    ):
        raise BadItemError(f"rating is not an integer: {mention.rating!r:.40}")
    mention.raw = storable(mention.raw) if isinstance(mention.raw, dict) else {}
    mention.reach = figure(mention.reach, signed=True)
    detail = mention.reach_detail if isinstance(mention.reach_detail, dict) else {}
    mention.reach_detail = {
        _clean_text(name)[:64]: number
        for name, number in ((str(k), figure(v, signed=True)) for k, v in detail.items())
        if number is not None
    }
    return mention


def require(mapping: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``mapping[key]`` if it has the expected type, else a ``BadPayloadError``."""
    if not isinstance(mapping, dict):
        raise BadPayloadError(f"{where}: expected an object, got {type(mapping).__name__}")
    value = mapping.get(key)
    if not isinstance(value, kind):
        raise BadPayloadError(f"{where}: field {key!r} missing or of the wrong type")
    return value
