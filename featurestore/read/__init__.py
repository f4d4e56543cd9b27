"""[read] Range, latest, as-of and point-in-time queries -> pandas or Arrow.

The result contract
===================

Range reads (:meth:`Reader.get_bars`, :meth:`Reader.get_features`) and :meth:`Reader.get_latest`
return, by default, a pandas ``DataFrame``:

* index: a ``MultiIndex`` named ``("symbol", "ts")``; ``symbol`` holds pandas' default string
  dtype, ``ts`` is ``datetime64[us, UTC]`` (PostgreSQL stores microseconds, so nothing is lost
  and nothing is widened to nanoseconds);
* columns: ``float64`` only (the feature columns of a ``dtype="float32"`` view: ``float32``), in
  the order asked for (``columns=``), else bars first (open, high, low, close, volume, when
  included) then the view's feature columns in spec order; a missing value is ``NaN``;
* rows: range reads are sorted by symbol (lexicographic, the index is lexsorted) then ts;
  ``get_latest`` returns exactly one row per requested symbol in the order requested (duplicates
  dropped), and a symbol with no bar at or before ``as_of`` (or no such symbol) is present with
  ``ts`` NaT and NaN values;
* symbols that do not exist simply have no rows in range reads (no error).

With ``as_arrow=True`` the same content comes as a ``pyarrow.Table`` with columns ``symbol``
(string), ``ts`` (``timestamp[us, tz=UTC]``, null only where pandas has NaT) and the float64
columns (NaN, never null), in the same row order:
``table.to_pandas().set_index(["symbol", "ts"])`` equals the pandas result.

Time arguments (``start``, ``end``, ``as_of``) are ``datetime``, ``pandas.Timestamp`` or strings,
and must carry a time zone (``"2024-01-31T16:00-05:00"``, ``"2024-01-31 UTC"``); naive times are
rejected, as on load. The interval is closed: ``start <= ts <= end``; ``None`` leaves a side
open. :meth:`Reader.get_training_frame` has its own contract, in its docstring.

How it reads
============

The steps live in modules of this package: :mod:`~featurestore.read.sql` builds each query's
text (a constant per table and columns, from validated identifiers; the plan tests in
``tests/test_read.py`` EXPLAIN those exact texts), :mod:`~featurestore.read.bulk` fetches bulk
results as Arrow through ADBC, :mod:`~featurestore.read.frames` builds the result frames and
:mod:`~featurestore.read.training` the point-in-time joins.

* Small, hot queries (view and symbol lookup, latest rows) run on the pool's psycopg connection
  with bind parameters and ``prepare=True``, so one server-side plan serves every call.
* Bulk results (range reads, the rows behind a training frame) come through ADBC on a small pool
  of the Reader's own connections (see :mod:`featurestore.read.bulk`).
* Symbols become entity ids in one lookup query; rows are mapped back to symbols by their
  entity-id segments (a vectorized take), never row by row in Python.
* A view read by name uses its newest *ready* version: a version whose backfill is running or
  was interrupted never serves a read (see :func:`featurestore.views.read_view`).
* :meth:`Reader.snapshot` runs a block of reads on one REPEATABLE READ snapshot (an export is one
  state of the store, whatever commits while it runs).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

from featurestore import placement
from featurestore.config import libpq_url
from featurestore.errors import ConfigError, ConnectionError, DatabaseError, HistoryError
from featurestore.read import bulk as _bulk
from featurestore.read import coalesce as _coalesce
from featurestore.read import latest as _latest
from featurestore.read import segmented as _seg
from featurestore.read.args import _bound, _columns, _symbols, _utc, knowledge_time
from featurestore.read.frames import _block_order, _column, _empty, _frame, _segments, downcast
from featurestore.read.sql import (
    _MAX_TS,
    _MIN_TS,
    _MIN_US,
    _NAT,
    _UTC,
    KNOWLEDGE_CTE,
    KNOWLEDGE_VALUES_CTE,
    LOOKUP_SQL,
    _literal,
    estimate_sql,
    latest_one_sql,
    latest_sql,
    point_sql,
    range_sql,
    render,
    training_sql,
)
from featurestore.read.training import PER_EVENT_COST, TRAINING_TS_COLUMN, training_frame
from featurestore.schema import BAR_COLUMNS, validate_identifier

if TYPE_CHECKING:
    import psycopg

    from featurestore.pool import Database
    from featurestore.views import FeatureView

__all__ = [
    "Reader",
    "Snapshot",
    "LOOKUP_SQL",
    "range_sql",
    "latest_sql",
    "latest_one_sql",
    "training_sql",
    "point_sql",
    "estimate_sql",
    "render",
    "downcast",
    "PER_EVENT_COST",
    "TRAINING_TS_COLUMN",
]
# re-exported for the rest of the package and its tests (featurestore.read._utc etc.)
_REEXPORTED = (_utc, _literal, _MIN_TS, _MAX_TS, _MIN_US, _NAT)

T = TypeVar("T")


@dataclass(frozen=True)
class Snapshot:
    """The two connections of a :meth:`Reader.snapshot` block, in one REPEATABLE READ snapshot."""

    pg: psycopg.Connection[Any]
    bulk: Any

    def run(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``fn(conn)`` on the snapshot's psycopg connection (sees the snapshot's state)."""
        return fn(self.pg)


