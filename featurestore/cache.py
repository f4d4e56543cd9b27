"""[cache] In-process result cache: one base class, small policy subclasses, tag invalidation.

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

Policies, by name (`make_cache`): ``lru``, ``lfu``, ``arc``, ``slru``, ``clock``, ``adaptive``,
``w-tinylfu``, ``s3-fifo``, ``sieve``. With unit sizes, ``lru``, ``lfu``, ``arc``, ``slru``,
``clock``, ``sieve`` and ``s3-fifo`` evict exactly like libCacheSim 0.3.5's policies of the same
name (hit-for-hit, tested); the variants are documented on each class.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

__all__ = [
    "POLICIES",
    "ARCCache",
    "AdaptiveCache",
    "Cache",
    "CacheStats",
    "ClockCache",
    "LFUCache",
    "LRUCache",
    "S3FIFOCache",
    "SLRUCache",
    "SieveCache",
    "WTinyLFUCache",
    "freeze",
    "handout",
    "make_cache",
    "sizeof",
]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_NO_TAGS: frozenset[Hashable] = frozenset()
_MISSING: Any = object()
# Invalidation records (tag or key -> epoch) kept for the stale-insert guard. Past this many the
# records collapse into one floor epoch: older in-flight computations are then refused wholesale,
# which is safe (a skipped insert is only a future miss) and keeps memory bounded.
_MAX_INVALIDATION_RECORDS = 65_536


# --------------------------------------------------------------------------------------------
# sizes and read-only values
# --------------------------------------------------------------------------------------------
def sizeof(value: object) -> int:
    """Return the memory a result holds, in bytes: the default ``getsizeof`` of every cache.

    pandas objects count ``memory_usage(deep=True)`` (strings included), numpy arrays and pyarrow
    tables/arrays their ``nbytes``, anything else ``sys.getsizeof`` (shallow). It inspects
    attributes only, so it costs well under a microsecond for arrays and tables.
    """
    memory_usage = getattr(value, "memory_usage", None)
    if memory_usage is not None and hasattr(value, "index"):  # pandas DataFrame / Series
        used = memory_usage(deep=True)  # a Series per column for a frame, an int for a series
        return int(used.sum()) if hasattr(used, "sum") else int(used)
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    return sys.getsizeof(value)


def _lock_pandas(value: Any) -> None:
    # pandas has no public switch for read-only data; the block manager is the one place that
    # holds the numpy arrays. If a future pandas moves it, freezing degrades to "copy on hand-out
    # protects the cached object" (see `handout`), which the tests check separately.
    manager = getattr(value, "_mgr", None)
    for block in getattr(manager, "blocks", ()):
        array = getattr(block, "values", None)
        flags = getattr(array, "flags", None)
        if flags is not None:
            flags.writeable = False


def freeze(value: V) -> V:
    """Make a result read-only in place where the library allows it, and return it.

    numpy arrays get ``flags.writeable = False``; a pandas DataFrame or Series gets its numpy
    blocks and index made read-only, so in-place element writes (``df.iloc[0, 0] = x``) raise
    ``ValueError`` instead of corrupting the cached frame; pyarrow tables are immutable already and
    are returned as they are. Freezing cannot stop structural changes to a shared DataFrame object
    (``df["a"] += 1`` rebinds a column): hand each caller `handout(value)` for that.
    """
    if hasattr(value, "flags") and hasattr(value, "dtype") and hasattr(value, "strides"):
        value.flags.writeable = False  # type: ignore[attr-defined]
    elif hasattr(value, "_mgr"):
        _lock_pandas(value)
        index = getattr(value, "index", None)
        _lock_pandas(index)
    return value


def handout(value: V) -> V:
    """Return the object to give one caller for a cached result, so nothing it does reaches the cache.

    pandas (copy-on-write, the pandas 3 default) -> a new frame over new shallow blocks that share
    the cached data, and the cached (immutable) index and columns objects: about 4 µs, where
    ``DataFrame.copy(deep=False)`` spends ~100 µs re-viewing a MultiIndex. The caller may write to
    it in any way (values are copied on first write) and the cached frame stays unchanged; only
    renaming the shared axes in place (``df.index.names = ...``) would reach it, so use
    ``rename_axis`` (which returns a new frame). numpy -> a read-only view (a caller cannot switch
    ``writeable`` back on). Anything else is returned as is.
    """
    mgr = getattr(value, "_mgr", None)
    if mgr is not None and hasattr(value, "copy"):
        try:
            blocks = tuple(b.copy(deep=False) for b in mgr.blocks)
            new = type(mgr)(blocks, mgr.axes, verify_integrity=False)
            return type(value)._from_mgr(new, axes=new.axes)  # type: ignore[attr-defined, no-any-return]
        except (AttributeError, TypeError):  # pandas internals moved: the public, slower way
            return value.copy(deep=False)  # type: ignore[attr-defined, no-any-return]
    if hasattr(value, "flags") and hasattr(value, "view") and hasattr(value, "strides"):
        view = value.view()  # type: ignore[attr-defined]
        view.flags.writeable = False
        return view  # type: ignore[no-any-return]
    return value


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
    """One in-progress computation that concurrent callers of the same key wait on."""

    __slots__ = ("done", "error", "value", "since", "tags")

    def __init__(self, since: int = 0, tags: frozenset[Hashable] = frozenset()) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.since = since  # the cache's epoch when the computation started
        self.tags = tags

    def result(self) -> Any:
        self.done.wait()
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
    """

    policy: ClassVar[str] = ""
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
        self._sizer: Callable[[Any], int] = getsizeof if getsizeof is not None else sizeof
        self._lock = threading.Lock()
        self._data: dict[Any, Any] = self._data_factory()
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
        cls = type(self)
        # skip calling hooks a policy leaves as no-ops (one Python call less per insert)
        self._admit_hook = None if cls._admit is Cache._admit else self._admit
        self._place_hook = None if cls._place is Cache._place else self._place
        self._init_policy()

    # ---- policy hooks (overridden) ---------------------------------------------------------
    def _init_policy(self) -> None:
        """Create the policy's structures (also used by `clear`)."""

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
        """The size of one value, as this cache counts it."""
        return self._sizer(value)

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
                raise KeyError(key)
            self._hits += 1
            self._touch(key)
            return value  # type: ignore[no-any-return]
        finally:
            lock.release()

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
                raise KeyError(f"{type(self).__name__} is empty")
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
            self._data = self._data_factory()
            self._sizes.clear()
            self._tags_of.clear()
            self._index.clear()
            self._currsize = 0
            self._init_policy()

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
        ran, nor if it is larger than ``maxsize``; the caller gets it in every case.
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
        except BaseException as exc:
            with self._lock:
                if self._inflight.get(key) is flight:
                    del self._inflight[key]
            flight.error = exc
            flight.done.set()
            raise
        with self._lock:
            if self._inflight.get(key) is flight:
                del self._inflight[key]
            if size <= self._maxsize and not self._is_stale(key, tagset, since):
                self._store(key, value, size, tagset)
        flight.value = value
        flight.done.set()
        return value  # type: ignore[no-any-return]

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
        return any(since < tag_epochs.get(tag, -1) for tag in tags)


