"""[read] Training frames at knowledge time (``as_known_at``, ``known_at_col``) against a brute-force
oracle that replays the loads: after each load the test records a clock and its own copy of the
bars as they stood, computes the features with TA-Lib over that copy, and picks per event the row
the store should have attached at the event's decision time."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import talib
from helpers import make_bars
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plans import assert_plan_uses_index, nodes

from featurestore.errors import ConfigError, HistoryError
from featurestore.read import TRAINING_TS_COLUMN, Reader, render
from featurestore.read.versions import versions_sql
from featurestore.schema import BAR_COLUMNS

UTC = dt.UTC
D0 = pd.Timestamp("2024-01-01", tz="UTC")
FEATS = ["sma_3", "ema_5"]
OHLCV = list(BAR_COLUMNS)


def now() -> pd.Timestamp:
    return pd.Timestamp(dt.datetime.now(UTC)).as_unit("us")


class Replay:
    """The test's own copy of the store's bars after each load, with the clock taken after it."""

    def __init__(self, store: Any, clock0: pd.Timestamp) -> None:
        self.store = store
        self.states: list[dict[str, pd.DataFrame]] = [{}]
        self.clocks: list[pd.Timestamp] = [clock0]
        self.before: list[pd.Timestamp] = [clock0]  # clock taken before each load (index k: load k)
        self.lag = pd.Timedelta(0)  # the availability lag of view 'kl'
        self.load_ids: list[int | None] = [None]

    def load(self, bars: pd.DataFrame) -> None:
        state = {s: df.copy() for s, df in self.states[-1].items()}
        for sym, part in bars.groupby("symbol"):
            new = part.set_index("ts")[OHLCV]
            old = state.get(str(sym))
            merged = new if old is None else pd.concat([old[~old.index.isin(new.index)], new])
            state[str(sym)] = merged.sort_index()
        self.before.append(now())
        self.load_ids.append(self.store.ingest(bars).load_id)
        self.clocks.append(now())
        self.states.append(state)

    def state_at(self, d: pd.Timestamp) -> dict[str, pd.DataFrame]:
        k = int(np.searchsorted(np.array([c.value for c in self.clocks]), d.value, "right")) - 1
        assert k >= 0
        return self.states[k]


def talib_features(bars: pd.DataFrame) -> pd.DataFrame:
    close = bars["close"].to_numpy(dtype=np.float64)
    out = bars.copy()
    out["sma_3"] = talib.SMA(close, 3)
    out["ema_5"] = talib.EMA(close, 5)
    return out


def oracle(
    replay: Replay,
    events: pd.DataFrame,
    *,
    known_col: str,
    tol: pd.Timedelta | None,
    include_bars: bool,
    lag: pd.Timedelta | None = None,
) -> pd.DataFrame:
    lag = pd.Timedelta(0) if lag is None else lag
    cols = [*(OHLCV if include_bars else []), *FEATS]
    out = events.copy()
    vals = {c: np.full(len(events), np.nan) for c in cols}
    fts = [pd.NaT] * len(events)
    cache: dict[tuple[int, str], pd.DataFrame] = {}
    for i, (sym, t, d) in enumerate(zip(events["symbol"], events["ts"], events[known_col])):
        if pd.isna(t) or pd.isna(d):
            continue
        state = replay.state_at(d)
        if sym not in state:
            continue
        key = (id(state), sym)
        if key not in cache:
            cache[key] = talib_features(state[sym])
        feats = cache[key]
        ok = (feats.index <= t) & (feats.index + lag <= d)
        if tol is not None:
            ok &= feats.index >= t - tol
        if not ok.any():
            continue
        row = feats[ok].iloc[-1]
        for c in cols:
            vals[c][i] = row[c]
        fts[i] = feats[ok].index[-1]
    for c in cols:
        out[c] = vals[c]
    out[TRAINING_TS_COLUMN] = pd.to_datetime(pd.Series(fts, index=events.index, dtype=object), utc=True).astype(
        "datetime64[us, UTC]"
    )
    return out


def correct(bars: pd.DataFrame, sym: str, day: int, factor: float) -> pd.DataFrame:
    """The bar of ``sym`` on day ``day`` with close scaled (high/low widened to stay valid)."""
    row = bars[(bars["symbol"] == sym) & (bars["ts"] == D0 + pd.Timedelta(days=day))].copy()
    assert len(row) == 1
    row["close"] = np.round(row["close"] * factor, 2)
    row["high"] = np.maximum(row["high"], row["close"])
    row["low"] = np.minimum(row["low"], row["close"])
    return row


@pytest.fixture(scope="module")
def reader(store: Any) -> Iterator[Reader]:
    r = Reader(store.db)
    yield r
    r.close()


@pytest.fixture(scope="module")
def replay(store: Any) -> Replay:
    """View ``k`` (sma_3, ema_5) on an empty store, then six loads of AAA and BBB:
    appends, a correction of an old bar, a late bar in the past, an identical overlapping reload,
    and a correction with an append."""
    store.create_view("k", FEATS)
    # clocks are 'now', bars are in 2024: a lag that cuts into them (about day 10 at the last clock)
    lag = (now() - (D0 + pd.Timedelta(days=10, hours=12))).floor("s")
    store.create_view("kl", FEATS, available_after=lag.to_pytimedelta())
    rp = Replay(store, now())
    rp.lag = lag
    aaa = make_bars(["AAA"], 20, start="2024-01-01", seed=1)
    bbb = make_bars(["BBB"], 12, start="2024-01-01", seed=2)
    late = bbb.iloc[[4]]
    bbb_gap = bbb.drop(index=bbb.index[4])
    rp.load(pd.concat([aaa.iloc[:10], bbb_gap.iloc[:5]], ignore_index=True))  # 1: first bars
    rp.load(pd.concat([aaa.iloc[10:15], bbb_gap.iloc[5:8]], ignore_index=True))  # 2: appends
    rp.load(correct(aaa, "AAA", 3, 1.03))  # 3: a correction of an old bar
    rp.load(late)  # 4: a late bar in the past (BBB day 4)
    rp.load(aaa.iloc[8:15])  # 5: overlapping reload, values as stored (bar 3 is not in it)
    rp.load(pd.concat([correct(aaa, "AAA", 12, 0.98), aaa.iloc[15:20]], ignore_index=True))  # 6
    return rp


def decision_times(rp: Replay) -> list[pd.Timestamp]:
    """Each clock, and a moment between each load's clock and the next load's start."""
    out = list(rp.clocks)
    for k in range(1, len(rp.clocks)):
        out.append(rp.clocks[k - 1] + (rp.before[k] - rp.clocks[k - 1]) / 2)
    return [pd.Timestamp(t).floor("us") for t in out]


def make_events(rp: Replay, seed: int, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ds = decision_times(rp)
    sym = rng.choice(["AAA", "BBB", "NOPE"], n)
    ts = D0 + pd.to_timedelta(rng.integers(-2, 44, n) * 12, unit="h")
    ts = ts + pd.to_timedelta(rng.choice([0, 0, 0, 1, -1], n), unit="us")
    dec = pd.DatetimeIndex([ds[i] for i in rng.integers(0, len(ds), n)]).as_unit("us")
    ev = pd.DataFrame({"symbol": sym, "ts": pd.DatetimeIndex(ts).as_unit("us"), "decided_at": dec})
    ev.loc[rng.random(n) < 0.05, "decided_at"] = pd.NaT
    ev.loc[rng.random(n) < 0.03, "ts"] = pd.NaT
    ev = pd.concat([ev, ev.iloc[:30]], ignore_index=True)  # duplicated events
    ev["label"] = np.arange(len(ev), dtype=float)
    ev.index = pd.RangeIndex(1000, 1000 + len(ev))
    return ev


@pytest.mark.parametrize("tol", [None, pd.Timedelta("36h")])
@pytest.mark.parametrize("include_bars", [False, True])
def test_known_at_col_equals_the_replayed_history(reader: Reader, replay: Replay, tol: Any, include_bars: bool) -> None:
    events = make_events(replay, seed=7)
    before = events.copy(deep=True)
    got = reader.get_training_frame(
        events, view="k", tolerance=tol, include_bars=include_bars, known_at_col="decided_at"
    )
    pd.testing.assert_frame_equal(events, before)  # the caller's events are not changed
    want = oracle(replay, events, known_col="decided_at", tol=tol, include_bars=include_bars)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    # the cases the load sequence was built for actually occur among the events
    assert got["sma_3"].notna().sum() > 50 and got["sma_3"].isna().sum() > 20


def test_corrections_are_seen_only_after_they_committed(reader: Reader, replay: Replay) -> None:
    """AAA day 5's sma_3 reads bar 3: before load 3 the old value, from load 3 on the corrected one;
    BBB's late day-4 bar is attached only from load 4 on."""
    t = D0 + pd.Timedelta(days=5)
    ds = [replay.clocks[2], replay.clocks[3]]
    late = D0 + pd.Timedelta(days=4, hours=1)
    ev = pd.DataFrame(
        {"symbol": ["AAA", "AAA", "BBB", "BBB"], "ts": [t, t, late, late], "decided_at": [*ds, replay.clocks[3], replay.clocks[4]]}
    )
    got = reader.get_training_frame(ev, view="k", known_at_col="decided_at")
    assert got["sma_3"].iloc[0] != got["sma_3"].iloc[1]
    assert got[TRAINING_TS_COLUMN].iloc[2] == D0 + pd.Timedelta(days=3)
    assert got[TRAINING_TS_COLUMN].iloc[3] == D0 + pd.Timedelta(days=4)
    want = oracle(replay, ev, known_col="decided_at", tol=None, include_bars=False)
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_identical_reload_wrote_no_history(replay: Replay, raw_conn: Any) -> None:
    # load 5 rewrote AAA days 8..14 with the values already stored: no version was superseded by it
    load5 = replay.load_ids[5]
    assert load5 is not None
    assert raw_conn.execute("SELECT count(*) FROM bars_history WHERE superseded_by = %s", (load5,)).fetchone()[0] == 0
    assert raw_conn.execute("SELECT count(*) FROM fv_k_v1_h WHERE superseded_by = %s", (load5,)).fetchone()[0] == 0


