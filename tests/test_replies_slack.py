"""Replying from the alert, end to end: signed Slack requests (real payload fixtures) drive
Reply, the modal, approval (send, edit, reject) and the sender against the strict Bluesky
fake; the alert, its thread and the digest's response times show who replied and when.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from earshot.listener import workflow as wf
from earshot.listener.digest import Digest, Period, build_digest, response_times
from earshot.listener.models import Delivery, Mention, utcnow
from earshot.listener.sources.base import RateLimiter, SourceHttp
from earshot.listener.store import Store
from earshot.responders.digest import digest_text, render_digest
from earshot.responders.replies.bluesky import BlueskyWriter
from earshot.responders.replies.slack import (
    VIEW_COPY,
    VIEW_EDIT,
    VIEW_SEND,
    ReplyConfig,
    alert_updater,
)
from earshot.responders.replies.templates import Template
from earshot.responders.replies.worker import ReplySender

from .fakereplies import FakeBluesky
from .fakeslack import FakeSlack
from .test_slack_interactions import World, action_ids, fixture, texts

APPROVER = "U999"
E_ACUTE = "e\u0301"


def check_modal(view: dict[str, Any]) -> None:
    """Refuse what views.open refuses (docs.slack.dev, "Modals" and the Block Kit limits)."""
    assert view["type"] == "modal" and len(view["callback_id"]) <= 255
    for part in ("title", "submit", "close"):
        assert view[part]["type"] == "plain_text" and 1 <= len(view[part]["text"]) <= 24, part
    assert len(view["private_metadata"]) <= 3000
    assert 1 <= len(view["blocks"]) <= 100
    for block in view["blocks"]:
        if block["type"] == "input":
            assert len(block["label"]["text"]) <= 2000
            assert len(block.get("hint", {}).get("text", "")) <= 2000
            element = block["element"]
            if element["type"] == "plain_text_input":
                assert element.get("max_length", 3000) <= 3000
                assert len(element.get("initial_value", "")) <= element.get("max_length", 3000)
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000


class Replies:
    """A world with the Bluesky fake and replying set up."""

    def __init__(self, store: Store, slack: FakeSlack, *, approval: bool = False) -> None:
        self.bluesky = FakeBluesky()
        http = SourceHttp(httpx.Client(transport=self.bluesky.transport), RateLimiter(None))
        writer = BlueskyWriter(
            http, "https://bsky.example", self.bluesky.handle, self.bluesky.password
        )
        self.config = ReplyConfig(
            writers={"bluesky": writer},
            templates=[
                Template(
                    "Sorry {author}! {lead} from {product} here: a fix is out.",
                    source="bluesky",
                    sentiment="negative",
                ),
                Template("Thanks for telling us, {author}. {lead}"),
            ],
            require_approval=approval,
            is_approver=lambda user: user == APPROVER,
        )
        self.world = World(store, slack, replies=self.config)
        self.store, self.slack = store, slack
        self.sender = ReplySender(
            store,
            self.config.writers,
            on_sent=alert_updater(self.world.client, store, self.world.ui.config),
        )

    def mention(self, source: str = "bluesky") -> Mention:
        if source == "bluesky":
            post = self.bluesky.add_post("did:plc:customer", "3kabcdefghij2", "acme lost my notes")
            mention = Mention(
                source="bluesky",
                external_id=post["uri"],
                url="https://bsky.app/profile/c/post/3k",
                author="customer.bsky.social",
                text="acme lost my notes",
                created_at=utcnow(),
                matched_query="acme",
                sentiment_label="negative",
                raw=post,
            )
        else:
            mention = Mention(
                source="hackernews",
                external_id="hn-1",
                url="https://news.ycombinator.com/item?id=1",
                author="pg",
                text="acme lost my notes",
                created_at=utcnow(),
                matched_query="acme",
                sentiment_label="negative",
            )
        self.store.ingest(None, [mention], None, lambda m: [("#cx-alerts", "alert")])
        self.world.worker.drain(timeout=10)
        return mention

    def click(
        self,
        mention: Mention,
        action_id: str,
        *,
        user: str = "U111",
        value: str | None = None,
        where: tuple[str, str] | None = None,
        action_ts: str = "1.1",
    ) -> tuple[int, bytes]:
        payload = self.world.click(mention, action_id, user=user, action_ts=action_ts)
        payload["user"]["username"] = "bo" if user == "U111" else "approver"
        if value is not None:
            payload["actions"][0]["value"] = value
        if where is not None:
            payload["container"].update({"channel_id": where[0], "message_ts": where[1]})
            payload["channel"]["id"] = where[0]
        return self.world.post(payload)

    def submit(
        self,
        view: dict[str, Any],
        values: dict[str, str],
        *,
        user: str = "U111",
        view_id: str = "V111",
    ) -> tuple[int, bytes]:
        payload = copy.deepcopy(fixture("interactivity/view_submission.bolt.json"))
        payload["user"] = {"id": user, "username": "bo", "name": "bo", "team_id": "T111"}
        payload["view"]["id"] = view_id
        payload["view"]["callback_id"] = view["callback_id"]
        payload["view"]["private_metadata"] = view["private_metadata"]
        payload["view"]["state"]["values"] = {
            block: {name: {"type": "plain_text_input", "value": value}}
            for block, (name, value) in {
                k: (k if k == "url" else "text", v) for k, v in values.items()
            }.items()
        }
        return self.world.post(payload)

    def thread(self, ts: str) -> list[dict[str, Any]]:
        return [m for m in self.slack.messages if m.get("thread_ts") == ts]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def replies(store: Store, slack: FakeSlack) -> Replies:
    return Replies(store, slack)


def test_reply_opens_a_modal_with_the_draft_and_the_platforms_limit(replies: Replies) -> None:
    mention = replies.mention()
    assert "earshot_reply" in action_ids(replies.slack.messages[0]["blocks"])
    status, _ = replies.click(mention, "earshot_reply")
    assert status == 200
    (opened,) = replies.slack.views
    view = opened["view"]
    check_modal(view)
    assert view["callback_id"] == VIEW_SEND and view["submit"]["text"] == "Send"
    (field,) = [b for b in view["blocks"] if b["type"] == "input"]
    assert field["element"]["initial_value"] == (
        "Sorry customer.bsky.social! bo from Acme here: a fix is out."
    )
    assert field["hint"]["text"] == "Bluesky takes at most 300 graphemes."


def test_the_modal_says_what_is_wrong_before_anything_is_stored(replies: Replies) -> None:
    mention = replies.mention()
    replies.click(mention, "earshot_reply")
    view = replies.slack.views[0]["view"]
    # 301 graphemes, 602 code points: Bluesky counts graphemes.
    status, body = replies.submit(view, {"reply": E_ACUTE * 301})
    assert status == 200
    assert json.loads(body) == {
        "response_action": "errors",
        "errors": {"reply": "301 graphemes: Bluesky takes at most 300 graphemes (1 too many)."},
    }
    assert wf.replies_of(replies.store, mention.id or 0) == []
    # 300 of them are fine.
    status, body = replies.submit(view, {"reply": E_ACUTE * 300})
    assert status == 200 and body in (b"", b"null", b"{}")
    (stored,) = wf.replies_of(replies.store, mention.id or 0)
    assert stored.status == "queued" and stored.author_id == "U111"


def _daily_digest(store: Store) -> Digest:
    """The daily digest of the day around now (replies are listed in every digest but hourly)."""
    now = utcnow()
    period = Period(
        "daily", "#cx-digest", now - timedelta(hours=12), now + timedelta(hours=12), "UTC"
    )
    return build_digest(store, period)


def test_send_posts_once_marks_handled_and_the_alert_and_digest_show_who_and_when(
    replies: Replies,
) -> None:
    mention = replies.mention()
    channel, ts = replies.world.alert(mention)
    replies.click(mention, "earshot_reply")
    view = replies.slack.views[0]["view"]
    text = "Sorry! A fix is out in 2.0.2. Bo, Acme"
    replies.submit(view, {"reply": text})
    replies.submit(view, {"reply": text})  # Slack redelivers the submission
    assert replies.sender.run_once().sent == 1
    assert replies.sender.run_once().sent == 0
    (post,) = replies.bluesky.ours()
    assert post["value"]["text"] == text
    assert post["value"]["reply"]["parent"]["uri"] == mention.external_id

    (reply,) = wf.replies_of(replies.store, mention.id or 0)
    assert (
        reply.status == "sent"
        and reply.remote_url
        and reply.remote_url.startswith("https://bsky.app/profile/did:plc:acmeacmeacmeacme/post/")
    )
    stored = wf.get_mention(replies.store, mention.id or 0)
    assert stored is not None and stored.status == "handled" and stored.resolved_by == "U111"

    update = replies.slack.updates[-1]
    assert (update["channel"], update["ts"]) == (channel, ts)
    shown = texts(update["blocks"])
    assert "Replied by <@U111>" in shown and f"<{reply.remote_url}|the reply>" in shown
    assert action_ids(update["blocks"]) == ["earshot_open"]  # handled: no more buttons

    replies.world.worker.drain(timeout=10)
    (note,) = replies.thread(ts)
    assert note["text"].startswith("💬 Replied on Bluesky by <@U111>")
    assert reply.remote_url in note["text"]

    (times,) = response_times(
        replies.store, utcnow() - timedelta(hours=1), utcnow() + timedelta(hours=1)
    )
    assert times.channel == "#cx-alerts" and times.count == 1
    digest = _daily_digest(replies.store)
    assert digest.replies_total == 1
    shown = texts(render_digest(digest).blocks)
    assert "*Replies to customers (1)*" in shown
    assert "✉️ <@U111> replied on Bluesky, " in shown and f"<{reply.remote_url}|the reply>" in shown


def test_approval_a_non_approver_cannot_send_an_approver_edits_and_sends(
    store: Store, slack: FakeSlack
) -> None:
    replies = Replies(store, slack, approval=True)
    mention = replies.mention()
    _channel, ts = replies.world.alert(mention)
    replies.click(mention, "earshot_reply")
    view = replies.slack.views[0]["view"]
    assert view["submit"]["text"] == "Ask for approval"
    replies.submit(view, {"reply": "Sorry, fixed in 2.0.2"})
    (reply,) = wf.replies_of(store, mention.id or 0)
    assert reply.status == "pending_approval"
    assert replies.sender.run_once().sent == 0

    replies.world.worker.drain(timeout=10)
    (note,) = replies.thread(ts)
    assert "*pending approval*" in note["text"] and "<@U111>" in note["text"]
    assert action_ids(note["blocks"]) == [
        "earshot_reply_send",
        "earshot_reply_edit",
        "earshot_reply_reject",
    ]
    where = (note["channel_id"], note["ts"])

    # The author is no approver: refused, nothing changes, nothing is posted.
    replies.click(mention, "earshot_reply_send", value=str(reply.id), where=where)
    assert "Only the reply approvers" in replies.slack.ephemerals[-1]["text"]
    assert (wf.get_reply(store, reply.id or 0) or reply).status == "pending_approval"
    assert replies.sender.run_once().sent == 0 and replies.bluesky.ours() == []

    # The approver edits, then sends.
    replies.click(mention, "earshot_reply_edit", user=APPROVER, value=str(reply.id), where=where)
    edit = replies.slack.views[-1]["view"]
    check_modal(edit)
    assert edit["callback_id"] == VIEW_EDIT
    assert edit["blocks"][0]["element"]["initial_value"] == "Sorry, fixed in 2.0.2"
    _status, body = replies.submit(edit, {"reply": E_ACUTE * 301}, user=APPROVER, view_id="V2")
    assert "graphemes" in json.loads(body)["errors"]["reply"]
    replies.submit(edit, {"reply": "Sorry Ana, fixed in 2.0.2"}, user=APPROVER, view_id="V2")
    sent = wf.get_reply(store, reply.id or 0)
    assert sent is not None and sent.status == "queued" and sent.approver_id == APPROVER
    assert replies.sender.run_once().sent == 1
    assert [p["value"]["text"] for p in replies.bluesky.ours()] == ["Sorry Ana, fixed in 2.0.2"]

    # A late click on Send changes nothing.
    replies.click(
        mention,
        "earshot_reply_send",
        user=APPROVER,
        value=str(reply.id),
        where=where,
        action_ts="2.2",
    )
    assert "already" in replies.slack.ephemerals[-1]["text"]
    replies.world.worker.drain(timeout=10)
    notes = [m["text"] for m in replies.thread(ts)]
    assert any("your reply was approved by <@U999>" in n and "<@U111>" in n for n in notes)
    assert any(n.startswith("💬 Replied on Bluesky by <@U111>, approved by <@U999>") for n in notes)
    assert len(replies.bluesky.ours()) == 1


def test_an_approver_rejects_and_the_author_is_told(store: Store, slack: FakeSlack) -> None:
    replies = Replies(store, slack, approval=True)
    mention = replies.mention()
    _, ts = replies.world.alert(mention)
    replies.click(mention, "earshot_reply")
    replies.submit(replies.slack.views[0]["view"], {"reply": "We never lose notes."})
    (reply,) = wf.replies_of(store, mention.id or 0)
    replies.world.worker.drain(timeout=10)
    (note,) = replies.thread(ts)
    replies.click(
        mention,
        "earshot_reply_reject",
        user=APPROVER,
        value=str(reply.id),
        where=(note["channel_id"], note["ts"]),
    )
    assert (wf.get_reply(store, reply.id or 0) or reply).status == "rejected"
    stamped = replies.slack.updates[-1]
    assert stamped["ts"] == note["ts"] and "Rejected by <@U999>" in texts(stamped["blocks"])
    assert action_ids(stamped["blocks"]) == []
    assert replies.sender.run_once().sent == 0 and replies.bluesky.ours() == []
    replies.world.worker.drain(timeout=10)
    assert any(
        "<@U111>, your reply was rejected by <@U999>" in m["text"] for m in replies.thread(ts)
    )
    mention_now = wf.get_mention(store, mention.id or 0)
    assert mention_now is not None and mention_now.status == "alerted"


def test_where_earshot_cannot_write_the_modal_offers_the_draft_and_i_replied(
    replies: Replies,
) -> None:
    mention = replies.mention("hackernews")
    replies.click(mention, "earshot_reply")
    view = replies.slack.views[0]["view"]
    check_modal(view)
    assert view["callback_id"] == VIEW_COPY and view["submit"]["text"] == "I replied"
    shown = texts(view["blocks"])
    assert "earshot cannot post on Hacker News" in shown
    assert "<https://news.ycombinator.com/item?id=1|Open the post>" in shown
    draft = next(b for b in view["blocks"] if b.get("block_id") == "reply")
    assert draft["element"]["initial_value"] == "Thanks for telling us, pg. bo"
    _status, body = replies.submit(view, {"reply": "x", "url": "not a link"})
    assert json.loads(body)["errors"] == {"url": "A link starts with https://."}
    url = "https://news.ycombinator.com/item?id=2"
    replies.submit(view, {"reply": "thanks", "url": url})
    (reply,) = wf.replies_of(replies.store, mention.id or 0)
    assert reply.status == "manual" and reply.remote_url == url
    stored = wf.get_mention(replies.store, mention.id or 0)
    assert stored is not None and stored.status == "handled" and stored.resolved_by == "U111"
    assert f"Replied by <@U111> (<{url}|the reply>)" in texts(replies.slack.updates[-1]["blocks"])
    assert replies.sender.run_once().sent == 0
    with Session(replies.store.engine) as session:
        assert session.exec(select(Delivery).where(Delivery.kind == "thread_reply")).all() == []
    digest = _daily_digest(replies.store)
    assert "<@U111> said they replied on Hacker News" in texts(render_digest(digest).blocks)
    assert "said they replied on Hacker News" in digest_text(digest)


def test_run_wires_the_sender_job_with_the_sources_client_and_the_alert_update(
    tmp_path: Any, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from earshot.config.settings import Secrets, parse_settings
    from earshot.config.wiring import build
    from earshot.responders.replies.mastodon import MastodonWriter

    from .fakereplies import FakeMastodon

    fake = FakeMastodon()
    status = fake.add_status("111", "acme lost my notes")
    monkeypatch.setenv("MASTODON_ACCESS_TOKEN", fake.token)
    settings = parse_settings(
        {
            "product": {"name": "Acme", "queries": ["acme"]},
            "slack": {"api_url": slack.api_url, "interactive": True, "mode": "http"},
            "sources": [{"type": "mastodon", "base_url": fake.base, "hashtags": ["acme"]}],
            "replies": {"every": "2s"},
        }
    )
    app = build(
        settings,
        Secrets(slack_bot_token="xoxb-test", slack_signing_secret="s3cret"),
        transport=fake.transport,
        database=f"sqlite:///{tmp_path / 'e.db'}",
    )
    try:
        sender = app.extras["replies"]
        assert isinstance(sender, ReplySender)
        assert ("replies", 2.0, sender.run_once) in app.extras["jobs"]
        ui = app.extras["slack"]
        assert ui.config.replies is not None
        assert isinstance(ui.config.replies.writers["mastodon"], MastodonWriter)

        mention = Mention(
            source="mastodon",
            external_id=status["uri"],
            url=status["url"],
            author="customer",
            text="acme lost my notes",
            created_at=utcnow(),
            sentiment_label="negative",
            raw=status,
        )
        app.store.ingest(None, [mention], None, lambda m: [("#cx-alerts", "alert")])
        app.worker.drain(timeout=10)
        where = wf.alert_message(app.store, mention.id or 0)
        assert where is not None
        wf.draft_reply(
            app.store,
            mention.id or 0,
            key="reply:wired",
            platform="mastodon",
            text="Sorry! Fixed in 2.0.2.",
            actor=wf.Actor("U111"),
            approval=False,
            alert=where,
        )
        assert sender.run_once().sent == 1
    finally:
        app.close()
    (ours,) = fake.ours()
    assert ours["in_reply_to_id"] == "111"
    assert "Replied by <@U111>" in texts(slack.updates[-1]["blocks"])
