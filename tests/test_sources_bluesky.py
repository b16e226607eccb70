"""Bluesky: the session (login, refresh, re-login), paging by cursor, the since boundary."""

from __future__ import annotations

import json
from typing import Any

import httpx
import respx

from earshot.listener.sources.base import FatalError
from earshot.listener.sources.bluesky import BlueskySource, post_url

from .contract import load_fixture, make_http

BASE = "https://bsky.test"
SEARCH = f"{BASE}/xrpc/app.bsky.feed.searchPosts"
LOGIN = f"{BASE}/xrpc/com.atproto.server.createSession"
REFRESH = f"{BASE}/xrpc/com.atproto.server.refreshSession"
NOW = 1747676496.0  # 2025-05-19 17:41:36 UTC, the capture's Date header


def bsky(**kwargs: Any) -> BlueskySource:
    kwargs.setdefault("handle", "earshot.test")
    kwargs.setdefault("app_password", "app-pass")
    kwargs.setdefault("clock", lambda: NOW)
    return BlueskySource(make_http(), base_url=BASE, **kwargs)


def session(access: str, refresh: str = "R1") -> dict[str, str]:
    return {
        "did": "did:plc:me",
        "handle": "earshot.test",
        "accessJwt": access,
        "refreshJwt": refresh,
    }


def posts() -> dict[str, Any]:
    return load_fixture("bluesky/searchPosts_q_redistricting.json")


def test_post_url_from_the_at_uri() -> None:
    uri = "at://did:plc:s7savtl25cqhm3ddqc7jeljx/app.bsky.feed.post/3lpk2r5h5ec2j"
    assert post_url(uri, "cjtackett.bsky.social") == (
        "https://bsky.app/profile/cjtackett.bsky.social/post/3lpk2r5h5ec2j"
    )
    assert post_url(uri, "").endswith(
        "/profile/did:plc:s7savtl25cqhm3ddqc7jeljx/post/3lpk2r5h5ec2j"
    )
    assert post_url("at://did:plc:x/app.bsky.feed.like/3k", "a") is None
    assert post_url("https://example.com", "a") is None


@respx.mock
def test_logs_in_once_and_sends_the_token() -> None:
    login = respx.post(LOGIN).respond(json=session("A1"))
    search = respx.get(SEARCH).mock(
        side_effect=[
            httpx.Response(200, json=posts()),
            httpx.Response(200, json={"posts": []}),
            httpx.Response(200, json={"posts": []}),
        ]
    )
    source = bsky()
    first = source.poll(None, ["redistricting"])
    source.poll(first.cursor, ["redistricting"])
    assert login.call_count == 1
    assert json.loads(login.calls[0].request.content) == {
        "identifier": "earshot.test",
        "password": "app-pass",
    }
    params = search.calls[0].request.url.params
    assert search.calls[0].request.headers["authorization"] == "Bearer A1"
    assert params["q"] == "redistricting" and params["sort"] == "latest"
    assert params["since"] == "2025-05-18T17:41:36Z"  # 24 h backfill
    assert search.calls[1].request.url.params["cursor"] == "25"
    assert len(first.mentions) == 25
    # The newest post's sortAt: the earlier of its createdAt and indexedAt.
    assert first.cursor["terms"]["redistricting"] == {
        "since": "2025-05-19T17:10:09.561858Z",
        "uris": ["at://did:plc:kkergqgbhb56ptpwj2wenkje/app.bsky.feed.post/3lpk2u6qo222m"],
    }


@respx.mock
def test_an_expired_token_is_refreshed_and_the_request_repeated() -> None:
    respx.post(LOGIN).respond(json=session("A1"))
    refresh = respx.post(REFRESH).respond(json=session("A2", "R2"))
    search = respx.get(SEARCH).mock(
        side_effect=[
            httpx.Response(400, json={"error": "ExpiredToken", "message": "Token has expired"}),
            httpx.Response(200, json={"posts": []}),
        ]
    )
    result = bsky().poll(None, ["acme"])
    assert result.errors == []
    assert refresh.calls[0].request.headers["authorization"] == "Bearer R1"
    assert search.calls[1].request.headers["authorization"] == "Bearer A2"


