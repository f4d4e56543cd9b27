"""[write] One transaction per load: bars, features, indicator state, load log, write generation.

How rows reach ``bars`` depends on what they do, because a blanket upsert costs several times a
COPY (benchmarks/load.py measures the write paths side by side):

- rows after an entity's last stored bar go straight in by binary COPY;
- rows at or before it go through a temporary staging table and an ``INSERT ... ON CONFLICT``
  that updates only rows whose values differ, so an identical reload changes nothing;
- a small load (a live append of a few bars) skips both and runs one prepared
  ``INSERT ... SELECT FROM unnest(...) ON CONFLICT`` statement.

Features follow for every registered view version. An entity whose new bars all come after its
saved indicator state continues from that state; an entity with late or corrected bars, or with
no state, is recomputed from its first bar. Either way the stored features equal TA-Lib over the
entity's full stored history, bit for bit. Invariant: a view table holds rows for an entity iff
``indicator_state`` holds that entity's state for the view (both are written together).

Concurrent writers lock the entity rows they touch (``FOR UPDATE``, in entity-id order), so loads
of overlapping symbols serialize per entity and disjoint ones run in parallel.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil
import psycopg
from psycopg import sql

from featurestore.encode import HEADER, TRAILER, decode_binary_copy, encode_rows_buffer
from featurestore.errors import ConfigError, ValidationError
from featurestore.indicators import compute_batch, update_batch
from featurestore.load import BarChunk
from featurestore.schema import BAR_COLUMNS, ident
from featurestore.views import FeatureView

__all__ = ["LoadResult", "LoadWriter", "write_features", "NOTIFY_CHANNEL", "ON_CONFLICT"]

ON_CONFLICT = ("update", "ignore", "error")
NOTIFY_CHANNEL = "featurestore"

# Below this many rows a load is one prepared unnest INSERT instead of COPY + staging:
# benchmarks/load.py ("small writes") measured the prepared path tying COPY at 10-50 rows and
# 1.2-1.5x slower from 100 rows up (it writes WAL per row; COPY batches per page).
SMALL_WRITE_ROWS = 50
# Appended rows kept in memory for the features step (entity, ts and the five OHLCV columns, which
# kernels may take as inputs: 52 bytes a row), so features need not read them back
# (benchmarks/load.py measures the read-back). Past this the load falls back to reading bars back,
# keeping memory bounded (about 0.6 GB).
MEMORY_ROWS_MAX = 12_000_000
# Rows per COPY message while streaming: binary COPY built with numpy runs fastest in chunks of a
# few hundred thousand rows (large enough to amortise each call, small enough to stay in cache).
COPY_ROWS = 250_000
# Entities per feature batch: bounds the bars held in memory while computing features
# (2,500 daily bars x 256 entities = 640k rows, ~45 MB).
FEATURE_BATCH_ENTITIES = 256
# pg_notify payloads are limited to 8000 bytes; past this, notify "everything changed"
NOTIFY_MAX_BYTES = 7900

BAR_TYPES = ("int4", "timestamptz", "float8", "float8", "float8", "float8", "float8")
_NO_TS = np.iinfo(np.int64).min
_STATE_MAGIC = b"FS"
_STATE_HEADER = struct.Struct("<2sHI")  # magic, layout version, crc32 of the view's spec


#: The phases of a load, in order, as reported in ``LoadResult.phases`` (seconds each).
PHASES = ("validate", "write", "features", "commit", "analyze")


@dataclass
class LoadResult:
    """What one committed load did.

    ``elapsed_s`` is what the caller waited for: from entering ``ingest()``/``load()`` to its
    return, validation, sorting, retries and the post-load ANALYZE included. ``phases`` splits
    it (:data:`PHASES`): ``validate`` (reading, validating and sorting the input), ``write``
    (bars, staging, upserts, load log), ``features`` (indicators and their state), ``commit``
    and ``analyze``; their sum is at most ``elapsed_s`` (the rest is bookkeeping and retries).
    """

    source: str
    rows_in: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    symbols: int = 0
    symbols_created: int = 0
    features_written: int = 0
    entities_recomputed: int = 0
    elapsed_s: float = 0.0
    phases: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    peak_rss_bytes: int = 0
    load_id: int | None = None
    generation: int | None = None
    changed_entities: tuple[int, ...] = field(default=(), repr=False)
    changed_symbols: tuple[str, ...] = field(default=(), repr=False)

    @property
    def rows_per_s(self) -> float:
        """Input rows per second of the caller's wall time (``elapsed_s``)."""
        return self.rows_in / self.elapsed_s if self.elapsed_s > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        """The figures as plain values (``phases`` as its own dict), for printing and JSON."""
        d = {k: v for k, v in self.__dict__.items() if k not in ("changed_entities", "changed_symbols")}
        d["phases"] = dict(self.phases)
        d["rows_per_s"] = round(self.rows_per_s, 1)
        return d


