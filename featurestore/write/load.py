"""[write] One load inside the caller's transaction: bars, staged upserts, features, load log."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil
import psycopg
from psycopg import sql

from featurestore import placement, segments
from featurestore.errors import ConfigError, ValidationError
from featurestore.load import BarChunk
from featurestore.schema import BAR_COLUMNS, ident
from featurestore.views import FeatureView
from featurestore.write.copy import _NO_TS, BAR_TYPES, _ts_us_sql, _us_sql, copy_in
from featurestore.write.dtype import check_user_columns, user_value_sql
from featurestore.write.features import FEATURE_GROUP_ROWS, MemoryBars, history_insert, history_returning, write_features
from featurestore.write.generation import LOAD_LOG_SQL, bump_generation

ON_CONFLICT = ("update", "ignore", "error")

# Below this many rows a load is one prepared unnest INSERT instead of COPY + staging:
# benchmarks/load.py ("small writes") measured the prepared path tying COPY at 10-50 rows and
# 1.2-1.5x slower from 100 rows up (it writes WAL per row; COPY batches per page).
SMALL_WRITE_ROWS = 50
# The default bound on the bar rows a load holds in memory (``load_memory_rows``): appended rows are
# kept for the features step (entity, ts and the five OHLCV columns, which kernels may take as
# inputs: 52 bytes a row), so features need not read them back (benchmarks/load.py measures the
# read-back). A load that appends more falls back to reading bars back in groups, keeping memory
# bounded (about 0.6 GB at this default).
MEMORY_ROWS_MAX = 12_000_000

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
    ``held_rows_peak`` is the most bar rows the load held in memory at once besides its input
    chunk (appended rows kept for the features step, plus the rows of the feature group being
    computed): at most ``load_memory_rows``, unless one symbol alone brings more new rows.
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
    held_rows_peak: int = 0
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



_UPSERT_TAIL = {
    "update": (
        " ON CONFLICT (entity_id, ts) DO UPDATE SET open = excluded.open, high = excluded.high, "
        "low = excluded.low, close = excluded.close, volume = excluded.volume, load_id = excluded.load_id "
        "WHERE (b.open, b.high, b.low, b.close, b.volume) IS DISTINCT FROM "
        "(excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume)"
    ),
    "ignore": " ON CONFLICT (entity_id, ts) DO NOTHING",
    "error": " ON CONFLICT (entity_id, ts) DO NOTHING",
}

# the first parameter is the load id (every row of a load carries it)
_UNNEST_ROWS = (
    "SELECT e, %s::int4 AS lid, " + _us_sql("t") + " AS ts, o, h, l, c, v "
    "FROM unnest(%s::int4[], %s::int8[], %s::float8[], %s::float8[], %s::float8[], %s::float8[], "
    "%s::float8[]) AS u(e, t, o, h, l, c, v)"
)


def _upsert_sql(source: str, mode: str) -> str:
    """The upsert of ``source`` rows (entity_id, load_id, ts, OHLCV) into bars: per entity, rows
    (inserted, updated). An updated row's previous version moves to ``bars_history`` in the same
    statement (PostgreSQL 18's ``RETURNING old``), superseded by this load."""
    return (
        "WITH w AS (INSERT INTO bars AS b (entity_id, load_id, ts, open, high, low, close, volume) "
        + source
        + _UPSERT_TAIL[mode]
        + " RETURNING b.entity_id, old.ts IS NULL AS ins, b.load_id AS by, old.load_id AS lid, old.ts AS ts, "
        "old.open AS o, old.high AS h, old.low AS l, old.close AS c, old.volume AS v, b.ts AS nts), "
        "h AS (INSERT INTO bars_history (entity_id, load_id, ts, superseded_by, open, high, low, close, volume) "
        "SELECT entity_id, lid, ts, by, o, h, l, c, v FROM w WHERE NOT ins) "
        "SELECT entity_id, count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins), "
        + _ts_us_sql("min(nts)") + " FROM w GROUP BY entity_id"
    )


def _conflict_sql(source: str) -> str:
    return (
        "SELECT s.e, " + _ts_us_sql("s.ts") + " FROM (" + source + ") s JOIN bars b "
        "ON b.entity_id = s.e AND b.ts = s.ts "
        "WHERE (b.open, b.high, b.low, b.close, b.volume) IS DISTINCT FROM (s.o, s.h, s.l, s.c, s.v) "
        "ORDER BY 1, 2 LIMIT 1"
    )


# a load that changed nothing takes no lock: it stamps its own time
_LOG_UNSTAMPED = LOAD_LOG_SQL.format(stamp="clock_timestamp()", source="")
_BAR_COPY_COLUMNS = ["entity_id", "load_id", "ts", *BAR_COLUMNS]
_BAR_COPY_TYPES = ("int4", "int4", *BAR_TYPES[1:])
_MAX_LOAD_ID = 2**31 - 1


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
        memory_rows: int = MEMORY_ROWS_MAX,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        if on_conflict not in ON_CONFLICT:
            raise ConfigError(f"on_conflict must be one of {ON_CONFLICT}, got {on_conflict!r}")
        if isinstance(memory_rows, bool) or not isinstance(memory_rows, int) or memory_rows < 0:
            raise ConfigError(f"load_memory_rows must be an integer >= 0, got {memory_rows!r}")
        self.memory_rows = memory_rows
        self.progress = progress
        self.conn = conn
        self.on_conflict = on_conflict
        self.create_symbols = create_symbols
        self.views = list(views)
        self.small = small
        self.result = LoadResult(source=source)
        self.started = time.perf_counter()
        self.phases = self.result.phases  # write_chunk/finish add their "write" and "features" time
        self._features_s = 0.0
        self._plan = 0
        # the load's id is taken now: every row it writes carries it (knowledge time); the
        # loads row itself is written at the end, stamped under the store's write lock
        self.started_at, load_id = conn.execute(  # type: ignore[misc]
            "SELECT now(), nextval(pg_get_serial_sequence('loads', 'load_id'))"
        ).fetchone()
        if load_id > _MAX_LOAD_ID:
            raise ConfigError(f"load id {load_id} no longer fits the int4 load_id of bars (the store has had 2^31 loads)")
        self.load_id = int(load_id)
        self.ids: dict[str, int] = {}
        self.symbol_of: dict[int, str] = {}
        self.old_last: dict[int, int | None] = {}
        self.seg_last: dict[int, int] = {}  # entity -> last bar held in history segments (µs)
        self._layouts: list[segments.Layout] | None = None
        self.appended: dict[int, int] = {}  # entity -> rows appended after its old last bar
        self.changed_past: set[int] = set()
        self.changed_from: dict[int, int] = {}  # entity -> earliest past bar changed (µs)
        self.extra_cols: list[str] = []
        self.staged = False
        self.extra_staged = False
        self._mem: list[list[np.ndarray]] | None = [] if memory_rows > 0 else None
        self._mem_rows = 0
        self._held_peak = 0
        self.late: dict[int, int] = {}  # entity -> bars inserted before its old last bar
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
        # find the existing entities; create the missing ones (sorted inserts: concurrent loads
        # creating the same symbols queue in one order); then lock them all (placement.lock_entities)
        lock = "SELECT entity_id, symbol FROM entities WHERE symbol = ANY(%s)"
        found = {s: e for e, s in self.conn.execute(lock, (new,)).fetchall()}
        if self.create_symbols and len(found) < len(new):
            absent = [x for x in new if x not in found]
            made = [r[0] for r in self.conn.execute(
                "INSERT INTO entities (symbol) SELECT s FROM unnest(%s::text[]) AS u(s) ORDER BY s "
                "ON CONFLICT (symbol) DO NOTHING RETURNING entity_id",
                (absent,),
            ).fetchall()]
            if made:  # every entity has its key row (placement: the per-symbol tables' anchor)
                self.conn.execute("INSERT INTO entity_keys (entity_id) SELECT unnest(%s::int4[])", (made,))
            self.result.symbols_created += len(made)
            found.update({s: e for e, s in self.conn.execute(lock, (absent,)).fetchall()})
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
        placement.lock_entities(self.conn, ids)
        # an entity's last bar: its newest row, else the end of its history segments
        last = self.conn.execute(
            "SELECT e.id, " + _ts_us_sql("greatest(b.ts, s.ts)") + ", " + _ts_us_sql("s.ts")
            + " FROM " + placement.per_entity("unnest(%s::int4[])", "e", "id", placement.distributed(self.conn)) + " "
            "LEFT JOIN LATERAL (SELECT ts FROM bars WHERE entity_id = e.id ORDER BY ts DESC LIMIT 1) b ON true "
            "LEFT JOIN LATERAL (SELECT max(ts_last) AS ts FROM bars_segments WHERE entity_id = e.id) s ON true",
            (ids,),
        ).fetchall()
        for s in new:
            self.ids[s] = found[s]
            self.symbol_of[found[s]] = s
        for e, t, seg in last:
            self.old_last[e] = t
            if seg is not None:
                self.seg_last[e] = int(seg)

    def _expand_segments(self, eid: np.ndarray, ts: np.ndarray, past: np.ndarray) -> None:
        """Bring back into rows the history segments that this chunk's past bars fall in (every
        table alike): the write path then sees rows only."""
        if not self.seg_last or not past.any():
            return
        e_past, t_past = eid[past], ts[past]
        firsts: dict[int, int] = {}
        for e in np.unique(e_past).tolist():
            bound = self.seg_last.get(e)
            if bound is None:
                continue
            t0 = int(t_past[e_past == e].min())
            if t0 <= bound:
                firsts[e] = t0
        if not firsts:
            return
        if self._layouts is None:
            self._layouts = segments.store_layouts(self.conn)
        segments.expand_from(self.conn, self._layouts, dict(firsts))
        left = segments.boundaries(self.conn, list(firsts))
        for e in firsts:
            if e in left:
                self.seg_last[e] = segments.to_us(left[e])
            else:
                self.seg_last.pop(e, None)

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
        self._expand_segments(eid, chunk.ts, ~is_append)
        cols = [eid, chunk.ts, chunk.open, chunk.high, chunk.low, chunk.close, chunk.volume]
        for c in cols[1:]:
            self.checksum.update(np.ascontiguousarray(c).view(np.uint8).data)
        n_app = np.bincount(codes[is_append], minlength=len(uniques))
        for e, k in zip(uniq_ids.tolist(), n_app.tolist()):
            if k:
                self.appended[e] = self.appended.get(e, 0) + k
        if chunk.extra:
            check_user_columns(self.conn, self.views, chunk.extra, eid, chunk.ts, source=chunk.source, rows=chunk.rows)
            self._stage_extra(eid, chunk)
        if self._mem is not None:
            idx = np.flatnonzero(is_append)
            if self._mem_rows + int(idx.size) > self.memory_rows:  # past the bound: features read back
                self._mem, self._mem_rows = None, 0
            else:
                self._mem_rows += int(idx.size)
                self._mem.append([eid[idx], *(c[idx] for c in cols[1:])])
                self._held_peak = max(self._held_peak, self._mem_rows)
        try:
            if self.small:
                self._small_upsert(cols, is_append, uniq_ids, n_app)
            else:
                if is_append.any():
                    idx = np.flatnonzero(is_append)
                    copy_in(self.conn, ident("bars"), _BAR_COPY_COLUMNS, self._with_load(cols, idx), _BAR_COPY_TYPES)
                    self.result.inserted += int(idx.size)
                if not is_append.all():
                    idx = np.flatnonzero(~is_append)
                    if not self.staged:
                        self.conn.execute(
                            "CREATE TEMP TABLE _fs_stage (LIKE bars INCLUDING INDEXES) ON COMMIT DROP"
                        )
                        self.staged = True
                    copy_in(self.conn, ident("_fs_stage"), _BAR_COPY_COLUMNS, self._with_load(cols, idx), _BAR_COPY_TYPES)
        except psycopg.errors.UniqueViolation as exc:
            raise self._duplicate_error(exc, chunk) from None
        except psycopg.errors.InternalError_ as exc:
            # Citus reports a worker's unique violation during COPY as XX000 with its message
            if not str(exc).startswith("duplicate key value violates unique constraint"):
                raise
            raise self._duplicate_error(exc, chunk) from None
        self._sample_memory()

    def _with_load(self, cols: list[np.ndarray], idx: np.ndarray) -> list[np.ndarray]:
        """The rows ``idx`` of the chunk's columns, with this load's id as the second column."""
        return [cols[0][idx], np.full(idx.size, self.load_id, dtype=np.int32), *(c[idx] for c in cols[1:])]

    def _duplicate_error(self, exc: psycopg.Error, chunk: BarChunk) -> ValidationError:
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
        params = [self.load_id, *(c.tolist() for c in cols)]  # a few rows: the per-element conversion is cheap
        if self.on_conflict == "error":
            hit = self.conn.execute(_conflict_sql(_UNNEST_ROWS), params, prepare=True).fetchone()
            if hit is not None:
                self._raise_conflict(int(hit[0]), int(hit[1]))
        rows = self.conn.execute(_upsert_sql(_UNNEST_ROWS, self.on_conflict), params, prepare=True).fetchall()
        self._count(rows, dict(zip(uniq_ids.tolist(), n_app.tolist())))

    def _count(self, rows: Sequence[tuple[int, int, int, int]], appended_now: dict[int, int]) -> None:
        """Tally (entity, inserted, updated, earliest ts written µs) rows of an upsert; an entity
        with more rows written than appended had a past bar corrected or a late bar inserted."""
        for e, ins, upd, first_us in rows:
            self.result.inserted += ins
            self.result.updated += upd
            if ins > appended_now.get(e, 0):
                self.late[e] = self.late.get(e, 0) + ins - appended_now.get(e, 0)
            if ins + upd > appended_now.get(e, 0):
                self.changed_past.add(e)
                # appended rows come after every past one: the minimum is the earliest change
                self.changed_from[e] = min(self.changed_from.get(e, first_us), first_us)

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
                    "SELECT s.entity_id, s.load_id, s.ts, s.open, s.high, s.low, s.close, s.volume FROM _fs_stage s "
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
            memory = MemoryBars(*self._concat_memory(self._mem))
        self._mem = None
        new_rows = {e: self.appended.get(e, 0) + self.late.get(e, 0) for e in changed}
        # Two passes: first the entities the kept rows can serve (appends, new symbols), for every
        # view; then, with the kept rows released, the entities with late or corrected bars, which
        # always read their bars back. An entity's features do not depend on the others', so the
        # split changes no result; it keeps a recompute's read-back from adding to the kept rows.
        passes = [[e for e in changed if e not in self.changed_past], [e for e in changed if e in self.changed_past]]
        t0 = time.perf_counter()
        for n, entities in enumerate(passes):
            if n == 1:
                memory = None  # the kept rows are no longer needed
            if not entities:
                continue
            kept = int(memory.eid.size) if memory is not None else 0
            # a feature group holds at most what the bound leaves beside the kept rows
            group = FEATURE_GROUP_ROWS if self.memory_rows == 0 else max(1, min(FEATURE_GROUP_ROWS, self.memory_rows - kept))

            def held(rows: int, kept: int = kept) -> None:
                self._held_peak = max(self._held_peak, kept + rows)

            for i, view in enumerate(self.views):
                written, recomputed = write_features(
                    self.conn, view, entities, self.old_last, self.changed_past, memory, load_id=self.load_id,
                    changed_from=self.changed_from, new_rows=new_rows, group_rows=group, held=held,
                    progress=None if self.progress is None else self._view_progress(i),
                )
                res.features_written += written
                res.entities_recomputed += recomputed
                self._sample_memory()
        del memory
        self._features_s = time.perf_counter() - t0
        res.held_rows_peak = self._held_peak
        user_changed = self._write_user_columns()
        touched = sorted(set(changed) | user_changed)
        res.symbols = len(self.ids)
        res.changed_entities = tuple(touched)
        log = {
            "load_id": self.load_id,
            "source": res.source[:1000],
            "started_at": self.started_at,
            "rows_in": res.rows_in,
            "inserted": res.inserted,
            "updated": res.updated,
            "unchanged": res.unchanged,
            "symbols": res.symbols,
            "features": res.features_written,
            "checksum": self.checksum.hexdigest(),
        }
        if touched:
            # the load is logged with the stamp bump_generation takes under the store_state lock
            res.generation, symbols = bump_generation(self.conn, touched, log)
            res.changed_symbols = tuple(symbols)
            row: Any = (self.load_id,)
        else:  # a load that changed nothing takes no lock and stamps its own time
            row = self.conn.execute(_LOG_UNSTAMPED, log).fetchone()
        res.load_id = int(row[0]) if row else None
        self._sample_memory()
        res.peak_rss_bytes = self._peak
        res.elapsed_s = time.perf_counter() - self.started
        return res

    @staticmethod
    def _concat_memory(parts: list[list[np.ndarray]]) -> list[np.ndarray]:
        """The kept chunks' columns concatenated, each column's parts released as soon as it is
        joined (so the copy never doubles all seven columns at once)."""
        out = []
        empty = np.empty(0)
        for k in range(len(parts[0])):
            out.append(np.concatenate([p[k] for p in parts]))
            for p in parts:
                p[k] = empty
        return out

    def _view_progress(self, index: int) -> Callable[[int, int], None]:
        """The features progress of view ``index``: the first view's plan, times the number of
        views, is the first estimate of the total; later views correct it by their own plan."""
        assert self.progress is not None
        report = self.progress
        first = [True]

        def cb(done: int, more_total: int) -> None:
            if first[0]:
                first[0] = False
                if index == 0:
                    self._plan = more_total
                    more_total *= len(self.views)
                else:
                    more_total -= self._plan
            report(done, more_total)

        return cb

    def _write_user_columns(self) -> set[int]:
        if not self.extra_staged:
            return set()
        changed: set[int] = set()
        for view in self.views:
            cols = [c for c in view.columns if c in self.extra_cols]
            if not cols:
                continue
            # the previous version of each changed row moves to the view's history table
            stmt = sql.SQL(
                "WITH w AS (UPDATE {t} AS f SET {sets}, load_id = %s FROM _fs_extra x "
                "WHERE f.entity_id = x.entity_id AND f.ts = x.ts AND ROW({fcols}) IS DISTINCT FROM ROW({xcols}) "
                "{ret}), h AS ({ins}) SELECT h_e FROM w"
            ).format(
                ret=history_returning(view),
                ins=history_insert(view),
                t=ident(view.table_name),
                sets=sql.SQL(", ").join(sql.SQL("{c} = {x}").format(c=ident(c), x=user_value_sql(view, "x", c)) for c in cols),
                xcols=sql.SQL(", ").join(user_value_sql(view, "x", c) for c in cols),
                fcols=sql.SQL(", ").join(sql.SQL("f.{}").format(ident(c)) for c in cols),
            )
            changed.update(r[0] for r in self.conn.execute(stmt, (self.load_id,)).fetchall())
        return changed
