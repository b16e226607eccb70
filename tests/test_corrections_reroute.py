"""Corrections that change things: a corrected label is stored, counted and re-routed once.

"Wrong sentiment" (the modal) and "Send to leads" (positive alerts) re-label the mention and,
when the new label routes to another channel, queue one new alert there through the outbox;
the clicked alert is stamped in place. Real payloads (tests/fixtures/slack) go through
slack-bolt to the loopback fake Slack, as in tests/test_slack_interactions.py, on SQLite and
on the real PostgreSQL. The crash tests stop the work between its steps (inside the
correction's transaction, between the post and its "sent" mark) and let two replicas take
the same click at once: every time, one alert in the new channel, none lost, none doubled.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from slack_sdk import WebClient
from sqlmodel import Session, select

from earshot.listener import workflow as wf
from earshot.listener.corrections import RELEVANCE_COLUMNS, SentimentCorrection
from earshot.listener.digest import Period, build_digest
from earshot.listener.models import Delivery, Mention, utcnow
from earshot.listener.routing import Router
from earshot.listener.store import Store
from earshot.responders.delivery import DeliveryWorker
from earshot.responders.interactions import VIEW_WRONG_SENTIMENT, handle_action
from earshot.responders.slack import SlackChannel
from earshot.responders.slack_app import SlackInteractivity

from .conftest import cli_config
from .fakeslack import FakeSlack
from .test_slack_interactions import World, action_ids, fixture, sign, texts

AMPLIFY = "#cx-amplify"
ALERTS = "#cx-alerts"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def world(store: Store, slack: FakeSlack) -> World:
    return World(store, slack, router=Router(ALERTS, AMPLIFY))


def posts(slack: FakeSlack, channel: str) -> list[dict[str, Any]]:
    return [m for m in slack.messages if m["channel"] == channel]


def keys(slack: FakeSlack) -> Counter[str]:
    return Counter(m["metadata"]["event_payload"]["key"] for m in slack.messages)


def reroutes(world: World) -> list[Delivery]:
    return [d for d in world.outbox() if d.idempotency_key.startswith("reroute:")]


def submit_label(world: World, view: dict[str, Any], label: str, user: str = "U333") -> Any:
    """view_submission.bolt.json, adapted: our modal's callback, metadata and the label."""
    payload = copy.deepcopy(fixture("interactivity/view_submission.bolt.json"))
    payload["user"]["id"] = user
    payload["view"]["callback_id"] = view["callback_id"]
    payload["view"]["private_metadata"] = view["private_metadata"]
    payload["view"]["state"]["values"] = {
        "label": {"label": {"type": "static_select", "selected_option": {"value": label}}}
    }
    return payload


# -- Send to leads ----------------------------------------------------------------------------


def test_send_to_leads_relabels_stamps_and_reroutes_once(world: World) -> None:
    mention = world.mention("positive", "apple support charged me twice, love the app though")
    assert mention.id is not None
    channel, ts = world.alert(mention)
    (original,) = posts(world.slack, AMPLIFY)
    assert "earshot_send_to_leads" in action_ids(original["blocks"])
    assert "earshot_wrong_sentiment" in action_ids(original["blocks"])

    click = world.click(mention, "earshot_send_to_leads", action_ts="1700000000.000001")
    assert world.post(click)[0] == 200
    # The same request again (Slack's retry, re-signed) and a second, separate click.
    assert world.post(click, retry=1, timestamp=int(time.time()) + 1)[0] == 200
    second = world.click(mention, "earshot_send_to_leads", action_ts="1700000001.000002")
    assert world.post(second)[0] == 200

    stored = wf.get_mention(world.store, mention.id)
    assert stored is not None and stored.sentiment_label == "negative"
    assert stored.status == "alerted"  # still open: the leads handle it now
    with Session(world.store.engine) as session:
        corrections = list(session.exec(select(SentimentCorrection)))
    assert [(c.old_label, c.new_label, c.user_id) for c in corrections] == [
        ("positive", "negative", "U111")
    ]
    (event,) = wf.events(world.store, mention.id)
    assert event.action == "send_to_leads"
    assert event.detail["sent_to"] == ALERTS and event.detail["old_label"] == "positive"

    # The clicked alert is stamped in place and keeps only its link: the buttons moved.
    (update,) = world.slack.updates
    assert (update["channel"], update["ts"]) == (channel, ts)
    assert "Re-labelled *negative* by <@U111>, sent to #cx-alerts" in texts(update["blocks"])
    assert action_ids(update["blocks"]) == ["earshot_open"]
    (reply,) = world.slack.ephemerals  # the second click
    assert "Already sent to the leads by <@U111>" in reply["text"]

    (row,) = reroutes(world)
    assert (row.idempotency_key, row.channel, row.kind) == (
        f"reroute:{mention.id}:{ALERTS}",
        ALERTS,
        "alert",
    )
    world.worker.drain(timeout=10)
    (lead,) = posts(world.slack, ALERTS)
    assert lead["metadata"]["event_payload"]["key"] == row.idempotency_key
    assert "Negative mention" in texts(lead["blocks"])
    assert "earshot_handled" in action_ids(lead["blocks"])
    assert max(keys(world.slack).values()) == 1
    assert len(wf.unhandled(world.store, ALERTS)) == 1  # the leads see it as unhandled

    # A click on the new alert updates that one, not the original in the amplify channel.
    lead_click = world.click(mention, "earshot_handled", action_ts="1700000002.000003")
    lead_click["container"].update({"channel_id": lead["channel_id"], "message_ts": lead["ts"]})
    assert world.post(lead_click)[0] == 200
    last = world.slack.updates[-1]
    assert (last["channel"], last["ts"]) == (lead["channel_id"], lead["ts"])
    assert "Handled by <@U111>" in texts(last["blocks"])


