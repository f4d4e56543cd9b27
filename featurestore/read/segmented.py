"""[read] Reads over history segments (featurestore.segments): the same results as over rows.

Per entity, every table keeps one boundary: rows after it, segments up to it. A read learns
whether it reaches segments inside the statement or transaction that reads the rows, so a
compression or expansion committing meanwhile can never make it see a row twice or miss one:

- range reads without knowledge time (the bulk path, :func:`merged_range`): the rows and the
  segments of the range in one REPEATABLE READ transaction; the segments are decoded in numpy
  and merged into the rows' Arrow table;
- every other shape (knowledge time, latest rows, training frames, :func:`shadowed`): in one
  REPEATABLE READ transaction, the entities' rows up to the read's upper time and their segments'
  rows go to temporary tables named like the real ones (PostgreSQL looks in ``pg_temp`` first),
  and the read's own SQL runs on them unchanged.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from psycopg import sql

from featurestore import segments
from featurestore.read import bulk as _bulk
from featurestore.read.sql import render

__all__ = ["marked", "is_marked", "merged_range", "shadowed", "shadow_pg", "companions", "layout_of"]


def layout_of(table: str, feature_columns: Sequence[str] = (), float32: bool = False) -> segments.Layout:
    return segments.bars_layout() if table == "bars" else segments.view_layout(table, feature_columns, float32)


def marked(query: str, n_columns: int) -> str:
    """``query`` plus one all-NULL row at its end when the entities ``%(ids)s`` hold segments that
    overlap ``%(start)s``..``%(end)s`` (checked in the same statement, so in the same snapshot)."""
    return sql.SQL(
        "({query}) UNION ALL (SELECT {nulls} WHERE EXISTS (SELECT 1 FROM bars_segments s "
        "WHERE s.entity_id = ANY(%(ids)s::int4[]) AND s.ts_last >= %(start)s::timestamptz "
        "AND s.ts_first <= %(end)s::timestamptz))"
    ).format(query=sql.SQL(query), nulls=sql.SQL(", ").join([sql.NULL] * n_columns)).as_string(None)


def is_marked(table: pa.Table) -> bool:
    """True when :func:`marked`'s row is in the result (the read reaches segments); rows never
    have a NULL entity id, so its place in the result does not matter."""
    return table.num_rows > 0 and table.column("entity_id").null_count > 0


def _segment_rows(conn: Any, layout: segments.Layout, columns: Sequence[str], params: dict[str, Any]) -> segments.Decoded:
    d = segments.decode_table(layout, _bulk.run(conn, render(segments.segments_sql(layout, columns), params)), columns)
    lo, hi = segments.to_us(params["start"]), segments.to_us(params["end"])
    keep = (d.ts >= lo) & (d.ts <= hi)
    return d if bool(keep.all()) else d.take(np.flatnonzero(keep))


def _join(a: segments.Decoded, b: segments.Decoded) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``a`` and ``b`` of the keys (entity, ts) both hold, in key order."""
    key = np.dtype([("e", np.int32), ("t", np.int64)])
    ka, kb = np.empty(len(a), key), np.empty(len(b), key)
    ka["e"], ka["t"], kb["e"], kb["t"] = a.entity_id, a.ts, b.entity_id, b.ts
    _, ia, ib = np.intersect1d(ka, kb, assume_unique=True, return_indices=True)
    return ia, ib


def merged_range(
    conn: Any,
    rows_query: str,
    params: dict[str, Any],
    table: str,
    bar_cols: Sequence[str],
    feat_cols: Sequence[str],
    view_layout: segments.Layout | None,
) -> pa.Table:
    """The range read (rows of ``rows_query``, no knowledge time) with the segments' rows of the
    range merged in, ordered by entity then ts; ``conn`` is in a REPEATABLE READ transaction."""
    rows = _bulk.run(conn, render(rows_query, params))
    parts: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    if table == "bars":
        d = _segment_rows(conn, segments.bars_layout(), bar_cols, params)
        eid, ts = d.entity_id, d.ts
        parts = {c: (d.values[c], None) for c in bar_cols}
    else:
        assert view_layout is not None
        f = _segment_rows(conn, view_layout, feat_cols, params)
        if bar_cols:
            b = _segment_rows(conn, segments.bars_layout(), bar_cols, params)
            ib, jf = _join(b, f)
            f = f.take(jf)
            parts = {c: (b.values[c][ib], None) for c in bar_cols}
        eid, ts = f.entity_id, f.ts
        parts.update({c: (f.values[c], f.nulls.get(c)) for c in feat_cols})
    if not ts.size:
        return rows
    arrays = []
    for field in rows.schema:
        if field.name == "entity_id":
            arrays.append(pa.array(eid, type=field.type))
        elif field.name == "ts":
            arrays.append(pa.array(ts, type=pa.int64()).cast(field.type))
        else:
            values, mask = parts[field.name]
            arrays.append(pa.array(values, type=field.type, mask=mask))
    seg = pa.Table.from_arrays(arrays, schema=rows.schema)
    both = pa.concat_tables([seg, rows]) if rows.num_rows else seg
    return both.sort_by([("entity_id", "ascending"), ("ts", "ascending")]) if rows.num_rows else both


