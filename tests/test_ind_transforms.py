"""ML transforms (logret, ret, zscore, rvol, vwap, mindist, maxdist, rank) against independent oracles.

The oracles below are written here with plain numpy / Python loops (never the kernels or their
helpers) from the formulas documented in ``featurestore/indicators/defs/transforms.py``:

- begidx: leading bars where any input is NaN are dropped before the formula (``_begin``);
- a window containing a non-finite input (NaN or +-inf) gives NaN (``_finite_windows``).

Exact (bit for bit) where the oracle performs the same floating-point operations in the same
order: logret (``math.log``, the same libm call numba makes; numpy's own ``np.log`` differs in
the last bit for ~2% of inputs), ret, vwap (window sums accumulated oldest to newest), mindist,
maxdist and rank (min/max and integer counts are exact). zscore and rvol use numpy's textbook
two-pass mean/std (pairwise sums, ``c - mean`` unshifted) and are compared within a relative
tolerance: see ``ZSCORE_RTOL`` and ``RVOL_RTOL``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import make_bars, stored
from indicator_harness import Row, assert_bits, assert_close, make_tests
from numpy.lib.stride_tricks import sliding_window_view

from featurestore.errors import IndicatorError
from featurestore.indicators import compute_batch, parse_indicator, update_batch

Data = dict[str, np.ndarray]

#: zscore: the oracle's textbook ``c - mean`` cancels (error ~ eps * |c| / |c - mean|); measured
#: worst |ours - oracle| / (1 + |oracle|) over the table's data: 7.9e-11 (zscore_2, where the true
#: value is exactly +-1), 2.3e-12 (zscore_5, EURUSD). The kernel's shifted form is the accurate
#: one (``test_zscore_matches_exact_rational_arithmetic``). 1e-9 leaves a 12x margin.
ZSCORE_RTOL = 1e-9
#: rvol: numpy's pairwise sums vs the kernel's sequential ones; measured worst 4.9e-16.
RVOL_RTOL = 1e-13


# ------------------------------------------------------------------------------- oracle kit
def _begin(a: Data, inputs: tuple[str, ...]) -> int:
    """Index of the first bar where every input is non-NaN (TA-Lib's begidx), or the length."""
    bad = np.zeros(a[inputs[0]].size, dtype=bool)
    for k in inputs:
        bad |= np.isnan(a[k])
    ok = np.flatnonzero(~bad)
    return int(ok[0]) if ok.size else bad.size


def _finite_windows(cols: list[np.ndarray], w: int) -> np.ndarray:
    """For each full window of w bars (one row per window end): every value of every column finite."""
    ok = np.ones(cols[0].size, dtype=bool)
    for col in cols:
        ok &= np.isfinite(col)
    return sliding_window_view(ok, w).all(axis=1)


def _lag_oracle(fn: Callable[[float, float], float]) -> Callable[[Data, Mapping[str, Any]], tuple[np.ndarray, ...]]:
    def oracle(a: Data, p: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
        k = int(p["period"])
        c = a["close"]
        out = np.full(c.size, np.nan)
        for t in range(_begin(a, ("close",)) + k, c.size):
            x, y = float(c[t]), float(c[t - k])
            if math.isfinite(x) and math.isfinite(y):
                out[t] = fn(x, y)
        return (out,)

    return oracle


logret_oracle = _lag_oracle(lambda x, y: math.log(x / y))
ret_oracle = _lag_oracle(lambda x, y: x / y - 1.0)


def _close_windows(a: Data, n: int) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray]:
    """(out filled with NaN, first window end, windows, their closes, finite mask) for close-only transforms."""
    c = a["close"]
    out = np.full(c.size, np.nan)
    b = _begin(a, ("close",))
    x = c[b:]
    if x.size < n:
        return out, b + n - 1, np.empty((0, n)), np.empty(0), np.empty(0, dtype=bool)
    win = sliding_window_view(x, n)
    return out, b + n - 1, win, x[n - 1 :], _finite_windows([x], n)


def zscore_oracle(a: Data, p: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    n = int(p["period"])
    out, first, win, last, ok = _close_windows(a, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (last - win.mean(axis=1)) / win.std(axis=1, ddof=0)
    z[~ok | (win.max(axis=1) == win.min(axis=1))] = np.nan  # documented: NaN when std = 0
    out[first:] = z
    return (out,)


def dist_oracle(which: str) -> Callable[[Data, Mapping[str, Any]], tuple[np.ndarray, ...]]:
    def oracle(a: Data, p: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
        out, first, win, last, ok = _close_windows(a, int(p["period"]))
        ext = win.min(axis=1) if which == "min" else win.max(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            d = last / ext - 1.0
        d[~ok] = np.nan
        out[first:] = d
        return (out,)

    return oracle


def rank_oracle(a: Data, p: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    n = int(p["period"])
    out, first, win, last, ok = _close_windows(a, n)
    below = (win < last[:, None]).sum(axis=1)
    equal = (win == last[:, None]).sum(axis=1)
    r = (below + 0.5 * (equal - 1)) / (n - 1)
    r[~ok] = np.nan
    out[first:] = r
    return (out,)


def rvol_oracle(a: Data, p: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    n = int(p["period"])
    c = a["close"]
    out = np.full(c.size, np.nan)
    b = _begin(a, ("close",))
    x = c[b:]
    if x.size < n + 1:
        return (out,)
    r = np.full(x.size - 1, np.nan)
    for i in range(1, x.size):
        if math.isfinite(x[i]) and math.isfinite(x[i - 1]):
            r[i - 1] = math.log(x[i] / x[i - 1])
    sd = sliding_window_view(r, n).std(axis=1, ddof=1) * math.sqrt(float(p["annualisation"]))
    sd[~_finite_windows([x], n + 1)] = np.nan
    out[b + n :] = sd
    return (out,)


def vwap_oracle(a: Data, p: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    n = int(p["period"])
    cols = ("high", "low", "close", "volume")
    size = a["close"].size
    out = np.full(size, np.nan)
    b = _begin(a, cols)
    h, lo, c, v = (a[k][b:] for k in cols)
    m = h.size - n + 1
    if m <= 0:
        return (out,)
    with np.errstate(invalid="ignore", over="ignore"):
        pv = (h + lo + c) / 3.0 * v
        num = np.zeros(m)
        vol = np.zeros(m)
        for j in range(n):  # oldest bar of the window first
            num = num + pv[j : j + m]
            vol = vol + v[j : j + m]
        res = num / np.where(vol == 0.0, np.nan, vol)
    res[~_finite_windows([h, lo, c, v], n)] = np.nan
    out[b + n - 1 :] = res
    return (out,)


# ------------------------------------------------------------------------------ the table
ROWS = [
    Row("logret", [{"period": 1}, {"period": 5}, {"period": 1000}], oracle=logret_oracle),
    Row("ret", [{"period": 1}, {"period": 10}, {"period": 1000}], oracle=ret_oracle),
    Row("zscore", [{"period": 2}, {"period": 5}, {"period": 20}, {"period": 500}],
        oracle=zscore_oracle, exact=False, rtol=ZSCORE_RTOL),
    Row("rvol", [{"period": 2}, {"period": 20}, {"period": 20, "annualisation": 252},
                 {"period": 300, "annualisation": 365.25}],
        oracle=rvol_oracle, exact=False, rtol=RVOL_RTOL),
    Row("vwap", [{"period": 1}, {"period": 3}, {"period": 20}, {"period": 500}], oracle=vwap_oracle),
    Row("mindist", [{"period": 2}, {"period": 20}, {"period": 500}], oracle=dist_oracle("min")),
    Row("maxdist", [{"period": 2}, {"period": 20}, {"period": 500}], oracle=dist_oracle("max")),
    Row("rank", [{"period": 2}, {"period": 3}, {"period": 20}, {"period": 500}], oracle=rank_oracle),
]

globals().update(make_tests(ROWS))


# ------------------------------------------------------------------------ documented rules
def test_every_transform_is_in_the_table() -> None:
    from featurestore.indicators.defs import transforms

    assert {r.kind for r in ROWS} == {d.kind for d in transforms.DEFS}


def _ours(spec: str, **cols: np.ndarray) -> np.ndarray:
    s = parse_indicator(spec)
    if not cols:
        raise AssertionError("no input")
    return compute_batch(s, cols)[0][s.name]


def test_interior_nan_and_inf_clear_when_they_leave_the_window() -> None:
    x = np.array([np.nan, np.nan, 1.0, 2.0, 4.0, 3.0, np.nan, 5.0, 6.0, 7.0, np.inf, 8.0, 9.0, 10.0, 11.0])
    # leading NaN: the window (3 closes) starts at bar 2, so bar 4 is the first value
    nan_at = np.flatnonzero(np.isnan(_ours("zscore_3", close=x)))
    assert list(nan_at) == [0, 1, 2, 3, 6, 7, 8, 10, 11, 12]
    assert list(np.flatnonzero(np.isnan(_ours("rank_3", close=x)))) == list(nan_at)
    assert list(np.flatnonzero(np.isnan(_ours("mindist_3", close=x)))) == list(nan_at)
    # rvol_2 reads 3 closes: a bad close poisons 3 outputs
    assert list(np.flatnonzero(np.isnan(_ours("rvol_2", close=x)))) == [0, 1, 2, 3, 6, 7, 8, 10, 11, 12]
    # logret_2 reads c[t] and c[t-2] only: a bad close poisons bars t and t+2, not t+1
    lr = _ours("logret_2", close=x)
    assert list(np.flatnonzero(np.isnan(lr))) == [0, 1, 2, 3, 6, 8, 10, 12]
    assert lr[4] == math.log(4.0 / 1.0) and lr[13] == math.log(10.0 / 8.0)
    # one bar at a time gives the same (the NaN bookkeeping lives in the state)
    s = parse_indicator("zscore_3")
    outs, state = compute_batch(s, x[:1])
    got = [outs[s.name]]
    for i in range(1, x.size):
        o, state = update_batch(s, state, x[i : i + 1])
        got.append(o[s.name])
    assert_bits(np.concatenate(got), _ours("zscore_3", close=x), "bar by bar")


def test_degenerate_windows() -> None:
    flat = np.array([5.0, 5.0, 5.0, 6.0, 6.0, 6.0])
    assert list(np.isnan(_ours("zscore_3", close=flat))) == [True, True, True, False, False, True]
    assert _ours("rvol_2", close=flat)[-1] == 0.0  # no movement: volatility 0, not NaN
    assert list(_ours("rank_3", close=flat)[2:]) == [0.5, 1.0, 0.75, 0.5]
    vol = np.array([10.0, 0.0, 0.0, 0.0, 5.0])
    price = np.array([1.0, 2.0, 3.0, 4.0, 6.0])
    v = _ours("vwap_3", high=price, low=price, close=price, volume=vol)
    assert np.isnan(v[:2]).all() and v[2] == 1.0 and np.isnan(v[3]) and v[4] == 6.0
    z = _ours("zscore_2", close=np.array([1.0, 3.0, 2.0]))
    assert list(z[1:]) == [1.0, -1.0]
    assert _ours("mindist_2", close=np.array([2.0, 3.0]))[1] == 0.5
    assert _ours("maxdist_2", close=np.array([4.0, 3.0]))[1] == -0.25


def test_rank_is_pandas_average_rank_scaled() -> None:
    """The tie convention: pandas' rolling rank(method='average'), minus 1, over n - 1."""
    close = np.round(np.cumsum(np.random.default_rng(3).choice([-1.0, 0.0, 1.0], 400)), 0)
    for n in (2, 5, 20):
        ref = ((pd.Series(close).rolling(n).rank(method="average") - 1.0) / (n - 1)).to_numpy()
        assert_bits(_ours(f"rank_{n}", close=close), ref, f"rank_{n}")


def test_zscore_matches_exact_rational_arithmetic() -> None:
    """On real prices the kernel's z-score is within a few ulp of the exact value (fractions)."""
    from fractions import Fraction

    from indicator_harness import real_datas

    rng = np.random.default_rng(8)
    for name, data in real_datas():
        close = data["close"]
        for n in (2, 5, 20):
            z = _ours(f"zscore_{n}", close=close)
            for t in rng.choice(np.arange(n - 1, close.size), 40, replace=False):
                w = [Fraction(float(v)) for v in close[t - n + 1 : t + 1]]
                mean = sum(w, Fraction(0)) / n
                var = sum(((v - mean) ** 2 for v in w), Fraction(0)) / n
                if var == 0:
                    assert np.isnan(z[t])
                    continue
                dev = w[-1] - mean
                exact = math.copysign(math.sqrt(dev * dev / var), dev) if dev else 0.0
                assert abs(z[t] - exact) <= 1e-15 * max(1.0, abs(exact)), (name, n, int(t), z[t], exact)


def test_rvol_annualisation_scales_by_its_square_root() -> None:
    close = 100.0 + np.cumsum(np.random.default_rng(4).normal(0, 1, 300))
    base, annual = _ours("rvol_20", close=close), _ours("rvol_20_252", close=close)
    assert_close(annual, base * math.sqrt(252.0), 1e-15, "rvol_20_252")


def test_names_and_ranges() -> None:
    assert parse_indicator("rvol_20").name == "rvol_20"
    assert parse_indicator("rvol_20_1").name == "rvol_20"
    assert parse_indicator("rvol_20_252").p == {"period": 20, "annualisation": 252.0}
    assert parse_indicator("rvol_10_365.25").name == "rvol_10_365p25"
    assert parse_indicator("logret").name == "logret_1" and parse_indicator("zscore").name == "zscore_20"
    assert parse_indicator("vwap_1").lookback == 0 and parse_indicator("rvol_5").lookback == 5
    assert parse_indicator("logret_3").lookback == 3 and parse_indicator("rank_7").lookback == 6
    for bad, match in [
        ("zscore_1", "period"), ("rank_1", "period"), ("rvol_1", "period"), ("mindist_1", "period"),
        ("zscore_2001", "period"), ("logret_0", "period"), ("logret_10001", "period"),
        ("rvol_20_0p5", "annualisation"), ("vwap_0", "period"),
    ]:
        with pytest.raises(IndicatorError, match=match):
            parse_indicator(bad)
    with pytest.raises(IndicatorError, match="no TA-Lib function"):
        parse_indicator("zscore_5").definition.talib_ref({"close": np.ones(3)}, {"period": 5})


# -------------------------------------------------------------------------------- in a view
VIEW_SPECS = ["logret_1", "ret_5", "zscore_20", "rvol_10_252", "vwap_10", "mindist_15", "maxdist_15", "rank_10"]
ORACLES: dict[str, tuple[Callable[[Data, Mapping[str, Any]], tuple[np.ndarray, ...]], float | None]] = {
    "logret": (logret_oracle, None), "ret": (ret_oracle, None), "zscore": (zscore_oracle, ZSCORE_RTOL),
    "rvol": (rvol_oracle, RVOL_RTOL), "vwap": (vwap_oracle, None), "mindist": (dist_oracle("min"), None),
    "maxdist": (dist_oracle("max"), None), "rank": (rank_oracle, None),
}


def _check_view(store: Any, table: str, symbol: str, specs: list[str]) -> None:
    with store.db.connection() as conn:
        bars = stored(conn, "bars", symbol)
        feats = stored(conn, table, symbol)
    assert list(feats["ts"]) == list(bars["ts"])
    data = {k: bars[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close", "volume")}
    for text in specs:
        spec = parse_indicator(text)
        got = feats[spec.name].to_numpy(dtype=float)
        oracle, rtol = ORACLES[spec.kind]
        (ref,) = oracle({k: data[k].copy() for k in spec.inputs}, spec.p)
        if rtol is None:
            assert_bits(got, ref, f"{symbol} {spec.name}")
        else:
            assert_close(got, ref, rtol, f"{symbol} {spec.name}")
        full = compute_batch(spec, {k: data[k] for k in spec.inputs})[0][spec.name]
        assert_bits(got, full, f"{symbol} {spec.name} stored == full recompute")


def _view_round(store: Any, name: str, specs: list[str], seed: int) -> str:
    """Backfill a view, append one bar to both symbols, correct an old bar of AAA; check after each."""
    df = make_bars([f"{name}A", f"{name}B"], 120, seed=seed)
    a, b = f"{name}A", f"{name}B"
    store.ingest(df.groupby("symbol").head(119))
    view = store.create_view(name, specs)
    for sym in (a, b):
        _check_view(store, view.table_name, sym, specs)
    # append one bar to both: continued from the stored state
    r = store.ingest(df.groupby("symbol").tail(1))
    assert (r.inserted, r.entities_recomputed) == (2, 0)
    for sym in (a, b):
        _check_view(store, view.table_name, sym, specs)
    # correct an old bar of the first symbol: its features are recomputed from there
    fix = df[df.symbol == a].iloc[[40]].copy()
    fix[["high", "close", "volume"]] = fix[["high", "close", "volume"]] * [1.02, 1.01, 3.0]
    r = store.ingest(fix)
    assert (r.updated, r.entities_recomputed) == (1, len(store.list_views()))  # one entity, every view
    for sym in (a, b):
        _check_view(store, view.table_name, sym, specs)
    return str(view.table_name)


def test_transforms_in_a_view_on_write_append_and_correction(store: Any) -> None:
    specs = [s for s in VIEW_SPECS if s != "vwap_10"]
    table = _view_round(store, "ml", specs, seed=12)
    with store.db.connection() as conn:
        feats = stored(conn, table, "mlA")
    assert feats["rvol_10_252"].notna().sum() == 110 and feats["rank_10"].notna().sum() == 111


def test_vwap_in_a_view_on_write_append_and_correction(store: Any) -> None:
    """VWAP reads volume: the write path must hand the kernels the volume column too."""
    table = _view_round(store, "mlv", ["vwap_10", "zscore_20"], seed=13)
    with store.db.connection() as conn:
        feats = stored(conn, table, "mlvA")
    assert feats["vwap_10"].notna().sum() == 111
