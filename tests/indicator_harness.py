"""Generic test harness for indicator kinds: a family's test file is a table of rows.

Usage (``tests/test_indicators_<family>.py``)::

    from indicator_harness import Row, make_tests

    ROWS = [
        Row("ema", [{"period": 1}, {"period": 2}, {"period": 30}, {"period": 10, "unstable": 5}]),
        Row("logret", [{"period": 1}], oracle=my_numpy_logret, exact=False),
    ]
    globals().update(make_tests(ROWS))

``make_tests`` returns parametrized pytest functions (one case per param set) that check:

- ``test_oracle_synthetic``: bit for bit (``exact``) or within ``rtol`` equal to the oracle
  (default: the kind's ``talib_ref``, i.e. TA-Lib) on a random walk, 0.01 ticks, coarse ticks
  with ties/flat runs/high == low, leading NaN, interior NaN/inf in every input, trailing NaN,
  all-NaN and a constant series.
- ``test_every_length``: every length 1..lookback+3 as segments of ONE batched call vs the
  oracle, and the first non-NaN index == ``min(lookback, n)``.
- ``test_lookback_matches_talib`` (TA-Lib rows only): ``spec.lookback`` == talib.abstract's
  lookback, with the unstable period set when the spec has one.
- ``test_real_data``: the oracle on the real OHLCV series (backtesting.test GOOG, EURUSD,
  BTCUSD), incremental == full on them, all three batched == per symbol.
- ``test_batched_equals_per_symbol``: ragged symbols (empty, shorter than the lookback,
  leading NaN) in one call == each alone, outputs and state rows.
- ``test_incremental_every_split``: compute(x[:k]) + update(x[k:]) == compute(x) for every k
  (state through bytes for even k) and bar by bar; ``update_batch_inplace`` too.
- ``test_incremental_property``: hypothesis, random series kinds, lengths and chunkings.

"Bit for bit" is stricter than ``array_equal(equal_nan=True)``: NaN positions agree and every
other value has the same 64-bit pattern. Oracles never call the implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore.indicators import (
    IndicatorSpec,
    compute_batch,
    state_from_bytes,
    state_to_bytes,
    update_batch,
    update_batch_inplace,
)

Data = dict[str, np.ndarray]
Oracle = Callable[[Data, Mapping[str, Any]], tuple[np.ndarray, ...]]

__all__ = ["Row", "assert_bits", "make_series", "make_tests", "real_datas"]


@dataclass
class Row:
    """One kind and the parameter sets to test it with.

    ``oracle(data, params) -> tuple of arrays`` (outputs in ``spec.outputs`` order) defaults to
    the registered ``talib_ref``; ``exact=False`` compares within ``rtol`` instead of bit for bit
    (for oracles written in numpy/pandas). ``max_incremental_lookback`` skips the every-split
    test (quadratic) for parameter sets with a larger lookback.
    """

    kind: str
    params: Sequence[Mapping[str, Any]]
    oracle: Oracle | None = None
    exact: bool = True
    rtol: float = 1e-12
    max_incremental_lookback: int = 250
    specs: list[IndicatorSpec] = field(init=False)

    def __post_init__(self) -> None:
        self.specs = [IndicatorSpec(self.kind, dict(p)) for p in self.params]  # type: ignore[arg-type]

    def expected(self, spec: IndicatorSpec, data: Data) -> tuple[np.ndarray, ...]:
        sub = {k: np.array(data[k]) for k in spec.inputs}  # copies: an oracle must not see ours
        if self.oracle is not None:
            return tuple(np.asarray(o, dtype=np.float64) for o in self.oracle(sub, spec.p))
        return tuple(np.asarray(o, dtype=np.float64) for o in spec.definition.talib_ref(sub, spec.p))

    def compare(self, ours: np.ndarray, ref: np.ndarray, what: str) -> None:
        if self.exact:
            assert_bits(ours, ref, what)
        else:
            assert_close(ours, ref, self.rtol, what)


# ----------------------------------------------------------------------------- comparisons
def assert_bits(ours: np.ndarray, ref: np.ndarray, what: str = "") -> None:
    """Same NaN positions, same bit pattern everywhere else."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    nan_o, nan_r = np.isnan(ours), np.isnan(ref)
    bad = (nan_o != nan_r) | (~nan_o & (ours.view(np.int64) != ref.view(np.int64)))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} values differ, first at {i}: "
            f"ours={ours[i]!r} ref={ref[i]!r}"
        )


