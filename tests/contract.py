"""The generic source contract: declare a source's real fixtures once, get its standard tests.

In the spirit of Singer SDK's standard tap tests, every source goes through the same checks
(``tests/test_source_contract.py``): its captured payloads parse into sound ``Mention``s, its
cursor survives a JSON round trip and shows up in the next poll's request, an empty page
changes nothing, error pages become the right ``SourceError`` without moving the cursor, and
rate-limit headers and 429s are honoured. A new source gets all of that by adding one
``SourceCase`` to ``CASES`` in that module::

    SourceCase(
        id="example",
        build=lambda http: ExampleSource(http, base_url=EXAMPLE, **OLD),
        terms=["acme"],
        pages=[Serve(rf"{EXAMPLE}/search", "example/search_page1.json")],
        empty=[Serve(rf"{EXAMPLE}/search", json={"items": []})],
        count=10,
        expect={"42": {"author": "alice", "site": "example.com"}},
        cursor_shown=param_shows("since", lambda c: str(c["terms"]["acme"])),
    )

Routes are regular expressions matched (``re.search``) against the full request URL, in the
order given, so put the specific ones first. Nothing here touches the network: respx serves
every answer, and the rate limiter runs on a fake clock that never sleeps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import respx

from earshot.listener.sources.base import Cursor, RateLimiter, Source, SourceHttp

REAL = Path(__file__).parent / "fixtures" / "real"

#: Clock for every case: all fixtures are older, so a long backfill reads all of them.
NOW = 1_800_000_000.0
#: Constructor keywords that make a first poll read every fixture item.
OLD: dict[str, Any] = {"clock": lambda: NOW, "backfill_seconds": NOW}

#: Headers a recording kept that would make httpx mis-read a re-served body.
_TRANSPORT_HEADERS = frozenset({"content-length", "content-encoding", "transfer-encoding"})

#: ``(cursor, requests of the second poll) -> bool``: does the poll show it used the cursor?
CursorCheck = Callable[[Cursor, Sequence[httpx.Request]], bool]


def load_fixture(relative: str) -> Any:
    """A real captured payload from ``tests/fixtures/real``, decoded."""
    return json.loads((REAL / relative).read_text("utf-8"))


def load_headers(relative: str) -> dict[str, str]:
    """Recorded response headers (``*.headers.json``), as one string per header.

    Both recording styles are read: vcrpy's lists of values and plain strings. Transport
    headers (length, gzip encoding) are dropped because the body is served decoded.
    """
    data = load_fixture(relative)
    raw = data.get("headers", data) if isinstance(data, dict) else {}
    headers = {}
    for name, value in raw.items():
        if name.lower() in _TRANSPORT_HEADERS:
            continue
        headers[name] = ", ".join(value) if isinstance(value, list) else str(value)
    return headers


@dataclass(frozen=True)
class Serve:
    """One faked endpoint: requests whose URL matches ``url`` (a regex) get this answer.

    The body is the real fixture file ``fixture`` (relative to ``tests/fixtures/real``) or
    ``json``; ``headers`` is a dict or the path of a recorded ``*.headers.json``.
    """

    url: str
    fixture: str | None = None
    json: Any = None
    headers: Mapping[str, str] | str | None = None
    status: int = 200
    method: str = "GET"

    def body(self) -> Any:
        """The decoded body this endpoint answers."""
        return load_fixture(self.fixture) if self.fixture else self.json

    def header_map(self) -> dict[str, str]:
        """The response headers as a plain dict."""
        if isinstance(self.headers, str):
            return load_headers(self.headers)
        return dict(self.headers or {})

    def response(self, extra_headers: Mapping[str, str] | None = None) -> httpx.Response:
        """The answer, with ``extra_headers`` laid over the recorded ones."""
        extra = dict(extra_headers or {})
        replaced = {name.lower() for name in extra}
        recorded = {k: v for k, v in self.header_map().items() if k.lower() not in replaced}
        headers = {**recorded, **extra}
        return httpx.Response(self.status, json=self.body(), headers=headers)


def param_shows(name: str, value: Callable[[Cursor], Any]) -> CursorCheck:
    """A cursor check: some request of the second poll has query parameter ``name`` equal to
    ``value(cursor)`` (compared as strings)."""

    def check(cursor: Cursor, requests: Sequence[httpx.Request]) -> bool:
        expected = str(value(cursor))
        return any(request.url.params.get(name) == expected for request in requests)

    return check


def _default_ratelimit_headers(now: float) -> dict[str, str]:
    return {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"}


@dataclass(frozen=True)
class SourceCase:
    """Everything the contract suite needs to know about one source.

    * ``build``: make the source on a given ``SourceHttp`` (base URL, options, secrets,
      ``**OLD`` so the first poll reads every fixture item);
    * ``pages``: the data endpoints and the real fixtures they serve;
    * ``empty``: what those endpoints answer when nothing is new;
    * ``support``: endpoints served in every test, errors included (a login, say);
    * ``count`` and ``expect``: how many mentions the fixtures make, and a few fields of
      some of them (``external_id`` -> ``{field: value}``);
    * ``cursor_shown``: how the second poll's requests show the stored cursor;
    * ``ratelimit_headers``: a spent window in the API's own header spelling, given the
      current unix time, resetting 30 s from now.
    """

    id: str
    build: Callable[[SourceHttp], Source]
    pages: Sequence[Serve]
    empty: Sequence[Serve]
    count: int
    expect: Mapping[str, Mapping[str, Any]]
    cursor_shown: CursorCheck
    terms: Sequence[str] = ()
    support: Sequence[Serve] = ()
    ratelimit_headers: Callable[[float], dict[str, str]] = _default_ratelimit_headers
    #: Free-form notes shown in failure messages (what the cursor check means, caveats).
    notes: str = ""

    def __str__(self) -> str:
        return self.id


class FakeTime:
    """A clock and a ``sleep`` for ``RateLimiter``: sleeping only moves the clock."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_http(limiter: RateLimiter | None = None) -> SourceHttp:
    """A ``SourceHttp`` on a fresh client (respx intercepts it) with a never-sleeping limiter."""
    if limiter is None:
        fake = FakeTime()
        limiter = RateLimiter(None, clock=fake.clock, sleep=fake.sleep)
    return SourceHttp(httpx.Client(), limiter)


