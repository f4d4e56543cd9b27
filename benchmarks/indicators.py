"""Indicator engine vs TA-Lib, pandas, talib.stream and talipp, side by side in one run.

Cases:
  full      1 symbol x 1M bars and 2,000 symbols x 2,500 bars: our batched kernels (one call
            for all symbols, fresh outputs and reused ``out=`` buffers), TA-Lib (one call per
            symbol; and the same followed by np.concatenate of its outputs into one array per
            output, which is what our fresh-output call returns) and the pandas formulations
            from the registry (one call per symbol).
  update    append one bar to each of 2,000 symbols: one ``update_batch`` call, one
            ``update_batch_inplace`` call, vs ``talib.stream`` objects and ``talipp``
            indicators, one Python call per symbol. Interleaved with those, so every call of ours
            starts with caches that the previous contender (talipp, whose garbage collections
            sweep its whole heap) has evicted; "warm" repeats ``update_batch`` back to back.
  compile   first use of the seed kernels in a fresh process: cold (empty NUMBA_CACHE_DIR) and warm.
  kinds     every other built-in kind with a TA-Lib function, batched over N symbols x 2,500 bars
            (default parameters) vs TA-Lib called once per symbol with the same parameters; the
            transforms (no TA-Lib function) vs their pandas formulation, per symbol (report).
  view      one new bar for 2,000 symbols across a 20-output view (15 specs): ``prepare_update``
            when the view opens (timed apart) then ``BatchUpdater.update`` per round, and
            ``update_batch_inplace`` per spec, each in its own fresh process, vs ``talib.stream``
            objects, one per symbol and function; cold (the first round of a fresh process,
            kernels already in numba's disk cache after a warm-up process) and warm (median of
            the following rounds).
  user      user-defined kernels (``register``) vs the same formula as a built-in, batched: MOM as
            last - first vs mom_10, a window mean vs that formula as a batched numba kernel (and
            vs sma_20's running sum), the running sum as a recursive kernel vs sma_20; the
            registration time in fresh processes, cold (empty NUMBA_CACHE_DIR) and warm.
  firstuse  first use of one kernel in a fresh process with an empty NUMBA_CACHE_DIR, per kind,
            and ``import featurestore`` in a fresh process.

Repeats of the contenders are interleaved, and medians reported, because the machine is
shared and noisy. Every run writes ``benchmarks/results/indicators.{json,md}`` (``_results.py``).
Run:  python benchmarks/indicators.py [--quick] [--results-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _results import Results, add_arguments

from featurestore.indicators import (
    REGISTRY,
    IndicatorSpec,
    compute_batch,
    parse_indicator,
    update_batch,
    update_batch_inplace,
    warmup,
)

SPECS = ["sma_20", "ema_50", "rsi_14", "macd_12_26_9", "bbands_20_2", "atr_14", "adx_14", "trange"]


def make_data(n_symbols: int, n_bars: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    n = n_symbols * n_bars
    close = np.round(100.0 + np.cumsum(rng.normal(0, 0.5, n)), 2)
    high = close + np.round(np.abs(rng.normal(0, 0.3, n)), 2)
    low = close - np.round(np.abs(rng.normal(0, 0.3, n)), 2)
    offsets = np.arange(0, n + 1, n_bars, dtype=np.int64)
    # open and volume drawn last; high/low widened to contain open so every bar is valid
    opn = np.round(close + rng.normal(0, 0.2, n), 2)
    high = np.maximum(high, opn)
    low = np.minimum(low, opn)
    volume = np.round(rng.uniform(1_000, 100_000, n))
    return {"close": close, "high": high, "low": low, "open": opn, "volume": volume}, offsets


def interleaved(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per contender, running them in turn within each repeat."""
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def talib_assembled(spec: IndicatorSpec, segs: list[dict[str, np.ndarray]]) -> Callable[[], object]:
    """TA-Lib per symbol, then its outputs concatenated into one array per output."""
    ta = talib_call(spec)

    def run() -> object:
        res = [ta(s) for s in segs]
        if isinstance(res[0], tuple):
            return [np.concatenate(col) for col in zip(*res)]
        return np.concatenate(res)

    return run


def talib_call(spec: IndicatorSpec) -> Callable[[dict[str, np.ndarray]], object]:
    """The direct TA-Lib call with positional parameters (no wrapper overhead)."""
    import talib

    fn = getattr(talib, spec.definition.talib_name)
    params = talib_args(spec)
    inputs = spec.inputs
    return lambda d: fn(*(d[k] for k in inputs), *params)


