"""Feature-view registry and the indicator state that makes appends incremental.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import BYTEA, JSONB

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "feature_views",
        sa.Column("view_id", sa.Integer, sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("spec", JSONB, nullable=False),
        sa.Column("table_name", sa.Text, nullable=False),
        sa.Column("status", sa.Text, server_default=sa.text("'backfilling'"), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("view_id", name="feature_views_pkey"),
        sa.UniqueConstraint("name", "version", name="feature_views_name_version_key"),
        sa.UniqueConstraint("table_name", name="feature_views_table_name_key"),
    )
    op.create_table(
        "indicator_state",
        sa.Column("view_id", sa.Integer, nullable=False),
        sa.Column("entity_id", sa.Integer, nullable=False),
        sa.Column("last_ts", TS, nullable=False),
        sa.Column("n_bars", sa.BigInteger, nullable=False),
        sa.Column("state", BYTEA, nullable=False),
        sa.PrimaryKeyConstraint("view_id", "entity_id", name="indicator_state_pkey"),
    )


def downgrade() -> None:
    # Feature-view tables belong to the registry rows dropped here: drop them first.
    bind = op.get_bind()
    names = bind.execute(sa.text("SELECT table_name FROM feature_views")).scalars().all()
    for name in names:
        op.drop_table(name)
    op.drop_table("indicator_state")
    op.drop_table("feature_views")
