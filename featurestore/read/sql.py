"""[read] The read queries: constant SQL texts per (table, columns), and literal rendering for bulk reads.

Every query's text is built from validated identifiers, with ``entity_id = ANY(%(ids)s)`` over an
array (never a per-call IN list); the plan tests (``tests/test_read.py``) EXPLAIN these exact
texts. Bulk queries get their integer arrays and timestamps rendered as literals by
:func:`render` (see :mod:`featurestore.read.bulk` for why); nothing the user typed is ever rendered.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from featurestore.schema import validate_identifier

__all__ = [
    "LOOKUP_SQL",
    "KNOWLEDGE_CTE",
    "known_source",
    "history_table",
    "range_sql",
    "latest_sql",
    "latest_one_sql",
    "training_sql",
    "point_sql",
    "estimate_sql",
    "render",
]

# Open ends of a range: outside the 1900..2200 span that load accepts, inside what both
# PostgreSQL and Arrow timestamps hold.
_MIN_TS = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
_MAX_TS = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)
_NAT = np.iinfo(np.int64).min  # numpy's NaT as int64
_MIN_US = -62_135_596_800_000_000  # _MIN_TS in µs since the epoch
_UTC = dt.UTC

LOOKUP_SQL = "SELECT entity_id, symbol FROM entities WHERE symbol = ANY(%(symbols)s::text[])"


def _us(col: str) -> str:
    """SQL: a timestamptz as int8 microseconds since the Unix epoch (NaT sentinel when NULL)."""
    return f"coalesce((extract(epoch FROM {col}) * 1000000)::int8, {_NAT})"


def _from_us(param: str) -> str:
    return f"('epoch'::timestamptz + {param} * interval '1 microsecond')"


def _quote(name: str) -> str:
    return '"' + validate_identifier(name, what="column name") + '"'


# Knowledge time (``as_known_at``): fs_knowledge(t) (migration 0004) gives the newest load id
# known at t and the older ids not yet known then; a row version is visible at t when the load
# that wrote it is known and (for a superseded version) the load that replaced it is not.
KNOWLEDGE_CTE = "WITH k AS MATERIALIZED (SELECT kmax, holes FROM fs_knowledge(%(known_at)s::timestamptz)) "
# The same from values fs_knowledge returned on the coordinator (parameters ``kmax``, ``holes``):
# a statement Citus routes to a worker whole cannot call it there (it reads reference tables).
KNOWLEDGE_VALUES_CTE = "WITH k AS MATERIALIZED (SELECT %(kmax)s::int4 AS kmax, %(holes)s::int4[] AS holes) "


def _known(col: str) -> str:
    return f"({col} <= (SELECT kmax FROM k) AND {col} <> ALL(CAST((SELECT holes FROM k) AS int4[])))"


def history_table(table: str) -> str:
    """The table holding superseded versions of ``table``'s rows."""
    return "bars_history" if table == "bars" else table + "_h"


def known_source(table: str, columns: Sequence[str], prune: bool = False) -> str:
    """``table`` as it stood at knowledge time ``%(known_at)s``: its current rows written by a
    known load, plus superseded versions that were current then (at most one per key).
    ``prune``: each part restricted to ``%(group_ids)s`` (a statement routed to one shard group)."""
    cols = ", ".join(["entity_id", "ts", *(_quote(c) for c in columns)])
    only = " AND entity_id = ANY(%(group_ids)s::int4[])" if prune else ""
    t = _quote(table) if table != "bars" else "bars"
    h = _quote(history_table(table)) if table != "bars" else "bars_history"
    # "not known" split in two, so the first is an index condition on the history table's key
    # (entity_id, ts, superseded_by) and superseded versions no longer visible are not fetched
    return (
        f"(SELECT {cols} FROM {t} WHERE {_known('load_id')}{only} UNION ALL "
        f"SELECT {cols} FROM {h} WHERE {_known('load_id')} AND superseded_by > (SELECT kmax FROM k){only} UNION ALL "
        f"SELECT {cols} FROM {h} WHERE {_known('load_id')} AND superseded_by = ANY(CAST((SELECT holes FROM k) AS int4[])){only})"
    )



