"""Feast's online store as a peer for the serving benchmark, in its own virtual environment.

Feast (``feast==0.67.0``: local provider, its default SQLite online store, a file offline store)
runs in a virtual environment made once under ``~/.cache/featurestore/bench-feast``, in a worker
process that reads JSON commands on stdin and answers one JSON line per command on stdout (the
way ``scale.py`` runs ArcticDB):

- ``{"op": "setup", "parquet": PATH, "features": [...]}``: a Feast repo in the worker's directory
  (``feature_store.yaml``, an Entity ``symbol``, a FileSource on the Parquet, one FeatureView of
  the Float64 features), ``apply`` and ``materialize``, so that the online store holds each
  symbol's latest row; answers ``{"seconds", "rows", "symbols", "online"}``;
- ``{"op": "serve", "symbols": [...], "requesters": N, "seconds": S}``: N closed-loop threads
  sharing one ``FeatureStore``, each calling ``get_online_features(...).to_dict()`` for one random
  symbol; answers ``{"answers", "p50_ms", "p99_ms", "answers_per_s", "checked"}``, where
  ``checked`` counts answers compared with the Parquet's latest rows (before the timed loop and the
  first few answers of each thread; any difference raises);
- ``{"op": "quit"}``.

    python benchmarks/_feast.py --selftest [--feast-python PY]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _worker import Worker as Process
from _worker import answers, serve

FEAST = "feast==0.67.0"
FEAST_VENV = Path.home() / ".cache" / "featurestore" / "bench-feast"
PROJECT = "bench"
VIEW = "latest"
CHECK_BEFORE = 20  # symbols compared with the Parquet before the timed loop
CHECK_EACH = 3  # first answers of each requester thread compared with the Parquet

REPO_YAML = f"""\
project: {PROJECT}
provider: local
registry:
  path: data/registry.db
  cache_ttl_seconds: 0
online_store:
  type: sqlite
  path: data/online_store.db
offline_store:
  type: file
entity_key_serialization_version: 3
"""


def feast_python(given: str | None = None) -> str:
    """A Python with Feast: ``given``, or the virtual environment under ~/.cache (made on first use)."""
    if given:
        return given
    py = FEAST_VENV / "bin" / "python"
    ok = py.exists() and subprocess.run([str(py), "-c", "import feast"], capture_output=True).returncode == 0
    if not ok:
        print(f"making {FEAST_VENV} with {FEAST} (once)", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(FEAST_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", FEAST], check=True)
    return str(py)


# -- worker (runs in the Feast environment) --------------------------------------------------------


def pct(xs: list[float], q: float) -> float:
    """The q-th percentile (linear interpolation, as numpy's default) of xs."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = (len(s) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class Worker:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.store: Any = None
        self.refs: list[str] = []
        self.features: list[str] = []
        self.expected: dict[str, dict[str, float]] = {}

    def setup(self, parquet: str, features: list[str]) -> dict[str, Any]:
        import sqlite3
        from datetime import timedelta

        import pandas as pd
        from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
        from feast.types import Float64

        df = pd.read_parquet(parquet, columns=["symbol", "ts", *features])
        df["symbol"] = df["symbol"].astype(str)
        df["ts"] = pd.to_datetime(df["ts"], utc=True)
        df[features] = df[features].astype("float64")
        latest = df.sort_values("ts", kind="stable").groupby("symbol", sort=False).tail(1)
        self.expected = {str(r["symbol"]): {f: float(r[f]) for f in features} for r in latest.to_dict("records")}

        # Feast reads its own copy: string symbols, UTC timestamps, float64 features, whatever the input's types
        data = self.path / "data"
        if data.exists():
            shutil.rmtree(data)
        data.mkdir(parents=True)
        source = data / "source.parquet"
        df.to_parquet(source, index=False)

        t0 = time.perf_counter()
        (self.path / "feature_store.yaml").write_text(REPO_YAML)
        symbol = Entity(name="symbol", join_keys=["symbol"], value_type=ValueType.STRING)
        view = FeatureView(
            name=VIEW,
            entities=[symbol],
            ttl=timedelta(0),  # no expiry: the latest row is served however old it is
            schema=[Field(name=f, dtype=Float64) for f in features],
            source=FileSource(name="bars", path=str(source), timestamp_field="ts"),
            online=True,
        )
        store = FeatureStore(repo_path=str(self.path))
        store.apply([symbol, view])
        start = df["ts"].min().to_pydatetime() - timedelta(seconds=1)
        end = df["ts"].max().to_pydatetime() + timedelta(seconds=1)
        store.materialize(start_date=start, end_date=end)
        seconds = time.perf_counter() - t0

        with sqlite3.connect(data / "online_store.db") as conn:
            (online,) = conn.execute(f'SELECT count(DISTINCT entity_key) FROM "{PROJECT}_{VIEW}"').fetchone()
        self.store, self.features = store, list(features)
        self.refs = [f"{VIEW}:{f}" for f in features]
        return {"seconds": seconds, "rows": len(df), "symbols": len(self.expected), "online": online}

    def get(self, symbol: str) -> dict[str, Any]:
        return self.store.get_online_features(features=self.refs, entity_rows=[{"symbol": symbol}]).to_dict()

    def check(self, symbol: str, got: dict[str, Any]) -> None:
        want = self.expected[symbol]
        seen = {f: got[f][0] for f in self.features}
        if got["symbol"] != [symbol] or seen != want:
            raise AssertionError(f"Feast answered {got} for {symbol}, the Parquet's latest row is {want}")

    def serve(self, symbols: list[str], requesters: int, seconds: float) -> dict[str, Any]:
        if self.store is None:
            raise RuntimeError("serve before setup")
        unknown = [s for s in symbols if s not in self.expected]
        if unknown:
            raise KeyError(f"{len(unknown)} symbols not in the Parquet, e.g. {unknown[:3]}")
        checked = 0
        for s in random.Random(0).sample(symbols, min(CHECK_BEFORE, len(symbols))):
            self.check(s, self.get(s))
            checked += 1

        lat: list[float] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        start = threading.Barrier(requesters + 1)
        stop = 0.0

        def one(k: int) -> None:
            nonlocal checked
            rng = random.Random(k)
            mine: list[float] = []
            n_checked = 0
            try:
                start.wait()
                while time.perf_counter() < stop:
                    s = rng.choice(symbols)
                    t0 = time.perf_counter()
                    got = self.get(s)
                    mine.append(time.perf_counter() - t0)
                    if n_checked < CHECK_EACH:
                        self.check(s, got)
                        n_checked += 1
            except BaseException as exc:
                with lock:
                    errors.append(exc)
            with lock:
                lat.extend(mine)
                checked += n_checked

        threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(requesters)]
        for t in threads:
            t.start()
        stop = time.perf_counter() + seconds
        t_start = time.perf_counter()
        start.wait()
        for t in threads:
            t.join(seconds + 120)
        wall = time.perf_counter() - t_start
        if errors:
            raise errors[0]
        return {"answers": len(lat), "p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3,
                "answers_per_s": len(lat) / wall, "checked": checked}