def _layouts(conn: Any, tables: Sequence[str]) -> list[segments.Layout]:
    """Each table's layout, its feature columns and their type read from the catalog."""
    out = []
    for table in tables:
        if table == "bars":
            out.append(segments.bars_layout())
            continue
        cat = _bulk.run(conn, (
            "SELECT column_name::text AS c, data_type::text AS t FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = " + sql.Literal(table).as_string(None)
            + " AND column_name NOT IN ('entity_id', 'load_id', 'ts') ORDER BY ordinal_position"
        ))
        cols, types = cat.column("c").to_pylist(), cat.column("t").to_pylist()
        out.append(segments.view_layout(table, cols, float32=bool(types) and types[0] == "real"))
    return out


def companions(tables: Sequence[str]) -> list[str]:
    """The other distributed tables a read over ``tables`` may join: their history tables and
    ``entity_keys``. On a Citus store they are shadowed too (:func:`shadowed`), so the read
    runs on the coordinator over temporary tables and reference tables only: Citus joins no
    temporary table with a distributed one."""
    return [*("bars_history" if t == "bars" else f"{t}_h" for t in tables), "entity_keys"]


_COPY_ALL = sql.SQL("INSERT INTO {} SELECT * FROM {} WHERE entity_id = ANY(%(ids)s::int4[])")
_COPY_UPTO = sql.SQL("INSERT INTO {} SELECT * FROM {} WHERE entity_id = ANY(%(ids)s::int4[]) AND ts <= %(end)s::timestamptz")


def _copy_local(run: Any, schema: str, table: str, has_ts: bool, rng: dict[str, Any]) -> None:
    """A temporary ``table`` holding the real one's rows of entities ``rng["ids"]`` (up to
    ``rng["end"]`` where rows have a time): the companion of a shadowed read on Citus."""
    real, temp = sql.Identifier(schema, table), sql.Identifier(table)
    run(sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(temp, real).as_string(None), {})
    copy = _COPY_UPTO if has_ts else _COPY_ALL
    run(copy.format(sql.Identifier("pg_temp", table), real).as_string(None), rng)


