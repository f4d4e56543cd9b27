"""Knowledge time: every bar and feature row names the load that wrote it; superseded versions
move to history tables; loads are stamped when they commit.

- ``bars`` and every view table are rebuilt with ``load_id int4`` after ``entity_id`` (it fills
  the alignment padding before ``ts``, so rows keep their size). Rows present at the upgrade get
  load 0, the "history starts here" load, stamped with the upgrade time.
- ``bars_history`` and one ``<view table>_h`` per view hold superseded versions, with the load
  that wrote each (``load_id``) and the load that replaced it (``superseded_by``).
- ``store_state.history_since``: the oldest knowledge time the store can answer for;
  ``store_state.known_at``: the stamp of the newest committed change (taken under the store's
  write lock, so stamps follow commit order).
- ``feature_views.ready_at``: when a version became readable (its knowledge starts there).
- ``indicator_checkpoints``: an entity's indicator state after every 256th bar, so a correction
  recomputes features from the nearest checkpoint before it instead of from the first bar.
- ``fs_knowledge(t)``: (newest load id known at ``t``, older ids not yet known at ``t``), or
  SQLSTATE FSH01 when ``t`` is before ``history_since``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from psycopg import sql
from sqlalchemy.dialects.postgresql import BYTEA

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
OHLCV = ("open", "high", "low", "close", "volume")

FS_KNOWLEDGE = """
CREATE FUNCTION fs_knowledge(t timestamptz, OUT kmax int4, OUT holes int4[])
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    horizon timestamptz;
BEGIN
    SELECT history_since INTO horizon FROM store_state WHERE id = 1;
    IF t IS NULL OR t < horizon THEN
        RAISE EXCEPTION 'as_known_at % is before the history this store keeps (it starts at %)', t, horizon
            USING ERRCODE = 'FSH01',
                  HINT = 'history starts when the store was created or upgraded, or where compact_history() cut it';
    END IF;
    SELECT coalesce(max(load_id), 0)::int4 INTO kmax FROM loads WHERE committed_at <= t;
    SELECT coalesce(array_agg(load_id::int4), '{}') INTO holes FROM loads
        WHERE committed_at > t AND load_id <= kmax;
