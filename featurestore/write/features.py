"""[write] A view's features: continue from saved state or recompute, then store rows and state."""

from __future__ import annotations

import contextvars
import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from featurestore import placement, segments
from featurestore.indicators import update_batch
from featurestore.schema import BAR_COLUMNS, ident
from featurestore.views import FeatureView
from featurestore.write.copy import _NO_TS, BAR_TYPES, _ts_us_sql, _us_sql, copy_in, copy_out
from featurestore.write.dtype import copy_type, narrow_outputs
from featurestore.write.state import pack_states, unpack_states

# Entities per feature batch: bounds the bars held in memory while computing features
# (2,500 daily bars x 256 entities = 640k rows, ~45 MB).
FEATURE_BATCH_ENTITIES = 256
# Bar rows per feature group (when the caller knows each entity's new rows): a batch of entities
# also stops before it would hold more than this (2M rows, ~100 MB of bars plus the outputs).
# An entity with more rows than this is computed alone: its bars are never split.
FEATURE_GROUP_ROWS = 2_000_000
# An entity's state is also saved after every CHECKPOINT_BARS-th bar (indicator_checkpoints), so a
# correction recomputes from the nearest checkpoint before it; one state row per this many bars.
CHECKPOINT_BARS = 256
# Where a write's feature computation runs: "local" (this process) or "ray" (split by entity over
# Ray tasks, write/on_ray.compute_features; the rows are still written here, in the write's own
# transaction). Set for one write by FeatureStore.ingest/load(backend=...).
COMPUTE_BACKEND: contextvars.ContextVar[str] = contextvars.ContextVar("featurestore_compute_backend", default="local")
# entities of a write below which Ray is not worth its round trips (computed here instead)
RAY_MIN_ENTITIES = 2


