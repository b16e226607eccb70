"""The response workflow: state changes on mentions, each one audited, each one idempotent.

A Slack click becomes one call here. Every state change is a conditional
``UPDATE mentions SET status = ... WHERE id = ? AND status IN (...)`` in the same
transaction as its audit row (``MentionEvent``) and any outbox rows it queues (the wins
post), so two clicks, two replicas or a redelivered payload change a mention once:
the database decides, on SQLite and on PostgreSQL alike. A redelivery of the very same
click (same ``dedupe_key``) is recognised by the unique key on the audit row.

    >>> t = transition(store, 42, "approve", Actor("U123", "lead"), dedupe_key="approve:42:1.2")
    >>> t.changed, t.mention.status
    (True, 'approved')
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, or_, update
from sqlmodel import Session, SQLModel, col, func, select

from .corrections import record_correction
from .models import (
    LIVE_REPLY_STATUSES,
    UNHANDLED_STATUSES,
    Delivery,
    DeliveryStatus,
    Label,
    Mention,
    MentionEvent,
    MentionStatus,
    QueryExclusion,
    QueryMute,
    Reply,
    ReplyStatus,
    as_utc,
    utcnow,
)
from .pipeline import Router
from .reach import ACTION_HIGH_REACH, ReachPolicy, by_reach
from .routing import DIGEST_ACTIONS, KIND_ALERT, Action
from .store import Route, Store

logger = logging.getLogger("earshot.listener.workflow")

S = MentionStatus
OPEN = frozenset({S.NEW.value, S.ALERTED.value, S.ASSIGNED.value})

#: action -> (statuses it may start from, the status it leads to)
RULES: dict[str, tuple[frozenset[str], str]] = {
    "assign": (OPEN, S.ASSIGNED.value),
    "handled": (OPEN, S.HANDLED.value),
    "not_relevant": (OPEN, S.NOT_RELEVANT.value),
    "approve": (frozenset({S.NEW.value, S.ALERTED.value}), S.APPROVED.value),
    "reject": (frozenset({S.NEW.value, S.ALERTED.value}), S.REJECTED.value),
}

#: Outbox kinds queued by the workflow (the delivery worker renders them).
KIND_WIN = "win"
KIND_THREAD = "thread_reply"

#: Audit actions that correct the sentiment label (``relabel``): the "Wrong sentiment" modal
#: and the "Send to leads" button of positive alerts.
CORRECTION_ACTIONS = frozenset({"wrong_sentiment", "send_to_leads"})


@dataclass(frozen=True)
class Actor:
    """Who acted: a Slack user id and, when known, their name."""

    user_id: str
    user_name: str = ""


@dataclass(frozen=True)
class Queued:
    """An outbox row to queue with a state change (same transaction)."""

    key: str
    channel: str
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class Transition:
    """What a workflow call did.

    * **changed** - this call changed the mention (and wrote ``event``).
    * **duplicate** - the same click was already recorded (a redelivery): nothing changed.
    * **mention** - the mention as it is now (``None``: no such mention).
    * **last** - when nothing changed, the audit row that put the mention where it is.
    """

    changed: bool
    mention: Mention | None
    event: MentionEvent | None = None
    duplicate: bool = False
    last: MentionEvent | None = None


def _table(name: str) -> Any:
    return SQLModel.metadata.tables[name]


def _queue(store: Store, session: Session, items: Iterable[Queued], mention_id: int | None) -> None:
    for item in items:
        store.queue(session, item.key, item.channel, item.kind, item.payload, mention_id)


def _event_exists(session: Session, dedupe_key: str | None) -> bool:
    if not dedupe_key:
        return False
    found = session.exec(select(MentionEvent.id).where(MentionEvent.dedupe_key == dedupe_key))
    return found.first() is not None


def _last_event(session: Session, mention_id: int, actions: Sequence[str]) -> MentionEvent | None:
    row = session.exec(
        select(MentionEvent)
        .where(MentionEvent.mention_id == mention_id, col(MentionEvent.action).in_(list(actions)))
        .order_by(col(MentionEvent.id).desc())
        .limit(1)
    ).first()
    if row is not None:
        session.expunge(row)
    return row


def _event(
    mention_id: int,
    action: str,
    actor: Actor,
    at: datetime,
    detail: dict[str, Any],
    dedupe_key: str | None,
) -> MentionEvent:
    """One audit row: ``actor`` did ``action`` on the mention at ``at``."""
    return MentionEvent(
        mention_id=mention_id,
        action=action,
        user_id=actor.user_id,
        user_name=actor.user_name,
        at=at,
        detail=detail,
        dedupe_key=dedupe_key,
    )


_Row = TypeVar("_Row", Mention, Reply)


def _detached_row(session: Session, model: type[_Row], row_id: int) -> _Row | None:
    """The row ``row_id`` of ``model``, fresh from the database and detached from ``session``."""
    row = session.get(model, row_id, populate_existing=True)
    if row is not None:
        session.expunge(row)
    return row


def _detached(session: Session, mention_id: int) -> Mention | None:
    return _detached_row(session, Mention, mention_id)


def get_mention(store: Store, mention_id: int) -> Mention | None:
    """One mention by id, detached from its session."""
    with Session(store.engine) as session:
        return _detached(session, mention_id)


def transition(
    store: Store,
    mention_id: int,
    action: str,
    actor: Actor,
    *,
    dedupe_key: str | None = None,
    detail: dict[str, Any] | None = None,
    queue: Sequence[Queued] = (),
    now: datetime | None = None,
) -> Transition:
    """Apply ``action`` (a key of ``RULES``) to a mention, at most once.

    The change, its audit row and the ``queue`` rows are written in one transaction, and
    only if the mention was in a state the action may start from. ``assign`` also moves an
    assigned mention to another person (not to the same one twice).
    """
    if action not in RULES:
        raise ValueError(f"unknown workflow action {action!r}")
    sources, target = RULES[action]
    now = now or utcnow()
    table = _table("mentions").c
    with Session(store.engine) as session:
        if _event_exists(session, dedupe_key):
            return Transition(False, _detached(session, mention_id), duplicate=True)
        values: dict[str, Any] = {"status": target}
        conditions = [table.id == mention_id, table.status.in_(sorted(sources))]
        if action == "assign":
            values["assignee"] = actor.user_id
            conditions.append(table.assignee.is_(None) | (table.assignee != actor.user_id))
        else:
            values["resolved_by"] = actor.user_id
            values["resolved_at"] = now
        result = session.execute(update(_table("mentions")).where(*conditions).values(**values))
        if not result.rowcount:  # type: ignore[attr-defined]
            session.rollback()
            mention = _detached(session, mention_id)
            last = None
            if mention is not None:
                last = _last_event(session, mention_id, list(RULES))
            return Transition(False, mention, last=last)
        event = _event(mention_id, action, actor, now, detail or {}, dedupe_key)
        session.add(event)
        _queue(store, session, queue, mention_id)
        session.commit()
        session.refresh(event)
        session.expunge(event)
        return Transition(True, _detached(session, mention_id), event=event)


def record(
    store: Store,
    mention_id: int,
    action: str,
    actor: Actor,
    *,
    dedupe_key: str | None = None,
    detail: dict[str, Any] | None = None,
    correction: tuple[str, str] | None = None,
    exclusion: tuple[str, str] | None = None,
    now: datetime | None = None,
) -> Transition:
    """Record an action that does not move the status (a sentiment correction, an exclusion).

    ``correction`` is ``(old_label, new_label)``, stored with ``record_correction``;
    ``exclusion`` is ``(query, term)``, stored as a ``QueryExclusion``. A repeated
    ``dedupe_key`` changes nothing.
    """
    with Session(store.engine) as session:
        mention = _detached(session, mention_id)
        if mention is None:
            return Transition(False, None)
        if _event_exists(session, dedupe_key):
            return Transition(False, mention, duplicate=True)
        if correction is not None:
            old, new = correction
            record_correction(session, mention_id, old, new, actor.user_id, commit=False)
        if exclusion is not None:
            query, term = exclusion
            stmt = store.insert(_table("query_exclusions")).on_conflict_do_nothing(
                index_elements=["query", "term"]
            )
            session.execute(
                stmt,
                [
                    {
                        "query": query,
                        "term": term,
                        "user_id": actor.user_id,
                        "mention_id": mention_id,
                        "created_at": now or utcnow(),
                    }
                ],
            )
        event = _event(mention_id, action, actor, now or utcnow(), detail or {}, dedupe_key)
        session.add(event)
        session.commit()
        session.refresh(event)
        session.expunge(event)
        return Transition(True, mention, event=event)


def reroute_key(mention_id: int, channel: str) -> str:
    """The outbox key of a corrected mention's alert in ``channel``: one per mention and
    channel, whichever correction, click, replica or retry queues it."""
    return f"reroute:{mention_id}:{channel}"


def relabel(
    store: Store,
    mention_id: int,
    label: Label | str,
    actor: Actor,
    *,
    action: str = "wrong_sentiment",
    router: Router | None = None,
    dedupe_key: str | None = None,
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Transition:
    """Correct a mention's sentiment to ``label`` and send it where that label routes, once.

    One transaction: ``Mention.sentiment_label`` becomes ``label`` (digests and reports count
    the corrected label), a ``SentimentCorrection`` and a ``MentionEvent`` (``action``, with
    ``label``, ``old_label`` and, when it moved, ``sent_to``) are written, and, when
    ``router`` sends the new label to a channel the mention has no alert in yet and the
    mention is still open, an alert is queued there (key ``reroute_key``). A digest rule
    marks the mention for that digest instead, unless a digest listed it already. A label
    that routes nowhere (neutral, by default) changes only the label.

    The mention row is locked first (a no-op ``UPDATE``), so two clicks or two replicas are
    taken one after the other; a repeated ``dedupe_key`` (a redelivered payload) changes
    nothing (``duplicate``), a mention that already has ``label`` neither (``changed`` is
    False, ``last`` the correction that set it), and the outbox key makes a second alert
    in the same channel impossible.
    """
    if action not in CORRECTION_ACTIONS:
        raise ValueError(f"unknown correction action {action!r}")
    new = Label(label)
    if new is Label.UNSCORED:
        raise ValueError("a correction must name a sentiment, not 'unscored'")
    now = now or utcnow()
    mentions = _table("mentions")
    with Session(store.engine) as session:
        locked = session.execute(
            update(mentions)
            .where(mentions.c.id == mention_id)
            .values(sentiment_label=mentions.c.sentiment_label)
        )
        if not locked.rowcount:  # type: ignore[attr-defined]
            session.rollback()
            return Transition(False, None)
        if _event_exists(session, dedupe_key):
            session.rollback()
            return Transition(False, _detached(session, mention_id), duplicate=True)
        mention = _detached(session, mention_id)
        assert mention is not None
        old = mention.sentiment_label or Label.UNSCORED.value
        if old == new.value:  # a double click, a stale modal: nothing to correct
            session.rollback()
            last = _last_event(session, mention_id, sorted(CORRECTION_ACTIONS))
            return Transition(False, mention, last=last)
        mention.sentiment_label = new.value  # a detached copy: what the router looks at
        values: dict[str, Any] = {"sentiment_label": new.value}
        info: dict[str, Any] = {**(detail or {}), "label": new.value, "old_label": old}
        decision = router.decide(mention) if router is not None else None
        if decision is not None and decision.channel and decision.action is not Action.IGNORE:
            channel = decision.channel
            if decision.action in DIGEST_ACTIONS:
                held = (mention.digest, mention.digest_channel) == (decision.action.value, channel)
                if mention.digest_key is None and not held:
                    values.update(digest=decision.action.value, digest_channel=channel)
                    info.update(sent_to=channel, digest=decision.action.value)
            elif mention.status in OPEN and channel not in _alert_channels(session, mention_id):
                key = reroute_key(mention_id, channel)
                payload = {"rerouted_from": old, "label": new.value, "by": actor.user_id}
                store.queue(session, key, channel, KIND_ALERT, payload, mention_id)
                info.update(sent_to=channel, outbox_key=key)
        session.execute(update(mentions).where(mentions.c.id == mention_id).values(**values))
        record_correction(session, mention_id, old, new, actor.user_id, commit=False)
        event = _event(mention_id, action, actor, now, info, dedupe_key)
        session.add(event)
        session.commit()
        session.refresh(event)
        session.expunge(event)
        return Transition(True, _detached(session, mention_id), event=event)


def _alert_channels(session: Session, mention_id: int) -> set[str]:
    rows = session.exec(
        select(Delivery.channel).where(
            Delivery.mention_id == mention_id, Delivery.kind == KIND_ALERT
        )
    )
    return set(rows)


def events(store: Store, mention_id: int) -> list[MentionEvent]:
    """A mention's audit trail, oldest first."""
    with Session(store.engine) as session:
        rows = list(
            session.exec(
                select(MentionEvent)
                .where(MentionEvent.mention_id == mention_id)
                .order_by(col(MentionEvent.id))
            )
        )
        for row in rows:
            session.expunge(row)
        return rows


