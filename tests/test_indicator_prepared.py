"""prepare_update / BatchUpdater: a view's specs advanced together, one call per new bar.

Oracles: TA-Lib over the full series (outputs) and a from-scratch full computation (states);
checks that bad input raises a clear error and leaves every state unchanged; a shared updater
under threads.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import talib

from featurestore.errors import IndicatorError
from featurestore.indicators import (
    BatchUpdater,
    UserKernelError,
    compute_batch,
    parse_indicator,
    prepare_update,
    register,
    unregister,
    update_batch,
)

VIEW = ["sma_20", "ema_50", "rsi_14", "macd_12_26_9", "bbands_20_2", "atr_14", "adx_14", "stoch",
        "willr_14", "cci_14", "obv", "mfi_14", "natr_14", "mom_10", "roc_10"]
NAMES = ("open", "high", "low", "close", "volume")


def _bars(n_symbols: int, n_bars: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Per symbol OHLCV with 0.01 ticks, flat runs and a leading NaN on one symbol."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_symbols):
        close = np.round(100 + np.cumsum(rng.normal(0, 1, n_bars)), 2)
        close[10:14] = close[10]
        opn = np.round(close + rng.normal(0, 0.3, n_bars), 2)
        high = np.maximum(close, opn) + np.round(np.abs(rng.normal(0, 0.4, n_bars)), 2)
        low = np.minimum(close, opn) - np.round(np.abs(rng.normal(0, 0.4, n_bars)), 2)
        vol = np.round(rng.uniform(1_000, 50_000, n_bars))
        d = {"open": opn, "high": high, "low": low, "close": close, "volume": vol}
        if k == 1:
            for v in d.values():
                v[:3] = np.nan
        out.append(d)
    return out


def _concat(per: list[dict[str, np.ndarray]], lo: int, hi: int) -> dict[str, np.ndarray]:
    return {n: np.concatenate([d[n][lo:hi] for d in per]) for n in NAMES}


def _talib_outputs(spec_name: str, d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """TA-Lib over one symbol's whole series, by output column (written here, not the registry's)."""
    h, lo, c, v = d["high"], d["low"], d["close"], d["volume"]
    if spec_name == "macd_12_26_9":
        return dict(zip(("macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9"), talib.MACD(c, 12, 26, 9)))
    if spec_name == "bbands_20_2":
        return dict(zip(("bbands_upper_20_2", "bbands_middle_20_2", "bbands_lower_20_2"),
                        talib.BBANDS(c, 20, 2.0, 2.0, 0)))
    if spec_name == "stoch":
        return dict(zip(("stoch_slowk_5_3_3", "stoch_slowd_5_3_3"), talib.STOCH(h, lo, c, 5, 3, 0, 3, 0)))
    single = {
        "sma_20": lambda: talib.SMA(c, 20), "ema_50": lambda: talib.EMA(c, 50), "rsi_14": lambda: talib.RSI(c, 14),
        "atr_14": lambda: talib.ATR(h, lo, c, 14), "adx_14": lambda: talib.ADX(h, lo, c, 14),
        "willr_14": lambda: talib.WILLR(h, lo, c, 14), "cci_14": lambda: talib.CCI(h, lo, c, 14),
        "obv": lambda: talib.OBV(c, v), "mfi_14": lambda: talib.MFI(h, lo, c, v, 14),
        "natr_14": lambda: talib.NATR(h, lo, c, 14), "mom_10": lambda: talib.MOM(c, 10),
        "roc_10": lambda: talib.ROC(c, 10),
    }
    return {spec_name: single[spec_name]()}


def test_prepared_updates_equal_talib_and_full_state_bar_by_bar_and_in_chunks() -> None:
    n_sym, n_bars, split = 3, 160, 70
    per = _bars(n_sym, n_bars, seed=1)
    specs = [parse_indicator(s) for s in VIEW]
    off = np.arange(0, n_sym * split + 1, split, dtype=np.int64)
    hist = _concat(per, 0, split)
    states = [compute_batch(s, {k: hist[k] for k in s.inputs}, off)[1] for s in specs]
    before = [s.copy() for s in states]
    up = prepare_update(VIEW, states)
    assert isinstance(up, BatchUpdater) and up.n_symbols == n_sym
    assert all(np.array_equal(a, b) for a, b in zip(states, before))  # the caller's states are copied
    collected: dict[str, list[np.ndarray]] = {}
    i = split
    while i < n_bars:
        if i < 120:  # one bar per symbol, offsets=None
            out = up.update(_concat(per, i, i + 1))
            width = 1
        else:  # a few bars per symbol, with offsets; lists are converted
            width = min(7, n_bars - i)
            chunk = {k: v.tolist() for k, v in _concat(per, i, i + width).items()}
            out = up.update(chunk, np.arange(0, n_sym * width + 1, width))
        assert tuple(out) == up.outputs
        for col, v in out.items():
            collected.setdefault(col, []).append(v.reshape(n_sym, width))
        i += width
    full_off = np.arange(0, n_sym * n_bars + 1, n_bars, dtype=np.int64)
    full = _concat(per, 0, n_bars)
    for spec, st in zip(specs, up.states):
        _, st_full = compute_batch(spec, {k: full[k] for k in spec.inputs}, full_off)
        assert np.array_equal(st, st_full, equal_nan=True), spec.name
    for name in VIEW:
        for k in range(n_sym):
            for col, ref in _talib_outputs(name, per[k]).items():
                got = np.concatenate([blk[k] for blk in collected[col]])
                assert np.array_equal(got, ref[split:], equal_nan=True), (name, col, k)


def test_starts_from_no_bars_with_n_symbols() -> None:
    per = _bars(2, 40, seed=2)
    up = prepare_update(["sma_5", "atr_3"], n_symbols=2)
    outs = [up.update(_concat(per, i, i + 1)) for i in range(40)]
    for k in range(2):
        sma = np.array([o["sma_5"][k] for o in outs])
        atr = np.array([o["atr_3"][k] for o in outs])
        assert np.array_equal(sma, talib.SMA(per[k]["close"], 5), equal_nan=True)
        assert np.array_equal(atr, talib.ATR(per[k]["high"], per[k]["low"], per[k]["close"], 3), equal_nan=True)


def _states(up: BatchUpdater) -> list[np.ndarray]:
    return [s.copy() for s in up.states]


def test_bad_input_raises_clearly_and_changes_no_state() -> None:
    per = _bars(3, 30, seed=3)
    hist = _concat(per, 0, 20)
    off = np.array([0, 20, 40, 60], dtype=np.int64)
    specs = ["sma_5", "stoch", "obv"]
    states = [compute_batch(s, {k: hist[k] for k in parse_indicator(s).inputs}, off)[1] for s in specs]
    up = prepare_update(specs, states)
    assert up.inputs == ("close", "high", "low", "volume")
    bar = _concat(per, 20, 21)
    keep = _states(up)
    cases: list[tuple[Any, Any, str]] = [
        ({k: v for k, v in bar.items() if k != "volume"}, None, "input 'volume' is missing"),
        ({**bar, "low": bar["low"][:2]}, None, r"inputs differ in length \(close=3, low=2\)"),
        ({k: v[:2] for k, v in bar.items()}, None, "one new bar per symbol: inputs have 2 values, expected n_symbols=3"),
        ({**bar, "high": np.ones((3, 1))}, None, "input 'high' must be 1-D"),
        ({**bar, "close": ["a", "b", "c"]}, None, "input 'close' cannot be converted to float64"),
        (bar, np.array([0, 1, 3], dtype=np.int64), r"offsets must have n_symbols\+1 = 4 entries"),
        (bar, np.array([0, 2, 1, 3], dtype=np.int64), r"offsets\[2\] = 1 breaks that"),
        (bar, np.array([0, 1, 2, 4], dtype=np.int64), "end at the number of values"),
        (bar, np.array([0.0, 1.0, 2.0, 3.0]), "offsets must be integers"),
        ("close", None, "inputs must be a mapping"),
    ]
    for inputs, offsets, msg in cases:
        with pytest.raises(IndicatorError, match=msg):
            up.update(inputs, offsets)
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(up.states, keep)), msg
    # keys in another case are accepted, as update_batch accepts them
    out = up.update({k.upper(): v for k, v in bar.items()})
    ref = update_batch("stoch", keep[1], bar, np.arange(4, dtype=np.int64))[0]
    assert np.array_equal(out["stoch_slowk_5_3_3"], ref["stoch_slowk_5_3_3"], equal_nan=True)


def test_bad_construction_raises_clearly() -> None:
    st = np.zeros((2, parse_indicator("sma_5").state_len))
    with pytest.raises(IndicatorError, match="needs states or n_symbols"):
        prepare_update(["sma_5"])
    with pytest.raises(IndicatorError, match="at least one spec"):
        prepare_update([], n_symbols=2)
    with pytest.raises(IndicatorError, match="sequence of specs"):
        prepare_update("sma_5", n_symbols=2)  # type: ignore[arg-type]
    with pytest.raises(IndicatorError, match="got 1 states for 2 specs"):
        prepare_update(["sma_5", "ema_5"], [st])
    with pytest.raises(IndicatorError, match=r"sma_5: state has shape \(2, 3\), expected \(2, 6\)"):
        prepare_update(["sma_5"], [np.zeros((2, 3))])
    with pytest.raises(IndicatorError, match="n_symbols=3 but the first state has 2 rows"):
        prepare_update(["sma_5"], [st], n_symbols=3)
    bad = st.copy()
    bad[1, 0] = 1.5
    with pytest.raises(IndicatorError, match=r"sma_5: state row 1: column 0 \(bar count\) must be a non-negative integer"):
        prepare_update(["sma_5"], [bad])
    with pytest.raises(IndicatorError, match="output column 'sma_5' is produced twice"):
        prepare_update(["sma_5", "sma_5"], n_symbols=2)
    with pytest.raises(IndicatorError, match="non-negative integer"):
        prepare_update(["sma_5"], n_symbols=-1)
    with pytest.raises(IndicatorError):
        prepare_update(["nosuchkind_5"], n_symbols=1)


def test_one_updater_shared_by_threads_advances_each_call_once() -> None:
    n_sym, per_thread, threads = 50, 40, 4
    rng = np.random.default_rng(4)
    bar = {k: np.round(100 + rng.normal(0, 1, n_sym), 2) for k in NAMES}
    bar["high"] = np.maximum(bar["high"], bar["close"]) + 0.5
    bar["low"] = np.minimum(bar["low"], bar["close"]) - 0.5
    shared = prepare_update(VIEW, n_symbols=n_sym)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(per_thread):
                shared.update(bar)  # the same bar every call: the end state is order-independent
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    snap = shared.snapshot()
    assert all(a is not b and np.array_equal(a, b, equal_nan=True) for a, b in zip(snap, shared.states))
    total = per_thread * threads
    rep = {k: np.repeat(v, total) for k, v in bar.items()}
    off = np.arange(0, n_sym * total + 1, total, dtype=np.int64)
    for spec, st in zip(shared.specs, shared.states):
        _, ref = compute_batch(spec, {k: rep[k] for k in spec.inputs}, off)
        assert np.array_equal(st, ref, equal_nan=True), spec.name


def test_user_kernel_in_an_updater_and_a_refused_call_changes_no_state() -> None:
    @register("uk_prep_spiky", params={"period": 2}, window="period")
    def spiky(close, period):  # type: ignore[no-untyped-def]
        return np.nan if close[-1] > 1000.0 else close[-1] - close[0]

    try:
        x = np.array([[100.0, 101.0, 102.0, 103.0], [50.0, 52.0, 51.0, 49.0]])
        up = prepare_update(["uk_prep_spiky_2", "sma_2"], n_symbols=2)
        got = [up.update({"close": x[:, i].copy()}) for i in range(4)]
        for k in range(2):
            diff = np.array([g["uk_prep_spiky_2"][k] for g in got])
            assert np.array_equal(diff, np.r_[np.nan, np.diff(x[k])], equal_nan=True)
            sma = np.array([g["sma_2"][k] for g in got])
            assert np.array_equal(sma, talib.SMA(x[k], 2), equal_nan=True)
        keep = _states(up)
        with pytest.raises(UserKernelError, match=r"uk_prep_spiky_2.*NaN or inf at bar 0 of symbol 1"):
            up.update({"close": np.array([104.0, 5000.0])})
        assert all(np.array_equal(a, b) for a, b in zip(up.states, keep))  # the built-in did not advance either
    finally:
        unregister("uk_prep_spiky")


_FRESH = """
import json, sys
import numpy as np
from featurestore.indicators import prepare_update
if sys.argv[1] == "fill":
    from featurestore.indicators import warmup
    warmup(["sma_5", "rsi_3", "atr_3"])
    raise SystemExit(0)
