"""Knowledge time: current reads vs the store before it, ``as_known_at`` reads, history storage,
corrections, and ArcticDB's ``read(as_of=...)`` as the peer, side by side in one run.

Data: N symbols x M daily bars (2,000 x 2,500; ``--quick`` 200 x 2,500) ingested with the seven
seed indicators as one view (sma_20, ema_50, rsi_14, macd_12_26_9, bbands_20_2, atr_14, adx_14),
then 1% of the bars corrected in 10 loads (each a random 0.1% of the bars, prices scaled by
1 + N(0, 1%)), the knowledge clock taken after each load. Three contenders get the same data,
made once by this process and handed over as ``.npy`` files:

now      the store at ``--now-commit`` (default HEAD), with knowledge time;
before   the store at ``--before-commit`` (default: the parent of the first knowledge-time
         commit), on its own database of the same embedded server;
arcticdb ArcticDB on a local LMDB library: ``write`` per symbol, each correction load a new
         version of every corrected symbol (``read_batch``, patched, ``write_batch``: ``update``
         replaces a whole date range, so scattered rows cannot go in one call), a one-row
         correction as ``update``, reads with ``read_batch`` and ``as_of=<clock>``.

Each contender is a worker process of this script (``--worker``) driven over a pipe: the two
stores run from git worktrees of their commits (``PYTHONPATH``), ArcticDB from its own virtual
environment (it needs pandas < 3, this project pandas >= 3: it is never a dependency of the
project). The environment is made on first use, or given with ``--arcticdb-python``:

    python -m venv ~/.cache/featurestore/bench-arcticdb
    ~/.cache/featurestore/bench-arcticdb/bin/pip install arcticdb==6.28.2

Reported: (a) current reads, now / before (range: 50 symbols full history, features and bars;
latest: 1 symbol p50 and 1,000 symbols, with the view; training frame: 100k events, 10k quick);
(b) the same reads ``as_known_at`` a clock between loads 5 and 6 / current, on ``now``, and a
training frame with ``known_at_col``; (c) storage: history bytes per corrected bar, and the bars
and view tables now / before right after the ingest (``load_id`` sits in the alignment padding);
(d) correction load time (one 0.1% load, median of the 10; a one-row correction, median) now /
before; (e) ArcticDB: range read current and ``as_of``, one-row ``update``, correction load and
storage, ours / ArcticDB. Reads run interleaved across contenders (rotating order) and report
medians; every read is also checksummed, and now and before must agree.

    python benchmarks/knowledge_time.py [--quick] [--repeats N] [--arcticdb-python PY] [--results-dir DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _worker import Worker, answers, serve

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SEED_VIEW = ["sma_20", "ema_50", "rsi_14", "macd_12_26_9", "bbands_20_2", "atr_14", "adx_14"]
FIRST_KNOWLEDGE_COMMIT = "49fa3dc"  # "Knowledge time, first slice": its parent is the store before
ARCTICDB = "arcticdb==6.28.2"
ARCTIC_VENV = Path.home() / ".cache" / "featurestore" / "bench-arcticdb"
N_LOADS = 10
SLOW_S = 10.0  # a read slower than this (first run) is repeated 3 times, not --repeats
KNOWN_AFTER = 5  # as_known_at = the clock after this load (between loads 5 and 6)
PRICES = ("open", "high", "low", "close")
COLS = ("open", "high", "low", "close", "volume")
T0_US = 1420070400 * 10**6  # 2015-01-01 UTC
DAY_US = 86_400 * 10**6


# -- data, made once by the driver ------------------------------------------------------------


def make_data(d: Path, n_symbols: int, n_bars: int, n_events: int, n_one: int, seed: int = 0) -> None:
    """Bars, correction loads, one-row corrections and events as .npy files under ``d``."""
    rng = np.random.default_rng(seed)
    n = n_symbols * n_bars
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.015, (n_symbols, n_bars)), axis=1)).ravel()
    open_ = close * (1 + rng.normal(0, 0.004, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.004, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.004, n)))
    volume = rng.integers(100, 10_000, n).astype(np.float64)
    bars = np.stack([open_, high, low, close, volume], axis=1)  # (n, 5), row = sym * n_bars + bar
    np.save(d / "bars.npy", bars)
    # 1% of the bars, distinct, in N_LOADS loads of 0.1%; then n_one further distinct bars
    n_corr = max(N_LOADS, n // 100)
    picked = rng.choice(n, n_corr + n_one, replace=False)
    loads, one = np.array_split(picked[:n_corr], N_LOADS), picked[n_corr:]
    for k, idx in enumerate(loads):
        idx = np.sort(idx)
        new = bars[idx].copy()
        new[:, :4] *= (1 + rng.normal(0, 0.01, len(idx)))[:, None]
        np.save(d / f"load{k}_idx.npy", idx)
        np.save(d / f"load{k}_val.npy", new)
    new = bars[one].copy()
    new[:, :4] *= (1 + rng.normal(0, 0.01, len(one)))[:, None]
    np.save(d / "one_idx.npy", one)
    np.save(d / "one_val.npy", new)
    ev_sym = rng.integers(0, n_symbols, n_events)
    ev_ts = T0_US + rng.integers(-5 * DAY_US, (n_bars + 5) * DAY_US, n_events)
    np.save(d / "events.npy", np.stack([ev_sym, ev_ts], axis=1).astype(np.int64))
    (d / "shape.json").write_text(json.dumps({"n_symbols": n_symbols, "n_bars": n_bars}))


def symbol_names(n_symbols: int) -> list[str]:
    return [f"S{i:05d}" for i in range(n_symbols)]


def frame_rows(idx: np.ndarray, values: np.ndarray, n_bars: int) -> Any:
    """A bars DataFrame (symbol, ts, open..volume) for flat row indices ``idx``."""
    import pandas as pd

    sym = idx // n_bars
    ts = pd.to_datetime(T0_US + (idx % n_bars) * DAY_US, unit="us", utc=True)
    names = np.array(symbol_names(int(sym.max()) + 1 if len(sym) else 0), dtype=object)
    df = pd.DataFrame({"symbol": names[sym], "ts": ts})
    for j, c in enumerate(COLS):
        df[c] = values[:, j]
    return df


# -- workers: one per contender, commands on stdin, one JSON line per answer -------------------


def _timed(fn: Any) -> tuple[float, Any]:
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _digest(obj: Any) -> float:
    """A checksum of a read's result (the sum of its finite float values and its row count)."""
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        vals = obj.select_dtypes("number").to_numpy(dtype=np.float64, na_value=np.nan)
        return float(np.nansum(vals)) + len(obj)
    if isinstance(obj, list):
        return float(sum(_digest(x) for x in obj))
    return float("nan")


