"""validate_frame: one in-memory frame (pandas, Arrow Table or RecordBatch) -> a :class:`BarChunk`.

The rules are in :mod:`featurestore.load`'s docstring; this module applies them in that order.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from featurestore.errors import ConfigError
from featurestore.load.chunk import BarChunk
from featurestore.load.columns import Column, _check_arguments, _resolve_columns
from featurestore.load.rules import FLOAT_COLUMNS, MAX_PRICE, row_error
from featurestore.load.values import _Ctx, _floats, _symbols, _timestamps

__all__ = ["validate_frame"]


def _pandas_index_targets(frame: pd.DataFrame, symbol: str | None) -> Callable[[set[str]], dict[str, Column]]:
    def targets(present: set[str]) -> dict[str, Column]:
        if "ts" in present:
            return {}
        index = frame.index
        if isinstance(index, pd.DatetimeIndex):
            return {"ts": pd.Series(index, copy=False)}
        if isinstance(index, pd.MultiIndex) and index.nlevels == 2:
            level_ts = index.get_level_values(1)
            if isinstance(level_ts, pd.DatetimeIndex):
                out: dict[str, Column] = {"ts": pd.Series(level_ts, copy=False)}
                if "symbol" not in present and symbol is None:
                    out["symbol"] = pd.Series(index.get_level_values(0), copy=False)
                return out
        return {}

    return targets


def _value_message(col: np.ndarray, text: str) -> Callable[[int], str]:
    """The error message for position ``pos`` of ``col``: ``text`` with ``{!r}`` filled by its value."""

    def message(pos: int) -> str:
        return text.format(float(col[pos]))

    return message


def validate_frame(
    data: pd.DataFrame | pa.Table | pa.RecordBatch,
    *,
    source: str = "DataFrame",
    extra_columns: Collection[str] = (),
    column_map: Mapping[str, str | None] | None = None,
    symbol: str | None = None,
    assume_tz: str | None = None,
    row_offset: int = 0,
) -> BarChunk:
    """Validate and convert one in-memory frame to a :class:`BarChunk` (source row order).

    The rules are in :mod:`featurestore.load`'s docstring. Errors name a row by its 0-based
    position (``row 3 (0-based position)``, i.e. ``.iloc[3]``); ``row_offset`` is added to the
    positions to give the row numbers used in errors and in ``BarChunk.rows``.
    """
    return _validate(
        data, source=source, extra_columns=extra_columns, column_map=column_map, symbol=symbol,
        assume_tz=assume_tz, row_offset=row_offset, in_file=False,
    )


def _validate(
    data: pd.DataFrame | pa.Table | pa.RecordBatch,
    *,
    source: str,
    extra_columns: Collection[str],
    column_map: Mapping[str, str | None] | None,
    symbol: str | None,
    assume_tz: str | None,
    row_offset: int,
    in_file: bool,
) -> BarChunk:
    """validate_frame, with ``in_file`` saying the rows are a file's 1-based data rows."""
    extras = _check_arguments(extra_columns, symbol, assume_tz)
    columns: dict[str, Column]
    if isinstance(data, pd.DataFrame):
        names = list(data.columns)
        targets, from_index = _resolve_columns(
            names,
            source=source,
            extras=extras,
            column_map=column_map,
            symbol=symbol,
            index_targets=_pandas_index_targets(data, symbol),
        )
        columns = {t: data.iloc[:, pos] for t, pos in targets.items()}
        columns.update(from_index)
        n = len(data)
    elif isinstance(data, (pa.Table, pa.RecordBatch)):
        names = list(data.schema.names)
        targets, _ = _resolve_columns(
            names, source=source, extras=extras, column_map=column_map, symbol=symbol
        )
        columns = {t: data.column(pos) for t, pos in targets.items()}
        n = data.num_rows
    else:
        raise ConfigError(
            f"validate_frame() takes a pandas DataFrame or a pyarrow Table/RecordBatch, not "
            f"{type(data).__name__}; use read_chunks() for files"
        )
    rows = np.arange(row_offset, row_offset + n, dtype=np.int64)
    ctx = _Ctx(source, rows, in_file)
    if symbol is not None:
        sym = np.full(n, symbol, dtype=object)
    else:
        sym = _symbols(columns["symbol"], ctx)
    ts = _timestamps(columns["ts"], ctx, assume_tz)
    values: dict[str, np.ndarray] = {}
    for name in FLOAT_COLUMNS:
        col = _floats(columns[name], name, ctx)
        ctx.check(np.isnan(col), name, lambda pos: "missing value (null or NaN)")
        ctx.check(np.isinf(col), name, _value_message(col, "value {!r} is not finite"))
        if name == "volume":
            ctx.check(col < 0, name, _value_message(col, "negative volume {!r}"))
        else:
            ctx.check(col < 0, name, _value_message(col, "negative price {!r}"))
            ctx.check(
                col > MAX_PRICE,
                name,
                _value_message(col, f"price {{!r}} is above the maximum {MAX_PRICE:g}"),
            )
        values[name] = col
    extra: dict[str, np.ndarray] = {}
    for name in extras:
        if name not in columns:
            continue
        col = _floats(columns[name], name, ctx)
        ctx.check(np.isinf(col), name, _value_message(col, "value {!r} is not finite (NaN is allowed, inf is not)"))
        extra[name] = col
    o, h, lo, c = values["open"], values["high"], values["low"], values["close"]
    ctx.check(h < lo, "high", lambda pos: f"high {float(h[pos])!r} is below low {float(lo[pos])!r}")
    ctx.check(
        h < np.maximum(o, c),
        "high",
        lambda pos: f"high {float(h[pos])!r} is below open {float(o[pos])!r} or close {float(c[pos])!r}",
    )
    ctx.check(
        lo > np.minimum(o, c),
        "low",
        lambda pos: f"low {float(lo[pos])!r} is above open {float(o[pos])!r} or close {float(c[pos])!r}",
    )
    chunk = BarChunk(
        symbol=sym,
        ts=ts,
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=values["volume"],
        extra=extra,
        rows=rows,
        source=source,
        in_file=in_file,
    )
    _check_duplicates(chunk)
    return chunk


def _check_duplicates(chunk: BarChunk) -> None:
    if len(chunk) < 2:
        return
    codes, _ = chunk.symbol_codes()
    order = np.lexsort((chunk.ts, codes))  # stable: equal keys keep ascending row order
    same = (codes[order[1:]] == codes[order[:-1]]) & (chunk.ts[order[1:]] == chunk.ts[order[:-1]])
    if not same.any():
        return
    pairs = np.flatnonzero(same)
    later = chunk.rows[order[pairs + 1]]
    k = int(pairs[np.argmin(later)])  # the duplicate that shows up first while reading the source
    first, second = int(order[k]), int(order[k + 1])
    when = np.datetime64(int(chunk.ts[first]), "us")
    raise row_error(
        f"duplicate (symbol, ts) = ({chunk.symbol[first]!r}, {when}Z): also at "
        f"{chunk.row_label(int(chunk.rows[first]))}",
        source=chunk.source,
        row=int(chunk.rows[second]),
        column="ts",
        in_file=chunk.in_file,
    )