def _version_at(alias: str, history: str, cols: Sequence[str], hv: str, prune: str = "") -> tuple[str, str, list[str]]:
    """For a current row ``alias``: (a LATERAL probe of ``history`` for its version visible at the
    knowledge time, run only when the current row's load is not known then; the condition that a
    version is visible; the select list picking it)."""
    vals = "".join(f", x.{_quote(c)}" for c in cols)
    probe = (
        f"LEFT JOIN LATERAL (SELECT x.ts{vals} FROM {history} x WHERE x.entity_id = {alias}.entity_id{prune.format(a='x')} "
        f"AND x.ts = {alias}.ts AND {_known('x.load_id')} AND NOT {_known('x.superseded_by')} LIMIT 1) {hv} "
        f"ON NOT {_known(alias + '.load_id')}"
    )
    visible = f"({_known(alias + '.load_id')} OR {hv}.ts IS NOT NULL)"
    pick = [f"CASE WHEN {hv}.ts IS NULL THEN {alias}.{_quote(c)} ELSE {hv}.{_quote(c)} END AS {_quote(c)}" for c in cols]
    return probe, visible, pick


def _last_known(
    table: str, bar_cols: Sequence[str], feat_cols: Sequence[str], key: str, upper: str, lower: str | None = None,
    prune: str = "",
) -> str:
    """The last row visible at knowledge time with ``entity_id = key`` and ``lower <= ts <= upper``,
    as a subquery with columns ts and the value columns.

    Walks the current table's keys backward on its primary key (no load filter): a key's version
    at the knowledge time is its current row when that row's load was known then, else the one
    visible version in the history table (a primary-key probe on (entity_id, ts)); a key with
    neither was written after that time and is skipped. Rows are never deleted from the current
    tables, so every key that existed then is walked. The first visible key ends the walk, so the
    cost is the keys written after the knowledge time, not the entity's superseded versions.
    """
    own = [*bar_cols, *feat_cols] if table == "bars" else list(feat_cols)
    t = _quote(table) if table != "bars" else "bars"
    h = "bars_history" if table == "bars" else _quote(history_table(table))
    probe, visible, pick = _version_at("c", h, own, "hv", prune)
    source, conds = f"{t} c {probe}", [visible]
    if table != "bars" and bar_cols:
        bprobe, bvisible, bpick = _version_at("b", "bars_history", list(bar_cols), "hb", prune)
        source += f" JOIN bars b ON b.entity_id = c.entity_id{prune.format(a='b')} AND b.ts = c.ts {bprobe}"
        conds.append(bvisible)
        pick = bpick + pick
    where = f"c.entity_id = {key}{prune.format(a='c')} AND c.ts <= {upper}" + (f" AND c.ts >= {lower}" if lower else "")
    select = ", ".join(["c.ts", *pick])
    return f"(SELECT {select} FROM {source} WHERE {where} AND {' AND '.join(conds)} ORDER BY c.ts DESC LIMIT 1)"


# On a distributed store, statements over many entities run once per shard group with this
# restriction on their probes ({a}: the probed table's alias): Citus then routes each to one
# worker whole (a router query), where PostgreSQL plans it as on one node.
PRUNE = " AND {a}.entity_id = ANY(%(group_ids)s::int4[])"


def _select(
    table: str, bar_cols: Sequence[str], feat_cols: Sequence[str], known: bool = False, prune: bool = False
) -> tuple[str, str]:
    """(select list after entity_id, ts; FROM clause) for ``t`` = bars or a view table joined to bars.

    ``known``: both sides as they stood at knowledge time ``%(known_at)s`` (:func:`known_source`;
    the statement must start with :data:`KNOWLEDGE_CTE`).
    """
    t = _quote(table) if table != "bars" else "bars"
    if table == "bars":
        cols = [f"t.{_quote(c)}" for c in (*bar_cols, *feat_cols)]
        src = known_source("bars", [*bar_cols, *feat_cols], prune) if known else t
        return "".join(", " + c for c in cols), f"{src} t"
    cols = [f"b.{_quote(c)}" for c in bar_cols] + [f"t.{_quote(c)}" for c in feat_cols]
    source = f"{known_source(table, feat_cols, prune) if known else t} t"
    if bar_cols:
        bars = known_source("bars", bar_cols, prune) if known else "bars"
        source += f" JOIN {bars} b ON b.entity_id = t.entity_id AND b.ts = t.ts"
    return "".join(", " + c for c in cols), source


def range_sql(
    table: str, bar_cols: Sequence[str] = (), feat_cols: Sequence[str] = (), *, known: bool = False
) -> str:
    """The range read: rows of ``table`` for entity ids in ``%(ids)s`` with start <= ts <= end.

    Parameters: ``ids`` (int4[]), ``start``, ``end`` (timestamptz). Rows come in primary-key order
    (an index scan delivers it as is; for many entities the planner may prefer a bitmap scan on
    the same index plus a sort). When bars are joined to a view table the bars
    side repeats the predicates, so both sides are index range scans (PostgreSQL does not carry
    ``= ANY`` across a join).
    """
    cols, source = _select(table, bar_cols, feat_cols, known)
    with_k = KNOWLEDGE_CTE if known else ""
    where = "t.entity_id = ANY(%(ids)s::int4[]) AND t.ts >= %(start)s::timestamptz AND t.ts <= %(end)s::timestamptz"
    if table != "bars" and bar_cols:
        where += (
            " AND b.entity_id = ANY(%(ids)s::int4[]) AND b.ts >= %(start)s::timestamptz"
            " AND b.ts <= %(end)s::timestamptz"
        )
    return f"{with_k}SELECT t.entity_id, t.ts{cols} FROM {source} WHERE {where} ORDER BY t.entity_id, t.ts"


