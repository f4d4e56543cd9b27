"""float32 feature views (issue 14): ``create_view(..., dtype="float32")`` stores ``real`` columns.

The oracle is independent of the float32 code: the same spec created as a float64 view in the
same store, its values rounded in the test with numpy (``np.float32(x)``). Every read path of a
float32 view must return float32 columns equal to that, bit for bit (NaN where it is NaN), after
a backfill of an existing store, appends and corrections; a correction must store history only
for rows whose float32 values change; a value float32 cannot hold is refused with nothing written.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from helpers import SEED_VIEW, fingerprint, make_bars
from psycopg import sql
from sqlalchemy.engine import URL

from featurestore.cli import cli
from featurestore.client import FeatureStore
from featurestore.config import libpq_url
from featurestore.errors import ConfigError, NotFoundError, ValidationError
from featurestore.indicators import register

SYMBOLS = ["AAA", "BBB", "CCC", "DDD"]
N_BARS = 300  # > 256: corrections resume from a checkpoint
N_APPEND = 30
SPEC = [*SEED_VIEW, "sma_3", "f32_spread_3"]
SHORT = ["sma_3", "f32_spread_3"]  # short windows: a correction changes a few rows only
USER_COL = "score"


@register("f32_spread", inputs=("high", "low", "close"), params={"period": 3}, window="period")
def f32_spread(high, low, close, period):  # type: ignore[no-untyped-def]
    return (high[-1] - low[-1]) / close.mean()


@register("f32_huge", inputs=("close",), window=1)
def f32_huge(close):  # type: ignore[no-untyped-def]
    return close[0] * 1e37  # finite in float64, beyond float32 (max 3.4e38) for prices >= 34


def _with_score(bars: pd.DataFrame, seed: int) -> pd.DataFrame:
    out = bars.copy()
    # values float32 cannot hold exactly (0.1 and friends): the stored real differs from the float8
    out[USER_COL] = np.round(np.random.default_rng(seed).normal(0, 1, len(out)), 1)
    return out


def _f32(df: pd.DataFrame) -> pd.DataFrame:
    return df.astype(np.float32)


def _same(got: pd.DataFrame, want64: pd.DataFrame) -> None:
    """``got`` (a float32 view's read) is float32 and equals ``want64`` (the float64 view) rounded."""
    assert list(got.columns) == list(want64.columns)
    assert (got.dtypes == np.float32).all(), got.dtypes
    assert got.index.equals(want64.index)
    want = want64.to_numpy(dtype=np.float64).astype(np.float32)
    np.testing.assert_array_equal(got.to_numpy(), want)  # NaN where NaN, bits elsewhere


def _features(fs: FeatureStore, view: str, **kw: Any) -> pd.DataFrame:
    return fs.get_features(SYMBOLS, view=view, **kw)  # type: ignore[return-value]


def _hist(conn: psycopg.Connection[Any], table: str, load_id: int) -> set[tuple[int, pd.Timestamp]]:
    rows = conn.execute(
        sql.SQL("SELECT entity_id, ts FROM {} WHERE superseded_by = %s").format(sql.Identifier(table + "_h")),
        (load_id,),
    ).fetchall()
    return {(int(e), pd.Timestamp(t)) for e, t in rows}


@pytest.fixture(scope="module")
def scenario(make_database: Callable[[str], URL]) -> Iterator[dict[str, Any]]:
    """One store through its life: bars loaded, then views t64 and t32 backfilled from them (the
    same spec, float64 and float32), bars appended, one bar corrected. Keeps what each step saw."""
    url = make_database("float32")
    fs = FeatureStore(url, auto_migrate=True)
    bars = _with_score(make_bars(SYMBOLS, N_BARS + N_APPEND, seed=14), seed=1)
    first = bars.groupby("symbol").head(N_BARS)
    appended = bars.drop(first.index)
    fs.ingest(first.drop(columns=[USER_COL]), progress=False)  # an existing store, no user column yet
    v64 = fs.create_view("t64", SPEC, columns=[USER_COL])
    v32 = fs.create_view("t32", SPEC, columns=[USER_COL], dtype="float32")
    s32 = fs.create_view("s32", SHORT, dtype="float32")
    out: dict[str, Any] = {"fs": fs, "url": url, "v64": v64, "v32": v32, "s32": s32}
    out["after_backfill"] = (_features(fs, "t32"), _features(fs, "t64"))
    fs.ingest(appended, progress=False)  # appends (continued from saved state) with the user column
    out["after_append"] = (_features(fs, "t32"), _features(fs, "t64"))
    out["before_fix"] = dt.datetime.now(dt.UTC)
    before64 = _features(fs, "t64")
    # correct one bar of BBB late in its history (a recompute from the checkpoint before it) and
    # send the user column of its rows again, unchanged
    fix = bars[bars.symbol == "BBB"].iloc[-40:].copy()
    k = fix.index[0]
    fix.loc[k, "close"] = fix.loc[k, "close"] * 1.01
    fix.loc[k, "high"] = max(fix.loc[k, "high"], fix.loc[k, "close"])
    result = fs.ingest(fix, progress=False)
    out.update(fix_result=result, before64=before64, fixed_ts=pd.Timestamp(fix.loc[k, "ts"]))
    yield out
    fs.close()


# -- the view, its spec and its tables -----------------------------------------------------


def test_dtype_is_validated_and_nothing_is_registered(scenario: dict[str, Any]) -> None:
    fs: FeatureStore = scenario["fs"]
    before = fs.list_views()
    for bad in ("float16", "double", 32, np.float32):
        with pytest.raises(ConfigError, match="dtype=.*not supported.*float32"):
            fs.create_view("bad", ["sma_5"], dtype=bad)  # type: ignore[arg-type]
    assert fs.list_views() == before


def test_columns_are_real_and_spec_records_dtype(scenario: dict[str, Any]) -> None:
    v32, v64 = scenario["v32"], scenario["v64"]
    with psycopg.connect(libpq_url(scenario["url"])) as conn:
        for table, want in ((v32.table_name, "real"), (v64.table_name, "double precision")):
            for t in (table, table + "_h"):
                types = dict(conn.execute(
                    "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s", (t,)
                ).fetchall())
                feats = {c: types[c] for c in v32.feature_columns}
                assert set(feats.values()) == {want}, (t, feats)
                assert "f32_spread_3" in feats and USER_COL in feats
        specs = dict(conn.execute("SELECT name, spec FROM feature_views").fetchall())
    assert specs["t32"]["dtype"] == "float32"
    assert "dtype" not in specs["t64"]  # float64 specs are stored as they were before dtype existed
    fs: FeatureStore = scenario["fs"]
    assert fs.describe_view("t32")["dtype"] == "float32"
    assert fs.describe_view("t64")["dtype"] == "float64"


def test_other_dtype_is_a_new_version_same_is_a_no_op(scenario: dict[str, Any]) -> None:
    fs: FeatureStore = scenario["fs"]
    assert fs.create_view("vers", ["sma_5"]).version == 1
    assert fs.create_view("vers", ["sma_5"], dtype="float32").version == 2
    assert fs.create_view("vers", ["sma_5"], dtype="float32").version == 2
    assert fs.create_view("vers", ["sma_5"], dtype="float64").version == 3
    assert [v["dtype"] for v in fs.list_views() if v["name"] == "vers"] == ["float64", "float32", "float64"]
    fs.drop_view("vers")


# -- the write path ------------------------------------------------------------------------


def test_backfill_and_appends_store_rounded_float64(scenario: dict[str, Any]) -> None:
    for step in ("after_backfill", "after_append"):
        got, want = scenario[step]
        _same(got, want)
    got, want = scenario["after_append"]
    assert len(got) == len(SYMBOLS) * (N_BARS + N_APPEND)
    assert got["sma_20"].isna().groupby(level="symbol").sum().eq(19).all()  # warm-up NaN stays NaN
    assert got[USER_COL].notna().sum() == len(SYMBOLS) * N_APPEND  # given with the appends only


def test_correction_rewrites_only_rows_whose_float32_values_change(scenario: dict[str, Any]) -> None:
    fs: FeatureStore = scenario["fs"]
    result = scenario["fix_result"]
    assert result.updated == 1
    _same(_features(fs, "t32"), _features(fs, "t64"))
    _same(_features(fs, "s32"), _features(fs, "t64")[SHORT])

    def changed(cols: list[str]) -> set[pd.Timestamp]:
        """Oracle: the float64 view's values before and after the correction, rounded here."""
        old = scenario["before64"].loc["BBB"][cols]
        new = _features(fs, "t64").loc["BBB"][cols]
        a, b = old.to_numpy().astype(np.float32), new.to_numpy().astype(np.float32)
        differs = ((a != b) & ~(np.isnan(a) & np.isnan(b))).any(axis=1)
        return {pd.Timestamp(t) for t in old.index[differs]}

    want = changed([c for c in scenario["v32"].feature_columns if c != USER_COL])
    short = changed(SHORT)
    assert scenario["fixed_ts"] in short and len(short) <= 3  # later rows: the same float32 values
    with psycopg.connect(libpq_url(scenario["url"])) as conn:
        got = {t for _, t in _hist(conn, scenario["v32"].table_name, result.load_id)}
        # rows recomputed but unchanged in float32 are not rewritten: no history, no new load
        assert {t for _, t in _hist(conn, scenario["s32"].table_name, result.load_id)} == short
        # the user column was sent again for 40 rows, unchanged: real compared with real, no history
        unchanged_user = conn.execute(
            sql.SQL("SELECT count(*) FROM {} t JOIN entities e USING (entity_id) WHERE e.symbol = 'BBB' "
                    "AND t.load_id = %s").format(sql.Identifier(scenario["v32"].table_name)),
            (result.load_id,),
        ).fetchone()[0]  # type: ignore[index]
    assert got == want
    assert unchanged_user == len(want)  # only the rows whose values changed carry the new load


def test_rewriting_unchanged_user_values_is_no_change(scenario: dict[str, Any]) -> None:
    fs: FeatureStore = scenario["fs"]
    rows = make_bars(SYMBOLS, N_BARS + N_APPEND, seed=14)
    rows = _with_score(rows, seed=1).groupby("symbol").tail(5)
    with psycopg.connect(libpq_url(scenario["url"])) as conn:
        before = fingerprint(conn)
    res = fs.ingest(rows, progress=False)
    assert (res.inserted, res.updated, res.changed_entities) == (0, 0, ())
    with psycopg.connect(libpq_url(scenario["url"])) as conn:
        after = fingerprint(conn)
    assert {k: v for k, v in after.items() if k != "loads"} == {k: v for k, v in before.items() if k != "loads"}


# -- every read path -----------------------------------------------------------------------


def test_range_reads_pandas_and_arrow(scenario: dict[str, Any]) -> None:
    fs: FeatureStore = scenario["fs"]
    start, end = "2020-06-01 UTC", "2020-09-30 UTC"
    got = fs.get_features(SYMBOLS, start, end, view="t32", include_bars=True)
    want = fs.get_features(SYMBOLS, start, end, view="t64", include_bars=True)
    bars = ["open", "high", "low", "close", "volume"]
    assert (got[bars].dtypes == np.float64).all()  # bars stay float64
    pd.testing.assert_frame_equal(got[bars], want[bars])
    _same(got.drop(columns=bars), want.drop(columns=bars))
    arrow = fs.get_features(SYMBOLS, start, end, view="t32", as_arrow=True, columns=["rsi_14", USER_COL])
    assert arrow.schema.field("rsi_14").type == pa.float32()
    assert arrow.schema.field(USER_COL).type == pa.float32()
    _same(arrow.to_pandas().set_index(["symbol", "ts"]), want[["rsi_14", USER_COL]])
    # the cached result is the same, and float32 too
    hits = fs.cache_stats()["hits"]
    again = fs.get_features(SYMBOLS, start, end, view="t32", include_bars=True)
    assert fs.cache_stats()["hits"] == hits + 1
    pd.testing.assert_frame_equal(again, got)
    empty = fs.get_features(["NOPE"], view="t32", as_arrow=True)
    assert empty.num_rows == 0 and empty.schema.field("sma_20").type == pa.float32()


def test_latest_and_as_of(scenario: dict[str, Any]) -> None:
    fs: FeatureStore = scenario["fs"]
    cols = ["close", "rsi_14", "f32_spread_3", USER_COL]
    for as_of in (None, "2020-05-05 12:00 UTC"):
        for syms in (SYMBOLS + ["NOPE"], ["CCC"]):
            got = fs.get_latest(syms, view="t32", as_of=as_of, columns=cols)
            want = fs.get_latest(syms, view="t64", as_of=as_of, columns=cols)
            assert got["close"].dtype == np.float64
            pd.testing.assert_series_equal(got["close"], want["close"])
            _same(got[cols[1:]], want[cols[1:]])
            arrow = fs.get_latest(syms, view="t32", as_of=as_of, columns=cols, as_arrow=True)
            assert arrow.schema.field("rsi_14").type == pa.float32()
            _same(arrow.to_pandas().set_index(["symbol", "ts"])[cols[1:]], want[cols[1:]])


@pytest.mark.parametrize("strategy", ["range", "per_event"])
def test_training_frames_both_strategies(scenario: dict[str, Any], strategy: str) -> None:
    fs: FeatureStore = scenario["fs"]
    rng = np.random.default_rng(3)
    events = pd.DataFrame({
        "symbol": rng.choice([*SYMBOLS, "NOPE"], 200),
        "ts": pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 340 * 24, 200), unit="h"),
        "label": rng.integers(0, 2, 200),
    })
    got = fs.reader.get_training_frame(events, view="t32", strategy=strategy, include_bars=True)
    want = fs.reader.get_training_frame(events, view="t64", strategy=strategy, include_bars=True)
    cached = fs.get_training_frame(events, view="t32", include_bars=True)  # through the cache
    pd.testing.assert_frame_equal(cached, got)
    feats = list(scenario["v32"].feature_columns)
    assert (got[feats].dtypes == np.float32).all() and got["close"].dtype == np.float64
    pd.testing.assert_frame_equal(got.drop(columns=feats), want.drop(columns=feats))
    np.testing.assert_array_equal(got[feats].to_numpy(), want[feats].to_numpy().astype(np.float32))
    assert got[feats].notna().any().all()


