"""Each source on its real captured payloads, faked at the HTTP layer with respx."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from earshot.listener.sources import (
    AppStoreSource,
    BadPayloadError,
    FatalError,
    HackerNewsSource,
    RateLimitedError,
    RedditSource,
    RetriableError,
    SourceHttp,
)

from .conftest import load_json

HN = "https://hn.test/api/v1"
REDDIT = "https://reddit.test"
APPLE = "https://apple.test"
NOW = 1_700_000_000.0


def http() -> SourceHttp:
    return SourceHttp(httpx.Client())


def hn(**kwargs: Any) -> HackerNewsSource:
    return HackerNewsSource(http(), base_url=HN, clock=lambda: NOW, **kwargs)


def hn_page(
    hits: list[dict[str, Any]], *, page: int = 0, pages: int = 1, total: int | None = None
) -> dict[str, Any]:
    return {
        "hits": hits,
        "page": page,
        "nbPages": pages,
        "nbHits": len(hits) if total is None else total,
        "hitsPerPage": 100,
    }


# -- Hacker News ------------------------------------------------------------------------


@respx.mock
def test_hn_parses_comment_and_story_fixtures() -> None:
    comment = load_json("hn_algolia/search_by_date_comment_query_apple.json")
    story = load_json("hn_algolia/search_by_date_story_query_apple.json")
    respx.get(f"{HN}/search_by_date").respond(json=hn_page(comment["hits"] + story["hits"]))
    result = hn(backfill_seconds=10**9).poll(None, ["apple"])
    by_id = {m.external_id: m for m in result.mentions}
    c = by_id["7919418"]
    assert c.source == "hackernews" and c.author == "fleitz"
    assert c.url == "https://news.ycombinator.com/item?id=7919418"
    assert c.created_at == datetime(2014, 6, 20, 3, 32, 34, tzinfo=UTC)
    # HTML became plain text: entities decoded, tags gone, paragraphs kept.
    assert "aren't contributing to the scholarship" in c.text
    assert "<" not in c.text and "&#x27;" not in c.text
    assert "\n" in c.text and c.title == ""
    s = by_id["7919424"]
    assert s.title == "Judge says concerned about Apple, Google hiring settlement"
    assert result.cursor == {"terms": {"apple": 1403235346}}


@respx.mock
def test_hn_second_poll_sends_the_stored_cursor() -> None:
    story = load_json("hn_algolia/search_by_date_story_query_apple.json")
    route = respx.get(f"{HN}/search_by_date").respond(json=hn_page(story["hits"]))
    source = hn()
    first = source.poll(None, ["apple"])
    params = route.calls[0].request.url.params
    assert params["query"] == "apple"
    assert params["tags"] == "(story,comment)"
    # First run: backfill 24 h.
    assert params["numericFilters"] == f"created_at_i>{int(NOW - 86400)}"
    assert first.cursor == {"terms": {"apple": int(NOW - 86400)}}  # fixture is older
    first.cursor = {"terms": {"apple": 1403235346}}
    route.respond(json=hn_page([]))
    second = source.poll(first.cursor, ["apple"])
    assert route.calls[1].request.url.params["numericFilters"] == "created_at_i>1403235346"
    # An empty poll changes nothing.
    assert second.mentions == [] and second.cursor == first.cursor


@respx.mock
def test_hn_one_request_per_term_each_with_its_cursor() -> None:
    route = respx.get(f"{HN}/search_by_date").respond(json=hn_page([]))
    result = hn().poll({"terms": {"acme": 100}}, ["acme", "acme app"])
    queries = [c.request.url.params["query"] for c in route.calls]
    assert queries == ["acme", "acme app"]
    assert route.calls[0].request.url.params["numericFilters"] == "created_at_i>100"
    assert result.cursor["terms"]["acme"] == 100


def _hn_hits(start: int, count: int) -> list[dict[str, Any]]:
    base = load_json("hn_algolia/search_by_date_story_query_apple.json")["hits"][0]
    hits = []
    for i in range(count):
        hit = copy.deepcopy(base)
        hit["objectID"] = str(start + i)
        hit["created_at_i"] = 1_600_000_000 + start + i
        hits.append(hit)
    hits.sort(key=lambda h: -h["created_at_i"])
    return hits


@respx.mock
def test_hn_pages_until_nbpages_and_windows_past_the_1000_hit_cap() -> None:
    hits = _hn_hits(0, 250)  # newest first
    calls: list[dict[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        calls.append(params)
        window = hits
        filters = params["numericFilters"].split(",")
        for part in filters[1:]:
            upper = int(part.split("<=")[1])
            window = [h for h in window if h["created_at_i"] <= upper]
        # Pretend Algolia only pages through 100 hits of a window (its cap is 1,000).
        per, page = int(params["hitsPerPage"]), int(params["page"])
        capped = window[:100]
        chunk = capped[page * per : (page + 1) * per]
        pages = (len(capped) + per - 1) // per
        return httpx.Response(200, json=hn_page(chunk, page=page, pages=pages, total=len(window)))

    respx.get(f"{HN}/search_by_date").mock(side_effect=answer)
    result = hn(hits_per_page=50).poll({"terms": {"apple": 1_500_000_000}}, ["apple"])
    assert {m.external_id for m in result.mentions} == {str(i) for i in range(250)}
    assert result.cursor["terms"]["apple"] == 1_600_000_249
    assert any("created_at_i<=" in c["numericFilters"] for c in calls)


# -- Reddit -----------------------------------------------------------------------------


def reddit(**kwargs: Any) -> RedditSource:
    kwargs.setdefault("subreddits", ["kakapo"])
    kwargs.setdefault("listings", ["comments"])
    return RedditSource(
        http(), base_url=REDDIT, clock=lambda: 1492274908.0 + 3600, backfill_seconds=10**9, **kwargs
    )


@respx.mock
def test_reddit_parses_comment_listing() -> None:
    page1 = load_json("reddit/r_kakapo_comments_page1.json")
    route = respx.get(f"{REDDIT}/r/kakapo/comments.json").respond(json=page1)
    result = reddit().poll(None, [])
    assert len(result.mentions) == 16
    first = result.mentions[0]
    assert first.external_id == "t1_dgauydy" and first.author == "butt_woman"
    assert first.text == "i lick it" and first.site == "kakapo"
    assert first.url.startswith("https://www.reddit.com/r/kakapo/comments/654eqk/")
    assert first.url.endswith("/dgauydy/")
    params = route.calls[0].request.url.params
    assert params["raw_json"] == "1" and params["limit"] == "100"
    assert result.cursor == {
        "listings": {"kakapo/comments": {"name": "t1_dgauydy", "created": 1492274908.0}}
    }


@respx.mock
def test_reddit_second_poll_sends_before_cursor_and_empty_changes_nothing() -> None:
    page1 = load_json("reddit/r_kakapo_comments_page1.json")
    empty = load_json("reddit/r_kakapo_comments_before_cursor_empty.json")
    route = respx.get(f"{REDDIT}/r/kakapo/comments.json").respond(json=page1)
    source = reddit()
    first = source.poll(None, [])
    route.respond(json=empty)
    second = source.poll(first.cursor, [])
    assert route.calls[1].request.url.params["before"] == "t1_dgauydy"
    assert second.mentions == [] and second.cursor == first.cursor


@respx.mock
def test_reddit_repoll_finds_the_one_new_comment() -> None:
    page1 = load_json("reddit/r_kakapo_comments_page1.json")
    repoll = load_json("reddit/r_kakapo_comments_repoll.json")
    new = copy.deepcopy(repoll)
    new["data"]["children"] = repoll["data"]["children"][:1]  # what before= answers
    route = respx.get(f"{REDDIT}/r/kakapo/comments.json").respond(json=page1)
    source = reddit()
    first = source.poll(None, [])
    route.respond(json=new)
    second = source.poll(first.cursor, [])
    assert [m.external_id for m in second.mentions] == ["t1_dgd9bcm"]
    assert second.cursor["listings"]["kakapo/comments"]["name"] == "t1_dgd9bcm"


def _reddit_listing(children: list[dict[str, Any]], after: str | None) -> dict[str, Any]:
    return {"kind": "Listing", "data": {"children": children, "after": after, "before": None}}


@respx.mock
def test_reddit_full_before_page_walks_from_the_top_until_the_cursor() -> None:
    template = load_json("reddit/r_kakapo_comments_page1.json")["data"]["children"][0]
    children = []
    for i in range(23):  # newest first; the last one is the stored cursor
        child = copy.deepcopy(template)
        child["data"]["name"] = f"t1_x{i:03d}"
        child["data"]["id"] = f"x{i:03d}"
        child["data"]["created_utc"] = 1492274908.0 + 100 - i
        children.append(child)
    known = children[-1]["data"]

    def answer(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        limit = int(params["limit"])
        if "before" in params:  # the 5 items just newer than the cursor: a full page
            return httpx.Response(200, json=_reddit_listing(children[-6:-1], None))
        start = 0
        if "after" in params:
            start = (
                next(i for i, c in enumerate(children) if c["data"]["name"] == params["after"]) + 1
            )
        page = children[start : start + limit]
        after = page[-1]["data"]["name"] if start + limit < len(children) else None
        return httpx.Response(200, json=_reddit_listing(page, after))

    route = respx.get(f"{REDDIT}/r/kakapo/comments.json").mock(side_effect=answer)
    cursor = {
        "listings": {"kakapo/comments": {"name": known["name"], "created": known["created_utc"]}}
    }
    result = reddit(limit=5).poll(cursor, [])
    assert [m.external_id for m in result.mentions] == [f"t1_x{i:03d}" for i in range(22)]
    assert result.cursor["listings"]["kakapo/comments"]["name"] == "t1_x000"
    assert len(route.calls) == 1 + 5  # before=, then pages of 5 down to the cursor


@respx.mock
def test_reddit_quarantined_sub_fails_alone() -> None:
    forbidden = load_json("reddit/error_403_quarantined.json")
    page1 = load_json("reddit/r_kakapo_comments_page1.json")
    respx.get(f"{REDDIT}/r/ferguson/comments.json").respond(403, json=forbidden)
    respx.get(f"{REDDIT}/r/kakapo/comments.json").respond(json=page1)
    result = reddit(subreddits=["ferguson", "kakapo"]).poll(None, [])
    assert len(result.mentions) == 16
    assert len(result.errors) == 1 and isinstance(result.errors[0], FatalError)
    assert "403" in str(result.errors[0])
    assert "ferguson/comments" not in result.cursor["listings"]


# -- App Store --------------------------------------------------------------------------


def appstore(**kwargs: Any) -> AppStoreSource:
    return AppStoreSource(
        http(),
        base_url=APPLE,
        app_id="284815942",
        clock=lambda: NOW,
        backfill_seconds=10**9,
        **kwargs,
    )


REVIEWS = "/us/rss/customerreviews/page={page}/id=284815942/sortby=mostrecent/json"


@respx.mock
def test_appstore_parses_reviews_with_ratings() -> None:
    feed = load_json("appstore/customerreviews_us_id284815942_json.json")
    respx.get(APPLE + REVIEWS.format(page=1)).respond(json=feed)
    respx.get(APPLE + REVIEWS.format(page=2)).respond(json={"feed": {"author": {}}})
    result = appstore().poll(None, [])
    assert len(result.mentions) == 50
    first = result.mentions[0]
    assert first.external_id == "8044879566"
    assert first.rating == 4 and first.title == "Usually interesting reading but"
    assert first.text.startswith("A huge bug is that")
    assert first.body.startswith("Usually interesting reading but\nA huge bug")
    assert first.url == "https://apps.apple.com/us/app/id284815942?see-all=reviews"
    assert all(1 <= m.rating <= 5 for m in result.mentions if m.rating is not None)
    newest = max(m.created_at for m in result.mentions)
    assert result.cursor == {"countries": {"us": newest.timestamp()}}


@respx.mock
def test_appstore_stops_paging_at_known_reviews() -> None:
    feed = load_json("appstore/customerreviews_us_id284815942_json.json")
    page1 = respx.get(APPLE + REVIEWS.format(page=1)).respond(json=feed)
    page2 = respx.get(APPLE + REVIEWS.format(page=2)).respond(json={"feed": {}})
    source = appstore()
    first = source.poll(None, [])
    assert page2.called  # every review was new: keep paging
    second = source.poll(first.cursor, [])
    assert second.mentions == [] and second.cursor == first.cursor
    assert page1.call_count == 2 and page2.call_count == 1  # the repoll stopped at page 1


@respx.mock
def test_appstore_single_entry_object_and_empty_storefront() -> None:
    feed = load_json("appstore/customerreviews_us_id284815942_json.json")
    single = {"feed": {**feed["feed"], "entry": feed["feed"]["entry"][3]}}
    respx.get(APPLE + REVIEWS.format(page=1)).respond(json=single)
    respx.get(APPLE + REVIEWS.format(page=2)).respond(json={"feed": {"author": {}}})
    respx.get(APPLE + "/zw/rss/customerreviews/page=1/id=284815942/sortby=mostrecent/json").respond(
        json={"feed": {"author": {"name": {"label": "iTunes Store"}}}}
    )
    result = appstore(countries=["us", "zw"]).poll(None, [])
    assert [m.site for m in result.mentions] == ["us"]
    assert "zw" not in result.cursor["countries"]


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "error", "retriable"),
    [
        (httpx.Response(403, json={"message": "Forbidden", "error": 403}), FatalError, False),
        (httpx.Response(404, text="nope"), FatalError, False),
        (httpx.Response(429, headers={"Retry-After": "7"}), RateLimitedError, True),
        (httpx.Response(503, text="<html>down</html>"), RetriableError, True),
        (httpx.Response(200, content=b'{"hits": [{"objectID": "1"'), BadPayloadError, True),
        (
            httpx.Response(
                200, text="<html><body>Error</body></html>", headers={"content-type": "text/html"}
            ),
            BadPayloadError,
            True,
        ),
    ],
)
@respx.mock
def test_upstream_errors_become_source_errors(
    response: httpx.Response, error: type, retriable: bool
) -> None:
    respx.get(f"{HN}/search_by_date").mock(return_value=response)
    result = hn().poll({"terms": {"acme": 5}}, ["acme"])
    assert len(result.errors) == 1
    exc = result.errors[0]
    assert isinstance(exc, error) and exc.retriable is retriable
    assert result.cursor == {"terms": {"acme": 5}}  # never moved
    if isinstance(exc, RateLimitedError):
        assert exc.retry_after == 7


@respx.mock
def test_timeout_is_retriable() -> None:
    respx.get(f"{HN}/search_by_date").mock(side_effect=httpx.ReadTimeout("slow"))
    result = hn().poll(None, ["acme"])
    assert isinstance(result.errors[0], RetriableError)
    assert "timeout" in str(result.errors[0])


@respx.mock
def test_malformed_hit_is_skipped_and_counted() -> None:
    story = load_json("hn_algolia/search_by_date_story_query_apple.json")["hits"][0]
    respx.get(f"{HN}/search_by_date").respond(json=hn_page([story, {"objectID": "x"}, "junk"]))
    result = hn().poll(None, ["apple"])
    assert [m.external_id for m in result.mentions] == ["7919424"]
    assert result.skipped == 2


def test_user_agent_names_earshot_and_version() -> None:
    from earshot.config.wiring import build_client
    from earshot.listener import __version__

    with build_client() as client:
        assert client.headers["user-agent"].startswith(f"earshot/{__version__}")
    assert json.dumps({})  # keep json import used for fixtures helpers