@pytest.mark.parametrize("strategy", ["range", "per_event"])
def test_as_known_at_equals_known_at_col_with_one_decision_time(reader: Reader, replay: Replay, strategy: str) -> None:
    events = make_events(replay, seed=11, n=200).drop(columns="decided_at")
    for i, t in enumerate(decision_times(replay)):
        ev = events.assign(decided_at=t)
        per_event = reader.get_training_frame(ev, view="k", known_at_col="decided_at", include_bars=i % 2 == 0)
        whole = reader.get_training_frame(ev, view="k", as_known_at=t, strategy=strategy, include_bars=i % 2 == 0)
        pd.testing.assert_frame_equal(per_event, whole, check_exact=True)
        want = oracle(replay, ev, known_col="decided_at", tol=None, include_bars=i % 2 == 0)
        pd.testing.assert_frame_equal(whole, want, check_exact=True)


def test_known_by_the_event_time(reader: Reader, replay: Replay) -> None:
    """known_at_col=event_time_col: a row counts only if it was both observed and known by the event time."""
    ts = pd.DatetimeIndex([*decision_times(replay), replay.clocks[-1] + pd.Timedelta(days=1)]).as_unit("us")
    ev = pd.DataFrame({"symbol": "AAA", "ts": ts})
    got = reader.get_training_frame(ev, view="k", known_at_col="ts")
    want = oracle(replay, ev.assign(d=ev["ts"]), known_col="d", tol=None, include_bars=False).drop(columns="d")
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_decisions_before_the_history_raise_naming_the_event(reader: Reader, replay: Replay) -> None:
    ev = pd.DataFrame(
        {
            "symbol": ["AAA", "AAA", "BBB"],
            "ts": [D0, D0, D0],
            "decided_at": [replay.clocks[1], pd.Timestamp("2001-02-03", tz=UTC), pd.Timestamp("2000-01-01", tz=UTC)],
        },
        index=["a", "b", "c"],
    )
    with pytest.raises(HistoryError, match=r"position 1 \(index 'b'\).*decided_at=2001-02-03.*2 event"):
        reader.get_training_frame(ev, view="k", known_at_col="decided_at")
    with pytest.raises(HistoryError):
        reader.get_training_frame(ev, view="k", as_known_at="2001-02-03 UTC")
    nat = pd.Series([pd.NaT], index=["a"], dtype="datetime64[us, UTC]")
    ok = reader.get_training_frame(ev.iloc[[0]].assign(decided_at=nat), view="k", known_at_col="decided_at")
    assert ok["sma_3"].isna().all() and ok[TRAINING_TS_COLUMN].isna().all()


