"""Serialization formats for a bars frame, side by side in one run, and the store itself.

Data: ``featurestore.demo.generate_bars`` (GARCH random walk, 0.01 ticks), N symbols x 2,500
business days: 1M and 10M rows (``--quick``: 100k and 250k). Columns symbol (pandas str), ts
(datetime64[us, UTC]), open, high, low, close, volume (float64).

Each contender writes the DataFrame to a file and reads it back into a DataFrame (the store
reads into Arrow, and into pandas as a second line):

  CSV (pandas to_csv / read_csv), CSV (pyarrow write_csv / read_csv -> pandas),
  Parquet (snappy, zstd), Feather (lz4, zstd, uncompressed), HDF5 (pandas fixed format; table
  format with blosc:zstd), Pickle (protocol 5), Joblib (no compression, compress=3),
  JSON lines (orient="records"), and featurestore: ``ingest`` into a fresh database on a
  temporary embedded server, then ``get_bars`` of every symbol (Arrow, then pandas).

Reported per size: write and read seconds (medians of the repeats), in-memory MB/s
(``df.memory_usage(deep=True)`` over the time), size on disk (the store: bars + entities tables
with their indexes), the ratio of that size to the in-memory size, and whether the read-back
values are bit-identical. Writes go to the page cache (no fsync) and reads are warm: these are
the times a user sees on a machine with free memory, not the disk's speed.

Repeats are interleaved (every contender once per round), so drift on shared cores hits them
alike; a contender whose first round took more than SLOW_SECONDS runs once. The slowest text
formats (pandas CSV, JSON, HDF5 table) run only up to 1M rows (100k with --quick): at 10M they
would take minutes each, which says nothing the 1M numbers do not.

Every run writes ``benchmarks/results/serialization.{json,md}`` (see ``_results.py``).

    python benchmarks/serialization.py [--quick] [--repeats N] [--sizes N,N] [--no-store]
                                       [--results-dir DIR]
"""

from __future__ import annotations

import argparse
import gc
import math
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _results import Results, add_arguments

from featurestore.demo import generate_bars

SERIALIZATION_PACKAGES = ("tables", "joblib")

N_DAYS = 2_500
SLOW_SECONDS = 20.0  # write + read of one round; above this a contender runs once


# -- contenders -------------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    ext: str
    write: Callable[[pd.DataFrame, Path], None]
    read: Callable[[Path], Any]
    kind: str  # "text", "columnar", "python", "hdf5", "store"
    slow: bool = False  # limited to the slow-format size cap
    missing: str | None = None  # why it cannot run here


def _csv_pandas_write(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False)


def _csv_pandas_read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, parse_dates=["ts"])


