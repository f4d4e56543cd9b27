"""[store] Compressed history segments: old rows of a table as per-entity column blocks.

A segment holds up to :data:`SEGMENT_ROWS` consecutive rows of one entity of ``bars`` (table
``bars_segments``) or of a view table (``<view table>_s``): ``ts_first``/``ts_last``/``n`` and one
``bytea`` per column holding the column's values back to back in PostgreSQL's binary send format
(``int8send``/``int4send``/``float8send``/``float4send``: big-endian, NaN payloads kept). The
server builds segments from rows in one statement (``string_agg`` of the send functions) and the
client decodes them with one ``numpy.frombuffer`` per column, so a whole-history read moves
about 8 bytes per value and decodes nothing per row. ``bytea`` columns are stored ``EXTERNAL``
(out of line, not pglz-compressed): the embedded server has no lz4, pglz barely shrinks
random-walk doubles and costs its decompression on every read (``benchmarks/segments.py``).

Timestamps are int8 microseconds since the Unix epoch; ``load_id`` is int4 per row (knowledge
time keeps working on segmented history); NULLs of nullable (view) columns are kept in
``nulls``: one byte per row per nullable column, in column order, NULL when the segment has none.

:func:`compress` moves the rows older than a time into segments; :func:`expand` moves an
entity's segments from a time on back into rows (a write into segmented history expands first,
so the write path only ever sees rows). Invariant kept by both: per entity and table, every
row is newer than every segment.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from featurestore import placement
from featurestore.schema import BAR_COLUMNS, ident, validate_identifier

__all__ = [
    "CompressResult",
    "compress_store",
    "SEGMENT_ROWS",
    "BARS_SEGMENTS",
    "Layout",
    "bars_layout",
    "segment_table",
    "create_segment_table",
    "compress",
    "expand",
    "decode",
    "fetch_segments",
    "to_us",
]

#: Rows per segment: large enough that per-segment costs (a TOAST pointer per column, one index
#: entry) vanish per row, small enough that a correction expands little.
SEGMENT_ROWS = 10_000

BARS_SEGMENTS = "bars_segments"

_SEND = {"int8": "int8send", "int4": "int4send", "float8": "float8send", "float4": "float4send"}
_NP = {"int8": ">i8", "int4": ">i4", "float8": ">f8", "float4": ">f4"}
_NATIVE = {"int8": np.int64, "int4": np.int32, "float8": np.float64, "float4": np.float32}


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_FIRST = dt.datetime(1, 1, 1, tzinfo=dt.UTC)  # before any bar: "from the first segment"

def segment_table(table: str) -> str:
    """The segment table of ``table`` (``bars`` or a view table)."""
    return BARS_SEGMENTS if table == "bars" else validate_identifier(table, what="table name") + "_s"


@dataclass(frozen=True)
class Layout:
    """What a table's segments hold: value columns with their type, and which may be NULL."""

    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]  # float8 or float4, one per column
    nullable: bool

    @property
    def segments(self) -> str:
        return segment_table(self.table)

    def stored(self, column: str) -> sql.Identifier:
        """The segment table's column for ``column``: the same name for bars; for a view, the name
        with a leading underscore, which no user column can have (names start with a letter), so
        a view column never meets the segment table's own (``n``, ``nulls``, ``ts_first``...)."""
        return ident(column) if self.table == "bars" else sql.Identifier("_" + column)


def bars_layout() -> Layout:
    return Layout("bars", BAR_COLUMNS, ("float8",) * len(BAR_COLUMNS), nullable=False)


def view_layout(table: str, columns: Sequence[str], float32: bool = False) -> Layout:
    """A view table's layout: every feature column nullable, float4 for a float32 view."""
    t = "float4" if float32 else "float8"
    return Layout(table, tuple(columns), (t,) * len(columns), nullable=True)


