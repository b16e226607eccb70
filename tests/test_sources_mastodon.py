"""Mastodon: forward paging with min_id, Link headers, search, per-unit failures."""

from __future__ import annotations

from typing import Any

import httpx
import pydantic
import pytest
import respx

from earshot.listener.sources.base import BadPayloadError, FatalError, reset_seconds
from earshot.listener.sources.mastodon import MastodonSource, id_key, snowflake

from .contract import load_fixture, load_headers, make_http

BASE = "https://mastodon.test"
TAG = "fgiztsshwiaqqiztpmmjbtvmescsculuvmgjgopwoeidbcrixp"
TAG_URL = f"{BASE}/api/v1/timelines/tag/{TAG}"
NOW = 1_785_600_000.0  # 2026-08-01 16:00 UTC, a little after the recorded statuses


def masto(**kwargs: Any) -> MastodonSource:
    kwargs.setdefault("hashtags", [TAG])
    kwargs.setdefault("limit", 10)
    return MastodonSource(make_http(), base_url=BASE, clock=lambda: NOW, **kwargs)


def page1() -> httpx.Response:
    return httpx.Response(
        200,
        json=load_fixture("mastodon/timelines_tag_page1.json"),
        headers=load_headers("mastodon/timelines_tag_page1.headers.json"),
    )


def test_status_ids_are_time_based_snowflakes() -> None:
    statuses = load_fixture("mastodon/timelines_tag_page1.json")
    newest = statuses[0]
    # 117020581413876942 >> 16 is 13:52:47.765 UTC, two ms before its created_at.
    assert (int(newest["id"]) >> 16) // 1000 == 1785592367
    assert id_key(snowflake(1785592367)) < id_key(newest["id"])
    assert id_key("99") < id_key("100")  # compared as integers, not as text


@respx.mock
def test_first_run_reads_forward_from_the_backfill_start() -> None:
    route = respx.get(TAG_URL).mock(side_effect=[page1(), httpx.Response(200, json=[])])
    result = masto().poll(None, [])
    first = route.calls[0].request.url.params
    assert first["min_id"] == snowflake(NOW - 86400) and first["limit"] == "10"
    # The next page starts at the Link rel="prev" min_id: the newest id of the page.
    assert route.calls[1].request.url.params["min_id"] == "117020581413876942"
    assert len(result.mentions) == 10
    assert result.cursor == {"hashtags": {TAG: "117020581413876942"}, "search": {}}


@respx.mock
def test_a_server_ignoring_min_id_repeats_its_link_and_stops() -> None:
    route = respx.get(TAG_URL).mock(side_effect=lambda request: page1())
    result = masto().poll({"hashtags": {TAG: "117020581300000000"}}, [])
    assert route.call_count == 2  # the second answer's Link is the one already followed
    assert len(result.mentions) == 10


@respx.mock
def test_page_cap_stops_a_runaway_timeline() -> None:
    statuses = load_fixture("mastodon/timelines_tag_page1.json")
    state = {"id": 117020581413876942}

    def endless(request: httpx.Request) -> httpx.Response:
        page = []
        for status in statuses:  # ten ever newer statuses on every page
            state["id"] += 1
            page.append({**status, "id": str(state["id"]), "uri": f"{BASE}/s/{state['id']}"})
        page.reverse()
        return httpx.Response(200, json=page)

    route = respx.get(TAG_URL).mock(side_effect=endless)
    result = masto(max_pages=3).poll({"hashtags": {TAG: "1"}}, [])
    assert route.call_count == 3
    assert len(result.mentions) == 30
    assert result.cursor["hashtags"][TAG] == str(state["id"])


@respx.mock
def test_known_statuses_are_not_reported_again() -> None:
    respx.get(TAG_URL).mock(side_effect=[page1(), httpx.Response(200, json=[])])
    # The server ignored min_id and sent statuses at or below the cursor: none is new.
    result = masto().poll({"hashtags": {TAG: "117020581413876942"}}, [])
    assert result.mentions == []
    assert result.cursor["hashtags"][TAG] == "117020581413876942"


