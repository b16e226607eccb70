"""Storage on SQLite and on the real PostgreSQL: uniqueness, atomic ingest, outbox leases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from earshot.listener.models import Delivery, Mention
from earshot.listener.store import Store, redact_url


def mention(i: int, source: str = "hackernews") -> Mention:
    return Mention(
        source=source,
        external_id=str(i),
        url=f"https://news.ycombinator.com/item?id={i}",
        author="someone",
        text=f"text {i}",
        created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i),
        raw={"objectID": str(i), "nested": {"a": [1, 2]}},
    )


def alert_every_even(m: Mention) -> list[tuple[str, str]]:
    m.sentiment_label = "negative"
    return [("#cx-alerts", "alert")] if int(m.external_id) % 2 == 0 else []


def test_database_enforces_source_external_id_uniqueness(store: Store) -> None:
    with Session(store.engine) as session:
        session.add(mention(1))
        session.commit()
    with Session(store.engine) as session:
        session.add(mention(1))
        with pytest.raises(IntegrityError):
            session.commit()
    with Session(store.engine) as session:  # another source may reuse the id
        session.add(mention(1, source="reddit"))
        session.commit()


def test_ingest_stores_once_queues_once_and_moves_cursor(store: Store) -> None:
    batch = [mention(i) for i in range(6)]
    first = store.ingest("hackernews", batch + batch[:2], {"terms": {"a": 1}}, alert_every_even)
    assert len(first.stored) == 6 and first.duplicates == 2 and first.queued == 3
    assert all(m.id for m in first.stored)
    assert store.get_cursor("hackernews") == {"terms": {"a": 1}}
    prepared: list[str] = []

    def track(m: Mention) -> list[tuple[str, str]]:
        prepared.append(m.external_id)
        return alert_every_even(m)

    again = store.ingest("hackernews", [mention(i) for i in range(8)], {"terms": {"a": 2}}, track)
    assert [m.external_id for m in again.stored] == ["6", "7"]
    assert prepared == ["6", "7"]  # known items are never classified or routed again
    assert again.duplicates == 6 and again.queued == 1
    assert store.get_cursor("hackernews") == {"terms": {"a": 2}}
    assert store.count_mentions() == 8
    stored = store.known_ids("hackernews", [str(i) for i in range(10)])
    assert stored == {str(i) for i in range(8)}


def test_ingest_is_atomic(store: Store) -> None:
    def explode(m: Mention) -> list[tuple[str, str]]:
        if m.external_id == "3":
            raise RuntimeError("classifier bug")
        return [("#cx-alerts", "alert")]

    with pytest.raises(RuntimeError):
        store.ingest("hackernews", [mention(i) for i in range(5)], {"c": 1}, explode)
    assert store.count_mentions() == 0
    assert store.get_cursor("hackernews") is None
    assert store.outbox_counts() == {}


def test_raw_payload_and_timestamps_round_trip(store: Store) -> None:
    m = mention(7)
    m.text = "emoji 🎉, CJK 漢字, RTL שלום"
    store.ingest("hackernews", [m], None, lambda _: [])
    with Session(store.engine) as session:
        row = session.get(Mention, m.id)
        assert row is not None
        assert row.raw == {"objectID": "7", "nested": {"a": [1, 2]}}
        assert row.text == "emoji 🎉, CJK 漢字, RTL שלום"
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
        assert created == datetime(2026, 1, 1, 0, 7, tzinfo=UTC)


def test_outbox_claim_leases_rows_to_one_worker(store: Store) -> None:
    store.ingest("hackernews", [mention(i) for i in range(10)], None, alert_every_even)
    first = store.claim(limit=3)
    second = store.claim(limit=10)
    ids_first = {c.delivery.id for c in first}
    ids_second = {c.delivery.id for c in second}
    assert len(ids_first) == 3 and len(ids_second) == 2 and not ids_first & ids_second
    assert all(c.mention is not None and c.mention.sentiment_label == "negative" for c in first)
    assert store.claim() == []  # all leased
    # An expired lease (a worker that died) is claimable again.
    later = store.claim(now=datetime.now(UTC) + timedelta(minutes=10))
    assert {c.delivery.id for c in later} == ids_first | ids_second


def test_outbox_marks(store: Store) -> None:
    store.ingest("hackernews", [mention(i) for i in range(6)], None, alert_every_even)
    a, b, c = store.claim()
    assert a.delivery.id and b.delivery.id and c.delivery.id
    store.mark_sent(a.delivery.id, "C1", "1700000000.000100")
    store.mark_retry(b.delivery.id, "slack: ratelimited", 30)
    store.mark_failed(c.delivery.id, "slack: channel_not_found")
    assert store.outbox_counts() == {"sent": 1, "pending": 1, "failed": 1}
    assert store.claim() == []  # the retry is not due yet
    due = store.next_due()
    assert due is not None and due > datetime.now(UTC) + timedelta(seconds=20)
    with Session(store.engine) as session:
        sent = session.get(Delivery, a.delivery.id)
        assert sent is not None and sent.message_ts == "1700000000.000100"
        alerted = session.get(Mention, a.delivery.mention_id)
        assert alerted is not None and alerted.status == "alerted"
        failed = session.get(Delivery, c.delivery.id)
        assert failed is not None and failed.last_error == "slack: channel_not_found"


def test_enqueue_is_idempotent(store: Store) -> None:
    assert store.enqueue("health:hn:failing:1", "#ops", "health", {"title": "HN failing"})
    assert not store.enqueue("health:hn:failing:1", "#ops", "health", {"title": "HN failing"})
    assert store.outbox_counts() == {"pending": 1}


def test_redact_url_hides_the_password() -> None:
    shown = redact_url("postgresql://earshot:s3cret-pw@db:5432/earshot")
    assert "s3cret-pw" not in shown
    assert shown == "postgresql://earshot:***@db:5432/earshot"
