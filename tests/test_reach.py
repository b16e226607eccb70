"""Reach as fields: each source's figures read from its real captured payloads, bad figures
dropped without losing the item, and the high-reach policy (``listener/reach.py``)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from sqlmodel import Session, select

from earshot.listener import reach
from earshot.listener.models import Mention
from earshot.listener.reach import MAX_FIGURE, ReachPolicy, describe, figure
from earshot.listener.sources.appstore import AppStoreSource
from earshot.listener.sources.appstoreconnect import AppStoreConnectSource
from earshot.listener.sources.base import PollResult, Source, SourceHttp
from earshot.listener.sources.bluesky import BlueskySource
from earshot.listener.sources.discourse import DiscourseSource
from earshot.listener.sources.github import GitHubSource
from earshot.listener.sources.googleplay import GooglePlaySource
from earshot.listener.sources.hackernews import HackerNewsSource
from earshot.listener.sources.mastodon import MastodonSource
from earshot.listener.sources.reddit import RedditSource
from earshot.listener.sources.rss import RssSource
from earshot.listener.sources.stackexchange import StackExchangeSource
from earshot.listener.store import Store

from .conftest import load_json
from .fakestores import ec_key, pem, rsa_key, service_account

FIXTURES = Path(__file__).parent / "fixtures" / "real"

NOW = 1_700_000_000.0


def http() -> SourceHttp:
    return SourceHttp(httpx.Client())


def parse(source: Source, parse_one: Callable[[Any], Any], item: Any) -> Mention:
    """One item through the source's parser, as a poll runs it: it must not be skipped."""
    result = PollResult(mentions=[], cursor={})
    parsed = source.parse_item(result, parse_one, item)
    assert result.skipped == 0 and parsed is not None
    return parsed[0] if isinstance(parsed, tuple) else parsed


# -- each source on its real payloads --------------------------------------------------


def test_hackernews_points_and_comments() -> None:
    hn = HackerNewsSource(http(), clock=lambda: NOW)
    (story,) = load_json("hn_algolia/search_by_date_story_query_apple.json")["hits"]
    (ask,) = load_json("hn_algolia/search_by_date_ask_hn_page2.json")["hits"]
    (comment,) = load_json("hn_algolia/search_by_date_comment_query_apple.json")["hits"]
    m = parse(hn, hn._mention, story)
    assert (m.reach, m.reach_detail) == (1, {"points": 1, "comments": 0})
    m = parse(hn, hn._mention, ask)
    assert (m.reach, m.reach_detail) == (1, {"points": 1, "comments": 3})
    # The 2014 capture gives a comment 1 point; Algolia now sends null (documented).
    m = parse(hn, hn._mention, comment)
    assert (m.reach, m.reach_detail) == (1, {"points": 1})
    m = parse(hn, hn._mention, {**comment, "points": None})
    assert (m.reach, m.reach_detail) == (None, {})


def test_reddit_score_and_comments_posts_and_comments() -> None:
    source = RedditSource(http(), subreddits=["kakapo"], clock=lambda: NOW)
    posts = load_json("reddit/search_r_all_sort_relevance.json")["data"]["children"]
    comments = load_json("reddit/r_kakapo_comments_page1.json")["data"]["children"]
    first = parse(source, source._mention, posts[0])
    assert (first.reach, first.reach_detail) == (0, {"score": 0, "comments": 21})
    second = parse(source, source._mention, posts[1])
    assert (second.reach, second.reach_detail) == (2, {"score": 2, "comments": 5})
    # On a comment, num_comments is its thread's.
    reply = parse(source, source._mention, comments[0])
    assert (reply.reach, reply.reach_detail) == (2, {"score": 2, "thread_comments": 3})
    assert [parse(source, source._mention, c).reach for c in comments] == [
        c["data"]["score"] for c in comments
    ]
    # Today's listings add subreddit_subscribers; a hidden score is no score.
    newer = copy.deepcopy(posts[1])
    newer["data"].update(subreddit_subscribers=1_234_567, score=-3)
    m = parse(source, source._mention, newer)
    assert m.reach == -3
    assert m.reach_detail == {"score": -3, "comments": 5, "subreddit_subscribers": 1_234_567}
    hidden = copy.deepcopy(comments[0])
    hidden["data"]["score_hidden"] = True
    m = parse(source, source._mention, hidden)
    assert (m.reach, m.reach_detail) == (None, {"thread_comments": 3})


