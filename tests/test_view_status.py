"""A view version serves reads only once its backfill is complete (issue 11 item 3).

``create_view`` commits a new version, then backfills it batch by batch. Until the last batch is
in (and forever, if the backfill is interrupted), that version holds features for only some
symbols: reads by name must keep using the newest *ready* version, an explicit ``version=`` of an
incomplete one must fail naming its progress and how to resume, and the write path must keep
computing features for every version (so a resumed backfill ends complete).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import talib
from helpers import make_bars
from sqlalchemy.engine import URL

from featurestore import write
from featurestore.client import FeatureStore
from featurestore.errors import NotFoundError
from featurestore.export import export

SYMBOLS = [f"S{i}" for i in range(6)]
N_BARS = 40
V1, V2 = ["sma_3"], ["sma_3", "ema_5"]
BATCH = 2  # 6 symbols -> 3 backfill batches


@pytest.fixture()
def fs(make_database: Callable[[str], URL]) -> Iterator[FeatureStore]:
    """A store (default result cache) with 6 symbols x 40 daily bars and view tech v1 = sma_3, ready."""
    store = FeatureStore(make_database("view_status"), auto_migrate=True)
    store.ingest(make_bars(SYMBOLS, N_BARS, seed=11), progress=False)
    assert store.create_view("tech", V1).status == "ready"
    yield store
    store.close()


def interrupt_backfill_after(monkeypatch: pytest.MonkeyPatch, n_ok: int) -> list[list[int]]:
    """Make the backfill fail in batch ``n_ok + 1`` (the first ``n_ok`` batches commit)."""
    real = write.backfill_batch
    done: list[list[int]] = []

    def batch(conn: Any, view: Any, ids: Any) -> int:
        if len(done) >= n_ok:
            raise RuntimeError("backfill interrupted")
        done.append(list(ids))
        return real(conn, view, ids)

    monkeypatch.setattr(write, "backfill_batch", batch)
    return done


def oracle(bars: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Each symbol's indicators computed here: pandas rolling mean (sma) and TA-Lib (ema)."""
    out = []
    for sym, g in bars.sort_values(["symbol", "ts"]).groupby("symbol", sort=True):
        close = g["close"].to_numpy(dtype=float)
        cols: dict[str, Any] = {"symbol": sym, "ts": g["ts"].dt.as_unit("us").to_numpy()}
        for c in columns:
            kind, n = c.split("_")
            cols[c] = pd.Series(close).rolling(int(n)).mean().to_numpy() if kind == "sma" else talib.EMA(close, int(n))
        out.append(pd.DataFrame(cols))
    frame = pd.concat(out, ignore_index=True)
    frame["ts"] = pd.DatetimeIndex(frame["ts"]).tz_localize("UTC") if frame["ts"].dt.tz is None else frame["ts"]
    return frame.set_index(["symbol", "ts"])


def assert_features(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert list(got.index) == list(want.index), "rows differ (a partial backfill was served?)"
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-12, atol=0, equal_nan=True)


def stored_bars(fs: FeatureStore) -> pd.DataFrame:
    return fs.reader.get_bars(SYMBOLS).reset_index()


def check_reads_use(fs: FeatureStore, columns: list[str]) -> None:
    """Every read by name (cached and uncached) gives the complete version with ``columns``."""
    want = oracle(stored_bars(fs), columns)
    for source in (fs, fs.reader):
        assert_features(source.get_features(SYMBOLS, view="tech"), want)  # type: ignore[attr-defined]
        latest = source.get_latest(SYMBOLS, view="tech", columns=columns)  # type: ignore[attr-defined]
        last = want.groupby(level="symbol").tail(1)
        assert_features(latest, last)
        events = pd.DataFrame({"symbol": SYMBOLS, "ts": last.index.get_level_values("ts")})
        frame = source.get_training_frame(events, view="tech")  # type: ignore[attr-defined]
        assert [c for c in frame.columns if c not in ("symbol", "ts", "feature_ts")] == columns
        np.testing.assert_allclose(frame[columns].to_numpy(), last.to_numpy(), rtol=1e-12, equal_nan=True)