def _us_sql(param: str) -> str:
    """SQL turning an int8 of microseconds since the Unix epoch into a timestamptz, exactly."""
    return f"('epoch'::timestamptz + {param} * interval '1 microsecond')"


def _ts_us_sql(col: str) -> str:
    return f"(extract(epoch from {col}) * 1000000)::int8"


def copy_in(
    conn: psycopg.Connection[Any],
    table: sql.Composable,
    columns: Sequence[str],
    arrays: Sequence[np.ndarray],
    types: Sequence[str],
    nulls: Sequence[np.ndarray | None] | None = None,
) -> None:
    """Stream numpy columns into ``table`` with binary COPY, encoding COPY_ROWS rows at a time."""
    n = len(arrays[0])
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        table, sql.SQL(", ").join(ident(c) for c in columns)
    )
    with conn.cursor() as cur, cur.copy(stmt) as cp:
        cp.write(HEADER)
        for lo in range(0, n, COPY_ROWS):
            hi = min(n, lo + COPY_ROWS)
            part_nulls = None if nulls is None else [None if m is None else m[lo:hi] for m in nulls]
            cp.write(encode_rows_buffer([a[lo:hi] for a in arrays], types, part_nulls))
        cp.write(TRAILER)


def copy_out(
    conn: psycopg.Connection[Any], query: sql.Composable, params: Sequence[Any] | None, types: Sequence[str]
) -> list[np.ndarray]:
    """Run ``query`` as ``COPY (...) TO STDOUT (FORMAT BINARY)`` and decode it into numpy columns."""
    stmt = sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query)
    buf = bytearray()
    # read() into one bytearray: 2x faster than joining the per-row blocks psycopg yields
    with conn.cursor() as cur, cur.copy(stmt, params) as cp:
        while chunk := cp.read():
            buf += chunk
    return decode_binary_copy(buf, types)


# -- indicator state packing ----------------------------------------------------------------


def _view_crc(view: FeatureView) -> int:
    from featurestore.indicators import STATE_VERSION

    text = json.dumps([s.to_dict() for s in view.indicators], sort_keys=True) + f"|{STATE_VERSION}"
    return zlib.crc32(text.encode())


def pack_states(view: FeatureView, states: Sequence[np.ndarray]) -> list[bytes]:
    """One bytes value per entity: a header, then every indicator's state row, in spec order."""
    from featurestore.indicators import STATE_VERSION

    matrix = np.ascontiguousarray(np.hstack(states) if states else np.empty((0, 0)), dtype="<f8")
    head = _STATE_HEADER.pack(_STATE_MAGIC, STATE_VERSION, _view_crc(view))
    return [head + row.tobytes() for row in matrix]