def alert_message(store: Store, mention_id: int) -> tuple[str, str] | None:
    """Where the mention's alert landed in Slack: ``(channel_id, ts)``, if it was sent."""
    with Session(store.engine) as session:
        row = session.exec(
            select(Delivery.message_channel, Delivery.message_ts)
            .where(
                Delivery.mention_id == mention_id,
                Delivery.kind == "alert",
                Delivery.status == DeliveryStatus.SENT.value,
                col(Delivery.message_ts).is_not(None),
            )
            .order_by(col(Delivery.id))
            .limit(1)
        ).first()
    if row is None or not row[0] or not row[1]:
        return None
    return str(row[0]), str(row[1])


@dataclass(frozen=True)
class AlertMessage:
    """One alert of a mention (the first one, or one sent after a correction re-routed it).

    ``channel`` is the configured channel (``#cx-alerts``); ``message_channel`` and ``ts``
    say where Slack put it (``None`` while it is not sent).
    """

    delivery_id: int
    channel: str
    message_channel: str | None
    ts: str | None
    key: str = ""

    @property
    def rerouted(self) -> bool:
        """Queued by a correction (``relabel``), not by the pipeline."""
        return self.key.startswith("reroute:")


def alert_messages(store: Store, mention_id: int) -> list[AlertMessage]:
    """Every alert outbox row of a mention, sent or not, oldest first."""
    with Session(store.engine) as session:
        rows = session.exec(
            select(Delivery)
            .where(Delivery.mention_id == mention_id, Delivery.kind == KIND_ALERT)
            .order_by(col(Delivery.id))
        ).all()
        return [
            AlertMessage(
                int(row.id or 0),
                row.channel,
                row.message_channel,
                row.message_ts,
                row.idempotency_key,
            )
            for row in rows
        ]


