"""Bad input found by fuzzing (issue 15): one bad item, header or link never fails a poll.

Each test serves a real capture (``tests/fixtures/real``) with one defect put in, drives
the source's real poll, and checks that the defect is a logged, counted skip (or a clean
``SourceError`` where the whole page is at fault), that the rest is kept and that the
cursor moves. Secrets and causes in errors, and the silent-source notice, are here too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx
from sqlmodel import Session, select

from earshot.config.logs import JsonFormatter, RedactSecrets
from earshot.listener.models import Delivery, Label, Mention
from earshot.listener.pipeline import Pipeline
from earshot.listener.query import QuerySet
from earshot.listener.redaction import Redactor
from earshot.listener.routing import Router
from earshot.listener.sentiment import SentimentResult
from earshot.listener.sources import HackerNewsSource, RateLimiter, SourceHttp
from earshot.listener.sources.base import (
    MAX_WAIT_HINT,
    BadPayloadError,
    FatalError,
    RateLimitedError,
    RetriableError,
    Source,
    reset_seconds,
)
from earshot.listener.sources.bluesky import BlueskySource
from earshot.listener.sources.github import GitHubSource
from earshot.listener.sources.stackexchange import StackExchangeSource
from earshot.listener.store import Store

from .contract import OLD, REAL, FakeTime, Serve, SourceCase, load_fixture, make_http, serving
from .test_source_contract import ALERTS, CASES, GH, GH_SEARCH, SE, SE_SEARCH, ServeFeed

CASE = {case.id: case for case in CASES}
HN = "https://hn.test/api/v1"


def with_body(case: SourceCase, fixture: str, change: Callable[[Any], Any]) -> list[Serve]:
    """``case.pages`` with the one serving ``fixture`` answering ``change(body)`` instead."""
    pages = []
    for serve in case.pages:
        if serve.fixture == fixture:
            body = load_fixture(fixture)
            serve = dataclasses.replace(serve, fixture=None, json=change(body) or body)
        pages.append(serve)
    assert pages != list(case.pages), f"{case}: no page serves {fixture}"
    return pages


def poll(case: SourceCase, pages: list[Serve], cursor: Any = None) -> Any:
    source = case.build(make_http())
    with serving(case, pages):
        return source.poll(cursor, case.terms)


def set_first(
    key: str, value: Any, *, under: str | None = None, path: str = "", index: int = 0
) -> Any:
    """A change that sets ``key`` of item ``index`` of the list at ``path`` (dotted)."""

    def change(body: Any) -> Any:
        items = body
        for part in filter(None, path.split(".")):
            items = items[part]
        item = items[index]
        if under:
            item = item[under]
        item[key] = value
        return body

    return change


# -- 1. one bad item is a counted skip ----------------------------------------------------

OUT_OF_RANGE = {
    # from_iso raised OverflowError on these, and the callers caught only ValueError.
    "mastodon": (
        "mastodon/timelines_tag_page2_max_id.json",
        # The oldest status of the page (the newest one's id carries the paging on).
        lambda b: set_first("created_at", "0001-01-01T00:00:00+05:00", index=-1)(b),
    ),
    "bluesky": (
        "bluesky/searchPosts_q_redistricting.json",
        lambda b: set_first("indexedAt", "9999-12-31T23:59:59-05:00", path="posts")(b),
    ),
    "github": (
        "github/search_issues.json",
        lambda b: set_first("created_at", "9999-12-31T23:59:59-05:00", path="items")(b),
    ),
    "discourse": (
        "discourse/posts_latest.json",
        lambda b: set_first("created_at", "0001-01-01T00:00:00+01:00", path="latest_posts")(b),
    ),
    "appstore": (
        "appstore/customerreviews_us_id284815942_json.json",
        lambda b: set_first("updated", {"label": "0001-01-01T00:00:00+01:00"}, path="feed.entry")(
            b
        ),
    ),
}


@pytest.mark.parametrize("source", list(OUT_OF_RANGE))
def test_a_time_out_of_range_skips_that_item_only(
    source: str, caplog: pytest.LogCaptureFixture
) -> None:
    case = CASE[source]
    fixture, change = OUT_OF_RANGE[source]
    with caplog.at_level(logging.WARNING, "earshot.listener.sources"):
        result = poll(case, with_body(case, fixture, change))
    assert result.errors == []
    assert result.skipped == 1
    assert len(result.mentions) == case.count - 1
    assert json.loads(json.dumps(result.cursor, allow_nan=False)) == result.cursor
    assert result.cursor != poll(case, list(case.empty)).cursor, "the cursor moved"
    assert "skipped a malformed item" in caplog.text


def test_a_far_future_item_does_not_carry_the_cursor_past_everything() -> None:
    # Year 9999 in UTC parses fine; stored, it made the next search start in 9999.
    case = CASE["github"]
    pages = with_body(
        case,
        "github/search_issues.json",
        set_first("created_at", "9999-12-30T00:00:00Z", path="items"),
    )
    result = poll(case, pages)
    assert result.errors == [] and result.skipped == 1 and len(result.mentions) == 1
    since = result.cursor["searches"]["issues:sesame"]["since"]
    assert since < OLD["clock"]() + 86400


def test_discourse_post_type_of_the_wrong_type_and_an_infinite_topic_id() -> None:
    case = CASE["discourse"]

    def change(body: Any) -> Any:
        body["latest_posts"][0]["post_type"] = [1]  # unhashable: `in NOT_POSTS` raised
        body["latest_posts"][1]["topic_id"] = "__INF__"
        return body

    body = json.dumps(change(load_fixture("discourse/posts_latest.json")))
    content = body.replace('"__INF__"', "1e999").encode()  # JSON reads 1e999 as infinity
    pages = [
        ServeFeed(s.url, content=content) if s.fixture == "discourse/posts_latest.json" else s
        for s in case.pages
    ]
    result = poll(case, pages)
    assert result.errors == []
    assert result.skipped == 2
    assert len(result.mentions) == case.count - 2
    assert result.cursor.get("post_id")


def test_a_reddit_item_with_an_old_time_does_not_hide_the_rest_of_the_page() -> None:
    case = CASE["reddit"]
    pages = with_body(
        case,
        "reddit/r_kakapo_comments_page1.json",
        lambda body: body["data"]["children"][1]["data"].update(created_utc=-1),
    )
    result = poll(case, pages)  # the walk stopped at the second comment, dropping 14
    assert result.errors == [] and len(result.mentions) == case.count - 1


def test_an_rss_entry_with_a_surrogate_reference_does_not_break_the_feed() -> None:
    case = CASE["rss-google-alerts"]
    xml = (REAL / "google_alerts/google_alert_slack.xml").read_bytes()
    xml = xml.replace(b'<title type="html">', b'<title type="html">&#xD800;', 1)
    result = poll(case, [ServeFeed(case.pages[0].url, content=xml)])  # feedparser raised
    assert result.errors == [] and len(result.mentions) == case.count


def test_a_long_rss_id_is_a_digest_and_its_old_cut_form_still_counts_as_seen() -> None:
    case = CASE["rss-google-alerts"]
    xml = (REAL / "google_alerts/google_alert_slack.xml").read_bytes()
    long_id = "tag:example.test,2024:" + "x" * 300
    old = b"<id>tag:google.com,2013:googlealerts/feed:8974135267215335962</id>"
    assert old in xml
    xml = xml.replace(old, f"<id>{long_id}</id>".encode(), 1)
    pages = [ServeFeed(case.pages[0].url, content=xml)]
    first = poll(case, pages)
    (entry,) = [m for m in first.mentions if m.raw["id"] == long_id]
    assert entry.external_id.startswith("sha256:") and len(entry.external_id) <= 255
    # A cursor written when ids were cut at 255: the entry is not new again.
    cursor = {"feeds": {ALERTS: {"seen": [long_id[:255]]}}}
    again = poll(case, pages, cursor)
    assert long_id not in {m.raw["id"] for m in again.mentions}
    assert len(again.mentions) == case.count - 1


def test_an_rss_entry_with_a_broken_link_is_kept_with_the_feed_link() -> None:
    case = CASE["rss-google-alerts"]
    xml = (REAL / "google_alerts/google_alert_slack.xml").read_bytes()
    first = b'<link href="https://www.google.com/url?'
    assert first in xml
    # The first entry's link: urlsplit raised ValueError out of the poll.
    xml = xml.replace(first, b'<link href="http://[::1/" data-was="', 1)
    result = poll(case, [ServeFeed(case.pages[0].url, content=xml)])
    assert result.errors == [] and result.skipped == 0
    assert len(result.mentions) == case.count
    broken = [m for m in result.mentions if m.raw["link"] == "http://[::1/"]
    assert len(broken) == 1 and broken[0].url == ALERTS


class Stub:
    def classify(self, text: str, rating: int | None = None, language: str | None = None) -> Any:
        return SentimentResult(Label.NEGATIVE, -0.5, ("stub",))


def pipeline(store: Store, **kwargs: Any) -> Pipeline:
    return Pipeline(
        store,
        QuerySet(["apple"]),
        Stub(),  # type: ignore[arg-type]
        Router("#cx-alerts", None),
        **kwargs,
    )


def hn_source() -> HackerNewsSource:
    return HackerNewsSource(make_http(), base_url=HN, **OLD)


def hn_page(*changes: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    (story,) = load_fixture("hn_algolia/search_by_date_story_query_apple.json")["hits"]
    hits = [dict(story, objectID=f"{story['objectID']}{i}") for i in range(4)]
    for change, hit in zip(changes, hits, strict=False):
        change(hit)
    return {"hits": hits, "nbHits": len(hits), "nbPages": 1, "page": 0}


BAD_IDS: dict[str, Callable[[dict[str, Any]], None]] = {
    # SQLite refuses to encode a lone surrogate; PostgreSQL refuses NUL and 256+ characters
    # in a VARCHAR(255), and Infinity in a json column. Each failed the whole ingest.
    "lone-surrogate": lambda hit: hit.update(objectID="42\ud800"),
    "nul": lambda hit: hit.update(objectID="42\x00"),
    "too-long": lambda hit: hit.update(objectID="4" * 256),
    "infinity-in-raw": lambda hit: hit.update(points=math.inf),
}


@pytest.mark.parametrize("bad", list(BAD_IDS))
def test_an_item_the_database_refuses_is_skipped_and_the_rest_stored(
    store: Store, bad: str
) -> None:
    page = hn_page(BAD_IDS[bad])
    with respx.mock(assert_all_mocked=True) as router:
        router.get(url__regex=rf"{HN}/search_by_date").respond(
            200, content=json.dumps(page).encode()
        )
        report = pipeline(store).poll(hn_source(), force=True)
    assert report.errors == []
    expected = len(page["hits"]) - (0 if bad == "infinity-in-raw" else 1)
    assert report.stored == expected
    assert report.skipped == len(page["hits"]) - expected
    cursor = store.get_cursor("hackernews")
    assert cursor and cursor["terms"]["apple"] > 0
    if bad == "infinity-in-raw":
        with Session(store.engine) as session:
            first = page["hits"][0]["objectID"]
            stored = session.exec(select(Mention).where(Mention.external_id == first)).first()
            assert stored is not None and stored.raw["points"] is None


def test_two_long_ids_with_one_start_get_an_alert_each(store: Store) -> None:
    # Outbox keys were cut at 255 characters: the second alert's key was the first's.
    page = hn_page(
        lambda hit: hit.update(objectID="7" * 250 + "a"),
        lambda hit: hit.update(objectID="7" * 250 + "b"),
    )
    with respx.mock(assert_all_mocked=True) as router:
        router.get(url__regex=rf"{HN}/search_by_date").respond(200, json=page)
        report = pipeline(store).poll(hn_source(), force=True)
    assert report.stored == 4 and report.queued == 4
    with Session(store.engine) as session:
        keys = [row.idempotency_key for row in session.exec(select(Delivery)).all()]
    assert len(set(keys)) == 4 and all(len(key) <= 255 for key in keys)


# -- hostile headers and API pauses -------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+05:00",  # OverflowError out of from_iso
        "9999-12-31T23:59:59-05:00",
        "1e400",
        "9" * 400,
        "nan",
        "-5",
        "",
        "\u00e9t\u00e9",
    ],
)
def test_reset_headers_never_raise_and_never_block_for_long(value: str) -> None:
    seconds = reset_seconds({"x-ratelimit-reset": value}, now=1_700_000_000)
    assert seconds is None or 0 <= seconds <= MAX_WAIT_HINT


def test_a_mastodon_reset_header_out_of_range_does_not_fail_the_poll() -> None:
    case = CASE["mastodon"]
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "0001-01-01T00:00:00+05:00"}
    source = case.build(make_http())
    with serving(case, case.pages, headers=headers):
        result = source.poll(None, case.terms)
    assert result.errors == [] and len(result.mentions) == case.count


def test_a_reset_far_away_blocks_a_day_at_most() -> None:
    fake = FakeTime()
    limiter = RateLimiter(None, clock=fake.clock, sleep=fake.sleep, max_wait=60)
    # An epoch reset in the year 33658: it blocked the source for that long, in process.
    limiter.observe({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1e12"})
    with pytest.raises(RateLimitedError) as raised:
        limiter.acquire()
    assert raised.value.retry_after is not None and raised.value.retry_after <= MAX_WAIT_HINT
    fake.now += MAX_WAIT_HINT + 1
    limiter.acquire()  # a day later the source may call again


def se_source() -> StackExchangeSource:
    return CASE["stackexchange"].build(make_http())  # type: ignore[return-value]


def se_page(backoff: str) -> bytes:
    body = json.dumps(load_fixture("stackexchange/search_advanced_q_something_missing.json"))
    return (body[:-1] + f', "backoff": {backoff}}}').encode()


@pytest.mark.parametrize("backoff", ["9" * 400, "1e400"])
def test_a_stack_exchange_backoff_out_of_range_is_ignored(backoff: str) -> None:
    source = se_source()
    with respx.mock(assert_all_mocked=True) as router:
        router.get(url__regex=SE_SEARCH).respond(200, content=se_page(backoff))
        result = source.poll(None, ["something missing"])
    assert result.errors == [] and len(result.mentions) == CASE["stackexchange"].count
    # Infinity in the cursor (json writes it, and reads it back) held the source for ever.
    json.dumps(result.cursor, allow_nan=False)
    assert "backoff_until" not in result.cursor


def test_a_stored_infinite_backoff_does_not_hold_the_source_for_ever() -> None:
    source = se_source()
    with respx.mock(assert_all_mocked=True) as router:
        router.get(url__regex=SE_SEARCH).respond(200, content=se_page("0"))
        result = source.poll({"backoff_until": math.inf}, ["something missing"])
    assert result.errors == [] and len(result.mentions) == CASE["stackexchange"].count


# -- 2. pagination links ------------------------------------------------------------------

TOKEN = "ghp_S3cretTokenValue1234567890abcdef"


@pytest.mark.parametrize(
    "link",
    [
        "https://evil.test/search/issues?page=2",  # another host would get the token
        "http://gh.test/search/issues?page=2",  # another scheme
        "https://gh.test:8443/search/issues?page=2",  # another port
        "http://[::1",  # InvalidURL escaped the poll
        "/search/issues?page=2",  # relative
    ],
)
def test_github_follows_next_links_only_on_its_api(link: str) -> None:
    source = GitHubSource(make_http(), base_url=GH, token=TOKEN, **OLD)
    with respx.mock(assert_all_mocked=False, assert_all_called=False) as router:
        api = router.get(url__regex=GH_SEARCH).respond(
            200,
            json=load_fixture("github/search_issues.json"),
            headers={"Link": f'<{link}>; rel="next"'},
        )
        elsewhere = router.route().respond(200, json={"items": []})
        result = source.poll(None, ["sesame"])
    assert api.call_count == 1 and not elsewhere.called, "no request but to the API"
    assert len(result.errors) == 1 and isinstance(result.errors[0], BadPayloadError)
    assert "pagination link" in str(result.errors[0])
    assert len(result.mentions) == 2  # the first page is kept; the term's cursor stays
    assert "issues:sesame" not in result.cursor["searches"]


def test_github_follows_a_next_link_on_its_own_api() -> None:
    source = GitHubSource(make_http(), base_url=GH, token=TOKEN, **OLD)
    with respx.mock(assert_all_mocked=True) as router:
        page2 = router.get(url__regex=r"gh\.test/search/issues\?page=2$").respond(
            200, json={"total_count": 2, "incomplete_results": False, "items": []}
        )
        router.get(url__regex=GH_SEARCH).respond(
            200,
            json=load_fixture("github/search_issues.json"),
            headers={"Link": f'<{GH}/search/issues?page=2>; rel="next"'},
        )
        result = source.poll(None, ["sesame"])
    assert result.errors == [] and page2.called
    assert page2.calls[0].request.headers["authorization"] == f"Bearer {TOKEN}"


# -- 3. secrets ---------------------------------------------------------------------------

SE_KEY = "U4DMV*8nvpm3EOpvf69Rxw(("
APP_PASSWORD = "abcd-efgh-ijkl-mnop"


def echoed(body: str, status: int = 401) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, text=body)


def all_forms_absent(text: str, secret: str) -> None:
    from urllib.parse import quote, quote_plus

    for form in {secret, quote(secret, safe=""), quote_plus(secret), quote(secret).lower()}:
        assert form not in text, f"{form!r} in {text!r}"
    # Nor a telling part of it (an error snippet cut in the middle of the secret).
    for start in range(0, len(secret) - 8):
        assert secret[start : start + 9] not in text, f"part of the secret in {text!r}"


def fail_once(source: Source, answer: Callable[[httpx.Request], httpx.Response]) -> Any:
    with respx.mock(assert_all_mocked=False) as router:
        router.route().mock(side_effect=answer)
        return source.poll(None, ["acme"])


def test_an_echoed_authorization_header_is_not_in_the_error() -> None:
    source = GitHubSource(make_http(), base_url=GH, token=TOKEN, **OLD)
    result = fail_once(source, echoed(f"Bad credentials. You sent: Authorization: Bearer {TOKEN}"))
    (error,) = result.errors
    assert isinstance(error, FatalError) and "Bad credentials" in str(error)
    all_forms_absent(str(error), TOKEN)


def test_a_secret_cut_by_the_snippet_is_not_half_shown() -> None:
    source = GitHubSource(make_http(), base_url=GH, token=TOKEN, **OLD)
    result = fail_once(source, echoed("x" * 190 + " " + TOKEN))
    all_forms_absent(str(result.errors[0]), TOKEN)


def test_an_echoed_bluesky_login_body_is_not_in_the_error() -> None:
    source = BlueskySource(
        make_http(), base_url="https://bsky.test", handle="me.test", app_password=APP_PASSWORD
    )
    body = json.dumps({"error": "AuthFactorTokenRequired", "got": {"password": APP_PASSWORD}})
    result = fail_once(source, echoed(body, 400))
    all_forms_absent(str(result.errors[0]), APP_PASSWORD)


def test_an_encoded_key_in_a_cannot_get_page_is_not_in_the_error() -> None:
    source = StackExchangeSource(make_http(), base_url=SE, api_key=SE_KEY, **OLD)

    def answer(request: httpx.Request) -> httpx.Response:
        # What an Express proxy answers: the request line, query string and all.
        html = f"<pre>Cannot GET {request.url.raw_path.decode()}</pre>"
        return httpx.Response(404, text=html)

    result = fail_once(source, answer)
    assert "Cannot GET" in str(result.errors[0])
    all_forms_absent(str(result.errors[0]), SE_KEY)


def test_the_health_alert_does_not_carry_the_token(store: Store) -> None:
    source = GitHubSource(make_http(), base_url=GH, token=TOKEN, **OLD)
    with respx.mock(assert_all_mocked=True) as router:
        router.route().mock(side_effect=echoed(f"proxy: GET /search?q=x token={TOKEN}", 502))
        pipeline(store, health_channel="#ops", failing_after=1).poll(source, force=True)
    with Session(store.engine) as session:
        (alert,) = session.exec(select(Delivery).where(Delivery.kind == "health")).all()
    text = json.dumps(alert.payload)
    assert "Last error" in text and "502" in text
    all_forms_absent(text, TOKEN)


@pytest.mark.parametrize(
    "message",
    [
        f"GET /2.3/search/advanced?site=so&key={SE_KEY}",
        "GET /2.3/search/advanced?site=so&key=U4DMV%2A8nvpm3EOpvf69Rxw%28%28",
        "GET /2.3/search/advanced?site=so&key=U4DMV%2a8nvpm3EOpvf69Rxw%28%28",
        "GET /2.3/search/advanced?site=so&key=U4DMV*8nvpm3EOpvf69Rxw%28%28&page=2",
        'login body: {"identifier": "me", "password": "abcd-efgh-ijkl-mnop"}',
    ],
)
def test_the_log_filter_masks_every_form_of_a_secret(message: str) -> None:
    import io

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets([SE_KEY, APP_PASSWORD]))
    log = logging.getLogger("earshot.test.redact.forms")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("request failed: %s", message)
    finally:
        log.removeHandler(handler)
    output = json.loads(stream.getvalue())["message"]
    assert "***" in output
    for secret in (SE_KEY, APP_PASSWORD):
        all_forms_absent(output, secret)
    assert "abcd" not in output and "U4DMV" not in output


def test_a_credential_in_a_known_place_is_masked_even_when_unknown() -> None:
    redactor = Redactor()
    text = redactor.redact(
        'Authorization: Bearer zzUnknownToken123 then ?key=abcdefgh&x=1 "accessJwt": "eyJ.x.y"'
    )
    assert "zzUnknownToken123" not in text and "abcdefgh" not in text and "eyJ" not in text
    assert "x=1" in text


# -- 4. causes ----------------------------------------------------------------------------


def refuse(request: httpx.Request) -> httpx.Response:
    try:
        raise OSError(-2, "Name or service not known")
    except OSError as cause:
        raise httpx.ConnectError("", request=request) from cause


def test_a_connection_error_keeps_its_cause(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    source = HackerNewsSource(
        SourceHttp(httpx.Client(transport=httpx.MockTransport(refuse))), base_url=HN, **OLD
    )
    with caplog.at_level(logging.DEBUG):
        pipeline(store, health_channel="#ops", failing_after=1).poll(source, force=True)
    assert "Name or service not known" in caplog.text
    with Session(store.engine) as session:
        (alert,) = session.exec(select(Delivery).where(Delivery.kind == "health")).all()
    assert "Name or service not known" in json.dumps(alert.payload)
    assert "ConnectError" in json.dumps(alert.payload)


def test_a_plain_connect_error_message_is_kept() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)

    http = SourceHttp(httpx.Client(transport=httpx.MockTransport(answer)))
    with pytest.raises(RetriableError) as raised:
        http.get(f"{HN}/search_by_date?query=x&key=1")
    assert str(raised.value) == (
        f"ConnectError: GET {HN}/search_by_date: [Errno -2] Name or service not known"
    )


# -- 5. a silent source -------------------------------------------------------------------


class Wall:
    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


EMPTY = {"hits": [], "nbHits": 0, "nbPages": 0, "page": 0}


def health_rows(store: Store) -> list[Delivery]:
    with Session(store.engine) as session:
        rows = session.exec(select(Delivery).where(Delivery.kind == "health")).all()
        return sorted(rows, key=lambda r: r.id or 0)


@pytest.fixture
def hn_api() -> Iterator[respx.Route]:
    with respx.mock(assert_all_mocked=True) as router:
        yield router.get(url__regex=rf"{HN}/search_by_date")


def test_a_silent_source_raises_one_notice_and_one_when_it_speaks_again(
    store: Store, hn_api: respx.Route
) -> None:
    wall = Wall()
    pipe = pipeline(store, health_channel="#ops", silent_after=3 * 86400, wall_clock=wall)
    source = hn_source()
    hn_api.respond(200, json=hn_page())
    assert pipe.poll(source, force=True).fetched > 0
    hn_api.respond(200, json=EMPTY)
    for hours in (24, 24, 23):
        wall.now += hours * 3600
        assert pipe.poll(source, force=True).ok
    assert health_rows(store) == []
    wall.now += 2 * 3600  # 73 hours without a new item
    pipe.poll(source, force=True)
    wall.now += 3600
    pipe.poll(source, force=True)
    (notice,) = health_rows(store)
    assert notice.payload["title"] == "Source hackernews: no new items for 3 days"
    page = hn_page()
    page["hits"] = [dict(hit, objectID=f"new{i}") for i, hit in enumerate(page["hits"])]
    hn_api.respond(200, json=page)
    pipe.poll(source, force=True)
    notice, recovered = health_rows(store)
    assert recovered.payload["title"] == "Source hackernews has new items again"


def test_a_source_whose_items_come_weekly_is_not_silent_once_its_gap_is_known(
    store: Store, hn_api: respx.Route
) -> None:
    wall = Wall()
    pipe = pipeline(store, health_channel="#ops", silent_after=3 * 86400, wall_clock=wall)
    source = hn_source()
    titles: list[list[str]] = []
    for week in range(4):
        page = hn_page()
        page["hits"] = [dict(h, objectID=f"w{week}-{i}") for i, h in enumerate(page["hits"])]
        hn_api.respond(200, json=page)
        pipe.poll(source, force=True)
        hn_api.respond(200, json=EMPTY)
        for _ in range(6):
            wall.now += 86400
            pipe.poll(source, force=True)
        wall.now += 86400
        titles.append([row.payload["title"] for row in health_rows(store)])
    # The first week has no gap to go by (3 days is the rule); from then on, a week is usual.
    assert titles[0] == ["Source hackernews: no new items for 3 days"]
    assert titles[-1] == [*titles[0], "Source hackernews has new items again"]


def test_silent_after_is_a_setting() -> None:
    from earshot.config.settings import parse_settings

    base: dict[str, Any] = {
        "product": {"name": "Acme", "queries": ["acme"]},
        "sources": [{"type": "hackernews"}],
    }
    assert parse_settings(base).slack.silent_after == 3 * 86400
    assert parse_settings({**base, "slack": {"silent_after": "12h"}}).slack.silent_after == 43200
    assert parse_settings({**base, "slack": {"silent_after": 0}}).slack.silent_after == 0