def latest_sql(
    table: str, bar_cols: Sequence[str] = (), feat_cols: Sequence[str] = (), *, known: bool = False,
    distributed: bool = False,
) -> str:
    """Latest row at or before ``%(as_of)s`` for each of ``%(symbols)s``, in the order given.

    One row per requested symbol (NULLs where there is none): a LATERAL join whose inner query is
    an Index Scan Backward with LIMIT 1 per entity. Columns: ordinal, ts as int8 µs (NaT sentinel
    when missing), then the value columns. ``distributed`` (a Citus store): the probes start from
    ``entity_keys`` (pushed down to the workers, in parallel) and their rows are joined back to
    the requested order on the coordinator.
    """
    cols, source = _select(table, bar_cols, feat_cols)
    key = "q.id" if distributed else "e.entity_id"
    inner = (
        _last_known(table, bar_cols, feat_cols, key, "%(as_of)s::timestamptz")
        if known
        else f"(SELECT t.ts{cols} FROM {source} WHERE t.entity_id = {key} "
        "AND t.ts <= %(as_of)s::timestamptz ORDER BY t.ts DESC LIMIT 1)"
    )
    values = "".join(", x." + _quote(c) for c in (*bar_cols, *feat_cols))
    head = (KNOWLEDGE_CTE if known else "") + (
        f"SELECT r.k, {_us('x.ts')}{values} "
        "FROM unnest(%(symbols)s::text[]) WITH ORDINALITY AS r(symbol, k) "
        "LEFT JOIN entities e ON e.symbol = r.symbol "
    )
    if not distributed:
        return head + f"LEFT JOIN LATERAL {inner} x ON true ORDER BY r.k"
    found = (
        "(SELECT entity_id AS id FROM entity_keys WHERE entity_id IN "
        "(SELECT entity_id FROM entities WHERE symbol = ANY(%(symbols)s::text[]))) q"
    )
    return head + (
        f"LEFT JOIN (SELECT q.id, y.*  FROM {found} CROSS JOIN LATERAL {inner} y) x ON x.id = e.entity_id ORDER BY r.k"
    )


def latest_one_sql(
    table: str, bar_cols: Sequence[str] = (), feat_cols: Sequence[str] = (), *, known: bool = False,
    by_id: bool = False,
) -> str:
    """:func:`latest_sql` for one symbol (``%(symbol)s``): no row when there is none.

    The online hot path: a scalar parameter lets PostgreSQL keep one generic plan for the
    prepared statement, where the array form is re-planned per call (``benchmarks/read.py``
    measures both against the bare ``ORDER BY ts DESC LIMIT 1`` by entity id).
    """
    cols, source = _select(table, bar_cols, feat_cols)
    # by_id (a Citus store): the entity id as a parameter, so Citus routes the read to one shard
    entity = "%(entity)s::int4" if by_id else "(SELECT entity_id FROM entities WHERE symbol = %(symbol)s)"
    inner = (
        _last_known(table, bar_cols, feat_cols, entity, "%(as_of)s::timestamptz")
        if known
        else f"(SELECT t.ts{cols} FROM {source} WHERE t.entity_id = {entity} "
        "AND t.ts <= %(as_of)s::timestamptz ORDER BY t.ts DESC LIMIT 1)"
    )
    return (KNOWLEDGE_CTE if known else "") + (
        f"SELECT 1, {_us('x.ts')}{''.join(', x.' + _quote(c) for c in (*bar_cols, *feat_cols))} FROM {inner} x"
    )