def unpack_states(view: FeatureView, blobs: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(ok, matrix): which blobs are valid for this view and library, and their state rows."""
    from featurestore.indicators import STATE_VERSION

    width = view.state_len
    head = _STATE_HEADER.pack(_STATE_MAGIC, STATE_VERSION, _view_crc(view))
    size = len(head) + 8 * width
    ok = np.array([len(b) == size and bytes(b[: len(head)]) == head for b in blobs], dtype=bool)
    matrix = np.zeros((len(blobs), width), dtype=np.float64)
    if ok.any():
        good = b"".join(bytes(b[len(head) :]) for b, k in zip(blobs, ok) if k)
        matrix[ok] = np.frombuffer(good, dtype="<f8").reshape(-1, width)
    return ok, matrix


# -- features -------------------------------------------------------------------------------


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
) -> tuple[int, int]:
    """Bring ``view``'s features for ``entity_ids`` up to date with ``bars``; return (rows, recomputed).

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
            written += _compute_and_store(conn, view, bars, part, state_part, counts, replace=False)
    in_memory = [e for e in full_fresh if memory is not None and old_last.get(e) is None and e not in changed_past]
    read_back = sorted(set(full_fresh) - set(in_memory))
    for lo in range(0, len(in_memory), FEATURE_BATCH_ENTITIES * 8):
        part = in_memory[lo : lo + FEATURE_BATCH_ENTITIES * 8]
        written += _compute_and_store(conn, view, memory.rows(part), part, None, None, replace=False)  # type: ignore[union-attr]
    for group, replace in ((read_back, False), (full_replace, True)):
        for lo in range(0, len(group), FEATURE_BATCH_ENTITIES):
            part = group[lo : lo + FEATURE_BATCH_ENTITIES]
            bars = _read_bars(conn, _BARS_FULL, (part,))
            written += _compute_and_store(conn, view, bars, part, None, None, replace=replace)
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
    names = ["entity_id", "ts", *view.indicator_columns]
    arrays = [eid, ts, *(cols[c] for c in view.indicator_columns)]
    types = ["int4", "timestamptz", *(["float8"] * len(view.indicator_columns))]
    if replace and uniq.size and view.columns:
        # user columns live only in the view table: rewrite the indicator columns in place
        stage = ident(f"_fs_fv_stage_{view.view_id}")
        conn.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DROP").format(stage, table)
        )
        copy_in(conn, stage, names, arrays, types)
        conn.execute(
            sql.SQL(
                "INSERT INTO {t} ({cols}) SELECT {cols} FROM {s} ON CONFLICT (entity_id, ts) DO UPDATE SET {sets}"
            ).format(
                t=table,
                s=stage,
                cols=sql.SQL(", ").join(ident(c) for c in names),
                sets=sql.SQL(", ").join(sql.SQL("{c} = excluded.{c}").format(c=ident(c)) for c in view.indicator_columns),
            )
        )
        conn.execute(sql.SQL("TRUNCATE {}").format(stage))
    elif eid.size:
        if replace:
            conn.execute(sql.SQL("DELETE FROM {} WHERE entity_id = ANY(%s)").format(table), (uniq.tolist(),))
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


# -- the load --------------------------------------------------------------------------------

_UPSERT_TAIL = {
    "update": (
        " ON CONFLICT (entity_id, ts) DO UPDATE SET open = excluded.open, high = excluded.high, "
        "low = excluded.low, close = excluded.close, volume = excluded.volume "
        "WHERE (b.open, b.high, b.low, b.close, b.volume) IS DISTINCT FROM "
        "(excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume)"
    ),
    "ignore": " ON CONFLICT (entity_id, ts) DO NOTHING",
    "error": " ON CONFLICT (entity_id, ts) DO NOTHING",
}

_UNNEST_ROWS = (
    "SELECT e, " + _us_sql("t") + " AS ts, o, h, l, c, v "
    "FROM unnest(%s::int4[], %s::int8[], %s::float8[], %s::float8[], %s::float8[], %s::float8[], "
    "%s::float8[]) AS u(e, t, o, h, l, c, v)"
)


def _upsert_sql(source: str, mode: str) -> str:
    return (
        "WITH w AS (INSERT INTO bars AS b (entity_id, ts, open, high, low, close, volume) "
        + source
        + _UPSERT_TAIL[mode]
        + " RETURNING b.entity_id, (xmax = 0) AS ins) "
        "SELECT entity_id, count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins) "
        "FROM w GROUP BY entity_id"
    )


def _conflict_sql(source: str) -> str:
    return (
        "SELECT s.e, " + _ts_us_sql("s.ts") + " FROM (" + source + ") s JOIN bars b "
        "ON b.entity_id = s.e AND b.ts = s.ts "
        "WHERE (b.open, b.high, b.low, b.close, b.volume) IS DISTINCT FROM (s.o, s.h, s.l, s.c, s.v) "
        "ORDER BY 1, 2 LIMIT 1"
    )


