"""Indicator specs: names, parameters, output columns, lookbacks and reference implementations.

One registry (``REGISTRY``) maps each indicator kind to its definition: the inputs it needs, its
parameters (defaults and TA-Lib's accepted ranges), its outputs, the numba kernel that computes
it and the references that tests and benchmarks compare it with (the TA-Lib function, and a
pandas formulation where one exists). ``IndicatorSpec`` is one configured indicator: hashable,
with a canonical string (``str(spec)``, e.g. ``macd_12_26_9``) and a JSON-able ``to_dict()`` form,
which is how feature views store it.

Naming rule, for spec strings and output columns alike::

    <kind>[_<output>][_<param>...]

- ``<output>`` is omitted for an indicator's main output (``sma_20``, ``macd_12_26_9``) and
  names the others (``macd_signal_12_26_9``, ``bbands_upper_20_2``).
- Parameters follow in the registry's order (``macd``: fast, slow, signal; ``bbands``: period,
  nbdevup, nbdevdn). ``bbands`` writes one multiplier when ``nbdevup == nbdevdn``
  (``bbands_20_2``) and both otherwise (``bbands_20_2_1p5``). ``matype`` (always 0) is not written.
- Numbers are written as the shortest decimal that round-trips, with no exponent, a trailing
  ``.0`` dropped and the decimal point written as ``p`` (2.0 -> ``2``, 1.5 -> ``1p5``), so every
  name is a plain lower-case SQL identifier. ``parse_indicator`` also accepts ``1.5``.
- MACD is stored with ``fast <= slow``: TA-Lib swaps them when ``slow < fast`` and the outputs
  are identical, so ``macd(26, 12, 9)`` *is* ``macd_12_26_9``.

Nothing here imports numba, talib or pandas; references import them when called.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from featurestore.errors import IndicatorError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "REGISTRY",
    "IndicatorDef",
    "IndicatorSpec",
    "ParamDef",
    "format_number",
    "indicator",
    "parse_indicator",
    "parse_output_name",
]

Number = int | float
Arrays = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]

# TA-Lib 0.8.2's accepted ranges, measured with talib (TA_BAD_PARAM outside them).
_MAX_PERIOD = 100_000
# Bollinger multipliers: TA-Lib accepts -3e37..3e37; we accept 0..100 so that names stay short
# plain identifiers (a negative multiplier only swaps the bands).
_MAX_NBDEV = 100.0


@dataclass(frozen=True)
class ParamDef:
    """One parameter: its type, default and inclusive range."""

    name: str
    type: type
    default: Number
    lo: Number
    hi: Number
    aliases: tuple[str, ...] = ()

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
    """Everything the library knows about one indicator kind.

    ``outputs`` are output keys ("" for the main output); ``kernel`` is the name of the
    function in ``kernels``, called as
    ``kernel(*inputs, offsets, *params, state_in, state, *outputs)`` (it returns 0 or an error code).
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
    talib_ref: Callable[[Arrays, Mapping[str, Number]], tuple[np.ndarray, ...]]
    pandas_ref: Callable[[Arrays, Mapping[str, Number]], tuple[np.ndarray, ...]] | None = None

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


def _name_number(value: Number) -> str:
    return format_number(value).replace(".", "p")