def test_knowledge_time_reads_and_history(scenario: dict[str, Any]) -> None:
    fs: FeatureStore = scenario["fs"]
    then = scenario["before_fix"]
    _same(_features(fs, "t32", as_known_at=then), _features(fs, "t64", as_known_at=then))
    _same(_features(fs, "t32", as_known_at=then), scenario["after_append"][1])  # before the fix
    cols = ["macd_12_26_9", USER_COL]
    got = fs.get_latest(["BBB"], view="t32", as_of=scenario["fixed_ts"], as_known_at=then, columns=cols)
    want = fs.get_latest(["BBB"], view="t64", as_of=scenario["fixed_ts"], as_known_at=then, columns=cols)
    _same(got, want)  # type: ignore[arg-type]
    events = pd.DataFrame({"symbol": ["BBB", "AAA"], "ts": [scenario["fixed_ts"]] * 2, "decided": [then] * 2})
    for kw in ({"as_known_at": then}, {"known_at_col": "decided"}):
        g = fs.get_training_frame(events, view="t32", **kw)
        w = fs.get_training_frame(events, view="t64", **kw)
        feats = list(scenario["v32"].feature_columns)
        assert (g[feats].dtypes == np.float32).all()
        np.testing.assert_array_equal(g[feats].to_numpy(), w[feats].to_numpy().astype(np.float32))
    hist = fs.history("BBB", scenario["fixed_ts"]).features
    h32, h64 = hist["t32 v1"], hist["t64 v1"]
    assert len(h32) == 2 and (h32[list(scenario["v32"].feature_columns)].dtypes == np.float32).all()
    np.testing.assert_array_equal(
        h32[["sma_20", "rsi_14"]].to_numpy(), h64[["sma_20", "rsi_14"]].to_numpy().astype(np.float32)
    )