def training_sql(
    table: str, bar_cols: Sequence[str] = (), feat_cols: Sequence[str] = (), *, known: bool = False,
    distributed: bool = False,
) -> str:
    """The rows a training frame can attach: per entity, from its last row at or before its first
    event through its last event.

    Parameters ``ids`` (int4[]) and ``first``/``last`` (int8[] µs since the epoch), one element per
    entity. Two LATERAL index probes per entity: a backward one (LIMIT 1) for the lower bound, then
    a range scan. Rows come grouped by entity with ts ascending (the reader checks, and sorts if a
    plan ever delivers another order). ``distributed``: the Citus form, for ids of one shard group
    (:data:`PRUNE`: Citus routes it to one worker whole; it cannot push LATERAL probes with a
    LIMIT down from ``unnest`` columns).
    """
    cols, source = _select(table, bar_cols, feat_cols, known, distributed)
    with_k = (KNOWLEDGE_VALUES_CTE if distributed else KNOWLEDGE_CTE) if known else ""
    t = _quote(table) if table != "bars" else "bars"
    prune = PRUNE if distributed else ""
    probe = (
        f"(SELECT y.ts AS lo FROM {_last_known(table, [], [], 'r.e', _from_us('r.first_us'), prune=prune)} y)"
        if known
        else f"(SELECT p.ts AS lo FROM {t} p WHERE p.entity_id = r.e{prune.format(a='p')} AND p.ts <= {_from_us('r.first_us')} "
        "ORDER BY p.ts DESC LIMIT 1)"
    )
    hi = _from_us("r.last_us")
    lo = f"coalesce(s.lo, {_from_us('r.first_us')})"  # no row before the first event: start there
    where = f"t.entity_id = r.e{prune.format(a='t')} AND t.ts >= {lo} AND t.ts <= {hi}"
    if table != "bars" and bar_cols:
        where += f" AND b.entity_id = r.e{prune.format(a='b')} AND b.ts >= {lo} AND b.ts <= {hi}"
    outer = "".join(", x." + _quote(c) for c in (*bar_cols, *feat_cols))
    return with_k + (
        f"SELECT x.entity_id, x.ts{outer} "
        "FROM unnest(%(ids)s::int4[], %(first)s::int8[], %(last)s::int8[]) AS r(e, first_us, last_us) "
        f"LEFT JOIN LATERAL {probe} s ON true "
        f"CROSS JOIN LATERAL (SELECT t.entity_id, t.ts{cols} FROM {source} WHERE {where} ORDER BY t.ts) x"
    )


def point_sql(
    table: str, bar_cols: Sequence[str] = (), feat_cols: Sequence[str] = (), *, known: bool = False,
    distributed: bool = False,
) -> str:
    """Point-in-time rows for keys (entity, event time): the last row with lo <= ts <= event time.

    Parameters ``ids`` (int4[]), ``ts`` and ``lo`` (int8[] µs), one element per key. One LATERAL
    Index Scan Backward with LIMIT 1 per key; keys with no such row return nothing. Column ``k``
    is the key's 1-based position. ``distributed``: as for :func:`training_sql`.
    """
    cols, source = _select(table, bar_cols, feat_cols)
    outer = "".join(", x." + _quote(c) for c in (*bar_cols, *feat_cols))
    prune = PRUNE if distributed else ""
    where = f"t.entity_id = r.e{prune.format(a='t')} AND t.ts <= {_from_us('r.t')} AND t.ts >= {_from_us('r.lo')}"
    if table != "bars" and bar_cols:
        where += f" AND b.entity_id = r.e{prune.format(a='b')} AND b.ts <= {_from_us('r.t')} AND b.ts >= {_from_us('r.lo')}"
    inner = (
        _last_known(table, bar_cols, feat_cols, "r.e", _from_us("r.t"), _from_us("r.lo"), prune=prune)
        if known
        else f"(SELECT t.ts{cols} FROM {source} WHERE {where} ORDER BY t.ts DESC LIMIT 1)"
    )
    return ((KNOWLEDGE_VALUES_CTE if distributed else KNOWLEDGE_CTE) if known else "") + (
        f"SELECT r.k, x.ts{outer} "
        "FROM unnest(%(ids)s::int4[], %(ts)s::int8[], %(lo)s::int8[]) WITH ORDINALITY AS r(e, t, lo, k) "
        f"CROSS JOIN LATERAL {inner} x"
    )


def estimate_sql(table: str) -> str:
    """Per entity of a view: rows, first and last ts (µs); sizes a training frame's range read."""
    # the first row: in the view's history segments when it has any, else in its rows
    return (
        f"SELECT s.entity_id, s.n_bars, {_us('coalesce(g.ts, f.ts)')}, {_us('s.last_ts')} FROM indicator_state s "
        f"LEFT JOIN LATERAL (SELECT t.ts FROM {_quote(table)} t WHERE t.entity_id = s.entity_id "
        "ORDER BY t.ts LIMIT 1) f ON true "
        f"LEFT JOIN LATERAL (SELECT min(x.ts_first) AS ts FROM {_quote(table)[:-1]}_s\" x "
        "WHERE x.entity_id = s.entity_id) g ON true "
        "WHERE s.view_id = %(view_id)s AND s.entity_id = ANY(%(ids)s::int4[]) AND coalesce(g.ts, f.ts) IS NOT NULL"
    )


_NAMED = re.compile(r"%\((\w+)\)s")


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