# --------------------------------------------------------------------------------------------
# policies
# --------------------------------------------------------------------------------------------
class LRUCache(Cache[K, V]):
    """Least recently used: evicts the entry untouched for longest. Same as libCacheSim ``LRU``.

    The value map itself is the recency list (an ``OrderedDict``), so a hit is one C call.
    """

    policy = "lru"
    _data_factory = OrderedDict
    _victim_is_oldest = True

    def _init_policy(self) -> None:
        self._touch = self._data.move_to_end  # type: ignore[attr-defined, method-assign]

    def _victim(self) -> Any:
        return next(iter(self._data))

    # Lock-free reads. A hit is one C-level ``OrderedDict.get`` and one ``move_to_end``, each
    # atomic under the GIL; every mutation of the map still takes the lock. If another thread
    # evicts the key between the two calls, the read still returns the value it found (it happened
    # before the eviction). Counters are `itertools.count` objects, whose ``next`` is atomic too.
    # Measured (benchmarks/cache.py): with the lock on reads this LRU was ~20% slower than the
    # unlocked cachetools.LRUCache; without it, faster.
    def get(self, key: K, default: Any = None) -> Any:
        """Return the cached value (a hit, counted and touched) or ``default`` (a miss)."""
        data = self._data
        value = data.get(key, _MISSING)
        if value is _MISSING:
            next(self._fast_misses)
            return default
        try:
            data.move_to_end(key)  # type: ignore[attr-defined]
        except KeyError:  # evicted meanwhile by another thread
            pass
        next(self._fast_hits)
        return value

    def __getitem__(self, key: K) -> V:
        data = self._data
        value = data.get(key, _MISSING)
        if value is _MISSING:
            next(self._fast_misses)
            raise KeyError(key)
        try:
            data.move_to_end(key)  # type: ignore[attr-defined]
        except KeyError:
            pass
        next(self._fast_hits)
        return value  # type: ignore[no-any-return]