def unhandled(
    store: Store, channel: str | None, limit: int = 10, *, reach: ReachPolicy | None = None
) -> list[tuple[Mention, Delivery]]:
    """Alerted, not yet handled mentions in ``channel`` (the alerts channel): the biggest
    reach first (against each source's threshold, ``reach.by_reach``; unknown last), then
    the oldest alert first."""
    if not channel:
        return []
    with Session(store.engine) as session:
        rows = list(
            session.exec(
                select(Mention, Delivery)
                .join(Delivery, col(Delivery.mention_id) == col(Mention.id))
                .where(
                    Delivery.kind == "alert",
                    Delivery.channel == channel,
                    col(Mention.status).in_(UNHANDLED_STATUSES),
                )
                .order_by(
                    by_reach(reach), col(Delivery.sent_at).asc().nulls_last(), col(Delivery.id)
                )
                .limit(limit)
            )
        )
        for mention, delivery in rows:
            session.expunge(mention)
            session.expunge(delivery)
        return rows


def status_counts(store: Store) -> dict[str, int]:
    """Mentions by workflow status."""
    with Session(store.engine) as session:
        rows = session.exec(select(Mention.status, func.count()).group_by(col(Mention.status)))
        return {status: count for status, count in rows}


def approved_since(store: Store, since: datetime) -> list[tuple[Mention, MentionEvent]]:
    """Mentions approved for amplification at or after ``since``, with the approval row."""
    with Session(store.engine) as session:
        rows = list(
            session.exec(
                select(Mention, MentionEvent)
                .join(MentionEvent, col(MentionEvent.mention_id) == col(Mention.id))
                .where(
                    MentionEvent.action == "approve",
                    col(MentionEvent.at) >= since,
                    Mention.status == S.APPROVED.value,
                )
                .order_by(col(MentionEvent.at), col(MentionEvent.id))
            )
        )
        for mention, event in rows:
            session.expunge(mention)
            session.expunge(event)
        return rows


