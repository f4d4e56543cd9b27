"""User-defined indicators (issue 12 section 3): the contract of featurestore.indicators.user.

Five built-ins are ported to the contract here, as a user would write them (two windowed: TRANGE,
MOM; three recursive: SMA, EMA with TA-Lib's unstable period, ATR) and must equal TA-Lib and the
built-in kernels bit for bit, through the whole indicator harness (synthetic edge cases, every
split point, bar by bar, state through bytes, batching, hypothesis) and in a view on a real store.
Then: registration errors, NaN-contract errors at compute time, code hashes and view versions,
and unregistered kernels on write and read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import talib
from helpers import make_bars, stored
from indicator_harness import Row, assert_bits, make_series, make_tests
from numba import njit

from featurestore.indicators import (
    KINDS,
    REGISTRY,
    ParamDef,
    UserKernelError,
    compute,
    compute_batch,
    indicator,
    parse_indicator,
    parse_output_name,
    register,
    unregister,
    update_batch,
    update_batch_inplace,
)
from featurestore.indicators.kernels import fma

# ------------------------------------------------------------------------------ the ports


@njit
def true_range(h: float, lo: float, yc: float) -> float:
    """TA-Lib's TRUE_RANGE, comparisons in its order (so NaN falls back exactly as TA-Lib's)."""
    out = h - lo
    t = abs(yc - h)
    if t > out:
        out = t
    t = abs(lo - yc)
    if t > out:
        out = t
    return out


@register("my_trange", inputs=("high", "low", "close"), window=2)
def my_trange(high, low, close):  # type: ignore[no-untyped-def]
    return true_range(high[1], low[1], close[0])


@register("my_mom", params={"period": ParamDef("period", int, 10, 1, 100_000)}, window=lambda period: period + 1)
def my_mom(close, period):  # type: ignore[no-untyped-def]
    return close[-1] - close[0]


@register(
    "my_sma", params={"period": ParamDef("period", int, 30, 1, 100_000)},
    state=lambda period: period, lookback=lambda period: period - 1,
)
def my_sma(state, n, close, period):  # type: ignore[no-untyped-def]
    """TA-Lib's running sum: state = [T, ring of the last period-1 closes]."""
    m = period - 1
    if n < m:
        state[0] += close
        state[1 + n % m] = close
        return np.nan
    total = state[0] + close
    out = total / period
    if m > 0:
        slot = 1 + n % m
        total -= state[slot]
        state[slot] = close
    else:
        total -= close
    state[0] = total
    return out


UNSTABLE = ParamDef("unstable", int, 0, 0, 100_000, tag="u")


@register(
    "my_ema", params={"period": ParamDef("period", int, 30, 1, 100_000), "unstable": UNSTABLE},
    state=1, lookback=lambda period, unstable: period - 1 + unstable,
)
def my_ema(state, n, close, period, unstable):  # type: ignore[no-untyped-def]
    if n < period:
        state[0] += close
        if n == period - 1:
            state[0] = state[0] / period
        return state[0]
    if period == 1:
        state[0] = close
    else:
        state[0] = fma(close - state[0], 2.0 / (period + 1), state[0])
    return state[0]


@register(
    "my_atr", inputs=("high", "low", "close"), params={"period": ParamDef("period", int, 14, 1, 100_000)},
    state=2, lookback="period",
)
def my_atr(state, n, high, low, close, period):  # type: ignore[no-untyped-def]
    """Wilder ATR in TA-Lib 0.8's fma form: state = [TR sum, then ATR; previous close]."""
    if n == 0:
        state[1] = close
        return np.nan
    tr = true_range(high, low, state[1])
    state[1] = close
    if n <= period:
        state[0] += tr
        if n == period:
            state[0] = state[0] / period
        return state[0]
    a = (period - 1) / period
    state[0] = fma(a, state[0], tr * (1.0 - a))
    return state[0]


def _ta(name: str, *params: str, inputs: tuple[str, ...] = ("close",), unstable: bool = False) -> Any:
    """A TA-Lib oracle (the ports have no talib_ref of their own)."""

    def oracle(d: dict[str, np.ndarray], p: Any) -> tuple[np.ndarray, ...]:
        if unstable:
            talib.set_unstable_period(name, int(p["unstable"]))
        try:
            return (getattr(talib, name)(*(d[k] for k in inputs), *(p[k] for k in params)),)
        finally:
            if unstable:
                talib.set_unstable_period(name, 0)

    return oracle


