"""The stored shapes: one normalized ``Mention``, per-source cursors, and the delivery outbox.

Every source turns its payloads into ``Mention`` objects; from there on the pipeline never
looks at a source-specific shape again (the original payload is kept in ``raw`` for audit).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def new_dict() -> dict[str, Any]:
    """A new empty dict: a field's ``default_factory``.

    Not ``dict`` itself: pydantic inspects a factory's signature on every instance it builds,
    and for a builtin that inspection fails slowly (about 0.1 ms a field, a third of what
    building a ``Mention`` cost); a plain function's signature is read at once.
    """
    return {}


def new_list() -> list[Any]:
    """A new empty list: a field's ``default_factory`` (see ``new_dict``)."""
    return []


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


class Intent(StrEnum):
    """What a mention is about, as tags (a mention may carry several, or none).

    ``spam`` covers spam and off-topic text: stored, counted in digests as filtered, never
    alerted. ``bug``, ``billing`` and ``churn_risk`` are complaint signals: a mention with one
    goes to the leads whatever its sentiment.
    """

    BUG = "bug"
    FEATURE = "feature_request"
    QUESTION = "question"
    PRAISE = "praise"
    BILLING = "billing"
    CHURN = "churn_risk"
    SPAM = "spam"


#: Intents that make a mention a complaint for routing, even when its sentiment is neutral.
COMPLAINT_INTENTS = frozenset({Intent.BUG.value, Intent.BILLING.value, Intent.CHURN.value})


class MentionStatus(StrEnum):
    """Where a mention stands in the response workflow."""

    NEW = "new"
    ALERTED = "alerted"
    ASSIGNED = "assigned"
    HANDLED = "handled"
    NOT_RELEVANT = "not_relevant"
    APPROVED = "approved"
    REJECTED = "rejected"


#: An alert that went out and nobody has handled yet (the digest's "unhandled", the SLA's
#: "overdue" when too old).
UNHANDLED_STATUSES = (MentionStatus.ALERTED.value, MentionStatus.ASSIGNED.value)


class Mention(SQLModel, table=True):
    """One post, comment or review that mentions the product, in one normalized shape.

    ``(source, external_id)`` is unique in the database: the same item is stored, and so
    alerted, at most once, across polls, restarts and replicas.
    """

    __tablename__ = "mentions"
    __table_args__ = (
        # Also the index of ``source`` alone (its first column).
        UniqueConstraint("source", "external_id", name="uq_mentions_source_external_id"),
        # The SLA check (unhandled, not escalated) and the response times (handled in a
        # period); also the index of ``status`` alone. See migration 0005.
        Index("ix_mentions_status_escalated_at", "status", "escalated_at"),
        Index("ix_mentions_status_resolved_at", "status", "resolved_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=32)
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
    raw: dict[str, Any] = Field(default_factory=new_dict, sa_column=Column(JSON, nullable=False))
    sentiment_label: str | None = Field(default=None, max_length=16, index=True)
    sentiment_score: float | None = None
    sentiment_reasons: list[str] = Field(
        default_factory=new_list, sa_column=Column(JSON, nullable=False)
    )
    #: The calibrated probability of ``sentiment_label`` (``None``: the classifier has none).
    sentiment_confidence: float | None = None
    #: ``Intent`` values, strongest first (``["bug", "churn_risk"]``); empty when none fit.
    intents: list[str] = Field(default_factory=new_list, sa_column=Column(JSON, nullable=False))
    #: The classifier model version that labelled the mention (shown in the alert).
    model_version: str | None = Field(default=None, max_length=64)
    #: How relevant the mention is to its query (0..1; ``None``: not scored).
    relevance: float | None = None
    status: str = Field(default=MentionStatus.NEW.value, max_length=16)
    #: The workflow in Slack (see ``listener/workflow.py``; every change is a ``MentionEvent``).
    assignee: str | None = Field(default=None, max_length=64)
    resolved_by: str | None = Field(default=None, max_length=64)
    resolved_at: datetime | None = Field(default=None, sa_column=Column(_tz(), nullable=True))
    escalated_at: datetime | None = Field(default=None, sa_column=Column(_tz(), nullable=True))
    #: Routed to a digest (``listener/routing.py``): "hourly" or "daily", and the channel.
    #: ``digest_key`` names the digest that listed it (set with that digest's outbox row).
    digest: str | None = Field(default=None, max_length=16)
    digest_channel: str | None = Field(default=None, max_length=255)
    digest_key: str | None = Field(default=None, max_length=255, index=True)
    #: The URL the mention links to (an HN or Reddit link post's target, a Mastodon card,
    #: a Bluesky external embed), as the source gave it; ``None`` for a self post. Stories
    #: key on it canonicalized (``listener/stories.py``).
    link: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    #: The story the mention belongs to (one link or one complaint across sources).
    story_id: int | None = Field(default=None, foreign_key="stories.id", index=True)
    #: How many people it reaches, as one number comparable within a source: HN points,
    #: Reddit score, the author's followers where the API gives them (``None``: unknown).
    reach: int | None = None
    #: The figures behind ``reach``, by name: ``{"points": 312, "comments": 140}``.
    reach_detail: dict[str, Any] = Field(
        default_factory=new_dict, sa_column=Column(JSON, nullable=False)
    )

    @property
    def body(self) -> str:
        """Title and text together, the way a reader sees the item."""
        if self.title and self.text:
            return f"{self.title}\n{self.text}"
        return self.title or self.text


class Story(SQLModel, table=True):
    """One story: the mentions of one link, or of one complaint copied across sources.

    The first mention alerts as usual; later ones post as replies in its thread (each its
    own outbox row) and the parent's count is kept live. ``mention_count`` counts every
    member, alerted or not.
    """

    __tablename__ = "stories"

    id: int | None = Field(default=None, primary_key=True)
    #: The canonical URL the story is about (``None`` for a text-only story).
    url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    title: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    mention_count: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(_tz(), nullable=False))
    last_at: datetime = Field(default_factory=utcnow, sa_column=Column(_tz(), nullable=False))


class StoryKey(SQLModel, table=True):
    """A key that finds a story: ``url:<hash>`` of a canonical URL, or a near-duplicate
    band of a text's shingles. Looked up by primary key; ``seen_at`` bounds the window in
    which a new mention joins the story instead of starting a new one."""

    __tablename__ = "story_keys"

    key: str = Field(primary_key=True, max_length=80)
    story_id: int = Field(foreign_key="stories.id", index=True)
    seen_at: datetime = Field(default_factory=utcnow, sa_column=Column(_tz(), nullable=False))


class SourceCursor(SQLModel, table=True):
    """Where a source stopped reading. ``value`` is a JSON document the source owns."""

    __tablename__ = "cursors"

    key: str = Field(primary_key=True, max_length=200)
    value: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(_tz(), nullable=False))


