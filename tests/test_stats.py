"""stats() reports this process's own peak RSS (issue 11 item 12).

On Linux ``ru_maxrss`` carries the parent's peak across fork+exec, and it is KiB there but
bytes on macOS; the old code multiplied it by 1024 everywhere, so a small process started by a
big one reported the big one's peak.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from sqlalchemy.engine import URL

CHILD = r"""
import json, sys
import psutil
from featurestore.client import FeatureStore

with FeatureStore(sys.argv[1], cache=None) as fs:
    proc = fs.stats()["process"]
print(json.dumps({"stats": proc, "rss_now": psutil.Process().memory_info().rss}))
"""


def test_child_of_a_big_parent_reports_its_own_small_peak(db_url: URL, store: object) -> None:
    big = 768 << 20  # 768 MiB, touched so that it is resident in this (parent) process
    ballast = np.ones(big // 8)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, db_url.render_as_string(hide_password=False)],
            check=False, capture_output=True, text=True, timeout=300,
        )
    finally:
        del ballast
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    peak, rss = out["stats"]["peak_rss_bytes"], out["stats"]["rss_bytes"]
    assert isinstance(peak, int) and isinstance(rss, int)
    assert 0 < rss <= peak  # a peak is never below the current figure
    assert out["rss_now"] <= big // 2  # the child itself is small (an import of pandas and SQLAlchemy)
    assert peak < big // 2, f"the child reported {peak} bytes: its parent's peak, not its own"


def test_peak_is_at_least_what_this_process_allocated(store: object) -> None:
    from featurestore.client import FeatureStore

    assert isinstance(store, FeatureStore)
    size = 200 << 20
    block = np.ones(size // 8)  # resident now: the peak must include it
    try:
        stats = store.stats()["process"]
    finally:
        del block
    assert stats["peak_rss_bytes"] >= stats["rss_bytes"] >= size
