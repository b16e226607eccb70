"""Acceptance: a burst of 250 new items between two polls, on a paginated source, is
delivered complete and once.

Each fake API (a respx side-effect handler) serves 250 new items, made from a real captured
item with distinct ids and times, above the stored cursor, plus older known items below it,
across several pages, the way the real API pages. The poll must return all 250, each once,
and leave the cursor at the newest; the next poll returns nothing.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from earshot.listener.sources.base import RateLimiter, Source, SourceHttp
from earshot.listener.sources.discourse import DiscourseSource
from earshot.listener.sources.github import GitHubSource
from earshot.listener.sources.hackernews import HackerNewsSource
from earshot.listener.sources.reddit import RedditSource

from .contract import FakeTime, load_fixture

BURST = 250
OLD = 20
#: Unix time of the oldest burst item; known items are older, the clock is later.
T0 = 1_700_000_000
NOW = float(T0 + 10_000)


def http() -> SourceHttp:
    fake = FakeTime()
    return SourceHttp(httpx.Client(), RateLimiter(None, clock=fake.clock, sleep=fake.sleep))


def iso(stamp: int) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Burst:
    """One source's fake API: ``items`` newest first, the newest ``BURST`` of them new."""

    def __init__(self, make: Callable[[int, int], dict[str, Any]]) -> None:
        # Item i (0 = oldest) was created at T0 - OLD + i: OLD known ones, then the burst.
        self.items = [make(i, T0 - OLD + i) for i in reversed(range(OLD + BURST))]
        self.calls = 0
        #: How many of the oldest items the API shows (all; fewer "before the burst").
        self.visible = OLD + BURST

    def shown(self) -> list[dict[str, Any]]:
        return self.items[len(self.items) - self.visible :]


def check(source: Source, cursor: dict[str, Any], api: Burst, terms: list[str]) -> dict[str, Any]:
    """Poll from ``cursor``: all 250 new items, once each; then a repoll finds nothing."""
    result = source.poll(json.loads(json.dumps(cursor)), terms)
    assert result.errors == [] and result.skipped == 0
    ids = [m.external_id for m in result.mentions]
    assert len(ids) == BURST, f"{len(ids)} items, expected {BURST}"
    assert len(set(ids)) == BURST, "an item came twice"
    assert api.calls >= 3, "the burst spans several pages"
    newest = max(m.created_at for m in result.mentions)
    assert newest == datetime.fromtimestamp(T0 + BURST - 1, UTC)
    again = source.poll(json.loads(json.dumps(result.cursor)), terms)
    assert again.errors == [] and again.mentions == [], "the repoll found the burst again"
    assert again.cursor == result.cursor
    return result.cursor


# -- Reddit: before= a full page, then after= from the top down to the cursor ----------------


def test_reddit_burst() -> None:
    template = load_fixture("reddit/r_kakapo_comments_page1.json")["data"]["children"][0]

    def make(i: int, stamp: int) -> dict[str, Any]:
        child = copy.deepcopy(template)
        child["data"].update(name=f"t1_b{i:04d}", id=f"b{i:04d}", created_utc=float(stamp))
        return child

    api = Burst(make)
    names = [c["data"]["name"] for c in api.items]

    def listing(children: list[dict[str, Any]], after: str | None) -> httpx.Response:
        data = {"children": children, "after": after, "before": None, "dist": len(children)}
        return httpx.Response(200, json={"kind": "Listing", "data": data})

    def answer(request: httpx.Request) -> httpx.Response:
        api.calls += 1
        params = request.url.params
        limit = int(params["limit"])
        if "before" in params:  # the `limit` items just newer than `before`
            at = names.index(params["before"])
            return listing(api.items[max(0, at - limit) : at], None)
        start = names.index(params["after"]) + 1 if "after" in params else 0
        page = api.items[start : start + limit]
        more = start + limit < len(api.items)
        return listing(page, page[-1]["data"]["name"] if more else None)

    known = api.items[BURST]["data"]  # the newest of the old items
    with respx.mock:
        respx.get("https://reddit.test/r/kakapo/comments.json").mock(side_effect=answer)
        source = RedditSource(
            http(), base_url="https://reddit.test", subreddits=["kakapo"], listings=["comments"]
        )
        cursor = {
            "listings": {
                "kakapo/comments": {"name": known["name"], "created": known["created_utc"]}
            }
        }
        after = check(source, cursor, api, [])
    assert after["listings"]["kakapo/comments"]["name"] == f"t1_b{OLD + BURST - 1:04d}"


