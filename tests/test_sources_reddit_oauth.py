"""Reddit with OAuth (a script app): the token, oauth.reddit.com, search, budget, User-Agent."""

from __future__ import annotations

import base64
import copy
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from earshot.listener import __version__
from earshot.listener.sources.base import FatalError, RateLimiter, SourceHttp
from earshot.listener.sources.reddit import OAUTH_API, RedditSource

from .contract import load_fixture

AUTH = "https://auth.reddit.test"
API = "https://oauth.reddit.test"
TOKEN_URL = f"{AUTH}/api/v1/access_token"
CREDENTIALS = {
    "client_id": "app123",
    "client_secret": "s3cret",
    "username": "acme_bot",
    "password": "hunter2",
}
CLOCK = [1492274908.0 + 3600]


def token_answer(token: str = "tok-1", expires_in: int = 86400) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "access_token": token,
            "token_type": "bearer",
            "expires_in": expires_in,
            "scope": "*",
        },
    )


def reddit(limiter: RateLimiter | None = None, **kwargs: Any) -> RedditSource:
    for key, value in CREDENTIALS.items():
        kwargs.setdefault(key, value)
    kwargs.setdefault("base_url", API)
    kwargs.setdefault("subreddits", ["kakapo"])
    kwargs.setdefault("listings", ["comments"])
    return RedditSource(
        SourceHttp(httpx.Client(), limiter),
        auth_url=AUTH,
        clock=lambda: CLOCK[0],
        backfill_seconds=10**9,
        **kwargs,
    )


@respx.mock
def test_gets_a_token_and_reads_oauth_listings() -> None:
    token = respx.post(TOKEN_URL).mock(return_value=token_answer())
    listing = respx.get(f"{API}/r/kakapo/comments").respond(
        json=load_fixture("reddit/r_kakapo_comments_page1.json")
    )
    result = reddit().poll(None, [])
    assert result.errors == [] and len(result.mentions) == 16
    sent = token.calls[0].request
    assert parse_qs(sent.content.decode()) == {
        "grant_type": ["password"],
        "username": ["acme_bot"],
        "password": ["hunter2"],
    }
    assert sent.headers["authorization"] == "Basic " + base64.b64encode(b"app123:s3cret").decode()
    agent = f"python:earshot.app123:v{__version__} (by /u/acme_bot)"
    assert sent.headers["user-agent"] == agent
    request = listing.calls[0].request
    assert request.headers["authorization"] == "bearer tok-1"
    assert request.headers["user-agent"] == agent
    assert request.url.params["raw_json"] == "1"
    assert result.requests == 2


def test_oauth_reads_oauth_reddit_com_by_default() -> None:
    source = RedditSource(SourceHttp(httpx.Client()), subreddits=["kakapo"], **CREDENTIALS)
    assert source.base_url == OAUTH_API == "https://oauth.reddit.com"
    assert source._url("kakapo", "new") == "https://oauth.reddit.com/r/kakapo/new"
    public = RedditSource(SourceHttp(httpx.Client()), subreddits=["kakapo"])
    assert public._url("kakapo", "new") == "https://www.reddit.com/r/kakapo/new.json"


@respx.mock
def test_token_is_reused_then_renewed_before_it_expires() -> None:
    token = respx.post(TOKEN_URL).mock(
        side_effect=[token_answer("tok-1", 3600), token_answer("tok-2")]
    )
    listing = respx.get(f"{API}/r/kakapo/comments").respond(
        json=load_fixture("reddit/r_kakapo_comments_before_cursor_empty.json")
    )
    source = reddit()
    start = CLOCK[0]
    try:
        source.poll(None, [])
        CLOCK[0] = start + 3000  # still more than a minute left: the same token
        source.poll(None, [])
        assert token.call_count == 1
        CLOCK[0] = start + 3600 - 30  # inside the last minute: renewed first
        source.poll(None, [])
    finally:
        CLOCK[0] = start
    assert token.call_count == 2
    assert [c.request.headers["authorization"] for c in listing.calls] == [
        "bearer tok-1",
        "bearer tok-1",
        "bearer tok-2",
    ]


