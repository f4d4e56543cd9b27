"""The store's result cache: hits, read-only results, invalidation, and each consistency mode's guarantee."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import make_bars
from sqlalchemy.engine import URL

from featurestore.client import FeatureStore
from featurestore.errors import ConfigError, ValidationError

WRITER = """
import sys, pandas as pd
sys.path.insert(0, sys.argv[3])
from featurestore.client import FeatureStore
from helpers import make_bars
with FeatureStore(sys.argv[1], cache=None) as fs:
    df = make_bars(["AAA"], int(sys.argv[2]), seed=1)
    fs.ingest(df.tail(1))
"""


@pytest.fixture()
def url(make_database: Callable[[str], URL]) -> URL:
    u = make_database("cache")
    with FeatureStore(u, auto_migrate=True) as fs:
        fs.ingest(make_bars(["AAA", "BBB"], 100, seed=1))
        fs.create_view("tech", ["sma_20", "rsi_14"])
    return u


@pytest.fixture()
def store(url: URL) -> Iterator[FeatureStore]:
    with FeatureStore(url) as fs:
        yield fs


def _write_in_other_process(url: URL, n: int) -> None:
    out = subprocess.run(
        [sys.executable, "-c", WRITER, url.render_as_string(hide_password=False), str(n), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def test_repeated_reads_hit_the_cache(store: FeatureStore) -> None:
    a = store.get_features(["AAA", "BBB"], "2020-01-10 UTC", "2020-02-10 UTC", view="tech")
    b = store.get_features(["AAA", "BBB"], "2020-01-10 UTC", "2020-02-10 UTC", view="tech")
    pd.testing.assert_frame_equal(a, b)
    stats = store.cache_stats()
    assert stats is not None and stats["hits"] == 1 and stats["misses"] == 1 and stats["bytes"] > 0
    # the same instant written differently is the same key
    store.get_features(["AAA", "BBB"], "2020-01-10T00:00:00+00:00", pd.Timestamp("2020-02-10", tz="UTC"), view="tech")
    assert store.cache_stats()["hits"] == 2  # type: ignore[index]


def test_callers_cannot_corrupt_cached_results(store: FeatureStore) -> None:
    first = store.get_bars("AAA")
    expected = first.copy(deep=True)
    first.iloc[0, 0] = -1.0  # in place: copy-on-write gives the caller its own block
    first["close"] = 0.0  # rebinding a column only changes the caller's copy
    first.loc[first.index[1], "high"] = 123.0
    again = store.get_bars("AAA")
    pd.testing.assert_frame_equal(again, expected)
    arrow = store.get_bars("AAA", as_arrow=True)
    assert arrow.num_rows == len(expected)


def test_array_writes_never_reach_the_cache(store: FeatureStore) -> None:
    """Neither the caller whose read filled the entry nor a later one can write into the cached
    arrays through ``Series.array``, which writes in place past copy-on-write: a miss must hand out
    a read-only sibling like a hit does, not the frame it computed (whose arrays are writable)."""
    first = store.get_latest(["AAA"], view="tech")  # the miss
    expected = first.copy(deep=True)
    col = first.columns[0]
    for df in (first, store.get_latest(["AAA"], view="tech")):  # the miss's result, then a hit's
        with contextlib.suppress(ValueError):  # read-only: refusing the write is what keeps the cache intact
            df[col].array[0] = -12345.0
    assert store.cache_stats()["hits"] == 1  # type: ignore[index]
    pd.testing.assert_frame_equal(store.get_latest(["AAA"], view="tech"), expected)


def test_one_instant_in_any_form_is_one_key(store: FeatureStore) -> None:
    """A tz-aware Timestamp in any zone, a string and a datetime naming the same instant share one entry;
    a naive Timestamp is refused by the read, not cached under some other instant."""
    import datetime as dt

    forms = [
        pd.Timestamp("2020-02-10 01:00", tz="Europe/Paris"),
        pd.Timestamp("2020-02-10", tz="UTC"),
        pd.Timestamp("2020-02-10", tz="UTC").as_unit("s"),
        "2020-02-10T00:00:00Z",
        dt.datetime(2020, 2, 9, 19, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    ]
    results = [store.get_latest(["AAA"], as_of=f) for f in forms]
    stats = store.cache_stats()
    assert stats is not None and stats["misses"] == 1 and stats["hits"] == len(forms) - 1
    for r in results[1:]:
        pd.testing.assert_frame_equal(r, results[0])
    with pytest.raises(ValidationError):
        store.get_latest(["AAA"], as_of=pd.Timestamp("2020-02-10"))


def test_a_write_invalidates_before_it_returns(store: FeatureStore) -> None:
    bbb = store.get_latest(["BBB"], view="tech")
    before = store.get_latest(["AAA"], view="tech")
    df = make_bars(["AAA"], 101, seed=1)
    store.ingest(df.tail(1))
    after = store.get_latest(["AAA"], view="tech")
    assert after.index[0][1] > before.index[0][1]
    # BBB was not touched: its entry survived
    hits = store.cache_stats()["hits"]  # type: ignore[index]
    pd.testing.assert_frame_equal(store.get_latest(["BBB"], view="tech"), bbb)
    assert store.cache_stats()["hits"] == hits + 1  # type: ignore[index]


def test_local_mode_does_not_see_other_processes(url: URL) -> None:
    with FeatureStore(url, consistency="local") as fs:
        before = fs.get_latest("AAA")
        _write_in_other_process(url, 101)
        assert fs.get_latest("AAA").equals(before)  # the documented limit of "local"
        fs.clear_cache()
        assert not fs.get_latest("AAA").equals(before)


def test_strict_mode_never_serves_an_entry_older_than_a_committed_write(url: URL) -> None:
    with FeatureStore(url, consistency="strict") as fs:
        for n in (101, 102, 103):
            cached = fs.get_latest("AAA")
            assert fs.get_latest("AAA").equals(cached)  # a hit while nothing changed
            _write_in_other_process(url, n)
            fresh = fs.get_latest("AAA")
            assert fresh.index[0][1] == pd.Timestamp("2020-01-01", tz="UTC") + pd.Timedelta(days=n - 1)


def test_notify_mode_converges(url: URL) -> None:
    with FeatureStore(url, consistency="notify") as fs:
        reads = fs._reads
        assert reads is not None and reads._listener is not None
        assert reads._listener.connected.wait(10)
        before = fs.get_latest("AAA")
        _write_in_other_process(url, 101)
        deadline = time.time() + 10
        while fs.get_latest("AAA").equals(before):
            assert time.time() < deadline, "notify mode did not converge within 10 s"
            time.sleep(0.01)
        assert fs.cache_stats()["notifications"] >= 1  # type: ignore[index]


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.01)


def test_notify_listener_recovers_from_a_failure(url: URL) -> None:
    """Issue 11 item 9: a non-psycopg failure killed the listener silently; stats still said connected."""
    with FeatureStore(url, consistency="notify") as fs, FeatureStore(url, cache=None) as writer:
        reads = fs._reads
        assert reads is not None and reads._listener is not None
        listener = reads._listener
        assert listener.connected.wait(15)
        original = reads.invalidate
        failed = threading.Event()

        def flaky(symbols: Any) -> int:  # the listener's callback raises once, on a real notification
            if threading.current_thread() is listener and symbols is not None and not failed.is_set():
                failed.set()
                raise RuntimeError("injected listener failure")
            return original(symbols)

        reads.invalidate = flaky  # type: ignore[method-assign]
        bars = make_bars(["AAA"], 102, seed=1)
        before = fs.get_latest("AAA")
        writer.ingest(bars.iloc[100:101])  # commits and sends NOTIFY featurestore
        assert failed.wait(15), "the listener never received the notification"

        def latest_moved(frame: pd.DataFrame) -> Callable[[], bool]:
            return lambda: not fs.get_latest("AAA").equals(frame)

        _wait_until(latest_moved(before), "the cache was not cleared after the listener failed")
        _wait_until(lambda: bool(fs.cache_stats()["listener_connected"]), "the listener did not reconnect")  # type: ignore[index]
        stats = fs.cache_stats()
        assert stats is not None and stats["listener_failures"] == 1
        assert "injected listener failure" in stats["listener_last_error"]
        # invalidation keeps working after the recovery
        second = fs.get_latest("AAA")
        writer.ingest(bars.iloc[101:102])
        _wait_until(latest_moved(second), "invalidation stopped after the listener failed once")
        assert fs.get_latest("AAA").index[0][1] == bars["ts"].iloc[101]


def test_drop_view_and_disabled_cache(url: URL) -> None:
    with FeatureStore(url) as fs:
        fs.get_features("AAA", view="tech")
        fs.create_view("other", ["ema_10"])
        fs.drop_view("other")
        assert fs.cache_stats()["entries"] == 0  # type: ignore[index]
    with FeatureStore(url, cache=None) as fs:
        assert fs.cache_stats() is None
        a, b = fs.get_bars("AAA"), fs.get_bars("AAA")
        assert a is not b and a.equals(b)


@pytest.mark.parametrize("policy", ["lru", "lfu", "arc", "slru", "clock", "adaptive", "w-tinylfu", "s3-fifo", "sieve"])
def test_every_policy_serves_reads(url: URL, policy: str) -> None:
    with FeatureStore(url, cache=policy, cache_bytes=1 << 20) as fs:
        for _ in range(3):
            frame = fs.get_bars(["AAA", "BBB"])
        assert len(frame) == 200 and fs.cache_stats()["policy"] == policy  # type: ignore[index]
        assert fs.cache_stats()["hits"] == 2  # type: ignore[index]
    with pytest.raises(ConfigError, match="consistency"):
        FeatureStore(url, consistency="eventual")


def test_training_frames_are_cached_by_content(store: FeatureStore) -> None:
    events = pd.DataFrame(
        {"symbol": ["AAA", "BBB", "ZZZ"], "ts": pd.to_datetime(["2020-02-01", "2020-03-01", "2020-03-01"], utc=True), "y": [1, 0, 1]}
    )
    a = store.get_training_frame(events, view="tech")
    b = store.get_training_frame(events.copy(), view="tech")
    pd.testing.assert_frame_equal(a, b)
    assert store.cache_stats()["hits"] == 1  # type: ignore[index]
    changed = events.assign(y=[0, 0, 0])
    c = store.get_training_frame(changed, view="tech")
    assert list(c["y"]) == [0, 0, 0] and np.isnan(c.iloc[2]["sma_20"])