def test_mastodon_followers_then_boosts_favourites_replies() -> None:
    source = MastodonSource(http(), hashtags=["x"], clock=lambda: NOW)
    statuses = load_json("mastodon/timelines_tag_page1.json")
    m = parse(source, source._mention, statuses[0])
    assert m.reach == statuses[0]["account"]["followers_count"] == 0
    assert m.reach_detail == {
        "followers": 0,
        "reblogs": 0,
        "favourites": 0,
        "replies": 0,
        "quotes": 0,
    }
    busy = copy.deepcopy(statuses[0])
    busy["account"]["followers_count"] = 48_210
    busy.update(reblogs_count=31, favourites_count=90, replies_count=12)
    del busy["quotes_count"]  # before Mastodon 4.5
    m = parse(source, source._mention, busy)
    assert m.reach == 48_210
    assert describe(m.reach_detail) == "48,210 followers, 31 boosts, 90 favourites, 12 replies"


def test_bluesky_likes_and_reposts_no_author_followers() -> None:
    source = BlueskySource(http(), clock=lambda: NOW)
    posts = load_json("bluesky/searchPosts_q_redistricting.json")["posts"]
    expected = [p["likeCount"] + p["repostCount"] for p in posts]
    assert [parse(source, source._mention, p).reach for p in posts] == expected
    busiest = max(posts, key=lambda p: p["likeCount"] + p["repostCount"])
    m = parse(source, source._mention, busiest)
    assert m.reach_detail == {
        "likes": busiest["likeCount"],
        "reposts": busiest["repostCount"],
        "replies": busiest["replyCount"],
        "quotes": busiest["quoteCount"],
    }
    # searchPosts gives a basic profile: no follower count to read, none invented.
    assert "followersCount" not in busiest["author"]
    assert "followers" not in m.reach_detail


def test_stackexchange_views_score_answers() -> None:
    source = StackExchangeSource(http(), clock=lambda: NOW)
    items = load_json("stackexchange/search_advanced_q_something_missing.json")["items"]
    m = parse(source, lambda i: source._mention(i, "stackoverflow"), items[0])
    assert m.reach == 77_058
    assert m.reach_detail == {"views": 77_058, "score": 123, "answers": 9}
    assert describe(m.reach_detail) == "77,058 views, 123 score, 9 answers"


def test_github_issue_reactions_and_comments_and_discussion() -> None:
    source = GitHubSource(http(), clock=lambda: NOW)
    items = load_json("github/search_issues.json")["items"]
    m = parse(source, source._issue, items[0])
    assert (m.reach, m.reach_detail) == (0, {"reactions": 0, "comments": 0})
    busy = copy.deepcopy(items[0])
    busy["reactions"]["total_count"] = 40
    busy["comments"] = 12
    assert parse(source, source._issue, busy).reach == 52
    node = {
        "id": "D_kwDOtest1",
        "number": 1,
        "title": "Acme question",
        "body": "Does acme work offline?",
        "url": "https://github.com/acme/app/discussions/1",
        "createdAt": "2024-03-01T10:00:00Z",
        "author": {"login": "u"},
        "repository": {"nameWithOwner": "acme/app"},
        "comments": {"totalCount": 4},
        "reactions": {"totalCount": 7},
        "upvoteCount": 9,
    }
    m = parse(source, source._discussion, node)
    assert (m.reach, m.reach_detail) == (11, {"reactions": 7, "comments": 4, "upvotes": 9})


def test_discourse_reads_likes_replies() -> None:
    source = DiscourseSource(http(), base_url="https://forum.test", clock=lambda: NOW)
    posts = load_json("discourse/posts_latest.json")["latest_posts"]
    m = parse(source, source._mention, posts[0])
    assert (m.reach, m.reach_detail) == (1, {"reads": 1, "replies": 0})
    liked = {**posts[0], "reads": 340, "actions_summary": [{"id": 2, "count": 17}]}
    m = parse(source, source._mention, liked)
    assert (m.reach, m.reach_detail) == (340, {"reads": 340, "likes": 17, "replies": 0})
    assert parse(source, source._mention, {**liked, "like_count": 20}).reach_detail["likes"] == 20


