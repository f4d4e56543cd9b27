"""[read] Range, latest, as-of and point-in-time queries -> pandas or Arrow.

The result contract
===================

Range reads (:meth:`Reader.get_bars`, :meth:`Reader.get_features`) and :meth:`Reader.get_latest`
return, by default, a pandas ``DataFrame``:

* index: a ``MultiIndex`` named ``("symbol", "ts")``; ``symbol`` holds pandas' default string
  dtype, ``ts`` is ``datetime64[us, UTC]`` (PostgreSQL stores microseconds, so nothing is lost
  and nothing is widened to nanoseconds);
* columns: ``float64`` only, in the order asked for (``columns=``), else bars first
  (open, high, low, close, volume, when included) then the view's feature columns in spec order;
  a missing value is ``NaN``;
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

Every query's SQL text is a constant per (table, columns) built by the ``*_sql`` functions below
from validated identifiers, with ``entity_id = ANY(%(ids)s)`` over an array (never a per-call IN
list); the plan tests (``tests/test_read.py``) EXPLAIN those exact texts.

* Small, hot queries (symbol lookup, latest rows) run on the pool's psycopg connection with bind
  parameters and ``prepare=True``, so one server-side plan serves every call.
* Bulk results (range reads, the rows behind a training frame) come through ADBC's
  ``fetch_arrow_table`` on a connection this Reader holds per thread: it measured 2.1-2.6x faster
  than psycopg's binary ``COPY`` parsed with numpy (psycopg hands COPY data to Python one row at
  a time) and 6-7x faster than ``pandas.read_sql`` (``benchmarks/read.py``). ADBC streams a query
  through binary COPY only when it has no bind parameters (a bound one goes through a prepared
  statement and row-format results: 27 s vs 20 s for the 5M-row read behind a 1M-event training
  frame), so bulk queries get their integer arrays and
  timestamps rendered as literals by :func:`render`; nothing the user typed is ever rendered.
  Planning such a query costs well under a millisecond against seconds of transfer.
* Symbols become entity ids in one lookup query; rows are mapped back to symbols by their
  entity-id segments (a vectorized take), never row by row in Python.

ADBC connections live outside the pool (the pool cannot hand them out), one per thread that
reads in bulk; :meth:`Reader.close` closes them all.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from featurestore.config import libpq_url
from featurestore.errors import ConfigError, ConnectionError, NotFoundError, ValidationError
from featurestore.schema import BAR_COLUMNS, validate_identifier

if TYPE_CHECKING:
    import psycopg

    from featurestore.pool import Database
    from featurestore.views import FeatureView

__all__ = [
    "Reader",
    "LOOKUP_SQL",
    "range_sql",
    "latest_sql",
    "latest_one_sql",
    "training_sql",
    "point_sql",
    "estimate_sql",
    "render",
    "PER_EVENT_COST",
    "TRAINING_TS_COLUMN",
]

TRAINING_TS_COLUMN = "feature_ts"
# A training frame probes per event in SQL when (distinct events) x PER_EVENT_COST < (rows a range
# read would fetch): one LATERAL probe measured ~4x the cost of streaming one range row
# (benchmarks/read.py, 15-feature view, 2 shared cores: 15-26 µs per probe vs 3.3-6.4 µs per row).
PER_EVENT_COST = 4.0
# Open ends of a range: outside the 1900..2200 span that load accepts, inside what both
# PostgreSQL and Arrow timestamps hold.
_MIN_TS = dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc)
_MAX_TS = dt.datetime(9999, 12, 31, tzinfo=dt.timezone.utc)
_NAT = np.iinfo(np.int64).min  # numpy's NaT as int64
_MIN_US = -62_135_596_800_000_000  # _MIN_TS in µs since the epoch
_UTC = dt.timezone.utc
_TS_DTYPE = pd.DatetimeTZDtype("us", "UTC")
_UTC_SUFFIX = re.compile(r"^\s*(\S.*?)\s*(?:UTC|Z)\s*$", re.IGNORECASE)
_NAIVE_HINT = "pass a tz-aware time, or a string with an offset such as '2024-01-31T00:00Z' or '2024-01-31 UTC'"

LOOKUP_SQL = "SELECT entity_id, symbol FROM entities WHERE symbol = ANY(%(symbols)s::text[])"


def _us(col: str) -> str:
    """SQL: a timestamptz as int8 microseconds since the Unix epoch (NaT sentinel when NULL)."""
    return f"coalesce((extract(epoch FROM {col}) * 1000000)::int8, {_NAT})"


def _from_us(param: str) -> str:
    return f"('epoch'::timestamptz + {param} * interval '1 microsecond')"


def _quote(name: str) -> str:
    return '"' + validate_identifier(name, what="column name") + '"'


def _select(table: str, bar_cols: Sequence[str], feat_cols: Sequence[str]) -> tuple[str, str]:
    """(select list after entity_id, ts; FROM clause) for ``t`` = bars or a view table joined to bars."""
    t = _quote(table) if table != "bars" else "bars"
    if table == "bars":
        cols = [f"t.{_quote(c)}" for c in (*bar_cols, *feat_cols)]
        return "".join(", " + c for c in cols), f"{t} t"
    cols = [f"b.{_quote(c)}" for c in bar_cols] + [f"t.{_quote(c)}" for c in feat_cols]
    source = f"{t} t"
    if bar_cols:
        source += " JOIN bars b ON b.entity_id = t.entity_id AND b.ts = t.ts"
    return "".join(", " + c for c in cols), source


def range_sql(table: str, bar_cols: Sequence[str] = (), feat_cols: Sequence[str] = ()) -> str:
    """The range read: rows of ``table`` for entity ids in ``%(ids)s`` with start <= ts <= end.

    Parameters: ``ids`` (int4[]), ``start``, ``end`` (timestamptz). Rows come in primary-key order
    (an index scan delivers it as is; for many entities the planner may prefer a bitmap scan on
    the same index plus a sort). When bars are joined to a view table the bars
    side repeats the predicates, so both sides are index range scans (PostgreSQL does not carry
    ``= ANY`` across a join).
    """
    cols, source = _select(table, bar_cols, feat_cols)
    where = "t.entity_id = ANY(%(ids)s::int4[]) AND t.ts >= %(start)s::timestamptz AND t.ts <= %(end)s::timestamptz"
    if table != "bars" and bar_cols:
        where += (
            " AND b.entity_id = ANY(%(ids)s::int4[]) AND b.ts >= %(start)s::timestamptz"
            " AND b.ts <= %(end)s::timestamptz"
        )
    return f"SELECT t.entity_id, t.ts{cols} FROM {source} WHERE {where} ORDER BY t.entity_id, t.ts"


def latest_sql(table: str, bar_cols: Sequence[str] = (), feat_cols: Sequence[str] = ()) -> str:
    """Latest row at or before ``%(as_of)s`` for each of ``%(symbols)s``, in the order given.

    One row per requested symbol (NULLs where there is none): a LATERAL join whose inner query is
    an Index Scan Backward with LIMIT 1 per entity. Columns: ordinal, ts as int8 µs (NaT sentinel
    when missing), then the value columns.
    """
    cols, source = _select(table, bar_cols, feat_cols)
    return (
        f"SELECT r.k, {_us('x.ts')}{''.join(', x.' + _quote(c) for c in (*bar_cols, *feat_cols))} "
        "FROM unnest(%(symbols)s::text[]) WITH ORDINALITY AS r(symbol, k) "
        "LEFT JOIN entities e ON e.symbol = r.symbol "
        f"LEFT JOIN LATERAL (SELECT t.ts{cols} FROM {source} "
        "WHERE t.entity_id = e.entity_id AND t.ts <= %(as_of)s::timestamptz "
        "ORDER BY t.ts DESC LIMIT 1) x ON true ORDER BY r.k"
    )


def latest_one_sql(table: str, bar_cols: Sequence[str] = (), feat_cols: Sequence[str] = ()) -> str:
    """:func:`latest_sql` for one symbol (``%(symbol)s``): no row when there is none.

    The online hot path: a scalar parameter lets PostgreSQL keep one generic plan for the
    prepared statement, where the array form is re-planned per call (288 vs 129 µs measured
    against 112 µs for the bare ``ORDER BY ts DESC LIMIT 1`` by entity id; benchmarks/read.py).
    """
    cols, source = _select(table, bar_cols, feat_cols)
    return (
        f"SELECT 1, {_us('x.ts')}{''.join(', x.' + _quote(c) for c in (*bar_cols, *feat_cols))} "
        f"FROM (SELECT t.ts{cols} FROM {source} "
        "WHERE t.entity_id = (SELECT entity_id FROM entities WHERE symbol = %(symbol)s) "
        "AND t.ts <= %(as_of)s::timestamptz ORDER BY t.ts DESC LIMIT 1) x"
    )


def training_sql(table: str, bar_cols: Sequence[str] = (), feat_cols: Sequence[str] = ()) -> str:
    """The rows a training frame can attach: per entity, from its last row at or before its first
    event through its last event.

    Parameters ``ids`` (int4[]) and ``first``/``last`` (int8[] µs since the epoch), one element per
    entity. Two LATERAL index probes per entity: a backward one (LIMIT 1) for the lower bound, then
    a range scan. Rows come grouped by entity with ts ascending (the reader checks, and sorts if a
    plan ever delivers another order).
    """
    cols, source = _select(table, bar_cols, feat_cols)
    t = _quote(table) if table != "bars" else "bars"
    hi = _from_us("r.last_us")
    lo = f"coalesce(s.lo, {_from_us('r.first_us')})"  # no row before the first event: start there
    where = f"t.entity_id = r.e AND t.ts >= {lo} AND t.ts <= {hi}"
    if table != "bars" and bar_cols:
        where += f" AND b.entity_id = r.e AND b.ts >= {lo} AND b.ts <= {hi}"
    outer = "".join(", x." + _quote(c) for c in (*bar_cols, *feat_cols))
    return (
        f"SELECT x.entity_id, x.ts{outer} "
        "FROM unnest(%(ids)s::int4[], %(first)s::int8[], %(last)s::int8[]) AS r(e, first_us, last_us) "
        f"LEFT JOIN LATERAL (SELECT p.ts AS lo FROM {t} p WHERE p.entity_id = r.e "
        f"AND p.ts <= {_from_us('r.first_us')} ORDER BY p.ts DESC LIMIT 1) s ON true "
        f"CROSS JOIN LATERAL (SELECT t.entity_id, t.ts{cols} FROM {source} WHERE {where} ORDER BY t.ts) x"
    )


def point_sql(table: str, bar_cols: Sequence[str] = (), feat_cols: Sequence[str] = ()) -> str:
    """Point-in-time rows for keys (entity, event time): the last row with lo <= ts <= event time.

    Parameters ``ids`` (int4[]), ``ts`` and ``lo`` (int8[] µs), one element per key. One LATERAL
    Index Scan Backward with LIMIT 1 per key; keys with no such row return nothing. Column ``k``
    is the key's 1-based position.
    """
    cols, source = _select(table, bar_cols, feat_cols)
    outer = "".join(", x." + _quote(c) for c in (*bar_cols, *feat_cols))
    where = f"t.entity_id = r.e AND t.ts <= {_from_us('r.t')} AND t.ts >= {_from_us('r.lo')}"
    if table != "bars" and bar_cols:
        where += f" AND b.entity_id = r.e AND b.ts <= {_from_us('r.t')} AND b.ts >= {_from_us('r.lo')}"
    return (
        f"SELECT r.k, x.ts{outer} "
        "FROM unnest(%(ids)s::int4[], %(ts)s::int8[], %(lo)s::int8[]) WITH ORDINALITY AS r(e, t, lo, k) "
        f"CROSS JOIN LATERAL (SELECT t.ts{cols} FROM {source} WHERE {where} ORDER BY t.ts DESC LIMIT 1) x"
    )


def estimate_sql(table: str) -> str:
    """Per entity of a view: rows, first and last ts (µs); sizes a training frame's range read."""
    return (
        f"SELECT s.entity_id, s.n_bars, {_us('f.ts')}, {_us('s.last_ts')} FROM indicator_state s "
        f"CROSS JOIN LATERAL (SELECT t.ts FROM {_quote(table)} t WHERE t.entity_id = s.entity_id "
        "ORDER BY t.ts LIMIT 1) f WHERE s.view_id = %(view_id)s AND s.entity_id = ANY(%(ids)s::int4[])"
    )


