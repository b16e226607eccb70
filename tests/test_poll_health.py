"""A poll's end: its health, the end of its lease and its silence state commit in the
transaction that stores its mentions and moves its cursor; a failing streak is alerted
once and its recovery once, whichever replica sees them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import respx
from sqlalchemy import event
from sqlmodel import Session, select

from earshot.listener.models import Delivery, Label, Mention, SourceState
from earshot.listener.pipeline import Pipeline
from earshot.listener.query import QuerySet
from earshot.listener.routing import Router
from earshot.listener.sentiment import SentimentResult
from earshot.listener.sources import HackerNewsSource
from earshot.listener.store import Store

from .contract import OLD, load_fixture, make_http

HN = "https://hn.test/api/v1"
EMPTY = {"hits": [], "nbHits": 0, "nbPages": 0, "page": 0}


class Stub:
    def classify(self, text: str, rating: int | None = None, language: str | None = None) -> Any:
        return SentimentResult(Label.NEGATIVE, -0.5, ("stub",))


def pipeline(store: Store, owner: str, **kwargs: Any) -> Pipeline:
    return Pipeline(
        store,
        QuerySet(["apple"]),
        Stub(),  # type: ignore[arg-type]
        Router("#cx-alerts", None),
        owner=owner,
        health_channel="#ops",
        failing_after=2,
        backoff_base=0.0,
        **kwargs,
    )


def page(first: int) -> dict[str, Any]:
    (story,) = load_fixture("hn_algolia/search_by_date_story_query_apple.json")["hits"]
    hits = [
        dict(story, objectID=str(first + i), created_at_i=story["created_at_i"] + first + i)
        for i in range(3)
    ]
    hits.sort(key=lambda h: -h["created_at_i"])
    return {"hits": hits, "nbHits": len(hits), "nbPages": 1, "page": 0}


@pytest.fixture
def hn_api() -> Iterator[respx.Route]:
    with respx.mock(assert_all_mocked=True) as router:
        yield router.get(url__regex=rf"{HN}/search_by_date")


def state(store: Store) -> SourceState:
    with Session(store.engine) as session:
        row = session.get(SourceState, "hackernews")
        assert row is not None
        session.expunge(row)
        return row


def health_titles(store: Store) -> list[str]:
    with Session(store.engine) as session:
        rows = session.exec(select(Delivery).where(Delivery.kind == "health")).all()
        return [str((r.payload or {}).get("title")) for r in sorted(rows, key=lambda r: r.id or 0)]


def count_mentions(store: Store) -> int:
    with Session(store.engine) as session:
        return len(session.exec(select(Mention)).all())


def test_a_successful_poll_commits_twice_its_lease_and_everything_else(
    store: Store, hn_api: respx.Route
) -> None:
    """The lease (before the poll's requests), then one transaction: mentions, outbox,
    cursor, health, the end of the lease and the silence state. It used to be five."""
    commits: list[int] = []
    event.listen(store.engine, "commit", lambda conn: commits.append(1))
    pipe = pipeline(store, "replica-a", silent_after=3 * 86400)
    source = HackerNewsSource(make_http(), base_url=HN, **OLD)
    hn_api.respond(200, json=page(100))
    report = pipe.poll(source, force=True)
    assert report.ok and report.stored == 3
    assert len(commits) == 2
    row = state(store)
    assert (row.status, row.owner, row.lease_until) == ("ok", None, None)
    assert row.last_success is not None and row.consecutive_failures == 0
    assert store.get_cursor("hackernews") is not None
    assert store.get_cursor("health/hackernews") is not None  # the silence state


def test_a_failing_streak_and_its_recovery_are_alerted_once_by_either_replica(
    store: Store, hn_api: respx.Route
) -> None:
    a, b = pipeline(store, "replica-a"), pipeline(store, "replica-b")
    source = HackerNewsSource(make_http(), base_url=HN, **OLD)
    hn_api.respond(500)
    assert not a.poll(source, force=True).ok  # 1 failure: not yet
    assert health_titles(store) == []
    assert not b.poll(source, force=True).ok  # 2 in a row, seen by the other replica
    assert not a.poll(source, force=True).ok  # 3: still the same streak
    assert health_titles(store) == ["Source hackernews is failing"]
    assert state(store).health_alerted and state(store).owner is None
    hn_api.respond(200, json=page(100))
    assert b.poll(source, force=True).ok  # replica b sees the recovery...
    hn_api.respond(200, json=EMPTY)
    assert a.poll(source, force=True).ok  # ...and replica a does not notice it again
    assert b.poll(source, force=True).ok
    assert health_titles(store) == ["Source hackernews is failing", "Source hackernews recovered"]
    row = state(store)
    assert (row.status, row.consecutive_failures, row.health_alerted) == ("ok", 0, False)
    # a new streak is a new alert
    hn_api.respond(500)
    assert not a.poll(source, force=True).ok
    assert not a.poll(source, force=True).ok
    assert health_titles(store)[-1] == "Source hackernews is failing"
    assert len(health_titles(store)) == 3


def test_a_poll_whose_transaction_fails_stores_nothing_and_counts_as_failed(
    store: Store, hn_api: respx.Route, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = pipeline(store, "replica-a")
    source = HackerNewsSource(make_http(), base_url=HN, **OLD)
    hn_api.respond(200, json=page(100))

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(store, "finish_poll", refuse)
    report = pipe.poll(source, force=True)
    assert not report.ok and "went away" in report.errors[0]
    assert count_mentions(store) == 0 and store.get_cursor("hackernews") is None
    row = state(store)  # recorded outside the failed transaction, lease given back
    assert (row.status, row.consecutive_failures, row.owner) == ("failing", 1, None)
    monkeypatch.undo()
    report = pipe.poll(source, force=True)  # the poll is simply repeated
    assert report.ok and report.stored == 3 and count_mentions(store) == 3
    assert state(store).status == "ok"