class LoadWriter:
    """Writes one load inside the caller's transaction: ``write_chunk`` per chunk, then ``finish``."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        *,
        source: str,
        on_conflict: str = "update",
        create_symbols: bool = True,
        views: Sequence[FeatureView] = (),
        small: bool = False,
    ) -> None:
        if on_conflict not in ON_CONFLICT:
            raise ConfigError(f"on_conflict must be one of {ON_CONFLICT}, got {on_conflict!r}")
        self.conn = conn
        self.on_conflict = on_conflict
        self.create_symbols = create_symbols
        self.views = list(views)
        self.small = small
        self.result = LoadResult(source=source)
        self.started = time.perf_counter()
        self.phases = self.result.phases  # write_chunk/finish add their "write" and "features" time
        self._features_s = 0.0
        self.started_at = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        self.ids: dict[str, int] = {}
        self.symbol_of: dict[int, str] = {}
        self.old_last: dict[int, int | None] = {}
        self.appended: dict[int, int] = {}  # entity -> rows appended after its old last bar
        self.changed_past: set[int] = set()
        self.extra_cols: list[str] = []
        self.staged = False
        self.extra_staged = False
        self._mem: list[list[np.ndarray]] | None = []
        self._mem_rows = 0
        self.checksum = hashlib.sha256()
        self._proc = psutil.Process()
        self._peak = self._proc.memory_info().rss

    def _sample_memory(self) -> None:
        self._peak = max(self._peak, self._proc.memory_info().rss)

    # -- entities -----------------------------------------------------------------------

    def _resolve(self, symbols: np.ndarray, chunk: BarChunk) -> None:
        new = sorted(s for s in symbols.tolist() if s not in self.ids)
        if not new:
            return
        known = {r[0] for r in self.conn.execute("SELECT symbol FROM entities WHERE symbol = ANY(%s)", (new,)).fetchall()}
        if self.create_symbols and len(known) < len(new):
            # sorted inserts: concurrent loads creating the same symbols queue in one order
            cur = self.conn.execute(
                "INSERT INTO entities (symbol) SELECT s FROM unnest(%s::text[]) AS u(s) ORDER BY s "
                "ON CONFLICT (symbol) DO NOTHING",
                ([x for x in new if x not in known],),
            )
            self.result.symbols_created += max(cur.rowcount, 0)
        rows = self.conn.execute(
            "SELECT entity_id, symbol FROM entities WHERE symbol = ANY(%s) ORDER BY entity_id FOR UPDATE",
            (new,),
        ).fetchall()
        found = {s: e for e, s in rows}
        missing = [s for s in new if s not in found]
        if missing:
            first = int(np.flatnonzero(chunk.symbol == missing[0])[0])
            from featurestore.load import LoadInputError

            raise LoadInputError(  # names the row by the load's one rule (featurestore.load.row_label)
                f"unknown symbol {missing[0]!r} ({len(missing)} unknown in all); "
                "pass create_symbols=True to create them",
                source=chunk.source,
                row=int(chunk.rows[first]) if chunk.rows.size else first,
                column="symbol",
                in_file=chunk.in_file,
            )
        ids = [found[s] for s in new]
        last = self.conn.execute(
            "SELECT e.id, " + _ts_us_sql("b.ts") + " FROM unnest(%s::int4[]) AS e(id) "
            "LEFT JOIN LATERAL (SELECT ts FROM bars WHERE entity_id = e.id ORDER BY ts DESC LIMIT 1) b ON true",
            (ids,),
        ).fetchall()
        for s in new:
            self.ids[s] = found[s]
            self.symbol_of[found[s]] = s
        for e, t in last:
            self.old_last[e] = t

    # -- bars ---------------------------------------------------------------------------

    def write_chunk(self, chunk: BarChunk) -> None:
        """Write one validated chunk's bars (sorted by symbol, ts)."""
        n = len(chunk)
        if n == 0:
            return
        t0 = time.perf_counter()
        try:
            self._write_chunk(chunk, n)
        finally:
            self.phases["write"] += time.perf_counter() - t0

    def _write_chunk(self, chunk: BarChunk, n: int) -> None:
        self.result.rows_in += n
        codes, uniques = chunk.symbol_codes()
        self._resolve(uniques, chunk)
        uniq_ids = np.array([self.ids[s] for s in uniques.tolist()], dtype=np.int32)
        uniq_old = np.array(
            [_NO_TS if self.old_last.get(e) is None else self.old_last[e] for e in uniq_ids.tolist()],
            dtype=np.int64,
        )
        eid = uniq_ids[codes]
        is_append = chunk.ts > uniq_old[codes]
        cols = [eid, chunk.ts, chunk.open, chunk.high, chunk.low, chunk.close, chunk.volume]
        for c in cols[1:]:
            self.checksum.update(np.ascontiguousarray(c).view(np.uint8).data)
        n_app = np.bincount(codes[is_append], minlength=len(uniques))
        for e, k in zip(uniq_ids.tolist(), n_app.tolist()):
            if k:
                self.appended[e] = self.appended.get(e, 0) + k
        if chunk.extra:
            self._stage_extra(eid, chunk)
        if self._mem is not None:
            idx = np.flatnonzero(is_append)
            self._mem_rows += int(idx.size)
            if self._mem_rows > MEMORY_ROWS_MAX:
                self._mem = None
            else:
                self._mem.append([eid[idx], *(c[idx] for c in cols[1:])])
        try:
            if self.small:
                self._small_upsert(cols, is_append, uniq_ids, n_app)
            else:
                if is_append.any():
                    idx = np.flatnonzero(is_append)
                    copy_in(self.conn, ident("bars"), ["entity_id", "ts", *BAR_COLUMNS], [c[idx] for c in cols], BAR_TYPES)
                    self.result.inserted += int(idx.size)
                if not is_append.all():
                    idx = np.flatnonzero(~is_append)
                    if not self.staged:
                        self.conn.execute(
                            "CREATE TEMP TABLE _fs_stage (LIKE bars INCLUDING INDEXES) ON COMMIT DROP"
                        )
                        self.staged = True
                    copy_in(self.conn, ident("_fs_stage"), ["entity_id", "ts", *BAR_COLUMNS], [c[idx] for c in cols], BAR_TYPES)
        except psycopg.errors.UniqueViolation as exc:
            raise self._duplicate_error(exc, chunk) from None
        self._sample_memory()

    def _duplicate_error(self, exc: psycopg.errors.UniqueViolation, chunk: BarChunk) -> ValidationError:
        detail = (exc.diag.message_detail or "").strip()
        m = re.search(r"=\((\d+), (.+?)\)", detail)
        if m:
            sym = self.symbol_of.get(int(m.group(1)), m.group(1))
            what = f"symbol {sym!r} at {m.group(2)}"
        else:
            what = detail or "a (symbol, ts) pair"
        return ValidationError(
            f"duplicate (symbol, ts) within the load: {what} appears more than once",
            source=chunk.source,
            column="ts",
        )

    def _small_upsert(
        self, cols: list[np.ndarray], is_append: np.ndarray, uniq_ids: np.ndarray, n_app: np.ndarray
    ) -> None:
        params = [c.tolist() for c in cols]  # a few rows: the per-element conversion is cheap
        if self.on_conflict == "error":
            hit = self.conn.execute(_conflict_sql(_UNNEST_ROWS), params, prepare=True).fetchone()
            if hit is not None:
                self._raise_conflict(int(hit[0]), int(hit[1]))
        rows = self.conn.execute(_upsert_sql(_UNNEST_ROWS, self.on_conflict), params, prepare=True).fetchall()
        self._count(rows, dict(zip(uniq_ids.tolist(), n_app.tolist())))

    def _count(self, rows: Sequence[tuple[int, int, int]], appended_now: dict[int, int]) -> None:
        for e, ins, upd in rows:
            self.result.inserted += ins
            self.result.updated += upd
            if ins + upd > appended_now.get(e, 0):
                self.changed_past.add(e)

    def _raise_conflict(self, e: int, ts_us: int) -> None:
        import pandas as pd

        raise ValidationError(
            f"symbol {self.symbol_of.get(e, e)!r} already has a different bar at "
            f"{pd.Timestamp(ts_us, unit='us', tz='UTC').isoformat()}; "
            "use on_conflict='update' to correct it or 'ignore' to keep the stored one",
            source=self.result.source,
            column="ts",
        )

    def _stage_extra(self, eid: np.ndarray, chunk: BarChunk) -> None:
        names = sorted(chunk.extra)
        if not self.extra_staged:
            self.extra_cols = names
            defs = sql.SQL(", ").join(
                [sql.SQL("entity_id int4"), sql.SQL("ts timestamptz")]
                + [sql.SQL("{} float8").format(ident(c)) for c in names]
            )
            self.conn.execute(sql.SQL("CREATE TEMP TABLE _fs_extra ({}) ON COMMIT DROP").format(defs))
            self.extra_staged = True
        arrays = [eid, chunk.ts, *(chunk.extra[c] for c in self.extra_cols)]
        nulls = [None, None, *(np.isnan(chunk.extra[c]) for c in self.extra_cols)]
        copy_in(
            self.conn,
            ident("_fs_extra"),
            ["entity_id", "ts", *self.extra_cols],
            arrays,
            ["int4", "timestamptz", *(["float8"] * len(self.extra_cols))],
            nulls,
        )

    # -- finish ---------------------------------------------------------------------------

    def finish(self) -> LoadResult:
        """Upsert staged rows, write features and state, log the load, bump generations."""
        t_finish = time.perf_counter()
        self._features_s = 0.0
        try:
            return self._finish()
        finally:
            self.phases["features"] += self._features_s
            self.phases["write"] += time.perf_counter() - t_finish - self._features_s

    def _finish(self) -> LoadResult:
        res = self.result
        if self.staged:
            src = "SELECT entity_id AS e, ts, open AS o, high AS h, low AS l, close AS c, volume AS v FROM _fs_stage"
            if self.on_conflict == "error":
                hit = self.conn.execute(_conflict_sql(src)).fetchone()
                if hit is not None:
                    self._raise_conflict(int(hit[0]), int(hit[1]))
            # Only rows that are new or differ reach the upsert: an identical reload then reads
            # bars instead of locking and rewriting every row (benchmarks/load.py, scenario d).
            differs = "" if self.on_conflict != "update" else (
                " OR (b.open, b.high, b.low, b.close, b.volume) IS DISTINCT FROM (s.open, s.high, s.low, s.close, s.volume)"
            )
            rows = self.conn.execute(
                _upsert_sql(
                    "SELECT s.entity_id, s.ts, s.open, s.high, s.low, s.close, s.volume FROM _fs_stage s "
                    "LEFT JOIN bars b ON b.entity_id = s.entity_id AND b.ts = s.ts "
                    "WHERE b.entity_id IS NULL" + differs + " ORDER BY 1, 2",
                    self.on_conflict,
                )
            ).fetchall()
            self._count(rows, {})
        res.unchanged = res.rows_in - res.inserted - res.updated
        changed = sorted(set(self.appended) | self.changed_past)
        memory = None
        if self._mem and self.views and changed:
            memory = MemoryBars(*(np.concatenate(cols) for cols in zip(*self._mem)))
        self._mem = None
        t0 = time.perf_counter()
        for view in self.views:
            written, recomputed = write_features(self.conn, view, changed, self.old_last, self.changed_past, memory)
            res.features_written += written
            res.entities_recomputed += recomputed
            self._sample_memory()
        self._features_s = time.perf_counter() - t0
        user_changed = self._write_user_columns()
        touched = sorted(set(changed) | user_changed)
        res.symbols = len(self.ids)
        res.changed_entities = tuple(touched)
        if touched:
            res.generation, symbols = bump_generation(self.conn, touched)
            res.changed_symbols = tuple(symbols)
        row = self.conn.execute(
            "INSERT INTO loads (source, started_at, rows_in, rows_inserted, rows_updated, rows_unchanged, "
            "symbols, features_written, checksum) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING load_id",
            (
                res.source[:1000],
                self.started_at,
                res.rows_in,
                res.inserted,
                res.updated,
                res.unchanged,
                res.symbols,
                res.features_written,
                self.checksum.hexdigest(),
            ),
        ).fetchone()
        res.load_id = int(row[0]) if row else None
        self._sample_memory()
        res.peak_rss_bytes = self._peak
        res.elapsed_s = time.perf_counter() - self.started
        return res

    def _write_user_columns(self) -> set[int]:
        if not self.extra_staged:
            return set()
        changed: set[int] = set()
        for view in self.views:
            cols = [c for c in view.columns if c in self.extra_cols]
            if not cols:
                continue
            stmt = sql.SQL(
                "UPDATE {t} AS f SET {sets} FROM _fs_extra x "
                "WHERE f.entity_id = x.entity_id AND f.ts = x.ts AND ROW({fcols}) IS DISTINCT FROM ROW({xcols}) "
                "RETURNING f.entity_id"
            ).format(
                t=ident(view.table_name),
                sets=sql.SQL(", ").join(sql.SQL("{c} = x.{c}").format(c=ident(c)) for c in cols),
                xcols=sql.SQL(", ").join(sql.SQL("x.{}").format(ident(c)) for c in cols),
                fcols=sql.SQL(", ").join(sql.SQL("f.{}").format(ident(c)) for c in cols),
            )
            changed.update(r[0] for r in self.conn.execute(stmt).fetchall())
        return changed


