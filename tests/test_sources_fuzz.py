"""A seeded fuzz of every source's parser over mutated real captures (issue 15).

For each source, the real captured page (``tests/fixtures/real``) is served through
``httpx.MockTransport`` with one item mutated (a key removed, a wrong type, an extreme
number or date, invalid Unicode, a hostile link), or with a hostile header, and the
source's real ``poll`` runs. The whole run is deterministic (``SEED``); set
``EARSHOT_FUZZ_ROUNDS`` for a longer one. For every mutation:

* no exception escapes the poll, and a bad item is not a page error;
* every other item of the page that made a mention still does;
* the mutated item is a sound mention, or a counted skip, or (for the few keys a source
  filters on: a time, a rating) left out by design;
* every mention is storable (id, time, text, raw JSON) and is stored, with the cursor,
  on SQLite and on the real PostgreSQL; the cursor is plain JSON and moves.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from earshot.listener.models import Mention
from earshot.listener.sources.base import (
    MAX_WAIT_HINT,
    PollResult,
    RateLimitedError,
    RateLimiter,
    SourceHttp,
)
from earshot.listener.store import Store

from .contract import REAL, FakeTime, Serve, SourceCase, load_fixture
from .test_source_contract import CASES, ServeFeed

SEED = int(os.environ.get("EARSHOT_FUZZ_SEED", "15"))
ROUNDS = int(os.environ.get("EARSHOT_FUZZ_ROUNDS", "30"))

#: JSON numbers Python cannot write itself: the mutation puts a marker, the body gets these.
RAW_NUMBERS = {"__INF__": "1e999", "__NEG_INF__": "-1e999", "__NAN__": "NaN", "__BIG__": "9" * 400}

HOSTILE: list[Any] = [
    None,
    True,
    0,
    -1,
    2**63,
    10**30,
    "__INF__",
    "__NEG_INF__",
    "__NAN__",
    "__BIG__",
    1e308,
    "",
    " ",
    [],
    {},
    [1, "a"],
    {"label": None},
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00",
    "9999-12-30T00:00:00Z",
    "2024-02-30T00:00:00Z",
    "not a date",
    -62135596801,
    253402300800,
    "\ud800",
    "a\udfff\ud800b",
    "acme\x00nul",
    "\u202e\ufeff\u200b",
    "x" * 300,
    "y" * 20_000,
    "http://[::1/",
    "http://[::1>",
    "javascript:alert(1)",
    "//evil.test/x",
    "at://did:plc:x/app.bsky.feed.post/",
    "<script>alert(1)</script>",
]


def ident_at(*path: str, prefix: str = "") -> Callable[[Any], str | None]:
    def ident(item: Any) -> str | None:
        for key in path:
            item = item.get(key) if isinstance(item, dict) else None
        return f"{prefix}{item}" if isinstance(item, str | int) else None

    return ident


@dataclass
class Target:
    """Where a source's fuzzed items are: the page's fixture, the list in it, their ids."""

    case: str
    fixture: str
    items: tuple[str, ...]
    ident: Callable[[Any], str | None]
    #: Keys whose change may leave the item out without a skip (the source filters on
    #: them by design: a time before the window, a review's rating, a status id).
    filters: frozenset[str] = frozenset()
    headers: dict[str, list[str]] = field(default_factory=dict)
    #: The fields the source reads (dotted); most mutations hit one of them.
    reads: tuple[str, ...] = ()
    #: The reach figures among them (``listener/reach.py``): a bad one never costs the item.
    figures: tuple[str, ...] = ()
    #: Fuzz the first this many items of the page (building a ``Mention`` costs ~1 ms).
    keep: int = 12


TARGETS = [
    Target(
        "hackernews",
        "hn_algolia/search_by_date_story_query_apple.json",
        ("hits",),
        ident_at("objectID"),
        reads=(
            "objectID",
            "created_at_i",
            "title",
            "comment_text",
            "story_text",
            "author",
            "_tags",
            "points",
            "num_comments",
        ),
        figures=(
            "points",
            "num_comments",
        ),
    ),
    Target(
        "reddit",
        "reddit/r_kakapo_comments_page1.json",
        ("data", "children"),
        ident_at("data", "name"),
        frozenset({"created_utc", "name"}),
        {"X-Ratelimit-Reset": ["1e400", "9" * 400, "-5", "nan"]},
        reads=(
            "kind",
            "data",
            "data.name",
            "data.created_utc",
            "data.permalink",
            "data.body",
            "data.author",
            "data.link_permalink",
            "data.score",
            "data.num_comments",
            "data.score_hidden",
        ),
        figures=(
            "data.score",
            "data.num_comments",
            "data.score_hidden",
        ),
    ),
    Target(
        "appstore",
        "appstore/customerreviews_us_id284815942_json.json",
        ("feed", "entry"),
        ident_at("id", "label"),
        # An entry object without "im:rating" is the app's own metadata entry, by design.
        frozenset({"updated", "im:rating", "label", ""}),
        reads=(
            "id",
            "id.label",
            "updated",
            "updated.label",
            "im:rating",
            "im:rating.label",
            "title",
            "content",
            "author",
            "im:voteSum",
            "im:voteSum.label",
            "im:voteCount.label",
        ),
        figures=(
            "im:voteSum",
            "im:voteSum.label",
            "im:voteCount.label",
        ),
    ),
    Target(
        "mastodon",
        "mastodon/timelines_tag_page2_max_id.json",
        (),
        ident_at("uri"),
        frozenset({"id", "created_at"}),
        {
            "X-RateLimit-Reset": ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"],
            "Link": [
                '<http://[::1>; rel="prev"',
                "<>; rel=prev",
                '<https://evil.test/x?min_id=9>; rel="prev"',
            ],
        },
        reads=(
            "id",
            "created_at",
            "uri",
            "url",
            "content",
            "account",
            "account.acct",
            "language",
            "spoiler_text",
            "account.followers_count",
            "reblogs_count",
            "favourites_count",
            "replies_count",
        ),
        figures=(
            "account.followers_count",
            "reblogs_count",
            "favourites_count",
            "replies_count",
        ),
    ),
    Target(
        "bluesky",
        "bluesky/searchPosts_q_redistricting.json",
        ("posts",),
        ident_at("uri"),
        frozenset({"indexedAt", "createdAt"}),
        {"RateLimit-Reset": ["1e18", "9" * 400, "0001-01-01T00:00:00+05:00"]},
        reads=(
            "uri",
            "indexedAt",
            "record",
            "record.createdAt",
            "record.text",
            "record.langs",
            "author",
            "author.handle",
            "author.did",
            "likeCount",
            "repostCount",
            "replyCount",
            "quoteCount",
        ),
        figures=(
            "likeCount",
            "repostCount",
            "replyCount",
            "quoteCount",
        ),
    ),
    Target(
        "stackexchange",
        "stackexchange/search_advanced_q_something_missing.json",
        ("items",),
        ident_at("question_id", prefix="stackoverflow:"),
        frozenset({"creation_date"}),
        reads=(
            "question_id",
            "creation_date",
            "link",
            "title",
            "body",
            "owner",
            "owner.display_name",
            "view_count",
            "score",
            "answer_count",
        ),
        figures=(
            "view_count",
            "score",
            "answer_count",
        ),
    ),
    Target(
        "github",
        "github/search_issues.json",
        ("items",),
        ident_at("id"),
        headers={
            "X-RateLimit-Reset": ["1e12", "9" * 400],
            "Retry-After": ["9" * 400, "Wed, 31 Dec 9999 23:59:59 GMT"],
            "Link": [
                '<https://evil.test/search/issues?page=2>; rel="next"',
                '<http://[::1>; rel="next"',
                '</search/issues?page=2>; rel="next"',
            ],
        },
        reads=(
            "id",
            "created_at",
            "html_url",
            "title",
            "body",
            "user",
            "user.login",
            "repository_url",
            "reactions",
            "reactions.total_count",
            "comments",
        ),
        figures=(
            "reactions",
            "reactions.total_count",
            "comments",
        ),
    ),
    Target(
        "discourse",
        "discourse/posts_latest.json",
        ("latest_posts",),
        ident_at("id", prefix="forum.test:"),
        frozenset({"created_at", "post_type", "id"}),
        reads=(
            "id",
            "created_at",
            "topic_id",
            "post_number",
            "post_type",
            "cooked",
            "topic_slug",
            "username",
            "topic_title",
            "reads",
            "reply_count",
            "actions_summary",
        ),
        figures=(
            "reads",
            "reply_count",
            "actions_summary",
        ),
    ),
    Target(
        "appstoreconnect",
        "appstoreconnect/customerReviews_page2_include_response.json",
        ("data",),
        ident_at("id"),
        frozenset({"createdDate"}),
        reads=(
            "id",
            "type",
            "attributes",
            "attributes.createdDate",
            "attributes.rating",
            "attributes.title",
            "attributes.body",
            "attributes.reviewerNickname",
            "attributes.territory",
            "relationships",
        ),
    ),
    Target(
        "googleplay",
        "googleplay/reviews_list.json",
        ("reviews",),
        ident_at("reviewId"),
        frozenset({"lastModified", "seconds"}),
        reads=(
            "reviewId",
            "authorName",
            "comments",
            "comments.0",
            "comments.0.userComment",
            "comments.0.userComment.text",
            "comments.0.userComment.lastModified",
            "comments.0.userComment.starRating",
        ),
    ),
]
CASE = {case.id: case for case in CASES}
NOW = datetime.now(UTC)


def leaf_paths(item: Any, depth: int = 0) -> list[tuple[str | int, ...]]:
    """Every key path inside ``item`` (dicts and lists, three levels deep)."""
    if depth >= 3 or not isinstance(item, dict | list):
        return []
    paths: list[tuple[str | int, ...]] = []
    children: Any = item.items() if isinstance(item, dict) else enumerate(item)
    for key, value in children:
        paths.append((key,))
        paths.extend((key, *rest) for rest in leaf_paths(value, depth + 1))
    return paths


def mutate(rng: random.Random, item: Any, reads: tuple[str, ...]) -> tuple[Any, str, str]:
    """``item`` with one defect: ``(item, the key changed, a description)``. Most hit a
    field the source reads, the rest any key at all. The description starts with the
    dotted path changed (``"points = ..."``, ``"del points"``)."""
    item = copy.deepcopy(item)
    paths = leaf_paths(item)
    if not paths or rng.random() < 0.04:
        value = rng.choice(HOSTILE)
        return value, "", f"item = {value!r:.60}"
    wanted = [tuple(int(k) if k.isdigit() else k for k in r.split(".")) for r in reads]
    present = [p for p in wanted if p in paths]
    path = rng.choice(present) if present and rng.random() < 0.7 else rng.choice(paths)
    parent = item
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if isinstance(parent, dict) and rng.random() < 0.3:
        del parent[last]
        return item, str(last), f"del {'.'.join(map(str, path))}"
    value = rng.choice(HOSTILE)
    parent[last] = value
    return item, str(last), f"{'.'.join(map(str, path))} = {value!r:.60}"


def encode(body: Any) -> bytes:
    text = json.dumps(body)
    for marker, raw in RAW_NUMBERS.items():
        text = text.replace(f'"{marker}"', raw)
    return text.encode()


def items_of(body: Any, path: tuple[str, ...]) -> list[Any]:
    for key in path:
        body = body[key]
    assert isinstance(body, list)
    return body


def transport(
    case: SourceCase, page: Serve | None, replacement: httpx.Response | None
) -> httpx.MockTransport:
    """The case's API with ``page`` answering ``replacement`` (routes as in the contract);
    without a page, the case's empty answers."""
    pages = case.pages if page is not None else case.empty

    def handle(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        for serve in [*case.support, *pages]:
            if request.method == serve.method and re.search(serve.url, url):
                return replacement if serve is page else serve.response()
        return httpx.Response(404, json={"error": "not served"})

    return httpx.MockTransport(handle)


def run(case: SourceCase, page: Serve | None, replacement: httpx.Response | None) -> PollResult:
    fake = FakeTime()
    limiter = RateLimiter(None, clock=fake.clock, sleep=fake.sleep, max_wait=5)
    http = SourceHttp(httpx.Client(transport=transport(case, page, replacement)), limiter)
    source = case.build(http)
    return source.poll(None, case.terms)


def page_of(case: SourceCase, fixture: str) -> Serve:
    (page,) = [serve for serve in case.pages if serve.fixture == fixture]
    return page


def respond(page: Serve, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    recorded = page.header_map()
    merged = {**recorded, **(headers or {}), "content-type": "application/json"}
    return httpx.Response(page.status, content=body, headers=merged)


def assert_sound(mention: Mention) -> None:
    """What the database and the alert need of a mention."""
    external_id = mention.external_id
    assert isinstance(external_id, str) and 0 < len(external_id) <= 255
    assert "\x00" not in external_id
    external_id.encode("utf-8")
    assert mention.created_at.tzinfo is not None
    assert mention.created_at <= NOW + timedelta(days=2)
    for name in ("url", "author", "site", "title", "text"):
        value = getattr(mention, name)
        assert isinstance(value, str) and "\x00" not in value
        value.encode("utf-8")
    json.dumps(mention.raw, allow_nan=False).encode("utf-8")


def ids(result: PollResult) -> set[str]:
    return {m.external_id for m in result.mentions}


@pytest.fixture(scope="module")
def stores(postgres_schema_url: str) -> Iterator[list[Store]]:
    """Where every fuzzed poll is stored: an in-memory SQLite and the real PostgreSQL."""
    from sqlmodel import SQLModel

    made = [Store.from_url("sqlite://"), Store.from_url(postgres_schema_url)]
    for store in made:
        SQLModel.metadata.drop_all(store.engine)
        store.create_schema()
    yield made
    for store in made:
        store.engine.dispose()


def store_all(stores: list[Store], result: PollResult, key: str) -> None:
    for store in stores:
        outcome = store.ingest(key, result.mentions, result.cursor, lambda m: [])
        assert len(outcome.stored) + outcome.duplicates == len(result.mentions)
        assert store.get_cursor(key) == json.loads(json.dumps(result.cursor))


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.case)
def test_fuzzed_items_never_fail_a_poll(target: Target, stores: list[Store]) -> None:
    case = CASE[target.case]
    page = page_of(case, target.fixture)
    clean_body = load_fixture(target.fixture)
    del items_of(clean_body, target.items)[target.keep :]
    clean = run(case, page, respond(page, encode(clean_body)))
    assert clean.errors == [] and clean.skipped == 0
    empty_cursor = run(case, None, None).cursor  # the cursor of a poll that read nothing
    items = items_of(clean_body, target.items)
    page_ids = [target.ident(item) for item in items]
    rng = random.Random(f"{SEED}:{target.case}")
    outcomes: Counter[str] = Counter()
    for round_ in range(ROUNDS):
        body = copy.deepcopy(clean_body)
        where = rng.randrange(len(items))
        mutated, key, what = mutate(rng, items[where], target.reads)
        items_of(body, target.items)[where] = mutated
        label = f"{target.case} round {round_}: item {where}: {what}"
        result = run(case, page, respond(page, encode(body)))  # must not raise
        assert result.errors == [], f"{label}: a bad item failed the page: {result.errors}"
        got = ids(result)
        for index, other in enumerate(page_ids):
            if index != where and other in ids(clean):
                assert other in got, f"{label}: lost the good item {other}"
        for mention in result.mentions:
            assert_sound(mention)
        json.dumps(result.cursor, allow_nan=False)
        # Items of the other pages are the next poll's business (a source may stop paging
        # early when the newest item of a page is the broken one; its cursor stays there).
        on_page = ids(clean) & {str(i) for i in page_ids}
        lost, gained = on_page - got, got - ids(clean)
        assert len(lost) <= 1 and len(gained) <= 1, f"{label}: lost {lost}, gained {gained}"
        if lost and gained:
            outcomes["kept"] += 1  # its id was what changed
        elif lost and result.skipped == 0:
            assert key in target.filters, f"{label}: item left out without a counted skip"
            outcomes["filtered"] += 1
        elif result.skipped:
            assert result.skipped == 1, f"{label}: {result.skipped} skips for one bad item"
            outcomes["skipped"] += 1
        else:
            outcomes["kept"] += 1
        figure = what.removeprefix("del ").split(" = ", 1)[0]
        if figure in target.figures:
            # A bad reach figure is dropped from the mention, never the item (or its page).
            assert not lost and not result.skipped, f"{label}: a bad figure cost the item"
            outcomes["figure"] += 1
        if result.mentions:
            assert result.cursor != empty_cursor, f"{label}: the cursor did not move"
        store_all(stores, result, f"fuzz-{target.case}")
    # The mix is part of the test: a fuzz that never skips or never keeps tests little.
    assert outcomes["skipped"] >= 1 and outcomes["kept"] >= 1, outcomes
    assert outcomes["figure"] >= 1 or not target.figures, outcomes


@pytest.mark.parametrize("target", [t for t in TARGETS if t.headers], ids=lambda t: t.case)
def test_fuzzed_headers_never_fail_a_poll(target: Target) -> None:
    case = CASE[target.case]
    page = page_of(case, target.fixture)
    body = encode(load_fixture(target.fixture))
    for name, values in target.headers.items():
        for value in values:
            headers = {name: value}
            if "reset" in name.lower():
                headers[
                    "RateLimit-Remaining"
                    if name.startswith("RateLimit")
                    else "X-RateLimit-Remaining"
                ] = "0"
            result = run(case, page, respond(page, body, headers))  # must not raise
            label = f"{target.case}: {name}: {value:.60}"
            json.dumps(result.cursor, allow_nan=False)
            if name == "Link" and target.case == "github":
                # A next link off the API, or unreadable, is the page's fault: reported, and
                # the page's items are kept (the store drops repeats; the cursor stays).
                assert len(result.errors) == 1, label
                assert "pagination link" in str(result.errors[0]), label
                assert len(result.mentions) == case.count, label
            elif "reset" in name.lower() or name == "Retry-After":
                # A spent window with a far reset: the next request waits, a day at most.
                for error in result.errors:
                    assert isinstance(error, RateLimitedError), f"{label}: {error!r}"
                    assert error.retry_after is not None
                    assert error.retry_after <= MAX_WAIT_HINT, label
                assert result.mentions or result.errors, label
            else:
                assert result.errors == [], f"{label}: {result.errors}"
                assert len(result.mentions) == case.count, label


def feed_mutations(rng: random.Random, xml: bytes) -> tuple[bytes, str]:
    """The Google Alerts feed with one entry's element changed, dropped or made hostile."""
    entries = [m.span() for m in re.finditer(rb"<entry>.*?</entry>", xml, re.S)]
    start, end = rng.choice(entries)
    entry = xml[start:end]
    elements = list(
        re.finditer(rb"<(id|title|link|published|updated|content)\b[^>]*>.*?</\1>", entry, re.S)
    )
    element = rng.choice(elements)
    hostile = rng.choice(
        [
            b"",
            b"&#0;",
            b"&#xD800;",
            b"\xff\xfe\xfd",
            b"9999-12-31T23:59:59-05:00",
            b"0001-01-01T00:00:00+05:00",
            b"x" * 400,
            b"<![CDATA[http://[::1/]]>",
            b"&lt;script&gt;",
        ]
    )
    kind = rng.random()
    name = element.group(1)
    if kind < 0.25:
        changed = b""
        what = f"del <{name.decode()}>"
    elif name == b"link":
        href = rng.choice([b"http://[::1/", b"http://[::1>", b"javascript:x", b"", b"x" * 400])
        changed = b'<link href="' + href.replace(b'"', b"") + b'"></link>'
        what = f"link href={href[:40]!r}"
    else:
        open_tag = re.match(rb"<[^>]*>", element.group(0))
        assert open_tag
        changed = open_tag.group(0) + hostile + b"</" + name + b">"
        what = f"<{name.decode()}>{hostile[:40]!r}"
    entry = entry[: element.start()] + changed + entry[element.end() :]
    return xml[:start] + entry + xml[end:], what


def test_fuzzed_feed_entries_never_fail_a_poll(stores: list[Store]) -> None:
    case = CASE["rss-google-alerts"]
    page = case.pages[0]
    assert isinstance(page, ServeFeed)
    xml = (REAL / str(page.fixture)).read_bytes()

    def answer(content: bytes) -> httpx.Response:
        return httpx.Response(
            200, content=content, headers={"content-type": "application/atom+xml"}
        )

    clean = run(case, page, answer(xml))
    assert clean.errors == [] and len(clean.mentions) == case.count
    rng = random.Random(f"{SEED}:rss")
    for round_ in range(ROUNDS):
        content, what = feed_mutations(rng, xml)
        result = run(case, page, answer(content))  # must not raise
        label = f"rss round {round_}: {what}"
        assert result.errors == [], f"{label}: {result.errors}"
        assert len(ids(clean) - ids(result)) <= 1, label
        assert len(result.mentions) + result.skipped >= case.count - 1, label
        for mention in result.mentions:
            assert_sound(mention)
        json.dumps(result.cursor, allow_nan=False)
        store_all(stores, result, "fuzz-rss")


def test_the_markers_are_read_as_the_numbers_they_stand_for() -> None:
    decoded = json.loads(encode({"a": ["__INF__", "__NEG_INF__", "__NAN__", "__BIG__"]}))
    inf, neg, nan, big = decoded["a"]
    assert inf == math.inf and neg == -math.inf and math.isnan(nan) and big == int("9" * 400)