up = prepare_update(["sma_5", "rsi_3", "atr_3"], n_symbols=1)
x = [100.0, 101.5, 100.25, 102.0, 103.5, 101.0, 104.0]
outs = [up.update({"close": np.array([v]), "high": np.array([v + 1.0]), "low": np.array([v - 1.0])}) for v in x]
from featurestore.indicators.kernels import averages, momentum, volatility
hits = [len(k.stats.cache_hits) for k in (averages.sma_run, momentum.rsi_run, volatility.atr_run)]
misses = [len(k.stats.cache_misses) for k in (averages.sma_run, momentum.rsi_run, volatility.atr_run)]
print(json.dumps({"registries": "numba.np.polynomial.polynomial_core" in sys.modules, "hits": hits, "misses": misses,
                  "cols": {c: [float(o[c][0]) for o in outs] for c in outs[0]}}))
"""


def test_a_fresh_process_loads_cached_kernels_without_numbas_compile_setup() -> None:
    """Loading machine code from the disk cache skips numba's registry set-up (what makes a
    process's first kernel load slow), and the loaded kernels compute TA-Lib's values."""
    import json
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", _FRESH, "fill"], check=True, capture_output=True, text=True)
    r = subprocess.run([sys.executable, "-c", _FRESH, "load"], check=True, capture_output=True, text=True)
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["hits"] == [1, 1, 1] and got["misses"] == [0, 0, 0], got
    assert got["registries"] is False  # numba's typing/lowering registries were never imported
    x = np.array([100.0, 101.5, 100.25, 102.0, 103.5, 101.0, 104.0])
    assert np.array_equal(got["cols"]["sma_5"], talib.SMA(x, 5), equal_nan=True)
    assert np.array_equal(got["cols"]["rsi_3"], talib.RSI(x, 3), equal_nan=True)
    assert np.array_equal(got["cols"]["atr_3"], talib.ATR(x + 1.0, x - 1.0, x, 3), equal_nan=True)