def test_a_view_backfilled_after_the_loads(reader: Reader, store: Any, replay: Replay) -> None:
    """A view created after the loads holds backfilled rows (load 0, known from its ready_at);
    a later correction supersedes some: each decision time gets the features as computed then."""
    store.create_view("kb", FEATS)
    ready = now()
    aaa = make_bars(["AAA"], 20, start="2024-01-01", seed=1)
    replay.load(correct(aaa, "AAA", 16, 1.04))
    ds = [ready, ready + (replay.before[-1] - ready) / 2, replay.clocks[-1]]
    events = make_events(replay, seed=9, n=200).drop(columns="decided_at")
    rng = np.random.default_rng(1)
    events["decided_at"] = pd.DatetimeIndex([pd.Timestamp(ds[i]).floor("us") for i in rng.integers(0, 3, len(events))])
    got = reader.get_training_frame(events, view="kb", known_at_col="decided_at", include_bars=True)
    want = oracle(replay, events, known_col="decided_at", tol=None, include_bars=True)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    with pytest.raises(HistoryError, match="view 'kb' v1 was ready only at"):
        reader.get_training_frame(events.assign(decided_at=replay.clocks[1]), view="kb", known_at_col="decided_at")


def test_bad_arguments(reader: Reader, replay: Replay) -> None:
    ev = pd.DataFrame({"symbol": ["AAA"], "ts": [D0], "decided_at": [D0.tz_localize(None)]})
    with pytest.raises(ConfigError, match="not both"):
        reader.get_training_frame(ev, view="k", known_at_col="decided_at", as_known_at=replay.clocks[1])
    with pytest.raises(Exception, match="no time zone"):
        reader.get_training_frame(ev, view="k", known_at_col="decided_at")
    with pytest.raises(Exception, match="no column 'nope'"):
        reader.get_training_frame(ev, view="k", known_at_col="nope")