@respx.mock
def test_a_refused_refresh_logs_in_again() -> None:
    login = respx.post(LOGIN).mock(
        side_effect=[
            httpx.Response(200, json=session("A1")),
            httpx.Response(200, json=session("A3")),
        ]
    )
    respx.post(REFRESH).respond(401, json={"error": "ExpiredToken"})
    search = respx.get(SEARCH).mock(
        side_effect=[
            httpx.Response(401, json={"error": "AuthMissing"}),
            httpx.Response(200, json=posts()),
            httpx.Response(200, json={"posts": []}),
        ]
    )
    result = bsky().poll(None, ["redistricting"])
    assert login.call_count == 2
    assert search.calls[1].request.headers["authorization"] == "Bearer A3"
    assert len(result.mentions) == 25


@respx.mock
def test_wrong_app_password_is_fatal_and_keeps_the_cursor() -> None:
    respx.post(LOGIN).respond(401, json={"error": "AuthenticationRequired"})
    search = respx.get(SEARCH).respond(json=posts())
    cursor = {"terms": {"acme": {"since": "2025-05-19T00:00:00Z", "uris": []}}}
    result = bsky().poll(cursor, ["acme"])
    assert isinstance(result.errors[0], FatalError) and not search.called
    assert result.cursor == cursor


@respx.mock
def test_without_credentials_it_searches_anonymously() -> None:
    login = respx.post(LOGIN).respond(json=session("A1"))
    search = respx.get(SEARCH).respond(json={"posts": []})
    bsky(handle=None, app_password=None).poll(None, ["acme"])
    assert not login.called and "authorization" not in search.calls[0].request.headers


@respx.mock
def test_repoll_at_the_since_boundary_reports_nothing_twice() -> None:
    respx.post(LOGIN).respond(json=session("A1"))
    respx.get(SEARCH).mock(
        side_effect=lambda request: httpx.Response(
            200, json=posts() if "cursor" not in request.url.params else {"posts": []}
        )
    )
    source = bsky(clock=lambda: 1.8e9, backfill_seconds=1.8e9)
    first = source.poll(None, ["redistricting"])
    # `since` is inclusive: the API sends the newest post again; it is not new.
    second = source.poll(first.cursor, ["redistricting"])
    assert second.mentions == [] and second.cursor == first.cursor


@respx.mock
def test_a_repeated_cursor_and_the_page_cap_stop_paging() -> None:
    respx.post(LOGIN).respond(json=session("A1"))
    route = respx.get(SEARCH).mock(side_effect=lambda request: httpx.Response(200, json=posts()))
    bsky(backfill_seconds=10**9).poll(None, ["redistricting"])
    assert route.call_count == 2  # cursor "25" again on the second page

    pages = iter(range(1000))
    route.mock(
        side_effect=lambda request: httpx.Response(
            200, json={**posts(), "cursor": str(next(pages))}
        )
    )
    bsky(backfill_seconds=10**9, max_pages=4).poll(None, ["redistricting"])
    assert route.call_count == 2 + 4


@respx.mock
def test_malformed_posts_are_skipped_and_counted() -> None:
    respx.post(LOGIN).respond(json=session("A1"))
    good = posts()["posts"][:2]
    bad = [{"uri": "at://x/app.bsky.feed.post/1"}, "junk", {**good[0], "uri": "https://nope"}]
    respx.get(SEARCH).respond(json={"posts": good + bad})
    result = bsky(backfill_seconds=10**9).poll(None, ["redistricting"])
    assert len(result.mentions) == 2 and result.skipped == 3
    assert result.mentions[1].language == "en" and result.mentions[0].language is None
