"""Digests on a synthetic week (fixed seed, daily cycles) stored through the real Store:
counts, tops, held items, unhandled alerts, the change, response times, the chart, and
delivery to a fake Slack (chat.postMessage + files_upload_v2)."""

from __future__ import annotations

import random
import struct
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import bindparam, update
from sqlmodel import Session, SQLModel, col, select

from earshot.listener.digest import (
    KIND_CHART,
    KIND_DIGEST,
    Digest,
    DigestSchedule,
    build_digest,
    due_period,
    enqueue_digest,
    percentile,
)
from earshot.listener.models import Delivery, Mention
from earshot.listener.routing import Action, Router, RouteRule
from earshot.listener.store import Store
from earshot.responders.blocks import validate_message
from earshot.responders.delivery import DeliveryWorker
from earshot.responders.digest import SlackFileChannel, chart_png, render_digest, render_row
from earshot.responders.slack import SlackChannel

from .fakeslack import FakeSlack
from .synthweek import WEEK_START, mention, store_all, week

ALERTS, WINS = "#cx-alerts", "#cx-wins"
PNG = b"\x89PNG\r\n\x1a\n"
#: Alert-to-handled delays of the ten handled alerts (minutes): median 55, p90 91.
DELAYS = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]


def router() -> Router:
    # Neutral Reddit posts are held for the alerts channel's daily digest.
    rule = RouteRule(
        Action.DAILY, ALERTS, sources=frozenset({"reddit"}), sentiments=frozenset({"neutral"})
    )
    return Router(ALERTS, WINS, rules=[rule])


def in_scope(m: Mention) -> bool:
    label = m.sentiment_label or ""
    return label in ("negative", "mixed", "unscored") or (
        m.source == "reddit" and label == "neutral"
    )


def load_week(store: Store) -> list[Mention]:
    """Store the week, mark every alert sent 5 minutes after its post, handle ten of them."""
    mentions = week()
    store_all(store, mentions, router().routes)
    outbox = SQLModel.metadata.tables["outbox"]
    table = SQLModel.metadata.tables["mentions"]
    with Session(store.engine) as session:
        pairs = session.exec(
            select(Delivery.id, Mention.id, Mention.created_at, Delivery.channel).join(
                Mention, Mention.id == Delivery.mention_id
            )
        ).all()
        handled = [p for p in pairs if p[3] == ALERTS][: len(DELAYS)]
        # one statement each, executed for many rows (one round trip per row was most of the
        # fixture's time on PostgreSQL)
        session.execute(
            update(outbox)
            .where(outbox.c.id == bindparam("row"))
            .values(status="sent", sent_at=bindparam("sent")),
            [
                {"row": delivery_id, "sent": created.replace(tzinfo=UTC) + timedelta(minutes=5)}
                for delivery_id, _m, created, _c in pairs
            ],
        )
        session.execute(
            update(table).where(table.c.id == bindparam("row")).values(status="alerted"),
            [{"row": mention_id} for _d, mention_id, _created, _c in pairs],
        )
        session.execute(
            update(table)
            .where(table.c.id == bindparam("row"))
            .values(status="handled", resolved_at=bindparam("resolved")),
            [
                {
                    "row": mention_id,
                    "resolved": created.replace(tzinfo=UTC) + timedelta(minutes=5 + delay),
                }
                for (_d, mention_id, created, _c), delay in zip(handled, DELAYS, strict=True)
            ],
        )
        session.commit()
    return mentions


@pytest.fixture
def loaded(database_url: str) -> Iterator[tuple[Store, list[Mention]]]:
    store = Store.from_url(database_url)
    store.create_schema()
    mentions = load_week(store)
    yield store, mentions
    store.engine.dispose()


SCHEDULE = DigestSchedule(channel=ALERTS, daily_at=time(0, 0), weekly_day=0, weekly_at=time(0, 0))


def test_periods_follow_the_schedule_and_timezone() -> None:
    now = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    hourly = due_period("hourly", DigestSchedule(ALERTS, hourly_minute=45), now)
    assert (hourly.start.hour, hourly.end.hour) == (7, 8)  # 09:45 not reached: 07-08
    assert due_period("hourly", DigestSchedule(ALERTS, hourly_minute=15), now).end.hour == 9
    berlin = DigestSchedule(ALERTS, timezone="Europe/Berlin", daily_at=time(9, 0))
    daily = due_period("daily", berlin, now)  # 10:30 in Berlin: today's 09:00 is due
    assert daily.end == datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    assert daily.end - daily.start == timedelta(days=1)
    assert daily.key == "digest:daily:#cx-alerts:2026-11-22T09:00"
    weekly = due_period("weekly", SCHEDULE, now)
    assert (weekly.start, weekly.end) == (WEEK_START, WEEK_START + timedelta(days=7))


