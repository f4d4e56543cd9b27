"""The write path: one transaction per load, idempotent reloads, upserts, features equal TA-Lib."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import SEED_VIEW, assert_features_match_talib, fingerprint, make_bars, stored
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import URL

from featurestore.client import FeatureStore
from featurestore.errors import ConfigError, NotFoundError, ValidationError


@pytest.fixture()
def fresh(make_database: Callable[[str], URL]) -> Iterator[FeatureStore]:
    fs = FeatureStore(make_database("write"), auto_migrate=True)
    yield fs
    fs.close()


def _fp(fs: FeatureStore) -> dict[str, Any]:
    with fs.db.connection() as conn:
        return fingerprint(conn)


def test_first_load_then_view_backfill_matches_talib(fresh: FeatureStore) -> None:
    df = make_bars(["AAA", "BBB", "CCC"], 400, seed=1)
    r = fresh.ingest(df)
    assert (r.rows_in, r.inserted, r.updated, r.unchanged, r.rejected, r.symbols) == (1200, 1200, 0, 0, 0, 3)
    view = fresh.create_view("tech", SEED_VIEW)
    assert view.status == "ready" and view.version == 1 and view.table_name == "fv_tech_v1"
    with fresh.db.connection() as conn:
        for sym in ("AAA", "BBB", "CCC"):
            assert_features_match_talib(conn, view.table_name, sym)


def test_reload_is_a_noop_and_cheap(fresh: FeatureStore) -> None:
    df = make_bars(["AAA", "BBB"], 3000, seed=2)  # above SMALL_WRITE_ROWS: the COPY + staging path
    fresh.create_view("tech", SEED_VIEW)
    fresh.ingest(df)
    before = _fp(fresh)
    r = fresh.ingest(df)
    assert (r.inserted, r.updated, r.unchanged, r.features_written) == (0, 0, 6000, 0)
    after = _fp(fresh)
    # only the audit log gains a row; bars, features, state and generation are untouched
    assert {k: v for k, v in after.items() if k != "loads"} == {k: v for k, v in before.items() if k != "loads"}
    assert after["loads"][0] == before["loads"][0] + 1


@pytest.mark.parametrize("n", [50, 3000], ids=["small-prepared", "copy-staging"])
def test_corrections_and_appends_match_full_recompute(fresh: FeatureStore, n: int) -> None:
    fresh.create_view("tech", SEED_VIEW)
    df = make_bars(["AAA", "BBB"], n, seed=3)
    fresh.ingest(df)
    # correct one old bar of AAA and append 5 bars to both
    fix = df[(df.symbol == "AAA")].iloc[[n // 2]].copy()
    fix[["high", "close"]] = fix[["high", "close"]] * 1.01
    more = make_bars(["AAA", "BBB"], n + 5, seed=3).groupby("symbol").tail(5)
    r = fresh.ingest(pd.concat([fix, more]))
    assert (r.inserted, r.updated) == (10, 1)
    assert r.entities_recomputed == 1  # AAA recomputed, BBB continued from its state
    with fresh.db.connection() as conn:
        for sym in ("AAA", "BBB"):
            assert_features_match_talib(conn, "fv_tech_v1", sym)
            assert len(stored(conn, "bars", sym)) == n + 5


def test_late_bar_inserted_in_the_past_recomputes(fresh: FeatureStore) -> None:
    fresh.create_view("tech", SEED_VIEW)
    df = make_bars(["AAA"], 120, seed=4)
    missing = df.iloc[[60]]
    fresh.ingest(df.drop(index=60))
    r = fresh.ingest(missing)
    assert (r.inserted, r.entities_recomputed) == (1, 1)
    with fresh.db.connection() as conn:
        assert_features_match_talib(conn, "fv_tech_v1", "AAA")


def test_on_conflict_modes(fresh: FeatureStore) -> None:
    df = make_bars(["AAA"], 30, seed=5)
    fresh.ingest(df)
    changed = df.copy()
    changed.loc[3, ["close", "high"]] = changed.loc[3, ["close", "high"]] + 1
    before = _fp(fresh)
    with pytest.raises(ValidationError, match="already has a different bar at 2020-01-04"):
        fresh.ingest(changed, on_conflict="error")
    assert _fp(fresh) == before
    assert fresh.ingest(df, on_conflict="error").unchanged == 30  # identical rows are fine
    r = fresh.ingest(changed, on_conflict="ignore")
    assert (r.inserted, r.updated, r.unchanged) == (0, 0, 30)
    r = fresh.ingest(changed, on_conflict="update")
    assert (r.inserted, r.updated, r.unchanged) == (0, 1, 29)
    with pytest.raises(ConfigError, match="on_conflict"):
        fresh.ingest(df, on_conflict="replace")


def test_bad_row_names_row_and_writes_nothing(fresh: FeatureStore, tmp_path: Path) -> None:
    fresh.create_view("tech", SEED_VIEW)
    fresh.ingest(make_bars(["AAA"], 100, seed=6))
    df = make_bars(50, 2000, seed=7, start="2021-01-01")  # 100k rows
    df.loc[76_543, "high"] = df.loc[76_543, "low"] - 1
    path = tmp_path / "bars.csv"
    df.to_csv(path, index=False)
    before = _fp(fresh)
    with pytest.raises(ValidationError) as info:
        fresh.load(path, chunk_rows=20_000)
    msg = str(info.value)
    assert "row 76544" in msg and "'high'" in msg and str(path) in msg  # 1-based data row in the file
    assert _fp(fresh) == before


def test_duplicates_across_chunks_fail_cleanly(fresh: FeatureStore, tmp_path: Path) -> None:
    df = make_bars(["AAA", "BBB"], 500, seed=8)
    dup = pd.concat([df, df.iloc[[10]]], ignore_index=True)  # the duplicate lands in a later chunk
    path = tmp_path / "dup.parquet"
    dup.to_parquet(path)
    before = _fp(fresh)
    with pytest.raises(ValidationError, match="duplicate \\(symbol, ts\\).*'AAA'"):
        fresh.load(path, chunk_rows=300)
    assert _fp(fresh) == before


def test_unknown_symbols_without_creation(fresh: FeatureStore) -> None:
    fresh.ingest(make_bars(["AAA"], 10))
    with pytest.raises(ValidationError, match="unknown symbol 'ZZZ'.*create_symbols=True"):
        fresh.ingest(make_bars(["AAA", "ZZZ"], 12), create_symbols=False)


def test_csv_parquet_feather_give_the_same_store(make_database: Callable[[str], URL], tmp_path: Path) -> None:
    df = make_bars(["AAA", "BBB", "CCC"], 700, seed=9)
    df.to_csv(tmp_path / "b.csv", index=False)
    df.to_parquet(tmp_path / "b.parquet")
    df.to_feather(tmp_path / "b.feather")
    prints = []
    for name in ("b.csv", "b.parquet", "b.feather"):
        with FeatureStore(make_database("fmt"), auto_migrate=True) as fs:
            fs.create_view("tech", SEED_VIEW)
            r = fs.load(tmp_path / name, chunk_rows=500)
            assert r.inserted == 2100
            fp = _fp(fs)
            # loads log times, views creation times; store_state's generation is seeded per database
            prints.append({k: v for k, v in fp.items() if k not in ("loads", "feature_views", "store_state")})
    assert prints[0] == prints[1] == prints[2]


def test_real_market_csv_with_column_map(fresh: FeatureStore) -> None:
    import backtesting.test

    path = Path(backtesting.test.__file__).parent / "GOOG.csv"
    header = path.read_text().splitlines()[0].split(",")
    column_map = {header[0]: "ts", "Open": "open", "High": "high", "Low": "low", "Close": "close", "Volume": "volume"}
    fresh.create_view("tech", SEED_VIEW)
    r = fresh.load(path, symbol="GOOG", column_map=column_map, assume_tz="UTC")
    assert r.inserted == 2148 and r.symbols == 1
    with fresh.db.connection() as conn:
        assert_features_match_talib(conn, "fv_tech_v1", "GOOG")
    assert fresh.load(path, symbol="GOOG", column_map=column_map, assume_tz="UTC").unchanged == 2148


def test_views_version_and_drop(fresh: FeatureStore) -> None:
    fresh.ingest(make_bars(["AAA"], 60))
    v1 = fresh.create_view("v", ["sma_20"])
    assert fresh.create_view("v", ["sma_20"]) == v1  # same spec: no-op
    v2 = fresh.create_view("v", ["sma_20", "ema_10"])
    assert (v1.version, v2.version, v2.table_name) == (1, 2, "fv_v_v2")
    assert [(d["name"], d["version"]) for d in fresh.list_views()] == [("v", 1), ("v", 2)]
    desc = fresh.describe_view("v")
    assert desc["version"] == 2 and desc["columns"] == ["sma_20", "ema_10"] and desc["rows"] == 60
    # appends maintain every version
    fresh.ingest(make_bars(["AAA"], 61).tail(1))
    assert fresh.describe_view("v", 1)["rows"] == 61 and fresh.describe_view("v", 2)["rows"] == 61
    assert fresh.drop_view("v", 1) == [1]
    assert [d["version"] for d in fresh.list_views()] == [2]
    with pytest.raises(NotFoundError, match="registered views: v v2"):
        fresh.describe_view("nope")
    with pytest.raises(ConfigError, match="invalid view name"):
        fresh.create_view("Bad-Name", ["sma_20"])
    with pytest.raises(ConfigError, match="reserved"):
        fresh.create_view("w", ["sma_20"], columns=["close"])


def test_user_columns_are_written_and_kept_through_recomputes(fresh: FeatureStore) -> None:
    fresh.create_view("mix", ["ema_10"], columns=["sentiment"])
    df = make_bars(["AAA"], 40, seed=10)
    df["sentiment"] = np.linspace(-1, 1, 40)
    df.loc[5, "sentiment"] = np.nan
    fresh.ingest(df)
    fix = df.iloc[[2]].copy()
    fix["close"] += 0.5
    fix["high"] += 0.5
    fresh.ingest(fix.drop(columns=["sentiment"]))  # a correction without the user column
    with fresh.db.connection() as conn:
        got = stored(conn, "fv_mix_v1", "AAA")
    expected = df["sentiment"].to_numpy()
    assert np.array_equal(got["sentiment"].to_numpy(dtype=float), expected, equal_nan=True)
    upd = df.iloc[[7]].copy()
    upd["sentiment"] = 42.0
    r = fresh.ingest(upd)
    assert r.changed_entities and r.unchanged == 1
    with fresh.db.connection() as conn:
        assert stored(conn, "fv_mix_v1", "AAA")["sentiment"].iloc[7] == 42.0
    with pytest.raises(ValidationError, match="mood"):
        fresh.ingest(df.rename(columns={"sentiment": "mood"}))


def test_parallel_backfill_equals_serial_and_resumes(make_database: Callable[[str], URL]) -> None:
    from joblib.externals.loky import get_reusable_executor

    df = make_bars(12, 300, seed=11)
    stores = []
    for n_jobs in (1, 2):
        fs = FeatureStore(make_database("bf"), auto_migrate=True)
        fs.ingest(df)
        try:
            fs.create_view("tech", SEED_VIEW, n_jobs=n_jobs, batch_entities=4)
        finally:  # joblib keeps its process pool (and its manager thread) for reuse: stop them
            get_reusable_executor().shutdown(wait=True)
        stores.append(fs)
    # resumable: a backfill interrupted after one batch continues with the rest
    fs = FeatureStore(make_database("bf"), auto_migrate=True)
    fs.ingest(df)
    from featurestore import views, write

    with fs.db.connection() as conn, conn.transaction():
        v, _ = views.register_view(conn, "tech", *views.normalize_spec(SEED_VIEW))
    with fs.db.connection() as conn:
        write.backfill_batch(conn, v, write.pending_backfill(conn, v, 4)[0])
        assert len(write.pending_backfill(conn, v, 4)) == 2
    assert fs.describe_view("tech")["status"] == "backfilling"
    assert fs.create_view("tech", SEED_VIEW, batch_entities=4).status == "ready"
    stores.append(fs)
    prints = []
    for s in stores:
        with s.db.connection() as conn:
            fp = fingerprint(conn)
            prints.append((fp["bars"], fp["fv_tech_v1"]))
            assert_features_match_talib(conn, "fv_tech_v1", "S0005")
        s.close()
    assert prints[0] == prints[1] == prints[2]


KILL_SCRIPT = """
import sys, time, pandas as pd
from featurestore.client import FeatureStore
from featurestore import write
sys.path.insert(0, sys.argv[3])
from helpers import make_bars
delay = float(sys.argv[2])
orig = write.LoadWriter.finish
def slow_finish(self):
    print("IN_TRANSACTION", flush=True)
    time.sleep(delay)
    return orig(self)
