"""[read] Latest rows: the request's plan, its statement, its result frame; shared by the sync
:class:`~featurestore.read.Reader` and the asyncio store, so both answer exactly alike.

A plan's ``shape`` says which requests one query can answer together (request coalescing,
:mod:`featurestore.read.coalesce`): the same table, columns and times; their symbols are merged
into one ``latest_sql`` statement and each request takes its own rows back.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from featurestore.read.args import _bound, _columns, _split, _symbols, knowledge_time
from featurestore.read.frames import _empty, _frame
from featurestore.read.sql import _NAT, _UTC, latest_one_sql, latest_sql
from featurestore.schema import BAR_COLUMNS

if TYPE_CHECKING:
    from featurestore.views import FeatureView

__all__ = [
    "LatestPlan", "plan", "gate_shape", "statement", "checked_statement", "checked_rows", "ViewCache",
    "split_rows", "merge", "to_frame", "to_dicts",
]


@dataclass(frozen=True)
class LatestPlan:
    """One latest request, resolved: symbols, times, table and columns."""

    names: tuple[str, ...]
    as_of: dt.datetime | None  # None: now, taken when the statement is made
    known: dt.datetime | None
    table: str
    fv: FeatureView | None
    cols: tuple[str, ...]
    bar_cols: tuple[str, ...]
    feat_cols: tuple[str, ...]

    @property
    def f32(self) -> frozenset[str]:
        return self.fv.float32_columns if self.fv is not None else frozenset()

    @property
    def shape(self) -> Hashable:
        """Requests of one shape can share one statement."""
        return (self.table, self.bar_cols, self.feat_cols, self.as_of, self.known)

    def sql_names(self, names: Sequence[str] | None = None) -> list[str]:
        # a NUL byte cannot be sent (nor stored): such a symbol is unknown, asked as ''
        return [n if "\x00" not in n else "" for n in (self.names if names is None else names)]

    def cut(self) -> dt.datetime:
        """The time the rows must be at or before."""
        if self.as_of is not None:
            return self.as_of
        return dt.datetime.now(_UTC) if self.known is None else self.known


def plan(
    symbols: str | Sequence[str],
    view_of: Any,
    *,
    as_of: Any = None,
    view: str | None = None,
    version: int | None = None,
    columns: str | Sequence[str] | None = None,
    as_known_at: Any = None,
) -> LatestPlan:
    """Check and resolve a latest request; ``view_of(name, version, known)`` looks the view up."""
    names = _symbols(symbols)
    known = knowledge_time(as_known_at)
    cut = None if as_of is None else _bound(as_of, "as_of", ceil=False)
    if view is None:
        table, available = "bars", list(BAR_COLUMNS)
        fv = None
    else:
        fv = view_of(view, version, known)
        if known is not None and fv.available_after:
            lag_cut = known - fv.available_after  # rows known only from ts + the lag
            cut = lag_cut if cut is None else min(cut, lag_cut)
        table, available = fv.table_name, [*BAR_COLUMNS, *fv.feature_columns]
    cols = _columns(columns, available, "bars" if fv is None else f"bars and view {fv.name!r} v{fv.version}")
    cols = cols if cols is not None else available
    bar_cols, feat_cols = _split(cols) if fv is not None else (cols, [])
    return LatestPlan(tuple(names), cut, known, table, fv, tuple(cols), tuple(bar_cols), tuple(feat_cols))


def gate_shape(as_of: Any, view: Any, version: Any, columns: Any) -> Hashable | None:
    """The key under which latest requests with these arguments (and no knowledge time) may be
    merged before they are planned — one view lookup and one statement for all of them — or
    None when an argument is of a kind planning will refuse (the request then runs alone and
    gets that error itself)."""
    if view is not None and not isinstance(view, str):
        return None
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        return None
    if columns is not None and not isinstance(columns, str):
        if not isinstance(columns, (list, tuple)) or not all(isinstance(c, str) for c in columns):
            return None
        columns = tuple(columns)
    cut = None if as_of is None else _bound(as_of, "as_of", ceil=False)
    return ("latest", view, version, columns, cut)


def statement(
    p: LatestPlan, names: Sequence[str], cut: dt.datetime, *, one: bool | None = None, distributed: bool = False,
    entity_id: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """The statement and parameters reading the latest rows of ``names`` at ``cut``: the
    scalar one-symbol form (one generic prepared plan, the online hot path) for one symbol.
    ``distributed``: the form a Citus store plans (:func:`latest_sql`)."""
    sql_names = p.sql_names(names)
    known = p.known is not None
    # Citus routes the one-symbol form whole to a worker, where the knowledge function cannot run
    if ((len(sql_names) == 1) if one is None else one) and not (known and distributed):
        query = _one_sql(p.table, p.bar_cols, p.feat_cols, known, distributed)
        params: dict[str, Any] = {"symbol": sql_names[0], "as_of": cut}
        if distributed:  # by entity id (the caller looks it up: ROUTED_LOOKUP), a router query
            params = {"entity": entity_id, "as_of": cut}
    else:
        query = _many_sql(p.table, p.bar_cols, p.feat_cols, known, distributed)
        params = {"symbols": sql_names, "as_of": cut}
    if known:
        params["known_at"] = p.known
    return query, params


class ViewCache:
    """The view versions latest reads planned with, by (name, requested version), so that a
    one-symbol read needs one statement, not a view lookup and then a statement: the statement
    checks in passing that the lookup would still find the same version (its ``view_id``), and
    a read whose check fails plans again (:func:`checked_rows`). Shared by the sync and
    asyncio stores of one store; bounded."""

    def __init__(self, size: int = 256) -> None:
        self._views: dict[tuple[str, int | None], FeatureView] = {}
        self._size = size

    def get(self, name: Any, version: Any) -> FeatureView | None:
        return self._views.get((name, version)) if isinstance(name, str) else None

    def put(self, name: str, version: int | None, fv: FeatureView) -> None:
        if len(self._views) >= self._size:
            self._views.clear()
        self._views[(name, version)] = fv

    def forget(self, name: str, version: int | None) -> None:
        self._views.pop((name, version), None)


# SQLSTATEs of a cached view's statement whose table was dropped (and perhaps made again with
# other columns): undefined table, undefined column, cached plan result type changed
VIEW_CHANGED = frozenset({"42P01", "42703", "0A000"})


def checked_statement(p: LatestPlan, version: int | None, cut: dt.datetime) -> tuple[str, dict[str, Any]]:
    """:func:`statement` for the one symbol of ``p`` (planned with a cached view), with a
    leading column: the ``view_id`` a view lookup by (name, ``version``) finds now. Always one row."""
    assert p.fv is not None and p.known is None and len(p.names) == 1
    query, params = statement(p, p.names, cut, one=True)
    params["view_name"] = p.fv.name
    params["view_status"] = "ready"  # featurestore.views.READY
    if version is not None:
        params["view_version"] = version
    return _checked_sql(query, version is not None), params


def checked_rows(rows: list[tuple[Any, ...]], fv: FeatureView) -> list[tuple[Any, ...]] | None:
    """The rows of a :func:`checked_statement` as :func:`statement`'s would be, or None when the
    view changed since ``fv`` was cached (plan again)."""
    r = rows[0]
    if r[0] != fv.view_id:
        return None
    return [(1, _NAT, *r[3:])] if r[1] is None else [r[1:]]


@functools.lru_cache(maxsize=64)
def _checked_sql(query: str, pinned: bool) -> str:
    version = " AND version = %(view_version)s" if pinned else ""
    return (
        "SELECT c.view_id, q.* FROM (SELECT (SELECT view_id FROM feature_views WHERE name = %(view_name)s "
        f"AND status = %(view_status)s{version} ORDER BY version DESC LIMIT 1) AS view_id) c "
        f"LEFT JOIN LATERAL ({query}) q ON true"
    )


@functools.lru_cache(maxsize=512)
def _one_sql(table: str, bar_cols: tuple[str, ...], feat_cols: tuple[str, ...], known: bool, by_id: bool = False) -> str:
    """:func:`latest_one_sql`, built once per shape (its identifiers are validated each build)."""
    return latest_one_sql(table, bar_cols, feat_cols, known=known, by_id=by_id)


# the entity id of a one-symbol read on a Citus store (a reference table: read on any node)
ROUTED_LOOKUP = "SELECT entity_id FROM entities WHERE symbol = %s"


def routed_check(p: LatestPlan, fv: FeatureView, version: int | None) -> tuple[str, dict[str, Any]]:
    """:func:`routed_check_sql` with its parameters for plan ``p`` (one symbol, cached view ``fv``)."""
    params: dict[str, Any] = {"view_name": fv.name, "view_status": "ready", "symbol": p.sql_names()[0]}
    if version is not None:
        params["view_version"] = version
    return routed_check_sql(version is not None), params


def no_row(p: LatestPlan) -> tuple[Any, ...]:
    """The row of a symbol with no latest row (ts NaT, every value NULL)."""
    return (1, _NAT, *([None] * len(p.cols)))


def routed_check_sql(pinned: bool) -> str:
    """A cached view's one-symbol read on Citus, first statement: the ``view_id`` a lookup by
    name (and version) finds now, and the symbol's entity id, in one statement over reference
    tables; the probe by id (a router query) follows. Two statements, where a view looked up
    each time would take three."""
    return _ROUTED_CHECK_PINNED if pinned else _ROUTED_CHECK


_ROUTED_CHECK = (
    "SELECT (SELECT view_id FROM feature_views WHERE name = %(view_name)s AND status = %(view_status)s "
    "ORDER BY version DESC LIMIT 1), (SELECT entity_id FROM entities WHERE symbol = %(symbol)s)"
)
_ROUTED_CHECK_PINNED = (
    "SELECT (SELECT view_id FROM feature_views WHERE name = %(view_name)s AND status = %(view_status)s "
    "AND version = %(view_version)s ORDER BY version DESC LIMIT 1), (SELECT entity_id FROM entities WHERE symbol = %(symbol)s)"
)


def routed_one(p: LatestPlan, names: Sequence[str], distributed: bool) -> bool:
    """True when a read of ``names`` under ``p`` takes the by-id one-symbol form (Citus)."""
    return distributed and len(names) == 1 and p.known is None


@functools.lru_cache(maxsize=512)
def _many_sql(table: str, bar_cols: tuple[str, ...], feat_cols: tuple[str, ...], known: bool, distributed: bool) -> str:
    return latest_sql(table, bar_cols, feat_cols, known=known, distributed=distributed)


def missing(rows: list[tuple[Any, ...]], names: Sequence[str]) -> list[int]:
    """Positions of ``rows`` (one per name) that found nothing, for names that can exist."""
    return [k for k, r in enumerate(rows) if r[1] == _NAT and "\x00" not in names[k] and names[k]]


def merge(requests: Sequence[Sequence[str]]) -> tuple[list[str], list[list[int]]]:
    """The distinct symbols of several requests (first-seen order), and for each request the
    positions of its symbols among them."""
    pos: dict[str, int] = {}
    merged: list[str] = []
    picks = []
    for names in requests:
        idx = []
        for n in names:
            k = pos.get(n)
            if k is None:
                k = pos[n] = len(merged)
                merged.append(n)
            idx.append(k)
        picks.append(idx)
    return merged, picks


def split_rows(rows: list[tuple[Any, ...]], picks: Sequence[Sequence[int]]) -> list[list[tuple[Any, ...]]]:
    """Each request's rows out of the merged statement's (one row per merged symbol)."""
    return [[rows[k] for k in idx] for idx in picks]


def _block(p: LatestPlan, rows: list[tuple[Any, ...]]) -> tuple[np.ndarray, np.ndarray]:
    ts = np.array([r[1] for r in rows], dtype=np.int64)
    # None (no row) becomes NaN; the SQL selects bar columns first, so reorder to the request
    block = np.array([r[2:] for r in rows], dtype=np.float64).reshape(len(rows), len(p.cols))
    selected = [*p.bar_cols, *p.feat_cols]
    if selected != list(p.cols):
        block = block[:, [selected.index(c) for c in p.cols]]
    return ts, block


def to_frame(
    p: LatestPlan, rows: list[tuple[Any, ...]], *, as_arrow: bool, names: Sequence[str] | None = None
) -> pd.DataFrame | pa.Table:
    """The result frame of ``p`` from its rows (one per requested symbol, in order); ``names``:
    the symbols of one request among those ``p`` was planned for (coalesced requests)."""
    names = p.names if names is None else names
    if not names:
        return _empty(list(p.cols), as_arrow=as_arrow, float32=p.f32)
    ts, block = _block(p, rows)
    return _frame(list(names), np.arange(len(names), dtype=np.int32), ts, (list(p.cols), block),
                  as_arrow=as_arrow, float32=p.f32)


def to_dicts(p: LatestPlan, rows: list[tuple[Any, ...]], names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The result as plain records, no pandas: ``{"symbol", "ts", <columns>}`` per requested
    symbol (``ts`` a tz-aware datetime or None, values floats, NaN where there is none). Built
    from the rows directly (no numpy for a handful of rows: this is the one-symbol hot path).
    ``names`` as for :func:`to_frame`."""
    order = _order(p.bar_cols, p.feat_cols, p.cols)
    nan = float("nan")
    out = []
    for name, r in zip(p.names if names is None else names, rows):
        rec: dict[str, Any] = {"symbol": name, "ts": _datetime(r[1])}
        for c, j in order:
            v = r[j]
            rec[c] = nan if v is None else v  # float8 and float4 arrive as Python floats
        out.append(rec)
    return out


_STAMPS: dict[int, dt.datetime | None] = {}  # the datetime of a ts (µs): bars share their timestamps


def _datetime(t: int) -> dt.datetime | None:
    d = _STAMPS.get(t)
    if d is None:
        if len(_STAMPS) >= 4096:
            _STAMPS.clear()
        d = _STAMPS[t] = None if t == _NAT else _EPOCH + dt.timedelta(microseconds=t)
    return d


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)


@functools.lru_cache(maxsize=256)
def _order(bar_cols: tuple[str, ...], feat_cols: tuple[str, ...], cols: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    """(column, its position in a row) in the requested order (rows hold bars first, from 2)."""
    selected = [*bar_cols, *feat_cols]
    return tuple((c, 2 + selected.index(c)) for c in cols)
