"""[write] A view's features: continue from saved state or recompute, then store rows and state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from featurestore.indicators import compute_batch, update_batch
from featurestore.schema import ident
from featurestore.views import FeatureView
from featurestore.write.copy import BAR_TYPES, _ts_us_sql, _us_sql, copy_in, copy_out
from featurestore.write.state import pack_states, unpack_states

# Entities per feature batch: bounds the bars held in memory while computing features
# (2,500 daily bars x 256 entities = 640k rows, ~45 MB).
FEATURE_BATCH_ENTITIES = 256


def _segments(entity_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique ids in order, offsets) of a column sorted by entity."""
    if entity_ids.size == 0:
        return np.empty(0, np.int32), np.zeros(1, np.int64)
    starts = np.flatnonzero(np.r_[True, entity_ids[1:] != entity_ids[:-1]])
    offsets = np.r_[starts, entity_ids.size].astype(np.int64)
    return entity_ids[starts], offsets


_BARS_FULL = sql.SQL(
    "SELECT entity_id, ts, open, high, low, close, volume FROM bars "
    "WHERE entity_id = ANY(%s) ORDER BY entity_id, ts"
)
_BARS_SINCE = sql.SQL(
    "SELECT b.entity_id, b.ts, b.open, b.high, b.low, b.close, b.volume "
    "FROM unnest(%s::int4[], %s::int8[]) AS t(e, since) "
    "CROSS JOIN LATERAL (SELECT * FROM bars WHERE entity_id = t.e AND ts > "
    + _us_sql("t.since")
    + " ORDER BY ts) b ORDER BY b.entity_id, b.ts"
)


