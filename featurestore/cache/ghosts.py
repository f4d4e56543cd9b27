"""[cache] Policies with ghost lists of recently evicted keys: ARC and S3-FIFO."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar

from featurestore.cache.base import Cache, K, V

__all__ = ["ARCCache", "S3FIFOCache"]


def _ratio(num: int, den: int) -> float:
    """ARC's step ``max(num / den, 1)``; ghosts of size 0 (a ``getsizeof`` that returns 0) make
    ``den`` 0: the step is then 1, or the whole cache when only the other list has bytes."""
    if den > 0:
        return max(num / den, 1.0)
    return float("inf") if num > 0 else 1.0


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
            self._p = min(self._p + _ratio(self._b2_bytes, self._b1_bytes), self._maxsize)
            self._b1_bytes -= ghost
            self._ghost_hit = True
            return
        ghost = self._b2.pop(key, None)
        if ghost is not None:
            self._p = max(self._p - _ratio(self._b1_bytes, self._b2_bytes), 0.0)
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