def test_percentile_interpolates() -> None:
    assert percentile([], 50) is None
    assert percentile([float(d) for d in DELAYS], 50) == 55.0
    assert percentile([float(d) for d in DELAYS], 90) == 91.0
    assert percentile([7.0], 90) == 7.0


def test_daily_digest_contents(loaded: tuple[Store, list[Mention]]) -> None:
    store, mentions = loaded
    now = datetime(2026, 11, 23, 0, 5, tzinfo=UTC)
    digest = enqueue_digest(store, SCHEDULE, "daily", now)
    assert digest is not None
    start, end = datetime(2026, 11, 22, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC)
    day = [m for m in mentions if start <= m.created_at < end and in_scope(m)]
    before = [
        m for m in mentions if start - timedelta(days=1) <= m.created_at < start and in_scope(m)
    ]
    assert digest.total == len(day) > 20
    assert digest.by_source == dict(sorted(Counter(m.source for m in day).items()))
    assert digest.by_sentiment == dict(Counter(m.sentiment_label for m in day))
    assert "positive" not in digest.by_sentiment  # positives go to #cx-wins
    assert digest.previous_total == len(before)
    assert digest.change == len(day) - len(before)
    negatives = sorted(
        (m for m in day if m.sentiment_label == "negative"), key=lambda m: m.sentiment_score
    )
    assert [i.url for i in digest.top_negative] == [m.url for m in negatives[:5]]
    assert digest.top_negative[0].score == min(m.sentiment_score for m in negatives)
    assert digest.top_positive == []
    # Held: every neutral Reddit post of the week (the first daily digest lists them all).
    held = [m for m in mentions if m.source == "reddit" and m.sentiment_label == "neutral"]
    assert digest.held_total == len(held) > 15 and len(digest.held) == 15
    # Unhandled: every alert in #cx-alerts but the ten handled ones.
    alerts = [m for m in mentions if m.sentiment_label in ("negative", "mixed", "unscored")]
    assert digest.unhandled_total == len(alerts) - len(DELAYS)
    # The chart: seven days, counts per day.
    assert [d.day for d in digest.days] == [f"2026-11-{n}" for n in range(16, 23)]
    per_day = Counter(m.created_at.date().isoformat() for m in mentions if in_scope(m))
    assert {d.day: d.total for d in digest.days} == dict(per_day)
    assert digest.response_times == []  # weekly only
    # Queued with its chart; the held mentions now carry the digest's key.
    with Session(store.engine) as session:
        rows = {
            d.idempotency_key: d.kind
            for d in session.exec(select(Delivery).where(col(Delivery.mention_id).is_(None)))
        }
        keys = Counter(m.digest_key for m in session.exec(select(Mention)))
    key = "digest:daily:#cx-alerts:2026-11-22T00:00"
    assert rows == {key: KIND_DIGEST, f"{key}:chart": KIND_CHART}
    assert keys[key] == len(held)


def test_a_digest_is_queued_once_and_items_are_never_doubled_or_lost(
    loaded: tuple[Store, list[Mention]],
) -> None:
    store, _mentions = loaded
    now = datetime(2026, 11, 23, 0, 5, tzinfo=UTC)
    first = enqueue_digest(store, SCHEDULE, "daily", now)
    assert first is not None
    assert enqueue_digest(store, SCHEDULE, "daily", now + timedelta(minutes=30)) is None
    # A held mention that arrives late (fetched before the period ended, stored after the
    # digest went out) waits for the next digest.
    late = mention(
        random.Random(1),
        datetime(2026, 11, 22, 23, 50, tzinfo=UTC),
        "checkout",
        source="reddit",
        label="neutral",
    )
    late.fetched_at = datetime(2026, 11, 22, 23, 59, tzinfo=UTC)
    store_all(store, [late], router().routes)
    second = enqueue_digest(store, SCHEDULE, "daily", now + timedelta(days=1))
    assert second is not None
    assert second.held_total == 1 and second.held[0].url == late.url
    with Session(store.engine) as session:
        counts = Counter(m.digest_key for m in session.exec(select(Mention)) if m.digest)
    assert sum(counts.values()) == first.held_total + 1 and None not in counts


def test_weekly_digest_has_response_times_per_channel(loaded: tuple[Store, list[Mention]]) -> None:
    store, _mentions = loaded
    weekly = enqueue_digest(store, SCHEDULE, "weekly", datetime(2026, 11, 23, 1, tzinfo=UTC))
    assert weekly is not None
    (times,) = weekly.response_times
    assert (times.channel, times.count) == (ALERTS, 10)
    assert times.median == 55 * 60.0 and times.p90 == 91 * 60.0
    assert weekly.total == sum(d.total for d in weekly.days)
    assert weekly.previous_total == 0  # nothing before the synthetic week


