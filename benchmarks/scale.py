"""Scale on one machine: how each operation's cost grows from 1M to 100M stored bars.

Data: one-minute OHLCV for 2,000 symbols (seeded random walks; 390 bars a trading day, no bars
overnight or at weekends, 1% of the symbols listed late, 0.5% halted for three days, 5% illiquid
with a tenth of their minutes missing). The store holds the seven seed indicators as one view
(sma_20, ema_50, rsi_14, macd_12_26_9, bbands_20_2, atr_14, adx_14: 11 columns). The history is
bulk-loaded in steps (1M, 10M, 30M, 100M stored bars; ``--quick``: 1M and 4M), each step a
directory of Parquet files (5M rows a file) loaded by ``FeatureStore.load`` in a fresh worker
process, the way a user bulk-loads history. After each step, measured in the same run:

- load: rows/s of the step that reached the size, peak RSS of the loading process (VmHWM);
- daily append: one new bar for each trading symbol (~2,000 rows), all indicators, median of 20;
- correction of one old bar (the middle of the symbol's history, and one day back), median of 3;
- range reads: 100 symbols over 10% of the span (bars; view), all symbols over one day (bars; view),
  rows/s, median of 3;
- ``get_latest`` with the view, cache off: 1 symbol p50/p99 of 500 calls, 1,000 symbols median of 5;
- training frames: 10k events over the whole span (sparse) and 1M events over the whole span
  (dense), three features, against the hand-written pipeline a user would write (an ADBC read of
  those columns over the events' time range, then ``pandas.merge_asof``); and 1M events over the
  last ~5M rows against the same pipeline;
- storage: bytes per bar row of bars and of the view (table and indexes apart), knowledge-time
  history and checkpoints; ``VACUUM (ANALYZE)`` time; ``create_view`` backfilling a new
  3-indicator view over everything (then dropped);
- ArcticDB (6.28.2, LMDB, in its own virtual environment: it needs pandas < 3) on the same bars,
  appended step by step: ``read_batch`` of 100 symbols' full history (bars; the view's 11 features,
  copied from the store) against ``get_bars``/``get_features``, and bytes per bar row.

Results are written after every size (a run stopped early keeps its finished sizes). Targets are
ratios of the largest size's figure to the smallest's (see the Targets table).

    python benchmarks/scale.py [--quick] [--sizes 1M,10M,30M,100M] [--workdir DIR] [--no-arcticdb]
"""

from __future__ import annotations

import argparse
import gc
import json
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
SEED_VIEW = ["sma_20", "ema_50", "rsi_14", "macd_12_26_9", "bbands_20_2", "atr_14", "adx_14"]
NEW_VIEW = ["sma_50", "rsi_30", "ema_20"]
TRAIN_COLS = ["sma_20", "rsi_14", "macd_12_26_9"]
ARCTICDB = "arcticdb==6.28.2"
ARCTIC_VENV = Path.home() / ".cache" / "featurestore" / "bench-arcticdb"
MINUTES_A_DAY = 390
FILE_ROWS = 5_000_000
MONDAY_US = 1704067200 * 10**6 + (14 * 60 + 30) * 60 * 10**6  # 2024-01-01 14:30 UTC (09:30 New York)
MIN_US = 60 * 10**6
DAY_US = 86_400 * 10**6


def parse_size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 10**3, "M": 10**6, "G": 10**9}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * mult)


