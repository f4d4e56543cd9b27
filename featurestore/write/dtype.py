"""[write] A view's feature dtype on the write path: float64 values narrowed for ``real`` columns.

The kernels compute in float64 whatever the view's dtype; a float32 view (``create_view(...,
dtype="float32")``, ``real`` columns) stores each value rounded to the nearest float32, exactly
``np.float32(x)``, and sent as float4 by binary COPY, so the server never converts. Because the
staging tables of a recompute are made ``LIKE`` the view table, the comparison that decides
whether a row changed is float4 against float4: rewriting an unchanged value is no change.

A finite value outside float32's range (|x| > 3.4e38) cannot be stored: ValidationError naming
the view, the column and the row (symbol and ts), raised before the rows are sent, inside the
caller's transaction, so nothing of the load is written. In a backfill the version is then
removed (``client/views.create_view``): the same bars would stop every retry at the same row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from featurestore.errors import ValidationError
from featurestore.schema import ident
from featurestore.views import FeatureView

__all__ = ["copy_type", "narrow_outputs", "check_user_columns", "user_value_sql"]


def copy_type(view: FeatureView) -> str:
    """The binary COPY type of ``view``'s feature columns: ``float8`` or ``float4``."""
    return view.sql_type


def _where(conn: psycopg.Connection[Any], entity_id: int, ts_us: int) -> str:
    """``symbol 'X' at <ts>`` for an error message (the symbol looked up on the error path only)."""
    import pandas as pd

    row = conn.execute("SELECT symbol FROM entities WHERE entity_id = %s", (int(entity_id),)).fetchone()
    who = repr(row[0]) if row is not None else f"entity {int(entity_id)}"
    return f"symbol {who} at {pd.Timestamp(int(ts_us), unit='us', tz='UTC').isoformat()}"


def _first_bad(values: np.ndarray, narrow: np.ndarray, *, underflow: bool) -> int | None:
    bad = np.isinf(narrow) & np.isfinite(values)
    if underflow:
        bad |= (narrow == 0) & (values != 0) & np.isfinite(values)
    return int(np.argmax(bad)) if bad.any() else None


def _raise(
    conn: psycopg.Connection[Any], view: FeatureView, column: str, value: float, pos: int, eid: np.ndarray,
    ts: np.ndarray, what: str, *, source: str | None = None, row: int | None = None,
) -> None:
    """``row`` is the load's row number (user columns); a feature value is a row of no input, so
    none is given for it: the message names the row by symbol and ts."""
    raise ValidationError(
        f"view {view.name!r} v{view.version} stores float32 (real): value {value!r} {what} float32 "
        f"(|x| <= {float(np.finfo(np.float32).max):.4g}) in the row of {_where(conn, int(eid[pos]), int(ts[pos]))}; "
        "nothing was written (use a float64 view for such values)",
        source=source if source is not None else f"view {view.name} v{view.version}",
        row=row,
        column=column,
    )


def narrow_outputs(
    conn: psycopg.Connection[Any],
    view: FeatureView,
    outputs: Mapping[str, np.ndarray],
    eid: np.ndarray,
    ts: np.ndarray,
) -> dict[str, np.ndarray]:
    """The kernels' float64 ``outputs`` in the view's dtype: unchanged for float64, else rounded to
    float32 (NaN stays NaN); ValidationError for a finite value beyond float32's range.

    ``eid``/``ts`` (µs) are the rows' keys, for the error (which names the symbol and ts).
    """
    if view.dtype != "float32":
        return dict(outputs)
    out: dict[str, np.ndarray] = {}
    for c, v in outputs.items():
        with np.errstate(over="ignore", under="ignore"):
            narrow = np.asarray(v).astype(np.float32)
        bad = _first_bad(v, narrow, underflow=False)
        if bad is not None:
            _raise(conn, view, c, float(v[bad]), bad, eid, ts, "overflows")
        out[c] = narrow
    return out


def check_user_columns(
    conn: psycopg.Connection[Any],
    views: Sequence[FeatureView],
    extra: Mapping[str, np.ndarray],
    eid: np.ndarray,
    ts: np.ndarray,
    *,
    source: str | None = None,
    rows: np.ndarray | None = None,
) -> None:
    """Before user columns reach float32 views: every finite value must fit float32.

    Values beyond its range, and nonzero values so small they round to zero (the server's
    float8 -> real conversion refuses both), raise ValidationError naming view, column and row
    (``rows``: the source row numbers of the load's rule; ``source``: the file or frame).
    """
    for view in views:
        if view.dtype != "float32":
            continue
        for c in view.columns:
            if c not in extra:
                continue
            v = np.asarray(extra[c], dtype=np.float64)
            with np.errstate(over="ignore", under="ignore"):
                narrow = v.astype(np.float32)
            bad = _first_bad(v, narrow, underflow=True)
            if bad is not None:
                what = "overflows" if np.isinf(narrow[bad]) else "is too small (rounds to 0) for"
                row = int(rows[bad]) if rows is not None and rows.size == v.size else bad
                _raise(conn, view, c, float(v[bad]), bad, eid, ts, what, source=source, row=row)


def user_value_sql(view: FeatureView, alias: str, column: str) -> sql.Composable:
    """SQL for the staged (float8) user column ``alias.column`` in the view's dtype: the server
    rounds float8 to real as numpy does, so the changed-row test compares real with real."""
    ref = sql.SQL("{}.{}").format(sql.Identifier(alias), ident(column))
    if view.dtype != "float32":
        return ref
    return sql.SQL("{}::float4").format(ref)