class _FrequencyList:
    """Keys grouped in buckets by access count, buckets in a linked list by count: O(1) LFU.

    A bucket is ``[count, lower, upper, keys]`` with ``keys`` an OrderedDict in the order keys
    reached that count; the victim is the first key of the lowest bucket (libCacheSim's LFU
    tie-break). A key alone in its bucket is promoted by relabelling the bucket, so the hot keys
    of a skewed trace cost no allocation per hit.
    """

    __slots__ = ("head", "where")

    def __init__(self) -> None:
        self.where: dict[Any, list[Any]] = {}
        self.head: list[Any] | None = None

    def add(self, key: Any) -> None:
        head = self.head
        if head is None or head[0] != 1:
            head = [1, None, head, OrderedDict()]
            if self.head is not None:
                self.head[1] = head
            self.head = head
        head[3][key] = None
        self.where[key] = head

    def bump(self, key: Any) -> None:
        node = self.where[key]
        keys = node[3]
        upper = node[2]
        count = node[0] + 1
        if upper is None or upper[0] != count:
            if len(keys) == 1:
                node[0] = count
                return
            upper = [count, node, upper, OrderedDict()]
            if node[2] is not None:
                node[2][1] = upper
            node[2] = upper
        del keys[key]
        upper[3][key] = None
        self.where[key] = upper
        if not keys:
            self._unlink(node)

    def victim(self) -> Any:
        return next(iter(self.head[3]))  # type: ignore[index]

    def remove(self, key: Any) -> None:
        node = self.where.pop(key)
        keys = node[3]
        del keys[key]
        if not keys:
            self._unlink(node)

    def _unlink(self, node: list[Any]) -> None:
        lower, upper = node[1], node[2]
        if lower is None:
            self.head = upper
        else:
            lower[2] = upper
        if upper is not None:
            upper[1] = lower


class LFUCache(Cache[K, V]):
    """Least frequently used, O(1) with frequency buckets. Same as libCacheSim ``LFU``.

    Counts start at 1 on insert and are forgotten on eviction; ties go to the key that reached
    the lowest count first. Without aging, old popular keys can stay forever: prefer ``adaptive``,
    ``w-tinylfu`` or ``arc`` when popularity shifts.
    """

    policy = "lfu"

    def _init_policy(self) -> None:
        self._freq = _FrequencyList()
        self._touch = self._freq.bump  # type: ignore[method-assign]
        self._detach = self._freq.remove  # type: ignore[method-assign]

    def _victim(self) -> Any:
        key = self._freq.victim()
        self._freq.remove(key)
        return key

    def _place(self, key: Any, size: int) -> None:
        self._freq.add(key)


class ARCCache(Cache[K, V]):
    """Adaptive Replacement Cache (Megiddo & Modha), sizes in bytes. Same as libCacheSim ``ARC``.

    T1 (seen once) and T2 (seen again) hold data; ghosts B1/B2 remember recent evictions of each
    and move the target size ``p`` of T1 (a float, as in libCacheSim). REPLACE takes from T1 when
    T2 is empty, so uneven sizes never find an empty list.
    """

    policy = "arc"

    def _init_policy(self) -> None:
        self._t1: OrderedDict[Any, int] = OrderedDict()
        self._t2: OrderedDict[Any, int] = OrderedDict()
        self._b1: OrderedDict[Any, int] = OrderedDict()
        self._b2: OrderedDict[Any, int] = OrderedDict()
        self._t1_bytes = self._t2_bytes = self._b1_bytes = self._b2_bytes = 0
        self._p = 0.0
        self._incoming = 0
        self._ghost_hit = False
        self._in_b2 = False

    def _touch(self, key: Any) -> None:
        size = self._t1.pop(key, None)
        if size is None:
            self._t2.move_to_end(key)
        else:
            self._t1_bytes -= size
            self._t2[key] = size
            self._t2_bytes += size

    def _admit(self, key: Any, size: int) -> None:
        self._incoming = size
        ghost = self._b1.pop(key, None)
        if ghost is not None:
            # p and delta are floats, as in libCacheSim (and the reference ARC.py it checks against)
            self._p = min(self._p + max(self._b2_bytes / self._b1_bytes, 1.0), self._maxsize)
            self._b1_bytes -= ghost
            self._ghost_hit = True
            return
        ghost = self._b2.pop(key, None)
        if ghost is not None:
            self._p = max(self._p - max(self._b1_bytes / self._b2_bytes, 1.0), 0.0)
            self._b2_bytes -= ghost
            self._ghost_hit = self._in_b2 = True

    def _replace(self) -> Any:
        t1_bytes = self._t1_bytes
        from_t1 = (
            t1_bytes > 0 and (t1_bytes > self._p or (t1_bytes == self._p and self._in_b2))
        ) or not self._t2
        if from_t1:
            key, size = self._t1.popitem(last=False)
            self._t1_bytes -= size
            self._b1[key] = size
            self._b1_bytes += size
        else:
            key, size = self._t2.popitem(last=False)
            self._t2_bytes -= size
            self._b2[key] = size
            self._b2_bytes += size
        return key

    def _victim(self) -> Any:
        if self._ghost_hit:  # cases II and III of the paper: REPLACE only
            return self._replace()
        cap = self._maxsize  # case IV: a miss everywhere
        if self._t1_bytes + self._b1_bytes + self._incoming > cap:
            if self._b1:
                self._b1_bytes -= self._b1.popitem(last=False)[1]
                return self._replace()
            key, size = self._t1.popitem(last=False)
            self._t1_bytes -= size
            return key
        total = self._t1_bytes + self._b1_bytes + self._t2_bytes + self._b2_bytes
        if total >= 2 * cap and self._b2:
            self._b2_bytes -= self._b2.popitem(last=False)[1]
        return self._replace()

    def _place(self, key: Any, size: int) -> None:
        if self._ghost_hit:
            self._t2[key] = size
            self._t2_bytes += size
        else:
            self._t1[key] = size
            self._t1_bytes += size
        self._ghost_hit = self._in_b2 = False

    def _detach(self, key: Any) -> None:
        size = self._t1.pop(key, None)
        if size is not None:
            self._t1_bytes -= size
        else:
            self._t2_bytes -= self._t2.pop(key)