def assert_close(ours: np.ndarray, ref: np.ndarray, rtol: float, what: str = "") -> None:
    """Same NaN positions, infinities equal, finite values within rtol (atol = rtol)."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    nan_o, nan_r = np.isnan(ours), np.isnan(ref)
    bad = nan_o != nan_r
    ok = ~nan_o & ~nan_r
    with np.errstate(invalid="ignore"):
        bad[ok] = ~np.isclose(ours[ok], ref[ok], rtol=rtol, atol=rtol)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} values differ beyond {rtol}, first at {i}: "
            f"ours={ours[i]!r} ref={ref[i]!r}"
        )


# ----------------------------------------------------------------------------------- data
def _ohlcv_from_close(close: np.ndarray, rng: np.random.Generator, tick: float | None) -> Data:
    """High/low around the close (the previous close inside the bar half the time), an open
    between them, and a volume with ties and zeros."""
    n = close.size
    prev = np.r_[close[:1], close[:-1]]
    wick_h = np.abs(rng.normal(0, 0.5, n)) * (rng.random(n) < 0.8)
    wick_l = np.abs(rng.normal(0, 0.5, n)) * (rng.random(n) < 0.8)
    hi = np.maximum(close, np.where(rng.random(n) < 0.5, prev, close)) + wick_h
    lo = np.minimum(close, np.where(rng.random(n) < 0.5, prev, close)) - wick_l
    if tick:
        hi, lo = np.round(hi / tick) * tick, np.round(lo / tick) * tick
    op = lo + (hi - lo) * rng.random(n)
    if tick:
        op = np.clip(np.round(op / tick) * tick, lo, hi)
    vol = np.round(rng.lognormal(8, 1, n)) * (rng.random(n) < 0.95)
    return {"open": op, "high": hi, "low": lo, "close": close, "volume": vol}


def make_series(kind: str, n: int, seed: int) -> Data:
    """Synthetic OHLCV of one of the edge-case kinds (see ``SERIES_KINDS``)."""
    rng = np.random.default_rng(seed)
    if kind == "walk":
        return _ohlcv_from_close(100.0 + np.cumsum(rng.normal(0, 1, n)), rng, None)
    if kind == "ticks":
        return _ohlcv_from_close(np.round(100.0 + np.cumsum(rng.normal(0, 0.5, n)), 2), rng, 0.01)
    if kind == "flat":  # coarse ticks: ties, flat runs, zero moves, bars with high == low
        steps = rng.choice([-0.5, 0.0, 0.0, 0.0, 0.5], n) * (rng.random(n) < 0.6)
        close = 50.0 + np.cumsum(steps)
        d = _ohlcv_from_close(close, rng, 0.5)
        flat = rng.random(n) < 0.2
        d["high"][flat] = d["low"][flat] = d["open"][flat] = close[flat]
        d["volume"][rng.random(n) < 0.2] = 1000.0
        return d
    if kind == "constant":
        return {k: np.full(n, 7.0 if k != "volume" else 100.0) for k in ("open", "high", "low", "close", "volume")}
    if kind == "holes":  # interior NaN and inf in every input
        d = make_series("ticks", n, seed)
        for col, bad in zip(("close", "high", "low", "open", "volume"), (np.nan, np.inf, np.nan, -np.inf, np.nan)):
            d[col][rng.random(n) < 0.01] = bad
        return d
    if kind == "leading_nan":
        d = make_series("ticks", n, seed)
        d["close"][:7] = np.nan
        d["high"][:3] = np.nan
        d["low"][5:9] = np.nan
        d["open"][:2] = np.nan
        d["volume"][8:10] = np.nan
        return d
    if kind == "trailing_nan":
        d = make_series("ticks", n, seed)
        for k in d:
            d[k][-5:] = np.nan
        return d
    if kind == "all_nan":
        return {k: np.full(n, np.nan) for k in ("open", "high", "low", "close", "volume")}
    raise ValueError(kind)


SERIES_KINDS = ("walk", "ticks", "flat", "constant", "holes", "leading_nan", "trailing_nan", "all_nan")


def real_datas() -> Iterator[tuple[str, Data]]:
    """The real OHLCV series the suite uses (backtesting.py's bundled GOOG, EURUSD, BTCUSD)."""
    import backtesting.test as bt

    for name in ("GOOG", "EURUSD", "BTCUSD"):
        frame: pd.DataFrame = getattr(bt, name)
        yield name, {c.lower(): frame[c].to_numpy(dtype=np.float64) for c in ("Open", "High", "Low", "Close", "Volume")}


# ---------------------------------------------------------------------------- computation
def ours(spec: IndicatorSpec, data: Data) -> dict[str, np.ndarray]:
    outs, _ = compute_batch(spec, {k: data[k] for k in spec.inputs})
    return outs


def run_in_chunks(spec: IndicatorSpec, data: Data, cuts: list[int], via_bytes: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """compute on data[:cuts[0]], then update_batch over each following chunk."""
    bounds = [0, *cuts, data[spec.inputs[0]].size]
    pieces: dict[str, list[np.ndarray]] = {name: [] for name in spec.outputs}
    state: np.ndarray | None = None
    for a, b in zip(bounds[:-1], bounds[1:]):
        chunk = {k: data[k][a:b] for k in spec.inputs}
        if state is None:
            outs, state = compute_batch(spec, chunk)
        else:
            if via_bytes:
                state = state_from_bytes(spec, state_to_bytes(spec, state))
            outs, state = update_batch(spec, state, chunk)
        for name in spec.outputs:
            pieces[name].append(outs[name])
    assert state is not None
    return {k: np.concatenate(v) for k, v in pieces.items()}, state


def _check_oracle(row: Row, spec: IndicatorSpec, data: Data, what: str) -> None:
    got = ours(spec, data)
    ref = row.expected(spec, data)
    assert len(ref) == len(spec.outputs), f"{what}: oracle gave {len(ref)} outputs"
    for name, r in zip(spec.outputs, ref):
        row.compare(got[name], r, f"{spec.name} {what} {name}")


def _talib_lookback(spec: IndicatorSpec) -> int:
    import talib
    import talib.abstract

    defn = spec.definition
    fn = talib.abstract.Function(defn.talib_name)
    names = set(fn.parameters)
    params = {}
    for p in defn.params:
        for alias in (p.name, *p.aliases):
            if alias in names:
                params[alias] = spec.p[p.name]
                break
    fn.set_parameters(params)
    unstable = int(spec.p.get("unstable", 0))
    if unstable:
        talib.set_unstable_period(defn.talib_name, unstable)
    try:
        return int(fn.lookback)
    finally:
        if unstable:
            talib.set_unstable_period(defn.talib_name, 0)


# ---------------------------------------------------------------------------------- tests
def make_tests(rows: Sequence[Row], *, n_synthetic: int = 3000, hypothesis_examples: int = 30) -> dict[str, Any]:
    """Parametrized pytest functions for ``rows``; put them in a test module's globals."""
    cases = [pytest.param(row, spec, id=spec.name) for row in rows for spec in row.specs]
    talib_cases = [c for c in cases if c.values[0].oracle is None]  # type: ignore[union-attr]
    small = [
        c for c in cases if c.values[1].lookback <= c.values[0].max_incremental_lookback  # type: ignore[union-attr]
    ]

    @pytest.mark.parametrize(("row", "spec"), cases)
    def test_oracle_synthetic(row: Row, spec: IndicatorSpec) -> None:
        for j, kind in enumerate(SERIES_KINDS):
            n = n_synthetic if kind not in ("all_nan", "constant") else max(spec.lookback + 20, 60)
            _check_oracle(row, spec, make_series(kind, n, 100 + j), kind)

    @pytest.mark.parametrize(("row", "spec"), cases)
    def test_every_length(row: Row, spec: IndicatorSpec) -> None:
        data = make_series("ticks", spec.lookback + 3, 5)
        lengths = np.arange(1, spec.lookback + 4)
        cat = {k: np.concatenate([data[k][:n] for n in lengths]) for k in spec.inputs}
        offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        outs, state = compute_batch(spec, cat, offsets)
        assert state.shape == (lengths.size, spec.state_len)
        for j, n in enumerate(lengths):
            ref = row.expected(spec, {k: data[k][:n] for k in spec.inputs})
            for name, r in zip(spec.outputs, ref):
                row.compare(outs[name][offsets[j] : offsets[j + 1]], r, f"length {n} {name}")
            valid = np.flatnonzero(~np.isnan(outs[spec.outputs[0]][offsets[j] : offsets[j + 1]]))
            assert (valid[0] if valid.size else n) == min(spec.lookback, n), f"length {n}: lookback"

    @pytest.mark.parametrize(("row", "spec"), talib_cases)
    def test_lookback_matches_talib(row: Row, spec: IndicatorSpec) -> None:
        assert spec.lookback == _talib_lookback(spec)

    @pytest.mark.parametrize(("row", "spec"), cases)
    def test_real_data(row: Row, spec: IndicatorSpec) -> None:
        datas = list(real_datas())
        for name, data in datas:
            _check_oracle(row, spec, data, name)
            n = data["close"].size
            full, full_state = compute_batch(spec, {k: data[k] for k in spec.inputs})
            got, state = run_in_chunks(spec, data, [n // 3, n // 3 + 1, n - 5], via_bytes=True)
            for out in spec.outputs:
                assert_bits(got[out], full[out], f"{name} incremental {out}")
            assert_bits(state, full_state, f"{name} state")
        cat = {k: np.concatenate([d[k] for _, d in datas]) for k in spec.inputs}
        offsets = np.r_[0, np.cumsum([d["close"].size for _, d in datas])].astype(np.int64)
        outs, _ = compute_batch(spec, cat, offsets)
        for j, (name, data) in enumerate(datas):
            for out, ref in zip(spec.outputs, row.expected(spec, data)):
                row.compare(outs[out][offsets[j] : offsets[j + 1]], ref, f"batched {name} {out}")

    @pytest.mark.parametrize(("row", "spec"), cases)
    def test_batched_equals_per_symbol(row: Row, spec: IndicatorSpec) -> None:
        lb = spec.lookback
        lengths = [0, 1, lb, lb + 1, 0, max(lb - 1, 0), 3 * lb + 50, 2, 0, 300]
        series = [make_series("ticks", n, 100 + i) for i, n in enumerate(lengths)]
        series[3] = make_series("leading_nan", lengths[3] + 10, 3)
        lengths[3] += 10
        series[6] = make_series("holes", lengths[6], 6)
        cat = {k: np.concatenate([s[k] for s in series]) for k in spec.inputs}
        offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        outs, state = compute_batch(spec, cat, offsets)
        for j, s in enumerate(series):
            one, one_state = compute_batch(spec, {k: s[k] for k in spec.inputs})
            for name in spec.outputs:
                assert_bits(outs[name][offsets[j] : offsets[j + 1]], one[name], f"symbol {j} {name}")
            assert_bits(state[j], one_state[0], f"state of symbol {j}")

    @pytest.mark.parametrize(("row", "spec"), small)
    def test_incremental_every_split(row: Row, spec: IndicatorSpec) -> None:
        n = spec.lookback + 25
        data = make_series("flat", n, 21)
        ins = {k: data[k] for k in spec.inputs}
        full, full_state = compute_batch(spec, ins)
        for k in range(n + 1):
            got, state = run_in_chunks(spec, data, [k], via_bytes=(k % 2 == 0))
            for name in spec.outputs:
                assert_bits(got[name], full[name], f"split {k} {name}")
            assert_bits(state[0], full_state[0], f"state after split {k}")
        got, state = run_in_chunks(spec, data, list(range(1, n)), via_bytes=False)
        for name in spec.outputs:
            assert_bits(got[name], full[name], f"bar by bar {name}")
        _, st_in = compute_batch(spec, {k: v[: n // 2] for k, v in ins.items()})
        outs = update_batch_inplace(spec, st_in, {k: v[n // 2 :] for k, v in ins.items()})
        for name in spec.outputs:
            assert_bits(outs[name], full[name][n // 2 :], f"in place {name}")
        assert_bits(st_in, full_state, "in-place state")

    @st.composite
    def chunked(draw: st.DrawFn) -> tuple[str, int, int, list[int], bool]:
        kind = draw(st.sampled_from(["walk", "ticks", "flat", "leading_nan", "holes", "trailing_nan"]))
        n = draw(st.integers(10, 260))
        seed = draw(st.integers(0, 2**31))
        cuts = sorted(set(draw(st.lists(st.integers(0, n), max_size=12))))
        return kind, n, seed, cuts, draw(st.booleans())

    @pytest.mark.parametrize(("row", "spec"), small)
    @settings(max_examples=hypothesis_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(case=chunked())
    def test_incremental_property(row: Row, spec: IndicatorSpec, case: tuple[str, int, int, list[int], bool]) -> None:
        kind, n, seed, cuts, via_bytes = case
        data = make_series(kind, n, seed)
        full, full_state = compute_batch(spec, {k: data[k] for k in spec.inputs})
        got, state = run_in_chunks(spec, data, cuts, via_bytes)
        for name in spec.outputs:
            assert_bits(got[name], full[name], name)
        assert_bits(state[0], full_state[0], "state")

    made = (
        (test_oracle_synthetic, cases), (test_every_length, cases),
        (test_lookback_matches_talib, talib_cases), (test_real_data, cases),
        (test_batched_equals_per_symbol, cases), (test_incremental_every_split, small),
        (test_incremental_property, small),
    )
    return {f.__name__: f for f, used in made if used}  # no empty parametrization: no skips
