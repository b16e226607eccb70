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

The table is part of ``SQLModel.metadata`` once this module is imported: import it before
``Store.create_schema()`` so the table is created with the others.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from typing import TextIO

from sqlalchemy import Column, DateTime
from sqlmodel import Field, Session, SQLModel, col, select

from .models import Label, Mention, as_utc, utcnow


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
