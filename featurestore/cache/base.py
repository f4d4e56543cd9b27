"""[cache] The base every policy shares: accounting, eviction loop, tags, single flight, pickling.

`Cache` owns everything that is the same for every policy: the key -> value map, size accounting
in bytes (and optionally entries), the eviction loop, the tag index, the invalidation epoch, the
single-flight `get_or_compute`, statistics and the lock. A policy is a small subclass that keeps
its own order of the resident keys and overrides five hooks:

``_touch(key)``          a hit on a resident key
``_admit(key, size)``    a new key is about to be inserted (before room is made)
``_victim() -> key``     choose a resident key to evict and forget it (called while full)
``_place(key, size)``    the new key is now resident
``_detach(key)``         the key is being removed on request (discard, invalidation, overwrite)

Every hook is O(1) amortised. Hooks run with the lock held and never call public methods.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from featurestore.cache.frames import sizeof

__all__ = ["Cache", "CacheStats"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_NO_TAGS: frozenset[Hashable] = frozenset()
_MISSING: Any = object()
# Invalidation records (tag or key -> epoch) kept for the stale-insert guard. Past this many the
# records collapse into one floor epoch: older in-flight computations are then refused wholesale,
# which is safe (a skipped insert is only a future miss) and keeps memory bounded.
_MAX_INVALIDATION_RECORDS = 65_536
# state that is per process (lock, waiters) or bound to the instance: not pickled, rebuilt
_TRANSIENT = ("_lock", "_inflight", "_fast_hits", "_fast_misses", "_admit_hook", "_place_hook", "_sizer")


# --------------------------------------------------------------------------------------------
# statistics and single flight
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CacheStats:
    """A snapshot of one cache's counters; `Cache.stats` returns it."""

    policy: str
    hits: int
    misses: int
    evictions: int
    inserts: int
    invalidations: int
    currsize: int
    maxsize: int
    entries: int

    @property
    def hit_ratio(self) -> float:
        """Hits over lookups (0.0 before the first lookup)."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


def _counted(counter: itertools.count[int]) -> int:
    """How many times ``next`` was called on a fresh `itertools.count` (it has no public getter)."""
    return int(repr(counter)[6:-1])


class _Flight:
    """One in-progress computation that concurrent callers of the same key wait on.

    ``running`` is a plain lock held from creation until `finish`; waiters block acquiring it. A
    `threading.Event` would do the same, but it builds a Condition per flight, and a flight is
    made on every miss.
    """

    __slots__ = ("error", "running", "since", "tags", "value")

    def __init__(self, since: int = 0, tags: frozenset[Hashable] = frozenset()) -> None:
        self.running = threading.Lock()
        self.running.acquire()  # released exactly once, by `finish`
        self.value: Any = None
        self.error: BaseException | None = None
        self.since = since  # the cache's epoch when the computation started
        self.tags = tags

    def finish(self) -> None:
        """Release every waiter (call once, after ``value`` or ``error`` is set)."""
        self.running.release()

    def result(self) -> Any:
        with self.running:  # acquired once the leader finished; released for the next waiter
            pass
        if self.error is not None:
            raise self.error
        return self.value


# --------------------------------------------------------------------------------------------
# the base
# --------------------------------------------------------------------------------------------
class Cache(MutableMapping[K, V], Generic[K, V]):
    """A thread-safe mapping bounded by total size (bytes by default) and optionally by entries.

    cachetools-compatible (``maxsize``, ``getsizeof``, ``currsize``, ``popitem``) plus what a
    result cache needs: tags (`set`, `invalidate_tags`), single-flight `get_or_compute` with a
    stale-insert guard, and `stats`. Use a policy subclass or `make_cache`; the base itself is
    abstract. An item larger than ``maxsize`` raises ``ValueError`` from ``cache[k] = v`` and
    `set`, and is returned uncached by `get_or_compute`.

    The mapping contract is cachetools': sizes come from the ``getsizeof`` argument, else from a
    subclass's ``getsizeof`` method, else `sizeof` (bytes); a subclass's ``__missing__`` is
    called by ``cache[key]`` on a miss (not by ``get``, ``pop`` or ``setdefault``); ``popitem``
    on an empty cache raises a bare ``KeyError``; caches pickle (contents, sizes, policy state
    and counters; the lock and in-flight computations are per process and made anew). One
    difference: ``maxsize`` must be positive (a cache that can hold nothing is refused).
    """

    policy: ClassVar[str] = ""
    # instance attributes a policy binds to its own structures (rebound after unpickling)
    _bound: ClassVar[tuple[str, ...]] = ()
    _data_factory: ClassVar[Callable[[], dict[Any, Any]]] = dict
    # True when the value map is an OrderedDict whose first key is always the victim (LRU)
    _victim_is_oldest: ClassVar[bool] = False

    def __init__(
        self,
        maxsize: int,
        *,
        maxentries: int | None = None,
        getsizeof: Callable[[Any], int] | None = None,
    ) -> None:
        if maxsize <= 0:
            raise ValueError(f"maxsize must be positive, got {maxsize}")
        if maxentries is not None and maxentries <= 0:
            raise ValueError(f"maxentries must be positive or None, got {maxentries}")
        self._maxsize = int(maxsize)
        self._maxentries = maxentries
        self._entry_cap = maxentries if maxentries is not None else sys.maxsize
        self._getsizeof_arg = getsizeof
        if getsizeof is not None and type(self).getsizeof is not Cache.getsizeof:
            self.getsizeof = getsizeof  # type: ignore[method-assign, assignment]  # the argument wins, as in cachetools
        self._lock = threading.Lock()
        self._data: dict[Any, Any] = type(self)._data_factory()
        self._sizes: dict[Any, int] = {}
        self._currsize = 0
        self._tags_of: dict[Any, frozenset[Hashable]] = {}
        self._index: dict[Hashable, set[Any]] = {}
        self._inflight: dict[Any, _Flight] = {}
        self._epoch = 0
        self._floor_epoch = 0
        self._tag_epochs: dict[Hashable, int] = {}
        self._key_epochs: dict[Any, int] = {}
        self._hits = self._misses = self._evictions = self._inserts = self._invalidations = 0
        self._fast_hits = itertools.count()
        self._fast_misses = itertools.count()
        self._init_policy()
        self._bind()

    def _bind(self) -> None:
        """Set the per-instance shortcuts (at creation, after `clear` and after unpickling)."""
        cls = type(self)
        # skip calling hooks a policy leaves as no-ops (one Python call less per insert)
        self._admit_hook = None if cls._admit is Cache._admit else self._admit
        self._place_hook = None if cls._place is Cache._place else self._place
        if self._getsizeof_arg is not None:
            self._sizer: Callable[[Any], int] = self._getsizeof_arg
        elif cls.getsizeof is not Cache.getsizeof:  # a subclass's own sizes
            self._sizer = self.getsizeof
        else:
            self._sizer = sizeof
        self._bind_policy()

    # ---- pickling ---------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Everything but the lock, waiters and bound shortcuts (a lock cannot be pickled)."""
        with self._lock:
            drop = set(_TRANSIENT).union(type(self)._bound)
            state = {k: v for k, v in self.__dict__.items() if k not in drop}
            state["_hits"] = self._hits + _counted(self._fast_hits)
            state["_misses"] = self._misses + _counted(self._fast_misses)
            self._pack_policy(state)
            return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self._unpack_policy(state)
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._inflight = {}
        self._fast_hits = itertools.count()
        self._fast_misses = itertools.count()
        self._bind()

    def _pack_policy(self, state: dict[str, Any]) -> None:
        """Replace policy structures that pickle badly (deep linked lists) in ``state``."""

    def _unpack_policy(self, state: dict[str, Any]) -> None:
        """Undo `_pack_policy` on ``state``."""

    # ---- policy hooks (overridden) ---------------------------------------------------------
    def _init_policy(self) -> None:
        """Create the policy's structures (also used by `clear`)."""

    def _bind_policy(self) -> None:
        """Bind the names in ``_bound`` to the policy's structures (after `_init_policy`)."""

    def _touch(self, key: Any) -> None:
        """A hit on a resident key."""

    def _admit(self, key: Any, size: int) -> None:
        """A new key is about to be inserted; room has not been made yet."""

    def _victim(self) -> Any:
        """Choose a resident key to evict, forget it, and return it."""
        raise NotImplementedError

    def _place(self, key: Any, size: int) -> None:
        """The new key is resident now."""

    def _detach(self, key: Any) -> None:
        """Forget a resident key that is removed on request (not evicted)."""

    # ---- cachetools-compatible surface ---------------------------------------------------
    @property
    def maxsize(self) -> int:
        """The bound on `currsize`."""
        return self._maxsize

    @property
    def maxentries(self) -> int | None:
        """The bound on the number of entries, or None."""
        return self._maxentries

    @property
    def currsize(self) -> int:
        """The total size of the cached values (bytes with the default `getsizeof`)."""
        return self._currsize

    def getsizeof(self, value: Any) -> int:
        """The size of one value: the ``getsizeof`` argument's, else `sizeof` (bytes).

        A subclass may override it; the cache then counts sizes with the override.
        """
        sizer = self._getsizeof_arg
        return sizer(value) if sizer is not None else sizeof(value)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(maxsize={self._maxsize}, currsize={self._currsize}, "
            f"entries={len(self._data)})"
        )

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[K]:
        with self._lock:
            keys = list(self._data)
        return iter(keys)

    # The hot paths use acquire/release rather than `with`: measured ~100 ns less per call here
    # (Python 3.11), which is what keeps the locked LRU ahead of the unlocked cachetools.LRUCache.
    def __getitem__(self, key: K) -> V:
        lock = self._lock
        lock.acquire()
        try:
            value = self._data.get(key, _MISSING)
            if value is _MISSING:
                self._misses += 1
            else:
                self._hits += 1
                self._touch(key)
        finally:
            lock.release()
        if value is _MISSING:
            return self.__missing__(key)  # outside the lock: it may insert
        return value  # type: ignore[no-any-return]

    def __missing__(self, key: K) -> V:
        """Called by ``cache[key]`` on a miss; raises ``KeyError`` (a subclass may compute instead)."""
        raise KeyError(key)

    def get(self, key: K, default: Any = None) -> Any:  # type: ignore[override]
        """Return the cached value (a hit, counted and touched) or ``default`` (a miss)."""
        lock = self._lock
        lock.acquire()
        try:
            value = self._data.get(key, _MISSING)
            if value is _MISSING:
                self._misses += 1
                return default
            self._hits += 1
            self._touch(key)
            return value
        finally:
            lock.release()

    def peek(self, key: K, default: Any = None) -> Any:
        """Return the cached value or ``default`` without counting or touching it."""
        return self._data.get(key, default)

    def pop(self, key: K, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value; ``default`` (or ``KeyError``) if absent."""
        with self._lock:
            value = self._data.get(key, _MISSING)
            if value is not _MISSING:
                self._remove(key)
                return value
        if default is _MISSING:
            raise KeyError(key)
        return default

    def setdefault(self, key: K, default: Any = None) -> Any:
        """Return the value of ``key``; insert ``default`` first if it is absent (a miss)."""
        size = self._sizer(default)
        with self._lock:
            value = self._data.get(key, _MISSING)
            if value is not _MISSING:
                self._hits += 1
                self._touch(key)
                return value
            self._misses += 1
            if size > self._maxsize:
                raise ValueError(f"value too large: {size} > maxsize {self._maxsize}")
            self._store(key, default, size, _NO_TAGS)
            return default

    def __setitem__(self, key: K, value: V) -> None:
        size = self._sizer(value)
        if size > self._maxsize:
            raise ValueError(f"value too large: {size} > maxsize {self._maxsize}")
        lock = self._lock
        lock.acquire()
        try:
            # `_store` inlined for untagged inserts: this is the miss path of every cache user
            data = self._data
            if key in data:
                self._remove(key)
            if self._admit_hook is not None:
                self._admit_hook(key, size)
            limit = self._maxsize - size
            if self._currsize > limit or len(data) >= self._entry_cap:
                self._make_room(limit)
            data[key] = value
            self._sizes[key] = size
            self._currsize += size
            if self._place_hook is not None:
                self._place_hook(key, size)
            self._inserts += 1
        finally:
            lock.release()

    def set(
        self,
        key: K,
        value: V,
        *,
        tags: Iterable[Hashable] = _NO_TAGS,
        since: int | None = None,
    ) -> bool:
        """Insert ``key`` with ``tags``; return False if it was refused as stale.

        Pass ``since=cache.epoch`` read *before* computing the value: if the key was discarded,
        one of ``tags`` invalidated, or the cache cleared after that, the value may be stale and
        is not inserted. Raises ``ValueError`` for a value larger than ``maxsize``.
        """
        tagset = tags if isinstance(tags, frozenset) else frozenset(tags)
        size = self._sizer(value)
        if size > self._maxsize:
            raise ValueError(f"value too large: {size} > maxsize {self._maxsize}")
        with self._lock:
            if since is not None and self._is_stale(key, tagset, since):
                return False
            self._store(key, value, size, tagset)
            return True

    def __delitem__(self, key: K) -> None:
        with self._lock:
            if key not in self._data:
                raise KeyError(key)
            self._remove(key)

    def popitem(self) -> tuple[K, V]:
        """Evict the entry the policy would evict next and return it (counts as an eviction)."""
        with self._lock:
            if not self._data:
                raise KeyError(f"{type(self).__name__} is empty") from None
            key = self._victim()
            value = self._data[key]
            self._unlink(key)
            self._evictions += 1
            return key, value

    # ---- invalidation ---------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """The invalidation counter; read it before computing a value you will `set` with ``since``."""
        return self._epoch

    def discard(self, key: K) -> bool:
        """Drop ``key`` if present (True if it was); an in-flight computation of it is not inserted."""
        with self._lock:
            self._epoch += 1
            self._record(self._key_epochs, key)
            if key not in self._data:
                return False
            self._remove(key)
            self._invalidations += 1
            return True

    def invalidate_tags(self, tags: Iterable[Hashable]) -> int:
        """Drop every entry carrying any of ``tags``; return how many were dropped.

        Cost is proportional to the entries dropped. Computations in flight whose tags intersect
        ``tags`` finish for their callers but are not inserted (see `get_or_compute`).
        """
        with self._lock:
            self._epoch += 1
            dropped = 0
            for tag in tags:
                self._record(self._tag_epochs, tag)
                keys = self._index.get(tag)
                if not keys:
                    continue
                for key in list(keys):
                    self._remove(key)
                    dropped += 1
            self._invalidations += dropped
            return dropped

    def clear(self) -> None:
        """Drop every entry and the policy's history; computations in flight are not inserted."""
        with self._lock:
            self._epoch += 1
            self._floor_epoch = self._epoch
            self._tag_epochs.clear()
            self._key_epochs.clear()
            self._invalidations += len(self._data)
            self._data = type(self)._data_factory()
            self._sizes.clear()
            self._tags_of.clear()
            self._index.clear()
            self._currsize = 0
            self._init_policy()
            self._bind_policy()

    # ---- single flight ----------------------------------------------------------------------
    def get_or_compute(
        self,
        key: K,
        fn: Callable[[], V],
        *,
        tags: Iterable[Hashable] = _NO_TAGS,
    ) -> V:
        """Return the cached value, or compute it once with ``fn()`` however many threads ask.

        The lock is not held while ``fn`` runs. Concurrent callers of the same key wait for the
        first one and get its value or its exception (nothing is cached on error). The value is
        not inserted if the key was discarded, a tag invalidated or the cache cleared while ``fn``
        ran, nor if it is larger than ``maxsize``; the caller gets it in every case. If sizing or
        storing the value raises, the caller and every waiter get that exception: waiters are
        released on every path.
        """
        with self._lock:
            value = self._data.get(key, _MISSING)
            if value is not _MISSING:
                self._hits += 1
                self._touch(key)
                return value  # type: ignore[no-any-return]
            self._misses += 1
            tagset = tags if isinstance(tags, frozenset) else frozenset(tags)
            flight = self._inflight.get(key)
            # a computation that started before an invalidation of this key or its tags may
            # return the old value: a caller arriving after the invalidation starts its own
            if flight is not None and self._is_stale(key, flight.tags, flight.since):
                flight = None
            leader = flight is None
            if flight is None:
                flight = self._inflight[key] = _Flight(self._epoch, tagset)
            since = self._epoch
        if not leader:
            return flight.result()  # type: ignore[no-any-return]
        try:
            value = fn()
            size = self._sizer(value)
            with self._lock:
                if self._inflight.get(key) is flight:
                    del self._inflight[key]
                if size <= self._maxsize and not self._is_stale(key, tagset, since):
                    self._store(key, value, size, tagset)
            flight.value = value
            return value  # type: ignore[no-any-return]
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            # whatever happened (fn, the sizer or a policy hook raised), release the waiters
            if self._inflight.get(key) is flight:
                with self._lock:
                    if self._inflight.get(key) is flight:
                        del self._inflight[key]
            flight.finish()

    # ---- statistics -------------------------------------------------------------------------
    def stats(self) -> CacheStats:
        """Counters since creation or the last `reset_stats`, plus the current size."""
        with self._lock:
            return CacheStats(
                policy=self.policy,
                hits=self._hits + _counted(self._fast_hits),
                misses=self._misses + _counted(self._fast_misses),
                evictions=self._evictions,
                inserts=self._inserts,
                invalidations=self._invalidations,
                currsize=self._currsize,
                maxsize=self._maxsize,
                entries=len(self._data),
            )

    def reset_stats(self) -> None:
        """Zero the counters (not the contents)."""
        with self._lock:
            self._hits = self._misses = self._evictions = self._inserts = self._invalidations = 0
            self._fast_hits = itertools.count()
            self._fast_misses = itertools.count()

    # ---- internals (lock held) ----------------------------------------------------------------
    def _store(self, key: Any, value: Any, size: int, tags: frozenset[Hashable]) -> None:
        data = self._data
        if key in data:
            self._remove(key)
        if self._admit_hook is not None:
            self._admit_hook(key, size)
        limit = self._maxsize - size
        if self._currsize > limit or len(data) >= self._entry_cap:
            self._make_room(limit)
        data[key] = value
        self._sizes[key] = size
        self._currsize += size
        if self._place_hook is not None:
            self._place_hook(key, size)
        self._inserts += 1
        if tags:
            self._tags_of[key] = tags
            index = self._index
            for tag in tags:
                keys = index.get(tag)
                if keys is None:
                    index[tag] = {key}
                else:
                    keys.add(key)

    def _make_room(self, limit: int) -> None:
        """Evict until ``currsize <= limit`` and one more entry fits."""
        data, sizes, tags_of = self._data, self._sizes, self._tags_of
        entry_cap = self._entry_cap
        popfirst = data.popitem if self._victim_is_oldest else None
        victim_of = self._victim
        while self._currsize > limit or len(data) >= entry_cap:
            if popfirst is not None:
                victim = popfirst(False)[0]  # type: ignore[call-arg]
            else:
                victim = victim_of()
                del data[victim]
            self._currsize -= sizes.pop(victim)
            if tags_of:
                self._untag(victim)
            self._evictions += 1

    def _remove(self, key: Any) -> None:
        self._detach(key)
        self._unlink(key)

    def _unlink(self, key: Any) -> None:
        del self._data[key]
        self._currsize -= self._sizes.pop(key)
        if self._tags_of:
            self._untag(key)

    def _untag(self, key: Any) -> None:
        tags = self._tags_of.pop(key, None)
        if tags:
            index = self._index
            for tag in tags:
                keys = index[tag]
                keys.discard(key)
                if not keys:
                    del index[tag]

    def _record(self, records: dict[Any, int], name: Hashable) -> None:
        records[name] = self._epoch
        if len(self._tag_epochs) + len(self._key_epochs) > _MAX_INVALIDATION_RECORDS:
            self._floor_epoch = self._epoch
            self._tag_epochs.clear()
            self._key_epochs.clear()

    def _is_stale(self, key: Any, tags: frozenset[Hashable], since: int) -> bool:
        if since < self._floor_epoch or since < self._key_epochs.get(key, -1):
            return True
        tag_epochs = self._tag_epochs
        if not tag_epochs:  # no tag invalidated since the last clear: the common case on a miss
            return False
        return any(since < tag_epochs.get(tag, -1) for tag in tags)