class MemoryBars:
    """The appended rows of a load, kept in memory so features need not read them back.

    Sorted by (entity, ts); ``rows(ids)`` returns the rows of those entities, in that order.
    """

    def __init__(self, eid: np.ndarray, ts: np.ndarray, open_: np.ndarray, high: np.ndarray, low: np.ndarray,
                 close: np.ndarray, volume: np.ndarray) -> None:
        key_sorted = eid.size < 2 or bool(
            np.all((eid[1:] > eid[:-1]) | ((eid[1:] == eid[:-1]) & (ts[1:] > ts[:-1])))
        )
        if not key_sorted:
            order = np.lexsort((ts, eid))
            eid, ts, open_, high, low, close, volume = (a[order] for a in (eid, ts, open_, high, low, close, volume))
        self.eid, self.ts, self.open, self.high, self.low, self.close, self.volume = eid, ts, open_, high, low, close, volume

    def rows(self, ids: Sequence[int]) -> list[np.ndarray]:
        wanted = np.asarray(ids, dtype=self.eid.dtype)
        lo = np.searchsorted(self.eid, wanted, side="left")
        hi = np.searchsorted(self.eid, wanted, side="right")
        lengths = hi - lo
        # positions lo[k]..hi[k] of every wanted entity, concatenated without a Python loop
        starts = np.repeat(lo - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
        idx = starts + np.arange(int(lengths.sum()))
        return [a[idx] for a in (self.eid, self.ts, self.open, self.high, self.low, self.close, self.volume)]


def write_features(
    conn: psycopg.Connection[Any],
    view: FeatureView,
    entity_ids: Sequence[int],
    old_last: dict[int, int | None],
    changed_past: set[int],
    memory: MemoryBars | None = None,
    load_id: int = 0,
) -> tuple[int, int]:
    """Bring ``view``'s features for ``entity_ids`` up to date with ``bars``; return (rows, recomputed).

    Rows written carry ``load_id`` (0 for a backfill: known from the view's ``ready_at``); a
    recompute moves the rows whose values change to the view's history table, superseded by it.

    ``old_last[e]`` is entity e's last bar before this write (None if it had none) and
    ``changed_past`` the entities whose bars changed at or before it. ``memory`` holds the
    load's appended rows: entities whose new bars are all there (appends, and entities that had
    no bars) are computed from it; the others read their bars back from the table.
    """
    if not entity_ids:
        return 0, 0
    ids = np.asarray(sorted(entity_ids), dtype=np.int32)
    rows = conn.execute(
        "SELECT entity_id, " + _ts_us_sql("last_ts") + ", n_bars, state FROM indicator_state "
        "WHERE view_id = %s AND entity_id = ANY(%b)",
        (view.view_id, ids.tolist()),
        binary=True,
    ).fetchall()
    saved = {r[0]: (r[1], r[2], r[3]) for r in rows}
    incremental: list[int] = []
    full_fresh: list[int] = []  # no state, so no feature rows either: plain COPY
    full_replace: list[int] = []  # state exists but cannot be continued: replace the rows
    blobs: list[bytes] = []
    for e in ids.tolist():
        st = saved.get(e)
        if st is None:
            full_fresh.append(e)
        elif e not in changed_past and old_last.get(e) is not None and st[0] == old_last[e]:
            incremental.append(e)
            blobs.append(st[2])
        else:
            full_replace.append(e)
    written = 0
    if incremental:
        ok, matrix = unpack_states(view, blobs)
        if not ok.all():  # written by another library version or spec: recompute those
            bad = [e for e, k in zip(incremental, ok) if not k]
            full_replace.extend(bad)
            full_replace.sort()
            keep = np.flatnonzero(ok)
            incremental = [incremental[i] for i in keep]
            matrix = matrix[keep]
        step = FEATURE_BATCH_ENTITIES * 8
        for lo in range(0, len(incremental), step):
            part = incremental[lo : lo + step]
            counts = {e: saved[e][1] for e in part}
            state_part = matrix[lo : lo + len(part)]
            if memory is not None:
                bars = memory.rows(part)
            else:
                bars = _read_bars(conn, _BARS_SINCE, (part, [saved[e][0] for e in part]))
            written += _compute_and_store(conn, view, bars, part, state_part, counts, replace=False, load_id=load_id)
    in_memory = [e for e in full_fresh if memory is not None and old_last.get(e) is None and e not in changed_past]
    read_back = sorted(set(full_fresh) - set(in_memory))
    for lo in range(0, len(in_memory), FEATURE_BATCH_ENTITIES * 8):
        part = in_memory[lo : lo + FEATURE_BATCH_ENTITIES * 8]
        written += _compute_and_store(conn, view, memory.rows(part), part, None, None, replace=False, load_id=load_id)  # type: ignore[union-attr]
    for group, replace in ((read_back, False), (full_replace, True)):
        for lo in range(0, len(group), FEATURE_BATCH_ENTITIES):
            part = group[lo : lo + FEATURE_BATCH_ENTITIES]
            bars = _read_bars(conn, _BARS_FULL, (part,))
            written += _compute_and_store(conn, view, bars, part, None, None, replace=replace, load_id=load_id)
    return written, len(full_fresh) + len(full_replace)


def _read_bars(conn: psycopg.Connection[Any], query: sql.Composable, params: tuple[Any, ...]) -> list[np.ndarray]:
    eid, ts, open_, high, low, close, volume = copy_out(conn, query, params, BAR_TYPES)
    return [eid, ts, open_, high, low, close, volume]


def _compute_and_store(
    conn: psycopg.Connection[Any],
    view: FeatureView,
    bars: list[np.ndarray],
    entities: list[int],
    state: np.ndarray | None,
    prior_counts: dict[int, int] | None,
    *,
    replace: bool,
    load_id: int,
) -> int:
    eid, ts, open_, high, low, close, volume = bars
    uniq, offsets = _segments(eid)
    if state is not None:
        # state rows follow `entities`; the read holds only entities that have new bars
        row_of = {e: k for k, e in enumerate(entities)}
        state = state[[row_of[int(e)] for e in uniq.tolist()]]
    cols: dict[str, np.ndarray] = {}
    new_states: list[np.ndarray] = []
    inputs_all = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    col0 = 0
    for spec in view.indicators:
        inputs = {k: inputs_all[k] for k in spec.inputs}
        if state is None:
            outs, st = compute_batch(spec, inputs, offsets)
        else:
            prev = state[:, col0 : col0 + spec.state_len]
            outs, st = update_batch(spec, prev, inputs, offsets)
        col0 += spec.state_len
        cols.update(outs)
        new_states.append(st)
    table = ident(view.table_name)
    names = ["entity_id", "load_id", "ts", *view.indicator_columns]
    arrays = [eid, np.full(eid.size, load_id, dtype=np.int32), ts, *(cols[c] for c in view.indicator_columns)]
    types = ["int4", "int4", "timestamptz", *(["float8"] * len(view.indicator_columns))]
    if replace and uniq.size:
        # Recompute: rows whose values change are rewritten in place (user columns, which live
        # only here, are kept) and their previous versions move to the history table; rows
        # that come out the same keep the load that first wrote them.
        stage = ident(f"_fs_fv_stage_{view.view_id}")
        conn.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DROP").format(stage, table)
        )
        copy_in(conn, stage, names, arrays, types)
        conn.execute(_replace_sql(view, table, stage, names))
        conn.execute(sql.SQL("TRUNCATE {}").format(stage))
    elif eid.size:
        copy_in(conn, table, names, arrays, types)
    # state after each entity's last bar
    if uniq.size:
        last_ts = ts[offsets[1:] - 1]
        n_new = np.diff(offsets)
        n_bars = n_new + (
            np.array([prior_counts.get(int(e), 0) for e in uniq.tolist()], dtype=np.int64)
            if prior_counts is not None
            else 0
        )
        blobs = pack_states(view, new_states)
        conn.execute(
            "INSERT INTO indicator_state (view_id, entity_id, last_ts, n_bars, state) "
            "SELECT %b, e, " + _us_sql("t") + ", n, s "
            "FROM unnest(%b::int4[], %b::int8[], %b::int8[], %b::bytea[]) AS u(e, t, n, s) "
            "ON CONFLICT (view_id, entity_id) DO UPDATE SET last_ts = excluded.last_ts, "
            "n_bars = excluded.n_bars, state = excluded.state",
            (view.view_id, uniq.tolist(), last_ts.tolist(), n_bars.tolist(), blobs),
        )
    return int(eid.size)


