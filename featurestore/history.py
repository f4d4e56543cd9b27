"""[store] Knowledge-time maintenance: every version of one bar, and bounding the history's size.

Versions of a row live in two places (migration 0004): the current version in ``bars`` / the
view table, tagged with the load that wrote it, and superseded versions in ``bars_history`` /
``<view table>_h``, tagged with the load that wrote them and the load that replaced them. A
version is known from its load's stamp (``loads.committed_at``) until its successor's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import psycopg
from psycopg import sql

from featurestore import placement, segments
from featurestore.errors import ConfigError, NotFoundError
from featurestore.read.segmented import shadow_pg
from featurestore.schema import BAR_COLUMNS, ident

if TYPE_CHECKING:
    from featurestore.views import FeatureView

__all__ = ["BarHistory", "CompactResult", "bar_history", "compact_history", "VERSION_COLUMNS"]

#: The columns describing each version, before its values.
VERSION_COLUMNS = ("known_from", "known_until", "load_id", "source", "superseded_by")


@dataclass(frozen=True)
class BarHistory:
    """Every stored version of one bar and of its feature rows, oldest first.

    ``bars`` and each frame of ``features`` (keyed ``"<view> v<version>"``) have one row per
    version: ``known_from`` (when the load that wrote it committed), ``known_until`` (when it
    was superseded; NaT for the current version), ``load_id`` and ``source`` of that load,
    ``superseded_by`` (the replacing load, or -1), then the values. ``history_since`` is where
    the retained history starts: versions superseded before it were dropped by
    ``compact_history``.
    """

    symbol: str
    ts: pd.Timestamp
    history_since: pd.Timestamp
    bars: pd.DataFrame
    features: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass(frozen=True)
class CompactResult:
    """What ``compact_history`` dropped: superseded versions per table, and the new horizon."""

    history_since: dt.datetime
    rows_dropped: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows_dropped.values())


def _versions_sql(table: str, history: str, columns: tuple[str, ...]) -> sql.Composed:
    cols = sql.SQL("").join(sql.SQL(", v.{}").format(ident(c)) for c in columns)
    inner = sql.SQL(", ").join(ident(c) for c in columns)
    return sql.SQL(
        "SELECT l.committed_at, s.committed_at, v.load_id, l.source, v.superseded_by{cols} FROM ("
        "SELECT load_id, superseded_by, {inner} FROM {h} WHERE entity_id = %(e)s AND ts = %(ts)s "
        "UNION ALL SELECT load_id, NULL, {inner} FROM {t} WHERE entity_id = %(e)s AND ts = %(ts)s) v "
        "LEFT JOIN loads l ON l.load_id = v.load_id LEFT JOIN loads s ON s.load_id = v.superseded_by "
        "ORDER BY l.committed_at, s.committed_at NULLS LAST"
    ).format(cols=cols, inner=inner, h=ident(history), t=ident(table))


def _frame(rows: list[tuple[Any, ...]], columns: tuple[str, ...], dtype: str = "float64") -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=[*VERSION_COLUMNS, *columns])
    for c in ("known_from", "known_until"):
        df[c] = pd.to_datetime(df[c], utc=True).astype("datetime64[us, UTC]")
    df["superseded_by"] = df["superseded_by"].fillna(-1).astype("int64")
    df["load_id"] = df["load_id"].astype("int64")
    for c in columns:
        df[c] = df[c].astype(dtype)
    return df


def bar_history(conn: psycopg.Connection[Any], symbol: str, ts: dt.datetime, views: list[FeatureView]) -> BarHistory:
    """Every version of ``symbol``'s bar at ``ts`` and of its rows in ``views`` (one snapshot)."""
    row = conn.execute("SELECT entity_id FROM entities WHERE symbol = %s", (symbol,)).fetchone()
    if row is None:
        raise NotFoundError(f"no symbol {symbol!r} in this store")
    params = {"e": row[0], "ts": ts}
    since = conn.execute("SELECT history_since FROM store_state WHERE id = 1").fetchone()[0]  # type: ignore[index]
    # a current version held in history segments: the key's row, as a row, for these queries
    layouts = [segments.bars_layout()] + [
        segments.view_layout(v.table_name, v.feature_columns, float32=v.dtype == "float32") for v in views
    ]
    shadow_pg(conn, layouts, [row[0]], ts, ts, distributed=placement.distributed(conn))
    bars = _frame(
        conn.execute(_versions_sql("bars", "bars_history", BAR_COLUMNS), params, prepare=False).fetchall(), BAR_COLUMNS
    )
    features: dict[str, pd.DataFrame] = {}
    for v in views:
        cols = v.feature_columns
        rows = conn.execute(_versions_sql(v.table_name, v.history_table, cols), params, prepare=False).fetchall()
        features[f"{v.name} v{v.version}"] = _frame(rows, cols, v.dtype)
    return BarHistory(symbol, pd.Timestamp(ts), pd.Timestamp(since), bars, features)


def compact_history(conn: psycopg.Connection[Any], before: dt.datetime, views: list[FeatureView]) -> CompactResult:
    """Drop versions superseded at or before ``before`` and move the horizon there, in the
    caller's transaction.

    Such versions are visible only to knowledge times before ``before``, which then raise
    HistoryError instead (``fs_knowledge``): never a wrong answer. The store_state row lock
    serializes this with loads (their stamps are taken under it).
    """
    now = conn.execute(
        "SELECT clock_timestamp() FROM store_state WHERE id = 1 FOR UPDATE"
    ).fetchone()[0]  # type: ignore[index]
    if before > now:
        raise ConfigError(f"before={before.isoformat()} is in the future; history can only be cut in the past")
    dropped: dict[str, int] = {}
    tables = [("bars_history", "bars")] + [(v.history_table, f"{v.name} v{v.version}") for v in views]
    for table, label in tables:
        cur = conn.execute(
            sql.SQL(
                "DELETE FROM {} h USING loads s WHERE s.load_id = h.superseded_by AND s.committed_at <= %s"
            ).format(ident(table)),
            (before,),
        )
        dropped[label] = max(cur.rowcount, 0)
    row = conn.execute(
        "UPDATE store_state SET history_since = greatest(history_since, %s) WHERE id = 1 RETURNING history_since",
        (before,),
    ).fetchone()
    return CompactResult(row[0], dropped)  # type: ignore[index]
