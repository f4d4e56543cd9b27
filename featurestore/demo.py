"""The main job, end to end, on the embedded server: what ``featurestore demo`` runs.

It generates realistic daily bars (a seeded random walk with GARCH(1,1) volatility clustering),
creates a view with the seven seed indicators, ingests, appends a day, corrects a bar, reads a
range, the latest rows and a point-in-time training frame (twice, to show the cache), and returns
a report with the timings, rows/s, memory and cache figures it measured. It is idempotent: a
second run over the same home finds the data already there, changes nothing and says so (0
inserted, 0 updated).

Where its data lives (:func:`demo_target`): a database only when the caller names one (``url=``,
CLI ``--url``; ``FEATURESTORE_URL`` is never used, as it may be a real store); otherwise the
embedded server under ``home=``, else under ``FEATURESTORE_HOME`` if set, else under the
platform's ``featurestore-demo`` directory beside the default home (never the default store).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SEED_INDICATORS", "DemoReport", "clean", "demo_home", "demo_target", "generate_bars", "run_demo"]

SEED_INDICATORS = ("sma_20", "ema_50", "rsi_14", "macd_12_26_9", "bbands_20_2", "atr_14", "adx_14")


def demo_home() -> Path:
    """The demo's default home: ``FEATURESTORE_HOME`` if set, else ``featurestore-demo`` beside
    the platform's default home (so the default embedded store is never written to)."""
    import os

    from featurestore.config import ENV_HOME, default_home

    if os.environ.get(ENV_HOME):
        return default_home()
    return default_home().parent / "featurestore-demo"


def demo_target(home: str | Path | None = None, url: str | None = None) -> str:
    """Where the demo's data lives, for people: the masked URL, or the embedded home's data dir."""
    if url is not None:
        from featurestore.config import mask_url

        return f"database {mask_url(url)}"
    path = Path(home) if home is not None else demo_home()
    return f"embedded server, data in {path.expanduser().resolve() / 'pgdata'}"


