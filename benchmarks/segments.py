"""History segments (``FeatureStore.compress_history``) vs rows vs ArcticDB: bytes and read speed.

Issue 14 asks that history older than a horizon take at most 1.5x ArcticDB's bytes per bar row
and read in full at least as fast as ArcticDB's ``read_batch``. This script measures the store's
own history segments (featurestore.segments) against its rows layout and ArcticDB, on the same
bars, in one run, on the embedded server:

- ``rows``: bars and the seven-indicator view as loaded (``ingest``, ``create_view``), read with
  ``get_bars`` / ``get_features`` (ADBC -> Arrow -> pandas);
- ``segments``: the same store after ``compress_history`` moved every row into segments, read
  with the same calls (every result is checked equal to the rows layout's, frame for frame);
- ArcticDB 6.28.2 (LMDB, its own virtual environment, see scale.py) on the same bars (appended
  from the same Parquet files) and the same feature frame: ``read_batch``.

Data: scale.py's seeded minute-bar market. Reads: 100 symbols' whole history (bars, and the 11
feature columns of the view), and 100 symbols over the middle 10% of the span; median of 3.

    python benchmarks/segments.py [--quick] [--symbols 200] [--bars 25000] [--no-arcticdb]
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def median_time(fn: Any, repeats: int = 3) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="50 symbols x 10,000 bars")
    ap.add_argument("--symbols", type=int)
    ap.add_argument("--bars", type=int)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-arcticdb", action="store_true")
    ap.add_argument("--markdown", action="store_true", help="(output is always Markdown)")
    sys.path.insert(0, str(HERE))
    from _results import Results, add_arguments

    add_arguments(ap)
    args = ap.parse_args()
    args.symbols = args.symbols or (50 if args.quick else 200)
    args.bars = args.bars or (10_000 if args.quick else 25_000)
    res = Results("segments", "History segments vs rows vs ArcticDB: bytes and read speed",
                  quick=args.quick, results_dir=args.results_dir, extra_packages=("arcticdb",))
    res.setting("data", f"{args.symbols:,} symbols x ~{args.bars:,} one-minute bars (scale.py's market, "
                f"seed {args.seed}); the seven-indicator view (11 feature columns)")

    import pandas as pd
    from scale import SEED_VIEW, Arctic, Market, arctic_python, frame, write_parquet

    import featurestore as fs
    from featurestore.segments import SEGMENT_ROWS

    work = Path(tempfile.mkdtemp(prefix="fs-seg-"))
    store = fs.FeatureStore(home=work / "home", cache=None)
    arctic = None

    def sql(text: str) -> list[tuple[Any, ...]]:
        return store.db.run(lambda c: c.execute(text).fetchall())

    def vacuum(*tables: str) -> None:
        with store.db.engine.connect() as sa:
            raw = sa.connection.driver_connection
            raw.autocommit = True  # type: ignore[union-attr]
            for t in tables:
                raw.execute(f"VACUUM (ANALYZE) {t}")  # type: ignore[union-attr]

    def size(table: str) -> int:
        return int(sql(f"SELECT pg_total_relation_size('{table}')")[0][0])

    try:
        res.setting("PostgreSQL", sql("SHOW server_version")[0][0] + f" (embedded); {SEGMENT_ROWS:,} rows per segment")
        market = Market(args.symbols, args.symbols * args.bars, seed=args.seed)
        pq_dir = work / "parquet"
        pq_dir.mkdir()
        k = 0
        while market.rows < args.symbols * args.bars:
            block = market.block(max(1, 2_000_000 // args.symbols), max_rows=args.symbols * args.bars - market.rows)
            store.ingest(frame(block), progress=False)
            write_parquet(block, pq_dir / f"part-{k:04d}.parquet")
            k += 1
        table = store.create_view("seed", SEED_VIEW, progress=False).table_name
        vacuum("bars", table)
        n = int(sql("SELECT count(*) FROM bars")[0][0])
        listed = market.symbols[market.listed < market.minute]
        syms = sorted(np.random.default_rng(3).choice(listed, min(100, listed.size), replace=False).tolist())
        # the middle 10% of the bars (in trading time, not calendar time)
        q45, q55 = (pd.Timestamp(t) for t in sql(
            "SELECT percentile_disc(0.45) WITHIN GROUP (ORDER BY ts), percentile_disc(0.55) WITHIN GROUP (ORDER BY ts) "
            "FROM bars")[0])
        reads = {
            "bars, whole history": lambda: store.get_bars(syms),
            "bars, middle 10% of the span": lambda: store.get_bars(syms, q45, q55),
            "view (11 features), whole history": lambda: store.get_features(syms, view="seed"),
        }

        def measure() -> dict[str, tuple[float, Any]]:
            out = {}
            for name, fn in reads.items():
                fn()  # warm
                out[name] = median_time(fn)
            return out

        rows_sizes = {"bars": size("bars"), "view": size(table)}
        as_rows = measure()
        t0 = time.perf_counter()
        comp = store.compress_history(before=dt.datetime.now(dt.UTC))
        t_comp = time.perf_counter() - t0
        vacuum("bars", table, "bars_segments", f"{table}_s")
        seg_sizes = {"bars": size("bars_segments"), "view": size(f"{table}_s")}
        as_seg = measure()
        for name in reads:
            pd.testing.assert_frame_equal(as_rows[name][1], as_seg[name][1], check_exact=True)
        res.setting("compress_history", f"{comp.bar_rows:,} bars and {sum(comp.feature_rows.values()):,} feature rows "
                    f"in {t_comp:.1f} s ({comp.bar_rows / t_comp:,.0f} bars/s); {comp.segments:,} bar segments")
        arc: dict[str, float] = {}
        if not args.no_arcticdb:
            arctic = Arctic(arctic_python(None), work / "arctic")
            res.setting("arcticdb", arctic.info)
            arc["bytes"] = arctic("append", dir=str(pq_dir))["bytes"]
            f = work / "features.parquet"
            as_rows["view (11 features), whole history"][1].reset_index().to_parquet(f)
            arctic("write_features", file=str(f))
            a = arctic("read", symbols=syms, repeats=3)
            arc["bars, whole history"] = a["rows"] / a["seconds"]
            a = arctic("read", symbols=syms, repeats=3, features=True)
            arc["view (11 features), whole history"] = a["rows"] / a["seconds"]
        lines, speed = [], {}
        for name in reads:
            k_rows = len(as_rows[name][1])
            r, s = k_rows / as_rows[name][0], k_rows / as_seg[name][0]
            speed[name] = {"rows": r, "segments": s, **({"arctic": arc[name]} if name in arc else {})}
            line = [name, f"{k_rows:,}", f"{r:,.0f}", f"{s:,.0f}", f"{s / r:.1f}x"]
            if arctic is not None:
                line.append(f"{arc[name]:,.0f}" if name in arc else "-")
            lines.append(line)
        head = ["read, 100 symbols", "rows", "rows layout, rows/s", "segments, rows/s", "segments / rows"]
        if arctic is not None:
            head.append("ArcticDB read_batch, rows/s")
        res.table("Read speed (median of 3; the segments' frames equal the rows layout's)", head, lines)
        srows = [["bars: rows layout (table + indexes + TOAST)", f"{rows_sizes['bars'] / n:.1f}"],
                 ["bars: history segments", f"{seg_sizes['bars'] / n:.1f}"],
                 ["view (11 features): rows layout", f"{rows_sizes['view'] / n:.1f}"],
                 ["view (11 features): history segments", f"{seg_sizes['view'] / n:.1f}"]]
        if arctic is not None:
            srows.append(["bars: ArcticDB (LMDB, allocated)", f"{arc['bytes'] / n:.1f}"])
        res.table(f"Bytes per bar row ({n:,} rows)", ["layout", "bytes per row"], srows)
        res.record("sizes", {"rows": n, "rows_layout": rows_sizes, "segments": seg_sizes,
                             **({"arctic": arc["bytes"]} if arctic is not None else {})})
        res.record("speed", speed)
        res.check("bars bytes per row, segments / rows layout", seg_sizes["bars"] / rows_sizes["bars"], "report", True)
        if arctic is not None:
            r = seg_sizes["bars"] / arc["bytes"]
            res.check("bars bytes per row, segments / ArcticDB", r, "<= 1.5x", r <= 1.5)
            for name in ("bars, whole history", "view (11 features), whole history"):
                r = speed[name]["arctic"] / speed[name]["segments"]
                res.check(f"{name}: read time, segments / ArcticDB read_batch", r, "<= 1.0x", r <= 1.0)
        res.checks_table()
        res.write()
    finally:
        if arctic is not None:
            arctic.close()
        store.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
