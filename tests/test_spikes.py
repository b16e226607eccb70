"""Spike alerts on a synthetic week (fixed seed, daily cycles): quiet on ordinary daily peaks,
firing on an injected burst, labelled by the dominant sentiment, and held back by the
cooldown (read from the outbox, so it survives restarts)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from earshot.listener.models import Delivery
from earshot.listener.spikes import (
    KIND_SPIKE,
    SpikeConfig,
    baseline,
    check_spikes,
    ewma,
    find_spikes,
)
from earshot.listener.store import Store

from .synthweek import WEEK_START, burst, hourly_rate, store_all, week

CONFIG = SpikeConfig()  # k = 3, min_count = 10, cooldown 6h, alpha 0.1, 7 days
BURST_AT = WEEK_START + timedelta(days=5, hours=14)  # Saturday 14:00, the daily peak


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store.from_url(database_url)
    s.create_schema()
    store_all(s, week())
    yield s
    s.engine.dispose()


def test_the_synthetic_week_has_daily_cycles() -> None:
    mentions = [m for m in week() if m.matched_query == "checkout"]
    by_hour = Counter(m.created_at.hour for m in mentions)
    assert hourly_rate(14) > 10 * hourly_rate(3)
    assert by_hour[14] > 5 * by_hour[3]
    peak = max(Counter((m.created_at.date(), m.created_at.hour) for m in mentions).values())
    assert peak >= 15  # ordinary peaks exceed min_count: only the baseline can keep them quiet


def test_ewma_and_baseline() -> None:
    assert ewma([], 0.1) == (0.0, 0.0)
    assert ewma([4, 4, 4], 0.5) == (4.0, 0.0)
    mean, std = ewma([0, 10, 0, 10, 0, 10], 0.5)
    assert 4 < mean < 8 and std > 3
    # Before any mention there is no history; sigma is at least sqrt(mean) and 1.
    assert baseline([0] * 100, 0.1) is None
    assert baseline([0] * 100 + [3] * 23, 0.1) is None  # less than a day since the first
    assert baseline([1] * 48, 0.1) == (1.0, 1.0)
    # Same hour on the days before: a daily peak of 12 makes a baseline of 12 at that hour.
    day = [1] * 23 + [12]
    mean, _sigma = baseline((day * 3)[:-1], 0.1) or (0, 0)  # the hour tested is the third peak
    assert mean >= 11
    assert ewma([1] * 71, 0.1)[0] == 1.0  # an hour-by-hour EWMA alone would say 1


def test_no_spike_on_ordinary_daily_peaks(store: Store) -> None:
    fired = [
        (hour, spike.group)
        for hour in range(1, 7 * 24 + 1)
        for spike in find_spikes(store, WEEK_START + timedelta(hours=hour), CONFIG)
    ]
    assert fired == []
    # Without the same-hour baseline (k far lower) the peaks would fire: the test can fail.
    assert find_spikes(store, WEEK_START + timedelta(days=4, hours=15), SpikeConfig(k=0.5))


def test_a_burst_fires_labelled_by_its_dominant_sentiment(store: Store) -> None:
    store_all(store, burst(BURST_AT, 30))
    (spike,) = find_spikes(store, BURST_AT, CONFIG)
    assert spike.group == "checkout" and spike.label == "negative"
    assert spike.count >= 40 and spike.count > spike.mean + CONFIG.k * spike.sigma
    assert spike.headline.startswith(f"negative spike: {spike.count} mentions of 'checkout'")
    assert spike.headline.endswith(f"{spike.ratio:.0f}x normal")
    assert len(spike.top) == 3 and all(i.label == "negative" for i in spike.top)
    assert spike.top[0].score == min(i.score for i in spike.top)
    # The other query, and the hour before the burst, stay quiet.
    assert find_spikes(store, BURST_AT - timedelta(hours=1), CONFIG) == []


def test_a_spam_run_is_filtered_not_a_spike(store: Store) -> None:
    spam = burst(BURST_AT, 30)
    for item in spam:
        item.intents = ["spam"]
    store_all(store, spam)
    assert find_spikes(store, BURST_AT, CONFIG) == []
    # A real run on top fires as it would alone: the spam adds nothing to it, nor to its top.
    store_all(store, burst(BURST_AT, 30, seed=8))
    (spike,) = find_spikes(store, BURST_AT, CONFIG)
    assert not {i.id for i in spike.top} & {m.id for m in spam}
    assert spike.labels["negative"] == 24 + sum(
        1
        for m in week()
        if m.matched_query == "checkout"
        and m.sentiment_label == "negative"
        and BURST_AT - timedelta(hours=1) <= m.created_at < BURST_AT
    )


def test_min_count_and_k_are_configurable(store: Store) -> None:
    store_all(store, burst(BURST_AT, 30))
    assert find_spikes(store, BURST_AT, SpikeConfig(min_count=100)) == []
    assert find_spikes(store, BURST_AT, SpikeConfig(k=20)) == []


def test_a_night_burst_fires_too(store: Store) -> None:
    at = WEEK_START + timedelta(days=5, hours=3)
    store_all(store, burst(at, 25, label="positive", seed=3))
    (spike,) = find_spikes(store, at, CONFIG)
    assert spike.label == "positive" and spike.count >= 25


def test_cooldown_holds_back_repeats_and_survives_a_restart(store: Store) -> None:
    store_all(store, burst(BURST_AT, 30))
    second = BURST_AT + timedelta(hours=2)
    store_all(store, burst(second, 60, seed=11))
    (queued,) = check_spikes(store, "#cx-alerts", BURST_AT, CONFIG)
    # Running again in the same hour queues nothing (the outbox key is per hour).
    assert check_spikes(store, "#cx-alerts", BURST_AT + timedelta(minutes=5), CONFIG) == []
    # Two hours later a bigger burst is a spike again, but the 6h cooldown holds it back; a
    # fresh Store on the same database (a restart) reads the cooldown from the outbox.
    assert find_spikes(store, second, CONFIG)
    restarted = Store(store.engine)
    assert check_spikes(restarted, "#cx-alerts", second, CONFIG) == []
    # With a shorter cooldown it fires.
    short = SpikeConfig(cooldown=timedelta(hours=1))
    (again,) = check_spikes(restarted, "#cx-alerts", second, short)
    with Session(store.engine) as session:
        rows = session.exec(select(Delivery).where(Delivery.kind == KIND_SPIKE)).all()
    assert sorted(r.idempotency_key for r in rows) == sorted([queued.key, again.key])
    assert rows[0].payload["title"] == queued.headline
    assert queued.key == f"spike:checkout:{BURST_AT:%Y-%m-%dT%H}"


def test_check_uses_the_given_clock(store: Store) -> None:
    store_all(store, burst(BURST_AT, 30))
    assert check_spikes(store, "#c", BURST_AT + timedelta(hours=3), CONFIG) == []
    assert check_spikes(store, "#c", BURST_AT, CONFIG)[0].at == BURST_AT