HLC = ("high", "low", "close")
ROWS = [
    Row("my_trange", [{}], oracle=_ta("TRANGE", inputs=HLC)),
    Row("my_mom", [{"period": 1}, {"period": 10}], oracle=_ta("MOM", "period")),
    Row("my_sma", [{"period": 1}, {"period": 2}, {"period": 20}], oracle=_ta("SMA", "period")),
    Row("my_ema", [{"period": 1}, {"period": 20}, {"period": 10, "unstable": 7}], oracle=_ta("EMA", "period", unstable=True)),
    Row("my_atr", [{"period": 1}, {"period": 14}], oracle=_ta("ATR", "period", inputs=HLC)),
]
globals().update(make_tests(ROWS, n_synthetic=1500, hypothesis_examples=15))

#: port -> the built-in it reproduces (same parameters)
BUILTIN = {"my_trange": "trange", "my_sma": "sma", "my_ema": "ema", "my_atr": "atr", "my_mom": "mom"}


@pytest.mark.parametrize(
    "spec", ["my_trange", "my_mom_10", "my_sma_1", "my_sma_20", "my_ema_20", "my_ema_10_u7", "my_atr_14", "my_atr_1"]
)
def test_ports_equal_the_builtin_kernels_bit_for_bit(spec: str) -> None:
    s = parse_indicator(spec)
    assert BUILTIN[s.kind] in REGISTRY or s.kind == "my_mom"  # MOM arrives with the momentum family
    b = indicator(BUILTIN[s.kind], **s.p) if BUILTIN[s.kind] in REGISTRY else None
    for j, kind in enumerate(("walk", "ticks", "leading_nan", "holes")):
        data = make_series(kind, 700, 40 + j)
        sym_lengths = [0, 3, 250, 447]
        offsets = np.r_[0, np.cumsum(sym_lengths)].astype(np.int64)
        ins = {k: data[k] for k in s.inputs}
        ours, st = compute_batch(s, ins, offsets)
        if b is not None:
            theirs, _ = compute_batch(b, ins, offsets)
            assert_bits(ours[s.name], theirs[b.name], f"{spec} vs {b} on {kind}")
        # incremental through the engine == full, at a cut inside each symbol's warm-up and after it
        for cut in (2, 30):
            head = np.minimum(np.array(sym_lengths), cut)
            off1 = np.r_[0, np.cumsum(head)].astype(np.int64)
            off2 = np.r_[0, np.cumsum(np.array(sym_lengths) - head)].astype(np.int64)
            idx1 = np.concatenate([np.arange(offsets[k], offsets[k] + head[k]) for k in range(4)]).astype(np.int64)
            idx2 = np.concatenate([np.arange(offsets[k] + head[k], offsets[k + 1]) for k in range(4)]).astype(np.int64)
            o1, s1 = compute_batch(s, {k: v[idx1] for k, v in ins.items()}, off1)
            o2, s2 = update_batch(s, s1, {k: v[idx2] for k, v in ins.items()}, off2)
            got = np.empty(offsets[-1])
            got[idx1], got[idx2] = o1[s.name], o2[s.name]
            assert_bits(got, ours[s.name], f"{spec} incremental at {cut} on {kind}")
            assert np.array_equal(s2, st, equal_nan=True)


# ------------------------------------------------------------------------------ views
VIEW = ["my_trange", "my_mom_10", "my_sma_20", "my_ema_10", "my_ema_10_u5", "my_atr_14", "sma_20", "ema_10", "atr_14", "trange"]


def _talib_view(bars: Any) -> dict[str, np.ndarray]:
    h, lo, c = (bars[k].to_numpy(dtype=float) for k in HLC)
    talib.set_unstable_period("EMA", 5)
    try:
        ema_u5 = talib.EMA(c, 10)
    finally:
        talib.set_unstable_period("EMA", 0)
    return {
        "my_trange": talib.TRANGE(h, lo, c), "my_mom_10": talib.MOM(c, 10), "my_sma_20": talib.SMA(c, 20),
        "my_ema_10": talib.EMA(c, 10), "my_ema_10_u5": ema_u5, "my_atr_14": talib.ATR(h, lo, c, 14),
    }