def test_googleplay_thumbs_up() -> None:
    account = service_account(rsa_key())
    source = GooglePlaySource(
        http(), package_name="com.acme.notes", service_account_json=json.dumps(account)
    )
    reviews = load_json("googleplay/reviews_list.json")["reviews"]
    plain = parse(source, source._mention, reviews[0])
    assert (plain.reach, plain.reach_detail) == (None, {})
    voted = parse(source, source._mention, reviews[1])
    assert (voted.reach, voted.reach_detail) == (10, {"thumbs_up": 10, "thumbs_down": 3})


def test_appstore_feed_helpful_votes() -> None:
    source = AppStoreSource(http(), app_id="284815942", clock=lambda: NOW)
    entries = load_json("appstore/customerreviews_us_id284815942_json.json")["feed"]["entry"]
    m = parse(source, lambda e: source._mention(e, "us"), entries[0])
    assert (m.reach, m.reach_detail) == (263, {"helpful_votes": 263, "votes": 581})
    assert describe(m.reach_detail) == "263 helpful votes, 581 votes"


def test_sources_without_figures_have_no_reach() -> None:
    """App Store Connect's customerReviews and RSS/Google Alerts give no figures."""
    asc = load_json("appstoreconnect/customerReviews_limit1.json")["data"][0]
    assert "vote" not in json.dumps(asc["attributes"]).lower()
    store_api = AppStoreConnectSource(
        http(),
        app_id="682658836",
        key_id="2X9R4HXF34",
        issuer_id="57246542-96fe-1a63-e053-0824d011072a",
        private_key=pem(ec_key()),
        clock=lambda: NOW,
    )
    m = parse(store_api, lambda item: store_api._mention(item, {}), asc)
    assert (m.reach, m.reach_detail, m.rating) == (None, {}, 5)
    feed = "https://www.google.com/alerts/feeds/1/2"
    alert = (FIXTURES / "google_alerts/google_alert_slack.xml").read_bytes()
    with respx.mock:
        respx.get(feed).respond(content=alert, headers={"content-type": "application/atom+xml"})
        rss = RssSource(http(), feeds=[feed], clock=lambda: NOW, backfill_seconds=10**10)
        result = rss.poll(None, ["slack"])
    assert len(result.mentions) == 20 and result.skipped == 0
    assert {(m.reach, json.dumps(m.reach_detail)) for m in result.mentions} == {(None, "{}")}


# -- bad figures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "signed", "expected"),
    [
        (12, False, 12),
        ("263", False, 263),
        (" 7 ", False, 7),
        (12.0, False, 12),
        (-3, True, -3),
        ("-3", True, -3),
        (-3, False, None),
        (True, False, None),
        (None, False, None),
        ("12 likes", False, None),
        ("", False, None),
        ("١٢", False, None),  # Arabic-Indic digits: str.isdigit, not a JSON number
        (1.5, False, None),
        (float("nan"), False, None),
        (float("inf"), False, None),
        (MAX_FIGURE, False, MAX_FIGURE),
        (MAX_FIGURE + 1, False, None),
        (10**400, True, None),
        ("9" * 400, False, None),
        ([1], False, None),
        ({"count": 1}, False, None),
    ],
)
def test_figure(value: Any, signed: bool, expected: int | None) -> None:
    assert figure(value, signed=signed) == expected


BAD = ["12 points", -5, 10**30, 1e300, True, None, [3], {"n": 1}, "NaN"]


@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_bad_figures_never_cost_the_item(bad: Any) -> None:
    hn = HackerNewsSource(http(), clock=lambda: NOW)
    (story,) = load_json("hn_algolia/search_by_date_story_query_apple.json")["hits"]
    m = parse(hn, hn._mention, {**story, "points": bad, "num_comments": bad})
    assert m.reach is None and m.reach_detail == {}
    source = MastodonSource(http(), hashtags=["x"], clock=lambda: NOW)
    status = copy.deepcopy(load_json("mastodon/timelines_tag_page1.json")[0])
    status["account"] = {**status["account"], "followers_count": bad}
    status["reblogs_count"] = bad
    m = parse(source, source._mention, status)
    assert m.reach is None and "followers" not in m.reach_detail
    assert "reblogs" not in m.reach_detail
    status["account"] = bad  # not even an object
    assert parse(source, source._mention, status).reach is None
    bsky = BlueskySource(http(), clock=lambda: NOW)
    post = {**load_json("bluesky/searchPosts_q_redistricting.json")["posts"][3]}
    post["likeCount"] = bad
    m = parse(bsky, bsky._mention, post)
    assert m.reach == post["repostCount"]  # the readable half
    assert "likes" not in m.reach_detail