END
$fn$
"""


def _execute(template: str, **parts: sql.Composable) -> None:
    """Run ``template`` with identifiers composed by psycopg (never by string formatting)."""
    conn = op.get_bind().connection.driver_connection
    op.execute(sql.SQL(template).format(**parts).as_string(conn))  # type: ignore[arg-type]


def _columns(names: list[str], not_null: bool) -> sql.Composable:
    one = sql.SQL(", {} float8 NOT NULL") if not_null else sql.SQL(", {} float8")
    return sql.SQL("").join(one.format(sql.Identifier(c)) for c in names)


def _view_tables() -> list[str]:
    bind = op.get_bind()
    return list(bind.execute(sa.text("SELECT table_name FROM feature_views ORDER BY view_id")).scalars())


def _feature_columns(table: str) -> list[str]:
    bind = op.get_bind()
    return list(
        bind.execute(
            sa.text(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = :t AND column_name NOT IN ('entity_id', 'load_id', 'ts') ORDER BY ordinal_position"
            ),
            {"t": table},
        ).scalars()
    )


def _rebuild(table: str, columns: list[str], *, with_load: bool) -> None:
    """Re-create ``table`` with (or without) ``load_id`` after ``entity_id``, keeping its rows."""
    old = table + "_old"
    q, qo = sql.Identifier(table), sql.Identifier(old)
    _execute("ALTER TABLE {q} RENAME TO {qo}", q=q, qo=qo)
    # the new table takes the key's name; the old one is dropped below (Citus renames no
    # constraint of a distributed table, but drops one)
    _execute("ALTER TABLE {qo} DROP CONSTRAINT {pk}", qo=qo, pk=sql.Identifier(table + "_pkey"))
    load = sql.SQL("load_id int4 NOT NULL, " if with_load else "")
    _execute(
        "CREATE TABLE {q} (entity_id int4 NOT NULL, {load}ts timestamptz NOT NULL{cols}, "
        "CONSTRAINT {pk} PRIMARY KEY (entity_id, ts))",
        q=q, load=load, cols=_columns(columns, table == "bars"),
        pk=sql.Identifier(table + "_pkey"),
    )
    names = sql.SQL("").join(sql.SQL(", {}").format(sql.Identifier(c)) for c in columns)
    _execute(
        "INSERT INTO {q} (entity_id, {lc}ts{names}) SELECT entity_id, {lv}ts{names} FROM {qo} ORDER BY entity_id, ts",
        q=q, qo=qo, names=names,
        lc=sql.SQL("load_id, " if with_load else ""), lv=sql.SQL("0, " if with_load else ""),
    )
    _execute("DROP TABLE {qo}", qo=qo)


def _history_table(table: str, columns: list[str]) -> None:
    _execute(
        "CREATE TABLE {h} (entity_id int4 NOT NULL, load_id int4 NOT NULL, ts timestamptz NOT NULL, "
        "superseded_by int4 NOT NULL{cols}, CONSTRAINT {pk} PRIMARY KEY (entity_id, ts, superseded_by))",
        h=sql.Identifier(table + "_h"), cols=_columns(columns, False), pk=sql.Identifier(table + "_h_pkey"),
    )


def upgrade() -> None:
    version = int(op.get_bind().execute(sa.text("SHOW server_version_num")).scalar_one())
    if version < 180000:  # corrections move superseded rows with RETURNING old (PostgreSQL 18)
        raise RuntimeError(
            "featurestore needs PostgreSQL 18 or newer (knowledge time moves superseded rows with "
            "RETURNING old, new in 18); this server's server_version_num is " + str(version)
        )
    op.add_column("store_state", sa.Column("history_since", TS, server_default=sa.func.now(), nullable=False))
    op.add_column("store_state", sa.Column("known_at", TS, server_default=sa.func.now(), nullable=False))
    op.add_column("feature_views", sa.Column("ready_at", TS, nullable=True))
    op.execute("UPDATE feature_views SET ready_at = now() WHERE status = 'ready'")
    # load 0: everything stored before the upgrade, known from the start of the history
    op.execute(
        "INSERT INTO loads (load_id, source, started_at, committed_at, rows_in, rows_inserted, rows_updated, "
        "rows_unchanged, symbols, features_written) VALUES (0, 'history starts', now(), now(), 0, 0, 0, 0, 0, 0)"
    )
    op.create_index("ix_loads_committed_at", "loads", ["committed_at"])
    _rebuild("bars", list(OHLCV), with_load=True)
    op.create_table(
        "bars_history",
        sa.Column("entity_id", sa.Integer, nullable=False),
        sa.Column("load_id", sa.Integer, nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("superseded_by", sa.Integer, nullable=False),
        *(sa.Column(c, sa.Float(53), nullable=False) for c in OHLCV),
        sa.PrimaryKeyConstraint("entity_id", "ts", "superseded_by", name="bars_history_pkey"),
    )
    for table in _view_tables():
        columns = _feature_columns(table)
        _rebuild(table, columns, with_load=True)
        _history_table(table, columns)
    op.create_table(
        "indicator_checkpoints",
        sa.Column("view_id", sa.Integer, nullable=False),
        sa.Column("entity_id", sa.Integer, nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("n_bars", sa.BigInteger, nullable=False),
        sa.Column("state", BYTEA, nullable=False),
        sa.PrimaryKeyConstraint("view_id", "entity_id", "ts", name="indicator_checkpoints_pkey"),
    )
    op.execute(FS_KNOWLEDGE)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS fs_knowledge(timestamptz)")
    op.drop_table("indicator_checkpoints")
    for table in _view_tables():
        _execute("DROP TABLE IF EXISTS {h}", h=sql.Identifier(table + "_h"))
        _rebuild(table, _feature_columns(table), with_load=False)
    op.drop_table("bars_history")
    _rebuild("bars", list(OHLCV), with_load=False)
    op.drop_index("ix_loads_committed_at", table_name="loads")
    op.execute("DELETE FROM loads WHERE load_id = 0")
    op.drop_column("feature_views", "ready_at")
    op.drop_column("store_state", "known_at")
    op.drop_column("store_state", "history_since")
