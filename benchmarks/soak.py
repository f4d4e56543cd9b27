"""Soak: append, correct and read (cached and uncached) in a loop; check everything at every step.

Each iteration appends one bar to a few symbols, every third one corrects an old bar, then reads
through the result cache and around it. It asserts, at every step:

* cached == uncached, for range reads with bars and features and for latest rows;
* the stored bars equal the test's own model of what was written;
* every fifth step, the features equal TA-Lib over the symbol's full history (bit for bit);

and reports RSS after a warm-up and at the end (the test bounds the growth).
``tests/test_reliability.py::test_soak_append_correct_read`` runs this function for ~20 s; run it
longer here:

    python benchmarks/soak.py --minutes 30 [--url postgresql://...] [--seed N] [--quick] [--results-dir DIR]

Every run writes ``benchmarks/results/soak.{json,md}`` (see ``_results.py``).

Without ``--url`` it starts a temporary embedded server.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers import SEED_VIEW, make_bars, talib_reference  # noqa: E402

try:  # run as a script (benchmarks/ on sys.path); the tests import only soak()
    from _results import Results, add_arguments
except ImportError:  # pragma: no cover
    from benchmarks._results import Results, add_arguments  # type: ignore[no-redef]

from featurestore.client import FeatureStore  # noqa: E402

BAR_COLS = ["open", "high", "low", "close", "volume"]


def _next_bars(symbols: list[str], start: pd.Timestamp, n: int, seed: int) -> dict[str, pd.DataFrame]:
    df = make_bars(symbols, n, start=start.strftime("%Y-%m-%d"), seed=seed)
    return {s: g.reset_index(drop=True) for s, g in df.groupby("symbol")}


def soak(url: Any, *, seconds: float, seed: int = 0, n_symbols: int = 6, log: Any = None) -> dict[str, Any]:
    """Run the loop on an empty database at ``url`` for ``seconds``; return the figures."""
    rng = np.random.default_rng(seed)
    symbols = [f"K{i:02d}" for i in range(n_symbols)]
    proc = psutil.Process()
    with FeatureStore(url, auto_migrate=True, cache="arc", cache_bytes=8 << 20) as fs:
        fs.create_view("tech", SEED_VIEW)
        initial = make_bars(symbols, 150, seed=seed)
        fs.ingest(initial)
        model = {s: g.set_index("ts")[BAR_COLS].copy() for s, g in initial.groupby("symbol")}
        pending = _next_bars(symbols, initial.ts.max().tz_localize(None) + pd.Timedelta(days=1), 2000, seed + 1)
        cursor = {s: 0 for s in symbols}
        counts = {"iterations": 0, "appends": 0, "corrections": 0, "reads": 0, "talib_checks": 0}
        start = time.monotonic()
        warm_at = start + min(5.0, seconds * 0.25)
        rss_warm: int | None = None
        while time.monotonic() - start < seconds:
            i = counts["iterations"]
            # append one bar to a few symbols
            picked = sorted(rng.choice(symbols, size=min(3, n_symbols), replace=False).tolist())
            rows = []
            for s in picked:
                if cursor[s] >= len(pending[s]):  # long runs: continue with a fresh walk
                    last = model[s].index.max().tz_localize(None) + pd.Timedelta(days=1)
                    pending[s] = _next_bars([s], last, 2000, seed + i)[s]
                    cursor[s] = 0
                rows.append(pending[s].iloc[[cursor[s]]])
                cursor[s] += 1
            new = pd.concat(rows, ignore_index=True)
            fs.ingest(new)
            for s, g in new.groupby("symbol"):
                model[s] = pd.concat([model[s], g.set_index("ts")[BAR_COLS]])
            counts["appends"] += len(new)
            # correct an old bar (scale the whole bar: it stays valid)
            if i % 3 == 2:
                s = symbols[int(rng.integers(n_symbols))]
                ts = model[s].index[int(rng.integers(len(model[s]) - 1))]
                factor = 1 + float(rng.uniform(-0.01, 0.01))
                model[s].loc[ts, ["open", "high", "low", "close"]] *= factor
                fix = model[s].loc[[ts]].reset_index().assign(symbol=s)
                fs.ingest(fix[["symbol", "ts", *BAR_COLS]])
                counts["corrections"] += 1
            # read through the cache (twice: a miss, then a hit) and around it
            s = symbols[int(rng.integers(n_symbols))]
            for _ in range(2):
                cached = fs.get_features(s, view="tech", include_bars=True)
            uncached = fs.reader.get_features(s, view="tech", include_bars=True)
            assert cached.equals(uncached), f"iteration {i}: cached != uncached for {s}"
            got = uncached.loc[s][BAR_COLS]
            want = model[s].sort_index()
            assert np.array_equal(got.to_numpy(), want.to_numpy()), f"iteration {i}: stored bars differ from the model for {s}"
            assert list(got.index) == list(want.index)
            latest_c = fs.get_latest(symbols, view="tech")
            latest_u = fs.reader.get_latest(symbols, view="tech")
            assert latest_c.equals(latest_u), f"iteration {i}: cached latest != uncached"
            counts["reads"] += 5
            if i % 5 == 0:
                ref = talib_reference(uncached.loc[s])
                for name, values in ref.items():
                    assert np.array_equal(uncached.loc[s][name].to_numpy(), values, equal_nan=True), (
                        f"iteration {i}: {s} {name} differs from TA-Lib"
                    )
                counts["talib_checks"] += 1
            counts["iterations"] += 1
            if rss_warm is None and time.monotonic() >= warm_at:
                gc.collect()
                rss_warm = proc.memory_info().rss
            if log is not None and i % 100 == 0:
                log(f"{time.monotonic() - start:7.1f} s  iteration {i}  rss {proc.memory_info().rss / 2**20:.0f} MiB")
        gc.collect()
        rss_end = proc.memory_info().rss
        cache = fs.cache_stats() or {}
    rss_warm = rss_warm if rss_warm is not None else rss_end
    return {
        **counts,
        "seconds": round(time.monotonic() - start, 1),
        "rss_warm_bytes": rss_warm,
        "rss_end_bytes": rss_end,
        "rss_growth_bytes": rss_end - rss_warm,
        "cache_hits": cache.get("hits"),
        "cache_misses": cache.get("misses"),
        "cache_bytes": cache.get("bytes"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="half a minute")
    ap.add_argument("--markdown", action="store_true", help="accepted for compatibility: output is always Markdown")
    ap.add_argument("--minutes", type=float, default=None, help="default 5 (quick 0.5)")
    ap.add_argument("--url", help="an empty PostgreSQL database (default: a temporary embedded server)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--symbols", type=int, default=6)
    add_arguments(ap)
    args = ap.parse_args()
    args.minutes = args.minutes or (0.5 if args.quick else 5.0)
    out = Results("soak", "Soak: append, correct and read in a loop, checked at every step", quick=args.quick,
                  results_dir=args.results_dir)
    out.setting("run", f"{args.minutes:g} minutes, {args.symbols} symbols, seed {args.seed}")
    if args.url:
        report = soak(args.url, seconds=args.minutes * 60, seed=args.seed, n_symbols=args.symbols, log=print)
    else:
        from featurestore.embedded import EmbeddedServer

        with tempfile.TemporaryDirectory(prefix="fs-soak-") as home:
            srv = EmbeddedServer(Path(home), cleanup="keep")
            url = srv.start()
            try:
                report = soak(url, seconds=args.minutes * 60, seed=args.seed, n_symbols=args.symbols, log=print)
            finally:
                srv.stop()
    out.record("report", report)
    out.table("Soak report", ["figure", "value"], [[k, json.dumps(v, default=str)] for k, v in report.items()])
    out.say()
    out.say(f"RSS growth after warm-up: {report['rss_growth_bytes'] / 2**20:.1f} MiB over {report['seconds']} s")
    out.write()


if __name__ == "__main__":
    main()
