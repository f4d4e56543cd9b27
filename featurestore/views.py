"""Feature views: named, versioned sets of indicators (plus user columns), one wide table each.

A view version's spec is stored in ``feature_views.spec`` (jsonb); its rows live in
``fv_<name>_v<version>(entity_id, ts, <one float8 column per output>)``. Registering the same
spec again is a no-op; a different spec under the same name makes the next version and table.
A view created with ``dtype="float32"`` stores its feature columns as ``real`` (float4) instead:
the spec holds ``"dtype": "float32"`` (float64 specs carry no dtype, so older specs are unchanged).

A user-defined indicator (``featurestore.indicators.register``) is stored with its code hash,
so changed code under the same name is a different spec (a new version, never a mix of old and
new values). A version whose user kernel is not registered in this process, or is registered
with other code, still lists, describes and drops, but computing (ingest, backfill) or reading
it raises ``UserKernelError`` naming the kernel (``FeatureView.problem``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from featurestore import placement, segments
from featurestore.errors import ConfigError, IndicatorError, NotFoundError
from featurestore.indicators import IndicatorSpec, UserKernelError, parse_indicator
from featurestore.schema import BAR_COLUMNS, VIEW_TABLE_PREFIX, ident, validate_identifier

__all__ = [
    "FeatureView",
    "normalize_spec",
    "list_views",
    "get_view",
    "read_view",
    "resume_hint",
    "register_view",
    "drop_view",
    "DTYPES",
    "view_dtype",
]

# pg_advisory_xact_lock key serializing registry changes ("fsview" in ASCII)
REGISTRY_LOCK_KEY = 0x66737669657700
RESERVED_COLUMNS = frozenset({"entity_id", "ts", "symbol", *BAR_COLUMNS})
READY = "ready"  # feature_views.status once the backfill is complete ('backfilling' before)
# a view's feature-column dtype -> its PostgreSQL column type (and binary COPY type)
DTYPES: dict[str, str] = {"float64": "float8", "float32": "float4"}


@dataclass(frozen=True)
class FeatureView:
    """One registered version of a view."""

    view_id: int
    name: str
    version: int
    specs: tuple[IndicatorSpec, ...]
    columns: tuple[str, ...]
    table_name: str
    status: str
    created_at: datetime | None = None
    # when the version became ready: its features are known (``as_known_at``) from then on
    ready_at: datetime | None = None
    # backfill progress, filled in for a version that is not ready (None when ready)
    entities_backfilled: int | None = None
    entities_total: int | None = None
    # the spec as stored (jsonb), and why this process cannot compute or read the version:
    # a user kernel it needs is not registered, or is registered with other code
    stored: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    problem: str = ""
    # availability lag: a row at bar time ts counts as known (as_known_at) only from ts + this
    available_after: timedelta = timedelta(0)
    # feature columns' dtype: "float64" (float8 columns) or "float32" (real columns)
    dtype: str = "float64"

    @property
    def sql_type(self) -> str:
        """The PostgreSQL type of the feature columns: ``float8`` or ``float4`` (``real``)."""
        return DTYPES[self.dtype]

    @property
    def float32_columns(self) -> frozenset[str]:
        """Feature columns that reads return as float32 (all of them for a float32 view)."""
        return frozenset(self.feature_columns) if self.dtype == "float32" else frozenset()

    @property
    def indicators(self) -> tuple[IndicatorSpec, ...]:
        """The indicators, in spec order; UserKernelError if a user kernel they need is not
        registered here with the code that computed this version (see ``problem``)."""
        if self.problem:
            raise UserKernelError(self.problem)
        return self.specs

    @property
    def history_table(self) -> str:
        """The table of superseded feature rows (``<table>_h``): written only by recomputes."""
        return self.table_name + "_h"

    @property
    def ready(self) -> bool:
        """True once every entity is backfilled: only ready versions serve reads."""
        return self.status == READY

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
        """The spec in its stored form (re-normalized when every kind is available here)."""
        if self.problem and self.stored is not None:
            return self.stored
        return _spec_json(self.indicators, self.columns, self.available_after, self.dtype)

    def indicator_names(self) -> list[str]:
        """Spec strings of the indicators (also for a version with a ``problem``)."""
        if not self.problem:
            return [str(s) for s in self.specs]
        return [_stored_name(d) for d in (self.stored or {}).get("indicators", [])]

    def progress_text(self) -> str:
        """``"3/10 entities backfilled"`` (or ``"ready"``)."""
        if self.ready:
            return "ready"
        if self.entities_backfilled is None or self.entities_total is None:
            return self.status
        return f"{self.status}, {self.entities_backfilled}/{self.entities_total} entities backfilled"

    def describe(self) -> dict[str, Any]:
        """A JSON-able description: name, version, table, status (and backfill progress), indicators, columns."""
        return {
            "name": self.name,
            "version": self.version,
            "table": self.table_name,
            "status": self.status,
            "ready": self.ready,
            "entities_backfilled": self.entities_backfilled,
            "entities_total": self.entities_total,
            "indicators": self.indicator_names(),
            "columns": list(self.columns if self.problem else self.feature_columns),
            "user_columns": list(self.columns),
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "ready_at": self.ready_at.isoformat() if self.ready_at else None,
            "available_after": str(self.available_after),
            "dtype": self.dtype,
            **({"problem": self.problem} if self.problem else {}),
        }


def _stored_name(d: Any) -> str:
    """A readable name for a stored indicator dict whose kind is not available here."""
    if not isinstance(d, dict):
        return repr(d)
    try:
        return str(IndicatorSpec.from_dict(d))
    except IndicatorError:
        params = d.get("params") or {}
        vals = "_".join(str(v) for v in params.values()) if isinstance(params, dict) else ""
        return "_".join(x for x in (str(d.get("kind")), vals) if x)


def _spec_json(
    indicators: Sequence[IndicatorSpec],
    columns: Sequence[str],
    available_after: timedelta = timedelta(0),
    dtype: str = "float64",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"indicators": [s.to_dict() for s in indicators], "columns": list(columns)}
    if available_after:  # only when set: specs written before it existed stay equal
        spec["available_after_us"] = available_after // timedelta(microseconds=1)
    if dtype != "float64":  # likewise: float64 specs are stored as before
        spec["dtype"] = dtype
    return spec


def view_dtype(value: Any) -> str:
    """``create_view(dtype=...)`` -> ``"float64"`` or ``"float32"`` (None: float64); ConfigError otherwise."""
    if value is None:
        return "float64"
    if isinstance(value, str) and value in DTYPES:
        return value
    raise ConfigError(f"dtype={value!r} is not supported; use one of {sorted(DTYPES)} (default 'float64')")


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


def availability_lag(value: Any) -> timedelta:
    """``create_view(available_after=...)`` -> a non-negative timedelta (None: zero)."""
    if value is None:
        return timedelta(0)
    import pandas as pd

    try:
        lag = pd.Timedelta(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"available_after={value!r} is not a duration (e.g. '15min', timedelta(hours=1)): {exc}") from None
    if pd.isna(lag) or lag < pd.Timedelta(0):
        raise ConfigError(f"available_after={value!r} must be a duration >= 0")
    return timedelta(microseconds=int(lag // pd.Timedelta(microseconds=1)))


def _from_row(row: Sequence[Any]) -> FeatureView:
    view_id, name, version, spec, table_name, status, created_at, ready_at = row
    if isinstance(spec, str):
        spec = json.loads(spec)
    specs: tuple[IndicatorSpec, ...] = ()
    problem = ""
    dtype = spec.get("dtype", "float64")
    try:
        specs = tuple(IndicatorSpec.from_dict(d) for d in spec.get("indicators", []))
    except UserKernelError as exc:
        # Listing, describing and dropping still work; computing or reading it raises this.
        problem = (
            f"view {name!r} v{version}: {exc}; register the code that computed this version, or drop the "
            f"version (store.drop_view({name!r}, {version})) and create the view again"
        )
    if dtype not in DTYPES and not problem:  # written by a newer library: do not guess its columns
        problem = f"view {name!r} v{version}: its spec has dtype {dtype!r}, which this version does not know"
    return FeatureView(
        view_id=view_id,
        name=name,
        version=version,
        specs=specs,
        columns=tuple(spec.get("columns", [])),
        available_after=timedelta(microseconds=int(spec.get("available_after_us", 0))),
        dtype=dtype if dtype in DTYPES else "float64",
        table_name=table_name,
        status=status,
        created_at=created_at,
        ready_at=ready_at,
        stored=spec,
        problem=problem,
    )


_SELECT = "SELECT view_id, name, version, spec, table_name, status, created_at, ready_at FROM feature_views"
# Backfill progress of views (an array of view ids): entities with state for each view, and
# entities with bars (what a complete backfill covers). Runs only for views that are not ready.
_PROGRESS_STATE_SQL = "SELECT view_id, count(*) FROM indicator_state WHERE view_id = ANY(%s::int4[]) GROUP BY view_id"
_PROGRESS_TOTAL_SQL = (
    "SELECT count(*) FROM entity_keys k WHERE EXISTS (SELECT 1 FROM bars b WHERE b.entity_id = k.entity_id) "
    "OR EXISTS (SELECT 1 FROM bars_segments g WHERE g.entity_id = k.entity_id)"
)


def _with_progress(conn: psycopg.Connection[Any], views: list[FeatureView]) -> list[FeatureView]:
    """``views`` with backfill progress filled in for those not ready (two queries, none if all are)."""
    pending = [v.view_id for v in views if not v.ready]
    if not pending:
        return views
    done = dict(conn.execute(_PROGRESS_STATE_SQL, (pending,)).fetchall())
    total = int(conn.execute(_PROGRESS_TOTAL_SQL).fetchone()[0])  # type: ignore[index]
    counts = {v: (int(done.get(v, 0)), total) for v in pending}
    return [
        replace(v, entities_backfilled=counts[v.view_id][0], entities_total=counts[v.view_id][1])
        if v.view_id in counts
        else v
        for v in views
    ]


def list_views(conn: psycopg.Connection[Any]) -> list[FeatureView]:
    """Every registered view version, by name then version (with progress where not ready)."""
    rows = conn.execute(_SELECT + " ORDER BY name, version").fetchall()
    return _with_progress(conn, [_from_row(r) for r in rows])


def _not_found(conn: psycopg.Connection[Any], name: str, version: int | None) -> NotFoundError:
    existing = sorted({f"{v.name} v{v.version}" for v in list_views(conn)})
    what = f"view {name!r}" + (f" version {version}" if version is not None else "")
    return NotFoundError(f"no {what}; registered views: {', '.join(existing) or 'none'}")


def get_view(conn: psycopg.Connection[Any], name: str, version: int | None = None) -> FeatureView:
    """A registered view version by name (newest, whatever its status, unless ``version``).

    The registry's view (describe, create, drop); reads use :func:`read_view`. NotFoundError
    lists what exists.
    """
    if version is None:
        row = conn.execute(_SELECT + " WHERE name = %s ORDER BY version DESC LIMIT 1", (name,)).fetchone()
    else:
        row = conn.execute(_SELECT + " WHERE name = %s AND version = %s", (name, version)).fetchone()
    if row is None:
        raise _not_found(conn, name, version)
    view = _from_row(row)
    return view if view.ready else _with_progress(conn, [view])[0]


def read_view(conn: psycopg.Connection[Any], name: str, version: int | None = None) -> FeatureView:
    """The view version a read uses: by name the newest *ready* one, else exactly ``version``.

    A version whose backfill has not finished (running, or interrupted) holds features for only
    some entities, so it never serves a read: by name the previous ready version answers, and
    asking for it explicitly, or for a name with no ready version, raises NotFoundError naming
    its progress and how to resume. One query when the view is ready.
    """
    if version is None:
        row = conn.execute(
            _SELECT + " WHERE name = %s AND status = %s ORDER BY version DESC LIMIT 1", (name, READY)
        ).fetchone()
        if row is not None:
            return _from_row(row)
        newest = get_view(conn, name)  # NotFoundError when the name does not exist at all
        raise NotFoundError(
            f"view {name!r} has no complete version yet: v{newest.version} is {newest.progress_text()}; "
            f"{resume_hint(newest)}"
        )
    view = get_view(conn, name, version)
    if not view.ready:
        raise NotFoundError(
            f"view {name!r} version {version} is not complete ({view.progress_text()}), so it "
            f"cannot be read; {resume_hint(view)}"
        )
    return view


async def read_view_async(conn: Any, name: str, version: int | None = None) -> FeatureView | None:
    """:func:`read_view`'s one-query case on an asyncio psycopg connection: the newest ready
    version by name (or exactly ``version`` when ready); None when the answer needs more (an
    incomplete or missing view: the caller asks :func:`read_view` for its error)."""
    if version is None:
        cur = await conn.execute(_SELECT + " WHERE name = %s AND status = %s ORDER BY version DESC LIMIT 1", (name, READY))
    else:
        cur = await conn.execute(_SELECT + " WHERE name = %s AND version = %s AND status = %s", (name, version, READY))
    row = await cur.fetchone()
    return None if row is None else _from_row(row)


def resume_hint(view: FeatureView) -> str:
    """How to finish an incomplete backfill: the same create_view call (or CLI command) again."""
    indicators = view.indicator_names()
    f32 = view.dtype != "float64"
    call = (
        f"store.create_view({view.name!r}, {indicators!r}"
        + (f", columns={list(view.columns)!r}" if view.columns else "")
        + (f", dtype={view.dtype!r}" if f32 else "")
        + ")"
    )
    cli = " ".join(
        ["featurestore views create", view.name, *indicators, *(f"--column {c}" for c in view.columns)]
        + ([f"--dtype {view.dtype}"] if f32 else [])
    )
    return f"resume the backfill with the same spec: {call}, or `{cli}`"


def register_view(
    conn: psycopg.Connection[Any],
    name: str,
    indicators: Sequence[IndicatorSpec],
    columns: Sequence[str],
    available_after: timedelta = timedelta(0),
    dtype: str = "float64",
) -> tuple[FeatureView, bool]:
    """Register (name, spec) inside the caller's transaction; return (view, created).

    The same spec as the newest version returns that version unchanged; a different one creates
    the next version and its empty table (feature columns ``float8``, or ``real`` for ``dtype="float32"``).
    """
    validate_identifier(name, what="view name")
    dtype = view_dtype(dtype)
    spec = _spec_json(indicators, columns, available_after, dtype)
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
    col_type = sql.SQL(DTYPES[dtype])  # a constant of DTYPES, never user text
    floats = [sql.SQL("{} {}").format(ident(c), col_type) for c in feature_cols]
    # load_id after the int4 entity_id fills the padding before ts: no storage cost
    col_defs = sql.SQL(", ").join(
        [sql.SQL("entity_id int4 NOT NULL"), sql.SQL("load_id int4 NOT NULL"), sql.SQL("ts timestamptz NOT NULL")]
        + floats
        + [sql.SQL("PRIMARY KEY (entity_id, ts)")]
    )
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(ident(table), col_defs))
    history_defs = sql.SQL(", ").join(
        [sql.SQL("entity_id int4 NOT NULL"), sql.SQL("load_id int4 NOT NULL"), sql.SQL("ts timestamptz NOT NULL"),
         sql.SQL("superseded_by int4 NOT NULL")]
        + floats
        + [sql.SQL("PRIMARY KEY (entity_id, ts, superseded_by)")]
    )
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(ident(table + "_h"), history_defs))
    layout = segments.view_layout(table, feature_cols, float32=dtype == "float32")
    segments.create_segment_table(conn, layout)
    placement.place_new(conn, [table, table + "_h", layout.segments])  # distributed stores: colocated
    row = conn.execute(
        "INSERT INTO feature_views (name, version, spec, table_name) VALUES (%s, %s, %s, %s) "
        "RETURNING view_id, name, version, spec, table_name, status, created_at, ready_at",
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
        raise _not_found(conn, name, version)
    dropped = []
    for r in rows:
        view = _from_row(r)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident(view.table_name)))
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident(view.history_table)))
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident(view.table_name + "_s")))
        conn.execute("DELETE FROM indicator_state WHERE view_id = %s", (view.view_id,))
        conn.execute("DELETE FROM indicator_checkpoints WHERE view_id = %s", (view.view_id,))
        conn.execute("DELETE FROM feature_views WHERE view_id = %s", (view.view_id,))
        dropped.append(view.version)
    return dropped