def test_availability_lag(reader: Reader, replay: Replay) -> None:
    """View ``kl`` (published with a delay): a row at ts counts as known only from ts + lag."""
    lag = replay.lag
    events = make_events(replay, seed=5, n=300)
    got = reader.get_training_frame(events, view="kl", known_at_col="decided_at", include_bars=True)
    want = oracle(replay, events, known_col="decided_at", tol=None, include_bars=True, lag=lag)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    # the lag cut rows that are stored and known: nothing after about day 10 is attached
    assert got[TRAINING_TS_COLUMN].max() <= D0 + pd.Timedelta(days=10, hours=12)
    assert (events["ts"] > D0 + pd.Timedelta(days=12)).sum() > 50
    t = replay.clocks[-1]
    for strategy in ("range", "per_event"):
        whole = reader.get_training_frame(events.assign(decided_at=t), view="kl", as_known_at=t, strategy=strategy)
        want = oracle(replay, events.assign(decided_at=t), known_col="decided_at", tol=None, include_bars=False, lag=lag)
        pd.testing.assert_frame_equal(whole, want, check_exact=True)
    # without knowledge time the lag does not apply: today's rows
    now_frame = reader.get_training_frame(events, view="kl")
    assert now_frame[TRAINING_TS_COLUMN].max() > D0 + pd.Timedelta(days=12)


