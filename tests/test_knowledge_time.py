"""Knowledge time (``as_known_at``): reads answer exactly what the store knew at a moment.

The oracle is a brute-force replay written here: the bars each load left behind (kept in pandas
by the test, corrections applied by the test) and TA-Lib over them. Never the store's helpers.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa
import talib
from helpers import make_bars
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import URL

from featurestore import migrate
from featurestore.client import FeatureStore
from featurestore.config import libpq_url
from featurestore.errors import ConfigError, HistoryError
from featurestore.read.sql import latest_one_sql, latest_sql, range_sql
from featurestore.schema import BAR_COLUMNS
from featurestore.write import features as write_features

UTC = dt.UTC
VIEW = ["sma_5", "ema_8", "rsi_6", "macd_5_10_4", "atr_5"]
SYMBOLS = ["AAA", "BBB"]


def oracle_features(bars: pd.DataFrame) -> dict[str, np.ndarray]:
    """TA-Lib over one symbol's bar history as it stood (the test's own replay)."""
    c, h, lo = (bars[k].to_numpy(dtype=float) for k in ("close", "high", "low"))
    macd, signal, hist = talib.MACD(c, 5, 10, 4)
    return {
        "sma_5": talib.SMA(c, 5),
        "ema_8": talib.EMA(c, 8),
        "rsi_6": talib.RSI(c, 6),
        "macd_5_10_4": macd,
        "macd_signal_5_10_4": signal,
        "macd_hist_5_10_4": hist,
        "atr_5": talib.ATR(h, lo, c, 5),
    }


class Replay:
    """The bar history per symbol after each load, applied by hand (insert or overwrite)."""

    def __init__(self) -> None:
        self.bars: dict[str, pd.DataFrame] = {s: pd.DataFrame(columns=["ts", *BAR_COLUMNS]) for s in SYMBOLS}
        self.snapshots: list[tuple[dt.datetime, dict[str, pd.DataFrame]]] = []

    def apply(self, frame: pd.DataFrame) -> None:
        for sym, part in frame.groupby("symbol"):
            cur = self.bars[str(sym)]
            new = part[["ts", *BAR_COLUMNS]]
            merged = pd.concat([cur[~cur["ts"].isin(new["ts"])], new]) if len(cur) else new.copy()
            self.bars[str(sym)] = merged.sort_values("ts").reset_index(drop=True)

    def snap(self, clock: dt.datetime) -> None:
        self.snapshots.append((clock, {s: b.copy() for s, b in self.bars.items()}))


def _corrected(rows: pd.DataFrame, factor: float) -> pd.DataFrame:
    out = rows.copy()
    out["close"] = out["close"] * factor
    out["high"] = np.maximum(out["high"], out["close"])
    out["low"] = np.minimum(out["low"], out["close"])
    return out


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


def _check_against_replay(fs: FeatureStore, replay: Replay) -> None:
    for k, (clock, bars_then) in enumerate(replay.snapshots):
        got_bars = fs.get_bars(SYMBOLS, as_known_at=clock)
        feats = fs.get_features(SYMBOLS, view="kt", as_known_at=clock)
        for sym in SYMBOLS:
            want = bars_then[sym]
            mine = got_bars.xs(sym, level="symbol") if sym in got_bars.index.get_level_values(0) else got_bars.iloc[:0]
            assert list(mine.index) == list(want["ts"]), f"load {k} {sym}: bar keys differ"
            for col in BAR_COLUMNS:
                assert np.array_equal(mine[col].to_numpy(), want[col].to_numpy(dtype=float)), f"load {k} {sym} {col}"
            fsym = feats.xs(sym, level="symbol") if sym in feats.index.get_level_values(0) else feats.iloc[:0]
            assert list(fsym.index) == list(want["ts"]), f"load {k} {sym}: feature keys differ"
            ref = oracle_features(want)
            assert set(ref) == set(feats.columns)
            for name, values in ref.items():
                assert np.array_equal(fsym[name].to_numpy(), values, equal_nan=True), f"load {k} {sym} {name}"


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 12)),
        st.tuples(st.just("correct"), st.floats(0.0, 0.999)),
        st.tuples(st.just("late"), st.integers(0, 3)),
        st.tuples(st.just("reload"), st.integers(1, 6)),
    ),
    min_size=1,
    max_size=7,
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, seed=st.integers(0, 1000))
def test_as_known_at_equals_the_replayed_history_after_every_load(
    make_database: Callable[[str], URL], ops: list[tuple[str, Any]], seed: int
) -> None:
    # checkpoints every 7 bars, so corrections resume from them (and late bars shift them)
    saved, write_features.CHECKPOINT_BARS = write_features.CHECKPOINT_BARS, 7
    try:
        _replay_loads(make_database, ops, seed)
    finally:
        write_features.CHECKPOINT_BARS = saved


def _replay_loads(make_database: Callable[[str], URL], ops: list[tuple[str, Any]], seed: int) -> None:
    pool = make_bars(SYMBOLS, 60, seed=seed)
    held = {s: set(range(8, 60, 9)) for s in SYMBOLS}  # bars kept back, to arrive late
    nxt = dict.fromkeys(SYMBOLS, 0)
    replay = Replay()
    starts: list[dt.datetime] = []
    with FeatureStore(make_database("kt_prop"), auto_migrate=True, cache=None) as fs:
        fs.create_view("kt", VIEW)
        replay.snap(_now())  # the view is ready and empty
        for op, arg in [("append", 15), *ops]:
            parts = []
            for j, sym in enumerate(SYMBOLS):
                rows = pool[pool["symbol"] == sym].reset_index(drop=True)
                stored = replay.bars[sym]
                if op == "append":
                    idx = [i for i in range(nxt[sym], min(60, nxt[sym] + arg)) if i not in held[sym]]
                    nxt[sym] = min(60, nxt[sym] + arg)
                    parts.append(rows.iloc[idx])
                elif op == "correct" and len(stored):
                    pos = int(arg * len(stored))
                    ts = stored["ts"].iloc[pos]
                    parts.append(_corrected(rows[rows["ts"] == ts], 1.01 + 0.01 * j))
                elif op == "late":
                    late = sorted(i for i in held[sym] if i < nxt[sym])
                    if late:
                        i = late[min(arg, len(late) - 1)]
                        held[sym].discard(i)
                        parts.append(rows.iloc[[i]])
                elif op == "reload" and len(stored):  # the stored values again: no new version
                    tail = stored.iloc[-arg:].assign(symbol=sym)
                    parts.append(tail[["symbol", "ts", *BAR_COLUMNS]])
            frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
            starts.append(_now())  # nothing commits between the previous snapshot and this
            if len(frame):
                fs.ingest(frame)
                replay.apply(frame)
            replay.snap(_now())
        _check_against_replay(fs, replay)
        # a clock between a snapshot and the start of the next load answers like the snapshot
        for (c0, _), c1 in zip(replay.snapshots, starts):
            mid = c0 + (c1 - c0) / 2
            if mid > c0:
                a = fs.get_features(SYMBOLS, view="kt", as_known_at=c0)
                b = fs.get_features(SYMBOLS, view="kt", as_known_at=mid)
                pd.testing.assert_frame_equal(a, b)


def test_appends_write_no_history_and_corrections_only_changed_rows(make_database: Callable[[str], URL]) -> None:
    url = make_database("kt_append")
    bars = make_bars(SYMBOLS, 80)
    with FeatureStore(url, auto_migrate=True, cache=None) as fs:
        fs.create_view("kt", ["sma_5"])
        fs.ingest(bars[bars["ts"] < "2020-02-15"])
        fs.ingest(bars[bars["ts"] >= "2020-02-15"])
        fs.ingest(bars.tail(10))  # identical reload
        with psycopg.connect(libpq_url(url)) as conn:
            assert conn.execute("SELECT count(*) FROM bars_history").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM fv_kt_v1_h").fetchone() == (0,)
        fix = _corrected(bars[(bars["symbol"] == "AAA")].iloc[[40]], 1.02)
        res = fs.ingest(fix)
        with psycopg.connect(libpq_url(url)) as conn:
            assert conn.execute("SELECT count(*), min(superseded_by) FROM bars_history").fetchone() == (1, res.load_id)
            # sma_5 changes at the corrected bar and the 4 after it; nothing else moves to history
            assert conn.execute("SELECT count(*) FROM fv_kt_v1_h").fetchone() == (5,)
            lid = conn.execute(
                "SELECT load_id FROM bars b JOIN entities e USING (entity_id) WHERE e.symbol = 'AAA' AND b.ts = %s",
                (fix["ts"].iloc[0].to_pydatetime(),),
            ).fetchone()
            assert lid == (res.load_id,)


def test_latest_as_known_at_defaults_as_of_to_that_moment(store: Any) -> None:
    bars = make_bars(["LAT"], 30)
    store.create_view("kt_lat", ["sma_5"])
    store.ingest(bars.iloc[:20])
    t1 = _now()
    store.ingest(bars.iloc[20:])
    store.ingest(_corrected(bars.iloc[[19]], 1.05))
    then = store.get_latest("LAT", view="kt_lat", as_known_at=t1)
    assert then.index[0][1] == bars["ts"].iloc[19]
    assert then["close"].iloc[0] == bars["close"].iloc[19]
    assert then["sma_5"].iloc[0] == talib.SMA(bars["close"].to_numpy()[:20], 5)[-1]
    now = store.get_latest("LAT", view="kt_lat")
    assert now.index[0][1] == bars["ts"].iloc[-1]
    # the multi-symbol form too, and an unknown symbol stays a NaT row
    many = store.get_latest(["LAT", "NOPE"], as_known_at=t1)
    assert many.index[0][1] == bars["ts"].iloc[19] and pd.isna(many.index[1][1])


def test_a_reader_at_a_past_moment_sees_the_same_answer_during_a_correction(make_database: Callable[[str], URL]) -> None:
    url = make_database("kt_conc")
    bars = make_bars(12, 300)
    with FeatureStore(url, auto_migrate=True, cache=None) as fs:
        fs.create_view("kt", VIEW)
        fs.ingest(bars)
        t = _now()
        before = fs.get_features(list(bars["symbol"].unique()), view="kt", as_known_at=t, include_bars=True)
        seen: list[pd.DataFrame] = []
        errors: list[BaseException] = []
        done = threading.Event()

        def correct() -> None:
            try:
                with FeatureStore(url, cache=None) as other:
                    for k in range(3):
                        other.ingest(_corrected(bars.iloc[k::5], 1.01 + 0.01 * k))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                done.set()

        th = threading.Thread(target=correct, name="kt-correction")
        th.start()
        try:
            while not done.is_set():
                seen.append(fs.get_features(list(bars["symbol"].unique()), view="kt", as_known_at=t, include_bars=True))
        finally:
            th.join(timeout=120)
        assert not errors and not th.is_alive()
        seen.append(fs.get_features(list(bars["symbol"].unique()), view="kt", as_known_at=t, include_bars=True))
        for frame in seen:
            pd.testing.assert_frame_equal(frame, before)
        assert not fs.get_features(list(bars["symbol"].unique()), view="kt", include_bars=True).equals(before)


def test_history_horizon_compaction_and_views_not_ready_yet(make_database: Callable[[str], URL]) -> None:
    url = make_database("kt_compact")
    bars = make_bars(["CMP"], 40)
    with FeatureStore(url, auto_migrate=True, cache=None) as fs:
        born = _now()
        fs.ingest(bars)
        t0 = _now()
        fs.create_view("kt", ["sma_5"])
        t_view = _now()
        with pytest.raises(HistoryError, match="not ready"):
            fs.get_features("CMP", view="kt", as_known_at=t0)
        with pytest.raises(HistoryError, match="before the history"):
            fs.get_bars("CMP", as_known_at=born - dt.timedelta(days=1))
        r1 = fs.ingest(_corrected(bars.iloc[[30]], 1.03))
        t1 = _now()
        fs.ingest(_corrected(bars.iloc[[30]], 1.06))
        t2 = _now()
        h = fs.history("CMP", bars["ts"].iloc[30])
        assert list(h.bars["close"]) == [
            bars["close"].iloc[30], bars["close"].iloc[30] * 1.03, bars["close"].iloc[30] * 1.06
        ]
        assert list(h.bars["superseded_by"])[:2] == [r1.load_id, r1.load_id + 1] and h.bars["known_until"].isna().tolist() == [False, False, True]
        assert len(h.features["kt v1"]) == 3
        at_t1 = fs.get_bars("CMP", as_known_at=t1)
        with pytest.raises(ConfigError, match="future"):
            fs.compact_history(_now() + dt.timedelta(days=1))
        res = fs.compact_history(t1)
        assert res.rows_dropped["bars"] == 1 and res.rows_dropped["kt v1"] >= 1
        with pytest.raises(HistoryError):
            fs.get_bars("CMP", as_known_at=t_view)
        pd.testing.assert_frame_equal(fs.get_bars("CMP", as_known_at=t1), at_t1)
        assert fs.get_bars("CMP", as_known_at=t2)["close"].iloc[30] == bars["close"].iloc[30] * 1.06
        assert len(fs.history("CMP", bars["ts"].iloc[30]).bars) == 2


def test_past_knowledge_times_are_cached_without_invalidation(make_database: Callable[[str], URL]) -> None:
    url = make_database("kt_cache")
    bars = make_bars(["CCH"], 40)
    with FeatureStore(url, auto_migrate=True, cache="lru") as fs:
        fs.ingest(bars)
        t = _now()
        fs.ingest(_corrected(bars.iloc[[35]], 1.02))  # a change stamped after t: t is settled
        a = fs.get_bars("CCH", as_known_at=t)
        hits = fs.cache_stats()["hits"]
        fs.ingest(_corrected(bars.iloc[[36]], 1.02))  # invalidates "now" results of CCH, not t's
        b = fs.get_bars("CCH", as_known_at=t)
        assert fs.cache_stats()["hits"] == hits + 1
        pd.testing.assert_frame_equal(a, b)
        assert a["close"].iloc[35] == bars["close"].iloc[35]
        now1 = fs.get_bars("CCH")
        fs.ingest(_corrected(bars.iloc[[37]], 1.02))
        assert fs.get_bars("CCH")["close"].iloc[37] != now1["close"].iloc[37]


def test_existing_store_upgrades_in_place_and_history_starts_there(make_database: Callable[[str], URL]) -> None:
    url = make_database("kt_upgrade")
    bars = make_bars(SYMBOLS, 50)
    with FeatureStore(url, auto_migrate=True, cache=None) as fs:
        fs.create_view("kt", VIEW, columns=["label"])
        fs.ingest(bars.assign(label=1.0))
        want_f = fs.get_features(SYMBOLS, view="kt")
        want_b = fs.get_bars(SYMBOLS)
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        migrate.downgrade(engine, "0003")
        with psycopg.connect(libpq_url(url)) as conn:
            cols = [r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'fv_kt_v1' ORDER BY ordinal_position"
            )]
            assert "load_id" not in cols and conn.execute("SELECT count(*) FROM bars").fetchone() == (100,)
        before_upgrade = _now()
        migrate.upgrade(engine, "head")
    finally:
        engine.dispose()
    with FeatureStore(url, cache=None) as fs:
        pd.testing.assert_frame_equal(fs.get_features(SYMBOLS, view="kt"), want_f)
        pd.testing.assert_frame_equal(fs.get_bars(SYMBOLS), want_b)
        with pytest.raises(HistoryError):
            fs.get_bars(SYMBOLS, as_known_at=before_upgrade - dt.timedelta(seconds=1))
        t = _now()
        fs.ingest(_corrected(bars.iloc[[10]], 1.02))
        pd.testing.assert_frame_equal(fs.get_features(SYMBOLS, view="kt", as_known_at=t), want_f)
        got = fs.get_features(SYMBOLS, view="kt").xs("AAA", level="symbol")
        ref = oracle_features(fs.get_bars("AAA").reset_index())
        for name, values in ref.items():
            assert np.array_equal(got[name].to_numpy(), values, equal_nan=True)
        assert (got["label"] == 1.0).all()  # user columns survive the rebuild and the recompute


# -- query plans on realistic sizes ----------------------------------------------------------------


def _walk(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes.extend(_walk(child))
    return nodes


@pytest.mark.single_node  # PostgreSQL's plan shapes (Citus's are checked in test_citus_store)
def test_knowledge_time_plans_use_the_primary_keys(make_database: Callable[[str], URL]) -> None:
    url = make_database("kt_plan")
    with FeatureStore(url, auto_migrate=True, cache=None) as fs:
        fs.create_view("kt", ["sma_5"])
        bars = make_bars(500, 400)
        fs.ingest(bars)
        sample = bars.iloc[::97]  # ~1% of the rows corrected, in two loads
        fs.ingest(_corrected(sample.iloc[::2], 1.01))
        fs.ingest(_corrected(sample.iloc[1::2], 1.01))
        t = _now()
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            conn.execute("ANALYZE")
            ids = [r[0] for r in conn.execute("SELECT entity_id FROM entities ORDER BY 1 LIMIT 5")]
            assert conn.execute("SELECT count(*) FROM bars").fetchone()[0] >= 200_000
            cases = [
                (range_sql("bars", list(BAR_COLUMNS), known=True), {"ids": ids, "start": dt.datetime(2020, 3, 1, tzinfo=UTC), "end": dt.datetime(2020, 6, 1, tzinfo=UTC)}, ("bars", "bars_history")),
                (range_sql("fv_kt_v1", list(BAR_COLUMNS), ["sma_5"], known=True), {"ids": ids, "start": dt.datetime(2020, 3, 1, tzinfo=UTC), "end": dt.datetime(2020, 6, 1, tzinfo=UTC)}, ("fv_kt_v1", "fv_kt_v1_h", "bars")),
                (latest_sql("fv_kt_v1", [], ["sma_5"], known=True), {"symbols": ["S0001", "S0002"], "as_of": t}, ("fv_kt_v1", "fv_kt_v1_h")),
                (latest_one_sql("bars", list(BAR_COLUMNS), known=True), {"symbol": "S0003", "as_of": t}, ("bars", "bars_history")),
            ]
            for query, params, tables in cases:
                params["known_at"] = t
                plan = conn.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchone()[0][0]["Plan"]
                nodes = _walk(plan)
                seq = [n.get("Relation Name") for n in nodes if n["Node Type"] == "Seq Scan"]
                assert not set(seq) & set(tables), f"sequential scan on {seq}: {plan}"
                scanned = {
                    n.get("Relation Name") for n in nodes
                    if n["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan")
                }
                assert set(tables) <= scanned, f"{tables} not all index-scanned ({scanned})"


def test_availability_lag_hides_rows_until_ts_plus_the_lag(make_database: Callable[[str], URL]) -> None:
    today = pd.Timestamp.now(tz="UTC").floor("D")
    bars = make_bars(["LAG"], 20, start=str((today - pd.Timedelta(days=19)).date()))
    with FeatureStore(make_database("kt_lag"), auto_migrate=True, cache=None) as fs:
        view = fs.create_view("lag", ["sma_3"], available_after="2D")
        assert view.available_after == dt.timedelta(days=2)
        assert fs.create_view("lag", ["sma_3"], available_after="2D").version == 1  # same spec
        fs.ingest(bars)
        t = _now()
        got = fs.get_features("LAG", view="lag", as_known_at=t)
        known = bars[bars["ts"] + pd.Timedelta(days=2) <= t]
        assert list(got.index.get_level_values("ts")) == list(known["ts"])
        assert len(known) < len(bars)
        latest = fs.get_latest("LAG", view="lag", as_known_at=t)
        assert latest.index[0][1] == known["ts"].iloc[-1]
        assert len(fs.get_features("LAG", view="lag")) == len(bars)  # current reads: no lag
        empty = fs.get_features("LAG", view="lag", start=bars["ts"].iloc[-1], as_known_at=t)
        assert len(empty) == 0 and list(empty.columns) == ["sma_3"]
        with pytest.raises(ConfigError):
            fs.create_view("lag2", ["sma_3"], available_after="-1h")


def test_corrections_resume_from_the_nearest_checkpoint(make_database: Callable[[str], URL], monkeypatch: Any) -> None:
    monkeypatch.setattr(write_features, "CHECKPOINT_BARS", 10)
    url = make_database("kt_ckpt")
    bars = make_bars(["CKP"], 95)
    with FeatureStore(url, auto_migrate=True, cache=None) as fs:
        fs.create_view("kt", VIEW)
        fs.ingest(bars.iloc[:33])
        for k in range(33, 47):  # one bar at a time: a checkpoint when a count reaches 40
            fs.ingest(bars.iloc[[k]])
        fs.ingest(bars.iloc[47:90])
        with psycopg.connect(libpq_url(url)) as conn:
            marks = conn.execute("SELECT ts, n_bars FROM indicator_checkpoints ORDER BY ts").fetchall()
        assert [n for _, n in marks] == list(range(10, 91, 10))
        assert [pd.Timestamp(ts) for ts, _ in marks] == list(bars["ts"].iloc[9:90:10])
        # a correction at bar 57: resumed from the checkpoint after bar 50 (only the 40 bars after
        # it are read back); rows before 57 untouched
        read: list[int] = []
        real_read = write_features._read_bars

        def counting(*args: Any) -> Any:
            got = real_read(*args)
            read.append(len(got[0]))
            return got

        monkeypatch.setattr(write_features, "_read_bars", counting)
        fix = _corrected(bars.iloc[[56]], 1.02)
        res = fs.ingest(fix)
        assert read == [40]
        late = bars.iloc[[90]].assign(ts=bars["ts"].iloc[60] + pd.Timedelta(hours=12))  # a late bar
        res2 = fs.ingest(late)
        with psycopg.connect(libpq_url(url)) as conn:
            written = conn.execute(
                "SELECT min(ts), count(*) FROM fv_kt_v1 WHERE load_id = %s", (res.load_id,)
            ).fetchone()
            assert pd.Timestamp(written[0]) == bars["ts"].iloc[56]
            marks = conn.execute("SELECT ts, n_bars FROM indicator_checkpoints ORDER BY ts").fetchall()
        # the late bar shifted every later count by one: checkpoints after it were recomputed
        want = bars.iloc[:90].set_index("ts")
        want.loc[bars["ts"].iloc[56], ["close", "high", "low"]] = fix[["close", "high", "low"]].to_numpy()[0]
        want.loc[late["ts"].iloc[0], BAR_COLUMNS] = late[list(BAR_COLUMNS)].to_numpy()[0]
        want = want.sort_index()
        assert [n for _, n in marks] == list(range(10, 91, 10))
        assert [pd.Timestamp(ts) for ts, _ in marks] == list(want.index[9:91:10])
        got = fs.get_features("CKP", view="kt").xs("CKP", level="symbol")
        ref = oracle_features(want.reset_index())
        for name, values in ref.items():
            assert np.array_equal(got[name].to_numpy(), values, equal_nan=True), name
        assert res2.entities_recomputed == 1
