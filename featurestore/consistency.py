"""How the store's result cache stays coherent with the database: three consistency modes.

``local``  (default) a write through this store drops every cached result it could have changed
           (tagged by symbol) before the write call returns. Writes by *other* processes are not
           seen: use it when one process writes, or when slightly stale reads are acceptable.
``notify`` as ``local``, and every committed write (in any process) sends ``NOTIFY featurestore``
           with the touched symbols in its transaction; a background thread on a dedicated
           connection ``LISTEN``s and drops the affected entries. PostgreSQL delivers a
           notification only after the commit, typically within a millisecond or two, so a
           reader can see an entry up to that delay old. If the listener's connection is lost, or
           the listener fails in any other way, it clears the whole cache and reconnects
           (notifications sent meanwhile are lost, so nothing stale survives); should its thread
           ever end, the next read clears the cache and starts a new one. `CachedReads.stats`
           reports whether it is listening now and how often it failed.
``strict`` before serving a hit, one cheap query reads the store-wide write generation
           (``store_state``); an entry computed before the last committed write is recomputed.
           A hit is therefore never older than the last write committed before the read
           started, at the cost of one round trip (~0.1 ms) per hit.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from featurestore.cache import Cache, freeze_and_handout, handout, sizeof
from featurestore.errors import ConfigError

__all__ = ["CONSISTENCY_MODES", "CachedReads", "Entry"]

CONSISTENCY_MODES = ("local", "notify", "strict")
NOTIFY_CHANNEL = "featurestore"
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Entry:
    """A cached result and the store generation read before it was computed."""

    generation: int
    value: Any


def entry_size(entry: Entry) -> int:
    """The cache's ``getsizeof``: the memory of the result itself."""
    return sizeof(entry.value)


def symbol_tags(symbols: Iterable[str]) -> frozenset[Hashable]:
    """The invalidation tags of a read of ``symbols``: one per symbol."""
    if type(symbols) is tuple and len(symbols) <= _SHARED_TAGS_UP_TO:
        return _shared_tags(symbols)
    return frozenset(("s", s) for s in symbols)


_SHARED_TAGS_UP_TO = 8  # reads of this few symbols share one tag set per symbol tuple


@functools.lru_cache(maxsize=4096)
def _shared_tags(symbols: tuple[str, ...]) -> frozenset[Hashable]:
    """Tag sets of small reads, made once: entries of the same symbols share one (immutable) set."""
    return frozenset(("s", s) for s in symbols)