def test_client_passes_knowledge_time_through_its_cache(store: Any, replay: Replay) -> None:
    events = make_events(replay, seed=3, n=100)
    a = store.get_training_frame(events, view="k", known_at_col="decided_at")
    b = store.get_training_frame(events, view="k")
    c = store.get_training_frame(events.drop(columns="decided_at"), view="k", as_known_at=replay.clocks[2])
    want = oracle(replay, events, known_col="decided_at", tol=None, include_bars=False)
    pd.testing.assert_frame_equal(a, want, check_exact=True)
    cur = oracle(replay, events.assign(decided_at=replay.clocks[-1]), known_col="decided_at", tol=None, include_bars=False)
    pd.testing.assert_frame_equal(b, cur.assign(decided_at=events["decided_at"]), check_exact=True)
    at2 = oracle(replay, events.assign(d=replay.clocks[2]), known_col="d", tol=None, include_bars=False).drop(columns="d")
    pd.testing.assert_frame_equal(c, at2.drop(columns="decided_at"), check_exact=True)
    # decisions ahead of the newest load: a later load changes the answer, the cache must not keep it
    ahead = events.assign(decided_at=now() + pd.Timedelta(days=1))
    first = store.get_training_frame(ahead, view="k", known_at_col="decided_at")
    aaa = make_bars(["AAA"], 20, start="2024-01-01", seed=1)
    replay.load(correct(aaa, "AAA", 18, 1.06))
    second = store.get_training_frame(ahead, view="k", known_at_col="decided_at")
    assert not first.equals(second)
    pd.testing.assert_frame_equal(
        second, oracle(replay, ahead, known_col="decided_at", tol=None, include_bars=False), check_exact=True
    )
    # settled decision times (all before the newest load) give the same answer after it
    again = store.get_training_frame(events, view="k", known_at_col="decided_at")
    pd.testing.assert_frame_equal(again, a, check_exact=True)


# -- random load sequences (hypothesis) ---------------------------------------------------------

_counter = itertools.count()


@st.composite
def load_sequences(draw: st.DrawFn) -> list[tuple[str, int, int, float]]:
    """Loads as (kind, first day, n days, factor): 'bars' writes days [first, first+n) of the base
    walk (appends, late bars, identical reloads), 'fix' scales one stored day's close."""
    n = draw(st.integers(1, 5))
    return [
        draw(
            st.one_of(
                st.tuples(st.just("bars"), st.integers(0, 14), st.integers(1, 6), st.just(1.0)),
                st.tuples(st.just("fix"), st.integers(0, 14), st.just(1), st.sampled_from([0.97, 1.02, 1.05])),
            )
        )
        for _ in range(n)
    ]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=load_sequences(), seed=st.integers(0, 2**16))
def test_random_load_sequences(reader: Reader, store: Any, replay: Replay, seq: Any, seed: int) -> None:
    sym = f"H{next(_counter):03d}"
    base = make_bars([sym], 20, start="2024-01-01", seed=seed)
    rp = Replay(store, replay.clocks[-1])
    rp.clocks[0] = now()
    rp.before[0] = rp.clocks[0]
    for kind, first, n, factor in seq:
        if kind == "bars":
            rp.load(base.iloc[first : first + n])
        else:
            stored = rp.states[-1].get(sym)
            day = D0 + pd.Timedelta(days=first)
            if stored is None or day not in stored.index:
                rp.load(base.iloc[first : first + 1])
                continue
            row = stored.loc[[day]].reset_index().assign(symbol=sym)
            row["close"] = np.round(row["close"] * factor, 2)
            row["high"] = np.maximum(row["high"], row["close"])
            row["low"] = np.minimum(row["low"], row["close"])
            rp.load(row[["symbol", "ts", *OHLCV]])
    rng = np.random.default_rng(seed)
    ds = decision_times(rp)
    m = 60
    ev = pd.DataFrame(
        {
            "symbol": sym,
            "ts": pd.DatetimeIndex(D0 + pd.to_timedelta(rng.integers(-1, 44, m) * 12, unit="h")).as_unit("us"),
            "decided_at": pd.DatetimeIndex([ds[i] for i in rng.integers(0, len(ds), m)]).as_unit("us"),
        }
    )
    tol = pd.Timedelta("2D") if seed % 2 else None
    got = reader.get_training_frame(ev, view="k", known_at_col="decided_at", tolerance=tol, include_bars=seed % 3 == 0)
    want = oracle(rp, ev, known_col="decided_at", tol=tol, include_bars=seed % 3 == 0)
    pd.testing.assert_frame_equal(got, want, check_exact=True)


# -- the plan of the versions query on a realistic table -------------------------------------------


