"""Write path: raw binary COPY vs FeatureStore.ingest / load, side by side in one run.

Data: a seeded numpy random walk of N symbols x 2,500 daily bars (valid OHLC) as a pandas
DataFrame (symbol, ts tz-aware UTC, open, high, low, close, volume); 2,000 symbols (5M rows) by
default, 100 (250k rows) with ``--quick``. Everything runs on a temporary embedded PostgreSQL server,
one fresh database per scenario (migrated with ``FeatureStore(url, auto_migrate=True)``).

Scenarios:
  a   raw binary COPY (entity_id int4, ts, 5 float8) into an empty bars-shaped table with its
      primary key, payload encoded with numpy (encode_rows_buffer, 250k-row chunks): the ceiling.
      a2: the same without the PK, PK built after (what a fresh-store bulk load could do).
  b   store.ingest(df), bars only (no views), fresh store
  c   store.ingest(df) with the 7 seed indicators in one view registered first (phase-profiled)
  d   the same ingest again on the store from (c): the idempotent reload path
  e   pandas to_sql(method="multi") / to_sql(method=None) / psycopg executemany on a sample
  f   daily append of one bar per symbol with all indicators, end to end (target < 200 ms)
  g   store.load(parquet of all rows), default chunk size, in a subprocess: rows/s and peak RSS
  h   small writes: LoadWriter(small=True) (prepared unnest INSERT) vs small=False (COPY) for
      N rows appended as new days, bars only and with the view: where SMALL_WRITE_ROWS belongs

Repeats of (a)-(d) are interleaved (a, a2, b, c, d per repeat) and medians reported, because the
machine is shared and noisy; the full size affords 2 repeats (``--repeats``).

``--quick`` (what ``featurestore bench`` runs; ~40 s) prints the same tables on less: 100 symbols
(250k rows), 2 repeats of (a)-(d), (e) on 5,000 rows (``method="multi"`` on 2,000), (h) for N in
QUICK_SMALL_NS with up to 3 repeats instead of SMALL_NS with up to 5.

    python benchmarks/load.py [--quick] [--markdown] [--repeats N] [--profile] [--output FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
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

import featurestore.client as fs_client  # noqa: E402
import featurestore.load as fs_load  # noqa: E402
import featurestore.write as fs_write  # noqa: E402
from featurestore.client import FeatureStore  # noqa: E402
from featurestore.config import libpq_url  # noqa: E402
from featurestore.embedded import EmbeddedServer  # noqa: E402
from featurestore.encode import HEADER, TRAILER, encode_rows_buffer  # noqa: E402
from featurestore.indicators import warmup  # noqa: E402

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
QUICK_SMALL_NS = [10, 50, 200, 1000, 5000]  # (h) with --quick


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
        self._wrap(fs_write, "copy_in", copy_kind)
        self._wrap(fs_write, "encode_rows_buffer", "encode")
        self._wrap(fs_write, "copy_out", "copy_out")
        self._wrap(fs_write, "compute_batch", "compute")
        self._wrap(fs_write, "update_batch", "compute")
        self._wrap(fs_write, "write_features", "write_features")
        self._wrap(fs_write, "_compute_and_store", "compute_and_store")
        self._wrap(fs_write, "pack_states", "pack_states")
        self._wrap(fs_write, "bump_generation", "bump_generation")

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

    The current path stages the rows in a temp table WITH the bars PK and runs
    INSERT ... ON CONFLICT DO UPDATE ... WHERE <values differ>; for conflicting rows PostgreSQL
    still locks each existing row (it writes xmax), so an identical reload dirties every page.
    Alternatives: stage without an index and anti-join against bars to find the rows that are new
    or differ (here: none), upserting only those.
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
        ("stage WITH PK (as now) + ON CONFLICT DO UPDATE WHERE differs (as now)", "INCLUDING INDEXES", None),
        ("stage WITH PK + anti-join diff (no upsert when nothing differs)", "INCLUDING INDEXES", diff),
        ("stage WITHOUT index + anti-join diff", "", diff),
        ("stage WITHOUT index + anti-join diff, SET LOCAL work_mem = '256MB'", "", diff),
    ):
        with psycopg.connect(libpq_url(store.db.url)) as conn:
            if "work_mem" in label:
                conn.execute("SET LOCAL work_mem = '256MB'")
            t0 = time.perf_counter()
            conn.execute(f"CREATE TEMP TABLE stg (LIKE bars {like}) ON COMMIT DROP")
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
        views = store._views(conn) if with_views else []  # noqa: SLF001
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


def fmt_table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    return "\n".join(lines)


def rate(rows: int, s: float) -> str:
    return f"{rows / s / 1e6:.2f}M" if rows / s >= 1e6 else f"{rows / s / 1e3:.0f}k"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 symbols x 2,500 bars (250k rows), smaller (e) and (h)")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    ap.add_argument("--repeats", type=int, default=None, help="repeats of (a)-(d) (default 2)")
    ap.add_argument("--profile", action="store_true", help="also cProfile one extra (c) run")
    ap.add_argument("--output", type=Path, default=None, help="also write the report to this file")
    ap.add_argument("--symbols", type=int, default=None)
    ap.add_argument("--child-load", nargs=2, metavar=("URL", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_load:
        child_load(*args.child_load)
        return 0
    n_sym = args.symbols or (100 if args.quick else 2000)
    repeats = args.repeats or 2
    md = args.markdown
    report: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        report.append(text)

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
        log(f"server + data ({n:,} rows) in {time.perf_counter() - t0:.1f} s")
        with psycopg.connect(libpq_url(srv.admin)) as c:  # type: ignore[arg-type]
            v = c.info.server_version
        load1 = os.getloadavg()[0]
        say(
            f"PostgreSQL {v // 10000}.{v % 10000} (embedded, default settings, unix socket), psycopg "
            f"{psycopg.__version__} ({psycopg.pq.__impl__}), pandas {pd.__version__}, numpy {np.__version__}, "
            f"Python {sys.version.split()[0]}; {os.cpu_count()} cores shared with other jobs (load average "
            f"{load1:.1f} at start); {n_sym:,} symbols x {N_BARS:,} bars = {n:,} rows; {repeats} repeat(s) of (a)-(d)."
        )
        PHASES.install()

        # (a)-(d), interleaved per repeat
        times: dict[str, list[float]] = defaultdict(list)
        phase_c: list[dict[str, float]] = []
        phase_b: list[dict[str, float]] = []
        phase_d: list[dict[str, float]] = []
        store_b = store_c = None
        for r in range(repeats):
            last = r == repeats - 1
            url_a = srv.fresh("fs_load_a")
            srv.checkpoint()
            times["a"].append(raw_copy(url_a, data, pk_after=False))
            log(f"rep {r}: (a) {times['a'][-1]:.2f} s")
            srv.checkpoint()
            times["a2"].append(raw_copy(url_a, data, pk_after=True))
            log(f"rep {r}: (a2) {times['a2'][-1]:.2f} s")
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
        srv.checkpoint()
        proto = idempotent_prototypes(store_c, data)
        log(f"(d') {proto}")

        # (e)
        n_e = 5_000 if args.quick else 50_000
        url_e = srv.fresh("fs_load_e")
        slow = slow_inserts(url_e, data, n_e, repeats=2, n_multi=2_000 if args.quick else 20_000)
        srv.drop("fs_load_e")
        log(f"(e) {slow}")

        # (f)
        srv.checkpoint()
        f_times, f_phases, f_first, f_path = daily_appends(store_c, data, 5)
        log(f"(f) {f_times}")

        # (g)
        PHASES.active = False
        g = {views: parquet_load(srv, data, tmp, views) for views in (False, True)}
        log(f"(g) {g}")

        # (h)
        h_ns, h_reps = (QUICK_SMALL_NS, 3) if args.quick else (SMALL_NS, 5)
        h_bars = small_writes(store_b, data, with_views=False, repeats=h_reps, sizes=h_ns)
        h_view = small_writes(store_c, data, with_views=True, repeats=h_reps, sizes=h_ns)
        log("(h) done")

        # -- report ----------------------------------------------------------------------------
        ca = med["a"]
        rows = [
            ["(a) raw binary COPY, numpy-encoded, PK present (ceiling)", f"{med['a']:.2f}", rate(n, med["a"]), "1.00", "", _rng(times["a"])],
            ["(a2) same, no PK, PK built after", f"{med['a2']:.2f}", rate(n, med["a2"]), f"{ca / med['a2']:.2f}", "", _rng(times["a2"])],
            ["(b) store.ingest(df), bars only", f"{med['b']:.2f}", rate(n, med["b"]), f"{ca / med['b']:.2f}", ">= 0.70", _rng(times["b"])],
            ["(c) store.ingest(df), view with 7 indicators", f"{med['c']:.2f}", rate(n, med["c"]), f"{ca / med['c']:.2f}", ">= 0.40", _rng(times["c"])],
            ["(d) same ingest again (idempotent reload)", f"{med['d']:.2f}", rate(n, med["d"]), f"{ca / med['d']:.2f}", ">= (b)", _rng(times["d"])],
        ]
        for key, (s, rows_e) in slow.items():
            rows.append([f"(e) {key}, {rows_e:,} rows", f"{s:.2f}", rate(rows_e, s), f"{(rows_e / s) / (n / ca):.3f}",
                         f"(b) is {(n / med['b']) / (rows_e / s):.0f}x faster", ""])
        for views, res in g.items():
            rows.append([
                f"(g) store.load(parquet), {'view with 7 indicators' if views else 'bars only'}",
                f"{res['elapsed']:.2f}", rate(n, res["elapsed"]), f"{ca / res['elapsed']:.2f}",
                f"peak RSS {res['vmhwm_bytes'] / 2**30:.2f} GiB", "",
            ])
        say()
        say(fmt_table(["scenario", "s (median)", "rows/s", "x (a)", "target / note", "range s"], rows, md))

        say()
        say("(d') the idempotent reload's bars step, alternatives (one run each, rolled back; the same rows as (d)):")
        say()
        prows = [[k, f"{proto[k + '#copy']:.2f}", f"{v:.2f}", rate(n, v)] for k, v in proto.items() if not k.endswith("#copy")]
        say(fmt_table(["bars step of an identical reload", "COPY to stage s", "total s", "rows/s"], prows, md))

        ok = [
            f"(b)/(a) = {ca / med['b']:.2f} (target >= 0.7): {'met' if ca / med['b'] >= 0.7 else 'MISSED'}",
            f"(c)/(a) = {ca / med['c']:.2f} (target >= 0.4): {'met' if ca / med['c'] >= 0.4 else 'MISSED'}",
            f"(d) {rate(n, med['d'])} vs (b) {rate(n, med['b'])} rows/s (target (d) >= (b)): {'met' if med['d'] <= med['b'] else 'MISSED'}",
        ]
        worst_e = min(rows_e / s for s, rows_e in slow.values())
        best_e = max(rows_e / s for s, rows_e in slow.values())
        ok.append(f"(e) fastest row-wise method {best_e / 1e3:.0f}k rows/s, (b) is {(n / med['b']) / best_e:.1f}x faster "
                  f"(target >= 8x): {'met' if (n / med['b']) / best_e >= 8 else 'MISSED'}")
        fm = statistics.median(f_times)
        ok.append(f"(f) daily append of {n_sym:,} bars with the view ({f_path} path): median {fm * 1e3:.0f} ms "
                  f"(runs {', '.join(f'{x * 1e3:.0f}' for x in f_times)} ms; first append in the process "
                  f"{f_first * 1e3:.0f} ms, untimed warm-up) (target < 200 ms): {'met' if fm < 0.2 else 'MISSED'}")
        for views, res in g.items():
            ok.append(f"(g) {'with view' if views else 'bars only'}: process peak RSS (VmHWM) {res['vmhwm_bytes'] / 2**30:.2f} GiB, "
                      f"LoadResult.peak_rss_bytes {res['peak_rss_bytes'] / 2**30:.2f} GiB, RSS before the load "
                      f"{res['rss_before_bytes'] / 2**30:.2f} GiB, parquet {res['file_mb']:.0f} MB (target < 2 GB): "
                      f"{'met' if res['vmhwm_bytes'] < 2e9 else 'MISSED'}")
        say()
        for line in ok:
            say(f"- {line}")

        say()
        say(f"Phase profile (seconds, median of {repeats} run(s); exclusive phases, they sum to the total):")
        say()
        keys = list(phase_c[0])
        prow = []
        for k in keys:
            vals = [statistics.median(p[k] for p in ph) for ph in (phase_b, phase_c, phase_d)]
            fvals = statistics.median(p[k] for p in f_phases)
            share = vals[1] / statistics.median(p["total"] for p in phase_c)
            prow.append([k, *(f"{x:.2f}" for x in vals), f"{100 * share:.0f}%", f"{fvals * 1e3:.1f}"])
        say(fmt_table(["phase", "(b) s", "(c) s", "(d) s", "(c) share", "(f) ms"], prow, md))

        say()
        say(f"Small writes: N rows appended as new days, one transaction each (median of up to {h_reps}, paths interleaved); "
            f"SMALL_WRITE_ROWS = {fs_write.SMALL_WRITE_ROWS}:")
        say()
        srows = []
        for nn in h_ns:
            a, b = h_bars[nn][True], h_bars[nn][False]
            c_, d_ = h_view[nn][True], h_view[nn][False]
            srows.append([f"{nn:,}", f"{a * 1e3:.1f}", f"{b * 1e3:.1f}", f"{b / a:.2f}", f"{c_ * 1e3:.1f}", f"{d_ * 1e3:.1f}", f"{d_ / c_:.2f}"])
        say(fmt_table(["N rows", "bars: small ms", "bars: COPY ms", "COPY/small", "view: small ms", "view: COPY ms", "COPY/small"], srows, md))

        if args.profile:
            PHASES.uninstall()
            store_p = new_store(srv, "fs_load_p", views=True)
            prof = cProfile.Profile()
            prof.enable()
            store_p.ingest(data.df, progress=False)
            prof.disable()
            store_p.close()
            srv.drop("fs_load_p")
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(25)
            say()
            say("cProfile of (c), top 25 by own time:")
            say()
            say("```" if md else "")
            say(s.getvalue().strip())
            say("```" if md else "")
        # sha256 over the bar columns, as write_chunk does (a cost inside "write_chunk rest")
        h = hashlib.sha256()
        t1 = time.perf_counter()
        for c in data.raw[1:]:
            h.update(c.view(np.uint8))
        say()
        say(f"sha256 of the 6 bar columns ({sum(c.nbytes for c in data.raw[1:]) / 1e6:.0f} MB), as in write_chunk: "
            f"{time.perf_counter() - t1:.2f} s")
        say(f"Load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        PHASES.uninstall()
        for s in stores:
            s.close()
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.output:
        args.output.write_text("\n".join(report) + "\n")
    return 0


def _rng(v: list[float]) -> str:
    return f"{min(v):.2f}–{max(v):.2f}" if len(v) > 1 else ""


if __name__ == "__main__":
    sys.exit(main())
