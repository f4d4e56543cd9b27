"""Result-cache benchmark: hit ratios of every policy against Belady's OPT and libCacheSim, and
throughput against cachetools, side by side in one run.

    python benchmarks/cache.py              # full run (~15-25 min on 2 busy shared cores)
    python benchmarks/cache.py --quick      # small traces, ~40 s (what `featurestore bench` runs)
    python benchmarks/cache.py --markdown   # Markdown tables (benchmarks/results/cache.md)

Traces use integer keys and unit sizes, so capacities are in entries and every policy, OPT and
libCacheSim see exactly the same requests. Timings are medians of interleaved repeats.

--quick prints the same tables on 30,000-request traces over 20,000 keys (the full run: 300,000
over 100,000), a 30,000-request throughput trace, and a 100-symbol x 800-day store (it covers 2022,
the year the 100-symbol get_features reads). It also sizes libCacheSim's hash tables to the trace
(hashpower) instead of its default 2^24 buckets, whose allocation costs ~0.1-0.5 s per policy and
capacity; the tables grow as needed, so the hit ratios are the same.
"""

from __future__ import annotations

import argparse
import heapq
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from featurestore.cache import POLICIES, make_cache  # noqa: E402

# LFUDA is left out: libcachesim 0.3.5 hangs on it at some capacities (20 entries; ~700 on Zipf 0.8)
LCS_POLICIES = ["LRU", "LFU", "ARC", "SLRU", "Clock", "Sieve", "S3FIFO", "WTinyLFU", "LIRS"]


def one(_: object) -> int:
    return 1


# --------------------------------------------------------------------------------------------
# traces
# --------------------------------------------------------------------------------------------
def zipf(alpha: float, n_keys: int, n: int, rng: np.random.Generator) -> np.ndarray:
    p = 1.0 / np.arange(1, n_keys + 1) ** alpha
    ranks = rng.choice(n_keys, size=n, p=p / p.sum())
    return rng.permutation(n_keys)[ranks] + 1  # popularity not tied to key order


