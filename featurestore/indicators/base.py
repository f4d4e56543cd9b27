"""The pieces every indicator definition is built from: ``ParamDef``, ``IndicatorDef`` and the
reference helpers (TA-Lib call wrappers, a seeded pandas EWM).

Kept apart from ``registry`` so that the family modules in ``defs`` can import them without a
cycle (``registry`` assembles ``REGISTRY`` from the families). Nothing here imports numba,
talib or pandas at import time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from featurestore.errors import IndicatorError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "HLC",
    "MAX_NBDEV",
    "MAX_PERIOD",
    "Arrays",
    "IndicatorDef",
    "Number",
    "ParamDef",
    "Ref",
    "format_number",
    "name_number",
    "periods",
    "seeded_ewm",
    "series",
    "ta",
    "talib_module",
    "UserKernelError",
]

Number = int | float
Arrays = Mapping[str, np.ndarray]
Ref = Callable[[Arrays, Mapping[str, Number]], tuple[np.ndarray, ...]]

#: TA-Lib 0.8.2's accepted ranges, measured with talib (TA_BAD_PARAM outside them).
MAX_PERIOD = 100_000
#: Bollinger multipliers: TA-Lib accepts -3e37..3e37; we accept 0..100 so that names stay short
#: plain identifiers (a negative multiplier only swaps the bands).
MAX_NBDEV = 100.0
HLC = ("high", "low", "close")


class UserKernelError(IndicatorError):
    """A user-defined kernel (``featurestore.indicators.register``) is invalid, broke its
    contract while computing, or is not registered (with the same code) where a view needs it."""


@dataclass(frozen=True)
class ParamDef:
    """One parameter: its type, default and inclusive range.

    ``tag`` makes it a *tagged* parameter (e.g. ``"u"`` for TA-Lib's unstable period): it is
    written into names only when it differs from its default, as ``<tag><value>`` after the
    positional parameters (``ema_30_u50``), parsed from such a token in any position after the
    kind, and left out of ``IndicatorSpec.to_dict`` at its default (so stored view hashes of
    specs that predate it do not change).
    """

    name: str
    type: type
    default: Number
    lo: Number
    hi: Number
    aliases: tuple[str, ...] = ()
    tag: str = ""

    def check(self, kind: str, value: Any) -> Number:
        """Return ``value`` normalized to this parameter's type, or raise IndicatorError."""
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise IndicatorError(
                f"{kind}: parameter {self.name!r} must be a number, got {value!r}"
            )
        if self.type is int:
            if isinstance(value, (float, np.floating)) and not float(value).is_integer():
                raise IndicatorError(
                    f"{kind}: parameter {self.name!r} must be an integer, got {value!r}"
                )
            out: Number = int(value)
        else:
            out = float(value)
            if not math.isfinite(out):
                raise IndicatorError(f"{kind}: parameter {self.name!r} must be finite, got {value!r}")
        if not (self.lo <= out <= self.hi):
            raise IndicatorError(
                f"{kind}: parameter {self.name!r} must be in {format_number(self.lo)}.."
                f"{format_number(self.hi)} (TA-Lib's range), got {value!r}"
            )
        return out


@dataclass(frozen=True)
class IndicatorDef:
    """Everything the library knows about one indicator kind (see ``defs`` for the contract).

    ``outputs`` are output keys ("" for the main output); ``kernel`` is ``"<family>.<function>"``
    in ``featurestore.indicators.kernels`` (e.g. ``"averages.sma_run"``), called as
    ``kernel(*inputs, offsets, *params, state_in, state, *outputs)`` (it returns 0 or an error
    code). Optional hooks, for kinds whose names or parameters need more than the default rule:

    - ``canonical(params) -> params``: after range checks, e.g. MACD swaps fast/slow.
    - ``name_tokens(params) -> list[str]``: the parameter part of names (default: every
      untagged parameter in order, then tagged ones that differ from their default).
    - ``complete(params, n_positional) -> params``: fill parameters a short spec string left
      out, e.g. ``bbands_20_2`` sets nbdevdn = nbdevup.
    - ``fixed``: parameters accepted only at one value and never stored (BBANDS' matype=0).

    ``code_hash`` is set only for user-defined kinds (``featurestore.indicators.user``): the
    hash of their code and declaration, which ``IndicatorSpec.to_dict`` records so that a view
    computed by other code is never continued with this one. Built-ins leave it empty.
    """

    kind: str
    title: str
    inputs: tuple[str, ...]
    params: tuple[ParamDef, ...]
    outputs: tuple[str, ...]
    kernel: str
    talib_name: str
    lookback: Callable[[Mapping[str, Number]], int]
    state_len: Callable[[Mapping[str, Number]], int]
    talib_ref: Ref
    pandas_ref: Ref | None = None
    canonical: Callable[[dict[str, Number]], dict[str, Number]] | None = None
    name_tokens: Callable[[Mapping[str, Number]], list[str]] | None = None
    complete: Callable[[dict[str, Number], int], dict[str, Number]] | None = None
    fixed: tuple[tuple[str, Number], ...] = ()
    code_hash: str = ""

    def param(self, name: str) -> ParamDef:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)