def feast_worker(path: Path) -> None:
    """Feast on its local SQLite online store, as a :mod:`_worker` process."""
    channel = answers()
    import feast
    import pandas as pd

    path.mkdir(parents=True, exist_ok=True)
    worker = Worker(path)

    def handle(op: str, cmd: dict[str, Any]) -> Any:
        if op == "setup":
            return worker.setup(cmd["parquet"], cmd["features"])
        if op == "serve":
            return worker.serve(cmd["symbols"], int(cmd["requesters"]), float(cmd["seconds"]))
        raise ValueError(op)

    serve(channel, f"feast {feast.__version__}, pandas {pd.__version__}", handle)


# -- main side ---------------------------------------------------------------------------------------


class Feast(Process):
    """The driver's end of :func:`feast_worker`."""

    def __init__(self, python: str, path: Path) -> None:
        super().__init__("feast", [python, __file__, "--feast-worker", str(path)])


def selftest(python: str) -> None:
    """50 symbols x 3 rows x 3 features: setup, then serve with 1 and 10 requesters for 1 s each."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    symbols = [f"S{i:03d}" for i in range(50)]
    features = ["f_a", "f_b", "f_c"]
    base = pd.Timestamp("2024-01-02 14:30", tz="UTC")
    df = pd.DataFrame({
        "symbol": np.repeat(symbols, 3),
        "ts": np.tile([base + pd.Timedelta(minutes=m) for m in range(3)], len(symbols)),
        **{f: rng.normal(size=len(symbols) * 3) for f in features},
    })
    work = Path(tempfile.mkdtemp(prefix="feast-selftest-"))
    try:
        df.sample(frac=1.0, random_state=2).to_parquet(work / "latest.parquet", index=False)
        fs = Feast(python, work / "feast")
        try:
            print("worker:", fs.info)
            print("setup:", fs("setup", parquet=str(work / "latest.parquet"), features=features))
            for n in (1, 10):
                print(f"serve, {n} requesters:", fs("serve", symbols=symbols, requesters=n, seconds=1.0))
        finally:
            fs.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--selftest", action="store_true", help="a small setup and serve, printing the answers")
    ap.add_argument("--feast-python", help="a Python with feast (default: made under ~/.cache)")
    ap.add_argument("--feast-worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.feast_worker:
        feast_worker(args.feast_worker)
    elif args.selftest:
        selftest(feast_python(args.feast_python))
    else:
        ap.print_help()


if __name__ == "__main__":
    main()
