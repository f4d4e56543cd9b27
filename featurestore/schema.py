"""The fixed tables, as SQLAlchemy Core metadata, and identifier validation.

Alembic owns these tables (``migrations/``); this module is what the migrations must equal
(``tests/test_migrations.py`` checks that they do). Feature-view tables (``fv_<name>_v<n>``) are
created at run time by the view registry and are invisible to Alembic's autogenerate.

Every hot table leads with ``entity_id`` (a compact int4 for a symbol): the primary keys serve
the reads, and the schema could be distributed by entity (Citus) without changing a query.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.dialects.postgresql import BYTEA, JSONB

from featurestore.errors import ConfigError

__all__ = [
    "metadata",
    "entities",
    "entity_keys",
    "bars",
    "bars_history",
    "bars_segments",
    "feature_views",
    "indicator_state",
    "indicator_checkpoints",
    "loads",
    "store_state",
    "BAR_COLUMNS",
    "VIEW_TABLE_PREFIX",
    "validate_identifier",
    "ident",
    "is_view_table",
]

BAR_COLUMNS = ("open", "high", "low", "close", "volume")
VIEW_TABLE_PREFIX = "fv_"

metadata = sa.MetaData(
    naming_convention={
        "pk": "%(table_name)s_pkey",
        "uq": "%(table_name)s_%(column_0_name)s_key",
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

TS = sa.DateTime(timezone=True)

entities = sa.Table(
    "entities",
    metadata,
    sa.Column("entity_id", sa.Integer, sa.Identity(always=False), primary_key=True),
    sa.Column("symbol", sa.Text, nullable=False, unique=True),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    # bumped by every committed write that touches this entity: fine-grained cache invalidation
    sa.Column("generation", sa.BigInteger, nullable=False, server_default=sa.text("0")),
)

# Every entity_id of entities, in a table laid out like the per-symbol ones: on a distributed
# store (featurestore.placement) it is distributed and colocated with bars, and statements over
# many entities start from it (Citus pushes LATERAL probes down only from a distributed relation).
entity_keys = sa.Table(
    "entity_keys",
    metadata,
    sa.Column("entity_id", sa.Integer, primary_key=True, autoincrement=False),
)

# No foreign key to entities: a per-row FK check slows COPY, and the write path creates the
# entity in the same transaction as its bars. ``load_id`` names the load that wrote the row's
# current version (knowledge time); placed after the int4 ``entity_id`` it fills the alignment
# padding before ``ts``, so it costs no storage.
bars = sa.Table(
    "bars",
    metadata,
    sa.Column("entity_id", sa.Integer, primary_key=True),
    sa.Column("load_id", sa.Integer, nullable=False),
    sa.Column("ts", TS, primary_key=True),
    *(sa.Column(name, sa.Float(53), nullable=False) for name in BAR_COLUMNS),
)

# Superseded bar versions: written by ``load_id``, replaced by ``superseded_by`` (a correction).
# Only corrections write here; appends never do.
bars_history = sa.Table(
    "bars_history",
    metadata,
    sa.Column("entity_id", sa.Integer, primary_key=True),
    sa.Column("load_id", sa.Integer, nullable=False),
    sa.Column("ts", TS, primary_key=True),
    sa.Column("superseded_by", sa.Integer, primary_key=True),
    *(sa.Column(name, sa.Float(53), nullable=False) for name in BAR_COLUMNS),
)

# History segments (featurestore.segments): up to 10,000 consecutive bars of one entity per row,
# each column's values back to back in PostgreSQL's binary send format (stored EXTERNAL: out of
# line, not compressed). Per entity, every bar in bars is newer than every bar in segments.
bars_segments = sa.Table(
    "bars_segments",
    metadata,
    sa.Column("entity_id", sa.Integer, primary_key=True),
    sa.Column("ts_first", TS, primary_key=True),
    sa.Column("ts_last", TS, nullable=False),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("ts", BYTEA, nullable=False),
    sa.Column("load_id", BYTEA, nullable=False),
    *(sa.Column(name, BYTEA, nullable=False) for name in BAR_COLUMNS),
    sa.Column("nulls", BYTEA, nullable=True),
)

feature_views = sa.Table(
    "feature_views",
    metadata,
    sa.Column("view_id", sa.Integer, sa.Identity(always=False), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("spec", JSONB, nullable=False),
    sa.Column("table_name", sa.Text, nullable=False, unique=True),
    # 'backfilling' until every entity's features are written, then 'ready'
    sa.Column("status", sa.Text, nullable=False, server_default=sa.text("'backfilling'")),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    # when the version became 'ready' (readable): its features are known from then on
    sa.Column("ready_at", TS, nullable=True),
    sa.UniqueConstraint("name", "version", name="feature_views_name_version_key"),
)

indicator_state = sa.Table(
    "indicator_state",
    metadata,
    sa.Column("view_id", sa.Integer, primary_key=True),
    sa.Column("entity_id", sa.Integer, primary_key=True),
    sa.Column("last_ts", TS, nullable=False),
    sa.Column("n_bars", sa.BigInteger, nullable=False),
    sa.Column("state", BYTEA, nullable=False),
)

# The state after every CHECKPOINT_BARS-th bar of an entity (write/features.py): a correction
# recomputes from the nearest checkpoint before it instead of from the first bar.
indicator_checkpoints = sa.Table(
    "indicator_checkpoints",
    metadata,
    sa.Column("view_id", sa.Integer, primary_key=True),
    sa.Column("entity_id", sa.Integer, primary_key=True),
    sa.Column("ts", TS, primary_key=True),
    sa.Column("n_bars", sa.BigInteger, nullable=False),
    sa.Column("state", BYTEA, nullable=False),
)

loads = sa.Table(
    "loads",
    metadata,
    sa.Column("load_id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("committed_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("rows_in", sa.BigInteger, nullable=False),
    sa.Column("rows_inserted", sa.BigInteger, nullable=False),
    sa.Column("rows_updated", sa.BigInteger, nullable=False),
    sa.Column("rows_unchanged", sa.BigInteger, nullable=False),
    sa.Column("symbols", sa.Integer, nullable=False),
    sa.Column("features_written", sa.BigInteger, nullable=False),
    sa.Column("checksum", sa.Text, nullable=True),
    sa.Index("ix_loads_committed_at", "committed_at"),
)

# One row: the store-wide write generation, bumped at the end of every committed write. A
# one-row table (not a sequence) because sequences are not transactional: a reader must never
# see a generation whose write it cannot see yet.
store_state = sa.Table(
    "store_state",
    metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("generation", sa.BigInteger, nullable=False),
    # the oldest knowledge time the store answers for (creation, upgrade, or compact_history)
    sa.Column("history_since", TS, nullable=False, server_default=sa.func.now()),
    # the stamp of the newest committed change; stamps are taken under this row's lock, so
    # they follow commit order (a load's rows are known from its stamp on)
    sa.Column("known_at", TS, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("id = 1", name="single_row"),
)

_IDENT = re.compile(r"[a-z][a-z0-9_]{0,47}")


def validate_identifier(name: str, *, what: str = "name") -> str:
    """Return ``name`` if it is a safe lower-case identifier, else raise ConfigError.

    The pattern (``[a-z][a-z0-9_]{0,47}``) leaves room for the ``fv_`` prefix and ``_v<n>``
    suffix inside PostgreSQL's 63-byte identifier limit. It is checked before any quoting.
    """
    if not isinstance(name, str) or not _IDENT.fullmatch(name):
        shown = repr(name)[:80]
        raise ConfigError(
            f"invalid {what} {shown}: use 1-48 characters, lower-case letters, digits and '_', "
            "starting with a letter"
        )
    return name


def ident(name: str) -> sql.Identifier:
    """A quoted SQL identifier for a validated name (the only way identifiers enter SQL)."""
    return sql.Identifier(name)


def is_view_table(name: str) -> bool:
    """True for run-time feature-view tables, which Alembic must ignore."""
    return name.startswith(VIEW_TABLE_PREFIX)