class SourceState(SQLModel, table=True):
    """One source's shared state: who polls it now (a lease) and how it is doing.

    The lease keeps two replicas from polling the same source at once; the health fields
    survive restarts, so a failing streak is alerted once, and its recovery once.
    """

    __tablename__ = "source_state"

    key: str = Field(primary_key=True, max_length=200)
    owner: str | None = Field(default=None, max_length=200)
    lease_until: datetime | None = Field(default=None, sa_column=Column(_tz(), nullable=True))
    status: str = Field(default="unknown", max_length=16)
    consecutive_failures: int = 0
    failing_since: datetime | None = Field(default=None, sa_column=Column(_tz(), nullable=True))
    last_success: datetime | None = Field(default=None, sa_column=Column(_tz(), nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    health_alerted: bool = False


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class Delivery(SQLModel, table=True):
    """One message to send: the outbox row, written in the same transaction as its mention.

    ``idempotency_key`` is unique, so routing the same mention twice queues one message.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        # Claiming due rows and the next due time (``status`` first: pending rows are few).
        Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        # Storm checks (a channel's recent alerts, its ongoing storm summary) and a
        # channel's known Slack id.
        Index("ix_outbox_channel_kind_created_at", "channel", "kind", "created_at"),
        # The newest rows of one kind (the last spike alerts).
        Index("ix_outbox_kind_id", "kind", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=255, unique=True)
    mention_id: int | None = Field(default=None, foreign_key="mentions.id", index=True)
    channel: str = Field(max_length=255)
    kind: str = Field(default="alert", max_length=32)
    payload: dict[str, Any] = Field(
        default_factory=new_dict, sa_column=Column(JSON, nullable=False)
    )
    status: str = Field(default=DeliveryStatus.PENDING.value, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(_tz(), nullable=False)
    )
    lease_until: datetime | None = Field(default=None, sa_column=Column(_tz(), nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(_tz(), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(_tz(), nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    message_channel: str | None = Field(default=None, max_length=64)
    message_ts: str | None = Field(default=None, max_length=64)
    #: An earlier attempt may have reached Slack (timeout, 5xx, crash between send and
    #: mark): look the message up by its idempotency key before posting again.
    verify: bool = False


class MentionEvent(SQLModel, table=True):
    """The audit trail: one row per action taken on a mention, by whom and when.

    Rows are only ever inserted. ``dedupe_key`` is unique: a redelivered Slack payload
    (same action, same click) finds its row already there and changes nothing.
    """

    __tablename__ = "mention_events"

    id: int | None = Field(default=None, primary_key=True)
    mention_id: int = Field(foreign_key="mentions.id", index=True)
    action: str = Field(max_length=32)
    user_id: str = Field(default="", max_length=64)
    user_name: str = Field(default="", max_length=255)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(_tz(), nullable=False))
    detail: dict[str, Any] = Field(default_factory=new_dict, sa_column=Column(JSON, nullable=False))
    dedupe_key: str | None = Field(default=None, max_length=255, unique=True)


class QueryExclusion(SQLModel, table=True):
    """A term a lead excluded from a query ("Not relevant"): applied as ``-"term"``."""

    __tablename__ = "query_exclusions"
    __table_args__ = (UniqueConstraint("query", "term", name="uq_query_exclusions_query_term"),)

    id: int | None = Field(default=None, primary_key=True)
    query: str = Field(max_length=500)
    term: str = Field(max_length=200)
    user_id: str = Field(default="", max_length=64)
    mention_id: int | None = Field(default=None, foreign_key="mentions.id")
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(_tz(), nullable=False))


class QueryMute(SQLModel, table=True):
    """A query muted from Slack (``/earshot mute``): its mentions are stored, not alerted."""

    __tablename__ = "query_mutes"

    query: str = Field(primary_key=True, max_length=500)
    until: datetime = Field(sa_column=Column(_tz(), nullable=False))
    user_id: str = Field(default="", max_length=64)


class ReplyStatus(StrEnum):
    """Where a reply to the customer stands (see ``workflow`` and ``responders/replies``).

    * ``pending_approval`` - drafted; an approver must send, edit or reject it.
    * ``queued`` - to be posted by the reply worker (approved, or no approval needed).
    * ``sent`` - on the platform: ``remote_id`` and ``remote_url`` say where.
    * ``uncertain`` - an attempt may have reached a platform that cannot be asked whether
      it did: not posted again; a human checks and decides.
    * ``rejected`` - an approver turned it down. ``failed`` - the platform refused it.
    * ``manual`` - replied outside earshot ("I replied", where earshot cannot write).
    """

    PENDING_APPROVAL = "pending_approval"
    QUEUED = "queued"
    SENT = "sent"
    UNCERTAIN = "uncertain"
    REJECTED = "rejected"
    FAILED = "failed"
    MANUAL = "manual"


#: A reply in one of these is live: a mention has at most one at a time. (After an
#: ``uncertain`` or ``failed`` one, a person who checked the platform may reply again.)
LIVE_REPLY_STATUSES = (
    ReplyStatus.PENDING_APPROVAL.value,
    ReplyStatus.QUEUED.value,
    ReplyStatus.SENT.value,
    ReplyStatus.MANUAL.value,
)


class Reply(SQLModel, table=True):
    """One answer to the customer, written in Slack and posted on the mention's platform.

    ``key`` is unique (one per submitted modal), so a redelivered submission stores one
    reply. ``attempts`` counts the posts begun: a reply claimed again with ``attempts > 0``
    may already be on the platform, and the worker looks it up before posting again.
    """

    __tablename__ = "replies"
    __table_args__ = (Index("ix_replies_status_next_attempt_at", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=255, unique=True)
    mention_id: int = Field(foreign_key="mentions.id", index=True)
    platform: str = Field(max_length=32)
    text: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default=ReplyStatus.QUEUED.value, max_length=20)
    #: The lead who wrote it, and the approver who sent (or rejected) it.
    author_id: str = Field(default="", max_length=64)
    author_name: str = Field(default="", max_length=255)
    approver_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(_tz(), nullable=False))
    next_attempt_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(_tz(), nullable=False)
    )
    lease_until: datetime | None = Field(default=None, sa_column=Column(_tz(), nullable=True))
    attempts: int = 0
    #: When the first post was begun (a lookup lists the platform's replies since then).
    attempted_at: datetime | None = Field(default=None, sa_column=Column(_tz(), nullable=True))
    remote_id: str | None = Field(default=None, max_length=255)
    remote_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    #: When the platform says the reply was made (the response time is measured to it).
    sent_at: datetime | None = Field(default=None, sa_column=Column(_tz(), nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    #: The alert the reply was written from (its thread gets the notes; it is re-rendered).
    alert_channel: str | None = Field(default=None, max_length=64)
    alert_ts: str | None = Field(default=None, max_length=64)
