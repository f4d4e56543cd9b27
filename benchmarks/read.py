"""Read paths side by side: range reads, latest rows, point-in-time training frames.

Starts an embedded PostgreSQL server (a temporary home unless ``--home``), loads N symbols x M
daily bars with ``store.ingest`` into a 15-feature view (the seven seed indicators, 11 columns, plus
sma_50, ema_20, rsi_7, atr_20), ANALYZEs, then times, in one run:

range    get_features for 100 symbols and for all symbols (full history) vs ``pandas.read_sql``,
         psycopg ``fetchall``, psycopg binary COPY parsed by ``decode_binary_copy`` (the other
         candidate path), connectorx (if it installs and can reach a unix socket) and a bare ADBC
         ``fetch_arrow_table`` of the very same SQL text (the floor our pandas/Arrow conversion
         adds to). Targets: >= 5x read_sql; >= 0.8x the bare ADBC rows/s.
latest   one symbol, p50 of many calls, vs a prepared ``ORDER BY ts DESC LIMIT 1`` on a held
         connection (target <= 2x); 1,000 symbols vs the bare LATERAL query on a held connection
         (target <= 1.2x) and vs a per-symbol loop of the prepared query.
training 1M events (10k with --quick) over all symbols: get_training_frame (auto, and each
         strategy forced) vs ``pandas.merge_asof`` on frames already in memory (sort the events,
         merge by symbol; target <= 3x including our DB read) and vs reading the features with
         get_features then merge_asof. Then, like with like, on the same events: ours vs a
         Feast-style N x M SQL join (every earlier row joined, then ROW_NUMBER) vs merge_asof,
         repeated; the event count is the largest that lets the Feast-style repeats fit in
         ``--feast-budget`` seconds (measured on a 500-event probe), and every contender runs on
         exactly those events. Costs are reported per event, with the count used.

Every number is the median of ``--repeats`` runs; the candidates of one row are interleaved, so
noise from the shared 2-core machine spreads over all of them alike.

``--quick`` (what ``featurestore bench`` runs; about a minute) prints the same tables on 100 symbols
x 400 bars (40k rows; the full run is 2,000 x 2,500), 10k training events and 300 single-symbol
calls. Every run writes ``benchmarks/results/read.{json,md}`` (see ``_results.py``).
It also ``gc.freeze()``s the setup's objects, so the ``gc.collect()`` before each timed call
(outside the timing) scans only what the benchmark made since: it cost ~0.1-0.2 s a call, seconds
in all, on this machine.

    python benchmarks/read.py [--quick] [--repeats N] [--home DIR] [--feast-budget S] [--results-dir DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import sqlalchemy as sa
from _results import Results, add_arguments
from psycopg import sql

from featurestore.client import FeatureStore
from featurestore.config import libpq_url
from featurestore.embedded import EmbeddedServer
from featurestore.encode import decode_binary_copy
from featurestore.read import Reader, latest_sql, range_sql, render

VIEW = [
    "sma_20", "ema_50", "rsi_14", "macd_12_26_9", "bbands_20_2", "atr_14", "adx_14",
    "sma_50", "ema_20", "rsi_7", "atr_20",
]
UTC = dt.UTC
OPEN = {"start": dt.datetime(1, 1, 1, tzinfo=UTC), "end": dt.datetime(9999, 12, 31, tzinfo=UTC)}


# -- setup ------------------------------------------------------------------------------------


def make_bars(n_symbols: int, n_bars: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_symbols * n_bars
    close = (100 * np.exp(np.cumsum(rng.normal(0, 0.015, (n_symbols, n_bars)), axis=1))).ravel()
    open_ = close * (1 + rng.normal(0, 0.004, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.004, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.004, n)))
    symbols = np.repeat(np.array([f"S{i:05d}" for i in range(n_symbols)], dtype=object), n_bars)
    ts = np.tile(pd.date_range("2015-01-01", periods=n_bars, freq="D").as_unit("us").to_numpy(), n_symbols)
    return pd.DataFrame({
        "symbol": symbols, "ts": pd.DatetimeIndex(ts).tz_localize("UTC"), "open": open_, "high": high,
        "low": low, "close": close, "volume": rng.integers(100, 10_000, n).astype(float),
    })


def prepare(admin: sa.URL, n_symbols: int, n_bars: int) -> sa.URL:
    """A database with the bars and the view; reused when a previous run left it complete."""
    name = f"fs_bench_read_{n_symbols}x{n_bars}"
    url = admin.set(database=name)
    with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    if exists:
        try:
            with psycopg.connect(libpq_url(url), autocommit=True) as conn:
                bars = conn.execute("SELECT count(*) FROM bars").fetchone()[0]  # type: ignore[index]
                ready = conn.execute("SELECT count(*) FROM feature_views WHERE status = 'ready'").fetchone()[0]  # type: ignore[index]
            if bars == n_symbols * n_bars and ready == 1:
                print(f"reusing database {name}", file=sys.stderr)
                return url
        except psycopg.Error:
            pass
    with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    t0 = time.perf_counter()
    with FeatureStore(url, auto_migrate=True) as fs:
        fs.create_view("tech", VIEW)
        fs.ingest(make_bars(n_symbols, n_bars), progress=False)
        with fs.db.connection() as conn:
            conn.execute("VACUUM ANALYZE")
    print(f"loaded {n_symbols} x {n_bars} bars + features in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return url


# -- timing -----------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, once: set[str] = frozenset()) -> dict[str, float]:  # type: ignore[assignment]
    """Median seconds per candidate; the order rotates each repeat; ``once`` run a single time."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    keys = list(fns)
    for r in range(repeats):
        for k in keys[r % len(keys):] + keys[: r % len(keys)]:
            if k in once and times[k]:
                continue
            times[k].append(timed(fns[k]))
    return {k: statistics.median(v) for k, v in times.items()}