def create_segment_table(conn: psycopg.Connection[Any], layout: Layout) -> None:
    """Create ``layout``'s segment table if it does not exist (view tables; bars' is a migration's)."""
    cols = sql.SQL("").join(sql.SQL(", {} bytea NOT NULL").format(layout.stored(c)) for c in layout.columns)
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {s} (entity_id int4 NOT NULL, ts_first timestamptz NOT NULL, "
            "ts_last timestamptz NOT NULL, n int4 NOT NULL, ts bytea NOT NULL, load_id bytea NOT NULL{cols}, "
            "nulls bytea, PRIMARY KEY (entity_id, ts_first))"
        ).format(s=ident(layout.segments), cols=cols)
    )
    for c in (ident("ts"), ident("load_id"), *(layout.stored(c) for c in layout.columns)):
        conn.execute(sql.SQL("ALTER TABLE {s} ALTER COLUMN {c} SET STORAGE EXTERNAL").format(s=ident(layout.segments), c=c))


def _agg(expr: sql.Composable) -> sql.Composable:
    return sql.SQL("string_agg({}, ''::bytea ORDER BY ts)").format(expr)


def compress(
    conn: psycopg.Connection[Any],
    layout: Layout,
    before: dt.datetime | dict[int, dt.datetime],
    entity_ids: Sequence[int] | None = None,
    *,
    rows_per_segment: int = SEGMENT_ROWS,
) -> int:
    """Move ``layout.table``'s rows with ``ts < before`` into new segments (of the given entities,
    or all; ``before`` may be a bound per entity); returns the rows moved. One statement: the rows
    are deleted and their segments inserted atomically in the caller's transaction."""
    if rows_per_segment < 1:
        raise ValueError("rows_per_segment must be >= 1")
    if isinstance(before, dict):
        if not before:
            return 0
        entity_ids = list(before)
    values = [
        _agg(sql.SQL("{f}(coalesce({c}, 'NaN'))").format(f=sql.SQL(_SEND[t]), c=ident(c)))
        if layout.nullable
        else _agg(sql.SQL("{f}({c})").format(f=sql.SQL(_SEND[t]), c=ident(c)))
        for c, t in zip(layout.columns, layout.types)
    ]
    if layout.nullable and layout.columns:
        flags = sql.SQL(" || ").join(
            _agg(sql.SQL("CASE WHEN {c} IS NULL THEN '\\x01'::bytea ELSE '\\x00'::bytea END").format(c=ident(c)))
            for c in layout.columns
        )
        any_null = sql.SQL(" OR ").join(sql.SQL("bool_or({} IS NULL)").format(ident(c)) for c in layout.columns)
        nulls: sql.Composable = sql.SQL("CASE WHEN {a} THEN {f} END").format(a=any_null, f=flags)
    else:
        nulls = sql.SQL("NULL::bytea")
    if isinstance(before, dict):
        delete = sql.SQL(
            "DELETE FROM {t} x USING unnest(%(ids)s::int4[], %(bounds)s::timestamptz[]) AS b(e, before) "
            "WHERE x.entity_id = b.e AND x.ts < b.before RETURNING x.*"
        ).format(t=ident(layout.table))
    else:
        only = sql.SQL(" AND entity_id = ANY(%(ids)s::int4[])") if entity_ids is not None else sql.SQL("")
        delete = sql.SQL("DELETE FROM {t} WHERE ts < %(before)s::timestamptz{only} RETURNING *").format(
            t=ident(layout.table), only=only
        )
    names = sql.SQL("").join(sql.SQL(", {}").format(layout.stored(c)) for c in layout.columns)
    query = sql.SQL(
        "WITH moved AS ({delete}), "
        "blocks AS (SELECT m.*, (row_number() OVER (PARTITION BY entity_id ORDER BY ts) - 1) / %(per)s AS _blk "
        "FROM moved m) "
        "INSERT INTO {s} (entity_id, ts_first, ts_last, n, ts, load_id{names}, nulls) "
        "SELECT entity_id, min(ts), max(ts), count(*)::int4, "
        "{ts}, {load}{values}, {nulls} FROM blocks GROUP BY entity_id, _blk RETURNING n"
    ).format(
        delete=delete,
        s=ident(layout.segments),
        names=names,
        ts=_agg(sql.SQL("int8send((extract(epoch FROM ts) * 1000000)::int8)")),
        load=_agg(sql.SQL("int4send(load_id)")),
        values=sql.SQL("").join(sql.SQL(", ") + v for v in values),
        nulls=nulls,
    )
    params: dict[str, Any] = {"per": int(rows_per_segment)}
    if isinstance(before, dict):
        params["ids"] = [int(e) for e in before]
        params["bounds"] = list(before.values())
    else:
        params["before"] = before
        if entity_ids is not None:
            params["ids"] = [int(e) for e in entity_ids]
    return sum(int(r[0]) for r in conn.execute(query, params).fetchall())


