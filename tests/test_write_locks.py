"""Writers lock per entity (placement.lock_entities), on one PostgreSQL and on Citus (this module
runs under ``pytest --citus`` too): while a load of some symbols holds its transaction open, a
load of other existing symbols commits, and a load of the same symbol waits for it. No clock
decides: the held load waits for our word, and a blocked load is seen blocked by the server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from helpers import SEED_VIEW, assert_features_match_talib, make_bars
from sqlalchemy.engine import URL

from featurestore import FeatureStore
from featurestore.config import libpq_url
from featurestore.write import LoadWriter

SYMBOLS = ["AAA", "BBB", "CCC", "DDD"]


@pytest.fixture()
def store(make_database: Callable[[str], URL]) -> Iterator[tuple[FeatureStore, str]]:
    url = make_database("write_locks")
    fs = FeatureStore(url, auto_migrate=True, cache=None)
    fs.ingest(make_bars(SYMBOLS, 300, seed=1), progress=False)
    fs.create_view("tech", SEED_VIEW, progress=False)
    try:
        yield fs, libpq_url(url)
    finally:
        fs.close()


class _Held:
    """Loads run in threads named ``held-*`` stop before their commit step (LoadWriter.finish)
    until :meth:`release`; other threads' loads run as usual."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.at_finish = threading.Event()
        self.go = threading.Event()
        original = LoadWriter.finish

        def finish(writer: LoadWriter) -> Any:
            if threading.current_thread().name.startswith("held-"):
                self.at_finish.set()
                assert self.go.wait(120), "the test never released the held load"
            return original(writer)

        monkeypatch.setattr(LoadWriter, "finish", finish)

    def release(self) -> None:
        self.go.set()


def _run(name: str, fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def body() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # handed to the test thread
            out.append(exc)

    t = threading.Thread(target=body, name=name)
    t.start()
    return t, out


def _blocked_by(url: str, holders: set[int]) -> bool:
    """Some backend of this database waits on a lock one of ``holders`` holds (on Citus the
    coordinator backend of a writer waits there, or a worker connection it made)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_blocking_pids(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND cardinality(pg_blocking_pids(pid)) > 0"
        ).fetchall()
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'").fetchone():
            # a lock wait on a worker, by the global pid of the coordinator backend holding it
            # (node id * 10^10 + pid)
            rows += conn.execute(
                "SELECT ARRAY[(blocking_gpid % 10000000000)::int4] FROM citus_lock_waits"
            ).fetchall()
    return any(set(r[0]) & holders for r in rows)


def _open_writers(url: str) -> set[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND xact_start IS NOT NULL "
            "AND pid <> pg_backend_pid() AND application_name = 'featurestore'"
        ).fetchall()}


def test_disjoint_loads_pass_a_held_load_and_the_same_symbol_waits(
    store: tuple[FeatureStore, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, url = store
    held = _Held(monkeypatch)
    later = make_bars(SYMBOLS, 320, seed=1).groupby("symbol").tail(20)  # 20 new bars per symbol
    a, a_out = _run("held-a", lambda: fs.ingest(later[later.symbol.isin(["AAA", "BBB"])], progress=False))
    threads = [a]
    try:
        assert held.at_finish.wait(120), "load A never reached its commit step"
        holders = _open_writers(url)
        assert holders, "load A holds no open transaction: the test would prove nothing"
        # a load of other, existing symbols commits while A holds its entities
        b, b_out = _run("b", lambda: fs.ingest(later[later.symbol.isin(["CCC", "DDD"])], progress=False))
        threads.append(b)
        deadline = time.monotonic() + 120  # a safety bound; the checks are structural
        while b.is_alive() and time.monotonic() < deadline:
            assert not _blocked_by(url, holders), "a load of other symbols waits for load A"
            b.join(0.05)
        assert not b.is_alive() and not isinstance(b_out[0], BaseException), b_out
        assert b_out[0].inserted == 40 and a.is_alive()
        # a load of one of A's symbols waits for A
        c, c_out = _run("c", lambda: fs.ingest(later[later.symbol == "BBB"], progress=False, on_conflict="ignore"))
        threads.append(c)
        deadline = time.monotonic() + 120
        while not _blocked_by(url, holders) and time.monotonic() < deadline:
            assert c.is_alive(), f"a load of a symbol load A holds did not wait for it: {c_out}"
            time.sleep(0.05)
        assert c.is_alive() and _blocked_by(url, holders)
    finally:
        held.release()
        for t in threads:
            t.join(120)
    assert not any(isinstance(o[0], BaseException) for o in (a_out, b_out, c_out)), (a_out, b_out, c_out)
    assert a_out[0].inserted == 40 and c_out[0].inserted == 0  # C ran after A: its bars were there
    with psycopg.connect(url) as conn:
        for sym in SYMBOLS:
            assert conn.execute(
                "SELECT count(*) FROM bars b JOIN entities e USING (entity_id) WHERE e.symbol = %s", (sym,)
            ).fetchone() == (320,)
            assert_features_match_talib(conn, "fv_tech_v1", sym)