def _segments(entity_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique ids in order, offsets) of a column sorted by entity."""
    if entity_ids.size == 0:
        return np.empty(0, np.int32), np.zeros(1, np.int64)
    starts = np.flatnonzero(np.r_[True, entity_ids[1:] != entity_ids[:-1]])
    offsets = np.r_[starts, entity_ids.size].astype(np.int64)
    return entity_ids[starts], offsets


def _groups(sizes: Sequence[int], max_rows: int, max_entities: int) -> Iterator[tuple[int, int]]:
    """Index ranges [lo, hi) of consecutive entities, each with at most ``max_entities`` entities and
    at most ``max_rows`` rows by ``sizes`` (an entity larger than that forms a group alone)."""
    lo, rows = 0, 0
    for i, n in enumerate(sizes):
        if i > lo and (i - lo >= max_entities or rows + n > max_rows):
            yield lo, i
            lo, rows = i, 0
        rows += n
    if lo < len(sizes):
        yield lo, len(sizes)


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

    def counts(self, ids: Sequence[int]) -> np.ndarray:
        """Rows held for each of ``ids``."""
        wanted = np.asarray(ids, dtype=self.eid.dtype)
        return np.searchsorted(self.eid, wanted, side="right") - np.searchsorted(self.eid, wanted, side="left")

    def rows(self, ids: Sequence[int]) -> list[np.ndarray]:
        """The rows of ``ids`` (sorted): views of the held arrays when they are adjacent there, else copies."""
        wanted = np.asarray(ids, dtype=self.eid.dtype)
        lo = np.searchsorted(self.eid, wanted, side="left")
        hi = np.searchsorted(self.eid, wanted, side="right")
        lengths = hi - lo
        if wanted.size and int(lengths.sum()) == int(hi[-1] - lo[0]):  # one run: no copy
            return [a[lo[0] : hi[-1]] for a in (self.eid, self.ts, self.open, self.high, self.low, self.close, self.volume)]
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
    changed_from: dict[int, int] | None = None,
    *,
    new_rows: Mapping[int, int] | None = None,
    group_rows: int = FEATURE_GROUP_ROWS,
    progress: Callable[[int, int], None] | None = None,
    held: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Bring ``view``'s features for ``entity_ids`` up to date with ``bars``; return (rows, recomputed).

    Rows written carry ``load_id`` (0 for a backfill: known from the view's ``ready_at``); a
    recompute moves the rows whose values change to the view's history table, superseded by it.
    ``changed_from[e]`` (µs) is the earliest bar a correction or late bar changed: the entity
    is recomputed from its nearest checkpoint before that bar (from its first bar when there is
    none), and only rows from that bar on are compared and rewritten.

    ``old_last[e]`` is entity e's last bar before this write (None if it had none) and
    ``changed_past`` the entities whose bars changed at or before it. ``memory`` holds the
    load's appended rows: entities whose new bars are all there (appends, and entities that had
    no bars) are computed from it; the others read their bars back from the table.

    Entities are computed in groups: at most FEATURE_BATCH_ENTITIES (x8 for appends) and, by the
    rows each is expected to bring (``new_rows[e]``: the load's new bars of e, plus its stored bars
    when it is recomputed), at most ``group_rows`` rows; an entity larger than that is a group of
    its own. ``progress(done, more_total)`` is called with ``(0, rows planned)`` once, then with
    the rows of each group computed (and, at the end, a correction of the total if the plan was
    off), so ``done`` sums to the final total. ``held(rows)`` reports the rows each group holds
    besides ``memory`` (rows read back, or copied out of ``memory``; 0 for a slice of it).
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
    added = dict(new_rows or {})
    in_memory = [e for e in full_fresh if memory is not None and old_last.get(e) is None and e not in changed_past]
    read_back = sorted(set(full_fresh) - set(in_memory))
    full_replace.sort()
    resumed, cp_ts, cp_counts, cp_states = _checkpoints_before(conn, view, full_replace, changed_from or {})
    _drop_checkpoints_after(conn, view, full_replace, resumed, cp_ts)
    from_start = [e for e in full_replace if e not in set(resumed)]
    # the rows each entity is expected to bring, for grouping and the progress total
    inc_sizes = memory.counts(incremental).tolist() if memory is not None else [added.get(e, 0) for e in incremental]
    mem_sizes = memory.counts(in_memory).tolist() if memory is not None else []
    res_sizes = [max(saved[e][1] - c, 0) + added.get(e, 0) for e, c in zip(resumed, cp_counts)]
    back_sizes = [added.get(e, 0) for e in read_back]
    start_sizes = [saved[e][1] + added.get(e, 0) for e in from_start]
    planned = sum(inc_sizes) + sum(mem_sizes) + sum(res_sizes) + sum(back_sizes) + sum(start_sizes)
    if progress is not None:
        progress(0, planned)
    # history segments (featurestore.segments): a recompute rewrites rows, so the segments it
    # reaches come back into rows first; a first computation reads them and stores its own
    # rows of that history as segments too (every table keeps one boundary per entity)
    fresh_bounds = _expand_for_recompute(conn, resumed, cp_ts, from_start, read_back)

    def step(bars: list[np.ndarray], extra: int, part: list[int], state: np.ndarray | None,
             counts: dict[int, int] | None, replace: bool) -> int:
        if held is not None:
            held(extra)
        n = _compute_and_store(conn, view, bars, part, state, counts, replace=replace, load_id=load_id,
                               keep_from=changed_from if replace else None)
        if progress is not None:
            progress(n, 0)
        return n

    def from_memory(part: list[int]) -> tuple[list[np.ndarray], int]:
        assert memory is not None
        bars = memory.rows(part)
        return bars, (0 if np.may_share_memory(bars[0], memory.eid) else int(bars[0].size))

    for lo, hi in _groups(inc_sizes, group_rows, FEATURE_BATCH_ENTITIES * 8):
        part = incremental[lo:hi]
        counts = {e: saved[e][1] for e in part}
        if memory is not None:
            bars, extra = from_memory(part)
        else:
            bars = _read_bars(conn, _BARS_SINCE, (part, [saved[e][0] for e in part]))
            extra = int(bars[0].size)
        written += step(bars, extra, part, matrix[lo:hi], counts, False)
    for lo, hi in _groups(mem_sizes, group_rows, FEATURE_BATCH_ENTITIES * 8):
        bars, extra = from_memory(in_memory[lo:hi])
        written += step(bars, extra, in_memory[lo:hi], None, None, False)
    for lo, hi in _groups(res_sizes, group_rows, FEATURE_BATCH_ENTITIES):
        part = resumed[lo:hi]
        bars = _read_bars(conn, _BARS_SINCE, (part, cp_ts[lo:hi]))
        written += step(bars, int(bars[0].size), part, cp_states[lo:hi], dict(zip(part, cp_counts[lo:hi])), True)
    for group, sizes, replace in ((read_back, back_sizes, False), (from_start, start_sizes, True)):
        for lo, hi in _groups(sizes, group_rows, FEATURE_BATCH_ENTITIES):
            part = group[lo:hi]
            bars = _read_bars(conn, _BARS_FULL, (part,))
            seg_part = [e for e in part if e in fresh_bounds]
            if seg_part:
                bars = _with_segments(conn, seg_part, bars)
            written += step(bars, int(bars[0].size), part, None, None, replace)
            if seg_part:
                segments.compress(conn, segments.view_layout(view.table_name, view.feature_columns,
                                                             float32=view.dtype == "float32"),
                                  {e: fresh_bounds[e] + _ONE_US for e in seg_part})
    if progress is not None and written != planned:
        progress(0, written - planned)  # the plan was an estimate (recomputes): the total is what was done
    return written, len(full_fresh) + len(full_replace)


_ONE_US = dt.timedelta(microseconds=1)


def _expand_for_recompute(
    conn: psycopg.Connection[Any], resumed: list[int], cp_ts: list[int], from_start: list[int], read_back: list[int]
) -> dict[int, dt.datetime]:
    """Expand the segments that recomputes will rewrite (from each resumed entity's checkpoint,
    all of an entity recomputed from its first bar); return the segment boundary of each
    ``read_back`` entity that keeps segments (its first computation reads them)."""
    ask = [*resumed, *from_start, *read_back]
    if not ask:
        return {}
    bounds = segments.boundaries(conn, ask)
    if not bounds:
        return {}
    since: dict[int, int | None] = {e: t for e, t in zip(resumed, cp_ts) if e in bounds}
    since.update({e: None for e in from_start if e in bounds})
    if since:
        segments.expand_from(conn, segments.store_layouts(conn), since)
        bounds = segments.boundaries(conn, read_back) if read_back else {}
    return {e: bounds[e] for e in read_back if e in bounds}


def _with_segments(conn: psycopg.Connection[Any], entity_ids: list[int], bars: list[np.ndarray]) -> list[np.ndarray]:
    """``bars`` (rows of whole entities, by entity then ts) with those entities' segment-held
    bars before their rows."""
    d = segments.fetch_segments(conn, segments.bars_layout(), entity_ids)
    if not len(d):
        return bars
    held = [d.entity_id, d.ts, *(d.values[c] for c in BAR_COLUMNS)]
    cols = [np.concatenate([h.astype(b.dtype, copy=False), b]) for h, b in zip(held, bars)]
    order = np.argsort(cols[0], kind="stable")  # per entity: segments (older) first, then rows
    return [c[order] for c in cols]


_CHECKPOINT_BEFORE = (
    "SELECT u.e, " + _ts_us_sql("c.ts") + ", c.n_bars, c.state "
    "FROM unnest(%s::int4[], %s::int8[]) AS u(e, f) CROSS JOIN LATERAL ("
    "SELECT ts, n_bars, state FROM indicator_checkpoints WHERE view_id = %s AND entity_id = u.e "
    "AND ts < " + _us_sql("u.f") + " ORDER BY ts DESC LIMIT 1) c ORDER BY u.e"
)
# the same with the probe restricted to the statement's ids (one shard group's: a router query)
_CHECKPOINT_BEFORE_ROUTED = _CHECKPOINT_BEFORE.replace(
    "AND entity_id = u.e ", "AND entity_id = u.e AND entity_id = ANY(%s::int4[]) "
)
_YEAR_1 = dt.datetime(1, 1, 1, tzinfo=dt.UTC)  # before any bar: "every checkpoint of the entity"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _checkpoints_before(
    conn: psycopg.Connection[Any], view: FeatureView, entities: list[int], changed_from: dict[int, int]
) -> tuple[list[int], list[int], list[int], np.ndarray]:
    """(entities that resume, checkpoint ts µs, bar counts, states) for the entities of
    ``entities`` with a valid checkpoint before their earliest change."""
    ask = [e for e in entities if e in changed_from]
    if not ask:
        return [], [], [], np.empty((0, 0))
    since = [changed_from[e] for e in ask]
    if placement.distributed(conn):  # Citus: once per shard group, each routed to one worker
        rows = []
        for g in placement.shard_groups(conn, ask):
            ids = [ask[i] for i in g]
            rows += conn.execute(
                _CHECKPOINT_BEFORE_ROUTED, (ids, [since[i] for i in g], view.view_id, ids), binary=True
            ).fetchall()
        rows.sort(key=lambda r: r[0])
    else:
        rows = conn.execute(_CHECKPOINT_BEFORE, (ask, since, view.view_id), binary=True).fetchall()
    if not rows:
        return [], [], [], np.empty((0, 0))
    ok, matrix = unpack_states(view, [r[3] for r in rows])  # another library version: from the start
    keep = np.flatnonzero(ok)
    return (
        [int(rows[i][0]) for i in keep],
        [int(rows[i][1]) for i in keep],
        [int(rows[i][2]) for i in keep],
        matrix[keep],
    )


def _drop_checkpoints_after(
    conn: psycopg.Connection[Any], view: FeatureView, entities: list[int], resumed: list[int], cp_ts: list[int]
) -> None:
    """Checkpoints after the one an entity resumes from (all of them for one recomputed from its
    first bar) are about to be recomputed: a late bar shifts every later bar's count."""
    if not entities:
        return
    after = {e: _EPOCH + dt.timedelta(microseconds=int(t)) for e, t in zip(resumed, cp_ts)}
    # timestamps compared as they are: Citus runs no non-immutable function of a column in a DELETE
    conn.execute(
        "DELETE FROM indicator_checkpoints c USING unnest(%s::int4[], %s::timestamptz[]) AS u(e, a) "
        "WHERE c.view_id = %s AND c.entity_id = u.e AND c.ts > u.a",
        (entities, [after.get(e, _YEAR_1) for e in entities], view.view_id),
    )