def test_export_writes_float32_columns(scenario: dict[str, Any], tmp_path: Path) -> None:
    fs: FeatureStore = scenario["fs"]
    path = tmp_path / "t32.parquet"
    fs.export(path, view="t32", progress=False)
    table = pq.read_table(path)
    assert table.schema.field("ema_50").type == pa.float32()
    assert table.schema.field("close").type == pa.float64()
    got = table.to_pandas().set_index(["symbol", "ts"])
    want = _features(fs, "t64", include_bars=True)
    feats = list(scenario["v32"].feature_columns)
    _same(got[feats], want[feats])


# -- refused values ------------------------------------------------------------------------


@pytest.fixture()
def small(make_database: Callable[[str], URL]) -> Iterator[tuple[FeatureStore, URL]]:
    url = make_database("float32_refuse")
    fs = FeatureStore(url, auto_migrate=True)
    yield fs, url
    fs.close()


def test_kernel_value_beyond_float32_is_refused_nothing_written(small: tuple[FeatureStore, URL]) -> None:
    fs, url = small
    # a view created on an empty store is ready at once; the load then computes its features
    fs.create_view("big32", ["f32_huge", "sma_3"], dtype="float32")
    tiny = make_bars(["TINY"], 12, seed=4)
    tiny[["open", "high", "low", "close"]] = 1.0  # 1e37 fits float32
    fs.ingest(tiny, progress=False)
    with psycopg.connect(libpq_url(url)) as conn:
        before = fingerprint(conn)
    with pytest.raises(ValidationError, match=r"view 'big32' v1 stores float32 \(real\): value .*e\+39 overflows") as err:
        fs.ingest(make_bars(["BIG"], 12, seed=3), progress=False)  # prices ~100 -> 1e39
    assert err.value.column == "f32_huge" and "symbol 'BIG' at 2020-01-01" in str(err.value)
    with psycopg.connect(libpq_url(url)) as conn:
        assert fingerprint(conn) == before  # no bar, feature, state or load of it
    got = fs.get_features(["TINY"], view="big32")
    assert (got["f32_huge"] == np.float32(1e37)).all() and got["f32_huge"].dtype == np.float32
    # a float64 view holds the values; a float32 view's backfill meets the limit (its batch writes nothing)
    fs.drop_view("big32")
    fs.create_view("big64", ["f32_huge"])
    fs.ingest(make_bars(["BIG"], 12, seed=3), progress=False)
    assert fs.get_features(["BIG"], view="big64")["f32_huge"].min() > 1e38
    with pytest.raises(ValidationError, match="view 'big32' v1 stores float32 .* overflows float32.* was removed"):
        fs.create_view("big32", ["f32_huge"], dtype="float32")
    with psycopg.connect(libpq_url(url)) as conn:
        assert conn.execute("SELECT to_regclass('fv_big32_v1')").fetchone() == (None,)
    with pytest.raises(NotFoundError):
        fs.describe_view("big32")