# -- Hacker News: page/nbPages within the created_at_i window --------------------------------


def test_hackernews_burst() -> None:
    template = load_fixture("hn_algolia/search_by_date_story_query_apple.json")["hits"][0]

    def make(i: int, stamp: int) -> dict[str, Any]:
        hit = copy.deepcopy(template)
        hit.update(objectID=str(90_000_000 + i), created_at_i=stamp)
        return hit

    api = Burst(make)

    def answer(request: httpx.Request) -> httpx.Response:
        api.calls += 1
        params = request.url.params
        since = int(params["numericFilters"].split(",")[0].removeprefix("created_at_i>"))
        window = [h for h in api.items if h["created_at_i"] > since]
        per, page = int(params["hitsPerPage"]), int(params["page"])
        body = {
            "hits": window[page * per : (page + 1) * per],
            "page": page,
            "nbPages": (len(window) + per - 1) // per,
            "nbHits": len(window),
            "hitsPerPage": per,
        }
        return httpx.Response(200, json=body)

    with respx.mock:
        respx.get("https://hn.test/api/v1/search_by_date").mock(side_effect=answer)
        source = HackerNewsSource(http(), base_url="https://hn.test/api/v1", clock=lambda: NOW)
        after = check(source, {"terms": {"apple": T0 - 1}}, api, ["apple"])
    assert after == {"terms": {"apple": T0 + BURST - 1}}


# -- GitHub: Link rel="next" pages of 100 ------------------------------------------------------


def github_api() -> Burst:
    template = load_fixture("github/search_issues.json")["items"][0]

    def make(i: int, stamp: int) -> dict[str, Any]:
        item = copy.deepcopy(template)
        item.update(id=7_000_000 + i, number=i, created_at=iso(stamp))
        item["html_url"] = template["html_url"].rsplit("/", 1)[0] + f"/{i}"
        return item

    return Burst(make)


def github_handler(api: Burst, base: str) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        api.calls += 1
        params = request.url.params
        since = next(p for p in params["q"].split() if p.startswith("created:>="))
        floor = since.removeprefix("created:>=")
        window = [i for i in api.shown() if i["created_at"] >= floor]
        per, page = int(params["per_page"]), int(params.get("page", "1"))
        headers = {}
        if page * per < len(window):
            query = httpx.QueryParams({**dict(params), "page": str(page + 1)})
            headers["Link"] = f'<{base}/search/issues?{query}>; rel="next"'
        body = {
            "total_count": len(window),
            "incomplete_results": False,
            "items": window[(page - 1) * per : page * per],
        }
        return httpx.Response(200, json=body, headers=headers)

    return answer


def test_github_burst() -> None:
    api = github_api()
    base = "https://gh.test"
    with respx.mock:
        respx.get(f"{base}/search/issues").mock(side_effect=github_handler(api, base))
        source = GitHubSource(http(), base_url=base, clock=lambda: NOW)
        known = {"since": T0 - 1, "ids": [str(7_000_000 + OLD - 1)]}
        after = check(source, {"searches": {"issues:sesame": known}}, api, ["sesame"])
    assert after["searches"]["issues:sesame"] == {
        "since": T0 + BURST - 1,
        "ids": [str(7_000_000 + OLD + BURST - 1)],
    }


# -- Discourse: pages of 50 with before=<smallest id> -------------------------------------------


