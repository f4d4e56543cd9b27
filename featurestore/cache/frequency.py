"""[cache] Frequency policies: LFU, W-TinyLFU and the adaptive LRU/LFU switch."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar

from featurestore.cache.base import Cache, K, V
from featurestore.cache.sketch import _next_power_of_two, _Sketch

__all__ = ["AdaptiveCache", "LFUCache", "WTinyLFUCache"]


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

    def __getstate__(self) -> list[tuple[int, list[Any]]]:
        # the bucket chain would pickle recursively: flatten it, lowest count first
        buckets = []
        node = self.head
        while node is not None:
            buckets.append((node[0], list(node[3])))
            node = node[2]
        return buckets

    def __setstate__(self, buckets: list[tuple[int, list[Any]]]) -> None:
        self.where = {}
        self.head = None
        lower: list[Any] | None = None
        for count, keys in buckets:
            node = [count, lower, None, OrderedDict.fromkeys(keys)]
            if lower is None:
                self.head = node
            else:
                lower[2] = node
            for key in keys:
                self.where[key] = node
            lower = node

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

    _bound = ("_touch", "_detach")

    def _init_policy(self) -> None:
        self._freq = _FrequencyList()

    def _bind_policy(self) -> None:
        self._touch = self._freq.bump  # type: ignore[method-assign]
        self._detach = self._freq.remove  # type: ignore[method-assign]

    def _victim(self) -> Any:
        key = self._freq.victim()
        self._freq.remove(key)
        return key

    def _place(self, key: Any, size: int) -> None:
        self._freq.add(key)



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
