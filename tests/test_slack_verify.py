"""The check before posting again (``find_sent``), threads included, and the fake it runs on.

A send whose outcome is unknown is looked up in Slack by its idempotency key before it is
posted again. Slack keeps thread replies out of ``conversations.history`` (parents only), so
a storm reply must be looked up with ``conversations.replies`` on its thread. The first
tests pin down the parts of Slack's contract the lookup relies on, in the fake.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from slack_sdk import WebClient

from earshot.responders.base import Outgoing
from earshot.responders.blocks import RenderedMessage
from earshot.responders.slack import SlackChannel

from .fakeslack import FakeSlack, Fault
from .test_storm import hits, make_app, poll_and_deliver

AUTH = {"authorization": "Bearer xoxb-test"}


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def message(key: str, text: str = "hello") -> RenderedMessage:
    metadata = {"event_type": "earshot_alert", "event_payload": {"key": key}}
    return RenderedMessage(text=text, blocks=[], metadata=metadata)


def thread(slack: FakeSlack, replies: int) -> tuple[str, str, list[str]]:
    """A parent in #alerts and ``replies`` replies in its thread: (channel id, ts, keys)."""
    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    parent = client.chat_postMessage(
        channel="#alerts", text="storm", metadata={"event_type": "s", "event_payload": {"key": "p"}}
    )
    keys = [f"reply-{n}" for n in range(replies)]
    for key in keys:
        client.chat_postMessage(
            channel="#alerts",
            text=key,
            thread_ts=parent["ts"],
            metadata={"event_type": "earshot_alert", "event_payload": {"key": key}},
        )
    return str(parent["channel"]), str(parent["ts"]), keys


# -- the fake follows Slack's contract ----------------------------------------------------------


def test_post_message_answers_with_the_channel_id(slack: FakeSlack) -> None:
    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    answer = client.chat_postMessage(channel="#alerts", text="hi")
    assert answer["channel"] == slack.channel_ids["#alerts"]
    assert answer["channel"].startswith("C") and answer["ts"] == answer["message"]["ts"]


def test_history_holds_parents_only_and_metadata_only_when_asked(slack: FakeSlack) -> None:
    channel, ts, _ = thread(slack, 3)
    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    bare = client.conversations_history(channel=channel)["messages"]
    assert [m["ts"] for m in bare] == [ts]  # no reply of the thread
    assert bare[0]["reply_count"] == 3 and bare[0]["thread_ts"] == ts
    assert "metadata" not in bare[0]
    full = client.conversations_history(channel=channel, include_all_metadata=True)["messages"]
    assert full[0]["metadata"]["event_payload"] == {"key": "p"}


def test_replies_return_the_parent_first_then_the_thread_in_pages(slack: FakeSlack) -> None:
    channel, ts, keys = thread(slack, 5)
    slack.page_cap = 2  # Slack may return fewer than `limit`; has_more and the cursor go on
    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        page = client.conversations_replies(
            channel=channel, ts=ts, include_all_metadata=True, limit=200, cursor=cursor
        )
        pages += 1
        seen.extend(page["messages"])
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            assert page["has_more"] is False
            break
    assert pages == 3
    assert seen[0]["ts"] == ts and "reply_count" in seen[0]
    assert [m["metadata"]["event_payload"]["key"] for m in seen[1:]] == keys
    assert all(m["thread_ts"] == ts for m in seen)
    # Any message of the thread names it; without include_all_metadata, no metadata.
    bare = client.conversations_replies(channel=channel, ts=seen[2]["ts"])["messages"]
    assert bare[0]["ts"] == ts and not any("metadata" in m for m in bare)


