"""A view's backfill, and a write's feature recompute, on a real two-node Ray cluster
(tests/raycluster.py: ``ray start --head`` and ``ray start --address`` on this machine): the
batches spread over both nodes, each worker writing through its own connection; a worker killed
mid-batch, a driver killed mid-backfill and a lost node all end in a complete view equal to
TA-Lib, each entity backfilled exactly once. A correction over every symbol computed on Ray
(``ingest(backend="ray")``) stores the same features, states and checkpoints as TA-Lib and the
local path would: later appends and corrections computed here continue from them exactly."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import psycopg
import pytest
from helpers import SEED_VIEW, assert_features_match_talib, make_bars
from sqlalchemy.engine import URL

from featurestore import BackfillInterrupted, ConfigError, FeatureStore, ValidationError
from featurestore.config import libpq_url

pytestmark = pytest.mark.ray

N_SYMBOLS, N_BARS = 10, 1200
SYMBOLS = [f"S{i:04d}" for i in range(N_SYMBOLS)]
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from raycluster import RayCluster

    rc = RayCluster.start(nodes=2, cpus_per_node=1)
    try:
        yield rc
    finally:
        rc.close()


@pytest.fixture()
def store(make_database: Callable[[str], URL], request: pytest.FixtureRequest) -> Iterator[tuple[FeatureStore, str]]:
    url = make_database(f"ray_{request.node.name[5:30]}")
    fs = FeatureStore(url, auto_migrate=True)
    fs.ingest(make_bars(N_SYMBOLS, N_BARS, seed=21), progress=False)
    try:
        yield fs, libpq_url(url)
    finally:
        fs.close()


def _complete_and_equal_to_talib(fs: FeatureStore, url: str, name: str) -> None:
    """The view is ready, holds every bar of every symbol, one state row per entity, and its
    features equal TA-Lib's over the stored bars."""
    info = fs.describe_view(name)
    assert (info["status"], info["entities"], info["rows"]) == ("ready", N_SYMBOLS, N_SYMBOLS * N_BARS)
    with psycopg.connect(url) as conn:
        per_entity = conn.execute(
            "SELECT s.entity_id, count(*) FROM indicator_state s JOIN feature_views v USING (view_id) "
            "WHERE v.name = %s GROUP BY 1",
            (name,),
        ).fetchall()
        assert len(per_entity) == N_SYMBOLS and {n for _, n in per_entity} == {1}
        for sym in SYMBOLS:
            assert_features_match_talib(conn, info["table"], sym)


def _blocked_backfills(url: str) -> list[int]:
    """The pids of backfill workers whose transaction waits on a lock (their application name
    carries the pid)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'featurestore-backfill %%' "
            "AND wait_event_type = 'Lock' AND datname = current_database()"
        ).fetchall()
    return [int(app.rsplit(" ", 1)[1]) for (app,) in rows]


def _wait(what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _backends_gone(url: str, pids: list[int]) -> bool:
    """No backfill connection of these worker pids is left on the server (its transaction rolled back)."""
    with psycopg.connect(url, autocommit=True) as conn:
        apps = [a for (a,) in conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'featurestore-backfill %%'"
        ).fetchall()]
    return not any(a.endswith(f" pid {p}") for a in apps for p in pids)


def _backfill_on_ray(fs: FeatureStore, caplog: pytest.LogCaptureFixture) -> list[str]:
    """create_view of "tech" on Ray, one entity per batch; the view is ready. Returns what the
    Ray runner logged of it."""
    with caplog.at_level(logging.INFO, logger="featurestore.write"):
        view = fs.create_view("tech", SEED_VIEW, backend="ray", batch_entities=1)
    assert view.status == "ready"
    return [r.getMessage() for r in caplog.records if "on Ray" in r.getMessage()]


class _InThread:
    """Run ``fn`` in a thread; :meth:`result` joins it and returns (or raises) what it did. Used as
    a context manager, the thread is joined on the way out whatever happened (a test that failed
    midway must not leave a create_view running against a cluster being stopped)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.value = fn()
            except BaseException as exc:  # handed to the test thread
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def __enter__(self) -> _InThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(240)

    def result(self, timeout: float = 240) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "create_view did not finish"
        if self.error is not None:
            raise self.error
        return self.value


def test_backfill_spreads_over_both_nodes_and_equals_talib(
    cluster: Any, store: tuple[FeatureStore, str], caplog: pytest.LogCaptureFixture
) -> None:
    fs, url = store
    cluster.connect()
    assert len(cluster.node_ids()) == 2
    done = _backfill_on_ray(fs, caplog)
    assert done == [f"backfill of tech v1 on Ray: {N_SYMBOLS} batches, {N_SYMBOLS * N_BARS} rows, over 2 nodes"]
    _complete_and_equal_to_talib(fs, url, "tech")
    # the same call again is a no-op; reads see the view
    assert fs.create_view("tech", SEED_VIEW, backend="ray").version == 1
    assert len(fs.get_features(SYMBOLS[:2], view="tech")) == 2 * N_BARS


