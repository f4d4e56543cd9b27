"""Load log and the store-wide write generation.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "loads",
        sa.Column("load_id", sa.BigInteger, sa.Identity(always=False), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("committed_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("rows_in", sa.BigInteger, nullable=False),
        sa.Column("rows_inserted", sa.BigInteger, nullable=False),
        sa.Column("rows_updated", sa.BigInteger, nullable=False),
        sa.Column("rows_unchanged", sa.BigInteger, nullable=False),
        sa.Column("symbols", sa.Integer, nullable=False),
        sa.Column("features_written", sa.BigInteger, nullable=False),
        sa.Column("checksum", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("load_id", name="loads_pkey"),
    )
    op.create_table(
        "store_state",
        sa.Column("id", sa.SmallInteger, autoincrement=False, nullable=False),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="ck_store_state_single_row"),
        sa.PrimaryKeyConstraint("id", name="store_state_pkey"),
    )
    # Seeded with the creation time in microseconds, not 0: a store_state re-created by
    # downgrade + upgrade must never repeat a generation that a strict-mode cache in another
    # process recorded before the downgrade (it compares generations for equality).
    op.execute(
        "INSERT INTO store_state (id, generation) "
        "VALUES (1, (extract(epoch FROM clock_timestamp()) * 1000000)::int8)"
    )


def downgrade() -> None:
    op.drop_table("store_state")
    op.drop_table("loads")
