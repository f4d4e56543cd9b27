"""Write path: FeatureStore.ingest / load vs independent bulk-load ceilings, side by side in one run.

Data: a seeded numpy random walk of N symbols x 2,500 daily bars (valid OHLC) as a pandas
DataFrame (symbol, ts tz-aware UTC, open, high, low, close, volume); 2,000 symbols (5M rows) by
default, 40 (100k rows) with ``--quick``. Everything runs on a temporary embedded PostgreSQL
server, one fresh database per scenario (migrated with ``FeatureStore(url, auto_migrate=True)``).

The main table (same rows, same table shape: entity_id int4, ts, 5 float8, PRIMARY KEY):
  i1  ADBC ``adbc_ingest(mode="append")`` of an Arrow table: independent ceiling
  i2  psycopg binary ``COPY ... FROM STDIN (FORMAT BINARY)`` with ``write_row``: independent ceiling
  i3  text ``COPY ... FROM STDIN (FORMAT csv)`` streaming a CSV file: independent ceiling
  a   binary COPY whose payload the project's own numpy encoder builds (encode_rows_buffer)
  a2  the same without the PK, PK built after (what a fresh-store bulk load could do)
  b   store.ingest(df), bars only (no views), fresh store
  c   store.ingest(df) with the 7 seed indicators in one view registered first (phase-profiled)
  d   the same ingest again on the store from (c): the idempotent reload path
Then:
  d'  cheaper ways to detect an identical reload (full mode only)
  e   pandas to_sql(method="multi") / to_sql(method=None) / psycopg executemany on a sample
  f   daily append of one bar per symbol with all indicators, end to end (target < 200 ms)
  g   store.load(parquet of all rows), default chunk size, in a subprocess: rows/s and peak RSS
  h   small writes: LoadWriter(small=True) (prepared unnest INSERT) vs small=False (COPY) for
      N rows appended as new days, bars only and with the view: where SMALL_WRITE_ROWS belongs

The main table's contenders run interleaved per repeat and medians are reported, because the
machine is shared and noisy; ratios are against the fastest independent ceiling (i1-i3), ADBC
and (a). ``--quick`` (what ``featurestore bench`` runs; about a minute) prints the same tables
on 100k rows with smaller (e), (f) and (h), and skips (d'). Every run writes
``benchmarks/results/load.{json,md}`` (see ``_results.py``); the output is Markdown.

    python benchmarks/load.py [--quick] [--repeats N] [--profile] [--results-dir DIR]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import URL

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _results import Results, add_arguments

import featurestore.load as fs_load
import featurestore.write as fs_write
import featurestore.write.backfill
import featurestore.write.copy
import featurestore.write.features
import featurestore.write.generation
import featurestore.write.load
from featurestore.client import FeatureStore
from featurestore.config import libpq_url
from featurestore.embedded import EmbeddedServer
from featurestore.encode import HEADER, TRAILER, encode_rows_buffer
from featurestore.indicators import warmup

TECH = ["sma_20", "ema_50", "rsi_14", "macd_12_26_9", "bbands_20_2", "atr_14", "adx_14"]
N_BARS = 2_500
CHUNK = 250_000
BAR_TYPES = ["int4", "timestamptz", "float8", "float8", "float8", "float8", "float8"]
BAR_COLS = ["entity_id", "ts", "open", "high", "low", "close", "volume"]
RAW_DDL = (
    "CREATE TABLE {name} (entity_id int4 NOT NULL, ts timestamptz NOT NULL, open float8 NOT NULL, "
    "high float8 NOT NULL, low float8 NOT NULL, close float8 NOT NULL, volume float8 NOT NULL{pk})"
)
SMALL_NS = [10, 50, 100, 200, 500, 1000, 2000, 5000, 20000]
QUICK_SMALL_NS = [10, 200, 2000]  # (h) with --quick


# -- data -------------------------------------------------------------------------------------


class Bars:
    """The benchmark data set, plus a calendar of later business days for appends."""

    def __init__(self, n_symbols: int, n_bars: int, seed: int = 0, extra_days: int = 20_000) -> None:
        rng = np.random.default_rng(seed)
        self.n_symbols, self.n_bars = n_symbols, n_bars
        self.symbols = np.array([f"S{i:05d}" for i in range(n_symbols)], dtype=object)
        self.days = pd.bdate_range("2010-01-04", periods=n_bars + extra_days, tz="UTC")
        self.next_day = n_bars  # index into self.days of the first day not yet written
        self.rng = rng
        self.last_close = np.empty(n_symbols)
        o, h, l, c, v = self._walk(n_symbols, n_bars, 100.0 * np.exp(rng.normal(0, 0.5, n_symbols)))
        n = n_symbols * n_bars
        ts_ns = np.tile(self.days[:n_bars].asi8, n_symbols)
        self.df = pd.DataFrame(
            {
                "symbol": np.repeat(self.symbols, n_bars),
                "ts": pd.DatetimeIndex(ts_ns).tz_localize("UTC"),
                "open": o.ravel(), "high": h.ravel(), "low": l.ravel(), "close": c.ravel(),
                "volume": v.ravel(),
            }
        )
        assert len(self.df) == n
        # the raw columns for scenario (a): entity ids 1..n_symbols in symbol order, ts in µs
        self.raw = [
            np.repeat(np.arange(1, n_symbols + 1, dtype=np.int32), n_bars),
            ts_ns // 1000,
            *(np.ascontiguousarray(self.df[k].to_numpy()) for k in ("open", "high", "low", "close", "volume")),
        ]

    def _walk(self, n_sym: int, n_bars: int, start: np.ndarray) -> tuple[np.ndarray, ...]:
        rng = self.rng
        ret = rng.normal(0.0002, 0.02, (n_sym, n_bars))
        close = np.round(start[:, None] * np.exp(np.cumsum(ret, axis=1)), 4)
        prev = np.concatenate([start[:, None], close[:, :-1]], axis=1)
        open_ = np.round(prev * np.exp(rng.normal(0, 0.005, (n_sym, n_bars))), 4)
        high = np.maximum(open_, close) + np.round(np.abs(rng.normal(0, 0.01, (n_sym, n_bars))) * close, 4)
        low = np.maximum(np.minimum(open_, close) - np.round(np.abs(rng.normal(0, 0.01, (n_sym, n_bars))) * close, 4), 0.0)
        volume = np.round(rng.lognormal(13, 1, (n_sym, n_bars)))
        self.last_close[:n_sym] = close[:, -1]
        return open_, high, low, close, volume

    def append_frame(self, n_rows: int) -> pd.DataFrame:
        """The next ``n_rows`` rows of new days: all symbols per day (the first n_rows if fewer)."""
        n_sym = min(n_rows, self.n_symbols)
        n_days = -(-n_rows // n_sym)
        day0 = self.next_day
        self.next_day += n_days
        o, h, l, c, v = self._walk_from(n_sym, n_days)
        ts = self.days[day0 : day0 + n_days]
        df = pd.DataFrame(
            {
                "symbol": np.repeat(self.symbols[:n_sym], n_days),
                "ts": pd.DatetimeIndex(np.tile(ts.asi8, n_sym)).tz_localize("UTC"),
                "open": o.ravel(), "high": h.ravel(), "low": l.ravel(), "close": c.ravel(), "volume": v.ravel(),
            }
        )
        # day-major order, the first n_rows rows (the shape of a live feed)
        df = df.sort_values(["ts", "symbol"], kind="stable").head(n_rows).reset_index(drop=True)
        return df

    def _walk_from(self, n_sym: int, n_days: int) -> tuple[np.ndarray, ...]:
        saved = self.last_close.copy()
        out = self._walk(n_sym, n_days, saved[:n_sym])
        self.last_close[n_sym:] = saved[n_sym:]
        return out


# -- database helpers -------------------------------------------------------------------------


class Server:
    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="fs-bench-load-"))
        self.server = EmbeddedServer(self.home, cleanup="keep")
        self.admin: URL | None = None
        self.dbs: set[str] = set()

    def start(self) -> URL:
        self.admin = self.server.start()
        return self.admin

    def fresh(self, name: str) -> URL:
        assert self.admin is not None
        with psycopg.connect(libpq_url(self.admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        self.dbs.add(name)
        return self.admin.set(database=name)

    def drop(self, name: str) -> None:
        assert self.admin is not None
        with psycopg.connect(libpq_url(self.admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.dbs.discard(name)

    def checkpoint(self) -> None:
        """CHECKPOINT between scenarios so one scenario's dirty pages are not flushed in the next."""
        assert self.admin is not None
        with psycopg.connect(libpq_url(self.admin), autocommit=True) as conn:
            conn.execute("CHECKPOINT")

    def stop(self) -> None:
        try:
            self.server.stop()
        finally:
            shutil.rmtree(self.home, ignore_errors=True)


