"""mentions: what the classifier understood (intents, sentiment_confidence, model_version,
relevance)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 09:00:00.000000

The meaning model (issue 14) stores a mention's intent tags, the calibrated probability of
its sentiment label and the model version that decided; relevance is the per-query
relevance score. Existing rows get no intents (``[]``, a server default, so the NOT NULL
column can be added on SQLite and PostgreSQL alike) and ``NULL`` for the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mentions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sentiment_confidence", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column("intents", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
        batch_op.add_column(sa.Column("model_version", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("relevance", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mentions", schema=None) as batch_op:
        batch_op.drop_column("relevance")
        batch_op.drop_column("model_version")
        batch_op.drop_column("intents")
        batch_op.drop_column("sentiment_confidence")
