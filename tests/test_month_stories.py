"""Issue 18's synthetic month, with its planted stories: every mention of the month
(``tests/synthmonth.py``: real payload shapes through the sources' parsers, planted themes
and a planted shift) plus one link on four sources and one complaint copied across two,
polled day by day and source by source through the real pipeline (match, classify, route,
group, store) and delivered to the loopback fake Slack.

Each planted story is one parent alert plus replies in its thread, each posted once, and
the parent shows the story's final count; nothing else in the month groups except texts
that really are copies of one another. (The themes and the shift of the same month are
checked in tests/test_themes.py and tests/test_shifts.py; stories under SIGKILL in
tests/test_crash.py.)
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from earshot.config.settings import Secrets, parse_settings
from earshot.config.wiring import Earshot, build
from earshot.listener.models import Delivery, Mention
from earshot.listener.stories import jaccard, shingles

from . import synthmonth
from .fakeslack import FakeSlack
from .test_stories import (
    ALERT_LINK,
    HN_LINK,
    MASTODON_LINK,
    REDDIT_LINK,
    alerts,
    google_alert,
    hn,
    mastodon,
    reddit,
    story_text,
)

#: A complaint copied from Reddit to Bluesky (a few words added), in the third week.
COPIED = (
    "Since yesterday's update acme charges my card twice for the same monthly plan and the "
    "refund button just spins forever, support has not answered in three days"
)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def make_app(slack: FakeSlack, database_url: str) -> Earshot:
    settings = parse_settings(
        {
            "product": {
                "name": "Acme",
                "queries": [synthmonth.OURS, {"q": synthmonth.RIVAL, "tag": "competitor"}],
            },
            "slack": {
                "api_url": slack.api_url,
                "alerts_channel": "#cx-alerts",
                "min_interval": 0,
                # Storms and stories together are the crash test's; here every alert of
                # the month is its own message or a story reply.
                "storm_threshold": 0,
            },
            "sources": [
                {"type": "hackernews", "base_url": "https://hn.test/api/v1"},
                {"type": "reddit", "subreddits": ["acme"]},
                {"type": "mastodon", "base_url": "https://mastodon.test", "hashtags": ["acme"]},
                {"type": "bluesky"},
                {"type": "appstore", "app_id": "284815942"},
                {"type": "rss", "feeds": ["https://www.google.com/alerts/feeds/1/2"]},
            ],
        }
    )
    app = build(settings, Secrets(slack_bot_token="xoxb-test"), database=database_url)
    app.worker.per_channel_interval = 0.0
    return app


def planted_stories(app: Earshot, month: synthmonth.Month) -> dict[str, list[Mention]]:
    """The two planted stories, timed inside the month (second and third week)."""
    link_day = synthmonth.MONTH_START + timedelta(days=9, hours=14)
    link = [
        hn(app, "9001", "Acme outage postmortem: what went wrong", HN_LINK),
        reddit(app, "x1", "Acme explains yesterday's outage", REDDIT_LINK),
        mastodon(app, "1101", "<p>Read this about the Acme outage</p>", MASTODON_LINK),
        google_alert(app, ALERT_LINK, "Acme publishes its outage postmortem"),
    ]
    for minutes, mention in enumerate(link):
        mention.created_at = link_day + timedelta(minutes=10 * minutes)
    copy_day = synthmonth.MONTH_START + timedelta(days=16, hours=9)
    shapes = synthmonth._Shapes()
    rng = random.Random(18)
    copied = [
        shapes.parse("reddit", 990_001, COPIED, copy_day, rng),
        shapes.parse("bluesky", 990_002, f"{COPIED} (seen on reddit, same for me)", copy_day, rng),
    ]
    copied[1].created_at = copy_day + timedelta(minutes=40)
    return {"link": link, "copied": copied}


def test_the_months_planted_stories_are_each_one_parent_with_replies(
    slack: FakeSlack, database_url: str
) -> None:
    app = make_app(slack, database_url)
    try:
        month = synthmonth.build_month(weeks=3)
        planted = planted_stories(app, month)
        everything = sorted(
            [*month.mentions, *(m for ms in planted.values() for m in ms)],
            key=lambda m: m.created_at,
        )
        # Polled as the service does: each source's new items of the day in one ingest.
        polls: dict[tuple[str, str], list[Mention]] = defaultdict(list)
        for mention in everything:
            polls[(mention.created_at.date().isoformat(), mention.source)].append(mention)
        sources = {s.type: s for s in app.sources}
        for (_day, kind), mentions in polls.items():
            kept = [m for m in mentions if app.pipeline._match(sources[kind], m)]
            app.store.ingest(None, kept, None, app.pipeline._prepare, stories=app.pipeline.stories)
            app.worker.drain(timeout=60)

        with Session(app.store.engine) as session:
            stored = list(session.exec(select(Mention)))
            rows = list(session.exec(select(Delivery)))
        assert len(stored) == len(everything)
        assert rows and all(r.status == "sent" for r in rows), Counter(r.status for r in rows)
        posted = [m["metadata"]["event_payload"]["key"] for m in slack.messages]
        assert not [k for k, n in Counter(posted).items() if n > 1]  # nothing posted twice

        by_key = {(m.source, m.external_id): m for m in stored}
        by_story: dict[int, list[Mention]] = defaultdict(list)
        for m in stored:
            if m.story_id is not None:  # a short text without a link has no keys, no story
                by_story[m.story_id].append(m)
        messages = {m["metadata"]["event_payload"]["key"]: m for m in alerts(slack)}
        planted_ids = set()
        for name, members in planted.items():
            story = {by_key[(m.source, m.external_id)].story_id for m in members}
            assert len(story) == 1, (name, story)  # one story
            (story_id,) = story
            planted_ids.add(story_id)
            assert len(by_story[story_id]) == len(members), name  # and nothing else in it
            ids = {by_key[(m.source, m.external_id)].id for m in members}
            story_alerts = [r for r in rows if r.kind == "alert" and r.mention_id in ids]
            parents = [r for r in story_alerts if "story" not in r.payload]
            assert len(parents) == 1, name
            parent = messages[parents[0].idempotency_key]
            assert "thread_ts" not in parent
            replies = [messages[r.idempotency_key] for r in story_alerts if r is not parents[0]]
            assert [r.get("thread_ts") for r in replies] == [parent["ts"]] * len(replies)
            assert f"{len(members)} mentions" in story_text(parent), (
                name,
                [
                    e["text"]
                    for b in parent["blocks"]
                    if b.get("block_id") == "earshot_story"
                    for e in b["elements"]
                ],
            )
        assert len(story_alerts) >= 2
        # Elsewhere in the month only real copies group: the background reuses real texts.
        others = [ms for sid, ms in by_story.items() if len(ms) > 1 and sid not in planted_ids]
        for members in others:
            first = shingles(members[0].body)
            assert all(jaccard(first, shingles(m.body)) >= 0.5 for m in members), [
                m.body[:80] for m in members
            ]
        themed = {m.external_id for ms in others for m in ms} & set(month.planted)
        print(
            f"\n{len(stored)} mentions, {len(by_story)} stories, planted 2 found, "
            f"{len(others)} other groups of copies ({len(themed)} themed mentions among them)"
        )
    finally:
        app.close()
