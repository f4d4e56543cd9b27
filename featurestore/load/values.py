"""Per-column conversion to numpy: symbols, timestamps (to UTC microseconds) and numbers.

Every function reports the first offending row through :class:`_Ctx`, which names it by the one
row-number rule (:func:`~featurestore.load.rules.row_label`). All checks are vectorized.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Sequence
from typing import Literal, TypeAlias, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from featurestore.load.columns import Column
from featurestore.load.rules import (
    _DAY_US,
    _OFFSET_RE,
    _SYMBOL_ALNUM,
    _SYMBOL_RULE,
    _UNIT_US,
    NAIVE_HINT,
    SYMBOL_MAX_LEN,
    SYMBOL_PATTERN,
    TS_MAX_US,
    TS_MIN_US,
    Fix,
    Hint,
    LoadInputError,
    _show,
    row_error,
)

# numpy datetime64 units an epoch column can carry (Arrow timestamps and pandas datetimes)
_DateUnit: TypeAlias = Literal["s", "ms", "us", "ns"]
_NAIVE = (Hint("pass", (Fix("assume_tz", "UTC"),), " " + NAIVE_HINT),)


class _Ctx:
    __slots__ = ("in_file", "rows", "source")

    def __init__(self, source: str, rows: np.ndarray, in_file: bool = False) -> None:
        self.source = source
        self.rows = rows
        self.in_file = in_file

    def fail(self, position: int, column: str, message: str, hints: Sequence[Hint] = ()) -> LoadInputError:
        return row_error(
            message, source=self.source, row=int(self.rows[position]), column=column, in_file=self.in_file,
            hints=hints,
        )

    def check(self, mask: np.ndarray, column: str, message: Callable[[int], str]) -> None:
        """Raise for the first True in ``mask`` (rows are in ascending order within a chunk)."""
        if mask.any():
            pos = int(np.argmax(mask))
            raise self.fail(pos, column, message(pos))


def _as_array(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return arr


def _is_string(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _first_cast_failure(arr: pa.Array, target: pa.DataType) -> int:
    """Position of the first element of ``arr`` that does not cast to ``target`` (bisection).

    Error path only: pyarrow's cast reports the bad value but not its position.
    """
    lo, hi = 0, len(arr)  # arr[:lo] casts; arr[lo:hi] contains a failure
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            pc.cast(arr.slice(lo, mid - lo), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            hi = mid
        else:
            lo = mid
    return lo


def _null_mask(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.zeros(len(arr), dtype=bool)
    return np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_bool(value: object) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_number(value: object) -> bool:
    """A number that is not a date/time: ints, floats, decimals, numpy scalars (booleans included)."""
    return isinstance(value, (int, float, np.number, np.bool_, decimal.Decimal))


def _to_arrow(series: pd.Series, name: str, ctx: _Ctx, want_string: bool = False, times: bool = False) -> pa.Array:
    """A pandas column as an Arrow array; object columns of mixed types name the first odd row."""
    try:
        return pa.array(series, from_pandas=True, type=pa.string() if want_string else None)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:  # Overflow: ints past int64
        values = series.to_numpy(dtype=object)
        notnull = ~pd.isna(values)
        if want_string:
            is_str = np.frompyfunc(_is_str, 1, 1)(values).astype(bool)
            bad = notnull & ~is_str
            if bad.any():
                pos = int(np.argmax(bad))
                raise ctx.fail(
                    pos, name, f"expected a string, got {type(values[pos]).__name__} {_show(values[pos])}"
                ) from None
        elif times:
            # name the first value that is neither text nor a date/time (numbers, bytes, ...)
            is_time = np.frompyfunc(lambda v: isinstance(v, (str, dt.date, np.datetime64)), 1, 1)(values).astype(bool)
            bad = notnull & ~is_time
            if bad.any():
                pos = int(np.argmax(bad))
                raise ctx.fail(
                    pos, name, f"unsupported value {_show(values[pos])} ({type(values[pos]).__name__}); {_NUMERIC_TS}"
                ) from None
        raise ctx.fail(0, name, f"column mixes value types that cannot be converted: {exc}") from exc


def _floats(col: Column, name: str, ctx: _Ctx) -> np.ndarray:
    """Convert a column to float64 (null -> NaN); non-numbers raise naming row and value."""
    if isinstance(col, pd.Series):
        dtype = col.dtype
        if pd.api.types.is_bool_dtype(dtype):
            raise ctx.fail(0, name, f"column has type {dtype}; expected numbers")
        if pd.api.types.is_numeric_dtype(dtype):
            return np.array(col.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64, order="C")
        if pd.api.types.is_object_dtype(dtype):  # booleans are not numbers, even among numbers (pyarrow would read True as 1.0)
            cells = col.to_numpy(dtype=object)
            ctx.check(
                np.frompyfunc(_is_bool, 1, 1)(cells).astype(bool),
                name,
                lambda pos: f"not a number: {_show(cells[pos])} (a boolean)",
            )
        try:
            col = pa.array(col, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            # Mixed Python objects (numbers and strings): let pandas find the first non-number.
            values = col.to_numpy(dtype=object)
            coerced = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
            ctx.check(
                np.isnan(coerced) & ~pd.isna(values),
                name,
                lambda pos: f"not a number: {_show(values[pos])}",
            )
            return np.ascontiguousarray(coerced)
    arr = _as_array(col)
    t = arr.type
    if pa.types.is_null(t):
        return np.full(len(arr), np.nan)
    if _is_string(t):
        arr = pc.utf8_trim_whitespace(arr)
        try:
            arr = pc.cast(arr, pa.float64())
        except pa.ArrowInvalid:
            pos = _first_cast_failure(arr, pa.float64())
            raise ctx.fail(pos, name, f"not a number: {_show(arr[pos].as_py())}") from None
    elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        arr = pc.cast(arr, pa.float64(), safe=False)  # int64 volumes beyond 2**53 round, as intended
    else:
        raise ctx.fail(0, name, f"column has type {t}; expected numbers")
    if arr.null_count:
        arr = pc.fill_null(arr, np.nan)
    return np.array(arr.to_numpy(zero_copy_only=False), dtype=np.float64, order="C")


def _symbols(col: Column, ctx: _Ctx) -> np.ndarray:
    """Validate the symbol column on its distinct values; return an object array of str."""
    if isinstance(col, pd.Series):
        if not (
            pd.api.types.is_object_dtype(col.dtype)
            or pd.api.types.is_string_dtype(col.dtype)
            or isinstance(col.dtype, pd.CategoricalDtype)
        ):
            raise ctx.fail(0, "symbol", f"column has type {col.dtype}; expected strings")
        col = _to_arrow(col, "symbol", ctx, want_string=not isinstance(col.dtype, pd.CategoricalDtype))
    arr = _as_array(col)
    if pa.types.is_null(arr.type) and len(arr):
        raise ctx.fail(0, "symbol", "missing symbol (null)")
    if not _is_string(arr.type) and len(arr):
        raise ctx.fail(0, "symbol", f"column has type {arr.type}; expected strings")
    if not len(arr):
        return np.empty(0, dtype=object)
    ctx.check(_null_mask(arr), "symbol", lambda pos: "missing symbol (null)")
    encoded = pc.dictionary_encode(arr)
    uniques = encoded.dictionary
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    length = pc.utf8_length(uniques)
    good = pc.and_(
        pc.and_(pc.greater_equal(length, 1), pc.less_equal(length, SYMBOL_MAX_LEN)),
        pc.and_(
            pc.match_substring_regex(uniques, SYMBOL_PATTERN),
            pc.match_substring_regex(uniques, _SYMBOL_ALNUM),
        ),
    )
    bad_unique = ~np.asarray(good.to_numpy(zero_copy_only=False), dtype=bool)
    if bad_unique.any():
        bad = bad_unique[indices]
        pos = int(np.argmax(bad))
        raise ctx.fail(pos, "symbol", f"invalid symbol {_show(arr[pos].as_py())}: {_SYMBOL_RULE}")
    return np.asarray(uniques.to_numpy(zero_copy_only=False), dtype=object)[indices]


def _check_range(us: np.ndarray, ctx: _Ctx, name: str, describe: Callable[[int], str]) -> None:
    ctx.check(
        (us < TS_MIN_US) | (us >= TS_MAX_US),
        name,
        lambda pos: f"timestamp {describe(pos)} is outside the allowed range "
        "1900-01-01 <= ts < 2200-01-01 UTC",
    )


def _localize(naive_us: np.ndarray, assume_tz: str, ctx: _Ctx, name: str, where: np.ndarray) -> np.ndarray:
    """Wall-clock microseconds in ``assume_tz`` -> UTC microseconds; DST gaps/overlaps raise.

    ``where`` maps positions in ``naive_us`` to positions in the chunk (for the row number).
    """
    if assume_tz.upper() == "UTC" or not len(naive_us):
        return naive_us
    idx = pd.DatetimeIndex(naive_us.view("datetime64[us]"))
    local = idx.tz_localize(assume_tz, ambiguous="NaT", nonexistent="NaT")
    bad = np.asarray(local.isna())
    if bad.any():
        pos = int(np.argmax(bad))
        raise ctx.fail(
            int(where[pos]),
            name,
            f"local time {idx[pos]} does not exist or is ambiguous in {assume_tz} (daylight "
            "saving change); give these times a UTC offset",
        )
    return np.asarray(local.tz_convert("UTC").tz_convert(None).as_unit("us").asi8, dtype=np.int64)


def _epoch_to_us(
    values: np.ndarray, unit: str, naive: bool, ctx: _Ctx, name: str, assume_tz: str | None
) -> np.ndarray:
    """int64 epoch values in ``unit`` -> UTC microseconds, with the naive / precision / range checks."""
    if naive and assume_tz is None and len(values):
        raise ctx.fail(0, name, "timestamps have no time zone (naive)", _NAIVE)
    if unit == "ns":
        ctx.check(
            values % 1000 != 0,
            name,
            lambda pos: f"timestamp {np.datetime64(int(values[pos]), 'ns')} has nanoseconds; "
            "featurestore stores microseconds (round or floor the column first)",
        )
        us = values // 1000
    else:
        factor = _UNIT_US[unit]
        # Clip before scaling so absurd values cannot overflow; clipped values stay out of range
        # even after a time-zone shift (at most about a day).
        lo, hi = (TS_MIN_US - 2 * _DAY_US) // factor, (TS_MAX_US + 2 * _DAY_US) // factor
        us = np.clip(values, lo, hi) * factor
    if naive:
        assert assume_tz is not None
        us = _localize(us, assume_tz, ctx, name, np.arange(len(us)))
    zone = "" if naive else "Z"
    _check_range(us, ctx, name, lambda pos: f"{np.datetime64(int(values[pos]), cast('_DateUnit', unit))}{zone}")
    return np.ascontiguousarray(us, dtype=np.int64)


def _ts_strings(arr: pa.Array, ctx: _Ctx, name: str, assume_tz: str | None) -> np.ndarray:
    """ISO 8601 strings -> UTC microseconds. Offsets are converted; naive ones need assume_tz."""
    try:  # fast path: every string is clean ISO 8601 with an offset and at most 6 decimals
        us = pc.cast(arr, pa.timestamp("us", "UTC")).cast(pa.int64()).to_numpy()
    except pa.ArrowInvalid:
        pass
    else:
        _check_range(us, ctx, name, lambda pos: _show(arr[pos].as_py()))
        return us
    text = pc.utf8_trim_whitespace(arr)
    # A 7th+ fractional digit: zeros are harmless (strip them), anything else is lost precision.
    text = pc.replace_substring_regex(text, r"([.,]\d{6})0+(\D|$)", r"\1\2")
    sub_us = np.asarray(
        pc.match_substring_regex(text, r"[.,]\d{7}").to_numpy(zero_copy_only=False), dtype=bool
    )
    ctx.check(
        sub_us,
        name,
        lambda pos: f"timestamp {_show(arr[pos].as_py())} has more than microsecond precision; "
        "featurestore stores microseconds",
    )
    aware = np.asarray(pc.match_substring_regex(text, _OFFSET_RE).to_numpy(zero_copy_only=False), dtype=bool)
    pos_aware, pos_naive = np.flatnonzero(aware), np.flatnonzero(~aware)
    parts: list[tuple[np.ndarray, pa.DataType]] = [
        (pos_aware, pa.timestamp("us", "UTC")),
        (pos_naive, pa.timestamp("us")),
    ]
    parsed: list[np.ndarray] = []
    bad_rows: list[int] = []
    for positions, typ in parts:
        subset = text.take(pa.array(positions, pa.int64()))
        try:
            parsed.append(pc.cast(subset, typ).cast(pa.int64()).to_numpy())
        except pa.ArrowInvalid:
            bad_rows.append(int(positions[_first_cast_failure(subset, typ)]))
    if bad_rows:
        pos = min(bad_rows)
        raise ctx.fail(
            pos,
            name,
            f"cannot parse timestamp {_show(arr[pos].as_py())}; expected ISO 8601 such as "
            "2024-01-31T16:00:00+00:00",
        )
    aware_us, naive_us = parsed
    if len(pos_naive) and assume_tz is None:
        pos = int(pos_naive[0])
        raise ctx.fail(
            pos, name, f"timestamp {_show(arr[pos].as_py())} has no UTC offset (naive)", _NAIVE
        )
    out = np.empty(len(arr), dtype=np.int64)
    out[pos_aware] = aware_us
    if len(pos_naive):
        assert assume_tz is not None
        out[pos_naive] = _localize(naive_us, assume_tz, ctx, name, pos_naive)
    _check_range(out, ctx, name, lambda pos: _show(arr[pos].as_py()))
    return out


def _check_awareness_agrees(series: pd.Series, ctx: _Ctx, name: str) -> None:
    """Date/time objects must be all tz-aware or all naive: pyarrow types the column by its first
    value, so a naive value among aware ones would silently be read as UTC (and an aware one
    among naive ones as wall-clock time). Object columns only; names the first odd row."""
    values = series.to_numpy(dtype=object)
    naive = np.frompyfunc(lambda v: isinstance(v, dt.datetime) and v.tzinfo is None or isinstance(v, np.datetime64), 1, 1)
    aware = np.frompyfunc(lambda v: isinstance(v, dt.datetime) and v.tzinfo is not None, 1, 1)
    is_naive, is_aware = naive(values).astype(bool), aware(values).astype(bool)
    if is_naive.any() and is_aware.any():
        first_kind_naive = bool(is_naive[np.argmax(is_naive | is_aware)])
        odd = is_aware if first_kind_naive else is_naive
        pos = int(np.argmax(odd))
        raise ctx.fail(
            pos,
            name,
            f"timestamp {_show(values[pos])} is {'tz-aware' if first_kind_naive else 'naive'} but earlier "
            f"ones are {'naive' if first_kind_naive else 'tz-aware'}; give every value a time zone",
        )


_NUMERIC_TS = "ts is numeric; convert to datetime with an explicit unit (e.g. pd.to_datetime(x, unit='s', utc=True))"


def _timestamps(col: Column, ctx: _Ctx, assume_tz: str | None, name: str = "ts") -> np.ndarray:
    if isinstance(col, pd.Series):
        dtype = col.dtype
        if isinstance(dtype, pd.DatetimeTZDtype):
            ctx.check(np.asarray(col.isna()), name, lambda pos: "missing timestamp")
            naive_utc = col.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
            unit = np.datetime_data(naive_utc.dtype)[0]
            return _epoch_to_us(naive_utc.view(np.int64), unit, False, ctx, name, assume_tz)
        if pd.api.types.is_datetime64_dtype(dtype):
            ctx.check(np.asarray(col.isna()), name, lambda pos: "missing timestamp")
            values = col.to_numpy()
            unit = np.datetime_data(values.dtype)[0]
            return _epoch_to_us(values.view(np.int64), unit, True, ctx, name, assume_tz)
        if pd.api.types.is_bool_dtype(dtype):
            raise ctx.fail(0, name, f"column has type {dtype}; expected timestamps")
        if pd.api.types.is_numeric_dtype(dtype):
            raise ctx.fail(0, name, _NUMERIC_TS)
        if pd.api.types.is_object_dtype(dtype):  # a number among timestamps would be read as an epoch: refuse it, naming the row
            cells = col.to_numpy(dtype=object)
            ctx.check(
                np.frompyfunc(_is_number, 1, 1)(cells).astype(bool) & ~pd.isna(cells),  # NaN: "missing timestamp"
                name,
                lambda pos: f"unsupported value {_show(cells[pos])} ({type(cells[pos]).__name__}); {_NUMERIC_TS}",
            )
        series = col
        col = _to_arrow(col, name, ctx, times=True)
        if pa.types.is_timestamp(col.type):
            _check_awareness_agrees(series, ctx, name)
    arr = _as_array(col)
    t = arr.type
    if not len(arr):
        return np.empty(0, dtype=np.int64)
    if pa.types.is_null(t):
        raise ctx.fail(0, name, "missing timestamp")
    ctx.check(_null_mask(arr), name, lambda pos: "missing timestamp")
    if pa.types.is_timestamp(t):
        return _epoch_to_us(arr.cast(pa.int64()).to_numpy(), t.unit, t.tz is None, ctx, name, assume_tz)
    if pa.types.is_date32(t):
        days = arr.cast(pa.int32()).to_numpy().astype(np.int64)
        return _epoch_to_us(days * 86_400, "s", True, ctx, name, assume_tz)
    if pa.types.is_date64(t):
        return _epoch_to_us(arr.cast(pa.int64()).to_numpy(), "ms", True, ctx, name, assume_tz)
    if _is_string(t):
        return _ts_strings(arr, ctx, name, assume_tz)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        raise ctx.fail(0, name, _NUMERIC_TS)
    raise ctx.fail(0, name, f"column has type {t}; expected timestamps")

