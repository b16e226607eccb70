"""mentions: digest routing (digest, digest_channel, digest_key)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 08:09:52.872885

The routing rules (listener/routing.py) hold a mention for an hourly or daily digest of a
channel; digest_key names the digest that listed it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mentions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("digest", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("digest_channel", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("digest_key", sa.String(length=255), nullable=True))
        batch_op.create_index(batch_op.f("ix_mentions_digest_key"), ["digest_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mentions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mentions_digest_key"))
        batch_op.drop_column("digest_key")
        batch_op.drop_column("digest_channel")
        batch_op.drop_column("digest")
