"""float32 feature views: what ``create_view(..., dtype="float32")`` saves on disk and costs in precision.

Data: a seeded random walk of N symbols x 2,000 minute bars (valid OHLCV), 200 symbols (400k
rows) by default, 50 with ``--quick``. One fresh store on a temporary embedded PostgreSQL server
gets two views of the seven seed indicators (sma_20, ema_50, rsi_14, macd_12_26_9, bbands_20_2,
atr_14, adx_14; 11 feature columns): ``f64`` (float8 columns, the default) and ``f32``
(``dtype="float32"``, real columns), registered before one ``ingest`` of every bar, so both
tables hold the same rows computed from the same float64 kernel outputs.

Measured, after ``VACUUM (ANALYZE)`` of both tables:

- bytes per row of each view table: heap (``pg_table_size``), indexes (``pg_indexes_size``,
  the (entity_id, ts) primary key) and their sum, divided by the row count; plus the average
  tuple size (``pg_column_size`` of the row);
- precision: every value of ``f32`` read back (``get_features``) against the same value of
  ``f64``: max relative error |f32 - f64| / |f64| over finite nonzero values (per column and
  overall; rounding to nearest float32 bounds it by 2**-24 ~ 5.96e-8), max absolute error, and
  that NaN positions agree;
- the in-memory size of the full read of each view (pandas ``memory_usage(deep=True)``).

    python benchmarks/float32_size.py [--quick] [--symbols N] [--bars N] [--results-dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _results import Results, add_arguments  # noqa: E402

SEED_VIEW = ["sma_20", "ema_50", "rsi_14", "macd_12_26_9", "bbands_20_2", "atr_14", "adx_14"]
REL_BOUND = 2.0**-24  # round to nearest float32: |x - fl32(x)| <= 2**-24 |x| in float32's normal range


def make_bars(n_symbols: int, n_bars: int, seed: int = 14) -> pd.DataFrame:
    """Seeded minute bars: a log-normal walk per symbol, OHLC consistent, integer volumes."""
    rng = np.random.default_rng(seed)
    start = 100.0 * np.exp(rng.normal(0, 0.5, (n_symbols, 1)))
    close = start * np.exp(np.cumsum(rng.normal(0, 0.001, (n_symbols, n_bars)), axis=1))
    open_ = np.concatenate([start, close[:, :-1]], axis=1)
    wig = np.abs(rng.normal(0, 0.0005, (2, n_symbols, n_bars)))
    high = np.maximum(open_, close) * (1 + wig[0])
    low = np.minimum(open_, close) * (1 - wig[1])
    ts = pd.date_range("2024-01-02 14:30", periods=n_bars, freq="min", tz="UTC")
    return pd.DataFrame({
        "symbol": np.repeat([f"S{i:04d}" for i in range(n_symbols)], n_bars),
        "ts": np.tile(ts, n_symbols),
        "open": open_.ravel(), "high": high.ravel(), "low": low.ravel(), "close": close.ravel(),
        "volume": rng.integers(100, 100_000, n_symbols * n_bars).astype(np.float64),
    })


def table_sizes(store: Any, table: str) -> dict[str, float]:
    """Rows, heap and index bytes of ``table`` (after VACUUM) and its average tuple size."""
    from psycopg import sql

    def run(conn: Any) -> tuple[Any, ...]:
        t = sql.Identifier(table)
        rows = conn.execute(sql.SQL("SELECT count(*), avg(pg_column_size(x.*)) FROM {} x").format(t)).fetchone()
        sizes = conn.execute(
            "SELECT pg_table_size(c.oid), pg_indexes_size(c.oid), pg_total_relation_size(c.oid) "
            "FROM pg_class c WHERE c.relname = %s AND c.relkind = 'r'", (table,)
        ).fetchone()
        return (*rows, *sizes)

    n, tuple_avg, heap, index, total = store.db.run(run)
    return {"rows": int(n), "tuple_avg": float(tuple_avg), "heap": int(heap), "index": int(index), "total": int(total)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="50 symbols x 2,000 minute bars")
    ap.add_argument("--markdown", action="store_true", help="accepted for compatibility: output is always Markdown")
    ap.add_argument("--symbols", type=int, help="override the symbol count")
    ap.add_argument("--bars", type=int, help="override the bars per symbol")
    add_arguments(ap)
    args = ap.parse_args()
    n_symbols = args.symbols or (50 if args.quick else 200)
    n_bars = args.bars or 2_000

    from featurestore.client import FeatureStore
    from featurestore.embedded import EmbeddedServer

    out = Results("float32_size", "float32 feature views: bytes per row and precision vs float64",
                  quick=args.quick, results_dir=args.results_dir)
    out.setting("data", f"{n_symbols:,} symbols x {n_bars:,} minute bars ({n_symbols * n_bars:,} rows); two views of "
                f"the seven seed indicators ({', '.join(SEED_VIEW)}; 11 columns), float64 and float32, one ingest")
    tmp = Path(tempfile.mkdtemp(prefix="fs-bench-f32-"))
    server = EmbeddedServer(tmp / "home", cleanup="keep")
    try:
        admin = server.start()
        import psycopg

        from featurestore.config import libpq_url

        with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
            conn.execute("CREATE DATABASE fs_bench_f32")
            out.setting("server", conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        bars = make_bars(n_symbols, n_bars)
        with FeatureStore(admin.set(database="fs_bench_f32"), auto_migrate=True, cache=None) as store:
            v64 = store.create_view("f64", SEED_VIEW)
            v32 = store.create_view("f32", SEED_VIEW, dtype="float32")
            t0 = time.perf_counter()
            res = store.ingest(bars, progress=False)
            ingest_s = time.perf_counter() - t0
            out.setting("ingest", f"{res.inserted:,} bars and {res.features_written:,} feature rows (both views) "
                        f"in {ingest_s:.1f} s")
            from psycopg import sql

            tables = sql.SQL(", ").join(sql.Identifier(t) for t in (v64.table_name, v32.table_name, "bars"))
            store.db.run(lambda c: c.execute(sql.SQL("VACUUM (ANALYZE) {}").format(tables)))
            sizes = {"float64": table_sizes(store, v64.table_name), "float32": table_sizes(store, v32.table_name),
                     "bars": table_sizes(store, "bars")}
            out.record("sizes", sizes)
            symbols = sorted(bars["symbol"].unique())
            f64 = store.get_features(symbols, view="f64")
            f32 = store.get_features(symbols, view="f32")
        assert isinstance(f64, pd.DataFrame) and isinstance(f32, pd.DataFrame)
        rows = []
        for label in ("float64", "float32", "bars"):
            s = sizes[label]
            n = max(s["rows"], 1)
            name = {"float64": "view f64 (float8)", "float32": "view f32 (real)", "bars": "bars (for reference)"}[label]
            rows.append([name, f"{s['rows']:,}", f"{s['heap'] / n:.1f}", f"{s['index'] / n:.1f}", f"{s['total'] / n:.1f}",
                         f"{s['tuple_avg']:.1f}", f"{s['total'] / 2**20:.1f}"])
        out.table("Bytes per row after VACUUM", ["table", "rows", "heap B/row", "index B/row", "table + indexes B/row",
                                                 "avg tuple B (pg_column_size)", "total MiB"], rows)
        b64 = sizes["float64"]["total"] / max(sizes["float64"]["rows"], 1)
        b32 = sizes["float32"]["total"] / max(sizes["float32"]["rows"], 1)
        out.say()
        out.say(f"float32 saves {b64 - b32:.1f} B per row ({1 - b32 / b64:.1%} of table + indexes): "
                f"{b32 / b64:.3f}x the float64 view's bytes.")
        # -- precision ----------------------------------------------------------------------
        assert f64.index.equals(f32.index) and list(f64.columns) == list(f32.columns)
        prec = []
        worst_rel, worst_abs, nan_ok = 0.0, 0.0, True
        for c in f64.columns:
            a = f64[c].to_numpy(dtype=np.float64)
            b = f32[c].to_numpy()
            assert b.dtype == np.float32, (c, b.dtype)
            nan_ok &= bool(np.array_equal(np.isnan(a), np.isnan(b)))
            ok = np.isfinite(a) & (a != 0)
            rel = np.abs(b[ok].astype(np.float64) - a[ok]) / np.abs(a[ok])
            absd = np.abs(b[np.isfinite(a)].astype(np.float64) - a[np.isfinite(a)])
            exact = bool(np.array_equal(b, a.astype(np.float32), equal_nan=True))
            r, m = float(rel.max(initial=0.0)), float(absd.max(initial=0.0))
            worst_rel, worst_abs = max(worst_rel, r), max(worst_abs, m)
            prec.append([c, f"{int(np.isfinite(a).sum()):,}", f"{r:.3g}", f"{float(np.median(rel)) if rel.size else 0:.3g}",
                         f"{m:.3g}", f"{float(np.nanmax(np.abs(a))):.4g}", "yes" if exact else "NO"])
        out.table("Precision of the float32 view vs the float64 view", [
            "column", "finite values", "max relative error", "median relative error", "max absolute error",
            "max |value|", "== np.float32(float64 value)"], prec)
        out.record("max_relative_error", worst_rel)
        out.record("max_absolute_error", worst_abs)
        mem64 = int(f64.memory_usage(deep=True).sum())
        mem32 = int(f32.memory_usage(deep=True).sum())
        out.say()
        out.say(f"A full read in memory: {mem64 / 2**20:.1f} MiB (float64 view) vs {mem32 / 2**20:.1f} MiB (float32 view), "
                f"{mem32 / mem64:.3f}x (the index of symbols and times is the same in both).")
        out.check("float32 view table + indexes bytes per row / float64 view's", b32 / b64, "<= 1.00x", b32 <= b64)
        out.check("float32 view bytes saved per row (report)", b64 - b32, "report", True, unit="B")
        out.say()
        out.say(f"Max relative error of a float32 value against its float64 value: {worst_rel:.4g} "
                f"({worst_rel / REL_BOUND:.4f} of 2**-24 = {REL_BOUND:.4g}); max absolute error {worst_abs:.3g}.")
        out.check("max relative error of float32 vs float64 values, in units of 2**-24 (5.96e-8)",
                  worst_rel / REL_BOUND, "<= 1.00x", worst_rel <= REL_BOUND)
        out.check("NaN positions equal in both views", float(nan_ok), "1 (yes)", nan_ok, unit="")
        out.checks_table()
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    out.write()


if __name__ == "__main__":
    main()