def escalate_overdue(
    store: Store,
    *,
    alerts_channel: str | None,
    sla_seconds: float,
    text: Callable[[Mention], str],
    now: datetime | None = None,
    limit: int = 100,
    reach: ReachPolicy | None = None,
    reach_text: Callable[[Mention], str] | None = None,
) -> list[int]:
    """Escalate, once each, alerts in ``alerts_channel`` not handled within the SLA.

    For each overdue mention (alerted or assigned, sent more than ``sla_seconds`` ago, not
    escalated yet) ``escalated_at`` is set with a conditional update and a thread reply
    (``text(mention)``) is queued in the same transaction; returns the escalated ids.

    With ``reach`` (and its ``sla_seconds`` shorter than ``sla_seconds``), the flagged
    mentions (high reach and a complaint, ``ReachPolicy.flagged``) are escalated first, once
    their alert is older than the shorter SLA, with ``reach_text(mention)`` (default
    ``text``). The candidates are found in the database (unhandled, not escalated, of a
    source and reach at or above its threshold); the complaint test is made on them. A
    mention whose reach crossed its threshold later (a refresh's ``high_reach`` event,
    ``listener/reach_refresh.py``) has the shorter SLA counted from that event.
    """
    if not alerts_channel:
        return []
    now = now or utcnow()
    done: list[int] = []
    short = reach.sla_seconds if reach is not None else None
    high = [
        and_(col(Mention.source) == source, col(Mention.reach) >= threshold)
        for source, threshold in (reach.sources() if reach is not None else ())
    ]
    if reach is not None and short is not None and short < sla_seconds and high:
        cutoff = now - timedelta(seconds=short)
        due = _overdue(store, alerts_channel, cutoff, limit, or_(*high), since_flag=True)
        flagged = [(m, d) for m, d in due if reach.flagged(m)]
        done += _escalate(store, flagged, now, short, reach_text or text, high_reach=True)
    due = _overdue(store, alerts_channel, now - timedelta(seconds=sla_seconds), limit)
    done += _escalate(store, due, now, sla_seconds, text)
    return done