def test_scope_all_counts_every_mention(loaded: tuple[Store, list[Mention]]) -> None:
    store, mentions = loaded
    period = due_period("weekly", SCHEDULE, datetime(2026, 11, 23, 1, tzinfo=UTC))
    everything = build_digest(store, period, scope="all")
    assert everything.total == len(mentions)
    assert everything.top_positive and everything.top_positive[0].label == "positive"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_render_digest_is_valid_escaped_and_linked(loaded: tuple[Store, list[Mention]]) -> None:
    store, _ = loaded
    digest = enqueue_digest(store, SCHEDULE, "daily", datetime(2026, 11, 23, 0, 5, tzinfo=UTC))
    assert digest is not None
    digest.top_negative[0] = type(digest.top_negative[0])(
        **{
            **digest.top_negative[0].__dict__,
            "title": "<!channel> @here & <https://evil|x>",
            "url": "https://example.test/a|b>c",
        }
    )
    message = render_digest(Digest.from_payload(digest.to_payload()))
    assert validate_message({"text": message.text, "blocks": message.blocks}) == []
    text = str(message.blocks)
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert "<https://example.test/a%7Cb%3Ec|" in text
    assert f"*{digest.total} mentions*" in text and "Held for this digest" in text
    assert "Alerts still unhandled" in text and "… and" in text


def test_chart_png_renders(loaded: tuple[Store, list[Mention]]) -> None:
    store, _ = loaded
    period = due_period("weekly", SCHEDULE, datetime(2026, 11, 23, 1, tzinfo=UTC))
    png = chart_png(build_digest(store, period, scope="all").days, "test")
    assert png_size(png) == (800, 400)
    assert len(png) > 10_000
    assert png_size(chart_png([], "empty")) == (800, 400)


def test_digest_and_chart_reach_slack() -> None:
    store = Store.from_url("sqlite://")
    store.create_schema()
    load_week(store)
    enqueue_digest(store, SCHEDULE, "weekly", datetime(2026, 11, 23, 1, tzinfo=UTC))
    with FakeSlack() as slack:
        slack.channel_ids[ALERTS] = "C0ALERTS01"
        channel = SlackChannel.from_token("xoxb-test", slack.api_url)
        worker = DeliveryWorker(
            store,
            channel,
            per_channel_interval=0.0,
            files=SlackFileChannel(channel.client, channel._channel_id),
        )
        # Only the digest rows are due (the alerts were marked sent above).
        report = worker.drain(timeout=10)
    assert (report.sent, report.failed) == (2, 0)
    (posted,) = slack.messages
    assert posted["channel"] == ALERTS and "Weekly picture" in posted["text"]
    assert "Response times" in str(posted["blocks"])
    methods = [method for method, _ in slack.requests]
    assert methods.count("files.getUploadURLExternal") == 1
    assert methods.count("files.completeUploadExternal") == 1
    (upload,) = slack.files
    assert upload["channel_id"] == "C0ALERTS01"
    assert png_size(upload["content"]) == (800, 400)


def test_spike_and_digest_rows_render_through_the_worker_hook() -> None:
    row = Delivery(
        idempotency_key="spike:x:1",
        channel=ALERTS,
        kind="spike",
        payload={
            "title": "negative spike: 42 mentions of 'x'",
            "label": "negative",
            "mean": 7.0,
            "sigma": 2.6,
            "labels": {"negative": 30},
            "top": [],
        },
    )
    out = render_row(row)
    assert out is not None and out.message.metadata["event_payload"]["key"] == "spike:x:1"
    assert validate_message({"text": out.message.text, "blocks": out.message.blocks}) == []
    assert render_row(Delivery(idempotency_key="h", channel=ALERTS, kind="health")) is None