class Reader:
    """The read step of one store: range, latest and point-in-time reads.

    Bulk reads use a small pool of ADBC connections of its own (the SQLAlchemy pool cannot hand
    out ADBC connections): at most ``bulk_connections`` (default 2) exist at once, idle ones are
    kept for the next read, and a read that finds them all busy for ``pool_timeout`` seconds fails
    with PoolTimeoutError. Point reads use the store's pool. Call :meth:`close` when done.
    """

    def __init__(self, db: Database, *, bulk_connections: int = 2, coalesce: bool = True) -> None:
        self._db = db
        self._gate = _coalesce.Gate() if coalesce else None
        self.views = _latest.ViewCache()  # view versions one-symbol latest reads plan with
        self._distributed: bool | None = None  # see distributed; None until asked (or re-placed)
        url = db.url.update_query_dict({"application_name": "featurestore-bulk"})
        self._uri = libpq_url(url)
        self._bulk = _bulk.BulkConnections(bulk_connections, db.pool_timeout)
        self._local = threading.local()  # .snap: this thread's open Snapshot, if any
        self._closed = False

    def close(self) -> None:
        """Close the ADBC connections this Reader opened (a busy one when its read ends). Idempotent."""
        self._closed = True
        self._bulk.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public reads -------------------------------------------------------------------------

    def get_bars(
        self,
        symbols: str | Sequence[str],
        start: Any = None,
        end: Any = None,
        *,
        columns: str | Sequence[str] | None = None,
        as_arrow: bool = False,
        as_known_at: Any = None,
    ) -> pd.DataFrame | pa.Table:
        """Bars of ``symbols`` with ``start <= ts <= end`` (see the module docstring for the shape).

        ``as_known_at`` (tz-aware; default now): the bars as stored at that moment.
        """
        cols = _columns(columns, BAR_COLUMNS, "bars") or list(BAR_COLUMNS)
        known = knowledge_time(as_known_at)
        return self._range("bars", cols, [], symbols, start, end, as_arrow=as_arrow, known_at=known)

    def get_features(
        self,
        symbols: str | Sequence[str],
        start: Any = None,
        end: Any = None,
        *,
        view: str,
        version: int | None = None,
        columns: str | Sequence[str] | None = None,
        include_bars: bool = False,
        as_arrow: bool = False,
        as_known_at: Any = None,
    ) -> pd.DataFrame | pa.Table:
        """Feature rows of ``view`` (newest version unless ``version``) with ``start <= ts <= end``.

        ``columns`` picks feature columns (default: all); ``include_bars`` adds the bar columns
        (open..volume) before them. ``as_known_at`` (tz-aware; default now): the rows as they
        were computed and stored at that moment (HistoryError before the version was ready).
        """
        known = knowledge_time(as_known_at)
        fv = self._view(view, version, known)
        feats = _columns(columns, fv.feature_columns, f"view {fv.name!r} v{fv.version}") or list(fv.feature_columns)
        bars = list(BAR_COLUMNS) if include_bars else []
        if known is not None and fv.available_after:
            # rows count as known only from ts + the view's availability lag
            last = known - fv.available_after
            end = last if end is None or _bound(end, "end", ceil=False) > last else end
            if start is not None and _bound(start, "start", ceil=True) > last:
                _symbols(symbols)  # still validated
                # nothing in the range is known yet
                return _empty([*bars, *feats], as_arrow=as_arrow, float32=fv.float32_columns)
        return self._range(
            fv.table_name, bars, feats, symbols, start, end, as_arrow=as_arrow, known_at=known,
            float32=fv.float32_columns, view_columns=fv.feature_columns,
        )

    def get_latest(
        self,
        symbols: str | Sequence[str],
        *,
        as_of: Any = None,
        view: str | None = None,
        version: int | None = None,
        columns: str | Sequence[str] | None = None,
        as_arrow: bool = False,
        as_known_at: Any = None,
        as_dict: bool = False,
    ) -> pd.DataFrame | pa.Table | list[dict[str, Any]]:
        """One row per requested symbol: its last bar (and feature row, with ``view``) at or before ``as_of``.

        ``as_of=None`` means now (or ``as_known_at`` when given). Rows keep the requested order;
        a symbol with no such row (or unknown) is present with ts NaT and NaN values. ``columns``
        picks among the bar columns and, with a view, its feature columns (default: all of them,
        bars first). ``as_known_at``: what a read at that moment would have returned.
        ``as_dict``: plain records instead of a frame (no pandas; see :func:`latest.to_dicts`).
        Concurrent calls of one shape from several threads share one statement (coalescing).
        """
        self._check_open()
        request = {"as_of": as_of, "view": view, "version": version, "columns": columns}
        shape = None
        if self._gate is not None and as_known_at is None and getattr(self._local, "snap", None) is None:
            shape = _latest.gate_shape(as_of, view, version, columns)
        names: Sequence[str]
        if shape is not None:
            p, names, rows = self._gate.run(shape, _symbols(symbols), lambda requests: self._latest_batch(requests, request))  # type: ignore[union-attr]
        else:
            p = _latest.plan(symbols, self._view, as_known_at=as_known_at, **request)
            names = p.names
            rows = self._latest_rows(p, p.names) if p.names else []
        return _latest.to_dicts(p, rows, names) if as_dict else _latest.to_frame(p, rows, as_arrow=as_arrow, names=names)

    def _latest_batch(
        self, requests: list[Sequence[str]], request: dict[str, Any]
    ) -> list[tuple[_latest.LatestPlan, Sequence[str], list[tuple[Any, ...]]]]:
        """Latest requests with the same arguments but their symbols: one view lookup, one
        statement; for each request the plan, its symbols and its rows."""
        if len(requests) == 1:  # alone: no merging to undo
            found = self._latest_cached(requests[0], request)
            if found is not None:
                return [(found[0], found[0].names, found[1])]
            p = _latest.plan(requests[0], self._view_cached(request["version"]), **request)
            return [(p, p.names, self._latest_rows(p, p.names) if p.names else [])]
        merged, picks = _latest.merge(requests)
        p = _latest.plan(merged, self._view, **request)
        rows = self._latest_rows(p, merged) if merged else []
        return [(p, names, part) for names, part in zip(requests, _latest.split_rows(rows, picks))]

    def _view_cached(self, version: int | None) -> Callable[[str, int | None, Any], FeatureView]:
        """:meth:`_view` that remembers what it found for one-symbol reads (:class:`latest.ViewCache`)."""

        def view_of(name: str, v: int | None, known: Any) -> FeatureView:
            fv = self._view(name, v, known)
            self.views.put(name, version, fv)
            return fv

        return view_of

    def _latest_cached(
        self, names: Sequence[str], request: dict[str, Any]
    ) -> tuple[_latest.LatestPlan, list[tuple[Any, ...]]] | None:
        """A one-symbol latest read of a view in one statement, with the view version cached
        from an earlier read; None when there is none cached or the view changed since."""
        view, version = request["view"], request["version"]
        fv = self.views.get(view, version)
        if fv is None or len(names) != 1:
            return None
        p = _latest.plan(names, lambda *_: fv, **request)
        cut = p.cut()
        try:
            if self.distributed:
                got = self._latest_routed_checked(p, fv, version, cut)
            else:
                query, params = _latest.checked_statement(p, version, cut)
                rows = self._run(lambda conn: conn.execute(query, params, prepare=True).fetchall())
                got = _latest.checked_rows(rows, fv)
        except DatabaseError as exc:
            if exc.sqlstate not in _latest.VIEW_CHANGED:  # the view's table is gone or remade: plan again
                raise
            got = None
        if got is None:
            self.views.forget(view, version)
            return None
        return p, self._latest_fill(p, p.names, got, cut)

    def _latest_routed_checked(
        self, p: _latest.LatestPlan, fv: FeatureView, version: int | None, cut: dt.datetime
    ) -> list[tuple[Any, ...]] | None:
        """:meth:`_latest_cached`'s read on Citus: the view check and the symbol's id in one
        statement, then the probe by id (routed to one worker); None when the view changed."""
        check, params = _latest.routed_check(p, fv, version)

        def run(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]] | None:
            row = conn.execute(check, params, prepare=True).fetchone()
            if row is None or row[0] != fv.view_id:
                return None
            if row[1] is None:  # no such symbol
                return [_latest.no_row(p)]
            query, args = _latest.statement(p, p.names, cut, distributed=True, entity_id=int(row[1]))
            return conn.execute(query, args, prepare=True).fetchall() or [_latest.no_row(p)]

        return self._run(run)

    def _latest_rows(self, p: _latest.LatestPlan, names: Sequence[str]) -> list[tuple[Any, ...]]:
        """The latest rows of ``names`` (one per name, in order) for plan ``p``."""
        cut = p.cut()

        def run(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            dist = placement.distributed(conn)
            entity = None
            if _latest.routed_one(p, names, dist):
                found = conn.execute(_latest.ROUTED_LOOKUP, (p.sql_names(names)[0],), prepare=True).fetchone()
                if found is None:
                    return []
                entity = int(found[0])
            query, params = _latest.statement(p, names, cut, distributed=dist, entity_id=entity)
            return conn.execute(query, params, prepare=True).fetchall()

        rows = self._run(run) or [(1, _NAT, *([None] * len(p.cols)))]
        return self._latest_fill(p, names, rows, cut)

    def _latest_fill(
        self, p: _latest.LatestPlan, names: Sequence[str], rows: list[tuple[Any, ...]], cut: dt.datetime
    ) -> list[tuple[Any, ...]]:
        """``rows`` with the symbols that found no row read again over history segments."""
        missing = _latest.missing(rows, names)
        if not missing:
            return rows
        query, params = _latest.statement(p, [names[k] for k in missing], cut, one=False)
        found = self._latest_from_segments(params, query, cut, p.table, p.fv)
        if found:
            rows = list(rows)
            for r in found:  # ordinals count the missing symbols from 1
                k = missing[int(r[0]) - 1]
                rows[k] = (rows[k][0], *r[1:])
        return rows

    def _latest_from_segments(
        self, params: dict[str, Any], query: str, cut: dt.datetime, table: str, fv: FeatureView | None
    ) -> list[tuple[Any, ...]] | None:
        """:func:`latest_sql` for ``params["symbols"]`` (symbols a latest read found no row for)
        over rows and history segments alike, in one snapshot, when any of them holds data at or
        before ``cut`` now (in segments, or in rows a correction moved back since); else None."""
        ids = list(self._lookup(params["symbols"]).values())
        if not ids:
            return None

        def held_now(conn: psycopg.Connection[Any]) -> bool:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM bars_segments s WHERE s.entity_id = ANY(%s::int4[]) AND s.ts_first <= %s) "
                "OR EXISTS (SELECT 1 FROM bars b WHERE b.entity_id = ANY(%s::int4[]) AND b.ts <= %s)", (ids, cut, ids, cut)
            ).fetchone()
            return bool(row and row[0])

        if not self._run(held_now):
            return None
        layouts = [_seg.layout_of("bars")]
        if fv is not None:
            layouts.append(_seg.layout_of(table, fv.feature_columns, fv.dtype == "float32"))

        def shadowed(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            _seg.shadow_pg(conn, layouts, ids, cut, distributed=self.distributed)
            # not prepared: a prepared statement keeps the table it was planned on
            return conn.execute(query, params, prepare=False).fetchall()

        snap = getattr(self._local, "snap", None)
        if snap is not None:  # in the snapshot, inside a savepoint whose rollback drops the tables
            with snap.pg.transaction(force_rollback=True):
                return shadowed(snap.pg)

        def again(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                return shadowed(conn)

        return self._db.run(again, idempotent=True)

    def get_training_frame(
        self,
        events: pd.DataFrame,
        *,
        view: str,
        version: int | None = None,
        columns: str | Sequence[str] | None = None,
        tolerance: Any = None,
        event_time_col: str = "ts",
        symbol_col: str = "symbol",
        include_bars: bool = False,
        strategy: str = "auto",
        as_known_at: Any = None,
        known_at_col: str | None = None,
    ) -> pd.DataFrame:
        """Attach to each event the feature row with the greatest ``ts <= event time``: point in time.

        With ``tolerance`` (a ``Timedelta``, ``timedelta`` or string such as ``"7D"``) the row must
        also have ``ts >= event time - tolerance``. A later row is never attached. The result has
        exactly the events' rows, in their order and with their index and every other column
        (labels...), plus the feature columns (bar columns first with ``include_bars``) and
        ``feature_ts``, the ts of the attached row. Where nothing qualifies (an unknown symbol, an
        event before the first row, outside the tolerance, NaT event time) the new columns are
        NaN / NaT. Event times must be tz-aware datetimes; they and the tolerance count at
        microsecond precision.

        ``strategy``: ``"range"`` reads each symbol's rows from its last row at or before its first
        event through its last event (one bulk read) and binary-searches them in numpy;
        ``"per_event"`` runs one LATERAL Index Scan Backward per distinct (symbol, event time) in
        SQL; ``"auto"`` (default) estimates both from the view's row counts and picks the cheaper
        (:data:`PER_EVENT_COST`). Both give the same result.

        Knowledge time (default: neither, the rows as stored now):

        * ``as_known_at`` (tz-aware): the whole frame as the store stood at that moment
          (HistoryError before the store's history or before the view version was ready);
          ``"auto"`` then reads ranges.
        * ``known_at_col``: a tz-aware column of ``events`` holding each event's decision time;
          each event gets the row versions known at its own decision time (bars and features as
          stored and computed then). NaT there -> nothing was known: NaN / NaT. A decision time
          before the store's history or the view's ``ready_at`` raises HistoryError naming the
          first such event. ``known_at_col=event_time_col`` means "known by the event time".
          Resolved in numba over every row version (``strategy`` does not apply).

        With either, a view's availability lag (``available_after``) applies: a row at ``ts`` counts
        as known only from ``ts + lag``.
        """
        return training_frame(
            self,
            events,
            view=view,
            version=version,
            columns=columns,
            tolerance=tolerance,
            event_time_col=event_time_col,
            symbol_col=symbol_col,
            include_bars=include_bars,
            strategy=strategy,
            as_known_at=as_known_at,
            known_at_col=known_at_col,
        )

    # -- internals --------------------------------------------------------------------------

    @property
    def distributed(self) -> bool:
        """True on a distributed (Citus) store: some statements take their Citus form. Asked of
        the server once (the one-symbol latest path reads it on every call: no pool checkout)."""
        if self._distributed is None:
            self._distributed = self._run(placement.distributed)
        return self._distributed

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionError("this Reader is closed; make a new one")

    def _view(self, name: str, version: int | None, known_at: dt.datetime | None = None) -> FeatureView:
        """The ready view version a read uses (featurestore.views.read_view): one query.

        With ``known_at``, the version must have been ready by then (HistoryError otherwise):
        its features were not computed before.
        """
        from featurestore.views import read_view

        if not isinstance(name, str):
            raise ConfigError(f"view must be a view name (str), got {type(name).__name__}")
        validate_identifier(name, what="view name")  # before it reaches SQL (NUL bytes, 10k chars)
        fv = self._run(lambda conn: read_view(conn, name, version))
        if known_at is not None and (fv.ready_at is None or fv.ready_at > known_at):
            when = fv.ready_at.isoformat() if fv.ready_at else "(never)"
            raise HistoryError(
                f"view {fv.name!r} v{fv.version} was not ready at as_known_at={known_at.isoformat()}: its "
                f"features are known from {when}; read bars with as_known_at, or a version that was ready then"
            )
        return fv

    def _run(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """A point query: on this thread's snapshot if one is open, else on a pooled connection."""
        snap = getattr(self._local, "snap", None)
        if snap is not None:
            return fn(snap.pg)  # type: ignore[no-any-return]
        return self._db.run(fn, idempotent=True)

    def _lookup(self, names: Sequence[str]) -> dict[str, int]:
        """symbol -> entity id for the symbols that exist."""
        # no stored symbol can hold a NUL byte (PostgreSQL text cannot), so such a name simply
        # does not exist; sending it would be a driver error instead
        names = [n for n in names if "\x00" not in n]
        if not names:
            return {}

        def run(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            return conn.execute(LOOKUP_SQL, {"symbols": list(names)}, prepare=True).fetchall()

        return {sym: eid for eid, sym in self._run(run)}

    def _range(
        self,
        table: str,
        bar_cols: list[str],
        feat_cols: list[str],
        symbols: str | Sequence[str],
        start: Any,
        end: Any,
        *,
        as_arrow: bool,
        known_at: dt.datetime | None = None,
        float32: frozenset[str] = frozenset(),
        view_columns: Sequence[str] = (),
    ) -> pd.DataFrame | pa.Table:
        names = _symbols(symbols)
        lo = _MIN_TS if start is None else _bound(start, "start", ceil=True)
        hi = _MAX_TS if end is None else _bound(end, "end", ceil=False)
        if start is not None and end is not None and _utc(start, "start") > _utc(end, "end"):
            raise ConfigError(f"start ({start}) is after end ({end})")
        cols = [*bar_cols, *feat_cols]
        ids_of = self._lookup(names)
        if not ids_of:
            return _empty(cols, as_arrow=as_arrow, float32=float32)
        # symbol level: the found symbols, sorted; ids passed ascending (the index's order)
        level = sorted(ids_of)
        ids = np.array(sorted(ids_of.values()), dtype=np.int32)
        code_of_id = {ids_of[s]: k for k, s in enumerate(level)}
        params: dict[str, Any] = {"ids": ids, "start": lo, "end": hi}
        if known_at is not None:
            params["known_at"] = known_at
        query, params = self._knowledge_here(range_sql(table, bar_cols, feat_cols, known=known_at is not None), params)
        table_ = self._fetch(_seg.marked(query, 2 + len(cols)), params)
        if _seg.is_marked(table_):  # the range reaches history segments: read them in one snapshot
            view_layout = _seg.layout_of(table, view_columns, bool(float32)) if table != "bars" else None
            if known_at is None:
                table_ = self._consistent(
                    lambda c: _seg.merged_range(c, query, params, table, bar_cols, feat_cols, view_layout)
                )
            else:
                tables = ["bars"] + ([table] if table != "bars" else [])
                table_ = self._consistent(
                    lambda c: _seg.shadowed(c, query, params, tables, ids.tolist(), hi, distributed=self.distributed),
                    writable=True
                )
        eid = _column(table_, "entity_id")
        starts, ends = _segments(eid)
        seg_codes = np.array([code_of_id[int(e)] for e in eid[starts].tolist()], dtype=np.int32)
        perm = None
        if seg_codes.size > 1 and not bool(np.all(np.diff(seg_codes) > 0)):
            order = np.argsort(seg_codes, kind="stable")
            perm = _block_order(starts, ends, order)
            seg_codes, lengths = seg_codes[order], (ends - starts)[order]
        else:
            lengths = ends - starts
        # drop symbols without rows from the level, so the index holds only what is there
        used = seg_codes
        level_used = [level[i] for i in used.tolist()]
        codes = np.repeat(np.arange(len(used), dtype=np.int32), lengths)
        ts = table_.column("ts").cast(pa.int64()).to_numpy()
        values = {c: _column(table_, c) for c in cols}
        if perm is not None:
            ts = ts[perm]
            values = {c: v[perm] for c, v in values.items()}
        return _frame(level_used, codes, ts, values, as_arrow=as_arrow, float32=float32)

    def _fetch(self, query: str, params: dict[str, Any]) -> pa.Table:
        """Run a bulk read (``query`` with ``params`` rendered as literals) and return it as Arrow.

        On this thread's snapshot connection if one is open, else on a pooled ADBC connection
        (featurestore.read.bulk: returned or closed on every path, reconnected once if it died).
        """
        self._check_open()
        text = render(query, params)
        snap = getattr(self._local, "snap", None)
        if snap is None:
            return self._bulk.fetch(self._uri, text)
        try:
            return _bulk.run(snap.bulk, text)
        except BaseException as exc:
            _bulk.raise_typed(exc)
            raise

    def _consistent(self, fn: Callable[[Any], T], *, writable: bool = False) -> T:
        """``fn(bulk connection)`` inside one REPEATABLE READ transaction (this thread's snapshot
        when one is open); ``writable`` when ``fn`` makes temporary tables."""
        self._check_open()
        snap = getattr(self._local, "snap", None)
        try:
            if snap is not None:
                return fn(snap.bulk)
            with self._bulk.held(self._uri) as conn:
                _bulk.run_statement(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ" + ("" if writable else ", READ ONLY"))
                out = fn(conn)
                _bulk.run_statement(conn, "COMMIT")
                return out
        except ConfigError:
            raise
        except BaseException as exc:
            _bulk.raise_typed(exc)
            raise

    def _fetch_scoped(
        self, query: str, params: dict[str, Any], tables: Sequence[str], ids: np.ndarray, upper_us: int
    ) -> pa.Table:
        """A bulk read of entities ``ids`` at times up to ``upper_us`` (µs) over ``tables``: over
        rows as they are, or, when those entities hold history segments, over rows and segments
        alike (featurestore.read.segmented.shadowed), in one snapshot."""
        upper = dt.datetime(1970, 1, 1, tzinfo=_UTC) + dt.timedelta(microseconds=int(upper_us))
        uniq = np.unique(np.asarray(ids, dtype=np.int32)).tolist()
        dist = self.distributed
        return self._consistent(
            lambda c: _seg.shadowed(c, query, params, tables, uniq, upper, distributed=dist), writable=True
        )

    def _knowledge_here(self, query: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """On a distributed store, a knowledge-time statement with its knowledge function
        (``fs_knowledge``) run here on the coordinator and the values it returned as parameters.

        A worker cannot run the function: it reads ``store_state``, a reference table, and Citus
        refuses a distributed query inside a statement it pushed to a shard (a one-entity read is
        pushed whole). The values are the same a worker would compute; errors (a time before the
        history horizon) are raised here alike. On one PostgreSQL: the statement as it is.
        """
        if "known_at" not in params or "kmax" in params or not self.distributed:
            return query, params
        if query.startswith(KNOWLEDGE_CTE):
            query = KNOWLEDGE_VALUES_CTE + query[len(KNOWLEDGE_CTE):]
        elif not query.startswith(KNOWLEDGE_VALUES_CTE):  # built for a distributed store already
            return query, params
        row = self._run(lambda conn: conn.execute(
            "SELECT kmax, holes FROM fs_knowledge(%s::timestamptz)", (params["known_at"],)).fetchone())
        values = {"kmax": int(row[0]), "holes": np.asarray(row[1] or [], dtype=np.int32)}  # type: ignore[index]
        return query, {**params, **values}

    def _fetch_grouped(
        self, query: str, params: dict[str, Any], per_key: Sequence[str], tables: Sequence[str], upper_us: int
    ) -> list[tuple[np.ndarray, pa.Table]]:
        """:meth:`_fetch_scoped` for a statement over ``params["ids"]`` (with ``per_key``: the
        parameters holding one element per id). On one PostgreSQL, one statement; on a
        distributed store one per shard group (each routed to one worker, its distinct ids in
        ``group_ids``), in one snapshot.
        Returns (positions of the group's ids, its rows) per statement."""
        ids = np.asarray(params["ids"])
        if ids.size == 0 or not self.distributed:
            if self.distributed:
                params = {**params, "group_ids": np.unique(ids.astype(np.int32))}
            return [(np.arange(ids.size), self._fetch_scoped(query, params, tables, ids, upper_us))]
        groups = self._run(lambda conn: placement.shard_groups(conn, ids))
        upper = dt.datetime(1970, 1, 1, tzinfo=_UTC) + dt.timedelta(microseconds=int(upper_us))
        query, params = self._knowledge_here(query, params)

        def run(c: Any) -> list[tuple[np.ndarray, pa.Table]]:
            parts = []
            for g in groups:
                sub = {k: (np.asarray(v)[g] if k in per_key else v) for k, v in params.items()}
                uniq = np.unique(sub["ids"].astype(np.int32)).tolist()
                # the shard-group restriction (read.sql.PRUNE) over the group's distinct ids: the
                # per-key ids repeat an entity once per event, and every probe checks the array
                sub["group_ids"] = np.asarray(uniq, dtype=np.int32)
                parts.append((g, _seg.shadowed(c, query, sub, tables, uniq, upper, distributed=True)))
            return parts

        return self._consistent(run, writable=True)  # type: ignore[no-any-return]

    # -- snapshots ------------------------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """Run this thread's reads in the block on one REPEATABLE READ snapshot of the database.

        Every read of the block (view and symbol lookups, latest rows, bulk reads) sees the
        committed state of the block's start, whatever commits meanwhile: an export uses it so
        its file is one state of the store. The block holds one pooled connection and one bulk
        connection (its snapshot is exported from one and imported by the other), and keeps
        the server from vacuuming rows newer than the snapshot until it ends. Re-entrant.
        """
        self._check_open()
        current = getattr(self._local, "snap", None)
        if current is not None:
            yield current
            return
        with self._db.connection() as pg, self._bulk.held(self._uri) as bulk:
            _bulk.begin_snapshot(bulk, pg)
            snap = Snapshot(pg, bulk)
            self._local.snap = snap
            try:
                yield snap
            finally:
                self._local.snap = None
            # only after a clean block: a failed one closes the bulk connection (ending its
            # transaction) and the pool rolls the other back on check-in
            _bulk.end_snapshot(bulk, pg)