def history_returning(view: FeatureView) -> sql.Composed:
    """``RETURNING`` list of a view-table write whose superseded rows go to history: the old
    row (entity_id, load_id, ts, every feature column) and the new load id as ``superseded_by``."""
    feats = view.feature_columns
    return sql.SQL("RETURNING old.entity_id AS h_e, old.load_id AS h_l, old.ts AS h_ts, f.load_id AS h_by{}").format(
        sql.SQL("").join(sql.SQL(", old.{c} AS {a}").format(c=ident(c), a=ident(f"h_{i}")) for i, c in enumerate(feats))
    )


def history_insert(view: FeatureView) -> sql.Composed:
    """The INSERT into the view's history table from a CTE ``w`` returning :func:`history_returning`;
    rows written earlier by the same load (never visible to anyone) are not history."""
    feats = view.feature_columns
    return sql.SQL(
        "INSERT INTO {h} (entity_id, load_id, ts, superseded_by{cols}) SELECT h_e, h_l, h_ts, h_by{vals} FROM w "
        "WHERE h_e IS NOT NULL AND h_l <> h_by"
    ).format(
        h=ident(view.history_table),
        cols=sql.SQL("").join(sql.SQL(", {}").format(ident(c)) for c in feats),
        vals=sql.SQL("").join(sql.SQL(", {}").format(ident(f"h_{i}")) for i in range(len(feats))),
    )


def _replace_sql(view: FeatureView, table: sql.Composable, stage: sql.Composable, names: list[str]) -> sql.Composed:
    ind = view.indicator_columns
    return sql.SQL(
        "WITH w AS (INSERT INTO {t} AS f ({cols}) SELECT {cols} FROM {s} ON CONFLICT (entity_id, ts) DO UPDATE "
        "SET {sets}, load_id = excluded.load_id WHERE ({old}) IS DISTINCT FROM ({new}) {ret}) {ins}"
    ).format(
        t=table,
        s=stage,
        cols=sql.SQL(", ").join(ident(c) for c in names),
        sets=sql.SQL(", ").join(sql.SQL("{c} = excluded.{c}").format(c=ident(c)) for c in ind),
        old=sql.SQL(", ").join(sql.SQL("f.{}").format(ident(c)) for c in ind) if ind else sql.SQL("NULL"),
        new=sql.SQL(", ").join(sql.SQL("excluded.{}").format(ident(c)) for c in ind) if ind else sql.SQL("NULL"),
        ret=history_returning(view),
        ins=history_insert(view),
    )
