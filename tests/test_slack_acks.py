"""Acks never wait behind Slack: 20 interactions at once while Slack answers slowly.

Slack wants every interaction acknowledged within 3 seconds. The fake Slack here holds
every Web API call (and every post to a response_url) until the test opens its gate, so
"slow" is as slow as needed; the test asserts that all 20 requests (clicks that must ask
Slack who may approve, clicks that update the alert, /earshot commands) were acknowledged
while Slack still held every call, and that the held work finished once Slack answered,
over HTTP (the ops server) and over Socket Mode (envelopes fed to Bolt's handler). No wall
clock decides the outcome: the gate's own timeout only keeps a failing run short.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from slack_sdk import WebClient

from earshot.config.http import OpsServer
from earshot.listener import workflow as wf
from earshot.listener.models import Mention, utcnow
from earshot.listener.store import Store
from earshot.responders.delivery import DeliveryWorker
from earshot.responders.interactions import InteractionConfig
from earshot.responders.slack import SlackChannel
from earshot.responders.slack_app import ApproverCheck, FollowUps, SlackInteractivity

from .fakeslack import FakeSlack
from .test_slack_interactions import SECRET, sign

SLACK = Path(__file__).parent / "fixtures" / "slack"
CONCURRENT = 20


def fixture(relative: str) -> Any:
    return json.loads((SLACK / relative).read_text("utf-8"))


def alerted(store: Store, slack: FakeSlack, count: int) -> list[tuple[Mention, str, str]]:
    """``count`` mentions alerted to the fake Slack: (mention, channel id, ts)."""
    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    worker = DeliveryWorker(store, SlackChannel(client), interactive=True, per_channel_interval=0)
    mentions = []
    for n in range(count):
        label = "negative" if n % 2 else "positive"
        mention = Mention(
            source="hackernews",
            external_id=f"ack-{n}",
            url=f"https://news.ycombinator.com/item?id={n}",
            text="apple support is awful" if n % 2 else "apple support is wonderful",
            created_at=utcnow(),
            matched_query="apple",
            sentiment_label=label,
        )
        channel = "#cx-alerts" if label == "negative" else "#cx-amplify"
        store.ingest(None, [mention], None, lambda m, channel=channel: [(channel, "alert")])
        mentions.append(mention)
    worker.drain(timeout=30)
    found = []
    for mention in mentions:
        where = wf.alert_message(store, mention.id or 0)
        assert where is not None
        found.append((mention, *where))
    return found


def interactions(
    targets: list[tuple[Mention, str, str]], response_url: str
) -> list[tuple[str, dict[str, Any]]]:
    """The 20 payloads: 8 Handled clicks, 8 Approve clicks, 4 /earshot status commands."""
    click = fixture("interactivity/block_actions_button_in_channel_message.bolt.json")
    found: list[tuple[str, dict[str, Any]]] = []
    for n, (mention, channel, ts) in enumerate(targets):
        payload = copy.deepcopy(click)
        action = "earshot_approve" if mention.sentiment_label == "positive" else "earshot_handled"
        payload["actions"][0].update(
            action_id=action, value=str(mention.id), action_ts=f"1700000000.{n:06d}"
        )
        payload["container"].update(channel_id=channel, message_ts=ts)
        payload["channel"]["id"] = channel
        found.append(("interactive", payload))
    command = fixture("socket_mode/envelope_slash_commands.docs.json")["payload"]
    for n in range(CONCURRENT - len(targets)):
        fields = {**command, "command": "/earshot", "text": "status", "response_url": response_url}
        fields["trigger_id"] = f"{fields['trigger_id']}.{n}"
        found.append(("slash_commands", fields))
    return found


def form_body(kind: str, payload: dict[str, Any]) -> bytes:
    """How Slack POSTs it over HTTP."""
    if kind == "interactive":
        return ("payload=" + quote(json.dumps(payload))).encode()
    return urlencode(payload).encode()


def approver_config(client: WebClient) -> InteractionConfig:
    return InteractionConfig(
        product="Acme",
        # Approving asks Slack who is in the approver group: a Slack call per click.
        is_approver=ApproverCheck([], "S0APPROVE", client),
        wins_channel="#wins",
        queries=["apple"],
        alerts_channel="#cx-alerts",
        sla_seconds=3600.0,
    )


def assert_followed_up(store: Store, slack: FakeSlack, targets: list[Any]) -> None:
    """The work after the acks was done once Slack answered."""
    states = Counter(
        (wf.get_mention(store, mention.id or 0) or mention).status for mention, _, _ in targets
    )
    assert states == {"handled": 8, "approved": 8}
    assert len(slack.updates) == 16
    assert len(slack.responses) == CONCURRENT - 16
    assert all("unhandled negative alerts" in r["text"] for r in slack.responses)


def test_twenty_interactions_are_acked_while_slack_holds_every_call(store: Store) -> None:
    with FakeSlack() as slack:
        targets = alerted(store, slack, 16)
        client = WebClient(token="xoxb-test", base_url=slack.api_url, timeout=60)
        slack.usergroups["S0APPROVE"] = ["U111"]  # the user of the click fixture
        ui = SlackInteractivity(
            store, approver_config(client), client=client, mode="http", signing_secret=SECRET
        )
        assert isinstance(ui.listener_executor, FollowUps)
        ops = OpsServer(
            "127.0.0.1", 0, ready=lambda: {"ready": True}, post={"/slack/events": ui.handle_http}
        )
        # Slack's burst arrives as 20 connections at once: the listen backlog must hold them
        # (socketserver's default of 5 reset some).
        assert ops.server.request_queue_size >= CONCURRENT
        ops.start()
        url = f"http://127.0.0.1:{ops.port}/slack/events"
        bodies = [form_body(*i) for i in interactions(targets, slack.response_url)]
        # From here Slack answers nothing until the gate opens (at most 20 s: a failing run
        # must not hang; a passing run never waits for that).
        gate = slack.slow_down(hold=20.0)
        limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=0)
        http = httpx.Client(timeout=60, limits=limits)
        start = threading.Barrier(len(bodies))
        answers: dict[int, tuple[int, bool]] = {}

        def send(index: int, body: bytes) -> None:
            headers = {
                **sign(body, int(time.time())),
                "content-type": "application/x-www-form-urlencoded",
            }
            start.wait()
            response = http.post(url, content=body, headers=headers)
            answers[index] = (response.status_code, gate.is_set())

        threads = [threading.Thread(target=send, args=(i, body)) for i, body in enumerate(bodies)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            held_at_acks = slack.held
            slack_released = gate.is_set()
            gate.set()  # Slack answers now
            finished = ui.listener_executor.wait_idle(60)
        finally:
            gate.set()
            http.close()
            ops.stop()
            ui.stop()

    assert not slack_released, "the acks waited for Slack"
    assert sorted(answers) == list(range(CONCURRENT))
    assert Counter(status for status, _ in answers.values()) == {200: CONCURRENT}
    assert not any(released for _, released in answers.values())
    assert held_at_acks >= 1  # Slack calls were waiting while every request was acked
    assert finished
    assert_followed_up(store, slack, targets)


class RecordingSocket:
    """Stands in for the WebSocket: records each ack with whether Slack was still held."""

    def __init__(self, gate: threading.Event) -> None:
        self.logger = logging.getLogger("test.socket")
        self.gate = gate
        self.acks: list[tuple[str, bool]] = []
        self._lock = threading.Lock()

    def send_socket_mode_response(self, response: Any) -> None:
        with self._lock:
            self.acks.append((response.to_dict()["envelope_id"], self.gate.is_set()))


def test_twenty_socket_mode_envelopes_are_acked_while_slack_holds_every_call(
    store: Store,
) -> None:
    from slack_bolt.adapter.socket_mode import SocketModeHandler
    from slack_sdk.socket_mode.request import SocketModeRequest

    with FakeSlack() as slack:
        targets = alerted(store, slack, 16)
        client = WebClient(token="xoxb-test", base_url=slack.api_url, timeout=60)
        slack.usergroups["S0APPROVE"] = ["U111"]
        ui = SlackInteractivity(
            store, approver_config(client), client=client, mode="socket", app_token="xapp-test"
        )
        handler = SocketModeHandler(ui.app, "xapp-test", auto_reconnect_enabled=False)
        handler.client.close()  # envelopes are fed directly, as the socket client would
        envelopes = []
        for n, (kind, payload) in enumerate(interactions(targets, slack.response_url)):
            envelope = {"envelope_id": f"env-{n}", "type": kind, "payload": payload}
            request = SocketModeRequest.from_dict({**envelope, "accepts_response_payload": False})
            assert request is not None
            envelopes.append(request)
        gate = slack.slow_down(hold=20.0)
        socket = RecordingSocket(gate)
        start = threading.Barrier(len(envelopes))

        def deliver(request: Any) -> None:
            start.wait()
            handler.handle(socket, request)

        threads = [threading.Thread(target=deliver, args=(r,)) for r in envelopes]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            slack_released = gate.is_set()
            gate.set()
            finished = ui.listener_executor.wait_idle(60)
        finally:
            gate.set()
            ui.stop()

    assert not slack_released, "the acks waited for Slack"
    assert sorted(e for e, _ in socket.acks) == sorted(f"env-{n}" for n in range(CONCURRENT))
    assert not any(released for _, released in socket.acks)
    assert finished
    assert_followed_up(store, slack, targets)