def new_store(srv: Server, name: str, views: bool) -> FeatureStore:
    store = FeatureStore(srv.fresh(name), auto_migrate=True)
    if views:
        store.create_view("tech", TECH)
    return store


# -- phase profile ----------------------------------------------------------------------------


_WRITE_MODULES = [fs_write, featurestore.write.load, featurestore.write.features, featurestore.write.copy,
                  featurestore.write.backfill, featurestore.write.generation]


class Phases:
    """Inclusive wall time of the write path's steps, by wrapping module functions (benchmark only)."""

    def __init__(self) -> None:
        self.t: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.active = False
        self._copy_kind: list[str] = []
        self._restore: list[tuple[Any, str, Any]] = []

    def _wrap(self, owner: Any, attr: str, name: str | Callable[[tuple[Any, ...]], str]) -> None:
        orig = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
        phases = self

        def wrapper(*a: Any, **k: Any) -> Any:
            if not phases.active:
                return orig(*a, **k)
            key = name(a) if callable(name) else name
            t0 = time.perf_counter()
            try:
                return orig(*a, **k)
            finally:
                phases.t[key] += time.perf_counter() - t0
                phases.calls[key] += 1

        setattr(owner, attr, wrapper)
        self._restore.append((owner, attr, orig))

    def install(self) -> None:
        def copy_kind(a: tuple[Any, ...]) -> str:
            t = repr(a[1])
            kind = "bars" if "'bars'" in t else "stage" if "_fs_stage" in t else "features"
            return f"copy_in:{kind}"

        self._wrap(fs_load, "validate_frame", "validate")
        self._wrap(fs_load.BarChunk, "sorted", "sort")
        self._wrap(fs_write.LoadWriter, "_resolve", "resolve")
        self._wrap(fs_write.LoadWriter, "write_chunk", "write_chunk")
        self._wrap(fs_write.LoadWriter, "finish", "finish")
        self._wrap(fs_write.LoadWriter, "_small_upsert", "small_upsert")
        # write/ is a package: a function is looked up in each module that imported it by name
        for attr, label in (("copy_in", copy_kind), ("encode_rows_buffer", "encode"), ("copy_out", "copy_out"),
                            ("compute_batch", "compute"), ("update_batch", "compute"),
                            ("write_features", "write_features"), ("_compute_and_store", "compute_and_store"),
                            ("pack_states", "pack_states"), ("bump_generation", "bump_generation")):
            for module in _WRITE_MODULES:
                if attr in vars(module):
                    self._wrap(module, attr, label)

    def uninstall(self) -> None:
        for owner, attr, orig in reversed(self._restore):
            setattr(owner, attr, orig)
        self._restore.clear()

    @contextmanager
    def record(self) -> Iterator[dict[str, float]]:
        self.t.clear()
        self.calls.clear()
        self.active = True
        out: dict[str, float] = {}
        t0 = time.perf_counter()
        try:
            yield out
        finally:
            self.active = False
            out.update(self.breakdown(time.perf_counter() - t0))

    def breakdown(self, total: float) -> dict[str, float]:
        """Exclusive phases (seconds) that sum to ``total``."""
        t = self.t
        copy_bars = t["copy_in:bars"] + t["copy_in:stage"]
        out = {
            "validate (validate_frame)": t["validate"],
            "sort (BarChunk.sorted)": t["sort"],
            "entity resolution (_resolve)": t["resolve"],
            "COPY bars / staging (encode + send)": copy_bars,
            "small prepared upsert": t["small_upsert"],
            "write_chunk rest (codes, sha256 checksum, masks)": t["write_chunk"] - t["resolve"] - copy_bars - t["small_upsert"],
            "state SELECT + grouping (write_features)": t["write_features"] - t["compute_and_store"],
            "read-back of bars (COPY OUT + decode)": t["copy_out"],
            "indicator compute": t["compute"],
            "COPY features (encode + send)": t["copy_in:features"],
            "state pack + upsert (+ DELETE on replace)": t["compute_and_store"] - t["copy_out"] - t["compute"] - t["copy_in:features"],
            "staged upsert + loads row (finish rest)": t["finish"] - t["write_features"] - t["bump_generation"],
            "generation bump + NOTIFY": t["bump_generation"],
        }
        out["rest (view lookup, writer init, commit)"] = total - sum(out.values())
        out["  of which: numpy encode of COPY payloads"] = t["encode"]
        out["total"] = total
        return out


