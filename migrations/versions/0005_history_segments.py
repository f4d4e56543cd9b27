"""History segments: old rows of bars and of every view table as per-entity column blocks.

- ``bars_segments``: up to 10,000 consecutive bars of one entity per row: ``ts_first``,
  ``ts_last``, ``n``, and one ``bytea`` per column (``ts`` as int8 µs, ``load_id`` as int4, the
  OHLCV values as float8, each in PostgreSQL's binary send format), stored ``EXTERNAL``.
- ``<view table>_s`` for every existing view (views created later get theirs with the view):
  the same for feature columns, plus ``nulls`` (one byte per row per column, NULL when none).

Nothing moves at the upgrade: ``FeatureStore.compress_history`` moves rows. The downgrade moves
every segment back into rows first (``featurestore.segments.expand``), then drops the tables.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from psycopg import sql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _conn():  # type: ignore[no-untyped-def]
    return op.get_bind().connection.driver_connection


def _layouts() -> list:  # type: ignore[type-arg]
    from featurestore import segments

    return segments.store_layouts(_conn())


def upgrade() -> None:
    from featurestore import segments

    for layout in _layouts():
        segments.create_segment_table(_conn(), layout)


def downgrade() -> None:
    from featurestore import segments

    layouts = _layouts()
    conn = _conn()
    for layout in layouts:
        exists = op.get_bind().execute(sa.text("SELECT to_regclass(:t) IS NOT NULL"), {"t": layout.segments}).scalar()
        if exists:
            segments.expand_all(conn, layout)
            op.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(layout.segments)).as_string(conn))
