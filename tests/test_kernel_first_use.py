"""What a kernel's first use compiles: only the code its parameters run (no timings here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import talib

_FIRST_USE = r"""
import json, numpy as np
from numba.core import event
compiled = []

class Listener(event.Listener):
    def on_start(self, ev):
        f = ev.data["dispatcher"].py_func
        compiled.append(f"{f.__module__}.{f.__qualname__}")

    def on_end(self, ev):
        pass

event.register("numba:compile", Listener())
from featurestore.indicators import compute
from featurestore.indicators.kernels import averages
x = 100 + np.cumsum(np.random.default_rng(5).normal(0, 1, 400))
out = {s: list(compute(s, x).values()) for s in ("bbands_20_2_m1", "apo_12_26", "ppo_12_26_1")}
ma_copy = len(averages._ma_copy.signatures)  # before MA, whose period may be 1
out["ma_30_7"] = list(compute("ma_30_7", x).values())
print(json.dumps({
    "ma_copy": ma_copy,
    "ma_blocks": len(averages._ma_blocks.signatures),
    "strings": sorted({c for c in compiled if "unicode" in c or "repr" in c or "str_generic" in c}),
    "out": {s: [v[-5:].tolist() for v in vals] for s, vals in out.items()},
}))
"""


def test_first_use_compiles_no_period1_copy_no_matype_dispatch_and_no_error_formatting(tmp_path: Path) -> None:
    """BBANDS (EMA middle), APO, PPO and MA(MAMA) in a fresh process with an empty numba cache:
    their periods are >= 2, so TA_MA's period-1 copy (``_ma_copy``) is not compiled; MAMA runs
    its own loop, not the per-bar matype dispatch (``_ma_blocks``); and no state column is
    copied by slice assignment, whose shape-error message makes numba compile its string
    formatting (all three were compiled before). Values still equal TA-Lib's."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", _FIRST_USE], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["ma_copy"] == 0
    assert got["ma_blocks"] == 0
    assert got["strings"] == []
    x = 100 + np.cumsum(np.random.default_rng(5).normal(0, 1, 400))
    want = {
        "bbands_20_2_m1": talib.BBANDS(x, 20, 2.0, 2.0, 1),
        "apo_12_26": (talib.APO(x, 12, 26, 0),),
        "ppo_12_26_1": (talib.PPO(x, 12, 26, 1),),
        "ma_30_7": (talib.MA(x, 30, 7),),
    }
    for spec, cols in want.items():
        assert len(got["out"][spec]) == len(cols), spec
        for g, w in zip(got["out"][spec], cols):
            assert np.array_equal(np.array(g, dtype=float), w[-5:], equal_nan=True), spec