PHASES = Phases()


# -- scenarios --------------------------------------------------------------------------------


def raw_copy(url: URL, data: Bars, *, pk_after: bool) -> float:
    """(a) / (a2): seconds to COPY all rows into an empty bars-shaped table and commit."""
    name = "bars_raw"
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(RAW_DDL.format(name=name, pk="" if pk_after else ", PRIMARY KEY (entity_id, ts)"))
        conn.commit()
        cols = data.raw
        n = len(cols[0])
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY {name} ({', '.join(BAR_COLS)}) FROM STDIN (FORMAT BINARY)") as cp:
            cp.write(HEADER)
            for lo in range(0, n, CHUNK):
                cp.write(encode_rows_buffer([c[lo : lo + CHUNK] for c in cols], BAR_TYPES))
            cp.write(TRAILER)
        if pk_after:
            conn.execute(f"ALTER TABLE {name} ADD PRIMARY KEY (entity_id, ts)")
        conn.commit()
        return time.perf_counter() - t0


def _raw_table(conn: psycopg.Connection[Any], name: str = "bars_raw") -> None:
    """An empty bars-shaped table with its primary key, committed (outside any timer)."""
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(RAW_DDL.format(name=name, pk=", PRIMARY KEY (entity_id, ts)"))
    conn.commit()


def adbc_ingest(url: URL, data: Bars) -> float:
    """ADBC ``adbc_ingest`` (mode="append") of the raw columns as one Arrow table into an empty
    bars-shaped table with its PK: the Arrow-native ceiling (the driver streams binary COPY)."""
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow as pa

    table = pa.table({
        "entity_id": pa.array(data.raw[0], pa.int32()),
        "ts": pa.array(data.raw[1], pa.timestamp("us", tz="UTC")),
        **{k: pa.array(c) for k, c in zip(BAR_COLS[2:], data.raw[2:])},
    })  # zero-copy views of the numpy columns, built outside the timer like (a)'s columns
    with psycopg.connect(libpq_url(url)) as pconn:
        _raw_table(pconn)
    with adbc.connect(libpq_url(url)) as conn:
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            cur.adbc_ingest("bars_raw", table, mode="append")
        conn.commit()
        dt = time.perf_counter() - t0
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM bars_raw")
            got = cur.fetchone()[0]  # type: ignore[index]
    assert got == len(data.raw[0]), got
    return dt


