"""Entity keys: one row per entity in a table laid out like the per-symbol tables.

``entity_keys`` holds every ``entities.entity_id``. On one PostgreSQL it is only kept up to
date; on a distributed store (``featurestore distribute``) it is distributed by ``entity_id`` and
colocated with ``bars``, so statements over many entities start from it instead of from
``unnest(...)``: Citus pushes a LATERAL probe down to the workers only when the relation it
correlates with is itself distributed on the same column (``featurestore.placement``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "entity_keys",
        sa.Column("entity_id", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("entity_id", name="entity_keys_pkey"),
    )
    op.execute("INSERT INTO entity_keys (entity_id) SELECT entity_id FROM entities")


def downgrade() -> None:
    op.drop_table("entity_keys")
