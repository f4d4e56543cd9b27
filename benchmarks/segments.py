"""Compressed history segments, measured before they are built: bytes per bar row and read speed.

Issue 14 asks for history older than a horizon to be stored as per-symbol compressed segments
(arrays over blocks of time, the way TimescaleDB compresses chunks and ArcticDB stores data) so
that full-history reads and storage approach ArcticDB's. This script measures the candidate
layouts on the same bars, in one run, on the embedded server:

- ``rows``: the store's bars table as today (``ingest``; ``get_bars``: ADBC -> Arrow -> pandas);
- ``segments (Parquet blob)``: one row per (symbol, block of ``--block`` bars) holding a Parquet
  file (zstd; BYTE_STREAM_SPLIT floats; delta-encoded timestamps) in a ``bytea`` with
  ``STORAGE EXTERNAL`` (PostgreSQL does not compress it again); a read fetches the blobs of the
  symbols' blocks that overlap the range (binary protocol) and decodes them with pyarrow;
- ``segments (pglz TOAST)``: one row per block with each column's raw little-endian array,
  byte-shuffled, in a ``bytea`` column compressed by PostgreSQL itself (``COMPRESSION pglz``);
  the layout SQL could unpack later; a read un-shuffles in numpy;
- ArcticDB 6.28.2 (LMDB, its own virtual environment, see scale.py) on the same bars:
  ``read_batch``.

Data: scale.py's seeded minute-bar market. Reads: 100 symbols' whole history, and 100 symbols
over the middle 10% of the span (a segment layout reads whole blocks, then cuts), median of 3;
every layout's result is compared with the rows layout's, value for value.

    python benchmarks/segments.py [--quick] [--symbols 200] [--bars 25000] [--block 10000] [--no-arcticdb]
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
COLS = ("open", "high", "low", "close", "volume")


def median_time(fn: Any, repeats: int = 3) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def shuffle(a: np.ndarray) -> bytes:
    """Byte-shuffle: all first bytes, then all second bytes... (what compresses floats well)."""
    return np.ascontiguousarray(a.view(np.uint8).reshape(-1, a.itemsize).T).tobytes()


def unshuffle(b: bytes, dtype: Any, n: int) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    return np.ascontiguousarray(np.frombuffer(b, dtype=np.uint8).reshape(size, n).T).view(dtype).ravel()


def parquet_blob(ts: np.ndarray, cols: dict[str, np.ndarray]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"ts": pa.array(ts, type=pa.int64()), **{c: pa.array(v) for c, v in cols.items()}})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", use_dictionary=False,
                   column_encoding={"ts": "DELTA_BINARY_PACKED", **{c: "BYTE_STREAM_SPLIT" for c in cols}})
    return sink.getvalue()


class Bench:
    def __init__(self, args: Any, res: Any) -> None:
        from scale import Market

        import featurestore as fs

        self.args, self.res = args, res
        self.work = Path(tempfile.mkdtemp(prefix="fs-seg-"))
        self.store = fs.FeatureStore(home=self.work / "home", cache=None)
        self.market = Market(args.symbols, args.symbols * args.bars, seed=args.seed)

    def sql(self, text: str, params: Any = None) -> list[tuple[Any, ...]]:
        return self.store.db.run(lambda c: c.execute(text, params).fetchall())

    def do(self, *statements: str) -> None:
        """Statements outside a transaction (VACUUM), on an autocommit connection of the pool."""
        with self.store.db.engine.connect() as sa:
            raw = sa.connection.driver_connection
            raw.autocommit = True  # type: ignore[union-attr]
            for text in statements:
                raw.execute(text)  # type: ignore[union-attr]

    def load(self) -> dict[str, np.ndarray]:
        """The same bars into every layout; returns them (symbol-major, time-ordered)."""
        from scale import frame, write_parquet

        parts = []
        pq_dir = self.work / "parquet"
        pq_dir.mkdir()
        k = 0
        while self.market.rows < self.args.symbols * self.args.bars:
            block = self.market.block(max(1, 2_000_000 // self.args.symbols),
                                      max_rows=self.args.symbols * self.args.bars - self.market.rows)
            self.store.ingest(frame(block), progress=False)
            write_parquet(block, pq_dir / f"part-{k:04d}.parquet")
            parts.append(block)
            k += 1
        allb = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
        order = np.lexsort((allb["ts"], allb["symbol"]))
        allb = {c: v[order] for c, v in allb.items()}
        self.do("VACUUM (ANALYZE) bars")
        ids = dict(self.sql("SELECT symbol, entity_id FROM entities"))
        eid = np.array([ids[s] for s in allb["symbol"]], dtype=np.int32)
        allb["entity_id"] = eid
        return allb

    def build_segments(self, b: dict[str, np.ndarray]) -> None:
        block = self.args.block
        self.do("CREATE TABLE seg_pq (entity_id int4, ts_lo int8, ts_hi int8, n int4, blob bytea, "
                 "PRIMARY KEY (entity_id, ts_lo))")
        self.do("ALTER TABLE seg_pq ALTER COLUMN blob SET STORAGE EXTERNAL")
        self.do("CREATE TABLE seg_toast (entity_id int4, ts_lo int8, ts_hi int8, n int4, ts bytea, "
                 + ", ".join(f"{c} bytea COMPRESSION pglz" for c in COLS) + ", PRIMARY KEY (entity_id, ts_lo))")
        starts = np.flatnonzero(np.r_[True, b["entity_id"][1:] != b["entity_id"][:-1]])
        ends = np.r_[starts[1:], b["entity_id"].size]
        rows_pq, rows_toast = [], []
        for s0, e0 in zip(starts.tolist(), ends.tolist()):
            for lo in range(s0, e0, block):
                hi = min(lo + block, e0)
                ts = b["ts"][lo:hi]
                cols = {c: np.ascontiguousarray(b[c][lo:hi]) for c in COLS}
                key = (int(b["entity_id"][lo]), int(ts[0]), int(ts[-1]), hi - lo)
                rows_pq.append((*key, parquet_blob(ts, cols)))
                # timestamps as deltas from the block's first (small integers: shuffle + pglz squeeze them)
                rows_toast.append((*key, shuffle(np.diff(ts, prepend=ts[0])), *(shuffle(cols[c]) for c in COLS)))

        def insert(conn: Any) -> None:
            with conn.cursor() as cur:
                with cur.copy("COPY seg_pq FROM STDIN") as cp:
                    for r in rows_pq:
                        cp.write_row(r)
                with cur.copy("COPY seg_toast FROM STDIN") as cp:
                    for r in rows_toast:
                        cp.write_row(r)

        self.store.db.run(insert)
        self.do("VACUUM (ANALYZE) seg_pq", "VACUUM (ANALYZE) seg_toast")

    def sizes(self) -> dict[str, int]:
        return {name: int(self.sql("SELECT pg_total_relation_size(%s::regclass)", (name,))[0][0])
                for name in ("bars", "seg_pq", "seg_toast")}

    def read_pq(self, ids: list[int], lo: int, hi: int) -> dict[str, np.ndarray]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = self.store.db.run(lambda c: c.execute(
            "SELECT entity_id, blob FROM seg_pq WHERE entity_id = ANY(%s) AND ts_hi >= %s AND ts_lo <= %s "
            "ORDER BY entity_id, ts_lo", (ids, lo, hi), binary=True).fetchall())
        tables = [pq.read_table(pa.BufferReader(r[1])) for r in rows]
        eid = np.repeat(np.array([r[0] for r in rows], dtype=np.int32), [t.num_rows for t in tables])
        t = pa.concat_tables(tables)
        out = {"entity_id": eid, "ts": t.column("ts").to_numpy(), **{c: t.column(c).to_numpy() for c in COLS}}
        keep = (out["ts"] >= lo) & (out["ts"] <= hi)
        return {k: v[keep] for k, v in out.items()}

    def read_toast(self, ids: list[int], lo: int, hi: int) -> dict[str, np.ndarray]:
        rows = self.store.db.run(lambda c: c.execute(
            "SELECT entity_id, ts_lo, n, ts, " + ", ".join(COLS) + " FROM seg_toast WHERE entity_id = ANY(%s) "
            "AND ts_hi >= %s AND ts_lo <= %s ORDER BY entity_id, ts_lo", (ids, lo, hi), binary=True).fetchall())
        n = np.array([r[2] for r in rows], dtype=np.int64)
        eid = np.repeat(np.array([r[0] for r in rows], dtype=np.int32), n)
        ts = np.concatenate([r[1] + np.cumsum(unshuffle(r[3], np.int64, r[2])) for r in rows])
        out = {"entity_id": eid, "ts": ts}
        for k, c in enumerate(COLS):
            out[c] = np.concatenate([unshuffle(r[4 + k], np.float64, r[2]) for r in rows])
        keep = (out["ts"] >= lo) & (out["ts"] <= hi)
        return {k: v[keep] for k, v in out.items()}

    def read_rows(self, syms: list[str], lo: int, hi: int) -> dict[str, np.ndarray]:
        import pandas as pd

        df = self.store.get_bars(syms, pd.Timestamp(lo, unit="us", tz="UTC"), pd.Timestamp(hi, unit="us", tz="UTC"))
        df = df.reset_index()
        ids = dict(self.sql("SELECT symbol, entity_id FROM entities"))
        return {"entity_id": df["symbol"].map(ids).to_numpy(np.int32),
                "ts": (df["ts"].astype("int64") // (1 if df["ts"].dt.unit == "us" else 1000)).to_numpy(),
                **{c: df[c].to_numpy() for c in COLS}}


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray], what: str) -> None:
    oa, ob = np.lexsort((a["ts"], a["entity_id"])), np.lexsort((b["ts"], b["entity_id"]))
    a, b = {k: v[oa] for k, v in a.items()}, {k: v[ob] for k, v in b.items()}
    for k in ("entity_id", "ts", *COLS):
        if not np.array_equal(a[k], b[k]):
            raise AssertionError(f"{what}: column {k} differs from the rows layout")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="50 symbols x 10,000 bars")
    ap.add_argument("--symbols", type=int)
    ap.add_argument("--bars", type=int)
    ap.add_argument("--block", type=int, default=10_000, help="bars per segment")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-arcticdb", action="store_true")
    ap.add_argument("--markdown", action="store_true", help="(output is always Markdown)")
    sys.path.insert(0, str(HERE))
    from _results import Results, add_arguments

    add_arguments(ap)
    args = ap.parse_args()
    args.symbols = args.symbols or (50 if args.quick else 200)
    args.bars = args.bars or (10_000 if args.quick else 25_000)
    res = Results("segments", "Compressed history segments vs rows vs ArcticDB: bytes and read speed",
                  quick=args.quick, results_dir=args.results_dir, extra_packages=("arcticdb",))
    res.setting("data", f"{args.symbols:,} symbols x ~{args.bars:,} one-minute bars (scale.py's market, seed {args.seed}); "
                f"{args.block:,} bars per segment")
    bench = Bench(args, res)
    arctic = None
    try:
        from scale import Arctic, arctic_python

        res.setting("PostgreSQL", bench.sql("SHOW server_version")[0][0] + " (embedded)")
        bars = bench.load()
        n = bars["ts"].size
        bench.build_segments(bars)
        size = bench.sizes()
        if not args.no_arcticdb:
            arctic = Arctic(arctic_python(None), bench.work / "arctic")
            res.setting("arcticdb", arctic.info)
            arctic_bytes = arctic("append", dir=str(bench.work / "parquet"))["bytes"]
        syms = sorted(np.random.default_rng(3).choice(bench.market.symbols, min(100, args.symbols), replace=False).tolist())
        ids_of = dict(bench.sql("SELECT symbol, entity_id FROM entities"))
        ids = sorted(ids_of[s] for s in syms)
        t_lo, t_hi = int(bars["ts"].min()), int(bars["ts"].max())
        q45, q55 = (int(q) for q in np.quantile(bars["ts"], [0.45, 0.55]))  # in trading time, not calendar
        cases = {"whole history": (t_lo, t_hi), "middle 10% of the span": (q45, q55)}
        rows = []
        speed: dict[str, dict[str, float]] = {}
        for case, (lo, hi) in cases.items():
            for fn in (bench.read_rows, bench.read_pq, bench.read_toast):
                fn(syms if fn == bench.read_rows else ids, lo, hi)  # warm
            s_rows, want = median_time(lambda: bench.read_rows(syms, lo, hi))
            s_pq, got_pq = median_time(lambda: bench.read_pq(ids, lo, hi))
            s_toast, got_toast = median_time(lambda: bench.read_toast(ids, lo, hi))
            same(want, got_pq, f"Parquet segments, {case}")
            same(want, got_toast, f"pglz TOAST segments, {case}")
            k = want["ts"].size
            speed[case] = {"rows": k / s_rows, "pq": k / s_pq, "toast": k / s_toast}
            line = [case, f"{k:,}", f"{k / s_rows:,.0f}", f"{k / s_pq:,.0f}", f"{k / s_toast:,.0f}"]
            if arctic is not None and case == "whole history":
                a = arctic("read", symbols=syms, repeats=3)
                speed[case]["arctic"] = a["rows"] / a["seconds"]
                line.append(f"{a['rows'] / a['seconds']:,.0f}")
            elif arctic is not None:
                line.append("-")
            rows.append(line)
        head = ["read, 100 symbols", "rows", "rows layout (get_bars), rows/s", "Parquet segments, rows/s", "pglz TOAST segments, rows/s"]
        if arctic is not None:
            head.append("ArcticDB read_batch, rows/s")
        res.table("Read speed (median of 3; every layout's rows equal the rows layout's)", head, rows)
        srows = [["rows layout: bars table + indexes + TOAST", f"{size['bars'] / n:.1f}"],
                 ["segments, Parquet blob (zstd, byte-stream-split)", f"{size['seg_pq'] / n:.1f}"],
                 ["segments, byte-shuffled columns, pglz TOAST", f"{size['seg_toast'] / n:.1f}"]]
        if arctic is not None:
            srows.append(["ArcticDB (LMDB, allocated)", f"{arctic_bytes / n:.1f}"])
        res.table(f"Bytes per bar row ({n:,} rows)", ["layout", "bytes per row"], srows)
        res.record("sizes", {**size, "rows": n, **({"arctic": arctic_bytes} if arctic is not None else {})})
        res.record("speed", speed)
        best = min(size["seg_pq"], size["seg_toast"])
        res.check("bytes per row, best segment layout / rows layout", best / size["bars"], "report", True)
        if arctic is not None:
            r = best / arctic_bytes
            res.check("bytes per row, best segment layout / ArcticDB", r, "<= 1.5x", r <= 1.5)
            whole = speed["whole history"]
            r = whole["arctic"] / max(whole["pq"], whole["toast"])
            res.check("whole-history read time, best segment layout / ArcticDB read_batch", r, "<= 1.0x", r <= 1.0)
        res.checks_table()
        res.write()
    finally:
        if arctic is not None:
            arctic.close()
        bench.store.close()
        shutil.rmtree(bench.work, ignore_errors=True)


if __name__ == "__main__":
    main()