@dataclass
class Decoded:
    """Segments decoded into flat columns, rows in segment order (per entity, time-ascending)."""

    entity_id: np.ndarray  # int32
    ts: np.ndarray  # int64 µs since the epoch
    load_id: np.ndarray  # int32
    values: dict[str, np.ndarray]
    nulls: dict[str, np.ndarray]  # bool per row, only for columns with a NULL

    def __len__(self) -> int:
        return int(self.ts.size)

    def take(self, idx: np.ndarray) -> Decoded:
        return Decoded(
            self.entity_id[idx], self.ts[idx], self.load_id[idx],
            {c: v[idx] for c, v in self.values.items()}, {c: m[idx] for c, m in self.nulls.items()},
        )


def _flat(blobs: Sequence[bytes | memoryview | None], kind: str) -> np.ndarray:
    """Concatenated big-endian values of ``blobs`` as a native array (one copy, one conversion)."""
    raw = b"".join(bytes(b) for b in blobs if b is not None)
    return np.frombuffer(raw, dtype=_NP[kind]).astype(_NATIVE[kind])


def decode(layout: Layout, rows: Sequence[Sequence[Any]], columns: Sequence[str] | None = None) -> Decoded:
    """Decode segment rows ``(entity_id, n, ts, load_id, <columns...>, nulls)`` (the order of
    :func:`fetch_segments`); ``columns`` is the subset of ``layout.columns`` fetched (default all)."""
    cols = list(layout.columns if columns is None else columns)
    kinds = dict(zip(layout.columns, layout.types))
    n = np.array([int(r[1]) for r in rows], dtype=np.int64)
    eid = np.repeat(np.array([int(r[0]) for r in rows], dtype=np.int32), n)
    ts = _flat([r[2] for r in rows], "int8")
    load = _flat([r[3] for r in rows], "int4")
    values = {c: _flat([r[4 + k] for r in rows], kinds[c]) for k, c in enumerate(cols)}
    nulls: dict[str, np.ndarray] = {}
    if layout.nullable and any(r[-1] is not None for r in rows):
        pos = {c: k for k, c in enumerate(layout.columns)}
        flags = {c: [] for c in cols}  # type: dict[str, list[np.ndarray]]
        for r, k in zip(rows, n.tolist()):
            if r[-1] is None:
                for c in cols:
                    flags[c].append(np.zeros(k, dtype=bool))
            else:
                b = np.frombuffer(bytes(r[-1]), dtype=np.uint8)
                for c in cols:
                    flags[c].append(b[pos[c] * k : (pos[c] + 1) * k].astype(bool))
        for c in cols:
            m = np.concatenate(flags[c]) if flags[c] else np.zeros(0, dtype=bool)
            if m.any():
                nulls[c] = m
    return Decoded(eid, ts, load, values, nulls)