def psycopg_write_row(url: URL, data: Bars) -> float:
    """psycopg binary ``COPY ... FROM STDIN (FORMAT BINARY)`` with ``write_row`` per row, typed
    with ``set_types``; converting the columns to Python objects is timed (the data starts as
    arrays for every contender)."""
    with psycopg.connect(libpq_url(url)) as conn:
        _raw_table(conn)
        t0 = time.perf_counter()
        cols = [data.raw[0].tolist(), list(data.df["ts"].dt.to_pydatetime()), *(c.tolist() for c in data.raw[2:])]
        with conn.cursor() as cur, cur.copy(f"COPY bars_raw ({', '.join(BAR_COLS)}) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(BAR_TYPES)
            write_row = cp.write_row
            for row in zip(*cols):
                write_row(row)
        conn.commit()
        dt = time.perf_counter() - t0
        got = conn.execute("SELECT count(*) FROM bars_raw").fetchone()[0]  # type: ignore[index]
    assert got == len(data.raw[0]), got
    return dt


def write_csv(data: Bars, path: Path) -> None:
    """The raw columns as a CSV file (entity_id, ISO ts, full-precision floats), for (a-csv)."""
    frame = pd.DataFrame({"entity_id": data.raw[0], **{c: data.df[c] for c in BAR_COLS[1:]}})
    frame.to_csv(path, index=False, header=False, date_format="%Y-%m-%d %H:%M:%S%z")


def text_copy_csv(url: URL, path: Path, n: int) -> float:
    """Text ``COPY ... FROM STDIN (FORMAT csv)`` streaming a CSV file in 1 MiB pieces: the server
    parses the text (what ``psql \\copy`` does)."""
    with psycopg.connect(libpq_url(url)) as conn:
        _raw_table(conn)
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY bars_raw ({', '.join(BAR_COLS)}) FROM STDIN (FORMAT csv)") as cp, \
                open(path, "rb") as f:
            while piece := f.read(1 << 20):
                cp.write(piece)
        conn.commit()
        dt = time.perf_counter() - t0
        got = conn.execute("SELECT count(*) FROM bars_raw").fetchone()[0]  # type: ignore[index]
    assert got == n, got
    return dt


def timed_ingest(store: FeatureStore, df: pd.DataFrame, profile: bool = False) -> tuple[float, Any, dict[str, float]]:
    with PHASES.record() as ph:
        t0 = time.perf_counter()
        res = store.ingest(df, progress=False)
        dt = time.perf_counter() - t0
    return dt, res, ph


def slow_inserts(url: URL, data: Bars, n: int, repeats: int, n_multi: int = 20_000) -> dict[str, tuple[float, int]]:
    """(e): rows/s of pandas to_sql and psycopg executemany on the first ``n`` rows
    (``method="multi"`` on at most ``n_multi``: it is that slow)."""
    sample = data.df.head(n)
    frame = pd.DataFrame({"entity_id": data.raw[0][:n], **{c: sample[c] for c in BAR_COLS[1:]}})
    engine = sa.create_engine(url)
    times: dict[str, list[float]] = defaultdict(list)
    n_multi = min(n, n_multi)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(RAW_DDL.format(name="bars_e", pk=", PRIMARY KEY (entity_id, ts)"))

        def truncate() -> None:
            conn.execute("TRUNCATE bars_e")
            conn.execute("CHECKPOINT")

        def to_sql(method: str | None, rows: int) -> None:
            frame.head(rows).to_sql("bars_e", engine, if_exists="append", index=False, method=method, chunksize=1000)

        def executemany() -> None:
            cols = [frame[c].tolist() for c in BAR_COLS]  # conversion from the DataFrame is part of the cost
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO bars_e (entity_id, ts, open, high, low, close, volume) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    list(zip(*cols)),
                )

        for _ in range(repeats):
            for key, fn, rows in (
                ("psycopg executemany (prepared INSERT, pipeline)", executemany, n),
                ('DataFrame.to_sql(method=None, chunksize=1000)', lambda: to_sql(None, n), n),
                ('DataFrame.to_sql(method="multi", chunksize=1000)', lambda: to_sql("multi", n_multi), n_multi),
            ):
                truncate()
                t0 = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - t0)
                got = conn.execute("SELECT count(*) FROM bars_e").fetchone()[0]
                assert got == rows, (key, got, rows)
                times[key + "#rows"] = [rows]
    engine.dispose()
    return {k: (statistics.median(v), int(times[k + "#rows"][0])) for k, v in times.items() if not k.endswith("#rows")}


