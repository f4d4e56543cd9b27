"""[read] Result frames: the documented pandas / Arrow shape from symbol codes, µs times and columns; downcast."""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from featurestore.read.sql import _NAT

__all__ = ["downcast"]

_TS_DTYPE = pd.DatetimeTZDtype("us", "UTC")

def _writable(a: np.ndarray) -> np.ndarray:
    return a if a.flags.writeable else a.copy()


def _frame(
    symbol_level: Sequence[str],
    codes: np.ndarray,
    ts_us: np.ndarray,
    values: dict[str, np.ndarray] | tuple[Sequence[str], np.ndarray],
    *,
    as_arrow: bool,
    float32: Collection[str] = (),
) -> pd.DataFrame | pa.Table:
    """The documented result from symbol codes into ``symbol_level``, µs timestamps and float columns.

    ``values`` is a dict of columns (bulk reads: no copy into a 2-D block) or (names, 2-D block)
    (small reads: one block is the cheapest frame to build). Columns named in ``float32`` (the
    feature columns of a float32 view) come out float32, the others float64.
    """
    if isinstance(values, tuple):
        names, block = values
        columns = {c: block[:, i] for i, c in enumerate(names)}
    else:
        names, block, columns = list(values), None, values
    if float32:
        # values read from real columns are exact in float64 too: the cast back loses nothing
        columns = {c: (v.astype(np.float32, copy=False) if c in float32 else v) for c, v in columns.items()}
        block = None
    ts = ts_us.view("datetime64[us]")
    if as_arrow:
        sym = pa.array(symbol_level, pa.string()).take(pa.array(codes, pa.int32()))
        data = {"symbol": sym, "ts": pa.array(ts, pa.timestamp("us", tz="UTC"), from_pandas=True)}
        data.update(
            {k: pa.array(np.ascontiguousarray(v), pa.float32() if k in float32 else pa.float64()) for k, v in columns.items()}
        )
        return pa.table(data)
    if ts.size == 1:  # the latest row of one symbol: skip the hash table
        ts_codes, uniq = (np.zeros(1, np.intp), ts) if ts_us[0] != _NAT else (np.full(1, -1, np.intp), ts[:0])
    else:
        ts_codes, uniq = pd.factorize(ts)
    index = pd.MultiIndex(
        levels=[_symbol_index(symbol_level), pd.DatetimeIndex(uniq, dtype=_TS_DTYPE)],
        codes=[codes, ts_codes],
        names=["symbol", "ts"],
        verify_integrity=False,  # levels are unique by construction and codes are in range
    )
    if block is not None:
        return pd.DataFrame(block, index=index, columns=_column_index(tuple(names)), copy=False)
    return pd.DataFrame({k: _writable(v) for k, v in columns.items()}, index=index, copy=False)


def _symbol_index(symbols: Sequence[str]) -> pd.Index:
    """The symbol level: a copy of a cached Index for the few symbols of a point read (building
    an Arrow-backed string Index wakes pyarrow's thread pool, which on two cores competes with
    the database for the CPU: most of a one-symbol read's time), a new one otherwise."""
    if len(symbols) <= 8:
        return _small_symbol_index(tuple(symbols)).copy()
    return pd.Index(list(symbols))


@functools.lru_cache(maxsize=4096)
def _small_symbol_index(symbols: tuple[str, ...]) -> pd.Index:
    return pd.Index(list(symbols))


@functools.lru_cache(maxsize=256)
def _column_index(names: tuple[str, ...]) -> pd.Index:
    return pd.Index(names)


def _empty(cols: Sequence[str], *, as_arrow: bool, float32: Collection[str] = ()) -> pd.DataFrame | pa.Table:
    return _frame(
        [], np.empty(0, np.int32), np.empty(0, np.int64), {c: np.empty(0) for c in cols}, as_arrow=as_arrow,
        float32=float32,
    )


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
