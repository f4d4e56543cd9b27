"""[cache] In-process result cache: one base class, small policy subclasses, tag invalidation.

One module per concern: `base` (accounting, eviction loop, tags, single flight, pickling),
`recency` (LRU, SLRU, CLOCK, SIEVE), `frequency` (LFU, W-TinyLFU, adaptive), `ghosts` (ARC,
S3-FIFO), `sketch` (W-TinyLFU's count-min sketch) and `frames` (sizing, freezing and handing out
pandas/numpy/Arrow results without touching the caller's data).

Policies, by name (`make_cache`): ``lru``, ``lfu``, ``arc``, ``slru``, ``clock``, ``adaptive``,
``w-tinylfu``, ``s3-fifo``, ``sieve``. With unit sizes, ``lru``, ``lfu``, ``arc``, ``slru``,
``clock``, ``sieve`` and ``s3-fifo`` evict exactly like libCacheSim 0.3.5's policies of the same
name (hit-for-hit, tested); the variants are documented on each class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from featurestore.cache.base import Cache, CacheStats
from featurestore.cache.frames import copy_on_write, freeze, freeze_and_handout, handout, sizeof
from featurestore.cache.frequency import AdaptiveCache, LFUCache, WTinyLFUCache
from featurestore.cache.ghosts import ARCCache, S3FIFOCache
from featurestore.cache.recency import ClockCache, LRUCache, SieveCache, SLRUCache

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
    "copy_on_write",
    "freeze",
    "freeze_and_handout",
    "handout",
    "make_cache",
    "sizeof",
]

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