class CachedReads:
    """Serve reads through a cache under one consistency mode; invalidate on writes."""

    def __init__(
        self,
        cache: Cache[Any, Entry],
        *,
        consistency: str,
        generation: Callable[[], int],
        listen_url: str | None = None,
    ) -> None:
        if consistency not in CONSISTENCY_MODES:
            raise ConfigError(f"consistency must be one of {CONSISTENCY_MODES}, got {consistency!r}")
        self.cache = cache
        self.consistency = consistency
        self._generation = generation
        self._listener: _Listener | None = None
        self._restart_lock = threading.Lock()
        if consistency == "notify":
            if listen_url is None:
                raise ConfigError("consistency='notify' needs the database URL to listen on")
            self._listener = _Listener(listen_url, self)
            self._listener.start()

    def read(
        self, key: Hashable, symbols: Iterable[str], compute: Callable[[], Any], *, immutable: bool = False
    ) -> Any:
        """The cached result for ``key`` (computing it once if missing), handed out read-only.

        Every caller, the one that computed it too, gets a `handout`: a result returned as
        computed would keep writable arrays that ``Series.array[i] = x`` writes through into the
        cached frame, copy-on-write or not. ``immutable``: a result no write can change (a past
        knowledge time): no symbol tags, no generation check; only clearing the cache drops it.
        """
        listener = self._listener
        if listener is not None and not listener.is_alive():
            self._restart_listener(listener)
        generation = 0
        if self.consistency == "strict" and not immutable:
            generation = self._generation()
            entry = self.cache.peek(key)
            if entry is not None and entry.generation != generation:
                self.cache.discard(key)
        mine: list[Any] = []  # the computing caller's hand-out, made with the frozen value in one pass

        def fill() -> Entry:
            frozen, given = freeze_and_handout(compute())
            mine.append(given)
            return Entry(generation, frozen)

        entry = self.cache.get_or_compute(key, fill, tags=symbol_tags(symbols))
        if entry.generation != generation:  # strict: a concurrent caller computed it for an older generation
            self.cache.discard(key)
            return compute()  # not cached: nobody else holds it
        return mine[0] if mine else handout(entry.value)

    def lookup(self, key: Hashable) -> tuple[bool, Any, int]:
        """(hit, hand-out, epoch) without computing: for a caller that computes elsewhere (the
        asyncio store) and then :meth:`offer`s the value with the returned epoch. Strict mode
        never hits here (its check is a query: such callers take the sync path)."""
        listener = self._listener
        if listener is not None and not listener.is_alive():
            self._restart_listener(listener)
        epoch = self.cache.epoch
        if self.consistency == "strict":
            return False, None, epoch
        entry = self.cache.get(key)
        if entry is None:
            return False, None, epoch
        return True, handout(entry.value), epoch

    def offer(self, key: Hashable, symbols: Iterable[str], value: Any, since: int) -> Any:
        """Cache ``value`` computed after :meth:`lookup` returned ``since`` (not if a write
        invalidated it meanwhile, nor if it is too large); return the caller's hand-out."""
        frozen, given = freeze_and_handout(value)
        try:
            self.cache.set(key, Entry(0, frozen), tags=symbol_tags(symbols), since=since)
        except ValueError:  # larger than the cache: served, not kept
            pass
        return given

    def _restart_listener(self, dead: _Listener) -> None:
        """The listener thread ended (it never should): what it missed is unknown, so start clean."""
        with self._restart_lock:
            if self._listener is not dead:
                return  # another reader restarted it, or the store is closing
            _log.warning("cache listener thread had ended; clearing the cache and restarting it")
            self.invalidate(None)
            listener = _Listener(dead.url, self)
            listener.failures = dead.failures + 1
            listener.last_error = dead.last_error
            self._listener = listener
            listener.start()

    def invalidate(self, symbols: Iterable[str] | None) -> int:
        """Drop entries that read any of ``symbols`` (None: everything). Returns entries dropped."""
        if symbols is None:
            n = len(self.cache)
            self.cache.clear()
            return n
        return self.cache.invalidate_tags(symbol_tags(symbols))

    def stats(self) -> dict[str, Any]:
        st = self.cache.stats()
        out = {
            "policy": st.policy,
            "consistency": self.consistency,
            "hits": st.hits,
            "misses": st.misses,
            "hit_ratio": round(st.hit_ratio, 4),
            "evictions": st.evictions,
            "inserts": st.inserts,
            "invalidations": st.invalidations,
            "entries": st.entries,
            "bytes": st.currsize,
            "max_bytes": st.maxsize,
        }
        listener = self._listener
        if listener is not None:
            out["notifications"] = listener.received
            out["listener_connected"] = listener.is_alive() and listener.connected.is_set()
            out["listener_failures"] = listener.failures
            out["listener_last_error"] = listener.last_error
        return out

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None


class _Listener(threading.Thread):
    """LISTENs on a dedicated connection (outside the pool) and invalidates on every notification."""

    def __init__(self, url: str, owner: CachedReads) -> None:
        super().__init__(name="featurestore-listener", daemon=True)
        self.url = url
        self.owner = owner
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self.received = 0
        self.failures = 0
        self.last_error: str | None = None
        self._conn: psycopg.Connection[Any] | None = None

    def run(self) -> None:
        try:
            self._listen()
        finally:  # even a BaseException: say so, and leave nothing that could be stale
            self.connected.clear()
            if not self.stopping.is_set():
                self._clear()

    def _listen(self) -> None:
        backoff = 0.1
        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, application_name="featurestore-listener") as conn:
                    self._conn = conn
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
                    # whatever happened while we were not listening is unknown: start clean
                    self.owner.invalidate(None)
                    self.connected.set()
                    backoff = 0.1
                    while not self.stopping.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._handle(note.payload)
            except Exception as exc:
                if self.stopping.is_set():
                    break
                self.connected.clear()
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                what = "lost its connection" if isinstance(exc, psycopg.Error) else "failed"
                _log.warning("cache listener %s (%s); clearing the cache and reconnecting", what, self.last_error)
                self._clear()
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self._conn = None

    def _clear(self) -> None:
        try:
            self.owner.cache.clear()
        except Exception:  # pragma: no cover - clearing a dict does not fail
            _log.exception("cache listener could not clear the cache")

    def _handle(self, payload: str) -> None:
        self.received += 1
        try:
            symbols = json.loads(payload).get("s")
        except (ValueError, AttributeError):
            symbols = None
        self.owner.invalidate(symbols if isinstance(symbols, list) else None)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)