write.LoadWriter.finish = slow_finish
fs = FeatureStore(sys.argv[1])
fs.ingest(make_bars(30, 400, seed=12, start="2023-01-01"))
print("DONE", flush=True)
"""


def test_sigkill_mid_load_leaves_store_unchanged(fresh: FeatureStore, db_url: URL) -> None:
    fresh.create_view("tech", SEED_VIEW)
    fresh.ingest(make_bars(["AAA"], 100, seed=6))
    url = fresh.db.url.render_as_string(hide_password=False)
    before = _fp(fresh)
    tests_dir = str(Path(__file__).parent)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, url, "30", tests_dir], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "IN_TRANSACTION"  # bars are written, not committed
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    deadline = time.time() + 10
    while time.time() < deadline:  # the server notices the dead client and rolls back
        with fresh.db.connection() as conn:
            busy = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%%'"
            ).fetchone()[0]
        if not busy:
            break
        time.sleep(0.1)
    assert _fp(fresh) == before
    # rerunning the load succeeds
    out = subprocess.run([sys.executable, "-c", KILL_SCRIPT, url, "0", tests_dir], capture_output=True, text=True, timeout=120)
    assert "DONE" in out.stdout, out.stderr
    with fresh.db.connection() as conn:
        assert_features_match_talib(conn, "fv_tech_v1", "S0007")


# -- the central property: any sequence of loads gives TA-Lib over the final history ---------

OPS = st.lists(
    st.tuples(
        st.sampled_from(["append", "correct", "late", "overlap", "reload"]),
        st.integers(min_value=1, max_value=60),
        st.integers(min_value=0, max_value=10_000),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, initial=st.integers(min_value=0, max_value=80))
def test_any_load_sequence_matches_talib(make_database: Callable[[str], URL], ops: list[tuple[str, int, int]], initial: int) -> None:
    universe = make_bars(["AAA", "BBB"], 400, seed=13)
    truth = {s: g.reset_index(drop=True) for s, g in universe.groupby("symbol")}
    with FeatureStore(make_database("prop"), auto_migrate=True) as fs:
        fs.create_view("tech", SEED_VIEW)
        loaded = {s: initial for s in truth}
        if initial:
            fs.ingest(pd.concat([g.iloc[:initial] for g in truth.values()]))
        rng = np.random.default_rng(initial)
        current = {s: g.copy() for s, g in truth.items()}
        for op, k, seed in ops:
            sym = ["AAA", "BBB"][seed % 2]
            g, n = current[sym], loaded[sym]
            if op == "append":
                part = g.iloc[n : n + k]
                loaded[sym] = min(len(g), n + k)
            elif op == "correct" and n:
                idx = rng.choice(n, size=min(k, n), replace=False)
                g.loc[idx, ["close", "high"]] = g.loc[idx, ["close", "high"]].to_numpy() * (1 + seed / 1e6)
                part = g.iloc[np.sort(idx)]
            elif op == "late" and n + k < len(g):
                # a bar past the end arrives first, then the gap before it fills in
                fs.ingest(g.iloc[[n + k]])
                part = g.iloc[n : n + k]
                loaded[sym] = n + k + 1
            elif op == "overlap":
                lo = max(0, n - k)
                part = g.iloc[lo : n + k]
                loaded[sym] = min(len(g), n + k)
            else:
                part = g.iloc[:n]
            if len(part):
                fs.ingest(part)
        with fs.db.connection() as conn:
            for sym in truth:
                if loaded[sym]:
                    bars = stored(conn, "bars", sym)
                    expected = current[sym].iloc[: loaded[sym]]
                    assert np.array_equal(bars["close"].to_numpy(float), expected["close"].to_numpy())
                    assert_features_match_talib(conn, "fv_tech_v1", sym)



def test_backfill_runs_on_the_joblib_ray_backend(make_database: Callable[[str], URL]) -> None:
    """The same backfill code runs on a cluster through joblib's Ray backend (a local Ray here)."""
    import joblib
    import ray
    from ray.util.joblib import register_ray

    df = make_bars(8, 200, seed=14)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        register_ray()
        with FeatureStore(make_database("ray"), auto_migrate=True) as fs:
            fs.ingest(df)
            with joblib.parallel_config(backend="ray"):
                view = fs.create_view("tech", SEED_VIEW, n_jobs=2, batch_entities=2)
            assert view.status == "ready" and fs.describe_view("tech")["rows"] == 1600
            with fs.db.connection() as conn:
                for sym in ("S0000", "S0007"):
                    assert_features_match_talib(conn, "fv_tech_v1", sym)
    finally:
        ray.shutdown()