def _check_view(store: Any, table: str, sym: str) -> None:
    with store.db.connection() as conn:
        bars = stored(conn, "bars", sym)
        feats = stored(conn, table, sym)
    assert len(feats) == len(bars)
    for col, ref in _talib_view(bars).items():
        assert_bits(feats[col].to_numpy(dtype=float), ref, f"{sym} {col}")
    for ours, builtin in (("my_sma_20", "sma_20"), ("my_ema_10", "ema_10"), ("my_atr_14", "atr_14"), ("my_trange", "trange")):
        assert_bits(feats[ours].to_numpy(dtype=float), feats[builtin].to_numpy(dtype=float), f"{sym} {ours}")


def test_ports_in_a_view_on_write_append_and_correction(store: Any) -> None:
    df = make_bars(["AAA", "BBB"], 150, seed=3)
    store.ingest(df.groupby("symbol").head(149))
    view = store.create_view("ported", VIEW)
    for sym in ("AAA", "BBB"):
        _check_view(store, view.table_name, sym)
    r = store.ingest(df.groupby("symbol").tail(1))  # append: continued from the stored state
    assert (r.inserted, r.entities_recomputed) == (2, 0)
    for sym in ("AAA", "BBB"):
        _check_view(store, view.table_name, sym)
    fix = df[df.symbol == "AAA"].iloc[[60]].copy()  # correct an old bar: recomputed from there
    fix[["high", "close"]] = fix[["high", "close"]] * [1.03, 1.02]
    r = store.ingest(fix)
    assert (r.updated, r.entities_recomputed) == (1, 1)
    for sym in ("AAA", "BBB"):
        _check_view(store, view.table_name, sym)
    got = store.get_features("AAA", view="ported", columns=["my_ema_10_u5"])
    assert got["my_ema_10_u5"].notna().sum() == 150 - 14
    # the spec records each user kernel's code hash; built-in entries keep their stored form
    with store.db.connection() as conn:
        spec = conn.execute("SELECT spec FROM feature_views WHERE view_id = %s", (view.view_id,)).fetchone()[0]
    by_kind = {d["kind"]: d for d in spec["indicators"]}
    assert by_kind["sma"] == {"kind": "sma", "params": {"period": 20}}
    assert by_kind["my_sma"] == {"kind": "my_sma", "params": {"period": 20}, "code": KINDS["my_sma"].code_hash}
    assert store.create_view("ported", VIEW).version == view.version  # same code: no new version


@pytest.fixture()
def fresh_store(make_database: Callable[[str], Any]) -> Iterator[Any]:
    """A store of its own: a view that cannot be computed here would block other tests' ingests."""
    from featurestore.client import FeatureStore

    fs = FeatureStore(make_database("userk"), auto_migrate=True)
    yield fs
    fs.close()


def _scaler(kind: str, factor: float) -> None:
    @register(kind, params={"period": 3}, window="period")
    def scale(close, period):  # type: ignore[no-untyped-def]
        return close[-1] * factor + close[0] * 0.0

    del scale


def _bar_count(store: Any) -> int:
    with store.db.connection() as conn:
        return int(conn.execute("SELECT count(*) FROM bars").fetchone()[0])


def test_changed_code_makes_a_new_version_and_never_mixes(fresh_store: Any) -> None:
    store = fresh_store
    df = make_bars(["AAA"], 40, seed=5)
    store.ingest(df.head(39))
    try:
        _scaler("uk_scale", 2.0)
        h1 = KINDS["uk_scale"].code_hash
        v1 = store.create_view("ver", ["uk_scale_3", "sma_5"])
        assert store.create_view("ver", ["uk_scale_3", "sma_5"]).version == v1.version
        got1 = store.get_features("AAA", view="ver")["uk_scale_3"].to_numpy()
        close = df["close"].to_numpy()[:39]
        assert np.array_equal(got1[2:], close[2:] * 2.0)
        _scaler("uk_scale", 3.0)  # same name, other code (a constant it closes over): replaced
        h2 = KINDS["uk_scale"].code_hash
        assert h2 != h1
        v2 = store.create_view("ver", ["uk_scale_3", "sma_5"])
        assert v2.version == v1.version + 1
        got2 = store.get_features("AAA", view="ver")["uk_scale_3"].to_numpy()
        assert np.array_equal(got2[2:], close[2:] * 3.0)
        # v1 was computed by the old code: writing it now would mix, so ingest refuses, naming it
        n = _bar_count(store)
        with pytest.raises(UserKernelError, match=r"view 'ver' v1.*uk_scale.*" + h1):
            store.ingest(df.tail(1))
        assert _bar_count(store) == n
        with pytest.raises(UserKernelError, match="uk_scale"):
            store.get_features("AAA", view="ver", version=1)
        assert [d for d in store.list_views() if d["version"] == 1][0]["problem"]
        store.drop_view("ver", 1)
        store.ingest(df.tail(1))
        got3 = store.get_features("AAA", view="ver")["uk_scale_3"].to_numpy()
        assert np.array_equal(got3[2:], df["close"].to_numpy()[2:] * 3.0)
        _scaler("uk_scale", 3.0)  # the same code again: the same hash
        assert KINDS["uk_scale"].code_hash == h2
    finally:
        unregister("uk_scale")


