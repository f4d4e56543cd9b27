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
  compile   first use of every kernel in a fresh process: cold (empty NUMBA_CACHE_DIR) and warm.

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
    return {"close": close, "high": high, "low": low}, offsets


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
    params = [v for _, v in spec.params]
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
        streams = [stream_fn(*(s[k] for k in spec.inputs), *(v for _, v in spec.params)) for s in segs]
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
        "t1 = time.perf_counter(); fi.warmup(); t2 = time.perf_counter(); "
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
        "First use of all 8 kernels in a fresh process (s)",
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
    out.checks_table()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    ap.add_argument("--markdown", action="store_true", help="accepted for compatibility: output is always Markdown")
    add_arguments(ap)
    args = ap.parse_args()
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
    render(full, upd, comp, n_upd, out)
    out.write()


if __name__ == "__main__":
    main()