def _check_timings(result: Any, wall: float) -> None:
    """The orderings a caller-waited-for ``elapsed_s`` must satisfy (no timing thresholds)."""
    from featurestore.write import PHASES

    assert tuple(result.phases) == PHASES == ("validate", "write", "features", "commit", "analyze")
    assert all(isinstance(v, float) and v >= 0 for v in result.phases.values()), result.phases
    assert result.phases["validate"] > 0 and result.phases["write"] > 0 and result.phases["commit"] > 0
    assert sum(result.phases.values()) <= result.elapsed_s <= wall
    assert result.elapsed_s >= result.phases["write"] + result.phases["validate"]
    assert result.rows_per_s == result.rows_in / result.elapsed_s
    d = result.as_dict()
    assert d["phases"] == result.phases and d["phases"] is not result.phases
    assert d["elapsed_s"] == result.elapsed_s and d["rows_per_s"] == round(result.rows_per_s, 1)
    # the keys the CLI and monitoring read stay
    assert {"source", "rows_in", "inserted", "updated", "unchanged", "rejected", "symbols", "symbols_created",
            "features_written", "entities_recomputed", "elapsed_s", "peak_rss_bytes", "load_id",
            "generation", "rows_per_s"} <= set(d)


def test_load_result_times_what_the_caller_waited_for(fresh: FeatureStore, tmp_path: Path) -> None:
    """elapsed_s spans ingest()/load() from entry to return: validation and ANALYZE included (issue 11 item 5b)."""
    fresh.create_view("tech", ["sma_5"])
    df = make_bars(["AAA", "BBB"], 1500, seed=31)  # 3,000 new rows: the post-load ANALYZE runs
    t0 = time.perf_counter()
    r = fresh.ingest(df)
    wall = time.perf_counter() - t0
    _check_timings(r, wall)
    assert r.phases["features"] > 0 and r.phases["analyze"] > 0
    assert fresh.last_load is r
    path = tmp_path / "more.csv"
    make_bars(["CCC"], 1200, seed=32).to_csv(path, index=False)
    t0 = time.perf_counter()
    r = fresh.load(path)
    wall = time.perf_counter() - t0
    _check_timings(r, wall)
    assert r.rows_in == 1200 and r.phases["analyze"] > 0