def test_unregistered_kernel_is_named_on_write_and_read(fresh_store: Any) -> None:
    store = fresh_store
    df = make_bars(["AAA"], 30, seed=6)
    store.ingest(df.head(29))
    _scaler("uk_gone", 2.0)
    store.create_view("gone", ["uk_gone_3"])
    unregister("uk_gone")
    n = _bar_count(store)
    with pytest.raises(UserKernelError, match=r"view 'gone' v1.*'uk_gone'.*not registered"):
        store.ingest(df.tail(1))
    assert _bar_count(store) == n
    # found before any data is read: even invalid input reports the view, not the data
    with pytest.raises(UserKernelError, match=r"view 'gone' v1.*'uk_gone'.*not registered"):
        store.ingest(df.tail(1).assign(close=-1.0))
    with pytest.raises(UserKernelError, match=r"view 'gone' v1.*'uk_gone'.*not registered"):
        store.load(Path("/nonexistent/bars.csv"))
    with pytest.raises(UserKernelError, match=r"'uk_gone'.*not registered"):
        store.get_features("AAA", view="gone")
    assert store.describe_view("gone")["indicators"] == ["uk_gone_3"]
    with pytest.raises(Exception, match="uk_gone"):
        store.create_view("gone2", ["uk_gone_3"])
    assert store.drop_view("gone") == [1]
    store.ingest(df.tail(1))  # nothing needs it any more
    assert _bar_count(store) == n + 1


def test_nan_contract_broken_on_real_data_fails_the_write_and_stores_nothing(fresh_store: Any) -> None:
    @register("uk_spiky", params={"period": 2}, window="period")
    def spiky(close, period):  # type: ignore[no-untyped-def]
        return np.nan if close[-1] > 1000.0 else close[-1] - close[0]

    store = fresh_store
    try:
        x = np.array([100.0, 101.0, 102.0, 5000.0, 103.0])
        with pytest.raises(UserKernelError, match=r"uk_spiky_2.*NaN or inf at bar 3 of symbol 0.*allow_nan"):
            compute("uk_spiky_2", x)
        _, st = compute_batch("uk_spiky_2", {"close": x[:2]}, np.array([0, 2], dtype=np.int64))
        before = st.copy()
        with pytest.raises(UserKernelError, match="bar 1 of symbol 0"):
            update_batch_inplace("uk_spiky_2", st, {"close": x[2:]}, np.array([0, 3], dtype=np.int64))
        assert np.array_equal(st, before)  # the caller's state is unchanged after the error
        df = make_bars(["AAA"], 20, seed=7)
        store.ingest(df)
        view = store.create_view("spiky", ["uk_spiky_2"])
        bad = df.tail(1).copy()
        bad["ts"] = bad["ts"] + np.timedelta64(1, "D")
        bad[["open", "high", "low", "close"]] = [5000.0, 5001.0, 4999.0, 5000.0]
        n = _bar_count(store)
        with pytest.raises(UserKernelError, match="uk_spiky_2"):
            store.ingest(bad)
        assert _bar_count(store) == n
        with store.db.connection() as conn:
            assert len(stored(conn, view.table_name, "AAA")) == 20
    finally:
        unregister("uk_spiky")


# ------------------------------------------------------------------------------ registration errors
def _fails(match: str, **kw: Any) -> Callable[[Any], None]:
    def check(fn: Any) -> None:
        before = dict(KINDS)
        with pytest.raises(UserKernelError, match=match):
            register(**kw)(fn)
        assert KINDS == before  # nothing registered

    return check