def _csv_arrow_write(df: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    pa_csv.write_csv(pa.Table.from_pandas(df, preserve_index=False), path)


def _csv_arrow_read(path: Path) -> pd.DataFrame:
    import pyarrow.csv as pa_csv

    return pa_csv.read_csv(path).to_pandas()


def _parquet(codec: str) -> tuple[Callable[[pd.DataFrame, Path], None], Callable[[Path], Any]]:
    def write(df: pd.DataFrame, path: Path) -> None:
        df.to_parquet(path, engine="pyarrow", compression=codec, index=False)

    return write, lambda path: pd.read_parquet(path, engine="pyarrow")


def _feather(codec: str) -> tuple[Callable[[pd.DataFrame, Path], None], Callable[[Path], Any]]:
    def write(df: pd.DataFrame, path: Path) -> None:
        df.to_feather(path, compression=codec)

    return write, pd.read_feather


def _hdf_fixed_write(df: pd.DataFrame, path: Path) -> None:
    df.to_hdf(path, key="bars", mode="w")


def _hdf_table_write(df: pd.DataFrame, path: Path) -> None:
    df.to_hdf(path, key="bars", mode="w", format="table", complib="blosc:zstd", complevel=5)


def _hdf_read(path: Path) -> pd.DataFrame:
    return pd.read_hdf(path, "bars")


def _pickle_write(df: pd.DataFrame, path: Path) -> None:
    df.to_pickle(path, protocol=5)


def _joblib(compress: int) -> tuple[Callable[[pd.DataFrame, Path], None], Callable[[Path], Any]]:
    import joblib

    def write(df: pd.DataFrame, path: Path) -> None:
        joblib.dump(df, path, compress=compress)

    return write, joblib.load


def _json_write(df: pd.DataFrame, path: Path) -> None:
    # double_precision=15 is pandas' maximum (default 10): exact for these 2-decimal prices,
    # not for arbitrary float64, which needs 17 significant digits
    df.to_json(path, orient="records", lines=True, date_format="iso", date_unit="us", double_precision=15)


def _json_read(path: Path) -> pd.DataFrame:
    out = pd.read_json(path, orient="records", lines=True, dtype=False)
    out["ts"] = pd.to_datetime(out["ts"], utc=True, format="ISO8601").dt.as_unit("us")
    return out


def contenders() -> list[Contender]:
    out = [
        Contender("CSV (pandas)", ".csv", _csv_pandas_write, _csv_pandas_read, "text", slow=True),
        Contender("CSV (pyarrow)", ".csv", _csv_arrow_write, _csv_arrow_read, "text"),
    ]
    for codec in ("snappy", "zstd"):
        w, r = _parquet(codec)
        out.append(Contender(f"Parquet ({codec})", ".parquet", w, r, "columnar"))
    for codec in ("lz4", "zstd", "uncompressed"):
        w, r = _feather(codec)
        out.append(Contender(f"Feather ({codec})", ".feather", w, r, "columnar"))
    try:
        import tables  # noqa: F401

        missing = None
    except ImportError:
        missing = "skipped: PyTables (`tables`) is not installed"
    out.append(Contender("HDF5 (fixed)", ".h5", _hdf_fixed_write, _hdf_read, "hdf5", missing=missing))
    out.append(
        Contender("HDF5 (table, blosc:zstd 5)", ".h5", _hdf_table_write, _hdf_read, "hdf5", slow=True, missing=missing)
    )
    out.append(Contender("Pickle (protocol 5)", ".pkl", _pickle_write, pd.read_pickle, "python"))
    for compress in (0, 3):
        w, r = _joblib(compress)
        out.append(Contender(f"Joblib (compress={compress})", ".joblib", w, r, "python"))
    out.append(Contender("JSON lines (records)", ".jsonl", _json_write, _json_read, "text", slow=True))
    return out


# -- measurement ------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    kind: str
    rows: int
    writes: list[float] = field(default_factory=list)
    reads: list[float] = field(default_factory=list)
    size: int = 0
    exact: bool | None = None
    note: str = ""
    skipped: str | None = None

    @property
    def write_s(self) -> float:
        return statistics.median(self.writes) if self.writes else float("nan")

    @property
    def read_s(self) -> float:
        return statistics.median(self.reads) if self.reads else float("nan")


def _same(got: Any, df: pd.DataFrame) -> bool:
    """Bit-identical values (and instants) in the same order; dtypes may differ (e.g. str/object)."""
    if hasattr(got, "to_pandas") and not isinstance(got, pd.DataFrame):  # an Arrow table
        cols = {c: got.column(c).to_numpy(zero_copy_only=False) for c in df.columns}
        ts = pd.DatetimeIndex(cols["ts"]).tz_localize("UTC") if cols["ts"].dtype.kind == "M" else cols["ts"]
    else:
        if isinstance(got.index, pd.MultiIndex):
            got = got.reset_index()
        cols = {c: got[c].to_numpy() for c in df.columns if c != "ts"}
        ts = pd.DatetimeIndex(got["ts"])
    if len(ts) != len(df):
        return False
    if not (pd.DatetimeIndex(ts).as_unit("us").asi8 == pd.DatetimeIndex(df["ts"]).as_unit("us").asi8).all():
        return False
    if not (np.asarray(cols["symbol"], dtype=object) == df["symbol"].to_numpy(dtype=object)).all():
        return False
    return all(np.array_equal(np.asarray(cols[c], dtype=float), df[c].to_numpy()) for c in ("open", "high", "low", "close", "volume"))


def measure_files(
    df: pd.DataFrame, tmp: Path, todo: list[Contender], repeats: int, slow_cap: int
) -> list[Result]:
    rows = len(df)
    results = {c.name: Result(c.name, c.kind, rows) for c in todo}
    active = []
    for c in todo:
        if c.missing:
            results[c.name].skipped = c.missing
        elif c.slow and rows > slow_cap:
            results[c.name].skipped = f"skipped above {slow_cap:,} rows (too slow; see the smaller size)"
        else:
            active.append(c)
    for rnd in range(repeats):
        for c in list(active):
            res = results[c.name]
            path = tmp / f"bench-{abs(hash(c.name))}{c.ext}"
            path.unlink(missing_ok=True)
            gc.collect()
            t = time.perf_counter()
            c.write(df, path)
            w = time.perf_counter() - t
            size = path.stat().st_size
            gc.collect()
            t = time.perf_counter()
            back = c.read(path)
            r = time.perf_counter() - t
            if rnd == 0:
                res.exact = _same(back, df)
            del back
            res.writes.append(w)
            res.reads.append(r)
            res.size = size
            path.unlink()
            if w + r > SLOW_SECONDS:
                active.remove(c)  # one round is enough to rank it
            print(f"  {rows:,} {c.name}: write {w:.2f} s, read {r:.2f} s", file=sys.stderr, flush=True)
    for res in results.values():
        if res.writes and len(res.writes) < repeats:
            res.note = f"{len(res.writes)} run(s): > {SLOW_SECONDS:.0f} s per round"
    return list(results.values())


class Server:
    """A temporary embedded server; one fresh database per store measurement."""

    def __init__(self) -> None:
        from featurestore.embedded import EmbeddedServer

        self.home = Path(tempfile.mkdtemp(prefix="fs-bench-ser-"))
        self.server = EmbeddedServer(self.home, cleanup="keep")
        self.url = self.server.start()

    def database(self) -> Any:
        import psycopg

        from featurestore.config import libpq_url

        name = f"ser_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(libpq_url(self.url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.set(database=name), name

    def drop(self, name: str) -> None:
        import psycopg

        from featurestore.config import libpq_url

        with psycopg.connect(libpq_url(self.url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.home, ignore_errors=True)


def measure_store(df: pd.DataFrame, server: Server, repeats: int) -> list[Result]:
    from featurestore.client import FeatureStore

    rows = len(df)
    arrow = Result("featurestore (ingest; get_bars -> Arrow)", "store", rows)
    frame = Result("featurestore (ingest; get_bars -> pandas)", "store", rows)
    symbols = sorted(pd.unique(df["symbol"]).tolist())
    for _ in range(repeats):
        url, name = server.database()
        try:
            with FeatureStore(url, auto_migrate=True, cache=None) as store:
                with store.db.connection() as conn:
                    conn.execute("CHECKPOINT")
                gc.collect()
                t = time.perf_counter()
                store.ingest(df, progress=False)
                w = time.perf_counter() - t
                store.reader.get_bars(symbols[:1])  # open the reader's ADBC connection untimed
                with store.db.connection() as conn:
                    conn.execute("VACUUM ANALYZE bars")  # settle visibility so reads are steady
                    size = conn.execute(
                        "SELECT pg_total_relation_size('bars') + pg_total_relation_size('entities')"
                    ).fetchone()[0]
                for res, as_arrow in ((arrow, True), (frame, False)):
                    gc.collect()
                    t = time.perf_counter()
                    back = store.reader.get_bars(symbols, as_arrow=as_arrow)
                    r = time.perf_counter() - t
                    if res.exact is None:
                        res.exact = _same(back, df)
                    del back
                    res.writes.append(w)
                    res.reads.append(r)
                    res.size = int(size)
        finally:
            server.drop(name)
        print(f"  {rows:,} featurestore: ingest {w:.2f} s, read {arrow.reads[-1]:.2f} / {frame.reads[-1]:.2f} s",
              file=sys.stderr, flush=True)
        if w > SLOW_SECONDS:
            break
    for res in (arrow, frame):
        if len(res.writes) < repeats:
            res.note = f"{len(res.writes)} run(s): > {SLOW_SECONDS:.0f} s per round"
    return [arrow, frame]


# -- report -----------------------------------------------------------------------------------


def _fmt_s(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:.3f}" if x < 1 else (f"{x:.2f}" if x < 100 else f"{x:.0f}")


def _fmt_mb(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 else f"{x:.1f}"


def render_table(results: list[Result], mem: int, markdown: bool) -> str:
    headers = ["format", "write s", "read s", "write MB/s", "read MB/s", "size MB", "size / memory", "exact", "note"]
    body = []
    mb = mem / 1e6
    for r in results:
        if r.skipped:
            body.append([r.name, "-", "-", "-", "-", "-", "-", "-", r.skipped])
            continue
        body.append([
            r.name,
            _fmt_s(r.write_s),
            _fmt_s(r.read_s),
            _fmt_mb(mb / r.write_s),
            _fmt_mb(mb / r.read_s),
            _fmt_mb(r.size / 1e6),
            f"{r.size / mem:.2f}",
            "yes" if r.exact else ("no (15 digits)" if r.name.startswith("JSON") else "NO"),
            r.note,
        ])
    return table(headers, body, markdown, right={1, 2, 3, 4, 5, 6})


def table(headers: list[str], rows: list[list[str]], markdown: bool, right: set[int] = frozenset()) -> str:  # type: ignore[assignment]
    if markdown:
        sep = ["---:" if i in right else "---" for i in range(len(headers))]
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(sep) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    def fmt(row: list[str]) -> str:
        return "  ".join((c.rjust(w) if i in right else c.ljust(w)) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *map(fmt, rows)])


def recommendations(results: list[Result], mem: int) -> list[str]:
    """One recommendation per use case, derived from the measured numbers of one size."""
    ran = [r for r in results if r.writes and not r.skipped]
    files = [r for r in ran if r.kind != "store"]
    exact_files = [r for r in files if r.exact]
    out = []
    if exact_files:
        small = min(exact_files, key=lambda r: r.size)
        runner = sorted(exact_files, key=lambda r: r.size)[1:2]
        extra = f"; next {runner[0].name} at {runner[0].size / mem:.2f}" if runner else ""
        out.append(
            f"**Archive / smallest file**: {small.name}, {small.size / mem:.2f}x the in-memory size "
            f"({small.size / 1e6:,.0f} MB), written in {small.write_s:.2f} s, read in {small.read_s:.2f} s{extra}."
        )
        fast = min(exact_files, key=lambda r: r.write_s + r.read_s)
        out.append(
            f"**Fastest round trip (same Python, scratch files)**: {fast.name}, write {fast.write_s:.2f} s + "
            f"read {fast.read_s:.2f} s = {fast.write_s + fast.read_s:.2f} s "
            f"({mem / 1e6 / (fast.write_s + fast.read_s):,.0f} MB/s round trip), {fast.size / mem:.2f}x memory."
        )
    portable = [r for r in exact_files if r.kind == "columnar"]
    if portable:
        # Parquet is what Spark, DuckDB, Polars, BigQuery and pandas all read; Feather (Arrow IPC)
        # is the faster choice when both sides have Arrow.
        pq_best = min((r for r in portable if r.name.startswith("Parquet")), key=lambda r: r.write_s + r.read_s, default=None)
        fe_best = min((r for r in portable if r.name.startswith("Feather")), key=lambda r: r.write_s + r.read_s, default=None)
        csv = next((r for r in ran if r.name == "CSV (pyarrow)"), None)
        parts = []
        if pq_best:
            parts.append(
                f"**Interchange**: {pq_best.name} (typed, read by Spark / DuckDB / Polars / pandas): round trip "
                f"{pq_best.write_s + pq_best.read_s:.2f} s, {pq_best.size / mem:.2f}x memory"
            )
        if fe_best and pq_best:
            parts.append(
                f"{fe_best.name} round-trips in {fe_best.write_s + fe_best.read_s:.2f} s at {fe_best.size / mem:.2f}x "
                "memory when both sides use Arrow"
            )
        if csv and pq_best:
            parts.append(
                f"CSV (pyarrow) takes {(csv.write_s + csv.read_s) / (pq_best.write_s + pq_best.read_s):.1f}x as long and "
                f"{csv.size / pq_best.size:.1f}x the space, and loses types"
            )
        out.append("; ".join(parts) + ".")
    store = next((r for r in ran if r.kind == "store" and "Arrow" in r.name), None)
    if store:
        ref = next((r for r in ran if r.name == "Parquet (zstd)"), None)
        vs = ""
        if ref:
            vs = (
                f"; vs Parquet (zstd): {store.write_s / ref.write_s:.1f}x the write time, "
                f"{store.read_s / ref.read_s:.1f}x the read time, {store.size / ref.size:.1f}x the space"
            )
        out.append(
            f"**Queryable store**: featurestore ingests at {store.rows / store.write_s / 1e3:,.0f}k rows/s and reads "
            f"everything back at {store.rows / store.read_s / 1e3:,.0f}k rows/s (Arrow), {store.size / mem:.2f}x memory "
            f"on disk{vs}. It is the only contender that answers range, latest and point-in-time queries by "
            "index without reading the whole file, and computes features on write."
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="100k and 250k rows (default 1M and 10M)")
    ap.add_argument("--markdown", action="store_true", help="accepted for compatibility: output is always Markdown")
    ap.add_argument("--repeats", type=int, default=None, help="rounds per size (default 3, quick 2; slow contenders run once)")
    ap.add_argument("--sizes", type=str, default=None, help="comma-separated row counts (multiples of 2,500)")
    ap.add_argument("--no-store", action="store_true", help="skip the featurestore lines (no server)")
    ap.add_argument("--tmpdir", type=Path, default=None, help="where to write the scratch files")
    add_arguments(ap)
    args = ap.parse_args(argv)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 3
    out = Results("serialization", "Serialization: a bars frame to disk and back, and the store", quick=args.quick,
                  results_dir=args.results_dir, extra_packages=SERIALIZATION_PACKAGES)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([100_000, 250_000] if args.quick else [1_000_000, 10_000_000])
    slow_cap = min(sizes) if args.quick else 1_000_000
    md = True
    emit = out.say
    emit(
        f"Sizes {', '.join(f'{s:,}' for s in sizes)} rows (generate_bars, N symbols x {N_DAYS:,} days); "
        f"medians of up to {args.repeats} interleaved rounds (slow contenders once). "
        "Absolute times are noisy, compare rows within a table. MB/s = in-memory MB per second. Writes to "
        "the page cache, warm reads. 'exact' = values read back bit-identical."
    )
    server = None if args.no_store else Server()
    tmp = Path(tempfile.mkdtemp(prefix="fs-ser-", dir=args.tmpdir))
    try:
        last: tuple[list[Result], int] | None = None
        for rows in sizes:
            df = generate_bars(max(rows // N_DAYS, 1), N_DAYS)
            mem = int(df.memory_usage(deep=True).sum())
            results = measure_files(df, tmp, contenders(), args.repeats, slow_cap)
            if server is not None:
                results += measure_store(df, server, args.repeats)
            emit()
            emit(f"{'### ' if md else ''}{len(df):,} rows ({len(df) // N_DAYS:,} symbols x {N_DAYS:,} days), "
                 f"{mem / 1e6:,.0f} MB in memory")
            emit()
            emit(render_table(results, mem, md))
            emit()
            emit(
                "featurestore: write = `ingest` (validate, binary COPY, commit) into a fresh database; size = "
                "bars + entities tables with their indexes. JSON: pandas writes at most 15 significant digits, "
                "so prices such as 73.47000000000001 come back rounded."
            )
            last = (results, mem)
            del df
            gc.collect()
        if last is not None:
            results, mem = last
            emit()
            emit(f"{'### ' if md else ''}Recommendations (from the {results[0].rows:,}-row table)")
            emit()
            for rec in recommendations(results, mem):
                emit(f"- {rec}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if server is not None:
            server.stop()
    out.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