def test_send_to_leads_of_a_mixed_label_keeps_it_mixed(world: World) -> None:
    mention = world.mention("positive", "apple is great but slow")
    assert mention.id is not None
    world.post(world.click(mention, "earshot_wrong_sentiment"))
    (opened,) = world.slack.views
    assert json.loads(opened["view"]["private_metadata"])["ts"] == world.alert(mention)[1]
    world.post(submit_label(world, opened["view"], "mixed"))
    stored = wf.get_mention(world.store, mention.id)
    assert stored is not None and stored.sentiment_label == "mixed"
    assert [d.channel for d in reroutes(world)] == [ALERTS]  # mixed goes to the leads too

    world.post(world.click(mention, "earshot_send_to_leads", action_ts="1.5"))
    stored = wf.get_mention(world.store, mention.id)
    assert stored is not None and stored.sentiment_label == "mixed"
    assert [e.action for e in wf.events(world.store, mention.id)] == ["wrong_sentiment"]
    assert "Already re-labelled by <@U333>" in world.slack.ephemerals[-1]["text"]
    assert len(reroutes(world)) == 1


# -- Wrong sentiment ------------------------------------------------------------------------------


def test_wrong_sentiment_to_a_label_that_routes_nowhere_only_stamps(world: World) -> None:
    mention = world.mention("negative", "apple support answered, fine")
    assert mention.id is not None
    world.post(world.click(mention, "earshot_wrong_sentiment"))
    (opened,) = world.slack.views
    assert opened["view"]["callback_id"] == VIEW_WRONG_SENTIMENT
    status, answer = world.post(submit_label(world, opened["view"], "neutral"))
    assert status == 200 and answer == b""

    stored = wf.get_mention(world.store, mention.id)
    assert stored is not None and stored.sentiment_label == "neutral"
    assert reroutes(world) == []
    (update,) = world.slack.updates
    assert "Sentiment corrected to *neutral* by <@U333>" in texts(update["blocks"])
    assert "sent to" not in texts(update["blocks"])
    (event,) = wf.events(world.store, mention.id)
    assert event.detail == {"label": "neutral", "old_label": "negative"}


def test_wrong_sentiment_to_negative_reroutes_and_a_stale_modal_is_refused(world: World) -> None:
    mention = world.mention("positive", "apple pay failed three times")
    assert mention.id is not None
    world.post(world.click(mention, "earshot_wrong_sentiment"))
    (opened,) = world.slack.views
    payload = submit_label(world, opened["view"], "negative")
    assert world.post(payload) == (200, b"")
    assert world.post(payload, retry=1, timestamp=int(time.time()) + 1)[0] == 200  # redelivered
    stale = copy.deepcopy(payload)
    stale["view"]["hash"] = "another-submit"
    _status, answer = world.post(stale)
    assert json.loads(answer) == {
        "response_action": "errors",
        "errors": {"label": "It is labelled negative already."},
    }
    (row,) = reroutes(world)
    assert row.channel == ALERTS
    (update,) = world.slack.updates
    assert (update["channel"], update["ts"]) == world.alert(mention)
    assert "Re-labelled *negative* by <@U333>, sent to #cx-alerts" in texts(update["blocks"])
    world.worker.drain(timeout=10)
    assert len(posts(world.slack, ALERTS)) == 1


