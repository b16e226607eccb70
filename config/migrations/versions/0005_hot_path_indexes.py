"""indexes for every query of the hot path (issue 16)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 09:00:00.000000

Without them the storm check read the whole outbox on every poll that alerted (about 75%
of the poll's time at 1M stored mentions), and the SLA check, the spike check and the
digests read all sent alerts. ``tests/test_query_plans.py`` plans every statement of the
hot path and fails on a full scan of ``mentions`` or ``outbox``.

Three single-column indexes become the first column of a composite one (``status`` of both
tables, ``next_attempt_at``), and ``ix_mentions_source`` goes: the unique ``(source,
external_id)`` serves ``source`` alone. Fewer indexes to update on every insert.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, name, columns) of the new indexes.
NEW = (
    ("mentions", "ix_mentions_status_escalated_at", ["status", "escalated_at"]),
    ("mentions", "ix_mentions_status_resolved_at", ["status", "resolved_at"]),
    ("outbox", "ix_outbox_status_next_attempt_at", ["status", "next_attempt_at"]),
    ("outbox", "ix_outbox_channel_kind_created_at", ["channel", "kind", "created_at"]),
    ("outbox", "ix_outbox_kind_id", ["kind", "id"]),
)
#: The indexes the new ones make redundant (as 0001 created them).
OLD = (
    ("mentions", "ix_mentions_source", ["source"]),
    ("mentions", "ix_mentions_status", ["status"]),
    ("outbox", "ix_outbox_status", ["status"]),
    ("outbox", "ix_outbox_next_attempt_at", ["next_attempt_at"]),
)


def upgrade() -> None:
    for table, name, columns in NEW:
        op.create_index(name, table, columns, unique=False)
    for table, name, _columns in OLD:
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    for table, name, columns in OLD:
        op.create_index(name, table, columns, unique=False)
    for table, name, _columns in NEW:
        op.drop_index(name, table_name=table)
