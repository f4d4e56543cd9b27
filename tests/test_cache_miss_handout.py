"""The computing caller's hand-out on a miss (`CachedReads.read`, `freeze_and_handout`).

A miss builds the frozen frame the cache keeps and the computing caller's hand-out in one pass;
that hand-out must behave exactly like a hit's: writable through copy-on-write, refusing
``Series.array`` writes into the cached arrays, and writable after the entry left the cache.
The oracle is the result built again (`typed_result`), never a value taken from the cache.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_cache import ALL, DERIVE, LEAVE, assert_first_row_written, typed_result, write_first_row

from featurestore.cache import make_cache
from featurestore.consistency import CachedReads, entry_size


def _reads(policy: str, maxsize: int = 1 << 20) -> CachedReads:
    return CachedReads(make_cache(policy, maxsize=maxsize, getsizeof=entry_size), consistency="local", generation=lambda: 0)


def _leave(reads: CachedReads, how: str) -> None:
    cache = reads.cache
    if how == "evicted":
        while "k" in cache:
            cache.popitem()
    elif how == "invalidated":
        assert reads.invalidate(["S"]) == 1
    elif how == "discarded":
        assert cache.discard("k")
    elif how == "cleared":
        cache.clear()


@pytest.mark.parametrize("policy", ALL)
def test_miss_handout_array_writes_never_reach_the_cache(policy: str) -> None:
    """``Series.array[i] = x`` on the miss's own result (not a hit's) reaches neither the cached
    entry, nor a hit's hand-out, nor the next read; the computed frame is not what the caller gets."""
    reads = _reads(policy)
    computed: list[pd.DataFrame] = []

    def compute() -> pd.DataFrame:
        computed.append(typed_result())
        return computed[-1]

    mine = reads.read("k", ["S"], compute)  # the miss
    other = reads.read("k", ["S"], compute)  # a hit
    assert len(computed) == 1 and mine is not computed[0] and mine is not reads.cache["k"].value
    pd.testing.assert_frame_equal(mine, typed_result())
    new = {"a": -1.0, "b": -1, "ts": pd.Timestamp("2000-01-01", tz="UTC"), "c": "y", "i": -1, "s": "zz"}
    for col, value in new.items():
        with contextlib.suppress(ValueError):  # read-only: refusing is what keeps the cache intact
            mine[col].array[0] = value
    pd.testing.assert_frame_equal(other, typed_result())
    pd.testing.assert_frame_equal(reads.cache["k"].value, typed_result())
    pd.testing.assert_frame_equal(reads.read("k", ["S"], compute), typed_result())
    pd.testing.assert_frame_equal(computed[0], typed_result())  # the computed frame: not written either
    flags = [b.values.flags.writeable for b in computed[0]._mgr.blocks if isinstance(b.values, np.ndarray)]
    assert flags and all(flags)  # freezing made views; the computed arrays keep their flags


@pytest.mark.parametrize("derive", sorted(DERIVE))
@pytest.mark.parametrize("how", LEAVE)
def test_miss_handout_writable_after_the_entry_left(how: str, derive: str) -> None:
    """The miss's own hand-out, and frames derived from it, accept writes once the entry left the
    cache (or was too big to store), and no write reaches a hit's hand-out or the next read."""
    probe = _reads("lru")
    probe.read("k", ["S"], typed_result)
    size = probe.cache.currsize
    reads = _reads("arc", maxsize=size // 2 if how == "too-big" else 4 * size)
    mine = reads.read("k", ["S"], typed_result)  # the miss
    other = reads.read("k", ["S"], typed_result)  # a hit (another miss when too big)
    _leave(reads, how)
    view: Any = DERIVE[derive](mine)
    del mine
    gc.collect()
    write_first_row(view)
    assert_first_row_written(view)
    write_first_row(view)  # the second write goes to the caller's own copy, in place
    assert_first_row_written(view)
    pd.testing.assert_frame_equal(other, typed_result())
    pd.testing.assert_frame_equal(reads.read("k", ["S"], typed_result), typed_result())
