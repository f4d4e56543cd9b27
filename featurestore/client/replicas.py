"""[client] Read replicas: reads go to hot standbys, writes to the primary.

``FeatureStore(url, read_replicas=[url2, ...])``. Each read picks the next replica in turn; it
goes to the primary instead when

- this store has committed a write the replica has not replayed yet (read-your-writes: after
  every committed write the store notes the primary's WAL position, ``pg_current_wal_lsn()``,
  and a read waits up to ``replica_wait`` seconds for the replica's
  ``pg_last_wal_replay_lsn()`` to reach it — a replica seen past it is not asked again);
- the replica is down (a connection error marks it down for ``REPLICA_COOLDOWN_S`` seconds; a
  read that loses its replica midway is redone on the primary);
- the read needs to write (a knowledge-time read or a training frame over history segments makes
  temporary tables, which a standby refuses with SQLSTATE 25006).

Other processes' writes reach a replica when it replays them, as on any standby.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from featurestore.errors import ConnectionError, DatabaseError, PoolTimeoutError

if TYPE_CHECKING:
    from featurestore.pool import Database
    from featurestore.read import Reader

__all__ = ["Replicas", "REPLICA_COOLDOWN_S", "lsn_value"]

_log = logging.getLogger("featurestore.client")
T = TypeVar("T")

#: Seconds a replica that failed to connect is left alone before it is tried again.
REPLICA_COOLDOWN_S = 5.0
_READ_ONLY = "25006"  # read_only_sql_transaction: the read needs the primary


def lsn_value(text: Any) -> int | None:
    """A ``pg_lsn`` (``'16/B374D848'``) as an int, None for NULL."""
    if text is None:
        return None
    hi, lo = str(text).split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


@dataclass
class Replica:
    url: str
    db: Database
    reader: Reader
    down_until: float = 0.0
    seen_lsn: int = -1  # the highest replay position seen on it
    reads: int = 0
    failures: int = 0
    last_error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "reads": self.reads, "failures": self.failures, "down": self.down_until > time.monotonic(),
                "last_error": self.last_error}


class Replicas:
    """The replicas of one store and the read-your-writes position of its own writes."""

    def __init__(self, replicas: Sequence[Replica], primary: Database, *, wait: float) -> None:
        self.replicas = list(replicas)
        self.primary = primary
        self.wait = float(wait)
        self._turn = itertools.count()
        self._lsn = -1  # this store's newest committed write, as a primary WAL position
        self._lock = threading.Lock()
        self.primary_reads = 0
        self.lagging = 0  # reads sent to the primary because no replica had replayed this store's writes

    def note_commit(self) -> None:
        """After a committed write: remember the primary's WAL position (reads wait for it)."""
        lsn = lsn_value(self.primary.run(lambda c: c.execute("SELECT pg_current_wal_lsn()").fetchone()[0]))  # type: ignore[index]
        with self._lock:
            if lsn is not None and lsn > self._lsn:
                self._lsn = lsn

    def note_unknown(self) -> None:
        """A write committed at a position not known: no replica may serve this store until
        one is seen past a later write's position."""
        with self._lock:
            self._lsn = 1 << 62

    def run(self, fn: Callable[[Reader], T], primary: Reader) -> T:
        """``fn(reader)`` on a replica that has this store's writes, else on ``primary``."""
        replica = self._pick()
        if replica is not None:
            try:
                out = fn(replica.reader)
                replica.reads += 1
                return out
            except PoolTimeoutError:
                pass  # busy, not down: this read goes to the primary
            except ConnectionError as exc:
                self._mark_down(replica, exc)
            except DatabaseError as exc:
                if getattr(exc, "sqlstate", None) != _READ_ONLY:
                    raise
        self.primary_reads += 1
        return fn(primary)

    def _pick(self) -> Replica | None:
        now = time.monotonic()
        live = [r for r in self.replicas if r.down_until <= now]
        if not live:
            return None
        start = next(self._turn)
        need = self._lsn
        for k in range(len(live)):
            r = live[(start + k) % len(live)]
            if need < 0 or r.seen_lsn >= need or self._caught_up(r, need, deadline=now + (self.wait if k == 0 else 0)):
                return r
        self.lagging += 1
        return None

    def _caught_up(self, r: Replica, need: int, deadline: float) -> bool:
        """Whether ``r`` has replayed position ``need`` (polling until ``deadline``)."""
        while True:
            try:
                got = r.db.run(lambda c: c.execute("SELECT pg_last_wal_replay_lsn()").fetchone()[0], idempotent=True)  # type: ignore[index]
            except PoolTimeoutError:
                return False
            except ConnectionError as exc:
                self._mark_down(r, exc)
                return False
            lsn = lsn_value(got)
            if lsn is None:  # not in recovery: a primary given as a replica is never behind
                return True
            with r.lock:
                r.seen_lsn = max(r.seen_lsn, lsn)
            if lsn >= need:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)

    def _mark_down(self, r: Replica, exc: BaseException) -> None:
        r.down_until = time.monotonic() + REPLICA_COOLDOWN_S
        r.failures += 1
        r.last_error = str(exc).splitlines()[0][:200]
        _log.warning("read replica %s is down (%s); reading from the primary for %g s", r.url, r.last_error,
                     REPLICA_COOLDOWN_S)

    def stats(self) -> dict[str, Any]:
        return {"replicas": [r.as_dict() for r in self.replicas], "primary_reads": self.primary_reads,
                "lagging_reads": self.lagging, "wait_s": self.wait}

    def close(self) -> None:
        for r in self.replicas:
            try:
                r.reader.close()
            finally:
                r.db.close()