def test_user_value_beyond_float32_is_refused_nothing_written(small: tuple[FeatureStore, URL]) -> None:
    fs, url = small
    fs.create_view("u32", ["sma_3"], columns=["x"], dtype="float32")
    with psycopg.connect(libpq_url(url)) as conn:
        before = fingerprint(conn)
    for bad, what in ((1e39, "overflows"), (-1e-50, "too small")):
        rows = make_bars(["OLD", "NEW"], 12, seed=2)  # NEW's rows are 12..23
        rows["x"] = 1.5
        rows.loc[14, "x"] = bad
        with pytest.raises(ValidationError, match=what) as err:
            fs.ingest(rows, progress=False)
        msg = str(err.value)
        assert err.value.column == "x" and err.value.row == 14
        assert "view 'u32' v1" in msg and "symbol 'NEW'" in msg and "2020-01-03" in msg
        with psycopg.connect(libpq_url(url)) as conn:
            assert fingerprint(conn) == before
    rows["x"] = np.nan  # NaN is no error (stored as NULL, read as NaN)
    rows.loc[3, "x"] = 3.4e38  # the largest magnitudes fit
    fs.ingest(rows, progress=False)
    got = fs.get_features(["OLD", "NEW"], view="u32", columns=["x"])
    assert got["x"].dtype == np.float32 and got["x"].isna().sum() == 23
    assert got["x"].max() == np.float32(3.4e38)


