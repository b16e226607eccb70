"""Digest figures: what a channel's hourly, daily or weekly digest says, built from the store.

Everything here reads the database and returns plain data (``Digest``, JSON-ready through
``Digest.to_payload``); rendering is ``earshot.responders.digest``. Periods are computed
from a clock and a timezone, so the same inputs always give the same digest.

``enqueue_digest`` is the one write: in a single transaction it queues the digest (and its
chart) in the outbox under a key naming the period, e.g.
``digest:daily:#cx-alerts:2026-11-23T09:00``, and marks the mentions held for that digest
(``Mention.digest_key``). The outbox key is unique, so a digest is queued once however often
the job runs and however many replicas run it; a mention is listed by exactly one digest,
and one that arrives late waits for the next.

Spam and off-topic mentions (intent ``spam``) that no rule sent anywhere are *filtered*: the
digest counts them (``Digest.filtered``, every query's) and leaves them out of its other
figures.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Text, and_, cast, func, not_, or_, update
from sqlmodel import Session, SQLModel, col, select

from .insight import StorySummary, Theme, Voice
from .models import (
    UNHANDLED_STATUSES,
    Delivery,
    DeliveryStatus,
    Intent,
    Label,
    Mention,
    MentionStatus,
    Reply,
    ReplyStatus,
    Story,
    as_utc,
    utcnow,
)
from .reach import ReachPolicy, by_reach, describe
from .store import Store
from .themes import ThemeConfig, find_themes

logger = logging.getLogger("earshot.listener.digest")

__all__ = [
    "KIND_CHART",
    "KIND_DIGEST",
    "DayCount",
    "Digest",
    "DigestSchedule",
    "Item",
    "Period",
    "ReplyItem",
    "ResponseTimes",
    "build_digest",
    "due_period",
    "enqueue_digest",
    "percentile",
    "replies_made",
    "response_times",
    "share_of_voice",
    "tag_of",
]

PeriodKind = Literal["hourly", "daily", "weekly", "report"]
Scope = Literal["routed", "all"]

#: Outbox kinds of a digest message and of its chart image.
KIND_DIGEST = "digest"
KIND_CHART = "digest_chart"

#: How many items each list of a digest shows (the counts always cover all of them).
TOP = 5
HELD = 15
UNHANDLED = 5
#: Replies to customers a digest lists (newest first; the count covers all of them).
REPLIES = 5
#: Days the chart covers (at least; a weekly digest covers its week).
CHART_DAYS = 7

LABELS = ("negative", "mixed", "unscored", "neutral", "positive")
#: How weekly digests and reports find themes (``listener/themes.py``).
THEMES = ThemeConfig()


@dataclass(frozen=True)
class DigestSchedule:
    """When one channel gets its digests, in its own timezone.

    * **hourly_minute** - the hourly digest (of the previous clock hour) goes out at this
      minute past each hour.
    * **daily_at** - the daily digest (of the 24 hours before) goes out at this local time.
    * **weekly_day** / **weekly_at** - the weekly picture (0 = Monday).
    * **scope** - ``routed``: the figures count the mentions routed to this channel
      (alerted there or held for its digest); ``all``: every stored mention.
    * **chart** - attach the volume and sentiment chart to daily and weekly digests.
    * **min_relevance** - held mentions scored for relevance below it are listed apart, as
      "probably unrelated", and left out of the top lists (``None``: no such list).
    * **tags** - query text -> tag (``[product] queries`` tables): daily and weekly digests
      show each tag's share of voice (none when no query has a tag).
    """

    channel: str
    timezone: str = "UTC"
    hourly_minute: int = 0
    daily_at: time = time(9, 0)
    weekly_day: int = 0
    weekly_at: time = time(9, 0)
    scope: Scope = "routed"
    chart: bool = True
    min_relevance: float | None = None
    tags: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Period:
    """A digest's time window ``[start, end)`` in UTC, and its key."""

    kind: PeriodKind
    channel: str
    start: datetime
    end: datetime
    timezone: str = "UTC"

    @property
    def key(self) -> str:
        """The outbox idempotency key, naming the period by its local start."""
        local = self.start.astimezone(ZoneInfo(self.timezone))
        return f"digest:{self.kind}:{self.channel}:{local:%Y-%m-%dT%H:%M}"

    @property
    def previous(self) -> Period:
        """The period of the same length just before this one."""
        length = self.end - self.start
        return Period(self.kind, self.channel, self.start - length, self.start, self.timezone)