@dataclass(frozen=True)
class IndicatorSpec:
    """One configured indicator, e.g. ``IndicatorSpec("macd", {"fast": 5, "slow": 35, "signal": 5})``.

    ``params`` may be given as a mapping (missing ones take their defaults); it is stored as a
    tuple of ``(name, value)`` pairs in the registry's order, so specs are hashable and two
    specs with the same effective parameters compare equal. Use ``indicator(kind, **params)`` or
    ``parse_indicator("macd_12_26_9")`` for the short forms.
    """

    kind: str
    params: tuple[tuple[str, Number], ...] = field(default=())

    def __post_init__(self) -> None:
        kind = str(self.kind).lower()
        if kind not in REGISTRY:
            raise IndicatorError(
                f"unknown indicator {self.kind!r}; known: {', '.join(sorted(REGISTRY))}"
            )
        raw = dict(self.params.items() if isinstance(self.params, Mapping) else self.params)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "params", _normalize_params(REGISTRY[kind], raw))
        # Hashed once: specs key the api's per-spec call plans, looked up on every call.
        object.__setattr__(self, "_hash", hash((self.kind, self.params)))

    def __hash__(self) -> int:
        return self._hash  # type: ignore[no-any-return,attr-defined]

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild (and so re-hash) on unpickling: string hashes differ between processes.
        return (type(self), (self.kind, self.params))

    # -- views ------------------------------------------------------------------------------
    @property
    def definition(self) -> IndicatorDef:
        return REGISTRY[self.kind]

    @property
    def p(self) -> dict[str, Number]:
        """The parameters as a new dict."""
        return dict(self.params)

    @cached_property
    def name(self) -> str:
        """Canonical string, e.g. ``sma_20``, ``macd_12_26_9``, ``bbands_20_2_1p5``, ``trange``."""
        return self._column("")

    def __str__(self) -> str:
        return self.name

    @property
    def inputs(self) -> tuple[str, ...]:
        """Input columns needed, in kernel order: ``("close",)`` or ``("high", "low", "close")``."""
        return self.definition.inputs

    @property
    def output_keys(self) -> tuple[str, ...]:
        """Output keys in kernel order ("" is the main output): e.g. ``("", "signal", "hist")``."""
        return self.definition.outputs

    @cached_property
    def outputs(self) -> tuple[str, ...]:
        """Output column names in kernel order, e.g. ``("macd_12_26_9", "macd_signal_12_26_9", ...)``."""
        return tuple(self._column(o) for o in self.definition.outputs)

    @cached_property
    def lookback(self) -> int:
        """Leading NaN bars on NaN-free input (TA-Lib's lookback): the first valid bar's index."""
        return self.definition.lookback(self.p)

    @cached_property
    def state_len(self) -> int:
        """Length of one symbol's state row (float64 values)."""
        return self.definition.state_len(self.p)

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, ``{"kind": "macd", "params": {"fast": 12, "slow": 26, "signal": 9}}``."""
        return {"kind": self.kind, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IndicatorSpec:
        """Inverse of ``to_dict`` (validates again: a stored spec may predate a rule change)."""
        if not isinstance(data, Mapping) or "kind" not in data:
            raise IndicatorError(f"indicator spec dict needs a 'kind' key, got {data!r}")
        extra = set(data) - {"kind", "params"}
        if extra:
            raise IndicatorError(f"indicator spec dict has unknown keys {sorted(extra)}")
        params = data.get("params") or {}
        if not isinstance(params, Mapping):
            raise IndicatorError(f"indicator spec 'params' must be an object, got {params!r}")
        return cls(str(data["kind"]), dict(params))  # type: ignore[arg-type]

    def _column(self, output: str) -> str:
        parts = [self.kind]
        if output:
            parts.append(output)
        p = self.p
        if self.kind == "bbands":
            parts.append(_name_number(p["period"]))
            parts.append(_name_number(p["nbdevup"]))
            if p["nbdevdn"] != p["nbdevup"]:
                parts.append(_name_number(p["nbdevdn"]))
        else:
            parts.extend(_name_number(v) for _, v in self.params)
        return "_".join(parts)


def _normalize_params(defn: IndicatorDef, raw: dict[str, Any]) -> tuple[tuple[str, Number], ...]:
    """Resolve aliases, reject unknown names, fill defaults, check ranges, canonical order."""
    given: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).lower()
        if name == "matype" and "matype" not in {p.name for p in defn.params}:
            if defn.kind == "bbands":
                if isinstance(value, bool) or value != 0:
                    raise IndicatorError(f"bbands: only matype=0 (SMA) is supported, got {value!r}")
                continue
        for p in defn.params:
            if name == p.name or name in p.aliases:
                if p.name in given:
                    raise IndicatorError(f"{defn.kind}: parameter {p.name!r} given twice")
                given[p.name] = value
                break
        else:
            known = ", ".join(p.name for p in defn.params) or "none"
            raise IndicatorError(
                f"{defn.kind}: unknown parameter {key!r} (parameters: {known})"
            )
    out = {p.name: p.check(defn.kind, given.get(p.name, p.default)) for p in defn.params}
    if defn.kind == "macd" and out["slow"] < out["fast"]:
        # TA-Lib swaps them; storing them swapped makes equal outputs equal specs.
        out["fast"], out["slow"] = out["slow"], out["fast"]
    return tuple((p.name, out[p.name]) for p in defn.params)


def indicator(kind: str, **params: Number) -> IndicatorSpec:
    """``indicator("macd", fast=12, slow=26, signal=9)``: a spec from keyword parameters."""
    return IndicatorSpec(kind, params)  # type: ignore[arg-type]


_NUM = re.compile(r"[0-9]+(?:[.p][0-9]+)?")


def _short(value: object, limit: int = 60) -> str:
    """repr() cut to ``limit`` characters: errors must not echo a hostile 10,000-character input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_indicator(text: str | IndicatorSpec) -> IndicatorSpec:
    """Parse a short spec string: ``sma_20``, ``macd_12_26_9``, ``bbands_20_2``, ``bbands_20_2_1.5``.

    Parameters are positional in the registry's order; missing trailing ones take their
    defaults (``rsi`` is RSI(14)); ``bbands_<n>_<k>`` sets both multipliers to k.
    """
    if isinstance(text, IndicatorSpec):
        return text
    if not isinstance(text, str):
        raise IndicatorError(f"indicator spec must be a string, got {_short(text)}")
    tokens = text.strip().lower().split("_")
    kind = tokens[0]
    if kind not in REGISTRY:
        raise IndicatorError(
            f"unknown indicator {_short(text)}; known: {', '.join(sorted(REGISTRY))}"
        )
    defn = REGISTRY[kind]
    values = tokens[1:]
    if len(values) > len(defn.params):
        raise IndicatorError(
            f"{_short(text)}: {kind} takes at most {len(defn.params)} parameters "
            f"({', '.join(p.name for p in defn.params) or 'none'})"
        )
    params: dict[str, Number] = {}
    for p, tok in zip(defn.params, values):
        if not _NUM.fullmatch(tok):
            raise IndicatorError(f"{_short(text)}: {p.name} must be a non-negative number, got {_short(tok)}")
        num = tok.replace("p", ".")
        if p.type is int and not num.isdigit():
            raise IndicatorError(f"{_short(text)}: {p.name} must be an integer, got {_short(tok)}")
        params[p.name] = int(num) if p.type is int else float(num)
    if kind == "bbands" and len(values) == 2:
        params["nbdevdn"] = params["nbdevup"]
    return IndicatorSpec(kind, params)  # type: ignore[arg-type]