def idempotent_prototypes(store: FeatureStore, data: Bars) -> dict[str, float]:
    """(d'): cheaper ways to find that a reload changes nothing, timed in a rolled-back transaction.

    Candidates: stage the rows in a temp table WITH the bars PK and run INSERT ... ON CONFLICT DO
    UPDATE ... WHERE <values differ> (for conflicting rows PostgreSQL still locks each existing
    row, writing xmax, so an identical reload dirties every page); or stage (with or without an
    index) and anti-join against bars to find the rows that are new or differ (here: none),
    upserting only those. The store's own path is timed as (d) in the main table.
    """
    cols = data.raw
    n = len(cols[0])
    diff = (
        "SELECT count(*) FROM {t} s LEFT JOIN bars b ON b.entity_id = s.entity_id AND b.ts = s.ts "
        "WHERE b.entity_id IS NULL OR (b.open, b.high, b.low, b.close, b.volume) IS DISTINCT FROM "
        "(s.open, s.high, s.low, s.close, s.volume)"
    )
    out: dict[str, float] = {}
    for label, like, query in (
        ("stage WITH PK + ON CONFLICT DO UPDATE WHERE values differ", "INCLUDING INDEXES", None),
        ("stage WITH PK + anti-join diff (no upsert when nothing differs)", "INCLUDING INDEXES", diff),
        ("stage WITHOUT index + anti-join diff", "", diff),
        ("stage WITHOUT index + anti-join diff, SET LOCAL work_mem = '256MB'", "", diff),
    ):
        with psycopg.connect(libpq_url(store.db.url)) as conn:
            if "work_mem" in label:
                conn.execute("SET LOCAL work_mem = '256MB'")
            t0 = time.perf_counter()
            conn.execute(f"CREATE TEMP TABLE stg (LIKE bars {like}) ON COMMIT DROP")
            conn.execute("ALTER TABLE stg ALTER COLUMN load_id SET DEFAULT 0")
            with conn.cursor() as cur, cur.copy(f"COPY stg ({', '.join(BAR_COLS)}) FROM STDIN (FORMAT BINARY)") as cp:
                cp.write(HEADER)
                for lo in range(0, n, CHUNK):
                    cp.write(encode_rows_buffer([c[lo : lo + CHUNK] for c in cols], BAR_TYPES))
                cp.write(TRAILER)
            t_copy = time.perf_counter() - t0
            if query is None:
                got = conn.execute(
                    "WITH w AS (INSERT INTO bars AS b SELECT * FROM stg ORDER BY entity_id, ts "
                    "ON CONFLICT (entity_id, ts) DO UPDATE SET open = excluded.open, high = excluded.high, "
                    "low = excluded.low, close = excluded.close, volume = excluded.volume "
                    "WHERE (b.open, b.high, b.low, b.close, b.volume) IS DISTINCT FROM "
                    "(excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume) "
                    "RETURNING 1) SELECT count(*) FROM w"
                ).fetchone()[0]
            else:
                got = conn.execute(query.format(t="stg")).fetchone()[0]
            dt = time.perf_counter() - t0
            conn.rollback()
        assert got == 0, (label, got)
        out[label] = dt
        out[label + "#copy"] = t_copy
    return out


def daily_appends(store: FeatureStore, data: Bars, count: int) -> tuple[list[float], list[dict[str, float]], float, str]:
    """(f): end-to-end store.ingest of one new bar per symbol, ``count`` times (+1 untimed warm-up)."""
    warm = data.append_frame(data.n_symbols)
    t0 = time.perf_counter()
    store.ingest(warm, progress=False)
    first = time.perf_counter() - t0
    times, phases = [], []
    path = ""
    for _ in range(count):
        df = data.append_frame(data.n_symbols)
        dt, res, ph = timed_ingest(store, df)
        assert res.inserted == data.n_symbols and res.features_written == data.n_symbols, res
        path = "small prepared" if PHASES.calls.get("small_upsert") else "COPY"
        times.append(dt)
        phases.append(ph)
    return times, phases, first, path


def small_writes(
    store: FeatureStore, data: Bars, with_views: bool, repeats: int, sizes: list[int] = SMALL_NS
) -> dict[int, dict[bool, float]]:
    """(h): seconds per write of N appended rows (N in ``sizes``) via the small path vs the COPY path."""
    out: dict[int, dict[bool, list[float]]] = {n: {True: [], False: []} for n in sizes}
    with store.db.connection() as conn:
        views = store._views(conn) if with_views else []
    # one untimed write per path first (prepared statements, kernels, temp-table catalog)
    for small in (True, False):
        chunk = fs_load.validate_frame(data.append_frame(100)).sorted()
        with store.db.connection() as conn, conn.transaction():
            w = fs_write.LoadWriter(conn, source="bench", views=views, small=small)
            w.write_chunk(chunk)
            w.finish()
    for n in sizes:
        reps = repeats if n <= 2000 else max(2, repeats - 2)
        for r in range(reps):
            order = (True, False) if r % 2 == 0 else (False, True)
            for small in order:
                chunk = fs_load.validate_frame(data.append_frame(n)).sorted()
                t0 = time.perf_counter()
                with store.db.connection() as conn, conn.transaction():
                    w = fs_write.LoadWriter(conn, source="bench", views=views, small=small)
                    w.write_chunk(chunk)
                    res = w.finish()
                out[n][small].append(time.perf_counter() - t0)
                assert res.inserted == n, (n, small, res)
    return {n: {k: statistics.median(v) for k, v in d.items()} for n, d in out.items()}


