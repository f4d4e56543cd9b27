"""The cachetools mapping contract, run against every policy (and, as a check of the mixin itself,
against cachetools' own caches).

`CacheContract` states what a cachetools-like ``MutableMapping`` with ``maxsize``, ``currsize``,
``getsizeof`` and ``popitem`` promises its users, in the spirit of cachetools' own
``CacheTestMixin``: the mapping operations, size accounting with a ``getsizeof`` argument and with
a subclass's ``getsizeof`` override, items larger than ``maxsize``, a subclass's ``__missing__``,
``popitem`` on an empty cache (a bare ``KeyError``), pickling, ``clear``, iteration and ``repr``.
Ours differ in two documented ways, declared per class below: the default ``getsizeof`` counts
bytes (so the mixin passes a unit sizer where cachetools counts 1 by default), and ``maxsize=0``
is refused.
"""

from __future__ import annotations

import pickle
import sys
import threading
import time
from typing import Any, ClassVar

import cachetools
import pytest

from featurestore.cache import POLICIES, Cache


def one(_: object) -> int:
    """Every item counts 1 (module level, so caches using it pickle)."""
    return 1


def identity(value: int) -> int:
    """An item's size is its value."""
    return value


class CacheContract:
    """The contract; a subclass names the class under test and how it differs by design."""

    Cache: ClassVar[Any] = None
    UNIT: ClassVar[dict[str, Any]] = {}  # constructor arguments that make every item count 1
    ZERO_MAXSIZE_OK: ClassVar[bool] = True
    THREAD_SAFE: ClassVar[bool] = False

    def new(self, maxsize: int, **kw: Any) -> Any:
        return self.Cache(maxsize=maxsize, **{**self.UNIT, **kw})

    # ---- the mapping ------------------------------------------------------------------------
    def test_empty_cache(self) -> None:
        cache = self.new(2)
        assert len(cache) == 0 and cache.currsize == 0 and cache.maxsize == 2
        assert list(cache) == [] and 1 not in cache
        assert repr(cache).startswith(type(cache).__name__)

    def test_insert_get_delete(self) -> None:
        cache = self.new(2)
        cache[1] = "a"
        cache[2] = "b"
        assert len(cache) == 2 and cache[1] == "a" and cache[2] == "b" and 1 in cache
        cache[3] = "c"  # full: one of the others goes, the new one stays
        assert len(cache) == 2 and cache[3] == "c" and (1 in cache) != (2 in cache)
        del cache[3]
        assert 3 not in cache and len(cache) == 1
        with pytest.raises(KeyError):
            del cache[3]
        with pytest.raises(KeyError):
            cache[3]

    def test_update_setdefault_pop_get(self) -> None:
        cache = self.new(3)
        cache.update({1: "a", 2: "b"})
        cache.update({1: "A"})  # overwrite in place
        assert len(cache) == 2 and cache.currsize == 2 and cache[1] == "A"
        assert cache.get(9) is None and cache.get(9, "d") == "d" and 9 not in cache
        assert cache.setdefault(1, "x") == "A" and cache.setdefault(3, "c") == "c" and cache[3] == "c"
        assert cache.setdefault(4) is None and 4 in cache and len(cache) == 3
        assert cache.pop(3) == "c" and 3 not in cache
        with pytest.raises(KeyError):
            cache.pop(3)
        assert cache.pop(3, None) is None and cache.pop(3, "d") == "d"
        assert cache.currsize == len(cache)

    def test_iteration_and_equality(self) -> None:
        cache = self.new(10)
        cache.update({k: k * 10 for k in range(5)})
        assert sorted(cache) == [0, 1, 2, 3, 4]
        assert sorted(cache.keys()) == [0, 1, 2, 3, 4]
        assert sorted(cache.values()) == [0, 10, 20, 30, 40]
        assert dict(cache.items()) == {k: k * 10 for k in range(5)}
        assert cache == {k: k * 10 for k in range(5)}

    def test_clear(self) -> None:
        cache = self.new(10, getsizeof=identity)
        cache.clear()  # an empty cache clears
        cache.update({1: 1, 2: 2, 3: 3})
        assert cache.currsize == 6
        cache.clear()
        assert len(cache) == 0 and cache.currsize == 0 and 1 not in cache
        cache[4] = 4
        cache[5] = 5
        cache[6] = 6  # 15 > 10: eviction still works after clear
        assert 6 in cache and cache.currsize <= 10 and cache.currsize == sum(cache.values())

    # ---- sizes ------------------------------------------------------------------------------
    def check_sizes(self, cache: Any) -> None:
        """Sizes 1, 2, 3 in a cache of 3: the evictions the sizes force, whatever the policy."""
        assert cache.maxsize == 3 and cache.currsize == 0
        assert [cache.getsizeof(v) for v in (1, 2, 3)] == [1, 2, 3]
        cache.update({1: 1, 2: 2})
        assert len(cache) == 2 and cache.currsize == 3
        cache[1] = 2  # overwrite with a bigger value: 2 + 2 > 3, so key 2 must go
        assert dict(cache.items()) == {1: 2} and cache.currsize == 2
        cache.update({1: 1, 2: 2})
        assert cache.currsize == 3
        cache[3] = 3  # fills the cache alone
        assert dict(cache.items()) == {3: 3} and cache.currsize == 3
        for key, value in ((3, 4), (4, 4)):  # larger than maxsize: refused, nothing changes
            with pytest.raises(ValueError):
                cache[key] = value
            assert dict(cache.items()) == {3: 3} and cache.currsize == 3

    def test_getsizeof_argument(self) -> None:
        self.check_sizes(self.Cache(maxsize=3, getsizeof=identity))

    def test_getsizeof_subclass_override(self) -> None:
        class Sized(self.Cache):  # type: ignore[name-defined, misc]
            def getsizeof(self, value: Any) -> int:
                return int(value)

        self.check_sizes(Sized(maxsize=3))

    # ---- __missing__ ------------------------------------------------------------------------
    def test_missing(self) -> None:
        calls: list[Any] = []

        class Defaulting(self.Cache):  # type: ignore[name-defined, misc]
            def __missing__(self, key: Any) -> Any:
                calls.append(key)
                self[key] = key * 2
                return key * 2

        cache = Defaulting(maxsize=2, **self.UNIT)
        assert cache[1] == 2 and cache[2] == 4 and calls == [1, 2]
        assert cache[1] == 2 and calls == [1, 2]  # a hit does not call it
        assert cache[3] == 6 and len(cache) == 2 and 3 in cache
        # only cache[key] calls __missing__: not get, pop, setdefault or `in`
        assert cache.get(7) is None and cache.get(7, "d") == "d"
        assert cache.pop(7, None) is None
        with pytest.raises(KeyError):
            cache.pop(7)
        assert 7 not in cache
        assert cache.setdefault(8, "s") == "s" and cache[8] == "s"
        assert calls == [1, 2, 3]

    def test_missing_with_a_value_too_large(self) -> None:
        class Defaulting(self.Cache):  # type: ignore[name-defined, misc]
            def __missing__(self, key: int) -> int:
                try:
                    self[key] = key
                except ValueError:
                    pass  # too large to keep: return it uncached
                return key

        cache = Defaulting(maxsize=2, getsizeof=identity)
        assert cache[1] == 1 and cache.currsize == 1
        assert cache[2] == 2 and dict(cache.items()) == {2: 2}
        assert cache[3] == 3 and dict(cache.items()) == {2: 2} and cache.currsize == 2

    # ---- popitem ----------------------------------------------------------------------------
    def test_popitem(self) -> None:
        cache = self.new(3)
        cache.update({1: "a", 2: "b"})
        popped = [cache.popitem(), cache.popitem()]
        assert sorted(popped) == [(1, "a"), (2, "b")] and len(cache) == 0 and cache.currsize == 0
        with pytest.raises(KeyError) as info:
            cache.popitem()
        exc = info.value
        assert exc.__cause__ is None
        assert exc.__context__ is None or exc.__suppress_context__, "popitem chains its KeyError"
        # called while handling another error (a caller draining a cache in an except block), the
        # KeyError must not chain to it, as MutableMapping.popitem and cachetools' do not
        try:
            raise LookupError("unrelated")
        except LookupError:
            with pytest.raises(KeyError) as info:
                cache.popitem()
        exc = info.value
        assert exc.__cause__ is None and exc.__suppress_context__, "popitem chains its KeyError"

    # ---- maxsize 0 ----------------------------------------------------------------------------
    def test_zero_maxsize(self) -> None:
        if self.ZERO_MAXSIZE_OK:
            cache = self.new(0)
            with pytest.raises(ValueError):
                cache[1] = 1
            assert len(cache) == 0
        else:
            with pytest.raises(ValueError, match="maxsize"):
                self.new(0)

    # ---- pickling -----------------------------------------------------------------------------
    def test_pickle_round_trip(self) -> None:
        source = self.new(10, getsizeof=identity)
        source.update({1: 1, 2: 2, 4: 4})
        source[1]  # some history for the policy
        copy = pickle.loads(pickle.dumps(source))
        assert copy == source and copy is not source and type(copy) is type(source)
        assert (copy.maxsize, copy.currsize, len(copy)) == (10, 7, 3)
        copy[5] = 5  # 12 > 10: evicts, in the copy only
        assert 5 in copy and copy.currsize <= 10 and copy.currsize == sum(copy.values())
        assert source.currsize == 7 and dict(source.items()) == {1: 1, 2: 2, 4: 4}
        assert pickle.loads(pickle.dumps(copy)) == copy

    def test_pickle_large_and_empty(self) -> None:
        for n in (0, 1, 2 * sys.getrecursionlimit()):
            source = self.new(max(n, 1))
            source.update((i, i) for i in range(n))
            for i in range(0, n, 3):  # uneven hit counts: many frequency buckets, visited bits
                for _ in range(i % 5):
                    source[i]
            copy = pickle.loads(pickle.dumps(source))
            assert copy == source and len(copy) == n and copy.currsize == source.currsize
            evicted = [copy.popitem()[0] for _ in range(n)]  # the policy state came along whole
            assert sorted(evicted) == list(range(n)) and copy.currsize == 0

    def test_pickled_cache_is_usable_from_threads(self) -> None:
        copy = pickle.loads(pickle.dumps(self.new(10)))
        if not self.THREAD_SAFE:  # cachetools' caches leave locking to their callers
            copy[1] = 1
            assert copy[1] == 1
            return
        errors: list[BaseException] = []

        def worker(seed: int) -> None:
            try:
                for i in range(400):
                    key = (seed * 7 + i) % 25
                    copy[key] = key
                    copy.get((key + 3) % 25)
                    copy.pop((key + 11) % 25, None)
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in range(4)]
        try:
            for t in threads:
                t.start()
        finally:
            deadline = time.monotonic() + 30
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in threads) and not errors
        assert copy.currsize == len(copy) <= 10 and len(list(copy)) == len(copy)