# -- a backfill or load that meets a value beyond float32 -----------------------------------

HUGE = 1e36  # volumes x this: OBV (a running sum of volume) is beyond float32 from the first bar
O32 = ["sma_3", "obv"]


def _no_trace_of(conn: psycopg.Connection[Any], name: str) -> None:
    """Nothing of view ``name`` remains: no registry row, table, history table, state or checkpoint."""
    assert conn.execute("SELECT count(*) FROM feature_views WHERE name = %s", (name,)).fetchone() == (0,)
    assert conn.execute(
        "SELECT to_regclass(%s), to_regclass(%s)", (f"fv_{name}_v1", f"fv_{name}_v1_h")
    ).fetchone() == (None, None)
    for table in ("indicator_state", "indicator_checkpoints"):
        orphans = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE view_id NOT IN (SELECT view_id FROM feature_views)").format(
                sql.Identifier(table)
            )
        ).fetchone()
        assert orphans == (0,), table


def _stored_data(fp: dict[str, Any]) -> dict[str, Any]:
    """A fingerprint without the generations and knowledge stamp every committed write moves."""
    return {k: v for k, v in fp.items() if k not in ("entities", "store_state")}


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_backfill_beyond_float32_fails_cleanly_and_removes_the_version(
    small: tuple[FeatureStore, URL], n_jobs: int
) -> None:
    from joblib.externals.loky import get_reusable_executor

    fs, url = small
    ok = make_bars(["AAA", "BBB", "CCC"], 40, seed=5)
    big = make_bars(["BIG"], 40, seed=6)  # entity order AAA, BBB, BIG, CCC: two batches commit first
    big["volume"] *= HUGE
    fs.ingest(pd.concat([ok, big], ignore_index=True), progress=False)
    fs.create_view("base", O32)  # a float64 view holds these values
    with psycopg.connect(libpq_url(url)) as conn:
        before = fingerprint(conn)
    try:
        with pytest.raises(ValidationError) as err:
            fs.create_view("o32", O32, dtype="float32", batch_entities=1, n_jobs=n_jobs)
        e = err.value  # from a joblib worker too: the location survives pickling
        assert (type(e), e.column, e.row, e.source) == (ValidationError, "obv", None, "view o32 v1")
        msg = str(e)
        assert "view 'o32' v1 stores float32 (real): value " in msg and "overflows float32" in msg
        assert "symbol 'BIG' at 2020-01-01T00:00:00+00:00" in msg
        backfilled = r"the 2 entities" if n_jobs == 1 else r"the \d entities"
        assert re.search(rf"the backfill of view 'o32' v1 stopped there and the version was removed .*{backfilled}", msg)
        assert "nothing of it remains" in msg and "dtype='float64'" in msg
        with psycopg.connect(libpq_url(url)) as conn:
            _no_trace_of(conn, "o32")
            assert _stored_data(fingerprint(conn)) == _stored_data(before)
        with pytest.raises(NotFoundError):
            fs.describe_view("o32")
        assert [v["name"] for v in fs.list_views()] == ["base"]
        # loads are unaffected (a version left 'backfilling' would refuse every load of BIG)
        more = make_bars(["AAA", "BIG"], 41, seed=7).groupby("symbol").tail(1).copy()
        more.loc[more.symbol == "BIG", "volume"] *= HUGE
        assert fs.ingest(more, progress=False).inserted == 2
        # the same call fails the same way while the bars are the same ...
        with pytest.raises(ValidationError, match="symbol 'BIG' at 2020-01-01.*was removed"):
            fs.create_view("o32", O32, dtype="float32", batch_entities=1, n_jobs=n_jobs)
        with psycopg.connect(libpq_url(url)) as conn:
            _no_trace_of(conn, "o32")
        # ... and succeeds once they are corrected
        fixed = pd.concat([big, more[more.symbol == "BIG"]], ignore_index=True)
        fixed["volume"] /= HUGE
        fs.ingest(fixed, progress=False)
        view = fs.create_view("o32", O32, dtype="float32", batch_entities=1, n_jobs=n_jobs)
        assert (view.version, view.status) == (1, "ready")
    finally:  # joblib keeps its process pool (and its manager thread) for reuse: stop them
        if n_jobs > 1:
            get_reusable_executor().shutdown(wait=True)
    syms = ["AAA", "BBB", "BIG", "CCC"]
    _same(fs.get_features(syms, view="o32"), fs.get_features(syms, view="base"))  # type: ignore[arg-type]