@respx.mock
def test_a_401_renews_the_token_and_retries_once() -> None:
    respx.post(TOKEN_URL).mock(side_effect=[token_answer("old"), token_answer("new")])
    page = load_fixture("reddit/r_kakapo_comments_page1.json")
    listing = respx.get(f"{API}/r/kakapo/comments").mock(
        side_effect=[
            httpx.Response(401, json={"message": "Unauthorized", "error": 401}),
            httpx.Response(200, json=page),
        ]
    )
    result = reddit().poll(None, [])
    assert result.errors == [] and len(result.mentions) == 16
    assert [c.request.headers["authorization"] for c in listing.calls] == [
        "bearer old",
        "bearer new",
    ]


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, json={"error": "invalid_grant"}),  # wrong password
        httpx.Response(401, json={"message": "Unauthorized", "error": 401}),  # wrong app secret
    ],
)
@respx.mock
def test_bad_credentials_are_fatal_and_never_echoed(answer: httpx.Response) -> None:
    respx.post(TOKEN_URL).mock(return_value=answer)
    listing = respx.get(f"{API}/r/kakapo/comments").respond(json={})
    result = reddit().poll({"listings": {}}, [])
    assert len(result.errors) == 1 and isinstance(result.errors[0], FatalError)
    assert "hunter2" not in str(result.errors[0]) and "s3cret" not in str(result.errors[0])
    assert not listing.called
    assert result.cursor == {"listings": {}}


def search_page(names: list[str]) -> dict[str, Any]:
    real = load_fixture("reddit/search_r_all_sort_relevance.json")
    template = real["data"]["children"][0]
    children = []
    for i, name in enumerate(names):
        child = copy.deepcopy(template)
        child["data"]["name"] = f"t3_{name}"
        child["data"]["id"] = name
        child["data"]["created_utc"] = 1_700_000_000 - i
        children.append(child)
    return {"kind": "Listing", "data": {"children": children, "after": None, "before": None}}


@respx.mock
def test_search_across_reddit_per_term_with_its_own_cursor() -> None:
    respx.post(TOKEN_URL).mock(return_value=token_answer())
    real = load_fixture("reddit/search_r_all_sort_relevance.json")
    route = respx.get(f"{API}/search").mock(
        side_effect=lambda r: httpx.Response(
            200, json=real if r.url.params["q"] == "praw" else search_page(["b", "a"])
        )
    )
    source = reddit(subreddits=[], search=True)
    first = source.poll(None, ["praw", "acme app"])
    assert first.errors == [] and first.units == 2
    params = [dict(c.request.url.params) for c in route.calls]
    assert params[0] == {
        "q": "praw",
        "sort": "new",
        "restrict_sr": "",
        "limit": "100",
        "raw_json": "1",
    }
    assert params[1]["q"] == '"acme app"'
    ids = [m.external_id for m in first.mentions]
    assert len(ids) == len(set(ids)) == len(real["data"]["children"]) + 2
    post = next(
        m for m in first.mentions if m.external_id == real["data"]["children"][0]["data"]["name"]
    )
    assert post.title == real["data"]["children"][0]["data"]["title"] and post.site
    assert first.cursor["listings"]["search:acme app"] == {
        "name": "t3_b",
        "created": 1_700_000_000.0,
    }
    # The next poll asks only what is newer than each term's newest item.
    route.mock(side_effect=lambda r: httpx.Response(200, json=search_page([])))
    second = source.poll(first.cursor, ["praw", "acme app"])
    befores = [c.request.url.params.get("before") for c in route.calls[2:]]
    assert befores[1] == "t3_b" and befores[0] == first.cursor["listings"]["search:praw"]["name"]
    assert second.mentions == [] and second.cursor == first.cursor


@respx.mock
def test_an_item_in_both_a_listing_and_a_search_is_returned_once() -> None:
    respx.post(TOKEN_URL).mock(return_value=token_answer())
    page = search_page(["a"])
    respx.get(f"{API}/r/acme/new").respond(json=page)
    respx.get(f"{API}/search").respond(json=page)
    result = reddit(subreddits=["acme"], listings=["new"], search=True).poll(None, ["acme"])
    assert [m.external_id for m in result.mentions] == ["t3_a"]


def test_budget_is_100_a_minute_with_oauth_and_10_without() -> None:
    def default() -> RateLimiter:
        return RateLimiter(RedditSource.default_requests_per_minute)

    public = RedditSource(SourceHttp(httpx.Client(), default()), subreddits=["kakapo"])
    assert public.http.limiter.interval == pytest.approx(6.0)
    assert reddit(default()).http.limiter.interval == pytest.approx(0.6)
    assert reddit(RateLimiter(30)).http.limiter.interval == pytest.approx(2.0)  # explicit: kept


def test_user_agent_option_is_sent_without_oauth_too() -> None:
    source = RedditSource(
        SourceHttp(httpx.Client()), subreddits=["kakapo"], user_agent="linux:acme:1.0 (by /u/x)"
    )
    assert source._headers() == {"User-Agent": "linux:acme:1.0 (by /u/x)"}
    assert RedditSource(SourceHttp(httpx.Client()), subreddits=["kakapo"])._headers() == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subreddits": ["kakapo"], "client_id": "a", "client_secret": "b"}, "REDDIT_USERNAME"),
        ({"subreddits": [], "search": True}, "OAuth"),
        ({"subreddits": []}, "subreddits"),
    ],
)
def test_misconfiguration_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedditSource(SourceHttp(httpx.Client()), **kwargs)
