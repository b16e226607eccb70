"""Sentiment-shift alerts on the synthetic month (tests/synthmonth.py): the negative share of
``acme`` jumps from about 20% to about 60% in the third week with its volume flat. Checked
once a day (each run looks at the last complete UTC day), the month alerts exactly once,
on the first day of that week; the other weeks, and the competitor, never alert. The
cooldown, the volume-spike exclusion, the minimum jump and the tag groups are checked on
their own."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from earshot.config.settings import ConfigError, Settings, parse_settings
from earshot.config.wiring import shift_channel, shift_config
from earshot.listener.models import Delivery
from earshot.listener.spikes import (
    KIND_SHIFT,
    Shift,
    ShiftConfig,
    bucket_end,
    check_shifts,
    find_shifts,
)
from earshot.listener.store import Store
from earshot.responders.blocks import validate_message
from earshot.responders.delivery import DeliveryWorker
from earshot.responders.digest import render_row
from earshot.responders.slack import SlackChannel

from .fakeslack import FakeSlack
from .synthmonth import MONTH_START, OURS, SHIFT_WEEK, TAGS, Month, build_month
from .synthweek import mention, store_all

DAYS = 28
DEFAULT = ShiftConfig()


@pytest.fixture(scope="module")
def month() -> Month:
    return build_month()


@pytest.fixture
def month_store(database_url: str) -> Iterator[Store]:
    s = Store.from_url(database_url)
    s.create_schema()
    store_all(s, build_month().mentions)
    yield s
    s.engine.dispose()


def _daily(store: Store, config: ShiftConfig = DEFAULT) -> list[Shift]:
    """Run the check once a day, a few minutes past midnight, the whole month."""
    queued = []
    for day in range(1, DAYS + 1):
        now = MONTH_START + timedelta(days=day, minutes=7)
        queued += check_shifts(store, "#cx-alerts", now, config, tags=TAGS)
        # A second run in the same bucket (another replica, the next hourly run) adds nothing.
        later = now + timedelta(minutes=50)
        assert check_shifts(store, "#cx-alerts", later, config, tags=TAGS) == []
    return queued


def test_the_planted_shift_alerts_exactly_once(month_store: Store, month: Month) -> None:
    shift_day = MONTH_START + timedelta(days=7 * SHIFT_WEEK)
    # The planted data: ours' negative share jumps, its volume does not.
    days = {}
    for m in month.mentions:
        if m.matched_query == OURS:
            day = (m.created_at - MONTH_START).days
            total, negative = days.get(day, (0, 0))
            days[day] = (total + 1, negative + (m.sentiment_label == "negative"))
    before = [days[d] for d in range(7 * SHIFT_WEEK)]
    during = [days[d] for d in range(7 * SHIFT_WEEK, 7 * SHIFT_WEEK + 7)]
    assert max(t for t, _ in during) <= 1.2 * max(t for t, _ in before)
    assert min(n / t for t, n in during) > max(n / t for t, n in before) + 0.1

    queued = _daily(month_store)
    assert [(s.group, s.start) for s in queued] == [(OURS, shift_day)]
    shift = queued[0]
    assert shift.share > 0.5 and shift.mean < 0.35 and shift.count >= 20
    assert shift.key == f"shift:{OURS}:2026-11-16T00:00"
    assert len(shift.top) == 3 and all(i.label == "negative" for i in shift.top)
    with Session(month_store.engine) as session:
        rows = session.exec(select(Delivery).where(Delivery.kind == KIND_SHIFT)).all()
    assert [r.idempotency_key for r in rows] == [shift.key]
    out = render_row(rows[0])
    assert out is not None and "sentiment shift" in out.plain
    assert validate_message({"text": out.message.text, "blocks": out.message.blocks}) == []


def test_unrelated_weeks_and_the_competitor_do_not_alert(month_store: Store) -> None:
    for day in [*range(1, 7 * SHIFT_WEEK + 1), *range(7 * SHIFT_WEEK + 8, DAYS + 1)]:
        now = MONTH_START + timedelta(days=day, minutes=7)
        assert find_shifts(month_store, now, tags=TAGS) == [], day


def test_the_cooldown_holds_back_the_days_after(month: Month) -> None:
    store = Store.from_url("sqlite://")
    store.create_schema()
    store_all(store, month.mentions)
    slow = ShiftConfig(alpha=0.05)  # a slow baseline: the shift stays "unusual" for days
    days = [
        day
        for day in range(1, DAYS + 1)
        if find_shifts(store, MONTH_START + timedelta(days=day, minutes=7), slow, tags=TAGS)
    ]
    assert len(days) >= 2  # found on more than one day of the shift week...
    queued = _daily(store, slow)
    assert len(queued) == 1  # ...alerted once
    store.engine.dispose()


def test_a_volume_spike_is_not_a_shift_and_small_jumps_are_not(month: Month) -> None:
    store = Store.from_url("sqlite://")
    store.create_schema()
    store_all(store, month.mentions)
    # The planted shift needs a jump of at least min_jump, and min_count mentions.
    shifted = MONTH_START + timedelta(days=7 * SHIFT_WEEK + 1, minutes=7)
    assert [s.group for s in find_shifts(store, shifted, tags=TAGS)] == [OURS]
    assert find_shifts(store, shifted, ShiftConfig(min_jump=0.5), tags=TAGS) == []
    assert find_shifts(store, shifted, ShiftConfig(min_count=100), tags=TAGS) == []
    # A burst of negatives on an ordinary day: the share jumps with the volume (a spike).
    day = MONTH_START + timedelta(days=9)
    rng = random.Random(5)
    burst = [
        mention(rng, day + timedelta(minutes=10 * i), OURS, source="reddit", label="negative")
        for i in range(120)
    ]
    store_all(store, burst)
    now = day + timedelta(days=1, minutes=7)
    # That day ours is about 130 of 160 negative (80%, normally 20%): the share alone would
    # be a shift; the volume (4x normal) makes it a spike, which the spike alert covers.
    assert find_shifts(store, now, tags=TAGS) == []
    store.engine.dispose()


def test_a_tag_shifts_when_its_queries_do_together() -> None:
    """Two competitor queries, each shifting a little (below k sigma alone), together a lot;
    and a tag whose query shifted on its own is left to that query's alert."""
    store = Store.from_url("sqlite://")
    store.create_schema()
    rng = random.Random(11)
    tags = {"rivalapp": "competitor", "otherapp": "competitor"}
    rows = []
    for day in range(21):
        start = MONTH_START + timedelta(days=day)
        for query in tags:
            for i in range(30):
                negative = i < (6 if day < 20 else 14)  # 20% -> 47% on the last day
                rows.append(
                    mention(
                        rng,
                        start + timedelta(minutes=40 * i + 1),
                        query,
                        label="negative" if negative else "positive",
                    )
                )
    store_all(store, rows)
    now = MONTH_START + timedelta(days=21, minutes=7)
    found = {s.group: s for s in find_shifts(store, now, tags=tags)}
    # Each query alone: 47% of 30 against 20% (binomial sigma 0.07): beyond 3 sigma, so
    # each query alerts and the tag is left out.
    assert set(found) == {"rivalapp", "otherapp"}
    assert check_shifts(store, "#c", now, tags=tags)
    store.engine.dispose()

    store = Store.from_url("sqlite://")
    store.create_schema()
    rng = random.Random(12)
    rows = []
    for day in range(21):
        start = MONTH_START + timedelta(days=day)
        for q_index, query in enumerate(tags):
            for i in range(12):
                shifted = day == 20
                negative = i < (2 if not shifted else (6 if q_index == 0 else 5))
                rows.append(
                    mention(
                        rng,
                        start + timedelta(minutes=100 * i + 1),
                        query,
                        label="negative" if negative else "positive",
                    )
                )
    store_all(store, rows)
    config = ShiftConfig(min_count=20)  # each query alone has 12 a day: no share of its own
    found = {s.group: s for s in find_shifts(store, now, config, tags=tags)}
    assert set(found) == {"tag:competitor"}
    shift = found["tag:competitor"]
    assert shift.tag == "competitor" and shift.count == 24 and shift.negative == 11
    assert "tag competitor" in shift.headline
    store.engine.dispose()


