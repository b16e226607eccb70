"""Discourse ``/posts.json``, on the real captured pages, faked at the HTTP layer with respx."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest
import respx

from earshot.listener.sources.base import RateLimitedError, RateLimiter, SourceHttp
from earshot.listener.sources.discourse import DiscourseSource

from .contract import FakeTime, load_fixture

FORUM = "https://forum.test"
POSTS = f"{FORUM}/posts.json"
NOW = 1_800_000_000.0


def discourse(limiter: RateLimiter | None = None, **kwargs: Any) -> DiscourseSource:
    kwargs.setdefault("backfill_seconds", NOW)
    return DiscourseSource(
        SourceHttp(httpx.Client(), limiter), base_url=FORUM, clock=lambda: NOW, **kwargs
    )


def real_forum(request: httpx.Request) -> httpx.Response:
    """The forum of the fixtures: ``posts_latest`` on top, ``posts_before_15`` below 15."""
    before = request.url.params.get("before")
    if before is None:
        return httpx.Response(200, json=load_fixture("discourse/posts_latest.json"))
    if before == "15":
        return httpx.Response(200, json=load_fixture("discourse/posts_before_15.json"))
    older = load_fixture("discourse/posts_latest.json")["latest_posts"]
    return httpx.Response(200, json={"latest_posts": [p for p in older if p["id"] < int(before)]})


@respx.mock
def test_parses_the_real_pages() -> None:
    route = respx.get(POSTS).mock(side_effect=real_forum)
    result = discourse().poll(None, ["hi"])
    assert result.errors == [] and result.skipped == 0 and result.units == 1
    assert [m.external_id for m in result.mentions] == [
        "forum.test:15",
        "forum.test:14",
        "forum.test:10",
        "forum.test:2",
    ]
    reply, opening = result.mentions[0], result.mentions[1]
    assert reply.url == "https://forum.test/t/this-is-an-uncategorized-title/11/2"
    assert reply.text == "holla bullhonky." and reply.title == ""  # a reply: no topic title
    assert reply.author == "johndoe" and reply.site == "forum.test"
    assert opening.title == "This is an uncategorized title"
    assert opening.text == "hi there. hi there. hi there."
    welcome = result.mentions[2]
    assert "<" not in welcome.text and "\n\n" in welcome.text
    assert result.cursor == {"post_id": 15}
    # The first page, then before= the smallest id until an empty page.
    assert [c.request.url.params.get("before") for c in route.calls] == [None, "2"]


@respx.mock
def test_second_poll_stops_at_the_stored_post() -> None:
    route = respx.get(POSTS).mock(side_effect=real_forum)
    source = discourse()
    first = source.poll(None, [])
    second = source.poll(first.cursor, [])
    assert second.mentions == [] and second.cursor == {"post_id": 15}
    assert len(route.calls) == 2 + 1  # the repoll read one page and met post 15


@respx.mock
def test_pages_down_with_before_until_the_cursor() -> None:
    route = respx.get(POSTS).mock(side_effect=real_forum)
    # Known: post 10. The first page holds 15 and 14 above it, then 10: stop there.
    result = discourse().poll({"post_id": 10}, [])
    assert [m.external_id for m in result.mentions] == ["forum.test:15", "forum.test:14"]
    assert len(route.calls) == 1
    assert result.cursor == {"post_id": 15}


@respx.mock
def test_first_poll_stops_at_the_backfill_window() -> None:
    respx.get(POSTS).mock(side_effect=real_forum)
    # 2020-01-25T01:00:00Z: posts 15 (02:10) is inside, 14 (00:58) is not.
    source = discourse(backfill_seconds=NOW - 1_579_914_000)
    result = source.poll(None, [])
    assert [m.external_id for m in result.mentions] == ["forum.test:15"]


@respx.mock
def test_repeated_before_and_page_cap_stop_runaway_loops() -> None:
    page = load_fixture("discourse/posts_latest.json")
    stuck = respx.get(POSTS).respond(json=page)  # ignores before=: the same page forever
    result = discourse().poll({"post_id": 1}, [])
    assert len(result.mentions) == 4
    assert len(stuck.calls) == 2  # the first page, then before=2 gave page 1 again: stop

    def endless(request: httpx.Request) -> httpx.Response:
        before = int(request.url.params.get("before", 10_000))
        posts = []
        for i in range(1, 4):
            post = copy.deepcopy(page["latest_posts"][0])
            post["id"] = before - i
            posts.append(post)
        return httpx.Response(200, json={"latest_posts": posts})

    route = respx.get(POSTS).mock(side_effect=endless)
    capped = discourse(max_pages=5).poll({"post_id": 1}, [])
    assert len(route.calls) == 5 + 2 and len(capped.mentions) == 15


@respx.mock
def test_small_actions_are_not_mentions_and_malformed_posts_are_counted() -> None:
    page = load_fixture("discourse/posts_latest.json")
    action = copy.deepcopy(page["latest_posts"][0])
    action.update(id=16, post_type=3, cooked="")
    broken = copy.deepcopy(page["latest_posts"][0])
    broken.update(id=17, created_at="yesterday")
    page["latest_posts"] = [broken, action, *page["latest_posts"], {"id": "x"}, "junk"]
    respx.get(POSTS).mock(
        side_effect=lambda r: httpx.Response(
            200, json=page if "before" not in r.url.params else {"latest_posts": []}
        )
    )
    result = discourse().poll(None, [])
    assert [m.external_id for m in result.mentions][:1] == ["forum.test:15"]
    assert len(result.mentions) == 4
    assert result.skipped == 3
    assert result.cursor == {"post_id": 15}


@respx.mock
def test_429_with_retry_after_is_rate_limited() -> None:
    fake = FakeTime()
    limiter = RateLimiter(None, clock=fake.clock, sleep=fake.sleep)
    respx.get(POSTS).respond(429, headers={"Retry-After": "40"})
    result = discourse(limiter).poll({"post_id": 10}, [])
    assert isinstance(result.errors[0], RateLimitedError)
    assert result.errors[0].retry_after == 40
    assert result.cursor == {"post_id": 10}


def test_base_url_is_required() -> None:
    with pytest.raises(ValueError, match="base_url"):
        DiscourseSource(SourceHttp(httpx.Client()))
