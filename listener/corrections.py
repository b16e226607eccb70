"""Sentiment corrections from Slack ("Wrong sentiment"), kept as labelled data.

Each click on "Wrong sentiment" stores one ``SentimentCorrection`` row: which mention, the
label the classifier gave, the label the person chose, who, and when. The rows are never
updated, so the history stays auditable; for training and evaluation the latest correction
of each mention counts.

``export_corrections_csv`` writes them as ``id,text,stars,label,old_label,user_id,created_at``,
a CSV that ``earshot eval`` and ``earshot.listener.evaluation.load_examples`` read as is::

    >>> with Session(engine) as session:
    ...     record_correction(session, mention_id=42, old_label="neutral",
    ...                       new_label="negative", user_id="U123")
    ...     csv_text = export_corrections_csv(session)

``export_relevance_csv`` writes the relevance judgements (``earshot export --relevance``):
a "Not relevant" click is a negative example (``relevant`` 0), a sentiment correction a
positive one (``relevant`` 1, with the corrected ``label``), each with the query that matched,
as ``id,text,stars,query,relevant,label,user_id,created_at``; the latest judgement of each
mention counts. It is for training a relevance filter; ``earshot eval`` reads the other CSV.

The table is part of ``SQLModel.metadata`` once this module is imported (the migrations and
``Store.create_schema()`` import it).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from typing import TextIO

from sqlalchemy import Column, DateTime
from sqlmodel import Field, Session, SQLModel, col, select

from .models import Label, Mention, MentionEvent, as_utc, utcnow


class SentimentCorrection(SQLModel, table=True):
    """One person's correction of one mention's sentiment label."""

    __tablename__ = "sentiment_corrections"

    id: int | None = Field(default=None, primary_key=True)
    mention_id: int = Field(foreign_key="mentions.id", index=True)
    old_label: str = Field(max_length=16)
    new_label: str = Field(max_length=16)
    user_id: str = Field(default="", max_length=64)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


def record_correction(
    session: Session,
    mention_id: int,
    old_label: Label | str,
    new_label: Label | str,
    user_id: str = "",
    *,
    commit: bool = True,
) -> SentimentCorrection:
    """Store a correction. Labels must be ``Label`` values; ``unscored`` is allowed as old."""
    old, new = Label(old_label), Label(new_label)
    if new is Label.UNSCORED:
        raise ValueError("a correction must name a sentiment, not 'unscored'")
    row = SentimentCorrection(
        mention_id=mention_id, old_label=str(old), new_label=str(new), user_id=user_id
    )
    session.add(row)
    if commit:
        session.commit()
        session.refresh(row)
    return row


def latest_corrections(session: Session) -> list[tuple[SentimentCorrection, Mention]]:
    """The latest correction of each corrected mention, with the mention, oldest first."""
    rows: Sequence[tuple[SentimentCorrection, Mention]] = session.exec(
        select(SentimentCorrection, Mention)
        .join(Mention, col(Mention.id) == col(SentimentCorrection.mention_id))
        .order_by(col(SentimentCorrection.created_at), col(SentimentCorrection.id))
    ).all()
    latest: dict[int, tuple[SentimentCorrection, Mention]] = {}
    for correction, mention in rows:
        latest.pop(correction.mention_id, None)  # re-insert so the order follows the latest
        latest[correction.mention_id] = (correction, mention)
    return list(latest.values())


def export_corrections_csv(session: Session, out: TextIO | None = None) -> str:
    """Write the latest correction per mention as labelled CSV; also return the CSV text.

    The text is ``Mention.body`` (title and text), as the classifier saw it, and ``stars``
    the review's star rating (empty when the source has none), which ``earshot eval`` passes
    to the classifier as it was passed in production.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "text", "stars", "label", "old_label", "user_id", "created_at"])
    for correction, mention in latest_corrections(session):
        text = mention.body
        created = as_utc(correction.created_at)
        writer.writerow(
            [
                correction.mention_id,
                text,
                "" if mention.rating is None else mention.rating,
                correction.new_label,
                correction.old_label,
                correction.user_id,
                created.isoformat() if created else "",
            ]
        )
    content = buffer.getvalue()
    if out is not None:
        out.write(content)
    return content


#: The header of ``export_relevance_csv``.
RELEVANCE_COLUMNS = ["id", "text", "stars", "query", "relevant", "label", "user_id", "created_at"]


def relevance_judgements(session: Session) -> list[tuple[Mention, bool, str, str, datetime]]:
    """The latest relevance judgement of each judged mention, oldest first.

    ``(mention, relevant, label, user_id, at)``: a "Not relevant" click (a ``not_relevant``
    audit row) says not relevant (``label`` empty); a sentiment correction says relevant,
    with the corrected label.
    """
    found: list[tuple[datetime, int, Mention, bool, str, str]] = []
    clicks = session.exec(
        select(MentionEvent, Mention)
        .join(Mention, col(Mention.id) == col(MentionEvent.mention_id))
        .where(MentionEvent.action == "not_relevant")
    ).all()
    for event, mention in clicks:
        at = as_utc(event.at) or utcnow()
        found.append((at, 1, mention, False, "", event.user_id))
    corrections = session.exec(
        select(SentimentCorrection, Mention).join(
            Mention, col(Mention.id) == col(SentimentCorrection.mention_id)
        )
    ).all()
    for correction, mention in corrections:
        at = as_utc(correction.created_at) or utcnow()
        found.append((at, 0, mention, True, correction.new_label, correction.user_id))
    latest: dict[int, tuple[Mention, bool, str, str, datetime]] = {}
    # Same instant: the click (1) sorts after the correction (0) and wins.
    for at, _order, mention, relevant, label, user in sorted(
        found, key=lambda row: (row[0], row[1], row[2].id or 0)
    ):
        key = int(mention.id or 0)
        latest.pop(key, None)  # re-insert so the order follows the latest
        latest[key] = (mention, relevant, label, user, at)
    return list(latest.values())


def export_relevance_csv(session: Session, out: TextIO | None = None) -> str:
    """Write ``relevance_judgements`` as CSV (``RELEVANCE_COLUMNS``); also return the text.

    ``query`` is the query that matched the mention (``Mention.matched_query``, as stored).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RELEVANCE_COLUMNS)
    for mention, relevant, label, user, at in relevance_judgements(session):
        writer.writerow(
            [
                mention.id,
                mention.body,
                "" if mention.rating is None else mention.rating,
                mention.matched_query or "",
                1 if relevant else 0,
                label,
                user,
                at.isoformat(),
            ]
        )
    content = buffer.getvalue()
    if out is not None:
        out.write(content)
    return content