def shadowed(
    conn: Any,
    query: str,
    params: dict[str, Any],
    tables: Sequence[str],
    ids: Sequence[int],
    upper: dt.datetime,
    *,
    distributed: bool = False,
) -> pa.Table:
    """Run ``query`` (rendered with ``params``) as if every table of ``tables`` held, for
    entities ``ids`` and times up to ``upper``, its segments' rows as rows. ``conn`` is in a
    REPEATABLE READ (read-write: temporary tables) transaction; the temporary tables go at its end.
    ``distributed`` (a Citus store): the :func:`companions` the query names are shadowed too."""
    check = render(segments.exists_sql(), {"ids": np.asarray(ids, dtype=np.int32), "end": upper})
    if _bulk.run(conn, check).num_rows == 0:
        return _bulk.run(conn, render(query, params))
    layouts = _layouts(conn, tables)
    schema = _bulk.run(conn, "SELECT current_schema() AS s").column("s")[0].as_py()
    rng = {"ids": np.asarray(ids, dtype=np.int32), "start": dt.datetime(1, 1, 1, tzinfo=dt.UTC), "end": upper}
    extra = [t for t in companions(tables) if distributed and _names(query, t)]
    for t in extra:
        _copy_local(lambda q, p: _bulk.run_statement(conn, render(q, p)), schema, t, t != "entity_keys", rng)
    for layout in layouts:
        real, temp = sql.Identifier(schema, layout.table), sql.Identifier("pg_temp", layout.table)
        _bulk.run_statement(conn, sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(
            sql.Identifier(layout.table), real).as_string(None))
        _bulk.run_statement(conn, render(sql.SQL(
            "INSERT INTO {} SELECT * FROM {} WHERE entity_id = ANY(%(ids)s::int4[]) AND ts <= %(end)s::timestamptz"
        ).format(temp, real).as_string(None), rng))
        d = _segment_rows(conn, layout, layout.columns, rng)
        if len(d):
            cols = {"entity_id": pa.array(d.entity_id, pa.int32()), "load_id": pa.array(d.load_id, pa.int32()),
                    "ts": pa.array(d.ts, pa.int64()).cast(pa.timestamp("us", tz="UTC"))}
            for c in layout.columns:
                cols[c] = pa.array(d.values[c], mask=d.nulls.get(c))
            with conn.cursor() as cur:
                cur.adbc_ingest(layout.table, pa.table(cols), mode="append", temporary=True)
        _bulk.run_statement(conn, sql.SQL("CREATE INDEX ON {} (entity_id, ts)").format(temp).as_string(None))
        _bulk.run_statement(conn, sql.SQL("ANALYZE {}").format(temp).as_string(None))
    out = _bulk.run(conn, render(query, params))
    for t in [*(layout.table for layout in layouts), *extra]:  # now, not at commit: a snapshot runs several reads
        _bulk.run_statement(conn, sql.SQL("DROP TABLE {}").format(sql.Identifier("pg_temp", t)).as_string(None))
    return out


def _names(query: str, table: str) -> bool:
    """Whether ``query`` names ``table`` (as an identifier, quoted or not)."""
    return re.search(rf'(?<![\w"]){re.escape(table)}(?![\w"])|"{re.escape(table)}"', query) is not None


def shadow_pg(
    conn: Any, layouts: Sequence[segments.Layout], ids: Sequence[int], upper: dt.datetime,
    lower: dt.datetime | None = None, *, distributed: bool = False,
) -> bool:
    """:func:`shadowed`'s temporary tables on a psycopg connection (point reads, whose parameters
    stay parameters), holding times ``lower``..``upper``; ``conn`` is in a REPEATABLE READ
    transaction. False (and nothing made) when the entities hold no segments there. Queries on
    the shadows must not be prepared (``prepare=False``): a prepared plan keeps its tables."""
    from featurestore.write.copy import copy_in

    ids = [int(e) for e in ids]
    low = lower if lower is not None else dt.datetime(1, 1, 1, tzinfo=dt.UTC)
    if conn.execute("SELECT 1 FROM bars_segments WHERE entity_id = ANY(%s::int4[]) AND ts_first <= %s "
                    "AND ts_last >= %s LIMIT 1", (ids, upper, low)).fetchone() is None:
        return False
    schema = conn.execute("SELECT current_schema()").fetchone()[0]
    for layout in layouts:
        real, temp = sql.Identifier(schema, layout.table), sql.Identifier("pg_temp", layout.table)
        conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(sql.Identifier(layout.table), real))
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT * FROM {} WHERE entity_id = ANY(%s::int4[]) AND ts <= %s "
                    "AND ts >= %s").format(temp, real),
            (ids, upper, low),
        )
        d = segments.fetch_segments(conn, layout, ids, low, upper)
        if len(d):
            nulls = [None, None, None, *(d.nulls.get(c) for c in layout.columns)]
            copy_in(conn, temp, ["entity_id", "load_id", "ts", *layout.columns],
                    [d.entity_id, d.load_id, d.ts, *(d.values[c] for c in layout.columns)],
                    ["int4", "int4", "timestamptz", *layout.types],
                    nulls if any(m is not None for m in nulls) else None)
        conn.execute(sql.SQL("CREATE INDEX ON {} (entity_id, ts)").format(temp))
        conn.execute(sql.SQL("ANALYZE {}").format(temp))
    if distributed:  # every companion: the statements that follow are not known here
        rng = {"ids": ids, "end": upper}
        for t in companions([layout.table for layout in layouts]):
            _copy_local(lambda q, p: conn.execute(q, p), schema, t, t != "entity_keys", rng)
    return True
