"""[read] Training frames at each event's own knowledge time: every row version, resolved per event.

A row version written by load ``a`` and superseded by load ``b`` is visible at knowledge time
``d`` iff ``stamp(a) <= d < stamp(b)`` (``stamp`` = ``loads.committed_at``; a current row has no
``b``). Load 0 ("history starts": rows before the upgrade, view backfills) counts as known from
the start: the caller first checks every decision time against ``store_state.history_since``
and the view's ``ready_at``. Rows are never deleted, so a key known once stays known (in some
version) afterwards; the lower bound of each entity's read relies on it.

One bulk query reads, per entity, every version (current rows and the history table) over the
span its events can reach, with the loads that wrote and superseded each; one small query gives
those loads' stamps; a numba kernel then walks back from each event's last reachable ts to the
first version visible at its decision time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numba
import numpy as np
import pyarrow as pa

from featurestore.read.frames import _column
from featurestore.read.sql import _MIN_US, _NAT, PRUNE, _from_us, _quote, _us, history_table

if TYPE_CHECKING:
    from featurestore.read import Reader

__all__ = ["versions_sql", "STAMPS_SQL", "resolve_versions", "attach_known_per_event"]

_MAX_US = np.iinfo(np.int64).max  # "never superseded"


def versions_sql(table: str, columns: Sequence[str], *, probe: bool = True, distributed: bool = False) -> str:
    """Every version of ``table``'s rows per entity over a span, with the loads that wrote
    (``load_id``) and superseded it (``sb``; -1 for a current row).

    Parameters ``ids`` (int4[]), ``first``, ``floor``, ``last``, ``dmin`` (int8[] µs), one element
    per entity. The span is ``greatest(lo, floor) <= ts <= last``, where (with ``probe``) ``lo`` is
    the last ts <= ``first`` whose current row was known by ``dmin`` (a backward index probe with
    LIMIT 1; no such row leaves ``floor``). Without ``probe`` the span starts at ``floor``. Two
    index range scans per entity (the table and its history table); the loads' stamps are looked
    up apart (:data:`STAMPS_SQL`), once per distinct load. ``distributed``: the per-shard-group
    form (``read.sql.PRUNE``), as for ``training_sql``.
    """
    prune = PRUNE if distributed else ""
    t = _quote(table) if table != "bars" else "bars"
    h = _quote(history_table(table)) if table != "bars" else "bars_history"
    vals = "".join(", " + _quote(c) for c in columns)
    outer = "".join(", x." + _quote(c) for c in columns)
    if probe:
        lo = f"greatest(s.lo, {_from_us('r.floor_us')})"
        probe_join = (
            f"LEFT JOIN LATERAL (SELECT p.ts AS lo FROM {t} p WHERE p.entity_id = r.e{prune.format(a='p')} "
            f"AND p.ts <= {_from_us('r.first_us')} AND (p.load_id = 0 OR (SELECT l.committed_at FROM loads l "
            f"WHERE l.load_id = p.load_id) <= {_from_us('r.dmin_us')}) ORDER BY p.ts DESC LIMIT 1) s ON true "
        )
    else:
        lo = _from_us("r.floor_us")
        probe_join = ""
    hi = _from_us("r.last_us")
    return (
        f"SELECT x.entity_id, x.ts, x.load_id, x.sb{outer} "
        "FROM unnest(%(ids)s::int4[], %(first)s::int8[], %(floor)s::int8[], %(last)s::int8[], %(dmin)s::int8[]) "
        "AS r(e, first_us, floor_us, last_us, dmin_us) "
        f"{probe_join}"
        f"CROSS JOIN LATERAL (SELECT t.entity_id, t.ts, t.load_id, -1 AS sb{vals} FROM {t} t "
        f"WHERE t.entity_id = r.e{prune.format(a='t')} AND t.ts >= {lo} AND t.ts <= {hi} "
        f"UNION ALL SELECT h.entity_id, h.ts, h.load_id, h.superseded_by{vals} FROM {h} h "
        f"WHERE h.entity_id = r.e{prune.format(a='h')} AND h.ts >= {lo} AND h.ts <= {hi}) x"
    )


STAMPS_SQL = f"SELECT load_id, {_us('committed_at')} FROM loads WHERE load_id = ANY(%(ids)s::int8[])"


def _stamps(reader: Reader, load_ids: np.ndarray, *, current: int) -> np.ndarray:
    """``loads.committed_at`` (µs) of each of ``load_ids``: load 0 -> the int8 minimum (known from
    the start), ``current`` (the marker of a current row's ``superseded_by``) -> the maximum."""
    uniq, inverse = np.unique(load_ids, return_inverse=True)
    ask = uniq[(uniq != 0) & (uniq != current)]
    rows: list[tuple[int, int]] = []
    if ask.size:
        rows = reader._run(lambda conn: conn.execute(STAMPS_SQL, {"ids": ask.tolist()}, prepare=True).fetchall())
    # a load no longer in the log (cut by retention) is older than the history: known from the start
    stamp = np.full(uniq.size, _MIN_US, dtype=np.int64)
    if rows:
        got = np.array(rows, dtype=np.int64).reshape(-1, 2)
        stamp[np.searchsorted(uniq, got[:, 0])] = got[:, 1]
    stamp[uniq == current] = _MAX_US
    return stamp[inverse.reshape(-1)]


@numba.njit(cache=True, nogil=True)
def resolve_versions(
    seg_lo: np.ndarray,
    seg_hi: np.ndarray,
    v_ts: np.ndarray,
    v_from: np.ndarray,
    v_to: np.ndarray,
    k_up: np.ndarray,
    k_lo: np.ndarray,
    k_d: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled
    """Per key: index of the version with the greatest ts in [k_lo, k_up] visible at k_d, or -1.

    Versions are sorted by (entity, ts); key i's entity holds versions [seg_lo[i], seg_hi[i]).
    """
    m = k_up.size
    out = np.full(m, -1, dtype=np.int64)
    for i in range(m):
        a, b = seg_lo[i], seg_hi[i]
        up = k_up[i]
        # last index in [a, b) with ts <= up
        lo_, hi_ = a, b
        while lo_ < hi_:
            mid = (lo_ + hi_) // 2
            if v_ts[mid] <= up:
                lo_ = mid + 1
            else:
                hi_ = mid
        j = lo_ - 1
        d = k_d[i]
        floor = k_lo[i]
        while j >= a:
            if v_ts[j] < floor:
                break
            if v_from[j] <= d and d < v_to[j]:
                out[i] = j
                break
            j -= 1
    return out


def _fetch_versions(
    reader: Reader,
    table: str,
    columns: list[str],
    ents: np.ndarray,
    first: np.ndarray,
    floor: np.ndarray,
    last: np.ndarray,
    dmin: np.ndarray,
    *,
    probe: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(entity ids, ts, valid from, valid to, values), sorted by (entity, ts, valid from)."""
    if ents.size == 0:
        none = np.empty(0, np.int64)
        return np.empty(0, np.int32), none, none, none, {c: np.empty(0) for c in columns}
    parts = reader._fetch_grouped(
        versions_sql(table, columns, probe=probe, distributed=reader.distributed),
        {"ids": ents, "first": first, "floor": floor, "last": last, "dmin": dmin},
        ("ids", "first", "floor", "last", "dmin"), [table], int(last.max()) if last.size else 0,
    )
    tab = pa.concat_tables([t for _, t in parts]) if len(parts) != 1 else parts[0][1]
    eid = _column(tab, "entity_id").astype(np.int32, copy=False)
    ts = tab.column("ts").cast(pa.int64()).to_numpy()
    lf = _column(tab, "load_id").astype(np.int64, copy=False)
    lt = _column(tab, "sb").astype(np.int64, copy=False)
    both = _stamps(reader, np.concatenate([lf, lt]), current=-1)
    vf, vt = both[: lf.size], both[lf.size :]
    perm = np.lexsort((vf, ts, eid))
    return eid[perm], ts[perm], vf[perm], vt[perm], {c: _column(tab, c)[perm] for c in columns}


def _resolve(
    eid: np.ndarray,
    ts: np.ndarray,
    vf: np.ndarray,
    vt: np.ndarray,
    key_eid: np.ndarray,
    key_up: np.ndarray,
    key_lo: np.ndarray,
    key_d: np.ndarray,
) -> np.ndarray:
    seg_lo = np.searchsorted(eid, key_eid, "left").astype(np.int64)
    seg_hi = np.searchsorted(eid, key_eid, "right").astype(np.int64)
    return resolve_versions(  # type: ignore[no-any-return]
        seg_lo, seg_hi, ts, vf, vt,
        np.ascontiguousarray(key_up, dtype=np.int64),
        np.ascontiguousarray(key_lo, dtype=np.int64),
        np.ascontiguousarray(key_d, dtype=np.int64),
    )


def attach_known_per_event(
    reader: Reader,
    table: str,
    bar_cols: list[str],
    feats: list[str],
    ent_ids: np.ndarray,
    key_pos: np.ndarray,
    key_up: np.ndarray,
    key_lo: np.ndarray,
    key_d: np.ndarray,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per key (entity position, last reachable ts ``key_up``, lowest ts ``key_lo``, decision time
    ``key_d``; keys sorted by entity): (attached ts or NaT, values) as they were known at ``key_d``.

    ``key_up`` already holds min(event time, decision time - availability lag).
    """
    m = key_up.size
    cols = [*bar_cols, *feats]
    row_ts = np.full(m, _NAT, dtype=np.int64)
    vals = {c: np.full(m, np.nan) for c in cols}
    live = np.flatnonzero(key_up >= key_lo)
    if live.size == 0:
        return row_ts, vals
    pos, up, lo, d = key_pos[live], key_up[live], key_lo[live], key_d[live]
    starts = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]])
    ents = ent_ids[pos[starts]]
    first = np.minimum.reduceat(up, starts)
    floor = np.maximum(np.minimum.reduceat(lo, starts), _MIN_US)
    last = np.maximum.reduceat(up, starts)
    dmin = np.minimum.reduceat(d, starts)
    eid, ts, vf, vt, values = _fetch_versions(reader, table, feats, ents, first, floor, last, dmin, probe=True)
    hit = _resolve(eid, ts, vf, vt, ent_ids[pos], up, lo, d)
    found = hit >= 0
    got = live[found]
    row_ts[got] = ts[hit[found]]
    for c in feats:
        vals[c][got] = values[c][hit[found]]
    if bar_cols and got.size:
        # the bar at the attached ts, in the version known at the same decision time
        b_pos, b_ts, b_d = key_pos[got], row_ts[got], key_d[got]
        order = np.lexsort((b_ts, b_pos))
        b_pos, b_ts, b_d, got = b_pos[order], b_ts[order], b_d[order], got[order]
        bstarts = np.flatnonzero(np.r_[True, b_pos[1:] != b_pos[:-1]])
        lo_b = np.minimum.reduceat(b_ts, bstarts)
        hi_b = np.maximum.reduceat(b_ts, bstarts)
        beid, bts, bvf, bvt, bvalues = _fetch_versions(
            reader, "bars", bar_cols, ent_ids[b_pos[bstarts]], lo_b, lo_b, hi_b,
            np.minimum.reduceat(b_d, bstarts), probe=False,
        )
        bhit = _resolve(beid, bts, bvf, bvt, ent_ids[b_pos], b_ts, b_ts, b_d)
        bfound = bhit >= 0
        for c in bar_cols:
            vals[c][got[bfound]] = bvalues[c][bhit[bfound]]
    return row_ts, vals
