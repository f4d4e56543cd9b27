"""[read] Argument normalization: symbols, times, column selections, tolerances, event times."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from featurestore.errors import ConfigError, NotFoundError, ValidationError
from featurestore.schema import BAR_COLUMNS

_UTC = dt.UTC
_UTC_SUFFIX = re.compile(r"^\s*(\S.*?)\s*(?:UTC|Z)\s*$", re.IGNORECASE)
_NAIVE_HINT = "pass a tz-aware time, or a string with an offset such as '2024-01-31T00:00Z' or '2024-01-31 UTC'"


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


def knowledge_time(value: Any) -> dt.datetime | None:
    """``as_known_at`` -> a UTC datetime at µs precision (rounded down: never later than asked), or None (now)."""
    if value is None:
        return None
    return _bound(value, "as_known_at", ceil=False)


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


def _tolerance(tolerance: Any) -> int | None:
    """A training frame's tolerance -> µs (None: unbounded); negative or unparseable raise ConfigError."""
    if tolerance is None:
        return None
    try:
        td = pd.Timedelta(tolerance)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"tolerance={tolerance!r} is not a duration: {exc}") from None
    if td is pd.NaT or td < pd.Timedelta(0):
        raise ConfigError(f"tolerance={tolerance!r} must be a duration >= 0 (e.g. '7D'), or None")
    return int(td.value // 1000)


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