def fetch_segments(
    conn: psycopg.Connection[Any],
    layout: Layout,
    entity_ids: Sequence[int],
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    columns: Sequence[str] | None = None,
) -> Decoded:
    """The rows held in segments of ``entity_ids`` with ``start <= ts <= end`` (open ends when
    None), decoded, ordered by entity id then ts."""
    cols = list(layout.columns if columns is None else columns)
    conds = [sql.SQL("entity_id = ANY(%(ids)s::int4[])")]
    params: dict[str, Any] = {"ids": [int(e) for e in entity_ids]}
    if start is not None:
        conds.append(sql.SQL("ts_last >= %(start)s::timestamptz"))
        params["start"] = start
    if end is not None:
        conds.append(sql.SQL("ts_first <= %(end)s::timestamptz"))
        params["end"] = end
    query = sql.SQL("SELECT entity_id, n, ts, load_id{cols}, nulls FROM {s} WHERE {w} ORDER BY entity_id, ts_first").format(
        cols=sql.SQL("").join(sql.SQL(", {}").format(layout.stored(c)) for c in cols),
        s=ident(layout.segments),
        w=sql.SQL(" AND ").join(conds),
    )
    rows = conn.execute(query, params, binary=True).fetchall()
    out = decode(layout, rows, cols)
    keep = np.ones(len(out), dtype=bool)
    if start is not None:
        keep &= out.ts >= to_us(start)
    if end is not None:
        keep &= out.ts <= to_us(end)
    return out if keep.all() else out.take(np.flatnonzero(keep))


def to_us(t: dt.datetime) -> int:
    """A tz-aware datetime as int microseconds since the Unix epoch (exact)."""
    if t.tzinfo is None:
        raise ValueError("naive datetime")
    d = t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def expand(
    conn: psycopg.Connection[Any], layout: Layout, since: dict[int, int | None]
) -> int:
    """Move back into rows, per entity, the segments holding any row at or after ``since[e]``
    (µs; None: every segment of ``e``); returns the rows moved. Later segments of an entity go
    too (rows stay newer than segments)."""
    if not since:
        return 0
    from featurestore.write.copy import copy_in

    ids = [int(e) for e in since]
    # the floors as timestamps (None: every segment, from year 1): compared as they are, with no
    # function of a column (Citus refuses a non-immutable one in a DELETE over a distributed table)
    floor = [_FIRST if v is None else _EPOCH + dt.timedelta(microseconds=int(v)) for v in since.values()]
    cols = list(layout.columns)
    rows = conn.execute(
        sql.SQL(
            "DELETE FROM {s} s USING unnest(%(ids)s::int4[], %(floor)s::timestamptz[]) AS f(e, since) "
            "WHERE s.entity_id = f.e AND s.ts_last >= f.since "
            "RETURNING s.entity_id, s.n, s.ts, s.load_id{cols}, s.nulls, s.ts_first"
        ).format(s=ident(layout.segments), cols=sql.SQL("").join(sql.SQL(", s.{}").format(layout.stored(c)) for c in cols)),
        {"ids": ids, "floor": floor},
        binary=True,
    ).fetchall()
    if not rows:
        return 0
    rows.sort(key=lambda r: (r[0], r[-1]))
    d = decode(layout, [r[:-1] for r in rows], cols)
    arrays = [d.entity_id, d.load_id, d.ts, *(d.values[c] for c in cols)]
    nulls: list[np.ndarray | None] = [None, None, None, *(d.nulls.get(c) for c in cols)]
    types = ["int4", "int4", "timestamptz", *layout.types]
    copy_in(conn, ident(layout.table), ["entity_id", "load_id", "ts", *cols], arrays, types,
            nulls if any(m is not None for m in nulls) else None)
    return len(d)


def expand_all(conn: psycopg.Connection[Any], layout: Layout) -> int:
    """Move every segment of ``layout`` back into rows (the downgrade; tests)."""
    ids = [r[0] for r in conn.execute(
        sql.SQL("SELECT DISTINCT entity_id FROM {}").format(ident(layout.segments))
    ).fetchall()]
    return expand(conn, layout, {int(e): None for e in ids})


