"""Issue 18, one story, one thread: one link on four sources is one parent alert with the
other three in its thread and a live count; a copied complaint is one story; different
articles, different complaints and a homepage link stay apart.

Mentions are made by the sources' own parsers from real captured payloads (HN Algolia,
Reddit, Mastodon, a Google Alert), edited to share one link, each with its own tracking
parameters or redirect wrapper; they are matched, classified, routed and stored as a poll
does, and delivered to the loopback fake Slack. SQLite and the real PostgreSQL.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import feedparser
import pytest

from earshot.config.settings import Secrets, parse_settings
from earshot.config.wiring import Earshot, build
from earshot.listener import workflow as wf
from earshot.listener.models import Mention
from earshot.listener.sources.base import Source
from earshot.listener.stories import BANDS, canonical_url, near_keys, near_keys_many

from .conftest import REAL, load_json
from .fakeslack import FakeSlack

ARTICLE = "https://blog.acme.example/2026/12/outage-postmortem"
#: How each source gives the one link: tracking parameters, a trailing slash, wrappers.
HN_LINK = ARTICLE + "?utm_source=hackernews&utm_medium=social"
REDDIT_LINK = "https://www.blog.acme.example/2026/12/outage-postmortem/?ref=reddit&fbclid=IwAR0x"
MASTODON_LINK = (
    "https://l.facebook.com/l.php?u=https%3A%2F%2Fblog.acme.example%2F2026%2F12%2F"
    "outage-postmortem%3Futm_campaign%3Dfed&h=AT3x"
)
ALERT_LINK = (
    "https://www.google.com/url?rct=j&sa=t&url=" + ARTICLE + "%3Fgclid%3Dabc"
    "&ct=ga&cd=CAIyHGU4ZTJkZjQ3OTVkYmIzMTc6Y28uanA6ZW46SlA&usg=AFQjCNEtQrh4XLXd2sVV4nUaaLRLTH41gA"
)
COMPLAINT = (
    "Acme has been down for three hours, checkout fails with an error every time and support "
    "does not answer, this is terrible"
)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def make_app(slack: FakeSlack, database_url: str, **stories: Any) -> Earshot:
    settings = parse_settings(
        {
            "product": {"name": "Acme", "queries": ["acme"]},
            "slack": {"api_url": slack.api_url, "alerts_channel": "#cx-alerts", "min_interval": 0},
            # Every mention of acme alerts, whatever its tone: the grouping is under test.
            "routes": [{"query": "acme", "action": "instant", "channel": "#cx-alerts"}],
            "stories": stories,
            "sources": [
                {"type": "hackernews", "base_url": "https://hn.test/api/v1"},
                {"type": "reddit", "subreddits": ["acme"]},
                {"type": "mastodon", "base_url": "https://mastodon.test", "hashtags": ["acme"]},
                {"type": "rss", "feeds": ["https://www.google.com/alerts/feeds/1/2"]},
            ],
        }
    )
    app = build(settings, Secrets(slack_bot_token="xoxb-test"), database=database_url)
    app.worker.per_channel_interval = 0.0
    return app


def source(app: Earshot, kind: str) -> Source:
    return next(s for s in app.sources if s.type == kind)


def hn(app: Earshot, object_id: str, title: str, url: str | None) -> Mention:
    hit = copy.deepcopy(load_json("hn_algolia/search_by_date_story_query_apple.json")["hits"][0])
    hit.update({"objectID": object_id, "title": title, "url": url, "created_at_i": 1_764_000_000})
    return source(app, "hackernews")._mention(hit)  # type: ignore[attr-defined,no-any-return]


def reddit(app: Earshot, name: str, title: str, url: str) -> Mention:
    child = copy.deepcopy(
        load_json("reddit/search_r_all_sort_relevance.json")["data"]["children"][0]
    )
    child["data"].update(
        {"name": f"t3_{name}", "id": name, "title": title, "selftext": "", "is_self": False}
    )
    child["data"]["url"] = url
    return source(app, "reddit")._mention(child)  # type: ignore[attr-defined,no-any-return]


def mastodon(app: Earshot, status_id: str, html: str, card_url: str | None) -> Mention:
    status = copy.deepcopy(load_json("mastodon/timelines_tag_page1.json")[0])
    status.update(
        {
            "id": status_id,
            "uri": f"https://mastodon.test/users/a/statuses/{status_id}",
            "url": f"https://mastodon.test/@a/{status_id}",
            "content": html,
            "spoiler_text": "",
        }
    )
    status["card"] = (
        None if card_url is None else {"url": card_url, "title": "Outage", "type": "link"}
    )
    return source(app, "mastodon")._mention(status)  # type: ignore[attr-defined,no-any-return]


def google_alert(app: Earshot, link: str, title: str) -> Mention:
    """The first entry of the real Google Alert feed, its link and title replaced."""
    xml = (REAL / "google_alerts" / "google_alert_slack.xml").read_text("utf-8")
    entry = feedparser.parse(xml.encode()).entries[0]
    entry["link"] = link
    entry["title"] = title
    feed = "https://www.google.com/alerts/feeds/1/2"
    return source(app, "rss")._mention(entry, feed, time.time())  # type: ignore[attr-defined,no-any-return]


def ingest(app: Earshot, mentions: list[Mention]) -> None:
    """What a poll does with what the sources returned: match, classify, route, store."""
    for mention in mentions:
        kind = mention.source
        kept = [m for m in [mention] if app.pipeline._match(source(app, kind), m)]
        assert kept, f"{kind} mention did not match: {mention.body[:80]!r}"
        app.store.ingest(
            None,
            kept,
            None,
            app.pipeline._prepare,
            storm=app.pipeline.storm,
            stories=app.pipeline.stories,
        )


def alerts(slack: FakeSlack) -> list[dict[str, Any]]:
    return [
        m for m in slack.messages if (m.get("metadata") or {}).get("event_type") == "earshot_alert"
    ]


def story_text(message: dict[str, Any]) -> str:
    return json.dumps([b for b in message["blocks"] if b.get("block_id") == "earshot_story"])


def test_the_four_shapes_of_one_link_are_one_canonical_url() -> None:
    assert {canonical_url(u) for u in (HN_LINK, REDDIT_LINK, MASTODON_LINK, ALERT_LINK)} == {
        ARTICLE
    }


def test_one_link_on_four_sources_is_one_parent_with_three_replies_and_a_live_count(
    slack: FakeSlack, database_url: str
) -> None:
    app = make_app(slack, database_url)
    try:
        ingest(app, [hn(app, "9001", "Acme outage postmortem: what went wrong", HN_LINK)])
        app.worker.drain(timeout=30)
        ingest(
            app,
            [
                reddit(app, "x1", "Acme explains yesterday's outage", REDDIT_LINK),
                mastodon(app, "1101", "<p>Read this about the Acme outage</p>", MASTODON_LINK),
                google_alert(app, ALERT_LINK, "Acme publishes its outage postmortem"),
            ],
        )
        app.worker.drain(timeout=30)
        posted = alerts(slack)
        assert len(posted) == 4
        parent, *replies = posted
        assert "thread_ts" not in parent
        assert [r.get("thread_ts") for r in replies] == [parent["ts"]] * 3
        # The parent shows the live count: edited in place after each reply.
        assert slack.updates, "the parent was never updated"
        assert all(u["ts"] == parent["ts"] for u in slack.updates)
        shown = story_text(parent)
        assert "Also on Mastodon, Reddit, RSS - 4 mentions" in shown, shown
        assert "4 mentions" in parent["text"]
        assert "Hacker News:" in shown and "Reddit:" in shown
        # Still the alert it was: its buttons and its key.
        assert any(b.get("type") == "actions" for b in parent["blocks"])
        assert parent["metadata"]["event_payload"]["key"] == "alert:hackernews:9001:#cx-alerts"
        keys = [m["metadata"]["event_payload"]["key"] for m in posted]
        assert len(set(keys)) == 4
    finally:
        app.close()


def test_the_live_count_keeps_a_handled_alert_closed(slack: FakeSlack, database_url: str) -> None:
    app = make_app(slack, database_url)
    try:
        ingest(app, [hn(app, "9001", "Acme outage postmortem: what went wrong", HN_LINK)])
        app.worker.drain(timeout=30)
        mention_id = next(m.mention_id for m in _rows(app) if m.kind == "alert")
        assert mention_id is not None
        wf.transition(app.store, mention_id, "handled", wf.Actor("U1", "lead"))
        ingest(app, [reddit(app, "x1", "Acme explains yesterday's outage", REDDIT_LINK)])
        app.worker.drain(timeout=30)
        parent = alerts(slack)[0]
        assert "2 mentions" in story_text(parent)
        assert not any(
            b.get("type") == "actions" and len(b["elements"]) > 1 for b in parent["blocks"]
        )
        assert "Handled" in json.dumps(parent["blocks"])
    finally:
        app.close()


def _rows(app: Earshot) -> list[Any]:
    from sqlmodel import Session, select

    from earshot.listener.models import Delivery

    with Session(app.store.engine) as session:
        rows = list(session.exec(select(Delivery)))
        for row in rows:
            session.expunge(row)
        return rows


def test_a_complaint_copied_across_two_sources_is_one_story(
    slack: FakeSlack, database_url: str
) -> None:
    app = make_app(slack, database_url)
    try:
        ingest(
            app,
            [
                mastodon(app, "2001", f"<p>{COMPLAINT} #acme</p>", None),
                reddit(app, "y1", "Anyone else? " + COMPLAINT, "https://i.redd.it/abc.png"),
            ],
        )
        app.worker.drain(timeout=30)
        parent, reply = alerts(slack)
        assert reply.get("thread_ts") == parent["ts"]
        assert "2 mentions" in story_text(parent)
    finally:
        app.close()


def test_near_duplicates_can_be_switched_off(slack: FakeSlack, database_url: str) -> None:
    app = make_app(slack, database_url, near_duplicate=False)
    try:
        ingest(
            app,
            [
                mastodon(app, "2001", f"<p>{COMPLAINT}</p>", None),
                reddit(app, "y1", COMPLAINT, "https://i.redd.it/abc.png"),
            ],
        )
        app.worker.drain(timeout=30)
        assert not any(m.get("thread_ts") for m in alerts(slack))
    finally:
        app.close()


def test_false_merges_stay_apart(slack: FakeSlack, database_url: str) -> None:
    app = make_app(slack, database_url)
    try:
        ingest(
            app,
            [
                # Two different articles on one domain.
                hn(app, "1", "Acme raises prices", "https://blog.acme.example/2026/12/pricing"),
                hn(app, "2", "Acme ships dark mode", "https://blog.acme.example/2026/12/dark-mode"),
                # A link to the product's homepage is not a story.
                hn(app, "3", "Acme is hiring", "https://www.acme.example/?utm_source=hn"),
                reddit(app, "h1", "Acme landing page redesign", "https://acme.example/"),
                # Two different complaints that share a template phrase (real app reviews).
                mastodon(
                    app,
                    "3001",
                    "<p>Acme: awsome!!!! great app must have for any star wars fan</p>",
                    None,
                ),
                mastodon(
                    app,
                    "3002",
                    "<p>Acme: very cool widget! a must have for any star wars fan.</p>",
                    None,
                ),
                mastodon(
                    app,
                    "3003",
                    "<p>Acme crashes when I upload a photo, please fix it, I need it for work</p>",
                    None,
                ),
                mastodon(
                    app,
                    "3004",
                    "<p>Acme logs me out after each update, please fix it, I need it for work</p>",
                    None,
                ),
            ],
        )
        app.worker.drain(timeout=30)
        posted = alerts(slack)
        assert len(posted) == 8
        assert not any(m.get("thread_ts") for m in posted)
        assert not slack.updates
    finally:
        app.close()


def test_a_late_update_never_lowers_the_count(slack: FakeSlack, database_url: str) -> None:
    app = make_app(slack, database_url)
    try:
        ingest(app, [hn(app, "9001", "Acme outage postmortem: what went wrong", HN_LINK)])
        app.worker.drain(timeout=30)
        # Two more members in two polls: updates for 2 and for 3 queued, none sent yet.
        ingest(app, [reddit(app, "x1", "Acme explains yesterday's outage", REDDIT_LINK)])
        ingest(
            app, [mastodon(app, "1101", "<p>Read this about the Acme outage</p>", MASTODON_LINK)]
        )
        keys = sorted(r.idempotency_key for r in _rows(app) if r.kind == "story_update")
        assert [k.rsplit(":", 1)[1] for k in keys] == ["2", "3"]
        app.worker.drain(timeout=30)
        assert len(slack.updates) == 2
        # Whatever order they ran in, each shows the count as it was when it was sent.
        assert all("3 mentions" in json.dumps(u["blocks"]) for u in slack.updates)
        assert "3 mentions" in story_text(alerts(slack)[0])
    finally:
        app.close()


def test_slack_refusing_the_edit_fails_the_update_only(slack: FakeSlack, database_url: str) -> None:
    app = make_app(slack, database_url)
    try:
        ingest(app, [hn(app, "9001", "Acme outage postmortem: what went wrong", HN_LINK)])
        app.worker.drain(timeout=30)
        slack.update_error = "cant_update_message"
        ingest(app, [reddit(app, "x1", "Acme explains yesterday's outage", REDDIT_LINK)])
        app.worker.drain(timeout=30)
        rows = {r.kind: r for r in _rows(app) if r.payload.get("story")}
        assert rows["alert"].status == "sent"  # the reply is in the thread all the same
        assert rows["story_update"].status == "failed"
        assert "cant_update_message" in (rows["story_update"].last_error or "")
        assert not [r for r in _rows(app) if r.kind == "health"]  # not a channel problem
    finally:
        app.close()


def test_fake_slack_refuses_edits_slack_refuses(slack: FakeSlack) -> None:
    from slack_sdk import WebClient

    from earshot.responders.base import DeliveryFatal
    from earshot.responders.blocks import RenderedMessage
    from earshot.responders.slack import SlackChannel

    channel = SlackChannel(WebClient(token="xoxb-test", base_url=slack.api_url))
    message = RenderedMessage(text="hello", blocks=[], metadata=None)
    sent = channel.send(
        __import__("earshot.responders.base", fromlist=["Outgoing"]).Outgoing(
            "#cx-alerts", message, "hello", "k1"
        )
    )
    assert sent.channel_id and sent.ts
    person = slack.post_as_user("#cx-alerts", "a person's message")
    for channel_id, ts, error in (
        (sent.channel_id, "1.000001", "message_not_found"),  # no such message
        ("C0OTHER01", sent.ts, "message_not_found"),  # not in that channel
        (sent.channel_id, person, "cant_update_message"),  # not the bot's
    ):
        with pytest.raises(DeliveryFatal, match=error):
            channel.update(channel_id, ts, RenderedMessage("edited", [], None))
    changed = channel.update(sent.channel_id, sent.ts, RenderedMessage("edited", [], None))
    assert changed.ts == sent.ts
    assert slack.messages[0]["text"] == "edited"


def test_stories_settings_are_checked_with_a_suggestion() -> None:
    base = {
        "product": {"name": "A", "queries": ["a"]},
        "sources": [{"type": "appstore", "app_id": 1}],
    }
    with pytest.raises(
        Exception, match=r"stories.near_dupliate: unknown key \(did you mean 'near_duplicate'\?\)"
    ):
        parse_settings({**base, "stories": {"near_dupliate": True}})
    settings = parse_settings({**base, "stories": {"window": "2d", "near_duplicate": False}})
    assert (settings.stories.window, settings.stories.near_duplicate) == (172800.0, False)


def test_sources_fill_the_link_a_post_is_about() -> None:
    """Bluesky's external embed (real capture) and Reddit's link post give ``link``; a
    Bluesky post without a card, a Reddit self post and an HN comment give none."""
    from earshot.listener.sources.bluesky import BlueskySource
    from earshot.listener.sources.hackernews import HackerNewsSource
    from earshot.listener.sources.reddit import RedditSource

    from .contract import make_http

    sky = BlueskySource(make_http(), base_url="https://bsky.test", clock=lambda: 1747676496.0)
    posts = load_json("bluesky/searchPosts_q_redistricting.json")["posts"]
    links = [sky._mention(p)[0].link for p in posts]
    assert links[1] == (
        "https://open.substack.com/pub/christackett/p/the-pawn-or-the-collaborator"
        "?r=92vnq&utm_medium=ios"
    )
    assert links[0] is None  # a link in the text only, no card
    reddit = RedditSource(make_http(), subreddits=["acme"])
    child = load_json("reddit/search_r_all_sort_relevance.json")["data"]["children"][0]
    assert child["data"]["is_self"] is True and reddit._mention(child).link is None
    hn = HackerNewsSource(make_http())
    comment = load_json("hn_algolia/search_by_date_comment_query_apple.json")["hits"][0]
    assert hn._mention(comment).link is None
    story = load_json("hn_algolia/search_by_date_story_query_apple.json")["hits"][0]
    assert hn._mention(story).link == story["url"]


def test_a_batch_of_texts_gets_the_keys_each_text_gets_alone() -> None:
    # One MinHash pass runs over the words of many texts: no shingle may span two texts.
    texts = [
        "the app crashes every time I open the settings page on my phone",
        "too short to key",
        "",
        "billing charged me twice this month and support never answered my emails",
        "the app crashes every time I open the settings page on my phone",
    ]
    batch = near_keys_many(texts)
    assert batch == [near_keys(t) for t in texts]
    assert [len(k) for k in batch] == [BANDS, 0, 0, BANDS, BANDS]
    assert batch[0] == batch[4] and not set(batch[0]) & set(batch[3])
    # A word moved is a different text, a repeated shingle changes nothing (a set).
    assert near_keys(texts[0]) != near_keys(texts[0].replace("every time", "time every"))
    loop = " ".join(["the app crashes"] * 3)  # three shingles, repeated
    assert near_keys(loop + " the app crashes") == near_keys(loop)