def test_a_correction_routed_to_a_digest_holds_the_mention_for_it(
    store: Store, slack: FakeSlack
) -> None:
    from earshot.listener.routing import Action, RouteRule

    rules = [RouteRule(Action.DAILY, "#cx-daily", sentiments=frozenset({"negative"}))]
    world = World(store, slack, router=Router(ALERTS, AMPLIFY, rules=rules))
    mention = world.mention("positive", "apple watch band broke")
    assert mention.id is not None
    world.post(world.click(mention, "earshot_send_to_leads"))
    stored = wf.get_mention(store, mention.id)
    assert stored is not None
    assert (stored.digest, stored.digest_channel) == ("daily", "#cx-daily")
    assert reroutes(world) == []
    stamp = texts(world.slack.updates[0]["blocks"])
    assert "Re-labelled *negative* by <@U111>, held for the daily digest in #cx-daily" in stamp


# -- crashes and replicas ------------------------------------------------------------------------


class Killed(BaseException):
    """The process dies here (a BaseException: nothing on the way catches it)."""


def test_a_crash_inside_the_correction_leaves_nothing_and_the_retry_applies_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    mention = world.mention("positive", "apple charged my card twice")
    assert mention.id is not None
    click = world.click(mention, "earshot_send_to_leads", action_ts="1700000000.000001")
    config = world.ui.config

    def die(*_args: Any, **_kwargs: Any) -> None:
        raise Killed  # after the outbox row is queued, before the commit

    monkeypatch.setattr(wf, "record_correction", die)
    with pytest.raises(Killed):
        handle_action(world.store, click, config)
    monkeypatch.undo()
    stored = wf.get_mention(world.store, mention.id)
    assert stored is not None and stored.sentiment_label == "positive"
    assert reroutes(world) == [] and wf.events(world.store, mention.id) == []

    # Slack redelivers the click (it was never acknowledged): applied once, now.
    assert world.post(click, retry=1)[0] == 200
    assert world.post(click, retry=2, timestamp=int(time.time()) + 1)[0] == 200
    assert len(reroutes(world)) == 1 and len(wf.events(world.store, mention.id)) == 1
    world.worker.drain(timeout=10)
    assert len(posts(world.slack, ALERTS)) == 1


def test_a_worker_killed_between_posting_and_marking_does_not_post_twice(world: World) -> None:
    mention = world.mention("positive", "apple lost my order")
    assert mention.id is not None
    world.post(world.click(mention, "earshot_send_to_leads"))
    (claimed,) = world.store.claim(lease_seconds=0.3)
    assert claimed.delivery.idempotency_key == f"reroute:{mention.id}:{ALERTS}"
    world.worker.channel.send(world.worker.render(claimed))  # in Slack; then the kill
    time.sleep(0.4)  # the dead worker's lease runs out

    report = world.worker.drain(timeout=10)
    assert report.sent == 1  # marked sent after finding it by its key, not posted again
    assert len(posts(world.slack, ALERTS)) == 1
    assert max(keys(world.slack).values()) == 1
    (row,) = reroutes(world)
    assert row.status == "sent" and row.message_ts == posts(world.slack, ALERTS)[0]["ts"]