def format_number(value: Number) -> str:
    """Shortest round-trip decimal, no exponent, ``.0`` dropped: 2.0 -> '2', 1.5 -> '1.5'."""
    if isinstance(value, int):
        return str(value)
    if float(value).is_integer():
        return str(int(value))
    return np.format_float_positional(float(value), trim="-")


def name_number(value: Number) -> str:
    """``format_number`` with the decimal point written as ``p`` (1.5 -> '1p5')."""
    return format_number(value).replace(".", "p")


def periods(lo: int, default: int) -> tuple[ParamDef, ...]:
    """The usual single ``period`` parameter (alias ``timeperiod``), lo..MAX_PERIOD."""
    return (ParamDef("period", int, default, lo, MAX_PERIOD, ("timeperiod",)),)


# ----------------------------------------------------------------------------- references
def talib_module() -> Any:
    """``talib``, imported on first use (a dev/test dependency, not a runtime one)."""
    try:
        import talib
    except ImportError as exc:
        raise IndicatorError("the TA-Lib reference needs the 'ta-lib' package (pip install ta-lib)") from exc
    return talib


def series(a: np.ndarray) -> pd.Series:
    import pandas as pd

    return pd.Series(a, copy=False)


def seeded_ewm(values: pd.Series, seed_at: int, seed: float, alpha: float) -> np.ndarray:
    """Recursive EMA (``adjust=False``) started at ``seed_at`` from ``seed``; NaN before."""
    out = np.full(len(values), np.nan)
    if seed_at >= len(values):
        return out
    tail = values.iloc[seed_at:].copy()
    tail.iloc[0] = seed
    out[seed_at:] = tail.ewm(alpha=alpha, adjust=False).mean().to_numpy()
    return out


def ta(name: str, *param_names: str, inputs: tuple[str, ...] = ("close",), unstable: str = "") -> Ref:
    """A reference that calls ``talib.<name>(*inputs, *params)``.

    ``unstable``: TA-Lib's unstable-period function id (e.g. ``"EMA"``); the spec's
    ``unstable`` parameter is then set with ``talib.set_unstable_period`` for the call and
    reset to 0 afterwards (TA-Lib's setting is process-global: not thread-safe).
    """

    def ref(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
        lib = talib_module()
        fn = getattr(lib, name)
        args = [a[i] for i in inputs] + [p[k] for k in param_names]
        if unstable:
            lib.set_unstable_period(unstable, int(p.get("unstable", 0)))
            try:
                out = fn(*args)
            finally:
                lib.set_unstable_period(unstable, 0)
        else:
            out = fn(*args)
        return tuple(out) if isinstance(out, tuple) else (out,)

    return ref
