"""First use of an indicator from several threads at once (issue 11 item 2).

Each test runs in a FRESH interpreter whose numba disk cache is an empty directory, so nothing is
compiled yet and the kernels really compile while the threads race for them. Before the fix, 3 of
4 threads died with ``RuntimeError: compilation disabled``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import talib
from helpers import assert_features_match_talib, make_bars
from sqlalchemy.engine import URL

from featurestore.client import FeatureStore
from featurestore.config import libpq_url

TESTS = Path(__file__).resolve().parent

THREADS_SCRIPT = r"""
import json, sys, threading
import numpy as np
from featurestore.indicators import compute

specs = json.loads(sys.argv[1])
n_threads = int(sys.argv[2])
rng = np.random.default_rng(7)
close = 100 + np.cumsum(rng.normal(0, 1, 300))
high = close + rng.uniform(0.1, 1, 300)
low = close - rng.uniform(0.1, 1, 300)
data = {"high": high, "low": low, "close": close}
barrier = threading.Barrier(n_threads * len(specs), timeout=120)
results, errors = {}, []

def run(spec, k):
    try:
        barrier.wait()
        out = compute(spec, data)
        results[(spec, k)] = {name: np.asarray(v).tolist() for name, v in out.items()}
    except BaseException as exc:  # reported, not swallowed
        errors.append(f"{spec}: {exc!r}")

threads = [threading.Thread(target=run, args=(s, k), daemon=True) for s in specs for k in range(n_threads)]
try:
    for t in threads:
        t.start()
finally:
    for t in threads:
        t.join(timeout=300)
alive = sum(t.is_alive() for t in threads)
single = {s: {name: np.asarray(v).tolist() for name, v in compute(s, data).items()} for s in specs}
print(json.dumps({
    "errors": errors,
    "alive": alive,
    "threaded": {f"{s}|{k}": r for (s, k), r in results.items()},
    "single": single,
    "inputs": {k: v.tolist() for k, v in data.items()},
}))
"""


def _fresh_env(tmp_path: Path) -> dict[str, str]:
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(cache)  # empty: the kernels really compile in the child
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return env


def test_first_use_from_many_threads_compiles_once_and_agrees(tmp_path: Path) -> None:
    specs = ["rsi_14", "sma_20", "macd_12_26_9", "adx_14"]
    n_threads = 4
    proc = subprocess.run(
        [sys.executable, "-c", THREADS_SCRIPT, json.dumps(specs), str(n_threads)],
        check=False, capture_output=True, text=True, timeout=600, env=_fresh_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["errors"] == []
    assert out["alive"] == 0
    assert len(out["threaded"]) == n_threads * len(specs)
    for key, result in out["threaded"].items():
        single = out["single"][key.split("|")[0]]
        assert sorted(result) == sorted(single), key
        for name, values in result.items():  # every thread got the single-threaded answer
            np.testing.assert_array_equal(np.asarray(values, dtype=float), np.asarray(single[name], dtype=float))
    # and that answer is TA-Lib's (an independent oracle), NaNs in the same places
    x = {k: np.asarray(v) for k, v in out["inputs"].items()}
    expected = {
        "rsi_14": {"rsi_14": talib.RSI(x["close"], 14)},
        "sma_20": {"sma_20": talib.SMA(x["close"], 20)},
        "macd_12_26_9": dict(
            zip(("macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9"), talib.MACD(x["close"], 12, 26, 9))
        ),
        "adx_14": {"adx_14": talib.ADX(x["high"], x["low"], x["close"], 14)},
    }
    for spec, cols in expected.items():
        got = out["single"][spec]
        assert sorted(got) == sorted(cols), spec
        for name, want in cols.items():
            np.testing.assert_array_equal(np.asarray(got[name], dtype=float), want, err_msg=f"{spec} {name}")


VIEW_SCRIPT = r"""
import sys
import joblib
from featurestore.client import FeatureStore
from helpers import SEED_VIEW

with FeatureStore(sys.argv[1]) as fs, joblib.parallel_config(backend="threading"):
    view = fs.create_view("tech", SEED_VIEW, n_jobs=4, batch_entities=1)
    print(view.status)
"""


def test_threaded_joblib_backfill_in_a_fresh_process(make_database: Callable[[str], URL], tmp_path: Path) -> None:
    url = make_database("thr")
    df = make_bars(8, 120, seed=21)
    with FeatureStore(url, auto_migrate=True) as fs:
        fs.ingest(df)  # no view yet: nothing compiles in this process for the child to reuse
    proc = subprocess.run(
        [sys.executable, "-c", VIEW_SCRIPT, str(url.render_as_string(hide_password=False))],
        check=False, capture_output=True, text=True, timeout=600, env=_fresh_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["ready"]
    import psycopg

    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        n = conn.execute("SELECT count(*) FROM fv_tech_v1").fetchone()
        assert n is not None and n[0] == len(df)
        for sym in pd.unique(df["symbol"]):
            assert_features_match_talib(conn, "fv_tech_v1", str(sym))
