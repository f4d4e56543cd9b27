"""[read] Point-in-time training frames: each event gets the last feature row at or before it.

Two strategies give the same result: one range read per symbol over its events' span, then a
binary search per symbol in numpy (many events per symbol), or one LATERAL index probe per
distinct (symbol, event time) in SQL (few events over long histories); ``"auto"`` estimates both.

Knowledge time: ``as_known_at=T`` runs the same reads on the store as it stood at ``T`` (the
known forms of the queries, probes clamped to ``T`` minus the view's availability lag);
``known_at_col`` resolves each event at its own decision time from every row version
(:mod:`featurestore.read.versions`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from featurestore.errors import ConfigError, HistoryError, NotFoundError
from featurestore.read.args import _columns, _event_times, _tolerance, knowledge_time
from featurestore.read.frames import _column
from featurestore.read.sql import _MIN_US, _NAT, _UTC, estimate_sql, point_sql, training_sql
from featurestore.read.versions import attach_known_per_event
from featurestore.schema import BAR_COLUMNS
from featurestore.segments import to_us

if TYPE_CHECKING:
    import psycopg

    from featurestore.read import Reader
    from featurestore.views import FeatureView

__all__ = ["PER_EVENT_COST", "TRAINING_TS_COLUMN", "training_frame"]

TRAINING_TS_COLUMN = "feature_ts"
# A training frame probes per event in SQL when (distinct events) x PER_EVENT_COST < (rows a range
# read would fetch): the cost of one LATERAL probe relative to streaming one range row, as
# measured by benchmarks/read.py (15-feature view; see benchmarks/results/read.md).
PER_EVENT_COST = 4.0


def training_frame(
    reader: Reader,
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
    """The training frame of :meth:`featurestore.read.Reader.get_training_frame` (its docstring has the contract)."""
    if as_known_at is not None and known_at_col is not None:
        raise ConfigError("pass as_known_at (one knowledge time for the whole frame) or known_at_col (one per event), not both")
    if known_at_col is not None and not isinstance(known_at_col, str):
        raise ConfigError(f"known_at_col must be a column name (str), got {type(known_at_col).__name__}")
    if strategy not in ("auto", "range", "per_event"):
        raise ConfigError(f"strategy={strategy!r}; use 'auto', 'range' or 'per_event'")
    if not isinstance(events, pd.DataFrame):
        raise ConfigError(f"events must be a pandas DataFrame, got {type(events).__name__}")
    for col in (symbol_col, event_time_col, *([known_at_col] if known_at_col is not None else [])):
        if col not in events.columns:
            raise NotFoundError(f"events have no column {col!r}; columns: {list(events.columns)}")
    tol_us = _tolerance(tolerance)
    known = knowledge_time(as_known_at)
    fv = reader._view(view, version, known)
    lag_us = _lag_us(fv)
    feats = _columns(columns, fv.feature_columns, f"view {fv.name!r} v{fv.version}") or list(fv.feature_columns)
    bar_cols = list(BAR_COLUMNS) if include_bars else []
    out_cols = [*bar_cols, *feats, TRAINING_TS_COLUMN]
    clash = [c for c in out_cols if c in events.columns]
    if clash:
        raise ConfigError(
            f"events already have column(s) {clash}, which the training frame adds; rename them "
            "or choose other columns="
        )
    ev_ts = _event_times(events[event_time_col], event_time_col)
    ev_d = _event_times(events[known_at_col], known_at_col) if known_at_col is not None else None
    if ev_d is not None:
        _check_history(reader, fv, events, ev_d, known_at_col)  # type: ignore[arg-type]
    ev_pos, ent_ids = _event_entities(reader, events[symbol_col])
    ev_pos[ev_ts == _NAT] = -1
    if ev_d is not None:
        ev_pos[ev_d == _NAT] = -1  # no decision time: nothing was known
    n = len(ev_ts)
    # one key per distinct (entity, event time[, decision time]): duplicated events cost nothing extra
    valid = np.flatnonzero(ev_pos >= 0)
    sort_keys = (ev_ts[valid], ev_pos[valid]) if ev_d is None else (ev_d[valid], ev_ts[valid], ev_pos[valid])
    order = valid[np.lexsort(sort_keys)]
    k_pos, k_ts = ev_pos[order], ev_ts[order]
    if order.size:
        new_key = np.r_[True, (k_pos[1:] != k_pos[:-1]) | (k_ts[1:] != k_ts[:-1])]
        if ev_d is not None:
            k_d = ev_d[order]
            new_key |= np.r_[True, k_d[1:] != k_d[:-1]]
    else:
        new_key = np.empty(0, bool)
    key_of_event = np.full(n, -1, dtype=np.int64)
    key_of_event[order] = np.cumsum(new_key) - 1
    key_pos, key_ts = k_pos[new_key], k_ts[new_key]
    lo_us = np.full(key_ts.size, _MIN_US, dtype=np.int64) if tol_us is None else np.maximum(key_ts - tol_us, _MIN_US)
    cols = [*bar_cols, *feats]
    if ev_d is not None:
        key_d = ev_d[order][new_key]
        # a row at ts is usable only once known: ts + lag <= decision time
        key_up = np.minimum(key_ts, key_d - lag_us)
        key_row, key_vals = attach_known_per_event(
            reader, fv.table_name, bar_cols, feats, ent_ids, key_pos, key_up, lo_us, key_d
        )
    else:
        # with as_known_at, rows later than T - lag were not published yet: probe no further
        probe_ts = key_ts if known is None else np.minimum(key_ts, to_us(known) - lag_us)
        per_event = strategy == "per_event" or (
            strategy == "auto"
            and key_ts.size > 0
            and _per_event_is_cheaper(reader, fv, ent_ids, key_pos, key_ts)
        )
        attach = _attach_per_key if per_event else _attach_by_range
        key_row, key_vals = attach(reader, fv, bar_cols, feats, ent_ids, key_pos, probe_ts, lo_us, known)
    hit = key_of_event >= 0
    kidx = np.maximum(key_of_event, 0)
    new: dict[str, Any] = {}
    for c in cols:
        v = key_vals[c]
        new[c] = np.where(hit, v[kidx], np.nan) if v.size else np.full(n, np.nan)
    fts = np.where(hit, key_row[kidx], _NAT) if key_row.size else np.full(n, _NAT)
    # a deep copy: the result (which the cache may keep) must share no buffer with the caller's
    # events, or a later write through events[...].array would change a cached result
    out = events.copy(deep=True)
    f32 = fv.float32_columns  # a float32 view's columns: values read from real, exact in float32
    for c in cols:
        out[c] = new[c].astype(np.float32) if c in f32 else new[c]
    out[TRAINING_TS_COLUMN] = pd.DatetimeIndex(fts.view("datetime64[us]")).tz_localize(_UTC).array
    return out


def _lag_us(fv: FeatureView) -> int:
    """The view's availability lag in µs (``FeatureView.available_after``; 0 when absent)."""
    lag = getattr(fv, "available_after", None)
    if lag is None:
        return 0
    td = pd.Timedelta(lag)
    if td is pd.NaT or td < pd.Timedelta(0):
        raise ConfigError(f"view {fv.name!r} v{fv.version} has an invalid available_after={lag!r}")
    return int(td.value // 1000)


_HISTORY_SINCE_SQL = "SELECT history_since FROM store_state WHERE id = 1"


def _check_history(reader: Reader, fv: FeatureView, events: pd.DataFrame, ev_d: np.ndarray, col: str) -> None:
    """HistoryError naming the first event decided before the store's history or the view's
    ``ready_at``: what the store knew then cannot be answered (its features were not computed)."""
    since = reader._run(lambda conn: conn.execute(_HISTORY_SINCE_SQL, prepare=True).fetchone()[0])  # type: ignore[index]
    since_us = to_us(since)
    ready_us = to_us(fv.ready_at) if fv.ready_at is not None else np.iinfo(np.int64).max
    bound = max(since_us, ready_us)
    early = np.flatnonzero((ev_d != _NAT) & (ev_d < bound))
    if early.size:
        i = int(early[0])
        when = pd.Timestamp(int(ev_d[i]), unit="us", tz=_UTC).isoformat()
        if ready_us > since_us:
            what = f"view {fv.name!r} v{fv.version} was ready only at {fv.ready_at.isoformat() if fv.ready_at else '(never)'}"
        else:
            what = f"the store's history starts at {since.isoformat()}"
        raise HistoryError(
            f"event at position {i} (index {events.index[i]!r}) has {col}={when}, before what the store can answer "
            f"for: {what} ({early.size} event(s) decided that early); drop or move those events"
        )


def _event_entities(reader: Reader, symbols: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(position of each event's entity in the returned sorted entity ids, or -1; entity ids)."""
    codes, uniques = pd.factorize(symbols, use_na_sentinel=True)
    uniq = uniques.tolist()
    ids_of = reader._lookup([u for u in uniq if isinstance(u, str)])
    ent_ids = np.array(sorted(set(ids_of.values())), dtype=np.int32)
    pos = np.array(
        [int(np.searchsorted(ent_ids, ids_of[u])) if isinstance(u, str) and u in ids_of else -1 for u in uniq]
        + [-1],
        dtype=np.int64,
    )
    return pos[np.where(codes >= 0, codes, len(uniq))], ent_ids


def _per_event_is_cheaper(
    reader: Reader, fv: FeatureView, ent_ids: np.ndarray, key_pos: np.ndarray, key_ts: np.ndarray
) -> bool:
    """Estimate the rows a range read would fetch; probing per event wins when keys are fewer."""
    used = np.unique(key_pos)
    first_ev = np.minimum.reduceat(key_ts, np.flatnonzero(np.r_[True, key_pos[1:] != key_pos[:-1]]))
    last_ev = np.maximum.reduceat(key_ts, np.flatnonzero(np.r_[True, key_pos[1:] != key_pos[:-1]]))
    query = estimate_sql(fv.table_name)

    def run(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
        return conn.execute(query, {"view_id": fv.view_id, "ids": ent_ids[used].tolist()}).fetchall()

    stats = {r[0]: r[1:] for r in reader._run(run)}
    rows = 0.0
    for e, a, b in zip(ent_ids[used].tolist(), first_ev.tolist(), last_ev.tolist()):
        if e not in stats:
            continue
        n_bars, first_ts, last_ts = stats[e]
        span = max(last_ts - first_ts, 1)
        rows += 1 + n_bars * min(1.0, max(0.0, (min(b, last_ts) - max(a, first_ts)) / span))
    return key_ts.size * PER_EVENT_COST < rows


def _attach_per_key(
    reader: Reader,
    fv: FeatureView,
    bar_cols: list[str],
    feats: list[str],
    ent_ids: np.ndarray,
    key_pos: np.ndarray,
    key_ts: np.ndarray,
    lo_us: np.ndarray,
    known: dt.datetime | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One LATERAL probe per key in SQL (few events over long histories)."""
    cols = [*bar_cols, *feats]
    m = key_ts.size
    row_ts = np.full(m, _NAT, dtype=np.int64)
    vals = {c: np.full(m, np.nan) for c in cols}
    params: dict[str, Any] = {"ids": ent_ids[key_pos], "ts": key_ts, "lo": lo_us}
    if known is not None:
        params["known_at"] = known
    tables = [fv.table_name, *(["bars"] if bar_cols else [])]
    upper = int(key_ts.max()) if m else _MIN_US
    if m == 0:  # no key (a distributed store would have no shard group to route to)
        return row_ts, vals
    query = point_sql(fv.table_name, bar_cols, feats, known=known is not None, distributed=reader.distributed)
    for pos, table in reader._fetch_grouped(query, params, ("ids", "ts", "lo"), tables, upper):
        k = pos[_column(table, "k").astype(np.int64) - 1]  # WITH ORDINALITY counts from 1
        row_ts[k] = table.column("ts").cast(pa.int64()).to_numpy()
        for c in cols:
            vals[c][k] = _column(table, c)
    return row_ts, vals


def _attach_by_range(
    reader: Reader,
    fv: FeatureView,
    bar_cols: list[str],
    feats: list[str],
    ent_ids: np.ndarray,
    key_pos: np.ndarray,
    key_ts: np.ndarray,
    lo_us: np.ndarray,
    known: dt.datetime | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Read each entity's rows over its events' span, then a binary search per entity in numpy."""
    cols = [*bar_cols, *feats]
    m = key_ts.size
    hit = np.full(m, -1, dtype=np.int64)
    if m:
        starts = np.flatnonzero(np.r_[True, key_pos[1:] != key_pos[:-1]])
        ends = np.r_[starts[1:], m]
        first, last = key_ts[starts], key_ts[ends - 1]  # keys are sorted by (entity, ts)
        params: dict[str, Any] = {"ids": ent_ids[key_pos[starts]], "first": first, "last": last}
        if known is not None:
            params["known_at"] = known
        tables = [fv.table_name, *(["bars"] if bar_cols else [])]
        query = training_sql(fv.table_name, bar_cols, feats, known=known is not None, distributed=reader.distributed)
        parts = reader._fetch_grouped(query, params, ("ids", "first", "last"), tables, int(last.max()))
        table = pa.concat_tables([t for _, t in parts]) if len(parts) != 1 else parts[0][1]
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