class StoreWorker:
    """One featurestore commit on its own database; the same calls exist before and after."""

    def __init__(self, data: Path, url: str, dbname: str) -> None:
        import sqlalchemy as sa

        self.data = data
        shape = json.loads((data / "shape.json").read_text())
        self.n_symbols, self.n_bars = shape["n_symbols"], shape["n_bars"]
        self.admin = sa.make_url(url)
        self.url = self.admin.set(database=dbname)
        self.dbname = dbname
        self.symbols = symbol_names(self.n_symbols)
        self.clocks: list[dt.datetime] = []
        self.fs: Any = None
        self.reader: Any = None

    def _sql(self, text: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.fs.db.connection() as conn:
            cur = conn.execute(text, params)
            return cur.fetchall() if cur.description else []

    def setup(self) -> dict[str, Any]:
        import pandas as pd
        import psycopg
        from psycopg import sql

        from featurestore.client import FeatureStore
        from featurestore.config import libpq_url
        from featurestore.read import Reader

        with psycopg.connect(libpq_url(self.admin), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.dbname)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname)))
        self.fs = FeatureStore(self.url, auto_migrate=True, cache=None)
        self.fs.create_view("tech", SEED_VIEW)
        bars = np.load(self.data / "bars.npy")
        df = frame_rows(np.arange(len(bars)), bars, self.n_bars)
        t0 = time.perf_counter()
        self.fs.ingest(df, progress=False)
        ingest_s = time.perf_counter() - t0
        del df, bars
        with self.fs.db.connection() as conn:
            conn.execute("VACUUM ANALYZE")
        self.table = self._sql("SELECT table_name FROM feature_views WHERE name = 'tech'")[0][0]
        self.reader = Reader(self.fs.db)
        self.clocks.append(dt.datetime.now(dt.UTC))
        ev = np.load(self.data / "events.npy")
        self.events = pd.DataFrame({
            "symbol": np.array(self.symbols, dtype=object)[ev[:, 0]],
            "ts": pd.to_datetime(ev[:, 1], unit="us", utc=True),
            "label": np.arange(len(ev), dtype=np.float64),
        })
        return {"ingest_s": ingest_s, "table": self.table, **self.sizes()}

    def sizes(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, t in (("bars", "bars"), ("view", self.table), ("bars_h", "bars_history"), ("view_h", self.table + "_h")):
            row = self._sql("SELECT to_regclass(%s) IS NOT NULL", (t,))[0][0]
            if not row:
                continue
            total, heap = self._sql("SELECT pg_total_relation_size(%s::regclass), pg_table_size(%s::regclass)", (t, t))[0]
            count = self._sql(f'SELECT count(*) FROM "{t}"')[0][0]
            out[key] = {"total": total, "heap": heap, "rows": count}
        return out

    def vacuum(self) -> dict[str, Any]:
        with self.fs.db.connection() as conn:
            conn.execute("VACUUM ANALYZE")
        return self.sizes()

    def correct(self, k: int) -> dict[str, Any]:
        idx, val = np.load(self.data / f"load{k}_idx.npy"), np.load(self.data / f"load{k}_val.npy")
        df = frame_rows(idx, val, self.n_bars)
        secs, _ = _timed(lambda: self.fs.ingest(df, progress=False))
        time.sleep(0.002)
        self.clocks.append(dt.datetime.now(dt.UTC))
        time.sleep(0.002)
        return {"s": secs, "rows": len(df)}

    def one_row(self, j: int) -> dict[str, Any]:
        idx, val = np.load(self.data / "one_idx.npy")[j : j + 1], np.load(self.data / "one_val.npy")[j : j + 1]
        df = frame_rows(idx, val, self.n_bars)
        secs, _ = _timed(lambda: self.fs.ingest(df, progress=False))
        return {"s": secs}

    def _read_fn(self, name: str, known: bool) -> Any:
        kw: dict[str, Any] = {"as_known_at": self.clocks[KNOWN_AFTER]} if known else {}
        r = self.reader
        syms50 = self.symbols[:: max(1, self.n_symbols // 50)][:50]
        syms1000 = self.symbols[:1000]
        one = self.symbols[len(self.symbols) // 2]
        if name == "range_features":
            return lambda: r.get_features(syms50, view="tech", **kw)
        if name == "range_bars":
            return lambda: r.get_bars(syms50, **kw)
        if name == "latest_1":
            return lambda: r.get_latest(one, view="tech", **kw)
        if name == "latest_1000":
            return lambda: r.get_latest(syms1000, view="tech", **kw)
        if name == "training":
            return lambda: r.get_training_frame(self.events, view="tech", **kw)
        if name == "training_known_col":
            # each event decided at one of the load clocks (a backtest that re-trains after each load)
            rng = np.random.default_rng(3)
            ev = self.events.copy()
            clocks = np.array([c.timestamp() * 1e6 for c in self.clocks], dtype=np.int64)
            import pandas as pd

            ev["decided_at"] = pd.to_datetime(clocks[rng.integers(0, len(clocks), len(ev))], unit="us", utc=True)
            return lambda: r.get_training_frame(ev, view="tech", known_at_col="decided_at")
        raise ValueError(name)

    def read(self, name: str, known: bool = False, calls: int = 1) -> dict[str, Any]:
        fn = self._read_fn(name, known)
        if calls == 1:
            secs, res = _timed(fn)
            return {"s": secs, "digest": _digest(res)}
        res = fn()
        clock = time.perf_counter
        lat = []
        for _ in range(calls):
            t0 = clock()
            fn()
            lat.append(clock() - t0)
        return {"s": statistics.median(lat), "digest": _digest(res)}

    def explain(self, name: str, known: bool) -> str:
        """EXPLAIN (ANALYZE, BUFFERS) of the SQL behind a range or latest read (what the Reader sends)."""
        from featurestore.read import sql as rsql

        syms50 = self.symbols[:: max(1, self.n_symbols // 50)][:50]
        ids = [r[0] for r in self._sql("SELECT entity_id FROM entities WHERE symbol = ANY(%s) ORDER BY 1", (syms50,))]
        feats = [r[0] for r in self._sql(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
            "AND atttypid = 'float8'::regtype ORDER BY attnum", (self.table,))]
        params: dict[str, Any] = {"ids": ids, "start": dt.datetime(1, 1, 1, tzinfo=dt.UTC),
                                  "end": dt.datetime(9999, 12, 31, tzinfo=dt.UTC)}
        kw: dict[str, Any] = {}
        if known:
            kw["known"] = True
            params["known_at"] = self.clocks[KNOWN_AFTER]
        if name == "range_features":
            q = rsql.range_sql(self.table, [], feats, **kw)
        elif name == "latest_1":
            q = rsql.latest_one_sql(self.table, ["close"], feats, **kw)
            params = {"symbol": self.symbols[len(self.symbols) // 2],
                      "as_of": self.clocks[KNOWN_AFTER] if known else dt.datetime.now(dt.UTC),
                      **({"known_at": params["known_at"]} if known else {})}
        elif name == "latest_1000":
            q = rsql.latest_sql(self.table, ["close"], feats, **kw)
            params = {"symbols": self.symbols[:1000], "as_of": self.clocks[KNOWN_AFTER] if known else dt.datetime.now(dt.UTC),
                      **({"known_at": params["known_at"]} if known else {})}
        else:
            raise ValueError(name)
        rows = self._sql("EXPLAIN (ANALYZE, BUFFERS) " + q, params)
        return "\n".join(r[0] for r in rows)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        if self.fs is not None:
            self.fs.close()


class ArcticWorker:
    """ArcticDB on a local LMDB library: one symbol per ticker, whole-symbol versions."""

    def __init__(self, data: Path, path: str) -> None:
        self.data = data
        shape = json.loads((data / "shape.json").read_text())
        self.n_symbols, self.n_bars = shape["n_symbols"], shape["n_bars"]
        self.symbols = symbol_names(self.n_symbols)
        self.path = Path(path)
        self.clocks: list[Any] = []

    def _frame(self, s: int, values: np.ndarray) -> Any:
        import pandas as pd

        idx = pd.DatetimeIndex(pd.to_datetime(T0_US + np.arange(self.n_bars) * DAY_US, unit="us", utc=True), name="ts")
        return pd.DataFrame(values, index=idx, columns=list(COLS))

    def setup(self) -> dict[str, Any]:
        import arcticdb as adb

        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)
        self.ac = adb.Arctic(f"lmdb://{self.path}?map_size=64GB")
        self.lib = self.ac.get_library("bench", create_if_missing=True)
        bars = np.load(self.data / "bars.npy").reshape(self.n_symbols, self.n_bars, len(COLS))
        t0 = time.perf_counter()
        for s, sym in enumerate(self.symbols):
            self.lib.write(sym, self._frame(s, bars[s]))
        secs = time.perf_counter() - t0
        self.clocks.append(_now_pd())
        return {"ingest_s": secs, "bytes": self.bytes()}

    def bytes(self) -> int:
        """Allocated bytes of the LMDB files (the map is sparse: st_blocks, not st_size)."""
        return sum(p.stat().st_blocks * 512 for p in self.path.rglob("*") if p.is_file())

    def correct(self, k: int) -> dict[str, Any]:
        idx, val = np.load(self.data / f"load{k}_idx.npy"), np.load(self.data / f"load{k}_val.npy")
        sym = idx // self.n_bars
        names = [self.symbols[s] for s in np.unique(sym)]

        def run() -> None:
            got = self.lib.read_batch(names)
            frames = []
            for name, item in zip(names, got):
                df = item.data.copy()
                s = int(name[1:])
                sel = sym == s
                df.iloc[idx[sel] % self.n_bars, :] = val[sel]
                frames.append(df)
            import arcticdb as adb

            self.lib.write_batch([adb.WritePayload(n, f) for n, f in zip(names, frames)])

        secs, _ = _timed(run)
        time.sleep(0.002)
        self.clocks.append(_now_pd())
        time.sleep(0.002)
        return {"s": secs, "rows": len(idx), "symbols": len(names)}

    def one_row(self, j: int) -> dict[str, Any]:
        import pandas as pd

        i = int(np.load(self.data / "one_idx.npy")[j])
        v = np.load(self.data / "one_val.npy")[j : j + 1]
        ts = pd.DatetimeIndex(pd.to_datetime([T0_US + (i % self.n_bars) * DAY_US], unit="us", utc=True), name="ts")
        df = pd.DataFrame(v, index=ts, columns=list(COLS))
        secs, _ = _timed(lambda: self.lib.update(self.symbols[i // self.n_bars], df))
        return {"s": secs}

    def read(self, name: str, known: bool = False, calls: int = 1) -> dict[str, Any]:
        import arcticdb as adb

        syms50 = self.symbols[:: max(1, self.n_symbols // 50)][:50]
        as_of = self.clocks[KNOWN_AFTER] if known else None
        if name == "range_bars":
            reqs = [adb.ReadRequest(s, as_of=as_of) for s in syms50]
            secs, res = _timed(lambda: [r.data for r in self.lib.read_batch(reqs)])
            return {"s": secs, "digest": _digest(res)}
        if name == "latest_1":
            one = self.symbols[len(self.symbols) // 2]
            fn = lambda: self.lib.tail(one, 1, as_of=as_of).data  # noqa: E731
            res = fn()
            lat = []
            for _ in range(calls):
                t0 = time.perf_counter()
                fn()
                lat.append(time.perf_counter() - t0)
            return {"s": statistics.median(lat), "digest": _digest(res)}
        raise ValueError(name)

    def sizes(self) -> dict[str, Any]:
        return {"bytes": self.bytes()}

    def vacuum(self) -> dict[str, Any]:
        return self.sizes()

    def close(self) -> None:
        pass


def _now_pd() -> Any:
    import pandas as pd

    return pd.Timestamp.now(tz="UTC")


def worker_main(kind: str, data: Path, target: str, dbname: str) -> None:
    """Serve the driver's commands as a :mod:`_worker` process (one method of the worker each)."""
    channel = answers()
    w: Any = StoreWorker(data, target, dbname) if kind == "store" else ArcticWorker(data, target)
    if kind == "store":
        import featurestore

        ready = str(Path(featurestore.__file__).resolve().parent)
    else:
        import arcticdb
        import pandas

        ready = f"arcticdb {arcticdb.__version__}, pandas {pandas.__version__}, numpy {np.__version__}"
    try:
        serve(channel, ready, lambda op, cmd: getattr(w, op)(**cmd))
    finally:
        w.close()


# -- the driver ---------------------------------------------------------------------------------


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def worktree(commit: str, where: Path) -> Path:
    """A detached checkout of ``commit``; ``featurestore/migrations`` linked as the wheel maps it."""
    git("worktree", "add", "--detach", "--force", str(where), commit)
    link = where / "featurestore" / "migrations"
    if not link.exists():
        link.symlink_to(where / "migrations", target_is_directory=True)
    return where


def arctic_python(given: str | None) -> str:
    """The Python of an environment holding ArcticDB, made on first use (never the project's)."""
    if given:
        return given
    py = ARCTIC_VENV / "bin" / "python"
    ok = py.exists() and subprocess.run([str(py), "-c", "import arcticdb"], capture_output=True).returncode == 0
    if not ok:
        print(f"making {ARCTIC_VENV} with {ARCTICDB} (once)", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(ARCTIC_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", ARCTICDB], check=True)
    return str(py)


def rotate(seq: list[Any], r: int) -> list[Any]:
    return seq[r % len(seq):] + seq[: r % len(seq)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="200 symbols x 2,500 bars, 10k training events")
    ap.add_argument("--markdown", action="store_true", help="accepted for compatibility: output is always Markdown")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--now-commit", default="HEAD")
    ap.add_argument("--before-commit", default=f"{FIRST_KNOWLEDGE_COMMIT}^")
    ap.add_argument("--arcticdb-python", help="a Python with arcticdb installed (default: made under ~/.cache)")
    ap.add_argument("--no-arcticdb", action="store_true")
    ap.add_argument("--home", type=Path, help="server home to use and keep (default: a temporary one, removed)")
    ap.add_argument("--explain", action="store_true",
                    help="print EXPLAIN (ANALYZE, BUFFERS) of the range and latest reads (before, now, now as_known_at)")
    ap.add_argument("--symbols", type=int, help="override the symbol count (smoke runs)")
    ap.add_argument("--bars", type=int, help="override the bars per symbol (smoke runs)")
    ap.add_argument("--events", type=int, help="override the training events (smoke runs)")
    ap.add_argument("--worker", choices=["store", "arcticdb"], help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--target", help=argparse.SUPPRESS)
    ap.add_argument("--dbname", default="", help=argparse.SUPPRESS)
    sys.path.insert(0, str(HERE))
    from _results import Results, add_arguments

    add_arguments(ap)
    args = ap.parse_args()
    if args.worker:
        worker_main(args.worker, args.data, args.target, args.dbname)
        return
    drive(args, Results)


def drive(args: Any, Results: Any) -> None:
    from featurestore.embedded import EmbeddedServer

    n_symbols, n_bars = (200, 2_500) if args.quick else (2_000, 2_500)
    n_events = 10_000 if args.quick else 100_000
    n_symbols, n_bars, n_events = args.symbols or n_symbols, args.bars or n_bars, args.events or n_events
    n_one, latest_calls, reps = 7, (200 if args.quick else 500), args.repeats
    now_sha, before_sha = git("rev-parse", args.now_commit), git("rev-parse", args.before_commit)
    out = Results("knowledge_time", "Knowledge time: reads now vs before, as_known_at, history storage, corrections, ArcticDB as_of",
                  quick=args.quick, results_dir=args.results_dir)
    out.setting("data", f"{n_symbols:,} symbols x {n_bars:,} daily bars, view of the seven seed indicators "
                f"({', '.join(SEED_VIEW)}); 1% of bars corrected in {N_LOADS} loads of 0.1%; {n_events:,} training "
                f"events; medians of {reps} interleaved repeats (of 3 for a read slower than {SLOW_S:.0f} s)")
    out.setting("commits", f"now {now_sha[:10]}, before {before_sha[:10]} (git worktrees, one worker process each)")
    tmp = Path(tempfile.mkdtemp(prefix="fs-bench-kt-"))
    data = tmp / "data"
    data.mkdir()
    make_data(data, n_symbols, n_bars, n_events, n_one)
    server = EmbeddedServer(args.home or tmp / "home", cleanup="keep")
    admin = server.start()
    workers: dict[str, Worker] = {}
    trees: list[Path] = []
    try:
        admin_s = admin.render_as_string(hide_password=False)
        for name, sha in (("now", now_sha), ("before", before_sha)):
            tree = worktree(sha, tmp / f"tree_{name}")
            trees.append(tree)
            env = {**os.environ, "PYTHONPATH": str(tree)}
            workers[name] = Worker(name, [sys.executable, str(Path(__file__).resolve()), "--worker", "store", "--data", str(data),
                                          "--target", admin_s, "--dbname", f"fs_bench_kt_{name}"], env)
        if not args.no_arcticdb:
            py = arctic_python(args.arcticdb_python)
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            workers["arcticdb"] = Worker("arcticdb", [py, str(Path(__file__).resolve()), "--worker", "arcticdb", "--data", str(data),
                                                      "--target", str(tmp / "arctic")], env)
            out.setting("ArcticDB", f"{workers['arcticdb'].info} (own virtual environment; LMDB on local disk)")
        now, before = workers["now"], workers["before"]
        for name, w in workers.items():
            print(f"{name}: {w.info}", file=sys.stderr, flush=True)
        setup = {}
        for name, w in workers.items():
            setup[name] = w("setup")
            print(f"{name}: loaded in {setup[name]['ingest_s']:.1f} s", file=sys.stderr, flush=True)
        # -- corrections: 10 loads, interleaved across contenders ---------------------------------
        load_s: dict[str, list[float]] = {k: [] for k in workers}
        names = list(workers)
        for k in range(N_LOADS):
            for name in rotate(names, k):
                load_s[name].append(workers[name]("correct", k=k)["s"])
            print(f"load {k}: " + ", ".join(f"{n} {load_s[n][-1]:.2f} s" for n in names), file=sys.stderr, flush=True)
        sizes = {name: w("vacuum") for name, w in workers.items()}
        one_s: dict[str, list[float]] = {k: [] for k in workers}
        for j in range(n_one):
            for name in rotate(names, j):
                one_s[name].append(workers[name]("one_row", j=j)["s"])
        for w in (now, before):
            w("vacuum")
        out.record("load_seconds", load_s)
        out.record("one_row_seconds", one_s)
        out.record("setup", setup)
        out.record("sizes_after_corrections", sizes)

        # -- reads ----------------------------------------------------------------------------------
        def measure(cands: list[tuple[str, str, bool]], read: str, calls: int = 1) -> dict[str, tuple[float, float]]:
            times: dict[str, list[float]] = {label: [] for label, _, _ in cands}
            digests: dict[str, float] = {}
            for r in range(reps):
                for label, wname, known in rotate(cands, r):
                    if len(times[label]) >= 3 and times[label][0] > SLOW_S:
                        continue  # a read slower than SLOW_S: the median of 3
                    got = workers[wname]("read", name=read, known=known, calls=calls)
                    times[label].append(got["s"])
                    digests[label] = got["digest"]
            return {k: (statistics.median(v), digests[k]) for k, v in times.items()}

        reads = [("range_features", "range read, 50 symbols x full history, view (get_features)", 1),
                 ("range_bars", "range read, 50 symbols x full history, bars (get_bars)", 1),
                 ("latest_1", f"latest row, 1 symbol, view (p50 of {latest_calls} calls)", latest_calls),
                 ("latest_1000", f"latest row, {min(1000, n_symbols):,} symbols, view", 1),
                 ("training", f"training frame, {n_events:,} events", 1)]
        rows_a, rows_b, rows_e, res_all = [], [], [], {}
        for read, label, calls in reads:
            cands = [("now", "now", False), ("before", "before", False), ("now as_known_at", "now", True)]
            if "arcticdb" in workers and read in ("range_bars", "latest_1"):
                cands += [("arcticdb", "arcticdb", False), ("arcticdb as_of", "arcticdb", True)]
            res = measure(cands, read, calls)
            res_all[read] = res
            print(label + ": " + ", ".join(f"{k} {v[0] * 1e3:.2f} ms" for k, v in res.items()), file=sys.stderr, flush=True)
            n_t, b_t, k_t = res["now"][0], res["before"][0], res["now as_known_at"][0]
            same = "same result" if abs(res["now"][1] - res["before"][1]) <= 1e-9 * max(1.0, abs(res["now"][1])) else "RESULTS DIFFER"
            rows_a.append([label, f"{n_t * 1e3:,.2f}", f"{b_t * 1e3:,.2f}", f"{n_t / b_t:.2f}x", same])
            rows_b.append([label, f"{k_t * 1e3:,.2f}", f"{n_t * 1e3:,.2f}", f"{k_t / n_t:.2f}x"])
            out.check(f"current read now / before: {label}", n_t / b_t, "<= 1.05x", n_t / b_t <= 1.05)
            out.check(f"as_known_at / current read (1% corrected): {label}", k_t / n_t, "<= 1.5x", k_t / n_t <= 1.5)
            if "arcticdb" in res:
                a_t, ak_t = res["arcticdb"][0], res["arcticdb as_of"][0]
                rows_e.append([f"{label}, current", f"{n_t * 1e3:,.2f}", f"{a_t * 1e3:,.2f}", f"{n_t / a_t:.2f}x"])
                rows_e.append([f"{label}, as of the clock after load {KNOWN_AFTER}", f"{k_t * 1e3:,.2f}", f"{ak_t * 1e3:,.2f}",
                               f"{k_t / ak_t:.2f}x"])
        kc = measure([("now known_at_col", "now", False), ("now", "now", False)], "training_known_col", 1)
        res_all["training_known_col"] = kc
        out.record("reads", {k: {c: v[0] for c, v in r.items()} for k, r in res_all.items()})
        kcol = kc["now known_at_col"][0]
        rows_b.append([f"training frame, {n_events:,} events, known_at_col (each event decided at one of the load clocks)",
                       f"{kcol * 1e3:,.2f}", f"{res_all['training']['now'][0] * 1e3:,.2f}",
                       f"{kcol / res_all['training']['now'][0]:.2f}x"])

        out.table("(a) current reads: now / before (ms, medians)", ["read", "now", "before", "now / before", "check"], rows_a)
        out.table(f"(b) as_known_at the clock after load {KNOWN_AFTER} / current, same data, 1% of bars corrected (ms)",
                  ["read", "as_known_at", "current", "ratio"], rows_b)

        # -- storage ------------------------------------------------------------------------------
        s_now, s_bef = setup["now"], setup["before"]
        corr_rows = sum(len(np.load(data / f"load{k}_idx.npy")) for k in range(N_LOADS))
        a_now, a_bef = sizes["now"], sizes["before"]
        hist = a_now.get("bars_h", {}).get("total", 0) + a_now.get("view_h", {}).get("total", 0)
        hist_rows = a_now.get("bars_h", {}).get("rows", 0) + a_now.get("view_h", {}).get("rows", 0)
        mib = 2**20
        rows_c = [
            ["bars table after the ingest (heap + indexes, MiB)", f"{s_now['bars']['total'] / mib:,.1f}",
             f"{s_bef['bars']['total'] / mib:,.1f}", f"{s_now['bars']['total'] / s_bef['bars']['total']:.3f}x"],
            ["bars heap after the ingest (MiB)", f"{s_now['bars']['heap'] / mib:,.1f}", f"{s_bef['bars']['heap'] / mib:,.1f}",
             f"{s_now['bars']['heap'] / s_bef['bars']['heap']:.3f}x"],
            ["view table after the ingest (heap + indexes, MiB)", f"{s_now['view']['total'] / mib:,.1f}",
             f"{s_bef['view']['total'] / mib:,.1f}", f"{s_now['view']['total'] / s_bef['view']['total']:.3f}x"],
            ["bars + view after the 10 loads and VACUUM (MiB)",
             f"{(a_now['bars']['total'] + a_now['view']['total']) / mib:,.1f}",
             f"{(a_bef['bars']['total'] + a_bef['view']['total']) / mib:,.1f}",
             f"{(a_now['bars']['total'] + a_now['view']['total']) / (a_bef['bars']['total'] + a_bef['view']['total']):.3f}x"],
            ["history after the 10 loads: bars_history rows / view _h rows", f"{a_now.get('bars_h', {}).get('rows', 0):,} / "
             f"{a_now.get('view_h', {}).get('rows', 0):,}", "n/a", ""],
            ["history bytes (bars_history + view _h, heap + indexes, MiB)", f"{hist / mib:,.1f}", "0", ""],
            [f"history bytes per corrected bar ({corr_rows:,} bars corrected)", f"{hist / corr_rows:,.0f}", "", ""],
            ["history bytes per history row", f"{hist / max(1, hist_rows):,.0f}", "", ""],
        ]
        if "arcticdb" in workers:
            a0, a1 = setup["arcticdb"]["bytes"], sizes["arcticdb"]["bytes"]
            ours0 = s_now["bars"]["total"]
            rows_c += [
                ["ArcticDB LMDB after the writes (bars only, MiB); ours: bars table", f"{ours0 / mib:,.1f}", f"{a0 / mib:,.1f}",
                 f"ours / ArcticDB {ours0 / a0:.2f}x"],
                ["ArcticDB bytes added by the 10 loads, per corrected bar (whole-symbol versions); ours: bars_history",
                 f"{a_now.get('bars_h', {}).get('total', 0) / corr_rows:,.0f}", f"{(a1 - a0) / corr_rows:,.0f}",
                 f"ours / ArcticDB {a_now.get('bars_h', {}).get('total', 0) / max(1, a1 - a0):.3f}x"],
            ]
        out.table("(c) storage: now (with history) vs before; the last rows vs ArcticDB", ["what", "now", "before / ArcticDB", "ratio"],
                  rows_c)
        r_bars = s_now["bars"]["total"] / s_bef["bars"]["total"]
        r_view = s_now["view"]["total"] / s_bef["view"]["total"]
        out.check("bars table bytes after the ingest, now / before", r_bars, "<= 1.00x (load_id in the padding)", r_bars <= 1.0)
        out.check("view table bytes after the ingest, now / before", r_view, "<= 1.00x (load_id in the padding)", r_view <= 1.0)
        out.check("history bytes per corrected bar (report)", hist / corr_rows, "report", True, unit="B")

        # -- corrections ----------------------------------------------------------------------------
        med = {k: statistics.median(v) for k, v in load_s.items()}
        med1 = {k: statistics.median(v) for k, v in one_s.items()}
        per_load = corr_rows // N_LOADS
        rows_d = [
            [f"one correction load of 0.1% of bars ({per_load:,} bars), median of {N_LOADS}", f"{med['now'] * 1e3:,.1f}",
             f"{med['before'] * 1e3:,.1f}", f"{med['now'] / med['before']:.2f}x"],
            [f"one-row correction (ingest of 1 changed bar, view recomputed), median of {n_one}", f"{med1['now'] * 1e3:,.1f}",
             f"{med1['before'] * 1e3:,.1f}", f"{med1['now'] / med1['before']:.2f}x"],
        ]
        out.table("(d) correction time: now (history kept) / before (ms)", ["what", "now", "before", "now / before"], rows_d)
        out.check("correction load (0.1% of bars) now / before", med["now"] / med["before"], "report", True)
        out.check("one-row correction now / before", med1["now"] / med1["before"], "report", True)
        out.check("one-row correction with the view, now (the symbol's recompute inside)", med1["now"] * 1e3,
                  "report (issue 13: <= 3 ms + the recompute)", True, unit="ms")

        if "arcticdb" in workers:
            rows_e += [
                [f"correction load, 0.1% of bars (ArcticDB: read_batch + patch + write_batch of the symbols), median of {N_LOADS}",
                 f"{med['now'] * 1e3:,.1f}", f"{med['arcticdb'] * 1e3:,.1f}", f"{med['now'] / med['arcticdb']:.2f}x"],
                [f"one-row correction (ours: ingest, view recomputed; ArcticDB: update), median of {n_one}",
                 f"{med1['now'] * 1e3:,.1f}", f"{med1['arcticdb'] * 1e3:,.1f}", f"{med1['now'] / med1['arcticdb']:.2f}x"],
            ]
            out.table("(e) ours (now) / ArcticDB on the same bars and corrections (ms; ArcticDB holds the bars only)",
                      ["what", "ours", "ArcticDB", "ours / ArcticDB"], rows_e)
            ra = res_all["range_bars"]
            out.check("range read 50 symbols as_known_at, ours / ArcticDB read(as_of)",
                      ra["now as_known_at"][0] / ra["arcticdb as_of"][0], "report", True)
            out.check("one-row correction, ours (with view) / ArcticDB update (bars only)", med1["now"] / med1["arcticdb"],
                      "report", True)
        if args.explain:
            for q in ("range_features", "latest_1", "latest_1000"):
                for wname, known in (("before", False), ("now", False), ("now", True)):
                    out.say()
                    out.say(f"EXPLAIN (ANALYZE, BUFFERS) {q}, {wname}, {'as_known_at' if known else 'current'}:")
                    out.say()
                    out.say("```")
                    out.say(workers[wname]("explain", name=q, known=known))
                    out.say("```")
        out.checks_table()
    finally:
        for w in workers.values():
            w.close()
        server.stop()
        for tree in trees:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    out.write()


if __name__ == "__main__":
    main()
