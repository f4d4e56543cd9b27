"""Feature views: named, versioned sets of indicators (plus user columns), one wide table each.

A view version's spec is stored in ``feature_views.spec`` (jsonb); its rows live in
``fv_<name>_v<version>(entity_id, ts, <one float8 column per output>)``. Registering the same
spec again is a no-op; a different spec under the same name makes the next version and table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from featurestore.errors import ConfigError, NotFoundError
from featurestore.indicators import IndicatorSpec, parse_indicator
from featurestore.schema import BAR_COLUMNS, VIEW_TABLE_PREFIX, ident, validate_identifier

__all__ = ["FeatureView", "normalize_spec", "list_views", "get_view", "register_view", "drop_view"]

# pg_advisory_xact_lock key serializing registry changes ("fsview" in ASCII)
REGISTRY_LOCK_KEY = 0x66737669657700
RESERVED_COLUMNS = frozenset({"entity_id", "ts", "symbol", *BAR_COLUMNS})


@dataclass(frozen=True)
class FeatureView:
    """One registered version of a view."""

    view_id: int
    name: str
    version: int
    indicators: tuple[IndicatorSpec, ...]
    columns: tuple[str, ...]
    table_name: str
    status: str
    created_at: datetime | None = None

    @property
    def indicator_columns(self) -> tuple[str, ...]:
        """Output columns computed by the indicators, in spec order."""
        return tuple(c for spec in self.indicators for c in spec.outputs)

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """Every feature column of the table: indicator outputs, then user columns."""
        return self.indicator_columns + self.columns

    @property
    def state_len(self) -> int:
        """float64 values of one entity's packed state (all indicators, in spec order)."""
        return sum(spec.state_len for spec in self.indicators)

    def spec_json(self) -> dict[str, Any]:
        return _spec_json(self.indicators, self.columns)

    def describe(self) -> dict[str, Any]:
        """A JSON-able description: name, version, table, status, indicators, columns."""
        return {
            "name": self.name,
            "version": self.version,
            "table": self.table_name,
            "status": self.status,
            "indicators": [str(s) for s in self.indicators],
            "columns": list(self.feature_columns),
            "user_columns": list(self.columns),
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


def _spec_json(indicators: Sequence[IndicatorSpec], columns: Sequence[str]) -> dict[str, Any]:
    return {"indicators": [s.to_dict() for s in indicators], "columns": list(columns)}


def normalize_spec(
    indicators: Iterable[str | IndicatorSpec], columns: Iterable[str] | None = None
) -> tuple[tuple[IndicatorSpec, ...], tuple[str, ...]]:
    """Parse and validate a view's indicators and user columns; drop exact duplicates.

    Raises ConfigError when two indicators produce the same column, a user column clashes with
    an indicator output or a reserved name, or a name is not a safe identifier.
    """
    if isinstance(indicators, (str, IndicatorSpec)):
        indicators = [indicators]
    specs: list[IndicatorSpec] = []
    for item in indicators:
        spec = parse_indicator(item)
        if spec not in specs:
            specs.append(spec)
    cols: list[str] = []
    for c in columns or ():
        validate_identifier(c, what="view column name")
        if c in RESERVED_COLUMNS:
            raise ConfigError(f"view column name {c!r} is reserved (bars and key columns: {sorted(RESERVED_COLUMNS)})")
        if c not in cols:
            cols.append(c)
    if not specs and not cols:
        raise ConfigError("a view needs at least one indicator or user column")
    seen: dict[str, str] = {}
    for spec in specs:
        for out in spec.outputs:
            if out in seen:
                raise ConfigError(f"indicators {seen[out]} and {spec} both produce column {out!r}")
            seen[out] = str(spec)
    for c in cols:
        if c in seen:
            raise ConfigError(f"user column {c!r} clashes with the output of {seen[c]}")
    return tuple(specs), tuple(cols)


def _from_row(row: Sequence[Any]) -> FeatureView:
    view_id, name, version, spec, table_name, status, created_at = row
    if isinstance(spec, str):
        spec = json.loads(spec)
    return FeatureView(
        view_id=view_id,
        name=name,
        version=version,
        indicators=tuple(IndicatorSpec.from_dict(d) for d in spec.get("indicators", [])),
        columns=tuple(spec.get("columns", [])),
        table_name=table_name,
        status=status,
        created_at=created_at,
    )


_SELECT = "SELECT view_id, name, version, spec, table_name, status, created_at FROM feature_views"


def list_views(conn: psycopg.Connection[Any]) -> list[FeatureView]:
    """Every registered view version, by name then version."""
    rows = conn.execute(_SELECT + " ORDER BY name, version").fetchall()
    return [_from_row(r) for r in rows]


def get_view(conn: psycopg.Connection[Any], name: str, version: int | None = None) -> FeatureView:
    """A view by name (newest version unless ``version``); NotFoundError lists what exists."""
    if version is None:
        row = conn.execute(_SELECT + " WHERE name = %s ORDER BY version DESC LIMIT 1", (name,)).fetchone()
    else:
        row = conn.execute(_SELECT + " WHERE name = %s AND version = %s", (name, version)).fetchone()
    if row is None:
        existing = sorted({f"{v.name} v{v.version}" for v in list_views(conn)})
        what = f"view {name!r}" + (f" version {version}" if version is not None else "")
        raise NotFoundError(f"no {what}; registered views: {', '.join(existing) or 'none'}")
    return _from_row(row)


def register_view(
    conn: psycopg.Connection[Any],
    name: str,
    indicators: Sequence[IndicatorSpec],
    columns: Sequence[str],
) -> tuple[FeatureView, bool]:
    """Register (name, spec) inside the caller's transaction; return (view, created).

    The same spec as the newest version returns that version unchanged; a different one creates
    the next version and its empty table.
    """
    validate_identifier(name, what="view name")
    spec = _spec_json(indicators, columns)
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (REGISTRY_LOCK_KEY,))
    row = conn.execute(
        _SELECT + " WHERE name = %s ORDER BY version DESC LIMIT 1", (name,)
    ).fetchone()
    if row is not None:
        newest = _from_row(row)
        if newest.spec_json() == spec:
            return newest, False
        version = newest.version + 1
    else:
        version = 1
    table = f"{VIEW_TABLE_PREFIX}{name}_v{version}"
    feature_cols = [c for s in indicators for c in s.outputs] + list(columns)
    col_defs = sql.SQL(", ").join(
        [sql.SQL("entity_id int4 NOT NULL"), sql.SQL("ts timestamptz NOT NULL")]
        + [sql.SQL("{} float8").format(ident(c)) for c in feature_cols]
        + [sql.SQL("PRIMARY KEY (entity_id, ts)")]
    )
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(ident(table), col_defs))
    row = conn.execute(
        "INSERT INTO feature_views (name, version, spec, table_name) VALUES (%s, %s, %s, %s) "
        "RETURNING view_id, name, version, spec, table_name, status, created_at",
        (name, version, psycopg.types.json.Jsonb(spec), table),
    ).fetchone()
    assert row is not None
    return _from_row(row), True


def drop_view(conn: psycopg.Connection[Any], name: str, version: int | None = None) -> list[int]:
    """Drop one version (or every version) of a view, its table and its state; return versions dropped."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (REGISTRY_LOCK_KEY,))
    if version is None:
        rows = conn.execute(_SELECT + " WHERE name = %s ORDER BY version", (name,)).fetchall()
    else:
        rows = conn.execute(_SELECT + " WHERE name = %s AND version = %s", (name, version)).fetchall()
    if not rows:
        get_view(conn, name, version)  # raises NotFoundError with the list of views
    dropped = []
    for r in rows:
        view = _from_row(r)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident(view.table_name)))
        conn.execute("DELETE FROM indicator_state WHERE view_id = %s", (view.view_id,))
        conn.execute("DELETE FROM feature_views WHERE view_id = %s", (view.view_id,))
        dropped.append(view.version)
    return dropped