def test_discourse_burst() -> None:
    template = load_fixture("discourse/posts_latest.json")["latest_posts"][0]

    def make(i: int, stamp: int) -> dict[str, Any]:
        post = copy.deepcopy(template)
        post.update(id=1000 + i, created_at=iso(stamp), post_number=i + 1)
        return post

    api = Burst(make)

    def answer(request: httpx.Request) -> httpx.Response:
        api.calls += 1
        before = int(request.url.params.get("before", 10**9))
        older = [p for p in api.items if p["id"] < before]
        return httpx.Response(200, json={"latest_posts": older[:50]})

    with respx.mock:
        respx.get("https://forum.test/posts.json").mock(side_effect=answer)
        source = DiscourseSource(http(), base_url="https://forum.test", clock=lambda: NOW)
        after = check(source, {"post_id": 1000 + OLD - 1}, api, [])
    assert after == {"post_id": 1000 + OLD + BURST - 1}


# -- end to end: the pipeline stores 250 mentions and queues/posts each alert once ------------


def test_github_burst_end_to_end(database_url: str) -> None:
    from sqlalchemy import func
    from sqlmodel import Session, select

    from earshot.config.service import run_once
    from earshot.config.settings import Secrets, parse_settings
    from earshot.config.wiring import build
    from earshot.listener.models import Delivery, Mention

    from .fakeslack import FakeSlack

    api = github_api()
    # Half the burst reads as a complaint, half as praise: both kinds are alerted.
    for n, item in enumerate(api.items):
        item["body"] = (
            "Sesame is broken and useless, terrible update" if n % 2 else "Sesame is great, love it"
        )
    base = "https://gh.test"
    with FakeSlack() as slack, respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        router.get(f"{base}/search/issues").mock(side_effect=github_handler(api, base))
        settings = parse_settings(
            {
                "product": {"name": "Sesame", "queries": ["sesame"]},
                "slack": {"api_url": slack.api_url},
                "sources": [{"type": "github", "base_url": base, "backfill": "100000d"}],
            }
        )
        app = build(settings, Secrets(slack_bot_token="xoxb-test"), database=database_url)
        app.worker.per_channel_interval = 0.0

        def stored() -> int:
            with Session(app.store.engine) as session:
                return session.exec(
                    select(func.count()).select_from(Mention).where(Mention.source == "github")
                ).one()

        def alerts() -> int:
            # A burst this size is also an alert storm: its summaries are not alerts.
            return sum(m["metadata"]["event_type"] == "earshot_alert" for m in slack.messages)

        try:
            api.visible = OLD  # before the burst: the first poll backfills the old items
            assert run_once(app) == 0
            assert stored() == OLD
            before = alerts()
            api.visible = OLD + BURST  # the burst arrives between two polls
            assert run_once(app) == 0
            assert stored() == OLD + BURST
            after = alerts()
            assert run_once(app) == 0  # the same API again: nothing new, nothing re-sent
            assert stored() == OLD + BURST and alerts() == after
            with Session(app.store.engine) as session:
                rows = session.exec(select(Delivery)).all()
                meanings = session.exec(select(Mention.sentiment_label, Mention.intents)).all()
        finally:
            app.close()
    keys = [m["metadata"]["event_payload"]["key"] for m in slack.messages]
    assert len(set(keys)) == len(keys), "an alert was posted twice"
    # A story's live count is an edit of its first alert (chat.update), not a message.
    posted = [r for r in rows if r.kind != "story_update"]
    assert sorted(keys) == sorted(r.idempotency_key for r in posted)
    assert all(r.status == "sent" for r in rows if r.kind == "story_update")
    # Every complaint of the burst was alerted (half of 250), and every praise: what the
    # classifier tagged praise goes to the amplify channel, the rest of the positives nowhere.
    assert after - before >= BURST // 2, (before, after)
    complaint = {"negative", "mixed", "unscored"}
    routed = sum(
        "spam" not in intents
        and (
            label in complaint
            or bool({"bug", "billing", "churn_risk"} & set(intents))
            or (label == "positive" and "praise" in intents)
        )
        for label, intents in meanings
    )
    assert after == routed, (after, routed)


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