def _mount(router: respx.MockRouter, serves: Sequence[Serve], **extra: Any) -> None:
    for serve in serves:
        router.route(method=serve.method, url__regex=serve.url).mock(
            return_value=serve.response(extra.get("headers"))
        )


@contextmanager
def serving(
    case: SourceCase,
    serves: Sequence[Serve],
    *,
    headers: Mapping[str, str] | None = None,
) -> Iterator[respx.MockRouter]:
    """Fake the API: ``case.support`` plus ``serves`` (``headers`` added to the latter).

    Any request no route matches fails the test (respx asserts all calls were mocked).
    """
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        _mount(router, case.support)
        _mount(router, serves, headers=headers)
        yield router


@contextmanager
def failing(case: SourceCase, response: Callable[[], httpx.Response]) -> Iterator[respx.MockRouter]:
    """Fake the API with every data endpoint (``case.pages``) answering ``response()``."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        _mount(router, case.support)
        for serve in case.pages:
            router.route(method=serve.method, url__regex=serve.url).mock(
                side_effect=lambda request: response()
            )
        yield router


def data_requests(case: SourceCase, router: respx.MockRouter) -> list[httpx.Request]:
    """The requests a poll sent to the data endpoints (not the support ones)."""
    support = {(s.method, s.url) for s in case.support}
    return [
        call.request
        for call in router.calls
        if not any(
            call.request.method == method and re.search(url, str(call.request.url))
            for method, url in support
        )
    ]