_NAMED = re.compile(r"%\((\w+)\)s")


# -- argument normalization ----------------------------------------------------------------------


def _symbols(symbols: str | Iterable[str]) -> list[str]:
    """A str or a sequence of str -> a list without duplicates, first occurrence kept."""
    if isinstance(symbols, str):
        return [symbols]
    if isinstance(symbols, (bytes, dict)) or not isinstance(symbols, Iterable):
        raise ConfigError(f"symbols must be a str or a sequence of str, got {type(symbols).__name__}")
    out = list(dict.fromkeys(symbols))
    for s in out:
        if not isinstance(s, str):
            raise ConfigError(f"symbols must be strings; got {s!r} ({type(s).__name__})")
    return out


def _utc(value: Any, name: str) -> pd.Timestamp:
    """A tz-aware time in UTC; naive times and unparseable values raise ValidationError."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        raise ValidationError(f"{name}={value!r}: numbers are not accepted as times (the unit would be a guess); {_NAIVE_HINT}")
    try:
        suffix = _UTC_SUFFIX.match(value) if isinstance(value, str) else None
        if suffix:  # "2024-01-31 UTC", "2024-01-31Z": pandas parses neither on its own
            ts = pd.Timestamp(suffix.group(1))
            ts = ts.tz_localize(_UTC) if ts.tzinfo is None else ts
        else:
            ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{name}={value!r} is not a time: {exc}") from None
    if ts is pd.NaT:
        raise ValidationError(f"{name} is missing (NaT); pass None for an open end")
    if ts.tzinfo is None:
        raise ValidationError(f"{name}={value!r} has no time zone (naive); {_NAIVE_HINT}")
    return ts.tz_convert(_UTC)


def _bound(value: Any, name: str, *, ceil: bool) -> dt.datetime:
    """A closed interval end at microsecond precision (start rounds up, end down: never widens)."""
    ts = _utc(value, name)
    ts = ts.ceil("us") if ceil else ts.floor("us")
    return ts.to_pydatetime()


def _columns(columns: str | Iterable[str] | None, available: Sequence[str], what: str) -> list[str] | None:
    """Validate a column selection (None: all); unknown names raise NotFoundError listing the available."""
    if columns is None:
        return None
    cols = [columns] if isinstance(columns, str) else list(dict.fromkeys(columns))
    unknown = [c for c in cols if c not in available]
    if unknown:
        raise NotFoundError(f"unknown column(s) {unknown} in {what}; available: {list(available)}")
    return cols


def _split(cols: Sequence[str]) -> tuple[list[str], list[str]]:
    return [c for c in cols if c in BAR_COLUMNS], [c for c in cols if c not in BAR_COLUMNS]


# -- results ---------------------------------------------------------------------------------


def _writable(a: np.ndarray) -> np.ndarray:
    return a if a.flags.writeable else a.copy()


def _frame(
    symbol_level: Sequence[str],
    codes: np.ndarray,
    ts_us: np.ndarray,
    values: dict[str, np.ndarray] | tuple[Sequence[str], np.ndarray],
    *,
    as_arrow: bool,
) -> pd.DataFrame | pa.Table:
    """The documented result from symbol codes into ``symbol_level``, µs timestamps and float columns.

    ``values`` is a dict of columns (bulk reads: no copy into a 2-D block) or (names, 2-D block)
    (small reads: one block is the cheapest frame to build).
    """
    if isinstance(values, tuple):
        names, block = values
        columns = {c: block[:, i] for i, c in enumerate(names)}
    else:
        names, block, columns = list(values), None, values
    ts = ts_us.view("datetime64[us]")
    if as_arrow:
        sym = pa.array(symbol_level, pa.string()).take(pa.array(codes, pa.int32()))
        data = {"symbol": sym, "ts": pa.array(ts, pa.timestamp("us", tz="UTC"), from_pandas=True)}
        data.update({k: pa.array(np.ascontiguousarray(v), pa.float64()) for k, v in columns.items()})
        return pa.table(data)
    if ts.size == 1:  # the latest row of one symbol: skip the hash table
        ts_codes, uniq = (np.zeros(1, np.intp), ts) if ts_us[0] != _NAT else (np.full(1, -1, np.intp), ts[:0])
    else:
        ts_codes, uniq = pd.factorize(ts)
    index = pd.MultiIndex(
        levels=[pd.Index(list(symbol_level)), pd.DatetimeIndex(uniq, dtype=_TS_DTYPE)],
        codes=[codes, ts_codes],
        names=["symbol", "ts"],
        verify_integrity=False,  # levels are unique by construction and codes are in range
    )
    if block is not None:
        return pd.DataFrame(block, index=index, columns=_column_index(tuple(names)), copy=False)
    return pd.DataFrame({k: _writable(v) for k, v in columns.items()}, index=index, copy=False)


@functools.lru_cache(maxsize=256)
def _column_index(names: tuple[str, ...]) -> pd.Index:
    return pd.Index(names)


def _empty(cols: Sequence[str], *, as_arrow: bool) -> pd.DataFrame | pa.Table:
    return _frame([], np.empty(0, np.int32), np.empty(0, np.int64), {c: np.empty(0) for c in cols}, as_arrow=as_arrow)


def _segments(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the runs of equal values in ``ids``."""
    if ids.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    return starts, np.r_[starts[1:], ids.size]