def test_a_function_that_does_not_compile_fails_registration() -> None:
    def f(close, period):  # type: ignore[no-untyped-def]
        return close.no_such_attribute

    _fails(r"uk_bad: the function does not compile with numba", kind="uk_bad", params={"period": 3}, window="period")(f)


def test_wrong_arity_fails_registration() -> None:
    def one(close, period):  # type: ignore[no-untyped-def]
        return close[-1]

    def two(close, period):  # type: ignore[no-untyped-def]
        return close[-1], close[0]

    _fails("tuple of 2 floats", kind="uk_bad", params={"period": 3}, window="period", outputs=("a", "b"))(one)
    _fails("one float", kind="uk_bad", params={"period": 3}, window="period")(two)

    def step(state, n, close):  # type: ignore[no-untyped-def]
        return close, close

    _fails("step must return one float", kind="uk_bad", state=0)(step)


def test_nan_on_finite_input_fails_registration_unless_allowed() -> None:
    def ratio(close, period):  # type: ignore[no-untyped-def]
        return np.sqrt(-close[-1])  # NaN on any positive price

    def divide(close, period):  # type: ignore[no-untyped-def]
        return 1.0 / (close[-1] - close[-1])

    _fails(r"uk_div: the function raised ZeroDivisionError.*guard it", kind="uk_div", params={"period": 3}, window="period")(divide)
    _fails(r"NaN or inf at bar 2 of a finite synthetic series.*allow_nan=True", kind="uk_nan", params={"period": 3}, window="period")(ratio)
    try:
        register("uk_nan", params={"period": 3}, window="period", allow_nan=True)(ratio)
        out = compute("uk_nan_3", np.array([1.0, 2.0, 3.0, 4.0]))["uk_nan_3"]
        assert np.isnan(out).all()
    finally:
        unregister("uk_nan")


def test_a_state_that_is_not_exact_fails_registration() -> None:
    def noisy(state, n, close):  # type: ignore[no-untyped-def]
        state[0] += close * (1.0 + 1e-9 * np.random.random())  # depends on more than the bars seen
        return state[0]

    _fails(r"incremental != full|state after bars", kind="uk_noisy", state=1)(noisy)

    def too_wide(state, n, close):  # type: ignore[no-untyped-def]
        state[1] = close  # declared width 1
        return close

    _fails(r"writes past the end of its declared state \(width 1\)", kind="uk_wide", state=1)(too_wide)


def test_names_follow_the_grammar_and_never_shadow_builtins() -> None:
    def f(close):  # type: ignore[no-untyped-def]
        return close[-1]

    for bad, msg in (
        ("sma", "shadow the built-in indicator 'sma'"),
        ("sma_fast", "shadow the built-in indicator 'sma'"),
        ("plus", "shadow the built-in indicator 'plus_di'"),
        ("Bad-Name", "lower-case tokens"),
        ("my_20", "lower-case tokens"),
    ):
        if bad == "plus" and "plus_di" not in REGISTRY:
            bad, msg = "macd", "shadow the built-in indicator 'macd'"
        _fails(msg, kind=bad, window=1)(f)
    _fails("exactly one of window", kind="uk_x")(f)
    _fails("inputs must be distinct names", kind="uk_x", window=1, inputs=("price",))(f)
    _fails("ambiguous with user kernel 'my_sma'", kind="my_sma_fast", window=1)(f)


def test_user_specs_parse_and_name_like_builtins() -> None:
    s = parse_indicator("my_ema_30_u5")
    assert (s.kind, s.p, s.name, s.lookback, s.state_len) == ("my_ema", {"period": 30, "unstable": 5}, "my_ema_30_u5", 34, 3)
    assert parse_indicator("my_ema") == indicator("my_ema", period=30)
    assert parse_output_name("my_atr_14") == (indicator("my_atr", period=14), "")
    assert indicator("my_sma", period=20).to_dict() == {"kind": "my_sma", "params": {"period": 20}, "code": KINDS["my_sma"].code_hash}
    with pytest.raises(UserKernelError, match="other code"):
        type(s).from_dict({"kind": "my_sma", "params": {"period": 20}, "code": "0" * 20})
    with pytest.raises(Exception, match="period"):
        parse_indicator("my_mom_0")
    assert json.dumps(indicator("sma", period=20).to_dict()) == '{"kind": "sma", "params": {"period": 20}}'