# --------------------------------------------------------------------------------------------
# ours: every policy
# --------------------------------------------------------------------------------------------
class OurContract(CacheContract):
    UNIT: ClassVar[dict[str, Any]] = {"getsizeof": one}  # our default counts bytes
    ZERO_MAXSIZE_OK = False  # documented: a cache that can hold nothing is refused
    THREAD_SAFE = True

    def test_lock_is_recreated_not_shared(self) -> None:
        source = self.new(4)
        source[1] = 1
        copy = pickle.loads(pickle.dumps(source))
        assert isinstance(copy._lock, type(source._lock)) and copy._lock is not source._lock
        assert copy._inflight == {} and copy.get_or_compute(2, lambda: 2) == 2
        assert copy.stats().hits == source.stats().hits  # the counters came along


for _cls in POLICIES.values():
    _test = f"TestOur{_cls.__name__}"
    globals()[_test] = type(_test, (OurContract,), {"Cache": _cls})


def test_every_policy_runs_the_contract() -> None:
    covered = {cls.Cache for cls in globals().values() if isinstance(cls, type) and issubclass(cls, OurContract) and cls.Cache}
    assert covered == set(POLICIES.values()) and all(issubclass(c, Cache) for c in covered)


# --------------------------------------------------------------------------------------------
# the mixin itself, against cachetools' own caches
# --------------------------------------------------------------------------------------------
class TestCachetoolsCache(CacheContract):
    Cache = cachetools.Cache


class TestCachetoolsLRUCache(CacheContract):
    Cache = cachetools.LRUCache


class TestCachetoolsLFUCache(CacheContract):
    Cache = cachetools.LFUCache


class TestCachetoolsFIFOCache(CacheContract):
    Cache = cachetools.FIFOCache