def parse_output_name(column: str) -> tuple[IndicatorSpec, str]:
    """Map an output column name back to ``(spec, output key)``: ``macd_signal_12_26_9`` ->
    ``(macd_12_26_9, "signal")``."""
    tokens = column.strip().lower().split("_")
    if tokens and tokens[0] in REGISTRY and len(tokens) > 1:
        outs = REGISTRY[tokens[0]].outputs
        if tokens[1] in outs and tokens[1] != "":
            spec = parse_indicator("_".join([tokens[0], *tokens[2:]]))
            if spec._column(tokens[1]) == column:
                return spec, tokens[1]
            raise IndicatorError(f"{column!r} is not canonical; did you mean {spec._column(tokens[1])!r}?")
    spec = parse_indicator(column)
    if "" not in spec.output_keys:
        raise IndicatorError(
            f"{column!r} names no output; {spec.kind} outputs are {', '.join(spec.outputs)}"
        )
    if spec.name != column:
        raise IndicatorError(f"{column!r} is not canonical; did you mean {spec.name!r}?")
    return spec, ""


# ----------------------------------------------------------------------------- references
def _talib() -> Any:
    try:
        import talib
    except ImportError as exc:  # a dev/test dependency, not a runtime one
        raise IndicatorError("the TA-Lib reference needs the 'ta-lib' package (pip install ta-lib)") from exc
    return talib


def _series(a: np.ndarray) -> pd.Series:
    import pandas as pd

    return pd.Series(a, copy=False)


def _seeded_ewm(values: pd.Series, seed_at: int, seed: float, alpha: float) -> np.ndarray:
    """Recursive EMA (``adjust=False``) started at ``seed_at`` from ``seed``; NaN before."""
    out = np.full(len(values), np.nan)
    if seed_at >= len(values):
        return out
    tail = values.iloc[seed_at:].copy()
    tail.iloc[0] = seed
    out[seed_at:] = tail.ewm(alpha=alpha, adjust=False).mean().to_numpy()
    return out