def test_a_worker_killed_mid_batch_is_retried(cluster: Any, store: tuple[FeatureStore, str]) -> None:
    """SIGKILL a Ray worker whose batch has written its features but not committed: the server
    rolls that transaction back, Ray retries the task, and the view ends complete."""
    fs, url = store
    cluster.connect()
    gate = psycopg.connect(url)
    # every batch writes its features, then waits here (bump_generation locks this row last)
    gate.execute("SELECT 1 FROM store_state WHERE id = 1 FOR UPDATE")
    with gate, _InThread(lambda: fs.create_view("tech", SEED_VIEW, backend="ray", batch_entities=2)) as run:
        try:
            blocked = _wait("a batch waiting to commit", lambda: _blocked_backfills(url))
            victim = blocked[0]
            assert psutil.Process(victim).name().startswith("ray::")  # a Ray worker process, not ours
            os.kill(victim, signal.SIGKILL)
            _wait("the killed worker's connection to close", lambda: _backends_gone(url, [victim]))
            with psycopg.connect(url) as conn:  # nothing of any batch is committed yet
                assert conn.execute(
                    "SELECT count(*) FROM indicator_state s JOIN feature_views v USING (view_id) WHERE v.name = 'tech'"
                ).fetchone() == (0,)
        finally:
            gate.rollback()
        view = run.result()
    assert view.status == "ready"
    _complete_and_equal_to_talib(fs, url, "tech")


DRIVER = textwrap.dedent(
    """
    import sys
    import ray
    from featurestore import FeatureStore
    ray.init(address=sys.argv[2], log_to_driver=False)
    with FeatureStore(sys.argv[1]) as fs:
        fs.create_view("tech", {view!r}, backend="ray", batch_entities=1)
    """
).format(view=SEED_VIEW)


