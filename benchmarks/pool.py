"""Point-read latency under different connection strategies (why featurestore/pool.py looks as it does).

Starts an embedded PostgreSQL server in a temporary home, creates a database, migrates it with
``FeatureStore(url, auto_migrate=True)``, loads 200 entities x 500 bars into ``bars`` with
``generate_series``, and times the latest-bar query

    SELECT ts, open, high, low, close, volume FROM bars WHERE entity_id = %s ORDER BY ts DESC LIMIT 1

one query at a time, for random entity ids, under each strategy:

  a  ``SELECT 1`` on a held psycopg connection (the round-trip floor)
  b  held psycopg connection, ``prepare=True``
  c  held psycopg connection, ``prepare=False``
  d  SQLAlchemy QueuePool defaults (reset on return = rollback, pool_pre_ping=True),
     ``engine.raw_connection()`` per query
  e  QueuePool defaults without pre-ping
  f  featurestore ``store.db.connection()`` (autocommit, no reset, no pre-ping), ``prepare=True``
  g  featurestore ``store.db.run(fn, idempotent=True)``
  h  a new psycopg connection per query (fewer iterations)

The pooled strategies (d-h) use ``prepare=True`` as well, so they differ from (b) only in how the
connection is obtained and returned. Strategies are interleaved in chunks of 100 queries (the order
rotating) so that noise from a shared machine spreads over all of them alike; each repeat yields a
p50 and p90 per strategy, and the table reports the median of those over the repeats.

A second table times checkout + check-in alone (no query) for each pool configuration, and
``--profile`` prints a cProfile of strategy (f) to show where its overhead over (b) goes.

Every run writes ``benchmarks/results/pool.{json,md}`` (see ``_results.py``).

    python benchmarks/pool.py [--quick] [--profile] [--repeats N] [--queries N] [--results-dir DIR]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from _results import Results, add_arguments
from sqlalchemy.engine import URL

from featurestore.client import FeatureStore
from featurestore.config import libpq_url
from featurestore.embedded import EmbeddedServer

N_ENTITIES = 200
N_BARS = 500
DATABASE = "fs_bench_pool"

LATEST = (
    "SELECT ts, open, high, low, close, volume FROM bars "
    "WHERE entity_id = %s ORDER BY ts DESC LIMIT 1"
)

LOAD = """
INSERT INTO bars (entity_id, load_id, ts, open, high, low, close, volume)
SELECT e, 0, timestamptz '2020-01-01 00:00+00' + b * interval '1 day',
       100 + e + b * 0.01, 101 + e + b * 0.01, 99 + e + b * 0.01, 100.5 + e + b * 0.01,
       1000 + (e * 7 + b * 13) %% 500