def _pd_sma(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    return (_series(a["close"]).rolling(int(p["period"])).mean().to_numpy(),)


def _pd_ema(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    n = int(p["period"])
    x = _series(a["close"])
    seed = float(x.iloc[:n].mean()) if len(x) >= n else math.nan
    return (_seeded_ewm(x, n - 1, seed, 2.0 / (n + 1)),)


def _pd_rsi(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    n = int(p["period"])
    d = _series(a["close"]).diff()
    gain, loss = d.clip(lower=0.0), (-d).clip(lower=0.0)
    g0 = float(gain.iloc[1 : n + 1].mean()) if len(d) > n else math.nan
    l0 = float(loss.iloc[1 : n + 1].mean()) if len(d) > n else math.nan
    g = _seeded_ewm(gain, n, g0, 1.0 / n)
    los = _seeded_ewm(loss, n, l0, 1.0 / n)
    with np.errstate(invalid="ignore", divide="ignore"):
        rsi = np.where(g + los > 0, 100.0 * g / (g + los), np.where(np.isnan(g), np.nan, 0.0))
    return (rsi,)


def _pd_macd(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    fast, slow, sig = int(p["fast"]), int(p["slow"]), int(p["signal"])
    x = _series(a["close"])
    s = slow - 1
    if len(x) <= s:
        nan = np.full(len(x), np.nan)
        return nan, nan.copy(), nan.copy()
    slow_ema = _seeded_ewm(x, s, float(x.iloc[: s + 1].mean()), 2.0 / (slow + 1))
    fast_ema = _seeded_ewm(x, s, float(x.iloc[s - fast + 1 : s + 1].mean()), 2.0 / (fast + 1))
    line = _series(fast_ema - slow_ema)
    lb = s + sig - 1
    seed = float(line.iloc[s : lb + 1].mean()) if len(x) > lb else math.nan
    signal = _seeded_ewm(line, lb, seed, 2.0 / (sig + 1))
    line_np = line.to_numpy().copy()
    line_np[:lb] = np.nan
    return line_np, signal, line_np - signal


def _pd_bbands(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    n = int(p["period"])
    r = _series(a["close"]).rolling(n)
    mid = r.mean().to_numpy()
    sd = r.std(ddof=0).to_numpy()
    return mid + float(p["nbdevup"]) * sd, mid, mid - float(p["nbdevdn"]) * sd


def _pd_trange_series(a: Arrays) -> pd.Series:
    import pandas as pd

    h, lo, c = _series(a["high"]), _series(a["low"]), _series(a["close"])
    pc = c.shift(1)
    tr = pd.concat([h - lo, (pc - h).abs(), (lo - pc).abs()], axis=1).max(axis=1, skipna=False)
    tr.iloc[:1] = np.nan
    return tr


def _pd_trange(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    return (_pd_trange_series(a).to_numpy(),)


def _pd_atr(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    n = int(p["period"])
    tr = _pd_trange_series(a)
    seed = float(tr.iloc[1 : n + 1].mean()) if len(tr) > n else math.nan
    return (_seeded_ewm(tr, n, seed, 1.0 / n),)


def _pd_adx(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    n = int(p["period"])
    h, lo = _series(a["high"]), _series(a["low"])
    up, down = h.diff(), -lo.diff()
    pdm = up.where((up > 0) & (up > down), 0.0)
    mdm = down.where((down > 0) & (up < down), 0.0)
    tr = _pd_trange_series(a)
    m = len(h)
    if m < 2 * n:
        return (np.full(m, np.nan),)
    # Wilder sums seeded at bar n-1 with the sum of n-1 terms, i.e. n x a seeded Wilder average.
    sm = [
        _seeded_ewm(s, n - 1, float(s.iloc[1:n].sum()) / n, 1.0 / n)
        for s in (pdm, mdm, tr)
    ]
    with np.errstate(invalid="ignore", divide="ignore"):
        pdi, mdi = 100.0 * sm[0] / sm[2], 100.0 * sm[1] / sm[2]
        dx = _series(100.0 * np.abs(pdi - mdi) / (pdi + mdi))
    adx = _seeded_ewm(dx, 2 * n - 1, float(dx.iloc[n : 2 * n].mean()), 1.0 / n)
    return (adx,)


def _ta(name: str, *param_names: str, inputs: tuple[str, ...] = ("close",)) -> Callable[
    [Arrays, Mapping[str, Number]], tuple[np.ndarray, ...]
]:
    def ref(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
        fn = getattr(_talib(), name)
        out = fn(*(a[i] for i in inputs), *(p[k] for k in param_names))
        return tuple(out) if isinstance(out, tuple) else (out,)

    return ref


def _periods(lo: int, default: int) -> tuple[ParamDef, ...]:
    return (ParamDef("period", int, default, lo, _MAX_PERIOD, ("timeperiod",)),)


_HLC = ("high", "low", "close")

# Defaults are TA-Lib's (talib.abstract.Function(name).info): SMA/EMA 30, RSI/ATR/ADX 14,
# MACD 12/26/9, BBANDS 20/2/2. Lower bounds are TA-Lib 0.8.2's, measured.
REGISTRY: dict[str, IndicatorDef] = {
    d.kind: d
    for d in (
        IndicatorDef(
            "sma", "Simple moving average", ("close",), _periods(1, 30), ("",), "sma_run", "SMA",
            lookback=lambda p: int(p["period"]) - 1,
            state_len=lambda p: 2 + int(p["period"]) - 1,
            talib_ref=_ta("SMA", "period"), pandas_ref=_pd_sma,
        ),
        IndicatorDef(
            "ema", "Exponential moving average (SMA seed)", ("close",), _periods(1, 30), ("",),
            "ema_run", "EMA",
            lookback=lambda p: int(p["period"]) - 1,
            state_len=lambda p: 2,
            talib_ref=_ta("EMA", "period"), pandas_ref=_pd_ema,
        ),
        IndicatorDef(
            "rsi", "Relative strength index (Wilder)", ("close",), _periods(2, 14), ("",),
            "rsi_run", "RSI",
            lookback=lambda p: int(p["period"]),
            state_len=lambda p: 4,
            talib_ref=_ta("RSI", "period"), pandas_ref=_pd_rsi,
        ),
        IndicatorDef(
            "macd", "Moving average convergence/divergence", ("close",),
            (
                ParamDef("fast", int, 12, 2, _MAX_PERIOD, ("fastperiod",)),
                ParamDef("slow", int, 26, 2, _MAX_PERIOD, ("slowperiod",)),
                ParamDef("signal", int, 9, 1, _MAX_PERIOD, ("signalperiod",)),
            ),
            ("", "signal", "hist"), "macd_run", "MACD",
            lookback=lambda p: int(max(p["fast"], p["slow"])) - 1 + int(p["signal"]) - 1,
            state_len=lambda p: 4,
            talib_ref=_ta("MACD", "fast", "slow", "signal"), pandas_ref=_pd_macd,
        ),
        IndicatorDef(
            "bbands", "Bollinger bands (SMA, population std)", ("close",),
            (
                ParamDef("period", int, 20, 2, _MAX_PERIOD, ("timeperiod",)),
                ParamDef("nbdevup", float, 2.0, 0.0, _MAX_NBDEV),
                ParamDef("nbdevdn", float, 2.0, 0.0, _MAX_NBDEV),
            ),
            ("upper", "middle", "lower"), "bbands_run", "BBANDS",
            lookback=lambda p: int(p["period"]) - 1,
            state_len=lambda p: 6 + int(p["period"]) - 1,
            talib_ref=_ta("BBANDS", "period", "nbdevup", "nbdevdn"), pandas_ref=_pd_bbands,
        ),
        IndicatorDef(
            "atr", "Average true range (Wilder)", _HLC, _periods(1, 14), ("",), "atr_run", "ATR",
            lookback=lambda p: int(p["period"]),
            state_len=lambda p: 3,
            talib_ref=_ta("ATR", "period", inputs=_HLC), pandas_ref=_pd_atr,
        ),
        IndicatorDef(
            "adx", "Average directional index (Wilder)", _HLC, _periods(2, 14), ("",), "adx_run",
            "ADX",
            lookback=lambda p: 2 * int(p["period"]) - 1,
            state_len=lambda p: 8,
            talib_ref=_ta("ADX", "period", inputs=_HLC), pandas_ref=_pd_adx,
        ),
        IndicatorDef(
            "trange", "True range", _HLC, (), ("",), "trange_run", "TRANGE",
            lookback=lambda p: 1,
            state_len=lambda p: 2,
            talib_ref=_ta("TRANGE", inputs=_HLC), pandas_ref=_pd_trange,
        ),
    )
}