def test_read_methods_take_get_and_form_post_not_json_and_need_a_token(slack: FakeSlack) -> None:
    channel, ts, _ = thread(slack, 1)
    url = slack.api_url + "conversations.replies"
    args = {"channel": channel, "ts": ts}
    got = httpx.get(url, params=args, headers=AUTH).json()
    posted = httpx.post(url, data=args, headers=AUTH).json()
    mixed = httpx.post(url, params={"channel": channel}, data={"ts": ts}, headers=AUTH).json()
    assert got["ok"] and posted["ok"] and mixed["ok"]
    assert got["messages"] == posted["messages"] == mixed["messages"]
    assert len(got["messages"]) == 2
    as_json = httpx.post(url, json=args, headers=AUTH).json()
    assert as_json == {"ok": False, "error": "channel_not_found"}  # JSON: no arguments read
    assert httpx.get(url, params=args).json() == {"ok": False, "error": "not_authed"}
    missing = httpx.get(url, params={"channel": channel, "ts": "1.000001"}, headers=AUTH).json()
    assert missing == {"ok": False, "error": "thread_not_found"}
    bad = httpx.get(url, params={**args, "cursor": "%%%"}, headers=AUTH).json()
    assert bad == {"ok": False, "error": "invalid_cursor"}


# -- find_sent ---------------------------------------------------------------------------------


def test_find_sent_finds_a_thread_reply_across_pages(slack: FakeSlack) -> None:
    channel, ts, keys = thread(slack, 7)
    slack.page_cap = 3
    sender = SlackChannel(WebClient(token="xoxb-test", base_url=slack.api_url))
    last = Outgoing("#alerts", message(keys[-1]), keys[-1], keys[-1], thread_ts=ts)
    found = sender.find_sent(last, 0.0, None)
    assert found is not None and found.channel_id == channel
    assert found.ts == slack.messages[-1]["ts"]
    absent = Outgoing("#alerts", message("other"), "other", "other", thread_ts=ts)
    assert sender.find_sent(absent, 0.0, channel) is None
    calls = Counter(method for method, _ in slack.requests)
    assert calls["conversations.replies"] == 6 and calls["conversations.history"] == 0


def test_find_sent_of_a_top_level_message_reads_the_history(slack: FakeSlack) -> None:
    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    client.chat_postMessage(channel="#alerts", text="a", metadata=message("k1").metadata)
    sender = SlackChannel(client)
    found = sender.find_sent(Outgoing("#alerts", message("k1"), "a", "k1"), 0.0, None)
    assert found is not None and found.ts == slack.messages[0]["ts"]


# -- end to end: a storm reply whose send was uncertain is posted once ----------------------------

UNCERTAIN: dict[str, Callable[[], Fault]] = {
    "internal_error": lambda: Fault(
        body={"ok": False, "error": "internal_error"}, apply=True, in_thread=True
    ),
    "http_500": lambda: Fault(status=500, body=b"<html>oops</html>", apply=True, in_thread=True),
    "reset": lambda: Fault(apply=True, reset=True, in_thread=True),
}


@pytest.mark.parametrize("case", sorted(UNCERTAIN))
def test_an_uncertain_storm_reply_is_not_posted_twice(
    case: str, slack: FakeSlack, database_url: str
) -> None:
    slack.faults = [UNCERTAIN[case]() for _ in range(3)]
    app = make_app(slack, database_url, threshold=2)
    app.worker.backoff_base = 0.01
    poll_and_deliver(app, hits(0, 6))
    app.close()
    assert not slack.faults  # every fault was served (three replies landed uncertainly)
    keys = [m["metadata"]["event_payload"]["key"] for m in slack.messages]
    doubled = {k: n for k, n in Counter(keys).items() if n > 1}
    assert not doubled, f"posted twice: {doubled}"
    kinds = Counter(m["metadata"]["event_type"] for m in slack.messages)
    assert kinds == {"earshot_alert": 6, "earshot_storm": 1}
    lookups = [p for method, p in slack.requests if method == "conversations.replies"]
    assert len(lookups) >= 3
    summary = next(m for m in slack.messages if m["metadata"]["event_type"] == "earshot_storm")
    assert all(p["ts"] == summary["ts"] for p in lookups)
    assert json.dumps(lookups[0]).count("include_all_metadata") == 1
