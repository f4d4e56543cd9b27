"""Kernels with a matype parameter compile only the code of the matypes they are called with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import talib

from featurestore.indicators import compute_batch, parse_indicator

_FIRST_USE = r"""
import json, numpy as np
from featurestore.indicators import compute
from featurestore.indicators.kernels import ma
x = 100 + np.cumsum(np.random.default_rng(3).normal(0, 1, 300))
out = {s: compute(s, x) for s in ("ma_30", "apo_12_26", "bbands_20_2_m1", "stochrsi")}
for s in ("stoch", "stochf"):
    compute(s, {"high": x + 1, "low": x - 1, "close": x})
blocks = {n: len(getattr(ma, n).signatures) for n in ("_wma", "_dema", "_tema", "_trima", "_kama", "_t3")}
print(json.dumps({"blocks": blocks, "ma_30": list(out["ma_30"].values())[0][-5:].tolist()}))
"""


def test_first_use_of_a_matype_compiles_no_other_matypes_block(tmp_path: Path) -> None:
    """MA/APO/BBANDS with SMA/EMA and STOCH/STOCHF/STOCHRSI with SMA in a fresh process (empty
    numba cache): none of the WMA, DEMA, TEMA, TRIMA, KAMA, T3 blocks is compiled (they were,
    inside a per-bar matype dispatch)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", _FIRST_USE], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["blocks"] == dict.fromkeys(got["blocks"], 0), got["blocks"]
    x = 100 + np.cumsum(np.random.default_rng(3).normal(0, 1, 300))
    assert np.array_equal(got["ma_30"], talib.MA(x, 30, 0)[-5:])


def test_matype_kernel_converts_other_argument_types() -> None:
    """float32 / strided inputs take the api's converting path through a per-matype kernel."""
    x = 100 + np.cumsum(np.random.default_rng(4).normal(0, 1, 2_000))
    offsets = np.array([0, x.size], dtype=np.int64)
    for arg in (x.astype(np.float32), np.repeat(x, 2)[::2]):  # float32; a strided view
        ref_in = np.ascontiguousarray(arg, dtype=np.float64)
        for name, ref in (("ma_10_3", talib.MA(ref_in, 10, 3)), ("apo_5_12_1", talib.APO(ref_in, 5, 12, 1)),
                          ("ppo_5_12_6", talib.PPO(ref_in, 5, 12, 6))):
            spec = parse_indicator(name)
            out, _ = compute_batch(spec, {"close": arg}, offsets)
            assert np.array_equal(out[spec.outputs[0]], ref, equal_nan=True), (name, arg.dtype)
