"""Slack interactivity end to end: real payloads (tests/fixtures/slack) through slack-bolt.

Each test stores a mention, delivers its alert to the loopback fake Slack with the real
delivery worker (so the outbox row knows the message's channel and ts), then sends a real
payload from the fixtures through the Bolt app: signed over HTTP (``handle_http``) or as a
Socket Mode envelope (``SocketModeHandler.handle``). The fixtures' placeholder ids are
adapted in memory (``actions[0].action_id``/``value`` set to an earshot button and the stored
mention id, the container pointed at the stored message); each test says which.

The work after each ack (the Slack calls) runs on the interactivity's follow-up executor;
the tests give it one that runs it inline, so when ``dispatch`` returns the work is done (no
waiting, no timing).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from slack_sdk import WebClient
from slack_sdk.socket_mode.request import SocketModeRequest
from sqlmodel import Session, select

from earshot.listener import workflow as wf
from earshot.listener.corrections import SentimentCorrection
from earshot.listener.models import Delivery, Mention, QueryExclusion, as_utc, utcnow
from earshot.listener.store import Store
from earshot.responders.delivery import DeliveryWorker
from earshot.responders.interactions import (
    VIEW_EXCLUSION,
    VIEW_WRONG_SENTIMENT,
    InteractionConfig,
)
from earshot.responders.slack import SlackChannel
from earshot.responders.slack_app import ApproverCheck, SlackInteractivity

from .fakeslack import FakeSlack

SLACK = Path(__file__).parent / "fixtures" / "slack"
SECRET = "test-signing-secret"
APPROVER = "U111"  # the user of block_actions_button_in_channel_message.bolt.json


def fixture(relative: str) -> Any:
    return json.loads((SLACK / relative).read_text("utf-8"))


class Inline(Executor):
    """Runs Bolt's listeners at once, in the dispatching thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # pragma: no cover - surfaced by the test
            future.set_exception(exc)
        return future


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


class World:
    """A store with alerted mentions, the fake Slack and the interactivity under test."""

    def __init__(self, store: Store, slack: FakeSlack, **config: Any) -> None:
        self.store = store
        self.slack = slack
        self.client = WebClient(token="xoxb-test", base_url=slack.api_url)
        self.worker = DeliveryWorker(
            store, SlackChannel(self.client), interactive=True, per_channel_interval=0.0
        )
        defaults: dict[str, Any] = {
            "product": "Acme",
            "is_approver": ApproverCheck([APPROVER], "S0APPROVE", self.client),
            "wins_channel": "#wins",
            "queries": ["apple", "acme app"],
            "alerts_channel": "#cx-alerts",
            "sla_seconds": 3600.0,
        }
        defaults.update(config)
        self.ui = SlackInteractivity(
            store,
            InteractionConfig(**defaults),
            client=self.client,
            mode="http",
            signing_secret=SECRET,
            listener_executor=Inline(),
        )
        self._n = 0

    def mention(self, label: str = "negative", text: str = "apple support is awful") -> Mention:
        self._n += 1
        mention = Mention(
            source="hackernews",
            external_id=f"item-{self._n}",
            url=f"https://news.ycombinator.com/item?id={self._n}",
            author="pg",
            text=text,
            created_at=utcnow(),
            matched_query="apple",
            sentiment_label=label,
            sentiment_score=-0.8 if label == "negative" else 0.8,
        )
        channel = "#cx-alerts" if label != "positive" else "#cx-amplify"
        self.store.ingest(None, [mention], None, lambda m: [(channel, "alert")])
        self.worker.drain(timeout=10)
        assert mention.id is not None
        return mention

    def alert(self, mention: Mention) -> tuple[str, str]:
        where = wf.alert_message(self.store, mention.id or 0)
        assert where is not None
        return where

    def click(
        self,
        mention: Mention,
        action_id: str,
        *,
        user: str | None = None,
        action_ts: str = "1678252216.469172",
        fixture_name: str = "interactivity/block_actions_button_in_channel_message.bolt.json",
    ) -> dict[str, Any]:
        """The fixture payload, adapted: our button, the mention id, the stored message."""
        payload = copy.deepcopy(fixture(fixture_name))
        channel, ts = self.alert(mention)
        payload["actions"][0]["action_id"] = action_id
        payload["actions"][0]["value"] = str(mention.id)
        payload["actions"][0]["action_ts"] = action_ts
        payload["container"].update({"channel_id": channel, "message_ts": ts})
        payload["channel"]["id"] = channel
        if user is not None:
            payload["user"]["id"] = user
        return payload

    def post(
        self, payload: dict[str, Any], *, timestamp: int | None = None, retry: int | None = None
    ) -> tuple[int, bytes]:
        """POST the payload as Slack does over HTTP: form-encoded, signed now."""
        body = ("payload=" + quote(json.dumps(payload))).encode()
        headers = sign(body, timestamp or int(time.time()))
        headers["content-type"] = "application/x-www-form-urlencoded"
        if retry is not None:
            headers["X-Slack-Retry-Num"] = str(retry)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        status, _, answer = self.ui.handle_http(body, headers)
        return status, answer

    def outbox(self) -> list[Delivery]:
        with Session(self.store.engine) as session:
            return list(session.exec(select(Delivery).order_by(Delivery.id)))  # type: ignore[arg-type]


