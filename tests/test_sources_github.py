"""GitHub issue/PR search (REST) and discussion search (GraphQL), on the real captured page."""

from __future__ import annotations

import copy
import json
import logging
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from earshot.listener.sources.base import (
    BadPayloadError,
    FatalError,
    RateLimitedError,
    RateLimiter,
    SourceHttp,
)
from earshot.listener.sources.github import GitHubSource, iso

from .contract import FakeTime, load_fixture

GH = "https://gh.test"
SEARCH = f"{GH}/search/issues"
NOW = 1_800_000_000.0
PAGE = "github/search_issues.json"
#: The fixture's newest item: created 2022-07-19T04:40:52Z.
NEWEST = int(datetime(2022, 7, 19, 4, 40, 52, tzinfo=UTC).timestamp())


def http(limiter: RateLimiter | None = None) -> SourceHttp:
    fake = FakeTime()
    return SourceHttp(
        httpx.Client(), limiter or RateLimiter(None, clock=fake.clock, sleep=fake.sleep)
    )


def github(limiter: RateLimiter | None = None, **kwargs: Any) -> GitHubSource:
    kwargs.setdefault("backfill_seconds", NOW)
    return GitHubSource(http(limiter), base_url=GH, clock=lambda: NOW, **kwargs)


def items(count: int, *, start: int = 0, newest: int = NEWEST + 10_000) -> list[dict[str, Any]]:
    """``count`` real-shaped items, newest first, ids ``start..``, one second apart."""
    template = load_fixture(PAGE)["items"][0]
    made = []
    for i in range(count):
        item = copy.deepcopy(template)
        item["id"] = 5_000_000 + start + i
        item["number"] = start + i
        item["html_url"] = template["html_url"].rsplit("/", 1)[0] + f"/{start + i}"
        stamp = newest - i
        item["created_at"] = datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        made.append(item)
    return made


@respx.mock
def test_parses_the_real_search_page() -> None:
    route = respx.get(SEARCH).respond(json=load_fixture(PAGE))
    result = github().poll(None, ["sesame"])
    assert result.errors == [] and result.skipped == 0
    by_id = {m.external_id: m for m in result.mentions}
    assert set(by_id) == {"1308970076", "1308970043"}
    m = by_id["1308970076"]
    repo = "octokit-fixture-org/tmp-scenario-search-issues-20220719044045959-jlcli"
    assert m.source == "github"
    assert m.url == f"https://github.com/{repo}/issues/2"
    assert m.author == "octokit-fixture-user-b"
    assert m.site == repo
    assert m.title == "Sesame seeds split without a pop!"
    assert m.text == "I\u2019ve waited all year long, but there was no pop \U0001f62d"
    assert m.created_at == datetime(2022, 7, 19, 4, 40, 52, tzinfo=UTC)
    params = route.calls[0].request.url.params
    assert params["q"] == f"sesame created:>={iso(NOW - NOW)}"
    assert params["sort"] == "created" and params["order"] == "desc"
    assert params["per_page"] == "100"
    headers = route.calls[0].request.headers
    assert headers["accept"] == "application/vnd.github+json"
    assert "authorization" not in headers
    assert result.cursor == {
        "searches": {"issues:sesame": {"since": NEWEST, "ids": ["1308970076"]}}
    }


@respx.mock
def test_second_poll_searches_from_the_cursor_and_drops_the_inclusive_repeat() -> None:
    route = respx.get(SEARCH).respond(json=load_fixture(PAGE))
    source = github(token="ghp_test")
    first = source.poll(None, ["sesame"])
    stored = json.loads(json.dumps(first.cursor))
    # created:>= is inclusive: the newest item comes back, and one new item above it.
    again = load_fixture(PAGE)
    new = items(1, newest=NEWEST + 5)[0]
    again["items"] = [new, again["items"][0]]
    route.respond(json=again)
    second = source.poll(stored, ["sesame"])
    assert route.calls[1].request.url.params["q"] == "sesame created:>=2022-07-19T04:40:52Z"
    assert route.calls[1].request.headers["authorization"] == "Bearer ghp_test"
    assert [m.external_id for m in second.mentions] == [str(new["id"])]
    assert second.cursor["searches"]["issues:sesame"] == {
        "since": NEWEST + 5,
        "ids": [str(new["id"])],
    }
    # Nothing new: nothing returned, cursor unchanged.
    route.respond(json={**again, "items": [new]})
    third = source.poll(second.cursor, ["sesame"])
    assert third.mentions == [] and third.cursor == second.cursor