def bench_full(n_symbols: int, n_bars: int, repeats: int, pandas_repeats: int) -> list[dict[str, object]]:
    data, offsets = make_data(n_symbols, n_bars)
    rows = []
    for name in SPECS:
        spec = parse_indicator(name)
        ins = {k: data[k] for k in spec.inputs}
        segs = [{k: ins[k][offsets[i] : offsets[i + 1]] for k in ins} for i in range(n_symbols)]
        ta = talib_call(spec)
        ref = spec.definition.pandas_ref
        assert ref is not None
        params = spec.p
        reuse = {o: np.empty(offsets[-1]) for o in spec.outputs}
        compute_batch(spec, ins, offsets, out=reuse)  # touch the pages once
        res = interleaved(
            {
                "ours": lambda: compute_batch(spec, ins, offsets),
                "ours_out": lambda: compute_batch(spec, ins, offsets, out=reuse),
                "talib": lambda: [ta(s) for s in segs],
                "talib_cat": talib_assembled(spec, segs),
            },
            repeats,
        )
        res.update(
            interleaved({"pandas": lambda: [ref(s, params) for s in segs]}, pandas_repeats)
        )
        rows.append({"case": f"{n_symbols:,} x {n_bars:,}", "indicator": name, **res})
    return rows


def bench_update(n_symbols: int, history: int, talipp_history: int, repeats: int) -> list[dict[str, object]]:
    import talib.stream
    from talipp import indicators as tp
    from talipp.ohlcv import OHLCV

    data, offsets = make_data(n_symbols, history, seed=1)
    rng = np.random.default_rng(2)
    new = {k: v[offsets[1:] - 1] + np.round(rng.normal(0, 0.2, n_symbols), 2) for k, v in data.items()}
    new["high"] = np.maximum(new["high"], new["close"])
    new["low"] = np.minimum(new["low"], new["close"])
    one = np.arange(n_symbols + 1, dtype=np.int64)
    rows = []
    for name in SPECS:
        spec = parse_indicator(name)
        p = spec.p
        ins = {k: data[k] for k in spec.inputs}
        _, state = compute_batch(spec, ins, offsets)
        new_in = {k: new[k] for k in spec.inputs}
        segs = [{k: ins[k][offsets[i] : offsets[i + 1]] for k in ins} for i in range(n_symbols)]
        stream_fn = getattr(talib.stream, spec.definition.talib_name)
        streams = [stream_fn(*(s[k] for k in spec.inputs), *talib_args(spec)) for s in segs]
        hlc = spec.inputs != ("close",)
        bars = [tuple(float(new[k][i]) for k in spec.inputs) for i in range(n_symbols)]

        def tp_make(s: dict[str, np.ndarray]) -> object:
            tail = {k: v[-talipp_history:].tolist() for k, v in s.items()}
            if hlc:
                vals = [OHLCV(c, h, lo, c) for h, lo, c in zip(tail["high"], tail["low"], tail["close"])]
            else:
                vals = tail["close"]
            kind = spec.kind
            if kind == "sma":
                return tp.SMA(p["period"], input_values=vals)
            if kind == "ema":
                return tp.EMA(p["period"], input_values=vals)
            if kind == "rsi":
                return tp.RSI(p["period"], input_values=vals)
            if kind == "macd":
                return tp.MACD(p["fast"], p["slow"], p["signal"], input_values=vals)
            if kind == "bbands":
                return tp.BB(p["period"], p["nbdevup"], input_values=vals)
            if kind == "atr":
                return tp.ATR(p["period"], input_values=vals)
            if kind == "adx":
                return tp.ADX(p["period"], p["period"], input_values=vals)
            return None  # talipp has no TRANGE

        tps = [tp_make(s) for s in segs]
        tp_bars: list[object] = (
            [OHLCV(c, h, lo, c) for h, lo, c in bars] if hlc else [b[0] for b in bars]
        )

        def run_stream() -> None:
            for s, b in zip(streams, bars):
                s.update(*b)

        def run_talipp() -> None:
            for t, b in zip(tps, tp_bars):
                t.add(b)  # type: ignore[attr-defined]

        def run_ours_per_symbol() -> None:
            for i in range(n_symbols):
                update_batch(spec, state[i], {k: new_in[k][i : i + 1] for k in new_in})

        # The in-place state advances by one bar per call; distinct bars keep BBANDS's window
        # from going flat (which would make it re-centre on every bar).
        st_inplace = state.copy()
        inplace_bars = [
            {k: v + np.round(rng.normal(0, 0.2, n_symbols), 2) for k, v in new_in.items()}
            for _ in range(16)
        ]
        if hlc:
            for b in inplace_bars:
                b["high"] = np.maximum(b["high"], b["close"])
                b["low"] = np.minimum(b["low"], b["close"])
        turn = [0]

        def run_inplace() -> None:
            turn[0] += 1
            update_batch_inplace(spec, st_inplace, inplace_bars[turn[0] % 16], one)

        contenders: dict[str, Callable[[], object]] = {
            "ours": lambda: update_batch(spec, state, new_in, one),
            "stream": run_stream,
            "ours_inplace": run_inplace,
        }
        if tps[0] is not None:
            contenders["talipp"] = run_talipp
        res = interleaved(contenders, repeats)
        res.update(interleaved({"ours_warm": lambda: update_batch(spec, state, new_in, one)}, repeats))
        res.update(interleaved({"ours_per_symbol": run_ours_per_symbol}, max(3, repeats // 10)))
        rows.append({"indicator": name, **res})
    return rows


def bench_compile() -> dict[str, float]:
    code = (
        "import time; t0 = time.perf_counter(); import featurestore.indicators as fi; "
        f"t1 = time.perf_counter(); fi.warmup({SPECS!r}); t2 = time.perf_counter(); "
        "print(t1 - t0, t2 - t1)"
    )
    root = str(Path(__file__).resolve().parents[1])
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": root}
        for label in ("cold", "warm", "warm2"):
            r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            imp, comp = map(float, r.stdout.split())
            out[f"import_{label}"] = imp
            out[f"compile_{label}"] = comp
    r = subprocess.run(
        [sys.executable, "-c", "import time; t=time.perf_counter(); import numpy; print(time.perf_counter()-t)"],
        capture_output=True, text=True, check=True,
    )
    out["import_numpy"] = float(r.stdout)
    return out


# ----------------------------------------------------------------------------- every kind
TRANSFORMS = [k for k, d in REGISTRY.items() if not d.talib_name]
SEED_KINDS = {parse_indicator(n).kind for n in SPECS}


def talib_args(spec: IndicatorSpec) -> list[object]:
    """TA-Lib's positional parameters for ``spec``: the registry's in order, then the fixed ones
    (BBANDS' matype); ``unstable`` is TA-Lib's global setting, left at its default 0."""
    defn = spec.definition
    if dict(spec.params).get("unstable", 0):
        raise ValueError(f"{spec}: a non-zero unstable period needs talib_ref")
    return [v for n, v in spec.params if n != "unstable"] + [v for _, v in defn.fixed]


def talib_direct(spec: IndicatorSpec) -> Callable[[dict[str, np.ndarray]], object]:
    """The bare TA-Lib function with ``talib_args``, checked once against the registry's
    ``talib_ref`` (same function, same parameters) so the timing compares the same work."""
    import talib

    fn = getattr(talib, spec.definition.talib_name)
    args = talib_args(spec)
    inputs = spec.inputs
    return lambda d: fn(*(d[k] for k in inputs), *args)


def _same(a: object, b: tuple[np.ndarray, ...]) -> bool:
    got = a if isinstance(a, tuple) else (a,)
    return len(got) == len(b) and all(np.array_equal(x, y, equal_nan=True) for x, y in zip(got, b))


def bench_kinds(n_symbols: int, n_bars: int, repeats: int) -> list[dict[str, object]]:
    """Every kind not in SPECS, default parameters: ours batched vs TA-Lib (or pandas) per symbol."""
    data, offsets = make_data(n_symbols, n_bars, seed=3)
    rows = []
    for kind, defn in REGISTRY.items():
        if kind in SEED_KINDS:
            continue
        spec = IndicatorSpec(kind)
        ins = {k: data[k] for k in spec.inputs}
        segs = [{k: ins[k][offsets[i] : offsets[i + 1]] for k in ins} for i in range(n_symbols)]
        p = spec.p
        if defn.talib_name:
            ta = talib_direct(spec)
            assert _same(ta(segs[0]), defn.talib_ref(segs[0], p)), f"{spec}: direct call differs from talib_ref"
            other, label = (lambda: [ta(s) for s in segs]), "TA-Lib"
            reps = repeats
        else:
            ref = defn.pandas_ref
            assert ref is not None, kind
            other, label = (lambda: [ref(s, p) for s in segs]), "pandas"
            reps = max(1, repeats // 3)
        compute_batch(spec, ins, offsets)  # compiled/loaded and pages touched
        res = interleaved({"ours": lambda: compute_batch(spec, ins, offsets), "other": other}, reps)
        rows.append({"kind": kind, "spec": spec.name, "vs": label, **res})
    return rows


# ----------------------------------------------------------------------------- the view
#: 15 specs, 20 outputs: what one feature view of a strategy might hold.
VIEW = ["sma_20", "ema_50", "rsi_14", "macd_12_26_9", "bbands_20_2", "atr_14", "adx_14", "stoch",
        "willr_14", "cci_14", "obv", "mfi_14", "natr_14", "mom_10", "roc_10"]


def view_files(n_symbols: int, history: int, rounds: int, path: Path) -> int:
    """Write the view's history, state and new bars to ``path`` (npz) for the child process."""
    specs = [parse_indicator(s) for s in VIEW]
    data, offsets = make_data(n_symbols, history, seed=4)
    arrays: dict[str, np.ndarray] = {f"hist_{k}": v for k, v in data.items()}
    arrays["offsets"] = offsets
    for i, spec in enumerate(specs):
        _, st = compute_batch(spec, {k: data[k] for k in spec.inputs}, offsets)
        arrays[f"state_{i}"] = st
    rng = np.random.default_rng(5)
    last = {k: v[offsets[1:] - 1] for k, v in data.items()}
    for r in range(rounds):
        close = np.round(last["close"] + rng.normal(0, 0.5, n_symbols), 2)
        opn = np.round(close + rng.normal(0, 0.2, n_symbols), 2)
        high = np.maximum(np.maximum(close, opn) + np.round(np.abs(rng.normal(0, 0.3, n_symbols)), 2), opn)
        low = np.minimum(np.minimum(close, opn) - np.round(np.abs(rng.normal(0, 0.3, n_symbols)), 2), opn)
        bar = {"close": close, "high": high, "low": low, "open": opn,
               "volume": np.round(rng.uniform(1_000, 100_000, n_symbols))}
        for k, v in bar.items():
            arrays[f"bar{r}_{k}"] = v
        last = bar
    np.savez(path, **arrays)
    return sum(len(s.outputs) for s in specs)


def view_child(path: str) -> None:
    """Child process: one round per new bar, ours then talib.stream; print JSON seconds.

    ``FEATURESTORE_VIEW_MODE`` picks ours: ``per_spec`` (``update_batch_inplace`` per spec, whose
    first call loads each kernel) or ``prepared`` (``prepare_update`` when the view opens, timed
    apart as ``open``, then ``BatchUpdater.update`` per round).
    """
    import json

    import talib.stream

    from featurestore.indicators import prepare_update

    mode = os.environ.get("FEATURESTORE_VIEW_MODE", "per_spec")
    t0 = time.perf_counter()
    z = np.load(path)
    specs = [parse_indicator(s) for s in VIEW]
    offsets = z["offsets"]
    n = len(offsets) - 1
    one = np.arange(n + 1, dtype=np.int64)
    states = [np.ascontiguousarray(z[f"state_{i}"]) for i in range(len(specs))]
    rounds = sum(1 for k in z.files if k.endswith("_close") and k.startswith("bar"))
    bars = [{k: z[f"bar{r}_{k}"] for k in ("close", "high", "low", "open", "volume")} for r in range(rounds)]
    hist = {k: z[f"hist_{k}"] for k in ("close", "high", "low", "open", "volume")}
    streams = []
    stream_bars = []
    for spec in specs:
        fn = getattr(talib.stream, spec.definition.talib_name)
        args = talib_args(spec)
        streams.append([fn(*(hist[k][offsets[i] : offsets[i + 1]] for k in spec.inputs), *args) for i in range(n)])
        stream_bars.append([
            list(zip(*(b[k].tolist() for k in spec.inputs))) for b in bars
        ])
    setup = time.perf_counter() - t0
    t_open = time.perf_counter()
    updater = prepare_update(specs, states) if mode == "prepared" else None
    t_open = time.perf_counter() - t_open

    def ours(r: int) -> None:
        b = bars[r]
        if updater is not None:
            updater.update(b)
            return
        for spec, st in zip(specs, states):
            update_batch_inplace(spec, st, b, one)

    def stream(r: int) -> None:
        for objs, sb in zip(streams, stream_bars):
            for o, v in zip(objs, sb[r]):
                o.update(*v)

    def timed(fn: Callable[[int], None], r: int) -> float:
        t = time.perf_counter()
        fn(r)
        return time.perf_counter() - t

    out = {"setup": setup, "open": t_open, "ours_cold": timed(ours, 0), "stream_cold": timed(stream, 0),
           "ours_second": timed(ours, 1), "stream_second": timed(stream, 1)}
    warm_o, warm_s = [], []
    for r in range(2, rounds):
        warm_o.append(timed(ours, r))
        warm_s.append(timed(stream, r))
    out["ours_warm"] = statistics.median(warm_o)
    out["stream_warm"] = statistics.median(warm_s)
    print(json.dumps(out))


def bench_view(n_symbols: int, history: int, rounds: int) -> dict[str, float]:
    """Run the view child: once to fill numba's disk cache, then once per mode in a fresh process.

    Returns the prepared child's times, plus ``per_spec_*`` (the per-spec child's) and
    ``warmup_process_ours_cold``.
    """
    import json

    root = str(Path(__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "view.npz"
        n_out = view_files(n_symbols, history, rounds, path)
        runs = {}
        for label, mode in (("warmup", "per_spec"), ("per_spec", "per_spec"), ("prepared", "prepared")):
            env = {**os.environ, "PYTHONPATH": root, "FEATURESTORE_VIEW_MODE": mode}
            r = subprocess.run([sys.executable, __file__, "--view-child", str(path)], env=env,
                               capture_output=True, text=True, check=True)
            runs[label] = json.loads(r.stdout.strip().splitlines()[-1])
    res = dict(runs["prepared"])
    res.update({f"per_spec_{k}": v for k, v in runs["per_spec"].items()})
    res["n_outputs"] = n_out
    res["warmup_process_ours_cold"] = runs["warmup"]["ours_cold"]
    return res


# ----------------------------------------------------------------------------- user kernels
_USER_KERNELS = '''
import numpy as np

from featurestore.indicators import register


def usma(close, period):
    return close.mean()


def umom(close, period):
    return close[-1] - close[0]


def rsma(state, n, close, period):
    """TA-Lib's running sum (as sma_run): state = [T, ring of the last period-1 closes]."""
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


def register_all(suffix=""):
    """Register the three benchmark kinds; seconds per registration."""
    import time

    times = {}
    for kind, fn, kw in (
        ("bench_usma", usma, {"params": {"period": 20}, "window": "period"}),
        ("bench_umom", umom, {"params": {"period": 10}, "window": lambda period: period + 1}),
        ("bench_rsma", rsma, {"params": {"period": 20}, "state": lambda period: period,
                              "lookback": lambda period: period - 1}),
    ):
        t0 = time.perf_counter()
        register(kind + suffix, **kw)(fn)
        times[kind] = time.perf_counter() - t0
    return times
'''

_USER_CHILD = '''
import json, sys
sys.path.insert(0, sys.argv[1])
from numba import njit
njit(lambda x: x + 1.0)(1.0)  # numba's one-time set-up, not part of a registration
import bench_user_kernels
print(json.dumps(bench_user_kernels.register_all()))
'''


def _user_registration_times(tmp: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Registration seconds in fresh processes: cold (empty NUMBA_CACHE_DIR), then warm."""
    import json

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp / "numba_cache")}
    runs = []
    for _ in range(2):
        res = subprocess.run([sys.executable, "-c", _USER_CHILD, str(tmp)], env=env, capture_output=True,
                             text=True, check=True)
        runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return runs[0], runs[1]


def bench_user(n_symbols: int, n_bars: int, repeats: int) -> list[dict[str, object]]:
    """User kernels vs the same formula as a built-in, batched; registration time cold and warm.

    The window mean (O(window) per bar) is compared with the same formula as a batched numba
    kernel (what a built-in with that formula costs); SMA's running sum (O(1) per bar) is
    reported beside it, and the running sum as a recursive user kernel is compared with it.
    """
    import importlib

    from numba import njit

    from featurestore.indicators import unregister

    @njit(cache=False)
    def window_mean(x: np.ndarray, offsets: np.ndarray, period: int, out: np.ndarray) -> None:
        for k in range(offsets.size - 1):
            s, e = offsets[k], offsets[k + 1]
            for i in range(s, min(s + period - 1, e)):
                out[i] = np.nan
            for i in range(s + period - 1, e):  # the user function's expression, per bar
                out[i] = x[i - period + 1:i + 1].mean()

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        (tmp / "bench_user_kernels.py").write_text(_USER_KERNELS)
        cold, warm = _user_registration_times(tmp)
        sys.path.insert(0, tmp_dir)
        try:
            mod = importlib.import_module("bench_user_kernels")
            mod.register_all()
        finally:
            sys.path.remove(tmp_dir)
    data, offsets = make_data(n_symbols, n_bars, seed=6)
    ins = {"close": data["close"]}
    x = data["close"]
    window_mean(x, offsets, 20, np.empty(x.size))

    def hand(period: int) -> Callable[[], object]:
        return lambda: window_mean(x, offsets, period, np.empty(x.size))

    def ours(spec: str) -> Callable[[], object]:
        return lambda: compute_batch(spec, ins, offsets)

    cases = [  # user spec, form, formula, contender label, contender, gated (the target), bits equal?
        ("bench_umom_10", "windowed", "last - first", "mom_10 (built-in)", ours("mom_10"), True),
        ("bench_usma_20", "windowed", "window mean", "same formula, batched numba kernel", hand(20), True),
        ("bench_usma_20", "windowed", "window mean", "sma_20 (built-in, running sum)", ours("sma_20"), False),
        ("bench_rsma_20", "recursive", "running sum", "sma_20 (built-in, running sum)", ours("sma_20"), False),
    ]
    rows: list[dict[str, object]] = []
    try:
        for spec, form, formula, label, other, gated in cases:
            got = compute_batch(spec, ins, offsets)[0][spec]
            if label.startswith("same formula"):
                want = np.empty(x.size)
                window_mean(x, offsets, 20, want)
            else:
                name = label.split(" ")[0]
                want = compute_batch(name, ins, offsets)[0][name]
            equal = bool(np.array_equal(got, want, equal_nan=True))
            assert equal or np.allclose(got, want, equal_nan=True, rtol=1e-9, atol=1e-9), f"{spec} != {label}"
            res = interleaved({"user_t": ours(spec), "builtin_t": other}, repeats)
            kind = spec.rsplit("_", 1)[0]
            rows.append({"user": spec, "form": form, "formula": formula, "builtin": label, "gated": gated,
                         "bits_equal": equal, "register_cold": cold[kind], "register_warm": warm[kind], **res})
    finally:
        for kind in ("bench_usma", "bench_umom", "bench_rsma"):
            unregister(kind)
    return rows


# ----------------------------------------------------------------------------- first use
FIRST_USE = [("sma", {"period": 20}), ("ema", {"period": 30}), ("rsi", {"period": 14}), ("stoch", {}),
             ("ma", {"period": 30, "matype": 8}), ("kama", {"period": 30}), ("obv", {})]


def bench_first_use(import_runs: int) -> dict[str, object]:
    """Each kind's first use in a fresh process with an empty NUMBA_CACHE_DIR; ``import featurestore``."""
    code = (
        "import sys, time, json; t0 = time.perf_counter(); import numpy as np; "
        "import featurestore.indicators as fi; t1 = time.perf_counter(); "
        "spec = fi.IndicatorSpec(sys.argv[1], json.loads(sys.argv[2])); "
        "x = np.linspace(1.0, 2.0, 64); "
        "fi.compute_batch(spec, {n: x for n in spec.inputs}, np.array([0, 64], dtype=np.int64)); "
        "t2 = time.perf_counter(); print(t1 - t0, t2 - t1)"
    )
    import json

    root = str(Path(__file__).resolve().parents[1])
    kinds: dict[str, float] = {}
    for kind, params in FIRST_USE:
        name = IndicatorSpec(kind, params).name
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": root}
            r = subprocess.run([sys.executable, "-c", code, kind, json.dumps(params)], env=env,
                               capture_output=True, text=True, check=True)
            kinds[name] = float(r.stdout.split()[1])
    imp_code = ("import sys, time; t = time.perf_counter(); import featurestore; "
                "print(time.perf_counter() - t, int('numba' in sys.modules))")
    times, numba_loaded = [], 0
    for _ in range(import_runs):
        r = subprocess.run([sys.executable, "-c", imp_code], env={**os.environ, "PYTHONPATH": root},
                           capture_output=True, text=True, check=True)
        t, nb = r.stdout.split()
        times.append(float(t))
        numba_loaded |= int(nb)
    return {"kinds": kinds, "import": statistics.median(times), "import_all": times, "numba_on_import": bool(numba_loaded)}


def fmt_ms(s: float) -> str:
    return f"{s * 1e3:,.2f}"


def fmt_us(s: float) -> str:
    return f"{s * 1e6:,.1f}"


def render(full: list[dict[str, object]], upd: list[dict[str, object]], comp: dict[str, float], n_upd: int, out: Results) -> None:
    """The three tables and the target checks, through the results writer."""
    out.table(
        "Full computation, medians (ms); ratios are time / TA-Lib time (lower is better)",
        ["case", "indicator", "ours", "ours out=", "TA-Lib", "TA-Lib+concat", "pandas", "ours/TA-Lib",
         "ours out=/TA-Lib", "ours/TA-Lib+concat", "pandas/ours"],
        [
            [
                str(r["case"]), str(r["indicator"]), fmt_ms(r["ours"]), fmt_ms(r["ours_out"]),  # type: ignore[arg-type]
                fmt_ms(r["talib"]), fmt_ms(r["talib_cat"]), fmt_ms(r["pandas"]),  # type: ignore[arg-type]
                f"{r['ours'] / r['talib']:.2f}x", f"{r['ours_out'] / r['talib']:.2f}x",  # type: ignore[operator]
                f"{r['ours'] / r['talib_cat']:.2f}x",  # type: ignore[operator]
                f"{r['pandas'] / r['ours']:.1f}x",  # type: ignore[operator]
            ]
            for r in full
        ],
    )
    out.table(
        f"Incremental: one new bar for each of {n_upd:,} symbols, medians (µs per round)",
        ["indicator", "ours: 1 call", "in place", "warm", "ours: call/symbol", "talib.stream", "talipp",
         "stream/ours", "stream/in place", "stream/warm", "talipp/ours"],
        [
            [
                str(r["indicator"]), fmt_us(r["ours"]), fmt_us(r["ours_inplace"]),  # type: ignore[arg-type]
                fmt_us(r["ours_warm"]),  # type: ignore[arg-type]
                fmt_us(r["ours_per_symbol"]), fmt_us(r["stream"]),  # type: ignore[arg-type]
                fmt_us(r["talipp"]) if "talipp" in r else "n/a",  # type: ignore[arg-type]
                f"{r['stream'] / r['ours']:.0f}x",  # type: ignore[operator]
                f"{r['stream'] / r['ours_inplace']:.0f}x",  # type: ignore[operator]
                f"{r['stream'] / r['ours_warm']:.0f}x",  # type: ignore[operator]
                f"{r['talipp'] / r['ours']:.0f}x" if "talipp" in r else "n/a",  # type: ignore[operator]
            ]
            for r in upd
        ],
    )
    out.table(
        f"First use of the {len(SPECS)} seed kernels in a fresh process (s)",
        ["what", "cache", "import", "compile/load"],
        [
            ["featurestore.indicators + warmup()", "cold (empty NUMBA_CACHE_DIR)", f"{comp['import_cold']:.3f}", f"{comp['compile_cold']:.2f}"],
            ["featurestore.indicators + warmup()", "warm", f"{comp['import_warm']:.3f}", f"{comp['compile_warm']:.2f}"],
            ["featurestore.indicators + warmup()", "warm (again)", f"{comp['import_warm2']:.3f}", f"{comp['compile_warm2']:.2f}"],
            ["numpy alone", "-", f"{comp['import_numpy']:.3f}", "-"],
        ],
    )
    out.record("full", full)
    out.record("update", upd)
    out.record("compile", comp)
    batched = [r for r in full if not str(r["case"]).startswith("1 x")]
    for r in batched:
        ratio = r["ours"] / r["talib"]  # type: ignore[operator]
        out.check(f"{r['indicator']}, batched {r['case']}: ours / TA-Lib per-symbol calls", ratio, "<= 0.90x", ratio <= 0.9)
    for r in batched:
        ratio = r["pandas"] / r["ours"]  # type: ignore[operator]
        out.check(f"{r['indicator']}, batched {r['case']}: pandas / ours", ratio, ">= 5x", ratio >= 5.0)
    for r in upd:
        ratio = r["stream"] / r["ours"]  # type: ignore[operator]
        out.check(f"{r['indicator']}, one new bar x {n_upd:,} symbols: talib.stream / update_batch (cold)", ratio, ">= 30x",
                  ratio >= 30.0)


def render_extra(kinds: list[dict[str, object]], n_kinds: str, view: dict[str, float], n_view: int,
                 user: list[dict[str, object]], user_case: str, first: dict[str, object], out: Results) -> None:
    """The tables and checks of the kinds, view, user and first-use sections."""
    out.table(
        f"Every other kind, batched {n_kinds} (default parameters), medians (ms); ratio = ours / other (lower is better)",
        ["kind", "spec", "ours", "vs", "other (per symbol)", "ours/other"],
        [[r["kind"], r["spec"], fmt_ms(r["ours"]), r["vs"], fmt_ms(r["other"]),  # type: ignore[arg-type]
          f"{r['ours'] / r['other']:.2f}x"] for r in kinds],  # type: ignore[operator]
    )
    def ratio(mode: str, key: str) -> float:
        return view[f"{mode}stream_{key}"] / view[f"{mode}ours_{key}"]

    out.table(
        f"One new bar for {n_view:,} symbols across a {view['n_outputs']:.0f}-output view ({len(VIEW)} specs), ms per round",
        ["round", "ours: prepare_update, then update", "talib.stream per symbol", "stream/ours",
         "ours: update_batch_inplace per spec", "talib.stream (that process)", "stream/ours (per spec)"],
        [
            [label, fmt_ms(view[f"ours_{key}"]), fmt_ms(view[f"stream_{key}"]), f"{ratio('', key):.1f}x",
             fmt_ms(view[f"per_spec_ours_{key}"]), fmt_ms(view[f"per_spec_stream_{key}"]),
             f"{ratio('per_spec_', key):.1f}x"]
            for label, key in (("cold: first round of a fresh process (kernels in the disk cache)", "cold"),
                               ("second round", "second"), ("warm: median of the following rounds", "warm"))
        ],
    )
    with_open = view["open"] + view["ours_cold"]
    out.say()
    out.say(f"View specs: {', '.join(VIEW)}. Each column pair is its own fresh process. `prepare_update` ran "
            f"when the view opened, before the first round: {fmt_ms(view['open'])} ms (importing numba, numba's "
            "set-up and loading each kernel from the disk cache, once per process); the prepared cold row is the "
            f"first update after it. Open plus first round: {fmt_ms(with_open)} ms "
            f"({view['stream_cold'] / with_open:.2f}x talib.stream's first round). The first (warm-up) process, "
            f"which may compile, took {fmt_ms(view['warmup_process_ours_cold'])} ms for its first round of ours.")
    out.table(
        f"User-defined kernels vs the same formula as a built-in, batched {user_case}, medians (ms)",
        ["user kernel", "form", "formula", "vs", "user", "other", "user/other", "same bits",
         "register cold (s)", "register warm (s)"],
        [[r["user"], r["form"], r["formula"], r["builtin"], fmt_ms(r["user_t"]), fmt_ms(r["builtin_t"]),  # type: ignore[arg-type]
          f"{r['user_t'] / r['builtin_t']:.2f}x", "yes" if r["bits_equal"] else "no",  # type: ignore[operator]
          f"{r['register_cold']:.2f}", f"{r['register_warm']:.2f}"] for r in user],
    )
    out.say()
    out.say("Registration in a fresh process after numba's set-up: cold with an empty NUMBA_CACHE_DIR (compiles "
            "the kernel), warm in a second process (numba's disk cache). The window mean adds `window` values per "
            "bar, sma_20's running sum two: that row (not gated) compares algorithms, not the engine; the gated "
            "row compares it with the same formula written as a batched numba kernel. The recursive running sum "
            "(not gated) keeps its total and ring slot in the float state and finds the slot as `n % (period - 1)`, "
            "an integer division per bar; sma_20 keeps both in registers.")
    kt: dict[str, float] = first["kinds"]  # type: ignore[assignment]
    out.table(
        "First use of one kernel in a fresh process, empty NUMBA_CACHE_DIR (s; includes importing numba)",
        ["spec", "first use"],
        [[k, f"{v:.2f}"] for k, v in kt.items()],
    )
    out.say()
    out.say(f"`import featurestore` in a fresh process: {first['import']:.3f} s (median of "
            f"{len(first['import_all'])}); numba imported by it: {'yes' if first['numba_on_import'] else 'no'}.")  # type: ignore[arg-type]
    out.record("kinds", kinds)
    out.record("view", view)
    out.record("user", user)
    out.record("first_use", first)
    for r in kinds:
        rel = r["ours"] / r["other"]  # type: ignore[operator]
        if r["vs"] == "TA-Lib":
            out.check(f"{r['spec']}, batched {n_kinds}: ours / TA-Lib per-symbol calls", rel, "<= 1.00x", rel <= 1.0)
    view_case = f"{view['n_outputs']:.0f}-output view, one new bar x {n_view:,} symbols: talib.stream / ours"
    for label, key in (("cold: first update after prepare_update", "cold"), ("warm", "warm")):
        r = ratio("", key)
        out.check(f"{view_case} ({label})", r, ">= 30x", r >= 30.0)
    r = view["stream_cold"] / with_open
    out.check(f"{view_case} (cold including prepare_update, i.e. loading the kernels)", r, ">= 30x", r >= 30.0)
    for label, key in (("cold", "cold"), ("warm", "warm")):
        r = ratio("per_spec_", key)
        out.check(f"{view_case} (update_batch_inplace per spec, {label})", r, ">= 30x", r >= 30.0)
    for r in user:
        if not r["gated"]:
            continue
        rel = r["user_t"] / r["builtin_t"]  # type: ignore[operator]
        out.check(f"user {r['form']} {r['user']} / {r['builtin']}, batched {user_case}", rel, "<= 1.50x", rel <= 1.5)
    for r in {str(r["user"]): r for r in user}.values():  # once per kernel
        cold = float(r["register_cold"])  # type: ignore[arg-type]
        out.check(f"registering {r['user']}, empty numba cache, fresh process", cold, "< 2 s", cold < 2.0, unit="s")
    for k, v in kt.items():
        out.check(f"first use of {k}, empty numba cache, fresh process", v, "< 2 s", v < 2.0, unit="s")
    imp = float(first["import"])  # type: ignore[arg-type]
    out.check("import featurestore, fresh process", imp, "< 1 s", imp < 1.0 and not first["numba_on_import"], unit="s",
              note="numba imported" if first["numba_on_import"] else "numba not imported")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    ap.add_argument("--markdown", action="store_true", help="accepted for compatibility: output is always Markdown")
    ap.add_argument("--view-child", default=None, help=argparse.SUPPRESS)  # internal: the view's fresh process
    add_arguments(ap)
    args = ap.parse_args()
    if args.view_child:
        view_child(args.view_child)
        return
    out = Results("indicators", "Indicator engine vs TA-Lib, pandas, talib.stream and talipp", quick=args.quick,
                  results_dir=args.results_dir, extra_packages=("talipp",))

    comp = bench_compile()
    warmup()
    if args.quick:
        full = bench_full(1, 100_000, 5, 2) + bench_full(200, 2_500, 5, 1)
        n_upd = 200
        upd = bench_update(n_upd, 500, 100, 20)
    else:
        full = bench_full(1, 1_000_000, 9, 3) + bench_full(2_000, 2_500, 9, 2)
        n_upd = 2_000
        upd = bench_update(n_upd, 2_500, 300, 51)
    out.setting("sizes", "1 x 100,000 and 200 x 2,500 bars, 200 symbols for updates" if args.quick
                else "1 x 1,000,000 and 2,000 x 2,500 bars, 2,000 symbols for updates")
    n_kinds, user_n = (100, 200) if args.quick else (2_000, 2_000)
    kinds = bench_kinds(n_kinds, 2_500, 3 if args.quick else 7)
    n_view = 2_000
    view = bench_view(n_view, 300 if args.quick else 500, 12 if args.quick else 40)
    user = bench_user(user_n, 2_500, 5 if args.quick else 9)
    first = bench_first_use(3)
    out.setting("sizes, other kinds and user kernels", f"{n_kinds:,} x 2,500 and {user_n:,} x 2,500 bars; "
                f"the view: {n_view:,} symbols")
    render(full, upd, comp, n_upd, out)
    render_extra(kinds, f"{n_kinds:,} x 2,500", view, n_view, user, f"{user_n:,} x 2,500", first, out)
    out.checks_table()
    out.write()


if __name__ == "__main__":
    main()
