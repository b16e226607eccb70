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
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict

from ..models import Mention

logger = logging.getLogger("earshot.listener.sources")

Cursor = dict[str, Any]

#: A source's own reading of an error response: a ``SourceError``, or ``None`` for the default.
ErrorMapper = Callable[[httpx.Response], "SourceError | None"]

#: How much of a response body goes into an error message.
_SNIPPET = 200


class SourceError(Exception):
    """A poll failed. ``retriable`` says whether the next poll may simply try again."""

    retriable: ClassVar[bool] = True

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


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


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else time.time()
    return max(0.0, when.timestamp() - current)


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
        """The API asked for a pause: no request before ``seconds`` from now."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + max(0.0, seconds))

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
    (GitHub, Bluesky) and an ISO 8601 timestamp (Mastodon). ``None`` when absent or unreadable.
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
    except ValueError:
        try:
            when = from_iso(value.strip())
        except ValueError:
            return None
        return max(0.0, when.timestamp() - current)
    if reset != reset or reset in (float("inf"), float("-inf")):
        return None
    return max(0.0, reset - current) if reset > 1_000_000_000 else max(0.0, reset)


def _header_float(headers: Mapping[str, str], *names: str) -> float | None:
    for name in names:
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value)
        except ValueError:
            return None
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
            raise RetriableError(f"timeout: {method} {where}") from exc
        except httpx.HTTPError as exc:
            raise RetriableError(f"{type(exc).__name__}: {method} {where}") from exc
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
    text = response.content[:_SNIPPET].decode("utf-8", errors="replace")
    return " ".join(text.split())


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

    def backfill_start(self) -> float:
        """The unix time a first run reads back to."""
        return self.clock() - self.backfill_seconds

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


def id_of(value: Any) -> str:
    """An item id from a string or an integer; anything else is a ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise ValueError(f"not an id: {value!r}")
    return str(value)


def from_unix(value: Any) -> datetime:
    """An aware UTC datetime from unix seconds (int, float or numeric string)."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    return datetime.fromtimestamp(float(value), UTC)


def from_iso(value: str) -> datetime:
    """An aware UTC datetime from an ISO 8601 string (``Z`` or an offset)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def require(mapping: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``mapping[key]`` if it has the expected type, else a ``BadPayloadError``."""
    if not isinstance(mapping, dict):
        raise BadPayloadError(f"{where}: expected an object, got {type(mapping).__name__}")
    value = mapping.get(key)
    if not isinstance(value, kind):
        raise BadPayloadError(f"{where}: field {key!r} missing or of the wrong type")
    return value