def bump_generation(conn: psycopg.Connection[Any], entity_ids: Sequence[int] | None) -> tuple[int, list[str]]:
    """Bump the touched entities' and the store's write generation; NOTIFY listeners.

    Returns (store generation, symbols touched). ``entity_ids=None`` means "anything may have
    changed" (a view dropped): listeners drop everything. Runs last in the write transaction, so
    the one-row ``store_state`` lock is held only until commit; the notification is delivered
    at commit, never for a rolled-back write.
    """
    symbols: list[str] = []
    if entity_ids is not None:
        ids = sorted(set(int(e) for e in entity_ids))
        rows = conn.execute(
            "UPDATE entities SET generation = generation + 1 WHERE entity_id = ANY(%s) RETURNING symbol", (ids,)
        ).fetchall()
        symbols = sorted(r[0] for r in rows)
    row = conn.execute("UPDATE store_state SET generation = generation + 1 WHERE id = 1 RETURNING generation").fetchone()
    assert row is not None
    generation = int(row[0])
    payload = json.dumps({"g": generation, "s": symbols if entity_ids is not None else None})
    if len(payload) > NOTIFY_MAX_BYTES:
        payload = json.dumps({"g": generation, "s": None})
    conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, payload))
    return generation, symbols


# -- backfill ---------------------------------------------------------------------------------


