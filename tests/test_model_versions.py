"""Stored meaning models (``model_versions``, migration 0004): save, activate, read back,
on SQLite and the real PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from earshot.config import migrations
from earshot.listener.meaning import MeaningModel
from earshot.listener.model_versions import (
    ModelVersion,
    activate,
    active_model,
    active_version,
    save_candidate,
    trained_count,
)
from earshot.listener.store import Store, make_engine


def renamed(version: str, shift: float = 0.0) -> MeaningModel:
    base = MeaningModel.default()
    return base.replace(version, bias=base.bias + shift)


def test_0004_creates_model_versions_as_the_model_says_and_goes_back(empty_url: str) -> None:
    migrations.upgrade(empty_url, "0003")
    migrations.upgrade(empty_url, "0004")
    engine = make_engine(empty_url)
    try:
        with engine.connect() as conn:
            # later revisions may change other tables; this one must match the model
            ours = [c for c in migrations.schema_diff(conn) if "model_versions" in str(c)]
            assert ours == []
            assert "model_versions" in inspect(conn).get_table_names()
        with Session(engine) as session:
            save_candidate(session, renamed("meaning-1+1"), metrics={}, corrections_used=3)
            activate(session, "meaning-1+1")
            assert active_version(session) == "meaning-1+1"
    finally:
        engine.dispose()
    migrations.downgrade(empty_url, "0003")
    engine = make_engine(empty_url)
    try:
        with engine.connect() as conn:
            assert "model_versions" not in inspect(conn).get_table_names()
    finally:
        engine.dispose()


def test_no_active_row_means_the_shipped_model(store: Store) -> None:
    with Session(store.engine) as session:
        assert active_version(session) is None
        assert active_model(session) is MeaningModel.default()
        assert trained_count(session) == 0


def test_saved_model_reads_back_and_one_version_is_active_at_a_time(store: Store) -> None:
    with Session(store.engine) as session:
        save_candidate(
            session,
            renamed("meaning-1+1", 0.5),
            metrics={"adopt": True},
            corrections_used=40,
            note="test",
        )
        save_candidate(session, renamed("meaning-1+2", -0.5), metrics={}, corrections_used=12)
        assert active_version(session) is None  # saving is not activating
        activate(session, "meaning-1+1")
        model = active_model(session)
        assert model.version == "meaning-1+1"
        assert np.allclose(model.bias, MeaningModel.default().bias + 0.5)
        activate(session, "meaning-1+2")
        rows = session.exec(select(ModelVersion).order_by(ModelVersion.id)).all()
        assert [(r.version, r.active) for r in rows] == [
            ("meaning-1+1", False),
            ("meaning-1+2", True),
        ]
        assert rows[0].metrics == {"adopt": True} and rows[0].corrections_used == 40
        activate(session, None)
        assert active_version(session) is None
        assert trained_count(session) == 2
        with pytest.raises(LookupError, match="meaning-9"):
            activate(session, "meaning-9")


def test_a_version_name_is_stored_once(store: Store) -> None:
    with Session(store.engine) as session:
        save_candidate(session, renamed("meaning-1+1"), metrics={}, corrections_used=1)
    with Session(store.engine) as session, pytest.raises(IntegrityError):
        save_candidate(session, renamed("meaning-1+1"), metrics={}, corrections_used=1)


def test_the_database_refuses_a_second_active_row(store: Store) -> None:
    with Session(store.engine) as session:
        save_candidate(session, renamed("meaning-1+1"), metrics={}, corrections_used=1)
        save_candidate(session, renamed("meaning-1+2"), metrics={}, corrections_used=1)
        activate(session, "meaning-1+1")
    with Session(store.engine) as session, pytest.raises(IntegrityError):
        row = session.exec(select(ModelVersion).where(ModelVersion.version == "meaning-1+2")).one()
        row.active = True
        session.add(row)
        session.commit()
