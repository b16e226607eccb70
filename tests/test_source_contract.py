"""The source contract: every source, on its real fixtures, through the same tests.

To add a source, append a ``SourceCase`` to ``CASES`` (see ``tests/contract.py``). The
source-specific behaviour (paging through bursts, per-unit failures, quirks) stays in the
source's own test module.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from earshot.listener.sources import (
    AppStoreSource,
    BadPayloadError,
    FatalError,
    HackerNewsSource,
    RateLimitedError,
    RateLimiter,
    RedditSource,
    RetriableError,
    SourceError,
)
from earshot.listener.sources.appstoreconnect import AppStoreConnectSource
from earshot.listener.sources.base import Cursor, PollResult, Source
from earshot.listener.sources.bluesky import BlueskySource
from earshot.listener.sources.discourse import DiscourseSource
from earshot.listener.sources.github import GitHubSource, iso
from earshot.listener.sources.googleplay import GooglePlaySource
from earshot.listener.sources.mastodon import MastodonSource
from earshot.listener.sources.rss import RssSource
from earshot.listener.sources.stackexchange import StackExchangeSource

from .contract import (
    OLD,
    REAL,
    CursorCheck,
    FakeTime,
    Serve,
    SourceCase,
    data_requests,
    failing,
    load_fixture,
    make_http,
    param_shows,
    serving,
)
from .fakestores import ec_key, pem, rsa_key, service_account

_TAG = re.compile(r"<[A-Za-z/!][^>]*>")

# -- the declared cases -------------------------------------------------------------------

HN = "https://hn.test/api/v1"
HN_EMPTY = {"hits": [], "page": 0, "nbPages": 0, "nbHits": 0, "hitsPerPage": 100}

REDDIT = "https://reddit.test"

APPLE = "https://apple.test"
APPLE_FEED = r"apple\.test/us/rss/customerreviews/page=(\d+)/id=284815942/sortby=mostrecent/json"


def _appstore_stops_at_known(cursor: Cursor, requests: Sequence[httpx.Request]) -> bool:
    # The feed takes no cursor parameter: the stored ``updated`` time stops the paging at
    # the first page that holds a known review (a first poll reads page 2 as well).
    pages = [re.search(APPLE_FEED, str(r.url)) for r in requests]
    return [m.group(1) if m else None for m in pages] == ["1"]


MASTODON = "https://mastodon.test"
TAG = "fgiztsshwiaqqiztpmmjbtvmescsculuvmgjgopwoeidbcrixp"
TAG_URL = rf"mastodon\.test/api/v1/timelines/tag/{TAG}\?"

BSKY = "https://bsky.test"
BSKY_SEARCH = r"bsky\.test/xrpc/app\.bsky\.feed\.searchPosts\?"
BSKY_LOGIN = Serve(
    r"bsky\.test/xrpc/com\.atproto\.server\.createSession$",
    json={
        "did": "did:plc:earshot",
        "handle": "earshot.test",
        "accessJwt": "A1",
        "refreshJwt": "R1",
    },
    method="POST",
)

SE = "https://se.test/2.3"
SE_SEARCH = r"se\.test/2\.3/search/advanced\?"
SE_EMPTY = {"items": [], "has_more": False, "quota_max": 300, "quota_remaining": 246}


def _iso_in(seconds: float, now: float) -> str:
    return datetime.fromtimestamp(now + seconds, UTC).isoformat().replace("+00:00", "Z")


GH = "https://gh.test"
GH_SEARCH = r"gh\.test/search/issues\?"
#: The recorded headers (name/value pairs), without the transport ones.
GH_HEADERS = {
    name: value
    for name, value in load_fixture("github/search_issues.headers.json")["headers"]
    if name.lower() not in ("content-length", "connection")
}
GH_EMPTY = {"total_count": 0, "incomplete_results": False, "items": []}
GH_REPO = "octokit-fixture-org/tmp-scenario-search-issues-20220719044045959-jlcli"


def _github_searches_from(cursor: Cursor, requests: Sequence[httpx.Request]) -> bool:
    since = iso(cursor["searches"]["issues:sesame"]["since"])
    return any(f"created:>={since}" in r.url.params.get("q", "") for r in requests)


FORUM = "https://forum.test"
FORUM_POSTS = r"forum\.test/posts\.json"


def _discourse_stops_at_known(cursor: Cursor, requests: Sequence[httpx.Request]) -> bool:
    # /posts.json takes no "since": the stored post id stops the paging on the first page
    # (a first poll pages on with before=).
    return [r.url.params.get("before") for r in requests] == [None]


ALERTS = "https://www.google.com/alerts/feeds/04175468913983673025/4428013283581841004"
ALERTS_URL = r"google\.com/alerts/feeds/"
EMPTY_FEED = (
    b'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
    b"<title>Google Alert - Slack</title><updated>2019-07-10T12:00:00Z</updated></feed>"
)


@dataclass(frozen=True)
class ServeFeed(Serve):
    """A feed endpoint: the raw bytes of an XML fixture (``Serve`` answers JSON)."""

    content: bytes | None = None

    def response(self, extra_headers: Mapping[str, str] | None = None) -> httpx.Response:
        body = self.content if self.content is not None else (REAL / str(self.fixture)).read_bytes()
        headers = {"Content-Type": "application/atom+xml; charset=utf-8", **self.header_map()}
        return httpx.Response(
            self.status, content=body, headers={**headers, **(extra_headers or {})}
        )


def _rss_sends_the_etag(cursor: Cursor, requests: Sequence[httpx.Request]) -> bool:
    etag = cursor["feeds"][ALERTS]["etag"]
    return any(r.headers.get("if-none-match") == etag for r in requests)


ASC = "https://api.appstoreconnect.apple.com"
ASC_REVIEWS = r"api\.appstoreconnect\.apple\.com/v1/apps/682658836/customerReviews\?"
#: Test-time keys (no real key is committed): an App Store Connect key, a service account.
ASC_CREDENTIALS = {
    "key_id": "2X9R4HXF34",
    "issuer_id": "57246542-96fe-1a63-e053-0824d011072a",
    "private_key": pem(ec_key()),
}
PLAY_ACCOUNT = json.dumps(service_account(rsa_key()))
PLAY_REVIEWS = (
    r"androidpublisher\.googleapis\.com/androidpublisher/v3/applications/com\.acme\.notes/reviews\?"
)
PLAY_TOKEN = Serve(
    r"oauth2\.googleapis\.com/token$",
    json={"access_token": "ya29.contract-token", "expires_in": 3599, "token_type": "Bearer"},
    method="POST",
)


def _first_page_only(param: str) -> CursorCheck:
    # The review APIs take no "since": the stored newest review stops the paging on the
    # first page (a first poll pages on with the next link or token).
    def check(cursor: Cursor, requests: Sequence[httpx.Request]) -> bool:
        return [r.url.params.get(param) for r in requests] == [None]

    return check


CASES: list[SourceCase] = [
    SourceCase(
        id="hackernews",
        build=lambda http: HackerNewsSource(http, base_url=HN, **OLD),
        terms=["apple", "applauded"],
        pages=[
            Serve(r"query=apple&.*&page=0$", "hn_algolia/search_by_date_story_query_apple.json"),
            Serve(
                r"query=applauded&.*&page=0$", "hn_algolia/search_by_date_comment_query_apple.json"
            ),
            Serve(r"hn\.test/api/v1/search_by_date", json=HN_EMPTY),
        ],
        empty=[Serve(r"hn\.test/api/v1/search_by_date", json=HN_EMPTY)],
        count=2,
        expect={
            "7919424": {
                "title": "Judge says concerned about Apple, Google hiring settlement",
                "site": "news.ycombinator.com",
            },
            "7919418": {"author": "fleitz", "title": ""},
        },
        cursor_shown=param_shows("numericFilters", lambda c: f"created_at_i>{c['terms']['apple']}"),
    ),
    SourceCase(
        id="reddit",
        build=lambda http: RedditSource(
            http, base_url=REDDIT, subreddits=["kakapo"], listings=["comments"], **OLD
        ),
        pages=[
            Serve(r"reddit\.test/r/kakapo/comments\.json", "reddit/r_kakapo_comments_page1.json")
        ],
        empty=[
            Serve(
                r"reddit\.test/r/kakapo/comments\.json",
                "reddit/r_kakapo_comments_before_cursor_empty.json",
            )
        ],
        count=16,
        expect={"t1_dgauydy": {"author": "butt_woman", "text": "i lick it", "site": "kakapo"}},
        cursor_shown=param_shows("before", lambda c: c["listings"]["kakapo/comments"]["name"]),
        ratelimit_headers=lambda now: {
            "X-Ratelimit-Used": "100",
            "X-Ratelimit-Remaining": "0.0",
            "X-Ratelimit-Reset": "30",
        },
    ),
    SourceCase(
        id="appstore",
        build=lambda http: AppStoreSource(http, base_url=APPLE, app_id="284815942", **OLD),
        pages=[
            Serve(
                APPLE_FEED.replace(r"(\d+)", "1"),
                "appstore/customerreviews_us_id284815942_json.json",
            ),
            Serve(APPLE_FEED, json={"feed": {"author": {}}}),
        ],
        empty=[Serve(APPLE_FEED, json={"feed": {"author": {}}})],
        count=50,
        expect={
            "8044879566": {"rating": 4, "title": "Usually interesting reading but", "site": "us"}
        },
        cursor_shown=_appstore_stops_at_known,
    ),
    SourceCase(
        id="mastodon",
        build=lambda http: MastodonSource(
            http, base_url=MASTODON, hashtags=[f"#{TAG}"], limit=10, **OLD
        ),
        # Forward with min_id: the older recorded page first, then the newer one, then [].
        # (They were recorded for max_id requests; body and Link headers are the same shape.)
        pages=[
            Serve(
                TAG_URL + r"limit=10&min_id=0$",
                "mastodon/timelines_tag_page2_max_id.json",
                headers="mastodon/timelines_tag_page2_max_id.headers.json",
            ),
            Serve(
                TAG_URL + r"limit=10&min_id=117020581331681768$",
                "mastodon/timelines_tag_page1.json",
                headers="mastodon/timelines_tag_page1.headers.json",
            ),
            Serve(
                TAG_URL,
                "mastodon/timelines_tag_last_page_empty.json",
                headers="mastodon/timelines_tag_last_page_empty.headers.json",
            ),
        ],
        empty=[
            Serve(
                TAG_URL,
                "mastodon/timelines_tag_last_page_empty.json",
                headers="mastodon/timelines_tag_last_page_empty.headers.json",
            )
        ],
        count=20,
        expect={
            "http://localhost:3000/ap/users/117020566092212359/statuses/117020581413876942": {
                "author": "mastodonpy_test_2",
                "site": "mastodon.test",
                "language": "ja",
                "url": "http://localhost:3000/@mastodonpy_test_2/117020581413876942",
                "text": f"Toot number 29! #{TAG}",
            }
        },
        cursor_shown=param_shows("min_id", lambda c: c["hashtags"][TAG]),
        ratelimit_headers=lambda now: {
            "X-RateLimit-Limit": "300",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": _iso_in(30, now),
        },
    ),
    SourceCase(
        id="bluesky",
        build=lambda http: BlueskySource(
            http, base_url=BSKY, handle="earshot.test", app_password="app-pass", **OLD
        ),
        terms=["redistricting"],
        support=[BSKY_LOGIN],
        pages=[
            Serve(BSKY_SEARCH + r".*&cursor=25$", json={"posts": []}),
            Serve(
                BSKY_SEARCH,
                "bluesky/searchPosts_q_redistricting.json",
                headers="bluesky/searchPosts_q_redistricting.headers.json",
            ),
        ],
        empty=[Serve(BSKY_SEARCH, json={"posts": []})],
        count=25,
        expect={
            "at://did:plc:s7savtl25cqhm3ddqc7jeljx/app.bsky.feed.post/3lpk2r5h5ec2j": {
                "author": "cjtackett.bsky.social",
                "url": "https://bsky.app/profile/cjtackett.bsky.social/post/3lpk2r5h5ec2j",
                "language": "en",
                "site": "bsky.app",
            }
        },
        cursor_shown=param_shows("since", lambda c: c["terms"]["redistricting"]["since"]),
        ratelimit_headers=lambda now: {
            "RateLimit-Limit": "3000",
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(int(now) + 30),
            "RateLimit-Policy": "3000;w=300",
        },
    ),
    SourceCase(
        id="stackexchange",
        build=lambda http: StackExchangeSource(http, base_url=SE, sites=["stackoverflow"], **OLD),
        terms=["something missing"],
        pages=[
            Serve(
                SE_SEARCH + r".*&page=1$", "stackexchange/search_advanced_q_something_missing.json"
            ),
            Serve(SE_SEARCH, json=SE_EMPTY),
        ],
        empty=[Serve(SE_SEARCH, json=SE_EMPTY)],
        count=10,
        expect={
            "stackoverflow:31622385": {
                "title": "Upgrading to RSpec 3 and following deprecation notice results in "
                "\"undefined method 'allow'\"",
                "site": "stackoverflow",
            },
            "stackoverflow:16258911": {
                "author": "alexcoco",
                "url": "http://stackoverflow.com/questions/16258911/rails-4-authenticity-token",
            },
        },
        cursor_shown=param_shows(
            "fromdate", lambda c: c["sites"]["stackoverflow"]["something missing"]["from"]
        ),
        # Stack Exchange throttles in the body (backoff, quota: see its own tests); the
        # generic header check still holds because SourceHttp reads headers for everyone.
    ),
    SourceCase(
        id="github",
        build=lambda http: GitHubSource(http, base_url=GH, **OLD),
        terms=["sesame"],
        pages=[Serve(GH_SEARCH, "github/search_issues.json", headers=GH_HEADERS)],
        empty=[Serve(GH_SEARCH, json=GH_EMPTY, headers=GH_HEADERS)],
        count=2,
        expect={
            "1308970076": {
                "author": "octokit-fixture-user-b",
                "site": GH_REPO,
                "title": "Sesame seeds split without a pop!",
                "url": f"https://github.com/{GH_REPO}/issues/2",
            },
            "1308970043": {
                "author": "octokit-fixture-user-a",
                "title": "The doors don\u2019t open",
            },
        },
        cursor_shown=_github_searches_from,
        ratelimit_headers=lambda now: {
            "X-RateLimit-Limit": "30",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(now) + 30),
            "X-RateLimit-Resource": "search",
        },
    ),
    SourceCase(
        id="discourse",
        build=lambda http: DiscourseSource(http, base_url=FORUM, **OLD),
        pages=[
            Serve(FORUM_POSTS + r"\?before=15$", "discourse/posts_before_15.json"),
            Serve(FORUM_POSTS + r"\?before=", json={"latest_posts": []}),
            Serve(FORUM_POSTS + "$", "discourse/posts_latest.json"),
        ],
        empty=[Serve(FORUM_POSTS, json={"latest_posts": []})],
        count=4,
        expect={
            "forum.test:15": {
                "author": "johndoe",
                "text": "holla bullhonky.",
                "url": "https://forum.test/t/this-is-an-uncategorized-title/11/2",
                "title": "",
            },
            "forum.test:14": {"title": "This is an uncategorized title"},
        },
        cursor_shown=_discourse_stops_at_known,
    ),
    SourceCase(
        id="rss-google-alerts",
        build=lambda http: RssSource(http, feeds=[ALERTS], **OLD),
        terms=["slack"],
        pages=[
            ServeFeed(
                ALERTS_URL, "google_alerts/google_alert_slack.xml", headers={"ETag": '"ga-1"'}
            )
        ],
        empty=[ServeFeed(ALERTS_URL, content=EMPTY_FEED)],
        count=20,
        expect={
            "tag:google.com,2013:googlealerts/feed:13685523368333461374": {
                "title": "Slack Stock Has a Compelling Story and the Numbers to Back It Up",
                "url": "https://investorplace.com/2019/07/slack-stock-truly-compelling/",
                "site": "investorplace.com",
            }
        },
        cursor_shown=_rss_sends_the_etag,
        notes="a feed has no cursor parameter: the stored ETag goes back as If-None-Match",
    ),
    SourceCase(
        id="appstoreconnect",
        build=lambda http: AppStoreConnectSource(
            http, base_url=ASC, app_id="682658836", **ASC_CREDENTIALS, **OLD
        ),
        pages=[
            Serve(
                ASC_REVIEWS + r"cursor=AQ\.AMt2C-U",
                "appstoreconnect/customerReviews_page2_include_response.json",
            ),
            Serve(ASC_REVIEWS, "appstoreconnect/customerReviews_limit1.json"),
        ],
        empty=[Serve(ASC_REVIEWS, json={"data": [], "links": {"self": f"{ASC}/v1/apps"}})],
        count=3,
        expect={
            "00000028-b08c-0014-729e-fbd500000000": {
                "author": "Anne Johnson",
                "title": "Awesome!!!",
                "text": "It's a really fantastic app!",
                "site": "USA",
                "rating": 5,
                "status": "new",
            },
            "00000028-b08c-0014-729e-fbd500000001": {"status": "handled", "site": "GBR"},
            "00000028-b08c-0014-729e-fbd500000002": {"status": "new", "rating": 1},
        },
        cursor_shown=_first_page_only("cursor"),
        notes="no since parameter: the stored newest review stops the paging on page 1",
    ),
    SourceCase(
        id="googleplay",
        build=lambda http: GooglePlaySource(
            http, package_name="com.acme.notes", service_account_json=PLAY_ACCOUNT, **OLD
        ),
        support=[PLAY_TOKEN],
        pages=[
            Serve(PLAY_REVIEWS + r".*token=newest-page-2", "googleplay/reviews_list.json"),
            Serve(PLAY_REVIEWS + r".*token=12334566", json={}),
            Serve(PLAY_REVIEWS, "googleplay/reviews_list_newest_page.json"),
        ],
        empty=[Serve(PLAY_REVIEWS, json={})],
        count=4,
        expect={
            "12345678": {"author": "Jane Bloggs", "text": "This is the best app ever!"},
            "11223344": {"status": "handled", "site": "en · v1.2.3 · Sony E5333 (Xperia™ C4 Dual)"},
            "99887766": {
                "title": "Crashes on start",
                "status": "new",
                "rating": 1,
                "url": "https://play.google.com/store/apps/details?id=com.acme.notes"
                "&reviewId=99887766",
            },
        },
        cursor_shown=_first_page_only("token"),
        notes="no since parameter: the stored newest review stops the paging on page 1",
    ),
]

# -- the contract -----------------------------------------------------------------------------

ERRORS = {
    "500": (lambda: httpx.Response(500, text="<html>Internal Server Error</html>"), RetriableError),
    "403": (lambda: httpx.Response(403, json={"message": "Forbidden"}), FatalError),
    "truncated-json": (
        lambda: httpx.Response(200, content=b'{"items": [{"id": "1", "text": "cut o'),
        BadPayloadError,
    ),
}


def first_poll(case: SourceCase, source: Source | None = None) -> tuple[PollResult, Source]:
    """Poll ``case`` once on its fixtures; return the result and the source."""
    made = source if source is not None else case.build(make_http())
    with serving(case, case.pages):
        result = made.poll(None, case.terms)
    assert result.errors == [], f"{case}: the fixtures gave errors: {result.errors}"
    return result, made


@pytest.fixture(params=CASES, ids=str)
def case(request: pytest.FixtureRequest) -> SourceCase:
    return request.param


def test_parses_the_fixtures_into_sound_mentions(case: SourceCase) -> None:
    result, source = first_poll(case)
    mentions = result.mentions
    assert len(mentions) == case.count
    ids = [m.external_id for m in mentions]
    assert len(set(ids)) == len(ids), "one mention per item"
    for m in mentions:
        assert m.external_id and isinstance(m.external_id, str)
        assert m.source == source.type
        assert m.created_at.tzinfo is not None and m.created_at.utcoffset() == timedelta(0)
        assert re.match(r"https?://[^/\s]+", m.url), m.url
        assert not _TAG.search(m.text), f"HTML left in text of {m.external_id}: {m.text!r}"
        assert not _TAG.search(m.title), f"HTML left in title of {m.external_id}"
        assert m.raw is not None
    by_id = {m.external_id: m for m in mentions}
    for external_id, fields in case.expect.items():
        assert external_id in by_id, f"{case}: no mention {external_id!r}"
        for name, value in fields.items():
            assert getattr(by_id[external_id], name) == value, (external_id, name)
    assert result.skipped == 0
    assert result.units >= 1
    assert result.requests >= 1


def test_cursor_round_trips_through_json_and_shows_in_the_next_request(case: SourceCase) -> None:
    result, source = first_poll(case)
    stored = json.loads(json.dumps(result.cursor))
    assert stored == result.cursor and stored, "the cursor is a non-empty JSON document"
    with serving(case, case.pages) as router:
        second = source.poll(stored, case.terms)
        requests = data_requests(case, router)
    assert second.errors == []
    assert requests, "the second poll asked the API"
    assert case.cursor_shown(stored, requests), (
        f"{case}: the stored cursor {stored} is not in the second poll's requests "
        f"{[str(r.url) for r in requests]}"
    )


def test_empty_page_gives_nothing_and_keeps_the_cursor(case: SourceCase) -> None:
    result, source = first_poll(case)
    with serving(case, case.empty):
        second = source.poll(result.cursor, case.terms)
    assert second.errors == []
    assert second.mentions == []
    assert second.cursor == result.cursor


@pytest.mark.parametrize("kind", list(ERRORS))
def test_error_page_is_a_source_error_and_keeps_the_cursor(case: SourceCase, kind: str) -> None:
    respond, expected = ERRORS[kind]
    result, source = first_poll(case)
    before = json.loads(json.dumps(result.cursor))
    with failing(case, respond):
        second = source.poll(before, case.terms)
    assert second.errors, f"{case}: a {kind} answer was not reported"
    for exc in second.errors:
        assert isinstance(exc, SourceError)
        assert isinstance(exc, expected), f"{case}: {kind} gave {type(exc).__name__}: {exc}"
        assert not isinstance(exc, RateLimitedError)
    assert second.mentions == []
    assert second.cursor == before


def test_ratelimit_headers_make_the_next_request_wait(case: SourceCase) -> None:
    fake = FakeTime()
    limiter = RateLimiter(None, clock=fake.clock, sleep=fake.sleep, max_wait=120)
    source = case.build(make_http(limiter))
    with serving(case, case.pages, headers=case.ratelimit_headers(time.time())):
        first = source.poll(None, case.terms)
        assert first.errors == []
        source.poll(first.cursor, case.terms)
    # The spent window (reset in 30 s) made the next request wait for it, on the fake clock.
    assert any(25 <= s <= 30.5 for s in fake.sleeps), fake.sleeps


def test_ratelimit_headers_past_max_wait_raise_rate_limited(case: SourceCase) -> None:
    fake = FakeTime()
    limiter = RateLimiter(None, clock=fake.clock, sleep=fake.sleep, max_wait=5)
    result, source = first_poll(case, case.build(make_http(limiter)))
    with serving(case, case.pages, headers=case.ratelimit_headers(time.time())) as router:
        source.poll(result.cursor, case.terms)
        sent = len(router.calls)
        third = source.poll(result.cursor, case.terms)
        assert len(router.calls) == sent, "no request while the window is spent"
    assert third.errors and isinstance(third.errors[0], RateLimitedError)
    assert third.errors[0].retry_after is not None and 25 <= third.errors[0].retry_after <= 30.5
    assert third.mentions == [] and third.cursor == result.cursor
    assert fake.sleeps == []


def test_429_with_retry_after_is_rate_limited(case: SourceCase) -> None:
    fake = FakeTime()
    limiter = RateLimiter(None, clock=fake.clock, sleep=fake.sleep, max_wait=60)
    result, source = first_poll(case, case.build(make_http(limiter)))
    before = json.loads(json.dumps(result.cursor))
    with failing(case, lambda: httpx.Response(429, headers={"Retry-After": "7"})):
        second = source.poll(before, case.terms)
    assert len(second.errors) == 1, "a 429 stops the poll"
    exc = second.errors[0]
    assert isinstance(exc, RateLimitedError) and exc.retry_after == 7
    assert second.cursor == before
    limiter.acquire()  # the next request waits out the Retry-After
    assert fake.sleeps and fake.sleeps[-1] == pytest.approx(7)
