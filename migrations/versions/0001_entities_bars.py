"""Entities and bars: symbols mapped to int ids, OHLCV keyed by (entity_id, ts).

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "entities",
        sa.Column("entity_id", sa.Integer, sa.Identity(always=False), nullable=False),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("generation", sa.BigInteger, server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("entity_id", name="entities_pkey"),
        sa.UniqueConstraint("symbol", name="entities_symbol_key"),
    )
    op.create_table(
        "bars",
        sa.Column("entity_id", sa.Integer, nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("open", sa.Float(53), nullable=False),
        sa.Column("high", sa.Float(53), nullable=False),
        sa.Column("low", sa.Float(53), nullable=False),
        sa.Column("close", sa.Float(53), nullable=False),
        sa.Column("volume", sa.Float(53), nullable=False),
        sa.PrimaryKeyConstraint("entity_id", "ts", name="bars_pkey"),
    )


def downgrade() -> None:
    op.drop_table("bars")
    op.drop_table("entities")