@respx.mock
def test_follows_link_next_and_stops_on_a_repeated_link() -> None:
    pages = [items(3, start=0), items(3, start=3, newest=NEWEST + 100), items(2, start=6)]
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        page = int(request.url.params.get("page", "1"))
        headers = {}
        if page < 3:
            headers["Link"] = (
                f'<{SEARCH}?q=x&page={page + 1}>; rel="next", <{SEARCH}?page=3>; rel="last"'
            )
        else:  # a broken API pointing back at page 2
            headers["Link"] = f'<{SEARCH}?q=x&page=2>; rel="next"'
        body = {"total_count": 8, "incomplete_results": False, "items": pages[page - 1]}
        return httpx.Response(200, json=body, headers=headers)

    respx.get(SEARCH).mock(side_effect=answer)
    result = github().poll(None, ["acme"])
    assert len(result.mentions) == 8
    assert len(calls) == 3  # page 3's next link points back at page 2: not asked again
    assert calls[1].endswith("page=2") and calls[2].endswith("page=3")


@respx.mock
def test_narrows_the_window_past_the_1000_result_cap() -> None:
    burst = items(250)  # newest first
    queries: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        q = request.url.params["q"]
        queries.append(q)
        window = burst
        for part in q.split():
            if part.startswith("created:<="):
                upper = datetime.fromisoformat(
                    part.removeprefix("created:<=").replace("Z", "+00:00")
                )
                window = [i for i in window if i["created_at"] <= iso(upper.timestamp())]
        # Pretend GitHub pages through only 60 results of a search (really 1,000).
        capped = window[:60]
        body = {"total_count": len(window), "incomplete_results": False, "items": capped}
        return httpx.Response(200, json=body)

    respx.get(SEARCH).mock(side_effect=answer)
    result = github(per_page=100).poll({"searches": {}}, ["acme"])
    assert sorted(int(m.external_id) for m in result.mentions) == list(range(5_000_000, 5_000_250))
    assert any("created:<=" in q for q in queries)
    assert result.cursor["searches"]["issues:acme"]["since"] == NEWEST + 10_000


@respx.mock
def test_incomplete_results_are_kept_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    page = load_fixture(PAGE)
    page["incomplete_results"] = True
    respx.get(SEARCH).respond(json=page)
    with caplog.at_level(logging.WARNING, logger="earshot.listener.sources"):
        result = github().poll(None, ["sesame"])
    assert len(result.mentions) == 2
    assert "incomplete" in caplog.text


@respx.mock
def test_malformed_items_are_skipped_and_counted() -> None:
    page = load_fixture(PAGE)
    broken = copy.deepcopy(page["items"][0])
    del broken["created_at"]
    page["items"] += [broken, "junk", {"id": True, "created_at": "2022-07-19T04:40:52Z"}]
    respx.get(SEARCH).respond(json=page)
    result = github().poll(None, ["sesame"])
    assert len(result.mentions) == 2 and result.skipped == 3


@respx.mock
def test_phrases_are_quoted_and_qualifiers_appended() -> None:
    route = respx.get(SEARCH).respond(json={"total_count": 0, "items": []})
    github(qualifiers="is:issue -org:acme").poll({"searches": {}}, ["acme app"])
    q = route.calls[0].request.url.params["q"]
    assert q.startswith('"acme app" created:>=') and q.endswith(" is:issue -org:acme")


SECONDARY = {
    "message": "You have exceeded a secondary rate limit. Please wait a few minutes before "
    "you try again. If you reach out to GitHub Support for help, please include the "
    "request ID 0681:89CC:14782BB:4051686:62D635E3.",
    "documentation_url": "https://docs.github.com/free-pro-team@latest/rest/overview/"
    "rate-limits-for-the-rest-api#about-secondary-rate-limits",
}


@pytest.mark.parametrize(
    ("status", "headers", "body", "wait"),
    [
        (403, {"Retry-After": "30"}, SECONDARY, 30.0),  # secondary, with Retry-After
        (429, {"Retry-After": "12"}, SECONDARY, 12.0),
        (403, {"X-RateLimit-Remaining": "14"}, SECONDARY, 60.0),  # no hint: one minute
        (
            403,
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 45)},
            {"message": "API rate limit exceeded for 192.0.2.1."},
            None,  # primary: until the reset (relative to the real clock, checked below)
        ),
    ],
)
@respx.mock
def test_rate_limit_answers_wait_as_github_documents(
    status: int, headers: dict[str, str], body: dict[str, Any], wait: float | None
) -> None:
    fake = FakeTime()
    limiter = RateLimiter(None, clock=fake.clock, sleep=fake.sleep, max_wait=600)
    respx.get(SEARCH).respond(status, json=body, headers=headers)
    result = github(limiter).poll({"searches": {}}, ["acme", "other"])
    assert len(result.errors) == 1, "a rate limit stops the poll"
    exc = result.errors[0]
    assert isinstance(exc, RateLimitedError) and exc.status_code == status
    assert exc.retry_after is not None
    if wait is not None:
        assert exc.retry_after == wait
        limiter.acquire()
        assert fake.sleeps == [pytest.approx(wait)]
    assert result.cursor == {"searches": {}}


