"""The stored shapes: one normalized ``Mention``, per-source cursors, and the delivery outbox.

Every source turns its payloads into ``Mention`` objects; from there on the pipeline never
looks at a source-specific shape again (the original payload is kept in ``raw`` for audit).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """Normalize a datetime to aware UTC (SQLite hands naive datetimes back)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _tz() -> Any:
    return DateTime(timezone=True)


class Label(StrEnum):
    """Sentiment labels. ``unscored`` marks text the classifier chose not to score."""

    NEGATIVE = "negative"
    NEUTRAL = "neutral"
    POSITIVE = "positive"
    MIXED = "mixed"
    UNSCORED = "unscored"


class MentionStatus(StrEnum):
    """Where a mention stands in the response workflow."""

    NEW = "new"
    ALERTED = "alerted"
    ASSIGNED = "assigned"
    HANDLED = "handled"
    NOT_RELEVANT = "not_relevant"
    APPROVED = "approved"
    REJECTED = "rejected"


class Mention(SQLModel, table=True):
    """One post, comment or review that mentions the product, in one normalized shape.

    ``(source, external_id)`` is unique in the database: the same item is stored, and so
    alerted, at most once, across polls, restarts and replicas.
    """

    __tablename__ = "mentions"
    __table_args__ = (
        UniqueConstraint("source", "external_id", name="uq_mentions_source_external_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=32, index=True)
    external_id: str = Field(max_length=255)
    url: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    author: str = Field(default="", max_length=255)
    site: str = Field(default="", max_length=255)
    title: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: datetime = Field(sa_column=Column(_tz(), nullable=False, index=True))
    fetched_at: datetime = Field(default_factory=utcnow, sa_column=Column(_tz(), nullable=False))
    rating: int | None = None
    language: str | None = Field(default=None, max_length=16)
    matched_query: str | None = Field(default=None, max_length=500)
    raw: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    sentiment_label: str | None = Field(default=None, max_length=16, index=True)
    sentiment_score: float | None = None
    sentiment_reasons: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    status: str = Field(default=MentionStatus.NEW.value, max_length=16, index=True)

    @property
    def body(self) -> str:
        """Title and text together, the way a reader sees the item."""
        if self.title and self.text:
            return f"{self.title}\n{self.text}"
        return self.title or self.text


class SourceCursor(SQLModel, table=True):
    """Where a source stopped reading. ``value`` is a JSON document the source owns."""

    __tablename__ = "cursors"

    key: str = Field(primary_key=True, max_length=200)
    value: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(_tz(), nullable=False))


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class Delivery(SQLModel, table=True):
    """One message to send: the outbox row, written in the same transaction as its mention.

    ``idempotency_key`` is unique, so routing the same mention twice queues one message.
    """

    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=255, unique=True)
    mention_id: int | None = Field(default=None, foreign_key="mentions.id", index=True)
    channel: str = Field(max_length=255)
    kind: str = Field(default="alert", max_length=32)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=DeliveryStatus.PENDING.value, max_length=16, index=True)
    attempts: int = 0
    next_attempt_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(_tz(), nullable=False, index=True)
    )
    lease_until: datetime | None = Field(default=None, sa_column=Column(_tz(), nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(_tz(), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(_tz(), nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    message_channel: str | None = Field(default=None, max_length=64)
    message_ts: str | None = Field(default=None, max_length=64)