def _local(day: date, at: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def due_period(kind: PeriodKind, schedule: DigestSchedule, now: datetime) -> Period:
    """The latest period of ``kind`` whose digest is due at ``now`` (send time <= now).

    Hourly: the previous local clock hour, sent ``hourly_minute`` past the hour. Daily: the
    24 hours (wall clock) before the last ``daily_at``. Weekly: the 7 days before the last
    ``weekly_day`` at ``weekly_at``.
    """
    tz = schedule.tz
    now = as_utc(now) or utcnow()
    local = now.astimezone(tz)
    if kind == "hourly":
        hour = local.replace(minute=0, second=0, microsecond=0)
        if local < hour + timedelta(minutes=schedule.hourly_minute):
            hour -= timedelta(hours=1)
        end = hour.astimezone(UTC)
        return Period(kind, schedule.channel, end - timedelta(hours=1), end, schedule.timezone)
    if kind == "daily":
        day = local.date()
        if local.time() < schedule.daily_at:
            day -= timedelta(days=1)
        end = _local(day, schedule.daily_at, tz)
        start = _local(day - timedelta(days=1), schedule.daily_at, tz)
        return Period(kind, schedule.channel, start, end, schedule.timezone)
    back = (local.weekday() - schedule.weekly_day) % 7
    day = local.date() - timedelta(days=back)
    if back == 0 and local.time() < schedule.weekly_at:
        day -= timedelta(days=7)
    end = _local(day, schedule.weekly_at, tz)
    start = _local(day - timedelta(days=7), schedule.weekly_at, tz)
    return Period(kind, schedule.channel, start, end, schedule.timezone)


@dataclass(frozen=True)
class Item:
    """One mention as a digest lists it."""

    id: int
    source: str
    title: str
    url: str
    label: str
    score: float | None
    created_at: str
    query: str | None = None
    rating: int | None = None
    #: The mention's reach (``listener/reach.py``) and its figures as shown
    #: ("312 points, 140 comments"; ``""``: none).
    reach: int | None = None
    reach_figures: str = ""

    @classmethod
    def of(cls, mention: Mention) -> Item:
        title = (mention.title or mention.text or "").strip()
        created = as_utc(mention.created_at)
        return cls(
            id=int(mention.id or 0),
            source=mention.source,
            title=" ".join(title.split())[:300],
            url=mention.url or "",
            label=mention.sentiment_label or "unscored",
            score=mention.sentiment_score,
            created_at=created.isoformat() if created else "",
            query=mention.matched_query,
            rating=mention.rating,
            reach=mention.reach,
            reach_figures=describe(mention.reach_detail),
        )


@dataclass(frozen=True)
class DayCount:
    """One day of the chart: the local date and the count per sentiment label."""

    day: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class ResponseTimes:
    """Alert-to-handled times of one channel, in seconds."""

    channel: str
    count: int
    median: float | None
    p90: float | None


@dataclass(frozen=True)
class ReplyItem:
    """One answer to a customer, as a digest lists it: who replied, when, where, and to what.

    ``status`` is ``sent`` (posted by earshot) or ``manual`` (a lead replied on the platform
    and said so with "I replied"); ``approver_id`` is set when an approver sent it.
    """

    mention_id: int
    source: str
    title: str
    url: str
    platform: str
    author_id: str
    author_name: str
    approver_id: str | None
    sent_at: str
    reply_url: str
    status: str


@dataclass
class Digest:
    """The figures of one digest (or of ``earshot report``)."""

    kind: str
    channel: str
    start: str
    end: str
    timezone: str
    key: str
    total: int = 0
    previous_total: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    by_sentiment: dict[str, int] = field(default_factory=dict)
    previous_by_sentiment: dict[str, int] = field(default_factory=dict)
    top_negative: list[Item] = field(default_factory=list)
    top_positive: list[Item] = field(default_factory=list)
    held: list[Item] = field(default_factory=list)
    held_total: int = 0
    #: Held mentions probably unrelated to their query (relevance below the threshold).
    unrelated: list[Item] = field(default_factory=list)
    unrelated_total: int = 0
    unhandled: list[Item] = field(default_factory=list)
    unhandled_total: int = 0
    days: list[DayCount] = field(default_factory=list)
    response_times: list[ResponseTimes] = field(default_factory=list)
    #: Replies to customers made in the period (sent by earshot or marked "I replied").
    replies: list[ReplyItem] = field(default_factory=list)
    replies_total: int = 0
    chart: bool = False
    #: Spam and off-topic mentions of the period, stored and never alerted (all queries).
    filtered: int = 0
    #: Stories of the period (one link or one copied complaint across sources): how many
    #: mentions grouped into how many stories, and the biggest ones (``listener/stories.py``).
    story_count: int = 0
    previous_story_count: int = 0
    stories: list[StorySummary] = field(default_factory=list)
    #: Themes (weekly digests and reports): mentions clustered by meaning.
    themes: list[Theme] = field(default_factory=list)
    #: Share of voice per query tag, side by side (tags as in ``[product] queries``).
    voices: list[Voice] = field(default_factory=list)

    @property
    def change(self) -> int:
        """The change in the number of mentions from the previous period."""
        return self.total - self.previous_total

    @property
    def change_percent(self) -> float | None:
        """The change in percent (``None`` when the previous period had none)."""
        if not self.previous_total:
            return None
        return 100.0 * self.change / self.previous_total

    def to_payload(self) -> dict[str, Any]:
        """A JSON-ready dict (the outbox payload)."""
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Digest:
        """The digest back from ``to_payload`` (unknown keys are ignored)."""
        data = {k: v for k, v in payload.items() if k in cls.__dataclass_fields__}
        for name in ("top_negative", "top_positive", "held", "unhandled", "unrelated"):
            data[name] = [Item(**item) for item in data.get(name) or []]
        data["days"] = [DayCount(**day) for day in data.get("days") or []]
        data["response_times"] = [ResponseTimes(**r) for r in data.get("response_times") or []]
        data["replies"] = [ReplyItem(**r) for r in data.get("replies") or []]
        data["stories"] = [StorySummary.from_payload(s) for s in data.get("stories") or []]
        data["themes"] = [Theme.from_payload(t) for t in data.get("themes") or []]
        data["voices"] = [Voice.from_payload(v) for v in data.get("voices") or []]
        return cls(**data)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def response_times(
    store: Store, start: datetime, end: datetime, channels: Iterable[str] | None = None
) -> list[ResponseTimes]:
    """Median and p90 from alert (``Delivery.sent_at``) to Handled (``Mention.resolved_at``).

    Counts the mentions marked handled in ``[start, end)``, per channel their alert went to.
    """
    wanted = set(channels) if channels is not None else None
    with Session(store.engine) as session:
        rows = session.exec(
            select(Delivery.channel, Delivery.sent_at, Mention.resolved_at)
            .join(Mention, col(Mention.id) == col(Delivery.mention_id))
            .where(
                Delivery.kind == "alert",
                Delivery.status == DeliveryStatus.SENT.value,
                col(Delivery.sent_at).is_not(None),
                Mention.status == MentionStatus.HANDLED.value,
                col(Mention.resolved_at) >= start,
                col(Mention.resolved_at) < end,
            )
        ).all()
    seconds: dict[str, list[float]] = {}
    for channel, sent_at, resolved_at in rows:
        if wanted is not None and channel not in wanted:
            continue
        sent, resolved = as_utc(sent_at), as_utc(resolved_at)
        if sent is None or resolved is None:
            continue
        seconds.setdefault(channel, []).append(max(0.0, (resolved - sent).total_seconds()))
    return [
        ResponseTimes(channel, len(values), percentile(values, 50), percentile(values, 90))
        for channel, values in sorted(seconds.items())
    ]


def replies_made(
    session: Session, start: datetime, end: datetime, limit: int = REPLIES
) -> tuple[int, list[ReplyItem]]:
    """The replies to customers made in ``[start, end)``: how many, and the newest ``limit``.

    A reply counts when it reached the customer: ``sent`` by earshot (at the time the
    platform gives) or ``manual`` (at the time the lead said "I replied").
    """
    made = (
        col(Reply.status).in_([ReplyStatus.SENT.value, ReplyStatus.MANUAL.value]),
        col(Reply.sent_at) >= start,
        col(Reply.sent_at) < end,
    )
    total = session.exec(select(func.count()).select_from(Reply).where(*made)).one()
    rows = session.exec(
        select(Reply, Mention)
        .join(Mention, col(Mention.id) == col(Reply.mention_id))
        .where(*made)
        .order_by(col(Reply.sent_at).desc(), col(Reply.id).desc())
        .limit(limit)
    ).all()
    items = []
    for reply, mention in rows:
        item = Item.of(mention)
        sent = as_utc(reply.sent_at)
        items.append(
            ReplyItem(
                mention_id=item.id,
                source=item.source,
                title=item.title,
                url=item.url,
                platform=reply.platform,
                author_id=reply.author_id,
                author_name=reply.author_name,
                approver_id=reply.approver_id,
                sent_at=sent.isoformat() if sent else "",
                reply_url=reply.remote_url or "",
                status=reply.status,
            )
        )
    return int(total), items


#: ``Mention.intents`` is a JSON list of ``Intent`` values: its text holds ``"spam"`` (with
#: the quotes) exactly when the list does, on SQLite and PostgreSQL alike.
SPAM_JSON = f'%"{Intent.SPAM.value}"%'


def _filtered() -> Any:
    """SQL: a spam mention that no rule sent anywhere (no alert, not held for a digest)."""
    # Correlated (per mention, through the outbox's mention_id index), not ``NOT IN`` a
    # list of every alert ever sent.
    alerted = select(Delivery.id).where(
        col(Delivery.mention_id) == col(Mention.id), Delivery.kind == "alert"
    )
    return and_(
        cast(col(Mention.intents), Text).like(SPAM_JSON),
        col(Mention.digest).is_(None),
        ~alerted.exists(),
    )


def _filtered_count(session: Session, start: datetime, end: datetime) -> int:
    count = session.exec(
        select(func.count())
        .select_from(Mention)
        .where(col(Mention.created_at) >= start, col(Mention.created_at) < end, _filtered())
    ).one()
    return int(count)


def _scoped(scope: Scope, channel: str) -> Any:
    if scope == "all":
        return not_(_filtered())
    alerted = select(Delivery.id).where(
        col(Delivery.mention_id) == col(Mention.id),
        Delivery.channel == channel,
        Delivery.kind == "alert",
    )
    return or_(col(Mention.digest_channel) == channel, alerted.exists())


def _mentions(
    session: Session, scope: Scope, channel: str, start: datetime, end: datetime
) -> list[Mention]:
    rows = list(
        session.exec(
            select(Mention)
            .where(
                col(Mention.created_at) >= start,
                col(Mention.created_at) < end,
                _scoped(scope, channel),
            )
            .order_by(col(Mention.created_at), col(Mention.id))
        )
    )
    return rows


def _score(mention: Mention | Item) -> float:
    score = mention.score if isinstance(mention, Item) else mention.sentiment_score
    return float(score) if score is not None else 0.0


def _tops(mentions: Sequence[Mention], label: str, limit: int) -> list[Item]:
    chosen = [m for m in mentions if (m.sentiment_label or "") == label]
    if label == Label.NEGATIVE:
        chosen.sort(key=lambda m: (_score(m), -(m.id or 0)))
    else:
        chosen.sort(key=lambda m: (-_score(m), -(m.id or 0)))
    return [Item.of(m) for m in chosen[:limit]]


def _days(mentions: Iterable[Mention], tz: ZoneInfo, first: date, last: date) -> list[DayCount]:
    counts: dict[date, Counter[str]] = {}
    day = first
    while day <= last:
        counts[day] = Counter()
        day += timedelta(days=1)
    for mention in mentions:
        created = as_utc(mention.created_at)
        if created is None:
            continue
        local_day = created.astimezone(tz).date()
        if local_day in counts:
            counts[local_day][mention.sentiment_label or "unscored"] += 1
    return [
        DayCount(day.isoformat(), {label: counter.get(label, 0) for label in LABELS})
        for day, counter in counts.items()
    ]


def _held(session: Session, period: Period) -> list[Mention]:
    """Mentions routed to this digest and not listed by another one yet."""
    return list(
        session.exec(
            select(Mention)
            .where(
                Mention.digest == period.kind,
                Mention.digest_channel == period.channel,
                col(Mention.digest_key).is_(None),
                col(Mention.fetched_at) < period.end,
            )
            .order_by(col(Mention.sentiment_score), col(Mention.id))
        )
    )


def _unhandled(
    session: Session, channel: str, reach: ReachPolicy | None = None
) -> tuple[int, list[Item]]:
    """How many alerts in ``channel`` are unhandled, and the ``UNHANDLED`` with the biggest
    reach (against each source's threshold, ``reach.by_reach``; unknown last), the oldest
    first among equals.

    Counted in the database: only the listed ones are loaded (at a million stored
    mentions, loading every unhandled one took half a minute).
    """
    first = (
        select(
            col(Delivery.mention_id).label("mention_id"),
            func.min(Delivery.sent_at).label("sent_at"),
            func.min(Delivery.id).label("delivery_id"),
        )
        .join(Mention, col(Delivery.mention_id) == col(Mention.id))
        .where(
            Delivery.kind == "alert",
            Delivery.channel == channel,
            Delivery.status == DeliveryStatus.SENT.value,
            col(Mention.status).in_(UNHANDLED_STATUSES),
        )
        .group_by(col(Delivery.mention_id))
        .subquery()
    )
    total = session.exec(select(func.count()).select_from(first)).one()
    oldest = session.exec(
        select(Mention)
        .join(first, first.c.mention_id == col(Mention.id))
        .order_by(by_reach(reach), first.c.sent_at, first.c.delivery_id)
        .limit(UNHANDLED)
    ).all()
    return int(total), [Item.of(m) for m in oldest]


#: The share-of-voice tag of untagged queries and of mentions without a query (the
#: product's own: App Store reviews, for one).
OURS = "ours"


def tag_of(query: str | None, tags: Mapping[str, str]) -> str:
    """The tag of a stored ``matched_query`` (``OURS`` when untagged).

    A stored query may carry the exclusions leads added from Slack (``(acme) -"acme
    corp"``, ``workflow.with_exclusions``): it counts as the configured query it wraps.
    """
    if query is None:
        return OURS
    tag = tags.get(query)
    if tag is not None:
        return tag
    if query.startswith("("):
        for text, tag in tags.items():
            if query.startswith(f"({text}) -"):
                return tag
    return OURS


def share_of_voice(
    current: Sequence[Mention], previous: Sequence[Mention], tags: Mapping[str, str]
) -> list[Voice]:
    """Each tag's mentions and sentiment this period and the last (``OURS`` first, then by
    volume); empty when no query has a tag. Spam is not counted."""
    if not tags:
        return []
    now: dict[str, Counter[str]] = {}
    before: dict[str, Counter[str]] = {}
    for mentions, counts in ((current, now), (previous, before)):
        for mention in mentions:
            if _is_spam(mention):
                continue
            tag = tag_of(mention.matched_query, tags)
            counts.setdefault(tag, Counter())[mention.sentiment_label or "unscored"] += 1
    names = set(now) | set(before) | {OURS} | set(tags.values())
    order = sorted(names, key=lambda t: (t != OURS, -sum(now.get(t, Counter()).values()), t))
    return [
        Voice(
            tag=tag,
            mentions=sum(now.get(tag, Counter()).values()),
            previous=sum(before.get(tag, Counter()).values()),
            sentiment=dict(sorted(now.get(tag, Counter()).items())),
            previous_sentiment=dict(sorted(before.get(tag, Counter()).items())),
        )
        for tag in order
    ]


def _is_spam(mention: Mention) -> bool:
    return isinstance(mention.intents, list) and Intent.SPAM.value in mention.intents


def build_digest(
    store: Store,
    period: Period,
    *,
    scope: Scope = "routed",
    chart: bool = False,
    session: Session | None = None,
    min_relevance: float | None = None,
    reach: ReachPolicy | None = None,
    tags: Mapping[str, str] | None = None,
    themes: ThemeConfig | None = THEMES,
) -> Digest:
    """The figures of ``period`` for its channel (reads only).

    Counts by source and sentiment of the mentions created in the period (and in the one
    before, for the change), the most negative and most positive of them, the mentions held
    for this digest, the channel's alerts still unhandled, mentions per day and label for
    the chart (at least ``CHART_DAYS`` days), for weekly digests the response times of
    every channel, and the number of spam mentions filtered in the period (``scope="all"``
    leaves them out of the other figures; ``routed`` never had them). Held mentions whose
    relevance is below ``min_relevance`` are listed apart as probably unrelated. The
    unhandled alerts are listed biggest reach first, measured against ``reach``'s
    thresholds (``None``: the defaults).

    Daily and weekly digests and reports show the share of voice of each tag of ``tags``
    (query text -> tag); weekly digests and reports show the period's themes
    (``listener/themes.py``; ``themes=None``: none).
    """
    if session is None:
        with Session(store.engine) as own:
            return build_digest(
                store,
                period,
                scope=scope,
                chart=chart,
                session=own,
                min_relevance=min_relevance,
                reach=reach,
                tags=tags,
                themes=themes,
            )
    return _build(
        store, period, scope, chart, session, min_relevance, reach, tags=tags, themes=themes
    )[0]


def _themes(
    current: Sequence[Mention], previous: Sequence[Mention], config: ThemeConfig
) -> list[Theme]:
    """The themes, or none (logged) if they cannot be computed: the rest of the digest
    goes out either way, instead of failing on every run."""
    try:
        return find_themes(current, previous, config=config)
    except Exception:
        logger.exception(
            "could not find the themes of %d mentions; digest sent without", len(current)
        )
        return []


def _unrelated(mention: Mention, min_relevance: float | None) -> bool:
    return (
        min_relevance is not None
        and mention.relevance is not None
        and mention.relevance < min_relevance
    )


def _build(
    store: Store,
    period: Period,
    scope: Scope,
    chart: bool,
    session: Session,
    min_relevance: float | None = None,
    reach: ReachPolicy | None = None,
    *,
    tags: Mapping[str, str] | None = None,
    themes: ThemeConfig | None = THEMES,
) -> tuple[Digest, list[int]]:
    tz = ZoneInfo(period.timezone)
    chart_start = min(period.start, period.end - timedelta(days=CHART_DAYS))
    window = _mentions(
        session, scope, period.channel, min(chart_start, period.previous.start), period.end
    )
    current = [m for m in window if period.start <= (as_utc(m.created_at) or period.end)]
    previous = [
        m
        for m in window
        if period.previous.start <= (as_utc(m.created_at) or period.end) < period.start
    ]
    held = _held(session, period)
    unrelated = [m for m in held if _unrelated(m, min_relevance)]
    kept = [m for m in held if not _unrelated(m, min_relevance)]
    unhandled_total, unhandled = _unhandled(session, period.channel, reach)
    last_day = (period.end - timedelta(microseconds=1)).astimezone(tz).date()
    first_day = chart_start.astimezone(tz).date()
    tops = [m for m in current if not (m.digest and _unrelated(m, min_relevance))]
    charted = [m for m in window if chart_start <= (as_utc(m.created_at) or period.end)]
    digest = Digest(
        kind=period.kind,
        channel=period.channel,
        start=period.start.isoformat(),
        end=period.end.isoformat(),
        timezone=period.timezone,
        key=period.key,
        total=len(current),
        previous_total=len(previous),
        by_source=dict(sorted(Counter(m.source for m in current).items())),
        by_sentiment=dict(Counter(m.sentiment_label or "unscored" for m in current)),
        previous_by_sentiment=dict(Counter(m.sentiment_label or "unscored" for m in previous)),
        top_negative=_tops(tops, Label.NEGATIVE, TOP),
        top_positive=_tops(tops, Label.POSITIVE, TOP),
        held=[Item.of(m) for m in kept[:HELD]],
        held_total=len(kept),
        unrelated=[Item.of(m) for m in unrelated[:HELD]],
        unrelated_total=len(unrelated),
        unhandled=unhandled,
        unhandled_total=unhandled_total,
        days=_days(charted, tz, first_day, last_day),
        chart=chart,
        filtered=_filtered_count(session, period.start, period.end),
    )
    if period.kind == "weekly":
        digest.response_times = response_times(store, period.start, period.end)
    if period.kind != "hourly":
        digest.replies_total, digest.replies = replies_made(session, period.start, period.end)
        digest.voices = share_of_voice(current, previous, tags or {})
    if period.kind in ("weekly", "report") and themes is not None:
        digest.themes = _themes(current, previous, themes)
    digest.story_count, digest.previous_story_count, digest.stories = story_figures(
        session, current, previous
    )
    return digest, [int(m.id or 0) for m in held]


#: The biggest stories a digest lists.
TOP_STORIES = 5


def story_figures(
    session: Session, current: Sequence[Mention], previous: Sequence[Mention]
) -> tuple[int, int, list[StorySummary]]:
    """How many stories the period's mentions make (a mention in no story is one of its
    own), the same for the previous period, and the biggest stories of more than one
    mention this period, each with its sentiment per source (counted over the period's
    mentions in the digest's scope)."""

    def count(mentions: Sequence[Mention]) -> int:
        return len({m.story_id for m in mentions if m.story_id is not None}) + sum(
            m.story_id is None for m in mentions
        )

    members: dict[int, list[Mention]] = {}
    for mention in current:
        if mention.story_id is not None:
            members.setdefault(mention.story_id, []).append(mention)
    big = sorted(
        ((sid, ms) for sid, ms in members.items() if len(ms) > 1),
        key=lambda item: (-len(item[1]), min(as_utc(m.created_at) or utcnow() for m in item[1])),
    )[:TOP_STORIES]
    stories = (
        {
            story.id: story
            for story in session.exec(
                select(Story).where(col(Story.id).in_([sid for sid, _ in big]))
            )
        }
        if big
        else {}
    )
    summaries = []
    for sid, ms in big:
        story = stories.get(sid)
        first = min(ms, key=lambda m: (as_utc(m.created_at) or utcnow(), m.id or 0))
        sources: dict[str, dict[str, int]] = {}
        for m in ms:
            split = sources.setdefault(m.source, {})
            label = m.sentiment_label or "unscored"
            split[label] = split.get(label, 0) + 1
        summaries.append(
            StorySummary(
                id=sid,
                title=(story.title if story else "") or first.title or first.text[:200],
                url=(story.url if story and story.url else first.url),
                mentions=len(ms),
                first_at=(as_utc(first.created_at) or utcnow()).isoformat(),
                sources=dict(sorted(sources.items())),
            )
        )
    return count(current), count(previous), summaries


def enqueue_digest(
    store: Store,
    schedule: DigestSchedule,
    kind: PeriodKind,
    now: datetime | None = None,
    *,
    reach: ReachPolicy | None = None,
) -> Digest | None:
    """Queue the digest of ``kind`` due at ``now`` for ``schedule.channel``, at most once.

    Returns the queued digest, or ``None`` when it was queued before (by this or another
    replica). The digest row, its chart row and the marking of the held mentions commit
    together or not at all.
    """
    period = due_period(kind, schedule, now or utcnow())
    with Session(store.engine) as session:
        exists = session.exec(
            select(Delivery.id).where(Delivery.idempotency_key == period.key)
        ).first()
        if exists is not None:
            return None
        chart = schedule.chart and kind != "hourly"
        digest, held_ids = _build(
            store,
            period,
            schedule.scope,
            chart,
            session,
            schedule.min_relevance,
            reach,
            tags=schedule.tags,
        )
        payload = digest.to_payload()
        rows = [(period.key, KIND_DIGEST, payload)]
        if chart:
            rows.append((f"{period.key}:chart", KIND_CHART, payload))
        inserted = [store.queue(session, key, period.channel, k, p) for key, k, p in rows]
        if not inserted[0]:
            session.rollback()
            return None
        if held_ids:
            table = SQLModel.metadata.tables["mentions"]
            result = session.execute(
                update(table)
                .where(table.c.id.in_(held_ids), table.c.digest_key.is_(None))
                .values(digest_key=period.key)
            )
            if result.rowcount != len(held_ids):  # type: ignore[attr-defined]
                session.rollback()  # another digest took some of them: try again next run
                return None
        session.commit()
    return digest
