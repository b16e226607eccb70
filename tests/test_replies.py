"""Replies to customers: limits, drafts, each writer against its strict fake, and sending
exactly once through the ``replies`` table (a 5xx after the platform stored the reply, a
sender that stopped between the platform's answer and "sent", a platform earshot cannot
ask). The Slack side (button, modal, approval) is in tests/test_replies_slack.py; a real
kill of the sending process in tests/test_replies_crash.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from earshot.listener import workflow as wf
from earshot.listener.models import Delivery, Mention, Reply, utcnow
from earshot.listener.sources.appstoreconnect import AppStoreConnectSource
from earshot.listener.sources.base import RateLimiter, SourceHttp
from earshot.listener.sources.googleplay import GooglePlaySource
from earshot.listener.store import Store
from earshot.responders.replies.appstoreconnect import AppStoreConnectWriter
from earshot.responders.replies.base import Posted, ReplyFatal, ReplyRetry, Writer
from earshot.responders.replies.bluesky import BlueskyWriter, tid
from earshot.responders.replies.discourse import DiscourseWriter
from earshot.responders.replies.github import GitHubWriter
from earshot.responders.replies.googleplay import GooglePlayWriter
from earshot.responders.replies.limits import graphemes, problem
from earshot.responders.replies.mastodon import MastodonWriter
from earshot.responders.replies.reddit import RedditWriter
from earshot.responders.replies.templates import Template, draft
from earshot.responders.replies.worker import ReplySender

from .fakereplies import (
    FakeAppStoreConnectReplies,
    FakeBluesky,
    FakeDiscourse,
    FakeGitHub,
    FakeGooglePlayReplies,
    FakeMastodon,
    FakeReddit,
)
from .fakestores import ec_key, pem, play_review, rsa_key, service_account

FAMILY = "👨\u200d👩\u200d👧\u200d👦"  # one grapheme, seven code points
E_ACUTE = "e\u0301"  # one grapheme, two code points
APP = "1234567890"
PACKAGE = "com.acme.notes"


def http(transport: httpx.BaseTransport) -> SourceHttp:
    return SourceHttp(httpx.Client(transport=transport), RateLimiter(None))


# -- limits and drafts --------------------------------------------------------------------


def test_limits_count_in_each_platforms_unit() -> None:
    assert graphemes(FAMILY) == 1 and len(FAMILY) == 7
    assert graphemes("🇸🇪") == 1
    # 300 graphemes of 600 code points: Bluesky takes it (900 bytes).
    assert problem("bluesky", E_ACUTE * 300) is None
    assert problem("bluesky", E_ACUTE * 301) == (
        "301 graphemes: Bluesky takes at most 300 graphemes (1 too many)."
    )
    # 300 family emoji are 300 graphemes but 7,500 bytes: over Bluesky's 3,000.
    assert "3000 bytes" in (problem("bluesky", FAMILY * 300) or "")
    assert problem("googleplay", "x" * 350) is None
    assert problem("googleplay", "x" * 351) == (
        "351 characters: Google Play takes at most 350 characters (1 too many)."
    )
    # Mastodon counts a link as 23 characters and a remote mention by its local part.
    link = "https://example.com/" + "a" * 200
    assert problem("mastodon", "x" * 470 + " " + link) is None
    assert problem("mastodon", "@ana@mastodon.social " + "x" * 484) is None
    assert "501 characters" in (problem("mastodon", "x" * 501) or "")
    assert problem("github", "   ") == "The reply is empty."
    assert problem("discourse", "Thanks!") == "Discourse takes at least 20 characters."


def test_the_draft_is_the_first_template_that_matches_with_the_variables_filled() -> None:
    templates = [
        Template(
            "Sorry {author}, a fix is coming. {lead}, {product}", source="googleplay", max_rating=2
        ),
        Template("Hi {author}, thanks for the bug report! {lead}", intent="bug"),
        Template("Thanks {author}! {x} stays as written", sentiment="positive"),
    ]
    mention = Mention(
        source="googleplay",
        external_id="g",
        author="Ana",
        created_at=utcnow(),
        rating=1,
        intents=["bug"],
        sentiment_label="negative",
    )
    assert draft(templates, mention, product="Acme", lead="Bo") == (
        "Sorry Ana, a fix is coming. Bo, Acme"
    )
    mention.rating = 4  # the first no longer matches; the bug one does
    assert draft(templates, mention, product="Acme", lead="Bo") == (
        "Hi Ana, thanks for the bug report! Bo"
    )
    praise = Mention(
        source="bluesky",
        external_id="b",
        author="cy",
        created_at=utcnow(),
        sentiment_label="positive",
    )
    assert draft(templates, praise, product="Acme", lead="Bo") == "Thanks cy! {x} stays as written"
    assert (
        draft(
            templates,
            Mention(source="rss", external_id="r", created_at=utcnow()),
            product="Acme",
            lead="Bo",
        )
        == ""
    )


# -- the writers against their fakes ---------------------------------------------------------


class Platform:
    """One platform: its fake, a writer for it, and a mention it can answer."""

    def __init__(
        self, name: str, fake: Any, writer: Writer, mention: Mention, held: Callable[[], list[str]]
    ) -> None:
        self.name, self.fake, self.writer, self.mention, self.held = (
            name,
            fake,
            writer,
            mention,
            held,
        )


def mastodon() -> Platform:
    fake = FakeMastodon()
    status = fake.add_status("111", "acme lost my notes")
    mention = Mention(
        source="mastodon",
        external_id=status["uri"],
        url=status["url"],
        author="customer",
        text="acme lost my notes",
        created_at=utcnow(),
        raw=status,
    )
    writer = MastodonWriter(http(fake.transport), fake.base, fake.token)
    return Platform("mastodon", fake, writer, mention, lambda: [s["content"] for s in fake.ours()])


def bluesky() -> Platform:
    fake = FakeBluesky()
    post = fake.add_post("did:plc:customer", "3kabcdefghij2", "acme ate my notes")
    mention = Mention(
        source="bluesky",
        external_id=post["uri"],
        author="customer.bsky.social",
        text="acme ate my notes",
        created_at=utcnow(),
        raw=post,
    )
    writer = BlueskyWriter(http(fake.transport), "https://bsky.example", fake.handle, fake.password)
    return Platform(
        "bluesky", fake, writer, mention, lambda: [r["value"]["text"] for r in fake.ours()]
    )


def appstore() -> Platform:
    key = ec_key()
    fake = FakeAppStoreConnectReplies(key)
    fake.add_review(APP, "rev-1", "2026-12-01T10:00:00-07:00", rating=1, body="Crashes")
    source = AppStoreConnectSource(
        http(fake.transport),
        key_id=fake.key_id,
        issuer_id=fake.issuer_id,
        private_key=pem(key),
        app_id=APP,
    )
    mention = Mention(
        source="appstoreconnect",
        external_id="rev-1",
        author="reviewer",
        url=f"https://apps.apple.com/app/id{APP}?see-all=reviews",
        text="Crashes",
        rating=1,
        created_at=utcnow(),
    )
    return Platform(
        "appstoreconnect",
        fake,
        AppStoreConnectWriter(source),
        mention,
        lambda: [r["attributes"]["responseBody"] for r in fake.responses.values()],
    )


def googleplay() -> Platform:
    key = rsa_key()
    account = service_account(key)
    fake = FakeGooglePlayReplies(account, key)
    fake.reviews[PACKAGE] = [play_review("g-1", 1764590000, "Crashes on start", stars=1)]
    import json

    source = GooglePlaySource(
        http(fake.transport), service_account_json=json.dumps(account), package_name=PACKAGE
    )
    mention = Mention(
        source="googleplay",
        external_id="g-1",
        author="A Google user",
        text="Crashes on start",
        rating=1,
        created_at=utcnow(),
    )

    def held() -> list[str]:
        return [
            c["developerComment"]["text"]
            for r in fake.reviews[PACKAGE]
            for c in r["comments"]
            if "developerComment" in c
        ]

    return Platform("googleplay", fake, GooglePlayWriter(source), mention, held)


def github() -> Platform:
    fake = FakeGitHub()
    issue = fake.add_issue("acme/notes", 42)
    mention = Mention(
        source="github",
        external_id=str(issue["id"]),
        url=issue["html_url"],
        author="customer",
        text=issue["body"],
        created_at=utcnow(),
        raw=issue,
    )
    writer = GitHubWriter(http(fake.transport), "https://api.github.example", fake.token)
    return Platform(
        "github", fake, writer, mention, lambda: [c["body"] for c in fake.comments["acme/notes#42"]]
    )


def discourse() -> Platform:
    fake = FakeDiscourse()
    post = fake.add_post(7, 1, "the app crashes when I sync")
    mention = Mention(
        source="discourse",
        external_id=f"forum.example:{post['id']}",
        author="customer",
        text="the app crashes when I sync",
        created_at=utcnow(),
        raw=post,
    )
    writer = DiscourseWriter(http(fake.transport), "https://forum.example", fake.key, fake.username)
    return Platform(
        "discourse",
        fake,
        writer,
        mention,
        lambda: (
            [p["cooked"] for p in fake.ours()]
            if hasattr(fake, "ours")
            else [p["cooked"] for p in fake.topics[7] if p["username"] == fake.username]
        ),
    )


def github_discussion() -> Platform:
    fake = FakeGitHub()
    node = fake.add_discussion("acme/notes", 3)
    mention = Mention(
        source="github",
        external_id=node["id"],
        url=node["url"],
        author="customer",
        text=node["body"],
        created_at=utcnow(),
        raw=node,
    )
    writer = GitHubWriter(http(fake.transport), "https://api.github.example", fake.token)
    return Platform(
        "github", fake, writer, mention, lambda: [c["body"] for c in fake.comments[node["id"]]]
    )


def reddit() -> Platform:
    from earshot.listener.sources.reddit import RedditSource

    fake = FakeReddit()
    post = fake.add_post("abc123", "acme lost my notes")
    source = RedditSource(
        http(fake.transport),
        base_url="https://oauth.reddit.test",
        auth_url=fake.auth,
        subreddits=["acme"],
        client_id=fake.client[0],
        client_secret=fake.client[1],
        username=fake.account[0],
        password=fake.account[1],
    )
    mention = Mention(
        source="reddit",
        external_id=post["name"],
        author="customer",
        text=post["selftext"],
        created_at=utcnow(),
        raw=post,
    )
    return Platform(
        "reddit", fake, RedditWriter(source), mention, lambda: [t["body"] for t in fake.ours()]
    )


PLATFORMS = {
    "mastodon": mastodon,
    "bluesky": bluesky,
    "appstoreconnect": appstore,
    "googleplay": googleplay,
    "github": github,
    "discourse": discourse,
    "reddit": reddit,
    "github_discussion": github_discussion,
}
TEXT = "Sorry about that, Ana: version 2.0.2 fixes the crash on start. Bo, Acme"


@pytest.mark.parametrize("name", sorted(PLATFORMS))
def test_each_writer_posts_a_reply_its_platform_accepts(name: str) -> None:
    platform = PLATFORMS[name]()
    at = utcnow()  # when the first attempt began: the same for every attempt
    posted = platform.writer.post(platform.mention, TEXT, "reply:1:V1", at)
    assert posted.remote_id
    assert len(platform.held()) == 1 and TEXT in platform.held()[0]
    found = platform.writer.find(platform.mention, TEXT, "reply:1:V1", at)
    assert found is not None and found.remote_id == posted.remote_id


@pytest.mark.parametrize(
    ("name", "text", "refusal"),
    [
        ("bluesky", E_ACUTE * 301, "300 graphemes"),
        ("googleplay", "x" * 351, "350 characters"),
        ("mastodon", "x" * 501, "character limit of 500"),
        ("appstoreconnect", "x" * 5971, "5970 characters"),
        ("discourse", "too short", "too short"),
        ("reddit", "x" * 10001, "TOO_LONG"),
        ("github_discussion", "x" * 65537, "too long"),
    ],
)
def test_the_fakes_refuse_what_the_platforms_refuse(name: str, text: str, refusal: str) -> None:
    platform = PLATFORMS[name]()
    with pytest.raises(ReplyFatal, match=refusal):
        platform.writer.post(platform.mention, text, "reply:1:V1", utcnow())
    assert platform.held() == []


def test_a_second_app_store_response_replaces_the_first() -> None:
    platform = appstore()
    first = platform.writer.post(platform.mention, "First answer", "reply:1:V1", utcnow())
    second = platform.writer.post(platform.mention, "Second answer", "reply:2:V2", utcnow())
    assert platform.fake.replaced == 1
    assert platform.held() == ["Second answer"]
    assert first.remote_id != second.remote_id
    # The lookup finds the response only while it holds this reply's text.
    assert platform.writer.find(platform.mention, "First answer", "k", utcnow()) is None


def test_bluesky_replies_to_the_thread_root_and_its_rkey_is_a_stable_tid() -> None:
    platform = bluesky()
    fake: FakeBluesky = platform.fake
    root = fake.records[platform.mention.external_id]
    reply_post = fake.add_post("did:plc:other", "3kabcdefghij3", "me too")
    reply_post["record"]["reply"] = {
        "root": {"uri": root["uri"], "cid": root["cid"]},
        "parent": {"uri": root["uri"], "cid": root["cid"]},
    }
    mention = Mention(
        source="bluesky", external_id=reply_post["uri"], created_at=utcnow(), raw=reply_post
    )
    at = utcnow()
    platform.writer.post(mention, "We are on it", "reply:9:V9", at)
    (ours,) = fake.ours()
    assert ours["value"]["reply"]["root"]["uri"] == root["uri"]
    assert ours["value"]["reply"]["parent"]["uri"] == reply_post["uri"]
    assert ours["uri"].endswith("/" + tid(at, "reply:9:V9"))
    assert tid(at, "reply:9:V9") == tid(at, "reply:9:V9") and len(tid(at, "k")) == 13


# -- sending exactly once --------------------------------------------------------------------


def queue(store: Store, platform: Platform, text: str = TEXT) -> Reply:
    store.ingest(None, [platform.mention], None, lambda m: [])
    assert platform.mention.id is not None
    change = wf.draft_reply(
        store,
        platform.mention.id,
        key=f"reply:{platform.mention.id}:V1",
        platform=platform.name,
        text=text,
        actor=wf.Actor("U111", "bo"),
        approval=False,
        alert=("C0ALERTS", "1700000000.000100"),
    )
    assert change.changed and change.reply is not None
    return change.reply


def sender(store: Store, platform: Platform) -> ReplySender:
    return ReplySender(store, {platform.name: platform.writer}, backoff_base=0.0)


@pytest.mark.parametrize("name", sorted(PLATFORMS))
def test_a_5xx_after_the_platform_stored_the_reply_posts_it_once(store: Store, name: str) -> None:
    platform = PLATFORMS[name]()
    reply = queue(store, platform)
    platform.fake.store_then_fail.append(502)
    first = sender(store, platform).run_once()
    assert (first.sent, first.retried) == (0, 1)
    assert len(platform.held()) == 1  # the platform has it; earshot does not know yet
    second = sender(store, platform).run_once()
    assert (second.found, second.sent) == (1, 0)
    assert len(platform.held()) == 1 and platform.fake.stored == 1
    stored = wf.get_reply(store, reply.id or 0)
    assert stored is not None and stored.status == "sent" and stored.remote_id
    assert stored.attempts == 2


@pytest.mark.parametrize("name", sorted(PLATFORMS))
def test_a_sender_stopped_after_the_platforms_answer_does_not_post_again(
    store: Store, name: str
) -> None:
    platform = PLATFORMS[name]()
    reply = queue(store, platform)
    # The first sender claims it, the platform stores the reply and answers, and the
    # sender stops before it can write "sent" (its lease runs out).
    (claimed,) = wf.claim_replies(store, lease_seconds=0.0)
    platform.writer.post(
        claimed.mention,
        claimed.reply.text,
        claimed.reply.key,
        claimed.reply.attempted_at or utcnow(),
    )
    report = sender(store, platform).run_once()
    assert (report.found, report.sent) == (1, 0)
    assert len(platform.held()) == 1
    assert (wf.get_reply(store, reply.id or 0) or Reply()).status == "sent"


def test_a_failure_before_the_platform_stored_it_is_looked_up_then_posted(store: Store) -> None:
    platform = mastodon()
    queue(store, platform)
    platform.fake.fail_before_store.append(503)
    assert sender(store, platform).run_once().retried == 1
    report = sender(store, platform).run_once()
    assert (report.found, report.sent) == (0, 1)
    assert len(platform.held()) == 1


def test_sent_stores_the_reply_marks_the_mention_handled_and_notes_it_in_the_thread(
    store: Store,
) -> None:
    platform = github()
    reply = queue(store, platform)
    assert sender(store, platform).run_once().sent == 1
    stored = wf.get_reply(store, reply.id or 0)
    assert stored is not None and stored.remote_url and "#issuecomment-" in stored.remote_url
    mention = wf.get_mention(store, platform.mention.id or 0)
    assert mention is not None and mention.status == "handled"
    assert mention.resolved_by == "U111" and mention.resolved_at == stored.sent_at
    trail = [(e.action, e.user_id, e.detail.get("url")) for e in wf.events(store, mention.id or 0)]
    assert trail == [("reply_queued", "U111", None), ("replied", "U111", stored.remote_url)]
    with Session(store.engine) as session:
        (note,) = session.exec(select(Delivery).where(Delivery.kind == "thread_reply")).all()
    assert note.payload["thread_ts"] == "1700000000.000100"
    assert "Replied on GitHub by <@U111>" in note.payload["text"]
    assert stored.remote_url in note.payload["text"]
    # Another round sends nothing more.
    assert sender(store, platform).run_once().sent == 0
    assert len(platform.held()) == 1


class Blind(Writer):
    """A platform earshot cannot ask whether a post landed."""

    platform = "blind"
    can_look_up = False

    def __init__(self) -> None:
        self.posts: list[str] = []

    def post(self, mention: Mention, text: str, key: str, attempted_at: datetime) -> Posted:
        self.posts.append(text)
        raise ReplyRetry("502 after storing", uncertain=True)


def test_a_platform_that_cannot_be_asked_gets_no_second_post_but_a_human(store: Store) -> None:
    mention = Mention(source="blind", external_id="b-1", created_at=utcnow())
    store.ingest(None, [mention], None, lambda m: [])
    change = wf.draft_reply(
        store,
        mention.id or 0,
        key="reply:b",
        platform="blind",
        text="hi",
        actor=wf.Actor("U111"),
        approval=False,
        alert=("C1", "1.2"),
    )
    writer = Blind()
    run = ReplySender(store, {"blind": writer}, backoff_base=0.0)
    assert run.run_once().retried == 1
    assert run.run_once().uncertain == 1
    assert writer.posts == ["hi"]  # once
    stored = wf.get_reply(store, int(change.reply.id or 0) if change.reply else 0)
    assert stored is not None and stored.status == "uncertain"
    with Session(store.engine) as session:
        (note,) = session.exec(select(Delivery).where(Delivery.kind == "thread_reply")).all()
    assert "not posted again" in note.payload["text"]
    # A person who checked may reply again: an uncertain reply is not a live one.
    again = wf.draft_reply(
        store,
        mention.id or 0,
        key="reply:b2",
        platform="blind",
        text="hi",
        actor=wf.Actor("U111"),
        approval=False,
    )
    assert again.changed


def test_a_refused_reply_fails_with_the_platforms_reason_and_tells_the_author(
    store: Store,
) -> None:
    platform = googleplay()
    reply = queue(store, platform, "x" * 351)  # past the modal's check, say an old draft
    assert sender(store, platform).run_once().failed == 1
    stored = wf.get_reply(store, reply.id or 0)
    assert stored is not None and stored.status == "failed"
    assert "350 characters" in (stored.last_error or "")
    assert platform.held() == []


def test_one_live_reply_per_mention_and_a_redelivered_submission_stores_one(
    store: Store,
) -> None:
    platform = mastodon()
    first = queue(store, platform)
    again = wf.draft_reply(
        store,
        platform.mention.id or 0,
        key=first.key,
        platform="mastodon",
        text="x",
        actor=wf.Actor("U111"),
        approval=False,
    )
    assert again.duplicate and again.reply is not None and again.reply.id == first.id
    other = wf.draft_reply(
        store,
        platform.mention.id or 0,
        key="reply:other",
        platform="mastodon",
        text="x",
        actor=wf.Actor("U222"),
        approval=False,
    )
    assert not other.changed and "<@U111> answered this already" in (other.problem or "")
    assert len(wf.replies_of(store, platform.mention.id or 0)) == 1


# -- settings and wiring ----------------------------------------------------------------------


def test_writers_are_built_for_the_platforms_earshot_has_credentials_for() -> None:
    import tomllib
    from pathlib import Path

    from earshot.config.settings import ConfigError, parse_settings
    from earshot.config.wiring import build_sources, build_writers, reply_config

    data = tomllib.loads((Path(__file__).parent.parent / "config/earshot.example.toml").read_text())
    data["sources"] = [
        {"type": "mastodon", "base_url": "https://mastodon.example", "hashtags": ["acme"]},
        {"type": "github"},
        {"type": "hackernews"},
        {"type": "reddit", "subreddits": ["acme"]},  # without OAuth: copy and "I replied"
    ]
    settings = parse_settings(data, "t.toml")
    sources, _ = build_sources(settings, httpx.Client(), env={})
    env = {"MASTODON_ACCESS_TOKEN": "token"}
    writers = build_writers(settings, sources, env)
    assert sorted(writers) == ["mastodon"]  # GitHub has no GITHUB_TOKEN; HN takes no writes
    assert isinstance(writers["mastodon"], MastodonWriter)
    assert writers["mastodon"].base_url == "https://mastodon.example"
    config = reply_config(settings, writers, None)
    assert config is not None and [t.source for t in config.templates] == ["googleplay", None, None]

    data["replies"]["platforms"] = ["github"]
    assert build_writers(parse_settings(data, "t.toml"), sources, env) == {}
    data["replies"]["platforms"] = ["hackernews"]
    data["replies"]["templates"][0]["source"] = "googleplya"
    with pytest.raises(ConfigError) as info:
        parse_settings(data, "t.toml")
    shown = "\n".join(info.value.problems)
    assert "earshot cannot post to 'hackernews'" in shown
    assert "did you mean 'googleplay'?" in shown