@respx.mock
def test_a_plain_403_is_fatal() -> None:
    respx.get(SEARCH).respond(403, json={"message": "Must have push access to repository"})
    result = github().poll({"searches": {}}, ["acme"])
    assert isinstance(result.errors[0], FatalError)


@respx.mock
def test_spent_window_headers_make_the_next_search_wait() -> None:
    fake = FakeTime()
    limiter = RateLimiter(None, clock=fake.clock, sleep=fake.sleep, max_wait=600)
    reset = int(datetime.now(UTC).timestamp()) + 40
    respx.get(SEARCH).respond(
        json={"total_count": 0, "items": []},
        headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
    )
    github(limiter).poll({"searches": {}}, ["acme", "other"])
    assert fake.sleeps and 30 <= fake.sleeps[0] <= 40.5


def test_budget_is_30_a_minute_with_a_token_and_10_without() -> None:
    def limiter() -> RateLimiter:
        return RateLimiter(GitHubSource.default_requests_per_minute)

    assert github(limiter()).http.limiter.interval == pytest.approx(6.0)
    assert github(limiter(), token="t").http.limiter.interval == pytest.approx(2.0)
    # A budget the config set explicitly is kept.
    assert github(RateLimiter(5), token="t").http.limiter.interval == pytest.approx(12.0)


# -- discussions (GraphQL) ---------------------------------------------------------------


def discussion(i: int, created: str = "2024-03-01T10:00:00Z") -> dict[str, Any]:
    return {
        "id": f"D_kwDOtest{i}",
        "number": i,
        "title": f"Acme question {i}",
        "body": "Does **acme** work offline?",
        "url": f"https://github.com/acme/app/discussions/{i}",
        "createdAt": created,
        "author": {"login": f"user{i}"},
        "repository": {"nameWithOwner": "acme/app"},
    }


def test_discussions_need_a_token() -> None:
    with pytest.raises(ValueError, match="token"):
        github(kinds=["discussions"])


@respx.mock
def test_discussions_search_pages_with_end_cursor() -> None:
    bodies: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        after = body["variables"]["after"]
        if after is None:
            page, info = [discussion(2), discussion(1)], {"hasNextPage": True, "endCursor": "Y1"}
        else:
            page, info = [discussion(0), {"id": "D_broken"}], {"hasNextPage": False}
        search = {"discussionCount": 4, "pageInfo": info, "nodes": page}
        return httpx.Response(200, json={"data": {"search": search}})

    route = respx.post(f"{GH}/graphql").mock(side_effect=answer)
    result = github(token="t", kinds=["discussions"]).poll(None, ["acme"])
    assert [m.external_id for m in result.mentions] == ["D_kwDOtest2", "D_kwDOtest1", "D_kwDOtest0"]
    assert result.skipped == 1
    m = result.mentions[0]
    assert m.url == "https://github.com/acme/app/discussions/2" and m.site == "acme/app"
    assert m.author == "user2" and m.title == "Acme question 2"
    assert route.calls[0].request.headers["authorization"] == "Bearer t"
    assert "type: DISCUSSION" in bodies[0]["query"]
    assert bodies[0]["variables"]["q"].endswith("sort:created-desc")
    assert bodies[1]["variables"]["after"] == "Y1"
    assert result.cursor["searches"]["discussions:acme"]["ids"] == [
        "D_kwDOtest0",
        "D_kwDOtest1",
        "D_kwDOtest2",
    ]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"type": "RATE_LIMITED", "message": "API rate limit exceeded"}, RateLimitedError),
        ({"type": "FORBIDDEN", "message": "Resource not accessible"}, FatalError),
        ({"message": "Something went wrong"}, BadPayloadError),
    ],
)
@respx.mock
def test_graphql_errors_in_a_200(error: dict[str, str], expected: type) -> None:
    respx.post(f"{GH}/graphql").respond(json={"data": None, "errors": [error]})
    result = github(token="t", kinds=["discussions"]).poll({"searches": {}}, ["acme"])
    assert isinstance(result.errors[0], expected)
    assert result.cursor == {"searches": {}}