def test_a_killed_driver_leaves_committed_batches_and_the_same_call_resumes(
    cluster: Any, store: tuple[FeatureStore, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Kill the process running create_view mid-backfill: the batches it committed stay, the one
    in flight rolls back, and create_view again backfills only the entities left."""
    fs, url = store
    cluster.connect()
    last = SYMBOLS[-1]
    with psycopg.connect(url) as gate:
        gate.execute(  # the entity's writer lock (placement.lock_entities): its batch waits
            "SELECT 1 FROM entity_keys WHERE entity_id = (SELECT entity_id FROM entities WHERE symbol = %s) FOR UPDATE",
            (last,),
        )
        env = dict(os.environ, PYTHONPATH=str(REPO), RAY_AUTH_MODE="disabled")
        driver = subprocess.Popen([sys.executable, "-c", DRIVER, url, cluster.address], env=env)
        try:
            def committed() -> int:
                with psycopg.connect(url) as conn:
                    row = conn.execute(
                        "SELECT count(*) FROM indicator_state s JOIN feature_views v USING (view_id) "
                        "WHERE v.name = 'tech'"
                    ).fetchone()
                return int(row[0]) if row else 0

            _wait("every batch but the held one to commit", lambda: committed() == N_SYMBOLS - 1)
            holder = _wait("the held batch to wait on its entity", lambda: _blocked_backfills(url))
            driver.send_signal(signal.SIGKILL)
            driver.wait(30)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait(30)
        # Ray stops a dead driver's tasks: the held batch's connection closes, its work rolled back
        _wait("the dead driver's batch to stop", lambda: _backends_gone(url, holder))
        gate.rollback()
    info = fs.describe_view("tech")
    assert (info["status"], info["entities"]) == ("backfilling", N_SYMBOLS - 1)
    resumed = _backfill_on_ray(fs, caplog)
    assert resumed == [f"backfill of tech v1 on Ray: 1 batches, {N_BARS} rows, over 1 nodes"]
    _complete_and_equal_to_talib(fs, url, "tech")


def test_a_batch_error_reaches_the_caller_whole(cluster: Any, make_database: Callable[[str], URL]) -> None:
    """A batch's own error (a float32 view meeting a value beyond float32) is raised as itself,
    with its location, and the version is removed, as on a local backfill."""
    cluster.connect()
    url = make_database("ray_float32")
    with FeatureStore(url, auto_migrate=True) as fs:
        ok = make_bars(["AAA", "BBB", "CCC"], 40, seed=5)
        big = make_bars(["BIG"], 40, seed=6)
        big["volume"] *= 1e36  # OBV beyond float32 from the first bar
        fs.ingest(pd.concat([ok, big], ignore_index=True), progress=False)
        with pytest.raises(ValidationError) as err:
            fs.create_view("o32", ["sma_3", "obv"], dtype="float32", batch_entities=1, backend="ray")
        e = err.value
        assert (type(e), e.column, e.source) == (ValidationError, "obv", "view o32 v1")
        assert "symbol 'BIG'" in str(e) and "the version was removed" in str(e)
        assert fs.list_views() == []


def test_a_correction_over_every_symbol_recomputes_on_ray(
    cluster: Any, store: tuple[FeatureStore, str], caplog: pytest.LogCaptureFixture
) -> None:
    fs, url = store
    cluster.connect()
    fs.create_view("tech", SEED_VIEW, progress=False)
    bars = make_bars(N_SYMBOLS, N_BARS + 30, seed=21)
    by_symbol = {s: g.reset_index(drop=True) for s, g in bars.groupby("symbol")}
    # every symbol: one bar corrected early (a recompute from the checkpoint before it) plus 10 new
    fix = []
    for k, (_sym, g) in enumerate(sorted(by_symbol.items())):
        part = g.iloc[[100 + 37 * k, *range(N_BARS, N_BARS + 10)]].copy()
        part.loc[part.index[0], ["open", "high", "low", "close"]] *= 1.01
        fix.append(part)
    with caplog.at_level(logging.INFO, logger="featurestore.write"):
        result = fs.ingest(pd.concat(fix, ignore_index=True), progress=False, backend="ray")
    assert (result.updated, result.inserted) == (N_SYMBOLS, 10 * N_SYMBOLS)
    done = [r.getMessage() for r in caplog.records if "computed on Ray" in r.getMessage()]
    # every symbol's features came from Ray tasks (in the write's feature batches)
    assert sum(int(re.search(r"for (\d+) entities", m).group(1)) for m in done) == N_SYMBOLS, done  # type: ignore[union-attr]
    with psycopg.connect(url) as conn:
        for sym in SYMBOLS:
            assert_features_match_talib(conn, "fv_tech_v1", sym)
    # the states and checkpoints Ray computed carry on here: an append, then a correction
    fs.ingest(pd.concat([g.iloc[N_BARS + 10 : N_BARS + 20] for g in by_symbol.values()]), progress=False)
    late = pd.concat([g.iloc[[700]] for g in by_symbol.values()]).copy()
    late[["open", "high", "low", "close"]] *= 0.98
    fs.ingest(late, progress=False)
    with psycopg.connect(url) as conn:
        for sym in SYMBOLS:
            assert_features_match_talib(conn, "fv_tech_v1", sym)
    with pytest.raises(ConfigError, match="backend must be one of 'local', 'ray', not 'spark'"):
        fs.ingest(late, backend="spark")


def test_unknown_backend_is_refused_before_anything_is_written(store: tuple[FeatureStore, str]) -> None:
    fs, _ = store
    with pytest.raises(ConfigError, match="backend must be one of 'joblib', 'ray', not 'dask'"):
        fs.create_view("tech", SEED_VIEW, backend="dask")
    assert fs.list_views() == []


def test_a_lost_worker_node_is_replaced_by_the_head(cluster: Any, store: tuple[FeatureStore, str]) -> None:
    """SIGKILL the second node (raylet and workers: a machine lost) while its batch is in flight:
    Ray reruns the batch on the head, and the view ends complete. Runs last: it costs the node."""
    fs, url = store
    cluster.connect()
    node = psutil.Process(cluster.procs[1].pid)

    def on_node() -> list[int]:
        mine = {p.pid for p in node.children(recursive=True)}
        return [pid for pid in _blocked_backfills(url) if pid in mine]

    gate = psycopg.connect(url)
    gate.execute("SELECT 1 FROM store_state WHERE id = 1 FOR UPDATE")
    with gate, _InThread(lambda: fs.create_view("tech", SEED_VIEW, backend="ray", batch_entities=2)) as run:
        try:
            victims = _wait("a batch of the second node waiting to commit", on_node)
            cluster.kill_node(1)
            _wait("the lost node's connections to close", lambda: _backends_gone(url, victims))
        finally:
            gate.rollback()
        try:
            view = run.result(timeout=240)
        except BackfillInterrupted:  # retries used up while Ray noticed the node's loss: resume
            view = fs.create_view("tech", SEED_VIEW, backend="ray", batch_entities=2)
    assert view.status == "ready"
    _complete_and_equal_to_talib(fs, url, "tech")