def test_a_failed_re_registration_keeps_the_previous_kernel() -> None:
    _scaler("uk_keep", 2.0)
    try:
        h = KINDS["uk_keep"].code_hash

        def broken(close, period):  # type: ignore[no-untyped-def]
            return close.nope

        with pytest.raises(UserKernelError):
            register("uk_keep", params={"period": 3}, window="period")(broken)
        assert KINDS["uk_keep"].code_hash == h
        assert compute("uk_keep_3", np.array([1.0, 2.0, 3.0]))["uk_keep_3"][2] == 6.0
    finally:
        unregister("uk_keep")


# ------------------------------------------------------------------------------ the kernel itself
def test_windows_are_read_only_contiguous_views_of_the_last_bars_at_every_split() -> None:
    """The function sees exactly the last `period` bars, oldest first, as a read-only C array,
    whether the window lies in this call's inputs or reaches into the saved ring."""

    @register("uk_peek", params={"period": 4}, window="period")
    def peek(close, period):  # type: ignore[no-untyped-def]
        # encodes the window's length, layout flags and contents in one float
        code = 0.0
        for j in range(close.size):
            code = code * 1000.0 + close[j]
        return code + (0.0 if close.flags.c_contiguous and close.size == period else 1e18)

    try:
        x = np.arange(1.0, 30.0)
        want = np.full(x.size, np.nan)
        for i in range(3, x.size):
            w = x[i - 3 : i + 1]
            want[i] = ((w[0] * 1000.0 + w[1]) * 1000.0 + w[2]) * 1000.0 + w[3]
        assert_bits(compute("uk_peek_4", x)["uk_peek_4"], want, "full")
        for cut in range(1, x.size):
            o1, st = compute_batch("uk_peek_4", {"close": x[:cut]}, np.array([0, cut], dtype=np.int64))
            o2, _ = update_batch("uk_peek_4", st, {"close": x[cut:]}, np.array([0, x.size - cut], dtype=np.int64))
            assert_bits(np.concatenate([o1["uk_peek_4"], o2["uk_peek_4"]]), want, f"split at {cut}")

        def writes(close, period):  # type: ignore[no-untyped-def]
            close[0] = 0.0
            return close[-1]

        _fails("does not compile", kind="uk_write", params={"period": 3}, window="period")(writes)
    finally:
        unregister("uk_peek")


def test_a_function_compiled_with_its_own_options_keeps_them() -> None:
    """error_model="numpy" (1/0 = inf, no exception) survives: such a function is called, not
    inlined into the kernel (whose error model raises)."""

    @njit(error_model="numpy")
    def inv(close, period):  # type: ignore[no-untyped-def]
        return 1.0 / (close[-1] - close[-1])

    try:
        register("uk_inv", params={"period": 2}, window="period", allow_nan=True)(inv)
        out = compute("uk_inv_2", np.array([1.0, 2.0, 3.0]))["uk_inv_2"]
        assert np.isnan(out[0]) and np.all(np.isposinf(out[1:]))
    finally:
        unregister("uk_inv")


# ------------------------------------------------------------------------------ disk cache
_KERNEL_MODULE = '''
import numpy as np
from featurestore.indicators import register

SCALE = np.array([{SCALE}])


@register("uk_disk", params={{"period": 5}}, window="period")
def disk(close, period):
    return (close[-1] - close[0]) * {FACTOR} + SCALE[0]
'''

_RUNNER = '''
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
importlib.import_module("kern")
from featurestore.indicators import KINDS, compute
from featurestore.indicators.user import kernel_for
stats = kernel_for(KINDS["uk_disk"]).stats
x = np.arange(1.0, 40.0) ** 1.5
print(json.dumps({
    "hits": sum(stats.cache_hits.values()), "misses": sum(stats.cache_misses.values()),
    "out": compute("uk_disk_5", x)["uk_disk_5"].tolist(),
}))
'''


def _kernel_dir(tmp_path: Path, factor: str, scale: str) -> Path:
    d = tmp_path / f"src_{factor}_{scale}".replace(".", "p")
    d.mkdir(exist_ok=True)
    (d / "kern.py").write_text(_KERNEL_MODULE.format(FACTOR=factor, SCALE=scale))
    return d