@respx.mock
def test_search_with_a_token_pages_with_offset() -> None:
    statuses = load_fixture("mastodon/timelines_tag_page1.json")
    route = respx.get(f"{BASE}/api/v2/search").mock(
        side_effect=[
            httpx.Response(200, json={"accounts": [], "statuses": statuses, "hashtags": []}),
            httpx.Response(200, json=load_fixture("mastodon/search_v2_type_statuses_empty.json")),
        ]
    )
    source = masto(hashtags=[], search=True, access_token="tok")
    result = source.poll({"search": {"acme": "117020581339834938"}}, ["acme"])
    first, second = (c.request for c in route.calls)
    assert first.headers["authorization"] == "Bearer tok"
    assert first.url.params["type"] == "statuses" and first.url.params["q"] == "acme"
    assert first.url.params["min_id"] == "117020581339834938" and "offset" not in first.url.params
    assert second.url.params["offset"] == "10"
    # The status equal to the cursor is known already.
    assert len(result.mentions) == 9
    assert result.cursor["search"]["acme"] == "117020581413876942"


@respx.mock
def test_search_without_a_token_reads_one_page() -> None:
    statuses = load_fixture("mastodon/timelines_tag_page1.json")
    route = respx.get(f"{BASE}/api/v2/search").respond(json={"statuses": statuses})
    result = masto(hashtags=[], search=True).poll(None, ["acme"])
    assert route.call_count == 1 and "authorization" not in route.calls[0].request.headers
    assert len(result.mentions) == 10


@respx.mock
def test_real_empty_search_changes_nothing_and_bad_shape_is_an_error() -> None:
    empty = load_fixture("mastodon/search_v2_type_statuses_empty.json")
    route = respx.get(f"{BASE}/api/v2/search").respond(json=empty)
    source = masto(hashtags=[], search=True, access_token="tok")
    cursor = {"hashtags": {}, "search": {"acme": "5"}}
    result = source.poll(cursor, ["acme"])
    assert result.mentions == [] and result.cursor == cursor and result.errors == []
    route.respond(json=["not", "a", "search", "answer"])
    result = source.poll(cursor, ["acme"])
    assert isinstance(result.errors[0], BadPayloadError) and result.cursor == cursor


@respx.mock
def test_one_hashtag_failing_leaves_the_others() -> None:
    respx.get(f"{BASE}/api/v1/timelines/tag/gone").respond(404, json={"error": "Not found"})
    respx.get(TAG_URL).mock(side_effect=[page1(), httpx.Response(200, json=[])])
    result = masto(hashtags=["#gone", TAG]).poll({"hashtags": {"gone": "7"}}, [])
    assert result.units == 2
    assert len(result.errors) == 1 and isinstance(result.errors[0], FatalError)
    assert result.cursor["hashtags"]["gone"] == "7"
    assert len(result.mentions) == 10


@respx.mock
def test_malformed_statuses_are_skipped_and_counted() -> None:
    statuses = load_fixture("mastodon/timelines_tag_page1.json")[:2]
    broken = [{"id": 5}, "junk", {"id": "9", "created_at": "yesterday"}]
    respx.get(TAG_URL).respond(json=statuses + broken)
    result = masto().poll(None, [])
    assert len(result.mentions) == 2 and result.skipped == 3
    assert result.mentions[0].text.startswith("Toot number 29!")


def test_options_need_hashtags_or_search() -> None:
    with pytest.raises(pydantic.ValidationError):
        MastodonSource.Options()
    assert MastodonSource.Options(search=True).hashtags == []
    assert MastodonSource.Options(hashtags=["#rust"]).search is False


def test_iso_8601_reset_header() -> None:
    headers = load_headers("mastodon/timelines_tag_page1.headers.json")
    assert headers["x-ratelimit-reset"] == "2026-08-01T13:55:00.976542Z"
    assert reset_seconds(headers, now=1785592500.0) == pytest.approx(0.976542, abs=1e-3)
    assert reset_seconds({"x-ratelimit-reset": "30"}, now=5.0) == 30
    assert reset_seconds({"ratelimit-reset": "1747676784"}, now=1747676700.0) == 84
    assert reset_seconds({"x-ratelimit-reset": "soon"}) is None