def test_load_beyond_float32_into_float32_view_writes_nothing(
    small: tuple[FeatureStore, URL], tmp_path: Path
) -> None:
    fs, url = small
    fs.ingest(make_bars(["AAA", "BBB"], 300, seed=8), progress=False)  # > 256 bars: checkpoints
    fs.create_view("o32", O32, dtype="float32")
    fs.create_view("o64", O32)
    with psycopg.connect(libpq_url(url)) as conn:
        before = fingerprint(conn)
    nxt = make_bars(["AAA", "BBB", "NEW"], 301, seed=8).groupby("symbol").tail(1).reset_index(drop=True)
    stored = fs.get_bars(["AAA"])
    past = stored.reset_index().iloc[[100]].copy()  # a past bar: recomputed from the checkpoint at 0
    path = tmp_path / "bad.parquet"

    def load(frame: pd.DataFrame) -> Any:
        frame.to_parquet(path, index=False)
        return fs.load(path, progress=False)

    cases = {  # (the rows, the symbol and ts the error names)
        "new symbol (features from memory)": (nxt.assign(volume=np.where(nxt.symbol == "NEW", 1e39, 1.0)), "NEW", 0),
        "append (continued from state)": (nxt.assign(volume=np.where(nxt.symbol == "BBB", 1e39, 1.0)), "BBB", 1),
        "correction (recomputed)": (past.assign(volume=1e39), "AAA", None),
    }
    for case, (rows, sym, pos) in cases.items():
        when = pd.Timestamp(past.ts.iloc[0] if pos is None else rows.ts.iloc[pos])
        with pytest.raises(ValidationError) as err:
            load(rows)
        msg = str(err.value)
        assert err.value.column == "obv", case
        assert "view 'o32' v1 stores float32" in msg and f"symbol '{sym}' at {when.isoformat()}" in msg, (case, msg)
        assert "nothing was written" in msg, case
        with psycopg.connect(libpq_url(url)) as conn:
            assert fingerprint(conn) == before, case  # no bar, feature, state, history or load of it
    # the store takes the same rows once the values fit
    r = load(nxt)
    assert r.inserted == 3
    r = load(past.assign(volume=past.volume + 1))
    assert r.updated == 1
    _same(fs.get_features(["AAA", "BBB", "NEW"], view="o32"), fs.get_features(["AAA", "BBB", "NEW"], view="o64"))  # type: ignore[arg-type]


# -- CLI -----------------------------------------------------------------------------------


def test_cli_views_create_dtype(small: tuple[FeatureStore, URL]) -> None:
    _, url = small
    target = libpq_url(url)
    res = CliRunner().invoke(cli, ["--url", target, "views", "create", "c32", "sma_3", "--dtype", "float32"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["--url", target, "views", "describe", "c32", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["dtype"] == "float32"
    res = CliRunner().invoke(cli, ["--url", target, "views", "create", "c16", "sma_3", "--dtype", "float16"])
    assert res.exit_code != 0 and "dtype='float16' is not supported" in res.output
    res = CliRunner().invoke(cli, ["--url", target, "views", "list", "--json"])
    assert "c16" not in res.output