def _block_order(starts: np.ndarray, ends: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Row permutation that puts whole segments in ``order`` (each segment keeps its rows' order)."""
    lengths = (ends - starts)[order]
    out_starts = np.r_[0, np.cumsum(lengths)[:-1]]
    return np.arange(int(lengths.sum())) + np.repeat(starts[order] - out_starts, lengths)


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy()  # float NULL -> NaN; a copy only if chunked or nullable


# -- the reader ------------------------------------------------------------------------------


class Reader:
    """The read step of one store: range, latest and point-in-time reads.

    Bulk reads use a small pool of ADBC connections of its own (the SQLAlchemy pool cannot hand
    out ADBC connections): at most ``bulk_connections`` (default 2) exist at once, idle ones are
    kept for the next read, and a read that finds them all busy for ``pool_timeout`` seconds fails
    with PoolTimeoutError. Point reads use the store's pool. Call :meth:`close` when done.
    """

    def __init__(self, db: Database, *, bulk_connections: int = 2) -> None:
        self._db = db
        url = db.url.update_query_dict({"application_name": "featurestore-bulk"})
        self._uri = libpq_url(url)
        self._bulk_connections = bulk_connections
        self._slots = threading.BoundedSemaphore(bulk_connections)
        self._idle: list[Any] = []
        self._adbc: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """Close the ADBC connections this Reader opened. Idempotent."""
        with self._lock:
            self._closed = True
            conns, self._adbc = self._adbc, []
            self._idle = []
        for conn in conns:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - best effort on a connection that may be dead
                pass

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
    ) -> pd.DataFrame | pa.Table:
        """Bars of ``symbols`` with ``start <= ts <= end`` (see the module docstring for the shape)."""
        cols = _columns(columns, BAR_COLUMNS, "bars") or list(BAR_COLUMNS)
        return self._range("bars", cols, [], symbols, start, end, as_arrow=as_arrow)

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
    ) -> pd.DataFrame | pa.Table:
        """Feature rows of ``view`` (newest version unless ``version``) with ``start <= ts <= end``.

        ``columns`` picks feature columns (default: all); ``include_bars`` adds the bar columns
        (open..volume) before them.
        """
        fv = self._view(view, version)
        feats = _columns(columns, fv.feature_columns, f"view {fv.name!r} v{fv.version}") or list(fv.feature_columns)
        bars = list(BAR_COLUMNS) if include_bars else []
        return self._range(fv.table_name, bars, feats, symbols, start, end, as_arrow=as_arrow)

    def get_latest(
        self,
        symbols: str | Sequence[str],
        *,
        as_of: Any = None,
        view: str | None = None,
        version: int | None = None,
        columns: str | Sequence[str] | None = None,
        as_arrow: bool = False,
    ) -> pd.DataFrame | pa.Table:
        """One row per requested symbol: its last bar (and feature row, with ``view``) at or before ``as_of``.

        ``as_of=None`` means now. Rows keep the requested order; a symbol with no such row (or
        unknown) is present with ts NaT and NaN values. ``columns`` picks among the bar columns
        and, with a view, its feature columns (default: all of them, bars first).
        """
        self._check_open()
        names = _symbols(symbols)
        cut = dt.datetime.now(_UTC) if as_of is None else _bound(as_of, "as_of", ceil=False)
        if view is None:
            table, available = "bars", list(BAR_COLUMNS)
            fv = None
        else:
            fv = self._view(view, version)
            table, available = fv.table_name, [*BAR_COLUMNS, *fv.feature_columns]
        cols = _columns(columns, available, "bars" if fv is None else f"bars and view {fv.name!r} v{fv.version}")
        cols = cols if cols is not None else available
        bar_cols, feat_cols = _split(cols) if fv is not None else (cols, [])
        if not names:
            return _empty(cols, as_arrow=as_arrow)
        # a NUL byte cannot be sent (nor stored): such a symbol is unknown, asked as ''
        sql_names = [n if "\x00" not in n else "" for n in names]
        if len(names) == 1:
            query = latest_one_sql(table, bar_cols, feat_cols)
            params: dict[str, Any] = {"symbol": sql_names[0], "as_of": cut}
        else:
            query = latest_sql(table, bar_cols, feat_cols)
            params = {"symbols": sql_names, "as_of": cut}

        def run(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            return conn.execute(query, params, prepare=True).fetchall()

        rows = self._db.run(run, idempotent=True) or [(1, _NAT, *([None] * len(cols)))]
        ts = np.array([r[1] for r in rows], dtype=np.int64)
        # None (no row) becomes NaN; the SQL selects bar columns first, so reorder to the request
        block = np.array([r[2:] for r in rows], dtype=np.float64).reshape(len(rows), len(cols))
        selected = [*bar_cols, *feat_cols]
        if selected != cols:
            block = block[:, [selected.index(c) for c in cols]]
        return _frame(names, np.arange(len(names), dtype=np.int32), ts, (cols, block), as_arrow=as_arrow)

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
        """
        if strategy not in ("auto", "range", "per_event"):
            raise ConfigError(f"strategy={strategy!r}; use 'auto', 'range' or 'per_event'")
        if not isinstance(events, pd.DataFrame):
            raise ConfigError(f"events must be a pandas DataFrame, got {type(events).__name__}")
        for col in (symbol_col, event_time_col):
            if col not in events.columns:
                raise NotFoundError(f"events have no column {col!r}; columns: {list(events.columns)}")
        tol_us = self._tolerance(tolerance)
        fv = self._view(view, version)
        feats = _columns(columns, fv.feature_columns, f"view {fv.name!r} v{fv.version}") or list(fv.feature_columns)
        bar_cols = list(BAR_COLUMNS) if include_bars else []
        out_cols = [*bar_cols, *feats, TRAINING_TS_COLUMN]
        clash = [c for c in out_cols if c in events.columns]
        if clash:
            raise ConfigError(
                f"events already have column(s) {clash}, which the training frame adds; rename them "
                "or choose other columns="
            )
        ev_ts = self._event_times(events[event_time_col], event_time_col)
        ev_pos, ent_ids = self._event_entities(events[symbol_col])
        ev_pos[ev_ts == _NAT] = -1
        n = len(ev_ts)
        # one key per distinct (entity, event time): duplicated events cost nothing extra
        known = np.flatnonzero(ev_pos >= 0)
        order = known[np.lexsort((ev_ts[known], ev_pos[known]))]
        k_pos, k_ts = ev_pos[order], ev_ts[order]
        new_key = np.r_[True, (k_pos[1:] != k_pos[:-1]) | (k_ts[1:] != k_ts[:-1])] if order.size else np.empty(0, bool)
        key_of_event = np.full(n, -1, dtype=np.int64)
        key_of_event[order] = np.cumsum(new_key) - 1
        key_pos, key_ts = k_pos[new_key], k_ts[new_key]
        lo_us = np.full(key_ts.size, _MIN_US, dtype=np.int64) if tol_us is None else np.maximum(key_ts - tol_us, _MIN_US)
        cols = [*bar_cols, *feats]
        per_event = strategy == "per_event" or (
            strategy == "auto" and key_ts.size > 0 and self._per_event_is_cheaper(fv, ent_ids, key_pos, key_ts)
        )
        if per_event:
            key_row, key_vals = self._attach_per_key(fv, bar_cols, feats, ent_ids, key_pos, key_ts, lo_us)
        else:
            key_row, key_vals = self._attach_by_range(fv, bar_cols, feats, ent_ids, key_pos, key_ts, lo_us)
        hit = key_of_event >= 0
        kidx = np.maximum(key_of_event, 0)
        new: dict[str, Any] = {}
        for c in cols:
            v = key_vals[c]
            new[c] = np.where(hit, v[kidx], np.nan) if v.size else np.full(n, np.nan)
        fts = np.where(hit, key_row[kidx], _NAT) if key_row.size else np.full(n, _NAT)
        out = events.copy(deep=False)
        for c in cols:
            out[c] = new[c]
        out[TRAINING_TS_COLUMN] = pd.DatetimeIndex(fts.view("datetime64[us]")).tz_localize(_UTC).array
        return out

    def _event_entities(self, symbols: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """(position of each event's entity in the returned sorted entity ids, or -1; entity ids)."""
        codes, uniques = pd.factorize(symbols, use_na_sentinel=True)
        uniq = uniques.tolist()
        ids_of = self._lookup([u for u in uniq if isinstance(u, str)])
        ent_ids = np.array(sorted(set(ids_of.values())), dtype=np.int32)
        pos = np.array(
            [int(np.searchsorted(ent_ids, ids_of[u])) if isinstance(u, str) and u in ids_of else -1 for u in uniq]
            + [-1],
            dtype=np.int64,
        )
        return pos[np.where(codes >= 0, codes, len(uniq))], ent_ids

    def _per_event_is_cheaper(
        self, fv: FeatureView, ent_ids: np.ndarray, key_pos: np.ndarray, key_ts: np.ndarray
    ) -> bool:
        """Estimate the rows a range read would fetch; probing per event wins when keys are fewer."""
        used = np.unique(key_pos)
        first_ev = np.minimum.reduceat(key_ts, np.flatnonzero(np.r_[True, key_pos[1:] != key_pos[:-1]]))
        last_ev = np.maximum.reduceat(key_ts, np.flatnonzero(np.r_[True, key_pos[1:] != key_pos[:-1]]))
        query = estimate_sql(fv.table_name)

        def run(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            return conn.execute(query, {"view_id": fv.view_id, "ids": ent_ids[used].tolist()}).fetchall()

        stats = {r[0]: r[1:] for r in self._db.run(run, idempotent=True)}
        rows = 0.0
        for e, a, b in zip(ent_ids[used].tolist(), first_ev.tolist(), last_ev.tolist()):
            if e not in stats:
                continue
            n_bars, first_ts, last_ts = stats[e]
            span = max(last_ts - first_ts, 1)
            rows += 1 + n_bars * min(1.0, max(0.0, (min(b, last_ts) - max(a, first_ts)) / span))
        return key_ts.size * PER_EVENT_COST < rows

    def _attach_per_key(
        self,
        fv: FeatureView,
        bar_cols: list[str],
        feats: list[str],
        ent_ids: np.ndarray,
        key_pos: np.ndarray,
        key_ts: np.ndarray,
        lo_us: np.ndarray,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One LATERAL probe per key in SQL (few events over long histories)."""
        cols = [*bar_cols, *feats]
        m = key_ts.size
        row_ts = np.full(m, _NAT, dtype=np.int64)
        vals = {c: np.full(m, np.nan) for c in cols}
        table = self._fetch(
            point_sql(fv.table_name, bar_cols, feats),
            {"ids": ent_ids[key_pos], "ts": key_ts, "lo": lo_us},
        )
        k = _column(table, "k").astype(np.int64) - 1  # WITH ORDINALITY counts from 1
        row_ts[k] = table.column("ts").cast(pa.int64()).to_numpy()
        for c in cols:
            vals[c][k] = _column(table, c)
        return row_ts, vals

    def _attach_by_range(
        self,
        fv: FeatureView,
        bar_cols: list[str],
        feats: list[str],
        ent_ids: np.ndarray,
        key_pos: np.ndarray,
        key_ts: np.ndarray,
        lo_us: np.ndarray,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Read each entity's rows over its events' span, then a binary search per entity in numpy."""
        cols = [*bar_cols, *feats]
        m = key_ts.size
        hit = np.full(m, -1, dtype=np.int64)
        if m:
            starts = np.flatnonzero(np.r_[True, key_pos[1:] != key_pos[:-1]])
            ends = np.r_[starts[1:], m]
            first, last = key_ts[starts], key_ts[ends - 1]  # keys are sorted by (entity, ts)
            table = self._fetch(
                training_sql(fv.table_name, bar_cols, feats),
                {"ids": ent_ids[key_pos[starts]], "first": first, "last": last},
            )
            row_eid = _column(table, "entity_id").astype(np.int32, copy=False)
            row_ts = table.column("ts").cast(pa.int64()).to_numpy()
            # rows come grouped by entity (ascending, as requested) with ts ascending; sort if not
            if row_eid.size > 1:
                step_e, step_t = np.diff(row_eid), np.diff(row_ts)
                if not bool(np.all((step_e > 0) | ((step_e == 0) & (step_t > 0)))):
                    perm = np.lexsort((row_ts, row_eid))
                    row_eid, row_ts = row_eid[perm], row_ts[perm]
                    table = table.take(pa.array(perm))
            seg_lo = np.searchsorted(row_eid, ent_ids[key_pos[starts]], "left")
            seg_hi = np.searchsorted(row_eid, ent_ids[key_pos[starts]], "right")
            for g in range(starts.size):
                lo, hi = int(seg_lo[g]), int(seg_hi[g])
                if lo < hi:
                    a, b = int(starts[g]), int(ends[g])
                    j = np.searchsorted(row_ts[lo:hi], key_ts[a:b], "right") - 1
                    hit[a:b] = np.where(j >= 0, j + lo, -1)
            values = {c: _column(table, c) for c in cols}
        else:
            row_ts = np.empty(0, np.int64)
            values = {c: np.empty(0) for c in cols}
        found = hit >= 0
        idx = np.maximum(hit, 0)
        if row_ts.size:
            found &= row_ts[idx] >= lo_us
        out_ts = np.where(found, row_ts[idx], _NAT) if row_ts.size else np.full(m, _NAT)
        out = {c: (np.where(found, v[idx], np.nan) if v.size else np.full(m, np.nan)) for c, v in values.items()}
        return out_ts, out

    # -- internals --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionError("this Reader is closed; make a new one")

    def _view(self, name: str, version: int | None) -> FeatureView:
        from featurestore.views import get_view

        if not isinstance(name, str):
            raise ConfigError(f"view must be a view name (str), got {type(name).__name__}")
        validate_identifier(name, what="view name")  # before it reaches SQL (NUL bytes, 10k chars)
        return self._db.run(lambda conn: get_view(conn, name, version), idempotent=True)

    def _lookup(self, names: Sequence[str]) -> dict[str, int]:
        """symbol -> entity id for the symbols that exist."""
        # no stored symbol can hold a NUL byte (PostgreSQL text cannot), so such a name simply
        # does not exist; sending it would be a driver error instead
        names = [n for n in names if "\x00" not in n]
        if not names:
            return {}

        def run(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            return conn.execute(LOOKUP_SQL, {"symbols": list(names)}, prepare=True).fetchall()

        return {sym: eid for eid, sym in self._db.run(run, idempotent=True)}

    @staticmethod
    def _tolerance(tolerance: Any) -> int | None:
        if tolerance is None:
            return None
        try:
            td = pd.Timedelta(tolerance)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"tolerance={tolerance!r} is not a duration: {exc}") from None
        if td is pd.NaT or td < pd.Timedelta(0):
            raise ConfigError(f"tolerance={tolerance!r} must be a duration >= 0 (e.g. '7D'), or None")
        return int(td.value // 1000)

    @staticmethod
    def _event_times(col: pd.Series, name: str) -> np.ndarray:
        """tz-aware event times -> int64 µs since the epoch (NaT sentinel kept)."""
        dtype = col.dtype
        if not isinstance(dtype, pd.DatetimeTZDtype):
            if pd.api.types.is_datetime64_dtype(dtype):
                raise ValidationError(
                    f"event times have no time zone (naive); {_NAIVE_HINT} "
                    f"(e.g. events[{name!r}].dt.tz_localize('UTC'))",
                    column=name,
                )
            raise ValidationError(
                f"event times must be tz-aware datetimes, got dtype {dtype}; convert with "
                f"pandas.to_datetime(events[{name!r}], utc=True) if they are UTC",
                column=name,
            )
        values = col.dt.tz_convert(_UTC).array.as_unit("us")
        return np.asarray(values.asi8, dtype=np.int64)

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
    ) -> pd.DataFrame | pa.Table:
        names = _symbols(symbols)
        lo = _MIN_TS if start is None else _bound(start, "start", ceil=True)
        hi = _MAX_TS if end is None else _bound(end, "end", ceil=False)
        if start is not None and end is not None and _utc(start, "start") > _utc(end, "end"):
            raise ConfigError(f"start ({start}) is after end ({end})")
        cols = [*bar_cols, *feat_cols]
        ids_of = self._lookup(names)
        if not ids_of:
            return _empty(cols, as_arrow=as_arrow)
        # symbol level: the found symbols, sorted; ids passed ascending (the index's order)
        level = sorted(ids_of)
        ids = np.array(sorted(ids_of.values()), dtype=np.int32)
        code_of_id = {ids_of[s]: k for k, s in enumerate(level)}
        table_ = self._fetch(range_sql(table, bar_cols, feat_cols), {"ids": ids, "start": lo, "end": hi})
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
        return _frame(level_used, codes, ts, values, as_arrow=as_arrow)

    def _connect_adbc(self) -> Any:
        import adbc_driver_postgresql.dbapi as adbc

        conn = adbc.connect(self._uri, autocommit=True)
        with self._lock:
            if self._closed:
                conn.close()
                raise ConnectionError("this Reader is closed")
            self._adbc.append(conn)
        return conn

    def _drop_adbc(self, conn: Any) -> None:
        with self._lock:
            if conn in self._adbc:
                self._adbc.remove(conn)
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - it is being discarded because it failed
            pass

    def _fetch(self, query: str, params: dict[str, Any]) -> pa.Table:
        """Run a bulk read on a pooled ADBC connection; reconnect once if it died.

        The parameters are rendered as literals (numbers and timestamps only, never user text):
        ADBC streams a query without parameters through binary COPY, a bound one not (see the
        module docstring for the measurement).
        """
        import adbc_driver_manager.dbapi as dbapi

        from featurestore.errors import PoolTimeoutError

        self._check_open()
        text = render(query, params)
        if not self._slots.acquire(timeout=self._db.pool_timeout):
            raise PoolTimeoutError(
                f"no free bulk-read connection after {self._db.pool_timeout:g} s: all "
                f"{self._bulk_connections} are busy; raise pool_timeout, or read fewer things at once"
            )
        try:
            for attempt in range(2):
                with self._lock:
                    conn = self._idle.pop() if self._idle else None
                try:
                    if conn is None:
                        conn = self._connect_adbc()
                    with conn.cursor() as cur:
                        cur.execute(text)
                        table = cur.fetch_arrow_table()
                except (dbapi.OperationalError, dbapi.InterfaceError, dbapi.InternalError) as exc:
                    if conn is not None:
                        self._drop_adbc(conn)
                    if attempt == 0:
                        continue
                    raise ConnectionError(f"bulk read failed on a fresh connection: {exc}") from exc
                with self._lock:
                    if self._closed:
                        closing = True
                    else:
                        closing = False
                        self._idle.append(conn)
                if closing:
                    self._drop_adbc(conn)
                return table
        finally:
            self._slots.release()
        raise AssertionError("unreachable")  # pragma: no cover


def _literal(value: Any) -> str:
    """A SQL literal for a value the reader itself produced: int arrays, ints, UTC datetimes."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iu":
            raise TypeError(f"only integer arrays are rendered, got {value.dtype}")
        return "'{" + ",".join(map(str, value.tolist())) + "}'"
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise TypeError("naive datetime")
        return "'" + value.astimezone(_UTC).isoformat() + "'"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    raise TypeError(f"cannot render {type(value).__name__} as a literal")


def render(query: str, params: dict[str, Any]) -> str:
    """``query`` with each ``%(name)s`` replaced by the literal of ``params[name]`` (bulk reads)."""
    return _NAMED.sub(lambda m: _literal(params[m.group(1)]), query)


# -- downcast ----------------------------------------------------------------------------------


def downcast(result: pd.DataFrame | pa.Table) -> pd.DataFrame | pa.Table:
    """The same result in the smallest exact-enough dtypes: float32 values, categorical symbols.

    float64 -> float32 keeps about 7 significant digits (relative error <= 2**-24, ~6e-8); the
    database keeps float64. Symbols become a categorical index level (pandas) or a dictionary
    column (Arrow), so each distinct symbol is stored once. Timestamps are unchanged.
    """
    if isinstance(result, pa.Table):
        fields = []
        for f in result.schema:
            if pa.types.is_float64(f.type):
                fields.append(pa.field(f.name, pa.float32()))
            elif f.name == "symbol" and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type)):
                fields.append(pa.field(f.name, pa.dictionary(pa.int32(), pa.string())))
            else:
                fields.append(f)
        return result.cast(pa.schema(fields))
    out = result.astype({c: np.float32 for c, t in result.dtypes.items() if t == np.float64})
    if isinstance(out.index, pd.MultiIndex) and "symbol" in out.index.names:
        level = out.index.names.index("symbol")
        codes, uniques = pd.factorize(out.index.get_level_values(level), sort=True)
        cat = pd.Categorical.from_codes(codes, categories=pd.Index(uniques))
        arrays = [cat if i == level else out.index.get_level_values(i) for i in range(out.index.nlevels)]
        out.index = pd.MultiIndex.from_arrays(arrays, names=out.index.names)
    elif "symbol" in out.columns:
        out["symbol"] = out["symbol"].astype("category")
    return out