def _proc_status(key: str) -> int:
    """A ``/proc/self/status`` memory field in bytes (VmHWM = this process's peak RSS since exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def child_load(url: str, path: str) -> None:
    """(g) in a fresh process: store.load(path); print JSON with the result and the process peak RSS.

    The peak is VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across fork + exec, so
    a child of this (large) benchmark process would report the parent's peak.
    """
    store = FeatureStore(url)
    rss_before = _proc_status("VmRSS")
    t0 = time.perf_counter()
    res = store.load(path, progress=False)
    dt = time.perf_counter() - t0
    store.close()
    print(json.dumps({
        "elapsed": dt,
        "rows_in": res.rows_in,
        "inserted": res.inserted,
        "features_written": res.features_written,
        "peak_rss_bytes": res.peak_rss_bytes,
        "vmhwm_bytes": _proc_status("VmHWM"),
        "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_before_bytes": rss_before,
    }))


def parquet_load(srv: Server, data: Bars, tmp: Path, views: bool) -> dict[str, Any]:
    path = tmp / "bars.parquet"
    if not path.exists():
        data.df.to_parquet(path, index=False)
    name = "fs_load_g_view" if views else "fs_load_g_bars"
    store = new_store(srv, name, views)
    url = store.db.url
    store.close()
    srv.checkpoint()
    proc = subprocess.run(
        [sys.executable, __file__, "--child-load", url.render_as_string(hide_password=False), str(path)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child load failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["file_mb"] = path.stat().st_size / 1e6
    srv.drop(name)
    return out


# -- reporting --------------------------------------------------------------------------------


def rate(rows: int, s: float) -> str:
    return f"{rows / s / 1e6:.2f}M" if rows / s >= 1e6 else f"{rows / s / 1e3:.0f}k"


# the contenders of the main table, run interleaved per repeat, in this order
CEILINGS = {
    "a": "(a) raw binary COPY, the project's numpy encoder (encode_rows_buffer)",
    "adbc": "(i1) ADBC adbc_ingest(mode='append') of an Arrow table",
    "row": "(i2) psycopg binary COPY, write_row per row (incl. tolist)",
    "csv": "(i3) text COPY FROM STDIN (FORMAT csv) of a CSV file",
}
INDEPENDENT = ("adbc", "row", "csv")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="40 symbols x 2,500 bars (100k rows), smaller (e)-(h), no (d')")
    ap.add_argument("--markdown", action="store_true", help="accepted for compatibility: output is always Markdown")
    ap.add_argument("--repeats", type=int, default=None, help="repeats of the main table (default 2, quick 3)")
    ap.add_argument("--profile", action="store_true", help="also cProfile one extra (c) run")
    ap.add_argument("--symbols", type=int, default=None)
    ap.add_argument("--child-load", nargs=2, metavar=("URL", "PATH"), help=argparse.SUPPRESS)
    add_arguments(ap)
    args = ap.parse_args(argv)
    if args.child_load:
        child_load(*args.child_load)
        return 0
    quick = args.quick
    n_sym = args.symbols or (40 if quick else 2000)
    repeats = args.repeats or (3 if quick else 2)
    out = Results("load", "Write path: FeatureStore.ingest / load vs independent bulk-load ceilings",
                  quick=quick, results_dir=args.results_dir)

    def log(text: str) -> None:
        print(f"  .. {text}", file=sys.stderr, flush=True)

    srv = Server()
    tmp = Path(tempfile.mkdtemp(prefix="fs-bench-load-data-"))
    stores: list[FeatureStore] = []
    try:
        t0 = time.perf_counter()
        srv.start()
        warmup([*TECH])
        data = Bars(n_sym, N_BARS)
        n = len(data.df)
        csv_path = tmp / "bars.csv"
        write_csv(data, csv_path)
        log(f"server + data ({n:,} rows) in {time.perf_counter() - t0:.1f} s")
        with psycopg.connect(libpq_url(srv.admin)) as c:  # type: ignore[arg-type]
            v = c.info.server_version
        out.setting("PostgreSQL", f"{v // 10000}.{v % 10000} (embedded, default settings, unix socket); psycopg "
                    f"implementation {psycopg.pq.__impl__}")
        out.setting("data", f"seeded random walk, {n_sym:,} symbols x {N_BARS:,} daily bars = {n:,} rows; "
                    f"{repeats} interleaved repeat(s) of the main table; one fresh database per contender, "
                    "CHECKPOINT before each")
        out.say("Every contender writes the same rows into the same table shape: (entity_id int4, ts timestamptz, "
                "open/high/low/close/volume float8, PRIMARY KEY (entity_id, ts)), empty at the start, committed at "
                "the end. The ceilings get entity ids already resolved and columns already in memory; "
                "`store.ingest` starts from the DataFrame with symbol strings (validation, entity resolution, sorting "
                "and the post-load work are inside its time). (i2) times the conversion to Python rows; "
                "(i3) reads the CSV file, written beforehand.")
        PHASES.install()

        # the main table: ceilings and (b)-(d), interleaved per repeat
        times: dict[str, list[float]] = defaultdict(list)
        phase_c: list[dict[str, float]] = []
        phase_b: list[dict[str, float]] = []
        phase_d: list[dict[str, float]] = []
        store_b = store_c = None
        for r in range(repeats):
            last = r == repeats - 1
            url_a = srv.fresh("fs_load_a")
            for key, fn in (
                ("a", lambda u=url_a: raw_copy(u, data, pk_after=False)),
                ("adbc", lambda u=url_a: adbc_ingest(u, data)),
                ("row", lambda u=url_a: psycopg_write_row(u, data)),
                ("csv", lambda u=url_a: text_copy_csv(u, csv_path, n)),
                ("a2", lambda u=url_a: raw_copy(u, data, pk_after=True)),
            ):
                srv.checkpoint()
                times[key].append(fn())
                log(f"rep {r}: ({key}) {times[key][-1]:.2f} s")
            srv.drop("fs_load_a")

            store_b = new_store(srv, "fs_load_b", views=False)
            srv.checkpoint()
            dt, res, ph = timed_ingest(store_b, data.df)
            assert res.inserted == n, res
            times["b"].append(dt)
            phase_b.append(ph)
            log(f"rep {r}: (b) {dt:.2f} s")
            if not last:
                store_b.close()
                srv.drop("fs_load_b")

            store_c = new_store(srv, "fs_load_c", views=True)
            srv.checkpoint()
            dt, res, ph = timed_ingest(store_c, data.df)
            assert res.inserted == n and res.features_written == n, res
            times["c"].append(dt)
            phase_c.append(ph)
            log(f"rep {r}: (c) {dt:.2f} s")
            srv.checkpoint()
            dt, res, ph = timed_ingest(store_c, data.df)
            assert res.inserted == 0 and res.updated == 0 and res.unchanged == n and res.features_written == 0, res
            times["d"].append(dt)
            phase_d.append(ph)
            log(f"rep {r}: (d) {dt:.2f} s")
            if not last:
                store_c.close()
                srv.drop("fs_load_c")
        assert store_b is not None and store_c is not None
        stores += [store_b, store_c]
        med = {k: statistics.median(v) for k, v in times.items()}
        out.record("seconds_per_repeat", dict(times))
        best_key = min(INDEPENDENT, key=lambda k: med[k])
        best = med[best_key]
        proto: dict[str, float] = {}
        if not quick:
            srv.checkpoint()
            proto = idempotent_prototypes(store_c, data)
            log(f"(d') {proto}")

        # (e)
        n_e = 2_000 if quick else 50_000
        url_e = srv.fresh("fs_load_e")
        slow = slow_inserts(url_e, data, n_e, repeats=2, n_multi=500 if quick else 20_000)
        srv.drop("fs_load_e")
        log(f"(e) {slow}")

        # (f)
        srv.checkpoint()
        f_times, f_phases, f_first, f_path = daily_appends(store_c, data, 3 if quick else 5)
        log(f"(f) {f_times}")

        # (g)
        PHASES.active = False
        g = {views: parquet_load(srv, data, tmp, views) for views in (False, True)}
        log(f"(g) {g}")

        # (h)
        h_ns, h_reps = (QUICK_SMALL_NS, 2) if quick else (SMALL_NS, 5)
        h_bars = small_writes(store_b, data, with_views=False, repeats=h_reps, sizes=h_ns)
        h_view = small_writes(store_c, data, with_views=True, repeats=h_reps, sizes=h_ns)
        log("(h) done")

        # -- report ----------------------------------------------------------------------------
        ca = med["a"]

        def row(key: str, label: str, target: str = "") -> list[str]:
            return [label, f"{med[key]:.2f}", rate(n, med[key]), f"{best / med[key]:.2f}",
                    f"{med['adbc'] / med[key]:.2f}", f"{ca / med[key]:.2f}", target, _rng(times[key])]

        rows = [row(k, label) for k, label in CEILINGS.items()]
        rows += [
            row("a2", "(a2) = (a) without the PK, PK built after"),
            row("b", "(b) store.ingest(df), bars only", ">= 0.70x (a)"),
            row("c", "(c) store.ingest(df), view with 7 indicators", ">= 0.40x (a)"),
            row("d", "(d) the same ingest again (idempotent reload)", "<= (b) s"),
        ]
        out.table(
            f"Bulk load of {n:,} rows: medians of {repeats} (x best = the fastest independent ceiling, "
            f"here {CEILINGS[best_key].split(')')[0]}))",
            ["scenario", "s (median)", "rows/s", "x best ceiling", "x ADBC", "x (a)", "target", "range s"], rows,
        )
        erows = [[f"(e) {key}", f"{rows_e:,}", f"{sec:.2f}", rate(rows_e, sec), f"{(n / med['b']) / (rows_e / sec):.0f}x"]
                 for key, (sec, rows_e) in slow.items()]
        out.table("(e) Row-wise alternatives on a sample (DataFrame to Python rows included)",
                  ["method", "rows", "s (median of 2)", "rows/s", "(b) is faster by"], erows)
        grows = [[f"(g) store.load(parquet), {'view with 7 indicators' if views else 'bars only'}",
                  f"{res['elapsed']:.2f}", rate(n, res["elapsed"]), f"{best / res['elapsed']:.2f}",
                  f"{res['vmhwm_bytes'] / 2**30:.2f}", f"{res['peak_rss_bytes'] / 2**30:.2f}",
                  f"{res['rss_before_bytes'] / 2**30:.2f}", f"{res['file_mb']:.0f}"]
                 for views, res in g.items()]
        out.table("(g) File load in a fresh process (one run each)",
                  ["load", "s", "rows/s", "x best ceiling", "peak RSS GiB (VmHWM)", "LoadResult.peak_rss GiB",
                   "RSS before GiB", "parquet MB"], grows)
        if proto:
            prows = [[k, f"{proto[k + '#copy']:.2f}", f"{v:.2f}", rate(n, v)] for k, v in proto.items() if not k.endswith("#copy")]
            out.table("(d') The idempotent reload's bars step, alternatives (one run each, rolled back; the rows of (d))",
                      ["bars step of an identical reload", "COPY to stage s", "total s", "rows/s"], prows)

        out.check("(b) ingest bars only / (a) project encoder COPY", ca / med["b"], ">= 0.70x", ca / med["b"] >= 0.7)
        out.check("(c) ingest with 7-indicator view / (a) project encoder COPY", ca / med["c"], ">= 0.40x", ca / med["c"] >= 0.4)
        out.check("(b) ingest bars only / fastest independent ceiling", best / med["b"], ">= 0.70x", best / med["b"] >= 0.7,
                  note=CEILINGS[best_key].split(")")[0] + ")")
        out.check("(c) ingest with view / fastest independent ceiling", best / med["c"], ">= 0.40x", best / med["c"] >= 0.4,
                  note=CEILINGS[best_key].split(")")[0] + ")")
        out.check("(b) ingest bars only / ADBC adbc_ingest", med["adbc"] / med["b"], ">= 0.70x", med["adbc"] / med["b"] >= 0.7)
        out.check("(d) idempotent reload time / (b) bars-only ingest time", med["d"] / med["b"], "<= 1.00x", med["d"] <= med["b"])
        best_e = max(rows_e / sec for sec, rows_e in slow.values())
        out.check("(b) rows/s / fastest row-wise method (e)", (n / med["b"]) / best_e, ">= 8x", (n / med["b"]) / best_e >= 8)
        fm = statistics.median(f_times)
        out.check(f"(f) daily append of {n_sym:,} bars with the view ({f_path} path), median of {len(f_times)}", fm * 1e3,
                  "< 200 ms" + ("" if n_sym == 2000 else " (defined for 2,000 symbols)"), fm < 0.2, unit="ms",
                  note=f"runs {', '.join(f'{x * 1e3:.0f}' for x in f_times)} ms; first append {f_first * 1e3:.0f} ms (untimed)")
        for views, res in g.items():
            out.check(f"(g) store.load(parquet) peak RSS, {'with view' if views else 'bars only'}, {n:,} rows",
                      res["vmhwm_bytes"] / 2**30, "< 2 GB" + ("" if n >= 5_000_000 else " (defined for 5M rows)"),
                      res["vmhwm_bytes"] < 2e9, unit="GiB")
        out.checks_table()

        keys = list(phase_c[0])
        prow = []
        for k in keys:
            vals = [statistics.median(p[k] for p in ph) for ph in (phase_b, phase_c, phase_d)]
            fvals = statistics.median(p[k] for p in f_phases)
            share = vals[1] / statistics.median(p["total"] for p in phase_c)
            prow.append([k, *(f"{x:.2f}" for x in vals), f"{100 * share:.0f}%", f"{fvals * 1e3:.1f}"])
        out.table(f"Phase profile (seconds, median of {repeats}; exclusive phases that sum to the total)",
                  ["phase", "(b) s", "(c) s", "(d) s", "(c) share", "(f) ms"], prow)

        srows = []
        for nn in h_ns:
            a, b = h_bars[nn][True], h_bars[nn][False]
            c_, d_ = h_view[nn][True], h_view[nn][False]
            srows.append([f"{nn:,}", f"{a * 1e3:.1f}", f"{b * 1e3:.1f}", f"{b / a:.2f}", f"{c_ * 1e3:.1f}", f"{d_ * 1e3:.1f}", f"{d_ / c_:.2f}"])
        out.table(f"(h) Small writes: N rows appended as new days, one transaction each (median of up to {h_reps}, "
                  f"paths interleaved); SMALL_WRITE_ROWS = {fs_write.SMALL_WRITE_ROWS}",
                  ["N rows", "bars: small ms", "bars: COPY ms", "COPY/small", "view: small ms", "view: COPY ms", "COPY/small"], srows)

        if args.profile:
            PHASES.uninstall()
            store_p = new_store(srv, "fs_load_p", views=True)
            prof = cProfile.Profile()
            prof.enable()
            store_p.ingest(data.df, progress=False)
            prof.disable()
            store_p.close()
            srv.drop("fs_load_p")
            sio = io.StringIO()
            pstats.Stats(prof, stream=sio).sort_stats("tottime").print_stats(25)
            out.say()
            out.say("cProfile of (c), top 25 by own time:")
            out.say()
            out.say("```")
            out.say(sio.getvalue().strip())
            out.say("```")
    finally:
        PHASES.uninstall()
        for st in stores:
            st.close()
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    out.write()
    return 0


def _rng(v: list[float]) -> str:
    return f"{min(v):.2f}–{max(v):.2f}" if len(v) > 1 else ""


if __name__ == "__main__":
    sys.exit(main())
