"""Trained meaning models, stored in the database (``earshot train``).

Each ``earshot train`` that gets as far as a candidate stores it as one ``ModelVersion``
row: the version name, the model itself (``MeaningModel.to_bytes``, a numpy archive), the
comparison with the model that was active (``metrics``), how many corrections it learnt
from, and whether it is the active one. At most one row is active, which the database
enforces (a partial unique index on ``active``); no active row means the model shipped in
the package (``MeaningModel.default()``) is in use.

    >>> with Session(engine) as session:
    ...     row = save_candidate(session, model, metrics={...}, corrections_used=40)
    ...     activate(session, row.version)
    ...     active_model(session).version
    'meaning-1+1'

The table is part of ``SQLModel.metadata`` once this module is imported (the migrations'
``schema_metadata`` does that).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, LargeBinary, Text, false, text, update
from sqlmodel import Field, Session, SQLModel, col, func, select

from .meaning import MeaningModel
from .models import utcnow

__all__ = [
    "ModelVersion",
    "activate",
    "active_model",
    "active_version",
    "save_candidate",
    "trained_count",
]


class ModelVersion(SQLModel, table=True):
    """One trained meaning model: its weights, how it compared, and whether it is active."""

    __tablename__ = "model_versions"
    __table_args__ = (
        # at most one active row, whoever activates concurrently
        Index(
            "uq_model_versions_active",
            "active",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    version: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    active: bool = Field(default=False)
    weights: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    corrections_used: int = 0
    note: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


def trained_count(session: Session) -> int:
    """How many versions have been stored (adopted or not)."""
    return int(session.exec(select(func.count()).select_from(ModelVersion)).one())


def save_candidate(
    session: Session,
    model: MeaningModel,
    *,
    metrics: dict[str, Any],
    corrections_used: int,
    note: str = "",
    commit: bool = True,
) -> ModelVersion:
    """Store ``model`` as an inactive version (``IntegrityError`` if its version exists)."""
    row = ModelVersion(
        version=model.version,
        weights=model.to_bytes(),
        metrics=metrics,
        corrections_used=corrections_used,
        note=note,
    )
    session.add(row)
    if commit:
        session.commit()
        session.refresh(row)
    else:
        session.flush()
    return row


def activate(session: Session, version: str | None, *, commit: bool = True) -> None:
    """Make ``version`` the active model, and no other, in one transaction.

    ``None`` goes back to the shipped model (no row active). ``LookupError`` when no
    stored version has that name.
    """
    if version is not None:
        found = session.exec(select(ModelVersion.id).where(ModelVersion.version == version))
        if found.first() is None:
            raise LookupError(f"no stored model version {version!r}")
    session.execute(update(ModelVersion).where(col(ModelVersion.active)).values(active=false()))
    if version is not None:
        session.execute(
            update(ModelVersion).where(col(ModelVersion.version) == version).values(active=True)
        )
    if commit:
        session.commit()


def active_version(session: Session) -> str | None:
    """The active stored version's name (``None``: the shipped model)."""
    found = session.exec(select(ModelVersion.version).where(col(ModelVersion.active))).first()
    return None if found is None else str(found)


def active_model(session: Session) -> MeaningModel:
    """The active model: the active stored version, else the shipped one."""
    data = session.exec(select(ModelVersion.weights).where(col(ModelVersion.active))).first()
    if data is None:
        return MeaningModel.default()
    return MeaningModel.from_bytes(bytes(data))