def test_buckets_are_whole_utc_days() -> None:
    at = MONTH_START + timedelta(days=3, hours=13, minutes=5)
    assert bucket_end(at, timedelta(days=1)) == MONTH_START + timedelta(days=3)
    assert bucket_end(at, timedelta(hours=6)) == MONTH_START + timedelta(days=3, hours=12)
    assert bucket_end(at, timedelta(days=7)) == MONTH_START  # a Monday


def _settings(extra: str) -> Settings:
    import tomllib

    return parse_settings(
        tomllib.loads(
            '[product]\nname = "Acme"\nqueries = ["acme"]\n[[sources]]\ntype = "hackernews"\n'
            '[slack]\nalerts_channel = "#cx-alerts"\n' + extra
        )
    )


def test_shift_settings() -> None:
    settings = _settings('[shifts]\nk = 2.5\nmin_jump = 0.2\nbucket = "12h"\ncooldown = "3d"\n')
    config = shift_config(settings)
    assert config.k == 2.5 and config.min_jump == 0.2
    assert config.bucket == timedelta(hours=12) and config.cooldown == timedelta(days=3)
    assert shift_channel(settings) == "#cx-alerts"
    assert shift_channel(_settings('[spikes]\nchannel = "#spikes"\n')) == "#spikes"
    with pytest.raises(ConfigError) as unknown:
        _settings("[shifts]\nmin_jum = 0.2\n")
    assert "shifts.min_jum: unknown key (did you mean 'min_jump'?)" in str(unknown.value)
    with pytest.raises(ConfigError, match="history"):
        _settings('[shifts]\nhistory = "2d"\n')


def test_a_shift_alert_reaches_slack(month: Month) -> None:
    """The queued shift goes through the delivery worker to the fake Slack, once, with its
    key in the message metadata (how a retry finds it)."""
    store = Store.from_url("sqlite://")
    store.create_schema()
    store_all(store, month.mentions)
    now = MONTH_START + timedelta(days=7 * SHIFT_WEEK + 1, minutes=7)
    (shift,) = check_shifts(store, "#cx-alerts", now, tags=TAGS)
    with FakeSlack() as slack:
        worker = DeliveryWorker(
            store, SlackChannel.from_token("xoxb-test", slack.api_url), per_channel_interval=0.0
        )
        report = worker.drain(timeout=10)
        again = worker.drain(timeout=5)
    assert (report.sent, report.failed, again.sent) == (1, 0, 0)
    (posted,) = slack.messages
    assert posted["channel"] == "#cx-alerts" and "sentiment shift" in posted["text"]
    assert posted["metadata"]["event_payload"]["key"] == shift.key
    assert "Negative items" in str(posted["blocks"])
    store.engine.dispose()