def test_reads_by_name_skip_an_interrupted_backfill_until_it_is_resumed(
    fs: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = interrupt_backfill_after(monkeypatch, 1)
    with pytest.raises(RuntimeError, match="backfill interrupted"):
        fs.create_view("tech", V2, batch_entities=BATCH)
    assert len(done) == 1 and len(done[0]) == BATCH

    # the registry shows the new version and how far its backfill got
    described = fs.describe_view("tech")
    assert (described["version"], described["status"], described["ready"]) == (2, "backfilling", False)
    assert (described["entities_backfilled"], described["entities_total"]) == (BATCH, len(SYMBOLS))
    listed = {(v["version"], v["status"], v["entities_backfilled"], v["entities_total"]) for v in fs.list_views()}
    assert listed == {(1, "ready", None, None), (2, "backfilling", BATCH, len(SYMBOLS))}

    # reads by name: the complete v1 for every symbol, not v2's two backfilled symbols
    check_reads_use(fs, V1)
    assert_features(fs.get_features(SYMBOLS, view="tech", version=1), oracle(stored_bars(fs), V1))

    # asking for v2 explicitly: a clear error with the progress and the way to resume
    hint = r"store\.create_view\('tech', \['sma_3', 'ema_5'\]\).*`featurestore views create tech sma_3 ema_5`"
    message = rf"view 'tech' version 2 is not complete \(backfilling, 2/6 entities backfilled\).*{hint}"
    with pytest.raises(NotFoundError, match=message):
        fs.get_features(SYMBOLS, view="tech", version=2)
    with pytest.raises(NotFoundError, match=message):
        fs.reader.get_latest("S0", view="tech", version=2)
    with pytest.raises(NotFoundError, match=message):
        fs.get_training_frame(pd.DataFrame({"symbol": ["S0"], "ts": [pd.Timestamp("2020-02-01", tz="UTC")]}), view="tech", version=2)

    # the write path keeps computing every version, complete or not: a load now, then the resume
    more = make_bars(SYMBOLS, N_BARS + 5, seed=11).groupby("symbol").tail(5)
    fs.ingest(more, progress=False)
    check_reads_use(fs, V1)  # still v1, now with the new bars

    monkeypatch.undo()
    view = fs.create_view("tech", V2, batch_entities=BATCH)
    assert (view.version, view.status) == (2, "ready")
    check_reads_use(fs, V2)  # by name now v2, complete, through the cache too


def test_a_name_without_a_ready_version_raises_with_progress_and_how_to_resume(
    fs: FeatureStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    interrupt_backfill_after(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="backfill interrupted"):
        fs.create_view("fresh", ["sma_4"], columns=["signal"], batch_entities=BATCH)
    message = (
        r"view 'fresh' has no complete version yet: v1 is backfilling, 4/6 entities backfilled; resume the "
        r"backfill with the same spec: store\.create_view\('fresh', \['sma_4'\], columns=\['signal'\]\), or "
        r"`featurestore views create fresh sma_4 --column signal`"
    )
    event = pd.DataFrame({"symbol": ["S0"], "ts": [pd.Timestamp("2020-02-01", tz="UTC")]})
    for read in (
        lambda: fs.get_features("S0", view="fresh"),
        lambda: fs.reader.get_features("S0", view="fresh"),
        lambda: fs.get_latest("S0", view="fresh"),
        lambda: fs.get_training_frame(event, view="fresh"),
    ):
        with pytest.raises(NotFoundError, match=message):
            read()
    with pytest.raises(NotFoundError, match=message):
        export(fs, tmp_path / "f.parquet", view="fresh")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(NotFoundError, match=r"no view 'nope'; registered views: fresh v1, tech v1"):
        fs.get_features("S0", view="nope")
    monkeypatch.undo()
    assert fs.create_view("fresh", ["sma_4"], columns=["signal"], batch_entities=BATCH).status == "ready"
    assert list(fs.get_features("S0", view="fresh").columns) == ["sma_4", "signal"]


def test_reads_from_another_thread_during_a_backfill_see_the_previous_version(
    fs: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader thread reads while create_view is paused after its first committed batch."""
    real = write.backfill_batch
    first_done, reads_done = threading.Event(), threading.Event()
    calls: list[int] = []

    def batch(conn: Any, view: Any, ids: Any) -> int:
        written = real(conn, view, ids)  # committed
        calls.append(written)
        if len(calls) == 1:
            first_done.set()
            assert reads_done.wait(60), "the reader thread did not finish"
        return written

    monkeypatch.setattr(write, "backfill_batch", batch)
    seen: dict[str, Any] = {}

    def reads() -> None:
        try:
            assert first_done.wait(60)
            seen["described"] = fs.describe_view("tech")
            seen["cached"] = fs.get_features(SYMBOLS, view="tech")
            seen["uncached"] = fs.reader.get_features(SYMBOLS, view="tech")
            seen["latest"] = fs.get_latest("S5", view="tech")
            try:
                fs.get_features(SYMBOLS, view="tech", version=2)
            except NotFoundError as exc:
                seen["explicit"] = str(exc)
        except BaseException as exc:
            seen["error"] = exc
        finally:
            reads_done.set()

    thread = threading.Thread(target=reads, daemon=True)
    thread.start()
    try:
        view = fs.create_view("tech", V2, batch_entities=BATCH)
    finally:
        reads_done.set()
        first_done.set()
        thread.join(60)
    assert not thread.is_alive()
    assert "error" not in seen, seen.get("error")
    assert view.status == "ready" and len(calls) == 3
    assert (seen["described"]["version"], seen["described"]["status"]) == (2, "backfilling")
    assert seen["described"]["entities_backfilled"] == BATCH
    want_v1 = oracle(stored_bars(fs), V1)
    assert_features(seen["cached"], want_v1)
    assert_features(seen["uncached"], want_v1)
    assert list(seen["latest"].columns) == ["open", "high", "low", "close", "volume", "sma_3"]
    assert seen["latest"]["sma_3"].iloc[0] == pytest.approx(want_v1.loc["S5"]["sma_3"].iloc[-1], rel=1e-12)
    assert "version 2 is not complete (backfilling, 2/6 entities backfilled)" in seen["explicit"]
    # once create_view returned, reads by name serve the complete v2 (the cache was cleared)
    check_reads_use(fs, V2)


@pytest.mark.parametrize("consistency", ["strict", "notify"])
def test_a_new_ready_version_reaches_other_processes_caches(fs: FeatureStore, consistency: str) -> None:
    """Reads by name switch to the new version in every store, not only the one that created it."""
    other = FeatureStore(fs.db.url, consistency=consistency)
    try:
        before = other.get_latest("S0", view="tech")
        assert "ema_5" not in before.columns  # cached: v1's columns
        fs.create_view("tech", V2)  # v2 becomes ready in another store
        deadline = time.monotonic() + 10  # notify delivers asynchronously; strict checks on every read
        while True:
            after = other.get_latest("S0", view="tech")
            if "ema_5" in after.columns or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert "ema_5" in after.columns, list(after.columns)
        uncached = fs.reader.get_latest(["S0"], view="tech")
        pd.testing.assert_frame_equal(after, uncached)
    finally:
        other.close()


def test_views_list_shows_an_incomplete_versions_progress(fs: FeatureStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from featurestore.cli import cli

    interrupt_backfill_after(monkeypatch, 1)
    with pytest.raises(RuntimeError, match="backfill interrupted"):
        fs.create_view("tech", V2, batch_entities=BATCH)
    url = fs.db.url.render_as_string(hide_password=False)
    out = CliRunner().invoke(cli, ["--url", url, "views", "list"])
    assert out.exit_code == 0, out.output
    rows = {line.split()[0] + " " + line.split()[1]: line for line in out.output.splitlines()[1:]}
    assert rows["tech v1"].split()[2] == "ready"
    assert rows["tech v2"].split()[2:4] == ["backfilling", f"{BATCH}/{len(SYMBOLS)}"], out.output