def store_layouts(conn: psycopg.Connection[Any]) -> list[Layout]:
    """Bars' layout and every view table's (feature columns and their type read from the catalog)."""
    out = [bars_layout()]
    tables = [r[0] for r in conn.execute("SELECT table_name FROM feature_views ORDER BY view_id").fetchall()]
    for table in tables:
        cols = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = %s AND column_name NOT IN ('entity_id', 'load_id', 'ts') ORDER BY ordinal_position",
            (table,),
        ).fetchall()
        if not cols:  # a registry row whose table is gone (dropped in the same transaction)
            continue
        out.append(view_layout(table, [c for c, _ in cols], float32=cols[0][1] == "real"))
    return out


def boundaries(conn: psycopg.Connection[Any], entity_ids: Sequence[int]) -> dict[int, dt.datetime]:
    """Per entity with segments: the newest time its segments hold (every table agrees on it)."""
    rows = conn.execute(
        "SELECT entity_id, max(ts_last) FROM bars_segments WHERE entity_id = ANY(%s::int4[]) GROUP BY entity_id",
        ([int(e) for e in entity_ids],),
    ).fetchall()
    return {int(e): t for e, t in rows}


def expand_from(
    conn: psycopg.Connection[Any], layouts: Sequence[Layout], since: dict[int, int | None]
) -> dict[str, int]:
    """Expand, in every table of ``layouts`` alike, the segments of each entity holding rows at or
    after ``since[e]`` (µs; None: all); returns the rows moved per table.

    The point is moved back to the first row of the earliest segment that would be expanded in
    any table (until no table has a segment straddling it), so that every table keeps one
    boundary per entity: rows after it, segments up to it.
    """
    floor = dict(since)
    while True:  # each round only moves floors earlier, to a segment's first row: it ends
        pending = {e: v for e, v in floor.items() if v is not None}
        if not pending:
            break
        moved = False
        for layout in layouts:
            rows = conn.execute(
                sql.SQL(
                    "SELECT f.e, (extract(epoch FROM min(s.ts_first)) * 1000000)::int8 FROM "
                    "unnest(%(ids)s::int4[], %(us)s::int8[]) AS f(e, us) JOIN {s} s ON s.entity_id = f.e "
                    "AND s.ts_last >= ('epoch'::timestamptz + f.us * interval '1 microsecond') GROUP BY f.e"
                ).format(s=ident(layout.segments)),
                {"ids": list(pending), "us": list(pending.values())},
            ).fetchall()
            for e, first in rows:
                if first is not None and int(first) < int(floor[int(e)]):  # type: ignore[arg-type]
                    floor[int(e)] = int(first)
                    moved = True
        if not moved:
            break
    return {layout.table: expand(conn, layout, floor) for layout in layouts}


@dataclass(frozen=True)
class CompressResult:
    """What :meth:`FeatureStore.compress_history` moved into history segments."""

    before: dt.datetime
    bar_rows: int  # bars moved from rows into segments by this call
    feature_rows: dict[str, int]  # per view table
    segment_rows: int  # bars held in segments after the call (all of them, not only this call's)
    segments: int  # bars' segments after the call
    elapsed_s: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "before": self.before.isoformat(),
            "bar_rows": self.bar_rows,
            "feature_rows": dict(self.feature_rows),
            "segment_rows": self.segment_rows,
            "segments": self.segments,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def compress_store(
    conn: psycopg.Connection[Any], before: dt.datetime, *, rows_per_segment: int = SEGMENT_ROWS
) -> CompressResult:
    """Move every table's rows older than ``before`` into segments, in the caller's transaction.

    Locks every entity first (in id order, as loads and backfills do), so no write of an entity
    runs while its rows move; reads go on (a reader sees all rows or all segments of a commit).
    """
    import time

    t0 = time.perf_counter()
    # the entities locked here are the ones compressed: a symbol a concurrent load creates
    # meanwhile keeps all its rows (in every table), so its boundary stays one
    locked = [int(e) for e in placement.lock_entities(conn, None)]
    layouts = store_layouts(conn)
    # an entity's last, partly filled block joins the rows that follow it, so compressing often
    # (say daily) keeps blocks full instead of adding a small one each time
    tails = conn.execute(
        "SELECT DISTINCT ON (entity_id) entity_id, (extract(epoch FROM ts_first) * 1000000)::int8, n, "
        "EXISTS (SELECT 1 FROM bars b WHERE b.entity_id = s.entity_id AND b.ts < %s) "
        "FROM bars_segments s WHERE entity_id = ANY(%s::int4[]) ORDER BY entity_id, ts_first DESC",
        (before, locked),
    ).fetchall()
    partial = {int(e): int(first) for e, first, n, more in tails if n < rows_per_segment and more}
    back = expand_from(conn, layouts, dict(partial)) if partial else {}
    moved = {
        layout.table: compress(conn, layout, before, locked, rows_per_segment=rows_per_segment) - back.get(layout.table, 0)
        for layout in layouts
    }
    row = conn.execute("SELECT count(*), coalesce(sum(n), 0) FROM bars_segments").fetchone()
    assert row is not None
    return CompressResult(
        before=before,
        bar_rows=moved.pop("bars"),
        feature_rows=moved,
        segment_rows=int(row[1]),
        segments=int(row[0]),
        elapsed_s=time.perf_counter() - t0,
    )


