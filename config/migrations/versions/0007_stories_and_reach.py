"""stories and reach: one story per link or copied complaint across sources (issue 18)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 08:00:00.000000

``stories`` holds one row per story, ``story_keys`` the keys that find one (a canonical
URL's hash, a near-duplicate band of a text), looked up by primary key. Mentions gain the
URL they link to (``link``), their story (``story_id``) and their reach (``reach``, with
its figures in ``reach_detail``; existing rows get ``{}``, a server default, so the NOT
NULL column can be added on SQLite and PostgreSQL alike).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("mention_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "story_keys",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("story_id", sa.Integer(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["story_id"], ["stories.id"]),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("story_keys", schema=None) as batch_op:
        batch_op.create_index("ix_story_keys_story_id", ["story_id"], unique=False)
    with op.batch_alter_table("mentions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("link", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("story_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("reach", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("reach_detail", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch_op.create_index("ix_mentions_story_id", ["story_id"], unique=False)
        batch_op.create_foreign_key("fk_mentions_story_id_stories", "stories", ["story_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("mentions", schema=None) as batch_op:
        batch_op.drop_constraint("fk_mentions_story_id_stories", type_="foreignkey")
        batch_op.drop_index("ix_mentions_story_id")
        batch_op.drop_column("reach_detail")
        batch_op.drop_column("reach")
        batch_op.drop_column("story_id")
        batch_op.drop_column("link")
    with op.batch_alter_table("story_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_story_keys_story_id")
    op.drop_table("story_keys")
    op.drop_table("stories")
