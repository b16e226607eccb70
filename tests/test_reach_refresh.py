"""Reach that grows: the refresh job re-reads recent unhandled complaints by id.

The APIs are faked with respx on REAL captured payload shapes. No items-by-id response was
captured; each answer here is built from captured items of the same shape (PROVENANCE:
HN ``tags=story,(story_<id>,...)`` answers are ``search_by_date`` envelopes with hits copied
from ``tests/fixtures/real/hn_algolia/search_by_date_story_query_apple.json``; Reddit
``/api/info`` answers are Listings with children copied from
``reddit/search_r_all_sort_relevance.json`` (t3) and ``reddit/r_kakapo_comments_page1.json``
(t1); Bluesky ``getPosts`` answers are ``{"posts": [...]}`` with post views copied from
``bluesky/searchPosts_q_redistricting.json``; only ids and figures are changed). The fakes
refuse what the APIs refuse: more than 100 Reddit fullnames, more than 25 Bluesky URIs.
The clock is injected; nothing sleeps.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from sqlmodel import Session, select

from earshot.config.settings import ConfigError, Secrets, parse_settings
from earshot.config.wiring import build, refresh_reach_job
from earshot.listener import metrics
from earshot.listener import reach_refresh as rr
from earshot.listener.models import Delivery, Mention, MentionEvent, SourceState, as_utc, utcnow
from earshot.listener.reach import ReachPolicy
from earshot.listener.sources.base import RateLimiter, SourceHttp
from earshot.listener.sources.bluesky import BlueskySource
from earshot.listener.sources.hackernews import HackerNewsSource
from earshot.listener.sources.reddit import RedditSource
from earshot.listener.store import KIND_REACH_UPDATE, Store

from .conftest import load_json
from .fakeslack import FakeSlack
from .test_slack_interactions import World, slack  # noqa: F401 - the fake Slack fixture

HN = "https://hn.test/api/v1"
REDDIT = "https://reddit.test"
BSKY = "https://bsky.test"
POLICY = ReachPolicy(sla_seconds=900.0)


# -- the fakes: real item shapes, answered by id ------------------------------------------


def hn_story(object_id: str, points: int, comments: int) -> dict[str, Any]:
    hit: dict[str, Any] = copy.deepcopy(
        load_json("hn_algolia/search_by_date_story_query_apple.json")["hits"][0]
    )
    hit.update(objectID=object_id, points=points, num_comments=comments)
    hit["_tags"] = ["story", f"author_{hit['author']}", f"story_{object_id}"]
    return hit


def reddit_item(name: str, score: int, **fields: Any) -> dict[str, Any]:
    if name.startswith("t3_"):
        child = load_json("reddit/search_r_all_sort_relevance.json")["data"]["children"][0]
    else:
        child = load_json("reddit/r_kakapo_comments_page1.json")["data"]["children"][0]
    child = copy.deepcopy(child)
    child["data"].update(name=name, id=name[3:], score=score, **fields)
    return dict(child)


def bsky_post(uri: str, likes: int, reposts: int) -> dict[str, Any]:
    post: dict[str, Any] = copy.deepcopy(
        load_json("bluesky/searchPosts_q_redistricting.json")["posts"][0]
    )
    post.update(uri=uri, likeCount=likes, repostCount=reposts)
    return post


class Apis:
    """The three APIs, answering what they hold by id; ``fail`` answers one status."""

    def __init__(self) -> None:
        self.hn: dict[str, dict[str, Any]] = {}
        self.reddit: dict[str, dict[str, Any]] = {}
        self.bsky: dict[str, dict[str, Any]] = {}
        self.fail: dict[str, int] = {}
        self.asked: dict[str, list[list[str]]] = {"hn": [], "reddit": [], "bsky": []}

    def _failure(self, api: str) -> httpx.Response | None:
        status = self.fail.get(api)
        if status is None:
            return None
        headers = {"retry-after": "30"} if status == 429 else {}
        return httpx.Response(status, headers=headers, json={"message": "no", "error": status})

    def hn_search(self, request: httpx.Request) -> httpx.Response:
        failed = self._failure("hn")
        if failed is not None:
            return failed
        tags = request.url.params["tags"]
        assert tags.startswith("story,(") and tags.endswith(")"), tags
        ids = [t.removeprefix("story_") for t in tags[len("story,(") : -1].split(",")]
        self.asked["hn"].append(ids)
        hits = [self.hn[i] for i in ids if i in self.hn]
        per_page = int(request.url.params["hitsPerPage"])
        body = {
            "hits": hits[:per_page],
            "nbHits": len(hits),
            "page": 0,
            "nbPages": 1,
            "hitsPerPage": per_page,
            "processingTimeMS": 1,
            "query": "",
            "params": str(request.url.params),
        }
        return httpx.Response(200, json=body)

    def reddit_info(self, request: httpx.Request) -> httpx.Response:
        failed = self._failure("reddit")
        if failed is not None:
            return failed
        names = request.url.params["id"].split(",")
        if len(names) > 100:  # Reddit answers at most 100 ids
            return httpx.Response(400, json={"message": "Bad Request", "error": 400})
        self.asked["reddit"].append(names)
        children = [self.reddit[n] for n in names if n in self.reddit]
        listing = {"after": None, "before": None, "children": children, "dist": len(children)}
        return httpx.Response(200, json={"kind": "Listing", "data": listing})

    def bsky_get_posts(self, request: httpx.Request) -> httpx.Response:
        failed = self._failure("bsky")
        if failed is not None:
            return failed
        uris = request.url.params.get_list("uris")
        if len(uris) > 25:
            return httpx.Response(
                400,
                json={"error": "InvalidRequest", "message": "uris must not have more than 25"},
            )
        self.asked["bsky"].append(uris)
        return httpx.Response(200, json={"posts": [self.bsky[u] for u in uris if u in self.bsky]})

    def routes(self, router: respx.MockRouter) -> None:
        router.route(host="127.0.0.1").pass_through()  # the fake Slack
        router.get(f"{HN}/search_by_date").mock(side_effect=self.hn_search)
        router.get(f"{REDDIT}/api/info.json").mock(side_effect=self.reddit_info)
        router.get(f"{BSKY}/xrpc/app.bsky.feed.getPosts").mock(side_effect=self.bsky_get_posts)


@pytest.fixture
def apis() -> Iterator[Apis]:
    fake = Apis()
    with respx.mock(assert_all_called=False) as router:
        fake.routes(router)
        yield fake


def sources() -> list[Any]:
    def http() -> SourceHttp:
        return SourceHttp(httpx.Client(), RateLimiter(None))

    return [
        HackerNewsSource(http(), base_url=HN),
        RedditSource(http(), base_url=REDDIT, subreddits=["acme"]),
        BlueskySource(http(), base_url=BSKY),
    ]


# -- the sources ---------------------------------------------------------------------------


def test_each_source_reads_reach_by_id_in_batches(apis: Apis) -> None:
    hn, reddit, bsky = sources()
    apis.hn["7919424"] = hn_story("7919424", 412, 96)
    found = hn.refresh_reach(["7919424", "7919425", "not-an-id"])
    assert found == {"7919424": {"reach": 412, "reach_detail": {"points": 412, "comments": 96}}}
    assert apis.asked["hn"] == [["7919424", "7919425"]]

    apis.reddit["t3_3gpbiu"] = reddit_item("t3_3gpbiu", 250)
    apis.reddit["t1_dgauydy"] = reddit_item("t1_dgauydy", 120)
    apis.reddit["t1_gone"] = reddit_item("t1_gone", 999, author="[deleted]", body="[deleted]")
    apis.reddit["t3_removed"] = reddit_item("t3_removed", 999, selftext="[removed]")
    found = reddit.refresh_reach(["t3_3gpbiu", "t1_dgauydy", "t1_gone", "t3_removed"])
    assert found["t3_3gpbiu"]["reach"] == 250
    assert found["t3_3gpbiu"]["reach_detail"]["comments"] == 21
    assert found["t1_dgauydy"]["reach_detail"] == {"score": 120, "thread_comments": 3}
    assert "t1_gone" not in found and "t3_removed" not in found  # deleted: left as it was

    uris = [f"at://did:plc:x/app.bsky.feed.post/{i}" for i in range(30)]
    apis.bsky[uris[3]] = bsky_post(uris[3], 70, 12)
    found = bsky.refresh_reach(uris)  # capped at getPosts' 25
    assert len(apis.asked["bsky"][0]) == 25
    assert found == {
        uris[3]: {
            "reach": 82,
            "reach_detail": {"likes": 70, "reposts": 12, "replies": 0, "quotes": 0},
        }
    }


def test_sources_without_a_read_by_id_are_not_refreshed() -> None:
    from earshot.listener.sources.rss import RssSource

    rss = RssSource(SourceHttp(httpx.Client()), feeds=["https://example.test/feed"])
    assert rss.refresh_batch == 0
    with pytest.raises(NotImplementedError):
        rss.refresh_reach(["x"])
    assert set(rr.readers([rss, *sources()])) == {"hackernews", "reddit", "bluesky"}


# -- the job -------------------------------------------------------------------------------


def alert(world: World, source: str, external_id: str, reach: int | None, **fields: Any) -> Mention:
    values: dict[str, Any] = {
        "source": source,
        "external_id": external_id,
        "url": f"https://example.test/{external_id}",
        "author": "pg",
        "text": "acme checkout is broken and I was charged twice",
        "created_at": utcnow(),
        "matched_query": "acme",
        "sentiment_label": "negative",
        "sentiment_score": -0.8,
        "reach": reach,
        "reach_detail": {}
        if reach is None
        else {"points": reach}
        if source == "hackernews"
        else {"score": reach},
    }
    values.update(fields)
    mention = Mention(**values)
    world.store.ingest(None, [mention], None, lambda m: [("#cx-alerts", "alert")])
    world.worker.drain(timeout=10)
    assert mention.id is not None
    return mention


@pytest.fixture
def world(store: Store, slack: FakeSlack) -> World:  # noqa: F811
    w = World(store, slack, reach=POLICY)
    w.worker.reach = POLICY
    return w


def sent_at(world: World) -> datetime:
    sent = max(as_utc(d.sent_at) for d in world.outbox() if d.sent_at)  # type: ignore[type-var]
    assert sent is not None
    return sent


def events(store: Store, action: str) -> list[MentionEvent]:
    with Session(store.engine) as session:
        return list(session.exec(select(MentionEvent).where(MentionEvent.action == action)))


def rows(store: Store, kind: str) -> list[Delivery]:
    with Session(store.engine) as session:
        return list(session.exec(select(Delivery).where(Delivery.kind == kind)))


def stored(store: Store, mention_id: int) -> Mention:
    with Session(store.engine) as session:
        mention = session.get(Mention, mention_id)
        assert mention is not None
        session.expunge(mention)
        return mention


def test_a_complaint_that_grows_is_flagged_once_and_its_alert_re_rendered(
    world: World, apis: Apis
) -> None:
    story = alert(world, "hackernews", "7919424", 2)
    post = alert(world, "reddit", "t3_3gpbiu", 1)
    praise = alert(world, "hackernews", "7919430", 1, sentiment_label="positive")
    handled = alert(world, "hackernews", "7919431", 1)
    world.post(world.click(handled, "earshot_handled"))
    old = alert(world, "hackernews", "7919432", 1, created_at=utcnow() - timedelta(days=3))
    comment = alert(world, "hackernews", "7919433", None)  # HN comments have no points
    updates_before = len(world.slack.updates)
    for object_id in ("7919424", "7919430", "7919431", "7919432", "7919433"):
        apis.hn[object_id] = hn_story(object_id, 412, 90)
    apis.reddit["t3_3gpbiu"] = reddit_item("t3_3gpbiu", 40)  # grew, still below 100

    now = sent_at(world) + timedelta(minutes=20)
    report = rr.refresh_reach(world.store, sources(), POLICY, window_seconds=86400, now=now)
    assert report.errors == {}
    assert report.flagged == [story.id]
    # Only recent unhandled complaints are asked for (not the praise, the handled one, the
    # one older than the window, or the HN comment).
    assert apis.asked["hn"] == [["7919424"]]
    assert apis.asked["reddit"] == [["t3_3gpbiu"]]
    assert stored(world.store, story.id or 0).reach == 412
    assert stored(world.store, story.id or 0).reach_detail == {"points": 412, "comments": 90}
    assert stored(world.store, post.id or 0).reach == 40
    for untouched in (praise, handled, old):
        assert stored(world.store, untouched.id or 0).reach == 1
    assert stored(world.store, comment.id or 0).reach is None

    (event,) = events(world.store, "high_reach")
    assert event.mention_id == story.id and as_utc(event.at) == now
    assert event.detail["reach"] == 412 and event.detail["threshold"] == 100
    (row,) = rows(world.store, KIND_REACH_UPDATE)
    assert row.channel == "#cx-alerts"

    world.worker.drain(timeout=10)
    (update,) = world.slack.updates[updates_before:]
    where = world.alert(story)
    assert update["ts"] == where[1]
    texts = str(update["blocks"])
    assert "High reach:* 412 points, 90 comments (threshold 100 points)" in texts
    assert "📣 High reach now: 412 points, 90 comments" in texts
    assert "(high reach)" in update["text"]

    # Again, and with more points: figures updated, never flagged or re-rendered twice.
    apis.hn["7919424"] = hn_story("7919424", 800, 200)
    again = rr.refresh_reach(world.store, sources(), POLICY, window_seconds=86400, now=now)
    assert again.flagged == [] and again.updated == 1
    assert stored(world.store, story.id or 0).reach == 800
    assert len(events(world.store, "high_reach")) == 1
    assert len(rows(world.store, KIND_REACH_UPDATE)) == 1


def test_the_shorter_sla_counts_from_the_moment_reach_crossed(world: World, apis: Apis) -> None:
    story = alert(world, "hackernews", "7919424", 2)
    sent = sent_at(world)
    apis.hn["7919424"] = hn_story("7919424", 412, 90)
    flagged_at = sent + timedelta(minutes=20)
    rr.refresh_reach(world.store, sources(), POLICY, window_seconds=86400, now=flagged_at)
    # The alert is older than 15 minutes, but it has been high reach for 1 minute only.
    assert world.ui.escalate(now=flagged_at + timedelta(minutes=1)) == []
    assert world.ui.escalate(now=flagged_at + timedelta(minutes=14)) == []
    assert world.ui.escalate(now=flagged_at + timedelta(minutes=16)) == [story.id]
    # Before the usual 60 minutes, and once.
    assert world.ui.escalate(now=sent + timedelta(minutes=61)) == []
    (escalated,) = events(world.store, "escalated")
    assert escalated.detail["high_reach"] is True and escalated.detail["reach"] == 412


@pytest.mark.parametrize("status", [429, 503, 403])
def test_a_refused_refresh_is_a_counted_skip(world: World, apis: Apis, status: int) -> None:
    story = alert(world, "hackernews", "7919424", 2)
    post = alert(world, "reddit", "t3_3gpbiu", 1)
    apis.hn["7919424"] = hn_story("7919424", 412, 90)
    apis.reddit["t3_3gpbiu"] = reddit_item("t3_3gpbiu", 150)
    apis.fail["hn"] = status
    kind = {429: "rate_limited", 503: "retriable", 403: "fatal"}[status]
    counter = metrics.REACH_REFRESH_ERRORS.labels("hackernews", kind)
    before = counter._value.get()
    report = rr.refresh_reach(world.store, sources(), POLICY, window_seconds=86400)
    assert counter._value.get() == before + 1
    assert set(report.errors) == {"hackernews"} and str(status) in report.errors["hackernews"]
    assert stored(world.store, story.id or 0).reach == 2  # as it was
    assert report.flagged == [post.id]  # the other source went on
    with Session(world.store.engine) as session:  # no poll's health was touched
        assert list(session.exec(select(SourceState))) == []


def test_a_deleted_or_missing_item_keeps_its_reach(world: World, apis: Apis) -> None:
    gone = alert(world, "reddit", "t3_gone", 7)
    missing = alert(world, "hackernews", "7919499", 3)
    apis.reddit["t3_gone"] = reddit_item("t3_gone", 0, author="[deleted]", selftext="[deleted]")
    report = rr.refresh_reach(world.store, sources(), POLICY, window_seconds=86400)
    assert report.missing == 2 and report.updated == 0 and report.errors == {}
    assert stored(world.store, gone.id or 0).reach == 7
    assert stored(world.store, missing.id or 0).reach == 3


def test_replicas_flag_a_crossing_once(database_url: str, apis: Apis) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("two replicas share PostgreSQL")
    first, second = Store.from_url(database_url), Store.from_url(database_url)
    try:
        first.create_schema()
        ids = []
        for n, external_id in enumerate(("7919424", "7919425")):
            mention = Mention(
                source="hackernews",
                external_id=external_id,
                url=f"https://news.ycombinator.com/item?id={external_id}",
                text="acme charged me twice, awful",
                created_at=utcnow() - timedelta(minutes=n),
                sentiment_label="negative",
                reach=1,
                reach_detail={"points": 1},
            )
            first.ingest(None, [mention], None, lambda m: [("#cx-alerts", "alert")])
            first.mark_sent(_alert_row(first, mention.id or 0), "C1", f"1.{n}")
            ids.append(mention.id)
            apis.hn[external_id] = hn_story(external_id, 300, 10)
        # Both replicas read the candidates before either writes (the race, made certain).
        seen = rr.candidates(first, ["hackernews"], utcnow() - timedelta(days=1))
        stale = [copy.deepcopy(m) for m in seen]

        def racing(store: Store, snapshot: list[Mention]) -> rr.RefreshReport:
            original = rr.candidates
            rr_candidates = lambda *a, **k: [copy.deepcopy(m) for m in snapshot]  # noqa: E731
            try:
                rr.candidates = rr_candidates  # type: ignore[assignment]
                return rr.refresh_reach(store, sources(), POLICY, window_seconds=86400)
            finally:
                rr.candidates = original

        one = racing(first, seen)
        two = racing(second, stale)
        assert sorted(one.flagged) == sorted(ids) and two.flagged == []
        # And truly at once, on new crossings.
        apis.hn["7919424"] = hn_story("7919424", 300, 10)
        barrier = threading.Barrier(2)
        reports: list[rr.RefreshReport] = []
        more = Mention(
            source="hackernews",
            external_id="7919426",
            url="https://news.ycombinator.com/item?id=7919426",
            text="acme lost my order, terrible",
            created_at=utcnow(),
            sentiment_label="negative",
            reach=1,
            reach_detail={"points": 1},
        )
        first.ingest(None, [more], None, lambda m: [("#cx-alerts", "alert")])
        first.mark_sent(_alert_row(first, more.id or 0), "C1", "1.9")
        apis.hn["7919426"] = hn_story("7919426", 500, 10)

        def run(store: Store) -> None:
            barrier.wait()
            reports.append(rr.refresh_reach(store, sources(), POLICY, window_seconds=86400))

        threads = [threading.Thread(target=run, args=(s,)) for s in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(i for r in reports for i in r.flagged) == [more.id]
        assert len(events(first, "high_reach")) == 3
        assert len(rows(first, KIND_REACH_UPDATE)) == 3
    finally:
        first.engine.dispose()
        second.engine.dispose()


def _alert_row(store: Store, mention_id: int) -> int:
    with Session(store.engine) as session:
        row = session.exec(
            select(Delivery).where(Delivery.mention_id == mention_id, Delivery.kind == "alert")
        ).one()
        assert row.id is not None
        return row.id


# -- [reach] refresh in the config ---------------------------------------------------------

BASE: dict[str, Any] = {
    "product": {"name": "Acme", "queries": ["acme"]},
    "sources": [{"type": "hackernews", "base_url": HN}],
}


def test_the_refresh_job_is_wired_and_can_be_turned_off(database_url: str, apis: Apis) -> None:
    settings = parse_settings(BASE)
    assert settings.reach.refresh == 600.0 and settings.reach.refresh_for == 86400.0
    app = build(settings, Secrets(), database=database_url)
    try:
        jobs = {job: every for job, every, _ in app.extras["jobs"]}
        assert jobs["reach-refresh"] == 600.0
        mention = Mention(
            source="hackernews",
            external_id="7919424",
            url="https://news.ycombinator.com/item?id=7919424",
            text="acme is down again, awful",
            created_at=utcnow(),
            sentiment_label="negative",
            reach=1,
            reach_detail={"points": 1},
        )
        app.store.ingest(None, [mention], None, lambda m: [("#cx-alerts", "alert")])
        app.store.mark_sent(_alert_row(app.store, mention.id or 0), "C1", "1.1")
        apis.hn["7919424"] = hn_story("7919424", 150, 3)
        when = utcnow()
        report = refresh_reach_job(app, now=when)
        assert report is not None and report.flagged == [mention.id]
    finally:
        app.close()
    # A second replica skips the round the first one took; the first takes the next.
    other = build(settings, Secrets(), database=database_url)
    try:
        other.pipeline.owner = "replica-b"
        assert refresh_reach_job(other, now=when + timedelta(seconds=60)) is None
        assert refresh_reach_job(other, now=when + timedelta(seconds=541)) is not None
    finally:
        other.close()
    for off in ({"refresh": 0}, {"refresh_for": "0"}, {"enabled": False}):
        app = build(parse_settings({**BASE, "reach": off}), Secrets(), database=database_url)
        try:
            assert "reach-refresh" not in {job for job, _, _ in app.extras["jobs"]}
        finally:
            app.close()


def test_a_refresh_too_often_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings({**BASE, "reach": {"refresh": "30s"}})
    assert "reach.refresh" in caught.value.render() and "1m or more" in caught.value.render()