def pending_backfill(conn: psycopg.Connection[Any], view: FeatureView, batch_entities: int) -> list[list[int]]:
    """Entities with bars but no state for ``view`` (not yet backfilled), in batches."""
    rows = conn.execute(
        "SELECT e.entity_id FROM entities e "
        "WHERE EXISTS (SELECT 1 FROM bars b WHERE b.entity_id = e.entity_id) "
        "AND NOT EXISTS (SELECT 1 FROM indicator_state s WHERE s.view_id = %s AND s.entity_id = e.entity_id) "
        "ORDER BY e.entity_id",
        (view.view_id,),
    ).fetchall()
    ids = [r[0] for r in rows]
    return [ids[i : i + batch_entities] for i in range(0, len(ids), batch_entities)]


def backfill_batch(conn: psycopg.Connection[Any], view: FeatureView, entity_ids: Sequence[int]) -> int:
    """Compute ``view`` for entities that have no state yet, in one transaction; return rows written.

    Each batch commits on its own, so an interrupted backfill resumes with the batches left.
    """
    with conn.transaction():
        locked = conn.execute(
            "SELECT e.entity_id FROM entities e WHERE e.entity_id = ANY(%s) "
            "AND NOT EXISTS (SELECT 1 FROM indicator_state s WHERE s.view_id = %s AND s.entity_id = e.entity_id) "
            "ORDER BY e.entity_id FOR UPDATE",
            (list(entity_ids), view.view_id),
        ).fetchall()
        ids = [r[0] for r in locked]
        if not ids:
            return 0
        written, _ = write_features(conn, view, ids, {}, set())
        bump_generation(conn, ids)
    return written


def backfill_worker(url: str, name: str, version: int, entity_ids: Sequence[int]) -> int:
    """joblib entry point: one batch on a connection of its own (worker processes have no pool)."""
    from featurestore.views import get_view

    with psycopg.connect(url, autocommit=True, application_name="featurestore") as conn:
        view = get_view(conn, name, version)
        return backfill_batch(conn, view, entity_ids)