def _start(src: Path, cache: Path) -> Any:
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    return subprocess.Popen(
        [sys.executable, "-c", _RUNNER, str(src)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(proc: Any) -> dict[str, Any]:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    return dict(json.loads(out.strip().splitlines()[-1]))


def _want(factor: float, scale: float) -> np.ndarray:
    x = np.arange(1.0, 40.0) ** 1.5
    want = np.full(x.size, np.nan)
    want[4:] = (x[4:] - x[:-4]) * factor + scale
    return want


def test_user_kernel_is_cached_on_disk_across_processes_and_keyed_by_its_code(tmp_path: Path) -> None:
    cache = tmp_path / "numba_cache"
    a = _kernel_dir(tmp_path, "2.0", "0.5")
    first = _finish(_start(a, cache))
    assert (first["hits"], first["misses"]) == (0, 1)
    second = _finish(_start(a, cache))  # a fresh process, same code: machine code from the disk cache
    assert (second["hits"], second["misses"]) == (1, 0)
    assert_bits(np.array(second["out"]), _want(2.0, 0.5), "cached kernel")
    assert_bits(np.array(first["out"]), _want(2.0, 0.5), "compiled kernel")
    # another body under the same name: compiled afresh, never the old entry
    changed = _finish(_start(_kernel_dir(tmp_path, "3.0", "0.5"), cache))
    assert (changed["hits"], changed["misses"]) == (0, 1)
    assert_bits(np.array(changed["out"]), _want(3.0, 0.5), "changed body")
    # the same source reading a global array with other contents: also a new entry
    rescaled = _finish(_start(_kernel_dir(tmp_path, "2.0", "7.25"), cache))
    assert (rescaled["hits"], rescaled["misses"]) == (0, 1)
    assert_bits(np.array(rescaled["out"]), _want(2.0, 7.25), "other array")
    generated = sorted(p.name for p in (cache / "featurestore_user_kernels").glob("*.py"))
    assert len(generated) == 3 and all(g.startswith("uk_disk_") for g in generated)


def test_concurrent_registrations_of_one_kernel_share_an_intact_cache(tmp_path: Path) -> None:
    cache = tmp_path / "numba_cache"
    src = _kernel_dir(tmp_path, "2.0", "0.5")
    procs = [_start(src, cache) for _ in range(2)]
    for res in [_finish(p) for p in procs]:
        assert res["hits"] + res["misses"] == 1
        assert_bits(np.array(res["out"]), _want(2.0, 0.5), "concurrent")
    after = _finish(_start(src, cache))
    assert (after["hits"], after["misses"]) == (1, 0)
    assert_bits(np.array(after["out"]), _want(2.0, 0.5), "after the race")
    folder = cache / "featurestore_user_kernels"
    assert not list(folder.glob(".*.tmp"))  # no temporary file left behind


def test_generated_module_files_are_written_once_and_atomically(tmp_path: Path) -> None:
    import os

    from featurestore.indicators.user.build import _write_once

    path = tmp_path / "k.py"
    _write_once(path, "x = 1\n")
    os.utime(path, (1_000_000, 1_000_000))
    _write_once(path, "x = 1\n")  # identical: untouched (numba's index checks the file's stamp)
    assert path.stat().st_mtime == 1_000_000
    path.write_text("x = ")  # a damaged file: replaced whole
    _write_once(path, "x = 1\n")
    assert path.read_text() == "x = 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["k.py"]


def test_a_kernel_reading_an_unkeyable_object_is_not_cached_on_disk(tmp_path: Path, monkeypatch: Any) -> None:
    from numba.core import config

    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path))
    table = np.arange(20_000.0)  # large: code_hash keeps no digest of it, the cache key does

    @register("uk_table", params={"period": 2}, window="period")
    def lookup(close, period):  # type: ignore[no-untyped-def]
        return close[-1] + table[7]

    try:
        assert compute("uk_table_2", np.array([1.0, 2.0, 3.0]))["uk_table_2"][2] == 10.0
        assert len(list((tmp_path / "featurestore_user_kernels").glob("uk_table_*.py"))) == 1
    finally:
        unregister("uk_table")

    # a function of the user's own module: its file may change without the kernel's source changing
    (tmp_path / "uk_helpers.py").write_text("from numba import njit\n\n\n@njit\ndef shift(x):\n    return x + 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import uk_helpers  # type: ignore[import-not-found]

    @register("uk_obj", params={"period": 2}, window="period")
    def obj(close, period):  # type: ignore[no-untyped-def]
        return uk_helpers.shift(close[-1])

    try:
        assert compute("uk_obj_2", np.array([1.0, 2.0, 3.0]))["uk_obj_2"][2] == 4.0
        assert not list((tmp_path / "featurestore_user_kernels").glob("uk_obj_*"))
    finally:
        unregister("uk_obj")


def test_a_valid_function_is_compiled_once_inside_its_kernel_and_arity_is_still_checked() -> None:
    @njit
    def last(close, period):  # type: ignore[no-untyped-def]
        return close[-1] - close[0]

    try:
        register("uk_once", params={"period": 3}, window="period")(last)
        assert last.signatures == []  # not compiled on its own: only inlined into the kernel
        assert compute("uk_once_3", np.array([1.0, 2.0, 4.0]))["uk_once_3"][2] == 3.0
    finally:
        unregister("uk_once")

    def flag(close, period):  # type: ignore[no-untyped-def]
        return close[-1] > close[0]

    def three(close, period):  # type: ignore[no-untyped-def]
        return close[-1], close[0], close[1]

    _fails("one float", kind="uk_bad", params={"period": 3}, window="period")(flag)
    _fails("tuple of 2 floats", kind="uk_bad", params={"period": 3}, window="period", outputs=("a", "b"))(three)


def test_init_runs_before_the_first_bar_and_the_kernel_compiles_in_memory_without_a_cache_dir(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from numba.core import config

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setattr(config, "CACHE_DIR", str(blocker / "cache"))  # cannot be created

    def start(state, period):  # type: ignore[no-untyped-def]
        state[0] = 100.0 * period

    @register("uk_init", params={"period": 2}, state=1, init=start)
    def running(state, n, close, period):  # type: ignore[no-untyped-def]
        state[0] += close
        return state[0]

    try:
        x = np.array([1.0, 2.0, 4.0, 8.0])
        assert_bits(compute("uk_init_2", x)["uk_init_2"], 200.0 + np.cumsum(x), "init then running sum")
        _, st = compute_batch("uk_init_2", {"close": x[:1]}, np.array([0, 1], dtype=np.int64))
        o2, _ = update_batch("uk_init_2", st, {"close": x[1:]}, np.array([0, 3], dtype=np.int64))
        assert_bits(o2["uk_init_2"], 200.0 + np.cumsum(x)[1:], "continued: init not run again")
        assert not (blocker.parent / "cache").exists()
    finally:
        unregister("uk_init")


def test_constants_the_code_hash_misses_still_key_the_disk_cache(tmp_path: Path, monkeypatch: Any) -> None:
    """numba freezes a closure's numpy scalar into the machine code: another value must not
    load the first one's cached kernel."""
    from numba.core import config

    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path))

    def shifted(shift: Any) -> None:
        @register("uk_shift", params={"period": 2}, window="period")
        def f(close, period):  # type: ignore[no-untyped-def]
            return close[-1] + shift

        del f

    hashes = set()
    try:
        for value in (np.int64(2), np.int64(5), np.complex128(7.0).real, np.float32(0.5)):
            shifted(value)
            hashes.add(KINDS["uk_shift"].code_hash)  # a view's version changes with the constant too
            got = compute("uk_shift_2", np.array([1.0, 2.0, 3.0]))["uk_shift_2"]
            assert_bits(got, np.array([np.nan, 2.0, 3.0]) + float(value), f"shift {value!r}")
    finally:
        unregister("uk_shift")
    assert len(list((tmp_path / "featurestore_user_kernels").glob("uk_shift_*.py"))) == 4
    assert len(hashes) == 4


def test_a_self_recursive_function_works_inlined() -> None:
    """The inlined copy calls the user's own dispatcher, which recurses as compiled."""

    @njit
    def first(close, period):  # type: ignore[no-untyped-def]
        if close.size == 1:
            return close[0]
        return first(close[:-1], period)

    try:
        register("uk_rec", params={"period": 3}, window="period")(first)
        x = np.array([1.0, 2.0, 4.0, 8.0])
        assert_bits(compute("uk_rec_3", x)["uk_rec_3"], np.array([np.nan, np.nan, 1.0, 2.0]), "first of the window")
    finally:
        unregister("uk_rec")