def _read_bars(conn: psycopg.Connection[Any], query: sql.Composable, params: tuple[Any, ...]) -> list[np.ndarray]:
    eid, ts, open_, high, low, close, volume = copy_out(conn, query, params, BAR_TYPES)
    return [eid, ts, open_, high, low, close, volume]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Positions starts[k] .. starts[k] + lengths[k] - 1 of every k, concatenated (no Python loop)."""
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    shift = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    return shift + np.arange(total, dtype=np.int64)


# checkpoints _compute marks: (entity positions, bar positions, bar counts, state rows per indicator)
Marks = list[tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]]
# what _compute returns: outputs by column, final state per indicator, checkpoint marks
Computed = tuple[dict[str, np.ndarray], list[np.ndarray], Marks]


def compute(
    view: FeatureView,
    inputs_all: dict[str, np.ndarray],
    offsets: np.ndarray,
    state: np.ndarray | None,
    n0: np.ndarray,
) -> Computed:
    """:func:`_compute` here, or on Ray (:data:`COMPUTE_BACKEND`) when the write has entities
    enough and ``view`` only built-in indicators (a user kernel is registered in this process
    only)."""
    if (
        COMPUTE_BACKEND.get() == "ray"
        and offsets.size - 1 >= RAY_MIN_ENTITIES
        and not any(spec.definition.code_hash for spec in view.indicators)
    ):
        from featurestore.write import on_ray

        return on_ray.compute_features(view, inputs_all, offsets, state, n0)
    return _compute(view, inputs_all, offsets, state, n0)


def _compute(
    view: FeatureView,
    inputs_all: dict[str, np.ndarray],
    offsets: np.ndarray,
    state: np.ndarray | None,
    n0: np.ndarray,
) -> Computed:
    """Every indicator of ``view`` over the segments, continuing ``state`` (None: from scratch).

    Returns (outputs, final state per indicator, checkpoints). A checkpoint is the state after
    an entity's bar number (``n0`` + position) that is a multiple of CHECKPOINT_BARS: the
    computation is split there (in rounds over all entities at once; the kernels continue from
    state bit for bit), so a later correction can recompute from the nearest checkpoint before
    it instead of from the first bar. Checkpoints are (entity positions, bar positions, counts,
    state rows per indicator).
    """
    specs = view.indicators
    lengths = np.diff(offsets)
    n = int(offsets[-1])
    widths = [s.state_len for s in specs]
    if state is None:
        states = [np.zeros((lengths.size, w)) for w in widths]
    else:
        bounds = np.r_[0, np.cumsum(widths)]
        states = [np.ascontiguousarray(state[:, bounds[i] : bounds[i + 1]]) for i in range(len(specs))]
    outs = {c: np.empty(n) for c in view.indicator_columns}
    done = np.zeros(lengths.size, dtype=np.int64)
    marks: Marks = []
    first = True
    while first or bool((done < lengths).any()):
        first = False
        to_mark = CHECKPOINT_BARS - (n0 + done) % CHECKPOINT_BARS
        take = np.minimum(lengths - done, to_mark)
        whole = bool((take == lengths).all())
        idx = None if whole else _ranges(offsets[:-1] + done, take)
        sub_offsets = offsets if whole else np.r_[0, np.cumsum(take)].astype(np.int64)
        for i, spec in enumerate(specs):
            ins = {k: (inputs_all[k] if idx is None else inputs_all[k][idx]) for k in spec.inputs}
            got, states[i] = update_batch(spec, states[i], ins, sub_offsets)
            for c, v in got.items():
                if idx is None:
                    outs[c] = v
                else:
                    outs[c][idx] = v
        done += take
        hit = np.flatnonzero((take > 0) & ((n0 + done) % CHECKPOINT_BARS == 0))
        if hit.size:
            marks.append((hit, offsets[:-1][hit] + done[hit] - 1, n0[hit] + done[hit], [s[hit] for s in states]))
    return outs, states, marks


def _store_checkpoints(
    conn: psycopg.Connection[Any],
    view: FeatureView,
    uniq: np.ndarray,
    ts: np.ndarray,
    marks: Marks,
) -> None:
    """Save the checkpoints ``_compute`` marked (replacing any at the same bar)."""
    if not marks:
        return
    ents = np.concatenate([uniq[h] for h, _, _, _ in marks])
    when = np.concatenate([ts[pos] for _, pos, _, _ in marks])
    counts = np.concatenate([cnt for _, _, cnt, _ in marks])
    blobs = [b for _, _, _, rows in marks for b in pack_states(view, rows)]
    conn.execute(
        "INSERT INTO indicator_checkpoints (view_id, entity_id, ts, n_bars, state) "
        "SELECT %b, e, " + _us_sql("t") + ", n, s "
        "FROM unnest(%b::int4[], %b::int8[], %b::int8[], %b::bytea[]) AS u(e, t, n, s) "
        "ON CONFLICT (view_id, entity_id, ts) DO UPDATE SET n_bars = excluded.n_bars, state = excluded.state",
        (view.view_id, ents.tolist(), when.tolist(), counts.tolist(), blobs),
    )


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
    keep_from: dict[int, int] | None = None,
) -> int:
    """Compute ``view`` over ``bars`` (continuing ``state``, one row per entity of ``entities``,
    after ``prior_counts`` bars) and store rows, checkpoints and the final state.

    ``replace``: rows may exist (a recompute); only rows whose values change are rewritten, and
    with ``keep_from`` (entity -> µs) rows before that time are known unchanged and not even
    compared.
    """
    eid, ts, open_, high, low, close, volume = bars
    uniq, offsets = _segments(eid)
    if state is not None:
        # state rows follow `entities`; the read holds only entities that have new bars
        row_of = {e: k for k, e in enumerate(entities)}
        state = state[[row_of[int(e)] for e in uniq.tolist()]]
    n0 = (
        np.array([prior_counts.get(int(e), 0) for e in uniq.tolist()], dtype=np.int64)
        if prior_counts is not None
        else np.zeros(uniq.size, dtype=np.int64)
    )
    inputs_all = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    cols, new_states, marks = compute(view, inputs_all, offsets, state, n0)
    cols = narrow_outputs(conn, view, cols, eid, ts)  # float32 views: rounded, range-checked
    table = ident(view.table_name)
    names = ["entity_id", "load_id", "ts", *view.indicator_columns]
    arrays = [eid, np.full(eid.size, load_id, dtype=np.int32), ts, *(cols[c] for c in view.indicator_columns)]
    types = ["int4", "int4", "timestamptz", *([copy_type(view)] * len(view.indicator_columns))]
    if replace and uniq.size:
        # Recompute: rows whose values change are rewritten in place (user columns, which live
        # only here, are kept) and their previous versions move to the history table; rows
        # that come out the same keep the load that first wrote them.
        if keep_from:
            lo = np.array([keep_from.get(int(e), _NO_TS) for e in uniq.tolist()], dtype=np.int64)
            sel = ts >= np.repeat(lo, np.diff(offsets))
            arrays = [a[sel] for a in arrays]
        stage = ident(f"_fs_fv_stage_{view.view_id}")
        conn.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DROP").format(stage, table)
        )
        copy_in(conn, stage, names, arrays, types)
        conn.execute(_replace_sql(view, table, stage, names))
        conn.execute(sql.SQL("TRUNCATE {}").format(stage))
    elif eid.size:
        copy_in(conn, table, names, arrays, types)
    if uniq.size:
        _store_checkpoints(conn, view, uniq, ts, marks)
        # state after each entity's last bar
        last_ts = ts[offsets[1:] - 1]
        n_bars = np.diff(offsets) + n0
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
