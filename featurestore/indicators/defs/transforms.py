"""ML transforms computed on write like indicators (kernels in ``kernels/transforms.py``).

None of these has a TA-Lib function (``talib_name`` is ``""`` and ``talib_ref`` raises); the
tests check them against independent numpy formulations. ``t`` is the bar, ``c`` close,
``h`` high, ``l`` low, ``v`` volume; a window of ``n`` bars is bars ``t-n+1..t``.

Formulas (exactly what the kernels compute, in this operation order):

- ``logret_<k>`` = ``log(c[t] / c[t-k])`` (natural log of the ratio), k = 1..10000, default 1.
- ``ret_<k>`` = ``c[t] / c[t-k] - 1``, k = 1..10000, default 1.
- ``zscore_<n>`` = ``(c[t] - mean) / std`` over the last n closes, population std (ddof=0),
  n = 2..2000, default 20. Computed shifted by the current close, which is exact for a flat
  window and avoids cancellation: ``d_i = c_i - c[t]``, ``m = (sum_i d_i) / n``,
  ``s = sqrt((sum_i (d_i - m)**2) / n)``, ``z = -m / s``. NaN when ``s == 0`` (all n closes
  equal: the z-score is undefined).
- ``rvol_<n>[_<a>]`` = sample std (ddof=1) of the last n one-bar log returns
  ``r_i = log(c_i / c_{i-1})`` times ``sqrt(a)``: ``m = (sum r_i) / n``,
  ``out = sqrt((sum (r_i - m)**2) / (n - 1)) * sqrt(a)``. n = 2..2000, default 20; the
  annualisation ``a`` (periods per year, e.g. 252 for daily bars) is 1..1e9, default 1 (not
  annualised; then left out of the name: ``rvol_20``, ``rvol_20_252``). Reads n+1 closes.
  A window of zero returns gives 0.
- ``vwap_<n>`` = ``(sum_i p_i * v_i) / (sum_i v_i)`` over the last n bars with the typical
  price ``p_i = (h_i + l_i + c_i) / 3``; NaN when the window's volume sums to 0. n = 1..2000,
  default 20.
- ``mindist_<n>`` = ``c[t] / min(c over the last n bars) - 1`` (>= 0 for positive prices);
  ``maxdist_<n>`` = ``c[t] / max(c over the last n bars) - 1`` (<= 0). n = 2..2000, default 20.
- ``rank_<n>`` = ``(below + 0.5 * (equal - 1)) / (n - 1)`` where ``below`` counts the last n
  closes < c[t] and ``equal`` those == c[t] (c[t] itself included): the average-rank
  convention scaled to [0, 1] (pandas' ``rank(method="average")`` minus 1, over n - 1); the
  lowest close of the window is 0, the highest 1, ties share the mean of their ranks. n =
  2..2000, default 20.

Every sum runs sequentially over the window from its oldest bar to the newest, re-summed each
bar from a ring of the window kept in the state (O(n) per bar, which is why windows stop at
2000): no running sum that drifts, and an appended bar executes exactly the operations a full
recompute does, so incremental == full bit for bit.

NaN rules (the indicators' ones, plus one interior rule for all transforms):

- Leading bars where any input is NaN are skipped (TA-Lib's begidx rule) and give NaN; the
  lookback counts from the first bar with every input non-NaN: ``logret``/``ret`` k, ``rvol``
  n, the others n - 1.
- A non-finite input (NaN, +inf or -inf) inside the window makes the output NaN for exactly as
  long as the bar stays in the window (``logret``/``ret``: when either of c[t], c[t-k] is not
  finite), then values resume. For ``rvol`` the window is the n + 1 closes its returns read.
- Finite inputs follow IEEE arithmetic: a non-positive close ratio gives NaN or -inf from
  ``log``, a zero minimum gives inf from the division.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from featurestore.errors import IndicatorError
from featurestore.indicators.base import Arrays, IndicatorDef, Number, ParamDef, Ref, name_number, series

#: Longest ``logret``/``ret`` lag (O(1) per bar; the state holds a ring of k closes).
MAX_LAG = 10_000
#: Longest window of the re-summed transforms (O(n) per bar).
MAX_WINDOW = 2_000
#: Largest annualisation factor of ``rvol`` (1e9 covers one-second bars: 3.2e7 per year).
MAX_ANNUALISATION = 1e9
CLOSE = ("close",)
HLCV = ("high", "low", "close", "volume")


def _no_talib(kind: str) -> Ref:
    """``talib_ref`` of a transform: there is no TA-Lib function to compare with."""

    def ref(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
        raise IndicatorError(f"{kind} is an ML transform with no TA-Lib function; see its pandas_ref")

    return ref


def _window(lo: int, default: int, hi: int = MAX_WINDOW) -> tuple[ParamDef, ...]:
    return (ParamDef("period", int, default, lo, hi, ("timeperiod",)),)


# ------------------------------------------------------------------- pandas formulations
# For benchmarks and quick comparisons on clean data (they do not apply the non-finite rule).
def _pd_logret(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    c = series(a["close"])
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.log(c / c.shift(int(p["period"]))).to_numpy(),)


def _pd_ret(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    c = series(a["close"])
    return ((c / c.shift(int(p["period"])) - 1.0).to_numpy(),)


def _pd_zscore(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    c = series(a["close"])
    r = c.rolling(int(p["period"]))
    return (((c - r.mean()) / r.std(ddof=0)).to_numpy(),)


def _pd_rvol(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    c = series(a["close"])
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log(c / c.shift(1))
    return ((r.rolling(int(p["period"])).std(ddof=1) * np.sqrt(float(p["annualisation"]))).to_numpy(),)


def _pd_vwap(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    n = int(p["period"])
    tp = (series(a["high"]) + series(a["low"]) + series(a["close"])) / 3.0
    v = series(a["volume"])
    vol = v.rolling(n).sum()
    return (((tp * v).rolling(n).sum() / vol.where(vol != 0.0)).to_numpy(),)


def _pd_mindist(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    c = series(a["close"])
    return ((c / c.rolling(int(p["period"])).min() - 1.0).to_numpy(),)


def _pd_maxdist(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    c = series(a["close"])
    return ((c / c.rolling(int(p["period"])).max() - 1.0).to_numpy(),)


def _pd_rank(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    n = int(p["period"])
    return (((series(a["close"]).rolling(n).rank(method="average") - 1.0) / (n - 1)).to_numpy(),)


def _rvol_name(p: Mapping[str, Number]) -> list[str]:
    out = [name_number(p["period"])]
    if p["annualisation"] != 1.0:
        out.append(name_number(p["annualisation"]))
    return out


def _def(kind: str, title: str, inputs: tuple[str, ...], params: tuple[ParamDef, ...], lookback: int,
         ring: int, extra: int, ref: Ref) -> IndicatorDef:
    """A transform: ``lookback = period + lookback``, ``state_len = ring * period + extra``."""
    return IndicatorDef(
        kind, title, inputs, params, ("",), f"transforms.{kind}_run", "",
        lookback=lambda p: int(p["period"]) + lookback,
        state_len=lambda p: ring * int(p["period"]) + extra,
        talib_ref=_no_talib(kind), pandas_ref=ref,
    )


DEFS: tuple[IndicatorDef, ...] = (
    _def("logret", "Log return: log(c[t] / c[t-k])", CLOSE, _window(1, 1, MAX_LAG), 0, 1, 1, _pd_logret),
    _def("ret", "Simple return: c[t] / c[t-k] - 1", CLOSE, _window(1, 1, MAX_LAG), 0, 1, 1, _pd_ret),
    _def(
        "zscore", "Rolling z-score of close: (c[t] - mean_n) / std_n, population std (ddof=0), NaN if std = 0",
        CLOSE, _window(2, 20), -1, 1, 2, _pd_zscore,
    ),
    IndicatorDef(
        "rvol", "Realized volatility: sample std (ddof=1) of the last n log returns log(c_i / c_{i-1}), "
        "times sqrt(annualisation)", CLOSE,
        (*_window(2, 20), ParamDef("annualisation", float, 1.0, 1.0, MAX_ANNUALISATION, ("annualization",))),
        ("",), "transforms.rvol_run", "",
        lookback=lambda p: int(p["period"]),
        state_len=lambda p: int(p["period"]) + 3,
        talib_ref=_no_talib("rvol"), pandas_ref=_pd_rvol, name_tokens=_rvol_name,
    ),
    _def(
        "vwap", "Rolling VWAP: sum((h+l+c)/3 * v) / sum(v) over n bars, NaN if sum(v) = 0",
        HLCV, _window(1, 20), -1, 2, 2, _pd_vwap,
    ),
    _def("mindist", "Distance from the rolling min: c[t] / min_n(c) - 1", CLOSE, _window(2, 20), -1, 1, 2, _pd_mindist),
    _def("maxdist", "Distance from the rolling max: c[t] / max_n(c) - 1", CLOSE, _window(2, 20), -1, 1, 2, _pd_maxdist),
    _def(
        "rank", "Rank of close in the last n closes: (below + 0.5 * (equal - 1)) / (n - 1), in [0, 1]",
        CLOSE, _window(2, 20), -1, 1, 2, _pd_rank,
    ),
)

STATE_LAYOUTS: dict[str, tuple[str, ...]] = {
    "logret": ("count", "ring[k]"),
    "ret": ("count", "ring[k]"),
    "zscore": ("count", "clear_at", "ring[n]"),
    "rvol": ("count", "clear_at", "prev_close", "ring_returns[n]"),
    "vwap": ("count", "clear_at", "ring_price_x_volume[n]", "ring_volume[n]"),
    "mindist": ("count", "clear_at", "ring[n]"),
    "maxdist": ("count", "clear_at", "ring[n]"),
    "rank": ("count", "clear_at", "ring[n]"),
}