def test_report_command_prints_tables_and_writes_the_chart(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from earshot.config.cli import app
    from earshot.listener.models import utcnow

    db = tmp_path / "earshot.db"
    config = tmp_path / "earshot.toml"
    config.write_text(
        '[product]\nname = "Acme"\nqueries = ["checkout"]\n'
        f'[storage]\npath = "{db}"\n'
        '[[sources]]\ntype = "reddit"\nsubreddits = ["acme"]\n'
    )
    store = Store.from_url(f"sqlite:///{db}")
    store.create_schema()
    start = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(days=7)
    mentions = [m for m in week(start=start) if m.created_at < utcnow()]
    store_all(store, mentions, router().routes)
    store.engine.dispose()
    chart = tmp_path / "chart.png"
    result = CliRunner().invoke(
        app,
        ["report", "--config", str(config), "--since", "7d", "--chart", str(chart)],
        env={"COLUMNS": "200", "DATABASE_URL": ""},
    )
    assert result.exit_code == 0, result.output
    recent = [m for m in mentions if m.created_at >= utcnow() - timedelta(days=7)]
    assert f"{len(recent)} mentions since" in result.output
    for title in ("By sentiment", "By source", "Top negative", "Response times", "Per day"):
        assert title in result.output
    assert png_size(chart.read_bytes()) == (800, 400)
    bad = CliRunner().invoke(app, ["report", "--config", str(config), "--since", "soon"])
    assert bad.exit_code == 2 and "--since" in bad.output


def test_spam_is_counted_as_filtered_and_left_out_of_the_figures(
    loaded: tuple[Store, list[Mention]],
) -> None:
    store, _mentions = loaded
    now = datetime(2026, 11, 23, 0, 5, tzinfo=UTC)
    period = due_period("daily", SCHEDULE, now)
    before = build_digest(store, period)
    before_all = build_digest(store, period, scope="all")
    rng = random.Random(7)
    at = datetime(2026, 11, 22, 12, tzinfo=UTC)
    spam = []
    for label in ("negative", "positive", "neutral", "mixed"):
        item = mention(rng, at, "checkout", source="hackernews", label=label)
        item.intents = ["spam"] if label != "mixed" else ["question", "spam"]
        spam.append(item)
    earlier = mention(
        rng, at - timedelta(days=1), "checkout", source="hackernews", label="negative"
    )
    earlier.intents = ["spam"]  # the period before: not this digest's
    store_all(store, [*spam, earlier], router().routes)
    # One more spam post that a configured rule sends to a review channel: not filtered.
    review = mention(rng, at, "checkout", source="hackernews", label="negative")
    review.intents = ["spam"]
    to_review = Router(
        ALERTS, WINS, rules=[RouteRule(Action.INSTANT, "#spam", intents=frozenset({"spam"}))]
    )
    store_all(store, [review], to_review.routes)
    with Session(store.engine) as session:
        queued = {d.mention_id for d in session.exec(select(Delivery))}
    assert not {m.id for m in [*spam, earlier]} & queued and review.id in queued

    digest = build_digest(store, period)
    assert digest.filtered == len(spam) == 4
    assert (digest.total, digest.by_sentiment) == (before.total, before.by_sentiment)
    everything = build_digest(store, period, scope="all")
    assert everything.filtered == 4
    assert everything.total == before_all.total + 1  # the reviewed one counts, the rest not
    assert everything.previous_total == before_all.previous_total  # ``earlier`` is spam
    assert not {m.id for m in spam} & {
        i.id for i in everything.top_negative + everything.top_positive
    }
    assert sum(d.total for d in everything.days) == sum(d.total for d in before_all.days) + 1

    message = render_digest(Digest.from_payload(digest.to_payload()))
    assert validate_message({"text": message.text, "blocks": message.blocks}) == []
    assert "4 filtered as spam or off-topic" in str(message.blocks)
    # A digest queued before the field existed still reads (no ``filtered`` key).
    old = digest.to_payload()
    del old["filtered"]
    assert Digest.from_payload(old).filtered == 0
    assert "filtered" not in str(render_digest(Digest.from_payload(old)).blocks)


def test_a_digest_with_stories_themes_and_voices_round_trips_through_its_payload() -> None:
    """The insight parts of a digest travel in the outbox payload (JSON) and come back whole."""
    import json

    from earshot.listener.insight import Quote, StorySummary, Theme, Voice

    digest = Digest(
        kind="weekly",
        channel="#cx",
        start="2026-11-23T00:00:00+00:00",
        end="2026-11-30T00:00:00+00:00",
        timezone="UTC",
        key="weekly:#cx:2026-11-23",
        story_count=3,
        previous_story_count=1,
        stories=[
            StorySummary(
                id=7,
                title="Outage",
                url="https://example.com/a",
                mentions=4,
                first_at="2026-11-24T10:00:00+00:00",
                sources={"hackernews": {"negative": 2}, "reddit": {"negative": 1, "neutral": 1}},
            )
        ],
        themes=[
            Theme(
                label="login fails",
                size=12,
                previous=4,
                sentiment={"negative": 10, "neutral": 2},
                quotes=[Quote(text="cannot log in", url="https://x/1", source="reddit")],
            )
        ],
        voices=[Voice(tag="competitor", mentions=9, previous=3, sentiment={"positive": 5})],
    )
    back = Digest.from_payload(json.loads(json.dumps(digest.to_payload())))
    assert back == digest
    assert back.themes[0].change == 8 and back.voices[0].change == 6
    # a payload from before these fields existed still reads, with none of them
    old = {k: v for k, v in digest.to_payload().items() if k not in ("stories", "themes", "voices")}
    assert Digest.from_payload(old).stories == []