FROM generate_series(1, %s::int) AS e, generate_series(0, %s::int - 1) AS b
"""

Query = Callable[[int], Any]


# -- setup ------------------------------------------------------------------------------------


def create_database(admin: URL, name: str) -> URL:
    with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin.set(database=name)


def load_bars(url: URL) -> int:
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute("TRUNCATE bars")
        conn.execute(LOAD, (N_ENTITIES, N_BARS))
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE bars")
        row = conn.execute("SELECT count(*) FROM bars").fetchone()
        plan = conn.execute("EXPLAIN " + LATEST.replace("%s", "42")).fetchall()
    assert row is not None
    if not any("Index Scan Backward" in line[0] for line in plan):
        print("warning: the latest-bar query does not use Index Scan Backward:", plan, file=sys.stderr)
    return int(row[0])


# -- strategies -------------------------------------------------------------------------------


class Strategies:
    """Every strategy as ``key -> (label, query(entity_id))``, plus what must be closed at the end."""

    def __init__(self, url: URL, store: FeatureStore) -> None:
        self.conninfo = libpq_url(url)
        self.held = psycopg.connect(self.conninfo, autocommit=True)
        # SQLAlchemy defaults: QueuePool, reset_on_return="rollback", not autocommit
        self.engine_ping = sa.create_engine(url, pool_pre_ping=True)
        self.engine_plain = sa.create_engine(url)
        self.store = store
        self.items: dict[str, tuple[str, Query]] = {
            "a": ("(a) SELECT 1, held connection (floor)", self.select1),
            "b": ("(b) held connection, prepared", self.held_prepared),
            "c": ("(c) held connection, unprepared", self.held_unprepared),
            "d": ("(d) QueuePool defaults (reset=rollback, pre-ping)", self.pool_ping),
            "e": ("(e) QueuePool defaults, no pre-ping", self.pool_plain),
            "f": ("(f) featurestore db.connection(), prepared", self.fs_connection),
            "g": ("(g) featurestore db.run(idempotent=True)", self.fs_run),
            "h": ("(h) new connection per query", self.new_connection),
        }

    def select1(self, eid: int) -> Any:
        return self.held.execute("SELECT 1").fetchone()

    def held_prepared(self, eid: int) -> Any:
        return self.held.execute(LATEST, (eid,), prepare=True).fetchone()

    def held_unprepared(self, eid: int) -> Any:
        return self.held.execute(LATEST, (eid,), prepare=False).fetchone()

    def pool_ping(self, eid: int) -> Any:
        proxied = self.engine_ping.raw_connection()
        try:
            return proxied.driver_connection.execute(LATEST, (eid,), prepare=True).fetchone()
        finally:
            proxied.close()

    def pool_plain(self, eid: int) -> Any:
        proxied = self.engine_plain.raw_connection()
        try:
            return proxied.driver_connection.execute(LATEST, (eid,), prepare=True).fetchone()
        finally:
            proxied.close()

    def fs_connection(self, eid: int) -> Any:
        with self.store.db.connection() as conn:
            return conn.execute(LATEST, (eid,), prepare=True).fetchone()

    def fs_run(self, eid: int) -> Any:
        return self.store.db.run(
            lambda conn: conn.execute(LATEST, (eid,), prepare=True).fetchone(), idempotent=True
        )

    def new_connection(self, eid: int) -> Any:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            return conn.execute(LATEST, (eid,), prepare=True).fetchone()

    # checkout + check-in alone, no query: the pool's own cost

    def overhead(self) -> dict[str, tuple[str, Query]]:
        def cycle(engine: sa.Engine) -> Query:
            def run(eid: int) -> None:
                engine.raw_connection().close()

            return run

        def fs_cm(eid: int) -> None:
            with self.store.db.connection():
                pass

        def fs_run(eid: int) -> None:
            self.store.db.run(lambda conn: None, idempotent=True)

        return {
            "d": ("(d) QueuePool defaults: checkout + check-in", cycle(self.engine_ping)),
            "e": ("(e) QueuePool, no pre-ping: checkout + check-in", cycle(self.engine_plain)),
            "f": ("(f) featurestore db.connection(), empty body", fs_cm),
            "f0": ("(f) featurestore engine.raw_connection().close()", cycle(self.store.db.engine)),
            "g": ("(g) featurestore db.run(noop)", fs_run),
        }

    def close(self) -> None:
        self.held.close()
        self.engine_ping.dispose()
        self.engine_plain.dispose()


# -- timing -----------------------------------------------------------------------------------


def time_batch(fn: Query, ids: list[int]) -> list[float]:
    """Per-call latency in µs."""
    out = []
    clock = time.perf_counter_ns
    for eid in ids:
        t0 = clock()
        fn(eid)
        out.append((clock() - t0) / 1000.0)
    return out


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def measure(
    items: dict[str, tuple[str, Query]],
    *,
    repeats: int,
    queries: int,
    few: dict[str, int],
    chunk: int = 100,
    seed: int = 1,
) -> dict[str, dict[str, float]]:
    """Interleaved runs; returns per key the median over repeats of p50 and p90, and the p50 range.

    Each repeat runs ``chunk`` queries of every strategy in turn (order rotating) until each has
    run its ``queries``, so that bursts of load from other processes hit all strategies alike.
    """
    rng = random.Random(seed)
    keys = list(items)
    p50s: dict[str, list[float]] = {k: [] for k in keys}
    p90s: dict[str, list[float]] = {k: [] for k in keys}
    for key in keys:  # warm-up: connections opened, statements prepared, caches hot
        fn = items[key][1]
        for _ in range(min(50, few.get(key, queries))):
            fn(rng.randint(1, N_ENTITIES))
    rounds = max(1, queries // chunk)
    for _ in range(repeats):
        lat: dict[str, list[float]] = {k: [] for k in keys}
        gc.collect()
        for i in range(rounds):
            order = keys[i % len(keys) :] + keys[: i % len(keys)]
            for key in order:
                n = max(1, few.get(key, queries) // rounds)
                ids = [rng.randint(1, N_ENTITIES) for _ in range(n)]
                lat[key] += time_batch(items[key][1], ids)
        for key in keys:
            p50s[key].append(pct(lat[key], 0.5))
            p90s[key].append(pct(lat[key], 0.9))
    return {
        k: {
            "p50": statistics.median(p50s[k]),
            "p90": statistics.median(p90s[k]),
            "p50_min": min(p50s[k]),
            "p50_max": max(p50s[k]),
            "n": max(1, few.get(k, queries) // rounds) * rounds,
        }
        for k in keys
    }


# -- output -----------------------------------------------------------------------------------


def table(
    items: dict[str, tuple[str, Query]],
    res: dict[str, dict[str, float]],
    *,
    base: str | None,
) -> tuple[list[str], list[list[str]]]:
    head = ["strategy", "p50 µs", "p90 µs", "p50 range µs", "queries/repeat"]
    if base is not None:
        head.insert(3, "p50 / (b)")
    rows = []
    for k, (label, _) in items.items():
        r = res[k]
        row = [
            label,
            f"{r['p50']:,.0f}",
            f"{r['p90']:,.0f}",
            f"{r['p50_min']:,.0f}–{r['p50_max']:,.0f}",
            f"{int(r['n']):,}",
        ]
        if base is not None:
            row.insert(3, f"{r['p50'] / res[base]['p50']:.2f}x")
        rows.append(row)
    return head, rows


def profile_f(strategies: Strategies, n: int) -> str:
    rng = random.Random(7)
    ids = [rng.randint(1, N_ENTITIES) for _ in range(n)]
    prof = cProfile.Profile()
    prof.enable()
    for eid in ids:
        strategies.fs_connection(eid)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 repeats x 300 queries")
    ap.add_argument("--markdown", action="store_true", help="accepted for compatibility: output is always Markdown")
    ap.add_argument("--profile", action="store_true", help="cProfile strategy (f)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--queries", type=int, default=None)
    add_arguments(ap)
    args = ap.parse_args(argv)
    out = Results("pool", "Point-read latency under different connection strategies", quick=args.quick,
                  results_dir=args.results_dir)
    repeats = args.repeats or (3 if args.quick else 5)
    queries = args.queries or (300 if args.quick else 2000)
    few = {"h": max(20, queries // 20)}

    home = Path(tempfile.mkdtemp(prefix="fs-bench-pool-"))
    server = EmbeddedServer(home, cleanup="keep")
    store: FeatureStore | None = None
    strategies: Strategies | None = None
    try:
        t0 = time.perf_counter()
        admin = server.start()
        url = create_database(admin, DATABASE)
        store = FeatureStore(url, auto_migrate=True)
        rows = load_bars(url)
        setup_s = time.perf_counter() - t0
        strategies = Strategies(url, store)
        pg_version = strategies.held.info.server_version
        out.setting("PostgreSQL", f"{pg_version // 10000}.{pg_version % 10000} (embedded, unix socket), "
                    f"psycopg implementation {psycopg.pq.__impl__}")
        out.setting("data", f"{rows:,} bars ({N_ENTITIES} entities x {N_BARS}), setup {setup_s:.1f} s; "
                    f"{repeats} repeats x {queries} queries ((h): {few['h']})")
        res = measure(strategies.items, repeats=repeats, queries=queries, few=few)
        out.table("Latest-bar query latency per connection strategy (median over repeats of each repeat's p50/p90)",
                  *table(strategies.items, res, base="b"))
        over_items = strategies.overhead()
        over = measure(over_items, repeats=repeats, queries=queries, few={})
        out.table("Pool checkout + check-in alone (no query)", *table(over_items, over, base=None))
        out.record("latency", res)
        out.record("checkout", over)
        if args.profile:
            out.say()
            out.say("```")
            out.say(profile_f(strategies, queries).strip())
            out.say("```")
    finally:
        if strategies is not None:
            strategies.close()
        if store is not None:
            store.close()
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    out.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