def sign(body: bytes, timestamp: int, secret: str = SECRET) -> dict[str, str]:
    base = f"v0:{timestamp}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}


@pytest.fixture
def world(store: Store, slack: FakeSlack) -> World:
    return World(store, slack)


def action_ids(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def texts(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


# -- negative alerts: Handled, Assign, Not relevant, Wrong sentiment -----------------------


def test_handled_click_updates_the_message_stores_state_and_audit(world: World) -> None:
    mention = world.mention("negative")
    channel, ts = world.alert(mention)
    status, _ = world.post(world.click(mention, "earshot_handled"))
    assert status == 200

    assert len(world.slack.updates) == 1
    update = world.slack.updates[0]
    assert (update["channel"], update["ts"]) == (channel, ts)
    assert "Handled by <@U111> at <!date^" in texts(update["blocks"])
    assert action_ids(update["blocks"]) == ["earshot_open"]  # buttons -> the outcome
    assert "Handled by <@U111>" in update["text"]

    stored = wf.get_mention(world.store, mention.id or 0)
    assert stored is not None and stored.status == "handled"
    assert stored.resolved_by == "U111" and stored.resolved_at is not None
    trail = wf.events(world.store, mention.id or 0)
    assert [(e.action, e.user_id) for e in trail] == [("handled", "U111")]
    assert trail[0].detail["action_ts"] == "1678252216.469172"
    assert world.slack.ephemerals == []


def test_assign_keeps_buttons_then_handled_shows_the_whole_trail(world: World) -> None:
    mention = world.mention("negative")
    world.post(world.click(mention, "earshot_assign", action_ts="1.1"))
    first = world.slack.updates[-1]
    assert "earshot_handled" in action_ids(first["blocks"])  # still open: buttons stay
    assert "Assigned to <@U111>" in texts(first["blocks"])
    stored = wf.get_mention(world.store, mention.id or 0)
    assert stored is not None and stored.status == "assigned" and stored.assignee == "U111"

    world.post(world.click(mention, "earshot_handled", user="U222", action_ts="1.2"))
    last = texts(world.slack.updates[-1]["blocks"])
    assert "Assigned to <@U111>" in last and "Handled by <@U222>" in last
    trail = [(e.action, e.user_id) for e in wf.events(world.store, mention.id or 0)]
    assert trail == [("assign", "U111"), ("handled", "U222")]


def test_a_second_click_after_handled_changes_nothing_and_says_who(world: World) -> None:
    mention = world.mention("negative")
    world.post(world.click(mention, "earshot_handled", action_ts="1.1"))
    world.post(world.click(mention, "earshot_not_relevant", user="U222", action_ts="1.2"))
    assert len(world.slack.updates) == 1
    assert world.slack.views == []
    (reply,) = world.slack.ephemerals
    assert reply["user"] == "U222" and "Already handled by <@U111>" in reply["text"]
    stored = wf.get_mention(world.store, mention.id or 0)
    assert stored is not None and stored.status == "handled"


def test_wrong_sentiment_opens_a_modal_and_the_submission_stores_a_correction(
    world: World,
) -> None:
    mention = world.mention("negative", "apple support answered, fine")
    world.post(world.click(mention, "earshot_wrong_sentiment"))
    (opened,) = world.slack.views
    assert opened["trigger_id"] == "4916855695380.xxx.yyy"  # from the fixture
    view = opened["view"]
    assert view["callback_id"] == VIEW_WRONG_SENTIMENT
    options = [o["value"] for o in view["blocks"][1]["element"]["options"]]
    assert "negative" not in options and "neutral" in options

    # view_submission.bolt.json, adapted: our callback id, metadata and the select's state.
    payload = copy.deepcopy(fixture("interactivity/view_submission.bolt.json"))
    payload["user"]["id"] = "U333"
    payload["view"]["callback_id"] = view["callback_id"]
    payload["view"]["private_metadata"] = view["private_metadata"]
    payload["view"]["state"]["values"] = {
        "label": {
            "label": {"type": "static_select", "selected_option": {"value": "neutral"}},
        }
    }
    status, answer = world.post(payload)
    assert status == 200 and answer == b""
    status, _ = world.post(payload, retry=1, timestamp=int(time.time()) + 1)  # redelivered
    assert status == 200

    with Session(world.store.engine) as session:
        corrections = list(session.exec(select(SentimentCorrection)))
    assert [(c.mention_id, c.old_label, c.new_label, c.user_id) for c in corrections] == [
        (mention.id, "negative", "neutral", "U333")
    ]
    trail = wf.events(world.store, mention.id or 0)
    assert [(e.action, e.detail["label"]) for e in trail] == [("wrong_sentiment", "neutral")]
    assert len(world.slack.updates) == 1
    assert "Sentiment corrected to *neutral* by <@U333>" in texts(world.slack.updates[0]["blocks"])
    stored = wf.get_mention(world.store, mention.id or 0)
    assert stored is not None and stored.status == "alerted"  # still open


def test_wrong_sentiment_submission_without_a_label_is_refused_in_the_modal(
    world: World,
) -> None:
    mention = world.mention("negative")
    payload = copy.deepcopy(fixture("interactivity/view_submission.bolt.json"))
    payload["view"]["callback_id"] = VIEW_WRONG_SENTIMENT
    payload["view"]["private_metadata"] = json.dumps({"mention_id": mention.id})
    status, answer = world.post(payload)  # the fixture's state has no "label" block
    assert status == 200
    assert json.loads(answer) == {"response_action": "errors", "errors": {"label": "Pick a label."}}
    assert wf.events(world.store, mention.id or 0) == []


def test_not_relevant_offers_an_exclusion_that_applies_to_matching(world: World) -> None:
    from earshot.config.settings import parse_settings
    from earshot.config.wiring import build_queries

    mention = world.mention("negative", "apple pie recipe was awful")
    world.post(world.click(mention, "earshot_not_relevant"))
    stored = wf.get_mention(world.store, mention.id or 0)
    assert stored is not None and stored.status == "not_relevant"
    assert "Marked not relevant by <@U111>" in texts(world.slack.updates[0]["blocks"])
    (opened,) = world.slack.views
    assert opened["view"]["callback_id"] == VIEW_EXCLUSION

    payload = copy.deepcopy(fixture("interactivity/view_submission.bolt.json"))
    payload["view"]["callback_id"] = VIEW_EXCLUSION
    payload["view"]["private_metadata"] = opened["view"]["private_metadata"]
    payload["view"]["state"]["values"] = {
        "term": {"term": {"type": "plain_text_input", "value": 'apple "pie'}}
    }
    status, answer = world.post(payload)
    assert json.loads(answer)["response_action"] == "errors"  # a quote cannot be excluded
    payload["view"]["state"]["values"]["term"]["term"]["value"] = "  apple   pie "
    payload["view"]["hash"] = "second-submit"
    status, answer = world.post(payload)
    assert status == 200 and answer == b""

    with Session(world.store.engine) as session:
        rows = [(r.query, r.term, r.user_id) for r in session.exec(select(QueryExclusion))]
    assert rows == [("apple", "apple pie", "W111")]  # the view_submission fixture user
    settings = parse_settings(
        {"product": {"name": "Acme", "queries": ["apple"]}, "sources": [{"type": "hackernews"}]}
    )
    queries, aliases = build_queries(settings, world.store)
    assert [q.text for q in queries] == ['(apple) -"apple pie"']
    assert aliases == {'(apple) -"apple pie"': "apple"}
    assert queries.match("I baked an apple pie") is None
    assert queries.match("apple support is slow") is not None
    trail = [e.action for e in wf.events(world.store, mention.id or 0)]
    assert trail == ["not_relevant", "exclusion"]


# -- positive alerts: approvers, double clicks, redelivery, wins ------------------------------


def test_double_click_and_redelivery_approve_once_and_post_one_win(world: World) -> None:
    mention = world.mention("positive", "apple support was wonderful, thank you!")
    click = world.click(mention, "earshot_approve", action_ts="1700000000.000001")
    assert world.post(click)[0] == 200
    # The same request delivered again (Slack's X-Slack-Retry-Num, re-signed): same click.
    assert world.post(click, retry=1, timestamp=int(time.time()) + 1)[0] == 200
    # A second, separate click on the same button.
    second = world.click(mention, "earshot_approve", action_ts="1700000001.000002")
    assert world.post(second)[0] == 200

    trail = wf.events(world.store, mention.id or 0)
    assert [(e.action, e.user_id) for e in trail] == [("approve", APPROVER)]
    stored = wf.get_mention(world.store, mention.id or 0)
    assert stored is not None and stored.status == "approved"
    assert len(world.slack.updates) == 1
    assert "Approved for amplification by <@U111>" in texts(world.slack.updates[0]["blocks"])
    (reply,) = world.slack.ephemerals
    assert "Already approved by <@U111>" in reply["text"]
    wins = [d for d in world.outbox() if d.kind == "win"]
    assert len(wins) == 1 and wins[0].channel == "#wins"

    world.worker.drain(timeout=10)
    (post,) = [m for m in world.slack.messages if m["channel"] == "#wins"]
    assert mention.url in post["text"] and "wonderful" in post["text"]
    assert "approved by <@U111>" in texts(post["blocks"])


def test_a_non_approver_click_changes_nothing(world: World) -> None:
    mention = world.mention("positive", "apple is great")
    # block_actions_button_ephemeral.bolt.json's user W111 is not an approver.
    click = world.click(
        mention,
        "earshot_approve",
        fixture_name="interactivity/block_actions_button_ephemeral.bolt.json",
    )
    click["container"]["is_ephemeral"] = False
    world.slack.usergroups["S0APPROVE"] = ["U999"]
    assert world.post(click)[0] == 200

    (reply,) = world.slack.ephemerals
    assert reply["user"] == "W111" and "not allowed" in reply["text"]
    assert world.slack.updates == []
    assert wf.events(world.store, mention.id or 0) == []
    stored = wf.get_mention(world.store, mention.id or 0)
    assert stored is not None and stored.status == "alerted"
    assert [d.kind for d in world.outbox()] == ["alert"]


def test_a_member_of_the_approver_group_may_reject(world: World) -> None:
    mention = world.mention("positive", "apple is great")
    world.slack.usergroups["S0APPROVE"] = ["U999"]
    world.post(world.click(mention, "earshot_reject", user="U999"))
    stored = wf.get_mention(world.store, mention.id or 0)
    assert stored is not None and stored.status == "rejected"
    assert "Rejected by <@U999>" in texts(world.slack.updates[0]["blocks"])
    assert [d.kind for d in world.outbox()] == ["alert"]  # no win for a rejection


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action_id", "value", "expected"),
    [
        ("button", None, "does not know that button"),  # the fixture's own, unknown button
        ("earshot_handled", "not-a-number", "could not read that click"),
        ("earshot_handled", "987654", "no longer stored"),
    ],
)
def test_bad_clicks_get_a_clear_ephemeral_and_change_nothing(
    world: World, action_id: str, value: str | None, expected: str
) -> None:
    mention = world.mention("negative")
    click = world.click(mention, action_id)
    if value is not None:
        click["actions"][0]["value"] = value
    assert world.post(click)[0] == 200
    (reply,) = world.slack.ephemerals
    assert expected in reply["text"]
    assert world.slack.updates == []
    assert wf.events(world.store, mention.id or 0) == []


def test_a_failing_chat_update_keeps_the_state_and_says_so(world: World) -> None:
    mention = world.mention("negative")
    error = fixture("web_api/chat_update_error_cant_update_message.docs.json")["error"]
    world.slack.update_error = error
    assert world.post(world.click(mention, "earshot_handled"))[0] == 200
    stored = wf.get_mention(world.store, mention.id or 0)
    assert stored is not None and stored.status == "handled"
    (reply,) = world.slack.ephemerals
    assert "could not be updated in Slack (cant_update_message)" in reply["text"]


# -- Socket Mode envelopes ----------------------------------------------------------------------


class RecordingSocket:
    """Stands in for the WebSocket client: records the acks Bolt sends back."""

    def __init__(self) -> None:
        import logging

        self.logger = logging.getLogger("test.socket")
        self.acks: list[dict[str, Any]] = []

    def send_socket_mode_response(self, response: Any) -> None:
        self.acks.append(response.to_dict())


def socket_handler(world: World) -> Any:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    handler = SocketModeHandler(world.ui.app, "xapp-test", auto_reconnect_enabled=False)
    handler.client.close()  # its threads are not needed: envelopes are fed directly
    return handler


def test_socket_mode_block_actions_envelope_is_acked_and_redelivery_is_idempotent(
    world: World,
) -> None:
    mention = world.mention("negative")
    channel, ts = world.alert(mention)
    envelope = fixture("socket_mode/envelope_interactive_block_actions.docs.json")
    # Adapted: our Handled button, the stored mention id and message.
    payload = envelope["payload"]
    payload["actions"][0].update({"action_id": "earshot_handled", "value": str(mention.id)})
    payload["container"].update({"channel_id": channel, "message_ts": ts})
    socket = RecordingSocket()
    handler = socket_handler(world)
    request = SocketModeRequest.from_dict(envelope)
    assert request is not None
    handler.handle(socket, request)
    handler.handle(socket, request)  # delivered again after a reconnect

    expected_ack = fixture("socket_mode/ack_interactive.docs.json")
    assert socket.acks == [expected_ack, expected_ack]
    trail = wf.events(world.store, mention.id or 0)
    assert [(e.action, e.user_id) for e in trail] == [("handled", "U123ABC456")]
    assert len(world.slack.updates) == 1
    assert "Handled by <@U123ABC456>" in texts(world.slack.updates[0]["blocks"])


def test_slash_command_mute_status_and_unhandled(world: World) -> None:
    negative = world.mention("negative", "apple support is awful")
    envelope = fixture("socket_mode/envelope_slash_commands.docs.json")
    # Adapted: our command, and the response_url pointed at the fake Slack.
    envelope["payload"].update({"command": "/earshot", "response_url": world.slack.response_url})
    handler = socket_handler(world)
    socket = RecordingSocket()

    def run(text: str) -> str:
        envelope["payload"]["text"] = text
        request = SocketModeRequest.from_dict(copy.deepcopy(envelope))
        assert request is not None
        handler.handle(socket, request)
        return str(world.slack.responses[-1]["text"])

    listed = run("unhandled")
    assert negative.url in listed and "Unhandled negative alerts" in listed
    assert "1 shown" in listed
    reply = run('mute "acme app" 2')
    assert "Muted `acme app` until <!date^" in reply
    mutes = wf.active_mutes(world.store)
    until = as_utc(mutes["acme app"])
    assert until is not None
    assert timedelta(hours=1.9) < until - utcnow() <= timedelta(hours=2)
    assert "not a configured query" in run("mute nosuchquery 2")
    status = run("status")
    assert "unhandled negative alerts: 1" in status and "muted: `acme app`" in status
    assert "is no longer muted" in run('unmute "acme app"')
    assert "/earshot status" in run("frobnicate")
    assert len(socket.acks) == 6
    assert all(set(a) == {"envelope_id"} for a in socket.acks)  # acked at once, reply after

    router = wf.MutingRouter(world.store, "#cx-alerts", "#cx-amplify", refresh=0.0)
    wf.mute(world.store, "apple", utcnow() + timedelta(hours=1), wf.Actor("U1"))
    assert router.routes(negative) == []
    wf.mute(world.store, "apple", utcnow(), wf.Actor("U1"))
    assert router.routes(negative) == [("#cx-alerts", "alert")]


# -- SLA -------------------------------------------------------------------------------------------


def test_an_unhandled_negative_alert_is_escalated_once_in_its_thread(world: World) -> None:
    late = world.mention("negative", "apple support is awful")
    handled = world.mention("negative", "apple is broken again")
    world.post(world.click(handled, "earshot_handled"))
    channel, ts = world.alert(late)
    world.ui.oncall_group = "S0NCALL"
    sent = max(as_utc(d.sent_at) for d in world.outbox() if d.sent_at)  # type: ignore[type-var]
    assert sent is not None

    assert world.ui.escalate(now=sent + timedelta(minutes=59)) == []
    assert world.ui.escalate(now=sent + timedelta(minutes=61)) == [late.id]
    assert world.ui.escalate(now=sent + timedelta(minutes=120)) == []  # once
    world.worker.drain(timeout=10)

    replies = [m for m in world.slack.messages if m.get("thread_ts")]
    assert len(replies) == 1
    assert replies[0]["thread_ts"] == ts and replies[0]["channel"] == channel
    assert "<!subteam^S0NCALL>" in replies[0]["text"] and "60 min" in replies[0]["text"]
    trail = [e.action for e in wf.events(world.store, late.id or 0)]
    assert trail == ["escalated"]