def test_a_sum_past_the_column_is_no_reach() -> None:
    fields = reach.bluesky({"likeCount": MAX_FIGURE, "repostCount": 5})
    assert fields["reach"] is None and fields["reach_detail"]["likes"] == MAX_FIGURE


def test_the_mention_check_drops_what_is_not_a_figure() -> None:
    hn = HackerNewsSource(http(), clock=lambda: NOW)
    m = hn.mention(
        external_id="1",
        created_at=datetime(2024, 1, 1, tzinfo=UTC),
        reach="lots",
        reach_detail={"points": 5, "bad": "x", "huge": 10**40, "\x00k": 2},
    )
    assert m.reach is None and m.reach_detail == {"points": 5, "k": 2}


def test_reach_is_stored_and_read_back(store: Store) -> None:
    hn = HackerNewsSource(http(), clock=lambda: NOW)
    (story,) = load_json("hn_algolia/search_by_date_story_query_apple.json")["hits"]
    big = parse(hn, hn._mention, {**story, "objectID": "9", "points": MAX_FIGURE})
    small = parse(hn, hn._mention, story)
    store.ingest("hackernews", [big, small], {}, lambda m: [])
    with Session(store.engine) as session:
        stored = {m.external_id: m for m in session.exec(select(Mention))}
    assert stored["9"].reach == MAX_FIGURE
    assert stored[story["objectID"]].reach_detail == {"points": 1, "comments": 0}


# -- the policy ------------------------------------------------------------------------


def mention(source: str, reach_: int | None, label: str = "negative", **extra: Any) -> Mention:
    return Mention(
        source=source,
        external_id="x",
        created_at=datetime(2024, 1, 1, tzinfo=UTC),
        reach=reach_,
        sentiment_label=label,
        **extra,
    )


def test_policy_flags_high_reach_complaints_only() -> None:
    policy = ReachPolicy()
    assert policy.flagged(mention("hackernews", 100))
    assert not policy.flagged(mention("hackernews", 99))
    assert not policy.flagged(mention("hackernews", None))
    assert policy.flagged(mention("reddit", 250, "mixed"))
    assert not policy.flagged(mention("reddit", 250, "positive"))
    assert policy.high(mention("reddit", 250, "positive"))
    # A complaint intent whatever the tone.
    assert policy.flagged(mention("mastodon", 9000, "neutral", intents=["billing"]))
    assert not policy.flagged(mention("mastodon", 9000, "neutral", intents=["question"]))
    # No threshold for the source, or 0: never.
    assert not policy.flagged(mention("rss", 10**6))
    off = ReachPolicy(thresholds={"hackernews": 0})
    assert not off.flagged(mention("hackernews", 10**6))
    assert list(ReachPolicy(thresholds={"reddit": 5, "github": 0}).sources()) == [("reddit", 5)]


def test_describe_a_stored_detail_safely() -> None:
    assert describe({"points": 312, "comments": 140}) == "312 points, 140 comments"
    assert describe({"x<y": 1, "ok": "nope", "thread_comments": 2}) == "2 comments in thread"
    assert describe(None) == "" and describe([1, 2]) == ""


@respx.mock
def test_a_poll_carries_reach_to_the_mentions() -> None:
    base = "https://hn.test/api/v1"
    (story,) = load_json("hn_algolia/search_by_date_story_query_apple.json")["hits"]
    hit = {**story, "points": 312, "num_comments": 140}
    respx.get(f"{base}/search_by_date").respond(
        json={"hits": [hit], "nbHits": 1, "nbPages": 1, "page": 0}
    )
    hn = HackerNewsSource(http(), base_url=base, clock=lambda: NOW, backfill_seconds=10**10)
    (m,) = hn.poll(None, ["apple"]).mentions
    assert (m.reach, describe(m.reach_detail)) == (312, "312 points, 140 comments")