def scan_polluted(n_keys: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Zipf 0.99 reads with a one-off sequential scan of n_keys/10 keys after every 10% of reads."""
    base = zipf(0.99, n_keys, n, rng)
    parts, scan_start, chunk = [], 10 * n_keys, n // 10
    for i in range(0, n, chunk):
        parts.append(base[i : i + chunk])
        parts.append(np.arange(scan_start, scan_start + n_keys // 10))
        scan_start += n_keys // 10
    return np.concatenate(parts)[:n]


def loop(length: int, n: int) -> np.ndarray:
    return np.arange(n) % length + 1


def feature_store(n_entities: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """What a feature store sees: latest rows of Zipf-popular entities, where "latest" advances;
    recent-range reads; and periodic backtest sweeps over every entity with a few fixed configs.
    """
    out = np.empty(n, dtype=np.int64)
    popular = zipf(1.0, n_entities, n, rng)
    kind = rng.random(n)
    window_every = max(n // 50, 1)  # the "latest" window advances 50 times over the trace
    sweep_every, sweep_len = max(n // 8, 1), n_entities  # 8 sweeps, 2 configs alternating
    i = 0
    sweep = 0
    while i < n:
        if i and i % sweep_every == 0 and i + sweep_len <= n:
            config = sweep % 2
            out[i : i + sweep_len] = 3_000_000_000 + config * 10_000_000 + np.arange(sweep_len)
            i += sweep_len
            sweep += 1
            continue
        window = i // window_every
        e = int(popular[i])
        if kind[i] < 0.75:  # latest row of entity e in the current window
            out[i] = 1_000_000_000 + window * 1_000_000 + e
        else:  # a range ending in one of the last 4 windows
            out[i] = 2_000_000_000 + (window - int(rng.integers(0, 4))) * 1_000_000 + e
        i += 1
    return out


def make_traces(quick: bool) -> dict[str, Callable[[int], np.ndarray]]:
    """Trace name -> builder taking the capacity (only the loop depends on it)."""
    n_keys, n = (20_000, 30_000) if quick else (100_000, 300_000)
    rng = np.random.default_rng(2024)
    fixed = {
        "zipf-0.8": zipf(0.8, n_keys, n, rng),
        "zipf-0.99": zipf(0.99, n_keys, n, rng),
        "scan-polluted": scan_polluted(n_keys, n, rng),
        "feature-store": feature_store(n_keys // 10, n, rng),
    }
    traces: dict[str, Callable[[int], np.ndarray]] = {
        name: (lambda cap, t=trace: t) for name, trace in fixed.items()
    }
    traces["loop-1.1x"] = lambda cap: loop(int(cap * 1.1), n)
    return traces


# --------------------------------------------------------------------------------------------
# simulators
# --------------------------------------------------------------------------------------------
def opt_hits(trace: Sequence[int], capacity: int) -> int:
    """Belady's OPT with bypass (evict the key used farthest in the future, possibly the new one).

    Next-use indices from one backward pass, a max-heap with lazy deletion: O(n log n).
    """
    n = len(trace)
    never = n + 1
    next_use = [0] * n
    last: dict[int, int] = {}
    for i in range(n - 1, -1, -1):
        key = trace[i]
        next_use[i] = last.get(key, never)
        last[key] = i
    resident: dict[int, int] = {}  # key -> its next use
    heap: list[tuple[int, int]] = []
    hits = 0
    for i, key in enumerate(trace):
        use = next_use[i]
        if key in resident:
            hits += 1
        elif len(resident) >= capacity:
            while -heap[0][0] != resident.get(heap[0][1]):
                heapq.heappop(heap)
            farthest, victim = heap[0]
            if -farthest <= use:
                continue  # the newcomer is the farthest: do not cache it
            heapq.heappop(heap)
            del resident[victim]
        resident[key] = use
        heapq.heappush(heap, (-use, key))
        if len(heap) > 4 * capacity + 1024:  # drop stale entries now and then
            heap = [(-u, k) for k, u in resident.items()]
            heapq.heapify(heap)
    return hits


def our_hits(policy: str, trace: Sequence[int], capacity: int) -> int:
    cache = make_cache(policy, maxsize=capacity, getsizeof=one)
    get = cache.get
    for key in trace:
        if get(key) is None:
            cache[key] = key
    return cache.stats().hits


def lcs_hit_ratios(trace: np.ndarray, capacity: int, hashpower: int | None = None) -> dict[str, float]:
    """libCacheSim's policies over the same trace, through its C trace reader.

    ``hashpower``: log2 of the initial hash-table size (libCacheSim's default, 24, when None).
    """
    try:
        import libcachesim as lcs
    except ImportError:
        return {}
    records = np.zeros(
        len(trace), dtype=[("ts", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")]
    )
    records["ts"] = np.arange(len(trace))
    records["id"] = trace
    records["size"] = 1
    records["next"] = -1
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.oracleGeneral.bin")
        records.tofile(path)
        reader = lcs.TraceReader(path, lcs.TraceType.ORACLE_GENERAL_TRACE)
        for name in LCS_POLICIES:
            cache = getattr(lcs, name)(capacity) if hashpower is None else getattr(lcs, name)(capacity, hashpower=hashpower)
            miss_ratio, _ = cache.process_trace(reader)
            out[f"lcs:{name}"] = 1.0 - miss_ratio
    return out


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------
def table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return "\n".join([fmt.format(*headers), *(fmt.format(*r) for r in rows)])


def hit_ratio_benchmarks(quick: bool, markdown: bool) -> None:
    """Hit ratio of every policy, OPT and libCacheSim on each trace at 0.1%, 1% and 10%."""
    traces = make_traces(quick)
    ours = list(POLICIES)
    n_keys = 20_000 if quick else 100_000
    for name, build in traces.items():
        probe = build(n_keys)
        # capacities are fractions of the distinct keys; the loop's key count follows its capacity,
        # so for it they are fractions of the key universe of the other traces
        unique = n_keys if name.startswith("loop") else len(np.unique(probe))
        headers = ["policy"]
        columns: list[dict[str, float]] = []
        for fraction in (0.001, 0.01, 0.1):
            # libCacheSim needs >= 100 entries: WTinyLFU caches nothing below, LFUDA hangs at 20
            cap = max(int(unique * fraction), 100)
            trace = build(cap)
            as_list = trace.tolist()
            col = {"OPT": opt_hits(as_list, cap) / len(as_list)}
            for policy in ours:
                col[policy] = our_hits(policy, as_list, cap) / len(as_list)
            # quick: a hash table sized to the trace's keys, not 2^24 buckets (same results, much less setup)
            hashpower = max(12, int(len(np.unique(trace))).bit_length()) if quick else None
            col.update(lcs_hit_ratios(trace, cap, hashpower))
            columns.append(col)
            headers.append(f"{fraction:.1%} ({cap})")
        names = ["OPT", *ours, *(k for k in columns[0] if k.startswith("lcs:"))]
        rows = [[n, *(f"{100 * c[n]:.1f}" for c in columns)] for n in names]
        gaps = []
        for c in columns:
            best_ours = max(c[p] for p in ours)
            best_lcs = max((v for k, v in c.items() if k.startswith("lcs:")), default=0.0)
            gaps.append(f"{100 * (best_ours - max(best_lcs, 0)):+.1f} / {100 * (best_ours - c['OPT']):+.1f}")
        rows.append(["best ours vs best lcs / vs OPT", *gaps])
        what = "a loop over 1.1x each capacity" if name.startswith("loop") else f"{unique:,} distinct keys"
        title = f"Hit ratio (%) — {name}, {len(probe):,} requests, {what}"
        print(f"\n{'### ' if markdown else ''}{title}\n")
        print(table(headers, rows, markdown))
        sys.stdout.flush()


def throughput_benchmarks(quick: bool, markdown: bool) -> None:
    """Requests per second of a get-then-set-on-miss loop, every policy vs cachetools."""
    import cachetools

    n_keys, n, cap = 100_000, (30_000 if quick else 300_000), 1000
    trace = zipf(0.99, n_keys, n, np.random.default_rng(7)).tolist()
    makers: dict[str, Callable[[], Any]] = {
        "cachetools.LRUCache": lambda: cachetools.LRUCache(cap),
        "cachetools.LFUCache": lambda: cachetools.LFUCache(cap),
    }
    for policy in POLICIES:
        makers[policy] = lambda p=policy: make_cache(p, maxsize=cap, getsizeof=one)

    def run(cache: Any) -> float:
        get = cache.get
        start = time.perf_counter()
        for key in trace:
            if get(key) is None:
                cache[key] = key
        return n / (time.perf_counter() - start)

    repeats = 3 if quick else 7
    samples: dict[str, list[float]] = {name: [] for name in makers}
    for _ in range(repeats):  # interleaved, so drift on shared cores hits everyone alike
        for name, make in makers.items():
            samples[name].append(run(make()))
    base = statistics.median(samples["cachetools.LRUCache"])
    rows = []
    for name, values in samples.items():
        median = statistics.median(values)
        rows.append([name, f"{median / 1e6:.2f}", f"{median / base:.2f}"])
    hit_ratio = our_hits("lru", trace, cap) / n
    title = (
        f"Throughput — get, then set on miss; Zipf 0.99, {n:,} requests over {n_keys:,} keys, "
        f"capacity {cap} (LRU hit ratio {hit_ratio:.0%}); median of {repeats}"
    )
    print(f"\n{'### ' if markdown else ''}{title}\n")
    print(table(["cache", "M req/s", "x cachetools LRU"], rows, markdown))


def policy_benchmarks(*, quick: bool, markdown: bool) -> None:
    """The policy-level benchmarks: hit ratios, then throughput."""
    hit_ratio_benchmarks(quick, markdown)
    throughput_benchmarks(quick, markdown)


def store_benchmarks(*, quick: bool, markdown: bool) -> None:
    """End to end through FeatureStore: get_latest and a 100-symbol get_features, cached vs uncached."""
    import shutil
    import tempfile
    import time as _time
    from pathlib import Path

    import numpy as np
    import psycopg

    from featurestore.client import FeatureStore
    from featurestore.config import libpq_url
    from featurestore.demo import generate_bars
    from featurestore.embedded import EmbeddedServer

    home = Path(tempfile.mkdtemp(prefix="fs-cache-bench-"))
    server = EmbeddedServer(home, cleanup="keep")
    admin = server.start()
    try:
        with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        url = admin.set(database="bench")
        # quick: 800 business days from 2020-01-01 reach into 2023, so the 2022 read below returns rows
        n_sym, n_days = (100, 800) if quick else (1000, 1260)
        with FeatureStore(url, auto_migrate=True, cache=None) as fs:
            fs.create_view("tech", ["sma_20", "ema_50", "rsi_14", "macd_12_26_9", "bbands_20_2", "atr_14", "adx_14"])
            fs.ingest(generate_bars(n_sym, n_days))
        symbols = [f"SYM{i:04d}" for i in range(n_sym)]
        reps = 300 if quick else 2000
        rows = []

        def p50(fn: Any, n: int) -> float:
            times = []
            for _ in range(n):
                t = _time.perf_counter_ns()
                fn()
                times.append(_time.perf_counter_ns() - t)
            return float(np.median(times)) / 1000.0

        with FeatureStore(url, cache=None) as plain, FeatureStore(url, cache="arc") as cached, FeatureStore(
            url, cache="arc", consistency="strict"
        ) as strict:
            one = symbols[7]
            hundred = symbols[:100]
            cases = [
                ("get_latest(1 symbol)", lambda fs: fs.get_latest(one), reps),
                ("get_latest(1 symbol, view)", lambda fs: fs.get_latest(one, view="tech"), reps),
                ("get_features(100 symbols x 1 year)", lambda fs: fs.get_features(hundred, "2022-01-01 UTC", "2022-12-31 UTC", view="tech"), max(10, reps // 50)),
            ]
            for name, call, n in cases:
                for fs in (plain, cached, strict):
                    call(fs)  # warm: compile, prepare, fill the cache
                un = p50(lambda: call(plain), n)
                hit = p50(lambda: call(cached), n * 5)
                st = p50(lambda: call(strict), n * 5)
                rows.append((name, un, hit, st, un / hit))
        head = ("read", "uncached p50 µs", "cached p50 µs (local)", "cached p50 µs (strict)", "speedup (local)")
        table = [(r[0], f"{r[1]:,.1f}", f"{r[2]:,.1f}", f"{r[3]:,.1f}", f"{r[4]:,.0f}x") for r in rows]
        if markdown:
            print("\n### End to end through FeatureStore\n")
            print("| " + " | ".join(head) + " |")
            print("|" + "---|" * len(head))
            for r in table:
                print("| " + " | ".join(r) + " |")
        else:
            print("\nEnd to end through FeatureStore")
            for r in [head, *table]:
                print("  ".join(f"{c:>26}" for c in r))
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small traces, fewer repeats")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--store-only", action="store_true", help="only the end-to-end FeatureStore timings")
    args = parser.parse_args(argv)
    if not args.store_only:
        policy_benchmarks(quick=args.quick, markdown=args.markdown)
    store_benchmarks(quick=args.quick, markdown=args.markdown)


if __name__ == "__main__":
    main()