def p50_calls(fns: dict[str, Callable[[], Any]], calls: int, chunk: int = 50) -> dict[str, float]:
    """p50 latency (s) per candidate over ``calls`` calls, run in rotating chunks of ``chunk``."""
    lat: dict[str, list[float]] = {k: [] for k in fns}
    keys = list(fns)
    for f in fns.values():  # warm: prepare statements, open connections
        for _ in range(5):
            f()
    clock = time.perf_counter
    for r in range(calls // chunk):
        for k in keys[r % len(keys):] + keys[: r % len(keys)]:
            f = fns[k]
            for _ in range(chunk):
                t0 = clock()
                f()
                lat[k].append(clock() - t0)
    return {k: statistics.median(v) for k, v in lat.items()}


# -- the benchmark ----------------------------------------------------------------------------


class Bench:
    def __init__(self, url: sa.URL, n_symbols: int, n_bars: int, repeats: int) -> None:
        self.url, self.n_symbols, self.n_bars, self.repeats = url, n_symbols, n_bars, repeats
        self.uri = libpq_url(url)
        self.store = FeatureStore(url)
        self.reader = Reader(self.store.db)
        self.held = psycopg.connect(self.uri, autocommit=True)
        import adbc_driver_postgresql.dbapi as adbc

        self.adbc = adbc.connect(self.uri, autocommit=True)
        self.engine = sa.create_engine(url)
        self.symbols = [f"S{i:05d}" for i in range(n_symbols)]
        with self.store.db.connection() as conn:
            self.ids = dict(conn.execute("SELECT symbol, entity_id FROM entities").fetchall())
            row = conn.execute("SELECT table_name, spec FROM feature_views WHERE name = 'tech'").fetchone()
        assert row is not None
        self.table = row[0]
        from featurestore.views import list_views

        with self.store.db.connection() as conn:
            self.features = list(list_views(conn)[0].feature_columns)
        self.rows: list[tuple[str, str, float, str, str]] = []  # section, label, value, unit, note
        self.checks: list[tuple[str, float, str, bool, str]] = []  # what, measured, target, passed, unit
        self.feast_budget_s = 60.0

    def close(self) -> None:
        self.reader.close()
        self.adbc.close()
        self.held.close()
        self.engine.dispose()
        self.store.close()

    def add(self, section: str, label: str, value: float, unit: str, note: str = "") -> None:
        self.rows.append((section, label, value, unit, note))
        print(f"  {label:<58} {value:>12,.1f} {unit:<8} {note}", file=sys.stderr, flush=True)

    # -- range reads --------------------------------------------------------------------------

    def range_reads(self) -> None:
        for n in sorted({min(100, self.n_symbols), self.n_symbols}):
            syms = self.symbols[:: max(1, self.n_symbols // n)][:n]
            ids = np.array(sorted(self.ids[s] for s in syms), dtype=np.int32)
            query = range_sql(self.table, [], self.features)
            params = {"ids": ids, **OPEN}
            text = render(query, params)
            nrows = n * self.n_bars
            types = ["int4", "timestamptz", *["float8"] * len(self.features)]

            def adbc_bare() -> Any:
                with self.adbc.cursor() as cur:
                    cur.execute(text)
                    return cur.fetch_arrow_table()

            def copy_numpy() -> Any:
                stmt = sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(sql.SQL(text))  # type: ignore[arg-type]
                with self.held.cursor() as cur, cur.copy(stmt) as cp:
                    return decode_binary_copy(b"".join(cp), types)

            def fetchall() -> Any:
                return self.held.execute(query, {"ids": ids.tolist(), **OPEN}, binary=True).fetchall()

            def read_sql() -> Any:
                return pd.read_sql(sa.text(text), self.engine)

            fns: dict[str, Callable[[], Any]] = {
                "featurestore get_features (pandas)": lambda: self.reader.get_features(syms, view="tech"),
                "featurestore get_features (as_arrow)": lambda: self.reader.get_features(syms, view="tech", as_arrow=True),
                "bare ADBC fetch_arrow_table, same SQL": adbc_bare,
                "psycopg binary COPY + decode_binary_copy": copy_numpy,
                "psycopg fetchall (binary)": fetchall,
                "pandas.read_sql (SQLAlchemy)": read_sql,
            }
            try:
                import connectorx as cx

                cx_uri = self.uri  # connectorx cannot use a unix-socket host; skipped if it fails
                cx.read_sql(cx_uri, "SELECT 1", return_type="arrow")
                fns["connectorx (arrow)"] = lambda: cx.read_sql(cx_uri, text, return_type="arrow")
            except Exception as exc:  # an optional candidate: any failure skips it
                print(f"  (connectorx skipped: {str(exc).splitlines()[0][:80]})", file=sys.stderr)
            slow = {"psycopg fetchall (binary)", "pandas.read_sql (SQLAlchemy)"} if n > 100 else set()
            res = interleaved(fns, self.repeats, once=slow)
            section = f"range read, {n} symbols x {self.n_bars} bars, {len(self.features)} features ({nrows:,} rows)"
            print(section, file=sys.stderr)
            for k, v in res.items():
                self.add(section, k, nrows / v / 1e6, "M rows/s", f"{v:.3f} s" + (" (1 run)" if k in slow else ""))
            ours = res["featurestore get_features (pandas)"]
            self.add(section, "ratio: read_sql time / ours (target >= 5)", res["pandas.read_sql (SQLAlchemy)"] / ours, "x")
            self.checks.append((f"range read {n} symbols: read_sql time / ours", res["pandas.read_sql (SQLAlchemy)"] / ours, ">= 5x",
                                res["pandas.read_sql (SQLAlchemy)"] / ours >= 5, "x"))
            r_adbc = res["bare ADBC fetch_arrow_table, same SQL"] / ours
            self.checks.append((f"range read {n} symbols: ours (pandas) rows/s / bare ADBC rows/s", r_adbc, ">= 0.8x", r_adbc >= 0.8, "x"))
            self.add(section, "ratio: our rows/s / bare ADBC rows/s, pandas (target >= 0.8)", res["bare ADBC fetch_arrow_table, same SQL"] / ours, "x")
            self.add(section, "ratio: our rows/s / bare ADBC rows/s, as_arrow (target >= 0.8)",
                     res["bare ADBC fetch_arrow_table, same SQL"] / res["featurestore get_features (as_arrow)"], "x")
            self.add(section, "ratio: COPY+numpy time / bare ADBC time", res["psycopg binary COPY + decode_binary_copy"] / res["bare ADBC fetch_arrow_table, same SQL"], "x")

    # -- latest -------------------------------------------------------------------------------

    def latest(self, calls: int) -> None:
        sym = self.symbols[len(self.symbols) // 2]
        eid = self.ids[sym]
        point = "SELECT ts, open, high, low, close, volume FROM bars WHERE entity_id = %s ORDER BY ts DESC LIMIT 1"
        lateral = latest_sql("bars", ["open", "high", "low", "close", "volume"])
        now = dt.datetime.now(UTC)
        one = p50_calls({
            "featurestore get_latest(1 symbol) (pandas)": lambda: self.reader.get_latest(sym),
            "featurestore get_latest(1 symbol) (as_arrow)": lambda: self.reader.get_latest(sym, as_arrow=True),
            "held connection, prepared ORDER BY ts DESC LIMIT 1": lambda: self.held.execute(point, (eid,), prepare=True).fetchone(),
            "held connection, prepared LATERAL for 1 symbol": lambda: self.held.execute(
                lateral, {"symbols": [sym], "as_of": now}, prepare=True).fetchall(),
        }, calls)
        section = "latest row, 1 symbol (p50 per call)"
        print(section, file=sys.stderr)
        for k, v in one.items():
            self.add(section, k, v * 1e6, "µs")
        floor = one["held connection, prepared ORDER BY ts DESC LIMIT 1"]
        self.add(section, "ratio: pandas / held prepared (target <= 2)", one["featurestore get_latest(1 symbol) (pandas)"] / floor, "x")
        r1 = one["featurestore get_latest(1 symbol) (pandas)"] / floor
        self.checks.append(("get_latest(1 symbol, uncached) p50 / held prepared query", r1, "<= 2x", r1 <= 2.0, "x"))
        self.add(section, "ratio: as_arrow / held prepared (target <= 2)", one["featurestore get_latest(1 symbol) (as_arrow)"] / floor, "x")

        syms = self.symbols[: min(1000, len(self.symbols))]
        ids = [self.ids[s] for s in syms]
        nm = f"{len(syms):,}"

        def loop() -> Any:
            return [self.held.execute(point, (e,), prepare=True).fetchone() for e in ids]

        many = interleaved({
            f"featurestore get_latest({nm} symbols) (pandas)": lambda: self.reader.get_latest(syms),
            f"featurestore get_latest({nm} symbols) (as_arrow)": lambda: self.reader.get_latest(syms, as_arrow=True),
            "bare LATERAL query, held connection, prepared": lambda: self.held.execute(
                lateral, {"symbols": syms, "as_of": now}, prepare=True).fetchall(),
            "naive loop: prepared LIMIT 1 per symbol, held connection": loop,
        }, max(15, self.repeats * 5))
        section = f"latest row, {len(syms):,} symbols (one call)"
        print(section, file=sys.stderr)
        for k, v in many.items():
            self.add(section, k, v * 1e3, "ms")
        bare = many["bare LATERAL query, held connection, prepared"]
        self.add(section, "ratio: pandas / bare LATERAL (target <= 1.2)", many[f"featurestore get_latest({nm} symbols) (pandas)"] / bare, "x")
        rm = many[f"featurestore get_latest({nm} symbols) (pandas)"] / bare
        self.checks.append((f"get_latest({len(syms):,} symbols) / bare LATERAL query", rm, "<= 1.2x", rm <= 1.2, "x"))
        self.add(section, "ratio: as_arrow / bare LATERAL (target <= 1.2)", many[f"featurestore get_latest({nm} symbols) (as_arrow)"] / bare, "x")
        self.add(section, "ratio: naive loop / ours (pandas)", many["naive loop: prepared LIMIT 1 per symbol, held connection"] / many[f"featurestore get_latest({nm} symbols) (pandas)"], "x")

    # -- training frame -----------------------------------------------------------------------

    def training(self, n_events: int) -> None:
        rng = np.random.default_rng(7)
        t0 = pd.Timestamp("2015-01-01", tz="UTC")
        span_s = self.n_bars * 86_400
        events = pd.DataFrame({
            "symbol": np.array(self.symbols, dtype=object)[rng.integers(0, len(self.symbols), n_events)],
            "ts": t0 + pd.to_timedelta(rng.integers(-86_400 * 5, span_s + 86_400 * 5, n_events), unit="s"),
            "label": rng.random(n_events),
        })
        events["ts"] = events["ts"].astype("datetime64[us, UTC]")
        in_memory = self.reader.get_features(self.symbols, view="tech").reset_index()
        in_memory = in_memory.sort_values("ts", kind="stable")

        def merge_asof() -> pd.DataFrame:
            return pd.merge_asof(events.sort_values("ts"), in_memory, on="ts", by="symbol")

        def merge_asof_in_event_order() -> pd.DataFrame:
            ordered = events.sort_values("ts").reset_index()
            return pd.merge_asof(ordered, in_memory, on="ts", by="symbol").set_index("index").sort_index()

        fns: dict[str, Callable[[], Any]] = {
            "featurestore get_training_frame (auto)": lambda: self.reader.get_training_frame(events, view="tech"),
            "featurestore get_training_frame (strategy='range')": lambda: self.reader.get_training_frame(events, view="tech", strategy="range"),
            "featurestore get_training_frame (strategy='per_event')": lambda: self.reader.get_training_frame(events, view="tech", strategy="per_event"),
            "in-memory: sort events + pandas.merge_asof(by='symbol')": merge_asof,
            "get_features(all symbols) from the DB + sort + pandas.merge_asof": lambda: pd.merge_asof(
                events.sort_values("ts"),
                self.reader.get_features(self.symbols, view="tech").reset_index().sort_values("ts", kind="stable"),
                on="ts", by="symbol"),
        }
        res = interleaved(fns, self.repeats)
        # the same answer as merge_asof (a sanity check, not timed)
        ours = self.reader.get_training_frame(events, view="tech")
        ref = merge_asof_in_event_order()
        same = np.array_equal(ours["ema_50"].to_numpy(), ref["ema_50"].to_numpy(), equal_nan=True)
        section = f"training frame, {n_events:,} events over {len(self.symbols):,} symbols ({self.n_bars} bars each)"
        print(section, file=sys.stderr)
        for k, v in res.items():
            self.add(section, k, n_events / v / 1e3, "k ev/s", f"{v:.2f} s")
        r_mem = res["featurestore get_training_frame (auto)"] / res["in-memory: sort events + pandas.merge_asof(by='symbol')"]
        r_db = res["featurestore get_training_frame (auto)"] / res["get_features(all symbols) from the DB + sort + pandas.merge_asof"]
        self.add(section, "ratio: ours (auto) / in-memory merge_asof (target <= 3)", r_mem, "x",
                 "same values as merge_asof" if same else "VALUES DIFFER from merge_asof")
        self.add(section, "ratio: ours (auto) / DB read + merge_asof", r_db, "x")
        self.checks.append((f"training frame ({n_events:,} events) / in-memory merge_asof", r_mem, "<= 3x", r_mem <= 3.0, "x"))
        self.checks.append((f"training frame ({n_events:,} events) / get_features + merge_asof", r_db, "<= 1x (report)", r_db <= 1.0, "x"))

        # Feast-style: every event joined to every earlier row of its symbol, then the newest kept.
        # Like with like: it runs on the same events as ours (the first n_f of the same frame), both
        # repeated and interleaved; n_f is capped so that Feast's runs fit in the time budget.
        feast = (
            "SELECT * FROM (SELECT ev.k, f.*, row_number() OVER (PARTITION BY ev.k ORDER BY f.ts DESC) AS rn "
            "FROM unnest(%(ids)s::int4[], %(ts)s::int8[]) WITH ORDINALITY AS ev(e, t, k) "
            f"JOIN {self.table} f ON f.entity_id = ev.e AND f.ts <= 'epoch'::timestamptz + ev.t * interval '1 microsecond') j WHERE rn = 1"
        )

        def feast_run(sample: pd.DataFrame) -> list[Any]:
            e_ids = [self.ids[s] for s in sample["symbol"]]
            return self.held.execute(feast, {"ids": e_ids, "ts": sample["ts"].array.asi8.tolist()}).fetchall()

        probe_n = min(500, n_events)
        probe_s = timed(lambda: feast_run(events.iloc[:probe_n]))
        per_event = probe_s / probe_n
        n_f = int(min(n_events, max(probe_n, self.feast_budget_s / self.repeats / per_event)))
        sample = events.iloc[:n_f].reset_index(drop=True)
        same_events = interleaved({
            "featurestore get_training_frame (auto)": lambda: self.reader.get_training_frame(sample, view="tech"),
            "Feast-style N x M SQL join (ROW_NUMBER over every earlier row)": lambda: feast_run(sample),
            "in-memory: sort events + pandas.merge_asof(by='symbol')": lambda: pd.merge_asof(
                sample.sort_values("ts"), in_memory, on="ts", by="symbol"),
        }, self.repeats)
        # sanity (untimed): Feast returns one row per event that has an earlier feature row
        first_ts = in_memory.groupby("symbol")["ts"].min()
        expected = int((sample["ts"].to_numpy() >= first_ts.reindex(sample["symbol"]).to_numpy()).sum())
        got = len(feast_run(sample))
        fsec = f"training frame, like with like: the same {n_f:,} events for every contender (medians of {self.repeats})"
        print(fsec, file=sys.stderr)
        for k, v in same_events.items():
            self.add(fsec, k, v / n_f * 1e6, "µs/event", f"{n_f:,} events, {v:.3f} s"
                     + (f"; {got:,} rows, {'as expected' if got == expected else f'EXPECTED {expected:,}'}" if "Feast" in k else ""))
        ours_f = same_events["featurestore get_training_frame (auto)"]
        feast_f = same_events["Feast-style N x M SQL join (ROW_NUMBER over every earlier row)"]
        self.add(fsec, "ratio: Feast-style time / ours (auto), same events", feast_f / ours_f, "x")
        if n_f < n_events:
            self.add(fsec, f"for scale: ours (auto) on all {n_events:,} events (the table above)",
                     res["featurestore get_training_frame (auto)"] / n_events * 1e6, "µs/event", f"{n_events:,} events")
        self.checks.append(("training frame: Feast-style time / ours, same events", feast_f / ours_f, "> 1x (report)", feast_f / ours_f > 1.0, "x"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 symbols x 400 bars, 10k events, 300 latest calls")
    ap.add_argument("--markdown", action="store_true", help="accepted for compatibility: output is always Markdown")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--home", type=Path, help="server home to use and keep (reuses a loaded database)")
    ap.add_argument("--feast-budget", type=float, default=None,
                    help="seconds allowed for the Feast-style join's repeats (default 8 quick, 120 full)")
    add_arguments(ap)
    args = ap.parse_args()
    n_symbols, n_bars, n_events = (100, 400, 10_000) if args.quick else (2_000, 2_500, 1_000_000)
    out = Results("read", "Read paths: range reads, latest rows, point-in-time training frames", quick=args.quick,
                  results_dir=args.results_dir)
    out.setting("data", f"{n_symbols:,} symbols x {n_bars:,} daily bars, a 15-feature view; {n_events:,} training events; "
                f"medians of {args.repeats} interleaved repeats")
    home = args.home or Path(tempfile.mkdtemp(prefix="fs-bench-read-"))
    server = EmbeddedServer(home, cleanup="keep")
    admin = server.start()
    try:
        with psycopg.connect(libpq_url(admin)) as c:
            v = c.info.server_version
        out.setting("PostgreSQL", f"{v // 10000}.{v % 10000} (embedded, unix socket; client and server on the same cores)")
        url = prepare(admin, n_symbols, n_bars)
        bench = Bench(url, n_symbols, n_bars, args.repeats)
        bench.feast_budget_s = args.feast_budget or (8.0 if args.quick else 120.0)
        if args.quick:  # the setup's objects out of every later gc.collect() (see the docstring)
            gc.collect()
            gc.freeze()
        try:
            bench.range_reads()
            bench.latest(calls=300 if args.quick else 1_000)
            bench.training(n_events)
        finally:
            bench.close()
    finally:
        server.stop()
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    sections: dict[str, list[list[str]]] = {}
    for sec, label, value, unit, note in bench.rows:
        sections.setdefault(sec, []).append([label, f"{value:,.2f}", unit, note])
    for sec, rows in sections.items():
        out.table(sec, ["what", "value", "unit", "note"], rows, level=4)
    for what, measured, target, passed, unit in bench.checks:
        out.check(what, measured, target, passed, unit=unit)
    out.checks_table()
    out.write()


if __name__ == "__main__":
    main()
