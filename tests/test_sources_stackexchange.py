"""Stack Exchange: backoff, quota, the error wrapper, paging down to the cursor."""

from __future__ import annotations

from typing import Any

import httpx
import respx

from earshot.listener.sources.base import FatalError, RateLimitedError, RateLimiter
from earshot.listener.sources.stackexchange import StackExchangeSource

from .contract import FakeTime, load_fixture, make_http

BASE = "https://se.test/2.3"
SEARCH = f"{BASE}/search/advanced"
NOW = 1_455_000_000.0  # 2016-02-09, just after the captured questions


def page(items: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    data = load_fixture("stackexchange/search_advanced_q_something_missing.json")
    if items is not None:
        data["items"] = items
    data.update(extra)
    return data


def se(fake: FakeTime | None = None, max_wait: float = 60, **kwargs: Any) -> StackExchangeSource:
    fake = fake or FakeTime()
    limiter = RateLimiter(None, clock=fake.clock, sleep=fake.sleep, max_wait=max_wait)
    kwargs.setdefault("backfill_seconds", 10**9)
    return StackExchangeSource(make_http(limiter), base_url=BASE, clock=lambda: NOW, **kwargs)


@respx.mock
def test_request_parameters_key_and_html_entities() -> None:
    route = respx.get(SEARCH).respond(json=page(has_more=False))
    result = se(api_key="k3y", backfill_seconds=86400).poll(None, ["something missing"])
    params = route.calls[0].request.url.params
    assert params["q"] == "something missing" and params["site"] == "stackoverflow"
    assert params["sort"] == "creation" and params["order"] == "desc"
    assert params["fromdate"] == str(int(NOW - 86400)) and params["page"] == "1"
    assert params["key"] == "k3y" and params["filter"] == "withbody"
    # None of the captured questions is inside the 24 h backfill window.
    assert [m.external_id for m in result.mentions] == []
    result = se().poll(None, ["something missing"])
    titles = {m.external_id: m.title for m in result.mentions}
    assert titles["stackoverflow:35187659"] == "Rails ... Can't access object?"


@respx.mock
def test_pages_with_has_more_until_the_cursor() -> None:
    items = page()["items"]
    newer = sorted(items, key=lambda i: -i["creation_date"])
    route = respx.get(SEARCH).mock(
        side_effect=[
            httpx.Response(200, json=page(newer[:4], has_more=True)),
            httpx.Response(200, json=page(newer[4:8], has_more=True)),
        ]
    )
    cursor = {"sites": {"stackoverflow": {"q": {"from": newer[6]["creation_date"], "ids": []}}}}
    result = se().poll(cursor, ["q"])
    assert [c.request.url.params["page"] for c in route.calls] == ["1", "2"]
    assert len(result.mentions) == 7  # down to and including the cursor second
    state = result.cursor["sites"]["stackoverflow"]["q"]
    assert state == {
        "from": newer[0]["creation_date"],
        "ids": [f"stackoverflow:{newer[0]['question_id']}"],
    }


@respx.mock
def test_short_backoff_makes_the_next_call_wait() -> None:
    fake = FakeTime()
    backoff = load_fixture("stackexchange/questions_with_backoff.json")
    assert backoff["backoff"] == 0.2  # shape sample; the real API sends whole seconds
    respx.get(SEARCH).mock(
        side_effect=[
            httpx.Response(200, json=page(backoff=10, has_more=True)),
            httpx.Response(200, json=page([], has_more=False)),
        ]
    )
    result = se(fake).poll(None, ["q"])
    assert result.errors == [] and fake.sleeps == [10]


@respx.mock
def test_long_backoff_stops_calls_and_survives_in_the_cursor() -> None:
    route = respx.get(SEARCH).respond(json=page(backoff=600, has_more=False))
    source = se(max_wait=60)
    first = source.poll(None, ["q"])
    assert first.cursor["backoff_until"] == NOW + 600
    second = source.poll(first.cursor, ["q"])
    assert route.call_count == 1
    assert isinstance(second.errors[0], RateLimitedError)
    assert second.errors[0].retry_after == 600
    # A new process (a restart) reads the deadline from the cursor.
    third = se(max_wait=60).poll(first.cursor, ["q"])
    assert route.call_count == 1 and isinstance(third.errors[0], RateLimitedError)
    assert third.cursor["sites"] == first.cursor["sites"]


@respx.mock
def test_exhausted_quota_stops_the_poll() -> None:
    route = respx.get(SEARCH).respond(json=page(quota_remaining=0, has_more=False))
    source = se()
    result = source.poll(None, ["a", "b"])
    assert route.call_count == 1 and source.quota_remaining == 0
    assert len(result.mentions) == 10  # what the last call brought is kept
    assert isinstance(result.errors[0], RateLimitedError)
    assert result.errors[0].retry_after is not None and 0 < result.errors[0].retry_after <= 86400
    assert "b" not in result.cursor["sites"].get("stackoverflow", {})


@respx.mock
def test_error_wrapper_bad_parameter_is_fatal() -> None:
    respx.get(SEARCH).respond(400, json=load_fixture("stackexchange/error_400_bad_parameter.json"))
    result = se().poll({"sites": {"stackoverflow": {"q": {"from": 5, "ids": []}}}}, ["q"])
    exc = result.errors[0]
    assert isinstance(exc, FatalError) and exc.status_code == 400
    assert "bad_parameter" in str(exc) and "malformed parameter" in str(exc)
    assert result.cursor["sites"] == {"stackoverflow": {"q": {"from": 5, "ids": []}}}


@respx.mock
def test_throttle_violation_is_rate_limited_with_its_wait() -> None:
    body = {
        "error_id": 502,
        "error_name": "throttle_violation",
        "error_message": "too many requests from this IP, more requests available in 79093 seconds",
    }
    respx.get(SEARCH).respond(502, json=body)
    result = se().poll(None, ["a", "b"])
    assert len(result.errors) == 1  # rate limited: the poll stops
    exc = result.errors[0]
    assert isinstance(exc, RateLimitedError) and exc.retry_after == 79093


@respx.mock
def test_each_site_and_term_is_a_unit() -> None:
    route = respx.get(SEARCH).respond(json=page(has_more=False))
    result = se(sites=["stackoverflow", "superuser"]).poll(None, ["a", "b"])
    assert result.units == 4 and route.call_count == 4
    assert {m.site for m in result.mentions} == {"stackoverflow", "superuser"}
    assert len(result.mentions) == 20  # question ids are per site


@respx.mock
def test_malformed_items_are_skipped_and_a_wrong_shape_is_an_error() -> None:
    items = [*page()["items"][:2], {"question_id": "x"}, "junk", {"question_id": 1}]
    respx.get(SEARCH).respond(json=page(items, has_more=False))
    result = se().poll(None, ["q"])
    assert len(result.mentions) == 2 and result.skipped == 3
    respx.get(SEARCH).respond(json={"items": "nope"})
    result = se().poll(None, ["q"])
    assert result.errors and result.errors[0].retriable