@pytest.mark.single_node  # PostgreSQL's own plan shapes
def test_plan_versions_query(store: Any, replay: Replay, raw_conn: Any) -> None:
    """1,000 symbols x 200 bars with 1% of the rows superseded (by loads of a 5,000-load log): the
    versions query is index scans on the view table, its history table and bars/bars_history,
    never a sequential scan; the probe looks the loads up by key."""
    conn = raw_conn
    conn.execute(
        "WITH n AS (INSERT INTO entities (symbol) SELECT 'P' || lpad(i::text, 4, '0') FROM generate_series(1, 1000) i "
        "RETURNING entity_id) INSERT INTO entity_keys SELECT entity_id FROM n"
    )
    conn.execute(
        "INSERT INTO bars (entity_id, load_id, ts, open, high, low, close, volume) "
        "SELECT e.entity_id, 0, timestamptz '2020-01-01 00:00+00' + b * interval '1 day', "
        "100, 101, 99, 100.5, 1000 FROM entities e, generate_series(0, 199) b WHERE e.symbol LIKE 'P%'"
    )
    conn.execute(
        "INSERT INTO fv_k_v1 (entity_id, load_id, ts, sma_3, ema_5) SELECT entity_id, 0, ts, close, close FROM bars "
        "WHERE entity_id IN (SELECT entity_id FROM entities WHERE symbol LIKE 'P%')"
    )
    # a log of 5,000 loads (rows-free, stamped in order) that the corrected rows and versions name
    lid = conn.execute("SELECT max(load_id) FROM loads").fetchone()[0]
    conn.execute(
        "INSERT INTO loads (source, started_at, committed_at, rows_in, rows_inserted, rows_updated, rows_unchanged, "
        "symbols, features_written) SELECT 'plan', now(), now(), 0, 0, 0, 0, 0, 0 FROM generate_series(1, 5000)"
    )
    for h, t, cols in (("fv_k_v1_h", "fv_k_v1", "sma_3, ema_5"), ("bars_history", "bars", "open, high, low, close, volume")):
        conn.execute(
            f"INSERT INTO {h} (entity_id, load_id, ts, superseded_by, {cols}) SELECT entity_id, 0, ts, "
            f"%s + 1 + (entity_id %% 5000), {cols} FROM {t} "
            "WHERE entity_id IN (SELECT entity_id FROM entities WHERE symbol LIKE 'P%%') "
            "AND extract(day FROM ts)::int %% 10 = 0 AND entity_id %% 10 = 0",
            (lid,),
        )
        conn.execute(
            f"UPDATE {t} SET load_id = %s + 1 + (entity_id %% 5000) WHERE (entity_id, ts) IN "
            f"(SELECT entity_id, ts FROM {h} WHERE superseded_by > %s)",
            (lid, lid),
        )
    conn.execute("ANALYZE")
    ids = np.array([r[0] for r in conn.execute("SELECT entity_id FROM entities WHERE symbol LIKE 'P%' ORDER BY 1")],
                   dtype=np.int32)
    t0 = pd.Timestamp("2020-03-01", tz=UTC).value // 1000
    for n in (1, 300):
        e = ids[::3][:n]
        params = {
            "ids": e,
            "first": np.full(e.size, t0, dtype=np.int64),
            "floor": np.full(e.size, -62_135_596_800_000_000, dtype=np.int64),
            "last": np.full(e.size, t0 + 60 * 86_400_000_000, dtype=np.int64),
            "dmin": np.full(e.size, now().value // 1000, dtype=np.int64),
        }
        for table, probe in (("fv_k_v1", True), ("bars", False)):
            hist = "bars_history" if table == "bars" else "fv_k_v1_h"
            plan = assert_plan_uses_index(
                conn, render(versions_sql(table, FEATS if table != "bars" else OHLCV, probe=probe), params),
                index=f"{table}_pkey", no_seq_scan_on=(table, hist),
            )
            assert any(node.get("Index Name") == f"{hist}_pkey" for node in nodes(plan)), plan
            if probe:
                assert any(
                    node.get("Index Name") == f"{table}_pkey" and node.get("Scan Direction") == "Backward"
                    for node in nodes(plan)
                ), plan