def _overdue(
    store: Store,
    alerts_channel: str,
    cutoff: datetime,
    limit: int,
    *where: Any,
    since_flag: bool = False,
) -> list[tuple[Mention, Delivery]]:
    """Sent alerts in ``alerts_channel`` older than ``cutoff``, unhandled, not escalated.

    ``since_flag``: a mention flagged high reach by a refresh (a ``high_reach`` event) is
    due only once that event, too, is older than ``cutoff``.
    """
    query = select(Mention, Delivery).join(Delivery, col(Delivery.mention_id) == col(Mention.id))
    if since_flag:
        query = query.outerjoin(
            MentionEvent,
            and_(
                col(MentionEvent.mention_id) == col(Mention.id),
                col(MentionEvent.action) == ACTION_HIGH_REACH,
            ),
        )
        where = (*where, or_(col(MentionEvent.at).is_(None), col(MentionEvent.at) <= cutoff))
    with Session(store.engine) as session:
        due = list(
            session.exec(
                query.where(
                    Delivery.kind == "alert",
                    Delivery.channel == alerts_channel,
                    Delivery.status == DeliveryStatus.SENT.value,
                    col(Delivery.message_ts).is_not(None),
                    col(Delivery.sent_at) <= cutoff,
                    col(Mention.status).in_(UNHANDLED_STATUSES),
                    col(Mention.escalated_at).is_(None),
                    *where,
                )
                .order_by(col(Delivery.sent_at))
                .limit(limit)
            )
        )
        for mention, delivery in due:
            session.expunge(mention)
            session.expunge(delivery)
    return due