def fmt_size(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 10**6 else f"{n / 1e3:g}k"


# -- data --------------------------------------------------------------------------------------


def minute_ts(idx: np.ndarray) -> np.ndarray:
    """µs timestamps of trading minutes ``idx`` (390 a weekday, from Monday 2024-01-01)."""
    day, minute = np.divmod(idx, MINUTES_A_DAY)
    week, weekday = np.divmod(day, 5)
    return MONDAY_US + (week * 7 + weekday) * DAY_US + minute * MIN_US


class Market:
    """A seeded minute-bar market for ``n`` symbols, produced in time order, minute block by block."""

    def __init__(self, n: int, total_rows: int, seed: int = 7) -> None:
        self.n = n
        self.rng = np.random.default_rng(seed)
        self.symbols = np.array([f"S{i:04d}" for i in range(n)])
        span = int(total_rows / n * 1.08) + MINUTES_A_DAY  # minutes the full plan covers, roughly
        self.listed = np.zeros(n, dtype=np.int64)
        late = self.rng.choice(n, max(1, n // 100), replace=False)
        self.listed[late] = (self.rng.uniform(0.1, 0.5, late.size) * span).astype(np.int64)
        self.halt_from = np.full(n, -1, dtype=np.int64)
        halted = self.rng.choice(n, max(1, n // 200), replace=False)
        self.halt_from[halted] = (self.rng.uniform(0.2, 0.8, halted.size) * span).astype(np.int64)
        self.illiquid = np.zeros(n, dtype=bool)
        self.illiquid[self.rng.choice(n, max(1, n // 20), replace=False)] = True
        self.close = 100 * np.exp(self.rng.normal(0, 0.5, n))
        self.minute = 0  # next minute to produce
        self.rows = 0

    def active(self, mins: np.ndarray) -> np.ndarray:
        """(minutes, symbols) mask of who trades when."""
        m = mins[:, None]
        act = m >= self.listed[None, :]
        act &= ~((self.halt_from[None, :] >= 0) & (m >= self.halt_from[None, :])
                 & (m < self.halt_from[None, :] + 3 * MINUTES_A_DAY))
        miss = self.rng.random((mins.size, self.n)) < 0.1
        act &= ~(miss & self.illiquid[None, :])
        return act

    def block(self, n_minutes: int, max_rows: int | None = None) -> dict[str, np.ndarray]:
        """The next ``n_minutes`` minutes' bars (fewer minutes when ``max_rows`` is reached)."""
        mins = np.arange(self.minute, self.minute + n_minutes, dtype=np.int64)
        act = self.active(mins)
        if max_rows is not None:
            per_min = np.cumsum(act.sum(axis=1))
            keep = int(np.searchsorted(per_min, max_rows, side="left")) + 1
            mins, act = mins[:keep], act[:keep]
        rets = self.rng.normal(0, 0.0008, act.shape) * act
        close = self.close[None, :] * np.exp(np.cumsum(rets, axis=0))
        prev = np.vstack([self.close[None, :], close[:-1]])
        self.close = close[-1].copy()
        self.minute = int(mins[-1]) + 1 if mins.size else self.minute
        # symbol-major order (each symbol's minutes together), as a per-symbol file would be
        t_idx, s_idx = np.nonzero(act)  # (minute, symbol) pairs in minute-major order
        order = np.lexsort((t_idx, s_idx))
        t_idx, s_idx = t_idx[order], s_idx[order]
        c = close[t_idx, s_idx]
        o = prev[t_idx, s_idx]
        spread = np.abs(self.rng.normal(0, 0.0005, c.size))
        hi = np.maximum(o, c) * (1 + spread)
        lo = np.minimum(o, c) * (1 - spread)
        vol = np.round(self.rng.lognormal(7, 1, c.size))
        self.rows += c.size
        return {"symbol": self.symbols[s_idx], "ts": minute_ts(mins[t_idx]), "open": o, "high": hi,
                "low": lo, "close": c, "volume": vol}


def write_parquet(block: dict[str, np.ndarray], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "symbol": pa.array(block["symbol"]).dictionary_encode(),
        "ts": pa.array(block["ts"], type=pa.timestamp("us", tz="UTC")),
        **{k: pa.array(block[k]) for k in ("open", "high", "low", "close", "volume")},
    })
    pq.write_table(table, path, compression="zstd")


def step_files(market: Market, rows: int, directory: Path) -> int:
    """Parquet files of the next ``rows`` bars under ``directory``; the rows written."""
    directory.mkdir(parents=True, exist_ok=True)
    written, k = 0, 0
    minutes = max(1, FILE_ROWS // market.n)
    while written < rows:
        block = market.block(minutes, max_rows=rows - written)
        write_parquet(block, directory / f"part-{k:04d}.parquet")
        written += block["close"].size
        k += 1
    return written


def frame(block: dict[str, np.ndarray]) -> Any:
    import pandas as pd

    df = pd.DataFrame({k: v for k, v in block.items() if k != "ts"})
    df.insert(1, "ts", pd.to_datetime(block["ts"], unit="us", utc=True))
    return df


# -- workers -------------------------------------------------------------------------------------


def vmhwm() -> int:
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def load_worker(url: str, directory: Path) -> None:
    """Load one step's directory in this fresh process; print the result as JSON."""
    import featurestore as fs

    store = fs.FeatureStore(url, cache=None)
    rss0 = vmhwm()
    t0 = time.perf_counter()
    res = store.load(str(directory), progress=False)
    secs = time.perf_counter() - t0
    store.close()
    print(json.dumps({"seconds": secs, "rows": res.rows_in, "inserted": res.inserted, "vmhwm": vmhwm(),
                      "vmhwm_before": rss0, "result_peak": res.peak_rss_bytes, "phases": res.phases,
                      "held_rows_peak": getattr(res, "held_rows_peak", None)}))


def arctic_worker(path: Path) -> None:
    """ArcticDB on LMDB, as a :mod:`_worker` process."""
    channel = answers()
    import arcticdb as adb
    import pandas as pd
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    lib = adb.Arctic(f"lmdb://{path}?map_size=200GB").get_library("bench", create_if_missing=True)

    def nbytes() -> int:
        return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())

    def by_symbol(df: Any) -> list[Any]:
        out = []
        for sym, g in df.groupby("symbol", sort=False, observed=True):
            g = g.drop(columns="symbol").set_index("ts")
            out.append(adb.WritePayload(str(sym), g))
        return out

    def handle(op: str, cmd: dict[str, Any]) -> Any:
        if op == "append":
            t0 = time.perf_counter()
            for f in sorted(Path(cmd["dir"]).glob("*.parquet")):
                df = pq.read_table(f).to_pandas()
                df["symbol"] = df["symbol"].astype(str)
                lib.append_batch(by_symbol(df))
            return {"seconds": time.perf_counter() - t0, "bytes": nbytes()}
        if op == "write_features":
            df = pq.read_table(cmd["file"]).to_pandas()
            df["symbol"] = df["symbol"].astype(str)
            lib.write_batch([adb.WritePayload("F_" + p.symbol, p.data) for p in by_symbol(df)])
            return {}
        if op == "read":
            names = cmd["symbols"] if not cmd.get("features") else ["F_" + s for s in cmd["symbols"]]
            times, rows = [], 0
            for _ in range(cmd["repeats"]):
                t0 = time.perf_counter()
                got = lib.read_batch(names)
                times.append(time.perf_counter() - t0)
                missing = [n for n, x in zip(names, got) if not hasattr(x, "data")]
                if missing:
                    raise KeyError(f"{len(missing)} symbols not in ArcticDB, e.g. {missing[:3]}")
                rows = sum(len(x.data) for x in got)
                del got
            return {"seconds": statistics.median(times), "rows": rows}
        raise ValueError(op)

    serve(channel, f"arcticdb {adb.__version__}, pandas {pd.__version__}", handle)


class Arctic(Worker):
    """The driver's end of :func:`arctic_worker`."""

    def __init__(self, python: str, path: Path) -> None:
        super().__init__("arcticdb", [python, __file__, "--arctic-worker", str(path)])


def arctic_python(given: str | None) -> str:
    if given:
        return given
    py = ARCTIC_VENV / "bin" / "python"
    ok = py.exists() and subprocess.run([str(py), "-c", "import arcticdb"], capture_output=True).returncode == 0
    if not ok:
        print(f"making {ARCTIC_VENV} with {ARCTICDB} (once)", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(ARCTIC_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", ARCTICDB, "pyarrow"], check=True)
    return str(py)


# -- measurements ----------------------------------------------------------------------------------


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median_time(fn: Any, repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        s, out = timed(fn)
        times.append(s)
    return statistics.median(times), out


class Driver:
    def __init__(self, args: Any, res: Any) -> None:
        import featurestore as fs

        self.args, self.res = args, res
        self.work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="fs-scale-"))
        self.work.mkdir(parents=True, exist_ok=True)
        if args.on_store:  # a store a full run left (its server still up): measure, change nothing
            self.store = fs.FeatureStore(args.on_store, cache=None)
        else:
            self.store = fs.FeatureStore(home=self.work / "home", cache=None)
        self.url = str(self.store.db.engine.url.render_as_string(hide_password=False))
        if not args.on_store:
            self.store.create_view("seed", SEED_VIEW)
        self.table = self.store.describe_view("seed")["table"]
        self.columns = self.store.describe_view("seed")["columns"]
        self.market = Market(args.symbols, max(args.sizes), seed=args.seed)
        self.rng = np.random.default_rng(args.seed + 1)
        self.rows: dict[int, dict[str, Any]] = {}
        self.arctic: Arctic | None = None
        if not args.no_arcticdb and not args.on_store:
            self.arctic = Arctic(arctic_python(args.arcticdb_python), self.work / "arctic")
            res.setting("arcticdb", self.arctic.info)

    def sql(self, text: str, params: Any = None) -> list[tuple[Any, ...]]:
        return self.store.db.run(lambda c: c.execute(text, params).fetchall())

    def span(self) -> tuple[int, int]:
        lo, hi = self.sql("SELECT min(ts), max(ts) FROM bars")[0]
        return int(lo.timestamp() * 1e6), int(hi.timestamp() * 1e6)

    def stored(self) -> int:
        return int(self.sql("SELECT count(*) FROM bars")[0][0])

    # -- one step -------------------------------------------------------------------------------

    def load_step(self, target: int) -> dict[str, Any]:
        have = self.market.rows
        d = self.work / f"step-{fmt_size(target)}"
        gen_s, _ = timed(lambda: step_files(self.market, target - have, d))
        out = subprocess.run([sys.executable, __file__, "--load-worker", str(d), "--url", self.url],
                             capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"load worker failed:\n{out.stderr[-4000:]}")
        info = json.loads(out.stdout.strip().splitlines()[-1])
        if self.arctic is not None:
            info["arctic"] = self.arctic("append", dir=str(d))
        shutil.rmtree(d, ignore_errors=True)
        info["generate_s"] = gen_s
        return info

    def appends(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            block = self.market.block(1)
            df = frame(block)
            s, r = timed(lambda: self.store.ingest(df, progress=False))
            assert r.inserted == len(df), r
            times.append(s)
        return times

    def corrections(self, where: str) -> list[float]:
        times = []
        for _ in range(3):
            sym = str(self.rng.choice(self.market.symbols))
            rows = self.sql(
                "SELECT count(*) FROM bars b JOIN entities e USING (entity_id) WHERE e.symbol = %s", (sym,))
            n = int(rows[0][0])
            k = n // 2 if where == "middle" else max(0, n - MINUTES_A_DAY)
            row = self.sql(
                "SELECT b.ts, b.open, b.high, b.low, b.close, b.volume FROM bars b JOIN entities e USING (entity_id) "
                "WHERE e.symbol = %s ORDER BY b.ts OFFSET %s LIMIT 1", (sym, k))[0]
            import pandas as pd

            ts, o, h, lo, c, v = row
            df = pd.DataFrame({"symbol": [sym], "ts": [pd.Timestamp(ts)], "open": [o], "high": [h], "low": [lo],
                               "close": [(c + h) / 2 if h > c else (c + lo) / 2], "volume": [v]})
            s, r = timed(lambda: self.store.ingest(df, progress=False))
            assert r.updated == 1, r
            times.append(s)
        return times

    def reads(self, lo: int, hi: int) -> dict[str, Any]:
        import pandas as pd

        syms = sorted(self.rng.choice(self.market.symbols, min(100, self.market.n), replace=False).tolist())
        m = self.market.minute  # trading minutes so far: windows in trading time, not calendar time
        a, b = (pd.Timestamp(int(minute_ts(np.int64(x))), unit="us", tz="UTC") for x in (0.45 * m, 0.55 * m))
        day = (m // MINUTES_A_DAY) // 2
        d0 = pd.Timestamp(int(minute_ts(np.int64(day * MINUTES_A_DAY))), unit="us", tz="UTC")
        d1 = d0 + pd.Timedelta(days=1)
        out: dict[str, Any] = {}
        cases = {
            "100 symbols x 10% of span, bars": lambda: self.store.get_bars(syms, a, b),
            "100 symbols x 10% of span, view": lambda: self.store.get_features(syms, a, b, view="seed"),
            "all symbols x 1 day, bars": lambda: self.store.get_bars(list(self.market.symbols), d0, d1),
            "all symbols x 1 day, view": lambda: self.store.get_features(list(self.market.symbols), d0, d1, view="seed"),
        }
        for name, fn in cases.items():
            fn()  # warm
            s, df = median_time(fn, 3)
            out[name] = {"seconds": s, "rows": len(df)}
            del df
        return out

    def full_history(self) -> dict[str, Any]:
        """100 symbols' whole history, ours and ArcticDB's read_batch."""
        # among the symbols listed by now: a late listing has no history yet, in either store
        listed = self.market.symbols[self.market.listed < self.market.minute]
        syms = sorted(np.random.default_rng(3).choice(listed, min(100, listed.size), replace=False).tolist())
        out: dict[str, Any] = {}
        for name, fn in {
            "bars": lambda: self.store.get_bars(syms),
            "view": lambda: self.store.get_features(syms, view="seed"),
        }.items():
            fn()
            s, df = median_time(fn, 3)
            out[name] = {"seconds": s, "rows": len(df)}
            if name == "view" and self.arctic is not None:
                f = self.work / "features.parquet"
                df.reset_index(drop=False).to_parquet(f) if "symbol" not in df.columns else df.to_parquet(f)
            del df
        if self.arctic is not None:
            self.arctic("write_features", file=str(self.work / "features.parquet"))
            out["arctic bars"] = self.arctic("read", symbols=syms, repeats=3)
            out["arctic view"] = self.arctic("read", symbols=syms, repeats=3, features=True)
        return out

    def latest(self) -> dict[str, Any]:
        syms = self.market.symbols.tolist()
        times = []
        for _ in range(20):  # warm the plan cache and pool
            self.store.get_latest(str(self.rng.choice(syms)), view="seed")
        for _ in range(500):
            s, _ = timed(lambda: self.store.get_latest(str(self.rng.choice(syms)), view="seed"))
            times.append(s)
        thousand = sorted(self.rng.choice(syms, min(1000, len(syms)), replace=False).tolist())
        self.store.get_latest(thousand, view="seed")
        s1000, df = median_time(lambda: self.store.get_latest(thousand, view="seed"), 5)
        return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99)), "1000": s1000,
                "1000_rows": len(df)}

    def training(self, lo: int, hi: int, repeats: int = 1) -> dict[str, Any]:
        import pandas as pd

        syms = self.market.symbols
        out: dict[str, Any] = {}
        # first use in the process (imports, kernels loaded from numba's cache) is not what is measured
        warm = pd.DataFrame({"symbol": syms[:100], "ts": pd.to_datetime(np.full(100, hi), unit="us", utc=True)})
        for strategy in ("auto", "range", "per_event"):
            self.store.get_training_frame(warm, view="seed", columns=TRAIN_COLS, strategy=strategy)
        self.hand_pipeline(warm)
        last5 = max(lo, hi - (5_000_000 // len(syms)) * MIN_US * 7 // 5)  # ~5M rows back (weekends included)
        cases = {"sparse 10k over span": (10_000, lo), "dense 1M over span": (1_000_000, lo),
                 "dense 1M over last ~5M rows": (1_000_000, last5)}
        for name, (n, start) in cases.items():
            ev = pd.DataFrame({
                "symbol": syms[self.rng.integers(0, len(syms), n)],
                "ts": pd.to_datetime(self.rng.integers(start, hi, n), unit="us", utc=True),
            })
            # the hand pipeline reads every row from its first event on (stable, and minutes at
            # 100M): timed once; so is the dense frame over the whole span
            reps = 1 if (n >= 1_000_000 and start == lo) else repeats
            ours_s, got = median_time(lambda: self.store.get_training_frame(ev, view="seed", columns=TRAIN_COLS), reps)
            hand_s, want = timed(lambda: self.hand_pipeline(ev))
            self.check_same(got, want, name)
            out[name] = {"ours": ours_s, "hand": hand_s, "events": n}
            del got
            # each strategy forced, to tell whether the automatic choice was the right one
            for strategy in ("range", "per_event"):
                s, got = median_time(lambda: self.store.get_training_frame(ev, view="seed", columns=TRAIN_COLS,
                                                                           strategy=strategy), reps)
                self.check_same(got, want, f"{name} ({strategy})")
                out[name][strategy] = s
                del got
            del want
            gc.collect()
        return out

    def hand_pipeline(self, ev: Any) -> Any:
        """What a user writes without the store: an ADBC read of the needed columns over the
        events' time range, then pandas.merge_asof by symbol."""
        import adbc_driver_postgresql.dbapi as adbc
        import pandas as pd

        from featurestore.config import libpq_url, normalize_url

        lo, hi = ev["ts"].min(), ev["ts"].max()
        cols = ", ".join(f'f."{c}"' for c in TRAIN_COLS)
        query = (f"SELECT f.entity_id, f.ts, {cols} FROM {self.table} f "
                 f"WHERE f.ts >= '{(lo - pd.Timedelta(days=7)).isoformat()}'::timestamptz "
                 f"AND f.ts <= '{hi.isoformat()}'::timestamptz")
        with adbc.connect(libpq_url(normalize_url(self.url))) as conn, conn.cursor() as cur:
            cur.execute(query)
            feats = cur.fetch_arrow_table().to_pandas()
        # a week before the first event covers the row before it (nights, weekends, 3-day halts)
        ids = dict(self.sql("SELECT symbol, entity_id FROM entities"))
        feats = feats.sort_values("ts", kind="stable")
        left = ev.assign(_i=np.arange(len(ev)), entity_id=ev["symbol"].map(ids).fillna(-1).astype("int32"))
        left = left.sort_values("ts", kind="stable")
        merged = pd.merge_asof(left, feats.rename(columns={"ts": "_fts"}), left_on="ts", right_on="_fts",
                               by="entity_id", direction="backward")
        return merged.sort_values("_i").reset_index(drop=True)

    def check_same(self, got: Any, want: Any, name: str) -> None:
        for c in TRAIN_COLS:
            a = got[c].to_numpy(dtype=float)
            b = want[c].to_numpy(dtype=float)
            if not np.array_equal(a, b, equal_nan=True):
                bad = int(np.flatnonzero(~((a == b) | (np.isnan(a) & np.isnan(b))))[0])
                raise AssertionError(f"training frame {name}: column {c} differs from the hand pipeline at event {bad}")

    def storage(self) -> dict[str, Any]:
        def sizes(name: str) -> tuple[int, int]:
            r = self.sql("SELECT pg_table_size(c.oid), pg_indexes_size(c.oid) FROM pg_class c WHERE c.relname = %s "
                         "AND c.relkind = 'r'", (name,))
            return (int(r[0][0]), int(r[0][1])) if r else (0, 0)

        out = {name: sizes(name) for name in ("bars", self.table, "bars_history", self.table + "_h",
                                             "indicator_checkpoints", "indicator_state")}
        return out

    def vacuum(self) -> float:
        def run(conn: Any) -> None:
            conn.execute("VACUUM (ANALYZE) bars")
            conn.execute(f'VACUUM (ANALYZE) "{self.table}"')

        t0 = time.perf_counter()
        with self.store.db.engine.connect() as sa:
            raw = sa.connection.driver_connection
            raw.autocommit = True
            run(raw)
        return time.perf_counter() - t0

    def backfill(self) -> float:
        s, _ = timed(lambda: self.store.create_view("extra", NEW_VIEW, progress=False))
        self.store.drop_view("extra")
        return s


# -- the run ------------------------------------------------------------------------------------------


def report(res: Any, rows: dict[int, dict[str, Any]], final: bool) -> None:
    sizes = sorted(rows)
    res.body.clear()
    res.tables.clear()
    res.checks.clear()
    head = ["measure", *[fmt_size(n) for n in sizes], "largest / smallest"]

    def line(name: str, vals: list[float], fmt: str = "{:,.1f}") -> list[str]:
        ratio = vals[-1] / vals[0] if vals and vals[0] else float("nan")
        return [name, *[fmt.format(v) for v in vals], f"{ratio:.2f}x"]

    def get(path: str) -> list[float]:
        out = []
        for n in sizes:
            v: Any = rows[n]
            for k in path.split("/"):
                v = v[k]
            out.append(float(v))
        return out

    res.say("Stored bars at each size are exact counts; each column is measured right after the step that "
            "reached it (same run, same server).")
    t = []
    load_rate = [rows[n]["load"]["rows"] / rows[n]["load"]["seconds"] for n in sizes]
    t.append(line("bulk load of the step, rows/s (fresh process, Parquet, 7-indicator view)", load_rate, "{:,.0f}"))
    t.append(line("  rows in the step", get("load/rows"), "{:,.0f}"))
    t.append(line("  peak RSS of the loading process, MiB (VmHWM)", [x / 2**20 for x in get("load/vmhwm")], "{:,.0f}"))
    t.append(line("daily append, ~2,000 symbols x 1 bar, ms (median of 20)", [1e3 * statistics.median(rows[n]["append"]) for n in sizes]))
    t.append(line("correction of 1 bar, middle of history, ms (median of 3)", [1e3 * statistics.median(rows[n]["correct_middle"]) for n in sizes]))
    t.append(line("correction of 1 bar, 1 day back, ms (median of 3)", [1e3 * statistics.median(rows[n]["correct_day"]) for n in sizes]))
    for name in ("100 symbols x 10% of span, bars", "100 symbols x 10% of span, view",
                 "all symbols x 1 day, bars", "all symbols x 1 day, view"):
        t.append(line(f"range read {name}, rows/s", [rows[n]["reads"][name]["rows"] / rows[n]["reads"][name]["seconds"] for n in sizes], "{:,.0f}"))
        t.append(line(f"  rows returned ({name})", [rows[n]["reads"][name]["rows"] for n in sizes], "{:,.0f}"))
    t.append(line("get_latest 1 symbol, cache off, p50 ms (500 calls)", [1e3 * x for x in get("latest/p50")], "{:,.2f}"))
    t.append(line("get_latest 1 symbol, cache off, p99 ms", [1e3 * x for x in get("latest/p99")], "{:,.2f}"))
    t.append(line("get_latest 1,000 symbols, ms (median of 5)", [1e3 * x for x in get("latest/1000")]))
    for name in ("sparse 10k over span", "dense 1M over span", "dense 1M over last ~5M rows"):
        t.append(line(f"training frame, {name}, s", get(f"training/{name}/ours"), "{:,.2f}"))
        t.append(line(f"  hand pipeline (ADBC + merge_asof), {name}, s", get(f"training/{name}/hand"), "{:,.2f}"))
        t.append(line(f"  hand / ours, {name}", [rows[n]["training"][name]["hand"] / rows[n]["training"][name]["ours"] for n in sizes], "{:,.2f}"))
        if all("range" in rows[n]["training"][name] for n in sizes):
            for strategy in ("range", "per_event"):
                t.append(line(f"  strategy={strategy!r} forced, {name}, s", get(f"training/{name}/{strategy}"), "{:,.2f}"))
    t.append(line("full history, 100 symbols, bars, rows/s", [rows[n]["full"]["bars"]["rows"] / rows[n]["full"]["bars"]["seconds"] for n in sizes], "{:,.0f}"))
    t.append(line("full history, 100 symbols, view (11 features), rows/s", [rows[n]["full"]["view"]["rows"] / rows[n]["full"]["view"]["seconds"] for n in sizes], "{:,.0f}"))
    has_arctic = all("arctic bars" in rows[n]["full"] for n in sizes)
    if has_arctic:
        t.append(line("  ArcticDB read_batch, bars, rows/s", [rows[n]["full"]["arctic bars"]["rows"] / rows[n]["full"]["arctic bars"]["seconds"] for n in sizes], "{:,.0f}"))
        t.append(line("  ArcticDB read_batch, view, rows/s", [rows[n]["full"]["arctic view"]["rows"] / rows[n]["full"]["arctic view"]["seconds"] for n in sizes], "{:,.0f}"))
        t.append(line("  ours / ArcticDB time, bars", [rows[n]["full"]["bars"]["seconds"] / rows[n]["full"]["arctic bars"]["seconds"] for n in sizes], "{:,.2f}"))
        t.append(line("  ours / ArcticDB time, view", [rows[n]["full"]["view"]["seconds"] / rows[n]["full"]["arctic view"]["seconds"] for n in sizes], "{:,.2f}"))
    stored = get("stored")
    for name, label in (("bars", "bars"), ("view", "7-indicator view")):
        tb = [rows[n]["storage"][name][0] / rows[n]["stored"] for n in sizes]
        ib = [rows[n]["storage"][name][1] / rows[n]["stored"] for n in sizes]
        t.append(line(f"{label}: table bytes per bar row", tb))
        t.append(line(f"{label}: index bytes per bar row", ib))
    t.append(line("knowledge history + checkpoints + state, bytes per bar row",
                  [sum(sum(rows[n]["storage"][k]) for k in ("bars_history", "view_h", "indicator_checkpoints", "indicator_state")) / rows[n]["stored"] for n in sizes]))
    if has_arctic:
        t.append(line("  ArcticDB bytes per bar row (LMDB, allocated)", [rows[n]["arctic_bytes"] / rows[n]["stored"] for n in sizes]))
        t.append(line("  ours (bars table + indexes) / ArcticDB bytes", [sum(rows[n]["storage"]["bars"]) / rows[n]["arctic_bytes"] for n in sizes], "{:,.2f}"))
    t.append(line("VACUUM (ANALYZE) bars + view, s", get("vacuum"), "{:,.1f}"))
    t.append(line("create_view backfill of a new 3-indicator view over everything, s", get("backfill"), "{:,.1f}"))
    t.append(line("  backfill rows/s", [rows[n]["stored"] / rows[n]["backfill"] for n in sizes], "{:,.0f}"))
    t.append(line("stored bars", stored, "{:,.0f}"))
    res.table("Cost vs stored bars", head, t)

    if len(sizes) < 2:
        return
    a, b = sizes[0], sizes[-1]
    tag = f"{fmt_size(b)} / {fmt_size(a)}"

    def ratio(x: float, y: float) -> float:
        return x / y if y else float("nan")

    la, lb = load_rate[0], load_rate[-1]
    res.check(f"load rate, {tag}", ratio(lb, la), ">= 0.8x", ratio(lb, la) >= 0.8)
    for key, label in (("append", "daily append"), ("correct_middle", "correction (middle)"),
                       ("correct_day", "correction (1 day back)")):
        r = ratio(statistics.median(rows[b][key]), statistics.median(rows[a][key]))
        res.check(f"{label}, {tag}", r, "<= 1.3x", r <= 1.3)
    r = ratio(rows[b]["latest"]["p50"], rows[a]["latest"]["p50"])
    res.check(f"get_latest 1 symbol p50, {tag}", r, "<= 1.3x", r <= 1.3)
    r = ratio(rows[b]["latest"]["1000"], rows[a]["latest"]["1000"])
    res.check(f"get_latest 1,000 symbols, {tag}", r, "<= 1.3x", r <= 1.3)
    for name in ("100 symbols x 10% of span, bars", "100 symbols x 10% of span, view",
                 "all symbols x 1 day, bars", "all symbols x 1 day, view"):
        ra = rows[a]["reads"][name]["rows"] / rows[a]["reads"][name]["seconds"]
        rb = rows[b]["reads"][name]["rows"] / rows[b]["reads"][name]["seconds"]
        res.check(f"range read rows/s, {name}, {tag}", ratio(rb, ra), "0.8x-1.25x", 0.8 <= ratio(rb, ra) <= 1.25)
    r = ratio(rows[b]["training"]["sparse 10k over span"]["ours"], rows[a]["training"]["sparse 10k over span"]["ours"])
    res.check(f"training frame, sparse 10k events, time {tag}", r, "<= 1.5x", r <= 1.5)
    training_checks(res, rows[b]["training"], fmt_size(b))
    if has_arctic:
        for what in ("bars", "view"):
            r = rows[b]["full"][what]["seconds"] / rows[b]["full"]["arctic " + what]["seconds"]
            res.check(f"full history, 100 symbols, {what}: ours / ArcticDB read_batch at {fmt_size(b)}", r, "<= 1.0x", r <= 1.0)
        r = sum(rows[b]["storage"]["bars"]) / rows[b]["arctic_bytes"]
        res.check(f"bars bytes per row, ours / ArcticDB at {fmt_size(b)}", r, "<= 1.5x", r <= 1.5)
    res.checks_table()


def training_checks(res: Any, tr: dict[str, Any], at: str) -> None:
    """The training-frame targets at one size: dense <= 1.2x the hand pipeline, sparse >= 10x
    faster than it, and the automatic strategy within 15% of the faster forced one."""
    d = tr["dense 1M over last ~5M rows"]
    r = d["ours"] / d["hand"]
    res.check(f"training frame dense (1M events over ~5M rows) / hand pipeline at {at}", r, "<= 1.2x", r <= 1.2)
    sp = tr["sparse 10k over span"]
    r = sp["hand"] / sp["ours"]
    res.check(f"training frame sparse (10k events over the span): hand pipeline / ours at {at}", r, ">= 10x", r >= 10)
    for name, case in tr.items():
        if "range" in case:
            best = min(case["range"], case["per_event"])
            pick = "per_event" if case["per_event"] < case["range"] else "range"
            r = case["ours"] / best
            res.check(f"training frame {name}: automatic strategy / the faster forced one ({pick}) at {at}", r,
                      "<= 1.15x", r <= 1.15)


def minute_index(ts_us: int) -> int:
    """The trading-minute index of a timestamp :func:`minute_ts` made (its inverse)."""
    days, rest = divmod(ts_us - MONDAY_US, DAY_US)
    week, weekday = divmod(days, 7)
    return int((week * 5 + weekday) * MINUTES_A_DAY + rest // MIN_US)


def load_check(drv: Driver, res: Any, rows: int) -> None:
    """Bulk-load ``rows`` new bars (after the store's last minute) from Parquet in a fresh worker
    with this checkout's code and the default load_memory_rows: peak RSS and rows/s on the big store."""
    from featurestore.config import DEFAULT_LOAD_MEMORY_ROWS

    market = Market(drv.market.n, rows, seed=drv.args.seed + 99)
    market.minute = minute_index(drv.span()[1]) + 1
    d = drv.work / "load-check"
    gen_s, written = timed(lambda: step_files(market, rows, d))
    out = subprocess.run([sys.executable, __file__, "--load-worker", str(d), "--url", drv.url],
                         capture_output=True, text=True)
    shutil.rmtree(d, ignore_errors=True)
    if out.returncode:
        raise RuntimeError(f"load worker failed:\n{out.stderr[-4000:]}")
    info = json.loads(out.stdout.strip().splitlines()[-1])
    res.record("load_check", info)
    res.table(f"A {written:,}-row load from Parquet into the {fmt_size(drv.stored() - written)} store (this checkout's code)",
              ["what", "value"],
              [["rows/s", f"{info['rows'] / info['seconds']:,.0f}"],
               ["peak RSS of the loading process (VmHWM), MiB", f"{info['vmhwm'] / 2**20:,.0f}"],
               ["most bar rows held at once (LoadResult.held_rows_peak)", f"{info['held_rows_peak']:,}"],
               ["load_memory_rows (default)", f"{DEFAULT_LOAD_MEMORY_ROWS:,}"]])


PG_DEFAULTS = {"random_page_cost": "4", "effective_cache_size": "4GB", "work_mem": "4MB"}


def settings_ab(drv: Driver, res: Any, lo: int, hi: int) -> None:
    """Range reads and latest under PostgreSQL's defaults and under the embedded server's own
    settings (featurestore.embedded.server_settings), alternated twice on the same server."""
    import psycopg
    from psycopg import sql

    from featurestore.config import libpq_url, normalize_url
    from featurestore.embedded import server_settings

    ours = server_settings()

    def apply(values: dict[str, str]) -> None:
        with psycopg.connect(libpq_url(normalize_url(drv.url)), autocommit=True) as conn:
            for k, v in values.items():
                conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(k), sql.Literal(v)))
            conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
        got = drv.sql("SHOW random_page_cost")[0][0]
        assert got == values["random_page_cost"], (got, values)  # the pool's sessions see the reload

    found: dict[str, list[dict[str, Any]]] = {"defaults": [], "featurestore": []}
    try:
        for _ in range(2):
            for label, values in (("defaults", PG_DEFAULTS), ("featurestore", ours)):
                apply(values)
                found[label].append({"reads": drv.reads(lo, hi), "latest": drv.latest()})
    finally:
        apply(ours)
    res.record("settings", {"defaults": PG_DEFAULTS, "featurestore": ours, "runs": found})
    rows = []
    for name in found["defaults"][0]["reads"]:
        rate = {k: statistics.median(r["reads"][name]["rows"] / r["reads"][name]["seconds"] for r in v)
                for k, v in found.items()}
        rows.append([f"range read {name}, rows/s", f"{rate['defaults']:,.0f}", f"{rate['featurestore']:,.0f}",
                     f"{rate['featurestore'] / rate['defaults']:.2f}x"])
    for key, label in (("p50", "get_latest 1 symbol p50, ms"), ("1000", "get_latest 1,000 symbols, ms")):
        v = {k: 1e3 * statistics.median(r["latest"][key] for r in runs) for k, runs in found.items()}
        rows.append([label, f"{v['defaults']:,.2f}", f"{v['featurestore']:,.2f}", f"{v['defaults'] / v['featurestore']:.2f}x"])
    res.table("PostgreSQL's default settings vs the embedded server's (same server, alternated, median of 2 rounds)",
              ["measure", "defaults " + ", ".join(f"{k}={v}" for k, v in PG_DEFAULTS.items()),
               "featurestore " + ", ".join(f"{k}={v}" for k, v in ours.items()), "speed-up"], rows)


def on_store(args: Any, Results: Any) -> None:
    """Measure training frames (each strategy) and ``info`` on a store a full run kept; with
    ``--load-check ROWS`` only bulk-load that many new bars into it (results ``scale_load``)."""
    if args.load_check:
        res = Results("scale_load", "Scale: a bulk load into the largest store, peak RSS",
                      quick=False, results_dir=args.results_dir)
        drv = Driver(args, res)
        try:
            load_check(drv, res, args.load_check)
            res.write()
        finally:
            drv.store.close()
        return
    res = Results("scale_store", "Scale: training-frame strategies and info on the largest store",
                  quick=False, results_dir=args.results_dir)
    drv = Driver(args, res)
    try:
        res.setting("PostgreSQL", drv.sql("SHOW server_version")[0][0] + " (embedded, default settings)")
        stored = drv.stored()
        res.setting("store", f"{stored:,} stored bars, left by a full run of benchmarks/scale.py (seed {args.seed})")
        drv.market.minute = int(drv.sql("SELECT count(DISTINCT ts) FROM bars WHERE entity_id = "
                                         "(SELECT min(entity_id) FROM entities)")[0][0])
        lo, hi = drv.span()
        settings_ab(drv, res, lo, hi)
        tr = drv.training(lo, hi, repeats=3)
        info_s = []
        for _ in range(5):
            s, _ = timed(drv.store.info)
            info_s.append(s)
        cli = []
        for _ in range(3):
            s, out = timed(lambda: subprocess.run([str(Path(sys.executable).parent / "featurestore"), "--url", args.on_store, "info"],
                                                  capture_output=True, text=True))
            if out.returncode:
                raise RuntimeError(f"featurestore info failed: {out.stderr[-2000:]}")
            cli.append(s)
        rows = []
        for name, case in tr.items():
            rows.append([name, f"{case['ours']:.2f}", f"{case['range']:.2f}", f"{case['per_event']:.2f}",
                         f"{case['hand']:.2f}", f"{case['hand'] / case['ours']:.2f}"])
        res.table(f"Training frames on {fmt_size(stored)} stored bars, 3 features, seconds (median of 3; "
                  "once for the hand pipeline and for dense events over the whole span)",
                  ["events", "auto", "range forced", "per_event forced", "hand pipeline (ADBC + merge_asof)",
                   "hand / auto"], rows)
        res.table("info", ["what", "seconds (median)"],
                  [["FeatureStore.info() (5 calls)", f"{statistics.median(info_s):.3f}"],
                   ["`featurestore info`, whole process (3 runs)", f"{statistics.median(cli):.2f}"]])
        res.record("training", tr)
        res.record("info", {"api": info_s, "cli": cli, "stored": stored})
        training_checks(res, tr, fmt_size(stored))
        res.check(f"FeatureStore.info() at {fmt_size(stored)}", statistics.median(info_s), "< 1 s",
                  statistics.median(info_s) < 1.0, unit="s")
        res.checks_table()
        res.write()
    finally:
        drv.store.close()


def warm_kernels() -> None:
    """Compile the views' kernels into numba's disk cache before the first load, so the first
    step's load rate (a fresh worker process) is not a compile time (the cache is per checkout)."""
    from featurestore.indicators import new_state, update_batch

    rng = np.random.default_rng(0)
    close = 100 + np.cumsum(rng.normal(0, 1, 200))
    bars = {"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": np.full(200, 1e3)}
    for spec in (*SEED_VIEW, *NEW_VIEW):
        update_batch(spec, new_state(spec, 2), bars, np.array([0, 100, 200]))


def drive(args: Any, Results: Any) -> None:
    res = Results("scale", "Scale on one machine: cost vs stored bars", quick=args.quick,
                  results_dir=args.results_dir, extra_packages=("arcticdb",))
    res.setting("sizes", ", ".join(fmt_size(n) for n in args.sizes))
    res.setting("data", f"{args.symbols:,} symbols of one-minute bars, seed {args.seed}; view: {' '.join(SEED_VIEW)}")
    drv = Driver(args, res)
    res.setting("PostgreSQL", drv.sql("SHOW server_version")[0][0] + " (embedded, default settings)")
    warm_kernels()
    rows: dict[int, dict[str, Any]] = {}
    try:
        for target in args.sizes:
            print(f"== step to {fmt_size(target)} stored bars", file=sys.stderr, flush=True)
            row: dict[str, Any] = {"load": drv.load_step(target)}
            print(f"   loaded {row['load']['rows']:,} rows in {row['load']['seconds']:.0f} s", file=sys.stderr, flush=True)
            row["vacuum"] = drv.vacuum()
            row["append"] = drv.appends(20)
            row["correct_middle"] = drv.corrections("middle")
            row["correct_day"] = drv.corrections("day")
            lo, hi = drv.span()
            row["reads"] = drv.reads(lo, hi)
            row["full"] = drv.full_history()
            row["latest"] = drv.latest()
            row["training"] = drv.training(lo, hi)
            row["backfill"] = drv.backfill()
            row["stored"] = drv.stored()
            st = drv.storage()
            st["view"] = st.pop(drv.table)
            st["view_h"] = st.pop(drv.table + "_h")
            row["storage"] = st
            if drv.arctic is not None:
                row["arctic_bytes"] = row["load"]["arctic"]["bytes"]
            rows[target] = row
            res.record("sizes", {fmt_size(k): v for k, v in rows.items()})
            report(res, rows, final=target == args.sizes[-1])
            res.write()
    finally:
        if drv.arctic is not None:
            drv.arctic.close()
        drv.store.close()
        if not args.keep:
            shutil.rmtree(drv.work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="sizes 1M and 4M")
    ap.add_argument("--sizes", help="comma-separated stored-bar sizes (default 1M,10M,30M,100M)")
    ap.add_argument("--symbols", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workdir", help="where the server, Parquet files and ArcticDB go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the workdir")
    ap.add_argument("--no-arcticdb", action="store_true")
    ap.add_argument("--arcticdb-python", help="a Python with arcticdb (default: made under ~/.cache)")
    ap.add_argument("--load-worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--arctic-worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--load-check", type=parse_size, metavar="ROWS",
                    help="with --on-store: only bulk-load ROWS new bars into that store and report the loader's peak RSS (scale_load)")
    ap.add_argument("--on-store", metavar="URL",
                    help="measure training strategies and info on the store at URL (left by a full run); writes scale_store")
    sys.path.insert(0, str(HERE))
    args, _ = ap.parse_known_args()
    if args.arctic_worker:
        arctic_worker(args.arctic_worker)
        return
    if args.load_worker:
        load_worker(args.url, args.load_worker)
        return
    from _results import Results, add_arguments

    add_arguments(ap)
    args = ap.parse_args()
    args.sizes = [parse_size(s) for s in (args.sizes or ("1M,4M" if args.quick else "1M,10M,30M,100M")).split(",")]
    if args.on_store:
        on_store(args, Results)
        return
    drive(args, Results)


if __name__ == "__main__":
    main()