def generate_bars(
    symbols: int = 500, days: int = 1260, *, seed: int = 7, start: str = "2020-01-01"
) -> Any:
    """Seeded daily OHLCV bars: GARCH(1,1) returns, 0.01 price ticks, business days.

    Volatility clusters (calm and turbulent stretches) as in real markets, so the indicators
    see realistic inputs. Vectorized over symbols; returns a pandas DataFrame in (symbol, ts) order.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    omega, alpha, beta = 2e-6, 0.08, 0.9
    var = np.full(symbols, omega / (1 - alpha - beta))
    rets = np.empty((days, symbols))
    shocks = rng.standard_normal((days, symbols))
    for t in range(days):  # a loop over days (1,260), vectorized over symbols
        rets[t] = np.sqrt(var) * shocks[t]
        var = omega + alpha * rets[t] ** 2 + beta * var
    base = rng.uniform(10, 500, symbols)
    close = base * np.exp(np.cumsum(rets, axis=0))
    gap = rng.normal(0, 0.25, (days, symbols)) * np.abs(rets)
    open_ = close * np.exp(-rets + gap)
    wick = np.abs(rng.normal(0, 0.5, (days, symbols))) * np.sqrt(var)
    tick = 0.01
    open_ = np.maximum(np.round(open_ / tick) * tick, tick)
    close = np.maximum(np.round(close / tick) * tick, tick)
    high = np.round(np.ceil(np.maximum(open_, close) * (1 + wick) / tick) * tick, 2)
    low = np.round(np.maximum(np.floor(np.minimum(open_, close) * (1 - wick) / tick) * tick, tick), 2)
    open_, close = np.round(open_, 2), np.round(close, 2)
    volume = np.round(rng.lognormal(13, 0.6, (days, symbols)) * (1 + 20 * np.abs(rets)))
    ts = pd.bdate_range(start, periods=days, tz="UTC")
    names = np.array([f"SYM{i:04d}" for i in range(symbols)], dtype=object)
    return pd.DataFrame(
        {
            "symbol": np.repeat(names, days),
            "ts": pd.DatetimeIndex(np.tile(ts.tz_localize(None).values, symbols)).tz_localize("UTC"),
            "open": open_.T.ravel(),
            "high": high.T.ravel(),
            "low": low.T.ravel(),
            "close": close.T.ravel(),
            "volume": volume.T.ravel(),
        }
    )


@dataclass
class DemoReport:
    """What the demo did and measured, step by step."""

    home: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, step: str, seconds: float, **figures: Any) -> None:
        self.steps.append({"step": step, "seconds": round(seconds, 4), **figures})

    def as_dict(self) -> dict[str, Any]:
        return {"home": self.home, "steps": self.steps, "facts": self.facts}

    def render(self) -> str:
        """A short human-readable report."""
        lines = [f"featurestore demo — {self.home}", ""]
        for s in self.steps:
            extra = ", ".join(f"{k}={_fmt(v)}" for k, v in s.items() if k not in ("step", "seconds"))
            lines.append(f"  {s['step']:<34} {s['seconds'] * 1000:>10,.1f} ms   {extra}")
        lines.append("")
        for k, v in self.facts.items():
            lines.append(f"  {k}: {_fmt(v)}")
        return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run_demo(
    *,
    home: str | Path | None = None,
    url: str | None = None,
    symbols: int = 500,
    days: int = 1260,
    source: str | Path | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> DemoReport:
    """Run the main job and return its report. ``source`` loads files instead of generating bars.

    ``url`` is used only when given (never ``FEATURESTORE_URL``); see the module docstring.
    ``log`` receives one line before each step (the CLI prints them as they happen).
    """
    import pandas as pd
    import psutil

    from featurestore.client import FeatureStore

    say = log or (lambda _msg: None)
    home_path = Path(home) if home is not None else demo_home()
    target = demo_target(home_path, url)
    report = DemoReport(home=target)
    say(f"demo data: {target}")
    say("opening the store (starting the embedded server, migrating) ..." if url is None else "opening the store (migrating) ...")
    # url=None with FEATURESTORE_URL set would pick the environment's database: pass a home only
    (store, t_open) = _timed(lambda: _open_store(FeatureStore, url, home_path))
    with store:
        report.add("open store (start server, migrate)", t_open)
        from featurestore.indicators import warmup

        say("loading the indicator kernels (compiled once, then cached on disk) ...")
        (_, t_warm) = _timed(lambda: warmup(SEED_INDICATORS))
        report.add("load indicator kernels (numba)", t_warm, note="compiles once, then cached on disk")
        say("creating view 'demo' (7 indicators) ...")
        (view, t_view) = _timed(lambda: store.create_view("demo", list(SEED_INDICATORS)))
        report.add("create view (7 indicators)", t_view, outputs=len(view.feature_columns))
        # on_conflict="ignore": a second run keeps the stored history (and the correction below)
        # instead of reverting the corrected bar and correcting it again
        if source is not None:
            say(f"loading {source} ...")
            (res, t) = _timed(lambda: store.load(source, progress=progress, on_conflict="ignore"))
            bars = None
        else:
            say(f"generating {symbols:,} symbols x {days:,} days of bars and ingesting them ...")
            bars = generate_bars(symbols, days)
            (res, t) = _timed(lambda: store.ingest(bars, progress=progress, on_conflict="ignore"))
        report.add(
            "ingest history", t, rows=res.rows_in, inserted=res.inserted, updated=res.updated, unchanged=res.unchanged,
            features=res.features_written, rows_per_s=res.rows_per_s,
        )
        names = _symbols(store)
        last = store.get_latest(names)
        # append one day after each symbol's last bar
        nxt = last.reset_index()[["symbol", "ts", "close"]].dropna()
        if bars is not None:
            step = pd.offsets.BDay(1)
            day = bars.groupby("symbol", sort=False).tail(1).copy()
            day["ts"] = day["ts"] + step
            say("appending one day, correcting one old bar ...")
            (res, t) = _timed(lambda: store.ingest(day, progress=False))
            report.add("append one day", t, rows=res.rows_in, inserted=res.inserted, unchanged=res.unchanged)
            fix = bars.iloc[[len(bars) // 2]].copy()
            fix[["close", "high"]] = fix[["close", "high"]].to_numpy() + 0.01
            before_fix = pd.Timestamp.now(tz="UTC")
            (res, t) = _timed(lambda: store.ingest(fix, progress=False))
            report.add("correct one old bar", t, updated=res.updated, recomputed=res.entities_recomputed)
            # knowledge time: the corrected bar as a backtest run before the correction saw it
            sym, when = str(fix["symbol"].iloc[0]), fix["ts"].iloc[0]
            (then, t) = _timed(lambda: store.get_bars(sym, when, when, as_known_at=before_fix))
            report.add(
                "  as known before it (as_known_at)", t,
                close_then=float(then["close"].iloc[0]), close_now=float(fix["close"].iloc[0]),
            )
        say("reading: a range, the latest rows, a 100k-event training frame (each twice) ...")
        sample = names[:100]
        end = pd.Timestamp(nxt["ts"].max()) if len(nxt) else pd.Timestamp.now(tz="UTC")
        start = end - pd.Timedelta(days=365)
        for label in ("range read, 100 symbols x 1 year", "  again (cached)"):
            (frame, t) = _timed(lambda: store.get_features(sample, start, end, view="demo"))
            report.add(label, t, rows=len(frame))
        for label in ("latest, all symbols", "  again (cached)"):
            (latest, t) = _timed(lambda: store.get_latest(names, view="demo"))
            report.add(label, t, rows=len(latest))
        rng = np.random.default_rng(1)
        n_events = 100_000
        lo, hi = (end - pd.Timedelta(days=4 * 365)).value, end.value
        events = pd.DataFrame(
            {
                "symbol": rng.choice(np.asarray(names, dtype=object), n_events),
                "ts": pd.to_datetime(rng.integers(lo, hi, n_events), utc=True),
                "label": rng.integers(0, 2, n_events),
            }
        )
        for label in ("training frame, 100k events", "  again (cached)"):
            (tf, t) = _timed(lambda: store.get_training_frame(events, view="demo"))
            report.add(label, t, rows=len(tf), events_per_s=n_events / t if t else 0.0)
        stats = store.stats()
        bars_table = stats["server"]["tables"].get("bars", {})
        # counted on a small store; on a large one the estimate (stats() never scans bars)
        bars_key = "bars stored" if bars_table.get("estimate_source", "exact") == "exact" else "bars stored (estimate)"
        cache = stats.get("cache") or {}
        rss = psutil.Process().memory_info().rss
        report.facts.update(
            {
                "symbols": len(names),
                bars_key: bars_table.get("rows_estimate", 0),
                "feature columns": len(view.feature_columns),
                "cache hit ratio": cache.get("hit_ratio", 0.0),
                "cache bytes": cache.get("bytes", 0),
                "process RSS MB": rss / 2**20,
                "database size MB": stats["server"].get("database_bytes", 0) / 2**20,
            }
        )
    return report


def _open_store(factory: Any, url: str | None, home: Path) -> Any:
    """The demo's store: ``url`` if given, else the embedded server under ``home`` only.

    The embedded server is started here and its URL passed on, because ``FeatureStore(None)``
    would take ``FEATURESTORE_URL`` from the environment. It stops when the process exits.
    """
    if url is None:
        from featurestore.embedded import EmbeddedServer

        url = EmbeddedServer(home).start().render_as_string(hide_password=False)
    return factory(url, auto_migrate=True)


def _symbols(store: Any) -> list[str]:
    with store.db.connection() as conn:
        return [r[0] for r in conn.execute("SELECT symbol FROM entities ORDER BY symbol").fetchall()]


def clean(home: str | Path | None = None) -> bool:
    """Stop the demo's embedded server and delete its data. True if there was anything to remove."""
    from featurestore.embedded import EmbeddedServer

    path = Path(home) if home is not None else demo_home()
    if not path.exists():
        return False
    EmbeddedServer(path).stop()
    shutil.rmtree(path)
    return True
