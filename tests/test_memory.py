"""A polling process's memory stays bounded: free pages go back after each poll, and a
SQLite connection's cached multi-row INSERTs stay small whatever the page sizes."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from earshot.config import service
from earshot.config.memory import release_free_memory
from earshot.listener.models import Mention, utcnow
from earshot.listener.store import ROWS_PER_STATEMENT, Store


def test_release_free_memory_answers_and_never_raises() -> None:
    assert release_free_memory() in (True, False)
    assert release_free_memory() in (True, False)  # looked up once, called again


def test_a_scheduled_poll_releases_free_memory_even_when_it_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    released: list[bool] = []
    monkeypatch.setattr(service, "release_free_memory", lambda: released.append(True) or True)

    class Pipeline:
        def poll(self, source: Any, *, force: bool = False) -> Any:
            raise RuntimeError("boom")

    app: Any = type("App", (), {"pipeline": Pipeline()})()
    with pytest.raises(RuntimeError):
        service.poll_source(app, object())  # type: ignore[arg-type]
    assert released == [True]


def test_sqlite_inserts_a_page_in_statements_of_bounded_size(tmp_path: Any) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path / 'rows.db'}")
    store.create_schema()
    inserts: list[int] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def count(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.startswith("INSERT INTO mentions"):
            inserts.append(statement.count("?"))

    mentions = [
        Mention(source="hn", external_id=str(i), title="t", created_at=utcnow()) for i in range(100)
    ]
    result = store.ingest("hn", mentions, {"page": 1}, lambda m: [])
    assert len(result.stored) == 100
    # 100 rows: 32 + 32 + 32 + 4, each statement at most 32 rows' parameters
    assert len(inserts) == 4
    assert max(inserts) == max(inserts[:3]) and min(inserts) == inserts[3]
    assert inserts[0] == inserts[3] * ROWS_PER_STATEMENT // 4