def _escalate(
    store: Store,
    due: Sequence[tuple[Mention, Delivery]],
    now: datetime,
    sla_seconds: float,
    text: Callable[[Mention], str],
    *,
    high_reach: bool = False,
) -> list[int]:
    """Mark each of ``due`` escalated (if nobody did first) and queue its thread reply."""
    done: list[int] = []
    table = _table("mentions").c
    for mention, delivery in due:
        assert mention.id is not None
        with Session(store.engine) as session:
            result = session.execute(
                update(_table("mentions"))
                .where(
                    table.id == mention.id,
                    table.escalated_at.is_(None),
                    table.status.in_(UNHANDLED_STATUSES),
                )
                .values(escalated_at=now)
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                session.rollback()
                continue
            detail: dict[str, Any] = {"sla_seconds": sla_seconds}
            if high_reach:
                detail.update(high_reach=True, reach=mention.reach)
            session.add(
                MentionEvent(
                    mention_id=mention.id,
                    action="escalated",
                    user_id="",
                    user_name="earshot",
                    at=now,
                    detail=detail,
                    dedupe_key=f"escalated:{mention.id}",
                )
            )
            item = Queued(
                key=f"escalation:{mention.id}",
                channel=str(delivery.message_channel),
                kind=KIND_THREAD,
                payload={"thread_ts": delivery.message_ts, "text": text(mention)},
            )
            _queue(store, session, [item], mention.id)
            session.commit()
            done.append(mention.id)
    return done


# -- exclusions and mutes ----------------------------------------------------------------


def exclusions(store: Store) -> dict[str, list[str]]:
    """The stored exclusions: query text -> terms, oldest first."""
    with Session(store.engine) as session:
        rows = session.exec(
            select(QueryExclusion.query, QueryExclusion.term).order_by(col(QueryExclusion.id))
        )
        found: dict[str, list[str]] = {}
        for query, term in rows:
            found.setdefault(query, []).append(term)
        return found


def with_exclusions(query: str, terms: Sequence[str]) -> str:
    """``query`` with ``-"term"`` for each term: ``(acme) -"acme corp"``."""
    if not terms:
        return query
    return f"({query}) " + " ".join(f'-"{term}"' for term in terms)


def mute(store: Store, query: str, until: datetime, actor: Actor) -> None:
    """Mute ``query`` until ``until`` (replacing an earlier mute)."""
    stmt = store.insert(_table("query_mutes")).values(
        query=query, until=until, user_id=actor.user_id
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["query"], set_={"until": stmt.excluded.until, "user_id": actor.user_id}
    )
    with Session(store.engine) as session:
        session.execute(stmt)
        session.commit()


def active_mutes(store: Store, now: datetime | None = None) -> dict[str, datetime]:
    """Muted queries and until when."""
    now = now or utcnow()
    with Session(store.engine) as session:
        rows = session.exec(select(QueryMute.query, QueryMute.until))
        return {q: u for q, u in ((q, as_utc(u)) for q, u in rows) if u is not None and u > now}


class MutingRouter(Router):
    """A ``Router`` that stores, but does not alert, mentions of a muted query.

    ``aliases`` maps an effective query text (with exclusions applied) back to the
    configured one, which is what ``/earshot mute`` names. Mutes are re-read at most every
    ``refresh`` seconds.
    """

    def __init__(
        self,
        store: Store,
        alerts_channel: str | None,
        amplify_channel: str | None,
        *,
        aliases: dict[str, str] | None = None,
        refresh: float = 15.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(alerts_channel, amplify_channel, **kwargs)
        self.store = store
        self.aliases = aliases or {}
        self.refresh = refresh
        self._mutes: dict[str, datetime] = {}
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def muted(self, query: str | None) -> bool:
        """Whether ``query`` (as stored on a mention) is muted now."""
        if not query:
            return False
        with self._lock:
            if time.monotonic() - self._read_at >= self.refresh:
                try:
                    self._mutes = active_mutes(self.store)
                except Exception:
                    logger.exception("cannot read query mutes; alerting as usual")
                    self._mutes = {}
                self._read_at = time.monotonic()
            until = self._mutes.get(self.aliases.get(query, query))
        return until is not None and until > utcnow()

    def routes(self, mention: Mention) -> list[Route]:
        if self.muted(mention.matched_query):
            return []
        return super().routes(mention)


def valid_label(value: str) -> Label | None:
    """A correctable label (not ``unscored``), or ``None``."""
    try:
        label = Label(value)
    except ValueError:
        return None
    return None if label is Label.UNSCORED else label


# -- replies to the customer ---------------------------------------------------------------
#
# A reply moves pending_approval -> queued -> sent (or rejected, failed, uncertain), each
# step a conditional UPDATE in one transaction with its audit row and its note in the
# alert's thread (an outbox row), like every other state change here. ``claim_replies``
# counts an attempt *before* the post: a reply claimed again with attempts > 0 may be on
# the platform already, and the sender looks it up before posting again.

R = ReplyStatus


@dataclass
class ReplyChange:
    """What a reply call did.

    * **reply** - the reply as it is now (``None``: no such reply).
    * **changed** - this call changed it; **duplicate** - the same submission or click was
      recorded already (nothing changed).
    * **problem** - why nothing changed, for the person who asked (``None``: it changed).
    """

    reply: Reply | None
    changed: bool = False
    duplicate: bool = False
    problem: str | None = None


def _detached_reply(session: Session, reply_id: int) -> Reply | None:
    return _detached_row(session, Reply, reply_id)


def get_reply(store: Store, reply_id: int) -> Reply | None:
    """One reply by id, detached."""
    with Session(store.engine) as session:
        return _detached_reply(session, reply_id)


def replies_of(store: Store, mention_id: int) -> list[Reply]:
    """A mention's replies, oldest first."""
    with Session(store.engine) as session:
        rows = list(
            session.exec(
                select(Reply).where(Reply.mention_id == mention_id).order_by(col(Reply.id))
            )
        )
        for row in rows:
            session.expunge(row)
        return rows


def _note(
    store: Store, session: Session, reply: Reply, step: str, text: str, blocks: Any = None
) -> None:
    """Queue a note about ``reply`` in its alert's thread (nothing without a known alert)."""
    if not reply.alert_channel or not reply.alert_ts:
        return
    payload: dict[str, Any] = {"thread_ts": reply.alert_ts, "text": text}
    if blocks:
        payload["blocks"] = blocks
    key = f"reply:{reply.id}:{step}"
    store.queue(session, key, reply.alert_channel, KIND_THREAD, payload, reply.mention_id)


def draft_reply(
    store: Store,
    mention_id: int,
    *,
    key: str,
    platform: str,
    text: str,
    actor: Actor,
    approval: bool,
    alert: tuple[str | None, str | None] = (None, None),
    note: Callable[[Reply], tuple[str, Any]] | None = None,
    manual: tuple[str | None] | None = None,
    now: datetime | None = None,
) -> ReplyChange:
    """Store a reply written in Slack: ``queued`` to be sent, or ``pending_approval``.

    One transaction, the mention row locked first: a mention has at most one live reply
    (pending, queued, sent, uncertain or replied by hand), so two leads answering at once
    get one reply and a ``problem`` for the second. ``key`` (the submitted modal) makes a
    redelivered submission a ``duplicate``. ``note(reply)`` gives the text and blocks of
    the note queued in the alert's thread (the approval request). ``manual`` (a tuple of
    the reply's URL, if known) records a reply made outside earshot: ``manual``, the mention
    handled now by ``actor``.
    """
    now = now or utcnow()
    mentions = _table("mentions")
    with Session(store.engine) as session:
        locked = session.execute(
            update(mentions).where(mentions.c.id == mention_id).values(status=mentions.c.status)
        )
        if not locked.rowcount:  # type: ignore[attr-defined]
            session.rollback()
            return ReplyChange(None, problem="That mention is no longer stored.")
        existing = session.exec(select(Reply).where(Reply.key == key)).first()
        if existing is not None:
            session.rollback()
            return ReplyChange(_detached_reply(session, int(existing.id or 0)), duplicate=True)
        live = session.exec(
            select(Reply).where(
                Reply.mention_id == mention_id, col(Reply.status).in_(LIVE_REPLY_STATUSES)
            )
        ).first()
        if live is not None:
            session.rollback()
            who = f"<@{live.author_id}>" if live.author_id else "someone"
            state = live.status.replace("_", " ")
            return ReplyChange(None, problem=f"{who} answered this already (reply {state}).")
        status = R.PENDING_APPROVAL if approval else R.QUEUED
        if manual is not None:
            status = R.MANUAL
        reply = Reply(
            key=key[:255],
            mention_id=mention_id,
            platform=platform,
            text=text,
            status=status.value,
            author_id=actor.user_id,
            author_name=actor.user_name,
            created_at=now,
            next_attempt_at=now,
            alert_channel=alert[0],
            alert_ts=alert[1],
        )
        if manual is not None:
            reply.sent_at, reply.remote_url = now, manual[0]
        session.add(reply)
        session.flush()
        action = "reply_pending" if approval else "reply_queued"
        detail: dict[str, Any] = {"reply_id": reply.id, "platform": platform}
        if manual is not None:
            action = "replied"
            detail.update(manual=True, url=manual[0])
            session.execute(
                update(mentions)
                .where(mentions.c.id == mention_id, mentions.c.status.in_(sorted(OPEN)))
                .values(status=S.HANDLED.value, resolved_by=actor.user_id, resolved_at=now)
            )
        session.add(_event(mention_id, action, actor, now, detail, f"{action}:{reply.id}"))
        if note is not None:
            note_text, blocks = note(reply)
            _note(store, session, reply, "pending", note_text, blocks)
        session.commit()
        return ReplyChange(_detached_reply(session, int(reply.id or 0)), changed=True)


def decide_reply(
    store: Store,
    reply_id: int,
    actor: Actor,
    *,
    approve: bool,
    text: str | None = None,
    dedupe_key: str | None = None,
    note: Callable[[Reply], str] | None = None,
    now: datetime | None = None,
) -> ReplyChange:
    """An approver sends (``approve``, with ``text`` when edited) or rejects a pending reply.

    A conditional update from ``pending_approval``: two approvers, or a click and a
    redelivery, decide once. The caller checks that ``actor`` may approve. ``note(reply)``
    is the thread note telling the author (queued with the change).
    """
    now = now or utcnow()
    replies = _table("replies")
    with Session(store.engine) as session:
        if _event_exists(session, dedupe_key):
            return ReplyChange(_detached_reply(session, reply_id), duplicate=True)
        values: dict[str, Any] = {
            "status": (R.QUEUED if approve else R.REJECTED).value,
            "approver_id": actor.user_id,
            "next_attempt_at": now,
        }
        if approve and text is not None:
            values["text"] = text
        result = session.execute(
            update(replies)
            .where(replies.c.id == reply_id, replies.c.status == R.PENDING_APPROVAL.value)
            .values(**values)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            session.rollback()
            reply = _detached_reply(session, reply_id)
            if reply is None:
                return ReplyChange(None, problem="That reply is no longer stored.")
            by = f" by <@{reply.approver_id}>" if reply.approver_id else ""
            state = reply.status.replace("_", " ")
            return ReplyChange(reply, problem=f"That reply was {state}{by} already.")
        reply = session.get(Reply, reply_id)
        assert reply is not None
        action = "reply_approved" if approve else "reply_rejected"
        detail: dict[str, Any] = {"reply_id": reply_id, "edited": text is not None}
        session.add(_event(reply.mention_id, action, actor, now, detail, dedupe_key))
        if note is not None:
            _note(store, session, reply, action, note(reply))
        session.commit()
        return ReplyChange(_detached_reply(session, reply_id), changed=True)


@dataclass(frozen=True)
class ClaimedReply:
    """A reply leased to one sender, with its mention.

    ``again``: an earlier attempt was begun (it may have reached the platform), so the
    sender looks for the reply there before posting.
    """

    reply: Reply
    mention: Mention
    again: bool


def claim_replies(
    store: Store, limit: int = 20, lease_seconds: float = 120.0, now: datetime | None = None
) -> list[ClaimedReply]:
    """Lease up to ``limit`` queued, due replies and count an attempt on each, committed
    before anything is posted (a conditional update: one sender per reply at a time)."""
    now = now or utcnow()
    replies = _table("replies")
    claimed: list[ClaimedReply] = []
    with Session(store.engine) as session:
        due = list(
            session.exec(
                select(Reply.id)
                .where(
                    Reply.status == R.QUEUED.value,
                    col(Reply.next_attempt_at) <= now,
                    col(Reply.lease_until).is_(None) | (col(Reply.lease_until) < now),
                )
                .order_by(col(Reply.next_attempt_at), col(Reply.id))
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        taken: list[int] = []
        for reply_id in due:
            result = session.execute(
                update(replies)
                .where(
                    replies.c.id == reply_id,
                    replies.c.status == R.QUEUED.value,
                    replies.c.lease_until.is_(None) | (replies.c.lease_until < now),
                )
                .values(
                    lease_until=now + timedelta(seconds=lease_seconds),
                    attempts=replies.c.attempts + 1,
                    attempted_at=func.coalesce(replies.c.attempted_at, now),
                )
            )
            if result.rowcount and reply_id is not None:  # type: ignore[attr-defined]
                taken.append(reply_id)
        session.commit()
        for reply_id in taken:
            reply = _detached_reply(session, reply_id)
            mention = _detached(session, reply.mention_id) if reply is not None else None
            if reply is not None and mention is not None:
                claimed.append(ClaimedReply(reply, mention, again=reply.attempts > 1))
    return claimed


def mark_reply_sent(
    store: Store,
    reply_id: int,
    *,
    remote_id: str,
    url: str | None,
    at: datetime | None,
    note: Callable[[Reply], str] | None = None,
    now: datetime | None = None,
) -> ReplyChange:
    """The platform holds the reply: store its id and URL, mark the mention handled.

    One transaction: the reply becomes ``sent`` (only from ``queued``), the mention handled
    by the reply's author at ``at`` (the platform's time of the reply: response times are
    measured to it), an audit row ``replied``, and the thread note.
    """
    now = now or utcnow()
    at = as_utc(at) or now
    replies, mentions = _table("replies"), _table("mentions")
    with Session(store.engine) as session:
        result = session.execute(
            update(replies)
            .where(replies.c.id == reply_id, replies.c.status == R.QUEUED.value)
            .values(
                status=R.SENT.value,
                remote_id=remote_id[:255],
                remote_url=url,
                sent_at=at,
                lease_until=None,
                last_error=None,
            )
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            session.rollback()
            return ReplyChange(_detached_reply(session, reply_id), problem="not queued")
        reply = session.get(Reply, reply_id)
        assert reply is not None
        session.execute(
            update(mentions)
            .where(mentions.c.id == reply.mention_id, mentions.c.status.in_(sorted(OPEN)))
            .values(status=S.HANDLED.value, resolved_by=reply.author_id, resolved_at=at)
        )
        detail = {
            "reply_id": reply_id,
            "platform": reply.platform,
            "remote_id": remote_id[:255],
            "url": url,
            "approved_by": reply.approver_id,
        }
        author = Actor(reply.author_id, reply.author_name)
        session.add(_event(reply.mention_id, "replied", author, at, detail, f"replied:{reply_id}"))
        if note is not None:
            _note(store, session, reply, "sent", note(reply))
        session.commit()
        return ReplyChange(_detached_reply(session, reply_id), changed=True)


def mark_reply_retry(store: Store, reply_id: int, error: str, delay: float) -> None:
    """Posting failed for now (the platform refused it for now, or did not answer)."""
    replies = _table("replies")
    with Session(store.engine) as session:
        session.execute(
            update(replies)
            .where(replies.c.id == reply_id, replies.c.status == R.QUEUED.value)
            .values(
                lease_until=None,
                last_error=error[:2000],
                next_attempt_at=utcnow() + timedelta(seconds=max(0.0, delay)),
            )
        )
        session.commit()


def end_reply(
    store: Store,
    reply_id: int,
    status: ReplyStatus,
    error: str,
    *,
    note: Callable[[Reply], tuple[str, Any]] | None = None,
    now: datetime | None = None,
) -> ReplyChange:
    """Stop sending a queued reply: ``failed`` (the platform refuses it) or ``uncertain``
    (it may be there and the platform cannot be asked: a human decides), with an audit
    row and ``note(reply)`` in the alert's thread."""
    if status not in (R.FAILED, R.UNCERTAIN):
        raise ValueError(f"not an end of sending: {status!r}")
    now = now or utcnow()
    replies = _table("replies")
    with Session(store.engine) as session:
        result = session.execute(
            update(replies)
            .where(replies.c.id == reply_id, replies.c.status == R.QUEUED.value)
            .values(status=status.value, lease_until=None, last_error=error[:2000])
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            session.rollback()
            return ReplyChange(_detached_reply(session, reply_id), problem="not queued")
        reply = session.get(Reply, reply_id)
        assert reply is not None
        action = f"reply_{status.value}"
        detail = {"reply_id": reply_id, "error": error[:500]}
        session.add(
            _event(
                reply.mention_id, action, Actor("", "earshot"), now, detail, f"{action}:{reply_id}"
            )
        )
        if note is not None:
            text, blocks = note(reply)
            _note(store, session, reply, status.value, text, blocks)
        session.commit()
        return ReplyChange(_detached_reply(session, reply_id), changed=True)


def record_manual_reply(
    store: Store,
    mention_id: int,
    *,
    key: str,
    platform: str,
    text: str,
    actor: Actor,
    url: str | None = None,
    alert: tuple[str | None, str | None] = (None, None),
    now: datetime | None = None,
) -> ReplyChange:
    """ "I replied": the lead answered on a platform earshot cannot write to. Stored as a
    ``manual`` reply, the mention handled by them now, audited as ``replied``."""
    return draft_reply(
        store,
        mention_id,
        key=key,
        platform=platform,
        text=text,
        actor=actor,
        approval=False,
        alert=alert,
        manual=(url,),
        now=now,
    )