def test_two_replicas_taking_the_same_click_reroute_it_once(
    world: World, database_url: str
) -> None:
    mention = world.mention("positive", "apple support never called back")
    assert mention.id is not None
    click = world.click(mention, "earshot_send_to_leads", action_ts="1700000000.000001")
    replicas = [world.ui]
    other = Store.from_url(database_url)  # the second replica's own connection pool
    client = WebClient(token="xoxb-test", base_url=world.slack.api_url)
    replicas.append(
        SlackInteractivity(
            other,
            world.ui.config,
            client=client,
            mode="http",
            signing_secret="test-signing-secret",
            listener_executor=world.ui.listener_executor,
        )
    )
    body = ("payload=" + quote(json.dumps(click))).encode()
    start = threading.Barrier(len(replicas))
    answers: list[int] = []

    def take(ui: SlackInteractivity) -> None:
        headers = {
            **sign(body, int(time.time())),
            "content-type": "application/x-www-form-urlencoded",
        }
        start.wait()
        answers.append(ui.handle_http(body, headers)[0])

    threads = [threading.Thread(target=take, args=(ui,)) for ui in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [200, 200]
    assert [e.action for e in wf.events(world.store, mention.id)] == ["send_to_leads"]
    assert len(reroutes(world)) == 1 and len(world.slack.updates) == 1

    workers = [
        world.worker,
        DeliveryWorker(other, SlackChannel(client), interactive=True, per_channel_interval=0.0),
    ]
    drains = [threading.Thread(target=w.drain, kwargs={"timeout": 10}) for w in workers]
    for thread in drains:
        thread.start()
    for thread in drains:
        thread.join(30)
    other.engine.dispose()
    assert len(posts(world.slack, ALERTS)) == 1
    assert max(keys(world.slack).values()) == 1


# -- digests, report and the exports count the corrected label --------------------------------


def test_digest_and_report_count_the_corrected_label(
    world: World, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from earshot.config.cli import app as cli

    happy = world.mention("positive", "apple support was wonderful")
    angry = world.mention("positive", "apple support refunded nothing, I am furious")
    assert happy.id is not None and angry.id is not None
    world.post(world.click(angry, "earshot_send_to_leads"))

    end = utcnow() + timedelta(minutes=1)
    period = Period("report", "all", end - timedelta(days=1), end, "UTC")
    digest = build_digest(world.store, period, scope="all")
    assert digest.by_sentiment == {"positive": 1, "negative": 1}
    assert [item.url for item in digest.top_negative] == [angry.url]
    assert sum(day.counts.get("negative", 0) for day in digest.days) == 1
    alerts = build_digest(world.store, Period("daily", ALERTS, end - timedelta(days=1), end, "UTC"))
    assert alerts.by_sentiment == {"negative": 1}  # the leads' channel now lists it

    config = cli_config(database_url, tmp_path, monkeypatch)
    shown = CliRunner().invoke(cli, ["report", "--since", "1d", "-c", str(config)])
    assert shown.exit_code == 0, shown.output
    rows = {
        line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
        for line in shown.stdout.splitlines()
        if line.count("│") == 5
    }
    assert rows["negative"][0] == "1" and rows["positive"][0] == "1"


def test_relevance_export_has_not_relevant_clicks_and_corrections_with_the_query(
    world: World, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import csv
    import io

    from typer.testing import CliRunner

    from earshot.config.cli import app as cli

    pie = world.mention("negative", "apple pie recipe, awful crust")
    lead = world.mention("positive", "apple charged me twice")
    assert pie.id is not None and lead.id is not None
    world.post(world.click(pie, "earshot_not_relevant"))
    world.post(world.click(lead, "earshot_send_to_leads"))

    config = cli_config(database_url, tmp_path, monkeypatch)
    runner = CliRunner()
    shown = runner.invoke(cli, ["export", "--relevance", "-c", str(config)])
    assert shown.exit_code == 0, shown.output
    rows = list(csv.DictReader(io.StringIO(shown.stdout)))
    assert list(rows[0]) == RELEVANCE_COLUMNS
    by_id = {int(r["id"]): r for r in rows}
    assert set(by_id) == {pie.id, lead.id}
    assert by_id[pie.id] | {"created_at": ""} == {
        "id": str(pie.id),
        "text": "apple pie recipe, awful crust",
        "stars": "",
        "query": "apple",
        "relevant": "0",
        "label": "",
        "user_id": "U111",
        "created_at": "",
    }
    assert (by_id[lead.id]["relevant"], by_id[lead.id]["label"]) == ("1", "negative")
    assert by_id[lead.id]["query"] == "apple"

    # The sentiment CSV keeps its columns and holds the correction only.
    corrections = runner.invoke(cli, ["export", "--corrections", "-c", str(config)])
    assert corrections.exit_code == 0, corrections.output
    lines = corrections.stdout.splitlines()
    assert lines[0] == "id,text,stars,label,old_label,user_id,created_at"
    assert len(lines) == 2 and lines[1].startswith(f"{lead.id},apple charged me twice,,negative,")
    out = tmp_path / "relevance.csv"
    written = runner.invoke(cli, ["export", "--relevance", "-o", str(out), "-c", str(config)])
    assert written.exit_code == 0 and "2 judged mentions written" in written.stderr
    both = runner.invoke(cli, ["export", "--relevance", "--corrections", "-c", str(config)])
    assert both.exit_code == 2


def test_a_mention_without_a_correction_keeps_its_classifier_label_in_the_digest(
    world: World,
) -> None:
    # The control for the digest test above: nothing corrected, nothing moved.
    mention = world.mention("positive", "apple support was wonderful")
    end = utcnow() + timedelta(minutes=1)
    digest = build_digest(
        world.store, Period("report", "all", end - timedelta(days=1), end, "UTC"), scope="all"
    )
    assert digest.by_sentiment == {"positive": 1}
    with Session(world.store.engine) as session:
        assert session.get(Mention, mention.id).sentiment_label == "positive"  # type: ignore[union-attr]


def test_the_fake_refuses_to_update_a_message_it_never_posted(slack: FakeSlack) -> None:
    """As real Slack does (``chat.update``: ``message_not_found``): a stamp aimed at the
    wrong message must fail here too, not pass silently."""
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    with pytest.raises(SlackApiError, match="message_not_found"):
        client.chat_update(channel="#cx-alerts", ts="1700000000.000001", text="stamped")
    posted = client.chat_postMessage(channel="#cx-alerts", text="an alert")
    updated = client.chat_update(channel=posted["channel"], ts=posted["ts"], text="stamped")
    assert updated["ok"] and slack.updates[-1]["text"] == "stamped"