def segments_sql(layout: Layout, columns: Sequence[str]) -> str:
    """The segments of entities ``%(ids)s`` overlapping ``%(start)s``..``%(end)s`` (bulk-read text:
    the reader renders the parameters), columns as :func:`decode` takes them."""
    return sql.SQL(
        "SELECT entity_id, n, ts, load_id{cols}, nulls FROM {s} "
        "WHERE entity_id = ANY(%(ids)s::int4[]) AND ts_last >= %(start)s::timestamptz "
        "AND ts_first <= %(end)s::timestamptz ORDER BY entity_id, ts_first"
    ).format(
        cols=sql.SQL("").join(sql.SQL(", {} AS {}").format(layout.stored(c), ident(c)) for c in columns),
        s=ident(layout.segments),
    ).as_string(None)


def _arrow_values(column: Any, kind: str) -> np.ndarray:
    """The values of an Arrow binary column's blobs, back to back, read from its buffers: one
    byte-order conversion, no per-segment Python object."""
    import pyarrow as pa

    parts = []
    for chunk in column.chunks:
        if len(chunk) == 0:
            continue
        wide = pa.types.is_large_binary(chunk.type)
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int64 if wide else np.int32)
        offsets = offsets[chunk.offset : chunk.offset + len(chunk) + 1]
        parts.append(np.frombuffer(chunk.buffers()[2], dtype=np.uint8)[int(offsets[0]) : int(offsets[-1])])
    raw = np.concatenate(parts) if len(parts) > 1 else (parts[0] if parts else np.zeros(0, np.uint8))
    return raw.view(_NP[kind]).astype(_NATIVE[kind])


def decode_table(layout: Layout, table: Any, columns: Sequence[str]) -> Decoded:
    """:func:`decode` for an Arrow table of :func:`segments_sql`'s columns (a bulk read), taken
    by position (a view's column may share a name with the segment table's own)."""
    last = table.num_columns - 1
    if table.num_rows == 0 or table.column(last).null_count != table.num_rows:
        cols = [table.column(k).to_pylist() for k in range(table.num_columns)]
        return decode(layout, list(zip(*cols)), columns)
    kinds = dict(zip(layout.columns, layout.types))
    n = table.column(1).to_numpy().astype(np.int64)
    eid = np.repeat(table.column(0).to_numpy().astype(np.int32), n)
    values = {c: _arrow_values(table.column(4 + k), kinds[c]) for k, c in enumerate(columns)}
    return Decoded(eid, _arrow_values(table.column(2), "int8"), _arrow_values(table.column(3), "int4"), values, {})


def exists_sql() -> str:
    """1 when entities ``%(ids)s`` hold history segments at or before ``%(end)s``, else no row."""
    return (
        "SELECT 1 AS segmented FROM bars_segments WHERE entity_id = ANY(%(ids)s::int4[]) "
        "AND ts_first <= %(end)s::timestamptz LIMIT 1"
    )
