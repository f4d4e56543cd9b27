"""Serving live strategies: one-symbol latest rows, alone and from many concurrent requesters.

Issue 15's side-by-side measurement, on the embedded server, cache off everywhere:

- one requester, one symbol: ``get_latest`` (pandas, Arrow, ``as_dict``), the asyncio store's
  ``get_latest(as_dict=True)``, against the ceiling a user could write by hand: a held psycopg
  connection running a prepared ``SELECT ... WHERE entity_id = $1 ORDER BY ts DESC LIMIT 1``
  (p50 of 2,000 calls each);
- a streaming replica made here (``tests/replica.py``: ``pg_basebackup`` of the embedded server):
  200 threads of the sync store, reads on the primary only vs primary + replica (on one machine
  of 2 shared cores a replica adds a second server competing for the same cores: it shows the
  routing's cost, not the scaling a second machine would give);
- 1, 10, 100 and 1,000 closed-loop requesters, each asking the latest row of a random symbol among
  2,000 (the seven-indicator view's row and the bar), for a fixed time each: (a) naive: asyncio
  tasks, one statement per call on a psycopg asyncio pool of the store's size; (b) the sync store,
  one thread per requester (coalescing on); (c) ``AsyncFeatureStore`` (coalescing on,
  ``as_dict=True``); (d) the peer: Feast 0.67's online store (``get_online_features``; SQLite,
  its local default; its own virtual environment, benchmarks/_feast.py) holding the same latest
  rows, one thread per requester. Throughput and p50/p99 latency per level.

Little's law bounds what a closed loop can show: with N requesters, latency = N / throughput, so
a p99 of 5 ms at 1,000 requesters needs at least 200,000 answers/s.

    python benchmarks/serving.py [--quick] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SEED_VIEW = ["sma_20", "ema_50", "rsi_14", "macd_12_26_9", "bbands_20_2", "atr_14", "adx_14"]


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def single(store: Any, afs: Any, url: str, symbols: list[str], n: int) -> dict[str, list[float]]:
    """p50 of one-symbol latest reads, each variant n calls, interleaved in rounds."""
    import psycopg

    ids = dict(store.db.run(lambda c: c.execute("SELECT symbol, entity_id FROM entities").fetchall()))
    conn = psycopg.connect(url, autocommit=True)
    q = ("SELECT ts, open, high, low, close, volume FROM bars WHERE entity_id = %s ORDER BY ts DESC LIMIT 1")
    rng = random.Random(1)
    variants = {
        "held prepared query (psycopg)": lambda s: conn.execute(q, (ids[s],), prepare=True).fetchone(),
        "get_latest, pandas": lambda s: store.get_latest(s),
        "get_latest, Arrow": lambda s: store.get_latest(s, as_arrow=True),
        "get_latest, as_dict": lambda s: store.get_latest(s, as_dict=True),
        "AsyncFeatureStore.get_latest, as_dict": lambda s: afs.loop.run_until_complete(afs.afs.get_latest(s, as_dict=True)),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    try:
        for fn in variants.values():  # warm: plans, prepared statements
            for _ in range(50):
                fn(rng.choice(symbols))
        for _ in range(n // 100):
            for name, fn in variants.items():
                for _ in range(100):
                    s = rng.choice(symbols)
                    t0 = time.perf_counter()
                    fn(s)
                    times[name].append(time.perf_counter() - t0)
    finally:
        conn.close()
    return times


async def naive_level(pool: Any, ids: list[int], n: int, seconds: float, view_table: str) -> list[float]:
    q = (f"SELECT b.ts, b.close, f.* FROM bars b JOIN {view_table} f ON f.entity_id = b.entity_id AND f.ts = b.ts "
         "WHERE b.entity_id = %s ORDER BY b.ts DESC LIMIT 1")
    lat: list[float] = []
    stop = time.perf_counter() + seconds
    rng = random.Random(n)

    async def one() -> None:
        while time.perf_counter() < stop:
            e = rng.choice(ids)
            t0 = time.perf_counter()
            async with pool.connection() as c:
                cur = await c.execute(q, (e,), prepare=True)
                await cur.fetchone()
            lat.append(time.perf_counter() - t0)

    await asyncio.gather(*(one() for _ in range(n)))
    return lat


async def async_level(afs: Any, symbols: list[str], n: int, seconds: float) -> list[float]:
    lat: list[float] = []
    stop = time.perf_counter() + seconds
    rng = random.Random(n)

    async def one() -> None:
        while time.perf_counter() < stop:
            s = rng.choice(symbols)
            t0 = time.perf_counter()
            await afs.get_latest(s, view="seed", as_dict=True)
            lat.append(time.perf_counter() - t0)

    await asyncio.gather(*(one() for _ in range(n)))
    return lat


def sync_level(store: Any, symbols: list[str], n: int, seconds: float) -> list[float]:
    lat: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    start = threading.Barrier(n + 1)

    def one(k: int) -> None:
        rng = random.Random(k)
        mine = []
        start.wait()
        while time.perf_counter() < stop:
            s = rng.choice(symbols)
            t0 = time.perf_counter()
            store.get_latest(s, view="seed", as_dict=True)
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    start.wait()
    for t in threads:
        t.join(seconds + 120)
    return lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="200 symbols, 1 s per level, 1/10/100 requesters")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--no-feast", action="store_true", help="skip the Feast peer (its venv is made on first use)")
    ap.add_argument("--markdown", action="store_true", help="(output is always Markdown)")
    sys.path.insert(0, str(HERE))
    from _results import Results, add_arguments

    add_arguments(ap)
    args = ap.parse_args()
    n_sym = 200 if args.quick else 2000
    seconds = args.seconds or (1.0 if args.quick else 3.0)
    levels = [1, 10, 100] if args.quick else [1, 10, 100, 1000]
    res = Results("serving", "Serving: one-symbol latest rows, alone and from many concurrent requesters",
                  quick=args.quick, results_dir=args.results_dir, extra_packages=("psycopg-pool",))
    res.setting("data", f"{n_sym:,} symbols x 60 daily bars, the seven-indicator view; cache off; "
                f"{seconds:g} s per concurrency level and variant")

    sys.path.insert(0, str(HERE.parent / "tests"))
    from helpers import make_bars
    from psycopg_pool import AsyncConnectionPool

    import featurestore as fs
    from featurestore.config import libpq_url

    work = Path(tempfile.mkdtemp(prefix="fs-serve-"))
    store = fs.FeatureStore(home=work / "home", cache=None, pool_size=8, max_overflow=8)
    try:
        symbols = [f"S{i:05d}" for i in range(n_sym)]
        store.ingest(make_bars(symbols, 60, seed=3), progress=False, create_symbols=True)
        table = store.create_view("seed", SEED_VIEW, progress=False).table_name
        url = libpq_url(store.db.url)
        res.setting("PostgreSQL", store.db.run(lambda c: c.execute("SHOW server_version").fetchone()[0]) + " (embedded)")
        res.setting("pools", "16 connections for every variant (the store's pool_size 8 + max_overflow 8)")
        loop = asyncio.new_event_loop()
        afs = fs.AsyncFeatureStore(url=store.db.url, cache=None, pool_size=8, max_overflow=8)
        loop.run_until_complete(afs.open())
        # -- one requester -----------------------------------------------------------------
        t1 = single(store, _LoopBound(afs, loop), url, symbols, 500 if args.quick else 2000)
        base = statistics.median(t1["held prepared query (psycopg)"])
        rows = [[k, f"{statistics.median(v) * 1e6:,.0f}", f"{pct(v, 99) * 1e6:,.0f}", f"{statistics.median(v) / base:.2f}x"]
                for k, v in t1.items()]
        res.table("One requester, one symbol, uncached (µs)", ["call", "p50", "p99", "p50 / held prepared query"], rows)
        for k in ("get_latest, pandas", "get_latest, as_dict", "AsyncFeatureStore.get_latest, as_dict"):
            r = statistics.median(t1[k]) / base
            res.check(f"one-symbol latest p50, {k} / held prepared query", r, "<= 2.0x", r <= 2.0)
        # -- concurrency ---------------------------------------------------------------------
        ids = list(dict(store.db.run(lambda c: c.execute("SELECT symbol, entity_id FROM entities").fetchall())).values())
        pool = AsyncConnectionPool(url, min_size=16, max_size=16, kwargs={"autocommit": True}, open=False)
        loop.run_until_complete(pool.open(wait=True))
        out: dict[int, dict[str, list[float]]] = {}
        sync_store = fs.FeatureStore(store.db.url, cache=None, pool_size=8, max_overflow=8)
        try:
            for n in levels:
                out[n] = {
                    "(a) naive, one statement per call": loop.run_until_complete(naive_level(pool, ids, n, seconds, table)),
                    "(b) FeatureStore, threads": sync_level(sync_store, symbols, n, seconds),
                    "(c) AsyncFeatureStore, coalesced": loop.run_until_complete(async_level(afs, symbols, n, seconds)),
                }
        finally:
            sync_store.close()
            loop.run_until_complete(pool.close())
            loop.run_until_complete(afs.aclose())
            loop.close()
        lines = []
        tput: dict[int, dict[str, float]] = {}
        for n, variants in out.items():
            tput[n] = {}
            for k, lat in variants.items():
                tput[n][k] = len(lat) / seconds
                lines.append([f"{n:,}", k, f"{len(lat) / seconds:,.0f}", f"{pct(lat, 50) * 1e3:.2f}", f"{pct(lat, 99) * 1e3:.2f}"])
        # -- the peer: Feast's online store on the same latest rows -----------------------------
        if not args.no_feast:
            from _feast import Feast, feast_python

            latest = store.get_latest(symbols, view="seed").reset_index()
            feats = [c for c in latest.columns if c not in ("symbol", "ts")]
            latest.to_parquet(work / "latest.parquet")
            peer = Feast(feast_python(None), work / "feast")
            try:
                res.setting("feast", peer.info + "; SQLite online store (Feast's local default), one FeatureStore shared by the threads")
                peer("setup", parquet=str(work / "latest.parquet"), features=feats)
                for n in levels:
                    a = peer("serve", symbols=symbols, requesters=n, seconds=seconds)
                    tput[n]["(d) Feast get_online_features, threads"] = a["answers_per_s"]
                    lines.append([f"{n:,}", "(d) Feast get_online_features, threads", f"{a['answers_per_s']:,.0f}",
                                  f"{a['p50_ms']:.2f}", f"{a['p99_ms']:.2f}"])
            finally:
                peer.close()
            lines.sort(key=lambda r: int(r[0].replace(",", "")))
        res.table("Concurrent requesters, latest row of a random symbol (bar + view)",
                  ["requesters", "variant", "answers/s", "p50 ms", "p99 ms"], lines)
        top = levels[-1]
        r = tput[top]["(c) AsyncFeatureStore, coalesced"] / tput[top]["(a) naive, one statement per call"]
        res.check(f"throughput at {top:,} requesters, (c) / (a)", r, ">= 5x", r >= 5.0)
        p99 = pct(out[top]["(c) AsyncFeatureStore, coalesced"], 99) * 1e3
        res.check(f"p99 at {top:,} requesters, (c)", p99, "<= 5 ms", p99 <= 5.0, unit=" ms",
                  note="a closed loop's latency is requesters / throughput (Little's law)")
        # -- a read replica ----------------------------------------------------------------------
        from replica import Standby

        n_rep = 100 if args.quick else 200
        sb = Standby.of(url)
        try:
            with store.db.engine.connect() as sa_conn:
                lsn = sa_conn.exec_driver_sql("SELECT pg_current_wal_lsn()").scalar()
            sb.wait_for(str(lsn))
            rep_rows = []
            for name, kw in (("primary only", {}), ("primary + 1 replica", {"read_replicas": [sb.url]})):
                with fs.FeatureStore(store.db.url, cache=None, pool_size=8, max_overflow=8, **kw) as rs:
                    lat = sync_level(rs, symbols, n_rep, seconds)
                    served = rs.stats()["replicas"]
                rep_rows.append([name, f"{len(lat) / seconds:,.0f}", f"{pct(lat, 50) * 1e3:.2f}", f"{pct(lat, 99) * 1e3:.2f}",
                                 "-" if served is None else f"{served['replicas'][0]['reads']:,} / {served['primary_reads']:,}"])
            res.table(f"{n_rep} threads of FeatureStore.get_latest (bar + view), with and without a streaming replica "
                      "on the same machine", ["reads go to", "answers/s", "p50 ms", "p99 ms", "replica / primary reads"], rep_rows)
        finally:
            sb.close()
        res.record("single", {k: v for k, v in t1.items()})
        res.record("throughput", tput)
        res.checks_table()
        res.write()
    finally:
        store.close()
        shutil.rmtree(work, ignore_errors=True)


class _LoopBound:
    """``afs`` and the event loop its pool was opened on (``single`` runs its calls there)."""

    def __init__(self, afs: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.afs, self.loop = afs, loop


if __name__ == "__main__":
    main()
