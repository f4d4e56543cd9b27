"""[cache] Recency policies: LRU, segmented LRU, CLOCK and SIEVE."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar

from featurestore.cache.base import _MISSING, Cache, K, V

__all__ = ["ClockCache", "LRUCache", "SLRUCache", "SieveCache"]


class LRUCache(Cache[K, V]):
    """Least recently used: evicts the entry untouched for longest. Same as libCacheSim ``LRU``.

    The value map itself is the recency list (an ``OrderedDict``), so a hit is one C call.
    """

    policy = "lru"
    _data_factory = OrderedDict
    _victim_is_oldest = True

    _bound = ("_touch",)

    def _bind_policy(self) -> None:
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
            return self.__missing__(key)
        try:
            data.move_to_end(key)  # type: ignore[attr-defined]
        except KeyError:
            pass
        next(self._fast_hits)
        return value  # type: ignore[no-any-return]




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

    def _pack_policy(self, state: dict[str, Any]) -> None:
        # the node chain would pickle recursively (past the recursion limit): flatten it
        order = []
        node = self._oldest
        while node is not None:
            order.append((node[2], node[3]))
            node = node[0]
        hand = () if self._hand is None else (self._hand[2],)  # () : no hand (a key may be None)
        for name in ("_nodes", "_newest", "_oldest", "_hand"):
            del state[name]
        state["_sieve_order"] = (order, hand)

    def _unpack_policy(self, state: dict[str, Any]) -> None:
        order, hand = state.pop("_sieve_order")
        self._init_policy()
        for key, visited in order:
            self._place(key, 0)
            self._nodes[key][3] = visited
        self._hand = self._nodes[hand[0]] if hand else None
        for name in ("_nodes", "_newest", "_oldest", "_hand"):
            state[name] = getattr(self, name)

    def _detach(self, key: Any) -> None:
        node = self._nodes.pop(key)
        if node is self._hand:
            self._hand = node[0]
        self._unlink_node(node)
