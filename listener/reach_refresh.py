"""Reach that grows: re-read the figures of recent unhandled complaints.

earshot reads *new* items, so the reach stored at fetch time is a post's first one: an HN
story at 1-2 points, a Reddit post at score 1. A complaint that goes viral an hour later
would never be flagged. ``refresh_reach`` (a scheduler job, ``[reach] refresh``) reads the
figures of recent unhandled complaint alerts again from the sources whose API reads items
by id in batches (``Source.refresh_batch``, ``Source.refresh_reach``: Hacker News, Reddit,
Bluesky), through each source's own ``SourceHttp`` and rate limiter.

* **Candidates** - mentions of those source types, unhandled (``alerted``/``assigned``),
  created within the window (``[reach] refresh_for``), newest first, that are complaints
  (``reach.is_complaint``) and that their source can read again (``Source.refreshes``: not
  HN comments, which have no points).
* **Updates** - each batch's new ``reach``/``reach_detail`` are written in one transaction
  (only while the mention is still unhandled). An item the API no longer has (deleted,
  removed) or whose figure is unreadable keeps its stored reach.
* **Crossing the threshold** - a complaint that was below its source's threshold and is now
  at or above it is flagged once: an audit event ``high_reach`` (dedupe key
  ``high_reach:<mention id>``, so two replicas or a rerun flag it once) and, in the same
  transaction, one ``reach_update`` outbox row per alert of the mention that re-renders it
  (``chat.update``) with the "High reach" line and the stamp "High reach now: 412 points".
  The SLA job escalates it on the shorter ``[reach] sla`` counted from that event
  (``workflow.escalate_overdue``).
* **Failures** - a 429, 5xx, 403 or bad answer is logged and counted
  (``earshot_reach_refresh_errors``) and the rest of that source waits for the next round;
  nothing here touches a source's poll health or cursor.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlmodel import Session

from . import metrics
from .models import UNHANDLED_STATUSES, Mention, MentionEvent, utcnow
from .reach import ACTION_HIGH_REACH, MEASURES, Fields, ReachPolicy, is_complaint
from .routing import KIND_ALERT
from .sources.base import FatalError, RateLimitedError, RetriableError, Source
from .store import KIND_REACH_UPDATE, MENTIONS, OUTBOX, Store, _table

logger = logging.getLogger("earshot.listener.reach_refresh")

EVENTS = _table(MentionEvent)
#: At most this many mentions are read again per round (the newest first).
DEFAULT_LIMIT = 1000


@dataclass
class RefreshReport:
    """What one round did: mentions asked for, updated, flagged, and the sources skipped."""

    asked: int = 0
    updated: int = 0
    unchanged: int = 0
    missing: int = 0
    requests: int = 0
    flagged: list[int] = field(default_factory=list)
    #: Source type -> the error that stopped its refresh this round.
    errors: dict[str, str] = field(default_factory=dict)


def readers(sources: Sequence[Source]) -> dict[str, Source]:
    """Source type -> the first configured source of that type that can refresh reach."""
    found: dict[str, Source] = {}
    for source in sources:
        if source.refresh_batch > 0:
            found.setdefault(source.type, source)
    return found


def candidates(
    store: Store, types: Sequence[str], since: datetime, limit: int = DEFAULT_LIMIT
) -> list[Mention]:
    """Unhandled complaints of ``types`` created at or after ``since``, newest first.

    Only the columns the refresh needs are read (not the payload); the complaint test is
    made on the rows.
    """
    if not types:
        return []
    m = MENTIONS.c
    with Session(store.engine) as session:
        rows = session.execute(
            select(
                m.id,
                m.source,
                m.external_id,
                m.reach,
                m.reach_detail,
                m.sentiment_label,
                m.intents,
                m.status,
                m.created_at,
            )
            .where(
                m.status.in_(UNHANDLED_STATUSES),
                m.created_at >= since,
                m.source.in_(list(types)),
            )
            .order_by(m.created_at.desc())
            .limit(limit)
        ).all()
    found = []
    for row in rows:
        mention = Mention(
            id=row.id,
            source=row.source,
            external_id=row.external_id,
            reach=row.reach,
            reach_detail=row.reach_detail if isinstance(row.reach_detail, dict) else {},
            sentiment_label=row.sentiment_label,
            intents=row.intents if isinstance(row.intents, list) else [],
            status=row.status,
            created_at=row.created_at,
        )
        if is_complaint(mention):
            found.append(mention)
    return found


def refresh_reach(
    store: Store,
    sources: Sequence[Source],
    policy: ReachPolicy | None,
    *,
    window_seconds: float,
    now: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
) -> RefreshReport:
    """Read the reach of recent unhandled complaints again; flag those that crossed.

    ``window_seconds``: how far back (by the mention's ``created_at``) alerts are refreshed.
    ``policy`` decides the thresholds; without one the figures are still updated (the
    unhandled lists sort by them) but nothing is flagged. Never raises for a source's
    failure: it is logged, counted and reported in ``RefreshReport.errors``.
    """
    now = now or utcnow()
    report = RefreshReport()
    by_type = readers(sources)
    due = candidates(store, list(by_type), now - timedelta(seconds=window_seconds), limit)
    groups: dict[str, list[Mention]] = {}
    for mention in due:
        if by_type[mention.source].refreshes(mention):
            groups.setdefault(mention.source, []).append(mention)
    for kind, mentions in groups.items():
        source = by_type[kind]
        size = max(1, source.refresh_batch)
        for start in range(0, len(mentions), size):
            batch = mentions[start : start + size]
            report.asked += len(batch)
            before = source.http.requests
            try:
                found = source.refresh_reach([m.external_id for m in batch])
            except Exception as exc:
                report.requests += source.http.requests - before
                _failed(report, source, exc)
                break  # the rest of this source waits for the next round
            report.requests += source.http.requests - before
            _apply(store, batch, found, policy, now, report)
    return report


def _failed(report: RefreshReport, source: Source, exc: Exception) -> None:
    """Log and count a failed refresh request (a skip, never the poll's health)."""
    if isinstance(exc, RateLimitedError):
        kind = "rate_limited"
    elif isinstance(exc, RetriableError):
        kind = "retriable"
    elif isinstance(exc, FatalError):
        kind = "fatal"
    else:
        kind = "error"
    metrics.REACH_REFRESH_ERRORS.labels(source.type, kind).inc()
    report.errors[source.type] = f"{type(exc).__name__}: {exc}"
    if kind == "error":
        logger.exception("reach refresh of %s failed; skipped this round", source.key)
    else:
        logger.warning("reach refresh of %s skipped this round: %s", source.key, exc)


def _apply(
    store: Store,
    batch: Sequence[Mention],
    found: dict[str, Fields],
    policy: ReachPolicy | None,
    now: datetime,
    report: RefreshReport,
) -> None:
    """Write one batch's new figures in one transaction; flag the ones that crossed."""
    m = MENTIONS.c
    counts = {"updated": 0, "unchanged": 0, "missing": 0, "flagged": 0}
    flagged: list[int] = []
    with Session(store.engine) as session:
        for mention in batch:
            fields = found.get(mention.external_id)
            reach = fields.get("reach") if isinstance(fields, dict) else None
            if fields is None or not isinstance(reach, int) or isinstance(reach, bool):
                counts["missing"] += 1  # deleted, not returned, unreadable: kept as it was
                continue
            detail = fields.get("reach_detail")
            detail = detail if isinstance(detail, dict) else {}
            if reach == mention.reach and detail == mention.reach_detail:
                counts["unchanged"] += 1
                continue
            was_high = policy is not None and policy.high(mention)
            result = session.execute(
                update(MENTIONS)
                .where(m.id == mention.id, m.status.in_(UNHANDLED_STATUSES))
                .values(reach=reach, reach_detail=detail)
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                continue  # handled in the meantime: leave it
            mention.reach, mention.reach_detail = reach, detail
            counts["updated"] += 1
            crossed = policy is not None and not was_high and policy.flagged(mention)
            if crossed and policy is not None and _flag(store, session, mention, policy, now):
                flagged.append(int(mention.id or 0))
        session.commit()
    counts["flagged"] = len(flagged)
    source = batch[0].source if batch else ""
    for outcome, n in counts.items():
        if n:
            metrics.REACH_REFRESHED.labels(source, outcome).inc(n)
    report.updated += counts["updated"]
    report.unchanged += counts["unchanged"]
    report.missing += counts["missing"]
    report.flagged += flagged
    for mention_id in flagged:
        logger.info("mention %s: high reach now; its alert is re-rendered", mention_id)


def _flag(
    store: Store, session: Session, mention: Mention, policy: ReachPolicy, now: datetime
) -> bool:
    """Record ``high_reach`` once and queue the re-render of each of the mention's alerts,
    in ``session``; ``False`` when another replica (or an earlier round) flagged it."""
    assert mention.id is not None
    detail: dict[str, Any] = {
        "reach": mention.reach,
        "reach_detail": dict(mention.reach_detail),
        "threshold": policy.threshold(mention.source),
        "measure": MEASURES.get(mention.source, "reach"),
    }
    stmt = (
        store.insert(EVENTS)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(EVENTS.c.id)
    )
    row = {
        "mention_id": mention.id,
        "action": ACTION_HIGH_REACH,
        "user_id": "",
        "user_name": "earshot",
        "at": now,
        "detail": detail,
        "dedupe_key": f"{ACTION_HIGH_REACH}:{mention.id}",
    }
    if not session.execute(stmt, [row]).all():
        return False
    alerts = session.execute(
        select(OUTBOX.c.idempotency_key, OUTBOX.c.channel).where(
            OUTBOX.c.mention_id == mention.id, OUTBOX.c.kind == KIND_ALERT
        )
    ).all()
    for key, channel in alerts:
        store.queue(
            session,
            f"reach-update:{mention.id}:{channel}",
            channel,
            KIND_REACH_UPDATE,
            {"alert": key, "mention_id": mention.id},
        )
    return True


__all__ = [
    "ACTION_HIGH_REACH",
    "RefreshReport",
    "candidates",
    "readers",
    "refresh_reach",
]
