"""History segments through the store (issue 14): every read gives the same answer whether the
history is in rows or in compressed segments.

The oracle is a twin store that never compresses: both receive the same loads, corrections,
appends and views, one of them compresses its history (twice, at two cut-offs), and every read
(ranges, latest rows, as-of reads, training frames of both strategies, knowledge-time reads,
a bar's versions, exports) must return equal frames from both. Hypothesis picks the reads.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from helpers import SEED_VIEW, make_bars
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import URL

from featurestore.client import FeatureStore
from featurestore.config import libpq_url

SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE"]
N = 700  # daily bars; > 256 so corrections resume from checkpoints
START = pd.Timestamp("2020-01-01", tz="UTC")
F32_SPEC = ["sma_3", "rsi_5"]
USER_COL = "score"


def _bars() -> pd.DataFrame:
    df = make_bars(SYMBOLS, N, seed=11)
    # EEE lists late, DDD stops early: entities whose rows end up all in segments, or all in rows
    df = df[~((df["symbol"] == "EEE") & (df["ts"] < START + pd.Timedelta(days=500)))]
    df = df[~((df["symbol"] == "DDD") & (df["ts"] > START + pd.Timedelta(days=300)))]
    return df.reset_index(drop=True)


def _with_score(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = df.copy()
    score = rng.normal(size=len(out))
    score[rng.random(len(out)) < 0.1] = np.nan  # NULLs in a user column
    out[USER_COL] = score
    return out


def _day(k: int) -> pd.Timestamp:
    return START + pd.Timedelta(days=k)


class Twins:
    """Two stores fed the same writes; ``seg`` compresses, ``rows`` never does."""

    def __init__(self, make_database: Callable[[str], URL]) -> None:
        self.rows = FeatureStore(make_database("seg_rows"), auto_migrate=True, cache=None)
        self.seg = FeatureStore(make_database("seg_seg"), auto_migrate=True, cache=None)
        self.known: list[dt.datetime] = []  # knowledge times per store pair: (rows, seg)
        self.known_seg: list[dt.datetime] = []

    def both(self, fn: Callable[[FeatureStore], Any]) -> tuple[Any, Any]:
        return fn(self.rows), fn(self.seg)

    def mark(self) -> None:
        self.known.append(dt.datetime.now(dt.UTC))

    def close(self) -> None:
        self.rows.close()
        self.seg.close()


@pytest.fixture(scope="module")
def twins(make_database: Callable[[str], URL], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twins]:
    t = Twins(make_database)
    try:
        bars = _bars()
        first = bars[bars["ts"] < _day(400)]
        t.both(lambda s: s.ingest(first, progress=False, create_symbols=True))
        t.both(lambda s: s.create_view("v", SEED_VIEW, progress=False))
        t.both(lambda s: s.create_view("f", F32_SPEC, columns=[USER_COL], dtype="float32", progress=False))
        t.both(lambda s: s.ingest(_with_score(bars[bars["ts"] >= _day(400)], 2), progress=False, create_symbols=True))
        t.mark()
        # corrections before compressing: superseded versions that knowledge-time reads must see
        fix = bars[(bars["symbol"] == "AAA") & (bars["ts"].isin([_day(100), _day(101)]))].copy()
        fix[["open", "high", "low", "close"]] *= 1.01
        t.both(lambda s: s.ingest(_with_score(fix, 3), progress=False))
        t.mark()
        res = t.seg.compress_history(before=_day(450))
        assert res.bar_rows > 0 and set(res.feature_rows) == {"fv_v_v1", "fv_f_v1"}
        t.mark()
        # a correction inside the segmented history, and one at its edge, and an append
        fix2 = bars[(bars["symbol"].isin(["BBB", "EEE"])) & (bars["ts"].isin([_day(200), _day(449), _day(520)]))].copy()
        fix2[["open", "high", "low", "close"]] *= 0.98
        t.both(lambda s: s.ingest(_with_score(fix2, 4), progress=False))
        t.mark()
        late = make_bars(SYMBOLS, 5, start=str((_day(N)).date()), seed=5)
        t.both(lambda s: s.ingest(_with_score(late, 5), progress=False, create_symbols=True))
        t.mark()
        # a view created after compression backfills from segments and stores its own as segments
        t.both(lambda s: s.create_view("w", ["sma_5", "atr_3"], progress=False))
        t.seg.compress_history(before=_day(600))
        t.mark()
        yield t
    finally:
        t.close()


def _same(a: Any, b: Any) -> None:
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    else:
        assert a == b


def test_history_is_in_segments(twins: Twins) -> None:
    def counts(s: FeatureStore) -> tuple[int, int]:
        return s.db.run(lambda c: c.execute(
            "SELECT (SELECT count(*) FROM bars), (SELECT coalesce(sum(n), 0) FROM bars_segments)"
        ).fetchone())

    rows_n, seg_n = twins.both(counts)
    assert rows_n[1] == 0
    assert seg_n[1] > 0.7 * rows_n[0] and seg_n[0] + seg_n[1] == rows_n[0]
    # every table holds the same per-entity boundary
    def bounds(table: str) -> list[tuple[Any, ...]]:
        return twins.seg.db.run(lambda c: c.execute(
            f"SELECT entity_id, max(ts_last) FROM {table} GROUP BY entity_id ORDER BY entity_id").fetchall())
    assert bounds("bars_segments") == bounds("fv_v_v1_s") == bounds("fv_f_v1_s") == bounds("fv_w_v1_s")


def test_full_reads_are_equal(twins: Twins) -> None:
    _same(*twins.both(lambda s: s.get_bars(SYMBOLS)))
    _same(*twins.both(lambda s: s.get_features(SYMBOLS, view="v", include_bars=True)))
    _same(*twins.both(lambda s: s.get_features(SYMBOLS, view="f")))
    _same(*twins.both(lambda s: s.get_features(SYMBOLS, view="w", as_arrow=True).to_pandas()))


_sym = st.lists(st.sampled_from([*SYMBOLS, "NOPE"]), min_size=1, max_size=4, unique=True)
_day_k = st.integers(-5, N + 10)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(syms=_sym, a=_day_k, b=_day_k, view=st.sampled_from([None, "v", "f", "w"]),
       cols=st.sampled_from([None, ["close"], ["close", "volume"]]), include=st.booleans())
def test_range_reads_are_equal(twins: Twins, syms: list[str], a: int, b: int, view: str | None,
                               cols: list[str] | None, include: bool) -> None:
    lo, hi = _day(min(a, b)), _day(max(a, b))
    if view is None:
        _same(*twins.both(lambda s: s.get_bars(syms, lo, hi, columns=cols)))
    else:
        _same(*twins.both(lambda s: s.get_features(syms, lo, hi, view=view, include_bars=include)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(syms=_sym, k=_day_k, view=st.sampled_from([None, "v", "f"]), known=st.integers(-1, 5))
def test_latest_reads_are_equal(twins: Twins, syms: list[str], k: int, view: str | None, known: int) -> None:
    at = _day(k) + pd.Timedelta(hours=1)
    kt = None if known < 0 else twins.known[min(known, len(twins.known) - 1)]
    if kt is not None and view is not None:
        return  # views were ready after the early knowledge times; covered with bars
    _same(*twins.both(lambda s: s.get_latest(syms, as_of=at, view=view, as_known_at=kt)))
    _same(*twins.both(lambda s: s.get_latest(syms[0], as_of=at, view=view, as_known_at=kt)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.lists(st.tuples(st.sampled_from([*SYMBOLS, "NOPE"]), _day_k), min_size=1, max_size=30),
       strategy=st.sampled_from(["range", "per_event", "auto"]), tol=st.sampled_from([None, "3D"]),
       include=st.booleans(), view=st.sampled_from(["v", "f"]))
def test_training_frames_are_equal(twins: Twins, keys: list[tuple[str, int]], strategy: str, tol: str | None,
                                   include: bool, view: str) -> None:
    events = pd.DataFrame({"symbol": [k[0] for k in keys],
                           "ts": [_day(k[1]) + pd.Timedelta(hours=3) for k in keys], "label": range(len(keys))})
    _same(*twins.both(lambda s: s.get_training_frame(events, view=view, strategy=strategy, tolerance=tol,
                                                      include_bars=include)))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(syms=_sym, a=_day_k, b=_day_k, known=st.integers(0, 5))
def test_knowledge_time_reads_are_equal(twins: Twins, syms: list[str], a: int, b: int, known: int) -> None:
    kt = twins.known[min(known, len(twins.known) - 1)]
    lo, hi = _day(min(a, b)), _day(max(a, b))
    _same(*twins.both(lambda s: s.get_bars(syms, lo, hi, as_known_at=kt)))
    keys = [(s, a) for s in syms] + [(s, b) for s in syms]
    events = pd.DataFrame({"symbol": [k[0] for k in keys], "ts": [_day(k[1]) for k in keys],
                           "decided": [kt] * len(keys)})
    _same(*twins.both(lambda s: s.get_training_frame(events, view="v", include_bars=True, known_at_col="decided")))
    _same(*twins.both(lambda s: s.get_training_frame(events, view="v", as_known_at=twins.known[-1])))


def test_bar_versions_are_equal(twins: Twins) -> None:
    for sym, k in (("AAA", 100), ("BBB", 200), ("CCC", 10), ("EEE", 520)):
        a, b = twins.both(lambda s, sym=sym, k=k: s.history(sym, _day(k)))
        _same(a.bars.drop(columns=["known_from", "known_until"]), b.bars.drop(columns=["known_from", "known_until"]))
        assert a.features.keys() == b.features.keys()
        for name in a.features:
            _same(a.features[name].drop(columns=["known_from", "known_until"]),
                  b.features[name].drop(columns=["known_from", "known_until"]))


def test_exports_are_equal(twins: Twins, tmp_path: Path) -> None:
    twins.rows.export(tmp_path / "rows.parquet", view="v", progress=False)
    twins.seg.export(tmp_path / "seg.parquet", view="v", progress=False)
    _same(pd.read_parquet(tmp_path / "rows.parquet"), pd.read_parquet(tmp_path / "seg.parquet"))
    # knowledge time inside the export's snapshot: several batches, each over the segments
    kt = twins.known[1]
    twins.rows.export(tmp_path / "rows_k.parquet", as_known_at=kt, chunk_symbols=2, progress=False)
    twins.seg.export(tmp_path / "seg_k.parquet", as_known_at=kt, chunk_symbols=2, progress=False)
    _same(pd.read_parquet(tmp_path / "rows_k.parquet"), pd.read_parquet(tmp_path / "seg_k.parquet"))


def test_loading_the_same_history_again_changes_nothing(twins: Twins) -> None:
    """Re-loading bars that are in segments finds them (no duplicates, no corrections)."""
    again = _bars()
    again = again[(again["symbol"] == "CCC") & (again["ts"] < _day(50))]
    r = twins.seg.ingest(again, progress=False, on_conflict="ignore")
    assert r.inserted == 0 and r.updated == 0
    _same(*twins.both(lambda s: s.get_bars(["CCC"])))


def test_downgrade_moves_segments_back_into_rows(make_database: Callable[[str], URL]) -> None:
    from featurestore import migrate

    url = make_database("seg_downgrade")
    with FeatureStore(url, auto_migrate=True, cache=None) as s:
        s.ingest(make_bars(["AAA", "BBB"], 300, seed=2), progress=False, create_symbols=True)
        s.create_view("v", ["sma_5"], progress=False)
        before = (s.get_bars(["AAA", "BBB"]), s.get_features(["AAA", "BBB"], view="v"))
        assert s.compress_history(before=_day(200)).bar_rows == 400
        engine = s.db.engine
        migrate.downgrade(engine, "0004")
    with psycopg.connect(libpq_url(url)) as c:
        assert c.execute("SELECT to_regclass('bars_segments'), to_regclass('fv_v_v1_s')").fetchone() == (None, None)
        assert c.execute("SELECT count(*) FROM bars").fetchone() == (600,)
    with FeatureStore(url, auto_migrate=True, cache=None) as s:
        _same(before[0], s.get_bars(["AAA", "BBB"]))
        _same(before[1], s.get_features(["AAA", "BBB"], view="v"))


def test_cli_compress(make_database: Callable[[str], URL]) -> None:
    import json

    from click.testing import CliRunner

    from featurestore.cli import cli

    url = make_database("seg_cli")
    with FeatureStore(url, auto_migrate=True, cache=None) as s:
        s.ingest(make_bars(["AAA"], 300, seed=3), progress=False, create_symbols=True)
        before = s.get_bars("AAA")
    text = url.render_as_string(hide_password=False)
    runner = CliRunner()
    bad = runner.invoke(cli, ["--url", text, "compress"])
    assert bad.exit_code == 2 and "exactly one of --older-than or --before" in bad.output
    out = runner.invoke(cli, ["--url", text, "compress", "--before", "2020-06-01T00:00Z"])
    assert out.exit_code == 0, out.output
    assert "152 bars and 0 feature rows moved into segments" in out.output
    out = runner.invoke(cli, ["--url", text, "compress", "--older-than", "0D", "--json"])
    assert out.exit_code == 0, out.output
    facts = json.loads(out.output)
    assert facts["bar_rows"] == 148 and facts["segment_rows"] == 300 and facts["segments"] == 1  # one full block
    with FeatureStore(url, cache=None) as s:
        _same(before, s.get_bars("AAA"))
        facts = s.info()
        assert facts["bars"]["in_segments"] == 300 and facts["bars"]["rows_estimate"] == 300
    out = runner.invoke(cli, ["--url", text, "info"])
    assert out.exit_code == 0 and "bars in history segments: 300" in out.output, out.output
    assert re.search(r"bars segments: +1 segments", out.output), out.output


def test_reads_during_compression_and_expansion_never_see_a_row_twice_or_miss_one(
    make_database: Callable[[str], URL],
) -> None:
    """Reads racing compress_history and a correction that expands segments: every range read
    and every latest read equals the answer over rows (one snapshot per read)."""
    import threading

    url = make_database("seg_race")
    bars = make_bars(["AAA", "BBB", "CCC"], 600, seed=9)
    with FeatureStore(url, auto_migrate=True, cache=None) as s:
        s.ingest(bars, progress=False, create_symbols=True)
        s.create_view("v", ["sma_5"], progress=False)
        want_bars = s.get_bars(["AAA", "BBB", "CCC"])
        want_feats = s.get_features(["AAA", "BBB", "CCC"], view="v", include_bars=True)
        want_latest = s.get_latest(["AAA", "BBB", "CCC"], as_of=_day(300), view="v")
        stop = threading.Event()
        errors: list[BaseException] = []
        reads = [0]

        def reader() -> None:
            try:
                with FeatureStore(url, cache=None) as r:
                    while not stop.is_set():
                        _same(want_bars, r.get_bars(["AAA", "BBB", "CCC"]))
                        _same(want_feats, r.get_features(["AAA", "BBB", "CCC"], view="v", include_bars=True))
                        _same(want_latest, r.get_latest(["AAA", "BBB", "CCC"], as_of=_day(300), view="v"))
                        reads[0] += 1
            except BaseException as exc:  # reported below
                errors.append(exc)

        t = threading.Thread(target=reader)
        t.start()
        try:
            for k in (100, 250, 400, 599):
                s.compress_history(before=_day(k))
                # re-loading unchanged bars inside the segments expands nothing they change
                same = bars[(bars["symbol"] == "BBB") & (bars["ts"] >= _day(k - 150)) & (bars["ts"] < _day(k - 140))]
                s.ingest(same, progress=False)
        finally:
            stop.set()
            t.join(timeout=120)
        assert not t.is_alive()
        assert not errors, errors[0]
        assert reads[0] > 0
        _same(want_bars, s.get_bars(["AAA", "BBB", "CCC"]))


def test_compressing_often_keeps_blocks_full(make_database: Callable[[str], URL]) -> None:
    """Daily compression of daily bars: a partly filled last block takes the next rows in."""
    from featurestore import segments

    url = make_database("seg_often")
    with FeatureStore(url, auto_migrate=True, cache=None) as s:
        s.ingest(make_bars(["AAA", "BBB"], 120, seed=4), progress=False, create_symbols=True)
        s.create_view("v", ["sma_5"], progress=False)
        want = s.get_features(["AAA", "BBB"], view="v", include_bars=True)
        for k in range(10, 121, 10):
            s.compress_history(before=_day(k))
        segs = s.db.run(lambda c: c.execute("SELECT count(*), sum(n) FROM bars_segments").fetchall()[0])
        assert segs == (2, 240)  # one block per symbol, not one per call
        fsegs = s.db.run(lambda c: c.execute("SELECT count(*), sum(n) FROM fv_v_v1_s").fetchall()[0])
        assert fsegs == (2, 240)
        _same(want, s.get_features(["AAA", "BBB"], view="v", include_bars=True))
        assert segments.SEGMENT_ROWS > 120


def test_a_symbol_created_during_compression_keeps_one_boundary(
    make_database: Callable[[str], URL], citus_cluster: Any
) -> None:
    """A load that creates a symbol and commits between compress_history's statements (bars,
    then each view table): the new symbol stays all rows, in every table. On Citus the load may
    have to wait for the compression's commit instead (Citus serializes a write to a reference
    table, ``entities``, with others' writes to it), so the test waits for it after compression;
    the new symbol ends the same (all rows, no segments)."""
    import threading

    from featurestore import segments

    url = make_database("seg_newsym")
    with FeatureStore(url, auto_migrate=True, cache=None) as s, FeatureStore(url, cache=None) as other:
        s.ingest(make_bars(["AAA"], 200, seed=1), progress=False, create_symbols=True)
        s.create_view("v", ["sma_5"], progress=False)
        original = segments.compress
        fired: list[threading.Thread] = []

        def compress(conn: Any, layout: Any, *args: Any, **kwargs: Any) -> int:
            n = original(conn, layout, *args, **kwargs)
            if layout.table == "bars" and not fired:
                t = threading.Thread(target=other.ingest, args=(make_bars(["NEW"], 200, seed=2),),
                                     kwargs={"progress": False, "create_symbols": True})
                fired.append(t)
                t.start()
                if citus_cluster is None:
                    t.join(60)
            return n

        segments.compress = compress  # type: ignore[assignment]
        try:
            s.compress_history(before=_day(100))
        finally:
            segments.compress = original  # type: ignore[assignment]
            for t in fired:
                t.join(60)
        assert fired and not fired[0].is_alive()
        assert len(s.get_features(["NEW"], view="v")) == 200
        assert len(s.get_features(["NEW"], view="v", include_bars=True)) == 200
        assert s.get_latest(["NEW"], as_of=_day(50), view="v").index[0][1] == _day(50)
        held = s.db.run(lambda c: c.execute(
            "SELECT (SELECT count(*) FROM bars_segments WHERE entity_id = 2), "
            "(SELECT count(*) FROM fv_v_v1_s WHERE entity_id = 2)").fetchone())
        assert held == (0, 0)


def test_user_columns_named_like_the_segment_tables_own(make_database: Callable[[str], URL]) -> None:
    url = make_database("seg_names")
    with FeatureStore(url, auto_migrate=True, cache=None) as s:
        s.ingest(make_bars(["AAA"], 120, seed=1), progress=False, create_symbols=True)
        s.create_view("v", ["sma_3"], columns=["n", "nulls", "ts_first", "ts_last"], progress=False)
        more = make_bars(["AAA"], 30, start=str(_day(120).date()), seed=3)
        for k, c in enumerate(["n", "nulls", "ts_first", "ts_last"]):
            more[c] = np.arange(30, dtype=float) + k
        s.ingest(more, progress=False)
        want = s.get_features(["AAA"], view="v", include_bars=True)
        s.compress_history(before=_day(140))
        _same(want, s.get_features(["AAA"], view="v", include_bars=True))
        _same(s.get_latest(["AAA"], as_of=_day(130), view="v"),
              want.loc[[("AAA", _day(130))]].rename_axis(["symbol", "ts"]))


def test_latest_inside_a_reader_snapshot_reaches_segments(make_database: Callable[[str], URL]) -> None:
    url = make_database("seg_snap")
    with FeatureStore(url, auto_migrate=True, cache=None) as s:
        s.ingest(make_bars(["AAA", "BBB"], 300, seed=1), progress=False, create_symbols=True)
        want = s.get_latest(["AAA", "BBB"], as_of=_day(50))
        s.compress_history(before=_day(200))
        with s.reader.snapshot():
            _same(want, s.get_latest(["AAA", "BBB"], as_of=_day(50)))
            _same(want, s.get_latest(["AAA", "BBB"], as_of=_day(50)))  # twice in one snapshot
        _same(want, s.get_latest(["AAA", "BBB"], as_of=_day(50)))