class SLRUCache(Cache[K, V]):
    """Segmented LRU with ``segments`` equal LRU segments (default 4). Same as libCacheSim ``SLRU``.

    A new key enters the lowest segment with room; a hit moves a key one segment up, and an
    overfull segment demotes its LRU key one segment down. Eviction takes the LRU key of the
    lowest non-empty segment. Variant: when the segments' shares do not add up to ``maxsize``
    (``maxsize % segments != 0``) or sizes are uneven, libCacheSim may evict on a hit from an
    overfull bottom segment; this one never evicts on a hit (the total is bounded anyway).
    """

    policy = "slru"
    segments: ClassVar[int] = 4

    def _init_policy(self) -> None:
        n = self.segments
        self._segs: list[OrderedDict[Any, int]] = [OrderedDict() for _ in range(n)]
        self._seg_bytes = [0] * n
        self._seg_max = [self._maxsize // n] * n
        self._seg_of: dict[Any, int] = {}

    def _touch(self, key: Any) -> None:
        seg = self._seg_of[key]
        segs = self._segs
        top = len(segs) - 1
        if seg == top:
            segs[seg].move_to_end(key)
            return
        size = segs[seg].pop(key)
        self._seg_bytes[seg] -= size
        up = seg + 1
        segs[up][key] = size
        self._seg_bytes[up] += size
        self._seg_of[key] = up
        self._cool(up)

    def _cool(self, seg: int) -> None:
        # demote LRU keys down while a segment is over its share; segment 0 may stay over
        seg_bytes, seg_max, segs = self._seg_bytes, self._seg_max, self._segs
        while seg > 0 and seg_bytes[seg] > seg_max[seg]:
            key, size = segs[seg].popitem(last=False)
            seg_bytes[seg] -= size
            segs[seg - 1][key] = size
            seg_bytes[seg - 1] += size
            self._seg_of[key] = seg - 1
            self._cool(seg - 1)

    def _victim(self) -> Any:
        for seg, queue in enumerate(self._segs):
            if queue:
                key, size = queue.popitem(last=False)
                self._seg_bytes[seg] -= size
                del self._seg_of[key]
                return key
        raise KeyError("empty")  # pragma: no cover - the base never asks an empty cache

    def _place(self, key: Any, size: int) -> None:
        target = 0
        for seg in range(len(self._segs)):
            if self._seg_bytes[seg] + size <= self._seg_max[seg]:
                target = seg
                break
        self._segs[target][key] = size
        self._seg_bytes[target] += size
        self._seg_of[key] = target

    def _detach(self, key: Any) -> None:
        seg = self._seg_of.pop(key)
        self._seg_bytes[seg] -= self._segs[seg].pop(key)


class ClockCache(Cache[K, V]):
    """CLOCK (second chance) with a ``bits``-bit reference counter. Same as libCacheSim ``Clock``.

    Defaults match libCacheSim: 1-bit counter, new keys start at 0. A hit increments the counter
    (saturating); the hand decrements and skips keys with a non-zero counter.
    """

    policy = "clock"
    bits: ClassVar[int] = 1

    def _init_policy(self) -> None:
        self._ring: OrderedDict[Any, int] = OrderedDict()
        self._max_count = (1 << self.bits) - 1

    def _touch(self, key: Any) -> None:
        count = self._ring[key]
        if count < self._max_count:
            self._ring[key] = count + 1

    def _victim(self) -> Any:
        ring = self._ring
        while True:
            key, count = ring.popitem(last=False)
            if not count:
                return key
            ring[key] = count - 1

    def _place(self, key: Any, size: int) -> None:
        self._ring[key] = 0

    def _detach(self, key: Any) -> None:
        del self._ring[key]


class SieveCache(Cache[K, V]):
    """SIEVE (Zhang et al., NSDI'24): FIFO order, a visited bit, a hand that sweeps old -> new.

    Same as libCacheSim ``Sieve``. A hit only sets a bit, so hits are the cheapest of all
    policies after LRU; survivors keep their place instead of moving to the head.
    """

    policy = "sieve"

    def _init_policy(self) -> None:
        # node = [newer, older, key, visited]
        self._nodes: dict[Any, list[Any]] = {}
        self._newest: list[Any] | None = None
        self._oldest: list[Any] | None = None
        self._hand: list[Any] | None = None

    def _touch(self, key: Any) -> None:
        self._nodes[key][3] = True

    def _place(self, key: Any, size: int) -> None:
        node = [None, self._newest, key, False]
        if self._newest is not None:
            self._newest[0] = node
        else:
            self._oldest = node
        self._newest = node
        self._nodes[key] = node

    def _unlink_node(self, node: list[Any]) -> None:
        newer, older = node[0], node[1]
        if newer is not None:
            newer[1] = older
        else:
            self._newest = older
        if older is not None:
            older[0] = newer
        else:
            self._oldest = newer

    def _victim(self) -> Any:
        node = self._hand if self._hand is not None else self._oldest
        assert node is not None
        while node[3]:
            node[3] = False
            node = node[0] if node[0] is not None else self._oldest
            assert node is not None
        self._hand = node[0]
        self._unlink_node(node)
        del self._nodes[node[2]]
        return node[2]

    def _detach(self, key: Any) -> None:
        node = self._nodes.pop(key)
        if node is self._hand:
            self._hand = node[0]
        self._unlink_node(node)


class S3FIFOCache(Cache[K, V]):
    """S3-FIFO (Yang et al., SOSP'23): small FIFO (10%), main FIFO (90%), ghost FIFO of keys.

    Same as libCacheSim ``S3FIFO`` (small 0.10, ghost 0.90, move-to-main threshold 2, a 2-bit
    counter in main, and its rule that before the first eviction a full small queue spills new
    keys into main). Variant: libCacheSim refuses objects at least as large as the small queue;
    this one puts them straight into main (so ``maxsize`` below 20 unit entries differs).
    """

    policy = "s3-fifo"
    small_ratio: ClassVar[float] = 0.10
    ghost_ratio: ClassVar[float] = 0.90
    move_to_main_threshold: ClassVar[int] = 2

    def _init_policy(self) -> None:
        self._small: OrderedDict[Any, int] = OrderedDict()
        self._main: OrderedDict[Any, int] = OrderedDict()
        self._ghost: OrderedDict[Any, int] = OrderedDict()
        self._small_bytes = self._main_bytes = self._ghost_bytes = 0
        self._small_max = int(self._maxsize * self.small_ratio)
        self._main_max = self._maxsize - self._small_max
        self._ghost_max = int(self._maxsize * self.ghost_ratio)
        self._freq: dict[Any, int] = {}
        self._has_evicted = False
        self._from_ghost = False

    def _touch(self, key: Any) -> None:
        count = self._freq[key]
        if count < 3:  # libCacheSim counts on; only min(count, 3) is ever used
            self._freq[key] = count + 1

    def _admit(self, key: Any, size: int) -> None:
        ghost = self._ghost.pop(key, None)
        if ghost is not None:
            self._ghost_bytes -= ghost
            self._from_ghost = True

    def _place(self, key: Any, size: int) -> None:
        to_main = (
            self._from_ghost
            or size >= self._small_max
            or (not self._has_evicted and self._small_bytes >= self._small_max)
        )
        self._from_ghost = False
        if to_main:
            self._main[key] = size
            self._main_bytes += size
        else:
            self._small[key] = size
            self._small_bytes += size
        self._freq[key] = 0

    def _victim(self) -> Any:
        self._has_evicted = True
        if self._main_bytes <= self._main_max and self._small:
            small, main, freq = self._small, self._main, self._freq
            threshold = self.move_to_main_threshold
            while small:
                key, size = small.popitem(last=False)
                self._small_bytes -= size
                if freq[key] >= threshold:
                    main[key] = size
                    self._main_bytes += size
                    freq[key] = 0
                    continue
                del freq[key]
                self._remember(key, size)
                return key
        return self._evict_main()

    def _evict_main(self) -> Any:
        main, freq = self._main, self._freq
        while True:
            key, size = main.popitem(last=False)
            count = freq[key]
            if count:
                main[key] = size
                freq[key] = min(count, 3) - 1
                continue
            self._main_bytes -= size
            del freq[key]
            return key

    def _remember(self, key: Any, size: int) -> None:
        ghost = self._ghost
        if key in ghost or self._ghost_max <= 0:
            return
        while ghost and self._ghost_bytes + size > self._ghost_max:
            self._ghost_bytes -= ghost.popitem(last=False)[1]
        ghost[key] = size
        self._ghost_bytes += size

    def _detach(self, key: Any) -> None:
        del self._freq[key]
        size = self._small.pop(key, None)
        if size is not None:
            self._small_bytes -= size
        else:
            self._main_bytes -= self._main.pop(key)


def _next_power_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


class _Sketch:
    """Count-min sketch, 4 rows of 4-bit-saturating counters in one bytearray, halved periodically.

    Width grows (power of two, >= 4 x the number of resident keys), carrying the resident keys'
    counts over; every ``5 * width`` additions all counters are halved so old popularity fades
    (twice Caffeine's reset interval).
    """

    __slots__ = ("additions", "mask", "period", "table", "width")

    _HALVE = bytes(i >> 1 for i in range(256))

    def __init__(self, width: int = 64) -> None:
        self.width = width
        self.mask = width - 1
        self.table = bytearray(4 * width)
        self.additions = 0
        # halve every 20 x the entries it is sized for: 10x (Caffeine) aged too fast for loops
        # (78% vs 85% hits on a loop over 1.1x capacity), 40x too slowly for shifting popularity
        self.period = 5 * width

    def _slots(self, key: Any) -> tuple[int, int, int, int]:
        h = (hash(key) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        g = (h * 0xC2B2AE3D27D4EB4F + 0x165667B19E3779F9) & 0xFFFFFFFFFFFFFFFF
        mask, width = self.mask, self.width
        return (
            (h >> 32) & mask,
            width + (h & mask),
            2 * width + ((g >> 32) & mask),
            3 * width + (g & mask),
        )

    def add(self, key: Any) -> None:
        # `_slots` inlined: this runs on every request
        h = (hash(key) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        g = (h * 0xC2B2AE3D27D4EB4F + 0x165667B19E3779F9) & 0xFFFFFFFFFFFFFFFF
        mask, width, table = self.mask, self.width, self.table
        a = (h >> 32) & mask
        b = width + (h & mask)
        c = 2 * width + ((g >> 32) & mask)
        d = 3 * width + (g & mask)
        if table[a] < 15:
            table[a] += 1
        if table[b] < 15:
            table[b] += 1
        if table[c] < 15:
            table[c] += 1
        if table[d] < 15:
            table[d] += 1
        self.additions += 1
        if self.additions >= self.period:
            self.additions //= 2
            self.table = bytearray(table.translate(self._HALVE))

    def estimate(self, key: Any) -> int:
        table = self.table
        a, b, c, d = self._slots(key)
        return min(table[a], table[b], table[c], table[d])

    def ensure(self, entries: int, resident: Iterable[Any]) -> None:
        """Grow to at least ``entries`` counters per row, carrying over the resident keys' counts.

        Doubling makes the O(resident) carry-over amortised O(1) per insert.
        """
        if entries <= self.width:
            return
        width = self.width
        while width < entries:
            width *= 2
        old = _Sketch(self.width)
        old.table, old.additions = self.table, self.additions
        self.__init__(width)  # type: ignore[misc]
        table = self.table
        for key in resident:
            count = old.estimate(key)
            if count:
                for slot in self._slots(key):
                    if table[slot] < count:
                        table[slot] = count


class WTinyLFUCache(Cache[K, V]):
    """W-TinyLFU (Einziger et al.): a 1% LRU window, a TinyLFU admission filter, an SLRU main.

    Every hit and every insertion is counted in a count-min sketch. When the cache is full, the
    window's LRU key competes with the main area's victim (probation LRU) and the one with the
    higher estimated frequency stays (ties keep the main victim). Main is an SLRU with 20%
    probation and 80% protected. Scan- and loop-resistant; the best default for skewed traces.

    Differs from libCacheSim ``WTinyLFU`` (counting Bloom filter with its own hashing, counts only
    main hits and window victims, an unbounded warm-up window), so hit counts agree only within
    1 point of hit ratio on Zipf traces and 3-4 points on shifting and loop traces (tested).
    """

    policy = "w-tinylfu"
    window_ratio: ClassVar[float] = 0.01
    protected_ratio: ClassVar[float] = 0.80

    def _init_policy(self) -> None:
        self._window: OrderedDict[Any, int] = OrderedDict()
        self._probation: OrderedDict[Any, int] = OrderedDict()
        self._protected: OrderedDict[Any, int] = OrderedDict()
        self._window_bytes = self._probation_bytes = self._protected_bytes = 0
        self._window_max = max(1, int(self._maxsize * self.window_ratio))
        self._main_max = self._maxsize - self._window_max
        self._protected_max = int(self._main_max * self.protected_ratio)
        # 4 counters per row per entry: with 1 (Caffeine's choice) collisions turned a loop over
        # 1.1x capacity into random admissions here (78% vs 89% hits, benchmarks/cache.py)
        entries = 16 if self._maxentries is None else self._maxentries
        self._sketch = _Sketch(_next_power_of_two(max(64, 4 * entries)))

    def _touch(self, key: Any) -> None:
        self._sketch.add(key)
        if key in self._window:
            self._window.move_to_end(key)
        elif key in self._protected:
            self._protected.move_to_end(key)
        else:
            size = self._probation.pop(key)
            self._probation_bytes -= size
            self._protected[key] = size
            self._protected_bytes += size
            while self._protected_bytes > self._protected_max and len(self._protected) > 1:
                demoted, dsize = self._protected.popitem(last=False)
                self._protected_bytes -= dsize
                self._probation[demoted] = dsize
                self._probation_bytes += dsize

    def _admit(self, key: Any, size: int) -> None:
        sketch = self._sketch
        if 4 * (len(self._data) + 1) > sketch.width:
            sketch.ensure(4 * (len(self._data) + 1), self._data)
        sketch.add(key)

    def _place(self, key: Any, size: int) -> None:
        self._window[key] = size
        self._window_bytes += size
        # warm-up: spill the window's LRU keys into main while main has room
        window = self._window
        while self._window_bytes > self._window_max and len(window) > 1:
            old = next(iter(window))
            osize = window[old]
            if self._probation_bytes + self._protected_bytes + osize > self._main_max:
                break
            del window[old]
            self._window_bytes -= osize
            self._probation[old] = osize
            self._probation_bytes += osize

    def _main_victim_queue(self) -> OrderedDict[Any, int] | None:
        if self._probation:
            return self._probation
        if self._protected:
            return self._protected
        return None

    def _victim(self) -> Any:
        window = self._window
        main = self._main_victim_queue()
        if window and main is not None:
            candidate = next(iter(window))
            rival = next(iter(main))
            if self._sketch.estimate(candidate) > self._sketch.estimate(rival):
                self._pop_main(main, rival)
                size = window.pop(candidate)
                self._window_bytes -= size
                self._probation[candidate] = size
                self._probation_bytes += size
                return rival
            self._window_bytes -= window.pop(candidate)
            return candidate
        if window:
            key, size = window.popitem(last=False)
            self._window_bytes -= size
            return key
        assert main is not None
        key = next(iter(main))
        self._pop_main(main, key)
        return key

    def _pop_main(self, queue: OrderedDict[Any, int], key: Any) -> None:
        size = queue.pop(key)
        if queue is self._probation:
            self._probation_bytes -= size
        else:
            self._protected_bytes -= size

    def _detach(self, key: Any) -> None:
        size = self._window.pop(key, None)
        if size is not None:
            self._window_bytes -= size
            return
        size = self._probation.pop(key, None)
        if size is not None:
            self._probation_bytes -= size
            return
        self._protected_bytes -= self._protected.pop(key)


class AdaptiveCache(Cache[K, V]):
    """Evicts by recency (LRU) or by frequency (LFU), whichever would have hit more lately.

    The rule: two shadow caches of the same capacity, holding keys and sizes only, replay every
    request as a pure LRU and a pure LFU would. Their hits are scored with exponential decay (the
    scores halve every ``10 * entries`` requests), and the real cache, which keeps both a recency
    order and frequency buckets for its keys, evicts by the order of the shadow that scores higher.
    A 2% margin stops it flapping on ties; it starts as LRU. All of it is O(1) per request, but
    the shadows make it the slowest policy (~6x LRU's time per request, benchmarks/cache.py).

    Recency-friendly traces (popularity that shifts, where LFU clings to old keys) keep it on LRU;
    a stable hot set polluted by scans or loops moves it to LFU. ``mode`` tells which order it
    follows now and ``switches`` how often it changed.
    """

    policy = "adaptive"
    margin: ClassVar[float] = 0.02

    def _init_policy(self) -> None:
        self._recency: OrderedDict[Any, None] = OrderedDict()
        self._freq = _FrequencyList()
        self._lru_shadow: OrderedDict[Any, int] = OrderedDict()
        self._lru_shadow_bytes = 0
        self._lfu_shadow = _FrequencyList()
        self._lfu_sizes: dict[Any, int] = {}
        self._lfu_shadow_bytes = 0
        self._score = [0.0, 0.0]  # decayed shadow hits: LRU, LFU
        self._requests = 0
        self._mode = 0
        self.switches = 0

    @property
    def mode(self) -> str:
        """``"lru"`` or ``"lfu"``: the order the next eviction follows."""
        return "lfu" if self._mode else "lru"

    def _observe(self, key: Any, size: int) -> None:
        score = self._score
        cap, entry_cap = self._maxsize, self._entry_cap
        lru = self._lru_shadow
        if key in lru:
            lru.move_to_end(key)
            score[0] += 1.0
        else:
            lru[key] = size
            self._lru_shadow_bytes += size
            while self._lru_shadow_bytes > cap or len(lru) > entry_cap:
                self._lru_shadow_bytes -= lru.popitem(last=False)[1]
        lfu, sizes = self._lfu_shadow, self._lfu_sizes
        if key in sizes:
            lfu.bump(key)
            score[1] += 1.0
        else:
            # like a real LFU, make room first: the newcomer is never its own victim
            while sizes and (self._lfu_shadow_bytes + size > cap or len(sizes) >= entry_cap):
                victim = lfu.victim()
                lfu.remove(victim)
                self._lfu_shadow_bytes -= sizes.pop(victim)
            lfu.add(key)
            sizes[key] = size
            self._lfu_shadow_bytes += size
        self._requests += 1
        if self._requests >= 10 * max(len(lru), 32):
            self._requests = 0
            score[0] *= 0.5
            score[1] *= 0.5
        lead = score[1] - score[0] if self._mode == 0 else score[0] - score[1]
        if lead > self.margin * max(score[0], score[1], 1.0):
            self._mode = 1 - self._mode
            self.switches += 1

    def _touch(self, key: Any) -> None:
        self._recency.move_to_end(key)
        self._freq.bump(key)
        self._observe(key, self._sizes[key])

    def _admit(self, key: Any, size: int) -> None:
        self._observe(key, size)

    def _victim(self) -> Any:
        if self._mode:
            victim = self._freq.victim()
            del self._recency[victim]
        else:
            victim = next(iter(self._recency))
            del self._recency[victim]
        self._freq.remove(victim)
        return victim

    def _place(self, key: Any, size: int) -> None:
        self._recency[key] = None
        self._freq.add(key)

    def _detach(self, key: Any) -> None:
        del self._recency[key]
        self._freq.remove(key)


# --------------------------------------------------------------------------------------------
# factory
# --------------------------------------------------------------------------------------------
POLICIES: dict[str, type[Cache[Any, Any]]] = {
    "lru": LRUCache,
    "lfu": LFUCache,
    "arc": ARCCache,
    "slru": SLRUCache,
    "clock": ClockCache,
    "adaptive": AdaptiveCache,
    "w-tinylfu": WTinyLFUCache,
    "s3-fifo": S3FIFOCache,
    "sieve": SieveCache,
}


def make_cache(
    policy: str,
    *,
    maxsize: int,
    maxentries: int | None = None,
    getsizeof: Callable[[Any], int] | None = None,
) -> Cache[Any, Any]:
    """Build a cache of the named policy (one of `POLICIES`), bounded by ``maxsize`` bytes.

    ``getsizeof`` defaults to `sizeof` (the memory of a DataFrame, array or table); pass
    ``lambda v: 1`` to bound by entries only. Unknown names raise ``ValueError`` listing the
    known ones.
    """
    cls = POLICIES.get(policy.lower().replace("_", "-"))
    if cls is None:
        raise ValueError(f"unknown cache policy {policy!r}; choose one of {', '.join(POLICIES)}")
    return cls(maxsize, maxentries=maxentries, getsizeof=getsizeof)
